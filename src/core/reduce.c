/* Reductions (sum, mean, prod, max/min and their indices, norms, variance), softmax,
 * and tensor comparisons (allclose, max_abs_diff). Accumulation is in double. */
#include <math.h>
#include <string.h>

#include "iter.h"
#include "parallel.h"
#include "tensor.h"
#include "vmath.h"

/* ---- accumulator kinds ----
 * Every reduction is one of these element updates on an rstate, followed by a finish
 * step (mean divides, norms take roots, ...). */
typedef enum {
  K_SUM, K_PROD, K_MAX, K_MIN, K_ABSSUM, K_SQSUM, K_ABSMAX, K_ABSMIN, K_NNZ, K_POWSUM, K_VAR
} kind;

typedef struct {
  double v;  /* sum / product / best value / running mean */
  double m;  /* K_VAR: sum of squared deviations (Welford) */
  int64_t i; /* K_MAX, K_MIN: index of the best (-1: none seen beats the start value);
                K_VAR: count */
} rstate;

static const char *op_name(sf_reduce_op op) {
  static const char *const names[] = {"sum", "mean", "prod", "max", "min", "argmax", "argmin", "norm"};
  return (unsigned)op < sizeof names / sizeof *names ? names[op] : "reduce";
}

static kind op_kind(sf_reduce_op op, double p) {
  switch (op) {
  case SF_SUM: case SF_MEAN: return K_SUM;
  case SF_PROD: return K_PROD;
  case SF_MAX: case SF_ARGMAX: return K_MAX;
  case SF_MIN: case SF_ARGMIN: return K_MIN;
  case SF_NORM:
    if (p == 2) return K_SQSUM;
    if (p == 1) return K_ABSSUM;
    if (p == 0) return K_NNZ;
    if (isinf(p)) return p > 0 ? K_ABSMAX : K_ABSMIN;
    return K_POWSUM;
  }
  return K_SUM;
}

static void state_init(rstate *s, kind k) {
  s->m = 0;
  s->i = k == K_VAR ? 0 : -1;
  switch (k) {
  case K_PROD: s->v = 1; break;
  case K_MAX: s->v = -INFINITY; break;
  case K_MIN: case K_ABSMIN: s->v = INFINITY; break;
  default: s->v = 0; break;
  }
}

/* The element updates, on rstate *s, double x, linear index li and exponent pw. A NaN
 * replaces a non-NaN best and then stays (PyTorch's max propagates NaN). Only strict
 * improvements move the index, so ties keep the first. */
#define UPD_SUM s->v += x;
#define UPD_PROD s->v *= x;
#define UPD_MAX                                           \
  if (x > s->v || (x != x && s->v == s->v)) {             \
    s->v = x;                                             \
    s->i = li;                                            \
  }
#define UPD_MIN                                           \
  if (x < s->v || (x != x && s->v == s->v)) {             \
    s->v = x;                                             \
    s->i = li;                                            \
  }
#define UPD_ABSSUM s->v += fabs(x);
#define UPD_SQSUM s->v += x * x;
#define UPD_ABSMAX                                        \
  {                                                       \
    const double ax = fabs(x);                            \
    if (ax > s->v || (ax != ax && s->v == s->v)) s->v = ax; \
  }
#define UPD_ABSMIN                                        \
  {                                                       \
    const double ax = fabs(x);                            \
    if (ax < s->v || (ax != ax && s->v == s->v)) s->v = ax; \
  }
#define UPD_NNZ s->v += (x != 0);
#define UPD_POWSUM s->v += pow(fabs(x), pw);
#define UPD_VAR                                           \
  {                                                       \
    s->i++;                                               \
    const double d_ = x - s->v;                           \
    s->v += d_ / (double)s->i;                            \
    s->m += d_ * (x - s->v);                              \
  }

