/* Pre-tokenizer: the chain of regexes that cuts text into BPE words, run by PCRE2 (8-bit,
 * UTF | UCP, JIT when available).
 *
 * Semantics (HF "Split" with behavior Isolated, which llama.cpp follows): regex k is applied to
 * every piece produced by regexes 0..k-1, independently (lookarounds and `$` see only that
 * piece); both the matches and the gaps between them become pieces, in text order. Empty
 * matches emit nothing but still end the current gap (a split point).
 *
 * The text handed in is valid UTF-8 (the caller cut ill-formed bytes out), so matching runs
 * with PCRE2_NO_UTF_CHECK / pcre2_jit_match. Patterns for GGUF vocabularies are chosen by
 * tokenizer.ggml.pre, as llama.cpp does; tokenizer.json supplies its own.
 */
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <string.h>

#include "tokenizer/tokenizer_impl.h"
#include "util/alloc.h"
#include "util/error.h"

struct pl_pretok {
  int n;
  pcre2_code *code[PL_PRETOK_MAX];
  int jit[PL_PRETOK_MAX];
  pcre2_general_context *gctx;
};

/* ---- patterns (from the models' tokenizer.json files, as llama.cpp lists them) ---- */

#define CONTRACTIONS "(?i:'s|'t|'re|'ve|'m|'ll|'d)"
const char *const pl_pretok_gpt2_pattern =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";
#define GPT2_NO_TAIL "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)"

static const char *const pat_gpt2[] = {GPT2_NO_TAIL};
static const char *const pat_llama3[] = {
    CONTRACTIONS "|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"};
static const char *const pat_qwen2[] = {
    CONTRACTIONS "|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"};
static const char *const pat_qwen35[] = {
    CONTRACTIONS "|[^\\r\\n\\p{L}\\p{N}]?[\\p{L}\\p{M}]+|\\p{N}| ?[^\\s\\p{L}\\p{M}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"};
