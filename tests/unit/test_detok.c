/* Streaming detokenizer. For every vocabulary (12 GGUFs + 3 tokenizer.json):
 *   - the reference inputs, encoded and streamed token by token, come back exactly;
 *   - thousands of random id sequences (biased to byte tokens and multi-byte pieces, so
 *     characters split across tokens and ill-formed bytes are common) stream to exactly
 *     pl_utf8_sanitize(pl_tokenizer_decode(...)), every chunk valid UTF-8 on its own;
 * plus pl_utf8_sanitize against expectations from Python's bytes.decode(errors="replace"),
 * and the SPM leading-space rule. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "tokenizer/detok.h"
#include "tokenizer/tokenizer.h"
#include "util/alloc.h"
#include "util/error.h"

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static uint32_t rnd(void) {
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return (uint32_t)(rng >> 11);
}

static int valid_utf8(const char *s, size_t n) {
  char *tmp = malloc(3 * n + 1);
  size_t m = pl_utf8_sanitize(s, n, tmp);
  int ok = m == n && memcmp(tmp, s, n) == 0;
  free(tmp);
  return ok;
}

static void sanitize_vectors(void) {
  static const struct {
    const char *in, *out;
  } v[] = {
      {"a\xf1\x80\x80\xe1\x80\xc2" "b\x80" "c\x80\xbf" "d",
       "a\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd" "b\xef\xbf\xbd" "c\xef\xbf\xbd\xef\xbf\xbd" "d"},
      {"\xed\xa0\x80x", "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbdx"},
      {"\xc0\xaf", "\xef\xbf\xbd\xef\xbf\xbd"},
      {"\xf4\x90\x80\x80", "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"},
      {"\xe2\x82", "\xef\xbf\xbd"},
      {"\xe2\x82\xac", "\xe2\x82\xac"},
      {"\xf0\x9f\x98", "\xef\xbf\xbd"},
      {"\xf0\x9f\x98\x80", "\xf0\x9f\x98\x80"},
      {"\xe0\x80\xaf", "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"},
      {"\xff\xfe", "\xef\xbf\xbd\xef\xbf\xbd"},
      {"\xc3", "\xef\xbf\xbd"},
  };
  for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
    char out[64];
    size_t n = pl_utf8_sanitize(v[i].in, strlen(v[i].in), out);
    CHECK(n == strlen(v[i].out) && memcmp(out, v[i].out, n) == 0, "sanitize case %zu", i);
  }
}

typedef struct {
  char *s;
  size_t n, cap;
} sbuf;
static void sb_add(sbuf *b, const char *p, size_t n) {
  if (b->n + n + 1 > b->cap) {
    b->cap = (b->n + n + 1) * 2;
    b->s = realloc(b->s, b->cap);
  }
  memcpy(b->s + b->n, p, n);
  b->n += n;
  b->s[b->n] = 0;
}

/* Stream ids through a detokenizer; checks every chunk is valid UTF-8. */
static void stream(pl_detok *d, const int32_t *ids, size_t n, sbuf *out) {
  out->n = 0;
  sb_add(out, "", 0);
  for (size_t i = 0; i < n; i++) {
    const char *t;
    size_t l;
    int rc = pl_detok_push(d, ids[i], &t, &l);
    CHECK(rc == 0, "push %d: %s", (int)ids[i], pl_last_error());
    CHECK(valid_utf8(t, l), "chunk after id %d is not valid UTF-8", (int)ids[i]);
    CHECK(d->npend <= 3, "held %d bytes", d->npend);
    sb_add(out, t, l);
  }
  const char *t;
  size_t l;
  pl_detok_flush(d, &t, &l);
  CHECK(valid_utf8(t, l), "flush chunk not valid UTF-8");
  sb_add(out, t, l);
}

static char *slurp(const char *path, size_t *n) {
  FILE *f = fopen(path, "rb");
  if (!f)
    return NULL;
  fseek(f, 0, SEEK_END);
  long sz = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *buf = malloc((size_t)sz + 1);
  *n = fread(buf, 1, (size_t)sz, f);
  buf[*n] = 0;
  fclose(f);
  return buf;
}

