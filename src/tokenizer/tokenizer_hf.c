/* Tokenizer from Hugging Face files: tokenizer.json (+ tokenizer_config.json,
 * generation_config.json and chat_template.jinja from the same directory when present).
 *
 * Supported: model.type "BPE" with byte-level spelling (a ByteLevel pre-tokenizer or
 * decoder), pre_tokenizer ByteLevel / Split(Regex|String, Isolated) / Digits / Sequence of
 * those, normalizer null / NFC / NFKC / NFD / NFKD (or a Sequence of them), merges as "a b"
 * strings or ["a", "b"] pairs, added_tokens (special -> CONTROL, else USER_DEFINED, with
 * lstrip/rstrip). Anything else is refused with PL_EUNSUPPORTED rather than tokenized wrongly.
 *
 * BOS/EOS: tokenizer_config's add_bos_token/add_eos_token when given, else what a
 * TemplateProcessing post-processor puts around the sequence (so Llama-3's plain ByteLevel
 * post-processor adds nothing, like HF encode). bos/eos text comes from tokenizer_config.
 * jansson's own allocations are the library's internals; everything we keep is pl_malloc'd.
 */
#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "tokenizer/tokenizer_impl.h"
#include "util/alloc.h"
#include "util/error.h"
#include "util/file.h"

typedef struct {
  const char *pats[PL_PRETOK_MAX];
  char *owned[PL_PRETOK_MAX];
  int n;
  int byte_level;
} pretok_spec;

static int add_pat(pretok_spec *ps, const char *p, char *owned, const char *file) {
  if (ps->n == PL_PRETOK_MAX) {
    pl_free(owned);
    return pl_fail(PL_EUNSUPPORTED, "%s: more than %d pre-tokenizer regexes", file, PL_PRETOK_MAX);
  }
  ps->owned[ps->n] = owned;
  ps->pats[ps->n++] = p;
  return PL_OK;
}

/* A literal Split string as a regex: \Q..\E cannot hold "\E", so escape byte by byte. */
static char *regex_escape(const char *s) {
  size_t n = strlen(s);
  char *o = pl_malloc(2 * n + 1);
  if (!o)
    return NULL;
  size_t k = 0;
  for (size_t i = 0; i < n; i++) {
    if (strchr("\\^$.|?*+()[]{}-", s[i]))
      o[k++] = '\\';
    o[k++] = s[i];
  }
  o[k] = 0;
  return o;
}

static const char *jstr(json_t *o, const char *key) {
  json_t *v = json_object_get(o, key);
  return json_is_string(v) ? json_string_value(v) : NULL;
}

static int jbool(json_t *o, const char *key, int def) {
  json_t *v = json_object_get(o, key);
  return json_is_boolean(v) ? json_is_true(v) : def;
}

static int parse_pretok(json_t *pt, pretok_spec *ps, const char *file) {
  if (!pt || json_is_null(pt))
    return PL_OK;
  const char *type = jstr(pt, "type");
  if (!type)
    return pl_fail(PL_EFORMAT, "%s: pre_tokenizer without type", file);
  if (!strcmp(type, "Sequence")) {
    json_t *arr = json_object_get(pt, "pretokenizers");
    size_t i;
    json_t *v;
    json_array_foreach(arr, i, v) PL_TRY(parse_pretok(v, ps, file));
    return PL_OK;
  }
  if (!strcmp(type, "ByteLevel")) {
    if (jbool(pt, "add_prefix_space", 0))
      return pl_fail(PL_EUNSUPPORTED, "%s: ByteLevel add_prefix_space is not supported", file);
    ps->byte_level = 1;
    if (jbool(pt, "use_regex", 1))
      return add_pat(ps, pl_pretok_gpt2_pattern, NULL, file);
    return PL_OK;
  }
  if (!strcmp(type, "Split")) {
    const char *beh = jstr(pt, "behavior");
    if ((beh && strcmp(beh, "Isolated")) || jbool(pt, "invert", 0))
      return pl_fail(PL_EUNSUPPORTED, "%s: Split behavior '%s'%s is not supported", file, beh ? beh : "?",
                     jbool(pt, "invert", 0) ? " (inverted)" : "");
    json_t *pat = json_object_get(pt, "pattern");
    const char *re = jstr(pat, "Regex");
    if (re)
      return add_pat(ps, re, NULL, file);
    const char *lit = jstr(pat, "String");
    if (!lit)
      return pl_fail(PL_EFORMAT, "%s: Split without pattern", file);
    char *esc = regex_escape(lit);
    if (!esc)
      return pl_fail(PL_ENOMEM, "%s: out of memory", file);
    return add_pat(ps, esc, esc, file);
  }
  if (!strcmp(type, "Digits"))
    return add_pat(ps, jbool(pt, "individual_digits", 0) ? "\\p{N}" : "\\p{N}+", NULL, file);
  return pl_fail(PL_EUNSUPPORTED, "%s: pre_tokenizer '%s' is not supported", file, type);
}

