/* Jinja interpreter: semantics and robustness.
 * 1. Semantics: tests/data/jinja/semantics.json holds ~190 small templates with the output real
 *    Jinja2 3.1 produced for them in Hugging Face's environment (trim_blocks, lstrip_blocks,
 *    loopcontrols, HF tojson, strftime_now fixed at 2024-07-26) -- whitespace control, printing
 *    of Python values, operators, Undefined, slicing, loops and scoping, macros and call blocks,
 *    every filter and test we provide, str/dict methods, globals. Cases with "err" failed in
 *    Jinja2 (or use a construct we reject); we must fail with PL_ETEMPLATE and a message
 *    containing "err". The generator script is beside the data.
 * 2. Robustness: hostile templates (deep nesting, long chains, runaway loops and recursion,
 *    exponential strings, quadratic memory, self-referencing namespaces) end in PL_ETEMPLATE
 *    within the limits; mutated copies of the 16 real chat templates (truncations, deletions,
 *    insertions of syntax characters) never crash; every allocation failure in parse and
 *    render is reported as PL_ENOMEM without leaks; concurrent renders of one template agree. */
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "check.h"
#include "template/jinja.h"
#include "template/jinja_arena.h"
#include "pagellm.h"
#include "util/alloc.h"

#define FIXED_NOW 1721952000 /* 2024-07-26 00:00:00 UTC */

static char *read_file(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (!f)
    return NULL;
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *buf = malloc((size_t)n + 1);
  if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
    free(buf);
    buf = NULL;
  }
  fclose(f);
  if (buf) {
    buf[n] = 0;
    if (len)
      *len = (size_t)n;
  }
  return buf;
}

/* Parse + render with options; returns the status, *out is pl_malloc'd on success. */
static int render_opts(const char *src, const json_t *vars, const pl_jinja_render_opts *base,
                       char **out) {
  pl_jinja_template *t = NULL;
  *out = NULL;
  int rc = pl_jinja_template_parse(src, strlen(src), &t);
  if (rc)
    return rc;
  pl_jinja_render_opts o = base ? *base : (pl_jinja_render_opts){0};
  o.vars = vars;
  if (!o.now)
    o.now = FIXED_NOW;
  rc = pl_jinja_render(t, &o, out, NULL);
  pl_jinja_template_free(t);
  return rc;
}

static int render(const char *src, const json_t *vars, char **out) {
  return render_opts(src, vars, NULL, out);
}

static void semantics(void) {
  char path[1024];
  snprintf(path, sizeof path, "%s/tests/data/jinja/semantics.json", PL_SOURCE_DIR);
  json_error_t err;
  json_t *root = json_load_file(path, 0, &err);
  CHECK(root != NULL, "cannot load %s: %s", path, err.text);
  if (!root)
    return;
  size_t i, n_ok = 0, n = json_array_size(json_object_get(root, "cases"));
  json_t *cs;
  json_array_foreach(json_object_get(root, "cases"), i, cs) {
    const char *src = json_string_value(json_object_get(cs, "t"));
    const json_t *want = json_object_get(cs, "want");
    const char *want_err = json_string_value(json_object_get(cs, "err"));
    char *out = NULL;
    int rc = render(src, json_object_get(cs, "v"), &out);
    int ok;
    if (want) {
      ok = rc == PL_OK && out && strlen(out) == json_string_length(want) &&
           memcmp(out, json_string_value(want), json_string_length(want)) == 0;
      CHECK(ok, "case %zu %s\n  got:  [%s]\n  want: [%s]", i, src, rc ? pl_last_error() : out,
            json_string_value(want));
    } else {
      ok = rc == PL_ETEMPLATE && strstr(pl_last_error(), want_err) != NULL;
      CHECK(ok, "case %zu %s: want error containing '%s', got rc=%d [%s]", i, src, want_err, rc,
            rc ? pl_last_error() : out);
    }
    n_ok += ok;
    pl_free(out);
  }
  printf("semantics: %zu/%zu cases agree with Jinja2\n", n_ok, n);
  CHECK(n > 150, "too few cases: %zu", n);
  json_decref(root);
}

/* A string of `n` copies of `unit`. */
static char *repeat(const char *pre, const char *unit, size_t n, const char *post) {
  size_t a = strlen(pre), u = strlen(unit), b = strlen(post);
  char *s = malloc(a + u * n + b + 1);
  memcpy(s, pre, a);
  for (size_t i = 0; i < n; i++)
    memcpy(s + a + i * u, unit, u);
  memcpy(s + a + u * n, post, b + 1);
  return s;
}

