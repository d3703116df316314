/* Matmul driver and the public vector-helper entry points. One call: (1) for quantized
 * weights, quantize the n activation rows into `work` (qx rows, kern_impl.h), or for a
 * bf16-pair kernel round them to bf16 rows there — in parallel
 * when n is large enough to pay for a second pool run; (2) split the weight rows into one
 * contiguous range per thread (each thread streams its own part of W once, for all n
 * activation rows) and run the ISA's row kernel. No allocation. */
#include <math.h>

#include "backend/cpu/kern/kern_impl.h"

static int is_float_type(pl_dtype t) {
  return t == PL_DT_F32 || t == PL_DT_F16 || t == PL_DT_BF16;
}

/* The weight types whose decode (n <= PL_MM_SMALL_N) takes pl_kern_ops_small: where the AVX2
 * kernels measured faster on the AVX-512 host at n = 1 and 2 (Q8_0 1.66x / 1.16x, Q4_K 1.53x /
 * 1.31x, Q6_K 1.95x / 1.55x); Q4_0 and the float types stay on AVX-512 (level or faster). */
static int small_type(pl_dtype t) {
  return t == PL_DT_Q8_0 || t == PL_DT_Q4_K || t == PL_DT_Q6_K;
}

size_t pl_kern_matmul_work_size(const pl_tensor *W, int n) {
  if (n <= 0)
    return 0;
  if (W->type == PL_DT_BF16) /* bf16 activation rows, whether or not this CPU uses them */
    return pl_bf16_x_stride(W->ne[0]) * (size_t)n;
  if (is_float_type(W->type))
    return 0;
  pl_qx_layout l = pl_qx_layout_for(W->ne[0]);
  return l.stride * (size_t)n;
}

typedef struct {
  pl_mm_ctx c;
  pl_mm_rows_fn fn;
  pl_quant_x_fn qfn;
  int z;
  int bsum; /* compact zs to sums per this many elements (pl_kern_ops.qx_bsum); 0: no */
  int64_t chunk; /* rows per thread */
} mm_job;

static void quant_task(void *p, int ith, int nth) {
  mm_job *jb = p;
  pl_mm_ctx *c = &jb->c;
  const pl_tensor *W = c->W;
  int mlx = W->type == PL_DT_MLX_Q4 || W->type == PL_DT_MLX_Q8;
  for (int j = ith; j < c->n; j += nth) {
    uint8_t *row = (uint8_t *)c->qx + (size_t)j * c->ql.stride;
    jb->qfn(c->x + (size_t)j * c->cols, c->cols, jb->z, row, &c->ql);
    if (jb->bsum) { /* in place: zs[i] is written after zs[g*i .. g*i+g-1] were read */
      int32_t *zs = (int32_t *)(row + c->ql.off_zs);
      const int g = jb->bsum / 4;
      for (int64_t i = 0; i < c->cols / jb->bsum; i++) {
        int32_t t = 0;
        for (int k = 0; k < g; k++)
          t += zs[g * i + k];
        zs[i] = t;
      }
    }
    if (mlx) { /* per-group activation sums for the bias term (kern_impl.h) */
      const float *s = (const float *)(row + c->ql.off_s);
      float *gs = (float *)(row + c->ql.off_zs);
      int bpg = W->group_size / PL_QK;
      for (int64_t g = 0; g < c->cols / W->group_size; g++) {
        float t = 0;
        for (int k = 0; k < bpg; k++)
          t += s[g * bpg + k];
        gs[g] = t;
      }
    }
  }
}

static void mm_task(void *p, int ith, int nth) {
  (void)nth;
  mm_job *jb = p;
  int64_t r0 = (int64_t)ith * jb->chunk, r1 = r0 + jb->chunk;
  if (r1 > jb->c.rows)
    r1 = jb->c.rows;
  if (r0 < r1)
    jb->fn(&jb->c, r0, r1);
}

static int valid(const pl_tensor *W) {
  int64_t cols = W->ne[0];
  if (pl_mmt_of(W->type) < 0 || cols <= 0)
    return 0;
  if (is_float_type(W->type))
    return 1;
  if (cols % PL_QK != 0 || cols % pl_dtype_block_size(W->type) != 0)
    return 0;
  if (W->type == PL_DT_MLX_Q4 || W->type == PL_DT_MLX_Q8)
    return W->group_size >= 32 && W->group_size % 32 == 0 && cols % W->group_size == 0 &&
           W->scales && W->biases;
  return 1;
}

