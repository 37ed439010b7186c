/*
 * camelyon-synth: H&E lymph-node patches rendered from a stain model, five hospitals.
 *
 * The generative story (what data/README.md should repeat):
 *
 *   Tissue. A patch shows the same field of view at any size (the 96-pixel geometry is
 *   scaled by size/96, as if the real 96x96 patch were resized). Smooth random fields cut
 *   it into regions: slide background / fat (no tissue), stroma (pink fibrous eosin with
 *   a few spindle-shaped fibroblast nuclei and scattered lymphocytes), lymphoid tissue
 *   (dense small round dark lymphocytes, little cytoplasm), germinal centres (larger,
 *   paler, round nuclei among lymphocytes; in 35% of normal patches: the normal look-alike
 *   of tumour) and, in tumour patches only, tumour nests covering 15-100% of the patch:
 *   crowded large nuclei with random size (log-normal), elongation and boundary
 *   irregularity (harmonics 2, 3, 5), vesicular chromatin (pale centre, dark rim), frequent
 *   nucleoli and an eosinophilic cytoplasm halo. Normal patches draw their lymphoid share
 *   uniformly in [10%, 60%] and hold more stroma. So the label is a matter of degree
 *   (partial tumour cover, germinal-centre mimics), not a switch: a classifier is not
 *   perfect, especially at 32x32 where a lymphocyte is a dot and a tumour nucleus 4-6 px.
 *
 *   Stain. The patch is two concentration images, haematoxylin H (nuclei) and eosin E
 *   (stroma, cytoplasm); the RGB image is Beer-Lambert: I_c = I0_c * 10^-(a_H H s_H,c +
 *   a_E E s_E,c + b_c), with s_H, s_E the unit optical-density vectors of the stains.
 *
 *   Hospitals (WILDS center ids; WILDS trains on 0, 3, 4, validates OOD on 1 and tests
 *   OOD on 2). Each has its own stain vectors (near Ruifrok-Johnston's H = (0.65, 0.70,
 *   0.29), E = (0.07, 0.99, 0.11), rotated by a different protocol), stain amounts,
 *   illumination I0 (white balance, brightness), scanner blur (Gaussian PSF) and sensor
 *   noise, and a slightly different tumour prevalence. Centers 0, 3, 4 are moderate
 *   variations of one another; center 1 is further away (bluer H, paler E, cool light,
 *   blurrier); center 2 differs most (deep blue haematoxylin, pale orange-pink
 *   eosin, warm and dark illumination, the most blur and noise), as the WILDS test
 *   hospital does. On top,
 *   each slide jitters its hospital's stain (vectors, amounts, brightness) and each patch
 *   its stain amounts (section thickness).
 *
 *   What it is not: no real morphology (glands, vessels, capsule, sinus), no JPEG or
 *   tiling artefacts, no annotation noise; the patient/node/slide ids only group patches.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "synth.h"

typedef struct hospital {
  float h[3], e[3];  /* stain optical-density directions (normalised at use) */
  float h_amt, e_amt;
  float i0[3];       /* illumination: the RGB of an empty slide */
  float blur;        /* scanner PSF sigma, px at 96x96 */
  float noise;       /* sensor noise std, on [0,1] intensities */
  double prevalence; /* tumour share of the hospital's patches */
} hospital;

static const hospital HOSPITALS[SF_SYNTH_CAMELYON_CENTERS] = {
    /* 0 (train): the reference protocol */
    {{0.65f, 0.70f, 0.29f}, {0.07f, 0.99f, 0.11f}, 1.00f, 1.00f, {0.96f, 0.95f, 0.96f}, 0.7f, 0.015f, 0.50},
    /* 1 (OOD val): bluer haematoxylin, paler eosin, cool light, blurrier */
    {{0.72f, 0.66f, 0.22f}, {0.10f, 0.96f, 0.22f}, 1.05f, 0.80f, {0.91f, 0.92f, 0.97f}, 1.1f, 0.025f, 0.47},
    /* 2 (OOD test): the outlier: deep blue H, pale orange-pink E, warm dark light, soft scanner */
    {{0.80f, 0.58f, 0.16f}, {0.06f, 0.92f, 0.38f}, 1.20f, 0.70f, {0.93f, 0.88f, 0.85f}, 1.8f, 0.035f, 0.52},
    /* 3 (train): more purple H, magenta E, slightly darker */
    {{0.60f, 0.75f, 0.30f}, {0.10f, 0.95f, 0.20f}, 0.92f, 1.15f, {0.93f, 0.92f, 0.96f}, 0.9f, 0.020f, 0.45},
    /* 4 (train): strong H, light E, warm bright light, sharp */
    {{0.68f, 0.68f, 0.26f}, {0.05f, 1.00f, 0.08f}, 1.10f, 0.85f, {0.98f, 0.96f, 0.93f}, 0.5f, 0.010f, 0.55},
};

