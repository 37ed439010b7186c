/* The stride-2 3x3 pad-1 convolution by a Winograd algorithm on its phase decomposition,
 * on AVX-512: forward, input gradient and weight gradient.
 *
 * In one dimension, output x of a stride-2 3x3 pad-1 convolution reads input columns 2x-1,
 * 2x, 2x+1: w0 and w2 meet the odd columns, w1 the even ones. Two outputs 2t, 2t+1 read the
 * five columns d0..d4 = 4t-1 .. 4t+3, and are the 2-tap correlation of the odd columns (d0,
 * d2, d4) with (w0, w2), which Winograd's F(2, 2) gives in 3 multiplies, plus the 1-tap one
 * of the even columns (d1, d3) with w1, 2 multiplies: 5 instead of 6. With
 *
 *   Bs^T d = [d0 - d2, d2, d4 - d2, d1 - d3, d3]      (the five transformed inputs)
 *   Gs w   = [w0, w0 + w2, w2, w1, w1]                (the five transformed weights)
 *   m = (Gs w) . (Bs^T d),   M = [m0 + m3, m1 + m4, m2]   (q(a) = 0 1 2 0 1: a's sum)
 *   y = [M0 + M1, M1 + M2]
 *
 * In two dimensions a 2x2 output tile (th, tw) reads the 5x5 input patch at rows 4th-1 ..
 * 4th+3, columns 4tw-1 .. 4tw+3, and takes 25 multiplies per channel pair where the direct
 * sum takes 36 (1.44x fewer). The 25 transformed positions (a, b) fall into 9 sums
 * (q(a), q(b)) of 4, 2 or 1 positions each: the forward is 9 matrix products
 * M[q] (Co x tiles) = sum over the positions p of q of Wt[p] (Co x Ci) X[p] (Ci x tiles),
 * each one product with a reduction over 4, 2 or 1 times Ci, then the 3x3 -> 2x2 output
 * transform.
 *
 * The input gradient is the transpose: input row 4t + i gets, from output rows 2t .. 2t+2
 * (e0..e2), w1 e0 (i = 0), w2 e0 + w0 e1 (1), w1 e1 (2), w2 e1 + w0 e2 (3). With
 * X = [e0 - e1, e1, e2 - e1], the flipped kernel's Gs w = [w2, w0 + w2, w0, w1, w1] and
 * products p_a = (Gs w)_a X_q(a), the 4x4 block of input gradient is
 * [p3 + p4, p0 + p1, p4, p1 + p2] in each dimension: 9 transformed positions of the output
 * gradient, 25 products (Ci x tiles) = Wt[p] (Ci x Co) X[q(p)] (Co x tiles), and a 5x5 -> 4x4
 * output transform. Tiles partition the input gradient, so every value is written once.
 *
 * The weight gradient is the forward's transpose in the weights: for each of the 25
 * positions p = (a, b), dWt[p] (K x C) = sum over tiles of E[q(a), q(b)] (K x tiles)
 * X[p] (C x tiles)^T, with X the forward's input transform and E = A e A^T of the output
 * gradient's 2x2 tile e (A = [1 0; 1 1; 0 1]); then dw = Gs^T dWt Gs per channel pair:
 * [dWt0 + dWt1, dWt3 + dWt4, dWt1 + dWt2] in each dimension.
 *
 * The transforms only add and subtract: results differ from the direct sum's by rounding.
 * Tiles are numbered in rows (image, th, tw); a chunk is a run of rows of tiles (spanning
 * images), its tiles laid one after another in the lanes of X, M and E. The transforms
 * pick each tile's input columns out of pairs of vectors by permutes, a vector holding 2
 * or 4 rows of tiles on planes of at most 8 or 4 tiles a row, else 8 tiles of one row
 * (conv2d_winograd_kern.h's tcols); the products run over whole vectors of the chunk's
 * tiles. As in conv2d_winograd.c, the forward and the input gradient give the same bits at
 * any thread count. */
#include "conv2d_winograd.h"

#include "../core/parallel.h"
#include "nn.h"

#if defined(__AVX512F__) && defined(__GNUC__)
#include "conv2d_winograd_kern.h"

/* floats of X and M per chunk (the forward's, the input gradient's): 2 MB, twice the L2 of
 * the cores this targets, yet faster than 512 kB (32 -> 64 channels, 28x28 -> 14x14, batch
 * 128, one thread: forward 8.5 -> 7.9 ms; 256 kB 9.6, 4 MB 8.1) */
#define SBUDGET (512 * 1024)
#define SG_TILES 256         /* the weight gradient's tiles per chunk (as WG_TILES) */
#define SB 8                 /* tiles of a row each transform step handles */

static const int QOF[5] = {0, 1, 2, 0, 1}; /* q(a) */

/* the 9 sums' positions p = a*5 + b, and each position's slot in the transformed weights
 * (laid out sum by sum, so that a sum's weights are consecutive) */
typedef struct {
  int n[9], p[9][4], first[9];
  int slot[25];
} sgroups;

