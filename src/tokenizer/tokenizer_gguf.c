/* Tokenizer from GGUF metadata (tokenizer.ggml.* as llama.cpp's converters write it).
 *
 * Keys: model ("llama" = SPM, "gpt2" = byte-level BPE), pre (regex chain for BPE), tokens,
 * scores, token_type, merges, {bos,eos,eot,eom,unknown,padding}_token_id, add_bos_token,
 * add_eos_token, add_space_prefix, chat_template. Defaults follow llama.cpp: SPM vocabularies
 * add BOS and a space prefix; Llama-3-style pre-tokenizers add BOS. Array elements are copied
 * with memcpy (GGUF metadata is not aligned).
 */
#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include "tokenizer/tokenizer_impl.h"
#include "util/alloc.h"
#include "util/error.h"

static int str_eq(pl_gguf_str s, const char *z) { return s.len == strlen(z) && memcmp(s.ptr, z, s.len) == 0; }

static int get_id(const pl_gguf *g, const char *key, int32_t *id) {
  uint32_t v;
  int rc = pl_gguf_get_u32(g, key, &v);
  if (rc == PL_ENOTFOUND)
    return PL_OK;
  if (rc < 0)
    return rc;
  *id = v > INT32_MAX ? -1 : (int32_t)v;
  return PL_OK;
}

static int get_flag(const pl_gguf *g, const char *key, int *flag) {
  int v;
  int rc = pl_gguf_get_bool(g, key, &v);
  if (rc == PL_ENOTFOUND)
    return PL_OK;
  if (rc < 0)
    return rc;
  *flag = v;
  return PL_OK;
}

static uint16_t attr_of_type(int32_t ty) {
  switch (ty) {
  case 2: return PL_TOKATTR_UNKNOWN;
  case 3: return PL_TOKATTR_CONTROL;
  case 4: return PL_TOKATTR_USER_DEFINED;
  case 5: return PL_TOKATTR_UNUSED;
  case 6: return PL_TOKATTR_BYTE;
  default: return PL_TOKATTR_NORMAL; /* 1 = normal, 0 = undefined */
  }
}

/* Phi-3 GGUFs carry no strip flags; llama.cpp sets them by model name (HF added_tokens have
 * rstrip on these), and so do we. */
static void phi3_strip(pl_tokenizer *t, const pl_gguf *g) {
  pl_gguf_str name;
  if (pl_gguf_get_str(g, "general.name", &name) != PL_OK)
    return;
  char low[128];
  size_t n = name.len < sizeof low - 1 ? name.len : sizeof low - 1;
  for (size_t i = 0; i < n; i++)
    low[i] = (char)tolower((unsigned char)name.ptr[i]);
  low[n] = 0;
  if (!strstr(low, "phi-3") && !strstr(low, "phi3"))
    return;
  for (int32_t i = 0; i < t->n_vocab; i++)
    if (t->attr[i] & (PL_TOKATTR_CONTROL | PL_TOKATTR_USER_DEFINED | PL_TOKATTR_UNKNOWN))
      t->attr[i] |= PL_TOKATTR_RSTRIP;
  int32_t id = pl_tok_lookup(t, "</s>", 4);
  if (id >= 0)
    t->attr[id] |= PL_TOKATTR_RSTRIP;
  const char *off[] = {"<unk>", "<s>", "<|endoftext|>"};
  for (int k = 0; k < 3; k++) {
    id = pl_tok_lookup(t, off[k], strlen(off[k]));
    if (id >= 0)
      t->attr[id] &= (uint16_t)~PL_TOKATTR_RSTRIP;
  }
}

