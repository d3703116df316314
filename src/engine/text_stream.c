/* Output text of one sample.
 *
 *   token pieces (bytes) ─► pend: bytes of an unfinished UTF-8 character
 *                        ─► held: complete text that could still be the start of a stop
 *                                 string, released as soon as it cannot
 *                        ─► emitted
 *
 * A piece's bytes are appended raw (byte-fallback and byte-level tokens may split a character
 * over several tokens); only whole, valid characters move on, and a byte sequence that can
 * never become valid UTF-8 is replaced by U+FFFD, so consumers never see broken text. Control
 * tokens (BOS/EOS/...) have no text. */
#include "engine/text_stream.h"

#include <string.h>

#include "model/tokenizer.h"
#include "util/alloc.h"
#include "util/error.h"

typedef struct {
  char pend[8];
  int n_pend;
  char *held;
  size_t n_held, cap_held;
  char **stop;
  size_t *stop_len;
  int n_stop;
} ts_state;

#define ST(ts) ((ts_state *)(ts)->detok)

static int grow(char **buf, size_t *cap, size_t need) {
  if (need <= *cap)
    return 0;
  size_t c = *cap ? *cap : 64;
  while (c < need)
    c *= 2;
  char *n = pl_realloc(*buf, c);
  if (!n)
    return pl_fail(PL_ENOMEM, "out of memory");
  *buf = n;
  *cap = c;
  return 0;
}

int pl_text_stream_init(pl_text_stream *ts, const struct pl_tokenizer *tok,
                        const char *const *stop, int n_stop) {
  memset(ts, 0, sizeof *ts);
  ts->tok = tok;
  ts_state *s = pl_calloc(1, sizeof *s);
  if (!s)
    return pl_fail(PL_ENOMEM, "out of memory");
  ts->detok = s;
  if (n_stop > 0) {
    s->stop = pl_calloc((size_t)n_stop, sizeof(char *));
    s->stop_len = pl_calloc((size_t)n_stop, sizeof(size_t));
    if (!s->stop || !s->stop_len)
      return pl_fail(PL_ENOMEM, "out of memory");
    for (int i = 0; i < n_stop; i++) {
      s->stop[i] = pl_strdup(stop[i]);
      if (!s->stop[i])
        return pl_fail(PL_ENOMEM, "out of memory");
      s->stop_len[i] = strlen(stop[i]);
      s->n_stop = i + 1;
    }
  }
  return 0;
}

void pl_text_stream_free(pl_text_stream *ts) {
  ts_state *s = ST(ts);
  if (s) {
    for (int i = 0; i < s->n_stop; i++)
      pl_free(s->stop[i]);
    pl_free(s->stop);
    pl_free(s->stop_len);
    pl_free(s->held);
    pl_free(s);
  }
  pl_free(ts->out);
  memset(ts, 0, sizeof *ts);
}

/* Expected length of a UTF-8 sequence from its first byte; 0 for an invalid lead byte. */
static int u8_len(unsigned char c) {
  if (c < 0x80) return 1;
  if (c >= 0xC2 && c <= 0xDF) return 2;
  if (c >= 0xE0 && c <= 0xEF) return 3;
  if (c >= 0xF0 && c <= 0xF4) return 4;
  return 0;
}

/* Is b a valid continuation at index i of a sequence starting with lead? (rejects overlongs
 * and surrogates as RFC 3629 does) */
static int u8_cont_ok(unsigned char lead, int i, unsigned char b) {
  if ((b & 0xC0) != 0x80) return 0;
  if (i == 1) {
    if (lead == 0xE0 && b < 0xA0) return 0;
    if (lead == 0xED && b > 0x9F) return 0;
    if (lead == 0xF0 && b < 0x90) return 0;
    if (lead == 0xF4 && b > 0x8F) return 0;
  }
  return 1;
}

static int held_add(ts_state *s, const char *p, size_t n) {
  PL_TRY(grow(&s->held, &s->cap_held, s->n_held + n + 1));
  memcpy(s->held + s->n_held, p, n);
  s->n_held += n;
  return 0;
}

