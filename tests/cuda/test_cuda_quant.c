/* The CUDA weight decoders (src/backend/cuda/cu_quant.cu) against the CPU backend, for every
 * weight type: random weights are quantized on the host with the CPU's reference quantizers
 * (pl_quant_row; MLX codes, scales and biases are drawn directly), uploaded, and
 *   - pl_cu_get_rows must equal pl_dequant_row / pl_dequant_row_mlx of the same rows,
 *   - pl_cu_dequant must equal them rounded to bf16,
 *   - pl_cu_qgemv (n = 1..8) must equal a float64 dot product over the CPU-dequantized rows,
 *   - pl_cu_qgemm (n = 9, 64, 130; columns in one pass or in two halves) must equal one over
 *     those rows and x rounded to bf16,
 * each within the tolerance written beside its check. The shapes cover both GPU paths: the
 * 32-element unit decoders (cols % 32 == 0, 16-byte aligned data) and the per-element fallback
 * (odd float row lengths, misaligned tensor views, MLX groups smaller than 32, misaligned x),
 * partial column tiles (cols not a multiple of 1024) and row counts that are not a multiple of
 * the rows a qgemv CTA owns (4, 8 or 16: few rows and n <= 2 take the smaller CTAs). Q8_0 and
 * Q4_0 are checked twice: in the file's blocks and in planes (pl_cu_to_planes, the layout the
 * backend keeps them in). Without a GPU the test prints one line and exits 77 (skip). */
#include <cuda_runtime.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../check.h"
#include "../kernels/kt_common.h"
#include "backend/cuda/cu_quant.h"
#include "pagellm.h"

#define CU_OK(call)                                                                         \
  do {                                                                                      \
    cudaError_t cu_e_ = (call);                                                             \
    CHECK(cu_e_ == cudaSuccess, "%s", cudaGetErrorString(cu_e_));                           \
    if (cu_e_ != cudaSuccess)                                                               \
      return;                                                                               \
  } while (0)

typedef struct {
  pl_dtype t;
  int64_t rows, cols;
  int gs;          /* MLX group size */
  pl_dtype sbt;    /* MLX scales/biases type */
  size_t misalign; /* bytes between a 256-aligned device address and the tensor data */
} tcase;

static kt_rng rng = {0x5eed0cda};

static int is_mlx(pl_dtype t) { return t == PL_DT_MLX_Q4 || t == PL_DT_MLX_Q8; }

static float sb_host(const uint8_t *p, pl_dtype sbt, int64_t i) {
  if (sbt == PL_DT_F32) {
    float f;
    memcpy(&f, p + 4 * i, 4);
    return f;
  }
  uint16_t h;
  memcpy(&h, p + 2 * i, 2);
  return sbt == PL_DT_F16 ? pl_f16_to_f32(h) : pl_bf16_to_f32(h);
}

/* pl_cu_qgemm (the tensor-core GEMM for batches) against a float64 product of the CPU-decoded
 * weights and x, both rounded to bf16 on the host as the GPU rounds them: n = 9 (one partial
 * tile of x rows), 64 and 130 (three tiles, the last partial), with the columns in one pass and
 * split in two halves. */
