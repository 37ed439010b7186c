/* Elementwise bindings: arithmetic and comparison methods (tensor or number operand),
 * unary ops, clamp, in-place variants, sf.where, equal, and the arithmetic metamethods. */
#include <math.h>
#include <string.h>

#include "sfl.h"

/*
 * Error names: argument errors use the Lua-visible name (sfl_fname), as lauxlib does.
 * The core's shape messages start with the op's name ("add: argument #2 has shape ..");
 * the in-place variants rename that prefix to their own ("add_: ..") and metamethods keep
 * the op's name, so `a + b` reports "add: argument #2 has shape ..".
 */
static int fail_as(lua_State *L, const char *core_name, const char *lua_name) {
  const char *msg = sf_errmsg();
  size_t k = strlen(core_name);
  if (strcmp(core_name, lua_name) != 0 && strncmp(msg, core_name, k) == 0 && msg[k] == ':')
    return luaL_error(L, "%s%s", lua_name, msg + k);
  return luaL_error(L, "%s", msg);
}

/* A scalar operand: a Lua number (strings are not converted, to keep typos loud).
 * fn names the function in the message; NULL = the Lua-visible name. */
static float check_scalar(lua_State *L, int arg, const char *fn) {
  if (lua_type(L, arg) != LUA_TNUMBER)
    luaL_error(L, "bad argument #%d to '%s' (tensor or number expected, got %s)", arg, fn ? fn : sfl_fname(L),
               luaL_typename(L, arg));
  return (float)lua_tonumber(L, arg);
}

/* ---- binary ops: t:op(u) / t:op(number); t:op_(..) writes t and returns it ---- */

static int binop(lua_State *L, sf_binop op, const char *inplace_name) {
  /* a third argument would be PyTorch's alpha (t.add_(u, alpha=-lr)): refuse it loudly
   * rather than compute something else */
  if (lua_gettop(L) > 2)
    return luaL_error(L, "bad argument #3 to '%s' (%s takes one operand; got %d arguments; for a scaled "
                      "operand write t:%s(u * alpha))", inplace_name ? inplace_name : sf_binop_name(op),
                      inplace_name ? inplace_name : sf_binop_name(op), lua_gettop(L), inplace_name ? inplace_name : sf_binop_name(op));
  sf_tensor *a = sfl_check(L, 1);
  sf_tensor *b = sfl_test(L, 2) ? sfl_check(L, 2) : NULL;
  float s = b ? 0.0f : check_scalar(L, 2, NULL);
  int rc;
  if (inplace_name) {
    rc = b ? sf_binary(a, a, b, op) : sf_binary_scalar(a, a, s, op, 0);
    if (rc) return fail_as(L, sf_binop_name(op), inplace_name);
    lua_settop(L, 1);
    return 1;
  }
  sf_tensor *out = sfl_push(L);
  SFL_TRY(L, b ? sf_binary(out, a, b, op) : sf_binary_scalar(out, a, s, op, 0));
  sfl_account(L, out);
  return 1;
}

#define BINOP(name, OP)                                                  \
  static int m_##name(lua_State *L) { return binop(L, OP, NULL); }
#define BINOP_(name, OP)                                                 \
  BINOP(name, OP)                                                        \
  static int m_##name##_(lua_State *L) { return binop(L, OP, #name "_"); }

BINOP_(add, SF_ADD)
BINOP_(sub, SF_SUB)
BINOP_(mul, SF_MUL)
BINOP_(div, SF_DIV)
BINOP_(pow, SF_POW)
BINOP(maximum, SF_MAXIMUM)
BINOP(minimum, SF_MINIMUM)
BINOP(eq, SF_EQ)
BINOP(ne, SF_NE)
BINOP(lt, SF_LT)
BINOP(le, SF_LE)
BINOP(gt, SF_GT)
BINOP(ge, SF_GE)

/* ---- unary ops ---- */

static int unop(lua_State *L, sf_unop op, const char *inplace_name) {
  sf_tensor *a = sfl_check(L, 1);
  if (inplace_name) {
    if (sf_unary(a, a, op)) return fail_as(L, sf_unop_name(op), inplace_name);
    lua_settop(L, 1);
    return 1;
  }
  sf_tensor *out = sfl_push(L);
  SFL_TRY(L, sf_unary(out, a, op));
  sfl_account(L, out);
  return 1;
}

#define UNOP(name, OP)                                                   \
  static int m_##name(lua_State *L) { return unop(L, OP, NULL); }        \
  static int m_##name##_(lua_State *L) { return unop(L, OP, #name "_"); }

UNOP(neg, SF_NEG)
UNOP(abs, SF_ABS)
UNOP(exp, SF_EXP)
UNOP(log, SF_LOG)
UNOP(sqrt, SF_SQRT)
UNOP(tanh, SF_TANH)
UNOP(sigmoid, SF_SIGMOID)
UNOP(relu, SF_RELU)
UNOP(sign, SF_SIGN)
UNOP(square, SF_SQUARE)
UNOP(reciprocal, SF_RECIPROCAL)

/* ---- clamp(lo, hi): a nil bound is open ---- */

static float opt_bound(lua_State *L, int arg, float open) {
  if (lua_isnoneornil(L, arg)) return open;
  if (lua_type(L, arg) != LUA_TNUMBER)
    luaL_error(L, "bad argument #%d to '%s' (number or nil expected, got %s)", arg, sfl_fname(L),
               luaL_typename(L, arg));
  return (float)lua_tonumber(L, arg);
}

