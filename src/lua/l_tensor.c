/* Tensor bindings: the shared helpers of sfl.h, lifetime, constructors, shape, views,
 * copies, element access and conversion to and from Lua tables. */
#include <math.h>
#include <string.h>

#include "sfl.h"

/* ---- shared helpers ---- */

/* The name the user called: the call site's name when Lua knows it (t:size(4)), else
 * the function's name in the module table (calls through pcall have no call site). */
const char *sfl_fname(lua_State *L) {
  lua_Debug ar;
  if (!lua_getstack(L, 0, &ar)) return "?";
  if (lua_getinfo(L, "nf", &ar) && ar.name) {
    lua_pop(L, 1);
    return ar.name;
  }
  lua_CFunction f = lua_tocfunction(L, -1);
  lua_pop(L, 1);
  const char *name = "?";
  if (!f) return name;
  if (lua_getfield(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE) == LUA_TTABLE &&
      lua_getfield(L, -1, "surgft.core") == LUA_TTABLE) {
    lua_pushnil(L);
    while (lua_next(L, -2)) {
      if (lua_tocfunction(L, -1) == f && lua_type(L, -2) == LUA_TSTRING) {
        name = lua_tostring(L, -2); /* kept alive by the module table */
        lua_pop(L, 2);
        break;
      }
      lua_pop(L, 1);
    }
  }
  lua_pop(L, 2);
  return name;
}

sf_tensor *sfl_test(lua_State *L, int arg) { return luaL_testudata(L, arg, SFL_TENSOR); }

sf_tensor *sfl_check(lua_State *L, int arg) {
  sf_tensor *t = luaL_testudata(L, arg, SFL_TENSOR);
  if (!t) {
    const char *got = luaL_typename(L, arg);
    if (luaL_testudata(L, arg, SFL_RNG)) got = "rng";
    luaL_error(L, "bad argument #%d to '%s' (tensor expected, got %s)", arg, sfl_fname(L), got);
  }
  if (!t->storage) luaL_error(L, "bad argument #%d to '%s' (tensor is empty: it was released)", arg, sfl_fname(L));
  return t;
}

/* Tensor memory lives outside Lua's heap, so Lua's collector cannot see how much garbage
 * dead tensors hold. Before each new result, when the bytes held by live storages exceed
 * the threshold, run a full collection; the next threshold is what survived plus a slack
 * of an eighth of it, at least 32 MB, and at least 16x the Lua heap (a full collection
 * walks the Lua heap: this bounds that walk to a sixteenth of a byte per tensor byte
 * allocated, so a script holding big Lua tables does not collect at every layer). With a
 * 1.25x slack a ResNet-20 training step at batch 128 carried ~60 MB of dead gradients at
 * its peak; at a few hundred kB of Lua heap a full collection costs ~0.15 ms, a few per
 * step. The threshold is process-wide, like the byte count. */
static const int64_t gc_min_slack = (int64_t)32 << 20;
static _Atomic int64_t gc_threshold = (int64_t)32 << 20;

static void gc_pace(lua_State *L) {
  int64_t live = sf_storage_live_bytes();
  if (live <= gc_threshold) return;
  lua_gc(L, LUA_GCCOLLECT);
  live = sf_storage_live_bytes();
  int64_t heap = (int64_t)lua_gc(L, LUA_GCCOUNT) * 1024 + lua_gc(L, LUA_GCCOUNTB);
  int64_t slack = live / 8;
  if (slack < gc_min_slack) slack = gc_min_slack;
  if (slack < 16 * heap) slack = 16 * heap;
  gc_threshold = live + slack;
}

sf_tensor *sfl_push(lua_State *L) {
  gc_pace(L);
  sf_tensor *t = lua_newuserdatauv(L, sizeof *t, 0);
  memset(t, 0, sizeof *t);
  luaL_setmetatable(L, SFL_TENSOR);
  return t;
}

void sfl_account(lua_State *L, const sf_tensor *t) {
  if (t->storage && t->storage->refcount == 1) {
    int64_t kb = t->storage->numel * (int64_t)sizeof(float) / 1024;
    if (kb > 0) lua_gc(L, LUA_GCSTEP, kb > 1000000 ? 1000000 : (int)kb);
  }
}

