/* Tokenizer core: vocabulary storage (string pool + hash), merge table, special-token trie,
 * the encode driver (special tokens first, then SPM or BPE on the text between them, BOS/EOS
 * as the vocabulary says), decode, accessors and the load dispatch.
 *
 * Invariants after pl_tok_finalize: text_off/piece_off are monotone with n_vocab + 1 entries;
 * every id in hash/trie/merges/byte_tok/eog is in [0, n_vocab); nothing is written again.
 */
#include "tokenizer/tokenizer_impl.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <xxhash.h>

#include "util/alloc.h"
#include "util/array.h"
#include "util/error.h"

/* ---- token buffer ---------------------------------------------------------------------- */

int pl_token_buf_push(pl_token_buf *b, int32_t id) {
  if (pl_array_grow(&b->ids, &b->cap, b->n + 1, sizeof *b->ids, 64))
    return pl_fail(PL_ENOMEM, "token buffer: out of memory");
  b->ids[b->n++] = id;
  return PL_OK;
}

void pl_token_buf_free(pl_token_buf *b) {
  if (!b)
    return;
  pl_free(b->ids);
  b->ids = NULL;
  b->n = b->cap = 0;
}

/* ---- building -------------------------------------------------------------------------- */

pl_tokenizer *pl_tok_new(void) {
  pl_tokenizer *t = pl_calloc(1, sizeof *t);
  if (!t)
    return NULL;
  t->bos = t->eos = t->eot = t->eom = t->unk = t->pad = -1;
  for (int i = 0; i < 256; i++)
    t->byte_tok[i] = -1;
  return t;
}

int pl_tok_set_str(char **dst, const char *s, size_t n) {
  pl_free(*dst);
  *dst = pl_strndup(s, n);
  return *dst ? PL_OK : pl_fail(PL_ENOMEM, "tokenizer: out of memory");
}

static uint32_t pow2_at_least(size_t n) {
  uint32_t m = 16;
  while (m < n)
    m <<= 1;
  return m;
}

int32_t pl_tok_lookup(const pl_tokenizer *t, const char *s, size_t n) {
  uint32_t h = (uint32_t)XXH3_64bits(s, n) & t->hash_mask;
  for (;;) {
    int32_t id = t->hash[h];
    if (id < 0)
      return -1;
    uint32_t a = t->text_off[id], b = t->text_off[id + 1];
    if (b - a == n && memcmp(t->text_pool + a, s, n) == 0)
      return id;
    h = (h + 1) & t->hash_mask;
  }
}

int pl_tok_set_vocab(pl_tokenizer *t, int32_t n, const char *const *txt, const uint32_t *len) {
  if (n <= 0)
    return pl_fail(PL_EFORMAT, "tokenizer: empty vocabulary");
  size_t total = 0;
  for (int32_t i = 0; i < n; i++)
    total += len[i];
  if (total > UINT32_MAX - 1)
    return pl_fail(PL_EFORMAT, "tokenizer: vocabulary text too large");
  t->n_vocab = n;
  t->text_pool = pl_malloc(total + 1);
  t->text_off = pl_malloc(((size_t)n + 1) * sizeof *t->text_off);
  t->attr = pl_calloc((size_t)n, sizeof *t->attr);
  uint32_t hsize = pow2_at_least((size_t)n * 2);
  t->hash = pl_malloc((size_t)hsize * sizeof *t->hash);
  if (!t->text_pool || !t->text_off || !t->attr || !t->hash)
    return pl_fail(PL_ENOMEM, "tokenizer: out of memory (vocab of %d)", (int)n);
  t->hash_mask = hsize - 1;
  memset(t->hash, 0xff, (size_t)hsize * sizeof *t->hash);
  uint32_t off = 0;
  for (int32_t i = 0; i < n; i++) {
    t->text_off[i] = off;
    if (len[i])
      memcpy(t->text_pool + off, txt[i], len[i]);
    off += len[i];
    t->attr[i] = PL_TOKATTR_NORMAL;
    if (len[i] > t->max_token_len)
      t->max_token_len = len[i];
  }
  t->text_off[n] = off;
  t->text_pool[off] = 0;
  for (int32_t i = 0; i < n; i++) {
    const char *s = t->text_pool + t->text_off[i];
    size_t l = t->text_off[i + 1] - t->text_off[i];
    if (l == 0)
      continue; /* holes (unused ids) are not looked up */
    uint32_t h = (uint32_t)XXH3_64bits(s, l) & t->hash_mask;
    int dup = 0;
    while (t->hash[h] >= 0) {
      int32_t o = t->hash[h];
      if (t->text_off[o + 1] - t->text_off[o] == l && memcmp(t->text_pool + t->text_off[o], s, l) == 0) {
        dup = 1;
        break;
      }
      h = (h + 1) & t->hash_mask;
    }
    if (!dup)
      t->hash[h] = i;
  }
  return PL_OK;
}

