/* Tool-call parsers on outputs in each family's documented format (Hermes/Qwen <tool_call>,
 * Llama 3.1 JSON, Mistral [TOOL_CALLS]); text that is not a valid call stays content; the
 * forcing grammars accept the formats the parsers read. */
#include <jansson.h>
#include <string.h>

#include "check.h"
#include "grammar/grammar.h"
#include "server/tool_calls.h"
#include "util/alloc.h"

static void expect(pl_tool_format f, const char *out, int n, const char *name0, const char *args0,
                   const char *content) {
  json_t *calls;
  char *c;
  int got = pl_tool_parse(f, out, strlen(out), "seed", &calls, &c);
  CHECK_EQ_INT(got, n);
  if (n > 0 && calls) {
    json_t *fn = json_object_get(json_array_get(calls, 0), "function");
    CHECK(!strcmp(json_string_value(json_object_get(fn, "name")), name0), "%s", out);
    json_t *a = json_loads(json_string_value(json_object_get(fn, "arguments")), 0, NULL);
    json_t *b = json_loads(args0, 0, NULL);
    CHECK(a && b && json_equal(a, b), "arguments of %s", out);
    json_decref(a);
    json_decref(b);
    CHECK(!strncmp(json_string_value(json_object_get(json_array_get(calls, 0), "id")), "call_",
                   5));
    CHECK((content == NULL) == (c == NULL) && (!c || !strcmp(c, content)), "content '%s'",
          c ? c : "(null)");
  }
  json_decref(calls);
  pl_free(c);
}

int main(void) {
  expect(PL_TOOLS_HERMES, "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": "
         "\"Paris\"}}\n</tool_call>", 1, "get_weather", "{\"city\":\"Paris\"}", NULL);
  expect(PL_TOOLS_HERMES, "Let me check.\n<tool_call>\n{\"name\": \"a\", \"arguments\": {}}\n"
         "</tool_call>\n<tool_call>\n{\"name\": \"b\", \"arguments\": {\"x\": [1, 2]}}\n"
         "</tool_call>", 2, "a", "{}", "Let me check.");
  expect(PL_TOOLS_HERMES, "<tool_call>\n{\"name\": \"a\", \"arguments\": {}", 0, NULL, NULL, NULL);
  expect(PL_TOOLS_HERMES, "just text", 0, NULL, NULL, NULL);
  expect(PL_TOOLS_LLAMA3, "{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Oslo\"}}", 1,
         "get_weather", "{\"city\":\"Oslo\"}", NULL);
  expect(PL_TOOLS_LLAMA3, "<|python_tag|>{\"name\": \"f\", \"parameters\": {}}; {\"name\": \"g\", "
         "\"parameters\": {\"k\": 1}}", 2, "f", "{}", NULL);
  expect(PL_TOOLS_LLAMA3, "{\"name\": 5}", 0, NULL, NULL, NULL);
  expect(PL_TOOLS_LLAMA3, "The answer is {\"name\": \"f\", \"parameters\": {}}", 0, NULL, NULL,
         NULL);
  expect(PL_TOOLS_MISTRAL, "[TOOL_CALLS][{\"name\": \"f\", \"arguments\": {\"q\": \"x\"}}, {\"name\":"
         " \"g\", \"arguments\": {}}]", 2, "f", "{\"q\":\"x\"}", NULL);
  expect(PL_TOOLS_MISTRAL, "[TOOL_CALLS][{\"name\": \"f\"", 0, NULL, NULL, NULL);
  CHECK(pl_tool_format_detect("{% if tools %}<tool_call>{% endif %}") == PL_TOOLS_HERMES);
  CHECK(pl_tool_format_detect("[TOOL_CALLS] {{ x }}") == PL_TOOLS_MISTRAL);
  CHECK(pl_tool_format_detect("<|python_tag|>") == PL_TOOLS_LLAMA3);

  /* the forcing grammars accept what the parsers read */
  json_t *tools = json_loads("[{\"type\":\"function\",\"function\":{\"name\":\"f\",\"parameters\":"
                             "{\"type\":\"object\",\"properties\":{\"q\":{\"type\":\"string\"}},"
                             "\"required\":[\"q\"]}}}]", 0, NULL);
  const char *texts[3] = {"<tool_call>\n{\"name\": \"f\", \"arguments\": {\"q\": \"x\"}}\n</tool_call>",
                          "{\"name\": \"f\", \"parameters\": {\"q\": \"x\"}}",
                          "[TOOL_CALLS][{\"name\": \"f\", \"arguments\": {\"q\": \"x\"}}]"};
  for (int f = 0; f < 3; f++) {
    pl_gconv_error ce;
    char *g = pl_tool_grammar((pl_tool_format)f, tools, NULL, 0, &ce);
    CHECK(g != NULL, "%s", ce.message);
    pl_grammar *gr = NULL;
    CHECK(g && pl_grammar_compile(g, strlen(g), &gr) == 0, "%s", g ? g : "");
    pl_vocab *v;
    const char *p[1] = {"x"};
    size_t l[1] = {1};
    pl_vocab_create_raw(1, p, l, NULL, 0, &v);
    pl_gmatch *m;
    CHECK(gr && pl_gmatch_create(gr, v, &m) == 0);
    CHECK(pl_gmatch_accept_bytes(m, texts[f], strlen(texts[f])) == 0 && pl_gmatch_can_end(m),
          "format %d", f);
    pl_gmatch_free(m);
    pl_vocab_free(v);
    pl_grammar_free(gr);
    pl_free(g);
  }
  json_decref(tools);
  return check_summary("test_tool_calls");
}