static int parse_norm(json_t *nm, pl_norm *out, const char *file) {
  if (!nm || json_is_null(nm))
    return PL_OK;
  const char *type = jstr(nm, "type");
  if (!type)
    return pl_fail(PL_EFORMAT, "%s: normalizer without type", file);
  if (!strcmp(type, "Sequence")) {
    size_t i;
    json_t *v;
    json_array_foreach(json_object_get(nm, "normalizers"), i, v) PL_TRY(parse_norm(v, out, file));
    return PL_OK;
  }
  pl_norm n = !strcmp(type, "NFC") ? PL_NORM_NFC : !strcmp(type, "NFKC") ? PL_NORM_NFKC
            : !strcmp(type, "NFD") ? PL_NORM_NFD : !strcmp(type, "NFKD") ? PL_NORM_NFKD : PL_NORM_NONE;
  if (n == PL_NORM_NONE || (*out != PL_NORM_NONE && *out != n))
    return pl_fail(PL_EUNSUPPORTED, "%s: normalizer '%s' is not supported", file, type);
  *out = n;
  return PL_OK;
}

/* "<s>" or {"content": "<s>", ...} or null */
static const char *token_content(json_t *v) {
  if (json_is_string(v))
    return json_string_value(v);
  if (json_is_object(v))
    return jstr(v, "content");
  return NULL;
}

typedef struct {
  const char **txt;
  uint32_t *len;
  uint16_t *attr;
  int32_t n;
} vocab_tmp;

