/* Golden test of the chat-template renderer against real Jinja2. chat-templates/ of the test
 * data (scripts/test-data.py: real templates from llama.cpp's bundle and npm, our conversations,
 * expected files rendered by Debian's python3-jinja2), and again the reference renderings in
 * $PAGELLM_EXTRA_DATA/chat-templates when that is set: every template x conversation x
 * {gen, nogen} x variant listed in templates.json is rendered the way transformers' apply_chat_template does -- the template's
 * special tokens as variables (null = not passed), the variant as extra kwargs, tools = the
 * conversation's tools or None, and strftime_now fixed at 2024-07-26 00:00:00 -- and compared
 * byte for byte with expected/<name>.<conv>.<gen|nogen>[.<variant>].txt. For .error.txt cases
 * the render must fail with PL_ETEMPLATE and a message containing the template's error text.
 * Also: the built-in templates, string tool-call arguments, parameter validation, that every
 * byte allocated through pl_alloc is freed, and `pagellm template` end to end (when the CLI has
 * been built: $PL_BUILD_DIR/pagellm). */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "template/chat_template.h"
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

static int n_cases, n_pass;

/* Render one case and compare with its expected file. */
static void run_case(const char *dir, const char *name, const pl_chat_template *t, const json_t *tmpl,
                     const char *conv_name, const json_t *conv, int gen, const char *variant,
                     const json_t *variant_kwargs) {
  char base[1200], path[1300];
  snprintf(base, sizeof base, "%s/expected/%s.%s.%s%s%s", dir, name, conv_name,
           gen ? "gen" : "nogen", variant ? "." : "", variant ? variant : "");
  snprintf(path, sizeof path, "%s.txt", base);
  size_t exp_len = 0;
  char *expected = read_file(path, &exp_len);
  int want_error = 0;
  if (!expected) {
    snprintf(path, sizeof path, "%s.error.txt", base);
    expected = read_file(path, &exp_len);
    want_error = 1;
  }
  n_cases++;
  CHECK(expected != NULL, "missing expected file for %s", base);
  if (!expected)
    return;

  json_t *extra = json_object();
  const json_t *special = json_object_get(tmpl, "special_tokens");
  const char *key;
  json_t *val;
  const char *bos = NULL, *eos = NULL;
  json_object_foreach((json_t *)special, key, val) {
    if (json_is_null(val))
      continue; /* not defined and not passed */
    if (!strcmp(key, "bos_token"))
      bos = json_string_value(val);
    else if (!strcmp(key, "eos_token"))
      eos = json_string_value(val);
    else
      json_object_set(extra, key, val);
  }
  if (variant_kwargs)
    json_object_update(extra, (json_t *)variant_kwargs);

  pl_chat_render_params p;
  pl_chat_render_params_default(&p);
  p.messages = json_object_get(conv, "messages");
  p.tools = json_object_get(conv, "tools");
  p.add_generation_prompt = gen;
  p.bos_token = bos;
  p.eos_token = eos;
  p.extra = extra;
  p.now = FIXED_NOW;
  char *out = NULL;
  size_t out_len = 0;
  int rc = pl_chat_template_render(t, &p, &out, &out_len);
  if (want_error) {
    const char *prefix = "TemplateError: ";
    const char *msg = strncmp(expected, prefix, strlen(prefix)) == 0 ? expected + strlen(prefix)
                                                                      : expected;
    int ok = rc == PL_ETEMPLATE && strstr(pl_last_error(), msg) != NULL;
    CHECK(ok, "%s: want error '%s', got rc=%d '%s'", base, msg, rc,
          rc ? pl_last_error() : (out ? out : ""));
    n_pass += ok;
  } else {
    int ok = rc == PL_OK && out_len == exp_len && memcmp(out, expected, exp_len) == 0;
    if (!ok && rc == PL_OK) {
      size_t i = 0;
      while (i < out_len && i < exp_len && out[i] == expected[i])
        i++;
      fprintf(stderr, "%s: first difference at byte %zu\n--- got:\n%s\n--- want:\n%s\n", base, i,
              out, expected);
    }
    CHECK(ok, "%s: rc=%d %s", base, rc, rc ? pl_last_error() : "output differs");
    n_pass += ok;
  }
  pl_free(out);
  free(expected);
  json_decref(extra);
}

