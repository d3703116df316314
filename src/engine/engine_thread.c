/* The engine thread: its command queue, its waiting room and the per-job output queues
 * (the contract is in include/pagellm.h, "Engine thread").
 *
 * Locks: thread->mu guards the command queue, the accepting/stopping flags and n_live_jobs;
 * job->mu guards a job's submit state, its event queue and its cancelled/engine_done flags.
 * The only nesting is job->mu taken under thread->mu (submit); never the other way.
 * The id -> (job, prompt) map, the waiting room and the engine are touched only by the engine
 * thread, and the hooks are called only there, with no lock held. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#ifdef __linux__
#include <sys/eventfd.h>
#endif

#include "engine/engine_access.h"
#include "pagellm.h"
#include "util/alloc.h"
#include "util/array.h"
#include "util/error.h"
#include "util/log.h"

enum { CMD_ADD, CMD_ABORT };

typedef struct ev_arena {
  char *mem;
  size_t len, cap; /* bytes of records, bytes allocated */
} ev_arena;

typedef struct cmd {
  struct cmd *next;
  int type;
  pl_job *job;
} cmd;

struct pl_job {
  atomic_int refs;
  pthread_mutex_t mu;
  int wake_rd, wake_wr; /* eventfd (the same fd twice) or a pipe */

  /* inputs: set by create, read by the engine thread (which frees each prompt once added) */
  int n_prompts, n, n_choices;
  char **texts;   /* [n_prompts] text prompts (freed once added), or NULL: ids */
  int32_t **ids;  /* [n_prompts] token prompts (freed once added), or NULL: texts */
  int *lens, *max_tokens;
  pl_sampling_params sp; /* deep copy; pointers below */
  char **stop;
  int32_t *stop_ids, *bias_ids;
  float *bias;
  char *grammar; /* GBNF text of a structured-output constraint, or NULL */

  /* shared, under mu */
  int submit_state, submit_status;
  char submit_msg[512];
  ev_arena arena[2]; /* events: the engine thread appends to arena[w]; pl_job_take hands it
                       out whole and flips w, so the reader's batch stays put until its next
                       take, and neither side allocates once both have grown */
  int w;
  double t_head;  /* when the oldest undelivered event was queued (stall detection) */
  int cancelled, submitted, engine_done, stalled;

  /* engine thread only */
  uint64_t *engine_id;            /* [n_prompts] */
  int *prompt_live;               /* [n_prompts] samples not finished yet */
  pl_finish_reason *last_reason;  /* [n_prompts] */
  double *t_first;                /* [n_prompts] first token time, 0 = none yet */
  double *t_last;                 /* [n_choices] last token time */
  unsigned char *choice_done;     /* [n_choices] */
  int live_prompts;
  double t_arrival; /* set by pl_engine_thread_submit before the ADD is queued */
  pl_job *room_next; /* in the waiting room (engine thread only) */
  uint64_t room_tag;     /* its place there under fair share (room_push) */

  cmd add_cmd, abort_cmd; /* intrusive: a job is in the queue at most once per kind */
};

typedef struct slot {
  uint64_t id;
  pl_job *job;
  int prompt;
  int used;
} slot;

struct pl_engine_thread {
  pl_engine *e;
  pl_engine_thread_hooks hooks;
  pthread_t thr;
  pthread_mutex_t mu;
  pthread_cond_t cv;      /* commands or stop for the engine thread */
  pthread_cond_t idle_cv; /* n_live_jobs reached 0 (drain), or the thread started */
  cmd *head, *tail;
  int n_pending_adds, max_pending;
  int accepting, stopping, joined;
  int started; /* the thread published its first stats (start waits for it) */
  int n_live_jobs;
  double stall_s; /* abort a job whose oldest event waited this long (0 = never) */
  atomic_int healthy;
  int routed_abort;       /* engine thread: route() aborted a request (stats went stale) */
  /* engine thread only: the waiting room, adds that found the engine's queue full, in
   * arrival order (fair share: in tag order); each waits there at most queue_timeout seconds
   * for room */
  pl_job *room_head, *room_tail;
  int n_room;
  int room_fair;       /* the engine's fair_share */
  uint64_t room_vtime; /* the tag of the last request the room passed to the engine */
  double queue_timeout;
  /* engine thread only: open addressing, linear probing, backward-shift deletion */
  slot *map;
  size_t map_cap, map_n;
};

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* ---- wake-up fd -------------------------------------------------------------------------- */

static int wake_open(pl_job *j) {
#ifdef __linux__
  int fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (fd < 0)
    return pl_fail(PL_EIO, "eventfd: %s", strerror(errno));
  j->wake_rd = j->wake_wr = fd;
#else
  int p[2];
  if (pipe(p) < 0)
    return pl_fail(PL_EIO, "pipe: %s", strerror(errno));
  for (int i = 0; i < 2; i++) {
    fcntl(p[i], F_SETFL, fcntl(p[i], F_GETFL) | O_NONBLOCK);
    fcntl(p[i], F_SETFD, FD_CLOEXEC);
  }
  j->wake_rd = p[0];
  j->wake_wr = p[1];
#endif
  return 0;
}

static void wake(pl_job *j) {
#ifdef __linux__
  uint64_t one = 1;
  ssize_t r = write(j->wake_wr, &one, sizeof one);
#else
  char one = 1;
  ssize_t r = write(j->wake_wr, &one, 1); /* a full pipe is already readable: fine */
#endif
  (void)r;
}

