/* Normalisation kernels: BatchNorm (batch or given statistics), LayerNorm, GroupNorm. */
#include <math.h>
#include <stdlib.h>

#include "../core/parallel.h"
#include "nn.h"

/* Row sums use 32 float partial sums: the compiler vectorises them without reassociating,
 * as independent vectors (with 8 partial sums, one vector, every addition waited for the
 * previous one: a BatchNorm train forward + backward on 128 x 16 x 32 x 32 took 4.2 ms
 * against 1.7 now, one thread), and each
 * partial covers few enough terms to stay accurate; the tail of fewer than 32 goes 8 at a
 * time into the first 8 partials, then one by one in double (after fold); rows are
 * combined in double. */
#define RW 32

/* the 32 partials folded pairwise to 8 (vector adds), then summed in double: a chain of
 * 32 double additions cost more than the row itself on 8x8 planes */
static inline double fold(float acc[RW]) {
  for (int j = 0; j < 16; j++) acc[j] += acc[j + 16];
  for (int j = 0; j < 8; j++) acc[j] += acc[j + 8];
  double s = 0.0;
  for (int j = 0; j < 8; j++) s += (double)acc[j];
  return s;
}

/* The sums of nr rows of n values, n apart from x (nr a constant: 1, or 4 to interleave the
 * rows' dependency chains); every row by the same operations in the same order whatever
 * nr, so the same bits. centered: sum (x - m[r])^2 instead of sum x. */
static inline __attribute__((always_inline)) void rows_sum(double *s, const float *x, int64_t n, const int nr,
                                                           const int centered, const float *m) {
  float acc[4][RW] = {{0}};
  int64_t i = 0;
  for (; i + RW <= n; i += RW)
    for (int r = 0; r < nr; r++)
      for (int j = 0; j < RW; j++) {
        const float v = centered ? x[r * n + i + j] - m[r] : x[r * n + i + j];
        acc[r][j] += centered ? v * v : v;
      }
  const int64_t i8 = i;
  for (int r = 0; r < nr; r++) {
    for (i = i8; i + 8 <= n; i += 8)
      for (int j = 0; j < 8; j++) {
        const float v = centered ? x[r * n + i + j] - m[r] : x[r * n + i + j];
        acc[r][j] += centered ? v * v : v;
      }
    s[r] = fold(acc[r]);
    for (; i < n; i++) {
      const double d = centered ? (double)x[r * n + i] - (double)m[r] : (double)x[r * n + i];
      s[r] += centered ? d * d : d;
    }
  }
}

static double row_sum(const float *x, int64_t n) {
  double s;
  rows_sum(&s, x, n, 1, 0, NULL);
  return s;
}

/* sum (x - m)^2 */
static double row_sumsq_centered(const float *x, int64_t n, float m) {
  double s;
  rows_sum(&s, x, n, 1, 1, &m);
  return s;
}

/* sum dy * (x - m) */
static double row_dot_centered(const float *dy, const float *x, int64_t n, float m) {
  float acc[RW] = {0};
  int64_t i = 0;
  for (; i + RW <= n; i += RW)
    for (int j = 0; j < RW; j++) acc[j] += dy[i + j] * (x[i + j] - m);
  for (; i + 8 <= n; i += 8)
    for (int j = 0; j < 8; j++) acc[j] += dy[i + j] * (x[i + j] - m);
  double s = fold(acc);
  for (; i < n; i++) s += (double)dy[i] * ((double)x[i] - (double)m);
  return s;
}

/* y = a x + b over a row */
static void row_affine(float *y, const float *x, int64_t n, float a, float b) {
  for (int64_t i = 0; i < n; i++) y[i] = x[i] * a + b;
}

/* y = max(a x + b, 0) over a row (v < 0 rather than v > 0: a NaN stays NaN, as in ReLU) */
static void row_affine_relu(float *y, const float *x, int64_t n, float a, float b) {
  for (int64_t i = 0; i < n; i++) {
    const float v = x[i] * a + b;
    y[i] = v < 0.0f ? 0.0f : v;
  }
}

/* y = max(a x + b + r, 0): a BatchNorm, a residual sum and a ReLU in one pass (the same
 * operations in the same order as the three passes) */
static void row_affine_add_relu(float *y, const float *x, const float *r, int64_t n, float a, float b) {
  for (int64_t i = 0; i < n; i++) {
    const float v = (x[i] * a + b) + r[i];
    y[i] = v < 0.0f ? 0.0f : v;
  }
}

/* The per-channel affine map of a BatchNorm forward, y = a x + b, from the float
 * statistics it saves (mean, invstd): the fused backward recomputes it bit for bit to know
 * where the ReLU let the gradient through, instead of reading the ReLU's output. */
static void bn_coefs(const float *gamma, const float *beta, int64_t c, float mean, float invstd, float *a, float *b) {
  *a = (float)((gamma ? (double)gamma[c] : 1.0) * (double)invstd);
  *b = (beta ? beta[c] : 0.0f) - mean * *a;
}

