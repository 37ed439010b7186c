/* The stride-1 3x3 pad-1 convolution (and its input gradient: the same with the kernel
 * flipped) straight from the unpadded planes, with AVX-512 masked loads; and the
 * stride-2 one on each image's dense phase planes (the section "stride 2" below).
 *
 * The direct path of conv2d.c copies each image into zero-padded planes and computes a
 * "wide" output grid as wide as the padded rows, then copies the valid columns out. On
 * the dense grid instead (position j = oh*W + ow of the plane itself), tap (r, q) reads
 * the plane at the constant offset (r-1)*W + (q-1), and the reads that fall outside the
 * image (the first or last column or row of a tap, or past the plane) are exactly the
 * lanes where the padded copy held zeros: a masked load reads zeros there and never
 * touches the memory behind them. So there is no padded copy, no wasted columns (2/W of
 * the work on the wide grid: 6% at 32x32, 25% at 8x8) and no copy-out: the tiles write
 * the output (with the bias, residual and ReLU epilogue) directly.
 *
 * Each output is the same fixed-order sum as on the direct path (over input channels,
 * then taps, one FMA each; a masked zero adds exactly what the padded zero did), so the
 * results do not depend on the thread count. */
#include "conv2d_masked.h"

#include <stdlib.h>

#include "../core/parallel.h"
#include "nn.h"

#if defined(__AVX512F__) && defined(__GNUC__)
#include <immintrin.h>

#define MV 16 /* floats per vector */

/* the first n lanes (n clamped to 0..MV) */
static inline int64_t lanes(int64_t n) { return n <= 0 ? 0 : n >= MV ? MV : n; }
static inline __mmask16 lane_mask(int64_t n) { return (__mmask16)((1u << lanes(n)) - 1u); }

/* the forward's epilogue on one vector of an output row, in the direct path's order:
 * + bias, + residual (its lanes in keep), then max(., 0) as v < 0 ? 0 : v, so that a NaN
 * stays NaN (as ReLU) */
static inline __attribute__((always_inline)) __m512 epilogue(__m512 y, const float *bias, int64_t k,
                                                             const float *res, __mmask16 keep, int relu) {
  if (bias) y = _mm512_add_ps(y, _mm512_set1_ps(bias[k]));
  if (res) y = _mm512_add_ps(y, _mm512_maskz_loadu_ps(keep, res));
  if (relu) y = _mm512_mask_mov_ps(y, _mm512_cmp_ps_mask(y, _mm512_setzero_ps(), _CMP_LT_OQ), _mm512_setzero_ps());
  return y;
}

typedef struct {
  int64_t Ci, Co, H, W, P;  /* input and output channels, the (output) grid, positions per plane */
  int64_t cs;               /* floats per input channel (P, or 4P for the stride-2 phase planes) */
  int64_t T;                /* taps */
  int64_t nvec;             /* vectors of positions per plane: ceil(P / MV) */
  const __mmask16 *mask;    /* [nvec + 3][T]: the lanes of vector v that tap t reads inside its plane */
  int64_t off[9];           /* where tap t reads, from its input channel's start (stride 1: tap
                               t = r*3 + q at (r-1)*W + (q-1)) */
  int64_t nb, Hi;           /* images stacked on the grid (H = nb*Hi rows), rows per image */
  int kind;                 /* register tile shape (mkinds) */
} mgeom;

/* stride 2: tap t = r*3 + q reads phase plane s2_plane[t] (see the stride-2 section
 * below) at row shift s2_dr[t] and column shift s2_dq[t] */
static const int s2_plane[9] = {3, 2, 3, 1, 0, 1, 3, 2, 3};
static const int s2_dr[9] = {-1, -1, -1, 0, 0, 0, 0, 0, 0};
static const int s2_dq[9] = {-1, 0, 0, -1, 0, 0, -1, 0, 0};

typedef struct {
  const float *bias;     /* [Co] or NULL */
  const float *residual; /* [N, Co, P] or NULL */
  int relu;
  float *stats;          /* [N, Co, 2] or NULL */
} mepi;

/* One register tile: nk output channels x nv vectors of positions from position j0
 * (vector v0 = j0 / MV): o[k][j0 + v*MV + lane] over the input channels and 9 taps, then
 * + bias, + residual, ReLU as the direct path's epilogue does (same order), stored masked
 * at the plane's end. */
