/* KV map snapshots: engine-thread capture, double-buffered publication, JSON (see kvmap.h). */
#include "server/kvmap.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "engine/engine_access.h"
#include "util/alloc.h"
#include "util/error.h"

#define CAPTURE_EVERY_S 0.1   /* at most 10 captures a second */
#define WATCH_S 10.0          /* a reader keeps busy-time captures on this long */
#define STALE_S 0.2           /* a reader waits for a fresher frame past this age */
#define HISTORY_EVERY_S 1.0
#define HISTORY_CAP 512       /* > 5 minutes at one sample a second, plus idle transitions */
#define MAX_WAITING_LISTED 512

typedef struct hist_sample {
  double t;                 /* Unix time, seconds */
  double kv_usage;          /* [0,1] */
  int running, waiting;
  int64_t blocks_used, blocks_cached_free;
  int64_t prompt_tokens, generation_tokens; /* cumulative */
  int64_t prefix_queries, prefix_hits;      /* cumulative, tokens */
  int64_t preemptions;                      /* cumulative */
} hist_sample;

/* One published (or being-built) picture. */
typedef struct frame {
  pl_kv_snapshot snap;
  pl_engine_stats st;
  hist_sample hist[HISTORY_CAP]; /* oldest first */
  int n_hist;
  double t_wall, t_mono;  /* capture time */
  double capture_us;      /* how long the capture took on the engine thread */
  double capture_us_mean;
  int busy;               /* the engine had work at capture time */
  uint64_t seq;
} frame;

struct pl_srv_kvmap {
  pthread_mutex_t mu;      /* guards front and seq */
  frame frames[2];
  int front;               /* index of the published frame; the other is the engine's */
  uint64_t seq;            /* frames published; 0 = none yet */
  atomic_llong watch_until_ms; /* monotonic ms until which readers want busy-time captures */
  atomic_int front_current;    /* the front frame shows the state now (idle since capture) */
  /* engine thread only */
  int pending;             /* the back frame holds a capture not yet published */
  int dirty;               /* state may have changed since the last capture */
  int last_busy;
  double last_capture, last_hist;
  hist_sample ring[HISTORY_CAP];
  int ring_head, ring_n;
  double capture_us_total;
  int64_t n_captures;
};

static double mono_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static double wall_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

int pl_srv_kvmap_create(pl_srv_kvmap **out) {
  *out = NULL;
  pl_srv_kvmap *m = pl_calloc(1, sizeof *m);
  if (!m)
    return pl_fail(PL_ENOMEM, "out of memory");
  pthread_mutex_init(&m->mu, NULL);
  atomic_init(&m->watch_until_ms, 0);
  atomic_init(&m->front_current, 0);
  m->dirty = 1;
  m->last_capture = -1e9;
  m->last_hist = -1e9;
  *out = m;
  return 0;
}

void pl_srv_kvmap_destroy(pl_srv_kvmap *m) {
  if (!m)
    return;
  pl_kv_snapshot_free(&m->frames[0].snap);
  pl_kv_snapshot_free(&m->frames[1].snap);
  pthread_mutex_destroy(&m->mu);
  pl_free(m);
}

/* ---- engine thread ------------------------------------------------------------------------ */

static void record_history(pl_srv_kvmap *m, const pl_engine_stats *st, double now_wall) {
  hist_sample *h = &m->ring[(m->ring_head + m->ring_n) % HISTORY_CAP];
  if (m->ring_n == HISTORY_CAP)
    m->ring_head = (m->ring_head + 1) % HISTORY_CAP;
  else
    m->ring_n++;
  h->t = now_wall;
  h->kv_usage = st->kv_usage;
  h->running = st->num_running;
  h->waiting = st->num_waiting;
  h->blocks_used = st->blocks_used;
  h->blocks_cached_free = st->blocks_cached_free;
  h->prompt_tokens = st->prompt_tokens_total;
  h->generation_tokens = st->generation_tokens_total;
  h->prefix_queries = st->prefix_queries_tokens;
  h->prefix_hits = st->prefix_hits_tokens;
  h->preemptions = st->num_preemptions;
}

