// Causal paged attention on the GPU, prefill chunks and decodes in one launch (cu_kernels.h).
//
// Split-KV (flash-decoding): one CTA per (query token, KV head, group of up to GC of that KV
// head's query heads, split of the context). The CTA walks its split of the token's keys
// through the block table, so every K/V row it loads serves all the group's query heads (GQA:
// one pass over a KV head's blocks).
//
//   block table row of the sequence:  [ b7 | b2 | b9 | 0 ... ]   (logical -> physical)
//   key at position p:                K[layer][b_{p / bs}][h][p % bs][0..head_dim)
//
// A key row is read by TPK lanes with one 16-byte load each (TPK = head_dim / 8 for bf16/f16,
// rounded up to a power of two), so a warp reads 32/TPK rows at once and each lane keeps
// UNROLL keys' K and V loads in flight before it computes: decode is a stream of HBM reads,
// and what matters is bytes in flight. The q.k dot is a reduction over the TPK lanes; every
// lane group keeps an online softmax (running max m, sum l, accumulator acc) per query head,
// in the log2 domain (q is pre-scaled by scale * log2 e, so exp2f serves). Lane groups merge
// through shuffles, warps through shared memory. With one split the CTA writes the output;
// with several it writes (o, log-sum-exp) per split, and attn_reduce_k combines them.
//
// The split count follows from the step's shape: enough CTAs to fill the device (a decode of
// one sequence at 4096 keys has 8 KV heads of work, far too few for 132 SMs), and never fewer
// than MIN_CHUNK keys a split. With `fixed_split` (batch-invariant mode) a context is instead
// always cut at multiples of FIXED_CHUNK keys, so a token's result does not depend on what
// else is in the step. Math is f32; K/V are read in their stored type.
//
// This file plans every launch and merges splits; bf16/f16 KV at the common head sizes goes to
// the tensor-core kernel (cu_attention_mma.cu), which shares the split plan and the partials'
// layout. The kernel here serves f32 KV and other head sizes, and PAGELLM_CUDA_ATTN=simt
// selects it for every shape (a baseline for bench_cuda_attention).
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <float.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cuda/cu_attention_split.h"

extern "C" int pl_cu_attention_supported(int head_dim, pl_dtype type);

