/* Continuous-batching scheduler (see scheduler.h for the policy and the contracts).
 *
 * Queues: `running` is an array in admission order (at most max_num_seqs, one kv slot each);
 * `waiting` and `failed` are intrusive doubly linked lists. A request is in exactly one of
 * them. During schedule() the chosen (request, n_new) pairs collect in `sched`; the plan is
 * built from them at the end, so a request preempted after it was chosen simply leaves the
 * list and gives its tokens back to the budget. */
#include "core/scheduler.h"

#include <string.h>

#include "util/alloc.h"
#include "util/error.h"

typedef struct req_list {
  pl_sched_req *head, *tail;
  int n;
} req_list;

struct pl_scheduler {
  pl_sched_params prm;
  pl_kv_cache *kv;
  int usable_blocks;         /* pool blocks minus the null block */
  pl_sched_req **running;    /* [max_num_seqs] admission order */
  int n_running;
  req_list waiting, failed;
  pl_sched_req **snap;       /* [max_num_seqs] running snapshot for iteration */
  pl_sched_req **sched;      /* [max_num_seqs] requests chosen in this call, in order */
  int n_sched;
  int spec_logits_left;      /* logits rows left for proposals in this schedule() call */
  /* fair share (start-time fair queuing): the virtual time (the largest start tag admitted)
   * and, per client with requests tagged past it, the tag its next request starts from;
   * open addressing, [client_cap] a power of two, at most half full */
  uint64_t vtime;
  uint64_t *client_key, *client_next; /* client_next 0 = empty slot */
  int client_cap, n_clients;
  pl_sched_output out;       /* arrays below are owned here */
  uint64_t next_arrival;
  int peak_running;
  int64_t n_preemptions, n_failed, n_steps, n_finished, n_aborted;
  int64_t prompt_computed, decode_computed;
};

/* ---- lists ------------------------------------------------------------------------------ */

static void list_unlink(req_list *l, pl_sched_req *r) {
  if (r->prev)
    r->prev->next = r->next;
  else
    l->head = r->next;
  if (r->next)
    r->next->prev = r->prev;
  else
    l->tail = r->prev;
  r->prev = r->next = NULL;
  l->n--;
}

static void list_insert_before(req_list *l, pl_sched_req *pos, pl_sched_req *r) {
  /* pos == NULL appends. */
  r->next = pos;
  r->prev = pos ? pos->prev : l->tail;
  if (r->prev)
    r->prev->next = r;
  else
    l->head = r;
  if (pos)
    pos->prev = r;
  else
    l->tail = r;
  l->n++;
}

/* Queue order: smaller (priority (PRIORITY policy), start tag (fair share; else all 0),
 * arrival) first. */
static int before(const pl_scheduler *s, const pl_sched_req *a, const pl_sched_req *b) {
  if (s->prm.policy == PL_SCHED_PRIORITY && a->priority != b->priority)
    return a->priority < b->priority;
  if (a->vstart != b->vstart)
    return a->vstart < b->vstart;
  return a->arrival < b->arrival;
}

/* Whether the waiting list is kept in before() order (else in arrival order, FCFS). */
static int sorted_waiting(const pl_scheduler *s) {
  return s->prm.policy == PL_SCHED_PRIORITY || s->prm.fair_share;
}

/* New arrivals: FCFS appends; PRIORITY or fair share inserts in order (scan from the tail:
 * new arrivals usually belong there). Preempted requests: FCFS puts them at the head (vLLM);
 * sorted, they go back in order, the head among equals since they arrived earlier. */
static void waiting_insert(pl_scheduler *s, pl_sched_req *r, int preempted) {
  r->status = PL_REQ_WAITING;
  if (!sorted_waiting(s)) {
    list_insert_before(&s->waiting, preempted ? s->waiting.head : NULL, r);
    return;
  }
  pl_sched_req *pos = NULL; /* insert before pos; NULL = tail */
  for (pl_sched_req *q = s->waiting.tail; q && before(s, r, q); q = q->prev)
    pos = q;
  list_insert_before(&s->waiting, pos, r);
}

/* ---- fair share: start-time fair queuing over clients --------------------------------------
 * A request's start tag is max(virtual time, its client's next tag); the client's next tag is
 * then that + 1, and admitting a request moves the virtual time up to its tag. So a client
 * that queues a thousand requests tags them t, t+1, ...; a client arriving later starts at the
 * virtual time and is admitted next, then the two alternate. Clients whose next tag is not
 * past the virtual time have nothing to remember and are dropped when the table grows. */

static int client_slot(const uint64_t *key, const uint64_t *next, int cap, uint64_t k) {
  int i = (int)((k * 0x9E3779B97F4A7C15ull) >> 40) & (cap - 1);
  while (next[i] && key[i] != k)
    i = (i + 1) & (cap - 1);
  return i;
}