static void try_publish(pl_srv_kvmap *m, int idle) {
  if (pthread_mutex_trylock(&m->mu) != 0)
    return; /* a reader is rendering: publish at a later tick */
  m->front ^= 1;
  m->frames[m->front].seq = ++m->seq;
  m->pending = 0;
  atomic_store(&m->front_current, idle);
  pthread_mutex_unlock(&m->mu);
}

int pl_srv_kvmap_tick(pl_srv_kvmap *m, pl_engine *e) {
  atomic_store(&m->front_current, 0); /* the previous iteration may have changed things */
  double now = mono_s();
  int busy = pl_engine_has_unfinished(e);
  int transition = busy != m->last_busy;
  m->last_busy = busy;
  int hist_due = transition || now - m->last_hist >= HISTORY_EVERY_S;
  int watched = (long long)(now * 1e3) < atomic_load(&m->watch_until_ms);
  int want = m->dirty && (!busy || watched);
  int due = want && now - m->last_capture >= CAPTURE_EVERY_S;
  int wait_ms = -1;
  if (want && !due && !busy)
    wait_ms = (int)((CAPTURE_EVERY_S - (now - m->last_capture)) * 1e3) + 1;
  if (!hist_due && !due) {
    if (m->pending)
      try_publish(m, 0);
    m->dirty = 1;
    return m->pending && !busy ? 1 : wait_ms;
  }
  pl_engine_stats st;
  pl_engine_get_stats(e, &st);
  double wall = wall_s();
  if (hist_due) {
    record_history(m, &st, wall);
    m->last_hist = now;
  }
  if (due) {
    frame *f = &m->frames[m->front ^ 1];
    double t0 = mono_s();
    int rc = pl_engine_kv_snapshot(e, MAX_WAITING_LISTED, &f->snap);
    /* The first capture sizes the other frame too (no reader looks at a frame before the first
     * publication): later captures then reuse both frames' buffers, and nothing allocates in
     * the middle of a request. */
    if (m->n_captures == 0 && rc == 0)
      rc = pl_engine_kv_snapshot(e, MAX_WAITING_LISTED, &m->frames[m->front].snap);
    f->st = st;
    for (int i = 0; i < m->ring_n; i++)
      f->hist[i] = m->ring[(m->ring_head + i) % HISTORY_CAP];
    f->n_hist = m->ring_n;
    double t1 = mono_s();
    f->t_wall = wall;
    f->t_mono = t1;
    f->busy = busy;
    f->capture_us = (t1 - t0) * 1e6;
    m->capture_us_total += f->capture_us;
    m->n_captures++;
    f->capture_us_mean = m->capture_us_total / (double)m->n_captures;
    m->last_capture = now;
    if (rc == 0) {
      m->pending = 1;
      m->dirty = 0;
    }
  }
  if (m->pending)
    try_publish(m, !busy);
  int idle_published = !busy && !m->pending && !m->dirty;
  m->dirty = 1; /* the next iteration runs commands or a step */
  if (idle_published)
    return -1;
  if (m->pending && !busy)
    return 1; /* retry the publication soon */
  return wait_ms;
}

/* ---- JSON --------------------------------------------------------------------------------- */

static int put_i64(pl_strbuf *b, int64_t v) {
  char tmp[24];
  char *p = tmp + sizeof tmp;
  uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
  do {
    *--p = (char)('0' + u % 10);
    u /= 10;
  } while (u);
  if (v < 0)
    *--p = '-';
  return pl_strbuf_append(b, p, (size_t)(tmp + sizeof tmp - p));
}

static const char *phase_of(const pl_kv_snap_req *r) {
  if (!r->running)
    return "waiting";
  return r->num_tokens - r->num_computed_tokens <= 1 ? "decode" : "prefill";
}

