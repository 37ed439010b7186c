/* BLAS: matrix products through OpenBLAS sgemm, and the thread count. */
#include <cblas.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "parallel.h"
#include "tensor.h"

/* ---- threads ----
 * One knob, sf_threads(), sizes both thread pools: OpenBLAS's and the kernels' own
 * (parallel.c, which reads sf_threads()). They never run at the same time: a kernel either
 * calls a threaded sgemm or runs a parallel loop whose parts call single-threaded sgemm
 * (sf_blas_serial_begin), so the cores are never oversubscribed. */

/* OpenBLAS's idle pool threads spin on sched_yield for 2^OPENBLAS_THREAD_TIMEOUT cycles
 * after every call before they sleep. A training step makes hundreds of small sgemm calls,
 * so with the default (2^28) the idle threads burn a core in system time (measured: sys
 * 9.1 s of a 12.6 s fine-tuning run; 1.6 s with 2^4, same wall time). OpenBLAS reads the
 * variable once, when it loads (before main, or when a host program loads this library),
 * and creates its pool then, so setting it afterwards does nothing by itself. When the user
 * has not chosen a value, set one and have OpenBLAS re-read its environment and stop its
 * pool: blas_thread_shutdown_ is what OpenBLAS itself runs around fork(), and its next call
 * (or openblas_set_num_threads) starts the pool again with the new timeout. Neither
 * function is in cblas.h, so both are weak: an OpenBLAS without them keeps its default, and
 * the variable is then left unset so that it does not claim a setting that is not in force.
 * Otherwise it stays set (child processes inherit it). Runs once, from the thread default,
 * before this library's first BLAS call; an OpenMP OpenBLAS has no such pool. */
#define SF_BLAS_THREAD_TIMEOUT "4"
extern void openblas_read_env(void) __attribute__((weak));
extern int blas_thread_shutdown_(void) __attribute__((weak));

static void short_blas_thread_timeout(void) {
  if (getenv("OPENBLAS_THREAD_TIMEOUT") != NULL) return; /* the user's value, in force since load */
  if (openblas_get_parallel() != OPENBLAS_THREAD || !openblas_read_env || !blas_thread_shutdown_) return;
  if (setenv("OPENBLAS_THREAD_TIMEOUT", SF_BLAS_THREAD_TIMEOUT, 1) != 0) return;
  openblas_read_env();
  blas_thread_shutdown_();
}

static pthread_once_t threads_once = PTHREAD_ONCE_INIT;
static int threads_init_rc;
static char threads_init_msg[256];

static int online_cores(void) {
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  return n >= 1 && n <= INT_MAX ? (int)n : 1;
}

/* Reads SURGFT_THREADS once; an invalid value falls back to the core count and leaves a
 * message that sf_threads_init() returns and that the lazy path prints as a warning. */
static void threads_default(void) {
  int cores = online_cores(), n = cores;
  const char *env = getenv("SURGFT_THREADS");
  if (env && *env) {
    char *end = NULL;
    errno = 0;
    long v = strtol(env, &end, 10);
    if (errno || end == env || *end != '\0' || v < 1 || v > 4096) {
      snprintf(threads_init_msg, sizeof threads_init_msg,
               "SURGFT_THREADS='%.64s' is not a thread count (an integer from 1 to 4096); using %d (the online cores)",
               env, cores);
      threads_init_rc = -1;
    } else {
      n = (int)v;
    }
  }
  short_blas_thread_timeout();
  openblas_set_num_threads(n); /* also starts the pool again, with the short timeout */
}

int sf_threads_init(void) {
  pthread_once(&threads_once, threads_default);
  if (threads_init_rc) return sf_err("threads: %s", threads_init_msg);
  return 0;
}

/* The lazy path: every entry point that uses OpenBLAS applies the default first. The
 * warning for a bad SURGFT_THREADS is printed once, by whichever call comes first. */
