/* Engine internals shared by engine*.c. Not a public header.
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
} pl_sample_state;

typedef struct pl_group {
  uint64_t id;
  struct pl_group *prev, *next;
  pl_sampling_params sp;     /* deep copy; arrays below */
  char **stop;               /* [n_stop] */
  int32_t *stop_ids;
  int32_t *bias_ids;
  float *bias_vals;
  int32_t *prompt;           /* [n_prompt] */
  int n_prompt;
  int n_live;                /* samples not finished */
  int forked;                /* children created (n > 1) */
  int cached_tokens;
  pl_sample_state *samples;  /* [sp.n] */
  char *error;               /* set when the whole request failed */
  int unfit_tokens;          /* > 0: the scheduler found it can never fit the pool */
} pl_group;

/* An event as stored by the engine (text owned). */
typedef struct pl_event_store {
  pl_output_event ev;
  char *text;
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
  int n_blocks;
  size_t kv_bytes;           /* the pool, without the null block */
  size_t kv_tok;             /* KV bytes per token of context (backend's dtype) */
  uint64_t next_id;
  pl_group *groups;          /* live requests */
  int n_groups;
  pl_event_store *events;    /* pending output events, read by poll */
  int n_events, cap_events, ev_read;
  int64_t prompt_tokens_total, generation_tokens_total;
};

/* engine_text.c */
int pl_engine_load_text(pl_engine *e);
void pl_engine_unload_text(pl_engine *e);
/* engine_request.c */
void pl_engine_group_free(pl_engine *e, pl_group *g);
void pl_engine_events_clear(pl_engine *e);
int pl_engine_emit(pl_engine *e, pl_group *g, pl_sample_state *s, const char *text,
                   size_t len);
#endif
