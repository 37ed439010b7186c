/* CIFAR-10-C corruptions in C (15 standard + 4 extra, severities 1-5); see corrupt.h. */
#include "corrupt.h"

#include <math.h>
#include <setjmp.h>
#include <stdio.h> /* jpeglib.h needs FILE */
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h>

#define PI 3.14159265358979323846

/* ---- names ---- */

enum {
  GAUSSIAN_NOISE, SHOT_NOISE, IMPULSE_NOISE, DEFOCUS_BLUR, GLASS_BLUR, MOTION_BLUR, ZOOM_BLUR, SNOW, FROST,
  FOG, BRIGHTNESS, CONTRAST, ELASTIC_TRANSFORM, PIXELATE, JPEG_COMPRESSION,
  SPECKLE_NOISE, GAUSSIAN_BLUR, SPATTER, SATURATE, NCORRUPT
};

static const char *const names[NCORRUPT + 1] = {
    "gaussian_noise", "shot_noise",        "impulse_noise", "defocus_blur",  "glass_blur",
    "motion_blur",    "zoom_blur",         "snow",          "frost",         "fog",
    "brightness",     "contrast",          "elastic_transform", "pixelate",  "jpeg_compression",
    "speckle_noise",  "gaussian_blur",     "spatter",       "saturate",      NULL,
};

const char *const *sf_corrupt_names(void) { return names; }

int sf_corrupt_find(const char *name) {
  for (int i = 0; i < NCORRUPT; i++)
    if (strcmp(names[i], name) == 0) return i;
  return -1;
}

/* ---- parameters per severity (rows 1..5), from the reference tables ---- */

static const double P_GAUSS_NOISE[5] = {.04, .06, .08, .09, .10};
static const double P_SHOT[5] = {500, 250, 100, 75, 50};
static const double P_IMPULSE[5] = {.01, .02, .03, .05, .07};
static const double P_SPECKLE[5] = {.06, .10, .12, .16, .20};
static const double P_GBLUR[5] = {.4, .6, .7, .8, 1.0};
static const double P_DEFOCUS[5][2] = {{.3, .4}, {.4, .5}, {.5, .6}, {1, .2}, {1.5, .1}};       /* radius, alias sigma */
static const double P_GLASS[5][3] = {{.05, 1, 1}, {.25, 1, 1}, {.4, 1, 1}, {.25, 1, 2}, {.4, 1, 2}}; /* sigma, delta, iters */
static const double P_MOTION[5][2] = {{6, 1}, {6, 1.5}, {6, 2}, {8, 2}, {9, 2.5}};             /* radius, sigma */
static const int P_ZOOM[5] = {7, 12, 16, 21, 26};                                              /* zooms 1.00, 1.01, .. */
static const double P_SNOW[5][7] = {/* mean, std, zoom, thresh, blur radius, blur sigma, blend */
                                    {.1, .2, 1, .6, 8, 3, .95},
                                    {.1, .2, 1, .5, 10, 4, .9},
                                    {.15, .3, 1.75, .55, 10, 4, .9},
                                    {.25, .3, 2.25, .6, 12, 6, .85},
                                    {.3, .3, 1.25, .65, 14, 12, .8}};
static const double P_FROST[5][2] = {{1, .2}, {1, .3}, {.9, .4}, {.85, .4}, {.75, .45}}; /* image, frost weights */
static const double P_FOG[5][2] = {{.2, 3}, {.5, 3}, {.75, 2.5}, {1, 2}, {1.5, 1.75}};   /* strength, wibble decay */
static const double P_SPATTER[5][6] = {/* mean, std, blur sigma, thresh, intensity or mud sigma, mode */
                                       {.62, .1, .7, .7, .5, 0},
                                       {.65, .1, .8, .7, .5, 0},
                                       {.65, .3, 1, .69, .5, 0},
                                       {.65, .1, .7, .69, .6, 1},
                                       {.65, .1, .5, .68, .6, 1}};
static const double P_BRIGHT[5] = {.05, .1, .15, .2, .3};
static const double P_CONTRAST[5] = {.75, .5, .4, .3, .15};
static const double P_SATURATE[5][2] = {{.3, 0}, {.1, 0}, {1.5, 0}, {2, .1}, {2.5, .2}};
/* alpha, sigma, affine delta as fractions of the image size (the reference's 32x(...)) */
static const double P_ELASTIC[5][3] = {{0, 0, .08}, {.05, .2, .07}, {.08, .06, .06}, {.1, .04, .05}, {.1, .03, .03}};
static const double P_PIXELATE[5] = {.95, .9, .85, .75, .65};
static const int P_JPEG[5] = {80, 65, 58, 50, 40};

/* ---- per-call context and scratch arena (one malloc per call, stack discipline) ---- */

typedef struct cctx {
  int C, H, W;   /* working image: C is 3 when a gray image was replicated */
  int64_t P;     /* H*W */
  double s;      /* pixel scale: max(1, min(H,W)/32) */
  int sev;       /* 0-based severity */
  sf_rng *rng;
  float *arena;
  size_t cap, used; /* in floats */
} cctx;

static void *scratch(cctx *c, size_t nfloat) {
  size_t n = (nfloat + 15) & ~(size_t)15; /* keep 64-byte alignment */
  SF_ASSERT(n <= c->cap - c->used);
  float *p = c->arena + c->used;
  c->used += n;
  return p;
}
static unsigned char *scratch_u8(cctx *c, size_t n) { return scratch(c, (n + 3) / 4); }
static int *scratch_int(cctx *c, size_t n) { return scratch(c, n); }

/* ---- small helpers ---- */

static inline float clip01(float v) { return v > 0.0f ? (v < 1.0f ? v : 1.0f) : 0.0f; } /* NaN -> 0 */
/* the reference's np.uint8(255 x): truncation; the 1e-3 absorbs float error on k/255 inputs */
static inline unsigned char to_u8(float v) { return (unsigned char)(clip01(v) * 255.0f + 1e-3f); }
static inline float quant(float v) { return (float)to_u8(v) / 255.0f; }
static inline float round8(float v) { return floorf(clip01(v) * 255.0f + 0.5f) / 255.0f; } /* 8-bit rounding I/O */
static inline int imin(int a, int b) { return a < b ? a : b; }
static inline int imax(int a, int b) { return a > b ? a : b; }
static inline float urand(sf_rng *r) { return (float)(sf_rng_next(r) >> 40) * 0x1.0p-24f; } /* [0,1), 24 bits */

/* Standard normals, both Box-Muller outputs used. */
static void normals(float *z, int64_t n, sf_rng *r) {
  int64_t i = 0;
  while (i < n) {
    double u1 = 1.0 - sf_rng_uniform(r), u2 = sf_rng_uniform(r); /* u1 in (0,1] */
    double rad = sqrt(-2.0 * log(u1)), a = 2.0 * PI * u2;
    z[i++] = (float)(rad * cos(a));
    if (i < n) z[i++] = (float)(rad * sin(a));
  }
}

enum { B_NEAREST, B_REFLECT, B_REFLECT101 };

/* Out-of-range index -> in-range index: nearest = edge replicate (scipy 'nearest',
 * ImageMagick's edge), reflect = half-sample symmetric dcba|abcd (scipy 'reflect'),
 * reflect101 = gfedcb|abcdefgh (cv2's default border). */
static inline int bmap(int i, int n, int mode) {
  if (i >= 0 && i < n) return i;
  if (n == 1) return 0;
  if (mode == B_NEAREST) return i < 0 ? 0 : n - 1;
  int p = mode == B_REFLECT ? 2 * n : 2 * n - 2;
  i %= p;
  if (i < 0) i += p;
  if (i < n) return i;
  return mode == B_REFLECT ? p - 1 - i : p - i;
}

/* ---- Gaussian filter (scipy.ndimage.gaussian_filter along H and W) ---- */

static int gauss_radius(double sigma, double truncate) { return sigma > 1e-15 ? (int)(truncate * sigma + 0.5) : 0; }

static void gauss_fill(float *k, int r, double sigma) {
  double sum = 0.0;
  for (int i = -r; i <= r; i++) sum += exp(-0.5 * (double)i * i / (sigma * sigma));
  for (int i = -r; i <= r; i++) k[i + r] = (float)(exp(-0.5 * (double)i * i / (sigma * sigma)) / sum);
}

int sf_corrupt_gaussian_kernel(float *k, int cap, double sigma, double truncate) {
  int r = gauss_radius(sigma, truncate);
  if (2 * r + 1 > cap) return -1;
  if (r == 0)
    k[0] = 1.0f;
  else
    gauss_fill(k, r, sigma);
  return 2 * r + 1;
}

