/* config.json of a Hugging Face model directory (hf_config.h). */
#include "model/hf_config.h"

#include <jansson.h>
#include <string.h>

#include "util/error.h"

typedef struct {
  const char *path;
  int strict;
} cfg_reader;

/* An integer field. Strict: required when def < 0, else optional with default def; present
 * values must be integers in [1, max]. Lenient: the value when it is an integer, else def
 * (lenient_def for a required field). */
static int cfg_int(const cfg_reader *r, const json_t *c, const char *k, long long def,
                   int lenient_def, long long max, int *out) {
  json_t *v = json_object_get(c, k);
  if (!r->strict) {
    *out = json_is_integer(v) ? (int)json_integer_value(v) : def < 0 ? lenient_def : (int)def;
    return 0;
  }
  if (!v || json_is_null(v)) {
    if (def < 0)
      return pl_fail(PL_EFORMAT, "%s: missing field '%s'", r->path, k);
    *out = (int)def;
    return 0;
  }
  if (!json_is_integer(v) || json_integer_value(v) <= 0 || json_integer_value(v) > max)
    return pl_fail(PL_EFORMAT, "%s: field '%s' must be an integer in [1, %lld]", r->path, k,
                   max);
  *out = (int)json_integer_value(v);
  return 0;
}

/* An optional number field (default def). Strict: present values must be positive. */
static int cfg_num(const cfg_reader *r, const json_t *c, const char *k, double def,
                   double *out) {
  json_t *v = json_object_get(c, k);
  if (!r->strict) {
    *out = json_is_number(v) ? json_number_value(v) : def;
    return 0;
  }
  if (!v || json_is_null(v)) {
    *out = def;
    return 0;
  }
  if (!json_is_number(v) || !(json_number_value(v) > 0))
    return pl_fail(PL_EFORMAT, "%s: field '%s' must be a positive number", r->path, k);
  *out = json_number_value(v);
  return 0;
}

static int parse_rope(const cfg_reader *r, const json_t *c, pl_hparams *hp) {
  const char *path = r->path;
  /* transformers 5 moved rope settings into "rope_parameters"; older configs have rope_theta
   * and rope_scaling at the top level, which win when present. */
  json_t *rp = json_object_get(c, "rope_parameters");
  json_t *rs = json_object_get(c, "rope_scaling");
  const json_t *theta_src = json_is_object(rp) && !json_object_get(c, "rope_theta") ? rp : c;
  if (!r->strict && !json_is_number(json_object_get(c, "rope_theta")))
    theta_src = rp;
  double theta;
  PL_TRY(cfg_num(r, theta_src, "rope_theta", 10000, &theta));
  hp->rope_theta = (float)theta;
  if (r->strict && rs && !json_is_null(rs) && !json_is_object(rs))
    return pl_fail(PL_EFORMAT, "%s: field 'rope_scaling' must be an object or null", path);
  json_t *scal = json_is_object(rs) ? rs : json_is_object(rp) ? rp : NULL;
  if (!scal)
    return 0;
  const char *type = json_string_value(json_object_get(scal, "rope_type"));
  if (!type)
    type = json_string_value(json_object_get(scal, "type"));
  if (type && !strcmp(type, "llama3")) {
    double f, lo, hi;
    int orig;
    PL_TRY(cfg_num(r, scal, "factor", 8, &f));
    PL_TRY(cfg_num(r, scal, "low_freq_factor", 1, &lo));
    PL_TRY(cfg_num(r, scal, "high_freq_factor", 4, &hi));
    PL_TRY(cfg_int(r, scal, "original_max_position_embeddings", 8192, 0, 1 << 24, &orig));
    hp->rope_llama3 = 1;
    hp->rope_factor = (float)f;
    hp->rope_low_freq_factor = (float)lo;
    hp->rope_high_freq_factor = (float)hi;
    hp->rope_orig_ctx = orig;
    if (r->strict && !(hi > lo))
      return pl_fail(PL_EFORMAT, "%s: llama3 rope_scaling needs high_freq_factor > "
                     "low_freq_factor", path);
    if (!r->strict && (!(hp->rope_high_freq_factor > hp->rope_low_freq_factor) ||
                       hp->rope_factor <= 0 || hp->rope_orig_ctx <= 0))
      return pl_fail(PL_EFORMAT, "%s: bad llama3 rope_scaling", path);
  } else if (type && strcmp(type, "default")) {
    return pl_fail(PL_EUNSUPPORTED, "%s: rope scaling type '%s' is not supported (llama3)",
                   path, type);
  }
  return 0;
}

