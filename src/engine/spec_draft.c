/* Draft model for speculative decoding (see spec_draft.h). */
#include "engine/spec_draft.h"

#include <string.h>

#include "backend/backend.h"
#include "core/kv_cache.h"
#include "plan/step_plan.h"
#include "model/runner.h"
#include "tokenizer/tokenizer.h"
#include "util/alloc.h"
#include "util/error.h"

struct pl_spec_draft {
  pl_spec_draft_params p;
  pl_model *m;
  pl_backend *be;
  pl_runner *runner;
  pl_kv_cache *kv;
  int V, bps;            /* vocabulary, max blocks per sequence */
  pl_step_plan plan;     /* arrays owned here */
  float *logits;         /* [max_seqs][V] */
  int *row_of;           /* [max_seqs] logits row of each request this round, -1 = none */
};

static int check_vocab(const pl_spec_draft *d, const pl_model *target,
                       const pl_tokenizer *ttok) {
  if (d->m->hp.n_vocab != target->hp.n_vocab)
    return pl_fail(PL_EINVAL, "draft model %s has a vocabulary of %d tokens, the target %s has "
                   "%d: a draft must share the target's vocabulary", d->p.path,
                   d->m->hp.n_vocab, target->path, target->hp.n_vocab);
  pl_tokenizer *dt = NULL;
  int rc = d->m->gguf ? pl_tokenizer_load_gguf(d->m->gguf, &dt)
                      : pl_tokenizer_load_hf(d->m->hf_dir, &dt);
  if (rc < 0)
    return pl_fail_prefix(rc, "draft model tokenizer");
  int nv = pl_tokenizer_n_vocab(ttok);
  if (pl_tokenizer_n_vocab(dt) != nv) {
    rc = pl_fail(PL_EINVAL, "draft model %s: its tokenizer has %d tokens, the target's %d: a "
                 "draft must share the target's vocabulary", d->p.path,
                 pl_tokenizer_n_vocab(dt), nv);
  }
  for (int32_t id = 0; rc == 0 && id < nv; id++) {
    size_t la, lb;
    const char *a = pl_tokenizer_token_text(ttok, id, &la);
    const char *b = pl_tokenizer_token_text(dt, id, &lb);
    if (la != lb || (la && memcmp(a, b, la)))
      rc = pl_fail(PL_EINVAL, "draft model %s: token %d is '%.*s' but the target's is '%.*s': "
                   "a draft must share the target's vocabulary", d->p.path, (int)id,
                   (int)(lb > 40 ? 40 : lb), b ? b : "", (int)(la > 40 ? 40 : la), a ? a : "");
  }
  pl_tokenizer_free(dt);
  return rc;
}