static inline uint32_t merge_slot(uint64_t key, uint32_t mask) {
  return (uint32_t)((key * 0x9E3779B97F4A7C15ull) >> 32) & mask;
}

int pl_tok_merges_reserve(pl_tokenizer *t, size_t n) {
  uint32_t size = pow2_at_least(n * 2 + 1);
  t->mkey = pl_calloc(size, sizeof *t->mkey);
  t->mrank = pl_malloc((size_t)size * sizeof *t->mrank);
  t->mres = pl_malloc((size_t)size * sizeof *t->mres);
  if (!t->mkey || !t->mrank || !t->mres)
    return pl_fail(PL_ENOMEM, "tokenizer: out of memory (%zu merges)", n);
  t->mmask = size - 1;
  return PL_OK;
}

int pl_tok_add_merge(pl_tokenizer *t, const char *a, size_t alen, const char *b, size_t blen,
                     int32_t rank) {
  int32_t l = pl_tok_lookup(t, a, alen), r = pl_tok_lookup(t, b, blen);
  if (l < 0 || r < 0 || alen + blen > 1024)
    return PL_OK;
  char tmp[1024];
  memcpy(tmp, a, alen);
  memcpy(tmp + alen, b, blen);
  int32_t m = pl_tok_lookup(t, tmp, alen + blen);
  if (m < 0)
    return PL_OK;
  if (t->n_merges * 2 + 1 > (size_t)t->mmask + 1)
    return pl_fail(PL_EINTERNAL, "tokenizer: merge table overfull");
  uint64_t key = (((uint64_t)(uint32_t)l << 32) | (uint32_t)r) + 1;
  uint32_t h = merge_slot(key, t->mmask);
  while (t->mkey[h]) {
    if (t->mkey[h] == key)
      return PL_OK; /* first (lowest rank) wins */
    h = (h + 1) & t->mmask;
  }
  t->mkey[h] = key;
  t->mrank[h] = rank;
  t->mres[h] = m;
  t->n_merges++;
  return PL_OK;
}

int pl_tok_merge_get(const pl_tokenizer *t, int32_t l, int32_t r, int32_t *rank, int32_t *res) {
  if (!t->mkey || l < 0 || r < 0)
    return 0;
  uint64_t key = (((uint64_t)(uint32_t)l << 32) | (uint32_t)r) + 1;
  uint32_t h = merge_slot(key, t->mmask);
  for (;;) {
    uint64_t k = t->mkey[h];
    if (k == key) {
      *rank = t->mrank[h];
      *res = t->mres[h];
      return 1;
    }
    if (!k)
      return 0;
    h = (h + 1) & t->mmask;
  }
}

