/* Byte-level BPE (GPT-2, Llama 3, Qwen2/3, DeepSeek, Falcon, MPT, StarCoder, Refact).
 *
 * Pipeline for a fragment of raw text (special tokens already taken out):
 *   1. cut into maximal well-formed UTF-8 runs and single ill-formed bytes; an ill-formed byte
 *      becomes its byte token (the documented invalid-input policy), or the tokens of U+FFFD
 *      when the vocabulary has no token that decodes to exactly that byte;
 *   2. a run is normalized when the tokenizer asks (HF NFC/NFKC, via utf8proc into our own
 *      buffers), then split into words by the pre-tokenizer regex chain;
 *   3. each word starts as one symbol per byte (the token of that byte's GPT-2 character) and
 *      adjacent symbols merge by the lowest merge rank, ties to the leftmost pair, in id space
 *      ((left id, right id) -> (rank, merged id)): no strings are built while merging.
 * Long inputs use the bounded per-call word cache (tokenizer_wcache.c).
 */
#include <string.h>
#include <utf8proc.h>

#include "tokenizer/tokenizer_impl.h"
#include "util/alloc.h"
#include "util/error.h"

/* ---- GPT-2 byte alphabet: printable Latin-1 bytes are themselves, the other 68 bytes take
 * the code points 256.. in byte order. ---- */
static int byte_is_self(unsigned b) { return (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174; }

uint32_t pl_bpe_byte_to_cp(uint8_t b) {
  if (byte_is_self(b))
    return b;
  if (b <= 32)
    return 256u + b;
  if (b >= 127 && b <= 160)
    return 256u + 33u + (b - 127u);
  return 256u + 67u; /* 173 */
}

int pl_bpe_cp_to_byte(uint32_t cp) {
  if (cp < 256)
    return byte_is_self(cp) ? (int)cp : -1;
  if (cp <= 288)
    return (int)(cp - 256);
  if (cp <= 322)
    return (int)(cp - 289 + 127);
  if (cp == 323)
    return 173;
  return -1;
}

/* ---- one word ---- */

static int bpe_merge_word(pl_tok_ctx *c, const unsigned char *w, int32_t n) {
  const pl_tokenizer *t = c->t;
  PL_TRY(pl_tok_ctx_grow((void **)&c->sym, &c->sym_cap, (size_t)n, sizeof *c->sym));
  PL_TRY(pl_tok_ctx_grow((void **)&c->heap, &c->heap_cap, 3 * (size_t)n + 1, sizeof *c->heap));
  pl_tok_sym *s = c->sym;
  for (int32_t i = 0; i < n; i++)
    s[i] = (pl_tok_sym){.start = i, .len = 1, .prev = i - 1, .next = i + 1, .id = t->byte_tok[w[i]]};
  s[n - 1].next = -1;
  c->heap_n = 0;
  int32_t rank, res;
  for (int32_t i = 1; i < n; i++)
    if (pl_tok_merge_get(t, s[i - 1].id, s[i].id, &rank, &res))
      pl_tok_heap_push(c, (pl_tok_heap_ent){((uint64_t)(uint32_t)rank << 32) | (uint32_t)(i - 1), i, 2});
  while (c->heap_n) {
    pl_tok_heap_ent e = pl_tok_heap_pop(c);
    int32_t l = (int32_t)(uint32_t)e.key, r = e.right;
    if (s[l].len == 0 || s[r].len == 0 || s[l].next != r || s[l].len + s[r].len != e.size)
      continue; /* stale: one side changed since it was queued */
    if (!pl_tok_merge_get(t, s[l].id, s[r].id, &rank, &res))
      continue;
    s[l].id = res;
    s[l].len += s[r].len;
    s[r].len = 0;
    s[l].next = s[r].next;
    if (s[r].next >= 0)
      s[s[r].next].prev = l;
    int32_t p = s[l].prev, q = s[l].next;
    if (p >= 0 && pl_tok_merge_get(t, s[p].id, s[l].id, &rank, &res))
      pl_tok_heap_push(c, (pl_tok_heap_ent){((uint64_t)(uint32_t)rank << 32) | (uint32_t)p, l, s[p].len + s[l].len});
    if (q >= 0 && pl_tok_merge_get(t, s[l].id, s[q].id, &rank, &res))
      pl_tok_heap_push(c, (pl_tok_heap_ent){((uint64_t)(uint32_t)rank << 32) | (uint32_t)l, q, s[l].len + s[q].len});
  }
  return PL_OK;
}

static int bpe_word(pl_tok_ctx *c, const char *word, size_t n) {
  const pl_tokenizer *t = c->t;
  const unsigned char *w = (const unsigned char *)word;
  if (n == 1) {
    int32_t id = t->byte_tok[w[0]];
    return id >= 0 ? pl_tok_emit(c, id) : PL_OK;
  }
  if (n > (size_t)INT32_MAX / 4)
    return pl_fail(PL_ERANGE, "tokenizer: word too long (%zu bytes)", n);
  if (t->ignore_merges) {
    /* the byte-level spelling of the word: at most 2 UTF-8 bytes per byte */
    PL_TRY(pl_tok_ctx_grow((void **)&c->buf2, &c->buf2_cap, 2 * n, 1));
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
      uint32_t cp = pl_bpe_byte_to_cp(w[i]);
      if (cp < 0x80) {
        c->buf2[o++] = (char)cp;
      } else {
        c->buf2[o++] = (char)(0xC0 | (cp >> 6));
        c->buf2[o++] = (char)(0x80 | (cp & 0x3F));
      }
    }
    int32_t id = pl_tok_lookup(t, c->buf2, o);
    if (id >= 0)
      return pl_tok_emit(c, id);
  }
  pl_tok_wslot slot;
  int hit = pl_tok_wcache_get(c, word, n, &slot);
  if (hit)
    return hit > 0 ? PL_OK : PL_ENOMEM;
  PL_TRY(bpe_merge_word(c, w, (int32_t)n));
  size_t first = c->out->n;
  for (int32_t i = 0; i != -1; i = c->sym[i].next)
    if (c->sym[i].id >= 0) /* a byte with no token (broken vocab) is dropped, like llama.cpp */
      PL_TRY(pl_tok_emit(c, c->sym[i].id));
  pl_tok_wcache_put(c, &slot, word, n, first);
  return PL_OK;
}

