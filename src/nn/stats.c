/* Gradient statistics: norms, NaN/Inf counts, and the two SNR definitions. */
#include <cblas.h>
#include <math.h>

#include "nn.h"

void sf_stats(sf_tensor_stats *out, const float *x, int64_t n) {
  double ss = 0.0, mx = 0.0;
  int64_t nan = 0, inf = 0;
  for (int64_t i = 0; i < n; i++) {
    float v = x[i];
    if (isnan(v)) {
      nan++;
    } else if (isinf(v)) {
      inf++;
    } else {
      double a = fabs((double)v);
      ss += a * a;
      if (a > mx) mx = a;
    }
  }
  out->sum_sq = ss;
  out->max_abs = mx;
  out->n_nan = nan;
  out->n_inf = inf;
}

double sf_snr_examples(const float *g, int64_t B, int64_t n, double eps) {
  if (B < 2 || n == 0) return NAN;
  double total = 0.0;
  for (int64_t j = 0; j < n; j++) {
    double mean = 0.0;
    for (int64_t b = 0; b < B; b++) mean += (double)g[b * n + j];
    mean /= (double)B;
    double var = 0.0;
    for (int64_t b = 0; b < B; b++) {
      double d = (double)g[b * n + j] - mean;
      var += d * d;
    }
    var /= (double)(B - 1);
    total += mean * mean / (var + eps);
  }
  return total / (double)n;
}

double sf_snr_code(const float *g, int64_t rows, int64_t cols, double eps) {
  if (rows < 2 || cols == 0) return NAN;
  double total = 0.0;
  for (int64_t j = 0; j < cols; j++) {
    double mean = 0.0;
    for (int64_t r = 0; r < rows; r++) mean += (double)g[r * cols + j];
    mean /= (double)rows;
    double var = 0.0;
    for (int64_t r = 0; r < rows; r++) {
      double d = (double)g[r * cols + j] - mean;
      var += d * d;
    }
    var /= (double)(rows - 1);
    for (int64_t r = 0; r < rows; r++) {
      double v = (double)g[r * cols + j];
      total += v * v / (var + eps);
    }
  }
  return total / (double)(rows * cols);
}

/* Per example: g = dout_n^T inp_n ([K,T] x [T,C]), one sgemm into scratch, then the
 * moments; the bias gradient is the sum of dout_n over its T rows. */
int sf_linear_grad_moments(float *sum_w, float *sumsq_w, float *sum_b, float *sumsq_b, const float *dout,
                           const float *inp, int64_t N, int64_t T, int64_t C, int64_t K) {
  float *g = sf_scratch((size_t)(K * C + K));
  if (!g) return -1;
  sf_threads_ensure();
  for (int64_t n = 0; n < N; n++) {
    const float *dn = dout + n * T * K, *xn = inp + n * T * C;
    if (sum_w || sumsq_w) {
      cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)K, (int)C, (int)T, 1.0f, dn, (int)K, xn, (int)C, 0.0f,
                  g, (int)C);
      for (int64_t j = 0; j < K * C; j++) {
        if (sum_w) sum_w[j] += g[j];
        if (sumsq_w) sumsq_w[j] += g[j] * g[j];
      }
    }
    if (sum_b || sumsq_b) {
      float *b = g + K * C;
      for (int64_t k = 0; k < K; k++) b[k] = 0.0f;
      for (int64_t t = 0; t < T; t++)
        for (int64_t k = 0; k < K; k++) b[k] += dn[t * K + k];
      for (int64_t k = 0; k < K; k++) {
        if (sum_b) sum_b[k] += b[k];
        if (sumsq_b) sumsq_b[k] += b[k] * b[k];
      }
    }
  }
  return 0;
}
