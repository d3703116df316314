/* The CUDA backend: backend.h's op table on one NVIDIA GPU (sm_80 and newer).
 *
 * Everything of a step runs in order on one stream: step_begin copies the plan's index arrays
 * to the GPU in one transfer (pinned staging buffer), the ops enqueue kernels and cuBLAS calls
 * that read that copy, and step_end waits for the stream and reports the first error. The
 * host never waits inside a step except for download.
 *
 * Numerics: activations stay f32 between ops (the residual stream in f32, like the CPU). A
 * matmul casts its input to the weight's type: bf16/f16 weights run cuBLAS bf16/f16 GEMMs with
 * f32 accumulation and f32 output; f32 weights run cuBLAS with TF32 tensor cores; quantized
 * weights run the dequantizing GEMV of cu_quant.cu for decode-sized batches (at most
 * PL_CU_GEMV_MAX_N rows), the dequantizing tensor-core GEMM of cu_qgemm.cu up to qgemm_max_n
 * rows, and for larger batches are dequantized to bf16 in row chunks for a cuBLAS GEMM. With
 * be->batch_invariant every matmul takes the GEMV (see cu_matmul).
 * The KV cache is bf16 by default (f16 and f32 on request).
 *
 * Weights: weight_upload copies each tensor's bytes as they are (quantized blocks included) and
 * hangs a cu_weight (device pointers + geometry) on t->dev; Q8_0 and Q4_0 blocks are then split
 * into planes of codes and scales (aligned loads for the GEMV). weight_join then moves a group of
 * 16-bit weights (the model joins each layer's q/k/v) into one allocation, and matmul_group
 * runs the group as one GEMM up to join_max_n rows: cuBLAS reaches a larger share of the
 * memory bandwidth on one large weight than on several small ones (bench_cuda_matmul: 26% on
 * a 1024x4096 k/v weight alone).
 *
 * Decode steps are padded to a few batch sizes and their layers replayed from CUDA graphs
 * (cu_graph.h) unless be->eager (--enforce-eager). */
#include <cublas_v2.h>
#include <cuda_runtime_api.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"
#include "backend/cuda/cu_fill.h"
#include "backend/cuda/cu_graph.h"
#include "backend/cuda/cu_kernels.h"
#include "backend/cuda/cu_profile.h"
#include "backend/cuda/cu_quant.h"
#include "util/alloc.h"
#include "util/error.h"
#include "util/log.h"

#define DEQ_CHUNK_ELEMS ((size_t)32 << 20) /* bf16 scratch for a quantized GEMM: 64 MiB */
#define BLAS_WS_BYTES ((size_t)32 << 20)   /* cuBLAS workspace, fixed so graphs can hold it */
#define JOIN_MAX_N 16 /* see run_matmul_group */
/* Quantized weights of at least QGEMM_MIN_ROWS rows take pl_cu_qgemm for batches up to
 * QGEMM_MAX_N rows (run_matmul). Measured on an H100 (BENCHMARKS 13g): against dequantize +
 * cuBLAS, 1.1-3.0x faster at 16 and 64 rows for weights of 4096+ rows, slower at 256 rows
 * (cuBLAS's GEMM is the better one once the weight's three trips are spread over many rows)
 * and on the 1024-row k/v weights (too few CTAs). */
#define QGEMM_MAX_N 64
#define QGEMM_MIN_ROWS 2048

typedef struct cu_weight {
  pl_cu_weight w;   /* device pointers + geometry, for cu_quant.h */
  void *bufs[3];    /* data, scales, biases (what destroy frees) */
  struct cu_weight *next;
} cu_weight;

typedef struct {
  pl_backend base;
  int dev;
  cudaStream_t st;
  cublasHandle_t blas;
  cu_weight *weights; /* every upload, freed at destroy */
  /* KV pool */
  pl_kv_spec spec;
  pl_cu_kv kv;
  size_t kv_bytes;
  /* the staged step plan: device copies of the index arrays; scalars from the host plan */
  const pl_step_plan *plan;
  int32_t *h_stage, *d_stage; /* pinned host / device, stage_cap int32 each */
  size_t stage_cap;
  const int32_t *d_tokens, *d_positions, *d_slots, *d_qsl, *d_seq_lens, *d_block_tables,
      *d_logits_rows, *d_copy_src, *d_copy_dst;
  /* scratch, grown on demand */
  void *xcast;  /* a matmul input cast to bf16/f16 */
  size_t xcast_bytes;
  const float *xcast_src; /* xcast holds xcast_n elements of this input as xcast_type; NULL
                             after any op other than a matmul (q, k and v cast h once) */
  size_t xcast_n;
  pl_dtype xcast_type;
  float *ygroup; /* a matmul group's joint output [n][sum of rows], before the split */
  size_t ygroup_bytes;
  void *wdeq;   /* a dequantized weight chunk, bf16 */
  size_t wdeq_bytes;
  void *d_rows; /* per-row results: argmax ids, sampling reductions */
  size_t d_rows_bytes;
  float *attn_ws; /* split-KV attention partials */
  size_t attn_ws_bytes;
  int max_ctx;    /* the staged step's longest context */
  int n_sm;       /* multiprocessors: the attention grid fills them */
  int join_max_n;   /* matmul_group runs joined weights as one GEMM up to this many rows */
  int qgemm_max_n;  /* quantized matmuls take pl_cu_qgemm up to this many rows */
  pl_cu_prof *prof; /* NULL unless PAGELLM_PROFILE is set */
  void *blas_ws;
  pl_cu_graphs *graphs;
  unsigned gen;   /* bumped when device memory a recording may hold moves (cu_graph.h) */
  int graph_ctx;  /* the staged step is a padded decode step: its key's ctx; -1: not one */
} cu_backend;

#define CU(be) ((cu_backend *)(be))

static int cuda_fail(cudaError_t e, const char *what) {
  return pl_fail(PL_EDEVICE, "CUDA %s: %s (%s)", what, cudaGetErrorName(e), cudaGetErrorString(e));
}
#define CU_TRY(call, what)                 \
  do {                                     \
    cudaError_t e_ = (call);               \
    if (e_ != cudaSuccess)                 \
      return cuda_fail(e_, what);          \
  } while (0)
/* a launcher's status (cu_kernels.h) */
#define K_TRY(call, what) CU_TRY((cudaError_t)(call), what)

