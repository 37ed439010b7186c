/*
 * surgft tensor core: float32 tensors as strided views over refcounted storage.
 *
 * A tour, for a new reader:
 *
 *   sf_tensor t = SF_TENSOR_EMPTY;            // safe empty state: no storage
 *   int64_t shape[2] = {3, 4};
 *   if (sf_tensor_zeros(&t, 2, shape)) {       // non-zero return = error
 *     fprintf(stderr, "%s\n", sf_errmsg());    // message names the function and shapes
 *   }
 *   sf_tensor col = SF_TENSOR_EMPTY;
 *   sf_tensor_select(&col, &t, 1, 2);          // a view: shares t's storage
 *   sf_tensor_release(&col);
 *   sf_tensor_release(&t);                     // storage freed with its last view
 *
 * Conventions (Lua's own source and llm.c are the models):
 *   - outputs come first; an output is an sf_tensor in the empty state (or one that
 *     the function may release and refill); on error it is left empty;
 *   - dimensions and indices are 0-based here; the Lua binding converts once;
 *   - every function that can fail returns 0 on success and -1 on failure, with the
 *     message in sf_errmsg() (thread-local): "name: argument #k has shape [..], expected ..";
 *   - shapes are checked exactly: there is no implicit broadcasting; use expand;
 *   - a function validates everything before it allocates anything.
 */
#ifndef SF_TENSOR_H
#define SF_TENSOR_H

#include <stddef.h>
#include <stdint.h>

#define SF_MAX_DIMS 8

typedef struct sf_storage {
  float *data;      /* numel floats, 64-byte aligned */
  int64_t numel;
  int refcount;     /* views holding this storage; touched only by the owning thread */
} sf_storage;

typedef struct sf_tensor {
  sf_storage *storage;          /* NULL: the empty state */
  int64_t offset;               /* first element, in floats from storage->data */
  int ndim;                     /* 0 .. SF_MAX_DIMS; 0 = a scalar with one element */
  int64_t size[SF_MAX_DIMS];
  int64_t stride[SF_MAX_DIMS];  /* in elements; 0 marks an expanded dimension */
} sf_tensor;

#define SF_TENSOR_EMPTY {NULL, 0, 0, {0}, {0}}

/* ---- errors (errors.c) ---- */
int sf_err(const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 1, 2)))
#endif
    ;
const char *sf_errmsg(void);
/* "[3,5]" into buf; returns buf */
char *sf_shape_str(char *buf, size_t n, int ndim, const int64_t *size);
#define SF_SHAPE_BUF 128
/* shorthand for messages: sf_tshape(t, buf) */
char *sf_tshape(const sf_tensor *t, char *buf);

/* An internal invariant: aborts with file:line; never used for user errors. */
#define SF_ASSERT(c) ((c) ? (void)0 : sf_assert_fail(#c, __FILE__, __LINE__))
void sf_assert_fail(const char *what, const char *file, int line);

/* ---- storage and lifetime (tensor.c) ---- */
sf_storage *sf_storage_new(int64_t numel); /* NULL + sf_err on failure; contents undefined */
void sf_storage_retain(sf_storage *s);
void sf_storage_release(sf_storage *s);
int64_t sf_storage_live_bytes(void);       /* bytes held by live storages, all threads */
/* Big storages (1 MB and up) are kept, once released, in a cache of mappings for reuse. */
int64_t sf_storage_cached_bytes(void);     /* bytes held by that cache */
void sf_storage_trim(void);                /* unmaps every cached block */

/* Allocate a fresh contiguous tensor (uninitialised data). t is released first. */
int sf_tensor_new(sf_tensor *t, int ndim, const int64_t *size);
int sf_tensor_new_like(sf_tensor *t, const sf_tensor *src);
/* Release t's storage reference and put it in the empty state. Idempotent. */
void sf_tensor_release(sf_tensor *t);
/* dst becomes a view of src (same storage, sizes, strides, offset). */
void sf_tensor_share(sf_tensor *dst, const sf_tensor *src);

