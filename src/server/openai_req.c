/* OpenAI request bodies -> validated parameters (see openai_req.h for the contract).
 *
 * Every field goes through one of the typed getters below, which treat "absent" and JSON null
 * alike (the default) and reject wrong types and out-of-range values with an error naming the
 * field. Integers may be written as integral reals (1.0), like pydantic's lax mode; booleans
 * are never accepted as numbers. */
#include "server/openai_req.h"

#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "grammar/grammar.h"
#include "server/json_guard.h"
#include "server/strbuf.h"
#include "util/alloc.h"

int pl_oai_errorf(pl_oai_error *e, int status, const char *param, const char *fmt, ...) {
  e->status = status;
  /* OpenAI's types: every client error is an invalid_request_error (the code tells which). */
  e->type = status >= 500 ? "server_error" : "invalid_request_error";
  e->code = NULL;
  snprintf(e->param, sizeof e->param, "%s", param ? param : "");
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(e->message, sizeof e->message, fmt, ap);
  va_end(ap);
  return PL_EINVAL;
}

/* ---- typed getters: return 1 = present, 0 = absent or null, PL_EINVAL = bad ---------------- */

static const char *type_name(const json_t *v) {
  switch (json_typeof(v)) {
  case JSON_OBJECT: return "an object";
  case JSON_ARRAY: return "an array";
  case JSON_STRING: return "a string";
  case JSON_INTEGER: return "an integer";
  case JSON_REAL: return "a number";
  case JSON_TRUE:
  case JSON_FALSE: return "a boolean";
  default: return "null";
  }
}

static int get_number(json_t *o, const char *key, double lo, double hi, int lo_open, double *out,
                      pl_oai_error *err) {
  json_t *v = json_object_get(o, key);
  if (!v || json_is_null(v))
    return 0;
  if (!json_is_number(v))
    return pl_oai_errorf(err, 400, key, "'%s' must be a number, got %s", key, type_name(v));
  double d = json_number_value(v);
  if (!(lo_open ? d > lo : d >= lo) || !(d <= hi))
    return pl_oai_errorf(err, 400, key, "'%s' must be in %s%g, %g], got %g", key,
                         lo_open ? "(" : "[", lo, hi, d);
  *out = d;
  return 1;
}

/* An integer value of v (integral reals allowed) into *out; 0 or PL_EINVAL. */
static int int_value(const json_t *v, long long lo, long long hi, long long *out, const char *param,
                     pl_oai_error *err) {
  long long x;
  if (json_is_integer(v)) {
    x = json_integer_value(v);
  } else if (json_is_real(v)) {
    double d = json_real_value(v);
    if (d != floor(d) || d < -9.2e18 || d > 9.2e18)
      return pl_oai_errorf(err, 400, param, "'%s' must be an integer, got %g", param, d);
    x = (long long)d;
  } else {
    return pl_oai_errorf(err, 400, param, "'%s' must be an integer, got %s", param, type_name(v));
  }
  if (x < lo || x > hi)
    return pl_oai_errorf(err, 400, param, "'%s' must be in [%lld, %lld], got %lld", param, lo, hi,
                         x);
  *out = x;
  return 0;
}

static int get_int(json_t *o, const char *key, long long lo, long long hi, long long *out,
                   pl_oai_error *err) {
  json_t *v = json_object_get(o, key);
  if (!v || json_is_null(v))
    return 0;
  int rc = int_value(v, lo, hi, out, key, err);
  return rc < 0 ? rc : 1;
}

static int get_bool(json_t *o, const char *key, int *out, pl_oai_error *err) {
  json_t *v = json_object_get(o, key);
  if (!v || json_is_null(v))
    return 0;
  if (!json_is_boolean(v))
    return pl_oai_errorf(err, 400, key, "'%s' must be a boolean, got %s", key, type_name(v));
  *out = json_is_true(v);
  return 1;
}

static int get_string(json_t *o, const char *key, const char **out, pl_oai_error *err) {
  json_t *v = json_object_get(o, key);
  if (!v || json_is_null(v))
    return 0;
  if (!json_is_string(v))
    return pl_oai_errorf(err, 400, key, "'%s' must be a string, got %s", key, type_name(v));
  *out = json_string_value(v);
  return 1;
}

#define TRY(expr)              \
  do {                         \
    int try_rc_ = (expr);      \
    if (try_rc_ < 0)           \
      return try_rc_;          \
  } while (0)

/* ---- known fields ----------------------------------------------------------------------- */

static const char *const known_common[] = {
    "model", "stream", "stream_options", "max_tokens", "temperature", "top_p", "n", "stop",
    "seed", "presence_penalty", "frequency_penalty", "logit_bias", "user", "top_k", "min_p",
    "repetition_penalty", "ignore_eos", "min_tokens", "stop_token_ids", "priority", "logprobs",
    "skip_special_tokens", "spaces_between_special_tokens", "include_stop_str_in_output",
    "response_format", "best_of", "use_beam_search", "add_special_tokens",
    "truncate_prompt_tokens", "guided_json", "guided_regex", "guided_choice", "guided_grammar",
    "structured_outputs", "request_id", "grammar", NULL};
static const char *const known_completions[] = {"prompt", "echo", "suffix", NULL};
static const char *const known_chat[] = {
    "messages", "max_completion_tokens", "top_logprobs", "tools", "tool_choice",
    "parallel_tool_calls", "add_generation_prompt", "continue_final_message", "chat_template",
    "chat_template_kwargs", "functions", "function_call", NULL};
static const char *const known_tokenize[] = {
    "model", "prompt", "messages", "add_special_tokens", "add_generation_prompt",
    "continue_final_message", "return_token_strs", "tools", "chat_template_kwargs", NULL};
static const char *const known_detokenize[] = {"model", "tokens", NULL};

static int in_list(const char *const *l, const char *k) {
  for (; *l; l++)
    if (!strcmp(*l, k))
      return 1;
  return 0;
}

