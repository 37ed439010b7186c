/* The stride-1 3x3 pad-1 convolution by Winograd's minimal filtering F(2x2, 3x3) (Lavin
 * and Gray, "Fast algorithms for convolutional neural networks", 2016), on AVX-512.
 *
 * The output plane is cut into 2x2 tiles; tile (th, tw) reads the 4x4 input patch at rows
 * 2th-1 .. 2th+2, columns 2tw-1 .. 2tw+2 (zeros outside the image: the padding). With
 *
 *   B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1]        (input patch d, 4x4)
 *   G   = [1 0 0; 1/2 1/2 1/2; 1/2 -1/2 1/2; 0 0 1]      (kernel g, 3x3)
 *   A^T = [1 1 1 0; 0 1 -1 -1]                           (output tile y, 2x2)
 *
 * y = A^T [ sum over input channels c of (G g[k,c] G^T) . (B^T d[c] B) ] A, where "." is the
 * element-wise product of 4x4 matrices. So the 16 elements xi of the transformed domain are
 * 16 independent matrix products M[xi] (Co x tiles) = V[xi] (Co x Ci) U[xi] (Ci x tiles):
 * 16 multiply-adds per tile and channel pair where the direct sum takes 36, the rest being
 * the transforms' additions, which are linear in the channels rather than quadratic.
 *
 * Work is done in chunks of consecutive rows of tiles (spanning images when the planes
 * are small), sized so that a chunk's U and M stay in L2:
 *   1. input transform: each input row is split into its even and odd columns (two
 *      permutes), which gives the column transform of every tile along the row at once
 *      (16 tiles per vector); the row transform combines 4 such rows;
 *   2. the 16 products, on register tiles of 8 output channels x 3 vectors of tiles;
 *   3. output transform, with the bias, residual and ReLU epilogue, the 2 columns of each
 *      tile interleaved back by a permute, stored straight into the output rows.
 *
 * The results differ from the direct sum's by rounding only (the transforms add and halve;
 * measured within a few ulps of the output's scale, tests/test_kernels_conv.lua), and do not
 * depend on the thread count: every output is computed by the same operations in the same
 * order whichever part computes it. */
#include "conv2d_winograd.h"

#include "../core/parallel.h"
#include "nn.h"

#if defined(__AVX512F__) && defined(__GNUC__)
#include "conv2d_winograd_kern.h"

/* floats of U and M together per chunk: 512 kB, half the L2 of the cores this targets */
#define WBUDGET (128 * 1024)

static int wino_on = 1;

int sf_conv2d_winograd_enable(int on) {
  if (on < 0) return __atomic_load_n(&wino_on, __ATOMIC_RELAXED);
  return __atomic_exchange_n(&wino_on, on != 0, __ATOMIC_RELAXED);
}

/* Below 16 channels on either side the products are too short to pay for the transforms
 * (the stem's 3 input channels): the masked direct path stays. */
int sf_conv2d_winograd_ok(int64_t Ci, int64_t Co, int64_t H, int64_t W) {
  return __atomic_load_n(&wino_on, __ATOMIC_RELAXED) && Ci >= 16 && Co >= 16 && H >= 1 && W >= 1;
}



typedef struct {
  int64_t Ci, Co, Kp, H, W, P;
  int64_t TH, TW; /* tiles per column and per row of a plane */
  int64_t rows;   /* rows of tiles per chunk */
  int64_t Ts;     /* floats per (xi, channel) row of U and M: a chunk's tiles, rounded up to vectors */
  int64_t us, ms; /* floats from one xi to the next in U and M: a vector more than their rows, so
                     that the 16 rows a transform reads or writes at once are not all 4 kB
                     apart, in the same few L1 sets (that made the transforms about 2x slower:
                     16->16 on 32x32, batch 128, forward 5.6 -> 4.4 ms with the padding) */
} wgeom;

static int64_t kpad(int64_t Co) { return (Co + WK - 1) / WK * WK; }

/* chunks of at most `tiles` tiles, the most rows whose tiles are a multiple of `align`
 * (whole register tiles) when some are */
static void wgeom_init_for(wgeom *g, int64_t Ci, int64_t Co, int64_t Kp, int64_t H, int64_t W, int64_t tiles,
                           int64_t align) {
  *g = (wgeom){.Ci = Ci, .Co = Co, .Kp = Kp, .H = H, .W = W, .P = H * W, .TH = (H + 1) / 2, .TW = (W + 1) / 2};
  const int64_t most = tiles / g->TW > 0 ? tiles / g->TW : 1;
  g->rows = most;
  for (int64_t r = most; r >= 1; r--)
    if (r * g->TW % align == 0) {
      g->rows = r;
      break;
    }
  g->Ts = (g->rows * g->TW + WV - 1) / WV * WV;
  g->us = Ci * g->Ts + WV;
  g->ms = g->Kp * g->Ts + WV;
}

/* the forward's: U and M of a chunk within WBUDGET, rows of whole 3-vector tiles */
static void wgeom_init(wgeom *g, int64_t Ci, int64_t Co, int64_t H, int64_t W) {
  wgeom_init_for(g, Ci, Co, kpad(Co), H, W, WBUDGET / (16 * (Ci + kpad(Co))), 3 * WV);
}

