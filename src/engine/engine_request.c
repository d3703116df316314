/* Request admission, abort, and the output-event queue. */
#include <string.h>

#include "engine/engine_impl.h"
#include "grammar/grammar.h"
#include "tokenizer/tokenizer.h"
#include "util/alloc.h"
#include "util/array.h"
#include "util/error.h"

static int check_params(const pl_sampling_params *sp, int n_vocab) {
#define BAD(name, ...) return pl_fail(PL_EINVAL, name ": " __VA_ARGS__)
  if (!(sp->temperature >= 0 && sp->temperature <= 100)) BAD("temperature", "must be in [0, 100]");
  if (!(sp->top_p > 0 && sp->top_p <= 1)) BAD("top_p", "must be in (0, 1]");
  if (!(sp->min_p >= 0 && sp->min_p <= 1)) BAD("min_p", "must be in [0, 1]");
  if (sp->top_k < -1) BAD("top_k", "must be -1 (off), 0 (off) or positive");
  if (!(sp->repetition_penalty > 0 && sp->repetition_penalty <= 100))
    BAD("repetition_penalty", "must be in (0, 100]");
  if (!(sp->presence_penalty >= -2 && sp->presence_penalty <= 2))
    BAD("presence_penalty", "must be in [-2, 2]");
  if (!(sp->frequency_penalty >= -2 && sp->frequency_penalty <= 2))
    BAD("frequency_penalty", "must be in [-2, 2]");
  if (sp->max_tokens < 1) BAD("max_tokens", "must be at least 1");
  if (sp->min_tokens < 0 || sp->min_tokens > sp->max_tokens)
    BAD("min_tokens", "must be in [0, max_tokens]");
  if (sp->n < 1 || sp->n > 128) BAD("n", "must be in [1, 128]");
  if (sp->logprobs > 20) BAD("logprobs", "at most 20 alternatives");
  if (sp->n_stop < 0 || sp->n_stop > 16 || (sp->n_stop && !sp->stop)) BAD("stop", "at most 16 stop strings");
  for (int i = 0; i < sp->n_stop; i++)
    if (!sp->stop[i] || !sp->stop[i][0] || strlen(sp->stop[i]) > 1024)
      BAD("stop", "stop strings must be non-empty and at most 1024 bytes");
  if (sp->n_stop_token_ids < 0 || sp->n_stop_token_ids > 1024) BAD("stop_token_ids", "too many");
  for (int i = 0; i < sp->n_stop_token_ids; i++)
    if (sp->stop_token_ids[i] < 0 || sp->stop_token_ids[i] >= n_vocab)
      BAD("stop_token_ids", "id %d out of the vocabulary [0, %d)", sp->stop_token_ids[i], n_vocab);
  if (sp->n_logit_bias < 0 || sp->n_logit_bias > 1024) BAD("logit_bias", "at most 1024 entries");
  for (int i = 0; i < sp->n_logit_bias; i++) {
    if (sp->logit_bias_ids[i] < 0 || sp->logit_bias_ids[i] >= n_vocab)
      BAD("logit_bias", "token id %d out of the vocabulary [0, %d)", sp->logit_bias_ids[i], n_vocab);
    if (!(sp->logit_bias[i] >= -100 && sp->logit_bias[i] <= 100))
      BAD("logit_bias", "values must be in [-100, 100]");
  }
  return 0;
#undef BAD
}

void pl_engine_group_free(pl_engine *e, pl_group *g) {
  for (int i = 0; i < g->sp.n; i++) {
    pl_sample_state *s = &g->samples[i];
    if (s->sr)
      pl_sched_abort(e->sched, s->sr);
    pl_spec_release(e, s);
    pl_text_stream_free(&s->ts);
    pl_free(s->out);
    pl_gmatch_free(s->gm);
  }
  if (g->grammar)
    pl_engine_grammar_put(e, g->grammar, g->grammar_owned);
  if (g->prev) g->prev->next = g->next;
  else e->groups = g->next;
  if (g->next) g->next->prev = g->prev;
  e->n_groups--;
  for (int i = 0; i < g->sp.n_stop; i++)
    pl_free(g->stop[i]);
  pl_free(g->stop);
  pl_free(g->stop_ids);
  pl_free(g->bias_ids);
  pl_free(g->bias_vals);
  pl_free(g->samples);
  pl_free(g->error);
  pl_free(g);
}

