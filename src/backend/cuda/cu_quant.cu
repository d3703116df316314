/* Weight decoding kernels (see cu_quant.h). Encodings are byte-exact with the CPU backend
 * (backend/cpu/kern/kern_quant.c):
 *   Q8_0  {f16 d; i8 qs[32]}               34 B / 32   w = d * qs[i]
 *   Q4_0  {f16 d; u8 qs[16]}               18 B / 32   w[i] = d*((qs[i]&15)-8), w[i+16] = d*((qs[i]>>4)-8)
 *   Q4_K  {f16 d, dmin; u8 sc[12]; qs[128]} 144 B / 256: 8 sub-blocks of 32, w = d*sc_j*q - dmin*m_j
 *   Q6_K  {ql[128]; qh[64]; i8 sc[16]; f16 d} 210 B / 256: w = d*sc_k*(q - 32)
 *   MLX   codes LSB-first in little-endian words (4-bit: byte b = elements 2b | 2b+1 << 4),
 *         w = scale[g]*q + bias[g], scales/biases [rows][cols/group_size].
 *
 * Structure. Every type has a "unit" decoder (struct Unit<T>): 32 consecutive elements of one row
 * (a Q8_0/Q4_0 block, a Q4_K sub-block, two Q6_K scale groups, an MLX group slice), decoded
 * 8 at a time (chunk k = elements 8k..8k+7) after a header load (scales). All three entry points
 * use it when the shape allows (cols % 32 == 0, MLX group_size % 32 == 0, 16-byte aligned
 * pointers); anything else goes to a per-element decoder (elem()) that only reads bytes, so odd
 * shapes and misaligned views stay correct, only slower. Both decoders are __host__ __device__ so
 * they can be checked against pl_dequant_row on a machine without a GPU.
 *
 * Q8_0 and Q4_0 also come in planes (cu_quant.h; the backend keeps them so): codes and f16
 * scales apart, so a unit is one or two aligned 16-byte loads plus a 2-byte scale. Their blocks
 * (34/18 B) are only 2-byte aligned and allow only 2-byte loads.
 *
 * qgemv (the decode path; memory-bound). A CTA of 4 warps owns 4 x RPW output rows (RPW rows
 * per warp) and walks the columns in tiles of 1024: the tile of x (n rows, f32) goes to shared
 * memory once per CTA (padded 36 floats per 32 so the float4 reads below are bank-conflict
 * free), then lane l of every warp decodes unit l of the tile for its RPW rows in registers and
 * multiplies it with the n x rows, so each x value read from shared memory serves RPW weight
 * rows. Each weight byte is read once from DRAM; a warp-shuffle tree sums the 32 lanes at the
 * end. RPW is 4 for n >= 3 (shared-memory reads: n x 4 bytes of x per weight element / RPW),
 * and for n <= 2 it drops to n where 16-row CTAs would not give each SM 4 of them: a weight of
 * few rows (k/v: 1024) then still has enough loads in flight to reach the DRAM roofline.
 * Loads: 16 B for F32/F16/BF16/MLX and the planes, 16 B header + 2 x 16 B codes for Q4_K; Q8_0,
 * Q4_0 blocks and Q6_K use 2-byte loads (coalesced across the warp through L1, but more load
 * instructions per byte). The planes and Q4_K load a unit's codes in load(), so the RPW rows'
 * loads are all issued before the first FMA.
 * Measured (BENCHMARKS 13f, 13g): 30-50% of the copy bandwidth for most shapes at n = 1, up to
 * 89% for lm_head; what bounds the rest is not yet known (two guesses, int -> float conversion
 * rate and serialized tiles, were tried and made it slower).
 * Shared memory: each x float read serves RPW rows, so n x rows cost 4n/RPW bytes of
 * shared-memory reads per weight element: at n = 8 with 4-bit weights (0.56 B per element) that
 * is ~14x the DRAM traffic, and the kernel becomes shared-memory bound at roughly half the DRAM
 * roofline. The kernel bodies are __host__ __device__ (cu_quant_unit.cuh), and
 * tests/cuda/test_cuda_decode_host.cu runs them on the CPU: CI checks them without a GPU. */
