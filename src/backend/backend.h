/* The fixed op set a backend implements. The model runner (model/runner.c) is written only in
 * terms of these ops; the CPU backend (backend/cpu/) and the CUDA backend (backend/cuda/)
 * provide the table.
 *
 * Memory. Activation buffers are backend memory from `alloc` (host memory on the CPU, device
 * memory on CUDA), always float32 [rows][cols]; the runner never dereferences them. Weights are
 * pl_tensor views of the loaded file; `weight_upload` gives each tensor its backend copy
 * (t->dev) once at load, or `weight_fill_random` generates it there (random-weight models).
 * Norms and biases are tensors too (F32, 1-D).
 *
 * A step. `step_begin(plan)` stages the plan's index arrays in backend memory (one copy per
 * step); the ops of that step read the staged copy, never host pointers: embed reads
 * token_ids, kv_write slot_mapping, attention the whole plan, get_rows logits_rows, copy_blocks
 * the copy lists. Ops may run asynchronously (CUDA: in stream order); `step_end` waits and
 * returns the first error of the step. Every op returns 0 or a negative PL_E* status with
 * pl_last_error() set; after an error the caller ends the step and reports it.
 *
 * KV cache: the backend owns its layout and element type. It is created once for n_blocks
 * blocks of block_size tokens for every layer and addressed only through slot numbers
 * (block * block_size + offset) and block tables, never by sequence. */
#ifndef PL_BACKEND_BACKEND_H
#define PL_BACKEND_BACKEND_H
#include <stddef.h>
#include <stdint.h>

#include "backend/tensor.h"
#include "plan/step_plan.h"

typedef struct pl_backend pl_backend;

#define PL_MATMUL_GROUP_MAX 4 /* matmuls of one input that matmul_group takes at once */

typedef struct pl_kv_spec {
  int n_layer, n_kv_head, head_dim;
  int n_head;       /* query heads (sizes the attention scratch) */
  int block_size;   /* tokens per block */
  int n_blocks;     /* including the null block 0 */
  pl_dtype dtype;   /* element type of K and V; PL_DT_AUTO = the backend's default */
} pl_kv_spec;

typedef struct pl_rope_spec {
  int head_dim, rope_dim;
  int neox;                    /* 1: rotate (x[i], x[i+rope_dim/2]); 0: (x[2i], x[2i+1]) */
} pl_rope_spec;

/* A sparse change of one logits row before its reduction: the sampler's logit processors for
 * token `id` (engine/sampler.h), applied in its order, each an f32 operation:
 *   x += bias; mask: x = -inf; rep != 1: x = x > 0 ? x / rep : x * rep;
 *   count > 0: x -= freq, x -= pres, then count - 1 more times x -= freq. */
typedef struct pl_logit_edit {
  int32_t row, id;
  float bias, rep, freq, pres;
  int32_t count;    /* occurrences of id in the output so far */
  int32_t mask;     /* 1: the token is masked (min_tokens) */
} pl_logit_edit;

/* One logits row reduced where it was computed, so that the host can sample without the row
 * (engine/sampler_reduced.c says when that is exact). x is the row after its edits, s = x *
 * inv_temp in f32, raw the row before them; "first id with" sums run in vocabulary order. The reference implementation is pl_row_reduce_ref
 * (engine/sampler.h); a backend's must give the same ids and sums within float64 rounding. */
#define PL_TOPK 256
typedef struct pl_row_reduce {
  float inv_temp;   /* in: 1 / temperature (1 for a greedy row) */
  double u;         /* in: a uniform draw in [0, 1) for `drawn`; < 0: no draw */
  int32_t n_top;    /* out: min(PL_TOPK, d) */
  int32_t n_finite; /* out: how many s are > -inf */
  int32_t drawn;    /* out: the first id i with u*z < sum_{j<=i} expf(s_j - s_max) (d-1 if none);
                       -1 when u < 0 */
  float drawn_raw;  /* out: raw[drawn] */
  double z;         /* out: sum_j expf(s_j - s_max), float64 accumulation */
  double lse_raw;   /* out: log sum_j exp(raw_j), float64 */
  int32_t top_id[PL_TOPK]; /* out: [n_top] the ids of the largest s, descending, ties: lower id */
  float top_s[PL_TOPK];    /* out: [n_top] their s */
  float top_raw[PL_TOPK];  /* out: [n_top] their raw values */
} pl_row_reduce;

