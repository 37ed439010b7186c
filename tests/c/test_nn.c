/* C-only test of the linear, conv2d and pooling kernels against naive loops (TAP). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "src/core/rng.h"
#include "src/core/tensor.h"
#include "src/nn/nn.h"

static int ntest = 0, nfail = 0;

static void ok(int cond, const char *what) {
  ntest++;
  if (!cond) nfail++;
  printf("%s %d - %s\n", cond ? "ok" : "not ok", ntest, what);
}

static float *randn(sf_rng *r, int64_t n) {
  float *p = malloc((size_t)(n > 0 ? n : 1) * sizeof(float));
  for (int64_t i = 0; i < n; i++) p[i] = (float)sf_rng_normal(r);
  return p;
}

/* max |a - b| / max(1, max |b|) */
static double reldiff(const float *a, const double *b, int64_t n) {
  double d = 0.0, m = 1.0;
  for (int64_t i = 0; i < n; i++) {
    d = fmax(d, fabs((double)a[i] - b[i]));
    m = fmax(m, fabs(b[i]));
  }
  return d / m;
}

/* Naive conv: out[N,K,OH,OW], and the gradients for upstream g (scatter form), all in
 * double. */
static void naive_conv(double *out, double *dx, double *dw, double *db, const float *x, const float *w,
                       const float *b, const float *g, const sf_conv2d_shape *s) {
  for (int64_t n = 0; n < s->N; n++)
    for (int64_t k = 0; k < s->K; k++)
      for (int64_t oh = 0; oh < s->OH; oh++)
        for (int64_t ow = 0; ow < s->OW; ow++) {
          const int64_t o = ((n * s->K + k) * s->OH + oh) * s->OW + ow;
          double acc = b ? (double)b[k] : 0.0;
          db[k] += (double)g[o];
          for (int64_t c = 0; c < s->C; c++)
            for (int64_t r = 0; r < s->R; r++)
              for (int64_t q = 0; q < s->S; q++) {
                const int64_t ih = oh * s->stride_h - s->pad_h + r, iw = ow * s->stride_w - s->pad_w + q;
                if (ih < 0 || ih >= s->H || iw < 0 || iw >= s->W) continue;
                const int64_t xi = ((n * s->C + c) * s->H + ih) * s->W + iw, wi = ((k * s->C + c) * s->R + r) * s->S + q;
                acc += (double)x[xi] * (double)w[wi];
                dx[xi] += (double)g[o] * (double)w[wi];
                dw[wi] += (double)g[o] * (double)x[xi];
              }
          out[o] = acc;
        }
}

static void check_conv(sf_rng *rng, sf_conv2d_shape s, const char *name) {
  char what[256];
  if (sf_conv2d_shape_init(&s)) {
    ok(0, sf_errmsg());
    return;
  }
  const int64_t nx = s.N * s.C * s.H * s.W, nw = s.K * s.C * s.R * s.S, no = s.N * s.K * s.OH * s.OW;
  float *x = randn(rng, nx), *w = randn(rng, nw), *b = randn(rng, s.K), *g = randn(rng, no);
  float *out = malloc((size_t)no * sizeof(float)), *dx = malloc((size_t)nx * sizeof(float));
  float *dw = malloc((size_t)nw * sizeof(float)), *db = malloc((size_t)s.K * sizeof(float));
  double *rout = calloc((size_t)no, sizeof(double)), *rdx = calloc((size_t)nx, sizeof(double));
  double *rdw = calloc((size_t)nw, sizeof(double)), *rdb = calloc((size_t)s.K, sizeof(double));
  naive_conv(rout, rdx, rdw, rdb, x, w, b, g, &s);
  ok(sf_conv2d_reserve(&s) == 0, "reserve");
  sf_conv2d_forward(out, x, w, b, &s);
  snprintf(what, sizeof what, "%s: forward matches the naive loop", name);
  ok(reldiff(out, rout, no) < 1e-5, what);
  for (int64_t i = 0; i < nx; i++) dx[i] = 99.0f; /* overwritten, not accumulated */
  sf_conv2d_backward_input(dx, g, w, &s);
  snprintf(what, sizeof what, "%s: backward input matches", name);
  ok(reldiff(dx, rdx, nx) < 1e-5, what);
  /* accumulate with scale 0.5 on top of 1: expect 1 + 0.5 * gradient */
  for (int64_t i = 0; i < nw; i++) dw[i] = 1.0f, rdw[i] = 1.0 + 0.5 * rdw[i];
  for (int64_t i = 0; i < s.K; i++) db[i] = 1.0f, rdb[i] = 1.0 + 0.5 * rdb[i];
  sf_conv2d_backward_weight(dw, db, g, x, &s, 0.5f);
  snprintf(what, sizeof what, "%s: backward weight accumulates scale * gradient", name);
  ok(reldiff(dw, rdw, nw) < 1e-5, what);
  snprintf(what, sizeof what, "%s: backward bias accumulates scale * gradient", name);
  ok(reldiff(db, rdb, s.K) < 1e-5, what);
  free(x), free(w), free(b), free(g), free(out), free(dx), free(dw), free(db);
  free(rout), free(rdx), free(rdw), free(rdb);
}

