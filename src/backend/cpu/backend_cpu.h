/* CPU backend internals shared by its files (backend_cpu.c, attention_cpu.c).
 * KV layout, per layer and for K and V separately:
 *     [block][kv_head][slot][row]     row = head_dim elements of kv.dtype
 * so one block's keys for one KV head are block_size rows, contiguous: the attention inner
 * loop streams them with the block table lookup hoisted out. kv.dtype is F32, F16, BF16 or
 * Q8_0 (ggml's blocks of 32 with an f16 scale: the same 68 bytes per 64-element row as one
 * f32 scale per (token, head) would take, and finer); the attention decodes rows of the other
 * types to f32 a tile at a time. */
#ifndef PL_BACKEND_CPU_H
#define PL_BACKEND_CPU_H
#include "backend/backend.h"
#include "util/threadpool.h"

typedef struct pl_cpu_backend {
  pl_backend base;
  pl_threadpool *tp;
  int n_threads;
  pl_kv_spec kv;
  const pl_step_plan *plan;  /* the step between step_begin and step_end */
  uint8_t *k_cache, *v_cache; /* [n_layer][n_blocks][n_kv_head][block_size][row_bytes] */
  size_t row_bytes;           /* one (slot, head) row: head_dim elements of kv.dtype */
  size_t layer_stride;        /* bytes per layer = n_blocks * n_kv * bs * row_bytes */
  float *attn_scratch;       /* [n_threads][scratch_per_thread] */
  size_t scratch_per_thread; /* floats: acc[g][hd] + m[g] + l[g] + scores[bs] + K, V rows,
                              * or K, V tiles [PL_ATTN_TILE][hd] decoded to f32 */
  void *mm_work;             /* matmul scratch, grown only outside steady state */
  size_t mm_work_size;
  void **rand_weights;       /* weight_fill_random's buffers, freed at destroy */
  int n_rand_weights, cap_rand_weights;
} pl_cpu_backend;

int pl_cpu_attention(pl_backend *be, int layer, float *out, const float *q, int n_head,
                     float scale);
/* Bytes of one KV row of head_dim elements of dtype t (AUTO: F32); 0 if the CPU cannot keep
 * KV in t (Q8_0 needs head_dim % 32 == 0). */
size_t pl_cpu_kv_row_bytes(pl_dtype t, int head_dim);
#endif
