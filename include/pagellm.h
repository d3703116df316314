/* pagellm — public C API.
 *
 * Conventions: opaque handles; every function that can fail returns pl_status (0 = PL_OK,
 * negative = error) and sets a thread-local message readable with pl_last_error(). Constructors
 * take an out-parameter. Library code never calls exit(). Unless a prototype says otherwise, a
 * handle is not thread-safe: use it from one thread at a time.
 */
#ifndef PAGELLM_H
#define PAGELLM_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* X-macro list of status codes: name, value, description. */
#define PL_STATUS_LIST(X)                                             \
  X(PL_OK, 0, "ok")                                                   \
  X(PL_EINVAL, -1, "invalid argument")                                \
  X(PL_ENOMEM, -2, "out of memory")                                   \
  X(PL_EIO, -3, "I/O error")                                          \
  X(PL_EFORMAT, -4, "malformed or unsupported file")                  \
  X(PL_EUNSUPPORTED, -5, "unsupported feature")                       \
  X(PL_ENOTFOUND, -6, "not found")                                    \
  X(PL_ERANGE, -7, "value out of range")                              \
  X(PL_ENOSPACE, -8, "no room (KV blocks)")                           \
  X(PL_ETOOLONG, -9, "input longer than the context")                 \
  X(PL_EBUSY, -10, "busy (queue full)")                               \
  X(PL_ESTATE, -11, "invalid state")                                  \
  X(PL_ETEMPLATE, -12, "chat template error")                         \
  X(PL_EINTERNAL, -13, "internal error")                              \
  X(PL_EDEVICE, -14, "device error")

typedef enum {
#define PL_X_ENUM(name, val, desc) name = val,
  PL_STATUS_LIST(PL_X_ENUM)
#undef PL_X_ENUM
} pl_status;

/* Static description of a status code. Thread-safe. */
const char *pl_strerror(int status);

/* The detailed message of the last error on the calling thread (e.g. "model.gguf: tensor
 * 'blk.0.attn_q.weight' data out of range"). Valid until the next failing call on this thread.
 * Thread-safe (thread-local). Never NULL. */
const char *pl_last_error(void);


/* ======================================================================================
 * Engine: a continuous-batching inference engine over one model (one replica, no global
 * state). Single-threaded: one thread calls add/abort/step/poll (the server runs it on its
 * own thread behind a queue). Outputs are per-request events read with pl_engine_poll().
 * ==================================================================================== */
typedef struct pl_engine pl_engine;

typedef enum { PL_KV_PAGED = 0, PL_KV_STATIC = 1 } pl_kv_alloc;
typedef enum { PL_SPEC_NONE = 0, PL_SPEC_NGRAM = 1, PL_SPEC_DRAFT = 2 } pl_spec_method;
#define PL_SPEC_MAX_TOKENS 16

/* Element type of the KV cache (vLLM's --kv-cache-dtype). AUTO: bf16 on CUDA, the CPU
 * backend's default on the CPU. */
typedef enum {
  PL_KV_DTYPE_AUTO = 0,
  PL_KV_DTYPE_F32,
  PL_KV_DTYPE_F16,
  PL_KV_DTYPE_BF16,
  PL_KV_DTYPE_Q8_0,
} pl_kv_dtype;

/* Where the weights come from (vLLM's --load-format). */
typedef enum { PL_LOAD_AUTO = 0, PL_LOAD_DUMMY = 1 } pl_load_format;
/* Weight type of a random-weight model (vLLM's --dtype); AUTO = bf16. */
typedef enum {
  PL_WEIGHT_DTYPE_AUTO = 0,
  PL_WEIGHT_DTYPE_F32,
  PL_WEIGHT_DTYPE_F16,
  PL_WEIGHT_DTYPE_BF16,
} pl_weight_dtype;