static pthread_once_t warn_once = PTHREAD_ONCE_INIT;
static void warn_bad_env(void) {
  if (threads_init_rc) fprintf(stderr, "surgft: warning: %s\n", threads_init_msg);
}
void sf_threads_ensure(void) {
  pthread_once(&threads_once, threads_default);
  pthread_once(&warn_once, warn_bad_env);
}

void sf_set_threads(int n) {
  sf_threads_ensure(); /* so a later first use does not reapply the default over n */
  if (n < 1) n = 1;
  openblas_set_num_threads(n);
}

int sf_threads(void) {
  sf_threads_ensure();
  return openblas_get_num_threads();
}

const char *sf_blas_config(void) { return openblas_get_config(); }

/* ---- matmul ---- */

/* How sgemm can read one matrix operand of r x c elements with strides (sr, sc): row-major
 * as is (NoTrans, ld = sr) when its columns are adjacent, or as the transpose of a
 * row-major c x r matrix (Trans, ld = sc) when its rows are. Returns 0 when neither holds
 * (expanded or otherwise gappy views): the caller makes a contiguous copy. A size-1
 * dimension's stride is free, so ld takes the smallest value sgemm accepts. */
static int gemm_layout(int64_t r, int64_t c, int64_t sr, int64_t sc, CBLAS_TRANSPOSE *tr, int64_t *ld) {
  int64_t minr = c > 1 ? c : 1, minc = r > 1 ? r : 1;
  if ((c == 1 || sc == 1) && (r == 1 || sr >= minr)) {
    *tr = CblasNoTrans;
    *ld = r == 1 ? minr : sr;
    return *ld <= INT_MAX;
  }
  if ((r == 1 || sr == 1) && (c == 1 || sc >= minc)) {
    *tr = CblasTrans;
    *ld = c == 1 ? minc : sc;
    return *ld <= INT_MAX;
  }
  return 0;
}

/* One operand, seen as a batch of r x c matrices. */
typedef struct {
  int64_t batch, r, c;
  int64_t sb, sr, sc; /* strides of batch, row, column */
  int row;            /* a 1-D operand read as a row (else as a column) */
} mat_view;

/* Views a 1-D, 2-D or 3-D tensor as a batch of matrices; a 1-D vector becomes a row
 * (as_row) or a column. */
static mat_view mat_of(const sf_tensor *t, int as_row) {
  mat_view v = {1, 1, 1, 0, 1, 1, as_row};
  if (t->ndim == 1) {
    if (as_row) {
      v.c = t->size[0];
      v.sc = t->stride[0];
      v.sr = v.c * v.sc;
    } else {
      v.r = t->size[0];
      v.sr = t->stride[0];
    }
  } else if (t->ndim == 2) {
    v.r = t->size[0], v.c = t->size[1];
    v.sr = t->stride[0], v.sc = t->stride[1];
  } else {
    v.batch = t->size[0], v.r = t->size[1], v.c = t->size[2];
    v.sb = t->stride[0], v.sr = t->stride[1], v.sc = t->stride[2];
  }
  return v;
}

/* Checks out (when non-empty) against the expected shape: exact shape and contiguous. */
static int check_out(const char *fn, const sf_tensor *out, int ndim, const int64_t *size) {
  char b1[SF_SHAPE_BUF], b2[SF_SHAPE_BUF];
  if (!out->storage) return 0;
  int same = out->ndim == ndim;
  for (int d = 0; same && d < ndim; d++) same = out->size[d] == size[d];
  if (!same)
    return sf_err("%s: output has shape %s, expected %s", fn, sf_tshape(out, b1), sf_shape_str(b2, sizeof b2, ndim, size));
  if (!sf_tensor_is_contiguous(out))
    return sf_err("%s: output of shape %s is not contiguous; pass a contiguous tensor or an empty one", fn,
                  sf_tshape(out, b1));
  return 0;
}

typedef struct {
  const float *pa, *pb;
  float *c;
  int64_t sa, sb, m, n, k, lda, ldb;
  CBLAS_TRANSPOSE ta, tb;
} gemm_ctx;

