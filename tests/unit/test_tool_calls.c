/* Tool-call parsers on outputs in each family's documented format (Hermes/Qwen <tool_call>,
 * Llama 3.1 JSON, Mistral [TOOL_CALLS] both as an array and v11+ name[ARGS]{...}); text that
 * is not a valid call stays content; the incremental parser gives the same content and calls
 * however the output is split (every two-piece split, and one byte at a time), as a stream and
 * as one text: the streamed deltas (a first one with index, id, type and name, then argument
 * fragments) reassemble to the non-stream calls, arguments byte for byte, and they are the
 * model's raw argument text. A call is streamed incrementally (its name before its arguments
 * end); a long output costs linear time; the forcing grammars accept the formats the parsers
 * read. The outputs are written by hand in the formats the models' chat templates render
 * assistant tool calls in (no model run recorded them). */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "check.h"
#include "grammar/grammar.h"
#include "server/tool_calls.h"
#include "util/alloc.h"
#include "util/error.h"

static json_t *g_tools; /* the declared tools of the cases (NULL: any name) */

static void expect(pl_tool_format f, const char *out, int n, const char *name0, const char *args0,
                   const char *content) {
  json_t *calls;
  char *c;
  int got = pl_tool_parse(f, out, strlen(out), "seed", g_tools, &calls, &c);
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
 * finish event is), collecting the content and reassembling the calls from the deltas the way
 * OpenAI's clients do (a new index starts a call, later deltas append arguments). nd[i]
 * gets the number of deltas call i came in. */
static void feed_split(pl_tool_format f, const char *text, const size_t *cuts, int n_cuts,
                       char **content, json_t **calls, int nd[64]) {
  pl_tool_parser *p;
  CHECK(pl_tool_parser_create(f, "seed", g_tools, &p) == 0);
  size_t len = strlen(text), at = 0;
  char *acc = calloc(len + 1, 1);
  size_t al = 0;
  memset(nd, 0, 64 * sizeof *nd);
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
      size_t idx = (size_t)json_integer_value(json_object_get(d, "index"));
      json_t *fn = json_object_get(d, "function");
      const char *frag = json_string_value(json_object_get(fn, "arguments"));
      CHECK(json_is_integer(json_object_get(d, "index")) && frag, "delta %s", text);
      if (!frag)
        continue;
      if (idx == json_array_size(*calls)) { /* a call's first delta: id, type, name */
        json_t *id = json_object_get(d, "id"), *nm = json_object_get(fn, "name");
        const char *type = json_string_value(json_object_get(d, "type"));
        CHECK(json_is_string(id) && json_is_string(nm) && type && !strcmp(type, "function"));
        json_t *c = json_deep_copy(d);
        json_object_del(c, "index");
        json_array_append_new(*calls, c);
      } else { /* the open (last) call's next fragment, and nothing else */
        CHECK(idx + 1 == json_array_size(*calls) && json_object_size(d) == 2 &&
                  json_object_size(fn) == 1, "delta for %zu of %zu calls", idx,
              json_array_size(*calls));
        json_t *a = json_object_get(json_object_get(json_array_get(*calls, idx), "function"),
                                    "arguments");
        if (a) {
          size_t n0 = json_string_length(a), n1 = strlen(frag);
          char *cat = malloc(n0 + n1 + 1);
          memcpy(cat, json_string_value(a), n0);
          memcpy(cat + n0, frag, n1 + 1);
          json_string_set(a, cat);
          free(cat);
        }
      }
      if (idx < 64)
        nd[idx]++;
    }
    pl_tool_out_free(&o);
    at = to;
  }
  CHECK(json_equal(*calls, (json_t *)pl_tool_parser_calls(p)));
  pl_tool_parser_free(p);
  *content = acc;
}

/* text parsed whole must give n calls named names[] with arguments args[] (byte for byte: the
 * model's own text) and content; every split must give exactly the same. incremental: one
 * byte at a time, every call's arguments stream: a delta for each ASCII byte of them (the
 * first, "{", may ride with the name). */