namespace {

constexpr int WARPS = 4, THREADS = WARPS * 32;
constexpr int UNROLL = 4;         // keys a lane group has in flight
constexpr int MIN_CHUNK = 64;     // fewest keys a split takes
constexpr int MMA_MIN_CHUNK = 128; // the same for the tensor-core kernel: two of its key tiles
constexpr int FIXED_CHUNK = 256;  // the batch-invariant split length
constexpr int CTAS_PER_SM = 8;    // the split count aims at this many CTAs per SM
constexpr size_t WS_CAP = (size_t)64 << 20; // split partials per launch; more tokens: more launches
constexpr float LOG2E = 1.4426950408889634f;

// 16 bytes of T as floats
template <typename T> __device__ __forceinline__ void unpack(const uint4 &u, float *f);
template <> __device__ __forceinline__ void unpack<float>(const uint4 &u, float *f) {
  f[0] = __uint_as_float(u.x);
  f[1] = __uint_as_float(u.y);
  f[2] = __uint_as_float(u.z);
  f[3] = __uint_as_float(u.w);
}
template <> __device__ __forceinline__ void unpack<__nv_bfloat16>(const uint4 &u, float *f) {
  const __nv_bfloat162 *p = reinterpret_cast<const __nv_bfloat162 *>(&u);
#pragma unroll
  for (int i = 0; i < 4; i++) {
    float2 t = __bfloat1622float2(p[i]);
    f[2 * i] = t.x;
    f[2 * i + 1] = t.y;
  }
}
template <> __device__ __forceinline__ void unpack<__half>(const uint4 &u, float *f) {
  const __half2 *p = reinterpret_cast<const __half2 *>(&u);
#pragma unroll
  for (int i = 0; i < 4; i++) {
    float2 t = __half22float2(p[i]);
    f[2 * i] = t.x;
    f[2 * i + 1] = t.y;
  }
}

using split_args = pl_cu_split_args;

// NV 16-byte vectors of head_dim per lane (2 only for f32 rows longer than 128); GC query heads
template <typename T, int NV, int GC>
__global__ void __launch_bounds__(THREADS) attn_split_k(split_args a) {
  constexpr int VEC = 16 / sizeof(T), E = NV * VEC;
  extern __shared__ float sm[]; // [WARPS][GC][head_dim] accumulators, then [WARPS][GC] m and l
  const int tl = blockIdx.x, t = a.t0 + tl;
  const int h = blockIdx.y / a.n_gc, g = a.n_head / a.n_kv, g0 = (blockIdx.y % a.n_gc) * GC;
  const int ng = min(GC, g - g0), qh0 = h * g + g0, split = blockIdx.z;
  const int n_ctx = a.positions[t] + 1;
  const int kb = split * a.chunk, ke = min(n_ctx, kb + a.chunk);
  if (kb >= n_ctx)
    return; // no key of this token in this split (attn_reduce_k reads only the filled ones)
  const int hd = a.head_dim, lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int kpw = 32 / a.tpk, sub = lane / a.tpk, d0 = (lane % a.tpk) * E;
  const int32_t *bt = a.block_tables + (size_t)pl_cu_seq_of_token(a.qsl, a.n_seqs, t) * a.max_blocks;
  const T *K = (const T *)a.k, *V = (const T *)a.v;

  float qr[GC][E], acc[GC][E], m[GC], l[GC];
#pragma unroll
  for (int k = 0; k < GC; k++) {
    m[k] = -FLT_MAX;
    l[k] = 0.f;
#pragma unroll
    for (int e = 0; e < E; e++) {
      qr[k][e] = k < ng && d0 + e < hd
                     ? a.q[((size_t)t * a.n_head + qh0 + k) * hd + d0 + e] * a.qscale
                     : 0.f;
      acc[k][e] = 0.f;
    }
  }

  // Keys jw + sub + u*stride: the loop bound is the same for the whole warp (the shuffles below
  // need every lane), a key past the split's end is masked.
  const int stride = WARPS * kpw;
  for (int jw = kb + warp * kpw; jw < ke; jw += stride * UNROLL) {
    uint4 kraw[UNROLL][NV], vraw[UNROLL][NV];
    bool ok[UNROLL];
#pragma unroll
    for (int u = 0; u < UNROLL; u++) {
      int j = jw + sub + u * stride;
      ok[u] = j < ke;
      size_t row = 0;
      if (ok[u])
        row = (((size_t)bt[j / a.block_size] * a.n_kv + h) * a.block_size + j % a.block_size) *
                  hd + d0;
#pragma unroll
      for (int n = 0; n < NV; n++) {
        bool in = ok[u] && d0 + n * VEC < hd;
        kraw[u][n] = in ? __ldg((const uint4 *)(K + row + n * VEC)) : make_uint4(0, 0, 0, 0);
        vraw[u][n] = in ? __ldg((const uint4 *)(V + row + n * VEC)) : make_uint4(0, 0, 0, 0);
      }
    }
    float s[UNROLL][GC];
#pragma unroll
    for (int u = 0; u < UNROLL; u++) {
      float kf[E];
#pragma unroll
      for (int n = 0; n < NV; n++)
        unpack<T>(kraw[u][n], kf + n * VEC);
#pragma unroll
      for (int k = 0; k < GC; k++) {
        float d = 0.f;
#pragma unroll
        for (int e = 0; e < E; e++)
          d = fmaf(qr[k][e], kf[e], d);
        for (int o = a.tpk / 2; o > 0; o >>= 1)
          d += __shfl_xor_sync(0xffffffffu, d, o);
        s[u][k] = ok[u] ? d : -INFINITY;
      }
    }
#pragma unroll
    for (int k = 0; k < GC; k++) {
      float mx = m[k];
#pragma unroll
      for (int u = 0; u < UNROLL; u++)
        mx = fmaxf(mx, s[u][k]);
      float corr = exp2f(m[k] - mx);
      m[k] = mx;
      l[k] *= corr;
#pragma unroll
      for (int e = 0; e < E; e++)
        acc[k][e] *= corr;
    }
#pragma unroll
    for (int u = 0; u < UNROLL; u++) {
      float vf[E];
#pragma unroll
      for (int n = 0; n < NV; n++)
        unpack<T>(vraw[u][n], vf + n * VEC);
#pragma unroll
      for (int k = 0; k < GC; k++) {
        float p = exp2f(s[u][k] - m[k]); // 0 for a masked key
        l[k] += p;
#pragma unroll
        for (int e = 0; e < E; e++)
          acc[k][e] = fmaf(p, vf[e], acc[k][e]);
      }
    }
  }

  // The warp's lane groups hold the same dims of different keys: merge them.
  for (int o = a.tpk; o < 32; o <<= 1)
#pragma unroll
    for (int k = 0; k < GC; k++) {
      float mo = __shfl_xor_sync(0xffffffffu, m[k], o), lo = __shfl_xor_sync(0xffffffffu, l[k], o);
      float mx = fmaxf(m[k], mo), c1 = exp2f(m[k] - mx), c2 = exp2f(mo - mx);
      l[k] = l[k] * c1 + lo * c2;
#pragma unroll
      for (int e = 0; e < E; e++)
        acc[k][e] = acc[k][e] * c1 + __shfl_xor_sync(0xffffffffu, acc[k][e], o) * c2;
      m[k] = mx;
    }
  float *sm_acc = sm, *sm_m = sm + WARPS * GC * hd, *sm_l = sm_m + WARPS * GC;
  if (sub == 0)
#pragma unroll
    for (int k = 0; k < GC; k++) {
#pragma unroll
      for (int e = 0; e < E; e++)
        if (d0 + e < hd)
          sm_acc[(warp * GC + k) * hd + d0 + e] = acc[k][e];
      if (lane == 0) {
        sm_m[warp * GC + k] = m[k];
        sm_l[warp * GC + k] = l[k];
      }
    }
  __syncthreads();
  // Then the warps (a warp that saw no key has l = 0 and m = -FLT_MAX: weight 0).
  for (int i = threadIdx.x; i < ng * hd; i += THREADS) {
    int k = i / hd, d = i % hd;
    float mx = -FLT_MAX;
#pragma unroll
    for (int w = 0; w < WARPS; w++)
      mx = fmaxf(mx, sm_m[w * GC + k]);
    float num = 0.f, den = 0.f;
#pragma unroll
    for (int w = 0; w < WARPS; w++) {
      float c = exp2f(sm_m[w * GC + k] - mx);
      num += sm_acc[(w * GC + k) * hd + d] * c;
      den += sm_l[w * GC + k] * c;
    }
    if (a.splits == 1) {
      a.out[((size_t)t * a.n_head + qh0 + k) * hd + d] = num / den;
    } else {
      size_t part = ((size_t)tl * a.n_head + qh0 + k) * a.splits + split;
      a.ws_o[part * hd + d] = num / den;
      if (d == 0)
        a.ws_lse[part] = mx + log2f(den);
    }
  }
}

// out = the splits' outputs weighted by their share of the softmax mass; a fixed order, so a
// token's result depends on its own splits only. The splits' log-sum-exps are read once, by
// all threads at once, into shared memory (w[splits], dynamic): read by every thread in turn
// they were a chain of dependent L2 loads, 14 us for 32 splits (ncu, H100). The products are
// unrolled so that a thread has several splits' loads of ws_o in flight.
__global__ void attn_reduce_k(split_args a) {
  extern __shared__ float w[];
  const int tl = blockIdx.x, t = a.t0 + tl, qh = blockIdx.y, hd = a.head_dim;
  const int ns = min(a.splits, (a.positions[t] + a.chunk) / a.chunk); // splits with keys
  const size_t part = ((size_t)tl * a.n_head + qh) * a.splits;
  for (int s = threadIdx.x; s < ns; s += blockDim.x)
    w[s] = a.ws_lse[part + s];
  __syncthreads();
  float mx = -FLT_MAX;
  for (int s = 0; s < ns; s++)
    mx = fmaxf(mx, w[s]);
  __syncthreads(); // every thread has its max before w is overwritten
  for (int s = threadIdx.x; s < ns; s += blockDim.x)
    w[s] = exp2f(w[s] - mx);
  __syncthreads();
  float den = 0.f;
  for (int s = 0; s < ns; s++)
    den += w[s];
  for (int d = threadIdx.x; d < hd; d += blockDim.x) {
    float num = 0.f;
#pragma unroll 8
    for (int s = 0; s < ns; s++)
      num += w[s] * a.ws_o[(part + s) * hd + d];
    a.out[((size_t)t * a.n_head + qh) * hd + d] = num / den;
  }
}

// attn_reduce_k's shared memory for `splits` splits. Past 48 KiB (12288 splits: contexts of
// 3M keys in batch-invariant mode) a kernel must opt in, once.
size_t reduce_smem(int splits) {
  static const bool big = [] {
    bool ok = cudaFuncSetAttribute(attn_reduce_k, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                   200 << 10) == cudaSuccess;
    cudaGetLastError(); // a refusal shows as the launch's error instead
    return ok;
  }();
  (void)big;
  return sizeof(float) * (size_t)splits;
}

int pow2_at_least(int x) {
  int p = 1;
  while (p < x)
    p *= 2;
  return p;
}

// How a step's attention is cut: splits of `chunk` keys, `tokens` tokens per launch, and which
// kernel runs it.
struct split_plan {
  int mma;    // the tensor-core kernel
  int decode; // ... its decode instance
  int gc, n_gc, nv, tpk, chunk, splits, tokens;
};

bool simt_forced() {
  static const bool forced = [] {
    const char *e = getenv("PAGELLM_CUDA_ATTN");
    return e && !strcmp(e, "simt");
  }();
  return forced;
}

// The tensor-core kernel's split length, from a cost in tiles: a CTA of c tiles costs c + F
// (its first tile's latency, Q staging, the epilogue), CTAs run in rounds of `slots` (the
// resident CTAs of the device), and more than one split adds the reduce launch (R). Splits
// that make one more round than needed cost a whole round: 16 x 4096 at 5 splits is 640
// CTAs, 2.4 rounds of 264; at 2 splits, one. Below one full round more splits only shorten
// every CTA, so small batches still split as far as MMA_MIN_CHUNK allows. Past four rounds
// more splits only add F per round, so the search stops there (it runs for every layer).
int wave_chunk(long work, long slots, int ctx) {
  constexpr long F = 1, R = 1, KT = 64;
  long best_cost = -1, best_chunk = 1 << 30, most = (ctx + MMA_MIN_CHUNK - 1) / MMA_MIN_CHUNK;
  long last = 4 * slots / (work > 0 ? work : 1) + 1;
  last = last < most ? last : most;
  for (long s = 1; s <= (last > 1 ? last : 1); s++) {
    long chunk = ((ctx + s - 1) / s + KT - 1) / KT * KT, splits = (ctx + chunk - 1) / chunk;
    if (splits != s)
      continue; // the same cut as a smaller s
    long rounds = (work * splits + slots - 1) / slots;
    long cost = rounds * (chunk / KT + F) + (splits > 1 ? R : 0);
    if (best_cost < 0 || cost < best_cost) {
      best_cost = cost;
      best_chunk = chunk;
    }
  }
  return (int)best_chunk;
}

// 0 when the shape is supported (head_dim a multiple of the 16-byte vector, at most 256)
int plan_split(const pl_cu_attn *a, split_plan *sp) {
  const pl_cu_kv *kv = a->kv;
  int vec = kv->type == PL_DT_F32 ? 4 : 8, hd = kv->head_dim;
  if (!pl_cu_attention_supported(hd, kv->type) || a->n_head % kv->n_kv_head)
    return -1;
  int g = a->n_head / kv->n_kv_head, vecs = hd / vec, ctas_per_sm = CTAS_PER_SM;
  sp->mma = !simt_forced() && pl_cu_attn_mma_supported(hd, kv->type, &ctas_per_sm);
  int align = sp->mma ? 64 : 32, min_chunk = sp->mma ? MMA_MIN_CHUNK : MIN_CHUNK;
  sp->gc = sp->mma ? pl_cu_attn_mma_group(g) : g >= 8 ? 8 : pow2_at_least(g);
  sp->decode = sp->mma &&
               pl_cu_attn_mma_decode(a->n_tokens, a->n_seqs, sp->gc, a->fixed_split) &&
               pl_cu_attn_mma_plan(hd, kv->type, 1, &ctas_per_sm);
  sp->n_gc = (g + sp->gc - 1) / sp->gc;
  sp->nv = vecs > 32 ? 2 : 1;
  sp->tpk = pow2_at_least((vecs + sp->nv - 1) / sp->nv);
  int ctx = a->max_ctx > 0 ? a->max_ctx : 1;
  if (a->fixed_split) {
    sp->chunk = FIXED_CHUNK;
  } else if (sp->mma) {
    sp->chunk = wave_chunk((long)a->n_tokens * kv->n_kv_head * sp->n_gc,
                           (long)ctas_per_sm * (a->n_sm > 0 ? a->n_sm : 1), ctx);
  } else {
    // decode-sized work: a prefill's tokens share CTAs, so this overestimates it (and it
    // splits less, which long prefills do not need)
    long work = (long)a->n_tokens * kv->n_kv_head * sp->n_gc;
    long want = (long)ctas_per_sm * (a->n_sm > 0 ? a->n_sm : 1);
    long splits = (want + work - 1) / work, most = (ctx + min_chunk - 1) / min_chunk;
    splits = splits < most ? splits : most;
    splits = splits > 1 ? splits : 1;
    int chunk = (int)((ctx + splits - 1) / splits);
    sp->chunk = (chunk + align - 1) / align * align;
  }
  sp->splits = (ctx + sp->chunk - 1) / sp->chunk;
  if (sp->splits == 1)
    sp->chunk = 1 << 30; // one split takes every key, however long (max_ctx is a hint here)
  sp->tokens = a->n_tokens;
  if (sp->splits > 1) {
    size_t per_token = (size_t)a->n_head * sp->splits * (hd + 1) * sizeof(float);
    size_t fit = WS_CAP / per_token;
    sp->tokens = fit < 1 ? 1 : fit < (size_t)a->n_tokens ? (int)fit : a->n_tokens;
  }
  return 0;
}

// SIMT kernel instance for (T, NV, GC); the tensor-core kernel picks its own
template <typename T, int NV, int GC> void launch_simt(const split_args &x, dim3 grid,
                                                       cudaStream_t s) {
  size_t smem = (size_t)WARPS * GC * (x.head_dim + 2) * sizeof(float);
  attn_split_k<T, NV, GC><<<grid, THREADS, smem, s>>>(x);
}

template <typename T, int NV> void launch_simt_g(const split_args &x, dim3 grid, cudaStream_t s) {
  switch (x.gc) {
  case 1: return launch_simt<T, NV, 1>(x, grid, s);
  case 2: return launch_simt<T, NV, 2>(x, grid, s);
  case 4: return launch_simt<T, NV, 4>(x, grid, s);
  default: return launch_simt<T, NV, 8>(x, grid, s);
  }
}

} // namespace