static void expect_fail(const char *what, const char *src, const pl_jinja_render_opts *o,
                        const char *needle) {
  char *out = NULL;
  int rc = render_opts(src, NULL, o, &out);
  CHECK(rc == PL_ETEMPLATE && out == NULL && (!needle || strstr(pl_last_error(), needle)),
        "%s: rc=%d [%s]", what, rc, rc ? pl_last_error() : "rendered");
  pl_free(out);
}

static void hostile(void) {
  char *s;
  s = repeat("{{ ", "(", 20000, "1 }}");
  expect_fail("deep parentheses", s, NULL, "nested too deeply");
  free(s);
  s = repeat("{{ ", "-", 20000, "1 }}");
  expect_fail("deep unary", s, NULL, "nested too deeply");
  free(s);
  s = repeat("{{ ", "not ", 20000, "1 }}");
  expect_fail("deep not", s, NULL, "nested too deeply");
  free(s);
  s = repeat("", "{% if true %}", 5000, "x");
  expect_fail("deep if", s, NULL, "nested too deeply");
  free(s);
  s = repeat("{{ ", "[", 1000, "");
  expect_fail("deep brackets", s, NULL, "nested too deeply");
  free(s);
  /* Left-deep chains parse in a loop; the evaluator's depth cap stops them. */
  s = repeat("{{ x", ".a", 100000, " }}");
  expect_fail("long attribute chain", s, NULL, "nested too deeply");
  free(s);
  s = repeat("{{ 1", " + 1", 100000, " }}");
  expect_fail("long sum", s, NULL, "nested too deeply");
  free(s);
  s = repeat("{{ 'a'", "|trim", 100000, " }}");
  expect_fail("long filter chain", s, NULL, "nested too deeply");
  free(s);

  pl_jinja_render_opts small = {.max_steps = 200000};
  expect_fail("nested range loops", "{% for i in range(100000) %}{% for j in range(100000) %}"
              "{% endfor %}{% endfor %}", &small, "step limit");
  expect_fail("default step limit", "{% set r = range(100000) %}{% for i in r %}{% for j in r %}"
              "{% endfor %}{% endfor %}", NULL, "step limit");
  pl_jinja_render_opts out_cap = {.max_output = 1000};
  expect_fail("output cap", "{% for i in range(1000) %}xx{% endfor %}", &out_cap, "limit");
  /* max_text caps the rendered text alone, with its own status; strings the template builds
   * but does not write are bound by max_output only. */
  {
    const char *src = "{% set s = 'ab' * 1500 %}{{ s|length }}{% for i in range(n) %}xx{% endfor %}";
    json_t *vars = json_pack("{s:i}", "n", 1000);
    char *out = NULL;
    pl_jinja_render_opts cap = {.max_text = 2004};
    int rc = render_opts(src, vars, &cap, &out); /* "3000" + 2000 bytes: exactly the cap */
    CHECK(rc == PL_OK && out && strlen(out) == 2004, "max_text at the cap: rc=%d", rc);
    pl_free(out);
    cap.max_text = 2003;
    rc = render_opts(src, vars, &cap, &out);
    CHECK(rc == PL_ETOOLONG && out == NULL && strstr(pl_last_error(), "2003"),
          "max_text one under: rc=%d [%s]", rc, rc ? pl_last_error() : out);
    pl_free(out);
    cap.max_output = 2500; /* now the 3000-byte string passes max_output: a template error */
    rc = render_opts(src, vars, &cap, &out);
    CHECK(rc == PL_ETEMPLATE && out == NULL, "max_output still caps strings: rc=%d", rc);
    pl_free(out);
    json_decref(vars);
  }
  expect_fail("exponential string", "{% set ns = namespace(s='x') %}{% for i in range(100) %}"
              "{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s|length }}", NULL, "limit");
  expect_fail("string repetition", "{{ 'x' * 100000000000 }}", NULL, "limit");
  pl_jinja_render_opts mem = {.max_memory = 8 << 20};
  expect_fail("quadratic list growth", "{% set ns = namespace(l=[]) %}{% for i in range(100000) %}"
              "{% set ns.l = ns.l + [i] %}{% endfor %}", &mem, "memory limit");
  expect_fail("infinite macro recursion", "{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}", NULL,
              "nested too deeply");
  expect_fail("mutual recursion", "{% macro a() %}{{ b() }}{% endmacro %}{% macro b() %}{{ a() }}"
              "{% endmacro %}{{ a() }}", NULL, "nested too deeply");
  expect_fail("self-referencing namespace", "{% set ns = namespace() %}{% set ns.me = ns %}{{ ns }}",
              NULL, "nested too deeply");
  expect_fail("integer overflow", "{{ 9223372036854775807 + 1 }}", NULL, "overflow");
  expect_fail("power overflow", "{{ 2 ** 64 }}", NULL, "overflow");
  expect_fail("huge int literal", "{{ 99999999999999999999 }}", NULL, "too large");
  expect_fail("center width", "{{ 'x'|center(100000000000) }}", NULL, "too large");

  /* Recursion that stays under the caps works. */
  char *out = NULL;
  int rc = render("{% macro f(n) %}{% if n %}{{ f(n - 1) }}{% else %}bottom{% endif %}{% endmacro %}"
                  "{{ f(60) }}", NULL, &out);
  CHECK(rc == PL_OK && out && !strcmp(out, "bottom"), "%s", rc ? pl_last_error() : out);
  pl_free(out);

  /* Malformed input of every kind: an error, never a crash. */
  static const char *const bad[] = {
      "{{", "{%", "{#", "{{ }}", "{% %}", "{% if %}", "{% for %}", "{% for x %}", "{% for x in %}",
      "{% set %}", "{% set x %}", "{% set = 1 %}", "{% macro %}", "{% macro m( %}", "{% call %}",
      "{% call x %}{% endcall %}", "{% endfor %}", "{% else %}", "{% elif x %}", "{{ ) }}",
      "{{ ] }}", "{{ } }}", "{{ (] }}", "{{ x[ }}", "{{ x. }}", "{{ x.( }}", "{{ x|  }}",
      "{{ x is }}", "{{ x is not }}", "{{ 1 if }}", "{{ 'a' ~ }}", "{{ {1: } }}", "{{ {1 2} }}",
      "{{ [1 2] }}", "{{ f(a=1, 2) }}", "{{ \"\\x4\" }}", "{{ '\\u12' }}", "{{ @ }}", "{{ x $ y }}",
      "{{ x }}{% endif %}", "{% if x %}{% endfor %}", "{% for x in y %}{% endif %}",
      "{% filter %}{% endfilter %}", "{% filter nope %}{% endfilter %}", "{% with %}",
      "{% with a %}{% endwith %}", "{% if x %}{% else %}{% else %}{% endif %}",
      "{% raw %}", "{{ x -}", "{% set ns.a %}{% endset %}", "{% set a.b.c = 1 %}",
      "{{ 1 is divisibleby }}", "{% continue %}", "{% macro m() %}{% break %}{% endmacro %}",
      "{% for x in y %}{% macro m() %}{% break %}{% endmacro %}{% endfor %}", "\xff\xfe{{ \xc3 }}",
  };
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    char *o = NULL;
    int r = render(bad[i], NULL, &o);
    CHECK(r == PL_ETEMPLATE && o == NULL, "bad[%zu] '%s': rc=%d", i, bad[i], r);
    CHECK(strstr(pl_last_error(), "line") != NULL, "bad[%zu] message without a line: %s", i,
          pl_last_error());
    pl_free(o);
  }
}