static void test_conv(sf_rng *rng) {
  /* N, C, H, W, K, R, S, OH, OW, stride_h, stride_w, pad_h, pad_w, groups */
  check_conv(rng, (sf_conv2d_shape){2, 3, 7, 5, 4, 3, 3, 0, 0, 1, 1, 1, 1, 1}, "3x3 pad 1");
  check_conv(rng, (sf_conv2d_shape){3, 2, 9, 6, 5, 3, 2, 0, 0, 2, 1, 1, 0, 1}, "3x2 stride {2,1} pad {1,0}");
  check_conv(rng, (sf_conv2d_shape){2, 4, 8, 8, 3, 5, 5, 0, 0, 3, 3, 2, 2, 1}, "5x5 stride 3 pad 2");
  check_conv(rng, (sf_conv2d_shape){3, 6, 4, 5, 7, 1, 1, 0, 0, 1, 1, 0, 0, 1}, "1x1 direct sgemm path");
  check_conv(rng, (sf_conv2d_shape){2, 3, 5, 5, 2, 1, 1, 0, 0, 2, 2, 0, 0, 1}, "1x1 stride 2");
  check_conv(rng, (sf_conv2d_shape){1, 2, 3, 3, 2, 3, 3, 0, 0, 1, 1, 0, 0, 1}, "kernel = input");

  /* a batch split in several chunks (at least 8 when there are images enough, of even
   * sizes), the last one partial */
  sf_conv2d_shape s = {17, 16, 18, 18, 8, 3, 3, 0, 0, 1, 1, 1, 1, 1};
  ok(sf_conv2d_shape_init(&s) == 0, "chunk shape");
  int64_t per = sf_conv2d_chunk_images(&s);
  ok(per == 3 && s.N % per != 0, "several images per chunk, last partial");
  check_conv(rng, s, "chunked batch");
  /* one image per chunk (the direct-output path) */
  sf_conv2d_shape big = {3, 32, 32, 32, 4, 3, 3, 0, 0, 1, 1, 1, 1, 1};
  ok(sf_conv2d_shape_init(&big) == 0 && sf_conv2d_chunk_images(&big) == 1, "large images: one per chunk");
  check_conv(rng, big, "one image per chunk");

  /* geometry errors */
  sf_conv2d_shape e = {1, 3, 2, 2, 4, 3, 3, 0, 0, 1, 1, 0, 0, 1};
  ok(sf_conv2d_shape_init(&e) == -1 && strstr(sf_errmsg(), "kernel 3x3 is larger than the padded input 2x2"),
     "kernel larger than the input");
  e = (sf_conv2d_shape){1, 4, 8, 8, 4, 3, 3, 0, 0, 1, 1, 0, 0, 2};
  ok(sf_conv2d_shape_init(&e) == -1 && strstr(sf_errmsg(), "groups = 2 is not supported"), "groups rejected");
  e = (sf_conv2d_shape){1, 4, 8, 8, 4, 3, 3, 0, 0, 0, 1, 0, 0, 1};
  ok(sf_conv2d_shape_init(&e) == -1 && strstr(sf_errmsg(), "stride {0,1} must be positive"), "stride 0 rejected");
}

static void test_counters(sf_rng *rng) {
  sf_conv2d_shape s = {2, 3, 6, 6, 4, 3, 3, 0, 0, 1, 1, 1, 1, 1};
  sf_conv2d_shape_init(&s);
  float *x = randn(rng, 2 * 3 * 36), *g = randn(rng, 2 * 4 * 36), *db = calloc(4, sizeof(float));
  sf_nn_counters_reset();
  sf_conv2d_backward_weight(NULL, NULL, g, x, &s, 1.0f);
  sf_conv2d_backward_input(NULL, g, x, &s);
  sf_linear_backward_weight(NULL, NULL, g, x, 4, 3, 2, 1.0f);
  sf_linear_backward_input(NULL, g, x, 4, 3, 2);
  ok(sf_nn_counter(SF_K_CONV_BWD_WEIGHT) == 0 && sf_nn_counter(SF_K_CONV_BWD_INPUT) == 0 &&
         sf_nn_counter(SF_K_LINEAR_BWD_WEIGHT) == 0 && sf_nn_counter(SF_K_LINEAR_BWD_INPUT) == 0,
     "NULL outputs: no work, no count");
  sf_conv2d_backward_weight(NULL, db, g, x, &s, 1.0f);
  ok(sf_nn_counter(SF_K_CONV_BWD_WEIGHT) == 1, "bias-only call counted");
  ok(strcmp(sf_nn_counter_name(SF_K_CONV_FWD), "conv_fwd") == 0, "counter names");
  free(x), free(g), free(db);
}