/* ---- events ---------------------------------------------------------------------------- */

static size_t align8(size_t n) { return (n + 7) & ~(size_t)7; }

/* One queued event in a job's arena: the public event, then its arrays and strings at these
 * offsets from the record's start (0: none). The pointers are set when the batch is taken:
 * until then the arena may move as it grows. */
typedef struct ev_rec {
  size_t size; /* the whole record, 8-aligned */
  size_t off_tokens, off_lp, off_top, off_text, off_err;
  pl_job_event ev;
} ev_rec;

/* Append a copy of ev to j's write arena (j->mu held). PL_ENOMEM. */
static int arena_put(pl_job *j, const pl_output_event *ev, int choice, int prompt) {
  size_t n_tok = ev->n_tokens > 0 ? (size_t)ev->n_tokens : 0;
  size_t n_top = ev->top && ev->n_top > 0 && n_tok ? (size_t)ev->n_top : 0;
  size_t err_len = ev->finish == PL_FINISH_ERROR && ev->error ? strlen(ev->error) + 1 : 0;
  size_t off_tokens = align8(sizeof(ev_rec));
  size_t off_lp = align8(off_tokens + n_tok * sizeof(int32_t));
  size_t off_top = align8(off_lp + (ev->logprobs ? n_tok * sizeof(float) : 0));
  size_t off_text = off_top + n_tok * n_top * sizeof(pl_top_logprob);
  size_t off_err = off_text + ev->text_len + 1;
  size_t size = align8(off_err + err_len);
  ev_arena *a = &j->arena[j->w];
  if (pl_array_grow(&a->mem, &a->cap, a->len + size, 1, 1024) < 0)
    return PL_ENOMEM;
  char *b = a->mem + a->len;
  ev_rec *r = (ev_rec *)b;
  *r = (ev_rec){.size = size, .off_tokens = off_tokens,
                .off_lp = ev->logprobs && n_tok ? off_lp : 0, .off_top = n_top ? off_top : 0,
                .off_text = off_text, .off_err = err_len ? off_err : 0};
  pl_job_event *c = &r->ev;
  c->choice = choice;
  c->prompt_index = prompt;
  c->n_tokens = (int)n_tok;
  c->n_top = (int)n_top;
  c->text_len = ev->text_len;
  c->finish = ev->finish;
  c->prompt_tokens = ev->prompt_tokens;
  c->completion_tokens = ev->completion_tokens;
  c->cached_tokens = ev->cached_tokens;
  if (n_tok)
    memcpy(b + off_tokens, ev->tokens, n_tok * sizeof(int32_t));
  if (r->off_lp)
    memcpy(b + off_lp, ev->logprobs, n_tok * sizeof(float));
  if (n_top)
    memcpy(b + off_top, ev->top, n_tok * n_top * sizeof(pl_top_logprob));
  if (ev->text_len)
    memcpy(b + off_text, ev->text, ev->text_len);
  b[off_text + ev->text_len] = '\0';
  if (err_len)
    memcpy(b + off_err, ev->error, err_len);
  a->len += size;
  return 0;
}

/* The records of a taken arena as the public list: pointers set now, the arena no longer
 * moves (j->mu held). */
static pl_job_event *arena_list(ev_arena *a) {
  pl_job_event *first = NULL, **link = &first;
  for (size_t o = 0; o < a->len;) {
    char *b = a->mem + o;
    ev_rec *r = (ev_rec *)b;
    pl_job_event *e = &r->ev;
    e->tokens = (int32_t *)(b + r->off_tokens);
    e->logprobs = r->off_lp ? (float *)(b + r->off_lp) : NULL;
    e->top = r->off_top ? (pl_top_logprob *)(b + r->off_top) : NULL;
    e->text = b + r->off_text;
    e->error = r->off_err ? b + r->off_err : e->finish == PL_FINISH_ERROR ? "engine error" : NULL;
    e->next = NULL;
    *link = e;
    link = &e->next;
    o += r->size;
  }
  return first;
}

/* ---- jobs ------------------------------------------------------------------------------- */

static void job_free(pl_job *j) {
  if (j->wake_rd >= 0)
    close(j->wake_rd);
  if (j->wake_wr >= 0 && j->wake_wr != j->wake_rd)
    close(j->wake_wr);
  pl_free(j->arena[0].mem);
  pl_free(j->arena[1].mem);
  for (int p = 0; p < j->n_prompts; p++) {
    if (j->ids)
      pl_free(j->ids[p]);
    if (j->texts)
      pl_free(j->texts[p]);
  }
  pl_free(j->ids);
  pl_free(j->texts);
  pl_free(j->lens);
  pl_free(j->max_tokens);
  if (j->stop)
    for (int i = 0; i < j->sp.n_stop; i++)
      pl_free(j->stop[i]);
  pl_free(j->stop);
  pl_free(j->stop_ids);
  pl_free(j->bias_ids);
  pl_free(j->bias);
  pl_free(j->grammar);
  pl_free(j->engine_id);
  pl_free(j->prompt_live);
  pl_free(j->last_reason);
  pl_free(j->t_first);
  pl_free(j->t_last);
  pl_free(j->choice_done);
  pthread_mutex_destroy(&j->mu);
  pl_free(j);
}

static void job_ref(pl_job *j) { atomic_fetch_add(&j->refs, 1); }

