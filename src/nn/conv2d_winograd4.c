/* The stride-1 3x3 pad-1 convolution by Winograd's F(4x4, 3x3) (Lavin and Gray, 2016), on
 * AVX-512: the forward, and with the flipped kernel the input gradient.
 *
 * The output plane is cut into 4x4 tiles; tile (th, tw) reads the 6x6 input patch at rows
 * 4th-1 .. 4th+4, columns 4tw-1 .. 4tw+4 (zeros outside the image). With the interpolation
 * points 0, 1, -1, 2, -2 and infinity,
 *
 *   B^T = [4 0 -5 0 1 0; 0 -4 -4 1 1 0; 0 4 -4 -1 1 0; 0 -2 -1 2 1 0; 0 2 -1 -2 1 0; 0 4 0 -5 0 1]
 *   G   = [1/4 0 0; -1/6 -1/6 -1/6; -1/6 1/6 -1/6; 1/24 1/12 1/6; 1/24 -1/12 1/6; 0 0 1]
 *   A^T = [1 1 1 1 1 0; 0 1 -1 2 -2 0; 0 1 1 4 4 0; 0 1 -1 8 -8 1]
 *
 * y = A^T [ sum over c of (G g G^T) . (B^T d B) ] A: 36 products per 4x4 tile and channel
 * pair, 2.25 per output where F(2x2, 3x3) takes 4 and the direct sum 9. The transforms
 * scale by up to 8 and 1/24, so the rounding error is several times F(2x2, 3x3)'s (the
 * tests hold both to the same bound relative to the outputs' scale).
 *
 * Work goes as in conv2d_winograd_s2.c: chunks of rows of tiles (spanning images), the
 * tiles of a chunk one after another in the lanes of X (36 positions x Ci channels) and M
 * (36 x Co); the transforms pick each tile's 6 columns out of pairs of vectors (2 or 4
 * rows of tiles per vector on planes of at most 32 or 16 columns, conv2d_winograd_kern.h),
 * the products run on the shared register tiles, the output transform interleaves each
 * tile's 4 columns back by two permutes and applies the epilogue. The same operations
 * compute every output whichever part computes it: the same bits at any thread count. */
#include "conv2d_winograd.h"

#include "../core/parallel.h"
#include "nn.h"

#if defined(__AVX512F__) && defined(__GNUC__)
#include "conv2d_winograd_kern.h"

/* floats of X and M per chunk: 512 kB, half the L2, but at least one 3-vector register tile
 * of tiles */
#define FBUDGET (128 * 1024)
#define FB 7                 /* tiles of a row per step on wide planes: their 6 columns within 33 */

static int f4_on = 1;

int sf_conv2d_winograd4_enable(int on) {
  if (on < 0) return __atomic_load_n(&f4_on, __ATOMIC_RELAXED);
  return __atomic_exchange_n(&f4_on, on != 0, __ATOMIC_RELAXED);
}

typedef struct {
  int64_t Ci, Co, Kp, H, W, P;
  int64_t TH, TW; /* tiles per column and per row */
  int64_t rows;   /* rows of tiles per chunk */
  int64_t Ts;     /* floats per (position, channel) row: a chunk's tiles rounded up to vectors */
  int64_t xs, ms; /* floats from one position to the next in X and M (a vector of padding) */
} fgeom;

static int64_t kpad(int64_t Co) { return (Co + WK - 1) / WK * WK; }

static void fgeom_init(fgeom *g, int64_t Ci, int64_t Co, int64_t H, int64_t W) {
  *g = (fgeom){.Ci = Ci, .Co = Co, .Kp = kpad(Co), .H = H, .W = W, .P = H * W, .TH = (H + 3) / 4, .TW = (W + 3) / 4};
  int64_t tiles = FBUDGET / (36 * (Ci + g->Kp));
  if (tiles < 3 * WV) tiles = 3 * WV;
  const int64_t most = tiles / g->TW > 0 ? tiles / g->TW : 1;
  g->rows = most;
  for (int64_t r = most; r >= 1; r--) /* whole 3-vector register tiles when some row count gives them */
    if (r * g->TW % (3 * WV) == 0) {
      g->rows = r;
      break;
    }
  g->Ts = (g->rows * g->TW + WV - 1) / WV * WV;
  g->xs = Ci * g->Ts + WV;
  g->ms = g->Kp * g->Ts + WV;
}