static int blas_fail(cublasStatus_t s, const char *what) {
  return pl_fail(PL_EDEVICE, "cuBLAS %s: %s", what, cublasGetStatusString(s));
}

static void *cu_alloc(pl_backend *be, size_t bytes) {
  void *p = NULL;
  cudaSetDevice(CU(be)->dev);
  if (cudaMalloc(&p, bytes ? bytes : 1) != cudaSuccess) {
    cudaGetLastError(); /* an allocation failure is not sticky: clear it */
    return NULL;
  }
  return p;
}

static void cu_free(pl_backend *be, void *p) {
  if (p) {
    cudaFree(p);
    CU(be)->gen++; /* a recording may have held it */
  }
}

/* Grow a scratch buffer to at least `bytes` (only when a step is larger than every earlier
 * one; cudaFree waits for the work that may still read the old buffer). Not while recording:
 * the step is then issued again without recording. */
static int grow(cu_backend *c, void **buf, size_t *cap, size_t bytes, const char *what) {
  if (bytes <= *cap)
    return 0;
  if (pl_cu_graphs_recording(c->graphs))
    return pl_fail(PL_EDEVICE, "%s grows while recording a step", what);
  c->gen++;
  if (*buf)
    cudaFree(*buf);
  *buf = NULL;
  *cap = 0;
  if (cudaMalloc(buf, bytes) != cudaSuccess) {
    cudaGetLastError();
    *buf = NULL;
    return pl_fail(PL_ENOMEM, "out of GPU memory for %s (%zu bytes)", what, bytes);
  }
  *cap = bytes;
  return 0;
}

static void cu_destroy(pl_backend *be) {
  if (!be)
    return;
  cu_backend *c = CU(be);
  cudaSetDevice(c->dev);
  if (c->st)
    cudaStreamSynchronize(c->st);
  pl_cu_prof_destroy(c->prof);
  pl_cu_graphs_destroy(c->graphs);
  for (cu_weight *w = c->weights, *nx; w; w = nx) {
    nx = w->next;
    for (int i = 0; i < 3; i++)
      cu_free(be, w->bufs[i]);
    pl_free(w);
  }
  cu_free(be, c->kv.k);
  cu_free(be, c->kv.v);
  cu_free(be, c->d_stage);
  cu_free(be, c->xcast);
  cu_free(be, c->wdeq);
  cu_free(be, c->ygroup);
  cu_free(be, c->d_rows);
  cu_free(be, c->attn_ws);
  cu_free(be, c->blas_ws);
  if (c->h_stage)
    cudaFreeHost(c->h_stage);
  if (c->blas)
    cublasDestroy(c->blas);
  if (c->st)
    cudaStreamDestroy(c->st);
  pl_free(c);
}

/* ---- weights ---- */

static int upload_bytes(cu_backend *c, void **dst, const void *src, size_t n, const char *name) {
  *dst = cu_alloc(&c->base, n);
  if (!*dst) {
    size_t fr = 0, tot = 0;
    cudaMemGetInfo(&fr, &tot);
    return pl_fail(PL_ENOMEM, "out of GPU memory uploading '%s' (%.1f MiB; %.2f GiB free of "
                   "%.2f GiB)", name, n / 1048576.0, fr / 1073741824.0, tot / 1073741824.0);
  }
  /* on the backend's stream: its kernels are ordered after the copy (a plain cudaMemcpy from
   * pageable memory may return before its DMA ends, and our stream does not wait for it) */
  CU_TRY(cudaMemcpyAsync(*dst, src, n, cudaMemcpyHostToDevice, c->st), "weight upload");
  return 0;
}

/* Q8_0 and Q4_0 weights go into planes (cu_quant.h): their 34- and 18-byte blocks allow only
 * 2-byte loads, which held the GEMV to 30-50% of the copy bandwidth (BENCHMARKS 13f). The
 * blocks' buffer is then freed. With no room for both at once the weight keeps its blocks
 * (slower, still correct); PAGELLM_CUDA_PLANES=0 keeps them always (to measure). */
static int to_planes(cu_backend *c, cu_weight *w, const char *name) {
  const char *env = getenv("PAGELLM_CUDA_PLANES");
  if ((env && !strcmp(env, "0")) || !pl_cu_planar(w->w.type, w->w.cols))
    return 0;
  size_t cb, sb;
  pl_cu_plane_bytes(&w->w, &cb, &sb);
  void *codes = cu_alloc(&c->base, cb), *scales = codes ? cu_alloc(&c->base, sb) : NULL;
  int rc = scales ? pl_cu_to_planes(&w->w, codes, scales, &w->w, (pl_cu_stream)c->st) : 0;
  cudaError_t e = rc > 0 ? cudaStreamSynchronize(c->st) : cudaSuccess;
  if (rc <= 0 || e != cudaSuccess) {
    cu_free(&c->base, codes);
    cu_free(&c->base, scales);
    if (!scales)
      PL_DEBUG("cuda: no memory to put '%s' into planes; it keeps its blocks", name);
    return rc < 0 ? rc : e != cudaSuccess ? cuda_fail(e, "weight planes") : 0;
  }
  cu_free(&c->base, w->bufs[0]);
  w->bufs[0] = codes;
  w->bufs[1] = scales;
  return 0;
}

static int cu_weight_upload(pl_backend *be, pl_tensor *t) {
  cu_backend *c = CU(be);
  cudaSetDevice(c->dev);
  cu_weight *w = pl_calloc(1, sizeof *w);
  if (!w)
    return pl_fail(PL_ENOMEM, "out of memory");
  w->next = c->weights;
  c->weights = w; /* owned from here on, also on error */
  w->w.type = t->type;
  w->w.cols = t->ne[0];
  w->w.rows = pl_tensor_nelem(t) / (t->ne[0] ? t->ne[0] : 1);
  PL_TRY(upload_bytes(c, &w->bufs[0], t->data, t->nbytes, t->name));
  w->w.data = w->bufs[0];
  PL_TRY(to_planes(c, w, t->name));
  if (t->type == PL_DT_MLX_Q4 || t->type == PL_DT_MLX_Q8) {
    size_t sb = (size_t)w->w.rows * (size_t)(w->w.cols / t->group_size) *
                (t->sb_type == PL_DT_F32 ? 4 : 2);
    PL_TRY(upload_bytes(c, &w->bufs[1], t->scales, sb, t->name));
    PL_TRY(upload_bytes(c, &w->bufs[2], t->biases, sb, t->name));
    w->w.scales = w->bufs[1];
    w->w.biases = w->bufs[2];
    w->w.sb_type = t->sb_type;
    w->w.group_size = t->group_size;
  }
  t->dev = w;
  return 0;
}

