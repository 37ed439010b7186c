/* Lua bindings for matrix products and the thread count: matmul, outer, set_threads,
 * threads, blas_config. */
#include "sfl.h"

/* a:matmul(b [, out]) / a:outer(b [, out]): a fresh result, or written into out (which
 * must have the result's shape and be contiguous) and out returned. */
static int product(lua_State *L, int (*fn)(sf_tensor *, const sf_tensor *, const sf_tensor *)) {
  sf_tensor *a = sfl_check(L, 1), *b = sfl_check(L, 2);
  if (!lua_isnoneornil(L, 3)) {
    sf_tensor *out = sfl_check(L, 3);
    SFL_TRY(L, fn(out, a, b));
    lua_settop(L, 3);
    return 1;
  }
  sf_tensor *t = sfl_push(L);
  SFL_TRY(L, fn(t, a, b));
  sfl_account(L, t);
  return 1;
}

static int t_matmul(lua_State *L) { return product(L, sf_matmul); }
static int t_outer(lua_State *L) { return product(L, sf_outer); }

/* sf.set_threads(n): the OpenBLAS thread count (the only threaded component so far) */
static int l_set_threads(lua_State *L) {
  int64_t n = sfl_checkinteger(L, 1);
  if (n < 1 || n > 4096)
    return luaL_error(L, "bad argument #1 to '%s' (thread count %I is out of range, expected 1 to 4096)",
                      sfl_fname(L), (lua_Integer)n);
  sf_set_threads((int)n);
  return 0;
}

static int l_threads(lua_State *L) {
  lua_pushinteger(L, sf_threads());
  return 1;
}

static int l_blas_config(lua_State *L) {
  lua_pushstring(L, sf_blas_config());
  return 1;
}

static const luaL_Reg lib[] = {
    {"set_threads", l_set_threads},
    {"threads", l_threads},
    {"blas_config", l_blas_config},
    {NULL, NULL},
};

static const luaL_Reg methods[] = {
    {"matmul", t_matmul},
    {"outer", t_outer},
    {NULL, NULL},
};

const sfl_area sfl_area_blas = {lib, methods, NULL, NULL};