/* Rebuild the table with room for one more client, keeping only the clients that matter. */
static int clients_regrow(pl_scheduler *s) {
  int live = 0;
  for (int i = 0; i < s->client_cap; i++)
    live += s->client_next[i] > s->vtime;
  int cap = 16;
  while (cap < 4 * (live + 1))
    cap *= 2;
  uint64_t *key = pl_calloc((size_t)cap, sizeof *key), *next = pl_calloc((size_t)cap, sizeof *next);
  if (!key || !next) {
    pl_free(key);
    pl_free(next);
    return pl_fail(PL_ENOMEM, "scheduler: out of memory for fair-share clients");
  }
  for (int i = 0; i < s->client_cap; i++)
    if (s->client_next[i] > s->vtime) {
      int j = client_slot(key, next, cap, s->client_key[i]);
      key[j] = s->client_key[i];
      next[j] = s->client_next[i];
    }
  pl_free(s->client_key);
  pl_free(s->client_next);
  s->client_key = key;
  s->client_next = next;
  s->client_cap = cap;
  s->n_clients = live;
  return PL_OK;
}

/* Give r its start tag (see above). PL_ENOMEM. */
static int tag_request(pl_scheduler *s, pl_sched_req *r) {
  if (2 * (s->n_clients + 1) > s->client_cap)
    PL_TRY(clients_regrow(s));
  int i = client_slot(s->client_key, s->client_next, s->client_cap, r->client);
  if (!s->client_next[i]) {
    s->client_key[i] = r->client;
    s->n_clients++;
  }
  r->vstart = s->client_next[i] > s->vtime ? s->client_next[i] : s->vtime;
  s->client_next[i] = r->vstart + 1;
  return PL_OK;
}

static void running_remove(pl_scheduler *s, pl_sched_req *r) {
  int k = 0;
  for (int i = 0; i < s->n_running; i++)
    if (s->running[i] != r)
      s->running[k++] = s->running[i];
  s->n_running = k;
}

static void running_push(pl_scheduler *s, pl_sched_req *r) {
  r->status = PL_REQ_RUNNING;
  s->running[s->n_running++] = r;
  if (s->n_running > s->peak_running)
    s->peak_running = s->n_running;
}

static void sched_remove(pl_scheduler *s, pl_sched_req *r) {
  int k = 0;
  for (int i = 0; i < s->n_sched; i++)
    if (s->sched[i] != r)
      s->sched[k++] = s->sched[i];
  s->n_sched = k;
  r->n_sched = 0;
}

/* ---- lifetime ------------------------------------------------------------------------------ */

