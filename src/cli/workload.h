/* Named, seeded benchmark workloads: (prompt token ids, output length) pairs.
 *   sharegpt-like  lognormal input/output lengths with the published ShareGPT means used by
 *                  the vLLM paper (161 in / 338 out tokens). Synthetic: only the means are
 *                  fitted; sigmas 1.0 (in) and 0.8 (out) are our assumption.
 *   alpaca-like    lognormal with means 19 in / 58 out (sigmas 0.6 / 0.7).
 *   shared-prefix  one long common system prompt (--prefix-len, default 512) + a distinct
 *                  20-40 token question; 32-64 output tokens (k-shot style).
 *   long-context   prompts near the context limit (85-95% of max_model_len minus output),
 *                  64 output tokens.
 *   fixed          exactly --input-len / --output-len.
 *   edit           "rewrite this text": a 96-192 token text, then its first quarter again
 *                  as the start of the answer; output = the remaining three quarters
 *                  (repetitive: what prompt-lookup speculation is for).
 * Prompt ids are drawn uniformly from the vocabulary above the first 259 ids (control and
 * byte tokens of SPM vocabularies); every prompt starts with `bos` when bos >= 0.
 * Lengths are clamped so prompt + output <= max_model_len. */
#ifndef PL_CLI_WORKLOAD_H
#define PL_CLI_WORKLOAD_H
#include <stdint.h>

typedef struct pl_wl_req {
  int32_t *prompt;  /* [n_prompt], malloc'd */
  int n_prompt;
  int max_tokens;
} pl_wl_req;

typedef struct pl_wl_spec {
  const char *name;
  int n;            /* requests */
  int input_len, output_len; /* fixed workload */
  int prefix_len;   /* shared-prefix */
  uint64_t seed;
  int n_vocab, bos, max_model_len;
} pl_wl_spec;

/* Returns a malloc'd array of spec->n requests, or NULL with a message on stderr. */
pl_wl_req *pl_workload_make(const pl_wl_spec *spec);
void pl_workload_free(pl_wl_req *r, int n);
int pl_workload_known(const char *name);
#endif
