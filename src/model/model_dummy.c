/* `--load-format dummy` (vLLM's name): a model with random weights and no file. The shape comes
 * from a preset (model_preset.h) or a Hugging Face config.json; the matrices are tensors marked
 * `random` that the backend generates where they live (weight_fill_random: device memory on
 * CUDA, no host buffer of the weights' size); norms and biases are small and generated here as
 * owned F32, like a loader's 1-D tensors. Values are model-gen's (same roles, seed, std and
 * hash), so `model-gen --preset P --seed S --type T` writes a GGUF of exactly these weights.
 *
 * The tokenizer is model-gen's synthetic vocabulary of vocab_size tokens (synth_vocab.h), put in
 * a metadata-only GGUF in $TMPDIR that is mapped and then unlinked, so the engine's text side
 * (tokenizer, BOS/EOS, no chat template) works as with the model-gen file.
 *
 * RoPE style is the GGUF loader's for the architecture (llama/mistral adjacent pairs, qwen
 * half-split), again so that the model-gen file and this model compute the same logits. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "backend/weight_rand.h"
#include "model/gguf.h"
#include "model/gguf_write.h"
#include "model/hf_config.h"
#include "model/model.h"
#include "model/model_preset.h"
#include "model/synth_vocab.h"
#include "util/alloc.h"
#include "util/error.h"

static int preset_hparams(const pl_model_preset *ps, pl_hparams *hp) {
  hp->arch = !strcmp(ps->arch, "qwen2") ? PL_ARCH_QWEN2 : PL_ARCH_LLAMA;
  hp->n_embd = (int)ps->n_embd;
  hp->n_layer = (int)ps->n_layer;
  hp->n_head = (int)ps->n_head;
  hp->n_head_kv = (int)ps->n_head_kv;
  hp->n_ff = (int)ps->n_ff;
  hp->n_vocab = (int)ps->n_vocab;
  hp->n_ctx_train = (int)ps->n_ctx;
  hp->head_dim = (int)ps->head_dim;
  hp->rope_theta = (float)ps->rope_theta;
  hp->rms_eps = (float)ps->rms_eps;
  hp->tied_embeddings = ps->tied;
  return 0;
}

/* A preset name, a config.json, or a directory holding one. Sets m->name. */
static int read_shape(pl_model *m, const char *config) {
  const pl_model_preset *ps = pl_model_preset_find(config);
  if (ps) {
    m->name = pl_strdup(ps->name);
    return m->name ? preset_hparams(ps, &m->hp) : pl_fail(PL_ENOMEM, "out of memory");
  }
  struct stat st;
  if (stat(config, &st) != 0)
    return pl_fail(PL_EIO, "--model-config '%s' is neither a preset (%s) nor a config.json: %s",
                   config, pl_model_preset_names(), strerror(errno));
  char path[4096];
  snprintf(path, sizeof path, "%s%s", config, S_ISDIR(st.st_mode) ? "/config.json" : "");
  /* strict: the config is all there is; no tensor shapes will check its sizes */
  PL_TRY(pl_hf_config_load(path, 1, &m->hp, NULL));
  /* the model's name: the directory holding config.json ("Meta-Llama-3-8B"), else the file */
  char *slash = strrchr(path, '/');
  const char *nm = path;
  size_t len = strlen(path);
  if (slash && !strcmp(slash + 1, "config.json")) {
    *slash = 0;
    char *s2 = strrchr(path, '/');
    nm = s2 ? s2 + 1 : path;
    len = strlen(nm);
    if (!len || !strcmp(nm, ".")) {
      nm = "config";
      len = 6;
    }
  } else if (slash) {
    nm = slash + 1;
    len = strlen(nm);
  }
  m->name = pl_strndup(nm, len);
  return m->name ? 0 : pl_fail(PL_ENOMEM, "out of memory");
}

/* ---- tensors ---------------------------------------------------------------------------- */

