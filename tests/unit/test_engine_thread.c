/* The engine thread (pagellm.h, "Engine thread") used directly, from several threads, on a
 * real trained model (TinyStories 280K):
 *  - jobs submitted from 4 threads at once (one prompt, a batch of prompts with n = 2, a text
 *    prompt), through the waiting room of a small engine queue, stream the same greedy tokens
 *    and text as the engine's synchronous API gives each prompt run alone;
 *  - cancel from another thread than the reader ends every choice with one PL_FINISH_ABORT,
 *    after a prefix of the reference; cancel before submit is a rejection;
 *  - a job nobody reads is aborted by the stall bound; a bad request is rejected alone;
 *  - a long stream costs no allocation per event once the job's event buffers have grown;
 *  - drain waits for every job, stop aborts what runs and wakes its readers; afterwards
 *    submit fails with PL_EBUSY, and the engine is the caller's again (it still gives the
 *    reference output);
 *  - the hooks run on one thread (the engine's) and count every prompt; no KV block, request or
 *    heap byte is left once the jobs are released and the thread freed. */
#include <pthread.h>
#include <string.h>
#include <time.h>

#include "check.h"
#include "pagellm.h"
#include "util/alloc.h"

#define NPROMPT 12
#define MAXOUT 40
#define NTHREAD 4

static const char *model_path(void) { return data_path("models/tinystories-280K.gguf"); }

static pl_engine_params engine_params(void) {
  pl_engine_params ep;
  pl_engine_params_default(&ep);
  ep.model_path = model_path();
  ep.n_threads = 1;
  ep.device = test_device();
  ep.batch_invariant = 1; /* greedy tokens independent of the batch on CUDA too */
  ep.kv_cache_bytes = 16 << 20;
  ep.max_num_seqs = 6;
  ep.max_waiting = 2; /* most submissions pass through the thread's waiting room */
  return ep;
}

/* ---- the reference: the synchronous API, one prompt at a time ----------------------------- */

typedef struct {
  int32_t prompt[64];
  int n_prompt;
  const char *text_prompt; /* instead of prompt[] when set */
  int max_tokens;
  int32_t out[MAXOUT];
  int n_out;
  char text[4096];
  size_t text_len;
  int prompt_tokens;
} ref_req;

static ref_req refs[NPROMPT];
static const char *texts[] = {"Once upon a time", "The little dog", "Lily went to the park"};

static void make_prompts(void) {
  uint64_t rs = 7;
  for (int i = 0; i < NPROMPT; i++) {
    ref_req *r = &refs[i];
    memset(r, 0, sizeof *r);
    if (i < 3) {
      r->text_prompt = texts[i];
    } else {
      r->n_prompt = 4 + (int)(i * 5 % 50);
      r->prompt[0] = 1;
      for (int k = 1; k < r->n_prompt; k++) {
        rs = rs * 6364136223846793005ull + 1442695040888963407ull;
        /* the even ones share a prefix: prefix-cache hits between concurrent jobs */
        r->prompt[k] = (i % 2 == 0 && k < 20) ? (int32_t)(259 + k * 3) : (int32_t)(259 + (rs >> 33) % 253);
      }
    }
    r->max_tokens = 8 + i * 3 % (MAXOUT - 8);
  }
}

static void greedy(pl_sampling_params *sp, int max_tokens) {
  pl_sampling_params_default(sp);
  sp->temperature = 0;
  sp->ignore_eos = 1;
  sp->max_tokens = max_tokens;
}