/* Taken (with 16 or more channels both ways, as F(2x2, 3x3)) where its tiles take fewer
 * multiplies than F(2x2, 3x3)'s: 36 per 4x4 tile against 16 per 2x2, planes' edges padding
 * both. */
int sf_conv2d_winograd4_ok(int64_t Ci, int64_t Co, int64_t H, int64_t W) {
  if (!__atomic_load_n(&f4_on, __ATOMIC_RELAXED) || !sf_conv2d_winograd_ok(Ci, Co, H, W)) return 0;
  return 36 * ((H + 3) / 4) * ((W + 3) / 4) < 16 * ((H + 1) / 2) * ((W + 1) / 2);
}

int64_t sf_conv2d_winograd4_wfloats(int64_t Ci, int64_t Co) { return 36 * Ci * kpad(Co); }

void sf_conv2d_winograd4_scratch(int64_t Ci, int64_t Co, int64_t H, int64_t W, int64_t *n1, int64_t *n2) {
  fgeom g;
  fgeom_init(&g, Ci, Co, H, W);
  *n1 = 36 * g.xs;
  *n2 = 36 * g.ms;
}

/* Wt[a*6 + b][c][k] (k < Kp, zero past Co) = (G g[k,c] G^T)[a][b] from wp[(c*9 + r*3 + s)*Co + k] */
static void weight_transform(float *restrict Wt, const float *restrict wp, int64_t Ci, int64_t Co, int64_t Kp) {
  const __m512 q4 = _mm512_set1_ps(1.0f / 4), q6 = _mm512_set1_ps(-1.0f / 6), q24 = _mm512_set1_ps(1.0f / 24);
  const __m512 two = _mm512_set1_ps(2.0f), four = _mm512_set1_ps(4.0f);
  for (int64_t c = 0; c < Ci; c++)
    for (int64_t k0 = 0; k0 < Kp; k0 += WV) {
      const __mmask16 in = lane_mask(Co - k0), st = lane_mask(Kp - k0);
      __m512 w[3][3], t[6][3];
      for (int r = 0; r < 3; r++)
        for (int s = 0; s < 3; s++) w[r][s] = _mm512_maskz_loadu_ps(in, wp + (c * 9 + r * 3 + s) * Co + k0);
      for (int s = 0; s < 3; s++) { /* G g: [g0/4, -(g0+g1+g2)/6, -(g0-g1+g2)/6, (g0+2g1+4g2)/24, (g0-2g1+4g2)/24, g2] */
        const __m512 e = _mm512_add_ps(w[0][s], w[2][s]), f = _mm512_fmadd_ps(four, w[2][s], w[0][s]);
        t[0][s] = _mm512_mul_ps(q4, w[0][s]);
        t[1][s] = _mm512_mul_ps(q6, _mm512_add_ps(e, w[1][s]));
        t[2][s] = _mm512_mul_ps(q6, _mm512_sub_ps(e, w[1][s]));
        t[3][s] = _mm512_mul_ps(q24, _mm512_fmadd_ps(two, w[1][s], f));
        t[4][s] = _mm512_mul_ps(q24, _mm512_fnmadd_ps(two, w[1][s], f));
        t[5][s] = w[2][s];
      }
      for (int a = 0; a < 6; a++) { /* (G g) G^T */
        const __m512 e = _mm512_add_ps(t[a][0], t[a][2]), f = _mm512_fmadd_ps(four, t[a][2], t[a][0]);
        const __m512 v[6] = {_mm512_mul_ps(q4, t[a][0]),
                             _mm512_mul_ps(q6, _mm512_add_ps(e, t[a][1])),
                             _mm512_mul_ps(q6, _mm512_sub_ps(e, t[a][1])),
                             _mm512_mul_ps(q24, _mm512_fmadd_ps(two, t[a][1], f)),
                             _mm512_mul_ps(q24, _mm512_fnmadd_ps(two, t[a][1], f)),
                             t[a][2]};
        for (int b = 0; b < 6; b++) _mm512_mask_storeu_ps(Wt + ((a * 6 + b) * Ci + c) * Kp + k0, st, v[b]);
      }
    }
}

