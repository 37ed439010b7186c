/*
 * Norm, activation, dropout and loss kernels as sf.kernels.* (src/nn/norm.c,
 * activation.c, loss.c): argument checks, output allocation, 1-based class ids.
 *
 * Conventions shared by every function here:
 *   - inputs may be any strided view: a non-contiguous one is copied to a contiguous
 *     temporary first (the kernels work on flat arrays);
 *   - an output argument is nil (allocated, for results the call exists to produce),
 *     a tensor (written into: it must be contiguous with exactly the expected shape),
 *     and for optional gradients nil/false (skipped, not computed) or true (allocated);
 *   - an output may be the very tensor given as the corresponding input (in place) for
 *     the elementwise kernels (activations, dropout, eval BatchNorm);
 *   - dgamma/dbeta are accumulated into (+= scale * gradient, Torch's
 *     accGradParameters), so they must be given as contiguous tensors, never allocated;
 *   - errors name the function, the argument position and name and the shapes:
 *     "batchnorm_forward_train: argument #2 (gamma) has shape [8], expected [16]
 *     (C of input [4,16,8,8])".
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "../nn/nn.h"
#include "sfl.h"

/* ---- argument helpers ---- */

static const char *type_name(lua_State *L, int arg) {
  if (lua_isnone(L, arg)) return "nil";
  if (luaL_testudata(L, arg, SFL_RNG)) return "rng";
  return luaL_typename(L, arg);
}

static sf_tensor *need_tensor(lua_State *L, int arg, const char *fn, const char *name) {
  sf_tensor *t = sfl_test(L, arg);
  if (!t) luaL_error(L, "%s: argument #%d (%s) expected a tensor, got %s", fn, arg, name, type_name(L, arg));
  if (!t->storage) luaL_error(L, "%s: argument #%d (%s) is an empty (released) tensor", fn, arg, name);
  return t;
}

static sf_tensor *opt_tensor(lua_State *L, int arg, const char *fn, const char *name) {
  return lua_isnoneornil(L, arg) ? NULL : need_tensor(L, arg, fn, name);
}

static double opt_number(lua_State *L, int arg, const char *fn, const char *name, double def) {
  if (lua_isnoneornil(L, arg)) return def;
  if (lua_type(L, arg) != LUA_TNUMBER)
    luaL_error(L, "%s: argument #%d (%s) expected a number, got %s", fn, arg, name, type_name(L, arg));
  double v = lua_tonumber(L, arg);
  if (!isfinite(v)) luaL_error(L, "%s: argument #%d (%s) must be finite, got %f", fn, arg, name, v);
  return v;
}

static int64_t need_count(lua_State *L, int arg, const char *fn, const char *name) {
  int isnum = 0;
  lua_Integer v = lua_tointegerx(L, arg, &isnum);
  if (!isnum || v < 1)
    luaL_error(L, "%s: argument #%d (%s) expected a positive integer, got %s", fn, arg, name,
               lua_type(L, arg) == LUA_TNUMBER ? lua_tostring(L, arg) : type_name(L, arg));
  return (int64_t)v;
}

/* "fn: argument #k (name) has shape [..], expected [..] (what [..])" unless the shape matches */
static void expect_shape(lua_State *L, const char *fn, int arg, const char *name, const sf_tensor *t, int nd,
                         const int64_t *size, const char *what, const sf_tensor *ref) {
  int ok = t->ndim == nd;
  for (int d = 0; ok && d < nd; d++) ok = t->size[d] == size[d];
  if (ok) return;
  char got[SF_SHAPE_BUF], want[SF_SHAPE_BUF], rs[SF_SHAPE_BUF];
  sf_tshape(t, got);
  sf_shape_str(want, sizeof want, nd, size);
  if (what && ref)
    luaL_error(L, "%s: argument #%d (%s) has shape %s, expected %s (%s %s)", fn, arg, name, got, want, what,
               sf_tshape(ref, rs));
  luaL_error(L, "%s: argument #%d (%s) has shape %s, expected %s", fn, arg, name, got, want);
}

static void expect_contiguous(lua_State *L, const char *fn, int arg, const char *name, const sf_tensor *t,
                              const char *why) {
  if (sf_tensor_is_contiguous(t)) return;
  char buf[SF_SHAPE_BUF];
  luaL_error(L, "%s: argument #%d (%s) must be contiguous (%s), got a strided view of shape %s", fn, arg, name,
             why, sf_tshape(t, buf));
}

/* The data of an input, contiguous: a strided view is copied into a temporary tensor
 * pushed on the stack (the collector frees it with the call's other values). */
static const float *in_data(lua_State *L, const sf_tensor *t) {
  if (!t) return NULL;
  if (sf_tensor_is_contiguous(t)) return sf_tensor_data(t);
  sf_tensor *c = sfl_push(L);
  SFL_TRY(L, sf_tensor_clone(c, t));
  sfl_account(L, c);
  return sf_tensor_data(c);
}

/* a fresh output the call always returns (saved statistics): pushed, stack index returned */
static int new_out(lua_State *L, int nd, const int64_t *size, float **data) {
  sf_tensor *t = sfl_push(L);
  SFL_TRY(L, sf_tensor_new(t, nd, size));
  sfl_account(L, t);
  *data = sf_tensor_data(t);
  return lua_gettop(L);
}

enum { NIL_ALLOCATES, NIL_SKIPS };

