/* Prometheus metrics (see metrics.h). Histograms use vLLM's bucket boundaries so dashboards
 * built for vLLM read pagellm unchanged. Counters are monotonic: the engine's own totals are
 * exported as they are (the engine never resets them). */
#include "server/metrics.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "util/alloc.h"

#define MAX_BUCKETS 24

typedef struct histogram {
  const char *name, *help;
  int n_bounds;
  const double *bounds;
  unsigned long long counts[MAX_BUCKETS + 1]; /* per bucket (non-cumulative), last = +Inf */
  double sum;
  unsigned long long count;
} histogram;

static const double ttft_bounds[] = {0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1,
                                     0.25,  0.5,   0.75, 1.0,  2.5,  5.0,  7.5,  10.0,
                                     20.0,  40.0,  80.0, 160.0, 640.0, 2560.0};
static const double itl_bounds[] = {0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2,  0.3,  0.4, 0.5,
                                    0.75, 1.0,   2.5,  5.0,   7.5, 10.0, 20.0, 40.0, 80.0};
static const double e2e_bounds[] = {0.3,  0.5,  0.8,  1.0,  1.5,  2.0,   2.5,   5.0,    10.0, 15.0,
                                    20.0, 30.0, 40.0, 50.0, 60.0, 120.0, 240.0, 480.0, 960.0,
                                    1920.0, 7680.0};

enum { N_REASONS = 4 }; /* stop, length, abort, error */
static const char *const reason_names[N_REASONS] = {"stop", "length", "abort", "error"};

enum { N_STATUS = 6 }; /* 1xx..5xx by class + other */

struct pl_srv_metrics {
  pthread_mutex_t mu;
  histogram ttft, itl, e2e;
  unsigned long long finished[N_REASONS];
  unsigned long long http[N_STATUS];
  unsigned long long stalled; /* requests aborted because the client stopped reading */
  unsigned long long deadline_cuts, evictions; /* the connection guard's (set at render) */
  unsigned long long refused; /* closed unanswered at libmicrohttpd's own limit (set at render) */
  pl_engine_stats st;
  int pending;
  int draining; /* 1 once shutdown began (see pl_srv_metrics_set_draining) */
};

static void hist_init(histogram *h, const char *name, const char *help, const double *b, int n) {
  memset(h, 0, sizeof *h);
  h->name = name;
  h->help = help;
  h->bounds = b;
  h->n_bounds = n;
}

int pl_srv_metrics_create(pl_srv_metrics **out) {
  pl_srv_metrics *m = pl_calloc(1, sizeof *m);
  if (!m)
    return PL_ENOMEM;
  pthread_mutex_init(&m->mu, NULL);
  hist_init(&m->ttft, "time_to_first_token_seconds", "Histogram of time to first token in seconds.",
            ttft_bounds, (int)(sizeof ttft_bounds / sizeof *ttft_bounds));
  hist_init(&m->itl, "inter_token_latency_seconds", "Histogram of inter-token latency in seconds.",
            itl_bounds, (int)(sizeof itl_bounds / sizeof *itl_bounds));
  hist_init(&m->e2e, "e2e_request_latency_seconds",
            "Histogram of end to end request latency in seconds.", e2e_bounds,
            (int)(sizeof e2e_bounds / sizeof *e2e_bounds));
  *out = m;
  return PL_OK;
}

void pl_srv_metrics_destroy(pl_srv_metrics *m) {
  if (!m)
    return;
  pthread_mutex_destroy(&m->mu);
  pl_free(m);
}

static void observe(pl_srv_metrics *m, histogram *h, double v) {
  if (!(v >= 0))
    v = 0;
  int b = 0;
  while (b < h->n_bounds && v > h->bounds[b])
    b++;
  pthread_mutex_lock(&m->mu);
  h->counts[b]++;
  h->sum += v;
  h->count++;
  pthread_mutex_unlock(&m->mu);
}

void pl_srv_metrics_ttft(pl_srv_metrics *m, double s) { observe(m, &m->ttft, s); }
void pl_srv_metrics_itl(pl_srv_metrics *m, double s) { observe(m, &m->itl, s); }
void pl_srv_metrics_e2e(pl_srv_metrics *m, double s) { observe(m, &m->e2e, s); }

void pl_srv_metrics_finished(pl_srv_metrics *m, pl_finish_reason why) {
  int i = why == PL_FINISH_STOP ? 0 : why == PL_FINISH_LENGTH ? 1 : why == PL_FINISH_ABORT ? 2 : 3;
  pthread_mutex_lock(&m->mu);
  m->finished[i]++;
  pthread_mutex_unlock(&m->mu);
}

void pl_srv_metrics_set_engine(pl_srv_metrics *m, const pl_engine_stats *st, int pending) {
  pthread_mutex_lock(&m->mu);
  m->st = *st;
  m->pending = pending;
  pthread_mutex_unlock(&m->mu);
}