/* --load-format dummy: the weight is generated in device memory (cu_fill.cu); no host copy */
static int cu_weight_fill_random(pl_backend *be, pl_tensor *t) {
  cu_backend *c = CU(be);
  cudaSetDevice(c->dev);
  if (t->type != PL_DT_F32 && t->type != PL_DT_F16 && t->type != PL_DT_BF16)
    return pl_fail(PL_EUNSUPPORTED, "'%s': random weights are f32, f16 or bf16, not %s", t->name,
                   pl_dtype_name(t->type));
  cu_weight *w = pl_calloc(1, sizeof *w);
  if (!w)
    return pl_fail(PL_ENOMEM, "out of memory");
  w->next = c->weights;
  c->weights = w;
  w->w.type = t->type;
  w->w.cols = t->ne[0];
  w->w.rows = pl_tensor_nelem(t) / (t->ne[0] ? t->ne[0] : 1);
  if (!(w->bufs[0] = cu_alloc(be, t->nbytes))) {
    size_t fr = 0, tot = 0;
    cudaMemGetInfo(&fr, &tot);
    return pl_fail(PL_ENOMEM, "out of GPU memory generating '%s' (%.1f MiB; %.2f GiB free of "
                   "%.2f GiB)", t->name, t->nbytes / 1048576.0, fr / 1073741824.0,
                   tot / 1073741824.0);
  }
  w->w.data = w->bufs[0];
  K_TRY(pl_cu_fill_random(w->bufs[0], t->type, (uint64_t)pl_tensor_nelem(t), t->rand_stream,
                          t->rand_scale, c->st), "random weight fill");
  t->dev = w;
  return 0;
}

static const pl_cu_weight *wt(const pl_tensor *t) { return &((const cu_weight *)t->dev)->w; }

/* 16-bit weights of one input, moved into one allocation: the first weight's buffer owns it.
 * PAGELLM_CUDA_JOIN=0 keeps them apart (to measure what joining gains). */
static int cu_weight_join(pl_backend *be, pl_tensor *const *ts, int count) {
  cu_backend *c = CU(be);
  const char *env = getenv("PAGELLM_CUDA_JOIN");
  if ((env && !strcmp(env, "0")) || count < 2 || count > PL_MATMUL_GROUP_MAX)
    return 0;
  size_t total = 0;
  for (int i = 0; i < count; i++) {
    const cu_weight *w = ts[i]->dev;
    if (!w || (w->w.type != PL_DT_BF16 && w->w.type != PL_DT_F16) ||
        w->w.type != ((const cu_weight *)ts[0]->dev)->w.type ||
        w->w.cols != ((const cu_weight *)ts[0]->dev)->w.cols)
      return 0;
    total += (size_t)w->w.rows * w->w.cols * 2;
  }
  cudaSetDevice(c->dev);
  char *joint = cu_alloc(be, total);
  if (!joint) { /* no room for both copies at once: they stay apart, still correct */
    PL_DEBUG("cuda: no memory to join '%s' and the next %d weights", ts[0]->name, count - 1);
    return 0;
  }
  size_t off = 0;
  cudaError_t e = cudaSuccess;
  for (int i = 0; i < count && e == cudaSuccess; i++) {
    cu_weight *w = ts[i]->dev;
    size_t n = (size_t)w->w.rows * w->w.cols * 2;
    e = cudaMemcpyAsync(joint + off, w->w.data, n, cudaMemcpyDeviceToDevice, c->st);
    off += n;
  }
  if (e == cudaSuccess)
    e = cudaStreamSynchronize(c->st);
  if (e != cudaSuccess) {
    cu_free(be, joint);
    return cuda_fail(e, "weight join");
  }
  off = 0;
  for (int i = 0; i < count; i++) {
    cu_weight *w = ts[i]->dev;
    cu_free(be, w->bufs[0]);
    w->bufs[0] = i == 0 ? joint : NULL;
    w->w.data = joint + off;
    off += (size_t)w->w.rows * w->w.cols * 2;
  }
  return 0;
}

/* ---- KV cache ---- */

static pl_dtype kv_resolve(pl_dtype d) { return d == PL_DT_AUTO ? PL_DT_BF16 : d; }

static size_t kv_elem_bytes(pl_dtype d) {
  switch (kv_resolve(d)) {
  case PL_DT_BF16:
  case PL_DT_F16: return 2;
  case PL_DT_F32: return 4;
  default: return 0; /* q8_0 KV has no CUDA kernels yet */
  }
}

static size_t cu_kv_bytes_per_token(const pl_backend *be, const pl_kv_spec *s) {
  return (size_t)2 * s->n_layer * s->n_kv_head * s->head_dim * kv_elem_bytes(s->dtype);
}

