/* Conv2d kernels (NCHW): im2col + one OpenBLAS sgemm per chunk of images, col2im for
 * the input gradient, and a direct sgemm path for 1x1 stride-1 unpadded convolutions. */
#include <cblas.h>
#include <limits.h>
#include <string.h>

#include "../core/parallel.h"
#include "nn.h"

#define BI(x) ((blasint)(x))

/* Columns of several images go into one sgemm so that its N dimension is large even for
 * small feature maps (8x8 gives N = 64 per image, too small for sgemm to reach its
 * rate); the chunk is bounded so that im2col writes columns that sgemm then reads from
 * cache (measured: 4 MB chunks were up to 2x slower than 1 MB ones here). */
#define COL_BUDGET ((int64_t)1 << 18) /* floats (1 MB): the columns of a chunk stay in L2 */

int sf_conv2d_shape_init(sf_conv2d_shape *s) {
  char b1[SF_SHAPE_BUF], b2[SF_SHAPE_BUF];
  const int64_t in[4] = {s->N, s->C, s->H, s->W}, w[4] = {s->K, s->C, s->R, s->S};
  sf_shape_str(b1, sizeof b1, 4, in);
  sf_shape_str(b2, sizeof b2, 4, w);
  if (s->groups != 1)
    return sf_err("conv2d: groups = %lld is not supported (only groups = 1)", (long long)s->groups);
  if (s->N < 0 || s->C < 1 || s->H < 1 || s->W < 1)
    return sf_err("conv2d: input has shape %s, expected positive channels, height and width", b1);
  if (s->K < 1 || s->R < 1 || s->S < 1) return sf_err("conv2d: weight has shape %s, expected positive sizes", b2);
  if (s->stride_h < 1 || s->stride_w < 1)
    return sf_err("conv2d: stride {%lld,%lld} must be positive", (long long)s->stride_h, (long long)s->stride_w);
  if (s->pad_h < 0 || s->pad_w < 0)
    return sf_err("conv2d: padding {%lld,%lld} must be non-negative", (long long)s->pad_h, (long long)s->pad_w);
  const int64_t hp = s->H + 2 * s->pad_h, wp = s->W + 2 * s->pad_w;
  if (hp < s->R || wp < s->S)
    return sf_err("conv2d: kernel %lldx%lld is larger than the padded input %lldx%lld (input %s, padding {%lld,%lld})",
                  (long long)s->R, (long long)s->S, (long long)hp, (long long)wp, b1, (long long)s->pad_h,
                  (long long)s->pad_w);
  s->OH = (hp - s->R) / s->stride_h + 1;
  s->OW = (wp - s->S) / s->stride_w + 1;
  if (s->C * s->R * s->S > INT_MAX || s->OH * s->OW > INT_MAX || s->K > INT_MAX)
    return sf_err("conv2d: input %s with weight %s exceeds the BLAS size limit (%d)", b1, b2, INT_MAX);
  return 0;
}

/* Images per chunk: as many as fit the column budget, at least one. */
int64_t sf_conv2d_chunk_images(const sf_conv2d_shape *s) {
  const int64_t per = s->C * s->R * s->S * s->OH * s->OW;
  int64_t b = per > 0 ? COL_BUDGET / per : s->N;
  if (b < 1) b = 1;
  if (b > s->N) b = s->N;
  while (b > 1 && b * s->OH * s->OW > INT_MAX) b--;
  return b;
}

static int is_pointwise(const sf_conv2d_shape *s) {
  return s->R == 1 && s->S == 1 && s->stride_h == 1 && s->stride_w == 1 && s->pad_h == 0 && s->pad_w == 0;
}


/* Output columns ow whose input column ow*stride - pad + s lies in [0, W): [*lo, *hi). */
static void valid_range(int64_t *lo, int64_t *hi, int64_t n_out, int64_t n_in, int64_t stride, int64_t pad,
                        int64_t k) {
  /* ow >= ceil((pad - k) / stride), ow <= floor((n_in - 1 + pad - k) / stride) */
  int64_t a = pad - k, l = a <= 0 ? 0 : (a + stride - 1) / stride;
  int64_t bnum = n_in - 1 + pad - k, h = bnum < 0 ? 0 : bnum / stride + 1;
  if (l > n_out) l = n_out;
  if (h > n_out) h = n_out;
  if (h < l) h = l;
  *lo = l;
  *hi = h;
}

