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
