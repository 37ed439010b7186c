/*
 * Vectorisable float math shared by the elementwise and nn kernels: exp and erf as
 * branch-free inline functions that GCC turns into SIMD code inside plain loops (libm's
 * expf/erff are opaque calls, one element at a time, and dominated softmax, GELU and the
 * losses). Include from .c files only.
 */
#ifndef SF_VMATH_H
#define SF_VMATH_H

#include <math.h>
#include <stdint.h>
#include <string.h>

/*
 * exp that the compiler can vectorise (libm's expf is an opaque call, one element at a
 * time, and dominated the elementwise chains): exp(x) = 2^k exp(r) with k = round(x/ln2)
 * and |r| <= ln2/2, exp(r) by its Taylor series to r^7 (truncation < 6e-9 relative), and
 * 2^k applied as two exponent-field scalings so that subnormal results and k = 128 stay
 * representable. Measured within 0.94 ulp of double exp for every float in [-104, 89]
 * (tests/c/test_math.c checks a sample); exp(NaN) = NaN, overflow gives inf, underflow 0.
 * No branches: clamps are selects.
 */
#if defined(__FMA__)
#define MADD_(a, b, c) fmaf(a, b, c) /* one instruction here; ISO C mode does not contract */
#else
/* without FMA (an SSE2-only build): the float product is exact in double and the sum is
 * rounded once there, then to float, which is as good as an FMA for these polynomials
 * (two roundings per step in float left exp at 1.15 ulp and erf at 1.23); libm's fmaf
 * would be a slow software call */
#define MADD_(a, b, c) ((float)((double)(a) * (double)(b) + (double)(c)))
#endif
static inline float bits2f_(uint32_t i) {
  float f;
  memcpy(&f, &i, sizeof f);
  return f;
}
static inline float sf_expf_(float x) {
  const float shift = 12582912.0f;                     /* 1.5 * 2^23: adding it rounds to an integer */
  float xc = x < -104.0f ? -104.0f : (x > 89.0f ? 89.0f : x); /* beyond these, 0 and inf; NaN passes */
  float kf = MADD_(xc, 1.44269504f, shift);
  int32_t kbits;
  memcpy(&kbits, &kf, sizeof kbits);
  int32_t k = kbits - 0x4B400000;                      /* the integer in kf's low mantissa bits */
  kf -= shift;
  float r = MADD_(kf, -0.693145751953125f, xc);        /* ln2's high part: kf * it is exact */
  r = MADD_(kf, -1.42860682030941723e-6f, r);          /* ln2's low part */
  float p = 1.0f / 5040.0f;
  p = MADD_(p, r, 1.0f / 720.0f);
  p = MADD_(p, r, 1.0f / 120.0f);
  p = MADD_(p, r, 1.0f / 24.0f);
  p = MADD_(p, r, 1.0f / 6.0f);
  p = MADD_(p, r, 0.5f);
  p = MADD_(p, r, 1.0f);
  p = MADD_(p, r, 1.0f);
  int32_t k1 = k / 2, k2 = k - k1;                    /* each in [-75, 64]: normal exponents */
  /* unsigned shifts: for NaN input k is garbage (the result is NaN anyway), and a signed
   * shift of a negative value would be undefined */
  return p * bits2f_((uint32_t)(k1 + 127) << 23) * bits2f_((uint32_t)(k2 + 127) << 23);
}

/*
 * erf with float accuracy (tests/c/test_math.c compares it with libm's erff over every
 * float in [-5, 5]): for |x| < 1, x + x (P(x^2) - 1) with P a degree-6 Chebyshev fit of erf(x)/x
 * in x^2 (|error| < 1.3e-9); for |x| >= 1, 1 - exp(-x^2) R(|x| - 2.475) with R a degree-12
 * Chebyshev fit of erfc(x) exp(x^2) on [1, 3.95] (|error| < 1.5e-9). Beyond 3.95, erfc(x)
 * is below half an ulp of 1, so the clamped argument gives +-1 exactly. Both pieces are
 * computed and one selected, so the loop stays branch-free; NaN gives NaN, +-inf gives
 * +-1. (Fits made with mpmath.chebyfit.)
 */
static inline float sf_erff_(float x) {
  const float a = fabsf(x);
  const float t = x * x;
  float p = 7.87587506269e-5f;
  p = MADD_(p, t, -0.000801686428717f);
  p = MADD_(p, t, 0.00518908742343f);
  p = MADD_(p, t, -0.0268542120106f);
  p = MADD_(p, t, 0.112835947152f);
  p = MADD_(p, t, -0.376126266667f);
  p = MADD_(p, t, 0.12837916585f); /* 2/sqrt(pi) - 1: the 1 is added by the last fma */
  const float small = MADD_(x, p, x);   /* x + x (P - 1): rounded once, near x's own ulp */
  const float ac = a < 1.0f ? 1.0f : (a > 3.95f ? 3.95f : a); /* NaN passes */
  const float u = ac - 2.475f;
  float q = 1.10208509906e-7f;
  q = MADD_(q, u, -4.54050831802e-7f);
  q = MADD_(q, u, 1.0530696772e-6f);
  q = MADD_(q, u, -4.02505487973e-6f);
  q = MADD_(q, u, 1.70900563511e-5f);
  q = MADD_(q, u, -6.27944782808e-5f);
  q = MADD_(q, u, 0.000221510667055f);
  q = MADD_(q, u, -0.00076561906281f);
  q = MADD_(q, u, 0.0025607730507f);
  q = MADD_(q, u, -0.00825303789725f);
  q = MADD_(q, u, 0.0255474799893f);
  q = MADD_(q, u, -0.0756093963945f);
  q = MADD_(q, u, 0.212680759974f);
  const float big = copysignf(1.0f - sf_expf_(-ac * ac) * q, x);
  return a < 1.0f ? small : big;
}

#endif
