/* The server's text services over the engine's immutable tokenizer and chat template:
 * tokenize, detokenize, token bytes for logprobs, chat rendering. Everything here is
 * thread-safe (the objects are immutable after load), so HTTP threads call it directly and
 * only token ids travel to the engine thread. */
#ifndef PL_SERVER_SRV_TEXT_H
#define PL_SERVER_SRV_TEXT_H
#include <stddef.h>
#include <stdint.h>

#include "pagellm.h"
#include "server/openai_req.h"

/* Tokenize text. add_special: prepend BOS (etc.) as the vocabulary says. Special-token text
 * ("<|im_start|>") is always recognised, as HF tokenizers and vLLM do. *ids is pl_malloc'd
 * (free with pl_free; never NULL on success, even for 0 tokens). */
int pl_srv_tokenize(const pl_engine *e, const char *text, size_t len, int add_special,
                    int32_t **ids, int *n);
/* Decode ids to text like HF's decode (special tokens kept, SPM's leading space stripped).
 * *text is pl_malloc'd, NUL-terminated; may hold invalid UTF-8 (callers sanitize). */
int pl_srv_detokenize(const pl_engine *e, const int32_t *ids, int n, char **text, size_t *len);
/* pl_oai_token_bytes_fn over an engine (ctx = the engine). */
const char *pl_srv_token_bytes(void *engine, int32_t id, size_t *len);
/* The vocabulary string of a token ("▁Hello"), for /tokenize's token_strs. */
const char *pl_srv_token_text(const pl_engine *e, int32_t id, size_t *len);
int pl_srv_vocab_size(const pl_engine *e);

int pl_srv_has_chat_template(const pl_engine *e);
/* Render req->messages (+ tools, chat_template_kwargs, add_generation_prompt,
 * continue_final_message) with the engine's chat template. *out is pl_malloc'd.
 * max_text > 0: PL_ETOOLONG once the text would pass that many bytes (the render stops there;
 * not applied with continue_final_message, whose text is cut after rendering).
 * PL_ETEMPLATE (message set) when the template fails on these messages; PL_ENOMEM. */
int pl_srv_render_chat(const pl_engine *e, const pl_oai_request *req, size_t max_text,
                       char **out, size_t *len);
#endif
