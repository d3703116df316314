/* The CUDA backend's own kernels (cu_kernels.cu: elementwise ops and the KV cache;
 * cu_attention.cu: paged attention). Weight decoding is in cu_quant.h. Every launcher enqueues
 * on `stream` and returns the launch's cudaError_t as an int (0 = queued); the backend turns a
 * failure into a PL_EDEVICE status naming the op. Activations are f32 row-major; the KV cache
 * holds kv_type elements (PL_DT_BF16, PL_DT_F16 or PL_DT_F32) in the layout
 *   K[layer][block][kv_head][block_size][head_dim]   (V the same)
 * so one (block, KV head) is block_size*head_dim contiguous elements: coalesced 16-byte loads. */
#ifndef PL_BACKEND_CUDA_CU_KERNELS_H
#define PL_BACKEND_CUDA_CU_KERNELS_H
#include <stddef.h>
#include <stdint.h>

#include "backend/cuda/cu_quant.h"

#ifdef __cplusplus
extern "C" {
#endif

/* y[n][d] = x / rms(x) * w, rows of d; y may alias x */
int pl_cu_rmsnorm(float *y, const float *x, const float *w, int n, int d, float eps,
                  pl_cu_stream s);
/* rotate the first rope_dim dims of every head of x[n][n_heads*head_dim]; cs[n][rope_dim] holds
 * cos of the rope_dim/2 angles then their sin; neox pairs (i, i+half), else (2i, 2i+1) */
int pl_cu_rope(float *x, const float *cs, int n, int n_heads, int head_dim, int rope_dim,
               int neox, pl_cu_stream s);
/* y[i] = silu(g[i]) * u[i] */
int pl_cu_swiglu(float *y, const float *g, const float *u, size_t n, pl_cu_stream s);
/* y[i] += x[i] */
int pl_cu_add(float *y, const float *x, size_t n, pl_cu_stream s);
/* y[r][d] += b[d] for r < n */
int pl_cu_add_bias(float *y, const float *b, int n, int d, pl_cu_stream s);
/* The outputs of one GEMM over weights stacked by rows (backend.h's matmul_group). */
#define PL_CU_SPLIT_MAX 4
typedef struct pl_cu_split {
  float *dst[PL_CU_SPLIT_MAX];        /* [n][cols[i]] */
  const float *bias[PL_CU_SPLIT_MAX]; /* [cols[i]] or NULL */
  int cols[PL_CU_SPLIT_MAX];
  int count;
} pl_cu_split;
/* dst[i][r][c] = src[r][off_i + c] (+ bias[i][c]), r < n, where src rows are ld = sum of cols
 * and off_i the sum of the cols before i */
int pl_cu_split_cols(const pl_cu_split *sp, const float *src, int n, pl_cu_stream s);
/* dst[i][d] = src[rows[i]][d], i < n (rows in device memory) */
int pl_cu_gather_rows(float *dst, const float *src, const int32_t *rows, int n, int d,
                      pl_cu_stream s);
/* ids[i] = index of the first maximum of src[i][0..d), i < n (0 when none exceeds -inf) */
int pl_cu_argmax(int32_t *ids, const float *src, int n, int d, pl_cu_stream s);
/* rows[i] (device memory, inputs set) = backend.h's sampling reduction of src[i][0..d) after
 * edits[n_edits] (device memory), which go to scratch[n][d] (src is not changed) */
struct pl_row_reduce;
struct pl_logit_edit;
int pl_cu_sample_reduce(struct pl_row_reduce *rows, const float *src, float *scratch, int n, int d,
                        const struct pl_logit_edit *edits, int n_edits, pl_cu_stream s);
/* dst[i] = (type) src[i], type PL_DT_BF16 or PL_DT_F16 (round to nearest even) */
int pl_cu_cast(void *dst, pl_dtype type, const float *src, size_t n, pl_cu_stream s);

/* The geometry of the KV pool. */
typedef struct pl_cu_kv {
  void *k, *v;          /* layer 0 of each; a layer is layer_elems elements further */
  pl_dtype type;        /* element type */
  size_t layer_elems;   /* n_blocks * n_kv_head * block_size * head_dim */
  int n_layer, n_blocks, n_kv_head, block_size, head_dim;
} pl_cu_kv;

/* K/V rows k, v [n_tokens][n_kv_head*head_dim] of `layer` to their slots (slot < 0: skipped) */
int pl_cu_kv_write(const pl_cu_kv *kv, int layer, const float *k, const float *v,
                   const int32_t *slots, int n_tokens, pl_cu_stream s);
/* every layer's K and V block src[i] copied over block dst[i], i < n (device arrays) */
int pl_cu_copy_blocks(const pl_cu_kv *kv, const int32_t *src, const int32_t *dst, int n,
                      pl_cu_stream s);

/* Causal paged attention over the staged step plan (device arrays). */
typedef struct pl_cu_attn {
  const pl_cu_kv *kv;
  int layer, n_head, n_tokens, n_seqs, max_blocks_per_seq;
  float scale;
  const int32_t *positions, *query_start_loc, *block_tables;
  const float *q;       /* [n_tokens][n_head*head_dim] */
  float *out;           /* [n_tokens][n_head*head_dim] */
  int max_ctx;          /* keys of the step's longest context (its largest seq_len) */
  int n_sm;             /* the device's multiprocessors: the split-KV grid fills them */
  int fixed_split;      /* batch-invariant: every context split at the same key offsets */
  float *ws;            /* split-KV partials, pl_cu_attention_ws() bytes (NULL when 0) */
} pl_cu_attn;
/* Bytes of `ws` the launch needs for this shape (0: the step runs unsplit). */
size_t pl_cu_attention_ws(const pl_cu_attn *a);
/* cudaErrorInvalidValue for a head_dim that is not a multiple of 8 (16-bit KV) or 4 (f32 KV)
 * up to 256 (pl_cu_attention_supported says so first), or a missing ws */
int pl_cu_attention(const pl_cu_attn *a, pl_cu_stream s);
/* 1 when pl_cu_attention takes head_dim for KV elements of `type` */
int pl_cu_attention_supported(int head_dim, pl_dtype type);
/* 1 when the shape runs on the tensor-core kernel (bf16/f16 KV, head_dim 64, 80, 96, 128 or
 * 256, and the device runs it); then *ctas_per_sm (if not NULL) is how many of its CTAs an SM
 * holds. Other shapes, and every shape with PAGELLM_CUDA_ATTN=simt, take the SIMT kernel. */
int pl_cu_attn_mma_supported(int head_dim, pl_dtype type, int *ctas_per_sm);

/* The CUDA backend's stream (a cudaStream_t), on which its ops run: for benchmarks that time
 * the ops with events. */
struct pl_backend;
void *pl_backend_cuda_stream(struct pl_backend *be);

#ifdef __cplusplus
}
#endif
#endif