static int cu_kv_init(pl_backend *be, const pl_kv_spec *s) {
  cu_backend *c = CU(be);
  cudaSetDevice(c->dev);
  if (s->n_layer <= 0 || s->n_kv_head <= 0 || s->head_dim <= 0 || s->block_size <= 0 ||
      s->n_blocks < 2 || s->n_head < s->n_kv_head || s->n_head % s->n_kv_head)
    return pl_fail(PL_EINVAL, "bad KV cache spec");
  size_t esz = kv_elem_bytes(s->dtype);
  if (!esz)
    return pl_fail(PL_EUNSUPPORTED, "the CUDA backend has no %s KV cache (bf16, f16 or f32)",
                   pl_dtype_name(s->dtype));
  if (!pl_cu_attention_supported(s->head_dim, kv_resolve(s->dtype)))
    return pl_fail(PL_EUNSUPPORTED, "CUDA attention needs head_dim a multiple of %d up to 256, "
                   "not %d", kv_resolve(s->dtype) == PL_DT_F32 ? 4 : 8, s->head_dim);
  cu_free(be, c->kv.k);
  cu_free(be, c->kv.v);
  memset(&c->kv, 0, sizeof c->kv);
  c->spec = *s;
  c->spec.dtype = kv_resolve(s->dtype);
  size_t layer = (size_t)s->n_blocks * s->n_kv_head * s->block_size * s->head_dim;
  size_t bytes = layer * (size_t)s->n_layer * esz;
  void *k = cu_alloc(be, bytes), *v = k ? cu_alloc(be, bytes) : NULL;
  if (!v) {
    cu_free(be, k);
    size_t fr = 0, tot = 0;
    cudaMemGetInfo(&fr, &tot);
    return pl_fail(PL_ENOMEM, "cannot allocate %.2f GiB of KV cache on the GPU (%.2f GiB free): "
                   "lower --gpu-memory-utilization, --kv-cache-memory or --max-model-len",
                   2.0 * bytes / 1073741824.0, fr / 1073741824.0);
  }
  /* zeroed: a never-written slot read by a bug gives 0, not NaN */
  CU_TRY(cudaMemsetAsync(k, 0, bytes, c->st), "KV clear");
  CU_TRY(cudaMemsetAsync(v, 0, bytes, c->st), "KV clear");
  c->kv = (pl_cu_kv){k, v, c->spec.dtype, layer, s->n_layer, s->n_blocks, s->n_kv_head,
                     s->block_size, s->head_dim};
  c->kv_bytes = 2 * bytes;
  return 0;
}

static size_t cu_kv_bytes(const pl_backend *be) { return ((const cu_backend *)be)->kv_bytes; }
static pl_dtype cu_kv_dtype(const pl_backend *be) { return ((const cu_backend *)be)->spec.dtype; }

static void cu_mem_info(pl_backend *be, size_t *free_bytes, size_t *total_bytes) {
  cudaSetDevice(CU(be)->dev);
  if (cudaMemGetInfo(free_bytes, total_bytes) != cudaSuccess) {
    cudaGetLastError();
    *free_bytes = *total_bytes = 0;
  }
}

/* ---- the step ---- */

static int cu_graph_bucket(pl_backend *be, int n) {
  return be->eager ? 0 : pl_cu_graph_bucket(n);
}

/* For a decode step staged at a graph bucket's size: its recording's ctx key, after rounding
 * max_ctx up to a power of two (a recording's attention grid is cut for that many keys, and
 * serves every shorter context); 0 when that grid is one split, which serves any context.
 * -1 for any other step. */
static int graph_key_ctx(cu_backend *c, const pl_step_plan *p) {
  int n = p->n_tokens;
  if (n != p->n_seqs || n != p->n_logits || cu_graph_bucket(&c->base, n) != n || !c->kv.k)
    return -1;
  int ctx = 1, most = p->max_blocks_per_seq * p->block_size;
  while (ctx < c->max_ctx)
    ctx *= 2;
  c->max_ctx = ctx < most ? ctx : most;
  pl_cu_attn a = {&c->kv, 0, c->spec.n_head, n, n, p->max_blocks_per_seq, 1.f, NULL, NULL,
                  NULL, NULL, NULL, c->max_ctx, c->n_sm, c->base.batch_invariant, NULL};
  return pl_cu_attention_ws(&a) ? c->max_ctx : 0;
}

static int cu_step_begin(pl_backend *be, const pl_step_plan *p) {
  cu_backend *c = CU(be);
  cudaSetDevice(c->dev);
  size_t nt = (size_t)p->n_tokens, ns = (size_t)p->n_seqs;
  size_t nbt = ns * (size_t)p->max_blocks_per_seq;
  struct { const int32_t *src; size_t n; const int32_t **dst; } parts[] = {
      {p->token_ids, p->token_ids ? nt : 0, &c->d_tokens},
      {p->positions, p->positions ? nt : 0, &c->d_positions},
      {p->slot_mapping, p->slot_mapping ? nt : 0, &c->d_slots},
      {p->query_start_loc, p->query_start_loc ? ns + 1 : 0, &c->d_qsl},
      {p->seq_lens, p->seq_lens ? ns : 0, &c->d_seq_lens},
      {p->block_tables, p->block_tables ? nbt : 0, &c->d_block_tables},
      {p->logits_rows, p->logits_rows ? (size_t)p->n_logits : 0, &c->d_logits_rows},
      {p->copy_src, p->copy_src ? (size_t)p->n_copies : 0, &c->d_copy_src},
      {p->copy_dst, p->copy_dst ? (size_t)p->n_copies : 0, &c->d_copy_dst},
  };
  /* the previous step's staging copy must be done before h_stage is overwritten (step_end
   * waited already; this covers callers that begin twice) */
  CU_TRY(cudaStreamSynchronize(c->st), "step begin");
  pl_cu_prof_step_begin(c->prof, c->st);
  size_t total = 0;
  for (size_t i = 0; i < sizeof parts / sizeof *parts; i++)
    total += (parts[i].n + 3) & ~(size_t)3; /* 16-byte aligned sections */
  if (total > c->stage_cap) {
    size_t cap = total * 2;
    if (c->h_stage)
      cudaFreeHost(c->h_stage);
    cu_free(be, c->d_stage);
    c->h_stage = NULL;
    c->d_stage = NULL;
    c->stage_cap = 0;
    if (cudaMallocHost((void **)&c->h_stage, cap * sizeof(int32_t)) != cudaSuccess ||
        !(c->d_stage = cu_alloc(be, cap * sizeof(int32_t)))) {
      cudaGetLastError();
      return pl_fail(PL_ENOMEM, "out of memory staging a step plan of %zu indices", total);
    }
    c->stage_cap = cap;
  }
  size_t off = 0;
  for (size_t i = 0; i < sizeof parts / sizeof *parts; i++) {
    if (parts[i].n)
      memcpy(c->h_stage + off, parts[i].src, parts[i].n * sizeof(int32_t));
    *parts[i].dst = parts[i].n ? c->d_stage + off : NULL;
    off += (parts[i].n + 3) & ~(size_t)3;
  }
  /* the longest context sizes the attention's split-KV grid; without seq_lens, the block
   * tables' bound */
  c->max_ctx = p->seq_lens ? 0 : p->max_blocks_per_seq * p->block_size;
  for (size_t i = 0; p->seq_lens && i < ns; i++)
    c->max_ctx = p->seq_lens[i] > c->max_ctx ? p->seq_lens[i] : c->max_ctx;
  c->graph_ctx = graph_key_ctx(c, p);
  c->xcast_src = NULL;
  pl_cu_prof_op_begin(c->prof, c->st);
  CU_TRY(cudaMemcpyAsync(c->d_stage, c->h_stage, off * sizeof(int32_t), cudaMemcpyHostToDevice,
                         c->st), "staging the step plan");
  pl_cu_prof_op_end(c->prof, c->st, "stage plan");
  c->plan = p;
  return 0;
}

