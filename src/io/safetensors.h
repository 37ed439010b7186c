/*
 * safetensors raw data: the byte-level half of the safetensors format.
 *
 * A safetensors file is an 8-byte little-endian header length N, N bytes of JSON header
 * ({"name": {"dtype": "F32", "shape": [2,3], "data_offsets": [begin, end]}, ...,
 * "__metadata__": {...}}), then the data section, with offsets relative to its start.
 * The JSON half (parsing, validation, writing) lives in Lua (lua/surgft/checkpoint.lua,
 * through lua-cjson); these functions move tensor bytes between a FILE and a tensor, so
 * large tensors never pass through Lua strings.
 *
 *   sf_tensor t = SF_TENSOR_EMPTY;
 *   int64_t shape[2] = {16, 3};
 *   if (sf_st_read(&t, fp, "w.safetensors", "conv.weight", 8 + N + begin, "BF16", 2, shape))
 *     fprintf(stderr, "%s\n", sf_errmsg());
 *
 * Conventions are those of tensor.h (outputs first, 0 / -1 with sf_errmsg(), outputs left
 * empty on failure). Messages start with the Lua function name (load_safetensors /
 * save_safetensors) and name the file and the tensor.
 */
#ifndef SF_SAFETENSORS_H
#define SF_SAFETENSORS_H

#include <stdint.h>
#include <stdio.h>

#include "../core/tensor.h"

/* The dtypes this reader converts to float32, as a comma-separated list for messages. */
#define SF_ST_DTYPES "F64, F32, F16, BF16, I64, I32, I16, I8, U64, U32, U16, U8, BOOL"

/* Bytes per element of a safetensors dtype name ("F32" -> 4); 0 when not one we read. */
int sf_st_dtype_size(const char *dtype);

/* out = the ndim/shape tensor whose elements are stored as dtype (little-endian) at
 * absolute byte offset `offset` of fp; values are converted to float32. Reads exactly
 * numel * dtype size bytes. path and name are only used in messages. */
int sf_st_read(sf_tensor *out, FILE *fp, const char *path, const char *name, int64_t offset, const char *dtype,
               int ndim, const int64_t *shape);

/* Writes t's elements (any strides, row-major order) as little-endian float32 at fp's
 * current position: numel * 4 bytes. path is only used in messages. */
int sf_st_write(FILE *fp, const char *path, const sf_tensor *t);

#endif
