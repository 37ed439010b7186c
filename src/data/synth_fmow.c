/*
 * fmow-synth: satellite-like RGB tiles of ten land-use classes, six regions, 2002-2017.
 *
 * The generative story (what data/README.md should repeat):
 *
 *   Classes (real FMoW category names, 10 of its 62): airport (runways with centre-line
 *   dashes, taxiways, sometimes a terminal and aircraft), crop_field (rotated parcels with
 *   sowing stripes and tracks), factory_or_powerplant (a few large roofs on paved ground,
 *   sometimes a stack or tanks), interchange (two crossing highways with cloverleaf
 *   ramps), lake_or_pond (a noisy water body with a sandy shore), park (lawn, tree crowns,
 *   paths, sometimes a pond or a sports pitch: FMoW has no forest class, park stands in
 *   for textured vegetation), parking_lot_or_garage (asphalt with rows of cars),
 *   port (a shore line, piers, container stacks, ships), single-unit_residential (a street
 *   grid lined with small roofs, yards and trees), storage_tank (clusters of round tanks).
 *   Everything is drawn at a random orientation and position; classes share parts on
 *   purpose (tanks at factories, ponds in parks, water at ports and lakes, small
 *   rectangles in parking lots and suburbs), so at 32x32 the task is far from solved.
 *
 *   Regions (the WILDS names: Asia, Europe, Africa, Americas, Oceania, Other) change the
 *   style of objects: soil colour (red laterite in Africa, sand in Oceania), vegetation
 *   tone and cover, water turbidity, roof palettes (terracotta in Europe, blue and teal
 *   metal in Asia, tin and thatch in Africa, grey shingle and white in the Americas),
 *   crop colours, building density (dense in Asia, sprawl in the Americas and Oceania) and
 *   how many roads are paved; and the class priors (e.g. more crop fields and houses and
 *   fewer airports, interchanges and parking lots in Africa).
 *
 *   Years change the world and the camera: towns densify (more houses, cars and
 *   buildings, less vegetation, more paved roads; +~60% objects from 2002 to 2017), and
 *   the imaging sensor drifts in four eras (2002-05, 2006-10, 2011-14, 2015-17) from hazy,
 *   blue-tinted, soft and low-contrast to sharp, saturated and warm; the share of Africa
 *   and Asia among the images grows over time and urban classes become more frequent. So
 *   the WILDS OOD split by time (train < 2013, val 2013-15, test >= 2016) moves the
 *   sensor, the content density and the region and label mix at once.
 *
 *   Per image: colour jitter of every material, sun brightness, shadows from one sun
 *   direction, a cloud haze in about 10% of the images, sensor noise.
 *
 *   What it is not: no multispectral bands, no geographic realism, no off-nadir views,
 *   no sequence ('seq') images; 10 classes instead of 62.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "synth.h"

enum {
  C_AIRPORT, C_CROP, C_FACTORY, C_INTERCHANGE, C_LAKE, C_PARK, C_PARKING, C_PORT, C_RESIDENTIAL, C_TANK,
};
static const char *const CLASSES[SF_SYNTH_FMOW_CLASSES + 1] = {
    "airport", "crop_field", "factory_or_powerplant", "interchange", "lake_or_pond", "park",
    "parking_lot_or_garage", "port", "single-unit_residential", "storage_tank", NULL,
};
enum { R_ASIA, R_EUROPE, R_AFRICA, R_AMERICAS, R_OCEANIA, R_OTHER };
static const char *const REGIONS[SF_SYNTH_FMOW_REGIONS + 1] = {"Asia", "Europe", "Africa", "Americas", "Oceania", "Other",
                                                                NULL};

const char *const *sf_synth_fmow_classes(void) { return CLASSES; }
const char *const *sf_synth_fmow_regions(void) { return REGIONS; }

typedef struct style {
  float soil[3], veg[3], water[3], road[3];
  float roofs[4][3];
  float crops[3][3];
  float density;   /* building and car density factor */
  float veg_cover; /* share of open ground under vegetation */
  float paved;     /* probability that roads are asphalt (else dirt) */
} style;

static const style STYLES[SF_SYNTH_FMOW_REGIONS] = {
    [R_ASIA] = {{0.55f, 0.50f, 0.42f}, {0.30f, 0.42f, 0.25f}, {0.22f, 0.32f, 0.30f}, {0.45f, 0.45f, 0.45f},
                {{0.30f, 0.45f, 0.65f}, {0.60f, 0.60f, 0.62f}, {0.35f, 0.60f, 0.58f}, {0.55f, 0.30f, 0.25f}},
                {{0.35f, 0.55f, 0.25f}, {0.30f, 0.45f, 0.40f}, {0.70f, 0.65f, 0.35f}}, 1.3f, 0.35f, 0.80f},
    [R_EUROPE] = {{0.50f, 0.45f, 0.38f}, {0.28f, 0.45f, 0.22f}, {0.15f, 0.25f, 0.35f}, {0.40f, 0.40f, 0.42f},
                  {{0.70f, 0.35f, 0.25f}, {0.35f, 0.35f, 0.38f}, {0.60f, 0.25f, 0.22f}, {0.50f, 0.38f, 0.30f}},
                  {{0.40f, 0.60f, 0.25f}, {0.80f, 0.72f, 0.40f}, {0.55f, 0.42f, 0.30f}}, 1.0f, 0.50f, 0.95f},
    [R_AFRICA] = {{0.72f, 0.52f, 0.35f}, {0.40f, 0.45f, 0.25f}, {0.35f, 0.38f, 0.32f}, {0.62f, 0.48f, 0.35f},
                  {{0.70f, 0.72f, 0.75f}, {0.55f, 0.35f, 0.25f}, {0.62f, 0.55f, 0.40f}, {0.35f, 0.45f, 0.60f}},
                  {{0.70f, 0.58f, 0.38f}, {0.48f, 0.52f, 0.30f}, {0.55f, 0.40f, 0.28f}}, 1.1f, 0.30f, 0.35f},
    [R_AMERICAS] = {{0.58f, 0.54f, 0.45f}, {0.30f, 0.42f, 0.25f}, {0.15f, 0.25f, 0.33f}, {0.32f, 0.32f, 0.34f},
                    {{0.45f, 0.45f, 0.47f}, {0.45f, 0.35f, 0.28f}, {0.80f, 0.80f, 0.80f}, {0.25f, 0.25f, 0.27f}},
                    {{0.35f, 0.55f, 0.25f}, {0.72f, 0.65f, 0.45f}, {0.40f, 0.33f, 0.25f}}, 0.8f, 0.45f, 0.90f},
    [R_OCEANIA] = {{0.75f, 0.60f, 0.45f}, {0.40f, 0.48f, 0.28f}, {0.10f, 0.35f, 0.45f}, {0.38f, 0.38f, 0.40f},
                   {{0.85f, 0.85f, 0.85f}, {0.68f, 0.40f, 0.30f}, {0.45f, 0.52f, 0.48f}, {0.40f, 0.50f, 0.62f}},
                   {{0.55f, 0.55f, 0.30f}, {0.80f, 0.68f, 0.40f}, {0.40f, 0.55f, 0.28f}}, 0.7f, 0.40f, 0.80f},
    [R_OTHER] = {{0.60f, 0.55f, 0.48f}, {0.33f, 0.45f, 0.28f}, {0.18f, 0.30f, 0.36f}, {0.42f, 0.42f, 0.44f},
                 {{0.60f, 0.35f, 0.28f}, {0.55f, 0.55f, 0.58f}, {0.80f, 0.80f, 0.80f}, {0.35f, 0.45f, 0.60f}},
                 {{0.42f, 0.58f, 0.28f}, {0.75f, 0.68f, 0.42f}, {0.50f, 0.40f, 0.30f}}, 1.0f, 0.40f, 0.70f},
};

