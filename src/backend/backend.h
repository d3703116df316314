/* The fixed op set a backend implements (DESIGN.md "Backends"). The model runner
 * (model/runner.c) is written only in terms of these ops, so a CUDA backend plugs in by
 * providing the same table. Activation buffers are backend memory obtained from `alloc`;
 * weights are pl_tensor views (host memory on the CPU backend).
 *
 * KV cache: the backend owns its layout. It is created once for n_blocks blocks of
 * block_size tokens for every layer and addressed only through slot numbers
 * (block * block_size + offset) and block tables, never by sequence.
 * All ops are synchronous on the CPU backend. */
#ifndef PL_BACKEND_BACKEND_H
#define PL_BACKEND_BACKEND_H
#include <stddef.h>
#include <stdint.h>

#include "backend/tensor.h"
#include "core/step_plan.h"

typedef struct pl_backend pl_backend;

typedef struct pl_kv_spec {
  int n_layer, n_kv_head, head_dim;
  int n_head;       /* query heads (sizes the attention scratch) */
  int block_size;   /* tokens per block */
  int n_blocks;     /* including the null block 0 */
} pl_kv_spec;

typedef struct pl_rope_spec {
  int head_dim, rope_dim;
  int neox;                    /* 1: rotate (x[i], x[i+rope_dim/2]); 0: (x[2i], x[2i+1]) */
} pl_rope_spec;

typedef struct pl_backend_ops {
  const char *name;
  void (*destroy)(pl_backend *be);
  void *(*alloc)(pl_backend *be, size_t bytes);   /* NULL on failure; 64-byte aligned */
  void (*free)(pl_backend *be, void *p);
  int (*kv_init)(pl_backend *be, const pl_kv_spec *spec); /* allocates the pool */
  size_t (*kv_bytes)(const pl_backend *be);
  /* x[n][d] = rows ids[n] of the embedding table (any weight type) */
  void (*embed)(pl_backend *be, float *x, const pl_tensor *table, const int32_t *ids, int n);
  /* y[n][d] = rmsnorm(x[n][d]) * w[d]  (w F32 [d]); y may alias x */
  void (*rmsnorm)(pl_backend *be, float *y, const float *x, const float *w, int n, int d,
                  float eps);
  /* y[n][W.ne1] = x[n][W.ne0] · W^T (+ bias[W.ne1] if bias != NULL) */
  void (*matmul)(pl_backend *be, float *y, const float *x, int n, const pl_tensor *W,
                 const float *bias);
  /* rotate each head of x[n][n_heads*head_dim]; cs[n][rope_dim] holds, per token, cos of its
   * rope_dim/2 angles then their sin (computed once per step for all heads and layers) */
  void (*rope)(pl_backend *be, float *x, const float *cs, int n, int n_heads,
               const pl_rope_spec *rs);
  /* write k/v [n][n_kv_head*head_dim] of layer into the cache at slot_mapping[n] */
  void (*kv_write)(pl_backend *be, int layer, const float *k, const float *v,
                   const int32_t *slot_mapping, int n);
  /* out[n_tokens][n_head*head_dim]: causal paged attention of q over the cache per plan */
  void (*attention)(pl_backend *be, int layer, float *out, const float *q, int n_head,
                    const pl_step_plan *plan, float scale);
  /* y[n] = silu(g[n]) * u[n] */
  void (*swiglu)(pl_backend *be, float *y, const float *g, const float *u, size_t n);
  /* y[n] += x[n] */
  void (*add)(pl_backend *be, float *y, const float *x, size_t n);
  /* dst[i][d] = src[rows[i]][d] */
  void (*get_rows)(pl_backend *be, float *dst, const float *src, const int32_t *rows, int n,
                   int d);
  /* copy every layer's K and V of block src[i] to dst[i] (copy-on-write) */
  void (*copy_blocks)(pl_backend *be, const int32_t *src, const int32_t *dst, int n);
  /* host <-> backend memory (memcpy on the CPU backend) */
  void (*download)(pl_backend *be, void *host, const void *dev, size_t bytes);
  void (*upload)(pl_backend *be, void *dev, const void *host, size_t bytes);
} pl_backend_ops;

struct pl_backend {
  const pl_backend_ops *ops;
};

/* The CPU backend (n_threads <= 0: all cores). */
int pl_backend_cpu_create(int n_threads, pl_backend **out);
#endif
