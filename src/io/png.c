/* PNG reading (any colour type and depth, to float CHW in [0,1]) and 8-bit writing,
 * through libpng. libpng reports errors by longjmp: everything allocated after setjmp is
 * held in volatile locals so the error branch can free it. */
#include <errno.h>
#include <png.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io.h"

#define MAX_SIDE 65536
#define MAX_PIXELS ((uint64_t)1 << 28)

typedef struct png_ctx {
  char msg[256];
} png_ctx;

static void on_error(png_structp png, png_const_charp msg) {
  png_ctx *c = png_get_error_ptr(png);
  snprintf(c->msg, sizeof c->msg, "%s", msg ? msg : "unknown libpng error");
  png_longjmp(png, 1);
}

/* warnings (unknown chunks, bad gamma, ...) are not errors and must not spam stderr */
static void on_warning(png_structp png, png_const_charp msg) {
  (void)png;
  (void)msg;
}

static void to_chw(float *dst, png_bytep *rows, int64_t h, int64_t w, int ch, int depth) {
  int64_t plane = h * w;
  for (int64_t y = 0; y < h; y++) {
    const unsigned char *r = rows[y];
    float *o = dst + y * w;
    if (depth == 8) {
      for (int c = 0; c < ch; c++)
        for (int64_t x = 0; x < w; x++) o[c * plane + x] = (float)r[x * ch + c] / 255.0f;
    } else {
      for (int c = 0; c < ch; c++)
        for (int64_t x = 0; x < w; x++) {
          const unsigned char *p = r + 2 * (x * ch + c);
          o[c * plane + x] = (float)(p[0] << 8 | p[1]) / 65535.0f;
        }
    }
  }
}

int sf_read_png(sf_tensor *out, const char *path, int keep_alpha) {
  FILE *fp = fopen(path, "rb");
  if (!fp) return sf_err("read_png: cannot open '%s': %s", path, strerror(errno));
  unsigned char sig[8];
  if (fread(sig, 1, 8, fp) != 8 || png_sig_cmp(sig, 0, 8)) {
    fclose(fp);
    return sf_err("read_png: file '%s' is not a PNG file (bad signature)", path);
  }
  png_ctx ctx;
  ctx.msg[0] = 0;
  png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &ctx, on_error, on_warning);
  png_infop info = png ? png_create_info_struct(png) : NULL;
  if (!info) {
    png_destroy_read_struct(png ? &png : NULL, NULL, NULL);
    fclose(fp);
    return sf_err("read_png: out of memory");
  }
  unsigned char *volatile buf = NULL;
  png_bytep *volatile rows = NULL;
  if (setjmp(png_jmpbuf(png))) {
    png_destroy_read_struct(&png, &info, NULL);
    free(buf);
    free(rows);
    fclose(fp);
    sf_tensor_release(out);
    return sf_err("read_png: file '%s' is not a valid PNG (%s)", path, ctx.msg);
  }
  png_init_io(png, fp);
  png_set_sig_bytes(png, 8);
  png_set_user_limits(png, MAX_SIDE, MAX_SIDE);
  png_read_info(png, info);
  png_uint_32 w = png_get_image_width(png, info), h = png_get_image_height(png, info);
  int color = png_get_color_type(png, info);
  if ((uint64_t)w * h > MAX_PIXELS) png_error(png, "image too large");
  if (color == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
  if (color == PNG_COLOR_TYPE_GRAY && png_get_bit_depth(png, info) < 8) png_set_expand_gray_1_2_4_to_8(png);
  if (keep_alpha) {
    if (png_get_valid(png, info, PNG_INFO_tRNS)) png_set_tRNS_to_alpha(png);
    else if (!(color & PNG_COLOR_MASK_ALPHA)) png_set_add_alpha(png, 0xffff, PNG_FILLER_AFTER); /* opaque */
  } else {
    png_set_strip_alpha(png); /* also the alpha a palette's tRNS expands to */
  }
  png_set_interlace_handling(png);
  png_read_update_info(png, info);
  int ch = png_get_channels(png, info), depth = png_get_bit_depth(png, info);
  size_t rowbytes = png_get_rowbytes(png, info);
  if ((depth != 8 && depth != 16) || ch < 1 || ch > 4 || rowbytes < (size_t)w * (size_t)ch * (size_t)(depth / 8))
    png_error(png, "unexpected layout after transformations");
  buf = malloc(rowbytes * h);
  rows = malloc(sizeof(png_bytep) * h);
  if (!buf || !rows) png_error(png, "out of memory");
  for (png_uint_32 y = 0; y < h; y++) rows[y] = buf + y * rowbytes;
  png_read_image(png, rows);
  png_read_end(png, NULL);
  int64_t size[3] = {ch, (int64_t)h, (int64_t)w};
  if (sf_tensor_new(out, 3, size)) {
    /* keep the storage message: copy it before the cleanup path formats its own */
    snprintf(ctx.msg, sizeof ctx.msg, "%s", sf_errmsg());
    png_longjmp(png, 1);
  }
  to_chw(sf_tensor_data(out), rows, (int64_t)h, (int64_t)w, ch, depth);
  png_destroy_read_struct(&png, &info, NULL);
  free(buf);
  free(rows);
  fclose(fp);
  return 0;
}