/* col[(c*R + r)*S + s][oh*OW + ow] (row stride ld) = img[c][oh*sh - ph + r][ow*sw - pw + s],
 * zero where the window reads padding. img is one image [C,H,W]. */
static void im2col(float *col, int64_t ld, const float *img, const sf_conv2d_shape *s) {
  const int64_t C = s->C, H = s->H, W = s->W, R = s->R, S = s->S, OH = s->OH, OW = s->OW;
  const int64_t sh = s->stride_h, sw = s->stride_w, ph = s->pad_h, pw = s->pad_w;
  for (int64_t c = 0; c < C; c++) {
    const float *plane = img + c * H * W;
    for (int64_t r = 0; r < R; r++) {
      for (int64_t q = 0; q < S; q++) {
        float *row = col + ((c * R + r) * S + q) * ld;
        int64_t lo, hi;
        valid_range(&lo, &hi, OW, W, sw, pw, q);
        for (int64_t oh = 0; oh < OH; oh++) {
          float *dst = row + oh * OW;
          const int64_t ih = oh * sh - ph + r;
          if (ih < 0 || ih >= H) {
            memset(dst, 0, (size_t)OW * sizeof(float));
            continue;
          }
          if (hi <= lo) {
            memset(dst, 0, (size_t)OW * sizeof(float));
            continue;
          }
          for (int64_t ow = 0; ow < lo; ow++) dst[ow] = 0.0f;
          const float *src = plane + ih * W + lo * sw - pw + q;
          if (sw == 1)
            memcpy(dst + lo, src, (size_t)(hi - lo) * sizeof(float));
          else
            for (int64_t ow = lo; ow < hi; ow++) dst[ow] = src[(ow - lo) * sw];
          for (int64_t ow = hi; ow < OW; ow++) dst[ow] = 0.0f;
        }
      }
    }
  }
}

/* The adjoint of im2col: img[c][ih][iw] += col[...] over every window position that reads
 * it. img is one image [C,H,W], zeroed by the caller. */
static void col2im(float *img, const float *col, int64_t ld, const sf_conv2d_shape *s) {
  const int64_t C = s->C, H = s->H, W = s->W, R = s->R, S = s->S, OH = s->OH, OW = s->OW;
  const int64_t sh = s->stride_h, sw = s->stride_w, ph = s->pad_h, pw = s->pad_w;
  for (int64_t c = 0; c < C; c++) {
    float *plane = img + c * H * W;
    for (int64_t r = 0; r < R; r++) {
      for (int64_t q = 0; q < S; q++) {
        const float *row = col + ((c * R + r) * S + q) * ld;
        int64_t lo, hi;
        valid_range(&lo, &hi, OW, W, sw, pw, q);
        for (int64_t oh = 0; oh < OH; oh++) {
          const int64_t ih = oh * sh - ph + r;
          if (ih < 0 || ih >= H || hi <= lo) continue;
          const float *src = row + oh * OW;
          float *dst = plane + ih * W + lo * sw - pw + q;
          if (sw == 1)
            for (int64_t ow = lo; ow < hi; ow++) dst[ow - lo] += src[ow];
          else
            for (int64_t ow = lo; ow < hi; ow++) dst[(ow - lo) * sw] += src[ow];
        }
      }
    }
  }
}

/* ---- parallel structure ----
 * With several threads the images of a batch are split into sf_threads() contiguous
 * ranges, one per thread, and each thread runs the whole im2col -> sgemm -> copy-out
 * pipeline on its own images with its own scratch and a single-threaded sgemm: the
 * columns stay in that core's cache, and the serial im2col/col2im that used to leave
 * OpenBLAS's second thread waiting is split too. The weight gradient is accumulated per
 * part and the partial sums are added in part order (deterministic for a thread count).
 * With one thread (or one image) the code path is the serial one, with OpenBLAS free to
 * use its own threads. */

