/* NumPy .npy reader (numeric dtypes to float32) and '<f4' writer. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "io.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "npy.c assumes a little-endian host"
#endif

#define CHUNK (1 << 20)
#define MAX_HEADER (1 << 20) /* numpy itself refuses headers much longer than this */

typedef struct npy_header {
  char kind;  /* 'f', 'i', 'u', 'b' */
  int esize;  /* bytes per element */
  int swap;   /* big-endian data */
  int fortran;
  int ndim;
  int64_t size[SF_MAX_DIMS];
  char descr[32];
} npy_header;

/* ---- header: a Python dict literal {'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), } ---- */

typedef struct cursor {
  const char *p, *end;
  const char *path;
} cursor;

static void skip_ws(cursor *c) {
  while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r')) c->p++;
}

static int bad(const cursor *c, const char *what) {
  return sf_err("read_npy: file '%s' has a bad header (%s)", c->path, what);
}

static int expect_char(cursor *c, char ch, const char *what) {
  skip_ws(c);
  if (c->p >= c->end || *c->p != ch) return bad(c, what);
  c->p++;
  return 0;
}

/* a quoted string into buf (truncated silently: names we accept are short) */
static int parse_string(cursor *c, char *buf, size_t n) {
  skip_ws(c);
  if (c->p >= c->end || (*c->p != '\'' && *c->p != '"')) return bad(c, "expected a quoted string");
  char q = *c->p++;
  size_t k = 0;
  while (c->p < c->end && *c->p != q) {
    if (k + 1 < n) buf[k++] = *c->p;
    c->p++;
  }
  if (c->p >= c->end) return bad(c, "unterminated string");
  c->p++;
  buf[k] = 0;
  return 0;
}

static int parse_bool(cursor *c, int *v) {
  skip_ws(c);
  size_t left = (size_t)(c->end - c->p);
  if (left >= 4 && !memcmp(c->p, "True", 4)) {
    *v = 1;
    c->p += 4;
  } else if (left >= 5 && !memcmp(c->p, "False", 5)) {
    *v = 0;
    c->p += 5;
  } else {
    return bad(c, "fortran_order is not True or False");
  }
  return 0;
}

static int parse_shape(cursor *c, npy_header *h) {
  if (expect_char(c, '(', "shape is not a tuple")) return -1;
  h->ndim = 0;
  for (;;) {
    skip_ws(c);
    if (c->p < c->end && *c->p == ')') {
      c->p++;
      return 0;
    }
    if (c->p >= c->end || *c->p < '0' || *c->p > '9') return bad(c, "shape entry is not a non-negative integer");
    int64_t v = 0;
    while (c->p < c->end && *c->p >= '0' && *c->p <= '9') {
      if (v > ((int64_t)1 << 40)) return bad(c, "shape entry too large");
      v = v * 10 + (*c->p++ - '0');
    }
    if (h->ndim == SF_MAX_DIMS) return sf_err("read_npy: file '%s' has more than %d dimensions", c->path, SF_MAX_DIMS);
    h->size[h->ndim++] = v;
    skip_ws(c);
    if (c->p < c->end && *c->p == ',') c->p++;
    else if (!(c->p < c->end && *c->p == ')')) return bad(c, "shape entries not separated by commas");
  }
}

static int parse_descr(const char *path, npy_header *h) {
  const char *d = h->descr;
  char order = d[0];
  if (order != '<' && order != '>' && order != '|' && order != '=') goto unsupported;
  h->kind = d[1];
  h->esize = 0;
  if (d[2] >= '1' && d[2] <= '8' && d[3] == 0) h->esize = d[2] - '0';
  switch (h->kind) {
  case 'f': if (h->esize != 4 && h->esize != 8) goto unsupported; break;
  case 'i':
  case 'u': if (h->esize != 1 && h->esize != 2 && h->esize != 4 && h->esize != 8) goto unsupported; break;
  case 'b': if (h->esize != 1) goto unsupported; break;
  default: goto unsupported;
  }
  h->swap = order == '>' && h->esize > 1;
  return 0;
unsupported:
  return sf_err("read_npy: file '%s' has dtype '%s'; supported: u1 i1 b1 i2 u2 i4 u4 i8 u8 f4 f8 (little- or "
                "big-endian)",
                path, d);
}

