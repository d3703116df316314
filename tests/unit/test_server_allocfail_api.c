/* Allocation failure at every allocation point of one request, for the endpoints and options
 * that test_server_allocfail (one chat request) does not reach: /v1/completions with n = 3
 * and logprobs, echo of a batch of two prompts (token ids whole, text streamed),
 * /v1/chat/completions with n = 2 and top_logprobs, each whole and streamed (with usage); a
 * forced tool call (tool grammar, tool-call parser) whole and streamed; a guided_json schema
 * given as a string; seeded sampling (n = 2) with stop strings, penalties and a logit bias,
 * whole and streamed; then /tokenize (text and messages) and /detokenize; the web UI's page,
 * an asset and the KV snapshot; then, on engines with speculative decoding (n-gram proposals,
 * and a draft model), completions whole and streamed and a chat with n = 2. The in-process
 * server runs TinyStories 280K with the ChatML template, and the counting allocator fails its
 * k-th allocation for every k (under ASan: every k < 300, then every 5th) until the request
 * runs without reaching k (server_sweep.h).
 *
 * Each answer must be one of:
 *  - 500/503 with an OpenAI error object ({message, type, param, code}) saying "out of
 *    memory";
 *  - a stream that ends with exactly one error frame saying so, then "data: [DONE]", every
 *    choice's text before it a prefix of that choice's reference text;
 *  - the reference answer: the same request with no failure (id, created and the prefix-cache
 *    count left out; logprobs within 1e-3, as a cached prefix may change the last bits).
 * Never a 4xx, a dropped connection or a cut stream, and a finish_reason is always stop,
 * length or tool_calls, never "error". After each the engine drains and no allocation is left
 * behind (the sweep driver; ASan's leak check covers jansson's blocks at exit). The run with
 * no failure injected, which ends each sweep, must be the reference answer. */
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include "pagellm.h"
#include "server/server.h"
#include "server_sweep.h"
#include "util/alloc.h"

/* ---- comparing answers -------------------------------------------------------------------- */

/* a and b equal, numbers within 1e-3 (logprobs), ignoring the keys that differ per request. */
static int similar(json_t *a, json_t *b) {
  if (json_is_number(a) && json_is_number(b)) {
    if (json_is_integer(a) && json_is_integer(b))
      return json_integer_value(a) == json_integer_value(b);
    return fabs(json_number_value(a) - json_number_value(b)) <= 1e-3;
  }
  if (json_typeof(a) != json_typeof(b))
    return 0;
  if (json_is_array(a)) {
    if (json_array_size(a) != json_array_size(b))
      return 0;
    for (size_t i = 0; i < json_array_size(a); i++)
      if (!similar(json_array_get(a, i), json_array_get(b, i)))
        return 0;
    return 1;
  }
  if (json_is_object(a)) {
    const char *k;
    json_t *v;
    static const char *const skip[] = {"id", "created", "cached_tokens", NULL};
    size_t na = 0, nb = 0;
    json_object_foreach(a, k, v) {
      int s = 0;
      for (int i = 0; skip[i]; i++)
        s |= !strcmp(k, skip[i]);
      if (s)
        continue;
      na++;
      json_t *w = json_object_get(b, k);
      if (!w || !similar(v, w))
        return 0;
    }
    json_object_foreach(b, k, v) {
      int s = 0;
      for (int i = 0; skip[i]; i++)
        s |= !strcmp(k, skip[i]);
      nb += !s;
    }
    return na == nb;
  }
  return json_equal(a, b);
}

static int finish_ok(json_t *f) {
  const char *s = json_string_value(f);
  return s && (!strcmp(s, "stop") || !strcmp(s, "length") || !strcmp(s, "tool_calls"));
}

/* Every choice of a whole answer ended normally. */
static int whole_finishes_ok(json_t *root) {
  json_t *choices = json_object_get(root, "choices");
  if (!json_is_array(choices) || json_array_size(choices) == 0)
    return 0;
  for (size_t i = 0; i < json_array_size(choices); i++)
    if (!finish_ok(json_object_get(json_array_get(choices, i), "finish_reason")))
      return 0;
  return 1;
}

