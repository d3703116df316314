/* Tensor-core building blocks shared by the mma.sync kernels (cu_attention_mma.cu,
 * cu_qgemm.cu): shared-memory addresses, cp.async, ldmatrix, and the m16n8k16 mma for bf16 and
 * f16 with f32 accumulation. Fragment layouts are PTX's ("Matrix Fragments for mma.m16n8k16"):
 * A row-major 16x16 in 4 registers (rows g, g+8; k 2t.., 2t+8..), B 16x8 "col" in 2, C 16x8 in
 * 4 floats (rows g, g+8; cols 2t, 2t+1), g = lane / 4, t = lane % 4. sm_80 and newer.
 * Include only from .cu files (anonymous namespace: each file gets its own copy). */
#ifndef PL_BACKEND_CUDA_CU_MMA_CUH
#define PL_BACKEND_CUDA_CU_MMA_CUH
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <stdint.h>

namespace {

__device__ __forceinline__ uint32_t smem_addr(const void *p) {
  return (uint32_t)__cvta_generic_to_shared(p);
}

// 16 bytes global -> shared without registers; zero-filled when !valid (src is not read then)
__device__ __forceinline__ void cp_async16(uint32_t dst, const void *src, bool valid) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src),
               "r"(valid ? 16 : 0));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
// wait until at most N of this thread's committed groups are still in flight
template <int N> __device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

__device__ __forceinline__ void ldsm4(uint32_t addr, uint32_t (&r)[4]) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}
__device__ __forceinline__ void ldsm4_trans(uint32_t addr, uint32_t (&r)[4]) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}

template <typename T> struct mma16;
template <> struct mma16<__nv_bfloat16> {
  // (x, y) rounded to a bf16 pair, x in the low half; lo gets the rounding errors, rounded
  static __device__ __forceinline__ uint32_t split(float x, float y, uint32_t &lo) {
    __nv_bfloat162 h = __floats2bfloat162_rn(x, y);
    float2 b = __bfloat1622float2(h);
    __nv_bfloat162 l = __floats2bfloat162_rn(x - b.x, y - b.y);
    lo = *reinterpret_cast<uint32_t *>(&l);
    return *reinterpret_cast<uint32_t *>(&h);
  }
  // c[16x8] += a[16x16] b[16x8]
  static __device__ __forceinline__ void mma(float (&c)[4], const uint32_t (&a)[4], uint32_t b0,
                                             uint32_t b1) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, "
                 "{%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  }
};
template <> struct mma16<__half> {
  static __device__ __forceinline__ uint32_t split(float x, float y, uint32_t &lo) {
    __half2 h = __floats2half2_rn(x, y);
    float2 b = __half22float2(h);
    __half2 l = __floats2half2_rn(x - b.x, y - b.y);
    lo = *reinterpret_cast<uint32_t *>(&l);
    return *reinterpret_cast<uint32_t *>(&h);
  }
  static __device__ __forceinline__ void mma(float (&c)[4], const uint32_t (&a)[4], uint32_t b0,
                                             uint32_t b1) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, "
                 "{%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  }
};

} // namespace
#endif