static void collect_ignored(pl_oai_request *r) {
  const char *k;
  json_t *v;
  size_t used = 0;
  r->ignored[0] = '\0';
  json_object_foreach(r->root, k, v) {
    int known;
    switch (r->kind) {
    case PL_OAI_COMPLETIONS: known = in_list(known_common, k) || in_list(known_completions, k); break;
    case PL_OAI_CHAT: known = in_list(known_common, k) || in_list(known_chat, k); break;
    case PL_OAI_TOKENIZE: known = in_list(known_tokenize, k); break;
    default: known = in_list(known_detokenize, k); break;
    }
    if (known)
      continue;
    int n = snprintf(r->ignored + used, sizeof r->ignored - used, "%s%s", used ? "," : "", k);
    if (n < 0 || (size_t)n >= sizeof r->ignored - used) {
      r->ignored[used] = '\0';
      break;
    }
    used += (size_t)n;
  }
}

/* ---- prompts ----------------------------------------------------------------------------- */

static int parse_ids(json_t *arr, const char *param, int32_t **out, int *n_out, pl_oai_error *err) {
  size_t n = json_array_size(arr);
  if (n == 0)
    return pl_oai_errorf(err, 400, param, "'%s' must not be empty", param);
  if (n > INT_MAX / 4)
    return pl_oai_errorf(err, 400, param, "'%s' is too long", param);
  int32_t *ids = pl_malloc(n * sizeof *ids);
  if (!ids)
    return pl_oai_errorf(err, 500, NULL, "out of memory");
  for (size_t i = 0; i < n; i++) {
    long long x;
    json_t *v = json_array_get(arr, i);
    if (!json_is_integer(v) && !json_is_real(v)) {
      pl_free(ids);
      return pl_oai_errorf(err, 400, param, "'%s' must hold token ids (integers), item %zu is %s",
                           param, i, type_name(v));
    }
    if (int_value(v, 0, INT32_MAX, &x, param, err) < 0) {
      pl_free(ids);
      return PL_EINVAL;
    }
    ids[i] = (int32_t)x;
  }
  *out = ids;
  *n_out = (int)n;
  return 0;
}

static int parse_prompt(pl_oai_request *r, const char *key, pl_oai_error *err) {
  json_t *p = json_object_get(r->root, key);
  if (!p || json_is_null(p))
    return pl_oai_errorf(err, 400, key, "'%s' is required", key);
  size_t n = 1;
  int batch = 0;
  if (json_is_string(p)) {
    n = 1;
  } else if (json_is_array(p)) {
    if (json_array_size(p) == 0)
      return pl_oai_errorf(err, 400, key, "'%s' must not be empty", key);
    json_t *first = json_array_get(p, 0);
    if (json_is_string(first) || json_is_array(first)) {
      batch = 1;
      n = json_array_size(p);
    }
  } else {
    return pl_oai_errorf(err, 400, key,
                         "'%s' must be a string, an array of strings, an array of token ids or "
                         "an array of token id arrays, got %s",
                         key, type_name(p));
  }
  if (r->kind == PL_OAI_DETOKENIZE && (batch || !json_is_array(p)))
    return pl_oai_errorf(err, 400, key, "'%s' must be an array of token ids", key);
  if (batch && r->kind == PL_OAI_TOKENIZE)
    return pl_oai_errorf(err, 400, key, "'%s' must be a string or an array of token ids", key);
  if (n > PL_OAI_MAX_PROMPTS)
    return pl_oai_errorf(err, 400, key, "'%s' holds %zu prompts; at most %d are allowed", key, n,
                         PL_OAI_MAX_PROMPTS);
  r->prompts = pl_calloc(n, sizeof *r->prompts);
  if (!r->prompts)
    return pl_oai_errorf(err, 500, NULL, "out of memory");
  r->n_prompts = (int)n;
  r->prompt_is_batch = batch;
  for (size_t i = 0; i < n; i++) {
    json_t *item = batch ? json_array_get(p, i) : p;
    char param[64];
    if (batch)
      snprintf(param, sizeof param, "%s[%zu]", key, i);
    else
      snprintf(param, sizeof param, "%s", key);
    if (batch && json_typeof(item) != json_typeof(json_array_get(p, 0)))
      return pl_oai_errorf(err, 400, param, "'%s' must be all strings or all token id arrays, "
                           "got %s", key, type_name(item));
    if (json_is_string(item)) {
      r->prompts[i].text = json_string_value(item);
      r->prompts[i].text_len = json_string_length(item);
    } else if (json_is_array(item)) {
      TRY(parse_ids(item, param, &r->prompts[i].ids, &r->prompts[i].n_ids, err));
    } else {
      return pl_oai_errorf(err, 400, param, "'%s' must be all strings or all token id arrays, "
                           "got %s", param, type_name(item));
    }
  }
  return 0;
}

/* ---- chat messages ------------------------------------------------------------------------ */

/* Content given as an array of parts, as one string: text parts are joined with "\n" (what
 * vLLM does for templates that expect a string). */
static int join_content(json_t *c, const char *param, char **out, size_t *out_len,
                        pl_oai_error *err) {
  if (!json_is_array(c))
    return pl_oai_errorf(err, 400, param, "'%s' must be a string or an array of content parts, "
                         "got %s", param, type_name(c));
  pl_strbuf b = {0};
  for (size_t j = 0; j < json_array_size(c); j++) {
    json_t *part = json_array_get(c, j);
    const char *type = json_string_value(json_object_get(part, "type"));
    const char *text = json_string_value(json_object_get(part, "text"));
    if (!json_is_object(part) || !type) {
      pl_strbuf_free(&b);
      return pl_oai_errorf(err, 400, param, "'%s[%zu]' must be an object with a 'type'", param, j);
    }
    if (strcmp(type, "text") != 0) {
      pl_strbuf_free(&b);
      return pl_oai_errorf(err, 400, param, "'%s[%zu]': content type '%s' is not supported "
                           "(only 'text')", param, j, type);
    }
    if (!text) {
      pl_strbuf_free(&b);
      return pl_oai_errorf(err, 400, param, "'%s[%zu].text' must be a string", param, j);
    }
    if ((j && pl_strbuf_puts(&b, "\n") < 0) || pl_strbuf_puts(&b, text) < 0) {
      pl_strbuf_free(&b);
      return pl_oai_errorf(err, 500, NULL, "out of memory");
    }
  }
  *out_len = b.len;
  if (!(*out = pl_strbuf_take(&b)))
    return pl_oai_errorf(err, 500, NULL, "out of memory");
  return 0;
}

static int is_json_null(const pl_chat_field *f) {
  return f->is_json && f->len == 4 && !memcmp(f->val, "null", 4);
}