/* One switch per call, the loop inside each case. */
#define DISPATCH(k, LOOP)                                 \
  switch (k) {                                            \
  case K_SUM: LOOP(UPD_SUM) break;                        \
  case K_PROD: LOOP(UPD_PROD) break;                      \
  case K_MAX: LOOP(UPD_MAX) break;                        \
  case K_MIN: LOOP(UPD_MIN) break;                        \
  case K_ABSSUM: LOOP(UPD_ABSSUM) break;                  \
  case K_SQSUM: LOOP(UPD_SQSUM) break;                    \
  case K_ABSMAX: LOOP(UPD_ABSMAX) break;                  \
  case K_ABSMIN: LOOP(UPD_ABSMIN) break;                  \
  case K_NNZ: LOOP(UPD_NNZ) break;                        \
  case K_POWSUM: LOOP(UPD_POWSUM) break;                  \
  case K_VAR: LOOP(UPD_VAR) break;                        \
  }

/* n elements p[0], p[st], ... into one state; li counts from lin0 */
static void run_slice(rstate *s, kind k, double pw, const float *p, int64_t n, int64_t st, int64_t lin0) {
#define SLICE_LOOP(UPD)                                                 \
  if (st == 1) {                                                        \
    for (int64_t j = 0; j < n; j++) {                                   \
      const double x = (double)p[j];                                    \
      const int64_t li = lin0 + j;                                      \
      (void)li;                                                         \
      UPD                                                               \
    }                                                                   \
  } else {                                                              \
    for (int64_t j = 0; j < n; j++) {                                   \
      const double x = (double)p[j * st];                               \
      const int64_t li = lin0 + j;                                      \
      (void)li;                                                         \
      UPD                                                               \
    }                                                                   \
  }
  (void)pw;
  DISPATCH(k, SLICE_LOOP)
#undef SLICE_LOOP
}

/* Column layout: rows j = 0..n-1 of a contiguous [n, K] block, columns k = 0..kb-1
 * into states S[k]; walking rows keeps the reads sequential. */
static void run_cols(rstate *S, kind k, double pw, const float *p, int64_t n, int64_t K, int64_t kb) {
#define COLS_LOOP(UPD)                                                  \
  for (int64_t j = 0; j < n; j++) {                                     \
    const float *row = p + j * K;                                       \
    for (int64_t c = 0; c < kb; c++) {                                  \
      rstate *s = &S[c];                                                \
      const double x = (double)row[c];                                  \
      const int64_t li = j;                                             \
      (void)li;                                                         \
      UPD                                                               \
    }                                                                   \
  }
  (void)pw;
  DISPATCH(k, COLS_LOOP)
#undef COLS_LOOP
}

/* The value of a finished state over n elements. */
static double finish(const rstate *s, sf_reduce_op op, double p, int64_t n) {
  switch (op) {
  case SF_MEAN: return n ? s->v / (double)n : (double)NAN;
  case SF_ARGMAX: case SF_ARGMIN: return s->i < 0 ? 0.0 : (double)s->i; /* all equal to +-inf */
  case SF_NORM:
    if (p == 2) return sqrt(s->v);
    if (p == 1 || p == 0 || isinf(p)) return s->v;
    return pow(s->v, 1.0 / p);
  default: return s->v;
  }
}

/* variance from a K_VAR state; n - ddof <= 0 gives NaN, as PyTorch does */
static double finish_var(const rstate *s, int ddof, int root) {
  double denom = (double)s->i - (double)ddof;
  double v = denom > 0 ? s->m / denom : (double)NAN;
  return root ? sqrt(v) : v;
}

/* ---- walking the outer positions of a reduction ----
 * All index combinations of a's dimensions other than `skip`, in row-major order, with
 * the matching element offset in a (and in a second tensor o of the same shape). */
typedef struct {
  int nd;
  int64_t size[SF_MAX_DIMS], sa[SF_MAX_DIMS], so[SF_MAX_DIMS], ctr[SF_MAX_DIMS];
  int64_t offa, offo, count;
} outer;

