/* RNG bindings: generator objects, the seedable default generator, and the random
 * tensor constructors (randn, rand, randint, bernoulli) that take a generator. */
#include <string.h>

#include "sfl.h"

#define DEFAULT_KEY "surgft.default_rng"

static sf_rng *check_rng(lua_State *L, int arg) { return luaL_checkudata(L, arg, SFL_RNG); }

static sf_rng *push_rng(lua_State *L, uint64_t seed) {
  sf_rng *r = lua_newuserdatauv(L, sizeof *r, 0);
  sf_rng_seed(r, seed);
  luaL_setmetatable(L, SFL_RNG);
  return r;
}

static uint64_t check_seed(lua_State *L, int arg) {
  int isnum = 0;
  lua_Integer s = lua_tointegerx(L, arg, &isnum);
  if (!isnum)
    luaL_error(L, "bad argument #%d to '%s' (integer seed expected, got %s)", arg, sfl_fname(L),
               lua_type(L, arg) == LUA_TNUMBER ? lua_tostring(L, arg) : luaL_typename(L, arg));
  return (uint64_t)s;
}

static sf_rng *default_rng(lua_State *L) {
  lua_getfield(L, LUA_REGISTRYINDEX, DEFAULT_KEY);
  sf_rng *r = luaL_testudata(L, -1, SFL_RNG);
  lua_pop(L, 1); /* the registry keeps it alive */
  if (!r) luaL_error(L, "surgft: the default generator is missing");
  return r;
}

sf_rng *sfl_optrng(lua_State *L, int arg) {
  if (lua_isnoneornil(L, arg)) return default_rng(L);
  sf_rng *r = luaL_testudata(L, arg, SFL_RNG);
  if (!r) luaL_error(L, "bad argument #%d to '%s' (rng expected, got %s)", arg, sfl_fname(L), luaL_typename(L, arg));
  return r;
}

/* sf.rng([seed = 0]) */
static int l_rng(lua_State *L) {
  push_rng(L, lua_isnoneornil(L, 1) ? 0 : check_seed(L, 1));
  return 1;
}

/* sf.manual_seed(seed): reseed the default generator */
static int l_manual_seed(lua_State *L) {
  sf_rng_seed(sfl_optrng(L, 2), check_seed(L, 1));
  return 0;
}

static int l_default_rng(lua_State *L) {
  lua_getfield(L, LUA_REGISTRYINDEX, DEFAULT_KEY);
  return 1;
}

static int r_seed(lua_State *L) {
  sf_rng_seed(check_rng(L, 1), check_seed(L, 2));
  lua_settop(L, 1);
  return 1;
}

/* r:state() -> a 32-byte string; r:set_state(s) restores it exactly */
static int r_state(lua_State *L) {
  sf_rng *r = check_rng(L, 1);
  unsigned char buf[32];
  for (int i = 0; i < 4; i++)
    for (int b = 0; b < 8; b++) buf[i * 8 + b] = (unsigned char)(r->s[i] >> (8 * b));
  lua_pushlstring(L, (const char *)buf, sizeof buf);
  return 1;
}

static int r_set_state(lua_State *L) {
  sf_rng *r = check_rng(L, 1);
  size_t n;
  const char *s = luaL_checklstring(L, 2, &n);
  if (n != 32) return luaL_error(L, "bad argument #2 to 'set_state' (expected a 32-byte state string, got %d bytes)", (int)n);
  uint64_t w[4] = {0};
  for (int i = 0; i < 4; i++)
    for (int b = 0; b < 8; b++) w[i] |= (uint64_t)(unsigned char)s[i * 8 + b] << (8 * b);
  if (!(w[0] | w[1] | w[2] | w[3]))
    return luaL_error(L, "bad argument #2 to 'set_state' (the all-zero state is not a valid xoshiro256** state)");
  memcpy(r->s, w, sizeof w);
  lua_settop(L, 1);
  return 1;
}

static int r_clone(lua_State *L) {
  sf_rng *r = check_rng(L, 1);
  sf_rng *c = push_rng(L, 0);
  *c = *r;
  return 1;
}

/* r:uniform([lo = 0, hi = 1]) */
static int r_uniform(lua_State *L) {
  sf_rng *r = check_rng(L, 1);
  double lo = luaL_optnumber(L, 2, 0.0), hi = luaL_optnumber(L, 3, 1.0);
  lua_pushnumber(L, lo + (hi - lo) * sf_rng_uniform(r));
  return 1;
}

