// Paged attention on tensor cores (mma.sync m16n8k16), for decodes, prefill chunks and mixed
// steps alike, with KV in bf16 or f16.
//
// A CTA takes up to QR = 64 query rows that share their keys: consecutive tokens of one
// sequence times the query heads of one KV head (row r = token r / gc, head r % gc; a decode
// of a GQA-4 model fills 4 rows, a prefill chunk 16 tokens x 4 heads). Each of the 4 warps owns
// 16 rows; a CTA of at most 16 rows (a decode) instead gives each warp a quarter of every
// tile's keys and merges the 4 softmax states at the end. The CTA walks the keys of its split
// in tiles of KT = 64: all 128 threads copy a tile's K and V rows through the block table into
// shared memory with cp.async (ST stages: tiles i+1 .. i+ST-1 are in flight while tile i is
// used), then each warp
//   S = Q K^T        (ldmatrix, mma into f32; causal and split limits masked per row)
//   online softmax   (log2 domain: running max m, sum l per row)
//   O += P V         (ldmatrix.trans for V)
// so every K/V byte is read from HBM once per CTA, and decode stays a stream of loads.
//
// Precision: Q and P are split into a bf16/f16 "hi" part and the rounding error "lo" part, and
// both go through the mma (twice the tensor work, which decode has to spare: it waits on
// memory). Products of 16-bit values are exact in f32, so scores and outputs match an f32
// computation to ~2^-16 relative, not the ~2^-8 of a plain bf16 Q and P.
//
// Two instances per head size: the general one (QR = 64 rows, 2 stages) and, for launches of
// decodes only (one token a sequence, at most 16 query heads a KV head; opt-in for now, see
// decode_allowed), QR = 16 and 3 stages.
// A decode never fills the 64 rows; the shared memory they took now holds a third K/V stage,
// so more bytes are in flight at the same 2 CTAs per SM (what bounded wide batches: ncu at
// 64 x 4096 saw DRAM at 82% of peak with most cycles waiting on the tile copies).
//
// Shared memory rows are padded by 16 bytes, so the 8 row addresses of an ldmatrix phase fall
// in 8 different bank groups.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <float.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cuda/cu_attention_split.h"
#include "backend/cuda/cu_mma.cuh"

namespace {

constexpr int WARPS = 4, THREADS = WARPS * 32;
constexpr int ROWS = WARPS * 16; // query rows of a general CTA
constexpr int DEC_ROWS = 16;     // ... and of a decode CTA
constexpr int KT = 64;           // keys of a tile

template <int HD, int QR, int ST> constexpr size_t smem_bytes() {
  return (size_t)(2 * QR + 2 * ST * KT) * (HD + 8) * 2; // Q hi, Q lo, ST stages of K and of V
}

// One warp's part of a key tile: its 16 query rows (from row0) against NTW*8 keys of the stage
// (from key n0*8), folded into the warp's online softmax state. Rows past the causal limit
// (p0, p1: the positions of the thread's rows gid and gid+8) or past the split (ke) see -inf.
template <typename T, int HD, int NTW>
__device__ __forceinline__ void warp_tile(const T *q_hi, const T *q_lo, const T *ks, const T *vs,
                                          int row0, int n0, int k0, int ke, int p0, int p1,
                                          float qscale, float (&o)[HD / 8][4], float &m0,
                                          float &m1, float &l0, float &l1) {
  constexpr int LD = HD + 8, DT = HD / 8;
  const int lane = threadIdx.x & 31, tig = lane & 3;
  float sc[NTW][4];
#pragma unroll
  for (int n = 0; n < NTW; n++)
    sc[n][0] = sc[n][1] = sc[n][2] = sc[n][3] = 0.f;
#pragma unroll
  for (int kk = 0; kk < HD / 16; kk++) {
    uint32_t ah[4], al[4];
    const int qoff = (row0 + (lane & 15)) * LD + kk * 16 + (lane >> 4) * 8;
    ldsm4(smem_addr(q_hi + qoff), ah);
    ldsm4(smem_addr(q_lo + qoff), al);
#pragma unroll
    for (int np = 0; np < NTW / 2; np++) {
      uint32_t b[4]; // K rows (n0 + 2np)*8 + 0..15, dims kk*16 + 0..15: B of two key tiles
      ldsm4(smem_addr(ks + ((n0 + 2 * np) * 8 + (lane >> 4) * 8 + (lane & 7)) * LD + kk * 16 +
                      ((lane >> 3) & 1) * 8),
            b);
      mma16<T>::mma(sc[2 * np], ah, b[0], b[1]);
      mma16<T>::mma(sc[2 * np], al, b[0], b[1]);
      mma16<T>::mma(sc[2 * np + 1], ah, b[2], b[3]);
      mma16<T>::mma(sc[2 * np + 1], al, b[2], b[3]);
    }
  }
  float mx0 = m0, mx1 = m1;
#pragma unroll
  for (int n = 0; n < NTW; n++)
#pragma unroll
    for (int e = 0; e < 4; e++) {
      int key = k0 + (n0 + n) * 8 + 2 * tig + (e & 1);
      float x = key < ke && key <= (e < 2 ? p0 : p1) ? sc[n][e] * qscale : -INFINITY;
      sc[n][e] = x;
      if (e < 2)
        mx0 = fmaxf(mx0, x);
      else
        mx1 = fmaxf(mx1, x);
    }
  mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 1)); // the 4 lanes of a row
  mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 2));
  mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 1));
  mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 2));
  const float c0 = exp2f(m0 - mx0), c1 = exp2f(m1 - mx1);
  m0 = mx0;
  m1 = mx1;
  l0 *= c0;
  l1 *= c1;
