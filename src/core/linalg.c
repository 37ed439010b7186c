/* Linear algebra through the LAPACK inside OpenBLAS: solve, lstsq, qr, svd, eigh, inverse.
 *
 * LAPACK is column-major and overwrites its inputs, so every routine copies its operands
 * into malloc'd column-major workspaces, calls LAPACK, and copies results out into fresh
 * row-major tensors. Outputs are built in temporaries and moved into place only when
 * everything succeeded; every workspace is freed on every path. */
#include <cblas.h> /* blasint: the integer type this OpenBLAS was built with */
#include <float.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "tensor.h"

/* The Fortran symbols (no lapacke on the system). Character arguments carry a hidden
 * length after the explicit arguments (gfortran's convention); passing it is harmless
 * where it is not read. */
void sgesv_(const blasint *n, const blasint *nrhs, float *a, const blasint *lda, blasint *ipiv, float *b,
            const blasint *ldb, blasint *info);
void sgetrf_(const blasint *m, const blasint *n, float *a, const blasint *lda, blasint *ipiv, blasint *info);
void sgetri_(const blasint *n, float *a, const blasint *lda, const blasint *ipiv, float *work, const blasint *lwork,
             blasint *info);
void sgelsd_(const blasint *m, const blasint *n, const blasint *nrhs, float *a, const blasint *lda, float *b,
             const blasint *ldb, float *s, const float *rcond, blasint *rank, float *work, const blasint *lwork,
             blasint *iwork, blasint *info);
void sgeqrf_(const blasint *m, const blasint *n, float *a, const blasint *lda, float *tau, float *work,
             const blasint *lwork, blasint *info);
void sorgqr_(const blasint *m, const blasint *n, const blasint *k, float *a, const blasint *lda, const float *tau,
             float *work, const blasint *lwork, blasint *info);
void sgesdd_(const char *jobz, const blasint *m, const blasint *n, float *a, const blasint *lda, float *s, float *u,
             const blasint *ldu, float *vt, const blasint *ldvt, float *work, const blasint *lwork, blasint *iwork,
             blasint *info, size_t jobz_len);
void ssyevd_(const char *jobz, const char *uplo, const blasint *n, float *a, const blasint *lda, float *w, float *work,
             const blasint *lwork, blasint *iwork, const blasint *liwork, blasint *info, size_t jobz_len,
             size_t uplo_len);

/* ---- helpers ---- */

static int64_t max1(int64_t a) { return a > 1 ? a : 1; }
static int64_t min2(int64_t a, int64_t b) { return a < b ? a : b; }

/* src viewed as r x c (1-D: a column) into column-major dst with leading dimension ld. */
static void to_colmajor(float *dst, int64_t ld, const sf_tensor *src) {
  int64_t r = src->size[0], c = src->ndim == 2 ? src->size[1] : 1;
  int64_t sr = src->stride[0], sc = src->ndim == 2 ? src->stride[1] : 0;
  const float *p = sf_tensor_data(src);
  for (int64_t j = 0; j < c; j++)
    for (int64_t i = 0; i < r; i++) dst[i + j * ld] = p[i * sr + j * sc];
}

/* Column-major r x c block of src (leading dimension ld) into the contiguous tensor dst
 * (1-D or 2-D with r * c elements, row-major). */
static void from_colmajor(sf_tensor *dst, const float *src, int64_t ld, int64_t r, int64_t c) {
  float *p = sf_tensor_data(dst);
  for (int64_t i = 0; i < r; i++)
    for (int64_t j = 0; j < c; j++) p[i * c + j] = src[i + j * ld];
}

static void *alloc_floats(const char *fn, int64_t n) {
  float *p = malloc((size_t)max1(n) * sizeof(float));
  if (!p) sf_err("%s: out of memory allocating a %lld-element workspace", fn, (long long)n);
  return p;
}

static void *alloc_ints(const char *fn, int64_t n) {
  blasint *p = malloc((size_t)max1(n) * sizeof(blasint));
  if (!p) sf_err("%s: out of memory allocating a %lld-element workspace", fn, (long long)n);
  return p;
}

/* A LAPACK workspace-query result (a float) as an element count. */
static int64_t lwork_of(float q) { return (int64_t)q + 1; }