static void gemm_part(void *ctx, int64_t lo, int64_t hi, int part) {
  (void)part;
  const gemm_ctx *g = ctx;
  for (int64_t i = lo; i < hi; i++)
    cblas_sgemm(CblasRowMajor, g->ta, g->tb, (blasint)g->m, (blasint)g->n, (blasint)g->k, 1.0f, g->pa + i * g->sa,
                (blasint)g->lda, g->pb + i * g->sb, (blasint)g->ldb, 0.0f, g->c + i * g->m * g->n, (blasint)g->n);
}

/* c[batch] = a[batch] @ b[batch] with c contiguous; a and b usable by sgemm directly or
 * copied here. Copies are released before returning. */
static int gemm_batched(const char *fn, float *c, const sf_tensor *a, mat_view va, const sf_tensor *b, mat_view vb) {
  sf_tensor ca = SF_TENSOR_EMPTY, cb = SF_TENSOR_EMPTY;
  const int64_t batch = va.batch > vb.batch ? va.batch : vb.batch;
  const int64_t m = va.r, k = va.c, n = vb.c;
  CBLAS_TRANSPOSE ta = CblasNoTrans, tb = CblasNoTrans;
  int64_t lda = 1, ldb = 1;
  int rc = 0;
  if (m > INT_MAX || k > INT_MAX || n > INT_MAX)
    return sf_err("%s: matrix sizes %lld x %lld x %lld exceed the BLAS limit (%d)", fn, (long long)m, (long long)k,
                  (long long)n, INT_MAX);
  if (m == 0 || n == 0) return 0;
  if (k == 0) {
    for (int64_t i = 0; i < batch * m * n; i++) c[i] = 0.0f;
    return 0;
  }
  if (!gemm_layout(va.r, va.c, va.sr, va.sc, &ta, &lda)) {
    if (sf_tensor_clone(&ca, a)) return -1;
    va = mat_of(&ca, va.row);
    SF_ASSERT(gemm_layout(va.r, va.c, va.sr, va.sc, &ta, &lda));
  }
  if (!gemm_layout(vb.r, vb.c, vb.sr, vb.sc, &tb, &ldb)) {
    if (sf_tensor_clone(&cb, b)) {
      rc = -1;
      goto done;
    }
    vb = mat_of(&cb, vb.row);
    SF_ASSERT(gemm_layout(vb.r, vb.c, vb.sr, vb.sc, &tb, &ldb));
  }
  {
    gemm_ctx g = {sf_tensor_data(ca.storage ? &ca : a), sf_tensor_data(cb.storage ? &cb : b), c, va.sb, vb.sb,
                  m, n, k, lda, ldb, ta, tb};
    /* A batch of small products (attention: [T,hd] x [hd,T] per head and image) is split
     * over the threads, each running its products single-threaded: OpenBLAS does not
     * thread products this small, so one thread ran them all. Parts of at least ~0.5
     * MFLOP. Each product is one sgemm call either way, so the bits do not depend on the
     * split. */
    const double per = 2.0 * (double)m * (double)n * (double)k;
    const int64_t grain = per >= 500000.0 ? 1 : (int64_t)(500000.0 / per) + 1;
    sf_parallel_for_blas(sf_parallel_parts(batch, grain), batch, gemm_part, &g);
  }
done:
  sf_tensor_release(&ca);
  sf_tensor_release(&cb);
  return rc;
}

/* Writes the product into out: directly when out is a fresh or preallocated contiguous
 * tensor that does not share storage with an input, else through a temporary (sgemm's
 * output must not overlap its inputs). */