/* Every case of DIR/templates.json against DIR/expected/. */
static void golden(const char *dir) {
  json_error_t err;
  char path[1024];
  snprintf(path, sizeof path, "%s/templates.json", dir);
  json_t *templates = json_load_file(path, 0, &err);
  snprintf(path, sizeof path, "%s/conversations.json", dir);
  json_t *convs = templates ? json_load_file(path, 0, &err) : NULL;
  CHECK(templates && convs, "cannot load %s JSON: %s", dir, err.text);
  if (!templates || !convs) {
    json_decref(templates);
    return;
  }
  n_cases = n_pass = 0;
  int want_cases = 0;
  const char *name;
  json_t *tmpl;
  json_object_foreach(json_object_get(templates, "templates"), name, tmpl) {
    want_cases += 2 * (int)json_array_size(json_object_get(tmpl, "conversations")) *
                  (1 + (int)json_object_size(json_object_get(tmpl, "variants")));
    snprintf(path, sizeof path, "%s/%s", dir, json_string_value(json_object_get(tmpl, "file")));
    char *src = read_file(path, NULL);
    CHECK(src != NULL, "cannot read %s", path);
    if (!src)
      continue;
    pl_chat_template *t = NULL;
    int rc = pl_chat_template_parse(src, &t);
    CHECK(rc == PL_OK, "%s: parse failed: %s", name, pl_last_error());
    free(src);
    if (rc)
      continue;
    size_t i;
    json_t *cname;
    json_array_foreach(json_object_get(tmpl, "conversations"), i, cname) {
      const char *cn = json_string_value(cname);
      const json_t *conv = json_object_get(json_object_get(convs, "conversations"), cn);
      for (int gen = 1; gen >= 0; gen--) {
        run_case(dir, name, t, tmpl, cn, conv, gen, NULL, NULL);
        const char *vname;
        json_t *kw;
        json_object_foreach(json_object_get(tmpl, "variants"), vname, kw)
          run_case(dir, name, t, tmpl, cn, conv, gen, vname, kw);
      }
    }
    pl_chat_template_free(t);
  }
  printf("chat templates (%s): %d/%d renderings match Jinja2\n", dir, n_pass, n_cases);
  CHECK(n_cases > 0 && n_cases == want_cases, "templates.json lists %d cases, ran %d", want_cases,
        n_cases);
  CHECK(n_pass == n_cases);
  json_decref(templates);
  json_decref(convs);
}

static char *render_simple(const pl_chat_template *t, const char *messages_json, int gen,
                           const char *bos, int *rc_out) {
  json_t *msgs = json_loads(messages_json, 0, NULL);
  pl_chat_render_params p;
  pl_chat_render_params_default(&p);
  p.messages = msgs;
  p.add_generation_prompt = gen;
  p.bos_token = bos;
  char *out = NULL;
  *rc_out = pl_chat_template_render(t, &p, &out, NULL);
  json_decref(msgs);
  return out;
}

static void builtins(void) {
  pl_chat_template *t = NULL;
  int rc;
  CHECK(pl_chat_template_builtin("chatml", &t) == PL_OK);
  char *s = render_simple(t, "[{\"role\":\"system\",\"content\":\"S\"},{\"role\":\"user\","
                             "\"content\":[{\"type\":\"text\",\"text\":\"hi\"}]}]", 1, NULL, &rc);
  CHECK(rc == PL_OK && s && !strcmp(s, "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nhi"
                                       "<|im_end|>\n<|im_start|>assistant\n"),
        "chatml: %s", s ? s : pl_last_error());
  pl_free(s);
  pl_chat_template_free(t);

  CHECK(pl_chat_template_builtin("llama3", &t) == PL_OK);
  s = render_simple(t, "[{\"role\":\"user\",\"content\":\"  hi \"}]", 0, "<|begin_of_text|>", &rc);
  CHECK(rc == PL_OK && s && !strcmp(s, "<|begin_of_text|><|start_header_id|>user<|end_header_id|>"
                                       "\n\nhi<|eot_id|>"),
        "llama3: %s", s ? s : pl_last_error());
  pl_free(s);
  pl_chat_template_free(t);

  CHECK(pl_chat_template_builtin("nope", &t) == PL_ENOTFOUND && t == NULL);
  CHECK(pl_chat_template_builtin_source("chatml") != NULL);
  CHECK(pl_chat_template_builtin_source("x") == NULL);
}

/* OpenAI clients send tool-call arguments as a JSON string; by default they are parsed into
 * an object so templates that apply tojson print them once, not double-encoded. */
