/* Tokenizer behaviours beyond the reference vectors:
 *   - TinyStories: "Once upon a time" with BOS -> 1 403 407 261 378 (tests/data/models/README.md);
 *   - invalid UTF-8 policy: each ill-formed byte is its own byte token, lossless, no crash;
 *   - random byte strings and random multi-script text round-trip on every GGUF vocabulary;
 *   - special tokens: CONTROL text only with parse_special, USER_DEFINED always, SPM space
 *     prefix after a special token, BOS/EOS from metadata;
 *   - Qwen3's NFC normalizer (tokenizer.json) vs the GGUF (none);
 *   - end-of-generation ids, chat templates and BOS/EOS text;
 *   - SPM word-by-word merging equals whole-text merging (white box);
 *   - every allocation failure during load/encode/decode returns an error and leaks nothing. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <utf8proc.h>

#include "check.h"
#include "model/gguf.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/tokenizer_impl.h"
#include "util/alloc.h"
#include "util/error.h"

static uint64_t rng = 0x1234567887654321ull;
static uint32_t rnd(void) {
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return (uint32_t)(rng >> 11);
}

static pl_tokenizer *load(const char *rel) {
  pl_tokenizer *t = NULL;
  int rc = pl_tokenizer_load(data_path(rel), &t);
  CHECK(rc == 0, "load %s: %s", rel, pl_last_error());
  return t;
}

static int same_ids(const pl_token_buf *a, const pl_token_buf *b) {
  return a->n == b->n && (a->n == 0 || memcmp(a->ids, b->ids, a->n * sizeof(int32_t)) == 0);
}

static int enc(const pl_tokenizer *t, const char *s, size_t n, int add, int parse, pl_token_buf *b) {
  b->n = 0;
  return pl_tokenizer_encode(t, s, n, add, parse, b);
}

/* What decode(encode(s)) must give: s itself, except that SPM cannot tell a literal "▁" from
 * a space, an ill-formed byte the vocabulary has no byte token for becomes U+FFFD, and a byte
 * of valid text that has no token at all is dropped (as llama.cpp does). */
static size_t expected_text(const pl_tokenizer *t, const char *s, size_t n, char *out) {
  size_t o = 0;
  for (size_t i = 0; i < n;) {
    int l = pl_utf8_len((const unsigned char *)s + i, n - i);
    if (l == 0) {
      if (t->byte_tok[(unsigned char)s[i]] >= 0) {
        out[o++] = s[i];
      } else {
        memcpy(out + o, "\xef\xbf\xbd", 3);
        o += 3;
      }
      i++;
    } else if (t->kind == PL_TOK_SPM && l == 3 && memcmp(s + i, "\xe2\x96\x81", 3) == 0) {
      out[o++] = ' ';
      i += 3;
    } else {
      /* BPE: a byte of valid text with no token at all (Falcon lacks 0x03..) is dropped */
      for (int k = 0; k < l; k++)
        if (t->kind == PL_TOK_SPM || t->byte_tok[(unsigned char)s[i + k]] >= 0)
          out[o++] = s[i + k];
      i += (size_t)l;
    }
  }
  return o;
}

static int roundtrip(const pl_tokenizer *t, const char *s, size_t n) {
  pl_token_buf b = {0};
  int ok = enc(t, s, n, 0, 0, &b) == 0;
  char *out = NULL, *want = malloc(3 * n + 1);
  size_t on = 0, wn = expected_text(t, s, n, want);
  ok = ok && pl_tokenizer_decode(t, b.ids, b.n, PL_DECODE_STRIP_SPACE, &out, &on) == 0;
  ok = ok && on == wn && memcmp(out, want, wn) == 0;
  pl_free(out);
  free(want);
  pl_token_buf_free(&b);
  return ok;
}