/* the ReLU's gradient on the fly: dy where the forward's a x + b was positive, else 0 */
static inline float masked(float dy, float x, float a, float b) {
  const float v = x * a + b;
  return v > 0.0f ? dy : 0.0f;
}

static void row_affine2_masked(float *y, const float *dy, const float *x, int64_t n, float k, float a2, float b2,
                               float a, float b) {
  for (int64_t i = 0; i < n; i++) y[i] = k * masked(dy[i], x[i], a, b) + a2 * x[i] + b2;
}

/* y = k dy + a x + b over a row: every normalisation backward reduces to this form
 * once the per-row sums are known */
static void row_affine2(float *y, const float *dy, const float *x, int64_t n, float k, float a, float b) {
  for (int64_t i = 0; i < n; i++) y[i] = k * dy[i] + a * x[i] + b;
}

/* ---- BatchNorm ---- */

/* BatchNorm's channels are independent: the kernels split them over the thread pool, and
 * each channel is computed by one part in the serial order, so the bits do not depend on
 * the thread count. A part gets at least ~32K values. */
static int channel_parts(int64_t C, int64_t per_channel) {
  return sf_parallel_parts(C, per_channel >= 32768 ? 1 : 32768 / (per_channel > 0 ? per_channel : 1));
}

typedef struct {
  float *out, *save_mean, *save_invstd, *running_mean, *running_var;
  const float *inp, *gamma, *beta, *mean, *var, *dout;
  int relu_bwd; /* backward of the fused form (the mask is recomputed from inp, gamma, beta) */
  float *dinp, *dgamma, *dbeta;
  int64_t N, C, HW;
  float momentum, eps, scale;
  int batch_stats;
  int relu; /* forward: apply the ReLU in the same pass */
  const float *res; /* forward: add this [N, C, HW] before the ReLU (with relu), or NULL */
  const float *stats; /* forward: per-(image, channel) (mean, M2) [N, C, 2], or NULL */
} bn_ctx;

/* The row at offset o, shared by the channel loops and the image-major passes. Forward:
 * out = a inp + b (then the ReLU). Backward: its sums of dout and dout (inp - mean),
 * masked by the forward's ReLU (recomputed from ra, rb) when there was one; and its input
 * gradient k dout + a inp + b, masked the same way. */
static void bn_row_forward(const bn_ctx *q, int64_t o, float a, float b) {
  if (q->res)
    row_affine_add_relu(q->out + o, q->inp + o, q->res + o, q->HW, a, b);
  else if (q->relu)
    row_affine_relu(q->out + o, q->inp + o, q->HW, a, b);
  else
    row_affine(q->out + o, q->inp + o, q->HW, a, b);
}

/* A ReLU-masked row's sum of dy and of dy (x - mean), in one pass over it (as two passes
 * they took 4.2% of a CNN training step), each in the partials and order of row_sum and
 * row_dot_centered */
static void row_sums_masked(const float *dy, const float *x, int64_t n, float mean, float a, float b, double *s1,
                            double *s2) {
  float acc[RW] = {0}, acd[RW] = {0};
  int64_t i = 0;
  for (; i + RW <= n; i += RW)
    for (int j = 0; j < RW; j++) {
      const float g = masked(dy[i + j], x[i + j], a, b);
      acc[j] += g;
      acd[j] += g * (x[i + j] - mean);
    }
  for (; i + 8 <= n; i += 8)
    for (int j = 0; j < 8; j++) {
      const float g = masked(dy[i + j], x[i + j], a, b);
      acc[j] += g;
      acd[j] += g * (x[i + j] - mean);
    }
  double t1 = fold(acc), t2 = fold(acd);
  for (; i < n; i++) {
    const float g = masked(dy[i], x[i], a, b);
    t1 += (double)g;
    t2 += (double)g * ((double)x[i] - (double)mean);
  }
  *s1 = t1, *s2 = t2;
}

static void bn_row_sums(const bn_ctx *q, int64_t o, float mean, float ra, float rb, double *sdy, double *sdyx) {
  if (q->relu_bwd) {
    row_sums_masked(q->dout + o, q->inp + o, q->HW, mean, ra, rb, sdy, sdyx);
  } else {
    *sdy = row_sum(q->dout + o, q->HW);
    *sdyx = row_dot_centered(q->dout + o, q->inp + o, q->HW, mean);
  }
}

static void bn_row_backward(const bn_ctx *q, int64_t o, float k, float a, float b, float ra, float rb) {
  if (q->relu_bwd)
    row_affine2_masked(q->dinp + o, q->dout + o, q->inp + o, q->HW, k, a, b, ra, rb);
  else
    row_affine2(q->dinp + o, q->dout + o, q->inp + o, q->HW, k, a, b);
}

