/* Incremental tool-call parser (see tool_calls.h). A byte-at-a-time state machine: whatever
 * the split of the text, the same bytes go through the same states, so a stream and the
 * whole text give the same content and calls. Held bytes (a possible marker, the start of a
 * call) live in `hold`; a call that turns out not to be one is given back as content, its
 * marker verbatim and the bytes after it fed again (they may hold a real call). Once a call
 * is committed (its name known and its arguments object opened) nothing is held any more:
 * the argument bytes go out as they come, and the rest of the call object is skipped. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/json_guard.h"
#include "server/strbuf.h"
#include "server/tool_calls.h"
#include "util/alloc.h"
#include "util/error.h"

enum {
  S_TEXT,  /* content; looking for the start marker */
  S_PRE,   /* after the marker: whitespace, then the value (Mistral: "[", "{" or a name) */
  S_VAL,   /* inside a call object, not committed yet (held) */
  S_ARGS,  /* committed: the arguments object, streamed */
  S_TAIL,  /* committed: the rest of the call object after the arguments (skipped) */
  S_POST,  /* after a call: the closing tag (Hermes), ";" (Llama 3), "," or "]" (Mistral) */
  S_ARR,   /* Mistral: after "[" or ",": whitespace, then an object */
  S_PLAIN, /* Llama 3 after its start: content to the end */
  S_MNAME, /* Mistral v11+: the function name after [TOOL_CALLS] */
  S_MTAG,  /* Mistral v11+: a "[ARGS]" or "[CALL_ID]" tag after the name */
  S_MCID,  /* Mistral v13: the call id after [CALL_ID] (ignored: ids are ours) */
  S_MARGS, /* Mistral v11+: after [ARGS]: whitespace, then the arguments object */
};

/* What the call object's tokenizer expects next at its top level (S_VAL, depth 1). */
enum { E_KEY_OR_END, E_KEY, E_KEYSTR, E_COLON, E_VALUE, E_VALSTR, E_LIT, E_NESTED, E_NEXT };
enum { K_OTHER, K_NAME, K_ARGS };

#define REFEED_MAX (64 << 10) /* a rejected call larger than this is content as it stands */
#define NAME_MAX_ 256
#define MISTRAL_ID_MAX 64

