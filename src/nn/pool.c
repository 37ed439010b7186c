/* Pooling kernels (NCHW): 2-D max and average pooling and global average pooling, each
 * with its backward. */
#include <math.h>
#include <string.h>

#include "nn.h"

int sf_pool2d_shape_init(sf_pool2d_shape *s, const char *name) {
  char b1[SF_SHAPE_BUF];
  const int64_t in[4] = {s->N, s->C, s->H, s->W};
  sf_shape_str(b1, sizeof b1, 4, in);
  if (s->N < 0 || s->C < 1 || s->H < 1 || s->W < 1)
    return sf_err("%s: input has shape %s, expected positive channels, height and width", name, b1);
  if (s->KH < 1 || s->KW < 1)
    return sf_err("%s: kernel size {%lld,%lld} must be positive", name, (long long)s->KH, (long long)s->KW);
  if (s->stride_h < 1 || s->stride_w < 1)
    return sf_err("%s: stride {%lld,%lld} must be positive", name, (long long)s->stride_h, (long long)s->stride_w);
  if (s->pad_h < 0 || s->pad_w < 0 || 2 * s->pad_h > s->KH || 2 * s->pad_w > s->KW)
    return sf_err("%s: padding {%lld,%lld} must be between 0 and half the kernel size {%lld,%lld}", name,
                  (long long)s->pad_h, (long long)s->pad_w, (long long)s->KH, (long long)s->KW);
  const int64_t hp = s->H + 2 * s->pad_h, wp = s->W + 2 * s->pad_w;
  if (hp < s->KH || wp < s->KW)
    return sf_err("%s: kernel %lldx%lld is larger than the padded input %lldx%lld (input %s)", name,
                  (long long)s->KH, (long long)s->KW, (long long)hp, (long long)wp, b1);
  s->OH = (hp - s->KH) / s->stride_h + 1;
  s->OW = (wp - s->KW) / s->stride_w + 1;
  return 0;
}

/* The window of output (oh, ow) clipped to the input: rows [*h0,*h1), columns [*w0,*w1). */
static inline void window(const sf_pool2d_shape *s, int64_t oh, int64_t ow, int64_t *h0, int64_t *h1, int64_t *w0,
                          int64_t *w1) {
  int64_t hs = oh * s->stride_h - s->pad_h, ws = ow * s->stride_w - s->pad_w;
  int64_t he = hs + s->KH, we = ws + s->KW;
  *h0 = hs < 0 ? 0 : hs;
  *w0 = ws < 0 ? 0 : ws;
  *h1 = he > s->H ? s->H : he;
  *w1 = we > s->W ? s->W : we;
}

/* PyTorch's divisor: with padding counted, the window clipped to the padded input. */
static inline int64_t avg_divisor(const sf_pool2d_shape *s, int64_t oh, int64_t ow, int count_include_pad) {
  int64_t hs = oh * s->stride_h - s->pad_h, ws = ow * s->stride_w - s->pad_w;
  if (count_include_pad) {
    int64_t he = hs + s->KH, we = ws + s->KW;
    if (he > s->H + s->pad_h) he = s->H + s->pad_h;
    if (we > s->W + s->pad_w) we = s->W + s->pad_w;
    return (he - hs) * (we - ws);
  }
  int64_t h0, h1, w0, w1;
  window(s, oh, ow, &h0, &h1, &w0, &w1);
  return (h1 - h0) * (w1 - w0);
}

void sf_maxpool2d_forward(float *out, float *indices, const float *inp, const sf_pool2d_shape *s) {
  sf_nn_count(SF_K_POOL_FWD);
  const int64_t planes = s->N * s->C, HW = s->H * s->W, OP = s->OH * s->OW;
  for (int64_t pl = 0; pl < planes; pl++) {
    const float *x = inp + pl * HW;
    float *o = out + pl * OP;
    float *ix = indices ? indices + pl * OP : NULL;
    for (int64_t oh = 0; oh < s->OH; oh++) {
      for (int64_t ow = 0; ow < s->OW; ow++) {
        int64_t h0, h1, w0, w1;
        window(s, oh, ow, &h0, &h1, &w0, &w1);
        /* padding <= half the window guarantees h0 < h1 and w0 < w1 */
        int64_t bi = h0 * s->W + w0;
        float best = x[bi];
        for (int64_t ih = h0; ih < h1; ih++) {
          for (int64_t iw = w0; iw < w1; iw++) {
            const float v = x[ih * s->W + iw];
            /* strictly greater keeps the first maximum; a NaN replaces a number once */
            if (v > best || (isnan(v) && !isnan(best))) {
              best = v;
              bi = ih * s->W + iw;
            }
          }
        }
        o[oh * s->OW + ow] = best;
        if (ix) ix[oh * s->OW + ow] = (float)bi;
      }
    }
  }
}