/* Separable filter of one H x W plane in place with a symmetric 1-D kernel k[2r+1]. */
static void sep_filter(cctx *c, float *p, int H, int W, const float *k, int r, int mode) {
  size_t mark = c->used;
  float *tmp = scratch(c, (size_t)H * W);            /* [H,W] after the horizontal pass */
  float *line = scratch(c, (size_t)W + 2 * (size_t)r); /* one padded row */
  for (int y = 0; y < H; y++) {
    const float *row = p + (size_t)y * W;
    for (int j = 0; j < W + 2 * r; j++) line[j] = row[bmap(j - r, W, mode)];
    float *o = tmp + (size_t)y * W;
    for (int x = 0; x < W; x++) {
      float acc = 0.0f;
      for (int i = 0; i <= 2 * r; i++) acc += k[i] * line[x + i];
      o[x] = acc;
    }
  }
  for (int y = 0; y < H; y++) {
    float *o = p + (size_t)y * W;
    memset(o, 0, (size_t)W * sizeof *o);
    for (int i = 0; i <= 2 * r; i++) {
      const float *src = tmp + (size_t)bmap(y + i - r, H, mode) * W;
      float w = k[i];
      for (int x = 0; x < W; x++) o[x] += w * src[x];
    }
  }
  c->used = mark;
}

static void gauss_plane(cctx *c, float *p, int H, int W, double sigma, double truncate, int mode) {
  int r = gauss_radius(sigma, truncate);
  if (r == 0) return;
  size_t mark = c->used;
  float *k = scratch(c, 2 * (size_t)r + 1);
  gauss_fill(k, r, sigma);
  sep_filter(c, p, H, W, k, r, mode);
  c->used = mark;
}

static void gauss_image(cctx *c, float *x, double sigma, double truncate, int mode) {
  for (int ch = 0; ch < c->C; ch++) gauss_plane(c, x + ch * c->P, c->H, c->W, sigma, truncate, mode);
}

/* ---- 2-D correlation with a small kernel, cv2 filter2D style (anchor at ay, ax) ---- */

static void correlate_plane(cctx *c, float *p, int H, int W, const float *k, int kh, int kw, int ay, int ax,
                            int mode) {
  size_t mark = c->used;
  int PH = H + kh - 1, PW = W + kw - 1;
  float *pad = scratch(c, (size_t)PH * PW); /* [H+kh-1, W+kw-1] bordered copy */
  for (int py = 0; py < PH; py++) {
    const float *row = p + (size_t)bmap(py - ay, H, mode) * W;
    for (int px = 0; px < PW; px++) pad[(size_t)py * PW + px] = row[bmap(px - ax, W, mode)];
  }
  memset(p, 0, (size_t)H * W * sizeof *p);
  for (int i = 0; i < kh; i++)
    for (int j = 0; j < kw; j++) {
      float w = k[i * kw + j];
      if (w == 0.0f) continue;
      for (int y = 0; y < H; y++) {
        const float *src = pad + (size_t)(y + i) * PW + j;
        float *o = p + (size_t)y * W;
        for (int x = 0; x < W; x++) o[x] += w * src[x];
      }
    }
  c->used = mark;
}

/* ---- disk kernel (defocus) ---- */

static int disk_side(double r) { return r <= 8 ? 17 : 2 * (int)ceil(r) + 1; }

/* make_cifar_c's disk(): the mask x^2 + y^2 <= r^2 on a 17x17 grid (r <= 8; else
 * -ceil(r)..ceil(r)), normalised, then cv2.GaussianBlur with ksize 3 (5 when r > 8)
 * and sigma alias, border reflect101. tmp: side*side floats. */
static void disk_fill(float *k, float *tmp, int side, double r, double alias) {
  int h = side / 2, ks = r <= 8 ? 3 : 5, kr = ks / 2;
  double sum = 0.0;
  for (int y = 0; y < side; y++)
    for (int x = 0; x < side; x++) {
      double dy = y - h, dx = x - h;
      float m = dx * dx + dy * dy <= r * r ? 1.0f : 0.0f;
      k[y * side + x] = m;
      sum += (double)m;
    }
  for (int i = 0; i < side * side; i++) k[i] = (float)((double)k[i] / sum);
  double g[5], gs = 0.0;
  for (int i = 0; i < ks; i++) gs += g[i] = exp(-(double)(i - kr) * (i - kr) / (2.0 * alias * alias));
  for (int i = 0; i < ks; i++) g[i] /= gs;
  for (int y = 0; y < side; y++) /* horizontal */
    for (int x = 0; x < side; x++) {
      double a = 0.0;
      for (int i = 0; i < ks; i++) a += g[i] * (double)k[y * side + bmap(x + i - kr, side, B_REFLECT101)];
      tmp[y * side + x] = (float)a;
    }
  for (int y = 0; y < side; y++) /* vertical */
    for (int x = 0; x < side; x++) {
      double a = 0.0;
      for (int i = 0; i < ks; i++) a += g[i] * (double)tmp[bmap(y + i - kr, side, B_REFLECT101) * side + x];
      k[y * side + x] = (float)a;
    }
}

int sf_corrupt_disk_kernel(float *k, int cap, double radius, double alias_blur) {
  int side = disk_side(radius);
  if (side * side > cap) return -1;
  float *tmp = malloc((size_t)side * side * sizeof *tmp);
  if (!tmp) return -1;
  disk_fill(k, tmp, side, radius, alias_blur);
  free(tmp);
  return side;
}

/* ---- ImageMagick motion blur (one-sided Gaussian along a direction) ---- */

typedef struct mkernel {
  int n;
  float *k;
  int *ox, *oy;
} mkernel;

static mkernel motion_kernel(cctx *c, double radius, double sigma, double angle_deg) {
  mkernel m;
  m.n = 2 * (int)ceil(radius) + 1;
  m.k = scratch(c, (size_t)m.n);
  m.ox = scratch_int(c, (size_t)m.n);
  m.oy = scratch_int(c, (size_t)m.n);
  double sum = 0.0, th = angle_deg * PI / 180.0, ct = cos(th), st = sin(th);
  for (int i = 0; i < m.n; i++) sum += exp(-(double)i * i / (2.0 * sigma * sigma));
  for (int i = 0; i < m.n; i++) {
    m.k[i] = (float)(exp(-(double)i * i / (2.0 * sigma * sigma)) / sum);
    m.ox[i] = (int)ceil(i * ct - 0.5);
    m.oy[i] = (int)ceil(i * st - 0.5);
  }
  return m;
}

/* dst(x,y) = sum_i k_i src(x + ox_i, y + oy_i), reads clamped to the edge */
static void motion_plane(float *dst, const float *src, int H, int W, const mkernel *m) {
  memset(dst, 0, (size_t)H * W * sizeof *dst);
  for (int t = 0; t < m->n; t++) {
    float w = m->k[t];
    int dx = m->ox[t], dy = m->oy[t];
    int lo = imin(W, imax(0, -dx)), hi = imax(lo, imin(W, W - dx)); /* x + dx inside for lo <= x < hi */
    for (int y = 0; y < H; y++) {
      const float *row = src + (size_t)imin(H - 1, imax(0, y + dy)) * W;
      float *o = dst + (size_t)y * W;
      for (int x = 0; x < lo; x++) o[x] += w * row[0];
      for (int x = lo; x < hi; x++) o[x] += w * row[x + dx];
      for (int x = hi; x < W; x++) o[x] += w * row[W - 1];
    }
  }
}

/* ---- clipped zoom (scipy zoom order 1 of a centre crop, cropped back) ---- */

typedef struct ztab {
  int *i0, *i1;
  float *f;
} ztab;

/* For one axis of length n: output j samples the input at i0[j] + f[j] (next i1[j]). */
static ztab zoom_axis(cctx *c, int n, double z) {
  ztab t;
  t.i0 = scratch_int(c, (size_t)n);
  t.i1 = scratch_int(c, (size_t)n);
  t.f = scratch(c, (size_t)n);
  int ch = (int)ceil((double)n / z);
  if (ch < 1) ch = 1;
  int top = (n - ch) / 2;
  int o = (int)nearbyint((double)ch * z); /* Python round(): half to even */
  int trim = (o - n) / 2;
  for (int j = 0; j < n; j++) {
    double pos = o > 1 ? (double)(j + trim) * (ch - 1) / (o - 1) : 0.0;
    int a = (int)floor(pos);
    double fr = pos - a;
    if (a >= ch - 1) {
      a = ch - 1;
      fr = 0.0;
    }
    if (a < 0) a = 0;
    t.i0[j] = top + a;
    t.i1[j] = top + (a + 1 < ch ? a + 1 : a);
    t.f[j] = (float)fr;
  }
  return t;
}

