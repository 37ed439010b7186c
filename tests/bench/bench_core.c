/*
 * The core benchmark: surgft's matmul against a direct cblas_sgemm call (from C and
 * through the Lua binding), and a chain of elementwise ops from Lua against one plain C
 * loop. Prints one table of medians over repeats. Not a test: run it by hand (see
 * README.md beside this file).
 *
 *   bench_core [repeats]        default 31 repeats; SURGFT_THREADS sets the thread count
 */
#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#include "src/core/rng.h"
#include "src/core/tensor.h"

int luaopen_surgft_core(lua_State *L);

static int repeats = 31;

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static double median(double *v, int n) {
  qsort(v, (size_t)n, sizeof *v, cmp_double);
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* A timed case: run(ctx, iters) performs iters operations. */
typedef void (*run_fn)(void *ctx, int iters);

/* Iterations so that one sample takes about 10 ms (at least 1): short samples let the
 * median drop the ones that other processes interrupted. */
static int calibrate(run_fn run, void *ctx) {
  run(ctx, 1); /* warm-up: first-touch pages, OpenBLAS thread start */
  double t0 = now();
  run(ctx, 1);
  double one = now() - t0;
  int iters = one > 0 ? (int)(0.01 / one) : 1000;
  return iters < 1 ? 1 : iters > 100000 ? 100000 : iters;
}

/* Medians (seconds per operation) of several cases, measured interleaved (in rotating
 * order) so that drifts in machine load affect every case alike. */
static void measure(int ncase, run_fn *runs, void **ctxs, double *out) {
  int iters[8];
  double samples[8][101];
  int reps = repeats > 101 ? 101 : repeats;
  for (int c = 0; c < ncase; c++) iters[c] = calibrate(runs[c], ctxs[c]);
  for (int r = 0; r < reps; r++)
    for (int j = 0; j < ncase; j++) {
      int c = (j + r) % ncase; /* rotate the order: no case always runs first */
      double t0 = now();
      runs[c](ctxs[c], iters[c]);
      samples[c][r] = (now() - t0) / iters[c];
    }
  for (int c = 0; c < ncase; c++) out[c] = median(samples[c], reps);
}

static void die(const char *what) {
  fprintf(stderr, "bench_core: %s: %s\n", what, sf_errmsg());
  exit(1);
}

/* ---- matmul cases ---- */

typedef struct {
  int m, k, n;
  sf_tensor a, b, c;   /* a [m,k], b [k,n], c [m,n] preallocated */
  float *raw;          /* [m,n] for the direct call */
  lua_State *L;
  int lua_ref;         /* the Lua function running the loop */
} mm_ctx;

static void run_cblas(void *p, int iters) {
  mm_ctx *x = p;
  for (int i = 0; i < iters; i++)
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, x->m, x->n, x->k, 1.0f, sf_tensor_data(&x->a), x->k,
                sf_tensor_data(&x->b), x->n, 0.0f, x->raw, x->n);
}

static void run_sf_out(void *p, int iters) {
  mm_ctx *x = p;
  for (int i = 0; i < iters; i++)
    if (sf_matmul(&x->c, &x->a, &x->b)) die("sf_matmul");
}

static void run_sf_fresh(void *p, int iters) {
  mm_ctx *x = p;
  for (int i = 0; i < iters; i++) {
    sf_tensor c = SF_TENSOR_EMPTY;
    if (sf_matmul(&c, &x->a, &x->b)) die("sf_matmul");
    sf_tensor_release(&c);
  }
}

/* Calls the Lua function in the registry with iters. */
static void run_lua(void *p, int iters) {
  mm_ctx *x = p;
  lua_rawgeti(x->L, LUA_REGISTRYINDEX, x->lua_ref);
  lua_pushinteger(x->L, iters);
  if (lua_pcall(x->L, 1, 0, 0) != LUA_OK) {
    fprintf(stderr, "bench_core: lua: %s\n", lua_tostring(x->L, -1));
    exit(1);
  }
}

/* Compiles chunk (which returns a function of iters) with the given globals set, and
 * stores the function in the registry. Returns LUA_NOREF (message on stderr) when the
 * chunk fails, e.g. because an op it uses does not exist yet. */
static int lua_case(lua_State *L, const char *chunk, char *why, size_t nwhy) {
  if (luaL_dostring(L, chunk) != LUA_OK) {
    snprintf(why, nwhy, "%s", lua_tostring(L, -1));
    lua_pop(L, 1);
    return LUA_NOREF;
  }
  lua_pushvalue(L, -1); /* try it once, so a missing op shows here and not mid-measure */
  lua_pushinteger(L, 1);
  if (lua_pcall(L, 1, 0, 0) != LUA_OK) {
    snprintf(why, nwhy, "%s", lua_tostring(L, -1));
    lua_pop(L, 2);
    return LUA_NOREF;
  }
  return luaL_ref(L, LUA_REGISTRYINDEX);
}

