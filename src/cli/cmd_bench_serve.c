/* `pagellm bench serve`: an HTTP load generator for any OpenAI-compatible server (pagellm,
 * llama.cpp's llama-server, vLLM), driven like `vllm bench serve` so numbers compare.
 *
 * Requests come from the named seeded workloads of workload.h; prompts go out as token-id
 * arrays (`/v1/completions`) or as words made from those ids (`/v1/chat/completions`, which
 * takes no ids). Arrivals follow a Poisson process at --request-rate (inf = all at t=0),
 * optionally capped by --max-concurrency. Every request streams (SSE) with
 * stream_options.include_usage, so output token counts come from the server's usage chunk,
 * falling back to counting content chunks.
 *
 * Metric definitions follow vLLM's benchmarks/serve.py:
 *   TTFT  first content chunk - request start (connect included)
 *   ITL   gaps between consecutive content chunks (all requests pooled)
 *   TPOT  (E2E - TTFT) / (output_tokens - 1), per request with > 1 output token
 *   E2E   last content chunk - request start
 *   throughput = completed requests (or tokens of completed requests) / benchmark duration.
 * One difference: a chunk counts as a content chunk only when its text is non-empty (vLLM
 * counts every chunk with choices, which adds a ~0 ms ITL for servers that close with an empty
 * finish chunk).
 *
 * One thread, one poll() loop over non-blocking sockets, one connection per request
 * (Connection: close). The run is bounded: --num-prompts requests, each cut at --timeout. */
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <poll.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/http_client.h"
#include "cli/sse.h"
#include "cli/workload.h"
#include "cli/workload_conv.h"
#include "util/alloc.h"
#include "util/array.h"

static const char USAGE[] =
    "usage: pagellm bench serve [--base-url URL | --host H --port P] [--model NAME] [options]\n"
    "\n"
    "Load-test an OpenAI-compatible server with streaming requests, like `vllm bench serve`.\n"
    "\n"
    "  --base-url URL         server root (default http://127.0.0.1:8000)\n"
    "  --host H, --port P     alternative to --base-url\n"
    "  --endpoint PATH        /v1/completions (default; token-id prompts) or\n"
    "                         /v1/chat/completions (prompts become words; input tokens are then\n"
    "                         counted by the server's usage)\n"
    "  --model NAME           model name to send (default: the first of GET /v1/models)\n"
    "  --api-key KEY          'Authorization: Bearer KEY' (default $OPENAI_API_KEY)\n"
    "  --num-prompts N        requests to send (default 100)\n"
    "  --request-rate R       Poisson arrivals at R requests/s, or inf: all at once (default)\n"
    "  --max-concurrency C    at most C requests in flight (default: no limit)\n"
    "  --workload NAME        sharegpt-like (default), alpaca-like, shared-prefix,\n"
    "                         long-context, fixed; on a chat endpoint also multi-turn\n"
    "                         (each conversation's turns resend its history and the\n"
    "                         actual answers) and many-system-prompts (K long system\n"
    "                         prompts, users spread over them)\n"
    "  --num-system-prompts K many-system-prompts: distinct system prompts (default 8)\n"
    "  --system-prompt-len N  many-system-prompts: their length (default 512, at most\n"
    "                         max_model_len / 2)\n"
    "  --metrics-url URL      a server (or replica behind a balancer) whose /metrics\n"
    "                         prefix-cache counters are read before and after the run;\n"
    "                         repeat for each replica (at most 16); reports the hit rate\n"
    "  --input-len N, --output-len N   fixed workload lengths (default 128 / 128)\n"
    "  --prefix-len N         shared-prefix length (default 512)\n"
    "  --seed S               workload and arrival seed (default 1)\n"
    "  --n-vocab V            prompt token ids are drawn below V (default 512: valid for any\n"
    "                         model with >= 512 tokens; ids from 259 up, past byte tokens)\n"
    "  --bos ID               start every prompt with token ID (default: none)\n"
    "  --max-model-len N      clamp prompt + output to N (default: the server's max_model_len\n"
    "                         from /v1/models, else 2048)\n"
    "  --ignore-eos / --no-ignore-eos   send \"ignore_eos\": true so output lengths are fixed\n"
    "                         (default on; vLLM and llama.cpp accept it)\n"
    "  --timeout SECS         per-request limit (default 600)\n"
    "  --label NAME           name of this engine/config in the JSON (for plots)\n"
    "  --json FILE            write all results, per-request arrays included, to FILE\n"
    "  --progress             progress bar on stderr even when it is not a terminal\n"
    "\n"
    "Exit status: 0 when at least one request completed, 1 when none did, 2 on bad options.\n";

/* ---- options ------------------------------------------------------------------------------ */

typedef struct bs_opts {
  const char *base_url, *host, *model, *endpoint, *api_key, *workload, *json_path, *label;
  int port, n, max_conc, input_len, output_len, prefix_len, n_vocab, bos, max_model_len;
  int ignore_eos, progress;
  double rate, timeout;
  uint64_t seed;
  int n_system, system_len;
  const char *metrics_url[16];
  int n_metrics;
} bs_opts;

static int parse_double(const char *opt, const char *v, double lo, double *out) {
  char *end;
  double d = v ? strtod(v, &end) : 0;
  if (!v || end == v || *end || !(d >= lo) || isnan(d)) {
    fprintf(stderr, "pagellm bench serve: %s expects a number >= %g, got '%s'\n", opt, lo,
            v ? v : "(nothing)");
    return -1;
  }
  *out = d;
  return 0;
}

