/* Decode attention of the CUDA backend over shuffled block tables, against the memory roofline
 * (issue 12, goal 1). For each (batch, context): one query token per sequence, every sequence
 * at the same context, K/V in a paged pool whose blocks are handed out in a random order. Each
 * timed call starts with L2 flushed (a 256 MiB memset), so K/V come from HBM, as they do in a
 * real model whose 32 layers of KV do not fit the 50 MB L2. Prints per shape the median GPU
 * time (CUDA events), the bytes of K and V read per second, and that as a fraction of the
 * device-to-device copy bandwidth measured in the same run. tools/bench/sdpa_decode.py runs
 * torch's SDPA at the same shapes, the same way, and joins the two.
 * With --prefill every sequence instead attends all its C tokens at once (a fresh causal
 * prefill of C tokens, B sequences in one step); the time is then set against the FLOPs
 * (4 * head_dim per query-key pair kept by the causal mask). The kernel column says which
 * kernel ran: "mma" (tensor cores) or "simt" (PAGELLM_CUDA_ATTN=simt, f32 KV, odd head sizes).
 *   bench_cuda_attention [--kv bf16|f16|f32] [--heads 32] [--kv-heads 8] [--head-dim 128]
 *                        [--block-size 16] [--batches 1,4,16,64] [--contexts 1024,4096]
 *                        [--iters 30] [--fixed-split] [--prefill] */
#include <cuda_runtime.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cuda/cu_fill.h"
#include "backend/cuda/cu_kernels.h"
#include "bench_util.h"

#define TRY(call)                                                                              \
  do {                                                                                         \
    cudaError_t e_ = (cudaError_t)(call);                                                      \
    if (e_ != cudaSuccess) {                                                                   \
      fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #call, cudaGetErrorString(e_)); \
      exit(1);                                                                                 \
    }                                                                                          \
  } while (0)

static uint64_t rng = 0x9e3779b97f4a7c15ull;