static int parse_header(const char *text, size_t n, const char *path, npy_header *h) {
  cursor c = {text, text + n, path};
  int seen_descr = 0, seen_fortran = 0, seen_shape = 0;
  if (expect_char(&c, '{', "not a dict")) return -1;
  for (;;) {
    skip_ws(&c);
    if (c.p < c.end && *c.p == '}') break;
    char key[32];
    if (parse_string(&c, key, sizeof key) || expect_char(&c, ':', "expected ':' after a key")) return -1;
    if (!strcmp(key, "descr")) {
      skip_ws(&c);
      if (c.p < c.end && *c.p == '[') return sf_err("read_npy: file '%s' holds a structured dtype; only plain numeric dtypes are supported", path);
      if (parse_string(&c, h->descr, sizeof h->descr)) return -1;
      seen_descr = 1;
    } else if (!strcmp(key, "fortran_order")) {
      if (parse_bool(&c, &h->fortran)) return -1;
      seen_fortran = 1;
    } else if (!strcmp(key, "shape")) {
      if (parse_shape(&c, h)) return -1;
      seen_shape = 1;
    } else {
      return sf_err("read_npy: file '%s' has a bad header (unknown key '%s')", path, key);
    }
    skip_ws(&c);
    if (c.p < c.end && *c.p == ',') c.p++;
    else if (!(c.p < c.end && *c.p == '}')) return bad(&c, "entries not separated by commas");
  }
  if (!seen_descr || !seen_fortran || !seen_shape)
    return sf_err("read_npy: file '%s' has a bad header (missing '%s')", path,
                  !seen_descr ? "descr" : !seen_fortran ? "fortran_order" : "shape");
  return parse_descr(path, h);
}

/* ---- data ---- */

static void swap_bytes(unsigned char *p, int64_t n, int esize) {
  for (int64_t i = 0; i < n; i++, p += esize)
    for (int a = 0, b = esize - 1; a < b; a++, b--) {
      unsigned char t = p[a];
      p[a] = p[b];
      p[b] = t;
    }
}

#define CONVERT(T)                                   \
  do {                                               \
    const T *s = (const T *)(const void *)src;       \
    for (int64_t i = 0; i < n; i++) dst[i] = (float)s[i]; \
  } while (0)

static void convert(float *dst, const unsigned char *src, int64_t n, const npy_header *h) {
  switch (h->kind) {
  case 'f':
    if (h->esize == 4) memcpy(dst, src, (size_t)n * 4);
    else CONVERT(double);
    break;
  case 'b':
    for (int64_t i = 0; i < n; i++) dst[i] = src[i] ? 1.0f : 0.0f;
    break;
  case 'i':
    if (h->esize == 1) CONVERT(int8_t);
    else if (h->esize == 2) CONVERT(int16_t);
    else if (h->esize == 4) CONVERT(int32_t);
    else CONVERT(int64_t);
    break;
  default:
    if (h->esize == 1) CONVERT(uint8_t);
    else if (h->esize == 2) CONVERT(uint16_t);
    else if (h->esize == 4) CONVERT(uint32_t);
    else CONVERT(uint64_t);
    break;
  }
}

static int check_expect(const char *path, const npy_header *h, int expect_ndim, const int64_t *expect) {
  if (expect_ndim < 0) return 0;
  int ok = h->ndim == expect_ndim;
  for (int d = 0; ok && d < expect_ndim; d++) ok = expect[d] < 0 || expect[d] == h->size[d];
  if (ok) return 0;
  char got[SF_SHAPE_BUF], want[SF_SHAPE_BUF];
  size_t used = 0;
  want[used++] = '[';
  for (int d = 0; d < expect_ndim && used + 24 < sizeof want; d++) {
    int w = expect[d] < 0 ? snprintf(want + used, sizeof want - used, d ? ",*" : "*")
                          : snprintf(want + used, sizeof want - used, d ? ",%lld" : "%lld", (long long)expect[d]);
    if (w > 0) used += (size_t)w;
  }
  snprintf(want + used, sizeof want - used, "]");
  return sf_err("read_npy: file '%s' has shape %s, expected %s", path, sf_shape_str(got, sizeof got, h->ndim, h->size),
                want);
}

