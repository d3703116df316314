/* The CPU backend: the op table of backend.h over host memory, multi-threaded with one
 * persistent pool. Matmuls go to gemm.c (SIMD kernels / OpenBLAS), attention to
 * attention_cpu.c; the small elementwise ops split rows across threads only when there is
 * enough work to pay for the wake-up. */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "backend/cpu/backend_cpu.h"
#include "backend/cpu/gemm.h"
#include "backend/cpu/kern/kern.h"
#include "backend/cpu/membw.h"
#include "backend/weight_rand.h"
#include "util/alloc.h"
#include "util/array.h"
#include "util/error.h"
#include "util/log.h"

#define CPU(be) ((pl_cpu_backend *)(be))
#define PAR_MIN_ELEMS 16384 /* below this, threading costs more than it saves */

static void *cpu_alloc(pl_backend *be, size_t bytes) { return pl_malloc(bytes ? bytes : 1); }
static void cpu_free(pl_backend *be, void *p) { pl_free(p); }

static void cpu_destroy(pl_backend *be) {
  if (!be)
    return;
  pl_cpu_backend *c = CPU(be);
  pl_threadpool_destroy(c->tp);
  pl_free(c->k_cache);
  pl_free(c->v_cache);
  pl_free(c->attn_scratch);
  pl_free(c->mm_work);
  for (int i = 0; i < c->n_rand_weights; i++)
    pl_free(c->rand_weights[i]);
  pl_free(c->rand_weights);
  pl_free(c);
}

size_t pl_cpu_kv_row_bytes(pl_dtype t, int head_dim) {
  switch (t) {
  case PL_DT_F32: return (size_t)head_dim * 4;
  case PL_DT_AUTO:
  case PL_DT_F16:
  case PL_DT_BF16: return (size_t)head_dim * 2;
  case PL_DT_Q8_0: return head_dim % 32 ? 0 : pl_dtype_row_bytes(t, head_dim);
  default: return 0;
  }
}

/* AUTO is F16 on the CPU: half the bytes of F32, so twice the tokens per GiB, for a
 * held-out perplexity 0.001% from F32's (test_default_model); F16 rather than BF16 because
 * the CPU converts both at the same cost and F16 keeps 3 more mantissa bits (KV values are
 * O(1), far from F16's range limits). The runner's zero-initialised kv_dtype is F32. */
static size_t cpu_kv_bytes_per_token(const pl_backend *be, const pl_kv_spec *s) {
  return (size_t)2 * s->n_layer * s->n_kv_head * pl_cpu_kv_row_bytes(s->dtype, s->head_dim);
}

static pl_dtype cpu_kv_dtype(const pl_backend *be) {
  const pl_cpu_backend *c = (const pl_cpu_backend *)be;
  return c->k_cache ? c->kv.dtype : PL_DT_F32;
}

static void cpu_mem_info(pl_backend *be, size_t *free_bytes, size_t *total_bytes) {
  *free_bytes = *total_bytes = 0;
}

static int cpu_weight_upload(pl_backend *be, pl_tensor *t) { return 0; }

typedef struct {
  void *dst;
  const pl_tensor *t;
  uint64_t n;
  size_t es;
  int rc;
} fill_job;

static void fill_task(void *ctx, int ith, int nth) {
  fill_job *j = ctx;
  uint64_t a = j->n * (uint64_t)ith / (uint64_t)nth, b = j->n * (uint64_t)(ith + 1) / (uint64_t)nth;
  if (b > a && pl_wrand_fill_host((char *)j->dst + a * j->es, j->t->type, a, b - a,
                                  j->t->rand_stream, j->t->rand_scale) < 0)
    j->rc = PL_EUNSUPPORTED; /* same for every thread: only the type can fail */
}