/* A message's content made a string (or null where the role allows it). */
static int normalize_content(pl_chat_msgs *m, size_t i, const char *role, pl_oai_error *err) {
  char param[64];
  snprintf(param, sizeof param, "messages[%zu].content", i);
  pl_chat_msg *msg = &m->msgs[i];
  pl_chat_field *c = pl_chat_msg_field(msg, "content");
  if (!c || is_json_null(c)) {
    if (strcmp(role, "assistant") != 0)
      return pl_oai_errorf(err, 400, param, "'%s' is required for role '%s'", param, role);
    if (!c) /* added as null (the field array has a spare slot per message) */
      ((pl_chat_field *)msg->fields)[msg->n++] = (pl_chat_field){"content", "null", 4, 1};
    return 0;
  }
  if (!c->is_json)
    return 0;
  json_t *v = NULL;
  int rc = pl_json_loadb(c->val, c->len, JSON_DECODE_ANY, &v, NULL);
  if (rc < 0) /* checked JSON text: only out of memory */
    return pl_oai_errorf(err, 500, NULL, "out of memory");
  char *text = NULL;
  size_t len = 0;
  rc = join_content(v, param, &text, &len, err);
  json_decref(v);
  if (rc < 0)
    return rc;
  if (pl_chat_msgs_own(m, text) < 0)
    return pl_oai_errorf(err, 500, NULL, "out of memory");
  *c = (pl_chat_field){c->key, text, len, 0};
  return 0;
}

/* Message i of the JSON tree as fields: strings borrowed from the tree, other values as their
 * JSON text. */
static int tree_message(pl_chat_msgs *m, size_t i, json_t *msg, pl_oai_error *err) {
  pl_chat_msgs_begin(m, i);
  const char *key;
  json_t *v;
  json_object_foreach(msg, key, v) {
    if (json_is_string(v)) {
      pl_chat_msgs_add_field(m, key, json_string_value(v), json_string_length(v), 0);
      continue;
    }
    size_t flags = JSON_COMPACT | JSON_ENCODE_ANY, n = json_dumpb(v, NULL, 0, flags);
    char *text = n ? pl_malloc(n + 1) : NULL;
    if (!text || json_dumpb(v, text, n, flags) != n) {
      pl_free(text);
      return pl_oai_errorf(err, 500, NULL, "out of memory");
    }
    text[n] = '\0';
    if (pl_chat_msgs_own(m, text) < 0)
      return pl_oai_errorf(err, 500, NULL, "out of memory");
    pl_chat_msgs_add_field(m, key, text, n, 1);
  }
  return 0;
}

/* Deepest nesting of arrays/objects in a JSON text (strings skipped; the text need not be
 * valid: the parser judges that). Stops counting past the limit. */
static int json_depth(const char *p, size_t n) {
  int depth = 0, max = 0, in_str = 0;
  for (size_t i = 0; i < n && max <= PL_OAI_MAX_JSON_DEPTH; i++) {
    char c = p[i];
    if (in_str) {
      if (c == '\\')
        i++;
      else if (c == '"')
        in_str = 0;
    } else if (c == '"') {
      in_str = 1;
    } else if (c == '[' || c == '{') {
      if (++depth > max)
        max = depth;
    } else if ((c == ']' || c == '}') && depth > 0) {
      depth--;
    }
  }
  return max;
}

static int parse_messages(pl_oai_request *r, pl_oai_error *err) {
  static const char *const roles[] = {"system", "developer", "user", "assistant", "tool",
                                      "function", NULL};
  /* Parsed in place already (r->msgs.body), or taken from the JSON tree here. */
  json_t *m = r->msgs.body ? NULL : json_object_get(r->root, "messages");
  size_t n = r->msgs.body ? r->msgs.n : json_array_size(m);
  if (!r->msgs.body) {
    if (!m || json_is_null(m))
      return pl_oai_errorf(err, 400, "messages", "'messages' is required");
    if (!json_is_array(m))
      return pl_oai_errorf(err, 400, "messages", "'messages' must be an array, got %s",
                           type_name(m));
  }
  if (n == 0)
    return pl_oai_errorf(err, 400, "messages", "'messages' must not be empty");
  if (n > PL_OAI_MAX_MESSAGES)
    return pl_oai_errorf(err, 400, "messages", "'messages' has %zu entries; the limit is %d",
                         n, PL_OAI_MAX_MESSAGES);
  if (m) {
    size_t n_fields = 0;
    for (size_t i = 0; i < n; i++)
      n_fields += json_object_size(json_array_get(m, i));
    if (pl_chat_msgs_init(&r->msgs, n, n_fields) < 0)
      return pl_oai_errorf(err, 500, NULL, "out of memory");
  }
  for (size_t i = 0; i < n; i++) {
    char param[64];
    snprintf(param, sizeof param, "messages[%zu]", i);
    if (m) {
      json_t *msg = json_array_get(m, i);
      if (!json_is_object(msg))
        return pl_oai_errorf(err, 400, param, "'%s' must be an object, got %s", param,
                             type_name(msg));
      TRY(tree_message(&r->msgs, i, msg, err));
    }
    pl_chat_field *role_f = pl_chat_msg_field(&r->msgs.msgs[i], "role");
    snprintf(param, sizeof param, "messages[%zu].role", i);
    if (!role_f || role_f->is_json)
      return pl_oai_errorf(err, 400, param, "'%s' must be a string", param);
    const char *role = role_f->val;
    if (!in_list(roles, role))
      return pl_oai_errorf(err, 400, param, "'%s' must be one of system, developer, user, "
                           "assistant, tool; got '%s'", param, role);
    TRY(normalize_content(&r->msgs, i, role, err));
  }
  return 0;
}

