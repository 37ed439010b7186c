/* Reduction bindings: sum, mean, prod, var, std, max, min, argmax, argmin, norm,
 * softmax, log_softmax, allclose, max_abs_diff.
 *
 * Signatures (dims are 1-based, negative from the end; indices returned are 1-based):
 *   t:sum([dim [, keepdim]])      also mean, prod: a number without dim, else a tensor
 *   t:max([dim [, keepdim]])      also min: a number; with dim, values and indices
 *                                 tensors (indices as floats), like Torch7
 *   t:argmax([dim [, keepdim]])   also argmin: an integer linear index (row-major) without
 *                                 dim, else a tensor of indices along dim
 *   t:var([dim] [, opts])         also std; opts = {ddof = 1, keepdim = false} or just
 *                                 the keepdim boolean. ddof = 1 (sample variance) is the
 *                                 default, as in PyTorch; ddof = 0 is the population
 *                                 variance; when n - ddof <= 0 the result is nan.
 *   t:norm([p [, dim [, keepdim]]])  p = 2 by default; 1, math.huge, -math.huge, 0 and any
 *                                 other real p
 *   t:softmax(dim), t:log_softmax(dim)   dim required
 *   sf.kernels.softmax_backward(grad_out, out [, scale = 1])  scale * out * (grad_out -
 *                                 sum(grad_out * out, -1)): the gradient through softmax(-1)
 *   t:allclose(u [, rtol = 1e-5 [, atol = 1e-8]])  a boolean; same shapes required
 *   t:max_abs_diff(u)             a number: max |t - u|, same shapes required
 * Ties in max/min/argmax/argmin give the first index; a NaN wins (NaN value, its index).
 */
#include <string.h>

#include "sfl.h"

/* keepdim at arg: absent/nil = false, else a boolean */
static int optkeepdim(lua_State *L, int arg) {
  if (lua_isnoneornil(L, arg)) return 0;
  if (!lua_isboolean(L, arg))
    return luaL_error(L, "bad argument #%d to '%s' (keepdim must be a boolean, got %s)", arg, sfl_fname(L),
                      luaL_typename(L, arg));
  return lua_toboolean(L, arg);
}

/* turn a fresh contiguous tensor of 0-based indices into 1-based ones */
static void one_based(sf_tensor *idx) {
  float *p = sf_tensor_data(idx);
  for (int64_t i = 0, n = sf_tensor_numel(idx); i < n; i++) p[i] += 1.0f;
}

/* t:op([dim [, keepdim]]) for sum, mean, prod, argmax, argmin */
static int reduce_method(lua_State *L, sf_reduce_op op) {
  sf_tensor *a = sfl_check(L, 1);
  if (lua_isnoneornil(L, 2)) {
    if (!lua_isnoneornil(L, 3))
      return luaL_error(L, "bad argument #3 to '%s' (keepdim needs a dimension (argument #2))", sfl_fname(L));
    double r;
    SFL_TRY(L, sf_reduce_all(&r, a, op, 0));
    if (op == SF_ARGMAX || op == SF_ARGMIN)
      lua_pushinteger(L, (lua_Integer)r + 1);
    else
      lua_pushnumber(L, (lua_Number)r);
    return 1;
  }
  int dim = sfl_checkdim(L, 2, a, 0);
  int keepdim = optkeepdim(L, 3);
  sf_tensor *out = sfl_push(L);
  SFL_TRY(L, sf_reduce_dim(out, a, dim, keepdim, op, 0));
  if (op == SF_ARGMAX || op == SF_ARGMIN) one_based(out);
  sfl_account(L, out);
  return 1;
}

static int t_sum(lua_State *L) { return reduce_method(L, SF_SUM); }
static int t_mean(lua_State *L) { return reduce_method(L, SF_MEAN); }
static int t_prod(lua_State *L) { return reduce_method(L, SF_PROD); }
static int t_argmax(lua_State *L) { return reduce_method(L, SF_ARGMAX); }
static int t_argmin(lua_State *L) { return reduce_method(L, SF_ARGMIN); }

