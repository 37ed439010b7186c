/* safetensors raw data: tensor bytes straight between a FILE and a tensor (any dtype in, F32 out). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include "safetensors.h"

#define CHUNK (1 << 20) /* bytes converted per pass on the slow paths */

typedef enum { K_FLOAT, K_SIGNED, K_UNSIGNED, K_BOOL, K_F16, K_BF16 } st_kind;

typedef struct st_dtype {
  const char *name;
  int size;
  st_kind kind;
} st_dtype;

static const st_dtype dtypes[] = {
    {"F64", 8, K_FLOAT},    {"F32", 4, K_FLOAT},    {"F16", 2, K_F16},      {"BF16", 2, K_BF16},   {"I64", 8, K_SIGNED},
    {"I32", 4, K_SIGNED},   {"I16", 2, K_SIGNED},   {"I8", 1, K_SIGNED},    {"U64", 8, K_UNSIGNED},
    {"U32", 4, K_UNSIGNED}, {"U16", 2, K_UNSIGNED}, {"U8", 1, K_UNSIGNED},  {"BOOL", 1, K_BOOL},
};

static const st_dtype *find_dtype(const char *name) {
  for (size_t i = 0; i < sizeof dtypes / sizeof *dtypes; i++)
    if (!strcmp(dtypes[i].name, name)) return &dtypes[i];
  return NULL;
}

int sf_st_dtype_size(const char *dtype) {
  const st_dtype *d = find_dtype(dtype);
  return d ? d->size : 0;
}

static int host_is_little(void) {
  const uint16_t one = 1;
  unsigned char b;
  memcpy(&b, &one, 1);
  return b == 1;
}

/* the file's bytes are little-endian whatever the host: assemble integers by shifts */
static uint64_t load_le(const unsigned char *p, int n) {
  uint64_t v = 0;
  for (int i = n - 1; i >= 0; i--) v = (v << 8) | p[i];
  return v;
}

static float bits_to_float(uint32_t u) {
  float f;
  memcpy(&f, &u, sizeof f);
  return f;
}

static float half_to_float(uint16_t h) {
  uint32_t sign = (uint32_t)(h >> 15) << 31, exp = (h >> 10) & 0x1fu, man = h & 0x3ffu;
  if (exp == 0x1f) return bits_to_float(sign | 0x7f800000u | (man << 13)); /* inf, NaN (payload kept) */
  if (exp) return bits_to_float(sign | ((exp + 112u) << 23) | (man << 13)); /* rebias 15 -> 127 */
  float v = (float)man * 5.9604644775390625e-8f;                            /* subnormal: man * 2^-24, exact */
  return sign ? -v : v;
}

static void convert(float *dst, const unsigned char *src, int64_t n, const st_dtype *d) {
  int s = d->size;
  for (int64_t i = 0; i < n; i++, src += s) {
    uint64_t u = load_le(src, s);
    switch (d->kind) {
    case K_FLOAT:
      if (s == 4) {
        dst[i] = bits_to_float((uint32_t)u);
      } else {
        double x;
        memcpy(&x, &u, sizeof x);
        dst[i] = (float)x;
      }
      break;
    case K_SIGNED: {
      int64_t v = (int64_t)(u << (64 - 8 * s)) >> (64 - 8 * s); /* sign-extend */
      dst[i] = (float)v;
      break;
    }
    case K_UNSIGNED: dst[i] = (float)u; break;
    case K_BOOL: dst[i] = u ? 1.0f : 0.0f; break;
    case K_F16: dst[i] = half_to_float((uint16_t)u); break;
    case K_BF16: dst[i] = bits_to_float((uint32_t)u << 16); break;
    }
  }
}

static int read_fail(FILE *fp, const char *path, const char *name, int64_t offset, int64_t want, int64_t got) {
  if (ferror(fp)) return sf_err("load_safetensors: cannot read '%s': %s", path, strerror(errno));
  return sf_err("load_safetensors: file '%s' is truncated: tensor '%s' needs %lld bytes at offset %lld, only %lld are there",
                path, name, (long long)want, (long long)offset, (long long)got);
}