static int parse_chat_extras(pl_oai_request *r, pl_oai_error *err) {
  json_t *o = r->root;
  json_t *tools = json_object_get(o, "tools");
  if (tools && !json_is_null(tools)) {
    if (!json_is_array(tools))
      return pl_oai_errorf(err, 400, "tools", "'tools' must be an array, got %s",
                           type_name(tools));
    for (size_t i = 0; i < json_array_size(tools); i++)
      if (!json_is_object(json_array_get(tools, i)))
        return pl_oai_errorf(err, 400, "tools", "'tools[%zu]' must be an object", i);
    r->tools = json_array_size(tools) ? tools : NULL;
  }
  json_t *kw = json_object_get(o, "chat_template_kwargs");
  if (kw && !json_is_null(kw)) {
    if (!json_is_object(kw))
      return pl_oai_errorf(err, 400, "chat_template_kwargs",
                           "'chat_template_kwargs' must be an object, got %s", type_name(kw));
    r->template_kwargs = kw;
  }
  TRY(get_bool(o, "add_generation_prompt", &r->add_generation_prompt, err));
  TRY(get_bool(o, "continue_final_message", &r->continue_final_message, err));
  if (r->add_generation_prompt && r->continue_final_message &&
      json_is_true(json_object_get(o, "add_generation_prompt")))
    return pl_oai_errorf(err, 400, "continue_final_message", "'continue_final_message' and "
                         "'add_generation_prompt' cannot both be true");
  if (r->continue_final_message)
    r->add_generation_prompt = 0;
  return 0;
}

/* ---- sampling ------------------------------------------------------------------------------ */

static int parse_stop(pl_oai_request *r, pl_oai_error *err) {
  json_t *s = json_object_get(r->root, "stop");
  if (!s || json_is_null(s))
    return 0;
  size_t n;
  if (json_is_string(s))
    n = 1;
  else if (json_is_array(s))
    n = json_array_size(s);
  else
    return pl_oai_errorf(err, 400, "stop", "'stop' must be a string or an array of strings, "
                         "got %s", type_name(s));
  if (n > PL_OAI_MAX_STOP)
    return pl_oai_errorf(err, 400, "stop", "'stop' holds %zu strings; at most %d are allowed", n,
                         PL_OAI_MAX_STOP);
  if (n == 0)
    return 0;
  r->stop = pl_calloc(n, sizeof *r->stop);
  if (!r->stop)
    return pl_oai_errorf(err, 500, NULL, "out of memory");
  for (size_t i = 0; i < n; i++) {
    json_t *v = json_is_string(s) ? s : json_array_get(s, i);
    if (!json_is_string(v))
      return pl_oai_errorf(err, 400, "stop", "'stop[%zu]' must be a string, got %s", i,
                           type_name(v));
    size_t len = json_string_length(v);
    if (len == 0 || len > PL_OAI_MAX_STOP_LEN)
      return pl_oai_errorf(err, 400, "stop", "'stop[%zu]' must be 1 to %d bytes long", i,
                           PL_OAI_MAX_STOP_LEN);
    r->stop[i] = json_string_value(v);
  }
  r->sp.stop = r->stop;
  r->sp.n_stop = (int)n;
  return 0;
}

static int parse_stop_ids(pl_oai_request *r, pl_oai_error *err) {
  json_t *s = json_object_get(r->root, "stop_token_ids");
  if (!s || json_is_null(s))
    return 0;
  if (!json_is_array(s))
    return pl_oai_errorf(err, 400, "stop_token_ids", "'stop_token_ids' must be an array of "
                         "integers, got %s", type_name(s));
  size_t n = json_array_size(s);
  if (n > PL_OAI_MAX_STOP_IDS)
    return pl_oai_errorf(err, 400, "stop_token_ids", "'stop_token_ids' is too long");
  if (n == 0)
    return 0;
  TRY(parse_ids(s, "stop_token_ids", &r->stop_ids, &r->sp.n_stop_token_ids, err));
  r->sp.stop_token_ids = r->stop_ids;
  return 0;
}

static int parse_logit_bias(pl_oai_request *r, pl_oai_error *err) {
  json_t *b = json_object_get(r->root, "logit_bias");
  if (!b || json_is_null(b))
    return 0;
  if (!json_is_object(b))
    return pl_oai_errorf(err, 400, "logit_bias", "'logit_bias' must be an object mapping token "
                         "ids to biases, got %s", type_name(b));
  size_t n = json_object_size(b);
  if (n > PL_OAI_MAX_LOGIT_BIAS)
    return pl_oai_errorf(err, 400, "logit_bias", "'logit_bias' has %zu entries; at most %d are "
                         "allowed", n, PL_OAI_MAX_LOGIT_BIAS);
  if (n == 0)
    return 0;
  r->bias_ids = pl_malloc(n * sizeof *r->bias_ids);
  r->bias_vals = pl_malloc(n * sizeof *r->bias_vals);
  if (!r->bias_ids || !r->bias_vals)
    return pl_oai_errorf(err, 500, NULL, "out of memory");
  const char *k;
  json_t *v;
  int i = 0;
  json_object_foreach(b, k, v) {
    char *end;
    long long id = strtoll(k, &end, 10);
    if (!*k || *end || id < 0 || id > INT32_MAX)
      return pl_oai_errorf(err, 400, "logit_bias", "'logit_bias' key '%s' is not a token id", k);
    if (!json_is_number(v))
      return pl_oai_errorf(err, 400, "logit_bias", "'logit_bias[%s]' must be a number, got %s",
                           k, type_name(v));
    double d = json_number_value(v);
    if (d < -100 || d > 100)
      return pl_oai_errorf(err, 400, "logit_bias", "'logit_bias[%s]' must be in [-100, 100], "
                           "got %g", k, d);
    r->bias_ids[i] = (int32_t)id;
    r->bias_vals[i] = (float)d;
    i++;
  }
  r->sp.logit_bias_ids = r->bias_ids;
  r->sp.logit_bias = r->bias_vals;
  r->sp.n_logit_bias = i;
  return 0;
}

