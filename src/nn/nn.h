/*
 * surgft nn kernels: stateless forward/backward pairs over raw float arrays.
 *
 * The model is THNN and llm.c: a kernel is a pure C function of pointers and sizes, with
 * outputs first and gradients named with a d prefix (dinp, dweight). Shapes are named
 * once (N batch, C channels, H, W, K out features) and every pointer's layout is written
 * beside it. No Lua, no allocation of results: the binding (src/lua/l_nn.c) validates
 * shapes, allocates outputs and calls these. Temporary workspace comes from
 * sf_scratch() (one growable buffer per thread, never freed mid-call).
 *
 * Accumulation: weight-gradient kernels ADD into dweight/dbias (Torch's
 * accGradParameters), so gradients of several backward calls sum; input-gradient
 * kernels OVERWRITE dinp. A NULL gradient pointer means "not needed": the kernel skips
 * that work entirely (this is how frozen layers cost nothing).
 *
 * Every kernel call bumps a counter (sf_nn_count) so tests can prove skipped work.
 */
#ifndef SF_NN_H
#define SF_NN_H

#include <stddef.h>
#include <stdint.h>

#include "../core/tensor.h"

/* ---- scratch workspace (scratch.c) ---- */
/* A per-thread buffer of at least n floats, 64-byte aligned; NULL + sf_err when out of
 * memory. Valid until the next sf_scratch call on the same thread. */
float *sf_scratch(size_t n);
/* a second, independent scratch buffer for kernels that need two */
float *sf_scratch2(size_t n);

/* ---- kernel call counters (scratch.c) ---- */
typedef enum {
  SF_K_LINEAR_FWD, SF_K_LINEAR_BWD_INPUT, SF_K_LINEAR_BWD_WEIGHT,
  SF_K_CONV_FWD, SF_K_CONV_BWD_INPUT, SF_K_CONV_BWD_WEIGHT,
  SF_K_NORM_FWD, SF_K_NORM_BWD_INPUT, SF_K_NORM_BWD_AFFINE,
  SF_K_POOL_FWD, SF_K_POOL_BWD,
  SF_K_ACT_FWD, SF_K_ACT_BWD,
  SF_K_LOSS_FWD, SF_K_LOSS_BWD,
  SF_K_OPTIM_STEP,
  SF_K_COUNT
} sf_kernel_id;
void sf_nn_count(sf_kernel_id k);
int64_t sf_nn_counter(sf_kernel_id k);
const char *sf_nn_counter_name(sf_kernel_id k);
void sf_nn_counters_reset(void);

/* ---- linear (linear.c): out[N,K] = inp[N,C] @ weight[K,C]^T + bias[K] ---- */
void sf_linear_forward(float *out, const float *inp, const float *weight, const float *bias, int64_t N, int64_t C,
                       int64_t K);
/* dinp[N,C] = dout[N,K] @ weight[K,C] (overwrites) */
void sf_linear_backward_input(float *dinp, const float *dout, const float *weight, int64_t N, int64_t C, int64_t K);
/* dweight[K,C] += scale * dout^T @ inp; dbias[K] += scale * sum_n dout (either may be NULL) */
void sf_linear_backward_weight(float *dweight, float *dbias, const float *dout, const float *inp, int64_t N,
                               int64_t C, int64_t K, float scale);

/* ---- conv2d (conv2d.c), NCHW ---- */
typedef struct sf_conv2d_shape {
  int64_t N, C, H, W;        /* input  [N,C,H,W] */
  int64_t K, R, S;           /* weight [K,C/groups,R,S] */
  int64_t OH, OW;            /* output [N,K,OH,OW] */
  int64_t stride_h, stride_w, pad_h, pad_w;
  int64_t groups;            /* 1 for now; kept for depthwise later */
} sf_conv2d_shape;
/* fills OH, OW; 0 or -1 with sf_err naming the shapes when the geometry is impossible */
int sf_conv2d_shape_init(sf_conv2d_shape *s);
void sf_conv2d_forward(float *out, const float *inp, const float *weight, const float *bias, const sf_conv2d_shape *s);
void sf_conv2d_backward_input(float *dinp, const float *dout, const float *weight, const sf_conv2d_shape *s);
void sf_conv2d_backward_weight(float *dweight, float *dbias, const float *dout, const float *inp,
                               const sf_conv2d_shape *s, float scale);

#endif