static void test_linear(sf_rng *rng) {
  const int64_t N = 7, C = 5, K = 3;
  float *x = randn(rng, N * C), *w = randn(rng, K * C), *b = randn(rng, K), *g = randn(rng, N * K);
  float out[21], dx[35], dw[15], db[3];
  double rout[21], rdx[35] = {0}, rdw[15], rdb[3] = {0};
  for (int64_t n = 0; n < N; n++)
    for (int64_t k = 0; k < K; k++) {
      double a = b[k];
      for (int64_t c = 0; c < C; c++) a += (double)x[n * C + c] * (double)w[k * C + c];
      rout[n * K + k] = a;
      rdb[k] += 2.0 * (double)g[n * K + k];
      for (int64_t c = 0; c < C; c++) rdx[n * C + c] += (double)g[n * K + k] * (double)w[k * C + c];
    }
  for (int64_t k = 0; k < K; k++)
    for (int64_t c = 0; c < C; c++) {
      double a = 0.0;
      for (int64_t n = 0; n < N; n++) a += (double)g[n * K + k] * (double)x[n * C + c];
      rdw[k * C + c] = 2.0 * a;
    }
  sf_linear_forward(out, x, w, b, N, C, K);
  ok(reldiff(out, rout, N * K) < 1e-5, "linear forward");
  sf_linear_backward_input(dx, g, w, N, C, K);
  ok(reldiff(dx, rdx, N * C) < 1e-5, "linear backward input");
  memset(dw, 0, sizeof dw);
  memset(db, 0, sizeof db);
  sf_linear_backward_weight(dw, db, g, x, N, C, K, 2.0f);
  ok(reldiff(dw, rdw, K * C) < 1e-5 && reldiff(db, rdb, K) < 1e-5, "linear backward weight with scale 2");
  free(x), free(w), free(b), free(g);
}

static void test_pool(void) {
  /* 1x1x4x4 of 0..15: 2x2 max pool picks the bottom-right of each block */
  float x[16], out[4], ix[4], dx[16], g[4] = {1, 2, 3, 4};
  for (int i = 0; i < 16; i++) x[i] = (float)i;
  sf_pool2d_shape s = {1, 1, 4, 4, 2, 2, 0, 0, 2, 2, 0, 0};
  ok(sf_pool2d_shape_init(&s, "maxpool2d") == 0 && s.OH == 2 && s.OW == 2, "pool shape");
  sf_maxpool2d_forward(out, ix, x, &s);
  ok(out[0] == 5 && out[1] == 7 && out[2] == 13 && out[3] == 15 && ix[0] == 5 && ix[3] == 15, "maxpool forward");
  sf_maxpool2d_backward(dx, g, ix, &s);
  ok(dx[5] == 1 && dx[7] == 2 && dx[13] == 3 && dx[15] == 4 && dx[0] == 0, "maxpool backward");
  sf_avgpool2d_forward(out, x, &s, 1);
  ok(out[0] == 2.5f && out[3] == 12.5f, "avgpool forward");
  sf_global_avgpool_forward(out, x, 1, 1, 16);
  ok(out[0] == 7.5f, "global average");
  sf_pool2d_shape e = {1, 1, 4, 4, 2, 2, 0, 0, 1, 1, 2, 2};
  ok(sf_pool2d_shape_init(&e, "avgpool2d") == -1 && strstr(sf_errmsg(), "avgpool2d: padding {2,2}"),
     "pool padding above half the window rejected");
}

int main(void) {
  sf_rng rng;
  sf_rng_seed(&rng, 7);
  test_conv(&rng);
  test_counters(&rng);
  test_linear(&rng);
  test_pool();
  sf_scratch_release();
  ok(sf_storage_live_bytes() == 0, "no storage left");
  printf("1..%d\n", ntest);
  return nfail ? 1 : 0;
}