static int check_matrix(const char *fn, int arg, const sf_tensor *a, int square) {
  char buf[SF_SHAPE_BUF];
  if (!a->storage) return sf_err("%s: argument #%d is an empty tensor", fn, arg);
  if (a->ndim != 2)
    return sf_err("%s: argument #%d has shape %s, expected a 2-D %s", fn, arg, sf_tshape(a, buf),
                  square ? "square matrix [n,n]" : "matrix [m,n]");
  if (square && a->size[0] != a->size[1])
    return sf_err("%s: argument #%d has shape %s, expected a square matrix [n,n]", fn, arg, sf_tshape(a, buf));
  if (a->size[0] > INT_MAX || a->size[1] > INT_MAX)
    return sf_err("%s: argument #%d has shape %s, larger than LAPACK allows (%d)", fn, arg, sf_tshape(a, buf), INT_MAX);
  return 0;
}

/* NaN or Inf in the input: LAPACK's answer would be garbage (or a hang), so refuse. */
static int check_finite(const char *fn, int arg, const sf_tensor *a) {
  char buf[SF_SHAPE_BUF];
  for (int64_t i = 0, n = sf_tensor_numel(a); i < n; i++)
    if (!isfinite(*sf_tensor_ptr_linear(a, i)))
      return sf_err("%s: argument #%d (shape %s) contains a non-finite value (NaN or Inf) at element %lld", fn, arg,
                    sf_tshape(a, buf), (long long)i + 1);
  return 0;
}

/* The right-hand side of solve / lstsq: [rows] or [rows,k]. */
static int check_rhs(const char *fn, const sf_tensor *b, int64_t rows) {
  char buf[SF_SHAPE_BUF];
  if (!b->storage) return sf_err("%s: argument #2 is an empty tensor", fn);
  if ((b->ndim != 1 && b->ndim != 2) || b->size[0] != rows)
    return sf_err("%s: argument #2 has shape %s, expected [%lld] or [%lld,*]", fn, sf_tshape(b, buf), (long long)rows,
                  (long long)rows);
  if (b->ndim == 2 && b->size[1] > INT_MAX)
    return sf_err("%s: argument #2 has shape %s, larger than LAPACK allows (%d)", fn, sf_tshape(b, buf), INT_MAX);
  return 0;
}

static int lapack_fail(const char *fn, const char *routine, blasint info) {
  /* a negative info is a bad argument: a bug here, not the caller's */
  return sf_err("%s: internal error: %s rejected argument %d", fn, routine, (int)-info);
}

/* Moves a finished temporary into an output, releasing what the output held. */
static void give(sf_tensor *out, sf_tensor *tmp) {
  sf_tensor_release(out);
  *out = *tmp;
  memset(tmp, 0, sizeof *tmp);
}

/* ---- solve ---- */

int sf_solve(sf_tensor *x, const sf_tensor *a, const sf_tensor *b) {
  const char *fn = "solve";
  if (check_matrix(fn, 1, a, 1) || check_rhs(fn, b, a->size[0])) return -1;
  if (check_finite(fn, 1, a) || check_finite(fn, 2, b)) return -1;
  const blasint n = (blasint)a->size[0], nrhs = (blasint)(b->ndim == 2 ? b->size[1] : 1), ld = (blasint)max1(n);
  sf_tensor res = SF_TENSOR_EMPTY;
  float *wa = NULL, *wb = NULL;
  blasint *ipiv = NULL, info = 0;
  int rc = -1;
  if (!(wa = alloc_floats(fn, (int64_t)ld * n)) || !(wb = alloc_floats(fn, (int64_t)ld * nrhs)) ||
      !(ipiv = alloc_ints(fn, n)) || sf_tensor_new(&res, b->ndim, b->size))
    goto done;
  to_colmajor(wa, ld, a);
  to_colmajor(wb, ld, b);
  sf_threads_ensure();
  sgesv_(&n, &nrhs, wa, &ld, ipiv, wb, &ld, &info);
  if (info > 0) {
    sf_err("%s: matrix is singular (U(%d,%d) is zero)", fn, (int)info, (int)info);
    goto done;
  }
  if (info < 0) {
    lapack_fail(fn, "sgesv", info);
    goto done;
  }
  from_colmajor(&res, wb, ld, n, nrhs);
  give(x, &res);
  rc = 0;
done:
  free(wa);
  free(wb);
  free(ipiv);
  sf_tensor_release(&res);
  return rc;
}