double sf_synth_camelyon_prevalence(int center) {
  return center >= 0 && center < SF_SYNTH_CAMELYON_CENTERS ? HOSPITALS[center].prevalence : -1.0;
}

/* ---- shared helpers ---- */

static float clampf(float x, float lo, float hi) { return x < lo ? lo : x > hi ? hi : x; }
static float smooth01(float t) {
  t = clampf(t, 0.0f, 1.0f);
  return t * t * (3.0f - 2.0f * t);
}
static float unif(sf_rng *r, float lo, float hi) { return lo + (hi - lo) * (float)sf_rng_uniform(r); }
static float gauss(sf_rng *r) { return (float)sf_rng_normal(r); }

void sf_synth_value_noise(float *f, int n, int cells, sf_rng *r) {
  enum { MAXC = 16 };
  float g[(MAXC + 1) * (MAXC + 1)];
  if (cells < 1) cells = 1;
  if (cells > MAXC) cells = MAXC;
  for (int i = 0; i < (cells + 1) * (cells + 1); i++) g[i] = unif(r, -1.0f, 1.0f);
  for (int y = 0; y < n; y++) {
    float v = ((float)y + 0.5f) / (float)n * (float)cells;
    int j = (int)v;
    if (j >= cells) j = cells - 1;
    float ty = smooth01(v - (float)j);
    for (int x = 0; x < n; x++) {
      float u = ((float)x + 0.5f) / (float)n * (float)cells;
      int i = (int)u;
      if (i >= cells) i = cells - 1;
      float tx = smooth01(u - (float)i);
      const float *a = g + j * (cells + 1) + i, *b = a + cells + 1;
      float top = a[0] + (a[1] - a[0]) * tx, bot = b[0] + (b[1] - b[0]) * tx;
      f[y * n + x] = top + (bot - top) * ty;
    }
  }
}

void sf_synth_blur(float *x, int planes, int n, double sigma, float *tmp) {
  enum { MAXR = 24 };
  if (!(sigma > 0.05)) return;
  int rad = (int)ceil(3.0 * sigma);
  if (rad > MAXR) rad = MAXR;
  float k[2 * MAXR + 1], sum = 0.0f;
  for (int i = -rad; i <= rad; i++) sum += k[i + rad] = (float)exp(-0.5 * (double)(i * i) / (sigma * sigma));
  for (int i = 0; i <= 2 * rad; i++) k[i] /= sum;
  for (int p = 0; p < planes; p++) {
    float *a = x + (size_t)p * (size_t)n * (size_t)n;
    for (int y = 0; y < n; y++) /* rows into tmp */
      for (int xx = 0; xx < n; xx++) {
        float s = 0.0f;
        for (int i = -rad; i <= rad; i++) {
          int q = xx + i < 0 ? 0 : xx + i >= n ? n - 1 : xx + i;
          s += k[i + rad] * a[y * n + q];
        }
        tmp[y * n + xx] = s;
      }
    for (int y = 0; y < n; y++) /* columns back into a */
      for (int xx = 0; xx < n; xx++) {
        float s = 0.0f;
        for (int i = -rad; i <= rad; i++) {
          int q = y + i < 0 ? 0 : y + i >= n ? n - 1 : y + i;
          s += k[i + rad] * tmp[q * n + xx];
        }
        a[y * n + xx] = s;
      }
  }
}