static void expect_all_(pl_tool_format f, const char *text, int n, const char *const *names,
                        const char *const *args, const char *content, int incremental) {
  json_t *calls;
  char *c;
  int got = pl_tool_parse(f, text, strlen(text), "seed", g_tools, &calls, &c);
  CHECK(got == n, "%d calls, want %d: %s", got, n, text);
  for (int i = 0; i < n && i < got; i++) {
    json_t *fn = json_object_get(json_array_get(calls, (size_t)i), "function");
    CHECK(!strcmp(json_string_value(json_object_get(fn, "name")), names[i]), "%s", text);
    const char *a = json_string_value(json_object_get(fn, "arguments"));
    CHECK(a && !strcmp(a, args[i]), "arguments %d of %s: '%s' want '%s'", i, text, a ? a : "",
          args[i]);
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
    int nd[64];
    feed_split(f, text, cuts, n_cuts, &sc, &scalls, nd);
    int same_calls = calls ? json_equal(scalls, calls) : json_array_size(scalls) == 0;
    if (strcmp(sc, c ? c : "") != 0 || !same_calls) {
      char *dump = json_dumps(scalls, 0);
      CHECK(0, "split at %zu of %s: content '%s' calls %s", cut, text, sc, dump);
      free(dump);
      bad = 1;
    }
    if (cuts != one) {
      free(cuts);
      for (int i = 0; incremental && i < n && i < got; i++) {
        int ascii = 0;
        for (const char *q = args[i]; *q; q++)
          ascii += (unsigned char)*q < 0x80;
        CHECK(nd[i] >= ascii && nd[i] >= 2, "one byte at a time, call %d of %s came in %d "
              "deltas (%d ASCII argument bytes)", i, text, nd[i], ascii);
      }
    }
    free(sc);
    json_decref(scalls);
  }
  CHECK(!bad);
  json_decref(calls);
  pl_free(c);
}