static int r_normal(lua_State *L) {
  sf_rng *r = check_rng(L, 1);
  double mean = luaL_optnumber(L, 2, 0.0), std = luaL_optnumber(L, 3, 1.0);
  lua_pushnumber(L, mean + std * sf_rng_normal(r));
  return 1;
}

/* r:random(m, n): an integer in [m, n], both included, like Lua's math.random */
static int r_random(lua_State *L) {
  sf_rng *r = check_rng(L, 1);
  int64_t lo = 1, hi;
  if (lua_isnoneornil(L, 3)) {
    hi = sfl_checkinteger(L, 2);
  } else {
    lo = sfl_checkinteger(L, 2);
    hi = sfl_checkinteger(L, 3);
  }
  if (lo > hi) return luaL_error(L, "bad argument #2 to 'random' (interval is empty: [%I, %I])", (lua_Integer)lo, (lua_Integer)hi);
  lua_pushinteger(L, (lua_Integer)sf_rng_int(r, lo, hi));
  return 1;
}

/* r:permutation(n) -> a Lua table holding a random permutation of 1..n */
static int r_permutation(lua_State *L) {
  sf_rng *r = check_rng(L, 1);
  int64_t n = sfl_checkinteger(L, 2);
  if (n < 0 || n > (1 << 28)) return luaL_error(L, "bad argument #2 to 'permutation' (size %I out of range)", (lua_Integer)n);
  lua_createtable(L, (int)n, 0);
  for (int64_t i = 1; i <= n; i++) {
    lua_pushinteger(L, (lua_Integer)i);
    lua_rawseti(L, -2, (lua_Integer)i);
  }
  for (int64_t i = n; i > 1; i--) { /* Fisher-Yates on the table */
    int64_t j = sf_rng_int(r, 1, i);
    lua_rawgeti(L, -1, (lua_Integer)i);
    lua_rawgeti(L, -2, (lua_Integer)j);
    lua_rawseti(L, -3, (lua_Integer)i);
    lua_rawseti(L, -2, (lua_Integer)j);
  }
  return 1;
}

static int r_tostring(lua_State *L) {
  sf_rng *r = check_rng(L, 1);
  lua_pushfstring(L, "surgft.RNG (xoshiro256**, state %p)", (void *)r);
  return 1;
}

/* ---- random tensors ---- */

/* sf.randn(shape[, rng]) / sf.rand(shape[, rng]) */
static int new_random(lua_State *L, int normal) {
  int64_t size[SF_MAX_DIMS];
  int next;
  int nd = sfl_checkshape(L, 1, size, &next);
  sf_rng *r = sfl_optrng(L, next);
  sf_tensor *t = sfl_push(L);
  SFL_TRY(L, sf_tensor_new(t, nd, size));
  if (normal)
    sf_tensor_normal_(t, r, 0.0, 1.0);
  else
    sf_tensor_uniform_(t, r, 0.0, 1.0);
  sfl_account(L, t);
  return 1;
}
static int l_randn(lua_State *L) { return new_random(L, 1); }
static int l_rand(lua_State *L) { return new_random(L, 0); }

/* sf.randint([low = 0,] high, shape[, rng]): integers in [low, high), as PyTorch */
static int l_randint(lua_State *L) {
  int64_t lo = 0, hi;
  int shape_arg = 2;
  if (lua_type(L, 2) == LUA_TNUMBER && lua_type(L, 3) != LUA_TNONE && !luaL_testudata(L, 3, SFL_RNG)) {
    lo = sfl_checkinteger(L, 1);
    hi = sfl_checkinteger(L, 2);
    shape_arg = 3;
  } else {
    hi = sfl_checkinteger(L, 1);
  }
  if (lo >= hi) return luaL_error(L, "bad argument #1 to 'randint' (empty range: low %I >= high %I)", (lua_Integer)lo, (lua_Integer)hi);
  if (!lua_istable(L, shape_arg))
    return luaL_error(L, "bad argument #%d to 'randint' (shape table expected, got %s)", shape_arg, luaL_typename(L, shape_arg));
  int64_t size[SF_MAX_DIMS];
  int nd = sfl_checkshape(L, shape_arg, size, NULL);
  sf_rng *r = sfl_optrng(L, shape_arg + 1);
  sf_tensor *t = sfl_push(L);
  SFL_TRY(L, sf_tensor_new(t, nd, size));
  sf_tensor_randint_(t, r, lo, hi - 1);
  sfl_account(L, t);
  return 1;
}