/* The threshold above which a fraction `frac` of f's n values lie (a histogram quantile). */
static float upper_quantile(const float *f, int n, float frac) {
  enum { BINS = 256 };
  int hist[BINS] = {0};
  float lo = f[0], hi = f[0];
  for (int i = 1; i < n; i++) {
    if (f[i] < lo) lo = f[i];
    if (f[i] > hi) hi = f[i];
  }
  if (!(hi > lo)) return frac >= 0.5f ? lo - 1.0f : hi + 1.0f;
  for (int i = 0; i < n; i++) {
    int b = (int)((f[i] - lo) / (hi - lo) * (float)(BINS - 1));
    hist[b]++;
  }
  int want = (int)(frac * (float)n), acc = 0;
  for (int b = BINS - 1; b >= 0; b--) {
    acc += hist[b];
    if (acc >= want) return lo + (hi - lo) * (float)b / (float)(BINS - 1);
  }
  return lo;
}

/* ---- cells ---- */

typedef enum { CELL_LYMPH, CELL_FIBRO, CELL_TUMOUR, CELL_BLAST, CELL_NONE } cell_kind;

typedef struct nucleus {
  float cx, cy;           /* centre, px */
  float r;                /* mean radius, px */
  float aspect;           /* long / short axis, >= 1 */
  float ca, sa;           /* orientation cosine and sine */
  float amp[3];            /* boundary harmonics 2, 3, 5: irregularity */
  float cph[3], sph[3];    /* cosine and sine of their phases */
  float h;                /* haematoxylin concentration */
  float rim;              /* vesicular chromatin: centre cleared by rim, edge darkened */
  float nucleolus;        /* extra H at the centre (0: none) */
  float halo;             /* eosin of the cytoplasm around it (0: none) */
  float grain;            /* chromatin texture amplitude */
} nucleus;

/* A nucleus of the given kind at (cx, cy); k = size / 96 scales the 96-pixel geometry. */
static nucleus make_nucleus(cell_kind kind, float cx, float cy, float k, sf_rng *r) {
  nucleus n;
  memset(&n, 0, sizeof n);
  n.cx = cx;
  n.cy = cy;
  float irr = 0.03f;
  switch (kind) {
    case CELL_LYMPH:
      n.r = 3.3f * expf(0.10f * gauss(r));
      n.aspect = unif(r, 1.0f, 1.2f);
      n.h = 1.45f * expf(0.10f * gauss(r));
      n.grain = 0.08f;
      break;
    case CELL_FIBRO:
      n.r = 3.2f * expf(0.12f * gauss(r));
      n.aspect = unif(r, 2.5f, 4.0f);
      n.h = 1.05f * expf(0.15f * gauss(r));
      n.grain = 0.08f;
      break;
    case CELL_TUMOUR: /* pleomorphic: size, shape and staining all vary */
      n.r = 6.6f * expf(0.22f * gauss(r));
      n.aspect = 1.0f + 0.35f * fabsf(gauss(r));
      irr = unif(r, 0.05f, 0.17f);
      n.h = 0.85f * expf(0.25f * gauss(r));
      n.rim = unif(r, 0.2f, 0.5f);
      n.nucleolus = sf_rng_uniform(r) < 0.55 ? 0.7f : 0.0f;
      n.halo = 0.55f;
      n.grain = 0.22f;
      break;
    case CELL_BLAST: /* germinal-centre cells: large-ish and pale but regular */
      n.r = 4.9f * expf(0.12f * gauss(r));
      n.aspect = unif(r, 1.0f, 1.3f);
      n.h = 0.85f * expf(0.12f * gauss(r));
      n.rim = 0.3f;
      n.nucleolus = sf_rng_uniform(r) < 0.3 ? 0.4f : 0.0f;
      n.halo = 0.3f;
      n.grain = 0.12f;
      break;
    case CELL_NONE: break;
  }
  n.r *= k;
  float a = unif(r, 0.0f, 3.14159265f);
  n.ca = cosf(a);
  n.sa = sinf(a);
  for (int m = 0; m < 3; m++) {
    n.amp[m] = irr * unif(r, 0.3f, 1.0f);
    float ph = unif(r, 0.0f, 6.2831853f);
    n.cph[m] = cosf(ph);
    n.sph[m] = sinf(ph);
  }
  return n;
}

