/* Weight tensors as the loaders hand them to the backends: a typed view of (usually mmapped)
 * bytes. Types use GGUF/ggml numbering so a GGUF type id maps 1:1. Matrices are row-major in
 * ggml order: ne[0] is the row length (contiguous, the "input" dim), ne[1] the number of rows
 * (the "output" dim). A linear layer computes y[r] = sum_c W[r][c] * x[c]. */
#ifndef PL_BACKEND_TENSOR_H
#define PL_BACKEND_TENSOR_H
#include <stddef.h>
#include <stdint.h>

typedef enum {
  PL_DT_AUTO = -1, /* "the backend's default" where a dtype is chosen (KV cache) */
  PL_DT_F32 = 0,
  PL_DT_F16 = 1,
  PL_DT_Q4_0 = 2,
  PL_DT_Q8_0 = 8,
  PL_DT_Q4_K = 12,
  PL_DT_Q6_K = 14,
  PL_DT_BF16 = 30,
  /* Not GGUF types: MLX affine group quantization, w = scale[g] * q + bias[g]; q packed
   * little-endian into uint32 words (bits 4 or 8), groups of `group_size` along ne[0]. */
  PL_DT_MLX_Q4 = 1004,
  PL_DT_MLX_Q8 = 1008,
} pl_dtype;

typedef struct pl_tensor {
  char name[96];
  pl_dtype type;
  int n_dims;
  int64_t ne[4];     /* elements per dim, ggml order (ne[0] contiguous); unused dims = 1 */
  const void *data;  /* raw bytes in `type` encoding */
  size_t nbytes;
  /* MLX affine only: scales/biases [ne[1]][ne[0]/group_size] in sb_type (F16/BF16/F32). */
  const void *scales, *biases;
  pl_dtype sb_type;
  int group_size;
  void *dev;         /* the backend's copy, set by weight_upload (NULL: use data in place) */
  /* --load-format dummy: no bytes to read (data NULL until the backend fills it):
   * weight_fill_random generates element i as pl_wrand_value(rand_stream, i, rand_scale)
   * (backend/weight_rand.h) where the weights live. */
  int random;
  uint64_t rand_stream;
  float rand_scale;
} pl_tensor;

/* Elements per quantization block and bytes per block of a ggml type (1 and sizeof elem for
 * plain float types). Returns 0 block size for an unknown type. */
int pl_dtype_block_size(pl_dtype t);
size_t pl_dtype_block_bytes(pl_dtype t);
const char *pl_dtype_name(pl_dtype t);
/* Bytes of a row of n elements (n must be a multiple of the block size); 0 if not. */
size_t pl_dtype_row_bytes(pl_dtype t, int64_t n);
/* Number of elements of a tensor. */
int64_t pl_tensor_nelem(const pl_tensor *t);

/* Element conversions and row (de)quantization of the dtypes above: what a loader, a tool or
 * a test needs to read or write tensor bytes. Implemented with the CPU kernels
 * (backend/cpu/kern/kern_convert.c, kern_quant.c); declared here so that layers above the
 * backend do not include the kernel library's header. */
float pl_f16_to_f32(uint16_t h);
uint16_t pl_f32_to_f16(float f);       /* round to nearest even */
float pl_bf16_to_f32(uint16_t h);
uint16_t pl_f32_to_bf16(float f);      /* round to nearest even */

/* Dequantize one row of n elements (n multiple of the block size) of type t into y. For
 * MLX types use pl_dequant_row_mlx with the row's scales/biases pointers (already offset to
 * that row); pl_dequant_row fills y with NaN for them. */
void pl_dequant_row(pl_dtype t, const void *row, float *y, int64_t n);
void pl_dequant_row_mlx(pl_dtype t, const void *row, const void *scales, const void *biases,
                        pl_dtype sb_type, int group_size, float *y, int64_t n);
/* Reference quantizers (round-to-nearest as ggml's reference quantize_row_*), used by
 * `pagellm model-gen` and tests. Return bytes written (= pl_dtype_row_bytes). */
size_t pl_quant_row(pl_dtype t, const float *x, void *row, int64_t n);
#endif