static void tinystories(void) {
  pl_tokenizer *t = load("models/tinystories-280K.gguf");
  if (!t)
    return;
  pl_token_buf b = {0};
  CHECK(enc(t, "Once upon a time", 16, 1, 0, &b) == 0, "encode");
  const int32_t want[] = {1, 403, 407, 261, 378};
  CHECK(b.n == 5 && memcmp(b.ids, want, sizeof want) == 0, "TinyStories ids (%zu)", b.n);
  CHECK(pl_tokenizer_bos(t) == 1 && pl_tokenizer_eos(t) == 2 && pl_tokenizer_add_bos(t), "bos/eos");
  CHECK(pl_tokenizer_n_vocab(t) == 512, "n_vocab");
  CHECK(pl_tokenizer_is_eog(t, 2) && !pl_tokenizer_is_eog(t, 1), "eog");
  char *s = NULL;
  pl_tokenizer_decode(t, b.ids, b.n, PL_DECODE_SKIP_SPECIAL | PL_DECODE_STRIP_SPACE, &s, NULL);
  CHECK(s && strcmp(s, "Once upon a time") == 0, "decode '%s'", s ? s : "");
  pl_free(s);
  pl_token_buf_free(&b);
  pl_tokenizer_free(t);
}

/* Ill-formed input: "a\xffb" on GPT-2 is [a][ÿ][b] (0xFF's byte-level character is ÿ). */
static void invalid_utf8(void) {
  static const char *const bad[] = {"\xff", "a\xff" "b", "\xe2\x82", "abc\xe2\x82", "\xed\xa0\x80",
                                    "\xc0\xaf", "\xf4\x90\x80\x80", "h\xc3\xa9llo\x80w\xc3\xb6rld",
                                    "\xf0\x9f\x98", " \xf0\x9f\x98\x80\xf0\x9f", "\x80\x80\x80  \xfe"};
  static const char *const vocabs[] = {"tokenizer-vectors/ggml-vocab-gpt-2.gguf", "tokenizer-vectors/ggml-vocab-llama-bpe.gguf",
                                       "tokenizer-vectors/ggml-vocab-llama-spm.gguf", "tokenizer-vectors/ggml-vocab-deepseek-llm.gguf",
                                       "tokenizers/qwen3", "models/tinystories-280K.gguf"};
  for (size_t v = 0; v < sizeof vocabs / sizeof vocabs[0]; v++) {
    pl_tokenizer *t = load(vocabs[v]);
    if (!t)
      continue;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
      size_t n = strlen(bad[i]);
      pl_token_buf a = {0}, b = {0};
      CHECK(enc(t, bad[i], n, 0, 0, &a) == 0 && enc(t, bad[i], n, 0, 0, &b) == 0, "encode");
      CHECK(same_ids(&a, &b), "deterministic");
      CHECK(roundtrip(t, bad[i], n), "%s: lossless for case %zu", vocabs[v], i);
      pl_token_buf_free(&a);
      pl_token_buf_free(&b);
    }
    pl_tokenizer_free(t);
  }
  pl_tokenizer *t = load("tokenizer-vectors/ggml-vocab-gpt-2.gguf");
  if (t) {
    pl_token_buf b = {0};
    enc(t, "a\xff" "b", 3, 0, 0, &b);
    int32_t ya = pl_tokenizer_find(t, "a", 1), yy = pl_tokenizer_find(t, "\xc3\xbf", 2), yb = pl_tokenizer_find(t, "b", 1);
    CHECK(b.n == 3 && b.ids[0] == ya && b.ids[1] == yy && b.ids[2] == yb, "gpt2 a\\xffb");
    pl_token_buf_free(&b);
    pl_tokenizer_free(t);
  }
  t = load("tokenizer-vectors/ggml-vocab-llama-spm.gguf");
  if (t) { /* " \xff" -> "▁" then <0xFF> */
    pl_token_buf b = {0};
    enc(t, "\xff", 1, 0, 0, &b);
    CHECK(b.n == 2 && b.ids[0] == pl_tokenizer_find(t, "\xe2\x96\x81", 3) && b.ids[1] == pl_tokenizer_find(t, "<0xFF>", 6),
          "spm \\xff");
    pl_token_buf_free(&b);
    pl_tokenizer_free(t);
  }
}