int sfl_fail(lua_State *L) { return luaL_error(L, "%s", sf_errmsg()); }

int64_t sfl_checkinteger(lua_State *L, int arg) {
  int isnum = 0;
  lua_Integer v = lua_tointegerx(L, arg, &isnum);
  if (!isnum) {
    if (lua_type(L, arg) == LUA_TNUMBER)
      luaL_error(L, "bad argument #%d to '%s' (integer expected, got %s)", arg, sfl_fname(L),
                 lua_tostring(L, arg));
    luaL_error(L, "bad argument #%d to '%s' (integer expected, got %s)", arg, sfl_fname(L), luaL_typename(L, arg));
  }
  return (int64_t)v;
}

int sfl_checkdim(lua_State *L, int arg, const sf_tensor *t, int extra) {
  char buf[SF_SHAPE_BUF];
  int64_t d = sfl_checkinteger(L, arg);
  int n = t->ndim + extra;
  int64_t z = d < 0 ? d + n : d - 1;
  if (d == 0 || z < 0 || z >= n)
    luaL_error(L, "bad argument #%d to '%s' (dimension %I out of range for a %d-D tensor of shape %s)", arg,
               sfl_fname(L), (lua_Integer)d, t->ndim, sf_tshape(t, buf));
  return (int)z;
}

int sfl_optdim(lua_State *L, int arg, const sf_tensor *t, int def) {
  return lua_isnoneornil(L, arg) ? def : sfl_checkdim(L, arg, t, 0);
}

int64_t sfl_checkindex(lua_State *L, int arg, int64_t size, const char *what) {
  int64_t i = sfl_checkinteger(L, arg);
  int64_t z = i < 0 ? i + size : i - 1;
  if (i == 0 || z < 0 || z >= size)
    luaL_error(L, "bad argument #%d to '%s' (index %I out of range for %s of size %I)", arg, sfl_fname(L),
               (lua_Integer)i, what, (lua_Integer)size);
  return z;
}

int sfl_checkshape(lua_State *L, int arg, int64_t *size, int *next) {
  int nd = 0;
  if (lua_istable(L, arg)) {
    lua_Integer n = luaL_len(L, arg);
    if (n > SF_MAX_DIMS)
      luaL_error(L, "bad argument #%d to '%s' (shape has %I dimensions, at most %d allowed)", arg, sfl_fname(L),
                 n, SF_MAX_DIMS);
    for (lua_Integer i = 1; i <= n; i++) {
      lua_geti(L, arg, i);
      int isnum = 0;
      lua_Integer v = lua_tointegerx(L, -1, &isnum);
      if (!isnum)
        luaL_error(L, "bad argument #%d to '%s' (shape entry %I is %s, expected an integer)", arg, sfl_fname(L), i,
                   lua_type(L, -1) == LUA_TNUMBER ? lua_tostring(L, -1) : luaL_typename(L, -1));
      size[nd++] = (int64_t)v;
      lua_pop(L, 1);
    }
    if (next) *next = arg + 1;
  } else {
    int top = lua_gettop(L), a = arg;
    while (a <= top && lua_type(L, a) == LUA_TNUMBER) {
      if (nd == SF_MAX_DIMS)
        luaL_error(L, "bad argument #%d to '%s' (shape has more than %d dimensions)", a, sfl_fname(L), SF_MAX_DIMS);
      size[nd++] = sfl_checkinteger(L, a);
      a++;
    }
    if (nd == 0 && !(next && a > top))
      luaL_error(L, "bad argument #%d to '%s' (shape expected as a table or numbers, got %s)", arg, sfl_fname(L),
                 luaL_typename(L, arg));
    if (next) *next = a;
  }
  for (int d = 0; d < nd; d++) {
    if (size[d] < 0) {
      char buf[SF_SHAPE_BUF];
      luaL_error(L, "bad argument #%d to '%s' (negative size in shape %s)", arg, sfl_fname(L),
                 sf_shape_str(buf, sizeof buf, nd, size));
    }
  }
  return nd;
}

