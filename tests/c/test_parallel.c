/* C test of the thread pool (src/core/parallel.c): the static split, every item visited
 * once, part 0 on the caller, nested and concurrent calls run serially with the same
 * parts, the pool growing and shrinking with the thread count, and OpenBLAS's thread
 * count restored after a serial-BLAS region. TAP output. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "src/core/parallel.h"
#include "src/core/tensor.h"

static int ntest = 0, nfail = 0;

static void ok(int cond, const char *what) {
  ntest++;
  if (!cond) nfail++;
  printf("%s %d - %s\n", cond ? "ok" : "not ok", ntest, what);
}

#define NMAX 1000
typedef struct {
  _Atomic int hits[NMAX];
  int64_t lo[16], hi[16];
  pthread_t who[16];
  int active[16];
} visit_ctx;

static void visit(void *ctx, int64_t lo, int64_t hi, int part) {
  visit_ctx *v = ctx;
  for (int64_t i = lo; i < hi; i++) atomic_fetch_add(&v->hits[i], 1);
  v->lo[part] = lo;
  v->hi[part] = hi;
  v->who[part] = pthread_self();
  v->active[part] = sf_parallel_active();
}

static int all_once(visit_ctx *v, int64_t n) {
  for (int64_t i = 0; i < n; i++)
    if (atomic_load(&v->hits[i]) != 1) return 0;
  return 1;
}

/* a parallel loop inside a part: must run serially, with its own parts */
typedef struct {
  visit_ctx inner[4];
  int inner_parts;
} nest_ctx;
static void nested(void *ctx, int64_t lo, int64_t hi, int part) {
  (void)lo, (void)hi;
  nest_ctx *c = ctx;
  sf_parallel_for(c->inner_parts, 100, visit, &c->inner[part]);
}

/* sums of i over parts, combined in part order: the reduction pattern of the kernels */
typedef struct {
  double part_sum[16];
} sum_ctx;
static void sum_part(void *ctx, int64_t lo, int64_t hi, int part) {
  sum_ctx *c = ctx;
  double s = 0;
  for (int64_t i = lo; i < hi; i++) s += 1.0 / (double)(i + 1);
  c->part_sum[part] = s;
}

static void *other_thread(void *arg) {
  visit_ctx *v = arg;
  sf_parallel_for(3, 500, visit, v);
  return NULL;
}

int main(void) {
  static visit_ctx v;
  char what[128];
  const int t0 = sf_threads();

  sf_set_threads(3);
  ok(sf_parallel_parts(1000, 1) == 3, "parts = threads when there is enough work");
  ok(sf_parallel_parts(5, 2) == 2, "parts limited by n / grain");
  ok(sf_parallel_parts(1, 100) == 1 && sf_parallel_parts(0, 1) == 1, "at least one part");
  ok(sf_parallel_parts(1000, 0) == 3, "grain < 1 counts as 1");

  for (int parts = 1; parts <= 5; parts++) {
    for (int64_t n = 0; n <= 7; n += 7) {
      memset(&v, 0, sizeof v);
      sf_parallel_for(parts, n, visit, &v);
      int good = all_once(&v, n);
      for (int p = 0; p < parts && n > 0; p++)
        good &= v.lo[p] == n * p / parts && v.hi[p] == n * (p + 1) / parts && v.active[p] == 1;
      snprintf(what, sizeof what, "%d parts over %lld items: each item once, static ranges", parts, (long long)n);
      ok(good, what);
    }
  }
  memset(&v, 0, sizeof v);
  sf_parallel_for(3, 999, visit, &v);
  ok(all_once(&v, 999) && pthread_equal(v.who[0], pthread_self()), "part 0 runs on the calling thread");
  ok(!pthread_equal(v.who[1], pthread_self()) && !pthread_equal(v.who[2], pthread_self()) &&
         !pthread_equal(v.who[1], v.who[2]),
     "parts 1 and 2 run on two pool threads");
  ok(sf_parallel_active() == 0, "not active outside a loop");
  sf_parallel_for(0, 10, visit, &v);
  ok(atomic_load(&v.hits[0]) == 2, "parts < 1 runs as one part");

  static nest_ctx nc;
  memset(&nc, 0, sizeof nc);
  nc.inner_parts = 3;
  sf_parallel_for(2, 2, nested, &nc);
  int good = 1;
  for (int p = 0; p < 2; p++) {
    good &= all_once(&nc.inner[p], 100);
    for (int q = 0; q < 3; q++)
      good &= pthread_equal(nc.inner[p].who[q], nc.inner[p].who[0]) && nc.inner[p].lo[q] == 100 * q / 3;
  }
  ok(good, "a nested loop runs its parts serially on the part's thread, same ranges");

  /* the same parts whatever runs them: a reduction is bitwise repeatable */
  sum_ctx a, b;
  sf_parallel_for(3, 100000, sum_part, &a);
  sf_set_threads(1);
  sf_parallel_for(3, 100000, sum_part, &b); /* one thread: the same 3 parts, in order */
  ok(memcmp(a.part_sum, b.part_sum, 3 * sizeof(double)) == 0, "partials identical with and without the pool");

  /* two callers at once: one gets the pool, the other runs serially; both complete */
  sf_set_threads(3);
  static visit_ctx v2;
  memset(&v, 0, sizeof v);
  memset(&v2, 0, sizeof v2);
  pthread_t th;
  pthread_create(&th, NULL, other_thread, &v2);
  for (int r = 0; r < 50; r++) {
    memset(&v, 0, sizeof v);
    sf_parallel_for(3, 500, visit, &v);
    if (!all_once(&v, 500)) break;
  }
  pthread_join(th, NULL);
  ok(all_once(&v, 500) && all_once(&v2, 500), "concurrent callers both visit every item once");

  /* shrinking and growing the thread count between calls */
  sf_set_threads(2);
  memset(&v, 0, sizeof v);
  sf_parallel_for(sf_parallel_parts(100, 1), 100, visit, &v);
  ok(all_once(&v, 100) && v.hi[1] == 100, "fewer threads than pool workers");
  sf_set_threads(4);
  memset(&v, 0, sizeof v);
  sf_parallel_for(sf_parallel_parts(100, 1), 100, visit, &v);
  ok(all_once(&v, 100) && v.hi[3] == 100, "the pool grows to more threads");

  sf_blas_serial_begin();
  ok(sf_threads() == 1, "serial BLAS region: OpenBLAS on one thread");
  sf_blas_serial_begin();
  sf_blas_serial_end();
  ok(sf_threads() == 1, "serial BLAS regions nest");
  sf_blas_serial_end();
  ok(sf_threads() == 4, "thread count restored after the region");

  sf_set_threads(t0);
  printf("1..%d\n", ntest);
  return nfail != 0;
}
