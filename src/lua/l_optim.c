/* Optimizer-step and gradient-statistics kernels, bound as sf.kernels.*. */
#include <math.h>

#include "../nn/nn.h"
#include "sfl.h"

/* a contiguous tensor argument, named for messages */
static sf_tensor *check_contig(lua_State *L, int arg, const char *what) {
  sf_tensor *t = sfl_check(L, arg);
  if (!sf_tensor_is_contiguous(t)) {
    char buf[SF_SHAPE_BUF];
    luaL_error(L, "%s: argument #%d (%s) of shape %s must be contiguous", sfl_fname(L), arg, what, sf_tshape(t, buf));
  }
  return t;
}

static void check_numel(lua_State *L, int arg, const char *what, const sf_tensor *t, const sf_tensor *ref) {
  if (sf_tensor_numel(t) != sf_tensor_numel(ref)) {
    char b1[SF_SHAPE_BUF], b2[SF_SHAPE_BUF];
    luaL_error(L, "%s: argument #%d (%s) has shape %s, expected the parameter's shape %s", sfl_fname(L), arg, what,
               sf_tshape(t, b1), sf_tshape(ref, b2));
  }
}

/* K.sgd_step(param, grad, buf|nil, lr, momentum, dampening, nesterov, weight_decay, first_step) */
static int k_sgd_step(lua_State *L) {
  sf_tensor *p = check_contig(L, 1, "param"), *g = check_contig(L, 2, "grad");
  check_numel(L, 2, "grad", g, p);
  sf_tensor *buf = NULL;
  float momentum = (float)luaL_checknumber(L, 5);
  if (!lua_isnoneornil(L, 3)) {
    buf = check_contig(L, 3, "momentum buffer");
    check_numel(L, 3, "momentum buffer", buf, p);
  } else if (momentum != 0.0f) {
    return luaL_error(L, "%s: momentum %f needs a momentum buffer (argument #3)", sfl_fname(L), (double)momentum);
  }
  sf_sgd_step(sf_tensor_data(p), sf_tensor_data(g), buf ? sf_tensor_data(buf) : NULL, sf_tensor_numel(p),
              (float)luaL_checknumber(L, 4), momentum, (float)luaL_checknumber(L, 6), lua_toboolean(L, 7),
              (float)luaL_checknumber(L, 8), lua_toboolean(L, 9));
  return 0;
}

/* K.adam_step(param, grad, m, v, lr, beta1, beta2, eps, weight_decay, decoupled, step) */
static int k_adam_step(lua_State *L) {
  sf_tensor *p = check_contig(L, 1, "param"), *g = check_contig(L, 2, "grad");
  sf_tensor *m = check_contig(L, 3, "first moment"), *v = check_contig(L, 4, "second moment");
  check_numel(L, 2, "grad", g, p);
  check_numel(L, 3, "first moment", m, p);
  check_numel(L, 4, "second moment", v, p);
  int64_t step = sfl_checkinteger(L, 11);
  if (step < 1) return luaL_error(L, "%s: argument #11 (step) is %d, expected >= 1", sfl_fname(L), (int)step);
  sf_adam_step(sf_tensor_data(p), sf_tensor_data(g), sf_tensor_data(m), sf_tensor_data(v), sf_tensor_numel(p),
               (float)luaL_checknumber(L, 5), (float)luaL_checknumber(L, 6), (float)luaL_checknumber(L, 7),
               (float)luaL_checknumber(L, 8), (float)luaL_checknumber(L, 9), lua_toboolean(L, 10), step);
  return 0;
}