typedef struct pl_engine_params {
  const char *model_path;     /* .gguf file or safetensors directory (required unless DUMMY) */
  pl_load_format load_format; /* AUTO: read model_path; DUMMY: random weights generated where
                                 they live (no file read), shape from model_config */
  const char *model_config;   /* DUMMY: a preset (tinyllama-1.1b, llama-2-7b, llama-3-8b,
                                 qwen2.5-7b, llama-3.2-1b) or an HF config.json / its
                                 directory; NULL: model_path is that config */
  pl_weight_dtype dtype;      /* DUMMY: weight type (AUTO = bf16); must be AUTO otherwise */
  uint64_t load_seed;         /* DUMMY: the weights' seed (the commands' --seed; default 0) */
  const char *device;         /* "auto" (NULL: CUDA when usable, else CPU), "cpu", "cuda[:N]" */
  float gpu_memory_utilization; /* GPU: share of total device memory for weights, activations
                                   and KV (vLLM's meaning); 0 = 0.9 */
  pl_kv_dtype kv_cache_dtype; /* KV element type (default AUTO) */
  int batch_invariant;        /* 1: a request's logits do not depend on what else is in the
                                 batch, bit for bit (vLLM's VLLM_BATCH_INVARIANT). Always true
                                 on the CPU; on CUDA it trades speed for it (docs/BENCHMARKS.md) */
  int enforce_eager;          /* 1: issue every op of every step (no CUDA graphs); vLLM's name */
  const char *chat_template;  /* Jinja text overriding the model's; NULL = model's own */
  int n_threads;              /* compute threads; 0 = number of cores */
  size_t kv_cache_bytes;      /* KV pool size; 0 = auto: a share of free host memory on the
                                 CPU, the GPU memory left under gpu_memory_utilization */
  int max_model_len;          /* tokens per sequence; 0 = the model's context length */
  int block_size;             /* tokens per KV block; 0 = 16 */
  int max_num_seqs;           /* sequences per step; 0 = 256 */
  int max_num_batched_tokens; /* tokens per step; 0 = 2048 */
  int max_waiting;            /* waiting-queue bound (add fails with PL_EBUSY); 0 = 1024 */
  pl_kv_alloc kv_alloc;       /* PL_KV_STATIC reserves max_model_len per request */
  int enable_prefix_caching;  /* 1 = on (default) */
  int kv_admit_greedy;        /* paged: 1 = admit whatever fits now and preempt when the
                                 pool runs out (vLLM); 0 (default) = admit only while every
                                 running request can grow to its max_tokens (no thrash) */
  int fair_share;             /* 1 (the default): among waiting requests of one priority,
                                 admit first the client with the fewest running (clients:
                                 pl_sampling_params.client); 0: arrival order */
  uint64_t seed;              /* base seed for requests without one */
  /* Speculative decoding: proposals verified in one batched forward with exact rejection
   * sampling (greedy output is unchanged; sampled output keeps its distribution). */
  pl_spec_method spec_method;  /* PL_SPEC_NONE (default), PL_SPEC_NGRAM, PL_SPEC_DRAFT */
  int num_speculative_tokens;  /* proposals per step, 1..PL_SPEC_MAX_TOKENS; 0 = 4 */
  int ngram_min, ngram_max;    /* n-gram lengths tried, longest first; 0 = 2 and 4 */
  const char *draft_model_path; /* PL_SPEC_DRAFT: same vocabulary as the model; with DUMMY
                                   a preset or config.json, random weights like the model's */
  int spec_max_batch;          /* no proposals while more requests than this decode; 0 = 8 */
  int spec_no_backoff;         /* 1: propose every step whatever the acceptance (to time
                                  speculation with a draft that never agrees) */
} pl_engine_params;

/* Fill with defaults (all 0/auto, prefix caching and fair share on). */
void pl_engine_params_default(pl_engine_params *p);

/* Load the model and size every pool. Errors: PL_EIO/PL_EFORMAT (model file), PL_ENOMEM,
 * PL_EINVAL (parameters; e.g. max_model_len that not even one sequence fits). On error
 * *out is NULL. The caller owns the engine and frees it with pl_engine_destroy. */
int pl_engine_create(const pl_engine_params *p, pl_engine **out);
void pl_engine_destroy(pl_engine *e); /* NULL ok; aborts everything in flight */