/* ---- fuzz: mutated real templates ---------------------------------------------------------- */

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static uint32_t rnd(void) {
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return (uint32_t)(rng >> 11);
}

static json_t *fuzz_vars(void) {
  json_t *convs = json_load_file(data_path("chat-templates/conversations.json"), 0, NULL);
  if (!convs)
    return NULL;
  json_t *conv = json_object_get(json_object_get(convs, "conversations"), "tool_call_roundtrip");
  json_t *vars = json_pack("{s:O, s:O, s:b, s:s, s:s, s:n}", "messages",
                           json_object_get(conv, "messages"), "tools",
                           json_object_get(conv, "tools"), "add_generation_prompt", 1,
                           "bos_token", "<s>", "eos_token", "</s>", "documents");
  json_decref(convs);
  return vars;
}

static void fuzz(void) {
  static const char syntax[] = "{}%#-+()[]'\"|.,:=~*/ \nxi0";
  json_t *vars = fuzz_vars();
  CHECK(vars != NULL, "fuzz: no conversation");
  if (!vars)
    return;
  pl_jinja_render_opts o = {.vars = vars, .now = FIXED_NOW, .max_steps = 100000,
                            .max_output = 1 << 20, .max_memory = 32 << 20};
  long parsed = 0, rendered = 0, total = 0;
  /* every real template of the test data (chat-templates/templates.json) */
  json_t *list = json_load_file(data_path("chat-templates/templates.json"), 0, NULL);
  CHECK(json_object_size(json_object_get(list, "templates")) > 0, "fuzz: no templates");
  const char *name;
  json_t *tmpl;
  json_object_foreach(json_object_get(list, "templates"), name, tmpl) {
    char path[256];
    snprintf(path, sizeof path, "chat-templates/%s", json_string_value(json_object_get(tmpl, "file")));
    size_t n = 0;
    char *src = read_file(data_path(path), &n);
    CHECK(src != NULL, "cannot read %s", path);
    if (!src)
      continue;
    char *buf = malloc(n + 2);
    int iters = 300;
    for (int it = 0; it < iters; it++) {
      size_t at = n ? rnd() % n : 0, m = 0;
      int kind = it % 4;
      if (kind == 0) { /* truncate */
        memcpy(buf, src, at);
        m = at;
      } else if (kind == 1) { /* delete one byte */
        memcpy(buf, src, at);
        memcpy(buf + at, src + at + 1, n - at - 1);
        m = n - 1;
      } else if (kind == 2) { /* insert a syntax character */
        memcpy(buf, src, at);
        buf[at] = syntax[rnd() % (sizeof syntax - 1)];
        memcpy(buf + at + 1, src + at, n - at);
        m = n + 1;
      } else { /* replace one byte with any byte */
        memcpy(buf, src, n);
        buf[at] = (char)(rnd() & 0xFF);
        m = n;
      }
      pl_jinja_template *t = NULL;
      int rc = pl_jinja_template_parse(buf, m, &t);
      total++;
      CHECK(rc == PL_OK || rc == PL_ETEMPLATE, "%s mutation %d: parse rc=%d", path, it, rc);
      if (rc)
        continue;
      parsed++;
      char *out = NULL;
      size_t len = 0;
      rc = pl_jinja_render(t, &o, &out, &len);
      CHECK(rc == PL_OK || rc == PL_ETEMPLATE, "%s mutation %d: render rc=%d %s", path, it, rc,
            pl_last_error());
      CHECK(rc != PL_OK || (out && strlen(out) <= len), "render ok but no output");
      rendered += rc == PL_OK;
      pl_free(out);
      pl_jinja_template_free(t);
    }
    free(buf);
    free(src);
  }
  json_decref(list);
  printf("fuzz: %ld mutants, %ld parsed, %ld rendered\n", total, parsed, rendered);
  json_decref(vars);
}