int pl_sched_create(const pl_sched_params *p, pl_scheduler **out) {
  *out = NULL;
  if (p->max_num_seqs < 1 || p->max_num_batched_tokens < 1 || p->max_model_len < 1 ||
      p->block_size < 1 || p->num_blocks < 2 || p->max_prefill_chunk < 0 ||
      (p->max_num_logits != 0 && p->max_num_logits < p->max_num_seqs) ||
      (p->kv_alloc != PL_KV_PAGED && p->kv_alloc != PL_KV_STATIC) ||
      (p->policy != PL_SCHED_FCFS && p->policy != PL_SCHED_PRIORITY) ||
      (p->admission != PL_ADMIT_RESERVE && p->admission != PL_ADMIT_GREEDY))
    return pl_fail(PL_EINVAL, "scheduler: bad parameters (seqs %d, batched tokens %d, "
                   "max_model_len %d, block_size %d, blocks %d, chunk %d)", p->max_num_seqs,
                   p->max_num_batched_tokens, p->max_model_len, p->block_size, p->num_blocks,
                   p->max_prefill_chunk);
  if ((int64_t)p->num_blocks * p->block_size > INT32_MAX)
    return pl_fail(PL_EINVAL, "scheduler: %d blocks x %d tokens overflow int32 slots",
                   p->num_blocks, p->block_size);
  pl_scheduler *s = pl_calloc(1, sizeof *s);
  if (!s)
    return pl_fail(PL_ENOMEM, "scheduler: out of memory");
  s->prm = *p;
  if (s->prm.max_num_logits == 0)
    s->prm.max_num_logits = p->max_num_seqs;
  pl_kv_cache_params kp = {.num_blocks = p->num_blocks, .block_size = p->block_size,
                           .max_seqs = p->max_num_seqs, .max_model_len = p->max_model_len,
                           .enable_prefix_caching = p->enable_prefix_caching};
  int rc = pl_kv_cache_create(&kp, &s->kv);
  if (rc < 0) {
    pl_sched_destroy(s);
    return rc;
  }
  s->usable_blocks = pl_kv_cache_usable_blocks(s->kv);
  const size_t nt = (size_t)p->max_num_batched_tokens, ns = (size_t)p->max_num_seqs;
  const size_t nlg = (size_t)s->prm.max_num_logits;
  const size_t bps = (size_t)pl_kv_cache_max_blocks_per_seq(s->kv);
  pl_step_plan *pl = &s->out.plan;
  pl->block_size = p->block_size;
  s->running = pl_calloc(ns, sizeof *s->running);
  s->snap = pl_calloc(ns, sizeof *s->snap);
  s->sched = pl_calloc(ns, sizeof *s->sched);
  s->out.seq_reqs = pl_calloc(ns, sizeof *s->out.seq_reqs);
  s->out.logits_reqs = pl_calloc(nlg, sizeof *s->out.logits_reqs);
  s->out.preempted = pl_calloc(ns, sizeof *s->out.preempted);
  s->out.failed = pl_calloc(2 * ns, sizeof *s->out.failed);
  pl->token_ids = pl_calloc(nt, sizeof(int32_t));
  pl->positions = pl_calloc(nt, sizeof(int32_t));
  pl->slot_mapping = pl_calloc(nt, sizeof(int32_t));
  pl->query_start_loc = pl_calloc(ns + 1, sizeof(int32_t));
  pl->seq_lens = pl_calloc(ns, sizeof(int32_t));
  pl->block_tables = pl_calloc(ns * bps, sizeof(int32_t));
  pl->logits_rows = pl_calloc(nlg, sizeof(int32_t));
  /* Copies: one per scheduled sequence, or (static mode) one per fork since the last step. */
  pl->copy_src = pl_calloc(2 * ns, sizeof(int32_t));
  pl->copy_dst = pl_calloc(2 * ns, sizeof(int32_t));
  if (!s->running || !s->snap || !s->sched || !s->out.seq_reqs || !s->out.logits_reqs ||
      !s->out.preempted || !s->out.failed || !pl->token_ids || !pl->positions ||
      !pl->slot_mapping || !pl->query_start_loc || !pl->seq_lens || !pl->block_tables ||
      !pl->logits_rows || !pl->copy_src || !pl->copy_dst) {
    pl_sched_destroy(s);
    return pl_fail(PL_ENOMEM, "scheduler: out of memory for the step plan");
  }
  *out = s;
  return PL_OK;
}

static void req_free(pl_sched_req *r) {
  if (!r)
    return;
  pl_free(r->tokens);
  pl_free(r);
}

void pl_sched_destroy(pl_scheduler *s) {
  if (!s)
    return;
  for (int i = 0; i < s->n_running; i++)
    req_free(s->running[i]);
  for (req_list *l = &s->waiting; l; l = (l == &s->waiting) ? &s->failed : NULL)
    for (pl_sched_req *r = l->head, *nx; r; r = nx) {
      nx = r->next;
      req_free(r);
    }
  pl_kv_cache_destroy(s->kv);
  pl_step_plan *pl = &s->out.plan;
  pl_free(s->running);
  pl_free(s->snap);
  pl_free(s->sched);
  pl_free(s->client_key);
  pl_free(s->client_next);
  pl_free(s->out.seq_reqs);
  pl_free(s->out.logits_reqs);
  pl_free(s->out.preempted);
  pl_free(s->out.failed);
  pl_free(pl->token_ids);
  pl_free(pl->positions);
  pl_free(pl->slot_mapping);
  pl_free(pl->query_start_loc);
  pl_free(pl->seq_lens);
  pl_free(pl->block_tables);
  pl_free(pl->logits_rows);
  pl_free(pl->copy_src);
  pl_free(pl->copy_dst);
  pl_free(s);
}

/* A request record with room for max_tokens tokens, the first n copied from tokens. */
static int req_new(pl_sched_req **out, const int32_t *tokens, int n, int max_tokens) {
  *out = NULL;
  pl_sched_req *r = pl_calloc(1, sizeof *r);
  if (!r)
    return pl_fail(PL_ENOMEM, "scheduler: out of memory for a request");
  r->tokens = pl_malloc((size_t)max_tokens * sizeof *r->tokens);
  if (!r->tokens) {
    pl_free(r);
    return pl_fail(PL_ENOMEM, "scheduler: out of memory for %d tokens", max_tokens);
  }
  memcpy(r->tokens, tokens, (size_t)n * sizeof *r->tokens);
  r->num_tokens = n;
  r->max_tokens = max_tokens;
  r->num_cached_tokens = -1;
  r->kv_seq = -1;
  *out = r;
  return PL_OK;
}

