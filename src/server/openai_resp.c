/* OpenAI-shaped responses and SSE chunks (see openai_resp.h). Bodies are built as jansson
 * trees and dumped compactly; one choice accumulator per choice holds the text, the
 * logprobs and the finish reason until the end (non-streaming) or only the running counters
 * (streaming). */
#include "server/openai_resp.h"

#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "server/strbuf.h"
#include "server/tool_calls.h"
#include "util/alloc.h"

struct pl_oai_choice_acc {
  pl_strbuf text;
  json_t *lp;            /* chat: [entries]; completions: {tokens, token_logprobs, ...} */
  pl_finish_reason finish;
  const char *error;     /* points into err_buf */
  char err_buf[512];
  int completion_tokens;
  long long text_offset; /* completions logprobs: characters before the next token */
  int done;
  pl_tool_parser *tp;    /* streaming chat with tools: the choice's tool-call parser */
};

/* ---- helpers ----------------------------------------------------------------------------- */

json_t *pl_oai_lossy_string(const char *s, size_t len) {
  const unsigned char *u = (const unsigned char *)s;
  size_t i = 0;
  while (i < len) {
    int k = pl_utf8_seq(u + i, len - i);
    if (!k || u[i] == 0)
      break;
    i += (size_t)k;
  }
  if (i == len)
    return json_stringn(s, len);
  pl_strbuf b = {0};
  for (i = 0; i < len;) {
    int k = pl_utf8_seq(u + i, len - i);
    if (!k || u[i] == 0) {
      if (pl_strbuf_append(&b, "\xEF\xBF\xBD", 3) < 0)
        goto oom;
      i++;
    } else {
      if (pl_strbuf_append(&b, s + i, (size_t)k) < 0)
        goto oom;
      i += (size_t)k;
    }
  }
  json_t *v = json_stringn(b.data ? b.data : "", b.len);
  pl_strbuf_free(&b);
  return v;
oom:
  pl_strbuf_free(&b);
  return NULL;
}

static long long utf8_chars(const char *s) {
  long long n = 0;
  for (; *s; s++)
    n += ((unsigned char)*s & 0xC0) != 0x80;
  return n;
}

static json_t *lp_real(float lp) {
  double d = isfinite(lp) ? lp : -9999.0;
  return json_real(d);
}

static int dump_to(const char *buf, size_t size, void *data) {
  return pl_strbuf_append(data, buf, size) < 0 ? -1 : 0;
}

/* Straight into out: no intermediate string (whose allocator would be jansson's). */
int pl_oai_dump(const json_t *v, pl_strbuf *out) {
  size_t len0 = out->len;
  if (json_dump_callback(v, dump_to, out, JSON_COMPACT | JSON_REAL_PRECISION(9)) != 0) {
    out->len = len0; /* no half-written value */
    if (out->data)
      out->data[len0] = 0;
    return PL_ENOMEM;
  }
  return 0;
}

/* OpenAI's values only: an aborted or failed choice is answered with an error instead
 * (pl_oai_resp_failed, resp_sse_event_), so "abort" and "error" never reach a client. */
static const char *finish_str(pl_finish_reason f) {
  switch (f) {
  case PL_FINISH_STOP: return "stop";
  case PL_FINISH_LENGTH: return "length";
  default: return NULL;
  }
}

/* What a client that is still there hears of an abort: the engine aborts a request whose
 * client is connected only when the server shuts down (a gone client hears nothing). */
static int abort_error(pl_oai_error *err) {
  int rc = pl_oai_errorf(err, 503, NULL, "the request was aborted because the server is "
                         "shutting down");
  err->code = "server_shutdown";
  return rc;
}

static json_t *finish_json(pl_finish_reason f) {
  const char *s = finish_str(f);
  return s ? json_string(s) : json_null();
}

static void make_id(char *buf, size_t cap, const char *prefix) {
  static atomic_ullong counter;
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  unsigned long long x = (unsigned long long)ts.tv_nsec ^ ((unsigned long long)ts.tv_sec << 30) ^
                         ((unsigned long long)getpid() << 48) ^
                         (atomic_fetch_add(&counter, 1) * 0x9E3779B97F4A7C15ULL);
  unsigned long long h[2];
  for (int i = 0; i < 2; i++) { /* splitmix64 */
    x += 0x9E3779B97F4A7C15ULL;
    unsigned long long z = x;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    h[i] = z ^ (z >> 31);
  }
  snprintf(buf, cap, "%s%016llx%08llx", prefix, h[0], h[1] & 0xffffffffULL);
}

