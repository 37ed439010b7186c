/*
 * Internal: row-major iteration over up to three tensors of one shape, with adjacent
 * dimensions coalesced so that contiguous tensors become one flat loop (the fast path)
 * and every other layout walks a counter over the outer dimensions (the one strided
 * fallback). Not part of the public API.
 *
 *   sf_iter it; const sf_tensor *ts[2] = {out, a};
 *   sf_iter_init(&it, 2, ts);
 *   SF_ITER_EACH(it, { *x0 = *x1 * 2.0f; });   // x0, x1, x2: float * to the elements
 */
#ifndef SF_ITER_H
#define SF_ITER_H

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

/* BODY sees float *x0, *x1, *x2 (unused ones point at operand 0). */
#define SF_ITER_EACH(it, BODY)                                                           \
  do {                                                                                   \
    sf_iter *it_ = &(it);                                                                \
    if (it_->numel == 0) break;                                                          \
    const int nd_ = it_->ndim;                                                           \
    const int64_t in_ = it_->size[nd_ - 1];                                              \
    const int64_t s0_ = it_->stride[0][nd_ - 1], s1_ = it_->stride[1][nd_ - 1],          \
                  s2_ = it_->stride[2][nd_ - 1];                                         \
    int64_t ctr_[SF_MAX_DIMS] = {0};                                                     \
    float *b0_ = it_->base[0], *b1_ = it_->base[1], *b2_ = it_->base[2];                 \
    for (int64_t o_ = 0, no_ = it_->numel / in_; o_ < no_; o_++) {                       \
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

#endif