static int load(pl_tokenizer *t, const pl_gguf *g) {
  const char *path = pl_gguf_path(g);
  pl_gguf_str model, pre = {"", 0};
  int rc = pl_gguf_get_str(g, "tokenizer.ggml.model", &model);
  if (rc == PL_ENOTFOUND)
    return pl_fail(PL_EFORMAT, "%s: no tokenizer.ggml.model", path);
  PL_TRY(rc);
  if (str_eq(model, "llama"))
    t->kind = PL_TOK_SPM;
  else if (str_eq(model, "gpt2"))
    t->kind = PL_TOK_BPE;
  else
    return pl_fail(PL_EUNSUPPORTED, "%s: tokenizer model '%.*s' is not supported (llama, gpt2)", path,
                   (int)model.len, model.ptr);
  rc = pl_gguf_get_str(g, "tokenizer.ggml.pre", &pre);
  if (rc < 0 && rc != PL_ENOTFOUND)
    return rc;
  PL_TRY(pl_tok_set_str(&t->pre_name, t->kind == PL_TOK_BPE ? pre.ptr : "", t->kind == PL_TOK_BPE ? pre.len : 0));

  /* tokens */
  pl_gguf_type ty;
  uint64_t n;
  const void *data;
  rc = pl_gguf_get_arr(g, "tokenizer.ggml.tokens", &ty, &n, &data);
  if (rc == PL_ENOTFOUND)
    return pl_fail(PL_EFORMAT, "%s: no tokenizer.ggml.tokens", path);
  PL_TRY(rc);
  if (ty != PL_GGUF_STRING || n == 0 || n > INT32_MAX / 2)
    return pl_fail(PL_EFORMAT, "%s: tokenizer.ggml.tokens must be a non-empty string array", path);
  int32_t nv = (int32_t)n;
  const char **txt = pl_malloc((size_t)nv * sizeof *txt);
  uint32_t *len = pl_malloc((size_t)nv * sizeof *len);
  if (!txt || !len) {
    pl_free(txt);
    pl_free(len);
    return pl_fail(PL_ENOMEM, "%s: out of memory (vocab)", path);
  }
  rc = PL_OK;
  for (int32_t i = 0; i < nv && rc == PL_OK; i++) {
    pl_gguf_str s;
    rc = pl_gguf_arr_str(g, "tokenizer.ggml.tokens", (uint64_t)i, &s);
    if (rc == PL_OK && s.len > 65536)
      rc = pl_fail(PL_EFORMAT, "%s: token %d is %llu bytes long", path, (int)i, (unsigned long long)s.len);
    txt[i] = s.ptr;
    len[i] = (uint32_t)s.len;
  }
  if (rc == PL_OK)
    rc = pl_tok_set_vocab(t, nv, txt, len);
  pl_free(txt);
  pl_free(len);
  PL_TRY(rc);

  /* scores (SPM merge priority) */
  t->scores = pl_calloc((size_t)nv, sizeof *t->scores);
  if (!t->scores)
    return pl_fail(PL_ENOMEM, "%s: out of memory", path);
  rc = pl_gguf_get_arr(g, "tokenizer.ggml.scores", &ty, &n, &data);
  if (rc == PL_OK) {
    if ((ty != PL_GGUF_FLOAT32 && ty != PL_GGUF_INT32) || n < (uint64_t)nv)
      return pl_fail(PL_EFORMAT, "%s: tokenizer.ggml.scores: bad type or length", path);
    for (int32_t i = 0; i < nv; i++) {
      if (ty == PL_GGUF_FLOAT32) {
        memcpy(&t->scores[i], (const char *)data + 4 * (size_t)i, 4);
      } else {
        int32_t v;
        memcpy(&v, (const char *)data + 4 * (size_t)i, 4);
        t->scores[i] = (float)v;
      }
    }
  } else if (rc != PL_ENOTFOUND) {
    return rc;
  }

  /* token types */
  rc = pl_gguf_get_arr(g, "tokenizer.ggml.token_type", &ty, &n, &data);
  if (rc == PL_OK) {
    if (ty != PL_GGUF_INT32 || n < (uint64_t)nv)
      return pl_fail(PL_EFORMAT, "%s: tokenizer.ggml.token_type: bad type or length", path);
    for (int32_t i = 0; i < nv; i++) {
      int32_t v;
      memcpy(&v, (const char *)data + 4 * (size_t)i, 4);
      t->attr[i] = attr_of_type(v);
    }
  } else if (rc != PL_ENOTFOUND) {
    return rc;
  }

  /* defaults, then the file's keys */
  if (t->kind == PL_TOK_SPM) {
    t->bos = 1;
    t->eos = 2;
    t->unk = 0;
    t->add_bos = 1;
    t->add_space_prefix = 1;
  } else {
    const char *const *pats;
    int np, ignore;
    char prebuf[128];
    snprintf(prebuf, sizeof prebuf, "%.*s", (int)pre.len, pre.ptr);
    rc = pl_pretok_for_pre(prebuf, &pats, &np, &ignore);
    if (rc < 0)
      return pl_fail_prefix(rc, path);
    PL_TRY(pl_pretok_create(pats, np, &t->pretok));
    t->byte_level = 1;
    t->ignore_merges = ignore;
    t->add_bos = ignore; /* llama.cpp: Llama-3-style vocabularies add BOS unless told */

    rc = pl_gguf_get_arr(g, "tokenizer.ggml.merges", &ty, &n, &data);
    if (rc == PL_ENOTFOUND)
      return pl_fail(PL_EFORMAT, "%s: BPE vocabulary without tokenizer.ggml.merges", path);
    PL_TRY(rc);
    if (ty != PL_GGUF_STRING || n > INT32_MAX)
      return pl_fail(PL_EFORMAT, "%s: tokenizer.ggml.merges must be a string array", path);
    PL_TRY(pl_tok_merges_reserve(t, (size_t)n));
    for (uint64_t i = 0; i < n; i++) {
      pl_gguf_str m;
      PL_TRY(pl_gguf_arr_str(g, "tokenizer.ggml.merges", i, &m));
      /* "left right": the separator is the first space after the first byte */
      const char *sp = m.len > 1 ? memchr(m.ptr + 1, ' ', m.len - 1) : NULL;
      if (!sp)
        continue;
      size_t al = (size_t)(sp - m.ptr);
      PL_TRY(pl_tok_add_merge(t, m.ptr, al, sp + 1, m.len - al - 1, (int32_t)i));
    }
  }
  PL_TRY(get_id(g, "tokenizer.ggml.bos_token_id", &t->bos));
  PL_TRY(get_id(g, "tokenizer.ggml.eos_token_id", &t->eos));
  PL_TRY(get_id(g, "tokenizer.ggml.eot_token_id", &t->eot));
  PL_TRY(get_id(g, "tokenizer.ggml.eom_token_id", &t->eom));
  PL_TRY(get_id(g, "tokenizer.ggml.unknown_token_id", &t->unk));
  PL_TRY(get_id(g, "tokenizer.ggml.padding_token_id", &t->pad));
  PL_TRY(get_flag(g, "tokenizer.ggml.add_bos_token", &t->add_bos));
  PL_TRY(get_flag(g, "tokenizer.ggml.add_eos_token", &t->add_eos));
  if (t->kind == PL_TOK_SPM)
    PL_TRY(get_flag(g, "tokenizer.ggml.add_space_prefix", &t->add_space_prefix));

  pl_gguf_str tmpl;
  rc = pl_gguf_get_str(g, "tokenizer.chat_template", &tmpl);
  if (rc == PL_OK)
    PL_TRY(pl_tok_set_str(&t->chat_template, tmpl.ptr, tmpl.len));
  else if (rc != PL_ENOTFOUND)
    return rc;

  phi3_strip(t, g);
  return pl_tok_finalize(t);
}

int pl_tokenizer_load_gguf(const pl_gguf *g, pl_tokenizer **out) {
  *out = NULL;
  pl_tokenizer *t = pl_tok_new();
  if (!t)
    return pl_fail(PL_ENOMEM, "tokenizer: out of memory");
  int rc = load(t, g);
  if (rc < 0) {
    pl_tokenizer_free(t);
    return rc;
  }
  *out = t;
  return PL_OK;
}