/* t:max([dim [, keepdim]]) -> number | values, indices */
static int maxmin(lua_State *L, int is_min) {
  sf_tensor *a = sfl_check(L, 1);
  if (lua_isnoneornil(L, 2)) {
    if (!lua_isnoneornil(L, 3))
      return luaL_error(L, "bad argument #3 to '%s' (keepdim needs a dimension (argument #2))", sfl_fname(L));
    double r;
    SFL_TRY(L, sf_reduce_all(&r, a, is_min ? SF_MIN : SF_MAX, 0));
    lua_pushnumber(L, (lua_Number)r);
    return 1;
  }
  int dim = sfl_checkdim(L, 2, a, 0);
  int keepdim = optkeepdim(L, 3);
  sf_tensor *vals = sfl_push(L), *idx = sfl_push(L);
  SFL_TRY(L, sf_max_dim(vals, idx, a, dim, keepdim, is_min));
  one_based(idx);
  sfl_account(L, vals);
  sfl_account(L, idx);
  return 2;
}
static int t_max(lua_State *L) { return maxmin(L, 0); }
static int t_min(lua_State *L) { return maxmin(L, 1); }

/* options table at arg for var/std: {ddof = int >= 0, keepdim = bool}; unknown keys raise */
static void var_opts(lua_State *L, int arg, int *ddof, int *keepdim) {
  lua_pushnil(L);
  while (lua_next(L, arg)) {
    const char *k = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : NULL;
    if (k && strcmp(k, "ddof") == 0) {
      int isnum = 0;
      lua_Integer v = lua_tointegerx(L, -1, &isnum);
      if (!isnum || v < 0 || v > 1000000)
        luaL_error(L, "bad argument #%d to '%s' (option ddof must be an integer >= 0, got %s)", arg, sfl_fname(L),
                   lua_type(L, -1) == LUA_TNUMBER ? lua_tostring(L, -1) : luaL_typename(L, -1));
      *ddof = (int)v;
    } else if (k && strcmp(k, "keepdim") == 0) {
      if (!lua_isboolean(L, -1))
        luaL_error(L, "bad argument #%d to '%s' (option keepdim must be a boolean, got %s)", arg, sfl_fname(L),
                   luaL_typename(L, -1));
      *keepdim = lua_toboolean(L, -1);
    } else {
      luaL_error(L, "bad argument #%d to '%s' (unknown option '%s'; expected ddof or keepdim)", arg, sfl_fname(L),
                 k ? k : luaL_typename(L, -2));
    }
    lua_pop(L, 1);
  }
}

/* t:var([dim] [, opts | keepdim]) and t:std(...) */
static int var_method(lua_State *L, int root) {
  sf_tensor *a = sfl_check(L, 1);
  int ddof = 1, keepdim = 0, has_dim = 0, dim = 0, optarg = 2;
  if (lua_type(L, 2) != LUA_TTABLE && !lua_isnoneornil(L, 2)) {
    dim = sfl_checkdim(L, 2, a, 0);
    has_dim = 1;
    optarg = 3;
  } else if (lua_isnil(L, 2)) {
    optarg = 3;
  }
  if (lua_type(L, optarg) == LUA_TTABLE)
    var_opts(L, optarg, &ddof, &keepdim);
  else
    keepdim = optkeepdim(L, optarg);
  if (!has_dim) {
    if (keepdim)
      return luaL_error(L, "bad argument #%d to '%s' (keepdim needs a dimension (argument #2))", optarg,
                        sfl_fname(L));
    double r;
    SFL_TRY(L, root ? sf_std_all(&r, a, ddof) : sf_var_all(&r, a, ddof));
    lua_pushnumber(L, (lua_Number)r);
    return 1;
  }
  sf_tensor *out = sfl_push(L);
  SFL_TRY(L, root ? sf_std_dim(out, a, dim, keepdim, ddof) : sf_var_dim(out, a, dim, keepdim, ddof));
  sfl_account(L, out);
  return 1;
}
static int t_var(lua_State *L) { return var_method(L, 0); }
static int t_std(lua_State *L) { return var_method(L, 1); }