static int load_model(pl_tokenizer *t, json_t *root, const char *file) {
  json_t *model = json_object_get(root, "model");
  const char *type = jstr(model, "type");
  if (!json_is_object(model) || (type && strcmp(type, "BPE")))
    return pl_fail(PL_EUNSUPPORTED, "%s: model type '%s' is not supported (BPE)", file, type ? type : "?");
  if (jbool(model, "byte_fallback", 0))
    return pl_fail(PL_EUNSUPPORTED, "%s: BPE byte_fallback (SentencePiece-style tokenizer.json) is not supported; use the GGUF", file);
  json_t *vocab = json_object_get(model, "vocab");
  json_t *merges = json_object_get(model, "merges");
  json_t *added = json_object_get(root, "added_tokens");
  if (!json_is_object(vocab) || !json_is_array(merges))
    return pl_fail(PL_EFORMAT, "%s: model.vocab / model.merges missing", file);

  /* ids may be sparse; the vocabulary covers 0..max id */
  json_int_t maxid = -1;
  const char *key;
  size_t klen;
  json_t *v;
  json_object_keylen_foreach(vocab, key, klen, v) {
    if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > INT32_MAX / 2)
      return pl_fail(PL_EFORMAT, "%s: bad id for vocab entry '%s'", file, key);
    if (json_integer_value(v) > maxid)
      maxid = json_integer_value(v);
  }
  size_t i;
  json_array_foreach(added, i, v) {
    json_t *id = json_object_get(v, "id");
    if (!json_is_integer(id) || json_integer_value(id) < 0 || json_integer_value(id) > INT32_MAX / 2 ||
        !json_is_string(json_object_get(v, "content")))
      return pl_fail(PL_EFORMAT, "%s: bad added_tokens entry %zu", file, i);
    if (json_integer_value(id) > maxid)
      maxid = json_integer_value(id);
  }
  if (maxid < 0)
    return pl_fail(PL_EFORMAT, "%s: empty vocabulary", file);
  /* The arrays below span 0..max id: a real vocabulary is dense (a few gaps at most), so ids
   * far past the entries are malformed, not a reason to allocate gigabytes (fuzz_tokenizer_json
   * found one id of 255555596 in 300 entries). */
  size_t entries = json_object_size(vocab) + json_array_size(added);
  if ((size_t)maxid >= 2 * entries + 1024)
    return pl_fail(PL_EFORMAT, "%s: ids go up to %lld for only %zu vocabulary entries", file,
                   (long long)maxid, entries);
  int32_t n = (int32_t)maxid + 1;
  vocab_tmp vt = {pl_calloc((size_t)n, sizeof(char *)), pl_calloc((size_t)n, sizeof(uint32_t)),
                  pl_calloc((size_t)n, sizeof(uint16_t)), n};
  int rc = PL_OK;
  if (!vt.txt || !vt.len || !vt.attr) {
    rc = pl_fail(PL_ENOMEM, "%s: out of memory", file);
    goto done;
  }
  json_object_keylen_foreach(vocab, key, klen, v) {
    int32_t id = (int32_t)json_integer_value(v);
    vt.txt[id] = key;
    vt.len[id] = (uint32_t)klen;
    vt.attr[id] = PL_TOKATTR_NORMAL;
  }
  json_array_foreach(added, i, v) {
    int32_t id = (int32_t)json_integer_value(json_object_get(v, "id"));
    json_t *c = json_object_get(v, "content");
    vt.txt[id] = json_string_value(c);
    vt.len[id] = (uint32_t)json_string_length(c);
    uint16_t a = jbool(v, "special", 0) ? PL_TOKATTR_CONTROL : PL_TOKATTR_USER_DEFINED;
    if (jbool(v, "lstrip", 0))
      a |= PL_TOKATTR_LSTRIP;
    if (jbool(v, "rstrip", 0))
      a |= PL_TOKATTR_RSTRIP;
    vt.attr[id] = a;
  }
  for (int32_t k = 0; k < n; k++)
    if (!vt.txt[k]) { /* a hole: unused id with no text */
      vt.txt[k] = "";
      vt.attr[k] = PL_TOKATTR_UNUSED;
    }
  rc = pl_tok_set_vocab(t, n, vt.txt, vt.len);
  if (rc < 0)
    goto done;
  memcpy(t->attr, vt.attr, (size_t)n * sizeof *t->attr);

  rc = pl_tok_merges_reserve(t, json_array_size(merges));
  if (rc < 0)
    goto done;
  json_array_foreach(merges, i, v) {
    const char *a, *b;
    size_t al, bl;
    if (json_is_string(v)) {
      a = json_string_value(v);
      const char *sp = strchr(a + (a[0] ? 1 : 0), ' ');
      if (!sp)
        continue;
      al = (size_t)(sp - a);
      b = sp + 1;
      bl = json_string_length(v) - al - 1;
    } else if (json_is_array(v) && json_array_size(v) == 2 && json_is_string(json_array_get(v, 0)) &&
               json_is_string(json_array_get(v, 1))) {
      a = json_string_value(json_array_get(v, 0));
      al = json_string_length(json_array_get(v, 0));
      b = json_string_value(json_array_get(v, 1));
      bl = json_string_length(json_array_get(v, 1));
    } else {
      rc = pl_fail(PL_EFORMAT, "%s: bad merge entry %zu", file, i);
      goto done;
    }
    rc = pl_tok_add_merge(t, a, al, b, bl, (int32_t)i);
    if (rc < 0)
      goto done;
  }
  t->ignore_merges = jbool(model, "ignore_merges", 0);

done:
  pl_free(vt.txt);
  pl_free(vt.len);
  pl_free(vt.attr);
  return rc;
}

