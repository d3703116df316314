/* Every op of the CUDA backend against the CPU backend, on the same random inputs, through the
 * op table only (backend.h): alloc/upload/download for activations, weight_upload for tensors,
 * kv_init, step_begin/step_end around each group of ops with a real pl_step_plan.
 *
 * How the tolerances are chosen. The CUDA backend keeps activations f32 between ops but casts
 * a matmul's input to the weight's type (bf16/f16; TF32 for f32 weights) and stores K/V as bf16
 * by default. Where the op allows it, the inputs are first rounded to bf16 (8 significant bits,
 * |x| >= 2^-10), which bf16, f16 and TF32 hold exactly: the GPU's casts are then lossless and the
 * two backends may differ only in the order of f32 operations. Those checks are tight (a
 * wrong index, block or layer is off by O(0.1) and is caught). Quantized weights cannot be made
 * exact that way (the CPU quantizes activations to 8 bits per block, the GPU dequantizes
 * weights to bf16 for prefill), so their bound is derived per output from the worst case of
 * both roundings; a relative RMS check beside it catches errors that hide under a loose bound.
 * The reasoning for each bound is written beside its check.
 *
 * Without a usable GPU it prints one line and exits 77 (CTest: skipped). */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"
#include "backend/cpu/kern/kern.h"
#include "backend/cuda/cu_quant.h"
#include "check.h"
#include "engine/sampler.h"
#include "util/error.h"

static pl_backend *cpu, *gpu;
/* PAGELLM_TEST_CUDA_DEVICE=cpu runs the whole comparison CPU against CPU: a check of this test
 * itself on a machine without a GPU (the CUDA-only checks are left out then) */
static int self_check;

/* ---- random data ------------------------------------------------------------------------- */
static uint64_t rng = 0x9E3779B97F4A7C15ull;
static double urand(void) { /* [0,1) */
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return (double)(rng >> 11) / 9007199254740992.0;
}
/* x in [-a, a], rounded to bf16 and kept away from f16's subnormals (|x| >= 2^-10), so that
 * bf16, f16 and TF32 represent it exactly */
static float rnd_exact(float a) {
  float x = (float)((2 * urand() - 1) * a);
  if (fabsf(x) < 0x1p-10f)
    x = x < 0 ? -0x1p-10f : 0x1p-10f;
  return pl_bf16_to_f32(pl_f32_to_bf16(x));
}
static float *rvec(size_t n, float a, int exact) {
  float *v = malloc(n * sizeof *v);
  for (size_t i = 0; i < n; i++)
    v[i] = exact ? rnd_exact(a) : (float)((2 * urand() - 1) * a);
  return v;
}

/* ---- backend memory ---------------------------------------------------------------------- */
static float *put(pl_backend *be, const float *h, size_t n) {
  float *d = be->ops->alloc(be, n * sizeof(float));
  CHECK(d != NULL, "%s: alloc %zu floats", be->ops->name, n);
  if (d && h)
    CHECK(be->ops->upload(be, d, h, n * sizeof(float)) == 0, "%s upload: %s", be->ops->name,
          pl_last_error());
  return d;
}
static float *get(pl_backend *be, const float *d, size_t n) {
  float *h = calloc(n, sizeof *h);
  CHECK(be->ops->download(be, h, d, n * sizeof(float)) == 0, "%s download: %s", be->ops->name,
        pl_last_error());
  return h;
}
/* the same host input in both backends */
typedef struct { float *c, *g; } pair;
static pair put2(const float *h, size_t n) { return (pair){put(cpu, h, n), put(gpu, h, n)}; }
static void free2(pair p) {
  cpu->ops->free(cpu, p.c);
  gpu->ops->free(gpu, p.g);
}

/* ---- comparison -------------------------------------------------------------------------- */
/* |got - ref| <= atol + rtol * |ref| everywhere, no NaN/Inf; reports the worst element */
static void cmp(const char *what, const float *got, const float *ref, size_t n, double atol,
                double rtol) {
  size_t worst = 0;
  double wexcess = -1, maxerr = 0;
  int bad = 0;
  for (size_t i = 0; i < n; i++) {
    double e = fabs((double)got[i] - ref[i]);
    if (!isfinite(got[i]) || !isfinite(ref[i]))
      e = INFINITY;
    double excess = e - (atol + rtol * fabs(ref[i]));
    if (excess > wexcess) {
      wexcess = excess;
      worst = i;
    }
    if (e > maxerr)
      maxerr = e;
    bad += excess > 0;
  }
  CHECK(bad == 0, "%s: %d of %zu elements off; worst [%zu] gpu %.9g cpu %.9g (atol %g rtol %g)",
        what, bad, n, worst, got[worst], ref[worst], atol, rtol);
}
/* the same with a bound per element */
static void cmp_bound(const char *what, const float *got, const float *ref, const double *tol,
                      size_t n) {
  int bad = 0;
  size_t worst = 0;
  double wr = 0;
  for (size_t i = 0; i < n; i++) {
    double e = fabs((double)got[i] - ref[i]);
    if (!isfinite(got[i]))
      e = INFINITY;
    if (e > tol[i])
      bad++;
    if (e / tol[i] > wr) {
      wr = e / tol[i];
      worst = i;
    }
  }
  CHECK(bad == 0, "%s: %d of %zu elements beyond their bound; worst [%zu] gpu %.9g cpu %.9g "
        "bound %.3g", what, bad, n, worst, got[worst], ref[worst], tol[worst]);
}
static double rel_rms(const float *got, const float *ref, size_t n) {
  double e = 0, r = 0;
  for (size_t i = 0; i < n; i++) {
    e += ((double)got[i] - ref[i]) * ((double)got[i] - ref[i]);
    r += (double)ref[i] * ref[i];
  }
  return sqrt(e / (r > 0 ? r : 1));
}

/* ---- steps ------------------------------------------------------------------------------- */
/* A plan of sequences, each with `cached` tokens already in the cache and `n_new` new ones,
 * over physical blocks taken from a shuffled free list (so block tables are not in order). */
#define MAXS 8
#define MAXB 48
typedef struct {
  int n_seqs, block_size;
  int cached[MAXS], n_new[MAXS];
  int32_t blocks[MAXS][MAXB];
} seqs;

typedef struct {
  pl_step_plan p;
  int32_t tok[512], pos[512], slot[512], qsl[MAXS + 1], lens[MAXS], bt[MAXS * MAXB], rows[MAXS],
      csrc[4], cdst[4];
} plan_buf;

