/* Generated-data bindings as sf.synth.*: camelyon-synth patches and fmow-synth tiles, their
 * priors, and the few directory operations the Lua driver needs to write a data set
 * atomically (mkdir, mkdtemp, rmtree). lua/surgft/data/synth.lua is the user-facing side. */
#include <errno.h>
#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "../data/synth.h"
#include "sfl.h"

/* Function names are spelled out: these are often called through pcall, where Lua
 * cannot name the running function. */
static int check_int(lua_State *L, int arg, const char *fn) {
  int isnum = 0;
  lua_Integer v = lua_tointegerx(L, arg, &isnum);
  if (!isnum)
    luaL_error(L, "bad argument #%d to '%s' (integer expected, got %s)", arg, fn,
               lua_type(L, arg) == LUA_TNUMBER ? lua_tostring(L, arg) : luaL_typename(L, arg));
  if (v < INT_MIN || v > INT_MAX) luaL_error(L, "bad argument #%d to '%s' (%I is out of range)", arg, fn, v);
  return (int)v;
}

static sf_rng *check_rng(lua_State *L, int arg, const char *fn) {
  sf_rng *r = luaL_testudata(L, arg, SFL_RNG);
  if (!r) luaL_error(L, "bad argument #%d to '%s' (rng expected, got %s)", arg, fn, luaL_typename(L, arg));
  return r;
}

/* sf.synth.camelyon_patch(size, center, tumor, slide_key, rng) -> [3,size,size];
 * center is the WILDS id 0..4, tumor 0 or 1 */
static int l_camelyon_patch(lua_State *L) {
  static const char fn[] = "camelyon_patch";
  int size = check_int(L, 1, fn), center = check_int(L, 2, fn), tumor = check_int(L, 3, fn);
  int isnum = 0;
  uint64_t key = (uint64_t)lua_tointegerx(L, 4, &isnum);
  if (!isnum) return luaL_error(L, "bad argument #4 to '%s' (integer slide key expected, got %s)", fn, luaL_typename(L, 4));
  sf_rng *r = check_rng(L, 5, fn);
  sf_tensor *t = sfl_push(L);
  SFL_TRY(L, sf_synth_camelyon_patch(t, size, center, tumor, key, r));
  sfl_account(L, t);
  return 1;
}

/* sf.synth.camelyon_prevalence(center) -> tumour share of the hospital's patches */
static int l_camelyon_prevalence(lua_State *L) {
  int center = check_int(L, 1, "camelyon_prevalence");
  double p = sf_synth_camelyon_prevalence(center);
  if (p < 0.0)
    return luaL_error(L, "bad argument #1 to 'camelyon_prevalence' (center %d, expected 0..%d)", center,
                      SF_SYNTH_CAMELYON_CENTERS - 1);
  lua_pushnumber(L, p);
  return 1;
}

/* sf.synth.fmow_tile(size, class, region, year, rng) -> [3,size,size]; class and region are
 * 1-based indices into fmow_classes() and fmow_regions() */
static int l_fmow_tile(lua_State *L) {
  static const char fn[] = "fmow_tile";
  int size = check_int(L, 1, fn), cls = check_int(L, 2, fn), region = check_int(L, 3, fn), year = check_int(L, 4, fn);
  sf_rng *r = check_rng(L, 5, fn);
  if (cls < 1 || cls > SF_SYNTH_FMOW_CLASSES)
    return luaL_error(L, "bad argument #2 to 'fmow_tile' (class %d, expected 1..%d)", cls, SF_SYNTH_FMOW_CLASSES);
  if (region < 1 || region > SF_SYNTH_FMOW_REGIONS)
    return luaL_error(L, "bad argument #3 to 'fmow_tile' (region %d, expected 1..%d)", region, SF_SYNTH_FMOW_REGIONS);
  sf_tensor *t = sfl_push(L);
  SFL_TRY(L, sf_synth_fmow_tile(t, size, cls - 1, region - 1, year, r));
  sfl_account(L, t);
  return 1;
}

static void push_names(lua_State *L, const char *const *names) {
  lua_newtable(L);
  for (int i = 0; names[i]; i++) {
    lua_pushstring(L, names[i]);
    lua_rawseti(L, -2, i + 1);
  }
}
static int l_fmow_classes(lua_State *L) {
  push_names(L, sf_synth_fmow_classes());
  return 1;
}
static int l_fmow_regions(lua_State *L) {
  push_names(L, sf_synth_fmow_regions());
  return 1;
}

