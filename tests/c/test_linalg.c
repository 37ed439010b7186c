/* C test of matmul and the LAPACK routines, without Lua: TAP output. Checks values,
 * error messages, and that no storage survives (error paths included). */
#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "src/core/rng.h"
#include "src/core/tensor.h"

static int ntest = 0, nfail = 0;

static void ok(int cond, const char *what) {
  ntest++;
  if (!cond) nfail++;
  printf("%s %d - %s\n", cond ? "ok" : "not ok", ntest, what);
}

/* The error message contains want (printed on failure). */
static void err_is(int rc, const char *want, const char *what) {
  int good = rc == -1 && strstr(sf_errmsg(), want) != NULL;
  if (!good) printf("# got rc %d, message '%s', wanted '%s'\n", rc, sf_errmsg(), want);
  ok(good, what);
}

static void from_array(sf_tensor *t, int ndim, const int64_t *size, const float *v) {
  sf_tensor_new(t, ndim, size);
  memcpy(sf_tensor_data(t), v, (size_t)sf_tensor_numel(t) * sizeof(float));
}

static float maxdiff(const sf_tensor *a, const float *v) {
  float m = 0.0f;
  for (int64_t i = 0, n = sf_tensor_numel(a); i < n; i++) {
    float d = fabsf(*sf_tensor_ptr_linear(a, i) - v[i]);
    if (!(d <= m)) m = d;
  }
  return m;
}

static float maxdiff_t(const sf_tensor *a, const sf_tensor *b) {
  float m = 0.0f;
  for (int64_t i = 0, n = sf_tensor_numel(a); i < n; i++) {
    float d = fabsf(*sf_tensor_ptr_linear(a, i) - *sf_tensor_ptr_linear(b, i));
    if (!(d <= m)) m = d;
  }
  return m;
}

static void randn(sf_tensor *t, int ndim, const int64_t *size, sf_rng *r) {
  sf_tensor_new(t, ndim, size);
  float *p = sf_tensor_data(t);
  for (int64_t i = 0, n = sf_tensor_numel(t); i < n; i++) p[i] = (float)sf_rng_normal(r);
}

static void test_matmul(void) {
  sf_tensor a = SF_TENSOR_EMPTY, b = SF_TENSOR_EMPTY, c = SF_TENSOR_EMPTY, at = SF_TENSOR_EMPTY,
            ac = SF_TENSOR_EMPTY, c2 = SF_TENSOR_EMPTY;
  int64_t sa[2] = {2, 3}, sb[2] = {3, 2};
  const float va[] = {1, 2, 3, 4, 5, 6}, vb[] = {7, 8, 9, 10, 11, 12}, want[] = {58, 64, 139, 154};
  from_array(&a, 2, sa, va);
  from_array(&b, 2, sb, vb);
  ok(sf_matmul(&c, &a, &b) == 0 && c.ndim == 2 && c.size[0] == 2 && c.size[1] == 2, "matmul [2,3]x[3,2] shape");
  ok(maxdiff(&c, want) == 0.0f, "matmul hand-computed values");
  /* a transposed view as the first operand: b^T [2,3] x a^T [3,2] = (a b)^T */
  sf_tensor_transpose(&at, &b, 0, 1);
  sf_tensor_transpose(&ac, &a, 0, 1);
  ok(sf_matmul(&c2, &at, &ac) == 0, "matmul of two transposed views");
  const float wantt[] = {58, 139, 64, 154};
  ok(maxdiff(&c2, wantt) == 0.0f, "transposed views give (a b)^T");
  /* into a preallocated output */
  sf_tensor_fill(&c, -1.0f);
  ok(sf_matmul(&c, &a, &b) == 0 && maxdiff(&c, want) == 0.0f, "matmul into a preallocated output");
  err_is(sf_matmul(&c2, &a, &a), "matmul: argument #2 has shape [2,3], expected [3,*]", "matmul shape error");
  ok(c2.storage != NULL, "a failed matmul leaves a preallocated output alone");
  sf_tensor_release(&c2);
  err_is(sf_matmul(&c2, &a, &a), "matmul: argument #2 has shape [2,3], expected [3,*]", "matmul shape error, empty out");
  ok(c2.storage == NULL, "a failed matmul leaves an empty output empty");
  sf_tensor_release(&a);
  sf_tensor_release(&b);
  sf_tensor_release(&c);
  sf_tensor_release(&at);
  sf_tensor_release(&ac);
}