static int cpu_weight_fill_random(pl_backend *be, pl_tensor *t) {
  pl_cpu_backend *c = CPU(be);
  size_t es = t->type == PL_DT_F32 ? 4 : t->type == PL_DT_F16 || t->type == PL_DT_BF16 ? 2 : 0;
  uint64_t n = (uint64_t)pl_tensor_nelem(t);
  if (!es)
    return pl_fail(PL_EUNSUPPORTED, "'%s': random weights are f32, f16 or bf16, not %s", t->name,
                   pl_dtype_name(t->type));
  if (n * es != t->nbytes)
    return pl_fail(PL_EINVAL, "'%s': %zu bytes for %llu elements", t->name, t->nbytes,
                   (unsigned long long)n);
  if (pl_array_grow(&c->rand_weights, &c->cap_rand_weights, (size_t)c->n_rand_weights + 1,
                    sizeof *c->rand_weights, 64))
    return pl_fail(PL_ENOMEM, "out of memory");
  void *dst = pl_malloc(t->nbytes ? t->nbytes : 1);
  if (!dst)
    return pl_fail(PL_ENOMEM, "out of memory for weight '%s' (%.1f MiB)", t->name,
                   t->nbytes / 1048576.0);
  c->rand_weights[c->n_rand_weights++] = dst;
  fill_job j = {dst, t, n, es, 0};
  pl_threadpool_run(n >= PAR_MIN_ELEMS ? c->tp : NULL, fill_task, &j);
  if (j.rc < 0)
    return pl_fail(j.rc, "'%s': cannot generate %s weights", t->name, pl_dtype_name(t->type));
  t->data = dst;
  t->dev = NULL; /* the CPU ops read t->data */
  return 0;
}

static int cpu_kv_init(pl_backend *be, const pl_kv_spec *s) {
  pl_cpu_backend *c = CPU(be);
  if (s->n_layer <= 0 || s->n_kv_head <= 0 || s->head_dim <= 0 || s->block_size <= 0 ||
      s->n_blocks < 2 || s->n_head < s->n_kv_head)
    return pl_fail(PL_EINVAL, "bad KV cache spec");
  size_t row = pl_cpu_kv_row_bytes(s->dtype, s->head_dim);
  if (!row)
    return pl_fail(PL_EUNSUPPORTED, "the CPU backend has no %s KV cache%s",
                   pl_dtype_name(s->dtype),
                   s->dtype == PL_DT_Q8_0 ? " for a head size that is not a multiple of 32" : "");
  pl_free(c->k_cache);
  pl_free(c->v_cache);
  pl_free(c->attn_scratch);
  c->kv = *s;
  if (c->kv.dtype == PL_DT_AUTO)
    c->kv.dtype = PL_DT_F16;
  c->row_bytes = row;
  c->layer_stride = (size_t)s->n_blocks * s->n_kv_head * s->block_size * row;
  size_t total = c->layer_stride * (size_t)s->n_layer;
  c->k_cache = pl_malloc(total);
  c->v_cache = pl_malloc(total);
  if (c->k_cache && c->v_cache) { /* huge pages before the first touch (the zeroing) */
    pl_alloc_advise_huge(c->k_cache, total);
    pl_alloc_advise_huge(c->v_cache, total);
    memset(c->k_cache, 0, total);
    memset(c->v_cache, 0, total);
  }
  int g = s->n_head / s->n_kv_head;
  /* the per-key path's acc, m, l, scores and a decoded K and V row, or the tile path's
   * decoded K and V tiles, whichever is larger */
  size_t per_key =
      (size_t)g * s->head_dim + 2 * (size_t)g + (size_t)s->block_size + 2 * (size_t)s->head_dim;
  size_t tiles = 2 * (size_t)PL_ATTN_TILE * (size_t)s->head_dim;
  c->scratch_per_thread = (per_key > tiles ? per_key : tiles) + 16;
  c->scratch_per_thread = (c->scratch_per_thread + 15) & ~(size_t)15; /* keep 64-byte rows */
  c->attn_scratch = pl_malloc(c->scratch_per_thread * (size_t)c->n_threads * sizeof(float));
  if (!c->k_cache || !c->v_cache || !c->attn_scratch) {
    pl_free(c->k_cache);
    pl_free(c->v_cache);
    pl_free(c->attn_scratch);
    c->k_cache = c->v_cache = NULL;
    c->attn_scratch = NULL;
    return pl_fail(PL_ENOMEM, "cannot allocate %.1f MiB of KV cache",
                   2.0 * (double)total / (1 << 20));
  }
  return 0;
}