/* An output at arg (see the header): pushes the tensor to return and returns its stack
 * index with *data set, or returns 0 with *data = NULL when the output is skipped. */
static int out_arg(lua_State *L, int arg, const char *fn, const char *name, int nd, const int64_t *size,
                   int nil_mode, const char *what, const sf_tensor *ref, float **data) {
  *data = NULL;
  int ty = lua_type(L, arg);
  int alloc = 0;
  if (ty == LUA_TNONE || ty == LUA_TNIL) {
    if (nil_mode == NIL_SKIPS) return 0;
    alloc = 1;
  } else if (ty == LUA_TBOOLEAN) {
    if (!lua_toboolean(L, arg)) {
      if (nil_mode == NIL_SKIPS) return 0;
      luaL_error(L, "%s: argument #%d (%s) expected a tensor or nil, got false", fn, arg, name);
    }
    alloc = 1;
  }
  if (alloc) return new_out(L, nd, size, data);
  sf_tensor *t = sfl_test(L, arg);
  if (!t)
    luaL_error(L, "%s: argument #%d (%s) expected a tensor, %s or nil, got %s", fn, arg, name,
               nil_mode == NIL_SKIPS ? "true, false" : "true", type_name(L, arg));
  if (!t->storage) luaL_error(L, "%s: argument #%d (%s) is an empty (released) tensor", fn, arg, name);
  expect_shape(L, fn, arg, name, t, nd, size, what, ref);
  expect_contiguous(L, fn, arg, name, t, "outputs are written as flat arrays");
  *data = sf_tensor_data(t);
  lua_pushvalue(L, arg);
  return lua_gettop(L);
}

/* a tensor accumulated into (dgamma, dbeta): nil skips */
static float *acc_arg(lua_State *L, int arg, const char *fn, const char *name, int nd, const int64_t *size,
                      const char *what, const sf_tensor *ref) {
  sf_tensor *t = opt_tensor(L, arg, fn, name);
  if (!t) return NULL;
  expect_shape(L, fn, arg, name, t, nd, size, what, ref);
  expect_contiguous(L, fn, arg, name, t, "it is accumulated into");
  return sf_tensor_data(t);
}

static void push_index(lua_State *L, int idx) {
  if (idx)
    lua_pushvalue(L, idx);
  else
    lua_pushnil(L);
}

/* [N,C,*] -> N, C, HW (the product of the trailing dims; 1 for [N,C]) */
static void split_nchw(lua_State *L, const char *fn, int arg, const char *name, const sf_tensor *t, int64_t *N,
                       int64_t *C, int64_t *HW) {
  if (t->ndim < 2) {
    char buf[SF_SHAPE_BUF];
    luaL_error(L, "%s: argument #%d (%s) has shape %s, expected [N,C,*] with at least 2 dimensions", fn, arg, name,
               sf_tshape(t, buf));
  }
  *N = t->size[0];
  *C = t->size[1];
  int64_t hw = 1;
  for (int d = 2; d < t->ndim; d++) hw *= t->size[d];
  *HW = hw;
}

static void check_eps(lua_State *L, const char *fn, int arg, double eps) {
  if (eps < 0.0) luaL_error(L, "%s: argument #%d (eps) must be >= 0, got %f", fn, arg, eps);
}

static int check_flag(lua_State *L, int arg, const char *fn, const char *name) {
  if (lua_type(L, arg) != LUA_TBOOLEAN)
    luaL_error(L, "%s: argument #%d (%s) expected a boolean, got %s", fn, arg, name, type_name(L, arg));
  return lua_toboolean(L, arg);
}

/* ---- BatchNorm ---- */

/* An optional boolean argument (nil/none = false). */
static int opt_flag(lua_State *L, int arg, const char *fn, const char *name) {
  if (lua_isnoneornil(L, arg)) return 0;
  return check_flag(L, arg, fn, name);
}

/* K.batchnorm_forward_train(input, gamma|nil, beta|nil, running_mean|nil, running_var|nil,
 *                           momentum = 0.1, eps = 1e-5, out|nil, relu = false, stats|nil,
 *                           residual|nil)
 *   -> out, save_mean, save_invstd (relu: out = max(bn(input), 0) in the same pass;
 *   stats [N,C,2]: the input's row statistics as K.conv2d_forward computed them while
 *   writing it, which saves the pass over the input that finds them: same bits;
 *   residual (needs relu): out = max(bn(input) + residual, 0), still one pass) */
