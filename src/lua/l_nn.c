/* Lua bindings of the linear, conv2d and pooling kernels (sf.kernels.*) and of the kernel
 * call counters: shape validation, output allocation or reuse, then one kernel call.
 *
 * Conventions shared by every function here:
 *   - an output argument (out, dinp, indices) is optional: nil allocates a fresh tensor;
 *     a tensor given must have exactly the result's shape and be contiguous (it is
 *     overwritten and returned, so buffers can be reused across steps);
 *   - weight-gradient outputs (dweight, dbias) are accumulated into (+= scale * grad),
 *     must be contiguous (they are views into a flat gradient buffer) and nil skips that
 *     gradient's work entirely;
 *   - inputs that are not contiguous are copied to a contiguous temporary first;
 *   - an output may not share storage with an input;
 *   - stride, padding and pooling windows are a number (both dimensions) or {h, w}.
 */
#include <limits.h>
#include <math.h>
#include <string.h>

#include "../nn/nn.h"
#include "sfl.h"

/* ---- helpers ---- */

/* what the argument is, for messages: "missing" when absent, else its type name */
static const char *what_is(lua_State *L, int arg) { return lua_isnone(L, arg) ? "missing" : luaL_typename(L, arg); }

/* The tensor at arg, which must have nd dimensions; form is the expected layout for the
 * message ("[N,C,H,W]"). */
static sf_tensor *check_nd(lua_State *L, int arg, const char *fn, const char *role, int nd, const char *form) {
  char b[SF_SHAPE_BUF];
  sf_tensor *t = sfl_test(L, arg);
  if (!t)
    luaL_error(L, "%s: argument #%d (%s) is %s, expected a tensor %s", fn, arg, role, what_is(L, arg), form);
  if (!t->storage) luaL_error(L, "%s: argument #%d (%s) is an empty (released) tensor", fn, arg, role);
  if (nd > 0 && t->ndim != nd)
    luaL_error(L, "%s: argument #%d (%s) has shape %s, expected %s", fn, arg, role, sf_tshape(t, b), form);
  return t;
}

/* An optional result tensor at arg: NULL when none/nil; else it must have the given
 * shape and be contiguous. */
static sf_tensor *opt_result(lua_State *L, int arg, const char *fn, const char *role, int nd, const int64_t *size) {
  char b1[SF_SHAPE_BUF], b2[SF_SHAPE_BUF];
  if (lua_isnoneornil(L, arg)) return NULL;
  sf_tensor *t = check_nd(L, arg, fn, role, 0, "");
  int same = t->ndim == nd;
  for (int d = 0; same && d < nd; d++) same = t->size[d] == size[d];
  if (!same)
    luaL_error(L, "%s: argument #%d (%s) has shape %s, expected %s", fn, arg, role, sf_tshape(t, b1),
               sf_shape_str(b2, sizeof b2, nd, size));
  if (!sf_tensor_is_contiguous(t))
    luaL_error(L, "%s: argument #%d (%s) of shape %s is not contiguous; pass a contiguous tensor or nil", fn, arg,
               role, sf_tshape(t, b1));
  return t;
}

/* Raises when result r (at arg) shares storage with input t: the kernels read their
 * inputs while writing their outputs. */
static void no_alias(lua_State *L, const sf_tensor *r, int arg, const sf_tensor *t, int targ, const char *fn) {
  if (r && t && r->storage == t->storage)
    luaL_error(L, "%s: argument #%d shares storage with argument #%d; outputs must not alias inputs", fn, arg, targ);
}

/* A contiguous version of t: t itself, or a copy pushed on the stack (collected later). */
static const sf_tensor *dense(lua_State *L, const sf_tensor *t) {
  if (sf_tensor_is_contiguous(t)) return t;
  sf_tensor *c = sfl_push(L);
  SFL_TRY(L, sf_tensor_contiguous(c, t));
  sfl_account(L, c);
  return c;
}

/* The result at arg when given, else a fresh tensor of the shape; leaves it on the top of
 * the stack. */
static sf_tensor *result(lua_State *L, int arg, sf_tensor *given, int nd, const int64_t *size) {
  if (given) {
    lua_pushvalue(L, arg);
    return given;
  }
  sf_tensor *t = sfl_push(L);
  SFL_TRY(L, sf_tensor_new(t, nd, size));
  sfl_account(L, t);
  return t;
}

/* A pair (stride, padding, window): a number for both dimensions or {h, w}; def when
 * none/nil (def < 0: required). */
static void check_pair(lua_State *L, int arg, const char *fn, const char *what, int64_t def, int64_t *h, int64_t *w) {
  if (lua_isnoneornil(L, arg) && def >= 0) {
    *h = *w = def;
    return;
  }
  if (lua_type(L, arg) == LUA_TNUMBER) {
    int ok = 0;
    lua_Integer v = lua_tointegerx(L, arg, &ok);
    if (!ok) luaL_error(L, "%s: argument #%d (%s) is %s, expected an integer or {h,w}", fn, arg, what, lua_tostring(L, arg));
    *h = *w = (int64_t)v;
    return;
  }
  if (lua_istable(L, arg) && luaL_len(L, arg) == 2) {
    int64_t v[2];
    for (int i = 0; i < 2; i++) {
      int ok = 0;
      lua_geti(L, arg, i + 1);
      v[i] = (int64_t)lua_tointegerx(L, -1, &ok);
      lua_pop(L, 1);
      if (!ok) luaL_error(L, "%s: argument #%d (%s) entry %d is not an integer", fn, arg, what, i + 1);
    }
    *h = v[0];
    *w = v[1];
    return;
  }
  luaL_error(L, "%s: argument #%d (%s) is %s, expected an integer or {h,w}", fn, arg, what, what_is(L, arg));
}

