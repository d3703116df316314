/* Speculative decoding (vLLM's spec decode, llama.cpp's speculative): each step, before the
 * schedule, decoding requests get up to K proposed tokens, from prompt lookup (--speculative
 * ngram: the continuation of the latest earlier occurrence of the request's last n tokens)
 * or from a draft model (spec_draft.c). The scheduler puts the proposals in the same plan as
 * every other request's decode or prefill, with a logits row per proposal; verification
 * here is exact rejection sampling (Leviathan et al. 2023): proposal d drawn from q is kept
 * with probability min(1, p(d)/q(d)); the first rejection draws from max(0, p - q)
 * normalised; when all are kept, a bonus token is drawn from the last row. p is the
 * request's processed distribution (penalties, temperature, top-k/p, min-p) at that
 * position, so the output distribution is the target's; greedy keeps exactly the argmax
 * tokens. n-gram proposals are deterministic (q is a one-hot).
 *
 * Adaptive: a request whose acceptance average falls below 0.3 stops proposing for a
 * backoff that doubles (8, 16, ... 256 steps; not with spec_no_backoff); nobody proposes while more than
 * spec_max_batch requests are decoding (verification is no longer nearly free there). */
#include <string.h>

#include "engine/engine_impl.h"
#include "engine/spec_draft.h"
#include "util/alloc.h"
#include "util/error.h"
#include "util/log.h"

typedef struct pl_spec {
  int k, nmin, nmax, max_batch;
  pl_spec_draft *draft;
  float *p, *res;        /* [V] target distribution, residual */
  float *q;              /* draft, sampled requests: [max_batch][k][V] */
  pl_draft_req *dreq;    /* [max_batch] */
  pl_sample_state **dss; /* [max_batch] */
  int failed;            /* the draft forward failed: speculation off */
  int64_t n_drafts, n_draft_tokens, n_accepted, per_pos[PL_SPEC_MAX_TOKENS];
} pl_spec;

static int spec_k(const pl_engine_params *p) {
  return p->num_speculative_tokens > 0 ? p->num_speculative_tokens : 4;
}
static int spec_batch(const pl_engine_params *p) {
  int b = p->spec_max_batch > 0 ? p->spec_max_batch : 8;
  return b < p->max_num_seqs ? b : p->max_num_seqs;
}

int pl_spec_extra_logits(const pl_engine_params *p) {
  if (p->spec_method == PL_SPEC_NONE)
    return 0;
  return spec_k(p) * spec_batch(p);
}

