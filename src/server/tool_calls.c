/* Tool-call formats (see tool_calls.h). */
#include "server/tool_calls.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "grammar/grammar.h"
#include "util/alloc.h"

pl_tool_format pl_tool_format_detect(const char *t) {
  if (!t)
    return PL_TOOLS_HERMES;
  if (strstr(t, "[TOOL_CALLS]"))
    return PL_TOOLS_MISTRAL;
  if (strstr(t, "<tool_call>"))
    return PL_TOOLS_HERMES;
  if (strstr(t, "<|python_tag|>") || strstr(t, "ipython"))
    return PL_TOOLS_LLAMA3;
  return PL_TOOLS_HERMES;
}

static const char *skip_ws(const char *p, const char *e) {
  while (p < e && (*p == ' ' || *p == '\n' || *p == '\t' || *p == '\r'))
    p++;
  return p;
}

/* One call object -> OpenAI shape; NULL if it is not {"name": string, args-key: object}. */
static json_t *make_call(json_t *o, const char *id_seed, int idx) {
  const char *name = json_string_value(json_object_get(o, "name"));
  json_t *args = json_object_get(o, "arguments");
  if (!args)
    args = json_object_get(o, "parameters");
  if (!json_is_object(o) || !name || !args)
    return NULL;
  char *a = json_is_string(args) ? strdup(json_string_value(args))
                                 : json_dumps(args, JSON_COMPACT | JSON_ENCODE_ANY);
  if (!a)
    return NULL;
  char id[64];
  unsigned long h = 5381;
  for (const char *p = id_seed ? id_seed : ""; *p; p++)
    h = h * 33 + (unsigned char)*p;
  snprintf(id, sizeof id, "call_%08lx%04x", h & 0xffffffffUL, idx);
  json_t *c = json_pack("{s:s,s:s,s:{s:s,s:s}}", "id", id, "type", "function", "function",
                        "name", name, "arguments", a);
  free(a);
  return c;
}

/* Parse JSON at [p, e) allowing trailing text; *end = after it. */
static json_t *json_at(const char *p, const char *e, const char **end) {
  json_error_t je;
  json_t *v = json_loadb(p, (size_t)(e - p), JSON_DISABLE_EOF_CHECK | JSON_DECODE_ANY, &je);
  if (v)
    *end = p + je.position;
  return v;
}

int pl_tool_parse(pl_tool_format f, const char *text, size_t len, const char *id_seed,
                  json_t **calls, char **content) {
  *calls = NULL;
  *content = NULL;
  const char *s = text, *e = text + len;
  json_t *arr = json_array();
  if (!arr)
    return -2;
  char *rest = pl_malloc(len + 1);
  size_t rl = 0;
  if (!rest) {
    json_decref(arr);
    return -2;
  }
  int ok = 1;
  if (f == PL_TOOLS_HERMES) {
    const char *p = s;
    for (;;) {
      const char *t = strstr(p, "<tool_call>");
      if (!t || t >= e) {
        memcpy(rest + rl, p, (size_t)(e - p));
        rl += (size_t)(e - p);
        break;
      }
      memcpy(rest + rl, p, (size_t)(t - p));
      rl += (size_t)(t - p);
      const char *q = skip_ws(t + 11, e), *end;
      json_t *o = json_at(q, e, &end);
      json_t *c = o ? make_call(o, id_seed, (int)json_array_size(arr)) : NULL;
      json_decref(o);
      if (!c) {
        ok = 0;
        break;
      }
      json_array_append_new(arr, c);
      end = skip_ws(end, e);
      if ((size_t)(e - end) >= 12 && !memcmp(end, "</tool_call>", 12))
        end += 12;
      else if (end != e) {
        ok = 0;
        break;
      }
      p = end;
    }
  } else if (f == PL_TOOLS_MISTRAL) {
    const char *t = strstr(s, "[TOOL_CALLS]");
    if (t && t < e) {
      memcpy(rest, s, (size_t)(t - s));
      rl = (size_t)(t - s);
      const char *end;
      json_t *a = json_at(skip_ws(t + 12, e), e, &end);
      if (!json_is_array(a) || skip_ws(end, e) != e)
        ok = 0;
      for (size_t i = 0; ok && i < json_array_size(a); i++) {
        json_t *c = make_call(json_array_get(a, i), id_seed, (int)i);
        if (!c)
          ok = 0;
        else
          json_array_append_new(arr, c);
      }
      json_decref(a);
    } else {
      memcpy(rest, s, len);
      rl = len;
    }
  } else { /* Llama 3.1: the whole message is one or more call objects */
    const char *p = skip_ws(s, e);
    if ((size_t)(e - p) >= 14 && !memcmp(p, "<|python_tag|>", 14))
      p = skip_ws(p + 14, e);
    if (p < e && *p == '{') {
      while (ok && p < e) {
        const char *end;
        json_t *o = json_at(p, e, &end);
        json_t *c = o ? make_call(o, id_seed, (int)json_array_size(arr)) : NULL;
        json_decref(o);
        if (!c) {
          ok = 0;
          break;
        }
        json_array_append_new(arr, c);
        p = skip_ws(end, e);
        if (p < e && *p == ';')
          p = skip_ws(p + 1, e);
      }
    } else {
      memcpy(rest, s, len);
      rl = len;
    }
  }
  if (!ok || json_array_size(arr) == 0) {
    json_decref(arr);
    pl_free(rest);
    return 0;
  }
  const char *a = skip_ws(rest, rest + rl);
  size_t al = rl - (size_t)(a - rest);
  while (al && (a[al - 1] == ' ' || a[al - 1] == '\n' || a[al - 1] == '\t' || a[al - 1] == '\r'))
    al--;
  if (al) {
    memmove(rest, a, al);
    rest[al] = 0;
    *content = rest;
  } else {
    pl_free(rest);
  }
  *calls = arr;
  return (int)json_array_size(arr);
}