static void check_qgemm(const pl_cu_weight *cw, const char *what, const float *ref) {
  if (!pl_cu_qgemm_supported(cw))
    return;
  const int64_t rows = cw->rows, cols = cw->cols;
  const int ns[] = {9, 64, 130};
  enum { NMAX = 130 };
  uint16_t *xb = malloc(sizeof(uint16_t) * (size_t)(NMAX * cols)), *dx = NULL;
  float *y = malloc(sizeof(float) * (size_t)(NMAX * rows)), *dy = NULL;
  float *wb = malloc(sizeof(float) * (size_t)(rows * cols));
  for (int64_t i = 0; i < rows * cols; i++)
    wb[i] = pl_bf16_to_f32(pl_f32_to_bf16(ref[i]));
  CU_OK(cudaMalloc((void **)&dx, sizeof(uint16_t) * (size_t)(NMAX * cols)));
  CU_OK(cudaMalloc((void **)&dy, sizeof(float) * (size_t)(NMAX * rows)));
  for (size_t k = 0; k < sizeof ns / sizeof *ns; k++)
    for (int split = 1; split <= 2; split++) {
      int n = ns[k];
      for (int64_t i = 0; i < n * cols; i++)
        xb[i] = pl_f32_to_bf16(kt_gauss(&rng));
      CU_OK(cudaMemcpy(dx, xb, sizeof(uint16_t) * (size_t)(n * cols), cudaMemcpyHostToDevice));
      CU_OK(cudaMemset(dy, 0xff, sizeof(float) * (size_t)(n * rows)));
      int rc = pl_cu_qgemm(cw, dx, n, dy, split, NULL);
      CHECK(rc == 0, "%s: qgemm n=%d split %d: %s", what, n, split, pl_last_error());
      CU_OK(cudaDeviceSynchronize());
      CU_OK(cudaMemcpy(y, dy, sizeof(float) * (size_t)(n * rows), cudaMemcpyDeviceToHost));
      int bad = 0;
      for (int j = 0; j < n; j++)
        for (int64_t r = 0; r < rows; r++) {
          double d = 0, a = 0, big = 0;
          for (int64_t c = 0; c < cols; c++) {
            double p = (double)wb[r * cols + c] * (double)pl_bf16_to_f32(xb[j * cols + c]);
            d += p;
            a += fabs(p);
            big = fmax(big, fabs(p));
          }
          /* products of bf16 values are exact in f32; the sums round at most cols times by
           * 2^-24 of sum|p| (+ slack). The GPU rounds its own f32 decode to bf16, which is
           * within DEC_TOL of the CPU's: where that straddles a rounding midpoint, a weight
           * lands one bf16 step (2^-8 relative) away; allow a few such terms. */
          double tol = (double)(cols + 8) * ldexp(1.0, -24) * a + 4 * ldexp(big, -8) + 1e-30;
          float g = y[j * rows + r];
          if (!(fabs(g - d) <= tol) && bad++ < 3)
            fprintf(stderr, "  qgemm %s n=%d split %d j %d row %lld: gpu %.9g ref %.9g tol %.3g\n",
                    what, n, split, j, (long long)r, g, d, tol);
        }
      CHECK(bad == 0, "%s: qgemm n=%d split %d: %d outputs off", what, n, split, bad);
    }
  cudaFree(dx);
  cudaFree(dy);
  free(xb), free(y), free(wb);
}

/* get_rows, dequant, qgemv and qgemm of the device weight cw against ref (the CPU's decode of every
 * row) and mag (per row: the largest term of an element's decode formula). */