/* Append c to the engine thread's command list (t->mu held). */
static void push_cmd(pl_engine_thread *t, cmd *c) {
  c->next = NULL;
  if (t->tail)
    t->tail->next = c;
  else
    t->head = c;
  t->tail = c;
}

static void job_unref(pl_job *j) {
  if (atomic_fetch_sub(&j->refs, 1) == 1)
    job_free(j);
}

void pl_job_retain(pl_job *j) { job_ref(j); }

void pl_job_release(pl_job *j) {
  if (j)
    job_unref(j);
}

int pl_job_create(const pl_job_params *p, pl_job **out) {
  *out = NULL;
  if (p->n_prompts <= 0 || !p->sp || p->sp->n <= 0)
    return pl_fail(PL_EINVAL, "job: no prompts");
  int text = p->prompts != NULL;
  if (text == (p->prompt_ids != NULL) || (!text && !p->prompt_lens))
    return pl_fail(PL_EINVAL, "job: give either prompts or prompt_ids with prompt_lens");
  pl_job *j = pl_calloc(1, sizeof *j);
  if (!j)
    return pl_fail(PL_ENOMEM, "out of memory");
  atomic_init(&j->refs, 1);
  pthread_mutex_init(&j->mu, NULL);
  j->wake_rd = j->wake_wr = -1;
  j->n_prompts = p->n_prompts;
  j->n = p->sp->n;
  j->n_choices = j->n_prompts * j->n;
  j->sp = *p->sp;
  size_t np = (size_t)j->n_prompts, nc = (size_t)j->n_choices;
  if (text)
    j->texts = pl_calloc(np, sizeof *j->texts);
  else
    j->ids = pl_calloc(np, sizeof *j->ids);
  j->lens = pl_calloc(np, sizeof *j->lens);
  j->max_tokens = pl_calloc(np, sizeof *j->max_tokens);
  j->engine_id = pl_calloc(np, sizeof *j->engine_id);
  j->prompt_live = pl_calloc(np, sizeof *j->prompt_live);
  j->last_reason = pl_calloc(np, sizeof *j->last_reason);
  j->t_first = pl_calloc(np, sizeof *j->t_first);
  j->t_last = pl_calloc(nc, sizeof *j->t_last);
  j->choice_done = pl_calloc(nc, 1);
  int ok = (j->ids || j->texts) && j->lens && j->max_tokens && j->engine_id && j->prompt_live &&
           j->last_reason && j->t_first && j->t_last && j->choice_done;
  for (size_t i = 0; ok && i < np; i++) {
    j->max_tokens[i] = p->max_tokens ? p->max_tokens[i] : p->sp->max_tokens;
    if (text) {
      ok = (j->texts[i] = pl_strdup(p->prompts[i] ? p->prompts[i] : "")) != NULL;
      continue;
    }
    j->lens[i] = p->prompt_lens[i];
    j->ids[i] = pl_malloc((size_t)p->prompt_lens[i] * sizeof(int32_t) + 1);
    ok = j->ids[i] != NULL;
    if (ok && p->prompt_lens[i] > 0)
      memcpy(j->ids[i], p->prompt_ids[i], (size_t)p->prompt_lens[i] * sizeof(int32_t));
  }
  /* deep copy of the sampling parameters' arrays */
  const pl_sampling_params *sp = p->sp;
  if (ok && sp->n_stop > 0) {
    j->stop = pl_calloc((size_t)sp->n_stop, sizeof *j->stop);
    ok = j->stop != NULL;
    for (int i = 0; ok && i < sp->n_stop; i++)
      ok = (j->stop[i] = pl_strdup(sp->stop[i])) != NULL;
    j->sp.stop = (const char *const *)j->stop;
  }
  if (ok && sp->n_stop_token_ids > 0) {
    j->stop_ids = pl_malloc((size_t)sp->n_stop_token_ids * sizeof(int32_t));
    ok = j->stop_ids != NULL;
    if (ok)
      memcpy(j->stop_ids, sp->stop_token_ids, (size_t)sp->n_stop_token_ids * sizeof(int32_t));
    j->sp.stop_token_ids = j->stop_ids;
  }
  if (ok && sp->n_logit_bias > 0) {
    j->bias_ids = pl_malloc((size_t)sp->n_logit_bias * sizeof(int32_t));
    j->bias = pl_malloc((size_t)sp->n_logit_bias * sizeof(float));
    ok = j->bias_ids && j->bias;
    if (ok) {
      memcpy(j->bias_ids, sp->logit_bias_ids, (size_t)sp->n_logit_bias * sizeof(int32_t));
      memcpy(j->bias, sp->logit_bias, (size_t)sp->n_logit_bias * sizeof(float));
    }
    j->sp.logit_bias_ids = j->bias_ids;
    j->sp.logit_bias = j->bias;
  }
  if (ok && sp->grammar) {
    ok = (j->grammar = pl_strdup(sp->grammar)) != NULL;
    j->sp.grammar = j->grammar;
  }
  if (!ok) {
    j->sp.n_stop = j->stop ? j->sp.n_stop : 0;
    job_free(j);
    return pl_fail(PL_ENOMEM, "out of memory");
  }
  int rc = wake_open(j);
  if (rc < 0) {
    job_free(j);
    return rc;
  }
  j->add_cmd.type = CMD_ADD;
  j->add_cmd.job = j;
  j->abort_cmd.type = CMD_ABORT;
  j->abort_cmd.job = j;
  *out = j;
  return 0;
}