/* relative class weights per region, in CLASSES order */
static const double CLASS_W[SF_SYNTH_FMOW_REGIONS][SF_SYNTH_FMOW_CLASSES] = {
    [R_ASIA] = {0.9, 1.4, 1.3, 1.0, 0.8, 0.8, 0.9, 1.1, 1.2, 1.0},
    [R_EUROPE] = {0.9, 1.2, 1.0, 1.0, 0.9, 1.3, 1.0, 0.9, 1.4, 0.8},
    [R_AFRICA] = {0.5, 1.9, 0.6, 0.4, 1.0, 0.7, 0.5, 0.6, 1.7, 0.8},
    [R_AMERICAS] = {1.0, 1.2, 1.0, 1.3, 0.8, 1.0, 1.4, 0.7, 1.5, 0.9},
    [R_OCEANIA] = {1.0, 1.0, 0.7, 0.7, 1.2, 1.3, 0.9, 1.2, 1.2, 0.7},
    [R_OTHER] = {1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0},
};
/* classes whose share grows with time (urbanisation): weight * (1 + 0.5 g), g in [0,1] */
static const double CLASS_GROWTH[SF_SYNTH_FMOW_CLASSES] = {0, 0, 0.5, 0.5, 0, 0, 0.5, 0, 0.5, 0};

/* region shares of a year's images: early, late (2017); interpolated linearly in between */
static const double REGION_EARLY[SF_SYNTH_FMOW_REGIONS] = {0.24, 0.31, 0.05, 0.34, 0.04, 0.02};
static const double REGION_LATE[SF_SYNTH_FMOW_REGIONS] = {0.32, 0.18, 0.19, 0.24, 0.05, 0.02};

typedef struct sensor {
  int from;        /* first year of the era */
  float gain[3];   /* white balance */
  float haze[3];   /* additive path radiance */
  float contrast;  /* around the image mean */
  float sat;       /* saturation: 1 = unchanged */
  float blur;      /* PSF sigma, px at 64x64 */
  float noise;
} sensor;
static const sensor SENSORS[] = {
    {2002, {0.92f, 0.97f, 1.06f}, {0.10f, 0.11f, 0.14f}, 0.80f, 0.85f, 0.9f, 0.025f},
    {2006, {1.00f, 1.00f, 1.02f}, {0.06f, 0.07f, 0.09f}, 0.90f, 0.95f, 0.6f, 0.020f},
    {2011, {1.03f, 1.00f, 0.97f}, {0.03f, 0.03f, 0.04f}, 1.00f, 1.05f, 0.4f, 0.015f},
    {2015, {1.06f, 1.01f, 0.92f}, {0.01f, 0.01f, 0.02f}, 1.12f, 1.20f, 0.2f, 0.010f},
};

static double growth(int year) {
  return (double)(year - SF_SYNTH_FMOW_FIRST_YEAR) / (double)(SF_SYNTH_FMOW_LAST_YEAR - SF_SYNTH_FMOW_FIRST_YEAR);
}

static int check_year(const char *fn, int arg, int year) {
  if (year < SF_SYNTH_FMOW_FIRST_YEAR || year > SF_SYNTH_FMOW_LAST_YEAR)
    return sf_err("%s: argument #%d (year) is %d, expected %d..%d", fn, arg, year, SF_SYNTH_FMOW_FIRST_YEAR,
                  SF_SYNTH_FMOW_LAST_YEAR);
  return 0;
}

int sf_synth_fmow_class_prior(double *p, int region, int year) {
  if (region < 0 || region >= SF_SYNTH_FMOW_REGIONS)
    return sf_err("fmow_class_prior: argument #1 (region) is %d, expected 0..%d", region, SF_SYNTH_FMOW_REGIONS - 1);
  if (check_year("fmow_class_prior", 2, year)) return -1;
  double g = growth(year), s = 0.0;
  for (int c = 0; c < SF_SYNTH_FMOW_CLASSES; c++) s += p[c] = CLASS_W[region][c] * (1.0 + CLASS_GROWTH[c] * g);
  for (int c = 0; c < SF_SYNTH_FMOW_CLASSES; c++) p[c] /= s;
  return 0;
}

