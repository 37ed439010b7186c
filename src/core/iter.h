/*
 * Internal: row-major iteration over up to three tensors of one shape, with adjacent
 * dimensions coalesced so that contiguous tensors become one flat loop (the fast path)
 * and every other layout walks a counter over the outer dimensions (the one strided
 * fallback), and the split of both over the thread pool. Not part of the public API.
 *
 *   sf_iter it; const sf_tensor *ts[2] = {out, a};
 *   sf_iter_init(&it, 2, ts);
 *   SF_ITER_EACH(it, { *x0 = *x1 * 2.0f; });   // x0, x1, x2: float * to the elements
 *
 * Splitting (elementwise work only, so the bits never depend on the split):
 *   sf_parallel_flat(n, fn, ctx);              // fn(ctx, lo, hi) over [0, n) in parts
 *   SF_ITER_RANGE(it, lo, hi, BODY);           // outer rows [lo, hi) of sf_iter_rows(&it)
 *   sf_iter_parts(&it)                         // parts for a split over those rows
 */
#ifndef SF_ITER_H
#define SF_ITER_H

#include "parallel.h"
#include "tensor.h"

typedef struct sf_iter {
  int n;                          /* operands, 1..3 */
  int ndim;                       /* after coalescing; >= 1 */
  int64_t numel;
  int64_t size[SF_MAX_DIMS];
  int64_t stride[3][SF_MAX_DIMS];
  float *base[3];
} sf_iter;

void sf_iter_init(sf_iter *it, int n, const sf_tensor *const *ts);

/* Elements per part at least: below this a pass costs less than waking the pool. */
#define SF_EW_GRAIN 65536

/* Outer rows: the loop count over everything but the innermost coalesced dimension. */
static inline int64_t sf_iter_rows(const sf_iter *it) {
  return it->numel ? it->numel / it->size[it->ndim - 1] : 0;
}

/* Parts for splitting the outer rows: each part gets at least SF_EW_GRAIN elements. */
static inline int sf_iter_parts(const sf_iter *it) {
  if (!it->numel) return 1;
  const int64_t in = it->size[it->ndim - 1];
  return sf_parallel_parts(it->numel / in, in >= SF_EW_GRAIN ? 1 : SF_EW_GRAIN / in);
}

/* BODY sees float *x0, *x1, *x2 (unused ones point at operand 0), for the elements of
 * outer rows [LO, HI); the counter starts at row LO (a row-major decomposition). */
#define SF_ITER_RANGE(it, LO, HI, BODY)                                                  \
  do {                                                                                   \
    const sf_iter *it_ = &(it);                                                          \
    if (it_->numel == 0) break;                                                          \
    const int nd_ = it_->ndim;                                                           \
    const int64_t in_ = it_->size[nd_ - 1];                                              \
    const int64_t s0_ = it_->stride[0][nd_ - 1], s1_ = it_->stride[1][nd_ - 1],          \
                  s2_ = it_->stride[2][nd_ - 1];                                         \
    int64_t ctr_[SF_MAX_DIMS] = {0};                                                     \
    float *b0_ = it_->base[0], *b1_ = it_->base[1], *b2_ = it_->base[2];                 \
    const int64_t lo_ = (LO), hi_ = (HI);                                                \
    for (int64_t r_ = lo_, d_ = nd_ - 2; d_ >= 0 && r_ > 0; d_--) {                      \
      ctr_[d_] = r_ % it_->size[d_];                                                     \
      r_ /= it_->size[d_];                                                               \
      b0_ += ctr_[d_] * it_->stride[0][d_];                                              \
      b1_ += ctr_[d_] * it_->stride[1][d_];                                              \
      b2_ += ctr_[d_] * it_->stride[2][d_];                                              \
    }                                                                                    \
    for (int64_t o_ = lo_; o_ < hi_; o_++) {                                             \
      if (s0_ == 1 && s1_ == 1 && s2_ == 1) {                                            \
        for (int64_t i_ = 0; i_ < in_; i_++) {                                           \
          float *x0 = b0_ + i_, *x1 = b1_ + i_, *x2 = b2_ + i_;                          \
          (void)x0; (void)x1; (void)x2;                                                  \
          BODY                                                                           \
        }                                                                                \
      } else {                                                                           \
        for (int64_t i_ = 0; i_ < in_; i_++) {                                           \
          float *x0 = b0_ + i_ * s0_, *x1 = b1_ + i_ * s1_, *x2 = b2_ + i_ * s2_;        \
          (void)x0; (void)x1; (void)x2;                                                  \
          BODY                                                                           \
        }                                                                                \
      }                                                                                  \
      for (int d_ = nd_ - 2; d_ >= 0; d_--) {                                            \
        ctr_[d_]++;                                                                      \
        b0_ += it_->stride[0][d_];                                                       \
        b1_ += it_->stride[1][d_];                                                       \
        b2_ += it_->stride[2][d_];                                                       \
        if (ctr_[d_] < it_->size[d_]) break;                                             \
        b0_ -= it_->stride[0][d_] * it_->size[d_];                                       \
        b1_ -= it_->stride[1][d_] * it_->size[d_];                                       \
        b2_ -= it_->stride[2][d_] * it_->size[d_];                                       \
        ctr_[d_] = 0;                                                                    \
      }                                                                                  \
    }                                                                                    \
  } while (0)

/* Every element, serially. */
#define SF_ITER_EACH(it, BODY) SF_ITER_RANGE(it, 0, sf_iter_rows(&(it)), BODY)

/*
 * A flat elementwise loop over [0, n) split over the pool. Part boundaries fall on
 * multiples of 16 elements: the kernels' loops vectorise a multiple of 16 and finish the
 * tail in scalar code, so every element then takes the same path (and alignment) as in
 * one serial pass, and the bits cannot depend on the thread count.
 */
typedef void (*sf_flat_fn)(void *ctx, int64_t lo, int64_t hi);
typedef struct {
  sf_flat_fn fn;
  void *ctx;
  int64_t n;
} sf_flat_job_;

static inline void sf_flat_part_(void *job, int64_t lo, int64_t hi, int part) {
  (void)part;
  const sf_flat_job_ *j = job;
  const int64_t b = lo * 16, e = hi * 16 < j->n ? hi * 16 : j->n;
  if (e > b) j->fn(j->ctx, b, e);
}

static inline void sf_parallel_flat(int64_t n, sf_flat_fn fn, void *ctx) {
  const int64_t blocks = (n + 15) / 16;
  const int parts = sf_parallel_parts(blocks, SF_EW_GRAIN / 16);
  if (parts <= 1) {
    if (n > 0) fn(ctx, 0, n);
    return;
  }
  sf_flat_job_ j = {fn, ctx, n};
  sf_parallel_for(parts, blocks, sf_flat_part_, &j);
}

#endif