static void make_plan(plan_buf *b, const seqs *s, int vocab) {
  memset(b, 0, sizeof *b);
  int t = 0;
  b->qsl[0] = 0;
  for (int i = 0; i < s->n_seqs; i++) {
    int len = s->cached[i] + s->n_new[i];
    for (int k = 0; k < s->n_new[i]; k++, t++) {
      int p = s->cached[i] + k;
      b->pos[t] = p;
      b->slot[t] = s->blocks[i][p / s->block_size] * s->block_size + p % s->block_size;
      b->tok[t] = (int32_t)(urand() * vocab);
    }
    b->qsl[i + 1] = t;
    b->lens[i] = len;
    b->rows[i] = t - 1;
    for (int j = 0; j < MAXB; j++)
      b->bt[i * MAXB + j] = j * s->block_size < len ? s->blocks[i][j] : 0;
  }
  b->p = (pl_step_plan){.block_size = s->block_size, .n_tokens = t, .n_seqs = s->n_seqs,
                        .max_blocks_per_seq = MAXB, .token_ids = b->tok, .positions = b->pos,
                        .slot_mapping = b->slot, .query_start_loc = b->qsl, .seq_lens = b->lens,
                        .block_tables = b->bt, .n_logits = s->n_seqs, .logits_rows = b->rows,
                        .n_copies = 0, .copy_src = b->csrc, .copy_dst = b->cdst};
}

static void begin2(const pl_step_plan *p) {
  CHECK(cpu->ops->step_begin(cpu, p) == 0, "cpu step_begin: %s", pl_last_error());
  CHECK(gpu->ops->step_begin(gpu, p) == 0, "cuda step_begin: %s", pl_last_error());
}
static void end2(const char *what) {
  CHECK(cpu->ops->step_end(cpu) == 0, "%s: cpu step_end: %s", what, pl_last_error());
  CHECK(gpu->ops->step_end(gpu) == 0, "%s: cuda step_end: %s", what, pl_last_error());
}
/* a one-sequence plan for the ops that read nothing of it (matmul, rmsnorm, ...) */
static plan_buf trivial;
static void begin_trivial(int n_tokens) {
  seqs s = {.n_seqs = 1, .block_size = 16, .cached = {0}, .n_new = {n_tokens > 256 ? 256 : n_tokens}};
  for (int j = 0; j < MAXB; j++)
    s.blocks[0][j] = 1 + j;
  make_plan(&trivial, &s, 1);
  begin2(&trivial.p);
}

/* ---- weights ----------------------------------------------------------------------------- */
typedef struct {
  pl_tensor c, g;     /* the CPU's and the GPU's view of the same bytes */
  void *data, *scales, *biases;
  float *deq;         /* [rows][cols] the exact values the bytes encode */
} weight;

static const pl_dtype all_types[] = {PL_DT_F32, PL_DT_F16, PL_DT_BF16, PL_DT_Q8_0, PL_DT_Q4_0,
                                     PL_DT_Q4_K, PL_DT_Q6_K, PL_DT_MLX_Q4, PL_DT_MLX_Q8};
#define N_TYPES (int)(sizeof all_types / sizeof *all_types)
static int is_float_type(pl_dtype t) { return t == PL_DT_F32 || t == PL_DT_F16 || t == PL_DT_BF16; }
static const char *tname(pl_dtype t) {
  return t == PL_DT_MLX_Q4 ? "mlx4" : t == PL_DT_MLX_Q8 ? "mlx8" : pl_dtype_name(t);
}

static void upload_weight(weight *w) {
  CHECK(cpu->ops->weight_upload(cpu, &w->c) == 0, "cpu weight_upload %s: %s", w->c.name,
        pl_last_error());
  CHECK(gpu->ops->weight_upload(gpu, &w->g) == 0, "cuda weight_upload %s: %s", w->g.name,
        pl_last_error());
}

/* W[rows][cols] of type t from random values (exact bf16 values for the float types) */
static weight make_weight(pl_dtype t, int rows, int cols, const char *name) {
  weight w = {0};
  pl_tensor *T = &w.c;
  snprintf(T->name, sizeof T->name, "%s.%s", name, tname(t));
  T->type = t;
  T->n_dims = 2;
  T->ne[0] = cols;
  T->ne[1] = rows;
  T->ne[2] = T->ne[3] = 1;
  w.deq = malloc((size_t)rows * cols * sizeof(float));
  if (t == PL_DT_MLX_Q4 || t == PL_DT_MLX_Q8) {
    int bits = t == PL_DT_MLX_Q4 ? 4 : 8, gs = 64, ng = cols / gs;
    size_t words = (size_t)rows * cols * bits / 32;
    uint32_t *q = malloc(words * 4);
    for (size_t i = 0; i < words; i++)
      q[i] = (uint32_t)(urand() * 4294967296.0);
    pl_dtype sbt = bits == 4 ? PL_DT_F16 : PL_DT_BF16; /* both half types of MLX files */
    uint16_t *sc = malloc((size_t)rows * ng * 2), *bi = malloc((size_t)rows * ng * 2);
    float qmax = (float)((1 << bits) - 1);
    for (size_t i = 0; i < (size_t)rows * ng; i++) {
      float s = (float)(0.5 + urand()) * 2.0f / qmax, b = -(float)(0.5 + urand());
      sc[i] = sbt == PL_DT_F16 ? pl_f32_to_f16(s) : pl_f32_to_bf16(s);
      bi[i] = sbt == PL_DT_F16 ? pl_f32_to_f16(b) : pl_f32_to_bf16(b);
    }
    T->data = w.data = q;
    T->nbytes = words * 4;
    T->scales = w.scales = sc;
    T->biases = w.biases = bi;
    T->sb_type = sbt;
    T->group_size = gs;
    for (int r = 0; r < rows; r++)
      pl_dequant_row_mlx(t, (const char *)q + (size_t)r * cols * bits / 8, sc + (size_t)r * ng,
                         bi + (size_t)r * ng, sbt, gs, w.deq + (size_t)r * cols, cols);
  } else {
    size_t rb = pl_dtype_row_bytes(t, cols);
    CHECK(rb > 0, "%s: %d columns do not fit its blocks", T->name, cols);
    w.data = malloc(rb * rows);
    float *src = rvec((size_t)cols, 1.0f, 1);
    for (int r = 0; r < rows; r++) {
      for (int c = 0; c < cols; c++)
        src[c] = rnd_exact(1.0f);
      pl_quant_row(t, src, (char *)w.data + rb * r, cols);
      pl_dequant_row(t, (char *)w.data + rb * r, w.deq + (size_t)r * cols, cols);
    }
    free(src);
    T->data = w.data;
    T->nbytes = rb * rows;
  }
  w.g = w.c; /* separate views: weight_upload sets each one's dev */
  upload_weight(&w);
  return w;
}
static weight make_vec(int n, const char *name, float lo, float hi) { /* F32 1-D (norms, biases) */
  weight w = {0};
  snprintf(w.c.name, sizeof w.c.name, "%s", name);
  w.c.type = PL_DT_F32;
  w.c.n_dims = 1;
  w.c.ne[0] = n;
  w.c.ne[1] = w.c.ne[2] = w.c.ne[3] = 1;
  float *v = malloc(n * sizeof *v);
  for (int i = 0; i < n; i++)
    v[i] = pl_bf16_to_f32(pl_f32_to_bf16((float)(lo + (hi - lo) * urand())));
  w.c.data = w.data = w.deq = v;
  w.c.nbytes = n * sizeof(float);
  w.g = w.c;
  upload_weight(&w);
  return w;
}
static void free_weight(weight *w) { /* backend copies go with the backends */
  if (w->deq != w->data)
    free(w->deq);
  free(w->data);
  free(w->scales);
  free(w->biases);
}