#define expect_all(...) expect_all_(__VA_ARGS__, 1)
#define expect_whole(...) expect_all_(__VA_ARGS__, 0)

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
  /* three parallel calls: indices 0, 1, 2 in order */
  expect_all(PL_TOOLS_HERMES, "<tool_call>\n{\"name\": \"a\", \"arguments\": {\"i\": 0}}\n</tool_call>\n"
             "<tool_call>\n{\"name\": \"b\", \"arguments\": {\"i\": 1}}\n</tool_call>\n<tool_call>\n"
             "{\"name\": \"a\", \"arguments\": {\"i\": 2}}\n</tool_call>", 3, NAMES("a", "b", "a"),
             NAMES("{\"i\": 0}", "{\"i\": 1}", "{\"i\": 2}"), NULL);
  /* committed (name and the arguments object seen) then cut short: a call, arguments as far
   * as they came */
  expect_all(PL_TOOLS_HERMES, "<tool_call>\n{\"name\": \"a\", \"arguments\": {}", 1, NAMES("a"),
             NAMES("{}"), NULL);
  expect_all(PL_TOOLS_HERMES, "<tool_call>\n{\"name\": \"a\", \"arguments\": {\"x\": \"ab", 1,
             NAMES("a"), NAMES("{\"x\": \"ab"), NULL);
  /* not committed yet when the output ends: content */
  expect_all(PL_TOOLS_HERMES, "<tool_call>\n{\"name\": \"a\", \"argum", 0, NULL, NULL, NULL);
  expect_all(PL_TOOLS_HERMES, "<tool_call>not json</tool_call> then <tool_call>\n{\"name\":\"f\","
             "\"arguments\":{}}\n</tool_call> done", 1, NAMES("f"), NAMES("{}"),
             "<tool_call>not json</tool_call> then done");
  /* committed only at the end (name after the arguments; arguments as a JSON string): one
   * delta; the raw object text, or the string's value */
  expect_whole(PL_TOOLS_HERMES, "<tool_call>{\"arguments\": {\"k\": 1}, \"name\": \"late\"}"
               "</tool_call>", 1, NAMES("late"), NAMES("{\"k\": 1}"), NULL);
  expect_whole(PL_TOOLS_HERMES, "<tool_call>{\"name\": \"s\", \"arguments\": \"{\\\"a\\\": 2}\"}"
               "</tool_call>", 1, NAMES("s"), NAMES("{\"a\": 2}"), NULL);
  expect_all(PL_TOOLS_HERMES, "<tool_call>{\"name\": 3, \"arguments\": {}}</tool_call>", 0, NULL,
             NULL, NULL);
  expect_all(PL_TOOLS_HERMES, "<tool_call>{\"x\": tru, \"name\": \"f\", \"arguments\": {}}"
             "</tool_call>", 0, NULL, NULL, NULL);
  expect_all(PL_TOOLS_HERMES, "<tool_call>{\"name\": \"f\", \"arguments\": [1]}</tool_call>", 0,
             NULL, NULL, NULL);
  expect_all(PL_TOOLS_HERMES, "Use <tool_ or <tool_call or [TOOL_CALLS] here.", 0, NULL, NULL, NULL);
  expect_all(PL_TOOLS_HERMES, "  plain answer with trailing space  ", 0, NULL, NULL, NULL);
  /* an invalid byte in the arguments: U+FFFD in both the stream and the whole */
  expect_all(PL_TOOLS_HERMES, "<tool_call>{\"name\": \"f\", \"arguments\": {\"x\": \"\xff\xe2\x82"
             "\"}}</tool_call>", 1, NAMES("f"),
             NAMES("{\"x\": \"\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\"}"), NULL);
  /* Llama 3.1 / 3.2 */
  expect_all(PL_TOOLS_LLAMA3, "{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Oslo\"}}",
             1, NAMES("get_weather"), NAMES("{\"city\": \"Oslo\"}"), NULL);
  expect_all(PL_TOOLS_LLAMA3, "<|python_tag|>{\"name\": \"f\", \"parameters\": {}}; {\"name\": "
             "\"g\", \"parameters\": {\"k\": 1}}", 2, NAMES("f", "g"), NAMES("{}", "{\"k\": 1}"),
             NULL);
  expect_all(PL_TOOLS_LLAMA3, "\n{\"type\": \"function\", \"name\": \"f\", \"parameters\": "
             "{\"x\": 1}}\n", 1, NAMES("f"), NAMES("{\"x\": 1}"), NULL);
  expect_all(PL_TOOLS_LLAMA3, "{\"strict\": true, \"n\": -1.5e3, \"o\": {\"name\": \"no\"}, "
             "\"name\": \"f\", \"parameters\": {\"x\" : [ 1 ,2 ] }}", 1, NAMES("f"),
             NAMES("{\"x\" : [ 1 ,2 ] }"), NULL);
  expect_all(PL_TOOLS_LLAMA3, "{\"name\": \"f\", \"parameters\": {}} and then some text", 1,
             NAMES("f"), NAMES("{}"), "and then some text");
  expect_all(PL_TOOLS_LLAMA3, "The answer is {\"name\": \"f\", \"parameters\": {}}", 0, NULL,
             NULL, NULL);
  expect_all(PL_TOOLS_LLAMA3, "{\"answer\": 42}", 0, NULL, NULL, NULL);
  expect_all(PL_TOOLS_LLAMA3, "{\"name\": \"f\", \"parameters\": {}}; oops", 1, NAMES("f"),
             NAMES("{}"), "; oops");
  /* Mistral (tokenizer v3: an array after [TOOL_CALLS]) */
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
  /* Mistral v11+ (Mistral Small 3.x, Devstral): [TOOL_CALLS]name[ARGS]{...}, one marker per
   * call; v13 adds [CALL_ID] */
  expect_all(PL_TOOLS_MISTRAL, "[TOOL_CALLS]get_weather[ARGS]{\"city\": \"Paris\"}", 1,
             NAMES("get_weather"), NAMES("{\"city\": \"Paris\"}"), NULL);
  expect_all(PL_TOOLS_MISTRAL, "Let me look.[TOOL_CALLS]f[ARGS]{\"a\": [1, \"]}\"]}[TOOL_CALLS]"
             "g_2[ARGS] {}", 2, NAMES("f", "g_2"), NAMES("{\"a\": [1, \"]}\"]}", "{}"),
             "Let me look.");
  expect_all(PL_TOOLS_MISTRAL, "[TOOL_CALLS]f[CALL_ID]a1B2c3D4e[ARGS]{\"x\": 1}", 1, NAMES("f"),
             NAMES("{\"x\": 1}"), NULL);
  expect_all(PL_TOOLS_MISTRAL, "[TOOL_CALLS]f g[ARGS]{}", 0, NULL, NULL, NULL);
  expect_all(PL_TOOLS_MISTRAL, "[TOOL_CALLS]f[ARGS]x", 0, NULL, NULL, NULL);
  expect_all(PL_TOOLS_MISTRAL, "[TOOL_CALLS]f[ARG", 0, NULL, NULL, NULL);
  expect_all(PL_TOOLS_MISTRAL, "[TOOL_CALLS]f[ARGS]{\"x\": 1}trailing", 1, NAMES("f"),
             NAMES("{\"x\": 1}"), "trailing");

  /* declared tools: an undeclared name is no call, however far it got */
  g_tools = json_loads("[{\"type\": \"function\", \"function\": {\"name\": \"get_weather\"}}, "
                       "{\"type\": \"function\", \"function\": {\"name\": \"noop\"}}]", 0, NULL);
  expect_all(PL_TOOLS_HERMES, "<tool_call>\n{\"name\": \"rm_rf\", \"arguments\": {\"p\": \"/\"}}\n"
             "</tool_call>", 0, NULL, NULL, NULL);
  expect_all(PL_TOOLS_HERMES, "<tool_call>\n{\"name\": \"rm_rf\", \"arguments\": {}}\n</tool_call>"
             "<tool_call>\n{\"name\": \"noop\", \"arguments\": {}}\n</tool_call>", 1, NAMES("noop"),
             NAMES("{}"), "<tool_call>\n{\"name\": \"rm_rf\", \"arguments\": {}}\n</tool_call>");
  expect_whole(PL_TOOLS_HERMES, "<tool_call>{\"arguments\": {}, \"name\": \"rm_rf\"}</tool_call>",
               0, NULL, NULL, NULL);
  expect_all(PL_TOOLS_LLAMA3, "{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Oslo\"}}",
             1, NAMES("get_weather"), NAMES("{\"city\": \"Oslo\"}"), NULL);
  expect_all(PL_TOOLS_MISTRAL, "[TOOL_CALLS]noop[ARGS]{}[TOOL_CALLS]nope[ARGS]{}", 1,
             NAMES("noop"), NAMES("{}"), "[TOOL_CALLS]nope[ARGS]{}");
  json_decref(g_tools);
  g_tools = NULL;
}

