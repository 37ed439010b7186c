/* Linear (fully connected) kernels: forward, input gradient and weight gradient, each
 * one OpenBLAS sgemm over the whole batch. */
#include <cblas.h>
#include <string.h>

#include "nn.h"

/* Sizes reach sgemm as blasint; the bindings check this bound before calling. */
#define BI(x) ((blasint)(x))

void sf_linear_forward(float *out, const float *inp, const float *weight, const float *bias, int64_t N, int64_t C,
                       int64_t K) {
  sf_nn_count(SF_K_LINEAR_FWD);
  if (N == 0 || K == 0) return;
  sf_threads_ensure();
  /* out[N,K]: bias broadcast over rows first, then sgemm accumulates into it (beta = 1),
   * which saves a second pass over the output */
  float beta = 0.0f;
  if (bias) {
    for (int64_t n = 0; n < N; n++) memcpy(out + n * K, bias, (size_t)K * sizeof(float));
    beta = 1.0f;
  }
  if (C == 0) {
    if (!bias) memset(out, 0, (size_t)(N * K) * sizeof(float));
    return;
  }
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, BI(N), BI(K), BI(C), 1.0f, inp, BI(C), weight, BI(C), beta,
              out, BI(K));
}

void sf_linear_backward_input(float *dinp, const float *dout, const float *weight, int64_t N, int64_t C, int64_t K) {
  if (!dinp) return;
  sf_nn_count(SF_K_LINEAR_BWD_INPUT);
  if (N == 0 || C == 0) return;
  if (K == 0) {
    memset(dinp, 0, (size_t)(N * C) * sizeof(float));
    return;
  }
  sf_threads_ensure();
  /* dinp[N,C] = dout[N,K] @ weight[K,C] */
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, BI(N), BI(C), BI(K), 1.0f, dout, BI(K), weight, BI(C), 0.0f,
              dinp, BI(C));
}

void sf_linear_backward_weight(float *dweight, float *dbias, const float *dout, const float *inp, int64_t N,
                               int64_t C, int64_t K, float scale) {
  if (!dweight && !dbias) return;
  sf_nn_count(SF_K_LINEAR_BWD_WEIGHT);
  if (N == 0 || K == 0) return;
  if (dweight && C > 0) {
    sf_threads_ensure();
    /* dweight[K,C] += scale * dout[N,K]^T @ inp[N,C] */
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, BI(K), BI(C), BI(N), scale, dout, BI(K), inp, BI(C), 1.0f,
                dweight, BI(C));
  }
  if (dbias) {
    /* column sums of dout: rows streamed in order (cache friendly), partial sums in
     * float per block of rows, folded into double so long batches keep precision */
    enum { BLOCK = 64 };
    float acc[256];
    for (int64_t k0 = 0; k0 < K; k0 += 256) {
      const int64_t kn = K - k0 < 256 ? K - k0 : 256;
      double tot[256];
      for (int64_t k = 0; k < kn; k++) tot[k] = 0.0;
      for (int64_t n0 = 0; n0 < N; n0 += BLOCK) {
        const int64_t n1 = n0 + BLOCK < N ? n0 + BLOCK : N;
        for (int64_t k = 0; k < kn; k++) acc[k] = 0.0f;
        for (int64_t n = n0; n < n1; n++) {
          const float *row = dout + n * K + k0;
          for (int64_t k = 0; k < kn; k++) acc[k] += row[k];
        }
        for (int64_t k = 0; k < kn; k++) tot[k] += (double)acc[k];
      }
      for (int64_t k = 0; k < kn; k++) dbias[k0 + k] += (float)((double)scale * tot[k]);
    }
  }
}
