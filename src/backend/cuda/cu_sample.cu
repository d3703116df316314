// The sampling reduction of logits rows on the GPU (backend.h's pl_row_reduce; the host
// reference is pl_row_reduce_ref in engine/sampler_reduced.c). With edits (logit bias, masks,
// penalties) the rows are first copied and edited in scratch. One CTA of 1024 threads per row:
//   1. s_max and x_max; 2. z = sum expf(s - s_max) and the raw log-sum-exp, in float64;
//   3. the PL_TOPK-th largest s by radix select over an order-preserving 32-bit key (4 passes
//      of 8 bits, a shared-memory histogram each);
//   4. the candidates: every s above that key, then the lowest ids equal to it (an ordered
//      compaction, so ties resolve as the host's sort does); ranked by (s desc, id asc);
//   5. the draw: a block-wide float64 inclusive scan in id order, chunk by chunk, stopping at
//      the first chunk whose prefix passes u*z.
// Each pass reads the row once (about 7 reads of n_vocab floats per row, from L2 after the
// first): a 128k-vocab batch of 256 rows is ~0.9 GB of L2/DRAM traffic, well under a step.
// Products and differences use __fmul_rn / __fsub_rn so they round exactly as the host's.
#include <cuda_runtime.h>
#include <float.h>
#include <limits.h>
#include <math.h>

#include "backend/backend.h"
#include "backend/cuda/cu_kernels.h"

