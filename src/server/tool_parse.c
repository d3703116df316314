/* Incremental tool-call parser (see tool_calls.h). A byte-at-a-time state machine: whatever
 * the split of the text, the same bytes go through the same states, so a stream and the
 * whole text give the same content and calls. Held bytes (a possible marker, a call being
 * written) live in `hold`; a call that turns out not to be one is given back as content, its
 * marker verbatim and the bytes after it fed again (they may hold a real call). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/json_guard.h"
#include "server/strbuf.h"
#include "server/tool_calls.h"
#include "util/alloc.h"
#include "util/error.h"

enum {
  S_TEXT,      /* content; looking for the start marker */
  S_PRE,       /* after the marker: whitespace, then the value */
  S_VAL,       /* inside a call's JSON value */
  S_POST,      /* after a call: the closing tag (Hermes), ";" (Llama 3), "," or "]" (Mistral) */
  S_ARR,       /* Mistral: after "[" or ",": whitespace, then an object */
  S_PLAIN,     /* Llama 3 after its start: content to the end */
};

#define REFEED_MAX (64 << 10) /* a rejected call larger than this is content as it stands */

struct pl_tool_parser {
  pl_tool_format f;
  char seed[96];
  int state;
  pl_strbuf hold;    /* undecided bytes */
  size_t mark_len;   /* hold starts with this many marker bytes (given back verbatim) */
  size_t val_start;  /* S_VAL: offset of the value in hold */
  int depth, in_str, esc;
  int in_arr;        /* Mistral: calls are elements of an array */
  int after_call;    /* drop whitespace that follows a call */
  pl_strbuf ws;      /* content whitespace held: dropped if a call follows */
  json_t *calls;     /* every call */
  pl_tool_out *out;  /* of the current feed */
  pl_strbuf content; /* of the current feed */
  int oom;
};

static const char *marker(pl_tool_format f) {
  return f == PL_TOOLS_HERMES ? "<tool_call>" : f == PL_TOOLS_MISTRAL ? "[TOOL_CALLS]"
                                                                      : "<|python_tag|>";
}

static int is_ws(int c) { return c == ' ' || c == '\n' || c == '\t' || c == '\r'; }

static void put(pl_tool_parser *p, pl_strbuf *b, const char *s, size_t n) {
  if (n && pl_strbuf_append(b, s, n) < 0)
    p->oom = 1;
}

/* Content bytes: whitespace waits in p->ws until more text shows it was inside the text (it
 * is dropped at the end when calls were made); whitespace right after a call is dropped, so
 * "a\n<call>\nb" has the content "a\nb". */
static void content(pl_tool_parser *p, const char *s, size_t n) {
  for (size_t i = 0; i < n; i++) {
    if (is_ws((unsigned char)s[i])) {
      if (!p->after_call)
        put(p, &p->ws, s + i, 1);
      continue;
    }
    p->after_call = 0;
    put(p, &p->content, p->ws.data, p->ws.len);
    p->ws.len = 0;
    put(p, &p->content, s + i, 1);
  }
}