/* One row's statistics: its mean (float) and M2 = sum (x - mean)^2 around that float
 * mean. The second pass reads the row again while it is in L1 (a row is one image's
 * plane of one channel), so the batch statistics cost one pass over memory, not two,
 * and a convolution can compute them as it writes its output (sf_batchnorm_image_stats):
 * both give the same bits. */
static void row_stats(float *st, const float *x, int64_t n) {
  const float m = n > 0 ? (float)(row_sum(x, n) / (double)n) : 0.0f;
  st[0] = m;
  st[1] = (float)row_sumsq_centered(x, n, m);
}

/* C consecutive rows' statistics, 4 at a time (the same bits as row_stats on each) */
void sf_batchnorm_image_stats(float *stats, const float *x, int64_t C, int64_t HW) {
  int64_t c = 0;
  for (; c + 4 <= C; c += 4) {
    double s[4];
    float m[4];
    rows_sum(s, x + c * HW, HW, 4, 0, NULL);
    for (int r = 0; r < 4; r++) m[r] = HW > 0 ? (float)(s[r] / (double)HW) : 0.0f;
    rows_sum(s, x + c * HW, HW, 4, 1, m);
    for (int r = 0; r < 4; r++) stats[2 * (c + r)] = m[r], stats[2 * (c + r) + 1] = (float)s[r];
  }
  for (; c < C; c++) row_stats(stats + 2 * c, x + c * HW, HW);
}

/* A channel's batch mean and M2, merged row by row in image order from the rows' (mean,
 * M2) (Chan et al.'s pairwise update, in double): the same bits whether the rows'
 * statistics come from the convolution or from here. */
static void channel_stats(const bn_ctx *q, int64_t c, double *mean, double *m2) {
  const int64_t N = q->N, C = q->C, HW = q->HW;
  double cnt = 0.0, m = 0.0, s2 = 0.0;
  for (int64_t n = 0; n < N; n++) {
    float own[2];
    const float *st = q->stats ? q->stats + (n * C + c) * 2 : own;
    if (!q->stats) row_stats(own, q->inp + (n * C + c) * HW, HW);
    const double k = (double)HW, tot = cnt + k, d = (double)st[0] - m;
    m += d * (k / tot);
    s2 += (double)st[1] + d * d * (cnt * k / tot);
    cnt = tot;
  }
  *mean = m;
  *m2 = s2;
}

/* Channel c's batch statistics (merged from its rows), saved and folded into the running
 * ones; *a, *b: the affine map of its apply pass */
static void channel_finish(const bn_ctx *q, int64_t c, float *a, float *b) {
  const int64_t M = q->N * q->HW; /* values per channel */
  double mean, ss;
  channel_stats(q, c, &mean, &ss);
  const float mf = (float)mean;
  const double var = M > 0 ? ss / (double)M : 0.0;
  const double invstd = 1.0 / sqrt(var + (double)q->eps);
  if (q->save_mean) q->save_mean[c] = mf;
  if (q->save_invstd) q->save_invstd[c] = (float)invstd;
  if (q->running_mean && q->running_var) {
    /* PyTorch updates the running variance with the unbiased estimate */
    const double unbiased = M > 1 ? ss / (double)(M - 1) : var;
    const double mo = (double)q->momentum;
    q->running_mean[c] = (float)((1.0 - mo) * (double)q->running_mean[c] + mo * mean);
    q->running_var[c] = (float)((1.0 - mo) * (double)q->running_var[c] + mo * unbiased);
  }
  bn_coefs(q->gamma, q->beta, c, mf, (float)invstd, a, b);
}

static void bn_train_part(void *ctx, int64_t c0, int64_t c1, int part) {
  (void)part;
  const bn_ctx *q = ctx;
  const int64_t N = q->N, C = q->C, HW = q->HW;
  for (int64_t c = c0; c < c1; c++) {
    float a, b;
    channel_finish(q, c, &a, &b);
    for (int64_t n = 0; n < N; n++) bn_row_forward(q, (n * C + c) * HW, a, b);
  }
}

/* ---- BatchNorm, image by image ----
 * The channel-parallel loops above walk one channel across the images: rows of HW floats
 * a channel-plane apart, which the hardware prefetchers follow badly when the rows are
 * short (a 7x7 or 8x8 map: 200-256 bytes per row; measured ~17 against ~24 GB/s for
 * 32x32 rows). From 16 values per row on, the passes over the tensor run image by image
 * instead (contiguous, split over the images): the rows' statistics or sums into a table
 * [N, C, 2], then per channel the same merge in image order as above, then the apply pass
 * with per-channel coefficients. Every value is computed by the same row functions in the
 * same order, so the results are bit for bit those of the channel loops. */
enum { IMAGE_MAJOR_HW = 16 };