/* BOS/EOS that a TemplateProcessing post-processor wraps a single sequence in. */
static void post_processor_specials(pl_tokenizer *t, json_t *pp) {
  const char *type = jstr(pp, "type");
  if (!type)
    return;
  if (!strcmp(type, "Sequence")) {
    size_t i;
    json_t *v;
    json_array_foreach(json_object_get(pp, "processors"), i, v) post_processor_specials(t, v);
    return;
  }
  if (strcmp(type, "TemplateProcessing"))
    return;
  json_t *single = json_object_get(pp, "single");
  size_t n = json_array_size(single);
  if (n == 0)
    return;
  const char *first = jstr(json_object_get(json_array_get(single, 0), "SpecialToken"), "id");
  const char *last = jstr(json_object_get(json_array_get(single, n - 1), "SpecialToken"), "id");
  if (first) {
    int32_t id = pl_tok_lookup(t, first, strlen(first));
    if (id >= 0) {
      t->bos = id;
      t->add_bos = 1;
    }
  }
  if (last && n > 1) {
    int32_t id = pl_tok_lookup(t, last, strlen(last));
    if (id >= 0) {
      t->eos = id;
      t->add_eos = 1;
    }
  }
}

static int set_special(pl_tokenizer *t, json_t *cfg, const char *key, int32_t *id, char **text) {
  const char *s = token_content(json_object_get(cfg, key));
  if (!s)
    return PL_OK;
  int32_t k = pl_tok_lookup(t, s, strlen(s));
  if (k >= 0)
    *id = k;
  return text ? pl_tok_set_str(text, s, strlen(s)) : PL_OK;
}

/* dir + "/" + name into dst[cap]; PL_ERANGE when it does not fit. */
static int join_path(char *dst, size_t cap, const char *dir, const char *name) {
  size_t a = strlen(dir), b = strlen(name);
  if (a + 1 + b + 1 > cap)
    return pl_fail(PL_ERANGE, "path too long: %s/%s", dir, name);
  memcpy(dst, dir, a);
  dst[a] = '/';
  memcpy(dst + a + 1, name, b + 1);
  return PL_OK;
}

static int load_config(pl_tokenizer *t, const char *dir) {
  char path[4096];
  PL_TRY(join_path(path, sizeof path, dir, "tokenizer_config.json"));
  json_error_t err;
  json_t *cfg = NULL;
  struct stat st;
  if (stat(path, &st) == 0) {
    /* model_max_length can be 1e30: read integers as reals (we only need strings/bools) */
    cfg = json_load_file(path, JSON_ALLOW_NUL | JSON_DECODE_INT_AS_REAL, &err);
    if (!cfg)
      return pl_fail(PL_EFORMAT, "%s:%d: %s", path, err.line, err.text);
  }
  int rc = PL_OK;
  if (cfg) {
    if ((rc = set_special(t, cfg, "bos_token", &t->bos, &t->bos_text)) < 0 ||
        (rc = set_special(t, cfg, "eos_token", &t->eos, &t->eos_text)) < 0 ||
        (rc = set_special(t, cfg, "unk_token", &t->unk, NULL)) < 0 ||
        (rc = set_special(t, cfg, "pad_token", &t->pad, NULL)) < 0)
      goto out;
    t->add_bos = jbool(cfg, "add_bos_token", t->add_bos);
    t->add_eos = jbool(cfg, "add_eos_token", t->add_eos);
    json_t *ct = json_object_get(cfg, "chat_template");
    if (json_is_string(ct)) {
      rc = pl_tok_set_str(&t->chat_template, json_string_value(ct), json_string_length(ct));
    } else if (json_is_array(ct)) { /* [{name, template}]: the "default" one, else the first */
      size_t i;
      json_t *v, *pick = NULL;
      json_array_foreach(ct, i, v) {
        const char *nm = jstr(v, "name");
        if (!pick || (nm && !strcmp(nm, "default")))
          pick = v;
      }
      const char *s = pick ? jstr(pick, "template") : NULL;
      if (s)
        rc = pl_tok_set_str(&t->chat_template, s, strlen(s));
    }
    if (rc < 0)
      goto out;
  }
  if (!t->chat_template) { /* newer HF repos keep it in its own file */
    if ((rc = join_path(path, sizeof path, dir, "chat_template.jinja")) < 0)
      goto out;
    size_t n;
    char *s = NULL;
    if (stat(path, &st) == 0 && pl_read_file(path, (size_t)-1, &s, &n) < 0)
      s = NULL;
    if (s) {
      rc = pl_tok_set_str(&t->chat_template, s, n);
      pl_free(s);
      if (rc < 0)
        goto out;
    }
  }
  /* generation_config.json eos_token_id (int or list) ends generation too */
  if ((rc = join_path(path, sizeof path, dir, "generation_config.json")) < 0)
    goto out;
  if (stat(path, &st) == 0) {
    json_t *gc = json_load_file(path, JSON_DECODE_INT_AS_REAL, &err);
    if (gc) {
      json_t *e = json_object_get(gc, "eos_token_id");
      if (json_is_number(e)) {
        rc = pl_tok_add_eog_id(t, (int32_t)json_number_value(e));
      } else if (json_is_array(e)) {
        size_t i;
        json_t *v;
        json_array_foreach(e, i, v) if (rc >= 0 && json_is_number(v)) rc = pl_tok_add_eog_id(t, (int32_t)json_number_value(v));
      }
      json_decref(gc);
    }
  }
out:
  json_decref(cfg);
  return rc;
}