int pl_job_fd(const pl_job *j) { return j->wake_rd; }

int pl_job_stalled(pl_job *j) {
  pthread_mutex_lock(&j->mu);
  int st = j->stalled;
  pthread_mutex_unlock(&j->mu);
  return st;
}

int pl_job_submit_state(pl_job *j, int *status, char *msg, size_t msg_cap) {
  pthread_mutex_lock(&j->mu);
  int s = j->submit_state;
  if (status)
    *status = j->submit_status;
  if (msg && msg_cap)
    snprintf(msg, msg_cap, "%s", j->submit_msg);
  pthread_mutex_unlock(&j->mu);
  return s;
}

pl_job_event *pl_job_take(pl_job *j, int *all_done) {
  pthread_mutex_lock(&j->mu);
  ev_arena *a = &j->arena[j->w];
  j->w ^= 1;
  j->arena[j->w].len = 0; /* the reader's previous batch: over with this take */
  pl_job_event *ev = arena_list(a);
  if (all_done)
    *all_done = j->engine_done;
  pthread_mutex_unlock(&j->mu);
  return ev;
}

/* ---- the id map (engine thread) ------------------------------------------------------- */

static size_t map_hash(uint64_t id, size_t cap) {
  id ^= id >> 33;
  id *= 0xff51afd7ed558ccdULL;
  id ^= id >> 33;
  return (size_t)id & (cap - 1);
}

static slot *map_get(pl_engine_thread *t, uint64_t id) {
  if (!t->map_cap)
    return NULL;
  for (size_t i = map_hash(id, t->map_cap);; i = (i + 1) & (t->map_cap - 1)) {
    if (!t->map[i].used)
      return NULL;
    if (t->map[i].id == id)
      return &t->map[i];
  }
}

static int map_put(pl_engine_thread *t, uint64_t id, pl_job *j, int prompt) {
  if ((t->map_n + 1) * 2 > t->map_cap) {
    size_t cap = t->map_cap ? t->map_cap * 2 : 256;
    slot *m = pl_calloc(cap, sizeof *m);
    if (!m)
      return PL_ENOMEM;
    for (size_t k = 0; k < t->map_cap; k++) {
      if (!t->map[k].used)
        continue;
      size_t i = map_hash(t->map[k].id, cap);
      while (m[i].used)
        i = (i + 1) & (cap - 1);
      m[i] = t->map[k];
    }
    pl_free(t->map);
    t->map = m;
    t->map_cap = cap;
  }
  size_t i = map_hash(id, t->map_cap);
  while (t->map[i].used)
    i = (i + 1) & (t->map_cap - 1);
  t->map[i] = (slot){id, j, prompt, 1};
  t->map_n++;
  return 0;
}

static void map_del(pl_engine_thread *t, slot *s) {
  size_t mask = t->map_cap - 1, i = (size_t)(s - t->map);
  t->map[i].used = 0;
  t->map_n--;
  /* backward shift: pull later entries of the probe run into the hole */
  for (size_t k = (i + 1) & mask; t->map[k].used; k = (k + 1) & mask) {
    size_t home = map_hash(t->map[k].id, t->map_cap);
    int movable = (i <= k) ? (home <= i || home > k) : (home <= i && home > k);
    if (movable) {
      t->map[i] = t->map[k];
      t->map[k].used = 0;
      i = k;
    }
  }
}

/* ---- engine-thread side of jobs --------------------------------------------------------- */

/* The engine side lets go of a job: no more events will come. */
static void engine_release(pl_engine_thread *t, pl_job *j) {
  pthread_mutex_lock(&j->mu);
  j->engine_done = 1;
  pthread_mutex_unlock(&j->mu);
  wake(j);
  pthread_mutex_lock(&t->mu);
  if (--t->n_live_jobs == 0)
    pthread_cond_broadcast(&t->idle_cv);
  pthread_mutex_unlock(&t->mu);
  job_unref(j);
}

/* Queue a copy of ev for the job's reader: PL_ENOMEM, or 0; then *stall is 1 when the job's
 * oldest undelivered event has waited longer than stall_s: the reader stopped taking them (a
 * server's client that stopped reading: its socket's send queue is full, so the connection
 * thread takes no events). */
static int push_event(pl_job *j, const pl_output_event *ev, int choice, int prompt,
                      double stall_s, int *stall) {
  double now = now_s();
  pthread_mutex_lock(&j->mu);
  int empty = j->arena[j->w].len == 0;
  int rc = arena_put(j, ev, choice, prompt);
  if (rc == 0 && empty)
    j->t_head = now;
  int st = rc == 0 && stall_s > 0 && !j->stalled && now - j->t_head > stall_s;
  if (st)
    j->stalled = 1;
  pthread_mutex_unlock(&j->mu);
  if (rc == 0)
    wake(j);
  if (stall)
    *stall = st;
  return rc;
}

static void prompt_finished(pl_engine_thread *t, slot *s, double now) {
  pl_job *j = s->job;
  int p = s->prompt;
  if (t->hooks.finished)
    t->hooks.finished(t->hooks.user, j->last_reason[p], now - j->t_arrival);
  map_del(t, s);
  if (--j->live_prompts == 0)
    engine_release(t, j);
}

/* Final events for every sample of a prompt that has none yet (aborts and failures the
 * engine did not report per sample); finishes the prompt. */
