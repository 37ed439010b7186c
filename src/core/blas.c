/* BLAS: matrix products through OpenBLAS sgemm, and the thread count. */
#include <cblas.h>
#include <stdlib.h>
#include <unistd.h>

#include "tensor.h"

void sf_set_threads(int n) {
  if (n < 1) n = 1;
  openblas_set_num_threads(n);
}

int sf_threads(void) { return openblas_get_num_threads(); }

const char *sf_blas_config(void) { return openblas_get_config(); }