typedef struct {
  const bn_ctx *q;
  float *rowstat;      /* forward: [N, C, 2] rows' (mean, M2) */
  double *rowsum;      /* backward: [N, C, 2] rows' (sum dout, sum dout (x - mean)) */
  const float *coef;   /* [C, 5]: a, b (forward: y = a x + b; backward: + k dout), k, ra, rb (the ReLU's mask) */
} bn_img;

static int image_parts(const bn_ctx *q) {
  const int64_t per = q->C * q->HW;
  return sf_parallel_parts(q->N, per >= 32768 ? 1 : 32768 / (per > 0 ? per : 1));
}

static void img_rowstat_part(void *ctx, int64_t n0, int64_t n1, int part) {
  (void)part;
  const bn_img *m = ctx;
  const bn_ctx *q = m->q;
  for (int64_t n = n0; n < n1; n++) sf_batchnorm_image_stats(m->rowstat + n * q->C * 2, q->inp + n * q->C * q->HW, q->C, q->HW);
}

static void img_apply_part(void *ctx, int64_t n0, int64_t n1, int part) {
  (void)part;
  const bn_img *m = ctx;
  const bn_ctx *q = m->q;
  const int64_t C = q->C, HW = q->HW;
  for (int64_t n = n0; n < n1; n++)
    for (int64_t c = 0; c < C; c++) {
      const int64_t o = (n * C + c) * HW;
      const float *f = m->coef + c * 5;
      if (q->dout)
        bn_row_backward(q, o, f[2], f[0], f[1], f[3], f[4]);
      else
        bn_row_forward(q, o, f[0], f[1]);
    }
}

static void img_rowsum_part(void *ctx, int64_t n0, int64_t n1, int part) {
  (void)part;
  const bn_img *m = ctx;
  const bn_ctx *q = m->q;
  const int64_t C = q->C, HW = q->HW;
  for (int64_t n = n0; n < n1; n++)
    for (int64_t c = 0; c < C; c++) {
      const int64_t o = (n * C + c) * HW;
      double *r = m->rowsum + (n * C + c) * 2;
      bn_row_sums(q, o, q->mean[c], m->coef[c * 5 + 3], m->coef[c * 5 + 4], &r[0], &r[1]);
    }
}

/* The training forward image by image; 0, or -1 (nothing done) when a table cannot be
 * allocated: the caller then takes the channel loops. */
static int bn_train_images(bn_ctx *q) {
  const int64_t N = q->N, C = q->C, HW = q->HW;
  if (HW < IMAGE_MAJOR_HW) return -1;
  float *coef = malloc((size_t)(C * 5) * sizeof *coef);
  float *own = q->stats ? NULL : malloc((size_t)(N * C * 2) * sizeof *own);
  if (!coef || (!q->stats && !own)) {
    free(coef);
    free(own);
    return -1;
  }
  bn_img m = {.q = q, .rowstat = own, .coef = coef};
  const int parts = image_parts(q);
  if (own) {
    sf_parallel_for(parts, N, img_rowstat_part, &m);
    q->stats = own;
  }
  for (int64_t c = 0; c < C; c++) channel_finish(q, c, &coef[c * 5], &coef[c * 5 + 1]);
  sf_parallel_for(parts, N, img_apply_part, &m);
  free(coef);
  free(own);
  return 0;
}

void sf_batchnorm_forward_train(float *out, float *save_mean, float *save_invstd, float *running_mean,
                                float *running_var, const float *inp, const float *gamma, const float *beta,
                                const float *stats, int64_t N, int64_t C, int64_t HW, float momentum, float eps) {
  sf_nn_count(SF_K_NORM_FWD);
  bn_ctx q = {.out = out, .save_mean = save_mean, .save_invstd = save_invstd, .running_mean = running_mean,
              .running_var = running_var, .inp = inp, .gamma = gamma, .beta = beta, .stats = stats, .N = N, .C = C,
              .HW = HW, .momentum = momentum, .eps = eps};
  if (bn_train_images(&q) == 0) return;
  sf_parallel_for(channel_parts(C, N * HW), C, bn_train_part, &q);
}

void sf_batchnorm_relu_forward_train(float *out, float *save_mean, float *save_invstd, float *running_mean,
                                     float *running_var, const float *inp, const float *gamma, const float *beta,
                                     const float *stats, int64_t N, int64_t C, int64_t HW, float momentum,
                                     float eps) {
  sf_nn_count(SF_K_NORM_FWD);
  sf_nn_count(SF_K_ACT_FWD);
  bn_ctx q = {.out = out, .save_mean = save_mean, .save_invstd = save_invstd, .running_mean = running_mean,
              .running_var = running_var, .inp = inp, .gamma = gamma, .beta = beta, .stats = stats, .N = N, .C = C,
              .HW = HW, .momentum = momentum, .eps = eps, .relu = 1};
  if (bn_train_images(&q) == 0) return;
  sf_parallel_for(channel_parts(C, N * HW), C, bn_train_part, &q);
}