/* Run refs[i] alone on e; returns 0 when it ran as expected. */
static int run_ref(pl_engine *e, ref_req *r) {
  pl_sampling_params sp;
  greedy(&sp, r->max_tokens);
  uint64_t id;
  int rc = pl_engine_add_request(e, r->text_prompt, r->text_prompt ? NULL : r->prompt,
                                 r->n_prompt, &sp, &id);
  CHECK(rc == 0, "add: %s", pl_last_error());
  if (rc)
    return rc;
  r->n_out = 0;
  r->text_len = 0;
  int finish = 0;
  while (pl_engine_has_unfinished(e)) {
    rc = pl_engine_step(e);
    CHECK(rc >= 0, "step: %s", pl_last_error());
    if (rc < 0)
      return rc;
    pl_output_event ev;
    while (pl_engine_poll(e, &ev)) {
      for (int k = 0; k < ev.n_tokens && r->n_out < MAXOUT; k++)
        r->out[r->n_out++] = ev.tokens[k];
      if (r->text_len + ev.text_len < sizeof r->text) {
        memcpy(r->text + r->text_len, ev.text, ev.text_len);
        r->text_len += ev.text_len;
      }
      r->prompt_tokens = ev.prompt_tokens;
      if (ev.finish)
        finish = ev.finish;
    }
  }
  CHECK_EQ_INT(finish, PL_FINISH_LENGTH);
  CHECK_EQ_INT(r->n_out, r->max_tokens);
  return 0;
}

/* ---- hooks: counted, and the calling thread remembered ------------------------------------ */

typedef struct {
  pthread_mutex_t mu;
  pthread_t thread;
  int have_thread, other_thread; /* a hook ran on a second thread */
  int ticks, stats, first_tokens, finished, stalled;
  int bad; /* a hook got an impossible value (counted here: CHECK is not thread-safe) */
  int finished_by[PL_FINISH_ERROR + 1];
  /* The gate: while armed, the first first_token hook holds the engine thread (in the middle
   * of routing that step's events, before the next step) until the test opens it, so what the
   * test does meanwhile lands at a known point of the stream, however the threads run. */
  pthread_cond_t cv;
  int gate_armed, gate_reached, gate_open;
} hook_log;

static void gate_arm(hook_log *h) {
  pthread_mutex_lock(&h->mu);
  h->gate_armed = 1;
  pthread_mutex_unlock(&h->mu);
}
static void gate_wait_reached(hook_log *h) {
  pthread_mutex_lock(&h->mu);
  while (!h->gate_reached)
    pthread_cond_wait(&h->cv, &h->mu);
  pthread_mutex_unlock(&h->mu);
}
static void gate_open(hook_log *h) {
  pthread_mutex_lock(&h->mu);
  h->gate_open = 1;
  pthread_cond_broadcast(&h->cv);
  pthread_mutex_unlock(&h->mu);
}

static void hook_seen(hook_log *h) {
  pthread_mutex_lock(&h->mu);
  if (!h->have_thread) {
    h->thread = pthread_self();
    h->have_thread = 1;
  } else if (!pthread_equal(h->thread, pthread_self())) {
    h->other_thread = 1;
  }
  pthread_mutex_unlock(&h->mu);
}
static int h_tick(void *u, pl_engine *e) {
  (void)e;
  hook_seen(u);
  ((hook_log *)u)->ticks++;
  return -1;
}
static void h_stats(void *u, const pl_engine_stats *st, int n_queued) {
  (void)st, (void)n_queued;
  hook_seen(u);
  ((hook_log *)u)->stats++;
}
static void h_first(void *u, double s) {
  hook_seen(u);
  hook_log *h = u;
  h->bad += !(s >= 0);
  h->first_tokens++;
  pthread_mutex_lock(&h->mu);
  if (h->gate_armed && !h->gate_reached) {
    h->gate_reached = 1;
    pthread_cond_broadcast(&h->cv);
    while (!h->gate_open)
      pthread_cond_wait(&h->cv, &h->mu);
  }
  pthread_mutex_unlock(&h->mu);
}
static void h_finished(void *u, pl_finish_reason why, double s) {
  hook_seen(u);
  hook_log *h = u;
  h->bad += !(s >= 0 && why > PL_FINISH_NONE && why <= PL_FINISH_ERROR);
  h->finished++;
  if (why >= 0 && why <= PL_FINISH_ERROR)
    h->finished_by[why]++;
}
static void h_stalled(void *u) {
  hook_seen(u);
  ((hook_log *)u)->stalled++;
}

