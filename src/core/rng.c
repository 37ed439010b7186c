/* xoshiro256** generators and the tensor fills built on them. */
#include "rng.h"

#include <math.h>

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static uint64_t splitmix64(uint64_t *x) {
  uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

void sf_rng_seed(sf_rng *r, uint64_t seed) {
  uint64_t x = seed;
  for (int i = 0; i < 4; i++) r->s[i] = splitmix64(&x);
}

uint64_t sf_rng_next(sf_rng *r) {
  uint64_t *s = r->s;
  uint64_t result = rotl(s[1] * 5, 7) * 9;
  uint64_t t = s[1] << 17;
  s[2] ^= s[0];
  s[3] ^= s[1];
  s[1] ^= s[2];
  s[0] ^= s[3];
  s[2] ^= t;
  s[3] = rotl(s[3], 45);
  return result;
}

double sf_rng_uniform(sf_rng *r) { return (double)(sf_rng_next(r) >> 11) * 0x1.0p-53; }

int64_t sf_rng_int(sf_rng *r, int64_t lo, int64_t hi) {
  uint64_t range = (uint64_t)hi - (uint64_t)lo; /* inclusive width - 1 */
  if (range == UINT64_MAX) return (int64_t)sf_rng_next(r);
  uint64_t n = range + 1, threshold = (0 - n) % n, x; /* threshold = 2^64 mod n */
  do x = sf_rng_next(r); while (x < threshold);          /* rejection: no modulo bias */
  return lo + (int64_t)(x % n);
}

double sf_rng_normal(sf_rng *r) {
  double u1;
  do u1 = sf_rng_uniform(r); while (u1 <= 0.0);
  double u2 = sf_rng_uniform(r);
  return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

void sf_tensor_uniform_(sf_tensor *t, sf_rng *r, double lo, double hi) {
  int64_t n = sf_tensor_numel(t);
  for (int64_t i = 0; i < n; i++) *sf_tensor_ptr_linear(t, i) = (float)(lo + (hi - lo) * sf_rng_uniform(r));
}

void sf_tensor_normal_(sf_tensor *t, sf_rng *r, double mean, double std) {
  int64_t n = sf_tensor_numel(t);
  if (sf_tensor_is_contiguous(t)) {
    float *p = sf_tensor_data(t);
    for (int64_t i = 0; i < n; i++) p[i] = (float)(mean + std * sf_rng_normal(r));
    return;
  }
  for (int64_t i = 0; i < n; i++) *sf_tensor_ptr_linear(t, i) = (float)(mean + std * sf_rng_normal(r));
}

void sf_tensor_randint_(sf_tensor *t, sf_rng *r, int64_t lo, int64_t hi) {
  int64_t n = sf_tensor_numel(t);
  for (int64_t i = 0; i < n; i++) *sf_tensor_ptr_linear(t, i) = (float)sf_rng_int(r, lo, hi);
}

void sf_tensor_bernoulli_(sf_tensor *t, sf_rng *r, double p) {
  int64_t n = sf_tensor_numel(t);
  for (int64_t i = 0; i < n; i++) *sf_tensor_ptr_linear(t, i) = sf_rng_uniform(r) < p ? 1.0f : 0.0f;
}

void sf_rng_permutation(sf_rng *r, int64_t *out, int64_t n) {
  for (int64_t i = 0; i < n; i++) out[i] = i;
  for (int64_t i = n - 1; i > 0; i--) {
    int64_t j = sf_rng_int(r, 0, i);
    int64_t tmp = out[i];
    out[i] = out[j];
    out[j] = tmp;
  }
}