/* Images per part: at least ~0.5 MFLOP each, so that tiny convolutions stay serial. */
static int conv_parts(const sf_conv2d_shape *s) {
  const int64_t per = 2 * s->K * s->C * s->R * s->S * s->OH * s->OW;
  int64_t grain = per > 0 ? (int64_t)500000 / per : 1;
  return sf_parallel_parts(s->N, grain < 1 ? 1 : grain);
}

static void reserve_part(void *ctx, int64_t lo, int64_t hi, int part) {
  (void)lo, (void)hi;
  const sf_conv2d_shape *s = ((void **)ctx)[0];
  int *fail = ((void **)ctx)[1];
  const int64_t b = sf_conv2d_chunk_images(s), p = s->OH * s->OW, CRS = s->C * s->R * s->S;
  if (!sf_scratch((size_t)(CRS * b * p)) || !sf_scratch2((size_t)(s->K * b * p + s->K * CRS))) fail[part] = 1;
}

int sf_conv2d_reserve(const sf_conv2d_shape *s) {
  if (is_pointwise(s) || s->N == 0) return 0;
  const int parts = conv_parts(s);
  int fail[256] = {0};
  void *ctx[2] = {(void *)s, fail};
  /* every part reserves its own thread's scratch; a part's sizes are those of a chunk */
  sf_parallel_for(parts, parts, reserve_part, ctx);
  for (int p = 0; p < parts && p < 256; p++)
    if (fail[p]) /* the message was set on the failing thread: restate it on this one */
      return sf_err("conv2d: out of memory allocating the workspace of %d thread(s)", parts);
  return 0;
}

typedef struct {
  float *out;          /* forward: out; backward input: dinp; backward weight: unused */
  const float *inp;    /* input images (forward, backward weight) */
  const float *dout;   /* backward */
  const float *weight;
  const float *bias;
  const sf_conv2d_shape *s;
  float *partial[256]; /* backward weight: each part's dwt [CRS,K] */
} conv_ctx;

/* out[b] [K,P] = tmp[:, b*P:(b+1)*P] + bias, for the nb images of a chunk (tmp [K, nb*P]) */
static void scatter_out(float *out, const float *tmp, const float *bias, int64_t nb, int64_t K, int64_t P) {
  const int64_t ld = nb * P;
  for (int64_t b = 0; b < nb; b++) {
    float *o = out + b * K * P;
    for (int64_t k = 0; k < K; k++) {
      const float *t = tmp + k * ld + b * P;
      float *ok = o + k * P;
      const float bk = bias ? bias[k] : 0.0f;
      for (int64_t p = 0; p < P; p++) ok[p] = t[p] + bk;
    }
  }
}

/* dout[b] [K,P] -> dperm [K, nb*P], so that one sgemm covers the chunk */
static void gather_dout(float *dperm, const float *dout, int64_t nb, int64_t K, int64_t P) {
  const int64_t ld = nb * P;
  for (int64_t b = 0; b < nb; b++)
    for (int64_t k = 0; k < K; k++)
      memcpy(dperm + k * ld + b * P, dout + (b * K + k) * P, (size_t)P * sizeof(float));
}

/* images [n0, n1) of the forward */
static void fwd_range(const conv_ctx *c, int64_t n0, int64_t n1) {
  const sf_conv2d_shape *s = c->s;
  const int64_t C = s->C, K = s->K, CRS = s->C * s->R * s->S, P = s->OH * s->OW, HW = s->H * s->W;
  const int64_t B = sf_conv2d_chunk_images(s);
  float *col = sf_scratch((size_t)(CRS * B * P)); /* [CRS, B*P] */
  float *tmp = sf_scratch2((size_t)(K * B * P));  /* [K, B*P] */
  SF_ASSERT(col && tmp); /* reserved by the caller through sf_conv2d_reserve */
  for (int64_t i0 = n0; i0 < n1; i0 += B) {
    const int64_t nb = n1 - i0 < B ? n1 - i0 : B, ld = nb * P;
    for (int64_t b = 0; b < nb; b++) im2col(col + b * P, ld, c->inp + (i0 + b) * C * HW, s);
    float *o = c->out + i0 * K * P;
    if (nb == 1) {
      /* one image: the product is already in the output's layout */
      float beta = 0.0f;
      if (c->bias) {
        for (int64_t k = 0; k < K; k++)
          for (int64_t p = 0; p < P; p++) o[k * P + p] = c->bias[k];
        beta = 1.0f;
      }
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, BI(K), BI(P), BI(CRS), 1.0f, c->weight, BI(CRS), col,
                  BI(ld), beta, o, BI(P));
      continue;
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, BI(K), BI(ld), BI(CRS), 1.0f, c->weight, BI(CRS), col,
                BI(ld), 0.0f, tmp, BI(ld));
    scatter_out(o, tmp, c->bias, nb, K, P);
  }
}

