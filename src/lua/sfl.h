/*
 * The one place where Lua meets C: helpers shared by the binding files (src/lua/l_*.c).
 *
 * Each binding file exports one sfl_area: luaL_Reg tables of library functions
 * (sf.zeros), tensor methods (t:sum()) and tensor metamethods (__add). l_surgft.c
 * assembles them into the module table and the "surgft.Tensor" metatable. Every method
 * is also reachable as a library function taking the tensor first (sf.sum(t)).
 *
 * Conventions (Lua's lauxlib is the model):
 *   - a result tensor is pushed in the empty state with sfl_push() *before* the C core
 *     allocates anything, so an error raised afterwards leaves nothing to leak: the
 *     garbage collector releases it;
 *   - C core calls return 0 / -1; wrap them as SFL_TRY(L, call), which raises the core's
 *     message (it already names the function, the argument and the shapes);
 *   - indices and dimensions arrive 1-based (negative = from the end) and are converted
 *     to 0-based here, in sfl_checkdim / sfl_checkindex, and nowhere else;
 *   - never pass a message as a format string: luaL_error(L, "%s", msg).
 */
#ifndef SFL_H
#define SFL_H

#include <lauxlib.h>
#include <lua.h>

#include "../core/rng.h"
#include "../core/tensor.h"

/* The interface number of the bindings (surgft.core.abi). lua/surgft/init.lua refuses
 * to load against a core with another number: a stale build next to a newer Lua library
 * (extra arguments silently dropped, say) would otherwise compute wrong numbers without
 * an error. Bump it, and init.lua's, whenever a binding the Lua library uses changes its
 * arguments or meaning, or the library starts using a new one. */
#define SFL_ABI 9

#define SFL_TENSOR "surgft.Tensor"
#define SFL_RNG "surgft.RNG"

typedef struct sfl_area {
  const luaL_Reg *lib;     /* sf.name(...) only (or sf.<sub>.name when sub is set); may be NULL */
  const luaL_Reg *methods; /* t:name(...) and sf.name(t, ...); may be NULL */
  const luaL_Reg *meta;    /* __add, ...; may be NULL */
  const char *sub;         /* NULL, or a sub-table of the module for lib (e.g. "kernels") */
} sfl_area;

extern const sfl_area sfl_area_tensor; /* l_tensor.c: constructors, shape, views, copies, indexing */
extern const sfl_area sfl_area_math;   /* l_math.c: elementwise, comparisons, where, metamethods */
extern const sfl_area sfl_area_reduce; /* l_reduce.c: reductions, softmax, allclose */
extern const sfl_area sfl_area_blas;   /* l_blas.c: matmul, outer, threads */
extern const sfl_area sfl_area_linalg; /* l_linalg.c: solve, lstsq, qr, svd, eigh, inverse */
extern const sfl_area sfl_area_rng;    /* l_rng.c: generators, random constructors */
extern const sfl_area sfl_area_io;     /* l_io.c: IDX, CIFAR, npy, PNG, CSV readers and writers */
extern const sfl_area sfl_area_corrupt;/* l_corrupt.c: image corruptions */
extern const sfl_area sfl_area_nn;     /* l_nn.c: layer kernels as sf.kernels.* (forward/backward pairs) */
extern const sfl_area sfl_area_norm;   /* l_norm.c: norm, activation, dropout and loss kernels as sf.kernels.* */
extern const sfl_area sfl_area_safetensors; /* l_safetensors.c: safetensors raw data as sf.safetensors.* */
extern const sfl_area sfl_area_synth;  /* l_synth.c: generated data (camelyon-synth, fmow-synth) as sf.synth.* */
extern const sfl_area sfl_area_optim;  /* l_optim.c: optimizer steps and gradient statistics as sf.kernels.* */

/* Tensors on the Lua stack. */
sf_tensor *sfl_check(lua_State *L, int arg);  /* raises "bad argument #arg to 'fn' (tensor expected, got T)" */
sf_tensor *sfl_test(lua_State *L, int arg);   /* NULL when not a tensor */
sf_tensor *sfl_push(lua_State *L);            /* a new empty tensor, pushed */
/* Call after a core call that may have allocated t's storage: tells Lua's collector
 * about the memory, so large temporaries are collected promptly. */
void sfl_account(lua_State *L, const sf_tensor *t);

/* Raise the core's last error message. */
int sfl_fail(lua_State *L);
#define SFL_TRY(L, call)              \
  do {                                \
    if ((call) != 0) sfl_fail(L);     \
  } while (0)

/* 1-based dimension at arg (negative from the end) -> 0-based; extra = 1 allows ndim+1
 * (unsqueeze). Raises naming the argument, the dimension and the shape. */
int sfl_checkdim(lua_State *L, int arg, const sf_tensor *t, int extra);
int sfl_optdim(lua_State *L, int arg, const sf_tensor *t, int def); /* def returned when absent/nil */
/* 1-based index into a dimension of the given size (negative from the end) -> 0-based. */
int64_t sfl_checkindex(lua_State *L, int arg, int64_t size, const char *what);
/* A shape given either as a table {2,3} at arg or as numbers from arg to the last
 * argument (stopping at the first non-number). Returns ndim; *next gets the first
 * argument after the shape. */
int sfl_checkshape(lua_State *L, int arg, int64_t *size, int *next);
/* An integer argument that must fit in int64 and be exact. */
int64_t sfl_checkinteger(lua_State *L, int arg);
/* The generator at arg, or the default generator when arg is none/nil. */
sf_rng *sfl_optrng(lua_State *L, int arg);
/* Creates the RNG metatable and the default generator (seed 0) once per state. */
void sfl_rng_open(lua_State *L);

/* Name of the running C function for messages ("?" when unknown). */
const char *sfl_fname(lua_State *L);

#endif