/* Fields the engine cannot honour: reject them when set to a non-default value. */
static int reject_unsupported(pl_oai_request *r, pl_oai_error *err) {
  json_t *o = r->root;
  static const char *const must_be_null[] = {
      "suffix", "truncate_prompt_tokens", "chat_template", "functions", "function_call", NULL};
  for (const char *const *k = must_be_null; *k; k++) {
    if (!strcmp(*k, "suffix") && r->kind != PL_OAI_COMPLETIONS)
      continue;
    if ((!strcmp(*k, "chat_template") || !strcmp(*k, "functions") ||
         !strcmp(*k, "function_call")) && r->kind != PL_OAI_CHAT)
      continue;
    json_t *v = json_object_get(o, *k);
    if (v && !json_is_null(v))
      return pl_oai_errorf(err, 400, *k, "'%s' is not supported by this server", *k);
  }
  int b = 0;
  TRY(get_bool(o, "use_beam_search", &b, err));
  if (b)
    return pl_oai_errorf(err, 400, "use_beam_search", "beam search is not supported");
  b = 0;
  TRY(get_bool(o, "include_stop_str_in_output", &b, err));
  if (b)
    return pl_oai_errorf(err, 400, "include_stop_str_in_output",
                         "'include_stop_str_in_output' is not supported");
  b = 1;
  TRY(get_bool(o, "skip_special_tokens", &b, err));
  if (!b)
    return pl_oai_errorf(err, 400, "skip_special_tokens",
                         "'skip_special_tokens': false is not supported");
  TRY(get_bool(o, "spaces_between_special_tokens", &b, err));
  json_t *tc = json_object_get(o, "tool_choice");
  int has_tools = json_array_size(r->tools) > 0;
  r->tool_choice = has_tools ? PL_OAI_TOOLS_AUTO : PL_OAI_TOOLS_NONE;
  if (r->kind == PL_OAI_CHAT && tc && !json_is_null(tc)) {
    const char *t = json_string_value(tc);
    if (t && !strcmp(t, "none")) {
      r->tool_choice = PL_OAI_TOOLS_NONE;
    } else if (t && !strcmp(t, "auto")) {
    } else if (t && !strcmp(t, "required")) {
      r->tool_choice = PL_OAI_TOOLS_REQUIRED;
    } else if (json_is_object(tc) && json_is_string(json_object_get(json_object_get(tc,
                                                                    "function"), "name"))) {
      r->tool_choice = PL_OAI_TOOLS_NAMED;
      r->tool_name = json_string_value(json_object_get(json_object_get(tc, "function"), "name"));
      int found = 0;
      for (size_t i = 0; i < json_array_size(r->tools); i++) {
        const char *n = json_string_value(json_object_get(
            json_object_get(json_array_get(r->tools, i), "function"), "name"));
        found |= n && !strcmp(n, r->tool_name);
      }
      if (!found)
        return pl_oai_errorf(err, 400, "tool_choice", "'tool_choice' names function '%s', "
                             "which is not in 'tools'", r->tool_name);
    } else {
      return pl_oai_errorf(err, 400, "tool_choice", "'tool_choice' must be \"none\", \"auto\", "
                           "\"required\" or {\"type\": \"function\", \"function\": {\"name\": ...}}");
    }
    if (r->tool_choice >= PL_OAI_TOOLS_REQUIRED && !has_tools)
      return pl_oai_errorf(err, 400, "tool_choice", "'tool_choice' requires 'tools'");
  }
  b = 1;
  TRY(get_bool(o, "parallel_tool_calls", &b, err));
  r->parallel_tool_calls = b;
  return 0;
}

/* ---- structured outputs ------------------------------------------------------------------ */

/* One constraint source -> GBNF text in r->grammar. kind: "json", "regex", "choice",
 * "grammar", "json_object". */
static int set_grammar(pl_oai_request *r, const char *param, const char *kind, json_t *v,
                       pl_oai_error *err) {
  if (r->grammar)
    return pl_oai_errorf(err, 400, param, "'%s': only one structured-output constraint may be "
                         "given per request", param);
  pl_gconv_error ce = {{0}};
  char *g = NULL;
  if (!strcmp(kind, "json")) {
    json_t *schema = v;
    if (json_is_string(v)) { /* vLLM accepts the schema as a JSON string */
      json_error_t je;
      int jrc = pl_json_loadb(json_string_value(v), json_string_length(v), 0, &schema, &je);
      if (jrc == PL_ENOMEM) {
        pl_oai_errorf(err, 500, NULL, "out of memory");
        return PL_ENOMEM;
      }
      if (jrc < 0)
        return pl_oai_errorf(err, 400, param, "'%s' is not valid JSON: %s", param, je.text);
    } else if (!json_is_object(v) && !json_is_boolean(v)) {
      return pl_oai_errorf(err, 400, param, "'%s' must be a JSON schema object", param);
    }
    g = pl_json_schema_to_gbnf(schema, &ce);
    if (schema != v)
      json_decref(schema);
  } else if (!strcmp(kind, "json_object")) {
    g = pl_json_object_gbnf();
    snprintf(ce.message, sizeof ce.message, "out of memory");
  } else if (!strcmp(kind, "regex") || !strcmp(kind, "grammar")) {
    if (!json_is_string(v))
      return pl_oai_errorf(err, 400, param, "'%s' must be a string", param);
    g = !strcmp(kind, "regex") ? pl_regex_to_gbnf(json_string_value(v), &ce)
                               : pl_strdup(json_string_value(v));
  } else { /* choice */
    size_t n = json_array_size(v);
    if (!json_is_array(v) || n == 0 || n > 4096)
      return pl_oai_errorf(err, 400, param, "'%s' must be a non-empty array of strings", param);
    const char **c = pl_calloc(n, sizeof *c);
    if (!c)
      return pl_oai_errorf(err, 500, NULL, "out of memory");
    for (size_t i = 0; i < n; i++)
      if (!(c[i] = json_string_value(json_array_get(v, i)))) {
        pl_free(c);
        return pl_oai_errorf(err, 400, param, "'%s[%zu]' must be a string", param, i);
      }
    g = pl_choice_to_gbnf(c, (int)n, &ce);
    pl_free(c);
  }
  if (!g)
    return pl_oai_errorf(err, 400, param, "'%s': %s", param, ce.message);
  /* compile once here so a bad grammar is a 400 naming the line before anything is queued */
  struct pl_grammar *cg;
  if (pl_grammar_compile(g, strlen(g), &cg) < 0) {
    pl_oai_errorf(err, 400, param, "'%s': %s", param, pl_last_error());
    pl_free(g);
    return PL_EINVAL;
  }
  pl_grammar_free(cg);
  r->grammar = g;
  r->sp.grammar = g;
  return 0;
}

