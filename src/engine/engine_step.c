/* One engine step: schedule, forward, sample, append, detokenize, stop, emit, retire. */
#include <stdio.h>
#include <string.h>

#include "engine/engine_impl.h"
#include "grammar/grammar.h"
#include "model/runner.h"
#include "tokenizer/tokenizer.h"
#include "util/alloc.h"
#include "util/array.h"
#include "util/error.h"
#include "util/log.h"

/* The group's failure message, from its first failure. A strdup that fails leaves it NULL,
 * which pl_engine_emit reports as "out of memory" (that is what happened). */
static void set_error(pl_group *g, const char *msg) {
  if (!g->error)
    g->error = pl_strdup(msg);
}

/* Retire one sample; the group goes when its last sample is done. */
static void finish_sample(pl_engine *e, pl_sample_state *s, pl_finish_reason why) {
  pl_group *g = s->g;
  if (s->sr) {
    pl_sched_finish(e->sched, s->sr);
    s->sr = NULL;
  }
  pl_spec_release(e, s);
  s->finish = why;
  g->n_live--;
}

static void fail_group(pl_engine *e, pl_group *g, const char *msg) {
  set_error(g, msg);
  for (int i = 0; i < g->sp.n; i++) {
    pl_sample_state *s = &g->samples[i];
    if (s->finish != PL_FINISH_NONE)
      continue;
    finish_sample(e, s, PL_FINISH_ERROR);
    s->has_event = 0;
    pl_engine_emit_finish(e, g, s);
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

/* Append the sampled token to s (unless the scheduler has it already: an accepted
 * proposal), run the stop checks and queue its event. */
static void advance(pl_engine *e, pl_sample_state *s, const pl_sample_result *r, int appended) {
  pl_group *g = s->g;
  const pl_sampling_params *sp = &g->sp;
  int32_t tok = r->token;
  s->has_event = 1;
  s->ev_tok = tok;
  s->ev_lp = r->logprob;
  s->ev_ntop = r->n_top;
  memcpy(s->ev_top, r->top, (size_t)r->n_top * sizeof *r->top);
  int rc = appended ? PL_OK : pl_sched_append_token(e->sched, s->sr, tok);
  if (rc < 0) {
    PL_ERROR("request %llu: append failed: %s", (unsigned long long)g->id, pl_last_error());
    set_error(g, pl_last_error());
    finish_sample(e, s, PL_FINISH_ERROR);
    pl_engine_emit_finish(e, g, s);
    return;
  }
  s->out[s->n_out++] = tok;
  int grammar_done = 0;
  if (s->gm) {
    if (pl_gmatch_accept(s->gm, tok) < 0) { /* the mask allowed it: out of memory */
      PL_ERROR("request %llu: %s", (unsigned long long)g->id, pl_last_error());
      set_error(g, pl_last_error());
      finish_sample(e, s, PL_FINISH_ERROR);
      s->has_event = 0;
      pl_engine_emit_finish(e, g, s);
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
  int st;
  if (is_stop_tok) {
    why = PL_FINISH_STOP; /* the stop token's own text is not part of the output */
    st = pl_text_stream_push(&s->ts, -1, 1, &text, &len);
  } else {
    int at_len = s->n_out >= sp->max_tokens || g->n_prompt + s->n_out >= e->p.max_model_len;
    st = pl_text_stream_push(&s->ts, tok, at_len || grammar_done, &text, &len);
    if (st == 1 || grammar_done) /* a complete grammar: nothing more may follow */
      why = PL_FINISH_STOP;
    else if (at_len)
      why = PL_FINISH_LENGTH;
  }
  if (st < 0) { /* out of memory detokenizing: this token's text is lost, so the sample fails */
    set_error(g, "out of memory");
    why = PL_FINISH_ERROR;
    text = "";
    len = 0;
  }
  if (why)
    finish_sample(e, s, why);
  if (pl_engine_emit(e, g, s, text, len) < 0) {
    /* out of memory queueing the event: its text is lost, so the sample fails; its finish
     * event is queued by a later step or poll (never dropped) */
    set_error(g, "out of memory queueing output");
    if (s->finish == PL_FINISH_NONE)
      finish_sample(e, s, PL_FINISH_ERROR);
    else
      s->finish = PL_FINISH_ERROR; /* finished this step, but its last text is lost */
    s->finish_unsent = 1;
  }
}

/* Rows lg[0 .. k] of s, which had k proposals in the plan: verify, commit, emit. */
static void verify_sample(pl_engine *e, pl_sample_state *s, const float *lg, int k) {
  const int V = e->model->hp.n_vocab;
  pl_sample_result fin;
  int a = pl_spec_verify(e, s, lg, k, &fin);
  int rc = pl_sched_spec_commit(e->sched, s->sr, a);
  if (rc < 0) {
    PL_ERROR("request %llu: %s", (unsigned long long)s->g->id, pl_last_error());
    set_error(s->g, pl_last_error());
    finish_sample(e, s, PL_FINISH_ERROR);
    pl_engine_emit_finish(e, s->g, s); /* never lost: a later step or poll retries it */
    return;
  }
  for (int j = 0; j < a && s->finish == PL_FINISH_NONE; j++) {
    pl_sample_result r = {.token = s->sr->tokens[s->sr->num_tokens - a + j]};
    pl_sample_logprobs(&s->g->sp, lg + (size_t)j * V, V, &r);
    advance(e, s, &r, 1);
  }
  if (s->finish == PL_FINISH_NONE)
    advance(e, s, &fin, 0);
}

static pl_sample_ctx sample_ctx(const pl_engine *e, pl_sample_state *ss) {
  const pl_group *g = ss->g;
  return (pl_sample_ctx){.sp = &g->sp, .prompt = ss->sr->tokens, .n_prompt = g->n_prompt,
                         .output = ss->out, .n_output = ss->n_out, .eog_ids = e->eog_ids,
                         .n_eog = g->sp.ignore_eos ? 0 : e->n_eog, .rng = &ss->rng};
}

/* How a step's logits reach the sampler. ARGMAX: every row wants only its argmax (see
 * pl_sample_is_argmax), so n ids cross to the host. REDUCED: every row can be sampled from a
 * reduction made where the logits are, after its logit processors sent as sparse edits
 * (pl_sample_edits): a few KiB a row. Else the rows.
 * A forked group's samples share their first row's sampling parameters; a row that serves
 * several samples (a fork's first) has one draw in a reduction, so it takes the rows. */
enum { LOGITS_ROWS, LOGITS_ARGMAX, LOGITS_REDUCED };

/* 1 when sample_all samples ss from its row this step */
static int sample_due(const pl_sample_state *ss) {
  return ss->sr && ss->finish == PL_FINISH_NONE && ss->sr->status == PL_REQ_RUNNING &&
         ss->sr->num_computed_tokens == ss->sr->num_tokens;
}

/* Row i's logit processors appended to e->edits; 0, or -1 when the row cannot be reduced (or
 * out of memory for the edits: the rows are downloaded then). */
static int add_edits(pl_engine *e, int i, pl_sample_state *s) {
  pl_sample_ctx c = sample_ctx(e, s);
  const pl_sampling_params *sp = c.sp;
  /* an upper bound of what pl_sample_edits writes */
  long bound = (long)sp->n_logit_bias + c.n_eog + sp->n_stop_token_ids +
               (sp->repetition_penalty != 1.0f ? (long)c.n_prompt + c.n_output : 0) + c.n_output;
  long need = e->n_edits + bound;
  if (need > (1L << 28) ||
      pl_array_grow(&e->edits, &e->edits_cap, (size_t)need, sizeof *e->edits, 1024) < 0)
    return -1;
  int n = pl_sample_edits(&e->sampler, &c, i, e->edits + e->n_edits, e->edits_cap - e->n_edits);
  if (n < 0)
    return -1;
  e->n_edits += n;
  return 0;
}

static int step_logits_mode(pl_engine *e, const pl_sched_output *o) {
  int argmax = pl_runner_has_argmax(e->runner), reduce = e->reduced != NULL;
  e->n_edits = 0;
  for (int i = 0; i < o->plan.n_logits && (argmax || reduce); i++) {
    pl_sched_req *sr = o->logits_reqs[i];
    pl_sample_state *s = sr->user;
    if (sr->n_spec > 0 || s->gm) /* a grammar masks the logits first */
      return LOGITS_ROWS;
    if (s->finish != PL_FINISH_NONE)
      continue;
    pl_sample_ctx c = sample_ctx(e, s);
    argmax = argmax && pl_sample_is_argmax(&c);
    reduce = reduce && !(s->index == 0 && !s->g->forked && s->g->sp.n > 1) &&
             add_edits(e, i, s) == 0;
  }
  return argmax ? LOGITS_ARGMAX : reduce ? LOGITS_REDUCED : LOGITS_ROWS;
}

/* The reductions' inputs: each due sample's temperature and its one uniform draw (the one
 * pl_sample would take), from its own generator in row order. */
static void reduce_inputs(pl_engine *e, const pl_sched_output *o) {
  for (int i = 0; i < o->plan.n_logits; i++) {
    pl_sample_state *s = o->logits_reqs[i]->user;
    float t = s->g->sp.temperature;
    pl_row_reduce *r = &e->reduced[i];
    r->inv_temp = t > 0.0f ? 1.0f / t : 1.0f;
    r->u = t > 0.0f && sample_due(s) ? pl_rng_uniform(&s->rng) : -1.0;
  }
}

/* The step's logits: argmax ids (mode LOGITS_ARGMAX), e->reduced (LOGITS_REDUCED) or the rows
 * in e->logits. */
static void sample_all(pl_engine *e, const pl_sched_output *o, int mode) {
  const int32_t *ids = mode == LOGITS_ARGMAX ? e->argmax_ids : NULL;
  int V = e->model->hp.n_vocab, have_rows = 0;
  for (int i = 0; i < o->plan.n_logits; i++) {
    pl_sched_req *sr = o->logits_reqs[i];
    pl_sample_state *s = sr->user;
    pl_group *g = s->g;
    float *lg = e->logits + (size_t)i * V;
    if (sr->n_spec > 0) { /* rows i .. i + n_spec belong to sr */
      int k = sr->n_spec;
      if (s->finish == PL_FINISH_NONE)
        verify_sample(e, s, lg, k);
      i += k;
      continue;
    }
    if (s->finish != PL_FINISH_NONE)
      continue;
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
      if (!sample_due(ss))
        continue;
      pl_sample_ctx c = sample_ctx(e, ss);
      if (ss->gm) {
        int n_ok = pl_gmatch_mask(ss->gm, e->gmask);
        if (n_ok <= 0) {
          char msg[300];
          snprintf(msg, sizeof msg, "grammar: %s", n_ok < 0 ? pl_last_error()
                   : "no token of the vocabulary can continue the grammar here");
          set_error(g, msg);
          finish_sample(e, ss, PL_FINISH_ERROR);
          ss->has_event = 0;
          pl_engine_emit_finish(e, g, ss);
          continue;
        }
        c.allow = e->gmask;
      }
      pl_sample_result r = {.token = ids ? ids[i] : 0};
      if (mode == LOGITS_REDUCED) {
        if (!pl_sample_reduced(&e->sampler, &c, &e->reduced[i], &r)) {
          /* the reduction does not decide it (a wide nucleus): fetch the step's rows, once
           * (one transfer, not one per row: on a flat distribution every row falls back) */
          if (!have_rows && pl_runner_logits(e->runner, o->plan.n_logits, e->logits) < 0) {
            fail_group(e, g, pl_last_error());
            break;
          }
          have_rows = 1;
          pl_sample_u(&e->sampler, &c, lg, e->reduced[i].u, &r);
        }
      } else if (!ids) {
        pl_sample(&e->sampler, &c, lg, &r);
      }
      advance(e, ss, &r, 0);
    }
  }
}

int pl_engine_step(pl_engine *e) {
  pl_engine_retry_unsent(e);
  /* drop groups that finished in the previous step (once every finish event is queued) */
  for (pl_group *g = e->groups, *nx; g; g = nx) {
    nx = g->next;
    if (g->n_live == 0 && !pl_engine_group_unsent(g))
      pl_engine_group_free(e, g);
  }
  int rc0 = pl_spec_propose(e);
  if (rc0 < 0)
    return rc0;
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
  int mode = n > 0 ? step_logits_mode(e, o) : LOGITS_ROWS;
  if (n > 0) {
    int rc = pl_runner_forward(e->runner, &o->plan, mode == LOGITS_ROWS ? e->logits : NULL);
    if (rc == 0 && mode == LOGITS_ARGMAX)
      rc = pl_runner_argmax(e->runner, o->plan.n_logits, e->argmax_ids);
    if (rc == 0 && mode == LOGITS_REDUCED) {
      reduce_inputs(e, o);
      rc = pl_runner_sample_reduce(e->runner, o->plan.n_logits, e->reduced, e->edits,
                                   e->n_edits);
    }
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
    sample_all(e, o, mode);
  pl_spec_end_step(e);
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
#ifdef PL_CHECKS
  /* cmake -DPL_CHECKS=ON (the ASan build of CI): the scheduler's, KV cache's and block pool's
   * invariants after every step; a violation is an engine bug, reported as PL_EINTERNAL */
  int bad = pl_sched_check(e->sched);
  if (bad < 0) {
    PL_ERROR("invariant check after a step failed: %s", pl_last_error());
    return bad;
  }
#endif
  return n;
}
