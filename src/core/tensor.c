/* Storage, tensor lifetime, constructors, views and copies. */
#include "tensor.h"

#include <malloc.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "iter.h"

static atomic_llong live_bytes;

/* ---- storage ---- */

/* Small storages come from malloc. Tensors of a few MB are allocated and freed at every
 * training step; from glibc's heap they fragment it (a ResNet-20 step at batch 128 left
 * the heap 150 MB above the live bytes, and it grew for several steps), and returned to
 * the kernel each time they would pay a page fault per 4 kB on first touch (0.6 ms per
 * fresh 4 MB tensor). So storages of BIG_MIN bytes or more are mapped directly and, when
 * released, kept in a cache of mappings by size class: a training step asks for the
 * same sizes every time and reuses them without a fault, and the pages a mapping holds
 * are exactly the tensor's (no heap neighbours to pin them).
 *
 * Mapped bytes (live + cached) are bounded by the highest live total seen (see
 * big_alloc). A cached block not reused within STALE_ALLOCS big allocations (a few
 * training steps) is unmapped, so a one-off size (an evaluation batch) does not stay
 * resident. Under AddressSanitizer (and with SURGFT_STORAGE_CACHE=0) every storage comes
 * from malloc, so overflows past a tensor's end are still caught. */

#if defined(__SANITIZE_ADDRESS__)
#define SF_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SF_ASAN 1
#endif
#endif

enum { BIG_MIN = 1 << 20, STALE_ALLOCS = 1024 };

typedef struct cached_block {
  void *p;
  size_t bytes;                            /* the mapping's length: its size class */
  uint64_t stamp;                          /* big allocations counted when it was cached */
  struct cached_block *older, *newer;      /* all cached blocks, by release time */
  struct cached_block *next_in_class;      /* same class, most recently released first */
} cached_block;

enum { NCLASS = 8 * 48 };
static struct {
  pthread_mutex_t lock;
  int enabled;
  cached_block *oldest, *newest;
  cached_block *by_class[NCLASS];
  size_t live, cached, peak;               /* big-storage bytes (mapping lengths) */
  uint64_t allocs;
} big = {.lock = PTHREAD_MUTEX_INITIALIZER};

static pthread_once_t malloc_once = PTHREAD_ONCE_INIT;
static void tune_malloc(void) {
  mallopt(M_MMAP_THRESHOLD, 32 * 1024 * 1024);
  mallopt(M_TRIM_THRESHOLD, 512 * 1024 * 1024);
#ifndef SF_ASAN
  const char *e = getenv("SURGFT_STORAGE_CACHE");
  big.enabled = !(e && e[0] == '0');
#endif
}

/* Size classes: 8 per power of two (a block is at most 12.5% longer than asked; pages of
 * the tail that are never written are never resident). */
static int size_class(size_t bytes, size_t *len) {
  int e = 63 - __builtin_clzll((unsigned long long)bytes); /* 2^e <= bytes < 2^(e+1) */
  size_t step = (size_t)1 << (e - 3);
  size_t n = (bytes + step - 1) / step; /* 8 .. 16 */
  *len = n * step;
  return (e - 20) * 8 + (int)(n - 8); /* 0 for 1 MB; n == 16 is the next octave's first */
}

static void unlink_block(cached_block *b) {
  if (b->older) b->older->newer = b->newer; else big.oldest = b->newer;
  if (b->newer) b->newer->older = b->older; else big.newest = b->older;
  big.cached -= b->bytes;
}

/* Takes b out of the cache (lock held). */
static void take_block(cached_block *b, int c) {
  cached_block **pp = &big.by_class[c];
  while (*pp != b) pp = &(*pp)->next_in_class;
  *pp = b->next_in_class;
  unlink_block(b);
}

/* Unmaps the oldest cached block (lock held). */
static void evict_oldest(void) {
  cached_block *b = big.oldest;
  size_t len;
  take_block(b, size_class(b->bytes, &len));
  munmap(b->p, b->bytes);
  free(b);
}

