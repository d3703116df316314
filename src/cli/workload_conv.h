/* Conversation workloads for `pagellm bench serve` on chat endpoints: requests whose prompts
 * share prefixes the way real chat traffic does, so prefix caching and prefix-affinity routing
 * can be measured.
 *   multi-turn           conversations of 2-6 turns; turn k resends the whole history (the
 *                        system prompt, every earlier user turn and the assistant's actual
 *                        answers) plus a new user turn. One short system prompt (24 tokens)
 *                        is common to all conversations. User turns are lognormal with mean
 *                        40 tokens (sigma 0.6), answers mean 64 (sigma 0.5): synthetic,
 *                        ShareGPT-shaped (several short turns), not fitted to a data set.
 *                        A conversation ends early rather than outgrow max_model_len.
 *   many-system-prompts  K distinct long system prompts (--num-system-prompts, default 8, of
 *                        --system-prompt-len tokens, default min(512, max_model_len / 2));
 *                        each request is one user (a 20-40 token question, 32-64 output
 *                        tokens) of a uniformly drawn system prompt.
 * Token ids are drawn like workload.h's (ids from 259 up); the load generator turns them into
 * words. Requests are ordered conversation by conversation; `dep` is the previous turn of the
 * same conversation (-1 for a first turn), which must finish before this one is sent. */
#ifndef PL_CLI_WORKLOAD_CONV_H
#define PL_CLI_WORKLOAD_CONV_H
#include <stdint.h>

typedef struct pl_conv_req {
  int conv;         /* conversation index */
  int dep;          /* request index of the previous turn, or -1 */
  int system;       /* index into pl_conv_set.system, or -1 for none */
  int32_t *user;    /* [n_user] this turn's user message, malloc'd */
  int n_user;
  int max_tokens;
} pl_conv_req;

typedef struct pl_conv_set {
  pl_conv_req *req; /* [n] */
  int n;
  int32_t **system; /* [n_system][system_len[i]] */
  int *system_len;
  int n_system;
} pl_conv_set;

typedef struct pl_conv_spec {
  const char *name;
  int n;               /* requests (turns) in all */
  int n_system, system_len;
  uint64_t seed;
  int n_vocab, max_model_len;
} pl_conv_spec;

int pl_conv_known(const char *name);
/* 0, or -1 with a message on stderr. */
int pl_conv_make(const pl_conv_spec *spec, pl_conv_set *out);
void pl_conv_free(pl_conv_set *s);
#endif