void sf_batchnorm_add_relu_forward_train(float *out, float *save_mean, float *save_invstd, float *running_mean,
                                         float *running_var, const float *inp, const float *residual,
                                         const float *gamma, const float *beta, const float *stats, int64_t N,
                                         int64_t C, int64_t HW, float momentum, float eps) {
  sf_nn_count(SF_K_NORM_FWD);
  sf_nn_count(SF_K_ACT_FWD);
  bn_ctx q = {.out = out, .save_mean = save_mean, .save_invstd = save_invstd, .running_mean = running_mean,
              .running_var = running_var, .inp = inp, .gamma = gamma, .beta = beta, .stats = stats, .N = N, .C = C,
              .HW = HW, .momentum = momentum, .eps = eps, .relu = 1, .res = residual};
  if (bn_train_images(&q) == 0) return;
  sf_parallel_for(channel_parts(C, N * HW), C, bn_train_part, &q);
}

static void bn_eval_part(void *ctx, int64_t c0, int64_t c1, int part) {
  (void)part;
  const bn_ctx *q = ctx;
  const int64_t N = q->N, C = q->C, HW = q->HW;
  for (int64_t c = c0; c < c1; c++) {
    const double invstd = 1.0 / sqrt((double)q->var[c] + (double)q->eps);
    if (q->save_invstd) q->save_invstd[c] = (float)invstd;
    float a, b;
    bn_coefs(q->gamma, q->beta, c, q->mean[c], (float)invstd, &a, &b);
    for (int64_t n = 0; n < N; n++) bn_row_forward(q, (n * C + c) * HW, a, b);
  }
}

void sf_batchnorm_forward_eval(float *out, float *save_invstd, const float *inp, const float *gamma,
                               const float *beta, const float *mean, const float *var, int64_t N, int64_t C,
                               int64_t HW, float eps) {
  sf_nn_count(SF_K_NORM_FWD);
  bn_ctx q = {.out = out, .save_invstd = save_invstd, .inp = inp, .gamma = gamma, .beta = beta, .mean = mean,
              .var = var, .N = N, .C = C, .HW = HW, .eps = eps};
  sf_parallel_for(channel_parts(C, N * HW), C, bn_eval_part, &q);
}

void sf_batchnorm_relu_forward_eval(float *out, float *save_invstd, const float *inp, const float *gamma,
                                    const float *beta, const float *mean, const float *var, int64_t N, int64_t C,
                                    int64_t HW, float eps) {
  sf_nn_count(SF_K_NORM_FWD);
  sf_nn_count(SF_K_ACT_FWD);
  bn_ctx q = {.out = out, .save_invstd = save_invstd, .inp = inp, .gamma = gamma, .beta = beta, .mean = mean,
              .var = var, .N = N, .C = C, .HW = HW, .eps = eps, .relu = 1};
  sf_parallel_for(channel_parts(C, N * HW), C, bn_eval_part, &q);
}

/* From channel c's sums (sdy = sum dout, sdyx = sum dout * (x - mean), both masked when
 * the forward had the ReLU): the affine gradients, and the input gradient's map
 * dinp = k dout + a x + b */
static void channel_backward(const bn_ctx *q, int64_t c, double sdy, double sdyx, float *k, float *a, float *b) {
  const int64_t M = q->N * q->HW;
  const double is = (double)q->var[c]; /* invstd */
  sdyx *= is;
  if (q->dgamma) q->dgamma[c] += (float)((double)q->scale * sdyx);
  if (q->dbeta) q->dbeta[c] += (float)((double)q->scale * sdy);
  const double kd = (q->gamma ? (double)q->gamma[c] : 1.0) * is;
  *k = (float)kd, *a = 0.0f, *b = 0.0f;
  if (q->batch_stats && M > 0) {
    /* dinp = k (dy - sdy/M - xhat sdyx/M), with xhat = (x - m) is, rewritten as k dy + a x + b */
    const double ad = -kd * is * sdyx / (double)M;
    *a = (float)ad;
    *b = (float)(-kd * sdy / (double)M - ad * (double)q->mean[c]);
  }
}

static void bn_backward_part(void *ctx, int64_t c0, int64_t c1, int part) {
  (void)part;
  const bn_ctx *q = ctx;
  const int64_t N = q->N, C = q->C, HW = q->HW;
  /* the sums are needed for the affine gradients and for the batch-statistics dinp */
  const int need_sums = q->dgamma || q->dbeta || q->batch_stats;
  for (int64_t c = c0; c < c1; c++) {
    const float m = q->mean[c];
    double sdy = 0.0, sdyx = 0.0; /* sum dout, sum dout * (x - mean) */
    float ra = 0.0f, rb = 0.0f;   /* the forward's affine map, for the ReLU's mask */
    if (q->relu_bwd) bn_coefs(q->gamma, q->beta, c, m, q->var[c], &ra, &rb);
    if (need_sums) {
      for (int64_t n = 0; n < N; n++) {
        double s0, s1;
        bn_row_sums(q, (n * C + c) * HW, m, ra, rb, &s0, &s1);
        sdy += s0;
        sdyx += s1;
      }
    }
    float k, a, b;
    channel_backward(q, c, sdy, sdyx, &k, &a, &b);
    if (!q->dinp) continue;
    for (int64_t n = 0; n < N; n++) bn_row_backward(q, (n * C + c) * HW, k, a, b, ra, rb);
  }
}

