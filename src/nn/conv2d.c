/* Conv2d kernels (NCHW), by shape (sf_conv2d_path says which):
 * - stride-1 convolutions: direct register-tiled kernels on zero-padded planes for the
 *   forward, the input gradient (the flipped kernel) and, for 3x3, the weight gradient;
 * - stride-2 forward: the same kernels over the padded input's four phase planes;
 * - 1x1 stride 1: one sgemm per image; 1x1 strided (ResNet shortcuts): subsampled planes;
 * - everything else (and compilers without vector extensions): im2col + one OpenBLAS
 *   sgemm per chunk of images, col2im for the input gradient;
 * - sf_conv2d_backward: both gradients of a stride-1 3x3 direct convolution in one pass
 *   over dout (its padded planes are the weight gradient's wide layout);
 * - with AVX-512, 3x3 pad-1 layers: masked loads on unpadded planes (conv2d_masked.c), and
 *   with 16 or more channels both ways Winograd (conv2d_winograd*.c): F(4x4, 3x3) or
 *   F(2x2, 3x3) at stride 1, F(2, 2) on the phases at stride 2. */
#include <cblas.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "../core/parallel.h"
#include "conv2d_masked.h"
#include "conv2d_winograd.h"
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
/* Images per chunk of the im2col paths: columns within COL_BUDGET, at least 8 chunks when
 * there are images enough (the forward and input gradient split whole chunks over the
 * threads), all of about the same size. */
int64_t sf_conv2d_chunk_images(const sf_conv2d_shape *s) {
  const int64_t per = s->C * s->R * s->S * s->OH * s->OW;
  int64_t b = per > 0 ? COL_BUDGET / per : s->N;
  if (b > (s->N + 7) / 8) b = (s->N + 7) / 8;
  if (b < 1) b = 1;
  if (s->N > 0) b = (s->N + (s->N + b - 1) / b - 1) / ((s->N + b - 1) / b); /* N over the chunks, evenly */
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

/* Short-row helpers for the column kernels. Rows of a CIFAR feature map are 8-32 floats,
 * where a memcpy/memset call costs more than the copy (measured: a third of the column
 * time went to the calls), so these are inline loops in blocks of 8 that the compiler
 * turns into vector moves (written so that it does not turn them back into calls). */
static inline void row_copy(float *restrict d, const float *restrict s, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int j = 0; j < 8; j++) d[i + j] = s[i + j];
  for (; i < n; i++) d[i] = s[i];
}
static inline void row_zero(float *restrict d, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int j = 0; j < 8; j++) d[i + j] = 0.0f;
  for (; i < n; i++) d[i] = 0.0f;
}
static inline void row_add(float *restrict d, const float *restrict s, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int j = 0; j < 8; j++) d[i + j] += s[i + j];
  for (; i < n; i++) d[i] += s[i];
}

/* The forward's epilogue on one row of output: d = s + bias (+ res), then max(., 0)
 * with relu (v < 0 rather than v > 0: a NaN stays NaN, as in ReLU). Applied while the
 * result is copied out of a kernel's buffer, it saves the separate passes of a folded
 * BatchNorm's ReLU and of a residual block's sum. */
typedef struct {
  const float *residual; /* [N, K, OH, OW] or NULL */
  int relu;
  float *stats;          /* [N, K, 2]: each image's BatchNorm row statistics, or NULL */
} conv_epilogue;

/* after image n's output o [K, P] is written (and still in cache): its statistics */
static void image_stats(const conv_epilogue *ep, int64_t n, const float *o, int64_t K, int64_t P) {
  if (ep->stats) sf_batchnorm_image_stats(ep->stats + n * K * 2, o, K, P);
}

static inline void row_epilogue(float *restrict d, const float *restrict s, int64_t n, float bias,
                                const float *restrict res, int relu) {
  if (res && relu)
    for (int64_t i = 0; i < n; i++) {
      const float v = s[i] + bias + res[i];
      d[i] = v < 0.0f ? 0.0f : v;
    }
  else if (res)
    for (int64_t i = 0; i < n; i++) d[i] = s[i] + bias + res[i];
  else if (relu)
    for (int64_t i = 0; i < n; i++) {
      const float v = s[i] + bias;
      d[i] = v < 0.0f ? 0.0f : v;
    }
  else if (bias != 0.0f)
    for (int64_t i = 0; i < n; i++) d[i] = s[i] + bias;
  else
    row_copy(d, s, n);
}

/* the same in place: d = d (+ res), then max(., 0) with relu */
static void row_epilogue_inplace(float *d, int64_t n, const float *restrict res, int relu) {
  for (int64_t i = 0; i < n; i++) {
    const float v = res ? d[i] + res[i] : d[i];
    d[i] = relu && v < 0.0f ? 0.0f : v;
  }
}

/* col[(c*R + r)*S + s][oh*OW + ow] (row stride ld) = img[c][oh*sh - ph + r][ow*sw - pw + s],
 * zero where the window reads padding. img is one image [C,H,W]. */