static const char *const pat_deepseek_llm[] = {
    "[\r\n]",
    "\\s?[A-Za-z\xc2\xb5\xc3\x80-\xc3\x96\xc3\x98-\xc3\xb6\xc3\xb8-\xc6\xba\xc6\xbc-\xc6\xbf\xc7\x84-\xca\x93"
    "\xca\x95-\xca\xaf\xcd\xb0-\xcd\xb3\xcd\xb6\xcd\xb7\xcd\xbb-\xcd\xbd\xcd\xbf\xce\x86\xce\x88-\xce\x8a"
    "\xce\x8c\xce\x8e-\xce\xa1\xce\xa3-\xcf\xb5\xcf\xb7-\xd2\x81\xd2\x8a-\xd4\xaf\xd4\xb1-\xd5\x96"
    "\xe1\x82\xa0-\xe1\x83\x85\xe1\x8e\xa0-\xe1\x8f\xb5\xe1\x8f\xb8-\xe1\x8f\xbd\xe1\xb2\x90-\xe1\xb2\xba"
    "\xe1\xb2\xbd-\xe1\xb2\xbf\xe1\xb4\x80-\xe1\xb4\xab\xe1\xb5\xab-\xe1\xb5\xb7\xe1\xb5\xb9-\xe1\xb6\x9a"
    "\xe1\xb8\x80-\xe1\xbc\x95\xe1\xbc\x98-\xe1\xbc\x9d\xe1\xbc\xa0-\xe1\xbd\x85\xe1\xbd\x88-\xe1\xbd\x8d"
    "\xe1\xbd\x90-\xe1\xbd\x97\xe1\xbd\x99\xe1\xbd\x9b\xe1\xbd\x9d\xe1\xbd\x9f-\xe1\xbd\xbd"
    "\xe1\xbe\x80-\xe1\xbe\xb4\xe1\xbe\xb6-\xe1\xbe\xbc\xe1\xbe\xbe\xe1\xbf\x82-\xe1\xbf\x84"
    "\xe1\xbf\x86-\xe1\xbf\x8c\xe1\xbf\x90-\xe1\xbf\x93\xe1\xbf\x96-\xe1\xbf\x9b\xe1\xbf\xa0-\xe1\xbf\xac"
    "\xe1\xbf\xb2-\xe1\xbf\xb4\xe1\xbf\xb6-\xe1\xbf\xbc\xe2\x84\x82\xe2\x84\x87\xe2\x84\x8a-\xe2\x84\x93"
    "\xe2\x84\x95\xe2\x84\x99-\xe2\x84\x9d\xe2\x84\xa4\xe2\x84\xa6\xe2\x84\xa8\xe2\x84\xaa-\xe2\x84\xad"
    "\xe2\x84\xaf-\xe2\x84\xb4\xe2\x84\xb9\xe2\x84\xbc-\xe2\x84\xbf\xe2\x85\x85-\xe2\x85\x89\xe2\x85\x8e"
    "\xe2\x86\x83\xe2\x86\x84\xe2\xb0\x80-\xe2\xb1\xbb\xe2\xb1\xbe-\xe2\xb3\xa4\xe2\xb3\xab-\xe2\xb3\xae"
    "\xe2\xb3\xb2\xe2\xb3\xb3\xea\x99\x80-\xea\x99\xad\xea\x9a\x80-\xea\x9a\x9b\xea\x9c\xa2-\xea\x9d\xaf"
    "\xea\x9d\xb1-\xea\x9e\x87\xea\x9e\x8b-\xea\x9e\x8e\xea\xad\xb0-\xea\xae\xbf\xef\xac\x80-\xef\xac\x86"
    "\xef\xac\x93-\xef\xac\x97\xef\xbc\xa1-\xef\xbc\xba\xef\xbd\x81-\xef\xbd\x9a"
    "\xf0\x90\x90\x80-\xf0\x90\x91\x8f\xf0\x90\x92\xb0-\xf0\x90\x93\x93\xf0\x90\x93\x98-\xf0\x90\x93\xbb"
    "\xf0\x90\xb2\x80-\xf0\x90\xb2\xb2\xf0\x90\xb3\x80-\xf0\x90\xb3\xb2\xf0\x91\xa2\xa0-\xf0\x91\xa3\x9f"
    "\xf0\x9e\xa4\x80-\xf0\x9e\xa5\x83]+",
    "\\s?[!-/:-~\xef\xbc\x81-\xef\xbc\x8f\xef\xbc\x9a-\xef\xbd\x9e\xe2\x80\x98-\xe2\x80\x9f\xe3\x80\x80-\xe3\x80\x82]+",
    "\\s+$",
    "[\xe4\xb8\x80-\xe9\xbe\xa5\xe0\xa0\x80-\xe4\xb8\x80\xea\xb0\x80-\xed\x9f\xbf]+",
    "\\p{N}+",
};
static const char *const pat_deepseek_coder[] = {
    "[\r\n]", "\\s?\\p{L}+", "\\s?\\p{P}+",
    "[\xe4\xb8\x80-\xe9\xbe\xa5\xe0\xa0\x80-\xe4\xb8\x80\xea\xb0\x80-\xed\x9f\xbf]+", "\\p{N}"};
static const char *const pat_deepseek3[] = {
    "\\p{N}{1,3}",
    "[\xe4\xb8\x80-\xe9\xbe\xa5\xe3\x81\x80-\xe3\x82\x9f\xe3\x82\xa0-\xe3\x83\xbf]+",
    "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+"
    "| ?[\\p{P}\\p{S}]+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+"};
static const char *const pat_falcon[] = {"[\\p{P}\\$\\+<=>\\^~\\|`]+", GPT2_NO_TAIL, "[0-9][0-9][0-9]"};
static const char *const pat_starcoder[] = {"\\p{N}", GPT2_NO_TAIL};
static const char *const pat_default[] = {"[\\p{P}\\$\\+<=>\\^~\\|]+", GPT2_NO_TAIL, "\\p{N}+", "[0-9][0-9][0-9]"};
static const char *const pat_bloom[] = {
    " ?[^(\\s|.,!?\xe2\x80\xa6\xe3\x80\x82\xef\xbc\x8c\xe3\x80\x81\xe0\xa5\xa4\xdb\x94\xd8\x8c)]+"};
static const char *const pat_tekken[] = {
    "[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]*[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]+"
    "|[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]+[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]*"
    "|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"};
static const char *const pat_gpt4o[] = {
    "[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]*[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]+" CONTRACTIONS "?"
    "|[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]+[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]*" CONTRACTIONS "?"
    "|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"};