/* Pushes a tensor sharing t's storage as the global name. */
static void lua_set_tensor(lua_State *L, const char *name, const sf_tensor *t) {
  lua_getglobal(L, "sf");
  lua_getfield(L, -1, "zeros");
  lua_pushinteger(L, 1);
  lua_call(L, 1, 1);
  sf_tensor *u = luaL_checkudata(L, -1, "surgft.Tensor");
  sf_tensor_share(u, t);
  lua_setglobal(L, name);
  lua_pop(L, 1);
}

static void randn(sf_tensor *t, int ndim, const int64_t *size, sf_rng *r) {
  if (sf_tensor_new(t, ndim, size)) die("alloc");
  float *p = sf_tensor_data(t);
  for (int64_t i = 0, n = sf_tensor_numel(t); i < n; i++) p[i] = (float)sf_rng_normal(r);
}

static void row(const char *name, const char *unit, double ref, double got, double ratio, const char *target,
                int pass) {
  printf("%-36s %10.3f %10.3f %7.3f   %-7s %s   %s\n", name, ref, got, ratio, target ? target : "-",
         !target ? "    " : pass ? "ok  " : "MISS", unit);
}

static void bench_matmul(lua_State *L, sf_rng *r, int m, int k, int n) {
  mm_ctx x = {m, k, n, SF_TENSOR_EMPTY, SF_TENSOR_EMPTY, SF_TENSOR_EMPTY, NULL, L, LUA_NOREF};
  int64_t sa[2] = {m, k}, sb[2] = {k, n}, sc[2] = {m, n};
  randn(&x.a, 2, sa, r);
  randn(&x.b, 2, sb, r);
  if (sf_tensor_zeros(&x.c, 2, sc)) die("alloc");
  x.raw = aligned_alloc(64, ((size_t)m * (size_t)n * sizeof(float) + 63) & ~(size_t)63);
  if (!x.raw) die("alloc");
  lua_set_tensor(L, "A", &x.a);
  lua_set_tensor(L, "B", &x.b);
  lua_set_tensor(L, "C", &x.c);
  char why[512];
  mm_ctx xl = x, xlo = x;
  xl.lua_ref = lua_case(L, "local a, b = A, B\n"
                           "return function(n) for i = 1, n do local c = a:matmul(b) end end", why, sizeof why);
  xlo.lua_ref = lua_case(L, "local a, b, c = A, B, C\n"
                            "return function(n) for i = 1, n do a:matmul(b, c) end end", why, sizeof why);
  if (xl.lua_ref == LUA_NOREF || xlo.lua_ref == LUA_NOREF) {
    fprintf(stderr, "bench_core: lua matmul: %s\n", why);
    exit(1);
  }
  run_fn runs[5] = {run_cblas, run_sf_out, run_sf_fresh, run_lua, run_lua};
  void *ctxs[5] = {&x, &x, &x, &xl, &xlo};
  double t[5];
  measure(5, runs, ctxs, t);
  /* the result agrees with the direct call */
  float maxd = 0.0f;
  const float *pc = sf_tensor_data(&x.c);
  for (int64_t i = 0; i < (int64_t)m * n; i++) maxd = fmaxf(maxd, fabsf(pc[i] - x.raw[i]));
  double flop = 2.0 * m * k * n, ref = flop / t[0] * 1e-9;
  char name[96];
  const char *what[4] = {"C sf_matmul(out)", "C sf_matmul(fresh)", "Lua a:matmul(b)", "Lua a:matmul(b, out)"};
  printf("matmul %dx%dx%d: direct cblas_sgemm %.3f ms = %.1f GFLOP/s (max |diff| %.2g)\n", m, k, n, t[0] * 1e3, ref,
         (double)maxd);
  for (int i = 1; i < 5; i++) {
    snprintf(name, sizeof name, "  %s", what[i - 1]);
    double got = flop / t[i] * 1e-9;
    row(name, "GFLOP/s", ref, got, got / ref, ">= 0.90", got / ref >= 0.90);
  }
  luaL_unref(L, LUA_REGISTRYINDEX, xl.lua_ref);
  luaL_unref(L, LUA_REGISTRYINDEX, xlo.lua_ref);
  lua_pushnil(L);
  lua_setglobal(L, "A");
  lua_pushnil(L);
  lua_setglobal(L, "B");
  lua_pushnil(L);
  lua_setglobal(L, "C");
  lua_gc(L, LUA_GCCOLLECT);
  sf_tensor_release(&x.a);
  sf_tensor_release(&x.b);
  sf_tensor_release(&x.c);
  free(x.raw);
}

/* ---- elementwise chains ---- */

typedef struct {
  const float *x;
  float *y;
  int64_t n;
  int with_exp;
} ew_ctx;

