/* The CUDA weight decoding and GEMV tile logic, run on the CPU: no GPU needed, so CI checks them
 * on every build that has nvcc (test_cuda_quant runs the kernels themselves, on a GPU). The
 * bodies in backend/cuda/cu_quant_unit.cuh are __host__ __device__; here they run as host code
 * against the CPU backend's reference decoders (pl_dequant_row, pl_dequant_row_mlx):
 *   - every 32-element unit decoder (Unit<T>) and the per-element decoder (elem_t), for each
 *     weight type, Q8_0/Q4_0 also split into planes (to_planes_block): each element within
 *     1e-6 of the CPU's (the same f32 operations, up to a fused multiply-add);
 *   - the GEMV of cu_quant.cu's k_qgemv for every (rows of x, rows per warp) pair it launches,
 *     lane by lane through lane_gemv (the kernel's own loop), against a float64 product, on a
 *     shape with a partial column tile and a partial group of rows. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../check.h"
#include "backend/cuda/cu_quant_unit.cuh"

static uint64_t rng_s = 0x5eedf00dull;
static uint64_t next() { /* splitmix64 */
  uint64_t z = (rng_s += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}
static float gauss() { /* Box-Muller */
  double u = (double)(next() >> 11) / 9007199254740992.0 + 1e-300;
  double v = (double)(next() >> 11) / 9007199254740992.0;
  return (float)(sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v));
}

/* A host weight of `type` (rows x cols of Gaussian values with outliers, quantized by the CPU)
 * and its CPU decode. MLX: random codes, f16 scales and biases, groups of 64. */
struct HostW {
  pl_dtype t;
  int64_t rows, cols;
  uint8_t *data = nullptr, *codes = nullptr;
  uint16_t *sb[2] = {nullptr, nullptr}, *pscales = nullptr;
  float *ref = nullptr;
  double *mag = nullptr; /* per row: the largest term of an element's decode formula */
  HostW(pl_dtype t_, int64_t r, int64_t c) : t(t_), rows(r), cols(c) {
    int mlx = t == PL_DT_MLX_Q4 || t == PL_DT_MLX_Q8;
    size_t rb = mlx ? (size_t)(t == PL_DT_MLX_Q4 ? c / 2 : c) : pl_dtype_row_bytes(t, c);
    data = (uint8_t *)aligned_alloc(64, rows * rb + 64);
    ref = (float *)malloc(sizeof(float) * rows * cols);
    mag = (double *)calloc(rows, sizeof(double));
    float *x = (float *)malloc(sizeof(float) * cols);
    int64_t ng = cols / 64;
    if (mlx)
      for (int k = 0; k < 2; k++)
        sb[k] = (uint16_t *)malloc(2 * rows * ng);
    for (int64_t r = 0; r < rows; r++) {
      if (mlx) {
        for (size_t i = 0; i < rb; i++)
          data[r * rb + i] = (uint8_t)next();
        for (int64_t g = 0; g < ng; g++) {
          sb[0][r * ng + g] = pl_f32_to_f16(gauss() * 0.01f);
          sb[1][r * ng + g] = pl_f32_to_f16(gauss() * 0.1f);
        }
        pl_dequant_row_mlx(t, data + r * rb, sb[0] + r * ng, sb[1] + r * ng, PL_DT_F16, 64,
                           ref + r * cols, cols);
      } else {
        for (int64_t c2 = 0; c2 < cols; c2++)
          x[c2] = gauss() * (c2 % 97 == 5 ? 8.0f : 1.0f);
        pl_quant_row(t, x, data + r * rb, cols);
        pl_dequant_row(t, data + r * rb, ref + r * cols, cols);
      }
      double mb = 0; /* |s*q| and |b| of MLX are at most max|w| + max|b| */
      for (int64_t c2 = 0; c2 < cols; c2++)
        mag[r] = fmax(mag[r], fabs(ref[r * cols + c2]));
      for (int64_t g = 0; mlx && g < ng; g++)
        mb = fmax(mb, fabs(pl_f16_to_f32(sb[1][r * ng + g])));
      mag[r] += mb;
    }
    free(x);
  }
  ~HostW() {
    free(data), free(codes), free(sb[0]), free(sb[1]), free(pscales), free(ref), free(mag);
  }
  pl_cu_weight view() const {
    pl_cu_weight w = {t, rows, cols, data};
    if (sb[0]) {
      w.scales = sb[0];
      w.biases = sb[1];
      w.sb_type = PL_DT_F16;
      w.group_size = 64;
    }
    return w;
  }
  /* the same weight in planes, as the backend keeps Q8_0/Q4_0 (k_to_planes, run here) */
  pl_cu_weight planes() {
    Wv v;
    pl_cu_weight w = view();
    make_view(&w, "test", &v);
    int64_t blocks = rows * (cols / 32);
    codes = (uint8_t *)aligned_alloc(64, (size_t)blocks * 32);
    pscales = (uint16_t *)malloc(2 * blocks);
    for (int64_t i = 0; i < blocks; i++)
      if (t == PL_DT_Q8_0)
        to_planes_block<PL_DT_Q8_0>(v, codes, pscales, i);
      else
        to_planes_block<PL_DT_Q4_0>(v, codes, pscales, i);
    w.data = codes;
    w.scales = pscales;
    return w;
  }
};

