/* Scheduler: budgets, chunked prefill, decode-first, sequence limit, preemption (victim order,
 * FCFS and priority, self-preemption), requests that can never fit, static vs paged
 * admission, prefix hits (incl. within one step), n > 1 forks with copy-on-write, abort and
 * finish, API errors, and a randomised soak.
 *
 * Every plan is checked for internal consistency (query_start_loc / seq_lens / positions /
 * slot_mapping / block_tables / logits rows) and then "executed" on a fake KV memory that
 * stores (token, position) per slot: copies first, then every write of the step, then every
 * sequence reads its whole context through its block-table row and must find exactly its own
 * tokens. That is an end-to-end check of sharing, prefix hits, copy-on-write and preemption
 * that does not trust the scheduler's own bookkeeping. */
#include <string.h>

#include "check.h"
#include "core/scheduler.h"
#include "util/alloc.h"

/* ---- fake runner ------------------------------------------------------------------------- */

typedef struct fake_kv {
  int bs, nslots;
  int32_t *tok, *pos; /* [nslots] what was written at each slot */
  int32_t *stamp;     /* [nslots] step that wrote it (unique-slot check) */
  int step;
} fake_kv;

static void fake_init(fake_kv *f, int num_blocks, int bs) {
  f->bs = bs;
  f->nslots = num_blocks * bs;
  f->tok = malloc((size_t)f->nslots * sizeof(int32_t));
  f->pos = malloc((size_t)f->nslots * sizeof(int32_t));
  f->stamp = calloc((size_t)f->nslots, sizeof(int32_t));
  for (int i = 0; i < f->nslots; i++)
    f->tok[i] = f->pos[i] = -1;
  f->step = 0;
}

static void fake_free(fake_kv *f) {
  free(f->tok);
  free(f->pos);
  free(f->stamp);
}

typedef struct limits {
  int budget, max_seqs;
} limits;

/* Check the plan, run it on the fake KV, check every context. Returns failures. */
static int verify_and_run(pl_scheduler *s, const pl_sched_output *o, fake_kv *f, limits lim) {
  const pl_step_plan *p = &o->plan;
  const pl_kv_cache *kv = pl_sched_kv(s);
  const int bs = p->block_size;
  int bad = 0;
#define VCHECK(c, ...)        \
  do {                        \
    if (!(c)) {               \
      bad++;                  \
      CHECK(c, __VA_ARGS__);  \
    }                         \
  } while (0)
  f->step++;
  VCHECK(p->n_tokens <= lim.budget && p->n_seqs <= lim.max_seqs, "plan %d tokens %d seqs",
         p->n_tokens, p->n_seqs);
  VCHECK(p->query_start_loc[0] == 0 && p->query_start_loc[p->n_seqs] == p->n_tokens,
         "query_start_loc ends");
  int n_complete = 0;
  for (int i = 0; i < p->n_seqs; i++) {
    const pl_sched_req *r = o->seq_reqs[i];
    int n_new = p->query_start_loc[i + 1] - p->query_start_loc[i];
    int len = p->seq_lens[i];
    VCHECK(n_new >= 1 && len >= n_new && len == r->num_computed_tokens && len <= r->num_tokens,
           "row %d: n_new %d len %d computed %d tokens %d", i, n_new, len,
           r->num_computed_tokens, r->num_tokens);
    VCHECK(r->status == PL_REQ_RUNNING, "row %d not running", i);
    const int32_t *row = p->block_tables + (size_t)i * (size_t)p->max_blocks_per_seq;
    const int32_t *tab = pl_kv_seq_blocks(kv, r->kv_seq);
    int nb = (len + bs - 1) / bs;
    VCHECK(nb <= p->max_blocks_per_seq, "row %d needs %d blocks, stride %d", i, nb,
           p->max_blocks_per_seq);
    for (int j = 0; j < p->max_blocks_per_seq; j++)
      VCHECK(j < nb ? (row[j] > 0 && row[j] == tab[j]) : row[j] == 0, "row %d entry %d", i, j);
    for (int k = 0; k < n_new; k++) {
      int t = p->query_start_loc[i] + k, pos = len - n_new + k;
      VCHECK(p->positions[t] == pos && p->token_ids[t] == r->tokens[pos] &&
                 p->slot_mapping[t] == row[pos / bs] * bs + pos % bs,
             "token %d of row %d", t, i);
    }
    if (len == r->num_tokens)
      n_complete++;
  }
  VCHECK(p->n_logits == n_complete, "%d logits rows, %d complete sequences", p->n_logits,
         n_complete);
  for (int j = 0; j < p->n_logits; j++) {
    const pl_sched_req *r = o->logits_reqs[j];
    int found = 0;
    for (int i = 0; i < p->n_seqs; i++)
      if (o->seq_reqs[i] == r)
        found = p->logits_rows[j] == p->query_start_loc[i + 1] - 1 &&
                p->seq_lens[i] == r->num_tokens;
    VCHECK(found, "logits row %d is not its sequence's last token", j);
  }
  /* Execute: copies, then all writes (each slot at most once), then all reads. */
  for (int c = 0; c < p->n_copies; c++) {
    VCHECK(p->copy_src[c] > 0 && p->copy_dst[c] > 0 && p->copy_src[c] != p->copy_dst[c],
           "copy %d", c);
    memcpy(f->tok + p->copy_dst[c] * bs, f->tok + p->copy_src[c] * bs, (size_t)bs * 4);
    memcpy(f->pos + p->copy_dst[c] * bs, f->pos + p->copy_src[c] * bs, (size_t)bs * 4);
  }
  for (int t = 0; t < p->n_tokens; t++) {
    int sl = p->slot_mapping[t];
    VCHECK(sl >= bs && sl < f->nslots && f->stamp[sl] != f->step, "slot %d written twice", sl);
    f->stamp[sl] = f->step;
    f->tok[sl] = p->token_ids[t];
    f->pos[sl] = p->positions[t];
  }
  for (int i = 0; i < p->n_seqs; i++) {
    const pl_sched_req *r = o->seq_reqs[i];
    const int32_t *row = p->block_tables + (size_t)i * (size_t)p->max_blocks_per_seq;
    for (int pos = 0; pos < p->seq_lens[i]; pos++) {
      int sl = row[pos / bs] * bs + pos % bs;
      if (f->tok[sl] != r->tokens[pos] || f->pos[sl] != pos) {
        VCHECK(0, "request %llu reads token %d pos %d at position %d (want %d)",
               (unsigned long long)r->id, f->tok[sl], f->pos[sl], pos, r->tokens[pos]);
        break;
      }
    }
  }
  int ck = pl_sched_check(s);
  VCHECK(ck == PL_OK, "%s", pl_last_error());
#undef VCHECK
  return bad;
}

/* ---- helpers ------------------------------------------------------------------------------ */