/* Like sfl_checkshape, but -1 entries are allowed (reshape, view, expand). */
static int checkshape_inferred(lua_State *L, int arg, int64_t *size) {
  int nd = 0;
  if (lua_istable(L, arg)) {
    lua_Integer n = luaL_len(L, arg);
    if (n > SF_MAX_DIMS)
      luaL_error(L, "bad argument #%d to '%s' (shape has %I dimensions, at most %d allowed)", arg, sfl_fname(L), n,
                 SF_MAX_DIMS);
    for (lua_Integer i = 1; i <= n; i++) {
      lua_geti(L, arg, i);
      int isnum = 0;
      lua_Integer v = lua_tointegerx(L, -1, &isnum);
      if (!isnum)
        luaL_error(L, "bad argument #%d to '%s' (shape entry %I is %s, expected an integer)", arg, sfl_fname(L), i,
                   luaL_typename(L, -1));
      size[nd++] = (int64_t)v;
      lua_pop(L, 1);
    }
  } else {
    int top = lua_gettop(L);
    if (arg > top || lua_type(L, arg) != LUA_TNUMBER)
      luaL_error(L, "bad argument #%d to '%s' (shape expected as a table or numbers, got %s)", arg, sfl_fname(L),
                 luaL_typename(L, arg));
    for (int a = arg; a <= top; a++) {
      if (nd == SF_MAX_DIMS)
        luaL_error(L, "bad argument #%d to '%s' (shape has more than %d dimensions)", a, sfl_fname(L), SF_MAX_DIMS);
      size[nd++] = sfl_checkinteger(L, a);
    }
  }
  return nd;
}

/* ---- metamethods: lifetime ---- */

static int t_gc(lua_State *L) {
  sf_tensor *t = luaL_checkudata(L, 1, SFL_TENSOR);
  sf_tensor_release(t);
  return 0;
}

/* ---- constructors ---- */

static int l_fill_new(lua_State *L, float value, int use_value) {
  int64_t size[SF_MAX_DIMS];
  int next, nd;
  float v = value;
  if (!use_value && !lua_istable(L, 1)) { /* sf.full(2, 3, value): the last number is the value */
    int top = lua_gettop(L);
    v = (float)luaL_checknumber(L, top);
    lua_pop(L, 1);
    nd = sfl_checkshape(L, 1, size, &next);
  } else {
    nd = sfl_checkshape(L, 1, size, &next);
    if (!use_value) v = (float)luaL_checknumber(L, next);
  }
  sf_tensor *t = sfl_push(L);
  SFL_TRY(L, sf_tensor_full(t, nd, size, v));
  sfl_account(L, t);
  return 1;
}

static int l_zeros(lua_State *L) { return l_fill_new(L, 0.0f, 1); }
static int l_ones(lua_State *L) { return l_fill_new(L, 1.0f, 1); }
static int l_full(lua_State *L) { return l_fill_new(L, 0.0f, 0); }

static int l_empty(lua_State *L) {
  int64_t size[SF_MAX_DIMS];
  int nd = sfl_checkshape(L, 1, size, NULL);
  sf_tensor *t = sfl_push(L);
  SFL_TRY(L, sf_tensor_new(t, nd, size));
  sfl_account(L, t);
  return 1;
}

/* sf.arange(stop) / sf.arange(start, stop[, step]): PyTorch's values, stop excluded.
 * sf.range(start, stop[, step]): Torch7's, stop included. */
static int arange_impl(lua_State *L, int inclusive) {
  double start = luaL_checknumber(L, 1), stop, step = luaL_optnumber(L, 3, 1.0);
  if (lua_isnoneornil(L, 2)) {
    stop = start;
    start = 0;
  } else {
    stop = luaL_checknumber(L, 2);
  }
  if (inclusive && step != 0) stop += step * 0.5;
  sf_tensor *t = sfl_push(L);
  SFL_TRY(L, sf_tensor_arange(t, start, stop, step));
  sfl_account(L, t);
  return 1;
}
static int l_arange(lua_State *L) { return arange_impl(L, 0); }
static int l_range(lua_State *L) { return arange_impl(L, 1); }