static void *dup_arr(const void *src, size_t n, size_t sz, int *ok) {
  if (!n)
    return NULL;
  void *d = pl_malloc(n * sz);
  if (!d) { *ok = 0; return NULL; }
  memcpy(d, src, n * sz);
  return d;
}

int pl_engine_add_request(pl_engine *e, const char *prompt, const int32_t *prompt_ids,
                          int n_prompt_ids, const pl_sampling_params *spin, uint64_t *out_id) {
  pl_sampling_params def;
  if (!spin) {
    pl_sampling_params_default(&def);
    spin = &def;
  }
  int V = e->model->hp.n_vocab;
  if ((prompt == NULL) == (prompt_ids == NULL))
    return pl_fail(PL_EINVAL, "prompt: give exactly one of a text prompt or token ids");
  PL_TRY(check_params(spin, V));
  if (e->n_groups >= e->p.max_waiting + e->p.max_num_seqs &&
      pl_sched_num_waiting(e->sched) >= e->p.max_waiting)
    return pl_fail(PL_EBUSY, "server overloaded: %d requests already waiting (--max-waiting)",
                   pl_sched_num_waiting(e->sched));
  pl_token_buf ids = {0};
  if (prompt) {
    int rc = pl_tokenizer_encode(e->tok, prompt, strlen(prompt), 1, 0, &ids);
    if (rc < 0)
      return rc;
    prompt_ids = ids.ids;
    n_prompt_ids = (int)ids.n;
  }
  int rc = 0;
  if (n_prompt_ids <= 0) {
    rc = pl_fail(PL_EINVAL, "prompt: empty prompt");
    goto out;
  }
  for (int i = 0; i < n_prompt_ids; i++)
    if (prompt_ids[i] < 0 || prompt_ids[i] >= V) {
      rc = pl_fail(PL_EINVAL, "prompt: token id %d out of the vocabulary [0, %d)", prompt_ids[i], V);
      goto out;
    }
  int mml = e->p.max_model_len;
  if (n_prompt_ids + spin->max_tokens > mml) {
    rc = pl_fail(PL_ETOOLONG,
                 "this model's maximum context length is %d tokens; the prompt has %d tokens and "
                 "max_tokens is %d (%d in all): shorten the prompt or lower max_tokens",
                 mml, n_prompt_ids, spin->max_tokens, n_prompt_ids + spin->max_tokens);
    goto out;
  }
  pl_group *g = pl_calloc(1, sizeof *g);
  if (!g) {
    rc = pl_fail(PL_ENOMEM, "out of memory");
    goto out;
  }
  g->id = e->next_id++;
  g->sp = *spin;
  int ok = 1;
  g->n_prompt = n_prompt_ids;
  g->stop_ids = dup_arr(spin->stop_token_ids, (size_t)spin->n_stop_token_ids, sizeof(int32_t), &ok);
  g->bias_ids = dup_arr(spin->logit_bias_ids, (size_t)spin->n_logit_bias, sizeof(int32_t), &ok);
  g->bias_vals = dup_arr(spin->logit_bias, (size_t)spin->n_logit_bias, sizeof(float), &ok);
  g->stop = spin->n_stop ? pl_calloc((size_t)spin->n_stop, sizeof(char *)) : NULL;
  g->samples = pl_calloc((size_t)spin->n, sizeof *g->samples);
  if (spin->n_stop && !g->stop) ok = 0;
  /* link first so group_free can undo a partial setup */
  g->next = e->groups;
  if (e->groups) e->groups->prev = g;
  e->groups = g;
  e->n_groups++;
  g->sp.n_stop = 0;
  for (int i = 0; ok && i < spin->n_stop; i++) {
    if (!(g->stop[i] = pl_strdup(spin->stop[i]))) ok = 0;
    else g->sp.n_stop = i + 1;
  }
  g->sp.stop = (const char *const *)g->stop;
  g->sp.stop_token_ids = g->stop_ids;
  g->sp.logit_bias_ids = g->bias_ids;
  g->sp.logit_bias = g->bias_vals;
  if (!g->samples) ok = 0;
  int n_samples = g->samples ? spin->n : 0;
  g->sp.n = n_samples;
  uint64_t base_seed = spin->seed >= 0 ? (uint64_t)spin->seed : e->p.seed ^ (g->id * 0x9E3779B97F4A7C15ull);
  for (int i = 0; ok && i < n_samples; i++) {
    pl_sample_state *s = &g->samples[i];
    s->g = g;
    s->index = i;
    s->draft_seq = -1;
    s->spec_slot = -1;
    pl_rng_seed(&s->rng, base_seed + (uint64_t)i * 0xD1B54A32D192ED03ull);
    s->out = pl_malloc((size_t)spin->max_tokens * sizeof(int32_t));
    if (!s->out || pl_text_stream_init(&s->ts, e->tok, g->sp.stop, g->sp.n_stop) < 0)
      ok = 0;
  }
  if (!ok) {
    pl_engine_group_free(e, g);
    rc = pl_fail(PL_ENOMEM, "out of memory");
    goto out;
  }
  if (spin->grammar) {
    int got = pl_engine_grammar_get(e, spin->grammar, &g->grammar);
    if (got < 0) {
      rc = got;
      pl_engine_group_free(e, g);
      goto out;
    }
    g->grammar_owned = got == 1;
    for (int i = 0; ok && i < n_samples; i++)
      if ((rc = pl_gmatch_create(g->grammar, e->gvocab, &g->samples[i].gm)) < 0)
        ok = 0;
    if (!ok) {
      pl_engine_group_free(e, g);
      goto out;
    }
  }
  g->sp.grammar = NULL; /* the text is not kept */
  g->n_live = n_samples;
  pl_sched_req_params rp = {.id = g->id, .user = &g->samples[0], .prompt = prompt_ids,
                            .n_prompt = n_prompt_ids, .max_tokens = n_prompt_ids + spin->max_tokens,
                            .priority = spin->priority, .client = spin->client};
  rc = pl_sched_add(e->sched, &rp, &g->samples[0].sr);
  if (rc < 0) {
    pl_engine_group_free(e, g);
    goto out;
  }
  e->prompt_tokens_total += n_prompt_ids;
  if (out_id)
    *out_id = g->id;
out:
  pl_token_buf_free(&ids);
  return rc;
}