static void check_weight(const pl_cu_weight *cw_, const char *what, const float *ref,
                         const double *mag) {
  const pl_cu_weight cw = *cw_;
  const int64_t rows = cw.rows, cols = cw.cols;
  /* The GPU decodes with the same f32 operations as the CPU, except that it may fuse a
   * multiply-add (Q4_K d*q - m, MLX s*q + b) where the CPU rounds twice, or the other way round:
   * each element may differ by an ulp or two of its largest term, bounded by
   * 1e-6 * (|ref| + mag) (2^-24 = 6e-8 per rounding, several roundings, with margin). */
#define DEC_TOL(ref, r) (1e-6 * (fabs(ref) + mag[r]))

  /* ---- get_rows: first, last, repeats, random ids ---- */
  enum { NIDS = 9 };
  int32_t ids[NIDS + 1];
  for (int i = 0; i < NIDS; i++)
    ids[i] = i == 0 ? 0 : i == 1 ? (int32_t)(rows - 1) : i == 2 ? ids[1] : (int32_t)(kt_next(&rng) % (uint64_t)rows);
  ids[NIDS] = (int32_t)rows; /* out of range: the row must come back as NaN, not as a read past the end */
  int32_t *dids = NULL;
  float *dout = NULL, *out = malloc(sizeof(float) * (size_t)((NIDS + 1) * cols));
  CU_OK(cudaMalloc((void **)&dids, sizeof ids));
  CU_OK(cudaMalloc((void **)&dout, sizeof(float) * (size_t)((NIDS + 1) * cols)));
  CU_OK(cudaMemcpy(dids, ids, sizeof ids, cudaMemcpyHostToDevice));
  int rc = pl_cu_get_rows(&cw, dids, NIDS + 1, dout, NULL);
  CHECK(rc == 0, "%s: get_rows: %s", what, pl_last_error());
  CU_OK(cudaDeviceSynchronize());
  CU_OK(cudaMemcpy(out, dout, sizeof(float) * (size_t)((NIDS + 1) * cols), cudaMemcpyDeviceToHost));
  int bad = 0, nan_ok = 1;
  for (int i = 0; i < NIDS; i++)
    for (int64_t c = 0; c < cols; c++) {
      float g = out[i * cols + c], f = ref[ids[i] * cols + c];
      if (!(fabs(g - f) <= DEC_TOL(f, ids[i])) && bad++ < 3)
        fprintf(stderr, "  get_rows %s id %d col %lld: gpu %.9g cpu %.9g\n", what, ids[i], (long long)c, g, f);
    }
  for (int64_t c = 0; c < cols; c++)
    nan_ok &= isnan(out[NIDS * cols + c]);
  CHECK(bad == 0, "%s: get_rows: %d elements differ from pl_dequant_row", what, bad);
  CHECK(nan_ok, "%s: get_rows with id = rows must give NaN", what);

  /* ---- dequant to bf16: all rows, then an inner range ---- */
  uint16_t *dq = NULL, *hq = malloc(sizeof(uint16_t) * (size_t)(rows * cols));
  CU_OK(cudaMalloc((void **)&dq, sizeof(uint16_t) * (size_t)(rows * cols)));
  for (int pass = 0; pass < 2; pass++) {
    int64_t row0 = pass == 0 ? 0 : 1, nr = pass == 0 ? rows : rows - 2;
    if (nr < 1)
      continue;
    CU_OK(cudaMemset(dq, 0xff, sizeof(uint16_t) * (size_t)(rows * cols)));
    rc = pl_cu_dequant(&cw, row0, nr, dq, NULL);
    CHECK(rc == 0, "%s: dequant: %s", what, pl_last_error());
    CU_OK(cudaDeviceSynchronize());
    CU_OK(cudaMemcpy(hq, dq, sizeof(uint16_t) * (size_t)(rows * cols), cudaMemcpyDeviceToHost));
    bad = 0;
    for (int64_t i = 0; i < nr; i++)
      for (int64_t c = 0; c < cols; c++) {
        float g = pl_bf16_to_f32(hq[i * cols + c]), f = ref[(row0 + i) * cols + c];
        /* bf16 keeps 8 significant bits; round-to-nearest-even of the GPU's f32 value is
         * within 2^-9 relative of it, which is itself within DEC_TOL of the CPU value:
         * 2^-8 relative (twice the rounding bound) plus DEC_TOL. */
        if (!(fabs(g - f) <= ldexp(fabs(f), -8) + DEC_TOL(f, row0 + i)) && bad++ < 3)
          fprintf(stderr, "  dequant %s row %lld col %lld: gpu %.9g cpu %.9g\n", what,
                  (long long)(row0 + i), (long long)c, g, f);
      }
    CHECK(bad == 0, "%s: dequant rows %lld..%lld: %d elements off", what, (long long)row0,
          (long long)(row0 + nr), bad);
    /* nothing past the range may be written */
    int untouched = 1;
    for (int64_t i = nr * cols; i < rows * cols; i++)
      untouched &= hq[i] == 0xffff;
    CHECK(untouched, "%s: dequant wrote past row %lld", what, (long long)nr);
  }

  /* ---- qgemv, n = 1..8 (and once with x misaligned by one float: the fallback path) ---- */
  float *x = malloc(sizeof(float) * (size_t)(PL_CU_GEMV_MAX_N * cols + 1));
  float *y = malloc(sizeof(float) * (size_t)(PL_CU_GEMV_MAX_N * rows));
  float *dx = NULL, *dy = NULL;
  CU_OK(cudaMalloc((void **)&dx, sizeof(float) * (size_t)(PL_CU_GEMV_MAX_N * cols + 1)));
  CU_OK(cudaMalloc((void **)&dy, sizeof(float) * (size_t)(PL_CU_GEMV_MAX_N * rows)));
  for (int n = 1; n <= PL_CU_GEMV_MAX_N + 1; n++) {
    int nx = n <= PL_CU_GEMV_MAX_N ? n : 3, xoff = n <= PL_CU_GEMV_MAX_N ? 0 : 1;
    for (int64_t i = 0; i < nx * cols; i++)
      x[i] = kt_gauss(&rng);
    CU_OK(cudaMemcpy(dx + xoff, x, sizeof(float) * (size_t)(nx * cols), cudaMemcpyHostToDevice));
    CU_OK(cudaMemset(dy, 0xff, sizeof(float) * (size_t)(nx * rows)));
    rc = pl_cu_qgemv(&cw, dx + xoff, nx, dy, NULL);
    CHECK(rc == 0, "%s: qgemv n=%d: %s", what, nx, pl_last_error());
    CU_OK(cudaDeviceSynchronize());
    CU_OK(cudaMemcpy(y, dy, sizeof(float) * (size_t)(nx * rows), cudaMemcpyDeviceToHost));
    bad = 0;
    for (int j = 0; j < nx; j++)
      for (int64_t r = 0; r < rows; r++) {
        double d = 0, a = 0;
        for (int64_t c = 0; c < cols; c++) {
          double p = (double)ref[r * cols + c] * (double)x[j * cols + c];
          d += p;
          a += fabs(p);
        }
        /* f32 accumulation: each lane sums about cols/32 products in sequence, then a 5-level
         * shuffle tree adds the 32 lanes: the error is at most (cols/32 + 5) roundings of
         * 2^-24 times sum|w*x| (+3 for the products and slack); the decoded weights themselves
         * differ from the CPU's by DEC_TOL, under 2e-6 relative of each term. */
        double tol = ((double)(cols / 32 + 8) * ldexp(1.0, -24) + 2e-6) * a + 1e-30;
        float g = y[j * rows + r];
        if (!(fabs(g - d) <= tol) && bad++ < 3)
          fprintf(stderr, "  qgemv %s n=%d x+%d j %d row %lld: gpu %.9g ref %.9g tol %.3g\n", what,
                  nx, xoff, j, (long long)r, g, d, tol);
      }
    CHECK(bad == 0, "%s: qgemv n=%d x+%d: %d outputs off", what, nx, xoff, bad);
  }

  cudaFree(dids);
  cudaFree(dout);
  cudaFree(dq);
  cudaFree(dx);
  cudaFree(dy);
  free(out), free(hq), free(x), free(y);
  check_qgemm(&cw, what, ref);
}

