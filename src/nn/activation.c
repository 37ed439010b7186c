/* Elementwise activations (ReLU, GELU, Tanh, Sigmoid) and dropout, forward/backward. */
#include <math.h>

#include "../core/iter.h"
#include "../core/parallel.h"
#include "../core/rng.h"
#include "../core/vmath.h"
#include "nn.h"

/* sqrt(2/pi) and 1/sqrt(2pi), 1/sqrt(2) for the two GELU forms */
#define SQRT_2_OVER_PI 0.7978845608028654
#define INV_SQRT_2PI 0.3989422804014327
#define INV_SQRT_2 0.7071067811865476
#define GELU_TANH_C 0.044715

/* ReLU is memory-bound: with several threads the elements are split over the pool
 * (elementwise, so the bits do not depend on the split); 64K-element parts at least. */
typedef struct {
  float *o;
  const float *a, *b;
} relu_ctx;

static void relu_fwd_part(void *ctx, int64_t lo, int64_t hi, int part) {
  (void)part;
  const relu_ctx *c = ctx;
  float *o = c->o; /* locals: a store through c->o could otherwise alias c's fields */
  const float *a = c->a;
  /* x < 0 rather than x > 0 so that a NaN propagates, as in PyTorch */
  for (int64_t i = lo; i < hi; i++) o[i] = a[i] < 0.0f ? 0.0f : a[i];
}

/* relu(x) > 0 exactly when x > 0, so the input and the output serve equally; the
 * gradient at 0 is 0 (PyTorch's choice) */
static void relu_bwd_part(void *ctx, int64_t lo, int64_t hi, int part) {
  (void)part;
  const relu_ctx *c = ctx;
  float *o = c->o;
  const float *dy = c->a, *s = c->b;
  for (int64_t i = lo; i < hi; i++) o[i] = s[i] > 0.0f ? dy[i] : 0.0f;
}

static void add_relu_part(void *ctx, int64_t lo, int64_t hi, int part) {
  (void)part;
  const relu_ctx *c = ctx;
  float *o = c->o;
  const float *a = c->a, *b = c->b;
  for (int64_t i = lo; i < hi; i++) {
    const float v = a[i] + b[i];
    o[i] = v < 0.0f ? 0.0f : v;
  }
}

void sf_add_relu_forward(float *out, const float *a, const float *b, int64_t n) {
  sf_nn_count(SF_K_ACT_FWD);
  relu_ctx c = {out, a, b};
  sf_parallel_for(sf_parallel_parts(n, 65536), n, add_relu_part, &c);
}

void sf_relu_forward(float *out, const float *inp, int64_t n) {
  sf_nn_count(SF_K_ACT_FWD);
  relu_ctx c = {out, inp, NULL};
  sf_parallel_for(sf_parallel_parts(n, 65536), n, relu_fwd_part, &c);
}

void sf_relu_backward(float *dinp, const float *dout, const float *inp_or_out, int64_t n) {
  sf_nn_count(SF_K_ACT_BWD);
  relu_ctx c = {dinp, dout, inp_or_out};
  sf_parallel_for(sf_parallel_parts(n, 65536), n, relu_bwd_part, &c);
}

/* GELU, tanh and sigmoid are split like ReLU, through sf_parallel_flat: its part
 * boundaries fall on multiples of 16 elements, so each element goes through the same
 * vectorised or scalar loop as in a serial pass. */
typedef struct {
  float *o;
  const float *a, *b;
  int approximate;
} act_ctx;

static void gelu_fwd_part(void *ctx, int64_t lo, int64_t hi) {
  const act_ctx *c = ctx;
  float *out = c->o;
  const float *inp = c->a;
  if (c->approximate) {
    for (int64_t i = lo; i < hi; i++) {
      const float x = inp[i];
      const float u = (float)SQRT_2_OVER_PI * (x + (float)GELU_TANH_C * x * x * x);
      out[i] = 0.5f * x * (1.0f + tanhf(u));
    }
  } else {
    for (int64_t i = lo; i < hi; i++) {
      const float x = inp[i];
      out[i] = 0.5f * x * (1.0f + sf_erff_(x * (float)INV_SQRT_2)); /* vectorised erf, ~1 ulp */
    }
  }
}