/* The same chain as the Lua case, fused into one loop over a preallocated buffer. */
static void run_ew_c(void *p, int iters) {
  ew_ctx *e = p;
  for (int it = 0; it < iters; it++) {
    if (e->with_exp)
      for (int64_t i = 0; i < e->n; i++) e->y[i] = expf(fmaxf(e->x[i] * 2.0f + 1.0f, 0.0f));
    else
      for (int64_t i = 0; i < e->n; i++) e->y[i] = fmaxf(e->x[i] * 2.0f + 1.0f, 0.0f);
  }
}

/* One chain: the Lua expression (of the global x) against the fused C loop. */
static void bench_chain(lua_State *L, ew_ctx *e, const char *expr, const char *label, const char *target) {
  char chunk[512], why[512];
  snprintf(chunk, sizeof chunk,
           "local x = X\nreturn function(n) for i = 1, n do\n  local y = %s\n  Y = y\nend end", expr);
  mm_ctx xl = {0, 0, 0, SF_TENSOR_EMPTY, SF_TENSOR_EMPTY, SF_TENSOR_EMPTY, NULL, L, LUA_NOREF};
  xl.lua_ref = lua_case(L, chunk, why, sizeof why);
  printf("%s on %lld floats:\n", expr, (long long)e->n);
  if (xl.lua_ref == LUA_NOREF) {
    printf("  n/a: the Lua chain does not run yet (%s)\n", why);
    return;
  }
  run_fn runs[2] = {run_ew_c, run_lua};
  void *ctxs[2] = {e, &xl};
  double t[2];
  measure(2, runs, ctxs, t);
  /* the Lua result agrees with the C loop (relative, since exp grows fast) */
  run_ew_c(e, 1);
  lua_getglobal(L, "Y");
  sf_tensor *ly = luaL_checkudata(L, -1, "surgft.Tensor");
  float maxd = 0.0f;
  for (int64_t i = 0; i < e->n; i++)
    maxd = fmaxf(maxd, fabsf(*sf_tensor_ptr_linear(ly, i) - e->y[i]) / fmaxf(1.0f, fabsf(e->y[i])));
  lua_pop(L, 1);
  printf("  plain C loop (fused, preallocated) %.3f ms; max relative diff %.2g\n", t[0] * 1e3, (double)maxd);
  row(label, "ms per chain (ratio = Lua / C)", t[0] * 1e3, t[1] * 1e3, t[1] / t[0], target, t[1] / t[0] <= 2.0);
  luaL_unref(L, LUA_REGISTRYINDEX, xl.lua_ref);
}

static void bench_elementwise(lua_State *L, sf_rng *r) {
  const int64_t n = 1000000;
  sf_tensor x = SF_TENSOR_EMPTY, y = SF_TENSOR_EMPTY;
  randn(&x, 1, &n, r);
  if (sf_tensor_new(&y, 1, &n)) die("alloc");
  lua_set_tensor(L, "X", &x);
  ew_ctx e = {sf_tensor_data(&x), sf_tensor_data(&y), n, 1};
  bench_chain(L, &e, "((x * 2 + 1):relu():exp())", "  Lua chain (4 ops, fresh tensors)", "<= 2.0");
  /* without exp the work is memory traffic only: this line shows the per-op overhead */
  e.with_exp = 0;
  bench_chain(L, &e, "((x * 2 + 1):relu())", "  Lua chain (3 ops, fresh tensors)", NULL);
  lua_pushnil(L);
  lua_setglobal(L, "X");
  lua_pushnil(L);
  lua_setglobal(L, "Y");
  lua_gc(L, LUA_GCCOLLECT);
  sf_tensor_release(&x);
  sf_tensor_release(&y);
}

int main(int argc, char **argv) {
  if (argc > 1) {
    repeats = atoi(argv[1]);
    if (repeats < 1 || repeats > 101) {
      fprintf(stderr, "usage: bench_core [repeats (1..101)]\n");
      return 2;
    }
  }
  if (sf_threads_init()) fprintf(stderr, "bench_core: warning: %s\n", sf_errmsg());
  lua_State *L = luaL_newstate();
  if (!L) die("lua state");
  luaL_openlibs(L);
  luaL_requiref(L, "surgft.core", luaopen_surgft_core, 0);
  lua_setglobal(L, "sf");
  sf_rng r;
  sf_rng_seed(&r, 0);

  printf("surgft core benchmark: median of %d repeats, %d thread(s)\nOpenBLAS: %s\n\n", repeats, sf_threads(),
         sf_blas_config());
  printf("%-36s %10s %10s %7s   %-7s\n", "case", "reference", "surgft", "ratio", "target");
  bench_matmul(L, &r, 512, 512, 512);
  bench_matmul(L, &r, 128, 784, 512);
  bench_elementwise(L, &r);
  lua_close(L);
  return 0;
}
