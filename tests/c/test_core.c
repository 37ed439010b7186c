/* C test of the tensor core, without Lua: storage, views, copies, errors, RNG. TAP. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "src/core/rng.h"
#include "src/core/tensor.h"

static int ntest = 0, nfail = 0;

static void ok(int cond, const char *what) {
  ntest++;
  if (!cond) nfail++;
  printf("%s %d - %s\n", cond ? "ok" : "not ok", ntest, what);
}

static void ok_err(int rc, const char *want, const char *what) {
  int good = rc != 0 && strstr(sf_errmsg(), want) != NULL;
  ok(good, what);
  if (!good) printf("# got rc=%d message '%s', wanted '%s'\n", rc, sf_errmsg(), want);
}

static float at2(const sf_tensor *t, int64_t i, int64_t j) {
  return sf_tensor_data(t)[i * t->stride[0] + j * t->stride[1]];
}

int main(void) {
  sf_tensor t = SF_TENSOR_EMPTY, v = SF_TENSOR_EMPTY, c = SF_TENSOR_EMPTY;
  int64_t shape[2] = {3, 4};

  ok(sf_tensor_arange(&t, 0, 12, 1) == 0, "arange");
  ok(sf_tensor_reshape(&t, &t, 2, shape) == 0, "reshape in place");
  ok(t.stride[0] == 4 && t.stride[1] == 1, "contiguous strides");
  ok(sf_tensor_transpose(&v, &t, 0, 1) == 0 && v.storage == t.storage, "transpose is a view");
  ok(t.storage->refcount == 2, "a view holds a reference");
  ok(at2(&v, 2, 1) == 6.0f, "transposed element");
  ok(!sf_tensor_is_contiguous(&v), "transpose is not contiguous");
  ok(sf_tensor_contiguous(&c, &v) == 0 && c.storage != v.storage, "contiguous copies");
  ok(at2(&c, 2, 1) == 6.0f && sf_tensor_is_contiguous(&c), "contiguous values");

  /* strided copy agrees with the element-by-element definition */
  sf_tensor n = SF_TENSOR_EMPTY;
  ok(sf_tensor_narrow(&n, &t, 1, 1, 2) == 0, "narrow");
  ok(at2(&n, 2, 0) == 9.0f, "narrowed element");
  ok(sf_tensor_fill(&n, -1.0f) == 0 && sf_tensor_data(&t)[5] == -1.0f && sf_tensor_data(&t)[4] == 4.0f,
     "fill through a view writes the shared storage only inside the view");

  /* select down to a scalar */
  sf_tensor s = SF_TENSOR_EMPTY;
  ok(sf_tensor_select(&s, &t, 0, 2) == 0 && s.ndim == 1 && s.size[0] == 4, "select");
  ok(sf_tensor_select(&s, &s, 0, 3) == 0 && s.ndim == 0 && sf_tensor_numel(&s) == 1 && *sf_tensor_data(&s) == 11.0f,
     "select in place to 0-D");

  /* expand and reshape of an expanded view copies */
  sf_tensor e = SF_TENSOR_EMPTY, r = SF_TENSOR_EMPTY;
  int64_t col[2] = {3, 1}, big[2] = {3, 5}, flat[1] = {15};
  ok(sf_tensor_view(&e, &c, 2, (int64_t[]){4, 3}) == 0, "view of a contiguous tensor");
  ok(sf_tensor_arange(&e, 0, 3, 1) == 0 && sf_tensor_reshape(&e, &e, 2, col) == 0, "column");
  ok(sf_tensor_expand(&e, &e, 2, big) == 0 && e.stride[1] == 0, "expand sets stride 0");
  ok(sf_tensor_reshape(&r, &e, 1, flat) == 0 && r.storage != e.storage, "reshape of an expanded view copies");
  ok(sf_tensor_data(&r)[7] == 1.0f, "expanded values");

  /* errors: messages name the function and the shapes; outputs stay empty */
  sf_tensor bad = SF_TENSOR_EMPTY;
  int64_t five[1] = {5};
  ok_err(sf_tensor_view(&bad, &t, 1, five), "view: cannot view a tensor of shape [3,4] (12 elements) as [5]", "view error");
  ok(bad.storage == NULL, "output left empty on error");
  ok_err(sf_tensor_narrow(&bad, &t, 1, 3, 2), "narrow: range [4, 5] is out of bounds for dimension 2 of size 4", "narrow error");
  ok_err(sf_tensor_select(&bad, &t, 2, 0), "select: dimension 3 out of range for a 2-D tensor of shape [3,4]", "select error");
  ok_err(sf_tensor_copy(&c, &e), "copy: argument #2 has shape [3,5] (15 elements), expected 12 elements", "copy error");
  ok_err(sf_tensor_new(&bad, 2, (int64_t[]){2, -3}), "tensor: negative size in shape [2,-3]", "negative size");

  /* RNG: fixed streams and uniform bounds */
  sf_rng g1, g2;
  sf_rng_seed(&g1, 5);
  sf_rng_seed(&g2, 5);
  int same = 1, inrange = 1;
  for (int i = 0; i < 1000; i++) {
    if (sf_rng_next(&g1) != sf_rng_next(&g2)) same = 0;
    int64_t k = sf_rng_int(&g1, -3, 3);
    if (k < -3 || k > 3) inrange = 0;
    (void)sf_rng_next(&g2);
  }
  ok(same, "same seed, same stream");
  ok(inrange, "sf_rng_int stays in [lo, hi]");
  int64_t perm[10];
  sf_rng_permutation(&g1, perm, 10);
  int seen = 0;
  for (int i = 0; i < 10; i++) seen |= 1 << perm[i];
  ok(seen == 0x3ff, "permutation");

  sf_tensor_release(&t);
  sf_tensor_release(&v);
  sf_tensor_release(&c);
  sf_tensor_release(&n);
  sf_tensor_release(&s);
  sf_tensor_release(&e);
  sf_tensor_release(&r);
  sf_tensor_release(&r); /* idempotent */

  /* a storage of 2 MB or more is mapped on a 2 MB boundary (huge pages can back all of
   * it), holds what is written, and is released; not under ASan or with the mapping cache
   * off, where storages come from malloc */
  {
    sf_tensor h = SF_TENSOR_EMPTY;
    int64_t hs[1] = {(int64_t)3 << 18}; /* 3 MB of floats */
    ok(sf_tensor_new(&h, 1, hs) == 0, "3 MB tensor");
    float *hd = sf_tensor_data(&h);
    for (int64_t i = 0; i < hs[0]; i++) hd[i] = (float)(i & 1023);
    int held = 1;
    for (int64_t i = 0; i < hs[0]; i += 4099) held &= hd[i] == (float)(i & 1023);
    ok(held, "3 MB tensor holds its values");
#if !defined(__SANITIZE_ADDRESS__)
    const char *cache = getenv("SURGFT_STORAGE_CACHE");
    if (!(cache && cache[0] == '0'))
      ok(((uintptr_t)hd & (((uintptr_t)2 << 20) - 1)) == 0, "a 3 MB storage starts on a 2 MB boundary");
#endif
    sf_tensor_release(&h);
  }
  ok(sf_storage_live_bytes() == 0, "all storage released");
  printf("1..%d\n", ntest);
  return nfail ? 1 : 0;
}
