/* Per-thread scratch workspace for the nn kernels, and the kernel call counters. */
#include <stdatomic.h>
#include <stdlib.h>

#include "nn.h"

/* Two independent growable buffers per thread. They only grow (to the largest request
 * seen), so steady-state training allocates nothing; sf_scratch_release() gives the
 * memory back. */
typedef struct {
  float *p;
  size_t n;
} scratch_buf;

static _Thread_local scratch_buf bufs[3];

static float *grow(scratch_buf *b, size_t n) {
  if (n <= b->n && b->p) return b->p;
  if (n == 0) n = 1;
  /* 64-byte aligned for AVX-512 loads; aligned_alloc wants a multiple of the alignment */
  size_t bytes = n * sizeof(float);
  if (bytes / sizeof(float) != n || bytes > SIZE_MAX - 64) {
    sf_err("scratch: %zu floats do not fit in memory", n);
    return NULL;
  }
  bytes = (bytes + 63) & ~(size_t)63;
  float *p = aligned_alloc(64, bytes);
  if (!p) {
    sf_err("scratch: out of memory allocating %zu floats of workspace", n);
    return NULL;
  }
  free(b->p);
  b->p = p;
  b->n = n;
  return p;
}

float *sf_scratch(size_t n) { return grow(&bufs[0], n); }
float *sf_scratch2(size_t n) { return grow(&bufs[1], n); }
float *sf_scratch3(size_t n) { return grow(&bufs[2], n); }

void sf_scratch_release(void) {
  for (int i = 0; i < 3; i++) {
    free(bufs[i].p);
    bufs[i].p = NULL;
    bufs[i].n = 0;
  }
}

/* ---- counters ----
 * Relaxed atomics: kernels may later run on several threads; the counts are for tests
 * and reports, never for synchronisation. */
static _Atomic int64_t counters[SF_K_COUNT];

static const char *const counter_names[SF_K_COUNT] = {
    [SF_K_LINEAR_FWD] = "linear_fwd",           [SF_K_LINEAR_BWD_INPUT] = "linear_bwd_input",
    [SF_K_LINEAR_BWD_WEIGHT] = "linear_bwd_weight", [SF_K_CONV_FWD] = "conv_fwd",
    [SF_K_CONV_BWD_INPUT] = "conv_bwd_input",   [SF_K_CONV_BWD_WEIGHT] = "conv_bwd_weight",
    [SF_K_NORM_FWD] = "norm_fwd",               [SF_K_NORM_BWD_INPUT] = "norm_bwd_input",
    [SF_K_NORM_BWD_AFFINE] = "norm_bwd_affine", [SF_K_POOL_FWD] = "pool_fwd",
    [SF_K_POOL_BWD] = "pool_bwd",               [SF_K_ACT_FWD] = "act_fwd",
    [SF_K_ACT_BWD] = "act_bwd",                 [SF_K_LOSS_FWD] = "loss_fwd",
    [SF_K_LOSS_BWD] = "loss_bwd",               [SF_K_OPTIM_STEP] = "optim_step",
};

void sf_nn_count(sf_kernel_id k) {
  SF_ASSERT(k >= 0 && k < SF_K_COUNT);
  atomic_fetch_add_explicit(&counters[k], 1, memory_order_relaxed);
}

int64_t sf_nn_counter(sf_kernel_id k) {
  SF_ASSERT(k >= 0 && k < SF_K_COUNT);
  return atomic_load_explicit(&counters[k], memory_order_relaxed);
}

const char *sf_nn_counter_name(sf_kernel_id k) { return k >= 0 && k < SF_K_COUNT ? counter_names[k] : "?"; }

void sf_nn_counters_reset(void) {
  for (int k = 0; k < SF_K_COUNT; k++) atomic_store_explicit(&counters[k], 0, memory_order_relaxed);
}