int pl_sched_add(pl_scheduler *s, const pl_sched_req_params *rp, pl_sched_req **out) {
  *out = NULL;
  if (!rp->prompt || rp->n_prompt < 1 || rp->max_tokens < rp->n_prompt)
    return pl_fail(PL_EINVAL, "scheduler: request %llu: %d prompt tokens, capacity %d",
                   (unsigned long long)rp->id, rp->n_prompt, rp->max_tokens);
  if (rp->max_tokens > s->prm.max_model_len)
    return pl_fail(PL_ETOOLONG, "scheduler: request %llu: %d tokens exceed max_model_len %d",
                   (unsigned long long)rp->id, rp->max_tokens, s->prm.max_model_len);
  pl_sched_req *r;
  PL_TRY(req_new(&r, rp->prompt, rp->n_prompt, rp->max_tokens));
  r->id = rp->id;
  r->user = rp->user;
  r->num_prompt_tokens = rp->n_prompt;
  r->priority = rp->priority;
  r->client = rp->client;
  r->extra_key = rp->extra_key;
  r->arrival = s->next_arrival++;
  if (s->prm.fair_share) {
    int rc = tag_request(s, r);
    if (rc < 0) {
      req_free(r);
      return rc;
    }
  }
  waiting_insert(s, r, 0);
  *out = r;
  return PL_OK;
}

/* ---- scheduling --------------------------------------------------------------------------- */

static int reserve_tokens(const pl_scheduler *s) {
  return s->prm.kv_alloc == PL_KV_STATIC ? s->prm.max_model_len : 0;
}

/* Blocks a request's table needs to hold `tokens` tokens (with the static reservation). */
static int64_t table_blocks(const pl_scheduler *s, int64_t tokens) {
  int64_t r = reserve_tokens(s);
  if (r > tokens)
    tokens = r;
  return (tokens + s->prm.block_size - 1) / s->prm.block_size;
}

/* Release r's blocks. If r was already scheduled in this step, the tokens it was given will
 * not be written: blocks they completed must leave the prefix cache. */
static void release_blocks(pl_scheduler *s, pl_sched_req *r) {
  if (r->n_sched) {
    sched_remove(s, r);
    pl_kv_seq_discard(s->kv, r->kv_seq, r->num_computed_tokens);
  } else {
    pl_kv_seq_free(s->kv, r->kv_seq);
  }
  r->kv_seq = -1;
}

static void preempt(pl_scheduler *s, pl_sched_req *r) {
  release_blocks(s, r);
  r->n_spec = 0;
  r->num_computed_tokens = 0;
  r->num_preemptions++;
  s->n_preemptions++;
  running_remove(s, r);
  waiting_insert(s, r, 1);
  s->out.preempted[s->out.n_preempted++] = r;
}

/* r (running or waiting) can never fit the pool: release its blocks and park it as failed. */
static void fail_req(pl_scheduler *s, pl_sched_req *r) {
  if (r->status == PL_REQ_RUNNING) {
    release_blocks(s, r);
    running_remove(s, r);
  } else {
    list_unlink(&s->waiting, r);
  }
  r->num_computed_tokens = 0;
  r->n_spec = 0;
  r->status = PL_REQ_FAILED;
  r->fail_status = PL_ENOSPACE;
  list_insert_before(&s->failed, NULL, r);
  s->out.failed[s->out.n_failed++] = r;
  s->n_failed++;
}

/* The running request to preempt: the last in queue order (lowest priority, PRIORITY policy
 * only; then the latest start tag, fair share; then the latest arrival). */
static pl_sched_req *pick_victim(const pl_scheduler *s) {
  pl_sched_req *v = NULL;
  for (int i = 0; i < s->n_running; i++) {
    pl_sched_req *r = s->running[i];
    if (!v)
      v = r;
    else if (before(s, v, r))
      v = r;
  }
  return v;
}

enum { SCHED_OK, SCHED_FAILED, SCHED_SELF_PREEMPTED };

/* Decode r with its n_spec proposals if their blocks are free now (never preempting for a
 * proposal); else n_spec becomes 0. */
static int schedule_spec(pl_scheduler *s, pl_sched_req *r, int *budget) {
  int k = r->n_spec;
  r->n_spec = 0;
  if (k > *budget - 1)
    k = *budget - 1;
  if (k > r->max_tokens - r->num_tokens - 1)
    k = r->max_tokens - r->num_tokens - 1;
  if (k > s->spec_logits_left)
    k = s->spec_logits_left;
  if (k <= 0 || !r->spec_tokens)
    return 0;
  memcpy(r->tokens + r->num_tokens, r->spec_tokens, (size_t)k * sizeof *r->tokens);
  int rc = pl_kv_allocate_slots_spec(s->kv, r->kv_seq, r->tokens, 1, k, reserve_tokens(s));
  if (rc == PL_ENOSPACE)
    return 0;
  if (rc < 0)
    return rc;
  s->spec_logits_left -= k;
  r->n_spec = k;
  r->n_sched = 1 + k;
  s->sched[s->n_sched++] = r;
  *budget -= 1 + k;
  return 1;
}