/* Random texts made of the formats' pieces (markers, braces, keys, names, quotes, escapes,
 * separators, multi-byte and invalid bytes), in each format: one byte at a time and cut at
 * three random points, the stream gives what the whole text gives. */
static void random_texts(void) {
  static const char *const pieces[] = {
      "<tool_call>", "</tool_call>", "[TOOL_CALLS]", "<|python_tag|>", "[ARGS]", "[CALL_ID]",
      "{", "}", "[", "]", "\"name\"", "\"arguments\"", "\"parameters\"", ": ", ":", ", ",
      ",", ";", "\"f\"", "\"x\"", "f", "g1", "1", "true", "\"", "\\", " ", "\n", "\u00e9",
      "\xff", "\xe2\x82", "abc", "[{", "}}", "f[ARGS]{", "f[ARGS]{",
      "{\"name\": \"f\", \"arguments\": {", "{\"name\": \"f\", \"arguments\": {",
      "{\"name\": \"g1\", \"parameters\": {"};
  size_t np = sizeof pieces / sizeof *pieces;
  unsigned long long x = 12345;
  char text[1024];
  int bad = 0, with_calls = 0;
  for (int it = 0; it < 3000 && !bad; it++) {
    size_t len = 0;
    int n = 2 + (int)((x = x * 6364136223846793005ULL + 1442695040888963407ULL) >> 33) % 40;
    for (int i = 0; i < n; i++) {
      x = x * 6364136223846793005ULL + 1442695040888963407ULL;
      const char *pc = pieces[(x >> 33) % np];
      size_t l = strlen(pc);
      memcpy(text + len, pc, l);
      len += l;
    }
    text[len] = 0;
    pl_tool_format f = (pl_tool_format)(it % 3);
    json_t *calls;
    char *c;
    int got = pl_tool_parse(f, text, len, "seed", NULL, &calls, &c);
    CHECK(got >= 0);
    with_calls += got > 0;
    size_t cuts3[3];
    for (int i = 0; i < 3; i++) {
      x = x * 6364136223846793005ULL + 1442695040888963407ULL;
      cuts3[i] = (size_t)(x >> 33) % (len + 1);
    }
    for (int i = 1; i < 3; i++) /* ascending */
      for (int j = i; j > 0 && cuts3[j - 1] > cuts3[j]; j--) {
        size_t t = cuts3[j];
        cuts3[j] = cuts3[j - 1];
        cuts3[j - 1] = t;
      }
    size_t *ones = malloc((len + 1) * sizeof *ones);
    for (size_t i = 0; i <= len; i++)
      ones[i] = i;
    for (int way = 0; way < 2; way++) {
      char *sc;
      json_t *scalls;
      int nd[64];
      feed_split(f, text, way ? ones : cuts3, way ? (int)len + 1 : 3, &sc, &scalls, nd);
      int same = calls ? json_equal(scalls, calls) : json_array_size(scalls) == 0;
      if (strcmp(sc, c ? c : "") != 0 || !same) {
        CHECK(0, "format %d, %s: stream '%s' vs whole '%s' (%d calls)", (int)f, text, sc,
              c ? c : "", got);
        bad = 1;
      }
      free(sc);
      json_decref(scalls);
    }
    free(ones);
    json_decref(calls);
    pl_free(c);
  }
  CHECK(!bad);
  CHECK(with_calls >= 30, "only %d random texts held calls", with_calls);
  printf("random texts: %d of 3000 held calls\n", with_calls);
}