/* B^T d of six vectors (each lane its own tile) */
static inline __attribute__((always_inline)) void bt6(__m512 v[6], const __m512 d[6]) {
  const __m512 four = _mm512_set1_ps(4.0f), five = _mm512_set1_ps(5.0f), two = _mm512_set1_ps(2.0f);
  const __m512 t1 = _mm512_fnmadd_ps(four, d[2], d[4]), t2 = _mm512_fnmadd_ps(four, d[1], d[3]);
  const __m512 t3 = _mm512_sub_ps(d[4], d[2]), t4 = _mm512_mul_ps(two, _mm512_sub_ps(d[3], d[1]));
  v[0] = _mm512_fmadd_ps(four, d[0], _mm512_fnmadd_ps(five, d[2], d[4]));
  v[1] = _mm512_add_ps(t1, t2);
  v[2] = _mm512_sub_ps(t1, t2);
  v[3] = _mm512_add_ps(t3, t4);
  v[4] = _mm512_sub_ps(t3, t4);
  v[5] = _mm512_fmadd_ps(four, d[1], _mm512_fnmadd_ps(five, d[3], d[5]));
}

/* A^T m: four vectors from six */
static inline __attribute__((always_inline)) void at6(__m512 y[4], const __m512 m[6]) {
  const __m512 two = _mm512_set1_ps(2.0f), four = _mm512_set1_ps(4.0f), eight = _mm512_set1_ps(8.0f);
  const __m512 s1 = _mm512_add_ps(m[1], m[2]), d1 = _mm512_sub_ps(m[1], m[2]);
  const __m512 s2 = _mm512_add_ps(m[3], m[4]), d2 = _mm512_sub_ps(m[3], m[4]);
  y[0] = _mm512_add_ps(_mm512_add_ps(m[0], s1), s2);
  y[1] = _mm512_fmadd_ps(two, d2, d1);
  y[2] = _mm512_fmadd_ps(four, s2, s1);
  y[3] = _mm512_add_ps(_mm512_fmadd_ps(eight, d2, d1), m[5]);
}

/* X[a*6 + b][c][(gg - g0)*TW + tw] = (B^T d B)[a][b] of tile (th, tw) of image n, gg =
 * n*TH + th, for the chunk's rows of tiles [g0, g1); lanes past its tiles zeroed */
static void input_transform(float *restrict X, const float *restrict in, const fgeom *g, int64_t g0, int64_t g1) {
  const int64_t Ci = g->Ci, TH = g->TH, TW = g->TW, Ts = g->Ts, xs = g->xs, P = g->P;
  const int R = tiles_rows(TW);
  zero_tails(X, 36, Ci, xs, Ts, (g1 - g0) * TW);
  for (int64_t tw0 = 0; tw0 < TW; tw0 += R > 1 ? TW : FB) {
    tcols ic;
    tcols_init(&ic, TW, g->W, tw0, FB, 6);
    for (int64_t c = 0; c < Ci; c++)
      for (int64_t gg = g0; gg < g1;) {
        const int64_t n = tiles_group(R, TH, gg, g1), th = gg % TH;
        const float *plane = in + ((gg / TH) * Ci + c) * P;
        __m512 r[6][6]; /* the column transforms (d B) at vertical positions 0 .. 5 */
        for (int i = 0; i < 6; i++) {
          __m512 d[6];
          tcols_pick(d, 6, plane, g->H, g->W, &ic, th, n, i);
          bt6(r[i], d);
        }
        const __mmask16 st = lane_mask(n * ic.nb);
        float *x = X + c * Ts + (gg - g0) * TW + tw0;
        for (int b = 0; b < 6; b++) {
          const __m512 col[6] = {r[0][b], r[1][b], r[2][b], r[3][b], r[4][b], r[5][b]};
          __m512 v[6];
          bt6(v, col);
          for (int a = 0; a < 6; a++) store_lanes(x + (a * 6 + b) * xs, st, v[a]);
        }
        gg += n;
      }
  }
}