static pl_sched_params params(int num_blocks, int bs, int max_len, int max_seqs, int budget) {
  pl_sched_params p = {.num_blocks = num_blocks, .block_size = bs, .max_model_len = max_len,
                       .max_num_seqs = max_seqs, .max_num_batched_tokens = budget,
                       .max_prefill_chunk = 0, .kv_alloc = PL_KV_PAGED,
                       .enable_prefix_caching = 1, .policy = PL_SCHED_FCFS,
                       .admission = PL_ADMIT_GREEDY}; /* most tests drive preemption */
  return p;
}

typedef struct env {
  pl_scheduler *s;
  fake_kv f;
  limits lim;
  const pl_sched_output *o;
} env;

static void env_init(env *e, const pl_sched_params *p) {
  memset(e, 0, sizeof *e);
  CHECK_EQ_INT(pl_sched_create(p, &e->s), PL_OK);
  fake_init(&e->f, p->num_blocks, p->block_size);
  e->lim.budget = p->max_num_batched_tokens;
  e->lim.max_seqs = p->max_num_seqs;
}

static void env_done(env *e) {
  pl_sched_destroy(e->s);
  fake_free(&e->f);
}

static int step(env *e) {
  int n = pl_sched_schedule(e->s, &e->o);
  CHECK(n >= 0, "schedule: %s", pl_last_error());
  CHECK_EQ_INT(n, e->o->plan.n_tokens);
  verify_and_run(e->s, e->o, &e->f, e->lim);
  return n;
}

static int32_t next_token(const pl_sched_req *r) {
  return (int32_t)((r->id * 7919u + (uint64_t)r->num_tokens * 31u) % 50u) + 1;
}

/* Sample for every logits row. */
static void append_all(env *e) {
  for (int j = 0; j < e->o->plan.n_logits; j++) {
    pl_sched_req *r = e->o->logits_reqs[j];
    if (r->num_tokens < r->max_tokens)
      CHECK_EQ_INT(pl_sched_append_token(e->s, r, next_token(r)), PL_OK);
  }
}

static pl_sched_req *add(env *e, uint64_t id, const int32_t *prompt, int n, int cap,
                         int prio) {
  pl_sched_req_params rp = {.id = id, .prompt = prompt, .n_prompt = n, .max_tokens = cap,
                            .priority = prio};
  pl_sched_req *r = NULL;
  CHECK_EQ_INT(pl_sched_add(e->s, &rp, &r), PL_OK);
  return r;
}

static void ramp(int32_t *t, int n, int base) {
  for (int i = 0; i < n; i++)
    t[i] = base + i;
}

static int row_of(const pl_sched_output *o, const pl_sched_req *r) {
  for (int i = 0; i < o->plan.n_seqs; i++)
    if (o->seq_reqs[i] == r)
      return i;
  return -1;
}

static int n_new_of(const pl_sched_output *o, const pl_sched_req *r) {
  int i = row_of(o, r);
  return i < 0 ? 0 : o->plan.query_start_loc[i + 1] - o->plan.query_start_loc[i];
}

/* ---- tests -------------------------------------------------------------------------------- */

static void test_basic(void) {
  pl_sched_params p = params(33, 4, 64, 4, 64);
  env e;
  env_init(&e, &p);
  int32_t pr[10];
  ramp(pr, 10, 100);
  pl_sched_req *r = add(&e, 1, pr, 10, 20, 0);
  CHECK_EQ_INT(r->status, PL_REQ_WAITING);
  CHECK_EQ_INT(pl_sched_num_waiting(e.s), 1);
  CHECK_EQ_INT(step(&e), 10);
  CHECK_EQ_INT(e.o->plan.n_seqs, 1);
  CHECK_EQ_INT(e.o->plan.n_logits, 1);
  CHECK_EQ_INT(e.o->plan.logits_rows[0], 9);
  CHECK_EQ_INT(e.o->plan.seq_lens[0], 10);
  CHECK_EQ_INT(e.o->plan.max_blocks_per_seq, 3);
  CHECK_EQ_INT(r->status, PL_REQ_RUNNING);
  CHECK_EQ_INT(r->num_computed_tokens, 10);
  CHECK_EQ_INT(r->num_cached_tokens, 0);
  append_all(&e);
  CHECK_EQ_INT(step(&e), 1);
  CHECK_EQ_INT(e.o->plan.positions[0], 10);
  CHECK_EQ_INT(e.o->plan.seq_lens[0], 11);
  /* Not sampled again yet: nothing to do. */
  CHECK_EQ_INT(pl_sched_schedule(e.s, &e.o), 0);
  CHECK_EQ_INT(e.o->plan.n_seqs, 0);
  append_all(&e); /* logits of the empty plan: none; append by hand */
  CHECK_EQ_INT(pl_sched_append_token(e.s, r, 5), PL_OK);
  CHECK_EQ_INT(step(&e), 1);
  pl_sched_stats st;
  pl_sched_get_stats(e.s, &st);
  CHECK_EQ_INT(st.num_running, 1);
  CHECK_EQ_INT(st.prompt_tokens_computed, 10);
  CHECK_EQ_INT(st.decode_tokens_computed, 2);
  CHECK_EQ_INT(st.kv.blocks_used, 3);
  pl_sched_finish(e.s, r);
  pl_sched_get_stats(e.s, &st);
  CHECK_EQ_INT(st.kv.blocks_used, 0);
  CHECK_EQ_INT(st.kv.blocks_cached_free, 3); /* 12 tokens: 3 full blocks stay cached */
  CHECK_EQ_INT(st.num_finished, 1);
  CHECK(!pl_sched_has_unfinished(e.s), "idle");
  CHECK_EQ_INT(pl_sched_check(e.s), PL_OK);
  env_done(&e);
}

static void test_chunked_prefill(void) {
  pl_sched_params p = params(33, 4, 64, 4, 16);
  env e;
  env_init(&e, &p);
  int32_t pr[40];
  ramp(pr, 40, 1);
  pl_sched_req *r = add(&e, 1, pr, 40, 48, 0);
  int want[3] = {16, 16, 8};
  for (int k = 0; k < 3; k++) {
    CHECK_EQ_INT(step(&e), want[k]);
    CHECK_EQ_INT(e.o->plan.positions[0], 16 * k);
    CHECK_EQ_INT(e.o->plan.n_logits, k == 2); /* a partial prefill needs no logits */
  }
  CHECK_EQ_INT(r->num_computed_tokens, 40);
  /* With a chunk cap below the budget. */
  env_done(&e);
  p.max_prefill_chunk = 6;
  env_init(&e, &p);
  r = add(&e, 1, pr, 40, 48, 0);
  pl_sched_req *r2 = add(&e, 2, pr + 20, 5, 10, 0);
  CHECK_EQ_INT(step(&e), 11); /* 6 of r, then 5 of r2 */
  CHECK_EQ_INT(n_new_of(e.o, r), 6);
  CHECK_EQ_INT(n_new_of(e.o, r2), 5);
  env_done(&e);
}