/* ---- queries ---- */
int64_t sf_tensor_numel(const sf_tensor *t);
int sf_tensor_is_contiguous(const sf_tensor *t);
static inline float *sf_tensor_data(const sf_tensor *t) { return t->storage->data + t->offset; }
int sf_tensor_same_shape(const sf_tensor *a, const sf_tensor *b);
/* Linear element index (0-based, row-major) -> pointer, for the slow paths. */
float *sf_tensor_ptr_linear(const sf_tensor *t, int64_t i);

/* ---- constructors ---- */
int sf_tensor_zeros(sf_tensor *t, int ndim, const int64_t *size);
int sf_tensor_full(sf_tensor *t, int ndim, const int64_t *size, float value);
int sf_tensor_arange(sf_tensor *t, double start, double stop, double step);
int sf_tensor_linspace(sf_tensor *t, double start, double stop, int64_t n);
int sf_tensor_eye(sf_tensor *t, int64_t n, int64_t m);

/* ---- views (no data copied; dst shares src's storage) ---- */
int sf_tensor_reshape(sf_tensor *dst, const sf_tensor *src, int ndim, const int64_t *size); /* one size may be -1; copies only when src cannot be viewed */
int sf_tensor_view(sf_tensor *dst, const sf_tensor *src, int ndim, const int64_t *size);    /* like reshape, but errors instead of copying */
int sf_tensor_transpose(sf_tensor *dst, const sf_tensor *src, int d0, int d1);
int sf_tensor_permute(sf_tensor *dst, const sf_tensor *src, const int *perm);
int sf_tensor_narrow(sf_tensor *dst, const sf_tensor *src, int dim, int64_t start, int64_t len);
int sf_tensor_select(sf_tensor *dst, const sf_tensor *src, int dim, int64_t index);
int sf_tensor_squeeze(sf_tensor *dst, const sf_tensor *src, int dim); /* dim < 0: all size-1 dims */
int sf_tensor_unsqueeze(sf_tensor *dst, const sf_tensor *src, int dim);
int sf_tensor_expand(sf_tensor *dst, const sf_tensor *src, int ndim, const int64_t *size);

/* ---- copies ---- */
int sf_tensor_contiguous(sf_tensor *dst, const sf_tensor *src); /* a view when already contiguous */
int sf_tensor_clone(sf_tensor *dst, const sf_tensor *src);      /* always a fresh storage */
int sf_tensor_copy(sf_tensor *dst, const sf_tensor *src);       /* into dst's elements; same numel */
int sf_tensor_fill(sf_tensor *t, float value);

/* ---- elementwise (math.c) ----
 * out may alias a (and b) exactly: that is the in-place form. When out is empty it is
 * allocated with a's shape. */
typedef enum {
  SF_ADD, SF_SUB, SF_MUL, SF_DIV, SF_POW, SF_MAXIMUM, SF_MINIMUM,
  SF_EQ, SF_NE, SF_LT, SF_LE, SF_GT, SF_GE
} sf_binop;
typedef enum {
  SF_NEG, SF_ABS, SF_EXP, SF_LOG, SF_SQRT, SF_TANH, SF_SIGMOID, SF_RELU, SF_SIGN,
  SF_SQUARE, SF_RECIPROCAL
} sf_unop;
const char *sf_binop_name(sf_binop op);
const char *sf_unop_name(sf_unop op);
int sf_binary(sf_tensor *out, const sf_tensor *a, const sf_tensor *b, sf_binop op);
int sf_binary_scalar(sf_tensor *out, const sf_tensor *a, float s, sf_binop op, int scalar_first);
int sf_unary(sf_tensor *out, const sf_tensor *a, sf_unop op);
int sf_clamp(sf_tensor *out, const sf_tensor *a, float lo, float hi);
int sf_where(sf_tensor *out, const sf_tensor *cond, const sf_tensor *a, const sf_tensor *b);
/* *res = 1 when a and b have the same shape and equal elements (NaN equals nothing), else 0 */
int sf_equal(int *res, const sf_tensor *a, const sf_tensor *b);