static double now_s(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + t.tv_nsec * 1e-9;
}

/* A call with 1 MiB of arguments fed 16 bytes at a time: the fragments are the arguments, and
 * it takes linear time (about 0.1 s; 1 s under ASan). Re-reading what came before at each
 * feed would read 3e10 bytes, far over the limit. */
static void long_output(void) {
  size_t n = 1u << 20;
  const char *head = "<tool_call>\n{\"name\": \"w\", \"arguments\": {\"s\": \"";
  size_t hl = strlen(head);
  char *text = malloc(hl + n + 32);
  memcpy(text, head, hl);
  for (size_t i = 0; i < n; i++)
    text[hl + i] = (char)('a' + i % 26);
  strcpy(text + hl + n, "\"}}\n</tool_call>");
  size_t len = strlen(text);
  pl_tool_parser *p;
  CHECK(pl_tool_parser_create(PL_TOOLS_HERMES, "seed", NULL, &p) == 0);
  char *args = malloc(n + 16);
  size_t al = 0;
  double t0 = now_s();
  for (size_t at = 0; at <= len; at += 16) {
    size_t k = len - at < 16 ? len - at : 16;
    pl_tool_out o;
    CHECK(pl_tool_parser_feed(p, text + at, k, at + 16 > len, &o) == 0);
    size_t i;
    json_t *d;
    json_array_foreach(o.calls, i, d) {
      const char *a = json_string_value(json_object_get(json_object_get(d, "function"),
                                                        "arguments"));
      size_t l = a ? strlen(a) : 0;
      if (al + l <= n + 16) {
        memcpy(args + al, a, l);
        al += l;
      }
    }
    pl_tool_out_free(&o);
  }
  double dt = now_s() - t0;
  CHECK(pl_tool_parser_ncalls(p) == 1);
  CHECK(al == n + 9 && !memcmp(args, "{\"s\": \"", 7) && !memcmp(args + 7, text + hl, n) &&
        !memcmp(args + 7 + n, "\"}", 2), "%zu argument bytes", al);
  CHECK(dt < 10.0, "1 MiB of arguments took %.2f s", dt);
  printf("1 MiB of arguments in 16-byte feeds: %.3f s\n", dt);
  pl_tool_parser_free(p);
  free(args);
  free(text);
}

/* Every allocation of a stream, one byte at a time, failed in turn: the parser says PL_ENOMEM
 * (never a wrong answer, e.g. a call turned content because jansson's parser ran out of
 * memory) and frees everything. */