static inline __attribute__((always_inline)) void mtile(float *restrict o, const float *restrict in,
                                                        const float *restrict w, const mgeom *g, int64_t j0,
                                                        int64_t k0, const mepi *e, const float *restrict res,
                                                        const int nk, const int nv) {
  __m512 acc[16][3];
  /* every loop over the accumulators fully unrolled: otherwise GCC keeps them in memory */
#pragma GCC unroll 16
  for (int k = 0; k < nk; k++)
#pragma GCC unroll 3
    for (int v = 0; v < nv; v++) acc[k][v] = _mm512_setzero_ps();
  const int64_t Co = g->Co, P = g->P;
  const int64_t T = g->T, cs = g->cs;
  const __mmask16 *m = g->mask + (j0 / MV) * T;
  const float *ib = in + j0;
  for (int64_t c = 0; c < g->Ci; c++) {
    const float *ic = ib + c * cs;
    const float *wc = w + c * T * Co + k0;
    for (int64_t t = 0; t < T; t++) {
      const float *ip = ic + g->off[t];
      __m512 x[3];
#pragma GCC unroll 3
      for (int v = 0; v < nv; v++) x[v] = _mm512_maskz_loadu_ps(m[v * T + t], ip + v * MV);
#pragma GCC unroll 16
      for (int k = 0; k < nk; k++) {
        const __m512 b = _mm512_set1_ps(wc[t * Co + k]);
#pragma GCC unroll 3
        for (int v = 0; v < nv; v++) acc[k][v] = _mm512_fmadd_ps(b, x[v], acc[k][v]);
      }
    }
  }
#pragma GCC unroll 3
  for (int v = 0; v < nv; v++) {
    const int64_t j = j0 + v * MV;
    const __mmask16 keep = lane_mask(P - j);
#pragma GCC unroll 16
    for (int k = 0; k < nk; k++) {
      const __m512 y = epilogue(acc[k][v], e->bias, k0 + k, res ? res + (k0 + k) * P + j : NULL, keep, e->relu);
      _mm512_mask_storeu_ps(o + (k0 + k) * P + j, keep, y);
    }
  }
}

typedef void (*mtile_fn)(float *restrict o, const float *restrict in, const float *restrict w, const mgeom *g,
                         int64_t j0, int64_t k0, const mepi *e, const float *restrict res);
#define MTILE(name, nk, nv)                                                                                    \
  static void name(float *restrict o, const float *restrict in, const float *restrict w, const mgeom *g,       \
                   int64_t j0, int64_t k0, const mepi *e, const float *restrict res) {                         \
    mtile(o, in, w, g, j0, k0, e, res, nk, nv);                                                                \
  }
MTILE(mtile_8v3, 8, 3)
MTILE(mtile_1v3, 1, 3)
MTILE(mtile_12v2, 12, 2)
MTILE(mtile_8v2, 8, 2)
MTILE(mtile_1v2, 1, 2)
MTILE(mtile_16v1, 16, 1)
MTILE(mtile_8v1, 8, 1)
MTILE(mtile_1v1, 1, 1)

/* Tile shapes as on the direct path: 8 channels x 3 vectors, x 2 vectors where positions
 * round up better to 2, 16 x 1 for the smallest planes (8 x 1 when the channels do not
 * fill 16); each with a one-channel variant for the remainder channels. The 2-vector
 * shape also has 12 channels (24 accumulators: 2 masked loads per 12 broadcasts, against
 * 2 per 8; 167 against 156 GFLOP/s with its operands in L1), used for as many blocks of
 * 12 as leave the rest to whole blocks of 8 (32 = 12 + 12 + 8, 64 = 4 x 12 + 2 x 8). */
typedef struct {
  int kb, nv;
  mtile_fn tile, one;
  int kw; /* a wider block, or 0 */
  mtile_fn wide;
} mkind;
static const mkind mkinds[] = {
    {8, 3, mtile_8v3, mtile_1v3, 0, NULL},
    {8, 2, mtile_8v2, mtile_1v2, 12, mtile_12v2},
    {16, 1, mtile_16v1, mtile_1v1, 0, NULL},
    {8, 1, mtile_8v1, mtile_1v1, 0, NULL},
};

/* blocks of mk->kw channels for Co: the most that leave fewest one-channel remainders */
static int64_t wide_blocks(const mkind *mk, int64_t Co) {
  if (!mk->kw) return 0;
  int64_t best = 0;
  for (int64_t n = 1; n * mk->kw <= Co; n++)
    if ((Co - n * mk->kw) % mk->kb <= (Co - best * mk->kw) % mk->kb) best = n;
  return best;
}

/* the shape with the least padded positions over its speed (the narrower tiles run at
 * about 93% of the 3-vector tile's rate per position, as on the direct path, on a core with
 * two 512-bit FMA pipes). narrow (the stride-2 geometries) takes 16 x 1 whenever the
 * channels fill it: on a core with one FMA per cycle (Zen 4) it ran fastest on all four
 * stride-2 layers of the bench's models (batch 128, one thread, forward: 32->64 on 16x16
 * 3.6 -> 3.3 ms, 16->32 on 32x32 4.1 -> 3.7, the small CNN's 12.7 -> 11.1 and 11.2 -> 10.0
 * against 8 x 3), though not on wider stride-1 layers (64->64 on 8x8: 6.3 -> 9.8), and the
 * stride-1 stems were a draw within the noise */
static int mpick(int64_t P, int64_t Co, int narrow) {
  static const int speed[3] = {100, 93, 93};
  if (narrow && Co % 16 == 0) return 2;
  int best = 0;
  int64_t best_cost = -1;
  for (int i = 0; i < 3; i++) {
    const int64_t tile = mkinds[i].nv * MV, cost = (P + tile - 1) / tile * tile * 100 / speed[i];
    if (best_cost < 0 || cost < best_cost) best = i, best_cost = cost;
  }
  if (best == 2 && Co % 16 != 0) best = 3;
  return best;
}