static int render_req(pl_strbuf *b, const pl_kv_snapshot *s, const pl_kv_snap_req *r,
                      int tables) {
  int rc = pl_strbuf_printf(
      b,
      "{\"id\":%llu,\"sample\":%d,\"arrival\":%llu,\"phase\":\"%s\",\"prompt_tokens\":%d,"
      "\"tokens\":%d,\"computed_tokens\":%d,\"max_tokens\":%d,\"cached_tokens\":%d,"
      "\"preemptions\":%d,\"priority\":%d,\"num_blocks\":%d",
      (unsigned long long)r->id, r->sample, (unsigned long long)r->arrival, phase_of(r),
      r->num_prompt_tokens, r->num_tokens, r->num_computed_tokens, r->max_tokens,
      r->num_cached_tokens, r->num_preemptions, r->priority, r->n_blocks);
  if (rc < 0)
    return rc;
  if (tables) {
    if (pl_strbuf_puts(b, ",\"blocks\":[") < 0)
      return PL_ENOMEM;
    for (int j = 0; j < r->n_blocks; j++)
      if ((j && pl_strbuf_append(b, ",", 1) < 0) || put_i64(b, s->tables[r->table_off + j]) < 0)
        return PL_ENOMEM;
    if (pl_strbuf_puts(b, "]") < 0)
      return PL_ENOMEM;
  }
  return pl_strbuf_puts(b, "}");
}

#define HIST_INT(name, field)                                                                  \
  do {                                                                                         \
    if (pl_strbuf_puts(b, ",\"" name "\":[") < 0)                                              \
      return PL_ENOMEM;                                                                        \
    for (int i = 0; i < f->n_hist; i++)                                                        \
      if ((i && pl_strbuf_append(b, ",", 1) < 0) || put_i64(b, (int64_t)f->hist[i].field) < 0) \
        return PL_ENOMEM;                                                                      \
    if (pl_strbuf_puts(b, "]") < 0)                                                            \
      return PL_ENOMEM;                                                                        \
  } while (0)

static int render_history(pl_strbuf *b, const frame *f) {
  if (pl_strbuf_puts(b, ",\"history\":{\"t\":[") < 0)
    return PL_ENOMEM;
  for (int i = 0; i < f->n_hist; i++)
    if (pl_strbuf_printf(b, i ? ",%.3f" : "%.3f", f->hist[i].t) < 0)
      return PL_ENOMEM;
  if (pl_strbuf_puts(b, "],\"kv_usage\":[") < 0)
    return PL_ENOMEM;
  for (int i = 0; i < f->n_hist; i++)
    if (pl_strbuf_printf(b, i ? ",%.4f" : "%.4f", f->hist[i].kv_usage) < 0)
      return PL_ENOMEM;
  if (pl_strbuf_puts(b, "]") < 0)
    return PL_ENOMEM;
  HIST_INT("running", running);
  HIST_INT("waiting", waiting);
  HIST_INT("blocks_used", blocks_used);
  HIST_INT("blocks_cached_free", blocks_cached_free);
  HIST_INT("prompt_tokens", prompt_tokens);
  HIST_INT("generation_tokens", generation_tokens);
  HIST_INT("prefix_queries_tokens", prefix_queries);
  HIST_INT("prefix_hits_tokens", prefix_hits);
  HIST_INT("preemptions", preemptions);
  return pl_strbuf_puts(b, "}");
}

static int render_blocks(pl_strbuf *b, const pl_kv_snapshot *s) {
  if (pl_strbuf_puts(b, ",\"blocks\":{\"state\":\"") < 0 ||
      pl_strbuf_append(b, s->state, (size_t)s->num_blocks) < 0 ||
      pl_strbuf_puts(b, "\",\"shared\":[") < 0)
    return PL_ENOMEM;
  int first = 1;
  for (int id = 1; id < s->num_blocks; id++) {
    if (s->ref[id] <= 1)
      continue;
    if (pl_strbuf_puts(b, first ? "[" : ",[") < 0 || put_i64(b, id) < 0 ||
        pl_strbuf_append(b, ",", 1) < 0 || put_i64(b, s->ref[id]) < 0 ||
        pl_strbuf_append(b, "]", 1) < 0)
      return PL_ENOMEM;
    first = 0;
  }
  if (pl_strbuf_puts(b, "],\"lru\":[") < 0)
    return PL_ENOMEM;
  for (int i = 0; i < s->n_lru; i++)
    if ((i && pl_strbuf_append(b, ",", 1) < 0) || put_i64(b, s->lru[i]) < 0)
      return PL_ENOMEM;
  return pl_strbuf_puts(b, "]}");
}