static void zoom_plane(float *dst, const float *src, int H, int W, const ztab *ty, const ztab *tx, float *row) {
  for (int i = 0; i < H; i++) {
    const float *r0 = src + (size_t)ty->i0[i] * W, *r1 = src + (size_t)ty->i1[i] * W;
    float fy = ty->f[i];
    for (int x = 0; x < W; x++) row[x] = r0[x] + fy * (r1[x] - r0[x]);
    float *o = dst + (size_t)i * W;
    for (int j = 0; j < W; j++) {
      float a = row[tx->i0[j]], b = row[tx->i1[j]];
      o[j] = a + tx->f[j] * (b - a);
    }
  }
}

/* ---- plasma fractal (diamond-square on a torus, as make_cifar_c) ---- */

static void plasma(cctx *c, float *out, int H, int W, double decay) {
  size_t mark = c->used;
  int n = 2;
  while (n < H || n < W) n *= 2;
  float *m = scratch(c, (size_t)n * n); /* [n,n] map */
  m[0] = 0.0f;
  double wib = 100.0;
#define M(i, j) m[(size_t)((i) % n) * n + (size_t)((j) % n)]
#define NOISE() ((float)(wib * (wib * (2.0 * sf_rng_uniform(c->rng) - 1.0))))
  for (int st = n; st >= 2; st /= 2) {
    int h = st / 2, g = n / st;
    for (int i = 0; i < g; i++) /* squares: centres from the four corners */
      for (int j = 0; j < g; j++)
        M(i * st + h, j * st + h) =
            (M(i * st, j * st) + M(i * st + st, j * st) + M(i * st, j * st + st) + M(i * st + st, j * st + st)) / 4.0f +
            NOISE();
    for (int i = 0; i < g; i++) /* diamonds on the corner rows: centres above/below, corners left/right */
      for (int j = 0; j < g; j++)
        M(i * st, j * st + h) =
            (M(i * st + h, j * st + h) + M(i * st - h + n, j * st + h) + M(i * st, j * st) + M(i * st, j * st + st)) /
                4.0f +
            NOISE();
    for (int i = 0; i < g; i++) /* diamonds on the corner columns */
      for (int j = 0; j < g; j++)
        M(i * st + h, j * st) =
            (M(i * st + h, j * st + h) + M(i * st + h, j * st - h + n) + M(i * st, j * st) + M(i * st + st, j * st)) /
                4.0f +
            NOISE();
    wib /= decay;
  }
#undef M
#undef NOISE
  float lo = m[0], hi;
  for (size_t i = 0; i < (size_t)n * n; i++) lo = m[i] < lo ? m[i] : lo;
  hi = 0.0f;
  for (size_t i = 0; i < (size_t)n * n; i++) {
    m[i] -= lo;
    hi = m[i] > hi ? m[i] : hi;
  }
  float inv = hi > 0.0f ? 1.0f / hi : 0.0f;
  for (int y = 0; y < H; y++)
    for (int x = 0; x < W; x++) out[(size_t)y * W + x] = m[(size_t)y * n + x] * inv;
  c->used = mark;
}

/* ---- bilinear sampling with a border mode ---- */

static inline float bilinear(const float *p, int H, int W, float X, float Y, int mode) {
  float lim = 4.0f * (float)(H + W); /* keeps the int conversion defined on wild coordinates */
  X = X > lim ? lim : (X < -lim ? -lim : X);
  Y = Y > lim ? lim : (Y < -lim ? -lim : Y);
  if (X != X) X = 0.0f;
  if (Y != Y) Y = 0.0f;
  float fx = floorf(X), fy = floorf(Y), ax = X - fx, ay = Y - fy;
  int x0 = (int)fx, y0 = (int)fy;
  int xa = bmap(x0, W, mode), xb = bmap(x0 + 1, W, mode), ya = bmap(y0, H, mode), yb = bmap(y0 + 1, H, mode);
  const float *ra = p + (size_t)ya * W, *rb = p + (size_t)yb * W;
  float top = ra[xa] + ax * (ra[xb] - ra[xa]), bot = rb[xa] + ax * (rb[xb] - rb[xa]);
  return top + ay * (bot - top);
}

/* ================= the corruptions: x is the [C,H,W] image, edited in place ================= */

/* ---- noise ---- */

static int c_gaussian_noise(cctx *c, float *x) {
  int64_t n = c->C * c->P;
  float *z = scratch(c, (size_t)n);
  normals(z, n, c->rng);
  float sd = (float)P_GAUSS_NOISE[c->sev];
  for (int64_t i = 0; i < n; i++) x[i] += sd * z[i];
  return 0;
}

static int c_speckle_noise(cctx *c, float *x) {
  int64_t n = c->C * c->P;
  float *z = scratch(c, (size_t)n);
  normals(z, n, c->rng);
  float sd = (float)P_SPECKLE[c->sev];
  for (int64_t i = 0; i < n; i++) x[i] += x[i] * sd * z[i];
  return 0;
}

/* log(k!) for the Poisson acceptance test: exact sum below 10, Stirling series above
 * (thread-safe, unlike lgamma's signgam). */
static double log_fact(double k) {
  if (k < 10.0) {
    double s = 0.0;
    for (int i = 2; i <= (int)k; i++) s += log((double)i);
    return s;
  }
  double x = k + 1.0, x2 = x * x;
  return (x - 0.5) * log(x) - x + 0.91893853320467274178 + 1.0 / (12.0 * x) - 1.0 / (360.0 * x * x2) +
         1.0 / (1260.0 * x2 * x2 * x);
}

/* Poisson(lam): multiplication method below 10, Hormann's PTRS transformed rejection above. */
static double poisson(sf_rng *r, double lam) {
  if (!(lam > 0.0)) return 0.0;
  if (lam < 10.0) {
    double L = exp(-lam), p = 1.0;
    int k = 0;
    for (;;) {
      p *= sf_rng_uniform(r);
      if (p <= L) return k;
      k++;
    }
  }
  double slam = sqrt(lam), loglam = log(lam);
  double b = 0.931 + 2.53 * slam, a = -0.059 + 0.02483 * b;
  double invalpha = 1.1239 + 1.1328 / (b - 3.4), vr = 0.9277 - 3.6224 / (b - 2.0);
  for (;;) {
    double U = sf_rng_uniform(r) - 0.5, V = sf_rng_uniform(r);
    double us = 0.5 - fabs(U);
    if (us <= 0.0) continue;
    double k = floor((2.0 * a / us + b) * U + lam + 0.43);
    if (us >= 0.07 && V <= vr) return k;
    if (k < 0.0 || (us < 0.013 && V > us)) continue;
    if (log(V) + log(invalpha) - log(a / (us * us) + b) <= -lam + k * loglam - log_fact(k)) return k;
  }
}

static int c_shot_noise(cctx *c, float *x) {
  int64_t n = c->C * c->P;
  double k = P_SHOT[c->sev];
  for (int64_t i = 0; i < n; i++) x[i] = (float)(poisson(c->rng, (double)x[i] * k) / k);
  return 0;
}

/* salt and pepper per element: flipped with probability c, then 0 or 1 with probability 1/2 */
static int c_impulse_noise(cctx *c, float *x) {
  int64_t n = c->C * c->P;
  float amount = (float)P_IMPULSE[c->sev], half = amount * 0.5f;
  for (int64_t i = 0; i < n; i++) {
    float u = urand(c->rng);
    if (u < amount) x[i] = u < half ? 0.0f : 1.0f;
  }
  return 0;
}

/* ---- blur ---- */

static int c_gaussian_blur(cctx *c, float *x) {
  gauss_image(c, x, P_GBLUR[c->sev] * c->s, 4.0, B_NEAREST);
  return 0;
}