/* M[xi] = Wt[xi] X[xi] for the chunk's nt tiles */
static void products(float *restrict M, const float *restrict X, const float *restrict Wt, const fgeom *g,
                     int64_t nt) {
  const int64_t Ci = g->Ci, Kp = g->Kp, Ts = g->Ts, nvec = (nt + WV - 1) / WV;
  for (int xi = 0; xi < 36; xi++) {
    const float *x = X + xi * g->xs, *w = Wt + xi * Ci * Kp;
    float *m = M + xi * g->ms;
    for (int64_t v0 = 0; v0 < nvec; v0 += 3) {
      const int64_t nv = nvec - v0 < 3 ? nvec - v0 : 3;
      const float *xv = x + v0 * WV;
      for (int64_t k0 = 0; k0 < Kp; k0 += WK) wtiles[nv](m + k0 * Ts + v0 * WV, &xv, w + k0, 1, Ci, Kp, Ts);
    }
  }
}

/* out rows 4th .. 4th+3 of the chunk's tiles = A^T M A, with the epilogue */
static void output_transform(float *restrict out, const float *restrict M, const fgeom *g, int64_t g0, int64_t g1,
                             const wepi *e) {
  const int64_t Co = g->Co, TH = g->TH, TW = g->TW, Ts = g->Ts, W = g->W, P = g->P;
  const int R = tiles_rows(TW);
  for (int64_t tw0 = 0; tw0 < TW; tw0 += R > 1 ? TW : FB) {
    const int64_t nb = R > 1 ? TW : TW - tw0 < FB ? TW - tw0 : FB, end = 4 * (tw0 + nb) < W ? 4 * (tw0 + nb) : W;
    const __mmask16 km[2] = {col_mask(4 * tw0, end), col_mask(4 * tw0 + WV, end)};
    __m512i iq[4][2];
    tcols_out_init(iq, R, nb);
    for (int64_t k = 0; k < Co; k++)
      for (int64_t gg = g0; gg < g1;) {
        const int64_t n = tiles_group(R, TH, gg, g1), th = gg % TH;
        const float *m = M + k * Ts + (gg - g0) * TW + tw0;
        const __mmask16 ld = lane_mask(n * nb);
        __m512 t[4][6]; /* t[a][b]: output row a of the tiles, transformed column b */
        for (int b = 0; b < 6; b++) {
          __m512 x[6], y[4];
          for (int a = 0; a < 6; a++) x[a] = _mm512_maskz_loadu_ps(ld, m + (a * 6 + b) * g->ms);
          at6(y, x);
          for (int a = 0; a < 4; a++) t[a][b] = y[a];
        }
        for (int a = 0; a < 4; a++) {
          __m512 z[4];
          at6(z, t[a]);
          for (int64_t r = 0; r < n; r++) {
            const int64_t oh = 4 * (th + r) + a;
            if (oh >= g->H) break;
            const int64_t at = ((gg / TH) * Co + k) * P + oh * W + 4 * tw0;
            for (int hh = 0; hh < 2; hh++)
              if (km[hh])
                _mm512_mask_storeu_ps(out + at + hh * WV, km[hh],
                                      wepilogue(tcols_out(z, iq[r][hh]), e, k,
                                                e->residual ? e->residual + at + hh * WV : NULL, km[hh]));
          }
        }
        gg += n;
      }
  }
}

typedef struct {
  float *out;
  const float *in, *Wt;
  const fgeom *g;
  const wepi *e;
} fctx;

static void fpart(void *ctx, int64_t lo, int64_t hi, int part) {
  (void)part;
  const fctx *d = ctx;
  const fgeom *g = d->g;
  float *X = sf_scratch((size_t)(36 * g->xs));
  float *M = sf_scratch2((size_t)(36 * g->ms));
  SF_ASSERT(X && M); /* reserved by the caller through sf_conv2d_reserve */
  for (int64_t g0 = lo * g->TH; g0 < hi * g->TH; g0 += g->rows) {
    const int64_t g1 = g0 + g->rows < hi * g->TH ? g0 + g->rows : hi * g->TH;
    input_transform(X, d->in, g, g0, g1);
    products(M, X, d->Wt, g, (g1 - g0) * g->TW);
    output_transform(d->out, M, g, g0, g1, d->e);
    chunk_stats(d->e, d->out, g0, g1, hi, g->TH, g->Co, g->P);
  }
}

