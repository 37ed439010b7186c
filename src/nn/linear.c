/* Linear (fully connected) kernels: forward, input gradient and weight gradient, each
 * one OpenBLAS sgemm over the whole batch. */
#include <cblas.h>
#include <string.h>

#include "../core/parallel.h"
#include "nn.h"

/* Sizes reach sgemm as blasint; the bindings check this bound before calling. */
#define BI(x) ((blasint)(x))

/* one product over rows: out = inp @ weight^T (+ bias) for the forward; for the input
 * gradient out is dinp and inp is dout */
typedef struct {
  float *out;
  const float *inp, *weight, *bias;
  int64_t C, K;
} linear_ctx;

/* rows [lo, hi) of out[N,K] = inp @ weight^T + bias: the bias broadcast over the rows
 * first, then sgemm accumulates into it (beta = 1), which saves a second pass */
static void fwd_rows(void *ctx, int64_t lo, int64_t hi, int part) {
  (void)part;
  const linear_ctx *l = ctx;
  const int64_t C = l->C, K = l->K;
  float *out = l->out + lo * K;
  float beta = 0.0f;
  if (l->bias) {
    for (int64_t n = lo; n < hi; n++) memcpy(l->out + n * K, l->bias, (size_t)K * sizeof(float));
    beta = 1.0f;
  }
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, BI(hi - lo), BI(K), BI(C), 1.0f, l->inp + lo * C, BI(C),
              l->weight, BI(C), beta, out, BI(K));
}

/* rows [lo, hi) of dinp[N,C] = dout[N,K] @ weight[K,C] */
static void bwd_input_rows(void *ctx, int64_t lo, int64_t hi, int part) {
  (void)part;
  const linear_ctx *l = ctx;
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, BI(hi - lo), BI(l->C), BI(l->K), 1.0f, l->inp + lo * l->K,
              BI(l->K), l->weight, BI(l->C), 0.0f, l->out + lo * l->C, BI(l->C));
}

/* The rows of a product with a short inner dimension (a transformer's tokens x 64) are
 * split over the threads, each running a single-threaded sgemm on its rows: OpenBLAS's
 * own threading spent more in packing and synchronisation than it saved there. Rows are
 * independent, so the split does not change a bit. Large inner dimensions stay with
 * OpenBLAS. Parts of at least 4 MFLOP. */
static int row_parts(int64_t N, int64_t C, int64_t K) {
  if (C > 256) return 1;
  const double per_row = 2.0 * (double)C * (double)K;
  const int64_t grain = per_row >= 4e6 ? 1 : (int64_t)(4e6 / per_row) + 1;
  return sf_parallel_parts(N, grain);
}

void sf_linear_forward(float *out, const float *inp, const float *weight, const float *bias, int64_t N, int64_t C,
                       int64_t K) {
  sf_nn_count(SF_K_LINEAR_FWD);
  if (N == 0 || K == 0) return;
  sf_threads_ensure();
  if (C == 0) {
    if (bias)
      for (int64_t n = 0; n < N; n++) memcpy(out + n * K, bias, (size_t)K * sizeof(float));
    else
      memset(out, 0, (size_t)(N * K) * sizeof(float));
    return;
  }
  linear_ctx l = {out, inp, weight, bias, C, K};
  sf_parallel_for_blas(row_parts(N, C, K), N, fwd_rows, &l);
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
  linear_ctx l = {dinp, dout, weight, NULL, C, K};
  sf_parallel_for_blas(row_parts(N, K, C), N, bwd_input_rows, &l);
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
