/* Loss kernels: cross-entropy from logits (label smoothing), MSE, softmax entropy. */
#include <math.h>

#include "nn.h"

/* log-sum-exp of a row, shifted by its maximum so that exp never overflows */
static double row_logsumexp(const float *x, int64_t K) {
  float mx = x[0];
  for (int64_t k = 1; k < K; k++)
    if (x[k] > mx) mx = x[k];
  double s = 0.0;
  for (int64_t k = 0; k < K; k++) s += exp((double)x[k] - (double)mx);
  return (double)mx + log(s);
}

int sf_cross_entropy(double *loss, float *dlogits, const float *logits, const int64_t *target, int64_t N,
                     int64_t K, float label_smoothing, float scale) {
  for (int64_t n = 0; n < N; n++)
    if (target[n] < 0 || target[n] >= K)
      return sf_err("cross_entropy: target %lld at index %lld is out of range for %lld classes",
                    (long long)target[n], (long long)n, (long long)K);
  sf_nn_count(SF_K_LOSS_FWD);
  if (dlogits) sf_nn_count(SF_K_LOSS_BWD);
  const double e = (double)label_smoothing;
  const double off = e / (double)K; /* smoothing mass on every class */
  const double gscale = (double)scale / (double)N;
  double total = 0.0;
  for (int64_t n = 0; n < N; n++) {
    const float *x = logits + n * K;
    const double lse = row_logsumexp(x, K);
    const int64_t y = target[n];
    /* -sum_k q_k log p_k with q = (1 - e) onehot(y) + e/K and log p_k = x_k - lse */
    double l = -(1.0 - e) * ((double)x[y] - lse);
    if (e != 0.0) {
      double sum_logp = 0.0;
      for (int64_t k = 0; k < K; k++) sum_logp += (double)x[k] - lse;
      l -= off * sum_logp;
    }
    total += l;
    if (dlogits) {
      float *d = dlogits + n * K;
      for (int64_t k = 0; k < K; k++) {
        const double q = (k == y ? 1.0 - e : 0.0) + off;
        d[k] = (float)((exp((double)x[k] - lse) - q) * gscale);
      }
    }
  }
  *loss = N > 0 ? total / (double)N : 0.0;
  return 0;
}

double sf_mse(float *dpred, const float *pred, const float *target, int64_t n, float scale) {
  sf_nn_count(SF_K_LOSS_FWD);
  if (dpred) sf_nn_count(SF_K_LOSS_BWD);
  double s = 0.0;
  const float g = n > 0 ? 2.0f * scale / (float)n : 0.0f;
  for (int64_t i = 0; i < n; i++) {
    const float d = pred[i] - target[i];
    s += (double)d * (double)d;
    if (dpred) dpred[i] = g * d;
  }
  return n > 0 ? s / (double)n : 0.0;
}

double sf_softmax_entropy(float *dlogits, const float *logits, int64_t N, int64_t K, float scale) {
  sf_nn_count(SF_K_LOSS_FWD);
  if (dlogits) sf_nn_count(SF_K_LOSS_BWD);
  const double gscale = (double)scale / (double)N;
  double total = 0.0;
  for (int64_t n = 0; n < N; n++) {
    const float *x = logits + n * K;
    const double lse = row_logsumexp(x, K);
    double h = 0.0;
    for (int64_t k = 0; k < K; k++) {
      const double lp = (double)x[k] - lse, p = exp(lp);
      if (p > 0.0) h -= p * lp; /* p log p -> 0 as p -> 0, also for a -inf logit */
    }
    total += h;
    if (dlogits) {
      /* dH/dx_j = -p_j (log p_j + H) */
      float *d = dlogits + n * K;
      for (int64_t k = 0; k < K; k++) {
        const double lp = (double)x[k] - lse, p = exp(lp);
        d[k] = p > 0.0 ? (float)(-p * (lp + h) * gscale) : 0.0f;
      }
    }
  }
  return N > 0 ? total / (double)N : 0.0;
}