#pragma unroll
  for (int n = 0; n < DT; n++) {
    o[n][0] *= c0;
    o[n][1] *= c0;
    o[n][2] *= c1;
    o[n][3] *= c1;
  }
#pragma unroll
  for (int kk = 0; kk < NTW / 2; kk++) {
    // P of keys (n0 + 2kk)*8 + 0..15 as an A fragment: score tiles 2kk and 2kk+1
    float p[2][4];
#pragma unroll
    for (int j = 0; j < 2; j++) {
      p[j][0] = exp2f(sc[2 * kk + j][0] - m0); // a masked key gives exp2(-inf) = 0
      p[j][1] = exp2f(sc[2 * kk + j][1] - m0);
      p[j][2] = exp2f(sc[2 * kk + j][2] - m1);
      p[j][3] = exp2f(sc[2 * kk + j][3] - m1);
      l0 += p[j][0] + p[j][1];
      l1 += p[j][2] + p[j][3];
    }
    uint32_t ph[4], pl[4];
    ph[0] = mma16<T>::split(p[0][0], p[0][1], pl[0]);
    ph[1] = mma16<T>::split(p[0][2], p[0][3], pl[1]);
    ph[2] = mma16<T>::split(p[1][0], p[1][1], pl[2]);
    ph[3] = mma16<T>::split(p[1][2], p[1][3], pl[3]);
#pragma unroll
    for (int dp = 0; dp < HD / 16; dp++) {
      uint32_t b[4]; // V rows of those 16 keys, dims dp*16 + 0..15: B of two dim tiles
      ldsm4_trans(smem_addr(vs + ((n0 + 2 * kk) * 8 + ((lane >> 3) & 1) * 8 + (lane & 7)) * LD +
                            dp * 16 + (lane >> 4) * 8),
                  b);
      mma16<T>::mma(o[2 * dp], ph, b[0], b[1]);
      mma16<T>::mma(o[2 * dp], pl, b[0], b[1]);
      mma16<T>::mma(o[2 * dp + 1], ph, b[2], b[3]);
      mma16<T>::mma(o[2 * dp + 1], pl, b[2], b[3]);
    }
  }
}