static void mimage(float *out, const float *in, const float *wp, const mgeom *g, const mepi *e, const float *res) {
  const mkind *mk = &mkinds[g->kind];
  const int64_t tile = mk->nv * MV, Co = g->Co, nw = wide_blocks(mk, Co);
  for (int64_t j0 = 0; j0 < g->P; j0 += tile) {
    /* the input lines the next tile reads first (its last row of taps), ahead of it: the
     * planes come from memory, and the tiles would otherwise wait for them */
    if (j0 + tile < g->P)
      for (int64_t c = 0; c < g->Ci; c++) {
        const char *p = (const char *)(in + c * g->cs + j0 + tile + g->W);
        for (int l = 0; l <= mk->nv; l++) _mm_prefetch(p + l * 64, _MM_HINT_T0);
      }
    int64_t k0 = 0;
    for (; k0 < nw * mk->kw; k0 += mk->kw) mk->wide(out, in, wp, g, j0, k0, e, res);
    for (; k0 + mk->kb <= Co; k0 += mk->kb) mk->tile(out, in, wp, g, j0, k0, e, res);
    for (; k0 < Co; k0++) mk->one(out, in, wp, g, j0, k0, e, res);
  }
}

typedef struct {
  float *out;
  const float *in, *wp;
  const mgeom *g;
  const mepi *e;
} mctx;

static void mpart(void *ctx, int64_t lo, int64_t hi, int part) {
  (void)part;
  const mctx *d = ctx;
  const mgeom *g = d->g;
  const int64_t isz = g->Ci * g->P, osz = g->Co * g->P;
  for (int64_t n = lo; n < hi; n++) {
    float *o = d->out + n * osz;
    mimage(o, d->in + n * isz, d->wp, g, d->e, d->e->residual ? d->e->residual + n * osz : NULL);
    if (d->e->stats) sf_batchnorm_image_stats(d->e->stats + n * g->Co * 2, o, g->Co, g->P);
  }
}

static int masked_on = 1;

int sf_conv2d_masked_enable(int on) {
  if (on < 0) return __atomic_load_n(&masked_on, __ATOMIC_RELAXED);
  return __atomic_exchange_n(&masked_on, on != 0, __ATOMIC_RELAXED);
}

int sf_conv2d_masked_ok(int64_t H, int64_t W, int64_t R, int64_t S, int64_t stride_h, int64_t stride_w,
                        int64_t pad_h, int64_t pad_w) {
  return __atomic_load_n(&masked_on, __ATOMIC_RELAXED) && R == 3 && S == 3 && stride_h == stride_w &&
         (stride_h == 1 || stride_h == 2) && pad_h == 1 && pad_w == 1 && H >= 1 && W >= 1;
}

/* g's geometry and mask table (malloc'ed; freed by the caller) for Ci input channels
 * (cs floats apart) and Co outputs on an H x W grid, with T taps: tap t reads plane
 * plane[t] of its channel (P floats apart) shifted by dr[t] rows and dq[t] columns,
 * zeros outside it; -1 when the table cannot be allocated */
static int mgeom_init_stacked(mgeom *g, int64_t Ci, int64_t Co, int64_t Hi, int64_t nb, int64_t W, int64_t cs,
                              int64_t T, const int *plane, const int *dr, const int *dq) {
  const int64_t H = nb * Hi;
  *g = (mgeom){.Ci = Ci, .Co = Co, .H = H, .W = W, .P = H * W, .cs = cs, .T = T, .nb = nb, .Hi = Hi};
  g->nvec = (g->P + MV - 1) / MV;
  /* the masks of every vector of the plane, and of the vectors a last tile reads past it */
  const int64_t nmask = g->nvec + 3;
  __mmask16 *mask = calloc((size_t)(nmask * T), sizeof *mask);
  if (!mask) return -1;
  /* lane j at row oh of its image, column ow (counted along, no divisions: the table is
   * built on every call) */
  for (int64_t j = 0, oh = 0, ow = 0; j < g->P; j++) {
    for (int64_t t = 0; t < T; t++)
      if (oh + dr[t] >= 0 && oh + dr[t] < Hi && ow + dq[t] >= 0 && ow + dq[t] < W)
        mask[(j / MV) * T + t] |= (__mmask16)(1u << (j % MV));
    if (++ow == W) {
      ow = 0;
      if (++oh == Hi) oh = 0;
    }
  }
  for (int64_t t = 0; t < T; t++) g->off[t] = plane[t] * g->P + dr[t] * W + dq[t];
  g->mask = mask;
  g->kind = mpick(g->P, Co, !(T == 9 && cs == g->P)); /* stride 2: phase planes, or taps of a phase */
  return 0;
}

static int mgeom_init_taps(mgeom *g, int64_t Ci, int64_t Co, int64_t H, int64_t W, int64_t cs, int64_t T,
                           const int *plane, const int *dr, const int *dq) {
  return mgeom_init_stacked(g, Ci, Co, H, 1, W, cs, T, plane, dr, dq);
}

/* the stride-1 3x3 pad-1 geometry: tap t = r*3 + q reads the plane at (r-1, q-1) */
static int mgeom_init(mgeom *g, int64_t Ci, int64_t Co, int64_t H, int64_t W) {
  static const int plane[9] = {0}, dr[9] = {-1, -1, -1, 0, 0, 0, 1, 1, 1}, dq[9] = {-1, 0, 1, -1, 0, 1, -1, 0, 1};
  return mgeom_init_taps(g, Ci, Co, H, W, H * W, 9, plane, dr, dq);
}