static int l_linspace(lua_State *L) {
  double a = luaL_checknumber(L, 1), b = luaL_checknumber(L, 2);
  int64_t n = sfl_checkinteger(L, 3);
  sf_tensor *t = sfl_push(L);
  SFL_TRY(L, sf_tensor_linspace(t, a, b, n));
  return 1;
}

static int l_eye(lua_State *L) {
  int64_t n = sfl_checkinteger(L, 1);
  int64_t m = lua_isnoneornil(L, 2) ? n : sfl_checkinteger(L, 2);
  sf_tensor *t = sfl_push(L);
  SFL_TRY(L, sf_tensor_eye(t, n, m));
  sfl_account(L, t);
  return 1;
}

/* sf.tensor{{1,2},{3,4}}: walk once for the shape, once for the values. */
static void table_shape(lua_State *L, int idx, int depth, int64_t *size, int *nd) {
  if (lua_type(L, idx) != LUA_TTABLE) return;
  if (depth >= SF_MAX_DIMS) luaL_error(L, "bad argument #1 to 'tensor' (nested deeper than %d levels)", SF_MAX_DIMS);
  size[depth] = (int64_t)luaL_len(L, idx);
  *nd = depth + 1;
  if (size[depth] > 0) {
    lua_geti(L, idx, 1);
    table_shape(L, lua_gettop(L), depth + 1, size, nd);
    lua_pop(L, 1);
  }
}

static void table_fill(lua_State *L, int idx, int depth, const int64_t *size, int nd, float **p, char *path,
                       size_t pathlen) {
  if (depth == nd) {
    int isnum = 0;
    lua_Number v = lua_tonumberx(L, idx, &isnum);
    if (!isnum)
      luaL_error(L, "bad argument #1 to 'tensor' (element %s is %s, expected a number)", path, luaL_typename(L, idx));
    *(*p)++ = (float)v;
    return;
  }
  if (lua_type(L, idx) != LUA_TTABLE || (int64_t)luaL_len(L, idx) != size[depth]) {
    luaL_error(L, "bad argument #1 to 'tensor' (ragged nesting at %s: expected a table of %I entries, got %s)",
               pathlen ? path : "the top", (lua_Integer)size[depth],
               lua_type(L, idx) == LUA_TTABLE ? "a table of another length" : luaL_typename(L, idx));
  }
  for (int64_t i = 1; i <= size[depth]; i++) {
    size_t n = strlen(path);
    snprintf(path + n, pathlen - n, "[%lld]", (long long)i);
    lua_geti(L, idx, (lua_Integer)i);
    table_fill(L, lua_gettop(L), depth + 1, size, nd, p, path, pathlen);
    lua_pop(L, 1);
    path[n] = '\0';
  }
}

static int l_tensor(lua_State *L) {
  int64_t size[SF_MAX_DIMS];
  int nd = 0;
  if (lua_type(L, 1) == LUA_TNUMBER) {
    sf_tensor *t = sfl_push(L);
    SFL_TRY(L, sf_tensor_full(t, 0, size, (float)lua_tonumber(L, 1)));
    return 1;
  }
  if (sfl_test(L, 1)) { /* sf.tensor(t): a copy */
    sf_tensor *src = sfl_check(L, 1), *t = sfl_push(L);
    SFL_TRY(L, sf_tensor_clone(t, src));
    sfl_account(L, t);
    return 1;
  }
  luaL_checktype(L, 1, LUA_TTABLE);
  table_shape(L, 1, 0, size, &nd);
  luaL_checkstack(L, 2 * SF_MAX_DIMS + 4, "tensor");
  sf_tensor *t = sfl_push(L);
  SFL_TRY(L, sf_tensor_new(t, nd, size));
  float *p = sf_tensor_data(t);
  char path[16 * SF_MAX_DIMS + 8] = "";
  table_fill(L, 1, 0, size, nd, &p, path, sizeof path);
  sfl_account(L, t);
  return 1;
}

/* ---- shape queries ---- */

static void push_int_table(lua_State *L, int n, const int64_t *v) {
  lua_createtable(L, n, 0);
  for (int i = 0; i < n; i++) {
    lua_pushinteger(L, (lua_Integer)v[i]);
    lua_rawseti(L, -2, i + 1);
  }
}

