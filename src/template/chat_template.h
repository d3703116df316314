/* Chat templates: turn an OpenAI/Hugging Face style conversation (messages, tools) into the
 * prompt text a model expects, by rendering the model's Jinja chat template exactly as
 * transformers' apply_chat_template does (see model/jinja.h for the environment).
 * A template is parsed once and may then be rendered from several threads at once.
 *
 * The model's template comes from GGUF metadata `tokenizer.chat_template` (a string) or from
 * tokenizer_config.json `chat_template`; two built-in templates ("chatml", "llama3") exist for
 * models without one, used only when asked for by name. */
#ifndef PL_MODEL_CHAT_TEMPLATE_H
#define PL_MODEL_CHAT_TEMPLATE_H
#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "template/chat_msg.h"

typedef struct pl_chat_template pl_chat_template;

/* Parse a template (NUL-terminated Jinja text). Errors: PL_ETEMPLATE with a message naming the
 * line and the construct (e.g. "template line 3: unsupported tag 'include'"), PL_EINVAL,
 * PL_ENOMEM. On error *out is NULL. */
int pl_chat_template_parse(const char *src, pl_chat_template **out);

/* A built-in template by name: "chatml" (<|im_start|>role\ncontent<|im_end|>\n) or "llama3"
 * (Llama-3 header/eot format, starting with bos_token). PL_ENOTFOUND for another name. */
int pl_chat_template_builtin(const char *name, pl_chat_template **out);
/* The Jinja source of a built-in template, or NULL. */
const char *pl_chat_template_builtin_source(const char *name);

void pl_chat_template_free(pl_chat_template *t); /* NULL ok */

typedef struct pl_chat_render_params {
  const json_t *messages;    /* array of message objects; or NULL and msgs below */
  const pl_chat_msg *msgs;   /* the messages as C arrays (when messages is NULL) */
  size_t n_msgs;
  const json_t *tools;       /* array of OpenAI tool schemas, or NULL (the template sees None) */
  const json_t *documents;   /* or NULL (None) */
  int add_generation_prompt; /* append the assistant turn header */
  const char *bos_token;     /* special token text; NULL = not defined for the template */
  const char *eos_token;
  const json_t *extra;       /* object of further variables (enable_thinking, pad_token, ...),
                                or NULL; bos/eos/messages/... above take precedence */
  int keep_string_arguments; /* 0: the OpenAI form is made the HF form first, as vLLM does: a
                                tool call's function.arguments given as a JSON string is parsed
                                into an object (templates apply tojson to it; llama.cpp does
                                this too) and content null becomes ""; 1: messages as given */
  int64_t now;               /* strftime_now(): 0 = current local time; else this Unix time,
                                formatted as UTC (tests use 1721952000 = 2024-07-26 00:00:00) */
  size_t max_output;         /* 0 = 64 MiB */
  size_t max_text;           /* pl_jinja_render_opts.max_text: 0 = none; over it PL_ETOOLONG */
} pl_chat_render_params;

void pl_chat_render_params_default(pl_chat_render_params *p); /* zeroes; generation prompt on */

/* Render to a pl_malloc'd NUL-terminated string (*out_len may be NULL). Errors: PL_EINVAL (bad
 * params), PL_ETEMPLATE (the template failed: raise_exception gives the template's own message,
 * e.g. "System role not supported"; other errors name the line), PL_ETOOLONG (the text passed
 * max_text), PL_ENOMEM. */
int pl_chat_template_render(const pl_chat_template *t, const pl_chat_render_params *p,
                            char **out, size_t *out_len);
#endif