int64_t sf_conv2d_winograd_wfloats(int64_t Ci, int64_t Co) { return 16 * Ci * kpad(Co); }

void sf_conv2d_winograd_scratch(int64_t Ci, int64_t Co, int64_t H, int64_t W, int64_t *n1, int64_t *n2) {
  wgeom g;
  wgeom_init(&g, Ci, Co, H, W);
  *n1 = 16 * g.us;
  *n2 = 16 * g.ms;
}

/* V[xi][c][k] (k < Kp, zero past Co) = (G g[k,c] G^T)[xi] from wp[(c*9 + r*3 + s)*Co + k],
 * 16 output channels at a time */
static void weight_transform(float *restrict V, const float *restrict wp, int64_t Ci, int64_t Co, int64_t Kp) {
  const __m512 half = _mm512_set1_ps(0.5f);
  for (int64_t c = 0; c < Ci; c++)
    for (int64_t k0 = 0; k0 < Kp; k0 += WV) {
      const __mmask16 in = lane_mask(Co - k0), st = lane_mask(Kp - k0);
      __m512 w[3][3], t[4][3];
      for (int r = 0; r < 3; r++)
        for (int s = 0; s < 3; s++) w[r][s] = _mm512_maskz_loadu_ps(in, wp + (c * 9 + r * 3 + s) * Co + k0);
      for (int s = 0; s < 3; s++) { /* G g */
        t[0][s] = w[0][s];
        t[1][s] = _mm512_mul_ps(half, _mm512_add_ps(_mm512_add_ps(w[0][s], w[1][s]), w[2][s]));
        t[2][s] = _mm512_mul_ps(half, _mm512_add_ps(_mm512_sub_ps(w[0][s], w[1][s]), w[2][s]));
        t[3][s] = w[2][s];
      }
      for (int a = 0; a < 4; a++) { /* (G g) G^T */
        __m512 v[4];
        v[0] = t[a][0];
        v[1] = _mm512_mul_ps(half, _mm512_add_ps(_mm512_add_ps(t[a][0], t[a][1]), t[a][2]));
        v[2] = _mm512_mul_ps(half, _mm512_add_ps(_mm512_sub_ps(t[a][0], t[a][1]), t[a][2]));
        v[3] = t[a][2];
        for (int b = 0; b < 4; b++) _mm512_mask_storeu_ps(V + ((a * 4 + b) * Ci + c) * Kp + k0, st, v[b]);
      }
    }
}



typedef struct {
  __mmask16 a0, a1, b0, b1; /* the loads of a row: columns 2tw0-1+m and 2tw0+1+m, m < 32 */
} rowmask;

/* the column transform (d B) of the 16 tiles from tw0 along input row h of plane:
 * r[j][l] for tile tw0 + l, from its columns 2tw-1 .. 2tw+2 (zeros outside the image) */
static inline __attribute__((always_inline)) void row_cols(__m512 r[4], const float *plane, int64_t h,
                                                           const wgeom *g, int64_t tw0, const rowmask *rm,
                                                           __m512i ie, __m512i io) {
  if (h < 0 || h >= g->H) {
    r[0] = r[1] = r[2] = r[3] = _mm512_setzero_ps();
    return;
  }
  const float *p = plane + h * g->W + 2 * tw0;
  const __m512 a0 = _mm512_maskz_loadu_ps(rm->a0, p - 1), a1 = _mm512_maskz_loadu_ps(rm->a1, p + 15);
  const __m512 b0 = _mm512_maskz_loadu_ps(rm->b0, p + 1), b1 = _mm512_maskz_loadu_ps(rm->b1, p + 17);
  const __m512 op = _mm512_permutex2var_ps(a0, ie, a1); /* column 2tw - 1 */
  const __m512 e = _mm512_permutex2var_ps(a0, io, a1);  /* 2tw */
  const __m512 o = _mm512_permutex2var_ps(b0, ie, b1);  /* 2tw + 1 */
  const __m512 en = _mm512_permutex2var_ps(b0, io, b1); /* 2tw + 2 */
  r[0] = _mm512_sub_ps(op, o);
  r[1] = _mm512_add_ps(e, o);
  r[2] = _mm512_sub_ps(o, e);
  r[3] = _mm512_sub_ps(e, en);
}

/* prefetch rows h0 .. h1 of plane (those inside it), the columns from 2 tw0 - 1 that 16
 * tiles read: the planes come from memory, and the transforms otherwise wait on them */
static inline __attribute__((always_inline)) void prefetch_rows(const float *plane, int64_t h0, int64_t h1,
                                                                const wgeom *g, int64_t tw0) {
  if (h0 < 0) h0 = 0;
  if (h1 >= g->H) h1 = g->H - 1;
  const int64_t c0 = 2 * tw0 > 0 ? 2 * tw0 - 1 : 0, c1 = 2 * tw0 + 33 < g->W ? 2 * tw0 + 33 : g->W;
  for (int64_t h = h0; h <= h1; h++)
    for (int64_t c = c0; c < c1; c += 16) _mm_prefetch((const char *)(plane + h * g->W + c), _MM_HINT_T0);
}