static int k_batchnorm_forward_train(lua_State *L) {
  lua_settop(L, 11); /* temporaries are pushed above the arguments */
  const char *fn = "batchnorm_forward_train";
  sf_tensor *x = need_tensor(L, 1, fn, "input");
  int64_t N, C, HW;
  split_nchw(L, fn, 1, "input", x, &N, &C, &HW);
  const int64_t cs[1] = {C};
  sf_tensor *g = opt_tensor(L, 2, fn, "gamma"), *b = opt_tensor(L, 3, fn, "beta");
  sf_tensor *rm = opt_tensor(L, 4, fn, "running_mean"), *rv = opt_tensor(L, 5, fn, "running_var");
  if (g) expect_shape(L, fn, 2, "gamma", g, 1, cs, "C of input", x);
  if (b) expect_shape(L, fn, 3, "beta", b, 1, cs, "C of input", x);
  if (!rm != !rv)
    luaL_error(L, "%s: running_mean (argument #4) and running_var (argument #5) must be given together", fn);
  if (rm) {
    expect_shape(L, fn, 4, "running_mean", rm, 1, cs, "C of input", x);
    expect_shape(L, fn, 5, "running_var", rv, 1, cs, "C of input", x);
    expect_contiguous(L, fn, 4, "running_mean", rm, "it is updated in place");
    expect_contiguous(L, fn, 5, "running_var", rv, "it is updated in place");
  }
  double momentum = opt_number(L, 6, fn, "momentum", 0.1);
  double eps = opt_number(L, 7, fn, "eps", 1e-5);
  check_eps(L, fn, 7, eps);
  if (N * HW <= 1) {
    char buf[SF_SHAPE_BUF];
    luaL_error(L, "%s: argument #1 (input) has shape %s: batch statistics need more than 1 value per channel", fn,
               sf_tshape(x, buf));
  }
  const int relu = opt_flag(L, 9, fn, "relu");
  sf_tensor *st = opt_tensor(L, 10, fn, "stats");
  if (st) {
    const int64_t ss[3] = {N, C, 2};
    expect_shape(L, fn, 10, "stats", st, 3, ss, "[N, C, 2] of input", x);
  }
  sf_tensor *res = opt_tensor(L, 11, fn, "residual");
  if (res) {
    if (!relu) luaL_error(L, "%s: argument #11 (residual) is only taken with relu = true (argument #9)", fn);
    expect_shape(L, fn, 11, "residual", res, x->ndim, x->size, "the shape of input", x);
  }
  const float *xd = in_data(L, x), *gd = in_data(L, g), *bd = in_data(L, b), *rsd = in_data(L, st);
  const float *resd = in_data(L, res);
  float *od, *md, *sd;
  int oi = out_arg(L, 8, fn, "out", x->ndim, x->size, NIL_ALLOCATES, "the shape of input", x, &od);
  int mi = new_out(L, 1, cs, &md);
  int si = new_out(L, 1, cs, &sd);
  float *rmd = rm ? sf_tensor_data(rm) : NULL, *rvd = rv ? sf_tensor_data(rv) : NULL;
  if (res)
    sf_batchnorm_add_relu_forward_train(od, md, sd, rmd, rvd, xd, resd, gd, bd, rsd, N, C, HW, (float)momentum,
                                        (float)eps);
  else
    (relu ? sf_batchnorm_relu_forward_train : sf_batchnorm_forward_train)(od, md, sd, rmd, rvd, xd, gd, bd, rsd, N,
                                                                          C, HW, (float)momentum, (float)eps);
  push_index(L, oi);
  push_index(L, mi);
  push_index(L, si);
  return 3;
}

/* K.batchnorm_forward_eval(input, gamma|nil, beta|nil, running_mean, running_var, eps = 1e-5,
 *                          out|nil, relu = false) -> out, invstd (1/sqrt(running_var + eps),
 *                          for backward) */
static int k_batchnorm_forward_eval(lua_State *L) {
  lua_settop(L, 8); /* temporaries are pushed above the arguments */
  const char *fn = "batchnorm_forward_eval";
  sf_tensor *x = need_tensor(L, 1, fn, "input");
  int64_t N, C, HW;
  split_nchw(L, fn, 1, "input", x, &N, &C, &HW);
  const int64_t cs[1] = {C};
  sf_tensor *g = opt_tensor(L, 2, fn, "gamma"), *b = opt_tensor(L, 3, fn, "beta");
  sf_tensor *rm = need_tensor(L, 4, fn, "running_mean"), *rv = need_tensor(L, 5, fn, "running_var");
  if (g) expect_shape(L, fn, 2, "gamma", g, 1, cs, "C of input", x);
  if (b) expect_shape(L, fn, 3, "beta", b, 1, cs, "C of input", x);
  expect_shape(L, fn, 4, "running_mean", rm, 1, cs, "C of input", x);
  expect_shape(L, fn, 5, "running_var", rv, 1, cs, "C of input", x);
  double eps = opt_number(L, 6, fn, "eps", 1e-5);
  check_eps(L, fn, 6, eps);
  const float *xd = in_data(L, x), *gd = in_data(L, g), *bd = in_data(L, b);
  const float *md = in_data(L, rm), *vd = in_data(L, rv);
  const int relu = opt_flag(L, 8, fn, "relu");
  float *od, *sd;
  int oi = out_arg(L, 7, fn, "out", x->ndim, x->size, NIL_ALLOCATES, "the shape of input", x, &od);
  int si = new_out(L, 1, cs, &sd);
  (relu ? sf_batchnorm_relu_forward_eval : sf_batchnorm_forward_eval)(od, sd, xd, gd, bd, md, vd, N, C, HW,
                                                                      (float)eps);
  push_index(L, oi);
  push_index(L, si);
  return 2;
}

/* K.batchnorm_backward(dout, input, gamma|nil, mean, invstd, dinp, dgamma|nil, dbeta|nil,
 *                      batch_stats, scale = 1, relu = false, beta|nil) -> dinp|nil
 * relu: the forward was the fused one (relu = true) with this gamma and beta; dout then
 * counts only where its output was positive (the ReLU's backward in the same pass).
 * mean/invstd: save_mean/save_invstd of the training forward (batch_stats = true), or
 * running_mean and the invstd returned by the eval forward (batch_stats = false). */