static int c_defocus_blur(cctx *c, float *x) {
  double r = P_DEFOCUS[c->sev][0] * c->s, alias = P_DEFOCUS[c->sev][1];
  int side = disk_side(r);
  float *k = scratch(c, (size_t)side * side), *tmp = scratch(c, (size_t)side * side);
  disk_fill(k, tmp, side, r, alias);
  /* crop to the non-zero support: the disk after a 3x3 blur is far smaller than 17x17 */
  int y0 = side, y1 = -1, x0 = side, x1 = -1;
  for (int y = 0; y < side; y++)
    for (int xx = 0; xx < side; xx++)
      if (k[y * side + xx] != 0.0f) {
        y0 = imin(y0, y), y1 = imax(y1, y), x0 = imin(x0, xx), x1 = imax(x1, xx);
      }
  int kh = y1 - y0 + 1, kw = x1 - x0 + 1;
  for (int y = 0; y < kh; y++)
    for (int xx = 0; xx < kw; xx++) tmp[y * kw + xx] = k[(y + y0) * side + xx + x0];
  for (int ch = 0; ch < c->C; ch++)
    correlate_plane(c, x + ch * c->P, c->H, c->W, tmp, kh, kw, side / 2 - y0, side / 2 - x0, B_REFLECT101);
  return 0;
}

/* Gaussian blur, 8-bit, local pixel shuffling (a one-way copy from the pixel at
 * (h+dy, w+dx), dx,dy in [-d, d-1], traversing toward the upper left, as the reference's
 * aliased swap does), Gaussian blur again. */
static int c_glass_blur(cctx *c, float *x) {
  const double *p = P_GLASS[c->sev];
  double sigma = p[0] * c->s;
  int d = imax(1, (int)lround(p[1] * c->s)), iters = (int)p[2], H = c->H, W = c->W;
  gauss_image(c, x, sigma, 4.0, B_NEAREST);
  for (int64_t i = 0; i < c->C * c->P; i++) x[i] = quant(x[i]);
  for (int it = 0; it < iters; it++)
    for (int h = H - d; h > d; h--)
      for (int w = W - d; w > d; w--) {
        int dx = (int)sf_rng_int(c->rng, -d, d - 1), dy = (int)sf_rng_int(c->rng, -d, d - 1);
        for (int ch = 0; ch < c->C; ch++) {
          float *pl = x + ch * c->P;
          pl[(size_t)h * W + w] = pl[(size_t)(h + dy) * W + (w + dx)];
        }
      }
  gauss_image(c, x, sigma, 4.0, B_NEAREST);
  return 0;
}

static int c_motion_blur(cctx *c, float *x) {
  double angle = -45.0 + 90.0 * sf_rng_uniform(c->rng);
  mkernel m = motion_kernel(c, P_MOTION[c->sev][0] * c->s, P_MOTION[c->sev][1] * c->s, angle);
  float *src = scratch(c, (size_t)c->P);
  for (int ch = 0; ch < c->C; ch++) {
    float *pl = x + ch * c->P;
    for (int64_t i = 0; i < c->P; i++) src[i] = quant(pl[i]); /* the reference feeds 8-bit pixels */
    motion_plane(pl, src, c->H, c->W, &m);
    for (int64_t i = 0; i < c->P; i++) pl[i] = round8(pl[i]);
  }
  return 0;
}

static int c_zoom_blur(cctx *c, float *x) {
  int n = P_ZOOM[c->sev], H = c->H, W = c->W;
  int64_t N = c->C * c->P;
  float *acc = scratch(c, (size_t)N), *z = scratch(c, (size_t)c->P), *row = scratch(c, (size_t)W);
  memcpy(acc, x, (size_t)N * sizeof *acc);
  for (int k = 0; k < n; k++) {
    size_t mark = c->used;
    double zf = 1.0 + k * 0.01; /* np.arange(1, stop, 0.01) */
    ztab ty = zoom_axis(c, H, zf), tx = zoom_axis(c, W, zf);
    for (int ch = 0; ch < c->C; ch++) {
      zoom_plane(z, x + ch * c->P, H, W, &ty, &tx, row);
      float *a = acc + ch * c->P;
      for (int64_t i = 0; i < c->P; i++) a[i] += z[i];
    }
    c->used = mark;
  }
  float inv = 1.0f / (float)(n + 1);
  for (int64_t i = 0; i < N; i++) x[i] = acc[i] * inv;
  return 0;
}

/* ---- weather ---- */

static void gray_of(const cctx *c, const float *x, float *g) {
  if (c->C == 1) {
    memcpy(g, x, (size_t)c->P * sizeof *g);
    return;
  }
  const float *r = x, *gr = x + c->P, *b = x + 2 * c->P;
  for (int64_t i = 0; i < c->P; i++) g[i] = 0.299f * r[i] + 0.587f * gr[i] + 0.114f * b[i];
}

static int c_snow(cctx *c, float *x) {
  const double *p = P_SNOW[c->sev];
  int H = c->H, W = c->W;
  int64_t P = c->P;
  float *S = scratch(c, (size_t)P), *Z = scratch(c, (size_t)P), *row = scratch(c, (size_t)W);
  normals(S, P, c->rng);
  for (int64_t i = 0; i < P; i++) S[i] = (float)p[0] + (float)p[1] * S[i];
  double zf = p[2] * c->s < 1.0 ? 1.0 : p[2] * c->s;
  size_t mark = c->used;
  ztab ty = zoom_axis(c, H, zf), tx = zoom_axis(c, W, zf);
  zoom_plane(Z, S, H, W, &ty, &tx, row);
  c->used = mark;
  float th = (float)p[3];
  for (int64_t i = 0; i < P; i++) Z[i] = quant(Z[i] < th ? 0.0f : Z[i]); /* to an 8-bit gray layer */
  double angle = -135.0 + 90.0 * sf_rng_uniform(c->rng);
  mkernel m = motion_kernel(c, p[4] * c->s, p[5] * c->s, angle);
  motion_plane(S, Z, H, W, &m);
  for (int64_t i = 0; i < P; i++) S[i] = round8(S[i]);
  gray_of(c, x, Z);
  float blend = (float)p[6];
  for (int ch = 0; ch < c->C; ch++) {
    float *pl = x + ch * P;
    for (int64_t i = 0; i < P; i++) {
      float bright = 1.5f * Z[i] + 0.5f, v = pl[i];
      pl[i] = blend * v + (1.0f - blend) * (v > bright ? v : bright);
    }
    for (int64_t i = 0; i < P; i++) pl[i] += S[i] + S[P - 1 - i]; /* the layer and its 180-degree rotation */
  }
  return 0;
}

/* A line of crystal from (x0,y0) along angle th, tapered from val to val/2, max-blended,
 * 2 half + 1 pixels wide. */
static void streak(float *F, int H, int W, double x0, double y0, double th, double len, float val, int half) {
  double ct = cos(th), st = sin(th);
  int steps = (int)(len * 2.0) + 1;
  for (int i = 0; i <= steps; i++) {
    double t = len * i / steps;
    int px = (int)floor(x0 + t * ct + 0.5), py = (int)floor(y0 + t * st + 0.5);
    float v = val * (1.0f - 0.5f * (float)(t / len));
    for (int yy = imax(0, py - half); yy <= imin(H - 1, py + half); yy++)
      for (int xx = imax(0, px - half); xx <= imin(W - 1, px + half); xx++) {
        float *q = F + (size_t)yy * W + xx;
        if (v > *q) *q = v;
      }
  }
}

/* Procedural frost (the reference's texture photographs are not available): a plasma
 * haze, crystal streaks at random positions and angles (each with two side branches at
 * +-60 degrees, like dendrites), grains from thresholded uniform noise, blurred; values
 * in [0,1], mean about 0.45. F is [H,W]; the caller tints it pale blue. */
static void frost_texture(cctx *c, float *F) {
  int H = c->H, W = c->W;
  int64_t P = c->P;
  double s = c->s, L = H < W ? H : W;
  float *haze = scratch(c, (size_t)P);
  plasma(c, haze, H, W, 1.6);
  memset(F, 0, (size_t)P * sizeof *F);
  int nstreak = 4 + (int)((double)P / (28.0 * s * s)), half = (int)(0.5 * s);
  for (int k = 0; k < nstreak; k++) {
    double x0 = W * sf_rng_uniform(c->rng), y0 = H * sf_rng_uniform(c->rng);
    double th = 2.0 * PI * sf_rng_uniform(c->rng), len = L * (0.1 + 0.3 * sf_rng_uniform(c->rng));
    float val = 0.55f + 0.45f * urand(c->rng);
    streak(F, H, W, x0, y0, th, len, val, half);
    double bx = x0 + 0.5 * len * cos(th), by = y0 + 0.5 * len * sin(th);
    streak(F, H, W, bx, by, th + PI / 3.0, len / 3.0, 0.8f * val, half);
    streak(F, H, W, bx, by, th - PI / 3.0, len / 3.0, 0.8f * val, half);
  }
  for (int64_t i = 0; i < P; i++) {
    float u = urand(c->rng);
    if (u < 0.05f) F[i] = F[i] > 0.5f + 10.0f * u ? F[i] : 0.5f + 10.0f * u; /* grains in [0.5, 1) */
  }
  gauss_plane(c, F, H, W, 0.5 * s, 4.0, B_NEAREST);
  for (int64_t i = 0; i < P; i++) F[i] = clip01(0.55f * haze[i] + 1.1f * F[i] + 0.1f);
}

