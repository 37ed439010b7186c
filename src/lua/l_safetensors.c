/* safetensors raw-data bindings (sf.safetensors.*): tensor bytes between Lua file handles
 * and tensors, for lua/surgft/checkpoint.lua, which owns the JSON header. */
#include <stdio.h>
#include <unistd.h>

#include "../io/safetensors.h"
#include "sfl.h"

/* the open Lua file (io.open) at arg */
static FILE *check_file(lua_State *L, int arg) {
  luaL_Stream *p = luaL_checkudata(L, arg, LUA_FILEHANDLE);
  if (!p->closef) luaL_error(L, "bad argument #%d to '%s' (file is closed)", arg, sfl_fname(L));
  return p->f;
}

/* sf.safetensors.read(file, path, name, offset, dtype, shape) -> float32 tensor of shape
 * read from the absolute byte offset of file (path and name are for messages) */
static int l_read(lua_State *L) {
  FILE *fp = check_file(L, 1);
  const char *path = luaL_checkstring(L, 2), *name = luaL_checkstring(L, 3);
  int64_t offset = sfl_checkinteger(L, 4);
  const char *dtype = luaL_checkstring(L, 5);
  luaL_checktype(L, 6, LUA_TTABLE);
  int64_t shape[SF_MAX_DIMS];
  int nd = sfl_checkshape(L, 6, shape, NULL);
  sf_tensor *t = sfl_push(L);
  SFL_TRY(L, sf_st_read(t, fp, path, name, offset, dtype, nd, shape));
  sfl_account(L, t);
  return 1;
}

/* sf.safetensors.write(file, path, tensor): tensor's elements as little-endian F32 at the
 * file's current position (path is for messages) */
static int l_write(lua_State *L) {
  FILE *fp = check_file(L, 1);
  const char *path = luaL_checkstring(L, 2);
  SFL_TRY(L, sf_st_write(fp, path, sfl_check(L, 3)));
  return 0;
}

/* sf.safetensors.dtype_size(dtype) -> bytes per element, or nil when the dtype is not read */
static int l_dtype_size(lua_State *L) {
  int n = sf_st_dtype_size(luaL_checkstring(L, 1));
  if (n) lua_pushinteger(L, n);
  else lua_pushnil(L);
  return 1;
}

/* sf.safetensors.dtypes() -> "F64, F32, ..." (the dtypes read, for messages) */
static int l_dtypes(lua_State *L) {
  lua_pushliteral(L, SF_ST_DTYPES);
  return 1;
}

/* sf.safetensors.tmpname(path) -> path .. ".tmp.<pid>": a temporary name beside path that
 * concurrent processes writing the same path do not share */
static int l_tmpname(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  lua_pushfstring(L, "%s.tmp.%d", path, (int)getpid());
  return 1;
}

static const luaL_Reg lib[] = {
    {"read", l_read}, {"write", l_write}, {"dtype_size", l_dtype_size}, {"dtypes", l_dtypes}, {"tmpname", l_tmpname},
    {NULL, NULL},
};

const sfl_area sfl_area_safetensors = {lib, NULL, NULL, "safetensors"};