static void string_arguments(void) {
  pl_chat_template *t = NULL;
  CHECK(pl_chat_template_parse("{% for m in messages %}{% for c in m.tool_calls %}"
                               "{{ c.function.arguments | tojson }}{% endfor %}{% endfor %}",
                               &t) == PL_OK);
  json_t *msgs = json_loads("[{\"role\":\"assistant\",\"tool_calls\":[{\"type\":\"function\","
                            "\"function\":{\"name\":\"f\",\"arguments\":\"{\\\"a\\\": 1}\"}}]}]",
                            0, NULL);
  pl_chat_render_params p;
  pl_chat_render_params_default(&p);
  p.messages = msgs;
  char *out = NULL;
  CHECK(pl_chat_template_render(t, &p, &out, NULL) == PL_OK && out && !strcmp(out, "{\"a\": 1}"),
        "%s", out ? out : pl_last_error());
  pl_free(out);
  p.keep_string_arguments = 1;
  CHECK(pl_chat_template_render(t, &p, &out, NULL) == PL_OK && out &&
            !strcmp(out, "\"{\\\"a\\\": 1}\""),
        "%s", out ? out : pl_last_error());
  pl_free(out);
  /* the caller's messages are not modified */
  CHECK(json_is_string(json_object_get(json_object_get(json_array_get(json_object_get(
                                                           json_array_get(msgs, 0), "tool_calls"),
                                                                          0),
                                                           "function"),
                                       "arguments")));
  json_decref(msgs);
  pl_chat_template_free(t);
}

static void validation(void) {
  pl_chat_template *t = NULL;
  CHECK(pl_chat_template_parse("{{ messages | length }}", &t) == PL_OK);
  pl_chat_render_params p;
  pl_chat_render_params_default(&p);
  char *out = (char *)1;
  CHECK(pl_chat_template_render(t, &p, &out, NULL) == PL_EINVAL && out == NULL);
  json_t *obj = json_object();
  p.messages = obj;
  CHECK(pl_chat_template_render(t, &p, &out, NULL) == PL_EINVAL);
  json_t *arr = json_array();
  p.messages = arr;
  p.extra = arr; /* not an object */
  CHECK(pl_chat_template_render(t, &p, &out, NULL) == PL_EINVAL);
  p.extra = NULL;
  p.bos_token = "\xff\xfe"; /* invalid UTF-8 */
  CHECK(pl_chat_template_render(t, &p, &out, NULL) == PL_EINVAL);
  p.bos_token = NULL;
  size_t len = 9;
  CHECK(pl_chat_template_render(t, &p, &out, &len) == PL_OK && out && !strcmp(out, "0") && len == 1);
  pl_free(out);
  json_decref(obj);
  json_decref(arr);
  pl_chat_template_free(t);
  CHECK(pl_chat_template_parse(NULL, &t) == PL_EINVAL && t == NULL);
  CHECK(pl_chat_template_parse("{% include 'x' %}", &t) == PL_ETEMPLATE && t == NULL);
  CHECK(strstr(pl_last_error(), "include") && strstr(pl_last_error(), "line 1"), "%s",
        pl_last_error());
  pl_chat_template_free(NULL);
}


