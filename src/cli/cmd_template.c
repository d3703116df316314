/* `pagellm template`: render a chat template for a conversation and print the prompt exactly
 * (no trailing newline added), as the engine would feed it to the tokenizer. The template comes
 * from a file (--template), a built-in (--builtin), or the model (-m: GGUF
 * tokenizer.chat_template or tokenizer_config.json, with the model's BOS/EOS text). */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/engine_opts.h"
#include "template/chat_template.h"
#include "tokenizer/tokenizer.h"
#include "util/alloc.h"
#include "util/error.h"
#include "util/file.h"

static const char *help =
    "usage: pagellm template (--template FILE | --builtin NAME | -m MODEL) --messages FILE\n"
    "                        [--tools FILE] [--no-generation-prompt] [--bos TEXT] [--eos TEXT]\n"
    "                        [--kwargs JSON] [--now UNIX_SECONDS]\n"
    "  --template FILE         Jinja chat template file\n"
    "  --builtin NAME          built-in template: chatml or llama3\n"
    "  -m, --model PATH        use the model's own template and BOS/EOS text (.gguf, tokenizer.json\n"
    "                          or a Hugging Face directory); --template/--builtin override it\n"
    "  --messages FILE         JSON array of messages, or an object with \"messages\" (and\n"
    "                          optionally \"tools\"); '-' reads stdin\n"
    "  --tools FILE            JSON array of tools (OpenAI function schema)\n"
    "  --no-generation-prompt  do not append the assistant turn header\n"
    "  --bos TEXT, --eos TEXT  special-token text (default: the model's; else undefined)\n"
    "  --kwargs JSON           extra template variables, e.g. '{\"enable_thinking\": false}'\n"
    "  --now UNIX_SECONDS      fixed clock for strftime_now (formatted as UTC)\n"
    "The rendered prompt goes to stdout byte for byte.\n";

/* Whole file (or stdin for "-") into a pl_malloc'd NUL-terminated buffer. */
static char *slurp(const char *path, size_t *len) {
  char *buf;
  int rc = strcmp(path, "-") ? pl_read_file(path, (size_t)-1, &buf, len)
                             : pl_read_stream(stdin, "stdin", (size_t)-1, &buf, len);
  return rc < 0 ? NULL : buf;
}

static json_t *load_json(const char *path) {
  size_t n = 0;
  char *text = slurp(path, &n);
  if (!text)
    return NULL;
  json_error_t err;
  json_t *j = json_loadb(text, n, 0, &err);
  pl_free(text);
  if (!j)
    pl_fail(PL_EFORMAT, "%s: invalid JSON at line %d: %s", path, err.line, err.text);
  return j;
}

typedef struct opts {
  const char *template_path, *builtin, *model, *messages_path, *tools_path, *bos, *eos, *kwargs;
  int gen;
  long long now;
} opts;

static int parse_args(int argc, char **argv, opts *o) {
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    const char **slot = NULL;
    if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
      fputs(help, stdout);
      return 1;
    } else if (!strcmp(a, "--no-generation-prompt")) {
      o->gen = 0;
      continue;
    } else if (!strcmp(a, "--template")) {
      slot = &o->template_path;
    } else if (!strcmp(a, "--builtin")) {
      slot = &o->builtin;
    } else if (!strcmp(a, "-m") || !strcmp(a, "--model")) {
      slot = &o->model;
    } else if (!strcmp(a, "--messages")) {
      slot = &o->messages_path;
    } else if (!strcmp(a, "--tools")) {
      slot = &o->tools_path;
    } else if (!strcmp(a, "--bos")) {
      slot = &o->bos;
    } else if (!strcmp(a, "--eos")) {
      slot = &o->eos;
    } else if (!strcmp(a, "--kwargs")) {
      slot = &o->kwargs;
    } else if (!strcmp(a, "--now")) {
      if (++i == argc)
        break;
      char *end;
      o->now = strtoll(argv[i], &end, 10);
      if (*end || end == argv[i] || o->now <= 0) {
        fprintf(stderr, "pagellm template: --now expects positive Unix seconds, got '%s'\n",
                argv[i]);
        return -1;
      }
      continue;
    } else {
      fprintf(stderr, "pagellm template: unknown argument '%s'\n%s", a, help);
      return -1;
    }
    if (++i == argc) {
      fprintf(stderr, "pagellm template: %s needs a value\n", a);
      return -1;
    }
    *slot = argv[i];
  }
  if (argc > 1 && !strcmp(argv[argc - 1], "--now")) {
    fprintf(stderr, "pagellm template: --now needs a value\n");
    return -1;
  }
  if (!o->messages_path) {
    fprintf(stderr, "pagellm template: --messages FILE is required\n%s", help);
    return -1;
  }
  if (o->template_path && o->builtin) {
    fprintf(stderr, "pagellm template: give --template or --builtin, not both\n");
    return -1;
  }
  return 0;
}

