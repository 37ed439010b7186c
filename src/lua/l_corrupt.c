/* Corruption bindings: sf.corrupt / t:corrupt, sf.corruptions, and a kernel hook for tests. */
#include <limits.h>
#include <string.h>

#include "../data/corrupt.h"
#include "sfl.h"

/* t:corrupt(name, severity[, rng]) / sf.corrupt(img, name, severity[, rng]): img is
 * [C,H,W] or [N,C,H,W] (C = 1 or 3) in [0,1]; returns a new tensor of the same shape. */
static int t_corrupt(lua_State *L) {
  sf_tensor *img = sfl_check(L, 1);
  if (lua_type(L, 2) != LUA_TSTRING)
    return luaL_error(L, "bad argument #2 to '%s' (string expected, got %s)", sfl_fname(L), luaL_typename(L, 2));
  const char *name = lua_tostring(L, 2);
  int64_t sev = sfl_checkinteger(L, 3);
  sf_rng *r = sfl_optrng(L, 4);
  int s = sev < INT_MIN ? INT_MIN : sev > INT_MAX ? INT_MAX : (int)sev;
  sf_tensor *out = sfl_push(L);
  SFL_TRY(L, sf_corrupt(out, img, name, s, r));
  sfl_account(L, out);
  return 1;
}

/* sf.corruptions(["all" | "standard" | "extra"]) -> list of names, standard first */
static int l_corruptions(lua_State *L) {
  static const char *const sets[] = {"all", "standard", "extra", NULL};
  int set = luaL_checkoption(L, 1, "all", sets);
  const char *const *names = sf_corrupt_names();
  int lo = set == 2 ? SF_CORRUPT_STANDARD : 0, hi = set == 1 ? SF_CORRUPT_STANDARD : SF_CORRUPT_COUNT;
  lua_createtable(L, hi - lo, 0);
  for (int i = lo; i < hi; i++) {
    lua_pushstring(L, names[i]);
    lua_rawseti(L, -2, i - lo + 1);
  }
  return 1;
}

/* sf._corrupt_kernel("gaussian", sigma[, truncate = 4]) -> 1-D tensor;
 * sf._corrupt_kernel("disk", radius, alias_sigma) -> 2-D tensor. For tests. */
static int l_corrupt_kernel(lua_State *L) {
  static const char *const kinds[] = {"gaussian", "disk", NULL};
  int kind = luaL_checkoption(L, 1, NULL, kinds);
  double a = luaL_checknumber(L, 2);
  double b = kind == 0 ? luaL_optnumber(L, 3, 4.0) : luaL_checknumber(L, 3);
  if (!(a >= 0.0 && a <= 64.0)) return luaL_error(L, "bad argument #2 to '_corrupt_kernel' (%f is outside [0, 64])", a);
  if (!(b >= 0.0 && b <= 64.0)) return luaL_error(L, "bad argument #3 to '_corrupt_kernel' (%f is outside [0, 64])", b);
  int cap = 1 << 16;
  sf_tensor *buf = sfl_push(L); /* scratch owned by Lua: nothing leaks if we raise */
  int64_t size[2] = {cap, 1};
  SFL_TRY(L, sf_tensor_new(buf, 1, size));
  int n = kind == 0 ? sf_corrupt_gaussian_kernel(sf_tensor_data(buf), cap, a, b)
                    : sf_corrupt_disk_kernel(sf_tensor_data(buf), cap, a, b);
  if (n < 0) return luaL_error(L, "_corrupt_kernel: kernel too large");
  sf_tensor *res = sfl_push(L);
  size[0] = size[1] = n;
  SFL_TRY(L, sf_tensor_new(res, kind == 0 ? 1 : 2, size));
  memcpy(sf_tensor_data(res), sf_tensor_data(buf), (size_t)(kind == 0 ? n : n * n) * sizeof(float));
  return 1;
}

static const luaL_Reg lib[] = {
    {"corruptions", l_corruptions},
    {"_corrupt_kernel", l_corrupt_kernel},
    {NULL, NULL},
};

static const luaL_Reg methods[] = {
    {"corrupt", t_corrupt},
    {NULL, NULL},
};

const sfl_area sfl_area_corrupt = {lib, methods, NULL, NULL};