/* ---- setup ------------------------------------------------------------------------------- */

int pl_oai_resp_init(pl_oai_resp *r, const pl_oai_request *req, const char *model, int n_prompts,
                     pl_oai_token_bytes_fn token_bytes, void *token_ctx) {
  memset(r, 0, sizeof *r);
  r->req = req;
  r->model = model;
  r->n_prompts = n_prompts;
  r->n_choices = n_prompts * req->n;
  r->created = (long long)time(NULL);
  r->token_bytes = token_bytes;
  r->token_ctx = token_ctx;
  make_id(r->id, sizeof r->id, req->kind == PL_OAI_CHAT ? "chatcmpl-" : "cmpl-");
  r->ch = pl_calloc((size_t)r->n_choices, sizeof *r->ch);
  r->prompt_tokens = pl_calloc((size_t)n_prompts, sizeof *r->prompt_tokens);
  r->cached_tokens = pl_calloc((size_t)n_prompts, sizeof *r->cached_tokens);
  r->echo = pl_calloc((size_t)n_prompts, sizeof *r->echo);
  r->echo_len = pl_calloc((size_t)n_prompts, sizeof *r->echo_len);
  if (!r->ch || !r->prompt_tokens || !r->cached_tokens || !r->echo || !r->echo_len) {
    pl_oai_resp_free(r);
    return PL_ENOMEM;
  }
  return 0;
}

void pl_oai_resp_free(pl_oai_resp *r) {
  if (r->ch)
    for (int c = 0; c < r->n_choices; c++) {
      pl_strbuf_free(&r->ch[c].text);
      pl_tool_parser_free(r->ch[c].tp);
      if (r->ch[c].lp)
        json_decref(r->ch[c].lp);
    }
  pl_free(r->ch);
  pl_free(r->prompt_tokens);
  pl_free(r->cached_tokens);
  pl_free(r->echo);
  pl_free(r->echo_len);
  memset(r, 0, sizeof *r);
}

void pl_oai_resp_set_echo(pl_oai_resp *r, int p, const char *text, size_t len) {
  if (p >= 0 && p < r->n_prompts) {
    r->echo[p] = text;
    r->echo_len[p] = len;
  }
}

/* ---- logprobs ---------------------------------------------------------------------------- */

static json_t *token_string(pl_oai_resp *r, int32_t id, json_t **bytes_out) {
  size_t len = 0;
  const char *b = r->token_bytes ? r->token_bytes(r->token_ctx, id, &len) : NULL;
  if (!b) {
    b = "";
    len = 0;
  }
  if (bytes_out) {
    json_t *arr = json_array();
    for (size_t i = 0; arr && i < len; i++)
      json_array_append_new(arr, json_integer((unsigned char)b[i]));
    *bytes_out = arr;
  }
  return pl_oai_lossy_string(b, len);
}

/* Chat: one {"token","logprob","bytes","top_logprobs"} per token, appended to arr. A failed
 * allocation leaves a partial entry (json_object_set_new fails silently); the caller's
 * failure count voids it. Every value is owned by exactly one place at a time: set_new and
 * append_new take theirs even when they fail. */
/* {"token", "logprob", "bytes"} of one token, or NULL (nothing left allocated) */
static json_t *chat_lp_entry(pl_oai_resp *r, int32_t token, float logprob) {
  json_t *bytes = NULL, *e = json_object();
  json_t *tok = token_string(r, token, &bytes);
  if (!e || !tok || !bytes) {
    json_decref(e);
    json_decref(tok);
    json_decref(bytes);
    return NULL;
  }
  json_object_set_new(e, "token", tok);
  json_object_set_new(e, "logprob", lp_real(logprob));
  json_object_set_new(e, "bytes", bytes);
  return e;
}

