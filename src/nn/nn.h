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
/* a third one, for data the calling thread prepares for all parts (packed weights) */
float *sf_scratch3(size_t n);
/* Frees the calling thread's scratch buffers (they regrow on demand). */
void sf_scratch_release(void);

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
/* Grows this thread's scratch to what the three conv kernels need for shape s (bounded:
 * the images of a batch are processed in chunks of a few MB of columns). Call it before
 * the kernels: they are void and abort on a scratch allocation failure, whereas this
 * returns -1 with sf_err. */
int sf_conv2d_reserve(const sf_conv2d_shape *s);
/* Which algorithm each conv2d kernel uses for shape s (for tests, benchmarks and curious
 * users): "direct" (stride-1 register tiles on padded planes), "direct-phase" (stride 2
 * through padded phase planes), "direct-masked" (3x3 pad 1 stride 1 on the unpadded
 * planes, AVX-512), "direct-masked-phase" (3x3 pad 1 stride 2 on dense phase planes,
 * AVX-512), "pointwise" (1x1 stride 1: one sgemm per image),
 * "strided-pointwise" (1x1 strided: subsampled planes), "im2col" (columns + sgemm).
 * kernel: 0 forward, 1 input gradient, 2 weight gradient; 3 both gradients through
 * sf_conv2d_backward: "direct-fused" (one pass over dout) or "separate" (the two kernels). */
const char *sf_conv2d_path(const sf_conv2d_shape *s, int kernel);
/* the register tile shapes of the direct paths for kernel 0 (forward) or 1 (input
 * gradient), e.g. "8x3" or "8x2,16x1"; "" when that kernel takes another path */
void sf_conv2d_tiles(char *buf, size_t n, const sf_conv2d_shape *s, int kernel);
/* Switches the masked 3x3 path ("direct-masked", AVX-512 builds only) on or off for the
 * calls that follow (on by default; on < 0 only asks); returns the previous setting
 * (always 0 without AVX-512). For tests and benchmarks: off, those layers take the padded direct path. */
int sf_conv2d_masked_enable(int on);
/* The same for the Winograd F(2x2, 3x3) path of 3x3 stride-1 pad-1 layers with 16 or
 * more channels on both sides ("winograd", AVX-512 builds only; on by default): off, they
 * take the masked path, whose sums are the direct path's bit for bit. */
int sf_conv2d_winograd_enable(int on);
/* ... and for its F(4x4, 3x3) form ("winograd4": the forward and the input gradient of
 * those layers whose planes its 4x4 tiles fit better; on by default): off, they take
 * F(2x2, 3x3) (when that is on). */
int sf_conv2d_winograd4_enable(int on);
/* images per sgemm in the im2col path (for tests and benchmarks) */
int64_t sf_conv2d_chunk_images(const sf_conv2d_shape *s);
/* out[N,K,OH,OW] = conv(inp[N,C,H,W], weight[K,C,R,S]) + bias[K] (bias may be NULL) */
void sf_conv2d_forward(float *out, const float *inp, const float *weight, const float *bias, const sf_conv2d_shape *s);
/* The same with an epilogue applied as the result is written: out = conv + bias
 * (+ residual, [N,K,OH,OW], when not NULL), then max(out, 0) when relu. residual must
 * not overlap out. */
void sf_conv2d_forward_ex(float *out, const float *inp, const float *weight, const float *bias,
                          const float *residual, int relu, const sf_conv2d_shape *s);
/* The same, and when stats is not NULL, stats[N,K,2] = sf_batchnorm_image_stats of each
 * image's output, computed while that image's output is still in cache: the batch
 * statistics a training-mode BatchNorm after the convolution needs, without its pass
 * over the output (sf_batchnorm_forward_train's stats argument). */
void sf_conv2d_forward_stats(float *out, float *stats, const float *inp, const float *weight, const float *bias,
                             const float *residual, int relu, const sf_conv2d_shape *s);
/* dinp[N,C,H,W] (OVERWRITTEN) from dout[N,K,OH,OW] */
void sf_conv2d_backward_input(float *dinp, const float *dout, const float *weight, const sf_conv2d_shape *s);
/* dweight[K,C,R,S] += scale * gradient; dbias[K] += scale * sum of dout over N, OH, OW */
void sf_conv2d_backward_weight(float *dweight, float *dbias, const float *dout, const float *inp,
                               const sf_conv2d_shape *s, float scale);

/* Both gradients: the same results, bit for bit, as sf_conv2d_backward_weight(dweight,
 * dbias, dout, inp, s, scale) and sf_conv2d_backward_input(dinp, dout, weight, s) (any of
 * dinp, dweight, dbias may be NULL), in one pass over dout and inp when both dinp and
 * dweight are wanted on a stride-1 3x3 direct path (sf_conv2d_path kernel 3) */