/* 0 ok, 1 help printed, -1 error */
static int parse_opts(bs_opts *o, int argc, char **argv) {
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    int takes = 1;
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
      fputs(USAGE, stdout);
      return 1;
    } else if (!strcmp(a, "--ignore-eos")) { o->ignore_eos = 1; takes = 0; }
    else if (!strcmp(a, "--no-ignore-eos")) { o->ignore_eos = 0; takes = 0; }
    else if (!strcmp(a, "--progress")) { o->progress = 1; takes = 0; }
    else if (!v) {
      fprintf(stderr, "pagellm bench serve: %s needs a value (or is unknown; see --help)\n", a);
      return -1;
    } else if (!strcmp(a, "--base-url")) o->base_url = v;
    else if (!strcmp(a, "--host")) o->host = v;
    else if (!strcmp(a, "--port")) { if (pl_cli_int(a, v, 1, 65535, &o->port)) return -1; }
    else if (!strcmp(a, "--model")) o->model = v;
    else if (!strcmp(a, "--endpoint")) o->endpoint = v;
    else if (!strcmp(a, "--api-key")) o->api_key = v;
    else if (!strcmp(a, "--workload")) o->workload = v;
    else if (!strcmp(a, "--json")) o->json_path = v;
    else if (!strcmp(a, "--metrics-url")) {
      if (o->n_metrics == 16) {
        fprintf(stderr, "pagellm bench serve: at most 16 --metrics-url\n");
        return -1;
      }
      o->metrics_url[o->n_metrics++] = v;
    }
    else if (!strcmp(a, "--num-system-prompts")) { if (pl_cli_int(a, v, 1, 1 << 20, &o->n_system)) return -1; }
    else if (!strcmp(a, "--system-prompt-len")) { if (pl_cli_int(a, v, 1, 1 << 24, &o->system_len)) return -1; }
    else if (!strcmp(a, "--label")) o->label = v;
    else if (!strcmp(a, "--num-prompts")) { if (pl_cli_int(a, v, 1, 1 << 20, &o->n)) return -1; }
    else if (!strcmp(a, "--max-concurrency")) { if (pl_cli_int(a, v, 1, 1 << 20, &o->max_conc)) return -1; }
    else if (!strcmp(a, "--input-len")) { if (pl_cli_int(a, v, 1, 1 << 24, &o->input_len)) return -1; }
    else if (!strcmp(a, "--output-len")) { if (pl_cli_int(a, v, 1, 1 << 24, &o->output_len)) return -1; }
    else if (!strcmp(a, "--prefix-len")) { if (pl_cli_int(a, v, 1, 1 << 24, &o->prefix_len)) return -1; }
    else if (!strcmp(a, "--n-vocab")) { if (pl_cli_int(a, v, 2, 1 << 30, &o->n_vocab)) return -1; }
    else if (!strcmp(a, "--bos")) { if (pl_cli_int(a, v, 0, 1 << 30, &o->bos)) return -1; }
    else if (!strcmp(a, "--max-model-len")) { if (pl_cli_int(a, v, 4, 1 << 24, &o->max_model_len)) return -1; }
    else if (!strcmp(a, "--seed")) { int s; if (pl_cli_int(a, v, 0, 0x7fffffff, &s)) return -1; o->seed = (uint64_t)s; }
    else if (!strcmp(a, "--timeout")) { if (parse_double(a, v, 0.001, &o->timeout)) return -1; }
    else if (!strcmp(a, "--request-rate")) {
      if (!strcmp(v, "inf") || !strcmp(v, "INF") || !strcmp(v, "infinity")) o->rate = INFINITY;
      else if (parse_double(a, v, 1e-6, &o->rate)) return -1;
    } else {
      fprintf(stderr, "pagellm bench serve: unknown option '%s' (see --help)\n", a);
      return -1;
    }
    i += takes;
  }
  if (!pl_workload_known(o->workload) && !pl_conv_known(o->workload)) {
    fprintf(stderr, "pagellm bench serve: unknown workload '%s' (sharegpt-like, alpaca-like, "
                    "shared-prefix, long-context, fixed, multi-turn, many-system-prompts)\n",
            o->workload);
    return -1;
  }
  if (pl_conv_known(o->workload) && !strstr(o->endpoint, "chat/completions")) {
    fprintf(stderr, "pagellm bench serve: --workload %s needs --endpoint "
                    "/v1/chat/completions\n", o->workload);
    return -1;
  }
  if (o->endpoint[0] != '/') {
    fprintf(stderr, "pagellm bench serve: --endpoint must start with '/'\n");
    return -1;
  }
  return 0;
}

/* ---- clock and RNG ------------------------------------------------------------------------ */

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* splitmix64: arrivals get their own stream so they never change the workload's prompts */
static uint64_t rng_next(uint64_t *s) {
  uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}
static double rng_unif(uint64_t *s) { return ((rng_next(s) >> 11) + 0.5) * (1.0 / 9007199254740992.0); }

/* ---- per-request state -------------------------------------------------------------------- */

enum { RQ_WAITING, RQ_ACTIVE, RQ_DONE };

typedef struct bs_req {
  int state;                 /* RQ_* */
  double t_arrival;          /* scheduled arrival, seconds after the benchmark start */
  double t_start;            /* connect() time, absolute monotonic seconds */
  double t_first, t_last;    /* first / last content chunk, absolute (0 = none yet) */
  double *itl;               /* [n_itl] seconds between consecutive content chunks */
  int n_itl, cap_itl;
  int n_chunks;              /* content chunks received */
  int usage_out, usage_in;   /* from the usage chunk; -1 when none came */
  int done_marker;           /* data: [DONE] seen */
  int finished;              /* a choice with a non-null finish_reason seen */
  int ok;                    /* completed successfully (valid once RQ_DONE) */
  int dep;                   /* request that must finish first (previous turn), or -1 */
  int keep_answer;           /* collect the streamed text (a later turn resends it) */
  char *answer;              /* the streamed content so far (pl_malloc'd) when keep_answer */
  size_t answer_len, answer_cap;
  char *err;                 /* why it failed (malloc'd), or NULL */
  char errbody[2048];        /* body of a non-200 answer (truncated) */
  size_t errbody_len;
  pl_http_conn conn;
  pl_sse sse;
} bs_req;

