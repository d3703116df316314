/* Chat-template API (see chat_template.h): wraps the Jinja interpreter with the variables
 * transformers passes to apply_chat_template -- messages, tools, documents,
 * add_generation_prompt, bos_token, eos_token, plus any extra kwargs -- and the two built-in
 * fallback templates. */
#include "template/chat_template.h"

#include <string.h>

#include "template/jinja.h"
#include "util/alloc.h"
#include "util/error.h"

struct pl_chat_template {
  pl_jinja_template *jt;
};

/* Plain ChatML; list-of-parts content contributes its text parts. */
static const char chatml_src[] =
    "{%- for message in messages -%}\n"
    "{{- '<|im_start|>' + message['role'] + '\\n' -}}\n"
    "{%- if message['content'] is string -%}\n"
    "{{- message['content'] -}}\n"
    "{%- elif message['content'] is iterable -%}\n"
    "{%- for part in message['content'] if part['type'] == 'text' -%}{{- part['text'] -}}"
    "{%- endfor -%}\n"
    "{%- endif -%}\n"
    "{{- '<|im_end|>\\n' -}}\n"
    "{%- endfor -%}\n"
    "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}{%- endif -%}\n";

/* Llama-3 header / eot format; contents are trimmed as Meta's template does. */
static const char llama3_src[] =
    "{{- bos_token -}}\n"
    "{%- for message in messages -%}\n"
    "{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' -}}\n"
    "{%- if message['content'] is string -%}\n"
    "{{- message['content'] | trim -}}\n"
    "{%- elif message['content'] is iterable -%}\n"
    "{%- for part in message['content'] if part['type'] == 'text' -%}"
    "{{- part['text'] | trim -}}{%- endfor -%}\n"
    "{%- endif -%}\n"
    "{{- '<|eot_id|>' -}}\n"
    "{%- endfor -%}\n"
    "{%- if add_generation_prompt -%}"
    "{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' -}}{%- endif -%}\n";

const char *pl_chat_template_builtin_source(const char *name) {
  if (!name)
    return NULL;
  if (!strcmp(name, "chatml"))
    return chatml_src;
  if (!strcmp(name, "llama3"))
    return llama3_src;
  return NULL;
}

int pl_chat_template_parse(const char *src, pl_chat_template **out) {
  *out = NULL;
  if (!src)
    return pl_fail(PL_EINVAL, "chat template: no source");
  pl_chat_template *t = pl_calloc(1, sizeof *t);
  if (!t)
    return pl_fail(PL_ENOMEM, "chat template: out of memory");
  int rc = pl_jinja_template_parse(src, strlen(src), &t->jt);
  if (rc < 0) {
    pl_free(t);
    return rc;
  }
  *out = t;
  return PL_OK;
}

int pl_chat_template_builtin(const char *name, pl_chat_template **out) {
  *out = NULL;
  const char *src = pl_chat_template_builtin_source(name);
  if (!src)
    return pl_fail(PL_ENOTFOUND, "no built-in chat template named '%s' (have: chatml, llama3)",
                   name ? name : "(null)");
  return pl_chat_template_parse(src, out);
}

void pl_chat_template_free(pl_chat_template *t) {
  if (!t)
    return;
  pl_jinja_template_free(t->jt);
  pl_free(t);
}

void pl_chat_render_params_default(pl_chat_render_params *p) {
  memset(p, 0, sizeof *p);
  p->add_generation_prompt = 1;
}

/* JSON-string tool-call arguments that hold an object, parsed (NULL when none). */
static json_t *parsed_arguments(const json_t *call) {
  json_t *fn = json_object_get(call, "function");
  json_t *args = json_is_object(fn) ? json_object_get(fn, "arguments") : NULL;
  if (!json_is_string(args))
    return NULL;
  json_t *obj = json_loadb(json_string_value(args), json_string_length(args), 0, NULL);
  if (obj && !json_is_object(obj)) {
    json_decref(obj);
    return NULL;
  }
  return obj;
}

/* A message of the OpenAI form the way HF templates expect it (vLLM does the same): content
 * null -> "" (templates test and slice it as a string), tool-call arguments given as JSON
 * text -> the object. Returns 1 when m needs a change; with fix, makes it (m is a copy). */