static int load(pl_tokenizer *t, const char *file, const char *dir) {
  json_error_t err;
  json_t *root = json_load_file(file, JSON_ALLOW_NUL, &err);
  if (!root) {
    struct stat st;
    if (stat(file, &st) != 0)
      return pl_fail(PL_EIO, "%s: cannot open", file);
    return pl_fail(PL_EFORMAT, "%s:%d: %s", file, err.line, err.text);
  }
  pretok_spec ps = {0};
  t->kind = PL_TOK_BPE;
  int rc = load_model(t, root, file);
  if (rc >= 0)
    rc = parse_norm(json_object_get(root, "normalizer"), &t->normalizer, file);
  if (rc >= 0)
    rc = parse_pretok(json_object_get(root, "pre_tokenizer"), &ps, file);
  if (rc >= 0) {
    const char *dec = jstr(json_object_get(root, "decoder"), "type");
    if (dec && !strcmp(dec, "ByteLevel"))
      ps.byte_level = 1;
    if (!ps.byte_level)
      rc = pl_fail(PL_EUNSUPPORTED, "%s: only byte-level BPE tokenizer.json files are supported", file);
  }
  if (rc >= 0) {
    t->byte_level = 1;
    if (ps.n)
      rc = pl_pretok_create(ps.pats, ps.n, &t->pretok);
  }
  if (rc >= 0) {
    post_processor_specials(t, json_object_get(root, "post_processor"));
    rc = pl_tok_set_str(&t->pre_name, "hf", 2);
  }
  for (int i = 0; i < ps.n; i++)
    pl_free(ps.owned[i]);
  json_decref(root);
  if (rc >= 0)
    rc = load_config(t, dir);
  if (rc >= 0)
    rc = pl_tok_finalize(t);
  return rc;
}

int pl_tokenizer_load_hf(const char *path, pl_tokenizer **out) {
  *out = NULL;
  if (!path)
    return pl_fail(PL_EINVAL, "tokenizer: no path");
  char file[4096], dir[4096];
  struct stat st;
  size_t pl = strlen(path);
  if (pl + 1 > sizeof dir)
    return pl_fail(PL_ERANGE, "path too long: %s", path);
  if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
    memcpy(dir, path, pl + 1);
    PL_TRY(join_path(file, sizeof file, path, "tokenizer.json"));
  } else {
    memcpy(file, path, pl + 1);
    const char *sl = strrchr(path, '/');
    if (sl) {
      memcpy(dir, path, (size_t)(sl - path));
      dir[sl - path] = 0;
    } else {
      memcpy(dir, ".", 2);
    }
  }
  pl_tokenizer *t = pl_tok_new();
  if (!t)
    return pl_fail(PL_ENOMEM, "tokenizer: out of memory");
  int rc = load(t, file, dir);
  if (rc < 0) {
    pl_tokenizer_free(t);
    return rc;
  }
  *out = t;
  return PL_OK;
}