/* images [n0, n1) of the input gradient */
static void bwd_input_range(const conv_ctx *c, int64_t n0, int64_t n1) {
  const sf_conv2d_shape *s = c->s;
  const int64_t C = s->C, K = s->K, CRS = s->C * s->R * s->S, P = s->OH * s->OW, HW = s->H * s->W;
  const int64_t B = sf_conv2d_chunk_images(s);
  float *dcol = sf_scratch((size_t)(CRS * B * P)); /* [CRS, B*P] */
  float *dperm = sf_scratch2((size_t)(K * B * P)); /* [K, B*P] */
  SF_ASSERT(dcol && dperm);
  for (int64_t i0 = n0; i0 < n1; i0 += B) {
    const int64_t nb = n1 - i0 < B ? n1 - i0 : B, ld = nb * P;
    const float *g = c->dout + i0 * K * P;
    if (nb > 1) {
      gather_dout(dperm, g, nb, K, P);
      g = dperm;
    }
    /* dcol [CRS, nb*P] = weight^T [CRS,K] @ g [K, nb*P] */
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, BI(CRS), BI(ld), BI(K), 1.0f, c->weight, BI(CRS), g, BI(ld),
                0.0f, dcol, BI(ld));
    for (int64_t b = 0; b < nb; b++) {
      /* zeroed image by image, just before it accumulates, so it is still in cache */
      float *img = c->out + (i0 + b) * C * HW;
      memset(img, 0, (size_t)(C * HW) * sizeof(float));
      col2im(img, dcol + b * P, ld, s);
    }
  }
}

/* images [n0, n1) of the weight gradient; returns dwt [CRS,K] (in this thread's scratch,
 * overwritten) */
static float *bwd_weight_range(const conv_ctx *c, int64_t n0, int64_t n1) {
  const sf_conv2d_shape *s = c->s;
  const int64_t C = s->C, K = s->K, CRS = s->C * s->R * s->S, P = s->OH * s->OW, HW = s->H * s->W;
  const int64_t B = sf_conv2d_chunk_images(s);
  float *col = sf_scratch((size_t)(CRS * B * P)); /* [CRS, B*P] */
  float *dperm = sf_scratch2((size_t)(K * B * P + CRS * K)); /* [K, B*P], then dwt [CRS,K] */
  SF_ASSERT(col && dperm);
  float *dwt = dperm + K * B * P;
  for (int64_t i0 = n0; i0 < n1; i0 += B) {
    const int64_t nb = n1 - i0 < B ? n1 - i0 : B, ld = nb * P;
    const float *g = c->dout + i0 * K * P;
    for (int64_t b = 0; b < nb; b++) im2col(col + b * P, ld, c->inp + (i0 + b) * C * HW, s);
    if (nb > 1) {
      gather_dout(dperm, g, nb, K, P);
      g = dperm;
    }
    /* dwt [CRS,K] (+)= col [CRS, nb*P] @ g^T [nb*P, K]: this orientation packs the long
     * operands faster than dweight = g @ col^T; dwt is small and transposed in at the end */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, BI(CRS), BI(K), BI(ld), 1.0f, col, BI(ld), g, BI(ld),
                i0 == n0 ? 0.0f : 1.0f, dwt, BI(K));
  }
  return dwt;
}