static void mat(pl_tensor *t, const pl_dummy_spec *s, pl_weight_role role, int layer,
                const char *name, int64_t ne0, int64_t ne1) {
  memset(t, 0, sizeof *t);
  snprintf(t->name, sizeof t->name, name, layer);
  t->type = s->dtype;
  t->n_dims = 2;
  t->ne[0] = ne0;
  t->ne[1] = ne1;
  t->ne[2] = t->ne[3] = 1;
  t->nbytes = pl_dtype_row_bytes(s->dtype, ne0) * (size_t)ne1;
  t->random = 1;
  t->rand_stream = pl_weight_stream(s->seed, role, layer);
  t->rand_scale = pl_wrand_scale(PL_WEIGHT_STD);
}

/* a 1-D F32 tensor generated here: mean + the same values as a matrix */
static int vec(pl_model *m, pl_tensor *t, const pl_dummy_spec *s, pl_weight_role role, int layer,
               const char *name, int64_t n, float mean) {
  memset(t, 0, sizeof *t);
  snprintf(t->name, sizeof t->name, name, layer);
  float *f = pl_model_alloc_f32(m, n);
  if (!f)
    return pl_fail(PL_ENOMEM, "out of memory");
  uint64_t st = pl_weight_stream(s->seed, role, layer);
  float scale = pl_wrand_scale(PL_WEIGHT_STD);
  for (int64_t i = 0; i < n; i++)
    f[i] = mean + pl_wrand_value(st, (uint64_t)i, scale);
  t->type = PL_DT_F32;
  t->n_dims = 1;
  t->ne[0] = n;
  t->ne[1] = t->ne[2] = t->ne[3] = 1;
  t->data = f;
  t->nbytes = (size_t)n * sizeof(float);
  return 0;
}

static int build(pl_model *m, const pl_dummy_spec *s) {
  pl_hparams *hp = &m->hp;
  int64_t E = hp->n_embd, Q = (int64_t)hp->n_head * hp->head_dim,
          K = (int64_t)hp->n_head_kv * hp->head_dim, F = hp->n_ff, V = hp->n_vocab;
  int bs = pl_dtype_block_size(s->dtype);
  if (bs != 1)
    return pl_fail(PL_EUNSUPPORTED, "random weights are f32, f16 or bf16, not %s",
                   pl_dtype_name(s->dtype));
  mat(&m->tok_embd, s, PL_W_TOK_EMBD, -1, "token_embd.weight", E, V);
  PL_TRY(vec(m, &m->output_norm, s, PL_W_OUTPUT_NORM, -1, "output_norm.weight", E, 1.0f));
  if (hp->tied_embeddings)
    m->output = m->tok_embd;
  else
    mat(&m->output, s, PL_W_OUTPUT, -1, "output.weight", E, V);
  m->layers = pl_calloc((size_t)hp->n_layer, sizeof *m->layers);
  if (!m->layers)
    return pl_fail(PL_ENOMEM, "out of memory");
  int qwen2 = hp->arch == PL_ARCH_QWEN2, qwen3 = hp->arch == PL_ARCH_QWEN3;
  for (int l = 0; l < hp->n_layer; l++) {
    pl_layer *L = &m->layers[l];
    PL_TRY(vec(m, &L->attn_norm, s, PL_W_ATTN_NORM, l, "blk.%d.attn_norm.weight", E, 1.0f));
    mat(&L->wq, s, PL_W_Q, l, "blk.%d.attn_q.weight", E, Q);
    mat(&L->wk, s, PL_W_K, l, "blk.%d.attn_k.weight", E, K);
    mat(&L->wv, s, PL_W_V, l, "blk.%d.attn_v.weight", E, K);
    if (qwen2) {
      PL_TRY(vec(m, &L->bq, s, PL_W_BQ, l, "blk.%d.attn_q.bias", Q, 0.0f));
      PL_TRY(vec(m, &L->bk, s, PL_W_BK, l, "blk.%d.attn_k.bias", K, 0.0f));
      PL_TRY(vec(m, &L->bv, s, PL_W_BV, l, "blk.%d.attn_v.bias", K, 0.0f));
    }
    if (qwen3) {
      PL_TRY(vec(m, &L->q_norm, s, PL_W_Q_NORM, l, "blk.%d.attn_q_norm.weight", hp->head_dim,
                 1.0f));
      PL_TRY(vec(m, &L->k_norm, s, PL_W_K_NORM, l, "blk.%d.attn_k_norm.weight", hp->head_dim,
                 1.0f));
    }
    mat(&L->wo, s, PL_W_O, l, "blk.%d.attn_output.weight", Q, E);
    PL_TRY(vec(m, &L->ffn_norm, s, PL_W_FFN_NORM, l, "blk.%d.ffn_norm.weight", E, 1.0f));
    mat(&L->w_gate, s, PL_W_GATE, l, "blk.%d.ffn_gate.weight", E, F);
    mat(&L->w_down, s, PL_W_DOWN, l, "blk.%d.ffn_down.weight", F, E);
    mat(&L->w_up, s, PL_W_UP, l, "blk.%d.ffn_up.weight", E, F);
  }
  return 0;
}