static int cu_graph_begin(pl_backend *be, const void *tag) {
  cu_backend *c = CU(be);
  if (c->graph_ctx < 0 || !c->plan)
    return 0;
  pl_cu_graph_key k = {tag, c->plan->n_tokens, c->graph_ctx, c->plan->max_blocks_per_seq};
  c->xcast_src = NULL;
  /* timed as one op; a recording starting here times nothing until its launch in graph_end */
  pl_cu_prof_op_begin(c->prof, c->st);
  int rc = pl_cu_graphs_begin(c->graphs, &k, c->gen, c->st);
  if (rc == 1)
    pl_cu_prof_op_end(c->prof, c->st, "graph replay");
  else
    pl_cu_prof_op_drop(c->prof);
  return rc;
}

static int cu_graph_end(pl_backend *be, int rc) {
  cu_backend *c = CU(be);
  c->xcast_src = NULL;
  int recording = pl_cu_graphs_recording(c->graphs);
  rc = pl_cu_graphs_end(c->graphs, rc, c->gen, c->st);
  if (recording && rc == 0) {
    pl_cu_prof_op_begin(c->prof, c->st);
    rc = pl_cu_graphs_launch_recorded(c->graphs, c->st);
    pl_cu_prof_op_end(c->prof, c->st, "graph record");
  }
  return rc;
}

static int cu_step_end(pl_backend *be) {
  cu_backend *c = CU(be);
  c->plan = NULL;
  cudaError_t e = cudaStreamSynchronize(c->st);
  if (e == cudaSuccess)
    e = cudaGetLastError();
  if (e == cudaSuccess)
    pl_cu_prof_step_end(c->prof);
  return e == cudaSuccess ? 0 : cuda_fail(e, "step");
}

static int run_embed(pl_backend *be, float *x, const pl_tensor *table) {
  cu_backend *c = CU(be);
  return pl_cu_get_rows(wt(table), c->d_tokens, c->plan->n_tokens, x, c->st);
}

static int run_rmsnorm(pl_backend *be, float *y, const float *x, const pl_tensor *w, int n, int d,
                      float eps) {
  K_TRY(pl_cu_rmsnorm(y, x, wt(w)->data, n, d, eps, CU(be)->st), "rmsnorm");
  return 0;
}

/* y[n][R] = x[n][C] · W^T. cuBLAS is column-major: W (row-major R x C) is a C x R matrix with
 * leading dimension C, so y^T (R x n) = op_T(W) · x^T. */
static int gemm(cu_backend *c, float *y, int ldy, const void *W, cudaDataType wt_type,
                const void *x, int R, int n, int C, cublasComputeType_t ct) {
  const float one = 1.f, zero = 0.f;
  cublasStatus_t s = cublasGemmEx(c->blas, CUBLAS_OP_T, CUBLAS_OP_N, R, n, C, &one, W, wt_type,
                                  C, x, wt_type, C, &zero, y, CUDA_R_32F, ldy, ct,
                                  CUBLAS_GEMM_DEFAULT);
  return s == CUBLAS_STATUS_SUCCESS ? 0 : blas_fail(s, "GEMM");
}

/* xcast = x[n] as type, unless it holds that already (the matmuls of one input in a row) */
static int cast_input(cu_backend *c, const float *x, size_t n, pl_dtype type) {
  if (c->xcast_src == x && c->xcast_n == n && c->xcast_type == type)
    return 0;
  c->xcast_src = NULL;
  PL_TRY(grow(c, &c->xcast, &c->xcast_bytes, n * 2, "matmul input"));
  K_TRY(pl_cu_cast(c->xcast, type, x, n, c->st), "cast");
  c->xcast_src = x;
  c->xcast_n = n;
  c->xcast_type = type;
  return 0;
}

static int run_matmul(pl_backend *be, float *y, const float *x, int n, const pl_tensor *W,
                     const pl_tensor *bias) {
  cu_backend *c = CU(be);
  const pl_cu_weight *w = wt(W);
  int R = (int)w->rows, C = (int)w->cols;
  if (n <= 0)
    return 0;
  if (be->batch_invariant) {
    /* the GEMV sums each output row in one fixed order whatever n is (cuBLAS picks its
     * algorithm, split-K included, from the shape), so a row's bits do not depend on the other
     * rows; in slices of PL_CU_GEMV_MAX_N rows, each slice reading the weights once more */
    for (int j = 0; j < n; j += PL_CU_GEMV_MAX_N) {
      int m = n - j < PL_CU_GEMV_MAX_N ? n - j : PL_CU_GEMV_MAX_N;
      PL_TRY(pl_cu_qgemv(w, x + (size_t)j * C, m, y + (size_t)j * R, c->st));
    }
  } else switch (w->type) {
  case PL_DT_F32:
    PL_TRY(gemm(c, y, R, w->data, CUDA_R_32F, x, R, n, C, CUBLAS_COMPUTE_32F_FAST_TF32));
    break;
  case PL_DT_F16:
  case PL_DT_BF16:
    PL_TRY(cast_input(c, x, (size_t)n * C, w->type));
    PL_TRY(gemm(c, y, R, w->data, w->type == PL_DT_F16 ? CUDA_R_16F : CUDA_R_16BF, c->xcast, R,
                n, C, CUBLAS_COMPUTE_32F));
    break;
  default:
    if (n <= PL_CU_GEMV_MAX_N) {
      PL_TRY(pl_cu_qgemv(w, x, n, y, c->st));
      break;
    }
    PL_TRY(cast_input(c, x, (size_t)n * C, PL_DT_BF16));
    if (n <= c->qgemm_max_n && R >= QGEMM_MIN_ROWS && pl_cu_qgemm_supported(w)) {
      PL_TRY(pl_cu_qgemm(w, c->xcast, n, y, 0, c->st));
      break;
    }
    /* large batches: dequantize row chunks to bf16, cuBLAS GEMM into y's columns (cuBLAS
     * is the faster tensor-core GEMM once the weight's three trips are spread over n rows) */
    int64_t chunk = (int64_t)(DEQ_CHUNK_ELEMS / (size_t)C);
    if (chunk > R)
      chunk = R;
    if (chunk < 1)
      chunk = 1;
    PL_TRY(grow(c, &c->wdeq, &c->wdeq_bytes, (size_t)chunk * C * 2, "dequantized weights"));
    for (int64_t r0 = 0; r0 < R; r0 += chunk) {
      int rows = (int)(R - r0 < chunk ? R - r0 : chunk);
      PL_TRY(pl_cu_dequant(w, r0, rows, c->wdeq, c->st));
      PL_TRY(gemm(c, y + r0, R, c->wdeq, CUDA_R_16BF, c->xcast, rows, n, C, CUBLAS_COMPUTE_32F));
    }
  }
  if (bias)
    K_TRY(pl_cu_add_bias(y, wt(bias)->data, n, R, c->st), "bias");
  if (c->xcast_src && c->xcast_src < y + (size_t)n * R && y < c->xcast_src + c->xcast_n)
    c->xcast_src = NULL; /* the cast's source was overwritten */
  return 0;
}