/* An input shape given as a tensor (its shape) or a table of 4 integers. */
static void check_shape4(lua_State *L, int arg, const char *fn, const char *role, int64_t *size) {
  sf_tensor *t = sfl_test(L, arg);
  char b[SF_SHAPE_BUF];
  if (t) {
    if (t->ndim != 4)
      luaL_error(L, "%s: argument #%d (%s) has shape %s, expected [N,C,H,W]", fn, arg, role, sf_tshape(t, b));
    memcpy(size, t->size, 4 * sizeof *size);
    return;
  }
  if (!lua_istable(L, arg) || luaL_len(L, arg) != 4)
    luaL_error(L, "%s: argument #%d (%s) is %s, expected a tensor or a shape {N,C,H,W}", fn, arg, role,
               what_is(L, arg));
  for (int i = 0; i < 4; i++) {
    int ok = 0;
    lua_geti(L, arg, i + 1);
    size[i] = (int64_t)lua_tointegerx(L, -1, &ok);
    lua_pop(L, 1);
    if (!ok || size[i] < 0) luaL_error(L, "%s: argument #%d (%s) entry %d is not a size", fn, arg, role, i + 1);
  }
}

static float opt_scale(lua_State *L, int arg, const char *fn) {
  if (lua_isnoneornil(L, arg)) return 1.0f;
  if (lua_type(L, arg) != LUA_TNUMBER)
    luaL_error(L, "%s: argument #%d (scale) is %s, expected a number", fn, arg, luaL_typename(L, arg));
  return (float)lua_tonumber(L, arg);
}

static void check_blas(lua_State *L, const char *fn, int64_t a, int64_t b, int64_t c) {
  if (a > INT_MAX || b > INT_MAX || c > INT_MAX)
    luaL_error(L, "%s: sizes %I x %I x %I exceed the BLAS limit (%d)", fn, (lua_Integer)a, (lua_Integer)b,
               (lua_Integer)c, INT_MAX);
}

/* ---- linear ---- */

/* rows of a [..., F] tensor: the product of the leading dimensions */
static int64_t lead_rows(const sf_tensor *t) {
  int64_t n = 1;
  for (int d = 0; d < t->ndim - 1; d++) n *= t->size[d];
  return n;
}

/* K.linear_forward(input[...,C], weight[K,C], bias[K]|nil, out[...,K]|nil) -> out */
static int l_linear_forward(lua_State *L) {
  const char *fn = "linear_forward";
  char b1[SF_SHAPE_BUF], b2[SF_SHAPE_BUF];
  sf_tensor *inp = check_nd(L, 1, fn, "input", 0, "[N,C]");
  sf_tensor *w = check_nd(L, 2, fn, "weight", 2, "[K,C]");
  if (inp->ndim < 1) luaL_error(L, "%s: argument #1 (input) has shape %s, expected [N,C]", fn, sf_tshape(inp, b1));
  const int64_t C = inp->size[inp->ndim - 1], K = w->size[0], N = lead_rows(inp);
  if (w->size[1] != C)
    luaL_error(L, "%s: input has %I features but weight %s expects %I", fn, (lua_Integer)C, sf_tshape(w, b1),
               (lua_Integer)w->size[1]);
  sf_tensor *bias = NULL;
  if (!lua_isnoneornil(L, 3)) {
    bias = check_nd(L, 3, fn, "bias", 1, "[K]");
    if (bias->size[0] != K)
      luaL_error(L, "%s: argument #3 (bias) has shape %s, expected [%I] (weight %s)", fn, sf_tshape(bias, b1),
                 (lua_Integer)K, sf_tshape(w, b2));
  }
  int64_t osize[SF_MAX_DIMS];
  memcpy(osize, inp->size, (size_t)inp->ndim * sizeof *osize);
  osize[inp->ndim - 1] = K;
  sf_tensor *out = opt_result(L, 4, fn, "out", inp->ndim, osize);
  no_alias(L, out, 4, inp, 1, fn);
  no_alias(L, out, 4, w, 2, fn);
  no_alias(L, out, 4, bias, 3, fn);
  check_blas(L, fn, N, C, K);
  const sf_tensor *ci = dense(L, inp), *cw = dense(L, w), *cb = bias ? dense(L, bias) : NULL;
  out = result(L, 4, out, inp->ndim, osize);
  sf_linear_forward(sf_tensor_data(out), sf_tensor_data(ci), sf_tensor_data(cw), cb ? sf_tensor_data(cb) : NULL, N, C,
                    K);
  return 1;
}

/* K.linear_backward_input(dout[...,K], weight[K,C], dinp[...,C]|nil) -> dinp */
static int l_linear_backward_input(lua_State *L) {
  const char *fn = "linear_backward_input";
  char b1[SF_SHAPE_BUF];
  sf_tensor *g = check_nd(L, 1, fn, "dout", 0, "[N,K]");
  sf_tensor *w = check_nd(L, 2, fn, "weight", 2, "[K,C]");
  if (g->ndim < 1) luaL_error(L, "%s: argument #1 (dout) has shape %s, expected [N,K]", fn, sf_tshape(g, b1));
  const int64_t K = w->size[0], C = w->size[1], N = lead_rows(g);
  if (g->size[g->ndim - 1] != K)
    luaL_error(L, "%s: dout has %I features but weight %s has %I outputs", fn, (lua_Integer)g->size[g->ndim - 1],
               sf_tshape(w, b1), (lua_Integer)K);
  int64_t isize[SF_MAX_DIMS];
  memcpy(isize, g->size, (size_t)g->ndim * sizeof *isize);
  isize[g->ndim - 1] = C;
  sf_tensor *dinp = opt_result(L, 3, fn, "dinp", g->ndim, isize);
  no_alias(L, dinp, 3, g, 1, fn);
  no_alias(L, dinp, 3, w, 2, fn);
  check_blas(L, fn, N, C, K);
  const sf_tensor *cg = dense(L, g), *cw = dense(L, w);
  dinp = result(L, 3, dinp, g->ndim, isize);
  sf_linear_backward_input(sf_tensor_data(dinp), sf_tensor_data(cg), sf_tensor_data(cw), N, C, K);
  return 1;
}