void sf_conv2d_backward(float *dinp, float *dweight, float *dbias, const float *dout, const float *inp,
                        const float *weight, const sf_conv2d_shape *s, float scale);

/* ---- pooling (pool.c), NCHW, floor output sizes (PyTorch's ceil_mode = False) ---- */
typedef struct sf_pool2d_shape {
  int64_t N, C, H, W;          /* input  [N,C,H,W] */
  int64_t KH, KW;              /* window */
  int64_t OH, OW;              /* output [N,C,OH,OW] */
  int64_t stride_h, stride_w, pad_h, pad_w;
} sf_pool2d_shape;
/* fills OH, OW; -1 with sf_err ("name: ...") when the window, stride or padding is
 * invalid (padding must be at most half the window, as in PyTorch) */
int sf_pool2d_shape_init(sf_pool2d_shape *s, const char *name);
/* out[N,C,OH,OW] = max over each window (padding never wins; ties: the first in row-major
 * order; a NaN wins). indices[N,C,OH,OW] (may be NULL) receives the 0-based flat index
 * ih*W + iw of the maximum within its [H,W] plane, as a float (exact below 2^24). */
void sf_maxpool2d_forward(float *out, float *indices, const float *inp, const sf_pool2d_shape *s);
/* dinp[N,C,H,W] (OVERWRITTEN) = dout scattered to the saved indices, summed on overlap */
void sf_maxpool2d_backward(float *dinp, const float *dout, const float *indices, const sf_pool2d_shape *s);
/* Window means; count_include_pad = 1 divides by KH*KW (PyTorch's default), 0 by the
 * number of input elements in the window. */
void sf_avgpool2d_forward(float *out, const float *inp, const sf_pool2d_shape *s, int count_include_pad);
void sf_avgpool2d_backward(float *dinp, const float *dout, const sf_pool2d_shape *s, int count_include_pad);
/* out[N,C] = mean of inp[N,C,HW] over HW; dinp[N,C,HW] = dout[N,C] / HW (OVERWRITTEN) */
void sf_global_avgpool_forward(float *out, const float *inp, int64_t N, int64_t C, int64_t HW);
void sf_global_avgpool_backward(float *dinp, const float *dout, int64_t N, int64_t C, int64_t HW);

/* ---- optimizers (optim.c): one parameter tensor of n contiguous floats per call ----
 * Weight decay: coupled (L2 added to the gradient, as torch.optim.Adam / SGD) unless
 * decoupled (AdamW: p -= lr * wd * p before the update). lr already includes the
 * parameter's lr scale. State arrays (buf, m, v) have the parameter's layout. */
void sf_sgd_step(float *p, const float *g, float *buf, int64_t n, float lr, float momentum, float dampening,
                 int nesterov, float weight_decay, int first_step);
void sf_adam_step(float *p, const float *g, float *m, float *v, int64_t n, float lr, float beta1, float beta2,
                  float eps, float weight_decay, int decoupled, int64_t step);

/* ---- per-example gradient moments (stats.c, conv2d.c) ----
 * For each example n of a batch, its own weight gradient g_n (the part of the batch
 * gradient that example contributes); these ADD sum_n g_n and sum_n g_n^2 (elementwise)
 * into the given accumulators, from which a per-example SNR follows without storing the
 * per-example gradients. Bias moments likewise (either pair may be NULL). */
/* linear: dout [N,T,K], inp [N,T,C] (T = 1 for [N,C] inputs); moments of [K,C] and [K] */
int sf_linear_grad_moments(float *sum_w, float *sumsq_w, float *sum_b, float *sumsq_b, const float *dout,
                           const float *inp, int64_t N, int64_t T, int64_t C, int64_t K);
/* conv2d: dout [N,K,OH,OW], inp [N,C,H,W]; moments of [K,C,R,S] and [K] */
int sf_conv2d_grad_moments(float *sum_w, float *sumsq_w, float *sum_b, float *sumsq_b, const float *dout,
                           const float *inp, const sf_conv2d_shape *s);

/* ---- gradient statistics (stats.c) ---- */
typedef struct sf_tensor_stats {
  double sum_sq;      /* sum of squares of the values */
  double max_abs;     /* largest |value| among the finite ones */
  int64_t n_nan, n_inf;
} sf_tensor_stats;
void sf_stats(sf_tensor_stats *out, const float *x, int64_t n);
/* Per-tensor SNR from per-example gradients g[B][n] (B >= 2): the mean over the n
 * elements of mean_b(g)^2 / (var_b(g) + eps), var with ddof = 1. */
