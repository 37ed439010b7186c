/*
 * Kernel micro-benchmark: the nn kernels on preallocated buffers (no allocation, no Lua),
 * conv2d against the OpenBLAS sgemm rate, and the row/elementwise kernels of a CNN and
 * a small ViT step. Prints one table of medians over interleaved repeats. Not a test.
 *
 *   bench_kernels [repeats] [filter]   default 15 repeats; filter: run the cases whose
 *                                      name contains it; SURGFT_THREADS sets the threads
 */
#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "src/core/rng.h"
#include "src/core/tensor.h"
#include "src/nn/nn.h"

static int repeats = 15;

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* CPU time of all threads: on a loaded machine it still measures the work done (wall
 * time then mostly measures the other processes); spin-waiting counts as work */
static double cpu_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static float *randbuf(size_t n, sf_rng *g) {
  float *p = malloc(n * sizeof *p);
  if (!p) {
    fprintf(stderr, "bench_kernels: out of memory\n");
    exit(1);
  }
  for (size_t i = 0; i < n; i++) p[i] = (float)sf_rng_normal(g);
  return p;
}

/* ---- cases ---- */
typedef struct bcase {
  char name[64];
  double flops;                   /* per call; 0: report ms only */
  void (*run)(struct bcase *);
  /* operands */
  sf_conv2d_shape cs;
  int64_t M, D, n;
  float *a, *b, *c, *d, *e, *f, *g;
  int64_t *tgt;
  sf_tensor tx, ty; /* softmax operands */
  int which;
  double med;
} bcase;

static void run_sgemm(bcase *k) {
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)k->M, (int)k->n, (int)k->D, 1.0f, k->a, (int)k->D,
              k->b, (int)k->n, 0.0f, k->c, (int)k->n);
}
static void run_conv_fwd(bcase *k) { sf_conv2d_forward(k->c, k->a, k->b, NULL, &k->cs); }
static void run_conv_bwd_in(bcase *k) { sf_conv2d_backward_input(k->a, k->c, k->b, &k->cs); }
static void run_conv_bwd_w(bcase *k) { sf_conv2d_backward_weight(k->d, NULL, k->c, k->a, &k->cs, 1.0f); }
/* both gradients: the two kernels one after the other, and sf_conv2d_backward (dinp into
 * its own buffer e: the input is read after the first image's dinp is written) */
static void run_conv_bwd_sep(bcase *k) {
  sf_conv2d_backward_weight(k->d, NULL, k->c, k->a, &k->cs, 1.0f);
  sf_conv2d_backward_input(k->e, k->c, k->b, &k->cs);
}
static void run_conv_bwd(bcase *k) { sf_conv2d_backward(k->e, k->d, NULL, k->c, k->a, k->b, &k->cs, 1.0f); }
static void run_softmax(bcase *k) {
  if (sf_softmax(&k->ty, &k->tx, 1, k->which)) abort();
}
static void run_gelu_f(bcase *k) { sf_gelu_forward(k->c, k->a, k->n, 0); }
static void run_gelu_b(bcase *k) { sf_gelu_backward(k->c, k->b, k->a, k->n, 0); }
static void run_relu_f(bcase *k) { sf_relu_forward(k->c, k->a, k->n); }
static void run_relu_b(bcase *k) { sf_relu_backward(k->c, k->b, k->a, k->n); }
static void run_ln_f(bcase *k) { sf_layernorm_forward(k->c, k->e, k->f, k->a, k->d, k->g, k->M, k->D, 1e-5f); }
static void run_ln_b(bcase *k) {
  sf_layernorm_backward(k->c, k->d + k->D, k->g + k->D, k->b, k->a, k->d, k->e, k->f, k->M, k->D, 1.0f);
}
static void run_bn_f(bcase *k) {
  sf_batchnorm_forward_train(k->c, k->e, k->f, k->d + 256, k->g + 256, k->a, k->d, k->g, NULL, k->cs.N, k->cs.C,
                             k->cs.H * k->cs.W, 0.1f, 1e-5f);
}
static void run_bn_b(bcase *k) {
  sf_batchnorm_backward(k->c, k->d + 512, k->g + 512, k->b, k->a, k->d, k->e, k->f, k->cs.N, k->cs.C,
                        k->cs.H * k->cs.W, 1, 1.0f);
}
static void run_ce(bcase *k) {
  double l;
  if (sf_cross_entropy(&l, k->c, k->a, k->tgt, k->M, k->D, 0.0f, 1.0f)) abort();
}

#define MAXC 96
static bcase cases[MAXC];
static int ncase;

static bcase *add(const char *name, void (*run)(bcase *), double flops) {
  if (ncase == MAXC) abort();
  bcase *k = &cases[ncase++];
  memset(k, 0, sizeof *k);
  snprintf(k->name, sizeof k->name, "%s", name);
  k->run = run;
  k->flops = flops;
  return k;
}