static int chat_lp_append(pl_oai_resp *r, const pl_job_event *ev, json_t *arr) {
  for (int t = 0; t < ev->n_tokens; t++) {
    json_t *tops = json_array();
    if (!tops)
      return PL_ENOMEM;
    for (int k = 0; ev->top && k < ev->n_top && k < r->req->logprobs; k++) {
      const pl_top_logprob *tp = &ev->top[(size_t)t * ev->n_top + k];
      json_t *te = chat_lp_entry(r, tp->token, tp->logprob);
      if (!te || json_array_append_new(tops, te) < 0) {
        json_decref(tops);
        return PL_ENOMEM;
      }
    }
    json_t *e = chat_lp_entry(r, ev->tokens[t], ev->logprobs ? ev->logprobs[t] : 0.0f);
    if (!e) {
      json_decref(tops);
      return PL_ENOMEM;
    }
    json_object_set_new(e, "top_logprobs", tops);
    if (json_array_append_new(arr, e) < 0)
      return PL_ENOMEM;
  }
  return 0;
}

static json_t *completion_lp_new(void) {
  json_t *o = json_object();
  if (!o)
    return NULL;
  json_object_set_new(o, "tokens", json_array());
  json_object_set_new(o, "token_logprobs", json_array());
  json_object_set_new(o, "top_logprobs", json_array());
  json_object_set_new(o, "text_offset", json_array());
  return o;
}

/* Completions: parallel arrays; top_logprobs holds the top k plus the sampled token (vLLM). */
static int completion_lp_append(pl_oai_resp *r, const pl_job_event *ev, json_t *o,
                                long long *offset) {
  json_t *toks = json_object_get(o, "tokens"), *lps = json_object_get(o, "token_logprobs");
  json_t *tops = json_object_get(o, "top_logprobs"), *offs = json_object_get(o, "text_offset");
  if (!toks || !lps || !tops || !offs)
    return PL_ENOMEM;
  for (int t = 0; t < ev->n_tokens; t++) {
    json_t *s = token_string(r, ev->tokens[t], NULL);
    if (!s)
      return PL_ENOMEM;
    long long chars = utf8_chars(json_string_value(s));
    json_t *top = json_object();
    if (!top) {
      json_decref(s);
      return PL_ENOMEM;
    }
    for (int k = 0; ev->top && k < ev->n_top && k < r->req->logprobs; k++) {
      const pl_top_logprob *tp = &ev->top[(size_t)t * ev->n_top + k];
      json_t *ts = token_string(r, tp->token, NULL);
      if (ts && !json_object_get(top, json_string_value(ts)))
        json_object_set_new(top, json_string_value(ts), lp_real(tp->logprob));
      json_decref(ts);
    }
    if (!json_object_get(top, json_string_value(s)))
      json_object_set_new(top, json_string_value(s),
                          lp_real(ev->logprobs ? ev->logprobs[t] : 0.0f));
    json_array_append_new(toks, s);
    json_array_append_new(lps, lp_real(ev->logprobs ? ev->logprobs[t] : 0.0f));
    json_array_append_new(tops, top);
    json_array_append_new(offs, json_integer(*offset));
    *offset += chars;
  }
  return 0;
}

/* A fresh logprobs value for one event (streaming) or NULL when not requested. */
static json_t *event_lp(pl_oai_resp *r, const pl_job_event *ev, pl_oai_choice_acc *ch) {
  if (r->req->logprobs < 0 || ev->n_tokens == 0)
    return NULL;
  if (r->req->kind == PL_OAI_CHAT) {
    json_t *arr = json_array(), *o = json_object();
    if (!arr || !o || chat_lp_append(r, ev, arr) < 0) {
      json_decref(arr);
      json_decref(o);
      return NULL;
    }
    json_object_set_new(o, "content", arr);
    return o;
  }
  json_t *o = completion_lp_new();
  if (!o || completion_lp_append(r, ev, o, &ch->text_offset) < 0) {
    json_decref(o);
    return NULL;
  }
  return o;
}

/* ---- usage ------------------------------------------------------------------------------- */