static int parse_structured(pl_oai_request *r, pl_oai_error *err) {
  json_t *o = r->root, *v;
  json_t *rf = json_object_get(o, "response_format");
  if (rf && !json_is_null(rf)) {
    const char *t = json_string_value(json_object_get(rf, "type"));
    if (!json_is_object(rf) || !t)
      return pl_oai_errorf(err, 400, "response_format", "'response_format' must be an object "
                           "with a 'type'");
    if (!strcmp(t, "json_object")) {
      TRY(set_grammar(r, "response_format", "json_object", NULL, err));
    } else if (!strcmp(t, "json_schema")) {
      json_t *js = json_object_get(rf, "json_schema");
      json_t *schema = json_object_get(js, "schema");
      if (!json_is_object(js))
        return pl_oai_errorf(err, 400, "response_format.json_schema", "'json_schema' must be "
                             "an object with 'name' and 'schema'");
      if (!schema) /* OpenAI allows a missing schema: any JSON object */
        TRY(set_grammar(r, "response_format.json_schema.schema", "json_object", NULL, err));
      else
        TRY(set_grammar(r, "response_format.json_schema.schema", "json", schema, err));
    } else if (strcmp(t, "text") != 0) {
      return pl_oai_errorf(err, 400, "response_format", "response_format type '%s' is not "
                           "supported (text, json_object or json_schema)", t);
    }
  }
  static const char *const guided[][2] = {{"guided_json", "json"}, {"guided_regex", "regex"},
                                          {"guided_choice", "choice"},
                                          {"guided_grammar", "grammar"}, {"grammar", "grammar"}};
  for (size_t i = 0; i < sizeof guided / sizeof guided[0]; i++)
    if ((v = json_object_get(o, guided[i][0])) && !json_is_null(v))
      TRY(set_grammar(r, guided[i][0], guided[i][1], v, err));
  json_t *so = json_object_get(o, "structured_outputs");
  if (so && !json_is_null(so)) {
    if (!json_is_object(so))
      return pl_oai_errorf(err, 400, "structured_outputs", "'structured_outputs' must be an "
                           "object");
    static const char *const keys[][3] = {
        {"json", "json", "structured_outputs.json"},
        {"regex", "regex", "structured_outputs.regex"},
        {"choice", "choice", "structured_outputs.choice"},
        {"grammar", "grammar", "structured_outputs.grammar"}};
    const char *k;
    json_object_foreach(so, k, v) {
      if (json_is_null(v))
        continue;
      size_t i = 0;
      for (; i < 4 && strcmp(keys[i][0], k) != 0; i++) {}
      if (i < 4) {
        TRY(set_grammar(r, keys[i][2], keys[i][1], v, err));
      } else if (!strcmp(k, "json_object")) {
        if (json_is_true(v))
          TRY(set_grammar(r, "structured_outputs.json_object", "json_object", NULL, err));
      } else {
        return pl_oai_errorf(err, 400, "structured_outputs", "'structured_outputs.%s' is not "
                             "supported (json, regex, choice, grammar, json_object)", k);
      }
    }
  }
  return 0;
}

static int parse_sampling(pl_oai_request *r, pl_oai_error *err) {
  json_t *o = r->root;
  pl_sampling_params *sp = &r->sp;
  double d;
  long long x;
  int rc;

  if ((rc = get_number(o, "temperature", 0, 2, 0, &d, err)) < 0) return rc;
  if (rc) sp->temperature = (float)d;
  if ((rc = get_number(o, "top_p", 0, 1, 1, &d, err)) < 0) return rc;
  if (rc) sp->top_p = (float)d;
  if ((rc = get_int(o, "top_k", -1, INT32_MAX, &x, err)) < 0) return rc;
  if (rc) sp->top_k = x <= 0 ? 0 : (int)x;
  if ((rc = get_number(o, "min_p", 0, 1, 0, &d, err)) < 0) return rc;
  if (rc) sp->min_p = (float)d;
  if ((rc = get_number(o, "repetition_penalty", 0, 10, 1, &d, err)) < 0) return rc;
  if (rc) sp->repetition_penalty = (float)d;
  if ((rc = get_number(o, "presence_penalty", -2, 2, 0, &d, err)) < 0) return rc;
  if (rc) sp->presence_penalty = (float)d;
  if ((rc = get_number(o, "frequency_penalty", -2, 2, 0, &d, err)) < 0) return rc;
  if (rc) sp->frequency_penalty = (float)d;
  if ((rc = get_int(o, "seed", LLONG_MIN, LLONG_MAX, &x, err)) < 0) return rc;
  /* Negative seeds stay reproducible: the engine reserves < 0 for "derive one". */
  if (rc) sp->seed = (int64_t)((uint64_t)x & (uint64_t)INT64_MAX);
  if ((rc = get_int(o, "n", 1, PL_OAI_MAX_N, &x, err)) < 0) return rc;
  r->n = rc ? (int)x : 1;
  sp->n = r->n;
  long long best_of;
  if ((rc = get_int(o, "best_of", 1, PL_OAI_MAX_N, &best_of, err)) < 0) return rc;
  if (rc && best_of != r->n)
    return pl_oai_errorf(err, 400, "best_of", "'best_of' must equal 'n' (best-of sampling is "
                         "not supported)");
  if ((rc = get_int(o, "priority", INT32_MIN, INT32_MAX, &x, err)) < 0) return rc;
  if (rc) sp->priority = (int)x;
  TRY(get_bool(o, "ignore_eos", &sp->ignore_eos, err));

  /* max_tokens: chat prefers max_completion_tokens (max_tokens is its deprecated alias). */
  r->max_tokens = -1;
  if ((rc = get_int(o, "max_tokens", 1, INT32_MAX, &x, err)) < 0) return rc;
  if (rc) r->max_tokens = (int)x;
  if (r->kind == PL_OAI_CHAT) {
    if ((rc = get_int(o, "max_completion_tokens", 1, INT32_MAX, &x, err)) < 0) return rc;
    if (rc) r->max_tokens = (int)x;
  }
  if ((rc = get_int(o, "min_tokens", 0, INT32_MAX, &x, err)) < 0) return rc;
  if (rc) {
    if (r->max_tokens > 0 && x > r->max_tokens)
      return pl_oai_errorf(err, 400, "min_tokens", "'min_tokens' (%lld) must not exceed "
                           "'max_tokens' (%d)", x, r->max_tokens);
    sp->min_tokens = (int)x;
  }

  /* logprobs: an integer for completions, a boolean (+ top_logprobs) for chat. */
  r->logprobs = -1;
  if (r->kind == PL_OAI_COMPLETIONS) {
    if ((rc = get_int(o, "logprobs", 0, PL_OAI_MAX_LOGPROBS, &x, err)) < 0) return rc;
    if (rc) r->logprobs = (int)x;
  } else {
    int want = 0;
    TRY(get_bool(o, "logprobs", &want, err));
    if ((rc = get_int(o, "top_logprobs", 0, PL_OAI_MAX_LOGPROBS, &x, err)) < 0) return rc;
    if (rc && !want)
      return pl_oai_errorf(err, 400, "top_logprobs", "'top_logprobs' requires 'logprobs' to be "
                           "true");
    if (want)
      r->logprobs = rc ? (int)x : 0;
  }
  sp->logprobs = r->logprobs;

  TRY(parse_stop(r, err));
  TRY(parse_stop_ids(r, err));
  TRY(parse_logit_bias(r, err));
  TRY(get_string(o, "user", &r->user, err));
  TRY(parse_structured(r, err));

  TRY(get_bool(o, "stream", &r->stream, err));
  json_t *so = json_object_get(o, "stream_options");
  if (so && !json_is_null(so)) {
    if (!r->stream)
      return pl_oai_errorf(err, 400, "stream_options", "'stream_options' is only allowed when "
                           "'stream' is true");
    if (!json_is_object(so))
      return pl_oai_errorf(err, 400, "stream_options", "'stream_options' must be an object, "
                           "got %s", type_name(so));
    TRY(get_bool(so, "include_usage", &r->include_usage, err));
    TRY(get_bool(so, "continuous_usage_stats", &r->continuous_usage, err));
  }
  if (r->kind == PL_OAI_COMPLETIONS) {
    TRY(get_bool(o, "echo", &r->echo, err));
    if (r->echo && r->logprobs >= 0)
      return pl_oai_errorf(err, 400, "echo", "'echo' together with 'logprobs' is not supported "
                           "(prompt logprobs are not computed)");
  }
  return 0;
}