static pl_engine_thread *start(pl_engine *e, hook_log *h, double stall_s) {
  memset(h, 0, sizeof *h);
  pthread_mutex_init(&h->mu, NULL);
  pthread_cond_init(&h->cv, NULL);
  pl_engine_thread_params tp;
  pl_engine_thread_params_default(&tp);
  tp.queue_timeout_s = 600; /* never reached: waiting-room jobs get in as the queue drains */
  tp.stall_timeout_s = stall_s;
  tp.hooks = (pl_engine_thread_hooks){.user = h, .tick = h_tick, .stats = h_stats,
                                      .first_token = h_first, .finished = h_finished,
                                      .stalled = h_stalled};
  pl_engine_thread *t = NULL;
  int rc = pl_engine_thread_start(e, &tp, &t);
  CHECK(rc == 0, "start: %s", pl_last_error());
  return t;
}

/* ---- reading a job ---------------------------------------------------------------------- */

#define MAXCHOICE 8
typedef struct {
  int32_t out[MAXCHOICE][MAXOUT];
  int n_out[MAXCHOICE];
  char text[MAXCHOICE][4096];
  size_t text_len[MAXCHOICE];
  int finish[MAXCHOICE], finals[MAXCHOICE], completion[MAXCHOICE], prompt_tokens[MAXCHOICE];
  int events, bad_choice;
} job_out;

static void collect(job_out *o, pl_job_event *evs) {
  for (pl_job_event *ev = evs; ev; ev = ev->next) {
    o->events++;
    int c = ev->choice;
    if (c < 0 || c >= MAXCHOICE) {
      o->bad_choice = 1;
      continue;
    }
    for (int k = 0; k < ev->n_tokens && o->n_out[c] < MAXOUT; k++)
      o->out[c][o->n_out[c]++] = ev->tokens[k];
    if (o->text_len[c] + ev->text_len < sizeof o->text[c]) {
      memcpy(o->text[c] + o->text_len[c], ev->text, ev->text_len);
      o->text_len[c] += ev->text_len;
    }
    if (ev->finish) {
      o->finish[c] = ev->finish;
      o->finals[c]++;
    }
    o->completion[c] = ev->completion_tokens;
    o->prompt_tokens[c] = ev->prompt_tokens;
  }
}

/* Wait for the engine's verdict; returns it. */
static int verdict(pl_job *j, int *status) {
  int st;
  while ((st = pl_job_submit_state(j, status, NULL, 0)) == PL_JOB_PENDING)
    pl_job_wait(j, 1000);
  return st;
}

/* Read the job's events as they come until the end. */
static void stream_all(pl_job *j, job_out *o) {
  int done = 0;
  while (!done) {
    collect(o, pl_job_take(j, &done));
    if (!done)
      pl_job_wait(j, 1000);
  }
  collect(o, pl_job_take(j, &done)); /* nothing comes after done */
}

static int same_as_ref(const job_out *o, int c, const ref_req *r) {
  return o->n_out[c] == r->n_out && !memcmp(o->out[c], r->out, sizeof(int32_t) * (size_t)r->n_out) &&
         o->text_len[c] == r->text_len && !memcmp(o->text[c], r->text, r->text_len);
}

/* ---- 1. concurrent submitters ------------------------------------------------------------ */

static int batch_retries; /* batch jobs refused (PL_EBUSY) and submitted again */

typedef struct {
  pl_engine_thread *t;
  int id;
  int failures; /* checks failed in this thread, reported by the main thread */
} worker;