static void test_decodes_not_starved(void) {
  /* A long prompt admitted first (earlier in the running order) must not delay decodes. */
  pl_sched_params p = params(65, 4, 200, 4, 8);
  env e;
  env_init(&e, &p);
  int32_t big[150], small[3] = {7, 8, 9};
  ramp(big, 150, 1000);
  pl_sched_req *b = add(&e, 1, big, 150, 160, 0);
  CHECK_EQ_INT(step(&e), 8);
  pl_sched_req *a = add(&e, 2, small, 3, 100, 0);
  CHECK_EQ_INT(step(&e), 8); /* b's 8 (running first), a waits: budget gone */
  CHECK_EQ_INT(a->status, PL_REQ_WAITING);
  env_done(&e);

  p.max_prefill_chunk = 4;
  env_init(&e, &p);
  b = add(&e, 1, big, 150, 160, 0);
  CHECK_EQ_INT(step(&e), 4);
  a = add(&e, 2, small, 3, 100, 0);
  CHECK_EQ_INT(step(&e), 7); /* b 4 + a's prompt 3 */
  CHECK_EQ_INT(e.o->plan.n_logits, 1);
  append_all(&e);
  int ok = 1;
  for (int k = 0; k < 30 && b->num_computed_tokens < 150; k++) {
    step(&e);
    /* a decodes every step and comes first; b gets a chunk of the rest. */
    ok &= n_new_of(e.o, a) == 1 && row_of(e.o, a) == 0 && n_new_of(e.o, b) == 4;
    append_all(&e);
  }
  CHECK(ok, "decode scheduled every step, before the prefill chunk");
  env_done(&e);

  /* No chunk cap: the decode still goes first; the prefill takes the rest of the budget. */
  p.max_prefill_chunk = 0;
  env_init(&e, &p);
  a = add(&e, 2, small, 3, 100, 0);
  CHECK_EQ_INT(step(&e), 3);
  append_all(&e);
  b = add(&e, 1, big, 150, 160, 0);
  ok = 1;
  for (int k = 0; k < 15; k++) {
    step(&e);
    ok &= n_new_of(e.o, a) == 1 && n_new_of(e.o, b) == 7;
    append_all(&e);
  }
  CHECK(ok, "decode + 7 prefill tokens per step");
  env_done(&e);
}

static void test_max_num_seqs(void) {
  pl_sched_params p = params(65, 4, 64, 2, 64);
  env e;
  env_init(&e, &p);
  int32_t pr[5] = {1, 2, 3, 4, 5};
  pl_sched_req *r[5];
  for (int i = 0; i < 5; i++)
    r[i] = add(&e, (uint64_t)i, pr, 5, 10, 0);
  int n = step(&e);
  CHECK_EQ_INT(n, 6); /* r1 reuses the block r0 fills in this very step */
  CHECK_EQ_INT(r[1]->num_cached_tokens, 4);
  CHECK_EQ_INT(pl_sched_num_running(e.s), 2);
  CHECK_EQ_INT(pl_sched_num_waiting(e.s), 3);
  CHECK(r[0]->status == PL_REQ_RUNNING && r[1]->status == PL_REQ_RUNNING, "FCFS admission");
  append_all(&e);
  pl_sched_finish(e.s, r[0]);
  step(&e);
  CHECK_EQ_INT(r[2]->status, PL_REQ_RUNNING);
  CHECK_EQ_INT(r[2]->num_cached_tokens, 4); /* same prompt: one full block from the cache */
  CHECK_EQ_INT(n_new_of(e.o, r[2]), 1);
  CHECK_EQ_INT(pl_sched_num_running(e.s), 2);
  pl_sched_stats st;
  pl_sched_get_stats(e.s, &st);
  CHECK_EQ_INT(st.peak_running, 2);
  env_done(&e);
}

/* Fair share: equal priorities are admitted by start tag (clients take turns); without it, in
 * arrival order. */
static pl_sched_req *add_client(env *e, uint64_t id, uint64_t client, int prio) {
  int32_t pr[5] = {1, 2, 3, 4, 5};
  pr[4] = (int32_t)id + 10; /* distinct last tokens: no request is a prefix hit of another */
  pl_sched_req_params rp = {.id = id, .prompt = pr, .n_prompt = 5, .max_tokens = 10,
                            .priority = prio, .client = client};
  pl_sched_req *r = NULL;
  CHECK_EQ_INT(pl_sched_add(e->s, &rp, &r), PL_OK);
  return r;
}

/* PRIORITY policy (as the engine runs it), max_seqs sequences, fair share on or off. */
static void fair_env(env *e, int max_seqs, int fair) {
  pl_sched_params p = params(65, 4, 64, max_seqs, 64);
  p.policy = PL_SCHED_PRIORITY;
  p.fair_share = fair;
  env_init(e, &p);
}

static void test_fair_share(void) {
  for (int fair = 0; fair <= 1; fair++) {
    env e;
    fair_env(&e, 2, fair);
    pl_sched_req *a[5], *b;
    for (int i = 0; i < 5; i++)
      a[i] = add_client(&e, (uint64_t)i, 7, 0); /* client 7 queues five */
    b = add_client(&e, 5, 9, 0);                /* then client 9 one */
    step(&e);
    append_all(&e);
    /* fair: tags a0..a4 = 0..4, b = 0: a0 and b; else a0, a1 */
    CHECK_EQ_INT(a[0]->status, PL_REQ_RUNNING);
    CHECK_EQ_INT(b->status, fair ? PL_REQ_RUNNING : PL_REQ_WAITING);
    CHECK_EQ_INT(a[1]->status, fair ? PL_REQ_WAITING : PL_REQ_RUNNING);
    pl_sched_finish(e.s, a[0]);
    step(&e);
    append_all(&e);
    /* fair: a1 (tag 1) is next, beside b; fcfs: a1 runs and a2 joins */
    CHECK_EQ_INT(a[1]->status, PL_REQ_RUNNING);
    CHECK_EQ_INT(b->status, fair ? PL_REQ_RUNNING : PL_REQ_WAITING);
    CHECK_EQ_INT(a[2]->status, fair ? PL_REQ_WAITING : PL_REQ_RUNNING);
    /* a better priority goes first whatever its client runs: client 7's request at
     * priority -1 is admitted before the priority-0 requests of every client */
    pl_sched_req *urgent = add_client(&e, 6, 7, -1);
    pl_sched_req *other = add_client(&e, 7, 11, 0); /* a third client, none running */
    pl_sched_finish(e.s, a[1]);
    step(&e);
    append_all(&e);
    CHECK_EQ_INT(urgent->status, PL_REQ_RUNNING);
    CHECK_EQ_INT(other->status, PL_REQ_WAITING);
    pl_sched_finish(e.s, urgent);
    step(&e);
    append_all(&e);
    if (fair) { /* running b; tags: other 1 (it came when the virtual time was 1), a2 2 */
      CHECK_EQ_INT(other->status, PL_REQ_RUNNING);
      CHECK_EQ_INT(a[2]->status, PL_REQ_WAITING);
    } else { /* arrival order: a2 runs, then a3 joins; b and other wait behind a4 */
      CHECK_EQ_INT(a[3]->status, PL_REQ_RUNNING);
      CHECK_EQ_INT(b->status, PL_REQ_WAITING);
      CHECK_EQ_INT(other->status, PL_REQ_WAITING);
    }
    CHECK_EQ_INT(pl_sched_check(e.s), PL_OK);
    env_done(&e);
  }
  /* One slot: a client that comes while another's backlog waits is served next, not last. */
  for (int fair = 0; fair <= 1; fair++) {
    env e;
    fair_env(&e, 1, fair);
    pl_sched_req *a[3];
    for (int i = 0; i < 3; i++)
      a[i] = add_client(&e, (uint64_t)i, 7, 0);
    step(&e);
    append_all(&e);
    pl_sched_req *b = add_client(&e, 3, 9, 0);
    pl_sched_finish(e.s, a[0]);
    step(&e);
    append_all(&e);
    CHECK_EQ_INT(b->status, fair ? PL_REQ_RUNNING : PL_REQ_WAITING);
    CHECK_EQ_INT(a[1]->status, fair ? PL_REQ_WAITING : PL_REQ_RUNNING);
    env_done(&e);
  }
}

