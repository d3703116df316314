// Elementwise ops and the KV cache writes/copies of the CUDA backend (cu_kernels.h). All are
// memory-bound one-pass kernels: each element is read and written once, with consecutive
// threads on consecutive elements (coalesced), f32 math.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <climits>
#include <cmath>

#include "backend/cuda/cu_kernels.h"

namespace {

inline int launched() { return (int)cudaGetLastError(); }

inline unsigned blocks_for(size_t n, int threads) {
  size_t b = (n + threads - 1) / threads;
  return (unsigned)(b < 65535u * 32u ? b : 65535u * 32u); // grid-stride loops cover the rest
}

__device__ __forceinline__ float warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1)
    v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// One CTA per row; f32 sum of squares reduced across the CTA.
__global__ void rmsnorm_k(float *y, const float *x, const float *w, int d, float eps) {
  const float *xr = x + (size_t)blockIdx.x * d;
  float *yr = y + (size_t)blockIdx.x * d;
  float ss = 0.f;
  for (int i = threadIdx.x; i < d; i += blockDim.x)
    ss += xr[i] * xr[i];
  __shared__ float part[32];
  ss = warp_sum(ss);
  if ((threadIdx.x & 31) == 0)
    part[threadIdx.x >> 5] = ss;
  __syncthreads();
  if (threadIdx.x < 32) {
    float v = threadIdx.x < (blockDim.x >> 5) ? part[threadIdx.x] : 0.f;
    v = warp_sum(v);
    if (threadIdx.x == 0)
      part[0] = v;
  }
  __syncthreads();
  float r = rsqrtf(part[0] / (float)d + eps);
  for (int i = threadIdx.x; i < d; i += blockDim.x)
    yr[i] = xr[i] * r * w[i];
}

// One thread per rotated pair.
__global__ void rope_k(float *x, const float *cs, int n, int n_heads, int head_dim, int rope_dim,
                       int neox) {
  int half = rope_dim / 2;
  size_t total = (size_t)n * n_heads * half;
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total;
       i += (size_t)gridDim.x * blockDim.x) {
    int p = (int)(i % half);
    size_t th = i / half; // token * n_heads + head
    int t = (int)(th / n_heads);
    float c = cs[(size_t)t * rope_dim + p], s = cs[(size_t)t * rope_dim + half + p];
    float *v = x + th * head_dim;
    int a = neox ? p : 2 * p, b = neox ? p + half : 2 * p + 1;
    float x0 = v[a], x1 = v[b];
    v[a] = x0 * c - x1 * s;
    v[b] = x0 * s + x1 * c;
  }
}

__global__ void swiglu_k(float *y, const float *g, const float *u, size_t n) {
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
       i += (size_t)gridDim.x * blockDim.x) {
    float a = g[i];
    y[i] = a / (1.f + __expf(-a)) * u[i];
  }
}

__global__ void add_k(float *y, const float *x, size_t n) {
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
       i += (size_t)gridDim.x * blockDim.x)
    y[i] += x[i];
}

__global__ void add_bias_k(float *y, const float *b, size_t n, int d) {
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
       i += (size_t)gridDim.x * blockDim.x)
    y[i] += b[i % d];
}

__global__ void gather_k(float *dst, const float *src, const int32_t *rows, int d) {
  const float *s = src + (size_t)rows[blockIdx.x] * d;
  float *o = dst + (size_t)blockIdx.x * d;
  for (int i = threadIdx.x; i < d; i += blockDim.x)
    o[i] = s[i];
}

template <typename T> __device__ __forceinline__ T from_f32(float v);
template <> __device__ __forceinline__ float from_f32<float>(float v) { return v; }
template <> __device__ __forceinline__ __nv_bfloat16 from_f32<__nv_bfloat16>(float v) {
  return __float2bfloat16_rn(v);
}
template <> __device__ __forceinline__ __half from_f32<__half>(float v) {
  return __float2half_rn(v);
}

template <typename T> __global__ void cast_k(T *dst, const float *src, size_t n) {
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
       i += (size_t)gridDim.x * blockDim.x)
    dst[i] = from_f32<T>(src[i]);
}

// One CTA per (token, KV head): head_dim consecutive elements to one cache row.
template <typename T>
__global__ void kv_write_k(T *K, T *V, const float *k, const float *v, const int32_t *slots,
                           int n_kv_head, int block_size, int head_dim) {
  int t = blockIdx.x, h = blockIdx.y;
  int slot = slots[t];
  if (slot < 0)
    return;
  size_t b = (size_t)(slot / block_size), off = (size_t)(slot % block_size);
  size_t dst = ((b * n_kv_head + h) * block_size + off) * head_dim;
  size_t src = ((size_t)t * n_kv_head + h) * head_dim;
  for (int i = threadIdx.x; i < head_dim; i += blockDim.x) {
    K[dst + i] = from_f32<T>(k[src + i]);
    V[dst + i] = from_f32<T>(v[src + i]);
  }
}