/* K.stats(t) -> {norm, sum_sq, max_abs, nan, inf, numel} */
static int k_stats(lua_State *L) {
  sf_tensor *t = sfl_check(L, 1);
  sf_tensor_stats st;
  if (sf_tensor_is_contiguous(t)) {
    sf_stats(&st, sf_tensor_data(t), sf_tensor_numel(t));
  } else {
    sf_tensor *c = sfl_push(L);
    SFL_TRY(L, sf_tensor_clone(c, t));
    sf_stats(&st, sf_tensor_data(c), sf_tensor_numel(c));
    lua_pop(L, 1);
  }
  lua_createtable(L, 0, 6);
  lua_pushnumber(L, sqrt(st.sum_sq));
  lua_setfield(L, -2, "norm");
  lua_pushnumber(L, st.sum_sq);
  lua_setfield(L, -2, "sum_sq");
  lua_pushnumber(L, st.max_abs);
  lua_setfield(L, -2, "max_abs");
  lua_pushinteger(L, (lua_Integer)st.n_nan);
  lua_setfield(L, -2, "nan");
  lua_pushinteger(L, (lua_Integer)st.n_inf);
  lua_setfield(L, -2, "inf");
  lua_pushinteger(L, (lua_Integer)sf_tensor_numel(t));
  lua_setfield(L, -2, "numel");
  return 1;
}

static sf_tensor *contiguous_arg(lua_State *L, int arg) {
  sf_tensor *t = sfl_check(L, arg);
  if (sf_tensor_is_contiguous(t)) return t;
  sf_tensor *c = sfl_push(L); /* stays on the stack until the function returns */
  SFL_TRY(L, sf_tensor_clone(c, t));
  return c;
}

/* K.snr_examples(g[B, ...][, eps = 1e-8]) -> the per-example SNR of one tensor */
static int k_snr_examples(lua_State *L) {
  sf_tensor *g = sfl_check(L, 1);
  double eps = luaL_optnumber(L, 2, 1e-8);
  char buf[SF_SHAPE_BUF];
  if (g->ndim < 1 || g->size[0] < 2)
    return luaL_error(L, "%s: argument #1 has shape %s, expected [B,...] with B >= 2 examples", sfl_fname(L),
                      sf_tshape(g, buf));
  g = contiguous_arg(L, 1);
  int64_t B = g->size[0];
  lua_pushnumber(L, sf_snr_examples(sf_tensor_data(g), B, sf_tensor_numel(g) / B, eps));
  return 1;
}

/* K.snr_code(g[, eps = 1e-8]) -> the released code's variance-across-rows SNR */
static int k_snr_code(lua_State *L) {
  sf_tensor *g = sfl_check(L, 1);
  double eps = luaL_optnumber(L, 2, 1e-8);
  g = contiguous_arg(L, 1);
  int64_t rows = g->ndim ? g->size[0] : 1;
  int64_t n = sf_tensor_numel(g);
  lua_pushnumber(L, sf_snr_code(sf_tensor_data(g), rows, rows ? n / rows : 0, eps));
  return 1;
}

/* an accumulator at arg: nil, or a contiguous tensor of exactly want's shape */
static float *acc_arg(lua_State *L, int arg, const char *what, int nd, const int64_t *want) {
  if (lua_isnoneornil(L, arg)) return NULL;
  sf_tensor *t = check_contig(L, arg, what);
  char b1[SF_SHAPE_BUF], b2[SF_SHAPE_BUF];
  int same = t->ndim == nd;
  for (int d = 0; same && d < nd; d++) same = t->size[d] == want[d];
  if (!same)
    luaL_error(L, "%s: argument #%d (%s) has shape %s, expected %s", sfl_fname(L), arg, what, sf_tshape(t, b1),
               sf_shape_str(b2, sizeof b2, nd, want));
  return sf_tensor_data(t);
}

/* K.linear_grad_moments(dout [N,...,K], input [N,...,C], sum_w [K,C]|nil, sumsq_w|nil,
 *                       sum_b [K]|nil, sumsq_b|nil): adds the per-example weight and bias
 * gradients' sums and sums of squares (one example = one row of the first dimension) */