/* Planes of at most 16 columns (8 tiles a row: the ResNets' 16x16 and 8x8) put several rows
 * of tiles in one vector, so that the transforms run on full vectors: R = 2 rows of tiles
 * (W <= 16) or 4 (W <= 8), lane l being tile (r, tw) = (l / TW, l % TW). The R input rows a
 * transform step reads (one per row of tiles) are loaded into the slots of S = 32 / R floats
 * of a pair of vectors, and each lane's columns picked out of the pair by one permute. */
typedef struct {
  int R, S;
  __m512i cidx[4]; /* the input patch's columns j = 0..3: slot r, column 2tw - 1 + j */
  __mmask16 cm[4]; /* ... where that column is inside the plane */
  __m512i eidx[2]; /* the output gradient tile's columns b = 0..1: slot r, column 2tw + b */
  __mmask16 em[2];
  __m512i oidx[4]; /* row r of the output tiles: columns 2tw + b from lane r*TW + tw of y_b */
} wpack;

static int packed(const wgeom *g) { return g->W <= 16; }

static void wpack_init(wpack *pk, const wgeom *g) {
  pk->R = g->W <= 8 ? 4 : 2;
  pk->S = 32 / pk->R;
  int ci[4][WV], ei[2][WV], oi[4][WV];
  unsigned cm[4] = {0}, em[2] = {0};
  for (int l = 0; l < WV; l++) {
    const int r = (int)(l / g->TW), tw = (int)(l % g->TW), in = r < pk->R;
    for (int j = 0; j < 4; j++) {
      const int col = 2 * tw - 1 + j, ok = in && col >= 0 && col < g->W;
      ci[j][l] = ok ? r * pk->S + col : 0;
      if (ok) cm[j] |= 1u << l;
    }
    for (int b = 0; b < 2; b++) {
      const int col = 2 * tw + b, ok = in && col < g->W;
      ei[b][l] = ok ? r * pk->S + col : 0;
      if (ok) em[b] |= 1u << l;
    }
    for (int q = 0; q < 4; q++) oi[q][l] = (l & 1 ? WV : 0) + (int)(q * g->TW) + l / 2; /* lanes past 2 TW unused */
  }
  for (int j = 0; j < 4; j++) pk->cidx[j] = _mm512_loadu_si512(ci[j]), pk->cm[j] = (__mmask16)cm[j];
  for (int b = 0; b < 2; b++) pk->eidx[b] = _mm512_loadu_si512(ei[b]), pk->em[b] = (__mmask16)em[b];
  for (int q = 0; q < 4; q++) pk->oidx[q] = _mm512_loadu_si512(oi[q]);
}

/* rows h[r] (r < R; none where h[r] < 0 or >= H) of plane into the slots of z[0], z[1] */
static inline __attribute__((always_inline)) void load_rows(__m512 z[2], const float *plane, const int64_t h[4],
                                                            const wgeom *g, const wpack *pk) {
  if (pk->R == 2) {
    const __mmask16 m = lane_mask(g->W);
    for (int r = 0; r < 2; r++)
      z[r] = h[r] >= 0 && h[r] < g->H ? _mm512_maskz_loadu_ps(m, plane + h[r] * g->W) : _mm512_setzero_ps();
    return;
  }
  const __mmask8 m = (__mmask8)((1u << g->W) - 1u);
  __m256 y[4];
  for (int r = 0; r < 4; r++)
    y[r] = h[r] >= 0 && h[r] < g->H ? _mm256_maskz_loadu_ps(m, plane + h[r] * g->W) : _mm256_setzero_ps();
  z[0] = _mm512_insertf32x8(_mm512_castps256_ps512(y[0]), y[1], 1);
  z[1] = _mm512_insertf32x8(_mm512_castps256_ps512(y[2]), y[3], 1);
}

/* the rows of tiles from gg in one vector: up to R, within the image and the chunk */
static inline int64_t group_rows(const wgeom *g, const wpack *pk, int64_t gg, int64_t g1) {
  int64_t n = pk->R, th = gg % g->TH;
  if (n > g1 - gg) n = g1 - gg;
  if (n > g->TH - th) n = g->TH - th;
  return n;
}