void sf_maxpool2d_backward(float *dinp, const float *dout, const float *indices, const sf_pool2d_shape *s) {
  if (!dinp) return;
  sf_nn_count(SF_K_POOL_BWD);
  const int64_t planes = s->N * s->C, HW = s->H * s->W, OP = s->OH * s->OW;
  memset(dinp, 0, (size_t)(planes * HW) * sizeof(float));
  for (int64_t pl = 0; pl < planes; pl++) {
    float *d = dinp + pl * HW;
    const float *g = dout + pl * OP, *ix = indices + pl * OP;
    for (int64_t i = 0; i < OP; i++) {
      const int64_t j = (int64_t)ix[i];
      SF_ASSERT(j >= 0 && j < HW); /* the binding validates the index tensor */
      d[j] += g[i];
    }
  }
}

void sf_avgpool2d_forward(float *out, const float *inp, const sf_pool2d_shape *s, int count_include_pad) {
  sf_nn_count(SF_K_POOL_FWD);
  const int64_t planes = s->N * s->C, HW = s->H * s->W, OP = s->OH * s->OW;
  for (int64_t pl = 0; pl < planes; pl++) {
    const float *x = inp + pl * HW;
    float *o = out + pl * OP;
    for (int64_t oh = 0; oh < s->OH; oh++) {
      for (int64_t ow = 0; ow < s->OW; ow++) {
        int64_t h0, h1, w0, w1;
        window(s, oh, ow, &h0, &h1, &w0, &w1);
        float sum = 0.0f;
        for (int64_t ih = h0; ih < h1; ih++)
          for (int64_t iw = w0; iw < w1; iw++) sum += x[ih * s->W + iw];
        o[oh * s->OW + ow] = sum / (float)avg_divisor(s, oh, ow, count_include_pad);
      }
    }
  }
}

void sf_avgpool2d_backward(float *dinp, const float *dout, const sf_pool2d_shape *s, int count_include_pad) {
  if (!dinp) return;
  sf_nn_count(SF_K_POOL_BWD);
  const int64_t planes = s->N * s->C, HW = s->H * s->W, OP = s->OH * s->OW;
  memset(dinp, 0, (size_t)(planes * HW) * sizeof(float));
  for (int64_t pl = 0; pl < planes; pl++) {
    float *d = dinp + pl * HW;
    const float *g = dout + pl * OP;
    for (int64_t oh = 0; oh < s->OH; oh++) {
      for (int64_t ow = 0; ow < s->OW; ow++) {
        int64_t h0, h1, w0, w1;
        window(s, oh, ow, &h0, &h1, &w0, &w1);
        const float v = g[oh * s->OW + ow] / (float)avg_divisor(s, oh, ow, count_include_pad);
        for (int64_t ih = h0; ih < h1; ih++)
          for (int64_t iw = w0; iw < w1; iw++) d[ih * s->W + iw] += v;
      }
    }
  }
}

void sf_global_avgpool_forward(float *out, const float *inp, int64_t N, int64_t C, int64_t HW) {
  sf_nn_count(SF_K_POOL_FWD);
  for (int64_t pl = 0; pl < N * C; pl++) {
    const float *x = inp + pl * HW;
    /* 8 float lanes (vectorised) folded into double */
    float lane[8] = {0};
    int64_t i = 0;
    for (; i + 8 <= HW; i += 8)
      for (int j = 0; j < 8; j++) lane[j] += x[i + j];
    double sum = 0.0;
    for (; i < HW; i++) sum += (double)x[i];
    for (int j = 0; j < 8; j++) sum += (double)lane[j];
    out[pl] = HW > 0 ? (float)(sum / (double)HW) : 0.0f;
  }
}

void sf_global_avgpool_backward(float *dinp, const float *dout, int64_t N, int64_t C, int64_t HW) {
  if (!dinp) return;
  sf_nn_count(SF_K_POOL_BWD);
  for (int64_t pl = 0; pl < N * C; pl++) {
    const float v = dout[pl] / (float)HW;
    float *d = dinp + pl * HW;
    for (int64_t i = 0; i < HW; i++) d[i] = v;
  }
}
