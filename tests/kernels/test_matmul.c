/* pl_kern_matmul on every ISA the CPU has, every weight type, n = 1..70, odd shapes and
 * 1-3 threads, against a float64 reference.
 *
 * Reference: float weights -> sum of w*x in float64 with the unmodified f32 x. Quantized
 * weights -> float64 product of the DEQUANTIZED weights (decoded by kt_common.h, written
 * independently of src/) with the activations exactly as the kernel quantizes them
 * (pl_quant_x_scalar: blocks of 32, d = amax/127, q = nearbyint(x*127/amax)); the kernels
 * must reproduce those bits, so the only difference left is float32 rounding of block scales
 * and of the accumulation.
 * Threshold: |y - ref| <= 2e-6 * sqrt(cols/32 + 1) * sum_i |w_i x_i| + 1e-30: about 16x the
 * float32 epsilon per term, growing with the number of accumulated blocks. A wrong code, scale,
 * nibble order or dropped block moves y by at least one term, far above this.
 * Also checked: results are bit-identical for 1, 2 and 3 threads (the row split must not
 * change any row's arithmetic), and batch-invariant: each activation row's result in a batch
 * is bit-identical to that row multiplied alone (n = 1 takes the decode tiles, a batch the
 * batched ones: they must do the same arithmetic per row). */
#include <stdio.h>

#include "../check.h"
#include "backend/cpu/kern/kern_impl.h"
#include "kt_common.h"
#include "util/alloc.h"
#include "util/threadpool.h"

typedef struct {
  pl_dtype t;
  pl_dtype sbt; /* MLX scale type */
  int gs;       /* MLX group size */
} wtype;

static const wtype WT[] = {
    {PL_DT_F32, 0, 0},           {PL_DT_F16, 0, 0},          {PL_DT_BF16, 0, 0},
    {PL_DT_Q8_0, 0, 0},          {PL_DT_Q4_0, 0, 0},         {PL_DT_Q4_K, 0, 0},
    {PL_DT_Q6_K, 0, 0},          {PL_DT_MLX_Q4, PL_DT_F16, 64}, {PL_DT_MLX_Q8, PL_DT_BF16, 32},
    {PL_DT_MLX_Q4, PL_DT_F32, 32}, {PL_DT_MLX_Q8, PL_DT_F16, 128}, {PL_DT_MLX_Q4, PL_DT_BF16, 128},
};

typedef struct {
  pl_tensor W;
  uint8_t *data, *sc, *bi;
  double *wd; /* [rows][cols] dequantized */
} wmat;

static size_t sb_size(pl_dtype t) { return t == PL_DT_F32 ? 4 : 2; }

static void put_sb(void *p, pl_dtype t, int64_t i, float v) {
  if (t == PL_DT_F32)
    ((float *)p)[i] = v;
  else if (t == PL_DT_F16)
    ((uint16_t *)p)[i] = pl_f32_to_f16(v);
  else
    ((uint16_t *)p)[i] = pl_f32_to_bf16(v);
}