int sf_synth_fmow_region_prior(double *q, int year) {
  if (check_year("fmow_region_prior", 1, year)) return -1;
  double g = growth(year), s = 0.0;
  for (int i = 0; i < SF_SYNTH_FMOW_REGIONS; i++) s += q[i] = (1.0 - g) * REGION_EARLY[i] + g * REGION_LATE[i];
  for (int i = 0; i < SF_SYNTH_FMOW_REGIONS; i++) q[i] /= s;
  return 0;
}

/* ---- drawing on an RGB canvas of S*S pixels, planes c[0..2] ---- */

typedef struct canvas {
  float *c; /* [3,S,S] */
  int S;
  float sun_dx, sun_dy; /* shadow offset, px */
} canvas;

static float clampf(float x, float lo, float hi) { return x < lo ? lo : x > hi ? hi : x; }
static float unif(sf_rng *r, float lo, float hi) { return lo + (hi - lo) * (float)sf_rng_uniform(r); }
static float gauss(sf_rng *r) { return (float)sf_rng_normal(r); }
static int chance(sf_rng *r, double p) { return sf_rng_uniform(r) < p; }

static void blend(canvas *cv, int p, const float rgb[3], float a) {
  int N = cv->S * cv->S;
  for (int c = 0; c < 3; c++) cv->c[c * N + p] += a * (rgb[c] - cv->c[c * N + p]);
}

static void bbox(const canvas *cv, float cx, float cy, float reach, int *x0, int *x1, int *y0, int *y1) {
  *x0 = (int)floorf(cx - reach);
  *x1 = (int)ceilf(cx + reach);
  *y0 = (int)floorf(cy - reach);
  *y1 = (int)ceilf(cy + reach);
  if (*x0 < 0) *x0 = 0;
  if (*y0 < 0) *y0 = 0;
  if (*x1 > cv->S - 1) *x1 = cv->S - 1;
  if (*y1 > cv->S - 1) *y1 = cv->S - 1;
}

/* a w x h rectangle centred at (cx, cy), long side along angle ang (radians) */
static void rect(canvas *cv, float cx, float cy, float w, float h, float ang, const float rgb[3], float alpha) {
  float ca = cosf(ang), sa = sinf(ang);
  int x0, x1, y0, y1;
  bbox(cv, cx, cy, 0.5f * sqrtf(w * w + h * h) + 1.0f, &x0, &x1, &y0, &y1);
  for (int y = y0; y <= y1; y++)
    for (int x = x0; x <= x1; x++) {
      float dx = (float)x + 0.5f - cx, dy = (float)y + 0.5f - cy;
      float u = dx * ca + dy * sa, v = -dx * sa + dy * ca;
      float d = fminf(0.5f * w - fabsf(u), 0.5f * h - fabsf(v));
      float cover = clampf(d + 0.5f, 0.0f, 1.0f);
      if (cover > 0.0f) blend(cv, y * cv->S + x, rgb, alpha * cover);
    }
}

static const float SHADOW[3] = {0.08f, 0.08f, 0.10f};

/* a raised box: its shadow, then its roof */
static void building(canvas *cv, float cx, float cy, float w, float h, float ang, const float rgb[3]) {
  rect(cv, cx + cv->sun_dx, cy + cv->sun_dy, w, h, ang, SHADOW, 0.55f);
  rect(cv, cx, cy, w, h, ang, rgb, 1.0f);
}

/* ring of radius rad and width wd (wd >= 2 rad gives a disc) */
static void ring(canvas *cv, float cx, float cy, float rad, float wd, const float rgb[3], float alpha) {
  int x0, x1, y0, y1;
  bbox(cv, cx, cy, rad + 0.5f * wd + 1.0f, &x0, &x1, &y0, &y1);
  for (int y = y0; y <= y1; y++)
    for (int x = x0; x <= x1; x++) {
      float dx = (float)x + 0.5f - cx, dy = (float)y + 0.5f - cy;
      float d = sqrtf(dx * dx + dy * dy);
      float cover = clampf(0.5f * wd - fabsf(d - rad) + 0.5f, 0.0f, 1.0f);
      if (cover > 0.0f) blend(cv, y * cv->S + x, rgb, alpha * cover);
    }
}
static void disc(canvas *cv, float cx, float cy, float rad, const float rgb[3], float alpha) {
  ring(cv, cx, cy, 0.5f * rad, rad, rgb, alpha);
}

/* a thick segment with round caps */
static void seg(canvas *cv, float ax, float ay, float bx, float by, float wd, const float rgb[3], float alpha) {
  int S = cv->S;
  float ex = bx - ax, ey = by - ay, l2 = ex * ex + ey * ey;
  int x0 = (int)floorf(fminf(ax, bx) - wd - 1.0f), x1 = (int)ceilf(fmaxf(ax, bx) + wd + 1.0f);
  int y0 = (int)floorf(fminf(ay, by) - wd - 1.0f), y1 = (int)ceilf(fmaxf(ay, by) + wd + 1.0f);
  if (x0 < 0) x0 = 0;
  if (y0 < 0) y0 = 0;
  if (x1 > S - 1) x1 = S - 1;
  if (y1 > S - 1) y1 = S - 1;
  for (int y = y0; y <= y1; y++)
    for (int x = x0; x <= x1; x++) {
      float px = (float)x + 0.5f - ax, py = (float)y + 0.5f - ay;
      float t = l2 > 0.0f ? clampf((px * ex + py * ey) / l2, 0.0f, 1.0f) : 0.0f;
      float qx = px - t * ex, qy = py - t * ey;
      float cover = clampf(0.5f * wd - sqrtf(qx * qx + qy * qy) + 0.5f, 0.0f, 1.0f);
      if (cover > 0.0f) blend(cv, y * S + x, rgb, alpha * cover);
    }
}

/* a line through (cx, cy) at angle ang crossing the whole tile */
static void long_line(canvas *cv, float cx, float cy, float ang, float wd, const float rgb[3], float alpha) {
  float L = 1.5f * (float)cv->S;
  seg(cv, cx - L * cosf(ang), cy - L * sinf(ang), cx + L * cosf(ang), cy + L * sinf(ang), wd, rgb, alpha);
}