static void alloc_failures(void) {
  const char *text = "Hi <tool_call>\n{\"name\": \"a\", \"arguments\": {\"x\": [1, \"\u00e9\"]}}\n"
                     "</tool_call><tool_call>{\"arguments\": {}, \"n\": 1, \"name\": \"b\"}</tool_call>";
  size_t len = strlen(text), live0 = pl_alloc_live_count();
  int k, failed = 0;
  for (k = 0; k < 100000; k++) {
    long n0 = pl_alloc_count();
    pl_alloc_fail_after(k);
    pl_tool_parser *p = NULL;
    int rc = pl_tool_parser_create(PL_TOOLS_HERMES, "seed", NULL, &p);
    for (size_t i = 0; rc == 0 && i <= len; i++) {
      pl_tool_out o;
      rc = pl_tool_parser_feed(p, text + i, i < len, i == len, &o);
      if (rc == 0)
        pl_tool_out_free(&o);
    }
    int reached = pl_alloc_count() - n0 > k;
    pl_alloc_fail_after(-1);
    CHECK(rc == 0 || rc == PL_ENOMEM, "k=%d: %d", k, rc);
    if (rc == 0) {
      const json_t *c = pl_tool_parser_calls(p);
      CHECK(json_array_size(c) == 2, "k=%d: %zu calls", k, json_array_size(c));
    }
    failed += rc != 0;
    pl_tool_parser_free(p);
    CHECK(pl_alloc_live_count() == live0, "k=%d: %zu blocks live, %zu before", k,
          pl_alloc_live_count(), live0);
    if (!reached)
      break;
  }
  CHECK(failed > 10, "%d of %d runs failed", failed, k + 1);
  printf("allocation failures: %d runs, %d said out of memory\n", k + 1, failed);
}