extern "C" int pl_cu_attention_supported(int head_dim, pl_dtype type) {
  int vec = type == PL_DT_F32 ? 4 : 8;
  return head_dim > 0 && head_dim <= 256 && head_dim % vec == 0;
}

extern "C" size_t pl_cu_attention_ws(const pl_cu_attn *a) {
  split_plan sp;
  if (a->n_tokens <= 0 || plan_split(a, &sp) || sp.splits == 1)
    return 0;
  return (size_t)sp.tokens * a->n_head * sp.splits * (a->kv->head_dim + 1) * sizeof(float);
}

extern "C" int pl_cu_attention(const pl_cu_attn *a, pl_cu_stream s) {
  split_plan sp;
  if (a->n_tokens <= 0)
    return 0;
  if (plan_split(a, &sp) || (sp.splits > 1 && !a->ws))
    return (int)cudaErrorInvalidValue;
  const pl_cu_kv *kv = a->kv;
  size_t lo = (size_t)a->layer * kv->layer_elems, esz = kv->type == PL_DT_F32 ? 4 : 2;
  split_args x = {(const char *)kv->k + lo * esz, (const char *)kv->v + lo * esz, a->q, a->out,
                  a->ws, a->ws + (size_t)sp.tokens * a->n_head * sp.splits * kv->head_dim,
                  a->positions, a->query_start_loc, a->block_tables, 0, a->n_seqs,
                  a->max_blocks_per_seq, a->n_head, kv->n_kv_head, kv->block_size,
                  kv->head_dim, sp.chunk, sp.splits, sp.n_gc, sp.gc, sp.tpk, a->scale * LOG2E,
                  a->fixed_split};
  int rthreads = kv->head_dim < 128 ? (kv->head_dim + 31) / 32 * 32 : 128;
  for (int t0 = 0; t0 < a->n_tokens; t0 += sp.tokens) {
    int nt = a->n_tokens - t0 < sp.tokens ? a->n_tokens - t0 : sp.tokens;
    x.t0 = t0;
    dim3 grid((unsigned)nt, (unsigned)(kv->n_kv_head * sp.n_gc), (unsigned)sp.splits);
    if (sp.mma) {
      int rc = pl_cu_attn_mma_launch(x, nt, sp.decode, kv->type, s);
      if (rc)
        return rc;
    } else if (kv->type == PL_DT_BF16) {
      launch_simt_g<__nv_bfloat16, 1>(x, grid, s);
    } else if (kv->type == PL_DT_F16) {
      launch_simt_g<__half, 1>(x, grid, s);
    } else if (kv->type == PL_DT_F32) {
      if (sp.nv == 2)
        launch_simt_g<float, 2>(x, grid, s);
      else
        launch_simt_g<float, 1>(x, grid, s);
    } else {
      return (int)cudaErrorInvalidValue;
    }
    if (sp.splits > 1)
      attn_reduce_k<<<dim3((unsigned)nt, (unsigned)a->n_head), rthreads,
                      reduce_smem(sp.splits), s>>>(x);
  }
  return (int)cudaGetLastError();
}