typedef struct pl_sampling_params {
  float temperature;          /* 0 = greedy (default 1.0) */
  float top_p;                /* (0,1], default 1 */
  int top_k;                  /* <= 0 = off */
  float min_p;                /* [0,1], default 0 */
  float repetition_penalty;   /* > 0, default 1 (HF/vLLM semantics, prompt + output) */
  float presence_penalty;     /* [-2,2], default 0 (OpenAI semantics, output tokens) */
  float frequency_penalty;    /* [-2,2], default 0 */
  int64_t seed;               /* < 0 = derive from the engine seed and request id */
  int max_tokens;             /* > 0; default 16; capped by max_model_len - prompt */
  int min_tokens;             /* >= 0: EOS/stop ignored before this many tokens */
  int ignore_eos;
  const char *const *stop;    /* stop strings (not included in the output) */
  int n_stop;
  const int32_t *stop_token_ids;
  int n_stop_token_ids;
  const int32_t *logit_bias_ids; /* [n_logit_bias] token ids */
  const float *logit_bias;       /* [n_logit_bias] added to the logits */
  int n_logit_bias;
  int logprobs;               /* -1 = none; k >= 0 = sampled token's logprob + top k */
  int n;                      /* parallel samples sharing the prompt's blocks; default 1 */
  int priority;               /* lower value = scheduled first (vLLM); default 0 */
  uint64_t client;            /* who asks, for fair share (pl_engine_params.fair_share): equal
                                 keys are one client; 0 (default) is one client too. The
                                 server uses the OpenAI `user` field, else the peer address */
  /* Constrained decoding: GBNF text (llama.cpp's dialect, start rule `root`) that every
   * sample's output must match; NULL = free text. Tokens the grammar does not allow are masked
   * at each step; the sample stops when the grammar is complete and nothing may follow, and
   * end-of-generation tokens are allowed only where it may end. A bad grammar fails add with
   * PL_EINVAL naming the line. Compiled grammars and their token tables are cached by text. */
  const char *grammar;
} pl_sampling_params;

void pl_sampling_params_default(pl_sampling_params *sp);

/* Queue a request. Exactly one of prompt (UTF-8 text, tokenized with BOS as the model says)
 * or prompt_ids must be given. Copies everything it needs. Errors (request not queued):
 * PL_EINVAL (bad parameter; message names it), PL_ETOOLONG (prompt + max_tokens cannot fit
 * max_model_len), PL_EBUSY (waiting queue full). */
int pl_engine_add_request(pl_engine *e, const char *prompt, const int32_t *prompt_ids,
                          int n_prompt_ids, const pl_sampling_params *sp, uint64_t *out_id);

/* Abort a request (queued or running): frees its blocks now; a final event with
 * PL_FINISH_ABORT follows. Returns PL_ENOTFOUND for an unknown/finished id. */
int pl_engine_abort(pl_engine *e, uint64_t id);

/* Run one step: schedule, forward, sample, emit events. Returns the number of tokens
 * processed (0 when idle) or a negative status for an engine-wide failure. */
int pl_engine_step(pl_engine *e);
int pl_engine_has_unfinished(const pl_engine *e);

typedef enum {
  PL_FINISH_NONE = 0, PL_FINISH_STOP, PL_FINISH_LENGTH, PL_FINISH_ABORT, PL_FINISH_ERROR
} pl_finish_reason;

typedef struct pl_top_logprob { int32_t token; float logprob; } pl_top_logprob;

/* One output event: new text/tokens of one sample (index < n) of one request. All pointers
 * are owned by the engine and valid until the next call of pl_engine_step/poll/abort. */
typedef struct pl_output_event {
  uint64_t request_id;
  int index;                   /* which of the n samples */
  const char *text;            /* new UTF-8 text (never a broken sequence; may be empty) */
  size_t text_len;
  const int32_t *tokens;       /* new token ids */
  int n_tokens;
  const float *logprobs;       /* [n_tokens] sampled tokens' logprobs, or NULL */
  const pl_top_logprob *top;   /* [n_tokens][n_top] or NULL */
  int n_top;
  pl_finish_reason finish;     /* != NONE on the sample's last event */
  const char *error;           /* message when finish == PL_FINISH_ERROR */
  int prompt_tokens;           /* usage, filled on every event */
  int completion_tokens;       /* tokens generated so far by this sample */
  int cached_tokens;           /* prompt tokens served from the prefix cache */
} pl_output_event;

/* Take the next pending event; returns 1 and fills *ev, or 0 when none is pending. */
int pl_engine_poll(pl_engine *e, pl_output_event *ev);