static void sgroups_init(sgroups *s) {
  int next = 0;
  for (int q = 0; q < 9; q++) {
    s->n[q] = 0;
    s->first[q] = next;
    for (int a = 0; a < 5; a++)
      for (int b = 0; b < 5; b++)
        if (QOF[a] * 3 + QOF[b] == q) {
          s->p[q][s->n[q]++] = a * 5 + b;
          s->slot[a * 5 + b] = next++;
        }
  }
}

typedef struct {
  int64_t Ci, Co, Kp; /* the products' reduction channels, their output channels (padded: Kp) */
  int64_t H, W;       /* the convolution's input plane */
  int64_t OH, OW;     /* its output plane */
  int64_t TH, TW;     /* tiles per column and per row */
  int64_t rows;       /* rows of tiles per chunk */
  int64_t Ts;         /* floats per (position, channel) row: a chunk's tiles rounded up to vectors */
  int64_t xs, ms;     /* floats from one position to the next in X and in M (or E): a vector
                         more than their rows (see wgeom's us) */
} sgeom;

static int64_t kpad(int64_t Co) { return (Co + WK - 1) / WK * WK; }

/* X rows of Ci channels, M rows of Kp: chunks of at most `tiles` tiles, the most rows whose
 * tiles are a multiple of `align` when some are */
static void sgeom_init(sgeom *g, int64_t Ci, int64_t Co, int64_t Kp, int64_t H, int64_t W, int64_t tiles,
                       int64_t align) {
  *g = (sgeom){.Ci = Ci, .Co = Co, .Kp = Kp, .H = H, .W = W, .OH = (H + 1) / 2, .OW = (W + 1) / 2};
  g->TH = (g->OH + 1) / 2, g->TW = (g->OW + 1) / 2;
  const int64_t most = tiles / g->TW > 0 ? tiles / g->TW : 1;
  g->rows = most;
  for (int64_t r = most; r >= 1; r--)
    if (r * g->TW % align == 0) {
      g->rows = r;
      break;
    }
  g->Ts = (g->rows * g->TW + WV - 1) / WV * WV;
  g->xs = Ci * g->Ts + WV;
  g->ms = Kp * g->Ts + WV;
}

/* the forward: X 25 positions of Ci, M 9 of Co */
static void fwd_geom(sgeom *g, int64_t Ci, int64_t Co, int64_t H, int64_t W) {
  sgeom_init(g, Ci, Co, kpad(Co), H, W, SBUDGET / (25 * Ci + 9 * kpad(Co)), 3 * WV);
}
/* the input gradient: X 9 positions of the K output channels, products 25 of C */
static void bwd_geom(sgeom *g, int64_t K, int64_t C, int64_t H, int64_t W) {
  sgeom_init(g, K, C, kpad(C), H, W, SBUDGET / (9 * K + 25 * kpad(C)), 3 * WV);
}
/* the weight gradient: X 25 positions of C, E 9 of K */
static void wg_geom(sgeom *g, int64_t C, int64_t K, int64_t H, int64_t W) {
  int64_t tiles = 1024 * 1024 / (25 * C + 9 * K);
  if (tiles > SG_TILES) tiles = SG_TILES;
  sgeom_init(g, C, K, K, H, W, tiles, WV);
}

/* Taken wherever the 2x2 tiles, padded on odd output sides, still save multiplies: 25 per
 * tile against 9 per output, 25 TH TW <= 9 OH OW. The 7x7 output (16 tiles for 49 outputs:
 * 0.91 of the multiplies) takes it too: 64 -> 128 channels, batch 128, one thread, 104-106
 * GFLOP/s against the masked direct tiles' 94 (forward, input gradient) and 99 (weight
 * gradient by masked rows; im2col + sgemm past 64 output channels: 71). */
int sf_conv2d_winograd_s2_ok(int64_t C, int64_t K, int64_t H, int64_t W) {
  const int64_t OH = (H + 1) / 2, OW = (W + 1) / 2, TH = (OH + 1) / 2, TW = (OW + 1) / 2;
  return sf_conv2d_winograd_enable(-1) && C >= 16 && K >= 16 && H >= 1 && W >= 1 && 25 * TH * TW <= 9 * OH * OW;
}

int sf_conv2d_winograd_s2_wgrad_ok(int64_t C, int64_t K, int64_t H, int64_t W) {
  return sf_conv2d_winograd_s2_ok(C, K, H, W) && C % 4 == 0 && K % 4 == 0;
}

int64_t sf_conv2d_winograd_s2_wfloats(int64_t Ci, int64_t Co) { return 25 * Ci * kpad(Co); }

void sf_conv2d_winograd_s2_scratch(int kernel, int64_t C, int64_t K, int64_t H, int64_t W, int64_t *n1,
                                   int64_t *n2) {
  sgeom g;
  if (kernel == 0) {
    fwd_geom(&g, C, K, H, W);
    *n1 = 25 * g.xs, *n2 = 9 * g.ms;
  } else if (kernel == 1) {
    bwd_geom(&g, K, C, H, W);
    *n1 = 9 * g.xs, *n2 = 25 * g.ms;
  } else {
    wg_geom(&g, C, K, H, W);
    *n1 = 25 * g.xs, *n2 = K * C * 9 + 25 * K * C + 9 * g.ms;
  }
}

