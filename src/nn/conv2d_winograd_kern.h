/* The register kernels and helpers the Winograd convolutions share (conv2d_winograd.c and
 * conv2d_winograd4.c, stride 1; conv2d_winograd_s2.c, stride 2), on AVX-512: lane masks,
 * the permute indices that split and interleave columns, the products' register tiles
 * (output channels x vectors of tiles, and the weight gradient's 4 x 4 tiles summed across
 * lanes), the forward's epilogue and statistics, and the vectors of tiles 4 input columns
 * apart. Internal to src/nn; include only where __AVX512F__ is defined. */
#ifndef SF_CONV2D_WINOGRAD_KERN_H
#define SF_CONV2D_WINOGRAD_KERN_H
#include <immintrin.h>
#include <stdint.h>
#include <string.h>

#include "nn.h"

#define WV 16 /* floats per vector */
#define WK 8  /* output channels per register tile (Co is padded to a multiple: Kp) */

static inline __mmask16 lane_mask(int64_t n) { return n <= 0 ? 0 : n >= WV ? 0xFFFF : (__mmask16)((1u << n) - 1u); }

/* a store of the first lanes of m: a plain store when they are all (no difference beyond
 * the noise measured on the 32x32 layers' transforms; the plain form needs no mask) */
static inline __attribute__((always_inline)) void store_lanes(float *p, __mmask16 m, __m512 v) {
  if (m == 0xFFFF)
    _mm512_storeu_ps(p, v);
  else
    _mm512_mask_storeu_ps(p, m, v);
}

/* permute indices: even and odd lanes of a 32-lane pair, and the interleave of two vectors */
static inline __m512i idx_even(void) {
  return _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
}
static inline __m512i idx_odd(void) {
  return _mm512_set_epi32(31, 29, 27, 25, 23, 21, 19, 17, 15, 13, 11, 9, 7, 5, 3, 1);
}
static inline __m512i idx_lo(void) { return _mm512_set_epi32(23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0); }
static inline __m512i idx_hi(void) {
  return _mm512_set_epi32(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8);
}

/* lanes m of the 16 starting at column col0 + m that lie in [0, W) */
static inline __mmask16 col_mask(int64_t col0, int64_t W) {
  unsigned m = 0;
  for (int l = 0; l < WV; l++)
    if (col0 + l >= 0 && col0 + l < W) m |= 1u << l;
  return (__mmask16)m;
}

/* lanes [nt, Ts) of every (xi, row) of a transformed chunk (npos xi, rows per xi, xs
 * floats from one xi to the next): zero, so that the products' last vector adds nothing
 * from them */
static inline void zero_tails(float *A, int npos, int64_t rows, int64_t xs, int64_t Ts, int64_t nt) {
  if (nt >= Ts) return;
  for (int xi = 0; xi < npos; xi++)
    for (int64_t r = 0; r < rows; r++) memset(A + xi * xs + r * Ts + nt, 0, (size_t)(Ts - nt) * sizeof(float));
}

/* One register tile of the products: M[k][v*WV + lane] = sum over np transformed positions
 * j and channels c of V[j][c][k] U[j][c*Ts + v*WV + lane], WK channels x nv vectors (U[j]
 * at position j's first vector of the tile, V at its first slot and channel; positions
 * Ci*Kp floats apart in V). One position for F(2x2, 3x3)'s products; the stride-2
 * forward sums 1, 2 or 4 positions into each of its 9. */
static inline __attribute__((always_inline)) void wtile(float *restrict M, const float *const *U,
                                                        const float *restrict V, int np, int64_t Ci, int64_t Kp,
                                                        int64_t Ts, const int nv) {
  __m512 acc[WK][3];
#pragma GCC unroll 8
  for (int k = 0; k < WK; k++)
#pragma GCC unroll 3
    for (int v = 0; v < nv; v++) acc[k][v] = _mm512_setzero_ps();
  for (int j = 0; j < np; j++) {
    const float *restrict u = U[j], *restrict w = V + j * Ci * Kp;
    for (int64_t c = 0; c < Ci; c++) {
      __m512 x[3];
#pragma GCC unroll 3
      for (int v = 0; v < nv; v++) x[v] = _mm512_load_ps(u + c * Ts + v * WV);
#pragma GCC unroll 8
      for (int k = 0; k < WK; k++) {
        const __m512 b = _mm512_set1_ps(w[c * Kp + k]);
#pragma GCC unroll 3
        for (int v = 0; v < nv; v++) acc[k][v] = _mm512_fmadd_ps(b, x[v], acc[k][v]);
      }
    }
  }
#pragma GCC unroll 8
  for (int k = 0; k < WK; k++)
#pragma GCC unroll 3
    for (int v = 0; v < nv; v++) _mm512_store_ps(M + k * Ts + v * WV, acc[k][v]);
}