// Fragment layouts (PTX ISA, mma.m16n8k16): lane = 4 * gid + tig; a thread holds
//   A (16x16): rows gid, gid+8; cols 2*tig, +1, +8, +9      C (16x8): rows gid, gid+8; cols 2*tig, +1
//   B (16x8):  rows (k) 2*tig, +1, +8, +9; col (n) gid
template <typename T, int HD, int QR, int ST>
__global__ void __launch_bounds__(THREADS) attn_mma_k(pl_cu_split_args a) {
  constexpr int LD = HD + 8, CH = HD / 8, NT = KT / 8, DT = HD / 8;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  T *q_hi = reinterpret_cast<T *>(smem_raw), *q_lo = q_hi + QR * LD;
  T *k_s = q_lo + QR * LD, *v_s = k_s + ST * KT * LD;

  // which rows: a CTA starts at every tq-th token of a sequence (counted from the launch's
  // first token); the CTAs of the tokens in between have nothing to do
  const int t = a.t0 + blockIdx.x, s = pl_cu_seq_of_token(a.qsl, a.n_seqs, t);
  const int gc = a.gc, tq = QR / gc, first = max(a.qsl[s], a.t0);
  if ((t - first) % tq)
    return;
  const int nt = min(tq, min(a.qsl[s + 1], a.t0 + (int)gridDim.x) - t);
  const int g = a.n_head / a.n_kv, h = blockIdx.y / a.n_gc, g0 = (blockIdx.y % a.n_gc) * gc;
  const int ng = min(gc, g - g0), split = blockIdx.z;
  const int n_ctx = a.positions[t + nt - 1] + 1, kb = split * a.chunk;
  if (kb >= n_ctx)
    return;
  const int ke = min(n_ctx - kb, a.chunk) + kb;
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, gid = lane >> 2, tig = lane & 3;
  const int32_t *bt = a.block_tables + (size_t)s * a.max_blocks;
  const T *K = static_cast<const T *>(a.k), *V = static_cast<const T *>(a.v);

  auto load_tile = [&](int stage, int k0) {
    T *ks = k_s + stage * KT * LD, *vs = v_s + stage * KT * LD;
    for (int i = tid; i < KT * CH; i += THREADS) {
      int j = i / CH, c = i % CH * 8, key = k0 + j;
      bool ok = key < ke;
      size_t off = 0;
      if (ok)
        off = (((size_t)bt[key / a.block_size] * a.n_kv + h) * a.block_size +
               key % a.block_size) * HD + c;
      cp_async16(smem_addr(ks + j * LD + c), K + off, ok);
      cp_async16(smem_addr(vs + j * LD + c), V + off, ok);
    }
  };

  // A CTA of at most 16 rows (a decode) would leave three warps idle: then every warp takes
  // the same rows and a quarter of each tile's keys, and the warps' softmax states are merged
  // at the end. Batch-invariant mode never does this: a prefill token's rows must add up the
  // same way whichever chunk it came in.
  const bool kslice = QR == DEC_ROWS || (!a.fixed_split && nt * gc <= 16);
  const int row0 = kslice ? 0 : warp * 16;
  // this thread's two rows and their positions (-1: no such row)
  const int r0 = row0 + gid, r1 = r0 + 8;
  auto row_pos = [&](int r) {
    return r / gc < nt && r % gc < ng ? a.positions[t + r / gc] : -1;
  };
  const int p0 = row_pos(r0), p1 = row_pos(r1);
  const bool active = row0 < nt * gc;
  const int q_rows = min(QR, (nt * gc + 15) / 16 * 16);

  float o[DT][4], m0 = -FLT_MAX, m1 = -FLT_MAX, l0 = 0.f, l1 = 0.f;
#pragma unroll
  for (int n = 0; n < DT; n++)
    o[n][0] = o[n][1] = o[n][2] = o[n][3] = 0.f;

  const int n_tiles = (ke - kb + KT - 1) / KT;
#pragma unroll
  for (int i = 0; i < ST; i++) { // one group per stage, empty or not, so waits count tiles
    if (i < n_tiles)
      load_tile(i, kb + i * KT);
    cp_async_commit();
  }

  // Q while the first tiles fly; only the rows an active warp reads (a decode CTA's 16 of 64)
  for (int i = tid; i < q_rows * (HD / 4); i += THREADS) {
    int r = i / (HD / 4), c = i % (HD / 4) * 4, tok = r / gc, hh = r % gc;
    float4 x = make_float4(0.f, 0.f, 0.f, 0.f);
    if (tok < nt && hh < ng)
      x = *reinterpret_cast<const float4 *>(
          a.q + ((size_t)(t + tok) * a.n_head + h * g + g0 + hh) * HD + c);
    uint2 hi, lo;
    hi.x = mma16<T>::split(x.x, x.y, lo.x);
    hi.y = mma16<T>::split(x.z, x.w, lo.y);
    *reinterpret_cast<uint2 *>(q_hi + r * LD + c) = hi;
    *reinterpret_cast<uint2 *>(q_lo + r * LD + c) = lo;
  }

  for (int it = 0; it < n_tiles; it++) {
    cp_async_wait<ST - 1>(); // tile it has landed (the next ST - 1 may still fly)
    __syncthreads();
    if (active) {
      const T *ks = k_s + it % ST * KT * LD, *vs = v_s + it % ST * KT * LD;
      if (kslice)
        warp_tile<T, HD, NT / WARPS>(q_hi, q_lo, ks, vs, 0, warp * (NT / WARPS), kb + it * KT,
                                     ke, p0, p1, a.qscale, o, m0, m1, l0, l1);
      else
        warp_tile<T, HD, NT>(q_hi, q_lo, ks, vs, row0, 0, kb + it * KT, ke, p0, p1, a.qscale, o,
                             m0, m1, l0, l1);
    }
    __syncthreads(); // every warp is done with this stage before it is refilled
    if (it + ST < n_tiles)
      load_tile(it % ST, kb + (it + ST) * KT);
    cp_async_commit();
  }
  if (!active)
    return;

  l0 += __shfl_xor_sync(0xffffffffu, l0, 1);
  l0 += __shfl_xor_sync(0xffffffffu, l0, 2);
  l1 += __shfl_xor_sync(0xffffffffu, l1, 1);
  l1 += __shfl_xor_sync(0xffffffffu, l1, 2);
  if (kslice) { // merge the warps' states through the (now idle) stage buffers; warp 0 writes
    float *xo = reinterpret_cast<float *>(k_s), *xm = reinterpret_cast<float *>(v_s);
    float *xl = xm + WARPS * 64;
#pragma unroll
    for (int n = 0; n < DT; n++)
      *reinterpret_cast<float4 *>(xo + ((warp * DT + n) * 32 + lane) * 4) =
          make_float4(o[n][0], o[n][1], o[n][2], o[n][3]);
    xm[warp * 64 + lane * 2] = m0;
    xm[warp * 64 + lane * 2 + 1] = m1;
    xl[warp * 64 + lane * 2] = l0;
    xl[warp * 64 + lane * 2 + 1] = l1;
    __syncthreads();
    if (warp)
      return;
    float M0 = m0, M1 = m1;
    for (int w = 1; w < WARPS; w++) {
      M0 = fmaxf(M0, xm[w * 64 + lane * 2]);
      M1 = fmaxf(M1, xm[w * 64 + lane * 2 + 1]);
    }
    float c0 = exp2f(m0 - M0), c1 = exp2f(m1 - M1);
    l0 *= c0;
    l1 *= c1;
#pragma unroll
    for (int n = 0; n < DT; n++) {
      o[n][0] *= c0;
      o[n][1] *= c0;
      o[n][2] *= c1;
      o[n][3] *= c1;
    }
    for (int w = 1; w < WARPS; w++) {
      float d0 = exp2f(xm[w * 64 + lane * 2] - M0), d1 = exp2f(xm[w * 64 + lane * 2 + 1] - M1);
      l0 += xl[w * 64 + lane * 2] * d0;
      l1 += xl[w * 64 + lane * 2 + 1] * d1;
#pragma unroll
      for (int n = 0; n < DT; n++) {
        float4 x = *reinterpret_cast<const float4 *>(xo + ((w * DT + n) * 32 + lane) * 4);
        o[n][0] += x.x * d0;
        o[n][1] += x.y * d0;
        o[n][2] += x.z * d1;
        o[n][3] += x.w * d1;
      }
    }
    m0 = M0;
    m1 = M1;
  }
#pragma unroll
  for (int half = 0; half < 2; half++) {
    const int r = half ? r1 : r0, pos = half ? p1 : p0;
    const float m = half ? m1 : m0, l = half ? l1 : l0;
    if (pos < kb)
      continue; // no such row, or it has no key in this split (the reduce skips the split)
    const int tt = t + r / gc, qh = h * g + g0 + r % gc;
    const float inv = 1.f / l;
    float *dst;
    if (a.splits == 1) {
      dst = a.out + ((size_t)tt * a.n_head + qh) * HD;
    } else {
      size_t part = ((size_t)(tt - a.t0) * a.n_head + qh) * a.splits + split;
      dst = a.ws_o + part * HD;
      if (tig == 0)
        a.ws_lse[part] = m + log2f(l);
    }
#pragma unroll
    for (int n = 0; n < DT; n++)
      *reinterpret_cast<float2 *>(dst + n * 8 + 2 * tig) =
          make_float2(o[n][2 * half] * inv, o[n][2 * half + 1] * inv);
  }
}