/* Unit and element decoders of kernel type T against the CPU's decode. */
template <int T> static void check_decode(const HostW &h, const pl_cu_weight &w, const char *what) {
  Wv v;
  CHECK(make_view(&w, "test", &v) == 0, "%s: %s", what, pl_last_error());
  CHECK(unit_ok(v, w.type, nullptr, 16), "%s: the unit decoders should take this shape", what);
  int bad = 0;
  for (int64_t r = 0; r < h.rows; r++)
    for (int64_t u = 0; u < h.cols / 32; u++) {
      Unit<T> un;
      un.load(v, r, u);
      float out[32];
      for (int k = 0; k < 4; k++)
        un.chunk(k, out + 8 * k);
      for (int e = 0; e < 32; e++) {
        int64_t c = 32 * u + e;
        double ref = h.ref[r * h.cols + c], tol = 1e-6 * (fabs(ref) + h.mag[r]);
        double el = elem_t<T>(v, r, c);
        if ((!(fabs(out[e] - ref) <= tol) || !(fabs(el - ref) <= tol)) && bad++ < 3)
          fprintf(stderr, "  %s row %lld col %lld: unit %.9g elem %.9g cpu %.9g\n", what,
                  (long long)r, (long long)c, out[e], el, ref);
      }
    }
  CHECK(bad == 0, "%s: %d decoded elements differ from the CPU", what, bad);
}

/* a CTA's staging of one x tile, done whole by the one host thread */
template <int NX> struct StageAll {
  float *xs;
  const float *x;
  int64_t cols;
  __host__ __device__ void operator()(int64_t t0) const { load_x_tile<NX>(xs, x, cols, t0, 0, 1); }
};

/* k_qgemv<T, NX, RPW> run lane by lane: each lane's sums over every tile (lane_gemv, staging
 * each tile of x with load_x_tile as the CTA would), added over the 32 lanes. */