static int render_frame(pl_strbuf *b, const frame *f, const pl_srv_kvmap_opts *o) {
  const pl_kv_snapshot *s = &f->snap;
  const pl_engine_stats *st = &f->st;
  double hit_rate = st->prefix_queries_tokens > 0
                        ? (double)st->prefix_hits_tokens / (double)st->prefix_queries_tokens
                        : 0.0;
  int rc = pl_strbuf_printf(
      b,
      "{\"object\":\"kv_snapshot\",\"seq\":%llu,\"time\":%.3f,\"age_ms\":%.1f,\"busy\":%s,"
      "\"capture_us\":%.1f,\"capture_us_mean\":%.1f,\"block_size\":%d,\"num_blocks\":%d,"
      "\"prefix_caching\":%s,"
      "\"stats\":{\"num_running\":%d,\"num_waiting\":%d,\"blocks_total\":%lld,"
      "\"blocks_used\":%lld,\"blocks_cached_free\":%lld,\"kv_usage\":%.4f,"
      "\"prefix_queries_tokens\":%lld,\"prefix_hits_tokens\":%lld,\"prefix_hit_rate\":%.4f,"
      "\"num_preemptions\":%lld,\"cow_copies\":%lld,\"evictions\":%lld,"
      "\"prompt_tokens_total\":%lld,\"generation_tokens_total\":%lld,\"peak_running\":%d,"
      "\"peak_blocks_used\":%lld,\"max_model_len\":%d}",
      (unsigned long long)f->seq, f->t_wall, (mono_s() - f->t_mono) * 1e3,
      f->busy ? "true" : "false", f->capture_us, f->capture_us_mean, s->block_size,
      s->num_blocks, s->caching ? "true" : "false", st->num_running, st->num_waiting,
      (long long)st->blocks_total, (long long)st->blocks_used, (long long)st->blocks_cached_free,
      st->kv_usage, (long long)st->prefix_queries_tokens, (long long)st->prefix_hits_tokens,
      hit_rate, (long long)st->num_preemptions, (long long)st->cow_copies,
      (long long)st->evictions, (long long)st->prompt_tokens_total,
      (long long)st->generation_tokens_total, st->peak_running, (long long)st->peak_blocks_used,
      st->max_model_len);
  if (rc < 0)
    return rc;
  if (o->blocks && (rc = render_blocks(b, s)) < 0)
    return rc;
  if (pl_strbuf_puts(b, ",\"running\":[") < 0)
    return PL_ENOMEM;
  for (int i = 0; i < s->n_running; i++)
    if ((i && pl_strbuf_append(b, ",", 1) < 0) || render_req(b, s, &s->reqs[i], o->tables) < 0)
      return PL_ENOMEM;
  if (pl_strbuf_puts(b, "],\"waiting\":[") < 0)
    return PL_ENOMEM;
  for (int i = 0; i < s->n_waiting; i++)
    if ((i && pl_strbuf_append(b, ",", 1) < 0) ||
        render_req(b, s, &s->reqs[s->n_running + i], 0) < 0)
      return PL_ENOMEM;
  if (pl_strbuf_printf(b, "],\"waiting_total\":%d", s->waiting_total) < 0)
    return PL_ENOMEM;
  if (o->history && (rc = render_history(b, f)) < 0)
    return rc;
  return pl_strbuf_puts(b, "}");
}

int pl_srv_kvmap_fresh(pl_srv_kvmap *m) {
  double now = mono_s();
  atomic_store(&m->watch_until_ms, (long long)((now + WATCH_S) * 1e3));
  pthread_mutex_lock(&m->mu);
  int fresh = m->seq != 0 && (atomic_load(&m->front_current) ||
                              now - m->frames[m->front].t_mono <= STALE_S);
  pthread_mutex_unlock(&m->mu);
  return fresh;
}

int pl_srv_kvmap_render(pl_srv_kvmap *m, const pl_srv_kvmap_opts *o, pl_strbuf *b) {
  atomic_store(&m->watch_until_ms, (long long)((mono_s() + WATCH_S) * 1e3));
  pthread_mutex_lock(&m->mu);
  int rc;
  if (m->seq == 0)
    rc = pl_fail(PL_ENOTFOUND, "no KV snapshot has been taken yet");
  else if ((rc = render_frame(b, &m->frames[m->front], o)) < 0)
    rc = pl_fail(PL_ENOMEM, "out of memory rendering the KV snapshot");
  pthread_mutex_unlock(&m->mu);
  return rc;
}