int pl_spec_create(pl_engine *e) {
  pl_engine_params *p = &e->p;
  if (p->spec_method == PL_SPEC_NONE)
    return PL_OK;
  if (p->spec_method != PL_SPEC_NGRAM && p->spec_method != PL_SPEC_DRAFT)
    return pl_fail(PL_EINVAL, "speculative: unknown method %d", (int)p->spec_method);
  int k = spec_k(p);
  if (k < 1 || k > PL_SPEC_MAX_TOKENS)
    return pl_fail(PL_EINVAL, "--num-speculative-tokens must be in [1, %d], got %d",
                   PL_SPEC_MAX_TOKENS, k);
  int nmin = p->ngram_min > 0 ? p->ngram_min : 2, nmax = p->ngram_max > 0 ? p->ngram_max : 4;
  if (p->ngram_min > 0 && p->ngram_max <= 0 && nmax < nmin)
    nmax = nmin;
  if (nmin > nmax || nmax > 64)
    return pl_fail(PL_EINVAL, "--ngram-min %d and --ngram-max %d: need 1 <= min <= max <= 64",
                   nmin, nmax);
  if (p->spec_method == PL_SPEC_DRAFT && !p->draft_model_path)
    return pl_fail(PL_EINVAL, "--speculative draft needs --draft-model PATH");
  pl_spec *sp = pl_calloc(1, sizeof *sp);
  if (!sp)
    return pl_fail(PL_ENOMEM, "out of memory");
  e->spec = sp;
  sp->k = k;
  sp->nmin = nmin;
  sp->nmax = nmax;
  sp->max_batch = spec_batch(p);
  size_t V = (size_t)e->model->hp.n_vocab;
  sp->p = pl_malloc(V * sizeof(float));
  sp->res = pl_malloc(V * sizeof(float));
  if (!sp->p || !sp->res)
    return pl_fail(PL_ENOMEM, "out of memory");
  if (p->spec_method == PL_SPEC_DRAFT) {
    sp->q = pl_malloc((size_t)sp->max_batch * (size_t)k * V * sizeof(float));
    sp->dreq = pl_calloc((size_t)sp->max_batch, sizeof *sp->dreq);
    sp->dss = pl_calloc((size_t)sp->max_batch, sizeof *sp->dss);
    if (!sp->q || !sp->dreq || !sp->dss)
      return pl_fail(PL_ENOMEM, "out of memory for draft distributions");
    /* as many draft blocks as target blocks: a request never needs more draft tokens */
    pl_dummy_spec ds = pl_engine_dummy_spec(p, p->draft_model_path);
    pl_spec_draft_params dp = {.path = p->draft_model_path,
                               .dummy = p->load_format == PL_LOAD_DUMMY ? &ds : NULL,
                               .device = p->device,
                               .n_threads = p->n_threads,
                               .block_size = p->block_size, .n_blocks = e->n_blocks,
                               .max_seqs = p->max_num_seqs, .max_model_len = p->max_model_len,
                               .max_tokens = p->max_num_batched_tokens, .max_k = k};
    PL_TRY(pl_spec_draft_create(&dp, e->model, e->tok, &sp->draft));
    PL_INFO("speculative decoding: draft model %s%s, %d tokens per step", p->draft_model_path,
            dp.dummy ? " (random weights)" : "", k);
  } else {
    PL_INFO("speculative decoding: n-gram lookup (n = %d..%d), %d tokens per step", nmin, nmax,
            k);
  }
  return PL_OK;
}

void pl_spec_destroy(pl_engine *e) {
  pl_spec *sp = e->spec;
  if (!sp)
    return;
  pl_spec_draft_destroy(sp->draft);
  pl_free(sp->p);
  pl_free(sp->res);
  pl_free(sp->q);
  pl_free(sp->dreq);
  pl_free(sp->dss);
  pl_free(sp);
  e->spec = NULL;
}

/* Prompt lookup: the continuation (at most k tokens) of the latest earlier occurrence of the
 * last n tokens, n from nmax down to nmin. */
static int ngram_propose(const pl_spec *sp, const int32_t *t, int n_tok, int k, int32_t *out) {
  for (int n = sp->nmax; n >= sp->nmin; n--) {
    if (n >= n_tok)
      continue;
    const int32_t *suf = t + n_tok - n;
    for (int i = n_tok - n - 1; i >= 0; i--) {
      if (t[i] != suf[0] || memcmp(t + i, suf, (size_t)n * sizeof *t))
        continue;
      int m = n_tok - (i + n);
      if (m > k)
        m = k;
      memcpy(out, t + i + n, (size_t)m * sizeof *out);
      return m;
    }
  }
  return 0;
}

static pl_sample_ctx ctx_of(const pl_engine *e, pl_sample_state *s) {
  const pl_group *g = s->g;
  pl_sample_ctx c = {.sp = &g->sp, .prompt = s->sr->tokens, .n_prompt = g->n_prompt,
                     .output = s->out, .n_output = s->n_out, .eog_ids = e->eog_ids,
                     .n_eog = g->sp.ignore_eos ? 0 : e->n_eog, .rng = &s->rng};
  return c;
}

