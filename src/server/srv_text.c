/* Text services for the server (see srv_text.h): thin wrappers over the engine's tokenizer
 * and chat template that keep the server's files free of model details. */
#include "server/srv_text.h"

#include <string.h>

#include "engine/engine_access.h"
#include "tokenizer/tokenizer.h"
#include "util/alloc.h"
#include "util/array.h"
#include "util/error.h"

#define PL_SRV_TOKENIZE_RESERVE_MIN (256 * 1024) /* shorter texts grow their ids as usual */

int pl_srv_tokenize(const pl_engine *e, const char *text, size_t len, int add_special,
                    int32_t **ids, int *n) {
  pl_token_buf b = {0};
  /* Room for the ids up front: growing by doubling copies a long prompt's ids (old and new
   * array at once). Text runs 3-4 bytes a token, so len / 2 is generous; a large block is
   * mapped on demand, so pages never written cost no memory. More tokens still grow it. */
  if (len >= PL_SRV_TOKENIZE_RESERVE_MIN &&
      pl_array_grow(&b.ids, &b.cap, len / 2 + 16, sizeof *b.ids, 1))
    return pl_fail(PL_ENOMEM, "out of memory");
  int rc = pl_tokenizer_encode(pl_engine_tokenizer(e), text, len, add_special, 1, &b);
  if (rc < 0) {
    pl_token_buf_free(&b);
    return rc;
  }
  if (b.n > (size_t)INT32_MAX) {
    pl_token_buf_free(&b);
    return pl_fail(PL_ETOOLONG, "text too long");
  }
  if (!b.ids) { /* zero tokens: still hand back an allocation */
    b.ids = pl_malloc(sizeof(int32_t));
    if (!b.ids)
      return pl_fail(PL_ENOMEM, "out of memory");
  }
  *ids = b.ids;
  *n = (int)b.n;
  return 0;
}

int pl_srv_detokenize(const pl_engine *e, const int32_t *ids, int n, char **text, size_t *len) {
  if (n <= 0) {
    *text = pl_strdup("");
    *len = 0;
    return *text ? 0 : pl_fail(PL_ENOMEM, "out of memory");
  }
  return pl_tokenizer_decode(pl_engine_tokenizer(e), ids, (size_t)n, PL_DECODE_STRIP_SPACE, text,
                             len);
}

const char *pl_srv_token_bytes(void *engine, int32_t id, size_t *len) {
  return pl_tokenizer_piece(pl_engine_tokenizer(engine), id, len);
}

const char *pl_srv_token_text(const pl_engine *e, int32_t id, size_t *len) {
  return pl_tokenizer_token_text(pl_engine_tokenizer(e), id, len);
}

int pl_srv_vocab_size(const pl_engine *e) { return pl_tokenizer_n_vocab(pl_engine_tokenizer(e)); }

int pl_srv_has_chat_template(const pl_engine *e) { return pl_engine_chat_template(e) != NULL; }

/* v as compact JSON text for the engine's API (pl_malloc'd; NULL for NULL). JSON stops at the
 * server: the engine takes text. */
static int json_text(const json_t *v, char **out) {
  *out = NULL;
  if (!v)
    return 0;
  size_t flags = JSON_COMPACT | JSON_ENCODE_ANY, n = json_dumpb(v, NULL, 0, flags);
  if (!n || !(*out = pl_malloc(n + 1)))
    return pl_fail(PL_ENOMEM, "out of memory");
  if (json_dumpb(v, *out, n, flags) != n) {
    pl_free(*out);
    *out = NULL;
    return pl_fail(PL_ENOMEM, "out of memory");
  }
  (*out)[n] = '\0';
  return 0;
}

int pl_srv_render_chat(const pl_engine *e, const pl_oai_request *req, size_t max_text,
                       char **out, size_t *len) {
  if (!pl_engine_chat_template(e))
    return pl_fail(PL_EUNSUPPORTED, "the model has no chat template");
  size_t n = 0;
  char *tools = NULL, *kwargs = NULL;
  int rc = json_text(req->tools, &tools);
  if (rc == 0)
    rc = json_text(req->template_kwargs, &kwargs);
  if (rc == 0)
    rc = pl_engine_render_chat(e, req->msgs.msgs, req->msgs.n, tools, kwargs,
                               req->add_generation_prompt,
                               req->continue_final_message ? 0 : max_text, out, &n);
  pl_free(tools);
  pl_free(kwargs);
  PL_TRY(rc);
  if (req->continue_final_message) {
    /* Like vLLM: render without a generation prompt, then cut everything after the final
     * message's content so the model continues that message. */
    size_t m = req->msgs.n;
    const pl_chat_field *c = m ? pl_chat_msg_field(&req->msgs.msgs[m - 1], "content") : NULL;
    const char *last = c && !c->is_json ? c->val : NULL;
    size_t ll = last ? c->len : 0;
    if (ll && ll <= n) {
      for (size_t i = n - ll + 1; i-- > 0;) {
        if (!memcmp(*out + i, last, ll)) {
          n = i + ll;
          (*out)[n] = '\0';
          break;
        }
      }
    }
  }
  if (len)
    *len = n;
  return 0;
}