/* exact: d/dx x Phi(x) = Phi(x) + x phi(x); tanh form: differentiate 0.5 x (1 + tanh u) */
static void gelu_bwd_part(void *ctx, int64_t lo, int64_t hi) {
  const act_ctx *c = ctx;
  float *dinp = c->o;
  const float *dout = c->a, *inp = c->b;
  if (c->approximate) {
    for (int64_t i = lo; i < hi; i++) {
      const float x = inp[i];
      const float u = (float)SQRT_2_OVER_PI * (x + (float)GELU_TANH_C * x * x * x);
      const float t = tanhf(u);
      const float du = (float)SQRT_2_OVER_PI * (1.0f + 3.0f * (float)GELU_TANH_C * x * x);
      dinp[i] = dout[i] * (0.5f * (1.0f + t) + 0.5f * x * (1.0f - t * t) * du);
    }
  } else {
    for (int64_t i = lo; i < hi; i++) {
      const float x = inp[i];
      const float cdf = 0.5f * (1.0f + sf_erff_(x * (float)INV_SQRT_2));
      const float pdf = (float)INV_SQRT_2PI * sf_expf_(-0.5f * x * x);
      dinp[i] = dout[i] * (cdf + x * pdf);
    }
  }
}

static void tanh_fwd_part(void *ctx, int64_t lo, int64_t hi) {
  const act_ctx *c = ctx;
  float *out = c->o;
  const float *inp = c->a;
  for (int64_t i = lo; i < hi; i++) out[i] = tanhf(inp[i]);
}

static void tanh_bwd_part(void *ctx, int64_t lo, int64_t hi) {
  const act_ctx *c = ctx;
  float *dinp = c->o;
  const float *dout = c->a, *out = c->b;
  for (int64_t i = lo; i < hi; i++) dinp[i] = dout[i] * (1.0f - out[i] * out[i]);
}

static void sigmoid_fwd_part(void *ctx, int64_t lo, int64_t hi) {
  const act_ctx *c = ctx;
  float *out = c->o;
  const float *inp = c->a;
  /* exp(-|x|) never overflows */
  for (int64_t i = lo; i < hi; i++) {
    const float x = inp[i];
    const float e = sf_expf_(-fabsf(x)); /* in (0, 1]: selects instead of branches, so it vectorises */
    const float r = 1.0f / (1.0f + e);
    out[i] = x >= 0.0f ? r : e * r;
  }
}

static void sigmoid_bwd_part(void *ctx, int64_t lo, int64_t hi) {
  const act_ctx *c = ctx;
  float *dinp = c->o;
  const float *dout = c->a, *out = c->b;
  for (int64_t i = lo; i < hi; i++) dinp[i] = dout[i] * out[i] * (1.0f - out[i]);
}

void sf_gelu_forward(float *out, const float *inp, int64_t n, int approximate) {
  sf_nn_count(SF_K_ACT_FWD);
  act_ctx c = {out, inp, NULL, approximate};
  sf_parallel_flat(n, gelu_fwd_part, &c);
}

void sf_gelu_backward(float *dinp, const float *dout, const float *inp, int64_t n, int approximate) {
  sf_nn_count(SF_K_ACT_BWD);
  act_ctx c = {dinp, dout, inp, approximate};
  sf_parallel_flat(n, gelu_bwd_part, &c);
}

void sf_tanh_forward(float *out, const float *inp, int64_t n) {
  sf_nn_count(SF_K_ACT_FWD);
  act_ctx c = {out, inp, NULL, 0};
  sf_parallel_flat(n, tanh_fwd_part, &c);
}

void sf_tanh_backward(float *dinp, const float *dout, const float *out, int64_t n) {
  sf_nn_count(SF_K_ACT_BWD);
  act_ctx c = {dinp, dout, out, 0};
  sf_parallel_flat(n, tanh_bwd_part, &c);
}

void sf_sigmoid_forward(float *out, const float *inp, int64_t n) {
  sf_nn_count(SF_K_ACT_FWD);
  act_ctx c = {out, inp, NULL, 0};
  sf_parallel_flat(n, sigmoid_fwd_part, &c);
}

void sf_sigmoid_backward(float *dinp, const float *dout, const float *out, int64_t n) {
  sf_nn_count(SF_K_ACT_BWD);
  act_ctx c = {dinp, dout, out, 0};
  sf_parallel_flat(n, sigmoid_bwd_part, &c);
}

/* ---- dropout ---- */

void sf_dropout_forward(float *out, float *mask, const float *inp, int64_t n, float p, struct sf_rng *rng) {
  sf_nn_count(SF_K_ACT_FWD);
  const float keep_scale = p < 1.0f ? 1.0f / (1.0f - p) : 0.0f;
  for (int64_t i = 0; i < n; i++) {
    const float k = sf_rng_uniform(rng) < (double)p ? 0.0f : 1.0f;
    mask[i] = k;
    out[i] = inp[i] * k * keep_scale;
  }
}

void sf_dropout_backward(float *dinp, const float *dout, const float *mask, int64_t n, float p) {
  sf_nn_count(SF_K_ACT_BWD);
  const float keep_scale = p < 1.0f ? 1.0f / (1.0f - p) : 0.0f;
  for (int64_t i = 0; i < n; i++) dinp[i] = dout[i] * mask[i] * keep_scale;
}