/* Random text from a palette of scripts, and random bytes: lossless everywhere (GGUF). */
static void random_roundtrip(void) {
  static const char *const pal[] = {"a", "Z", "7", " ", "  ", "\t", "\n", "\r\n", ".", "'s", "'LL", "<|", "|>", "_",
                                    "\xc3\xa9", "e\xcc\x81", "\xce\xbb", "\xd0\xb6", "\xe4\xbd\xa0", "\xe3\x81\x82",
                                    "\xea\xb0\x80", "\xf0\x9f\x98\x80", "\xf0\x9f\xa6\x99", "\xe2\x80\x8d", "\xef\xb8\x8f",
                                    "\xd8\xb9", "\xe0\xa4\x95", "\xe0\xa5\x8d", "123", "\xe2\x96\x81", "<s", ">", "[PAD1]"};
  static const char *const g[] = {"llama-spm", "phi-3", "llama-bpe", "qwen2", "qwen35", "gpt-2", "deepseek-llm",
                                  "deepseek-coder", "falcon", "mpt", "starcoder", "refact"};
  for (size_t v = 0; v < sizeof g / sizeof g[0]; v++) {
    char rel[256];
    snprintf(rel, sizeof rel, "tokenizer-vectors/ggml-vocab-%s.gguf", g[v]);
    pl_tokenizer *t = load(rel);
    if (!t)
      continue;
    int ok = 0, n = 0;
    for (int iter = 0; iter < 300; iter++) {
      char s[600];
      size_t sn = 0;
      int raw = iter % 5 == 0;
      for (int k = rnd() % 60; k > 0; k--) {
        if (raw) {
          s[sn++] = (char)(rnd() & 0xFF);
        } else {
          const char *p = pal[rnd() % (sizeof pal / sizeof pal[0])];
          memcpy(s + sn, p, strlen(p));
          sn += strlen(p);
        }
      }
      int r = roundtrip(t, s, sn);
      CHECK(r, "%s: random case %d does not round-trip", g[v], iter);
      ok += r;
      n++;
    }
    printf("%-16s random round-trip %d/%d\n", g[v], ok, n);
    pl_tokenizer_free(t);
  }
}

static int has(const pl_token_buf *b, int32_t id) {
  for (size_t i = 0; i < b->n; i++)
    if (b->ids[i] == id)
      return 1;
  return 0;
}

