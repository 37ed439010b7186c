/*
 * surgft parallel loops: a small persistent pthread pool for the kernels' own loops
 * (im2col/col2im, normalisation, elementwise and row kernels). OpenBLAS keeps its own
 * pool for sgemm; the two never run at the same time (a kernel either calls a threaded
 * sgemm or runs a parallel loop, which may call single-threaded sgemm inside, see
 * sf_blas_serial_begin), so sf_threads() threads are never oversubscribed.
 *
 *   int parts = sf_parallel_parts(n, grain);   // how many ranges [0, n) is split into
 *   sf_parallel_for(parts, n, fn, ctx);        // fn(ctx, lo, hi, part) for each range
 *
 * Determinism: the split is static, part p covers [n*p/parts, n*(p+1)/parts), and it does
 * not depend on which thread runs a part. A reduction gives each part its own partial
 * result and combines them in part order afterwards: the numbers then depend on the
 * thread count only (through parts), never on timing. When the pool cannot be used
 * (nested call, another thread already using it, one thread) the same parts run one
 * after the other on the calling thread, so the results are identical.
 */
#ifndef SF_PARALLEL_H
#define SF_PARALLEL_H

#include <stdint.h>

typedef void (*sf_parallel_fn)(void *ctx, int64_t lo, int64_t hi, int part);

/* Parts for a loop of n items of which each part should get at least grain (>= 1):
 * min(sf_threads(), n / grain), at least 1. */
int sf_parallel_parts(int64_t n, int64_t grain);
/* Runs fn over the parts of [0, n); part 0 on the calling thread. Returns when all are
 * done. parts < 1 counts as 1. fn must not raise errors (kernels are void): it may
 * record a failure in ctx for the caller to report. */
void sf_parallel_for(int parts, int64_t n, sf_parallel_fn fn, void *ctx);
/* 1 while the calling thread runs a part of a parallel loop (nested loops run serially). */
int sf_parallel_active(void);

/* Around a parallel loop whose parts call sgemm: OpenBLAS runs single-threaded in between
 * (each part's sgemm on its own thread), restored by the end call. Nests. */
void sf_blas_serial_begin(void);
void sf_blas_serial_end(void);
/* sf_parallel_for for parts that call sgemm: with several parts, inside the two calls
 * above; one part runs on the calling thread with OpenBLAS free to use its own threads. */
void sf_parallel_for_blas(int parts, int64_t n, sf_parallel_fn fn, void *ctx);

#endif