// A kernel instance with its shared memory, set up once: above 48 KiB of dynamic shared memory
// a kernel must opt in, and the occupancy query is a driver call too costly for every layer.
struct mma_kernel {
  void (*fn)(pl_cu_split_args);
  size_t smem;
  int ctas_per_sm; // 0: the device cannot run it
};

template <typename T, int HD, int QR, int ST> const mma_kernel &instance() {
  static const mma_kernel k = [] {
    mma_kernel r = {attn_mma_k<T, HD, QR, ST>, smem_bytes<HD, QR, ST>(), 0};
    if (cudaFuncSetAttribute(r.fn, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)r.smem) !=
            cudaSuccess ||
        cudaOccupancyMaxActiveBlocksPerMultiprocessor(&r.ctas_per_sm, r.fn, THREADS, r.smem) !=
            cudaSuccess)
      r.ctas_per_sm = 0;
    cudaGetLastError(); // a refusal here is an answer, not a sticky launch error
    return r;
  }();
  return k;
}

template <typename T, int HD> const mma_kernel &instance(bool decode) {
  return decode ? instance<T, HD, DEC_ROWS, 3>() : instance<T, HD, ROWS, 2>();
}

template <typename T> const mma_kernel *pick(int hd, bool decode) {
  switch (hd) {
  case 64: return &instance<T, 64>(decode);
  case 80: return &instance<T, 80>(decode);
  case 96: return &instance<T, 96>(decode);
  case 128: return &instance<T, 128>(decode);
  case 256: return &instance<T, 256>(decode);
  default: return nullptr;
  }
}