static void finish_rest(pl_engine_thread *t, slot *s, pl_finish_reason why, const char *msg) {
  pl_job *j = s->job;
  int p = s->prompt;
  for (int k = 0; k < j->n; k++) {
    int c = p * j->n + k;
    if (j->choice_done[c])
      continue;
    j->choice_done[c] = 1;
    pl_output_event ev = {.request_id = s->id, .index = k, .text = "", .finish = why,
                          .error = msg};
    push_event(j, &ev, c, p, 0, NULL); /* out of memory: lost; all_done still comes */
  }
  j->prompt_live[p] = 0;
  j->last_reason[p] = why;
  prompt_finished(t, s, now_s());
}

static void route(pl_engine_thread *t, const pl_output_event *ev) {
  slot *s = map_get(t, ev->request_id);
  if (!s)
    return; /* a request we already finished (e.g. after a synthetic failure) */
  pl_job *j = s->job;
  int p = s->prompt;
  if (ev->index < 0 || ev->index >= j->n) {
    PL_WARN("engine event for request %llu has sample index %d (n = %d); ignored",
            (unsigned long long)ev->request_id, ev->index, j->n);
    return;
  }
  int c = p * j->n + ev->index;
  if (j->choice_done[c])
    return;
  double now = now_s();
  if (ev->n_tokens > 0) {
    if (j->t_first[p] == 0) {
      j->t_first[p] = now;
      if (t->hooks.first_token)
        t->hooks.first_token(t->hooks.user, now - j->t_arrival);
    }
    if (j->t_last[c] > 0 && t->hooks.token_gap)
      for (int k = 0; k < ev->n_tokens; k++)
        t->hooks.token_gap(t->hooks.user, (now - j->t_last[c]) / ev->n_tokens);
    j->t_last[c] = now;
  }
  int stall = 0;
  if (push_event(j, ev, c, p, t->stall_s, &stall) < 0) {
    /* Cannot deliver: end the whole prompt with an error rather than lose a final event. */
    PL_ERROR("out of memory copying an output event; failing request %llu",
             (unsigned long long)ev->request_id);
    pl_engine_abort(t->e, ev->request_id);
    t->routed_abort = 1;
    finish_rest(t, s, PL_FINISH_ERROR, "out of memory");
    return;
  }
  if (stall && ev->finish == PL_FINISH_NONE) {
    /* Nobody drains this job's output: stop generating for it (aborted, not paused; the
     * reader sees pl_job_stalled, the server closes the connection). The abort events finish
     * it. */
    PL_WARN("request %llu: its output has not been read for %g s; aborting",
            (unsigned long long)ev->request_id, t->stall_s);
    if (t->hooks.stalled)
      t->hooks.stalled(t->hooks.user);
    for (int q = 0; q < j->n_prompts; q++)
      if (j->prompt_live[q])
        pl_engine_abort(t->e, j->engine_id[q]);
    t->routed_abort = 1;
    return;
  }
  if (ev->finish == PL_FINISH_NONE)
    return;
  j->choice_done[c] = 1;
  j->last_reason[p] = ev->finish;
  if (ev->finish == PL_FINISH_ABORT) {
    finish_rest(t, s, PL_FINISH_ABORT, NULL); /* one abort ends every sample */
    return;
  }
  if (--j->prompt_live[p] == 0)
    prompt_finished(t, s, now);
}

static void set_submit(pl_job *j, int state, int status, const char *msg) {
  pthread_mutex_lock(&j->mu);
  j->submit_state = state;
  j->submit_status = status;
  snprintf(j->submit_msg, sizeof j->submit_msg, "%s", msg ? msg : "");
  pthread_mutex_unlock(&j->mu);
  wake(j);
}

/* Hand j to the engine. Returns 1, having done nothing, when the engine's waiting queue has
 * no room for j's first prompt and `may_wait` (the caller parks j in the waiting room);
 * else 0: j was accepted or rejected. */
static int do_add(pl_engine_thread *t, pl_job *j, int stopping, int may_wait) {
  pthread_mutex_lock(&j->mu);
  int cancelled = j->cancelled;
  pthread_mutex_unlock(&j->mu);
  if (stopping || cancelled) {
    set_submit(j, PL_JOB_REJECTED, stopping ? PL_EBUSY : PL_ESTATE,
               stopping ? "the engine is shutting down" : "cancelled before it started");
    engine_release(t, j);
    return 0;
  }
  int rc = 0;
  char msg[512] = "";
  for (int p = 0; p < j->n_prompts; p++) {
    pl_sampling_params sp = j->sp;
    sp.max_tokens = j->max_tokens[p];
    uint64_t id = 0;
    long failures0 = pl_alloc_thread_failures();
    rc = pl_engine_add_request(t->e, j->texts ? j->texts[p] : NULL, j->ids ? j->ids[p] : NULL,
                               j->lens[p], &sp, &id);
    if (rc == PL_EBUSY && p == 0 && may_wait)
      return 1;
    if (rc < 0) {
      /* e.g. the grammar compiler may report a failed allocation as a bad grammar: that
       * would be a 400 for our failure */
      if (pl_alloc_thread_failures() != failures0)
        rc = PL_ENOMEM;
      snprintf(msg, sizeof msg, "%s", rc == PL_ENOMEM ? "out of memory" : pl_last_error());
      break;
    }
    if (map_put(t, id, j, p) < 0) {
      pl_engine_abort(t->e, id);
      rc = PL_ENOMEM;
      snprintf(msg, sizeof msg, "out of memory");
      break;
    }
    j->engine_id[p] = id;
    j->prompt_live[p] = j->n;
    j->live_prompts++;
    if (j->ids) { /* the engine holds its own copy */
      pl_free(j->ids[p]);
      j->ids[p] = NULL;
    } else {
      pl_free(j->texts[p]);
      j->texts[p] = NULL;
    }
  }
  if (rc == 0) {
    set_submit(j, PL_JOB_ACCEPTED, 0, NULL);
    return 0;
  }
  /* Undo the prompts already added; their abort events finish them (and release the job). */
  for (int p = 0; p < j->n_prompts; p++) {
    slot *s = j->prompt_live[p] ? map_get(t, j->engine_id[p]) : NULL;
    if (s && pl_engine_abort(t->e, j->engine_id[p]) < 0)
      finish_rest(t, s, PL_FINISH_ABORT, NULL);
  }
  set_submit(j, PL_JOB_REJECTED, rc, msg);
  if (j->live_prompts == 0)
    engine_release(t, j);
  return 0;
}