double sf_snr_examples(const float *g, int64_t B, int64_t n, double eps);
/* The released code's "SNR": with g[rows][cols] the batch-mean gradient of a tensor
 * viewed as its first axis x the rest, the mean over the tensor of g^2 / (variance of g
 * along the first axis + eps), the variance per column with ddof = 1 (torch.var's
 * default); NaN when rows < 2, as torch gives. */
double sf_snr_code(const float *g, int64_t rows, int64_t cols, double eps);

/* ---- normalisation (norm.c) ----
 * Statistics are accumulated in double per row and stored as float. Affine parameters
 * gamma/beta may be NULL (no affine: gamma = 1, beta = 0). Backward: dinp OVERWRITES,
 * dgamma/dbeta ADD scale * gradient; any of the three may be NULL (skipped; a frozen
 * affine costs nothing, and with dinp NULL too the call does nothing at all). */

/* BatchNorm over inp[N,C,HW] (HW = product of the trailing dims; 1 for BatchNorm1d),
 * statistics per channel over the N*HW values (requires N*HW >= 1; the binding asks > 1).
 * Training form: out[N,C,HW]; save_mean[C], save_invstd[C] = 1/sqrt(biased var + eps)
 * (either may be NULL); when running_mean/running_var[C] are non-NULL they are updated
 * as PyTorch: r = (1 - momentum) r + momentum * batch, with the UNBIASED variance.
 * The statistics are merged from each (image, channel) row's mean and M2 in image order;
 * stats [N,C,2] gives those rows' (mean, M2) as sf_batchnorm_image_stats computed them
 * (a convolution does, as it writes inp), or NULL to compute them here: same bits. */
void sf_batchnorm_forward_train(float *out, float *save_mean, float *save_invstd, float *running_mean,
                                float *running_var, const float *inp, const float *gamma, const float *beta,
                                const float *stats, int64_t N, int64_t C, int64_t HW, float momentum, float eps);
/* stats[C,2] of one image x[C,HW]: per channel (mean, M2 = sum (x - mean)^2 around that
 * float mean), what the training forward merges into the batch statistics */
void sf_batchnorm_image_stats(float *stats, const float *x, int64_t C, int64_t HW);
/* Given statistics mean[C], var[C] (the running ones): out = (inp - mean) / sqrt(var + eps)
 * * gamma + beta; save_invstd[C] (may be NULL) receives 1/sqrt(var + eps) for backward. */
void sf_batchnorm_forward_eval(float *out, float *save_invstd, const float *inp, const float *gamma,
                               const float *beta, const float *mean, const float *var, int64_t N, int64_t C,
                               int64_t HW, float eps);
/* mean[C], invstd[C]: what the forward used. batch_stats = 1: the statistics were the
 * batch's own (full formula, through mean and variance); 0: they were fixed constants
 * (dinp = dout * gamma * invstd). dinp[N,C,HW], dgamma[C], dbeta[C]. */
void sf_batchnorm_backward(float *dinp, float *dgamma, float *dbeta, const float *dout, const float *inp,
                           const float *gamma, const float *mean, const float *invstd, int64_t N, int64_t C,
                           int64_t HW, int batch_stats, float scale);
/* BatchNorm followed by ReLU in one pass (out = max(bn(inp), 0), NaN kept), and its
 * backward: dout counts only where the forward's bn(inp) was positive, recomputed bit for
 * bit from inp, gamma, beta, mean and invstd (so the ReLU's output need not be read).
 * Saves the ReLU's read-write pass and its tensor in both directions. Otherwise as above. */
void sf_batchnorm_relu_forward_train(float *out, float *save_mean, float *save_invstd, float *running_mean,
                                     float *running_var, const float *inp, const float *gamma, const float *beta,
                                     const float *stats, int64_t N, int64_t C, int64_t HW, float momentum, float eps);
/* out = max(bn(inp) + residual, 0) in one pass (a ResNet block's last norm, its sum with the
 * shortcut and the ReLU; the same bits as the three passes). out may be inp or residual.
 * Its backward is that of the ReLU, then sf_batchnorm_backward. */
void sf_batchnorm_add_relu_forward_train(float *out, float *save_mean, float *save_invstd, float *running_mean,
                                         float *running_var, const float *inp, const float *residual,
                                         const float *gamma, const float *beta, const float *stats, int64_t N,
                                         int64_t C, int64_t HW, float momentum, float eps);
void sf_batchnorm_relu_forward_eval(float *out, float *save_invstd, const float *inp, const float *gamma,
                                    const float *beta, const float *mean, const float *var, int64_t N, int64_t C,
                                    int64_t HW, float eps);