static void run_case(const tcase *tc) {
  const pl_dtype t = tc->t;
  const int64_t rows = tc->rows, cols = tc->cols;
  const int mlx = is_mlx(t);
  const size_t rb = mlx ? (size_t)(t == PL_DT_MLX_Q4 ? cols / 2 : cols) : pl_dtype_row_bytes(t, cols);
  const int64_t ng = mlx ? cols / tc->gs : 0;
  const size_t esz = tc->sbt == PL_DT_F32 ? 4 : 2, sbytes = (size_t)(rows * ng) * esz;
  char what[96];
  snprintf(what, sizeof what, "%s %lldx%lld gs %d sb %s +%zu", pl_dtype_name(t), (long long)rows,
           (long long)cols, tc->gs, mlx ? pl_dtype_name(tc->sbt) : "-", tc->misalign);

  /* host weights and the CPU reference decode */
  uint8_t *w = malloc(rows * rb), *sc = malloc(sbytes + 4), *bi = malloc(sbytes + 4);
  float *xr = malloc(sizeof(float) * (size_t)cols), *ref = malloc(sizeof(float) * (size_t)(rows * cols));
  double *mag = malloc(sizeof(double) * (size_t)rows);
  for (int64_t r = 0; r < rows; r++) {
    if (mlx) {
      for (size_t i = 0; i < rb; i++)
        w[r * rb + i] = (uint8_t)kt_next(&rng);
      for (int64_t g = 0; g < ng; g++) {
        float s = kt_gauss(&rng) * 0.01f, b = kt_gauss(&rng) * 0.1f;
        int64_t i = r * ng + g;
        if (tc->sbt == PL_DT_F32) {
          memcpy(sc + 4 * i, &s, 4);
          memcpy(bi + 4 * i, &b, 4);
        } else {
          uint16_t hs = tc->sbt == PL_DT_F16 ? pl_f32_to_f16(s) : pl_f32_to_bf16(s);
          uint16_t hb = tc->sbt == PL_DT_F16 ? pl_f32_to_f16(b) : pl_f32_to_bf16(b);
          memcpy(sc + 2 * i, &hs, 2);
          memcpy(bi + 2 * i, &hb, 2);
        }
      }
      pl_dequant_row_mlx(t, w + r * rb, sc + (size_t)(r * ng) * esz, bi + (size_t)(r * ng) * esz,
                         tc->sbt, tc->gs, ref + r * cols, cols);
    } else {
      for (int64_t c = 0; c < cols; c++) /* Gaussian with a few 8-sigma outliers */
        xr[c] = kt_gauss(&rng) * (c % 97 == 5 ? 8.0f : 1.0f);
      CHECK(pl_quant_row(t, xr, w + r * rb, cols) == rb, "%s: quantizer", what);
      pl_dequant_row(t, w + r * rb, ref + r * cols, cols);
    }
    /* mag: the largest magnitude a term of an element's decode formula can have in this row
     * (|d*q| and |m| of Q4_K, |s*q| and |b| of MLX are at most max|w| + max|bias|) */
    double m = 0;
    for (int64_t c = 0; c < cols; c++)
      m = fmax(m, fabs(ref[r * cols + c]));
    double mb = 0;
    for (int64_t g = 0; g < ng; g++)
      mb = fmax(mb, fabs(sb_host(bi, tc->sbt, r * ng + g)));
    mag[r] = m + mb;
  }

  /* device copies (data at the requested misalignment from a cudaMalloc'd base) */
  uint8_t *dbase = NULL, *dsc = NULL, *dbi = NULL;
  CU_OK(cudaMalloc((void **)&dbase, rows * rb + tc->misalign + 16));
  CU_OK(cudaMemcpy(dbase + tc->misalign, w, rows * rb, cudaMemcpyHostToDevice));
  if (mlx) {
    CU_OK(cudaMalloc((void **)&dsc, sbytes + 4));
    CU_OK(cudaMalloc((void **)&dbi, sbytes + 4));
    CU_OK(cudaMemcpy(dsc, sc, sbytes, cudaMemcpyHostToDevice));
    CU_OK(cudaMemcpy(dbi, bi, sbytes, cudaMemcpyHostToDevice));
  }
  pl_cu_weight cw = {.type = t, .rows = rows, .cols = cols, .data = dbase + tc->misalign,
                     .scales = dsc, .biases = dbi, .sb_type = tc->sbt, .group_size = tc->gs};

  check_weight(&cw, what, ref, mag);
  if (pl_cu_planar(t, cols)) { /* the same weight in planes, as the backend keeps it */
    size_t cb, pb;
    pl_cu_plane_bytes(&cw, &cb, &pb);
    void *codes = NULL, *scales = NULL;
    CU_OK(cudaMalloc(&codes, cb));
    CU_OK(cudaMalloc(&scales, pb));
    pl_cu_weight planes;
    int rc = pl_cu_to_planes(&cw, codes, scales, &planes, NULL);
    CHECK(rc == 1, "%s: to_planes gave %d: %s", what, rc, pl_last_error());
    CU_OK(cudaDeviceSynchronize());
    if (rc == 1) {
      char pw[112];
      snprintf(pw, sizeof pw, "%s planes", what);
      check_weight(&planes, pw, ref, mag);
    }
    cudaFree(codes);
    cudaFree(scales);
  }
  cudaFree(dbase);
  cudaFree(dsc);
  cudaFree(dbi);
  free(w), free(sc), free(bi), free(xr), free(ref), free(mag);
}

