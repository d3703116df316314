/* y[n][R] = x[n][C] · W^T for a quantized W and batches above the GEMV's 8 rows: the weight is
 * decoded to bf16 on its way into shared memory and multiplied on tensor cores, so it crosses
 * memory once. (The alternative, dequantizing row chunks to a bf16 buffer for cuBLAS, moves it
 * three times: read, write, read; BENCHMARKS 13f measured Q8_0 slower than bf16 that way.)
 *
 * A CTA of 4 warps owns a tile of BM = 64 weight rows x BN = 64 rows of x and walks the columns
 * in steps of BK = 64 (two 32-element units per weight row). Per step, thread t decodes unit
 * t % 2 of tile row t / 2 (Unit<T>, cu_quant_unit.cuh) to bf16 into As[64][BK], and copies four
 * 16-byte pieces of x (already bf16) into Bs[64][BK]; then each warp multiplies its 32 x 32
 * quarter with mma.sync m16n8k16 (ldmatrix fragments, f32 accumulation). The next step's unit
 * (and, for the planes and Q4_K, its codes) and x pieces are loaded into registers before this
 * step's mma, so the loads fly while the tensor cores work. Shared rows are padded by 16 bytes
 * (row stride 144 B): the 8 addresses of an ldmatrix phase fall in different bank groups.
 *
 * Small grids (few weight rows and few x rows) split the columns in two: both halves add into
 * y, zeroed first, with atomicAdd. Two f32 additions onto 0 give the same bits in either order
 * (a + b = b + a), so the result stays deterministic.
 *
 * Numerics: the same as the dequantize-then-cuBLAS path (weights and x rounded to bf16, exact
 * products, f32 sums), only the summation order differs.
 *
 * Measured (H100, BENCHMARKS 13g): against dequantize + cuBLAS, 2.2x on gate/up and 3.0x on
 * lm_head at 16 and 64 rows of x, slower at 256 rows and on 1024-row weights (the backend's
 * rule: 9..64 rows, weights of 2048+ rows). At 64 rows it still reads only ~30% of the copy
 * bandwidth: there is no multi-stage pipeline (one step of loads in flight per CTA). */
#include "backend/cuda/cu_mma.cuh"
#include "backend/cuda/cu_quant_unit.cuh"

namespace {

constexpr int QG_BM = 64, QG_BN = 64, QG_BK = 64, QG_THREADS = 128;
constexpr int QG_LD = QG_BK + 8; /* bf16 elements per shared row: 144 bytes */

template <int T>
__global__ void __launch_bounds__(QG_THREADS)
    k_qgemm(Wv w, const uint16_t *__restrict__ x, int n, int64_t steps_per_split,
            int accumulate, float *__restrict__ y) {
  __shared__ __align__(16) uint16_t As[QG_BM * QG_LD];
  __shared__ __align__(16) uint16_t Bs[QG_BN * QG_LD];
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int wm = warp >> 1, wn = warp & 1; /* the warp's 32 x 32 quarter */
  const int64_t m0 = (int64_t)blockIdx.x * QG_BM;
  const int n0 = blockIdx.y * QG_BN;
  const int64_t s0 = (int64_t)blockIdx.z * steps_per_split;
  int64_t s1 = s0 + steps_per_split;
  if (s1 > w.cols / QG_BK)
    s1 = w.cols / QG_BK;

  /* what this thread stages: unit au of weight row ar; x rows br + 16 i, 16-byte column bc */
  const int ar = tid >> 1, au = tid & 1, br = tid >> 3, bc = tid & 7;
  const int64_t arow = m0 + ar < w.rows ? m0 + ar : w.rows - 1; /* past the end: dropped */
  Unit<T> un;
  uint4 xv[4];
  auto fetch = [&](int64_t s) {
    un.load(w, arow, 2 * s + au);
PLQ_UNROLL
    for (int i = 0; i < 4; i++) {
      int r = n0 + br + 16 * i;
      xv[i] = r < n ? PLQ_LD((const uint4 *)(x + (int64_t)r * w.cols + s * QG_BK) + bc)
                    : make_uint4(0u, 0u, 0u, 0u);
    }
  };

  float acc[2][4][4];
PLQ_UNROLL
  for (int i = 0; i < 2; i++)
PLQ_UNROLL
    for (int j = 0; j < 4; j++)
PLQ_UNROLL
      for (int e = 0; e < 4; e++)
        acc[i][j][e] = 0.0f;

  if (s0 < s1)
    fetch(s0);
  for (int64_t s = s0; s < s1; s++) {
    uint16_t *ad = As + ar * QG_LD + 32 * au;
PLQ_UNROLL
    for (int k = 0; k < 4; k++) {
      float v[8];
      un.chunk(k, v);
      *(uint4 *)(ad + 8 * k) = bf16x8(v);
    }
PLQ_UNROLL
    for (int i = 0; i < 4; i++)
      *(uint4 *)(Bs + (br + 16 * i) * QG_LD + 8 * bc) = xv[i];
    __syncthreads();
    if (s + 1 < s1)
      fetch(s + 1); /* in flight during the mma below */
PLQ_UNROLL
    for (int ks = 0; ks < QG_BK / 16; ks++) {
      uint32_t a[2][4], b[4][2];
PLQ_UNROLL
      for (int mt = 0; mt < 2; mt++) /* A 16x16: rows (lane & 15), k half (lane >> 4) */
        ldsm4(smem_addr(As + (wm * 32 + mt * 16 + (lane & 15)) * QG_LD + ks * 16 +
                        8 * (lane >> 4)),
              a[mt]);
PLQ_UNROLL
      for (int np = 0; np < 2; np++) { /* two 8-column B tiles: n (lane & 7) + 8 (lane >> 4) */
        uint32_t r[4];
        ldsm4(smem_addr(Bs + (wn * 32 + np * 16 + (lane & 7) + 8 * (lane >> 4)) * QG_LD +
                        ks * 16 + 8 * ((lane >> 3) & 1)),
              r);
        b[2 * np][0] = r[0];
        b[2 * np][1] = r[1];
        b[2 * np + 1][0] = r[2];
        b[2 * np + 1][1] = r[3];
      }
PLQ_UNROLL
      for (int mt = 0; mt < 2; mt++)
PLQ_UNROLL
        for (int nt = 0; nt < 4; nt++)
          mma16<__nv_bfloat16>::mma(acc[mt][nt], a[mt], b[nt][0], b[nt][1]);
    }
    __syncthreads(); /* As/Bs are refilled next step */
  }

  /* C fragment: rows g, g + 8 of the 16-row tile, x rows 2t, 2t + 1 of the 8-column tile */
  const int g = lane >> 2, t = lane & 3;
PLQ_UNROLL
  for (int mt = 0; mt < 2; mt++)
PLQ_UNROLL
    for (int nt = 0; nt < 4; nt++)
PLQ_UNROLL
      for (int e = 0; e < 4; e++) {
        int64_t row = m0 + wm * 32 + mt * 16 + g + 8 * (e >> 1);
        int col = n0 + wn * 32 + nt * 8 + 2 * t + (e & 1);
        if (row < w.rows && col < n) {
          float *dst = y + (int64_t)col * w.rows + row;
          if (accumulate)
            atomicAdd(dst, acc[mt][nt][e]);
          else
            *dst = acc[mt][nt][e];
        }
      }
}

#define PLQ_QGEMM_TYPES(X)                                                                    \
  X(PL_DT_Q8_0) X(PL_DT_Q4_0) X(PL_DT_Q4_K) X(PL_DT_Q6_K) X(PL_DT_MLX_Q4) X(PL_DT_MLX_Q8)     \
  X(PLQ_Q8P) X(PLQ_Q4P)

bool qgemm_type(int kt) {
  switch (kt) {
#define X(T) case T:
    PLQ_QGEMM_TYPES(X)
#undef X
    return true;
  default: return false;
  }
}

} // namespace

