/* Random weights generated on the GPU (cu_fill.cu): backend/weight_rand.h's values, written
 * straight into device memory, so a random 8B model needs no 16 GB host buffer. */
#ifndef PL_BACKEND_CUDA_CU_FILL_H
#define PL_BACKEND_CUDA_CU_FILL_H
#include <stdint.h>

#include "backend/cuda/cu_quant.h"

#ifdef __cplusplus
extern "C" {
#endif

/* dst[i] = pl_wrand_value(stream, i, scale) for i < n, stored as `type` (PL_DT_F32, PL_DT_F16
 * or PL_DT_BF16; round to nearest even), bit-identical to pl_wrand_fill_host. Enqueued on s;
 * returns the launch's cudaError_t as an int (0 = queued), cudaErrorInvalidValue for another
 * type. */
int pl_cu_fill_random(void *dst, int type, uint64_t n, uint64_t stream, float scale,
                      pl_cu_stream s);

#ifdef __cplusplus
}
#endif
#endif