/* The backward image by image (see bn_train_images); 0, or -1 (nothing done) */
static int bn_backward_images(const bn_ctx *q) {
  const int64_t N = q->N, C = q->C, HW = q->HW;
  if (HW < IMAGE_MAJOR_HW) return -1;
  const int need_sums = q->dgamma || q->dbeta || q->batch_stats;
  float *coef = malloc((size_t)(C * 5) * sizeof *coef);
  double *rows = need_sums ? malloc((size_t)(N * C * 2) * sizeof *rows) : NULL;
  if (!coef || (need_sums && !rows)) {
    free(coef);
    free(rows);
    return -1;
  }
  for (int64_t c = 0; c < C; c++) {
    coef[c * 5 + 3] = coef[c * 5 + 4] = 0.0f;
    if (q->relu_bwd) bn_coefs(q->gamma, q->beta, c, q->mean[c], q->var[c], &coef[c * 5 + 3], &coef[c * 5 + 4]);
  }
  bn_img m = {.q = q, .rowsum = rows, .coef = coef};
  const int parts = image_parts(q);
  if (need_sums) sf_parallel_for(parts, N, img_rowsum_part, &m);
  for (int64_t c = 0; c < C; c++) {
    double sdy = 0.0, sdyx = 0.0;
    if (need_sums) {
      for (int64_t n = 0; n < N; n++) {
        sdy += rows[(n * C + c) * 2];
        sdyx += rows[(n * C + c) * 2 + 1];
      }
    }
    channel_backward(q, c, sdy, sdyx, &coef[c * 5 + 2], &coef[c * 5], &coef[c * 5 + 1]);
  }
  if (q->dinp) sf_parallel_for(parts, N, img_apply_part, &m);
  free(coef);
  free(rows);
  return 0;
}

void sf_batchnorm_backward(float *dinp, float *dgamma, float *dbeta, const float *dout, const float *inp,
                           const float *gamma, const float *mean, const float *invstd, int64_t N, int64_t C,
                           int64_t HW, int batch_stats, float scale) {
  if (!dinp && !dgamma && !dbeta) return;
  if (dinp) sf_nn_count(SF_K_NORM_BWD_INPUT);
  if (dgamma || dbeta) sf_nn_count(SF_K_NORM_BWD_AFFINE);
  /* var carries invstd here */
  bn_ctx q = {.dinp = dinp, .dgamma = dgamma, .dbeta = dbeta, .dout = dout, .inp = inp, .gamma = gamma,
              .mean = mean, .var = invstd, .N = N, .C = C, .HW = HW, .batch_stats = batch_stats, .scale = scale};
  if (bn_backward_images(&q) == 0) return;
  sf_parallel_for(channel_parts(C, N * HW), C, bn_backward_part, &q);
}

void sf_batchnorm_relu_backward(float *dinp, float *dgamma, float *dbeta, const float *dout, const float *inp,
                                const float *gamma, const float *beta, const float *mean, const float *invstd,
                                int64_t N, int64_t C, int64_t HW, int batch_stats, float scale) {
  if (!dinp && !dgamma && !dbeta) return;
  sf_nn_count(SF_K_ACT_BWD);
  if (dinp) sf_nn_count(SF_K_NORM_BWD_INPUT);
  if (dgamma || dbeta) sf_nn_count(SF_K_NORM_BWD_AFFINE);
  bn_ctx q = {.dinp = dinp, .dgamma = dgamma, .dbeta = dbeta, .dout = dout, .relu_bwd = 1, .inp = inp,
              .gamma = gamma, .beta = beta, .mean = mean, .var = invstd, .N = N, .C = C, .HW = HW,
              .batch_stats = batch_stats, .scale = scale};
  if (bn_backward_images(&q) == 0) return;
  sf_parallel_for(channel_parts(C, N * HW), C, bn_backward_part, &q);
}

/* ---- LayerNorm ---- */

/* Rows are independent, so the forward and the input gradient split the M rows over the
 * pool (parts of at least 16K elements); the affine gradients are sums over rows, and
 * split the columns instead: each column is still summed over every row in row order, so
 * dgamma and dbeta have the same bits for any thread count. */
typedef struct {
  float *out, *save_mean, *save_rstd, *dgamma, *dbeta;
  const float *inp, *dout, *gamma, *beta, *mean, *rstd;
  int64_t M, D;
  float eps, scale;
} ln_ctx;