/* H = max(H, nucleus), E = max(E, cytoplasm halo); grain is per-pixel noise in about [-1, 1]. */
static void draw_nucleus(float *H, float *E, const float *grain, int S, const nucleus *n) {
  float sq = sqrtf(n->aspect), ax = n->r * sq, by = n->r / sq;
  float bmax = 1.0f + n->amp[0] + n->amp[1] + n->amp[2];
  float reach = ax * bmax * (n->halo > 0.0f ? 1.8f : 1.0f) + 1.5f;
  /* beyond this normalised radius neither the nucleus edge nor the halo reaches */
  float rho_max = bmax * fmaxf(1.0f + 0.5f / n->r, n->halo > 0.0f ? 1.75f : 0.0f);
  int x0 = (int)floorf(n->cx - reach), x1 = (int)ceilf(n->cx + reach);
  int y0 = (int)floorf(n->cy - reach), y1 = (int)ceilf(n->cy + reach);
  if (x0 < 0) x0 = 0;
  if (y0 < 0) y0 = 0;
  if (x1 > S - 1) x1 = S - 1;
  if (y1 > S - 1) y1 = S - 1;
  for (int y = y0; y <= y1; y++)
    for (int x = x0; x <= x1; x++) {
      float dx = (float)x + 0.5f - n->cx, dy = (float)y + 0.5f - n->cy;
      float u = (dx * n->ca + dy * n->sa) / ax, v = (-dx * n->sa + dy * n->ca) / by;
      float rho = sqrtf(u * u + v * v);
      if (rho >= rho_max) continue;
      /* cos(m th + phase) for m = 2, 3, 5 from powers of e^(i th): no atan2, no cos */
      float c1 = rho > 1e-6f ? u / rho : 1.0f, s1 = rho > 1e-6f ? v / rho : 0.0f;
      float c2 = c1 * c1 - s1 * s1, s2 = 2.0f * c1 * s1;
      float c3 = c2 * c1 - s2 * s1, s3 = s2 * c1 + c2 * s1;
      float c5 = c3 * c2 - s3 * s2, s5 = s3 * c2 + c3 * s2;
      float bnd = 1.0f + n->amp[0] * (c2 * n->cph[0] - s2 * n->sph[0]) + n->amp[1] * (c3 * n->cph[1] - s3 * n->sph[1]) +
                  n->amp[2] * (c5 * n->cph[2] - s5 * n->sph[2]);
      float t = rho / bnd; /* 0 at the centre, 1 on the boundary */
      int p = y * S + x;
      float cover = clampf(0.5f - (t - 1.0f) * n->r, 0.0f, 1.0f); /* about one pixel of edge */
      if (cover > 0.0f) {
        float c = n->h * (1.0f - n->rim + 1.3f * n->rim * t * t);
        if (n->nucleolus > 0.0f) c += n->nucleolus * clampf(1.0f - t / 0.3f, 0.0f, 1.0f);
        c *= 1.0f + n->grain * grain[p];
        c *= cover;
        if (c > H[p]) H[p] = c;
      }
      if (n->halo > 0.0f) {
        float hal = n->halo * clampf((1.75f - t) / 0.35f, 0.0f, 1.0f);
        if (hal > E[p]) E[p] = hal;
      }
    }
}

/* ---- regions ---- */

enum { R_WHITE, R_STROMA, R_LYMPH, R_GERM, R_TUMOUR, R_COUNT };
/* cells per region (per full 96x96 field of view): {kind, density} pairs */
typedef struct { cell_kind kind; float dens; } cell_share;
static const cell_share REGION_CELLS[R_COUNT][2] = {
    [R_WHITE] = {{CELL_NONE, 0.0f}, {CELL_NONE, 0.0f}},
    [R_STROMA] = {{CELL_FIBRO, 16.0f}, {CELL_LYMPH, 10.0f}},
    [R_LYMPH] = {{CELL_LYMPH, 105.0f}, {CELL_BLAST, 3.0f}},
    [R_GERM] = {{CELL_BLAST, 48.0f}, {CELL_LYMPH, 35.0f}},
    [R_TUMOUR] = {{CELL_TUMOUR, 40.0f}, {CELL_LYMPH, 8.0f}},
};
static const float REGION_EOSIN[R_COUNT] = {0.02f, 0.34f, 0.16f, 0.20f, 0.26f};
#define MAX_DENS 110.0f