/* ---- the waiting room: fair admission when the engine's queue is full -------------------
 * Without it a full queue answers 503 at once, and under a flood of immediate retries the
 * clients that happen to retry just after a slot frees win, over and over, while others
 * starve. In the room a request keeps its place: the room empties in order as the engine's
 * queue makes room, and a request leaves it with a 503 only after queue_timeout.
 * The order is arrival, or with fair share (the default) start-time fair queuing over
 * clients, as the engine's scheduler orders its own queue (core/scheduler.c): a request's tag
 * is the room's virtual time (the tag of the last request it passed on) or one past its
 * client's last tag in the room, whichever is later, and the room is kept in tag order, ties
 * in arrival order. A client with many requests waiting then gets every other turn, not all
 * of them. */

static void room_push(pl_engine_thread *t, pl_job *j) {
  pl_job **pp = &t->room_head, *prev = NULL;
  if (t->room_fair) {
    uint64_t tag = t->room_vtime;
    for (pl_job *k = t->room_head; k; k = k->room_next)
      if (k->sp.client == j->sp.client && k->room_tag >= tag)
        tag = k->room_tag + 1;
    j->room_tag = tag;
    while (*pp && (*pp)->room_tag <= tag) {
      prev = *pp;
      pp = &prev->room_next;
    }
  } else {
    prev = t->room_tail;
    pp = prev ? &prev->room_next : &t->room_head;
  }
  j->room_next = *pp;
  *pp = j;
  if (!j->room_next)
    t->room_tail = j;
  t->n_room++;
}

/* A command's add: behind everyone already waiting, else straight to the engine. */
static void admit(pl_engine_thread *t, pl_job *j, int stopping) {
  int may_wait = t->queue_timeout > 0 && !stopping;
  if ((may_wait && t->room_head) || do_add(t, j, stopping, may_wait))
    room_push(t, j);
}

/* Move waiting requests to the engine while it has room, in the room's order; answer those
 * that waited too long, were cancelled, or meet a shutdown. */
static void room_drain(pl_engine_thread *t, int stopping) {
  double now = now_s();
  pl_job **pp = &t->room_head, *last = NULL;
  int full = 0;
  while (*pp) {
    pl_job *j = *pp;
    int leave = 1;
    pthread_mutex_lock(&j->mu);
    int cancelled = j->cancelled;
    pthread_mutex_unlock(&j->mu);
    if (stopping || cancelled) {
      do_add(t, j, stopping, 0); /* rejects it */
    } else if (now - j->t_arrival >= t->queue_timeout) {
      char msg[160];
      snprintf(msg, sizeof msg, "no room in the queue after waiting %.1f s (--queue-timeout); "
               "retry later", now - j->t_arrival);
      set_submit(j, PL_JOB_REJECTED, PL_EBUSY, msg);
      engine_release(t, j);
    } else if (full || do_add(t, j, 0, 1)) {
      full = 1; /* in order: nobody passes the first */
      leave = 0;
    } else if (j->room_tag > t->room_vtime) {
      t->room_vtime = j->room_tag;
    }
    if (leave) {
      *pp = j->room_next;
      t->n_room--;
    } else {
      last = j;
      pp = &j->room_next;
    }
  }
  t->room_tail = last;
}

static void do_abort(pl_engine_thread *t, pl_job *j) {
  for (int p = 0; p < j->n_prompts; p++) {
    if (!j->prompt_live[p])
      continue;
    slot *s = map_get(t, j->engine_id[p]);
    if (!s)
      continue;
    /* PL_ENOTFOUND: the engine already forgot it without telling us; finish it here. */
    if (pl_engine_abort(t->e, j->engine_id[p]) < 0)
      finish_rest(t, s, PL_FINISH_ABORT, NULL);
  }
}

static slot *first_slot(pl_engine_thread *t) {
  for (size_t i = 0; i < t->map_cap; i++)
    if (t->map[i].used)
      return &t->map[i];
  return NULL;
}

/* Every live request ends with `why` now (engine failure or shutdown). */
static void finish_all(pl_engine_thread *t, pl_finish_reason why, const char *msg) {
  slot *s;
  while ((s = first_slot(t)) != NULL) {
    uint64_t id = s->id;
    finish_rest(t, s, why, msg);
    pl_engine_abort(t->e, id);
  }
  pl_output_event ev;
  while (pl_engine_poll(t->e, &ev)) {
  } /* their abort events: nobody to route them to */
}

