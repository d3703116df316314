// Causal paged attention on the GPU, prefill chunks and decodes in one launch (cu_kernels.h).
//
// One CTA per (query token, KV head, chunk of up to G_MAX query heads of that KV head's GQA
// group): the CTA walks the token's sequence through its block table, so every K/V row it
// loads serves all the group's query heads (GQA: one pass over a KV head's blocks).
//
//   block table row of the sequence:  [ b7 | b2 | b9 | 0 ... ]   (logical -> physical)
//   key at position p:                K[layer][b_{p / bs}][h][p % bs][0..head_dim)
//
// Each of the CTA's WARPS warps takes every WARPS-th key; a key's head_dim elements are spread
// over the 32 lanes (E = head_dim/32 consecutive elements per lane, so a warp reads a key row as
// one contiguous segment), the q·k dot is a warp reduction, and each warp keeps an online
// softmax (running max m, sum l, accumulator acc) per query head in registers. The warps'
// partial results are merged through shared memory at the end. Math is f32; K/V are read in
// their stored type. This is the simple, correct kernel; the bandwidth-bound version with
// split-KV and tensor-core prefill is issue 12's work.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <float.h>

#include "backend/cuda/cu_kernels.h"

namespace {

constexpr int WARPS = 4;
constexpr int G_MAX = 8;    // query heads per CTA (grid.z covers larger GQA groups)
constexpr int HD_MAX = 256; // head_dim limit: E <= 8

template <typename T> __device__ __forceinline__ float to_f32(T v);
template <> __device__ __forceinline__ float to_f32<float>(float v) { return v; }
template <> __device__ __forceinline__ float to_f32<__nv_bfloat16>(__nv_bfloat16 v) {
  return __bfloat162float(v);
}
template <> __device__ __forceinline__ float to_f32<__half>(__half v) { return __half2float(v); }

__device__ __forceinline__ float warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1)
    v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

__device__ int seq_of_token(const int32_t *qsl, int n_seqs, int t) {
  int lo = 0, hi = n_seqs - 1; // query_start_loc is sorted
  while (lo < hi) {
    int mid = (lo + hi + 1) / 2;
    if (qsl[mid] <= t)
      lo = mid;
    else
      hi = mid - 1;
  }
  return lo;
}