/* An OpenAI error body for our failure: 500/503, {message, type, param, code}. */
static int oom_error(const http_resp *h, json_t *root, char *why, size_t cap) {
  json_t *err = json_object_get(root, "error");
  const char *msg = json_string_value(json_object_get(err, "message"));
  if (h->status != 500 && h->status != 503)
    snprintf(why, cap, "status %d for an error", h->status);
  else if (!msg || !strstr(msg, "out of memory"))
    snprintf(why, cap, "the error does not say out of memory");
  else if (!json_is_string(json_object_get(err, "type")) || !json_object_get(err, "param") ||
           !json_object_get(err, "code"))
    snprintf(why, cap, "the error object lacks type, param or code");
  else
    return 1;
  return 0;
}

/* ---- streams ------------------------------------------------------------------------------ */

/* A stream folded into one value: {"choices": [{"text", "finish_reason", "logprobs"}],
 * "usage"}, choices by index. Chat logprobs are the concatenated content entries; completion
 * logprobs the concatenated parallel arrays. *error is set to the error frame's message (the
 * stream's only one, right before [DONE]) or NULL. NULL when the stream is malformed. */
static json_t *fold_stream(char *body, int chat, char *error, size_t error_cap, char *why,
                           size_t cap) {
  json_t *sum = json_pack("{s:[],s:n}", "choices", "usage");
  json_t *choices = json_object_get(sum, "choices");
  int done = 0, errors = 0;
  error[0] = 0;
  char *save = NULL;
  for (char *line = strtok_r(body, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
    if (line[0] == ':')
      continue; /* keep-alive comment */
    if (done) {
      snprintf(why, cap, "'%.60s' after [DONE]", line);
      goto bad;
    }
    if (strncmp(line, "data: ", 6) != 0) {
      snprintf(why, cap, "not an SSE data line: '%.60s'", line);
      goto bad;
    }
    if (!strcmp(line + 6, "[DONE]")) {
      done = 1;
      continue;
    }
    if (errors) {
      snprintf(why, cap, "a frame after the error frame: '%.100s'", line);
      goto bad;
    }
    json_t *f = json_loads(line + 6, 0, NULL);
    if (!f) {
      snprintf(why, cap, "a frame is not JSON: '%.100s'", line);
      goto bad;
    }
    json_t *err = json_object_get(f, "error");
    if (err) {
      errors++;
      const char *m = json_string_value(json_object_get(err, "message"));
      snprintf(error, error_cap, "%s", m ? m : "(no message)");
      json_decref(f);
      continue;
    }
    json_t *usage = json_object_get(f, "usage");
    if (usage && !json_is_null(usage))
      json_object_set(sum, "usage", usage);
    json_t *cs = json_object_get(f, "choices");
    for (size_t i = 0; i < json_array_size(cs); i++) {
      json_t *c = json_array_get(cs, i);
      json_int_t idx = json_integer_value(json_object_get(c, "index"));
      while ((json_int_t)json_array_size(choices) <= idx)
        json_array_append_new(choices, json_pack("{s:s,s:n,s:n}", "text", "", "finish_reason",
                                                 "logprobs"));
      json_t *acc = json_array_get(choices, (size_t)idx);
      json_t *t = chat ? json_object_get(json_object_get(c, "delta"), "content")
                       : json_object_get(c, "text");
      if (json_is_string(t)) {
        char *joined = NULL;
        if (asprintf(&joined, "%s%s", json_string_value(json_object_get(acc, "text")),
                     json_string_value(t)) >= 0)
          json_object_set_new(acc, "text", json_string(joined));
        free(joined);
      }
      json_t *calls = chat ? json_object_get(json_object_get(c, "delta"), "tool_calls") : NULL;
      if (json_is_array(calls)) {
        json_t *have = json_object_get(acc, "tool_calls");
        if (!have)
          json_object_set_new(acc, "tool_calls", have = json_array());
        json_array_extend(have, calls);
      }
      json_t *fr = json_object_get(c, "finish_reason");
      if (fr && !json_is_null(fr)) {
        if (!finish_ok(fr)) {
          snprintf(why, cap, "finish_reason '%s'",
                   json_is_string(fr) ? json_string_value(fr) : "?");
          json_decref(f);
          goto bad;
        }
        json_object_set(acc, "finish_reason", fr);
      }
      json_t *lp = json_object_get(c, "logprobs");
      if (lp && !json_is_null(lp)) {
        json_t *have = json_object_get(acc, "logprobs");
        if (chat) {
          if (json_is_null(have))
            json_object_set_new(acc, "logprobs", have = json_array());
          json_array_extend(have, json_object_get(lp, "content"));
        } else {
          if (json_is_null(have))
            json_object_set_new(acc, "logprobs", have = json_object());
          const char *k;
          json_t *arr;
          json_object_foreach(lp, k, arr) {
            json_t *dst = json_object_get(have, k);
            if (!dst)
              json_object_set_new(have, k, dst = json_array());
            json_array_extend(dst, arr);
          }
        }
      }
    }
    json_decref(f);
  }
  if (!done) {
    snprintf(why, cap, "no [DONE]");
    goto bad;
  }
  return sum;
bad:
  json_decref(sum);
  return NULL;
}

/* ---- the cases ---------------------------------------------------------------------------- */

typedef struct {
  const char *name, *path;
  const char *method; /* NULL: POST */
  char body[1024];
  int stream, chat;
  int page; /* a web UI GET: a 200 must be the reference body, byte for byte (1), or a
              * snapshot with the reference's keys and types (2) */
  const char *finish; /* the reference's first finish_reason must be this (NULL: any) */
  json_t *ref;        /* the answer with no failure: the body, or the folded stream */
} api_case;

static int judge(void *ctx, const http_resp *h, char *why, size_t cap) {
  api_case *c = ctx;
  if (c->page == 2 && h->status == 200) { /* a snapshot: the same shape, its figures move */
    json_t *got = json_loadb(h->body, h->body_len, 0, NULL);
    json_t *want = json_loads(json_string_value(c->ref), 0, NULL);
    int v = SW_BAD;
    const char *k;
    json_t *x;
    if (got && want && json_object_size(got) == json_object_size(want)) {
      v = SW_FULL;
      json_object_foreach(want, k, x)
        if (!json_object_get(got, k) || json_typeof(json_object_get(got, k)) != json_typeof(x))
          v = SW_BAD;
    }
    if (v == SW_BAD)
      snprintf(why, cap, "a 200 that is not a whole snapshot");
    json_decref(got);
    json_decref(want);
    return v;
  }
  if (c->page && h->status == 200) {
    if (h->body_len == json_string_length(c->ref) &&
        !memcmp(h->body, json_string_value(c->ref), h->body_len))
      return SW_FULL;
    snprintf(why, cap, "a 200 that is not the page (%zu bytes)", h->body_len);
    return SW_BAD;
  }
  if (c->stream && h->status == 200) {
    char error[512];
    json_t *sum = fold_stream(h->body, c->chat, error, sizeof error, why, cap);
    if (!sum)
      return SW_BAD;
    int v = SW_BAD;
    if (error[0]) {
      /* the text that went out before the error is the reference's beginning */
      json_t *got = json_object_get(sum, "choices"), *want = json_object_get(c->ref, "choices");
      v = strstr(error, "out of memory") ? SW_OOM : SW_BAD;
      if (v == SW_BAD)
        snprintf(why, cap, "the error frame says '%s'", error);
      for (size_t i = 0; v == SW_OOM && i < json_array_size(got); i++) {
        const char *g = json_string_value(json_object_get(json_array_get(got, i), "text"));
        const char *w = json_string_value(json_object_get(json_array_get(want, i), "text"));
        if (!w || strncmp(w, g, strlen(g)) != 0) {
          snprintf(why, cap, "choice %zu: '%s' before the error is not a prefix of '%s'", i, g,
                   w ? w : "(no such choice)");
          v = SW_BAD;
        }
      }
    } else if (similar(sum, c->ref)) {
      v = SW_FULL;
    } else {
      char *d = json_dumps(sum, JSON_COMPACT);
      snprintf(why, cap, "not the reference stream: %.300s", d ? d : "?");
      free(d);
    }
    json_decref(sum);
    return v;
  }
  json_t *root = json_loadb(h->body, h->body_len, 0, NULL);
  int v = SW_BAD;
  if (!root)
    snprintf(why, cap, "the body is not JSON");
  else if (h->status != 200)
    v = oom_error(h, root, why, cap) ? SW_OOM : SW_BAD;
  else if (json_object_get(root, "choices") && !whole_finishes_ok(root))
    snprintf(why, cap, "a finish_reason is not stop, length or tool_calls");
  else if (!similar(root, c->ref))
    snprintf(why, cap, "a 200 that is not the reference answer");
  else
    v = SW_FULL;
  json_decref(root);
  return v;
}

/* The answer with no failure injected; 0 when it is well-formed. */
static int reference(api_case *c) {
  http_resp h = http(c->method ? c->method : "POST", c->path, c->page ? NULL : c->body);
  char why[256] = "", error[256];
  if (h.status == 200 && h.complete) {
    if (c->stream) {
      c->ref = fold_stream(h.body, c->chat, error, sizeof error, why, sizeof why);
      if (c->ref && error[0]) {
        json_decref(c->ref);
        c->ref = NULL;
      }
    } else if (c->page) { /* the body as a JSON string, to compare bytes */
      c->ref = json_stringn_nocheck(h.body, h.body_len);
    } else {
      c->ref = json_loadb(h.body, h.body_len, 0, NULL);
    }
  }
  CHECK(c->ref != NULL, "%s: reference: status %d %s %.300s", c->name, h.status, why,
        h.body ? h.body : "");
  if (c->ref && c->finish) { /* the case tests what it says (e.g. a tool call was made) */
    json_t *c0 = json_array_get(json_object_get(c->ref, "choices"), 0);
    const char *fr = json_string_value(json_object_get(c0, "finish_reason"));
    char *d = json_dumps(c->ref, JSON_COMPACT);
    CHECK(fr && !strcmp(fr, c->finish), "%s: reference ends with %s, not %s: %.600s", c->name,
          fr ? fr : "null", c->finish, d ? d : "");
    free(d);
  }
  free(h.body);
  return c->ref ? 0 : -1;
}

/* Every allocation point; under ASan (about 10x slower) every point below 300, then every
 * 5th, to keep CI's sanitizer run short. */
#if defined(__SANITIZE_ADDRESS__)
#define SWEEP_EVERY_FROM 300
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SWEEP_EVERY_FROM 300
#endif
#endif
#ifndef SWEEP_EVERY_FROM
#define SWEEP_EVERY_FROM (1 << 30)
#endif

static const char *const MESSAGES =
    "[{\"role\":\"system\",\"content\":\"You tell stories.\"},"
    "{\"role\":\"user\",\"content\":\"Once upon a time there was a little dog\"}]";

/* Sweep each case after its reference answer. A page makes few allocations of ours (the
 * request's record); every other case must reach many. */
static void run_cases(api_case *cases, int n_cases) {
  for (int i = 0; i < n_cases; i++) {
    api_case *c = &cases[i];
    if (reference(c) < 0)
      continue;
    sw_result r = sw_sweep_method(c->name, c->method ? c->method : "POST", c->path,
                                  c->page ? NULL : c->body, SWEEP_EVERY_FROM, judge, c);
    printf("%s: %d runs: %d answered out of memory, %d in full\n", c->name, r.runs, r.oom,
           r.full);
    CHECK(r.runs > (c->page ? 1 : 20), "%s: only %d allocations?", c->name, r.runs);
    CHECK(r.oom >= r.runs / 2, "%s: only %d of %d injected failures were reported", c->name,
          r.oom, r.runs);
    json_decref(c->ref);
  }
}

/* A prompt that repeats itself, so that n-gram lookup finds proposals. */
#define SPEC_PROMPT "the dog ran and the cat ran and the dog ran and the cat ran and the dog"

static void spec_ngram(pl_engine_params *p) {
  p->spec_method = PL_SPEC_NGRAM;
  p->num_speculative_tokens = 4;
}

static void spec_draft(pl_engine_params *p) {
  p->spec_method = PL_SPEC_DRAFT;
  p->num_speculative_tokens = 3;
  p->draft_model_path = p->model_path;
}

/* pagellm:spec_decode_num_drafts_total from /metrics (-1 when absent). */
static double spec_drafts(void) {
  http_resp h = http("GET", "/metrics", NULL);
  const char *k = h.body ? strstr(h.body, "pagellm:spec_decode_num_drafts_total{") : NULL;
  const char *v = k ? strchr(k, '}') : NULL;
  double d = v ? atof(v + 1) : -1;
  free(h.body);
  return d;
}

int main(void) {
  pl_engine *e = NULL;
  pl_server *s = NULL;
  if (sw_start(&e, &s) < 0) {
    pl_server_destroy(s);
    pl_engine_destroy(e);
    return check_summary("test_server_allocfail_api");
  }

  /* token ids for the id prompt and /detokenize */
  http_resp t = http("POST", "/tokenize", "{\"prompt\":\"The little cat\"}");
  json_t *tj = t.status == 200 ? json_loads(t.body, 0, NULL) : NULL;
  char *ids = tj ? json_dumps(json_object_get(tj, "tokens"), JSON_COMPACT) : NULL;
  CHECK(ids != NULL, "tokenize: %d %s", t.status, t.body);
  free(t.body);
  json_decref(tj);
  t = http("POST", "/tokenize", "{\"prompt\":\"One day a big bird\"}");
  tj = t.status == 200 ? json_loads(t.body, 0, NULL) : NULL;
  char *ids2 = tj ? json_dumps(json_object_get(tj, "tokens"), JSON_COMPACT) : NULL;
  CHECK(ids2 != NULL, "tokenize: %d %s", t.status, t.body);
  free(t.body);
  json_decref(tj);
  if (!ids || !ids2)
    return check_summary("test_server_allocfail_api");

  api_case cases[24];
  int n_cases = 0;
  for (int stream = 0; stream <= 1; stream++) {
    const char *so = stream ? ",\"stream\":true,\"stream_options\":{\"include_usage\":true}" : "";
    api_case *c = &cases[n_cases++];
    *c = (api_case){.name = stream ? "completions n=3 logprobs, stream"
                                   : "completions n=3 logprobs",
                    .path = "/v1/completions", .stream = stream};
    snprintf(c->body, sizeof c->body, "{\"model\":\"tiny\",\"prompt\":\"Once upon a time\","
             "\"n\":3,\"logprobs\":2,\"max_tokens\":3,\"temperature\":0%s}", so);
    c = &cases[n_cases++];
    *c = (api_case){.name = stream ? "completions echo, stream" : "completions echo",
                    .path = "/v1/completions", .stream = stream};
    /* a batch of two prompts: token ids whole (echo detokenizes them), text streamed */
    if (stream)
      snprintf(c->body, sizeof c->body, "{\"model\":\"tiny\",\"prompt\":[\"Once upon a time\","
               "\"The little cat\"],\"echo\":true,\"max_tokens\":3,\"temperature\":0%s}", so);
    else
      snprintf(c->body, sizeof c->body, "{\"model\":\"tiny\",\"prompt\":[%s,%s],\"echo\":true,"
               "\"max_tokens\":3,\"temperature\":0}", ids, ids2);
    c = &cases[n_cases++];
    *c = (api_case){.name = stream ? "chat n=2 top_logprobs, stream" : "chat n=2 top_logprobs",
                    .path = "/v1/chat/completions", .stream = stream, .chat = 1};
    snprintf(c->body, sizeof c->body, "{\"model\":\"tiny\",\"messages\":%s,\"n\":2,"
             "\"logprobs\":true,\"top_logprobs\":2,\"max_tokens\":3,\"temperature\":0%s}",
             MESSAGES, so);
  }
  /* a forced tool call (a grammar from the tools, parsed back into tool_calls) */
  for (int stream = 0; stream <= 1; stream++) {
    api_case *c = &cases[n_cases++];
    *c = (api_case){.name = stream ? "chat tool_choice required, stream"
                                   : "chat tool_choice required",
                    .path = "/v1/chat/completions", .stream = stream, .chat = 1,
                    .finish = "tool_calls"};
    snprintf(c->body, sizeof c->body, "{\"model\":\"tiny\",\"messages\":%s,\"tools\":[{\"type\":"
             "\"function\",\"function\":{\"name\":\"f\",\"parameters\":{\"type\":\"object\","
             "\"properties\":{}}}}],\"tool_choice\":\"required\",\"parallel_tool_calls\":false,"
             "\"max_tokens\":60,\"temperature\":0%s}", MESSAGES, stream ? ",\"stream\":true" : "");
  }
  /* structured output from a schema given as a JSON string */
  api_case *c = &cases[n_cases++];
  *c = (api_case){.name = "completions guided_json", .path = "/v1/completions",
                  .finish = "stop"};
  snprintf(c->body, sizeof c->body, "{\"model\":\"tiny\",\"prompt\":\"Once upon a time\","
           "\"guided_json\":\"{\\\"type\\\":\\\"object\\\",\\\"properties\\\":{\\\"a\\\":"
           "{\\\"type\\\":\\\"boolean\\\"}},\\\"required\\\":[\\\"a\\\"]}\","
           "\"max_tokens\":24,\"temperature\":0}");
  /* seeded sampling with stop strings, penalties and a logit bias (the sampler's and the stop
   * matcher's allocations), whole and streamed */
  for (int stream = 0; stream <= 1; stream++) {
    c = &cases[n_cases++];
    *c = (api_case){.name = stream ? "completions sampled, stop, penalties, stream"
                                   : "completions sampled, stop, penalties",
                    .path = "/v1/completions", .stream = stream};
    snprintf(c->body, sizeof c->body, "{\"model\":\"tiny\",\"prompt\":\"Once upon a time\","
             "\"n\":2,\"temperature\":0.9,\"top_p\":0.9,\"seed\":7,\"max_tokens\":12,"
             "\"stop\":[\" the\",\"\\n\"],\"presence_penalty\":0.5,\"frequency_penalty\":0.3,"
             "\"repetition_penalty\":1.1,\"logit_bias\":{\"13\":-2}%s}",
             stream ? ",\"stream\":true" : "");
  }
  c = &cases[n_cases++];
  *c = (api_case){.name = "tokenize text", .path = "/tokenize"};
  snprintf(c->body, sizeof c->body, "{\"prompt\":\"Once upon a time there was a dog\","
           "\"return_token_strs\":true}");
  c = &cases[n_cases++];
  *c = (api_case){.name = "tokenize messages", .path = "/tokenize"};
  snprintf(c->body, sizeof c->body, "{\"messages\":%s,\"add_generation_prompt\":true}", MESSAGES);
  c = &cases[n_cases++];
  *c = (api_case){.name = "detokenize", .path = "/detokenize"};
  snprintf(c->body, sizeof c->body, "{\"tokens\":%s}", ids);
  free(ids);
  free(ids2);

  /* the web UI: its page and an asset (static: a 200 or our 500, nothing in between) and
   * the KV map's snapshot (rendered from the engine thread's frame) */
  c = &cases[n_cases++];
  *c = (api_case){.name = "web UI page", .method = "GET", .path = "/", .page = 1};
  c = &cases[n_cases++];
  *c = (api_case){.name = "web UI asset", .method = "GET", .path = "/ui/app.js", .page = 1};
  c = &cases[n_cases++];
  *c = (api_case){.name = "web UI KV snapshot", .method = "GET", .path = "/kv/snapshot",
                  .page = 2};
  run_cases(cases, n_cases);
  /* the server still serves after all of it */
  http_resp h = http("GET", "/health", NULL);
  CHECK_EQ_INT(h.status, 200);
  free(h.body);
  pl_server_destroy(s);
  pl_engine_destroy(e);

  /* speculative decoding: n-gram proposals, then a draft model (the same small model, so
   * its greedy proposals are accepted); greedy, so each answer is one reference */
  for (int m = 0; m < 2; m++) {
    if (sw_start_tuned(&e, &s, m ? spec_draft : spec_ngram) < 0)
      break;
    n_cases = 0;
    for (int stream = 0; stream <= 1; stream++) {
      c = &cases[n_cases++];
      *c = (api_case){.name = m ? (stream ? "draft model completions, stream"
                                          : "draft model completions")
                                : (stream ? "n-gram completions, stream" : "n-gram completions"),
                      .path = "/v1/completions", .stream = stream};
      snprintf(c->body, sizeof c->body, "{\"model\":\"tiny\",\"prompt\":\"%s\","
               "\"max_tokens\":24,\"temperature\":0%s}", SPEC_PROMPT,
               stream ? ",\"stream\":true" : "");
    }
    c = &cases[n_cases++];
    *c = (api_case){.name = m ? "draft model chat n=2" : "n-gram chat n=2",
                    .path = "/v1/chat/completions", .chat = 1};
    snprintf(c->body, sizeof c->body, "{\"model\":\"tiny\",\"messages\":[{\"role\":\"user\","
             "\"content\":\"%s\"}],\"n\":2,\"max_tokens\":16,\"temperature\":0}",
             SPEC_PROMPT);
    run_cases(cases, n_cases);
    /* the references speculated (else this tested plain decoding) */
    CHECK(spec_drafts() > 0, "speculative decoding (%s) made no drafts", m ? "draft" : "n-gram");
    pl_server_destroy(s);
    pl_engine_destroy(e);
  }
  return check_summary("test_server_allocfail_api");
}
