/* luaopen_surgft_core: assembles the binding areas into the module table and the
 * tensor metatable. The Lua side (lua/surgft/init.lua) builds on this table. */
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "sfl.h"
#include "surgft_config.h"

int luaopen_surgft_core(lua_State *L);

static const sfl_area *const areas[] = {
    &sfl_area_tensor, &sfl_area_math, &sfl_area_reduce, &sfl_area_blas, &sfl_area_linalg, &sfl_area_rng,
    &sfl_area_io,     &sfl_area_corrupt, &sfl_area_nn, &sfl_area_norm, &sfl_area_optim, &sfl_area_safetensors,
    &sfl_area_synth,
};

/* set t[name] = f for each entry, refusing duplicates (a name belongs to one area) */
static void set_funcs(lua_State *L, int idx, const luaL_Reg *r, int allow_existing) {
  for (; r && r->name; r++) {
    if (lua_getfield(L, idx, r->name) != LUA_TNIL && !allow_existing)
      luaL_error(L, "surgft: internal error: '%s' registered twice", r->name);
    lua_pop(L, 1);
    lua_pushcfunction(L, r->func);
    lua_setfield(L, idx, r->name);
  }
}

/* sf.isatty([fd = 1]) -> whether the descriptor is a terminal (progress bars use it) */
static int l_isatty(lua_State *L) {
  lua_pushboolean(L, isatty((int)luaL_optinteger(L, 1, 1)));
  return 1;
}

/* sf.clock() -> seconds of a monotonic wall clock (os.clock is CPU time summed over
 * threads; os.time has one-second resolution): for timings and ETAs */
static int l_clock(lua_State *L) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  lua_pushnumber(L, (lua_Number)ts.tv_sec + 1e-9 * (lua_Number)ts.tv_nsec);
  return 1;
}

int luaopen_surgft_core(lua_State *L) {
  sfl_rng_open(L);
  lua_newtable(L); /* module: 1 */
  int mod = lua_gettop(L);
  luaL_newmetatable(L, SFL_TENSOR); /* 2 */
  int mt = lua_gettop(L);
  lua_newtable(L); /* methods: 3 */
  int methods = lua_gettop(L);
  for (size_t i = 0; i < sizeof areas / sizeof *areas; i++) {
    set_funcs(L, mt, areas[i]->meta, 0);
    set_funcs(L, methods, areas[i]->methods, 0);
    if (areas[i]->sub) {
      if (lua_getfield(L, mod, areas[i]->sub) != LUA_TTABLE) {
        lua_pop(L, 1);
        lua_newtable(L);
        lua_pushvalue(L, -1);
        lua_setfield(L, mod, areas[i]->sub);
      }
      set_funcs(L, lua_gettop(L), areas[i]->lib, 0);
      lua_pop(L, 1);
    } else {
      set_funcs(L, mod, areas[i]->lib, 0);
    }
  }
  /* every method is also a library function taking the tensor first, unless the
   * library already has that name (constructors win) */
  for (size_t i = 0; i < sizeof areas / sizeof *areas; i++) {
    for (const luaL_Reg *r = areas[i]->methods; r && r->name; r++) {
      if (lua_getfield(L, mod, r->name) == LUA_TNIL) {
        lua_pushcfunction(L, r->func);
        lua_setfield(L, mod, r->name);
      }
      lua_pop(L, 1);
    }
  }
  lua_pushvalue(L, methods);
  lua_setfield(L, mt, "__index");
  lua_pushliteral(L, SFL_TENSOR);
  lua_setfield(L, mt, "__name");
  lua_pushvalue(L, methods);
  lua_setfield(L, mod, "Tensor"); /* the method table, for Lua-side extensions */
  lua_pushvalue(L, mt);
  lua_setfield(L, mod, "_tensor_mt");
  lua_pushliteral(L, SURGFT_VERSION);
  lua_setfield(L, mod, "version");
  lua_pushinteger(L, SFL_ABI);
  lua_setfield(L, mod, "abi");
  /* the vector instructions the kernels were compiled for (which paths exist, e.g. the
   * masked convolution needs AVX-512): "avx512", "avx2", "avx", "sse2", "neon" or "none" */
#if defined(__AVX512F__)
  lua_pushliteral(L, "avx512");
#elif defined(__AVX2__)
  lua_pushliteral(L, "avx2");
#elif defined(__AVX__)
  lua_pushliteral(L, "avx");
#elif defined(__SSE2__)
  lua_pushliteral(L, "sse2");
#elif defined(__ARM_NEON)
  lua_pushliteral(L, "neon");
#else
  lua_pushliteral(L, "none");
#endif
  lua_setfield(L, mod, "simd");
  lua_pushcfunction(L, l_isatty);
  lua_setfield(L, mod, "isatty");
  lua_pushcfunction(L, l_clock);
  lua_setfield(L, mod, "clock");
  lua_settop(L, mod);
  return 1;
}