int sf_conv2d_masked_run(float *out, const float *in, const float *wp, int64_t N, int64_t Ci, int64_t Co, int64_t H,
                         int64_t W, const float *bias, const float *residual, int relu, float *stats, int parts) {
  mgeom g;
  if (mgeom_init(&g, Ci, Co, H, W)) return -1;
  const mepi e = {bias, residual, relu, stats};
  mctx d = {out, in, wp, &g, &e};
  sf_parallel_for(parts, N, mpart, &d);
  free((void *)g.mask);
  return 0;
}

static void s2_split(float *restrict ph, const float *restrict img, int64_t Ci, int64_t H, int64_t W, int64_t OH,
                     int64_t OW, int64_t cstride, int64_t pstride);

/* ---- the weight gradient ----
 * dw[k][c][t] = sum over images and positions j of dout[k][j] * x[c][j + off[t]], the x
 * loads masked as in the forward (zeros outside the image), dout read dense (zeros past
 * the plane): neither is copied.
 *
 * A tile holds nk output channels x one row r of taps (q = 0, 1, 2) of one input channel
 * over a chunk of images, then adds its lane sums to the part: with nk = 8, 24
 * accumulators fed per vector of positions by 3 masked loads of x and 8 loads of dout.
 * (A tile of 3 channels x all 9 taps, 27 accumulators, needed 9 masked loads and 3 of
 * dout for them and ran at ~115 GFLOP/s with every operand in L1: the masked loads were
 * its limit. Each accumulator sums the same products in the same lanes and order either
 * way.) Channels past the last block of 8 take one-channel tiles. */
static inline __attribute__((always_inline)) void mwrow(float *restrict part, int64_t C, const float *restrict dout,
                                                        int64_t dstride, const float *restrict x, int64_t xstride,
                                                        int64_t nb, const mgeom *g, const int r, const int nk,
                                                        const int s2) {
  __m512 acc[8][3];
#pragma GCC unroll 8
  for (int k = 0; k < nk; k++)
#pragma GCC unroll 3
    for (int q = 0; q < 3; q++) acc[k][q] = _mm512_setzero_ps();
  const int64_t P = g->P, W = g->W;
  for (int64_t b = 0; b < nb; b++) {
    const float *db = dout + b * dstride, *xb = x + b * xstride;
    const __mmask16 *m = g->mask;
    for (int64_t j = 0; j < P; j += MV, m += 9) {
      __m512 xv[3];
#pragma GCC unroll 3
      for (int q = 0; q < 3; q++) {
        /* stride 2: tap t reads phase plane s2_plane[t] (P floats each) shifted by
         * (s2_dr[t], s2_dq[t]) (the forward's offsets, constants once unrolled) */
        const int t = r * 3 + q;
        const float *xp = s2 ? xb + j + s2_plane[t] * P + s2_dr[t] * W + s2_dq[t] : xb + (r - 1) * W + j + (q - 1);
        xv[q] = _mm512_maskz_loadu_ps(m[t], xp);
      }
#pragma GCC unroll 8
      for (int k = 0; k < nk; k++) {
        const __m512 d = _mm512_maskz_loadu_ps(m[4], db + k * P + j); /* tap (1,1): j < P */
#pragma GCC unroll 3
        for (int q = 0; q < 3; q++) acc[k][q] = _mm512_fmadd_ps(d, xv[q], acc[k][q]);
      }
    }
  }
#pragma GCC unroll 8
  for (int k = 0; k < nk; k++)
#pragma GCC unroll 3
    for (int q = 0; q < 3; q++) part[k * C * 9 + r * 3 + q] += _mm512_reduce_add_ps(acc[k][q]);
}

/* dout + b*dstride + k*P: image b's plane of the tile's output channel k; x + b*xstride:
 * image b's plane (phase planes) of the tile's input channel */
typedef void (*mwrow_fn)(float *restrict part, int64_t C, const float *restrict dout, int64_t dstride,
                         const float *restrict x, int64_t xstride, int64_t nb, const mgeom *g);
#define MWROW(name, r, nk, s2)                                                                                 \
  static void name(float *restrict part, int64_t C, const float *restrict dout, int64_t dstride,               \
                   const float *restrict x, int64_t xstride, int64_t nb, const mgeom *g) {                     \
    mwrow(part, C, dout, dstride, x, xstride, nb, g, r, nk, s2);                                               \
  }
MWROW(mwrow8_0, 0, 8, 0)
MWROW(mwrow8_1, 1, 8, 0)
MWROW(mwrow8_2, 2, 8, 0)
MWROW(mwrow1_0, 0, 1, 0)
MWROW(mwrow1_1, 1, 1, 0)
MWROW(mwrow1_2, 2, 1, 0)
MWROW(mwrow8_s2_0, 0, 8, 1)
MWROW(mwrow8_s2_1, 1, 8, 1)
MWROW(mwrow8_s2_2, 2, 8, 1)
MWROW(mwrow1_s2_0, 0, 1, 1)
MWROW(mwrow1_s2_1, 1, 1, 1)
MWROW(mwrow1_s2_2, 2, 1, 1)
/* [stride 2][8 channels, 1][tap row] */
static const mwrow_fn mwrows[2][2][3] = {{{mwrow8_0, mwrow8_1, mwrow8_2}, {mwrow1_0, mwrow1_1, mwrow1_2}},
                                         {{mwrow8_s2_0, mwrow8_s2_1, mwrow8_s2_2}, {mwrow1_s2_0, mwrow1_s2_1, mwrow1_s2_2}}};