void pl_srv_metrics_set_draining(pl_srv_metrics *m, int draining) {
  pthread_mutex_lock(&m->mu);
  m->draining = draining;
  pthread_mutex_unlock(&m->mu);
}

void pl_srv_metrics_http(pl_srv_metrics *m, int status) {
  int c = status >= 100 && status < 600 ? status / 100 - 1 : 5;
  pthread_mutex_lock(&m->mu);
  m->http[c]++;
  pthread_mutex_unlock(&m->mu);
}

void pl_srv_metrics_stalled(pl_srv_metrics *m) {
  pthread_mutex_lock(&m->mu);
  m->stalled++;
  pthread_mutex_unlock(&m->mu);
}

void pl_srv_metrics_set_conn_cuts(pl_srv_metrics *m, unsigned long long deadline,
                                  unsigned long long evicted, unsigned long long refused) {
  pthread_mutex_lock(&m->mu);
  m->deadline_cuts = deadline;
  m->evictions = evicted;
  m->refused = refused;
  pthread_mutex_unlock(&m->mu);
}

/* Label values escape backslash, quote and newline (exposition format rules). */
static int put_label(pl_strbuf *o, const char *v) {
  int rc = 0;
  for (; *v && rc == 0; v++) {
    if (*v == '\\') rc = pl_strbuf_puts(o, "\\\\");
    else if (*v == '"') rc = pl_strbuf_puts(o, "\\\"");
    else if (*v == '\n') rc = pl_strbuf_puts(o, "\\n");
    else rc = pl_strbuf_append(o, v, 1);
  }
  return rc;
}

static int header(pl_strbuf *o, const char *name, const char *type, const char *help) {
  return pl_strbuf_printf(o, "# HELP pagellm:%s %s\n# TYPE pagellm:%s %s\n", name, help, name,
                          type);
}

static int sample(pl_strbuf *o, const char *name, const char *model, const char *extra_label,
                  double v) {
  int rc = pl_strbuf_printf(o, "pagellm:%s{model_name=\"", name);
  rc |= put_label(o, model);
  rc |= pl_strbuf_printf(o, "\"%s%s} %.17g\n", extra_label ? "," : "", extra_label ? extra_label : "",
                         v);
  return rc ? PL_ENOMEM : 0;
}

static int metric(pl_strbuf *o, const char *name, const char *type, const char *help,
                  const char *model, double v) {
  if (header(o, name, type, help) < 0)
    return PL_ENOMEM;
  return sample(o, name, model, NULL, v);
}

static int render_hist(pl_strbuf *o, const histogram *h, const char *model) {
  if (header(o, h->name, "histogram", h->help) < 0)
    return PL_ENOMEM;
  char name[96], le[64];
  snprintf(name, sizeof name, "%s_bucket", h->name);
  unsigned long long cum = 0;
  int rc = 0;
  for (int b = 0; b <= h->n_bounds; b++) {
    cum += h->counts[b];
    if (b < h->n_bounds)
      snprintf(le, sizeof le, "le=\"%g\"", h->bounds[b]);
    else
      snprintf(le, sizeof le, "le=\"+Inf\"");
    rc |= sample(o, name, model, le, (double)cum);
  }
  snprintf(name, sizeof name, "%s_sum", h->name);
  rc |= sample(o, name, model, NULL, h->sum);
  snprintf(name, sizeof name, "%s_count", h->name);
  rc |= sample(o, name, model, NULL, (double)h->count);
  return rc ? PL_ENOMEM : 0;
}

