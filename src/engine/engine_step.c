/* One engine step: schedule, forward, sample, append, detokenize, stop, emit, retire. */
#include <stdio.h>
#include <string.h>

#include "engine/engine_impl.h"
#include "grammar/grammar.h"
#include "model/runner.h"
#include "tokenizer/tokenizer.h"
#include "util/alloc.h"
#include "util/error.h"
#include "util/log.h"

/* Retire one sample; the group goes when its last sample is done. */
static void finish_sample(pl_engine *e, pl_sample_state *s, pl_finish_reason why) {
  pl_group *g = s->g;
  if (s->sr) {
    pl_sched_finish(e->sched, s->sr);
    s->sr = NULL;
  }
  s->finish = why;
  g->n_live--;
}

static void fail_group(pl_engine *e, pl_group *g, const char *msg) {
  if (!g->error)
    g->error = pl_strdup(msg);
  for (int i = 0; i < g->sp.n; i++) {
    pl_sample_state *s = &g->samples[i];
    if (s->finish != PL_FINISH_NONE)
      continue;
    finish_sample(e, s, PL_FINISH_ERROR);
    s->has_event = 0;
    pl_engine_emit(e, g, s, "", 0);
  }
}

/* n > 1: create samples 1..n-1 from sample 0 once its prompt logits are here. */
static int fork_group(pl_engine *e, pl_group *g) {
  pl_sample_state *s0 = &g->samples[0];
  for (int i = 1; i < g->sp.n; i++) {
    int rc = pl_sched_fork(e->sched, s0->sr, g->id, &g->samples[i], &g->samples[i].sr);
    if (rc < 0)
      return rc;
  }
  g->forked = 1;
  return 0;
}

/* Append the sampled token to s, run the stop checks and queue its event. */
static void advance(pl_engine *e, pl_sample_state *s, const pl_sample_result *r) {
  pl_group *g = s->g;
  const pl_sampling_params *sp = &g->sp;
  int32_t tok = r->token;
  s->has_event = 1;
  s->ev_tok = tok;
  s->ev_lp = r->logprob;
  s->ev_ntop = r->n_top;
  memcpy(s->ev_top, r->top, (size_t)r->n_top * sizeof *r->top);
  int rc = pl_sched_append_token(e->sched, s->sr, tok);
  if (rc < 0) {
    PL_ERROR("request %llu: append failed: %s", (unsigned long long)g->id, pl_last_error());
    finish_sample(e, s, PL_FINISH_ERROR);
    pl_engine_emit(e, g, s, "", 0);
    return;
  }
  s->out[s->n_out++] = tok;
  int grammar_done = 0;
  if (s->gm) {
    if (pl_gmatch_accept(s->gm, tok) < 0) { /* the mask allowed it: cannot happen */
      PL_ERROR("request %llu: %s", (unsigned long long)g->id, pl_last_error());
      finish_sample(e, s, PL_FINISH_ERROR);
      pl_engine_emit(e, g, s, "", 0);
      return;
    }
    grammar_done = pl_gmatch_done(s->gm);
  }
  e->generation_tokens_total++;
  pl_finish_reason why = PL_FINISH_NONE;
  int is_stop_tok = 0;
  if (s->n_out > sp->min_tokens) {
    if (!sp->ignore_eos && pl_tokenizer_is_eog(e->tok, tok))
      is_stop_tok = 1;
    for (int i = 0; i < sp->n_stop_token_ids; i++)
      if (sp->stop_token_ids[i] == tok)
        is_stop_tok = 1;
  }
  const char *text = "";
  size_t len = 0;
  if (is_stop_tok) {
    why = PL_FINISH_STOP; /* the stop token's own text is not part of the output */
    pl_text_stream_push(&s->ts, -1, 1, &text, &len);
  } else {
    int at_len = s->n_out >= sp->max_tokens || s->sr->num_tokens >= e->p.max_model_len;
    int st = pl_text_stream_push(&s->ts, tok, at_len || grammar_done, &text, &len);
    if (st == 1 || grammar_done) /* a complete grammar: nothing more may follow */
      why = PL_FINISH_STOP;
    else if (at_len)
      why = PL_FINISH_LENGTH;
  }
  if (why)
    finish_sample(e, s, why);
  pl_engine_emit(e, g, s, text, len);
}