static void test_preemption_fcfs(void) {
  /* 6 usable blocks of 2 tokens; three requests of 3 tokens take 2 blocks each. */
  pl_sched_params p = params(7, 2, 32, 4, 64);
  env e;
  env_init(&e, &p);
  int32_t a[3] = {1, 2, 3}, b[3] = {4, 5, 6}, c[3] = {7, 8, 9};
  pl_sched_req *r0 = add(&e, 0, a, 3, 20, 0), *r1 = add(&e, 1, b, 3, 20, 0),
               *r2 = add(&e, 2, c, 3, 20, 0);
  CHECK_EQ_INT(step(&e), 9);
  append_all(&e); /* 4 tokens each: position 3 fits block 1 */
  CHECK_EQ_INT(step(&e), 3);
  CHECK_EQ_INT(e.o->n_preempted, 0);
  append_all(&e); /* position 4 needs a third block each; none free */
  step(&e);
  CHECK_EQ_INT(e.o->n_preempted, 1);
  CHECK(e.o->preempted[0] == r2, "latest arrival preempted first");
  CHECK_EQ_INT(r2->status, PL_REQ_WAITING);
  CHECK_EQ_INT(r2->num_computed_tokens, 0);
  CHECK_EQ_INT(r2->num_preemptions, 1);
  CHECK(n_new_of(e.o, r0) == 1 && n_new_of(e.o, r1) == 1, "survivors decode");
  append_all(&e);
  step(&e); /* position 5: in block 2, fits */
  CHECK_EQ_INT(e.o->n_preempted, 0);
  append_all(&e);
  step(&e); /* position 6: r0 needs a 4th block: r1 goes */
  CHECK_EQ_INT(e.o->n_preempted, 1);
  CHECK(e.o->preempted[0] == r1, "next victim is r1");
  CHECK_EQ_INT(n_new_of(e.o, r0), 1);
  CHECK_EQ_INT(pl_sched_num_waiting(e.s), 2);
  pl_sched_stats st;
  pl_sched_get_stats(e.s, &st);
  CHECK_EQ_INT(st.num_preemptions, 2);
  /* FCFS: the latest preempted is at the head. Finish r0: r1 resumes first, recomputing
   * its prompt and generated tokens, with its full blocks from the prefix cache. */
  pl_sched_finish(e.s, r0);
  step(&e);
  CHECK_EQ_INT(r1->status, PL_REQ_RUNNING);
  CHECK_EQ_INT(row_of(e.o, r1), 0);
  CHECK_EQ_INT(r1->num_tokens, 7);
  CHECK_EQ_INT(r1->num_computed_tokens, 7);
  CHECK_EQ_INT(r1->num_cached_tokens, 0); /* counted at first admission only */
  /* Its last full block was evicted by r0's allocation; the first two were still cached. */
  CHECK_EQ_INT(n_new_of(e.o, r1), 3);
  CHECK_EQ_INT(e.o->plan.n_logits, 1); /* the recomputation ends in a new sample */
  /* r2 (5 tokens, 3 blocks) does not fit beside r1 (4 blocks): it waits at the head. */
  CHECK_EQ_INT(r2->status, PL_REQ_WAITING);
  pl_sched_get_stats(e.s, &st);
  CHECK_EQ_INT(st.kv.prefix_hits_tokens, 4);
  env_done(&e);
}

static void test_preemption_priority(void) {
  pl_sched_params p = params(7, 2, 32, 4, 64);
  p.policy = PL_SCHED_PRIORITY;
  env e;
  env_init(&e, &p);
  int32_t a[3] = {1, 2, 3}, b[3] = {4, 5, 6}, c[3] = {7, 8, 9};
  pl_sched_req *r0 = add(&e, 0, a, 3, 20, 5); /* first, but lowest priority */
  pl_sched_req *r1 = add(&e, 1, b, 3, 20, 0), *r2 = add(&e, 2, c, 3, 20, 0);
  step(&e);
  CHECK(row_of(e.o, r1) == 0 && row_of(e.o, r2) == 1 && row_of(e.o, r0) == 2,
        "admitted by priority");
  append_all(&e);
  step(&e);
  append_all(&e);
  step(&e);
  CHECK_EQ_INT(e.o->n_preempted, 1);
  CHECK(e.o->preempted[0] == r0, "lowest priority preempted despite arriving first");
  CHECK_EQ_INT(r0->status, PL_REQ_WAITING);
  /* Waiting order: priority, then arrival. */
  int32_t w[2] = {1, 1};
  pl_sched_req *w1 = add(&e, 10, w, 2, 4, 3), *w2 = add(&e, 11, w, 2, 4, 1),
               *w3 = add(&e, 12, w, 2, 4, 1);
  CHECK_EQ_INT(pl_sched_check(e.s), PL_OK);
  pl_sched_finish(e.s, r1);
  pl_sched_finish(e.s, r2);
  step(&e);
  CHECK(row_of(e.o, w2) == 0 && row_of(e.o, w3) == 1 && row_of(e.o, w1) == 2,
        "priority then arrival: %d %d %d", row_of(e.o, w2), row_of(e.o, w3), row_of(e.o, w1));
  CHECK_EQ_INT(r0->status, PL_REQ_RUNNING);
  CHECK_EQ_INT(row_of(e.o, r0), 3);
  env_done(&e);
}