// One CTA per (copy, layer): a block of every KV head, as 16-byte words.
__global__ void copy_blocks_k(char *K, char *V, size_t layer_bytes, size_t block_bytes,
                              const int32_t *src, const int32_t *dst) {
  size_t lo = (size_t)blockIdx.y * layer_bytes;
  const int4 *ks = (const int4 *)(K + lo + (size_t)src[blockIdx.x] * block_bytes);
  const int4 *vs = (const int4 *)(V + lo + (size_t)src[blockIdx.x] * block_bytes);
  int4 *kd = (int4 *)(K + lo + (size_t)dst[blockIdx.x] * block_bytes);
  int4 *vd = (int4 *)(V + lo + (size_t)dst[blockIdx.x] * block_bytes);
  for (size_t i = threadIdx.x; i < block_bytes / 16; i += blockDim.x) {
    kd[i] = ks[i];
    vd[i] = vs[i];
  }
}

// One CTA per row. Each thread scans a strided slice keeping the first maximum it meets; the
// reduction keeps the larger value and, on ties, the lower index (the CPU's first-max rule).
__global__ void argmax_k(int32_t *ids, const float *src, int d) {
  const float *x = src + (size_t)blockIdx.x * d;
  float best = -INFINITY;
  int arg = INT_MAX;
  for (int j = threadIdx.x; j < d; j += blockDim.x)
    if (x[j] > best) {
      best = x[j];
      arg = j;
    }
  __shared__ float sv[32];
  __shared__ int si[32];
  for (int o = 16; o > 0; o >>= 1) {
    float ov = __shfl_xor_sync(0xffffffffu, best, o);
    int oi = __shfl_xor_sync(0xffffffffu, arg, o);
    if (ov > best || (ov == best && oi < arg)) {
      best = ov;
      arg = oi;
    }
  }
  if ((threadIdx.x & 31) == 0) {
    sv[threadIdx.x >> 5] = best;
    si[threadIdx.x >> 5] = arg;
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    for (int w = 1; w < (int)(blockDim.x >> 5); w++)
      if (sv[w] > best || (sv[w] == best && si[w] < arg)) {
        best = sv[w];
        arg = si[w];
      }
    ids[blockIdx.x] = arg == INT_MAX ? 0 : arg;
  }
}

// One thread per V-float vector of a source row: which output it belongs to is found by
// walking the (at most PL_CU_SPLIT_MAX) column offsets.
template <int V> __global__ void split_k(pl_cu_split sp, const float *src, int ld, size_t nv) {
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < nv;
       i += (size_t)gridDim.x * blockDim.x) {
    size_t r = i / (ld / V);
    int c = (int)(i % (ld / V)) * V, k = 0;
    while (c >= sp.cols[k]) {
      c -= sp.cols[k];
      k++;
    }
    const float *x = src + r * ld + (size_t)(i % (ld / V)) * V;
    float *y = sp.dst[k] + r * sp.cols[k] + c;
    const float *b = sp.bias[k];
    if (V == 4) {
      float4 v = *reinterpret_cast<const float4 *>(x);
      if (b) {
        v.x += b[c];
        v.y += b[c + 1];
        v.z += b[c + 2];
        v.w += b[c + 3];
      }
      *reinterpret_cast<float4 *>(y) = v;
    } else {
      y[0] = x[0] + (b ? b[c] : 0.f);
    }
  }
}

} // namespace

