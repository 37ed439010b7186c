/* C test of the reductions without Lua: the 0-based C contract and the C-only error
 * paths (the Lua binding rejects most of these before they reach the core). TAP output. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "src/core/tensor.h"

static int ntest = 0, nfail = 0;

static void ok(int cond, const char *what) {
  ntest++;
  if (!cond) nfail++;
  printf("%s %d - %s\n", cond ? "ok" : "not ok", ntest, what);
}

static void err_is(int rc, const char *want, const char *what) {
  int good = rc == -1 && strstr(sf_errmsg(), want) != NULL;
  ok(good, what);
  if (!good) printf("# got rc %d, message '%s', expected '%s'\n", rc, sf_errmsg(), want);
}

int main(void) {
  sf_tensor a = SF_TENSOR_EMPTY, out = SF_TENSOR_EMPTY, idx = SF_TENSOR_EMPTY, v = SF_TENSOR_EMPTY;
  int64_t shape[2] = {2, 3};
  double r = 0;

  /* a = [[0,1,2],[3,4,5]] */
  sf_tensor_arange(&a, 0, 6, 1);
  sf_tensor_reshape(&v, &a, 2, shape);
  sf_tensor_share(&a, &v);
  sf_tensor_release(&v);

  ok(sf_reduce_all(&r, &a, SF_SUM, 0) == 0 && r == 15, "sum of 0..5 is 15");
  ok(sf_reduce_all(&r, &a, SF_ARGMAX, 0) == 0 && r == 5, "argmax is 0-based (5)");
  ok(sf_reduce_all(&r, &a, SF_NORM, 1) == 0 && r == 15, "1-norm");
  ok(sf_var_all(&r, &a, 0) == 0 && fabs(r - 17.5 / 6) < 1e-12, "population variance");
  ok(sf_var_all(&r, &a, 6) == 0 && isnan(r), "n - ddof = 0 gives nan");

  ok(sf_reduce_dim(&out, &a, 0, 0, SF_SUM, 0) == 0 && out.ndim == 1 && out.size[0] == 3 &&
         sf_tensor_data(&out)[2] == 7.0f,
     "sum over dim 0 (0-based) gives [3,5,7]");
  ok(sf_max_dim(&v, &idx, &a, 1, 1, 0) == 0 && v.ndim == 2 && v.size[1] == 1 && sf_tensor_data(&idx)[1] == 2.0f &&
         sf_tensor_data(&v)[1] == 5.0f,
     "max over dim 1 keepdim: values [2,5], 0-based indices [2,2]");
  ok(sf_softmax(&out, &a, 1, 0) == 0 && fabs((double)(sf_tensor_data(&out)[0] + sf_tensor_data(&out)[1] +
                                                      sf_tensor_data(&out)[2]) - 1.0) < 1e-6,
     "softmax row sums to 1");

  /* errors: the message names the function and the shape; outputs are not replaced */
  sf_tensor fresh = SF_TENSOR_EMPTY;
  err_is(sf_reduce_dim(&fresh, &a, 2, 0, SF_SUM, 0), "sum: dimension 3 out of range for a 2-D tensor of shape [2,3]",
         "dim 2 out of range");
  ok(fresh.storage == NULL, "output left empty on error");
  err_is(sf_reduce_dim(&fresh, &a, -1, 0, SF_MEAN, 0), "mean: dimension 0 out of range", "negative dim");
  err_is(sf_max_dim(&fresh, &idx, &a, 5, 0, 1), "min: dimension 6 out of range", "max_dim dim out of range");
  err_is(sf_var_dim(&fresh, &a, 7, 0, 1), "var: dimension 8 out of range", "var dim out of range");
  err_is(sf_var_all(&r, &a, -1), "var: ddof is -1, expected >= 0", "negative ddof");
  err_is(sf_std_dim(&fresh, &a, 0, 0, -2), "std: ddof is -2, expected >= 0", "negative ddof (std_dim)");
  err_is(sf_softmax(&fresh, &a, 2, 1), "log_softmax: dimension 3 out of range", "softmax dim out of range");
  err_is(sf_reduce_all(&r, &a, SF_NORM, NAN), "norm: the norm order p is nan", "nan p");
  err_is(sf_reduce_all(&r, &fresh, SF_SUM, 0), "sum: argument #1 is an empty (released) tensor", "released input");
  err_is(sf_allclose(&(int){0}, &a, &fresh, 1e-5, 1e-8), "allclose: argument #2 is an empty (released) tensor",
         "allclose released input");
  ok(fresh.storage == NULL, "output still empty after every error");

  int64_t zshape[2] = {0, 3};
  sf_tensor z = SF_TENSOR_EMPTY;
  sf_tensor_zeros(&z, 2, zshape);
  err_is(sf_reduce_all(&r, &z, SF_MAX, 0), "max: cannot reduce an empty tensor of shape [0,3]", "empty max");
  err_is(sf_reduce_dim(&fresh, &z, 0, 0, SF_ARGMIN, 0),
         "argmin: cannot reduce an empty tensor of shape [0,3] along dimension 1", "empty argmin along dim");
  ok(sf_reduce_dim(&out, &z, 1, 0, SF_MAX, 0) == 0 && out.size[0] == 0, "max over a non-empty dim of [0,3]");

  sf_tensor_release(&z);
  sf_tensor_release(&a);
  sf_tensor_release(&out);
  sf_tensor_release(&idx);
  sf_tensor_release(&v);
  ok(sf_storage_live_bytes() == 0, "all storage released");
  printf("1..%d\n", ntest);
  return nfail ? 1 : 0;
}
