/* The step plan: everything the model runner needs for one engine step, as flat int32 arrays
 * (vLLM v1's attention metadata). It is the one per-step seam: core/ (the scheduler) fills it,
 * model/ and backend/ read it, so it lives in its own folder that depends on nothing. The
 * backend's step_begin moves its arrays to the device once per step.
 *
 *   tokens of the step, grouped by sequence:   [ s0 t0 t1 t2 | s1 t0 | s2 t0 t1 ]
 *   query_start_loc                            0            3       4          6
 *   seq_lens[s] = tokens in s's context after this step (cached + new)
 *   slot_mapping[t] = block_id * block_size + offset where token t's K/V is written
 *   block_tables[s * max_blocks_per_seq + j] = physical block of s's j-th logical block
 *                                              (rows padded with the null block 0)
 * The new tokens of a sequence are its last (query_start_loc[s+1]-query_start_loc[s])
 * positions: positions[t] = seq_lens[s] - n_new + k. Attention is causal: a query at position
 * p sees keys at positions 0..p of its own sequence. */
#ifndef PL_PLAN_STEP_PLAN_H
#define PL_PLAN_STEP_PLAN_H
#include <stdint.h>

typedef struct pl_step_plan {
  int32_t block_size;         /* tokens per KV block */
  int32_t n_tokens;           /* tokens in this step */
  int32_t n_seqs;             /* sequences in this step */
  int32_t max_blocks_per_seq; /* row stride of block_tables */
  int32_t *token_ids;         /* [n_tokens] */
  int32_t *positions;         /* [n_tokens] position of each token in its sequence */
  int32_t *slot_mapping;      /* [n_tokens] */
  int32_t *query_start_loc;   /* [n_seqs + 1] */
  int32_t *seq_lens;          /* [n_seqs] */
  int32_t *block_tables;      /* [n_seqs][max_blocks_per_seq] */
  int32_t n_logits;           /* rows of logits to compute */
  int32_t *logits_rows;       /* [n_logits] token indices (usually each seq's last token) */
  int32_t n_copies;           /* copy-on-write block copies to run before the forward */
  int32_t *copy_src;          /* [n_copies] */
  int32_t *copy_dst;          /* [n_copies] */
} pl_step_plan;
#endif