/* K.linear_backward_weight(dout[...,K], input[...,C], dweight[K,C]|nil, dbias[K]|nil,
 * scale = 1) -> dweight, dbias (accumulated: += scale * gradient) */
static int l_linear_backward_weight(lua_State *L) {
  const char *fn = "linear_backward_weight";
  char b1[SF_SHAPE_BUF], b2[SF_SHAPE_BUF];
  sf_tensor *g = check_nd(L, 1, fn, "dout", 0, "[N,K]");
  sf_tensor *inp = check_nd(L, 2, fn, "input", 0, "[N,C]");
  if (g->ndim < 1) luaL_error(L, "%s: argument #1 (dout) has shape %s, expected [N,K]", fn, sf_tshape(g, b1));
  if (inp->ndim != g->ndim)
    luaL_error(L, "%s: argument #2 (input) has shape %s, expected %d dimensions like dout %s", fn, sf_tshape(inp, b1),
               g->ndim, sf_tshape(g, b2));
  for (int d = 0; d < g->ndim - 1; d++)
    if (inp->size[d] != g->size[d])
      luaL_error(L, "%s: input %s and dout %s differ in the leading (batch) dimensions", fn, sf_tshape(inp, b1),
                 sf_tshape(g, b2));
  const int64_t K = g->size[g->ndim - 1], C = inp->size[inp->ndim - 1], N = lead_rows(g);
  const int64_t wsize[2] = {K, C}, bsize[1] = {K};
  sf_tensor *dw = opt_result(L, 3, fn, "dweight", 2, wsize);
  sf_tensor *db = opt_result(L, 4, fn, "dbias", 1, bsize);
  const float scale = opt_scale(L, 5, fn);
  no_alias(L, dw, 3, g, 1, fn);
  no_alias(L, dw, 3, inp, 2, fn);
  no_alias(L, db, 4, g, 1, fn);
  no_alias(L, db, 4, inp, 2, fn);
  check_blas(L, fn, N, C, K);
  lua_settop(L, 4);
  if (dw || db) {
    const sf_tensor *cg = dense(L, g), *ci = dw ? dense(L, inp) : NULL;
    sf_linear_backward_weight(dw ? sf_tensor_data(dw) : NULL, db ? sf_tensor_data(db) : NULL, sf_tensor_data(cg),
                              ci ? sf_tensor_data(ci) : NULL, N, C, K, scale);
  }
  lua_pushvalue(L, 3);
  lua_pushvalue(L, 4);
  return 2;
}

/* ---- conv2d ---- */

static void conv_geometry(lua_State *L, sf_conv2d_shape *s, int sarg, int parg, const char *fn) {
  check_pair(L, sarg, fn, "stride", 1, &s->stride_h, &s->stride_w);
  check_pair(L, parg, fn, "padding", 0, &s->pad_h, &s->pad_w);
  s->groups = 1;
  if (sf_conv2d_shape_init(s)) luaL_error(L, "%s: %s", fn, sf_errmsg() + strlen("conv2d: "));
}

/* input [N,C,H,W] against weight [K,C,R,S] */
static void conv_channels(lua_State *L, const char *fn, const int64_t *isize, const sf_tensor *w) {
  char b1[SF_SHAPE_BUF];
  if (isize[1] != w->size[1])
    luaL_error(L, "%s: input has %I channels but weight %s expects %I", fn, (lua_Integer)isize[1], sf_tshape(w, b1),
               (lua_Integer)w->size[1]);
}

static void check_dout(lua_State *L, const char *fn, const sf_tensor *g, const int64_t *expect) {
  char b1[SF_SHAPE_BUF], b2[SF_SHAPE_BUF];
  for (int d = 0; d < 4; d++)
    if (g->size[d] != expect[d])
      luaL_error(L, "%s: argument #1 (dout) has shape %s, expected %s", fn, sf_tshape(g, b1),
                 sf_shape_str(b2, sizeof b2, 4, expect));
}

/* K.conv2d_path(input_shape_or_tensor, weight_shape_or_tensor, stride = 1, pad = 0)
 * -> {forward = ..., backward_input = ..., backward_weight = ..., backward = ...}: the
 * algorithm each kernel uses for that geometry (see sf_conv2d_path; backward: how
 * conv2d_backward runs both gradients), and for the direct paths
 * forward_tiles / backward_input_tiles: their register tile shapes (sf_conv2d_tiles) */
