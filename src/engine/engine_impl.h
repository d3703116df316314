/* Engine internals shared by engine*.c. Not a public header: the layers above use
 * include/pagellm.h and engine_access.h.
 *
 *   pl_engine ─ groups (doubly linked, one per request id)
 *                 └─ samples[n]  (one per parallel sample; each owns a scheduler request
 *                                 while it runs, its RNG, its text stream, its event buffers)
 */
#ifndef PL_ENGINE_IMPL_H
#define PL_ENGINE_IMPL_H
#include <stddef.h>
#include <stdint.h>

#include "core/scheduler.h"
#include "engine/sampler.h"
#include "engine/text_stream.h"
#include "model/model.h"
#include "pagellm.h"

struct pl_tokenizer;
struct pl_chat_template;
struct pl_backend;
struct pl_runner;
struct pl_spec;
struct pl_grammar;
struct pl_gmatch;
struct pl_vocab;

#define PL_GCACHE 16 /* compiled grammars kept (with their token tables) */
typedef struct pl_gcache_entry {
  struct pl_grammar *g;
  char *text;
  int refs;      /* requests using it */
  uint64_t used; /* clock of last use (LRU) */
} pl_gcache_entry;

typedef struct pl_sample_state {
  struct pl_group *g;
  int index;                 /* 0 .. n-1 */
  pl_sched_req *sr;          /* NULL once finished */
  pl_rng rng;
  pl_text_stream ts;         /* detokenizer + stop strings */
  int n_out;                 /* generated tokens */
  int32_t *out;              /* [max_tokens] generated ids (for penalties) */
  pl_finish_reason finish;
  /* this step's event payload (reused every step) */
  int32_t ev_tok;
  float ev_lp;
  pl_top_logprob ev_top[20];
  int ev_ntop;
  int has_event;
  int finish_unsent;         /* its finish event could not be queued (out of memory): queued
                              * again at the next step or poll; the group lives until then */
  /* speculative decoding (spec_decode.c) */
  int32_t spec[PL_SPEC_MAX_TOKENS]; /* this step's proposals */
  int spec_n;                /* proposals made this step (0 = none) */
  int spec_base;             /* scheduler num_tokens when they were made */
  int spec_slot;             /* row block of the engine's proposal distributions, -1 = none */
  int spec_skip;             /* steps left without proposals (low acceptance backoff) */
  int spec_backoff;          /* length of the next backoff */
  float spec_rate;           /* moving average of the acceptance rate */
  int draft_seq;             /* draft model sequence, -1 = none */
  struct pl_gmatch *gm;      /* grammar state, NULL = unconstrained */
} pl_sample_state;

typedef struct pl_group {
  uint64_t id;
  struct pl_group *prev, *next;
  pl_sampling_params sp;     /* deep copy; arrays below */
  char **stop;               /* [n_stop] */
  int32_t *stop_ids;
  int32_t *bias_ids;
  float *bias_vals;
  int n_prompt;              /* the prompt is the head of each sample's sr->tokens (no copy
                                here: a long prompt's ids are megabytes) */
  int n_live;                /* samples not finished */
  int forked;                /* children created (n > 1) */
  int cached_tokens;
  pl_sample_state *samples;  /* [sp.n] */
  char *error;               /* set when the whole request failed */
  int unfit_tokens;          /* > 0: the scheduler found it can never fit the pool */
  struct pl_grammar *grammar; /* from the engine's cache (or owned when grammar_owned) */
  int grammar_owned;
} pl_group;

/* An event as stored by the engine: ev's pointers are set when it is polled; its payload
 * (text, token, logprobs, error) lies at `off` in the engine's event arena, which may move as
 * it grows while the event waits. */
typedef struct pl_event_store {
  pl_output_event ev;
  size_t off;   /* the payload, in the arena */
  size_t elen;  /* error text bytes with its NUL (0: none) */
  int logprobs; /* the request asked for logprobs (else the token goes out alone) */
} pl_event_store;