static pl_group *find_group(pl_engine *e, uint64_t id) {
  for (pl_group *g = e->groups; g; g = g->next)
    if (g->id == id)
      return g;
  return NULL;
}

int pl_engine_abort(pl_engine *e, uint64_t id) {
  pl_group *g = find_group(e, id);
  if (!g)
    return pl_fail(PL_ENOTFOUND, "no running request with id %llu", (unsigned long long)id);
  for (int i = 0; i < g->sp.n; i++) {
    pl_sample_state *s = &g->samples[i];
    if (s->finish != PL_FINISH_NONE)
      continue;
    if (s->sr) {
      pl_sched_abort(e->sched, s->sr);
      s->sr = NULL;
    }
    pl_spec_release(e, s);
    s->finish = PL_FINISH_ABORT;
    s->has_event = 0;
    pl_engine_emit_finish(e, g, s);
  }
  if (pl_engine_group_unsent(g))
    g->n_live = 0; /* freed by a later step once its abort events are queued */
  else
    pl_engine_group_free(e, g);
  return 0;
}

/* ---- events ---------------------------------------------------------------------------- */

void pl_engine_events_clear(pl_engine *e) { e->n_events = e->ev_read = e->ev_len = 0; }

/* An event's payload from its 8-byte aligned start: text and its NUL, then (with a token) the
 * token, its logprob and the top logprobs, then the error text. Returns the payload's size;
 * *tok and *err get the offsets of those parts. */
static size_t event_offsets(const pl_output_event *ev, size_t elen, size_t *tok, size_t *err) {
  *tok = (ev->text_len + 1 + 7) & ~(size_t)7;
  *err = *tok + (ev->n_tokens ? 8 + (size_t)ev->n_top * sizeof(pl_top_logprob) : 0);
  return *err + elen;
}