static int parse(const cfg_reader *r, const json_t *c, pl_hparams *hp, pl_hf_quant *quant) {
  const char *path = r->path;
  if (!json_is_object(c))
    return pl_fail(PL_EFORMAT, "%s: not a JSON object", path);
  json_t *mtv = json_object_get(c, "model_type");
  const char *mt = json_string_value(mtv);
  if (!mtv)
    return pl_fail(PL_EFORMAT, "%s: missing field 'model_type'", path);
  if (!mt)
    return pl_fail(PL_EFORMAT, "%s: field 'model_type' must be a string", path);
  if (pl_arch_from_name(mt, &hp->arch) < 0)
    return pl_fail(PL_EUNSUPPORTED, "%s: model_type '%s' is not supported (llama, mistral, "
                   "qwen2, qwen3)", path, mt);
  /* Required sizes (lenient: 0 when missing, the weights' shape checks then fail). */
  PL_TRY(cfg_int(r, c, "hidden_size", -1, 0, 256 * 1024, &hp->n_embd));
  PL_TRY(cfg_int(r, c, "intermediate_size", -1, 0, 1 << 20, &hp->n_ff));
  PL_TRY(cfg_int(r, c, "num_hidden_layers", -1, 0, 1024, &hp->n_layer));
  PL_TRY(cfg_int(r, c, "num_attention_heads", -1, 0, 1024, &hp->n_head));
  if (hp->n_head <= 0) /* lenient only: strict required it in [1, 1024] */
    return pl_fail(PL_EFORMAT, "%s: num_attention_heads missing", path);
  PL_TRY(cfg_int(r, c, "num_key_value_heads", hp->n_head, 0, 1024, &hp->n_head_kv));
  PL_TRY(cfg_int(r, c, "vocab_size", -1, 0, 4 << 20, &hp->n_vocab));
  PL_TRY(cfg_int(r, c, "max_position_embeddings", -1, 2048, 1 << 24, &hp->n_ctx_train));
  if (r->strict && !json_object_get(c, "head_dim") && hp->n_embd % hp->n_head)
    return pl_fail(PL_EFORMAT, "%s: hidden_size %d is not a multiple of num_attention_heads %d "
                   "(and no head_dim is given)", path, hp->n_embd, hp->n_head);
  PL_TRY(cfg_int(r, c, "head_dim", hp->n_embd / hp->n_head, 0, 1024, &hp->head_dim));
  if (r->strict && hp->n_head % hp->n_head_kv)
    return pl_fail(PL_EFORMAT, "%s: num_attention_heads %d is not a multiple of "
                   "num_key_value_heads %d", path, hp->n_head, hp->n_head_kv);
  if (r->strict && hp->head_dim % 2)
    return pl_fail(PL_EFORMAT, "%s: head_dim %d must be even (RoPE rotates pairs)", path,
                   hp->head_dim);
  double eps;
  PL_TRY(cfg_num(r, c, "rms_norm_eps", 1e-6, &eps)); /* transformers' default */
  hp->rms_eps = (float)eps;
  json_t *tie = json_object_get(c, "tie_word_embeddings");
  if (r->strict && tie && !json_is_boolean(tie))
    return pl_fail(PL_EFORMAT, "%s: field 'tie_word_embeddings' must be true or false", path);
  hp->tied_embeddings = json_is_true(tie);
  PL_TRY(parse_rope(r, c, hp));
  if (quant) {
    *quant = (pl_hf_quant){0, 0};
    json_t *q = json_object_get(c, "quantization");
    if (json_is_object(q)) {
      json_t *b = json_object_get(q, "bits"), *g = json_object_get(q, "group_size");
      quant->bits = json_is_integer(b) ? (int)json_integer_value(b) : 0;
      quant->group_size = json_is_integer(g) ? (int)json_integer_value(g) : 0;
      if ((quant->bits != 4 && quant->bits != 8) || quant->group_size <= 0 ||
          quant->group_size % 8)
        return pl_fail(PL_EUNSUPPORTED, "%s: MLX quantization bits %d group %d not supported "
                       "(4 or 8 bits)", path, quant->bits, quant->group_size);
    }
  }
  return 0;
}

int pl_hf_config_load(const char *path, int strict, pl_hparams *hp, pl_hf_quant *quant) {
  json_error_t jerr;
  json_t *c = json_load_file(path, 0, &jerr);
  if (!c) {
    if (jerr.line < 0) /* jansson's mark of a file it could not open */
      return pl_fail(PL_EFORMAT, "%s: cannot read: %s", path, jerr.text);
    return pl_fail(PL_EFORMAT, "%s: cannot parse: %s (line %d)", path, jerr.text, jerr.line);
  }
  cfg_reader r = {path, strict};
  int rc = parse(&r, c, hp, quant);
  json_decref(c);
  return rc;
}