static int gemm_into(const char *fn, sf_tensor *out, int ndim, const int64_t *size, const sf_tensor *a, mat_view va,
                     const sf_tensor *b, mat_view vb) {
  sf_threads_ensure();
  if (out->storage && out->storage != a->storage && out->storage != b->storage)
    return gemm_batched(fn, sf_tensor_data(out), a, va, b, vb);
  sf_tensor tmp = SF_TENSOR_EMPTY;
  if (sf_tensor_new(&tmp, ndim, size)) return -1;
  if (gemm_batched(fn, sf_tensor_data(&tmp), a, va, b, vb)) {
    sf_tensor_release(&tmp);
    return -1;
  }
  if (out->storage) {
    int rc = sf_tensor_copy(out, &tmp);
    sf_tensor_release(&tmp);
    return rc;
  }
  *out = tmp;
  return 0;
}

int sf_matmul(sf_tensor *out, const sf_tensor *a, const sf_tensor *b) {
  char b1[SF_SHAPE_BUF];
  if (!a->storage || !b->storage) return sf_err("matmul: argument #%d is an empty tensor", a->storage ? 2 : 1);
  if (a->ndim < 1 || a->ndim > 3)
    return sf_err("matmul: argument #1 has shape %s, expected a 1-D, 2-D or 3-D tensor", sf_tshape(a, b1));
  if (b->ndim < 1 || b->ndim > 3)
    return sf_err("matmul: argument #2 has shape %s, expected a 1-D, 2-D or 3-D tensor", sf_tshape(b, b1));
  int64_t size[3];
  int ndim;
  if (a->ndim == 3 || b->ndim == 3) {
    /* batched: both 3-D with the same batch size; no broadcasting */
    if (a->ndim != 3)
      return sf_err("matmul: argument #1 has shape %s, expected [%lld,*,%lld] (batched matmul needs both 3-D)",
                    sf_tshape(a, b1), (long long)b->size[0], (long long)b->size[1]);
    if (b->ndim != 3)
      return sf_err("matmul: argument #2 has shape %s, expected [%lld,%lld,*] (batched matmul needs both 3-D)",
                    sf_tshape(b, b1), (long long)a->size[0], (long long)a->size[2]);
    if (b->size[0] != a->size[0] || b->size[1] != a->size[2])
      return sf_err("matmul: argument #2 has shape %s, expected [%lld,%lld,*]", sf_tshape(b, b1),
                    (long long)a->size[0], (long long)a->size[2]);
    ndim = 3;
    size[0] = a->size[0], size[1] = a->size[1], size[2] = b->size[2];
  } else {
    int64_t k = a->size[a->ndim - 1];
    if (b->size[0] != k) {
      if (b->ndim == 1)
        return sf_err("matmul: argument #2 has shape %s, expected [%lld]", sf_tshape(b, b1), (long long)k);
      return sf_err("matmul: argument #2 has shape %s, expected [%lld,*]", sf_tshape(b, b1), (long long)k);
    }
    ndim = 0; /* [m,k]x[k,n] -> [m,n]; [k]x[k,n] -> [n]; [m,k]x[k] -> [m]; [k]x[k] -> [] */
    if (a->ndim == 2) size[ndim++] = a->size[0];
    if (b->ndim == 2) size[ndim++] = b->size[1];
  }
  if (check_out("matmul", out, ndim, size)) return -1;
  return gemm_into("matmul", out, ndim, size, a, mat_of(a, 1), b, mat_of(b, 0));
}

int sf_outer(sf_tensor *out, const sf_tensor *a, const sf_tensor *b) {
  char b1[SF_SHAPE_BUF];
  if (!a->storage || !b->storage) return sf_err("outer: argument #%d is an empty tensor", a->storage ? 2 : 1);
  if (a->ndim != 1) return sf_err("outer: argument #1 has shape %s, expected a 1-D tensor", sf_tshape(a, b1));
  if (b->ndim != 1) return sf_err("outer: argument #2 has shape %s, expected a 1-D tensor", sf_tshape(b, b1));
  int64_t size[2] = {a->size[0], b->size[0]};
  if (check_out("outer", out, 2, size)) return -1;
  /* a as an m x 1 column, b as a 1 x n row: a rank-1 sgemm with k = 1 */
  return gemm_into("outer", out, 2, size, a, mat_of(a, 0), b, mat_of(b, 1));
}