static size_t cpu_kv_bytes(const pl_backend *be) {
  const pl_cpu_backend *c = (const pl_cpu_backend *)be;
  return 2 * c->layer_stride * (size_t)c->kv.n_layer;
}

static int cpu_step_begin(pl_backend *be, const pl_step_plan *plan) {
  CPU(be)->plan = plan; /* host memory already: nothing to stage */
  return 0;
}

static int cpu_step_end(pl_backend *be) {
  CPU(be)->plan = NULL;
  return 0;
}

static int cpu_embed(pl_backend *be, float *x, const pl_tensor *t) {
  const int32_t *ids = CPU(be)->plan->token_ids;
  int n = CPU(be)->plan->n_tokens;
  int64_t d = t->ne[0];
  size_t rb = pl_dtype_row_bytes(t->type, d);
  for (int i = 0; i < n; i++) {
    const uint8_t *row = (const uint8_t *)t->data + (size_t)ids[i] * rb;
    if (t->type == PL_DT_MLX_Q4 || t->type == PL_DT_MLX_Q8) {
      size_t ng = (size_t)(d / t->group_size), sbs = t->sb_type == PL_DT_F32 ? 4 : 2;
      pl_dequant_row_mlx(t->type, row, (const uint8_t *)t->scales + (size_t)ids[i] * ng * sbs,
                         (const uint8_t *)t->biases + (size_t)ids[i] * ng * sbs, t->sb_type,
                         t->group_size, x + (size_t)i * d, d);
    } else {
      pl_dequant_row(t->type, row, x + (size_t)i * d, d);
    }
  }
  return 0;
}

/* ---- row-parallel elementwise ops ---- */
typedef struct {
  int kind;
  float *y;
  const float *x, *w, *u;
  const float *cs;
  const pl_rope_spec *rs;
  int n, d, n_heads;
  float eps;
} rows_job;

enum { JOB_RMSNORM, JOB_ROPE, JOB_SWIGLU, JOB_ADD };

static void rope_row(float *x, const float *cs, int n_heads, const pl_rope_spec *rs) {
  int half = rs->rope_dim / 2;
  for (int h = 0; h < n_heads; h++) {
    float *v = x + (size_t)h * rs->head_dim;
    for (int i = 0; i < half; i++) {
      float c = cs[i], s = cs[half + i];
      int a = rs->neox ? i : 2 * i, b = rs->neox ? i + half : 2 * i + 1;
      float x0 = v[a], x1 = v[b];
      v[a] = x0 * c - x1 * s;
      v[b] = x0 * s + x1 * c;
    }
  }
}

static void rows_task(void *ctx, int ith, int nth) {
  rows_job *j = ctx;
  int per = (j->n + nth - 1) / nth, r0 = ith * per, r1 = r0 + per < j->n ? r0 + per : j->n;
  for (int r = r0; r < r1; r++) {
    size_t o = (size_t)r * j->d;
    switch (j->kind) {
    case JOB_RMSNORM: pl_vec_rmsnorm_f32(j->d, j->y + o, j->x + o, j->w, j->eps); break;
    case JOB_ROPE: rope_row(j->y + o, j->cs + (size_t)r * j->rs->rope_dim, j->n_heads, j->rs); break;
    case JOB_SWIGLU: pl_vec_swiglu_f32(j->d, j->y + o, j->x + o, j->u + o); break;
    case JOB_ADD: pl_vec_mad_f32(j->d, j->y + o, j->x + o, 1.0f); break;
    }
  }
}

static void run_rows(pl_cpu_backend *c, rows_job *j) {
  if ((size_t)j->n * (size_t)j->d < PAR_MIN_ELEMS || j->n < 2)
    rows_task(j, 0, 1);
  else
    pl_threadpool_run(c->tp, rows_task, j);
}

static int cpu_rmsnorm(pl_backend *be, float *y, const float *x, const pl_tensor *w, int n,
                       int d, float eps) {
  rows_job j = {.kind = JOB_RMSNORM, .y = y, .x = x, .w = w->data, .n = n, .d = d, .eps = eps};
  run_rows(CPU(be), &j);
  return 0;
}