typedef void (*wtile_fn)(float *restrict M, const float *const *U, const float *restrict V, int np, int64_t Ci,
                         int64_t Kp, int64_t Ts);
#define WTILE(name, nv)                                                                                       \
  static inline void name(float *restrict M, const float *const *U, const float *restrict V, int np,        \
                          int64_t Ci, int64_t Kp, int64_t Ts) {                                             \
    wtile(M, U, V, np, Ci, Kp, Ts, nv);                                                                       \
  }
WTILE(wtile_v3, 3)
WTILE(wtile_v2, 2)
WTILE(wtile_v1, 1)
static const wtile_fn wtiles[4] = {NULL, wtile_v1, wtile_v2, wtile_v3};

typedef struct {
  const float *bias;     /* [Co] or NULL */
  const float *residual; /* [N, Co, P] or NULL */
  int relu;
  float *stats; /* [N, Co, 2] or NULL */
} wepi;

/* + bias, + residual (its lanes in keep), then max(., 0) as v < 0 ? 0 : v (a NaN stays NaN) */
static inline __attribute__((always_inline)) __m512 wepilogue(__m512 y, const wepi *e, int64_t k, const float *res,
                                                              __mmask16 keep) {
  if (e->bias) y = _mm512_add_ps(y, _mm512_set1_ps(e->bias[k]));
  if (res) y = _mm512_add_ps(y, _mm512_maskz_loadu_ps(keep, res));
  if (e->relu) y = _mm512_mask_mov_ps(y, _mm512_cmp_ps_mask(y, _mm512_setzero_ps(), _CMP_LT_OQ), _mm512_setzero_ps());
  return y;
}

/* r[i] = the sum of v[i]'s 16 lanes, for 16 vectors, in a fixed order */
static inline __attribute__((always_inline)) __m512 hsum16(const __m512 v[16]) {
  __m512 a[8], b[4], c[2];
  for (int i = 0; i < 8; i++) /* per 128-bit lane: [v2i, v2i+1, v2i, v2i+1] partials */
    a[i] = _mm512_add_ps(_mm512_unpacklo_ps(v[2 * i], v[2 * i + 1]), _mm512_unpackhi_ps(v[2 * i], v[2 * i + 1]));
  for (int i = 0; i < 4; i++) { /* per 128-bit lane: [v4i .. v4i+3] partials */
    const __m512d x = _mm512_castps_pd(a[2 * i]), y = _mm512_castps_pd(a[2 * i + 1]);
    b[i] = _mm512_add_ps(_mm512_castpd_ps(_mm512_unpacklo_pd(x, y)), _mm512_castpd_ps(_mm512_unpackhi_pd(x, y)));
  }
  for (int i = 0; i < 2; i++)
    c[i] = _mm512_add_ps(_mm512_shuffle_f32x4(b[2 * i], b[2 * i + 1], _MM_SHUFFLE(2, 0, 2, 0)),
                         _mm512_shuffle_f32x4(b[2 * i], b[2 * i + 1], _MM_SHUFFLE(3, 1, 3, 1)));
  return _mm512_add_ps(_mm512_shuffle_f32x4(c[0], c[1], _MM_SHUFFLE(2, 0, 2, 0)),
                       _mm512_shuffle_f32x4(c[0], c[1], _MM_SHUFFLE(3, 1, 3, 1)));
}

/* mw[(k%4)*4 + c%4] += sum over nvec vectors of tiles of E[k][.] U[c][.], 4 k x 4 c (E at
 * the block's first k, U at its first c) */
static inline void wg_tile(float *restrict mw, const float *restrict E, const float *restrict U, int64_t Ts, int64_t nvec) {
  __m512 acc[16];
  for (int i = 0; i < 16; i++) acc[i] = _mm512_setzero_ps();
  for (int64_t v = 0; v < nvec; v++) {
    __m512 e[4], u[4];
    for (int i = 0; i < 4; i++) {
      e[i] = _mm512_load_ps(E + i * Ts + v * WV), u[i] = _mm512_load_ps(U + i * Ts + v * WV);
      /* in registers: GCC otherwise folds each of the 16 uses into its FMA as a memory
       * operand (20 loads per 16 FMAs instead of 8: the loop ran at a third of its rate) */
      __asm__("" : "+v"(e[i]), "+v"(u[i]));
    }
    for (int k = 0; k < 4; k++)
      for (int c = 0; c < 4; c++) acc[k * 4 + c] = _mm512_fmadd_ps(e[k], u[c], acc[k * 4 + c]);
  }
  _mm512_store_ps(mw, _mm512_add_ps(_mm512_load_ps(mw), hsum16(acc)));
}