/* ---- entry points ---------------------------------------------------------------------- */

static int parse_body(pl_oai_request *r, pl_oai_error *err) {
  json_t *o = r->root;
  TRY(get_string(o, "model", &r->model, err));
  TRY(get_bool(o, "add_special_tokens", &r->add_special_tokens, err));
  switch (r->kind) {
  case PL_OAI_COMPLETIONS:
    TRY(parse_prompt(r, "prompt", err));
    TRY(reject_unsupported(r, err));
    TRY(parse_sampling(r, err));
    if ((long long)r->n * r->n_prompts > PL_OAI_MAX_N)
      return pl_oai_errorf(err, 400, "n", "%d prompts x n=%d exceeds %d choices", r->n_prompts,
                           r->n, PL_OAI_MAX_N);
    return 0;
  case PL_OAI_CHAT:
    TRY(parse_messages(r, err));
    TRY(parse_chat_extras(r, err));
    TRY(reject_unsupported(r, err));
    return parse_sampling(r, err);
  case PL_OAI_TOKENIZE: {
    json_t *p = json_object_get(o, "prompt"), *m = json_object_get(o, "messages");
    int has_p = p && !json_is_null(p), has_m = m && !json_is_null(m);
    if (has_p == has_m)
      return pl_oai_errorf(err, 400, has_p ? "messages" : "prompt",
                           "exactly one of 'prompt' or 'messages' is required");
    TRY(get_bool(o, "return_token_strs", &r->return_token_strs, err));
    if (has_p)
      return parse_prompt(r, "prompt", err);
    TRY(parse_messages(r, err));
    return parse_chat_extras(r, err);
  }
  case PL_OAI_DETOKENIZE: {
    json_t *t = json_object_get(o, "tokens");
    if (!t || json_is_null(t))
      return pl_oai_errorf(err, 400, "tokens", "'tokens' is required");
    if (!json_is_array(t))
      return pl_oai_errorf(err, 400, "tokens", "'tokens' must be an array of token ids, got %s",
                           type_name(t));
    r->prompts = pl_calloc(1, sizeof *r->prompts);
    if (!r->prompts)
      return pl_oai_errorf(err, 500, NULL, "out of memory");
    r->n_prompts = 1;
    if (json_array_size(t) == 0)
      return 0; /* detokenizing nothing yields "" */
    return parse_ids(t, "tokens", &r->prompts[0].ids, &r->prompts[0].n_ids, err);
  }
  }
  return pl_oai_errorf(err, 500, NULL, "unknown request kind");
}

/* A chat's messages parsed in place (chat_msgs.h) and the rest of the body by jansson: 1 done,
 * 0 not taken (the caller parses the whole body with jansson), PL_ENOMEM. own: body itself
 * when the caller gives it up (the messages then point into it), else NULL (a copy of the
 * messages' text is made). */
static int parse_inplace(const char *body, size_t len, char *own, pl_oai_request *req,
                         pl_oai_error *err) {
  size_t vs, ve;
  if (pl_chat_msgs_find(body, len, &vs, &ve) < 0)
    return 0;
  json_error_t jerr;
  int rc = pl_json_loadb_replacing(body, len, vs, ve, "[]", JSON_REJECT_DUPLICATES, &req->root,
                                   &jerr);
  if (rc == PL_EINVAL)
    return 0; /* jansson's own parse of the body names the error */
  char *text = own ? own + vs : NULL;
  if (rc == 0 && !own && (text = pl_malloc(ve - vs + 1)))
    memcpy(text, body + vs, ve - vs);
  if (rc == 0 && text)
    rc = pl_chat_msgs_parse_inplace(text, ve - vs, &req->msgs);
  else if (rc == 0)
    rc = PL_ENOMEM;
  if (rc == 0) {
    req->msgs.body = own ? own : text;
    return 1;
  }
  if (!own)
    pl_free(text);
  json_decref(req->root);
  req->root = NULL;
  if (rc == PL_ENOMEM) {
    pl_oai_errorf(err, 500, NULL, "out of memory");
    return PL_ENOMEM;
  }
  return 0; /* not taken: the body is untouched */
}