/* Bad arguments come back as statuses with messages, before any launch. */
static void bad_args(void) {
  void *d = NULL;
  CU_OK(cudaMalloc(&d, 1 << 16));
  pl_cu_weight w = {.type = (pl_dtype)3, .rows = 4, .cols = 256, .data = d};
  float *f = d;
  CHECK(pl_cu_qgemv(&w, f, 1, f, NULL) == PL_EUNSUPPORTED, "unknown type");
  w.type = PL_DT_Q4_K;
  w.cols = 300;
  CHECK(pl_cu_dequant(&w, 0, 1, d, NULL) == PL_EINVAL, "Q4_K row of 300");
  w.cols = 256;
  CHECK(pl_cu_qgemv(&w, f, 0, f, NULL) == PL_EINVAL, "n = 0");
  CHECK(pl_cu_qgemv(&w, f, PL_CU_GEMV_MAX_N + 1, f, NULL) == PL_EINVAL, "n too large");
  CHECK(pl_cu_dequant(&w, 3, 2, d, NULL) == PL_EINVAL, "rows past the end");
  w.type = PL_DT_MLX_Q4;
  w.scales = w.biases = d;
  w.sb_type = PL_DT_F16;
  w.group_size = 48;
  CHECK(pl_cu_get_rows(&w, d, 1, f, NULL) == PL_EINVAL, "group size not dividing cols");
  w.group_size = 64;
  w.sb_type = PL_DT_Q8_0;
  CHECK(pl_cu_get_rows(&w, d, 1, f, NULL) == PL_EUNSUPPORTED, "scales in Q8_0");
  pl_cu_weight q = {.type = PL_DT_Q8_0, .rows = 4, .cols = 256, .data = d}, planes;
  CHECK(pl_cu_to_planes(&q, (char *)d + 8, (char *)d + 8192, &planes, NULL) == PL_EINVAL,
        "misaligned plane buffer");
  q.type = PL_DT_Q4_K;
  CHECK(pl_cu_to_planes(&q, d, (char *)d + 8192, &planes, NULL) == 0, "Q4_K has no planes");
  CHECK(pl_cu_qgemm(&q, (const uint16_t *)d + 1, 9, f, 0, NULL) == PL_EUNSUPPORTED,
        "qgemm with misaligned x");
  CHECK(pl_cu_qgemm(&q, d, 9, f, 3, NULL) == PL_EINVAL, "qgemm split 3");
  q.type = PL_DT_F16;
  CHECK(!pl_cu_qgemm_supported(&q) && pl_cu_qgemm(&q, d, 9, f, 0, NULL) == PL_EUNSUPPORTED,
        "qgemm of F16 (cuBLAS runs those)");
  q.type = PL_DT_Q8_0;
  q.cols = 96; /* whole blocks, but not whole 64-column steps */
  CHECK(!pl_cu_qgemm_supported(&q), "qgemm of 96 columns");
  CU_OK(cudaDeviceSynchronize());
  cudaFree(d);
}

