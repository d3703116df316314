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
    return strstr(t, "[ARGS]") ? PL_TOOLS_MISTRAL_V11 : PL_TOOLS_MISTRAL;
  if (strstr(t, "<tool_call>"))
    return PL_TOOLS_HERMES;
  if (strstr(t, "<|python_tag|>") || strstr(t, "ipython"))
    return PL_TOOLS_LLAMA3;
  return PL_TOOLS_HERMES;
}

/* Mistral v11+: the name is bare text before [ARGS], so the schema is an anyOf of the tools'
 * parameters; its root alternation names one rule per tool, in order:
 *   root ::= sA        sA ::= s1 | s7        (s1: the first tool's arguments, s7: the second's)
 * and the call rule pairs each name with its rule. */
static char *mistral_v11_grammar(const json_t *tools, const char *name, int parallel,
                                 pl_gconv_error *err) {
  json_t *any = json_array(), *names = json_array();
  for (size_t i = 0; any && names && i < json_array_size(tools); i++) {
    json_t *fn = json_object_get(json_array_get(tools, i), "function");
    const char *n = json_string_value(json_object_get(fn, "name"));
    if (!n || (name && strcmp(n, name) != 0))
      continue;
    json_t *params = json_object_get(fn, "parameters");
    json_array_append_new(any, params ? json_incref(params)
                                      : json_pack("{s:s,s:b}", "type", "object",
                                                  "additionalProperties", 1));
    json_array_append_new(names, json_string(n));
  }
  char *g = NULL;
  if (any && json_array_size(any) > 0) {
    json_t *schema = json_pack("{s:O}", "anyOf", any);
    g = schema ? pl_json_schema_to_gbnf(schema, err) : NULL;
    json_decref(schema);
  } else {
    snprintf(err->message, sizeof err->message, "no tool to call");
  }
  char *root = g ? strstr(g, "\nroot ::= ") : NULL, alt[32] = "";
  char *line = NULL;
  if (root && sscanf(root + 10, "%31s", alt) == 1) {
    char pat[40];
    snprintf(pat, sizeof pat, "\n%s ::= ", alt);
    line = strstr(g, pat);
    line = line ? line + strlen(pat) : NULL;
  }
  pl_gbuf b = {0};
  if (line) {
    root[1] = 0; /* keep the rules, drop the root */
    pl_gbuf_put(&b, g);
    pl_gbuf_put(&b, "call ::= ");
    const char *r = line;
    for (size_t i = 0; i < json_array_size(names); i++) {
      size_t n = strcspn(r, " \n");
      const char *tool = json_string_value(json_array_get(names, i));
      pl_gbuf_put(&b, i ? " | " : "");
      pl_gbuf_literal(&b, tool, strlen(tool));
      pl_gbuf_put(&b, " \"[ARGS]\" ");
      pl_gbuf_putn(&b, r, n);
      r += n;
      r += strncmp(r, " | ", 3) == 0 ? 3 : 0;
    }
    pl_gbuf_printf(&b, "\nroot ::= \"[TOOL_CALLS]\" call (\"[TOOL_CALLS]\" call)%s\n",
                   parallel ? "{0,2}" : "{0,0}");
  } else if (g) {
    snprintf(err->message, sizeof err->message, "internal: no root alternation");
  }
  pl_free(g);
  json_decref(any);
  json_decref(names);
  if (b.oom || (!b.p && !err->message[0])) {
    pl_free(b.p);
    snprintf(err->message, sizeof err->message, "out of memory");
    return NULL;
  }
  return b.p;
}

char *pl_tool_grammar(pl_tool_format f, const json_t *tools, const char *name, int parallel,
                      pl_gconv_error *err) {
  if (f == PL_TOOLS_MISTRAL_V11)
    return mistral_v11_grammar(tools, name, parallel, err);
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
  if (f == PL_TOOLS_LLAMA3) /* Llama 3.1/3.2 templates reject several calls in one message */
    parallel = 0;
  pl_gbuf b = {0};
  pl_gbuf_put(&b, g);
  pl_free(g);
  if (f == PL_TOOLS_HERMES)
    pl_gbuf_printf(&b, "tc ::= \"<tool_call>\\n\" %s \"\\n</tool_call>\"\nroot ::= tc (\"\\n\" tc)%s\n",
                   call, parallel ? "{0,2}" : "{0,0}");
  else if (f == PL_TOOLS_MISTRAL)
    pl_gbuf_printf(&b, "root ::= \"[TOOL_CALLS][\" %s (\", \" %s)%s \"]\"\n", call, call,
                   parallel ? "{0,2}" : "{0,0}");
  else
    pl_gbuf_printf(&b, "root ::= %s (\"; \" %s)%s\n", call, call, parallel ? "{0,2}" : "{0,0}");
  if (b.oom) {
    pl_free(b.p);
    snprintf(err->message, sizeof err->message, "out of memory");
    return NULL;
  }
  return b.p;
}