static int t_size(lua_State *L) {
  sf_tensor *t = sfl_check(L, 1);
  if (lua_isnoneornil(L, 2)) {
    push_int_table(L, t->ndim, t->size);
  } else {
    lua_pushinteger(L, (lua_Integer)t->size[sfl_checkdim(L, 2, t, 0)]);
  }
  return 1;
}

static int t_shape(lua_State *L) { return t_size(L); }

static int t_stride(lua_State *L) {
  sf_tensor *t = sfl_check(L, 1);
  if (lua_isnoneornil(L, 2)) {
    push_int_table(L, t->ndim, t->stride);
  } else {
    lua_pushinteger(L, (lua_Integer)t->stride[sfl_checkdim(L, 2, t, 0)]);
  }
  return 1;
}

static int t_numel(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)sf_tensor_numel(sfl_check(L, 1)));
  return 1;
}

static int t_dim(lua_State *L) {
  lua_pushinteger(L, sfl_check(L, 1)->ndim);
  return 1;
}

static int t_is_contiguous(lua_State *L) {
  lua_pushboolean(L, sf_tensor_is_contiguous(sfl_check(L, 1)));
  return 1;
}

/* Two tensors share storage (so writing one is seen in the other). */
static int t_shares_storage(lua_State *L) {
  sf_tensor *a = sfl_check(L, 1), *b = sfl_check(L, 2);
  lua_pushboolean(L, a->storage == b->storage);
  return 1;
}

static int t_len(lua_State *L) {
  sf_tensor *t = sfl_check(L, 1);
  lua_pushinteger(L, t->ndim ? (lua_Integer)t->size[0] : 1);
  return 1;
}

/* ---- views ---- */

static int t_reshape_impl(lua_State *L, int copy_ok) {
  sf_tensor *src = sfl_check(L, 1);
  int64_t size[SF_MAX_DIMS];
  int nd = checkshape_inferred(L, 2, size);
  sf_tensor *t = sfl_push(L);
  SFL_TRY(L, copy_ok ? sf_tensor_reshape(t, src, nd, size) : sf_tensor_view(t, src, nd, size));
  sfl_account(L, t);
  return 1;
}
static int t_reshape(lua_State *L) { return t_reshape_impl(L, 1); }
static int t_view(lua_State *L) { return t_reshape_impl(L, 0); }

static int t_transpose(lua_State *L) {
  sf_tensor *src = sfl_check(L, 1);
  int d0, d1;
  if (lua_isnoneornil(L, 2)) {
    if (src->ndim != 2) {
      char buf[SF_SHAPE_BUF];
      return luaL_error(L, "bad argument #1 to '%s' (transpose without dimensions needs a 2-D tensor, got shape %s)",
                        sfl_fname(L), sf_tshape(src, buf));
    }
    d0 = 0;
    d1 = 1;
  } else {
    d0 = sfl_checkdim(L, 2, src, 0);
    d1 = sfl_checkdim(L, 3, src, 0);
  }
  sf_tensor *t = sfl_push(L);
  SFL_TRY(L, sf_tensor_transpose(t, src, d0, d1));
  return 1;
}

static int t_t(lua_State *L) { return t_transpose(L); }

static int t_permute(lua_State *L) {
  sf_tensor *src = sfl_check(L, 1);
  int64_t dims[SF_MAX_DIMS];
  int nd = sfl_checkshape(L, 2, dims, NULL);
  char buf[SF_SHAPE_BUF];
  if (nd != src->ndim)
    return luaL_error(L, "bad argument #2 to '%s' (%d dimensions given for a %d-D tensor of shape %s)", sfl_fname(L),
                      nd, src->ndim, sf_tshape(src, buf));
  int perm[SF_MAX_DIMS];
  for (int d = 0; d < nd; d++) perm[d] = (int)dims[d] - 1;
  sf_tensor *t = sfl_push(L);
  SFL_TRY(L, sf_tensor_permute(t, src, perm));
  return 1;
}

