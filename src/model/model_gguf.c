/* GGUF → pl_model: llama.cpp key and tensor names for the llama, mistral, qwen2 and qwen3
 * architectures. Weight bytes stay in the mapping; the pl_gguf stays open (tokenizer
 * metadata and the chat template are read from it later). */
#include <stdio.h>
#include <string.h>

#include "model/gguf.h"
#include "model/model.h"
#include "util/alloc.h"
#include "util/error.h"

int pl_model_load_gguf(const char *path, pl_model *m);

static int get_int(const pl_gguf *g, const char *arch, const char *key, int *out, int required,
                   int def) {
  char k[160];
  snprintf(k, sizeof k, "%s.%s", arch, key);
  int64_t v;
  int rc = pl_gguf_get_i64(g, k, &v);
  if (rc == PL_ENOTFOUND) {
    if (required)
      return pl_fail(PL_EFORMAT, "%s: missing metadata key '%s'", pl_gguf_path(g), k);
    *out = def;
    return 0;
  }
  if (rc < 0)
    return rc;
  if (v < 0 || v > (1 << 30))
    return pl_fail(PL_EFORMAT, "%s: metadata '%s' = %lld out of range", pl_gguf_path(g), k,
                   (long long)v);
  *out = (int)v;
  return 0;
}

static int get_float(const pl_gguf *g, const char *arch, const char *key, float *out, float def) {
  char k[160];
  snprintf(k, sizeof k, "%s.%s", arch, key);
  int rc = pl_gguf_get_f32(g, k, out);
  if (rc == PL_ENOTFOUND) {
    *out = def;
    return 0;
  }
  return rc;
}

static int tensor(pl_model *m, const char *name, pl_tensor *t, int required) {
  int rc = pl_gguf_tensor(m->gguf, name, t);
  if (rc == PL_ENOTFOUND) {
    memset(t, 0, sizeof *t);
    return required ? pl_fail(PL_EFORMAT, "%s: missing tensor '%s'", m->path, name) : 0;
  }
  if (rc < 0)
    return rc;
  /* 1-D tensors are small: keep them as owned F32 so the kernels see one type. */
  if (t->n_dims == 1 || (t->n_dims == 2 && t->ne[1] == 1))
    return pl_model_own_f32(m, t);
  return 0;
}

int pl_model_load_gguf(const char *path, pl_model *m) {
  PL_TRY(pl_gguf_open(path, &m->gguf));
  const pl_gguf *g = m->gguf;
  m->format = "gguf";
  pl_gguf_str a;
  if (pl_gguf_get_str(g, "general.architecture", &a) != 0)
    return pl_fail(PL_EFORMAT, "%s: missing general.architecture", path);
  char arch[32];
  if (a.len >= sizeof arch)
    return pl_fail(PL_EUNSUPPORTED, "%s: unsupported architecture", path);
  memcpy(arch, a.ptr, a.len);
  arch[a.len] = 0;
  pl_hparams *hp = &m->hp;
  if (pl_arch_from_name(arch, &hp->arch) < 0)
    return pl_fail(PL_EUNSUPPORTED,
                   "%s: architecture '%s' is not supported (llama, mistral, qwen2, qwen3)", path,
                   arch);
  PL_TRY(get_int(g, arch, "embedding_length", &hp->n_embd, 1, 0));
  PL_TRY(get_int(g, arch, "block_count", &hp->n_layer, 1, 0));
  PL_TRY(get_int(g, arch, "feed_forward_length", &hp->n_ff, 1, 0));
  PL_TRY(get_int(g, arch, "attention.head_count", &hp->n_head, 1, 0));
  PL_TRY(get_int(g, arch, "attention.head_count_kv", &hp->n_head_kv, 0, hp->n_head));
  PL_TRY(get_int(g, arch, "context_length", &hp->n_ctx_train, 1, 0));
  if (hp->n_head <= 0 || hp->n_embd <= 0)
    return pl_fail(PL_EFORMAT, "%s: zero heads or embedding length", path);
  PL_TRY(get_int(g, arch, "attention.key_length", &hp->head_dim, 0, hp->n_embd / hp->n_head));
  PL_TRY(get_int(g, arch, "rope.dimension_count", &hp->rope_dim, 0, hp->head_dim));
  PL_TRY(get_float(g, arch, "attention.layer_norm_rms_epsilon", &hp->rms_eps, 1e-5f));
  PL_TRY(get_float(g, arch, "rope.freq_base", &hp->rope_theta, 10000.0f));
  hp->rope_style = (hp->arch == PL_ARCH_QWEN2 || hp->arch == PL_ARCH_QWEN3) ? PL_ROPE_NEOX
                                                                           : PL_ROPE_NORM;
  if (hp->n_layer <= 0 || hp->n_layer > 1024)
    return pl_fail(PL_EFORMAT, "%s: absurd block_count %d", path, hp->n_layer);

  PL_TRY(tensor(m, "token_embd.weight", &m->tok_embd, 1));
  hp->n_vocab = m->tok_embd.n_dims >= 2 ? (int)m->tok_embd.ne[1] : 0;
  int vs;
  PL_TRY(get_int(g, arch, "vocab_size", &vs, 0, hp->n_vocab));
  if (vs != hp->n_vocab)
    return pl_fail(PL_EFORMAT, "%s: vocab_size %d but token_embd has %d rows", path, vs,
                   hp->n_vocab);
  PL_TRY(tensor(m, "output_norm.weight", &m->output_norm, 1));
  PL_TRY(tensor(m, "output.weight", &m->output, 0));
  if (!m->output.data) {
    m->output = m->tok_embd;
    hp->tied_embeddings = 1;
  }
  pl_tensor rope_freqs;
  PL_TRY(tensor(m, "rope_freqs.weight", &rope_freqs, 0));
  m->layers = pl_calloc((size_t)hp->n_layer, sizeof *m->layers);
  if (!m->layers)
    return pl_fail(PL_ENOMEM, "out of memory");
  for (int l = 0; l < hp->n_layer; l++) {
    pl_layer *L = &m->layers[l];
    char n[96];
#define T(field, suffix, req)                         \
  snprintf(n, sizeof n, "blk.%d." suffix, l);         \
  PL_TRY(tensor(m, n, &L->field, req));
    T(attn_norm, "attn_norm.weight", 1);
    T(wq, "attn_q.weight", 1);
    T(wk, "attn_k.weight", 1);
    T(wv, "attn_v.weight", 1);
    T(bq, "attn_q.bias", 0);
    T(bk, "attn_k.bias", 0);
    T(bv, "attn_v.bias", 0);
    T(q_norm, "attn_q_norm.weight", 0);
    T(k_norm, "attn_k_norm.weight", 0);
    T(wo, "attn_output.weight", 1);
    T(ffn_norm, "ffn_norm.weight", 1);
    T(w_gate, "ffn_gate.weight", 1);
    T(w_up, "ffn_up.weight", 1);
    T(w_down, "ffn_down.weight", 1);
#undef T
  }
  if (hp->rope_dim <= 0 || hp->rope_dim > hp->head_dim || hp->rope_dim % 2)
    return pl_fail(PL_EFORMAT, "%s: bad rope.dimension_count %d", path, hp->rope_dim);
  return pl_model_init_rope(m, &rope_freqs);
}