/* a colour jittered per image */
static void jitter(float out[3], const float in[3], float amt, sf_rng *r) {
  float b = amt * gauss(r);
  for (int c = 0; c < 3; c++) out[c] = clampf(in[c] + b + 0.5f * amt * gauss(r), 0.0f, 1.0f);
}

/* ---- the scene ---- */

typedef struct scene {
  canvas cv;
  const style *st;
  float soil[3], veg[3], water[3], road[3];
  float g;      /* growth: 0 in 2002, 1 in 2017 */
  float dens;   /* objects multiplier: region density and growth */
  float vegc;   /* vegetation cover: the region's, shrinking with growth */
  float *noise; /* S*S scratch */
  float *noise2;
  sf_rng *r;
} scene;

/* open ground: soil and vegetation patches, textured */
static void ground(scene *sc, float veg_cover) {
  int S = sc->cv.S, N = S * S;
  sf_synth_value_noise(sc->noise, S, 4, sc->r);
  sf_synth_value_noise(sc->noise2, S, 9, sc->r);
  float thr = 1.0f - 2.0f * clampf(veg_cover, 0.0f, 1.0f);
  for (int p = 0; p < N; p++) {
    float v = clampf((sc->noise[p] - thr) * 3.0f + 0.5f, 0.0f, 1.0f);
    float tex = 1.0f + 0.10f * sc->noise2[p] + 0.04f * unif(sc->r, -1.0f, 1.0f);
    for (int c = 0; c < 3; c++) sc->cv.c[c * N + p] = ((1.0f - v) * sc->soil[c] + v * sc->veg[c]) * tex;
  }
}

static void pave(scene *sc, float amount) {
  int N = sc->cv.S * sc->cv.S;
  for (int p = 0; p < N; p++) blend(&sc->cv, p, sc->road, amount * (0.8f + 0.2f * sc->noise2[p]));
}

static void trees(scene *sc, int n, float rmin, float rmax) {
  float S = (float)sc->cv.S, dark[3];
  for (int i = 0; i < n; i++) {
    for (int c = 0; c < 3; c++) dark[c] = sc->veg[c] * unif(sc->r, 0.55f, 0.8f);
    float x = unif(sc->r, 0.0f, S), y = unif(sc->r, 0.0f, S), rad = unif(sc->r, rmin, rmax) * S;
    disc(&sc->cv, x + 0.6f * sc->cv.sun_dx, y + 0.6f * sc->cv.sun_dy, rad, SHADOW, 0.4f);
    disc(&sc->cv, x, y, rad, dark, 0.95f);
  }
}

static const float WHITE[3] = {0.88f, 0.88f, 0.86f};
static const float CAR_COLOURS[6][3] = {{0.85f, 0.85f, 0.85f}, {0.12f, 0.12f, 0.13f}, {0.60f, 0.62f, 0.64f},
                                        {0.65f, 0.12f, 0.10f}, {0.15f, 0.25f, 0.55f}, {0.45f, 0.45f, 0.42f}};

static void draw_airport(scene *sc) {
  canvas *cv = &sc->cv;
  float S = (float)cv->S, ang = unif(sc->r, 0.0f, 3.14159265f);
  ground(sc, 0.6f);
  float cx = S * unif(sc->r, 0.3f, 0.7f), cy = S * unif(sc->r, 0.3f, 0.7f);
  float strip[3];
  jitter(strip, chance(sc->r, 0.6) ? (const float[3]){0.62f, 0.62f, 0.60f} : (const float[3]){0.32f, 0.32f, 0.33f},
         0.04f, sc->r);
  float wd = S * unif(sc->r, 0.11f, 0.16f), nx = -sinf(ang), ny = cosf(ang);
  float off = S * unif(sc->r, 0.18f, 0.26f) * (chance(sc->r, 0.5) ? 1.0f : -1.0f);
  long_line(cv, cx + off * nx, cy + off * ny, ang, 0.35f * wd, strip, 1.0f); /* taxiway */
  long_line(cv, cx, cy, ang, wd, strip, 1.0f);
  for (float t = -1.5f * S; t < 1.5f * S; t += 0.14f * S) /* centre-line dashes */
    rect(cv, cx + t * cosf(ang), cy + t * sinf(ang), 0.06f * S, 0.02f * S, ang, WHITE, 0.9f);
  if (chance(sc->r, 0.4)) {
    float a2 = ang + unif(sc->r, 0.6f, 1.2f);
    long_line(cv, cx, cy, a2, 0.8f * wd, strip, 1.0f);
  }
  if (chance(sc->r, 0.4)) {
    float d = -off * 1.8f;
    building(cv, cx + d * nx, cy + d * ny, S * 0.5f, S * 0.14f, ang, WHITE);
  }
  int planes = chance(sc->r, 0.5) ? 1 + (int)sf_rng_int(sc->r, 0, 2) : 0;
  for (int i = 0; i < planes; i++) {
    float t = unif(sc->r, -0.4f, 0.4f) * S, px = cx + off * nx + t * cosf(ang), py = cy + off * ny + t * sinf(ang);
    rect(cv, px, py, 0.14f * S, 0.03f * S, ang, WHITE, 1.0f);
    rect(cv, px, py, 0.03f * S, 0.14f * S, ang, WHITE, 1.0f);
  }
}

