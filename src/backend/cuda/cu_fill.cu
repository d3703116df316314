/* pl_cu_fill_random (cu_fill.h): a grid-stride loop, each thread computing its elements from
 * their index alone (weight_rand.h is counter-based), two elements per iteration for the
 * 16-bit types so every store is 4 bytes. Rounding: __float2bfloat16_rn / __float2half_rn, the
 * round-to-nearest-even of pl_f32_to_bf16 / pl_f32_to_f16 (the values are finite and far from
 * f16's overflow; f16 subnormals round to even in both). */
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <stdint.h>

#include "backend/cuda/cu_fill.h"
#include "backend/tensor.h"
#include "backend/weight_rand.h"

template <int T> __device__ inline uint16_t to16(float x);
template <> __device__ inline uint16_t to16<PL_DT_BF16>(float x) {
  return __bfloat16_as_ushort(__float2bfloat16_rn(x));
}
template <> __device__ inline uint16_t to16<PL_DT_F16>(float x) {
  return __half_as_ushort(__float2half_rn(x));
}

template <int T>
__global__ void fill16(uint16_t *dst, uint64_t n, uint64_t stream, float scale) {
  uint64_t pairs = n / 2, step = (uint64_t)gridDim.x * blockDim.x;
  for (uint64_t p = (uint64_t)blockIdx.x * blockDim.x + threadIdx.x; p < pairs; p += step) {
    uint32_t lo = to16<T>(pl_wrand_value(stream, 2 * p, scale));
    uint32_t hi = to16<T>(pl_wrand_value(stream, 2 * p + 1, scale));
    ((uint32_t *)dst)[p] = lo | (hi << 16);
  }
  if ((n & 1) && blockIdx.x == 0 && threadIdx.x == 0)
    dst[n - 1] = to16<T>(pl_wrand_value(stream, n - 1, scale));
}

__global__ void fill32(float *dst, uint64_t n, uint64_t stream, float scale) {
  uint64_t step = (uint64_t)gridDim.x * blockDim.x;
  for (uint64_t i = (uint64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += step)
    dst[i] = pl_wrand_value(stream, i, scale);
}

extern "C" int pl_cu_fill_random(void *dst, int type, uint64_t n, uint64_t stream, float scale,
                                 pl_cu_stream s) {
  cudaStream_t st = (cudaStream_t)s;
  if (n == 0)
    return 0;
  const int threads = 256;
  uint64_t work = type == PL_DT_F32 ? n : n / 2 + 1;
  uint64_t want = (work + threads - 1) / threads;
  int blocks = want > 65535 ? 65535 : (int)want; /* grid-stride beyond that */
  /* 16-bit types store pairs as uint32: dst must be 4-byte aligned (cudaMalloc gives 256) */
  if (type == PL_DT_BF16)
    fill16<PL_DT_BF16><<<blocks, threads, 0, st>>>((uint16_t *)dst, n, stream, scale);
  else if (type == PL_DT_F16)
    fill16<PL_DT_F16><<<blocks, threads, 0, st>>>((uint16_t *)dst, n, stream, scale);
  else if (type == PL_DT_F32)
    fill32<<<blocks, threads, 0, st>>>((float *)dst, n, stream, scale);
  else
    return (int)cudaErrorInvalidValue;
  return (int)cudaGetLastError();
}