static int cpu_rope(pl_backend *be, float *x, const float *cs, int n, int n_heads,
                    const pl_rope_spec *rs) {
  rows_job j = {.kind = JOB_ROPE, .y = x, .cs = cs, .rs = rs, .n = n,
                .d = n_heads * rs->head_dim, .n_heads = n_heads};
  run_rows(CPU(be), &j);
  return 0;
}

/* Elementwise ops on flat arrays: view them as rows of 1024 (+ a tail row). */
static void flat_op(pl_cpu_backend *c, int kind, float *y, const float *x, const float *u,
                    size_t n) {
  size_t rows = n / 1024, tail = n % 1024;
  if (rows) {
    rows_job j = {.kind = kind, .y = y, .x = x, .u = u, .n = (int)rows, .d = 1024};
    run_rows(c, &j);
  }
  if (tail) {
    size_t o = rows * 1024;
    rows_job j = {.kind = kind, .y = y + o, .x = x + o, .u = u ? u + o : NULL, .n = 1,
                  .d = (int)tail};
    rows_task(&j, 0, 1);
  }
}

static int cpu_swiglu(pl_backend *be, float *y, const float *g, const float *u, size_t n) {
  flat_op(CPU(be), JOB_SWIGLU, y, g, u, n);
  return 0;
}

static int cpu_add(pl_backend *be, float *y, const float *x, size_t n) {
  flat_op(CPU(be), JOB_ADD, y, x, NULL, n);
  return 0;
}

static int cpu_matmul(pl_backend *be, float *y, const float *x, int n, const pl_tensor *W,
                      const pl_tensor *bias) {
  pl_cpu_backend *c = CPU(be);
  size_t need = pl_cpu_matmul_work_size(W, n);
  if (need > c->mm_work_size) {
    /* Grows to the largest (weight, batch) pair seen so far: it allocates only the first time
     * a step is larger than every earlier one, then never again. */
    void *w = pl_malloc(need);
    if (!w)
      return pl_fail(PL_ENOMEM, "out of memory for matmul scratch (%zu bytes)", need);
    pl_free(c->mm_work);
    c->mm_work = w;
    c->mm_work_size = need;
  }
  pl_cpu_matmul(c->tp, y, x, n, W, c->mm_work);
  if (bias) {
    int64_t d = W->ne[1];
    for (int i = 0; i < n; i++)
      pl_vec_mad_f32((int)d, y + (size_t)i * d, bias->data, 1.0f);
  }
  return 0;
}

static int cpu_kv_write(pl_backend *be, int layer, const float *k, const float *v) {
  pl_cpu_backend *c = CPU(be);
  const int32_t *slots = c->plan->slot_mapping;
  int n = c->plan->n_tokens;
  const pl_kv_spec *s = &c->kv;
  size_t hd = (size_t)s->head_dim, row = (size_t)s->n_kv_head * hd;
  uint8_t *K = c->k_cache + (size_t)layer * c->layer_stride;
  uint8_t *V = c->v_cache + (size_t)layer * c->layer_stride;
  for (int t = 0; t < n; t++) {
    int32_t slot = slots[t];
    if (slot < 0)
      continue; /* padding token: nothing to store */
    size_t b = (size_t)slot / (size_t)s->block_size, off = (size_t)slot % (size_t)s->block_size;
    for (int h = 0; h < s->n_kv_head; h++) {
      size_t dst = ((b * (size_t)s->n_kv_head + (size_t)h) * (size_t)s->block_size + off) *
                   c->row_bytes;
      const float *ks = k + (size_t)t * row + (size_t)h * hd, *vs = v + (size_t)t * row + (size_t)h * hd;
      if (s->dtype == PL_DT_F32) {
        memcpy(K + dst, ks, hd * sizeof(float));
        memcpy(V + dst, vs, hd * sizeof(float));
      } else { /* round to nearest even (f16, bf16); Q8_0 as ggml's reference quantizer */
        pl_quant_row(s->dtype, ks, K + dst, (int64_t)hd);
        pl_quant_row(s->dtype, vs, V + dst, (int64_t)hd);
      }
    }
  }
  return 0;
}