/* Per-element bounds on |GPU - CPU| for y[n][R] = x[n][C] · W^T (+ bias[R]). */
static double *matmul_tol(const weight *W, const float *bias, const float *x, int n, int R,
                          int C, pl_dtype t) {
  double *tol = malloc((size_t)n * R * sizeof *tol);
  for (int i = 0; i < n; i++) {
    double amax = 0;
    for (int c = 0; c < C; c++)
      amax = fmax(amax, fabs(x[(size_t)i * C + c]));
    for (int r = 0; r < R; r++) {
      double sabs = 0, swabs = 0; /* sum |w x|, sum |w| */
      for (int c = 0; c < C; c++) {
        double wv = W->deq[(size_t)r * C + c];
        sabs += fabs(wv * x[(size_t)i * C + c]);
        swabs += fabs(wv);
      }
      double tl;
      if (is_float_type(t))
        /* x and W are exact in bf16/f16/TF32 (and their products exact in f32), so both
         * sides sum the same exact products in f32, in different orders: each partial sum
         * rounds by <= 2^-24 relative, at most C of them (+ the bias add); x8 for tensor
         * cores that truncate partial sums instead of rounding and for split-K levels */
        tl = 8.0 * C * 0x1p-24 * (sabs + (bias ? fabs(bias[r]) : 0)) + 1e-6;
      else
        /* the CPU quantizes x to 8 bits per block (error <= amax/254 per element, on each
         * of C products: sum|w| * amax / 254); the GPU may do the same on its GEMV path and
         * casts x and dequantized W to bf16 (2^-9 relative each) on its GEMM path: twice
         * the 8-bit bound + 2^-8 * sum|w x|, plus f32 summation */
        tl = 2 * swabs * amax / 254.0 + 0x1p-8 * sabs + (double)C * 0x1p-23 * sabs + 1e-6;
      tol[(size_t)i * R + r] = tl;
    }
  }
  return tol;
}

/* ---- matmul ------------------------------------------------------------------------------ */
static void test_matmul(void) {
  const int R = 80, C = 512; /* C: a multiple of Q4_K/Q6_K's 256 and MLX's groups of 64 */
  const int ns[] = {1, 3, 8, 9, 64};
  for (int ti = 0; ti < N_TYPES; ti++) {
    pl_dtype t = all_types[ti];
    weight W = make_weight(t, R, C, "w");
    weight B = make_vec(R, "bias", -1, 1);
    for (size_t k = 0; k < sizeof ns / sizeof *ns; k++) {
      int n = ns[k];
      int with_bias = (k % 2) == 1; /* n = 3 and 9 with a bias, the others without */
      float *x = rvec((size_t)n * C, 1.0f, 1);
      pair X = put2(x, (size_t)n * C), Y = put2(NULL, (size_t)n * R);
      begin_trivial(n);
      CHECK(cpu->ops->matmul(cpu, Y.c, X.c, n, &W.c, with_bias ? &B.c : NULL) == 0, "cpu matmul");
      CHECK(gpu->ops->matmul(gpu, Y.g, X.g, n, &W.g, with_bias ? &B.g : NULL) == 0,
            "cuda matmul %s n=%d: %s", tname(t), n, pl_last_error());
      end2("matmul");
      float *yc = get(cpu, Y.c, (size_t)n * R), *yg = get(gpu, Y.g, (size_t)n * R);
      double *tol = matmul_tol(&W, with_bias ? B.deq : NULL, x, n, R, C, t);
      char what[96];
      snprintf(what, sizeof what, "matmul %s n=%d%s", tname(t), n, with_bias ? " +bias" : "");
      cmp_bound(what, yg, yc, tol, (size_t)n * R);
      if (!is_float_type(t)) {
        /* the errors above are random in sign: their RMS is ~1/sqrt(C) of the worst case; a
         * relative RMS of 1e-2 is ~5x what 8-bit activations give, far below a wrong row */
        double rr = rel_rms(yg, yc, (size_t)n * R);
        CHECK(rr < 1e-2, "%s: relative RMS error %.3g", what, rr);
      }
      free(tol);
      free(yc);
      free(yg);
      free(x);
      free2(X);
      free2(Y);
    }
    free_weight(&W);
    free_weight(&B);
  }
}

/* matmul_group: q/k/v-like and gate/up-like groups against the CPU's matmul of each weight.
 * The 16-bit groups must have been joined (one allocation, rows in order: the GPU runs them as
 * one GEMM and splits its output, adding biases); the others take the per-weight path. Row
 * counts not a multiple of 4 take the split's scalar path. */