static int c_frost(cctx *c, float *x) {
  static const float tint[3] = {0.86f, 0.93f, 1.0f}; /* const: pale blue ice */
  float *F = scratch(c, (size_t)c->P);
  size_t mark = c->used;
  frost_texture(c, F);
  c->used = mark;
  float a = (float)P_FROST[c->sev][0], b = (float)P_FROST[c->sev][1];
  for (int ch = 0; ch < c->C; ch++) {
    float *pl = x + ch * c->P, t = b * tint[ch];
    for (int64_t i = 0; i < c->P; i++) pl[i] = a * pl[i] + t * F[i];
  }
  return 0;
}

static int c_fog(cctx *c, float *x) {
  float k = (float)P_FOG[c->sev][0];
  float *F = scratch(c, (size_t)c->P);
  plasma(c, F, c->H, c->W, P_FOG[c->sev][1]);
  int64_t N = c->C * c->P;
  float M = 0.0f;
  for (int64_t i = 0; i < N; i++) M = x[i] > M ? x[i] : M;
  float scale = M / (M + k);
  for (int ch = 0; ch < c->C; ch++) {
    float *pl = x + ch * c->P;
    for (int64_t i = 0; i < c->P; i++) pl[i] = (pl[i] + k * F[i]) * scale;
  }
  return 0;
}

/* -- spatter's helpers: cv2 Canny, distanceTransform, equalizeHist, box blur -- */

/* cv2.Canny(img, lo, hi) with a 3x3 Sobel (replicated border), L1 magnitude, OpenCV's
 * non-maximum suppression and 8-connected hysteresis. edge: 255 on edges, 0 elsewhere. */
static void canny(cctx *c, unsigned char *edge, const unsigned char *img, int H, int W, int lo, int hi) {
  size_t mark = c->used;
  int64_t P = (int64_t)H * W;
  int *gx = scratch_int(c, (size_t)P), *gy = scratch_int(c, (size_t)P), *mag = scratch_int(c, (size_t)P);
  int *stack = scratch_int(c, (size_t)P);
  unsigned char *mk = scratch_u8(c, (size_t)P); /* 0 weak candidate, 1 not an edge, 2 edge */
#define PX(yy, xx) ((int)img[(size_t)imin(H - 1, imax(0, (yy))) * W + imin(W - 1, imax(0, (xx)))])
  for (int y = 0; y < H; y++)
    for (int x = 0; x < W; x++) {
      int dx = (PX(y - 1, x + 1) + 2 * PX(y, x + 1) + PX(y + 1, x + 1)) - (PX(y - 1, x - 1) + 2 * PX(y, x - 1) + PX(y + 1, x - 1));
      int dy = (PX(y + 1, x - 1) + 2 * PX(y + 1, x) + PX(y + 1, x + 1)) - (PX(y - 1, x - 1) + 2 * PX(y - 1, x) + PX(y - 1, x + 1));
      size_t i = (size_t)y * W + x;
      gx[i] = dx, gy[i] = dy, mag[i] = abs(dx) + abs(dy);
    }
#undef PX
#define MAG(yy, xx) (((yy) < 0 || (yy) >= H || (xx) < 0 || (xx) >= W) ? 0 : mag[(size_t)(yy) * W + (xx)])
  int top = 0;
  for (int y = 0; y < H; y++)
    for (int x = 0; x < W; x++) {
      size_t i = (size_t)y * W + x;
      int m = mag[i], cand = 0;
      mk[i] = 1;
      if (m <= lo) continue;
      int xs = gx[i], ys = gy[i], ax = abs(xs), ay = abs(ys) << 15;
      int tg22x = ax * 13573; /* tan(22.5 deg) in Q15 */
      if (ay < tg22x) {
        cand = m > MAG(y, x - 1) && m >= MAG(y, x + 1);
      } else if (ay > tg22x + (ax << 16)) { /* tan(67.5 deg) = tan(22.5) + 2 */
        cand = m > MAG(y - 1, x) && m >= MAG(y + 1, x);
      } else {
        int sg = (xs ^ ys) < 0 ? -1 : 1;
        cand = m > MAG(y - 1, x - sg) && m > MAG(y + 1, x + sg);
      }
      if (!cand) continue;
      if (m > hi) {
        mk[i] = 2;
        stack[top++] = (int)i;
      } else {
        mk[i] = 0;
      }
    }
#undef MAG
  while (top > 0) {
    int i = stack[--top], y = i / W, x = i % W;
    for (int dy = -1; dy <= 1; dy++)
      for (int dx = -1; dx <= 1; dx++) {
        int yy = y + dy, xx = x + dx;
        if (yy < 0 || yy >= H || xx < 0 || xx >= W) continue;
        size_t j = (size_t)yy * W + xx;
        if (mk[j] == 0) {
          mk[j] = 2;
          stack[top++] = (int)j;
        }
      }
  }
  for (int64_t i = 0; i < P; i++) edge[i] = mk[i] == 2 ? 255 : 0;
  c->used = mark;
}

/* cv2.distanceTransform(src, DIST_L2, 5): 5x5 chamfer (1, 1.4, 2.1969) distance of every
 * non-zero pixel to the nearest zero pixel; no zero pixel gives a large distance. */
static void dist_transform(float *d, const unsigned char *src, int H, int W) {
  const float A = 1.0f, B = 1.4f, Cc = 2.1969f, INF = 1e6f;
  static const int fy[8] = {0, -1, -1, -1, -1, -1, -2, -2}, fx[8] = {-1, -1, 0, 1, -2, 2, -1, 1};
  const float fw[8] = {A, B, A, B, Cc, Cc, Cc, Cc};
  for (int64_t i = 0; i < (int64_t)H * W; i++) d[i] = src[i] ? INF : 0.0f;
  for (int y = 0; y < H; y++) /* forward: neighbours above and to the left */
    for (int x = 0; x < W; x++) {
      float *v = d + (size_t)y * W + x;
      for (int t = 0; t < 8; t++) {
        int yy = y + fy[t], xx = x + fx[t];
        if (yy < 0 || xx < 0 || xx >= W) continue;
        float cand = d[(size_t)yy * W + xx] + fw[t];
        if (cand < *v) *v = cand;
      }
    }
  for (int y = H - 1; y >= 0; y--) /* backward: the mirrored neighbours */
    for (int x = W - 1; x >= 0; x--) {
      float *v = d + (size_t)y * W + x;
      for (int t = 0; t < 8; t++) {
        int yy = y - fy[t], xx = x - fx[t];
        if (yy >= H || xx < 0 || xx >= W) continue;
        float cand = d[(size_t)yy * W + xx] + fw[t];
        if (cand < *v) *v = cand;
      }
    }
}

/* cv2.equalizeHist */
static void equalize(unsigned char *p, int64_t n) {
  int64_t hist[256] = {0};
  unsigned char lut[256];
  for (int64_t i = 0; i < n; i++) hist[p[i]]++;
  int i = 0;
  while (i < 255 && hist[i] == 0) i++;
  if (hist[i] == n) {
    memset(p, i, (size_t)n);
    return;
  }
  double scale = 255.0 / (double)(n - hist[i]);
  int64_t sum = 0;
  memset(lut, 0, sizeof lut);
  for (i++; i < 256; i++) {
    sum += hist[i];
    double v = nearbyint((double)sum * scale);
    lut[i] = (unsigned char)(v > 255.0 ? 255.0 : v);
  }
  for (int64_t k = 0; k < n; k++) p[k] = lut[p[k]];
}

/* 3x3 box mean, reflect101 border (cv2.blur) */
static void box3(float *dst, const float *src, int H, int W) {
  for (int y = 0; y < H; y++)
    for (int x = 0; x < W; x++) {
      float s = 0.0f;
      for (int dy = -1; dy <= 1; dy++)
        for (int dx = -1; dx <= 1; dx++)
          s += src[(size_t)bmap(y + dy, H, B_REFLECT101) * W + bmap(x + dx, W, B_REFLECT101)];
      dst[(size_t)y * W + x] = s / 9.0f;
    }
}