/* images per chunk: about 1024 positions, so the lane sums closing each tile stay small
 * next to its FMAs (an 8x8 image alone has 4 vectors of positions); at most 8 images of
 * 64 positions or more: a block's dout planes in 16 images of 8x8 with 64 channels lie
 * 16 kB apart, in the same L1 sets, which hold 12 (8x8, 64 channels: 92-98 -> 96-107
 * GFLOP/s with 8) */
static int64_t mw_chunk_for(int64_t P) {
  const int64_t pv = (P + MV - 1) / MV * MV, b = (1024 + pv - 1) / pv;
  if (pv >= 64 && b > 8) return 8;
  return b < 1 ? 1 : b > 32 ? 32 : b;
}
static int64_t mw_chunk(const mgeom *g) { return mw_chunk_for(g->P); }
int64_t sf_conv2d_masked_wgrad_chunk(int64_t OH, int64_t OW) { return mw_chunk_for(OH * OW); }

typedef struct {
  const float *dout, *inp;
  const mgeom *g;
  float **partial;
  int fail;
  int s2;       /* stride 2: inp's images are H x W, split into phase planes per chunk */
  int64_t H, W;
} mwctx;

static void mw_part(void *ctx, int64_t lo, int64_t hi, int part) {
  mwctx *d = ctx;
  const mgeom *g = d->g;
  const int64_t C = g->Ci, K = g->Co, P = g->P, B = mw_chunk(g);
  float *acc = sf_scratch2((size_t)(K * C * 9));
  if (!acc) {
    __atomic_store_n(&d->fail, 1, __ATOMIC_RELAXED); /* any part may set it; only ever set */
    return;
  }
  d->partial[part] = acc;
  for (int64_t i = 0; i < K * C * 9; i++) acc[i] = 0.0f;
  const int64_t cs = g->cs; /* floats per channel: P, or 4P for the phase planes */
  float *ph = NULL;
  if (d->s2 && !(ph = sf_scratch((size_t)(B * C * cs)))) {
    __atomic_store_n(&d->fail, 1, __ATOMIC_RELAXED);
    return;
  }
  for (int64_t i0 = lo; i0 < hi; i0 += B) {
    const int64_t nb = hi - i0 < B ? hi - i0 : B;
    const float *dn = d->dout + i0 * K * P, *xn = d->inp + i0 * C * P;
    int64_t xbs = C * P, xcs = P; /* x's image and channel strides */
    if (d->s2) { /* the chunk's images as phase planes */
      for (int64_t b = 0; b < nb; b++)
        s2_split(ph + b * C * cs, d->inp + (i0 + b) * C * d->H * d->W, C, d->H, d->W, g->H, g->W, cs, g->P);
      xn = ph, xbs = C * cs, xcs = cs;
    }
    /* blocks of 8 output channels: their dout planes (8 x ~1024 positions, 32 kB) stay
     * in L1 over all the input channels; then the channels past the last block, one by one */
    for (int64_t k = 0; k < K; k += k + 8 <= K ? 8 : 1) {
      const mwrow_fn *rows = mwrows[d->s2][k + 8 <= K ? 0 : 1];
      for (int64_t c = 0; c < C; c++) {
        /* the next channel's planes, ahead of their first sweep */
        if (c + 1 < C)
          for (int64_t b = 0; b < nb; b++)
            for (int64_t j = 0; j < cs; j += 16) _mm_prefetch((const char *)(xn + b * xbs + (c + 1) * xcs + j), _MM_HINT_T1);
        for (int r = 0; r < 3; r++) rows[r](acc + (k * C + c) * 9, C, dn + k * P, K * P, xn + c * xcs, xbs, nb, g);
      }
    }
  }
}

int sf_conv2d_masked_wgrad(float **partial, int parts, const float *dout, const float *inp, int64_t N, int64_t C,
                           int64_t K, int64_t H, int64_t W, int stride) {
  mgeom g;
  const int64_t OH = (H + 1) / 2, OW = (W + 1) / 2;
  if (stride == 2 ? mgeom_init_taps(&g, C, K, OH, OW, 4 * OH * OW, 9, s2_plane, s2_dr, s2_dq)
                  : mgeom_init(&g, C, K, H, W))
    return -1;
  mwctx d = {dout, inp, &g, partial, 0, stride == 2, H, W};
  sf_parallel_for(parts, N, mw_part, &d);
  free((void *)g.mask);
  return d.fail ? -1 : 0;
}

int sf_conv2d_masked_kind(int64_t P, int64_t Co, int narrow, int *kb, int *nv, int *kw) {
  const int k = mpick(P, Co, narrow);
  *kb = mkinds[k].kb, *nv = mkinds[k].nv;
  *kw = wide_blocks(&mkinds[k], Co) > 0 ? mkinds[k].kw : 0;
  return k;
}