static void test_matmul_group(void) {
  const int C = 256;
  const int shapes[][3] = {{64, 16, 16}, {40, 6, 10}, {48, 48, 0}};
  const pl_dtype types[] = {PL_DT_BF16, PL_DT_F16, PL_DT_Q8_0, PL_DT_F32};
  const int ns[] = {1, 9, 64};
  if (!gpu->ops->matmul_group || !gpu->ops->weight_join)
    return; /* the CPU compared with itself: it has neither op */
  for (size_t ti = 0; ti < sizeof types / sizeof *types; ti++) {
    pl_dtype t = types[ti];
    for (size_t si = 0; si < sizeof shapes / sizeof *shapes; si++) {
      int count = shapes[si][2] ? 3 : 2;
      weight W[3], B[3];
      pl_tensor *wg[3];
      const pl_tensor *wc[3], *wgc[3], *bc[3], *bg[3];
      for (int i = 0; i < count; i++) {
        W[i] = make_weight(t, shapes[si][i], C, "wgrp");
        B[i] = make_vec(shapes[si][i], "bgrp", -1, 1);
        wg[i] = &W[i].g;
        wc[i] = &W[i].c;
        wgc[i] = &W[i].g;
        int with_bias = count == 3 && i != 1; /* q and v with a bias, k without */
        bc[i] = with_bias ? &B[i].c : NULL;
        bg[i] = with_bias ? &B[i].g : NULL;
      }
      CHECK(gpu->ops->weight_join(gpu, wg, count) == 0, "weight_join: %s", pl_last_error());
      if (t == PL_DT_BF16 || t == PL_DT_F16) { /* pl_cu_weight leads the backend's record */
        const char *d0 = ((const pl_cu_weight *)W[0].g.dev)->data;
        size_t off = 0;
        for (int i = 0; i < count; i++) {
          CHECK((const char *)((const pl_cu_weight *)W[i].g.dev)->data == d0 + off, "%s group %d: weight %d not "
                "joined", tname(t), (int)si, i);
          off += W[i].g.nbytes;
        }
      }
      for (size_t k = 0; k < sizeof ns / sizeof *ns; k++) {
        int n = ns[k];
        float *x = rvec((size_t)n * C, 1.0f, 1);
        pair X = put2(x, (size_t)n * C), Y[3];
        float *yc[3], *yg[3];
        for (int i = 0; i < count; i++) {
          Y[i] = put2(NULL, (size_t)n * shapes[si][i]);
          yc[i] = Y[i].c;
          yg[i] = Y[i].g;
        }
        begin_trivial(n);
        for (int i = 0; i < count; i++)
          CHECK(cpu->ops->matmul(cpu, yc[i], X.c, n, wc[i], bc[i]) == 0, "cpu matmul");
        CHECK(gpu->ops->matmul_group(gpu, yg, X.g, n, wgc, bg, count) == 0,
              "cuda matmul_group %s n=%d: %s", tname(t), n, pl_last_error());
        end2("matmul_group");
        for (int i = 0; i < count; i++) {
          int R = shapes[si][i];
          float *hc = get(cpu, Y[i].c, (size_t)n * R), *hg = get(gpu, Y[i].g, (size_t)n * R);
          double *tol = matmul_tol(&W[i], bc[i] ? B[i].deq : NULL, x, n, R, C, t);
          char what[96];
          snprintf(what, sizeof what, "matmul_group %s %dx%d n=%d, output %d", tname(t),
                   R, C, n, i);
          cmp_bound(what, hg, hc, tol, (size_t)n * R);
          free(tol);
          free(hc);
          free(hg);
          free2(Y[i]);
        }
        free(x);
        free2(X);
      }
      for (int i = 0; i < count; i++) {
        free_weight(&W[i]);
        free_weight(&B[i]);
      }
    }
  }
}

/* --batch-invariant: a row's matmul result has the same bits whether it runs alone, in a slice
 * of 9 or among 37 rows (every weight type); without the flag cuBLAS may pick another
 * algorithm per row count, which is reported, not asserted. */
static int rows_differ(const float *a, const float *b, size_t n) {
  return memcmp(a, b, n * sizeof(float)) != 0;
}

static void test_matmul_invariant(void) {
  const int R = 80, C = 512, N = 37;
  const int starts[] = {0, 5, 17, 28}, lens[] = {1, 9, 1, 9};
  for (int ti = 0; ti < N_TYPES; ti++) {
    pl_dtype t = all_types[ti];
    weight W = make_weight(t, R, C, "w");
    float *x = rvec((size_t)N * C, 1.0f, 0);
    for (int inv = 1; inv >= 0; inv--) {
      gpu->batch_invariant = inv;
      float *X = put(gpu, x, (size_t)N * C), *Y = put(gpu, NULL, (size_t)N * R);
      begin_trivial(N);
      CHECK(gpu->ops->matmul(gpu, Y, X, N, &W.g, NULL) == 0, "matmul %s: %s", tname(t),
            pl_last_error());
      end2("matmul (all rows)");
      float *all = get(gpu, Y, (size_t)N * R);
      int differ = 0;
      for (size_t k = 0; k < sizeof starts / sizeof *starts; k++) {
        int j = starts[k], n = lens[k];
        float *Xs = put(gpu, x + (size_t)j * C, (size_t)n * C), *Ys = put(gpu, NULL, (size_t)n * R);
        begin_trivial(n);
        CHECK(gpu->ops->matmul(gpu, Ys, Xs, n, &W.g, NULL) == 0, "matmul slice: %s",
              pl_last_error());
        end2("matmul (slice)");
        float *part = get(gpu, Ys, (size_t)n * R);
        differ += rows_differ(part, all + (size_t)j * R, (size_t)n * R);
        free(part);
        gpu->ops->free(gpu, Xs);
        gpu->ops->free(gpu, Ys);
      }
      if (inv)
        CHECK(differ == 0, "batch-invariant matmul %s: %d of 4 slices differ from the same rows "
              "among %d", tname(t), differ, N);
      else
        printf("default matmul %s: %d of 4 slices differ in bits from the same rows among %d\n",
               tname(t), differ, N);
      free(all);
      gpu->ops->free(gpu, X);
      gpu->ops->free(gpu, Y);
    }
    free(x);
    free_weight(&W);
  }
  gpu->batch_invariant = 0;
}

/* ---- sampling reduction ------------------------------------------------------------------ */
/* The GPU's sample_reduce against pl_logit_edits_apply + pl_row_reduce_ref
 * (engine/sampler_reduced.c) on rows that are peaked, flat, tied at the PL_TOPK boundary, or
 * shorter than PL_TOPK, two of them with edits (bias, masks, penalties): the edits are the same
 * f32 operations in the same order on both sides, so they must agree bit for bit. Candidates, their values
 * and the draw must be identical: s = x * inv_temp is one f32 product on both sides; the sums
 * use expf (CUDA's differs from glibc's by <= 2 ulp per term) and add in another order, so z is
 * compared to 1e-6 relative and the raw log-sum-exp (float64 exp on both) to 1e-9. */