/* The synthetic vocabulary as a metadata-only GGUF: written to $TMPDIR, mapped, unlinked. */
static int make_vocab(pl_model *m) {
  if (m->hp.n_vocab < PL_SV_MIN_VOCAB)
    return pl_fail(PL_EFORMAT, "%s: vocab_size %d is below %d, the smallest synthetic "
                   "vocabulary (<unk>, <s>, </s>, 256 byte tokens, one more)", m->path,
                   m->hp.n_vocab, PL_SV_MIN_VOCAB);
  const char *dir = getenv("TMPDIR");
  char path[4096];
  snprintf(path, sizeof path, "%s/pagellm-vocab-XXXXXX", dir && *dir ? dir : "/tmp");
  int fd = mkstemp(path);
  if (fd < 0)
    return pl_fail(PL_EIO, "cannot create a temporary file for the vocabulary in %s: %s",
                   dir && *dir ? dir : "/tmp", strerror(errno));
  close(fd);
  pl_gguf_writer *w = NULL;
  int rc = pl_gguf_writer_create(&w);
  if (!rc)
    rc = pl_gguf_set_str(w, "general.architecture", pl_arch_name(m->hp.arch));
  if (!rc)
    rc = pl_gguf_set_str(w, "general.name", m->name);
  if (!rc)
    rc = pl_synth_vocab_write(w, m->hp.n_vocab);
  if (!rc)
    rc = pl_gguf_write_file(w, path);
  pl_gguf_writer_destroy(w);
  if (!rc)
    rc = pl_gguf_open(path, &m->gguf);
  unlink(path);
  return rc;
}

int pl_model_load_dummy(const pl_dummy_spec *s, pl_model **out) {
  *out = NULL;
  if (!s || !s->config || !*s->config)
    return pl_fail(PL_EINVAL, "--load-format dummy needs --model-config PRESET|config.json "
                   "(presets: %s)", pl_model_preset_names());
  if (s->dtype != PL_DT_F32 && s->dtype != PL_DT_F16 && s->dtype != PL_DT_BF16)
    return pl_fail(PL_EINVAL, "random weights are f32, f16 or bf16, not %s",
                   pl_dtype_name(s->dtype));
  pl_model *m = pl_calloc(1, sizeof *m);
  if (!m)
    return pl_fail(PL_ENOMEM, "out of memory");
  m->format = "dummy";
  int rc = read_shape(m, s->config);
  if (!rc) {
    size_t n = strlen(s->config) + 8;
    m->path = pl_malloc(n);
    if (m->path)
      snprintf(m->path, n, "dummy:%s", s->config);
    else
      rc = pl_fail(PL_ENOMEM, "out of memory");
  }
  pl_hparams *hp = &m->hp;
  if (!rc) {
    hp->rope_dim = hp->head_dim;
    hp->rope_style = hp->arch == PL_ARCH_QWEN2 || hp->arch == PL_ARCH_QWEN3 ? PL_ROPE_NEOX
                                                                             : PL_ROPE_NORM;
    if (hp->n_head_kv > hp->n_head)
      rc = pl_fail(PL_EFORMAT, "%s: num_key_value_heads %d exceeds num_attention_heads %d",
                   m->path, hp->n_head_kv, hp->n_head);
  }
  if (!rc)
    rc = make_vocab(m);
  if (!rc)
    rc = build(m, s);
  if (!rc)
    rc = pl_model_init_rope(m, NULL);
  if (!rc)
    rc = pl_model_validate(m);
  if (rc < 0) {
    pl_model_free(m);
    return rc;
  }
  *out = m;
  return 0;
}