/* vLLM's rule: a step that had to preempt admits nothing (the pool is under pressure). */
static void test_no_admission_after_preemption(void) {
  pl_sched_params p = params(8, 2, 32, 4, 64); /* 7 usable blocks of 2 */
  p.policy = PL_SCHED_PRIORITY;
  env e;
  env_init(&e, &p);
  int32_t a[3] = {1, 2, 3}, b[3] = {4, 5, 6}, c[5] = {7, 8, 9, 10, 11}, w[1] = {42};
  pl_sched_req *r0 = add(&e, 0, a, 3, 20, 0), *r1 = add(&e, 1, b, 3, 20, 0),
               *r2 = add(&e, 2, c, 5, 20, 9);
  step(&e); /* 2 + 2 + 3 blocks: the pool is full */
  append_all(&e);
  pl_sched_req *wr = add(&e, 3, w, 1, 4, 0);
  step(&e); /* everyone writes inside a partial block; wr finds no block */
  CHECK_EQ_INT(wr->status, PL_REQ_WAITING);
  append_all(&e);
  step(&e); /* r0 needs a block: r2 (priority 9) goes; one block is left over */
  CHECK_EQ_INT(e.o->n_preempted, 1);
  CHECK(e.o->preempted[0] == r2, "lowest priority preempted");
  CHECK_EQ_INT(pl_kv_cache_num_free_blocks(pl_sched_kv(e.s)), 1);
  CHECK_EQ_INT(wr->status, PL_REQ_WAITING);
  append_all(&e);
  step(&e);
  CHECK_EQ_INT(wr->status, PL_REQ_RUNNING);
  CHECK(n_new_of(e.o, r0) == 1 && n_new_of(e.o, r1) == 1, "decodes continue");
  env_done(&e);
}

/* A victim preempted after it was scheduled in the same step never writes that step's
 * tokens: blocks its chunk filled must not stay in the prefix cache (a later hit would read
 * K/V nobody wrote; the fake KV would catch it). */
static void test_preempted_chunk_not_cached(void) {
  pl_sched_params p = params(9, 2, 32, 4, 8); /* 8 usable blocks of 2 */
  p.policy = PL_SCHED_PRIORITY;
  p.max_prefill_chunk = 4;
  env e;
  env_init(&e, &p);
  int32_t lo[16], hi[6] = {90, 91, 92, 93, 94, 95}, q[13];
  ramp(lo, 16, 300);
  pl_sched_req *rl = add(&e, 1, lo, 16, 20, 5);
  CHECK_EQ_INT(step(&e), 4); /* rl: positions 0..3 */
  pl_sched_req *rh = add(&e, 2, hi, 6, 10, 0);
  CHECK_EQ_INT(step(&e), 8); /* rl 4..7 (running first), rh 0..3: 6 blocks used */
  step(&e); /* rl 8..11 takes 2 blocks; rh needs 1: rl (priority 5) is preempted */
  CHECK_EQ_INT(e.o->n_preempted, 1);
  CHECK(e.o->preempted[0] == rl, "rl preempted");
  CHECK_EQ_INT(row_of(e.o, rl), -1);
  CHECK_EQ_INT(n_new_of(e.o, rh), 2);
  pl_sched_finish(e.s, rh);
  /* A prompt sharing rl's first 12 tokens may hit only what rl really wrote (0..7). */
  memcpy(q, lo, 12 * sizeof *q);
  q[12] = 1;
  pl_sched_req *r3 = add(&e, 3, q, 13, 16, 0);
  step(&e);
  CHECK_EQ_INT(r3->status, PL_REQ_RUNNING);
  CHECK_EQ_INT(r3->num_cached_tokens, 8);
  env_done(&e);
}

static void test_self_preemption(void) {
  pl_sched_params p = params(5, 4, 32, 4, 64); /* 4 usable blocks */
  env e;
  env_init(&e, &p);
  int32_t a[5] = {1, 2, 3, 4, 5}, b[8] = {9, 9, 9, 9, 8, 8, 8, 8};
  pl_sched_req *r0 = add(&e, 0, a, 5, 20, 0), *r1 = add(&e, 1, b, 8, 20, 0);
  CHECK_EQ_INT(step(&e), 13);
  append_all(&e); /* r0 writes into its partial block; r1 needs a new one */
  step(&e);
  CHECK_EQ_INT(e.o->n_preempted, 1);
  CHECK(e.o->preempted[0] == r1, "the requester is the victim");
  CHECK_EQ_INT(e.o->plan.n_seqs, 1);
  CHECK_EQ_INT(row_of(e.o, r0), 0);
  CHECK_EQ_INT(r1->status, PL_REQ_WAITING);
  env_done(&e);
}

static void test_never_fits(void) {
  pl_sched_params p = params(5, 4, 64, 4, 64); /* 4 usable blocks = 16 tokens */
  env e;
  env_init(&e, &p);
  int32_t pr[40];
  ramp(pr, 40, 1);
  pl_sched_req *small = add(&e, 0, pr, 2, 6, 0);
  pl_sched_req *huge = add(&e, 1, pr, 20, 30, 0);
  pl_sched_req *after = add(&e, 2, pr + 30, 3, 6, 0);
  step(&e);
  CHECK_EQ_INT(e.o->n_failed, 1);
  CHECK(e.o->failed[0] == huge, "the oversized prompt fails");
  CHECK_EQ_INT(huge->status, PL_REQ_FAILED);
  CHECK_EQ_INT(huge->fail_status, PL_ENOSPACE);
  CHECK(small->status == PL_REQ_RUNNING && after->status == PL_REQ_RUNNING,
        "the queue moves on");
  pl_sched_finish(e.s, huge);
  pl_sched_finish(e.s, small);
  pl_sched_finish(e.s, after);
  /* A request that outgrows the whole pool while running fails, without thrashing the
   * others (they are not preempted for it). */
  pl_sched_req *grow = add(&e, 3, pr, 14, 30, 0);
  pl_sched_req *other = add(&e, 4, pr + 20, 1, 4, 0);
  (void)other;
  int failed = 0;
  for (int k = 0; k < 10 && !failed; k++) {
    step(&e);
    failed = e.o->n_failed;
    append_all(&e);
  }
  CHECK_EQ_INT(failed, 1);
  CHECK_EQ_INT(grow->status, PL_REQ_FAILED);
  CHECK_EQ_INT(grow->num_preemptions, 0);
  pl_sched_stats st;
  pl_sched_get_stats(e.s, &st);
  CHECK_EQ_INT(st.num_preemptions, 0);
  CHECK_EQ_INT(st.num_failed, 2);
  pl_sched_abort(e.s, grow);
  CHECK_EQ_INT(pl_sched_check(e.s), PL_OK);
  env_done(&e);
  /* Static mode with max_model_len beyond the pool: every request fails at admission. */
  p.kv_alloc = PL_KV_STATIC;
  env_init(&e, &p);
  pl_sched_req *s1 = add(&e, 5, pr, 2, 4, 0);
  CHECK_EQ_INT(step(&e), 0);
  CHECK_EQ_INT(e.o->n_failed, 1);
  CHECK_EQ_INT(s1->status, PL_REQ_FAILED);
  env_done(&e); /* destroy releases the failed request too */
}

