/*
 * Random numbers: explicit xoshiro256** generators, seeded through splitmix64.
 * A generator's whole state is four 64-bit words; save/restore copies them.
 * Normals come from the Box-Muller transform, two per draw of two uniforms, with no
 * cached spare, so a generator's state is exactly its four words.
 */
#ifndef SF_RNG_H
#define SF_RNG_H

#include <stdint.h>
#include "tensor.h"

typedef struct sf_rng {
  uint64_t s[4];
} sf_rng;

void sf_rng_seed(sf_rng *r, uint64_t seed);
uint64_t sf_rng_next(sf_rng *r);
double sf_rng_uniform(sf_rng *r);               /* [0, 1), 53 bits */
int64_t sf_rng_int(sf_rng *r, int64_t lo, int64_t hi); /* uniform in [lo, hi], unbiased */
double sf_rng_normal(sf_rng *r);

/* Fill an existing tensor (any strides) from r, in row-major element order. */
void sf_tensor_uniform_(sf_tensor *t, sf_rng *r, double lo, double hi);
void sf_tensor_normal_(sf_tensor *t, sf_rng *r, double mean, double std);
void sf_tensor_randint_(sf_tensor *t, sf_rng *r, int64_t lo, int64_t hi);
void sf_tensor_bernoulli_(sf_tensor *t, sf_rng *r, double p);
/* A uniformly random permutation of 0..n-1 (Fisher-Yates). */
void sf_rng_permutation(sf_rng *r, int64_t *out, int64_t n);

#endif
