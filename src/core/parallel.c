/* A small persistent thread pool for the kernels' own loops (see parallel.h). */
#include "parallel.h"

#include <cblas.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <time.h>

#include "tensor.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define CPU_RELAX() _mm_pause()
#else
#define CPU_RELAX() ((void)0)
#endif

/* Workers spin about SPIN_NS for the next job before sleeping, and the caller as long
 * for the workers before yielding its core: kernels come in quick succession during a
 * training step, so a short spin saves most futex wake-ups, while a long one would burn
 * the core that OpenBLAS's threads (or, on a loaded machine, the worker being waited
 * for) need. Timed, not counted: a pause takes 10 ns on this machine's cores and ~40 on
 * others (the 2000 counted rounds meant as ~100 us were 20 us here). */
#define SPIN_NS 100000
#define SPIN_CHECK 64 /* pauses between clock reads */
#define MAX_WORKERS 255

static int64_t mono_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* 1 while the spin budget lasts (start with *spins = 0) */
static int spinning(int *spins, int64_t *t0) {
  if (++*spins % SPIN_CHECK) return 1;
  const int64_t t = mono_ns();
  if (*spins == SPIN_CHECK) *t0 = t;
  return t - *t0 < SPIN_NS;
}

static pthread_mutex_t call_lock = PTHREAD_MUTEX_INITIALIZER; /* one parallel loop at a time */
static pthread_mutex_t wake_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t wake_cond = PTHREAD_COND_INITIALIZER;

/* The current job; written by the caller before the generation is bumped. */
static sf_parallel_fn job_fn;
static void *job_ctx;
static int64_t job_n;
static int job_parts;
static _Atomic unsigned job_gen;     /* bumped once per job */
static _Atomic int job_left;         /* workers that have not finished the job */
static int n_workers;                /* started so far (under call_lock) */
static unsigned start_gen[MAX_WORKERS + 1]; /* the generation current when worker i was created */

static _Thread_local int in_part;

int sf_parallel_active(void) { return in_part; }

static void run_part(sf_parallel_fn fn, void *ctx, int64_t n, int parts, int p) {
  const int64_t lo = n * p / parts, hi = n * (p + 1) / parts;
  in_part = 1;
  if (hi > lo) fn(ctx, lo, hi, p);
  in_part = 0;
}

static void *worker(void *arg) {
  const int id = (int)(intptr_t)arg; /* 1-based: part 0 belongs to the caller */
  /* not the generation at thread start: the job that created it may already be out */
  unsigned seen = start_gen[id];
  for (;;) {
    unsigned g;
    int spins = 0;
    int64_t t0 = 0;
    while ((g = atomic_load_explicit(&job_gen, memory_order_acquire)) == seen) {
      if (spinning(&spins, &t0)) {
        CPU_RELAX();
        continue;
      }
      pthread_mutex_lock(&wake_lock);
      while ((g = atomic_load_explicit(&job_gen, memory_order_acquire)) == seen)
        pthread_cond_wait(&wake_cond, &wake_lock);
      pthread_mutex_unlock(&wake_lock);
      break;
    }
    seen = g;
    /* every worker acknowledges every job, even one without a part for it: the caller
     * waits for all of them, so none can still be reading this job's fields when the
     * next one is written */
    if (id < job_parts) run_part(job_fn, job_ctx, job_n, job_parts, id);
    atomic_fetch_sub_explicit(&job_left, 1, memory_order_acq_rel);
  }
  return NULL;
}

/* Starts workers up to want (under call_lock); returns how many exist. */
static int grow_pool(int want) {
  if (want > MAX_WORKERS) want = MAX_WORKERS;
  while (n_workers < want) {
    pthread_t t;
    pthread_attr_t at;
    pthread_attr_init(&at);
    pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
    start_gen[n_workers + 1] = atomic_load_explicit(&job_gen, memory_order_relaxed);
    int rc = pthread_create(&t, &at, worker, (void *)(intptr_t)(n_workers + 1));
    pthread_attr_destroy(&at);
    if (rc != 0) break;
    n_workers++;
  }
  return n_workers;
}

int sf_parallel_parts(int64_t n, int64_t grain) {
  if (grain < 1) grain = 1;
  int64_t p = n / grain;
  const int t = sf_threads();
  if (p > t) p = t;
  if (p > MAX_WORKERS + 1) p = MAX_WORKERS + 1;
  return p < 1 ? 1 : (int)p;
}

static void run_serial(int parts, int64_t n, sf_parallel_fn fn, void *ctx) {
  const int outer = in_part;
  for (int p = 0; p < parts; p++) {
    run_part(fn, ctx, n, parts, p);
    in_part = outer;
  }
}

void sf_parallel_for(int parts, int64_t n, sf_parallel_fn fn, void *ctx) {
  if (parts < 1) parts = 1;
  if (parts == 1 || in_part || pthread_mutex_trylock(&call_lock) != 0) {
    run_serial(parts, n, fn, ctx);
    return;
  }
  if (grow_pool(parts - 1) < parts - 1) {
    pthread_mutex_unlock(&call_lock);
    run_serial(parts, n, fn, ctx);
    return;
  }
  job_fn = fn;
  job_ctx = ctx;
  job_n = n;
  job_parts = parts;
  atomic_store_explicit(&job_left, n_workers, memory_order_relaxed);
  /* the release bump publishes the job; the mutex orders it against sleeping workers */
  pthread_mutex_lock(&wake_lock);
  atomic_fetch_add_explicit(&job_gen, 1, memory_order_release);
  pthread_cond_broadcast(&wake_cond);
  pthread_mutex_unlock(&wake_lock);
  run_part(fn, ctx, n, parts, 0);
  /* wait: spin briefly, then yield the core (on a loaded machine the worker may be
   * waiting for it) */
  int spins = 0, spent = 0;
  int64_t t0 = 0;
  while (atomic_load_explicit(&job_left, memory_order_acquire) > 0) {
    if (!spent && spinning(&spins, &t0)) {
      CPU_RELAX();
    } else {
      spent = 1;
      sched_yield();
    }
  }
  pthread_mutex_unlock(&call_lock);
}

/* ---- OpenBLAS single-threaded inside parallel loops ---- */

static pthread_mutex_t blas_lock = PTHREAD_MUTEX_INITIALIZER;
static int blas_depth, blas_saved;

void sf_blas_serial_begin(void) {
  sf_threads_ensure();
  pthread_mutex_lock(&blas_lock);
  if (blas_depth++ == 0) {
    blas_saved = openblas_get_num_threads();
    if (blas_saved != 1) openblas_set_num_threads(1);
  }
  pthread_mutex_unlock(&blas_lock);
}

void sf_blas_serial_end(void) {
  pthread_mutex_lock(&blas_lock);
  SF_ASSERT(blas_depth > 0);
  if (--blas_depth == 0 && blas_saved != 1) openblas_set_num_threads(blas_saved);
  pthread_mutex_unlock(&blas_lock);
}

void sf_parallel_for_blas(int parts, int64_t n, sf_parallel_fn fn, void *ctx) {
  if (parts <= 1) {
    fn(ctx, 0, n, 0);
    return;
  }
  sf_blas_serial_begin();
  sf_parallel_for(parts, n, fn, ctx);
  sf_blas_serial_end();
}