static void outer_init(outer *w, const sf_tensor *a, const sf_tensor *o, int skip) {
  memset(w, 0, sizeof *w);
  w->count = 1;
  for (int d = 0; d < a->ndim; d++) {
    if (d == skip) continue;
    w->size[w->nd] = a->size[d];
    w->sa[w->nd] = a->stride[d];
    w->so[w->nd] = o ? o->stride[d] : 0;
    w->count *= a->size[d];
    w->nd++;
  }
}

static void outer_next(outer *w) {
  for (int d = w->nd - 1; d >= 0; d--) {
    w->offa += w->sa[d];
    w->offo += w->so[d];
    if (++w->ctr[d] < w->size[d]) return;
    w->offa -= w->sa[d] * w->size[d];
    w->offo -= w->so[d] * w->size[d];
    w->ctr[d] = 0;
  }
}

/* ---- validation ---- */

static int check_tensor(const char *fn, const sf_tensor *a) {
  if (!a->storage) return sf_err("%s: argument #1 is an empty (released) tensor", fn);
  return 0;
}

static int check_dim(const char *fn, const sf_tensor *a, int dim) {
  char buf[SF_SHAPE_BUF];
  if (dim < 0 || dim >= a->ndim)
    return sf_err("%s: dimension %d out of range for a %d-D tensor of shape %s", fn, dim + 1, a->ndim,
                  sf_tshape(a, buf));
  return 0;
}

/* max / min / argmax / argmin / inf-norms have no identity: nothing to return for no elements */
static int needs_elements(sf_reduce_op op, double p) {
  return op == SF_MAX || op == SF_MIN || op == SF_ARGMAX || op == SF_ARGMIN || (op == SF_NORM && isinf(p));
}

static int check_p(const char *fn, sf_reduce_op op, double p) {
  if (op == SF_NORM && isnan(p)) return sf_err("%s: the norm order p is nan", fn);
  return 0;
}

/* ---- whole-tensor reductions ---- */

static void reduce_all_state(rstate *s, const sf_tensor *a, kind k, double pw) {
  int64_t n = sf_tensor_numel(a);
  state_init(s, k);
  if (n == 0) return;
  if (sf_tensor_is_contiguous(a)) {
    run_slice(s, k, pw, sf_tensor_data(a), n, 1, 0);
    return;
  }
  /* strided: the last dimension as rows, fed in row-major order into one state */
  int last = a->ndim - 1;
  int64_t len = a->size[last];
  outer w;
  outer_init(&w, a, NULL, last);
  const float *base = sf_tensor_data(a);
  for (int64_t r = 0; r < w.count; r++, outer_next(&w))
    run_slice(s, k, pw, base + w.offa, len, a->stride[last], r * len);
}

int sf_reduce_all(double *res, const sf_tensor *a, sf_reduce_op op, double p) {
  const char *fn = op_name(op);
  char buf[SF_SHAPE_BUF];
  if (check_tensor(fn, a) || check_p(fn, op, p)) return -1;
  int64_t n = sf_tensor_numel(a);
  if (n == 0 && needs_elements(op, p))
    return sf_err("%s: cannot reduce an empty tensor of shape %s", fn, sf_tshape(a, buf));
  rstate s;
  reduce_all_state(&s, a, op_kind(op, p), p);
  *res = finish(&s, op, p, n);
  return 0;
}

static int var_all(double *res, const sf_tensor *a, int ddof, int root) {
  const char *fn = root ? "std" : "var";
  if (check_tensor(fn, a)) return -1;
  if (ddof < 0) return sf_err("%s: ddof is %d, expected >= 0", fn, ddof);
  rstate s;
  reduce_all_state(&s, a, K_VAR, 0);
  *res = finish_var(&s, ddof, root);
  return 0;
}

int sf_var_all(double *res, const sf_tensor *a, int ddof) { return var_all(res, a, ddof, 0); }
int sf_std_all(double *res, const sf_tensor *a, int ddof) { return var_all(res, a, ddof, 1); }

/* ---- reductions along one dimension ---- */

/* What to write per output element: the finished value, a variance, or (for sf_max_dim)
 * both the value and the index. */
