/* OpenAI-compatible request bodies -> validated, engine-ready parameters.
 *
 * pl_oai_parse() parses one JSON body for /v1/completions, /v1/chat/completions, /tokenize or
 * /detokenize and validates every field it knows with OpenAI's ranges; a failure fills a
 * pl_oai_error shaped like OpenAI's ({"error": {message, type, param, code}}) whose `param`
 * names the offending field (e.g. "temperature", "messages[2].content").
 *
 * Unknown fields are ignored, as vLLM does (OpenAI itself rejects them); their names are
 * collected in `ignored` so the server can log them. Fields that need something the engine
 * does not have (suffix, best_of != n, echo with logprobs, structured output, forced tool
 * calls, non-text content parts) are rejected with a 400 naming the field rather than being
 * silently dropped.
 *
 * Model-dependent checks (token ids < vocab size, prompt + max_tokens <= max_model_len) need
 * the tokenizer and happen later in the server; pl_oai_check_token_ids() does the first.
 * Pure: no engine, no I/O; safe to call from any thread. */
#ifndef PL_SERVER_OPENAI_REQ_H
#define PL_SERVER_OPENAI_REQ_H
#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "pagellm.h"
#include "server/chat_msgs.h"

/* Limits that keep one request from monopolising the server. */
#define PL_OAI_MAX_N 128         /* n (OpenAI's limit) and total choices of a batch */
#define PL_OAI_MAX_PROMPTS 64    /* prompts in one batched /v1/completions request */
#define PL_OAI_MAX_STOP 16       /* stop strings */
#define PL_OAI_MAX_STOP_LEN 1024 /* bytes per stop string */
#define PL_OAI_MAX_LOGPROBS 20   /* top logprobs (vLLM's default max_logprobs) */
#define PL_OAI_MAX_LOGIT_BIAS 1024
#define PL_OAI_MAX_STOP_IDS 1024
#define PL_OAI_MAX_MESSAGES 8192 /* chat messages: bounds the parse overhead of one body */
#define PL_OAI_MAX_JSON_DEPTH 64 /* nesting of arrays/objects in a request body */

typedef enum {
  PL_OAI_COMPLETIONS = 0,
  PL_OAI_CHAT,
  PL_OAI_TOKENIZE,
  PL_OAI_DETOKENIZE,
} pl_oai_kind;

typedef struct pl_oai_error {
  int status;       /* HTTP status: 400, 401, 404, 413, 500, 503 */
  const char *type; /* "invalid_request_error" (4xx) or "server_error" (5xx), as OpenAI */
  const char *code; /* NULL or e.g. "model_not_found", "context_length_exceeded" */
  char param[96];   /* "" = null */
  char message[640];
} pl_oai_error;

/* Fill *e and return PL_EINVAL (for `return pl_oai_errorf(...)`). param NULL = null. */
int pl_oai_errorf(pl_oai_error *e, int status, const char *param, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* One prompt: text (UTF-8, tokenized later) or token ids, never both. */
typedef struct pl_oai_prompt {
  const char *text; /* points into the parsed JSON; NULL when ids are given */
  size_t text_len;
  int32_t *ids; /* owned (pl_malloc); NULL when text is given */
  int n_ids;
} pl_oai_prompt;

typedef struct pl_oai_request {
  pl_oai_kind kind;
  json_t *root;      /* the parsed body (owned); strings below point into it */
  const char *model; /* NULL when absent */

  /* completions / tokenize with "prompt" / detokenize ("tokens" as one id prompt) */
  pl_oai_prompt *prompts; /* [n_prompts], owned */
  int n_prompts;
  int prompt_is_batch; /* prompt was an array of prompts */

  /* chat / tokenize with "messages": every content is a string or JSON null (normalized);
   * the strings point into the body (kept here) or into root */
  pl_chat_msgs msgs;
  json_t *tools;          /* borrowed from root, NULL when absent */
  json_t *template_kwargs; /* borrowed chat_template_kwargs object, or NULL */
  int add_generation_prompt;  /* default 1 */
  int continue_final_message; /* default 0 */
  int add_special_tokens;     /* -1 = default (completions: model's BOS rule; chat: no) */
  int return_token_strs;      /* /tokenize */

  int echo;
  int stream;
  int include_usage;    /* stream_options.include_usage */
  int continuous_usage; /* stream_options.continuous_usage_stats (vLLM) */
  int max_tokens;       /* -1 = not given (the server picks the default) */
  int n;
  int logprobs;     /* -1 = off; k >= 0 = sampled token + top k */
  const char *user; /* NULL when absent */

  /* Sampling parameters; sp.stop / stop_token_ids / logit_bias point at the owned arrays
   * below. sp.max_tokens is left at its default: the server sets it from max_tokens. */
  pl_sampling_params sp;
  const char **stop; /* owned array; strings point into root */
  int32_t *stop_ids;
  int32_t *bias_ids;
  float *bias_vals;
  /* tools: none (no tools or tool_choice none), auto (parse what the model writes), required
   * or named (a call is forced through a grammar the server builds for the model's format) */
  enum { PL_OAI_TOOLS_NONE = 0, PL_OAI_TOOLS_AUTO, PL_OAI_TOOLS_REQUIRED, PL_OAI_TOOLS_NAMED }
      tool_choice;
  const char *tool_name; /* named: points into root */
  int parallel_tool_calls;
  char *grammar; /* owned GBNF text of a structured-output constraint (sp.grammar), or NULL */

  char ignored[256]; /* comma-separated unknown fields (truncated), "" if none */
} pl_oai_request;

/* Parse and validate `body` (len bytes, need not be NUL-terminated). On success returns 0 and
 * the caller frees *req with pl_oai_request_free. On failure returns PL_EINVAL (or PL_ENOMEM),
 * fills *err, and *req needs no freeing. A chat's messages are parsed in place in a copy of
 * their text (chat_msgs.h). */
int pl_oai_parse(pl_oai_kind kind, const char *body, size_t len, pl_oai_request *req,
                 pl_oai_error *err);
/* The same, taking body (pl_malloc'd): a chat's messages are parsed in place in it, and it is
 * kept until they are dropped; otherwise it is freed once parsed. Freed on failure too. */
int pl_oai_parse_owned(pl_oai_kind kind, char *body, size_t len, pl_oai_request *req,
                       pl_oai_error *err);
void pl_oai_request_free(pl_oai_request *req);
/* Free the chat's messages (req->msgs, the body they point into, root's "messages") once the template has
 * rendered them: nothing reads them later, and in a long chat they are most of the request's
 * memory. Other fields stay valid. */
void pl_oai_request_drop_messages(pl_oai_request *req);

/* Check every token id the request carries (prompt ids, stop_token_ids, logit_bias keys)
 * against [0, vocab_size). 0 or PL_EINVAL with *err filled. */
int pl_oai_check_token_ids(const pl_oai_request *req, int vocab_size, pl_oai_error *err);

/* The request's max_tokens for a prompt of n_prompt tokens, applying OpenAI/vLLM defaults
 * (completions 16, chat the rest of the context) and checking prompt + max_tokens against
 * max_model_len. Returns the value (> 0) or PL_EINVAL / PL_ETOOLONG with *err filled
 * (400, code "context_length_exceeded"). */
int pl_oai_resolve_max_tokens(const pl_oai_request *req, int n_prompt, int max_model_len,
                              pl_oai_error *err);
#endif
