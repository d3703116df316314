/* Paging overhead of decode attention: the CPU backend's paged attention (K/V reached through
 * shuffled block tables) against the same block-level kernel (pl_attn_tile_f32) over one
 * contiguous K/V array per sequence ([kv_head][position][head_dim], no block table), same
 * threads, same math. A timed call runs every layer of a stack at least 256 MiB deep, as a
 * decode step does, so that the K/V come from memory and not from the last-level cache (one
 * layer of 16 x 1024 is 16-32 MiB: about this host's L3); times are per layer, and GB/s are
 * quoted against the measured read bandwidth (membw.h). The vLLM paper measured 20-26%
 * overhead for its 2023 GPU kernel; we aim under 5%.
 *   build/bench/bench_attention [n_seqs=16] [ctx=1024] [threads=2] [shuffle=1] [kv=f32]
 * Shapes are TinyLlama's (32 query heads, 4 KV heads, head_dim 64), block size 16. With kv =
 * f16, bf16 or q8_0 the paged cache holds that type (GB/s then counts its bytes) and the
 * contiguous run reads f32 K/V rounded through the same type, so the outputs still agree. */
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backend/backend.h"
#include "backend/cpu/backend_cpu.h"
#include "backend/cpu/kern/kern.h"
#include "backend/cpu/membw.h"
#include "util/alloc.h"
#include "util/threadpool.h"

#define NH 32
#define NKV 4
#define HD 64
#define BS 16

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

typedef struct {
  const float *K, *V, *q; /* K,V: [seq][kv][ctx][hd] */
  float *out;
  int n_seqs, ctx, n_layer;
  size_t layer_floats; /* K, V: n_layer stacks of [seq][kv][ctx][hd] */
  float *scratch;
  int prefetch; /* name the next tile to the kernel (1) or leave it to the hardware (0) */
} contig_job;

static void contig_task(void *p, int ith, int nth) {
  contig_job *j = p;
  const int g = NH / NKV;
  float qt[HD * PL_ATTN_LANES], m[PL_ATTN_LANES], l[PL_ATTN_LANES];
  float *acc = j->scratch + (size_t)ith * (g * HD + 2 * g + BS + 16);
  for (int it = ith; it < j->n_layer * j->n_seqs * NKV; it += nth) {
    int ly = it / (j->n_seqs * NKV), s = it / NKV % j->n_seqs, h = it % NKV;
    const float *K = j->K + ly * j->layer_floats + ((size_t)s * NKV + h) * j->ctx * HD;
    const float *V = j->V + ly * j->layer_floats + ((size_t)s * NKV + h) * j->ctx * HD;
    for (int k = 0; k < PL_ATTN_LANES; k++) {
      m[k] = -FLT_MAX;
      l[k] = 0;
      for (int d = 0; d < HD; d++)
        qt[d * PL_ATTN_LANES + k] =
            k < g ? j->q[(size_t)s * NH * HD + (size_t)(h * g + k) * HD + d] * 0.125f : 0.0f;
    }
    memset(acc, 0, sizeof(float) * g * HD);
    for (int p0 = 0; p0 < j->ctx; p0 += PL_ATTN_TILE) {
      int nv = j->ctx - p0 < PL_ATTN_TILE ? j->ctx - p0 : PL_ATTN_TILE;
      /* the same prefetch of the next tile as the paged kernel's, so that the two differ only
       * in where the rows are */
      const pl_attn_next next = {K + (size_t)(p0 + nv) * HD, V + (size_t)(p0 + nv) * HD,
                                 p0 + nv < j->ctx && j->prefetch ? PL_ATTN_TILE * HD * 4 / 64 : 0};
      pl_attn_tile_f32(g, HD, nv, p0, NULL, qt, K + (size_t)p0 * HD, V + (size_t)p0 * HD, m, l,
                       acc, &next);
    }
    for (int k = 0; k < g && ly == 0; k++) /* every layer's output is the same */
      for (int i = 0; i < HD; i++)
        j->out[(size_t)s * NH * HD + (size_t)(h * g + k) * HD + i] = acc[k * HD + i] / l[k];
  }
}