static void sample_all(pl_engine *e, const pl_sched_output *o) {
  int V = e->model->hp.n_vocab;
  for (int i = 0; i < o->plan.n_logits; i++) {
    pl_sched_req *sr = o->logits_reqs[i];
    pl_sample_state *s = sr->user;
    pl_group *g = s->g;
    if (s->finish != PL_FINISH_NONE)
      continue;
    const float *lg = e->logits + (size_t)i * V;
    if (g->cached_tokens == 0 && sr->num_cached_tokens > 0)
      g->cached_tokens = sr->num_cached_tokens;
    int first = s->index == 0 && !g->forked && g->sp.n > 1;
    if (first && fork_group(e, g) < 0) {
      fail_group(e, g, "out of memory forking parallel samples");
      continue;
    }
    int lo = s->index, hi = first ? g->sp.n : s->index + 1;
    for (int k = lo; k < hi; k++) {
      pl_sample_state *ss = &g->samples[k];
      /* a forked child that found no free slot waits and gets its own logits later */
      if (!ss->sr || ss->finish != PL_FINISH_NONE || ss->sr->status != PL_REQ_RUNNING ||
          ss->sr->num_computed_tokens != ss->sr->num_tokens)
        continue;
      pl_sample_ctx c = {.sp = &g->sp, .prompt = g->prompt, .n_prompt = g->n_prompt,
                         .output = ss->out, .n_output = ss->n_out, .eog_ids = e->eog_ids,
                         .n_eog = g->sp.ignore_eos ? 0 : e->n_eog, .rng = &ss->rng};
      if (ss->gm) {
        int n_ok = pl_gmatch_mask(ss->gm, e->gmask);
        if (n_ok <= 0) {
          char msg[300];
          snprintf(msg, sizeof msg, "grammar: %s", n_ok < 0 ? pl_last_error()
                   : "no token of the vocabulary can continue the grammar here");
          if (!g->error)
            g->error = pl_strdup(msg);
          finish_sample(e, ss, PL_FINISH_ERROR);
          ss->has_event = 0;
          pl_engine_emit(e, g, ss, "", 0);
          continue;
        }
        c.allow = e->gmask;
      }
      pl_sample_result r;
      pl_sample(&e->sampler, &c, lg, &r);
      advance(e, ss, &r);
    }
  }
}

int pl_engine_step(pl_engine *e) {
  /* drop groups that finished in the previous step */
  for (pl_group *g = e->groups, *nx; g; g = nx) {
    nx = g->next;
    if (g->n_live == 0)
      pl_engine_group_free(e, g);
  }
  const pl_sched_output *o;
  int n = pl_sched_schedule(e->sched, &o);
  if (n < 0)
    return n;
  for (int i = 0; i < o->n_preempted; i++) {
    const pl_sched_req *r = o->preempted[i];
    PL_INFO("request %llu preempted (KV cache full; %d time%s), will recompute %d tokens",
            (unsigned long long)r->id, r->num_preemptions, r->num_preemptions == 1 ? "" : "s",
            r->num_tokens);
  }
  if (n > 0) {
    int rc = pl_runner_forward(e->runner, &o->plan, e->logits);
    if (rc < 0) {
      /* an internal error: the plan's blocks may be cached without K/V, so drop the cache and
       * fail every request of the plan; the engine keeps serving the rest */
      char msg[512];
      snprintf(msg, sizeof msg, "internal error in the forward pass: %s", pl_last_error());
      PL_ERROR("%s", msg);
      pl_sched_reset_prefix_cache(e->sched);
      for (int i = 0; i < o->plan.n_seqs; i++) {
        pl_sample_state *s = o->seq_reqs[i]->user;
        if (s->finish == PL_FINISH_NONE)
          fail_group(e, s->g, msg);
      }
      n = 0;
    }
  }
  if (n > 0)
    sample_all(e, o);
  /* requests that can never fit the pool: retired after the forward, since a sibling sample
   * of theirs may have been part of this step's plan */
  for (int i = 0; i < o->n_failed; i++) { /* mark first: failing frees the requests */
    pl_sample_state *s = o->failed[i]->user;
    s->g->unfit_tokens = o->failed[i]->max_tokens;
  }
  for (pl_group *g = e->groups; g && o->n_failed; g = g->next)
    if (g->unfit_tokens) {
      char msg[256];
      snprintf(msg, sizeof msg,
               "request needs %d tokens of KV cache, more than the whole pool holds: raise "
               "--kv-cache-memory or lower max_tokens", g->unfit_tokens);
      fail_group(e, g, msg);
      g->unfit_tokens = 0;
    }
  return n;
}