static int c_spatter(cctx *c, float *x) {
  const double *p = P_SPATTER[c->sev];
  int H = c->H, W = c->W;
  int64_t P = c->P;
  float *Lq = scratch(c, (size_t)P), *m = scratch(c, (size_t)P);
  normals(Lq, P, c->rng);
  /* noise std times s: blurring over s times more pixels divides it by s, and the
   * threshold below expects the reference's amplitude */
  for (int64_t i = 0; i < P; i++) Lq[i] = (float)p[0] + (float)(p[1] * c->s) * Lq[i];
  gauss_plane(c, Lq, H, W, p[2] * c->s, 4.0, B_NEAREST);
  float th = (float)p[3];
  for (int64_t i = 0; i < P; i++)
    if (Lq[i] < th) Lq[i] = 0.0f;
  if (p[5] == 0.0) { /* water: a liquid layer shaded by distance to its edges */
    unsigned char *L8 = scratch_u8(c, (size_t)P), *E = scratch_u8(c, (size_t)P), *D8 = scratch_u8(c, (size_t)P);
    float *D = scratch(c, (size_t)P), *T = scratch(c, (size_t)P);
    for (int64_t i = 0; i < P; i++) {
      float v = Lq[i] * 255.0f; /* the reference wraps above 255; we saturate */
      L8[i] = (unsigned char)(v > 255.0f ? 255.0f : v);
    }
    canny(c, E, L8, H, W, 50, 150);
    for (int64_t i = 0; i < P; i++) E[i] = (unsigned char)(255 - E[i]);
    dist_transform(D, E, H, W);
    float cap = (float)(20.0 * c->s);
    for (int64_t i = 0; i < P; i++) D[i] = D[i] > cap ? cap : D[i];
    box3(T, D, H, W);
    for (int64_t i = 0; i < P; i++) D8[i] = (unsigned char)(T[i] > 255.0f ? 255.0f : T[i]);
    equalize(D8, P);
    static const int ker[3][3] = {{-2, -1, 0}, {-1, 1, 1}, {0, 1, 2}}; /* const: an emboss */
    for (int y = 0; y < H; y++)
      for (int xx = 0; xx < W; xx++) {
        int s = 0;
        for (int dy = -1; dy <= 1; dy++)
          for (int dx = -1; dx <= 1; dx++)
            s += ker[dy + 1][dx + 1] * D8[(size_t)bmap(y + dy, H, B_REFLECT101) * W + bmap(xx + dx, W, B_REFLECT101)];
        T[(size_t)y * W + xx] = (float)(s < 0 ? 0 : s > 255 ? 255 : s);
      }
    box3(D, T, H, W);
    float mx = 0.0f;
    for (int64_t i = 0; i < P; i++) {
      m[i] = (float)L8[i] * floorf(D[i] + 0.5f); /* cv2.blur on uint8 rounds */
      mx = m[i] > mx ? m[i] : mx;
    }
    float sc = mx > 0.0f ? (float)p[4] / mx : 0.0f;
    static const float col[3] = {175.0f / 255.0f, 238.0f / 255.0f, 238.0f / 255.0f}; /* const: pale turquoise */
    for (int ch = 0; ch < c->C; ch++) {
      float *pl = x + ch * P;
      for (int64_t i = 0; i < P; i++) pl[i] = clip01(pl[i] + m[i] * sc * col[ch]);
    }
  } else { /* mud: opaque brown where the blurred liquid mask is dense */
    for (int64_t i = 0; i < P; i++) m[i] = Lq[i] > th ? 1.0f : 0.0f;
    gauss_plane(c, m, H, W, p[4] * c->s, 4.0, B_NEAREST);
    for (int64_t i = 0; i < P; i++)
      if (m[i] < 0.8f) m[i] = 0.0f;
    static const float col[3] = {63.0f / 255.0f, 42.0f / 255.0f, 20.0f / 255.0f}; /* const: mud brown */
    for (int ch = 0; ch < c->C; ch++) {
      float *pl = x + ch * P;
      for (int64_t i = 0; i < P; i++) pl[i] = pl[i] * (1.0f - m[i]) + m[i] * col[ch];
    }
  }
  return 0;
}

/* ---- digital / photometric ---- */

/* HSV V <- min(V + c, 1); with H and S fixed, RGB scales by V'/V. */
static int c_brightness(cctx *c, float *x) {
  float k = (float)P_BRIGHT[c->sev];
  if (c->C == 1) {
    for (int64_t i = 0; i < c->P; i++) x[i] = clip01(x[i] + k);
    return 0;
  }
  float *r = x, *g = x + c->P, *b = x + 2 * c->P;
  for (int64_t i = 0; i < c->P; i++) {
    float v = r[i] > g[i] ? r[i] : g[i];
    v = b[i] > v ? b[i] : v;
    float v2 = clip01(v + k);
    if (v > 0.0f) {
      float f = v2 / v;
      r[i] *= f, g[i] *= f, b[i] *= f;
    } else {
      r[i] = g[i] = b[i] = v2;
    }
  }
  return 0;
}

static int c_contrast(cctx *c, float *x) {
  float k = (float)P_CONTRAST[c->sev];
  for (int ch = 0; ch < c->C; ch++) {
    float *pl = x + ch * c->P;
    double sum = 0.0;
    for (int64_t i = 0; i < c->P; i++) sum += (double)pl[i];
    float mu = (float)(sum / (double)c->P);
    for (int64_t i = 0; i < c->P; i++) pl[i] = (pl[i] - mu) * k + mu;
  }
  return 0;
}

/* HSV S <- clip(S a + b); with H and V fixed each channel moves as V - (V - c) S'/S. A
 * gray pixel (S = 0, so H = 0) becomes (V, V(1-S'), V(1-S')), slightly red, as in skimage. */
static int c_saturate(cctx *c, float *x) {
  float ka = (float)P_SATURATE[c->sev][0], kb = (float)P_SATURATE[c->sev][1];
  float *r = x, *g = x + c->P, *b = x + 2 * c->P;
  for (int64_t i = 0; i < c->P; i++) {
    float v = r[i] > g[i] ? r[i] : g[i], lo = r[i] < g[i] ? r[i] : g[i];
    v = b[i] > v ? b[i] : v;
    lo = b[i] < lo ? b[i] : lo;
    float sat = v > 0.0f ? (v - lo) / v : 0.0f;
    float s2 = clip01(sat * ka + kb);
    if (sat > 0.0f) {
      float f = s2 / sat;
      r[i] = v - (v - r[i]) * f, g[i] = v - (v - g[i]) * f, b[i] = v - (v - b[i]) * f;
    } else {
      r[i] = v, g[i] = b[i] = v * (1.0f - s2);
    }
  }
  return 0;
}

/* Solve the affine map A (2x3) with A [u_i; v_i; 1] = [x_i; y_i] for three points. */
static int affine3(double A[6], const double u[3], const double v[3], const double xs[3], const double ys[3]) {
  double det = u[0] * (v[1] - v[2]) - v[0] * (u[1] - u[2]) + (u[1] * v[2] - u[2] * v[1]);
  if (fabs(det) < 1e-12) return -1;
  for (int row = 0; row < 2; row++) {
    const double *t = row == 0 ? xs : ys;
    /* Cramer's rule on [[u0 v0 1],[u1 v1 1],[u2 v2 1]] [a b c]^T = t */
    double a = (t[0] * (v[1] - v[2]) - v[0] * (t[1] - t[2]) + (t[1] * v[2] - t[2] * v[1])) / det;
    double b = (u[0] * (t[1] - t[2]) - t[0] * (u[1] - u[2]) + (u[1] * t[2] - u[2] * t[1])) / det;
    double cc = (u[0] * (v[1] * t[2] - v[2] * t[1]) - v[0] * (u[1] * t[2] - u[2] * t[1]) + t[0] * (u[1] * v[2] - u[2] * v[1])) / det;
    A[row * 3 + 0] = a, A[row * 3 + 1] = b, A[row * 3 + 2] = cc;
  }
  return 0;
}

/* A random affine warp (three control points jittered by U(-delta, delta); bilinear,
 * reflect101 border, as cv2.warpAffine), then a smooth random displacement field
 * alpha G_sigma(U(-1,1)) (reflect border, truncate 3) sampled bilinearly with scipy's
 * reflect mode. */