int main(int argc, char **argv) {
  int n_seqs = argc > 1 ? atoi(argv[1]) : 16, ctx = argc > 2 ? atoi(argv[2]) : 1024;
  int threads = argc > 3 ? atoi(argv[3]) : 2;
  int nb_seq = (ctx + BS - 1) / BS, n_blocks = n_seqs * nb_seq + 1;
  pl_backend *be;
  if (pl_backend_cpu_create(threads, &be) < 0)
    return 1;
  const char *kvn_name = argc > 5 ? argv[5] : "f32";
  pl_dtype kvt = !strcmp(kvn_name, "f16")    ? PL_DT_F16
                 : !strcmp(kvn_name, "bf16") ? PL_DT_BF16
                 : !strcmp(kvn_name, "q8_0") ? PL_DT_Q8_0
                                             : PL_DT_F32;
  size_t kvn = (size_t)n_seqs * NKV * ctx * HD; /* floats of K (or V) per layer */
  const double deep = 256.0 * (1 << 20);
  int n_layer = (int)ceil(deep / (2.0 * (double)kvn * 4));
  n_layer = n_layer < 1 ? 1 : n_layer > 64 ? 64 : n_layer;
  pl_kv_spec spec = {n_layer, NKV, HD, NH, BS, n_blocks, kvt};
  if (be->ops->kv_init(be, &spec) < 0)
    return 1;
  pl_cpu_backend *c = (pl_cpu_backend *)be;
  /* shuffled physical blocks */
  int32_t *perm = malloc(sizeof(int32_t) * n_blocks);
  for (int i = 0; i < n_blocks; i++) perm[i] = i;
  srand(1);
  int shuffle = argc > 4 ? atoi(argv[4]) : 1;
  for (int i = n_blocks - 1; shuffle && i > 1; i--) {
    int k = 1 + rand() % i, t = perm[i];
    perm[i] = perm[k];
    perm[k] = t;
  }
  int32_t *bt = malloc(sizeof(int32_t) * n_seqs * nb_seq);
  for (int i = 0; i < n_seqs * nb_seq; i++) bt[i] = perm[1 + i];
  float *K = pl_malloc(kvn * 4 * n_layer), *V = pl_malloc(kvn * 4 * n_layer);
  if (!K || !V)
    return 1;
  pl_alloc_advise_huge(K, kvn * 4 * n_layer); /* as the paged pool (backend_cpu.c) */
  pl_alloc_advise_huge(V, kvn * 4 * n_layer);
  for (size_t i = 0; i < kvn; i++) {
    K[i] = (float)((i * 2654435761u) % 1000) / 1000.0f - 0.5f;
    V[i] = (float)((i * 40503u) % 1000) / 1000.0f - 0.5f;
  }
  /* the same K/V into the paged cache (rows in its dtype; the f32 copy rounded the same way) */
  for (int s = 0; s < n_seqs; s++)
    for (int h = 0; h < NKV; h++)
      for (int p = 0; p < ctx; p++) {
        size_t b = (size_t)bt[s * nb_seq + p / BS];
        size_t dst = ((b * NKV + h) * BS + p % BS) * c->row_bytes;
        size_t src = (((size_t)s * NKV + h) * ctx + p) * HD;
        pl_quant_row(kvt, K + src, c->k_cache + dst, HD);
        pl_quant_row(kvt, V + src, c->v_cache + dst, HD);
        pl_dequant_row(kvt, c->k_cache + dst, K + src, HD);
        pl_dequant_row(kvt, c->v_cache + dst, V + src, HD);
      }
  for (int ly = 1; ly < n_layer; ly++) { /* every layer holds the same K/V */
    memcpy(c->k_cache + ly * c->layer_stride, c->k_cache, c->layer_stride);
    memcpy(c->v_cache + ly * c->layer_stride, c->v_cache, c->layer_stride);
    memcpy(K + ly * kvn, K, kvn * 4);
    memcpy(V + ly * kvn, V, kvn * 4);
  }
  float *q = pl_malloc((size_t)n_seqs * NH * HD * 4), *o1 = pl_malloc((size_t)n_seqs * NH * HD * 4),
        *o2 = pl_malloc((size_t)n_seqs * NH * HD * 4);
  for (int i = 0; i < n_seqs * NH * HD; i++) q[i] = (float)(i % 97) / 97.0f - 0.5f;
  int32_t *pos = malloc(4 * n_seqs), *qsl = malloc(4 * (n_seqs + 1)), *lens = malloc(4 * n_seqs);
  for (int s = 0; s <= n_seqs; s++) qsl[s] = s;
  for (int s = 0; s < n_seqs; s++) { pos[s] = ctx - 1; lens[s] = ctx; }
  pl_step_plan plan = {.block_size = BS, .n_tokens = n_seqs, .n_seqs = n_seqs,
                       .max_blocks_per_seq = nb_seq, .positions = pos, .query_start_loc = qsl,
                       .seq_lens = lens, .block_tables = bt};
  pl_threadpool *tp;
  pl_threadpool_create(threads, &tp);
  be->ops->step_begin(be, &plan);
  float *scratch = pl_malloc(sizeof(float) * threads * (NH / NKV * HD + 2 * NH / NKV + BS + 16));
  contig_job cj = {K, V, q, o2, n_seqs, ctx, n_layer, kvn, scratch, 1};
  double best_p = 1e9, best_c = 1e9;
  /* alternate rounds of 10 calls each, best call of each kind */
  for (int round = 0; round < 6; round++)
    for (int it = 0; it < 10; it++) {
      double t0 = now();
      if (round % 2 == 0)
        for (int ly = 0; ly < n_layer; ly++)
          be->ops->attention(be, ly, o1, q, NH, 0.125f);
      else
        pl_threadpool_run(tp, contig_task, &cj);
      double t = (now() - t0) / n_layer;
      if (round % 2 == 0)
        best_p = t < best_p ? t : best_p;
      else
        best_c = t < best_c ? t : best_c;
    }
  double maxd = 0;
  for (int i = 0; i < n_seqs * NH * HD; i++)
    maxd = fabs(o1[i] - o2[i]) > maxd ? fabs(o1[i] - o2[i]) : maxd;
  double bytes = 2.0 * kvn * 4, pbytes = 2.0 * (double)kvn / HD * (double)c->row_bytes;
  printf("decode attention, %d seqs x %d ctx, %d/%d heads, head_dim %d, block %d, %d threads, "
         "%s KV, %d layers a call (%.0f MiB of K/V)\n", n_seqs, ctx, NH, NKV, HD, BS, threads,
         pl_dtype_name(kvt), n_layer, n_layer * pbytes / (1 << 20));
  const double bw = pl_cpu_read_bandwidth(tp, 0);
  printf("  read bandwidth           %.1f GB/s (membw.h, %d threads)\n", bw, threads);
  printf("  paged (shuffled blocks)  %.3f ms  %.1f GB/s of K/V (%.0f%% of read bandwidth)\n",
         best_p * 1e3, pbytes / best_p / 1e9, 100 * pbytes / best_p / 1e9 / bw);
  printf("  contiguous (f32)         %.3f ms  %.1f GB/s of K/V (%.0f%%)\n", best_c * 1e3,
         bytes / best_c / 1e9, 100 * bytes / best_c / 1e9 / bw);
  printf("  paging overhead          %+.1f%%   (outputs agree to %.2g)\n",
         100 * (best_p / best_c - 1), maxd);
  /* Prefill: one 512-token causal chunk (positions 0..511) of sequence 0, same paged cache.
   * FLOPs: q.k and p.v, 2 * head_dim each, per query head and visible key. */
  int np = ctx < 512 ? ctx : 512;
  float *qp = pl_malloc((size_t)np * NH * HD * 4), *op = pl_malloc((size_t)np * NH * HD * 4);
  int32_t *ppos = malloc(4 * (size_t)np), pqsl[2] = {0, np}, plen[1] = {np};
  for (int i = 0; i < np * NH * HD; i++) qp[i] = (float)(i % 89) / 89.0f - 0.5f;
  for (int i = 0; i < np; i++) ppos[i] = i;
  pl_step_plan pplan = {.block_size = BS, .n_tokens = np, .n_seqs = 1,
                        .max_blocks_per_seq = nb_seq, .positions = ppos,
                        .query_start_loc = pqsl, .seq_lens = plen, .block_tables = bt};
  double best_f = 1e9;
  be->ops->step_begin(be, &pplan);
  for (int it = 0; it < 10; it++) {
    double t0 = now();
    be->ops->attention(be, 0, op, qp, NH, 0.125f);
    double t = now() - t0;
    best_f = t < best_f ? t : best_f;
  }
  double flops = 4.0 * HD * NH * ((double)np * (np + 1) / 2);
  printf("  prefill %d-token causal chunk  %.3f ms  %.1f GFLOP/s (FP32 FMA peak here ~424 on 2 "
         "cores)\n", np, best_f * 1e3, flops / best_f / 1e9);
  pl_free(qp);
  pl_free(op);
  free(ppos);
  pl_threadpool_destroy(tp);
  be->ops->destroy(be);
  return maxd < 1e-4 ? 0 : 1;
}