#include "backend/cuda/cu_quant_unit.cuh"

namespace {

/* ---- kernels --------------------------------------------------------------------------------- */

template <int T, int NX, int RPW>
__global__ void __launch_bounds__(GEMV_WARPS * 32)
    k_qgemv(Wv w, const float *__restrict__ x, float *__restrict__ y) {
  __shared__ __align__(16) float xs[NX * 32 * XPAD];
  int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  int64_t row0 = ((int64_t)blockIdx.x * GEMV_WARPS + warp) * RPW;
  float acc[RPW][NX];
PLQ_UNROLL
  for (int rr = 0; rr < RPW; rr++)
PLQ_UNROLL
    for (int j = 0; j < NX; j++)
      acc[rr][j] = 0.0f;
  lane_gemv<T, NX, RPW>(w, row0, lane, xs, [&](int64_t t0) {
    __syncthreads(); /* the previous tile is consumed */
    load_x_tile<NX>(xs, x, w.cols, t0, threadIdx.x, blockDim.x);
    __syncthreads();
  }, acc);
PLQ_UNROLL
  for (int rr = 0; rr < RPW; rr++)
PLQ_UNROLL
    for (int j = 0; j < NX; j++) {
      float v = acc[rr][j];
PLQ_UNROLL
      for (int off = 16; off > 0; off >>= 1)
        v += __shfl_xor_sync(0xffffffffu, v, off);
      acc[rr][j] = v;
    }
  /* lane rr*NX + j writes (rr, j): spreads the stores over lanes (RPW * NX <= 32) */
PLQ_UNROLL
  for (int rr = 0; rr < RPW; rr++)
PLQ_UNROLL
    for (int j = 0; j < NX; j++)
      if (lane == rr * NX + j && row0 + rr < w.rows)
        y[j * w.rows + row0 + rr] = acc[rr][j];
}

/* Any shape: a warp per row, lanes stride over the columns, element decoder. Lane `lane`'s
 * partial sums of row r (the kernel adds the 32 lanes). */
template <int T>
PLQ_HD void elem_lane(const Wv &w, const float *x, int n, int64_t r, int lane,
                      float acc[PL_CU_GEMV_MAX_N]) {
  for (int64_t c = lane; c < w.cols; c += 32) {
    float wv = elem_t<T>(w, r, c);
PLQ_UNROLL
    for (int j = 0; j < PL_CU_GEMV_MAX_N; j++)
      if (j < n)
        acc[j] += wv * x[j * w.cols + c];
  }
}

template <int T>
__global__ void k_qgemv_elem(Wv w, const float *__restrict__ x, int n, float *__restrict__ y) {
  int lane = threadIdx.x & 31;
  int64_t r = (int64_t)blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
  if (r >= w.rows) /* uniform per warp: whole warps leave */
    return;
  float acc[PL_CU_GEMV_MAX_N] = {0};
  elem_lane<T>(w, x, n, r, lane, acc);
PLQ_UNROLL
  for (int j = 0; j < PL_CU_GEMV_MAX_N; j++) {
    float v = acc[j];
PLQ_UNROLL
    for (int off = 16; off > 0; off >>= 1)
      v += __shfl_xor_sync(0xffffffffu, v, off);
    if (lane == 0 && j < n)
      y[j * w.rows + r] = v;
  }
}

/* The grid-stride kernels below run one body per index; the bodies are host-callable too. */

/* out[i][cols] = row ids[i]; one body per (i, unit u), idx = i * (cols/32) + u. An id outside
 * [0, rows) gives a NaN row (a kernel cannot return an error; NaN makes the misuse visible
 * instead of reading out of bounds). */
template <int T>
PLQ_HD void get_rows_unit(const Wv &w, const int32_t *ids, float *out, int64_t idx) {
  int64_t upr = w.cols >> 5, i = idx / upr, u = idx - i * upr;
  int32_t id = PLQ_LD(ids + i);
  float *o = out + i * w.cols + 32 * u;
  if (id < 0 || id >= w.rows) {
    for (int e = 0; e < 32; e++)
      o[e] = bits_f32(0x7fc00000u);
    return;
  }
  Unit<T> un;
  un.load(w, id, u);
PLQ_UNROLL
  for (int k = 0; k < 4; k++) {
    float v[8];
    un.chunk(k, v);
    *(float4 *)(o + 8 * k) = make_float4(v[0], v[1], v[2], v[3]);
    *(float4 *)(o + 8 * k + 4) = make_float4(v[4], v[5], v[6], v[7]);
  }
}

/* idx = i * cols + c */
template <int T>
PLQ_HD void get_rows_elem(const Wv &w, const int32_t *ids, float *out, int64_t idx) {
  int64_t i = idx / w.cols, c = idx - i * w.cols;
  int32_t id = PLQ_LD(ids + i);
  out[idx] = id < 0 || id >= w.rows ? bits_f32(0x7fc00000u) : elem_t<T>(w, id, c);
}

/* out[r - row0][cols] as bf16 (round to nearest even); idx = (r - row0) * (cols/32) + u. */
template <int T>
PLQ_HD void dequant_unit(const Wv &w, int64_t row0, uint16_t *out, int64_t idx) {
  int64_t upr = w.cols >> 5, i = idx / upr, u = idx - i * upr;
  Unit<T> un;
  un.load(w, row0 + i, u);
  uint16_t *o = out + i * w.cols + 32 * u;
PLQ_UNROLL
  for (int k = 0; k < 4; k++) {
    float v[8];
    un.chunk(k, v);
    *(uint4 *)(o + 8 * k) = bf16x8(v);
  }
}

/* idx = (r - row0) * cols + c */
template <int T>
PLQ_HD void dequant_elem(const Wv &w, int64_t row0, uint16_t *out, int64_t idx) {
  int64_t i = idx / w.cols, c = idx - i * w.cols;
  out[idx] = f2bf(elem_t<T>(w, row0 + i, c));
}

#define PLQ_GRID_STRIDE(idx, total)                                                            \
  for (int64_t idx = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; idx < (total);            \
       idx += (int64_t)gridDim.x * blockDim.x)

template <int T>
__global__ void k_get_rows(Wv w, const int32_t *__restrict__ ids, int64_t total,
                           float *__restrict__ out) {
  PLQ_GRID_STRIDE(idx, total) get_rows_unit<T>(w, ids, out, idx);
}
template <int T>
__global__ void k_get_rows_elem(Wv w, const int32_t *__restrict__ ids, int64_t total,
                                float *__restrict__ out) {
  PLQ_GRID_STRIDE(idx, total) get_rows_elem<T>(w, ids, out, idx);
}
template <int T>
__global__ void k_dequant(Wv w, int64_t row0, int64_t total, uint16_t *__restrict__ out) {
  PLQ_GRID_STRIDE(idx, total) dequant_unit<T>(w, row0, out, idx);
}
template <int T>
__global__ void k_dequant_elem(Wv w, int64_t row0, int64_t total, uint16_t *__restrict__ out) {
  PLQ_GRID_STRIDE(idx, total) dequant_elem<T>(w, row0, out, idx);
}

template <int T>
__global__ void k_to_planes(Wv w, int64_t total, uint8_t *__restrict__ codes,
                            uint16_t *__restrict__ scales) {
  PLQ_GRID_STRIDE(idx, total) to_planes_block<T>(w, codes, scales, idx);
}

/* Rows per warp. Four rows share each x value read from shared memory, which batches of 3..8
 * rows of x need; one stream (n <= 2) is bound by DRAM alone, and there fewer rows per warp
 * give a weight of few rows (k/v: 1024) enough CTAs to keep every SM's loads in flight.
 * PAGELLM_CUDA_GEMV_RPW=4 keeps 4 (to measure the difference). */
int gemv_rpw(const Wv &v, int n) {
  static int forced = -1;
  if (forced < 0) {
    const char *e = getenv("PAGELLM_CUDA_GEMV_RPW");
    forced = e && (!strcmp(e, "1") || !strcmp(e, "2") || !strcmp(e, "4")) ? atoi(e) : 0;
  }
  if (forced)
    return forced == 4 || forced <= n ? forced : 4;
  if (n > 2 || v.rows / (GEMV_WARPS * 4) >= 4 * (int64_t)sm_count())
    return 4;
  return n;
}

template <int T, int RPW, int NX>
void launch_rows(const Wv &v, const float *x, float *y, cudaStream_t st) {
  unsigned grid = (unsigned)((v.rows + GEMV_WARPS * RPW - 1) / (GEMV_WARPS * RPW));
  k_qgemv<T, NX, RPW><<<grid, GEMV_WARPS * 32, 0, st>>>(v, x, y);
}

/* Q8_0 planes in split lanes (lane_load) with PAGELLM_CUDA_GEMV_SPLIT=1: opt-in until it has
 * been timed on a GPU (BENCHMARKS 13i; the session that wrote it had no device). */
bool gemv_split() {
  static const bool on = [] {
    const char *e = getenv("PAGELLM_CUDA_GEMV_SPLIT");
    return e && !strcmp(e, "1");
  }();
  return on;
}

template <int T>
void launch_gemv(const Wv &v, const float *x, int n, float *y, bool unit, cudaStream_t st) {
  if (T == PLQ_Q8P && unit && gemv_split())
    return launch_gemv<PLQ_Q8PS>(v, x, n, y, unit, st);
  if (!unit) {
    k_qgemv_elem<T><<<(unsigned)((v.rows + 3) / 4), 128, 0, st>>>(v, x, n, y);
    return;
  }
  int rpw = gemv_rpw(v, n);
  switch (n) {
  case 1:
    if (rpw == 1)
      launch_rows<T, 1, 1>(v, x, y, st);
    else if (rpw == 2)
      launch_rows<T, 2, 1>(v, x, y, st);
    else
      launch_rows<T, 4, 1>(v, x, y, st);
    break;
  case 2:
    if (rpw == 2)
      launch_rows<T, 2, 2>(v, x, y, st);
    else
      launch_rows<T, 4, 2>(v, x, y, st);
    break;
  case 3: launch_rows<T, 4, 3>(v, x, y, st); break;
  case 4: launch_rows<T, 4, 4>(v, x, y, st); break;
  case 5: launch_rows<T, 4, 5>(v, x, y, st); break;
  case 6: launch_rows<T, 4, 6>(v, x, y, st); break;
  case 7: launch_rows<T, 4, 7>(v, x, y, st); break;
  default: launch_rows<T, 4, 8>(v, x, y, st); break;
  }
}

} // namespace