/* ---- stride 2 ----
 * Output (i, j) of a 3x3 pad-1 stride-2 convolution reads, through tap (r, q), image row
 * 2i + r - 1 and column 2j + q - 1: the phase plane (a, b) of the image (its rows of
 * parity a and columns of parity b) with a = (r != 1), b = (q != 1), at row i - (r == 0)
 * and column j - (q == 0). Each image is split into its 4 dense phase planes (OH x OW
 * each, OH = ceil(H/2); zeros where a phase has no image row or column) and the masked
 * tiles run on them as on a stride-1 plane: no padded phase planes, no wide grid and no
 * copy-out (the phase path of conv2d.c computed (OW + 1) / OW of the positions, then
 * rounded them up to whole tiles, and copied the valid columns out).
 *
 * The input gradient splits the other way: its phase (a, b) (image rows of parity a,
 * columns of parity b) gathers from dout the taps r with r = 1 for a = 0 (dout row i)
 * and r = 0 (row i + 1), r = 2 (row i) for a = 1, and likewise for columns: 1, 2, 2 and
 * 4 taps, each a masked stride-1 correlation of dout on its OH x OW grid; the 4 phase
 * planes are then interleaved into the image.
 *
 * Both are the same sums in the same order as the phase path's (over channels, then
 * taps in the order (r, q)), so the bits are the same. */

/* ph + c*cstride + (a*2 + b)*pstride: [OH, OW] = img[c] [H, W] at rows 2i + a, columns
 * 2j + b (zeros outside) */
static void s2_split(float *restrict ph, const float *restrict img, int64_t Ci, int64_t H, int64_t W, int64_t OH,
                     int64_t OW, int64_t cstride, int64_t pstride) {
  const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
  const __m512i odd = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
  for (int64_t c = 0; c < Ci; c++)
    for (int64_t h = 0; h < 2 * OH; h++) {
      const int64_t a = h & 1, i = h >> 1;
      float *de = ph + c * cstride + a * 2 * pstride + i * OW, *dd = de + pstride;
      if (h >= H) {
        for (int64_t j = 0; j < OW; j++) de[j] = dd[j] = 0.0f;
        continue;
      }
      const float *src = img + (c * H + h) * W;
      for (int64_t j0 = 0; j0 < OW; j0 += MV) {
        const int64_t n = W - 2 * j0; /* image columns left from 2*j0 */
        const __m512 lo = _mm512_maskz_loadu_ps(lane_mask(n), src + 2 * j0);
        const __m512 hi = _mm512_maskz_loadu_ps(lane_mask(n - MV), src + 2 * j0 + MV);
        const __mmask16 keep = lane_mask(OW - j0);
        _mm512_mask_storeu_ps(de + j0, keep, _mm512_permutex2var_ps(lo, even, hi));
        _mm512_mask_storeu_ps(dd + j0, keep, _mm512_permutex2var_ps(lo, odd, hi));
      }
    }
}

typedef struct {
  float *out;
  const float *in, *wp;
  const mgeom *g;
  const mepi *e;
  int64_t H, W; /* the input image */
} s2ctx;

/* dst[0, n) = src + bias (+ res), ReLU: the tiles' epilogue, for the stacked path's copy-out */
static void epi_row(float *restrict dst, const float *restrict src, int64_t n, const float *bias, int64_t k,
                    const float *restrict res, int relu) {
  for (int64_t j = 0; j < n; j += MV) {
    const __mmask16 keep = lane_mask(n - j);
    const __m512 y = epilogue(_mm512_maskz_loadu_ps(keep, src + j), bias, k, res ? res + j : NULL, keep, relu);
    _mm512_mask_storeu_ps(dst + j, keep, y);
  }
}

/* Small output planes (7x7: 49 positions in 4 vectors) stack nb images on one grid (their
 * phase planes side by side, the masks cutting at each image's first and last row):
 * 8 x 49 positions fill 25 vectors. The tiles write a [Co, nb*P] buffer that the epilogue
 * copies out image by image. */
static void s2_stacked(const s2ctx *d, int64_t lo, int64_t hi) {
  const mgeom *g = d->g;
  const int64_t nb = g->nb, P1 = g->Hi * g->W, Ci = g->Ci, Co = g->Co, isz = Ci * d->H * d->W, osz = Co * P1;
  float *ph = sf_scratch((size_t)(Ci * g->cs)), *wide = sf_scratch2((size_t)(Co * g->P));
  SF_ASSERT(ph && wide); /* reserved by the caller through sf_conv2d_reserve */
  const mepi none = {NULL, NULL, 0, NULL};
  for (int64_t n0 = lo; n0 < hi; n0 += nb) {
    const int64_t m = hi - n0 < nb ? hi - n0 : nb;
    /* image b's phase planes: channel c's phase p at c*cs + p*P + b*P1 (P = nb*P1) */
    for (int64_t b = 0; b < m; b++) s2_split(ph + b * P1, d->in + (n0 + b) * isz, Ci, d->H, d->W, g->Hi, g->W, g->cs, g->P);
    for (int64_t b = m; b < nb; b++) /* the last chunk's missing images: zeros, computed and dropped */
      for (int64_t c = 0; c < 4 * Ci; c++)
        for (int64_t j = 0; j < P1; j++) ph[c * g->P + b * P1 + j] = 0.0f;
    mimage(wide, ph, d->wp, g, &none, NULL);
    for (int64_t b = 0; b < m; b++) {
      float *o = d->out + (n0 + b) * osz;
      const float *res = d->e->residual ? d->e->residual + (n0 + b) * osz : NULL;
      for (int64_t k = 0; k < Co; k++)
        epi_row(o + k * P1, wide + k * g->P + b * P1, P1, d->e->bias, k, res ? res + k * P1 : NULL, d->e->relu);
      if (d->e->stats) sf_batchnorm_image_stats(d->e->stats + (n0 + b) * Co * 2, o, Co, P1);
    }
  }
}