/* Give running request r n more tokens, preempting others until its blocks fit. */
static int schedule_running(pl_scheduler *s, pl_sched_req *r, int n, int *budget) {
  if (r->n_spec > 0 && r->num_tokens - r->num_computed_tokens == 1) {
    int rc = schedule_spec(s, r, budget);
    if (rc != 0)
      return rc < 0 ? rc : SCHED_OK;
  }
  r->n_spec = 0;
  if (table_blocks(s, (int64_t)r->num_computed_tokens + n) > s->usable_blocks) {
    fail_req(s, r);
    return SCHED_FAILED;
  }
  for (;;) {
    int rc = pl_kv_allocate_slots(s->kv, r->kv_seq, r->tokens, n, reserve_tokens(s));
    if (rc == PL_OK)
      break;
    if (rc != PL_ENOSPACE)
      return rc;
    pl_sched_req *v = pick_victim(s);
    if (v == r) {
      if (s->n_running == 1) { /* nobody left to make room: cannot ever fit */
        fail_req(s, r);
        return SCHED_FAILED;
      }
      preempt(s, r);
      return SCHED_SELF_PREEMPTED;
    }
    if (v->n_sched)
      *budget += v->n_sched;
    preempt(s, v);
  }
  r->n_sched = n;
  s->sched[s->n_sched++] = r;
  *budget -= n;
  return SCHED_OK;
}

static int chunk_limit(const pl_scheduler *s, int remaining, int budget) {
  int n = remaining < budget ? remaining : budget;
  if (s->prm.max_prefill_chunk > 0 && n > s->prm.max_prefill_chunk)
    n = s->prm.max_prefill_chunk;
  return n;
}

/* Blocks the running requests still need to reach their max_tokens (the reserve admission
 * keeps this many free so that running requests never have to preempt each other). */
static int64_t committed_growth(const pl_scheduler *s) {
  int64_t g = 0;
  for (int i = 0; i < s->n_running; i++) {
    const pl_sched_req *r = s->running[i];
    int64_t need = table_blocks(s, r->max_tokens) - pl_kv_seq_num_blocks(s->kv, r->kv_seq);
    if (need > 0)
      g += need;
  }
  return g;
}

/* Admit waiting requests in queue order while budget, sequence slots and blocks allow. */
static int admit_waiting(pl_scheduler *s, int *budget) {
  const int fail_cap = 2 * s->prm.max_num_seqs;
  while (s->waiting.head && *budget > 0 && s->n_running < s->prm.max_num_seqs &&
         s->out.n_failed < fail_cap) {
    pl_sched_req *r = s->waiting.head;
    if (table_blocks(s, r->num_tokens) > s->usable_blocks) {
      fail_req(s, r);
      continue;
    }
    int seq;
    PL_TRY(pl_kv_seq_open(s->kv, r->extra_key, &seq)); /* a slot per running request */
    int hit = pl_kv_lookup_prefix(s->kv, seq, r->tokens, r->num_tokens);
    if (hit < 0) {
      pl_kv_seq_free(s->kv, seq);
      return hit;
    }
    int n = chunk_limit(s, r->num_tokens - hit, *budget);
    int rc = pl_kv_allocate_slots(s->kv, seq, r->tokens, n, reserve_tokens(s));
    if (rc < 0) {
      pl_kv_seq_free(s->kv, seq);
      if (rc == PL_ENOSPACE)
        break; /* the head waits for blocks; later requests wait behind it */
      return rc;
    }
    if (s->prm.admission == PL_ADMIT_RESERVE && s->n_running > 0 &&
        committed_growth(s) + table_blocks(s, r->max_tokens) - pl_kv_seq_num_blocks(s->kv, seq) >
            pl_kv_cache_num_free_blocks(s->kv)) {
      /* Running it to max_tokens would, with the others, outgrow the pool: wait (nothing
       * of this step is written, so the blocks it completed leave the prefix cache). */
      pl_kv_seq_discard(s->kv, seq, hit);
      break;
    }
    list_unlink(&s->waiting, r);
    r->n_spec = 0;
    r->kv_seq = seq;
    r->num_computed_tokens = hit;
    if (r->num_cached_tokens < 0)
      r->num_cached_tokens = hit;
    running_push(s, r);
    if (r->vstart > s->vtime)
      s->vtime = r->vstart;
    r->n_sched = n;
    s->sched[s->n_sched++] = r;
    *budget -= n;
  }
  return PL_OK;
}