/* t:norm([p [, dim [, keepdim]]]) */
static int t_norm(lua_State *L) {
  sf_tensor *a = sfl_check(L, 1);
  double p = luaL_optnumber(L, 2, 2.0);
  if (lua_isnoneornil(L, 3)) {
    if (!lua_isnoneornil(L, 4))
      return luaL_error(L, "bad argument #4 to '%s' (keepdim needs a dimension (argument #3))", sfl_fname(L));
    double r;
    SFL_TRY(L, sf_reduce_all(&r, a, SF_NORM, p));
    lua_pushnumber(L, (lua_Number)r);
    return 1;
  }
  int dim = sfl_checkdim(L, 3, a, 0);
  int keepdim = optkeepdim(L, 4);
  sf_tensor *out = sfl_push(L);
  SFL_TRY(L, sf_reduce_dim(out, a, dim, keepdim, SF_NORM, p));
  sfl_account(L, out);
  return 1;
}

static int softmax_method(lua_State *L, int take_log) {
  sf_tensor *a = sfl_check(L, 1);
  if (lua_isnoneornil(L, 2))
    return luaL_error(L, "bad argument #2 to '%s' (dimension expected: %s needs an explicit dim, e.g. t:%s(-1))",
                      sfl_fname(L), take_log ? "log_softmax" : "softmax", take_log ? "log_softmax" : "softmax");
  int dim = sfl_checkdim(L, 2, a, 0);
  sf_tensor *out = sfl_push(L);
  SFL_TRY(L, sf_softmax(out, a, dim, take_log));
  sfl_account(L, out);
  return 1;
}
static int t_softmax(lua_State *L) { return softmax_method(L, 0); }
static int t_log_softmax(lua_State *L) { return softmax_method(L, 1); }

/* sf.kernels.softmax_backward(grad_out, out [, scale = 1]) -> grad_in: the gradient
 * through out = softmax(x, -1) in one row-parallel pass (the attention's backward) */
static sf_tensor *kernel_tensor(lua_State *L, int arg, const char *fn, const char *what) {
  sf_tensor *t = sfl_test(L, arg);
  if (!t)
    luaL_error(L, "%s: argument #%d (%s) expected a tensor, got %s", fn, arg, what, luaL_typename(L, arg));
  return t;
}

static int k_softmax_backward(lua_State *L) {
  const char *fn = "softmax_backward";
  sf_tensor *g = kernel_tensor(L, 1, fn, "grad_out"), *y = kernel_tensor(L, 2, fn, "out");
  if (!lua_isnoneornil(L, 3) && lua_type(L, 3) != LUA_TNUMBER)
    return luaL_error(L, "%s: argument #3 (scale) expected a number, got %s", fn, luaL_typename(L, 3));
  float scale = (float)luaL_optnumber(L, 3, 1.0);
  lua_settop(L, 2);
  sf_tensor *out = sfl_push(L);
  SFL_TRY(L, sf_softmax_backward(out, g, y, scale));
  sfl_account(L, out);
  return 1;
}

/* t:allclose(u [, rtol [, atol]]) */
static int t_allclose(lua_State *L) {
  sf_tensor *a = sfl_check(L, 1), *b = sfl_check(L, 2);
  double rtol = luaL_optnumber(L, 3, 1e-5), atol = luaL_optnumber(L, 4, 1e-8);
  int close;
  SFL_TRY(L, sf_allclose(&close, a, b, rtol, atol));
  lua_pushboolean(L, close);
  return 1;
}

static int t_max_abs_diff(lua_State *L) {
  sf_tensor *a = sfl_check(L, 1), *b = sfl_check(L, 2);
  double r;
  SFL_TRY(L, sf_max_abs_diff(&r, a, b));
  lua_pushnumber(L, (lua_Number)r);
  return 1;
}

static const luaL_Reg methods[] = {
    {"sum", t_sum},
    {"mean", t_mean},
    {"prod", t_prod},
    {"var", t_var},
    {"std", t_std},
    {"max", t_max},
    {"min", t_min},
    {"argmax", t_argmax},
    {"argmin", t_argmin},
    {"norm", t_norm},
    {"softmax", t_softmax},
    {"log_softmax", t_log_softmax},
    {"allclose", t_allclose},
    {"max_abs_diff", t_max_abs_diff},
    {NULL, NULL},
};

static const luaL_Reg kernels[] = {
    {"softmax_backward", k_softmax_backward},
    {NULL, NULL},
};

const sfl_area sfl_area_reduce = {kernels, methods, NULL, "kernels"};