int main(void) {
  int ndev = 0;
  if (cudaGetDeviceCount(&ndev) != cudaSuccess || ndev == 0) {
    printf("test_cuda_quant: no GPU, skipped\n");
    return 77;
  }
  const tcase cases[] = {
      {PL_DT_F32, 67, 4096, 0, 0, 0},       {PL_DT_F32, 17, 300, 0, 0, 0},
      {PL_DT_F32, 5, 1056, 0, 0, 4},        {PL_DT_F16, 67, 2048, 0, 0, 0},
      {PL_DT_F16, 17, 301, 0, 0, 0},        {PL_DT_F16, 9, 1056, 0, 0, 2},
      {PL_DT_BF16, 33, 4096, 0, 0, 0},      {PL_DT_BF16, 3, 257, 0, 0, 0},
      {PL_DT_Q8_0, 67, 4096, 0, 0, 0},      {PL_DT_Q8_0, 17, 288, 0, 0, 0},
      {PL_DT_Q8_0, 9, 1056, 0, 0, 2},       {PL_DT_Q4_0, 67, 4096, 0, 0, 0},
      {PL_DT_Q4_0, 17, 288, 0, 0, 0},       {PL_DT_Q4_0, 9, 1056, 0, 0, 1},
      {PL_DT_Q4_K, 67, 4096, 0, 0, 0},      {PL_DT_Q4_K, 17, 256, 0, 0, 0},
      {PL_DT_Q4_K, 9, 1280, 0, 0, 2},       {PL_DT_Q6_K, 67, 4096, 0, 0, 0},
      {PL_DT_Q6_K, 17, 768, 0, 0, 0},       {PL_DT_Q6_K, 9, 1280, 0, 0, 2},
      {PL_DT_MLX_Q4, 67, 4096, 64, PL_DT_F16, 0},  {PL_DT_MLX_Q4, 17, 1056, 32, PL_DT_BF16, 0},
      {PL_DT_MLX_Q4, 9, 2048, 128, PL_DT_F32, 0},  {PL_DT_MLX_Q4, 5, 256, 16, PL_DT_F16, 0},
      {PL_DT_MLX_Q4, 5, 512, 64, PL_DT_BF16, 2},   {PL_DT_MLX_Q8, 67, 4096, 64, PL_DT_BF16, 0},
      {PL_DT_MLX_Q8, 17, 1152, 128, PL_DT_F16, 0}, {PL_DT_MLX_Q8, 9, 256, 32, PL_DT_F32, 0},
      {PL_DT_MLX_Q8, 5, 96, 16, PL_DT_F16, 0},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
    run_case(&cases[i]);
  bad_args();
  return check_summary("test_cuda_quant");
}