int pl_spec_propose(pl_engine *e) {
  pl_spec *sp = e->spec;
  if (!sp || sp->failed)
    return 0;
  int n_dec = 0;
  for (pl_group *g = e->groups; g; g = g->next)
    for (int i = 0; i < g->sp.n; i++) {
      pl_sample_state *s = &g->samples[i];
      s->spec_n = 0;
      s->spec_slot = -1;
      if (s->sr)
        s->sr->n_spec = 0;
      if (s->sr && s->finish == PL_FINISH_NONE && s->sr->status == PL_REQ_RUNNING &&
          s->sr->num_computed_tokens == s->sr->num_tokens - 1)
        n_dec++;
    }
  if (n_dec > sp->max_batch)
    return 0; /* under load a step is compute-bound: verification would cost real time */
  int nd = 0;
  for (pl_group *g = e->groups; g; g = g->next)
    for (int i = 0; i < g->sp.n; i++) {
      pl_sample_state *s = &g->samples[i];
      pl_sched_req *r = s->sr;
      if (!r || s->finish != PL_FINISH_NONE || r->status != PL_REQ_RUNNING ||
          r->num_computed_tokens != r->num_tokens - 1 || (g->sp.n > 1 && !g->forked))
        continue;
      if (s->gm) /* constrained: proposals would have to be checked against the grammar */
        continue;
      if (s->spec_skip > 0) {
        s->spec_skip--;
        continue;
      }
      int k = sp->k, room = r->max_tokens - r->num_tokens - 1;
      if (k > room)
        k = room;
      if (k <= 0)
        continue;
      s->spec_base = r->num_tokens;
      if (!sp->draft) {
        s->spec_n = ngram_propose(sp, r->tokens, r->num_tokens, k, s->spec);
        if (s->spec_n > 0) {
          r->spec_tokens = s->spec;
          r->n_spec = s->spec_n;
        }
        continue;
      }
      if (nd >= sp->max_batch)
        continue;
      pl_draft_req *dr = &sp->dreq[nd];
      memset(dr, 0, sizeof *dr);
      dr->seq = &s->draft_seq;
      dr->tokens = r->tokens;
      dr->n_tokens = r->num_tokens;
      dr->k = k;
      dr->ctx = ctx_of(e, s);
      dr->hist = s->out;
      dr->out = s->spec;
      dr->q = g->sp.temperature > 0 ? sp->q + (size_t)nd * sp->k * e->model->hp.n_vocab : NULL;
      s->spec_slot = dr->q ? nd : -1;
      sp->dss[nd++] = s;
    }
  if (nd > 0) {
    int rc = pl_spec_draft_propose(sp->draft, &e->sampler, sp->dreq, nd);
    if (rc < 0) {
      PL_ERROR("draft model forward failed (%s): speculative decoding is off from now on",
               pl_last_error());
      sp->failed = 1;
      return 0;
    }
    for (int i = 0; i < nd; i++) {
      pl_sample_state *s = sp->dss[i];
      s->spec_n = sp->dreq[i].n_out;
      if (s->spec_n > 0) {
        s->sr->spec_tokens = s->spec;
        s->sr->n_spec = s->spec_n;
      }
    }
  }
  return 0;
}