static void test_sample_reduce(void) {
  const int vocabs[] = {100, 1000, 32000, 128256};
  const float temps[] = {0.0f, 1.0f, 0.7f, 1.3f};
  for (size_t vi = 0; vi < sizeof vocabs / sizeof *vocabs; vi++) {
    const int V = vocabs[vi], n = 6;
    float *x = malloc((size_t)n * V * sizeof(float));
    for (int i = 0; i < n; i++)
      for (int j = 0; j < V; j++) {
        float g = (float)(urand() * 2 - 1);
        int kind = i % 3;
        x[(size_t)i * V + j] = kind == 0 ? 6 * g : kind == 1 ? 0.05f * g : floorf(4 * g) * 0.5f;
      }
    x[3] = -0.0f; /* -0 and +0 are one value to the sort */
    x[4] = 0.0f;
    /* edits (logit bias, masks, penalties) on rows 1 and 4; ids 37k mod V are distinct for
     * k < 64 at every V here */
    pl_logit_edit ed[64];
    int ne = 0;
    for (int k = 0; k < 64; k++) {
      int row = k < 40 ? 1 : 4;
      ed[ne++] = (pl_logit_edit){.row = row, .id = (k * 37) % V, .bias = k % 5 ? 0.0f : 2.5f,
                                 .rep = k % 3 ? 1.3f : 1.0f, .freq = 0.3f, .pres = 0.2f,
                                 .count = k % 4, .mask = k % 11 == 0};
    }
    float *xp = malloc((size_t)n * V * sizeof(float));
    memcpy(xp, x, (size_t)n * V * sizeof(float));
    pl_logit_edits_apply(xp, x, ed, ne, V);
    pl_row_reduce *got = calloc((size_t)n, sizeof *got), *ref = calloc((size_t)n, sizeof *ref);
    for (int i = 0; i < n; i++) {
      float t = temps[i % 4];
      got[i].inv_temp = t > 0 ? 1.0f / t : 1.0f;
      got[i].u = i == 5 ? -1.0 : urand();
      ref[i] = got[i];
      pl_row_reduce_ref(xp + (size_t)i * V, x + (size_t)i * V, V, &ref[i]);
    }
    float *X = put(gpu, x, (size_t)n * V);
    CHECK(gpu->ops->sample_reduce(gpu, got, X, n, V, ed, ne) == 0, "sample_reduce V=%d: %s", V,
          pl_last_error());
    float *xback = get(gpu, X, (size_t)n * V);
    CHECK(!rows_differ(xback, x, (size_t)n * V), "sample_reduce must not change the logits");
    free(xback);
    free(xp);
    for (int i = 0; i < n; i++) {
      const pl_row_reduce *g = &got[i], *r = &ref[i];
      CHECK(g->n_top == r->n_top, "V=%d row %d: n_top %d vs %d", V, i, g->n_top, r->n_top);
      CHECK(g->n_finite == r->n_finite, "V=%d row %d: n_finite %d vs %d", V, i, g->n_finite,
            r->n_finite);
      int bad = -1;
      for (int k = 0; k < r->n_top && bad < 0; k++)
        if (g->top_id[k] != r->top_id[k] || rows_differ(&g->top_s[k], &r->top_s[k], 1) ||
            rows_differ(&g->top_raw[k], &r->top_raw[k], 1))
          bad = k;
      CHECK(bad < 0, "V=%d row %d: candidate %d is id %d (s %.9g), reference id %d (s %.9g)", V,
            i, bad, bad < 0 ? 0 : g->top_id[bad], bad < 0 ? 0 : g->top_s[bad],
            bad < 0 ? 0 : r->top_id[bad], bad < 0 ? 0 : r->top_s[bad]);
      CHECK(g->drawn == r->drawn, "V=%d row %d: drawn %d vs %d", V, i, g->drawn, r->drawn);
      CHECK(fabs(g->z - r->z) <= 1e-6 * r->z, "V=%d row %d: z %.12g vs %.12g", V, i, g->z, r->z);
      CHECK_NEAR(g->lse_raw, r->lse_raw, 1e-9);
    }
    gpu->ops->free(gpu, X);
    free(x);
    free(got);
    free(ref);
  }
}

/* ---- embed ------------------------------------------------------------------------------- */
static void test_embed(void) {
  const int V = 300, D = 256;
  for (int ti = 0; ti < N_TYPES; ti++) {
    pl_dtype t = all_types[ti];
    weight E = make_weight(t, V, D, "embd");
    seqs s = {.n_seqs = 2, .block_size = 16, .cached = {0, 0}, .n_new = {7, 12}};
    for (int j = 0; j < MAXB; j++)
      s.blocks[0][j] = 1 + j, s.blocks[1][j] = 20 + j;
    plan_buf pb;
    make_plan(&pb, &s, V);
    int n = pb.p.n_tokens;
    pb.tok[0] = 0; /* the first and last rows of the table too */
    pb.tok[n - 1] = V - 1;
    pair X = put2(NULL, (size_t)n * D);
    begin2(&pb.p);
    CHECK(cpu->ops->embed(cpu, X.c, &E.c) == 0, "cpu embed");
    CHECK(gpu->ops->embed(gpu, X.g, &E.g) == 0, "cuda embed %s: %s", tname(t), pl_last_error());
    end2("embed");
    float *xc = get(cpu, X.c, (size_t)n * D), *xg = get(gpu, X.g, (size_t)n * D);
    char what[64];
    snprintf(what, sizeof what, "embed %s", tname(t));
    /* a row is dequantized, not computed: scale * q (+ min) in f32 on both sides; an FMA on one
     * side and not the other differs by at most one rounding, 2^-23 relative of the terms */
    cmp(what, xg, xc, (size_t)n * D, 1e-6, 0x1p-21);
    /* and the values are the table's: the CPU against the dequantized rows */
    float *ref = malloc((size_t)n * D * sizeof *ref);
    for (int i = 0; i < n; i++)
      memcpy(ref + (size_t)i * D, E.deq + (size_t)pb.tok[i] * D, D * sizeof(float));
    snprintf(what, sizeof what, "embed %s (cpu vs table)", tname(t));
    cmp(what, xc, ref, (size_t)n * D, 1e-6, 0x1p-21);
    free(ref);
    free(xc);
    free(xg);
    free2(X);
    free_weight(&E);
  }
}