static int make_w(wmat *m, const wtype *wt, int64_t rows, int64_t cols, kt_rng *rng) {
  memset(m, 0, sizeof *m);
  pl_tensor *W = &m->W;
  snprintf(W->name, sizeof W->name, "w");
  W->type = wt->t;
  W->n_dims = 2;
  W->ne[0] = cols;
  W->ne[1] = rows;
  W->ne[2] = W->ne[3] = 1;
  int mlx = wt->t == PL_DT_MLX_Q4 || wt->t == PL_DT_MLX_Q8;
  size_t rb = mlx ? (size_t)cols * (wt->t == PL_DT_MLX_Q4 ? 4 : 8) / 8 : pl_dtype_row_bytes(wt->t, cols);
  m->data = pl_malloc(rb * (size_t)rows + 64);
  m->wd = pl_malloc(sizeof(double) * (size_t)(rows * cols));
  float *tmp = pl_malloc(sizeof(float) * (size_t)cols);
  if (!m->data || !m->wd || !tmp)
    return -1;
  if (mlx) {
    int64_t ng = cols / wt->gs;
    m->sc = pl_malloc(sb_size(wt->sbt) * (size_t)(rows * ng));
    m->bi = pl_malloc(sb_size(wt->sbt) * (size_t)(rows * ng));
    for (int64_t i = 0; i < rows * ng; i++) {
      put_sb(m->sc, wt->sbt, i, (float)(0.01 + 0.02 * kt_unif(rng)));
      put_sb(m->bi, wt->sbt, i, (float)(-0.1 + 0.05 * kt_gauss(rng)));
    }
    for (size_t i = 0; i < rb * (size_t)rows; i++)
      m->data[i] = (uint8_t)kt_next(rng);
    W->scales = m->sc;
    W->biases = m->bi;
    W->sb_type = wt->sbt;
    W->group_size = wt->gs;
    for (int64_t r = 0; r < rows; r++)
      kt_ref_dequant_mlx(wt->t, m->data + rb * r, m->sc + sb_size(wt->sbt) * r * ng,
                         m->bi + sb_size(wt->sbt) * r * ng, wt->sbt, wt->gs, m->wd + r * cols, cols);
  } else {
    for (int64_t r = 0; r < rows; r++) {
      for (int64_t c = 0; c < cols; c++)
        tmp[c] = kt_gauss(rng) * (float)(1 + (c % 7 == 0) * 3); /* some larger outliers */
      pl_quant_row(wt->t, tmp, m->data + rb * r, cols);
      kt_ref_dequant(wt->t, m->data + rb * r, m->wd + r * cols, cols);
    }
  }
  W->data = m->data;
  W->nbytes = rb * (size_t)rows;
  pl_free(tmp);
  return 0;
}

static void free_w(wmat *m) {
  pl_free(m->data);
  pl_free(m->wd);
  pl_free(m->sc);
  pl_free(m->bi);
}

/* The activations the kernel sees, as float64: quant 0 = as given, 1 = quantized to 8-bit
 * blocks, 2 = rounded to bf16 (round to nearest even; AVX512-BF16 kernels). */
static void act_ref(const float *x, int n, int64_t cols, int quant, double *xd) {
  if (quant != 1) {
    for (int64_t i = 0; i < n * cols; i++)
      xd[i] = quant == 2 ? pl_bf16_to_f32(pl_f32_to_bf16(x[i])) : x[i];
    return;
  }
  pl_qx_layout l = pl_qx_layout_for(cols);
  uint8_t *row = pl_malloc(l.stride);
  for (int j = 0; j < n; j++) {
    pl_quant_x_scalar(x + j * cols, cols, 0, row, &l);
    const int8_t *q = (const int8_t *)row;
    const float *d = (const float *)(row + l.off_d);
    for (int64_t i = 0; i < cols; i++)
      xd[j * cols + i] = (double)d[i / 32] * q[i];
  }
  pl_free(row);
}

static int is_float(pl_dtype t) { return t == PL_DT_F32 || t == PL_DT_F16 || t == PL_DT_BF16; }