/* Wt[slot(a*5 + b)][c][k] (k < Kp, zero past Co) = (Gs w[k,c] Gs^T)[a][b] from
 * wp[(c*9 + r*3 + s)*Co + k], 16 output channels at a time */
static void weight_transform(float *restrict Wt, const float *restrict wp, int64_t Ci, int64_t Co, int64_t Kp) {
  sgroups gr;
  sgroups_init(&gr);
  for (int64_t c = 0; c < Ci; c++)
    for (int64_t k0 = 0; k0 < Kp; k0 += WV) {
      const __mmask16 in = lane_mask(Co - k0), st = lane_mask(Kp - k0);
      __m512 w[3][3], t[5][3];
      for (int r = 0; r < 3; r++)
        for (int s = 0; s < 3; s++) w[r][s] = _mm512_maskz_loadu_ps(in, wp + (c * 9 + r * 3 + s) * Co + k0);
      for (int s = 0; s < 3; s++) { /* Gs w */
        t[0][s] = w[0][s];
        t[1][s] = _mm512_add_ps(w[0][s], w[2][s]);
        t[2][s] = w[2][s];
        t[3][s] = t[4][s] = w[1][s];
      }
      for (int a = 0; a < 5; a++) { /* (Gs w) Gs^T */
        const __m512 v[5] = {t[a][0], _mm512_add_ps(t[a][0], t[a][2]), t[a][2], t[a][1], t[a][1]};
        for (int b = 0; b < 5; b++) _mm512_mask_storeu_ps(Wt + (gr.slot[a * 5 + b] * Ci + c) * Kp + k0, st, v[b]);
      }
    }
}

/* prefetch rows h0 .. h1 of plane (those inside it), columns c0 .. c0 + 32 */
static inline __attribute__((always_inline)) void prefetch_span(const float *plane, int64_t h0, int64_t h1,
                                                                int64_t Hp, int64_t Wp, int64_t c0) {
  if (h0 < 0) h0 = 0;
  if (h1 >= Hp) h1 = Hp - 1;
  if (c0 < 0) c0 = 0;
  const int64_t c1 = c0 + 33 < Wp ? c0 + 33 : Wp;
  for (int64_t h = h0; h <= h1; h++)
    for (int64_t c = c0; c < c1; c += 16) _mm_prefetch((const char *)(plane + h * Wp + c), _MM_HINT_T0);
}

/* ---- vectors of tiles (conv2d_winograd_kern.h: tiles 4 input columns apart) ---- */
static int pack_rows(const sgeom *g) { return tiles_rows(g->TW); }
static int64_t pack_step(const sgeom *g) { return pack_rows(g) > 1 ? g->TW : SB; }
static inline int64_t group_rows(const sgeom *g, int R, int64_t gg, int64_t g1) {
  return tiles_group(R, g->TH, gg, g1);
}

/* ---- the forward's input transform (also the weight gradient's) ---- */

/* the column transforms (d Bs) of every lane's tile at vertical position i of the patches
 * of the n rows of tiles from th */
static inline __attribute__((always_inline)) void in_cols(__m512 r[5], const float *plane, const sgeom *g,
                                                          const tcols *ic, int64_t th, int64_t n, int i) {
  __m512 d[5];
  tcols_pick(d, 5, plane, g->H, g->W, ic, th, n, i);
  r[0] = _mm512_sub_ps(d[0], d[2]);
  r[1] = d[2];
  r[2] = _mm512_sub_ps(d[4], d[2]);
  r[3] = _mm512_sub_ps(d[1], d[3]);
  r[4] = d[3];
}

/* X[a*5 + b][c][(gg - g0)*TW + tw] = (Bs^T d Bs)[a][b] of tile (th, tw) of image n, gg =
 * n*TH + th, for the chunk's rows of tiles [g0, g1); lanes past its tiles zeroed */
static void input_transform(float *restrict X, const float *restrict in, const sgeom *g, int64_t g0, int64_t g1) {
  const int64_t Ci = g->Ci, TH = g->TH, TW = g->TW, Ts = g->Ts, xs = g->xs, P = g->H * g->W;
  const int R = pack_rows(g);
  zero_tails(X, 25, Ci, xs, Ts, (g1 - g0) * TW);
  for (int64_t tw0 = 0; tw0 < TW; tw0 += pack_step(g)) {
    tcols ic;
    tcols_init(&ic, g->TW, g->W, tw0, SB, 5);
    for (int64_t c = 0; c < Ci; c++)
      for (int64_t gg = g0; gg < g1;) {
        const int64_t n = group_rows(g, R, gg, g1), th = gg % TH;
        const float *plane = in + ((gg / TH) * Ci + c) * P;
        if (c + 1 < Ci) /* the rows the next channel reads here, a channel's sweep ahead */
          prefetch_span(plane + P, 4 * th - 1, 4 * (th + n) - 1, g->H, g->W, 4 * tw0 - 1);
        __m512 r[5][5]; /* the column transforms at vertical positions 0 .. 4 */
        for (int i = 0; i < 5; i++) in_cols(r[i], plane, g, &ic, th, n, i);
        const __mmask16 st = lane_mask(n * ic.nb);
        float *x = X + c * Ts + (gg - g0) * TW + tw0;
        for (int b = 0; b < 5; b++) {
          store_lanes(x + (0 * 5 + b) * xs, st, _mm512_sub_ps(r[0][b], r[2][b]));
          store_lanes(x + (1 * 5 + b) * xs, st, r[2][b]);
          store_lanes(x + (2 * 5 + b) * xs, st, _mm512_sub_ps(r[4][b], r[2][b]));
          store_lanes(x + (3 * 5 + b) * xs, st, _mm512_sub_ps(r[1][b], r[3][b]));
          store_lanes(x + (4 * 5 + b) * xs, st, r[3][b]);
        }
        gg += n;
      }
  }
}