static int normalize_message(json_t *m, int fix) {
  int needed = 0;
  json_t *c = json_object_get(m, "content");
  if (c && json_is_null(c)) {
    needed = 1;
    if (fix && json_object_set_new(m, "content", json_string("")) < 0)
      return -1;
  }
  size_t k;
  json_t *call;
  json_array_foreach(json_object_get(m, "tool_calls"), k, call) {
    json_t *obj = parsed_arguments(call);
    if (!obj)
      continue;
    needed = 1;
    if (!fix)
      json_decref(obj);
    else if (json_object_set_new(json_object_get(call, "function"), "arguments", obj) < 0)
      return -1;
  }
  return needed;
}

/* Messages in the form HF templates expect; a new reference (a copy only when needed). */
static json_t *normalize_messages(const json_t *messages) {
  int needed = 0;
  size_t i;
  json_t *m;
  json_array_foreach((json_t *)messages, i, m)
    needed |= normalize_message(m, 0) > 0;
  if (!needed)
    return json_incref((json_t *)messages);
  json_t *copy = json_deep_copy(messages);
  if (!copy)
    return NULL;
  json_array_foreach(copy, i, m)
    if (normalize_message(m, 1) < 0) {
      json_decref(copy);
      return NULL;
    }
  return copy;
}

static int set_token(json_t *vars, const char *name, const char *text) {
  if (!text)
    return PL_OK;
  json_t *s = json_string(text);
  if (!s)
    return pl_fail(PL_EINVAL, "chat template: %s is not valid UTF-8", name);
  if (json_object_set_new(vars, name, s) < 0)
    return pl_fail(PL_ENOMEM, "chat template: out of memory");
  return PL_OK;
}

static int build_vars(const pl_chat_render_params *p, json_t *vars) {
  if (p->extra) {
    if (!json_is_object(p->extra))
      return pl_fail(PL_EINVAL, "chat template: extra variables must be a JSON object");
    if (json_object_update(vars, (json_t *)p->extra) < 0)
      return pl_fail(PL_ENOMEM, "chat template: out of memory");
  }
  json_t *msgs = p->keep_string_arguments ? json_incref((json_t *)p->messages)
                                          : normalize_messages(p->messages);
  if (!msgs || json_object_set_new(vars, "messages", msgs) < 0)
    return pl_fail(PL_ENOMEM, "chat template: out of memory");
  if (json_object_set_new(vars, "tools", p->tools ? json_incref((json_t *)p->tools) : json_null()) < 0 ||
      json_object_set_new(vars, "documents",
                          p->documents ? json_incref((json_t *)p->documents) : json_null()) < 0 ||
      json_object_set_new(vars, "add_generation_prompt",
                          json_boolean(p->add_generation_prompt)) < 0)
    return pl_fail(PL_ENOMEM, "chat template: out of memory");
  PL_TRY(set_token(vars, "bos_token", p->bos_token));
  PL_TRY(set_token(vars, "eos_token", p->eos_token));
  return PL_OK;
}

int pl_chat_template_render(const pl_chat_template *t, const pl_chat_render_params *p,
                            char **out, size_t *out_len) {
  *out = NULL;
  if (out_len)
    *out_len = 0;
  if (!t || !p)
    return pl_fail(PL_EINVAL, "chat template render: missing template or parameters");
  if (!json_is_array(p->messages))
    return pl_fail(PL_EINVAL, "chat template render: messages must be a JSON array");
  if (p->tools && !json_is_array(p->tools) && !json_is_null(p->tools))
    return pl_fail(PL_EINVAL, "chat template render: tools must be a JSON array");
  json_t *vars = json_object();
  if (!vars)
    return pl_fail(PL_ENOMEM, "chat template: out of memory");
  int rc = build_vars(p, vars);
  if (rc == PL_OK) {
    pl_jinja_render_opts o = {.vars = vars, .now = p->now, .max_output = p->max_output,
                              .max_text = p->max_text};
    rc = pl_jinja_render(t->jt, &o, out, out_len);
  }
  json_decref(vars);
  return rc;
}