/* ---- elementwise ops --------------------------------------------------------------------- */
static void test_elementwise(void) {
  const int n = 9, d = 384;
  size_t N = (size_t)n * d;
  float *x = rvec(N, 3.0f, 0), *u = rvec(N, 3.0f, 0);
  weight w = make_vec(d, "norm", 0.5f, 1.5f);
  pair X = put2(x, N), U = put2(u, N), Y = put2(NULL, N), Z = put2(x, N);
  begin_trivial(n);
  CHECK(cpu->ops->rmsnorm(cpu, Y.c, X.c, &w.c, n, d, 1e-5f) == 0, "cpu rmsnorm");
  CHECK(gpu->ops->rmsnorm(gpu, Y.g, X.g, &w.g, n, d, 1e-5f) == 0, "cuda rmsnorm: %s",
        pl_last_error());
  /* in place (y aliases x), as the runner does for q_norm/k_norm */
  CHECK(cpu->ops->rmsnorm(cpu, Z.c, Z.c, &w.c, n * 3, d / 3, 1e-6f) == 0, "cpu rmsnorm in place");
  CHECK(gpu->ops->rmsnorm(gpu, Z.g, Z.g, &w.g, n * 3, d / 3, 1e-6f) == 0, "cuda rmsnorm in place");
  end2("rmsnorm");
  float *a = get(cpu, Y.c, N), *b = get(gpu, Y.g, N);
  /* f32 throughout: the sum of squares of d positive terms in another order (<= d * 2^-24
   * relative, 2.3e-5 for d = 384, halved by the sqrt), rsqrt within 2 ulp, two multiplies:
   * 2e-5 relative */
  cmp("rmsnorm", b, a, N, 1e-6, 2e-5);
  free(a);
  free(b);
  a = get(cpu, Z.c, N);
  b = get(gpu, Z.g, N);
  cmp("rmsnorm in place, rows of d/3", b, a, N, 1e-6, 2e-5);
  free(a);
  free(b);

  begin_trivial(n);
  CHECK(cpu->ops->swiglu(cpu, Y.c, X.c, U.c, N) == 0, "cpu swiglu");
  CHECK(gpu->ops->swiglu(gpu, Y.g, X.g, U.g, N) == 0, "cuda swiglu: %s", pl_last_error());
  end2("swiglu");
  a = get(cpu, Y.c, N);
  b = get(gpu, Y.g, N);
  /* silu(g) = g / (1 + exp(-g)): expf vs the GPU's exp differ by a few ulp; |g| <= 3 keeps
   * 1 + exp(-g) well conditioned: 1e-5 relative (+ 1e-6 for results near 0) */
  cmp("swiglu", b, a, N, 1e-6, 1e-5);
  free(a);
  free(b);

  pair P = put2(x, N);
  begin_trivial(n);
  CHECK(cpu->ops->add(cpu, P.c, U.c, N) == 0, "cpu add");
  CHECK(gpu->ops->add(gpu, P.g, U.g, N) == 0, "cuda add: %s", pl_last_error());
  end2("add");
  a = get(cpu, P.c, N);
  b = get(gpu, P.g, N);
  cmp("add", b, a, N, 0, 0); /* one IEEE f32 addition of the same operands: bit-exact */
  free(a);
  free(b);
  free2(P);
  free2(X);
  free2(U);
  free2(Y);
  free2(Z);
  free(x);
  free(u);
  free_weight(&w);

  /* get_rows: dst[i] = src[logits_rows[i]], over a plan of 3 sequences */
  seqs s = {.n_seqs = 3, .block_size = 16, .cached = {0, 0, 0}, .n_new = {5, 1, 9}};
  for (int i = 0; i < 3; i++)
    for (int j = 0; j < MAXB; j++)
      s.blocks[i][j] = 1 + i * MAXB + j;
  plan_buf pb;
  make_plan(&pb, &s, 10);
  pb.rows[0] = 2; /* not only last tokens */
  int nt = pb.p.n_tokens;
  float *src = rvec((size_t)nt * d, 1.0f, 0);
  pair S = put2(src, (size_t)nt * d), D2 = put2(NULL, (size_t)3 * d);
  begin2(&pb.p);
  CHECK(cpu->ops->get_rows(cpu, D2.c, S.c, d) == 0, "cpu get_rows");
  CHECK(gpu->ops->get_rows(gpu, D2.g, S.g, d) == 0, "cuda get_rows: %s", pl_last_error());
  end2("get_rows");
  a = get(cpu, D2.c, (size_t)3 * d);
  b = get(gpu, D2.g, (size_t)3 * d);
  cmp("get_rows", b, a, (size_t)3 * d, 0, 0); /* a copy: bit-exact */
  cmp("get_rows (cpu vs src)", a, src + (size_t)2 * d, d, 0, 0);
  free(a);
  free(b);
  free(src);
  free2(S);
  free2(D2);
}

/* ---- rope -------------------------------------------------------------------------------- */
static void test_rope(void) {
  struct { int head_dim, rope_dim, neox, n_heads; } cfg[] = {
      {64, 64, 1, 4}, {64, 64, 0, 4}, {128, 64, 1, 3}, {128, 32, 0, 2}, {128, 128, 1, 8}};
  const int n = 9;
  for (size_t k = 0; k < sizeof cfg / sizeof *cfg; k++) {
    int hd = cfg[k].head_dim, rd = cfg[k].rope_dim, nh = cfg[k].n_heads;
    size_t N = (size_t)n * nh * hd;
    float *x = rvec(N, 2.0f, 0);
    float *cs = malloc((size_t)n * rd * sizeof *cs);
    for (int t = 0; t < n; t++)
      for (int i = 0; i < rd / 2; i++) {
        double th = (t * 37 + 5) * pow(10000.0, -2.0 * i / rd);
        cs[(size_t)t * rd + i] = (float)cos(th);
        cs[(size_t)t * rd + rd / 2 + i] = (float)sin(th);
      }
    pair X = put2(x, N), CS = put2(cs, (size_t)n * rd);
    pl_rope_spec rs = {hd, rd, cfg[k].neox};
    begin_trivial(n);
    CHECK(cpu->ops->rope(cpu, X.c, CS.c, n, nh, &rs) == 0, "cpu rope");
    CHECK(gpu->ops->rope(gpu, X.g, CS.g, n, nh, &rs) == 0, "cuda rope: %s", pl_last_error());
    end2("rope");
    float *a = get(cpu, X.c, N), *b = get(gpu, X.g, N);
    char what[96];
    snprintf(what, sizeof what, "rope head_dim %d rope_dim %d %s", hd, rd,
             cfg[k].neox ? "neox" : "interleaved");
    /* x*cos - y*sin with the same f32 cos/sin: two products and a difference, an FMA or not:
     * <= 2 roundings of |x|+|y| <= 4, i.e. 4 * 2^-23 ~ 5e-7; dims past rope_dim are copied */
    cmp(what, b, a, N, 2e-6, 0);
    /* the dims past rope_dim are untouched */
    int same = 1;
    for (int t = 0; t < n * nh; t++)
      for (int i = rd; i < hd; i++)
        same &= b[(size_t)t * hd + i] == x[(size_t)t * hd + i];
    CHECK(same, "%s: dims past rope_dim changed", what);
    free(a);
    free(b);
    free(x);
    free(cs);
    free2(X);
    free2(CS);
  }
}

/* ---- KV cache and attention -------------------------------------------------------------- */
/* One attention configuration: steps A (context), B (decodes + prefill chunks, one of them
 * with cached context, one fresh), C (copy-on-write then a fork reading the copy). Each step
 * writes K/V of both layers (different data) and attends on both, so a layer offset error
 * shows. Both backends get the same exact-bf16 q/k/v. */
typedef struct {
  int head_dim, n_kv, gqa;
  pl_dtype kv_dtype; /* on the GPU; the CPU's is f32 */
} attn_cfg;