static void track(pl_oai_resp *r, const pl_job_event *ev) {
  int p = ev->prompt_index;
  if (p >= 0 && p < r->n_prompts) {
    if (ev->prompt_tokens > r->prompt_tokens[p])
      r->prompt_tokens[p] = ev->prompt_tokens;
    if (ev->cached_tokens > r->cached_tokens[p])
      r->cached_tokens[p] = ev->cached_tokens;
  }
  pl_oai_choice_acc *ch = &r->ch[ev->choice];
  if (ev->completion_tokens > ch->completion_tokens)
    ch->completion_tokens = ev->completion_tokens;
  if (ev->finish != PL_FINISH_NONE && !ch->done) {
    ch->done = 1;
    ch->finish = ev->finish;
    if (ev->finish == PL_FINISH_ERROR) {
      snprintf(ch->err_buf, sizeof ch->err_buf, "%s", ev->error ? ev->error : "engine error");
      ch->error = ch->err_buf;
    }
  }
}

static json_t *usage_json(const pl_oai_resp *r) {
  long long pt = 0, ct = 0, cached = 0;
  for (int p = 0; p < r->n_prompts; p++) {
    pt += r->prompt_tokens[p];
    cached += r->cached_tokens[p];
  }
  for (int c = 0; c < r->n_choices; c++)
    ct += r->ch[c].completion_tokens;
  return json_pack("{s:I,s:I,s:I,s:{s:I}}", "prompt_tokens", (json_int_t)pt,
                   "completion_tokens", (json_int_t)ct, "total_tokens", (json_int_t)(pt + ct),
                   "prompt_tokens_details", "cached_tokens", (json_int_t)cached);
}

/* ---- non-streaming ------------------------------------------------------------------------ */

static int resp_add_(pl_oai_resp *r, const pl_job_event *ev) {
  if (ev->choice < 0 || ev->choice >= r->n_choices)
    return 0;
  pl_oai_choice_acc *ch = &r->ch[ev->choice];
  if (ch->done)
    return 0;
  if (ev->text_len && pl_strbuf_append(&ch->text, ev->text, ev->text_len) < 0)
    return PL_ENOMEM;
  if (r->req->logprobs >= 0 && ev->n_tokens > 0) {
    if (!ch->lp)
      ch->lp = r->req->kind == PL_OAI_CHAT ? json_array() : completion_lp_new();
    if (!ch->lp)
      return PL_ENOMEM;
    int rc = r->req->kind == PL_OAI_CHAT ? chat_lp_append(r, ev, ch->lp)
                                         : completion_lp_append(r, ev, ch->lp, &ch->text_offset);
    if (rc < 0)
      return rc;
  }
  track(r, ev);
  return 0;
}

int pl_oai_resp_complete(const pl_oai_resp *r) {
  for (int c = 0; c < r->n_choices; c++)
    if (!r->ch[c].done)
      return 0;
  return 1;
}

int pl_oai_resp_failed(const pl_oai_resp *r, pl_oai_error *err) {
  for (int c = 0; c < r->n_choices; c++)
    if (r->ch[c].done && r->ch[c].finish == PL_FINISH_ERROR)
      return pl_oai_errorf(err, 500, NULL, "%s", r->ch[c].error ? r->ch[c].error : "engine error");
  if (!pl_oai_resp_complete(r))
    return pl_oai_errorf(err, 500, NULL, "out of memory: the end of a choice was lost");
  for (int c = 0; c < r->n_choices; c++)
    if (r->ch[c].done && r->ch[c].finish == PL_FINISH_ABORT)
      return abort_error(err);
  return 0;
}

static json_t *base_object(const pl_oai_resp *r, const char *object) {
  return json_pack("{s:s,s:s,s:I,s:s}", "id", r->id, "object", object, "created",
                   (json_int_t)r->created, "model", r->model);
}