/* Fill the plan from the chosen (request, n_sched) pairs and advance computed tokens. */
static int build_plan(pl_scheduler *s) {
  pl_step_plan *pl = &s->out.plan;
  const int bs = s->prm.block_size;
  int stride = 1;
  for (int i = 0; i < s->n_sched; i++) {
    const pl_sched_req *r = s->sched[i];
    int nb = (r->num_computed_tokens + r->n_sched + bs - 1) / bs;
    if (nb > stride)
      stride = nb;
  }
  pl->max_blocks_per_seq = stride;
  pl->n_seqs = s->n_sched;
  int t = 0, nl = 0;
  for (int i = 0; i < s->n_sched; i++) {
    pl_sched_req *r = s->sched[i];
    const int32_t *table = pl_kv_seq_blocks(s->kv, r->kv_seq);
    const int start = r->num_computed_tokens, len = start + r->n_sched;
    pl->query_start_loc[i] = t;
    for (int pos = start; pos < len; pos++, t++) {
      pl->token_ids[t] = r->tokens[pos]; /* proposals sit past num_tokens */
      pl->positions[t] = pos;
      pl->slot_mapping[t] = table[pos / bs] * bs + pos % bs;
    }
    pl->seq_lens[i] = len;
    int32_t *brow = pl->block_tables + (size_t)i * (size_t)stride;
    int nb = (len + bs - 1) / bs;
    memcpy(brow, table, (size_t)nb * sizeof *brow);
    memset(brow + nb, 0, (size_t)(stride - nb) * sizeof *brow); /* null block padding */
    if (len == r->num_tokens + r->n_spec) { /* complete: its last token (and each
                                              * proposal) gets logits */
      for (int j = r->n_spec; j >= 0; j--) {
        pl->logits_rows[nl] = t - 1 - j;
        s->out.logits_reqs[nl++] = r;
      }
    }
    int prompt_part = r->num_prompt_tokens > start
                          ? (r->num_prompt_tokens < len ? r->num_prompt_tokens : len) - start
                          : 0;
    s->prompt_computed += prompt_part;
    s->decode_computed += r->n_sched - prompt_part;
    s->out.seq_reqs[i] = r;
    r->num_computed_tokens = len;
    r->n_sched = 0;
  }
  pl->query_start_loc[s->n_sched] = t;
  pl->n_tokens = t;
  pl->n_logits = nl;
  int nc = pl_kv_take_copies(s->kv, pl->copy_src, pl->copy_dst, 2 * s->prm.max_num_seqs);
  if (nc < 0)
    return nc;
  pl->n_copies = nc;
  return t;
}

int pl_sched_schedule(pl_scheduler *s, const pl_sched_output **out) {
  *out = &s->out;
  s->out.n_preempted = 0;
  s->out.n_failed = 0;
  s->n_sched = 0;
  s->spec_logits_left = s->prm.max_num_logits - s->prm.max_num_seqs;
  int budget = s->prm.max_num_batched_tokens;
  int stop = 0;
  /* Pass 0: decodes (one token left). Pass 1: prefill / recompute chunks. */
  for (int pass = 0; pass < 2 && !stop; pass++) {
    int n = s->n_running;
    memcpy(s->snap, s->running, (size_t)n * sizeof *s->snap);
    for (int i = 0; i < n && !stop; i++) {
      pl_sched_req *r = s->snap[i];
      if (r->status != PL_REQ_RUNNING || r->n_sched)
        continue; /* preempted or failed meanwhile */
      int remaining = r->num_tokens - r->num_computed_tokens;
      if (remaining <= 0 || (pass == 0) != (remaining == 1))
        continue;
      if (budget <= 0) {
        stop = 1;
        break;
      }
      int rc = schedule_running(s, r, chunk_limit(s, remaining, budget), &budget);
      if (rc < 0)
        return rc;
      if (rc == SCHED_SELF_PREEMPTED)
        stop = 1;
    }
  }
  /* vLLM: no admissions in a step that had to preempt (the pool is under pressure). */
  if (s->out.n_preempted == 0)
    PL_TRY(admit_waiting(s, &budget));
  for (int i = 0; i < s->n_running; i++) /* proposals of requests left out are void */
    if (!s->running[i]->n_sched)
      s->running[i]->n_spec = 0;
  int n = build_plan(s);
  if (n > 0)
    s->n_steps++;
  return n;
}

int pl_sched_append_token(pl_scheduler *s, pl_sched_req *r, int32_t token) {
  (void)s;
  if (r->status != PL_REQ_RUNNING || r->num_computed_tokens != r->num_tokens)
    return pl_fail(PL_ESTATE, "scheduler: request %llu was not sampled (%d of %d computed)",
                   (unsigned long long)r->id, r->num_computed_tokens, r->num_tokens);
  if (r->num_tokens >= r->max_tokens)
    return pl_fail(PL_ERANGE, "scheduler: request %llu is full (%d tokens)",
                   (unsigned long long)r->id, r->max_tokens);
  r->tokens[r->num_tokens++] = token;
  return PL_OK;
}

