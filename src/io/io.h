/*
 * surgft file readers and writers: the real published formats of the data sets.
 *
 *   sf_tensor x = SF_TENSOR_EMPTY;
 *   if (sf_read_idx(&x, "/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz"))
 *     fprintf(stderr, "%s\n", sf_errmsg());   // "read_idx: file '...' is truncated: ..."
 *
 * Conventions are those of tensor.h: outputs first, 0 on success, -1 with the message in
 * sf_errmsg() on failure, outputs left empty on failure. Every message starts with the
 * Lua name of the function and names the file and what is wrong with it. Headers are
 * checked against the file size before the data buffer is allocated, so a corrupt header
 * cannot ask for an absurd allocation. Writers write to "<path>.tmp" and rename it over
 * <path> only when everything succeeded, so a failed write leaves no half-written file.
 */
#ifndef SF_IO_H
#define SF_IO_H

#include <stdint.h>

#include "../core/tensor.h"

/* ---- IDX (idx.c): the MNIST / Fashion-MNIST format, plain or gzip ----
 * Element types ubyte (0x08), int32 (0x0C) and float32 (0x0D), big-endian, 1..8 dims.
 * out gets the IDX dims; values are kept raw (ubyte stays 0..255). */
int sf_read_idx(sf_tensor *out, const char *path);

/* ---- CIFAR-10 binary batches (cifar.c) ----
 * Records of 1 label byte + 3072 pixel bytes (R, G, B planes of 32x32).
 * images: [N,3,32,32] in [0,1]; labels: [N], class ids 0..9 as floats. */
int sf_read_cifar(sf_tensor *images, sf_tensor *labels, const char *path);

/* ---- NumPy .npy (npy.c) ----
 * Format versions 1.0, 2.0 and 3.0; dtypes u1 i1 b1 i2 u2 i4 u4 i8 u8 f4 f8 (< or > order),
 * converted to float32 (u1 stays 0..255). fortran_order True is read and transposed into
 * a C-order tensor of the declared shape. When expect_ndim >= 0 the shape must have that
 * many dims and match expect (entries < 0 match anything); this is checked before the data
 * is read. */
int sf_read_npy(sf_tensor *out, const char *path, int expect_ndim, const int64_t *expect);
/* Writes t (any strides) as a version 1.0 '<f4' C-order array. */
int sf_write_npy(const char *path, const sf_tensor *t);

/* ---- PNG through libpng (png.c) ----
 * Any bit depth and colour type, palette expanded, interlacing handled. out is CHW in
 * [0,1]: gray -> [1,H,W], RGB and palette -> [3,H,W]. Alpha (including a tRNS chunk) is
 * dropped unless keep_alpha, which gives [2,H,W] for gray and [4,H,W] for colour. */
int sf_read_png(sf_tensor *out, const char *path, int keep_alpha);
/* t is [H,W] or [1,H,W] (gray), [3,H,W] (RGB) or [4,H,W] (RGBA), values in [0,1]
 * (clamped, rounded to 8 bits, NaN -> 0). */
int sf_write_png(const char *path, const sf_tensor *t);

/* ---- CSV with a header line (csv.c) ----
 * RFC 4180: fields separated by commas, optionally in double quotes (which may hold
 * commas, newlines and doubled quotes), LF or CRLF line ends, an optional final newline,
 * empty fields. Every row must have as many fields as the header. Column names must be
 * distinct (the first may be empty, as in the WILDS metadata files). */
typedef struct sf_csv {
  int ncols;
  int64_t nrows;
  char **header; /* ncols names */
  char **cells;  /* nrows * ncols fields, row-major, NUL-terminated */
  char *buf;     /* the file's bytes; header and cells point into it */
} sf_csv;
#define SF_CSV_EMPTY {0, 0, NULL, NULL, NULL}

int sf_read_csv(sf_csv *out, const char *path);
void sf_csv_free(sf_csv *c); /* idempotent; leaves c empty */
int sf_csv_column(const sf_csv *c, const char *name); /* 0-based index, -1 when absent */
/* Error "read_csv: file 'p' has no column 'x' (columns: a, b, c)" unless every name exists. */
int sf_csv_require(const sf_csv *c, const char *path, int n, const char *const *names);

#endif