static int resp_json_(pl_oai_resp *r, pl_strbuf *out) {
  int chat = r->req->kind == PL_OAI_CHAT;
  json_t *root = base_object(r, chat ? "chat.completion" : "text_completion");
  json_t *choices = json_array();
  if (!root || !choices) {
    json_decref(root);
    json_decref(choices);
    return PL_ENOMEM;
  }
  for (int c = 0; c < r->n_choices; c++) {
    pl_oai_choice_acc *ch = &r->ch[c];
    json_t *lp = ch->lp ? json_incref(ch->lp) : json_null();
    if (chat && ch->lp) {
      json_decref(lp);
      lp = json_pack("{s:O}", "content", ch->lp);
    }
    json_t *text;
    int p = c / r->req->n;
    if (!chat && r->echo[p]) {
      pl_strbuf b = {0};
      pl_strbuf_append(&b, r->echo[p], r->echo_len[p]);
      pl_strbuf_append(&b, ch->text.data ? ch->text.data : "", ch->text.len);
      text = pl_oai_lossy_string(b.data ? b.data : "", b.len);
      pl_strbuf_free(&b);
    } else {
      text = pl_oai_lossy_string(ch->text.data ? ch->text.data : "", ch->text.len);
    }
    json_t *item, *calls = NULL;
    char *content = NULL;
    if (chat && r->req->tool_choice != PL_OAI_TOOLS_NONE &&
        (ch->finish == PL_FINISH_STOP || ch->finish == PL_FINISH_LENGTH)) {
      char seed[80];
      snprintf(seed, sizeof seed, "%s-%d", r->id, c);
      if (pl_tool_parse((pl_tool_format)r->tool_format, ch->text.data ? ch->text.data : "",
                        ch->text.len, seed, r->req->tools, &calls, &content) < 0) {
        json_decref(text);
        json_decref(lp);
        json_decref(root);
        json_decref(choices);
        return PL_ENOMEM;
      }
      if (!calls) { /* no call: the text as it is (the same bytes) */
        pl_free(content);
        content = NULL;
      }
    }
    if (calls) {
      json_decref(text);
      item = json_pack("{s:i,s:{s:s,s:o,s:n,s:o},s:o,s:s}", "index", c, "message", "role",
                       "assistant", "content", content ? pl_oai_lossy_string(content,
                       strlen(content)) : json_null(), "refusal", "tool_calls", calls,
                       "logprobs", lp, "finish_reason", ch->finish == PL_FINISH_STOP ?
                       "tool_calls" : finish_str(ch->finish));
      pl_free(content);
    } else if (chat)
      item = json_pack("{s:i,s:{s:s,s:o,s:n},s:o,s:o}", "index", c, "message", "role",
                       "assistant", "content", text, "refusal", "logprobs", lp, "finish_reason",
                       finish_json(ch->finish));
    else
      item = json_pack("{s:i,s:o,s:o,s:o}", "index", c, "text", text, "logprobs", lp,
                       "finish_reason", finish_json(ch->finish));
    if (!item || json_array_append_new(choices, item) < 0) {
      json_decref(root);
      json_decref(choices);
      return PL_ENOMEM;
    }
  }
  json_object_set_new(root, "choices", choices);
  json_object_set_new(root, "usage", usage_json(r));
  int rc = pl_oai_dump(root, out);
  json_decref(root);
  return rc;
}

/* ---- streaming ---------------------------------------------------------------------------- */

static int sse_frame(json_t *v, pl_strbuf *out) {
  if (!v)
    return PL_ENOMEM;
  int rc = pl_strbuf_puts(out, "data: ");
  if (rc == 0)
    rc = pl_oai_dump(v, out);
  if (rc == 0)
    rc = pl_strbuf_puts(out, "\n\n");
  json_decref(v);
  return rc;
}

/* One chunk holding one choice object (steals choice). */
static int emit_choice(pl_oai_resp *r, json_t *choice, pl_strbuf *out) {
  int chat = r->req->kind == PL_OAI_CHAT;
  json_t *root = base_object(r, chat ? "chat.completion.chunk" : "text_completion");
  if (!root || !choice) {
    json_decref(root);
    json_decref(choice);
    return PL_ENOMEM;
  }
  json_object_set_new(root, "choices", json_pack("[o]", choice));
  if (r->req->continuous_usage)
    json_object_set_new(root, "usage", usage_json(r));
  else if (r->req->include_usage)
    json_object_set_new(root, "usage", json_null());
  return sse_frame(root, out);
}