static int c_elastic(cctx *c, float *x) {
  const double *p = P_ELASTIC[c->sev];
  int H = c->H, W = c->W;
  int64_t P = c->P, N = c->C * P;
  /* the reference's 32 x (...) in pixels, times s for sigma and delta; alpha times s^2,
   * since smoothing the noise over s times more pixels divides its amplitude by s */
  double L = H < W ? H : W, s = c->s;
  double alpha = 32.0 * p[0] * s * s, sigma = 32.0 * p[1] * s, delta = 32.0 * p[2] * s;
  double cx = W / 2, cy = H / 2, sq = (int)L / 3;
  double sx[3] = {cx + sq, cx + sq, cx - sq}, sy[3] = {cy + sq, cy - sq, cy - sq}, dx[3], dy[3];
  for (int i = 0; i < 3; i++) { /* the reference's row-major (3,2) draw order */
    dx[i] = sx[i] + delta * (2.0 * sf_rng_uniform(c->rng) - 1.0);
    dy[i] = sy[i] + delta * (2.0 * sf_rng_uniform(c->rng) - 1.0);
  }
  double A[6] = {1, 0, 0, 0, 1, 0};
  (void)affine3(A, dx, dy, sx, sy); /* destination -> source; degenerate only if delta were huge */
  float *warp = scratch(c, (size_t)N);
  for (int ch = 0; ch < c->C; ch++) {
    const float *src = x + ch * P;
    float *o = warp + ch * P;
    for (int y = 0; y < H; y++)
      for (int xx = 0; xx < W; xx++)
        o[(size_t)y * W + xx] = bilinear(src, H, W, (float)(A[0] * xx + A[1] * y + A[2]),
                                         (float)(A[3] * xx + A[4] * y + A[5]), B_REFLECT101);
  }
  if (alpha == 0.0) {
    memcpy(x, warp, (size_t)N * sizeof *x);
    return 0;
  }
  float *fx = scratch(c, (size_t)P), *fy = scratch(c, (size_t)P);
  for (int64_t i = 0; i < P; i++) fx[i] = 2.0f * urand(c->rng) - 1.0f;
  gauss_plane(c, fx, H, W, sigma, 3.0, B_REFLECT);
  for (int64_t i = 0; i < P; i++) fy[i] = 2.0f * urand(c->rng) - 1.0f;
  gauss_plane(c, fy, H, W, sigma, 3.0, B_REFLECT);
  float a = (float)alpha;
  for (int ch = 0; ch < c->C; ch++) {
    const float *src = warp + ch * P;
    float *o = x + ch * P;
    for (int y = 0; y < H; y++)
      for (int xx = 0; xx < W; xx++) {
        size_t i = (size_t)y * W + xx;
        o[i] = bilinear(src, H, W, (float)xx + a * fx[i], (float)y + a * fy[i], B_REFLECT);
      }
  }
  return 0;
}

/* Pillow's BOX resampling coefficients in its 22-bit fixed point; bounds[2j] = first
 * input, bounds[2j+1] = count. Returns the coefficients per output (ksize). */
#define PIL_BITS 22
static int box_coeffs(cctx *c, int in, int out, int **bounds, int **kk) {
  double scale = (double)in / out, fs = scale < 1.0 ? 1.0 : scale, support = 0.5 * fs, ss = 1.0 / fs;
  int ksize = (int)ceil(support) * 2 + 1;
  *bounds = scratch_int(c, 2 * (size_t)out);
  *kk = scratch_int(c, (size_t)out * ksize);
  double w[64];
  SF_ASSERT(ksize <= 64); /* fs <= 1/0.65: a few taps */
  for (int j = 0; j < out; j++) {
    double center = (j + 0.5) * scale, ww = 0.0;
    int xmin = (int)(center - support + 0.5), xmax = (int)(center + support + 0.5);
    if (xmin < 0) xmin = 0;
    if (xmax > in) xmax = in;
    xmax -= xmin;
    for (int t = 0; t < xmax; t++) {
      double u = (t + xmin - center + 0.5) * ss;
      w[t] = (u > -0.5 && u <= 0.5) ? 1.0 : 0.0;
      ww += w[t];
    }
    for (int t = 0; t < ksize; t++) {
      double v = t < xmax && ww != 0.0 ? w[t] / ww : 0.0;
      (*kk)[j * ksize + t] = (int)(v * (1 << PIL_BITS) + 0.5);
    }
    (*bounds)[2 * j] = xmin, (*bounds)[2 * j + 1] = xmax;
  }
  return ksize;
}

static inline unsigned char pil_clip8(int64_t acc) {
  int64_t v = acc >> PIL_BITS;
  return (unsigned char)(v < 0 ? 0 : v > 255 ? 255 : v);
}

/* Pillow resize(BOX) of a uint8 plane, horizontal pass then vertical, 8-bit between. */
static void pil_resize(cctx *c, unsigned char *dst, const unsigned char *src, int H, int W, int h2, int w2) {
  size_t mark = c->used;
  int *bx, *kx, *by, *ky;
  int kxs = box_coeffs(c, W, w2, &bx, &kx), kys = box_coeffs(c, H, h2, &by, &ky);
  unsigned char *tmp = scratch_u8(c, (size_t)H * w2); /* [H, w2] */
  for (int y = 0; y < H; y++)
    for (int j = 0; j < w2; j++) {
      int64_t acc = 1 << (PIL_BITS - 1);
      const unsigned char *s = src + (size_t)y * W + bx[2 * j];
      for (int t = 0; t < bx[2 * j + 1]; t++) acc += (int64_t)s[t] * kx[j * kxs + t];
      tmp[(size_t)y * w2 + j] = pil_clip8(acc);
    }
  for (int i = 0; i < h2; i++)
    for (int j = 0; j < w2; j++) {
      int64_t acc = 1 << (PIL_BITS - 1);
      for (int t = 0; t < by[2 * i + 1]; t++) acc += (int64_t)tmp[(size_t)(by[2 * i] + t) * w2 + j] * ky[i * kys + t];
      dst[(size_t)i * w2 + j] = pil_clip8(acc);
    }
  c->used = mark;
}

static int c_pixelate(cctx *c, float *x) {
  int H = c->H, W = c->W;
  int h2 = imax(1, (int)(H * P_PIXELATE[c->sev])), w2 = imax(1, (int)(W * P_PIXELATE[c->sev]));
  unsigned char *a = scratch_u8(c, (size_t)c->P), *b = scratch_u8(c, (size_t)h2 * w2);
  for (int ch = 0; ch < c->C; ch++) {
    float *pl = x + ch * c->P;
    for (int64_t i = 0; i < c->P; i++) a[i] = to_u8(pl[i]);
    pil_resize(c, b, a, H, W, h2, w2);
    pil_resize(c, a, b, h2, w2, H, W);
    for (int64_t i = 0; i < c->P; i++) pl[i] = (float)a[i] / 255.0f;
  }
  return 0;
}

/* -- JPEG through libjpeg, in memory; errors longjmp back here instead of exit() -- */

typedef struct jstate {
  struct jpeg_error_mgr pub;
  jmp_buf jb;
  char msg[JMSG_LENGTH_MAX];
  struct jpeg_compress_struct cc;
  struct jpeg_decompress_struct dc;
  unsigned char *buf; /* malloc'd by jpeg_mem_dest */
  unsigned long size;
  int have_c, have_d;
} jstate;

static void jpeg_fail(j_common_ptr ci) {
  jstate *js = (jstate *)(void *)ci->err; /* pub is the first member */
  (*ci->err->format_message)(ci, js->msg);
  longjmp(js->jb, 1);
}
static void jpeg_quiet(j_common_ptr ci, int level) { (void)ci, (void)level; }

static void jpeg_cleanup(jstate *js) {
  if (js->have_c) jpeg_destroy_compress(&js->cc);
  if (js->have_d) jpeg_destroy_decompress(&js->dc);
  free(js->buf);
  js->have_c = js->have_d = 0;
  js->buf = NULL;
}