/* Point ev into its payload at base. */
static void event_point(pl_output_event *ev, char *base, size_t elen) {
  size_t tok, err;
  event_offsets(ev, elen, &tok, &err);
  ev->text = base;
  if (ev->n_tokens) {
    ev->tokens = (const int32_t *)(base + tok);
    ev->logprobs = (const float *)(base + tok + 4);
    ev->top = (const pl_top_logprob *)(base + tok + 8);
  }
  ev->error = elen ? base + err : NULL;
}

/* Queue an event for sample s carrying `text` and the token of this step (if any). */
int pl_engine_emit(pl_engine *e, pl_group *g, pl_sample_state *s, const char *text, size_t len) {
  if (e->ev_read == e->n_events)
    pl_engine_events_clear(e);
  if (pl_array_grow(&e->events, &e->cap_events, (size_t)e->n_events + 1, sizeof *e->events, 64))
    return pl_fail(PL_ENOMEM, "out of memory for events");
  /* every failure sets g->error; only a failed strdup of it leaves NULL */
  const char *err = s->finish != PL_FINISH_ERROR ? NULL : g->error ? g->error : "out of memory";
  size_t elen = err ? strlen(err) + 1 : 0;
  int want_lp = g->sp.logprobs >= 0;
  pl_output_event ev = {.request_id = g->id, .index = s->index, .text_len = len,
                        .n_tokens = s->has_event ? 1 : 0,
                        .n_top = s->has_event && want_lp ? s->ev_ntop : 0, .finish = s->finish,
                        .prompt_tokens = g->n_prompt, .completion_tokens = s->n_out,
                        .cached_tokens = g->cached_tokens};
  size_t tok, eoff, off = e->ev_len, bytes = event_offsets(&ev, elen, &tok, &eoff);
  if (pl_array_grow(&e->ev_arena, &e->ev_cap, off + bytes, 1, 4096))
    return pl_fail(PL_ENOMEM, "out of memory for events");
  e->ev_len = (off + bytes + 7) & ~(size_t)7;
  char *base = e->ev_arena + off;
  event_point(&ev, base, elen);
  memcpy(base, text, len);
  base[len] = 0;
  if (ev.n_tokens) {
    memcpy((void *)ev.tokens, &s->ev_tok, sizeof s->ev_tok);
    memcpy((void *)ev.logprobs, &s->ev_lp, sizeof s->ev_lp);
    memcpy((void *)ev.top, s->ev_top, (size_t)ev.n_top * sizeof *ev.top);
  }
  if (elen)
    memcpy((void *)ev.error, err, elen);
  e->events[e->n_events++] = (pl_event_store){ev, off, elen, want_lp};
  return 0;
}

void pl_engine_emit_finish(pl_engine *e, pl_group *g, pl_sample_state *s) {
  s->finish_unsent = pl_engine_emit(e, g, s, "", 0) < 0;
}

int pl_engine_group_unsent(const pl_group *g) {
  for (int i = 0; i < g->sp.n; i++)
    if (g->samples[i].finish_unsent)
      return 1;
  return 0;
}

void pl_engine_retry_unsent(pl_engine *e) {
  for (pl_group *g = e->groups; g; g = g->next)
    for (int i = 0; i < g->sp.n; i++) {
      pl_sample_state *s = &g->samples[i];
      if (s->finish_unsent) {
        s->has_event = 0; /* its token, if any, went out with an earlier event or is lost */
        pl_engine_emit_finish(e, g, s);
      }
    }
}

int pl_engine_poll(pl_engine *e, pl_output_event *ev) {
  if (e->ev_read >= e->n_events)
    pl_engine_retry_unsent(e);
  if (e->ev_read >= e->n_events) {
    /* All taken, and the last one's pointers expire with this call. A busy engine keeps the
     * arena for the next step; an idle one gives it back (it would hold it indefinitely). */
    pl_engine_events_clear(e);
    if (!e->groups) {
      pl_free(e->ev_arena);
      e->ev_arena = NULL;
      e->ev_cap = 0;
    }
    return 0;
  }
  pl_event_store *es = &e->events[e->ev_read++];
  *ev = es->ev;
  /* the arena may have moved since the event was queued: point into it now */
  event_point(ev, e->ev_arena + es->off, es->elen);
  if (!es->logprobs) {
    ev->logprobs = NULL;
    ev->top = NULL;
  }
  return 1;
}