static int t_narrow(lua_State *L) {
  sf_tensor *src = sfl_check(L, 1);
  int dim = sfl_checkdim(L, 2, src, 0);
  int64_t start = sfl_checkindex(L, 3, src->size[dim] + 1, "a narrow start"); /* start may be size+1 with len 0 */
  int64_t len = sfl_checkinteger(L, 4);
  sf_tensor *t = sfl_push(L);
  SFL_TRY(L, sf_tensor_narrow(t, src, dim, start, len));
  return 1;
}

static int t_select(lua_State *L) {
  sf_tensor *src = sfl_check(L, 1);
  int dim = sfl_checkdim(L, 2, src, 0);
  int64_t index = sfl_checkindex(L, 3, src->size[dim], "the selected dimension");
  sf_tensor *t = sfl_push(L);
  SFL_TRY(L, sf_tensor_select(t, src, dim, index));
  return 1;
}

static int t_squeeze(lua_State *L) {
  sf_tensor *src = sfl_check(L, 1);
  int dim = lua_isnoneornil(L, 2) ? -1 : sfl_checkdim(L, 2, src, 0);
  sf_tensor *t = sfl_push(L);
  SFL_TRY(L, sf_tensor_squeeze(t, src, dim));
  return 1;
}

static int t_unsqueeze(lua_State *L) {
  sf_tensor *src = sfl_check(L, 1);
  int dim = sfl_checkdim(L, 2, src, 1);
  sf_tensor *t = sfl_push(L);
  SFL_TRY(L, sf_tensor_unsqueeze(t, src, dim));
  return 1;
}

static int t_expand(lua_State *L) {
  sf_tensor *src = sfl_check(L, 1);
  int64_t size[SF_MAX_DIMS];
  int nd = checkshape_inferred(L, 2, size);
  sf_tensor *t = sfl_push(L);
  SFL_TRY(L, sf_tensor_expand(t, src, nd, size));
  return 1;
}

/* ---- copies ---- */

static int t_contiguous(lua_State *L) {
  sf_tensor *src = sfl_check(L, 1);
  if (sf_tensor_is_contiguous(src)) {
    lua_settop(L, 1);
    return 1;
  }
  sf_tensor *t = sfl_push(L);
  SFL_TRY(L, sf_tensor_clone(t, src));
  sfl_account(L, t);
  return 1;
}

static int t_clone(lua_State *L) {
  sf_tensor *src = sfl_check(L, 1);
  sf_tensor *t = sfl_push(L);
  SFL_TRY(L, sf_tensor_clone(t, src));
  sfl_account(L, t);
  return 1;
}

/* dst:copy(src): elementwise copy into dst, same element count; returns dst */
static int t_copy(lua_State *L) {
  sf_tensor *dst = sfl_check(L, 1), *src = sfl_check(L, 2);
  SFL_TRY(L, sf_tensor_copy(dst, src));
  lua_settop(L, 1);
  return 1;
}

static int t_fill(lua_State *L) {
  sf_tensor *t = sfl_check(L, 1);
  float v = (float)luaL_checknumber(L, 2);
  SFL_TRY(L, sf_tensor_fill(t, v));
  lua_settop(L, 1);
  return 1;
}

static int t_zero(lua_State *L) {
  sf_tensor *t = sfl_check(L, 1);
  SFL_TRY(L, sf_tensor_fill(t, 0.0f));
  lua_settop(L, 1);
  return 1;
}

/* ---- element access ---- */

static float *element(lua_State *L, sf_tensor *t, int first, int nidx) {
  char buf[SF_SHAPE_BUF];
  if (nidx != t->ndim)
    luaL_error(L, "bad argument #%d to '%s' (%d indices given for a %d-D tensor of shape %s)", first, sfl_fname(L),
               nidx, t->ndim, sf_tshape(t, buf));
  int64_t off = t->offset;
  for (int d = 0; d < t->ndim; d++) {
    int64_t i = sfl_checkinteger(L, first + d);
    int64_t z = i < 0 ? i + t->size[d] : i - 1;
    if (i == 0 || z < 0 || z >= t->size[d])
      luaL_error(L, "bad argument #%d to '%s' (index %I out of range for dimension %d of size %I, shape %s)",
                 first + d, sfl_fname(L), (lua_Integer)i, d + 1, (lua_Integer)t->size[d], sf_tshape(t, buf));
    off += z * t->stride[d];
  }
  return t->storage->data + off;
}