int main(void) {
  json_set_alloc_funcs(pl_malloc_raw, pl_free_raw); /* counted, so failures can be injected */
  alloc_failures();
  split_cases();
  random_texts();
  long_output();
  expect(PL_TOOLS_HERMES, "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": "
         "\"Paris\"}}\n</tool_call>", 1, "get_weather", "{\"city\":\"Paris\"}", NULL);
  expect(PL_TOOLS_HERMES, "Let me check.\n<tool_call>\n{\"name\": \"a\", \"arguments\": {}}\n"
         "</tool_call>\n<tool_call>\n{\"name\": \"b\", \"arguments\": {\"x\": [1, 2]}}\n"
         "</tool_call>", 2, "a", "{}", "Let me check.");
  expect(PL_TOOLS_HERMES, "<tool_call>\n{\"name\": \"a\", \"argu", 0, NULL, NULL, NULL);
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
  CHECK(pl_tool_format_detect("[TOOL_CALLS]{{ n }}[ARGS]{{ a }}") == PL_TOOLS_MISTRAL_V11);
  /* either Mistral format reads both forms */
  expect_all(PL_TOOLS_MISTRAL_V11, "[TOOL_CALLS]f[ARGS]{\"q\": 1}", 1, NAMES("f"),
             NAMES("{\"q\": 1}"), NULL);
  expect_all(PL_TOOLS_MISTRAL_V11, "[TOOL_CALLS][{\"name\": \"f\", \"arguments\": {}}]", 1,
             NAMES("f"), NAMES("{}"), NULL);
  CHECK(pl_tool_format_detect("<|python_tag|>") == PL_TOOLS_LLAMA3);

  /* the forcing grammars accept what the parsers read, for every tool, and nothing else */
  json_t *tools = json_loads("[{\"type\":\"function\",\"function\":{\"name\":\"f\",\"parameters\":"
                             "{\"type\":\"object\",\"properties\":{\"q\":{\"type\":\"string\"}},"
                             "\"required\":[\"q\"]}}},{\"type\":\"function\",\"function\":{\"name\":"
                             "\"get_2\",\"parameters\":{\"type\":\"object\",\"properties\":{\"n\":"
                             "{\"type\":\"integer\"}}}}}]", 0, NULL);
  static const struct {
    pl_tool_format f;
    const char *name; /* the forced tool, NULL: any */
    int parallel, calls; /* calls: what the parser reads; 0: the grammar must reject it */
    const char *text;
  } forced[] = {
      {PL_TOOLS_HERMES, NULL, 0, 1, "<tool_call>\n{\"name\": \"f\", \"arguments\": {\"q\": \"x\"}}\n</tool_call>"},
      {PL_TOOLS_HERMES, NULL, 0, 1, "<tool_call>\n{\"name\": \"get_2\", \"arguments\": {\"n\": 3}}\n</tool_call>"},
      {PL_TOOLS_HERMES, "f", 0, 0, "<tool_call>\n{\"name\": \"get_2\", \"arguments\": {\"n\": 3}}\n</tool_call>"},
      {PL_TOOLS_LLAMA3, NULL, 0, 1, "{\"name\": \"f\", \"parameters\": {\"q\": \"x\"}}"},
      {PL_TOOLS_MISTRAL, NULL, 0, 1, "[TOOL_CALLS][{\"name\": \"f\", \"arguments\": {\"q\": \"x\"}}]"},
      {PL_TOOLS_MISTRAL, NULL, 1, 2, "[TOOL_CALLS][{\"name\": \"f\", \"arguments\": {\"q\": \"x\"}}, "
                                     "{\"name\": \"get_2\", \"arguments\": {}}]"},
      {PL_TOOLS_MISTRAL_V11, NULL, 0, 1, "[TOOL_CALLS]f[ARGS]{\"q\": \"x\"}"},
      {PL_TOOLS_MISTRAL_V11, NULL, 0, 1, "[TOOL_CALLS]get_2[ARGS]{\"n\": 3}"},
      {PL_TOOLS_MISTRAL_V11, NULL, 1, 2, "[TOOL_CALLS]get_2[ARGS]{}[TOOL_CALLS]f[ARGS]{\"q\": \"\"}"},
      {PL_TOOLS_MISTRAL_V11, NULL, 0, 0, "[TOOL_CALLS]get_2[ARGS]{}[TOOL_CALLS]f[ARGS]{\"q\": \"\"}"},
      {PL_TOOLS_MISTRAL_V11, NULL, 0, 0, "[TOOL_CALLS]get_2[ARGS]{\"q\": \"x\"}"}, /* f's arguments */
      {PL_TOOLS_MISTRAL_V11, NULL, 0, 0, "[TOOL_CALLS][{\"name\": \"f\", \"arguments\": {\"q\": \"x\"}}]"},
      {PL_TOOLS_MISTRAL_V11, "get_2", 0, 0, "[TOOL_CALLS]f[ARGS]{\"q\": \"x\"}"},
      {PL_TOOLS_MISTRAL_V11, "get_2", 0, 1, "[TOOL_CALLS]get_2[ARGS]{\"n\": -1}"},
  };
  for (size_t i = 0; i < sizeof forced / sizeof *forced; i++) {
    pl_gconv_error ce;
    char *g = pl_tool_grammar(forced[i].f, tools, forced[i].name, forced[i].parallel, &ce);
    CHECK(g != NULL, "%s", ce.message);
    pl_grammar *gr = NULL;
    CHECK(g && pl_grammar_compile(g, strlen(g), &gr) == 0, "%s", g ? g : "");
    pl_vocab *v;
    const char *p[1] = {"x"};
    size_t l[1] = {1};
    pl_vocab_create_raw(1, p, l, NULL, 0, &v);
    pl_gmatch *m;
    CHECK(gr && pl_gmatch_create(gr, v, &m) == 0);
    const char *t = forced[i].text;
    int accepted = gr && pl_gmatch_accept_bytes(m, t, strlen(t)) == 0 && pl_gmatch_can_end(m);
    CHECK(accepted == (forced[i].calls > 0), "forced grammar %zu (format %d): %s %s", i,
          forced[i].f, accepted ? "accepts" : "rejects", t);
    if (forced[i].calls) { /* and the parser reads every call the grammar let through */
      json_t *calls = NULL;
      char *content = NULL;
      int n = pl_tool_parse(forced[i].f, t, strlen(t), "seed", tools, &calls, &content);
      CHECK(n == forced[i].calls && !content, "forced grammar %zu: the parser read %d calls",
            i, n);
      json_decref(calls);
      pl_free(content);
    }
    pl_gmatch_free(m);
    pl_vocab_free(v);
    pl_grammar_free(gr);
    pl_free(g);
  }
  json_decref(tools);
  return check_summary("test_tool_calls");
}
