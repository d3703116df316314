/* The Jinja interpreter's entry points: parse a template once, render it many times with a set
 * of JSON variables. The environment matches Hugging Face transformers' chat-template setup:
 * ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True) with loopcontrols and the
 * {% generation %} tag, HF's `tojson`, and the globals raise_exception and strftime_now.
 * Invariants: a parsed template is immutable, so any number of threads may render it at once;
 * each render owns its memory and frees it before returning; every render is bounded in output
 * size, memory, steps and recursion, and ends in PL_ETEMPLATE (message "template line N: ...")
 * rather than crashing. */
#ifndef PL_MODEL_JINJA_H
#define PL_MODEL_JINJA_H
#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "template/chat_msg.h"

typedef struct pl_jinja_template pl_jinja_template;

/* Parse `len` bytes of template text. Errors: PL_ETEMPLATE naming the line and the construct
 * (unknown tag/filter/test, syntax error), PL_ENOMEM. */
int pl_jinja_template_parse(const char *src, size_t len, pl_jinja_template **out);
void pl_jinja_template_free(pl_jinja_template *t); /* NULL ok */

/* A dict given as C arrays rather than JSON, for values held outside jansson (a chat's
 * messages borrowed from the request body): a chat message's shape (chat_msg.h). Strings are
 * borrowed for the render; JSON text is parsed. */
typedef pl_chat_field pl_jinja_field;
typedef pl_chat_msg pl_jinja_dict;

typedef struct pl_jinja_render_opts {
  const json_t *vars;  /* object: variable name -> value (NULL = none) */
  const char *list_name;     /* with list: one more variable, a list of dicts (after vars) */
  const pl_jinja_dict *list;
  size_t list_n;
  int64_t now;         /* strftime_now clock: 0 = current local time, else Unix time as UTC */
  size_t max_output;   /* bytes of output and of any one string; 0 = 64 MiB */
  size_t max_text;     /* bytes of the rendered text alone, when below max_output (0 = none);
                          past it the render stops with PL_ETOOLONG: a caller that refuses
                          texts over a size never holds more than that of one */
  size_t max_memory;   /* working memory of one render; 0 = 512 MiB */
  uint64_t max_steps;  /* evaluated nodes; 0 = 20 million */
  int max_depth;       /* evaluator recursion; 0 = 1000 */
  int max_calls;       /* macro call nesting; 0 = 100 */
} pl_jinja_render_opts;

/* Render into a pl_malloc'd, NUL-terminated string (*out_len excludes the NUL; may be NULL).
 * On error *out is NULL and the status is PL_ETEMPLATE (template error, raise_exception,
 * limits; raise_exception's message is the template's text verbatim), PL_ETOOLONG (the text
 * passed max_text), PL_ENOMEM or PL_EINVAL. */
int pl_jinja_render(const pl_jinja_template *t, const pl_jinja_render_opts *o, char **out,
                    size_t *out_len);
#endif