/* Decoded bytes of one token into dst (capacity >= text length: decoding never grows). */
static size_t make_piece(const pl_tokenizer *t, int32_t id, char *dst) {
  const char *s = t->text_pool + t->text_off[id];
  size_t n = t->text_off[id + 1] - t->text_off[id];
  uint16_t a = t->attr[id];
  if (a & (PL_TOKATTR_CONTROL | PL_TOKATTR_UNKNOWN | PL_TOKATTR_USER_DEFINED)) {
    memcpy(dst, s, n);
    return n;
  }
  if ((a & PL_TOKATTR_BYTE) && n == 6 && s[0] == '<' && s[1] == '0' && s[2] == 'x' && s[5] == '>' &&
      isxdigit((unsigned char)s[3]) && isxdigit((unsigned char)s[4])) {
    char hex[3] = {s[3], s[4], 0};
    dst[0] = (char)strtol(hex, NULL, 16);
    return 1;
  }
  size_t o = 0;
  if (t->kind == PL_TOK_BPE && t->byte_level) {
    for (size_t i = 0; i < n;) {
      int l = pl_utf8_len((const unsigned char *)s + i, n - i);
      if (l == 0) { /* not UTF-8: keep the byte */
        dst[o++] = s[i++];
        continue;
      }
      uint32_t cp = (unsigned char)s[i];
      if (l > 1) {
        cp &= (l == 2) ? 0x1F : (l == 3) ? 0x0F : 0x07;
        for (int k = 1; k < l; k++)
          cp = (cp << 6) | ((unsigned char)s[i + k] & 0x3F);
      }
      int b = pl_bpe_cp_to_byte(cp);
      if (b >= 0) {
        dst[o++] = (char)b;
      } else { /* a character outside the byte alphabet: keep its UTF-8 */
        memcpy(dst + o, s + i, (size_t)l);
        o += (size_t)l;
      }
      i += (size_t)l;
    }
    return o;
  }
  /* SPM (and non-byte-level BPE): "▁" (E2 96 81) is a space */
  for (size_t i = 0; i < n;) {
    if (i + 3 <= n && (unsigned char)s[i] == 0xE2 && (unsigned char)s[i + 1] == 0x96 &&
        (unsigned char)s[i + 2] == 0x81) {
      dst[o++] = ' ';
      i += 3;
    } else {
      dst[o++] = s[i++];
    }
  }
  return o;
}

static int trie_insert(pl_tokenizer *t, const char *s, size_t n, int32_t id) {
  int32_t node = 0;
  for (size_t i = 0; i < n; i++) {
    uint8_t c = (uint8_t)s[i];
    int32_t ch = t->trie[node].child;
    while (ch >= 0 && t->trie[ch].byte != c)
      ch = t->trie[ch].sibling;
    if (ch < 0) {
      if (pl_array_grow(&t->trie, &t->cap_trie, (size_t)t->n_trie + 1, sizeof *t->trie, 1))
        return pl_fail(PL_ENOMEM, "tokenizer: out of memory (special tokens)");
      ch = t->n_trie++;
      t->trie[ch] = (pl_tok_trie_node){.child = -1, .sibling = t->trie[node].child, .id = -1, .byte = c};
      t->trie[node].child = ch;
    }
    node = ch;
  }
  if (t->trie[node].id < 0)
    t->trie[node].id = id;
  return PL_OK;
}

static int add_eog(pl_tokenizer *t, int32_t id) {
  if (id < 0 || id >= t->n_vocab)
    return PL_OK;
  for (int i = 0; i < t->n_eog; i++)
    if (t->eog[i] == id)
      return PL_OK;
  int32_t *p = pl_realloc(t->eog, (size_t)(t->n_eog + 1) * sizeof *p);
  if (!p)
    return pl_fail(PL_ENOMEM, "tokenizer: out of memory");
  t->eog = p;
  t->eog[t->n_eog++] = id;
  return PL_OK;
}

/* Token texts that end a turn or the text (llama.cpp's list, which follows the models). */
static const char *const eog_texts[] = {
    "<|eot_id|>", "<|im_end|>", "<|end|>", "<|return|>", "<|call|>", "<end_of_turn>",
    "<|endoftext|>", "<|eom_id|>", "<EOT>", "_<EOT>", "<|end_of_text|>", "<end_of_utterance>", "</s>",
    "<\xef\xbd\x9c" "end\xe2\x96\x81" "of\xe2\x96\x81" "sentence\xef\xbd\x9c>", NULL};
static const char *const eot_texts[] = {
    "<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<|end_of_text|>",
    "<EOT>", "_<EOT>", "<\xef\xbd\x9c" "end\xe2\x96\x81" "of\xe2\x96\x81" "sentence\xef\xbd\x9c>", NULL};

int pl_tok_add_eog_id(pl_tokenizer *t, int32_t id) { return add_eog(t, id); }

