/* OpenAI-shaped response bodies: completions and chat completions, whole (non-streaming) or
 * as Server-Sent Events chunks, plus the error body.
 *
 * A pl_oai_resp accumulates the engine's events for one HTTP request. Non-streaming:
 * pl_oai_resp_add() every event, then pl_oai_resp_json(). Streaming: pl_oai_resp_sse_begin()
 * once (chat's role chunk, echo), pl_oai_resp_sse_event() per event, pl_oai_resp_sse_end()
 * (usage chunk when asked, then "data: [DONE]"). Each SSE frame is "data: <json>\n\n".
 *
 * Logprobs name tokens by their bytes (from the tokenizer through a callback, so this file
 * needs no model); bytes that are not valid UTF-8 on their own (a byte-fallback token) become
 * U+FFFD in "token" while "bytes" keeps them exact, as OpenAI does. -inf logprobs are written
 * as -9999.0 (vLLM's convention; JSON has no infinity). Not thread-safe: one per request. */
#ifndef PL_SERVER_OPENAI_RESP_H
#define PL_SERVER_OPENAI_RESP_H
#include <jansson.h>

#include "pagellm.h"
#include "server/openai_req.h"
#include "server/strbuf.h"

/* The bytes of token `id` (*len set); NULL for an unknown id. */
typedef const char *(*pl_oai_token_bytes_fn)(void *ctx, int32_t id, size_t *len);

typedef struct pl_oai_choice_acc pl_oai_choice_acc;

typedef struct pl_oai_resp {
  const pl_oai_request *req; /* borrowed */
  char id[48];               /* "cmpl-..." / "chatcmpl-..." */
  long long created;         /* Unix seconds */
  const char *model;         /* borrowed */
  int n_prompts, n_choices;
  pl_oai_choice_acc *ch;     /* [n_choices] */
  int *prompt_tokens, *cached_tokens; /* [n_prompts] */
  const char **echo;         /* [n_prompts] prompt text for echo, or NULL */
  size_t *echo_len;
  pl_oai_token_bytes_fn token_bytes;
  void *token_ctx;
  int tool_format;           /* pl_tool_format of the model, used when req->tool_choice != none */
  int failed;                /* streaming: the error frame went out; nothing more but [DONE] */
} pl_oai_resp;

int pl_oai_resp_init(pl_oai_resp *r, const pl_oai_request *req, const char *model, int n_prompts,
                     pl_oai_token_bytes_fn token_bytes, void *token_ctx);
void pl_oai_resp_free(pl_oai_resp *r);
/* Echo: the text of prompt p (borrowed until the response is done). */
void pl_oai_resp_set_echo(pl_oai_resp *r, int p, const char *text, size_t len);

/* Non-streaming. */
int pl_oai_resp_add(pl_oai_resp *r, const pl_job_event *ev);
/* The first choice that ended with PL_FINISH_ERROR, or that never got its final event (the
 * engine loop lost it for want of memory), as a 500 error; 0 when none. */
int pl_oai_resp_failed(const pl_oai_resp *r, pl_oai_error *err);
/* 1 when every choice had its final event. */
int pl_oai_resp_complete(const pl_oai_resp *r);
int pl_oai_resp_json(pl_oai_resp *r, pl_strbuf *out);

/* Streaming. */
int pl_oai_resp_sse_begin(pl_oai_resp *r, pl_strbuf *out);
/* A choice that failed (PL_FINISH_ERROR) writes the stream's one error frame and sets
 * r->failed; every event after it writes nothing. The caller then ends the stream with
 * "data: [DONE]" alone (one error frame per stream, whatever n is). */
int pl_oai_resp_sse_event(pl_oai_resp *r, const pl_job_event *ev, pl_strbuf *out);
int pl_oai_resp_sse_end(pl_oai_resp *r, pl_strbuf *out);

/* {"error": {"message", "type", "param", "code"}} */
int pl_oai_error_json(const pl_oai_error *e, pl_strbuf *out);
/* Append an SSE error frame: data: {"error": ...}\n\n */
int pl_oai_error_sse(const pl_oai_error *e, pl_strbuf *out);

/* Append json_dumps(v) (compact) to out; steals nothing. */
int pl_oai_dump(const json_t *v, pl_strbuf *out);
/* A JSON string of arbitrary bytes: invalid UTF-8 sequences become U+FFFD. NULL on OOM. */
json_t *pl_oai_lossy_string(const char *s, size_t len);
#endif