typedef struct {
  sf_reduce_op op;
  double p;
  int var_ddof, var_root; /* var_ddof >= 0: a variance */
} finisher;

static void emit(const finisher *f, const rstate *s, int64_t n, float *val, float *idx) {
  if (f->var_ddof >= 0) {
    *val = (float)finish_var(s, f->var_ddof, f->var_root);
    return;
  }
  if (idx) {
    *val = (float)s->v;
    *idx = (float)(s->i < 0 ? 0 : s->i);
    return;
  }
  *val = (float)finish(s, f->op, f->p, n);
}

#define COL_BLOCK 256 /* columns accumulated at once in the column layout */

/* out (and idx, when given) are fresh contiguous tensors of the reduced shape. */
static void reduce_dim_into(float *out, float *idx, const sf_tensor *a, int dim, kind k, double pw,
                            const finisher *f) {
  int64_t n = a->size[dim];
  int64_t outer_n = 1, inner = 1;
  for (int d = 0; d < dim; d++) outer_n *= a->size[d];
  for (int d = dim + 1; d < a->ndim; d++) inner *= a->size[d];
  if (outer_n * inner == 0) return;
  const float *base = sf_tensor_data(a);
  if (sf_tensor_is_contiguous(a) && inner > 1) {
    /* reducing a middle dimension (dim 1 of [N,C] in Lua terms): blocks of columns */
    rstate S[COL_BLOCK];
    for (int64_t o = 0; o < outer_n; o++) {
      const float *blk = base + o * n * inner;
      for (int64_t c0 = 0; c0 < inner; c0 += COL_BLOCK) {
        int64_t kb = inner - c0 < COL_BLOCK ? inner - c0 : COL_BLOCK;
        for (int64_t c = 0; c < kb; c++) state_init(&S[c], k);
        run_cols(S, k, pw, blk + c0, n, inner, kb);
        for (int64_t c = 0; c < kb; c++) {
          int64_t at = o * inner + c0 + c;
          emit(f, &S[c], n, out + at, idx ? idx + at : NULL);
        }
      }
    }
    return;
  }
  if (sf_tensor_is_contiguous(a)) {
    /* reducing the last (non-trivial) dimension: one contiguous row per output */
    for (int64_t o = 0; o < outer_n; o++) {
      rstate s;
      state_init(&s, k);
      run_slice(&s, k, pw, base + o * n, n, 1, 0);
      emit(f, &s, n, out + o, idx ? idx + o : NULL);
    }
    return;
  }
  /* strided fallback: one strided slice per output position */
  outer w;
  outer_init(&w, a, NULL, dim);
  for (int64_t o = 0; o < w.count; o++, outer_next(&w)) {
    rstate s;
    state_init(&s, k);
    run_slice(&s, k, pw, base + w.offa, n, a->stride[dim], 0);
    emit(f, &s, n, out + o, idx ? idx + o : NULL);
  }
}

static void reduced_shape(const sf_tensor *a, int dim, int keepdim, int *nd, int64_t *size) {
  int m = 0;
  for (int d = 0; d < a->ndim; d++) {
    if (d == dim) {
      if (keepdim) size[m++] = 1;
    } else {
      size[m++] = a->size[d];
    }
  }
  *nd = m;
}

/* Validates, allocates out (and idx) and runs; outputs are replaced only on success. */
static int reduce_dim_impl(const char *fn, sf_tensor *out, sf_tensor *idx, const sf_tensor *a, int dim,
                           int keepdim, kind k, double pw, const finisher *f, int need_elems) {
  char buf[SF_SHAPE_BUF];
  if (check_tensor(fn, a) || check_dim(fn, a, dim)) return -1;
  if (need_elems && a->size[dim] == 0)
    return sf_err("%s: cannot reduce an empty tensor of shape %s along dimension %d", fn, sf_tshape(a, buf),
                  dim + 1);
  int nd;
  int64_t size[SF_MAX_DIMS];
  reduced_shape(a, dim, keepdim, &nd, size);
  sf_tensor tv = SF_TENSOR_EMPTY, ti = SF_TENSOR_EMPTY;
  if (sf_tensor_new(&tv, nd, size)) return -1;
  if (idx && sf_tensor_new(&ti, nd, size)) {
    sf_tensor_release(&tv);
    return -1;
  }
  reduce_dim_into(sf_tensor_data(&tv), idx ? sf_tensor_data(&ti) : NULL, a, dim, k, pw, f);
  sf_tensor_release(out);
  *out = tv;
  if (idx) {
    sf_tensor_release(idx);
    *idx = ti;
  }
  return 0;
}

