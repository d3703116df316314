/* SentencePiece-style BPE (Llama 1/2, Mistral, Phi-3, TinyStories vocabularies).
 *
 * The text is escaped (' ' -> "▁", optionally a leading "▁"), cut into UTF-8 characters
 * (an ill-formed byte is a character of its own), and adjacent symbols are merged greedily:
 * always the pair whose concatenation is the vocabulary token with the highest score, ties to
 * the leftmost pair. Symbols stay contiguous spans of the escaped text, so a candidate pair is
 * looked up in place (no string building) and a queued pair is stale exactly when the two
 * spans no longer sum to the length it was queued with. A final symbol that is no token is
 * spelled with its <0xNN> byte tokens (the unknown token where a byte has none).
 * Cost: O(n log n) in the characters of the fragment.
 */
#include <string.h>

#include "tokenizer/tokenizer_impl.h"
#include "util/error.h"

/* Map a float to a uint32 with the same order. */
static inline uint32_t float_order(float f) {
  uint32_t u;
  memcpy(&u, &f, sizeof u);
  return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

#define SPACE "\xe2\x96\x81" /* U+2581, SentencePiece's space */

static void try_pair(pl_tok_ctx *c, const char *buf, int32_t l, int32_t r) {
  if (l < 0 || r < 0)
    return;
  const pl_tok_sym *s = c->sym;
  int32_t id = pl_tok_lookup(c->t, buf + s[l].start, (size_t)(s[l].len + s[r].len));
  if (id < 0)
    return;
  /* min-heap key: higher score first, then the leftmost pair */
  uint64_t key = ((uint64_t)(~float_order(c->t->scores[id])) << 32) | (uint32_t)l;
  pl_tok_heap_push(c, (pl_tok_heap_ent){.key = key, .right = r, .size = s[l].len + s[r].len});
}

/* Merge the escaped text buf[from..to) and emit its ids (sym/heap sized by the caller). */
static int merge_span(pl_tok_ctx *c, const char *buf, size_t from, size_t to) {
  const pl_tokenizer *t = c->t;
  pl_tok_sym *s = c->sym;
  pl_tok_wslot slot;
  int hit = pl_tok_wcache_get(c, buf + from, to - from, &slot);
  if (hit)
    return hit > 0 ? PL_OK : PL_ENOMEM;
  size_t first = c->out->n;
  int32_t ns = 0;
  for (size_t i = from; i < to;) {
    int l = pl_utf8_len((const unsigned char *)buf + i, to - i);
    if (l == 0)
      l = 1;
    s[ns] = (pl_tok_sym){.start = (int32_t)i, .len = l, .prev = ns - 1, .next = ns + 1, .id = -1};
    ns++;
    i += (size_t)l;
  }
  if (ns == 0)
    return PL_OK;
  s[ns - 1].next = -1;

  c->heap_n = 0;
  for (int32_t i = 1; i < ns; i++)
    try_pair(c, buf, i - 1, i);
  while (c->heap_n) {
    pl_tok_heap_ent e = pl_tok_heap_pop(c);
    int32_t l = (int32_t)(uint32_t)e.key, r = e.right;
    if (s[l].len == 0 || s[r].len == 0 || s[l].next != r || s[l].len + s[r].len != e.size)
      continue; /* stale */
    s[l].len += s[r].len;
    s[r].len = 0;
    s[l].next = s[r].next;
    if (s[r].next >= 0)
      s[s[r].next].prev = l;
    try_pair(c, buf, s[l].prev, l);
    try_pair(c, buf, l, s[l].next);
  }

  for (int32_t i = 0; i != -1; i = s[i].next) {
    int32_t id = pl_tok_lookup(t, buf + s[i].start, (size_t)s[i].len);
    if (id >= 0) {
      PL_TRY(pl_tok_emit(c, id));
      continue;
    }
    /* byte fallback; a character with a byte that has no token is one unknown token */
    int32_t k = 0;
    while (k < s[i].len && t->byte_tok[(unsigned char)buf[s[i].start + k]] >= 0)
      k++;
    if (k < s[i].len) {
      if (t->unk >= 0)
        PL_TRY(pl_tok_emit(c, t->unk));
      continue;
    }
    for (k = 0; k < s[i].len; k++)
      PL_TRY(pl_tok_emit(c, t->byte_tok[(unsigned char)buf[s[i].start + k]]));
  }
  pl_tok_wcache_put(c, &slot, buf + from, to - from, first);
  return PL_OK;
}

int pl_spm_encode(pl_tok_ctx *c, const char *text, size_t len, int prefix) {
  const pl_tokenizer *t = c->t;
  if (len > (size_t)INT32_MAX / 4)
    return pl_fail(PL_ERANGE, "tokenizer: text fragment too long (%zu bytes)", len);
  PL_TRY(pl_tok_ctx_grow((void **)&c->buf, &c->buf_cap, len * 3 + 4, 1));
  char *buf = c->buf;
  size_t n = 0;
  if (prefix) {
    memcpy(buf, SPACE, 3);
    n = 3;
  }
  for (size_t i = 0; i < len; i++) {
    if (text[i] == ' ') {
      memcpy(buf + n, SPACE, 3);
      n += 3;
    } else {
      buf[n++] = text[i];
    }
  }

  PL_TRY(pl_tok_ctx_grow((void **)&c->sym, &c->sym_cap, n, sizeof *c->sym));
  PL_TRY(pl_tok_ctx_grow((void **)&c->heap, &c->heap_cap, 3 * n + 1, sizeof *c->heap));
  if (!t->spm_word_split)
    return merge_span(c, buf, 0, n);
  /* word by word: cut before each "▁" that follows another character */
  PL_TRY(pl_tok_wcache_ensure(c, len));
  size_t w = 0;
  for (size_t i = 3; i + 3 <= n; i++) {
    if (memcmp(buf + i, SPACE, 3) == 0 && memcmp(buf + i - 3, SPACE, 3) != 0) {
      PL_TRY(merge_span(c, buf, w, i));
      w = i;
      i += 2;
    }
  }
  return merge_span(c, buf, w, n);
}