static int k_batchnorm_backward(lua_State *L) {
  lua_settop(L, 12); /* temporaries are pushed above the arguments */
  const char *fn = "batchnorm_backward";
  sf_tensor *dy = need_tensor(L, 1, fn, "dout");
  sf_tensor *x = need_tensor(L, 2, fn, "input");
  int64_t N, C, HW;
  split_nchw(L, fn, 2, "input", x, &N, &C, &HW);
  const int64_t cs[1] = {C};
  expect_shape(L, fn, 1, "dout", dy, x->ndim, x->size, "the shape of input", x);
  sf_tensor *g = opt_tensor(L, 3, fn, "gamma");
  sf_tensor *m = need_tensor(L, 4, fn, "mean"), *is = need_tensor(L, 5, fn, "invstd");
  if (g) expect_shape(L, fn, 3, "gamma", g, 1, cs, "C of input", x);
  expect_shape(L, fn, 4, "mean", m, 1, cs, "C of input", x);
  expect_shape(L, fn, 5, "invstd", is, 1, cs, "C of input", x);
  float *dg = acc_arg(L, 7, fn, "dgamma", 1, cs, "C of input", x);
  float *db = acc_arg(L, 8, fn, "dbeta", 1, cs, "C of input", x);
  int batch_stats = check_flag(L, 9, fn, "batch_stats");
  double scale = opt_number(L, 10, fn, "scale", 1.0);
  const int relu = opt_flag(L, 11, fn, "relu");
  sf_tensor *be = opt_tensor(L, 12, fn, "beta");
  if (be) expect_shape(L, fn, 12, "beta", be, 1, cs, "C of input", x);
  const float *dyd = in_data(L, dy), *xd = in_data(L, x), *gd = in_data(L, g), *bed = in_data(L, be);
  const float *md = in_data(L, m), *isd = in_data(L, is);
  float *dxd;
  int di = out_arg(L, 6, fn, "dinp", x->ndim, x->size, NIL_SKIPS, "the shape of input", x, &dxd);
  if (relu)
    sf_batchnorm_relu_backward(dxd, dg, db, dyd, xd, gd, bed, md, isd, N, C, HW, batch_stats, (float)scale);
  else
    sf_batchnorm_backward(dxd, dg, db, dyd, xd, gd, md, isd, N, C, HW, batch_stats, (float)scale);
  push_index(L, di);
  return 1;
}

/* ---- LayerNorm ---- */

/* The rows M of a LayerNorm over the last D elements: the trailing dimensions of x must
 * multiply to exactly D. */
static int64_t layernorm_rows(lua_State *L, const char *fn, int xarg, const sf_tensor *x, int darg, int64_t D) {
  int64_t prod = 1;
  for (int d = x->ndim - 1; d >= 0; d--) {
    prod *= x->size[d];
    if (prod == D) {
      int64_t M = 1;
      for (int k = 0; k < d; k++) M *= x->size[k];
      return M;
    }
  }
  char buf[SF_SHAPE_BUF];
  luaL_error(L, "%s: argument #%d (D) is %I, which is not the size of the trailing dimensions of argument #%d "
                "(input) of shape %s",
             fn, darg, (lua_Integer)D, xarg, sf_tshape(x, buf));
  return 0;
}

/* gamma/beta of a LayerNorm: [D], or the trailing dimensions of input that make up D */
static void expect_ln_param(lua_State *L, const char *fn, int arg, const char *name, const sf_tensor *p,
                            const sf_tensor *x, int64_t D) {
  if (p->ndim == 1 && p->size[0] == D) return;
  if (p->ndim <= x->ndim) {
    int ok = 1;
    for (int d = 0; d < p->ndim && ok; d++) ok = p->size[d] == x->size[x->ndim - p->ndim + d];
    if (ok && sf_tensor_numel(p) == D) return;
  }
  char got[SF_SHAPE_BUF], xs[SF_SHAPE_BUF];
  luaL_error(L, "%s: argument #%d (%s) has shape %s, expected [%I] (D, the trailing elements of input %s)", fn, arg,
             name, sf_tshape(p, got), (lua_Integer)D, sf_tshape(x, xs));
}

/* K.layernorm_forward(input, D, gamma|nil, beta|nil, eps = 1e-5, out|nil)
 *   -> out, save_mean [M], save_rstd [M]   (M = numel / D rows) */
static int k_layernorm_forward(lua_State *L) {
  lua_settop(L, 6); /* temporaries are pushed above the arguments */
  const char *fn = "layernorm_forward";
  sf_tensor *x = need_tensor(L, 1, fn, "input");
  int64_t D = need_count(L, 2, fn, "D");
  int64_t M = layernorm_rows(L, fn, 1, x, 2, D);
  sf_tensor *g = opt_tensor(L, 3, fn, "gamma"), *b = opt_tensor(L, 4, fn, "beta");
  if (g) expect_ln_param(L, fn, 3, "gamma", g, x, D);
  if (b) expect_ln_param(L, fn, 4, "beta", b, x, D);
  double eps = opt_number(L, 5, fn, "eps", 1e-5);
  check_eps(L, fn, 5, eps);
  const float *xd = in_data(L, x), *gd = in_data(L, g), *bd = in_data(L, b);
  const int64_t ms[1] = {M};
  float *od, *md, *rd;
  int oi = out_arg(L, 6, fn, "out", x->ndim, x->size, NIL_ALLOCATES, "the shape of input", x, &od);
  int mi = new_out(L, 1, ms, &md);
  int ri = new_out(L, 1, ms, &rd);
  sf_layernorm_forward(od, md, rd, xd, gd, bd, M, D, (float)eps);
  push_index(L, oi);
  push_index(L, mi);
  push_index(L, ri);
  return 3;
}