int pl_srv_metrics_render(pl_srv_metrics *m, const char *model, pl_strbuf *o) {
  pthread_mutex_lock(&m->mu);
  const pl_engine_stats *s = &m->st;
  int rc = 0;
  rc |= metric(o, "num_requests_running", "gauge", "Number of requests in model execution batches.",
               model, s->num_running);
  rc |= metric(o, "num_requests_waiting", "gauge", "Number of requests waiting to be processed.",
               model, (double)s->num_waiting + m->pending);
  rc |= metric(o, "kv_cache_usage_perc", "gauge", "KV-cache usage. 1 means 100 percent usage.",
               model, s->kv_usage);
  rc |= metric(o, "kv_blocks_total", "gauge", "KV-cache blocks in the pool (excluding the null "
               "block).", model, (double)s->blocks_total);
  rc |= metric(o, "kv_cache_bytes_per_token", "gauge", "Bytes of K and V per token over all "
               "layers, in the KV cache's dtype (--kv-cache-dtype).", model,
               (double)s->kv_bytes_per_token);
  rc |= metric(o, "kv_blocks_used", "gauge", "KV-cache blocks referenced by live sequences.",
               model, (double)s->blocks_used);
  rc |= metric(o, "kv_blocks_cached", "gauge", "Free KV-cache blocks that still hold a cached "
               "prefix (evictable).", model, (double)s->blocks_cached_free);
  rc |= metric(o, "prefix_cache_queries_total", "counter", "Prefix cache queries, in terms of "
               "number of queried tokens.", model, (double)s->prefix_queries_tokens);
  rc |= metric(o, "prefix_cache_hits_total", "counter", "Prefix cache hits, in terms of number "
               "of cached tokens.", model, (double)s->prefix_hits_tokens);
  /* For balancers and autoscalers: a ready-made ratio (the counters above give rates over any
   * window) and whether this replica is draining (it also answers /health with 503). */
  rc |= metric(o, "prefix_cache_hit_rate", "gauge", "Prefix cache hits / queries (tokens) since "
               "start; 0 before any query.", model,
               s->prefix_queries_tokens > 0
                   ? (double)s->prefix_hits_tokens / (double)s->prefix_queries_tokens
                   : 0.0);
  rc |= metric(o, "server_draining", "gauge", "1 while the server drains on SIGTERM (no new "
               "requests), else 0.", model, m->draining);
  /* Leak checks in soak runs: RSS mixes in the C library's caches, this does not. */
  rc |= metric(o, "heap_live_bytes", "gauge", "Bytes allocated through pagellm's allocator and "
               "not yet freed (model weights and KV pool included; not the HTTP library's).",
               model, (double)pl_alloc_live_bytes());
  rc |= metric(o, "num_preemptions_total", "counter", "Cumulative number of preemptions from "
               "the engine.", model, (double)s->num_preemptions);
  if (s->spec_num_positions > 0) { /* speculative decoding (vLLM v1 names) */
    rc |= metric(o, "spec_decode_num_drafts_total", "counter", "Number of spec decoding "
                 "drafts (verifications).", model, (double)s->spec_num_drafts);
    rc |= metric(o, "spec_decode_num_draft_tokens_total", "counter", "Number of draft tokens.",
                 model, (double)s->spec_num_draft_tokens);
    rc |= metric(o, "spec_decode_num_accepted_tokens_total", "counter", "Number of accepted "
                 "tokens.", model, (double)s->spec_num_accepted_tokens);
    rc |= header(o, "spec_decode_num_accepted_tokens_per_pos_total", "counter",
                 "Accepted tokens per draft position.");
    for (int i = 0; i < s->spec_num_positions; i++) {
      char lab[32];
      snprintf(lab, sizeof lab, "position=\"%d\"", i);
      rc |= sample(o, "spec_decode_num_accepted_tokens_per_pos_total", model, lab,
                   (double)s->spec_accepted_per_pos[i]);
    }
  }
  rc |= metric(o, "kv_cow_copies_total", "counter", "Copy-on-write block copies.", model,
               (double)s->cow_copies);
  rc |= metric(o, "kv_evictions_total", "counter", "Cached blocks evicted for reuse.", model,
               (double)s->evictions);
  rc |= metric(o, "prompt_tokens_total", "counter", "Number of prefill tokens processed.", model,
               (double)s->prompt_tokens_total);
  rc |= metric(o, "generation_tokens_total", "counter", "Number of generation tokens processed.",
               model, (double)s->generation_tokens_total);
  rc |= header(o, "request_success_total", "counter",
               "Count of finished requests by finish reason.");
  for (int i = 0; i < N_REASONS; i++) {
    char l[64];
    snprintf(l, sizeof l, "finished_reason=\"%s\"", reason_names[i]);
    rc |= sample(o, "request_success_total", model, l, (double)m->finished[i]);
  }
  rc |= header(o, "http_responses_total", "counter", "HTTP responses by status class.");
  for (int i = 0; i < N_STATUS; i++) {
    char l[64];
    if (i < 5)
      snprintf(l, sizeof l, "status=\"%dxx\"", i + 1);
    else
      snprintf(l, sizeof l, "status=\"other\"");
    rc |= sample(o, "http_responses_total", model, l, (double)m->http[i]);
  }
  rc |= metric(o, "stalled_client_aborts_total", "counter",
               "Requests aborted because the client stopped reading the output.", model,
               (double)m->stalled);
  rc |= metric(o, "request_deadline_closes_total", "counter", "Connections shut down because "
               "their request head and body missed the request deadline.", model,
               (double)m->deadline_cuts);
  rc |= metric(o, "idle_connection_evictions_total", "counter", "Idle connections (waiting for "
               "a request) shut down to admit a new one at a connection limit (total or per "
               "address).", model, (double)m->evictions);
  rc |= metric(o, "http_connections_refused_total", "counter", "New connections closed "
               "unanswered at libmicrohttpd's own connection limit (beyond the evicting one).",
               model, (double)m->refused);
  rc |= render_hist(o, &m->ttft, model);
  rc |= render_hist(o, &m->itl, model);
  rc |= render_hist(o, &m->e2e, model);
  pthread_mutex_unlock(&m->mu);
  return rc ? PL_ENOMEM : 0;
}