/* Run a shell command, capture stdout (+stderr when asked); returns the exit status. */
static int run_capture(const char *cmd, char **out, size_t *len) {
  FILE *p = popen(cmd, "r");
  if (!p)
    return -1;
  size_t cap = 1 << 16, n = 0, k;
  char *buf = malloc(cap);
  while ((k = fread(buf + n, 1, cap - n - 1, p)) > 0) {
    n += k;
    if (n + 1 >= cap)
      buf = realloc(buf, cap *= 2);
  }
  buf[n] = 0;
  *out = buf;
  *len = n;
  int st = pclose(p);
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static char *write_temp(const json_t *j) {
  char *path = strdup("/tmp/pl_tmpl_XXXXXX");
  int fd = mkstemp(path);
  if (fd < 0) {
    free(path);
    return NULL;
  }
  FILE *f = fdopen(fd, "w");
  json_dumpf(j, f, 0);
  fclose(f);
  return path;
}

static void cli(void) {
  const char *dir = getenv("PL_BUILD_DIR");
  char bin[1024];
  snprintf(bin, sizeof bin, "%s/pagellm", dir ? dir : ".");
  if (!dir || access(bin, X_OK) != 0) {
    printf("cli: %s not built, end-to-end check skipped\n", bin);
    return;
  }
  json_t *convs = json_load_file(data_path("chat-templates/conversations.json"), 0, NULL);
  json_t *conv = json_object_get(json_object_get(convs, "conversations"), "tool_call_roundtrip");
  json_t *su = json_object_get(json_object_get(convs, "conversations"), "system_user");
  char *msgs = write_temp(json_object_get(conv, "messages"));
  char *tools = write_temp(json_object_get(conv, "tools"));
  char *whole = write_temp(conv); /* {"messages": ..., "tools": ...} form */
  char *sys_msgs = write_temp(json_object_get(su, "messages"));
  CHECK(msgs && tools && whole && sys_msgs, "temp files");
  char cmd[4096], *out = NULL;
  size_t len = 0, exp_len = 0;

  snprintf(cmd, sizeof cmd, "'%s' template --template '%s' --messages %s --tools %s --eos '<|im_end|>'",
           bin, data_path("chat-templates/qwen3.jinja"), msgs, tools);
  char *want = read_file(data_path("chat-templates/expected/qwen3.tool_call_roundtrip.gen.txt"), &exp_len);
  int st = run_capture(cmd, &out, &len);
  CHECK(st == 0 && want && len == exp_len && !memcmp(out, want, len), "cli qwen3: status %d", st);
  free(out);
  free(want);

  snprintf(cmd, sizeof cmd, "'%s' template --template '%s' --messages %s --no-generation-prompt "
           "--bos '<|begin_of_text|>' --eos '<|eot_id|>' --now 1721952000",
           bin, data_path("chat-templates/llama-3.2-instruct.jinja"), whole);
  want = read_file(data_path("chat-templates/expected/llama-3.2-instruct.tool_call_roundtrip.nogen.txt"), &exp_len);
  st = run_capture(cmd, &out, &len);
  CHECK(st == 0 && want && len == exp_len && !memcmp(out, want, len), "cli llama-3.2: status %d", st);
  free(out);
  free(want);

  snprintf(cmd, sizeof cmd, "'%s' template --template '%s' --messages %s --kwargs '{\"enable_thinking\": false}'",
           bin, data_path("chat-templates/qwen3.jinja"), sys_msgs);
  want = read_file(data_path("chat-templates/expected/qwen3.system_user.gen.nothink.txt"), &exp_len);
  st = run_capture(cmd, &out, &len);
  CHECK(st == 0 && want && len == exp_len && !memcmp(out, want, len), "cli qwen3 nothink: status %d", st);
  free(out);
  free(want);

  snprintf(cmd, sizeof cmd, "'%s' template --template '%s' --messages %s 2>&1", bin,
           data_path("chat-templates/gemma-2-it.jinja"), sys_msgs);
  st = run_capture(cmd, &out, &len);
  CHECK(st == 1 && strstr(out, "System role not supported"), "cli gemma error: %d %s", st, out);
  free(out);

  snprintf(cmd, sizeof cmd, "'%s' template --builtin chatml --messages %s --no-generation-prompt", bin, sys_msgs);
  st = run_capture(cmd, &out, &len);
  CHECK(st == 0 && !strcmp(out, "<|im_start|>system\nYou answer in one sentence.<|im_end|>\n"
                                "<|im_start|>user\nWhy is the sky blue?<|im_end|>\n"),
        "cli builtin: %d [%s]", st, out);
  free(out);

  snprintf(cmd, sizeof cmd, "'%s' template --messages %s 2>&1 --template /nonexistent.jinja", bin, sys_msgs);
  st = run_capture(cmd, &out, &len);
  CHECK(st == 1 && strstr(out, "nonexistent"), "cli missing file: %d %s", st, out);
  free(out);
  snprintf(cmd, sizeof cmd, "'%s' template --bogus 2>&1", bin);
  st = run_capture(cmd, &out, &len);
  CHECK(st == 2, "cli bad option: %d", st);
  free(out);

  char *files[] = {msgs, tools, whole, sys_msgs};
  for (int i = 0; i < 4; i++) {
    if (files[i])
      unlink(files[i]);
    free(files[i]);
  }
  json_decref(convs);
}

/* `test_chat_template --extra` (CTest: extra_chat_templates): the same golden test on the
 * reference renderings in $PAGELLM_EXTRA_DATA/chat-templates (16 templates, 134 cases);
 * exit 77 (CTest: skipped) when the variable is unset. */
int main(int argc, char **argv) {
  size_t live0 = pl_alloc_live_bytes();
  char dir[1024];
  if (argc > 1 && !strcmp(argv[1], "--extra")) {
    const char *extra = extra_data_path("chat-templates/templates.json",
                                        "chat templates against the reference renderings in ../shared");
    if (!extra)
      return 77;
    snprintf(dir, sizeof dir, "%s", extra);
    *strrchr(dir, '/') = 0;
    golden(dir);
    CHECK(pl_alloc_live_bytes() == live0, "leaked %zu bytes", pl_alloc_live_bytes() - live0);
    return check_summary("test_chat_template --extra");
  }
  snprintf(dir, sizeof dir, "%s", data_path("chat-templates/templates.json"));
  *strrchr(dir, '/') = 0;
  golden(dir);
  builtins();
  string_arguments();
  validation();
  cli();
  CHECK(pl_alloc_live_bytes() == live0, "leaked %zu bytes", pl_alloc_live_bytes() - live0);
  return check_summary("test_chat_template");
}