/* K.layernorm_backward(dout, input, D, gamma|nil, save_mean, save_rstd, dinp, dgamma|nil,
 *                      dbeta|nil, scale = 1) -> dinp|nil */
static int k_layernorm_backward(lua_State *L) {
  lua_settop(L, 10); /* temporaries are pushed above the arguments */
  const char *fn = "layernorm_backward";
  sf_tensor *dy = need_tensor(L, 1, fn, "dout");
  sf_tensor *x = need_tensor(L, 2, fn, "input");
  expect_shape(L, fn, 1, "dout", dy, x->ndim, x->size, "the shape of input", x);
  int64_t D = need_count(L, 3, fn, "D");
  int64_t M = layernorm_rows(L, fn, 2, x, 3, D);
  const int64_t ms[1] = {M};
  sf_tensor *g = opt_tensor(L, 4, fn, "gamma");
  if (g) expect_ln_param(L, fn, 4, "gamma", g, x, D);
  sf_tensor *m = need_tensor(L, 5, fn, "save_mean"), *r = need_tensor(L, 6, fn, "save_rstd");
  expect_shape(L, fn, 5, "save_mean", m, 1, ms, "rows of input", x);
  expect_shape(L, fn, 6, "save_rstd", r, 1, ms, "rows of input", x);
  /* dgamma/dbeta are flat [D] arrays whatever shape the parameter has */
  float *dg = NULL, *db = NULL;
  sf_tensor *dgt = opt_tensor(L, 8, fn, "dgamma"), *dbt = opt_tensor(L, 9, fn, "dbeta");
  if (dgt) {
    expect_ln_param(L, fn, 8, "dgamma", dgt, x, D);
    expect_contiguous(L, fn, 8, "dgamma", dgt, "it is accumulated into");
    dg = sf_tensor_data(dgt);
  }
  if (dbt) {
    expect_ln_param(L, fn, 9, "dbeta", dbt, x, D);
    expect_contiguous(L, fn, 9, "dbeta", dbt, "it is accumulated into");
    db = sf_tensor_data(dbt);
  }
  double scale = opt_number(L, 10, fn, "scale", 1.0);
  const float *dyd = in_data(L, dy), *xd = in_data(L, x), *gd = in_data(L, g);
  const float *md = in_data(L, m), *rd = in_data(L, r);
  float *dxd;
  int di = out_arg(L, 7, fn, "dinp", x->ndim, x->size, NIL_SKIPS, "the shape of input", x, &dxd);
  sf_layernorm_backward(dxd, dg, db, dyd, xd, gd, md, rd, M, D, (float)scale);
  push_index(L, di);
  return 1;
}

/* ---- GroupNorm ---- */

static int64_t groupnorm_groups(lua_State *L, const char *fn, int garg, int xarg, const sf_tensor *x, int64_t C) {
  int64_t G = need_count(L, garg, fn, "G");
  if (C % G != 0) {
    char buf[SF_SHAPE_BUF];
    luaL_error(L, "%s: argument #%d (G) is %I, which does not divide C = %I of argument #%d (input) of shape %s", fn,
               garg, (lua_Integer)G, (lua_Integer)C, xarg, sf_tshape(x, buf));
  }
  return G;
}

/* K.groupnorm_forward(input, G, gamma|nil, beta|nil, eps = 1e-5, out|nil)
 *   -> out, save_mean [N,G], save_rstd [N,G] */
static int k_groupnorm_forward(lua_State *L) {
  lua_settop(L, 6); /* temporaries are pushed above the arguments */
  const char *fn = "groupnorm_forward";
  sf_tensor *x = need_tensor(L, 1, fn, "input");
  int64_t N, C, HW;
  split_nchw(L, fn, 1, "input", x, &N, &C, &HW);
  int64_t G = groupnorm_groups(L, fn, 2, 1, x, C);
  const int64_t cs[1] = {C}, ng[2] = {N, G};
  sf_tensor *g = opt_tensor(L, 3, fn, "gamma"), *b = opt_tensor(L, 4, fn, "beta");
  if (g) expect_shape(L, fn, 3, "gamma", g, 1, cs, "C of input", x);
  if (b) expect_shape(L, fn, 4, "beta", b, 1, cs, "C of input", x);
  double eps = opt_number(L, 5, fn, "eps", 1e-5);
  check_eps(L, fn, 5, eps);
  const float *xd = in_data(L, x), *gd = in_data(L, g), *bd = in_data(L, b);
  float *od, *md, *rd;
  int oi = out_arg(L, 6, fn, "out", x->ndim, x->size, NIL_ALLOCATES, "the shape of input", x, &od);
  int mi = new_out(L, 2, ng, &md);
  int ri = new_out(L, 2, ng, &rd);
  sf_groupnorm_forward(od, md, rd, xd, gd, bd, N, C, HW, G, (float)eps);
  push_index(L, oi);
  push_index(L, mi);
  push_index(L, ri);
  return 3;
}