static void test_static_admits_fewer(void) {
  int32_t pr[8];
  ramp(pr, 8, 1);
  int running[2];
  for (int mode = 0; mode < 2; mode++) {
    pl_sched_params p = params(21, 4, 32, 8, 256); /* 20 blocks; 8 per max_model_len */
    p.kv_alloc = mode ? PL_KV_STATIC : PL_KV_PAGED;
    p.enable_prefix_caching = 0;
    env e;
    env_init(&e, &p);
    for (int i = 0; i < 6; i++)
      add(&e, (uint64_t)i, pr, 8, 32, 0);
    step(&e);
    running[mode] = pl_sched_num_running(e.s);
    pl_sched_stats st;
    pl_sched_get_stats(e.s, &st);
    CHECK_EQ_INT(st.kv.blocks_used, mode ? 16 : 12);
    /* Run everything to completion: the static engine never preempts, just waits. */
    for (int k = 0; k < 200 && pl_sched_has_unfinished(e.s); k++) {
      append_all(&e);
      for (int j = 0; j < e.o->plan.n_logits; j++)
        if (e.o->logits_reqs[j]->num_tokens == e.o->logits_reqs[j]->max_tokens)
          pl_sched_finish(e.s, e.o->logits_reqs[j]);
      step(&e);
    }
    CHECK(!pl_sched_has_unfinished(e.s), "all done");
    pl_sched_get_stats(e.s, &st);
    if (mode)
      CHECK_EQ_INT(st.num_preemptions, 0);
    CHECK_EQ_INT(st.peak_running, mode ? 2 : 6);
    env_done(&e);
  }
  CHECK(running[0] == 6 && running[1] == 2, "paged %d, static %d", running[0], running[1]);
}

/* The reserve admission (the engine's default): requests that run to max_tokens never
 * preempt each other, and more run at once than static mode's max_model_len reservations. */
static void test_reserve_admission(void) {
  int32_t pr[8];
  ramp(pr, 8, 1);
  int64_t preempt[3];
  int peak[3];
  for (int mode = 0; mode < 3; mode++) { /* greedy, reserve, static */
    /* 20 blocks of 4; each request grows 8 -> 24 tokens (6 blocks); max_model_len 40. */
    pl_sched_params p = params(21, 4, 40, 8, 256);
    p.admission = mode == 0 ? PL_ADMIT_GREEDY : PL_ADMIT_RESERVE;
    p.kv_alloc = mode == 2 ? PL_KV_STATIC : PL_KV_PAGED;
    p.enable_prefix_caching = 0;
    env e;
    env_init(&e, &p);
    pl_sched_req *early = NULL;
    for (int i = 0; i < 8; i++) {
      pl_sched_req *r = add(&e, (uint64_t)i, pr, 8, 24, 0);
      if (i == 0)
        early = r;
    }
    step(&e);
    if (mode == 1) {
      /* 3 x 6 blocks fit in 20; a 4th would be owed 24 blocks. */
      CHECK_EQ_INT(pl_sched_num_running(e.s), 3);
      CHECK_EQ_INT(pl_sched_num_waiting(e.s), 5);
    }
    for (int k = 0; k < 400 && pl_sched_has_unfinished(e.s); k++) {
      append_all(&e);
      int early_done = 0;
      for (int j = 0; j < e.o->plan.n_logits; j++) {
        pl_sched_req *r = e.o->logits_reqs[j];
        /* Request 0 stops early (EOS): its unused reserve goes to the next request. */
        if (r == early && r->num_tokens == 10) {
          early = NULL;
          early_done = 1;
          pl_sched_finish(e.s, r);
        } else if (r->num_tokens == r->max_tokens) {
          pl_sched_finish(e.s, r);
        }
      }
      step(&e);
      if (mode == 1 && early_done)
        CHECK_EQ_INT(pl_sched_num_running(e.s), 3); /* the next one was admitted */
      CHECK_EQ_INT(pl_sched_check(e.s), PL_OK);
    }
    CHECK(!pl_sched_has_unfinished(e.s), "all done (mode %d)", mode);
    pl_sched_stats st;
    pl_sched_get_stats(e.s, &st);
    preempt[mode] = st.num_preemptions;
    peak[mode] = st.peak_running;
    env_done(&e);
  }
  CHECK(preempt[0] > 0, "greedy admission thrashes here (%lld preemptions)",
        (long long)preempt[0]);
  CHECK_EQ_INT(preempt[1], 0);
  CHECK_EQ_INT(preempt[2], 0);
  CHECK(peak[1] == 3 && peak[2] == 2, "peak running: reserve %d, static %d", peak[1], peak[2]);
}

static void test_prefix_hits(void) {
  pl_sched_params p = params(33, 4, 64, 4, 64);
  env e;
  env_init(&e, &p);
  int32_t pr[20];
  ramp(pr, 20, 50);
  pl_sched_req *a = add(&e, 1, pr, 20, 24, 0);
  step(&e);
  append_all(&e);
  step(&e);
  pl_sched_finish(e.s, a);
  pl_sched_req *b = add(&e, 2, pr, 20, 24, 0);
  CHECK_EQ_INT(step(&e), 4);
  CHECK_EQ_INT(b->num_cached_tokens, 16);
  pl_sched_stats st;
  pl_sched_get_stats(e.s, &st);
  CHECK_EQ_INT(st.kv.prefix_queries_tokens, 40);
  CHECK_EQ_INT(st.kv.prefix_hits_tokens, 16);
  /* A different cache salt shares nothing. */
  pl_sched_req_params rp = {.id = 3, .prompt = pr, .n_prompt = 20, .max_tokens = 24,
                            .extra_key = 99};
  pl_sched_req *c;
  CHECK_EQ_INT(pl_sched_add(e.s, &rp, &c), PL_OK);
  CHECK_EQ_INT(step(&e), 20);
  CHECK_EQ_INT(c->num_cached_tokens, 0);
  pl_sched_finish(e.s, b);
  pl_sched_finish(e.s, c);
  /* Same step: the second of two identical prompts reuses blocks the first fills now. */
  int32_t q[12];
  ramp(q, 12, 500);
  pl_sched_req *d = add(&e, 4, q, 12, 16, 0), *f = add(&e, 5, q, 12, 16, 0);
  CHECK_EQ_INT(step(&e), 16);
  CHECK_EQ_INT(d->num_cached_tokens, 0);
  CHECK_EQ_INT(f->num_cached_tokens, 8);
  CHECK_EQ_INT(e.o->plan.block_tables[e.o->plan.max_blocks_per_seq], e.o->plan.block_tables[0]);
  env_done(&e);
  /* Prefix caching off: no hits, no queries. */
  p.enable_prefix_caching = 0;
  env_init(&e, &p);
  a = add(&e, 1, pr, 20, 24, 0);
  step(&e);
  pl_sched_finish(e.s, a);
  b = add(&e, 2, pr, 20, 24, 0);
  CHECK_EQ_INT(step(&e), 20);
  CHECK_EQ_INT(b->num_cached_tokens, 0);
  pl_sched_get_stats(e.s, &st);
  CHECK_EQ_INT(st.kv.prefix_hits_tokens, 0);
  env_done(&e);
}