static void req_fail(bs_req *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void req_fail(bs_req *r, const char *fmt, ...) {
  if (r->err)
    return; /* keep the first reason */
  char buf[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  r->err = strdup(buf);
}

/* The message of an OpenAI-style error object ({"error": {"message": ...}} or "error": "..."),
 * else the raw text, trimmed. */
static void error_message(const char *body, size_t len, char *out, size_t out_len) {
  json_t *j = json_loadb(body, len, 0, NULL);
  json_t *e = j ? json_object_get(j, "error") : NULL;
  const char *msg = NULL;
  if (json_is_string(e))
    msg = json_string_value(e);
  else if (json_is_object(e) && json_is_string(json_object_get(e, "message")))
    msg = json_string_value(json_object_get(e, "message"));
  else if (j && json_is_string(json_object_get(j, "message")))
    msg = json_string_value(json_object_get(j, "message"));
  if (msg)
    snprintf(out, out_len, "%s", msg);
  else {
    size_t n = len < out_len - 1 ? len : out_len - 1;
    memcpy(out, body, n);
    out[n] = 0;
    while (n && (out[n - 1] == '\n' || out[n - 1] == '\r' || out[n - 1] == ' '))
      out[--n] = 0;
  }
  json_decref(j);
}

/* One SSE event of a streaming completion. */
static void on_event(void *ud, const char *data, size_t len) {
  bs_req *r = ud;
  double t = now_s();
  if (len == 6 && !memcmp(data, "[DONE]", 6)) {
    r->done_marker = 1;
    return;
  }
  json_error_t je;
  json_t *j = json_loadb(data, len, 0, &je);
  if (!json_is_object(j)) {
    req_fail(r, "bad JSON in the stream: %.120s", data);
    json_decref(j);
    return;
  }
  json_t *e = json_object_get(j, "error");
  if (e && !json_is_null(e)) {
    char msg[512];
    error_message(data, len, msg, sizeof msg);
    req_fail(r, "error in the stream: %s", msg);
  }
  json_t *choices = json_object_get(j, "choices");
  size_t k;
  json_t *c;
  int content = 0;
  json_array_foreach(choices, k, c) {
    const char *text = json_string_value(json_object_get(c, "text"));
    json_t *delta = json_object_get(c, "delta");
    if (!text && delta) {
      text = json_string_value(json_object_get(delta, "content"));
      if (!text || !*text) /* reasoning models stream their thinking here */
        text = json_string_value(json_object_get(delta, "reasoning_content"));
    }
    if (text && *text) {
      content = 1;
      size_t tl = strlen(text);
      if (r->keep_answer &&
          pl_array_grow(&r->answer, &r->answer_cap, r->answer_len + tl + 1, 1, 256) == 0) {
        memcpy(r->answer + r->answer_len, text, tl + 1);
        r->answer_len += tl;
      }
    }
    json_t *fr = json_object_get(c, "finish_reason");
    if (fr && !json_is_null(fr))
      r->finished = 1;
  }
  if (content) {
    if (r->t_first == 0)
      r->t_first = t;
    else {
      if (pl_array_grow(&r->itl, &r->cap_itl, (size_t)r->n_itl + 1, sizeof *r->itl, 64) == 0)
        r->itl[r->n_itl++] = t - r->t_last;
    }
    r->t_last = t;
    r->n_chunks++;
  }
  json_t *u = json_object_get(j, "usage");
  if (json_is_object(u)) {
    json_t *ct = json_object_get(u, "completion_tokens"), *pt = json_object_get(u, "prompt_tokens");
    if (json_is_integer(ct))
      r->usage_out = (int)json_integer_value(ct);
    if (json_is_integer(pt))
      r->usage_in = (int)json_integer_value(pt);
  }
  json_decref(j);
}

static void on_body(void *ud, const char *p, size_t n) {
  bs_req *r = ud;
  if (r->conn.resp.status == 200) {
    if (pl_sse_feed(&r->sse, p, n))
      req_fail(r, "unreadable event stream (line too long or out of memory)");
  } else {
    size_t room = sizeof r->errbody - 1 - r->errbody_len;
    if (n > room)
      n = room;
    memcpy(r->errbody + r->errbody_len, p, n);
    r->errbody_len += n;
  }
}

/* The exchange ended (how: 1 complete, 2 cut short, -1 error with msg). Decide success. */
static void req_finish(bs_req *r, int how, const char *msg) {
  double t = now_s();
  int status = r->conn.resp.status;
  if (how < 0)
    req_fail(r, "%s", msg);
  else if (status != 200 && status != 0) {
    char m[600];
    error_message(r->errbody, r->errbody_len, m, sizeof m);
    req_fail(r, "HTTP %d: %s", status, m[0] ? m : "(empty body)");
  } else if (status == 0)
    req_fail(r, "the server closed the connection without answering");
  else if (how == 2 && !r->done_marker)
    req_fail(r, "the server closed the connection mid-stream (after %d chunks)", r->n_chunks);
  else if (r->conn.resp.state == PL_HTTP_BODY_CLOSE && !r->done_marker && !r->finished)
    req_fail(r, "the stream ended without [DONE] or a finish_reason (after %d chunks)",
             r->n_chunks);
  else if (r->n_chunks == 0)
    req_fail(r, "the stream carried no content chunk");
  r->ok = r->err == NULL;
  if (!r->t_last)
    r->t_last = t;
  pl_http_conn_close(&r->conn);
  pl_sse_free(&r->sse);
  r->state = RQ_DONE;
}

/* ---- request bodies ----------------------------------------------------------------------- */

/* Chat endpoints take no token ids: one short common word per id keeps the prompt length
 * close to the workload's (the server's usage reports the real count). */
static const char *const WORDS[64] = {
    "the", "cat", "sat", "on", "a", "mat", "and", "dog", "ran", "to", "the", "park", "in",
    "sun", "with", "red", "ball", "big", "tree", "was", "green", "bird", "sang", "song", "of",
    "day", "boy", "girl", "saw", "fish", "blue", "sea", "sky", "hat", "cup", "tea", "box",
    "toy", "car", "bus", "home", "room", "bed", "book", "pen", "map", "old", "new", "hot",
    "cold", "rain", "snow", "wind", "star", "moon", "road", "hill", "lake", "farm", "cow",
    "pig", "hen", "egg", "cake"};

/* The ids as words (malloc'd, NUL-terminated), or NULL when out of memory. */
static char *words_text(const int32_t *ids, int n) {
  size_t cap = (size_t)n * 6 + 1, len = 0;
  char *text = malloc(cap);
  if (!text)
    return NULL;
  for (int i = 0; i < n; i++) {
    const char *wd = WORDS[(uint32_t)ids[i] % 64];
    size_t l = strlen(wd);
    if (i)
      text[len++] = ' ';
    memcpy(text + len, wd, l);
    len += l;
  }
  text[len] = 0;
  return text;
}

/* Append {"role": role, "content": the ids as words, or text}; -1 when out of memory. */
static int add_message(json_t *msgs, const char *role, const int32_t *ids, int n,
                       const char *text) {
  char *words = text ? NULL : words_text(ids, n);
  if (!text && !words)
    return -1;
  int rc = json_array_append_new(msgs, json_pack("{s:s,s:s}", "role", role, "content",
                                                 text ? text : words));
  free(words);
  return rc;
}

/* The fields every request shares; consumes j. */
static char *finish_body(const bs_opts *o, json_t *j, int max_tokens) {
  json_object_set_new(j, "max_tokens", json_integer(max_tokens));
  json_object_set_new(j, "temperature", json_real(0.0));
  json_object_set_new(j, "stream", json_true());
  json_object_set_new(j, "stream_options", json_pack("{s:b}", "include_usage", 1));
  if (o->ignore_eos)
    json_object_set_new(j, "ignore_eos", json_true());
  char *s = json_dumps(j, JSON_COMPACT);
  json_decref(j);
  return s;
}

static char *make_body(const bs_opts *o, const char *model, const pl_wl_req *w, int chat) {
  json_t *j = json_object();
  json_object_set_new(j, "model", json_string(model));
  if (chat) {
    json_t *msgs = json_array();
    if (add_message(msgs, "user", w->prompt, w->n_prompt, NULL) < 0) {
      json_decref(msgs);
      json_decref(j);
      return NULL;
    }
    json_object_set_new(j, "messages", msgs);
  } else {
    json_t *ids = json_array();
    for (int i = 0; i < w->n_prompt; i++)
      json_array_append_new(ids, json_integer(w->prompt[i]));
    json_object_set_new(j, "prompt", ids);
  }
  return finish_body(o, j, w->max_tokens);
}

/* Request i of a conversation workload: its system prompt, every earlier turn of its
 * conversation (user message and the answer the server actually streamed), its own user
 * message. Built when it is sent, since it needs the earlier answers. */
static char *make_conv_body(const bs_opts *o, const char *model, const pl_conv_set *cs,
                            const bs_req *R, int i) {
  const pl_conv_req *q = &cs->req[i];
  int n_prev = 0;
  for (int k = q->dep; k >= 0; k = cs->req[k].dep)
    n_prev++;
  int *prev = malloc(sizeof *prev * (size_t)(n_prev + 1));
  json_t *j = json_object(), *msgs = json_array();
  int rc = prev && j && msgs ? 0 : -1;
  for (int k = q->dep, a = n_prev - 1; rc == 0 && k >= 0; k = cs->req[k].dep)
    prev[a--] = k;
  if (rc == 0 && q->system >= 0)
    rc = add_message(msgs, "system", cs->system[q->system], cs->system_len[q->system], NULL);
  for (int a = 0; rc == 0 && a < n_prev; a++) {
    const pl_conv_req *p = &cs->req[prev[a]];
    rc = add_message(msgs, "user", p->user, p->n_user, NULL);
    if (rc == 0)
      rc = add_message(msgs, "assistant", NULL, 0, R[prev[a]].answer ? R[prev[a]].answer : "");
  }
  if (rc == 0)
    rc = add_message(msgs, "user", q->user, q->n_user, NULL);
  free(prev);
  if (rc < 0) {
    json_decref(msgs);
    json_decref(j);
    return NULL;
  }
  json_object_set_new(j, "model", json_string(model));
  json_object_set_new(j, "messages", msgs);
  return finish_body(o, j, q->max_tokens);
}

/* ---- statistics --------------------------------------------------------------------------- */

typedef struct bs_stat {
  double mean, median, std, p50, p90, p99; /* milliseconds */
  int n;
} bs_stat;

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

/* sweep events: |t| ascending, an end (negative) before a start at the same time */
static int cmp_event(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  if (fabs(x) != fabs(y))
    return fabs(x) < fabs(y) ? -1 : 1;
  return (x < 0) == (y < 0) ? 0 : x < 0 ? -1 : 1;
}

/* numpy.percentile's default (linear interpolation between closest ranks) on sorted v */
static double pct(const double *v, int n, double p) {
  if (n == 0)
    return 0;
  double rank = p / 100.0 * (n - 1);
  int lo = (int)floor(rank), hi = lo + 1 < n ? lo + 1 : lo;
  return v[lo] + (v[hi] - v[lo]) * (rank - lo);
}

/* v in seconds (sorted in place); results in ms */
static bs_stat stat_of(double *v, int n) {
  bs_stat s = {0};
  s.n = n;
  if (!n)
    return s;
  qsort(v, (size_t)n, sizeof *v, cmp_double);
  double sum = 0, sq = 0;
  for (int i = 0; i < n; i++)
    sum += v[i];
  s.mean = sum / n;
  for (int i = 0; i < n; i++)
    sq += (v[i] - s.mean) * (v[i] - s.mean);
  s.std = sqrt(sq / n) * 1e3; /* population std, as numpy's default */
  s.mean *= 1e3;
  s.median = s.p50 = pct(v, n, 50) * 1e3;
  s.p90 = pct(v, n, 90) * 1e3;
  s.p99 = pct(v, n, 99) * 1e3;
  return s;
}

/* ---- the run ------------------------------------------------------------------------------ */

typedef struct bs_run {
  bs_req *reqs;
  int n;
  double t0, duration;
  int completed, failed;
  const char *first_error; /* the first failure's message, in finishing order */
} bs_run;

static void progress(const bs_run *run, int started, double now, int final) {
  int done = run->completed + run->failed, width = 30;
  int fill = run->n ? (int)((long long)done * width / run->n) : width;
  char bar[64];
  for (int i = 0; i < width; i++)
    bar[i] = i < fill ? '#' : '.';
  bar[width] = 0;
  fprintf(stderr, "\r[%s] %d/%d done, %d in flight, %d failed, %.1f s ", bar, done, run->n,
          started - done, run->failed, now - run->t0);
  if (final)
    fputc('\n', stderr);
  fflush(stderr);
}

/* Raise the soft descriptor limit: one socket per in-flight request. */
static void raise_fd_limit(void) {
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
}

/* Whether request i may be sent now as far as its conversation goes: 1 yes, 0 not yet (its
 * previous turn runs), -1 never (its previous turn failed). */
static int dep_ready(const bs_req *R, int i) {
  int d = R[i].dep;
  if (d < 0)
    return 1;
  if (R[d].state != RQ_DONE)
    return 0;
  return R[d].ok ? 1 : -1;
}

/* Send requests in index order as their arrival times come; a later turn of a conversation
 * also waits for the previous turn (requests behind it may go first), and its body is built
 * then (cs, model) because it resends the answers. */
static int run_load(const bs_opts *o, const pl_http_target *tgt, const char *headers,
                    char **bodies, const pl_conv_set *cs, const char *model, bs_run *run,
                    int show_progress) {
  int n = run->n;
  bs_req *R = run->reqs;
  struct pollfd *pfd = calloc((size_t)n, sizeof *pfd);
  int *pidx = calloc((size_t)n, sizeof *pidx);
  int *active = calloc((size_t)n, sizeof *active); /* indices of in-flight requests */
  if (!pfd || !pidx || !active) {
    free(pfd);
    free(pidx);
    free(active);
    fprintf(stderr, "pagellm bench serve: out of memory\n");
    return -1;
  }
  int n_active = 0, next = 0, fd_starved = 0;
  double t0 = run->t0 = now_s(), last_progress = 0;
  char err[512];
  while (run->completed + run->failed < n) {
    double now = now_s();
    /* launch every request whose arrival time has come, within the concurrency cap */
    fd_starved = 0;
    while (next < n && R[next].state != RQ_WAITING)
      next++;
    int has_dep = 0; /* a waiting request blocked only by its conversation */
    for (int i = next; i < n && (!o->max_conc || n_active < o->max_conc); i++) {
      bs_req *r = &R[i];
      if (r->state != RQ_WAITING)
        continue;
      if (t0 + r->t_arrival > now)
        break; /* arrivals are in index order */
      int dr = dep_ready(R, i);
      if (dr == 0) {
        has_dep = 1;
        continue;
      }
      if (dr < 0 || (!bodies[i] && !(bodies[i] = make_conv_body(o, model, cs, R, i)))) {
        req_fail(r, dr < 0 ? "an earlier turn of this conversation failed" : "out of memory");
        req_finish(r, -1, r->err);
        run->failed++;
        if (!run->first_error)
          run->first_error = r->err;
        continue;
      }
      r->t_start = now_s();
      pl_sse_init(&r->sse, on_event, r);
      if (pl_http_conn_start(&r->conn, tgt, "POST", o->endpoint, headers, bodies[i],
                             strlen(bodies[i]), on_body, r, err, sizeof err)) {
        if ((errno == EMFILE || errno == ENFILE) && n_active > 0) {
          pl_sse_free(&r->sse);
          fd_starved = 1;
          break; /* out of descriptors: retry when a request finishes */
        }
        req_finish(r, -1, err);
        run->failed++;
        if (!run->first_error)
          run->first_error = r->err;
        continue;
      }
      r->state = RQ_ACTIVE;
      active[n_active++] = i;
    }
    while (next < n && R[next].state != RQ_WAITING)
      next++;
    /* wait for I/O, the next arrival, a request deadline, or the progress tick */
    double wait = 0.1;
    if (next < n && !fd_starved && !has_dep && (!o->max_conc || n_active < o->max_conc)) {
      double until = t0 + R[next].t_arrival - now;
      if (until < wait)
        wait = until > 0 ? until : 0;
    }
    for (int k = 0; k < n_active; k++) {
      double until = R[active[k]].t_start + o->timeout - now;
      if (until < wait)
        wait = until > 0 ? until : 0;
    }
    int np = 0;
    for (int k = 0; k < n_active; k++) {
      bs_req *r = &R[active[k]];
      pfd[np] = (struct pollfd){r->conn.fd, pl_http_conn_events(&r->conn), 0};
      pidx[np++] = k;
    }
    int pr = poll(pfd, (nfds_t)np, (int)ceil(wait * 1000));
    if (pr < 0 && errno != EINTR) {
      fprintf(stderr, "pagellm bench serve: poll: %s\n", strerror(errno));
      break;
    }
    now = now_s();
    for (int q = 0; q < np && pr > 0; q++) {
      if (!pfd[q].revents)
        continue;
      bs_req *r = &R[active[pidx[q]]];
      int rc = pl_http_conn_io(&r->conn, pfd[q].revents, err, sizeof err);
      if (rc)
        req_finish(r, rc, err);
    }
    now = now_s();
    for (int k = 0; k < n_active; k++) {
      bs_req *r = &R[active[k]];
      if (r->state == RQ_ACTIVE && now - r->t_start >= o->timeout) {
        req_fail(r, "no complete answer within --timeout %g s", o->timeout);
        req_finish(r, -1, r->err);
      }
    }
    /* compact the active list */
    int w = 0;
    for (int k = 0; k < n_active; k++) {
      bs_req *r = &R[active[k]];
      if (r->state == RQ_DONE) {
        if (r->ok)
          run->completed++;
        else {
          run->failed++;
          if (!run->first_error)
            run->first_error = r->err;
        }
      } else
        active[w++] = active[k];
    }
    n_active = w;
    if (show_progress && now - last_progress >= 0.1 && run->completed + run->failed < n) {
      progress(run, run->completed + run->failed + n_active, now, 0);
      last_progress = now;
    }
  }
  run->duration = now_s() - t0;
  if (show_progress)
    progress(run, run->completed + run->failed + n_active, now_s(), 1);
  free(pfd);
  free(pidx);
  free(active);
  return 0;
}

/* ---- model discovery ---------------------------------------------------------------------- */

/* GET /v1/models: the first model's id (when none was given) and the max_model_len of the
 * chosen one (vLLM and pagellm report it; llama.cpp does not). */
static int discover(const pl_http_target *t, const char *endpoint, const char *headers,
                    char *model, size_t model_len, int *max_model_len) {
  char path[600];
  const char *v1 = strstr(endpoint, "/v1/");
  if (v1)
    snprintf(path, sizeof path, "%.*s/v1/models", (int)(v1 - endpoint), endpoint);
  else
    snprintf(path, sizeof path, "/v1/models");
  char err[512], *body;
  size_t len;
  int status;
  if (pl_http_fetch(t, "GET", path, headers, NULL, 30, &status, &body, &len, err, sizeof err)) {
    fprintf(stderr, "pagellm bench serve: GET %s: %s\n", path, err);
    return -1;
  }
  int rc = -1;
  json_t *j = status == 200 ? json_loadb(body, len, 0, NULL) : NULL;
  json_t *data = json_object_get(j, "data");
  if (status != 200) {
    char m[300];
    error_message(body, len, m, sizeof m);
    fprintf(stderr, "pagellm bench serve: GET %s: HTTP %d: %s\n", path, status, m);
  } else if (!json_is_array(data) || !json_array_size(data)) {
    fprintf(stderr, "pagellm bench serve: GET %s: no models listed\n", path);
  } else {
    size_t k;
    json_t *m, *pick = NULL;
    json_array_foreach(data, k, m) {
      const char *id = json_string_value(json_object_get(m, "id"));
      if (id && (!model[0] || !strcmp(id, model))) {
        pick = m;
        break;
      }
    }
    if (pick) {
      if (!model[0])
        snprintf(model, model_len, "%s", json_string_value(json_object_get(pick, "id")));
      json_t *ml = json_object_get(pick, "max_model_len");
      if (json_is_integer(ml) && json_integer_value(ml) > 0)
        *max_model_len = (int)json_integer_value(ml);
    }
    rc = 0;
  }
  json_decref(j);
  pl_free(body);
  return rc;
}

/* ---- prefix-cache counters (--metrics-url) ------------------------------------------------- */

typedef struct bs_prefix {
  double queries, hits; /* tokens */
} bs_prefix;

/* Sum the samples of every series whose name ends in `suffix` (pagellm: and vllm: both). */
static double metric_sum(const char *text, const char *suffix) {
  double sum = 0;
  size_t sl = strlen(suffix);
  for (const char *line = text; line && *line;) {
    const char *eol = strchr(line, '\n');
    size_t len = eol ? (size_t)(eol - line) : strlen(line);
    size_t name_len = strcspn(line, "{ ");
    if (line[0] != '#' && name_len <= len && name_len >= sl &&
        !memcmp(line + name_len - sl, suffix, sl)) {
      const char *v = memchr(line, '}', len) ? (const char *)memchr(line, '}', len) + 1
                                             : line + name_len;
      sum += strtod(v, NULL);
    }
    line = eol ? eol + 1 : NULL;
  }
  return sum;
}

static int scrape_prefix(const char *url, const char *headers, bs_prefix *out) {
  pl_http_target t;
  char err[512], *body = NULL;
  size_t len;
  int status;
  if (pl_http_target_parse(url, &t, err, sizeof err) ||
      pl_http_fetch(&t, "GET", "/metrics", headers, NULL, 30, &status, &body, &len, err,
                    sizeof err)) {
    fprintf(stderr, "pagellm bench serve: --metrics-url %s: %s\n", url, err);
    return -1;
  }
  if (status != 200) {
    fprintf(stderr, "pagellm bench serve: --metrics-url %s: GET /metrics: HTTP %d\n", url,
            status);
    pl_free(body);
    return -1;
  }
  out->queries = metric_sum(body, ":prefix_cache_queries_total");
  out->hits = metric_sum(body, ":prefix_cache_hits_total");
  pl_free(body);
  return 0;
}

/* ---- report ------------------------------------------------------------------------------- */

typedef struct bs_result {
  int completed, failed;
  long long total_in, total_out;
  double duration, req_tput, out_tput, total_tput, max_out_per_s;
  int max_conc_seen;
  bs_stat ttft, tpot, itl, e2el;
  int n_replicas;                /* --metrics-url servers */
  bs_prefix prefix, replica[16]; /* prefix-cache token deltas over the run: all, each */
} bs_result;

static void compute(const bs_run *run, const pl_wl_req *w, bs_result *res) {
  int n = run->n;
  const bs_req *R = run->reqs;
  memset(res, 0, sizeof *res);
  res->duration = run->duration;
  size_t n_itl = 0;
  for (int i = 0; i < n; i++)
    if (R[i].ok)
      n_itl += (size_t)R[i].n_itl;
  double *ttft = calloc((size_t)n + 1, sizeof *ttft), *tpot = calloc((size_t)n + 1, sizeof *tpot);
  double *e2el = calloc((size_t)n + 1, sizeof *e2el), *itl = calloc(n_itl + 1, sizeof *itl);
  double *ev = calloc(2 * (size_t)n + 1, sizeof *ev); /* concurrency sweep: +start, -end */
  int n_ok = 0, n_tpot = 0;
  size_t k_itl = 0;
  double t_min = INFINITY, t_max = -INFINITY;
  for (int i = 0; i < n; i++) {
    const bs_req *r = &R[i];
    if (!r->ok) {
      res->failed++;
      continue;
    }
    int out = r->usage_out >= 0 ? r->usage_out : r->n_chunks;
    int in = r->usage_in >= 0 ? r->usage_in : w[i].n_prompt;
    res->total_in += in;
    res->total_out += out;
    double tt = r->t_first - r->t_start, lat = r->t_last - r->t_start;
    ttft[n_ok] = tt;
    e2el[n_ok] = lat;
    if (out > 1)
      tpot[n_tpot++] = (lat - tt) / (out - 1);
    memcpy(itl + k_itl, r->itl, sizeof *itl * (size_t)r->n_itl);
    k_itl += (size_t)r->n_itl;
    ev[2 * n_ok] = r->t_start;
    ev[2 * n_ok + 1] = -r->t_last; /* negative marks an end */
    n_ok++;
    t_min = r->t_start < t_min ? r->t_start : t_min;
    t_max = r->t_last > t_max ? r->t_last : t_max;
  }
  res->completed = n_ok;
  double d = run->duration > 0 ? run->duration : 1e-9;
  res->req_tput = n_ok / d;
  res->out_tput = res->total_out / d;
  res->total_tput = (res->total_in + res->total_out) / d;
  /* peak output tokens in any whole second (content chunks, bucketed from the first start) */
  if (n_ok) {
    int nb = (int)ceil(t_max - t_min) + 1;
    int *bucket = calloc((size_t)nb, sizeof *bucket);
    for (int i = 0; bucket && i < n; i++) {
      const bs_req *r = &R[i];
      if (!r->ok)
        continue;
      double t = r->t_first;
      for (int k = -1; k < r->n_itl; k++) {
        if (k >= 0)
          t += r->itl[k];
        int b = (int)(t - t_min);
        if (b >= 0 && b < nb)
          bucket[b]++;
      }
    }
    for (int b = 0; bucket && b < nb; b++)
      res->max_out_per_s = bucket[b] > res->max_out_per_s ? bucket[b] : res->max_out_per_s;
    free(bucket);
    /* peak concurrency over half-open [start, end): an end sorts before a start at the same
     * instant (ends are stored negated) */
    qsort(ev, 2 * (size_t)n_ok, sizeof *ev, cmp_event);
    int cur = 0;
    for (int a = 0; a < 2 * n_ok; a++) {
      cur += ev[a] >= 0 ? 1 : -1;
      res->max_conc_seen = cur > res->max_conc_seen ? cur : res->max_conc_seen;
    }
  }
  res->ttft = stat_of(ttft, n_ok);
  res->tpot = stat_of(tpot, n_tpot);
  res->itl = stat_of(itl, (int)k_itl);
  res->e2el = stat_of(e2el, n_ok);
  free(ttft);
  free(tpot);
  free(e2el);
  free(itl);
  free(ev);
}

static void centered(FILE *f, const char *title, char fill) {
  int len = (int)strlen(title), pad = 50 - len;
  if (pad < 0)
    pad = 0;
  for (int i = 0; i < pad / 2; i++)
    fputc(fill, f);
  fputs(title, f);
  for (int i = 0; i < pad - pad / 2; i++)
    fputc(fill, f);
  fputc('\n', f);
}

static void print_stat(FILE *f, const char *title, const char *name, const bs_stat *s) {
  char l[64];
  centered(f, title, '-');
  snprintf(l, sizeof l, "Mean %s (ms):", name);
  fprintf(f, "%-40s %.2f\n", l, s->mean);
  snprintf(l, sizeof l, "Median %s (ms):", name);
  fprintf(f, "%-40s %.2f\n", l, s->median);
  snprintf(l, sizeof l, "P90 %s (ms):", name);
  fprintf(f, "%-40s %.2f\n", l, s->p90);
  snprintf(l, sizeof l, "P99 %s (ms):", name);
  fprintf(f, "%-40s %.2f\n", l, s->p99);
}

static void print_table(FILE *f, const bs_opts *o, const char *model, const bs_result *r,
                        const char *first_error) {
  centered(f, " Serving Benchmark Result ", '=');
  fprintf(f, "%-40s %s\n", "Model:", model);
  fprintf(f, "%-40s %s\n", "Workload:", o->workload);
  if (isinf(o->rate))
    fprintf(f, "%-40s %s\n", "Request rate (req/s):", "inf");
  else
    fprintf(f, "%-40s %.2f\n", "Request rate (req/s):", o->rate);
  if (o->max_conc)
    fprintf(f, "%-40s %d\n", "Maximum request concurrency:", o->max_conc);
  fprintf(f, "%-40s %d\n", "Successful requests:", r->completed);
  fprintf(f, "%-40s %d\n", "Failed requests:", r->failed);
  fprintf(f, "%-40s %.2f\n", "Benchmark duration (s):", r->duration);
  fprintf(f, "%-40s %lld\n", "Total input tokens:", r->total_in);
  fprintf(f, "%-40s %lld\n", "Total generated tokens:", r->total_out);
  fprintf(f, "%-40s %.2f\n", "Request throughput (req/s):", r->req_tput);
  fprintf(f, "%-40s %.2f\n", "Output token throughput (tok/s):", r->out_tput);
  fprintf(f, "%-40s %.2f\n", "Peak output token throughput (tok/s):", r->max_out_per_s);
  fprintf(f, "%-40s %d\n", "Peak concurrent requests:", r->max_conc_seen);
  fprintf(f, "%-40s %.2f\n", "Total token throughput (tok/s):", r->total_tput);
  if (r->n_replicas) {
    fprintf(f, "%-40s %.2f\n", "Prefix cache hit rate (%):",
            r->prefix.queries > 0 ? 100.0 * r->prefix.hits / r->prefix.queries : 0.0);
    for (int k = 0; k < r->n_replicas; k++) {
      char l[64];
      snprintf(l, sizeof l, "  server %d hits / queries (tokens):", k + 1);
      fprintf(f, "%-40s %.0f / %.0f\n", l, r->replica[k].hits, r->replica[k].queries);
    }
  }
  print_stat(f, "Time to First Token", "TTFT", &r->ttft);
  print_stat(f, "Time per Output Token (excl. 1st token)", "TPOT", &r->tpot);
  print_stat(f, "Inter-token Latency", "ITL", &r->itl);
  print_stat(f, "End-to-end Latency", "E2EL", &r->e2el);
  centered(f, "", '=');
  if (first_error)
    fprintf(f, "First error: %s\n", first_error);
}

static json_t *json_num_or_null(int ok, double v) { return ok ? json_real(v) : json_null(); }

static void put_stat(json_t *j, const char *name, const bs_stat *s) {
  char k[64];
#define PUT(field)                                              \
  snprintf(k, sizeof k, #field "_%s_ms", name);                 \
  json_object_set_new(j, k, json_real(s->field));
  PUT(mean) PUT(median) PUT(std) PUT(p50) PUT(p90) PUT(p99)
#undef PUT
}

static int write_json(const char *path, const bs_opts *o, const char *url, const char *model,
                      int max_model_len, const bs_run *run, const pl_wl_req *w,
                      const bs_result *r, const char *first_error) {
  json_t *j = json_object();
  char date[32];
  time_t now = time(NULL);
  strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%SZ", gmtime(&now));
  json_object_set_new(j, "backend", json_string("pagellm-bench-serve"));
  json_object_set_new(j, "label", o->label ? json_string(o->label) : json_null());
  json_object_set_new(j, "date", json_string(date));
  json_object_set_new(j, "base_url", json_string(url));
  json_object_set_new(j, "endpoint", json_string(o->endpoint));
  json_object_set_new(j, "model_id", json_string(model));
  json_object_set_new(j, "workload", json_string(o->workload));
  json_object_set_new(j, "num_prompts", json_integer(run->n));
  json_object_set_new(j, "request_rate", isinf(o->rate) ? json_string("inf") : json_real(o->rate));
  json_object_set_new(j, "max_concurrency", o->max_conc ? json_integer(o->max_conc) : json_null());
  json_object_set_new(j, "seed", json_integer((json_int_t)o->seed));
  json_object_set_new(j, "ignore_eos", json_boolean(o->ignore_eos));
  json_object_set_new(j, "n_vocab", json_integer(o->n_vocab));
  json_object_set_new(j, "max_model_len", json_integer(max_model_len));
  json_object_set_new(j, "duration", json_real(r->duration));
  json_object_set_new(j, "completed", json_integer(r->completed));
  json_object_set_new(j, "failed", json_integer(r->failed));
  json_object_set_new(j, "total_input_tokens", json_integer(r->total_in));
  json_object_set_new(j, "total_output_tokens", json_integer(r->total_out));
  json_object_set_new(j, "request_throughput", json_real(r->req_tput));
  json_object_set_new(j, "output_throughput", json_real(r->out_tput));
  json_object_set_new(j, "total_token_throughput", json_real(r->total_tput));
  json_object_set_new(j, "max_output_tokens_per_s", json_real(r->max_out_per_s));
  json_object_set_new(j, "max_concurrent_requests", json_integer(r->max_conc_seen));
  put_stat(j, "ttft", &r->ttft);
  put_stat(j, "tpot", &r->tpot);
  put_stat(j, "itl", &r->itl);
  put_stat(j, "e2el", &r->e2el);
  json_object_set_new(j, "first_error", first_error ? json_string(first_error) : json_null());
  if (r->n_replicas) {
    json_object_set_new(j, "prefix_cache_queries", json_real(r->prefix.queries));
    json_object_set_new(j, "prefix_cache_hits", json_real(r->prefix.hits));
    json_object_set_new(j, "prefix_cache_hit_rate",
                        json_real(r->prefix.queries > 0 ? r->prefix.hits / r->prefix.queries : 0));
    json_t *per = json_array();
    for (int k = 0; k < r->n_replicas; k++)
      json_array_append_new(per, json_pack("{s:s,s:f,s:f}", "metrics_url", o->metrics_url[k],
                                           "queries", r->replica[k].queries, "hits",
                                           r->replica[k].hits));
    json_object_set_new(j, "prefix_cache_per_server", per);
  }
  /* per request, in workload order; failed requests hold null timings (seconds) */
  json_t *ok = json_array(), *il = json_array(), *ol = json_array(), *tt = json_array(),
         *lat = json_array(), *st = json_array(), *itls = json_array(), *errs = json_array(),
         *mt = json_array();
  for (int i = 0; i < run->n; i++) {
    const bs_req *q = &run->reqs[i];
    int good = q->ok;
    json_array_append_new(ok, json_boolean(good));
    json_array_append_new(il, json_integer(q->usage_in >= 0 ? q->usage_in : w[i].n_prompt));
    json_array_append_new(mt, json_integer(w[i].max_tokens));
    json_array_append_new(ol, json_integer(!good ? 0 : q->usage_out >= 0 ? q->usage_out : q->n_chunks));
    json_array_append_new(tt, json_num_or_null(good, q->t_first - q->t_start));
    json_array_append_new(lat, json_num_or_null(good, q->t_last - q->t_start));
    json_array_append_new(st, json_num_or_null(q->t_start > 0, q->t_start - run->t0));
    json_t *a = json_array();
    for (int k = 0; good && k < q->n_itl; k++)
      json_array_append_new(a, json_real(q->itl[k]));
    json_array_append_new(itls, a);
    json_array_append_new(errs, q->err ? json_string(q->err) : json_null());
  }
  json_object_set_new(j, "success", ok);
  json_object_set_new(j, "input_lens", il);
  json_object_set_new(j, "output_lens", ol);
  json_object_set_new(j, "expected_output_lens", mt); /* max_tokens sent */
  json_object_set_new(j, "ttfts", tt);
  json_object_set_new(j, "latencies", lat);
  json_object_set_new(j, "start_times", st);
  json_object_set_new(j, "itls", itls);
  json_object_set_new(j, "errors", errs);
  int rc = 0;
  size_t flags = JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(9);
  if (!strcmp(path, "-")) {
    rc = json_dumpf(j, stdout, flags);
    fputc('\n', stdout);
  } else {
    rc = json_dump_file(j, path, flags);
    if (rc)
      fprintf(stderr, "pagellm bench serve: cannot write %s: %s\n", path, strerror(errno));
  }
  json_decref(j);
  return rc ? -1 : 0;
}

/* ---- command ------------------------------------------------------------------------------ */

int pl_cmd_bench_serve(int argc, char **argv) {
  bs_opts o = {.endpoint = "/v1/completions", .workload = "sharegpt-like", .n = 100,
               .input_len = 128, .output_len = 128, .n_vocab = 512, .bos = -1, .ignore_eos = 1,
               .progress = -1, .rate = INFINITY, .timeout = 600, .seed = 1};
  const char *env_key = getenv("OPENAI_API_KEY");
  o.api_key = env_key && *env_key ? env_key : NULL;
  int prc = parse_opts(&o, argc, argv);
  if (prc)
    return prc > 0 ? 0 : 2;
  if (o.base_url && (o.host || o.port)) {
    fprintf(stderr, "pagellm bench serve: give --base-url or --host/--port, not both\n");
    return 2;
  }
  char url[600];
  if (o.base_url)
    snprintf(url, sizeof url, "%s", o.base_url);
  else
    snprintf(url, sizeof url, "http://%s:%d", o.host ? o.host : "127.0.0.1",
             o.port ? o.port : 8000);
  pl_http_target tgt;
  char err[512];
  if (pl_http_target_parse(url, &tgt, err, sizeof err)) {
    fprintf(stderr, "pagellm bench serve: %s\n", err);
    return 2;
  }
  char headers[1024];
  int hn = snprintf(headers, sizeof headers,
                    "Content-Type: application/json\r\nAccept: text/event-stream\r\n");
  if (o.api_key)
    hn += snprintf(headers + hn, sizeof headers - (size_t)hn, "Authorization: Bearer %s\r\n",
                   o.api_key);
  if (hn >= (int)sizeof headers) {
    fprintf(stderr, "pagellm bench serve: --api-key too long\n");
    return 2;
  }

  char model[256] = "";
  if (o.model)
    snprintf(model, sizeof model, "%s", o.model);
  int server_mml = 0;
  if (discover(&tgt, o.endpoint, headers, model, sizeof model, &server_mml) && !o.model) {
    fprintf(stderr, "pagellm bench serve: cannot learn the model name from %s; pass --model\n",
            url);
    return 1;
  }
  if (!model[0]) {
    fprintf(stderr, "pagellm bench serve: the server lists no usable model; pass --model\n");
    return 1;
  }
  int mml = o.max_model_len ? o.max_model_len : server_mml ? server_mml : 2048;

  pl_conv_set cs = {0};
  int conv = pl_conv_known(o.workload);
  pl_wl_req *w = NULL;
  if (conv) {
    pl_conv_spec cspec = {.name = o.workload, .n = o.n, .n_system = o.n_system,
                          .system_len = o.system_len ? o.system_len : o.prefix_len,
                          .seed = o.seed, .n_vocab = o.n_vocab, .max_model_len = mml};
    if (pl_conv_make(&cspec, &cs) < 0)
      return 2;
    /* per-request lengths for the report: prompt = system + history + this user turn */
    w = calloc((size_t)o.n, sizeof *w);
    for (int i = 0; w && i < o.n; i++) {
      const pl_conv_req *q = &cs.req[i];
      int len = q->n_user + (q->system >= 0 ? cs.system_len[q->system] : 0);
      for (int k = q->dep; k >= 0; k = cs.req[k].dep)
        len += cs.req[k].n_user + cs.req[k].max_tokens;
      w[i].n_prompt = len;
      w[i].max_tokens = q->max_tokens;
    }
  } else {
    pl_wl_spec ws = {.name = o.workload, .n = o.n, .input_len = o.input_len,
                     .output_len = o.output_len, .prefix_len = o.prefix_len, .seed = o.seed,
                     .n_vocab = o.n_vocab, .bos = o.bos, .max_model_len = mml};
    w = pl_workload_make(&ws);
  }
  if (!w) {
    pl_conv_free(&cs);
    return 2;
  }
  int chat = strstr(o.endpoint, "chat/completions") != NULL;
  char **bodies = calloc((size_t)o.n, sizeof *bodies);
  bs_req *R = calloc((size_t)o.n, sizeof *R);
  int rc = 1;
  if (!bodies || !R)
    goto out;
  for (int i = 0; i < o.n; i++) {
    R[i].usage_in = R[i].usage_out = -1;
    R[i].conn.fd = -1;
    R[i].dep = conv ? cs.req[i].dep : -1;
    R[i].keep_answer = conv && !strcmp(o.workload, "multi-turn");
  }
  uint64_t rng = o.seed ^ 0x5EEDA5517A11ull;
  double t = 0;
  for (int i = 0; i < o.n; i++) {
    if (!conv && !(bodies[i] = make_body(&o, model, &w[i], chat)))
      goto out;
    /* Poisson process: exponential gaps with mean 1/rate between requests, or between
     * conversations (a later turn keeps its conversation's arrival and waits for the turn
     * before it) */
    if (!isinf(o.rate) && i > 0 && R[i].dep < 0)
      t += -log(rng_unif(&rng)) / o.rate;
    R[i].t_arrival = t;
  }
  bs_prefix before[16], after[16];
  for (int k = 0; k < o.n_metrics; k++)
    if (scrape_prefix(o.metrics_url[k], headers, &before[k]) < 0)
      goto out;
  raise_fd_limit();
  int show = o.progress > 0 || (o.progress < 0 && isatty(STDERR_FILENO));
  char rate[32], conc[32];
  snprintf(rate, sizeof rate, isinf(o.rate) ? "inf" : "%g/s", o.rate);
  snprintf(conc, sizeof conc, o.max_conc ? "%d" : "unlimited", o.max_conc);
  fprintf(stderr, "pagellm bench serve: %d %s requests to %s%s (model '%s'), rate %s, "
                  "concurrency %s\n", o.n, o.workload, url, o.endpoint, model, rate, conc);
  bs_run run = {.reqs = R, .n = o.n};
  if (run_load(&o, &tgt, headers, bodies, &cs, model, &run, show))
    goto out;
  bs_result res;
  compute(&run, w, &res);
  res.n_replicas = o.n_metrics;
  for (int k = 0; k < o.n_metrics; k++) {
    if (scrape_prefix(o.metrics_url[k], headers, &after[k]) < 0)
      goto out;
    res.replica[k].queries = after[k].queries - before[k].queries;
    res.replica[k].hits = after[k].hits - before[k].hits;
    res.prefix.queries += res.replica[k].queries;
    res.prefix.hits += res.replica[k].hits;
  }
  const char *first_error = run.first_error;
  int to_stdout = o.json_path && !strcmp(o.json_path, "-");
  print_table(to_stdout ? stderr : stdout, &o, model, &res, first_error);
  rc = res.completed > 0 ? 0 : 1;
  if (o.json_path &&
      write_json(o.json_path, &o, url, model, mml, &run, w, &res, first_error))
    rc = 1;
out:
  for (int i = 0; R && i < o.n; i++) {
    pl_free(R[i].itl);
    free(R[i].err);
    pl_free(R[i].answer);
    pl_http_conn_close(&R[i].conn);
    pl_sse_free(&R[i].sse);
  }
  for (int i = 0; bodies && i < o.n; i++)
    free(bodies[i]);
  free(bodies);
  free(R);
  pl_workload_free(w, o.n);
  pl_conv_free(&cs);
  return rc;
}