static void *worker_main(void *arg) {
  worker *w = arg;
  /* thread w: prompts w, w + 4, w + 8; the first as a job of its own, the other two as one
   * batch job with n = 2 */
  int a = w->id, b = w->id + NTHREAD, c = w->id + 2 * NTHREAD;
  for (int round = 0; round < 2; round++) {
    pl_sampling_params sp;
    greedy(&sp, refs[a].max_tokens);
    pl_job_params jp = {.n_prompts = 1, .sp = &sp};
    const int32_t *ids[2];
    int lens[2], max_tokens[2];
    if (refs[a].text_prompt) {
      jp.prompts = &refs[a].text_prompt;
    } else {
      ids[0] = refs[a].prompt;
      lens[0] = refs[a].n_prompt;
      jp.prompt_ids = ids;
      jp.prompt_lens = lens;
    }
    pl_job *j1 = NULL, *j2 = NULL;
    if (pl_job_create(&jp, &j1) < 0 || pl_engine_thread_submit(w->t, j1) < 0) {
      fprintf(stderr, "FAIL worker %d: job 1: %s\n", w->id, pl_last_error());
      w->failures++;
      pl_job_release(j1);
      return NULL;
    }
    /* the batch: two prompts with their own max_tokens, two greedy samples each */
    greedy(&sp, 0);
    sp.n = 2;
    ids[0] = refs[b].prompt, lens[0] = refs[b].n_prompt, max_tokens[0] = refs[b].max_tokens;
    ids[1] = refs[c].prompt, lens[1] = refs[c].n_prompt, max_tokens[1] = refs[c].max_tokens;
    pl_job_params jp2 = {.n_prompts = 2, .prompt_ids = ids, .prompt_lens = lens,
                         .max_tokens = max_tokens, .sp = &sp};
    /* Only a job's first prompt waits in the waiting room: when a later one finds the engine's
     * queue full the whole job is refused (PL_EBUSY), and a client tries again. */
    int st2 = 0, v2 = PL_JOB_REJECTED;
    for (int tries = 0; tries < 1000 && v2 == PL_JOB_REJECTED; tries++) {
      pl_job_release(j2);
      j2 = NULL;
      if (pl_job_create(&jp2, &j2) < 0 || pl_engine_thread_submit(w->t, j2) < 0) {
        fprintf(stderr, "FAIL worker %d: job 2: %s\n", w->id, pl_last_error());
        w->failures++;
        break;
      }
      v2 = verdict(j2, &st2);
      if (v2 == PL_JOB_REJECTED) {
        int done = 0;
        job_out ab;
        memset(&ab, 0, sizeof ab);
        while (!done) { /* the aborts of the prompts it had added */
          collect(&ab, pl_job_take(j2, &done));
          if (!done)
            pl_job_wait(j2, 1000);
        }
        if (st2 != PL_EBUSY || ab.n_out[0] || ab.n_out[2] || ab.n_out[1] || ab.n_out[3]) {
          fprintf(stderr, "FAIL worker %d: job 2 rejected with %d, tokens %d\n", w->id, st2,
                  ab.n_out[0]);
          w->failures++;
          break;
        }
        __atomic_fetch_add(&batch_retries, 1, __ATOMIC_RELAXED);
        struct timespec ts = {0, 2 * 1000000};
        nanosleep(&ts, NULL);
      }
    }
    if (v2 != PL_JOB_ACCEPTED) {
      pl_engine_thread_cancel(w->t, j1);
      pl_job_release(j1);
      pl_job_release(j2);
      return NULL;
    }
    static job_out o1s[NTHREAD], o2s[NTHREAD];
    job_out *o1 = &o1s[w->id], *o2 = &o2s[w->id];
    memset(o1, 0, sizeof *o1);
    memset(o2, 0, sizeof *o2);
    int st1 = 0;
    int v1 = verdict(j1, &st1);
    stream_all(j2, o2); /* the second first: the first's events wait in its queue */
    stream_all(j1, o1);
    int ok = v1 == PL_JOB_ACCEPTED && v2 == PL_JOB_ACCEPTED && !o1->bad_choice &&
             !o2->bad_choice && o1->finals[0] == 1 && o1->finish[0] == PL_FINISH_LENGTH &&
             same_as_ref(o1, 0, &refs[a]) && o1->prompt_tokens[0] == refs[a].prompt_tokens &&
             o1->completion[0] == refs[a].max_tokens;
    for (int ch = 0; ch < 4; ch++) {
      const ref_req *r = ch < 2 ? &refs[b] : &refs[c];
      ok = ok && o2->finals[ch] == 1 && o2->finish[ch] == PL_FINISH_LENGTH &&
           same_as_ref(o2, ch, r) && o2->prompt_tokens[ch] == r->n_prompt;
    }
    if (!ok) {
      fprintf(stderr, "FAIL worker %d round %d: verdicts %d/%d (%d/%d), job 1 %d tokens (ref "
              "%d) finish %d, job 2 %d/%d/%d/%d tokens (ref %d, %d)\n", w->id, round, v1, v2,
              st1, st2, o1->n_out[0], refs[a].n_out, o1->finish[0], o2->n_out[0],
              o2->n_out[1], o2->n_out[2], o2->n_out[3], refs[b].n_out, refs[c].n_out);
      w->failures++;
    }
    pl_job_release(j1);
    pl_job_release(j2);
  }
  return NULL;
}