/* ---- inverse ---- */

int sf_inverse(sf_tensor *out, const sf_tensor *a) {
  const char *fn = "inverse";
  if (check_matrix(fn, 1, a, 1) || check_finite(fn, 1, a)) return -1;
  const blasint n = (blasint)a->size[0], ld = (blasint)max1(n);
  sf_tensor res = SF_TENSOR_EMPTY;
  float *wa = NULL, *work = NULL, q = 0.0f;
  blasint *ipiv = NULL, info = 0, lwork = -1;
  int rc = -1;
  if (!(wa = alloc_floats(fn, (int64_t)ld * n)) || !(ipiv = alloc_ints(fn, n)) || sf_tensor_new(&res, 2, a->size))
    goto done;
  if (n == 0) goto ok;
  to_colmajor(wa, ld, a);
  sf_threads_ensure();
  sgetrf_(&n, &n, wa, &ld, ipiv, &info);
  if (info > 0) {
    sf_err("%s: matrix is singular (U(%d,%d) is zero)", fn, (int)info, (int)info);
    goto done;
  }
  if (info < 0) {
    lapack_fail(fn, "sgetrf", info);
    goto done;
  }
  sgetri_(&n, wa, &ld, ipiv, &q, &lwork, &info);
  lwork = (blasint)lwork_of(q);
  if (!(work = alloc_floats(fn, lwork))) goto done;
  sgetri_(&n, wa, &ld, ipiv, work, &lwork, &info);
  if (info != 0) {
    if (info > 0)
      sf_err("%s: matrix is singular (U(%d,%d) is zero)", fn, (int)info, (int)info);
    else
      lapack_fail(fn, "sgetri", info);
    goto done;
  }
  from_colmajor(&res, wa, ld, n, n);
ok:
  give(out, &res);
  rc = 0;
done:
  free(wa);
  free(work);
  free(ipiv);
  sf_tensor_release(&res);
  return rc;
}

/* ---- lstsq ---- */

/* Minimum-norm least squares through the SVD (sgelsd): singular values below
 * rcond * s_max count as zero, with rcond = eps * max(m, n) as NumPy and PyTorch use,
 * so a rank-deficient a gets the minimum-norm solution despite float32 rounding. */
int sf_lstsq(sf_tensor *x, const sf_tensor *a, const sf_tensor *b) {
  const char *fn = "lstsq";
  if (check_matrix(fn, 1, a, 0) || check_rhs(fn, b, a->size[0])) return -1;
  if (check_finite(fn, 1, a) || check_finite(fn, 2, b)) return -1;
  const blasint m = (blasint)a->size[0], n = (blasint)a->size[1], nrhs = (blasint)(b->ndim == 2 ? b->size[1] : 1);
  const blasint lda = (blasint)max1(m), ldb = (blasint)max1(m > n ? m : n);
  const float rcond = FLT_EPSILON * (float)(m > n ? m : n);
  int64_t xsize[2] = {n, nrhs};
  sf_tensor res = SF_TENSOR_EMPTY;
  float *wa = NULL, *wb = NULL, *s = NULL, *work = NULL, q = 0.0f;
  blasint *iwork = NULL, info = 0, rank = 0, lwork = -1, qi = 0;
  int rc = -1;
  if (!(wa = alloc_floats(fn, (int64_t)lda * n)) || !(wb = alloc_floats(fn, (int64_t)ldb * nrhs)) ||
      !(s = alloc_floats(fn, min2(m, n))) || sf_tensor_new(&res, b->ndim, xsize))
    goto done;
  if (m == 0 || n == 0 || nrhs == 0) { /* nothing to fit: the minimum-norm solution is 0 */
    sf_tensor_fill(&res, 0.0f);
    goto ok;
  }
  to_colmajor(wa, lda, a);
  memset(wb, 0, (size_t)ldb * (size_t)nrhs * sizeof(float));
  to_colmajor(wb, ldb, b);
  sf_threads_ensure();
  sgelsd_(&m, &n, &nrhs, wa, &lda, wb, &ldb, s, &rcond, &rank, &q, &lwork, &qi, &info);
  lwork = (blasint)lwork_of(q);
  if (!(work = alloc_floats(fn, lwork)) || !(iwork = alloc_ints(fn, qi > 1 ? qi : 1))) goto done;
  sgelsd_(&m, &n, &nrhs, wa, &lda, wb, &ldb, s, &rcond, &rank, work, &lwork, iwork, &info);
  if (info > 0) {
    sf_err("%s: the SVD did not converge (%d off-diagonal elements left)", fn, (int)info);
    goto done;
  }
  if (info < 0) {
    lapack_fail(fn, "sgelsd", info);
    goto done;
  }
  from_colmajor(&res, wb, ldb, n, nrhs);
ok:
  give(x, &res);
  rc = 0;
done:
  free(wa);
  free(wb);
  free(s);
  free(work);
  free(iwork);
  sf_tensor_release(&res);
  return rc;
}

