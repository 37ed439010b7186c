/*
 * Image corruptions of CIFAR-10-C (Hendrycks & Dietterich 2019): the 15 standard and the
 * 4 extra ("validation") corruptions at severities 1-5, on float images in [0,1].
 *
 *   sf_rng r; sf_rng_seed(&r, 0);
 *   sf_tensor out = SF_TENSOR_EMPTY;
 *   if (sf_corrupt(&out, &img, "fog", 3, &r)) fprintf(stderr, "%s\n", sf_errmsg());
 *
 * Parameters follow ../../shared/reference/corruptions.md (make_cifar_c.py) for 32x32
 * images. Conventions:
 *   - images are [C,H,W] or [N,C,H,W], C = 1 (gray) or 3 (RGB), H and W >= 8, any strides;
 *     the input is clipped to [0,1] first; the output is a new contiguous tensor of the
 *     same shape, clipped to [0,1] and quantised like the reference's np.uint8():
 *     floor(255 x + 1e-3) / 255 (the 1e-3 keeps k/255 inputs from dropping a level
 *     through float rounding);
 *   - randomness comes only from the generator passed in (images in order, one after
 *     the other), so a seed gives the same output; nothing global, thread-safe;
 *   - other sizes: pixel-unit parameters (blur sigmas and radii, motion-blur radius and
 *     sigma, glass-blur displacement, snow zoom, spatter's blur sigmas and distance cap,
 *     elastic's sigma and affine jitter) are multiplied by s = max(1, min(H,W)/32), so
 *     28x28 Fashion-MNIST uses the CIFAR values unchanged (shrinking them would make the
 *     small disk and motion kernels degenerate) and 96x96 uses 3x. Where smoothed noise
 *     meets a fixed threshold or amplitude, the noise is rescaled so the smoothed field
 *     keeps the reference's statistics: spatter's noise std times s, elastic's alpha
 *     times s^2. Zoom factors and pixelate's size fraction stay relative; fog's plasma
 *     map is the next power of two >= the larger side, cropped to H x W. Glass blur's
 *     shuffle with a displacement d > 1 reads already-shuffled pixels (the reference's
 *     one-way copy), so at 96x96 it is relatively stronger than at 32x32;
 *   - gray images: gray-only operations work on the single channel directly (for the
 *     noises, blurs, snow, fog, brightness, contrast, elastic, pixelate it is exactly
 *     what the RGB formula gives on R = G = B; jpeg encodes a grayscale JPEG). The
 *     colour-specific ones (saturate, spatter, frost) run on the image replicated to 3
 *     channels and convert back with Y = 0.299 R + 0.587 G + 0.114 B before quantising;
 *   - frost: the reference's texture photographs are not available; a procedural frost
 *     texture (a plasma haze plus randomly rotated, tapered crystal streaks with side
 *     branches and thresholded-noise grains, blurred, tinted pale blue) is drawn per
 *     image from the generator and mixed with the reference's weights a x + b frost;
 *   - deviations from the reference (distributional, not bit-exact, as its RNG is not
 *     seeded anyway): impulse noise flips each element with probability c (newer
 *     scikit-image); ImageMagick's motion blur reads the float image, rounds its output
 *     to 8 bits; spatter clamps 255 L to 255 rather than wrapping.
 */
#ifndef SF_CORRUPT_H
#define SF_CORRUPT_H

#include <stdint.h>

#include "../core/rng.h"
#include "../core/tensor.h"

#define SF_CORRUPT_COUNT 19    /* all corruptions */
#define SF_CORRUPT_STANDARD 15 /* the first 15 are CIFAR-10-C's standard set */

/* The 19 names, standard first in the reference order, then the 4 extra; NULL-terminated. */
const char *const *sf_corrupt_names(void);
/* Index of a name in sf_corrupt_names(), or -1. */
int sf_corrupt_find(const char *name);

/* out = name(img) at severity 1..5, img [C,H,W] or [N,C,H,W]. Arguments are numbered
 * as in sf.corrupt(img, name, severity, rng): img #1, name #2, severity #3, rng #4.
 * out is released and refilled on success, untouched on error. */
int sf_corrupt(sf_tensor *out, const sf_tensor *img, const char *name, int severity, sf_rng *rng);

/* The kernel on raw contiguous arrays: n images [C,H,W] from src to dst (they may be the
 * same array). id from sf_corrupt_find. */
int sf_corrupt_images(float *dst, const float *src, int64_t n, int c, int h, int w, int id, int severity,
                      sf_rng *rng);

/* Helpers exposed for tests. The scipy Gaussian kernel: radius int(truncate sigma + 0.5),
 * weights exp(-i^2 / (2 sigma^2)) normalised; writes 2r+1 weights into k (cap floats),
 * returns 2r+1, or -1 when cap is too small. */
int sf_corrupt_gaussian_kernel(float *k, int cap, double sigma, double truncate);
/* defocus_blur's aliased disk (make_cifar_c's disk(radius, alias_blur)): writes the
 * side x side kernel into k (cap floats), returns side, or -1 when cap is too small. */
int sf_corrupt_disk_kernel(float *k, int cap, double radius, double alias_blur);

#endif
