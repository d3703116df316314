/* One sample's output text: incremental detokenization (never a broken UTF-8 sequence) and
 * stop strings that may straddle token boundaries (the stop text is never emitted; only what
 * could still become a match is held back). Owns its buffers; the text returned by push and
 * flush stays valid until the next call on the stream. */
#ifndef PL_ENGINE_TEXT_STREAM_H
#define PL_ENGINE_TEXT_STREAM_H
#include <stddef.h>
#include <stdint.h>

struct pl_tokenizer;

typedef struct pl_text_stream {
  const struct pl_tokenizer *tok;
  void *detok;          /* pl_detok * */
  void *stops;          /* pl_stop_matcher * (NULL without stop strings) */
  char *out;            /* text returned by the last call */
  size_t out_len, out_cap;
  int stopped;
} pl_text_stream;

int pl_text_stream_init(pl_text_stream *ts, const struct pl_tokenizer *tok,
                        const char *const *stop, int n_stop);
void pl_text_stream_free(pl_text_stream *ts);
/* Feed one token (token < 0: none). text and len receive the newly emittable text; with `final` it also
 * includes everything held back (the sample ends here). Returns 1 when a stop string
 * completed (the text before it is emitted, nothing after), 0 otherwise, or a negative
 * status (PL_ENOMEM). */
int pl_text_stream_push(pl_text_stream *ts, int32_t token, int final, const char **text,
                        size_t *len);
#endif