int pl_tok_finalize(pl_tokenizer *t) {
  int32_t n = t->n_vocab;
  /* ids out of range are "none" */
  int32_t *ids[] = {&t->bos, &t->eos, &t->eot, &t->eom, &t->unk, &t->pad};
  for (size_t i = 0; i < sizeof ids / sizeof ids[0]; i++)
    if (*ids[i] >= n)
      *ids[i] = -1;
  if (t->add_bos && t->bos < 0)
    t->add_bos = 0;
  if (t->add_eos && t->eos < 0)
    t->add_eos = 0;

  /* pieces */
  t->piece_pool = pl_malloc((size_t)t->text_off[n] + 1);
  t->piece_off = pl_malloc(((size_t)n + 1) * sizeof *t->piece_off);
  if (!t->piece_pool || !t->piece_off)
    return pl_fail(PL_ENOMEM, "tokenizer: out of memory (pieces)");
  uint32_t off = 0;
  for (int32_t i = 0; i < n; i++) {
    t->piece_off[i] = off;
    size_t l = make_piece(t, i, t->piece_pool + off);
    off += (uint32_t)l;
    if (l > t->max_piece_len)
      t->max_piece_len = l;
  }
  t->piece_off[n] = off;

  /* byte tokens */
  for (int b = 0; b < 256; b++) {
    int32_t id = -1;
    if (t->kind == PL_TOK_BPE && t->byte_level) {
      uint32_t cp = pl_bpe_byte_to_cp((uint8_t)b);
      char u[3];
      size_t ul;
      if (cp < 0x80) {
        u[0] = (char)cp;
        ul = 1;
      } else {
        u[0] = (char)(0xC0 | (cp >> 6));
        u[1] = (char)(0x80 | (cp & 0x3F));
        ul = 2;
      }
      id = pl_tok_lookup(t, u, ul);
    } else {
      char hex[8];
      snprintf(hex, sizeof hex, "<0x%02X>", b);
      id = pl_tok_lookup(t, hex, 6);
      if (id < 0 && t->kind == PL_TOK_SPM) {
        char one = (char)b;
        id = pl_tok_lookup(t, &one, 1);
      }
    }
    /* only a token that decodes to exactly this byte can stand for it (DeepSeek spells the
     * never-valid bytes C0 C1 F5..FF with user-defined tokens whose text is raw) */
    if (id >= 0 && !(t->piece_off[id + 1] - t->piece_off[id] == 1 &&
                     (unsigned char)t->piece_pool[t->piece_off[id]] == (unsigned char)b))
      id = -1;
    t->byte_tok[b] = id;
  }

  /* SPM: a merge joins a left span ending in X and a right span starting with "▁" only
   * through a token holding X"▁"; when no token has "▁" after another character, the text
   * can be merged one word ("▁"-run + rest) at a time with the same result. */
  if (t->kind == PL_TOK_SPM) {
    t->spm_word_split = 1;
    for (int32_t i = 0; i < n && t->spm_word_split; i++) {
      const char *s = t->text_pool + t->text_off[i];
      size_t l = t->text_off[i + 1] - t->text_off[i], k = 0;
      while (k + 3 <= l && memcmp(s + k, "\xe2\x96\x81", 3) == 0)
        k += 3;
      for (; k + 3 <= l; k++)
        if (memcmp(s + k, "\xe2\x96\x81", 3) == 0) {
          t->spm_word_split = 0;
          break;
        }
    }
  }

  /* special-token trie */
  t->cap_trie = 256;
  t->trie = pl_malloc((size_t)t->cap_trie * sizeof *t->trie);
  if (!t->trie)
    return pl_fail(PL_ENOMEM, "tokenizer: out of memory");
  t->trie[0] = (pl_tok_trie_node){.child = -1, .sibling = -1, .id = -1, .byte = 0};
  t->n_trie = 1;
  for (int32_t i = 0; i < n; i++) {
    if (!(t->attr[i] & (PL_TOKATTR_CONTROL | PL_TOKATTR_UNKNOWN | PL_TOKATTR_USER_DEFINED)))
      continue;
    size_t l = t->text_off[i + 1] - t->text_off[i];
    if (l == 0)
      continue;
    PL_TRY(trie_insert(t, t->text_pool + t->text_off[i], l, i));
    t->special_first[(uint8_t)t->text_pool[t->text_off[i]]] = 1;
  }

  /* end of generation */
  if (t->eot < 0) {
    for (int k = 0; eot_texts[k] && t->eot < 0; k++)
      t->eot = pl_tok_lookup(t, eot_texts[k], strlen(eot_texts[k]));
  }
  if (t->eom < 0)
    t->eom = pl_tok_lookup(t, "<|eom_id|>", 10);
  PL_TRY(add_eog(t, t->eos));
  PL_TRY(add_eog(t, t->eot));
  PL_TRY(add_eog(t, t->eom));
  for (int k = 0; eog_texts[k]; k++)
    PL_TRY(add_eog(t, pl_tok_lookup(t, eog_texts[k], strlen(eog_texts[k]))));

  /* template rendering needs the BOS/EOS text */
  if (!t->bos_text && t->bos >= 0)
    PL_TRY(pl_tok_set_str(&t->bos_text, t->text_pool + t->text_off[t->bos],
                          t->text_off[t->bos + 1] - t->text_off[t->bos]));
  if (!t->eos_text && t->eos >= 0)
    PL_TRY(pl_tok_set_str(&t->eos_text, t->text_pool + t->text_off[t->eos],
                          t->text_off[t->eos + 1] - t->text_off[t->eos]));
  if (!t->pre_name)
    PL_TRY(pl_tok_set_str(&t->pre_name, "", 0));
  return PL_OK;
}