/* K.groupnorm_backward(dout, input, G, gamma|nil, save_mean, save_rstd, dinp, dgamma|nil,
 *                      dbeta|nil, scale = 1) -> dinp|nil */
static int k_groupnorm_backward(lua_State *L) {
  lua_settop(L, 10); /* temporaries are pushed above the arguments */
  const char *fn = "groupnorm_backward";
  sf_tensor *dy = need_tensor(L, 1, fn, "dout");
  sf_tensor *x = need_tensor(L, 2, fn, "input");
  int64_t N, C, HW;
  split_nchw(L, fn, 2, "input", x, &N, &C, &HW);
  expect_shape(L, fn, 1, "dout", dy, x->ndim, x->size, "the shape of input", x);
  int64_t G = groupnorm_groups(L, fn, 3, 2, x, C);
  const int64_t cs[1] = {C}, ng[2] = {N, G};
  sf_tensor *g = opt_tensor(L, 4, fn, "gamma");
  if (g) expect_shape(L, fn, 4, "gamma", g, 1, cs, "C of input", x);
  sf_tensor *m = need_tensor(L, 5, fn, "save_mean"), *r = need_tensor(L, 6, fn, "save_rstd");
  expect_shape(L, fn, 5, "save_mean", m, 2, ng, "N and G of input", x);
  expect_shape(L, fn, 6, "save_rstd", r, 2, ng, "N and G of input", x);
  float *dg = acc_arg(L, 8, fn, "dgamma", 1, cs, "C of input", x);
  float *db = acc_arg(L, 9, fn, "dbeta", 1, cs, "C of input", x);
  double scale = opt_number(L, 10, fn, "scale", 1.0);
  const float *dyd = in_data(L, dy), *xd = in_data(L, x), *gd = in_data(L, g);
  const float *md = in_data(L, m), *rd = in_data(L, r);
  float *dxd;
  int di = out_arg(L, 7, fn, "dinp", x->ndim, x->size, NIL_SKIPS, "the shape of input", x, &dxd);
  sf_groupnorm_backward(dxd, dg, db, dyd, xd, gd, md, rd, N, C, HW, G, (float)scale);
  push_index(L, di);
  return 1;
}

/* ---- activations ---- */

typedef void (*act_fwd_fn)(float *, const float *, int64_t);
typedef void (*act_bwd_fn)(float *, const float *, const float *, int64_t);

/* nil/false/"none": exact erf form; true/"tanh": the tanh approximation */
static int gelu_mode(lua_State *L, int arg, const char *fn) {
  int ty = lua_type(L, arg);
  if (ty == LUA_TNONE || ty == LUA_TNIL) return 0;
  if (ty == LUA_TBOOLEAN) return lua_toboolean(L, arg);
  if (ty == LUA_TSTRING) {
    const char *s = lua_tostring(L, arg);
    if (strcmp(s, "none") == 0) return 0;
    if (strcmp(s, "tanh") == 0) return 1;
    luaL_error(L, "%s: argument #%d (approximate) must be \"none\" or \"tanh\", got \"%s\"", fn, arg, s);
  }
  luaL_error(L, "%s: argument #%d (approximate) expected \"none\", \"tanh\" or a boolean, got %s", fn, arg,
             type_name(L, arg));
  return 0;
}

/* (input, out|nil [, approximate]) -> out */
static int act_forward(lua_State *L, const char *fn, act_fwd_fn f, int gelu) {
  lua_settop(L, 3);
  sf_tensor *x = need_tensor(L, 1, fn, "input");
  int approx = gelu ? gelu_mode(L, 3, fn) : 0;
  const float *xd = in_data(L, x);
  float *od;
  int oi = out_arg(L, 2, fn, "out", x->ndim, x->size, NIL_ALLOCATES, "the shape of input", x, &od);
  if (gelu)
    sf_gelu_forward(od, xd, sf_tensor_numel(x), approx);
  else
    f(od, xd, sf_tensor_numel(x));
  push_index(L, oi);
  return 1;
}

/* (dout, saved, dinp|nil [, approximate]) -> dinp */
static int act_backward(lua_State *L, const char *fn, const char *saved, act_bwd_fn f, int gelu) {
  lua_settop(L, 4);
  sf_tensor *dy = need_tensor(L, 1, fn, "dout");
  sf_tensor *s = need_tensor(L, 2, fn, saved);
  char what[64];
  snprintf(what, sizeof what, "the shape of %s", saved);
  expect_shape(L, fn, 1, "dout", dy, s->ndim, s->size, what, s);
  int approx = gelu ? gelu_mode(L, 4, fn) : 0;
  const float *dyd = in_data(L, dy), *sd = in_data(L, s);
  float *dxd;
  int di = out_arg(L, 3, fn, "dinp", s->ndim, s->size, NIL_ALLOCATES, what, s, &dxd);
  if (gelu)
    sf_gelu_backward(dxd, dyd, sd, sf_tensor_numel(s), approx);
  else
    f(dxd, dyd, sd, sf_tensor_numel(s));
  push_index(L, di);
  return 1;
}

static int k_relu_forward(lua_State *L) { return act_forward(L, "relu_forward", sf_relu_forward, 0); }