static void publish_stats(pl_engine_thread *t) {
  if (!t->hooks.stats)
    return;
  pl_engine_stats st;
  pl_engine_get_stats(t->e, &st);
  pthread_mutex_lock(&t->mu);
  int pending = t->n_pending_adds;
  pthread_mutex_unlock(&t->mu);
  /* the waiting room's requests wait too */
  t->hooks.stats(t->hooks.user, &st, pending + t->n_room);
}

/* Route every queued event. An abort made while routing may free the request's blocks at
 * once (no later step follows when nothing else runs): publish again, or the stats hook
 * (the server's /metrics) would show it running until the next request arrives. */
static void route_all(pl_engine_thread *t) {
  pl_output_event ev;
  while (pl_engine_poll(t->e, &ev))
    route(t, &ev);
  if (t->routed_abort) {
    t->routed_abort = 0;
    while (pl_engine_poll(t->e, &ev))
      route(t, &ev); /* the aborts' own events (already finished here: ignored) */
    publish_stats(t);
  }
}

static void *loop_main(void *arg) {
  pl_engine_thread *t = arg;
  publish_stats(t); /* the first, before start returns: hooks run on this thread only */
  pthread_mutex_lock(&t->mu);
  t->started = 1;
  pthread_cond_broadcast(&t->idle_cv);
  pthread_mutex_unlock(&t->mu);
  for (;;) {
    int busy = pl_engine_has_unfinished(t->e) || t->room_head;
    /* >= 0: wake then, even if idle */
    int tick_ms = t->hooks.tick ? t->hooks.tick(t->hooks.user, t->e) : -1;
    pthread_mutex_lock(&t->mu);
    if (tick_ms >= 0 && !t->head && !t->stopping && !busy) {
      struct timespec ts;
      clock_gettime(CLOCK_REALTIME, &ts);
      ts.tv_nsec += (long)tick_ms * 1000000L;
      ts.tv_sec += ts.tv_nsec / 1000000000L;
      ts.tv_nsec %= 1000000000L;
      pthread_cond_timedwait(&t->cv, &t->mu, &ts);
    }
    while (tick_ms < 0 && !t->head && !t->stopping && !busy)
      pthread_cond_wait(&t->cv, &t->mu);
    cmd *c = t->head;
    t->head = t->tail = NULL;
    t->n_pending_adds = 0;
    int stopping = t->stopping;
    pthread_mutex_unlock(&t->mu);

    room_drain(t, stopping); /* the room goes first: it arrived first */
    while (c) {
      cmd *next = c->next;
      c->next = NULL;
      pl_job *j = c->job;
      if (c->type == CMD_ADD) {
        admit(t, j, stopping);
      } else {
        do_abort(t, j);
        job_unref(j); /* the queued ABORT's reference */
      }
      c = next;
    }
    if (stopping)
      break;

    int stepped = 0;
    if (pl_engine_has_unfinished(t->e)) {
      stepped = 1;
      int rc = pl_engine_step(t->e);
      if (rc < 0) {
        char msg[512];
        snprintf(msg, sizeof msg, "engine failure: %s", pl_last_error());
        PL_ERROR("%s; failing every request in flight", msg);
        atomic_store(&t->healthy, 0);
        route_all(t);
        finish_all(t, PL_FINISH_ERROR, msg);
        publish_stats(t);
      } else {
        atomic_store(&t->healthy, 1);
        publish_stats(t); /* before waking anyone: clients then see up-to-date metrics */
        route_all(t);
        if (rc == 0) {
          /* Unfinished work but no progress (should not happen): back off briefly rather
           * than spin, waking early for new commands. */
          struct timespec ts;
          clock_gettime(CLOCK_REALTIME, &ts);
          ts.tv_nsec += 2000000;
          if (ts.tv_nsec >= 1000000000) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000;
          }
          pthread_mutex_lock(&t->mu);
          if (!t->head && !t->stopping)
            pthread_cond_timedwait(&t->cv, &t->mu, &ts);
          pthread_mutex_unlock(&t->mu);
        }
      }
    }
    if (!stepped) { /* commands only (adds, aborts) */
      publish_stats(t);
      route_all(t);
    }
  }
  /* Shutdown: abort what is left; waiting readers get abort finals. */
  for (size_t i = 0; i < t->map_cap; i++)
    if (t->map[i].used)
      pl_engine_abort(t->e, t->map[i].id);
  publish_stats(t);
  route_all(t);
  finish_all(t, PL_FINISH_ABORT, NULL);
  publish_stats(t);
  return NULL;
}

/* ---- the thread ---------------------------------------------------------------------- */

void pl_engine_thread_params_default(pl_engine_thread_params *p) { memset(p, 0, sizeof *p); }