static void add_conv(int64_t N, int64_t C, int64_t H, int64_t K, int64_t R, int64_t stride, sf_rng *g) {
  sf_conv2d_shape s = {.N = N, .C = C, .H = H, .W = H, .K = K, .R = R, .S = R, .stride_h = stride,
                       .stride_w = stride, .pad_h = R / 2, .pad_w = R / 2, .groups = 1};
  if (sf_conv2d_shape_init(&s) || sf_conv2d_reserve(&s)) abort();
  const double fl = 2.0 * (double)(N * K * s.OH * s.OW) * (double)(C * R * R);
  float *x = randbuf((size_t)(N * C * H * H), g), *w = randbuf((size_t)(K * C * R * R), g);
  float *y = randbuf((size_t)(N * K * s.OH * s.OW), g), *dw = randbuf((size_t)(K * C * R * R), g);
  float *dx = randbuf((size_t)(N * C * H * H), g);
  char nm[64];
  const char *what[5] = {"fwd", "bwd_in", "bwd_w", "bwd_in+w", sf_conv2d_path(&s, 3)};
  void (*fn[5])(bcase *) = {run_conv_fwd, run_conv_bwd_in, run_conv_bwd_w, run_conv_bwd_sep, run_conv_bwd};
  for (int i = 0; i < 5; i++) {
    snprintf(nm, sizeof nm, "conv [%lld,%lld,%lld,%lld] %lld->%lld %lldx%lld/%lld %s", (long long)N, (long long)C,
             (long long)H, (long long)H, (long long)C, (long long)K, (long long)R, (long long)R, (long long)stride,
             what[i]);
    bcase *k = add(nm, fn[i], i >= 3 ? 2 * fl : fl);
    k->cs = s;
    k->a = x, k->b = w, k->c = y, k->d = dw, k->e = dx;
  }
  /* the same product as one sgemm [K, CRS] @ [CRS, N*P]: the rate to compare with */
  snprintf(nm, sizeof nm, "  sgemm %lldx%lldx%lld (same flops)", (long long)K, (long long)(C * R * R),
           (long long)(N * s.OH * s.OW));
  bcase *k = add(nm, run_sgemm, fl);
  k->M = K, k->D = C * R * R, k->n = N * s.OH * s.OW;
  k->a = w, k->b = randbuf((size_t)(k->D * k->n), g), k->c = randbuf((size_t)(k->M * k->n), g);
}