/* ---- qr ---- */

int sf_qr(sf_tensor *q, sf_tensor *r, const sf_tensor *a) {
  const char *fn = "qr";
  if (check_matrix(fn, 1, a, 0) || check_finite(fn, 1, a)) return -1;
  const blasint m = (blasint)a->size[0], n = (blasint)a->size[1], k = (blasint)min2(m, n), lda = (blasint)max1(m);
  int64_t qsize[2] = {m, k}, rsize[2] = {k, n};
  sf_tensor tq = SF_TENSOR_EMPTY, tr = SF_TENSOR_EMPTY;
  float *wa = NULL, *tau = NULL, *work = NULL, wq = 0.0f, wq2 = 0.0f;
  blasint info = 0, lwork = -1;
  int rc = -1;
  if (!(wa = alloc_floats(fn, (int64_t)lda * n)) || !(tau = alloc_floats(fn, k)) || sf_tensor_new(&tq, 2, qsize) ||
      sf_tensor_zeros(&tr, 2, rsize))
    goto done;
  if (k == 0) goto ok;
  to_colmajor(wa, lda, a);
  sf_threads_ensure();
  sgeqrf_(&m, &n, wa, &lda, tau, &wq, &lwork, &info);
  sorgqr_(&m, &k, &k, wa, &lda, tau, &wq2, &lwork, &info);
  lwork = (blasint)lwork_of(wq > wq2 ? wq : wq2);
  if (!(work = alloc_floats(fn, lwork))) goto done;
  sgeqrf_(&m, &n, wa, &lda, tau, work, &lwork, &info);
  if (info != 0) {
    lapack_fail(fn, "sgeqrf", info);
    goto done;
  }
  /* R: the upper triangle of the first k rows, before sorgqr overwrites it */
  float *pr = sf_tensor_data(&tr);
  for (blasint i = 0; i < k; i++)
    for (blasint j = i; j < n; j++) pr[(int64_t)i * n + j] = wa[i + (int64_t)j * lda];
  sorgqr_(&m, &k, &k, wa, &lda, tau, work, &lwork, &info);
  if (info != 0) {
    lapack_fail(fn, "sorgqr", info);
    goto done;
  }
  from_colmajor(&tq, wa, lda, m, k);
ok:
  give(q, &tq);
  give(r, &tr);
  rc = 0;
done:
  free(wa);
  free(tau);
  free(work);
  sf_tensor_release(&tq);
  sf_tensor_release(&tr);
  return rc;
}

/* ---- svd ---- */

