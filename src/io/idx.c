/* IDX reader (MNIST / Fashion-MNIST), plain or gzip, through zlib's gzread. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>

#include "io.h"

#define CHUNK (1 << 20)
/* deflate cannot compress better than about 1032:1, so a gzip file of n bytes holds
 * at most this many: a bound to reject a corrupt header before allocating */
#define GZ_MAX_RATIO 1100

static uint32_t be32(const unsigned char *p) {
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

/* Read up to n bytes; returns the count, or -1 with the message set for a corrupt stream. */
static int64_t read_full(gzFile f, const char *path, void *buf, int64_t n) {
  int64_t got = 0;
  while (got < n) {
    int64_t want = n - got > CHUNK ? CHUNK : n - got;
    int r = gzread(f, (char *)buf + got, (unsigned)want);
    if (r < 0) {
      int code;
      const char *msg = gzerror(f, &code);
      return sf_err("read_idx: file '%s' is corrupt (%s)", path, code == Z_ERRNO ? strerror(errno) : msg);
    }
    if (r == 0) break;
    got += r;
  }
  return got;
}

static void convert(float *dst, const unsigned char *src, int64_t n, int type) {
  if (type == 0x08) {
    for (int64_t i = 0; i < n; i++) dst[i] = (float)src[i];
  } else if (type == 0x0C) {
    for (int64_t i = 0; i < n; i++) dst[i] = (float)(int32_t)be32(src + 4 * i);
  } else {
    for (int64_t i = 0; i < n; i++) {
      uint32_t u = be32(src + 4 * i);
      memcpy(dst + i, &u, sizeof u);
    }
  }
}

static int read_body(sf_tensor *out, gzFile f, const char *path, int64_t compressed_size, int is_gz) {
  unsigned char hdr[4 + 4 * SF_MAX_DIMS];
  int64_t got = read_full(f, path, hdr, 4);
  if (got < 0) return -1;
  if (got < 4) return sf_err("read_idx: file '%s' is too short for an IDX header (%lld bytes)", path, (long long)got);
  if (hdr[0] != 0 || hdr[1] != 0)
    return sf_err("read_idx: file '%s' is not an IDX file (magic %02x %02x %02x %02x, expected 00 00 <type> <ndim>)",
                  path, hdr[0], hdr[1], hdr[2], hdr[3]);
  int type = hdr[2], ndim = hdr[3];
  int esize;
  switch (type) {
  case 0x08: esize = 1; break;
  case 0x0C: esize = 4; break;
  case 0x0D: esize = 4; break;
  default:
    return sf_err("read_idx: file '%s' has IDX element type 0x%02x; supported: 0x08 (ubyte), 0x0C (int32), 0x0D (float)",
                  path, type);
  }
  if (ndim < 1 || ndim > SF_MAX_DIMS)
    return sf_err("read_idx: file '%s' declares %d dimensions; supported: 1 to %d", path, ndim, SF_MAX_DIMS);
  got = read_full(f, path, hdr + 4, 4 * ndim);
  if (got < 0) return -1;
  if (got < 4 * ndim)
    return sf_err("read_idx: file '%s' is truncated: expected %d bytes of header, got %lld", path, 4 + 4 * ndim,
                  (long long)(4 + got));
  int64_t size[SF_MAX_DIMS], numel = 1;
  for (int d = 0; d < ndim; d++) {
    uint32_t s = be32(hdr + 4 + 4 * d);
    if (s > INT32_MAX) return sf_err("read_idx: file '%s' has dimension %d of size %lu", path, d + 1, (unsigned long)s);
    size[d] = (int64_t)s;
    if (size[d] && numel > ((int64_t)1 << 40) / size[d]) {
      char b[SF_SHAPE_BUF];
      return sf_err("read_idx: file '%s' declares an impossible shape %s", path, sf_shape_str(b, sizeof b, d + 1, size));
    }
    numel *= size[d];
  }
  int64_t bytes = numel * esize, header = 4 + 4 * (int64_t)ndim;
  char shp[SF_SHAPE_BUF];
  sf_shape_str(shp, sizeof shp, ndim, size);
  /* reject before allocating what the file cannot hold */
  if (!is_gz && compressed_size - header < bytes)
    return sf_err("read_idx: file '%s' is truncated: expected %lld bytes of data for shape %s, got %lld", path,
                  (long long)bytes, shp, (long long)(compressed_size - header));
  if (is_gz && bytes > compressed_size * GZ_MAX_RATIO)
    return sf_err("read_idx: file '%s' is truncated: shape %s needs %lld bytes of data, more than %lld compressed "
                  "bytes can hold",
                  path, shp, (long long)bytes, (long long)compressed_size);

  unsigned char *chunk = malloc(CHUNK);
  if (!chunk) return sf_err("read_idx: out of memory");
  if (sf_tensor_new(out, ndim, size)) {
    free(chunk);
    return -1;
  }
  float *dst = sf_tensor_data(out);
  int64_t done = 0; /* bytes converted */
  while (done < bytes) {
    int64_t want = bytes - done > CHUNK ? CHUNK : bytes - done;
    got = read_full(f, path, chunk, want);
    if (got < 0) goto fail;
    got -= got % esize;
    convert(dst + done / esize, chunk, got / esize, type);
    done += got;
    if (got < want) {
      sf_err("read_idx: file '%s' is truncated: expected %lld bytes of data for shape %s, got %lld", path,
             (long long)bytes, shp, (long long)done);
      goto fail;
    }
  }
  got = read_full(f, path, chunk, 1); /* also lets zlib check the gzip trailer */
  if (got < 0) goto fail;
  if (got > 0) {
    sf_err("read_idx: file '%s' has extra bytes after the %lld bytes of data for shape %s", path, (long long)bytes, shp);
    goto fail;
  }
  free(chunk);
  return 0;
fail:
  free(chunk);
  sf_tensor_release(out);
  return -1;
}

int sf_read_idx(sf_tensor *out, const char *path) {
  FILE *fp = fopen(path, "rb");
  if (!fp) return sf_err("read_idx: cannot open '%s': %s", path, strerror(errno));
  struct stat st;
  unsigned char magic[2] = {0, 0};
  int serr = fstat(fileno(fp), &st) ? errno : S_ISDIR(st.st_mode) ? EISDIR : 0;
  if (serr) {
    fclose(fp);
    return sf_err("read_idx: cannot read '%s': %s", path, strerror(serr));
  }
  int is_gz = fread(magic, 1, 2, fp) == 2 && magic[0] == 0x1f && magic[1] == 0x8b;
  fclose(fp);
  /* gzread reads plain files transparently, so one path serves both */
  gzFile f = gzopen(path, "rb");
  if (!f) return sf_err("read_idx: cannot open '%s': %s", path, errno ? strerror(errno) : "out of memory");
  gzbuffer(f, 1 << 18);
  int rc = read_body(out, f, path, (int64_t)st.st_size, is_gz);
  gzclose(f);
  return rc;
}