struct pl_engine {
  pl_engine_params p;
  pl_model *model;
  struct pl_tokenizer *tok;
  struct pl_chat_template *tmpl;
  char *bos_text, *eos_text;
  const int32_t *eog_ids;
  int n_eog;
  pl_scheduler *sched;
  struct pl_backend *be;
  struct pl_runner *runner;
  pl_sampler sampler;
  float *logits;             /* [max_num_seqs][n_vocab] */
  int32_t *argmax_ids;       /* [max logits rows] greedy steps: the ids, not the logits */
  pl_row_reduce *reduced;    /* [max logits rows] sampling steps on a backend that reduces
                                rows where they are (NULL: it cannot) */
  pl_logit_edit *edits;      /* [edits_cap] those rows' logit processors, n_edits this step */
  int edits_cap, n_edits;
  int n_blocks;
  size_t kv_bytes;           /* the pool, without the null block */
  size_t kv_tok;             /* KV bytes per token of context (backend's dtype) */
  uint64_t next_id;
  pl_group *groups;          /* live requests */
  int n_groups;
  pl_event_store *events;    /* pending output events, read by poll */
  char *ev_arena;            /* their payloads: reused from the start once all are read, so a */
  size_t ev_len, ev_cap;     /* steady step loop allocates nothing for events */
  int n_events, cap_events, ev_read;
  int64_t prompt_tokens_total, generation_tokens_total;
  struct pl_spec *spec;      /* speculative decoding state, NULL when off */
  struct pl_vocab *gvocab;   /* built on the first grammar request */
  uint64_t *gmask;           /* [(n_vocab + 63) / 64] scratch */
  pl_gcache_entry gcache[PL_GCACHE];
  uint64_t gcache_clock;
};

/* engine.c: the random-weight model (--load-format dummy) of shape `config` (a preset or an
 * HF config.json) with p's weight type and seed; the draft model takes it too. */
pl_dummy_spec pl_engine_dummy_spec(const pl_engine_params *p, const char *config);

/* spec_decode.c: speculative decoding. pl_spec_extra_logits: logits rows beyond
 * max_num_seqs the scheduler and runner must hold. */
int pl_spec_extra_logits(const pl_engine_params *p);
int pl_spec_create(pl_engine *e);
void pl_spec_destroy(pl_engine *e);
int pl_spec_propose(pl_engine *e);    /* before schedule(): fill requests' spec_tokens */
/* Rows logits[0 .. k] of sample s (k proposals in the plan): rejection sampling. Returns
 * the accepted count a and the token from row a in *final (logprobs from the raw row). */
int pl_spec_verify(pl_engine *e, pl_sample_state *s, const float *logits, int k,
                   pl_sample_result *final);
/* After the step's sampling: drafts of requests not verified are rolled back. */
void pl_spec_end_step(pl_engine *e);
void pl_spec_release(pl_engine *e, pl_sample_state *s); /* the sample ends or is preempted */
void pl_spec_stats(const pl_engine *e, pl_engine_stats *st);
int pl_spec_check(const pl_engine *e);

/* engine_text.c */
int pl_engine_load_text(pl_engine *e);
void pl_engine_unload_text(pl_engine *e);
/* engine_grammar.c: get returns 0 (cached) or 1 (owned by the caller: the cache is full of
 * grammars in use) */
int pl_engine_grammar_get(pl_engine *e, const char *text, struct pl_grammar **out);
void pl_engine_grammar_put(pl_engine *e, struct pl_grammar *g, int owned);
void pl_engine_grammar_free_all(pl_engine *e);
/* engine_request.c */
void pl_engine_group_free(pl_engine *e, pl_group *g);
void pl_engine_events_clear(pl_engine *e);
int pl_engine_emit(pl_engine *e, pl_group *g, pl_sample_state *s, const char *text,
                   size_t len);
/* pl_engine_emit for a finished sample (s->finish set) that never loses the event: when it
 * cannot be queued now, s->finish_unsent keeps it for pl_engine_retry_unsent. */
void pl_engine_emit_finish(pl_engine *e, pl_group *g, pl_sample_state *s);
/* Queue the finish events that could not be queued before; called by step and poll. */
void pl_engine_retry_unsent(pl_engine *e);
/* 1 when a sample of g still has a finish event to queue (g must not be freed yet). */
int pl_engine_group_unsent(const pl_group *g);
#endif