static void test_vocab(const char *label, const char *rel, const char *inp_name) {
  pl_tokenizer *t = NULL;
  int rc = pl_tokenizer_load(data_path(rel), &t);
  CHECK(rc == 0, "load %s: %s", rel, pl_last_error());
  if (rc)
    return;
  int32_t nv = pl_tokenizer_n_vocab(t);
  sbuf got = {0};
  int ok_inputs = 0, n_inputs = 0, ok_random = 0, n_random = 0;

  /* 1. real inputs: encode, stream, compare with the input */
  char p[512];
  snprintf(p, sizeof p, "tokenizer-vectors/ggml-vocab-%s.gguf.inp", inp_name);
  size_t ni;
  char *inp = slurp(data_path(p), &ni);
  CHECK(inp != NULL, "%s", p);
  const char *sep = "\n__ggml_vocab_test__\n";
  pl_detok d;
  CHECK(pl_detok_init(&d, t, PL_DECODE_STRIP_SPACE) == 0, "init");
  for (char *s = inp; s && *s;) {
    char *e = strstr(s, sep);
    if (!e)
      break;
    pl_token_buf b = {0};
    CHECK(pl_tokenizer_encode(t, s, (size_t)(e - s), 0, 0, &b) == 0, "encode");
    stream(&d, b.ids, b.n, &got);
    int ok = got.n == (size_t)(e - s) && memcmp(got.s, s, got.n) == 0;
    CHECK(ok, "%s: streamed '%.*s' back as '%s'", label, (int)(e - s), s, got.s);
    ok_inputs += ok;
    n_inputs++;
    pl_token_buf_free(&b);
    s = e + strlen(sep);
  }
  pl_detok_free(&d);
  free(inp);

  /* 2. random sequences: byte tokens, pieces of multi-byte text, anything */
  static const char *const seeds[] = {"\xf0\x9f\x98\x80", "\xe4\xbd\xa0\xe5\xa5\xbd", "\xc3\xa9t\xc3\xa9",
                                      " \xd0\xbf\xd1\x80\xd0\xb8", "\xf0\x9f\xa6\x99 ok", "  \n\t x"};
  pl_token_buf pool = {0};
  for (size_t k = 0; k < sizeof seeds / sizeof seeds[0]; k++)
    pl_tokenizer_encode(t, seeds[k], strlen(seeds[k]), 0, 0, &pool);
  for (int b = 0; b < 256; b++) { /* the byte tokens: <0xNN> or byte-level characters */
    char hex[8];
    snprintf(hex, sizeof hex, "<0x%02X>", b);
    int32_t id = pl_tokenizer_find(t, hex, 6);
    if (id >= 0)
      pl_token_buf_push(&pool, id);
  }
  for (int flags = 0; flags < 4; flags++) {
    CHECK(pl_detok_init(&d, t, flags) == 0, "init");
    for (int iter = 0; iter < 300; iter++) {
      int32_t ids[48];
      size_t n = 1 + rnd() % 48;
      for (size_t i = 0; i < n; i++) {
        uint32_t r = rnd() % 4;
        if (r == 0 || pool.n == 0)
          ids[i] = (int32_t)(rnd() % (uint32_t)nv);
        else if (r == 1 && pl_tokenizer_kind(t) == PL_TOK_BPE)
          ids[i] = (int32_t)(rnd() % (uint32_t)(nv < 300 ? nv : 300)); /* low ids: single bytes */
        else
          ids[i] = pool.ids[rnd() % pool.n];
      }
      char *whole = NULL;
      size_t wl = 0;
      CHECK(pl_tokenizer_decode(t, ids, n, flags, &whole, &wl) == 0, "decode");
      char *ref = malloc(3 * wl + 1);
      size_t rl = pl_utf8_sanitize(whole, wl, ref);
      stream(&d, ids, n, &got);
      int ok = got.n == rl && memcmp(got.s, ref, rl) == 0;
      CHECK(ok, "%s: random sequence %d (flags %d) streams differently", label, iter, flags);
      ok_random += ok;
      n_random++;
      free(ref);
      pl_free(whole);
    }
    pl_detok_free(&d);
  }
  pl_token_buf_free(&pool);
  printf("%-22s inputs %d/%d, random sequences %d/%d\n", label, ok_inputs, n_inputs, ok_random, n_random);
  free(got.s);
  pl_tokenizer_free(t);
}

/* SPM leading space: stripped only with PL_DECODE_STRIP_SPACE and only once. */
static void leading_space(void) {
  pl_tokenizer *t = NULL;
  CHECK(pl_tokenizer_load(data_path("tokenizer-vectors/ggml-vocab-llama-spm.gguf"), &t) == 0, "load");
  if (!t)
    return;
  pl_token_buf b = {0};
  pl_tokenizer_encode(t, "Hello world", 11, 1, 0, &b); /* <s> ▁Hello ▁world */
  CHECK(b.n == 3 && b.ids[0] == 1, "ids");
  pl_detok d;
  sbuf got = {0};
  pl_detok_init(&d, t, PL_DECODE_STRIP_SPACE | PL_DECODE_SKIP_SPECIAL);
  stream(&d, b.ids, b.n, &got);
  CHECK(strcmp(got.s, "Hello world") == 0, "strip+skip: '%s'", got.s);
  pl_detok_free(&d);
  pl_detok_init(&d, t, 0); /* a continuation of a prompt keeps its space */
  stream(&d, b.ids + 1, 2, &got);
  CHECK(strcmp(got.s, " Hello world") == 0, "no strip: '%s'", got.s);
  pl_detok_free(&d);
  pl_detok_init(&d, t, PL_DECODE_STRIP_SPACE); /* BOS shown: the text does not start with ' ' */
  stream(&d, b.ids, b.n, &got);
  CHECK(strcmp(got.s, "<s> Hello world") == 0, "strip, BOS shown: '%s'", got.s);
  pl_detok_free(&d);
  free(got.s);
  pl_token_buf_free(&b);
  pl_tokenizer_free(t);
}

int main(void) {
  size_t live0 = pl_alloc_live_bytes();
  sanitize_vectors();
  leading_space();
  static const char *const g[] = {"llama-spm", "phi-3", "llama-bpe", "qwen2", "qwen35", "gpt-2",
                                  "deepseek-llm", "deepseek-coder", "falcon", "mpt", "starcoder", "refact"};
  for (size_t i = 0; i < sizeof g / sizeof g[0]; i++) {
    char rel[256];
    snprintf(rel, sizeof rel, "tokenizer-vectors/ggml-vocab-%s.gguf", g[i]);
    test_vocab(g[i], rel, g[i]);
  }
  test_vocab("hf:llama3", "tokenizers/llama3", "llama-bpe");
  test_vocab("hf:qwen3", "tokenizers/qwen3", "qwen2");
  test_vocab("hf:gpt2", "tokenizers/gpt2", "gpt-2");
  test_vocab("tinystories", "models/tinystories-280K.gguf", "llama-spm");
  CHECK(pl_alloc_live_bytes() == live0, "leak: %zu bytes", pl_alloc_live_bytes() - live0);
  return check_summary("test_detok");
}