extern "C" int pl_cu_get_rows(const pl_cu_weight *w, const int32_t *ids, int n, float *out,
                              pl_cu_stream stream) {
  static const char op[] = "pl_cu_get_rows";
  Wv v;
  PL_TRY(make_view(w, op, &v));
  if (n < 0 || (n > 0 && (!ids || !out)))
    return pl_fail(PL_EINVAL, "%s: bad arguments (n = %d)", op, n);
  if (n == 0)
    return 0;
  bool unit = unit_ok(v, w->type, out, 16);
  int64_t total = (int64_t)n * (unit ? v.cols / 32 : v.cols);
  cudaStream_t st = (cudaStream_t)stream;
  switch (kernel_type(w)) {
#define X(T)                                                                                  \
  case T:                                                                                     \
    if (unit)                                                                                 \
      k_get_rows<T><<<grid_for(total, 256), 256, 0, st>>>(v, ids, total, out);                 \
    else                                                                                      \
      k_get_rows_elem<T><<<grid_for(total, 256), 256, 0, st>>>(v, ids, total, out);            \
    break;
    PLQ_TYPES(X)
#undef X
  default: break;
  }
  return launch_status(op, w->type);
}

extern "C" int pl_cu_dequant(const pl_cu_weight *w, int64_t row0, int64_t nrows, uint16_t *out,
                             pl_cu_stream stream) {
  static const char op[] = "pl_cu_dequant";
  Wv v;
  PL_TRY(make_view(w, op, &v));
  if (row0 < 0 || nrows < 0 || row0 + nrows > v.rows || (nrows > 0 && !out))
    return pl_fail(PL_EINVAL, "%s: rows %lld..%lld outside the %lld rows of the weight", op,
                   (long long)row0, (long long)(row0 + nrows), (long long)v.rows);
  if (nrows == 0)
    return 0;
  bool unit = unit_ok(v, w->type, out, 16);
  int64_t total = nrows * (unit ? v.cols / 32 : v.cols);
  cudaStream_t st = (cudaStream_t)stream;
  switch (kernel_type(w)) {
#define X(T)                                                                                  \
  case T:                                                                                     \
    if (unit)                                                                                 \
      k_dequant<T><<<grid_for(total, 256), 256, 0, st>>>(v, row0, total, out);             \
    else                                                                                      \
      k_dequant_elem<T><<<grid_for(total, 256), 256, 0, st>>>(v, row0, total, out);        \
    break;
    PLQ_TYPES(X)
#undef X
  default: break;
  }
  return launch_status(op, w->type);
}