/* Ws run as one GEMM when weight_join placed them together (and the GEMV of batch-invariant
 * mode is not asked for): the joint output is split into ys, with the biases added. */
static int run_matmul_group(pl_backend *be, float *const *ys, const float *x, int n,
                            const pl_tensor *const *Ws, const pl_tensor *const *bs, int count) {
  cu_backend *c = CU(be);
  const pl_cu_weight *w0 = wt(Ws[0]);
  int joined = !be->batch_invariant && count <= PL_CU_SPLIT_MAX && n <= c->join_max_n &&
               (w0->type == PL_DT_BF16 || w0->type == PL_DT_F16);
  int64_t R = 0;
  for (int i = 0; joined && i < count; i++) {
    const pl_cu_weight *w = wt(Ws[i]);
    joined = w->type == w0->type && w->cols == w0->cols &&
             (const char *)w->data == (const char *)w0->data + (size_t)R * w0->cols * 2;
    R += w->rows;
  }
  if (!joined || n <= 0) {
    for (int i = 0; i < count; i++)
      PL_TRY(run_matmul(be, ys[i], x, n, Ws[i], bs[i]));
    return 0;
  }
  int C = (int)w0->cols;
  PL_TRY(cast_input(c, x, (size_t)n * C, w0->type));
  PL_TRY(grow(c, (void **)&c->ygroup, &c->ygroup_bytes, (size_t)n * R * sizeof(float),
              "matmul group output"));
  PL_TRY(gemm(c, c->ygroup, (int)R, w0->data, w0->type == PL_DT_F16 ? CUDA_R_16F : CUDA_R_16BF,
              c->xcast, (int)R, n, C, CUBLAS_COMPUTE_32F));
  pl_cu_split sp = {.count = count};
  for (int i = 0; i < count; i++) {
    sp.dst[i] = ys[i];
    sp.bias[i] = bs[i] ? wt(bs[i])->data : NULL;
    sp.cols[i] = (int)wt(Ws[i])->rows;
    if (c->xcast_src && c->xcast_src < ys[i] + (size_t)n * sp.cols[i] &&
        ys[i] < c->xcast_src + c->xcast_n)
      c->xcast_src = NULL; /* the cast's source is overwritten */
  }
  K_TRY(pl_cu_split_cols(&sp, c->ygroup, n, c->st), "matmul group split");
  return 0;
}

static int run_rope(pl_backend *be, float *x, const float *cs, int n, int n_heads,
                   const pl_rope_spec *rs) {
  K_TRY(pl_cu_rope(x, cs, n, n_heads, rs->head_dim, rs->rope_dim, rs->neox, CU(be)->st), "rope");
  return 0;
}

static int run_kv_write(pl_backend *be, int layer, const float *k, const float *v) {
  cu_backend *c = CU(be);
  K_TRY(pl_cu_kv_write(&c->kv, layer, k, v, c->d_slots, c->plan->n_tokens, c->st), "kv_write");
  return 0;
}

static int run_attention(pl_backend *be, int layer, float *out, const float *q, int n_head,
                        float scale) {
  cu_backend *c = CU(be);
  const pl_step_plan *p = c->plan;
  pl_cu_attn a = {&c->kv, layer, n_head, p->n_tokens, p->n_seqs, p->max_blocks_per_seq, scale,
                  c->d_positions, c->d_qsl, c->d_block_tables, q, out, c->max_ctx, c->n_sm,
                  be->batch_invariant, NULL};
  PL_TRY(grow(c, (void **)&c->attn_ws, &c->attn_ws_bytes, pl_cu_attention_ws(&a),
              "attention split-KV partials"));
  a.ws = c->attn_ws;
  K_TRY(pl_cu_attention(&a, c->st), "attention");
  return 0;
}

static int run_swiglu(pl_backend *be, float *y, const float *g, const float *u, size_t n) {
  K_TRY(pl_cu_swiglu(y, g, u, n, CU(be)->st), "swiglu");
  return 0;
}

static int run_add(pl_backend *be, float *y, const float *x, size_t n) {
  K_TRY(pl_cu_add(y, x, n, CU(be)->st), "add");
  return 0;
}

static int run_get_rows(pl_backend *be, float *dst, const float *src, int d) {
  cu_backend *c = CU(be);
  K_TRY(pl_cu_gather_rows(dst, src, c->d_logits_rows, c->plan->n_logits, d, c->st), "get_rows");
  return 0;
}

static int run_copy_blocks(pl_backend *be) {
  cu_backend *c = CU(be);
  K_TRY(pl_cu_copy_blocks(&c->kv, c->d_copy_src, c->d_copy_dst, c->plan->n_copies, c->st),
        "copy_blocks");
  return 0;
}

static int cu_download(pl_backend *be, void *host, const void *dev, size_t bytes) {
  cu_backend *c = CU(be);
  CU_TRY(cudaMemcpyAsync(host, dev, bytes, cudaMemcpyDeviceToHost, c->st), "download");
  CU_TRY(cudaStreamSynchronize(c->st), "download");
  return 0;
}