static void fwd_part(void *ctx, int64_t lo, int64_t hi, int part) {
  (void)part;
  fwd_range(ctx, lo, hi);
}
static void bwd_input_part(void *ctx, int64_t lo, int64_t hi, int part) {
  (void)part;
  bwd_input_range(ctx, lo, hi);
}
static void bwd_weight_part(void *ctx, int64_t lo, int64_t hi, int part) {
  conv_ctx *c = ctx;
  /* the part's dwt lives in its thread's scratch, untouched until that thread's next job */
  c->partial[part] = bwd_weight_range(c, lo, hi);
}

void sf_conv2d_forward(float *out, const float *inp, const float *weight, const float *bias, const sf_conv2d_shape *s) {
  sf_nn_count(SF_K_CONV_FWD);
  const int64_t N = s->N, C = s->C, K = s->K, P = s->OH * s->OW, HW = s->H * s->W;
  if (N == 0) return;
  sf_threads_ensure();
  if (is_pointwise(s)) {
    /* out[n] [K,P] = weight [K,C] @ inp[n] [C,P]: no columns needed */
    for (int64_t n = 0; n < N; n++) {
      float *o = out + n * K * P;
      float beta = 0.0f;
      if (bias) {
        for (int64_t k = 0; k < K; k++)
          for (int64_t p = 0; p < P; p++) o[k * P + p] = bias[k];
        beta = 1.0f;
      }
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, BI(K), BI(P), BI(C), 1.0f, weight, BI(C), inp + n * C * HW,
                  BI(P), beta, o, BI(P));
    }
    return;
  }
  conv_ctx c = {.out = out, .inp = inp, .weight = weight, .bias = bias, .s = s};
  const int parts = conv_parts(s);
  if (parts == 1) {
    fwd_range(&c, 0, N);
    return;
  }
  sf_blas_serial_begin();
  sf_parallel_for(parts, N, fwd_part, &c);
  sf_blas_serial_end();
}

void sf_conv2d_backward_input(float *dinp, const float *dout, const float *weight, const sf_conv2d_shape *s) {
  if (!dinp) return;
  sf_nn_count(SF_K_CONV_BWD_INPUT);
  const int64_t N = s->N, C = s->C, K = s->K, P = s->OH * s->OW, HW = s->H * s->W;
  if (N == 0) return;
  sf_threads_ensure();
  if (is_pointwise(s)) {
    /* dinp[n] [C,P] = weight^T [C,K] @ dout[n] [K,P] */
    for (int64_t n = 0; n < N; n++)
      cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, BI(C), BI(P), BI(K), 1.0f, weight, BI(C), dout + n * K * P,
                  BI(P), 0.0f, dinp + n * C * HW, BI(P));
    return;
  }
  conv_ctx c = {.out = dinp, .dout = dout, .weight = weight, .s = s};
  const int parts = conv_parts(s);
  if (parts == 1) {
    bwd_input_range(&c, 0, N);
    return;
  }
  sf_blas_serial_begin();
  sf_parallel_for(parts, N, bwd_input_part, &c);
  sf_blas_serial_end();
}

/* dbias[k] += scale * sum over images and positions of dout[n,k,:]; per-plane float sums
 * in 8 lanes (vectorised), folded into double across planes. Channels [k0, k1). */
static void bias_grad(float *dbias, const float *dout, int64_t N, int64_t K, int64_t P, float scale, int64_t k0,
                      int64_t k1) {
  for (int64_t k = k0; k < k1; k++) {
    double tot = 0.0;
    for (int64_t n = 0; n < N; n++) {
      const float *x = dout + (n * K + k) * P;
      float lane[8] = {0};
      int64_t p = 0;
      for (; p + 8 <= P; p += 8)
        for (int j = 0; j < 8; j++) lane[j] += x[p + j];
      float part = 0.0f;
      for (; p < P; p++) part += x[p];
      for (int j = 0; j < 8; j++) part += lane[j];
      tot += (double)part;
    }
    dbias[k] += (float)((double)scale * tot);
  }
}

typedef struct {
  float *dbias;
  const float *dout;
  int64_t N, K, P;
  float scale;
} bias_ctx;

