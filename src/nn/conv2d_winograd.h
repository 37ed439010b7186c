/* The 3x3 pad-1 convolutions by Winograd's minimal filtering (AVX-512 builds; conv2d.c
 * dispatches to them): stride 1 by F(2x2, 3x3) (conv2d_winograd.c) or F(4x4, 3x3)
 * (conv2d_winograd4.c), the input gradient with the flipped kernel, the weight gradient by
 * F(3x3, 2x2) or F(4x4, 3x3)'s transpose; stride 2 by F(2, 2) on the phases
 * (conv2d_winograd_s2.c). Internal to src/nn. */
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
/* The stride-2 3x3 pad-1 convolution by Winograd's F(2, 2) on its phases
 * (conv2d_winograd_s2.c): the forward, the input gradient and the weight gradient of an
 * input plane H x W (output ceil(H/2) x ceil(W/2)), C input and K output channels. */
int sf_conv2d_winograd_s2_ok(int64_t C, int64_t K, int64_t H, int64_t W);
/* ... the weight gradient's (channels in multiples of 4 as well) */
int sf_conv2d_winograd_s2_wgrad_ok(int64_t C, int64_t K, int64_t H, int64_t W);
/* floats of the transformed weights: Ci the products' reduction channels (C forward, K
 * input gradient), Co the others */
int64_t sf_conv2d_winograd_s2_wfloats(int64_t Ci, int64_t Co);
/* floats of sf_scratch and sf_scratch2 every part's thread needs: kernel 0 the forward, 1
 * the input gradient, 2 the weight gradient */
void sf_conv2d_winograd_s2_scratch(int kernel, int64_t C, int64_t K, int64_t H, int64_t W, int64_t *n1,
                                   int64_t *n2);
/* out[N,Co,OH,OW] from in[N,Ci,H,W], the rest as sf_conv2d_winograd_run */
void sf_conv2d_winograd_s2_run(float *out, const float *in, const float *wp, float *vw, int64_t N, int64_t Ci,
                               int64_t Co, int64_t H, int64_t W, const float *bias, const float *residual, int relu,
                               float *stats, int parts);
/* dinp[N,C,H,W] from dout[N,K,OH,OW]; wpf[((k*3 + r)*3 + s)*C + c] = weight[k][c][2-r][2-s]
 * (the flipped kernel); vw: room for sf_conv2d_winograd_s2_wfloats(K, C) floats */
void sf_conv2d_winograd_s2_backward_input(float *dinp, const float *dout, const float *wpf, float *vw, int64_t N,
                                          int64_t K, int64_t C, int64_t H, int64_t W, int parts);
/* partial[p] [K*C*9]: part p's sum of the weight gradient over its images (in its
 * thread's sf_scratch2); -1 when a part's scratch cannot be allocated */
int sf_conv2d_winograd_s2_wgrad(float **partial, int parts, const float *dout, const float *inp, int64_t N,
                                int64_t C, int64_t K, int64_t H, int64_t W);
/* F(4x4, 3x3) for the same layers (conv2d_winograd4.c): taken for the forward (Ci = C,
 * Co = K) and the input gradient (Ci = K, Co = C, the flipped kernel) where its tiles take
 * fewer multiplies than F(2x2, 3x3)'s; its transformed weights, scratch and run as those
 * of sf_conv2d_winograd_run. */
int sf_conv2d_winograd4_ok(int64_t Ci, int64_t Co, int64_t H, int64_t W);
int64_t sf_conv2d_winograd4_wfloats(int64_t Ci, int64_t Co);
void sf_conv2d_winograd4_scratch(int64_t Ci, int64_t Co, int64_t H, int64_t W, int64_t *n1, int64_t *n2);
void sf_conv2d_winograd4_run(float *out, const float *in, const float *wp, float *vw, int64_t N, int64_t Ci,
                             int64_t Co, int64_t H, int64_t W, const float *bias, const float *residual, int relu,
                             float *stats, int parts);
/* ... and the weight gradient by the transpose of F(4x4, 3x3) where it is taken (channels in
 * multiples of 4 both ways), as sf_conv2d_winograd_wgrad */
int sf_conv2d_winograd4_wgrad_ok(int64_t C, int64_t K, int64_t H, int64_t W);
void sf_conv2d_winograd4_wgrad_scratch(int64_t C, int64_t K, int64_t H, int64_t W, int64_t *n1, int64_t *n2);
int sf_conv2d_winograd4_wgrad(float **partial, int parts, const float *dout, const float *inp, int64_t N, int64_t C,
                              int64_t K, int64_t H, int64_t W);
#endif
