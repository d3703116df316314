/* Weight decoding on the GPU: every weight type pagellm loads (F32, F16, BF16, Q8_0, Q4_0, Q4_K,
 * Q6_K, MLX 4/8-bit), in the same encodings as the file (backend/tensor.h), read from device
 * memory. Entry points:
 *   - pl_cu_get_rows: rows of a table as f32 (the embedding lookup);
 *   - pl_cu_dequant:  a range of rows as bf16, for a cuBLAS GEMM (large prefills);
 *   - pl_cu_qgemv:    y = x · W^T for a few rows of x, dequantizing inside the kernel (decode:
 *                     the weight is read once from memory, never written out);
 *   - pl_cu_qgemm:    the same for batches, on tensor cores (cu_qgemm.cu);
 *   - pl_cu_to_planes: Q8_0/Q4_0 blocks split into aligned planes (the backend's layout).
 * All launch on `stream` and return 0, or a negative PL_E* status with pl_last_error() set
 * (PL_EUNSUPPORTED for a type without a kernel, PL_EDEVICE for a launch failure). */
#ifndef PL_BACKEND_CUDA_CU_QUANT_H
#define PL_BACKEND_CUDA_CU_QUANT_H
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#include "backend/tensor.h" /* inside extern "C": tensor.h has no C++ guards of its own */

/* A weight matrix in device memory: W[rows][cols] in `type` encoding, row-major, ggml order
 * (cols = ne[0] contiguous). MLX types: scales/biases [rows][cols/group_size] in sb_type.
 * Q8_0 and Q4_0 come in two layouts. With scales == NULL, data holds the file's blocks (34 and
 * 18 bytes: only 2-byte aligned). With scales != NULL the weight is in planes
 * (pl_cu_to_planes): data = the blocks' codes [rows][cols] (Q8_0, int8) or [rows][cols/2]
 * (Q4_0, each block's 16 bytes as in the file), scales = the blocks' f16 d [rows][cols/32], so
 * a 32-element unit is one aligned 32- or 16-byte load. */
typedef struct pl_cu_weight {
  pl_dtype type;
  int64_t rows, cols;
  const void *data;
  const void *scales, *biases; /* MLX; Q8_0/Q4_0 in planes: scales only */
  pl_dtype sb_type;            /* MLX only: F16, BF16 or F32 */
  int group_size;              /* MLX only */
} pl_cu_weight;

typedef struct CUstream_st *pl_cu_stream; /* = cudaStream_t, without the CUDA headers */

/* out[i][cols] = W[ids[i]] as f32, i < n; ids in device memory, each in [0, rows). */
int pl_cu_get_rows(const pl_cu_weight *w, const int32_t *ids, int n, float *out,
                   pl_cu_stream stream);
/* out[r - row0][cols] = W[r] as bf16 (uint16 bit patterns), row0 <= r < row0 + nrows. */
int pl_cu_dequant(const pl_cu_weight *w, int64_t row0, int64_t nrows, uint16_t *out,
                  pl_cu_stream stream);
/* y[j][rows] = x[j][cols] · W^T for j < n, 1 <= n <= PL_CU_GEMV_MAX_N; f32 in and out,
 * f32 accumulation. Any weight type. */
#define PL_CU_GEMV_MAX_N 8
int pl_cu_qgemv(const pl_cu_weight *w, const float *x, int n, float *y, pl_cu_stream stream);

/* y[j][rows] = x[j][cols] · W^T for j < n, x in bf16 (uint16 bit patterns, 16-byte aligned),
 * y in f32: W decoded to bf16 on its way to the tensor cores (mma.sync), f32 accumulation; the
 * numerics of dequantizing to bf16 and a bf16 GEMM, with W read once. For batches above
 * PL_CU_GEMV_MAX_N. Quantized types only, cols % 64 == 0, 16-byte aligned data
 * (pl_cu_qgemm_supported says; PL_EUNSUPPORTED otherwise). split: 1 or 2 column halves (2
 * zeroes y and adds both halves into it), 0 = chosen from the grid size. Deterministic. */
int pl_cu_qgemm_supported(const pl_cu_weight *w);
int pl_cu_qgemm(const pl_cu_weight *w, const uint16_t *x, int n, float *y, int split,
                pl_cu_stream stream);

/* Q8_0 and Q4_0 in the file's blocks -> planes (see pl_cu_weight): `codes` and `scales` are
 * device buffers of pl_cu_plane_bytes(); on success *dst describes them. 1 if the type has a
 * planar layout (and cols % 32 == 0), else 0 (dst untouched: keep the blocks). */
int pl_cu_planar(pl_dtype type, int64_t cols);
void pl_cu_plane_bytes(const pl_cu_weight *src, size_t *codes, size_t *scales);
int pl_cu_to_planes(const pl_cu_weight *src, void *codes, void *scales, pl_cu_weight *dst,
                    pl_cu_stream stream);

#ifdef __cplusplus
}
#endif
#endif
