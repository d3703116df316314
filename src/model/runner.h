/* The model runner: one forward pass of a Llama-family model over a step plan (a flat batch
 * of prefill chunks and decode tokens from many sequences), reading and writing K/V only
 * through the plan's slot mapping and block tables. Activations are sized once at creation
 * for max_tokens tokens; forward() never allocates. Not thread-safe. */
#ifndef PL_MODEL_RUNNER_H
#define PL_MODEL_RUNNER_H
#include "backend/backend.h"
#include "plan/step_plan.h"
#include "model/model.h"

typedef struct pl_runner pl_runner;

typedef struct pl_runner_params {
  int max_tokens;  /* tokens per step (max_num_batched_tokens) */
  int max_logits;  /* logits rows per step (>= max sequences per step) */
  int block_size;  /* tokens per KV block */
  int n_blocks;    /* KV blocks in the pool, including the null block 0; 0: call
                      pl_runner_init_kv later (after measuring what memory is left) */
  pl_dtype kv_dtype; /* KV element type; PL_DT_AUTO (-1) or 0-initialised F32 */
} pl_runner_params;

/* The model and backend must outlive the runner. Allocates activations and the KV pool. */
int pl_runner_create(const pl_model *m, pl_backend *be, const pl_runner_params *p,
                     pl_runner **out);
void pl_runner_free(pl_runner *r); /* NULL ok */

/* Allocate the KV pool (once): n_blocks including the null block. */
int pl_runner_init_kv(pl_runner *r, int n_blocks, pl_dtype dtype);
/* The KV spec the runner would give the backend for this model. */
pl_kv_spec pl_runner_kv_spec(const pl_model *m, int block_size, int n_blocks, pl_dtype dtype);

/* Run the step: copy-on-write block copies, then the forward pass; writes
 * logits[plan->n_logits][n_vocab] (host memory; NULL: they stay in backend memory, for
 * pl_runner_argmax, pl_runner_sample_reduce). Errors: PL_EINVAL when the plan exceeds the
 * sizes given at creation or references out-of-range blocks/tokens; any backend error of the
 * step (out of memory, a failed kernel) with its message. */
int pl_runner_forward(pl_runner *r, const pl_step_plan *plan, float *logits);
/* After a forward with logits == NULL: ids[i] = argmax of logits row i (i < plan n_logits), ties
 * to the lowest id, computed where the logits are. PL_EUNSUPPORTED when the backend cannot. */
int pl_runner_argmax(pl_runner *r, int n, int32_t *ids);
int pl_runner_has_argmax(const pl_runner *r);
/* After a forward with logits == NULL: rows[i] = the sampling reduction of logits row i after
 * the edits (backend.h's pl_row_reduce, inputs set by the caller), or rows 0..n themselves
 * into out[n][n_vocab]. */
int pl_runner_sample_reduce(pl_runner *r, int n, pl_row_reduce *rows, const pl_logit_edit *edits,
                            int n_edits);
int pl_runner_has_sample_reduce(const pl_runner *r);
int pl_runner_logits(pl_runner *r, int n, float *out);

/* Bytes of activations + KV pool the runner holds (backend memory). */
size_t pl_runner_memory(const pl_runner *r);
#endif
