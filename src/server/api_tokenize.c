/* POST /tokenize and /detokenize in vLLM's shapes:
 *   /tokenize   {"prompt": "text"} or {"messages": [...], "add_generation_prompt": true}
 *               -> {"count": n, "max_model_len": L, "tokens": [...], "token_strs": null|[...]}
 *   /detokenize {"tokens": [...]} -> {"prompt": "text"}
 * A text prompt gets BOS as the model says unless add_special_tokens is false; a chat prompt
 * is rendered by the template and tokenized without adding special tokens (like chat
 * completions), so the ids match what generation would see. */
#include <microhttpd.h>
#include <string.h>

#include "engine/engine_access.h"
#include "server/openai_resp.h"
#include "server/server_impl.h"
#include "server/srv_text.h"
#include "util/alloc.h"
#include "util/error.h"

/* The answer to a tokenize request (NULL on a failed allocation). */
static json_t *tokenize_json(pl_engine *e, const pl_oai_request *req, const int32_t *ids,
                             int n) {
  json_t *tokens = json_array(), *strs = req->return_token_strs ? json_array() : json_null();
  int ok = tokens && strs;
  for (int i = 0; i < n && ok; i++) {
    /* append_new takes its value even when it fails: nothing to free here */
    ok = json_array_append_new(tokens, json_integer(ids[i])) == 0;
    if (ok && req->return_token_strs) {
      size_t len = 0;
      const char *t = pl_srv_token_text(e, ids[i], &len);
      ok = json_array_append_new(strs, pl_oai_lossy_string(t ? t : "", t ? len : 0)) == 0;
    }
  }
  if (!ok) {
    json_decref(tokens);
    json_decref(strs);
    return NULL;
  }
  /* "o" takes tokens and strs whether or not the pack succeeds */
  return json_pack("{s:i,s:i,s:o,s:o}", "count", n, "max_model_len",
                   pl_engine_max_model_len(e), "tokens", tokens, "token_strs", strs);
}

static int tokenize_(pl_server *s, struct MHD_Connection *c, pl_http_req *h, pl_oai_error *err,
                     json_t **v) {
  pl_oai_request req;
  if (pl_oai_parse(PL_OAI_TOKENIZE, h->body.data, h->body.len, &req, err) < 0)
    return PL_EINVAL;
  pl_engine *e = s->engine;
  int32_t *ids = NULL;
  int n = 0, owned = 0, rc = 0;
  if ((rc = pl_api_check_model(s, &req, err)) < 0 ||
      (rc = pl_oai_check_token_ids(&req, pl_srv_vocab_size(e), err)) < 0)
    goto out;
  if (req.msgs.msgs) {
    if (!pl_srv_has_chat_template(e)) {
      pl_oai_errorf(err, 400, NULL, "This model has no chat template; start the server with "
                    "--chat-template FILE to tokenize messages.");
      err->code = "chat_template_missing";
      rc = PL_EINVAL;
      goto out;
    }
    char *text = NULL;
    size_t len = 0;
    rc = pl_srv_render_chat(e, &req, 0, &text, &len);
    if (rc == PL_ENOMEM) {
      pl_oai_errorf(err, 500, NULL, "out of memory");
      goto out;
    }
    if (rc < 0) {
      pl_oai_errorf(err, 400, "messages", "the chat template failed on these messages: %s",
                    pl_last_error());
      goto out;
    }
    pl_oai_request_drop_messages(&req); /* rendered: not held while tokenizing */
    rc = pl_srv_tokenize(e, text, len, req.add_special_tokens == 1, &ids, &n);
    pl_free(text);
    owned = 1;
  } else if (req.prompts[0].text) {
    rc = pl_srv_tokenize(e, req.prompts[0].text, req.prompts[0].text_len,
                         req.add_special_tokens != 0, &ids, &n);
    owned = 1;
  } else {
    ids = req.prompts[0].ids;
    n = req.prompts[0].n_ids;
  }
  if (rc < 0) {
    pl_oai_errorf(err, 500, NULL, "tokenization failed: %s", pl_last_error());
    goto out;
  }
  *v = tokenize_json(e, &req, ids, n);
  if (!*v) {
    pl_oai_errorf(err, 500, NULL, "out of memory");
    rc = PL_ENOMEM;
  }
out:
  if (owned)
    pl_free(ids);
  pl_oai_request_free(&req);
  return rc;
}

static int detokenize_(pl_server *s, struct MHD_Connection *c, pl_http_req *h, pl_oai_error *err,
                       json_t **v) {
  pl_oai_request req;
  if (pl_oai_parse(PL_OAI_DETOKENIZE, h->body.data, h->body.len, &req, err) < 0)
    return PL_EINVAL;
  int rc;
  if ((rc = pl_api_check_model(s, &req, err)) < 0 ||
      (rc = pl_oai_check_token_ids(&req, pl_srv_vocab_size(s->engine), err)) < 0) {
    pl_oai_request_free(&req);
    return rc;
  }
  char *text = NULL;
  size_t len = 0;
  rc = pl_srv_detokenize(s->engine, req.prompts[0].ids, req.prompts[0].n_ids, &text, &len);
  pl_oai_request_free(&req);
  if (rc < 0) {
    pl_oai_errorf(err, 500, NULL, "detokenization failed: %s", pl_last_error());
    return rc;
  }
  *v = json_pack("{s:o}", "prompt", pl_oai_lossy_string(text, len));
  pl_free(text);
  if (!*v) {
    pl_oai_errorf(err, 500, NULL, "out of memory");
    return PL_ENOMEM;
  }
  return 0;
}

typedef int (*text_fn)(pl_server *, struct MHD_Connection *, pl_http_req *, pl_oai_error *,
                       json_t **);

/* Run one of the two and answer. An allocation that failed anywhere on the way (the template
 * and the tokenizer report some as their own errors) makes the outcome a 500 "out of memory",
 * never a verdict on the request. */
static enum MHD_Result answer(pl_server *s, struct MHD_Connection *c, pl_http_req *h,
                              text_fn fn) {
  pl_oai_error err;
  json_t *v = NULL;
  long failures0 = pl_alloc_thread_failures();
  int rc = fn(s, c, h, &err, &v);
  pl_strbuf b = {0};
  if ((rc == 0 && pl_oai_dump(v, &b) < 0) || pl_alloc_thread_failures() != failures0) {
    pl_oai_errorf(&err, 500, NULL, "out of memory");
    rc = PL_ENOMEM;
  }
  json_decref(v);
  enum MHD_Result r = rc < 0 ? pl_http_error(s, c, &err) : pl_http_json(s, c, 200, &b);
  pl_strbuf_free(&b);
  return r;
}

enum MHD_Result pl_api_tokenize(pl_server *s, struct MHD_Connection *c, pl_http_req *h) {
  return answer(s, c, h, tokenize_);
}

enum MHD_Result pl_api_detokenize(pl_server *s, struct MHD_Connection *c, pl_http_req *h) {
  return answer(s, c, h, detokenize_);
}