/* input_transform on packed rows of tiles */
static void input_transform_packed(float *restrict U, const float *restrict in, const wgeom *g, int64_t g0,
                                   int64_t g1) {
  const int64_t Ci = g->Ci, TH = g->TH, TW = g->TW, Ts = g->Ts, xs = g->us;
  wpack pk;
  wpack_init(&pk, g);
  for (int64_t c = 0; c < Ci; c++)
    for (int64_t gg = g0; gg < g1;) {
      const int64_t n = group_rows(g, &pk, gg, g1), th = gg % TH;
      const float *plane = in + ((gg / TH) * Ci + c) * g->P;
      if (c + 1 < Ci) prefetch_rows(plane + g->P, 2 * th - 1, 2 * (th + n), g, 0);
      __m512 rr[4][4]; /* per patch row i, the column transforms of every lane's tile */
      for (int i = 0; i < 4; i++) {
        int64_t h[4];
        for (int r = 0; r < 4; r++) h[r] = r < n ? 2 * (th + r) - 1 + i : -1;
        __m512 z[2], col[4];
        load_rows(z, plane, h, g, &pk);
        for (int j = 0; j < 4; j++) col[j] = _mm512_maskz_permutex2var_ps(pk.cm[j], z[0], pk.cidx[j], z[1]);
        rr[i][0] = _mm512_sub_ps(col[0], col[2]);
        rr[i][1] = _mm512_add_ps(col[1], col[2]);
        rr[i][2] = _mm512_sub_ps(col[2], col[1]);
        rr[i][3] = _mm512_sub_ps(col[1], col[3]);
      }
      const __mmask16 st = lane_mask(n * TW);
      float *u = U + c * Ts + (gg - g0) * TW;
      for (int j = 0; j < 4; j++) {
        store_lanes(u + (0 * 4 + j) * xs, st, _mm512_sub_ps(rr[0][j], rr[2][j]));
        store_lanes(u + (1 * 4 + j) * xs, st, _mm512_add_ps(rr[1][j], rr[2][j]));
        store_lanes(u + (2 * 4 + j) * xs, st, _mm512_sub_ps(rr[2][j], rr[1][j]));
        store_lanes(u + (3 * 4 + j) * xs, st, _mm512_sub_ps(rr[1][j], rr[3][j]));
      }
      gg += n;
    }
}


/* U[xi][c][(gg - g0)*TW + tw] = (B^T d B)[xi] of tile (th, tw) of image n, gg = n*TH + th,
 * for the chunk's rows of tiles [g0, g1); lanes past the chunk's tiles are zeroed */
static void input_transform(float *restrict U, const float *restrict in, const wgeom *g, int64_t g0, int64_t g1) {
  const int64_t Ci = g->Ci, TH = g->TH, TW = g->TW, Ts = g->Ts, xs = g->us, nt = (g1 - g0) * TW;
  const __m512i ie = idx_even(), io = idx_odd();
  zero_tails(U, 16, Ci, xs, Ts, nt);
  if (packed(g)) {
    input_transform_packed(U, in, g, g0, g1);
    return;
  }
  for (int64_t tw0 = 0; tw0 < TW; tw0 += WV) {
    const __mmask16 st = lane_mask(TW - tw0);
    const rowmask rm = {col_mask(2 * tw0 - 1, g->W), col_mask(2 * tw0 + 15, g->W), col_mask(2 * tw0 + 1, g->W),
                        col_mask(2 * tw0 + 17, g->W)};
    for (int64_t c = 0; c < Ci; c++) {
      __m512 r[4][4]; /* the column transforms of input rows 2th-1 .. 2th+2 */
      for (int i = 0; i < 4; i++) /* (all set before use; this tells the compiler so) */
        for (int j = 0; j < 4; j++) r[i][j] = _mm512_setzero_ps();
      for (int64_t gg = g0; gg < g1; gg++) {
        const int64_t n = gg / TH, th = gg % TH;
        const float *plane = in + (n * Ci + c) * g->P;
        if (gg > g0 && th > 0) { /* the previous tile row's last two */
          for (int j = 0; j < 4; j++) r[0][j] = r[2][j], r[1][j] = r[3][j];
        } else {
          row_cols(r[0], plane, 2 * th - 1, g, tw0, &rm, ie, io);
          row_cols(r[1], plane, 2 * th, g, tw0, &rm, ie, io);
        }
        if (c + 1 < Ci) /* the rows the next channel reads here, a channel's sweep ahead */
          prefetch_rows(plane + g->P, 2 * th + (gg > g0 && th > 0 ? 1 : -1), 2 * th + 2, g, tw0);
        row_cols(r[2], plane, 2 * th + 1, g, tw0, &rm, ie, io);
        row_cols(r[3], plane, 2 * th + 2, g, tw0, &rm, ie, io);
        float *u = U + c * Ts + (gg - g0) * TW + tw0;
        for (int j = 0; j < 4; j++) {
          store_lanes(u + (0 * 4 + j) * xs, st, _mm512_sub_ps(r[0][j], r[2][j]));
          store_lanes(u + (1 * 4 + j) * xs, st, _mm512_add_ps(r[1][j], r[2][j]));
          store_lanes(u + (2 * 4 + j) * xs, st, _mm512_sub_ps(r[2][j], r[1][j]));
          store_lanes(u + (3 * 4 + j) * xs, st, _mm512_sub_ps(r[1][j], r[3][j]));
        }
      }
    }
  }
}