void pl_kern_matmul(pl_threadpool *tp, float *y, const float *x, int n, const pl_tensor *W,
                    void *work) {
  if (n <= 0)
    return;
  int64_t rows = W->ne[1], cols = W->ne[0];
  if (!valid(W)) { /* a caller bug (loaders validate shapes): make it visible, not a crash */
    for (size_t i = 0; i < (size_t)n * (size_t)rows; i++)
      y[i] = NAN;
    return;
  }
  const pl_kern_ops *o =
      n <= PL_MM_SMALL_N && small_type(W->type) ? pl_kern_ops_small() : pl_kern_ops_get();
  int t = pl_mmt_of(W->type);
  mm_job jb;
  jb.c.W = W;
  jb.c.rows = rows;
  jb.c.cols = cols;
  jb.c.wrb = W->type == PL_DT_MLX_Q4 ? (size_t)cols / 2
             : W->type == PL_DT_MLX_Q8 ? (size_t)cols
                                       : pl_dtype_row_bytes(W->type, cols);
  jb.c.n = n;
  jb.c.x = x;
  jb.c.y = y;
  jb.c.qx = work;
  jb.c.ql = pl_qx_layout_for(cols);
  jb.c.xrb = is_float_type(W->type) ? (size_t)cols * sizeof(float) : jb.c.ql.stride;
  jb.fn = o->mm[t];
  jb.qfn = o->quant_x;
  jb.z = o->qx_z[t];
  jb.bsum = o->qx_bsum[t];
  int xb = o->x_is_bf16[t];
  if (xb) { /* the bf16-pair kernel reads activations rounded to bf16 rows */
    jb.qfn = o->x_bf16;
    jb.c.ql.stride = jb.c.xrb = pl_bf16_x_stride(cols);
  }

  int nth = pl_threadpool_size(tp);
  if (!is_float_type(W->type) || xb) {
    if (nth > 1 && (int64_t)n * cols >= 32768)
      pl_threadpool_run(tp, quant_task, &jb);
    else
      quant_task(&jb, 0, 1);
  }
  /* Thread split: equal contiguous row ranges, rounded to the kernel's row tile. Tiny
   * matrices run on the caller alone (waking workers costs more than it saves). */
  int64_t align = o->mm_rows_align[t] > 0 ? o->mm_rows_align[t] : 1;
  if ((double)rows * (double)cols * (double)n < 65536.0)
    nth = 1;
  int64_t chunk = (rows + nth - 1) / nth;
  chunk = (chunk + align - 1) / align * align;
  jb.chunk = chunk;
  if (nth == 1)
    mm_task(&jb, 0, 1);
  else
    pl_threadpool_run(tp, mm_task, &jb);
}

/* ---- vector helpers -------------------------------------------------------------------- */

int pl_kern_matmul_x_bf16(pl_dtype t) {
  int m = pl_mmt_of(t);
  return m >= 0 && pl_kern_ops_get()->x_is_bf16[m];
}

float pl_vec_dot_f32(int n, const float *a, const float *b) { return pl_kern_ops_get()->dot(n, a, b); }
void pl_vec_mad_f32(int n, float *y, const float *x, float s) { pl_kern_ops_get()->mad(n, y, x, s); }
void pl_vec_scale_f32(int n, float *y, float s) { pl_kern_ops_get()->scale(n, y, s); }
float pl_vec_max_f32(int n, const float *x) { return pl_kern_ops_get()->max(n, x); }
void pl_vec_rmsnorm_f32(int n, float *y, const float *x, const float *w, float eps) {
  pl_kern_ops_get()->rmsnorm(n, y, x, w, eps);
}
void pl_vec_swiglu_f32(int n, float *y, const float *g, const float *u) {
  pl_kern_ops_get()->swiglu(n, y, g, u);
}
float pl_vec_softmax_f32(int n, float *x) { return pl_kern_ops_get()->softmax(n, x); }
