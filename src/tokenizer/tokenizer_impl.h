/* Tokenizer internals shared by tokenizer*.c (not part of the public contract).
 *
 * Vocabulary storage: all token strings in one pool (text_pool, offsets text_off[0..n]) and
 * all decoded pieces in another (piece_pool/piece_off), so a 150k vocab is 4 allocations, not
 * 150k. text -> id is an open-addressing hash (XXH3) over the pool. BPE merges are keyed by
 * (left id, right id) -> (rank, merged id), so merging never builds strings.
 *
 * Encoding scratch lives in a pl_tok_ctx created per encode call (thread safety: the
 * tokenizer itself is never written after pl_tok_finalize).
 */
#ifndef PL_MODEL_TOKENIZER_IMPL_H
#define PL_MODEL_TOKENIZER_IMPL_H
#include <stddef.h>
#include <stdint.h>

#include "tokenizer/tokenizer.h"

#define PL_PRETOK_MAX 8 /* regexes in one pre-tokenizer chain */

typedef struct pl_pretok pl_pretok;

/* Trie over special-token strings (CONTROL/UNKNOWN/USER_DEFINED), for leftmost-longest
 * matching in raw text. Node 0 is the root; children form a sibling list. */
typedef struct pl_tok_trie_node {
  int32_t child;   /* first child node, -1 none */
  int32_t sibling; /* next sibling, -1 none */
  int32_t id;      /* token ending here, -1 none */
  uint8_t byte;
} pl_tok_trie_node;

typedef enum { PL_NORM_NONE = 0, PL_NORM_NFC, PL_NORM_NFKC, PL_NORM_NFD, PL_NORM_NFKD } pl_norm;

struct pl_tokenizer {
  pl_tok_kind kind;
  int32_t n_vocab;

  char *text_pool;    /* token strings, concatenated */
  uint32_t *text_off; /* [n_vocab + 1] */
  char *piece_pool;   /* decoded bytes, concatenated */
  uint32_t *piece_off;
  float *scores;      /* [n_vocab] SPM merge scores (NULL for BPE) */
  uint16_t *attr;     /* [n_vocab] PL_TOKATTR_* */

  int32_t *hash;      /* [hash_mask + 1] token id or -1 */
  uint32_t hash_mask;

  uint64_t *mkey;     /* merges: (left << 32 | right) + 1 (0 = empty slot) */
  int32_t *mrank, *mres;
  uint32_t mmask;
  size_t n_merges;

  int32_t byte_tok[256]; /* token of each byte: SPM <0xNN>, BPE byte-level char; -1 none */

  /* BPE options */
  int byte_level;      /* bytes are spelled as GPT-2 unicode characters */
  int ignore_merges;   /* a whole word that is a token is taken as is (Llama 3) */
  int prefix_space;    /* HF ByteLevel add_prefix_space */
  pl_norm normalizer;  /* HF normalizer (NFC for Qwen3) */
  pl_pretok *pretok;

  /* SPM options */
  int add_space_prefix;
  int spm_word_split; /* no token has "▁" after another character: merge word by word */

  pl_tok_trie_node *trie;
  int32_t n_trie, cap_trie;
  uint8_t special_first[256]; /* bytes that may start a special token */

  int add_bos, add_eos;
  int32_t bos, eos, eot, eom, unk, pad;
  int32_t *eog;
  int n_eog;

  char *chat_template, *bos_text, *eos_text, *pre_name;
  size_t max_piece_len, max_token_len;
};

/* Per-call encoding scratch. Arrays grow with pl_realloc and are freed by pl_tok_ctx_free. */
typedef struct pl_tok_sym {
  int32_t start, len;  /* byte span in the text being merged */
  int32_t prev, next;  /* linked list; -1 ends */
  int32_t id;          /* BPE: current token id (-1: no token) */
} pl_tok_sym;

typedef struct pl_tok_heap_ent {
  uint64_t key;   /* priority (min first) << 32 | left symbol index */
  int32_t right;  /* right symbol index */
  int32_t size;   /* left.len + right.len when queued: detects stale entries */
} pl_tok_heap_ent;

typedef struct pl_tok_ctx {
  const pl_tokenizer *t;
  pl_token_buf *out;
  pl_tok_sym *sym;
  size_t sym_cap;
  pl_tok_heap_ent *heap;
  size_t heap_n, heap_cap;
  char *buf;           /* escaped / normalized / byte-encoded text */
  size_t buf_cap;
  char *buf2;
  size_t buf2_cap;
  int32_t *cp;         /* code points for normalization */
  size_t cp_cap;
  void *match[PL_PRETOK_MAX]; /* pcre2_match_data per chain level */
  void *gctx;                 /* pcre2 general context (pl_malloc) */
  struct pl_tok_wcache *wcache; /* bounded word -> ids cache, made lazily on long inputs */
} pl_tok_ctx;

/* ---- tokenizer.c: building (used by the loaders) ---- */
pl_tokenizer *pl_tok_new(void);
/* Copy the vocabulary strings (txt[i], len[i]) for ids 0..n-1, build the hash. Duplicate
 * strings keep the lowest id. */