static void specials(void) {
  pl_token_buf b = {0}, c = {0};
  pl_tokenizer *t = load("tokenizer-vectors/ggml-vocab-qwen2.gguf");
  if (t) {
    const char *s = "<|im_start|>user\nhi<|im_end|>";
    enc(t, s, strlen(s), 0, 1, &b);
    CHECK(b.n >= 3 && b.ids[0] == 151644 && b.ids[b.n - 1] == 151645, "qwen2 parse_special");
    enc(t, s, strlen(s), 0, 0, &b);
    CHECK(!has(&b, 151644) && !has(&b, 151645), "qwen2 plain text");
    CHECK(pl_tokenizer_is_eog(t, 151645) && pl_tokenizer_is_eog(t, 151643) && !pl_tokenizer_is_eog(t, 151644), "qwen2 eog");
    CHECK(pl_tokenizer_chat_template(t) != NULL, "qwen2 template");
    /* USER_DEFINED tokens ([PAD151646]) are matched even without parse_special */
    enc(t, "x[PAD151646]y", 13, 0, 0, &b);
    CHECK(has(&b, 151646), "user-defined token");
    pl_tokenizer_free(t);
  }
  t = load("tokenizer-vectors/ggml-vocab-llama-bpe.gguf");
  if (t) {
    CHECK(pl_tokenizer_add_bos(t) && pl_tokenizer_bos(t) == 128000 && pl_tokenizer_eos(t) == 128001, "llama3 bos/eos");
    CHECK(pl_tokenizer_eot(t) == 128009 && pl_tokenizer_is_eog(t, 128009) && pl_tokenizer_is_eog(t, 128001), "llama3 eot");
    enc(t, "<|begin_of_text|>Hi", 19, 1, 1, &b);
    CHECK(b.n == 3 && b.ids[0] == 128000 && b.ids[1] == 128000, "llama3 BOS + parsed BOS");
    enc(t, "Hi", 2, 1, 0, &b);
    CHECK(b.n == 2 && b.ids[0] == 128000, "llama3 add BOS");
    CHECK(strcmp(pl_tokenizer_bos_text(t), "<|begin_of_text|>") == 0, "bos text");
    pl_tokenizer_free(t);
  }
  t = load("tokenizers/llama3");
  if (t) {
    CHECK(!pl_tokenizer_add_bos(t), "HF llama3: ByteLevel post-processor adds no BOS");
    CHECK(pl_tokenizer_bos(t) == 128000 && pl_tokenizer_eos(t) == 128001, "HF llama3 bos/eos ids");
    CHECK(pl_tokenizer_is_eog(t, 128009), "HF llama3 eot_id is EOG");
    CHECK(pl_tokenizer_chat_template(t) && strstr(pl_tokenizer_chat_template(t), "start_header_id"), "HF llama3 template");
    CHECK(pl_tokenizer_eos_text(t) && !strcmp(pl_tokenizer_eos_text(t), "<|end_of_text|>"), "eos text");
    pl_tokenizer_free(t);
  }
  t = load("tokenizer-vectors/ggml-vocab-llama-spm.gguf");
  if (t) { /* after a special token the text gets the SPM space prefix again */
    enc(t, "Hello<s>world", 13, 0, 1, &b);
    enc(t, "world", 5, 0, 0, &c);
    CHECK(b.n >= 2 + c.n && b.ids[b.n - c.n - 1] == 1 && memcmp(b.ids + b.n - c.n, c.ids, c.n * 4) == 0,
          "spm prefix after special");
    enc(t, "", 0, 1, 0, &b);
    CHECK(b.n == 1 && b.ids[0] == 1, "empty with BOS");
    enc(t, "", 0, 0, 0, &b);
    CHECK(b.n == 0, "empty");
    pl_tokenizer_free(t);
  }
  t = load("tokenizer-vectors/ggml-vocab-phi-3.gguf");
  if (t) { /* Phi-3: special tokens eat the whitespace on their right (rstrip) */
    enc(t, "<|user|>  \nHi", 13, 0, 1, &b);
    enc(t, "<|user|>Hi", 10, 0, 1, &c);
    CHECK(same_ids(&b, &c) && b.ids[0] == 32010, "phi-3 rstrip");
    CHECK(pl_tokenizer_is_eog(t, 32007) && pl_tokenizer_is_eog(t, 32000), "phi-3 eog");
    pl_tokenizer_free(t);
  }
  pl_token_buf_free(&b);
  pl_token_buf_free(&c);
}

static void nfc(void) {
  pl_tokenizer *hf = load("tokenizers/qwen3"), *gg = load("tokenizer-vectors/ggml-vocab-qwen2.gguf");
  if (hf && gg) {
    pl_token_buf a = {0}, b = {0};
    const char *nfd = "Cafe\xcc\x81 na\xc3\xafve \xe1\x84\x80\xe1\x85\xa1", *nfc_ = "Caf\xc3\xa9 na\xc3\xafve \xea\xb0\x80";
    enc(hf, nfd, strlen(nfd), 0, 0, &a);
    enc(hf, nfc_, strlen(nfc_), 0, 0, &b);
    CHECK(same_ids(&a, &b), "qwen3 tokenizer.json composes NFD input");
    enc(gg, nfd, strlen(nfd), 0, 0, &a);
    CHECK(!same_ids(&a, &b), "the qwen2 GGUF does not normalize");
    CHECK(pl_tokenizer_eos(hf) == 151645 && pl_tokenizer_is_eog(hf, 151643) && pl_tokenizer_bos(hf) == -1, "qwen3 ids");
    pl_token_buf_free(&a);
    pl_token_buf_free(&b);
  }
  pl_tokenizer_free(hf);
  pl_tokenizer_free(gg);
}

