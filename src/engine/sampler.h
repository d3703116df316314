/* Per-request sampling: logit processors, then greedy or random choice, with per-request RNG
 * state so a request's tokens never depend on which other requests share the batch.
 *
 * Order (vLLM semantics): logit_bias → min_tokens (EOS/stop ids masked) → repetition penalty
 * (prompt + output, HF rule: positive logits divided, negative multiplied) → presence and
 * frequency penalties (output tokens, OpenAI rule) → temperature → top-k → top-p → min-p →
 * sample. Logprobs are reported from the raw model logits (before any processing), as vLLM v1
 * does by default. */
#ifndef PL_ENGINE_SAMPLER_H
#define PL_ENGINE_SAMPLER_H
#include <stdint.h>

#include "backend/backend.h"
#include "pagellm.h"

typedef struct pl_rng {
  uint64_t s[4]; /* xoshiro256** state */
} pl_rng;

void pl_rng_seed(pl_rng *r, uint64_t seed);
uint64_t pl_rng_next(pl_rng *r);
double pl_rng_uniform(pl_rng *r); /* [0, 1) with 53 random bits */

/* Scratch shared by all requests of an engine, sized once for the vocabulary. */
typedef struct pl_sampler {
  int n_vocab;
  float *work;        /* [n_vocab] processed logits / probabilities */
  int32_t *idx;       /* [n_vocab] candidate ids */
  int32_t *top;       /* [n_vocab] a sorted prefix of them (top-k / top-p selection) */
  uint32_t *stamp;    /* [n_vocab] "seen in this call" marks for penalties */
  uint32_t cur_stamp;
} pl_sampler;

int pl_sampler_init(pl_sampler *s, int n_vocab);
void pl_sampler_free(pl_sampler *s);

/* What the sampler needs to know about the request. */
typedef struct pl_sample_ctx {
  const pl_sampling_params *sp;
  const int32_t *prompt;      /* [n_prompt] */
  int n_prompt;
  const int32_t *output;      /* [n_output] generated so far */
  int n_output;
  const int32_t *eog_ids;     /* [n_eog] end-of-generation ids (masked before min_tokens) */
  int n_eog;
  pl_rng *rng;
  const uint64_t *allow;      /* NULL or [(n_vocab + 63) / 64] bitset: only these tokens */
} pl_sample_ctx;

typedef struct pl_sample_result {
  int32_t token;
  float logprob;              /* raw log-softmax of the chosen token */
  int n_top;
  pl_top_logprob top[20];     /* raw top alternatives when sp->logprobs > 0 (at most 20) */
} pl_sample_result;

/* Sample one token from logits[n_vocab] (not modified). Never allocates. */
void pl_sample(pl_sampler *s, const pl_sample_ctx *c, const float *logits, pl_sample_result *out);

/* pl_sample with its uniform draw given: u01 in [0, 1) from c->rng when the temperature is
 * > 0 (pl_sample draws exactly one then), ignored for greedy. */
void pl_sample_u(pl_sampler *s, const pl_sample_ctx *c, const float *logits, double u01,
                 pl_sample_result *out);

/* Sampling from a row reduced on the device (backend.h's pl_row_reduce; sampler_reduced.c).
 * pl_sample_edits: c's logit processors for logits row `row` as sparse edits (out[cap]):
 * their count, or -1 when the row cannot be reduced (a grammar mask, a repeated logit_bias id,
 * logprobs > 0 together with any edit, more than cap edits). It uses s's marks.
 * pl_sample_reduced: what pl_sample_u(…, r->u, …) returns for the row, computed from r alone:
 * 1 and *out filled, or 0 when the reduction does not decide it (a nucleus or min-p set
 * reaching past the PL_TOPK candidates, top_k > PL_TOPK): then the caller samples the full row
 * with pl_sample_u and r->u. Identical to the full row's result except where a top-p or draw
 * boundary falls within float64 rounding of r->z.
 * pl_logit_edits_apply / pl_row_reduce_ref: the edits and the reduction on the host, the
 * reference for the backends' own (x: the edited row, raw: the row before the edits). */
int pl_sample_edits(pl_sampler *s, const pl_sample_ctx *c, int row, pl_logit_edit *out, int cap);
int pl_sample_reduced(pl_sampler *s, const pl_sample_ctx *c, const pl_row_reduce *r,
                      pl_sample_result *out);
void pl_logit_edits_apply(float *x, const float *raw, const pl_logit_edit *e, int n_edits, int d);
void pl_row_reduce_ref(const float *x, const float *raw, int d, pl_row_reduce *r);

/* 1 when pl_sample would return the plain argmax of the raw logits and nothing else (greedy,
 * no logit bias, no active min_tokens mask, no penalties, no logprobs): the engine can then
 * take the argmax where the logits are computed instead of downloading them. */
int pl_sample_is_argmax(const pl_sample_ctx *c);

/* The distribution pl_sample draws from, written densely to probs[n_vocab] (sums to 1; 0
 * outside the candidates). Greedy: a one-hot at the argmax, whose id is returned (else -1).
 * Uses no randomness. For speculative decoding's rejection sampling. */
int pl_sample_probs(pl_sampler *s, const pl_sample_ctx *c, const float *logits, float *probs);
/* Draw an id from the unnormalised weights w[n_vocab] (>= 0) whose total is sum > 0. */
int32_t pl_sample_draw(const float *w, int n_vocab, double sum, pl_rng *rng);
/* Add (token, lp) to out->top[0 .. n_top), kept as the k best by descending lp (calls in id
 * order leave ties in id order). */
void pl_top_logprob_insert(pl_sample_result *out, int k, int32_t token, float lp);
/* Fill out->logprob / out->top for out->token from the raw logits (as pl_sample does). */
void pl_sample_logprobs(const pl_sampling_params *sp, const float *logits, int n_vocab,
                        pl_sample_result *out);
#endif