static void test_solve_inverse(void) {
  sf_tensor a = SF_TENSOR_EMPTY, b = SF_TENSOR_EMPTY, x = SF_TENSOR_EMPTY, inv = SF_TENSOR_EMPTY,
            s = SF_TENSOR_EMPTY;
  int64_t sa[2] = {2, 2}, sb[1] = {2};
  const float va[] = {1, 2, 3, 4}, vb[] = {5, 6}, vs[] = {1, 2, 2, 4};
  from_array(&a, 2, sa, va);
  from_array(&b, 1, sb, vb);
  ok(sf_solve(&x, &a, &b) == 0, "solve runs");
  const float wx[] = {-4.0f, 4.5f};
  ok(maxdiff(&x, wx) < 1e-5f, "solve hand-computed");
  ok(sf_inverse(&inv, &a) == 0, "inverse runs");
  const float wi[] = {-2.0f, 1.0f, 1.5f, -0.5f};
  ok(maxdiff(&inv, wi) < 1e-5f, "inverse hand-computed");
  from_array(&s, 2, sa, vs);
  sf_tensor_release(&x);
  err_is(sf_solve(&x, &s, &b), "solve: matrix is singular (U(2,2) is zero)", "solve singular");
  ok(x.storage == NULL, "failed solve leaves x empty");
  err_is(sf_inverse(&x, &s), "inverse: matrix is singular (U(2,2) is zero)", "inverse singular");
  int64_t s3[1] = {3};
  sf_tensor b3 = SF_TENSOR_EMPTY;
  sf_tensor_zeros(&b3, 1, s3);
  err_is(sf_solve(&x, &a, &b3), "solve: argument #2 has shape [3], expected [2] or [2,*]", "solve rhs shape");
  err_is(sf_solve(&x, &b3, &b3), "solve: argument #1 has shape [3], expected a 2-D square matrix [n,n]",
         "solve needs a matrix");
  float *p = sf_tensor_data(&a);
  p[3] = NAN;
  err_is(sf_solve(&x, &a, &b), "solve: argument #1 (shape [2,2]) contains a non-finite value", "solve NaN");
  sf_tensor_release(&a);
  sf_tensor_release(&b);
  sf_tensor_release(&b3);
  sf_tensor_release(&x);
  sf_tensor_release(&inv);
  sf_tensor_release(&s);
}