static void concurrent_jobs(pl_engine *e) {
  hook_log h;
  pl_engine_thread *t = start(e, &h, 0);
  if (!t)
    return;
  worker w[NTHREAD];
  pthread_t th[NTHREAD];
  for (int i = 0; i < NTHREAD; i++) {
    w[i] = (worker){.t = t, .id = i};
    CHECK(pthread_create(&th[i], NULL, worker_main, &w[i]) == 0);
  }
  for (int i = 0; i < NTHREAD; i++) {
    pthread_join(th[i], NULL);
    CHECK(w[i].failures == 0, "worker %d", i);
  }
  CHECK_EQ_INT(pl_engine_thread_drain(t, 10000, NULL), 0); /* every job over */
  pl_engine_thread_free(t);
  /* every prompt of 2 rounds x 4 threads x (1 + 2) finished, each after its first token; the
   * first prompt of a refused batch was aborted before it ran */
  CHECK_EQ_INT(h.finished_by[PL_FINISH_LENGTH], 2 * NTHREAD * 3);
  CHECK_EQ_INT(h.first_tokens, 2 * NTHREAD * 3);
  CHECK(h.finished_by[PL_FINISH_ABORT] <= batch_retries, "%d aborted, %d retries",
        h.finished_by[PL_FINISH_ABORT], batch_retries);
  CHECK_EQ_INT(h.finished, h.finished_by[PL_FINISH_LENGTH] + h.finished_by[PL_FINISH_ABORT]);
  printf("concurrent jobs: %d batch jobs refused by a full queue and submitted again\n",
         batch_retries);
  CHECK(h.ticks > 0 && h.stats > 0, "ticks %d stats %d", h.ticks, h.stats);
  CHECK(!h.other_thread, "a hook ran on a second thread");
  CHECK_EQ_INT(h.bad, 0);
  pthread_mutex_destroy(&h.mu);
  pthread_cond_destroy(&h.cv);
}

/* ---- 2. cancel, rejection, stall ---------------------------------------------------------- */

typedef struct {
  pl_engine_thread *t;
  pl_job *j;
} canceller;

static void *cancel_main(void *arg) {
  canceller *c = arg;
  pl_engine_thread_cancel(c->t, c->j);
  pl_engine_thread_cancel(c->t, c->j); /* idempotent */
  return NULL;
}

/* a long greedy job over refs[i]'s prompt, n samples */
static pl_job *long_job(int i, int n, int max_tokens) {
  pl_sampling_params sp;
  greedy(&sp, max_tokens);
  sp.n = n;
  const int32_t *ids[1] = {refs[i].prompt};
  int lens[1] = {refs[i].n_prompt};
  pl_job_params jp = {.n_prompts = 1, .prompt_ids = ids, .prompt_lens = lens, .sp = &sp};
  pl_job *j = NULL;
  int rc = pl_job_create(&jp, &j);
  CHECK(rc == 0, "job: %s", pl_last_error());
  return j;
}