extern "C" int pl_cu_qgemv(const pl_cu_weight *w, const float *x, int n, float *y,
                           pl_cu_stream stream) {
  static const char op[] = "pl_cu_qgemv";
  Wv v;
  PL_TRY(make_view(w, op, &v));
  if (n < 1 || n > PL_CU_GEMV_MAX_N || !x || !y)
    return pl_fail(PL_EINVAL, "%s: n = %d x rows (1..%d)", op, n, PL_CU_GEMV_MAX_N);
  if (v.rows == 0)
    return 0;
  bool unit = unit_ok(v, w->type, x, 16);
  cudaStream_t st = (cudaStream_t)stream;
  switch (kernel_type(w)) {
#define X(T)                                                                                  \
  case T: launch_gemv<T>(v, x, n, y, unit, st); break;
    PLQ_TYPES(X)
#undef X
  default: break;
  }
  return launch_status(op, w->type);
}

extern "C" int pl_cu_planar(pl_dtype type, int64_t cols) {
  return (type == PL_DT_Q8_0 || type == PL_DT_Q4_0) && cols > 0 && cols % 32 == 0;
}

extern "C" void pl_cu_plane_bytes(const pl_cu_weight *src, size_t *codes, size_t *scales) {
  size_t blocks = (size_t)src->rows * (size_t)(src->cols / 32);
  *codes = blocks * (src->type == PL_DT_Q8_0 ? 32 : 16);
  *scales = blocks * 2;
}

extern "C" int pl_cu_to_planes(const pl_cu_weight *src, void *codes, void *scales,
                               pl_cu_weight *dst, pl_cu_stream stream) {
  static const char op[] = "pl_cu_to_planes";
  Wv v;
  PL_TRY(make_view(src, op, &v));
  if (src->scales || !pl_cu_planar(src->type, src->cols))
    return 0;
  if (!codes || !scales || (uintptr_t)codes % 16 || (uintptr_t)scales % 2)
    return pl_fail(PL_EINVAL, "%s: plane buffers missing or misaligned", op);
  int64_t total = v.rows * (v.cols / 32);
  cudaStream_t st = (cudaStream_t)stream;
  if (total > 0) {
    if (src->type == PL_DT_Q8_0)
      k_to_planes<PL_DT_Q8_0><<<grid_for(total, 256), 256, 0, st>>>(
          v, total, (uint8_t *)codes, (uint16_t *)scales);
    else
      k_to_planes<PL_DT_Q4_0><<<grid_for(total, 256), 256, 0, st>>>(
          v, total, (uint8_t *)codes, (uint16_t *)scales);
    PL_TRY(launch_status(op, src->type));
  }
  *dst = *src;
  dst->data = codes;
  dst->scales = scales;
  return 1;
}