template <int T, int NX, int RPW>
static void check_gemv(const HostW &h, const pl_cu_weight &w, const float *x, const char *what) {
  Wv v;
  make_view(&w, "test", &v);
  static float xs[8 * 32 * XPAD];
  int bad = 0;
  for (int64_t row0 = 0; row0 < v.rows; row0 += RPW) {
    double tot[RPW][NX] = {};
    for (int lane = 0; lane < 32; lane++) {
      float acc[RPW][NX] = {};
      lane_gemv<T, NX, RPW>(v, row0, lane, xs, StageAll<NX>{xs, x, v.cols}, acc);
      for (int rr = 0; rr < RPW; rr++)
        for (int j = 0; j < NX; j++)
          tot[rr][j] += acc[rr][j];
    }
    for (int rr = 0; rr < RPW && row0 + rr < v.rows; rr++)
      for (int j = 0; j < NX; j++) {
        int64_t r = row0 + rr;
        double d = 0, a = 0;
        for (int64_t c = 0; c < v.cols; c++) {
          double p = (double)h.ref[r * v.cols + c] * x[j * v.cols + c];
          d += p;
          a += fabs(p);
        }
        /* as test_cuda_quant: f32 sums of ~cols/32 terms per lane, decoded weights within
         * 2e-6 relative of the CPU's */
        double tol = ((double)(v.cols / 32 + 8) * ldexp(1.0, -24) + 2e-6) * a + 1e-30;
        if (!(fabs(tot[rr][j] - d) <= tol) && bad++ < 3)
          fprintf(stderr, "  gemv %s NX %d RPW %d row %lld j %d: %.9g vs %.9g (tol %.3g)\n",
                  what, NX, RPW, (long long)r, j, tot[rr][j], d, tol);
      }
  }
  CHECK(bad == 0, "%s: GEMV with %d rows of x, %d rows per warp: %d outputs off", what, NX, RPW,
        bad);
}

template <int T> static void check_gemvs(HostW &h, const pl_cu_weight &w, const char *what) {
  static float x[8 * 2560];
  for (int64_t i = 0; i < 8 * h.cols; i++)
    x[i] = gauss();
  /* every (n, RPW) that launch_gemv launches */
  check_gemv<T, 1, 1>(h, w, x, what);
  check_gemv<T, 1, 2>(h, w, x, what);
  check_gemv<T, 1, 4>(h, w, x, what);
  check_gemv<T, 2, 2>(h, w, x, what);
  check_gemv<T, 3, 4>(h, w, x, what);
  check_gemv<T, 8, 4>(h, w, x, what);
}

template <int T> static void check_type(HostW &h, const pl_cu_weight &w, const char *what) {
  check_decode<T>(h, w, what);
  check_gemvs<T>(h, w, what);
}

/* One weight of type t, checked in its own layout (kernel type T), then, for Q8_0/Q4_0, in
 * planes (kernel type P). 13 rows x 2560 columns: 2.5 column tiles, partial row groups. */
template <int T, int P = 0> static void run(pl_dtype t, const char *name) {
  HostW h(t, 13, 2560);
  check_type<T>(h, h.view(), name);
  if constexpr (P != 0) {
    char pn[64];
    snprintf(pn, sizeof pn, "%s planes", name);
    check_type<P>(h, h.planes(), pn);
    if constexpr (P == PLQ_Q8P) { /* the GEMV's split lanes (PAGELLM_CUDA_GEMV_SPLIT=1) */
      snprintf(pn, sizeof pn, "%s planes, split lanes", name);
      check_gemvs<PLQ_Q8PS>(h, h.planes(), pn);
    }
  }
}

int main(void) {
  run<PL_DT_Q8_0, PLQ_Q8P>(PL_DT_Q8_0, "Q8_0");
  run<PL_DT_Q4_0, PLQ_Q4P>(PL_DT_Q4_0, "Q4_0");
  run<PL_DT_Q4_K>(PL_DT_Q4_K, "Q4_K");
  run<PL_DT_Q6_K>(PL_DT_Q6_K, "Q6_K");
  run<PL_DT_MLX_Q4>(PL_DT_MLX_Q4, "MLX 4-bit");
  run<PL_DT_MLX_Q8>(PL_DT_MLX_Q8, "MLX 8-bit");
  run<PL_DT_BF16>(PL_DT_BF16, "BF16");
  run<PL_DT_F16>(PL_DT_F16, "F16");
  run<PL_DT_F32>(PL_DT_F32, "F32");
  return check_summary("test_cuda_decode_host");
}