static void test_fork(void) {
  pl_sched_params p = params(33, 4, 64, 4, 64);
  env e;
  env_init(&e, &p);
  int32_t pr[6] = {1, 2, 3, 4, 5, 6};
  pl_sched_req *a = add(&e, 1, pr, 6, 20, 0);
  step(&e);
  CHECK_EQ_INT(e.o->plan.n_logits, 1);
  pl_sched_req *c = NULL, *d = NULL;
  CHECK_EQ_INT(pl_sched_fork(e.s, a, 2, NULL, &c), PL_OK);
  CHECK_EQ_INT(c->status, PL_REQ_RUNNING);
  CHECK_EQ_INT(c->num_computed_tokens, 6);
  CHECK_EQ_INT(c->num_tokens, 6);
  CHECK(c->arrival > a->arrival, "a fork is a new arrival");
  pl_sched_stats st;
  pl_sched_get_stats(e.s, &st);
  CHECK_EQ_INT(st.kv.blocks_used, 2); /* shared */
  CHECK_EQ_INT(pl_sched_check(e.s), PL_OK);
  CHECK_EQ_INT(pl_sched_append_token(e.s, a, 40), PL_OK);
  CHECK_EQ_INT(pl_sched_append_token(e.s, c, 41), PL_OK);
  CHECK_EQ_INT(step(&e), 2);
  CHECK_EQ_INT(e.o->plan.n_copies, 1); /* exactly one copy of the shared partial block */
  CHECK_EQ_INT(e.o->plan.block_tables[0], e.o->plan.block_tables[e.o->plan.max_blocks_per_seq]);
  pl_sched_get_stats(e.s, &st);
  CHECK_EQ_INT(st.kv.blocks_used, 3);
  CHECK_EQ_INT(st.kv.cow_copies, 1);
  append_all(&e);
  CHECK_EQ_INT(step(&e), 2);
  CHECK_EQ_INT(e.o->plan.n_copies, 0);
  /* A fork without a free sequence slot waits and recomputes from the prefix cache. */
  env_done(&e);
  p.max_num_seqs = 1;
  env_init(&e, &p);
  a = add(&e, 1, pr, 6, 20, 0);
  step(&e);
  CHECK_EQ_INT(pl_sched_fork(e.s, a, 2, NULL, &d), PL_OK);
  CHECK_EQ_INT(d->status, PL_REQ_WAITING);
  CHECK_EQ_INT(pl_sched_append_token(e.s, a, 40), PL_OK);
  CHECK_EQ_INT(pl_sched_append_token(e.s, d, 41), PL_ESTATE); /* not sampled: waits */
  step(&e);
  pl_sched_finish(e.s, a);
  step(&e);
  CHECK_EQ_INT(d->status, PL_REQ_RUNNING);
  CHECK_EQ_INT(n_new_of(e.o, d), 2); /* block 0 cached, 2 tokens recomputed */
  CHECK_EQ_INT(e.o->plan.n_logits, 1);
  env_done(&e);
}

static void test_abort_and_errors(void) {
  pl_sched_params p = params(9, 4, 16, 2, 64);
  env e;
  env_init(&e, &p);
  int32_t pr[8] = {1, 2, 3, 4, 5, 6, 7, 8};
  pl_sched_req *r = NULL;
  pl_sched_req_params rp = {.id = 1, .prompt = pr, .n_prompt = 0, .max_tokens = 4};
  CHECK_EQ_INT(pl_sched_add(e.s, &rp, &r), PL_EINVAL);
  CHECK(r == NULL, "out cleared");
  rp.n_prompt = 5;
  CHECK_EQ_INT(pl_sched_add(e.s, &rp, &r), PL_EINVAL); /* capacity below the prompt */
  rp.max_tokens = 17;
  CHECK_EQ_INT(pl_sched_add(e.s, &rp, &r), PL_ETOOLONG);
  pl_sched_req *a = add(&e, 1, pr, 8, 9, 0), *b = add(&e, 2, pr, 3, 8, 0),
               *c = add(&e, 3, pr, 3, 8, 0);
  CHECK_EQ_INT(pl_sched_append_token(e.s, a, 1), PL_ESTATE); /* waiting */
  step(&e);
  CHECK_EQ_INT(pl_sched_append_token(e.s, a, 1), PL_OK);
  step(&e);
  CHECK_EQ_INT(pl_sched_append_token(e.s, a, 1), PL_ERANGE); /* full */
  pl_sched_abort(e.s, c); /* waiting */
  pl_sched_abort(e.s, a); /* running */
  CHECK_EQ_INT(pl_sched_num_running(e.s), 1);
  CHECK_EQ_INT(pl_sched_num_waiting(e.s), 0);
  CHECK_EQ_INT(pl_sched_check(e.s), PL_OK);
  pl_sched_stats st;
  pl_sched_get_stats(e.s, &st);
  CHECK_EQ_INT(st.num_aborted, 2);
  CHECK_EQ_INT(st.kv.blocks_used, 1);
  (void)b;
  env_done(&e); /* destroy frees b */
  pl_scheduler *s = (pl_scheduler *)1;
  p.max_num_seqs = 0;
  CHECK_EQ_INT(pl_sched_create(&p, &s), PL_EINVAL);
  CHECK(s == NULL, "out cleared");
}

/* Random soak: random arrivals (shared prefixes), steps, samples, forks, finishes and aborts
 * on a tight pool; every plan verified and executed; no allocation inside the step loop. */
static uint64_t rs;
static uint32_t rnd(uint32_t n) {
  rs = rs * 6364136223846793005ull + 1442695040888963407ull;
  return (uint32_t)(rs >> 33) % n;
}