/* t:get(i, j, ...) */
static int t_get(lua_State *L) {
  sf_tensor *t = sfl_check(L, 1);
  lua_pushnumber(L, (lua_Number)*element(L, t, 2, lua_gettop(L) - 1));
  return 1;
}

/* t:set(i, j, ..., value) */
static int t_set(lua_State *L) {
  sf_tensor *t = sfl_check(L, 1);
  int top = lua_gettop(L);
  float v = (float)luaL_checknumber(L, top);
  *element(L, t, 2, top - 2) = v;
  lua_settop(L, 1);
  return 1;
}

/* t:item(): the value of a one-element tensor */
static int t_item(lua_State *L) {
  sf_tensor *t = sfl_check(L, 1);
  char buf[SF_SHAPE_BUF];
  if (sf_tensor_numel(t) != 1)
    return luaL_error(L, "bad argument #1 to '%s' (item needs a one-element tensor, got shape %s)", sfl_fname(L),
                      sf_tshape(t, buf));
  lua_pushnumber(L, (lua_Number)*sf_tensor_ptr_linear(t, 0));
  return 1;
}

static void push_table_rec(lua_State *L, const sf_tensor *t, int d, int64_t off) {
  if (d == t->ndim) {
    lua_pushnumber(L, (lua_Number)t->storage->data[off]);
    return;
  }
  lua_createtable(L, (int)t->size[d], 0);
  for (int64_t i = 0; i < t->size[d]; i++) {
    push_table_rec(L, t, d + 1, off + i * t->stride[d]);
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
}

static int t_totable(lua_State *L) {
  sf_tensor *t = sfl_check(L, 1);
  luaL_checkstack(L, SF_MAX_DIMS + 4, "totable");
  push_table_rec(L, t, 0, t->offset);
  return 1;
}

/* sf.memory() -> bytes held by live tensor storages (all of them, Lua-owned or not), and
 * bytes of released big storages kept mapped for reuse (see sf_storage_new) */
static int l_memory(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)sf_storage_live_bytes());
  lua_pushinteger(L, (lua_Integer)sf_storage_cached_bytes());
  return 2;
}

/* sf.memory_trim(): a full collection, then every cached mapping is given back */
static int l_memory_trim(lua_State *L) {
  lua_gc(L, LUA_GCCOLLECT);
  sf_storage_trim();
  return 0;
}

static int l_is_tensor(lua_State *L) {
  lua_pushboolean(L, sfl_test(L, 1) != NULL);
  return 1;
}

static const luaL_Reg lib[] = {
    {"zeros", l_zeros}, {"ones", l_ones},       {"full", l_full}, {"empty", l_empty},
    {"arange", l_arange}, {"range", l_range}, {"linspace", l_linspace}, {"eye", l_eye}, {"tensor", l_tensor},
    {"memory", l_memory}, {"memory_trim", l_memory_trim}, {"is_tensor", l_is_tensor}, {NULL, NULL},
};

static const luaL_Reg methods[] = {
    {"size", t_size},
    {"shape", t_shape},
    {"stride", t_stride},
    {"numel", t_numel},
    {"dim", t_dim},
    {"is_contiguous", t_is_contiguous},
    {"shares_storage", t_shares_storage},
    {"reshape", t_reshape},
    {"view", t_view},
    {"transpose", t_transpose},
    {"t", t_t},
    {"permute", t_permute},
    {"narrow", t_narrow},
    {"select", t_select},
    {"squeeze", t_squeeze},
    {"unsqueeze", t_unsqueeze},
    {"expand", t_expand},
    {"contiguous", t_contiguous},
    {"clone", t_clone},
    {"copy", t_copy},
    {"fill", t_fill},
    {"zero", t_zero},
    {"get", t_get},
    {"set", t_set},
    {"item", t_item},
    {"totable", t_totable},
    {NULL, NULL},
};

static const luaL_Reg meta[] = {
    {"__gc", t_gc},
    {"__close", t_gc},
    {"__len", t_len},
    {NULL, NULL},
};

const sfl_area sfl_area_tensor = {lib, methods, meta, NULL};