template <typename T, int E>
__global__ void __launch_bounds__(WARPS * 32)
    attn_k(const T *__restrict__ Kc, const T *__restrict__ Vc, const float *__restrict__ q,
           float *__restrict__ out, const int32_t *__restrict__ positions,
           const int32_t *__restrict__ qsl, const int32_t *__restrict__ block_tables, int n_seqs,
           int max_blocks_per_seq, int n_head, int n_kv_head, int block_size, int head_dim,
           float scale) {
  const int t = blockIdx.x, h = blockIdx.y;
  const int g = n_head / n_kv_head;
  const int g0 = blockIdx.z * G_MAX, ng = min(G_MAX, g - g0);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int seq = seq_of_token(qsl, n_seqs, t);
  const int n_ctx = positions[t] + 1;
  const int32_t *bt = block_tables + (size_t)seq * max_blocks_per_seq;
  const int d0 = lane * E; // this lane's first element of a row

  float qr[G_MAX][E], acc[G_MAX][E], m[G_MAX], l[G_MAX];
#pragma unroll
  for (int k = 0; k < G_MAX; k++) {
    m[k] = -FLT_MAX;
    l[k] = 0.f;
#pragma unroll
    for (int e = 0; e < E; e++) {
      int qh = h * g + g0 + k, d = d0 + e;
      qr[k][e] = (k < ng && d < head_dim)
                     ? q[((size_t)t * n_head + qh) * head_dim + d] * scale
                     : 0.f;
      acc[k][e] = 0.f;
    }
  }

  for (int j = warp; j < n_ctx; j += WARPS) {
    size_t row = (((size_t)bt[j / block_size] * n_kv_head + h) * block_size + j % block_size) *
                 head_dim;
    float kv[E];
#pragma unroll
    for (int e = 0; e < E; e++)
      kv[e] = d0 + e < head_dim ? to_f32(Kc[row + d0 + e]) : 0.f;
    float p[G_MAX];
#pragma unroll
    for (int k = 0; k < G_MAX; k++) {
      float s = 0.f;
#pragma unroll
      for (int e = 0; e < E; e++)
        s += qr[k][e] * kv[e];
      p[k] = k < ng ? warp_sum(s) : 0.f;
    }
#pragma unroll
    for (int e = 0; e < E; e++)
      kv[e] = d0 + e < head_dim ? to_f32(Vc[row + d0 + e]) : 0.f;
#pragma unroll
    for (int k = 0; k < G_MAX; k++) {
      if (k >= ng)
        continue;
      float mn = fmaxf(m[k], p[k]);
      float corr = __expf(m[k] - mn), w = __expf(p[k] - mn);
      l[k] = l[k] * corr + w;
#pragma unroll
      for (int e = 0; e < E; e++)
        acc[k][e] = acc[k][e] * corr + w * kv[e];
      m[k] = mn;
    }
  }

  // Merge the warps: each warp's (m, l, acc) rescaled to the CTA-wide max.
  __shared__ float sm_m[WARPS][G_MAX], sm_l[WARPS][G_MAX];
  __shared__ float sm_acc[WARPS][G_MAX][HD_MAX];
  if (lane == 0)
#pragma unroll
    for (int k = 0; k < G_MAX; k++) {
      sm_m[warp][k] = m[k];
      sm_l[warp][k] = l[k];
    }
#pragma unroll
  for (int k = 0; k < G_MAX; k++)
#pragma unroll
    for (int e = 0; e < E; e++)
      if (d0 + e < head_dim)
        sm_acc[warp][k][d0 + e] = acc[k][e];
  __syncthreads();
  for (int i = threadIdx.x; i < ng * head_dim; i += WARPS * 32) {
    int k = i / head_dim, d = i % head_dim;
    float mx = -FLT_MAX;
    for (int w = 0; w < WARPS; w++)
      mx = fmaxf(mx, sm_m[w][k]);
    float num = 0.f, den = 0.f;
    for (int w = 0; w < WARPS; w++) {
      if (sm_l[w][k] == 0.f)
        continue; // this warp saw no key (short context)
      float c = __expf(sm_m[w][k] - mx);
      num += sm_acc[w][k][d] * c;
      den += sm_l[w][k] * c;
    }
    int qh = h * g + g0 + k;
    out[((size_t)t * n_head + qh) * head_dim + d] = num / den;
  }
}

template <typename T, int E> int launch_e(const pl_cu_attn *a, cudaStream_t s) {
  const pl_cu_kv *kv = a->kv;
  int g = a->n_head / kv->n_kv_head;
  dim3 grid((unsigned)a->n_tokens, (unsigned)kv->n_kv_head, (unsigned)((g + G_MAX - 1) / G_MAX));
  size_t lo = (size_t)a->layer * kv->layer_elems;
  attn_k<T, E><<<grid, WARPS * 32, 0, s>>>(
      (const T *)kv->k + lo, (const T *)kv->v + lo, a->q, a->out, a->positions,
      a->query_start_loc, a->block_tables, a->n_seqs, a->max_blocks_per_seq, a->n_head,
      kv->n_kv_head, kv->block_size, kv->head_dim, a->scale);
  return (int)cudaGetLastError();
}

template <typename T> int launch_t(const pl_cu_attn *a, cudaStream_t s) {
  switch ((a->kv->head_dim + 31) / 32) {
  case 1: return launch_e<T, 1>(a, s);
  case 2: return launch_e<T, 2>(a, s);
  case 3: return launch_e<T, 3>(a, s);
  case 4: return launch_e<T, 4>(a, s);
  case 5: return launch_e<T, 5>(a, s);
  case 6: return launch_e<T, 6>(a, s);
  case 7: return launch_e<T, 7>(a, s);
  case 8: return launch_e<T, 8>(a, s);
  default: return (int)cudaErrorInvalidValue;
  }
}

} // namespace

extern "C" int pl_cu_attention(const pl_cu_attn *a, pl_cu_stream s) {
  if (a->n_tokens <= 0)
    return 0;
  if (a->kv->head_dim > HD_MAX || a->n_head % a->kv->n_kv_head)
    return (int)cudaErrorInvalidValue;
  switch (a->kv->type) {
  case PL_DT_BF16: return launch_t<__nv_bfloat16>(a, s);
  case PL_DT_F16: return launch_t<__half>(a, s);
  case PL_DT_F32: return launch_t<float>(a, s);
  default: return (int)cudaErrorInvalidValue;
  }
}