static void soak(int policy, pl_kv_alloc mode, pl_sched_admission admission, int forks,
                 int caching, int bs, int num_blocks, int chunk, uint64_t seed) {
  enum { MAXR = 64 };
  rs = seed;
  size_t live0 = pl_alloc_live_bytes();
  pl_sched_params p = params(num_blocks, bs, 48, 6, 24);
  p.policy = policy;
  p.kv_alloc = mode;
  p.enable_prefix_caching = caching;
  p.max_prefill_chunk = chunk;
  p.admission = admission;
  p.fair_share = (int)(seed & 1); /* odd seeds: four clients sharing fairly */
  env e;
  env_init(&e, &p);
  pl_sched_req *live[MAXR];
  int n_live = 0, fails = 0;
  uint64_t next_id = 1;
  int32_t base[48];
  for (int i = 0; i < 48; i++)
    base[i] = 1 + (int32_t)rnd(30);
  long allocs_in_loop = 0;
  for (int it = 0; it < 3000 && fails < 3; it++) {
    /* Arrivals. */
    if (n_live < MAXR - 8 && rnd(3) == 0) {
      int32_t pr[48];
      int n = 1 + (int)rnd(30);
      for (int i = 0; i < n; i++)
        pr[i] = rnd(8) ? base[i] : 1 + (int32_t)rnd(30);
      int max_tokens = n + 1 + (int)rnd(16);
      if (max_tokens > 48)
        max_tokens = 48;
      pl_sched_req_params rp = {.id = next_id++, .prompt = pr, .n_prompt = n,
                                .max_tokens = max_tokens, .priority = (int)rnd(3),
                                .client = rnd(4), .extra_key = rnd(10) == 0};
      pl_sched_req *r;
      if (pl_sched_add(e.s, &rp, &r) == PL_OK)
        live[n_live++] = r;
    }
    long a0 = pl_alloc_count();
    int n = pl_sched_schedule(e.s, &e.o);
    allocs_in_loop += pl_alloc_count() - a0;
    if (n < 0) {
      CHECK(0, "schedule: %s", pl_last_error());
      break;
    }
    fails += verify_and_run(e.s, e.o, &e.f, e.lim);
    for (int j = 0; j < e.o->n_failed; j++) {
      pl_sched_req *r = e.o->failed[j];
      for (int k = 0; k < n_live; k++)
        if (live[k] == r)
          live[k] = live[--n_live];
      pl_sched_finish(e.s, r);
    }
    /* Sample: maybe fork first (n > 1 right after the prompt), then append, maybe finish. */
    for (int j = 0; j < e.o->plan.n_logits; j++) {
      pl_sched_req *r = e.o->logits_reqs[j];
      if (forks && r->num_tokens == r->num_prompt_tokens && n_live < MAXR && rnd(4) == 0) {
        pl_sched_req *c;
        if (pl_sched_fork(e.s, r, next_id++, NULL, &c) == PL_OK) {
          live[n_live++] = c;
          if (c->status == PL_REQ_RUNNING) { /* it shares the sample point: sample it too */
            a0 = pl_alloc_count();
            CHECK_EQ_INT(pl_sched_append_token(e.s, c, next_token(c) + 1), PL_OK);
            allocs_in_loop += pl_alloc_count() - a0;
          }
        }
      }
      a0 = pl_alloc_count();
      int rc = r->num_tokens < r->max_tokens ? pl_sched_append_token(e.s, r, next_token(r))
                                             : PL_ERANGE;
      allocs_in_loop += pl_alloc_count() - a0;
      if (rc == PL_ERANGE || rnd(12) == 0) {
        for (int k = 0; k < n_live; k++)
          if (live[k] == r)
            live[k] = live[--n_live];
        pl_sched_finish(e.s, r);
      }
    }
    /* Aborts: waiting or running alike. */
    if (n_live > 0 && rnd(20) == 0) {
      int k = (int)rnd((uint32_t)n_live);
      pl_sched_abort(e.s, live[k]);
      live[k] = live[--n_live];
    }
    int ck = pl_sched_check(e.s);
    CHECK(ck == PL_OK, "it %d: %s", it, pl_last_error());
    fails += ck != PL_OK;
  }
  CHECK_EQ_INT(allocs_in_loop, 0);
  pl_sched_stats st;
  pl_sched_get_stats(e.s, &st);
  printf("  soak policy %d mode %d admission %d forks %d caching %d bs %d blocks %d chunk %d: "
         "%lld steps, %lld preemptions, %lld failed, %lld hits, %lld copies, peak %d running\n",
         policy, mode, admission, forks, caching, bs, num_blocks, chunk,
         (long long)st.num_steps, (long long)st.num_preemptions,
         (long long)st.num_failed, (long long)st.kv.prefix_hits_tokens,
         (long long)st.kv.cow_copies, st.peak_running);
  if (mode == PL_KV_PAGED && admission == PL_ADMIT_GREEDY)
    CHECK(st.num_preemptions > 0, "the soak should preempt");
  else if (mode == PL_KV_STATIC || !forks) /* every running request holds or is owed its
                                              growth to max_tokens (forks get no reserve) */
    CHECK_EQ_INT(st.num_preemptions, 0);
  while (n_live > 0)
    pl_sched_finish(e.s, live[--n_live]);
  pl_sched_get_stats(e.s, &st);
  CHECK_EQ_INT(st.kv.blocks_used, 0);
  CHECK(!pl_sched_has_unfinished(e.s), "all retired");
  CHECK_EQ_INT(pl_sched_check(e.s), PL_OK);
  env_done(&e);
  CHECK_EQ_INT(pl_alloc_live_bytes(), live0);
}

int main(void) {
  size_t live0 = pl_alloc_live_bytes();
  test_basic();
  test_chunked_prefill();
  test_decodes_not_starved();
  test_max_num_seqs();
  test_fair_share();
  test_preemption_fcfs();
  test_preemption_priority();
  test_no_admission_after_preemption();
  test_preempted_chunk_not_cached();
  test_self_preemption();
  test_never_fits();
  test_static_admits_fewer();
  test_reserve_admission();
  test_prefix_hits();
  test_fork();
  test_abort_and_errors();
  for (uint64_t seed = 1; seed <= 4; seed++) {
    const pl_sched_admission G = PL_ADMIT_GREEDY, R = PL_ADMIT_RESERVE;
    soak(PL_SCHED_FCFS, PL_KV_PAGED, G, 1, 1, 4, 17, 0, seed);
    soak(PL_SCHED_PRIORITY, PL_KV_PAGED, G, 1, 1, 2, 30, 5, seed);
    soak(PL_SCHED_PRIORITY, PL_KV_PAGED, G, 1, 1, 1, 40, 6, seed); /* some never fit */
    soak(PL_SCHED_FCFS, PL_KV_PAGED, G, 1, 0, 3, 20, 0, seed);
    soak(PL_SCHED_PRIORITY, PL_KV_STATIC, G, 1, 1, 4, 40, 0, seed);
    soak(PL_SCHED_FCFS, PL_KV_PAGED, R, 1, 1, 4, 17, 0, seed);
    soak(PL_SCHED_PRIORITY, PL_KV_PAGED, R, 0, 1, 2, 30, 5, seed);
    soak(PL_SCHED_PRIORITY, PL_KV_PAGED, R, 0, 1, 1, 40, 6, seed);
    soak(PL_SCHED_FCFS, PL_KV_PAGED, R, 0, 0, 3, 20, 0, seed);
  }
  CHECK_EQ_INT(pl_alloc_live_bytes(), live0);
  return check_summary("test_scheduler");
}
