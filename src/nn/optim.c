/* Optimizer update kernels: SGD (momentum, dampening, Nesterov) and Adam / AdamW. */
#include <math.h>

#include "nn.h"

void sf_sgd_step(float *p, const float *g, float *buf, int64_t n, float lr, float momentum, float dampening,
                 int nesterov, float weight_decay, int first_step) {
  sf_nn_count(SF_K_OPTIM_STEP);
  if (momentum == 0.0f) {
    for (int64_t i = 0; i < n; i++) p[i] -= lr * (g[i] + weight_decay * p[i]);
    return;
  }
  for (int64_t i = 0; i < n; i++) {
    float d = g[i] + weight_decay * p[i];
    /* torch.optim.SGD: the first step's buffer is the gradient itself, undamped */
    float b = first_step ? d : momentum * buf[i] + (1.0f - dampening) * d;
    buf[i] = b;
    p[i] -= lr * (nesterov ? d + momentum * b : b);
  }
}

void sf_adam_step(float *p, const float *g, float *m, float *v, int64_t n, float lr, float beta1, float beta2,
                  float eps, float weight_decay, int decoupled, int64_t step) {
  sf_nn_count(SF_K_OPTIM_STEP);
  /* bias corrections as torch.optim.Adam: p -= lr / bc1 * m / (sqrt(v) / sqrt(bc2) + eps) */
  double bc1 = 1.0 - pow((double)beta1, (double)step);
  double bc2 = 1.0 - pow((double)beta2, (double)step);
  float step_size = (float)((double)lr / bc1);
  float inv_sqrt_bc2 = (float)(1.0 / sqrt(bc2));
  float decay = decoupled ? 1.0f - lr * weight_decay : 1.0f;
  float l2 = decoupled ? 0.0f : weight_decay;
  for (int64_t i = 0; i < n; i++) {
    float gi = g[i] + l2 * p[i];
    float mi = beta1 * m[i] + (1.0f - beta1) * gi;
    float vi = beta2 * v[i] + (1.0f - beta2) * gi * gi;
    m[i] = mi;
    v[i] = vi;
    p[i] = p[i] * decay - step_size * mi / (sqrtf(vi) * inv_sqrt_bc2 + eps);
  }
}