void sf_conv2d_winograd4_run(float *out, const float *in, const float *wp, float *vw, int64_t N, int64_t Ci,
                             int64_t Co, int64_t H, int64_t W, const float *bias, const float *residual, int relu,
                             float *stats, int parts) {
  fgeom g;
  fgeom_init(&g, Ci, Co, H, W);
  weight_transform(vw, wp, Ci, Co, g.Kp);
  const wepi e = {bias, residual, relu, stats};
  fctx d = {out, in, vw, &g, &e};
  sf_parallel_for(parts, N, fpart, &d);
}

/* ---- the weight gradient, by the transpose of the forward ----
 * dweight[k][c] = G^T [ sum over tiles of (A e[k] A^T) . (B^T d[c] B) ] G, e the output
 * gradient's 4x4 tile (rows 4th .. 4th+3, columns 4tw .. 4tw+3) and d the forward's 6x6
 * input patch: the forward's X, E = A e A^T (A = (A^T)^T, 6x4), 36 products
 * Mw[xi] (K x C) += E[xi] (K x tiles) X[xi] (C x tiles)^T summed over the tiles in the
 * transformed domain on the shared 4 x 4 register tiles (conv2d_winograd_kern.h's wg_tile),
 * and G^T Mw G once per part. */

#define F4_WG_TILES 256 /* tiles per chunk (as conv2d_winograd.c's WG_TILES) */

int sf_conv2d_winograd4_wgrad_ok(int64_t C, int64_t K, int64_t H, int64_t W) {
  return sf_conv2d_winograd4_ok(C, K, H, W) && sf_conv2d_winograd_wgrad_ok(C, K, H, W);
}

static void wg_geom(fgeom *g, int64_t C, int64_t K, int64_t H, int64_t W) {
  *g = (fgeom){.Ci = C, .Co = K, .Kp = K, .H = H, .W = W, .P = H * W, .TH = (H + 3) / 4, .TW = (W + 3) / 4};
  int64_t tiles = 1024 * 1024 / (36 * (C + K)); /* X and E within 4 MB */
  if (tiles > F4_WG_TILES) tiles = F4_WG_TILES;
  const int64_t most = tiles / g->TW > 0 ? tiles / g->TW : 1;
  g->rows = most;
  for (int64_t r = most; r >= 1; r--)
    if (r * g->TW % WV == 0) {
      g->rows = r;
      break;
    }
  g->Ts = (g->rows * g->TW + WV - 1) / WV * WV;
  g->xs = C * g->Ts + WV;
  g->ms = K * g->Ts + WV;
}

/* per part: X in sf_scratch; the part's [K][C][9] sums, Mw and E in sf_scratch2 */
void sf_conv2d_winograd4_wgrad_scratch(int64_t C, int64_t K, int64_t H, int64_t W, int64_t *n1, int64_t *n2) {
  fgeom g;
  wg_geom(&g, C, K, H, W);
  *n1 = 36 * g.xs;
  *n2 = K * C * 9 + 36 * K * C + 36 * g.ms;
}

/* A e of four vectors: [e0, e0+e1+e2+e3, e0-e1+e2-e3, e0+2e1+4e2+8e3, e0-2e1+4e2-8e3, e3] */
static inline __attribute__((always_inline)) void a4(__m512 v[6], const __m512 e[4]) {
  const __m512 two = _mm512_set1_ps(2.0f), four = _mm512_set1_ps(4.0f), eight = _mm512_set1_ps(8.0f);
  const __m512 s = _mm512_add_ps(e[0], e[2]), d = _mm512_add_ps(e[1], e[3]);
  const __m512 s4 = _mm512_fmadd_ps(four, e[2], e[0]), d4 = _mm512_fmadd_ps(eight, e[3], _mm512_mul_ps(two, e[1]));
  v[0] = e[0];
  v[1] = _mm512_add_ps(s, d);
  v[2] = _mm512_sub_ps(s, d);
  v[3] = _mm512_add_ps(s4, d4);
  v[4] = _mm512_sub_ps(s4, d4);
  v[5] = e[3];
}