/* ---- allocation failures --------------------------------------------------------------------- */

static void alloc_failures(void) {
  size_t n = 0;
  char *src = read_file(data_path("chat-templates/qwen3.jinja"), &n);
  json_t *vars = fuzz_vars();
  CHECK(src && vars, "alloc_failures: inputs");
  if (!src || !vars)
    return;
  pl_jinja_render_opts o = {.vars = vars, .now = FIXED_NOW};
  char *want = NULL;
  {
    pl_jinja_template *t = NULL;
    CHECK(pl_jinja_template_parse(src, n, &t) == PL_OK);
    CHECK(pl_jinja_render(t, &o, &want, NULL) == PL_OK);
    pl_jinja_template_free(t);
  }
  int failures = 0;
  for (long k = 0; k < 5000; k++) {
    size_t live = pl_alloc_live_bytes();
    pl_alloc_fail_after(k);
    pl_jinja_template *t = NULL;
    char *out = NULL;
    int rc = pl_jinja_template_parse(src, n, &t);
    if (rc == PL_OK) {
      rc = pl_jinja_render(t, &o, &out, NULL);
      pl_jinja_template_free(t);
    }
    pl_alloc_fail_after(-1);
    CHECK(rc == PL_OK || rc == PL_ENOMEM, "fail at %ld: rc=%d %s", k, rc, pl_last_error());
    if (rc == PL_OK) {
      CHECK(out && want && !strcmp(out, want), "fail at %ld: output differs", k);
      pl_free(out);
      CHECK(pl_alloc_live_bytes() == live, "fail at %ld: leak", k);
      break;
    }
    CHECK(out == NULL && pl_alloc_live_bytes() == live, "fail at %ld: leaked %zu bytes", k,
          pl_alloc_live_bytes() - live);
    failures++;
  }
  CHECK(failures > 3, "expected several allocation points, saw %d", failures);
  pl_free(want);
  free(src);
  json_decref(vars);
}

