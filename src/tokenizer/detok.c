/* Streaming detokenizer (see detok.h): token pieces run through a byte-at-a-time UTF-8
 * decoder (the WHATWG state machine: expected continuation count plus the allowed range of
 * the next byte, which rules out overlongs, surrogates and code points above U+10FFFF).
 * Complete characters pass through; a byte that breaks a character emits U+FFFD for the held
 * bytes and is then read again as a fresh byte. pl_utf8_sanitize is an independent
 * whole-string implementation of the same policy, used as the reference in tests.
 */
#include "tokenizer/detok.h"

#include <string.h>

#include "util/alloc.h"
#include "util/error.h"

static const char fffd[3] = {(char)0xEF, (char)0xBF, (char)0xBD};

int pl_detok_init(pl_detok *d, const pl_tokenizer *t, int flags) {
  memset(d, 0, sizeof *d);
  d->tok = t;
  d->flags = flags;
  /* worst case per push: held bytes + a piece where every byte becomes U+FFFD */
  d->cap = 3 * (pl_tokenizer_max_piece_len(t) + 4) + 16;
  d->out = pl_malloc(d->cap);
  if (!d->out)
    return pl_fail(PL_ENOMEM, "detokenizer: out of memory");
  pl_detok_reset(d);
  return PL_OK;
}

void pl_detok_free(pl_detok *d) {
  if (!d)
    return;
  pl_free(d->out);
  d->out = NULL;
  d->cap = 0;
}

static void decoder_clear(pl_detok *d) {
  d->npend = 0;
  d->need = 0;
  d->lo = 0x80;
  d->hi = 0xBF;
}

void pl_detok_reset(pl_detok *d) {
  decoder_clear(d);
  d->strip_pending = (d->flags & PL_DECODE_STRIP_SPACE) && pl_tokenizer_add_space_prefix(d->tok);
}

/* Feed one byte; appends finished output at out + *o. */
static void feed(pl_detok *d, unsigned char b, char *out, size_t *o) {
  for (;;) {
    if (d->need == 0) {
      if (b < 0x80) {
        out[(*o)++] = (char)b;
      } else if (b >= 0xC2 && b <= 0xDF) {
        d->need = 1;
        d->pend[d->npend++] = b;
      } else if (b >= 0xE0 && b <= 0xEF) {
        d->need = 2;
        if (b == 0xE0)
          d->lo = 0xA0; /* no overlongs */
        if (b == 0xED)
          d->hi = 0x9F; /* no surrogates */
        d->pend[d->npend++] = b;
      } else if (b >= 0xF0 && b <= 0xF4) {
        d->need = 3;
        if (b == 0xF0)
          d->lo = 0x90;
        if (b == 0xF4)
          d->hi = 0x8F; /* <= U+10FFFF */
        d->pend[d->npend++] = b;
      } else {
        memcpy(out + *o, fffd, 3);
        *o += 3;
      }
      return;
    }
    if (b < d->lo || b > d->hi) {
      /* the held bytes are a maximal ill-formed subpart; b starts afresh */
      memcpy(out + *o, fffd, 3);
      *o += 3;
      decoder_clear(d);
      continue;
    }
    d->lo = 0x80;
    d->hi = 0xBF;
    d->pend[d->npend++] = b;
    if (d->npend == d->need + 1) {
      memcpy(out + *o, d->pend, (size_t)d->npend);
      *o += (size_t)d->npend;
      decoder_clear(d);
    }
    return;
  }
}

int pl_detok_push(pl_detok *d, int32_t id, const char **text, size_t *len) {
  *text = d->out;
  *len = 0;
  size_t n;
  const char *p = pl_tokenizer_piece(d->tok, id, &n);
  if (!p)
    return pl_fail(PL_EINVAL, "detokenizer: token id %d out of range", (int)id);
  if ((d->flags & PL_DECODE_SKIP_SPECIAL) && pl_tokenizer_is_control(d->tok, id))
    return PL_OK;
  if (d->strip_pending && n) {
    if (p[0] == ' ') {
      p++;
      n--;
    }
    d->strip_pending = 0;
  }
  size_t o = 0;
  for (size_t i = 0; i < n; i++)
    feed(d, (unsigned char)p[i], d->out, &o);
  *len = o;
  return PL_OK;
}

void pl_detok_flush(pl_detok *d, const char **text, size_t *len) {
  size_t o = 0;
  if (d->need) {
    memcpy(d->out, fffd, 3);
    o = 3;
  }
  pl_detok_reset(d);
  *text = d->out;
  *len = o;
}

/* Length of the maximal prefix of s[0..n) that could start a well-formed sequence (>= 1),
 * given that s[0..n) does not start a complete one. */
static size_t ill_formed_len(const unsigned char *s, size_t n) {
  unsigned c = s[0];
  size_t need;
  unsigned lo = 0x80, hi = 0xBF;
  if (c >= 0xC2 && c <= 0xDF)
    need = 1;
  else if (c >= 0xE0 && c <= 0xEF)
    need = 2, lo = c == 0xE0 ? 0xA0 : 0x80, hi = c == 0xED ? 0x9F : 0xBF;
  else if (c >= 0xF0 && c <= 0xF4)
    need = 3, lo = c == 0xF0 ? 0x90 : 0x80, hi = c == 0xF4 ? 0x8F : 0xBF;
  else
    return 1;
  size_t k = 1;
  while (k <= need && k < n && s[k] >= lo && s[k] <= hi) {
    k++;
    lo = 0x80;
    hi = 0xBF;
  }
  return k;
}

/* Well-formed sequence length at s, or 0. */
static size_t wf_len(const unsigned char *s, size_t n) {
  size_t k = ill_formed_len(s, n);
  unsigned c = s[0];
  if (c < 0x80)
    return 1;
  size_t want = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : 2;
  return (k == want && k <= n) ? k : 0;
}

size_t pl_utf8_sanitize(const char *str, size_t n, char *out) {
  const unsigned char *s = (const unsigned char *)str;
  size_t o = 0;
  for (size_t i = 0; i < n;) {
    size_t l = wf_len(s + i, n - i);
    if (l) {
      memcpy(out + o, s + i, l);
      o += l;
      i += l;
    } else {
      memcpy(out + o, fffd, 3);
      o += 3;
      i += ill_formed_len(s + i, n - i);
    }
  }
  return o;
}