/* sf.bernoulli(shape, p[, rng]) with p a number, or sf.bernoulli(probs[, rng]) with a
 * tensor of per-element probabilities */
static int l_bernoulli(lua_State *L) {
  sf_tensor *probs = sfl_test(L, 1);
  if (probs) {
    probs = sfl_check(L, 1);
    sf_rng *r = sfl_optrng(L, 2);
    sf_tensor *t = sfl_push(L);
    SFL_TRY(L, sf_tensor_new_like(t, probs));
    int64_t n = sf_tensor_numel(probs);
    float *o = sf_tensor_data(t);
    for (int64_t i = 0; i < n; i++) {
      float p = *sf_tensor_ptr_linear(probs, i);
      if (!(p >= 0.0f && p <= 1.0f))
        return luaL_error(L, "bad argument #1 to 'bernoulli' (probability %f at element %I is outside [0, 1])",
                          (double)p, (lua_Integer)i + 1);
      o[i] = sf_rng_uniform(r) < (double)p ? 1.0f : 0.0f;
    }
    sfl_account(L, t);
    return 1;
  }
  int64_t size[SF_MAX_DIMS];
  int next;
  int nd = sfl_checkshape(L, 1, size, &next);
  double p = luaL_checknumber(L, next);
  if (!(p >= 0.0 && p <= 1.0))
    return luaL_error(L, "bad argument #%d to 'bernoulli' (probability %f is outside [0, 1])", next, p);
  sf_rng *r = sfl_optrng(L, next + 1);
  sf_tensor *t = sfl_push(L);
  SFL_TRY(L, sf_tensor_new(t, nd, size));
  sf_tensor_bernoulli_(t, r, p);
  sfl_account(L, t);
  return 1;
}

/* in place: t:normal_([rng,] [mean, std]), t:uniform_([rng,] [lo, hi]) */
static int t_fill_random(lua_State *L, int normal) {
  sf_tensor *t = sfl_check(L, 1);
  int a = 2;
  sf_rng *r;
  if (luaL_testudata(L, 2, SFL_RNG)) {
    r = check_rng(L, 2);
    a = 3;
  } else {
    r = default_rng(L);
  }
  double p1 = luaL_optnumber(L, a, normal ? 0.0 : 0.0), p2 = luaL_optnumber(L, a + 1, 1.0);
  if (normal)
    sf_tensor_normal_(t, r, p1, p2);
  else
    sf_tensor_uniform_(t, r, p1, p2);
  lua_settop(L, 1);
  return 1;
}
static int t_normal_(lua_State *L) { return t_fill_random(L, 1); }
static int t_uniform_(lua_State *L) { return t_fill_random(L, 0); }

static const luaL_Reg rng_methods[] = {
    {"seed", r_seed},       {"state", r_state},   {"set_state", r_set_state},
    {"clone", r_clone},     {"uniform", r_uniform}, {"normal", r_normal},
    {"random", r_random},   {"permutation", r_permutation}, {NULL, NULL},
};

static const luaL_Reg lib[] = {
    {"rng", l_rng},         {"manual_seed", l_manual_seed}, {"default_rng", l_default_rng},
    {"randn", l_randn},     {"rand", l_rand},   {"randint", l_randint},
    {"bernoulli", l_bernoulli}, {NULL, NULL},
};

static const luaL_Reg methods[] = {
    {"normal_", t_normal_},
    {"uniform_", t_uniform_},
    {NULL, NULL},
};

/* Creates the RNG metatable and the default generator; l_surgft.c calls it once. */
void sfl_rng_open(lua_State *L) {
  if (luaL_newmetatable(L, SFL_RNG)) {
    luaL_newlib(L, rng_methods);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, r_tostring);
    lua_setfield(L, -2, "__tostring");
  }
  lua_pop(L, 1);
  if (lua_getfield(L, LUA_REGISTRYINDEX, DEFAULT_KEY) == LUA_TNIL) {
    push_rng(L, 0);
    lua_setfield(L, LUA_REGISTRYINDEX, DEFAULT_KEY);
  }
  lua_pop(L, 1);
}

const sfl_area sfl_area_rng = {lib, methods, NULL, NULL};