int pl_spec_draft_create(const pl_spec_draft_params *p, const pl_model *target,
                         const pl_tokenizer *target_tok, pl_spec_draft **out) {
  *out = NULL;
  if (!p->path || p->max_seqs < 1 || p->max_tokens < p->max_seqs || p->max_k < 1)
    return pl_fail(PL_EINVAL, "draft model: bad parameters");
  pl_spec_draft *d = pl_calloc(1, sizeof *d);
  if (!d)
    return pl_fail(PL_ENOMEM, "out of memory");
  d->p = *p;
  int rc = p->dummy ? pl_model_load_dummy(p->dummy, &d->m) : pl_model_load(p->path, &d->m);
  if (rc < 0) {
    rc = pl_fail_prefix(rc, "draft model");
    goto fail;
  }
  d->V = d->m->hp.n_vocab;
  if ((rc = check_vocab(d, target, target_tok)) < 0)
    goto fail;
  pl_kv_cache_params kp = {.num_blocks = p->n_blocks, .block_size = p->block_size,
                           .max_seqs = p->max_seqs, .max_model_len = p->max_model_len,
                           .enable_prefix_caching = 0};
  if ((rc = pl_kv_cache_create(&kp, &d->kv)) < 0)
    goto fail;
  /* its own backend: a backend holds one KV pool */
  if ((rc = pl_backend_create(p->device, p->n_threads, &d->be)) < 0 ||
      (rc = pl_model_upload(d->m, d->be, 0)) < 0)
    goto fail;
  pl_runner_params rp = {.max_tokens = p->max_tokens, .max_logits = p->max_seqs,
                         .block_size = p->block_size, .n_blocks = p->n_blocks};
  if ((rc = pl_runner_create(d->m, d->be, &rp, &d->runner)) < 0)
    goto fail;
  d->bps = pl_kv_cache_max_blocks_per_seq(d->kv);
  size_t nt = (size_t)p->max_tokens, ns = (size_t)p->max_seqs;
  pl_step_plan *pl = &d->plan;
  pl->block_size = p->block_size;
  pl->token_ids = pl_calloc(nt, sizeof(int32_t));
  pl->positions = pl_calloc(nt, sizeof(int32_t));
  pl->slot_mapping = pl_calloc(nt, sizeof(int32_t));
  pl->query_start_loc = pl_calloc(ns + 1, sizeof(int32_t));
  pl->seq_lens = pl_calloc(ns, sizeof(int32_t));
  pl->block_tables = pl_calloc(ns * (size_t)d->bps, sizeof(int32_t));
  pl->logits_rows = pl_calloc(ns, sizeof(int32_t));
  d->logits = pl_malloc(ns * (size_t)d->V * sizeof(float));
  d->row_of = pl_malloc(ns * sizeof(int));
  if (!pl->token_ids || !pl->positions || !pl->slot_mapping || !pl->query_start_loc ||
      !pl->seq_lens || !pl->block_tables || !pl->logits_rows || !d->logits || !d->row_of) {
    rc = pl_fail(PL_ENOMEM, "draft model: out of memory for %d sequences", p->max_seqs);
    goto fail;
  }
  *out = d;
  return PL_OK;
fail:
  pl_spec_draft_destroy(d);
  return rc;
}

void pl_spec_draft_destroy(pl_spec_draft *d) {
  if (!d)
    return;
  pl_runner_free(d->runner);
  if (d->be)
    d->be->ops->destroy(d->be);
  pl_kv_cache_destroy(d->kv);
  pl_model_free(d->m);
  pl_step_plan *pl = &d->plan;
  pl_free(pl->token_ids);
  pl_free(pl->positions);
  pl_free(pl->slot_mapping);
  pl_free(pl->query_start_loc);
  pl_free(pl->seq_lens);
  pl_free(pl->block_tables);
  pl_free(pl->logits_rows);
  pl_free(d->logits);
  pl_free(d->row_of);
  pl_free(d);
}

/* Add n tokens of seq (tok[i] at positions start + i) to the plan being built. */
static void plan_add(pl_spec_draft *d, int seq, const int32_t *tok, int n, int want_logits) {
  pl_step_plan *pl = &d->plan;
  const int bs = d->p.block_size;
  const int32_t *table = pl_kv_seq_blocks(d->kv, seq);
  int len = pl_kv_seq_num_tokens(d->kv, seq), start = len - n, i = pl->n_seqs;
  pl->query_start_loc[i] = pl->n_tokens;
  for (int j = 0; j < n; j++) {
    int pos = start + j, t = pl->n_tokens++;
    pl->token_ids[t] = tok[j];
    pl->positions[t] = pos;
    pl->slot_mapping[t] = table[pos / bs] * bs + pos % bs;
  }
  pl->seq_lens[i] = len;
  int nb = (len + bs - 1) / bs;
  int32_t *brow = pl->block_tables + (size_t)i * (size_t)d->bps;
  memcpy(brow, table, (size_t)nb * sizeof *brow);
  memset(brow + nb, 0, (size_t)(d->bps - nb) * sizeof *brow);
  if (want_logits)
    pl->logits_rows[pl->n_logits++] = pl->n_tokens - 1;
  pl->n_seqs++;
  pl->query_start_loc[pl->n_seqs] = pl->n_tokens;
}

static void plan_reset(pl_spec_draft *d) {
  d->plan.n_tokens = d->plan.n_seqs = d->plan.n_logits = d->plan.n_copies = 0;
  d->plan.max_blocks_per_seq = d->bps;
  d->plan.query_start_loc[0] = 0;
}