/* E[a*6 + b][k][(gg - g0)*TW + tw] = (A e A^T)[a][b] of tile (th, tw) of the output
 * gradient (zeros outside the plane), lanes past the chunk's tiles zeroed */
static void dout_transform(float *restrict E, const float *restrict dout, const fgeom *g, int64_t g0, int64_t g1) {
  const int64_t K = g->Kp, TH = g->TH, TW = g->TW, Ts = g->Ts, es = g->ms, P = g->P;
  const int R = tiles_rows(TW);
  zero_tails(E, 36, K, es, Ts, (g1 - g0) * TW);
  for (int64_t tw0 = 0; tw0 < TW; tw0 += R > 1 ? TW : FB) {
    tcols ic; /* columns 4 tw - 1 + j: the tile's 4 are j = 1 .. 4 */
    tcols_init(&ic, TW, g->W, tw0, FB, 5);
    for (int64_t k = 0; k < K; k++)
      for (int64_t gg = g0; gg < g1;) {
        const int64_t n = tiles_group(R, TH, gg, g1), th = gg % TH;
        const float *plane = dout + ((gg / TH) * K + k) * P;
        __m512 r[4][6]; /* the column transforms (e A^T) of rows 4th + i */
        for (int i = 0; i < 4; i++) {
          __m512 d[5];
          tcols_pick(d, 5, plane, g->H, g->W, &ic, th, n, i + 1);
          a4(r[i], d + 1);
        }
        const __mmask16 st = lane_mask(n * ic.nb);
        float *x = E + k * Ts + (gg - g0) * TW + tw0;
        for (int b = 0; b < 6; b++) {
          const __m512 col[4] = {r[0][b], r[1][b], r[2][b], r[3][b]};
          __m512 v[6];
          a4(v, col);
          for (int a = 0; a < 6; a++) store_lanes(x + (a * 6 + b) * es, st, v[a]);
        }
        gg += n;
      }
  }
}

typedef struct {
  const float *dout, *inp;
  const fgeom *g;
  float **partial;
  int fail;
} fwctx;

/* G^T m of six vectors: [m0/4 - (m1+m2)/6 + (m3+m4)/24, (m2-m1)/6 + (m3-m4)/12,
 * (m3+m4)/6 - (m1+m2)/6 + m5] */
static inline __attribute__((always_inline)) void gt6(__m512 y[3], const __m512 m[6]) {
  const __m512 q4 = _mm512_set1_ps(1.0f / 4), q6 = _mm512_set1_ps(1.0f / 6), q12 = _mm512_set1_ps(1.0f / 12),
               q24 = _mm512_set1_ps(1.0f / 24);
  const __m512 s1 = _mm512_add_ps(m[1], m[2]), d1 = _mm512_sub_ps(m[2], m[1]);
  const __m512 s2 = _mm512_add_ps(m[3], m[4]), d2 = _mm512_sub_ps(m[3], m[4]);
  y[0] = _mm512_fmadd_ps(q24, s2, _mm512_fmsub_ps(q4, m[0], _mm512_mul_ps(q6, s1)));
  y[1] = _mm512_fmadd_ps(q12, d2, _mm512_mul_ps(q6, d1));
  y[2] = _mm512_add_ps(_mm512_mul_ps(q6, _mm512_sub_ps(s2, s1)), m[5]);
}

