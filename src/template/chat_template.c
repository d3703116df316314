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
  pl_alloc_soft_begin(); /* jansson's lexer cannot survive a failed allocation */
  json_t *obj = json_loadb(json_string_value(args), json_string_length(args), 0, NULL);
  pl_alloc_soft_end();
  if (obj && !json_is_object(obj)) {
    json_decref(obj);
    return NULL;
  }
  return obj;
}

/* A message of the OpenAI form the way HF templates expect it (vLLM does the same): content
 * null -> "" (templates test and slice it as a string), tool-call arguments given as JSON
 * text -> the object. Returns 1 when m needs a change; with fix, makes it (m is a copy). */
static int normalize_calls(json_t *calls, int fix) {
  int needed = 0;
  size_t k;
  json_t *call;
  json_array_foreach(calls, k, call) {
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

static int normalize_message(json_t *m, int fix) {
  int needed = 0;
  json_t *c = json_object_get(m, "content");
  if (c && json_is_null(c)) {
    needed = 1;
    if (fix && json_object_set_new(m, "content", json_string("")) < 0)
      return -1;
  }
  int calls = normalize_calls(json_object_get(m, "tool_calls"), fix);
  if (calls < 0)
    return -1;
  return needed | calls;
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

/* ---- messages as C arrays (pl_chat_msg) ---------------------------------------------------- */

/* The messages of p->msgs normalized as normalize_messages does JSON ones. A message that
 * needs no change (every all-string message) is shared; the others get fields of their own,
 * whose new values are kept in `owned` (strings) until the render ends. */
typedef struct norm_msgs {
  pl_chat_msg *msgs; /* NULL: p->msgs as given */
  pl_chat_field **fields; /* [n] owned field arrays, or NULL */
  char **owned;           /* [n] owned tool_calls text, or NULL */
  size_t n;
} norm_msgs;

static void norm_msgs_free(norm_msgs *nm) {
  for (size_t i = 0; nm->fields && i < nm->n; i++) {
    pl_free(nm->fields[i]);
    pl_free(nm->owned[i]);
  }
  pl_free(nm->fields);
  pl_free(nm->owned);
  pl_free(nm->msgs);
  memset(nm, 0, sizeof *nm);
}

static int is_key(const pl_chat_field *f, const char *key) { return !strcmp(f->key, key); }

/* The field's JSON value, or NULL (with *rc set when that is a failure). */
static json_t *field_json(const pl_chat_field *f, int *rc) {
  json_error_t je;
  pl_alloc_soft_begin(); /* jansson's lexer cannot survive a failed allocation */
  json_t *j = json_loadb(f->val, f->len, JSON_DECODE_ANY, &je);
  pl_alloc_soft_end();
  if (!j)
    *rc = json_error_code(&je) == json_error_out_of_memory
              ? pl_fail(PL_ENOMEM, "chat template: out of memory")
              : pl_fail(PL_EINVAL, "chat template: message field '%s' is not valid JSON", f->key);
  return j;
}

/* Compact JSON text of j in a pl_malloc'd string, or NULL. */
static char *dump_json(const json_t *j, size_t *len) {
  size_t flags = JSON_COMPACT | JSON_ENCODE_ANY, n = json_dumpb(j, NULL, 0, flags);
  char *text = n ? pl_malloc(n + 1) : NULL;
  if (!text || json_dumpb(j, text, n, flags) != n) {
    pl_free(text);
    return NULL;
  }
  text[n] = 0;
  *len = n;
  return text;
}

/* Whether message m needs normalizing (1), and with fix, its new fields in *out. */
static int normalize_msg(const pl_chat_msg *m, pl_chat_field **out, char **owned) {
  int needed = 0, rc = PL_OK;
  for (size_t k = 0; k < m->n; k++) {
    const pl_chat_field *f = &m->fields[k];
    if (!f->is_json || !(is_key(f, "content") || is_key(f, "tool_calls")))
      continue;
    json_t *j = field_json(f, &rc);
    if (!j)
      return rc;
    int need = is_key(f, "content") ? json_is_null(j) : normalize_calls(j, 0);
    if (need && out) {
      if (!*out) {
        if (!(*out = pl_malloc(m->n * sizeof **out))) {
          json_decref(j);
          return pl_fail(PL_ENOMEM, "chat template: out of memory");
        }
        memcpy(*out, m->fields, m->n * sizeof **out);
      }
      pl_chat_field *nf = &(*out)[k];
      if (is_key(f, "content")) {
        *nf = (pl_chat_field){.key = f->key, .val = "", .len = 0, .is_json = 0};
      } else {
        char *text = NULL;
        size_t len = 0;
        if (normalize_calls(j, 1) < 0 || !(text = dump_json(j, &len))) {
          json_decref(j);
          return pl_fail(PL_ENOMEM, "chat template: out of memory");
        }
        *owned = text;
        *nf = (pl_chat_field){.key = f->key, .val = text, .len = len, .is_json = 1};
      }
    }
    json_decref(j);
    needed |= need != 0;
  }
  return needed;
}

static int normalize_msgs(const pl_chat_render_params *p, norm_msgs *nm) {
  size_t first = p->n_msgs;
  for (size_t i = 0; i < p->n_msgs && first == p->n_msgs; i++) {
    int need = normalize_msg(&p->msgs[i], NULL, NULL);
    if (need < 0)
      return need;
    if (need)
      first = i;
  }
  if (first == p->n_msgs)
    return PL_OK; /* the usual case: nothing to change, nothing copied */
  nm->n = p->n_msgs;
  nm->msgs = pl_malloc(nm->n * sizeof *nm->msgs);
  nm->fields = pl_calloc(nm->n, sizeof *nm->fields);
  nm->owned = pl_calloc(nm->n, sizeof *nm->owned);
  if (!nm->msgs || !nm->fields || !nm->owned)
    return pl_fail(PL_ENOMEM, "chat template: out of memory");
  for (size_t i = 0; i < nm->n; i++) {
    nm->msgs[i] = p->msgs[i];
    if (i < first)
      continue;
    int need = normalize_msg(&p->msgs[i], &nm->fields[i], &nm->owned[i]);
    if (need < 0)
      return need;
    if (nm->fields[i])
      nm->msgs[i].fields = nm->fields[i];
  }
  return PL_OK;
}

static int build_vars(const pl_chat_render_params *p, json_t *vars) {
  if (p->extra) {
    if (!json_is_object(p->extra))
      return pl_fail(PL_EINVAL, "chat template: extra variables must be a JSON object");
    if (json_object_update(vars, (json_t *)p->extra) < 0)
      return pl_fail(PL_ENOMEM, "chat template: out of memory");
  }
  if (p->messages) {
    json_t *msgs = p->keep_string_arguments ? json_incref((json_t *)p->messages)
                                            : normalize_messages(p->messages);
    if (!msgs || json_object_set_new(vars, "messages", msgs) < 0)
      return pl_fail(PL_ENOMEM, "chat template: out of memory");
  } /* else the list of p->msgs, bound after vars (over an extra variable of that name) */
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
  if (p->messages ? !json_is_array(p->messages) : !p->msgs)
    return pl_fail(PL_EINVAL, "chat template render: messages must be a JSON array");
  if (p->tools && !json_is_array(p->tools) && !json_is_null(p->tools))
    return pl_fail(PL_EINVAL, "chat template render: tools must be a JSON array");
  json_t *vars = json_object();
  if (!vars)
    return pl_fail(PL_ENOMEM, "chat template: out of memory");
  norm_msgs nm = {0};
  int rc = build_vars(p, vars);
  if (rc == PL_OK && !p->messages && !p->keep_string_arguments)
    rc = normalize_msgs(p, &nm);
  if (rc == PL_OK) {
    pl_jinja_render_opts o = {.vars = vars, .now = p->now, .max_output = p->max_output,
                              .max_text = p->max_text};
    if (!p->messages) {
      o.list_name = "messages";
      o.list = nm.msgs ? nm.msgs : p->msgs;
      o.list_n = p->n_msgs;
    }
    rc = pl_jinja_render(t->jt, &o, out, out_len);
  }
  norm_msgs_free(&nm);
  json_decref(vars);
  return rc;
}
