/* Allocation failure at every allocation point of one full request through the server
 * (issue 20): the in-process server (real engine, TinyStories 280K with the ChatML template)
 * answers a chat completion, streaming and not, while the counting allocator (util/alloc.h)
 * fails its k-th allocation, for k = 0, 1, 2, ... until a request runs without reaching k.
 * jansson is routed through the same allocator, so JSON parsing and writing fail too.
 *
 * Each injected failure must give a clean answer:
 *  - a 500/503 OpenAI error object whose message says "out of memory", or
 *  - for a stream that already started, an SSE error frame saying so, then "data: [DONE]",
 *    with the text before it a prefix of the reference text, or
 *  - a 200 whose text and finish_reason equal the reference (greedy decoding; the failure hit
 *    something optional, such as a cache entry).
 * Never a 4xx (the client did nothing wrong), never a dropped connection or a cut stream.
 * After each: the engine drains to 0 running, 0 waiting, 0 KV blocks in use, and the live
 * allocation count returns to its value before the request (no leak; ASan checks the rest
 * at exit). The reference is the same server with no failure injected. */
#include <arpa/inet.h>
#include <jansson.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "pagellm.h"
#include "server/server.h"
#include "util/alloc.h"

/* ---- a minimal HTTP/1.1 client (Connection: close; reads to EOF) ------------------------ */

typedef struct {
  int status;     /* 0 = no status line (connection dropped) */
  int chunked;    /* Transfer-Encoding: chunked */
  int complete;   /* chunked: the terminal chunk arrived; otherwise: the body is whole */
  char *body;     /* decoded body (malloc, NUL-terminated) */
  size_t body_len;
} http_resp;

static int port;

static char *read_all(int fd, size_t *len) {
  size_t cap = 1 << 16, n = 0;
  char *b = malloc(cap);
  for (;;) {
    if (n + 4096 + 1 > cap)
      b = realloc(b, cap *= 2);
    ssize_t r = read(fd, b + n, cap - n - 1);
    if (r <= 0)
      break;
    n += (size_t)r;
  }
  b[n] = 0;
  *len = n;
  return b;
}

static http_resp http(const char *method, const char *path, const char *body) {
  http_resp r = {0};
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  struct timeval tv = {.tv_sec = 120};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
    close(fd);
    return r;
  }
  char head[512];
  int hn = snprintf(head, sizeof head,
                    "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
                    "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n",
                    method, path, body ? strlen(body) : 0);
  if (write(fd, head, (size_t)hn) != hn || (body && write(fd, body, strlen(body)) < 0)) {
    close(fd);
    return r;
  }
  size_t n;
  char *raw = read_all(fd, &n);
  close(fd);
  char *eoh = strstr(raw, "\r\n\r\n");
  if (strncmp(raw, "HTTP/1.1 ", 9) != 0 || !eoh) {
    free(raw);
    return r;
  }
  r.status = atoi(raw + 9);
  *eoh = 0;
  for (char *p = raw; *p; p++)
    *p = (char)((*p >= 'A' && *p <= 'Z') ? *p + 32 : *p);
  r.chunked = strstr(raw, "\r\ntransfer-encoding: chunked") != NULL;
  const char *p = eoh + 4, *end = raw + n;
  r.body = malloc(n + 1);
  if (!r.chunked) {
    r.body_len = (size_t)(end - p);
    memcpy(r.body, p, r.body_len);
    r.complete = 1;
  } else {
    for (;;) { /* size CRLF data CRLF ... 0 CRLF CRLF */
      char *e;
      unsigned long sz = strtoul(p, &e, 16);
      if (e == p || e + 2 > end || e[0] != '\r' || e[1] != '\n')
        break;
      p = e + 2;
      if (sz == 0) {
        r.complete = 1;
        break;
      }
      if ((size_t)(end - p) < sz + 2)
        break;
      memcpy(r.body + r.body_len, p, sz);
      r.body_len += sz;
      p += sz + 2;
    }
  }
  r.body[r.body_len] = 0;
  free(raw);
  return r;
}

/* ---- checks ----------------------------------------------------------------------------- */

typedef struct {
  char text[4096];
  char finish[32];
  int error;       /* the answer or stream reported an error */
  char error_msg[512];
} answer;

static void get_str(json_t *o, const char *key, char *dst, size_t cap) {
  const char *v = json_string_value(json_object_get(o, key));
  snprintf(dst, cap, "%s", v ? v : "");
}

