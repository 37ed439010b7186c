/* CIFAR-10 binary batch reader (data_batch_<i>.bin, test_batch.bin). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "io.h"

#define PIXELS 3072 /* 3 planes of 32x32 */
#define RECORD (1 + PIXELS)
#define BATCH 256 /* records per fread */

int sf_read_cifar(sf_tensor *images, sf_tensor *labels, const char *path) {
  FILE *fp = fopen(path, "rb");
  if (!fp) return sf_err("read_cifar: cannot open '%s': %s", path, strerror(errno));
  struct stat st;
  int serr = fstat(fileno(fp), &st) ? errno : S_ISDIR(st.st_mode) ? EISDIR : 0;
  if (serr) {
    fclose(fp);
    return sf_err("read_cifar: cannot read '%s': %s", path, strerror(serr));
  }
  int64_t size = (int64_t)st.st_size;
  if (size == 0 || size % RECORD) {
    fclose(fp);
    return sf_err("read_cifar: file '%s' has %lld bytes, not a positive multiple of %d (1 label byte + %d pixel "
                  "bytes per image)",
                  path, (long long)size, RECORD, PIXELS);
  }
  int64_t n = size / RECORD;
  int64_t isz[4] = {n, 3, 32, 32};
  unsigned char *buf = malloc((size_t)BATCH * RECORD);
  if (!buf) {
    fclose(fp);
    return sf_err("read_cifar: out of memory");
  }
  if (sf_tensor_new(images, 4, isz) || sf_tensor_new(labels, 1, &n)) goto fail;
  float *img = sf_tensor_data(images), *lab = sf_tensor_data(labels);
  for (int64_t i0 = 0; i0 < n; i0 += BATCH) {
    int64_t m = n - i0 < BATCH ? n - i0 : BATCH;
    size_t got = fread(buf, RECORD, (size_t)m, fp);
    if ((int64_t)got != m) {
      sf_err("read_cifar: file '%s' is truncated: expected %lld records, read %lld (%s)", path, (long long)n,
             (long long)(i0 + (int64_t)got), ferror(fp) ? strerror(errno) : "unexpected end of file");
      goto fail;
    }
    for (int64_t k = 0; k < m; k++) {
      const unsigned char *r = buf + k * RECORD;
      if (r[0] > 9) {
        sf_err("read_cifar: file '%s' record %lld has label %d, expected 0..9 (is it a CIFAR-10 batch?)", path,
               (long long)(i0 + k + 1), r[0]);
        goto fail;
      }
      lab[i0 + k] = (float)r[0];
      float *o = img + (i0 + k) * PIXELS;
      for (int j = 0; j < PIXELS; j++) o[j] = (float)r[1 + j] / 255.0f;
    }
  }
  free(buf);
  fclose(fp);
  return 0;
fail:
  free(buf);
  fclose(fp);
  sf_tensor_release(images);
  sf_tensor_release(labels);
  return -1;
}
