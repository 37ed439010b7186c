/* File format bindings: IDX, CIFAR-10 batches, .npy, PNG and CSV readers and writers.
 * Every reader raises an error naming the function, the file and the problem. */
#include <string.h>

#include "../io/io.h"
#include "sfl.h"

#define CSV_MT "surgft.CSV" /* owns a parsed file while its Lua table is built */

/* Raise unless every key of the options table at arg is one of names (NULL-terminated). */
static void check_options(lua_State *L, int arg, const char *const *names) {
  if (lua_isnoneornil(L, arg)) return;
  luaL_checktype(L, arg, LUA_TTABLE);
  lua_pushnil(L);
  while (lua_next(L, arg)) {
    lua_pop(L, 1);
    int ok = 0;
    if (lua_type(L, -1) == LUA_TSTRING)
      for (const char *const *n = names; *n && !ok; n++) ok = !strcmp(lua_tostring(L, -1), *n);
    if (!ok) {
      luaL_Buffer b;
      luaL_buffinit(L, &b);
      for (const char *const *n = names; *n; n++) {
        if (n != names) luaL_addstring(&b, ", ");
        luaL_addstring(&b, *n);
      }
      luaL_pushresult(&b);
      luaL_error(L, "bad argument #%d to '%s' (unknown option '%s'; options: %s)", arg, sfl_fname(L),
                 lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : luaL_typename(L, -2), lua_tostring(L, -1));
    }
  }
}

/* opts[name] as a boolean, def when absent */
static int opt_bool(lua_State *L, int arg, const char *name, int def) {
  if (lua_isnoneornil(L, arg)) return def;
  int t = lua_getfield(L, arg, name);
  int v = t == LUA_TNIL ? def : lua_toboolean(L, -1);
  if (t != LUA_TNIL && t != LUA_TBOOLEAN)
    luaL_error(L, "bad argument #%d to '%s' (option '%s' must be a boolean, got %s)", arg, sfl_fname(L), name,
               luaL_typename(L, -1));
  lua_pop(L, 1);
  return v;
}

/* sf.read_idx(path) -> tensor with the IDX dims, raw values */
static int l_read_idx(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  sf_tensor *t = sfl_push(L);
  SFL_TRY(L, sf_read_idx(t, path));
  sfl_account(L, t);
  return 1;
}

/* sf.read_cifar(path) -> images [N,3,32,32] in [0,1], labels [N] (0-based) */
static int l_read_cifar(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  sf_tensor *x = sfl_push(L), *y = sfl_push(L);
  SFL_TRY(L, sf_read_cifar(x, y, path));
  sfl_account(L, x);
  return 2;
}

/* sf.read_npy(path[, {shape = {-1, 32, 32, 3}}]) -> tensor; negative shape entries match any size */
static int l_read_npy(lua_State *L) {
  static const char *const opts[] = {"shape", NULL};
  const char *path = luaL_checkstring(L, 1);
  check_options(L, 2, opts);
  int nd = -1;
  int64_t shape[SF_MAX_DIMS];
  if (!lua_isnoneornil(L, 2)) {
    if (lua_getfield(L, 2, "shape") != LUA_TNIL) {
      if (!lua_istable(L, -1))
        luaL_error(L, "bad argument #2 to 'read_npy' (option 'shape' must be a table, got %s)", luaL_typename(L, -1));
      lua_Integer n = luaL_len(L, -1);
      if (n > SF_MAX_DIMS)
        luaL_error(L, "bad argument #2 to 'read_npy' (option 'shape' has %I entries, at most %d allowed)", n, SF_MAX_DIMS);
      nd = (int)n;
      for (int d = 0; d < nd; d++) {
        lua_geti(L, -1, d + 1);
        int isnum;
        lua_Integer v = lua_tointegerx(L, -1, &isnum);
        if (!isnum)
          luaL_error(L, "bad argument #2 to 'read_npy' (option 'shape' entry %d is %s, expected an integer)", d + 1,
                     luaL_typename(L, -1));
        shape[d] = (int64_t)v;
        lua_pop(L, 1);
      }
    }
    lua_pop(L, 1);
  }
  sf_tensor *t = sfl_push(L);
  SFL_TRY(L, sf_read_npy(t, path, nd, shape));
  sfl_account(L, t);
  return 1;
}

/* sf.write_npy(path, tensor): '<f4', C order, written atomically */
static int l_write_npy(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  SFL_TRY(L, sf_write_npy(path, sfl_check(L, 2)));
  return 0;
}