extern "C" int pl_cu_qgemm_supported(const pl_cu_weight *w) {
  Wv v;
  if (!w || !qgemm_type(kernel_type(w)) || make_view(w, "pl_cu_qgemm", &v) != 0)
    return 0;
  return v.cols % QG_BK == 0 && unit_ok(v, w->type, NULL, 16);
}

extern "C" int pl_cu_qgemm(const pl_cu_weight *w, const uint16_t *x, int n, float *y, int split,
                           pl_cu_stream stream) {
  static const char op[] = "pl_cu_qgemm";
  Wv v;
  PL_TRY(make_view(w, op, &v));
  if (n < 0 || (n > 0 && (!x || !y)) || split < 0 || split > 2)
    return pl_fail(PL_EINVAL, "%s: bad arguments (n = %d, split = %d)", op, n, split);
  if (!pl_cu_qgemm_supported(w) || (uintptr_t)x % 16)
    return pl_fail(PL_EUNSUPPORTED, "%s: %s %lldx%lld (needs a quantized type, columns a "
                   "multiple of %d and 16-byte aligned data)", op, pl_dtype_name(w->type),
                   (long long)v.rows, (long long)v.cols, QG_BK);
  if (n == 0 || v.rows == 0)
    return 0;
  cudaStream_t st = (cudaStream_t)stream;
  int64_t steps = v.cols / QG_BK, mt = (v.rows + QG_BM - 1) / QG_BM, nt = (n + QG_BN - 1) / QG_BN;
  if (nt > 65535)
    return pl_fail(PL_EINVAL, "%s: %d rows of x is too many for one call", op, n);
  if (split == 0)
    split = mt * nt < 2 * (int64_t)sm_count() ? 2 : 1;
  if (steps < 2)
    split = 1;
  if (split == 2) {
    cudaError_t e = cudaMemsetAsync(y, 0, sizeof(float) * (size_t)n * (size_t)v.rows, st);
    if (e != cudaSuccess)
      return pl_fail(PL_EDEVICE, "%s: memset: %s", op, cudaGetErrorString(e));
  }
  dim3 grid((unsigned)mt, (unsigned)nt, (unsigned)split);
  int64_t per = (steps + split - 1) / split;
  switch (kernel_type(w)) {
#define X(T)                                                                                  \
  case T: k_qgemm<T><<<grid, QG_THREADS, 0, st>>>(v, x, n, per, split > 1, y); break;
    PLQ_QGEMM_TYPES(X)
#undef X
  default: break;
  }
  return launch_status(op, w->type);
}