static void attn_step(const attn_cfg *c, plan_buf *pb, const char *step) {
  int hd = c->head_dim, nkv = c->n_kv, nh = nkv * c->gqa, n = pb->p.n_tokens;
  size_t NQ = (size_t)n * nh * hd, NK = (size_t)n * nkv * hd;
  float scale = 1.0f / sqrtf((float)hd);
  begin2(&pb->p);
  if (pb->p.n_copies) {
    CHECK(cpu->ops->copy_blocks(cpu) == 0, "cpu copy_blocks");
    CHECK(gpu->ops->copy_blocks(gpu) == 0, "cuda copy_blocks: %s", pl_last_error());
  }
  pair O[2], Q[2], K[2], V[2];
  for (int l = 0; l < 2; l++) {
    float *q = rvec(NQ, 1.0f, 1), *k = rvec(NK, 1.0f, 1), *v = rvec(NK, 1.0f, 1);
    Q[l] = put2(q, NQ);
    K[l] = put2(k, NK);
    V[l] = put2(v, NK);
    O[l] = put2(NULL, NQ);
    free(q);
    free(k);
    free(v);
    CHECK(cpu->ops->kv_write(cpu, l, K[l].c, V[l].c) == 0, "cpu kv_write");
    CHECK(gpu->ops->kv_write(gpu, l, K[l].g, V[l].g) == 0, "cuda kv_write: %s", pl_last_error());
  }
  for (int l = 0; l < 2; l++) {
    CHECK(cpu->ops->attention(cpu, l, O[l].c, Q[l].c, nh, scale) == 0, "cpu attention");
    CHECK(gpu->ops->attention(gpu, l, O[l].g, Q[l].g, nh, scale) == 0, "cuda attention: %s",
          pl_last_error());
  }
  end2(step);
  for (int l = 0; l < 2; l++) {
    float *a = get(cpu, O[l].c, NQ), *b = get(gpu, O[l].g, NQ);
    char what[160];
    snprintf(what, sizeof what, "attention %s: head_dim %d, %d KV heads x GQA %d, KV %s, layer %d",
             step, hd, nkv, c->gqa, pl_dtype_name(c->kv_dtype), l);
    /* q, k, v are exact in bf16, so a bf16 (or f16, or f32) cache holds them exactly and both
     * sides compute the same softmax(q.k * scale) . v in f32, in different orders: scores
     * sum hd products (f32 order: <= hd * 2^-24 * sum|q k| * scale <= 3e-5 for hd = 128 in
     * the worst case, ~sqrt(hd) less in practice), exp() a few ulp, and the output is a
     * convex combination of |v| <= 1 values, so it moves by at most twice the score error:
     * 1e-4 absolute; a wrong block, slot, layer or causal limit moves outputs by O(0.1) */
    cmp(what, b, a, NQ, 1e-4, 0);
    free(a);
    free(b);
    free2(O[l]);
    free2(Q[l]);
    free2(K[l]);
    free2(V[l]);
  }
}

/* Both backends get a 2-layer pool of n_blocks blocks of 16 (the CPU's f32, the GPU's in
 * c's type); free_list gets physical blocks 1..n_blocks-1 in a shuffled order. */
static pl_kv_spec attn_pools(const attn_cfg *c, int n_blocks, int32_t *free_list) {
  pl_kv_spec ks = {.n_layer = 2, .n_kv_head = c->n_kv, .head_dim = c->head_dim,
                   .n_head = c->n_kv * c->gqa, .block_size = 16, .n_blocks = n_blocks,
                   .dtype = PL_DT_F32};
  CHECK(cpu->ops->kv_init(cpu, &ks) == 0, "cpu kv_init: %s", pl_last_error());
  ks.dtype = c->kv_dtype;
  CHECK(gpu->ops->kv_init(gpu, &ks) == 0, "cuda kv_init %s: %s", pl_dtype_name(c->kv_dtype),
        pl_last_error());
  for (int b = 1; b < n_blocks; b++)
    free_list[b - 1] = b;
  for (int i = n_blocks - 2; i > 0; i--) {
    int j = (int)(urand() * (i + 1));
    int32_t t = free_list[i];
    free_list[i] = free_list[j];
    free_list[j] = t;
  }
  return ks;
}

static void test_attention(const attn_cfg *c) {
  const int bs = 16;
  int32_t free_list[64];
  pl_kv_spec ks = attn_pools(c, 48, free_list);
  pl_dtype want = c->kv_dtype == PL_DT_AUTO ? PL_DT_BF16 : c->kv_dtype;
  if (self_check)
    want = PL_DT_F32;
  CHECK(gpu->ops->kv_dtype(gpu) == want, "cuda KV dtype %s, expected %s (AUTO = bf16)",
        pl_dtype_name(gpu->ops->kv_dtype(gpu)), pl_dtype_name(want));
  CHECK(gpu->ops->kv_bytes_per_token(gpu, &ks) ==
            (size_t)2 * 2 * c->n_kv * c->head_dim * (want == PL_DT_F32 ? 4 : 2),
        "cuda KV bytes per token");
  int fi = 0;
  /* s0: 37 cached then a decode; s1: 20 cached then a prefill chunk of 19; s2: a fresh prefill
   * of 33; s3: exactly one full block cached then a decode */
  seqs A = {.n_seqs = 3, .block_size = bs, .cached = {0, 0, 0}, .n_new = {37, 20, 16}};
  seqs B = {.n_seqs = 4, .block_size = bs, .cached = {37, 20, 0, 16}, .n_new = {1, 19, 33, 1}};
  int32_t blk[4][MAXB];
  for (int s = 0; s < 4; s++)
    for (int j = 0; j < 4; j++)
      blk[s][j] = free_list[fi++];
  int mapA[3] = {0, 1, 3};
  for (int i = 0; i < 3; i++)
    memcpy(A.blocks[i], blk[mapA[i]], sizeof blk[0]);
  for (int i = 0; i < 4; i++)
    memcpy(B.blocks[i], blk[i], sizeof blk[0]);
  plan_buf pb;
  make_plan(&pb, &A, 10);
  attn_step(c, &pb, "A (prefills)");
  make_plan(&pb, &B, 10);
  attn_step(c, &pb, "B (decodes + prefill chunks)");

  /* C: s1 (39 tokens: blocks 0, 1 full, block 2 holds 7) is forked: its partial block 2 is
   * copied to a fresh block, the fork decodes into the copy and s1 into its original */
  int32_t cow = free_list[fi++];
  seqs Cs = {.n_seqs = 2, .block_size = bs, .cached = {39, 39}, .n_new = {1, 1}};
  memcpy(Cs.blocks[0], blk[1], sizeof blk[0]);
  memcpy(Cs.blocks[1], blk[1], sizeof blk[0]);
  Cs.blocks[1][2] = cow;
  make_plan(&pb, &Cs, 10);
  pb.p.n_copies = 1;
  pb.csrc[0] = blk[1][2];
  pb.cdst[0] = cow;
  attn_step(c, &pb, "C (copy-on-write, fork reads the copy)");
}