/* ---- normalization ---- */

/* Normalize valid UTF-8 s[0..n) into c->cp (reused as bytes); the result in out, on. */
static int normalize(pl_tok_ctx *c, const char *s, size_t n, const char **out, size_t *on) {
  pl_norm nm = c->t->normalizer;
  int need = 0;
  for (size_t i = 0; i < n; i++) {
    unsigned char b = (unsigned char)s[i];
    /* NFC leaves text below U+0300 (lead bytes < 0xCC) as it is: nothing there decomposes
     * for NFC, and every second half of a composition is >= U+0300. NFD/NFK* change é, ² ... */
    if (b >= 0x80 && (nm != PL_NORM_NFC || b >= 0xCC)) {
      need = 1;
      break;
    }
  }
  if (!need) {
    *out = s;
    *on = n;
    return PL_OK;
  }
  utf8proc_option_t opt = UTF8PROC_STABLE;
  if (nm == PL_NORM_NFC || nm == PL_NORM_NFKC)
    opt |= UTF8PROC_COMPOSE;
  else
    opt |= UTF8PROC_DECOMPOSE;
  if (nm == PL_NORM_NFKC || nm == PL_NORM_NFKD)
    opt |= UTF8PROC_COMPAT;
  size_t cap = n + 16;
  for (;;) {
    PL_TRY(pl_tok_ctx_grow((void **)&c->cp, &c->cp_cap, cap, sizeof *c->cp));
    utf8proc_ssize_t r = utf8proc_decompose((const utf8proc_uint8_t *)s, (utf8proc_ssize_t)n,
                                            (utf8proc_int32_t *)c->cp, (utf8proc_ssize_t)c->cp_cap, opt);
    if (r < 0)
      return pl_fail(PL_EINTERNAL, "tokenizer: normalization failed: %s", utf8proc_errmsg(r));
    if ((size_t)r <= c->cp_cap) {
      /* composes in place, then writes UTF-8 over the same buffer (4 bytes per code point) */
      utf8proc_ssize_t b = utf8proc_reencode((utf8proc_int32_t *)c->cp, r, opt);
      if (b < 0)
        return pl_fail(PL_EINTERNAL, "tokenizer: normalization failed: %s", utf8proc_errmsg(b));
      *out = (const char *)c->cp;
      *on = (size_t)b;
      return PL_OK;
    }
    cap = (size_t)r;
  }
}

/* ---- fragment ---- */

int pl_bpe_encode(pl_tok_ctx *c, const char *text, size_t len) {
  const pl_tokenizer *t = c->t;
  PL_TRY(pl_tok_wcache_ensure(c, len));
  const unsigned char *s = (const unsigned char *)text;
  size_t i = 0;
  while (i < len) {
    /* maximal well-formed run [i, j) */
    size_t j = i;
    while (j < len) {
      if (s[j] < 0x80) {
        j++;
        continue;
      }
      int l = pl_utf8_len(s + j, len - j);
      if (l == 0)
        break;
      j += (size_t)l;
    }
    if (j > i) {
      const char *run = text + i;
      size_t rn = j - i;
      if (t->normalizer != PL_NORM_NONE)
        PL_TRY(normalize(c, run, rn, &run, &rn));
      if (t->pretok)
        PL_TRY(pl_pretok_split(t->pretok, c, run, rn, bpe_word));
      else
        PL_TRY(bpe_word(c, run, rn));
    }
    if (j < len) { /* one ill-formed byte: its own byte token, else U+FFFD */
      int32_t id = t->byte_tok[s[j]];
      if (id >= 0)
        PL_TRY(pl_tok_emit(c, id));
      else
        PL_TRY(bpe_word(c, "\xef\xbf\xbd", 3));
      j++;
    }
    i = j;
  }
  return PL_OK;
}