/* Qwen3 (NFC normalizer): encoding any text equals encoding utf8proc's own NFC of it (also
 * covers the "nothing below U+0300 changes" shortcut). */
static void nfc_random(void) {
  pl_tokenizer *t = load("tokenizers/qwen3");
  if (!t)
    return;
  static const char *const pal[] = {"a", "e", "\xc3\xa9", "\xc3\x85", "\xc5\x93", "\xc7\x84", "\xca\xb0", "\xcb\x86",
                                    "\xcc\x81", "\xcc\x88", "\xcc\xa3", "\xcd\x82", "\xe1\x84\x80", "\xe1\x85\xa1",
                                    "\xe1\x86\xa8", "\xea\xb0\x80", "\xe2\x84\xab", "\xe2\x84\xa6", "\xef\xac\x81",
                                    " ", "\xc2\xb2", "\xe0\xa4\x95\xe0\xa4\xbc", "A"};
  int ok = 0;
  for (int iter = 0; iter < 400; iter++) {
    char s[400];
    size_t sn = 0;
    for (int k = rnd() % 30; k > 0; k--) {
      const char *p = pal[rnd() % (sizeof pal / sizeof pal[0])];
      memcpy(s + sn, p, strlen(p));
      sn += strlen(p);
    }
    s[sn] = 0;
    utf8proc_uint8_t *nfc_s = utf8proc_NFC((const utf8proc_uint8_t *)s);
    pl_token_buf a = {0}, b = {0};
    enc(t, s, sn, 0, 0, &a);
    enc(t, (const char *)nfc_s, strlen((const char *)nfc_s), 0, 0, &b);
    int same = same_ids(&a, &b);
    CHECK(same, "NFC case %d", iter);
    ok += same;
    free(nfc_s); /* utf8proc's own malloc */
    pl_token_buf_free(&a);
    pl_token_buf_free(&b);
  }
  printf("qwen3 encode(x) == encode(utf8proc_NFC(x)): %d/400\n", ok);
  pl_tokenizer_free(t);
}

/* GPT-2's byte alphabet, written out independently of the library. */
static void put_byte_char(FILE *f, int b) {
  int self = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174;
  int cp = b;
  if (!self) {
    int k = 0;
    for (int x = 0; x < b; x++)
      k += !((x >= 33 && x <= 126) || (x >= 161 && x <= 172) || x >= 174);
    cp = 256 + k;
  }
  if (cp == '"' || cp == '\\')
    fprintf(f, "\\%c", cp);
  else if (cp < 0x80)
    fputc(cp, f);
  else
    fprintf(f, "%c%c", 0xC0 | (cp >> 6), 0x80 | (cp & 0x3F));
}