static int run_argmax(pl_backend *be, int32_t *ids, const float *src, int n, int d) {
  cu_backend *c = CU(be);
  PL_TRY(grow(c, &c->d_rows, &c->d_rows_bytes, (size_t)n * sizeof(int32_t), "argmax ids"));
  K_TRY(pl_cu_argmax((int32_t *)c->d_rows, src, n, d, c->st), "argmax");
  return cu_download(be, ids, c->d_rows, (size_t)n * sizeof(int32_t));
}

static int run_sample_reduce(pl_backend *be, pl_row_reduce *rows, const float *src, int n, int d,
                            const pl_logit_edit *edits, int n_edits) {
  cu_backend *c = CU(be);
  size_t bytes = (size_t)n * sizeof *rows, eb = (size_t)n_edits * sizeof *edits;
  /* one buffer: the rows' results, then the edits, then the edited rows */
  size_t off_e = (bytes + 255) & ~(size_t)255, off_x = (off_e + eb + 255) & ~(size_t)255;
  size_t need = n_edits > 0 ? off_x + (size_t)n * d * sizeof(float) : bytes;
  PL_TRY(grow(c, &c->d_rows, &c->d_rows_bytes, need, "sampling reductions"));
  char *base = c->d_rows;
  CU_TRY(cudaMemcpyAsync(base, rows, bytes, cudaMemcpyHostToDevice, c->st), "sampling inputs");
  if (n_edits > 0)
    CU_TRY(cudaMemcpyAsync(base + off_e, edits, eb, cudaMemcpyHostToDevice, c->st),
           "logit edits");
  K_TRY(pl_cu_sample_reduce((pl_row_reduce *)base, src, (float *)(base + off_x), n, d,
                            (const pl_logit_edit *)(base + off_e), n_edits, c->st),
        "sample_reduce");
  return cu_download(be, rows, base, bytes);
}

/* Device-to-device copies of up to 1 GiB, best of 5: bytes read + written per second. */
static double cu_mem_bandwidth(pl_backend *be) {
  cu_backend *c = CU(be);
  cudaSetDevice(c->dev);
  size_t fr = 0, tot = 0, n = (size_t)1 << 30;
  cudaMemGetInfo(&fr, &tot);
  while (n > ((size_t)16 << 20) && 2 * n > fr / 2)
    n /= 2;
  void *a = cu_alloc(be, n), *b = a ? cu_alloc(be, n) : NULL;
  cudaEvent_t e0 = NULL, e1 = NULL;
  double best = 0;
  if (b && cudaEventCreate(&e0) == cudaSuccess && cudaEventCreate(&e1) == cudaSuccess) {
    cudaMemcpyAsync(b, a, n, cudaMemcpyDeviceToDevice, c->st); /* warm-up */
    for (int i = 0; i < 5; i++) {
      float ms = 0;
      cudaEventRecord(e0, c->st);
      cudaMemcpyAsync(b, a, n, cudaMemcpyDeviceToDevice, c->st);
      cudaEventRecord(e1, c->st);
      if (cudaEventSynchronize(e1) == cudaSuccess && cudaEventElapsedTime(&ms, e0, e1) ==
          cudaSuccess && ms > 0 && 2.0 * n / (ms * 1e6) > best)
        best = 2.0 * n / (ms * 1e6);
    }
  }
  cudaGetLastError();
  if (e0)
    cudaEventDestroy(e0);
  if (e1)
    cudaEventDestroy(e1);
  cu_free(be, a);
  cu_free(be, b);
  return best;
}

static int cu_upload(pl_backend *be, void *dev, const void *host, size_t bytes) {
  cu_backend *c = CU(be);
  /* from pageable memory: returns once the bytes are staged, so `host` may be reused */
  CU_TRY(cudaMemcpyAsync(dev, host, bytes, cudaMemcpyHostToDevice, c->st), "upload");
  return 0;
}

/* ---- the op table: each op timed when PAGELLM_PROFILE is set (cu_profile.h) ---- */

#define PROFILED(label, call) PROFILED_(label, call, c_->xcast_src = NULL)
#define PROFILED_(label, call, before)                                                         \
  do {                                                                                         \
    cu_backend *c_ = CU(be);                                                                   \
    pl_cu_prof *p_ = pl_cu_graphs_recording(c_->graphs) ? NULL : c_->prof;                     \
    before;                                                                                    \
    pl_cu_prof_op_begin(p_, c_->st);                                                           \
    int rc_ = (call);                                                                          \
    pl_cu_prof_op_end(p_, c_->st, label);                                                      \
    return rc_;                                                                                \
  } while (0)

static int cu_embed(pl_backend *be, float *x, const pl_tensor *table) {
  PROFILED("embed", run_embed(be, x, table));
}
static int cu_rmsnorm(pl_backend *be, float *y, const float *x, const pl_tensor *w, int n, int d,
                      float eps) {
  PROFILED("rmsnorm", run_rmsnorm(be, y, x, w, n, d, eps));
}
static int cu_matmul(pl_backend *be, float *y, const float *x, int n, const pl_tensor *W,
                     const pl_tensor *bias) {
  PROFILED_(n <= PL_CU_GEMV_MAX_N ? "matmul n<=8" : "matmul", run_matmul(be, y, x, n, W, bias),
            (void)0);
}
static int cu_matmul_group(pl_backend *be, float *const *ys, const float *x, int n,
                           const pl_tensor *const *Ws, const pl_tensor *const *bs, int count) {
  PROFILED_(n <= PL_CU_GEMV_MAX_N ? "matmul n<=8" : "matmul",
            run_matmul_group(be, ys, x, n, Ws, bs, count), (void)0);
}
static int cu_rope(pl_backend *be, float *x, const float *cs, int n, int n_heads,
                   const pl_rope_spec *rs) {
  PROFILED("rope", run_rope(be, x, cs, n, n_heads, rs));
}
static int cu_kv_write(pl_backend *be, int layer, const float *k, const float *v) {
  PROFILED("kv_write", run_kv_write(be, layer, k, v));
}
static int cu_attention(pl_backend *be, int layer, float *out, const float *q, int n_head,
                        float scale) {
  const pl_step_plan *p = CU(be)->plan;
  PROFILED(p && p->n_tokens == p->n_seqs ? "attention decode" : "attention mixed",
           run_attention(be, layer, out, q, n_head, scale));
}
static int cu_swiglu(pl_backend *be, float *y, const float *g, const float *u, size_t n) {
  PROFILED("swiglu", run_swiglu(be, y, g, u, n));
}
static int cu_add(pl_backend *be, float *y, const float *x, size_t n) {
  PROFILED("add", run_add(be, y, x, n));
}
static int cu_get_rows(pl_backend *be, float *dst, const float *src, int d) {
  PROFILED("get_rows", run_get_rows(be, dst, src, d));
}
static int cu_copy_blocks(pl_backend *be) { PROFILED("copy_blocks", run_copy_blocks(be)); }
static int cu_argmax(pl_backend *be, int32_t *ids, const float *src, int n, int d) {
  PROFILED("argmax+download", run_argmax(be, ids, src, n, d));
}
static int cu_sample_reduce(pl_backend *be, pl_row_reduce *rows, const float *src, int n, int d,
                            const pl_logit_edit *edits, int n_edits) {
  PROFILED("sample_reduce", run_sample_reduce(be, rows, src, n, d, edits, n_edits));
}