/* M[xi] = V[xi] U[xi] for the chunk's nt tiles */
static void products(float *restrict M, const float *restrict U, const float *restrict V, const wgeom *g, int64_t nt) {
  const int64_t Ci = g->Ci, Kp = g->Kp, Ts = g->Ts, nvec = (nt + WV - 1) / WV;
  for (int xi = 0; xi < 16; xi++) {
    const float *u = U + xi * g->us, *v = V + xi * Ci * Kp;
    float *m = M + xi * g->ms;
    for (int64_t v0 = 0; v0 < nvec; v0 += 3) {
      const int64_t nv = nvec - v0 < 3 ? nvec - v0 : 3;
      const float *uv = u + v0 * WV;
      for (int64_t k0 = 0; k0 < Kp; k0 += WK) wtiles[nv](m + k0 * Ts + v0 * WV, &uv, v + k0, 1, Ci, Kp, Ts);
    }
  }
}


/* A^T M A for one vector of tiles: y[a][b] is output row 2th + a, column 2tw + b of each
 * lane's tile, from x[xi] = M[xi] */
static inline __attribute__((always_inline)) void tile_outputs(__m512 y[2][2], const __m512 x[16]) {
  for (int a = 0; a < 2; a++) {
    __m512 s[4];
    for (int j = 0; j < 4; j++)
      s[j] = a == 0 ? _mm512_add_ps(_mm512_add_ps(x[j], x[4 + j]), x[8 + j])
                    : _mm512_sub_ps(_mm512_sub_ps(x[4 + j], x[8 + j]), x[12 + j]);
    y[a][0] = _mm512_add_ps(_mm512_add_ps(s[0], s[1]), s[2]);
    y[a][1] = _mm512_sub_ps(_mm512_sub_ps(s[1], s[2]), s[3]);
  }
}

/* output_transform on packed rows of tiles */
static void output_transform_packed(float *restrict out, const float *restrict M, const wgeom *g, int64_t g0,
                                    int64_t g1, const wepi *e) {
  const int64_t Co = g->Co, TH = g->TH, TW = g->TW, Ts = g->Ts, W = g->W, P = g->P;
  const __mmask16 keep = lane_mask(W);
  wpack pk;
  wpack_init(&pk, g);
  for (int64_t k = 0; k < Co; k++)
    for (int64_t gg = g0; gg < g1;) {
      const int64_t n = group_rows(g, &pk, gg, g1), th = gg % TH;
      const float *m = M + k * Ts + (gg - g0) * TW;
      const __mmask16 ld = lane_mask(n * TW);
      __m512 x[16], y[2][2];
      for (int xi = 0; xi < 16; xi++) x[xi] = _mm512_maskz_loadu_ps(ld, m + xi * g->ms);
      tile_outputs(y, x);
      for (int a = 0; a < 2; a++) {
        for (int64_t r = 0; r < n; r++) {
          const int64_t oh = 2 * (th + r) + a;
          if (oh >= g->H) break;
          const int64_t at = ((gg / TH) * Co + k) * P + oh * W;
          const __m512 v = _mm512_permutex2var_ps(y[a][0], pk.oidx[r], y[a][1]);
          _mm512_mask_storeu_ps(out + at, keep, wepilogue(v, e, k, e->residual ? e->residual + at : NULL, keep));
        }
      }
      gg += n;
    }
}

/* out rows 2th, 2th+1 of the chunk's tiles = A^T M A, with the epilogue */
static void output_transform(float *restrict out, const float *restrict M, const wgeom *g, int64_t g0, int64_t g1,
                             const wepi *e) {
  if (packed(g)) {
    output_transform_packed(out, M, g, g0, g1, e);
    return;
  }
  const int64_t Co = g->Co, TH = g->TH, TW = g->TW, Ts = g->Ts, W = g->W, P = g->P;
  const __m512i il = idx_lo(), ih = idx_hi();
  for (int64_t tw0 = 0; tw0 < TW; tw0 += WV) {
    const __mmask16 ld = lane_mask(TW - tw0);
    const __mmask16 klo = col_mask(2 * tw0, W), khi = col_mask(2 * tw0 + WV, W);
    for (int64_t k = 0; k < Co; k++)
      for (int64_t gg = g0; gg < g1; gg++) {
        const int64_t n = gg / TH, th = gg % TH;
        const float *m = M + k * Ts + (gg - g0) * TW + tw0;
        __m512 x[16], y[2][2];
        for (int xi = 0; xi < 16; xi++) x[xi] = _mm512_maskz_loadu_ps(ld, m + xi * g->ms);
        tile_outputs(y, x);
        for (int a = 0; a < 2; a++) {
          const int64_t oh = 2 * th + a;
          if (oh >= g->H) break;
          const __m512 y0 = y[a][0], y1 = y[a][1];
          const int64_t at = (n * Co + k) * P + oh * W + 2 * tw0;
          const float *res = e->residual ? e->residual + at : NULL;
          float *o = out + at;
          _mm512_mask_storeu_ps(o, klo, wepilogue(_mm512_permutex2var_ps(y0, il, y1), e, k, res, klo));
          if (khi)
            _mm512_mask_storeu_ps(o + WV, khi,
                                  wepilogue(_mm512_permutex2var_ps(y0, ih, y1), e, k, res ? res + WV : NULL, khi));
        }
      }
  }
}

typedef struct {
  float *out;
  const float *in, *V;
  const wgeom *g;
  const wepi *e;
} wctx;