/* ---- the forward ---- */


/* M[q] = sum over the positions p of q of Wt[p] X[p], for the chunk's nt tiles */
static void fwd_products(float *restrict M, const float *restrict X, const float *restrict Wt, const sgeom *g,
                         const sgroups *gr, int64_t nt) {
  const int64_t Ci = g->Ci, Kp = g->Kp, Ts = g->Ts, nvec = (nt + WV - 1) / WV;
  for (int q = 0; q < 9; q++) {
    const float *w = Wt + gr->first[q] * Ci * Kp;
    float *m = M + q * g->ms;
    for (int64_t v0 = 0; v0 < nvec; v0 += 3) {
      const int64_t nv = nvec - v0 < 3 ? nvec - v0 : 3;
      const float *x[4];
      for (int j = 0; j < gr->n[q]; j++) x[j] = X + gr->p[q][j] * g->xs + v0 * WV;
      for (int64_t k0 = 0; k0 < Kp; k0 += WK) wtiles[nv](m + k0 * Ts + v0 * WV, x, w + k0, gr->n[q], Ci, Kp, Ts);
    }
  }
}

/* out rows 2th, 2th+1 of the chunk's tiles = A^T M A ([M0 + M1, M1 + M2] each way), with
 * the epilogue; lane r*nb + tw's two columns go to output row 2(th + r) + a by one permute */
static void fwd_output_transform(float *restrict out, const float *restrict M, const sgeom *g, int64_t g0,
                                 int64_t g1, const wepi *e) {
  const int64_t Co = g->Co, TH = g->TH, TW = g->TW, Ts = g->Ts, OW = g->OW, P = g->OH * g->OW;
  const int R = pack_rows(g);
  for (int64_t tw0 = 0; tw0 < TW; tw0 += pack_step(g)) {
    const int64_t nb = R > 1 ? TW : TW - tw0 < SB ? TW - tw0 : SB;
    const __mmask16 keep = col_mask(2 * tw0, OW);
    __m512i oidx[4]; /* row of tiles r: output column 2 tw + b from lane r*nb + tw of y_b */
    for (int r = 0; r < R; r++) {
      int ix[WV];
      for (int m = 0; m < WV; m++) ix[m] = (m & 1 ? WV : 0) + (m / 2 < nb ? r * (int)nb + m / 2 : 0);
      oidx[r] = _mm512_loadu_si512(ix);
    }
    for (int64_t k = 0; k < Co; k++)
      for (int64_t gg = g0; gg < g1;) {
        const int64_t n = group_rows(g, R, gg, g1), th = gg % TH;
        const float *m = M + k * Ts + (gg - g0) * TW + tw0;
        const __mmask16 ld = lane_mask(n * nb);
        __m512 x[9], t[2][3];
        for (int q = 0; q < 9; q++) x[q] = _mm512_maskz_loadu_ps(ld, m + q * g->ms);
        for (int b = 0; b < 3; b++) {
          t[0][b] = _mm512_add_ps(x[b], x[3 + b]);
          t[1][b] = _mm512_add_ps(x[3 + b], x[6 + b]);
        }
        for (int a = 0; a < 2; a++) {
          const __m512 y0 = _mm512_add_ps(t[a][0], t[a][1]), y1 = _mm512_add_ps(t[a][1], t[a][2]);
          for (int64_t r = 0; r < n; r++) {
            const int64_t oh = 2 * (th + r) + a;
            if (oh >= g->OH) break;
            const int64_t at = ((gg / TH) * Co + k) * P + oh * OW + 2 * tw0;
            const __m512 v = _mm512_permutex2var_ps(y0, oidx[r], y1);
            _mm512_mask_storeu_ps(out + at, keep, wepilogue(v, e, k, e->residual ? e->residual + at : NULL, keep));
          }
        }
        gg += n;
      }
  }
}

typedef struct {
  float *out;
  const float *in, *Wt;
  const sgeom *g;
  const wepi *e;
} sctx;

static void fwd_part(void *ctx, int64_t lo, int64_t hi, int part) {
  (void)part;
  const sctx *d = ctx;
  const sgeom *g = d->g;
  sgroups gr;
  sgroups_init(&gr);
  float *X = sf_scratch((size_t)(25 * g->xs));
  float *M = sf_scratch2((size_t)(9 * g->ms));
  SF_ASSERT(X && M); /* reserved by the caller through sf_conv2d_reserve */
  for (int64_t g0 = lo * g->TH; g0 < hi * g->TH; g0 += g->rows) {
    const int64_t g1 = g0 + g->rows < hi * g->TH ? g0 + g->rows : hi * g->TH;
    input_transform(X, d->in, g, g0, g1);
    fwd_products(M, X, d->Wt, g, &gr, (g1 - g0) * g->TW);
    fwd_output_transform(d->out, M, g, g0, g1, d->e);
    chunk_stats(d->e, d->out, g0, g1, hi, g->TH, g->Co, g->OH * g->OW);
  }
}