/* ---- reductions (reduce.c) ----
 * Whole-tensor reductions return a double through *res. Along a dimension, out gets the
 * source shape with that dimension removed (keepdim = 0) or of size 1 (keepdim = 1). */
typedef enum { SF_SUM, SF_MEAN, SF_PROD, SF_MAX, SF_MIN, SF_ARGMAX, SF_ARGMIN, SF_NORM } sf_reduce_op;
int sf_reduce_all(double *res, const sf_tensor *a, sf_reduce_op op, double p);
int sf_reduce_dim(sf_tensor *out, const sf_tensor *a, int dim, int keepdim, sf_reduce_op op, double p);
/* ddof: 1 = sample (unbiased) variance, 0 = population */
int sf_var_all(double *res, const sf_tensor *a, int ddof);
int sf_var_dim(sf_tensor *out, const sf_tensor *a, int dim, int keepdim, int ddof);
int sf_softmax(sf_tensor *out, const sf_tensor *a, int dim, int log);
/* The gradient through y = softmax(x) along the last dimension, times scale:
 * out = scale * y * (grad - sum(grad * y, -1)), a fresh tensor of grad's shape. */
int sf_softmax_backward(sf_tensor *out, const sf_tensor *grad, const sf_tensor *y, float scale);
/* max (is_min = 0) or min along dim: values and 0-based indices (as floats) in one pass;
 * ties give the first index, a NaN in a slice wins (its value and its index). */
int sf_max_dim(sf_tensor *values, sf_tensor *indices, const sf_tensor *a, int dim, int keepdim, int is_min);
/* standard deviation: the square root of sf_var_* */
int sf_std_all(double *res, const sf_tensor *a, int ddof);
int sf_std_dim(sf_tensor *out, const sf_tensor *a, int dim, int keepdim, int ddof);
/* same shape required; close when |a - b| <= atol + rtol * |b| elementwise (NaN never close,
 * equal infinities close) */
int sf_allclose(int *res, const sf_tensor *a, const sf_tensor *b, double rtol, double atol);
/* max |a - b| over all elements (0 for empty tensors; NaN when any difference is NaN) */
int sf_max_abs_diff(double *res, const sf_tensor *a, const sf_tensor *b);

/* ---- BLAS (blas.c) ---- */
/* out = a @ b for 2-D [m,k]x[k,n] or batched 3-D [B,m,k]x[B,k,n]; transposed views are
 * passed to sgemm as transposes, without a copy. */
int sf_matmul(sf_tensor *out, const sf_tensor *a, const sf_tensor *b);
int sf_outer(sf_tensor *out, const sf_tensor *a, const sf_tensor *b);
void sf_set_threads(int n);
int sf_threads(void);
const char *sf_blas_config(void);
/* The default thread count (env SURGFT_THREADS, else the online cores), applied once.
 * Every BLAS/LAPACK entry point applies it lazily, printing a warning to stderr for a
 * bad SURGFT_THREADS; call sf_threads_init() first to get that message as an error
 * (-1, sf_errmsg()) instead. Either way the fallback (the core count) is in force. */
int sf_threads_init(void);
void sf_threads_ensure(void);

/* ---- LAPACK (linalg.c); double precision is not needed: float32 throughout ---- */
int sf_solve(sf_tensor *x, const sf_tensor *a, const sf_tensor *b);   /* a x = b */
int sf_lstsq(sf_tensor *x, const sf_tensor *a, const sf_tensor *b);   /* min ||a x - b|| */
int sf_qr(sf_tensor *q, sf_tensor *r, const sf_tensor *a);           /* reduced */
int sf_svd(sf_tensor *u, sf_tensor *s, sf_tensor *vt, const sf_tensor *a); /* reduced */
int sf_eigh(sf_tensor *w, sf_tensor *v, const sf_tensor *a);         /* ascending */
int sf_inverse(sf_tensor *out, const sf_tensor *a);

#endif