/* The call object o (a JSON value) -> an OpenAI call; NULL when it is not one. */
static json_t *make_call(pl_tool_parser *p, json_t *o) {
  const char *name = json_string_value(json_object_get(o, "name"));
  json_t *args = json_object_get(o, "arguments");
  if (!args)
    args = json_object_get(o, "parameters");
  if (!json_is_object(o) || !name || !*name || !args || !(json_is_object(args) ||
                                                          json_is_string(args)))
    return NULL;
  char *a = json_is_string(args) ? NULL : json_dumps(args, JSON_COMPACT);
  if (!json_is_string(args) && !a) {
    p->oom = 1;
    return NULL;
  }
  size_t idx = json_array_size(p->calls);
  unsigned long h = 5381;
  for (const char *s = p->seed; *s; s++)
    h = h * 33 + (unsigned char)*s;
  char id[64];
  if (p->f == PL_TOOLS_MISTRAL) { /* Mistral's templates require 9 alphanumeric characters */
    static const char an[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    unsigned long long x = ((unsigned long long)h << 16) ^ (idx * 0x9E3779B97F4A7C15ULL);
    for (int i = 0; i < 9; i++, x /= 62)
      id[i] = an[x % 62];
    id[9] = 0;
  } else {
    snprintf(id, sizeof id, "call_%08lx%04zx", h & 0xffffffffUL, idx);
  }
  json_t *c = json_pack("{s:s,s:s,s:{s:s,s:s}}", "id", id, "type", "function", "function",
                        "name", name, "arguments", a ? a : json_string_value(args));
  free(a); /* jansson's allocator */
  if (!c)
    p->oom = 1;
  return c;
}

static void feed_bytes(pl_tool_parser *p, const char *s, size_t n);

/* The held call is not one: its marker is content, the rest is read again as text. */
static void reject(pl_tool_parser *p) {
  pl_strbuf h = p->hold;
  size_t m = p->mark_len;
  memset(&p->hold, 0, sizeof p->hold);
  p->mark_len = 0;
  p->in_arr = 0;
  p->state = p->f == PL_TOOLS_LLAMA3 ? S_PLAIN : S_TEXT;
  if (h.len > REFEED_MAX)
    m = h.len;
  content(p, h.data, m);
  feed_bytes(p, h.data + m, h.len - m);
  pl_strbuf_free(&h);
}

/* The value in hold[val_start..] is complete: a call, or not. */
static void value_done(pl_tool_parser *p) {
  json_t *o = NULL;
  if (pl_json_loadb(p->hold.data + p->val_start, p->hold.len - p->val_start, 0, &o, NULL) ==
      PL_ENOMEM)
    p->oom = 1; /* not a verdict on the text: the call is lost, the caller fails */
  json_t *c = o ? make_call(p, o) : NULL;
  json_decref(o);
  if (!c) {
    reject(p);
    return;
  }
  if (!p->out->calls && !(p->out->calls = json_array()))
    p->oom = 1;
  /* each of d and c is handed to exactly one owner (append_new takes it even when it fails) */
  json_t *d = json_deep_copy(c);
  if (!d || json_object_set_new(d, "index", json_integer((json_int_t)json_array_size(p->calls)))) {
    json_decref(d);
    json_decref(c);
    p->oom = 1;
  } else if (json_array_append_new(p->out->calls, d) | json_array_append_new(p->calls, c)) {
    p->oom = 1;
  }
  p->hold.len = 0;
  p->mark_len = 0;
  p->state = S_POST;
}

/* Hermes closing tag / Mistral separator / Llama 3 separator, after a call. */
static void post(pl_tool_parser *p, int c) {
  put(p, &p->hold, (const char *)&(char){(char)c}, 1);
  const char *h = p->hold.data;
  size_t n = p->hold.len, i = 0;
  while (i < n && is_ws((unsigned char)h[i]))
    i++;
  if (i == n)
    return;
  if (p->f == PL_TOOLS_HERMES) {
    static const char close[] = "</tool_call>";
    size_t k = n - i;
    if (k <= sizeof close - 1 && !memcmp(h + i, close, k)) {
      if (k == sizeof close - 1) {
        p->hold.len = 0;
        p->state = S_TEXT;
        p->after_call = 1;
      }
      return;
    }
  } else if (p->f == PL_TOOLS_MISTRAL && p->in_arr) {
    if (h[i] == ',' && i + 1 == n) { /* given back verbatim if no call follows */
      p->mark_len = n;
      p->state = S_ARR;
      return;
    }
    if (h[i] == ']' && i + 1 == n) {
      p->hold.len = 0;
      p->in_arr = 0;
      p->state = S_TEXT;
      p->after_call = 1;
      return;
    }
  } else if (p->f == PL_TOOLS_LLAMA3) {
    if (h[i] == ';' && i + 1 == n) {
      p->mark_len = n;
      p->state = S_PRE;
      return;
    }
  }
  /* anything else: text again (it may start the next call) */
  pl_strbuf t = p->hold;
  memset(&p->hold, 0, sizeof p->hold);
  p->in_arr = 0;
  p->after_call = 1;
  p->state = p->f == PL_TOOLS_LLAMA3 ? S_PRE : S_TEXT;
  if (p->f == PL_TOOLS_LLAMA3) /* a call may follow without ";" (Llama 3.2 does) */
    p->mark_len = 0;
  feed_bytes(p, t.data, t.len);
  pl_strbuf_free(&t);
}

static void step(pl_tool_parser *p, int c) {
  char ch = (char)c;
  switch (p->state) {
  case S_PLAIN:
    content(p, &ch, 1);
    return;
  case S_TEXT: {
    const char *m = marker(p->f);
    size_t ml = strlen(m);
    if (p->f == PL_TOOLS_LLAMA3) { /* whitespace, then the tag or "{" at the very start */
      put(p, &p->hold, &ch, 1);
      size_t i = 0;
      while (i < p->hold.len && is_ws((unsigned char)p->hold.data[i]))
        i++;
      size_t k = p->hold.len - i;
      if (k == 0)
        return;
      if (k <= ml && !memcmp(p->hold.data + i, m, k)) {
        if (k == ml) {
          p->mark_len = 0;
          p->state = S_PRE;
        }
        return;
      }
      if (k == 1 && c == '{') {
        p->mark_len = 0;
        p->val_start = p->hold.len - 1;
        p->depth = 1;
        p->in_str = p->esc = 0;
        p->state = S_VAL;
        return;
      }
      reject(p); /* not a call: the output is content */
      return;
    }
    put(p, &p->hold, &ch, 1);
    while (p->hold.len && (p->hold.len > ml || memcmp(p->hold.data, m, p->hold.len) != 0)) {
      content(p, p->hold.data, 1); /* cannot start the marker: content */
      pl_strbuf_consume(&p->hold, 1);
    }
    if (p->hold.len == ml) {
      p->mark_len = ml;
      p->state = S_PRE;
    }
    return;
  }
  case S_PRE:
  case S_ARR:
    put(p, &p->hold, &ch, 1);
    if (is_ws(c))
      return;
    if (c == '[' && p->state == S_PRE && p->f == PL_TOOLS_MISTRAL) {
      p->in_arr = 1;
      p->state = S_ARR;
      return;
    }
    if (c == '{') {
      p->val_start = p->hold.len - 1;
      p->depth = 1;
      p->in_str = p->esc = 0;
      p->state = S_VAL;
      return;
    }
    reject(p);
    return;
  case S_VAL:
    put(p, &p->hold, &ch, 1);
    if (p->in_str) {
      if (p->esc)
        p->esc = 0;
      else if (c == '\\')
        p->esc = 1;
      else if (c == '"')
        p->in_str = 0;
    } else if (c == '"') {
      p->in_str = 1;
    } else if (c == '{' || c == '[') {
      p->depth++;
    } else if ((c == '}' || c == ']') && --p->depth == 0) {
      value_done(p);
    }
    return;
  case S_POST:
    post(p, c);
    return;
  }
}

static void feed_bytes(pl_tool_parser *p, const char *s, size_t n) {
  for (size_t i = 0; i < n && !p->oom; i++)
    step(p, (unsigned char)s[i]);
}

int pl_tool_parser_create(pl_tool_format f, const char *id_seed, pl_tool_parser **out) {
  pl_tool_parser *p = pl_calloc(1, sizeof *p);
  if (!p || !(p->calls = json_array())) {
    pl_free(p);
    return pl_fail(PL_ENOMEM, "out of memory");
  }
  p->f = f;
  snprintf(p->seed, sizeof p->seed, "%s", id_seed ? id_seed : "");
  p->state = S_TEXT;
  *out = p;
  return 0;
}

void pl_tool_parser_free(pl_tool_parser *p) {
  if (!p)
    return;
  pl_strbuf_free(&p->hold);
  pl_strbuf_free(&p->ws);
  pl_strbuf_free(&p->content);
  json_decref(p->calls);
  pl_free(p);
}

void pl_tool_out_free(pl_tool_out *o) {
  pl_free(o->content);
  json_decref(o->calls);
  memset(o, 0, sizeof *o);
}

int pl_tool_parser_feed(pl_tool_parser *p, const char *text, size_t len, int final,
                        pl_tool_out *out) {
  memset(out, 0, sizeof *out);
  p->out = out;
  p->content.len = 0;
  feed_bytes(p, text, len);
  if (final && !p->oom) {
    /* an unfinished call, marker or separator: what it held is content as it stands */
    if (p->state == S_POST) {
      p->hold.len = 0; /* whitespace or a partial closing tag after a complete call */
    } else if (p->hold.len) {
      content(p, p->hold.data, p->hold.len);
      p->hold.len = 0;
    }
    if (json_array_size(p->calls) == 0)
      put(p, &p->content, p->ws.data, p->ws.len);
    p->ws.len = 0;
    p->state = S_PLAIN;
  }
  p->out = NULL;
  if (!p->oom && p->content.len) {
    out->content_len = p->content.len;
    if (!(out->content = pl_strbuf_take(&p->content)))
      p->oom = 1;
  }
  if (p->oom) {
    pl_tool_out_free(out);
    return pl_fail(PL_ENOMEM, "out of memory parsing tool calls");
  }
  return 0;
}

int pl_tool_parser_ncalls(const pl_tool_parser *p) { return (int)json_array_size(p->calls); }

const json_t *pl_tool_parser_calls(const pl_tool_parser *p) { return p->calls; }

int pl_tool_parse(pl_tool_format f, const char *text, size_t len, const char *id_seed,
                  json_t **calls, char **content_out) {
  *calls = NULL;
  *content_out = NULL;
  pl_tool_parser *p;
  PL_TRY(pl_tool_parser_create(f, id_seed, &p));
  pl_tool_out o;
  int rc = pl_tool_parser_feed(p, text, len, 1, &o);
  if (rc == 0) {
    json_decref(o.calls);
    *content_out = o.content;
    int n = pl_tool_parser_ncalls(p);
    if (n > 0)
      *calls = json_incref(p->calls);
    rc = n;
  }
  pl_tool_parser_free(p);
  return rc;
}