static void s2_part(void *ctx, int64_t lo, int64_t hi, int part) {
  (void)part;
  const s2ctx *d = ctx;
  const mgeom *g = d->g;
  if (g->nb > 1) {
    s2_stacked(d, lo, hi);
    return;
  }
  float *ph = sf_scratch((size_t)(g->Ci * g->cs));
  SF_ASSERT(ph); /* reserved by the caller through sf_conv2d_reserve */
  const int64_t isz = g->Ci * d->H * d->W, osz = g->Co * g->P;
  for (int64_t n = lo; n < hi; n++) {
    float *o = d->out + n * osz;
    s2_split(ph, d->in + n * isz, g->Ci, d->H, d->W, g->H, g->W, g->cs, g->P);
    mimage(o, ph, d->wp, g, d->e, d->e->residual ? d->e->residual + n * osz : NULL);
    if (d->e->stats) sf_batchnorm_image_stats(d->e->stats + n * g->Co * 2, o, g->Co, g->P);
  }
}

int sf_conv2d_masked_s2_run(float *out, const float *in, const float *wp, int64_t N, int64_t Ci, int64_t Co,
                            int64_t H, int64_t W, const float *bias, const float *residual, int relu, float *stats,
                            int parts) {
  const int64_t OH = (H + 1) / 2, OW = (W + 1) / 2, nb = sf_conv2d_masked_s2_stack(OH, OW);
  mgeom g;
  if (mgeom_init_stacked(&g, Ci, Co, OH, nb, OW, 4 * nb * OH * OW, 9, s2_plane, s2_dr, s2_dq)) return -1;
  const mepi e = {bias, residual, relu, stats};
  s2ctx d = {out, in, wp, &g, &e, H, W};
  sf_parallel_for(parts, N, s2_part, &d);
  free((void *)g.mask);
  return 0;
}

/* images stacked per grid for an OH x OW output plane: 1 when the plane fills whole vectors
 * or is large; else the count (up to 8, at most 512 positions) that pads least */
int64_t sf_conv2d_masked_s2_stack(int64_t OH, int64_t OW) {
  const int64_t P = OH * OW;
  if (P % MV == 0 || P > 128) return 1;
  int64_t best = 1, best_pad = (P + MV - 1) / MV * MV - P; /* padded positions per image, x nb */
  for (int64_t nb = 2; nb <= 8 && nb * P <= 512; nb++) {
    const int64_t pad = (nb * P + MV - 1) / MV * MV - nb * P;
    if (pad * best < best_pad * nb) best = nb, best_pad = pad;
  }
  return best;
}

/* the input gradient's phase p = a*2 + b: its taps (r, q) in order, and where they read dout */
typedef struct {
  int T, r[4], q[4], dr[4], dq[4];
} s2_bwd_taps;

static s2_bwd_taps s2_bwd_phase(int p) {
  static const int nr[2] = {1, 2}, rr[2][2] = {{1, 1}, {0, 2}}, rd[2][2] = {{0, 0}, {1, 0}};
  const int a = p >> 1, b = p & 1;
  s2_bwd_taps t = {0};
  for (int u = 0; u < nr[a]; u++)
    for (int v = 0; v < nr[b]; v++, t.T++)
      t.r[t.T] = rr[a][u], t.q[t.T] = rr[b][v], t.dr[t.T] = rd[a][u], t.dq[t.T] = rd[b][v];
  return t;
}

void sf_conv2d_masked_s2_bwd_pack(float *wp, const float *weight, int64_t K, int64_t C) {
  for (int p = 0; p < 4; p++) {
    const s2_bwd_taps t = s2_bwd_phase(p);
    for (int64_t k = 0; k < K; k++)
      for (int i = 0; i < t.T; i++)
        for (int64_t c = 0; c < C; c++) wp[(k * t.T + i) * C + c] = weight[(k * C + c) * 9 + t.r[i] * 3 + t.q[i]];
    wp += t.T * K * C;
  }
}

typedef struct {
  float *dx;
  const float *dy, *wp;
  const mgeom *g; /* [4] */
  int64_t H, W;
} s2bctx;