int main(int argc, char **argv) {
  int n_head = 32, n_kv = 8, hd = 128, bs = 16, iters = 30, fixed = 0, prefill = 0;
  int batches[16] = {1, 4, 16, 64}, contexts[16] = {1024, 4096}, nb = 4, nc = 2;
  pl_dtype type = PL_DT_BF16;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : "";
    if (!strcmp(a, "--fixed-split") || !strcmp(a, "--prefill")) {
      *(a[2] == 'f' ? &fixed : &prefill) = 1;
      continue;
    }
    i++;
    if (!strcmp(a, "--kv"))
      type = !strcmp(v, "f32") ? PL_DT_F32 : !strcmp(v, "f16") ? PL_DT_F16 : PL_DT_BF16;
    else if (!strcmp(a, "--heads"))
      n_head = atoi(v);
    else if (!strcmp(a, "--kv-heads"))
      n_kv = atoi(v);
    else if (!strcmp(a, "--head-dim"))
      hd = atoi(v);
    else if (!strcmp(a, "--block-size"))
      bs = atoi(v);
    else if (!strcmp(a, "--batches"))
      nb = bench_parse_list(v, batches, 16);
    else if (!strcmp(a, "--contexts"))
      nc = bench_parse_list(v, contexts, 16);
    else if (!strcmp(a, "--iters"))
      iters = atoi(v);
    else {
      fprintf(stderr, "unknown option %s (see the comment at the top of bench_cuda_attention.c)\n",
              a);
      return 2;
    }
  }
  int ndev = 0;
  if (cudaGetDeviceCount(&ndev) != cudaSuccess || ndev == 0) {
    printf("bench_cuda_attention: no CUDA device\n");
    return 77;
  }
  struct cudaDeviceProp prop;
  TRY(cudaGetDeviceProperties(&prop, 0));
  int n_sm = prop.multiProcessorCount;
  size_t esz = type == PL_DT_F32 ? 4 : 2;

  int max_b = 0, max_c = 0;
  for (int i = 0; i < nb; i++)
    max_b = batches[i] > max_b ? batches[i] : max_b;
  for (int i = 0; i < nc; i++)
    max_c = contexts[i] > max_c ? contexts[i] : max_c;
  int mbps = (max_c + bs - 1) / bs, n_blocks = max_b * mbps + 1;
  int max_t = prefill ? max_b * max_c : max_b; /* query tokens of the largest step */
  size_t layer = (size_t)n_blocks * n_kv * bs * hd;
  void *K, *V, *flush;
  float *q, *out, *ws = NULL;
  int32_t *d_pos, *d_qsl, *d_bt;
  size_t flush_bytes = (size_t)256 << 20;
  TRY(cudaMalloc(&K, layer * esz));
  TRY(cudaMalloc(&V, layer * esz));
  TRY(cudaMalloc(&flush, flush_bytes));
  TRY(cudaMalloc((void **)&q, (size_t)max_t * n_head * hd * sizeof(float)));
  TRY(cudaMalloc((void **)&out, (size_t)max_t * n_head * hd * sizeof(float)));
  TRY(cudaMalloc((void **)&d_pos, (size_t)max_t * sizeof(int32_t)));
  TRY(cudaMalloc((void **)&d_qsl, (size_t)(max_b + 1) * sizeof(int32_t)));
  TRY(cudaMalloc((void **)&d_bt, (size_t)max_b * mbps * sizeof(int32_t)));
  TRY(pl_cu_fill_random(K, (int)type, layer, 1, 1.0f, 0));
  TRY(pl_cu_fill_random(V, (int)type, layer, 2, 1.0f, 0));
  TRY(pl_cu_fill_random(q, PL_DT_F32, (uint64_t)max_t * n_head * hd, 3, 1.0f, 0));

  /* blocks 1..n_blocks-1 in a random order, handed out sequence by sequence */
  int32_t *perm = malloc((size_t)n_blocks * sizeof *perm);
  int32_t *bt = malloc((size_t)max_b * mbps * sizeof *bt);
  int32_t *pos = malloc((size_t)max_t * sizeof *pos), *qsl = malloc((size_t)(max_b + 1) * 4);
  for (int i = 0; i < n_blocks - 1; i++)
    perm[i] = i + 1;
  for (int i = n_blocks - 2; i > 0; i--) {
    int j = (int)(bench_next_u32(&rng) % (uint32_t)(i + 1));
    int32_t t = perm[i];
    perm[i] = perm[j];
    perm[j] = t;
  }
  for (int i = 0; i < max_b * mbps; i++)
    bt[i] = perm[i];
  TRY(cudaMemcpy(d_bt, bt, (size_t)max_b * mbps * 4, cudaMemcpyHostToDevice));

  /* the copy bandwidth: read + write of a 1 GiB device-to-device copy */
  size_t cb = (size_t)1 << 30;
  void *ca, *cbuf;
  TRY(cudaMalloc(&ca, cb));
  TRY(cudaMalloc(&cbuf, cb));
  cudaEvent_t e0, e1;
  TRY(cudaEventCreate(&e0));
  TRY(cudaEventCreate(&e1));
  float *t = malloc((size_t)iters * sizeof *t);
  for (int i = 0; i < iters; i++) {
    TRY(cudaEventRecord(e0, 0));
    TRY(cudaMemcpyAsync(cbuf, ca, cb, cudaMemcpyDeviceToDevice, 0));
    TRY(cudaEventRecord(e1, 0));
    TRY(cudaEventSynchronize(e1));
    TRY(cudaEventElapsedTime(&t[i], e0, e1));
  }
  qsort(t, (size_t)iters, sizeof *t, bench_cmp_float);
  double copy_gbs = 2.0 * cb / (t[iters / 2] * 1e-3) / 1e9;
  cudaFree(ca);
  cudaFree(cbuf);
  printf("device: %s, %d SMs; copy bandwidth %.0f GB/s (1 GiB device-to-device, median of %d)\n",
         prop.name, n_sm, copy_gbs, iters);
  printf("shape: %s, %d query heads, %d KV heads, head_dim %d, KV %s, block size %d, shuffled "
         "block tables, %s splits\n",
         prefill ? "causal prefill of the whole context" : "decode", n_head, n_kv, hd,
         pl_dtype_name(type), bs, fixed ? "fixed (batch-invariant)" : "sized");
  const char *e = getenv("PAGELLM_CUDA_ATTN");
  const char *kname = (e && !strcmp(e, "simt")) || !pl_cu_attn_mma_supported(hd, type, NULL)
                          ? "simt"
                          : "mma";
  printf("%-8s %6s %8s %10s %10s %8s\n", "kernel", "batch", "context", "time_us",
         prefill ? "TFLOP/s" : "GB/s", prefill ? "" : "of_copy");

  pl_cu_kv kv = {K, V, type, layer, 1, n_blocks, n_kv, bs, hd};
  size_t ws_cap = 0;
  for (int bi = 0; bi < nb; bi++)
    for (int ci = 0; ci < nc; ci++) {
      int B = batches[bi], C = contexts[ci];
      int T = prefill ? B * C : B; /* query tokens */
      for (int i = 0; i < T; i++)
        pos[i] = prefill ? i % C : C - 1;
      for (int i = 0; i <= B; i++)
        qsl[i] = prefill ? i * C : i;
      TRY(cudaMemcpy(d_pos, pos, (size_t)T * 4, cudaMemcpyHostToDevice));
      TRY(cudaMemcpy(d_qsl, qsl, (size_t)(B + 1) * 4, cudaMemcpyHostToDevice));
      pl_cu_attn a = {.kv = &kv, .layer = 0, .n_head = n_head, .n_tokens = T, .n_seqs = B,
                      .max_blocks_per_seq = mbps, .scale = 0.08838834764831845f,
                      .positions = d_pos, .query_start_loc = d_qsl, .block_tables = d_bt,
                      .q = q, .out = out, .max_ctx = C, .n_sm = n_sm, .fixed_split = fixed};
      size_t need = pl_cu_attention_ws(&a);
      if (need > ws_cap) {
        cudaFree(ws);
        TRY(cudaMalloc((void **)&ws, need));
        ws_cap = need;
      }
      a.ws = ws;
      for (int i = 0; i < 3; i++)
        TRY(pl_cu_attention(&a, 0));
      for (int i = 0; i < iters; i++) {
        TRY(cudaMemsetAsync(flush, i & 0xff, flush_bytes, 0));
        TRY(cudaEventRecord(e0, 0));
        TRY(pl_cu_attention(&a, 0));
        TRY(cudaEventRecord(e1, 0));
        TRY(cudaEventSynchronize(e1));
        TRY(cudaEventElapsedTime(&t[i], e0, e1));
      }
      TRY(cudaDeviceSynchronize());
      qsort(t, (size_t)iters, sizeof *t, bench_cmp_float);
      double us = t[iters / 2] * 1e3;
      double bytes = 2.0 * B * C * n_kv * hd * esz;
      double flops = 4.0 * hd * n_head * B * ((double)C * (C + 1) / 2);
      if (prefill)
        printf("%-8s %6d %8d %10.1f %10.1f\n", kname, B, C, us, flops / us * 1e-6);
      else
        printf("%-8s %6d %8d %10.1f %10.0f %7.1f%%\n", kname, B, C, us, bytes / us * 1e-3,
               100.0 * bytes / us * 1e-3 / copy_gbs);
      fflush(stdout);
    }
  free(t);
  free(perm);
  free(bt);
  free(pos);
  free(qsl);
  return 0;
}
