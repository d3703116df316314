/* The CPU backend's linear layer: y[n][rows] = x[n][cols] . W^T for any weight type.
 * Small n (decode, batched decode) runs the SIMD kernels of kern/ (integer dots for
 * quantized weights, register-tiled over activation rows); large n (prefill) dequantizes
 * weight tiles to f32 and calls OpenBLAS sgemm, which wins once there are enough activation
 * rows to reuse each weight tile (crossover measured in bench/bench_matmul.c). */
#ifndef PL_BACKEND_CPU_GEMM_H
#define PL_BACKEND_CPU_GEMM_H
#include <stddef.h>

#include "backend/tensor.h"
#include "util/threadpool.h"

/* Scratch bytes `work` must hold for (W, n); 64-byte aligned memory from pl_malloc. The
 * result is monotonic in n, so sizing for the largest batch covers every smaller one. */
size_t pl_cpu_matmul_work_size(const pl_tensor *W, int n);
/* x: [n][W->ne[0]] f32, y: [n][W->ne[1]] f32 (must not alias x). tp NULL = one thread.
 * Single driver thread; uses the pool's workers (and OpenBLAS threads for large n). */
void pl_cpu_matmul(pl_threadpool *tp, float *y, const float *x, int n, const pl_tensor *W,
                   void *work);
#endif