int sf_reduce_dim(sf_tensor *out, const sf_tensor *a, int dim, int keepdim, sf_reduce_op op, double p) {
  const char *fn = op_name(op);
  if (check_p(fn, op, p)) return -1;
  finisher f = {op, p, -1, 0};
  return reduce_dim_impl(fn, out, NULL, a, dim, keepdim, op_kind(op, p), p, &f, needs_elements(op, p));
}

int sf_max_dim(sf_tensor *values, sf_tensor *indices, const sf_tensor *a, int dim, int keepdim, int is_min) {
  sf_reduce_op op = is_min ? SF_MIN : SF_MAX;
  finisher f = {op, 0, -1, 0};
  return reduce_dim_impl(op_name(op), values, indices, a, dim, keepdim, is_min ? K_MIN : K_MAX, 0, &f, 1);
}

static int var_dim(sf_tensor *out, const sf_tensor *a, int dim, int keepdim, int ddof, int root) {
  const char *fn = root ? "std" : "var";
  if (ddof < 0) return sf_err("%s: ddof is %d, expected >= 0", fn, ddof);
  finisher f = {SF_SUM, 0, ddof, root};
  return reduce_dim_impl(fn, out, NULL, a, dim, keepdim, K_VAR, 0, &f, 0);
}

int sf_var_dim(sf_tensor *out, const sf_tensor *a, int dim, int keepdim, int ddof) {
  return var_dim(out, a, dim, keepdim, ddof, 0);
}
int sf_std_dim(sf_tensor *out, const sf_tensor *a, int dim, int keepdim, int ddof) {
  return var_dim(out, a, dim, keepdim, ddof, 1);
}

/* ---- softmax ---- */

/* One slice: x[j * sx] -> y[j * sy]. The max is subtracted so exp never overflows; a NaN
 * anywhere in the slice makes the whole slice NaN. */
static void softmax_slice(float *y, int64_t sy, const float *x, int64_t sx, int64_t n, int take_log) {
  float mx = -INFINITY;
  for (int64_t j = 0; j < n; j++) {
    float v = x[j * sx];
    if (v > mx || v != v) mx = v;
    if (v != v) break;
  }
  double sum = 0;
  for (int64_t j = 0; j < n; j++) sum += (double)sf_expf_(x[j * sx] - mx);
  if (take_log) {
    const float ls = (float)log(sum); /* (x - max) - ls keeps precision for large logits */
    for (int64_t j = 0; j < n; j++) y[j * sy] = (x[j * sx] - mx) - ls;
  } else {
    float inv = (float)(1.0 / sum);
    for (int64_t j = 0; j < n; j++) y[j * sy] = sf_expf_(x[j * sx] - mx) * inv;
  }
}

/* A contiguous row: the same result as softmax_slice, in loops GCC vectorises: the max
 * in 16 lanes (NaN tracked apart), exp stored once into y and summed in 8 double lanes. */