static void draw_crops(scene *sc) {
  canvas *cv = &sc->cv;
  int S = cv->S, N = S * S;
  float ang = unif(sc->r, 0.0f, 3.14159265f), ca = cosf(ang), sa = sinf(ang);
  float cw = unif(sc->r, 0.3f, 0.6f) * (float)S, ch = unif(sc->r, 0.3f, 0.6f) * (float)S;
  float col[8][8][3], lam[8][8], phase[8][8];
  for (int i = 0; i < 8; i++)
    for (int j = 0; j < 8; j++) {
      const float *base = sc->st->crops[sf_rng_int(sc->r, 0, 2)];
      if (chance(sc->r, 0.15)) base = sc->soil; /* fallow */
      jitter(col[i][j], base, 0.05f, sc->r);
      lam[i][j] = unif(sc->r, 0.04f, 0.09f) * (float)S;
      phase[i][j] = unif(sc->r, 0.0f, 6.2831853f);
    }
  ground(sc, sc->vegc);
  float ox = unif(sc->r, 0.0f, cw), oy = unif(sc->r, 0.0f, ch), track[3];
  for (int c = 0; c < 3; c++) track[c] = 0.5f * (sc->soil[c] + sc->road[c]);
  for (int p = 0; p < N; p++) {
    float dx = (float)(p % S) + 0.5f - 0.5f * (float)S, dy = (float)(p / S) + 0.5f - 0.5f * (float)S;
    float u = dx * ca + dy * sa + 2.0f * (float)S + ox, v = -dx * sa + dy * ca + 2.0f * (float)S + oy;
    int i = (int)(u / cw) & 7, j = (int)(v / ch) & 7;
    float stripe = 1.0f + 0.12f * sinf(6.2831853f * v / lam[i][j] + phase[i][j]);
    float rgb[3];
    for (int c = 0; c < 3; c++) rgb[c] = col[i][j][c] * stripe * (1.0f + 0.05f * sc->noise2[p]);
    blend(cv, p, rgb, 0.92f);
    float eu = fmodf(u, cw), ev = fmodf(v, ch), edge = fminf(fminf(eu, cw - eu), fminf(ev, ch - ev));
    if (edge < 0.6f) blend(cv, p, track, 0.7f * (1.0f - edge / 0.6f));
  }
}

static void draw_factory(scene *sc) {
  canvas *cv = &sc->cv;
  float S = (float)cv->S, ang = unif(sc->r, 0.0f, 3.14159265f);
  static const float ROOFS[4][3] = {{0.75f, 0.76f, 0.78f}, {0.88f, 0.88f, 0.86f}, {0.55f, 0.65f, 0.75f}, {0.55f, 0.38f, 0.30f}};
  ground(sc, sc->vegc * 0.5f);
  pave(sc, 0.6f);
  int n = 1 + (int)sf_rng_int(sc->r, 0, 2) + (sc->dens > 1.1f ? 1 : 0);
  for (int i = 0; i < n; i++) {
    float roof[3];
    jitter(roof, ROOFS[sf_rng_int(sc->r, 0, 3)], 0.04f, sc->r);
    building(cv, S * unif(sc->r, 0.2f, 0.8f), S * unif(sc->r, 0.2f, 0.8f), S * unif(sc->r, 0.25f, 0.55f),
             S * unif(sc->r, 0.15f, 0.4f), ang, roof);
  }
  int trucks = (int)(sc->dens * unif(sc->r, 0.0f, 6.0f));
  for (int i = 0; i < trucks; i++)
    rect(cv, S * unif(sc->r, 0.0f, 1.0f), S * unif(sc->r, 0.0f, 1.0f), 0.08f * S, 0.03f * S, ang,
         CAR_COLOURS[sf_rng_int(sc->r, 0, 5)], 1.0f);
  if (chance(sc->r, 0.4)) { /* a stack and its long shadow */
    float x = S * unif(sc->r, 0.2f, 0.8f), y = S * unif(sc->r, 0.2f, 0.8f);
    seg(cv, x, y, x + 4.0f * cv->sun_dx, y + 4.0f * cv->sun_dy, 0.04f * S, SHADOW, 0.6f);
    disc(cv, x, y, 0.035f * S, (const float[3]){0.45f, 0.42f, 0.40f}, 1.0f);
  }
  if (chance(sc->r, 0.3))
    for (int i = 0; i < 2; i++) disc(cv, S * unif(sc->r, 0.1f, 0.9f), S * unif(sc->r, 0.1f, 0.9f), 0.07f * S, WHITE, 1.0f);
}

static void draw_interchange(scene *sc) {
  canvas *cv = &sc->cv;
  float S = (float)cv->S, a1 = unif(sc->r, 0.0f, 3.14159265f), a2 = a1 + unif(sc->r, 1.05f, 2.1f);
  ground(sc, sc->vegc + 0.15f);
  float asphalt[3], mark[3];
  jitter(asphalt, sc->road, 0.03f, sc->r);
  for (int c = 0; c < 3; c++) mark[c] = fminf(1.0f, asphalt[c] + 0.25f);
  float cx = S * unif(sc->r, 0.35f, 0.65f), cy = S * unif(sc->r, 0.35f, 0.65f), wd = S * unif(sc->r, 0.08f, 0.12f);
  int loops = 1 + (int)sf_rng_int(sc->r, 0, 3);
  for (int i = 0; i < loops; i++) { /* cloverleaf ramps in the quadrants */
    float qa = 0.5f * (a1 + a2) + (float)i * 1.5707963f, d = S * unif(sc->r, 0.2f, 0.3f);
    ring(cv, cx + d * cosf(qa), cy + d * sinf(qa), 0.7f * d, 0.35f * wd, asphalt, 1.0f);
  }
  long_line(cv, cx, cy, a1, wd, asphalt, 1.0f);
  long_line(cv, cx, cy, a1, 0.06f * wd, mark, 0.8f);
  float nx = -sinf(a2), ny = cosf(a2);
  long_line(cv, cx + cv->sun_dx, cy + cv->sun_dy, a2, wd, SHADOW, 0.5f); /* the bridge's shadow */
  long_line(cv, cx, cy, a2, wd, asphalt, 1.0f);
  long_line(cv, cx + 0.25f * wd * nx, cy + 0.25f * wd * ny, a2, 0.06f * wd, mark, 0.8f);
  int cars = (int)(sc->dens * unif(sc->r, 2.0f, 10.0f));
  for (int i = 0; i < cars; i++) {
    float t = unif(sc->r, -0.7f, 0.7f) * S, a = chance(sc->r, 0.5) ? a1 : a2;
    rect(cv, cx + t * cosf(a), cy + t * sinf(a), 0.045f * S, 0.025f * S, a, CAR_COLOURS[sf_rng_int(sc->r, 0, 5)], 1.0f);
  }
}

