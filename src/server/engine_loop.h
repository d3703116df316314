/* The engine thread and its queues: how HTTP threads talk to the single-threaded engine.
 *
 *   HTTP thread                         engine thread
 *   -----------                         -------------
 *   pl_srv_job_create (tokenized)
 *   pl_srv_submit  ── ADD cmd ──▶       drain commands: pl_engine_add_request per prompt
 *   suspend the connection; the waiter  pl_engine_step while there is work
 *     (conn_wait.h) watches the job's   route each pl_output_event (copied) to its job's
 *     eventfd + the client socket   ◀── queue, then write the job's eventfd
 *   pl_srv_job_take (events)
 *   pl_srv_cancel ── ABORT cmd ──▶      pl_engine_abort (blocks freed now)
 *
 * A job is one HTTP request: n_prompts engine requests (a batched /v1/completions prompt), each
 * with n samples; choice index = prompt_index * n + sample index. Nothing busy-waits: the
 * engine thread sleeps on a condition variable when it has neither commands nor work, and a
 * waiting request holds no thread: its connection is suspended while the waiter thread
 * watches its job's eventfd and its client socket, so a client that hangs up is noticed at
 * once (EPOLLRDHUP) even while its request is still queued.
 *
 * Lifetime: a job is reference counted (the HTTP side, the engine side from submit until all
 * its engine requests finished, and a queued ABORT command). The engine loop never touches a
 * job's HTTP state; the HTTP side reads shared state only under the job's mutex. */
#ifndef PL_SERVER_ENGINE_LOOP_H
#define PL_SERVER_ENGINE_LOOP_H
#include <stddef.h>
#include <stdint.h>

#include "pagellm.h"
#include "server/metrics.h"

typedef struct pl_srv_loop pl_srv_loop;
typedef struct pl_srv_job pl_srv_job;

/* A copy of one pl_output_event (one allocation; free with pl_srv_event_free_list). */
typedef struct pl_srv_event {
  struct pl_srv_event *next;
  int choice;       /* prompt_index * n + sample index */
  int prompt_index;
  char *text;       /* NUL-terminated, never NULL */
  size_t text_len;
  int32_t *tokens;  /* [n_tokens] */
  int n_tokens;
  float *logprobs;  /* [n_tokens] or NULL */
  pl_top_logprob *top; /* [n_tokens][n_top] or NULL */
  int n_top;
  pl_finish_reason finish;
  const char *error; /* when finish == PL_FINISH_ERROR */
  int prompt_tokens, completion_tokens, cached_tokens;
} pl_srv_event;

void pl_srv_event_free_list(pl_srv_event *ev);

/* ---- the loop --------------------------------------------------------------------------- */

/* Start the engine thread. max_pending bounds ADD commands not yet taken by the engine (the
 * engine's own --max-waiting bounds the rest). A submission that finds the engine's queue
 * full waits, in the engine's order (fair share over clients, or arrival), up to queue_timeout_s for room before it is rejected with
 * PL_EBUSY (0: rejected at once). The loop does not own e or m. */
int pl_srv_loop_start(pl_engine *e, pl_srv_metrics *m, int max_pending, double queue_timeout_s,
                      pl_srv_loop **out);
/* Stop accepting submissions (they fail with PL_EBUSY "shutting down") and wait until every
 * submitted job finished, at most timeout_ms or until *force becomes non-zero. Returns the
 * number of jobs still running. */
int pl_srv_loop_drain(pl_srv_loop *l, int timeout_ms, volatile int *force);
/* Abort everything still in flight (each waiting HTTP thread gets final events) and join the
 * engine thread. Afterwards submissions fail and cancels are no-ops, so HTTP threads may
 * still hold the loop; free it with pl_srv_loop_free once they are gone. NULL ok. Call before
 * pl_engine_destroy. */
void pl_srv_loop_stop(pl_srv_loop *l);
void pl_srv_loop_free(pl_srv_loop *l); /* stops first if needed; NULL ok */
/* The KV map the engine thread feeds (server/kvmap.h); lives as long as the loop. */
struct pl_srv_kvmap;
struct pl_srv_kvmap *pl_srv_loop_kvmap(pl_srv_loop *l);
/* Abort a job whose oldest undelivered event is older than stall_ms (0 = never): a client
 * that stops reading must not hold KV blocks for n x max_tokens. Call before submitting. */
void pl_srv_loop_set_stall(pl_srv_loop *l, int stall_ms);
/* 1 while the engine steps succeed (0 after an engine-wide failure, until a step succeeds). */
int pl_srv_loop_healthy(pl_srv_loop *l);

/* ---- jobs ---------------------------------------------------------------------------------- */

typedef struct pl_srv_job_params {
  int n_prompts;
  const int32_t *const *prompt_ids; /* [n_prompts] */
  const int *prompt_lens;           /* [n_prompts] */
  const int *max_tokens;            /* [n_prompts] sp.max_tokens per prompt */
  const pl_sampling_params *sp;     /* deep-copied; sp->n samples per prompt */
} pl_srv_job_params;

/* Copy everything into a new job (refcount 1, owned by the caller). PL_ENOMEM, PL_EIO (no
 * eventfd: out of file descriptors). */
int pl_srv_job_create(const pl_srv_job_params *p, pl_srv_job **out);
/* Take another reference (e.g. for a streaming response that outlives the handler). */
void pl_srv_job_retain(pl_srv_job *j);
/* Drop the caller's reference (call pl_srv_cancel first if the job may still run). */
void pl_srv_job_release(pl_srv_job *j);

/* Queue the job for the engine. PL_EBUSY (message set) when the command queue is full or the
 * server is shutting down; the job is then not submitted. */
int pl_srv_submit(pl_srv_loop *l, pl_srv_job *j);
/* The client is gone: abort the job's engine requests (frees their blocks). Idempotent;
 * safe before submit, after finish, and from any thread. */
void pl_srv_cancel(pl_srv_loop *l, pl_srv_job *j);

/* The job's wake-up fd: readable once the engine signalled the job (a verdict, events, the
 * end) since it was last drained. Whoever waits drains it (read until EAGAIN) before looking
 * at the job, so a later signal is never lost. Valid until the last reference goes. */
int pl_srv_job_fd(const pl_srv_job *j);

/* 1 once the loop aborted this job because its output was not read for the stall bound
 * (pl_srv_loop_set_stall); the HTTP side then closes the connection. */
int pl_srv_job_stalled(pl_srv_job *j);

enum { PL_SRV_SUBMIT_PENDING = 0, PL_SRV_SUBMIT_ACCEPTED = 1, PL_SRV_SUBMIT_REJECTED = -1 };
/* Whether the engine accepted the job; on rejection *status (a PL_E* code) and msg (the
 * engine's message) tell why. */
int pl_srv_job_submit_state(pl_srv_job *j, int *status, char *msg, size_t msg_cap);
/* Detach the queued events (oldest first; NULL when none). *all_done is set to 1 once every
 * choice has had its final event (and no more will come). */
pl_srv_event *pl_srv_job_take(pl_srv_job *j, int *all_done);
#endif