static void test_factorisations(void) {
  sf_rng r;
  sf_rng_seed(&r, 31);
  sf_tensor a = SF_TENSOR_EMPTY, q = SF_TENSOR_EMPTY, rr = SF_TENSOR_EMPTY, qr = SF_TENSOR_EMPTY;
  int64_t sa[2] = {6, 4};
  randn(&a, 2, sa, &r);
  ok(sf_qr(&q, &rr, &a) == 0 && q.size[0] == 6 && q.size[1] == 4 && rr.size[0] == 4 && rr.size[1] == 4,
     "qr reduced shapes");
  ok(sf_matmul(&qr, &q, &rr) == 0 && maxdiff_t(&qr, &a) < 1e-5f, "qr: Q R = A");

  /* svd: U diag(S) Vt = A */
  sf_tensor u = SF_TENSOR_EMPTY, s = SF_TENSOR_EMPTY, vt = SF_TENSOR_EMPTY, us = SF_TENSOR_EMPTY,
            rec = SF_TENSOR_EMPTY;
  ok(sf_svd(&u, &s, &vt, &a) == 0 && s.ndim == 1 && s.size[0] == 4, "svd shapes");
  const float *ps = sf_tensor_data(&s);
  ok(ps[0] >= ps[1] && ps[1] >= ps[2] && ps[2] >= ps[3] && ps[3] >= 0.0f, "singular values descend");
  sf_tensor_clone(&us, &u);
  float *pu = sf_tensor_data(&us);
  for (int i = 0; i < 6; i++)
    for (int j = 0; j < 4; j++) pu[i * 4 + j] *= ps[j];
  ok(sf_matmul(&rec, &us, &vt) == 0 && maxdiff_t(&rec, &a) < 1e-5f, "svd: U S Vt = A");

  /* eigh of a symmetric matrix: V diag(w) V^T = A */
  sf_tensor at = SF_TENSOR_EMPTY, sym = SF_TENSOR_EMPTY, w = SF_TENSOR_EMPTY, v = SF_TENSOR_EMPTY,
            vw = SF_TENSOR_EMPTY, vtr = SF_TENSOR_EMPTY, rec2 = SF_TENSOR_EMPTY;
  sf_tensor_transpose(&at, &a, 0, 1);
  ok(sf_matmul(&sym, &at, &a) == 0, "A^T A");
  ok(sf_eigh(&w, &v, &sym) == 0 && w.size[0] == 4, "eigh runs");
  const float *pw = sf_tensor_data(&w);
  ok(pw[0] <= pw[1] && pw[1] <= pw[2] && pw[2] <= pw[3], "eigenvalues ascend");
  sf_tensor_clone(&vw, &v);
  float *pv = sf_tensor_data(&vw);
  for (int i = 0; i < 4; i++)
    for (int j = 0; j < 4; j++) pv[i * 4 + j] *= pw[j];
  sf_tensor_transpose(&vtr, &v, 0, 1);
  ok(sf_matmul(&rec2, &vw, &vtr) == 0 && maxdiff_t(&rec2, &sym) < 1e-4f, "eigh: V diag(w) V^T = A");

  /* lstsq on an overdetermined system: a^T (a x - b) = 0 */
  sf_tensor b = SF_TENSOR_EMPTY, x = SF_TENSOR_EMPTY, ax = SF_TENSOR_EMPTY, g = SF_TENSOR_EMPTY;
  int64_t sb[1] = {6};
  randn(&b, 1, sb, &r);
  ok(sf_lstsq(&x, &a, &b) == 0 && x.ndim == 1 && x.size[0] == 4, "lstsq shape");
  sf_matmul(&ax, &a, &x);
  float *pax = sf_tensor_data(&ax);
  const float *pb = sf_tensor_data(&b);
  for (int i = 0; i < 6; i++) pax[i] -= pb[i];
  sf_matmul(&g, &at, &ax);
  const float zeros[4] = {0};
  ok(maxdiff(&g, zeros) < 1e-4f, "lstsq residual orthogonal to the columns");

  err_is(sf_eigh(&w, &v, &a), "eigh: argument #1 has shape [6,4], expected a square matrix [n,n]", "eigh square");
  ok(w.storage && v.storage, "failed eigh leaves outputs as they were");

  sf_tensor *all[] = {&a, &q, &rr, &qr, &u, &s, &vt, &us, &rec, &at, &sym, &w, &v, &vw, &vtr, &rec2, &b, &x, &ax, &g};
  for (size_t i = 0; i < sizeof all / sizeof *all; i++) sf_tensor_release(all[i]);
}

/* OpenBLAS's idle-thread timeout: the library's thread default sets a short one when the
 * environment has none (OpenBLAS re-reads it: openblas_thread_timeout() is the value in
 * force) and leaves a user's value alone. Runs first, before anything applies the default.
 * Then the restarted pool must compute: every test below runs on it. */
extern int openblas_thread_timeout(void) __attribute__((weak));
static void test_thread_timeout(void) {
  const char *env = getenv("OPENBLAS_THREAD_TIMEOUT");
  char before[32] = "";
  if (env) snprintf(before, sizeof before, "%s", env);
  int before_timeout = openblas_thread_timeout ? openblas_thread_timeout() : -1;
  (void)sf_threads_init(); /* a bad SURGFT_THREADS only changes the thread count */
  const char *now = getenv("OPENBLAS_THREAD_TIMEOUT");
  if (env != NULL) {
    ok(now && strcmp(now, before) == 0, "a user's OPENBLAS_THREAD_TIMEOUT is left as it was");
    ok(!openblas_thread_timeout || openblas_thread_timeout() == before_timeout, "and OpenBLAS keeps reading it");
  } else if (openblas_get_parallel() == OPENBLAS_THREAD && openblas_thread_timeout) {
    ok(now && strcmp(now, "4") == 0, "OPENBLAS_THREAD_TIMEOUT=4 set when the environment had none");
    ok(openblas_thread_timeout() == 4, "and OpenBLAS has re-read it");
  } else {
    ok(now == NULL, "an OpenBLAS without a pthreads pool: nothing set");
  }
}

int main(void) {
  test_thread_timeout();
  sf_set_threads(2);
  test_matmul();
  test_solve_inverse();
  test_factorisations();
  ok(sf_storage_live_bytes() == 0, "all storage released (error paths included)");
  printf("1..%d\n", ntest);
  return nfail ? 1 : 0;
}