typedef struct pl_engine_stats {
  int num_running, num_waiting;
  int64_t blocks_total, blocks_used, blocks_cached_free;
  double kv_usage;                 /* used / total, [0,1] */
  int64_t prefix_queries_tokens, prefix_hits_tokens;
  int64_t num_preemptions, cow_copies, evictions;
  int64_t prompt_tokens_total, generation_tokens_total;
  int block_size, max_model_len;
  int64_t kv_tokens_capacity;
  int64_t kv_live_tokens;          /* tokens whose K/V running requests hold (a shared block's
                                      * tokens once per request holding it) */
  int64_t kv_allocated_tokens;     /* blocks_used * block_size (incl. static reservations) */
  int peak_running;                /* most requests running at once so far */
  int64_t peak_blocks_used;
  int64_t kv_bytes_per_token;      /* K and V of every layer, in the backend's KV dtype */
  /* speculative decoding (vLLM's spec_decode metrics) */
  int64_t spec_num_drafts;          /* verifications: (request, step) pairs with proposals */
  int64_t spec_num_draft_tokens;    /* proposals verified */
  int64_t spec_num_accepted_tokens; /* of which accepted */
  int64_t spec_accepted_per_pos[PL_SPEC_MAX_TOKENS]; /* accepted at proposal position i */
  int64_t spec_draft_blocks_used;   /* draft model KV blocks in use */
  int spec_num_positions;           /* proposals per step (K); 0 = speculation off */
  int64_t prompt_tokens_computed;   /* prompt tokens run through the model (cache hits not) */
} pl_engine_stats;
void pl_engine_get_stats(const pl_engine *e, pl_engine_stats *st);

/* The device the engine computes on, as one line ("NVIDIA H100 80GB HBM3, 79.1 GiB, sm_90" or
 * "CPU, 2 threads, avx512 kernels"), and the KV dtype's name ("bf16"). Owned by the engine. */
const char *pl_engine_device(const pl_engine *e);
/* The memory bandwidth of that device in GB/s, measured now (about a second; not during
 * steps): the roofline that bandwidth-bound decode is quoted against. 0 on failure. */
double pl_engine_mem_bandwidth(pl_engine *e);
const char *pl_engine_kv_dtype(const pl_engine *e);

/* ======================================================================================
 * Engine thread: a thread-safe front end (src/engine/engine_thread.c). One thread owns the
 * engine and runs the step loop; any number of other threads submit jobs, read their events
 * and cancel them. The server's HTTP threads use it; so can any program that embeds the engine.
 *
 *   caller threads                      engine thread
 *   --------------                      -------------
 *   pl_job_create (copies the input)
 *   pl_engine_thread_submit ── add ──▶  pl_engine_add_request per prompt (or the waiting room)
 *   pl_job_wait / poll(pl_job_fd)  ◀──  pl_engine_step while there is work; each event is
 *   pl_job_take (events, oldest first)    copied into its job's buffer, the job's fd signalled
 *   pl_engine_thread_cancel ─ abort ─▶  pl_engine_abort (blocks freed now)
 *
 * A job is one submission: n_prompts engine requests, each with sp->n samples; its events are
 * numbered by choice = prompt_index * n + sample index. Every choice of an accepted job ends
 * with exactly one final event (finish != PL_FINISH_NONE), whatever happens: completion,
 * cancel (PL_FINISH_ABORT), an engine failure (PL_FINISH_ERROR) or shutdown (ABORT); only when
 * memory runs out copying it is an event lost (the job still comes to all_done).
 *
 * Ownership: the engine thread does not own the engine; stop it (pl_engine_thread_stop) before
 * pl_engine_destroy, and while it runs no other thread may call the pl_engine_* functions above
 * except pl_engine_device, pl_engine_kv_dtype (immutable). A job is reference counted: the
 * creator holds one reference, the engine thread one from submit until its last final event
 * is queued; the job is freed when the last reference goes. Taken events belong to the job.
 *
 * Thread safety: every pl_engine_thread_* and pl_job_* function may be called from any thread,
 * concurrently, except pl_engine_thread_free (once, when no other thread uses the handle) and
 * pl_job_take (one reader per job at a time: a take ends the previous batch).
 * Nothing busy-waits: the engine thread sleeps while it has neither commands nor work.
 * ==================================================================================== */