/* water where the noisy blob around (cx, cy) of radius rad is, with a sandy shore */
static void water_blob(scene *sc, float cx, float cy, float rad) {
  canvas *cv = &sc->cv;
  int S = cv->S, N = S * S;
  sf_synth_value_noise(sc->noise, S, 5, sc->r);
  float sand[3];
  for (int c = 0; c < 3; c++) sand[c] = fminf(1.0f, sc->soil[c] * 1.25f + 0.05f);
  for (int p = 0; p < N; p++) {
    float dx = (float)(p % S) + 0.5f - cx, dy = (float)(p / S) + 0.5f - cy;
    float d = sqrtf(dx * dx + dy * dy) - rad * (1.0f + 0.35f * sc->noise[p]); /* < 0 inside */
    float shore = clampf(0.06f * (float)S - fabsf(d), 0.0f, 1.0f);
    if (shore > 0.0f) blend(cv, p, sand, 0.6f * shore);
    float in = clampf(0.5f - d, 0.0f, 1.0f);
    if (in > 0.0f) {
      float w[3];
      float depth = clampf(-d / (0.3f * (float)S), 0.0f, 1.0f);
      for (int c = 0; c < 3; c++) w[c] = sc->water[c] * (1.1f - 0.3f * depth) + 0.02f * sc->noise2[p];
      blend(cv, p, w, in);
    }
  }
}

static void draw_lake(scene *sc) {
  float S = (float)sc->cv.S;
  ground(sc, sc->vegc + 0.2f);
  trees(sc, (int)unif(sc->r, 0.0f, 12.0f), 0.02f, 0.05f);
  water_blob(sc, S * unif(sc->r, 0.3f, 0.7f), S * unif(sc->r, 0.3f, 0.7f), S * unif(sc->r, 0.22f, 0.42f));
}

static void draw_park(scene *sc) {
  canvas *cv = &sc->cv;
  float S = (float)cv->S;
  float lawn[3];
  for (int c = 0; c < 3; c++) lawn[c] = sc->veg[c] * 1.15f + (c == 1 ? 0.05f : 0.0f);
  memcpy(sc->veg, lawn, sizeof lawn);
  ground(sc, 0.85f);
  if (chance(sc->r, 0.3)) water_blob(sc, S * unif(sc->r, 0.2f, 0.8f), S * unif(sc->r, 0.2f, 0.8f), S * unif(sc->r, 0.08f, 0.18f));
  if (chance(sc->r, 0.3)) {
    float ang = unif(sc->r, 0.0f, 3.14159265f), x = S * unif(sc->r, 0.3f, 0.7f), y = S * unif(sc->r, 0.3f, 0.7f);
    float pitch[3] = {lawn[0] * 1.1f, lawn[1] * 1.2f, lawn[2] * 1.05f};
    rect(cv, x, y, 0.45f * S, 0.28f * S, ang, pitch, 1.0f);
    rect(cv, x, y, 0.01f * S + 0.6f, 0.28f * S, ang, WHITE, 0.7f);
  }
  float path[3];
  for (int c = 0; c < 3; c++) path[c] = fminf(1.0f, sc->soil[c] * 1.2f);
  int paths = 1 + (int)sf_rng_int(sc->r, 0, 1);
  for (int i = 0; i < paths; i++)
    long_line(cv, S * unif(sc->r, 0.2f, 0.8f), S * unif(sc->r, 0.2f, 0.8f), unif(sc->r, 0.0f, 3.14159265f), 0.025f * S + 0.4f,
              path, 0.85f);
  trees(sc, (int)unif(sc->r, 12.0f, 40.0f), 0.03f, 0.07f);
}

static void draw_parking(scene *sc) {
  canvas *cv = &sc->cv;
  float S = (float)cv->S, ang = unif(sc->r, 0.0f, 3.14159265f), ca = cosf(ang), sa = sinf(ang);
  ground(sc, sc->vegc);
  float asphalt[3];
  jitter(asphalt, (const float[3]){0.30f, 0.30f, 0.31f}, 0.04f, sc->r);
  float cx = S * unif(sc->r, 0.4f, 0.6f), cy = S * unif(sc->r, 0.4f, 0.6f);
  float w = S * unif(sc->r, 0.7f, 1.3f), h = S * unif(sc->r, 0.6f, 1.2f);
  rect(cv, cx, cy, w, h, ang, asphalt, 1.0f);
  float occ = clampf(0.35f + 0.35f * sc->g + 0.1f * (sc->dens - 1.0f), 0.1f, 0.95f);
  float row = 0.16f * S, slot = 0.055f * S;
  for (float v = -0.5f * h + 0.5f * row; v < 0.5f * h; v += row)
    for (float u = -0.5f * w + slot; u < 0.5f * w - 0.5f * slot; u += slot) {
      float x = cx + u * ca - v * sa, y = cy + u * sa + v * ca;
      rect(cv, x, y, 0.006f * S + 0.3f, 0.07f * S, ang, WHITE, 0.35f); /* stall line */
      if (chance(sc->r, occ))
        rect(cv, x + 0.5f * slot * ca, y + 0.5f * slot * sa, 0.03f * S, 0.06f * S, ang, CAR_COLOURS[sf_rng_int(sc->r, 0, 5)],
             1.0f);
    }
  if (chance(sc->r, 0.3)) {
    float roof[3];
    jitter(roof, sc->st->roofs[sf_rng_int(sc->r, 0, 3)], 0.04f, sc->r);
    building(cv, cx + 0.5f * w * ca, cy + 0.5f * w * sa, 0.3f * S, 0.3f * S, ang, roof);
  }
}