static int resp_sse_begin_(pl_oai_resp *r, pl_strbuf *out) {
  for (int c = 0; c < r->n_choices; c++) {
    int p = c / r->req->n;
    json_t *choice = NULL;
    if (r->req->kind == PL_OAI_CHAT) {
      choice = json_pack("{s:i,s:{s:s,s:s},s:n,s:n}", "index", c, "delta", "role", "assistant",
                         "content", "", "logprobs", "finish_reason");
    } else if (r->echo[p]) {
      choice = json_pack("{s:i,s:o,s:n,s:n}", "index", c, "text",
                         pl_oai_lossy_string(r->echo[p], r->echo_len[p]), "logprobs",
                         "finish_reason");
    } else {
      continue;
    }
    int rc = emit_choice(r, choice, out);
    if (rc < 0)
      return rc;
  }
  return 0;
}

/* Chat with tools: the text goes through the choice's tool-call parser; its content and call
 * deltas become the chunk's delta ("tool_calls": OpenAI's incremental form, a call's name
 * first, then its arguments as the model writes them). */
static int tools_event(pl_oai_resp *r, const pl_job_event *ev, pl_oai_choice_acc *ch,
                       json_t *lp, pl_strbuf *out) {
  int final = ev->finish != PL_FINISH_NONE;
  if (!ch->tp) {
    char seed[80];
    snprintf(seed, sizeof seed, "%s-%d", r->id, ev->choice);
    if (pl_tool_parser_create((pl_tool_format)r->tool_format, seed, r->req->tools, &ch->tp) < 0) {
      json_decref(lp);
      return PL_ENOMEM;
    }
  }
  pl_tool_out to;
  if (pl_tool_parser_feed(ch->tp, ev->text, ev->text_len, final, &to) < 0) {
    json_decref(lp);
    return PL_ENOMEM;
  }
  if (!to.content && !to.calls && !lp && !final)
    return 0; /* held: a call may be starting */
  json_t *delta = json_object();
  if (delta && (to.content || lp))
    json_object_set_new(delta, "content", pl_oai_lossy_string(to.content ? to.content : "",
                                                              to.content_len));
  if (delta && to.calls)
    json_object_set(delta, "tool_calls", to.calls);
  pl_tool_out_free(&to);
  json_t *fr = ev->finish == PL_FINISH_STOP && pl_tool_parser_ncalls(ch->tp) > 0
                   ? json_string("tool_calls") : finish_json(ev->finish);
  json_t *choice = json_pack("{s:i,s:o,s:o,s:o}", "index", ev->choice, "delta", delta,
                             "logprobs", lp ? lp : json_null(), "finish_reason", fr);
  return emit_choice(r, choice, out);
}

static int resp_sse_event_(pl_oai_resp *r, const pl_job_event *ev, pl_strbuf *out) {
  if (ev->choice < 0 || ev->choice >= r->n_choices)
    return 0;
  pl_oai_choice_acc *ch = &r->ch[ev->choice];
  if (ch->done || r->failed)
    return 0;
  track(r, ev);
  if (ev->finish == PL_FINISH_ERROR || ev->finish == PL_FINISH_ABORT) {
    pl_oai_error e;
    if (ev->finish == PL_FINISH_ABORT)
      abort_error(&e);
    else
      pl_oai_errorf(&e, 500, NULL, "choice %d failed: %s", ev->choice,
                    ev->error ? ev->error : "engine error");
    int rc = pl_oai_error_sse(&e, out);
    if (rc == 0)
      r->failed = 1;
    return rc;
  }
  json_t *lp = event_lp(r, ev, ch);
  if (ev->text_len == 0 && !lp && ev->finish == PL_FINISH_NONE)
    return 0; /* nothing to say yet (held-back partial UTF-8 or a possible stop string) */
  if (r->req->kind == PL_OAI_CHAT && r->req->tool_choice != PL_OAI_TOOLS_NONE)
    return tools_event(r, ev, ch, lp, out);
  json_t *text = pl_oai_lossy_string(ev->text, ev->text_len);
  json_t *choice;
  if (r->req->kind == PL_OAI_CHAT) {
    json_t *delta = json_object();
    if (delta && (ev->text_len || lp))
      json_object_set(delta, "content", text);
    choice = json_pack("{s:i,s:o,s:o,s:o}", "index", ev->choice, "delta", delta, "logprobs",
                       lp ? lp : json_null(), "finish_reason", finish_json(ev->finish));
  } else {
    choice = json_pack("{s:i,s:O,s:o,s:o}", "index", ev->choice, "text", text, "logprobs",
                       lp ? lp : json_null(), "finish_reason", finish_json(ev->finish));
  }
  json_decref(text);
  return emit_choice(r, choice, out);
}