/* ---- concurrency ------------------------------------------------------------------------------ */

typedef struct {
  const pl_jinja_template *t;
  const pl_jinja_render_opts *o;
  const char *want;
  int ok;
} job;

static void *worker(void *arg) {
  job *j = arg;
  j->ok = 1;
  for (int i = 0; i < 50; i++) {
    char *out = NULL;
    if (pl_jinja_render(j->t, j->o, &out, NULL) != PL_OK || strcmp(out, j->want) != 0)
      j->ok = 0;
    pl_free(out);
  }
  return NULL;
}

static void concurrent(void) {
  size_t n = 0;
  char *src = read_file(data_path("chat-templates/gpt-oss.jinja"), &n);
  json_t *vars = fuzz_vars();
  pl_jinja_template *t = NULL;
  CHECK(src && vars && pl_jinja_template_parse(src, n, &t) == PL_OK);
  if (!t)
    return;
  pl_jinja_render_opts o = {.vars = vars, .now = FIXED_NOW};
  char *want = NULL;
  CHECK(pl_jinja_render(t, &o, &want, NULL) == PL_OK);
  pthread_t th[4];
  job jobs[4];
  for (int i = 0; i < 4; i++) {
    jobs[i] = (job){.t = t, .o = &o, .want = want};
    pthread_create(&th[i], NULL, worker, &jobs[i]);
  }
  for (int i = 0; i < 4; i++) {
    pthread_join(th[i], NULL);
    CHECK(jobs[i].ok, "thread %d saw a different rendering", i);
  }
  pl_free(want);
  pl_jinja_template_free(t);
  free(src);
  json_decref(vars);
}

static void clock_and_misc(void) {
  /* now = 0 uses the real clock */
  pl_jinja_render_opts live = {.now = 0};
  pl_jinja_template *t = NULL;
  CHECK(pl_jinja_template_parse("{{ strftime_now('%Y') }}", 24, &t) == PL_OK);
  char *out = NULL;
  CHECK(pl_jinja_render(t, &live, &out, NULL) == PL_OK);
  time_t now = time(NULL);
  struct tm tm;
  localtime_r(&now, &tm);
  char year[16];
  snprintf(year, sizeof year, "%d", tm.tm_year + 1900);
  CHECK(out && !strcmp(out, year), "live year %s vs %s", out ? out : "-", year);
  pl_free(out);
  pl_jinja_template_free(t);

  /* variables must be an object */
  CHECK(pl_jinja_template_parse("x", 1, &t) == PL_OK);
  json_t *arr = json_array();
  pl_jinja_render_opts o = {.vars = arr};
  CHECK(pl_jinja_render(t, &o, &out, NULL) == PL_EINVAL && out == NULL);
  json_decref(arr);
  pl_jinja_template_free(t);

  /* an empty template renders "" (a real, freeable string) */
  CHECK(render("", NULL, &out) == PL_OK && out && out[0] == 0);
  pl_free(out);
  /* embedded NUL in the source is just data */
  CHECK(pl_jinja_template_parse("a\0b", 3, &t) == PL_OK);
  size_t len = 0;
  pl_jinja_render_opts none = {0};
  CHECK(pl_jinja_render(t, &none, &out, &len) == PL_OK && len == 3 && !memcmp(out, "a\0b", 3));
  pl_free(out);
  pl_jinja_template_free(t);
}

/* 3. What one {{ output }} makes is given back once written (issue 20): a long chat renders in
 *    the memory of one message, and an output that stores into a namespace or a frame keeps
 *    what it made. The expected texts are built here, independently of the interpreter. */