static void draw_port(scene *sc) {
  canvas *cv = &sc->cv;
  int S = cv->S, N = S * S;
  float Sf = (float)S, ang = unif(sc->r, 0.0f, 6.2831853f), nx = cosf(ang), ny = sinf(ang);
  float off = Sf * unif(sc->r, -0.2f, 0.15f);
  ground(sc, sc->vegc * 0.5f);
  pave(sc, 0.5f);
  sf_synth_value_noise(sc->noise, S, 3, sc->r);
  for (int p = 0; p < N; p++) { /* water on the far side of the shore line */
    float d = ((float)(p % S) + 0.5f - 0.5f * Sf) * nx + ((float)(p / S) + 0.5f - 0.5f * Sf) * ny - off + 0.05f * Sf * sc->noise[p];
    float in = clampf(d + 0.5f, 0.0f, 1.0f);
    if (in > 0.0f) blend(cv, p, sc->water, in);
  }
  float tx = -ny, ty = nx; /* along the shore */
  float qx = 0.5f * Sf + off * nx, qy = 0.5f * Sf + off * ny;
  int piers = 1 + (int)sf_rng_int(sc->r, 0, 2);
  float concrete[3] = {0.62f, 0.61f, 0.58f};
  for (int i = 0; i < piers; i++) {
    float t = unif(sc->r, -0.4f, 0.4f) * Sf, len = unif(sc->r, 0.2f, 0.35f) * Sf;
    rect(cv, qx + t * tx + 0.5f * len * nx, qy + t * ty + 0.5f * len * ny, len, 0.05f * Sf, ang, concrete, 1.0f);
  }
  static const float BOXES[5][3] = {{0.65f, 0.18f, 0.12f}, {0.15f, 0.30f, 0.60f}, {0.80f, 0.50f, 0.15f},
                                    {0.20f, 0.50f, 0.30f}, {0.85f, 0.85f, 0.85f}};
  int stacks = (int)(sc->dens * unif(sc->r, 4.0f, 14.0f));
  for (int i = 0; i < stacks; i++) { /* containers on land */
    float t = unif(sc->r, -0.6f, 0.6f) * Sf, d = -unif(sc->r, 0.05f, 0.45f) * Sf;
    rect(cv, qx + t * tx + d * nx, qy + t * ty + d * ny, 0.09f * Sf, 0.035f * Sf, ang + 1.5707963f, BOXES[sf_rng_int(sc->r, 0, 4)],
         1.0f);
  }
  int ships = (int)sf_rng_int(sc->r, 0, 2);
  for (int i = 0; i < ships; i++) {
    float t = unif(sc->r, -0.4f, 0.4f) * Sf, d = unif(sc->r, 0.12f, 0.3f) * Sf;
    float hull[3];
    jitter(hull, chance(sc->r, 0.5) ? (const float[3]){0.25f, 0.25f, 0.28f} : (const float[3]){0.55f, 0.20f, 0.15f}, 0.04f, sc->r);
    building(cv, qx + t * tx + d * nx, qy + t * ty + d * ny, 0.3f * Sf, 0.07f * Sf, ang + 1.5707963f, hull);
  }
}

static void draw_residential(scene *sc) {
  canvas *cv = &sc->cv;
  float S = (float)cv->S, ang = unif(sc->r, 0.0f, 3.14159265f), ca = cosf(ang), sa = sinf(ang);
  ground(sc, sc->vegc + 0.15f);
  float street[3];
  jitter(street, chance(sc->r, (double)sc->st->paved + 0.2 * (double)sc->g) ? sc->road : sc->soil, 0.03f, sc->r);
  float spacing = S * unif(sc->r, 0.26f, 0.34f), cx = 0.5f * S, cy = 0.5f * S;
  float sw = 0.035f * S + 0.3f, ov = unif(sc->r, 0.0f, spacing);
  for (float v = -S - ov; v < S; v += spacing) /* streets along the u direction */
    long_line(cv, cx - v * sa, cy + v * ca, ang, sw, street, 1.0f);
  if (chance(sc->r, 0.6)) /* a cross street */
    long_line(cv, cx + unif(sc->r, -0.3f, 0.3f) * S * ca, cy + unif(sc->r, -0.3f, 0.3f) * S * sa, ang + 1.5707963f, sw, street, 1.0f);
  float occ = clampf(0.45f * sc->dens, 0.15f, 0.95f), step = 0.11f * S;
  for (float v = -S - ov; v < S; v += spacing)
    for (int side = -1; side <= 1; side += 2) {
      float hv = v + (float)side * (0.5f * sw + 0.06f * S);
      for (float u = -S + unif(sc->r, 0.0f, step); u < S; u += step) {
        float x = cx + u * ca - hv * sa, y = cy + u * sa + hv * ca;
        if (x < -0.1f * S || x > 1.1f * S || y < -0.1f * S || y > 1.1f * S || !chance(sc->r, occ)) continue;
        float roof[3], hs = unif(sc->r, 0.06f, 0.09f) * S;
        jitter(roof, sc->st->roofs[sf_rng_int(sc->r, 0, 3)], 0.04f, sc->r);
        building(cv, x, y, hs, hs * unif(sc->r, 0.7f, 1.0f), ang, roof);
        float ridge[3] = {roof[0] * 0.8f, roof[1] * 0.8f, roof[2] * 0.8f}; /* the shaded half of a pitched roof */
        rect(cv, x + 0.2f * hs * sa, y - 0.2f * hs * ca, hs, 0.4f * hs, ang, ridge, 0.7f);
        if (chance(sc->r, sc->st == &STYLES[R_AMERICAS] || sc->st == &STYLES[R_OCEANIA] ? 0.12 : 0.02))
          rect(cv, x - (float)side * 0.1f * S * sa, y + (float)side * 0.1f * S * ca, 0.03f * S, 0.02f * S, ang,
               (const float[3]){0.30f, 0.70f, 0.80f}, 1.0f);
      }
    }
  trees(sc, (int)(sc->vegc * 30.0f * (1.2f - 0.4f * sc->g)), 0.02f, 0.045f);
}