#define PATS(a) a, (int)(sizeof a / sizeof a[0])
static const struct {
  const char *names; /* '|'-separated */
  const char *const *pats;
  int n;
  int ignore_merges;
} pre_table[] = {
    {"llama3|llama-v3|llama-bpe|falcon3|falcon-h1|pixtral|midm-2.0|lfm2|jina-v5-nano", PATS(pat_llama3), 1},
    {"dbrx|smaug-bpe|glm4|chatglm-bpe", PATS(pat_llama3), 0},
    {"qwen2|deepseek-r1-qwen|kormo|f2llmv2|stablelm2|megrez|hunyuan|solar-open", PATS(pat_qwen2), 0},
    {"qwen35", PATS(pat_qwen35), 0},
    {"gpt-2|phi-2|jina-es|jina-de|gigachat|jina-v2-es|jina-v2-de|a.x-4.0|mellum|modern-bert|mpt|olmo|"
     "jais|trillion|granite-docling|jina-v1-en|jina-v2-code|roberta-bpe|exaone4",
     PATS(pat_gpt2), 0},
    {"deepseek-llm", PATS(pat_deepseek_llm), 0},
    {"deepseek-coder", PATS(pat_deepseek_coder), 0},
    {"deepseek-v3|hunyuan-dense|joyai-llm", PATS(pat_deepseek3), 0},
    {"falcon", PATS(pat_falcon), 0},
    {"starcoder|refact|command-r|smollm|codeshell|exaone|minerva-7b|mellum2", PATS(pat_starcoder), 0},
    {"poro-chat|bloom|gpt3-finnish", PATS(pat_bloom), 0},
    {"tekken", PATS(pat_tekken), 1},
    {"gpt-4o|llama4|kanana2|talkie|minimax-m2", PATS(pat_gpt4o), 0},
    {"default", PATS(pat_default), 0},
};

static int name_in(const char *list, const char *name) {
  size_t n = strlen(name);
  for (const char *p = list; *p;) {
    const char *e = strchr(p, '|');
    size_t l = e ? (size_t)(e - p) : strlen(p);
    if (l == n && memcmp(p, name, n) == 0)
      return 1;
    if (!e)
      break;
    p = e + 1;
  }
  return 0;
}

int pl_pretok_for_pre(const char *pre, const char *const **patterns, int *n, int *ignore_merges) {
  if (!pre || !*pre)
    pre = "default";
  for (size_t i = 0; i < sizeof pre_table / sizeof pre_table[0]; i++) {
    if (name_in(pre_table[i].names, pre)) {
      *patterns = pre_table[i].pats;
      *n = pre_table[i].n;
      *ignore_merges = pre_table[i].ignore_merges;
      return PL_OK;
    }
  }
  return pl_fail(PL_EUNSUPPORTED, "unknown pre-tokenizer type '%s'", pre);
}

/* ---- compile ---- */

static void *pc_malloc(size_t n, void *ud) {
  (void)ud;
  return pl_malloc(n);
}
static void pc_free(void *p, void *ud) {
  (void)ud;
  pl_free(p);
}

void pl_pretok_free(pl_pretok *p) {
  if (!p)
    return;
  for (int i = 0; i < p->n; i++)
    pcre2_code_free(p->code[i]);
  pcre2_general_context_free(p->gctx);
  pl_free(p);
}

int pl_pretok_n(const pl_pretok *p) { return p->n; }

int pl_pretok_create(const char *const *patterns, int n, pl_pretok **out) {
  *out = NULL;
  if (n < 0 || n > PL_PRETOK_MAX)
    return pl_fail(PL_EUNSUPPORTED, "pre-tokenizer: %d regexes (max %d)", n, PL_PRETOK_MAX);
  pl_pretok *p = pl_calloc(1, sizeof *p);
  if (!p)
    return pl_fail(PL_ENOMEM, "pre-tokenizer: out of memory");
  p->gctx = pcre2_general_context_create(pc_malloc, pc_free, NULL);
  pcre2_compile_context *cc = p->gctx ? pcre2_compile_context_create(p->gctx) : NULL;
  if (!cc) {
    pl_pretok_free(p);
    return pl_fail(PL_ENOMEM, "pre-tokenizer: out of memory");
  }
  int rc = PL_OK;
  for (int i = 0; i < n; i++) {
    int err;
    PCRE2_SIZE erroff;
    pcre2_code *code = pcre2_compile((PCRE2_SPTR)patterns[i], PCRE2_ZERO_TERMINATED,
                                     PCRE2_UTF | PCRE2_UCP | PCRE2_DOLLAR_ENDONLY | PCRE2_NEVER_BACKSLASH_C,
                                     &err, &erroff, cc);
    if (!code) {
      PCRE2_UCHAR msg[256];
      pcre2_get_error_message(err, msg, sizeof msg);
      rc = pl_fail(err == PCRE2_ERROR_HEAP_FAILED ? PL_ENOMEM : PL_EFORMAT, "pre-tokenizer regex %d: %s at offset %zu",
                   i, (const char *)msg, (size_t)erroff);
      break;
    }
    p->code[p->n++] = code;
    /* JIT is an optimisation only: without it pcre2_match interprets */
    p->jit[i] = pcre2_jit_compile(code, PCRE2_JIT_COMPLETE) == 0;
  }
  pcre2_compile_context_free(cc);
  if (rc != PL_OK) {
    pl_pretok_free(p);
    return rc;
  }
  *out = p;
  return PL_OK;
}

