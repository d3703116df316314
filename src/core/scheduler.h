/* The continuous-batching scheduler (vLLM v1 semantics): decides, once per engine step, which
 * tokens of which requests run, and fills the step plan the model runner consumes. Block ids
 * and token counts only; testable with no model.
 *
 * A request is a token sequence [prompt | generated] with num_computed_tokens of it already in
 * the KV cache. Each schedule() call, under a budget of max_num_batched_tokens tokens and
 * max_num_seqs sequences:
 *   1. running requests that decode (exactly one token left to compute) get that token,
 *      oldest admitted first; then running requests still in prefill (or recomputing after a
 *      preemption) get their next chunk. Decodes go first so a long prompt never stalls them.
 *      If a running request cannot get a block, the lowest-priority, latest-arrived running
 *      request is preempted (blocks freed, computed tokens reset, back to the head of
 *      waiting; it recomputes later, mostly from the prefix cache); when that victim is the
 *      requester itself, no further running request is scheduled this step.
 *   2. if nothing was preempted: waiting requests in order (FCFS, or by priority then
 *      arrival), each first taking its cached prefix (hit tokens count as computed), until the
 *      budget, the sequence limit or the pool runs out (an unfit head blocks the queue); with
 *      PL_ADMIT_RESERVE (the default) the pool "runs out" when the running requests' growth
 *      to their max_tokens would no longer fit (see pl_sched_admission). With fair_share,
 *      requests of equal priority are ordered by a start tag (start-time fair queuing over
 *      clients, scheduler.c) before arrival: clients take turns, so one client's thousand
 *      queued requests do not hold back another client's one.
 * A request that alone can never fit the pool fails (status PL_REQ_FAILED, listed in the
 * output) instead of thrashing. num_computed_tokens advances inside schedule() for every
 * scheduled token, so after the runner's forward the engine samples one token for every
 * logits row and appends it with pl_sched_append_token().
 *
 * Static mode (PL_KV_STATIC): identical, except that every admitted request reserves blocks for
 * max_model_len tokens up front (the pre-paging baseline); a fork takes its own reservation
 * (and a private copy of the shared partial block) at once, or waits. So it never preempts.
 *
 * Differences from vLLM v1, on purpose: decodes are scheduled before prefill chunks of
 * running requests (vLLM walks the running list in order, so an older long prefill can take
 * the whole budget); a request too large for the whole pool fails instead of looping.
 *
 * Ownership: the scheduler allocates each pl_sched_req (pl_sched_add / pl_sched_fork) and
 * frees it in pl_sched_finish / pl_sched_abort (or pl_sched_destroy). The engine keeps the
 * pointer as the request's handle and reads the public fields; only the scheduler writes them.
 * Nothing allocates in pl_sched_schedule or pl_sched_append_token. Not thread-safe. */
#ifndef PL_CORE_SCHEDULER_H
#define PL_CORE_SCHEDULER_H
#include <stdint.h>

#include "core/kv_cache.h"
#include "plan/step_plan.h"
#include "pagellm.h"

typedef enum { PL_SCHED_FCFS = 0, PL_SCHED_PRIORITY = 1 } pl_sched_policy;

/* Admission of waiting requests in paged mode.
 * RESERVE (default): admit while the free blocks cover, besides the new request's own growth
 *   to its max_tokens, what every running request still needs to reach its max_tokens. Blocks
 *   are still taken lazily (a request that stops early frees what it never used), but
 *   requests that run to max_tokens never preempt each other: no recompute thrash, and never
 *   fewer running requests than static mode (which reserves max_model_len each). The first
 *   request is always admitted. Only forks (which share blocks) can still preempt.
 * GREEDY (vLLM): admit whatever fits now; when the admitted requests outgrow the pool,
 *   preempt and recompute. */
typedef enum { PL_ADMIT_RESERVE = 0, PL_ADMIT_GREEDY = 1 } pl_sched_admission;

typedef enum {
  PL_REQ_WAITING = 0, /* in the waiting queue, holds no blocks, num_computed_tokens == 0 */
  PL_REQ_RUNNING = 1, /* holds blocks for its num_computed_tokens */
  PL_REQ_FAILED = 2   /* can never fit the pool; holds nothing; release with finish/abort */
} pl_req_status;