/* ---- vectors of tiles 4 input columns apart (F(4x4, 3x3), and the stride-2 algorithm) ----
 * The transforms work on vectors of tiles. Planes of at most 8 tiles a row (inputs of up to
 * 32 columns: the CIFAR and MNIST layers) put R = 2 rows of tiles in a vector, 4 when at
 * most 4 tiles a row: lane l is tile (r, tw) = (l / nb, l % nb) of R consecutive rows of
 * tiles of an image (nb = TW), and a step of the transforms covers them all. Wider planes
 * go in steps of nb tiles of one row (R = 1). */
static inline int tiles_rows(int64_t TW) { return TW <= 4 ? 4 : TW <= 8 ? 2 : 1; }

/* the rows of tiles from gg in one step: up to R, within the image (TH rows of tiles) and
 * the chunk (up to g1) */
static inline int64_t tiles_group(int R, int64_t TH, int64_t gg, int64_t g1) {
  int64_t n = R, th = gg % TH;
  if (n > g1 - gg) n = g1 - gg;
  if (n > TH - th) n = TH - th;
  return n;
}

/* A step's input columns 4 tw - 1 + j (j < J <= 6) of each lane's tile: at each vertical
 * position of the patches, the R input rows (one per row of tiles) are loaded into two
 * pairs of vectors, the lanes' columns picked out of each pair by one permute and the two
 * merged by lane. R = 1: the row's 32 columns from 4 tw0 (and column 4 tw0 - 1 for lane 0;
 * J + 4 (nb - 1) <= 33); R = 2: each row's 32 columns, a pair each; R = 4: rows of at most
 * 16 columns, two to a pair. */
typedef struct {
  int R;
  int64_t tw0, nb;  /* the step's first tile of a row, tiles of a row per vector */
  __m512i idx[6];   /* lane l: its column 4 tw - 1 + j within its pair */
  __mmask16 cm[6];  /* ... where that column is inside the plane (and the pair) */
  __mmask16 hi;     /* the lanes from the second pair */
  __mmask16 m0, m1; /* the row loads' columns inside the plane */
} tcols;

/* for a plane W columns wide of TW tiles a row, the step from tile tw0 (sb tiles when R = 1) */
static inline void tcols_init(tcols *ic, int64_t TW, int64_t W, int64_t tw0, int64_t sb, int J) {
  const int R = tiles_rows(TW);
  ic->R = R, ic->tw0 = tw0, ic->nb = R > 1 ? TW : TW - tw0 < sb ? TW - tw0 : sb;
  unsigned hi = 0;
  for (int j = 0; j < J; j++) {
    int ix[WV];
    unsigned cm = 0;
    for (int l = 0; l < WV; l++) {
      const int64_t r = l / ic->nb, col = 4 * (tw0 + l % ic->nb) - 1 + j;
      const int ok = r < R && col >= 4 * tw0 && col < W && col - 4 * tw0 < 2 * WV;
      ix[l] = ok ? (int)((R == 4 ? (r & 1) * WV : 0) + col - 4 * tw0) : 0;
      if (ok) cm |= 1u << l;
      if (j == 0 && r < R && r >= (R == 4 ? 2 : 1)) hi |= 1u << l;
    }
    ic->idx[j] = _mm512_loadu_si512(ix), ic->cm[j] = (__mmask16)cm;
  }
  ic->hi = (__mmask16)hi;
  ic->m0 = col_mask(4 * tw0, W), ic->m1 = col_mask(4 * tw0 + WV, W);
}

/* d[j] (j < J): column 4 tw - 1 + j of input row 4 (th + r) - 1 + i of each lane's tile (r,
 * tw), for the n rows of tiles from th of an H x W plane (zeros outside it) */