static void wg_part(void *ctx, int64_t lo, int64_t hi, int part) {
  fwctx *d = ctx;
  const fgeom *g = d->g;
  const int64_t C = g->Ci, K = g->Kp, KB = K / 4, CB = C / 4;
  float *X, *Mw, *E;
  if (wg_part_scratch(&X, &Mw, &E, &d->partial[part], &d->fail, 36 * g->xs, K, C, 36, 36 * g->ms) != 0) return;
  float *acc = d->partial[part];
  for (int64_t g0 = lo * g->TH; g0 < hi * g->TH; g0 += g->rows) {
    const int64_t g1 = g0 + g->rows < hi * g->TH ? g0 + g->rows : hi * g->TH;
    const int64_t nvec = ((g1 - g0) * g->TW + WV - 1) / WV;
    input_transform(X, d->inp, g, g0, g1);
    dout_transform(E, d->dout, g, g0, g1);
    for (int xi = 0; xi < 36; xi++)
      for (int64_t kb = 0; kb < KB; kb++)
        for (int64_t cb = 0; cb < CB; cb++)
          wg_tile(Mw + ((xi * KB + kb) * CB + cb) * WV, E + xi * g->ms + kb * 4 * g->Ts,
                  X + xi * g->xs + cb * 4 * g->Ts, g->Ts, nvec);
  }
  /* acc[k][c][r*3 + s] = (G^T Mw[k][c] G)[r][s], 16 (k, c) pairs per vector */
  for (int64_t kb = 0; kb < KB; kb++)
    for (int64_t cb = 0; cb < CB; cb++) {
      __m512 t[3][6];
      float y[9][WV];
      for (int b = 0; b < 6; b++) {
        __m512 m[6], v[3];
        for (int a = 0; a < 6; a++) m[a] = _mm512_load_ps(Mw + (((a * 6 + b) * KB + kb) * CB + cb) * WV);
        gt6(v, m);
        for (int r = 0; r < 3; r++) t[r][b] = v[r];
      }
      for (int r = 0; r < 3; r++) {
        __m512 v[3];
        gt6(v, t[r]);
        for (int q = 0; q < 3; q++) _mm512_storeu_ps(y[r * 3 + q], v[q]);
      }
      wg_scatter(acc, y, kb, cb, C);
    }
}

int sf_conv2d_winograd4_wgrad(float **partial, int parts, const float *dout, const float *inp, int64_t N, int64_t C,
                              int64_t K, int64_t H, int64_t W) {
  fgeom g;
  wg_geom(&g, C, K, H, W);
  fwctx d = {dout, inp, &g, partial, 0};
  sf_parallel_for(parts, N, wg_part, &d);
  return d.fail ? -1 : 0;
}

#else /* no AVX-512: never taken */

int sf_conv2d_winograd4_enable(int on) {
  (void)on;
  return 0;
}
int sf_conv2d_winograd4_ok(int64_t Ci, int64_t Co, int64_t H, int64_t W) {
  (void)Ci, (void)Co, (void)H, (void)W;
  return 0;
}
int64_t sf_conv2d_winograd4_wfloats(int64_t Ci, int64_t Co) {
  (void)Ci, (void)Co;
  return 0;
}
void sf_conv2d_winograd4_scratch(int64_t Ci, int64_t Co, int64_t H, int64_t W, int64_t *n1, int64_t *n2) {
  (void)Ci, (void)Co, (void)H, (void)W;
  *n1 = *n2 = 0;
}
void sf_conv2d_winograd4_run(float *out, const float *in, const float *wp, float *vw, int64_t N, int64_t Ci,
                             int64_t Co, int64_t H, int64_t W, const float *bias, const float *residual, int relu,
                             float *stats, int parts) {
  (void)out, (void)in, (void)wp, (void)vw, (void)N, (void)Ci, (void)Co, (void)H, (void)W, (void)bias;
  (void)residual, (void)relu, (void)stats, (void)parts;
  SF_ASSERT(0 && "sf_conv2d_winograd4_run without AVX-512");
}
int sf_conv2d_winograd4_wgrad_ok(int64_t C, int64_t K, int64_t H, int64_t W) {
  (void)C, (void)K, (void)H, (void)W;
  return 0;
}
void sf_conv2d_winograd4_wgrad_scratch(int64_t C, int64_t K, int64_t H, int64_t W, int64_t *n1, int64_t *n2) {
  (void)C, (void)K, (void)H, (void)W;
  *n1 = *n2 = 0;
}
int sf_conv2d_winograd4_wgrad(float **partial, int parts, const float *dout, const float *inp, int64_t N, int64_t C,
                              int64_t K, int64_t H, int64_t W) {
  (void)partial, (void)parts, (void)dout, (void)inp, (void)N, (void)C, (void)K, (void)H, (void)W;
  return -1;
}
#endif