/* K.add_relu_forward(a, b, out|nil) -> out = max(a + b, 0) (out may be a or b) */
static int k_add_relu_forward(lua_State *L) {
  lua_settop(L, 3);
  const char *fn = "add_relu_forward";
  sf_tensor *a = need_tensor(L, 1, fn, "a"), *b = need_tensor(L, 2, fn, "b");
  expect_shape(L, fn, 2, "b", b, a->ndim, a->size, "the shape of a", a);
  const float *ad = in_data(L, a), *bd = in_data(L, b);
  float *od;
  int oi = out_arg(L, 3, fn, "out", a->ndim, a->size, NIL_ALLOCATES, "the shape of a", a, &od);
  sf_add_relu_forward(od, ad, bd, sf_tensor_numel(a));
  push_index(L, oi);
  return 1;
}
static int k_relu_backward(lua_State *L) {
  return act_backward(L, "relu_backward", "input_or_output", sf_relu_backward, 0);
}
static int k_gelu_forward(lua_State *L) { return act_forward(L, "gelu_forward", NULL, 1); }
static int k_gelu_backward(lua_State *L) { return act_backward(L, "gelu_backward", "input", NULL, 1); }
static int k_tanh_forward(lua_State *L) { return act_forward(L, "tanh_forward", sf_tanh_forward, 0); }
static int k_tanh_backward(lua_State *L) { return act_backward(L, "tanh_backward", "output", sf_tanh_backward, 0); }
static int k_sigmoid_forward(lua_State *L) { return act_forward(L, "sigmoid_forward", sf_sigmoid_forward, 0); }
static int k_sigmoid_backward(lua_State *L) {
  return act_backward(L, "sigmoid_backward", "output", sf_sigmoid_backward, 0);
}

/* ---- dropout ---- */

static float check_p(lua_State *L, int arg, const char *fn) {
  if (lua_type(L, arg) != LUA_TNUMBER)
    luaL_error(L, "%s: argument #%d (p) expected a number, got %s", fn, arg, type_name(L, arg));
  double p = lua_tonumber(L, arg);
  if (!(p >= 0.0 && p <= 1.0)) luaL_error(L, "%s: argument #%d (p) must be in [0, 1], got %f", fn, arg, p);
  return (float)p;
}

/* K.dropout_forward(input, p, rng|nil, out|nil, mask|nil) -> out, mask (1 kept, 0 dropped);
 * rng nil = the default generator */
static int k_dropout_forward(lua_State *L) {
  lua_settop(L, 5); /* temporaries are pushed above the arguments */
  const char *fn = "dropout_forward";
  sf_tensor *x = need_tensor(L, 1, fn, "input");
  float p = check_p(L, 2, fn);
  sf_rng *r = NULL;
  if (lua_isnoneornil(L, 3)) {
    r = sfl_optrng(L, 3);
  } else {
    r = luaL_testudata(L, 3, SFL_RNG);
    if (!r) luaL_error(L, "%s: argument #3 (rng) expected an rng or nil, got %s", fn, type_name(L, 3));
  }
  const float *xd = in_data(L, x);
  float *od, *md;
  int oi = out_arg(L, 4, fn, "out", x->ndim, x->size, NIL_ALLOCATES, "the shape of input", x, &od);
  int mi = out_arg(L, 5, fn, "mask", x->ndim, x->size, NIL_ALLOCATES, "the shape of input", x, &md);
  if (md == od || (const float *)md == xd)
    luaL_error(L, "%s: argument #5 (mask) must not be the input or the output tensor", fn);
  sf_dropout_forward(od, md, xd, sf_tensor_numel(x), p, r);
  push_index(L, oi);
  push_index(L, mi);
  return 2;
}

/* K.dropout_backward(dout, mask, p, dinp|nil) -> dinp */
static int k_dropout_backward(lua_State *L) {
  lua_settop(L, 4); /* temporaries are pushed above the arguments */
  const char *fn = "dropout_backward";
  sf_tensor *dy = need_tensor(L, 1, fn, "dout");
  sf_tensor *m = need_tensor(L, 2, fn, "mask");
  expect_shape(L, fn, 1, "dout", dy, m->ndim, m->size, "the shape of mask", m);
  float p = check_p(L, 3, fn);
  const float *dyd = in_data(L, dy), *md = in_data(L, m);
  float *dxd;
  int di = out_arg(L, 4, fn, "dinp", m->ndim, m->size, NIL_ALLOCATES, "the shape of mask", m, &dxd);
  sf_dropout_backward(dxd, dyd, md, sf_tensor_numel(m), p);
  push_index(L, di);
  return 1;
}

/* ---- losses ---- */

/* logits must be [N,K] with N, K >= 1 */
static void check_logits(lua_State *L, const char *fn, int arg, const char *name, const sf_tensor *t) {
  if (t->ndim != 2 || t->size[0] < 1 || t->size[1] < 1) {
    char buf[SF_SHAPE_BUF];
    luaL_error(L, "%s: argument #%d (%s) has shape %s, expected [N,K] with N, K >= 1", fn, arg, name,
               sf_tshape(t, buf));
  }
}

/* K.cross_entropy(logits, targets, label_smoothing = 0, dlogits|nil|true, scale = 1)
 *   -> loss, dlogits|nil
 * targets: [N] 1-based class ids (floats holding integers) */
