/* Linear-layer entry of the CPU backend (see gemm.h). Interim version: always the SIMD
 * kernels; the OpenBLAS prefill path follows. */
#include "backend/cpu/gemm.h"

#include "backend/cpu/kern/kern.h"

size_t pl_cpu_matmul_work_size(const pl_tensor *W, int n) { return pl_kern_matmul_work_size(W, n); }

void pl_cpu_matmul(pl_threadpool *tp, float *y, const float *x, int n, const pl_tensor *W,
                   void *work) {
  pl_kern_matmul(tp, y, x, n, W, work);
}