static unsigned char to_byte(float v) {
  if (!(v > 0.0f)) return 0; /* also NaN */
  if (v >= 1.0f) return 255;
  return (unsigned char)(v * 255.0f + 0.5f);
}

int sf_write_png(const char *path, const sf_tensor *t) {
  char b[SF_SHAPE_BUF];
  if (!t->storage) return sf_err("write_png: argument #2 is an empty tensor");
  int ch;
  int64_t h, w;
  if (t->ndim == 2) {
    ch = 1, h = t->size[0], w = t->size[1];
  } else if (t->ndim == 3 && (t->size[0] == 1 || t->size[0] == 3 || t->size[0] == 4)) {
    ch = (int)t->size[0], h = t->size[1], w = t->size[2];
  } else {
    return sf_err("write_png: argument #2 has shape %s, expected [H,W], [1,H,W], [3,H,W] or [4,H,W]", sf_tshape(t, b));
  }
  if (h < 1 || w < 1 || h > MAX_SIDE || w > MAX_SIDE)
    return sf_err("write_png: argument #2 has shape %s, image sides must be 1..%d", sf_tshape(t, b), MAX_SIDE);
  char tmp[4096];
  if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp) return sf_err("write_png: path too long: '%s'", path);

  /* everything is allocated before setjmp, so no local changes after it */
  sf_tensor c = SF_TENSOR_EMPTY;
  if (sf_tensor_contiguous(&c, t)) return -1;
  unsigned char *row = malloc((size_t)(w * ch));
  if (!row) {
    sf_tensor_release(&c);
    return sf_err("write_png: out of memory");
  }
  FILE *fp = fopen(tmp, "wb");
  if (!fp) {
    int err = errno;
    free(row);
    sf_tensor_release(&c);
    return sf_err("write_png: cannot create '%s': %s", tmp, strerror(err));
  }
  png_ctx ctx;
  ctx.msg[0] = 0;
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, &ctx, on_error, on_warning);
  png_infop info = png ? png_create_info_struct(png) : NULL;
  if (!info) {
    png_destroy_write_struct(png ? &png : NULL, NULL);
    snprintf(ctx.msg, sizeof ctx.msg, "out of memory");
    goto fail;
  }
  if (setjmp(png_jmpbuf(png))) {
    png_destroy_write_struct(&png, &info);
    goto fail;
  }
  png_init_io(png, fp);
  static const int types[5] = {0, PNG_COLOR_TYPE_GRAY, 0, PNG_COLOR_TYPE_RGB, PNG_COLOR_TYPE_RGB_ALPHA};
  png_set_IHDR(png, info, (png_uint_32)w, (png_uint_32)h, 8, types[ch], PNG_INTERLACE_NONE,
               PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
  png_write_info(png, info);
  const float *src = sf_tensor_data(&c);
  for (int64_t y = 0; y < h; y++) {
    for (int k = 0; k < ch; k++)
      for (int64_t x = 0; x < w; x++) row[x * ch + k] = to_byte(src[(k * h + y) * w + x]);
    png_write_row(png, row);
  }
  png_write_end(png, NULL);
  png_destroy_write_struct(&png, &info);
  free(row);
  sf_tensor_release(&c);
  if (fclose(fp)) {
    int err = errno;
    remove(tmp);
    return sf_err("write_png: cannot write '%s': %s", tmp, strerror(err));
  }
  if (rename(tmp, path)) {
    int err = errno;
    remove(tmp);
    return sf_err("write_png: cannot rename '%s' to '%s': %s", tmp, path, strerror(err));
  }
  return 0;
fail:
  free(row);
  sf_tensor_release(&c);
  fclose(fp);
  remove(tmp);
  return sf_err("write_png: cannot write '%s' (%s)", tmp, ctx.msg);
}