typedef struct pl_engine_thread pl_engine_thread;
typedef struct pl_job pl_job;

/* Observers the engine thread calls (on itself, one at a time, never under a lock that another
 * pl_engine_thread_* call takes); each may be NULL. They must not call into the engine thread's
 * API or block for long: the step loop waits for them. The server feeds its metrics and its
 * KV map with them. */
typedef struct pl_engine_thread_hooks {
  void *user; /* passed to each */
  /* At the top of every loop iteration, between steps: the only place where another party may
   * read the engine (e.g. pl_engine_get_stats). Returns in how many milliseconds it wants
   * another call although the engine is idle, or -1 for none. */
  int (*tick)(void *user, pl_engine *e);
  /* After every step or batch of commands, before the events are handed out: the engine's
   * counters and the submissions not yet in the engine's queue (they wait too). */
  void (*stats)(void *user, const pl_engine_stats *st, int n_queued);
  /* Latencies, seconds: a prompt's first token since submit; the gap before each later token
   * of a sample (once per token); a prompt's end since submit, with its last finish reason. */
  void (*first_token)(void *user, double s);
  void (*token_gap)(void *user, double s);
  void (*finished)(void *user, pl_finish_reason why, double s);
  /* A job was aborted because its events were not taken for stall_timeout_s. */
  void (*stalled)(void *user);
} pl_engine_thread_hooks;

typedef struct pl_engine_thread_params {
  int max_pending;        /* submissions not yet taken by the engine thread, beyond which
                             submit fails with PL_EBUSY (queue_timeout_s == 0 only); 0 = 1024 */
  double queue_timeout_s; /* > 0: a job whose first prompt finds the engine's waiting queue
                             full (pl_engine_params.max_waiting) waits in the engine thread's
                             waiting room, in the engine's order (fair share or arrival), up
                             to this long before it is rejected with PL_EBUSY. 0: at once.
                             A later prompt of a batch that finds the queue full rejects the
                             whole job (PL_EBUSY) */
  double stall_timeout_s; /* > 0: abort a job whose oldest untaken event is older than this
                             (a consumer that stopped reading must not hold KV blocks); 0 =
                             never */
  pl_engine_thread_hooks hooks;
} pl_engine_thread_params;

void pl_engine_thread_params_default(pl_engine_thread_params *p); /* all 0: no hooks */

/* Start the engine thread over e (which it does not own; the caller stops using e directly).
 * p NULL: the defaults. Returns once the thread runs (and called the stats hook once).
 * PL_ENOMEM, PL_EINTERNAL (no thread). */
int pl_engine_thread_start(pl_engine *e, const pl_engine_thread_params *p,
                           pl_engine_thread **out);
/* Drain: refuse new submissions (PL_EBUSY) and wait until every submitted job has all its final
 * events, at most timeout_ms (< 0: no limit) or until *force (may be NULL) becomes non-zero,
 * e.g. from a signal handler. Returns the number of jobs still running. */
int pl_engine_thread_drain(pl_engine_thread *t, int timeout_ms, volatile int *force);
/* Stop: abort everything still in flight (every live choice gets a final PL_FINISH_ABORT
 * event, so waiters wake) and join the engine thread. Afterwards submit fails with PL_EBUSY
 * and cancel does nothing, so other threads may still hold t and their jobs; the engine is
 * the caller's again. Idempotent; NULL ok. */
void pl_engine_thread_stop(pl_engine_thread *t);
/* Stop if needed, then free. No other thread may use t any more (jobs may outlive it). */
void pl_engine_thread_free(pl_engine_thread *t);
/* 1 while steps succeed; 0 after an engine-wide failure (which fails every job in flight
 * with PL_FINISH_ERROR) until a step succeeds again. */
int pl_engine_thread_healthy(pl_engine_thread *t);

typedef struct pl_job_params {
  int n_prompts;                      /* >= 1 */
  /* exactly one of: */
  const char *const *prompts;         /* [n_prompts] UTF-8 text, tokenized by the engine
                                         thread as pl_engine_add_request does */
  const int32_t *const *prompt_ids;   /* [n_prompts] token ids, with prompt_lens */
  const int *prompt_lens;             /* [n_prompts] */
  const int *max_tokens;              /* [n_prompts] sp->max_tokens per prompt, or NULL */
  const pl_sampling_params *sp;       /* deep-copied; sp->n samples per prompt */
} pl_job_params;