static void cancel_reject_stall(pl_engine *e, int max_len) {
  hook_log h;
  pl_engine_thread *t = start(e, &h, 0);
  if (!t)
    return;
  int long_tokens = max_len - refs[5].n_prompt;

  /* cancel from another thread while the engine thread is held at the job's first token:
   * the abort is taken before the next step, so each sample has exactly its first token */
  gate_arm(&h);
  pl_job *j = long_job(5, 2, long_tokens);
  CHECK_EQ_INT(pl_engine_thread_submit(t, j), 0);
  CHECK_EQ_INT(pl_engine_thread_submit(t, j), PL_ESTATE); /* once per job */
  gate_wait_reached(&h);
  canceller cc = {t, j};
  pthread_t th;
  CHECK(pthread_create(&th, NULL, cancel_main, &cc) == 0);
  pthread_join(th, NULL);
  gate_open(&h);
  job_out o;
  memset(&o, 0, sizeof o);
  stream_all(j, &o);
  for (int c = 0; c < 2; c++) {
    CHECK_EQ_INT(o.finals[c], 1);
    CHECK_EQ_INT(o.finish[c], PL_FINISH_ABORT);
    CHECK_EQ_INT(o.n_out[c], 1);
  }
  /* what came before the cancel is the reference's start (greedy: refs[5] is its prefix) */
  for (int c = 0; c < 2; c++) {
    int n = o.n_out[c] < refs[5].n_out ? o.n_out[c] : refs[5].n_out;
    CHECK(!memcmp(o.out[c], refs[5].out, sizeof(int32_t) * (size_t)n), "choice %d", c);
  }
  pl_engine_thread_cancel(t, j); /* after the end: nothing */
  pl_job_release(j);

  /* cancelled before submit: the engine thread rejects it, no events */
  j = long_job(6, 1, 4);
  pl_engine_thread_cancel(t, j);
  CHECK_EQ_INT(pl_engine_thread_submit(t, j), 0);
  int status = 0;
  CHECK_EQ_INT(verdict(j, &status), PL_JOB_REJECTED);
  CHECK_EQ_INT(status, PL_ESTATE);
  memset(&o, 0, sizeof o);
  stream_all(j, &o);
  CHECK_EQ_INT(o.events, 0);
  pl_job_release(j);

  /* a bad request is rejected with the engine's status and message */
  pl_sampling_params sp;
  greedy(&sp, max_len + 1);
  const int32_t *ids[1] = {refs[6].prompt};
  int lens[1] = {refs[6].n_prompt};
  pl_job_params jp = {.n_prompts = 1, .prompt_ids = ids, .prompt_lens = lens, .sp = &sp};
  CHECK_EQ_INT(pl_job_create(&jp, &j), 0);
  CHECK_EQ_INT(pl_engine_thread_submit(t, j), 0);
  char msg[256];
  status = 0;
  while (pl_job_submit_state(j, &status, msg, sizeof msg) == PL_JOB_PENDING)
    pl_job_wait(j, 1000);
  CHECK_EQ_INT(status, PL_ETOOLONG);
  CHECK(msg[0] != 0, "no message");
  pl_job_release(j);
  pl_job_params none = {.n_prompts = 1, .sp = &sp}; /* neither text nor ids */
  CHECK_EQ_INT(pl_job_create(&none, &j), PL_EINVAL);
  CHECK_EQ_INT(pl_engine_thread_drain(t, 10000, NULL), 0);
  pl_engine_thread_free(t);
  CHECK_EQ_INT(h.finished_by[PL_FINISH_ABORT], 1);
  pthread_mutex_destroy(&h.mu);
  pthread_cond_destroy(&h.cv);

  /* nobody reads: the stall bound aborts the job (1 ms: 4 x 217 tokens take far longer) */
  t = start(e, &h, 0.001);
  if (!t)
    return;
  j = long_job(7, 4, max_len - refs[7].n_prompt);
  CHECK_EQ_INT(pl_engine_thread_submit(t, j), 0);
  struct timespec ts = {0, 20 * 1000000};
  for (int i = 0; i < 1500 && !pl_job_stalled(j); i++) /* at most 30 s */
    nanosleep(&ts, NULL);
  CHECK(pl_job_stalled(j), "not stalled");
  memset(&o, 0, sizeof o);
  stream_all(j, &o);
  for (int c = 0; c < 4; c++)
    CHECK(o.finals[c] == 1 && o.finish[c] == PL_FINISH_ABORT, "choice %d: %d finals, finish %d",
          c, o.finals[c], o.finish[c]);
  pl_job_release(j);
  pl_engine_thread_free(t);
  CHECK_EQ_INT(h.stalled, 1);
  pthread_mutex_destroy(&h.mu);
  pthread_cond_destroy(&h.cv);
}

