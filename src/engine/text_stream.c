/* Output text of one sample: the streaming detokenizer (whole UTF-8 characters only, control
 * tokens hidden, the space after the prompt kept) feeding the stop-string matcher (stop text
 * never emitted, only a possible stop prefix held back). */
#include "engine/text_stream.h"

#include <string.h>

#include "tokenizer/detok.h"
#include "tokenizer/stop_matcher.h"
#include "tokenizer/tokenizer.h"
#include "util/alloc.h"
#include "util/array.h"
#include "util/error.h"

int pl_text_stream_init(pl_text_stream *ts, const struct pl_tokenizer *tok,
                        const char *const *stop, int n_stop) {
  memset(ts, 0, sizeof *ts);
  ts->tok = tok;
  pl_detok *d = pl_calloc(1, sizeof *d);
  pl_stop_matcher *m = pl_calloc(1, sizeof *m);
  ts->detok = d;
  ts->stops = m;
  if (!d || !m)
    return pl_fail(PL_ENOMEM, "out of memory");
  PL_TRY(pl_detok_init(d, tok, PL_DECODE_SKIP_SPECIAL));
  return pl_stop_matcher_init(m, stop, n_stop);
}

void pl_text_stream_free(pl_text_stream *ts) {
  if (ts->detok) {
    pl_detok_free(ts->detok);
    pl_free(ts->detok);
  }
  if (ts->stops) {
    pl_stop_matcher_free(ts->stops);
    pl_free(ts->stops);
  }
  pl_free(ts->out);
  memset(ts, 0, sizeof *ts);
}

static int out_add(pl_text_stream *ts, const char *p, size_t n) {
  if (pl_array_grow(&ts->out, &ts->out_cap, ts->out_len + n + 1, 1, 64))
    return pl_fail(PL_ENOMEM, "out of memory");
  memcpy(ts->out + ts->out_len, p, n);
  ts->out_len += n;
  ts->out[ts->out_len] = 0;
  return 0;
}

int pl_text_stream_push(pl_text_stream *ts, int32_t token, int final, const char **text,
                        size_t *len) {
  ts->out_len = 0;
  *text = "";
  *len = 0;
  if (ts->stopped)
    return 1;
  const char *t;
  size_t n;
  pl_stop_result r;
  /* detokenizer output of this token (+ its flush at the end) through the stop matcher */
  for (int pass = 0; pass < 2; pass++) {
    if (pass == 0) {
      if (token < 0)
        continue;
      PL_TRY(pl_detok_push(ts->detok, token, &t, &n));
    } else {
      if (!final)
        break;
      pl_detok_flush(ts->detok, &t, &n);
    }
    PL_TRY(pl_stop_matcher_feed(ts->stops, t, n, &r));
    PL_TRY(out_add(ts, r.text, r.len));
    if (r.stop >= 0) {
      ts->stopped = 1;
      break;
    }
  }
  if (final && !ts->stopped) {
    pl_stop_matcher_flush(ts->stops, &r);
    PL_TRY(out_add(ts, r.text, r.len));
  }
  *text = ts->out ? ts->out : "";
  *len = ts->out_len;
  return ts->stopped;
}