void sf_conv2d_winograd_s2_run(float *out, const float *in, const float *wp, float *vw, int64_t N, int64_t Ci,
                               int64_t Co, int64_t H, int64_t W, const float *bias, const float *residual, int relu,
                               float *stats, int parts) {
  sgeom g;
  fwd_geom(&g, Ci, Co, H, W);
  weight_transform(vw, wp, Ci, Co, g.Kp);
  const wepi e = {bias, residual, relu, stats};
  sctx d = {out, in, vw, &g, &e};
  sf_parallel_for(parts, N, fwd_part, &d);
}

/* ---- the output gradient's transforms (input gradient and weight gradient) ----
 * A step loads the rows of the output gradient its lanes read into a pair of vectors: R = 1:
 * a row's 32 columns from 2 tw0; R = 2: rows of at most 16 columns, two to the pair; R = 4:
 * rows of at most 8, four to the pair. Lane l picks its tile's column 2 tw + j out of slot r
 * of the pair by one permute. */
typedef struct {
  int R;
  int64_t tw0, nb;  /* the step's first tile of a row, tiles of a row per vector */
  __m512i idx[3];   /* lane l: its column 2 tw + j within the pair */
  __mmask16 cm[3];  /* ... where that column is inside the plane */
  __mmask16 m0, m1; /* R = 1: the row loads' columns inside the plane */
} dcols;

static void dcols_init(dcols *dc, const sgeom *g, int64_t tw0) {
  const int R = pack_rows(g), S = R == 1 ? 0 : 32 / R;
  dc->R = R, dc->tw0 = tw0, dc->nb = R > 1 ? g->TW : g->TW - tw0 < SB ? g->TW - tw0 : SB;
  for (int j = 0; j < 3; j++) {
    int ix[WV];
    unsigned cm = 0;
    for (int l = 0; l < WV; l++) {
      const int64_t r = l / dc->nb, col = 2 * (tw0 + l % dc->nb) + j;
      const int ok = r < R && col < g->OW;
      ix[l] = ok ? (int)(S * r + col - 2 * tw0) : 0;
      if (ok) cm |= 1u << l;
    }
    dc->idx[j] = _mm512_loadu_si512(ix), dc->cm[j] = (__mmask16)cm;
  }
  dc->m0 = col_mask(2 * tw0, g->OW), dc->m1 = col_mask(2 * tw0 + WV, g->OW);
}

/* rows h[q] of plane (q < R; none where q >= n or h[q] >= OH) into the pair z */
static inline __attribute__((always_inline)) void dout_rows(__m512 z[2], const float *plane, const sgeom *g,
                                                            const dcols *dc, const int64_t h[4], int64_t n) {
  const int64_t OW = g->OW;
  if (dc->R == 1) {
    const float *p = plane + h[0] * OW + 2 * dc->tw0;
    z[0] = h[0] < g->OH ? _mm512_maskz_loadu_ps(dc->m0, p) : _mm512_setzero_ps();
    z[1] = h[0] < g->OH ? _mm512_maskz_loadu_ps(dc->m1, p + WV) : _mm512_setzero_ps();
  } else if (dc->R == 2) {
    for (int q = 0; q < 2; q++)
      z[q] = q < n && h[q] < g->OH ? _mm512_maskz_loadu_ps(dc->m0, plane + h[q] * OW) : _mm512_setzero_ps();
  } else {
    const __mmask8 m = (__mmask8)dc->m0;
    __m256 y[4];
    for (int q = 0; q < 4; q++)
      y[q] = q < n && h[q] < g->OH ? _mm256_maskz_loadu_ps(m, plane + h[q] * OW) : _mm256_setzero_ps();
    z[0] = _mm512_insertf32x8(_mm512_castps256_ps512(y[0]), y[1], 1);
    z[1] = _mm512_insertf32x8(_mm512_castps256_ps512(y[2]), y[3], 1);
  }
}

/* ---- the input gradient ---- */

/* X[qa*3 + qb][k][(gg - g0)*TW + tw] = the transform of the output gradient's 3x3 patch
 * (rows 2th .. 2th+2, columns 2tw .. 2tw+2) of tile (th, tw): [e0 - e1, e1, e2 - e1] each
 * way; lanes past the tiles zeroed */