/* A new mapping of len bytes for a big storage, in transparent huge pages where the
 * kernel allows them (enabled=madvise, Debian's default, needs the MADV_HUGEPAGE advice;
 * a failed advice is harmless): from 2 MB on it is aligned to 2 MB so that all of it
 * can be. The kernels walk activations channel by channel across images (BatchNorm:
 * each image's rows of a channel are a channel-plane apart), touching a new 4 kB page
 * every row: with 4 kB pages the TLB missed on nearly every row. Measured here: a
 * ResNet-20 training step at batch 128, 1 thread, 465-508 ms against 558-574 ms. */
static void *map_big(size_t len) {
  const size_t huge = (size_t)2 << 20;
  if (len < huge) {
    void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    return p == MAP_FAILED ? NULL : p;
  }
  char *raw = mmap(NULL, len + huge, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (raw == MAP_FAILED) return NULL;
  char *p = (char *)(((uintptr_t)raw + huge - 1) & ~(uintptr_t)(huge - 1));
  if (p > raw) munmap(raw, (size_t)(p - raw));
  if (raw + len + huge > p + len) munmap(p + len, (size_t)(raw + len + huge - (p + len)));
  (void)madvise(p, len, MADV_HUGEPAGE);
  return p;
}

/* A mapping of the class of `bytes`: a cached block of that class, else a new mapping.
 * Mapped bytes (live + cached) stay within 1.5x the highest live total seen: past that,
 * a cached block of the nearest class (the smallest larger one, or the largest smaller
 * one) is resized with mremap, which keeps its resident pages (only a growth faults in),
 * and the oldest cached blocks are unmapped. Without the slack a ResNet-20 step refaulted
 * ~80 MB per step (the classes' peaks fall at different times, and the Lua collector
 * frees at varying points). At 1.25x a ResNet-8 step still swapped an 8 MB and a 4 MB
 * block's class every step (one shrink, one growth: 4 MB of fresh pages zeroed per step,
 * ~4% of its time on this VM) and ResNet-20 faulted ~5 times per step; at 1.5x neither
 * remaps (ResNet-20 peak RSS 349 -> 362 MB). */
static void *big_alloc(size_t bytes) {
  size_t len;
  int c = size_class(bytes, &len);
  if (c >= NCLASS) return NULL;
  pthread_mutex_lock(&big.lock);
  big.allocs++;
  while (big.oldest && big.allocs - big.oldest->stamp > STALE_ALLOCS) evict_oldest();
  cached_block *b = big.by_class[c];
  int from = c;
  if (!b && big.oldest && big.live + big.cached + len > big.peak + big.peak / 2) {
    for (int k = c + 1; k < NCLASS && !b; k++)
      if (big.by_class[k]) b = big.by_class[k], from = k;
    for (int k = c - 1; k >= 0 && !b; k--)
      if (big.by_class[k]) b = big.by_class[k], from = k;
  }
  void *p = NULL;
  size_t have = 0;
  if (b) {
    take_block(b, from);
    p = b->p, have = b->bytes;
    free(b);
  }
  big.live += len;
  if (big.peak < big.live) big.peak = big.live;
  while (big.oldest && big.live + big.cached > big.peak + big.peak / 2) evict_oldest();
  pthread_mutex_unlock(&big.lock);
  if (p && have != len) {
    void *q = mremap(p, have, len, MREMAP_MAYMOVE);
    if (q == MAP_FAILED) {
      munmap(p, have);
      p = NULL;
    } else {
      p = q;
    }
  }
  if (!p) p = map_big(len);
  if (!p) {
    pthread_mutex_lock(&big.lock);
    big.live -= len;
    pthread_mutex_unlock(&big.lock);
  }
  return p;
}

static void big_free(void *p, size_t bytes) {
  size_t len;
  int c = size_class(bytes, &len);
  cached_block *b = malloc(sizeof *b);
  pthread_mutex_lock(&big.lock);
  big.live -= len;
  if (!b) { /* no room to remember it: give it back */
    pthread_mutex_unlock(&big.lock);
    munmap(p, len);
    return;
  }
  *b = (cached_block){.p = p, .bytes = len, .stamp = big.allocs, .older = big.newest};
  if (big.newest) big.newest->newer = b; else big.oldest = b;
  big.newest = b;
  b->next_in_class = big.by_class[c];
  big.by_class[c] = b;
  big.cached += len;
  pthread_mutex_unlock(&big.lock);
}

/* a storage of `bytes` goes through the mapping cache */
static int is_big(size_t bytes) { return big.enabled && bytes >= BIG_MIN; }

void sf_storage_trim(void) {
  pthread_mutex_lock(&big.lock);
  while (big.oldest) evict_oldest();
  big.peak = big.live;
  pthread_mutex_unlock(&big.lock);
}

int64_t sf_storage_cached_bytes(void) {
  pthread_mutex_lock(&big.lock);
  size_t n = big.cached;
  pthread_mutex_unlock(&big.lock);
  return (int64_t)n;
}

sf_storage *sf_storage_new(int64_t numel) {
  if (numel < 0) {
    sf_err("storage: negative element count %lld", (long long)numel);
    return NULL;
  }
  if ((uint64_t)numel > ((uint64_t)1 << 40)) {
    sf_err("storage: %lld elements is more than this build allows (2^40)", (long long)numel);
    return NULL;
  }
  pthread_once(&malloc_once, tune_malloc);
  sf_storage *s = malloc(sizeof *s);
  if (!s) {
    sf_err("storage: out of memory");
    return NULL;
  }
  size_t bytes = (size_t)numel * sizeof(float);
  size_t rounded = (bytes + 63) & ~(size_t)63;
  s->data = is_big(bytes) ? big_alloc(bytes) : aligned_alloc(64, rounded ? rounded : 64);
  if (!s->data) {
    free(s);
    sf_err("storage: out of memory allocating %zu bytes", bytes);
    return NULL;
  }
  s->numel = numel;
  s->refcount = 1;
  atomic_fetch_add(&live_bytes, (long long)bytes);
  return s;
}

void sf_storage_retain(sf_storage *s) {
  if (s) s->refcount++;
}

void sf_storage_release(sf_storage *s) {
  if (!s) return;
  SF_ASSERT(s->refcount > 0);
  if (--s->refcount == 0) {
    size_t bytes = (size_t)s->numel * sizeof(float);
    atomic_fetch_sub(&live_bytes, (long long)bytes);
    if (is_big(bytes)) big_free(s->data, bytes); else free(s->data);
    free(s);
  }
}

int64_t sf_storage_live_bytes(void) { return (int64_t)atomic_load(&live_bytes); }

/* ---- lifetime ---- */

static int check_shape(const char *fn, int ndim, const int64_t *size) {
  char buf[SF_SHAPE_BUF];
  if (ndim < 0 || ndim > SF_MAX_DIMS)
    return sf_err("%s: %d dimensions, expected 0 to %d", fn, ndim, SF_MAX_DIMS);
  for (int d = 0; d < ndim; d++)
    if (size[d] < 0)
      return sf_err("%s: negative size in shape %s", fn, sf_shape_str(buf, sizeof buf, ndim, size));
  return 0;
}

static void set_contiguous_strides(sf_tensor *t) {
  int64_t st = 1;
  for (int d = t->ndim - 1; d >= 0; d--) {
    t->stride[d] = st;
    st *= t->size[d];
  }
}

int sf_tensor_new(sf_tensor *t, int ndim, const int64_t *size) {
  if (check_shape("tensor", ndim, size)) return -1;
  int64_t n = 1;
  for (int d = 0; d < ndim; d++) {
    if (size[d] && n > INT64_MAX / size[d]) return sf_err("tensor: shape too large");
    n *= size[d];
  }
  int64_t tmp[SF_MAX_DIMS];
  memcpy(tmp, size, (size_t)ndim * sizeof *size); /* size may point into t */
  sf_storage *s = sf_storage_new(n);
  if (!s) return -1;
  sf_tensor_release(t);
  t->storage = s;
  t->offset = 0;
  t->ndim = ndim;
  memcpy(t->size, tmp, (size_t)ndim * sizeof *size);
  set_contiguous_strides(t);
  return 0;
}

int sf_tensor_new_like(sf_tensor *t, const sf_tensor *src) {
  int64_t size[SF_MAX_DIMS];
  memcpy(size, src->size, sizeof size);
  return sf_tensor_new(t, src->ndim, size);
}

void sf_tensor_release(sf_tensor *t) {
  sf_storage_release(t->storage);
  memset(t, 0, sizeof *t);
}

void sf_tensor_share(sf_tensor *dst, const sf_tensor *src) {
  if (dst == src) return;
  sf_storage_retain(src->storage);
  sf_storage *old = dst->storage;
  *dst = *src;
  sf_storage_release(old);
}

/* ---- queries ---- */

int64_t sf_tensor_numel(const sf_tensor *t) {
  int64_t n = 1;
  for (int d = 0; d < t->ndim; d++) n *= t->size[d];
  return n;
}

int sf_tensor_is_contiguous(const sf_tensor *t) {
  int64_t st = 1;
  for (int d = t->ndim - 1; d >= 0; d--) {
    if (t->size[d] != 1 && t->stride[d] != st) return 0;
    st *= t->size[d];
  }
  return 1;
}

int sf_tensor_same_shape(const sf_tensor *a, const sf_tensor *b) {
  if (a->ndim != b->ndim) return 0;
  for (int d = 0; d < a->ndim; d++)
    if (a->size[d] != b->size[d]) return 0;
  return 1;
}

float *sf_tensor_ptr_linear(const sf_tensor *t, int64_t i) {
  int64_t off = t->offset;
  for (int d = t->ndim - 1; d >= 0; d--) {
    off += (i % t->size[d]) * t->stride[d];
    i /= t->size[d];
  }
  return t->storage->data + off;
}

/* ---- iteration helper (iter.h) ---- */

void sf_iter_init(sf_iter *it, int n, const sf_tensor *const *ts) {
  const sf_tensor *t0 = ts[0];
  it->n = n;
  it->numel = sf_tensor_numel(t0);
  int nd = 0;
  /* drop size-1 dimensions, then merge neighbours that are contiguous in every operand */
  for (int d = 0; d < t0->ndim; d++) {
    if (t0->size[d] == 1) continue;
    if (nd > 0) {
      int merge = 1;
      for (int k = 0; k < n; k++)
        if (it->stride[k][nd - 1] != ts[k]->stride[d] * t0->size[d]) merge = 0;
      if (merge) {
        it->size[nd - 1] *= t0->size[d];
        for (int k = 0; k < n; k++) it->stride[k][nd - 1] = ts[k]->stride[d];
        continue;
      }
    }
    it->size[nd] = t0->size[d];
    for (int k = 0; k < n; k++) it->stride[k][nd] = ts[k]->stride[d];
    nd++;
  }
  if (nd == 0) {
    it->size[0] = 1;
    for (int k = 0; k < n; k++) it->stride[k][0] = 1;
    nd = 1;
  }
  it->ndim = nd;
  for (int k = 0; k < 3; k++) {
    const sf_tensor *t = ts[k < n ? k : 0];
    it->base[k] = it->numel ? sf_tensor_data(t) : NULL;
    if (k >= n)
      for (int d = 0; d < nd; d++) it->stride[k][d] = it->stride[0][d];
  }
}

/* ---- constructors ---- */

int sf_tensor_fill(sf_tensor *t, float value) {
  if (!t->storage) return sf_err("fill: tensor is empty");
  if (sf_tensor_is_contiguous(t)) {
    float *p = sf_tensor_data(t);
    for (int64_t i = 0, n = sf_tensor_numel(t); i < n; i++) p[i] = value;
    return 0;
  }
  sf_iter it;
  const sf_tensor *ts[1] = {t};
  sf_iter_init(&it, 1, ts);
  SF_ITER_EACH(it, { *x0 = value; });
  return 0;
}

int sf_tensor_zeros(sf_tensor *t, int ndim, const int64_t *size) {
  if (sf_tensor_new(t, ndim, size)) return -1;
  memset(t->storage->data, 0, (size_t)t->storage->numel * sizeof(float));
  return 0;
}

int sf_tensor_full(sf_tensor *t, int ndim, const int64_t *size, float value) {
  if (sf_tensor_new(t, ndim, size)) return -1;
  return sf_tensor_fill(t, value);
}

int sf_tensor_arange(sf_tensor *t, double start, double stop, double step) {
  if (step == 0 || !isfinite(step) || !isfinite(start) || !isfinite(stop))
    return sf_err("arange: step must be finite and non-zero (got start %g, stop %g, step %g)", start, stop, step);
  double count = ceil((stop - start) / step);
  if (count < 0) count = 0;
  if (count > 1e12) return sf_err("arange: %g elements is too many", count);
  int64_t n = (int64_t)count;
  if (sf_tensor_new(t, 1, &n)) return -1;
  float *p = sf_tensor_data(t);
  for (int64_t i = 0; i < n; i++) p[i] = (float)(start + (double)i * step);
  return 0;
}

int sf_tensor_linspace(sf_tensor *t, double start, double stop, int64_t n) {
  if (n < 0) return sf_err("linspace: argument #3 (count) is %lld, expected >= 0", (long long)n);
  if (sf_tensor_new(t, 1, &n)) return -1;
  float *p = sf_tensor_data(t);
  for (int64_t i = 0; i < n; i++)
    p[i] = (float)(n == 1 ? start : start + (stop - start) * (double)i / (double)(n - 1));
  return 0;
}

int sf_tensor_eye(sf_tensor *t, int64_t n, int64_t m) {
  if (n < 0 || m < 0) return sf_err("eye: sizes must be >= 0 (got %lld x %lld)", (long long)n, (long long)m);
  int64_t size[2] = {n, m};
  if (sf_tensor_zeros(t, 2, size)) return -1;
  float *p = sf_tensor_data(t);
  for (int64_t i = 0; i < n && i < m; i++) p[i * m + i] = 1.0f;
  return 0;
}

/* ---- views ---- */

static int check_dim(const char *fn, const sf_tensor *t, int dim, int extra) {
  char buf[SF_SHAPE_BUF];
  if (dim < 0 || dim >= t->ndim + extra)
    return sf_err("%s: dimension %d out of range for a %d-D tensor of shape %s", fn, dim + 1, t->ndim,
                  sf_tshape(t, buf));
  return 0;
}

/* Resolve one -1 in size and check the element count; writes the result to out. */
static int infer_shape(const char *fn, const sf_tensor *src, int ndim, const int64_t *size, int64_t *out) {
  char b1[SF_SHAPE_BUF], b2[SF_SHAPE_BUF];
  if (ndim < 0 || ndim > SF_MAX_DIMS) return sf_err("%s: %d dimensions, expected 0 to %d", fn, ndim, SF_MAX_DIMS);
  int infer = -1;
  int64_t known = 1;
  for (int d = 0; d < ndim; d++) {
    if (size[d] == -1) {
      if (infer >= 0) return sf_err("%s: only one dimension can be -1, got shape %s", fn, sf_shape_str(b1, sizeof b1, ndim, size));
      infer = d;
    } else if (size[d] < 0) {
      return sf_err("%s: invalid shape %s", fn, sf_shape_str(b1, sizeof b1, ndim, size));
    } else {
      known *= size[d];
    }
    out[d] = size[d];
  }
  int64_t n = sf_tensor_numel(src);
  if (infer >= 0) {
    if (known == 0 || n % known != 0)
      return sf_err("%s: cannot view a tensor of shape %s (%lld elements) as %s", fn, sf_tshape(src, b1),
                    (long long)n, sf_shape_str(b2, sizeof b2, ndim, size));
    out[infer] = n / known;
  } else if (known != n) {
    return sf_err("%s: cannot view a tensor of shape %s (%lld elements) as %s (%lld elements)", fn,
                  sf_tshape(src, b1), (long long)n, sf_shape_str(b2, sizeof b2, ndim, size), (long long)known);
  }
  return 0;
}

/* Strides for viewing src with a new shape without a copy, when possible (groups of
 * source dimensions that are contiguous among themselves map onto groups of new ones). */
static int view_strides(const sf_tensor *src, int ndim, const int64_t *size, int64_t *stride) {
  int64_t numel = sf_tensor_numel(src);
  if (numel == 0 || sf_tensor_is_contiguous(src)) {
    int64_t st = 1;
    for (int d = ndim - 1; d >= 0; d--) {
      stride[d] = st;
      st *= size[d] ? size[d] : 1;
    }
    return 1;
  }
  int view_d = ndim - 1;
  int64_t chunk_base_stride = src->ndim ? src->stride[src->ndim - 1] : 1;
  int64_t tensor_numel = 1, view_numel = 1;
  for (int d = src->ndim - 1; d >= 0; d--) {
    tensor_numel *= src->size[d];
    if (d == 0 || (src->size[d - 1] != 1 && src->stride[d - 1] != tensor_numel * chunk_base_stride)) {
      while (view_d >= 0 && (view_numel < tensor_numel || size[view_d] == 1)) {
        stride[view_d] = view_numel * chunk_base_stride;
        view_numel *= size[view_d];
        view_d--;
      }
      if (view_numel != tensor_numel) return 0;
      if (d > 0) {
        chunk_base_stride = src->stride[d - 1];
        tensor_numel = 1;
        view_numel = 1;
      }
    }
  }
  return view_d == -1;
}

static int reshape_impl(const char *fn, sf_tensor *dst, const sf_tensor *src, int ndim, const int64_t *size,
                        int allow_copy) {
  int64_t shape[SF_MAX_DIMS], stride[SF_MAX_DIMS];
  if (infer_shape(fn, src, ndim, size, shape)) return -1;
  if (!view_strides(src, ndim, shape, stride)) {
    char buf[SF_SHAPE_BUF];
    if (!allow_copy)
      return sf_err("%s: tensor of shape %s is not contiguous enough to view; call contiguous() first", fn,
                    sf_tshape(src, buf));
    sf_tensor tmp = SF_TENSOR_EMPTY;
    if (sf_tensor_clone(&tmp, src)) return -1;
    int rc = reshape_impl(fn, dst, &tmp, ndim, shape, 0);
    sf_tensor_release(&tmp);
    return rc;
  }
  sf_tensor_share(dst, src);
  dst->ndim = ndim;
  memcpy(dst->size, shape, sizeof shape);
  memcpy(dst->stride, stride, sizeof stride);
  return 0;
}

int sf_tensor_reshape(sf_tensor *dst, const sf_tensor *src, int ndim, const int64_t *size) {
  return reshape_impl("reshape", dst, src, ndim, size, 1);
}

int sf_tensor_view(sf_tensor *dst, const sf_tensor *src, int ndim, const int64_t *size) {
  return reshape_impl("view", dst, src, ndim, size, 0);
}

int sf_tensor_transpose(sf_tensor *dst, const sf_tensor *src, int d0, int d1) {
  if (check_dim("transpose", src, d0, 0) || check_dim("transpose", src, d1, 0)) return -1;
  sf_tensor_share(dst, src);
  int64_t s = dst->size[d0], st = dst->stride[d0];
  dst->size[d0] = dst->size[d1];
  dst->stride[d0] = dst->stride[d1];
  dst->size[d1] = s;
  dst->stride[d1] = st;
  return 0;
}

int sf_tensor_permute(sf_tensor *dst, const sf_tensor *src, const int *perm) {
  int seen[SF_MAX_DIMS] = {0};
  for (int d = 0; d < src->ndim; d++) {
    if (perm[d] < 0 || perm[d] >= src->ndim || seen[perm[d]]++)
      return sf_err("permute: argument is not a permutation of 1..%d", src->ndim);
  }
  sf_tensor tmp = *src;
  for (int d = 0; d < src->ndim; d++) {
    tmp.size[d] = src->size[perm[d]];
    tmp.stride[d] = src->stride[perm[d]];
  }
  sf_tensor_share(dst, &tmp);
  return 0;
}

int sf_tensor_narrow(sf_tensor *dst, const sf_tensor *src, int dim, int64_t start, int64_t len) {
  char buf[SF_SHAPE_BUF];
  if (check_dim("narrow", src, dim, 0)) return -1;
  if (start < 0 || len < 0 || start + len > src->size[dim])
    return sf_err("narrow: range [%lld, %lld] is out of bounds for dimension %d of size %lld (shape %s)",
                  (long long)start + 1, (long long)(start + len), dim + 1, (long long)src->size[dim],
                  sf_tshape(src, buf));
  sf_tensor_share(dst, src);
  dst->offset += start * src->stride[dim];
  dst->size[dim] = len;
  return 0;
}

int sf_tensor_select(sf_tensor *dst, const sf_tensor *src, int dim, int64_t index) {
  char buf[SF_SHAPE_BUF];
  if (check_dim("select", src, dim, 0)) return -1;
  if (index < 0 || index >= src->size[dim])
    return sf_err("select: index %lld is out of range for dimension %d of size %lld (shape %s)",
                  (long long)index + 1, dim + 1, (long long)src->size[dim], sf_tshape(src, buf));
  sf_tensor tmp = *src;
  tmp.offset += index * src->stride[dim];
  for (int d = dim; d < src->ndim - 1; d++) {
    tmp.size[d] = src->size[d + 1];
    tmp.stride[d] = src->stride[d + 1];
  }
  tmp.ndim--;
  sf_tensor_share(dst, &tmp);
  return 0;
}

int sf_tensor_squeeze(sf_tensor *dst, const sf_tensor *src, int dim) {
  sf_tensor tmp = *src;
  if (dim >= 0) {
    if (check_dim("squeeze", src, dim, 0)) return -1;
    if (src->size[dim] != 1) {
      sf_tensor_share(dst, src);
      return 0;
    }
  }
  int nd = 0;
  for (int d = 0; d < src->ndim; d++) {
    if (src->size[d] == 1 && (dim < 0 || d == dim)) continue;
    tmp.size[nd] = src->size[d];
    tmp.stride[nd] = src->stride[d];
    nd++;
  }
  tmp.ndim = nd;
  sf_tensor_share(dst, &tmp);
  return 0;
}

int sf_tensor_unsqueeze(sf_tensor *dst, const sf_tensor *src, int dim) {
  if (check_dim("unsqueeze", src, dim, 1)) return -1;
  if (src->ndim >= SF_MAX_DIMS) return sf_err("unsqueeze: tensor already has %d dimensions", SF_MAX_DIMS);
  sf_tensor tmp = *src;
  for (int d = src->ndim; d > dim; d--) {
    tmp.size[d] = src->size[d - 1];
    tmp.stride[d] = src->stride[d - 1];
  }
  tmp.size[dim] = 1;
  tmp.stride[dim] = dim < src->ndim ? src->size[dim] * src->stride[dim] : 1;
  tmp.ndim++;
  sf_tensor_share(dst, &tmp);
  return 0;
}

int sf_tensor_expand(sf_tensor *dst, const sf_tensor *src, int ndim, const int64_t *size) {
  char b1[SF_SHAPE_BUF], b2[SF_SHAPE_BUF];
  if (ndim < src->ndim || ndim > SF_MAX_DIMS)
    return sf_err("expand: cannot expand shape %s to %s", sf_tshape(src, b1), sf_shape_str(b2, sizeof b2, ndim, size));
  sf_tensor tmp = *src;
  tmp.ndim = ndim;
  int lead = ndim - src->ndim;
  for (int d = 0; d < ndim; d++) {
    int64_t want = size[d];
    if (d < lead) {
      if (want < 0) goto bad;
      tmp.size[d] = want;
      tmp.stride[d] = 0;
      continue;
    }
    int64_t have = src->size[d - lead];
    if (want == -1 || want == have) {
      tmp.size[d] = have;
      tmp.stride[d] = src->stride[d - lead];
    } else if (have == 1 && want >= 0) {
      tmp.size[d] = want;
      tmp.stride[d] = 0;
    } else {
      goto bad;
    }
  }
  sf_tensor_share(dst, &tmp);
  return 0;
bad:
  return sf_err("expand: cannot expand shape %s to %s (only size-1 dimensions can grow)", sf_tshape(src, b1),
                sf_shape_str(b2, sizeof b2, ndim, size));
}

/* ---- copies ---- */

/* Large copies are split over the thread pool (the attention's permutes copy tens of
 * megabytes a step). A copy within one storage stays serial: memmove's overlap handling,
 * and the element order of an overlapping strided copy, are only defined for one pass. */
typedef struct {
  float *d;
  const float *s;
  sf_iter it;
} copy_ctx;

static void copy_flat_part(void *ctx, int64_t lo, int64_t hi) {
  const copy_ctx *c = ctx;
  memcpy(c->d + lo, c->s + lo, (size_t)(hi - lo) * sizeof(float));
}

static void copy_rows_part(void *ctx, int64_t lo, int64_t hi, int part) {
  (void)part;
  const copy_ctx *c = ctx;
  SF_ITER_RANGE(c->it, lo, hi, { *x0 = *x1; });
}

int sf_tensor_copy(sf_tensor *dst, const sf_tensor *src) {
  char b1[SF_SHAPE_BUF], b2[SF_SHAPE_BUF];
  if (!dst->storage || !src->storage) return sf_err("copy: tensor is empty");
  int64_t n = sf_tensor_numel(dst);
  if (n != sf_tensor_numel(src))
    return sf_err("copy: argument #2 has shape %s (%lld elements), expected %lld elements like %s",
                  sf_tshape(src, b1), (long long)sf_tensor_numel(src), (long long)n, sf_tshape(dst, b2));
  for (int d = 0; d < dst->ndim; d++)
    if (dst->stride[d] == 0 && dst->size[d] > 1)
      return sf_err("copy: destination %s is an expanded view; writing through it is ambiguous", sf_tshape(dst, b1));
  const int shared = dst->storage == src->storage;
  if (sf_tensor_is_contiguous(dst) && sf_tensor_is_contiguous(src)) {
    copy_ctx c = {.d = sf_tensor_data(dst), .s = sf_tensor_data(src)};
    if (shared)
      memmove(c.d, c.s, (size_t)n * sizeof(float));
    else
      sf_parallel_flat(n, copy_flat_part, &c);
    return 0;
  }
  if (sf_tensor_same_shape(dst, src)) {
    copy_ctx c;
    const sf_tensor *ts[2] = {dst, src};
    sf_iter_init(&c.it, 2, ts);
    if (shared)
      SF_ITER_EACH(c.it, { *x0 = *x1; });
    else
      sf_parallel_for(sf_iter_parts(&c.it), sf_iter_rows(&c.it), copy_rows_part, &c);
    return 0;
  }
  /* same element count, different shapes: row-major order on both sides */
  for (int64_t i = 0; i < n; i++) *sf_tensor_ptr_linear(dst, i) = *sf_tensor_ptr_linear(src, i);
  return 0;
}

int sf_tensor_clone(sf_tensor *dst, const sf_tensor *src) {
  if (!src->storage) return sf_err("clone: tensor is empty");
  sf_tensor tmp = SF_TENSOR_EMPTY;
  if (sf_tensor_new_like(&tmp, src)) return -1;
  if (sf_tensor_copy(&tmp, src)) {
    sf_tensor_release(&tmp);
    return -1;
  }
  sf_tensor_release(dst);
  *dst = tmp;
  return 0;
}

int sf_tensor_contiguous(sf_tensor *dst, const sf_tensor *src) {
  if (!src->storage) return sf_err("contiguous: tensor is empty");
  if (sf_tensor_is_contiguous(src)) {
    sf_tensor_share(dst, src);
    return 0;
  }
  return sf_tensor_clone(dst, src);
}
