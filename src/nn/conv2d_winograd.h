/* The stride-1 3x3 pad-1 convolution by Winograd's minimal filtering F(2x2, 3x3)
 * (AVX-512 builds; conv2d.c dispatches to it, for the forward and, with the flipped
 * kernel, the input gradient). Internal to src/nn. */
#ifndef SF_CONV2D_WINOGRAD_H
#define SF_CONV2D_WINOGRAD_H
#include <stdint.h>

/* (sf_conv2d_winograd_enable, the switch, is in nn.h) */
/* does a 3x3 pad-1 stride-1 geometry with Ci input and Co output channels take it? */
int sf_conv2d_winograd_ok(int64_t Ci, int64_t Co, int64_t H, int64_t W);
/* floats of the transformed weights the caller provides (vw below) */
int64_t sf_conv2d_winograd_wfloats(int64_t Ci, int64_t Co);
/* floats of sf_scratch and sf_scratch2 every part's thread needs */
void sf_conv2d_winograd_scratch(int64_t Ci, int64_t Co, int64_t H, int64_t W, int64_t *n1, int64_t *n2);
/* out[N,Co,H,W] = the 3x3 pad-1 correlation of in[N,Ci,H,W] with wp[(c*9 + t)*Co + k]
 * (+ bias[Co]) (+ residual[N,Co,H,W]), then max(., 0) when relu; stats[N,Co,2] (when not
 * NULL): each image's sf_batchnorm_image_stats of its output. vw: the caller's space for
 * sf_conv2d_winograd_wfloats floats. Over `parts` parts of the pool, each in its thread's
 * sf_scratch and sf_scratch2 (reserved through sf_conv2d_reserve). */
void sf_conv2d_winograd_run(float *out, const float *in, const float *wp, float *vw, int64_t N, int64_t Ci,
                            int64_t Co, int64_t H, int64_t W, const float *bias, const float *residual, int relu,
                            float *stats, int parts);
/* The weight gradient of the same convolution by F(3x3, 2x2), over images [0, N) of
 * dout[N,K,H,W] and inp[N,C,H,W] split into `parts` parts of the pool: partial[p]
 * [K*C*9] is part p's sum (in its thread's sf_scratch2, valid until the thread's next job).
 * Needs C and K multiples of 4. -1 when a part's scratch cannot be allocated. */
int sf_conv2d_winograd_wgrad_ok(int64_t C, int64_t K, int64_t H, int64_t W);
void sf_conv2d_winograd_wgrad_scratch(int64_t C, int64_t K, int64_t H, int64_t W, int64_t *n1, int64_t *n2);
int sf_conv2d_winograd_wgrad(float **partial, int parts, const float *dout, const float *inp, int64_t N, int64_t C,
                             int64_t K, int64_t H, int64_t W);
#endif