/* A synthetic tokenizer.json for the loader branches the three real files do not take. */
static void synthetic_hf(void) {
  char dir[] = "/tmp/pl_tok_XXXXXX";
  if (!mkdtemp(dir)) {
    CHECK(0, "mkdtemp");
    return;
  }
  char p[256];
  snprintf(p, sizeof p, "%s/tokenizer.json", dir);
  FILE *f = fopen(p, "w");
  fprintf(f, "{\"version\":\"1.0\",\"added_tokens\":["
             "{\"id\":259,\"content\":\"<bos>\",\"special\":true,\"lstrip\":false,\"rstrip\":false},"
             "{\"id\":260,\"content\":\"<eos>\",\"special\":true},"
             "{\"id\":261,\"content\":\"<tool>\",\"special\":false,\"lstrip\":true,\"rstrip\":true}],"
             "\"normalizer\":{\"type\":\"Sequence\",\"normalizers\":[{\"type\":\"NFD\"}]},"
             "\"pre_tokenizer\":{\"type\":\"Sequence\",\"pretokenizers\":["
             "{\"type\":\"Split\",\"pattern\":{\"String\":\".\"},\"behavior\":\"Isolated\",\"invert\":false},"
             "{\"type\":\"Digits\",\"individual_digits\":true},"
             "{\"type\":\"ByteLevel\",\"add_prefix_space\":false,\"use_regex\":false}]},"
             "\"post_processor\":{\"type\":\"TemplateProcessing\",\"single\":["
             "{\"SpecialToken\":{\"id\":\"<bos>\",\"type_id\":0}},{\"Sequence\":{\"id\":\"A\",\"type_id\":0}},"
             "{\"SpecialToken\":{\"id\":\"<eos>\",\"type_id\":0}}]},"
             "\"decoder\":{\"type\":\"ByteLevel\"},"
             "\"model\":{\"type\":\"BPE\",\"vocab\":{");
  for (int b = 0; b < 256; b++) {
    fputc('"', f);
    put_byte_char(f, b);
    fprintf(f, "\":%d,", b);
  }
  fprintf(f, "\"he\":256,\"ll\":257,\"hell\":258},\"merges\":[\"h e\",[\"l\",\"l\"],\"he ll\"]}}");
  fclose(f);
  snprintf(p, sizeof p, "%s/tokenizer_config.json", dir);
  f = fopen(p, "w");
  fprintf(f, "{\"eos_token\":{\"content\":\"<eos>\"},\"bos_token\":\"<bos>\",\"model_max_length\":1e30,"
             "\"chat_template\":[{\"name\":\"tool_use\",\"template\":\"T\"},{\"name\":\"default\",\"template\":\"D\"}]}");
  fclose(f);
  snprintf(p, sizeof p, "%s/generation_config.json", dir);
  f = fopen(p, "w");
  fprintf(f, "{\"eos_token_id\":[260,261]}");
  fclose(f);

  pl_tokenizer *t = NULL;
  int rc = pl_tokenizer_load(dir, &t);
  CHECK(rc == 0, "synthetic load: %s", pl_last_error());
  if (t) {
    pl_token_buf b = {0};
    CHECK(pl_tokenizer_add_bos(t) && pl_tokenizer_add_eos(t) && pl_tokenizer_bos(t) == 259 && pl_tokenizer_eos(t) == 260,
          "TemplateProcessing BOS/EOS");
    CHECK(pl_tokenizer_chat_template(t) && !strcmp(pl_tokenizer_chat_template(t), "D"), "default chat template");
    CHECK(pl_tokenizer_is_eog(t, 261) && pl_tokenizer_is_eog(t, 260), "generation_config eos list");
    enc(t, "hello", 5, 1, 0, &b);
    CHECK(b.n == 4 && b.ids[0] == 259 && b.ids[1] == 258 && b.ids[2] == 'o' && b.ids[3] == 260, "merges");
    enc(t, "hell.o", 6, 0, 0, &b);
    CHECK(b.n == 3 && b.ids[0] == 258 && b.ids[1] == '.' && b.ids[2] == 'o', "Split String isolates '.'");
    enc(t, "ll12", 4, 0, 0, &b);
    CHECK(b.n == 3 && b.ids[0] == 257 && b.ids[1] == '1' && b.ids[2] == '2', "Digits");
    enc(t, "\xc3\xa9", 2, 0, 0, &b);
    CHECK(b.n == 3 && b.ids[0] == 'e' && b.ids[1] == 0xCC && b.ids[2] == 0x81, "NFD decomposes");
    enc(t, "a  <tool>\t b", 12, 0, 0, &b);
    CHECK(b.n == 3 && b.ids[0] == 'a' && b.ids[1] == 261 && b.ids[2] == 'b', "lstrip/rstrip added token");
    enc(t, "<bos>", 5, 0, 0, &b);
    CHECK(b.n == 5, "special text stays text without parse_special");
    char *s = NULL;
    int32_t ids[] = {259, 258, 'o', 261, 260};
    pl_tokenizer_decode(t, ids, 5, PL_DECODE_SKIP_SPECIAL, &s, NULL);
    CHECK(s && !strcmp(s, "hello<tool>"), "decode '%s'", s ? s : "");
    pl_free(s);
    pl_token_buf_free(&b);
    pl_tokenizer_free(t);
  }
  /* unsupported shapes are refused, not mis-tokenized */
  snprintf(p, sizeof p, "%s/tokenizer.json", dir);
  f = fopen(p, "w");
  fprintf(f, "{\"model\":{\"type\":\"Unigram\",\"vocab\":[]},\"added_tokens\":[]}");
  fclose(f);
  CHECK(pl_tokenizer_load(dir, &t) == PL_EUNSUPPORTED && t == NULL, "Unigram refused");
  f = fopen(p, "w");
  fprintf(f, "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[]},\"pre_tokenizer\":{\"type\":\"Metaspace\"}}");
  fclose(f);
  CHECK(pl_tokenizer_load(dir, &t) == PL_EUNSUPPORTED, "Metaspace refused");
  f = fopen(p, "w");
  fprintf(f, "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[}");
  fclose(f);
  CHECK(pl_tokenizer_load(dir, &t) == PL_EFORMAT, "broken JSON");
  /* fuzz_tokenizer_json's first finding (tests/fuzz/corpus/fuzz_tokenizer_json/sparse-id.json):
   * one id far past the rest made the loader allocate for 255 M entries; refused now */
  f = fopen(p, "w");
  fprintf(f, "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1,\"om\":255555596},"
             "\"merges\":[]},\"added_tokens\":[]}");
  fclose(f);
  size_t peak0 = pl_alloc_live_bytes();
  CHECK(pl_tokenizer_load(dir, &t) == PL_EFORMAT && t == NULL, "sparse ids refused");
  CHECK(strstr(pl_last_error(), "255555596") != NULL, "%s", pl_last_error());
  CHECK(pl_alloc_live_bytes() == peak0, "nothing kept");
  const char *names[] = {"tokenizer.json", "tokenizer_config.json", "generation_config.json"};
  for (int i = 0; i < 3; i++) {
    snprintf(p, sizeof p, "%s/%s", dir, names[i]);
    unlink(p);
  }
  rmdir(dir);
  CHECK(pl_tokenizer_load(dir, &t) == PL_EIO, "missing directory");
}