static void wpart(void *ctx, int64_t lo, int64_t hi, int part) {
  (void)part;
  const wctx *d = ctx;
  const wgeom *g = d->g;
  float *U = sf_scratch((size_t)(16 * g->us));
  float *M = sf_scratch2((size_t)(16 * g->ms));
  SF_ASSERT(U && M); /* reserved by the caller through sf_conv2d_reserve */
  for (int64_t g0 = lo * g->TH; g0 < hi * g->TH; g0 += g->rows) {
    const int64_t g1 = g0 + g->rows < hi * g->TH ? g0 + g->rows : hi * g->TH;
    input_transform(U, d->in, g, g0, g1);
    products(M, U, d->V, g, (g1 - g0) * g->TW);
    output_transform(d->out, M, g, g0, g1, d->e);
    chunk_stats(d->e, d->out, g0, g1, hi, g->TH, g->Co, g->P);
  }
}

void sf_conv2d_winograd_run(float *out, const float *in, const float *wp, float *vw, int64_t N, int64_t Ci,
                            int64_t Co, int64_t H, int64_t W, const float *bias, const float *residual, int relu,
                            float *stats, int parts) {
  wgeom g;
  wgeom_init(&g, Ci, Co, H, W);
  weight_transform(vw, wp, Ci, Co, g.Kp);
  const wepi e = {bias, residual, relu, stats};
  wctx d = {out, in, vw, &g, &e};
  sf_parallel_for(parts, N, wpart, &d);
}

/* ---- the weight gradient, by F(3x3, 2x2) ----
 * dweight[k][c] (3x3) = sum over tiles of the correlation of the input patch d[c] (4x4, as
 * in the forward) with the output gradient's tile e[k] (2x2): 3x3 outputs of a 2x2 filter,
 * Winograd's F(3x3, 2x2) with the same 4x4 transformed domain. With the forward's B^T (its
 * last row [0 1 0 -1]; the sign this row takes in F(3x3, 2x2) is folded into the last row
 * of G2 instead), and
 *
 *   G2  = [1 0; 1/2 1/2; 1/2 -1/2; 0 -1]                  (output-gradient tile e, 2x2)
 *   A2^T = [1 1 1 0; 0 1 -1 0; 0 1 1 1]                    (weight gradient, 3x3)
 *
 * dweight[k][c] = A2^T [ sum over tiles of (G2 e[k] G2^T) . (B^T d[c] B) ] A2: the sum over
 * tiles (images and positions) happens in the transformed domain, 16 products
 * Mw[xi] (K x C) += E[xi] (K x tiles) U[xi] (C x tiles)^T, and the inverse transform once
 * per part at the end. The products run over vectors of tiles on 4 x 4 register tiles of
 * (k, c), summed across lanes once per chunk (a transpose-and-add tree: 16 sums in 45
 * operations), into Mw blocked as [xi][k/4][c/4][(k%4)*4 + c%4]. */

#define WG_TILES 256 /* tiles per chunk: the lane sums closing each register tile stay small
                       next to its FMAs (32->32 on 16x16, batch 128, the products alone: 2.55 ms
                       at 256 tiles, 2.94 at 512, 2.53 at 128) */

int sf_conv2d_winograd_wgrad_ok(int64_t C, int64_t K, int64_t H, int64_t W) {
  return __atomic_load_n(&wino_on, __ATOMIC_RELAXED) && C >= 16 && K >= 16 && C % 4 == 0 && K % 4 == 0 && H >= 1 &&
         W >= 1;
}

static void wggeom_init(wgeom *g, int64_t C, int64_t K, int64_t H, int64_t W) {
  int64_t tiles = 1024 * 1024 / (16 * (C + K)); /* U and E within 4 MB */
  if (tiles > WG_TILES) tiles = WG_TILES;
  wgeom_init_for(g, C, K, K, H, W, tiles, WV);
}

/* per part: U in sf_scratch; the part's [K][C][9] sums, Mw and E in sf_scratch2 */
void sf_conv2d_winograd_wgrad_scratch(int64_t C, int64_t K, int64_t H, int64_t W, int64_t *n1, int64_t *n2) {
  wgeom g;
  wggeom_init(&g, C, K, H, W);
  *n1 = 16 * g.us;
  *n2 = K * C * 9 + 16 * K * C + 16 * g.ms;
}