static int resp_sse_end_(pl_oai_resp *r, pl_strbuf *out) {
  if (r->req->include_usage || r->req->continuous_usage) {
    int chat = r->req->kind == PL_OAI_CHAT;
    json_t *root = base_object(r, chat ? "chat.completion.chunk" : "text_completion");
    if (!root)
      return PL_ENOMEM;
    json_object_set_new(root, "choices", json_array());
    json_object_set_new(root, "usage", usage_json(r));
    int rc = sse_frame(root, out);
    if (rc < 0)
      return rc;
  }
  return pl_strbuf_puts(out, "data: [DONE]\n\n");
}

/* ---- the public calls: a failed allocation voids the result --------------------------------
 * Some jansson calls (json_object_set_new, json_array_append_new) fail silently and leave a
 * partial value, so a call during which this thread failed an allocation (jansson's
 * included: the server routes it through util/alloc.h) reports PL_ENOMEM, and what it
 * wrote to `out` is taken back. */

static void unwrite(pl_strbuf *out, size_t len0) {
  out->len = len0;
  if (out->data)
    out->data[len0] = 0;
}

int pl_oai_resp_add(pl_oai_resp *r, const pl_job_event *ev) {
  long f0 = pl_alloc_thread_failures();
  int rc = resp_add_(r, ev);
  return rc == 0 && pl_alloc_thread_failures() != f0 ? PL_ENOMEM : rc;
}

int pl_oai_resp_json(pl_oai_resp *r, pl_strbuf *out) {
  size_t len0 = out->len;
  long f0 = pl_alloc_thread_failures();
  int rc = resp_json_(r, out);
  if (rc == 0 && pl_alloc_thread_failures() != f0)
    rc = PL_ENOMEM;
  if (rc < 0)
    unwrite(out, len0);
  return rc;
}

int pl_oai_resp_sse_begin(pl_oai_resp *r, pl_strbuf *out) {
  size_t len0 = out->len;
  long f0 = pl_alloc_thread_failures();
  int rc = resp_sse_begin_(r, out);
  if (rc == 0 && pl_alloc_thread_failures() != f0)
    rc = PL_ENOMEM;
  if (rc < 0)
    unwrite(out, len0);
  return rc;
}

int pl_oai_resp_sse_event(pl_oai_resp *r, const pl_job_event *ev, pl_strbuf *out) {
  size_t len0 = out->len;
  long f0 = pl_alloc_thread_failures();
  int rc = resp_sse_event_(r, ev, out);
  if (rc == 0 && pl_alloc_thread_failures() != f0)
    rc = PL_ENOMEM;
  if (rc < 0)
    unwrite(out, len0);
  return rc;
}

int pl_oai_resp_sse_end(pl_oai_resp *r, pl_strbuf *out) {
  size_t len0 = out->len;
  long f0 = pl_alloc_thread_failures();
  int rc = resp_sse_end_(r, out);
  if (rc == 0 && pl_alloc_thread_failures() != f0)
    rc = PL_ENOMEM;
  if (rc < 0)
    unwrite(out, len0);
  return rc;
}

/* ---- errors ---------------------------------------------------------------------------- */

static json_t *error_obj(const pl_oai_error *e) {
  json_t *msg = pl_oai_lossy_string(e->message, strlen(e->message));
  return json_pack("{s:{s:o,s:s,s:o,s:o}}", "error", "message", msg, "type",
                   e->type ? e->type : "invalid_request_error", "param",
                   e->param[0] ? json_string(e->param) : json_null(), "code",
                   e->code ? json_string(e->code) : json_null());
}

int pl_oai_error_json(const pl_oai_error *e, pl_strbuf *out) {
  json_t *v = error_obj(e);
  if (!v)
    return PL_ENOMEM;
  int rc = pl_oai_dump(v, out);
  json_decref(v);
  return rc;
}

int pl_oai_error_sse(const pl_oai_error *e, pl_strbuf *out) { return sse_frame(error_obj(e), out); }
