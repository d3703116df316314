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
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "pagellm.h"
#include "server/server.h"
#include "server_sweep.h"
#include "util/alloc.h"

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

/* jansson through the counting allocator, so that its allocations fail too. */
static void *j_malloc(size_t n) { return pl_malloc(n); }
static void j_free(void *p) { pl_free(p); }

static const char *const CHAT =
    "{\"model\":\"tiny\",\"messages\":[{\"role\":\"system\",\"content\":\"You tell stories.\"},"
    "{\"role\":\"user\",\"content\":\"Once upon a time there was a little dog\"}],"
    "\"max_tokens\":6,\"temperature\":0,\"stream\":%s}";

typedef struct {
  int stream;
  answer ref;
} chat_case;

/* A clean out-of-memory report, or the reference answer (see the top of the file). */
static int judge(void *ctx, const http_resp *hr, char *why, size_t cap) {
  const chat_case *cc = ctx;
  http_resp h = *hr; /* parse_stream tokenizes the body in place */
  answer a;
  if ((cc->stream && h.status == 200 ? parse_stream(&h, &a) : parse_whole(&h, &a)) != 0) {
    snprintf(why, cap, "not a well-formed answer");
    return SW_BAD;
  }
  if (a.error) {
    if (h.status != 200 && h.status != 500 && h.status != 503)
      snprintf(why, cap, "an error with status %d", h.status);
    else if (!strstr(a.error_msg, "out of memory"))
      snprintf(why, cap, "error '%s' does not say out of memory", a.error_msg);
    else if (strncmp(cc->ref.text, a.text, strlen(a.text)) != 0)
      snprintf(why, cap, "text before the error '%s' is not a prefix of '%s'", a.text,
               cc->ref.text);
    else
      return SW_OOM;
    return SW_BAD;
  }
  if (h.status != 200 || strcmp(a.text, cc->ref.text) || strcmp(a.finish, cc->ref.finish)) {
    snprintf(why, cap, "'%s' (%s) instead of '%s' (%s)", a.text, a.finish, cc->ref.text,
             cc->ref.finish);
    return SW_BAD;
  }
  return SW_FULL;
}

int main(void) {
  json_set_alloc_funcs(j_malloc, j_free);
  pl_engine *e = NULL;
  pl_server *s = NULL;
  if (sw_start(&e, &s) < 0) {
    pl_server_destroy(s);
    pl_engine_destroy(e);
    return check_summary("test_server_allocfail");
  }

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
    chat_case cc = {.stream = stream, .ref = ref};
    sw_result r = sw_sweep(stream ? "stream" : "whole", "/v1/chat/completions", body, 1 << 30,
                           judge, &cc);
    int runs = r.runs;
    printf("%s: %d allocation points tried: %d answered out of memory, %d answered in full\n",
           stream ? "stream" : "whole", runs, r.oom, r.full);
    CHECK(runs > 50, "only %d allocations in a whole request?", runs);
    CHECK(r.oom > runs / 2, "only %d of %d injected failures were reported", r.oom, runs);
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