int pl_sched_spec_commit(pl_scheduler *s, pl_sched_req *r, int n_accepted) {
  if (r->status != PL_REQ_RUNNING || r->n_spec <= 0 ||
      r->num_computed_tokens != r->num_tokens + r->n_spec)
    return pl_fail(PL_ESTATE, "scheduler: request %llu has no proposals in the plan",
                   (unsigned long long)r->id);
  if (n_accepted < 0 || n_accepted > r->n_spec)
    return pl_fail(PL_EINVAL, "scheduler: request %llu: %d of %d proposals accepted",
                   (unsigned long long)r->id, n_accepted, r->n_spec);
  r->num_tokens += n_accepted; /* the accepted proposals are already in tokens[] */
  r->num_computed_tokens = r->num_tokens;
  r->n_spec = 0;
  return pl_kv_truncate(s->kv, r->kv_seq, r->num_tokens, reserve_tokens(s));
}

int pl_sched_fork(pl_scheduler *s, pl_sched_req *parent, uint64_t child_id, void *child_user,
                  pl_sched_req **child) {
  *child = NULL;
  if (parent->status == PL_REQ_FAILED)
    return pl_fail(PL_ESTATE, "scheduler: fork of failed request %llu",
                   (unsigned long long)parent->id);
  pl_sched_req *c;
  PL_TRY(req_new(&c, parent->tokens, parent->num_tokens, parent->max_tokens));
  c->id = child_id;
  c->user = child_user;
  c->num_prompt_tokens = parent->num_prompt_tokens;
  c->num_cached_tokens = parent->num_cached_tokens;
  c->priority = parent->priority;
  c->client = parent->client;
  c->vstart = parent->vstart; /* one request's samples: one tag */
  c->extra_key = parent->extra_key;
  c->arrival = s->next_arrival++;
  int seq = -1;
  if (parent->status == PL_REQ_RUNNING && s->n_running < s->prm.max_num_seqs &&
      pl_kv_seq_open(s->kv, c->extra_key, &seq) == PL_OK) {
    int rc = pl_kv_fork(s->kv, parent->kv_seq, seq);
    /* Static mode: a running child holds its own full reservation, like any admitted
     * request (so static mode never preempts); without room it waits instead. */
    if (rc == PL_OK && reserve_tokens(s) > 0)
      rc = pl_kv_reserve(s->kv, seq, reserve_tokens(s));
    if (rc < 0 && rc != PL_ENOSPACE) { /* contract violation inside the scheduler */
      pl_kv_seq_free(s->kv, seq);
      req_free(c);
      return rc;
    }
    if (rc == PL_OK) {
      c->kv_seq = seq;
      c->num_computed_tokens = parent->num_computed_tokens;
      running_push(s, c);
    } else {
      pl_kv_seq_free(s->kv, seq);
      seq = -1;
    }
  }
  if (seq < 0)
    waiting_insert(s, c, 0);
  *child = c;
  return PL_OK;
}

static void retire(pl_scheduler *s, pl_sched_req *r) {
  switch (r->status) {
  case PL_REQ_RUNNING:
    pl_kv_seq_free(s->kv, r->kv_seq);
    running_remove(s, r);
    break;
  case PL_REQ_WAITING:
    list_unlink(&s->waiting, r);
    break;
  case PL_REQ_FAILED:
    list_unlink(&s->failed, r);
    break;
  }
  req_free(r);
}

void pl_sched_finish(pl_scheduler *s, pl_sched_req *r) {
  s->n_finished++;
  retire(s, r);
}

void pl_sched_abort(pl_scheduler *s, pl_sched_req *r) {
  s->n_aborted++;
  retire(s, r);
}

void pl_sched_reset_prefix_cache(pl_scheduler *s) { pl_kv_cache_reset_prefix_cache(s->kv); }

int pl_sched_num_running(const pl_scheduler *s) { return s->n_running; }
int pl_sched_num_waiting(const pl_scheduler *s) { return s->waiting.n; }
int pl_sched_max_num_seqs(const pl_scheduler *s) { return s->prm.max_num_seqs; }
int pl_sched_has_unfinished(const pl_scheduler *s) { return s->n_running + s->waiting.n > 0; }
const pl_kv_cache *pl_sched_kv(const pl_scheduler *s) { return s->kv; }
pl_kv_cache *pl_sched_kv_mut(pl_scheduler *s) { return s->kv; }