static void arena_marks(void) {
  pl_jarena a;
  pl_jarena_init(&a, 0);
  pl_jarena_mark m0 = pl_jarena_mark_get(&a); /* empty arena */
  CHECK(pl_jarena_alloc(&a, 100) && pl_jarena_alloc(&a, 100000), "alloc");
  pl_jarena_release(&a, &m0);
  CHECK(a.head == NULL && a.used == 0, "release to an empty mark: head %p used %zu",
        (void *)a.head, a.used);
  char *keep = pl_jarena_strndup(&a, "kept", 4);
  size_t used1 = a.used;
  pl_jarena_mark m1 = pl_jarena_mark_get(&a);
  CHECK(pl_jarena_alloc(&a, 200000) != NULL, "big block behind the mark's head");
  pl_jarena_mark m2 = pl_jarena_mark_get(&a);
  for (int i = 0; i < 100; i++) /* new heads and big blocks in front of m1's head */
    CHECK(pl_jarena_alloc(&a, i % 10 ? 5000 : 40000) != NULL, "alloc %d", i);
  pl_jarena_release(&a, &m2);
  CHECK(a.used == m2.used, "nested release: used %zu, want %zu", a.used, m2.used);
  pl_jarena_release(&a, &m1);
  CHECK(a.used == used1 && !strcmp(keep, "kept"), "release: used %zu, want %zu", a.used, used1);
  char *again = pl_jarena_alloc(&a, 16);
  CHECK(again == keep + 16, "the head's space is handed out again");
  pl_jarena_free(&a);
}

static void output_temporaries(void) {
  arena_marks();
  /* 3000 messages of 3000 bytes through ChatML: each output's concatenations make ~12 KB, 36 MB
   * in all; the render may use 4 MiB. */
  enum { N = 3000, LEN = 3000 };
  json_t *msgs = json_array();
  char *content = malloc(LEN + 1);
  size_t exp_cap = (size_t)N * (LEN + 64), exp_n = 0;
  char *exp = malloc(exp_cap);
  for (int i = 0; i < N; i++) {
    for (int k = 0; k < LEN; k++)
      content[k] = (char)('a' + (i + k) % 26);
    content[LEN] = 0;
    const char *role = i % 2 ? "assistant" : "user";
    json_array_append_new(msgs, json_pack("{s:s,s:s}", "role", role, "content", content));
    exp_n += (size_t)snprintf(exp + exp_n, exp_cap - exp_n, "<|im_start|>%s\n%s<|im_end|>\n", role,
                              content);
  }
  json_t *vars = json_pack("{s:o}", "messages", msgs);
  pl_jinja_render_opts o = {.max_memory = 4 << 20};
  char *out = NULL;
  int rc = render_opts("{% for m in messages %}{{ '<|im_start|>' + m.role + '\\n' + m.content + "
                       "'<|im_end|>\\n' }}{% endfor %}", vars, &o, &out);
  CHECK(rc == 0 && out && strlen(out) == exp_n && !memcmp(out, exp, exp_n),
        "long chat in 4 MiB: rc=%d [%s]", rc, rc ? pl_last_error() : "output differs");
  pl_free(out);
  /* the same text made by a macro (it binds arguments: nothing is given back) needs more */
  rc = render_opts("{% macro one(m) %}{{ '<|im_start|>' + m.role + '\\n' + m.content + "
                   "'<|im_end|>\\n' }}{% endmacro %}{% for m in messages %}{{ one(m) }}"
                   "{% endfor %}", vars, &o, &out);
  CHECK(rc == PL_ETEMPLATE && strstr(pl_last_error(), "memory limit"),
        "macro outputs keep their values: rc=%d", rc);
  pl_free(out);
  json_decref(vars);
  free(content);
  free(exp);

  /* outputs that store: what they made stays readable (ASan would see a use after free) */
  rc = render("{% set ns = namespace(s='') %}{% macro add(x) %}{% set ns.s = ns.s ~ x ~ ',' %}"
              "{% endmacro %}{% for i in range(40) %}{{ add('v' ~ i ~ 'w' * 50) }}{% endfor %}"
              "{{ ns.s|length }}:{{ ns.s[:9] }}{{ ns.s[-54:] }}", NULL, &out);
  char want[256];
  size_t total = 0;
  for (int i = 0; i < 40; i++)
    total += (size_t)snprintf(NULL, 0, "v%d", i) + 50 + 1;
  snprintf(want, sizeof want, "%zu:v0wwwwwww%s", total,
           "v39wwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwww,");
  CHECK(rc == 0 && !strcmp(out, want), "namespace store in an output: rc=%d [%s] want [%s]", rc,
        rc ? pl_last_error() : out, want);
  pl_free(out);
}

int main(void) {
  size_t live0 = pl_alloc_live_bytes();
  semantics();
  hostile();
  fuzz();
  alloc_failures();
  concurrent();
  clock_and_misc();
  output_temporaries();
  CHECK(pl_alloc_live_bytes() == live0, "leaked %zu bytes", pl_alloc_live_bytes() - live0);
  return check_summary("test_jinja");
}