extern "C" {

int pl_cu_split_cols(const pl_cu_split *sp, const float *src, int n, pl_cu_stream s) {
  int ld = 0, vec4 = 1;
  for (int k = 0; k < sp->count; k++) {
    ld += sp->cols[k];
    vec4 &= sp->cols[k] % 4 == 0;
  }
  if (n <= 0 || ld <= 0)
    return 0;
  size_t nv = (size_t)n * ld / (vec4 ? 4 : 1);
  if (vec4)
    split_k<4><<<blocks_for(nv, 256), 256, 0, s>>>(*sp, src, ld, nv);
  else
    split_k<1><<<blocks_for(nv, 256), 256, 0, s>>>(*sp, src, ld, nv);
  return launched();
}

int pl_cu_rmsnorm(float *y, const float *x, const float *w, int n, int d, float eps,
                  pl_cu_stream s) {
  if (n > 0)
    rmsnorm_k<<<n, d >= 1024 ? 1024 : ((d + 31) / 32) * 32, 0, s>>>(y, x, w, d, eps);
  return launched();
}

int pl_cu_rope(float *x, const float *cs, int n, int n_heads, int head_dim, int rope_dim,
               int neox, pl_cu_stream s) {
  size_t total = (size_t)n * n_heads * (rope_dim / 2);
  if (total)
    rope_k<<<blocks_for(total, 256), 256, 0, s>>>(x, cs, n, n_heads, head_dim, rope_dim, neox);
  return launched();
}

int pl_cu_swiglu(float *y, const float *g, const float *u, size_t n, pl_cu_stream s) {
  if (n)
    swiglu_k<<<blocks_for(n, 256), 256, 0, s>>>(y, g, u, n);
  return launched();
}

int pl_cu_add(float *y, const float *x, size_t n, pl_cu_stream s) {
  if (n)
    add_k<<<blocks_for(n, 256), 256, 0, s>>>(y, x, n);
  return launched();
}

int pl_cu_add_bias(float *y, const float *b, int n, int d, pl_cu_stream s) {
  size_t total = (size_t)n * d;
  if (total)
    add_bias_k<<<blocks_for(total, 256), 256, 0, s>>>(y, b, total, d);
  return launched();
}

int pl_cu_gather_rows(float *dst, const float *src, const int32_t *rows, int n, int d,
                      pl_cu_stream s) {
  if (n > 0)
    gather_k<<<n, 256, 0, s>>>(dst, src, rows, d);
  return launched();
}

int pl_cu_cast(void *dst, pl_dtype type, const float *src, size_t n, pl_cu_stream s) {
  if (!n)
    return 0;
  if (type == PL_DT_BF16)
    cast_k<<<blocks_for(n, 256), 256, 0, s>>>((__nv_bfloat16 *)dst, src, n);
  else if (type == PL_DT_F16)
    cast_k<<<blocks_for(n, 256), 256, 0, s>>>((__half *)dst, src, n);
  else
    return (int)cudaErrorInvalidValue;
  return launched();
}

int pl_cu_kv_write(const pl_cu_kv *kv, int layer, const float *k, const float *v,
                   const int32_t *slots, int n_tokens, pl_cu_stream s) {
  if (n_tokens <= 0)
    return 0;
  dim3 grid((unsigned)n_tokens, (unsigned)kv->n_kv_head);
  int th = kv->head_dim >= 128 ? 128 : 64;
  size_t lo = (size_t)layer * kv->layer_elems;
  switch (kv->type) {
  case PL_DT_BF16:
    kv_write_k<<<grid, th, 0, s>>>((__nv_bfloat16 *)kv->k + lo, (__nv_bfloat16 *)kv->v + lo, k,
                                   v, slots, kv->n_kv_head, kv->block_size, kv->head_dim);
    break;
  case PL_DT_F16:
    kv_write_k<<<grid, th, 0, s>>>((__half *)kv->k + lo, (__half *)kv->v + lo, k, v, slots,
                                   kv->n_kv_head, kv->block_size, kv->head_dim);
    break;
  case PL_DT_F32:
    kv_write_k<<<grid, th, 0, s>>>((float *)kv->k + lo, (float *)kv->v + lo, k, v, slots,
                                   kv->n_kv_head, kv->block_size, kv->head_dim);
    break;
  default:
    return (int)cudaErrorInvalidValue;
  }
  return launched();
}

int pl_cu_copy_blocks(const pl_cu_kv *kv, const int32_t *src, const int32_t *dst, int n,
                      pl_cu_stream s) {
  if (n <= 0)
    return 0;
  size_t esz = kv->type == PL_DT_F32 ? 4 : 2;
  size_t block_bytes = (size_t)kv->n_kv_head * kv->block_size * kv->head_dim * esz;
  if (block_bytes % 16)
    return (int)cudaErrorInvalidValue; // head_dim * block_size is even in every model we load
  dim3 grid((unsigned)n, (unsigned)kv->n_layer);
  copy_blocks_k<<<grid, 256, 0, s>>>((char *)kv->k, (char *)kv->v, kv->layer_elems * esz,
                                     block_bytes, src, dst);
  return launched();
}

int pl_cu_argmax(int32_t *ids, const float *src, int n, int d, pl_cu_stream s) {
  if (n > 0)
    argmax_k<<<n, 512, 0, s>>>(ids, src, d);
  return launched();
}

} // extern "C"