/* ---- 3. no allocation per event ---------------------------------------------------------- */

/* A long decode read as it streams: once the job's two event buffers have grown, neither the
 * engine thread nor the reader allocates per event (they would once per event with a list of
 * copies). Counted between the 20th token and 20 before the end. */
static void steady_no_alloc(pl_engine *e, int max_len) {
  hook_log h;
  pl_engine_thread *t = start(e, &h, 0);
  if (!t)
    return;
  int max_tokens = max_len - refs[9].n_prompt;
  pl_job *j = long_job(9, 1, max_tokens);
  CHECK_EQ_INT(pl_engine_thread_submit(t, j), 0);
  job_out o;
  memset(&o, 0, sizeof o);
  int done = 0, events = 0;
  long a0 = -1, a1 = -1;
  while (!done) {
    pl_job_wait(j, 1000);
    pl_job_event *evs = pl_job_take(j, &done);
    for (pl_job_event *ev = evs; ev; ev = ev->next) {
      if (a0 >= 0 && a1 < 0)
        events++;
      o.n_out[0] += ev->n_tokens;
      o.finish[0] = ev->finish ? ev->finish : o.finish[0];
    }
    if (a0 < 0 && o.n_out[0] >= 20)
      a0 = pl_alloc_count();
    if (a1 < 0 && o.n_out[0] >= max_tokens - 20)
      a1 = pl_alloc_count();
  }
  CHECK_EQ_INT(o.finish[0], PL_FINISH_LENGTH);
  CHECK_EQ_INT(o.n_out[0], max_tokens);
  /* against one allocation per event: only the doublings of the two buffers, as a reader that
   * falls behind (a loaded machine) takes bigger batches; a batch of k events (< 256 bytes
   * each here) needs at most log2(k / 4) doublings of the first 1 KiB of each buffer */
  int doublings = 0;
  while ((1 << doublings) < events)
    doublings++;
  CHECK(events >= 16 && a1 - a0 <= 2 * doublings, "%ld allocations over %d events", a1 - a0,
        events);
  printf("steady stream: %ld allocations over %d events\n", a1 - a0, events);
  pl_job_release(j);
  pl_engine_thread_free(t);
  pthread_mutex_destroy(&h.mu);
  pthread_cond_destroy(&h.cv);
}

/* ---- 4. drain and stop -------------------------------------------------------------------- */

static void *stop_main(void *t) {
  pl_engine_thread_stop(t);
  return NULL;
}