static void softmax_row(float *y, const float *x, int64_t n, int take_log) {
  float lane[16];
  int nan = 0;
  for (int j = 0; j < 16; j++) lane[j] = -INFINITY;
  int64_t i = 0;
  for (; i + 16 <= n; i += 16)
    for (int j = 0; j < 16; j++) {
      const float v = x[i + j];
      lane[j] = v > lane[j] ? v : lane[j];
      nan |= v != v;
    }
  float mx = -INFINITY;
  for (int j = 0; j < 16; j++) mx = lane[j] > mx ? lane[j] : mx;
  for (; i < n; i++) {
    mx = x[i] > mx ? x[i] : mx;
    nan |= x[i] != x[i];
  }
  if (nan) mx = NAN;
  for (int64_t j = 0; j < n; j++) y[j] = sf_expf_(x[j] - mx);
  double acc[8] = {0};
  i = 0;
  for (; i + 8 <= n; i += 8)
    for (int j = 0; j < 8; j++) acc[j] += (double)y[i + j];
  double sum = 0;
  for (int j = 0; j < 8; j++) sum += acc[j];
  for (; i < n; i++) sum += (double)y[i];
  if (take_log) {
    const float ls = (float)log(sum);
    for (int64_t j = 0; j < n; j++) y[j] = (x[j] - mx) - ls;
  } else {
    const float inv = (float)(1.0 / sum);
    for (int64_t j = 0; j < n; j++) y[j] *= inv;
  }
}

typedef struct {
  float *y;
  const float *x;
  int64_t n;
  int take_log;
} softmax_ctx;

/* rows [lo, hi): rows are independent, so any split gives the same bits */
static void softmax_rows(void *ctx, int64_t lo, int64_t hi, int part) {
  (void)part;
  const softmax_ctx *c = ctx;
  for (int64_t o = lo; o < hi; o++) softmax_row(c->y + o * c->n, c->x + o * c->n, c->n, c->take_log);
}

int sf_softmax(sf_tensor *out, const sf_tensor *a, int dim, int take_log) {
  const char *fn = take_log ? "log_softmax" : "softmax";
  if (check_tensor(fn, a) || check_dim(fn, a, dim)) return -1;
  sf_tensor t = SF_TENSOR_EMPTY;
  if (sf_tensor_new_like(&t, a)) return -1;
  int64_t n = a->size[dim];
  if (sf_tensor_numel(a) > 0) {
    outer w;
    outer_init(&w, a, &t, dim);
    const float *x = sf_tensor_data(a);
    float *y = sf_tensor_data(&t);
    if (sf_tensor_is_contiguous(a) && dim == a->ndim - 1) {
      softmax_ctx c = {y, x, n, take_log};
      sf_parallel_for(sf_parallel_parts(w.count, n >= 16384 ? 1 : 16384 / n), w.count, softmax_rows, &c);
    } else {
      for (int64_t o = 0; o < w.count; o++, outer_next(&w))
        softmax_slice(y + w.offo, t.stride[dim], x + w.offa, a->stride[dim], n, take_log);
    }
  }
  sf_tensor_release(out);
  *out = t;
  return 0;
}

/* ---- softmax backward ----
 * y = softmax(x) along the last dimension and g = dL/dy: dL/dx = scale * y * (g - <g, y>)
 * per row. The arithmetic is that of the separate tensor ops it replaces, in their order
 * ((g * y):sum(-1) accumulated in double from the first element, rounded to float, then
 * (g - dot) * y, then * scale), so a model gets the same bits from either. Rows are
 * independent and split over the pool. */
typedef struct {
  float *dx;
  const float *g, *y;
  int64_t n;
  float scale;
} softmax_bwd_ctx;

static void softmax_bwd_rows(void *ctx, int64_t lo, int64_t hi, int part) {
  (void)part;
  const softmax_bwd_ctx *c = ctx;
  const int64_t n = c->n;
  const float scale = c->scale;
  for (int64_t r = lo; r < hi; r++) {
    const float *g = c->g + r * n, *y = c->y + r * n;
    float *dx = c->dx + r * n;
    double s = 0.0;
    for (int64_t j = 0; j < n; j++) s += (double)(g[j] * y[j]);
    const float dot = (float)s;
    for (int64_t j = 0; j < n; j++) dx[j] = ((g[j] - dot) * y[j]) * scale;
  }
}