static void push_probs(lua_State *L, const double *p, int n) {
  lua_createtable(L, n, 0);
  for (int i = 0; i < n; i++) {
    lua_pushnumber(L, p[i]);
    lua_rawseti(L, -2, i + 1);
  }
}

/* sf.synth.fmow_class_prior(region, year) -> {p1..p10} (region 1-based) */
static int l_fmow_class_prior(lua_State *L) {
  int region = check_int(L, 1, "fmow_class_prior"), year = check_int(L, 2, "fmow_class_prior");
  if (region < 1 || region > SF_SYNTH_FMOW_REGIONS)
    return luaL_error(L, "bad argument #1 to 'fmow_class_prior' (region %d, expected 1..%d)", region, SF_SYNTH_FMOW_REGIONS);
  double p[SF_SYNTH_FMOW_CLASSES];
  SFL_TRY(L, sf_synth_fmow_class_prior(p, region - 1, year));
  push_probs(L, p, SF_SYNTH_FMOW_CLASSES);
  return 1;
}

/* sf.synth.fmow_region_prior(year) -> {q1..q6} */
static int l_fmow_region_prior(lua_State *L) {
  int year = check_int(L, 1, "fmow_region_prior");
  double q[SF_SYNTH_FMOW_REGIONS];
  SFL_TRY(L, sf_synth_fmow_region_prior(q, year));
  push_probs(L, q, SF_SYNTH_FMOW_REGIONS);
  return 1;
}

/* ---- directories: environmental failures return nil, message ---- */

static int fail_errno(lua_State *L, const char *what, const char *path) {
  lua_pushnil(L);
  lua_pushfstring(L, "%s '%s': %s", what, path, strerror(errno));
  return 2;
}

/* sf.synth.mkdir(path) -> true (also when it exists as a directory) | nil, msg */
static int l_mkdir(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  if (mkdir(path, 0777) != 0) {
    struct stat st;
    if (errno != EEXIST || stat(path, &st) != 0 || !S_ISDIR(st.st_mode)) return fail_errno(L, "cannot create directory", path);
  }
  lua_pushboolean(L, 1);
  return 1;
}

/* sf.synth.mkdtemp(prefix) -> a new directory prefix .. "XXXXXX" made unique | nil, msg */
static int l_mkdtemp(lua_State *L) {
  size_t n;
  const char *prefix = luaL_checklstring(L, 1, &n);
  luaL_Buffer b;
  char *tpl = luaL_buffinitsize(L, &b, n + 7);
  memcpy(tpl, prefix, n);
  memcpy(tpl + n, "XXXXXX", 7);
  if (!mkdtemp(tpl)) return fail_errno(L, "cannot create a temporary directory", prefix);
  luaL_pushresultsize(&b, n + 6);
  return 1;
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
  (void)st;
  (void)flag;
  (void)ftw;
  return remove(path);
}

/* sf.synth.rmtree(path) -> true (also when absent) | nil, msg. Does not follow symlinks. */
static int l_rmtree(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  if (path[0] == '\0' || strcmp(path, "/") == 0)
    return luaL_error(L, "bad argument #1 to 'rmtree' (refusing to remove '%s')", path);
  struct stat st;
  if (lstat(path, &st) != 0 && errno == ENOENT) {
    lua_pushboolean(L, 1);
    return 1;
  }
  if (nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS) != 0) return fail_errno(L, "cannot remove", path);
  lua_pushboolean(L, 1);
  return 1;
}

static const luaL_Reg lib[] = {
    {"camelyon_patch", l_camelyon_patch},
    {"camelyon_prevalence", l_camelyon_prevalence},
    {"fmow_tile", l_fmow_tile},
    {"fmow_classes", l_fmow_classes},
    {"fmow_regions", l_fmow_regions},
    {"fmow_class_prior", l_fmow_class_prior},
    {"fmow_region_prior", l_fmow_region_prior},
    {"mkdir", l_mkdir},
    {"mkdtemp", l_mkdtemp},
    {"rmtree", l_rmtree},
    {NULL, NULL},
};

const sfl_area sfl_area_synth = {lib, NULL, NULL, "synth"};