static void bwd_input_transform(float *restrict X, const float *restrict dout, const sgeom *g, int64_t g0,
                                int64_t g1) {
  const int64_t K = g->Ci, TH = g->TH, TW = g->TW, Ts = g->Ts, xs = g->xs, P = g->OH * g->OW;
  const int R = pack_rows(g);
  zero_tails(X, 9, K, xs, Ts, (g1 - g0) * TW);
  for (int64_t tw0 = 0; tw0 < TW; tw0 += pack_step(g)) {
    dcols dc;
    dcols_init(&dc, g, tw0);
    for (int64_t k = 0; k < K; k++)
      for (int64_t gg = g0; gg < g1;) {
        const int64_t n = group_rows(g, R, gg, g1), th = gg % TH;
        const float *plane = dout + ((gg / TH) * K + k) * P;
        if (k + 1 < K) prefetch_span(plane + P, 2 * th, 2 * (th + n), g->OH, g->OW, 2 * tw0);
        __m512 r[3][3]; /* the column transforms of rows 2th + i */
        for (int i = 0; i < 3; i++) {
          const int64_t h[4] = {2 * th + i, 2 * (th + 1) + i, 2 * (th + 2) + i, 2 * (th + 3) + i};
          __m512 z[2], e[3];
          dout_rows(z, plane, g, &dc, h, n);
          for (int j = 0; j < 3; j++) e[j] = _mm512_maskz_permutex2var_ps(dc.cm[j], z[0], dc.idx[j], z[1]);
          r[i][0] = _mm512_sub_ps(e[0], e[1]);
          r[i][1] = e[1];
          r[i][2] = _mm512_sub_ps(e[2], e[1]);
        }
        const __mmask16 st = lane_mask(n * dc.nb);
        float *x = X + k * Ts + (gg - g0) * TW + tw0;
        for (int b = 0; b < 3; b++) {
          store_lanes(x + (0 * 3 + b) * xs, st, _mm512_sub_ps(r[0][b], r[1][b]));
          store_lanes(x + (1 * 3 + b) * xs, st, r[1][b]);
          store_lanes(x + (2 * 3 + b) * xs, st, _mm512_sub_ps(r[2][b], r[1][b]));
        }
        gg += n;
      }
  }
}

/* Pr[p] (C x tiles) = Wt[slot(p)] X[q(p)], the 25 products of the chunk's nt tiles */
static void bwd_products(float *restrict Pr, const float *restrict X, const float *restrict Wt, const sgeom *g,
                         const sgroups *gr, int64_t nt) {
  const int64_t K = g->Ci, Cp = g->Kp, Ts = g->Ts, nvec = (nt + WV - 1) / WV;
  for (int p = 0; p < 25; p++) {
    const float *x = X + (QOF[p / 5] * 3 + QOF[p % 5]) * g->xs, *w = Wt + gr->slot[p] * K * Cp;
    float *m = Pr + p * g->ms;
    for (int64_t v0 = 0; v0 < nvec; v0 += 3) {
      const int64_t nv = nvec - v0 < 3 ? nvec - v0 : 3;
      const float *xv = x + v0 * WV;
      for (int64_t c0 = 0; c0 < Cp; c0 += WK) wtiles[nv](m + c0 * Ts + v0 * WV, &xv, w + c0, 1, K, Cp, Ts);
    }
  }
}

/* [p3 + p4, p0 + p1, p4, p1 + p2]: the 4 rows (or columns) of a block from 5 products */
static inline __attribute__((always_inline)) void block4(__m512 o[4], __m512 p0, __m512 p1, __m512 p2, __m512 p3,
                                                         __m512 p4) {
  o[0] = _mm512_add_ps(p3, p4);
  o[1] = _mm512_add_ps(p0, p1);
  o[2] = p4;
  o[3] = _mm512_add_ps(p1, p2);
}

/* the input gradient's rows 4th .. 4th+3 of the chunk's tiles from the products: block row
 * i of lane r*nb + tw goes to row 4(th + r) + i, its 4 columns j picked out of the pairs
 * (z0, z1) (j < 2) and (z2, z3) by two permutes with the same indices and merged */
static void bwd_output_transform(float *restrict dinp, const float *restrict Pr, const sgeom *g, int64_t g0,
                                 int64_t g1) {
  const int64_t C = g->Co, TH = g->TH, TW = g->TW, Ts = g->Ts, W = g->W, P = g->H * g->W;
  const int R = pack_rows(g);
  for (int64_t tw0 = 0; tw0 < TW; tw0 += pack_step(g)) {
    const int64_t nb = R > 1 ? TW : TW - tw0 < SB ? TW - tw0 : SB;
    const __mmask16 km[2] = {col_mask(4 * tw0, W), col_mask(4 * tw0 + WV, W)};
    __m512i iq[4][2];
    tcols_out_init(iq, R, nb);
    for (int64_t c = 0; c < C; c++)
      for (int64_t gg = g0; gg < g1;) {
        const int64_t n = group_rows(g, R, gg, g1), th = gg % TH;
        const float *m = Pr + c * Ts + (gg - g0) * TW + tw0;
        const __mmask16 ld = lane_mask(n * nb);
        __m512 rows[4][5]; /* rows[i][b]: block row i, column position b */
        for (int b = 0; b < 5; b++) {
          __m512 x[5], o[4];
          for (int a = 0; a < 5; a++) x[a] = _mm512_maskz_loadu_ps(ld, m + (a * 5 + b) * g->ms);
          block4(o, x[0], x[1], x[2], x[3], x[4]);
          for (int i = 0; i < 4; i++) rows[i][b] = o[i];
        }
        for (int i = 0; i < 4; i++) {
          __m512 z[4];
          block4(z, rows[i][0], rows[i][1], rows[i][2], rows[i][3], rows[i][4]);
          for (int64_t r = 0; r < n; r++) {
            const int64_t h = 4 * (th + r) + i;
            if (h >= g->H) break;
            float *o = dinp + ((gg / TH) * C + c) * P + h * W + 4 * tw0;
            for (int hh = 0; hh < 2; hh++)
              if (km[hh]) _mm512_mask_storeu_ps(o + hh * WV, km[hh], tcols_out(z, iq[r][hh]));
          }
        }
        gg += n;
      }
  }
}