static int run_case(const kt_isa *isas, int nisa, pl_threadpool **tps, const wtype *wt, int64_t rows,
                    int64_t cols, const int *ns, int nns, kt_rng *rng) {
  wmat m;
  if (make_w(&m, wt, rows, cols, rng) != 0) {
    CHECK(0, "alloc");
    return -1;
  }
  int nmax = 0;
  for (int k = 0; k < nns; k++)
    nmax = ns[k] > nmax ? ns[k] : nmax;
  float *x = pl_malloc(sizeof(float) * (size_t)(nmax * cols));
  double *xd = pl_malloc(sizeof(double) * (size_t)(nmax * cols));
  float *y = pl_malloc(sizeof(float) * (size_t)(nmax * rows));
  float *y1 = pl_malloc(sizeof(float) * (size_t)(nmax * rows));
  float *yone = pl_malloc(sizeof(float) * (size_t)(nmax * rows)); /* each row alone */
  /* [0]: the activations as given (or quantized); [1]: rounded to bf16 */
  double *refs[2] = {pl_malloc(sizeof(double) * (size_t)(nmax * rows)),
                     pl_malloc(sizeof(double) * (size_t)(nmax * rows))};
  double *mags[2] = {pl_malloc(sizeof(double) * (size_t)(nmax * rows)),
                     pl_malloc(sizeof(double) * (size_t)(nmax * rows))};
  void *work = pl_malloc(pl_kern_matmul_work_size(&m.W, nmax) + 64);
  for (int64_t i = 0; i < nmax * cols; i++)
    x[i] = kt_gauss(rng) * (i % 13 == 0 ? 4.0f : 1.0f);
  if (nmax > 1)
    for (int64_t i = 0; i < cols; i++) /* a zero row: amax = 0 must not produce NaN */
      x[(nmax - 1) * cols + i] = 0;
  for (int v = 0; v < (wt->t == PL_DT_BF16 ? 2 : 1); v++) {
    act_ref(x, nmax, cols, v ? 2 : !is_float(wt->t), xd);
    for (int j = 0; j < nmax; j++)
      for (int64_t r = 0; r < rows; r++) {
        double s = 0, a = 0;
        for (int64_t c = 0; c < cols; c++) {
          s += m.wd[r * cols + c] * xd[j * cols + c];
          a += fabs(m.wd[r * cols + c] * xd[j * cols + c]);
        }
        refs[v][j * rows + r] = s;
        mags[v][j * rows + r] = a;
      }
  }
  double tolk = 2e-6 * sqrt((double)cols / 32 + 1);
  int bad_total = 0;
  for (int ii = 0; ii < nisa; ii++) {
    kt_use(&isas[ii]);
    int xb = pl_kern_matmul_x_bf16(wt->t);
    const double *ref = refs[xb], *mag = mags[xb];
    for (int j = 0; j < nmax; j++)
      pl_kern_matmul(tps[0], yone + (size_t)j * rows, x + (size_t)j * cols, 1, &m.W, work);
    for (int k = 0; k < nns; k++) {
      int n = ns[k];
      /* activations at the tail of the buffer so the zero row is included when n is large */
      const float *xs = x + (size_t)(nmax - n) * cols;
      int off = nmax - n;
      for (int t = 0; t < 3; t++) {
        float *yy = t == 0 ? y1 : y;
        for (int64_t i = 0; i < n * rows; i++)
          yy[i] = NAN;
        pl_kern_matmul(tps[t], yy, xs, n, &m.W, work);
        if (t == 0) {
          int bad = 0;
          double worst = 0;
          for (int j = 0; j < n && bad < 3; j++)
            for (int64_t r = 0; r < rows; r++) {
              double e = fabs(y1[j * rows + r] - ref[(off + j) * rows + r]);
              double tol = tolk * mag[(off + j) * rows + r] + 1e-30;
              if (!(e <= tol)) {
                if (bad < 3)
                  fprintf(stderr, "  %s %s%s gs=%d rows=%lld cols=%lld n=%d j=%d r=%lld: y=%.9g ref=%.9g tol=%.3g\n",
                          isas[ii].name, pl_dtype_name(wt->t), wt->gs ? pl_dtype_name(wt->sbt) : "", wt->gs,
                          (long long)rows, (long long)cols, n, j, (long long)r, y1[j * rows + r],
                          ref[(off + j) * rows + r], tol);
                bad++;
              }
              worst = e / (tol > 0 ? tol : 1) > worst ? e / (tol > 0 ? tol : 1) : worst;
            }
          CHECK(bad == 0, "%s %s rows=%lld cols=%lld n=%d", isas[ii].name, pl_dtype_name(wt->t),
                (long long)rows, (long long)cols, n);
          bad_total += bad;
          CHECK(memcmp(y1, yone + (size_t)off * rows, sizeof(float) * (size_t)(n * rows)) == 0,
                "%s %s rows=%lld cols=%lld: a row in a batch of %d differs from the row alone", isas[ii].name,
                pl_dtype_name(wt->t), (long long)rows, (long long)cols, n);
        } else {
          CHECK(memcmp(y, y1, sizeof(float) * (size_t)(n * rows)) == 0,
                "%s %s: %d threads differ from 1 (n=%d)", isas[ii].name, pl_dtype_name(wt->t), t + 1, n);
        }
      }
    }
  }
  pl_free(x);
  pl_free(xd);
  pl_free(y);
  pl_free(y1);
  pl_free(yone);
  for (int v = 0; v < 2; v++) {
    pl_free(refs[v]);
    pl_free(mags[v]);
  }
  pl_free(work);
  free_w(&m);
  return bad_total;
}

