/* Test support for the allocation-failure sweeps through the in-process server
 * (test_server_allocfail*.c): a minimal HTTP/1.1 client, waiting for the engine to drain
 * (/metrics), and the sweep driver that fails the k-th allocation of one request for every k
 * until the request no longer reaches k, checking after each that nothing leaked (and, if
 * something did, printing the leaked blocks' callers and stopping the sweep). */
#ifndef PL_TEST_SERVER_SWEEP_H
#define PL_TEST_SERVER_SWEEP_H
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
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

static int sw_port;

static char *sw_read_all(int fd, size_t *len) {
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
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)sw_port)};
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
  char *raw = sw_read_all(fd, &n);
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

/* ---- the engine's state ----------------------------------------------------------------- */

static double sw_metric(const char *text, const char *name) {
  char key[128];
  snprintf(key, sizeof key, "\npagellm:%s{", name);
  const char *p = strstr(text, key);
  if (!p)
    return -1;
  p = strchr(p, '}');
  return p ? atof(p + 1) : -1;
}

/* Wait until the engine holds nothing for any request: 0 running, 0 waiting, 0 KV blocks. */
static int sw_wait_idle(void) {
  for (int i = 0; i < 10000; i++) {
    http_resp m = http("GET", "/metrics", NULL);
    int idle = m.status == 200 && sw_metric(m.body, "num_requests_running") == 0 &&
               sw_metric(m.body, "num_requests_waiting") == 0 &&
               sw_metric(m.body, "kv_blocks_used") == 0;
    free(m.body);
    if (idle)
      return 1;
    usleep(1000);
  }
  return 0;
}

/* ---- the sweep -------------------------------------------------------------------------- */

/* What an answer was: a clean out-of-memory report, the full reference answer, or wrong. */
enum { SW_BAD = -1, SW_FULL = 0, SW_OOM = 1 };

/* Judge one answer (well-formed HTTP: a status line and a whole body). `why` gets a reason
 * for SW_BAD. */
typedef int (*sw_judge_fn)(void *ctx, const http_resp *h, char *why, size_t why_cap);

typedef struct {
  int runs, oom, full; /* requests made; answered out of memory; answered in full */
} sw_result;

/* Send body to path (method: "POST", or "GET" with body NULL) with the k-th allocation failing, for k = 0, 1, ... every_from - 1, then
 * every 5th k, until the request makes fewer than k + 1 allocations (every point was tried).
 * After each: the engine drains and the live allocation count returns to its value before
 * the sweep (events and responses are freed by the connection thread after the client saw
 * EOF, so it is given a moment). */
static sw_result sw_sweep_method(const char *name, const char *method, const char *path,
                                 const char *body, int every_from, sw_judge_fn judge,
                                 void *ctx) {
  sw_result res = {0};
  sw_wait_idle();
  usleep(100000);
  size_t live0 = pl_alloc_live_count();
  pl_alloc_trace(1); /* a leak below is reported with its blocks' callers */
  for (int k = 0; k < 100000; k += k < every_from ? 1 : 5) {
    long n0 = pl_alloc_count();
    pl_alloc_fail_after(k);
    http_resp h = http(method, path, body);
    int reached = pl_alloc_count() - n0 > k;
    pl_alloc_fail_after(-1);
    res.runs++;
    char why[512] = "";
    int v = SW_BAD;
    if (!h.status)
      snprintf(why, sizeof why, "the connection was dropped");
    else if (!h.complete)
      snprintf(why, sizeof why, "the body was cut");
    else
      v = judge(ctx, &h, why, sizeof why);
    CHECK(v != SW_BAD, "%s k=%d: %s; status %d, body: %.400s", name, k, why, h.status,
          h.body ? h.body : "(none)");
    res.oom += v == SW_OOM;
    res.full += v == SW_FULL;
    free(h.body);
    CHECK(sw_wait_idle(), "%s k=%d: the engine did not drain", name, k);
    size_t live = 0;
    for (int i = 0; i < 2000 && (live = pl_alloc_live_count()) != live0; i++)
      usleep(1000);
    CHECK(live == live0, "%s k=%d: %zu blocks live after the request, %zu before", name, k,
          live, live0);
    if (live != live0) { /* what this request left, then stop: every later k would fail too */
      printf("%s k=%d: blocks allocated by this request and still live:\n", name, k);
      pl_alloc_trace_dump(stdout, n0);
      break;
    }
    if (!reached) { /* no failure was injected: this one must be the full answer */
      CHECK(v == SW_FULL, "%s k=%d: no allocation failed, yet the answer was not in full", name,
            k);
      break;
    }
  }
  pl_alloc_trace(0);
  return res;
}

static sw_result sw_sweep(const char *name, const char *path, const char *body, int every_from,
                          sw_judge_fn judge, void *ctx) {
  return sw_sweep_method(name, "POST", path, body, every_from, judge, ctx);
}
/* The sweeps' engine (TinyStories 280K, ChatML template, 4 MiB of KV, 1 thread; tune, when
 * given, changes its parameters) and a server on a free port serving it as "tiny"; sets
 * sw_port. 0, or -1 after a failed CHECK. */
static int sw_start_tuned(pl_engine **e, pl_server **s, void (*tune)(pl_engine_params *)) {
  static char tmpl[65536];
  *e = NULL;
  *s = NULL;
  FILE *f = fopen(data_path("chat-templates/chatml-openhermes-2.5.jinja"), "rb");
  CHECK(f != NULL, "template");
  if (!f)
    return -1;
  tmpl[fread(tmpl, 1, sizeof tmpl - 1, f)] = 0;
  fclose(f);
  pl_engine_params ep;
  pl_engine_params_default(&ep);
  ep.model_path = data_path("models/tinystories-280K.gguf");
  ep.chat_template = tmpl;
  ep.n_threads = 1;
  ep.kv_cache_bytes = 4u << 20;
  if (tune) /* e.g. speculative decoding */
    tune(&ep);
  CHECK(pl_engine_create(&ep, e) == 0, "engine: %s", pl_last_error());
  if (!*e)
    return -1;
  pl_server_config cfg;
  pl_server_config_default(&cfg);
  cfg.port = 0;
  cfg.served_model_name = "tiny";
  CHECK(pl_server_start(&cfg, s) == 0, "start: %s", pl_last_error()); /* jansson: counted */
  CHECK(*s && pl_server_attach_engine(*s, *e) == 0, "attach: %s", pl_last_error());
  if (!*s)
    return -1;
  sw_port = pl_server_port(*s);
  return 0;
}

static int sw_start(pl_engine **e, pl_server **s) { return sw_start_tuned(e, s, NULL); }

#endif
