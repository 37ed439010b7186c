/* placeholder C test, without Lua: TAP output. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "src/core/rng.h"
#include "src/core/tensor.h"

static int ntest = 0, nfail = 0;

static void ok(int cond, const char *what) {
  ntest++;
  if (!cond) nfail++;
  printf("%s %d - %s\n", cond ? "ok" : "not ok", ntest, what);
}

int main(void) {
  sf_tensor t = SF_TENSOR_EMPTY;
  int64_t shape[2] = {3, 4};
  ok(sf_tensor_zeros(&t, 2, shape) == 0, "zeros");
  ok(sf_tensor_numel(&t) == 12, "numel");
  sf_tensor_release(&t);
  ok(sf_storage_live_bytes() == 0, "all storage released");
  printf("1..%d\n", ntest);
  return nfail ? 1 : 0;
}