/* dout_transform on packed rows of tiles */
static void dout_transform_packed(float *restrict E, const float *restrict dout, const wgeom *g, int64_t g0,
                                  int64_t g1) {
  const int64_t K = g->Kp, TH = g->TH, TW = g->TW, Ts = g->Ts, xs = g->ms;
  const __m512 half = _mm512_set1_ps(0.5f);
  wpack pk;
  wpack_init(&pk, g);
  for (int64_t k = 0; k < K; k++)
    for (int64_t gg = g0; gg < g1;) {
      const int64_t n = group_rows(g, &pk, gg, g1), th = gg % TH;
      const float *plane = dout + ((gg / TH) * K + k) * g->P;
      if (k + 1 < K) prefetch_rows(plane + g->P, 2 * th, 2 * (th + n) - 1, g, 0);
      __m512 q[2][4];
      for (int a = 0; a < 2; a++) {
        int64_t h[4];
        for (int r = 0; r < 4; r++) h[r] = r < n ? 2 * (th + r) + a : -1;
        __m512 z[2];
        load_rows(z, plane, h, g, &pk);
        const __m512 ev = _mm512_maskz_permutex2var_ps(pk.em[0], z[0], pk.eidx[0], z[1]);
        const __m512 od = _mm512_maskz_permutex2var_ps(pk.em[1], z[0], pk.eidx[1], z[1]);
        q[a][0] = ev;
        q[a][1] = _mm512_mul_ps(half, _mm512_add_ps(ev, od));
        q[a][2] = _mm512_mul_ps(half, _mm512_sub_ps(ev, od));
        q[a][3] = _mm512_sub_ps(_mm512_setzero_ps(), od);
      }
      const __mmask16 st = lane_mask(n * TW);
      float *u = E + k * Ts + (gg - g0) * TW;
      for (int j = 0; j < 4; j++) {
        store_lanes(u + (0 * 4 + j) * xs, st, q[0][j]);
        store_lanes(u + (1 * 4 + j) * xs, st, _mm512_mul_ps(half, _mm512_add_ps(q[0][j], q[1][j])));
        store_lanes(u + (2 * 4 + j) * xs, st, _mm512_mul_ps(half, _mm512_sub_ps(q[0][j], q[1][j])));
        store_lanes(u + (3 * 4 + j) * xs, st, _mm512_sub_ps(_mm512_setzero_ps(), q[1][j]));
      }
      gg += n;
    }
}

/* E[xi][k][(gg - g0)*TW + tw] = (G2 e G2^T)[xi] of tile (th, tw) of image n's output
 * gradient (rows 2th, 2th+1, columns 2tw, 2tw+1; zeros outside the plane), for the chunk's
 * rows of tiles [g0, g1); lanes past its tiles zeroed */
static void dout_transform(float *restrict E, const float *restrict dout, const wgeom *g, int64_t g0, int64_t g1) {
  const int64_t K = g->Kp, TH = g->TH, TW = g->TW, Ts = g->Ts, xs = g->ms, nt = (g1 - g0) * TW;
  const __m512i ie = idx_even(), io = idx_odd();
  const __m512 half = _mm512_set1_ps(0.5f);
  zero_tails(E, 16, K, xs, Ts, nt);
  if (packed(g)) {
    dout_transform_packed(E, dout, g, g0, g1);
    return;
  }
  for (int64_t tw0 = 0; tw0 < TW; tw0 += WV) {
    const __mmask16 st = lane_mask(TW - tw0), m0 = col_mask(2 * tw0, g->W), m1 = col_mask(2 * tw0 + WV, g->W);
    for (int64_t k = 0; k < K; k++)
      for (int64_t gg = g0; gg < g1; gg++) {
        const int64_t n = gg / TH, th = gg % TH;
        const float *plane = dout + (n * K + k) * g->P;
        if (k + 1 < K) prefetch_rows(plane + g->P, 2 * th, 2 * th + 1, g, tw0);
        __m512 q[2][4]; /* the column transforms (e G2^T) of rows 2th and 2th + 1 */
        for (int a = 0; a < 2; a++) {
          const int64_t h = 2 * th + a;
          if (h >= g->H) {
            q[a][0] = q[a][1] = q[a][2] = q[a][3] = _mm512_setzero_ps();
            continue;
          }
          const float *p = plane + h * g->W + 2 * tw0;
          const __m512 a0 = _mm512_maskz_loadu_ps(m0, p), a1 = _mm512_maskz_loadu_ps(m1, p + WV);
          const __m512 e = _mm512_permutex2var_ps(a0, ie, a1), o = _mm512_permutex2var_ps(a0, io, a1);
          q[a][0] = e;
          q[a][1] = _mm512_mul_ps(half, _mm512_add_ps(e, o));
          q[a][2] = _mm512_mul_ps(half, _mm512_sub_ps(e, o));
          q[a][3] = _mm512_sub_ps(_mm512_setzero_ps(), o);
        }
        float *u = E + k * Ts + (gg - g0) * TW + tw0;
        for (int j = 0; j < 4; j++) {
          store_lanes(u + (0 * 4 + j) * xs, st, q[0][j]);
          store_lanes(u + (1 * 4 + j) * xs, st, _mm512_mul_ps(half, _mm512_add_ps(q[0][j], q[1][j])));
          store_lanes(u + (2 * 4 + j) * xs, st, _mm512_mul_ps(half, _mm512_sub_ps(q[0][j], q[1][j])));
          store_lanes(u + (3 * 4 + j) * xs, st, _mm512_sub_ps(_mm512_setzero_ps(), q[1][j]));
        }
      }
  }
}


typedef struct {
  const float *dout, *inp;
  const wgeom *g;
  float **partial;
  int fail;
} wgctx;