static int read_data(sf_tensor *out, FILE *fp, const char *path, const npy_header *h, int64_t numel) {
  unsigned char *chunk = malloc(CHUNK);
  if (!chunk) return sf_err("read_npy: out of memory");
  float *dst = sf_tensor_data(out);
  int64_t per = CHUNK / h->esize;
  for (int64_t i = 0; i < numel; i += per) {
    int64_t m = numel - i < per ? numel - i : per;
    if ((int64_t)fread(chunk, (size_t)h->esize, (size_t)m, fp) != m) {
      free(chunk);
      return sf_err("read_npy: cannot read '%s': %s", path, ferror(fp) ? strerror(errno) : "unexpected end of file");
    }
    if (h->swap) swap_bytes(chunk, m, h->esize);
    convert(dst + i, chunk, m, h);
  }
  free(chunk);
  return 0;
}

int sf_read_npy(sf_tensor *out, const char *path, int expect_ndim, const int64_t *expect) {
  FILE *fp = fopen(path, "rb");
  if (!fp) return sf_err("read_npy: cannot open '%s': %s", path, strerror(errno));
  struct stat st;
  char *text = NULL;
  sf_tensor raw = SF_TENSOR_EMPTY;
  int serr = fstat(fileno(fp), &st) ? errno : S_ISDIR(st.st_mode) ? EISDIR : 0;
  if (serr) {
    sf_err("read_npy: cannot read '%s': %s", path, strerror(serr));
    goto fail;
  }
  unsigned char pre[12];
  size_t got = fread(pre, 1, 10, fp);
  if (got < 10 || memcmp(pre, "\x93NUMPY", 6)) {
    sf_err("read_npy: file '%s' is not a .npy file (no \\x93NUMPY magic)", path);
    goto fail;
  }
  int major = pre[6];
  int64_t hlen, prefix;
  if (major == 1) {
    hlen = pre[8] | pre[9] << 8;
    prefix = 10;
  } else if (major == 2 || major == 3) {
    if (fread(pre + 10, 1, 2, fp) != 2) {
      sf_err("read_npy: file '%s' is truncated in its header", path);
      goto fail;
    }
    hlen = (int64_t)pre[8] | (int64_t)pre[9] << 8 | (int64_t)pre[10] << 16 | (int64_t)pre[11] << 24;
    prefix = 12;
  } else {
    sf_err("read_npy: file '%s' has format version %d.%d; supported: 1.0, 2.0, 3.0", path, major, pre[7]);
    goto fail;
  }
  if (hlen > MAX_HEADER || prefix + hlen > (int64_t)st.st_size) {
    sf_err("read_npy: file '%s' is truncated: header of %lld bytes, file of %lld bytes", path, (long long)hlen,
           (long long)st.st_size);
    goto fail;
  }
  text = malloc((size_t)hlen + 1);
  if (!text) {
    sf_err("read_npy: out of memory");
    goto fail;
  }
  if ((int64_t)fread(text, 1, (size_t)hlen, fp) != hlen) {
    sf_err("read_npy: cannot read the header of '%s'", path);
    goto fail;
  }
  text[hlen] = 0;
  npy_header h;
  memset(&h, 0, sizeof h);
  if (parse_header(text, (size_t)hlen, path, &h) || check_expect(path, &h, expect_ndim, expect)) goto fail;
  int64_t numel = 1;
  for (int d = 0; d < h.ndim; d++) {
    if (h.size[d] && numel > ((int64_t)1 << 40) / h.size[d]) {
      sf_err("read_npy: file '%s' declares an impossible shape", path);
      goto fail;
    }
    numel *= h.size[d];
  }
  int64_t bytes = numel * h.esize, avail = (int64_t)st.st_size - prefix - hlen;
  char shp[SF_SHAPE_BUF];
  sf_shape_str(shp, sizeof shp, h.ndim, h.size);
  if (avail != bytes) {
    sf_err("read_npy: file '%s' %s: shape %s of dtype '%s' needs %lld bytes of data, the file has %lld", path,
           avail < bytes ? "is truncated" : "has trailing bytes", shp, h.descr, (long long)bytes, (long long)avail);
    goto fail;
  }
  /* Fortran order: the bytes are the C-order array of the reversed shape */
  int64_t rsize[SF_MAX_DIMS];
  for (int d = 0; d < h.ndim; d++) rsize[d] = h.fortran ? h.size[h.ndim - 1 - d] : h.size[d];
  if (sf_tensor_new(&raw, h.ndim, rsize) || read_data(&raw, fp, path, &h, numel)) goto fail;
  if (h.fortran && h.ndim > 1) {
    int perm[SF_MAX_DIMS];
    for (int d = 0; d < h.ndim; d++) perm[d] = h.ndim - 1 - d;
    sf_tensor view = SF_TENSOR_EMPTY;
    sf_tensor_permute(&view, &raw, perm);
    int rc = sf_tensor_clone(out, &view);
    sf_tensor_release(&view);
    if (rc) goto fail;
    sf_tensor_release(&raw);
  } else {
    sf_tensor_release(out);
    *out = raw; /* hand over the reference */
  }
  free(text);
  fclose(fp);
  return 0;
fail:
  sf_tensor_release(&raw);
  free(text);
  fclose(fp);
  return -1;
}