static int l_conv2d_path(lua_State *L) {
  const char *fn = "conv2d_path";
  int64_t isize[4], wsize[4];
  check_shape4(L, 1, fn, "input", isize);
  check_shape4(L, 2, fn, "weight", wsize);
  if (isize[1] != wsize[1])
    luaL_error(L, "%s: input has %I channels but the weight expects %I", fn, (lua_Integer)isize[1],
               (lua_Integer)wsize[1]);
  sf_conv2d_shape s = {isize[0], isize[1], isize[2], isize[3], wsize[0], wsize[2], wsize[3], 0, 0, 0, 0, 0, 0, 1};
  conv_geometry(L, &s, 3, 4, fn);
  lua_createtable(L, 0, 6);
  static const char *const names[4] = {"forward", "backward_input", "backward_weight", "backward"};
  for (int k = 0; k < 4; k++) {
    lua_pushstring(L, sf_conv2d_path(&s, k));
    lua_setfield(L, -2, names[k]);
  }
  /* the direct paths' register tiles, e.g. forward_tiles = "8x3" */
  static const char *const tnames[2] = {"forward_tiles", "backward_input_tiles"};
  for (int k = 0; k < 2; k++) {
    char buf[64];
    sf_conv2d_tiles(buf, sizeof buf, &s, k);
    if (buf[0]) {
      lua_pushstring(L, buf);
      lua_setfield(L, -2, tnames[k]);
    }
  }
  return 1;
}

/* K.conv2d_winograd([on]) -> whether the Winograd F(2x2, 3x3) path for 3x3 stride-1
 * convolutions was on (false without AVX-512); with a boolean, switches it for the calls
 * that follow (off: every output is the direct path's fixed-order sum, bit for bit) */
static int l_conv2d_winograd(lua_State *L) {
  if (!lua_isnoneornil(L, 1) && !lua_isboolean(L, 1))
    luaL_error(L, "conv2d_winograd: argument #1 (on) is %s, expected a boolean or nil", luaL_typename(L, 1));
  lua_pushboolean(L, sf_conv2d_winograd_enable(lua_isnoneornil(L, 1) ? -1 : lua_toboolean(L, 1)));
  return 1;
}

/* K.conv2d_winograd4([on]) -> whether its F(4x4, 3x3) form was on (false without AVX-512);
 * with a boolean, switches it for the calls that follow (off: those layers take F(2x2, 3x3)) */
static int l_conv2d_winograd4(lua_State *L) {
  if (!lua_isnoneornil(L, 1) && !lua_isboolean(L, 1))
    luaL_error(L, "conv2d_winograd4: argument #1 (on) is %s, expected a boolean or nil", luaL_typename(L, 1));
  lua_pushboolean(L, sf_conv2d_winograd4_enable(lua_isnoneornil(L, 1) ? -1 : lua_toboolean(L, 1)));
  return 1;
}

/* K.conv2d_masked([on]) -> whether the masked 3x3 path was on (false on builds without
 * AVX-512); with a boolean, switches it for the calls that follow (tests, benchmarks) */
static int l_conv2d_masked(lua_State *L) {
  if (!lua_isnoneornil(L, 1) && !lua_isboolean(L, 1))
    luaL_error(L, "conv2d_masked: argument #1 (on) is %s, expected a boolean or nil", luaL_typename(L, 1));
  lua_pushboolean(L, sf_conv2d_masked_enable(lua_isnoneornil(L, 1) ? -1 : lua_toboolean(L, 1)));
  return 1;
}

/* K.conv2d_forward(input[N,C,H,W], weight[K,C,R,S], bias[K]|nil, stride = 1, pad = 0,
 * out[N,K,OH,OW]|nil, relu = false, residual[N,K,OH,OW]|nil, stats = nil) -> out[, stats]:
 * with residual, out = conv + bias + residual; with relu, max(that, 0); both applied as
 * the result is written (no extra pass). stats = true (a new tensor) or a [N,K,2] tensor:
 * also each image's BatchNorm row statistics of out (sf_conv2d_forward_stats), returned
 * second, for K.batchnorm_forward_train's stats argument. */
static int l_conv2d_forward(lua_State *L) {
  const char *fn = "conv2d_forward";
  char b1[SF_SHAPE_BUF], b2[SF_SHAPE_BUF];
  sf_tensor *inp = check_nd(L, 1, fn, "input", 4, "[N,C,H,W]");
  sf_tensor *w = check_nd(L, 2, fn, "weight", 4, "[K,C,R,S]");
  conv_channels(L, fn, inp->size, w);
  sf_tensor *bias = NULL;
  if (!lua_isnoneornil(L, 3)) {
    bias = check_nd(L, 3, fn, "bias", 1, "[K]");
    if (bias->size[0] != w->size[0])
      luaL_error(L, "%s: argument #3 (bias) has shape %s, expected [%I] (weight %s)", fn, sf_tshape(bias, b1),
                 (lua_Integer)w->size[0], sf_tshape(w, b2));
  }
  sf_conv2d_shape s = {inp->size[0], inp->size[1], inp->size[2], inp->size[3], w->size[0], w->size[2], w->size[3],
                       0, 0, 0, 0, 0, 0, 1};
  conv_geometry(L, &s, 4, 5, fn);
  const int64_t osize[4] = {s.N, s.K, s.OH, s.OW};
  sf_tensor *out = opt_result(L, 6, fn, "out", 4, osize);
  const int relu = lua_toboolean(L, 7);
  sf_tensor *res = NULL;
  if (!lua_isnoneornil(L, 8)) {
    res = check_nd(L, 8, fn, "residual", 4, "[N,K,OH,OW]");
    for (int d = 0; d < 4; d++)
      if (res->size[d] != osize[d])
        luaL_error(L, "%s: argument #8 (residual) has shape %s, expected %s (the output's)", fn, sf_tshape(res, b1),
                   sf_shape_str(b2, sizeof b2, 4, osize));
  }
  no_alias(L, out, 6, inp, 1, fn);
  no_alias(L, out, 6, w, 2, fn);
  no_alias(L, out, 6, bias, 3, fn);
  no_alias(L, out, 6, res, 8, fn);
  const int64_t ssize[3] = {s.N, s.K, 2};
  const int want_stats = lua_isboolean(L, 9) ? lua_toboolean(L, 9) : !lua_isnoneornil(L, 9);
  sf_tensor *st = want_stats && !lua_isboolean(L, 9) ? opt_result(L, 9, fn, "stats", 3, ssize) : NULL;
  no_alias(L, st, 9, out, 6, fn);
  no_alias(L, st, 9, inp, 1, fn);
  no_alias(L, st, 9, res, 8, fn);
  const sf_tensor *ci = dense(L, inp), *cw = dense(L, w), *cb = bias ? dense(L, bias) : NULL;
  const sf_tensor *cr = res ? dense(L, res) : NULL;
  out = result(L, 6, out, 4, osize);
  if (want_stats) st = result(L, 9, st, 3, ssize);
  SFL_TRY(L, sf_conv2d_reserve(&s));
  sf_conv2d_forward_stats(sf_tensor_data(out), st ? sf_tensor_data(st) : NULL, sf_tensor_data(ci),
                          sf_tensor_data(cw), cb ? sf_tensor_data(cb) : NULL, cr ? sf_tensor_data(cr) : NULL, relu, &s);
  return want_stats ? 2 : 1;
}

