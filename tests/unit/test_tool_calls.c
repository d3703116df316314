/* Tool-call parsers on outputs in each family's documented format (Hermes/Qwen <tool_call>,
 * Llama 3.1 JSON, Mistral [TOOL_CALLS]); text that is not a valid call stays content; the
 * incremental parser gives the same content and calls however the output is split (every
 * two-piece split, and one byte at a time), as a stream and as one text; the forcing grammars
 * accept the formats the parsers read. The outputs are written by hand in the formats the
 * models' chat templates render assistant tool calls in (no model run recorded them). */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
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
    const char *id = json_string_value(json_object_get(json_array_get(calls, 0), "id"));
    if (f == PL_TOOLS_MISTRAL) { /* what Mistral's templates accept back: 9 alphanumerics */
      int ok = strlen(id) == 9;
      for (int i = 0; ok && i < 9; i++)
        ok = (id[i] >= 'a' && id[i] <= 'z') || (id[i] >= 'A' && id[i] <= 'Z') ||
             (id[i] >= '0' && id[i] <= '9');
      CHECK(ok, "mistral id '%s'", id);
      json_t *c1 = json_array_get(calls, 1);
      CHECK(!c1 || strcmp(json_string_value(json_object_get(c1, "id")), id) != 0);
    } else {
      CHECK(!strncmp(id, "call_", 5));
    }
    CHECK((content == NULL) == (c == NULL) && (!c || !strcmp(c, content)), "content '%s'",
          c ? c : "(null)");
  }
  json_decref(calls);
  pl_free(c);
}

/* Feed text in the pieces cut at cuts[0..n_cuts) (then an empty final feed, as a stream's
 * finish event is), collecting the content and the call deltas. */
static void feed_split(pl_tool_format f, const char *text, const size_t *cuts, int n_cuts,
                       char **content, json_t **calls) {
  pl_tool_parser *p;
  CHECK(pl_tool_parser_create(f, "seed", &p) == 0);
  size_t len = strlen(text), at = 0;
  char *acc = calloc(len + 1, 1);
  size_t al = 0;
  *calls = json_array();
  for (int i = 0; i <= n_cuts + 1; i++) {
    size_t to = i < n_cuts ? cuts[i] : len;
    pl_tool_out o;
    CHECK(pl_tool_parser_feed(p, text + at, to - at, i == n_cuts + 1, &o) == 0);
    if (o.content) {
      memcpy(acc + al, o.content, o.content_len);
      al += o.content_len;
    }
    size_t k;
    json_t *d;
    json_array_foreach(o.calls, k, d) {
      /* a delta carries the next index, whole (id, type, name, arguments) */
      CHECK_EQ_INT(json_integer_value(json_object_get(d, "index")), json_array_size(*calls));
      json_t *c = json_deep_copy(d);
      json_object_del(c, "index");
      json_array_append_new(*calls, c);
    }
    pl_tool_out_free(&o);
    at = to;
  }
  CHECK(json_equal(*calls, (json_t *)pl_tool_parser_calls(p)));
  pl_tool_parser_free(p);
  *content = acc;
}

/* text parsed whole must give n calls named names[] with arguments args[] (JSON) and content;
 * every split must give exactly the same. */
static void expect_all(pl_tool_format f, const char *text, int n, const char *const *names,
                       const char *const *args, const char *content) {
  json_t *calls;
  char *c;
  int got = pl_tool_parse(f, text, strlen(text), "seed", &calls, &c);
  CHECK(got == n, "%d calls, want %d: %s", got, n, text);
  for (int i = 0; i < n && i < got; i++) {
    json_t *fn = json_object_get(json_array_get(calls, (size_t)i), "function");
    CHECK(!strcmp(json_string_value(json_object_get(fn, "name")), names[i]), "%s", text);
    json_t *a = json_loads(json_string_value(json_object_get(fn, "arguments")), 0, NULL);
    json_t *b = json_loads(args[i], 0, NULL);
    CHECK(a && b && json_equal(a, b), "arguments %d of %s", i, text);
    json_decref(a);
    json_decref(b);
  }
  const char *want = n == 0 ? text : content; /* no call: the text as it is */
  CHECK((want == NULL) == (c == NULL) && (!c || !strcmp(c, want)), "content '%s' want '%s'",
        c ? c : "(null)", want ? want : "(null)");
  size_t len = strlen(text);
  int bad = 0;
  for (size_t cut = 0; cut <= len + 1 && !bad; cut++) { /* len + 1: one byte at a time */
    size_t one[1] = {cut}, *cuts = one;
    int n_cuts = 1;
    if (cut == len + 1) {
      cuts = malloc((len + 1) * sizeof *cuts);
      for (size_t i = 0; i <= len; i++)
        cuts[i] = i;
      n_cuts = (int)len + 1;
    }
    char *sc;
    json_t *scalls;
    feed_split(f, text, cuts, n_cuts, &sc, &scalls);
    int same_calls = calls ? json_equal(scalls, calls) : json_array_size(scalls) == 0;
    if (strcmp(sc, c ? c : "") != 0 || !same_calls) {
      char *dump = json_dumps(scalls, 0);
      CHECK(0, "split at %zu of %s: content '%s' calls %s", cut, text, sc, dump);
      free(dump);
      bad = 1;
    }
    if (cuts != one)
      free(cuts);
    free(sc);
    json_decref(scalls);
  }
  CHECK(!bad);
  json_decref(calls);
  pl_free(c);
}

#define NAMES(...) ((const char *const[]){__VA_ARGS__})