/* The template and the default BOS/EOS text. The model is read only when needed. */
static int get_template(const opts *o, pl_chat_template **t, pl_tokenizer **tok) {
  const char *model = o->model;
  if (!o->template_path && !o->builtin && !model)
    model = pl_engine_opts_default_model();
  /* The model supplies the template unless one was given, and BOS/EOS unless both were. */
  int need_model = model && (!(o->template_path || o->builtin) || !o->bos || !o->eos);
  if (need_model && pl_tokenizer_load(model, tok) != 0)
    return -1;
  if (o->template_path) {
    char *src = slurp(o->template_path, NULL);
    if (!src)
      return -1;
    int rc = pl_chat_template_parse(src, t);
    pl_free(src);
    if (rc)
      return pl_fail_prefix(rc, o->template_path);
    return 0;
  }
  if (o->builtin)
    return pl_chat_template_builtin(o->builtin, t);
  if (!*tok)
    return pl_fail(PL_EINVAL, "no template: pass --template FILE, --builtin NAME or -m MODEL");
  const char *src = pl_tokenizer_chat_template(*tok);
  if (!src)
    return pl_fail(PL_ENOTFOUND, "%s has no chat template (use --template or --builtin)", model);
  return pl_chat_template_parse(src, t);
}

int pl_cmd_template(int argc, char **argv) {
  opts o = {.gen = 1};
  int prc = parse_args(argc, argv, &o);
  if (prc)
    return prc > 0 ? 0 : 2;
  pl_chat_template *t = NULL;
  pl_tokenizer *tok = NULL;
  json_t *doc = NULL, *tools = NULL, *extra = NULL;
  char *out = NULL;
  size_t len = 0;
  int rc = get_template(&o, &t, &tok);
  if (rc == 0 && !(doc = load_json(o.messages_path)))
    rc = -1;
  if (rc == 0 && o.tools_path && !(tools = load_json(o.tools_path)))
    rc = -1;
  if (rc == 0 && o.kwargs) {
    json_error_t err;
    extra = json_loads(o.kwargs, 0, &err);
    if (!json_is_object(extra))
      rc = pl_fail(PL_EINVAL, "--kwargs must be a JSON object (%s)", extra ? "not an object" : err.text);
  }
  if (rc == 0) {
    pl_chat_render_params p;
    pl_chat_render_params_default(&p);
    p.messages = json_is_object(doc) ? json_object_get(doc, "messages") : doc;
    p.tools = tools ? tools : json_is_object(doc) ? json_object_get(doc, "tools") : NULL;
    p.add_generation_prompt = o.gen;
    p.bos_token = o.bos ? o.bos : tok ? pl_tokenizer_bos_text(tok) : NULL;
    p.eos_token = o.eos ? o.eos : tok ? pl_tokenizer_eos_text(tok) : NULL;
    p.extra = extra;
    p.now = o.now;
    if (!p.messages)
      rc = pl_fail(PL_EINVAL, "%s: expected a JSON array of messages or {\"messages\": [...]}",
                   o.messages_path);
    else
      rc = pl_chat_template_render(t, &p, &out, &len);
  }
  if (rc == 0) {
    fwrite(out, 1, len, stdout);
    fflush(stdout);
  } else {
    fprintf(stderr, "pagellm template: %s\n", pl_last_error());
  }
  pl_free(out);
  json_decref(doc);
  json_decref(tools);
  json_decref(extra);
  pl_chat_template_free(t);
  pl_tokenizer_free(tok);
  return rc == 0 ? 0 : 1;
}