/* K.conv2d_backward_input(dout[N,K,OH,OW], weight[K,C,R,S], input_shape_or_tensor,
 * stride = 1, pad = 0, dinp[N,C,H,W]|nil) -> dinp */
static int l_conv2d_backward_input(lua_State *L) {
  const char *fn = "conv2d_backward_input";
  sf_tensor *g = check_nd(L, 1, fn, "dout", 4, "[N,K,OH,OW]");
  sf_tensor *w = check_nd(L, 2, fn, "weight", 4, "[K,C,R,S]");
  int64_t isize[4];
  check_shape4(L, 3, fn, "input", isize);
  conv_channels(L, fn, isize, w);
  sf_conv2d_shape s = {isize[0], isize[1], isize[2], isize[3], w->size[0], w->size[2], w->size[3],
                       0, 0, 0, 0, 0, 0, 1};
  conv_geometry(L, &s, 4, 5, fn);
  const int64_t osize[4] = {s.N, s.K, s.OH, s.OW};
  check_dout(L, fn, g, osize);
  sf_tensor *dinp = opt_result(L, 6, fn, "dinp", 4, isize);
  no_alias(L, dinp, 6, g, 1, fn);
  no_alias(L, dinp, 6, w, 2, fn);
  const sf_tensor *cg = dense(L, g), *cw = dense(L, w);
  dinp = result(L, 6, dinp, 4, isize);
  SFL_TRY(L, sf_conv2d_reserve(&s));
  sf_conv2d_backward_input(sf_tensor_data(dinp), sf_tensor_data(cg), sf_tensor_data(cw), &s);
  return 1;
}

/* K.conv2d_backward_weight(dout[N,K,OH,OW], input[N,C,H,W], dweight[K,C,R,S]|nil,
 * dbias[K]|nil, stride = 1, pad = 0, scale = 1) -> dweight, dbias (accumulated) */
static int l_conv2d_backward_weight(lua_State *L) {
  const char *fn = "conv2d_backward_weight";
  char b1[SF_SHAPE_BUF], b2[SF_SHAPE_BUF];
  sf_tensor *g = check_nd(L, 1, fn, "dout", 4, "[N,K,OH,OW]");
  sf_tensor *inp = check_nd(L, 2, fn, "input", 4, "[N,C,H,W]");
  sf_tensor *dw = NULL, *db = NULL;
  if (!lua_isnoneornil(L, 3)) dw = check_nd(L, 3, fn, "dweight", 4, "[K,C,R,S]");
  if (!lua_isnoneornil(L, 4)) db = check_nd(L, 4, fn, "dbias", 1, "[K]");
  const float scale = opt_scale(L, 7, fn);
  /* without dweight the kernel size is unknown; dout is then checked on N and K only */
  sf_conv2d_shape s = {inp->size[0], inp->size[1], inp->size[2], inp->size[3], g->size[1], 1, 1,
                       0, 0, 0, 0, 0, 0, 1};
  if (dw) {
    conv_channels(L, fn, inp->size, dw);
    s.K = dw->size[0], s.R = dw->size[2], s.S = dw->size[3];
  }
  conv_geometry(L, &s, 5, 6, fn);
  if (!dw) s.OH = g->size[2], s.OW = g->size[3]; /* what the bias gradient sums over */
  if (dw) {
    const int64_t osize[4] = {s.N, s.K, s.OH, s.OW};
    check_dout(L, fn, g, osize);
  } else if (g->size[0] != s.N) {
    luaL_error(L, "%s: argument #1 (dout) has shape %s, expected [%I,*,*,*] (input %s)", fn, sf_tshape(g, b1),
               (lua_Integer)s.N, sf_tshape(inp, b2));
  }
  const int64_t bsize[1] = {s.K};
  if (db && db->size[0] != s.K)
    luaL_error(L, "%s: argument #4 (dbias) has shape %s, expected [%I] (dout %s)", fn, sf_tshape(db, b1),
               (lua_Integer)s.K, sf_tshape(g, b2));
  if (dw) opt_result(L, 3, fn, "dweight", 4, dw->size);
  if (db) opt_result(L, 4, fn, "dbias", 1, bsize);
  no_alias(L, dw, 3, g, 1, fn);
  no_alias(L, dw, 3, inp, 2, fn);
  no_alias(L, db, 4, g, 1, fn);
  no_alias(L, db, 4, inp, 2, fn);
  lua_settop(L, 7);
  if (dw || db) {
    const sf_tensor *cg = dense(L, g), *ci = dw ? dense(L, inp) : NULL;
    if (dw) SFL_TRY(L, sf_conv2d_reserve(&s));
    sf_conv2d_backward_weight(dw ? sf_tensor_data(dw) : NULL, db ? sf_tensor_data(db) : NULL, sf_tensor_data(cg),
                              ci ? sf_tensor_data(ci) : NULL, &s, scale);
  }
  lua_pushvalue(L, 3);
  lua_pushvalue(L, 4);
  return 2;
}