void pl_tokenizer_free(pl_tokenizer *t) {
  if (!t)
    return;
  pl_free(t->text_pool);
  pl_free(t->text_off);
  pl_free(t->piece_pool);
  pl_free(t->piece_off);
  pl_free(t->scores);
  pl_free(t->attr);
  pl_free(t->hash);
  pl_free(t->mkey);
  pl_free(t->mrank);
  pl_free(t->mres);
  pl_pretok_free(t->pretok);
  pl_free(t->trie);
  pl_free(t->eog);
  pl_free(t->chat_template);
  pl_free(t->bos_text);
  pl_free(t->eos_text);
  pl_free(t->pre_name);
  pl_free(t);
}

/* ---- scratch --------------------------------------------------------------------------- */

int pl_tok_ctx_grow(void **p, size_t *cap, size_t need, size_t elem) {
  if (pl_array_grow(p, cap, need, elem, 64))
    return pl_fail(PL_ENOMEM, "tokenizer: out of memory");
  return PL_OK;
}

void pl_tok_heap_push(pl_tok_ctx *c, pl_tok_heap_ent e) {
  pl_tok_heap_ent *h = c->heap;
  size_t i = c->heap_n++;
  while (i > 0) {
    size_t p = (i - 1) / 2;
    if (h[p].key <= e.key)
      break;
    h[i] = h[p];
    i = p;
  }
  h[i] = e;
}

pl_tok_heap_ent pl_tok_heap_pop(pl_tok_ctx *c) {
  pl_tok_heap_ent *h = c->heap;
  pl_tok_heap_ent top = h[0], last = h[--c->heap_n];
  size_t n = c->heap_n, i = 0;
  for (;;) {
    size_t l = 2 * i + 1;
    if (l >= n)
      break;
    size_t m = (l + 1 < n && h[l + 1].key < h[l].key) ? l + 1 : l;
    if (last.key <= h[m].key)
      break;
    h[i] = h[m];
    i = m;
  }
  if (n)
    h[i] = last;
  return top;
}

static void ctx_free(pl_tok_ctx *c) {
  pl_free(c->sym);
  pl_free(c->heap);
  pl_free(c->buf);
  pl_free(c->buf2);
  pl_free(c->cp);
  pl_tok_wcache_free(c);
  pl_pretok_ctx_free(c);
}

/* ---- encode ---------------------------------------------------------------------------- */