static void wg_part(void *ctx, int64_t lo, int64_t hi, int part) {
  wgctx *d = ctx;
  const wgeom *g = d->g;
  const int64_t C = g->Ci, K = g->Kp, KB = K / 4, CB = C / 4;
  float *U, *Mw, *E;
  if (wg_part_scratch(&U, &Mw, &E, &d->partial[part], &d->fail, 16 * g->us, K, C, 16, 16 * g->ms) != 0) return;
  float *acc = d->partial[part];
  for (int64_t g0 = lo * g->TH; g0 < hi * g->TH; g0 += g->rows) {
    const int64_t g1 = g0 + g->rows < hi * g->TH ? g0 + g->rows : hi * g->TH;
    const int64_t nvec = ((g1 - g0) * g->TW + WV - 1) / WV;
    input_transform(U, d->inp, g, g0, g1);
    dout_transform(E, d->dout, g, g0, g1);
    for (int xi = 0; xi < 16; xi++)
      for (int64_t kb = 0; kb < KB; kb++)
        for (int64_t cb = 0; cb < CB; cb++)
          wg_tile(Mw + ((xi * KB + kb) * CB + cb) * WV, E + xi * g->ms + kb * 4 * g->Ts, U + xi * g->us + cb * 4 * g->Ts,
                  g->Ts, nvec);
  }
  /* acc[k][c][r*3 + s] = (A2^T Mw[k][c] A2)[r][s], 16 (k, c) pairs per vector */
  for (int64_t kb = 0; kb < KB; kb++)
    for (int64_t cb = 0; cb < CB; cb++) {
      __m512 m[16], t[3][4];
      float y[9][WV];
      for (int xi = 0; xi < 16; xi++) m[xi] = _mm512_load_ps(Mw + ((xi * KB + kb) * CB + cb) * WV);
      for (int j = 0; j < 4; j++) {
        t[0][j] = _mm512_add_ps(_mm512_add_ps(m[j], m[4 + j]), m[8 + j]);
        t[1][j] = _mm512_sub_ps(m[4 + j], m[8 + j]);
        t[2][j] = _mm512_add_ps(_mm512_add_ps(m[4 + j], m[8 + j]), m[12 + j]);
      }
      for (int r = 0; r < 3; r++) {
        _mm512_storeu_ps(y[r * 3 + 0], _mm512_add_ps(_mm512_add_ps(t[r][0], t[r][1]), t[r][2]));
        _mm512_storeu_ps(y[r * 3 + 1], _mm512_sub_ps(t[r][1], t[r][2]));
        _mm512_storeu_ps(y[r * 3 + 2], _mm512_add_ps(_mm512_add_ps(t[r][1], t[r][2]), t[r][3]));
      }
      wg_scatter(acc, y, kb, cb, C);
    }
}

int sf_conv2d_winograd_wgrad(float **partial, int parts, const float *dout, const float *inp, int64_t N, int64_t C,
                             int64_t K, int64_t H, int64_t W) {
  wgeom g;
  wggeom_init(&g, C, K, H, W);
  wgctx d = {dout, inp, &g, partial, 0};
  sf_parallel_for(parts, N, wg_part, &d);
  return d.fail ? -1 : 0;
}

#else /* no AVX-512: never taken */

int sf_conv2d_winograd_enable(int on) {
  (void)on;
  return 0;
}
int sf_conv2d_winograd_ok(int64_t Ci, int64_t Co, int64_t H, int64_t W) {
  (void)Ci, (void)Co, (void)H, (void)W;
  return 0;
}
int64_t sf_conv2d_winograd_wfloats(int64_t Ci, int64_t Co) {
  (void)Ci, (void)Co;
  return 0;
}
void sf_conv2d_winograd_scratch(int64_t Ci, int64_t Co, int64_t H, int64_t W, int64_t *n1, int64_t *n2) {
  (void)Ci, (void)Co, (void)H, (void)W;
  *n1 = *n2 = 0;
}
int sf_conv2d_winograd_wgrad_ok(int64_t C, int64_t K, int64_t H, int64_t W) {
  (void)C, (void)K, (void)H, (void)W;
  return 0;
}
void sf_conv2d_winograd_wgrad_scratch(int64_t C, int64_t K, int64_t H, int64_t W, int64_t *n1, int64_t *n2) {
  (void)C, (void)K, (void)H, (void)W;
  *n1 = *n2 = 0;
}
int sf_conv2d_winograd_wgrad(float **partial, int parts, const float *dout, const float *inp, int64_t N, int64_t C,
                             int64_t K, int64_t H, int64_t W) {
  (void)partial, (void)parts, (void)dout, (void)inp, (void)N, (void)C, (void)K, (void)H, (void)W;
  return -1;
}
void sf_conv2d_winograd_run(float *out, const float *in, const float *wp, float *vw, int64_t N, int64_t Ci,
                            int64_t Co, int64_t H, int64_t W, const float *bias, const float *residual, int relu,
                            float *stats, int parts) {
  (void)out, (void)in, (void)wp, (void)vw, (void)N, (void)Ci, (void)Co, (void)H, (void)W, (void)bias;
  (void)residual, (void)relu, (void)stats, (void)parts;
  SF_ASSERT(0 && "sf_conv2d_winograd_run without AVX-512");
}
#endif