/* SPM word-by-word merging is an optimisation that must not change any result. */
static void spm_split_equivalence(void) {
  pl_tokenizer *t = load("tokenizer-vectors/ggml-vocab-llama-spm.gguf");
  if (!t)
    return;
  CHECK(t->spm_word_split == 1, "llama vocab allows word splitting");
  static const char *const pal[] = {"a", "the", " ", "   ", "\n", "\xe2\x96\x81", "\xe4\xbd\xa0", "\xf0\x9f\x98\x80",
                                    "ing", "Hello", "x\xe2\x96\x81y", "\t", "1", "\xc3\xa9"};
  int same = 0;
  for (int iter = 0; iter < 500; iter++) {
    char s[800];
    size_t sn = 0;
    for (int k = rnd() % 80; k > 0; k--) {
      const char *p = pal[rnd() % (sizeof pal / sizeof pal[0])];
      memcpy(s + sn, p, strlen(p));
      sn += strlen(p);
    }
    pl_token_buf a = {0}, b = {0};
    t->spm_word_split = 1;
    enc(t, s, sn, 0, 0, &a);
    t->spm_word_split = 0;
    enc(t, s, sn, 0, 0, &b);
    int ok = same_ids(&a, &b);
    CHECK(ok, "split vs whole differ on case %d", iter);
    same += ok;
    pl_token_buf_free(&a);
    pl_token_buf_free(&b);
  }
  t->spm_word_split = 1;
  printf("spm word split == whole merge: %d/500\n", same);
  pl_tokenizer_free(t);
}

