/* The engine's text side: the tokenizer (GGUF metadata or the HF tokenizer.json beside a
 * safetensors model), end-of-generation ids, BOS/EOS text and the chat template. */
#include <jansson.h>
#include <string.h>

#include "engine/engine_impl.h"
#include "template/chat_template.h"
#include "tokenizer/tokenizer.h"
#include "util/alloc.h"
#include "util/error.h"
#include "util/log.h"

int pl_engine_load_text(pl_engine *e) {
  int rc = e->model->gguf ? pl_tokenizer_load_gguf(e->model->gguf, &e->tok)
                          : pl_tokenizer_load_hf(e->model->hf_dir, &e->tok);
  if (rc < 0)
    return pl_fail_prefix(rc, "tokenizer");
  if (pl_tokenizer_n_vocab(e->tok) > e->model->hp.n_vocab)
    return pl_fail(PL_EFORMAT, "%s: tokenizer has %d tokens but the model only %d embeddings",
                   e->model->path, pl_tokenizer_n_vocab(e->tok), e->model->hp.n_vocab);
  e->eog_ids = pl_tokenizer_eog_ids(e->tok, &e->n_eog);
  e->bos_text = pl_strdup(pl_tokenizer_bos_text(e->tok) ? pl_tokenizer_bos_text(e->tok) : "");
  e->eos_text = pl_strdup(pl_tokenizer_eos_text(e->tok) ? pl_tokenizer_eos_text(e->tok) : "");
  if (!e->bos_text || !e->eos_text)
    return pl_fail(PL_ENOMEM, "out of memory");
  const char *src = e->p.chat_template ? e->p.chat_template : pl_tokenizer_chat_template(e->tok);
  if (src && *src) {
    rc = pl_chat_template_parse(src, &e->tmpl);
    if (rc < 0) {
      if (e->p.chat_template)
        return pl_fail_prefix(rc, "chat template");
      /* the model's own template: chat is unavailable, completions still work */
      PL_WARN("the model's chat template cannot be used (%s); chat requests will be refused "
              "unless --chat-template gives one", pl_last_error());
      e->tmpl = NULL;
    }
  }
  return 0;
}

void pl_engine_unload_text(pl_engine *e) {
  pl_chat_template_free(e->tmpl);
  pl_tokenizer_free(e->tok);
  pl_free(e->bos_text);
  pl_free(e->eos_text);
}

/* JSON text given through the engine's API, as a value for the template (NULL when text is
 * NULL). */
static int parse_arg(const char *text, const char *what, json_t **out) {
  *out = NULL;
  if (!text)
    return 0;
  json_error_t je;
  pl_alloc_soft_begin(); /* jansson's lexer cannot survive a failed allocation (alloc.h) */
  *out = json_loads(text, JSON_DECODE_ANY, &je);
  pl_alloc_soft_end();
  if (!*out)
    return json_error_code(&je) == json_error_out_of_memory
               ? pl_fail(PL_ENOMEM, "out of memory")
               : pl_fail(PL_EINVAL, "%s is not valid JSON: %s", what, je.text);
  return 0;
}

int pl_engine_render_chat(const pl_engine *e, const pl_chat_msg *msgs, size_t n_msgs,
                          const char *tools_json, const char *kwargs_json,
                          int add_generation_prompt, size_t max_text, char **out,
                          size_t *out_len) {
  *out = NULL;
  if (!e->tmpl)
    return pl_fail(PL_ENOTFOUND,
                   "this model has no usable chat template; start the server with "
                   "--chat-template FILE (or use /v1/completions)");
  json_t *tools = NULL, *extra = NULL;
  int rc = parse_arg(tools_json, "tools", &tools);
  if (rc == 0)
    rc = parse_arg(kwargs_json, "chat template variables", &extra);
  if (rc == 0) {
    pl_chat_render_params rp;
    pl_chat_render_params_default(&rp);
    rp.msgs = msgs;
    rp.n_msgs = n_msgs;
    rp.tools = tools;
    rp.extra = extra;
    rp.add_generation_prompt = add_generation_prompt;
    rp.max_text = max_text;
    /* a vocabulary without BOS/EOS text leaves them undefined for the template */
    rp.bos_token = e->bos_text[0] ? e->bos_text : NULL;
    rp.eos_token = e->eos_text[0] ? e->eos_text : NULL;
    rc = pl_chat_template_render(e->tmpl, &rp, out, out_len);
  }
  json_decref(tools);
  json_decref(extra);
  return rc;
}