/* Parse a non-streaming chat response; 0 if it is well-formed. */
static int parse_whole(const http_resp *h, answer *a) {
  memset(a, 0, sizeof *a);
  json_t *root = json_loadb(h->body, h->body_len, 0, NULL);
  if (!root)
    return -1;
  int rc = -1;
  json_t *err = json_object_get(root, "error");
  if (h->status != 200 && err) {
    a->error = 1;
    get_str(err, "message", a->error_msg, sizeof a->error_msg);
    rc = 0;
  } else if (h->status == 200) {
    json_t *c0 = json_array_get(json_object_get(root, "choices"), 0);
    json_t *msg = json_object_get(c0, "message");
    if (json_is_string(json_object_get(msg, "content")) &&
        json_is_string(json_object_get(c0, "finish_reason"))) {
      get_str(msg, "content", a->text, sizeof a->text);
      get_str(c0, "finish_reason", a->finish, sizeof a->finish);
      rc = 0;
    }
  }
  json_decref(root);
  return rc;
}

/* Parse an SSE stream of chat chunks; 0 if every frame is well-formed and it ends with
 * "data: [DONE]" (after at most one error frame, which must be the last before it). */
static int parse_stream(const http_resp *h, answer *a) {
  memset(a, 0, sizeof *a);
  int done = 0;
  size_t tl = 0;
  char *save = NULL;
  for (char *line = strtok_r(h->body, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
    if (done || a->error == 2)
      return -1; /* nothing after [DONE]; only [DONE] after an error */
    if (line[0] == ':')
      continue; /* keep-alive comment */
    if (strncmp(line, "data: ", 6) != 0)
      return -1;
    if (!strcmp(line + 6, "[DONE]")) {
      done = 1;
      continue;
    }
    json_t *f = json_loads(line + 6, 0, NULL);
    if (!f)
      return -1;
    json_t *err = json_object_get(f, "error");
    if (err) {
      a->error = 1;
      get_str(err, "message", a->error_msg, sizeof a->error_msg);
    }
    json_t *c0 = json_array_get(json_object_get(f, "choices"), 0);
    if (!err && !c0) {
      json_decref(f);
      return -1;
    }
    const char *t = json_string_value(json_object_get(json_object_get(c0, "delta"), "content"));
    if (t) {
      size_t n = strlen(t);
      if (tl + n < sizeof a->text) {
        memcpy(a->text + tl, t, n);
        tl += n;
      }
    }
    if (json_is_string(json_object_get(c0, "finish_reason")))
      get_str(c0, "finish_reason", a->finish, sizeof a->finish);
    json_decref(f);
  }
  a->text[tl] = 0;
  return done ? 0 : -1;
}

static double metric(const char *text, const char *name) {
  char key[128];
  snprintf(key, sizeof key, "\npagellm:%s{", name);
  const char *p = strstr(text, key);
  if (!p)
    return -1;
  p = strchr(p, '}');
  return p ? atof(p + 1) : -1;
}

/* Wait until the engine holds nothing for any request. */
static int wait_idle(void) {
  for (int i = 0; i < 2000; i++) {
    http_resp m = http("GET", "/metrics", NULL);
    int idle = m.status == 200 && metric(m.body, "num_requests_running") == 0 &&
               metric(m.body, "num_requests_waiting") == 0 &&
               metric(m.body, "kv_blocks_used") == 0;
    free(m.body);
    if (idle)
      return 1;
    usleep(5000);
  }
  return 0;
}

/* jansson through the counting allocator, so that its allocations fail too. */
static void *j_malloc(size_t n) { return pl_malloc(n); }
static void j_free(void *p) { pl_free(p); }

static const char *const CHAT =
    "{\"model\":\"tiny\",\"messages\":[{\"role\":\"system\",\"content\":\"You tell stories.\"},"
    "{\"role\":\"user\",\"content\":\"Once upon a time there was a little dog\"}],"
    "\"max_tokens\":6,\"temperature\":0,\"stream\":%s}";

/* Run the request with failure injection at k = 0, 1, ...; returns the number of runs. */
static int sweep(int stream, const answer *ref, int *oom_answers, int *ok_answers) {
  char body[512];
  snprintf(body, sizeof body, CHAT, stream ? "true" : "false");
  /* the baseline: what the server holds between requests once the last one is cleaned up */
  wait_idle();
  usleep(100000);
  size_t live0 = pl_alloc_live_count();
  int k;
  for (k = 0; k < 100000; k++) {
    long n0 = pl_alloc_count();
    pl_alloc_fail_after(k);
    http_resp h = http("POST", "/v1/chat/completions", body);
    int reached = pl_alloc_count() - n0 > k;
    pl_alloc_fail_after(-1);
    answer a;
    int well_formed = h.status && h.complete &&
                      (stream && h.status == 200 ? parse_stream(&h, &a) : parse_whole(&h, &a)) == 0;
    CHECK(well_formed, "%s k=%d: status %d, %s, body: %.300s", stream ? "stream" : "whole", k,
          h.status, h.complete ? "complete" : "cut", h.body ? h.body : "(none)");
    if (well_formed && a.error) {
      ++*oom_answers;
      CHECK(h.status == 200 || h.status == 500 || h.status == 503, "k=%d: status %d", k,
            h.status);
      CHECK(strstr(a.error_msg, "out of memory") != NULL, "%s k=%d: status %d, error '%s'",
            stream ? "stream" : "whole", k, h.status, a.error_msg);
      CHECK(!strncmp(ref->text, a.text, strlen(a.text)), "k=%d: text before the error '%s' is "
            "not a prefix of '%s'", k, a.text, ref->text);
    } else if (well_formed) {
      ++*ok_answers;
      CHECK(h.status == 200 && !strcmp(a.text, ref->text) && !strcmp(a.finish, ref->finish),
            "%s k=%d: status %d, '%s' (%s) instead of '%s' (%s)", stream ? "stream" : "whole", k,
            h.status, a.text, a.finish, ref->text, ref->finish);
    }
    free(h.body);
    CHECK(wait_idle(), "k=%d: the engine did not drain", k);
    /* Events and responses are freed by the connection thread after the client saw EOF:
     * give it a moment before counting. */
    size_t live = 0;
    for (int i = 0; i < 400 && (live = pl_alloc_live_count()) != live0; i++)
      usleep(5000);
    CHECK(live == live0, "%s k=%d: %zu blocks live after the request, %zu before",
          stream ? "stream" : "whole", k, live, live0);
    if (!reached)
      break; /* the request made fewer than k + 1 allocations: every point was tried */
  }
  return k + 1;
}

int main(void) {
  json_set_alloc_funcs(j_malloc, j_free);
  static char tmpl[65536];
  FILE *f = fopen(data_path("chat-templates/chatml-openhermes-2.5.jinja"), "rb");
  CHECK(f != NULL, "template");
  if (!f)
    return check_summary("test_server_allocfail");
  tmpl[fread(tmpl, 1, sizeof tmpl - 1, f)] = 0;
  fclose(f);

  pl_engine_params ep;
  pl_engine_params_default(&ep);
  ep.model_path = data_path("models/tinystories-280K.gguf");
  ep.chat_template = tmpl;
  ep.n_threads = 1;
  ep.kv_cache_bytes = 4u << 20;
  pl_engine *e = NULL;
  CHECK(pl_engine_create(&ep, &e) == 0, "engine: %s", pl_last_error());
  pl_server_config cfg;
  pl_server_config_default(&cfg);
  cfg.port = 0;
  cfg.served_model_name = "tiny";
  pl_server *s = NULL;
  CHECK(pl_server_start(&cfg, &s) == 0, "start: %s", pl_last_error());
  CHECK(pl_server_attach_engine(s, e) == 0, "attach: %s", pl_last_error());
  port = pl_server_port(s);

  int total_runs = 0;
  for (int stream = 0; stream <= 1; stream++) {
    char body[512];
    snprintf(body, sizeof body, CHAT, stream ? "true" : "false");
    http_resp h = http("POST", "/v1/chat/completions", body);
    answer ref;
    int ok = h.status == 200 && (stream ? parse_stream(&h, &ref) : parse_whole(&h, &ref)) == 0;
    CHECK(ok && !ref.error && ref.text[0], "reference: %d %s", h.status, h.body);
    free(h.body);
    if (!ok)
      break;
    int ooms = 0, oks = 0;
    int runs = sweep(stream, &ref, &ooms, &oks);
    printf("%s: %d allocation points tried: %d answered out of memory, %d answered in full\n",
           stream ? "stream" : "whole", runs, ooms, oks);
    CHECK(runs > 50, "only %d allocations in a whole request?", runs);
    CHECK(ooms > runs / 2, "only %d of %d injected failures were reported", ooms, runs);
    total_runs += runs;
  }
  /* the server still serves after all of it */
  http_resp h = http("GET", "/health", NULL);
  CHECK_EQ_INT(h.status, 200);
  free(h.body);
  pl_server_destroy(s);
  pl_engine_destroy(e);
  CHECK(total_runs > 0, "no runs");
  return check_summary("test_server_allocfail");
}