/* ---- split ---- */

void pl_pretok_ctx_free(pl_tok_ctx *c) {
  for (int i = 0; i < PL_PRETOK_MAX; i++) {
    pcre2_match_data_free(c->match[i]);
    c->match[i] = NULL;
  }
}

static int find(const pl_pretok *p, int lvl, pcre2_match_data *md, const char *s, size_t n, size_t pos,
                size_t *ms, size_t *me) {
  int rc;
  if (p->jit[lvl]) {
    rc = pcre2_jit_match(p->code[lvl], (PCRE2_SPTR)s, n, pos, 0, md, NULL);
    if (rc == PCRE2_ERROR_JIT_STACKLIMIT) /* pathological input: the interpreter uses the heap */
      rc = pcre2_match(p->code[lvl], (PCRE2_SPTR)s, n, pos, PCRE2_NO_UTF_CHECK | PCRE2_NO_JIT, md, NULL);
  } else {
    rc = pcre2_match(p->code[lvl], (PCRE2_SPTR)s, n, pos, PCRE2_NO_UTF_CHECK, md, NULL);
  }
  if (rc == PCRE2_ERROR_NOMATCH)
    return 0;
  if (rc < 0) {
    PCRE2_UCHAR msg[256];
    pcre2_get_error_message(rc, msg, sizeof msg);
    return pl_fail(PL_EINTERNAL, "pre-tokenizer: regex match failed: %s", (const char *)msg);
  }
  const PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md); /* rc == 0: groups did not fit; [0] is set */
  *ms = ov[0];
  *me = ov[1];
  if (*me < *ms || *ms < pos || *me > n) /* \K tricks; none of our patterns use them */
    return pl_fail(PL_EINTERNAL, "pre-tokenizer: odd match bounds");
  return 1;
}

static int split_level(const pl_pretok *p, pl_tok_ctx *c, int lvl, const char *s, size_t n,
                       pl_pretok_word_fn word) {
  if (lvl == p->n)
    return word(c, s, n);
  pcre2_match_data *md = c->match[lvl];
  size_t gap = 0, pos = 0;
  while (pos < n) {
    size_t ms, me;
    int rc = find(p, lvl, md, s, n, pos, &ms, &me);
    if (rc < 0)
      return rc;
    if (rc == 0)
      break;
    if (ms > gap)
      PL_TRY(split_level(p, c, lvl + 1, s + gap, ms - gap, word));
    if (me > ms) {
      PL_TRY(split_level(p, c, lvl + 1, s + ms, me - ms, word));
      pos = me;
    } else { /* empty match: a split point; step over one character */
      int l = pl_utf8_len((const unsigned char *)s + ms, n - ms);
      pos = ms + (size_t)(l ? l : 1);
    }
    gap = me;
  }
  if (gap < n)
    PL_TRY(split_level(p, c, lvl + 1, s + gap, n - gap, word));
  return PL_OK;
}

int pl_pretok_split(const pl_pretok *p, pl_tok_ctx *c, const char *text, size_t len,
                    pl_pretok_word_fn word) {
  for (int i = 0; i < p->n; i++) {
    if (!c->match[i]) {
      c->match[i] = pcre2_match_data_create(1, p->gctx);
      if (!c->match[i])
        return pl_fail(PL_ENOMEM, "pre-tokenizer: out of memory");
    }
  }
  if (len == 0)
    return PL_OK;
  return split_level(p, c, 0, text, len, word);
}