char *pl_tool_grammar(pl_tool_format f, const json_t *tools, const char *name, int parallel,
                      pl_gconv_error *err) {
  json_t *any = json_array();
  for (size_t i = 0; i < json_array_size(tools); i++) {
    json_t *fn = json_object_get(json_array_get(tools, i), "function");
    const char *n = json_string_value(json_object_get(fn, "name"));
    if (!n || (name && strcmp(n, name) != 0))
      continue;
    json_t *params = json_object_get(fn, "parameters");
    json_t *p = params ? json_incref(params) : json_pack("{s:s,s:b}", "type", "object",
                                                        "additionalProperties", 1);
    json_t *call = json_pack("{s:s,s:{s:{s:s},s:o},s:[s,s],s:b}", "type", "object",
                             "properties", "name", "const", n,
                             f == PL_TOOLS_LLAMA3 ? "parameters" : "arguments", p, "required",
                             "name", f == PL_TOOLS_LLAMA3 ? "parameters" : "arguments",
                             "additionalProperties", 0);
    json_array_append_new(any, call);
  }
  if (json_array_size(any) == 0) {
    json_decref(any);
    snprintf(err->message, sizeof err->message, "no tool to call");
    return NULL;
  }
  json_t *schema = json_pack("{s:o}", "anyOf", any);
  char *g = pl_json_schema_to_gbnf(schema, err);
  json_decref(schema);
  if (!g)
    return NULL;
  char *root = strstr(g, "\nroot ::= ");
  if (!root) {
    pl_free(g);
    snprintf(err->message, sizeof err->message, "internal: no root rule");
    return NULL;
  }
  char call[32];
  sscanf(root + 10, "%31s", call);
  root[1] = 0;
  pl_gbuf b = {0};
  pl_gbuf_put(&b, g);
  pl_free(g);
  const char *more = parallel ? "*" : "?";
  if (f == PL_TOOLS_HERMES)
    pl_gbuf_printf(&b, "tc ::= \"<tool_call>\\n\" %s \"\\n</tool_call>\"\nroot ::= tc (\"\\n\" tc)%s\n",
                   call, parallel ? "{0,2}" : "{0,0}");
  else if (f == PL_TOOLS_MISTRAL)
    pl_gbuf_printf(&b, "root ::= \"[TOOL_CALLS][\" %s (\", \" %s)%s \"]\"\n", call, call,
                   parallel ? "{0,2}" : "{0,0}");
  else
    pl_gbuf_printf(&b, "root ::= %s (\"; \" %s)%s\n", call, call, parallel ? "{0,2}" : "{0,0}");
  (void)more;
  if (b.oom) {
    pl_free(b.p);
    snprintf(err->message, sizeof err->message, "out of memory");
    return NULL;
  }
  return b.p;
}