int pl_spec_verify(pl_engine *e, pl_sample_state *s, const float *logits, int k,
                   pl_sample_result *final) {
  pl_spec *sp = e->spec;
  const int V = e->model->hp.n_vocab;
  const int32_t *d = s->sr->tokens + s->sr->num_tokens; /* the proposals in the plan */
  const float *q = s->spec_slot >= 0 ? sp->q + (size_t)s->spec_slot * sp->k * V : NULL;
  pl_sample_ctx c = ctx_of(e, s);
  const int greedy = s->g->sp.temperature <= 0;
  /* row j's penalties see the proposals before it as output */
  memcpy(s->out + s->n_out, d, (size_t)k * sizeof *d);
  int a = 0;
  for (; a <= k; a++) {
    c.n_output = s->n_out + a;
    const float *row = logits + (size_t)a * V;
    int am = pl_sample_probs(&e->sampler, &c, row, sp->p);
    if (a == k) { /* all accepted: the bonus token from the last row */
      final->token = greedy ? am : pl_sample_draw(sp->p, V, 1.0, c.rng);
      break;
    }
    int32_t t = d[a];
    float qd = q ? q[(size_t)a * V + t] : 1.0f;
    if (greedy ? t == am : pl_rng_uniform(c.rng) * qd < sp->p[t])
      continue;
    if (greedy) {
      final->token = am;
      break;
    }
    double sum = 0; /* residual max(0, p - q) */
    for (int i = 0; i < V; i++) {
      float qi = q ? q[(size_t)a * V + i] : (i == t ? 1.0f : 0.0f);
      float r = sp->p[i] - qi;
      sp->res[i] = r > 0 ? r : 0;
      sum += sp->res[i];
    }
    final->token = sum > 0 ? pl_sample_draw(sp->res, V, sum, c.rng)
                           : pl_sample_draw(sp->p, V, 1.0, c.rng);
    break;
  }
  pl_sample_logprobs(&s->g->sp, logits + (size_t)a * V, V, final);
  sp->n_drafts++;
  sp->n_draft_tokens += k;
  sp->n_accepted += a;
  for (int j = 0; j < a; j++)
    sp->per_pos[j]++;
  /* acceptance average; a low one backs off */
  s->spec_rate = s->spec_rate == 0 && s->spec_backoff == 0 ? (float)a / k
                                                           : 0.7f * s->spec_rate + 0.3f * a / k;
  if (s->spec_rate < 0.3f && !e->p.spec_no_backoff) {
    s->spec_backoff = s->spec_backoff ? (s->spec_backoff < 256 ? 2 * s->spec_backoff : 256) : 8;
    s->spec_skip = s->spec_backoff;
    s->spec_rate = 0.5f; /* a fresh start after the pause */
  }
  if (sp->draft) /* the draft fed t, d1 .. d(k-1): positions before base + a stay valid */
    pl_spec_draft_truncate(sp->draft, s->draft_seq,
                           s->spec_base + (a < k - 1 ? a : k - 1));
  s->spec_n = 0;
  return a;
}

void pl_spec_end_step(pl_engine *e) {
  pl_spec *sp = e->spec;
  if (!sp || !sp->draft)
    return;
  for (pl_group *g = e->groups; g; g = g->next)
    for (int i = 0; i < g->sp.n; i++) {
      pl_sample_state *s = &g->samples[i];
      if (s->spec_n > 0) /* proposed, not verified (left out of the plan) */
        pl_spec_draft_truncate(sp->draft, s->draft_seq, s->spec_base);
      s->spec_n = 0;
    }
}

void pl_spec_release(pl_engine *e, pl_sample_state *s) {
  if (e->spec && e->spec->draft && s->draft_seq >= 0)
    pl_spec_draft_release(e->spec->draft, s->draft_seq);
  s->draft_seq = -1;
  s->spec_n = 0;
}

void pl_spec_stats(const pl_engine *e, pl_engine_stats *st) {
  const pl_spec *sp = e->spec;
  if (!sp)
    return;
  st->spec_num_positions = sp->k;
  st->spec_num_drafts = sp->n_drafts;
  st->spec_num_draft_tokens = sp->n_draft_tokens;
  st->spec_num_accepted_tokens = sp->n_accepted;
  memcpy(st->spec_accepted_per_pos, sp->per_pos, sizeof sp->per_pos);
  if (sp->draft)
    st->spec_draft_blocks_used = pl_spec_draft_blocks_used(sp->draft);
}

int pl_spec_check(const pl_engine *e) {
  return e->spec && e->spec->draft ? pl_spec_draft_check(e->spec->draft) : PL_OK;
}
