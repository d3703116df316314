/* CPU backend internals shared by its files (backend_cpu.c, attention_cpu.c).
 * KV layout, per layer and for K and V separately (float32):
 *     [block][kv_head][slot][head_dim]
 * so one block's keys for one KV head are block_size * head_dim contiguous floats: the
 * attention inner loop streams them with the block table lookup hoisted out. */
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
  float *k_cache, *v_cache;  /* [n_layer][n_blocks][n_kv_head][block_size][head_dim] */
  size_t layer_stride;       /* floats per layer = n_blocks * n_kv * bs * hd */
  float *attn_scratch;       /* [n_threads][scratch_per_thread] */
  size_t scratch_per_thread; /* floats: acc[g][hd] + m[g] + l[g] + scores[bs] */
  void *mm_work;             /* matmul scratch, grown only outside steady state */
  size_t mm_work_size;
  void **rand_weights;       /* weight_fill_random's buffers, freed at destroy */
  int n_rand_weights, cap_rand_weights;
} pl_cpu_backend;

int pl_cpu_attention(pl_backend *be, int layer, float *out, const float *q, int n_head,
                     float scale);
#endif