typedef struct pl_sched_req {
  /* ---- public, read-only for the engine ---- */
  uint64_t id;             /* the engine's request id (not interpreted) */
  void *user;              /* the engine's per-request pointer (not interpreted) */
  pl_req_status status;
  int32_t *tokens;         /* [max_tokens] prompt, then generated; [0, num_tokens) valid */
  int num_tokens;          /* prompt + generated so far */
  int max_tokens;          /* capacity of tokens: prompt + max new tokens (<= max_model_len) */
  int num_prompt_tokens;
  int num_computed_tokens; /* tokens whose K/V is written or scheduled in the latest plan */
  int num_cached_tokens;   /* prompt tokens from the prefix cache at first admission; -1 before */
  int priority;            /* lower = scheduled first (PL_SCHED_PRIORITY only) */
  uint64_t client;         /* fair-share key (pl_sched_params.fair_share); 0 is a client too */
  uint64_t arrival;        /* arrival order, assigned by the scheduler (forks are new arrivals) */
  uint64_t extra_key;      /* prefix-cache key, e.g. a hashed cache salt (0 = none) */
  int num_preemptions;     /* times this request was preempted */
  int fail_status;         /* PL_ENOSPACE when status == PL_REQ_FAILED */
  /* ---- speculative decoding (see pl_sched_spec_commit) ---- */
  const int32_t *spec_tokens; /* [n_spec] engine-owned proposals; the engine sets both fields
                              * before schedule() for a decoding request */
  int n_spec;              /* in: proposals; after schedule(): how many are in the plan */
  /* ---- private to the scheduler ---- */
  int kv_seq;              /* kv-cache sequence slot, -1 while holding no blocks */
  uint64_t vstart;         /* fair share: start tag (0 without fair share) */
  int n_sched;             /* tokens scheduled in the schedule() call in progress */
  struct pl_sched_req *prev, *next; /* waiting or failed list links */
} pl_sched_req;

typedef struct pl_sched_params {
  int num_blocks;             /* KV pool blocks including the null block 0 (>= 2) */
  int block_size;             /* tokens per block */
  int max_model_len;          /* tokens per sequence */
  int max_num_seqs;           /* sequences per step = running requests at most */
  int max_num_batched_tokens; /* tokens per step */
  int max_prefill_chunk;      /* tokens of one prefill chunk at most; 0 = only the budget */
  int max_num_logits;         /* logits rows per step (speculative rows count); 0 =
                                 max_num_seqs, else >= max_num_seqs */
  pl_kv_alloc kv_alloc;       /* PL_KV_PAGED or PL_KV_STATIC */
  int enable_prefix_caching;
  pl_sched_policy policy;
  pl_sched_admission admission; /* paged mode; static mode always reserves max_model_len */
  int fair_share;             /* order equal priorities by client turns (above) */
} pl_sched_params;

typedef struct pl_sched_req_params {
  uint64_t id;
  void *user;
  const int32_t *prompt;   /* [n_prompt] copied */
  int n_prompt;            /* >= 1 */
  int max_tokens;          /* TOTAL capacity (not new tokens): n_prompt <= it <= max_model_len */
  int priority;
  uint64_t client;         /* fair-share key; forks inherit it */
  uint64_t extra_key;
} pl_sched_req_params;

/* The result of one schedule() call. Everything points into scheduler-owned arrays that stay
 * valid (and unchanged) until the next schedule() call. */
typedef struct pl_sched_output {
  pl_step_plan plan;           /* rows in scheduling order; block_tables stride is the longest
                                  scheduled row (rows padded with the null block 0) */
  pl_sched_req **seq_reqs;     /* [plan.n_seqs] the request of each plan row */
  pl_sched_req **logits_reqs;  /* [plan.n_logits] request of each logits row: sample for it */
  int n_preempted;
  pl_sched_req **preempted;    /* [n_preempted] moved back to waiting in this call */
  int n_failed;
  pl_sched_req **failed;       /* [n_failed] status PL_REQ_FAILED: report, then finish/abort */
} pl_sched_output;

typedef struct pl_sched_stats {
  int num_running, num_waiting;
  int peak_running;            /* high-water mark of running requests */
  int64_t num_preemptions;     /* total over all requests */
  int64_t num_failed;          /* requests failed for not fitting the pool */
  int64_t num_steps;           /* schedule() calls that scheduled >= 1 token */
  int64_t num_finished, num_aborted; /* pl_sched_finish / pl_sched_abort calls */
  int64_t prompt_tokens_computed; /* scheduled tokens below each request's prompt length */
  int64_t decode_tokens_computed; /* scheduled tokens beyond it (incl. recompute) */
  pl_kv_stats kv;
} pl_sched_stats;

typedef struct pl_scheduler pl_scheduler;

/* Size everything (KV pool, tables, plan arrays for max_num_batched_tokens tokens and
 * max_num_seqs sequences). Errors: PL_EINVAL (parameters), PL_ENOMEM (nothing leaked). */
int pl_sched_create(const pl_sched_params *p, pl_scheduler **out);
/* Frees every request still held (their pointers die). NULL ok. */
void pl_sched_destroy(pl_scheduler *s);

/* Queue a new request (status WAITING). Errors: PL_EINVAL (empty prompt, bad capacity),
 * PL_ETOOLONG (max_tokens > max_model_len), PL_ENOMEM. *out is NULL on error. */
int pl_sched_add(pl_scheduler *s, const pl_sched_req_params *rp, pl_sched_req **out);