/* Draw request r's next proposal from logits row `row`. */
static void draw(pl_spec_draft *d, pl_sampler *smp, pl_draft_req *r, int row) {
  const float *lg = d->logits + (size_t)row * d->V;
  pl_sample_ctx c = r->ctx;
  c.n_output = r->ctx.n_output + r->n_out;
  int32_t tok;
  if (r->q) {
    float *q = r->q + (size_t)r->n_out * d->V;
    pl_sample_probs(smp, &c, lg, q);
    tok = pl_sample_draw(q, d->V, 1.0, c.rng);
  } else {
    pl_sample_result res;
    pl_sample(smp, &c, lg, &res); /* greedy: the argmax, no randomness */
    tok = res.token;
  }
  r->out[r->n_out] = tok;
  r->hist[r->ctx.n_output + r->n_out] = tok; /* the next draw's penalties see it */
  r->n_out++;
}

int pl_spec_draft_propose(pl_spec_draft *d, pl_sampler *smp, pl_draft_req *reqs, int n) {
  if (n > d->p.max_seqs)
    n = d->p.max_seqs;
  /* round 0: catch up (chunked by the token budget); logits for those that caught up */
  plan_reset(d);
  int budget = d->p.max_tokens;
  for (int i = 0; i < n; i++) {
    pl_draft_req *r = &reqs[i];
    r->n_out = 0;
    d->row_of[i] = -1;
    if (*r->seq < 0 && pl_kv_seq_open(d->kv, 0, r->seq) < 0) {
      *r->seq = -1;
      continue;
    }
    int have = pl_kv_seq_num_tokens(d->kv, *r->seq);
    int need = r->n_tokens - have;
    if (need <= 0 || budget <= 0 || r->k <= 0) /* need <= 0 cannot happen: engine truncates */
      continue;
    int feed = need < budget ? need : budget;
    /* room for the k - 1 proposals fed later too, so the rounds below cannot fail */
    int extra = feed == need ? r->k - 1 : 0;
    if (have + feed + extra > d->p.max_model_len)
      extra = 0;
    if (pl_kv_allocate_slots(d->kv, *r->seq, NULL, feed, have + feed + extra) < 0) {
      pl_spec_draft_release(d, *r->seq); /* pool full: this request does without */
      *r->seq = -1;
      continue;
    }
    budget -= feed;
    if (feed == need)
      d->row_of[i] = d->plan.n_logits;
    plan_add(d, *r->seq, r->tokens + have, feed, feed == need);
    if (feed == need && extra == 0)
      r->k = 1; /* no room to feed more proposals */
  }
  while (d->plan.n_tokens > 0) {
    int rc = pl_runner_forward(d->runner, &d->plan, d->logits);
    if (rc < 0)
      return rc;
    /* draw, then feed each proposal that still needs a successor */
    plan_reset(d);
    for (int i = 0; i < n; i++) {
      pl_draft_req *r = &reqs[i];
      if (d->row_of[i] < 0)
        continue;
      draw(d, smp, r, d->row_of[i]);
      d->row_of[i] = -1;
      if (r->n_out >= r->k)
        continue;
      /* blocks were reserved in round 0: this allocation takes no new block */
      if (pl_kv_allocate_slots(d->kv, *r->seq, NULL, 1, 0) < 0)
        continue;
      d->row_of[i] = d->plan.n_logits;
      plan_add(d, *r->seq, &r->out[r->n_out - 1], 1, 1);
    }
  }
  return PL_OK;
}

void pl_spec_draft_truncate(pl_spec_draft *d, int seq, int n_keep) {
  if (seq < 0 || !pl_kv_seq_is_open(d->kv, seq))
    return;
  if (n_keep < pl_kv_seq_num_tokens(d->kv, seq))
    pl_kv_truncate(d->kv, seq, n_keep, 0);
}

void pl_spec_draft_release(pl_spec_draft *d, int seq) {
  if (seq >= 0)
    pl_kv_seq_free(d->kv, seq);
}

int pl_spec_draft_blocks_used(const pl_spec_draft *d) {
  return pl_kv_cache_usable_blocks(d->kv) - pl_kv_cache_num_free_blocks(d->kv);
}

int pl_spec_draft_check(const pl_spec_draft *d) { return pl_kv_cache_check(d->kv); }