static int ln_row_parts(int64_t M, int64_t D) {
  return sf_parallel_parts(M, D >= 16384 || D < 1 ? 1 : 16384 / D);
}

static void ln_forward_rows(void *ctx, int64_t lo, int64_t hi, int part) {
  (void)part;
  const ln_ctx *c = ctx;
  const int64_t D = c->D;
  const float *gamma = c->gamma, *beta = c->beta;
  for (int64_t r = lo; r < hi; r++) {
    const float *x = c->inp + r * D;
    float *y = c->out + r * D;
    const float mf = (float)(row_sum(x, D) / (double)D);
    const double var = row_sumsq_centered(x, D, mf) / (double)D;
    const float rs = (float)(1.0 / sqrt(var + (double)c->eps));
    if (c->save_mean) c->save_mean[r] = mf;
    if (c->save_rstd) c->save_rstd[r] = rs;
    if (gamma || beta) {
      for (int64_t i = 0; i < D; i++)
        y[i] = (x[i] - mf) * rs * (gamma ? gamma[i] : 1.0f) + (beta ? beta[i] : 0.0f);
    } else {
      row_affine(y, x, D, rs, -mf * rs);
    }
  }
}

void sf_layernorm_forward(float *out, float *save_mean, float *save_rstd, const float *inp, const float *gamma,
                          const float *beta, int64_t M, int64_t D, float eps) {
  sf_nn_count(SF_K_NORM_FWD);
  ln_ctx c = {.out = out, .save_mean = save_mean, .save_rstd = save_rstd, .inp = inp, .gamma = gamma,
              .beta = beta, .M = M, .D = D, .eps = eps};
  sf_parallel_for(ln_row_parts(M, D), M, ln_forward_rows, &c);
}

/* dinp for rows [lo, hi): with g = dy * gamma, dinp = rs (g - mean(g) - xhat mean(g xhat)) */
static void ln_backward_rows(void *ctx, int64_t lo, int64_t hi, int part) {
  (void)part;
  const ln_ctx *c = ctx;
  const int64_t D = c->D;
  const float *gamma = c->gamma;
  for (int64_t r = lo; r < hi; r++) {
    const float *x = c->inp + r * D, *dy = c->dout + r * D;
    const float m = c->mean[r], rs = c->rstd[r];
    double sg = 0.0, sgx = 0.0;
    for (int64_t i = 0; i < D; i++) {
      const double g = (double)dy[i] * (gamma ? (double)gamma[i] : 1.0);
      sg += g;
      sgx += g * ((double)x[i] - (double)m);
    }
    const float mg = (float)(sg / (double)D), mgx = (float)(sgx * (double)rs / (double)D);
    float *dx = c->out + r * D;
    for (int64_t i = 0; i < D; i++) {
      const float g = dy[i] * (gamma ? gamma[i] : 1.0f);
      dx[i] = rs * (g - mg - (x[i] - m) * rs * mgx);
    }
  }
}

/* dgamma, dbeta for the columns of 16-column blocks [lo, hi) (whole cache lines per
 * part), accumulated over all rows in row order. The running sums sit in local arrays,
 * which the compiler knows alias nothing, so they stay in registers across the rows. */
#define LN_COLS 64
static void ln_backward_cols(void *ctx, int64_t lo, int64_t hi, int part) {
  (void)part;
  const ln_ctx *c = ctx;
  const int64_t D = c->D, M = c->M, end = hi * 16 < D ? hi * 16 : D;
  const float scale = c->scale;
  for (int64_t c0 = lo * 16; c0 < end; c0 += LN_COLS) {
    const int64_t w = end - c0 < LN_COLS ? end - c0 : LN_COLS;
    float ag[LN_COLS] = {0}, ab[LN_COLS] = {0};
    if (c->dgamma)
      for (int64_t i = 0; i < w; i++) ag[i] = c->dgamma[c0 + i];
    if (c->dbeta)
      for (int64_t i = 0; i < w; i++) ab[i] = c->dbeta[c0 + i];
    for (int64_t r = 0; r < M; r++) {
      const float *x = c->inp + r * D + c0, *dy = c->dout + r * D + c0;
      const float m = c->mean[r], rs = c->rstd[r];
      if (w == LN_COLS) { /* a fixed trip count: unrolled, sums kept in registers */
        for (int i = 0; i < LN_COLS; i++) {
          ag[i] += scale * dy[i] * (x[i] - m) * rs;
          ab[i] += scale * dy[i];
        }
      } else {
        for (int64_t i = 0; i < w; i++) {
          ag[i] += scale * dy[i] * (x[i] - m) * rs;
          ab[i] += scale * dy[i];
        }
      }
    }
    if (c->dgamma)
      for (int64_t i = 0; i < w; i++) c->dgamma[c0 + i] = ag[i];
    if (c->dbeta)
      for (int64_t i = 0; i < w; i++) c->dbeta[c0 + i] = ab[i];
  }
}

