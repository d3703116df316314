/* pl_cpu_matmul (gemm.c): the OpenBLAS prefill path (dequantized weight tiles + sgemm) and
 * the switch to it, for every weight type and 1-3 threads, against a float64 reference with
 * the unquantized activations. PAGELLM_GEMM_MIN_N is set to 8 here so small matrices
 * exercise the BLAS path.
 * Threshold: |y - ref| <= 1e-5 * sum|w x| (sgemm accumulates in float32); below the switch
 * the integer kernels quantize x to 8 bits per block of 32, so the bound adds
 * sum |w| * amax_block/254 (half a quantization step per element) — which also checks that
 * the activation quantization error stays within its theoretical bound. BF16 kernels that
 * round x to bf16 (AVX512-BF16) add sum |w x| * 2^-9 likewise.
 * Skipped in the kernel-only cross build (no OpenBLAS there). */
#include <stdio.h>
#include <stdlib.h>

#include "../check.h"
#if !defined(PL_KERNELS_ONLY)
#include "backend/cpu/gemm.h"
#include "kt_common.h"
#include "util/alloc.h"

static void put_sb(void *p, pl_dtype t, int64_t i, float v) {
  if (t == PL_DT_F32)
    ((float *)p)[i] = v;
  else
    ((uint16_t *)p)[i] = t == PL_DT_F16 ? pl_f32_to_f16(v) : pl_f32_to_bf16(v);
}

static void run(pl_threadpool *tp, pl_dtype t, int64_t rows, int64_t cols, int n, kt_rng *rng) {
  int mlx = t == PL_DT_MLX_Q4 || t == PL_DT_MLX_Q8;
  int gs = 64;
  size_t rb = mlx ? (size_t)cols * (t == PL_DT_MLX_Q4 ? 4 : 8) / 8 : pl_dtype_row_bytes(t, cols);
  uint8_t *data = pl_malloc(rb * (size_t)rows);
  uint16_t *sc = pl_malloc(2 * (size_t)(rows * cols / gs)), *bi = pl_malloc(2 * (size_t)(rows * cols / gs));
  double *wd = pl_malloc(sizeof(double) * (size_t)(rows * cols));
  float *tmp = pl_malloc(sizeof(float) * (size_t)cols), *x = pl_malloc(sizeof(float) * (size_t)(n * cols));
  float *y = pl_malloc(sizeof(float) * (size_t)(n * rows));
  pl_tensor W;
  memset(&W, 0, sizeof W);
  W.type = t;
  W.n_dims = 2;
  W.ne[0] = cols;
  W.ne[1] = rows;
  W.ne[2] = W.ne[3] = 1;
  W.data = data;
  if (mlx) {
    for (int64_t i = 0; i < rows * cols / gs; i++) {
      put_sb(sc, PL_DT_F16, i, (float)(0.01 + 0.01 * kt_unif(rng)));
      put_sb(bi, PL_DT_F16, i, -0.08f);
    }
    for (size_t i = 0; i < rb * (size_t)rows; i++)
      data[i] = (uint8_t)kt_next(rng);
    W.scales = sc;
    W.biases = bi;
    W.sb_type = PL_DT_F16;
    W.group_size = gs;
    for (int64_t r = 0; r < rows; r++)
      kt_ref_dequant_mlx(t, data + rb * r, sc + r * (cols / gs), bi + r * (cols / gs), PL_DT_F16, gs,
                         wd + r * cols, cols);
  } else {
    for (int64_t r = 0; r < rows; r++) {
      for (int64_t c = 0; c < cols; c++)
        tmp[c] = kt_gauss(rng);
      pl_quant_row(t, tmp, data + rb * r, cols);
      kt_ref_dequant(t, data + rb * r, wd + r * cols, cols);
    }
  }
  for (int64_t i = 0; i < n * cols; i++)
    x[i] = kt_gauss(rng);
  void *work = pl_malloc(pl_cpu_matmul_work_size(&W, n));
  pl_cpu_matmul(tp, y, x, n, &W, work);
  int bad = 0;
  for (int j = 0; j < n; j++)
    for (int64_t r = 0; r < rows; r++) {
      double s = 0, a = 0, q = 0;
      for (int64_t c = 0; c < cols; c++) {
        s += wd[r * cols + c] * x[j * cols + c];
        a += fabs(wd[r * cols + c] * x[j * cols + c]);
        if (c % 32 == 0) { /* below the switch the kernels quantize x: |dx| <= amax/254 */
          double amax = 0;
          for (int k = 0; k < 32; k++)
            amax = fmax(amax, fabs(x[j * cols + c + k]));
          for (int k = 0; k < 32; k++)
            q += fabs(wd[r * cols + c + k]) * amax / 254.0 * 1.001;
        }
      }
      /* below the switch, BF16 kernels with bf16 activations: |dx| <= |x| * 2^-9 */
      double qb = n < 8 && pl_kern_matmul_x_bf16(t) ? a / 512.0 * 1.001 : 0;
      double tol = 1e-5 * a + (n < 8 && t != PL_DT_F32 && t != PL_DT_F16 && t != PL_DT_BF16 ? q : qb) + 1e-30;
      if (!(fabs(y[j * rows + r] - s) <= tol) && bad++ < 3)
        fprintf(stderr, "  %s rows=%lld cols=%lld n=%d j=%d r=%lld: %.8g vs %.8g\n", pl_dtype_name(t),
                (long long)rows, (long long)cols, n, j, (long long)r, y[j * rows + r], s);
    }
  CHECK(bad == 0, "%s rows=%lld cols=%lld n=%d threads=%d", pl_dtype_name(t), (long long)rows,
        (long long)cols, n, pl_threadpool_size(tp));
  pl_free(data);
  pl_free(sc);
  pl_free(bi);
  pl_free(wd);
  pl_free(tmp);
  pl_free(x);
  pl_free(y);
  pl_free(work);
}

int main(void) {
  setenv("PAGELLM_GEMM_MIN_N", "8", 1);
  kt_rng rng = {99};
  static const pl_dtype types[] = {PL_DT_F32, PL_DT_F16, PL_DT_BF16, PL_DT_Q8_0, PL_DT_Q4_0,
                                   PL_DT_Q4_K, PL_DT_Q6_K, PL_DT_MLX_Q4, PL_DT_MLX_Q8};
  for (int nt = 1; nt <= 3; nt++) {
    pl_threadpool *tp;
    if (pl_threadpool_create(nt, &tp) != 0)
      return 2;
    for (size_t t = 0; t < sizeof types / sizeof types[0]; t++) {
      run(tp, types[t], 37, 256, 3, &rng);   /* below the switch: SIMD kernels */
      run(tp, types[t], 37, 256, 8, &rng);   /* BLAS path, few rows */
      run(tp, types[t], 301, 512, 19, &rng); /* BLAS path, several tiles per thread */
    }
    pl_threadpool_destroy(tp);
  }
  CHECK(pl_alloc_live_bytes() == 0, "leak: %zu bytes", pl_alloc_live_bytes());
  return check_summary("test_gemm");
}
#else
int main(void) {
  printf("test_gemm: skipped (kernel-only build, no OpenBLAS)\n");
  return 0;
}
#endif
