/* Linear-layer entry of the CPU backend (see gemm.h).
 * Small n: pl_kern_matmul (bandwidth-bound streaming kernels, integer dots).
 * Large n (prefill): each pool thread takes a contiguous range of weight rows and walks it in
 * tiles: dequantize a tile of rows to f32 into its slice of `work`, then one single-threaded
 * cblas_sgemm  y[:, tile] = x . tile^T  (F32 weights skip the dequantization). OpenBLAS runs
 * with 1 thread: our pool is the only source of parallelism, so the two never fight over
 * the cores and dequantization overlaps across threads for free.
 * The crossover n per type was measured on the 2-core dev box (AVX-512, see min_n_for) and
 * can be overridden with PAGELLM_GEMM_MIN_N (0 = never use BLAS). */
#include "backend/cpu/gemm.h"

#include <cblas.h>
#include <stdint.h>
#include <stdlib.h>

#include "backend/cpu/kern/kern.h"

/* Floats of the shared dequantization buffer: GEMM_TILE_ROWS rows of the matrix, split
 * among the threads (each thread's tile = GEMM_TILE_ROWS / nth rows, at least 4). */
#define GEMM_TILE_ROWS 256

static int min_n_for(pl_dtype t) {
  static int env = -2;
  if (env == -2) {
    const char *e = getenv("PAGELLM_GEMM_MIN_N");
    env = e && *e ? atoi(e) : -1;
  }
  if (env >= 0)
    return env > 0 ? env : 1 << 30;
  /* Measured single-threaded, 1024x2048 weights, AVX-512 dev box (GFLOP/s kernel / BLAS):
   * F32 n=256 91/91, n=768 93/98, n=2048 93/97; F16 n=2048 108/94; Q4_K n=2048 109/92.
   * OpenBLAS (Debian 0.3.21) only wins for F32 at large n here. Machines with faster sgemm
   * (e.g. Intel AVX-512 kernels) may want lower values: PAGELLM_GEMM_MIN_N. */
  switch (t) {
  case PL_DT_F32: return 512;
  default: return 4096;
  }
}

static int use_blas(const pl_tensor *W, int n) { return n >= min_n_for(W->type); }

size_t pl_cpu_matmul_work_size(const pl_tensor *W, int n) {
  size_t k = pl_kern_matmul_work_size(W, n);
  if (!use_blas(W, n) || W->type == PL_DT_F32)
    return k;
  /* GEMM_TILE_ROWS rows of f32 + alignment pad of each thread's slice */
  size_t b = (size_t)GEMM_TILE_ROWS * ((size_t)W->ne[0] * sizeof(float) + 64);
  return b > k ? b : k;
}

typedef struct {
  float *y;
  const float *x;
  int n;
  const pl_tensor *W;
  float *buf; /* [GEMM_TILE_ROWS][cols] shared, split per thread */
  size_t wrb; /* bytes of a weight row */
} gemm_job;

static void gemm_task(void *p, int ith, int nth) {
  gemm_job *j = p;
  const pl_tensor *W = j->W;
  int64_t rows = W->ne[1], cols = W->ne[0];
  int64_t per = (rows + nth - 1) / nth;
  int64_t r0 = per * ith, r1 = r0 + per < rows ? r0 + per : rows;
  if (r0 >= r1)
    return;
  if (W->type == PL_DT_F32) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, j->n, (int)(r1 - r0), (int)cols, 1.0f, j->x,
                (int)cols, (const float *)W->data + r0 * cols, (int)cols, 0.0f, j->y + r0, (int)rows);
    return;
  }
  int64_t tr = GEMM_TILE_ROWS / nth; /* nth * tr <= GEMM_TILE_ROWS: slices fit `work` */
  if (tr > per)
    tr = per;
  /* this thread's slice, 64-byte aligned */
  size_t slice = ((size_t)tr * (size_t)cols * sizeof(float) + 63) & ~(size_t)63;
  float *buf = (float *)((char *)j->buf + slice * (size_t)ith);
  int mlx = W->type == PL_DT_MLX_Q4 || W->type == PL_DT_MLX_Q8;
  int64_t ng = mlx ? cols / W->group_size : 0;
  size_t sbb = W->sb_type == PL_DT_F32 ? 4 : 2;
  for (int64_t t0 = r0; t0 < r1; t0 += tr) {
    int64_t t1 = t0 + tr < r1 ? t0 + tr : r1;
    for (int64_t r = t0; r < t1; r++) {
      const uint8_t *row = (const uint8_t *)W->data + (size_t)r * j->wrb;
      float *out = buf + (r - t0) * cols;
      if (mlx)
        pl_dequant_row_mlx(W->type, row, (const uint8_t *)W->scales + (size_t)(r * ng) * sbb,
                           (const uint8_t *)W->biases + (size_t)(r * ng) * sbb, W->sb_type, W->group_size,
                           out, cols);
      else
        pl_dequant_row(W->type, row, out, cols);
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, j->n, (int)(t1 - t0), (int)cols, 1.0f, j->x,
                (int)cols, buf, (int)cols, 0.0f, j->y + t0, (int)rows);
  }
}

void pl_cpu_matmul(pl_threadpool *tp, float *y, const float *x, int n, const pl_tensor *W,
                   void *work) {
  if (!use_blas(W, n) || pl_threadpool_size(tp) > GEMM_TILE_ROWS) {
    pl_kern_matmul(tp, y, x, n, W, work);
    return;
  }
  static int blas_single;
  if (!blas_single) { /* once: OpenBLAS must not start its own threads */
    openblas_set_num_threads(1);
    blas_single = 1;
  }
  gemm_job j = {y, x, n, W, work, 0};
  int64_t cols = W->ne[0];
  j.wrb = W->type == PL_DT_MLX_Q4 ? (size_t)cols / 2
          : W->type == PL_DT_MLX_Q8 ? (size_t)cols
                                    : pl_dtype_row_bytes(W->type, cols);
  pl_threadpool_run(tp, gemm_task, &j);
}
