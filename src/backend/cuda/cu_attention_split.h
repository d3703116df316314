// What the two attention kernels share (C++/CUDA only; cu_attention.cu plans and dispatches,
// cu_attention_mma.cu is the tensor-core kernel). Both cut every token's context into splits
// of `chunk` keys and write either the output (one split) or per-split partials that
// attn_reduce_k merges:
//   ws_o  [tokens of the launch][n_head][splits][head_dim]   softmax-weighted V of the split
//   ws_lse[tokens of the launch][n_head][splits]             its log2-sum-exp of the scores
#ifndef PL_BACKEND_CUDA_CU_ATTENTION_SPLIT_H
#define PL_BACKEND_CUDA_CU_ATTENTION_SPLIT_H
#include <cuda_runtime.h>
#include <stdint.h>

#include "backend/cuda/cu_kernels.h"

struct pl_cu_split_args {
  const void *k, *v; // this layer's K and V
  const float *q;
  float *out, *ws_o, *ws_lse;
  const int32_t *positions, *qsl, *block_tables;
  int t0; // first token of this launch; blockIdx.x counts from it
  int n_seqs, max_blocks, n_head, n_kv, block_size, head_dim, chunk, splits;
  int n_gc, gc; // the query heads of a KV head go in n_gc groups of (at most) gc
  int tpk;      // SIMT kernel: lanes per key row
  float qscale; // scale * log2 e: scores are in the log2 domain
  int fixed_split; // batch-invariant: a token's sums never depend on what shares its CTA
};

// the sequence of token t (query_start_loc is sorted)
__device__ __forceinline__ int pl_cu_seq_of_token(const int32_t *qsl, int n_seqs, int t) {
  int lo = 0, hi = n_seqs - 1;
  while (lo < hi) {
    int mid = (lo + hi + 1) / 2;
    if (qsl[mid] <= t)
      lo = mid;
    else
      hi = mid - 1;
  }
  return lo;
}

// Tensor-core kernel (pl_cu_attn_mma_supported in cu_kernels.h says which shapes).
// The query heads of a KV head it puts in one CTA, given the GQA group g.
int pl_cu_attn_mma_group(int g);
// Whether a launch may take the decode instance (one token a sequence, gc <= 16 query heads
// a CTA, not batch-invariant; only with PAGELLM_CUDA_ATTN_DECODE=1 for now).
int pl_cu_attn_mma_decode(int n_tokens, int n_seqs, int gc, int fixed_split);
// 1 when the device runs the general (decode = 0) or decode instance for this head size and
// type, with its resident CTAs per SM in *ctas_per_sm; else 0.
int pl_cu_attn_mma_plan(int head_dim, pl_dtype type, int decode, int *ctas_per_sm);
// Enqueue one launch over tokens [x.t0, x.t0 + n_tokens), every split, on the instance the
// plan chose; 0 or a cudaError_t.
int pl_cu_attn_mma_launch(const pl_cu_split_args &x, int n_tokens, int decode, pl_dtype type,
                          cudaStream_t s);

#endif