static void split_cases(void) {
  /* Hermes 2 Pro / Qwen2.5 / Qwen3 */
  expect_all(PL_TOOLS_HERMES, "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": "
             "\"Paris\", \"unit\": \"c\"}}\n</tool_call>", 1, NAMES("get_weather"),
             NAMES("{\"city\": \"Paris\", \"unit\": \"c\"}"), NULL);
  expect_all(PL_TOOLS_HERMES, "I'll check both.\n<tool_call>\n{\"name\": \"a\", \"arguments\": "
             "{\"s\": \"} ] \\\" <tool_call>\"}}\n</tool_call>\n<tool_call>\n{\"name\": \"b\", "
             "\"arguments\": {\"x\": [1, {\"y\": []}]}}\n</tool_call>", 2, NAMES("a", "b"),
             NAMES("{\"s\": \"} ] \\\" <tool_call>\"}", "{\"x\": [1, {\"y\": []}]}"),
             "I'll check both.");
  expect_all(PL_TOOLS_HERMES, "<think>\nThe user wants the weather.\n</think>\n\n<tool_call>\n"
             "{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Z\u00fcrich \U0001F642\"}}\n"
             "</tool_call>", 1, NAMES("get_weather"), NAMES("{\"city\": \"Z\u00fcrich \U0001F642\"}"),
             "<think>\nThe user wants the weather.\n</think>");
  expect_all(PL_TOOLS_HERMES, "<tool_call>\n{\"name\": \"a\", \"arguments\": {}", 0, NULL, NULL,
             NULL);
  expect_all(PL_TOOLS_HERMES, "<tool_call>not json</tool_call> then <tool_call>\n{\"name\":\"f\","
             "\"arguments\":{}}\n</tool_call> done", 1, NAMES("f"), NAMES("{}"),
             "<tool_call>not json</tool_call> then done");
  expect_all(PL_TOOLS_HERMES, "<tool_call>{\"arguments\": {\"k\": 1}, \"name\": \"late\"}"
             "</tool_call>", 1, NAMES("late"), NAMES("{\"k\": 1}"), NULL);
  expect_all(PL_TOOLS_HERMES, "<tool_call>{\"name\": \"s\", \"arguments\": \"{\\\"a\\\": 2}\"}"
             "</tool_call>", 1, NAMES("s"), NAMES("{\"a\": 2}"), NULL);
  expect_all(PL_TOOLS_HERMES, "<tool_call>{\"name\": 3, \"arguments\": {}}</tool_call>", 0, NULL,
             NULL, NULL);
  expect_all(PL_TOOLS_HERMES, "Use <tool_ or <tool_call or [TOOL_CALLS] here.", 0, NULL, NULL, NULL);
  expect_all(PL_TOOLS_HERMES, "  plain answer with trailing space  ", 0, NULL, NULL, NULL);
  /* Llama 3.1 / 3.2 */
  expect_all(PL_TOOLS_LLAMA3, "{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Oslo\"}}",
             1, NAMES("get_weather"), NAMES("{\"city\": \"Oslo\"}"), NULL);
  expect_all(PL_TOOLS_LLAMA3, "<|python_tag|>{\"name\": \"f\", \"parameters\": {}}; {\"name\": "
             "\"g\", \"parameters\": {\"k\": 1}}", 2, NAMES("f", "g"), NAMES("{}", "{\"k\": 1}"),
             NULL);
  expect_all(PL_TOOLS_LLAMA3, "\n{\"type\": \"function\", \"name\": \"f\", \"parameters\": "
             "{\"x\": 1}}\n", 1, NAMES("f"), NAMES("{\"x\": 1}"), NULL);
  expect_all(PL_TOOLS_LLAMA3, "{\"name\": \"f\", \"parameters\": {}} and then some text", 1,
             NAMES("f"), NAMES("{}"), "and then some text");
  expect_all(PL_TOOLS_LLAMA3, "The answer is {\"name\": \"f\", \"parameters\": {}}", 0, NULL,
             NULL, NULL);
  expect_all(PL_TOOLS_LLAMA3, "{\"answer\": 42}", 0, NULL, NULL, NULL);
  expect_all(PL_TOOLS_LLAMA3, "{\"name\": \"f\", \"parameters\": {}}; oops", 1, NAMES("f"),
             NAMES("{}"), "; oops");
  /* Mistral (v3 tokenizer: an array after [TOOL_CALLS]) */
  expect_all(PL_TOOLS_MISTRAL, "[TOOL_CALLS][{\"name\": \"f\", \"arguments\": {\"q\": \"x\"}}, "
             "{\"name\": \"g\", \"arguments\": {}}]", 2, NAMES("f", "g"),
             NAMES("{\"q\": \"x\"}", "{}"), NULL);
  expect_all(PL_TOOLS_MISTRAL, "Sure: [TOOL_CALLS] [{\"name\": \"f\", \"arguments\": {\"q\": "
             "\"[x]\"}, \"id\": \"abc123def\"}]", 1, NAMES("f"), NAMES("{\"q\": \"[x]\"}"), "Sure:");
  expect_all(PL_TOOLS_MISTRAL, "[TOOL_CALLS][{\"name\": \"f\"", 0, NULL, NULL, NULL);
  expect_all(PL_TOOLS_MISTRAL, "[TOOL_CALLS][{\"name\": \"f\", \"arguments\": {}}, 7]", 1,
             NAMES("f"), NAMES("{}"), ", 7]");
  expect_all(PL_TOOLS_MISTRAL, "[TOOL_CALLS]{\"name\": \"one\", \"arguments\": {}}", 1,
             NAMES("one"), NAMES("{}"), NULL);
}

int main(void) {
  split_cases();
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