static void drain_and_stop(pl_engine *e, int max_len) {
  hook_log h;
  pl_engine_thread *t = start(e, &h, 0);
  if (!t)
    return;
  /* drain: jobs submitted before it all finish; none are taken after */
  pl_job *jobs[6];
  for (int i = 0; i < 6; i++) {
    jobs[i] = long_job(3 + i, 1, refs[3 + i].max_tokens);
    CHECK_EQ_INT(pl_engine_thread_submit(t, jobs[i]), 0);
  }
  CHECK_EQ_INT(pl_engine_thread_drain(t, 60000, NULL), 0);
  for (int i = 0; i < 6; i++) {
    job_out o;
    memset(&o, 0, sizeof o);
    int done = 0;
    collect(&o, pl_job_take(jobs[i], &done));
    CHECK(done && o.finish[0] == PL_FINISH_LENGTH && same_as_ref(&o, 0, &refs[3 + i]),
          "drained job %d: done %d finish %d, %d tokens", i, done, o.finish[0], o.n_out[0]);
    pl_job_release(jobs[i]);
  }
  pl_job *late = long_job(3, 1, 4);
  CHECK_EQ_INT(pl_engine_thread_submit(t, late), PL_EBUSY);
  pl_job_release(late);
  pl_engine_thread_free(t);
  pthread_mutex_destroy(&h.mu);
  pthread_cond_destroy(&h.cv);

  /* stop with work in flight: readers blocked in pl_job_wait wake with final aborts */
  t = start(e, &h, 0);
  if (!t)
    return;
  gate_arm(&h); /* the stop comes while the engine thread is held at the first token */
  for (int i = 0; i < 6; i++) {
    jobs[i] = long_job(3 + i, 2, max_len - refs[3 + i].n_prompt);
    CHECK_EQ_INT(pl_engine_thread_submit(t, jobs[i]), 0);
  }
  int status;
  CHECK_EQ_INT(verdict(jobs[0], &status), PL_JOB_ACCEPTED);
  gate_wait_reached(&h);
  pthread_t stopper;
  CHECK(pthread_create(&stopper, NULL, stop_main, t) == 0);
  /* submit answers PL_EBUSY once the stop began (PL_ESTATE before: jobs[0] is submitted) */
  struct timespec ms = {0, 1000000};
  while (pl_engine_thread_submit(t, jobs[0]) != PL_EBUSY)
    nanosleep(&ms, NULL);
  gate_open(&h);
  pthread_join(stopper, NULL);
  pl_engine_thread_stop(t); /* idempotent */
  for (int i = 0; i < 6; i++) {
    job_out o;
    memset(&o, 0, sizeof o);
    int st = verdict(jobs[i], &status);
    stream_all(jobs[i], &o);
    if (st == PL_JOB_REJECTED) { /* still in the waiting room or the queue at the stop */
      CHECK_EQ_INT(status, PL_EBUSY);
      CHECK_EQ_INT(o.events, 0);
    } else {
      for (int c = 0; c < 2; c++)
        CHECK(o.finals[c] == 1 && o.finish[c] == PL_FINISH_ABORT, "job %d choice %d: %d finals, "
              "finish %d", i, c, o.finals[c], o.finish[c]);
    }
  }
  late = long_job(3, 1, 4);
  CHECK_EQ_INT(pl_engine_thread_submit(t, late), PL_EBUSY);
  pl_engine_thread_cancel(t, jobs[0]); /* after stop: nothing */
  pl_job_release(late);
  for (int i = 0; i < 6; i++)
    pl_job_release(jobs[i]);
  CHECK(!h.other_thread, "a hook ran on a second thread");
  CHECK_EQ_INT(h.bad, 0);
  pl_engine_thread_free(t);
  pthread_mutex_destroy(&h.mu);
  pthread_cond_destroy(&h.cv);

  /* the engine is ours again, empty, and gives the same output */
  pl_engine_stats st;
  pl_engine_get_stats(e, &st);
  CHECK_EQ_INT(st.num_running, 0);
  CHECK_EQ_INT(st.num_waiting, 0);
  CHECK_EQ_INT(st.blocks_used, 0);
  CHECK(!pl_engine_has_unfinished(e), "requests left in the engine");
  ref_req again = refs[4];
  run_ref(e, &again);
  CHECK(again.n_out == refs[4].n_out && !memcmp(again.out, refs[4].out, sizeof(int32_t) * (size_t)again.n_out),
        "after stop: different output");
}

int main(void) {
  size_t live0 = pl_alloc_live_bytes();
  make_prompts();
  pl_engine_params ep = engine_params();
  pl_engine *e = NULL;
  int rc = pl_engine_create(&ep, &e);
  CHECK(rc == 0, "engine create: %s", pl_last_error());
  if (rc)
    return check_summary("test_engine_thread");
  for (int i = 0; i < NPROMPT; i++)
    run_ref(e, &refs[i]);
  pl_engine_stats st;
  pl_engine_get_stats(e, &st);
  int max_len = st.max_model_len;
  CHECK(max_len > 100, "max_model_len %d", max_len);

  concurrent_jobs(e);
  pl_engine_get_stats(e, &st);
  CHECK_EQ_INT(st.blocks_used, 0);
  cancel_reject_stall(e, max_len);
  pl_engine_get_stats(e, &st);
  CHECK_EQ_INT(st.blocks_used, 0);
  CHECK_EQ_INT(st.num_running, 0);
  steady_no_alloc(e, max_len);
  drain_and_stop(e, max_len);

  pl_engine_destroy(e);
  CHECK_EQ_INT(pl_alloc_live_bytes(), live0);
  return check_summary("test_engine_thread");
}