/* Build the next step plan. Returns the number of tokens scheduled (0 when idle or when
 * nothing fits) and sets *out; negative only on an internal error. Advances
 * num_computed_tokens of every scheduled request. */
int pl_sched_schedule(pl_scheduler *s, const pl_sched_output **out);

/* Append one sampled token to a RUNNING request that had a logits row in the latest plan
 * (num_computed_tokens == num_tokens). Errors: PL_ESTATE (not sampled / not running),
 * PL_ERANGE (max_tokens reached). Never allocates. */
int pl_sched_append_token(pl_scheduler *s, pl_sched_req *r, int32_t token);

/* Speculative decoding. A decoding request (one token left to compute) whose spec_tokens /
 * n_spec the engine set before schedule() gets 1 + n_spec tokens in the plan: its last token
 * and the proposals (copied into tokens[num_tokens ..], not yet counted in num_tokens), with a
 * logits row for each, in order. Proposals are trimmed to the token budget, max_num_logits
 * and the capacity (num_tokens + n_spec < max_tokens, so one more token always fits), and
 * dropped when their blocks would need a preemption; n_spec then says how many are in the
 * plan (0: an ordinary decode). num_computed_tokens counts them, so before the next
 * schedule() the engine must call spec_commit for every such request: the first n_accepted
 * proposals become tokens, the rest are rolled back (their slots and the blocks that held
 * only them return to the pool; only blocks of accepted tokens are ever hashed for the
 * prefix cache). Afterwards num_computed_tokens == num_tokens, and the engine appends the
 * token it sampled from row n_accepted with pl_sched_append_token.
 * Errors: PL_ESTATE (no proposals in the latest plan), PL_EINVAL (n_accepted > n_spec). */
int pl_sched_spec_commit(pl_scheduler *s, pl_sched_req *r, int n_accepted);

/* n > 1: create a sibling of parent (a new arrival with the same tokens, priority, extra key
 * and capacity) and return it in *child. Call after the prefill that produced parent's logits
 * and before appending the sampled tokens (each sample then appends its own). A running
 * parent's child shares all its blocks (copy-on-write later) and runs at once if a sequence
 * slot is free; otherwise the child waits and recomputes (mostly from the prefix cache).
 * Errors: PL_ESTATE (parent failed), PL_ENOMEM. */
int pl_sched_fork(pl_scheduler *s, pl_sched_req *parent, uint64_t child_id, void *child_user,
                  pl_sched_req **child);

/* Retire a request in any state: free its blocks (full blocks stay in the prefix cache),
 * drop it from its queue, free it. The pointer dies (including in the latest output's
 * arrays). finish is a normal end, abort a cancelled one (counted apart).
 * Timing: a request in the latest plan may be retired only after the runner has executed
 * that plan: blocks that become full in a step are offered to the prefix cache when it is
 * scheduled, so their K/V must really be written. (Failed requests are never in the plan.) */
void pl_sched_finish(pl_scheduler *s, pl_sched_req *r);
void pl_sched_abort(pl_scheduler *s, pl_sched_req *r);

/* The runner could not execute the latest plan (engine-wide failure): forget the prefix
 * cache, whose newest blocks may hold unwritten K/V. The requests of that plan assumed it ran
 * (their computed tokens advanced): abort them too. */
void pl_sched_reset_prefix_cache(pl_scheduler *s);

int pl_sched_num_running(const pl_scheduler *s);
int pl_sched_num_waiting(const pl_scheduler *s);
int pl_sched_max_num_seqs(const pl_scheduler *s); /* the most requests that can run at once */
int pl_sched_has_unfinished(const pl_scheduler *s); /* running or waiting requests exist */
void pl_sched_get_stats(const pl_scheduler *s, pl_sched_stats *st);
const pl_kv_cache *pl_sched_kv(const pl_scheduler *s);
/* Test hook: the kv cache, e.g. to force a hash function before any request runs. */
pl_kv_cache *pl_sched_kv_mut(pl_scheduler *s);

/* Read-only views for monitoring (core/kv_snapshot.c); same thread rule as everything else.
 * Copy up to cap pointers of the running requests (admission order) or of the waiting queue
 * (scheduling order, head first) into out; return the total count. */
int pl_sched_list_running(const pl_scheduler *s, const pl_sched_req **out, int cap);
int pl_sched_list_waiting(const pl_scheduler *s, const pl_sched_req **out, int cap);
/* r's block table in order ([*n_blocks] ids; NULL and 0 when it holds no blocks). */
const int32_t *pl_sched_req_blocks(const pl_scheduler *s, const pl_sched_req *r, int *n_blocks);

/* Verify queue and accounting invariants between schedule() calls, then the kv cache's;
 * PL_EINTERNAL naming the first violation. */
int pl_sched_check(const pl_scheduler *s);
#endif