typedef struct {
  float *dinp;
  const float *dout, *Wt;
  const sgeom *g;
} sbctx;

static void bwd_part(void *ctx, int64_t lo, int64_t hi, int part) {
  (void)part;
  const sbctx *d = ctx;
  const sgeom *g = d->g;
  sgroups gr;
  sgroups_init(&gr);
  float *X = sf_scratch((size_t)(9 * g->xs));
  float *Pr = sf_scratch2((size_t)(25 * g->ms));
  SF_ASSERT(X && Pr); /* reserved by the caller through sf_conv2d_reserve */
  for (int64_t g0 = lo * g->TH; g0 < hi * g->TH; g0 += g->rows) {
    const int64_t g1 = g0 + g->rows < hi * g->TH ? g0 + g->rows : hi * g->TH;
    bwd_input_transform(X, d->dout, g, g0, g1);
    bwd_products(Pr, X, d->Wt, g, &gr, (g1 - g0) * g->TW);
    bwd_output_transform(d->dinp, Pr, g, g0, g1);
  }
}

void sf_conv2d_winograd_s2_backward_input(float *dinp, const float *dout, const float *wpf, float *vw, int64_t N,
                                          int64_t K, int64_t C, int64_t H, int64_t W, int parts) {
  sgeom g;
  bwd_geom(&g, K, C, H, W);
  /* the flipped kernel through the forward's transform gives [w2, w0 + w2, w0, w1, w1] */
  weight_transform(vw, wpf, K, C, g.Kp);
  sbctx d = {dinp, dout, vw, &g};
  sf_parallel_for(parts, N, bwd_part, &d);
}

/* ---- the weight gradient ---- */

/* E[qa*3 + qb][k][(gg - g0)*TW + tw] = (A e A^T)[qa][qb] of the output gradient's tile (th,
 * tw) (rows 2th, 2th+1, columns 2tw, 2tw+1; zeros outside the plane): [e0, e0 + e1, e1]
 * each way; lanes past the chunk's tiles zeroed */
static void dout_transform(float *restrict E, const float *restrict dout, const sgeom *g, int64_t g0, int64_t g1) {
  const int64_t K = g->Kp, TH = g->TH, TW = g->TW, Ts = g->Ts, es = g->ms, P = g->OH * g->OW;
  const int R = pack_rows(g);
  zero_tails(E, 9, K, es, Ts, (g1 - g0) * TW);
  for (int64_t tw0 = 0; tw0 < TW; tw0 += pack_step(g)) {
    dcols dc;
    dcols_init(&dc, g, tw0);
    for (int64_t k = 0; k < K; k++)
      for (int64_t gg = g0; gg < g1;) {
        const int64_t n = group_rows(g, R, gg, g1), th = gg % TH;
        const float *plane = dout + ((gg / TH) * K + k) * P;
        if (k + 1 < K) prefetch_span(plane + P, 2 * th, 2 * (th + n) - 1, g->OH, g->OW, 2 * tw0);
        __m512 q[2][3]; /* the column transforms of rows 2th + a */
        for (int a = 0; a < 2; a++) {
          const int64_t h[4] = {2 * th + a, 2 * (th + 1) + a, 2 * (th + 2) + a, 2 * (th + 3) + a};
          __m512 z[2];
          dout_rows(z, plane, g, &dc, h, n);
          const __m512 ev = _mm512_maskz_permutex2var_ps(dc.cm[0], z[0], dc.idx[0], z[1]);
          const __m512 od = _mm512_maskz_permutex2var_ps(dc.cm[1], z[0], dc.idx[1], z[1]);
          q[a][0] = ev;
          q[a][1] = _mm512_add_ps(ev, od);
          q[a][2] = od;
        }
        const __mmask16 st = lane_mask(n * dc.nb);
        float *x = E + k * Ts + (gg - g0) * TW + tw0;
        for (int b = 0; b < 3; b++) {
          store_lanes(x + (0 * 3 + b) * es, st, q[0][b]);
          store_lanes(x + (1 * 3 + b) * es, st, _mm512_add_ps(q[0][b], q[1][b]));
          store_lanes(x + (2 * 3 + b) * es, st, q[1][b]);
        }
        gg += n;
      }
  }
}

typedef struct {
  const float *dout, *inp;
  const sgeom *g;
  float **partial;
  int fail;
} sgctx;

