/* The draft model of speculative decoding (--speculative draft): a small model with the
 * target's vocabulary, its own backend, runner and paged KV pool (a pl_kv_cache without
 * prefix caching), run by the engine's step loop just before the target's schedule().
 *
 * Each request that speculates owns one draft sequence holding the K/V of a prefix of its
 * tokens. propose() first feeds every request the tokens its draft sequence lacks (prompt
 * chunks on first use, then the tokens accepted in the last step) in one batched forward,
 * then runs k - 1 more single-token forwards for the requests that caught up, each
 * proposal drawn from the draft's processed distribution (the request's own sampling
 * parameters and RNG). After verification the engine truncates the draft sequence to the
 * tokens that are still valid. Not thread-safe; sized at creation; propose() allocates
 * nothing. */
#ifndef PL_ENGINE_SPEC_DRAFT_H
#define PL_ENGINE_SPEC_DRAFT_H
#include <stdint.h>

#include "engine/sampler.h"
#include "model/model.h"

typedef struct pl_spec_draft pl_spec_draft;

typedef struct pl_spec_draft_params {
  const char *path;   /* draft model: .gguf or safetensors directory */
  const pl_dummy_spec *dummy; /* non-NULL: random weights of this shape instead (the target's
                                 --load-format dummy; then `path` is only its name) */
  const char *device; /* the target's device name (the draft gets its own backend there) */
  int n_threads;      /* 0 = number of cores */
  int block_size;     /* tokens per draft KV block */
  int n_blocks;       /* draft KV blocks including the null block */
  int max_seqs;       /* draft sequences (requests that may speculate at once) */
  int max_model_len;
  int max_tokens;     /* tokens per draft forward (catch-up budget per step) */
  int max_k;          /* proposals per request at most */
} pl_spec_draft_params;

/* Load the draft and check that its vocabulary equals the target's: same embedding rows and,
 * token by token, the same tokenizer text (target_tok). Errors: the model loader's,
 * PL_EINVAL naming the first difference, PL_ENOMEM. */
struct pl_tokenizer;
int pl_spec_draft_create(const pl_spec_draft_params *p, const pl_model *target,
                         const struct pl_tokenizer *target_tok, pl_spec_draft **out);
void pl_spec_draft_destroy(pl_spec_draft *d); /* NULL ok */

/* One request of a proposal batch. */
typedef struct pl_draft_req {
  int *seq;              /* in/out: the request's draft sequence, -1 = none yet */
  const int32_t *tokens; /* [n_tokens] prompt + generated (the last one not yet in the target) */
  int n_tokens;
  int k;                 /* proposals wanted (<= max_k) */
  pl_sample_ctx ctx;     /* sampling context (penalties see earlier proposals) */
  int32_t *hist;         /* == ctx.output, writable, with room for k ids past ctx.n_output */
  int32_t *out;          /* [k] proposals */
  float *q;              /* [k][n_vocab] each proposal's distribution; NULL = greedy */
  int n_out;             /* out: proposals made (0 when the draft is still catching up or its
                            pool is full) */
} pl_draft_req;

/* Propose for n requests (n <= max_seqs). Errors only from the forward pass (the engine then
 * stops speculating); a full draft pool just yields no proposals. */
int pl_spec_draft_propose(pl_spec_draft *d, pl_sampler *smp, pl_draft_req *reqs, int n);
/* Keep the first n_keep tokens of a draft sequence (rejected proposals go). */
void pl_spec_draft_truncate(pl_spec_draft *d, int seq, int n_keep);
/* Free a draft sequence and its blocks (seq < 0: nothing). */
void pl_spec_draft_release(pl_spec_draft *d, int seq);
/* Blocks in use in the draft pool (tests: 0 once every request is gone). */
int pl_spec_draft_blocks_used(const pl_spec_draft *d);
/* Invariant checks of the draft pool (pl_kv_cache_check). */
int pl_spec_draft_check(const pl_spec_draft *d);
#endif