/* Longest special token at s[0..n) that this call may match; -1 if none. */
static int32_t match_special(const pl_tokenizer *t, const unsigned char *s, size_t n,
                             int parse_special, size_t *mlen) {
  int32_t node = 0, best = -1;
  for (size_t i = 0; i < n; i++) {
    int32_t ch = t->trie[node].child;
    while (ch >= 0 && t->trie[ch].byte != s[i])
      ch = t->trie[ch].sibling;
    if (ch < 0)
      break;
    node = ch;
    int32_t id = t->trie[node].id;
    if (id >= 0) {
      uint16_t a = t->attr[id];
      if ((a & PL_TOKATTR_USER_DEFINED) || (parse_special && (a & (PL_TOKATTR_CONTROL | PL_TOKATTR_UNKNOWN)))) {
        best = id;
        *mlen = i + 1;
      }
    }
  }
  return best;
}

static int is_ws(char ch) { return ch == ' ' || (ch >= '\t' && ch <= '\r'); }

/* One maximal run of text between special tokens. Each run starts the input or follows a
 * special token, so SPM gives every run the "▁" prefix (llama.cpp's is_prev_special). */
static int encode_text(pl_tok_ctx *c, const char *s, size_t n) {
  if (n == 0)
    return PL_OK;
  if (c->t->kind == PL_TOK_SPM)
    return pl_spm_encode(c, s, n, c->t->add_space_prefix);
  return pl_bpe_encode(c, s, n);
}

int pl_tokenizer_encode(const pl_tokenizer *t, const char *text, size_t len, int add_special,
                        int parse_special, pl_token_buf *out) {
  if (!t || !out || (!text && len))
    return pl_fail(PL_EINVAL, "pl_tokenizer_encode: NULL argument");
  size_t n0 = out->n;
  pl_tok_ctx c = {.t = t, .out = out};
  int rc = PL_OK;
  if (add_special && t->add_bos)
    rc = pl_token_buf_push(out, t->bos);
  const unsigned char *s = (const unsigned char *)text;
  size_t frag = 0, p = 0;
  while (rc == PL_OK && p < len) {
    if (!t->special_first[s[p]]) {
      p++;
      continue;
    }
    size_t ml = 0;
    int32_t id = match_special(t, s + p, len - p, parse_special, &ml);
    if (id < 0) {
      p++;
      continue;
    }
    size_t end = p;
    if (t->attr[id] & PL_TOKATTR_LSTRIP)
      while (end > frag && is_ws(text[end - 1]))
        end--;
    rc = encode_text(&c, text + frag, end - frag);
    if (rc == PL_OK)
      rc = pl_token_buf_push(out, id);
    p += ml;
    if (t->attr[id] & PL_TOKATTR_RSTRIP)
      while (p < len && is_ws(text[p]))
        p++;
    frag = p;
  }
  if (rc == PL_OK)
    rc = encode_text(&c, text + frag, len - frag);
  if (rc == PL_OK && add_special && t->add_eos)
    rc = pl_token_buf_push(out, t->eos);
  ctx_free(&c);
  if (rc != PL_OK)
    out->n = n0;
  return rc;
}

/* ---- decode ---------------------------------------------------------------------------- */

const char *pl_tokenizer_piece(const pl_tokenizer *t, int32_t id, size_t *len) {
  if (!t || id < 0 || id >= t->n_vocab) {
    if (len)
      *len = 0;
    return NULL;
  }
  if (len)
    *len = t->piece_off[id + 1] - t->piece_off[id];
  return t->piece_pool + t->piece_off[id];
}

const char *pl_tokenizer_token_text(const pl_tokenizer *t, int32_t id, size_t *len) {
  if (!t || id < 0 || id >= t->n_vocab) {
    if (len)
      *len = 0;
    return NULL;
  }
  if (len)
    *len = t->text_off[id + 1] - t->text_off[id];
  return t->text_pool + t->text_off[id];
}

int32_t pl_tokenizer_find(const pl_tokenizer *t, const char *text, size_t len) {
  return t ? pl_tok_lookup(t, text, len) : -1;
}