static void wg_part(void *ctx, int64_t lo, int64_t hi, int part) {
  sgctx *d = ctx;
  const sgeom *g = d->g;
  const int64_t C = g->Ci, K = g->Kp, KB = K / 4, CB = C / 4;
  float *X, *Mw, *E;
  if (wg_part_scratch(&X, &Mw, &E, &d->partial[part], &d->fail, 25 * g->xs, K, C, 25, 9 * g->ms) != 0) return;
  float *acc = d->partial[part];
  for (int64_t g0 = lo * g->TH; g0 < hi * g->TH; g0 += g->rows) {
    const int64_t g1 = g0 + g->rows < hi * g->TH ? g0 + g->rows : hi * g->TH;
    const int64_t nvec = ((g1 - g0) * g->TW + WV - 1) / WV;
    input_transform(X, d->inp, g, g0, g1);
    dout_transform(E, d->dout, g, g0, g1);
    for (int p = 0; p < 25; p++) {
      const float *e = E + (QOF[p / 5] * 3 + QOF[p % 5]) * g->ms, *x = X + p * g->xs;
      for (int64_t kb = 0; kb < KB; kb++)
        for (int64_t cb = 0; cb < CB; cb++)
          wg_tile(Mw + ((p * KB + kb) * CB + cb) * WV, e + kb * 4 * g->Ts, x + cb * 4 * g->Ts, g->Ts, nvec);
    }
  }
  /* acc[k][c][r*3 + s] = (Gs^T dWt[k][c] Gs)[r][s], 16 (k, c) pairs per vector */
  for (int64_t kb = 0; kb < KB; kb++)
    for (int64_t cb = 0; cb < CB; cb++) {
      __m512 m[25], t[3][5];
      float y[9][WV];
      for (int p = 0; p < 25; p++) m[p] = _mm512_load_ps(Mw + ((p * KB + kb) * CB + cb) * WV);
      for (int b = 0; b < 5; b++) {
        t[0][b] = _mm512_add_ps(m[0 * 5 + b], m[1 * 5 + b]);
        t[1][b] = _mm512_add_ps(m[3 * 5 + b], m[4 * 5 + b]);
        t[2][b] = _mm512_add_ps(m[1 * 5 + b], m[2 * 5 + b]);
      }
      for (int r = 0; r < 3; r++) {
        _mm512_storeu_ps(y[r * 3 + 0], _mm512_add_ps(t[r][0], t[r][1]));
        _mm512_storeu_ps(y[r * 3 + 1], _mm512_add_ps(t[r][3], t[r][4]));
        _mm512_storeu_ps(y[r * 3 + 2], _mm512_add_ps(t[r][1], t[r][2]));
      }
      wg_scatter(acc, y, kb, cb, C);
    }
}

int sf_conv2d_winograd_s2_wgrad(float **partial, int parts, const float *dout, const float *inp, int64_t N,
                                int64_t C, int64_t K, int64_t H, int64_t W) {
  sgeom g;
  wg_geom(&g, C, K, H, W);
  sgctx d = {dout, inp, &g, partial, 0};
  sf_parallel_for(parts, N, wg_part, &d);
  return d.fail ? -1 : 0;
}

#else /* no AVX-512: never taken */

int sf_conv2d_winograd_s2_ok(int64_t C, int64_t K, int64_t H, int64_t W) {
  (void)C, (void)K, (void)H, (void)W;
  return 0;
}
int sf_conv2d_winograd_s2_wgrad_ok(int64_t C, int64_t K, int64_t H, int64_t W) {
  (void)C, (void)K, (void)H, (void)W;
  return 0;
}
int64_t sf_conv2d_winograd_s2_wfloats(int64_t Ci, int64_t Co) {
  (void)Ci, (void)Co;
  return 0;
}
void sf_conv2d_winograd_s2_scratch(int kernel, int64_t C, int64_t K, int64_t H, int64_t W, int64_t *n1,
                                   int64_t *n2) {
  (void)kernel, (void)C, (void)K, (void)H, (void)W;
  *n1 = *n2 = 0;
}
void sf_conv2d_winograd_s2_run(float *out, const float *in, const float *wp, float *vw, int64_t N, int64_t Ci,
                               int64_t Co, int64_t H, int64_t W, const float *bias, const float *residual, int relu,
                               float *stats, int parts) {
  (void)out, (void)in, (void)wp, (void)vw, (void)N, (void)Ci, (void)Co, (void)H, (void)W, (void)bias;
  (void)residual, (void)relu, (void)stats, (void)parts;
  SF_ASSERT(0 && "sf_conv2d_winograd_s2_run without AVX-512");
}
void sf_conv2d_winograd_s2_backward_input(float *dinp, const float *dout, const float *wpf, float *vw, int64_t N,
                                          int64_t K, int64_t C, int64_t H, int64_t W, int parts) {
  (void)dinp, (void)dout, (void)wpf, (void)vw, (void)N, (void)K, (void)C, (void)H, (void)W, (void)parts;
  SF_ASSERT(0 && "sf_conv2d_winograd_s2_backward_input without AVX-512");
}
int sf_conv2d_winograd_s2_wgrad(float **partial, int parts, const float *dout, const float *inp, int64_t N,
                                int64_t C, int64_t K, int64_t H, int64_t W) {
  (void)partial, (void)parts, (void)dout, (void)inp, (void)N, (void)C, (void)K, (void)H, (void)W;
  return -1;
}
#endif