int pl_tok_set_vocab(pl_tokenizer *t, int32_t n, const char *const *txt, const uint32_t *len);
int pl_tok_merges_reserve(pl_tokenizer *t, size_t n);
/* Add merge "a b" with `rank`; skipped (returns 0) when a, b or a+b is not a token. */
int pl_tok_add_merge(pl_tokenizer *t, const char *a, size_t alen, const char *b, size_t blen,
                     int32_t rank);
/* After vocab, attrs, scores, merges, special ids and options are set: pieces, byte tokens,
 * special trie, EOG list. */
int pl_tok_finalize(pl_tokenizer *t);
int32_t pl_tok_lookup(const pl_tokenizer *t, const char *s, size_t n);
int pl_tok_add_eog_id(pl_tokenizer *t, int32_t id); /* extra EOG ids (HF generation_config) */
int pl_tok_merge_get(const pl_tokenizer *t, int32_t l, int32_t r, int32_t *rank, int32_t *res);
int pl_tok_set_str(char **dst, const char *s, size_t n);

/* ---- scratch helpers ---- */
int pl_tok_ctx_grow(void **p, size_t *cap, size_t need, size_t elem);
void pl_tok_heap_push(pl_tok_ctx *c, pl_tok_heap_ent e); /* capacity reserved by caller */
pl_tok_heap_ent pl_tok_heap_pop(pl_tok_ctx *c);
static inline int pl_tok_emit(pl_tok_ctx *c, int32_t id) { return pl_token_buf_push(c->out, id); }

/* Length of the well-formed UTF-8 sequence at s[0..n), or 0 if s[0] starts none. */
static inline int pl_utf8_len(const unsigned char *s, size_t n) {
  unsigned c = s[0];
  if (c < 0x80)
    return 1;
  if (c < 0xC2)
    return 0;
  if (c < 0xE0) {
    return (n >= 2 && (s[1] & 0xC0) == 0x80) ? 2 : 0;
  }
  if (c < 0xF0) {
    if (n < 3 || (s[1] & 0xC0) != 0x80 || (s[2] & 0xC0) != 0x80)
      return 0;
    if (c == 0xE0 && s[1] < 0xA0)
      return 0; /* overlong */
    if (c == 0xED && s[1] >= 0xA0)
      return 0; /* surrogate */
    return 3;
  }
  if (c < 0xF5) {
    if (n < 4 || (s[1] & 0xC0) != 0x80 || (s[2] & 0xC0) != 0x80 || (s[3] & 0xC0) != 0x80)
      return 0;
    if (c == 0xF0 && s[1] < 0x90)
      return 0;
    if (c == 0xF4 && s[1] >= 0x90)
      return 0;
    return 4;
  }
  return 0;
}

/* ---- tokenizer_wcache.c: bounded per-call word cache ---- */
#define PL_WCACHE_MIN_INPUT 8192 /* inputs shorter than this do not pay for a cache */
typedef struct pl_tok_wslot {
  void *e;    /* the slot a miss will fill, NULL when the word cannot be cached */
  uint64_t h;
} pl_tok_wslot;
int pl_tok_wcache_ensure(pl_tok_ctx *c, size_t input_len);
void pl_tok_wcache_free(pl_tok_ctx *c);
/* 1: hit, ids emitted; 0: miss (slot says where to store); -1: out of memory emitting. */
int pl_tok_wcache_get(pl_tok_ctx *c, const char *w, size_t n, pl_tok_wslot *slot);
/* Remember the ids emitted since out->n == first for word w. */
void pl_tok_wcache_put(pl_tok_ctx *c, const pl_tok_wslot *slot, const char *w, size_t n, size_t first);

/* ---- tokenizer_spm.c ---- */
/* Encode one raw-text fragment (no special tokens in it). `prefix`: prepend the "▁". */
int pl_spm_encode(pl_tok_ctx *c, const char *text, size_t len, int prefix);

/* ---- tokenizer_bpe.c ---- */
int pl_bpe_encode(pl_tok_ctx *c, const char *text, size_t len);
/* GPT-2 byte <-> unicode code point map. */
uint32_t pl_bpe_byte_to_cp(uint8_t b);
int pl_bpe_cp_to_byte(uint32_t cp); /* -1 if cp is no byte's character */

/* ---- tokenizer_pretok.c ---- */
/* The regex chain llama.cpp uses for a GGUF tokenizer.ggml.pre name; also tells whether the
 * vocabulary ignores merges for whole-token words. PL_EUNSUPPORTED for unknown names. */
int pl_pretok_for_pre(const char *pre, const char *const **patterns, int *n, int *ignore_merges);
extern const char *const pl_pretok_gpt2_pattern;
int pl_pretok_create(const char *const *patterns, int n, pl_pretok **out);
void pl_pretok_free(pl_pretok *p);
int pl_pretok_n(const pl_pretok *p);
/* Split valid UTF-8 text[0..len) through the chain, calling word() for every piece in order
 * (matches and the gaps between them, never empty). Stops at the first nonzero return. */
typedef int (*pl_pretok_word_fn)(pl_tok_ctx *c, const char *w, size_t n);
int pl_pretok_split(const pl_pretok *p, pl_tok_ctx *c, const char *text, size_t len,
                    pl_pretok_word_fn word);
void pl_pretok_ctx_free(pl_tok_ctx *c);
#endif