void sf_layernorm_backward(float *dinp, float *dgamma, float *dbeta, const float *dout, const float *inp,
                           const float *gamma, const float *mean, const float *rstd, int64_t M, int64_t D,
                           float scale) {
  if (!dinp && !dgamma && !dbeta) return;
  if (dinp) sf_nn_count(SF_K_NORM_BWD_INPUT);
  if (dgamma || dbeta) sf_nn_count(SF_K_NORM_BWD_AFFINE);
  ln_ctx c = {.out = dinp, .dgamma = dgamma, .dbeta = dbeta, .inp = inp, .dout = dout, .gamma = gamma,
              .mean = mean, .rstd = rstd, .M = M, .D = D, .scale = scale};
  if ((dgamma || dbeta) && M > 0) {
    const int64_t blocks = (D + 15) / 16, per_block = M * 16; /* elements a block reads */
    sf_parallel_for(sf_parallel_parts(blocks, per_block >= 16384 ? 1 : 16384 / per_block), blocks, ln_backward_cols,
                    &c);
  }
  if (dinp) sf_parallel_for(ln_row_parts(M, D), M, ln_backward_rows, &c);
}

/* ---- GroupNorm ---- */

void sf_groupnorm_forward(float *out, float *save_mean, float *save_rstd, const float *inp, const float *gamma,
                          const float *beta, int64_t N, int64_t C, int64_t HW, int64_t G, float eps) {
  sf_nn_count(SF_K_NORM_FWD);
  const int64_t Cg = C / G, L = Cg * HW; /* channels and values per group */
  for (int64_t n = 0; n < N; n++) {
    for (int64_t g = 0; g < G; g++) {
      const int64_t o = (n * C + g * Cg) * HW; /* a group is one contiguous block */
      const float mf = (float)(row_sum(inp + o, L) / (double)L);
      const double var = row_sumsq_centered(inp + o, L, mf) / (double)L;
      const double rs = 1.0 / sqrt(var + (double)eps);
      if (save_mean) save_mean[n * G + g] = mf;
      if (save_rstd) save_rstd[n * G + g] = (float)rs;
      for (int64_t cc = 0; cc < Cg; cc++) {
        const int64_t c = g * Cg + cc;
        const float a = (float)((gamma ? (double)gamma[c] : 1.0) * rs);
        const float b = (beta ? beta[c] : 0.0f) - mf * a;
        row_affine(out + o + cc * HW, inp + o + cc * HW, HW, a, b);
      }
    }
  }
}

void sf_groupnorm_backward(float *dinp, float *dgamma, float *dbeta, const float *dout, const float *inp,
                           const float *gamma, const float *mean, const float *rstd, int64_t N, int64_t C,
                           int64_t HW, int64_t G, float scale) {
  if (!dinp && !dgamma && !dbeta) return;
  if (dinp) sf_nn_count(SF_K_NORM_BWD_INPUT);
  if (dgamma || dbeta) sf_nn_count(SF_K_NORM_BWD_AFFINE);
  const int64_t Cg = C / G, L = Cg * HW;
  for (int64_t n = 0; n < N; n++) {
    for (int64_t g = 0; g < G; g++) {
      const int64_t o = (n * C + g * Cg) * HW;
      const float m = mean[n * G + g];
      const double rs = (double)rstd[n * G + g];
      /* per channel: sdy = sum dy, sdyx = sum dy xhat; over the group, with the
       * per-channel gamma folded in: sg = sum g, sgx = sum g xhat (g = dy gamma) */
      double sg = 0.0, sgx = 0.0;
      for (int64_t cc = 0; cc < Cg; cc++) {
        const int64_t c = g * Cg + cc;
        const double sdy = row_sum(dout + o + cc * HW, HW);
        const double sdyx = row_dot_centered(dout + o + cc * HW, inp + o + cc * HW, HW, m) * rs;
        if (dgamma) dgamma[c] += (float)((double)scale * sdyx);
        if (dbeta) dbeta[c] += (float)((double)scale * sdy);
        const double gm = gamma ? (double)gamma[c] : 1.0;
        sg += gm * sdy;
        sgx += gm * sdyx;
      }
      if (!dinp) continue;
      /* dinp = rs (g - sg/L - xhat sgx/L) = k dy + a x + b per channel */
      const double ad = -rs * rs * sgx / (double)L;
      const float a = (float)ad, b = (float)(-rs * sg / (double)L - ad * (double)m);
      for (int64_t cc = 0; cc < Cg; cc++) {
        const int64_t c = g * Cg + cc;
        const float k = (float)((gamma ? (double)gamma[c] : 1.0) * rs);
        row_affine2(dinp + o + cc * HW, dout + o + cc * HW, inp + o + cc * HW, HW, k, a, b);
      }
    }
  }
}