/* Inject a failure at every allocation of load + encode + decode in turn. */
static void alloc_failures(const char *rel, int gguf) {
  pl_gguf *g = NULL;
  if (gguf && pl_gguf_open(data_path(rel), &g) != 0) {
    CHECK(0, "open %s", rel);
    return;
  }
  /* long enough to build the word cache */
  char text[20000];
  size_t tn = 0;
  while (tn + 40 < sizeof text) {
    memcpy(text + tn, "Hello w\xc3\xb6rld, \xe4\xbd\xa0\xe5\xa5\xbd! 12345 \xff ok\n", 34);
    tn += 34;
  }
  if (g) { /* warm up: the GGUF reader indexes string arrays lazily (memory owned by g) */
    pl_tokenizer *t = NULL;
    pl_tokenizer_load_gguf(g, &t);
    pl_tokenizer_free(t);
  }
  int injected = 0;
  for (long k = 0; k < 100000; k++) {
    size_t live0 = pl_alloc_live_bytes();
    pl_alloc_fail_after(k);
    pl_tokenizer *t = NULL;
    int rc = gguf ? pl_tokenizer_load_gguf(g, &t) : pl_tokenizer_load(data_path(rel), &t);
    pl_token_buf b = {0};
    char *s = NULL;
    if (rc == 0)
      rc = pl_tokenizer_encode(t, text, tn, 1, 1, &b);
    if (rc == 0)
      rc = pl_tokenizer_decode(t, b.ids, b.n, 0, &s, NULL);
    pl_alloc_fail_after(-1);
    pl_free(s);
    pl_token_buf_free(&b);
    pl_tokenizer_free(t);
    CHECK(pl_alloc_live_bytes() == live0, "%s: leak after failure at allocation %ld", rel, k);
    if (rc == 0)
      break;
    CHECK(rc == PL_ENOMEM, "%s: failure %ld gave %d (%s)", rel, k, rc, pl_last_error());
    injected++;
  }
  printf("%-42s %d injected allocation failures handled\n", rel, injected);
  pl_gguf_close(g);
}

/* U+0085 (NEL) is whitespace for the pre-tokenizer regexes, as in Oniguruma (HF's Rust
 * tokenizers), Python's re (GPT-2's encoder) and llama.cpp: GPT-2's `\s+(?!\S)` keeps the
 * four spaces together and NEL is a word of its own before "~". (JavaScript's \s lacks NEL,
 * which is why the node differential test leaves such strings out.) */
static void nel_is_whitespace(void) {
  pl_tokenizer *t = load("tokenizers/gpt2");
  if (!t)
    return;
  pl_token_buf all = {0}, part = {0}, want = {0};
  const char *s = "    \xc2\x85~";
  enc(t, s, strlen(s), 0, 0, &all);
  const char *pieces[] = {"    ", "\xc2\x85", "~"};
  for (int i = 0; i < 3; i++) {
    enc(t, pieces[i], strlen(pieces[i]), 0, 0, &part);
    for (size_t k = 0; k < part.n; k++)
      pl_token_buf_push(&want, part.ids[k]);
  }
  CHECK(same_ids(&all, &want), "NEL splits like whitespace");
  pl_token_buf_free(&all);
  pl_token_buf_free(&part);
  pl_token_buf_free(&want);
  pl_tokenizer_free(t);
}

int main(void) {
  size_t live0 = pl_alloc_live_bytes();
  tinystories();
  invalid_utf8();
  random_roundtrip();
  specials();
  nfc();
  nfc_random();
  synthetic_hf();
  nel_is_whitespace();
  spm_split_equivalence();
  alloc_failures("models/tinystories-280K.gguf", 1);
  alloc_failures("tokenizer-vectors/ggml-vocab-gpt-2.gguf", 1);
  alloc_failures("tokenizers/gpt2", 0);
  CHECK(pl_alloc_live_bytes() == live0, "leak: %zu bytes", pl_alloc_live_bytes() - live0);
  return check_summary("test_tokenizer_misc");
}