static int k_cross_entropy(lua_State *L) {
  lua_settop(L, 5); /* temporaries are pushed above the arguments */
  const char *fn = "cross_entropy";
  sf_tensor *x = need_tensor(L, 1, fn, "logits");
  check_logits(L, fn, 1, "logits", x);
  const int64_t N = x->size[0], K = x->size[1];
  sf_tensor *t = need_tensor(L, 2, fn, "targets");
  const int64_t ns[1] = {N};
  expect_shape(L, fn, 2, "targets", t, 1, ns, "N of logits", x);
  double ls = opt_number(L, 3, fn, "label_smoothing", 0.0);
  if (ls < 0.0 || ls > 1.0) luaL_error(L, "%s: argument #3 (label_smoothing) must be in [0, 1], got %f", fn, ls);
  double scale = opt_number(L, 5, fn, "scale", 1.0);
  /* 1-based float ids -> 0-based integers, in a buffer the collector owns */
  int64_t *ids = lua_newuserdatauv(L, (size_t)N * sizeof *ids, 0);
  for (int64_t n = 0; n < N; n++) {
    const float v = t->storage->data[t->offset + n * t->stride[0]];
    if (!(v >= 1.0f && v <= (float)K) || v != floorf(v)) {
      char vs[32];
      snprintf(vs, sizeof vs, "%.9g", (double)v);
      luaL_error(L, "%s: argument #2 (targets) has value %s at index %I, expected a class id in 1..%I", fn, vs,
                 (lua_Integer)n + 1, (lua_Integer)K);
    }
    ids[n] = (int64_t)v - 1;
  }
  const float *xd = in_data(L, x);
  float *dd;
  int di = out_arg(L, 4, fn, "dlogits", 2, x->size, NIL_SKIPS, "the shape of logits", x, &dd);
  double loss = 0.0;
  SFL_TRY(L, sf_cross_entropy(&loss, dd, xd, ids, N, K, (float)ls, (float)scale));
  lua_pushnumber(L, (lua_Number)loss);
  push_index(L, di);
  return 2;
}

/* K.mse(pred, target, dpred|nil|true, scale = 1) -> loss (mean), dpred|nil */
static int k_mse(lua_State *L) {
  lua_settop(L, 4); /* temporaries are pushed above the arguments */
  const char *fn = "mse";
  sf_tensor *p = need_tensor(L, 1, fn, "pred");
  sf_tensor *t = need_tensor(L, 2, fn, "target");
  expect_shape(L, fn, 2, "target", t, p->ndim, p->size, "the shape of pred", p);
  if (sf_tensor_numel(p) == 0) {
    char buf[SF_SHAPE_BUF];
    luaL_error(L, "%s: argument #1 (pred) has shape %s: the mean of no elements is undefined", fn, sf_tshape(p, buf));
  }
  double scale = opt_number(L, 4, fn, "scale", 1.0);
  const float *pd = in_data(L, p), *td = in_data(L, t);
  float *dd;
  int di = out_arg(L, 3, fn, "dpred", p->ndim, p->size, NIL_SKIPS, "the shape of pred", p, &dd);
  double loss = sf_mse(dd, pd, td, sf_tensor_numel(p), (float)scale);
  lua_pushnumber(L, (lua_Number)loss);
  push_index(L, di);
  return 2;
}

/* K.softmax_entropy(logits, dlogits|nil|true, scale = 1) -> loss (mean entropy), dlogits|nil */
static int k_softmax_entropy(lua_State *L) {
  lua_settop(L, 3); /* temporaries are pushed above the arguments */
  const char *fn = "softmax_entropy";
  sf_tensor *x = need_tensor(L, 1, fn, "logits");
  check_logits(L, fn, 1, "logits", x);
  double scale = opt_number(L, 3, fn, "scale", 1.0);
  const float *xd = in_data(L, x);
  float *dd;
  int di = out_arg(L, 2, fn, "dlogits", 2, x->size, NIL_SKIPS, "the shape of logits", x, &dd);
  double loss = sf_softmax_entropy(dd, xd, x->size[0], x->size[1], (float)scale);
  lua_pushnumber(L, (lua_Number)loss);
  push_index(L, di);
  return 2;
}

static const luaL_Reg lib[] = {
    {"batchnorm_forward_train", k_batchnorm_forward_train},
    {"batchnorm_forward_eval", k_batchnorm_forward_eval},
    {"batchnorm_backward", k_batchnorm_backward},
    {"layernorm_forward", k_layernorm_forward},
    {"layernorm_backward", k_layernorm_backward},
    {"groupnorm_forward", k_groupnorm_forward},
    {"groupnorm_backward", k_groupnorm_backward},
    {"relu_forward", k_relu_forward},
    {"add_relu_forward", k_add_relu_forward},
    {"relu_backward", k_relu_backward},
    {"gelu_forward", k_gelu_forward},
    {"gelu_backward", k_gelu_backward},
    {"tanh_forward", k_tanh_forward},
    {"tanh_backward", k_tanh_backward},
    {"sigmoid_forward", k_sigmoid_forward},
    {"sigmoid_backward", k_sigmoid_backward},
    {"dropout_forward", k_dropout_forward},
    {"dropout_backward", k_dropout_backward},
    {"cross_entropy", k_cross_entropy},
    {"mse", k_mse},
    {"softmax_entropy", k_softmax_entropy},
    {NULL, NULL},
};

const sfl_area sfl_area_norm = {lib, NULL, NULL, "kernels"};