/* Move bytes through pend into held as whole characters. */
static int feed_bytes(ts_state *s, const unsigned char *p, size_t n) {
  static const char repl[] = "\xEF\xBF\xBD";
  for (size_t i = 0; i < n; i++) {
    unsigned char b = p[i];
    if (s->n_pend == 0) {
      int L = u8_len(b);
      if (L == 1) {
        PL_TRY(held_add(s, (const char *)&b, 1));
      } else if (L == 0) {
        PL_TRY(held_add(s, repl, 3));
      } else {
        s->pend[s->n_pend++] = (char)b;
      }
      continue;
    }
    unsigned char lead = (unsigned char)s->pend[0];
    if (!u8_cont_ok(lead, s->n_pend, b)) {
      /* the pending sequence is broken: replace it, then reconsider b on its own */
      PL_TRY(held_add(s, repl, 3));
      s->n_pend = 0;
      i--;
      continue;
    }
    s->pend[s->n_pend++] = (char)b;
    if (s->n_pend == u8_len(lead)) {
      PL_TRY(held_add(s, s->pend, (size_t)s->n_pend));
      s->n_pend = 0;
    }
  }
  return 0;
}

static int out_add(pl_text_stream *ts, const char *p, size_t n) {
  PL_TRY(grow(&ts->out, &ts->out_cap, ts->out_len + n + 1));
  memcpy(ts->out + ts->out_len, p, n);
  ts->out_len += n;
  ts->out[ts->out_len] = 0;
  return 0;
}

/* Release what can no longer start a stop string; returns 1 on a completed stop. */
static int release(pl_text_stream *ts, int final) {
  ts_state *s = ST(ts);
  size_t cut = s->n_held; /* bytes that may be released */
  int stopped = 0;
  for (int k = 0; k < s->n_stop; k++) {
    const char *hit = s->n_held >= s->stop_len[k]
                          ? memmem(s->held, s->n_held, s->stop[k], s->stop_len[k])
                          : NULL;
    if (hit && (size_t)(hit - s->held) <= cut) {
      cut = (size_t)(hit - s->held);
      stopped = 1;
    }
  }
  if (!stopped && !final) {
    /* keep the longest suffix that is a proper prefix of some stop string */
    for (int k = 0; k < s->n_stop; k++) {
      size_t maxk = s->stop_len[k] - 1 < s->n_held ? s->stop_len[k] - 1 : s->n_held;
      for (size_t m = maxk; m > 0; m--)
        if (!memcmp(s->held + s->n_held - m, s->stop[k], m)) {
          if (s->n_held - m < cut)
            cut = s->n_held - m;
          break;
        }
    }
  }
  PL_TRY(out_add(ts, s->held, cut));
  if (stopped) {
    s->n_held = 0;
    ts->stopped = 1;
    return 1;
  }
  memmove(s->held, s->held + cut, s->n_held - cut);
  s->n_held -= cut;
  return 0;
}

int pl_text_stream_push(pl_text_stream *ts, int32_t token, int final, const char **text,
                        size_t *len) {
  ts_state *s = ST(ts);
  ts->out_len = 0;
  if (ts->out)
    ts->out[0] = 0;
  *text = "";
  *len = 0;
  if (ts->stopped)
    return 1;
  if (token >= 0 && !pl_tokenizer_is_control(ts->tok, token)) {
    size_t n;
    const char *p = pl_tokenizer_piece(ts->tok, token, &n);
    if (p)
      PL_TRY(feed_bytes(s, (const unsigned char *)p, n));
  }
  if (final && s->n_pend) {
    PL_TRY(held_add(s, "\xEF\xBF\xBD", 3)); /* an unfinished character at the very end */
    s->n_pend = 0;
  }
  int rc = release(ts, final);
  if (rc < 0)
    return rc;
  *text = ts->out ? ts->out : "";
  *len = ts->out_len;
  return rc;
}