/* sf.read_png(path[, {keep_alpha = false}]) -> [C,H,W] in [0,1] */
static int l_read_png(lua_State *L) {
  static const char *const opts[] = {"keep_alpha", NULL};
  const char *path = luaL_checkstring(L, 1);
  check_options(L, 2, opts);
  int keep = opt_bool(L, 2, "keep_alpha", 0);
  sf_tensor *t = sfl_push(L);
  SFL_TRY(L, sf_read_png(t, path, keep));
  sfl_account(L, t);
  return 1;
}

/* sf.write_png(path, tensor): [H,W], [1,H,W], [3,H,W] or [4,H,W] in [0,1] -> 8-bit PNG, atomically */
static int l_write_png(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  SFL_TRY(L, sf_write_png(path, sfl_check(L, 2)));
  return 0;
}

static int csv_gc(lua_State *L) {
  sf_csv_free(luaL_checkudata(L, 1, CSV_MT));
  return 0;
}

/* pushes column j as an array: numbers when every value converts (and numbers is on),
 * strings otherwise */
static void push_column(lua_State *L, const sf_csv *c, int j, int numbers) {
  int64_t n = c->nrows;
  int cap = n > 0x7fffffff ? 0x7fffffff : (int)n;
  if (numbers && n > 0) {
    lua_createtable(L, cap, 0);
    int64_t i = 0;
    for (; i < n; i++) {
      if (!lua_stringtonumber(L, c->cells[i * c->ncols + j])) break;
      lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    if (i == n) return;
    lua_pop(L, 1);
  }
  lua_createtable(L, cap, 0);
  for (int64_t i = 0; i < n; i++) {
    lua_pushstring(L, c->cells[i * c->ncols + j]);
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
}

/* sf.read_csv(path[, {require = {names}, numbers = true}]) ->
 *   {header = {names in file order}, columns = {[name] = array}, nrows = n}
 * A column holds numbers when Lua's tonumber accepts every one of its values (and
 * numbers is not false); otherwise strings, empty fields as "". Blank lines are skipped. */
static int l_read_csv(lua_State *L) {
  static const char *const opts[] = {"require", "numbers", NULL};
  const char *path = luaL_checkstring(L, 1);
  check_options(L, 2, opts);
  int numbers = opt_bool(L, 2, "numbers", 1);
  lua_settop(L, 2);
  if (!lua_isnoneornil(L, 2)) lua_getfield(L, 2, "require");
  else lua_pushnil(L);
  int req = lua_gettop(L); /* 3 */
  if (!lua_isnil(L, req) && !lua_istable(L, req))
    luaL_error(L, "bad argument #2 to 'read_csv' (option 'require' must be a table of names, got %s)",
               luaL_typename(L, req));
  /* the parsed file lives in a userdata so that any error below leaves nothing to leak */
  sf_csv *c = lua_newuserdatauv(L, sizeof *c, 0);
  memset(c, 0, sizeof *c);
  if (luaL_newmetatable(L, CSV_MT)) {
    lua_pushcfunction(L, csv_gc);
    lua_setfield(L, -2, "__gc");
  }
  lua_setmetatable(L, -2);
  SFL_TRY(L, sf_read_csv(c, path));
  if (!lua_isnil(L, req)) {
    lua_Integer n = luaL_len(L, req);
    for (lua_Integer k = 1; k <= n; k++) {
      if (lua_geti(L, req, k) != LUA_TSTRING)
        luaL_error(L, "bad argument #2 to 'read_csv' (option 'require' entry %I is %s, expected a column name)", k,
                   luaL_typename(L, -1));
      const char *name = lua_tostring(L, -1);
      SFL_TRY(L, sf_csv_require(c, path, 1, &name));
      lua_pop(L, 1);
    }
  }
  lua_createtable(L, 0, 3); /* result */
  lua_createtable(L, c->ncols, 0);
  for (int j = 0; j < c->ncols; j++) {
    lua_pushstring(L, c->header[j]);
    lua_rawseti(L, -2, j + 1);
  }
  lua_setfield(L, -2, "header");
  lua_createtable(L, 0, c->ncols);
  for (int j = 0; j < c->ncols; j++) {
    push_column(L, c, j, numbers);
    lua_setfield(L, -2, c->header[j]);
  }
  lua_setfield(L, -2, "columns");
  lua_pushinteger(L, (lua_Integer)c->nrows);
  lua_setfield(L, -2, "nrows");
  sf_csv_free(c); /* now, rather than at the next collection */
  return 1;
}

static const luaL_Reg lib[] = {
    {"read_idx", l_read_idx},   {"read_cifar", l_read_cifar}, {"read_npy", l_read_npy}, {"write_npy", l_write_npy},
    {"read_png", l_read_png},   {"write_png", l_write_png},   {"read_csv", l_read_csv}, {NULL, NULL},
};

const sfl_area sfl_area_io = {lib, NULL, NULL, NULL};