int sf_svd(sf_tensor *u, sf_tensor *s, sf_tensor *vt, const sf_tensor *a) {
  const char *fn = "svd";
  if (check_matrix(fn, 1, a, 0) || check_finite(fn, 1, a)) return -1;
  const blasint m = (blasint)a->size[0], n = (blasint)a->size[1], k = (blasint)min2(m, n);
  const blasint lda = (blasint)max1(m), ldu = (blasint)max1(m), ldvt = (blasint)max1(k);
  int64_t usize[2] = {m, k}, ssize[1] = {k}, vsize[2] = {k, n};
  sf_tensor tu = SF_TENSOR_EMPTY, ts = SF_TENSOR_EMPTY, tv = SF_TENSOR_EMPTY;
  float *wa = NULL, *wu = NULL, *wv = NULL, *work = NULL, q = 0.0f;
  blasint *iwork = NULL, info = 0, lwork = -1;
  int rc = -1;
  if (!(wa = alloc_floats(fn, (int64_t)lda * n)) || !(wu = alloc_floats(fn, (int64_t)ldu * k)) ||
      !(wv = alloc_floats(fn, (int64_t)ldvt * n)) || !(iwork = alloc_ints(fn, 8 * (int64_t)k)) ||
      sf_tensor_new(&tu, 2, usize) || sf_tensor_new(&ts, 1, ssize) || sf_tensor_new(&tv, 2, vsize))
    goto done;
  if (k == 0) goto ok;
  to_colmajor(wa, lda, a);
  sf_threads_ensure();
  sgesdd_("S", &m, &n, wa, &lda, sf_tensor_data(&ts), wu, &ldu, wv, &ldvt, &q, &lwork, iwork, &info, 1);
  lwork = (blasint)lwork_of(q);
  if (!(work = alloc_floats(fn, lwork))) goto done;
  sgesdd_("S", &m, &n, wa, &lda, sf_tensor_data(&ts), wu, &ldu, wv, &ldvt, work, &lwork, iwork, &info, 1);
  if (info > 0) {
    sf_err("%s: sgesdd did not converge (info %d)", fn, (int)info);
    goto done;
  }
  if (info < 0) {
    lapack_fail(fn, "sgesdd", info);
    goto done;
  }
  from_colmajor(&tu, wu, ldu, m, k);
  from_colmajor(&tv, wv, ldvt, k, n);
ok:
  give(u, &tu);
  give(s, &ts);
  give(vt, &tv);
  rc = 0;
done:
  free(wa);
  free(wu);
  free(wv);
  free(work);
  free(iwork);
  sf_tensor_release(&tu);
  sf_tensor_release(&ts);
  sf_tensor_release(&tv);
  return rc;
}

/* ---- eigh ---- */

/* Symmetric eigendecomposition; like NumPy and PyTorch only the lower triangle of a is
 * read (the upper one is assumed to mirror it). */
int sf_eigh(sf_tensor *w, sf_tensor *v, const sf_tensor *a) {
  const char *fn = "eigh";
  if (check_matrix(fn, 1, a, 1) || check_finite(fn, 1, a)) return -1;
  const blasint n = (blasint)a->size[0], lda = (blasint)max1(n);
  int64_t wsize[1] = {n};
  sf_tensor tw = SF_TENSOR_EMPTY, tv = SF_TENSOR_EMPTY;
  float *wa = NULL, *work = NULL, q = 0.0f;
  blasint *iwork = NULL, info = 0, lwork = -1, liwork = -1, qi = 0;
  int rc = -1;
  if (!(wa = alloc_floats(fn, (int64_t)lda * n)) || sf_tensor_new(&tw, 1, wsize) || sf_tensor_new(&tv, 2, a->size))
    goto done;
  if (n == 0) goto ok;
  to_colmajor(wa, lda, a);
  sf_threads_ensure();
  ssyevd_("V", "L", &n, wa, &lda, sf_tensor_data(&tw), &q, &lwork, &qi, &liwork, &info, 1, 1);
  lwork = (blasint)lwork_of(q);
  liwork = qi > 1 ? qi : 1;
  if (!(work = alloc_floats(fn, lwork)) || !(iwork = alloc_ints(fn, liwork))) goto done;
  ssyevd_("V", "L", &n, wa, &lda, sf_tensor_data(&tw), work, &lwork, iwork, &liwork, &info, 1, 1);
  if (info > 0) {
    sf_err("%s: ssyevd did not converge (info %d)", fn, (int)info);
    goto done;
  }
  if (info < 0) {
    lapack_fail(fn, "ssyevd", info);
    goto done;
  }
  from_colmajor(&tv, wa, lda, n, n); /* eigenvector j in column j */
ok:
  give(w, &tw);
  give(v, &tv);
  rc = 0;
done:
  free(wa);
  free(work);
  free(iwork);
  sf_tensor_release(&tw);
  sf_tensor_release(&tv);
  return rc;
}