/* Copy everything into a new job (one reference, the caller's). PL_EINVAL, PL_ENOMEM, PL_EIO
 * (no file descriptor for pl_job_fd). */
int pl_job_create(const pl_job_params *p, pl_job **out);
void pl_job_retain(pl_job *j);  /* another reference (e.g. a response that outlives its handler) */
/* Drop one reference; NULL ok. A running job goes on (the engine thread holds its own
 * reference until the end): cancel it first if nobody will read it. */
void pl_job_release(pl_job *j);

/* Queue the job for the engine thread (once per job). PL_EBUSY, message set: draining or
 * stopped, or max_pending reached; the job is then not submitted. The engine thread's answer
 * comes later (pl_job_submit_state). */
int pl_engine_thread_submit(pl_engine_thread *t, pl_job *j);
/* Abort the job's requests (their blocks are freed at once; each live choice gets a final
 * PL_FINISH_ABORT event). Idempotent; safe before submit (the engine thread then rejects it),
 * after the end, and after stop. t may be NULL (marks the job cancelled only). */
void pl_engine_thread_cancel(pl_engine_thread *t, pl_job *j);

enum { PL_JOB_PENDING = 0, PL_JOB_ACCEPTED = 1, PL_JOB_REJECTED = -1 };
/* Whether the engine took the job: PENDING until the engine thread answered. On REJECTED,
 * *status is a PL_E* code of pl_engine_add_request (PL_EINVAL, PL_ETOOLONG, PL_EBUSY:
 * queue full or shutting down, PL_ENOMEM, PL_ESTATE: cancelled before it ran) and msg (may be
 * NULL) the engine's message; no tokens follow (the prompts of a batch added before the one
 * refused end with PL_FINISH_ABORT events). status may be NULL. */
int pl_job_submit_state(pl_job *j, int *status, char *msg, size_t msg_cap);

/* A copy of one pl_output_event, in the job's own buffers (see pl_job_take). */
typedef struct pl_job_event {
  struct pl_job_event *next;
  int choice;                 /* prompt_index * n + sample index */
  int prompt_index;
  char *text;                 /* NUL-terminated, never NULL */
  size_t text_len;
  int32_t *tokens;            /* [n_tokens] */
  int n_tokens;
  float *logprobs;            /* [n_tokens] or NULL */
  pl_top_logprob *top;        /* [n_tokens][n_top] or NULL */
  int n_top;
  pl_finish_reason finish;
  const char *error;          /* when finish == PL_FINISH_ERROR, never NULL then */
  int prompt_tokens, completion_tokens, cached_tokens;
} pl_job_event;
/* The events queued since the last take, oldest first, linked by next (NULL when none). They
 * stay in the job's two buffers, which the engine thread and the reader swap at each take (no
 * allocation per event once they have grown): valid until the next pl_job_take on this job or
 * the release of its last reference; nothing to free. One reader at a time. *all_done (may be
 * NULL) is set to 1 once no more events will come: every choice had its final event, or the
 * job was rejected. */
pl_job_event *pl_job_take(pl_job *j, int *all_done);

/* The job's wake-up fd: readable once the engine thread signalled the job (its verdict, events,
 * the end) since it was last drained. A waiter drains it (reads until EAGAIN) before it looks at
 * the job, so no later signal is lost; pl_job_wait does both. For poll/epoll; never closed
 * while a reference is held. */
int pl_job_fd(const pl_job *j);
/* Wait until the job was signalled since the last wait or drain, at most timeout_ms (< 0: no
 * limit); then drain its fd. Returns 1 when signalled, 0 on timeout. Look at the job
 * (pl_job_submit_state, pl_job_take) after it returns; a signal that came before is kept. */
int pl_job_wait(pl_job *j, int timeout_ms);
/* 1 once the engine thread aborted the job for stall_timeout_s (its consumer stopped reading). */
int pl_job_stalled(pl_job *j);

#ifdef __cplusplus
}
#endif
#endif