/* ---- writer ---- */

int sf_write_npy(const char *path, const sf_tensor *t) {
  if (!t->storage) return sf_err("write_npy: argument #2 is an empty tensor");
  char tmp[4096];
  if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp)
    return sf_err("write_npy: path too long: '%s'", path);
  /* header: dict, spaces, '\n', total prefix a multiple of 64 as numpy writes it */
  char dict[512];
  int n = snprintf(dict, sizeof dict, "{'descr': '<f4', 'fortran_order': False, 'shape': (");
  for (int d = 0; d < t->ndim; d++)
    n += snprintf(dict + n, sizeof dict - (size_t)n, t->ndim == 1 ? "%lld," : d ? ", %lld" : "%lld",
                  (long long)t->size[d]);
  n += snprintf(dict + n, sizeof dict - (size_t)n, "), }");
  int total = 10 + n + 1;
  int pad = (64 - total % 64) % 64;
  int hlen = n + pad + 1;
  unsigned char pre[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, (unsigned char)(hlen & 0xff), (unsigned char)(hlen >> 8)};

  sf_tensor c = SF_TENSOR_EMPTY;
  if (sf_tensor_contiguous(&c, t)) return -1;
  FILE *fp = fopen(tmp, "wb");
  if (!fp) {
    sf_tensor_release(&c);
    return sf_err("write_npy: cannot create '%s': %s", tmp, strerror(errno));
  }
  int64_t numel = sf_tensor_numel(&c);
  int ok = fwrite(pre, 1, 10, fp) == 10 && fwrite(dict, 1, (size_t)n, fp) == (size_t)n;
  for (int i = 0; ok && i < pad; i++) ok = fputc(' ', fp) != EOF;
  ok = ok && fputc('\n', fp) != EOF;
  ok = ok && (numel == 0 || fwrite(sf_tensor_data(&c), sizeof(float), (size_t)numel, fp) == (size_t)numel);
  int err = errno;
  sf_tensor_release(&c);
  if (fclose(fp) != 0 && ok) {
    ok = 0;
    err = errno;
  }
  if (!ok) {
    remove(tmp);
    return sf_err("write_npy: cannot write '%s': %s", tmp, strerror(err));
  }
  if (rename(tmp, path)) {
    err = errno;
    remove(tmp);
    return sf_err("write_npy: cannot rename '%s' to '%s': %s", tmp, path, strerror(err));
  }
  return 0;
}