static void s2_bwd_part(void *ctx, int64_t lo, int64_t hi, int part) {
  (void)part;
  const s2bctx *d = ctx;
  const mgeom *g = d->g;
  const int64_t K = g[0].Ci, C = g[0].Co, OW = g[0].W, P = g[0].P, H = d->H, W = d->W;
  const int64_t nb = g[0].nb, P1 = g[0].Hi * OW; /* images stacked on the grid (as the forward's) */
  float *ph = sf_scratch2((size_t)(4 * C * P)), *stack = nb > 1 ? sf_scratch((size_t)(K * P)) : NULL;
  SF_ASSERT(ph && (nb == 1 || stack)); /* reserved by the caller through sf_conv2d_reserve */
  const mepi none = {NULL, NULL, 0, NULL};
  const __m512i ilo = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
  const __m512i ihi = _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
  for (int64_t n0 = lo; n0 < hi; n0 += nb) {
    const int64_t cnt = hi - n0 < nb ? hi - n0 : nb;
    const float *dy = d->dy + n0 * K * P1, *wp = d->wp;
    if (nb > 1) { /* dout of the chunk's images side by side per channel (zeros for missing ones) */
      for (int64_t k = 0; k < K; k++)
        for (int64_t b = 0; b < nb; b++)
          for (int64_t j = 0; j < P1; j++) stack[k * P + b * P1 + j] = b < cnt ? dy[(b * K + k) * P1 + j] : 0.0f;
      dy = stack;
    }
    for (int p = 0; p < 4; p++) {
      mimage(ph + p * C * P, dy, wp, &g[p], &none, NULL);
      wp += g[p].T * K * C;
    }
    /* image row h = 2i + a interleaves phases (a, 0) and (a, 1) of its channel */
    for (int64_t b = 0; b < cnt; b++) {
      float *dx = d->dx + (n0 + b) * C * H * W;
      for (int64_t c = 0; c < C; c++)
        for (int64_t h = 0; h < H; h++) {
          const int64_t a = h & 1, i = h >> 1;
          const float *pe = ph + ((a * 2) * C + c) * P + b * P1 + i * OW, *po = pe + C * P;
          float *row = dx + (c * H + h) * W;
          for (int64_t j0 = 0; j0 < OW; j0 += MV) {
            const __mmask16 m = lane_mask(OW - j0);
            const __m512 e = _mm512_maskz_loadu_ps(m, pe + j0), o = _mm512_maskz_loadu_ps(m, po + j0);
            const int64_t left = W - 2 * j0;
            _mm512_mask_storeu_ps(row + 2 * j0, lane_mask(left), _mm512_permutex2var_ps(e, ilo, o));
            _mm512_mask_storeu_ps(row + 2 * j0 + MV, lane_mask(left - MV), _mm512_permutex2var_ps(e, ihi, o));
          }
        }
    }
  }
}

int sf_conv2d_masked_s2_backward_input(float *dinp, const float *dout, const float *wp, int64_t N, int64_t K,
                                       int64_t C, int64_t H, int64_t W, int parts) {
  const int64_t OH = (H + 1) / 2, OW = (W + 1) / 2, nb = sf_conv2d_masked_s2_stack(OH, OW);
  mgeom g[4];
  int ok = 1;
  for (int p = 0; p < 4; p++) {
    const s2_bwd_taps t = s2_bwd_phase(p);
    static const int zero[4] = {0};
    if (ok && mgeom_init_stacked(&g[p], K, C, OH, nb, OW, nb * OH * OW, t.T, zero, t.dr, t.dq)) {
      for (int i = 0; i < p; i++) free((void *)g[i].mask);
      ok = 0;
    }
  }
  if (!ok) return -1;
  s2bctx d = {dinp, dout, wp, g, H, W};
  sf_parallel_for(parts, N, s2_bwd_part, &d);
  for (int p = 0; p < 4; p++) free((void *)g[p].mask);
  return 0;
}

#else

int sf_conv2d_masked_enable(int on) {
  (void)on;
  return 0;
}

int sf_conv2d_masked_ok(int64_t H, int64_t W, int64_t R, int64_t S, int64_t stride_h, int64_t stride_w,
                        int64_t pad_h, int64_t pad_w) {
  (void)H, (void)W, (void)R, (void)S, (void)stride_h, (void)stride_w, (void)pad_h, (void)pad_w;
  return 0;
}

int sf_conv2d_masked_run(float *out, const float *in, const float *wp, int64_t N, int64_t Ci, int64_t Co, int64_t H,
                         int64_t W, const float *bias, const float *residual, int relu, float *stats, int parts) {
  (void)out, (void)in, (void)wp, (void)N, (void)Ci, (void)Co, (void)H, (void)W, (void)bias, (void)residual,
      (void)relu, (void)stats, (void)parts;
  return -1;
}

int sf_conv2d_masked_wgrad(float **partial, int parts, const float *dout, const float *inp, int64_t N, int64_t C,
                           int64_t K, int64_t H, int64_t W, int stride) {
  (void)partial, (void)parts, (void)dout, (void)inp, (void)N, (void)C, (void)K, (void)H, (void)W, (void)stride;
  return -1;
}

int sf_conv2d_masked_s2_run(float *out, const float *in, const float *wp, int64_t N, int64_t Ci, int64_t Co,
                            int64_t H, int64_t W, const float *bias, const float *residual, int relu, float *stats,
                            int parts) {
  (void)out, (void)in, (void)wp, (void)N, (void)Ci, (void)Co, (void)H, (void)W, (void)bias, (void)residual,
      (void)relu, (void)stats, (void)parts;
  return -1;
}

void sf_conv2d_masked_s2_bwd_pack(float *wp, const float *weight, int64_t K, int64_t C) {
  (void)wp, (void)weight, (void)K, (void)C;
}

int sf_conv2d_masked_s2_backward_input(float *dinp, const float *dout, const float *wp, int64_t N, int64_t K,
                                       int64_t C, int64_t H, int64_t W, int parts) {
  (void)dinp, (void)dout, (void)wp, (void)N, (void)K, (void)C, (void)H, (void)W, (void)parts;
  return -1;
}

int64_t sf_conv2d_masked_wgrad_chunk(int64_t OH, int64_t OW) {
  (void)OH, (void)OW;
  return 0;
}

int64_t sf_conv2d_masked_s2_stack(int64_t OH, int64_t OW) {
  (void)OH, (void)OW;
  return 1;
}

int sf_conv2d_masked_kind(int64_t P, int64_t Co, int narrow, int *kb, int *nv, int *kw) {
  (void)P, (void)Co, (void)narrow;
  *kb = *nv = *kw = 0;
  return -1;
}

#endif