/* Contexts long enough for the split-KV path: a 400-token and a 100-token prefill, a chunk of
 * 300 more with a decode, then two decodes (a few query tokens over 700 keys: the kernel splits
 * each context into chunks and reduces them), and the same decodes with the batch-invariant
 * cut (chunks of fixed length, 3 of them for 702 keys). */
static void test_attention_long(const attn_cfg *c) {
  const int bs = 16;
  int32_t order[64];
  attn_pools(c, 64, order);
  seqs L = {.n_seqs = 2, .block_size = bs, .cached = {0, 0}, .n_new = {400, 100}};
  for (int j = 0; j < 45; j++)
    L.blocks[0][j] = order[j];
  for (int j = 0; j < 7; j++)
    L.blocks[1][j] = order[45 + j];
  plan_buf pb;
  make_plan(&pb, &L, 10);
  attn_step(c, &pb, "L1 (long prefills)");
  L.cached[0] = 400, L.cached[1] = 100, L.n_new[0] = 300, L.n_new[1] = 1;
  make_plan(&pb, &L, 10);
  attn_step(c, &pb, "L2 (a 300-token chunk after 400 cached, a decode)");
  L.cached[0] = 700, L.cached[1] = 101, L.n_new[0] = 1;
  make_plan(&pb, &L, 10);
  attn_step(c, &pb, "L3 (decodes at 701 and 102 keys: split KV)");
  gpu->batch_invariant = 1;
  L.cached[0] = 701, L.cached[1] = 102;
  make_plan(&pb, &L, 10);
  attn_step(c, &pb, "L4 (the same, batch-invariant fixed splits)");
  gpu->batch_invariant = 0;
}

/* ---- errors ------------------------------------------------------------------------------ */
static void test_errors_recoverable(void) {
  pl_kv_spec bad = {.n_layer = 1, .n_kv_head = 1, .head_dim = 64, .n_head = 1, .block_size = 16,
                    .n_blocks = 4, .dtype = PL_DT_Q4_0};
  CHECK(gpu->ops->kv_init(gpu, &bad) < 0, "a Q4_0 KV cache must be refused");
  CHECK(gpu->ops->kv_bytes_per_token(gpu, &bad) == 0, "no bytes per token for a Q4_0 KV cache");
  void *huge = gpu->ops->alloc(gpu, (size_t)1 << 50); /* 1 PiB */
  CHECK(huge == NULL, "a 1 PiB allocation must fail, not succeed");
  /* the backend still works after both */
  float one = 1, two = 2;
  float *d = gpu->ops->alloc(gpu, sizeof(float)), *e = gpu->ops->alloc(gpu, sizeof(float));
  begin_trivial(1);
  CHECK(gpu->ops->upload(gpu, d, &one, 4) == 0 && gpu->ops->upload(gpu, e, &two, 4) == 0,
        "upload after errors");
  CHECK(gpu->ops->add(gpu, d, e, 1) == 0, "add after errors");
  end2("after errors");
  float r = 0;
  gpu->ops->download(gpu, &r, d, 4);
  CHECK(r == 3.0f, "1 + 2 after errors = %g", r);
  gpu->ops->free(gpu, d);
  gpu->ops->free(gpu, e);
}

/* Last: a kernel that faults (an op writing through a pointer that is not device memory).
 * The step must end with a negative status and a message, not a crash. A CUDA fault poisons
 * the context, so nothing runs on this backend afterwards. */
static void test_error_fault(void) {
  float *x = gpu->ops->alloc(gpu, 1024 * sizeof(float));
  float *bogus = (float *)(uintptr_t)0x1000;
  begin_trivial(1);
  int rc = gpu->ops->add(gpu, bogus, x, 1024);
  int rc_end = gpu->ops->step_end(gpu);
  cpu->ops->step_end(cpu);
  CHECK(rc < 0 || rc_end < 0, "a faulting kernel must fail the step (op %d, step_end %d)", rc,
        rc_end);
  if (rc < 0 || rc_end < 0)
    CHECK(pl_last_error()[0] != '\0', "the failed step has a message");
  printf("faulting step: op %d, step_end %d: %s\n", rc, rc_end, pl_last_error());
}

int main(void) {
  const char *dev = getenv("PAGELLM_TEST_CUDA_DEVICE");
  if (pl_backend_create(dev && *dev ? dev : "cuda", 0, &gpu) < 0) {
    printf("skipped: no usable CUDA GPU (%s)\n", pl_last_error());
    return 77;
  }
  printf("%s\n", gpu->desc);
  CHECK(pl_backend_cpu_create(0, &cpu) == 0, "cpu backend");
  self_check = strcmp(gpu->ops->name, "cuda") != 0;
  if (self_check)
    printf("self-check: the %s backend in the GPU's place\n", gpu->ops->name);

  test_matmul();
  test_matmul_group();
  test_matmul_invariant();
  if (!self_check)
    test_sample_reduce();
  test_embed();
  test_elementwise();
  test_rope();
  /* bf16/f16 KV at head_dim 64, 80, 96, 128, 256 run the tensor-core kernel (any GQA group:
   * 3 and 7 leave rows of a CTA empty, 80 query heads on one KV head take two CTAs of 64
   * rows); f32 KV and head_dim 112 run the SIMT kernel, which PAGELLM_CUDA_ATTN=simt picks
   * for every shape (scripts/test-gpu.sh runs this binary both ways) */
  const attn_cfg cfgs[] = {
      {64, 4, 1, PL_DT_AUTO},  {128, 2, 4, PL_DT_AUTO}, {128, 1, 8, PL_DT_AUTO},
      {64, 2, 8, PL_DT_AUTO},  {128, 2, 4, PL_DT_F16},  {64, 4, 1, PL_DT_F32},
      {128, 1, 8, PL_DT_F32},  {80, 2, 3, PL_DT_AUTO},  {96, 1, 7, PL_DT_F16},
      {256, 2, 2, PL_DT_AUTO}, {64, 1, 80, PL_DT_AUTO}, {112, 2, 2, PL_DT_AUTO},
  };
  for (size_t i = 0; i < sizeof cfgs / sizeof *cfgs; i++)
    if (!self_check || cfgs[i].kv_dtype == PL_DT_AUTO || cfgs[i].kv_dtype == PL_DT_F32)
      test_attention(&cfgs[i]);
  for (size_t i = 0; i < sizeof cfgs / sizeof *cfgs; i++)
    if (!self_check || cfgs[i].kv_dtype == PL_DT_AUTO || cfgs[i].kv_dtype == PL_DT_F32)
      test_attention_long(&cfgs[i]);
  if (!self_check) {
    test_errors_recoverable();
    test_error_fault();
  }

  gpu->ops->destroy(gpu);
  cpu->ops->destroy(cpu);
  return check_summary("test_cuda_ops");
}