int main(int argc, char **argv) {
  if (argc > 1) repeats = atoi(argv[1]);
  const char *filter = argc > 2 ? argv[2] : NULL;
  if (repeats < 1) repeats = 1;
  if (sf_threads_init()) fprintf(stderr, "%s\n", sf_errmsg());
  sf_rng g;
  sf_rng_seed(&g, 0);

  bcase *k = add("sgemm 1024x1024x1024", run_sgemm, 2.0 * 1024 * 1024 * 1024);
  k->M = k->D = k->n = 1024;
  k->a = randbuf(1 << 20, &g), k->b = randbuf(1 << 20, &g), k->c = randbuf(1 << 20, &g);
  add_conv(128, 16, 32, 16, 3, 1, &g);
  add_conv(128, 32, 16, 32, 3, 1, &g);
  add_conv(128, 64, 8, 64, 3, 1, &g);
  add_conv(128, 128, 8, 128, 3, 1, &g);
  add_conv(128, 16, 32, 32, 3, 2, &g);
  /* the bench's small CNN on 28x28 (1->32, then two stride-2 convolutions) */
  add_conv(128, 1, 28, 32, 3, 1, &g);
  add_conv(128, 32, 28, 64, 3, 2, &g);
  add_conv(128, 64, 14, 128, 3, 2, &g);

  {
    /* ViT at batch 64: attention probabilities [256*65, 65], MLP hidden [64*65, 128] */
    const int64_t M = 256 * 65, D = 65, n = 64 * 65 * 128;
    float *x = randbuf((size_t)n, &g), *y = randbuf((size_t)n, &g), *dy = randbuf((size_t)n, &g);
    const int64_t sz[2] = {M, D};
    for (int lg = 0; lg < 2; lg++) {
      k = add(lg ? "log_softmax [256*65,65]" : "softmax [256*65,65]", run_softmax, 0);
      if (sf_tensor_new(&k->tx, 2, sz) || sf_tensor_new(&k->ty, 2, sz)) abort();
      memcpy(sf_tensor_data(&k->tx), x, (size_t)(M * D) * sizeof(float));
      k->which = lg;
    }
    k = add("gelu fwd [64,65,128]", run_gelu_f, 0);
    k->n = n, k->a = x, k->c = y;
    k = add("gelu bwd [64,65,128]", run_gelu_b, 0);
    k->n = n, k->a = x, k->b = dy, k->c = y;
    float *gm = randbuf(4096, &g), *bt = randbuf(4096, &g), *mu = randbuf(64 * 65, &g), *rs = randbuf(64 * 65, &g);
    k = add("layernorm fwd [64*65,64]", run_ln_f, 0);
    k->M = 64 * 65, k->D = 64, k->a = x, k->c = y, k->d = gm, k->g = bt, k->e = mu, k->f = rs;
    k = add("layernorm bwd [64*65,64]", run_ln_b, 0);
    k->M = 64 * 65, k->D = 64, k->a = x, k->b = dy, k->c = y, k->d = gm, k->g = bt, k->e = mu, k->f = rs;
    int64_t *t = malloc(128 * sizeof *t);
    for (int i = 0; i < 128; i++) t[i] = i % 10;
    k = add("cross_entropy [128,10]", run_ce, 0);
    k->M = 128, k->D = 10, k->a = x, k->c = y, k->tgt = t;
  }
  {
    const int64_t N = 128, C = 16, HW = 32 * 32, n = N * C * HW;
    float *x = randbuf((size_t)n, &g), *y = randbuf((size_t)n, &g), *dy = randbuf((size_t)n, &g);
    float *gm = randbuf(1024, &g), *bt = randbuf(1024, &g), *mu = randbuf(64, &g), *rs = randbuf(64, &g);
    for (int i = 0; i < 64; i++) rs[i] = 1.0f;
    for (int i = 256; i < 512; i++) bt[i] = 1.0f;
    sf_conv2d_shape s = {.N = N, .C = C, .H = 32, .W = 32};
    k = add("relu fwd [128,16,32,32]", run_relu_f, 0);
    k->n = n, k->a = x, k->c = y;
    k = add("relu bwd [128,16,32,32]", run_relu_b, 0);
    k->n = n, k->a = x, k->b = dy, k->c = y;
    k = add("batchnorm fwd train [128,16,32,32]", run_bn_f, 0);
    k->cs = s, k->a = x, k->c = y, k->d = gm, k->g = bt, k->e = mu, k->f = rs;
    k = add("batchnorm bwd [128,16,32,32]", run_bn_b, 0);
    k->cs = s, k->a = x, k->b = dy, k->c = y, k->d = gm, k->g = bt, k->e = mu, k->f = rs;
  }

  int sel[MAXC], ns = 0;
  for (int i = 0; i < ncase; i++)
    if (!filter || strstr(cases[i].name, filter)) sel[ns++] = i;
  int iters[MAXC];
  for (int j = 0; j < ns; j++) {
    bcase *c = &cases[sel[j]];
    c->run(c); /* warm-up */
    double t0 = now();
    c->run(c);
    double one = now() - t0;
    iters[j] = one > 0 ? (int)(0.02 / one) : 100;
    if (iters[j] < 1) iters[j] = 1;
  }
  double *samples = malloc((size_t)(ns * repeats) * sizeof *samples);
  double *cpu = malloc((size_t)(ns * repeats) * sizeof *cpu);
  for (int r = 0; r < repeats; r++)
    for (int jj = 0; jj < ns; jj++) {
      int j = (jj + r) % ns; /* rotate so that load drifts hit every case alike */
      bcase *c = &cases[sel[j]];
      double t0 = now(), c0 = cpu_now();
      for (int i = 0; i < iters[j]; i++) c->run(c);
      samples[j * repeats + r] = (now() - t0) / iters[j];
      cpu[j * repeats + r] = (cpu_now() - c0) / iters[j];
    }
  printf("bench_kernels: %d thread(s), %d repeats, medians\n", sf_threads(), repeats);
  printf("%-44s %9s %9s %11s %12s\n", "case", "ms", "GFLOP/s", "cpu ms", "GFLOP/cpu-s");
  for (int j = 0; j < ns; j++) {
    bcase *c = &cases[sel[j]];
    qsort(samples + j * repeats, (size_t)repeats, sizeof *samples, cmp_double);
    qsort(cpu + j * repeats, (size_t)repeats, sizeof *cpu, cmp_double);
    c->med = samples[j * repeats + repeats / 2];
    const double cm = cpu[j * repeats + repeats / 2];
    if (c->flops > 0)
      printf("%-44s %9.3f %9.1f %11.3f %12.1f\n", c->name, c->med * 1e3, c->flops / c->med * 1e-9, cm * 1e3,
             c->flops / cm * 1e-9);
    else
      printf("%-44s %9.3f %9s %11.3f\n", c->name, c->med * 1e3, "", cm * 1e3);
  }
  free(samples);
  free(cpu);
  return 0;
}