static int cpu_get_rows(pl_backend *be, float *dst, const float *src, int d) {
  const pl_step_plan *p = CPU(be)->plan;
  for (int i = 0; i < p->n_logits; i++)
    memcpy(dst + (size_t)i * d, src + (size_t)p->logits_rows[i] * d, (size_t)d * sizeof(float));
  return 0;
}

static int cpu_copy_blocks(pl_backend *be) {
  pl_cpu_backend *c = CPU(be);
  const int32_t *src = c->plan->copy_src, *dst = c->plan->copy_dst;
  int n = c->plan->n_copies;
  const pl_kv_spec *s = &c->kv;
  size_t blk = (size_t)s->n_kv_head * s->block_size * c->row_bytes;
  for (int l = 0; l < s->n_layer; l++) {
    uint8_t *K = c->k_cache + (size_t)l * c->layer_stride;
    uint8_t *V = c->v_cache + (size_t)l * c->layer_stride;
    for (int i = 0; i < n; i++) {
      memcpy(K + (size_t)dst[i] * blk, K + (size_t)src[i] * blk, blk);
      memcpy(V + (size_t)dst[i] * blk, V + (size_t)src[i] * blk, blk);
    }
  }
  return 0;
}

static int cpu_argmax(pl_backend *be, int32_t *ids, const float *src, int n, int d) {
  for (int i = 0; i < n; i++) {
    const float *x = src + (size_t)i * d;
    float best = -INFINITY;
    int32_t arg = 0;
    for (int j = 0; j < d; j++)
      if (x[j] > best) {
        best = x[j];
        arg = j;
      }
    ids[i] = arg;
  }
  return 0;
}

static int cpu_copy(pl_backend *be, void *dst, const void *src, size_t bytes) {
  memcpy(dst, src, bytes);
  return 0;
}

static double cpu_mem_bandwidth(pl_backend *be) { return pl_cpu_read_bandwidth(CPU(be)->tp, 0); }

static const pl_backend_ops cpu_ops = {
    .name = "cpu",
    .destroy = cpu_destroy,
    .alloc = cpu_alloc,
    .free = cpu_free,
    .weight_upload = cpu_weight_upload,
    .weight_fill_random = cpu_weight_fill_random,
    .kv_bytes_per_token = cpu_kv_bytes_per_token,
    .kv_init = cpu_kv_init,
    .kv_bytes = cpu_kv_bytes,
    .kv_dtype = cpu_kv_dtype,
    .mem_info = cpu_mem_info,
    .step_begin = cpu_step_begin,
    .step_end = cpu_step_end,
    .embed = cpu_embed,
    .rmsnorm = cpu_rmsnorm,
    .matmul = cpu_matmul,
    .rope = cpu_rope,
    .kv_write = cpu_kv_write,
    .attention = pl_cpu_attention,
    .swiglu = cpu_swiglu,
    .add = cpu_add,
    .get_rows = cpu_get_rows,
    .copy_blocks = cpu_copy_blocks,
    .argmax = cpu_argmax,
    .mem_bandwidth = cpu_mem_bandwidth,
    .download = cpu_copy,
    .upload = cpu_copy,
};

int pl_backend_cpu_create(int n_threads, pl_backend **out) {
  *out = NULL;
  if (n_threads <= 0) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    n_threads = n > 0 ? (int)n : 1;
  }
  pl_cpu_backend *c = pl_calloc(1, sizeof *c);
  if (!c)
    return pl_fail(PL_ENOMEM, "out of memory");
  c->base.ops = &cpu_ops;
  c->n_threads = n_threads;
  snprintf(c->base.desc, sizeof c->base.desc, "CPU, %d threads, %s kernels", n_threads,
           pl_kern_isa_name(pl_kern_isa()));
  int rc = pl_threadpool_create(n_threads, &c->tp);
  if (rc < 0) {
    pl_free(c);
    return rc;
  }
  *out = &c->base;
  return PL_OK;
}