/* K.conv2d_backward(dout[N,K,OH,OW], weight[K,C,R,S], input[N,C,H,W], dweight[K,C,R,S]|nil,
 * dbias[K]|nil, stride = 1, pad = 0, scale = 1, need_input = true) -> dinp or nil: both
 * gradients at once (dweight, dbias accumulated as by conv2d_backward_weight; dinp fresh,
 * as from conv2d_backward_input), in one pass over dout where the shape allows it */
static int l_conv2d_backward(lua_State *L) {
  const char *fn = "conv2d_backward";
  char b1[SF_SHAPE_BUF], b2[SF_SHAPE_BUF];
  sf_tensor *g = check_nd(L, 1, fn, "dout", 4, "[N,K,OH,OW]");
  sf_tensor *w = check_nd(L, 2, fn, "weight", 4, "[K,C,R,S]");
  sf_tensor *inp = check_nd(L, 3, fn, "input", 4, "[N,C,H,W]");
  conv_channels(L, fn, inp->size, w);
  sf_tensor *dw = opt_result(L, 4, fn, "dweight", 4, w->size), *db = NULL;
  const int64_t bsize[1] = {w->size[0]};
  if (!lua_isnoneornil(L, 5)) {
    db = check_nd(L, 5, fn, "dbias", 1, "[K]");
    if (db->size[0] != bsize[0])
      luaL_error(L, "%s: argument #5 (dbias) has shape %s, expected [%I] (weight %s)", fn, sf_tshape(db, b1),
                 (lua_Integer)bsize[0], sf_tshape(w, b2));
    opt_result(L, 5, fn, "dbias", 1, bsize);
  }
  sf_conv2d_shape s = {inp->size[0], inp->size[1], inp->size[2], inp->size[3], w->size[0], w->size[2], w->size[3],
                       0, 0, 0, 0, 0, 0, 1};
  conv_geometry(L, &s, 6, 7, fn);
  const int64_t osize[4] = {s.N, s.K, s.OH, s.OW};
  check_dout(L, fn, g, osize);
  const float scale = opt_scale(L, 8, fn);
  const int need = lua_isnoneornil(L, 9) || lua_toboolean(L, 9);
  no_alias(L, dw, 4, g, 1, fn);
  no_alias(L, dw, 4, w, 2, fn);
  no_alias(L, dw, 4, inp, 3, fn);
  no_alias(L, db, 5, g, 1, fn);
  no_alias(L, db, 5, w, 2, fn);
  no_alias(L, db, 5, inp, 3, fn);
  lua_settop(L, 9);
  if (!need && !dw && !db) {
    lua_pushnil(L);
    return 1;
  }
  const sf_tensor *cg = dense(L, g), *cw = need ? dense(L, w) : NULL, *ci = dw ? dense(L, inp) : NULL;
  sf_tensor *dinp = NULL;
  if (need)
    dinp = result(L, 10, NULL, 4, inp->size); /* fresh, on the top of the stack */
  else
    lua_pushnil(L);
  if (need || dw) SFL_TRY(L, sf_conv2d_reserve(&s));
  sf_conv2d_backward(dinp ? sf_tensor_data(dinp) : NULL, dw ? sf_tensor_data(dw) : NULL, db ? sf_tensor_data(db) : NULL,
                     sf_tensor_data(cg), ci ? sf_tensor_data(ci) : NULL, cw ? sf_tensor_data(cw) : NULL, &s, scale);
  return 1;
}

/* ---- pooling ---- */

static void pool_geometry(lua_State *L, sf_pool2d_shape *s, const int64_t *isize, int karg, int sarg, int parg,
                          const char *fn) {
  s->N = isize[0], s->C = isize[1], s->H = isize[2], s->W = isize[3];
  check_pair(L, karg, fn, "kernel", -1, &s->KH, &s->KW);
  /* stride defaults to the window (PyTorch's default) */
  if (lua_isnoneornil(L, sarg)) {
    s->stride_h = s->KH, s->stride_w = s->KW;
  } else {
    check_pair(L, sarg, fn, "stride", -1, &s->stride_h, &s->stride_w);
  }
  check_pair(L, parg, fn, "padding", 0, &s->pad_h, &s->pad_w);
  SFL_TRY(L, sf_pool2d_shape_init(s, fn));
}

/* K.maxpool2d_forward(input[N,C,H,W], kernel, stride = kernel, pad = 0, out|nil,
 * indices|nil|false) -> out, indices. indices[N,C,OH,OW] holds the 0-based flat index
 * (ih*W + iw) of each maximum within its plane; false skips them (inference). */