int pl_engine_thread_start(pl_engine *e, const pl_engine_thread_params *p,
                           pl_engine_thread **out) {
  *out = NULL;
  pl_engine_thread_params def;
  if (!p) {
    pl_engine_thread_params_default(&def);
    p = &def;
  }
  pl_engine_thread *t = pl_calloc(1, sizeof *t);
  if (!t)
    return pl_fail(PL_ENOMEM, "out of memory");
  t->e = e;
  t->hooks = p->hooks;
  t->max_pending = p->max_pending > 0 ? p->max_pending : 1024;
  t->queue_timeout = p->queue_timeout_s > 0 ? p->queue_timeout_s : 0;
  t->stall_s = p->stall_timeout_s > 0 ? p->stall_timeout_s : 0;
  t->room_fair = pl_engine_fair_share(e);
  t->accepting = 1;
  atomic_init(&t->healthy, 1);
  pthread_mutex_init(&t->mu, NULL);
  pthread_cond_init(&t->cv, NULL);
  pthread_cond_init(&t->idle_cv, NULL);
  int rc = pthread_create(&t->thr, NULL, loop_main, t);
  if (rc != 0) {
    pthread_cond_destroy(&t->cv);
    pthread_cond_destroy(&t->idle_cv);
    pthread_mutex_destroy(&t->mu);
    pl_free(t);
    return pl_fail(PL_EINTERNAL, "cannot start the engine thread: %s", strerror(rc));
  }
  pthread_mutex_lock(&t->mu);
  while (!t->started)
    pthread_cond_wait(&t->idle_cv, &t->mu);
  pthread_mutex_unlock(&t->mu);
  *out = t;
  return 0;
}

int pl_engine_thread_submit(pl_engine_thread *t, pl_job *j) {
  pthread_mutex_lock(&t->mu);
  if (!t->accepting || t->stopping) {
    pthread_mutex_unlock(&t->mu);
    return pl_fail(PL_EBUSY, "the engine is shutting down");
  }
  /* with the waiting room on, submissions wait there (the caller bounds how many it makes:
   * the server by its connection and in-flight body limits) */
  if (t->queue_timeout <= 0 && t->n_pending_adds >= t->max_pending) {
    int n = t->n_pending_adds;
    pthread_mutex_unlock(&t->mu);
    return pl_fail(PL_EBUSY, "%d requests are already queued for the engine; retry later", n);
  }
  pthread_mutex_lock(&j->mu);
  int again = j->submitted;
  j->submitted = 1;
  pthread_mutex_unlock(&j->mu);
  if (again) { /* its intrusive command is in use */
    pthread_mutex_unlock(&t->mu);
    return pl_fail(PL_ESTATE, "job submitted twice");
  }
  j->t_arrival = now_s();
  job_ref(j); /* the engine side's reference, dropped by engine_release */
  push_cmd(t, &j->add_cmd);
  t->n_pending_adds++;
  t->n_live_jobs++;
  pthread_cond_signal(&t->cv);
  pthread_mutex_unlock(&t->mu);
  return 0;
}

void pl_engine_thread_cancel(pl_engine_thread *t, pl_job *j) {
  if (!j)
    return;
  pthread_mutex_lock(&j->mu);
  int need = !j->cancelled && j->submitted && !j->engine_done;
  j->cancelled = 1;
  pthread_mutex_unlock(&j->mu);
  if (!need || !t)
    return;
  pthread_mutex_lock(&t->mu);
  if (!t->stopping) { /* a stopping thread aborts everything itself */
    job_ref(j);
    push_cmd(t, &j->abort_cmd);
    pthread_cond_signal(&t->cv);
  }
  pthread_mutex_unlock(&t->mu);
}

int pl_engine_thread_drain(pl_engine_thread *t, int timeout_ms, volatile int *force) {
  pthread_mutex_lock(&t->mu);
  t->accepting = 0;
  struct timespec t0;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  while (t->n_live_jobs > 0 && !(force && *force)) {
    struct timespec now, ts;
    clock_gettime(CLOCK_MONOTONIC, &now);
    double waited = (double)(now.tv_sec - t0.tv_sec) * 1e3 + (now.tv_nsec - t0.tv_nsec) / 1e6;
    if (timeout_ms >= 0 && waited >= timeout_ms)
      break;
    /* short slices so *force (set from a signal thread) is seen promptly */
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_nsec += 100000000;
    if (ts.tv_nsec >= 1000000000) {
      ts.tv_sec++;
      ts.tv_nsec -= 1000000000;
    }
    pthread_cond_timedwait(&t->idle_cv, &t->mu, &ts);
  }
  int left = t->n_live_jobs;
  pthread_mutex_unlock(&t->mu);
  return left;
}

void pl_engine_thread_stop(pl_engine_thread *t) {
  if (!t)
    return;
  pthread_mutex_lock(&t->mu);
  int joined = t->joined;
  t->accepting = 0;
  t->stopping = 1;
  t->joined = 1;
  pthread_cond_signal(&t->cv);
  pthread_mutex_unlock(&t->mu);
  if (!joined)
    pthread_join(t->thr, NULL);
}

void pl_engine_thread_free(pl_engine_thread *t) {
  if (!t)
    return;
  pl_engine_thread_stop(t);
  pl_free(t->map);
  pthread_cond_destroy(&t->cv);
  pthread_cond_destroy(&t->idle_cv);
  pthread_mutex_destroy(&t->mu);
  pl_free(t);
}

int pl_engine_thread_healthy(pl_engine_thread *t) { return atomic_load(&t->healthy); }

/* ---- waiting on a job ------------------------------------------------------------------ */

int pl_job_wait(pl_job *j, int timeout_ms) {
  struct pollfd pfd = {.fd = j->wake_rd, .events = POLLIN};
  int r;
  do
    r = poll(&pfd, 1, timeout_ms < 0 ? -1 : timeout_ms);
  while (r < 0 && errno == EINTR); /* a signal restarts the whole wait: a bound, not exact */
  if (r <= 0)
    return 0;
  uint64_t buf[8];
  while (read(j->wake_rd, buf, sizeof buf) > 0) {
  }
  return 1;
}