int sf_softmax_backward(sf_tensor *out, const sf_tensor *grad, const sf_tensor *y, float scale) {
  const char *fn = "softmax_backward";
  char b1[SF_SHAPE_BUF], b2[SF_SHAPE_BUF];
  if (!grad->storage) return sf_err("%s: argument #1 (grad_out) is an empty (released) tensor", fn);
  if (!y->storage) return sf_err("%s: argument #2 (out) is an empty (released) tensor", fn);
  if (grad->ndim < 1) return sf_err("%s: argument #1 (grad_out) is 0-D, expected at least 1 dimension", fn);
  if (!sf_tensor_same_shape(grad, y))
    return sf_err("%s: argument #2 (out) has shape %s, expected %s like argument #1 (grad_out)", fn, sf_tshape(y, b1),
                  sf_tshape(grad, b2));
  /* strided operands (rare: the attention's are fresh) go through contiguous copies */
  sf_tensor gc = SF_TENSOR_EMPTY, yc = SF_TENSOR_EMPTY, t = SF_TENSOR_EMPTY;
  int rc = -1;
  if (sf_tensor_contiguous(&gc, grad) || sf_tensor_contiguous(&yc, y) || sf_tensor_new_like(&t, grad)) goto done;
  const int64_t n = grad->size[grad->ndim - 1], numel = sf_tensor_numel(grad);
  if (numel > 0) {
    const int64_t rows = numel / n;
    softmax_bwd_ctx c = {sf_tensor_data(&t), sf_tensor_data(&gc), sf_tensor_data(&yc), n, scale};
    sf_parallel_for(sf_parallel_parts(rows, n >= 16384 ? 1 : 16384 / n), rows, softmax_bwd_rows, &c);
  }
  sf_tensor_release(out);
  *out = t;
  t = (sf_tensor)SF_TENSOR_EMPTY;
  rc = 0;
done:
  sf_tensor_release(&gc);
  sf_tensor_release(&yc);
  sf_tensor_release(&t);
  return rc;
}

/* ---- comparisons ---- */

static int check_pair(const char *fn, const sf_tensor *a, const sf_tensor *b) {
  char b1[SF_SHAPE_BUF], b2[SF_SHAPE_BUF];
  if (!a->storage || !b->storage) return sf_err("%s: argument #%d is an empty (released) tensor", fn, a->storage ? 2 : 1);
  if (!sf_tensor_same_shape(a, b))
    return sf_err("%s: argument #2 has shape %s, expected %s like argument #1", fn, sf_tshape(b, b1), sf_tshape(a, b2));
  return 0;
}

int sf_allclose(int *res, const sf_tensor *a, const sf_tensor *b, double rtol, double atol) {
  if (check_pair("allclose", a, b)) return -1;
  if (!(rtol >= 0) || !(atol >= 0))
    return sf_err("allclose: tolerances must be >= 0 (got rtol %g, atol %g)", rtol, atol);
  sf_iter it;
  const sf_tensor *ts[2] = {a, b};
  sf_iter_init(&it, 2, ts);
  int close = 1;
  SF_ITER_EACH(it, {
    const double x = (double)*x0; /* no commas here: the body is a macro argument */
    const double y = (double)*x1;
    /* NaN fails the <=; unequal infinities are never close (inf <= inf would say so) */
    if (x != y && (isinf(x) || isinf(y) || !(fabs(x - y) <= atol + rtol * fabs(y)))) close = 0;
  });
  *res = close;
  return 0;
}

int sf_max_abs_diff(double *res, const sf_tensor *a, const sf_tensor *b) {
  if (check_pair("max_abs_diff", a, b)) return -1;
  sf_iter it;
  const sf_tensor *ts[2] = {a, b};
  sf_iter_init(&it, 2, ts);
  double m = 0;
  SF_ITER_EACH(it, {
    const double x = (double)*x0;
    const double y = (double)*x1;
    const double d = x == y ? 0.0 : fabs(x - y);
    if (d > m || (d != d && m == m)) m = d;
  });
  *res = m;
  return 0;
}