static int l_maxpool2d_forward(lua_State *L) {
  const char *fn = "maxpool2d_forward";
  sf_tensor *inp = check_nd(L, 1, fn, "input", 4, "[N,C,H,W]");
  sf_pool2d_shape s;
  pool_geometry(L, &s, inp->size, 2, 3, 4, fn);
  const int64_t osize[4] = {s.N, s.C, s.OH, s.OW};
  sf_tensor *out = opt_result(L, 5, fn, "out", 4, osize);
  const int want_ix = !(lua_type(L, 6) == LUA_TBOOLEAN && !lua_toboolean(L, 6));
  sf_tensor *ix = want_ix && lua_type(L, 6) != LUA_TBOOLEAN ? opt_result(L, 6, fn, "indices", 4, osize) : NULL;
  no_alias(L, out, 5, inp, 1, fn);
  no_alias(L, ix, 6, inp, 1, fn);
  if (out && ix && out->storage == ix->storage)
    luaL_error(L, "%s: argument #5 (out) and argument #6 (indices) share storage", fn);
  if (want_ix && s.H * s.W > ((int64_t)1 << 24))
    luaL_error(L, "%s: planes of %Ix%I are too large for float indices", fn, (lua_Integer)s.H, (lua_Integer)s.W);
  lua_settop(L, 6);
  const sf_tensor *ci = dense(L, inp);
  out = result(L, 5, out, 4, osize);
  if (want_ix)
    ix = result(L, 6, ix, 4, osize);
  else
    lua_pushnil(L);
  sf_maxpool2d_forward(sf_tensor_data(out), ix ? sf_tensor_data(ix) : NULL, sf_tensor_data(ci), &s);
  return 2;
}

/* K.maxpool2d_backward(dout[N,C,OH,OW], indices[N,C,OH,OW], input_shape_or_tensor,
 * dinp|nil) -> dinp */
static int l_maxpool2d_backward(lua_State *L) {
  const char *fn = "maxpool2d_backward";
  char b1[SF_SHAPE_BUF], b2[SF_SHAPE_BUF];
  sf_tensor *g = check_nd(L, 1, fn, "dout", 4, "[N,C,OH,OW]");
  sf_tensor *ix = check_nd(L, 2, fn, "indices", 4, "[N,C,OH,OW]");
  int64_t isize[4];
  check_shape4(L, 3, fn, "input", isize);
  if (!sf_tensor_same_shape(g, ix))
    luaL_error(L, "%s: argument #2 (indices) has shape %s, expected %s like dout", fn, sf_tshape(ix, b1),
               sf_tshape(g, b2));
  if (g->size[0] != isize[0] || g->size[1] != isize[1])
    luaL_error(L, "%s: argument #1 (dout) has shape %s, expected [%I,%I,*,*] (input %s)", fn, sf_tshape(g, b1),
               (lua_Integer)isize[0], (lua_Integer)isize[1], sf_shape_str(b2, sizeof b2, 4, isize));
  sf_tensor *dinp = opt_result(L, 4, fn, "dinp", 4, isize);
  no_alias(L, dinp, 4, g, 1, fn);
  no_alias(L, dinp, 4, ix, 2, fn);
  lua_settop(L, 4);
  const sf_tensor *cg = dense(L, g), *cx = dense(L, ix);
  /* the kernel trusts the indices: check each is a valid position in its plane */
  const int64_t HW = isize[2] * isize[3], n = sf_tensor_numel(cx);
  const float *xp = sf_tensor_data(cx);
  for (int64_t i = 0; i < n; i++)
    if (!(xp[i] >= 0.0f && (double)xp[i] < (double)HW && xp[i] == floorf(xp[i])))
      luaL_error(L, "%s: argument #2 (indices) holds %f at element %I, expected an integer in [0,%I)", fn,
                 (lua_Number)xp[i], (lua_Integer)i + 1, (lua_Integer)HW);
  sf_pool2d_shape s = {isize[0], isize[1], isize[2], isize[3], 1, 1, g->size[2], g->size[3], 1, 1, 0, 0};
  dinp = result(L, 4, dinp, 4, isize);
  sf_maxpool2d_backward(sf_tensor_data(dinp), sf_tensor_data(cg), sf_tensor_data(cx), &s);
  return 1;
}

static int opt_bool(lua_State *L, int arg, int def) { return lua_isnoneornil(L, arg) ? def : lua_toboolean(L, arg); }

/* K.avgpool2d_forward(input[N,C,H,W], kernel, stride = kernel, pad = 0,
 * count_include_pad = true, out|nil) -> out */
static int l_avgpool2d_forward(lua_State *L) {
  const char *fn = "avgpool2d_forward";
  sf_tensor *inp = check_nd(L, 1, fn, "input", 4, "[N,C,H,W]");
  sf_pool2d_shape s;
  pool_geometry(L, &s, inp->size, 2, 3, 4, fn);
  const int cip = opt_bool(L, 5, 1);
  const int64_t osize[4] = {s.N, s.C, s.OH, s.OW};
  sf_tensor *out = opt_result(L, 6, fn, "out", 4, osize);
  no_alias(L, out, 6, inp, 1, fn);
  const sf_tensor *ci = dense(L, inp);
  out = result(L, 6, out, 4, osize);
  sf_avgpool2d_forward(sf_tensor_data(out), sf_tensor_data(ci), &s, cip);
  return 1;
}

/* K.avgpool2d_backward(dout[N,C,OH,OW], input_shape_or_tensor, kernel, stride = kernel,
 * pad = 0, count_include_pad = true, dinp|nil) -> dinp */