static inline __attribute__((always_inline)) void tcols_pick(__m512 *d, int J, const float *plane, int64_t H,
                                                             int64_t W, const tcols *ic, int64_t th, int64_t n,
                                                             int i) {
  const int R = ic->R;
  __m512 z[4];
  for (int q = 0; q < R; q++) {
    const int64_t h = 4 * (th + q) - 1 + i;
    const int ok = q < n && h >= 0 && h < H;
    const float *p = plane + h * W + 4 * ic->tw0;
    if (R == 4) {
      z[q] = ok ? _mm512_maskz_loadu_ps(ic->m0, p) : _mm512_setzero_ps();
    } else {
      z[2 * q] = ok ? _mm512_maskz_loadu_ps(ic->m0, p) : _mm512_setzero_ps();
      z[2 * q + 1] = ok ? _mm512_maskz_loadu_ps(ic->m1, p + WV) : _mm512_setzero_ps();
    }
  }
  for (int j = 0; j < J; j++) {
    d[j] = _mm512_maskz_permutex2var_ps(ic->cm[j], z[0], ic->idx[j], z[1]);
    if (R > 1 && n > R / 2)
      d[j] = _mm512_mask_blend_ps(ic->hi, d[j], _mm512_maskz_permutex2var_ps(ic->cm[j], z[2], ic->idx[j], z[3]));
  }
  const int64_t h = 4 * th - 1 + i;
  if (R == 1 && ic->tw0 > 0 && h >= 0 && h < H) /* lane 0's column 4 tw0 - 1 */
    d[0] = _mm512_mask_mov_ps(d[0], 1, _mm512_set1_ps(plane[h * W + 4 * ic->tw0 - 1]));
}

/* The interleave of 4 columns per tile back into rows: iq[r][h] picks, for row of tiles r
 * and half h of the 32 columns from 4 tw0, column 16h + m from lane r*nb + (16h + m)/4 of
 * z[(16h + m) % 4] (tcols_out) */
static inline void tcols_out_init(__m512i iq[4][2], int R, int64_t nb) {
  for (int r = 0; r < R; r++)
    for (int h = 0; h < 2; h++) {
      int ix[WV];
      for (int m = 0; m < WV; m++) {
        const int col = h * WV + m, tw = col / 4;
        ix[m] = (col % 4 & 1 ? WV : 0) + (tw < nb ? r * (int)nb + tw : 0);
      }
      iq[r][h] = _mm512_loadu_si512(ix);
    }
}

/* columns j < 2 from the pair (z0, z1), j >= 2 from (z2, z3), with the same indices */
static inline __attribute__((always_inline)) __m512 tcols_out(const __m512 z[4], __m512i iq) {
  return _mm512_mask_blend_ps((__mmask16)0xCCCC, _mm512_permutex2var_ps(z[0], iq, z[1]),
                              _mm512_permutex2var_ps(z[2], iq, z[3]));
}

/* the forward's BatchNorm row statistics (when e->stats) of the images whose last row of
 * tiles the chunk [g0, g1) of rows of tiles wrote: TH rows of tiles an image, the part's
 * images before hi, Co output planes of P values each */
static inline void chunk_stats(const wepi *e, const float *out, int64_t g0, int64_t g1, int64_t hi, int64_t TH,
                               int64_t Co, int64_t P) {
  if (!e->stats) return;
  for (int64_t n = g0 / TH; n < hi && (n + 1) * TH <= g1; n++)
    if ((n + 1) * TH > g0) sf_batchnorm_image_stats(e->stats + n * Co * 2, out + n * Co * P, Co, P);
}

/* a weight gradient's 3x3 values y[r*3 + s] of the 16 (k, c) pairs of block (kb, cb), lane
 * (k%4)*4 + c%4, into acc[k][c][r*3 + s] (C input channels) */
static inline void wg_scatter(float *acc, float y[9][WV], int64_t kb, int64_t cb, int64_t C) {
  for (int l = 0; l < WV; l++) {
    float *o = acc + ((kb * 4 + l / 4) * C + cb * 4 + l % 4) * 9;
    for (int q = 0; q < 9; q++) o[q] = y[q][l];
  }
}

/* A weight-gradient part's scratch: X (nx floats) in sf_scratch; in sf_scratch2 the part's
 * [K][C][9] sums (recorded as *partial), then Mw (np transformed positions x K x C, zeroed)
 * and E (ne floats), 64-byte aligned since K*C is a multiple of 16. 0, or -1 (with *fail
 * set: any part may set it, only ever set) when they cannot be allocated. */
static inline int wg_part_scratch(float **X, float **Mw, float **E, float **partial, int *fail, int64_t nx,
                                  int64_t K, int64_t C, int np, int64_t ne) {
  float *x = sf_scratch((size_t)nx), *acc = sf_scratch2((size_t)(K * C * 9 + np * K * C + ne));
  if (!x || !acc) {
    __atomic_store_n(fail, 1, __ATOMIC_RELAXED);
    return -1;
  }
  *X = x, *partial = acc, *Mw = acc + K * C * 9, *E = *Mw + np * K * C;
  memset(*Mw, 0, (size_t)(np * K * C) * sizeof(float));
  return 0;
}

#endif