const mma_kernel *pick_type(pl_dtype type, int hd, bool decode) {
  const mma_kernel *k = type == PL_DT_BF16  ? pick<__nv_bfloat16>(hd, decode)
                        : type == PL_DT_F16 ? pick<__half>(hd, decode)
                                            : nullptr;
  return k && k->ctas_per_sm > 0 ? k : nullptr;
}

// Opt-in until it has been timed on a GPU (PAGELLM_CUDA_ATTN_DECODE=1; BENCHMARKS 13i): the
// session that wrote it had no device.
bool decode_allowed() {
  static const bool on = [] {
    const char *e = getenv("PAGELLM_CUDA_ATTN_DECODE");
    return e && !strcmp(e, "1");
  }();
  return on;
}

} // namespace

extern "C" int pl_cu_attn_mma_supported(int head_dim, pl_dtype type, int *ctas_per_sm) {
  return pl_cu_attn_mma_plan(head_dim, type, 0, ctas_per_sm);
}

int pl_cu_attn_mma_decode(int n_tokens, int n_seqs, int gc, int fixed_split) {
  return decode_allowed() && n_tokens == n_seqs && gc <= DEC_ROWS && !fixed_split;
}

int pl_cu_attn_mma_plan(int head_dim, pl_dtype type, int decode, int *ctas_per_sm) {
  const mma_kernel *k = pick_type(type, head_dim, decode);
  if (k && ctas_per_sm)
    *ctas_per_sm = k->ctas_per_sm;
  return k != nullptr;
}

int pl_cu_attn_mma_group(int g) { return g < ROWS ? g : ROWS; }

int pl_cu_attn_mma_launch(const pl_cu_split_args &x, int n_tokens, int decode, pl_dtype type,
                          cudaStream_t s) {
  const mma_kernel *k = pick_type(type, x.head_dim, decode);
  if (!k)
    return (int)cudaErrorInvalidValue;
  dim3 grid((unsigned)n_tokens, (unsigned)(x.n_kv * x.n_gc), (unsigned)x.splits);
  k->fn<<<grid, THREADS, k->smem, s>>>(x);
  return (int)cudaGetLastError();
}