static int clamp_impl(lua_State *L, const char *inplace_name) {
  sf_tensor *a = sfl_check(L, 1);
  if (lua_isnoneornil(L, 2) && lua_isnoneornil(L, 3))
    return luaL_error(L, "bad argument #2 to '%s' (at least one bound expected, got none)", sfl_fname(L));
  float lo = opt_bound(L, 2, -INFINITY), hi = opt_bound(L, 3, INFINITY);
  if (inplace_name) {
    if (sf_clamp(a, a, lo, hi)) return fail_as(L, "clamp", inplace_name);
    lua_settop(L, 1);
    return 1;
  }
  lua_settop(L, 1);
  sf_tensor *out = sfl_push(L);
  SFL_TRY(L, sf_clamp(out, a, lo, hi));
  sfl_account(L, out);
  return 1;
}
static int m_clamp(lua_State *L) { return clamp_impl(L, NULL); }
static int m_clamp_(lua_State *L) { return clamp_impl(L, "clamp_"); }

/* ---- where(cond, a, b): a and b tensors of cond's shape, or numbers ---- */

/* The operand at arg as a tensor: itself, or the number as a 0-d tensor expanded (stride
 * 0, no copy) to cond's shape. The temporaries live on the stack, so an error frees them. */
static const sf_tensor *where_operand(lua_State *L, int arg, const sf_tensor *cond) {
  if (sfl_test(L, arg)) return sfl_check(L, arg);
  float v = check_scalar(L, arg, NULL);
  int64_t none[1] = {0};
  sf_tensor *one = sfl_push(L);
  SFL_TRY(L, sf_tensor_full(one, 0, none, v));
  sf_tensor *e = sfl_push(L);
  SFL_TRY(L, sf_tensor_expand(e, one, cond->ndim, cond->size));
  return e;
}

static int l_where(lua_State *L) {
  sf_tensor *cond = sfl_check(L, 1);
  lua_settop(L, 3);
  const sf_tensor *a = where_operand(L, 2, cond);
  const sf_tensor *b = where_operand(L, 3, cond);
  sf_tensor *out = sfl_push(L);
  SFL_TRY(L, sf_where(out, cond, a, b));
  sfl_account(L, out);
  return 1;
}

/* t:equal(u): true when u has t's shape and the same values (NaN equals nothing) */
static int m_equal(lua_State *L) {
  sf_tensor *a = sfl_check(L, 1), *b = sfl_check(L, 2);
  int res = 0;
  SFL_TRY(L, sf_equal(&res, a, b));
  lua_pushboolean(L, res);
  return 1;
}

/* ---- metamethods: a number on either side (2 - t, t / 3) ---- */

/* Metamethods may be reached from C (the string library's arithmetic calls them), where
 * the Lua-visible name is unknown, so their messages use the op's name: "add". */
static int arith(lua_State *L, sf_binop op) {
  sf_tensor *a = sfl_test(L, 1) ? sfl_check(L, 1) : NULL;
  sf_tensor *b = sfl_test(L, 2) ? sfl_check(L, 2) : NULL;
  float s = 0.0f;
  if (!a) s = check_scalar(L, 1, sf_binop_name(op));
  if (!b) s = check_scalar(L, 2, sf_binop_name(op));
  lua_settop(L, 2);
  sf_tensor *out = sfl_push(L);
  if (a && b)
    SFL_TRY(L, sf_binary(out, a, b, op));
  else if (a)
    SFL_TRY(L, sf_binary_scalar(out, a, s, op, 0));
  else
    SFL_TRY(L, sf_binary_scalar(out, b, s, op, 1));
  sfl_account(L, out);
  return 1;
}

static int mm_add(lua_State *L) { return arith(L, SF_ADD); }
static int mm_sub(lua_State *L) { return arith(L, SF_SUB); }
static int mm_mul(lua_State *L) { return arith(L, SF_MUL); }
static int mm_div(lua_State *L) { return arith(L, SF_DIV); }
static int mm_pow(lua_State *L) { return arith(L, SF_POW); }

static int mm_unm(lua_State *L) {
  sf_tensor *a = sfl_check(L, 1);
  sf_tensor *out = sfl_push(L);
  SFL_TRY(L, sf_unary(out, a, SF_NEG));
  sfl_account(L, out);
  return 1;
}

/* __eq is deliberately absent: Lua turns its result into a boolean, so an elementwise
 * answer cannot be returned; t:eq(u) is elementwise, t:equal(u) the boolean. */

#define REG(name) {#name, m_##name}
#define REG_(name) REG(name), {#name "_", m_##name##_}

static const luaL_Reg lib[] = {
    {"where", l_where},
    {NULL, NULL},
};

static const luaL_Reg methods[] = {
    REG_(add), REG_(sub), REG_(mul), REG_(div), REG_(pow), REG(maximum), REG(minimum),
    REG(eq), REG(ne), REG(lt), REG(le), REG(gt), REG(ge), REG(equal),
    REG_(neg), REG_(abs), REG_(exp), REG_(log), REG_(sqrt), REG_(tanh), REG_(sigmoid), REG_(relu),
    REG_(sign), REG_(square), REG_(reciprocal), REG_(clamp),
    {NULL, NULL},
};

static const luaL_Reg meta[] = {
    {"__add", mm_add}, {"__sub", mm_sub}, {"__mul", mm_mul}, {"__div", mm_div},
    {"__pow", mm_pow}, {"__unm", mm_unm}, {NULL, NULL},
};

const sfl_area sfl_area_math = {lib, methods, meta, NULL};