namespace {

constexpr int RT = 1024, NW = RT / 32;

__device__ __forceinline__ float scaled(float x, float it) { return __fadd_rn(__fmul_rn(x, it), 0.0f); }

// ascending unsigned order = ascending float order (-0 was folded into +0 by scaled())
__device__ __forceinline__ uint32_t okey(float f) {
  uint32_t b = __float_as_uint(f);
  return (b & 0x80000000u) ? ~b : (b | 0x80000000u);
}

template <typename T, typename Op> __device__ T block_reduce(T v, Op op, T *sh) {
  for (int o = 16; o > 0; o >>= 1)
    v = op(v, __shfl_xor_sync(0xffffffffu, v, o));
  int lane = threadIdx.x & 31, w = threadIdx.x >> 5;
  __syncthreads(); // sh may still be read from a previous call
  if (lane == 0)
    sh[w] = v;
  __syncthreads();
  v = sh[0];
  for (int i = 1; i < NW; i++)
    v = op(v, sh[i]);
  return v;
}

struct MaxF {
  __device__ float operator()(float a, float b) const { return fmaxf(a, b); }
};
struct SumI {
  __device__ int operator()(int a, int b) const { return a + b; }
};
struct SumD {
  __device__ double operator()(double a, double b) const { return a + b; }
};

// exclusive prefix of `flag` over the block (thread order) and the block's total
__device__ int block_count_before(bool flag, int *sh, int *total) {
  int lane = threadIdx.x & 31, w = threadIdx.x >> 5;
  unsigned bal = __ballot_sync(0xffffffffu, flag);
  __syncthreads();
  if (lane == 0)
    sh[w] = __popc(bal);
  __syncthreads();
  int before = 0, all = 0;
  for (int i = 0; i < NW; i++) {
    before += i < w ? sh[i] : 0;
    all += sh[i];
  }
  *total = all;
  return before + __popc(bal & ((1u << lane) - 1u));
}

// xp[edit.row][edit.id] = the edit applied to raw (pl_logit_edits_apply's steps, each rounded)
__global__ void edit_k(float *xp, const float *raw, const pl_logit_edit *e, int n, int d) {
  int k = blockIdx.x * blockDim.x + threadIdx.x;
  if (k >= n)
    return;
  size_t at = (size_t)e[k].row * d + e[k].id;
  float v = __fadd_rn(raw[at], e[k].bias);
  if (e[k].mask)
    v = -INFINITY;
  if (e[k].rep != 1.0f)
    v = v > 0 ? __fdiv_rn(v, e[k].rep) : __fmul_rn(v, e[k].rep);
  for (int c = 0; c < e[k].count; c++) {
    v = __fsub_rn(v, e[k].freq);
    if (c == 0)
      v = __fsub_rn(v, e[k].pres);
  }
  xp[at] = v;
}

// x: the edited rows (s from them), raw: the rows before the edits
__global__ void __launch_bounds__(RT)
    reduce_k(pl_row_reduce *rows, const float *xrows, const float *rawrows, int d) {
  pl_row_reduce *r = rows + blockIdx.x;
  const float *x = xrows + (size_t)blockIdx.x * d, *raw = rawrows + (size_t)blockIdx.x * d;
  const int tid = threadIdx.x;
  const float it = r->inv_temp;
  const double u = r->u;
  __shared__ float shf[NW];
  __shared__ double shd[NW];
  __shared__ int shi[NW];
  __shared__ unsigned hist[256];
  __shared__ unsigned sh_prefix;
  __shared__ int sh_need, sh_ngt, sh_found;
  __shared__ int c_id[PL_TOPK];
  __shared__ float c_s[PL_TOPK], c_raw[PL_TOPK];

  // 1-2. maxima and sums
  float smax = -INFINITY, rmax = -INFINITY;
  int finite = 0;
  for (int i = tid; i < d; i += RT) {
    float v = scaled(x[i], it);
    smax = fmaxf(smax, v);
    rmax = fmaxf(rmax, raw[i]);
    finite += v > -INFINITY;
  }
  smax = block_reduce(smax, MaxF(), shf);
  rmax = block_reduce(rmax, MaxF(), shf);
  finite = block_reduce(finite, SumI(), shi);
  double z = 0, zr = 0;
  for (int i = tid; i < d; i += RT) {
    z += (double)expf(__fsub_rn(scaled(x[i], it), smax));
    zr += exp((double)raw[i] - (double)rmax);
  }
  z = block_reduce(z, SumD(), shd);
  zr = block_reduce(zr, SumD(), shd);

  // 3. radix select: the key of the k-th largest s, and how many equal to it to take
  const int k = d < PL_TOPK ? d : PL_TOPK;
  unsigned prefix = 0, mask = 0;
  int need = k;
  for (int shift = 24; shift >= 0; shift -= 8) {
    for (int i = tid; i < 256; i += RT)
      hist[i] = 0;
    __syncthreads();
    for (int i = tid; i < d; i += RT) {
      unsigned key = okey(scaled(x[i], it));
      if ((key & mask) == prefix)
        atomicAdd(&hist[(key >> shift) & 255u], 1u);
    }
    __syncthreads();
    if (tid == 0) {
      unsigned above = 0;
      for (int b = 255; b >= 0; b--) {
        if (above + hist[b] >= (unsigned)need) {
          sh_prefix = prefix | ((unsigned)b << shift);
          sh_need = need - (int)above;
          break;
        }
        above += hist[b];
      }
    }
    __syncthreads();
    prefix = sh_prefix;
    need = sh_need;
    mask |= 255u << shift;
  }
  const unsigned T = prefix; // every key above T is a candidate, plus `need` keys equal to T

  // 4. the candidates
  if (tid == 0)
    sh_ngt = 0;
  __syncthreads();
  for (int i = tid; i < d; i += RT) {
    float v = scaled(x[i], it);
    if (okey(v) > T) {
      int p = atomicAdd(&sh_ngt, 1);
      c_id[p] = i;
      c_s[p] = v;
      c_raw[p] = raw[i];
    }
  }
  __syncthreads();
  const int ngt = sh_ngt; // == k - need
  int taken = 0;
  for (int i0 = 0; i0 < d && taken < need; i0 += RT) { // uniform: every thread sees `taken`
    int i = i0 + tid;
    float v = i < d ? scaled(x[i], it) : 0.f;
    bool eq = i < d && okey(v) == T;
    int total;
    int pos = taken + block_count_before(eq, shi, &total);
    if (eq && pos < need) {
      c_id[ngt + pos] = i;
      c_s[ngt + pos] = v;
      c_raw[ngt + pos] = raw[i];
    }
    taken += total;
  }
  __syncthreads();
  if (tid < k) {
    float v = c_s[tid];
    int id = c_id[tid], rank = 0;
    for (int j = 0; j < k; j++)
      rank += c_s[j] > v || (c_s[j] == v && c_id[j] < id);
    r->top_id[rank] = id;
    r->top_s[rank] = v;
    r->top_raw[rank] = c_raw[tid];
  }

  // 5. the draw
  int drawn = -1;
  if (u >= 0 && d > 0) {
    const double target = u * z;
    double base = 0;
    drawn = d - 1;
    if (tid == 0)
      sh_found = INT_MAX;
    for (int i0 = 0; i0 < d; i0 += RT) {
      int i = i0 + tid;
      double w = i < d ? (double)expf(__fsub_rn(scaled(x[i], it), smax)) : 0.0;
      // inclusive scan: within the warp, then over the warps' totals
      double inc = w;
      int lane = tid & 31, wp = tid >> 5;
      for (int o = 1; o < 32; o <<= 1) {
        double t = __shfl_up_sync(0xffffffffu, inc, o);
        if (lane >= o)
          inc += t;
      }
      __syncthreads();
      if (lane == 31)
        shd[wp] = inc;
      __syncthreads();
      double before = 0, all = 0;
      for (int j = 0; j < NW; j++) {
        before += j < wp ? shd[j] : 0.0;
        all += shd[j];
      }
      if (i < d && target < base + before + inc)
        atomicMin(&sh_found, i);
      __syncthreads();
      if (sh_found != INT_MAX) {
        drawn = sh_found;
        break;
      }
      base += all;
    }
  }
  if (tid == 0) {
    r->n_top = k;
    r->n_finite = finite;
    r->z = z;
    r->lse_raw = (double)rmax + log(zr);
    r->drawn = drawn;
    r->drawn_raw = drawn >= 0 ? raw[drawn] : 0.f;
  }
}

} // namespace

extern "C" int pl_cu_sample_reduce(pl_row_reduce *rows, const float *src, float *scratch, int n,
                                   int d, const pl_logit_edit *edits, int n_edits,
                                   pl_cu_stream s) {
  cudaStream_t st = (cudaStream_t)s;
  if (n <= 0 || d <= 0)
    return 0;
  const float *x = src;
  if (n_edits > 0) {
    cudaMemcpyAsync(scratch, src, (size_t)n * d * sizeof(float), cudaMemcpyDeviceToDevice, st);
    edit_k<<<(n_edits + 255) / 256, 256, 0, st>>>(scratch, src, edits, n_edits, d);
    x = scratch;
  }
  reduce_k<<<n, RT, 0, st>>>(rows, x, src, d);
  return (int)cudaGetLastError();
}