int sf_st_read(sf_tensor *out, FILE *fp, const char *path, const char *name, int64_t offset, const char *dtype,
               int ndim, const int64_t *shape) {
  const st_dtype *d = find_dtype(dtype);
  if (!d)
    return sf_err("load_safetensors: file '%s': tensor '%s' has dtype '%s', which is not supported (supported: %s)", path,
                  name, dtype, SF_ST_DTYPES);
  if (ndim < 0 || ndim > SF_MAX_DIMS)
    return sf_err("load_safetensors: file '%s': tensor '%s' has %d dimensions, at most %d are supported", path, name,
                  ndim, SF_MAX_DIMS);
  if (offset < 0) return sf_err("load_safetensors: file '%s': tensor '%s' has a negative offset", path, name);
  sf_tensor t = SF_TENSOR_EMPTY;
  if (sf_tensor_new(&t, ndim, shape)) return -1;
  int64_t n = sf_tensor_numel(&t);
  if (n == 0) goto done;
  if (fseeko(fp, (off_t)offset, SEEK_SET)) {
    sf_err("load_safetensors: cannot seek in '%s' to offset %lld: %s", path, (long long)offset, strerror(errno));
    goto fail;
  }
  float *data = sf_tensor_data(&t);
  if (d->kind == K_FLOAT && d->size == 4 && host_is_little()) {
    size_t got = fread(data, 4, (size_t)n, fp);
    if (got != (size_t)n) {
      read_fail(fp, path, name, offset, n * 4, (int64_t)got * 4);
      goto fail;
    }
  } else {
    unsigned char *buf = malloc(CHUNK);
    if (!buf) {
      sf_err("load_safetensors: out of memory");
      goto fail;
    }
    int64_t per = CHUNK / d->size;
    for (int64_t i = 0; i < n; i += per) {
      int64_t m = n - i < per ? n - i : per;
      size_t got = fread(buf, (size_t)d->size, (size_t)m, fp);
      if (got != (size_t)m) {
        read_fail(fp, path, name, offset, n * d->size, (i + (int64_t)got) * d->size);
        free(buf);
        goto fail;
      }
      convert(data + i, buf, m, d);
    }
    free(buf);
  }
done:
  sf_tensor_release(out);
  *out = t; /* hand over the reference */
  return 0;
fail:
  sf_tensor_release(&t);
  return -1;
}

int sf_st_write(FILE *fp, const char *path, const sf_tensor *t) {
  if (!t->storage) return sf_err("save_safetensors: cannot write an empty (released) tensor to '%s'", path);
  int64_t n = sf_tensor_numel(t);
  if (n == 0) return 0;
  if (sf_tensor_is_contiguous(t) && host_is_little()) {
    if (fwrite(sf_tensor_data(t), 4, (size_t)n, fp) != (size_t)n)
      return sf_err("save_safetensors: cannot write '%s': %s", path, strerror(errno));
    return 0;
  }
  /* strided (or big-endian host): walk the elements in row-major order into a buffer */
  unsigned char *buf = malloc(CHUNK);
  if (!buf) return sf_err("save_safetensors: out of memory");
  const float *base = t->storage->data;
  int64_t idx[SF_MAX_DIMS] = {0}, off = t->offset;
  size_t used = 0;
  for (int64_t i = 0; i < n; i++) {
    uint32_t u;
    memcpy(&u, &base[off], sizeof u);
    for (int b = 0; b < 4; b++) buf[used++] = (unsigned char)(u >> (8 * b));
    if (used == CHUNK || i == n - 1) {
      if (fwrite(buf, 1, used, fp) != used) {
        int err = errno;
        free(buf);
        return sf_err("save_safetensors: cannot write '%s': %s", path, strerror(err));
      }
      used = 0;
    }
    for (int k = t->ndim - 1; k >= 0; k--) { /* odometer step */
      if (++idx[k] < t->size[k]) {
        off += t->stride[k];
        break;
      }
      off -= t->stride[k] * (t->size[k] - 1);
      idx[k] = 0;
    }
  }
  free(buf);
  return 0;
}