static int parse_(pl_oai_kind kind, const char *body, size_t len, char *own,
                  pl_oai_request *req, pl_oai_error *err) {
  memset(req, 0, sizeof *req);
  memset(err, 0, sizeof *err);
  req->kind = kind;
  req->add_special_tokens = -1;
  req->add_generation_prompt = 1;
  req->n = 1;
  req->max_tokens = -1;
  req->logprobs = -1;
  pl_sampling_params_default(&req->sp);
  if (len == 0) {
    pl_free(own);
    pl_oai_errorf(err, 400, NULL, "the request body is empty; a JSON object is required");
    return PL_EINVAL;
  }
  int depth = json_depth(body, len);
  if (depth > PL_OAI_MAX_JSON_DEPTH) {
    pl_free(own);
    pl_oai_errorf(err, 400, NULL, "the JSON body nests arrays and objects %d deep; the limit is "
                  "%d", depth, PL_OAI_MAX_JSON_DEPTH);
    return PL_EINVAL;
  }
  json_error_t jerr;
  /* jansson rejects invalid UTF-8, lone surrogates and \u0000, so every string below is valid
   * NUL-free UTF-8. Duplicate keys are refused, as the OpenAI API does. */
  long failures0 = pl_alloc_thread_failures();
  int prc = 0;
  if (kind == PL_OAI_CHAT || kind == PL_OAI_TOKENIZE)
    prc = parse_inplace(body, len, own, req, err);
  if (prc == 1)
    own = NULL; /* req->msgs holds it */
  else if (prc == 0)
    prc = pl_json_loadb(body, len, JSON_REJECT_DUPLICATES, &req->root, &jerr);
  pl_free(own); /* parsed (or not) by jansson: nothing points into it */
  if (prc == PL_ENOMEM) {
    pl_oai_request_free(req);
    pl_oai_errorf(err, 500, NULL, "out of memory");
    return PL_ENOMEM; /* our failure, never the client's */
  }
  if (prc < 0) {
    pl_oai_errorf(err, 400, NULL, "invalid JSON body: %s (line %d, column %d)", jerr.text,
                  jerr.line, jerr.column);
    return PL_EINVAL;
  }
  if (!json_is_object(req->root)) {
    pl_oai_errorf(err, 400, NULL, "the request body must be a JSON object, got %s",
                  type_name(req->root));
    pl_oai_request_free(req);
    return PL_EINVAL;
  }
  collect_ignored(req);
  int rc = parse_body(req, err);
  if (pl_alloc_thread_failures() != failures0) {
    /* Some jansson calls (json_copy, json_object_set) fail silently and leave a partial
     * value: any failed allocation voids the verdict, whatever it was. */
    pl_oai_errorf(err, 500, NULL, "out of memory");
    rc = PL_ENOMEM;
  }
  if (rc < 0) {
    pl_oai_request_free(req);
    return rc;
  }
  return 0;
}

int pl_oai_parse(pl_oai_kind kind, const char *body, size_t len, pl_oai_request *req,
                 pl_oai_error *err) {
  return parse_(kind, body, len, NULL, req, err);
}

int pl_oai_parse_owned(pl_oai_kind kind, char *body, size_t len, pl_oai_request *req,
                       pl_oai_error *err) {
  return parse_(kind, body, len, body, req, err);
}

void pl_oai_request_free(pl_oai_request *req) {
  for (int i = 0; i < req->n_prompts; i++)
    pl_free(req->prompts[i].ids);
  pl_free(req->prompts);
  pl_free(req->stop);
  pl_free(req->stop_ids);
  pl_free(req->bias_ids);
  pl_free(req->bias_vals);
  pl_free(req->grammar);
  pl_chat_msgs_free(&req->msgs);
  if (req->root)
    json_decref(req->root);
  memset(req, 0, sizeof *req);
}

void pl_oai_request_drop_messages(pl_oai_request *req) {
  pl_chat_msgs_free(&req->msgs);
  if (req->root) /* frees without allocating */
    json_object_del(req->root, "messages");
}

int pl_oai_check_token_ids(const pl_oai_request *req, int vocab_size, pl_oai_error *err) {
  for (int p = 0; p < req->n_prompts; p++)
    for (int i = 0; i < req->prompts[p].n_ids; i++)
      if (req->prompts[p].ids[i] >= vocab_size) {
        const char *key = req->kind == PL_OAI_DETOKENIZE ? "tokens" : "prompt";
        return pl_oai_errorf(err, 400, key, "token id %d in '%s' is out of range (vocabulary "
                             "size %d)", req->prompts[p].ids[i], key, vocab_size);
      }
  for (int i = 0; i < req->sp.n_stop_token_ids; i++)
    if (req->stop_ids[i] >= vocab_size)
      return pl_oai_errorf(err, 400, "stop_token_ids", "token id %d in 'stop_token_ids' is out "
                           "of range (vocabulary size %d)", req->stop_ids[i], vocab_size);
  for (int i = 0; i < req->sp.n_logit_bias; i++)
    if (req->bias_ids[i] >= vocab_size)
      return pl_oai_errorf(err, 400, "logit_bias", "token id %d in 'logit_bias' is out of range "
                           "(vocabulary size %d)", req->bias_ids[i], vocab_size);
  return 0;
}

int pl_oai_resolve_max_tokens(const pl_oai_request *req, int n_prompt, int max_model_len,
                              pl_oai_error *err) {
  const char *what = req->kind == PL_OAI_CHAT ? "messages" : "prompt";
  if (n_prompt <= 0)
    return pl_oai_errorf(err, 400, what, "the %s is empty after tokenization", what);
  if (n_prompt >= max_model_len) {
    pl_oai_errorf(err, 400, what, "This model's maximum context length is %d tokens. However, "
                  "your %s is %d tokens long, which leaves no room for a completion.",
                  max_model_len, what, n_prompt);
    err->code = "context_length_exceeded";
    return PL_ETOOLONG;
  }
  int room = max_model_len - n_prompt;
  int mt = req->max_tokens;
  if (mt < 0) /* not given: chat gets the rest of the context, completions 16 (OpenAI) */
    mt = req->kind == PL_OAI_CHAT || room < 16 ? room : 16;
  if (mt > room) {
    const char *param = req->kind == PL_OAI_CHAT && json_object_get(req->root,
                                                                    "max_completion_tokens")
                            ? "max_completion_tokens"
                            : "max_tokens";
    pl_oai_errorf(err, 400, param, "This model's maximum context length is %d tokens. However, "
                  "you requested %lld tokens (%d in the %s, %d in the completion). Please "
                  "reduce the length of the %s or completion.", max_model_len,
                  (long long)n_prompt + mt, n_prompt, what, mt, what);
    err->code = "context_length_exceeded";
    return PL_ETOOLONG;
  }
  if (req->sp.min_tokens > mt)
    return pl_oai_errorf(err, 400, "min_tokens", "'min_tokens' (%d) exceeds the completion "
                         "budget (%d)", req->sp.min_tokens, mt);
  return mt;
}