static const pl_backend_ops cuda_ops = {
    .name = "cuda",
    .destroy = cu_destroy,
    .alloc = cu_alloc,
    .free = cu_free,
    .weight_upload = cu_weight_upload,
    .weight_fill_random = cu_weight_fill_random,
    .weight_join = cu_weight_join,
    .kv_bytes_per_token = cu_kv_bytes_per_token,
    .kv_init = cu_kv_init,
    .kv_bytes = cu_kv_bytes,
    .kv_dtype = cu_kv_dtype,
    .mem_info = cu_mem_info,
    .step_begin = cu_step_begin,
    .step_end = cu_step_end,
    .embed = cu_embed,
    .rmsnorm = cu_rmsnorm,
    .matmul = cu_matmul,
    .matmul_group = cu_matmul_group,
    .rope = cu_rope,
    .kv_write = cu_kv_write,
    .attention = cu_attention,
    .swiglu = cu_swiglu,
    .add = cu_add,
    .get_rows = cu_get_rows,
    .copy_blocks = cu_copy_blocks,
    .argmax = cu_argmax,
    .sample_reduce = cu_sample_reduce,
    .mem_bandwidth = cu_mem_bandwidth,
    .download = cu_download,
    .upload = cu_upload,
    .graph_bucket = cu_graph_bucket,
    .graph_begin = cu_graph_begin,
    .graph_end = cu_graph_end,
};

int pl_backend_cuda_built(void) { return 1; }

void *pl_backend_cuda_stream(pl_backend *be) { return CU(be)->st; }

int pl_backend_cuda_create(int ordinal, pl_backend **out) {
  *out = NULL;
  int n = 0, drv = 0, rt = 0;
  cudaDriverGetVersion(&drv);
  cudaRuntimeGetVersion(&rt);
  cudaError_t e = cudaGetDeviceCount(&n);
  if (e == cudaErrorInsufficientDriver) {
    cudaGetLastError();
    return pl_fail(PL_EDEVICE, "the NVIDIA driver supports CUDA %d.%d, this pagellm needs %d.%d: "
                   "update the driver", drv / 1000, drv % 1000 / 10, rt / 1000, rt % 1000 / 10);
  }
  if (e != cudaSuccess || n == 0) {
    cudaGetLastError();
    return pl_fail(PL_EDEVICE, "no usable NVIDIA GPU (%s)",
                   e != cudaSuccess ? cudaGetErrorString(e) : "none found");
  }
  if (ordinal >= n)
    return pl_fail(PL_EINVAL, "cuda:%d asked for, but this machine has %d GPU%s", ordinal, n,
                   n == 1 ? "" : "s");
  struct cudaDeviceProp prop;
  CU_TRY(cudaGetDeviceProperties(&prop, ordinal), "device properties");
  if (prop.major < 8)
    return pl_fail(PL_EUNSUPPORTED, "GPU %d (%s) has compute capability %d.%d; pagellm needs "
                   "8.0 (Ampere) or newer", ordinal, prop.name, prop.major, prop.minor);
  CU_TRY(cudaSetDevice(ordinal), "set device");
  cu_backend *c = pl_calloc(1, sizeof *c);
  if (!c)
    return pl_fail(PL_ENOMEM, "out of memory");
  c->base.ops = &cuda_ops;
  c->dev = ordinal;
  c->n_sm = prop.multiProcessorCount;
  e = cudaStreamCreateWithFlags(&c->st, cudaStreamNonBlocking);
  if (e != cudaSuccess) {
    cu_destroy(&c->base);
    return cuda_fail(e, "stream");
  }
  cublasStatus_t bs = cublasCreate(&c->blas);
  if (bs != CUBLAS_STATUS_SUCCESS) {
    c->blas = NULL;
    cu_destroy(&c->base);
    return blas_fail(bs, "init");
  }
  cublasSetStream(c->blas, c->st);
  c->blas_ws = cu_alloc(&c->base, BLAS_WS_BYTES);
  c->graphs = pl_cu_graphs_create();
  if (!c->blas_ws || !c->graphs ||
      cublasSetWorkspace(c->blas, c->blas_ws, BLAS_WS_BYTES) != CUBLAS_STATUS_SUCCESS) {
    cu_destroy(&c->base);
    return pl_fail(PL_ENOMEM, "out of memory for the cuBLAS workspace");
  }
  c->prof = pl_cu_prof_create();
  const char *jn = getenv("PAGELLM_CUDA_JOIN_MAX_N");
  c->join_max_n = jn ? atoi(jn) : JOIN_MAX_N;
  const char *qn = getenv("PAGELLM_CUDA_QGEMM_MAX_N");
  c->qgemm_max_n = qn ? atoi(qn) : QGEMM_MAX_N;
  size_t fr = 0, tot = 0;
  cudaMemGetInfo(&fr, &tot);
  snprintf(c->base.desc, sizeof c->base.desc,
           "CUDA device %d: %.80s, %.1f GiB (%.1f free), compute capability %d.%d, %d SMs, driver "
           "CUDA %d.%d", ordinal, prop.name, tot / 1073741824.0, fr / 1073741824.0, prop.major,
           prop.minor, prop.multiProcessorCount, drv / 1000, drv % 1000 / 10);
  *out = &c->base;
  return PL_OK;
}