void sf_batchnorm_relu_backward(float *dinp, float *dgamma, float *dbeta, const float *dout, const float *inp,
                                const float *gamma, const float *beta, const float *mean, const float *invstd,
                                int64_t N, int64_t C, int64_t HW, int batch_stats, float scale);

/* LayerNorm of each of the M rows of inp[M,D] over its D elements; gamma/beta[D];
 * save_mean[M], save_rstd[M] (either may be NULL). */
void sf_layernorm_forward(float *out, float *save_mean, float *save_rstd, const float *inp, const float *gamma,
                          const float *beta, int64_t M, int64_t D, float eps);
void sf_layernorm_backward(float *dinp, float *dgamma, float *dbeta, const float *dout, const float *inp,
                           const float *gamma, const float *mean, const float *rstd, int64_t M, int64_t D,
                           float scale);

/* GroupNorm of inp[N,C,HW] with G groups (C % G == 0): statistics per (sample, group)
 * over (C/G)*HW values; gamma/beta[C] per channel; save_mean[N,G], save_rstd[N,G]. */
void sf_groupnorm_forward(float *out, float *save_mean, float *save_rstd, const float *inp, const float *gamma,
                          const float *beta, int64_t N, int64_t C, int64_t HW, int64_t G, float eps);
void sf_groupnorm_backward(float *dinp, float *dgamma, float *dbeta, const float *dout, const float *inp,
                           const float *gamma, const float *mean, const float *rstd, int64_t N, int64_t C,
                           int64_t HW, int64_t G, float scale);

/* ---- activations (activation.c): elementwise over n values ----
 * out may be inp, dinp may be dout (in place). Backward reads whichever of the saved
 * input or output is cheaper: ReLU either (same sign), GELU the input, Tanh and Sigmoid
 * the output (1 - y^2, y (1 - y): no transcendental call). */
void sf_relu_forward(float *out, const float *inp, int64_t n);
void sf_relu_backward(float *dinp, const float *dout, const float *inp_or_out, int64_t n);
/* out = max(a + b, 0) in one pass (a residual sum and its ReLU); out may be a or b */
void sf_add_relu_forward(float *out, const float *a, const float *b, int64_t n);
/* approximate = 0: x * Phi(x) with the exact erf (PyTorch's default); 1: the tanh form */
void sf_gelu_forward(float *out, const float *inp, int64_t n, int approximate);
void sf_gelu_backward(float *dinp, const float *dout, const float *inp, int64_t n, int approximate);
void sf_tanh_forward(float *out, const float *inp, int64_t n);
void sf_tanh_backward(float *dinp, const float *dout, const float *out, int64_t n);
void sf_sigmoid_forward(float *out, const float *inp, int64_t n);
void sf_sigmoid_backward(float *dinp, const float *dout, const float *out, int64_t n);

/* ---- dropout (activation.c) ----
 * mask[n] gets 1 (kept) or 0 (dropped), element i dropped when the i-th uniform draw
 * from rng is < p; exactly n draws are made whatever p is, so the generator advances
 * the same way for every p. out = inp * mask / (1 - p) (0 everywhere when p = 1).
 * Backward: dinp = dout * mask / (1 - p). Counted as activations. */
struct sf_rng;
void sf_dropout_forward(float *out, float *mask, const float *inp, int64_t n, float p, struct sf_rng *rng);
void sf_dropout_backward(float *dinp, const float *dout, const float *mask, int64_t n, float p);

/* ---- losses (loss.c): scalar loss in double, gradient OVERWRITTEN when non-NULL ---- */
/* Cross-entropy from logits[N,K], target[N] 0-based class ids, mean over N. With label
 * smoothing e the target distribution is q = (1 - e) onehot + e / K (PyTorch's).
 * dlogits[N,K] = scale * (softmax - q) / N. Returns -1 with sf_err naming the (0-based)
 * index and value of an out-of-range target, before writing anything. */
int sf_cross_entropy(double *loss, float *dlogits, const float *logits, const int64_t *target, int64_t N,
                     int64_t K, float label_smoothing, float scale);
/* mean over n of (pred - target)^2; dpred[n] = scale * 2 (pred - target) / n */
double sf_mse(float *dpred, const float *pred, const float *target, int64_t n, float scale);
/* TENT's objective: mean over N of the entropy -sum_k p log p of softmax(logits[N,K]);
 * dlogits[N,K] = -scale * p (log p + H_row) / N */
double sf_softmax_entropy(float *dlogits, const float *logits, int64_t N, int64_t K, float scale);

#endif