static int c_jpeg(cctx *c, float *x) {
  int H = c->H, W = c->W, C = c->C;
  /* js lives in the arena: only its address, set before setjmp, is a local */
  jstate *js = scratch(c, (sizeof(jstate) + sizeof(float) - 1) / sizeof(float));
  unsigned char *px = scratch_u8(c, (size_t)C * c->P); /* [H,W,C] interleaved */
  memset(js, 0, sizeof *js);
  for (int ch = 0; ch < C; ch++)
    for (int64_t i = 0; i < c->P; i++) px[i * C + ch] = to_u8(x[ch * c->P + i]);
  js->cc.err = jpeg_std_error(&js->pub);
  js->dc.err = &js->pub;
  js->pub.error_exit = jpeg_fail;
  js->pub.emit_message = jpeg_quiet;
  if (setjmp(js->jb)) {
    jpeg_cleanup(js);
    return sf_err("corrupt: jpeg_compression: libjpeg failed: %s", js->msg);
  }
  jpeg_create_compress(&js->cc);
  js->have_c = 1;
  jpeg_mem_dest(&js->cc, &js->buf, &js->size);
  js->cc.image_width = (JDIMENSION)W;
  js->cc.image_height = (JDIMENSION)H;
  js->cc.input_components = C;
  js->cc.in_color_space = C == 3 ? JCS_RGB : JCS_GRAYSCALE;
  jpeg_set_defaults(&js->cc); /* baseline, 4:2:0, islow: Pillow's defaults */
  jpeg_set_quality(&js->cc, P_JPEG[c->sev], TRUE);
  jpeg_start_compress(&js->cc, TRUE);
  while (js->cc.next_scanline < js->cc.image_height) {
    JSAMPROW row = px + (size_t)js->cc.next_scanline * W * C;
    jpeg_write_scanlines(&js->cc, &row, 1);
  }
  jpeg_finish_compress(&js->cc);
  jpeg_destroy_compress(&js->cc);
  js->have_c = 0;
  jpeg_create_decompress(&js->dc);
  js->have_d = 1;
  jpeg_mem_src(&js->dc, js->buf, js->size);
  jpeg_read_header(&js->dc, TRUE);
  js->dc.out_color_space = C == 3 ? JCS_RGB : JCS_GRAYSCALE;
  jpeg_start_decompress(&js->dc);
  if ((int)js->dc.output_width != W || (int)js->dc.output_height != H || js->dc.output_components != C) {
    jpeg_cleanup(js);
    return sf_err("corrupt: jpeg_compression: decoded image has the wrong size");
  }
  while (js->dc.output_scanline < js->dc.output_height) {
    JSAMPROW row = px + (size_t)js->dc.output_scanline * W * C;
    jpeg_read_scanlines(&js->dc, &row, 1);
  }
  jpeg_finish_decompress(&js->dc);
  jpeg_cleanup(js);
  for (int ch = 0; ch < C; ch++)
    for (int64_t i = 0; i < c->P; i++) x[ch * c->P + i] = (float)px[i * C + ch] / 255.0f;
  return 0;
}

/* ================= driver ================= */

typedef int (*corrupt_fn)(cctx *, float *);
static const struct {
  corrupt_fn fn;
  int colour; /* needs RGB: a gray image is replicated and converted back */
} table[NCORRUPT] = {
    [GAUSSIAN_NOISE] = {c_gaussian_noise, 0}, [SHOT_NOISE] = {c_shot_noise, 0},
    [IMPULSE_NOISE] = {c_impulse_noise, 0},   [DEFOCUS_BLUR] = {c_defocus_blur, 0},
    [GLASS_BLUR] = {c_glass_blur, 0},         [MOTION_BLUR] = {c_motion_blur, 0},
    [ZOOM_BLUR] = {c_zoom_blur, 0},           [SNOW] = {c_snow, 0},
    [FROST] = {c_frost, 1},                   [FOG] = {c_fog, 0},
    [BRIGHTNESS] = {c_brightness, 0},         [CONTRAST] = {c_contrast, 0},
    [ELASTIC_TRANSFORM] = {c_elastic, 0},     [PIXELATE] = {c_pixelate, 0},
    [JPEG_COMPRESSION] = {c_jpeg, 0},         [SPECKLE_NOISE] = {c_speckle_noise, 0},
    [GAUSSIAN_BLUR] = {c_gaussian_blur, 0},   [SPATTER] = {c_spatter, 1},
    [SATURATE] = {c_saturate, 1},
};

#define MIN_SIDE 8

int sf_corrupt_images(float *dst, const float *src, int64_t n, int C, int H, int W, int id, int severity,
                      sf_rng *rng) {
  if (id < 0 || id >= NCORRUPT) return sf_err("corrupt: unknown corruption id %d", id);
  if (severity < 1 || severity > 5) return sf_err("corrupt: argument #3: severity %d is outside 1..5", severity);
  if ((C != 1 && C != 3) || H < MIN_SIDE || W < MIN_SIDE || n < 0)
    return sf_err("corrupt: images of %lld x [%d,%d,%d], expected C = 1 or 3 and H, W >= %d", (long long)n, C, H, W,
                  MIN_SIDE);
  if (!rng) return sf_err("corrupt: argument #4: the generator is NULL");
  if (n == 0) return 0;
  int64_t P = (int64_t)H * W;
  int64_t side = H > W ? H : W, map = 2;
  while (map < side) map *= 2;
  size_t cap = (size_t)(48 * P + map * map + 64 * (H + W) + 65536);
  cctx c = {.C = C, .H = H, .W = W, .P = P, .sev = severity - 1, .rng = rng, .cap = cap, .used = 0};
  c.s = (H < W ? H : W) / 32.0;
  if (c.s < 1.0) c.s = 1.0;
  c.arena = aligned_alloc(64, cap * sizeof(float));
  if (!c.arena) return sf_err("corrupt: out of memory for a %lld-float workspace", (long long)cap);
  int rgb = table[id].colour && C == 1;
  for (int64_t k = 0; k < n; k++) {
    c.used = 0;
    c.C = rgb ? 3 : C;
    float *x = scratch(&c, (size_t)(c.C * P)); /* [C,H,W] working image */
    const float *s = src + k * C * P;
    for (int ch = 0; ch < c.C; ch++)
      for (int64_t i = 0; i < P; i++) x[ch * P + i] = clip01(s[(rgb ? 0 : ch * P) + i]);
    if (table[id].fn(&c, x)) {
      free(c.arena);
      return -1;
    }
    float *d = dst + k * C * P;
    if (rgb)
      for (int64_t i = 0; i < P; i++) d[i] = quant(0.299f * x[i] + 0.587f * x[P + i] + 0.114f * x[2 * P + i]);
    else
      for (int64_t i = 0; i < C * P; i++) d[i] = quant(x[i]);
  }
  free(c.arena);
  return 0;
}

int sf_corrupt(sf_tensor *out, const sf_tensor *img, const char *name, int severity, sf_rng *rng) {
  char buf[SF_SHAPE_BUF];
  if (!img || !img->storage) return sf_err("corrupt: argument #1: tensor is empty");
  int nd = img->ndim;
  int64_t C = nd >= 3 ? img->size[nd - 3] : 0, H = nd >= 3 ? img->size[nd - 2] : 0, W = nd >= 3 ? img->size[nd - 1] : 0;
  if ((nd != 3 && nd != 4) || (C != 1 && C != 3))
    return sf_err("corrupt: argument #1 has shape %s, expected [C,H,W] or [N,C,H,W] with C = 1 or 3",
                  sf_tshape(img, buf));
  if (H < MIN_SIDE || W < MIN_SIDE || H > (1 << 15) || W > (1 << 15))
    return sf_err("corrupt: argument #1 has shape %s, expected images of at least %dx%d (and at most 32768)",
                  sf_tshape(img, buf), MIN_SIDE, MIN_SIDE);
  int id = name ? sf_corrupt_find(name) : -1;
  if (id < 0) {
    char list[512];
    size_t used = 0;
    list[0] = '\0';
    for (int i = 0; i < NCORRUPT; i++)
      used += (size_t)snprintf(list + used, sizeof list - used, "%s%s", i ? ", " : "", names[i]);
    return sf_err("corrupt: argument #2: unknown corruption '%s' (expected one of %s)", name ? name : "(null)", list);
  }
  if (severity < 1 || severity > 5) return sf_err("corrupt: argument #3: severity %d is outside 1..5", severity);
  if (!rng) return sf_err("corrupt: argument #4: the generator is NULL");
  sf_tensor src = SF_TENSOR_EMPTY, res = SF_TENSOR_EMPTY;
  if (sf_tensor_contiguous(&src, img)) return -1;
  if (sf_tensor_new(&res, nd, img->size)) {
    sf_tensor_release(&src);
    return -1;
  }
  int64_t n = nd == 4 ? img->size[0] : 1;
  if (sf_corrupt_images(sf_tensor_data(&res), sf_tensor_data(&src), n, (int)C, (int)H, (int)W, id, severity, rng)) {
    sf_tensor_release(&res);
    sf_tensor_release(&src);
    return -1;
  }
  sf_tensor_release(&src);
  sf_tensor_release(out);
  *out = res;
  return 0;
}