static void draw_tanks(scene *sc) {
  canvas *cv = &sc->cv;
  float S = (float)cv->S;
  ground(sc, sc->vegc * 0.6f);
  pave(sc, unif(sc->r, 0.0f, 0.5f));
  int n = 2 + (int)sf_rng_int(sc->r, 0, 5) + (sc->dens > 1.2f ? 1 : 0);
  float rad = unif(sc->r, 0.06f, 0.13f) * S, cx = S * unif(sc->r, 0.3f, 0.7f), cy = S * unif(sc->r, 0.3f, 0.7f);
  float ang = unif(sc->r, 0.0f, 3.14159265f), ca = cosf(ang), sa = sinf(ang);
  int cols = 1 + (int)sqrtf((float)n);
  for (int i = 0; i < n; i++) {
    float u = ((float)(i % cols) - 0.5f * (float)(cols - 1)) * 2.4f * rad, v = ((float)(i / cols) - 0.5f) * 2.4f * rad;
    float x = cx + u * ca - v * sa + rad * 0.2f * gauss(sc->r), y = cy + u * sa + v * ca + rad * 0.2f * gauss(sc->r);
    float top[3];
    jitter(top, chance(sc->r, 0.7) ? WHITE : (const float[3]){0.62f, 0.62f, 0.60f}, 0.04f, sc->r);
    disc(cv, x + cv->sun_dx, y + cv->sun_dy, rad, SHADOW, 0.55f);
    disc(cv, x, y, rad, top, 1.0f);
    ring(cv, x, y, rad * 0.85f, 0.1f * rad + 0.4f, (const float[3]){top[0] * 0.7f, top[1] * 0.7f, top[2] * 0.7f}, 0.8f);
  }
}

/* ---- camera: sun, clouds, sensor era ---- */

static void camera(scene *sc, int year, float *tmp) {
  canvas *cv = &sc->cv;
  int S = cv->S, N = S * S;
  const sensor *sn = &SENSORS[0];
  for (size_t i = 0; i < sizeof SENSORS / sizeof *SENSORS; i++)
    if (year >= SENSORS[i].from) sn = &SENSORS[i];
  float sun = unif(sc->r, 0.85f, 1.15f);
  if (chance(sc->r, 0.1)) { /* a thin cloud */
    sf_synth_value_noise(sc->noise, S, 3, sc->r);
    float thick = unif(sc->r, 0.3f, 0.8f);
    for (int p = 0; p < N; p++) blend(cv, p, (const float[3]){0.92f, 0.92f, 0.94f}, thick * clampf(sc->noise[p] + 0.2f, 0.0f, 1.0f));
  }
  double mean = 0.0;
  for (int i = 0; i < 3 * N; i++) mean += (double)cv->c[i];
  float m = (float)(mean / (double)(3 * N));
  for (int p = 0; p < N; p++) {
    float gray = (cv->c[p] + cv->c[N + p] + cv->c[2 * N + p]) / 3.0f;
    for (int c = 0; c < 3; c++) {
      float v = gray + sn->sat * (cv->c[c * N + p] - gray);
      v = m + sn->contrast * (v - m);
      cv->c[c * N + p] = v * sun * sn->gain[c] + sn->haze[c];
    }
  }
  sf_synth_blur(cv->c, 3, S, (double)(sn->blur * (float)S / 64.0f), tmp);
  for (int i = 0; i < 3 * N; i++) cv->c[i] = clampf(cv->c[i] + sn->noise * gauss(sc->r), 0.0f, 1.0f);
}

int sf_synth_fmow_tile(sf_tensor *out, int size, int cls, int region, int year, sf_rng *r) {
  if (size < SF_SYNTH_MIN_SIZE || size > SF_SYNTH_MAX_SIZE)
    return sf_err("fmow_tile: argument #1 (size) is %d, expected %d..%d", size, SF_SYNTH_MIN_SIZE, SF_SYNTH_MAX_SIZE);
  if (cls < 0 || cls >= SF_SYNTH_FMOW_CLASSES)
    return sf_err("fmow_tile: argument #2 (class) is %d, expected 0..%d", cls, SF_SYNTH_FMOW_CLASSES - 1);
  if (region < 0 || region >= SF_SYNTH_FMOW_REGIONS)
    return sf_err("fmow_tile: argument #3 (region) is %d, expected 0..%d", region, SF_SYNTH_FMOW_REGIONS - 1);
  if (check_year("fmow_tile", 4, year)) return -1;
  const int S = size, N = S * S;
  float *buf = malloc(sizeof(float) * (size_t)N * 3);
  if (!buf) return sf_err("fmow_tile: out of memory for a %dx%d tile", S, S);
  int64_t shape[3] = {3, S, S};
  if (sf_tensor_new(out, 3, shape)) {
    free(buf);
    return -1;
  }
  scene sc;
  memset(&sc, 0, sizeof sc);
  sc.cv.c = sf_tensor_data(out);
  sc.cv.S = S;
  sc.st = &STYLES[region];
  sc.noise = buf;
  sc.noise2 = buf + N;
  sc.r = r;
  sc.g = (float)growth(year);
  sc.vegc = sc.st->veg_cover * (1.1f - 0.3f * sc.g);
  sc.dens = sc.st->density * (0.75f + 0.6f * sc.g) * expf(0.15f * gauss(r));
  jitter(sc.soil, sc.st->soil, 0.03f, r);
  jitter(sc.veg, sc.st->veg, 0.03f, r);
  jitter(sc.water, sc.st->water, 0.03f, r);
  jitter(sc.road, chance(r, (double)sc.st->paved + 0.2 * (double)sc.g) ? sc.st->road : sc.st->soil, 0.03f, r);
  float sun_a = unif(r, 0.0f, 6.2831853f), sun_len = unif(r, 0.01f, 0.03f) * (float)S + 0.3f;
  sc.cv.sun_dx = sun_len * cosf(sun_a);
  sc.cv.sun_dy = sun_len * sinf(sun_a);
  switch (cls) {
    case C_AIRPORT: draw_airport(&sc); break;
    case C_CROP: draw_crops(&sc); break;
    case C_FACTORY: draw_factory(&sc); break;
    case C_INTERCHANGE: draw_interchange(&sc); break;
    case C_LAKE: draw_lake(&sc); break;
    case C_PARK: draw_park(&sc); break;
    case C_PARKING: draw_parking(&sc); break;
    case C_PORT: draw_port(&sc); break;
    case C_RESIDENTIAL: draw_residential(&sc); break;
    default: draw_tanks(&sc); break;
  }
  camera(&sc, year, buf + 2 * N);
  free(buf);
  return 0;
}