typedef struct pl_backend_ops {
  const char *name;
  void (*destroy)(pl_backend *be); /* frees the KV pool and every uploaded weight */
  void *(*alloc)(pl_backend *be, size_t bytes);   /* NULL on failure; 64-byte aligned */
  void (*free)(pl_backend *be, void *p);
  /* Make t usable by the ops (sets t->dev; the CPU backend uses t->data in place). */
  int (*weight_upload)(pl_backend *be, pl_tensor *t);
  /* For a t->random tensor (--load-format dummy): allocate t->nbytes of backend memory and
   * fill it where it lives with element i = pl_wrand_value(t->rand_stream, i, t->rand_scale)
   * in t->type (F32, F16 or BF16, round to nearest even; other types PL_EUNSUPPORTED), with
   * no host buffer of the tensor's size. Bit-identical across backends. Sets t->dev; the CPU
   * backend also sets t->data (it owns that memory until destroy). */
  int (*weight_fill_random)(pl_backend *be, pl_tensor *t);
  /* After upload: place ts[0..count) (count <= PL_MATMUL_GROUP_MAX; one type, one ne0), the
   * weights of one matmul_group, in one allocation, rows in order. The backend may decline
   * (types it does not join, no memory for the move): 0 either way, and the tensors stay
   * usable; < 0 only for a device error. NULL: nothing to do. */
  int (*weight_join)(pl_backend *be, pl_tensor *const *ts, int count);

  /* KV: bytes one token of context takes in every layer's K and V for spec (n_blocks and
   * block_size ignored; spec->dtype AUTO resolved as kv_init would); 0 if the dtype is not
   * supported. kv_init allocates the pool and sets the resolved dtype in the spec it keeps. */
  size_t (*kv_bytes_per_token)(const pl_backend *be, const pl_kv_spec *spec);
  int (*kv_init)(pl_backend *be, const pl_kv_spec *spec);
  size_t (*kv_bytes)(const pl_backend *be);
  pl_dtype (*kv_dtype)(const pl_backend *be);
  /* device memory now free and in total, bytes (the CPU backend reports 0, 0: host memory is
   * not budgeted by the backend) */
  void (*mem_info)(pl_backend *be, size_t *free_bytes, size_t *total_bytes);

  int (*step_begin)(pl_backend *be, const pl_step_plan *plan);
  int (*step_end)(pl_backend *be);

  /* x[n_tokens][d] = rows token_ids[] of the embedding table (any weight type) */
  int (*embed)(pl_backend *be, float *x, const pl_tensor *table);
  /* y[n][d] = rmsnorm(x[n][d]) * w[d]  (w F32 [d]); y may alias x */
  int (*rmsnorm)(pl_backend *be, float *y, const float *x, const pl_tensor *w, int n, int d,
                 float eps);
  /* y[n][W.ne1] = x[n][W.ne0] · W^T (+ bias[W.ne1] if bias != NULL) */
  int (*matmul)(pl_backend *be, float *y, const float *x, int n, const pl_tensor *W,
                const pl_tensor *bias);
  /* ys[i][n][Ws[i].ne1] = x[n][ne0] · Ws[i]^T (+ biases[i] unless NULL), i < count <=
   * PL_MATMUL_GROUP_MAX: the matmuls of one input (q/k/v, gate/up), as count matmul calls. A
   * backend may run them as one (CUDA: one GEMM over weights that weight_join placed together).
   * NULL: the runner makes the matmul calls. */
  int (*matmul_group)(pl_backend *be, float *const *ys, const float *x, int n,
                      const pl_tensor *const *Ws, const pl_tensor *const *biases, int count);
  /* rotate each head of x[n][n_heads*head_dim]; cs[n][rope_dim] (backend memory) holds, per
   * token, cos of its rope_dim/2 angles then their sin (computed once per step) */
  int (*rope)(pl_backend *be, float *x, const float *cs, int n, int n_heads,
              const pl_rope_spec *rs);
  /* write k/v [n_tokens][n_kv_head*head_dim] of layer into the cache at slot_mapping[] */
  int (*kv_write)(pl_backend *be, int layer, const float *k, const float *v);
  /* out[n_tokens][n_head*head_dim]: causal paged attention of q over the cache per the plan */
  int (*attention)(pl_backend *be, int layer, float *out, const float *q, int n_head,
                   float scale);
  /* y[n] = silu(g[n]) * u[n] */
  int (*swiglu)(pl_backend *be, float *y, const float *g, const float *u, size_t n);
  /* y[n] += x[n] */
  int (*add)(pl_backend *be, float *y, const float *x, size_t n);
  /* dst[i][d] = src[logits_rows[i]][d] for the plan's n_logits rows */
  int (*get_rows)(pl_backend *be, float *dst, const float *src, int d);
  /* copy every layer's K and V of block copy_src[i] to copy_dst[i] (copy-on-write) */
  int (*copy_blocks)(pl_backend *be);
  /* ids[i] = argmax of src[i][0..d) for i < n (the lowest index on ties, 0 when no element
   * exceeds -inf), into HOST memory, outside a step. Greedy steps use it so that only n ids
   * cross to the host, not n x vocab logits. NULL: the engine downloads the logits. */
  int (*argmax)(pl_backend *be, int32_t *ids, const float *src, int n, int d);
  /* rows[i] (host memory, inputs set) = the reduction of src[i][0..d) for i < n after the
   * edits (host memory; src itself is not changed), outside a step. Sampling steps use it so
   * that a few KiB per row cross to the host, not the row. NULL: the engine downloads rows. */
  int (*sample_reduce)(pl_backend *be, pl_row_reduce *rows, const float *src, int n, int d,
                       const pl_logit_edit *edits, int n_edits);
  /* The memory roofline, GB/s (1e9 B/s), measured now: the CPU's threaded read bandwidth
   * (cpu/membw.h), the GPU's device-to-device copy (bytes read + written). 0 on failure. */
  double (*mem_bandwidth)(pl_backend *be);
  /* host <-> backend memory (memcpy on the CPU backend; ordered with the step's ops) */
  int (*download)(pl_backend *be, void *host, const void *dev, size_t bytes);
  int (*upload)(pl_backend *be, void *dev, const void *host, size_t bytes);

  /* Optional (NULL on the CPU): decode steps replayed from recordings (CUDA graphs, padded
   * to a few batch sizes like vLLM's). graph_bucket(n) = the batch size a decode step of n
   * sequences should be padded to (>= n), or 0 for no recording. In a step staged with that
   * many sequences, the runner brackets the layers' ops:
   *   graph_begin(tag) = 1: they were replayed from a recording (the runner skips them);
   *                      0: the runner issues them (the backend may record them);
   *   graph_end(rc)    = rc of those ops, or 1 when recording failed: they did not run and
   *                      must be issued again.
   * tag tells apart the callers (a runner each) whose buffers a recording holds. */
  int (*graph_bucket)(pl_backend *be, int n);
  int (*graph_begin)(pl_backend *be, const void *tag);
  int (*graph_end)(pl_backend *be, int rc);
} pl_backend_ops;

struct pl_backend {
  const pl_backend_ops *ops;
  char desc[192];     /* one line for logs: device name, memory, capability */
  int batch_invariant; /* set by the owner before the first step: every op must give a row the
                          same bits whatever the other rows are (the CPU ops always do) */
  int eager;           /* set by the owner: never replay recorded steps (--enforce-eager) */
};

/* Device selection: "auto" (CUDA when built in and a GPU is usable, else the CPU), "cpu",
 * "cuda" or "cuda:N". n_threads is the CPU backend's thread count (<= 0: all cores). Errors:
 * PL_EINVAL for a malformed name, PL_EUNSUPPORTED when CUDA is asked for but not built in, or
 * the CUDA backend's own errors (no GPU, driver too old). */
int pl_backend_create(const char *device, int n_threads, pl_backend **out);

/* The CPU backend (n_threads <= 0: all cores). */
int pl_backend_cpu_create(int n_threads, pl_backend **out);
/* The CUDA backend on GPU `ordinal` (backend/cuda/); PL_EUNSUPPORTED when not built in. */
int pl_backend_cuda_create(int ordinal, pl_backend **out);
/* 1 when this build has the CUDA backend. */
int pl_backend_cuda_built(void);
#endif