static void bias_part(void *ctx, int64_t lo, int64_t hi, int part) {
  (void)part;
  const bias_ctx *b = ctx;
  bias_grad(b->dbias, b->dout, b->N, b->K, b->P, b->scale, lo, hi);
}

void sf_conv2d_backward_weight(float *dweight, float *dbias, const float *dout, const float *inp,
                               const sf_conv2d_shape *s, float scale) {
  if (!dweight && !dbias) return;
  sf_nn_count(SF_K_CONV_BWD_WEIGHT);
  const int64_t N = s->N, C = s->C, K = s->K, CRS = s->C * s->R * s->S, P = s->OH * s->OW, HW = s->H * s->W;
  if (N == 0) return;
  if (dbias) {
    /* channels are independent sums: split over them (the result is the serial one) */
    bias_ctx b = {dbias, dout, N, K, P, scale};
    const int64_t per = N * P;
    sf_parallel_for(sf_parallel_parts(K, per >= 65536 ? 1 : 65536 / (per > 0 ? per : 1)), K, bias_part, &b);
  }
  if (!dweight) return;
  sf_threads_ensure();
  if (is_pointwise(s)) {
    /* dweight [K,C] += scale * dout[n] [K,P] @ inp[n]^T [P,C] */
    for (int64_t n = 0; n < N; n++)
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, BI(K), BI(C), BI(P), scale, dout + n * K * P, BI(P),
                  inp + n * C * HW, BI(P), 1.0f, dweight, BI(C));
    return;
  }
  conv_ctx c = {.inp = inp, .dout = dout, .s = s};
  const int parts = conv_parts(s);
  if (parts == 1) {
    const float *dwt = bwd_weight_range(&c, 0, N);
    for (int64_t k = 0; k < K; k++)
      for (int64_t j = 0; j < CRS; j++) dweight[k * CRS + j] += scale * dwt[j * K + k];
    return;
  }
  sf_blas_serial_begin();
  sf_parallel_for(parts, N, bwd_weight_part, &c);
  sf_blas_serial_end();
  /* partial sums added in part order, then scaled: fixed for a given thread count */
  for (int64_t k = 0; k < K; k++)
    for (int64_t j = 0; j < CRS; j++) {
      float t = 0.0f;
      for (int p = 0; p < parts; p++) t += c.partial[p][j * K + k];
      dweight[k * CRS + j] += scale * t;
    }
}

/* Per-example moments: per image, its columns (im2col) and one sgemm
 * g [K,CRS] = dout_n [K,P] @ col^T [P,CRS]; then the moments. Serial: it runs on a few
 * batches per epoch, for the SNR statistics. */
int sf_conv2d_grad_moments(float *sum_w, float *sumsq_w, float *sum_b, float *sumsq_b, const float *dout,
                           const float *inp, const sf_conv2d_shape *s) {
  const int64_t N = s->N, C = s->C, K = s->K, CRS = s->C * s->R * s->S, P = s->OH * s->OW, HW = s->H * s->W;
  float *col = sf_scratch((size_t)(CRS * P));
  float *g = sf_scratch2((size_t)(K * CRS + K));
  if (!col || !g) return -1;
  sf_threads_ensure();
  for (int64_t n = 0; n < N; n++) {
    const float *dn = dout + n * K * P;
    if (sum_w || sumsq_w) {
      im2col(col, P, inp + n * C * HW, s);
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, BI(K), BI(CRS), BI(P), 1.0f, dn, BI(P), col, BI(P), 0.0f,
                  g, BI(CRS));
      for (int64_t j = 0; j < K * CRS; j++) {
        if (sum_w) sum_w[j] += g[j];
        if (sumsq_w) sumsq_w[j] += g[j] * g[j];
      }
    }
    for (int64_t k = 0; k < K && (sum_b || sumsq_b); k++) {
      float b = 0.0f;
      for (int64_t p = 0; p < P; p++) b += dn[k * P + p];
      if (sum_b) sum_b[k] += b;
      if (sumsq_b) sumsq_b[k] += b * b;
    }
  }
  return 0;
}