int main(void) {
  kt_isa isas[8];
  int nisa = kt_isas(isas);
  printf("ISAs:");
  for (int i = 0; i < nisa; i++)
    printf(" %s", isas[i].name);
  printf("\n");
  pl_threadpool *tps[3] = {NULL, NULL, NULL};
  for (int t = 0; t < 3; t++)
    if (pl_threadpool_create(t + 1, &tps[t]) != 0)
      return 2;
  kt_rng rng = {12345};
  int all_n[70];
  for (int i = 0; i < 70; i++)
    all_n[i] = i + 1;
  const int few_n[] = {1, 2, 3, 4, 5, 7, 8, 9, 16, 33};
  for (size_t w = 0; w < sizeof WT / sizeof WT[0]; w++) {
    const wtype *wt = &WT[w];
    int bs = pl_dtype_block_size(wt->t);
    if (wt->gs)
      bs = wt->gs;
    if (bs == 1) { /* float weights: odd lengths exercise every tail path */
      const int64_t cols_list[] = {1, 7, 8, 15, 16, 17, 33, 100, 1000};
      for (size_t c = 0; c < sizeof cols_list / sizeof cols_list[0]; c++)
        run_case(isas, nisa, tps, wt, 5 + (int64_t)c % 3, cols_list[c], few_n, 10, &rng);
    } else if (bs == 32 || wt->gs) { /* odd block counts (1, 3, 9) and a larger one */
      const int64_t mult[] = {1, 3, 9, 64};
      for (size_t c = 0; c < 4; c++) {
        int64_t cols = mult[c] * bs;
        if (wt->gs && cols < 32)
          continue;
        run_case(isas, nisa, tps, wt, 3 + (int64_t)c * 2, cols, few_n, 10, &rng);
      }
    } else { /* K-quants: 1, 3 and 11 super-blocks */
      const int64_t mult[] = {1, 3, 11};
      for (size_t c = 0; c < 3; c++)
        run_case(isas, nisa, tps, wt, 3 + (int64_t)c * 2, mult[c] * 256, few_n, 10, &rng);
    }
    /* every n from 1 to 70 on one medium shape (tile edges: n % 4, n % 8) */
    int64_t cols = bs == 1 ? 77 : bs == 256 ? 512 : (bs < 64 ? 128 : bs * 2);
    run_case(isas, nisa, tps, wt, 37, cols, all_n, 70, &rng);
  }
  /* a larger matrix, every type, threads split rows unevenly */
  for (size_t w = 0; w < sizeof WT / sizeof WT[0]; w++) {
    const int ns[] = {1, 4, 64};
    run_case(isas, nisa, tps, &WT[w], 203, 2048, ns, 3, &rng);
  }
  /* wide rows and a batch larger than one activation block of the tiled loops (~384 KiB of
   * activations: 42 rows at 4096 columns), so the batch is walked in several x blocks */
  for (size_t w = 0; w < sizeof WT / sizeof WT[0]; w++) {
    const int ns[] = {1, 5, 100};
    run_case(isas, nisa, tps, &WT[w], 45, 4096, ns, 3, &rng);
  }
  /* the row-per-lane kernels (AVX-512 VNNI) take 16-row groups, 32-row tiles and K chunks
   * of 1024 weights: row counts at and past those edges, a ragged last chunk (1280 columns
   * of 32- and 256-blocks), decode and batched n */
  for (size_t w = 0; w < sizeof WT / sizeof WT[0]; w++) {
    if (WT[w].t != PL_DT_Q8_0 && WT[w].t != PL_DT_Q4_0 && WT[w].t != PL_DT_Q4_K && WT[w].t != PL_DT_Q6_K)
      continue;
    const int ns[] = {1, 2, 3, 4, 5, 6, 7, 13, 31};
    const int64_t rows_list[] = {16, 48, 81};
    for (size_t k = 0; k < 3; k++)
      run_case(isas, nisa, tps, &WT[w], rows_list[k], 1280, ns, 9, &rng);
  }
  for (int t = 0; t < 3; t++)
    pl_threadpool_destroy(tps[t]);
  return check_summary("test_matmul");
}
