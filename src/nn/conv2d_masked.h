/* The 3x3 pad-1 convolution (stride 1 on unpadded planes, stride 2 on dense phase
 * planes) with masked loads (AVX-512 builds; conv2d.c dispatches to it). Internal to
 * src/nn. */
#ifndef SF_CONV2D_MASKED_H
#define SF_CONV2D_MASKED_H
#include <stdint.h>

/* does the geometry take the masked path (3x3 pad 1, stride 1 or 2; always 0 without
 * AVX-512)? */
int sf_conv2d_masked_ok(int64_t H, int64_t W, int64_t R, int64_t S, int64_t stride_h, int64_t stride_w,
                        int64_t pad_h, int64_t pad_w);
/* out[N,Co,H,W] = the 3x3 pad-1 correlation of in[N,Ci,H,W] with wp[(c*9 + t)*Co + k]
 * (+ bias[Co]) (+ residual[N,Co,H,W]), then max(., 0) when relu; stats[N,Co,2] (when not
 * NULL): each image's sf_batchnorm_image_stats of its output. Over `parts` parts of the
 * pool. Returns -1 (nothing written) when its mask table cannot be allocated. */
int sf_conv2d_masked_run(float *out, const float *in, const float *wp, int64_t N, int64_t Ci, int64_t Co, int64_t H,
                         int64_t W, const float *bias, const float *residual, int relu, float *stats, int parts);
/* The weight gradient of the same convolution (stride 1 or 2) over images [0, N) of
 * dout[N,K,OH,OW] and inp[N,C,H,W], split into `parts` parts of the pool: partial[p]
 * [K*C*9] is part p's sum (in that part's thread scratch2, valid until the thread's next
 * job; stride 2 also uses sf_scratch for a chunk's phase planes). -1 when the mask table
 * or a part's scratch cannot be allocated (partials then incomplete). */
int sf_conv2d_masked_wgrad(float **partial, int parts, const float *dout, const float *inp, int64_t N, int64_t C,
                           int64_t K, int64_t H, int64_t W, int stride);
/* images per chunk of that weight gradient for an OH x OW output plane */
int64_t sf_conv2d_masked_wgrad_chunk(int64_t OH, int64_t OW);
/* The stride-2 forward: out[N,Co,OH,OW] (OH = ceil(H/2), OW = ceil(W/2)) from in[N,Ci,H,W],
 * the rest as sf_conv2d_masked_run. Needs sf_scratch for Ci*4*OH*OW floats on every
 * thread. */
int sf_conv2d_masked_s2_run(float *out, const float *in, const float *wp, int64_t N, int64_t Ci, int64_t Co,
                            int64_t H, int64_t W, const float *bias, const float *residual, int relu, float *stats,
                            int parts);
/* images the stride-2 forward stacks on one grid for an OH x OW output plane (1: none) */
int64_t sf_conv2d_masked_s2_stack(int64_t OH, int64_t OW);
/* The stride-2 input gradient: wp [9*K*C] packed by sf_conv2d_masked_s2_bwd_pack from
 * weight [K,C,3,3]; dinp[N,C,H,W] from dout[N,K,OH,OW]. Needs sf_scratch2 for 4*C*OH*OW
 * floats on every thread. -1 (nothing written) when its mask tables cannot be allocated. */
void sf_conv2d_masked_s2_bwd_pack(float *wp, const float *weight, int64_t K, int64_t C);
int sf_conv2d_masked_s2_backward_input(float *dinp, const float *dout, const float *wp, int64_t N, int64_t K,
                                       int64_t C, int64_t H, int64_t W, int parts);
/* the register tile it uses for P positions and Co output channels (narrow: a stride-2
 * geometry): channels x vectors, and kw: the channels of its wider blocks when some are
 * used (else 0) */
int sf_conv2d_masked_kind(int64_t P, int64_t Co, int narrow, int *kb, int *nv, int *kw);
#endif