static void im2col(float *col, int64_t ld, const float *img, const sf_conv2d_shape *s) {
  const int64_t C = s->C, H = s->H, W = s->W, R = s->R, S = s->S, OH = s->OH, OW = s->OW;
  const int64_t sh = s->stride_h, sw = s->stride_w, ph = s->pad_h, pw = s->pad_w;
  int64_t lo[64], hi[64]; /* per kernel column q: the output columns that read the image */
  for (int64_t q = 0; q < S && q < 64; q++) valid_range(&lo[q], &hi[q], OW, W, sw, pw, q);
  for (int64_t c = 0; c < C; c++) {
    const float *plane = img + c * H * W;
    for (int64_t r = 0; r < R; r++) {
      float *rows = col + (c * R + r) * S * ld; /* the S rows of (c, r) */
      for (int64_t oh = 0; oh < OH; oh++) {
        const int64_t ih = oh * sh - ph + r;
        if (ih < 0 || ih >= H) {
          for (int64_t q = 0; q < S; q++) row_zero(rows + q * ld + oh * OW, OW);
          continue;
        }
        const float *src = plane + ih * W;
        for (int64_t q = 0; q < S; q++) {
          float *dst = rows + q * ld + oh * OW;
          int64_t l, h;
          if (q < 64) l = lo[q], h = hi[q];
          else valid_range(&l, &h, OW, W, sw, pw, q);
          if (h <= l) {
            row_zero(dst, OW);
            continue;
          }
          row_zero(dst, l);
          if (sw == 1)
            row_copy(dst + l, src + l - pw + q, h - l);
          else
            for (int64_t ow = l; ow < h; ow++) dst[ow] = src[ow * sw - pw + q];
          row_zero(dst + h, OW - h);
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
  int64_t lo[64], hi[64];
  for (int64_t q = 0; q < S && q < 64; q++) valid_range(&lo[q], &hi[q], OW, W, sw, pw, q);
  for (int64_t c = 0; c < C; c++) {
    float *plane = img + c * H * W;
    for (int64_t r = 0; r < R; r++) {
      const float *rows = col + (c * R + r) * S * ld;
      for (int64_t oh = 0; oh < OH; oh++) {
        const int64_t ih = oh * sh - ph + r;
        if (ih < 0 || ih >= H) continue;
        float *drow = plane + ih * W;
        for (int64_t q = 0; q < S; q++) {
          int64_t l, h;
          if (q < 64) l = lo[q], h = hi[q];
          else valid_range(&l, &h, OW, W, sw, pw, q);
          if (h <= l) continue;
          const float *src = rows + q * ld + oh * OW;
          if (sw == 1)
            row_add(drow + l - pw + q, src + l, h - l);
          else
            for (int64_t ow = l; ow < h; ow++) drow[ow * sw - pw + q] += src[ow];
        }
      }
    }
  }
}

/* ---- direct path: stride-1 convolutions without columns ----
 * im2col copies every input value R*S times and sgemm then packs those columns again; for
 * the small channel counts of CIFAR networks (16-64) that traffic costs more than the
 * multiply-adds (measured: a 16->16 3x3 layer on 32x32 maps spent about 3/4 of its time
 * outside the sgemm kernel). With stride 1 the convolution is computed directly from a
 * zero-padded copy of each image, on the "wide" output grid: position j = oh*Wp + ow of
 * a row-major plane as wide as the padded input (Wp = W + 2*pad), whose columns
 * ow >= OW are discarded. On that grid every tap (r, q) reads the padded plane at the
 * constant offset r*Wp + q, so a tile of output positions x output channels is a sum of
 * vector FMAs over (input channel, tap) with contiguous input loads and broadcast
 * weights, all in registers. The wasted columns cost (Wp - OW) / OW (6% at 32x32, 25%
 * at 8x8). The input gradient of a stride-1 convolution is the same computation with the
 * kernel flipped and its channel axes swapped. Each output value is one fixed-order sum,
 * so the result does not depend on the thread count. */
#if defined(__GNUC__) && (defined(__AVX512F__) || defined(__AVX__) || defined(__SSE2__) || defined(__ARM_NEON))
#define SF_DIRECT 1
#if defined(__AVX512F__)
#define DVW 16 /* floats per vector */
#define DKB 8  /* output channels per register tile */
#define DV 3   /* vectors of positions per register tile: 24 accumulators of 32 registers */
#elif defined(__AVX__)
#define DVW 8
#define DKB 4
#define DV 3 /* 12 accumulators of 16 registers */
#else
#define DVW 4
#define DKB 4
#define DV 3
#endif
typedef float dvec __attribute__((vector_size(DVW * sizeof(float))));
typedef float dvec_u __attribute__((vector_size(DVW * sizeof(float)), aligned(4), may_alias));
/* GCC contracts a*b+c into an FMA only with -ffp-contract=fast, which ISO C mode turns
 * off; the direct kernels ask for it (their sums are in a fixed order either way), so
 * that they compute what the masked kernels' explicit FMAs do, bit for bit. An
 * unoptimised build contracts nothing: there they are optimised anyway. */
#if defined(__clang__)
#define DIRECT_FN static
#elif defined(__OPTIMIZE__)
#define DIRECT_FN static __attribute__((optimize("fp-contract=fast")))
#else
#define DIRECT_FN static __attribute__((optimize("O2", "fp-contract=fast")))
#endif
#else
#define SF_DIRECT 0
#endif

#if SF_DIRECT
/* one register tile: o[kb][0, nv*DVW) (row stride ldo) = sum over c < Ci and taps t of
 * w[(c*T + t)*Co + kb] * in[c*plane + off[t] + (0, nv*DVW)], for kb < nk */
static inline __attribute__((always_inline)) void direct_tile(float *restrict o, int64_t ldo,
                                                              const float *restrict in, int64_t plane,
                                                              const float *restrict w, int64_t Co, int64_t Ci,
                                                              const int64_t *off, int64_t T, const int nk,
                                                              const int nv) {
  dvec acc[2 * DKB][DV];
  for (int k = 0; k < nk; k++)
    for (int v = 0; v < nv; v++) acc[k][v] = (dvec){0};
  for (int64_t c = 0; c < Ci; c++) {
    const float *ic = in + c * plane;
    const float *wc = w + c * T * Co;
    for (int64_t t = 0; t < T; t++) {
      const float *ip = ic + off[t];
      const float *wt = wc + t * Co;
      dvec x[DV];
      for (int v = 0; v < nv; v++) x[v] = *(const dvec_u *)(ip + v * DVW);
      for (int k = 0; k < nk; k++) {
        const float b = wt[k];
        for (int v = 0; v < nv; v++) acc[k][v] += b * x[v];
      }
    }
  }
  for (int k = 0; k < nk; k++)
    for (int v = 0; v < nv; v++) *(dvec_u *)(o + k * ldo + v * DVW) = acc[k][v];
}

typedef void (*direct_tile_fn)(float *restrict o, int64_t ldo, const float *restrict in, int64_t plane,
                               const float *restrict w, int64_t Co, int64_t Ci, const int64_t *off, int64_t T);
#define DIRECT_TILE(name, nk, nv)                                                                                \
  DIRECT_FN void name(float *restrict o, int64_t ldo, const float *restrict in, int64_t plane,                 \
                      const float *restrict w, int64_t Co, int64_t Ci, const int64_t *off, int64_t T) {        \
    direct_tile(o, ldo, in, plane, w, Co, Ci, off, T, nk, nv);                                                 \
  }
DIRECT_TILE(direct_tile_k1v3, 1, DV)
DIRECT_TILE(direct_tile_kbv3, DKB, DV)
DIRECT_TILE(direct_tile_k1v2, 1, 2)
DIRECT_TILE(direct_tile_kbv2, DKB, 2)
DIRECT_TILE(direct_tile_k1v1, 1, 1)
DIRECT_TILE(direct_tile_kbv1, DKB, 1)
DIRECT_TILE(direct_tile_k2bv1, 2 * DKB, 1)

/* Register tile shapes: DKB channels x DV vectors of positions; DKB x 2 for planes whose
 * wide rows round up better to 2 vectors; 2*DKB x 1 (the same register count, one vector
 * load per 2*DKB broadcasts) for the smallest planes, where a 3-vector tile would pad an
 * 8x8 map's 80 wide positions to 96 and a 7x7 stride-2 map's 56 to 96. Each has a
 * single-channel variant for the remainder channels. */
typedef struct {
  int nv, kb;
  direct_tile_fn tile, one;
} direct_kind;
static const direct_kind direct_kinds[] = {
    {DV, DKB, direct_tile_kbv3, direct_tile_k1v3},
    {2, DKB, direct_tile_kbv2, direct_tile_k1v2},
    {1, 2 * DKB, direct_tile_k2bv1, direct_tile_k1v1},
    {1, DKB, direct_tile_kbv1, direct_tile_k1v1},
};

/* J wide positions rounded up to whole tiles of the kind */
static int64_t tile_pad(int64_t J, int kind) {
  const int64_t tile = direct_kinds[kind].nv * DVW;
  return (J + tile - 1) / tile * tile;
}

/* the kind with the least cost for J wide positions: padded positions over the kind's
 * speed (measured with bench_kernels: the narrower tiles run at about 93% of the
 * 3-vector tile's rate per position, so they win only where they pad much less, e.g. 8x8
 * maps: 80 positions against 96); ties to the wider tile. 2*DKB x 1 only when whole
 * blocks cover Co. */
static int direct_pick_kind(int64_t J, int64_t Co) {
  static const int speed[3] = {100, 93, 93};
  int best = 0;
  int64_t best_cost = -1;
  for (int i = 0; i < 3; i++) {
    const int64_t cost = tile_pad(J, i) * 100 / speed[i];
    if (best_cost < 0 || cost < best_cost) best = i, best_cost = cost;
  }
  if (best == 2 && Co % (2 * DKB) != 0) best = 3;
  return best;
}

/* one image's tiles: wide[k][0, Jpad) = the sum of direct_tile over all channels, k < Co */
static void direct_tiles(float *wide, int64_t ldw, const float *in, int64_t plane, const float *wp, int64_t Co,
                         int64_t Ci, const int64_t *off, int64_t T, int64_t Jpad, int kind) {
  const direct_kind *dk = &direct_kinds[kind];
  const int64_t tile = dk->nv * DVW;
  for (int64_t j0 = 0; j0 < Jpad; j0 += tile) {
    int64_t k0 = 0;
    for (; k0 + dk->kb <= Co; k0 += dk->kb) dk->tile(wide + k0 * ldw + j0, ldw, in + j0, plane, wp + k0, Co, Ci, off, T);
    for (; k0 < Co; k0++) dk->one(wide + k0 * ldw + j0, ldw, in + j0, plane, wp + k0, Co, Ci, off, T);
  }
}
#endif

/* Stride st > 1 (the forward only) splits the padded plane into st*st phase planes,
 * phase (a, b) holding the padded values at rows st*i + a and columns st*j + b: tap (r, q)
 * of output (oh, ow) then reads phase (r % st, q % st) at (oh + r/st, ow + q/st), which is
 * again a constant offset on a wide grid as wide as a phase plane (Wq). With st = 1 there
 * is one phase plane, the padded plane itself. */
typedef struct {
  int64_t Ci, Hi, Wi;  /* the input planes (for the input gradient: dout) */
  int64_t ph, pw, st;  /* padding applied to them, stride */
  int64_t Hp, Wp;      /* padded plane */
  int64_t Hq, Wq;      /* one phase plane: ceil(Hp / st) x ceil(Wp / st) */
  int64_t plane, cs;   /* floats per phase plane, per channel (st*st phase planes) */
  int64_t R, S, Co;    /* kernel and output channels */
  int64_t OH, OW;      /* output plane (dense) */
  int64_t J, Jpad;     /* wide positions OH*Wq, rounded up to whole tiles */
  int kind;            /* register tile shape (direct_kinds), chosen for the least padding */
  int64_t Jw;          /* the same rounded up to whole vectors (the weight gradient's sweep) */
  int64_t off[64];     /* per tap r*S + q: where it reads, from its channel's start */
  int64_t in_floats;   /* padded image buffer, with slack for the last tile's reads */
} direct_geom;

static void direct_geom_init(direct_geom *g, int64_t Ci, int64_t Hi, int64_t Wi, int64_t ph, int64_t pw, int64_t st,
                             int64_t R, int64_t S, int64_t Co) {
  g->Ci = Ci, g->Hi = Hi, g->Wi = Wi, g->ph = ph, g->pw = pw, g->st = st, g->R = R, g->S = S, g->Co = Co;
  g->Hp = Hi + 2 * ph, g->Wp = Wi + 2 * pw;
  g->Hq = (g->Hp + st - 1) / st, g->Wq = (g->Wp + st - 1) / st;
  g->plane = g->Hq * g->Wq, g->cs = st * st * g->plane;
  g->OH = (g->Hp - R) / st + 1, g->OW = (g->Wp - S) / st + 1;
  int64_t maxoff = 0;
  for (int64_t r = 0; r < R; r++)
    for (int64_t q = 0; q < S && r * S + q < 64; q++) {
      const int64_t o = ((r % st) * st + q % st) * g->plane + (r / st) * g->Wq + q / st;
      g->off[r * S + q] = o;
      if (o > maxoff) maxoff = o;
    }
#if SF_DIRECT
  g->J = g->OH * g->Wq;
  g->kind = direct_pick_kind(g->J, Co);
  g->Jpad = tile_pad(g->J, g->kind);
  g->Jw = (g->J + DVW - 1) / DVW * DVW;
  /* the last tile of the last channel reads up to (Jpad - 1) + maxoff past its start */
  g->in_floats = (Ci - 1) * g->cs + maxoff + g->Jpad;
  if (g->in_floats < Ci * g->cs) g->in_floats = Ci * g->cs;
#else
  g->J = g->Jpad = g->Jw = g->in_floats = 0;
#endif
}

/* The direct path serves stride-1 convolutions whose wide grid wastes at most half of
 * the work, for the forward and (when the flipped padding R-1-pad is not negative) the
 * input gradient. */
static int direct_ok(const sf_conv2d_shape *s) {
  if (!SF_DIRECT || s->stride_h != 1 || s->stride_w != 1 || s->R * s->S > 64) return 0;
  if (s->pad_h > s->R - 1 || s->pad_w > s->S - 1) return 0;
  const int64_t wp = s->W + 2 * s->pad_w;
  return 2 * wp <= 3 * s->OW;
}

/* The forward also takes stride 2 (both ways) through the phase planes, on the same
 * waste bound. */
static int direct_fwd_ok(const sf_conv2d_shape *s) {
  if (direct_ok(s)) return 1;
  if (!SF_DIRECT || s->stride_h != 2 || s->stride_w != 2 || s->R * s->S > 64) return 0;
  if (s->pad_h > s->R - 1 || s->pad_w > s->S - 1) return 0;
  const int64_t wq = (s->W + 2 * s->pad_w + 1) / 2;
  return 2 * wq <= 3 * s->OW;
}

/* 3x3 pad 1 stride 1 (forward and input gradient) on AVX-512: straight from the
 * unpadded planes with masked loads (conv2d_masked.c) */
static int masked_ok(const sf_conv2d_shape *s) {
  return direct_ok(s) && sf_conv2d_masked_ok(s->H, s->W, s->R, s->S, s->stride_h, s->stride_w, s->pad_h, s->pad_w);
}

/* ... and by Winograd's F(2x2, 3x3) when there are channels enough (conv2d_winograd.c):
 * kernel 0 the forward (Ci = C, Co = K), 1 the input gradient (Ci = K, Co = C) */
static int wino_ok(const sf_conv2d_shape *s, int kernel) {
  return masked_ok(s) && (kernel == 0 ? sf_conv2d_winograd_ok(s->C, s->K, s->H, s->W)
                                      : sf_conv2d_winograd_ok(s->K, s->C, s->H, s->W));
}
/* ... in its F(4x4, 3x3) form where that fits the plane better */
static int wino4_ok(const sf_conv2d_shape *s, int kernel) {
  return wino_ok(s, kernel) && (kernel == 0 ? sf_conv2d_winograd4_ok(s->C, s->K, s->H, s->W)
                                            : sf_conv2d_winograd4_ok(s->K, s->C, s->H, s->W));
}
/* the weight gradient by F(3x3, 2x2): channels in multiples of 4 as well */
static int wino_w_ok(const sf_conv2d_shape *s) {
  return masked_ok(s) && sf_conv2d_winograd_wgrad_ok(s->C, s->K, s->H, s->W);
}
/* ... or by the transpose of F(4x4, 3x3) where that is the forward's form */
static int wino4_w_ok(const sf_conv2d_shape *s) {
  return masked_ok(s) && sf_conv2d_winograd4_wgrad_ok(s->C, s->K, s->H, s->W);
}

/* 3x3 pad 1 stride 2 on AVX-512: the masked tiles on dense phase planes (conv2d_masked.c),
 * where the phase path would take it (forward; the input gradient: phase_bwd_ok) */
static int masked_s2_ok(const sf_conv2d_shape *s) {
  return s->stride_h == 2 &&
         sf_conv2d_masked_ok(s->H, s->W, s->R, s->S, s->stride_h, s->stride_w, s->pad_h, s->pad_w);
}

static int phase_bwd_ok(const sf_conv2d_shape *s);

/* ... and by Winograd on its phases when there are channels enough (conv2d_winograd_s2.c):
 * kernel 0 the forward, 1 the input gradient, 2 the weight gradient */
static int wino_s2_ok(const sf_conv2d_shape *s, int kernel) {
  if (!masked_s2_ok(s)) return 0;
  if (kernel == 0) return direct_fwd_ok(s) && sf_conv2d_winograd_s2_ok(s->C, s->K, s->H, s->W);
  if (kernel == 1) return phase_bwd_ok(s) && sf_conv2d_winograd_s2_ok(s->C, s->K, s->H, s->W);
  return sf_conv2d_winograd_s2_wgrad_ok(s->C, s->K, s->H, s->W);
}

/* Winograd's transformed weights for kernel 0 (forward) or 1 (input gradient), which the
 * calling thread writes after the packed weights in its scratch3; 0 when not taken */
static int64_t wino_wfloats(const sf_conv2d_shape *s, int kernel) {
  if (wino_s2_ok(s, kernel))
    return kernel == 0 ? sf_conv2d_winograd_s2_wfloats(s->C, s->K) : sf_conv2d_winograd_s2_wfloats(s->K, s->C);
  if (wino4_ok(s, kernel))
    return kernel == 0 ? sf_conv2d_winograd4_wfloats(s->C, s->K) : sf_conv2d_winograd4_wfloats(s->K, s->C);
  if (!wino_ok(s, kernel)) return 0;
  return kernel == 0 ? sf_conv2d_winograd_wfloats(s->C, s->K) : sf_conv2d_winograd_wfloats(s->K, s->C);
}

static void direct_fwd_geom(direct_geom *g, const sf_conv2d_shape *s) {
  direct_geom_init(g, s->C, s->H, s->W, s->pad_h, s->pad_w, s->stride_h, s->R, s->S, s->K);
}
static void direct_bwd_geom(direct_geom *g, const sf_conv2d_shape *s) {
  direct_geom_init(g, s->K, s->OH, s->OW, s->R - 1 - s->pad_h, s->S - 1 - s->pad_w, 1, s->R, s->S, s->C);
}


/* p [Hp,Wp] = src [Hi,Wi] placed at row top, column left, zeros around it */
static void pad_plane(float *p, const float *src, int64_t Hi, int64_t Wi, int64_t top, int64_t left, int64_t Hp,
                      int64_t Wp) {
  row_zero(p, top * Wp);
  for (int64_t h = 0; h < Hi; h++) {
    float *row = p + (top + h) * Wp;
    row_zero(row, left);
    row_copy(row + left, src + h * Wi, Wi);
    row_zero(row + left + Wi, Wp - left - Wi);
  }
  row_zero(p + (top + Hi) * Wp, (Hp - top - Hi) * Wp);
}

/* pad[c] [Hp,Wp] = img[c] [Hi,Wi] surrounded by zeros (split into phase planes when the
 * stride is above 1); the slack after the last channel is zeroed too, so the discarded
 * positions read finite values */
static void direct_pad(float *pad, const float *img, const direct_geom *g) {
  if (g->st == 1) {
    for (int64_t c = 0; c < g->Ci; c++)
      pad_plane(pad + c * g->cs, img + c * g->Hi * g->Wi, g->Hi, g->Wi, g->ph, g->pw, g->Hp, g->Wp);
  } else if (g->st == 2) {
    /* Stride 2: each image row is one row of phases (a, 0) and (a, 1), a = its padded
     * row's parity; its even columns go to one of them and its odd columns to the
     * other, in one pass (an element loop per phase row cost a third of the
     * convolution; staging the padded row in a buffer stalled on store forwarding) */
    const int64_t pw = g->pw, half = g->Wi / 2;
    for (int64_t c = 0; c < g->Ci; c++) {
      const float *src = img + c * g->Hi * g->Wi;
      float *p = pad + c * g->cs;
      for (int64_t y = 0; y < 2 * g->Hq; y++) {
        const int64_t a = y & 1, i = y >> 1, h = y - g->ph;
        float *r0 = p + (2 * a) * g->plane + i * g->Wq, *r1 = r0 + g->plane;
        row_zero(r0, g->Wq);
        row_zero(r1, g->Wq);
        if (h < 0 || h >= g->Hi) continue;
        const float *restrict srow = src + h * g->Wi;
        /* image column w sits at padded column w + pw: phase (w + pw) & 1, index (w + pw) >> 1 */
        float *restrict de = ((pw & 1) ? r1 : r0) + (pw >> 1);
        float *restrict dodd = ((pw & 1) ? r0 : r1) + ((pw + 1) >> 1);
        for (int64_t m = 0; m < half; m++) {
          de[m] = srow[2 * m];
          dodd[m] = srow[2 * m + 1];
        }
        if (g->Wi & 1) de[half] = srow[g->Wi - 1];
      }
    }
  } else {
    const int64_t st = g->st;
    for (int64_t c = 0; c < g->Ci; c++) {
      const float *src = img + c * g->Hi * g->Wi;
      for (int64_t a = 0; a < st; a++)
        for (int64_t b = 0; b < st; b++) {
          float *p = pad + c * g->cs + (a * st + b) * g->plane;
          for (int64_t i = 0; i < g->Hq; i++) {
            const int64_t h = st * i + a - g->ph; /* row of the image */
            float *row = p + i * g->Wq;
            if (h < 0 || h >= g->Hi) {
              row_zero(row, g->Wq);
              continue;
            }
            /* columns j reading the image: 0 <= st*j + b - pw < Wi */
            int64_t lo, hi;
            valid_range(&lo, &hi, g->Wq, g->Wi, st, g->pw, b);
            const float *srow = src + h * g->Wi + b - g->pw;
            row_zero(row, lo);
            for (int64_t j = lo; j < hi; j++) row[j] = srow[st * j];
            row_zero(row + hi, g->Wq - hi);
          }
        }
    }
  }
  row_zero(pad + g->Ci * g->cs, g->in_floats - g->Ci * g->cs);
}

/* out [Co, OH, OW] of one image from its input [Ci, Hi, Wi]; wp packed [(c*T + t)*Co + k];
 * pad and wide are this thread's buffers (in_floats and Co*Jpad floats) */
static void direct_image(float *out, const float *img, const float *wp, const float *bias, const direct_geom *g,
                         float *pad, float *wide, const float *res, int relu) {
#if SF_DIRECT
  const int64_t T = g->R * g->S, Co = g->Co;
  direct_pad(pad, img, g);
  direct_tiles(wide, g->Jpad, pad, g->cs, wp, Co, g->Ci, g->off, T, g->Jpad, g->kind);
  /* keep the valid columns of the wide rows */
  for (int64_t k = 0; k < Co; k++) {
    const float bk = bias ? bias[k] : 0.0f;
    for (int64_t oh = 0; oh < g->OH; oh++) {
      const int64_t o = (k * g->OH + oh) * g->OW;
      row_epilogue(out + o, wide + k * g->Jpad + oh * g->Wq, g->OW, bk, res ? res + o : NULL, relu);
    }
  }
#else
  (void)out, (void)img, (void)wp, (void)bias, (void)g, (void)pad, (void)wide, (void)res, (void)relu;
  SF_ASSERT(0);
#endif
}

typedef struct {
  float *out;
  const float *inp, *wp, *bias;
  const direct_geom *g;
  conv_epilogue ep;
} direct_ctx;

static void direct_part(void *ctx, int64_t lo, int64_t hi, int part) {
  (void)part;
  const direct_ctx *d = ctx;
  const direct_geom *g = d->g;
  float *pad = sf_scratch((size_t)g->in_floats), *wide = sf_scratch2((size_t)(g->Co * g->Jpad));
  SF_ASSERT(pad && wide); /* reserved by the caller through sf_conv2d_reserve */
  for (int64_t n = lo; n < hi; n++) {
    float *o = d->out + n * g->Co * g->OH * g->OW;
    direct_image(o, d->inp + n * g->Ci * g->Hi * g->Wi, d->wp, d->bias, g, pad, wide,
                 d->ep.residual ? d->ep.residual + n * g->Co * g->OH * g->OW : NULL, d->ep.relu);
    image_stats(&d->ep, n, o, g->Co, g->OH * g->OW);
  }
}

/* Runs the direct path over N images with packed weights wp (the caller's scratch3). */
static void direct_run(float *out, const float *inp, const float *wp, const float *bias, const direct_geom *g,
                       int64_t N, int parts, conv_epilogue ep) {
  direct_ctx d = {out, inp, wp, bias, g, ep};
  if (parts == 1) {
    direct_part(&d, 0, N, 0);
    return;
  }
  sf_parallel_for(parts, N, direct_part, &d);
}

/* ---- the input gradient of a stride-2 convolution, by phases ----
 * With stride 2, padded input row Y = 2*oh + r: row Y of the input gradient gathers the
 * taps r of its parity a = Y % 2 only (r = a + 2u), from output rows oh = Y/2 - u, and
 * likewise for columns. So each of the 4 phases (a, b) of the padded input gradient is a
 * stride-1 correlation of dout with its own sub-kernel w[., ., a + 2u, b + 2v] (taps
 * 4 + 2 + 2 + 1 for 3x3: exactly the 9 taps, nothing multiplied by an inserted zero), run
 * on the direct register tiles over dout padded by Um - 1 rows and Vm - 1 columns at the
 * top and left. Only phase rows and columns inside the image are computed, and the 2
 * column phases of a row are interleaved back in one pass. Replaces im2col + sgemm +
 * col2im, which ran at a third of the stride-1 rate here. */
typedef struct {
  int64_t K, C, H, W, OH, OW, ph, pw, R, S;
  int64_t Um, Vm;           /* most taps of a phase per axis: ceil(R/2), ceil(S/2) */
  int64_t Hd, Wd, plane;    /* padded dout plane */
  int64_t i0[2], ni[2];     /* phase rows inside the image: [i0, i0 + ni), per row parity */
  int64_t j0[2], nj[2];     /* the same for columns */
  int64_t T[4], off[4][16]; /* per phase a*2 + b: taps and their offsets in the padded plane */
  int64_t wpo[4];           /* where its packed sub-kernel starts */
  int64_t Jpad[4], ldw;     /* its wide positions (rounded to tiles); rows of the wide buffer */
  int kind[4];
  int64_t in_floats, wide_floats;
} phase_bwd_geom;

static void phase_bwd_geom_init(phase_bwd_geom *g, const sf_conv2d_shape *s) {
  memset(g, 0, sizeof *g);
  g->K = s->K, g->C = s->C, g->H = s->H, g->W = s->W, g->OH = s->OH, g->OW = s->OW;
  g->ph = s->pad_h, g->pw = s->pad_w, g->R = s->R, g->S = s->S;
  g->Um = (s->R + 1) / 2, g->Vm = (s->S + 1) / 2;
  for (int a = 0; a < 2; a++) {
    /* rows I of parity a with image row 2I + a - ph in [0, H) */
    const int64_t lo = g->ph - a <= 0 ? 0 : (g->ph - a + 1) / 2, hi = (g->H - 1 + g->ph - a) / 2;
    g->i0[a] = lo, g->ni[a] = hi >= lo ? hi - lo + 1 : 0;
    const int64_t lc = g->pw - a <= 0 ? 0 : (g->pw - a + 1) / 2, hc = (g->W - 1 + g->pw - a) / 2;
    g->j0[a] = lc, g->nj[a] = hc >= lc ? hc - lc + 1 : 0;
  }
  /* columns read: up to j0 + nj - 1 + Vm - 1, and dout's own OW + Vm - 1 */
  int64_t wd = g->OW + g->Vm - 1, hd = g->OH + g->Um - 1;
  for (int a = 0; a < 2; a++) {
    if (g->j0[a] + g->nj[a] + g->Vm - 1 > wd) wd = g->j0[a] + g->nj[a] + g->Vm - 1;
    if (g->i0[a] + g->ni[a] + g->Um - 1 > hd) hd = g->i0[a] + g->ni[a] + g->Um - 1;
  }
  g->Wd = wd, g->Hd = hd, g->plane = hd * wd;
  int64_t maxoff = 0, wpo = 0, jmax = 0;
  for (int p = 0; p < 4; p++) {
    const int a = p >> 1, b = p & 1;
    int64_t t = 0;
    for (int64_t u = 0; a + 2 * u < g->R; u++)
      for (int64_t v = 0; b + 2 * v < g->S; v++) {
        const int64_t o = (g->i0[a] - u + g->Um - 1) * wd + (g->j0[b] - v + g->Vm - 1);
        g->off[p][t++] = o;
        if (o > maxoff) maxoff = o;
      }
    g->T[p] = t, g->wpo[p] = wpo;
    wpo += t * g->K * g->C;
#if SF_DIRECT
    const int64_t J = g->ni[a] * wd;
    g->kind[p] = direct_pick_kind(J, g->C);
    g->Jpad[p] = tile_pad(J, g->kind[p]);
    if (g->Jpad[p] > jmax) jmax = g->Jpad[p];
#endif
  }
  g->ldw = jmax;
  g->in_floats = g->K * g->plane + maxoff + jmax;
  g->wide_floats = 4 * g->C * jmax;
}

/* Stride 2 both ways, kernels 2x2 to 7x7 (every phase has a tap), padding below the
 * kernel, and a wide grid that wastes at most half: Wd columns computed per phase row
 * against the widest phase's useful ones. */
static int phase_bwd_ok(const sf_conv2d_shape *s) {
  if (!SF_DIRECT || s->stride_h != 2 || s->stride_w != 2) return 0;
  if (s->R < 2 || s->S < 2 || s->R > 7 || s->S > 7) return 0;
  if (s->pad_h > s->R - 1 || s->pad_w > s->S - 1 || s->OH < 1 || s->OW < 1) return 0;
  phase_bwd_geom g;
  phase_bwd_geom_init(&g, s);
  const int64_t nj = g.nj[0] > g.nj[1] ? g.nj[0] : g.nj[1];
  return nj > 0 && 2 * g.Wd <= 3 * nj;
}

/* wp + wpo[p]: [(k*T + t)*C + c] = weight[k][c][a + 2u][b + 2v], t = the tap (u, v) */
static void phase_bwd_pack(float *wp, const float *weight, const phase_bwd_geom *g) {
  for (int p = 0; p < 4; p++) {
    const int a = p >> 1, b = p & 1;
    float *w = wp + g->wpo[p];
    for (int64_t k = 0; k < g->K; k++) {
      int64_t t = 0;
      for (int64_t u = 0; a + 2 * u < g->R; u++)
        for (int64_t v = 0; b + 2 * v < g->S; v++, t++)
          for (int64_t c = 0; c < g->C; c++)
            w[(k * g->T[p] + t) * g->C + c] = weight[((k * g->C + c) * g->R + a + 2 * u) * g->S + b + 2 * v];
    }
  }
}

static void phase_bwd_image(float *dx, const float *dy, const float *wp, const phase_bwd_geom *g, float *pad,
                            float *wide) {
#if SF_DIRECT
  const int64_t Wd = g->Wd;
  for (int64_t k = 0; k < g->K; k++)
    pad_plane(pad + k * g->plane, dy + k * g->OH * g->OW, g->OH, g->OW, g->Um - 1, g->Vm - 1, g->Hd, Wd);
  row_zero(pad + g->K * g->plane, g->in_floats - g->K * g->plane);
  for (int p = 0; p < 4; p++)
    if (g->ni[p >> 1] > 0 && g->nj[p & 1] > 0)
      direct_tiles(wide + p * g->C * g->ldw, g->ldw, pad, g->plane, wp + g->wpo[p], g->C, g->K, g->off[p], g->T[p],
                   g->Jpad[p], g->kind[p]);
  /* image column x sits at padded column x + pw, in column phase (x + pw) & 1; counted
   * from that phase's first column inside the image it is column x >> 1 there */
  const int be = (int)(g->pw & 1), bo = be ^ 1;
  const int64_t half = g->W / 2;
  for (int64_t c = 0; c < g->C; c++)
    for (int64_t y = 0; y < g->H; y++) {
      const int64_t Y = y + g->ph, a = Y & 1, i = (Y >> 1) - g->i0[a];
      const float *restrict pe = wide + ((2 * a + be) * g->C + c) * g->ldw + i * Wd;
      const float *restrict po = wide + ((2 * a + bo) * g->C + c) * g->ldw + i * Wd;
      float *restrict d = dx + (c * g->H + y) * g->W;
      for (int64_t m = 0; m < half; m++) {
        d[2 * m] = pe[m];
        d[2 * m + 1] = po[m];
      }
      if (g->W & 1) d[g->W - 1] = pe[half];
    }
#else
  (void)dx, (void)dy, (void)wp, (void)g, (void)pad, (void)wide;
  SF_ASSERT(0);
#endif
}

typedef struct {
  float *dx;
  const float *dy, *wp;
  const phase_bwd_geom *g;
} phase_bwd_ctx;

static void phase_bwd_part(void *ctx, int64_t lo, int64_t hi, int part) {
  (void)part;
  const phase_bwd_ctx *d = ctx;
  const phase_bwd_geom *g = d->g;
  float *pad = sf_scratch((size_t)g->in_floats), *wide = sf_scratch2((size_t)g->wide_floats);
  SF_ASSERT(pad && wide); /* reserved by the caller through sf_conv2d_reserve */
  for (int64_t n = lo; n < hi; n++)
    phase_bwd_image(d->dx + n * g->C * g->H * g->W, d->dy + n * g->K * g->OH * g->OW, d->wp, g, pad, wide);
}

/* The weight gradient of a 3x3 convolution of stride 1 or 2, directly:
 * dweight[k][c][t] = sum over images and wide positions j of dwide[k][j] * pad[c][j + off[t]]
 * (pad: the forward's padded plane, or its phase planes at stride 2),
 * where dwide is the image's output gradient on the wide grid with zeros in the discarded
 * columns (so they add nothing). A register tile holds DWK output channels x 9 taps of
 * vector partial sums over positions; each image's tile is summed across lanes into the
 * part's float partials. */
#if SF_DIRECT
#if defined(__AVX512F__)
#define DWK 3 /* 27 accumulators of 32 registers */
#else
#define DWK 1 /* 9 of 16 */
#endif
#if defined(__AVX512F__) || defined(__AVX__)
#include <immintrin.h>
#endif

static inline __attribute__((always_inline)) float dvec_sum(dvec v) {
  float t = 0.0f;
  for (int i = 0; i < DVW; i++) t += v[i];
  return t;
}

/* The lane sums of v[0..n), n <= DVW, as one vector: lane i = the sum of v[i]'s lanes
 * (later lanes 0). With x86 vectors a transposing tree: each step adds two vectors after
 * two constant lane permutes, halving the lanes over which each accumulator's partial
 * sums are spread, so DVW accumulators cost DVW - 1 steps where the scalar sums cost
 * DVW - 1 dependent adds and lane extractions per accumulator (measured, AVX-512 hot in
 * L1: the 27-accumulator tile on 1088 positions went from 136 to 160 GFLOP/s). The
 * pairing puts v[i]'s sum in lane i; steps whose inputs all lie past n are skipped. */
#if defined(__AVX512F__)
/* a, b -> [a.lo + a.hi | b.lo + b.hi] (halves of 8 lanes) */
static inline __attribute__((always_inline)) __m512 dsum_halves(__m512 a, __m512 b) {
  return _mm512_add_ps(_mm512_shuffle_f32x4(a, b, 0x44), _mm512_shuffle_f32x4(a, b, 0xee));
}
/* [a|a|b|b], [c|c|d|d] (quarters of 4 lanes) -> [a|b|c|d] */
static inline __attribute__((always_inline)) __m512 dsum_quarters(__m512 a, __m512 b) {
  return _mm512_add_ps(_mm512_shuffle_f32x4(a, b, 0x88), _mm512_shuffle_f32x4(a, b, 0xdd));
}
/* in each quarter: [a a a a], [e e e e] -> [a a e e] */
static inline __attribute__((always_inline)) __m512 dsum_pairs(__m512 a, __m512 b) {
  return _mm512_add_ps(_mm512_shuffle_ps(a, b, 0x44), _mm512_shuffle_ps(a, b, 0xee));
}
static inline __attribute__((always_inline)) dvec dvec_sums(const dvec *v, const int n) {
  const __m512 z = _mm512_setzero_ps();
  __m512 r[8], q[4], h[2];
  for (int m = 0; m < 4; m++) {
    r[2 * m] = m < n ? dsum_halves(v[m], m + 4 < n ? v[m + 4] : (dvec){0}) : z;
    r[2 * m + 1] = m + 8 < n ? dsum_halves(v[m + 8], m + 12 < n ? v[m + 12] : (dvec){0}) : z;
  }
  for (int m = 0; m < 4; m++) q[m] = m < n ? dsum_quarters(r[2 * m], r[2 * m + 1]) : z;
  for (int m = 0; m < 2; m++) h[m] = 2 * m < n ? dsum_pairs(q[2 * m], q[2 * m + 1]) : z;
  /* in each quarter: [a a e e], [b b f f] -> [a b e f] */
  return _mm512_add_ps(_mm512_shuffle_ps(h[0], h[1], 0x88), _mm512_shuffle_ps(h[0], h[1], 0xdd));
}
#elif defined(__AVX__)
static inline __attribute__((always_inline)) dvec dvec_sums(const dvec *v, const int n) {
  const __m256 z = _mm256_setzero_ps();
  __m256 r[4], h[2];
  /* a, b -> [a.lo + a.hi | b.lo + b.hi] (halves of 4 lanes) */
  for (int m = 0; m < 4; m++) {
    const dvec b = m + 4 < n ? v[m + 4] : (dvec){0};
    r[m] = m < n ? _mm256_add_ps(_mm256_permute2f128_ps(v[m], b, 0x20), _mm256_permute2f128_ps(v[m], b, 0x31)) : z;
  }
  /* in each half: [a a a a], [c c c c] -> [a a c c], then [a a c c], [e e g g] -> [a c e g] */
  for (int m = 0; m < 2; m++)
    h[m] = 2 * m < n ? _mm256_add_ps(_mm256_shuffle_ps(r[2 * m], r[2 * m + 1], 0x44),
                                     _mm256_shuffle_ps(r[2 * m], r[2 * m + 1], 0xee))
                     : z;
  return _mm256_add_ps(_mm256_shuffle_ps(h[0], h[1], 0x88), _mm256_shuffle_ps(h[0], h[1], 0xdd));
}
#else
static inline __attribute__((always_inline)) dvec dvec_sums(const dvec *v, const int n) {
  dvec s = {0};
  for (int i = 0; i < n; i++) s[i] = dvec_sum(v[i]);
  return s;
}
#endif

/* part[(k*C + c)*9 + t] += sum over images b < nb and j < Jpad of
 * dw[b*dstride + kw*ldd + j] * in[b*istride + j + off[t]], for kw < nk: the lane sums at
 * the end are paid once per chunk of images, not once per image */
static inline __attribute__((always_inline)) void direct_wtile(float *restrict part, int64_t C, const float *restrict dw,
                                                               int64_t ldd, int64_t dstride, const float *restrict in,
                                                               int64_t istride, int64_t nb, int64_t Jpad,
                                                               const int64_t *off, const int nk) {
  /* the loops over accumulators are unrolled so that they stay in registers (otherwise
   * GCC zeroes them with a memset and closes the tile from a copy on the stack) */
  dvec acc[DWK * 9]; /* [k*9 + t] */
#pragma GCC unroll 32
  for (int a = 0; a < nk * 9; a++) acc[a] = (dvec){0};
  for (int64_t b = 0; b < nb; b++) {
    const float *db = dw + b * dstride, *ib = in + b * istride;
    for (int64_t j = 0; j < Jpad; j += DVW) {
      dvec d[DWK];
      for (int k = 0; k < nk; k++) d[k] = *(const dvec_u *)(db + k * ldd + j);
      for (int t = 0; t < 9; t++) {
        const dvec x = *(const dvec_u *)(ib + j + off[t]);
        for (int k = 0; k < nk; k++) acc[k * 9 + t] += d[k] * x;
      }
    }
  }
  enum { NS = (DWK * 9 + DVW - 1) / DVW };
  dvec s[NS]; /* lane i of s[g]: the sum of acc[g*DVW + i] */
#pragma GCC unroll 4
  for (int g = 0; g * DVW < nk * 9; g++) {
    const int n = nk * 9 - g * DVW;
    s[g] = dvec_sums(acc + g * DVW, n < DVW ? n : DVW);
  }
#if defined(__AVX512F__)
  /* each channel's 9 taps: one two-vector permute, then a masked add into part */
  _Static_assert(NS <= 2, "a register tile's sums fit in two vectors");
  const __m512i iota = _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0);
  for (int k = 0; k < nk; k++) {
    const __m512i idx = _mm512_add_epi32(iota, _mm512_set1_epi32(9 * k)); /* lanes 16.. pick from s[1] */
    const __m512 row = k == 0 ? (__m512)s[0] : _mm512_permutex2var_ps(s[0], idx, s[NS - 1]);
    float *p = part + k * C * 9;
    _mm512_mask_storeu_ps(p, 0x1ff, _mm512_add_ps(_mm512_maskz_loadu_ps(0x1ff, p), row));
  }
#else
  for (int k = 0; k < nk; k++)
    for (int t = 0; t < 9; t++) part[k * C * 9 + t] += s[(k * 9 + t) / DVW][(k * 9 + t) % DVW];
#endif
}

DIRECT_FN void direct_wtile_full(float *restrict part, int64_t C, const float *restrict dw, int64_t ldd,
                                 int64_t dstride, const float *restrict in, int64_t istride, int64_t nb, int64_t Jpad,
                                 const int64_t *off) {
  direct_wtile(part, C, dw, ldd, dstride, in, istride, nb, Jpad, off, DWK);
}
DIRECT_FN void direct_wtile_two(float *restrict part, int64_t C, const float *restrict dw, int64_t ldd,
                                int64_t dstride, const float *restrict in, int64_t istride, int64_t nb, int64_t Jpad,
                                const int64_t *off) {
  direct_wtile(part, C, dw, ldd, dstride, in, istride, nb, Jpad, off, DWK >= 2 ? 2 : 1);
}
DIRECT_FN void direct_wtile_one(float *restrict part, int64_t C, const float *restrict dw, int64_t ldd,
                                int64_t dstride, const float *restrict in, int64_t istride, int64_t nb, int64_t Jpad,
                                const int64_t *off) {
  direct_wtile(part, C, dw, ldd, dstride, in, istride, nb, Jpad, off, 1);
}
#endif

/* 3x3 kernels at stride 1, and at stride 2 through the forward's phase planes (each tap
 * then reads its phase plane at a constant offset on the wide grid), with at most 64
 * output channels: from 128 on, im2col's sgemm is the faster one (bench_kernels, 1
 * thread, GFLOP/cpu-s, direct vs im2col: 128->128 on 8x8 70-75 vs 90-95; 64->128 stride
 * 2 on 14x14 54-58 vs 83; 64->64 on 8x8 71-72 vs 66; 16->32 stride 2 on 32x32 55-60 vs
 * 39-48) */
static int direct_w_ok(const sf_conv2d_shape *s) {
  return direct_fwd_ok(s) && s->R == 3 && s->S == 3 && s->K <= 64;
}

/* Images per chunk of the direct weight gradient: enough wide positions (about 1024) that
 * the lane sums closing each tile stay small next to its FMAs (one image of a 8x8 map has
 * only 5 vectors of positions: alone, the sums cost as much as the FMAs). */
static int64_t direct_w_chunk(const direct_geom *g) {
  int64_t b = g->Jw > 0 ? (1024 + g->Jw - 1) / g->Jw : 1;
  return b < 1 ? 1 : b > 32 ? 32 : b;
}

#if SF_DIRECT
/* part [K*C*9] += the tiles of a chunk of nb images: dw + b*dstride + k*ldd holds image
 * b's output gradient of channel k on the wide grid (Jw positions, zeros in the
 * discarded columns and past J), pad + b*in_floats its padded input */
static void direct_w_tiles(float *part, const float *dw, int64_t ldd, int64_t dstride, const float *pad,
                           const direct_geom *g, int64_t nb) {
  const int64_t C = g->Ci, K = g->Co, plane = g->cs, Jpad = g->Jw;
  const int64_t *off = g->off;
  for (int64_t c = 0; c < C; c++) {
    int64_t k = 0;
    for (; k + DWK <= K; k += DWK)
      direct_wtile_full(part + (k * C + c) * 9, C, dw + k * ldd, ldd, dstride, pad + c * plane, g->in_floats, nb, Jpad,
                        off);
    /* the remainder channels: a pair shares its input loads (a single one is load-bound) */
    if (DWK > 2 && K - k >= 2) {
      direct_wtile_two(part + (k * C + c) * 9, C, dw + k * ldd, ldd, dstride, pad + c * plane, g->in_floats, nb, Jpad,
                       off);
      k += 2;
    }
    for (; k < K; k++)
      direct_wtile_one(part + (k * C + c) * 9, C, dw + k * ldd, ldd, dstride, pad + c * plane, g->in_floats, nb, Jpad,
                       off);
  }
}
#endif

/* images [n0, n1) into part [K*C*9] (zeroed here); pad (chunk x in_floats) and dwide
 * (chunk x K*Jw): this thread's scratch */
static void direct_w_range(float *part, const float *dout, const float *inp, const direct_geom *g, int64_t n0,
                           int64_t n1, float *pad, float *dwide) {
#if SF_DIRECT
  const int64_t C = g->Ci, K = g->Co, Jpad = g->Jw, B = direct_w_chunk(g);
  row_zero(part, K * C * 9);
  for (int64_t i0 = n0; i0 < n1; i0 += B) {
    const int64_t nb = n1 - i0 < B ? n1 - i0 : B;
    for (int64_t b = 0; b < nb; b++) {
      const int64_t n = i0 + b;
      direct_pad(pad + b * g->in_floats, inp + n * C * g->Hi * g->Wi, g);
      const float *dn = dout + n * K * g->OH * g->OW;
      for (int64_t k = 0; k < K; k++) {
        float *row = dwide + (b * K + k) * Jpad;
        for (int64_t oh = 0; oh < g->OH; oh++) {
          row_copy(row + oh * g->Wq, dn + (k * g->OH + oh) * g->OW, g->OW);
          row_zero(row + oh * g->Wq + g->OW, g->Wq - g->OW);
        }
        row_zero(row + g->J, Jpad - g->J);
      }
    }
    direct_w_tiles(part, dwide, Jpad, K * Jpad, pad, g, nb);
  }
#else
  (void)part, (void)dout, (void)inp, (void)g, (void)n0, (void)n1, (void)pad, (void)dwide;
  SF_ASSERT(0);
#endif
}

typedef struct {
  const float *dout, *inp;
  const direct_geom *g;
  float *partial[256];
} direct_w_ctx;

static void direct_w_part(void *ctx, int64_t lo, int64_t hi, int part) {
  direct_w_ctx *d = ctx;
  const direct_geom *g = d->g;
  const int64_t B = direct_w_chunk(g);
  float *pad = sf_scratch((size_t)(B * g->in_floats));
  float *buf = sf_scratch2((size_t)(B * g->Co * g->Jw + g->Co * g->Ci * 9)); /* dwide, then the partials */
  SF_ASSERT(pad && buf);
  d->partial[part] = buf + B * g->Co * g->Jw;
  direct_w_range(d->partial[part], d->dout, d->inp, g, lo, hi, pad, buf);
}

/* ---- both gradients of a stride-1 3x3 convolution in one pass over dout ----
 * The input gradient pads each image's dout into planes of rows OW + 2*pw' wide (pw' =
 * S - 1 - pw, the flipped padding); with padding 1 that is Wq, the forward's wide grid,
 * which is what the weight gradient wants dout on, with zeros in the discarded columns.
 * Read from its row ph' and column pw', the padded plane is that layout: the discarded
 * columns of a row are its right padding and the next row's left padding, and the
 * positions J..Jw past the last row are the bottom padding, then the next channel's top
 * padding (or the zeroed slack after the last channel). So each image's dout is padded
 * once, for both: the input gradient's tiles run on it, and the weight gradient's tiles
 * read it in place of the copy (dwide) that its separate kernel makes. The parts, chunks
 * and sums are those of the separate kernels, so the results have the same bits. */
#define FUSED_ALIGN 16 /* floats: 64 bytes */
typedef struct {
  direct_geom f, b; /* the forward's geometry (the weight gradient's), the input gradient's */
  int64_t base;     /* where the wide layout starts in a padded dout channel */
  int64_t lead;     /* where the padded images start in a part's second scratch: past the
                       wide rows and the partials, shifted for base to be aligned */
  int64_t floats2;  /* that scratch: wide [C, Jpad'], partials [K*C*9], padded dout [B, in'] */
} fused_geom;

static int fused_geom_init(fused_geom *u, const sf_conv2d_shape *s) {
  if (!SF_DIRECT || !direct_ok(s) || !direct_w_ok(s)) return 0;
  direct_fwd_geom(&u->f, s);
  direct_bwd_geom(&u->b, s);
  const direct_geom *f = &u->f;
  direct_geom *b = &u->b;
  /* the padded dout's channels (and images) a multiple of 64 bytes apart, and the
   * buffer shifted so that each channel's wide layout starts on a cache line: the weight
   * gradient's loads of dout then never straddle two lines, as in its own dwide
   * (bench_kernels, 64->64 on 8x8: straddling, the one pass was 2-5% slower than the
   * two kernels; aligned, 5-10% faster); the input gradient's tiles take any stride */
  const int64_t cs = (b->plane + FUSED_ALIGN - 1) / FUSED_ALIGN * FUSED_ALIGN;
  int64_t in = b->in_floats + (b->Ci - 1) * (cs - b->cs);
  if (in < b->Ci * cs) in = b->Ci * cs;
  b->cs = cs, b->in_floats = (in + FUSED_ALIGN - 1) / FUSED_ALIGN * FUSED_ALIGN;
  u->base = b->ph * b->Wq + b->pw;
  const int64_t npart = (f->Co * f->Ci * 9 + FUSED_ALIGN - 1) / FUSED_ALIGN * FUSED_ALIGN;
  u->lead = b->Co * b->Jpad + npart + (FUSED_ALIGN - u->base % FUSED_ALIGN) % FUSED_ALIGN;
  u->floats2 = u->lead + direct_w_chunk(f) * b->in_floats;
  /* rows of dout as wide as the wide grid's (then the Wq - OW = 2*pw' columns between
   * them are padding) */
  if (b->st != 1 || b->Wq != f->Wq || b->Hi != f->OH || b->Wi != f->OW) return 0;
  /* the tail [J, Jw) from row ph' + OH, column pw': 2*ph' rows of zeros and the (zeroed)
   * gap between the channels before the next channel's first value; the last channel's
   * within the zeroed slack */
  if (f->Jw - f->J > 2 * b->ph * b->Wq + b->cs - b->plane) return 0;
  return (b->Ci - 1) * b->cs + u->base + f->Jw <= b->in_floats;
}

typedef struct {
  float *dinp;
  const float *dout, *inp, *wp; /* wp: the input gradient's packed (flipped) weights */
  const fused_geom *u;
  float *partial[256];
} fused_ctx;

static void fused_part(void *ctx, int64_t lo, int64_t hi, int part) {
#if SF_DIRECT
  fused_ctx *d = ctx;
  const direct_geom *f = &d->u->f, *b = &d->u->b;
  const int64_t C = f->Ci, K = f->Co, B = direct_w_chunk(f), HW = f->Hi * f->Wi, P = f->OH * f->OW;
  float *pin = sf_scratch((size_t)(B * f->in_floats));
  float *wide = sf_scratch2((size_t)d->u->floats2); /* wide, partials, padded dout */
  SF_ASSERT(pin && wide); /* reserved by the caller through sf_conv2d_reserve */
  float *acc = wide + C * b->Jpad, *pdo = wide + d->u->lead;
  d->partial[part] = acc;
  row_zero(acc, K * C * 9);
  for (int64_t i0 = lo; i0 < hi; i0 += B) {
    const int64_t nb = hi - i0 < B ? hi - i0 : B;
    for (int64_t i = 0; i < nb; i++) {
      const int64_t n = i0 + i;
      float *pd = pdo + i * b->in_floats, *dx = d->dinp + n * C * HW;
      direct_pad(pd, d->dout + n * K * P, b);
      for (int64_t k = 0; k < K; k++) row_zero(pd + k * b->cs + b->plane, b->cs - b->plane);
      direct_tiles(wide, b->Jpad, pd, b->cs, d->wp, C, K, b->off, b->R * b->S, b->Jpad, b->kind);
      for (int64_t c = 0; c < C; c++)
        for (int64_t y = 0; y < b->OH; y++)
          row_copy(dx + (c * b->OH + y) * b->OW, wide + c * b->Jpad + y * b->Wq, b->OW);
      direct_pad(pin + i * f->in_floats, d->inp + n * C * HW, f);
    }
    direct_w_tiles(acc, pdo + d->u->base, b->cs, b->in_floats, pin, f, nb);
  }
#else
  (void)ctx, (void)lo, (void)hi, (void)part;
  SF_ASSERT(0);
#endif
}

/* ---- strided 1x1 convolutions (ResNet shortcuts) ----
 * A 1x1 convolution with stride > 1 and no padding is a pointwise product of the
 * subsampled input: out[n] [K,P] = weight [K,C] @ sub[n] [C,P]. Through im2col + sgemm it
 * was an sgemm with an inner dimension of C (16-32) over a very long N, at a few GFLOP/s;
 * here the subsampled planes go through the direct register tiles (one tap), the input
 * gradient is the transposed product scattered back to the strided positions, and the
 * weight gradient one small sgemm per image. */
static int is_strided_pointwise(const sf_conv2d_shape *s) {
  return SF_DIRECT && s->R == 1 && s->S == 1 && s->pad_h == 0 && s->pad_w == 0 && (s->stride_h > 1 || s->stride_w > 1);
}

static int64_t spw_jpad(const sf_conv2d_shape *s) {
#if SF_DIRECT
  return tile_pad(s->OH * s->OW, 0); /* spw_tiles runs the widest tiles */
#else
  (void)s;
  return 0;
#endif
}

/* sub [C, ld] = inp[c][oh*sh][ow*sw], zero in [P, ld) */
static void spw_gather(float *sub, int64_t ld, const float *img, const sf_conv2d_shape *s) {
  const int64_t P = s->OH * s->OW;
  for (int64_t c = 0; c < s->C; c++) {
    const float *plane = img + c * s->H * s->W;
    float *dst = sub + c * ld;
    for (int64_t oh = 0; oh < s->OH; oh++) {
      const float *row = plane + oh * s->stride_h * s->W;
      for (int64_t ow = 0; ow < s->OW; ow++) dst[oh * s->OW + ow] = row[ow * s->stride_w];
    }
    row_zero(dst + P, ld - P);
  }
}

/* d[0, 2n) = s[0], 0, s[1], 0, ...: a stride-2 row of the input gradient */
static inline void scatter_even(float *restrict d, const float *restrict s, int64_t n) {
  for (int64_t i = 0; i < n; i++) {
    d[2 * i] = s[i];
    d[2 * i + 1] = 0.0f;
  }
}

typedef struct {
  float *out;
  const float *inp, *dout, *wp, *bias;
  const sf_conv2d_shape *s;
  conv_epilogue ep; /* forward */
  float *partial[256];
} spw_ctx;

static void spw_tiles(float *wide, const float *in, const float *wp, int64_t Ci, int64_t Co, int64_t Jpad) {
#if SF_DIRECT
  const int64_t off[1] = {0};
  direct_tiles(wide, Jpad, in, Jpad, wp, Co, Ci, off, 1, Jpad, 0);
#else
  (void)wide, (void)in, (void)wp, (void)Ci, (void)Co, (void)Jpad;
  SF_ASSERT(0);
#endif
}

static void spw_fwd_part(void *ctx, int64_t lo, int64_t hi, int part) {
  (void)part;
  const spw_ctx *d = ctx;
  const sf_conv2d_shape *s = d->s;
  const int64_t C = s->C, K = s->K, P = s->OH * s->OW, Jpad = spw_jpad(s);
  float *sub = sf_scratch((size_t)(C * Jpad)), *wide = sf_scratch2((size_t)(K * Jpad));
  SF_ASSERT(sub && wide);
  for (int64_t n = lo; n < hi; n++) {
    spw_gather(sub, Jpad, d->inp + n * C * s->H * s->W, s);
    spw_tiles(wide, sub, d->wp, C, K, Jpad);
    float *o = d->out + n * K * P;
    const float *res = d->ep.residual ? d->ep.residual + n * K * P : NULL;
    for (int64_t k = 0; k < K; k++)
      row_epilogue(o + k * P, wide + k * Jpad, P, d->bias ? d->bias[k] : 0.0f, res ? res + k * P : NULL, d->ep.relu);
    image_stats(&d->ep, n, o, K, P);
  }
}

static void spw_bwd_input_part(void *ctx, int64_t lo, int64_t hi, int part) {
  (void)part;
  const spw_ctx *d = ctx;
  const sf_conv2d_shape *s = d->s;
  const int64_t C = s->C, K = s->K, P = s->OH * s->OW, Jpad = spw_jpad(s), HW = s->H * s->W;
  float *g = sf_scratch((size_t)(K * Jpad)), *wide = sf_scratch2((size_t)(C * Jpad));
  SF_ASSERT(g && wide);
  for (int64_t n = lo; n < hi; n++) {
    for (int64_t k = 0; k < K; k++) {
      row_copy(g + k * Jpad, d->dout + (n * K + k) * P, P);
      row_zero(g + k * Jpad + P, Jpad - P);
    }
    /* dsub [C,P] = weight^T @ dout[n]: the tiles' packed weights [k*C + c] are the weight itself */
    spw_tiles(wide, g, d->wp, K, C, Jpad);
    float *img = d->out + n * C * HW;
    if (s->stride_w == 2 && s->W == 2 * s->OW) {
      /* the rows that take values, interleaved with zeros; the others zeroed */
      for (int64_t c = 0; c < C; c++)
        for (int64_t h = 0; h < s->H; h++) {
          float *row = img + c * HW + h * s->W;
          if (h % s->stride_h || h / s->stride_h >= s->OH)
            row_zero(row, s->W);
          else
            scatter_even(row, wide + c * Jpad + h / s->stride_h * s->OW, s->OW);
        }
      continue;
    }
    row_zero(img, C * HW);
    for (int64_t c = 0; c < C; c++)
      for (int64_t oh = 0; oh < s->OH; oh++) {
        float *row = img + c * HW + oh * s->stride_h * s->W;
        const float *src = wide + c * Jpad + oh * s->OW;
        for (int64_t ow = 0; ow < s->OW; ow++) row[ow * s->stride_w] = src[ow];
      }
  }
}

static void spw_bwd_weight_part(void *ctx, int64_t lo, int64_t hi, int part) {
  spw_ctx *d = ctx;
  const sf_conv2d_shape *s = d->s;
  const int64_t C = s->C, K = s->K, P = s->OH * s->OW, Jpad = spw_jpad(s);
  float *sub = sf_scratch((size_t)(C * Jpad)), *dw = sf_scratch2((size_t)(K * C));
  SF_ASSERT(sub && dw);
  row_zero(dw, K * C);
  for (int64_t n = lo; n < hi; n++) {
    spw_gather(sub, Jpad, d->inp + n * C * s->H * s->W, s);
    /* dw [K,C] += dout[n] [K,P] @ sub^T [P,C] */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, BI(K), BI(C), BI(P), 1.0f, d->dout + n * K * P, BI(P), sub,
                BI(Jpad), 1.0f, dw, BI(C));
  }
  d->partial[part] = dw;
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
  int64_t n1 = CRS * b * p, n2 = s->K * b * p + s->K * CRS;
  if (direct_fwd_ok(s)) {
    direct_geom f;
    direct_fwd_geom(&f, s);
    if (f.in_floats > n1) n1 = f.in_floats;
    if (f.Co * f.Jpad > n2) n2 = f.Co * f.Jpad;
    if (direct_w_ok(s)) { /* the weight gradient's chunks of images */
      const int64_t B = direct_w_chunk(&f);
      if (B * f.in_floats > n1) n1 = B * f.in_floats;
      if (B * f.Co * f.Jw + s->K * s->C * 9 > n2) n2 = B * f.Co * f.Jw + s->K * s->C * 9;
    }
  }
  fused_geom u;
  if (fused_geom_init(&u, s) && u.floats2 > n2) n2 = u.floats2; /* its n1: the weight gradient's, above */
  if (direct_ok(s)) {
    direct_geom g;
    direct_bwd_geom(&g, s);
    if (g.in_floats > n1) n1 = g.in_floats;
    if (g.Co * g.Jpad > n2) n2 = g.Co * g.Jpad;
  } else if (phase_bwd_ok(s)) {
    phase_bwd_geom g;
    phase_bwd_geom_init(&g, s);
    if (g.in_floats > n1) n1 = g.in_floats;
    if (g.wide_floats > n2) n2 = g.wide_floats;
  }
  if (masked_s2_ok(s)) {
    /* the phase planes of an image (forward), of its input gradient, and of a chunk of
     * images (the weight gradient) */
    const int64_t wb = direct_w_ok(s) && masked_s2_ok(s) ? sf_conv2d_masked_wgrad_chunk(s->OH, s->OW) : 1;
    const int64_t fb = sf_conv2d_masked_s2_stack(s->OH, s->OW); /* images stacked by the forward */
    const int64_t nb = wb > fb ? wb : fb, wide = fb * (s->K > 4 * s->C ? s->K : 4 * s->C) * p;
    if (nb * 4 * s->C * p > n1) n1 = nb * 4 * s->C * p; /* input phase planes */
    if (fb * s->K * p > n1) n1 = fb * s->K * p;         /* the input gradient's stacked dout */
    if (wide > n2) n2 = wide; /* the forward's stacked output, the input gradient's phases */
  }
  if (wino_w_ok(s)) { /* the weight gradient's: U; the part's sums, Mw and E */
    int64_t wu, wm;
    sf_conv2d_winograd_wgrad_scratch(s->C, s->K, s->H, s->W, &wu, &wm);
    if (wu > n1) n1 = wu;
    if (wm > n2) n2 = wm;
  }
  if (wino4_w_ok(s)) { /* the same for F(4x4, 3x3)'s transpose */
    int64_t wu, wm;
    sf_conv2d_winograd4_wgrad_scratch(s->C, s->K, s->H, s->W, &wu, &wm);
    if (wu > n1) n1 = wu;
    if (wm > n2) n2 = wm;
  }
  for (int kernel = 0; kernel < 2; kernel++)
    if (wino_ok(s, kernel)) { /* a chunk's transformed inputs and products (Ci, Co swap) */
      int64_t wu, wm;
      sf_conv2d_winograd_scratch(kernel ? s->K : s->C, kernel ? s->C : s->K, s->H, s->W, &wu, &wm);
      if (wu > n1) n1 = wu;
      if (wm > n2) n2 = wm;
    }
  for (int kernel = 0; kernel < 2; kernel++)
    if (wino4_ok(s, kernel)) { /* F(4x4, 3x3) */
      int64_t wu, wm;
      sf_conv2d_winograd4_scratch(kernel ? s->K : s->C, kernel ? s->C : s->K, s->H, s->W, &wu, &wm);
      if (wu > n1) n1 = wu;
      if (wm > n2) n2 = wm;
    }
  for (int kernel = 0; kernel < 3; kernel++)
    if (wino_s2_ok(s, kernel)) { /* stride 2: a chunk's transforms and products */
      int64_t wu, wm;
      sf_conv2d_winograd_s2_scratch(kernel, s->C, s->K, s->H, s->W, &wu, &wm);
      if (wu > n1) n1 = wu;
      if (wm > n2) n2 = wm;
    }
  if (is_strided_pointwise(s)) {
    const int64_t big = (s->C > s->K ? s->C : s->K) * spw_jpad(s);
    if (big > n1) n1 = big;
    if (big > n2) n2 = big;
    if (s->K * s->C > n2) n2 = s->K * s->C;
  }
  if (!sf_scratch((size_t)n1) || !sf_scratch2((size_t)n2)) fail[part] = 1;
}

int sf_conv2d_reserve(const sf_conv2d_shape *s) {
  if (is_pointwise(s) || s->N == 0) return 0;
  const int parts = conv_parts(s);
  int fail[256] = {0};
  void *ctx[2] = {(void *)s, fail};
  /* every part reserves its own thread's scratch; a part's sizes are those of a chunk */
  sf_parallel_for(parts, parts, reserve_part, ctx);
  /* the direct path's packed weights: prepared by the calling thread for every part */
  const int64_t vf = wino_wfloats(s, 0) > wino_wfloats(s, 1) ? wino_wfloats(s, 0) : wino_wfloats(s, 1);
  if ((direct_fwd_ok(s) || is_strided_pointwise(s) || phase_bwd_ok(s)) &&
      !sf_scratch3((size_t)(s->K * s->C * s->R * s->S + vf)))
    return sf_err("conv2d: out of memory allocating the packed weights");
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
  conv_epilogue ep;    /* forward */
  float *partial[256]; /* backward weight: each part's dwt [CRS,K] */
} conv_ctx;

/* out[b] [K,P] = tmp[:, b*P:(b+1)*P] + bias, for the nb images of a chunk (tmp [K, nb*P]) */
static void scatter_out(float *out, const float *tmp, const float *bias, int64_t nb, int64_t K, int64_t P,
                        const float *res, int relu) {
  const int64_t ld = nb * P;
  for (int64_t b = 0; b < nb; b++)
    for (int64_t k = 0; k < K; k++) {
      const int64_t o = (b * K + k) * P;
      row_epilogue(out + o, tmp + k * ld + b * P, P, bias ? bias[k] : 0.0f, res ? res + o : NULL, relu);
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
      if (c->ep.residual || c->ep.relu) /* in place, while the image is in cache */
        row_epilogue_inplace(o, K * P, c->ep.residual ? c->ep.residual + i0 * K * P : NULL, c->ep.relu);
      image_stats(&c->ep, i0, o, K, P);
      continue;
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, BI(K), BI(ld), BI(CRS), 1.0f, c->weight, BI(CRS), col,
                BI(ld), 0.0f, tmp, BI(ld));
    scatter_out(o, tmp, c->bias, nb, K, P, c->ep.residual ? c->ep.residual + i0 * K * P : NULL, c->ep.relu);
    for (int64_t b = 0; b < nb; b++) image_stats(&c->ep, i0 + b, o + b * K * P, K, P);
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

/* The im2col forward and input gradient split whole chunks of images over the parts
 * (chunks [lo, hi) of sf_conv2d_chunk_images images each), so that every image meets the
 * same sgemm shapes, and takes the same one-image or several-image path, at any thread
 * count: the same bits. (Split by images, a part's chunks started at its first image, and
 * a 12x3 plane's forward differed in the last bits between 1 and 3 threads.) */
static void chunk_images(const conv_ctx *c, int64_t lo, int64_t hi, int64_t *n0, int64_t *n1) {
  const int64_t B = sf_conv2d_chunk_images(c->s), N = c->s->N;
  *n0 = lo * B < N ? lo * B : N;
  *n1 = hi * B < N ? hi * B : N;
}
static int64_t n_chunks(const sf_conv2d_shape *s) {
  const int64_t B = sf_conv2d_chunk_images(s);
  return (s->N + B - 1) / B;
}
static void fwd_part(void *ctx, int64_t lo, int64_t hi, int part) {
  (void)part;
  int64_t n0, n1;
  chunk_images(ctx, lo, hi, &n0, &n1);
  fwd_range(ctx, n0, n1);
}
static void bwd_input_part(void *ctx, int64_t lo, int64_t hi, int part) {
  (void)part;
  int64_t n0, n1;
  chunk_images(ctx, lo, hi, &n0, &n1);
  bwd_input_range(ctx, n0, n1);
}
static void bwd_weight_part(void *ctx, int64_t lo, int64_t hi, int part) {
  conv_ctx *c = ctx;
  /* the part's dwt lives in its thread's scratch, untouched until that thread's next job */
  c->partial[part] = bwd_weight_range(c, lo, hi);
}

void sf_conv2d_forward(float *out, const float *inp, const float *weight, const float *bias, const sf_conv2d_shape *s) {
  sf_conv2d_forward_stats(out, NULL, inp, weight, bias, NULL, 0, s);
}

void sf_conv2d_forward_ex(float *out, const float *inp, const float *weight, const float *bias,
                          const float *residual, int relu, const sf_conv2d_shape *s) {
  sf_conv2d_forward_stats(out, NULL, inp, weight, bias, residual, relu, s);
}

void sf_conv2d_forward_stats(float *out, float *stats, const float *inp, const float *weight, const float *bias,
                             const float *residual, int relu, const sf_conv2d_shape *s) {
  sf_nn_count(SF_K_CONV_FWD);
  const conv_epilogue ep = {residual, relu, stats};
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
      if (residual || relu) row_epilogue_inplace(o, K * P, residual ? residual + n * K * P : NULL, relu);
      image_stats(&ep, n, o, K, P);
    }
    return;
  }
  const int parts = conv_parts(s);
  if (is_strided_pointwise(s)) {
    float *wp = sf_scratch3((size_t)(K * C)); /* wp[c*K + k] = weight[k][c] */
    SF_ASSERT(wp);
    for (int64_t k = 0; k < K; k++)
      for (int64_t c = 0; c < C; c++) wp[c * K + k] = weight[k * C + c];
    spw_ctx d = {.out = out, .inp = inp, .wp = wp, .bias = bias, .s = s, .ep = ep};
    sf_parallel_for_blas(parts, N, spw_fwd_part, &d);
    return;
  }
  if (direct_fwd_ok(s)) {
    /* wp[((c*R + r)*S + q)*K + k] = weight[k][c][r][q] */
    const int64_t T = s->R * s->S;
    /* and after them, Winograd's transformed weights */
    float *wp = sf_scratch3((size_t)(K * C * T + wino_wfloats(s, 0)));
    SF_ASSERT(wp);
    /* rows of wp written in turn (the other order scattered its stores: 59 -> 10 us for
     * 64 x 64 x 3 x 3, on the calling thread while the pool waits) */
    for (int64_t j = 0; j < C * T; j++)
      for (int64_t k = 0; k < K; k++) wp[j * K + k] = weight[k * C * T + j];
    if (wino4_ok(s, 0)) {
      sf_conv2d_winograd4_run(out, inp, wp, wp + K * C * T, N, C, K, s->H, s->W, bias, residual, relu, stats, parts);
      return;
    }
    if (wino_ok(s, 0)) {
      sf_conv2d_winograd_run(out, inp, wp, wp + K * C * T, N, C, K, s->H, s->W, bias, residual, relu, stats, parts);
      return;
    }
    if (masked_ok(s) &&
        sf_conv2d_masked_run(out, inp, wp, N, C, K, s->H, s->W, bias, residual, relu, stats, parts) == 0)
      return;
    if (wino_s2_ok(s, 0)) {
      sf_conv2d_winograd_s2_run(out, inp, wp, wp + K * C * T, N, C, K, s->H, s->W, bias, residual, relu, stats,
                                parts);
      return;
    }
    if (masked_s2_ok(s) &&
        sf_conv2d_masked_s2_run(out, inp, wp, N, C, K, s->H, s->W, bias, residual, relu, stats, parts) == 0)
      return;
    direct_geom g;
    direct_fwd_geom(&g, s);
    direct_run(out, inp, wp, bias, &g, N, parts, ep);
    return;
  }
  conv_ctx c = {.out = out, .inp = inp, .weight = weight, .bias = bias, .s = s, .ep = ep};
  sf_parallel_for_blas(parts, n_chunks(s), fwd_part, &c);
}

/* The input gradient is a convolution of dout (K channels) with the flipped kernel,
 * channels swapped: returns wp[((k*R + r)*S + q)*C + c] = weight[k][c][R-1-r][S-1-q], in
 * the calling thread's scratch3 */
static const float *pack_flipped(const float *weight, const sf_conv2d_shape *s) {
  const int64_t K = s->K, C = s->C, R = s->R, S = s->S;
  float *wp = sf_scratch3((size_t)(K * C * R * S + wino_wfloats(s, 1))); /* Winograd's after */
  SF_ASSERT(wp); /* reserved by the caller through sf_conv2d_reserve */
  for (int64_t k = 0; k < K; k++) /* wp written in order */
    for (int64_t r = 0; r < R; r++)
      for (int64_t q = 0; q < S; q++)
        for (int64_t c = 0; c < C; c++)
          wp[((k * R + r) * S + q) * C + c] = weight[((k * C + c) * R + (R - 1 - r)) * S + (S - 1 - q)];
  return wp;
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
  const int parts = conv_parts(s);
  if (is_strided_pointwise(s)) {
    spw_ctx d = {.out = dinp, .dout = dout, .wp = weight, .s = s};
    sf_parallel_for_blas(parts, N, spw_bwd_input_part, &d);
    return;
  }
  if (direct_ok(s)) {
    const float *wp = pack_flipped(weight, s);
    if (wino4_ok(s, 1)) {
      sf_conv2d_winograd4_run(dinp, dout, wp, (float *)wp + K * C * 9, N, K, C, s->H, s->W, NULL, NULL, 0, NULL, parts);
      return;
    }
    if (wino_ok(s, 1)) {
      /* the transformed weights after the packed ones (sf_conv2d_reserve made room) */
      sf_conv2d_winograd_run(dinp, dout, wp, (float *)wp + K * C * 9, N, K, C, s->H, s->W, NULL, NULL, 0, NULL, parts);
      return;
    }
    if (masked_ok(s) && sf_conv2d_masked_run(dinp, dout, wp, N, K, C, s->H, s->W, NULL, NULL, 0, NULL, parts) == 0)
      return;
    direct_geom g;
    direct_bwd_geom(&g, s);
    direct_run(dinp, dout, wp, NULL, &g, N, parts, (conv_epilogue){NULL, 0, NULL});
    return;
  }
  if (wino_s2_ok(s, 1)) {
    const float *wp = pack_flipped(weight, s); /* the transformed weights after it */
    sf_conv2d_winograd_s2_backward_input(dinp, dout, wp, (float *)wp + K * C * 9, N, K, C, s->H, s->W, parts);
    return;
  }
  if (phase_bwd_ok(s)) {
    float *wp = sf_scratch3((size_t)(K * C * s->R * s->S));
    SF_ASSERT(wp);
    if (masked_s2_ok(s)) {
      sf_conv2d_masked_s2_bwd_pack(wp, weight, K, C);
      if (sf_conv2d_masked_s2_backward_input(dinp, dout, wp, N, K, C, s->H, s->W, parts) == 0) return;
    }
    phase_bwd_geom g;
    phase_bwd_geom_init(&g, s);
    phase_bwd_pack(wp, weight, &g);
    phase_bwd_ctx d = {dinp, dout, wp, &g};
    sf_parallel_for(parts, N, phase_bwd_part, &d); /* one part runs on this thread */
    return;
  }
  conv_ctx c = {.out = dinp, .dout = dout, .weight = weight, .s = s};
  sf_parallel_for_blas(parts, n_chunks(s), bwd_input_part, &c);
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

/* dweight[j] += scale * (the parts' partial sums of j, added in part order): fixed for a
 * given thread count */
static void add_partials(float *dweight, float *const *partial, int parts, int64_t n, float scale) {
  for (int64_t j = 0; j < n; j++) {
    float t = 0.0f;
    for (int p = 0; p < parts; p++) t += partial[p][j];
    dweight[j] += scale * t;
  }
}

/* dbias += scale * the sums of dout: channels are independent sums, split over them (the
 * result is the serial one) */
static void bias_run(float *dbias, const float *dout, const sf_conv2d_shape *s, float scale) {
  const int64_t K = s->K, P = s->OH * s->OW, per = s->N * P;
  bias_ctx b = {dbias, dout, s->N, K, P, scale};
  sf_parallel_for(sf_parallel_parts(K, per >= 65536 ? 1 : 65536 / (per > 0 ? per : 1)), K, bias_part, &b);
}

void sf_conv2d_backward_weight(float *dweight, float *dbias, const float *dout, const float *inp,
                               const sf_conv2d_shape *s, float scale) {
  if (!dweight && !dbias) return;
  sf_nn_count(SF_K_CONV_BWD_WEIGHT);
  const int64_t N = s->N, C = s->C, K = s->K, CRS = s->C * s->R * s->S, P = s->OH * s->OW, HW = s->H * s->W;
  if (N == 0) return;
  if (dbias) bias_run(dbias, dout, s, scale);
  if (!dweight) return;
  sf_threads_ensure();
  if (is_pointwise(s)) {
    /* dweight [K,C] += scale * dout[n] [K,P] @ inp[n]^T [P,C] */
    for (int64_t n = 0; n < N; n++)
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, BI(K), BI(C), BI(P), scale, dout + n * K * P, BI(P),
                  inp + n * C * HW, BI(P), 1.0f, dweight, BI(C));
    return;
  }
  const int parts = conv_parts(s);
  if (is_strided_pointwise(s)) {
    spw_ctx d = {.inp = inp, .dout = dout, .s = s};
    sf_parallel_for_blas(parts, N, spw_bwd_weight_part, &d);
    add_partials(dweight, d.partial, parts, K * C, scale);
    return;
  }
  if (wino4_w_ok(s)) {
    float *partial[256];
    if (sf_conv2d_winograd4_wgrad(partial, parts, dout, inp, N, C, K, s->H, s->W) == 0) {
      add_partials(dweight, partial, parts, K * CRS, scale);
      return;
    }
  }
  if (wino_w_ok(s)) {
    float *partial[256];
    if (sf_conv2d_winograd_wgrad(partial, parts, dout, inp, N, C, K, s->H, s->W) == 0) {
      add_partials(dweight, partial, parts, K * CRS, scale);
      return;
    }
  }
  if (wino_s2_ok(s, 2)) {
    float *partial[256];
    if (sf_conv2d_winograd_s2_wgrad(partial, parts, dout, inp, N, C, K, s->H, s->W) == 0) {
      add_partials(dweight, partial, parts, K * CRS, scale);
      return;
    }
  }
  /* the masked kernel at stride 2 too, on every output plane: on the ResNets' 16x16 and 8x8
   * it beat the padded phase planes (32x32 -> 16x16, 16 -> 32 channels: 72 -> 80
   * GFLOP/cpu-s; 16x16 -> 8x8, 32 -> 64: 66 -> 76); on the small CNN's 28x28 -> 14x14,
   * 32 -> 64 it lost on a Zen 5 machine (72 against 76) but wins by far on Zen 4 (69 against
   * 43 GFLOP/s, batch 128, one thread) */
  if (direct_w_ok(s) && (masked_ok(s) || masked_s2_ok(s))) {
    float *partial[256];
    if (sf_conv2d_masked_wgrad(partial, parts, dout, inp, N, C, K, s->H, s->W, (int)s->stride_h) == 0) {
      add_partials(dweight, partial, parts, K * CRS, scale);
      return;
    }
  }
  if (direct_w_ok(s)) {
    direct_geom g;
    direct_fwd_geom(&g, s);
    direct_w_ctx d = {.dout = dout, .inp = inp, .g = &g};
    if (parts == 1)
      direct_w_part(&d, 0, N, 0);
    else
      sf_parallel_for(parts, N, direct_w_part, &d);
    add_partials(dweight, d.partial, parts, K * CRS, scale);
    return;
  }
  conv_ctx c = {.inp = inp, .dout = dout, .s = s};
  if (parts == 1) {
    const float *dwt = bwd_weight_range(&c, 0, N);
    for (int64_t k = 0; k < K; k++)
      for (int64_t j = 0; j < CRS; j++) dweight[k * CRS + j] += scale * dwt[j * K + k];
    return;
  }
  sf_parallel_for_blas(parts, N, bwd_weight_part, &c);
  /* partial sums added in part order, then scaled: fixed for a given thread count */
  for (int64_t k = 0; k < K; k++)
    for (int64_t j = 0; j < CRS; j++) {
      float t = 0.0f;
      for (int p = 0; p < parts; p++) t += c.partial[p][j * K + k];
      dweight[k * CRS + j] += scale * t;
    }
}

void sf_conv2d_backward(float *dinp, float *dweight, float *dbias, const float *dout, const float *inp,
                        const float *weight, const sf_conv2d_shape *s, float scale) {
  fused_geom u;
  /* the masked kernels (AVX-512) read dout and the input unpadded, each once: nothing to share */
  if (!dinp || !dweight || masked_ok(s) || !fused_geom_init(&u, s)) {
    sf_conv2d_backward_weight(dweight, dbias, dout, inp, s, scale);
    sf_conv2d_backward_input(dinp, dout, weight, s);
    return;
  }
  sf_nn_count(SF_K_CONV_BWD_WEIGHT);
  sf_nn_count(SF_K_CONV_BWD_INPUT);
  if (s->N == 0) return;
  if (dbias) bias_run(dbias, dout, s, scale);
  sf_threads_ensure();
  const int parts = conv_parts(s);
  fused_ctx d = {.dinp = dinp, .dout = dout, .inp = inp, .wp = pack_flipped(weight, s), .u = &u};
  if (parts == 1)
    fused_part(&d, 0, s->N, 0);
  else
    sf_parallel_for(parts, s->N, fused_part, &d);
  add_partials(dweight, d.partial, parts, s->K * s->C * 9, scale);
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

/* buf = the register tile shapes ("channels x vectors", comma-separated) a direct path
 * of `kernel` (0 forward, 1 input gradient) uses for this geometry; "" for other paths */
void sf_conv2d_tiles(char *buf, size_t n, const sf_conv2d_shape *s, int kernel) {
  int used[8] = {0};
  if (n) buf[0] = 0;
#if SF_DIRECT
  if (is_pointwise(s) || is_strided_pointwise(s)) return;
  const int ms2 = (kernel == 0 && direct_fwd_ok(s) && masked_s2_ok(s)) || (kernel == 1 && phase_bwd_ok(s) && masked_s2_ok(s));
  if ((kernel == 0 || kernel == 1) && (wino_ok(s, kernel) || wino_s2_ok(s, kernel))) {
    if (n > 16) snprintf(buf, n, "w%dx3", 8); /* the products' register tile */
    return;
  }
  if ((kernel == 0 || kernel == 1) && (masked_ok(s) || ms2)) {
    /* the masked path's tile over the dense plane (the output's), e.g. "m8x3", or
     * "m12x2,m8x2" with blocks of 12 channels first */
    int kb, nv, kw;
    const int64_t P = ms2 ? s->OH * s->OW * sf_conv2d_masked_s2_stack(s->OH, s->OW) : s->H * s->W; /* the grid */
    sf_conv2d_masked_kind(P, kernel == 0 ? s->K : s->C, ms2, &kb, &nv, &kw);
    if (n > 32 && kw)
      snprintf(buf, n, "m%dx%d,m%dx%d", kw, nv, kb, nv);
    else if (n > 16)
      snprintf(buf, n, "m%dx%d", kb, nv);
    return;
  }
  if (kernel == 0 && direct_fwd_ok(s)) {
    direct_geom g;
    direct_fwd_geom(&g, s);
    used[g.kind] = 1;
  } else if (kernel == 1 && direct_ok(s)) {
    direct_geom g;
    direct_bwd_geom(&g, s);
    used[g.kind] = 1;
  } else if (kernel == 1 && phase_bwd_ok(s)) {
    phase_bwd_geom g;
    phase_bwd_geom_init(&g, s);
    for (int p = 0; p < 4; p++)
      if (g.ni[p >> 1] > 0 && g.nj[p & 1] > 0) used[g.kind[p]] = 1;
  }
  size_t len = 0;
  for (int k = 0; k < (int)(sizeof direct_kinds / sizeof direct_kinds[0]); k++)
    if (used[k] && len + 16 < n)
      len += (size_t)snprintf(buf + len, n - len, "%s%dx%d", len ? "," : "", direct_kinds[k].kb, direct_kinds[k].nv);
#else
  (void)s, (void)kernel, (void)used;
#endif
}

const char *sf_conv2d_path(const sf_conv2d_shape *s, int kernel) {
  if (kernel == 3) {
    fused_geom u;
    return !masked_ok(s) && fused_geom_init(&u, s) ? "direct-fused" : "separate";
  }
  if (is_pointwise(s)) return "pointwise";
  if (is_strided_pointwise(s)) return "strided-pointwise";
  switch (kernel) {
  case 0:
    return wino4_ok(s, 0)   ? "winograd4"
           : wino_ok(s, 0)  ? "winograd"
           : wino_s2_ok(s, 0) ? "winograd-phase"
           : masked_ok(s)   ? "direct-masked"
           : direct_ok(s)   ? "direct"
           : direct_fwd_ok(s) ? (masked_s2_ok(s) ? "direct-masked-phase" : "direct-phase")
                            : "im2col";
  case 1:
    return wino4_ok(s, 1)   ? "winograd4"
           : wino_ok(s, 1)  ? "winograd"
           : wino_s2_ok(s, 1) ? "winograd-phase"
           : masked_ok(s)   ? "direct-masked"
           : direct_ok(s)   ? "direct"
           : phase_bwd_ok(s) ? (masked_s2_ok(s) ? "direct-masked-phase" : "direct-phase")
                            : "im2col";
  default:
    if (wino4_w_ok(s)) return "winograd4";
    if (wino_w_ok(s)) return "winograd";
    if (wino_s2_ok(s, 2)) return "winograd-phase";
    return direct_w_ok(s) ? (masked_ok(s) ? "direct-masked" : masked_s2_ok(s) ? "direct-masked-phase" : "direct")
                          : "im2col";
  }
}