int pl_tokenizer_decode(const pl_tokenizer *t, const int32_t *ids, size_t n, int flags,
                        char **out, size_t *out_len) {
  *out = NULL;
  if (out_len)
    *out_len = 0;
  size_t total = 0;
  for (size_t i = 0; i < n; i++) {
    if (ids[i] < 0 || ids[i] >= t->n_vocab)
      return pl_fail(PL_EINVAL, "decode: token id %d out of range [0, %d)", (int)ids[i], (int)t->n_vocab);
    total += t->piece_off[ids[i] + 1] - t->piece_off[ids[i]];
  }
  char *buf = pl_malloc(total + 1);
  if (!buf)
    return pl_fail(PL_ENOMEM, "decode: out of memory");
  size_t o = 0;
  int strip = (flags & PL_DECODE_STRIP_SPACE) && t->add_space_prefix;
  for (size_t i = 0; i < n; i++) {
    int32_t id = ids[i];
    if ((flags & PL_DECODE_SKIP_SPECIAL) && (t->attr[id] & (PL_TOKATTR_CONTROL | PL_TOKATTR_UNKNOWN)))
      continue;
    const char *p = t->piece_pool + t->piece_off[id];
    size_t l = t->piece_off[id + 1] - t->piece_off[id];
    if (strip && l) {
      if (p[0] == ' ') {
        p++;
        l--;
      }
      strip = 0;
    }
    memcpy(buf + o, p, l);
    o += l;
  }
  buf[o] = 0;
  *out = buf;
  if (out_len)
    *out_len = o;
  return PL_OK;
}

/* ---- accessors ------------------------------------------------------------------------- */

pl_tok_kind pl_tokenizer_kind(const pl_tokenizer *t) { return t->kind; }
int32_t pl_tokenizer_n_vocab(const pl_tokenizer *t) { return t->n_vocab; }
int32_t pl_tokenizer_bos(const pl_tokenizer *t) { return t->bos; }
int32_t pl_tokenizer_eos(const pl_tokenizer *t) { return t->eos; }
int32_t pl_tokenizer_eot(const pl_tokenizer *t) { return t->eot; }
int32_t pl_tokenizer_unk(const pl_tokenizer *t) { return t->unk; }
int32_t pl_tokenizer_pad(const pl_tokenizer *t) { return t->pad; }
int pl_tokenizer_add_bos(const pl_tokenizer *t) { return t->add_bos; }
int pl_tokenizer_add_eos(const pl_tokenizer *t) { return t->add_eos; }
int pl_tokenizer_add_space_prefix(const pl_tokenizer *t) { return t->add_space_prefix; }
size_t pl_tokenizer_max_piece_len(const pl_tokenizer *t) { return t->max_piece_len; }
const char *pl_tokenizer_chat_template(const pl_tokenizer *t) { return t->chat_template; }
const char *pl_tokenizer_bos_text(const pl_tokenizer *t) { return t->bos_text; }
const char *pl_tokenizer_eos_text(const pl_tokenizer *t) { return t->eos_text; }
const char *pl_tokenizer_pre_name(const pl_tokenizer *t) { return t->pre_name; }

int pl_tokenizer_is_eog(const pl_tokenizer *t, int32_t id) {
  for (int i = 0; i < t->n_eog; i++)
    if (t->eog[i] == id)
      return 1;
  return 0;
}

const int32_t *pl_tokenizer_eog_ids(const pl_tokenizer *t, int *n) {
  *n = t->n_eog;
  return t->eog;
}

int pl_tokenizer_token_attr(const pl_tokenizer *t, int32_t id) {
  return (id >= 0 && id < t->n_vocab) ? t->attr[id] : 0;
}

int pl_tokenizer_is_control(const pl_tokenizer *t, int32_t id) {
  return (pl_tokenizer_token_attr(t, id) & (PL_TOKATTR_CONTROL | PL_TOKATTR_UNKNOWN)) != 0;
}

/* ---- load dispatch --------------------------------------------------------------------- */

int pl_tokenizer_load(const char *path, pl_tokenizer **out) {
  *out = NULL;
  if (!path)
    return pl_fail(PL_EINVAL, "tokenizer: no path");
  size_t n = strlen(path);
  struct stat st;
  int is_dir = stat(path, &st) == 0 && S_ISDIR(st.st_mode);
  if (!is_dir && n >= 5 && strcmp(path + n - 5, ".gguf") == 0) {
    pl_gguf *g = NULL;
    PL_TRY(pl_gguf_open(path, &g));
    int rc = pl_tokenizer_load_gguf(g, out);
    pl_gguf_close(g);
    return rc < 0 ? pl_fail_prefix(rc, path) : rc;
  }
  return pl_tokenizer_load_hf(path, out);
}