int pl_sched_list_running(const pl_scheduler *s, const pl_sched_req **out, int cap) {
  for (int i = 0; i < s->n_running && i < cap; i++)
    out[i] = s->running[i];
  return s->n_running;
}

int pl_sched_list_waiting(const pl_scheduler *s, const pl_sched_req **out, int cap) {
  int i = 0;
  for (const pl_sched_req *r = s->waiting.head; r && i < cap; r = r->next)
    out[i++] = r;
  return s->waiting.n;
}

const int32_t *pl_sched_req_blocks(const pl_scheduler *s, const pl_sched_req *r, int *n_blocks) {
  *n_blocks = r->kv_seq >= 0 ? pl_kv_seq_num_blocks(s->kv, r->kv_seq) : 0;
  return *n_blocks > 0 ? pl_kv_seq_blocks(s->kv, r->kv_seq) : NULL;
}

void pl_sched_get_stats(const pl_scheduler *s, pl_sched_stats *st) {
  memset(st, 0, sizeof *st);
  st->num_running = s->n_running;
  st->num_waiting = s->waiting.n;
  st->peak_running = s->peak_running;
  st->num_preemptions = s->n_preemptions;
  st->num_failed = s->n_failed;
  st->num_steps = s->n_steps;
  st->num_finished = s->n_finished;
  st->num_aborted = s->n_aborted;
  st->prompt_tokens_computed = s->prompt_computed;
  st->decode_tokens_computed = s->decode_computed;
  pl_kv_cache_get_stats(s->kv, &st->kv);
}

static int check_list(const pl_scheduler *s, const req_list *l, pl_req_status want,
                      const char *name) {
  int n = 0;
  const pl_sched_req *prev = NULL;
  for (const pl_sched_req *r = l->head; r; prev = r, r = r->next) {
    if (++n > l->n)
      return pl_fail(PL_EINTERNAL, "scheduler: %s list longer than its count %d", name, l->n);
    if (r->prev != prev)
      return pl_fail(PL_EINTERNAL, "scheduler: %s list broken at request %llu", name,
                     (unsigned long long)r->id);
    if (r->status != want || r->kv_seq != -1 || r->num_computed_tokens != 0 || r->n_sched)
      return pl_fail(PL_EINTERNAL, "scheduler: %s request %llu: status %d, kv seq %d, "
                     "computed %d", name, (unsigned long long)r->id, (int)r->status, r->kv_seq,
                     r->num_computed_tokens);
    if (want == PL_REQ_WAITING && sorted_waiting(s) && prev && before(s, r, prev))
      return pl_fail(PL_EINTERNAL, "scheduler: waiting request %llu out of priority order",
                     (unsigned long long)r->id);
  }
  if (n != l->n || prev != l->tail)
    return pl_fail(PL_EINTERNAL, "scheduler: %s list has %d requests, count %d", name, n, l->n);
  return PL_OK;
}

int pl_sched_check(const pl_scheduler *s) {
  if (s->n_running < 0 || s->n_running > s->prm.max_num_seqs)
    return pl_fail(PL_EINTERNAL, "scheduler: %d running", s->n_running);
  int open = 0;
  for (int q = 0; q < s->prm.max_num_seqs; q++)
    open += pl_kv_seq_is_open(s->kv, q);
  if (open != s->n_running)
    return pl_fail(PL_EINTERNAL, "scheduler: %d kv sequences open, %d running", open,
                   s->n_running);
  for (int i = 0; i < s->n_running; i++) {
    const pl_sched_req *r = s->running[i];
    for (int j = 0; j < i; j++)
      if (s->running[j] == r || s->running[j]->kv_seq == r->kv_seq)
        return pl_fail(PL_EINTERNAL, "scheduler: running entries %d and %d collide", j, i);
    if (r->status != PL_REQ_RUNNING || !pl_kv_seq_is_open(s->kv, r->kv_seq) || r->n_sched)
      return pl_fail(PL_EINTERNAL, "scheduler: running request %llu: status %d, kv seq %d",
                     (unsigned long long)r->id, (int)r->status, r->kv_seq);
    if (r->num_computed_tokens > r->num_tokens || r->num_tokens > r->max_tokens ||
        pl_kv_seq_num_tokens(s->kv, r->kv_seq) != r->num_computed_tokens)
      return pl_fail(PL_EINTERNAL, "scheduler: request %llu: computed %d, tokens %d, kv %d",
                     (unsigned long long)r->id, r->num_computed_tokens, r->num_tokens,
                     pl_kv_seq_num_tokens(s->kv, r->kv_seq));
  }
  PL_TRY(check_list(s, &s->waiting, PL_REQ_WAITING, "waiting"));
  PL_TRY(check_list(s, &s->failed, PL_REQ_FAILED, "failed"));
  return pl_kv_cache_check(s->kv);
}