struct pl_tool_parser {
  pl_tool_format f;
  char seed[96];
  json_t *tools;     /* the request's tools (names a call may have), NULL: any name */
  int state;
  pl_strbuf hold;    /* undecided bytes */
  size_t mark_len;   /* hold starts with this many marker bytes (given back verbatim) */
  size_t val_start;  /* S_VAL: offset of the value in hold */
  int depth, in_str, esc;
  int in_arr;        /* Mistral: calls are elements of an array */
  int after_call;    /* drop whitespace that follows a call */
  size_t post_ws;    /* S_POST / Llama 3 start: leading whitespace bytes of hold already seen */
  pl_strbuf ws;      /* content whitespace held: dropped if a call follows */
  /* the call object's top-level tokenizer (S_VAL) */
  int expect, key, scan_ok, have_name;
  size_t tok_start;            /* offset in hold of the current key, string or literal */
  size_t args_off, args_end;   /* raw arguments value in hold (args_end 0: none seen) */
  char name[NAME_MAX_];
  /* Mistral v11+ */
  size_t name_start, name_end, tag_start;
  int cid_seen, v11;
  /* the committed call whose arguments are streaming */
  int open;
  pl_strbuf araw;    /* argument bytes not sent yet (an incomplete UTF-8 tail, or this feed's) */
  pl_strbuf args;    /* the open call's arguments so far (valid UTF-8) */
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

/* ---- UTF-8 of the streamed arguments ------------------------------------------------------ */

/* How many of s's n bytes can be cleaned now: all but a last lead byte still waiting for
 * its continuation bytes. Cutting there, cleaning the pieces equals cleaning the whole. */
static size_t utf8_ready(const unsigned char *s, size_t n) {
  for (size_t k = 1; k <= 3 && k <= n; k++) {
    unsigned c = s[n - k];
    if ((c & 0xC0) == 0x80)
      continue;
    size_t need = (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : (c & 0xF8) == 0xF0 ? 4 : 1;
    return need > k ? n - k : n;
  }
  return n;
}

/* Append s to b as valid UTF-8: an invalid byte (or NUL) becomes U+FFFD, as content does. */
static void utf8_clean(pl_tool_parser *p, pl_strbuf *b, const char *s, size_t n) {
  const unsigned char *u = (const unsigned char *)s;
  size_t i = 0;
  while (i < n) {
    size_t j = i;
    int k;
    while (j < n && u[j] && (k = pl_utf8_seq(u + j, n - j)) > 0)
      j += (size_t)k;
    put(p, b, s + i, j - i);
    if (j < n) {
      put(p, b, "\xEF\xBF\xBD", 3);
      j++;
    }
    i = j;
  }
}

/* ---- calls and deltas --------------------------------------------------------------------- */

static int declared(const pl_tool_parser *p, const char *name) {
  if (!p->tools)
    return 1;
  for (size_t i = 0; i < json_array_size(p->tools); i++) {
    json_t *fn = json_object_get(json_array_get(p->tools, i), "function");
    const char *n = json_string_value(json_object_get(fn, "name"));
    if (n && !strcmp(n, name))
      return 1;
  }
  return 0;
}

/* A new call {"id", "type", "function": {"name", "arguments"}}, appended to p->calls and, as a
 * delta with its index, to this feed's output. */
static json_t *add_call(pl_tool_parser *p, const char *name, const char *args, size_t alen) {
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
  json_t *a = json_stringn(args, alen);
  json_t *c = a ? json_pack("{s:s,s:s,s:{s:s,s:o}}", "id", id, "type", "function", "function",
                            "name", name, "arguments", a)
                : NULL;
  if (!p->out->calls)
    p->out->calls = json_array();
  json_t *d = c ? json_deep_copy(c) : NULL;
  if (!c || !d || !p->out->calls ||
      json_object_set_new(d, "index", json_integer((json_int_t)idx))) {
    json_decref(c);
    json_decref(d);
    p->oom = 1;
    return NULL;
  }
  if (json_array_append_new(p->out->calls, d)) { /* (steals d either way) */
    json_decref(c);
    p->oom = 1;
    return NULL;
  }
  if (json_array_append_new(p->calls, c)) {
    p->oom = 1;
    return NULL;
  }
  return c;
}

/* Send the open call's pending argument bytes (all: none may wait for more): appended to its
 * arguments and to this feed's delta for it (the call's first delta when that is in this
 * feed, else a new {"index", "function": {"arguments"}}). */
static void args_flush(pl_tool_parser *p, int all) {
  size_t k = all ? p->araw.len : utf8_ready((const unsigned char *)p->araw.data, p->araw.len);
  if (!k || p->oom)
    return;
  size_t from = p->args.len;
  utf8_clean(p, &p->args, p->araw.data, k);
  pl_strbuf_consume(&p->araw, k);
  if (p->oom)
    return;
  size_t idx = json_array_size(p->calls) - 1;
  json_t *calls = p->out->calls;
  json_t *last = json_array_get(calls, json_array_size(calls) - 1);
  json_t *fn;
  if (last && (size_t)json_integer_value(json_object_get(last, "index")) == idx &&
      (fn = json_object_get(last, "function"))) {
    json_t *prev = json_object_get(fn, "arguments");
    size_t pl = json_string_length(prev), n = p->args.len - from;
    char *s = pl_malloc(pl + n + 1);
    if (!s) {
      p->oom = 1;
      return;
    }
    memcpy(s, json_string_value(prev), pl);
    memcpy(s + pl, p->args.data + from, n);
    if (json_string_setn(prev, s, pl + n))
      p->oom = 1;
    pl_free(s);
    return;
  }
  json_t *d = json_pack("{s:I,s:{s:s%}}", "index", (json_int_t)idx, "function", "arguments",
                        p->args.data + from, p->args.len - from);
  if (!calls)
    calls = p->out->calls = json_array();
  if (!d || !calls) {
    json_decref(d);
    p->oom = 1;
  } else if (json_array_append_new(calls, d)) {
    p->oom = 1;
  }
}

/* The open call's arguments are complete (or the output ended): they become its arguments. */
static void args_close(pl_tool_parser *p) {
  args_flush(p, 1);
  json_t *c = json_array_get(p->calls, json_array_size(p->calls) - 1);
  json_t *a = json_object_get(json_object_get(c, "function"), "arguments");
  if (!p->oom && (!a || json_string_setn(a, p->args.data ? p->args.data : "", p->args.len)))
    p->oom = 1;
  p->args.len = 0;
  p->open = 0;
}

static void feed_bytes(pl_tool_parser *p, const char *s, size_t n);

/* Out of memory is PL_ENOMEM (json_guard.h), never a call turned into content. */
static json_t *load(pl_tool_parser *p, const char *s, size_t n, size_t flags) {
  json_t *v = NULL;
  if (pl_json_loadb(s, n, flags, &v, NULL) == PL_ENOMEM)
    p->oom = 1;
  return v;
}

/* The held call is not one: its marker is content, the rest is read again as text. */
static void reject(pl_tool_parser *p) {
  pl_strbuf h = p->hold;
  size_t m = p->mark_len;
  memset(&p->hold, 0, sizeof p->hold);
  p->mark_len = 0;
  p->in_arr = 0;
  p->post_ws = 0;
  p->state = p->f == PL_TOOLS_LLAMA3 ? S_PLAIN : S_TEXT;
  if (h.len > REFEED_MAX)
    m = h.len;
  content(p, h.data, m);
  feed_bytes(p, h.data + m, h.len - m);
  pl_strbuf_free(&h);
}

/* The call's name is known and its arguments object opened ("{" is the byte being read): the
 * held bytes are the call; from here its arguments stream. An undeclared name is no call. */
static void commit(pl_tool_parser *p, const char *name, int v11) {
  if (!declared(p, name)) {
    reject(p);
    return;
  }
  if (!add_call(p, name, "", 0))
    return;
  p->hold.len = 0;
  p->mark_len = 0;
  p->open = 1;
  p->v11 = v11;
  p->araw.len = p->args.len = 0;
  put(p, &p->araw, "{", 1);
  p->depth = 1;
  p->in_str = p->esc = 0;
  p->state = S_ARGS;
}

/* A whole call object (not committed while it came: e.g. "name" after "arguments", or
 * arguments as a string) in hold[val_start..]: a call, or not. The arguments are the raw
 * object text, or the string's value. */
static void value_done(pl_tool_parser *p) {
  const char *v = p->hold.data + p->val_start;
  json_t *o = load(p, v, p->hold.len - p->val_start, 0);
  if (p->oom)
    return;
  const char *name = json_string_value(json_object_get(o, "name"));
  json_t *args = json_object_get(o, "arguments");
  if (!args)
    args = json_object_get(o, "parameters");
  int ok = json_is_object(o) && name && *name && declared(p, name) &&
           (json_is_object(args) || json_is_string(args));
  if (ok && json_is_string(args)) {
    add_call(p, name, json_string_value(args), json_string_length(args));
  } else if (ok && p->scan_ok && p->args_end &&
             !(json_object_get(o, "arguments") && json_object_get(o, "parameters"))) {
    add_call(p, name, p->hold.data + p->args_off, p->args_end - p->args_off);
  } else if (ok) { /* the tokenizer lost the raw span: the value re-serialized */
    char *a = json_dumps(args, JSON_COMPACT);
    if (a)
      add_call(p, name, a, strlen(a));
    else
      p->oom = 1;
    free(a); /* jansson's allocator */
  }
  json_decref(o);
  if (!ok) {
    reject(p);
    return;
  }
  p->hold.len = 0;
  p->mark_len = 0;
  p->post_ws = 0;
  p->state = S_POST;
}

/* ---- the call object's top-level tokenizer (S_VAL) ------------------------------------------ */

static void obj_begin(pl_tool_parser *p) {
  p->val_start = p->hold.len - 1;
  p->depth = 1;
  p->in_str = p->esc = 0;
  p->expect = E_KEY_OR_END;
  p->key = K_OTHER;
  p->scan_ok = 1;
  p->have_name = 0;
  p->args_end = 0;
  p->state = S_VAL;
}

static int lit_ok(pl_tool_parser *p) {
  json_t *v = load(p, p->hold.data + p->tok_start, p->hold.len - 1 - p->tok_start,
                   JSON_DECODE_ANY);
  json_decref(v);
  return v != NULL;
}

/* A string at depth 1 ended (its closing quote is the last held byte). */
static void obj_string_end(pl_tool_parser *p) {
  const char *s = p->hold.data + p->tok_start;
  size_t n = p->hold.len - p->tok_start;
  if (p->expect == E_KEYSTR) {
    p->key = n == 6 && !memcmp(s, "\"name\"", 6) ? K_NAME
             : (n == 11 && !memcmp(s, "\"arguments\"", 11)) ||
                       (n == 12 && !memcmp(s, "\"parameters\"", 12))
                 ? K_ARGS
                 : K_OTHER;
    p->expect = E_COLON;
    return;
  }
  p->expect = E_NEXT;
  if (p->key == K_NAME) {
    json_t *v = load(p, s, n, JSON_DECODE_ANY);
    const char *nm = json_string_value(v);
    p->have_name = nm && *nm && json_string_length(v) < sizeof p->name &&
                   strlen(nm) == json_string_length(v);
    if (p->have_name)
      memcpy(p->name, nm, json_string_length(v) + 1);
    json_decref(v);
  } else if (p->key == K_ARGS) { /* arguments as a string: the whole object decides */
    p->args_off = p->tok_start;
    p->args_end = p->hold.len;
  }
}

/* One byte of the call object (already held), not committed yet. */
static void obj_byte(pl_tool_parser *p, int c) {
  if (p->in_str) {
    if (p->esc)
      p->esc = 0;
    else if (c == '\\')
      p->esc = 1;
    else if (c == '"') {
      p->in_str = 0;
      if (p->depth == 1 && p->scan_ok)
        obj_string_end(p);
    }
    return;
  }
  if (c == '"') {
    p->in_str = 1;
    if (p->depth > 1 || !p->scan_ok)
      return;
    if (p->expect == E_KEY_OR_END || p->expect == E_KEY)
      p->expect = E_KEYSTR;
    else if (p->expect == E_VALUE)
      p->expect = E_VALSTR;
    else
      p->scan_ok = 0;
    p->tok_start = p->hold.len - 1;
    return;
  }
  if (c == '{' || c == '[') {
    if (p->depth++ > 1 || !p->scan_ok)
      return;
    if (p->expect != E_VALUE || p->key == K_NAME) {
      p->scan_ok = 0;
      return;
    }
    p->expect = E_NESTED;
    p->tok_start = p->hold.len - 1;
    if (p->key == K_ARGS && c == '{' && p->have_name) /* the call is certain now */
      commit(p, p->name, 0);
    return;
  }
  if (c == '}' || c == ']') {
    if (--p->depth == 0) {
      value_done(p);
    } else if (p->depth == 1 && p->scan_ok && p->expect == E_NESTED) {
      p->expect = E_NEXT;
      if (p->key == K_ARGS) {
        p->args_off = p->tok_start;
        p->args_end = p->hold.len;
      }
    }
    return;
  }
  if (p->depth > 1 || !p->scan_ok)
    return;
  if (p->expect == E_LIT && (is_ws(c) || c == ',')) { /* a literal ends */
    if (!lit_ok(p))
      p->scan_ok = 0;
    p->expect = E_NEXT;
  }
  if (is_ws(c))
    return;
  if (c == ':' && p->expect == E_COLON)
    p->expect = E_VALUE;
  else if (c == ',' && p->expect == E_NEXT)
    p->expect = E_KEY;
  else if (p->expect == E_VALUE && p->key == K_OTHER) {
    p->expect = E_LIT;
    p->tok_start = p->hold.len - 1;
  } else if (p->expect != E_LIT)
    p->scan_ok = 0; /* not JSON (or a name / arguments of the wrong type): the whole decides */
}

/* ---- committed calls ---------------------------------------------------------------------- */

static void call_done(pl_tool_parser *p) {
  p->hold.len = 0;
  p->post_ws = 0;
  p->state = S_POST;
}

/* A byte of the committed call: arguments (streamed) then the rest of the object (skipped). */
static void committed_byte(pl_tool_parser *p, int c) {
  if (p->state == S_ARGS)
    put(p, &p->araw, (const char *)&(char){(char)c}, 1);
  if (p->in_str) {
    if (p->esc)
      p->esc = 0;
    else if (c == '\\')
      p->esc = 1;
    else if (c == '"')
      p->in_str = 0;
    return;
  }
  if (c == '"')
    p->in_str = 1;
  else if (c == '{' || c == '[')
    p->depth++;
  else if ((c == '}' || c == ']') && --p->depth == 0) {
    if (p->state == S_TAIL) {
      call_done(p);
      return;
    }
    args_close(p);
    if (p->v11) { /* no object around Mistral v11 arguments */
      call_done(p);
    } else {
      p->depth = 1; /* back inside the call object */
      p->state = S_TAIL;
    }
  }
}

/* ---- after a call ------------------------------------------------------------------------- */

/* Hermes closing tag / Mistral separator / Llama 3 separator, after a call. */
static void post(pl_tool_parser *p, int c) {
  put(p, &p->hold, (const char *)&(char){(char)c}, 1);
  const char *h = p->hold.data;
  size_t n = p->hold.len, i = p->post_ws;
  if (i + 1 == n && is_ws(c)) { /* still only whitespace */
    p->post_ws = n;
    return;
  }
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
  p->post_ws = 0;
  p->state = p->f == PL_TOOLS_LLAMA3 ? S_PRE : S_TEXT;
  if (p->f == PL_TOOLS_LLAMA3) /* a call may follow without ";" (Llama 3.2 does) */
    p->mark_len = 0;
  feed_bytes(p, t.data, t.len);
  pl_strbuf_free(&t);
}

/* ---- Mistral v11+: [TOOL_CALLS]name[ARGS]{...} (v13: name[CALL_ID]id[ARGS]{...}) ---------- */

static int name_char(int c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
         c == '_' || c == '-' || c == '.';
}

static void mistral_byte(pl_tool_parser *p, int c) {
  put(p, &p->hold, (const char *)&(char){(char)c}, 1);
  size_t n = p->hold.len;
  switch (p->state) {
  case S_MNAME:
    if (c == '[' && n - 1 > p->name_start) {
      p->name_end = n - 1;
      p->tag_start = n - 1;
      p->state = S_MTAG;
    } else if (!name_char(c) || n - p->name_start >= NAME_MAX_) {
      reject(p);
    }
    return;
  case S_MTAG: {
    static const char args[] = "[ARGS]", cid[] = "[CALL_ID]";
    const char *t = p->hold.data + p->tag_start;
    size_t k = n - p->tag_start;
    if (k <= sizeof args - 1 && !memcmp(t, args, k)) {
      if (k == sizeof args - 1)
        p->state = S_MARGS;
    } else if (!p->cid_seen && k <= sizeof cid - 1 && !memcmp(t, cid, k)) {
      if (k == sizeof cid - 1) {
        p->cid_seen = 1;
        p->tok_start = n; /* the id starts here */
        p->state = S_MCID;
      }
    } else {
      reject(p);
    }
    return;
  }
  case S_MCID:
    if (c == '[') {
      p->tag_start = n - 1;
      p->state = S_MTAG;
    } else if (!name_char(c) || n - p->tok_start > MISTRAL_ID_MAX) {
      reject(p);
    }
    return;
  case S_MARGS:
    if (is_ws(c))
      return;
    if (c == '{') {
      size_t k = p->name_end - p->name_start;
      memcpy(p->name, p->hold.data + p->name_start, k);
      p->name[k] = 0;
      commit(p, p->name, 1);
      return;
    }
    reject(p);
    return;
  }
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
      if (p->post_ws + 1 == p->hold.len && is_ws(c)) {
        p->post_ws++;
        return;
      }
      size_t k = p->hold.len - p->post_ws;
      if (k <= ml && !memcmp(p->hold.data + p->post_ws, m, k)) {
        if (k == ml) {
          p->mark_len = 0;
          p->post_ws = 0;
          p->state = S_PRE;
        }
        return;
      }
      if (k == 1 && c == '{') {
        p->mark_len = 0;
        p->post_ws = 0;
        obj_begin(p);
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
      obj_begin(p);
      return;
    }
    if (p->state == S_PRE && p->f == PL_TOOLS_MISTRAL && p->mark_len && name_char(c)) {
      p->name_start = p->hold.len - 1; /* v11+: the name, then [ARGS] */
      p->cid_seen = 0;
      p->state = S_MNAME;
      return;
    }
    reject(p);
    return;
  case S_VAL:
    put(p, &p->hold, &ch, 1);
    obj_byte(p, c);
    return;
  case S_ARGS:
  case S_TAIL:
    committed_byte(p, c);
    return;
  case S_POST:
    post(p, c);
    return;
  default:
    mistral_byte(p, c);
    return;
  }
}

static void feed_bytes(pl_tool_parser *p, const char *s, size_t n) {
  for (size_t i = 0; i < n && !p->oom; i++)
    step(p, (unsigned char)s[i]);
}

int pl_tool_parser_create(pl_tool_format f, const char *id_seed, const json_t *tools,
                          pl_tool_parser **out) {
  pl_tool_parser *p = pl_calloc(1, sizeof *p);
  if (!p || !(p->calls = json_array())) {
    pl_free(p);
    return pl_fail(PL_ENOMEM, "out of memory");
  }
  p->f = f == PL_TOOLS_MISTRAL_V11 ? PL_TOOLS_MISTRAL : f; /* one parser reads both forms */
  p->tools = json_is_array(tools) ? json_incref((json_t *)tools) : NULL;
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
  pl_strbuf_free(&p->araw);
  pl_strbuf_free(&p->args);
  json_decref(p->calls);
  json_decref(p->tools);
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
  if (p->open && !p->oom)
    args_flush(p, 0); /* the argument bytes of this feed go out now */
  if (final && !p->oom) {
    if (p->open) {
      args_close(p); /* cut short: the call keeps the arguments it has */
    } else if (p->state == S_POST || p->state == S_TAIL) {
      p->hold.len = 0; /* whitespace or a partial closing tag after a complete call */
    } else if (p->hold.len) {
      /* an unfinished call, marker or separator: what it held is content as it stands */
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
                  const json_t *tools, json_t **calls, char **content_out) {
  *calls = NULL;
  *content_out = NULL;
  pl_tool_parser *p;
  PL_TRY(pl_tool_parser_create(f, id_seed, tools, &p));
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