static int l_avgpool2d_backward(lua_State *L) {
  const char *fn = "avgpool2d_backward";
  char b1[SF_SHAPE_BUF], b2[SF_SHAPE_BUF];
  sf_tensor *g = check_nd(L, 1, fn, "dout", 4, "[N,C,OH,OW]");
  int64_t isize[4];
  check_shape4(L, 2, fn, "input", isize);
  sf_pool2d_shape s;
  pool_geometry(L, &s, isize, 3, 4, 5, fn);
  const int cip = opt_bool(L, 6, 1);
  const int64_t osize[4] = {s.N, s.C, s.OH, s.OW};
  if (!(g->size[0] == osize[0] && g->size[1] == osize[1] && g->size[2] == osize[2] && g->size[3] == osize[3]))
    luaL_error(L, "%s: argument #1 (dout) has shape %s, expected %s", fn, sf_tshape(g, b1),
               sf_shape_str(b2, sizeof b2, 4, osize));
  sf_tensor *dinp = opt_result(L, 7, fn, "dinp", 4, isize);
  no_alias(L, dinp, 7, g, 1, fn);
  const sf_tensor *cg = dense(L, g);
  dinp = result(L, 7, dinp, 4, isize);
  sf_avgpool2d_backward(sf_tensor_data(dinp), sf_tensor_data(cg), &s, cip);
  return 1;
}

/* K.global_avgpool_forward(input[N,C,H,W], out[N,C]|nil) -> out */
static int l_global_avgpool_forward(lua_State *L) {
  const char *fn = "global_avgpool_forward";
  char b1[SF_SHAPE_BUF];
  sf_tensor *inp = check_nd(L, 1, fn, "input", 4, "[N,C,H,W]");
  if (inp->size[2] < 1 || inp->size[3] < 1)
    luaL_error(L, "%s: argument #1 (input) has shape %s, expected positive height and width", fn, sf_tshape(inp, b1));
  const int64_t osize[2] = {inp->size[0], inp->size[1]};
  sf_tensor *out = opt_result(L, 2, fn, "out", 2, osize);
  no_alias(L, out, 2, inp, 1, fn);
  const sf_tensor *ci = dense(L, inp);
  out = result(L, 2, out, 2, osize);
  sf_global_avgpool_forward(sf_tensor_data(out), sf_tensor_data(ci), osize[0], osize[1], inp->size[2] * inp->size[3]);
  return 1;
}

/* K.global_avgpool_backward(dout[N,C], input_shape_or_tensor, dinp|nil) -> dinp */
static int l_global_avgpool_backward(lua_State *L) {
  const char *fn = "global_avgpool_backward";
  char b1[SF_SHAPE_BUF], b2[SF_SHAPE_BUF];
  sf_tensor *g = check_nd(L, 1, fn, "dout", 2, "[N,C]");
  int64_t isize[4];
  check_shape4(L, 2, fn, "input", isize);
  if (isize[2] < 1 || isize[3] < 1)
    luaL_error(L, "%s: argument #2 (input) has shape %s, expected positive height and width", fn,
               sf_shape_str(b1, sizeof b1, 4, isize));
  if (g->size[0] != isize[0] || g->size[1] != isize[1])
    luaL_error(L, "%s: argument #1 (dout) has shape %s, expected [%I,%I] (input %s)", fn, sf_tshape(g, b1),
               (lua_Integer)isize[0], (lua_Integer)isize[1], sf_shape_str(b2, sizeof b2, 4, isize));
  sf_tensor *dinp = opt_result(L, 3, fn, "dinp", 4, isize);
  no_alias(L, dinp, 3, g, 1, fn);
  const sf_tensor *cg = dense(L, g);
  dinp = result(L, 3, dinp, 4, isize);
  sf_global_avgpool_backward(sf_tensor_data(dinp), sf_tensor_data(cg), isize[0], isize[1], isize[2] * isize[3]);
  return 1;
}

/* ---- counters ---- */

/* K.counters() -> {linear_fwd = n, conv_fwd = n, ...} for every kernel kind */
static int l_counters(lua_State *L) {
  lua_createtable(L, 0, SF_K_COUNT);
  for (int k = 0; k < SF_K_COUNT; k++) {
    lua_pushinteger(L, (lua_Integer)sf_nn_counter((sf_kernel_id)k));
    lua_setfield(L, -2, sf_nn_counter_name((sf_kernel_id)k));
  }
  return 1;
}

static int l_reset_counters(lua_State *L) {
  (void)L;
  sf_nn_counters_reset();
  return 0;
}

static const luaL_Reg lib[] = {
    {"linear_forward", l_linear_forward},
    {"linear_backward_input", l_linear_backward_input},
    {"linear_backward_weight", l_linear_backward_weight},
    {"conv2d_forward", l_conv2d_forward},
    {"conv2d_path", l_conv2d_path},
    {"conv2d_masked", l_conv2d_masked},
    {"conv2d_winograd", l_conv2d_winograd},
    {"conv2d_winograd4", l_conv2d_winograd4},
    {"conv2d_backward_input", l_conv2d_backward_input},
    {"conv2d_backward_weight", l_conv2d_backward_weight},
    {"conv2d_backward", l_conv2d_backward},
    {"maxpool2d_forward", l_maxpool2d_forward},
    {"maxpool2d_backward", l_maxpool2d_backward},
    {"avgpool2d_forward", l_avgpool2d_forward},
    {"avgpool2d_backward", l_avgpool2d_backward},
    {"global_avgpool_forward", l_global_avgpool_forward},
    {"global_avgpool_backward", l_global_avgpool_backward},
    {"counters", l_counters},
    {"reset_counters", l_reset_counters},
    {NULL, NULL},
};

const sfl_area sfl_area_nn = {lib, NULL, NULL, "kernels"};