static int k_linear_grad_moments(lua_State *L) {
  sf_tensor *dy = sfl_check(L, 1), *x = sfl_check(L, 2);
  char b1[SF_SHAPE_BUF], b2[SF_SHAPE_BUF];
  if (dy->ndim < 2 || x->ndim != dy->ndim || dy->size[0] != x->size[0])
    return luaL_error(L, "%s: dout %s and input %s must both be [N,...,F] with the same N", sfl_fname(L),
                      sf_tshape(dy, b1), sf_tshape(x, b2));
  int64_t N = x->size[0], K = dy->size[dy->ndim - 1], C = x->size[x->ndim - 1];
  int64_t T = sf_tensor_numel(x) / (N ? N : 1) / (C ? C : 1);
  if (sf_tensor_numel(dy) != N * T * K)
    return luaL_error(L, "%s: dout %s does not match input %s", sfl_fname(L), sf_tshape(dy, b1), sf_tshape(x, b2));
  dy = contiguous_arg(L, 1);
  x = contiguous_arg(L, 2);
  int64_t w[2] = {K, C}, b[1] = {K};
  float *sw = acc_arg(L, 3, "sum_w", 2, w), *qw = acc_arg(L, 4, "sumsq_w", 2, w);
  float *sb = acc_arg(L, 5, "sum_b", 1, b), *qb = acc_arg(L, 6, "sumsq_b", 1, b);
  SFL_TRY(L, sf_linear_grad_moments(sw, qw, sb, qb, sf_tensor_data(dy), sf_tensor_data(x), N, T, C, K));
  return 0;
}

/* K.conv2d_grad_moments(dout [N,K,OH,OW], input [N,C,H,W], weight_shape {K,C,R,S}, stride, pad,
 *                       sum_w|nil, sumsq_w|nil, sum_b|nil, sumsq_b|nil) */
static int k_conv2d_grad_moments(lua_State *L) {
  sf_tensor *dy = sfl_check(L, 1), *x = sfl_check(L, 2);
  int64_t ws[SF_MAX_DIMS];
  int nd = sfl_checkshape(L, 3, ws, NULL);
  char b1[SF_SHAPE_BUF], b2[SF_SHAPE_BUF];
  if (nd != 4 || x->ndim != 4 || dy->ndim != 4)
    return luaL_error(L, "%s: expected dout [N,K,OH,OW], input [N,C,H,W] and a weight shape {K,C,R,S}, got %s, %s",
                      sfl_fname(L), sf_tshape(dy, b1), sf_tshape(x, b2));
  sf_conv2d_shape s = {.N = x->size[0], .C = x->size[1], .H = x->size[2], .W = x->size[3], .K = ws[0], .R = ws[2],
                       .S = ws[3], .stride_h = sfl_checkinteger(L, 4), .stride_w = sfl_checkinteger(L, 4),
                       .pad_h = sfl_checkinteger(L, 5), .pad_w = sfl_checkinteger(L, 5), .groups = 1};
  if (ws[1] != s.C) return luaL_error(L, "%s: input has %d channels, weight expects %d", sfl_fname(L), (int)s.C, (int)ws[1]);
  SFL_TRY(L, sf_conv2d_shape_init(&s));
  if (dy->size[0] != s.N || dy->size[1] != s.K || dy->size[2] != s.OH || dy->size[3] != s.OW)
    return luaL_error(L, "%s: dout has shape %s, expected [%d,%d,%d,%d]", sfl_fname(L), sf_tshape(dy, b1), (int)s.N,
                      (int)s.K, (int)s.OH, (int)s.OW);
  dy = contiguous_arg(L, 1);
  x = contiguous_arg(L, 2);
  int64_t b[1] = {s.K};
  float *sw = acc_arg(L, 6, "sum_w", 4, ws), *qw = acc_arg(L, 7, "sumsq_w", 4, ws);
  float *sb = acc_arg(L, 8, "sum_b", 1, b), *qb = acc_arg(L, 9, "sumsq_b", 1, b);
  SFL_TRY(L, sf_conv2d_grad_moments(sw, qw, sb, qb, sf_tensor_data(dy), sf_tensor_data(x), &s));
  return 0;
}

static const luaL_Reg lib[] = {
    {"sgd_step", k_sgd_step}, {"adam_step", k_adam_step},     {"stats", k_stats},
    {"snr_examples", k_snr_examples}, {"snr_code", k_snr_code}, {"linear_grad_moments", k_linear_grad_moments},
    {"conv2d_grad_moments", k_conv2d_grad_moments}, {NULL, NULL},
};

const sfl_area sfl_area_optim = {lib, NULL, NULL, "kernels"};
