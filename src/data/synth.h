/*
 * Generated stand-ins for Camelyon17-WILDS and FMoW-WILDS: one image per call.
 *
 *   sf_rng r;
 *   sf_rng_seed(&r, 42);
 *   sf_tensor x = SF_TENSOR_EMPTY;
 *   if (sf_synth_camelyon_patch(&x, 32, 2, 1, slide_key, &r))   // center 2, tumour
 *     fprintf(stderr, "%s\n", sf_errmsg());
 *   sf_write_png("p.png", &x);                                    // x is [3,32,32] in [0,1]
 *
 * The C side renders pixels and owns the generative story (hospital stains and scanners,
 * region and year styles, label priors): synth_camelyon.c and synth_fmow.c explain it in
 * their headers. The Lua driver (lua/surgft/data/synth.lua) draws the metadata (which
 * hospital, slide, label, region, year) from these priors and writes the WILDS layouts.
 * Every function is a pure function of its arguments and the generator's state, so a
 * seed fixes every byte.
 */
#ifndef SF_SYNTH_H
#define SF_SYNTH_H

#include <stdint.h>

#include "../core/rng.h"
#include "../core/tensor.h"

#define SF_SYNTH_MIN_SIZE 8
#define SF_SYNTH_MAX_SIZE 512

/* ---- camelyon-synth (synth_camelyon.c) ---- */
#define SF_SYNTH_CAMELYON_CENTERS 5
/* out <- [3,size,size] in [0,1]: one H&E patch of hospital `center` (0..4, the WILDS
 * center id), tumour (1) or normal (0). slide_key seeds the slide's own small stain
 * variation (patches of one slide share it); r draws everything else. */
int sf_synth_camelyon_patch(sf_tensor *out, int size, int center, int tumor, uint64_t slide_key, sf_rng *r);
/* Tumour prevalence of a hospital's patches (the Lua driver draws labels from it). */
double sf_synth_camelyon_prevalence(int center);

/* ---- fmow-synth (synth_fmow.c) ---- */
#define SF_SYNTH_FMOW_CLASSES 10
#define SF_SYNTH_FMOW_REGIONS 6
#define SF_SYNTH_FMOW_FIRST_YEAR 2002
#define SF_SYNTH_FMOW_LAST_YEAR 2017
/* Names (FMoW category names, in byte order; WILDS region names), NULL-terminated. */
const char *const *sf_synth_fmow_classes(void);
const char *const *sf_synth_fmow_regions(void);
/* out <- [3,size,size] in [0,1]: one tile of class cls (0-based), region (0-based), year. */
int sf_synth_fmow_tile(sf_tensor *out, int size, int cls, int region, int year, sf_rng *r);
/* Label priors: p[SF_SYNTH_FMOW_CLASSES] for a region and year; q[SF_SYNTH_FMOW_REGIONS]
 * (the share of each region among the images of a year). Both sum to 1. */
int sf_synth_fmow_class_prior(double *p, int region, int year);
int sf_synth_fmow_region_prior(double *q, int year);

/* ---- helpers shared by the two generators (synth_camelyon.c) ---- */
/* f[n*n] <- smooth value noise in about [-1, 1] with `cells` lattice cells across. */
void sf_synth_value_noise(float *f, int n, int cells, sf_rng *r);
/* In-place separable Gaussian blur of `planes` planes of n*n (edges clamped); tmp holds n*n. */
void sf_synth_blur(float *x, int planes, int n, double sigma, float *tmp);

#endif