int sf_synth_camelyon_patch(sf_tensor *out, int size, int center, int tumor, uint64_t slide_key, sf_rng *r) {
  if (size < SF_SYNTH_MIN_SIZE || size > SF_SYNTH_MAX_SIZE)
    return sf_err("camelyon_patch: argument #1 (size) is %d, expected %d..%d", size, SF_SYNTH_MIN_SIZE, SF_SYNTH_MAX_SIZE);
  if (center < 0 || center >= SF_SYNTH_CAMELYON_CENTERS)
    return sf_err("camelyon_patch: argument #2 (center) is %d, expected 0..%d", center, SF_SYNTH_CAMELYON_CENTERS - 1);
  if (tumor != 0 && tumor != 1) return sf_err("camelyon_patch: argument #3 (tumor) is %d, expected 0 or 1", tumor);
  const int S = size, N = S * S;
  /* scratch: H, E, grain, fields a b c d, region weights (5), tmp */
  float *buf = malloc(sizeof(float) * (size_t)N * (8 + R_COUNT));
  if (!buf) return sf_err("camelyon_patch: out of memory for a %dx%d patch", S, S);
  float *H = buf, *E = H + N, *grain = E + N, *fa = grain + N, *fb = fa + N, *fc = fb + N, *fd = fc + N;
  float *w = fd + N, *tmp = w + (size_t)R_COUNT * N; /* w[region * N + p] */
  const float k = (float)S / 96.0f;

  /* the slide's stain: the hospital's, jittered by the slide's own generator */
  const hospital *hp = &HOSPITALS[center];
  sf_rng sr;
  sf_rng_seed(&sr, slide_key);
  float sh[3], se[3], i0[3], nh = 0.0f, ne = 0.0f;
  for (int c = 0; c < 3; c++) {
    sh[c] = fmaxf(0.01f, hp->h[c] + 0.03f * gauss(&sr));
    se[c] = fmaxf(0.01f, hp->e[c] + 0.03f * gauss(&sr));
    nh += sh[c] * sh[c];
    ne += se[c] * se[c];
  }
  float thick = expf(0.06f * gauss(&sr));
  float ah = hp->h_amt * thick * expf(0.07f * gauss(&sr)), ae = hp->e_amt * thick * expf(0.07f * gauss(&sr));
  float bright = 1.0f + 0.012f * gauss(&sr);
  for (int c = 0; c < 3; c++) {
    sh[c] /= sqrtf(nh);
    se[c] /= sqrtf(ne);
    i0[c] = clampf(hp->i0[c] * bright * (1.0f + 0.008f * gauss(&sr)), 0.0f, 1.0f);
  }
  /* the patch: section thickness varies a little */
  float pt = expf(0.05f * gauss(r));
  ah *= pt;
  ae *= pt;

  /* regions from smooth fields: white space, tumour nest, germinal centre, lymphoid vs stroma */
  sf_synth_value_noise(fa, S, 3, r);
  sf_synth_value_noise(fb, S, 4, r);
  sf_synth_value_noise(fc, S, 3, r);
  sf_synth_value_noise(fd, S, 6, r);
  float soft = 0.12f;
  int has_white = sf_rng_uniform(r) < (tumor ? 0.25 : 0.35);
  float t_white = upper_quantile(fb, N, has_white ? unif(r, 0.05f, 0.35f) : 0.0f);
  float t_tum = upper_quantile(fa, N, tumor ? unif(r, 0.15f, 1.0f) : 0.0f);
  float t_lym = upper_quantile(fc, N, tumor ? unif(r, 0.1f, 0.7f) : unif(r, 0.1f, 0.6f));
  int has_germ = !tumor && sf_rng_uniform(r) < 0.35;
  float gx = unif(r, 0.2f, 0.8f) * (float)S, gy = unif(r, 0.2f, 0.8f) * (float)S, grad = unif(r, 0.22f, 0.42f) * (float)S;
  for (int p = 0; p < N; p++) {
    float wh = has_white ? smooth01((fb[p] - t_white) / soft + 0.5f) : 0.0f;
    float tu = tumor ? smooth01((fa[p] - t_tum) / soft + 0.5f) : 0.0f;
    float ge = 0.0f;
    if (has_germ) {
      float dx = ((float)(p % S) + 0.5f - gx) / grad, dy = ((float)(p / S) + 0.5f - gy) / grad;
      ge = smooth01((1.0f - sqrtf(dx * dx + dy * dy) + 0.25f * fd[p]) / 0.2f + 0.5f);
    }
    float ly = smooth01((fc[p] - t_lym) / soft + 0.5f);
    float rest = 1.0f - wh;
    w[R_WHITE * N + p] = wh;
    w[R_TUMOUR * N + p] = rest * tu;
    rest *= 1.0f - tu;
    w[R_GERM * N + p] = rest * ge;
    rest *= 1.0f - ge;
    w[R_LYMPH * N + p] = rest * ly;
    w[R_STROMA * N + p] = rest * (1.0f - ly);
  }

  /* background eosin: fibrous in stroma, little in cellular regions */
  float ang = unif(r, 0.0f, 3.14159265f), lam = unif(r, 5.0f, 9.0f) * k, ca = cosf(ang), sa = sinf(ang);
  for (int p = 0; p < N; p++) {
    float x = (float)(p % S), y = (float)(p / S);
    float fib = 0.5f + 0.5f * sinf(6.2831853f * (x * ca + y * sa) / lam + 7.0f * fd[p]); /* wavy fibres */
    float e = 0.0f;
    for (int q = 0; q < R_COUNT; q++) {
      float base = REGION_EOSIN[q];
      if (q == R_STROMA) base *= 0.8f + 0.35f * fib;
      e += w[q * N + p] * base;
    }
    E[p] = e;
    H[p] = 0.04f * (1.0f - w[R_WHITE * N + p]);
    grain[p] = unif(r, -1.0f, 1.0f);
  }

  /* nuclei: candidates uniform over the field, kept by their region's cell densities */
  int cand = (int)MAX_DENS;
  for (int i = 0; i < cand; i++) {
    float cx = unif(r, 0.0f, (float)S), cy = unif(r, 0.0f, (float)S);
    int p = (int)cy * S + (int)cx;
    if (p >= N) p = N - 1;
    float u = (float)sf_rng_uniform(r), acc = 0.0f;
    int reg = R_STROMA;
    for (int q = 0; q < R_COUNT; q++) {
      acc += w[q * N + p];
      if (u < acc) {
        reg = q;
        break;
      }
    }
    float v = unif(r, 0.0f, MAX_DENS);
    cell_kind kind = CELL_NONE;
    if (v < REGION_CELLS[reg][0].dens)
      kind = REGION_CELLS[reg][0].kind;
    else if (v < REGION_CELLS[reg][0].dens + REGION_CELLS[reg][1].dens)
      kind = REGION_CELLS[reg][1].kind;
    if (kind == CELL_NONE) continue;
    nucleus n = make_nucleus(kind, cx, cy, k, r);
    draw_nucleus(H, E, grain, S, &n);
  }

  /* Beer-Lambert into the output, then the scanner: blur and noise */
  int64_t shape[3] = {3, S, S};
  if (sf_tensor_new(out, 3, shape)) {
    free(buf);
    return -1;
  }
  float *o = sf_tensor_data(out);
  static const float bg_od[3] = {0.02f, 0.03f, 0.02f};
  const float ln10 = 2.30258509f;
  for (int c = 0; c < 3; c++)
    for (int p = 0; p < N; p++) {
      float od = ah * H[p] * sh[c] + ae * E[p] * se[c] + bg_od[c];
      o[c * N + p] = i0[c] * expf(-ln10 * od);
    }
  sf_synth_blur(o, 3, S, (double)(hp->blur * (0.5f + 0.5f * k)), tmp);
  for (int i = 0; i < 3 * N; i++) o[i] = clampf(o[i] + hp->noise * gauss(r), 0.0f, 1.0f);
  free(buf);
  return 0;
}
