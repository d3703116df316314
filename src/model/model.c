/* Model loading entry point and the checks shared by both loaders: every weight's shape is
 * compared with the hyperparameters before any kernel sees it, so a malformed file is a
 * clear error at load time and never an out-of-bounds read during a step. */
#include "model/model.h"

#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include "backend/backend.h"
#include "backend/tensor.h"
#include "model/gguf.h"
#include "util/alloc.h"
#include "util/array.h"
#include "util/error.h"

int pl_model_load_gguf(const char *path, pl_model *m);        /* model_gguf.c */
int pl_model_load_safetensors(const char *dir, pl_model *m);  /* model_safetensors.c */

const char *pl_arch_name(pl_arch a) {
  switch (a) {
  case PL_ARCH_LLAMA: return "llama";
  case PL_ARCH_MISTRAL: return "mistral";
  case PL_ARCH_QWEN2: return "qwen2";
  case PL_ARCH_QWEN3: return "qwen3";
  }
  return "unknown";
}

int pl_arch_from_name(const char *name, pl_arch *out) {
  for (pl_arch a = PL_ARCH_LLAMA; a <= PL_ARCH_QWEN3; a++)
    if (!strcmp(name, pl_arch_name(a))) {
      *out = a;
      return 0;
    }
  return -1;
}

static char *stem(const char *path) {
  size_t n = strlen(path);
  while (n > 1 && path[n - 1] == '/')
    n--;
  const char *s = path + n;
  while (s > path && s[-1] != '/')
    s--;
  size_t len = (size_t)(path + n - s);
  if (len > 5 && !memcmp(s + len - 5, ".gguf", 5))
    len -= 5;
  return pl_strndup(s, len);
}

int pl_model_load(const char *path, pl_model **out) {
  *out = NULL;
  struct stat st;
  if (stat(path, &st) != 0)
    return pl_fail(PL_EIO, "%s: no such file or directory", path);
  pl_model *m = pl_calloc(1, sizeof *m);
  if (!m)
    return pl_fail(PL_ENOMEM, "out of memory");
  m->path = pl_strdup(path);
  m->name = stem(path);
  int rc;
  if (!m->path || !m->name)
    rc = pl_fail(PL_ENOMEM, "out of memory");
  else if (S_ISDIR(st.st_mode))
    rc = pl_model_load_safetensors(path, m);
  else
    rc = pl_model_load_gguf(path, m);
  if (rc == 0)
    rc = pl_model_validate(m);
  if (rc < 0) {
    pl_model_free(m);
    return rc;
  }
  *out = m;
  return PL_OK;
}

void pl_model_free(pl_model *m) {
  if (!m)
    return;
  for (int i = 0; i < m->n_owned; i++)
    pl_free(m->owned[i]);
  pl_free(m->owned);
  for (int i = 0; i < m->n_maps; i++)
    munmap(m->maps[i], m->map_sizes[i]);
  pl_free(m->maps);
  pl_free(m->map_sizes);
  pl_gguf_close(m->gguf);
  pl_free(m->layers);
  pl_free(m->rope_inv_freq);
  pl_free(m->hf_dir);
  pl_free(m->path);
  pl_free(m->name);
  pl_free(m);
}

/* Calls fn on every distinct weight tensor (a tied output shares the embedding's upload). */
static int each_tensor(pl_model *m, int (*fn)(void *ctx, pl_tensor *t), void *ctx) {
  PL_TRY(fn(ctx, &m->tok_embd));
  PL_TRY(fn(ctx, &m->output_norm));
  if (m->hp.tied_embeddings) { /* output is a copy of the embedding's view */
    m->output.data = m->tok_embd.data; /* set by a random fill on the CPU */
    m->output.dev = m->tok_embd.dev;
  } else {
    PL_TRY(fn(ctx, &m->output));
  }
  for (int l = 0; l < m->hp.n_layer; l++) {
    pl_layer *L = &m->layers[l];
    pl_tensor *ts[] = {&L->attn_norm, &L->wq, &L->wk, &L->wv, &L->bq, &L->bk, &L->bv,
                       &L->q_norm, &L->k_norm, &L->wo, &L->ffn_norm, &L->w_gate, &L->w_up,
                       &L->w_down};
    for (size_t i = 0; i < sizeof ts / sizeof *ts; i++)
      if (ts[i]->data || ts[i]->random)
        PL_TRY(fn(ctx, ts[i]));
  }
  return 0;
}

typedef struct {
  pl_backend *be;
  size_t done, total;
  int bar, shown;
} upload_ctx;

static int upload_one(void *ctx, pl_tensor *t) {
  upload_ctx *u = ctx;
  if (t->random && !u->be->ops->weight_fill_random)
    return pl_fail(PL_EUNSUPPORTED, "the %s backend cannot generate random weights",
                   u->be->ops->name);
  PL_TRY(t->random ? u->be->ops->weight_fill_random(u->be, t)
                   : u->be->ops->weight_upload(u->be, t));
  u->done += t->nbytes;
  int pct = u->total ? (int)(100.0 * u->done / u->total) : 100;
  if (u->bar && pct != u->shown) {
    u->shown = pct;
    fprintf(stderr, "\r%s weights %s %s: %3d%% [%-40.*s] %.2f / %.2f GiB",
            t->random ? "generating" : "loading", t->random ? "on" : "to", u->be->ops->name, pct,
            pct * 40 / 100, "========================================", u->done / 1073741824.0,
            u->total / 1073741824.0);
  }
  return 0;
}

/* Each layer's q/k/v weights placed together where the backend joins them: one GEMM instead
 * of three, two of them small (k and v of a GQA model). Gate and up stay apart: each is
 * already large enough for the GEMM to run near the memory bandwidth, and the split of the
 * joint output would cost more than joining gains (BENCHMARKS 13f). */
static int join_groups(pl_model *m, pl_backend *be) {
  if (!be->ops->weight_join)
    return 0;
  for (int l = 0; l < m->hp.n_layer; l++) {
    pl_layer *L = &m->layers[l];
    pl_tensor *qkv[] = {&L->wq, &L->wk, &L->wv};
    PL_TRY(be->ops->weight_join(be, qkv, 3));
  }
  return 0;
}

int pl_model_upload(pl_model *m, pl_backend *be, int progress) {
  upload_ctx u = {be, 0, m->weight_bytes, progress, -1};
  int rc = each_tensor(m, upload_one, &u);
  if (u.shown >= 0)
    fputc('\n', stderr);
  return rc < 0 ? rc : join_groups(m, be);
}

size_t pl_model_kv_bytes_per_token(const pl_model *m) {
  return (size_t)2 * m->hp.n_layer * m->hp.n_head_kv * m->hp.head_dim * sizeof(float);
}

float *pl_model_alloc_f32(pl_model *m, int64_t n) {
  if (pl_array_grow(&m->owned, &m->cap_owned, (size_t)m->n_owned + 1, sizeof *m->owned, 64))
    return NULL;
  float *f = pl_malloc((size_t)(n > 0 ? n : 1) * sizeof(float));
  if (f)
    m->owned[m->n_owned++] = f;
  return f;
}

int pl_model_own_f32(pl_model *m, pl_tensor *t) {
  if (!t->data || t->type == PL_DT_F32)
    return 0;
  int64_t n = pl_tensor_nelem(t);
  if (t->type != PL_DT_F16 && t->type != PL_DT_BF16)
    return pl_fail(PL_EFORMAT, "%s: tensor '%s' must be a float type, not %s", m->path, t->name,
                   pl_dtype_name(t->type));
  float *f = pl_model_alloc_f32(m, n);
  if (!f)
    return pl_fail(PL_ENOMEM, "out of memory");
  pl_dequant_row(t->type, t->data, f, n);
  t->data = f;
  t->type = PL_DT_F32;
  t->nbytes = (size_t)n * sizeof(float);
  return 0;
}

/* theta_i = base^(-2i/d); Llama 3.1 scaling (HF `rope_type: llama3`) rescales the low
 * frequencies; GGUF files carry the same as divisors in `rope_freqs.weight`. */
int pl_model_init_rope(pl_model *m, const pl_tensor *rope_freqs) {
  const pl_hparams *hp = &m->hp;
  int half = hp->rope_dim / 2;
  m->rope_inv_freq = pl_malloc((size_t)(half ? half : 1) * sizeof(float));
  if (!m->rope_inv_freq)
    return pl_fail(PL_ENOMEM, "out of memory");
  if (rope_freqs && rope_freqs->data &&
      (pl_tensor_nelem(rope_freqs) != half || rope_freqs->type != PL_DT_F32))
    return pl_fail(PL_EFORMAT, "%s: rope_freqs has %lld elements, expected %d", m->path,
                   (long long)pl_tensor_nelem(rope_freqs), half);
  for (int i = 0; i < half; i++) {
    double f = pow((double)hp->rope_theta, -2.0 * i / hp->rope_dim);
    if (rope_freqs && rope_freqs->data) {
      f /= ((const float *)rope_freqs->data)[i];
    } else if (hp->rope_llama3) {
      double lo_wl = hp->rope_orig_ctx / hp->rope_low_freq_factor;
      double hi_wl = hp->rope_orig_ctx / hp->rope_high_freq_factor;
      double wl = 2 * M_PI / f;
      if (wl > lo_wl) {
        f /= hp->rope_factor;
      } else if (wl >= hi_wl) {
        double smooth = (hp->rope_orig_ctx / wl - hp->rope_low_freq_factor) /
                        (hp->rope_high_freq_factor - hp->rope_low_freq_factor);
        f = (1 - smooth) * f / hp->rope_factor + smooth * f;
      }
    }
    m->rope_inv_freq[i] = (float)f;
  }
  return 0;
}

static int check_shape(const pl_model *m, const pl_tensor *t, const char *what, int64_t ne0,
                       int64_t ne1, int required) {
  if (!t->data && !t->random) {
    if (!required)
      return 0;
    return pl_fail(PL_EFORMAT, "%s: missing tensor %s", m->path, what);
  }
  int64_t want_dims = ne1 ? 2 : 1;
  int64_t got1 = t->n_dims >= 2 ? t->ne[1] : 0;
  int extra = 0;
  for (int d = (int)want_dims; d < t->n_dims; d++)
    extra |= t->ne[d] != 1;
  if (t->ne[0] != ne0 || (ne1 && got1 != ne1) || (!ne1 && got1 > 1) || extra)
    return pl_fail(PL_EFORMAT,
                   "%s: tensor %s ('%s') has shape [%lld, %lld], expected [%lld, %lld] from the "
                   "hyperparameters",
                   m->path, what, t->name, (long long)t->ne[0], (long long)(t->n_dims > 1 ? t->ne[1] : 1),
                   (long long)ne0, (long long)(ne1 ? ne1 : 1));
  if (ne1 == 0 && t->type != PL_DT_F32)
    return pl_fail(PL_EFORMAT, "%s: vector %s must be F32 after load", m->path, what);
  return 0;
}

int pl_model_validate(pl_model *m) {
  pl_hparams *hp = &m->hp;
  const int64_t lim = 1 << 20;
  if (hp->n_vocab <= 0 || hp->n_vocab > 4 * lim || hp->n_embd <= 0 || hp->n_embd > 256 * 1024 ||
      hp->n_layer <= 0 || hp->n_layer > 1024 || hp->n_head <= 0 || hp->n_head > 1024 ||
      hp->n_head_kv <= 0 || hp->n_head_kv > hp->n_head || hp->n_head % hp->n_head_kv ||
      hp->head_dim <= 0 || hp->head_dim > 1024 || hp->head_dim % 2 || hp->n_ff <= 0 ||
      hp->n_ff > lim || hp->n_ctx_train <= 0 || hp->rope_dim <= 0 || hp->rope_dim > hp->head_dim ||
      hp->rope_dim % 2 || !(hp->rms_eps > 0 && hp->rms_eps < 1) || !(hp->rope_theta > 0))
    return pl_fail(PL_EFORMAT,
                   "%s: absurd or inconsistent hyperparameters (vocab %d, embd %d, layers %d, "
                   "heads %d/%d, head_dim %d, ff %d, ctx %d, rope_dim %d, eps %g, theta %g)",
                   m->path, hp->n_vocab, hp->n_embd, hp->n_layer, hp->n_head, hp->n_head_kv,
                   hp->head_dim, hp->n_ff, hp->n_ctx_train, hp->rope_dim, hp->rms_eps,
                   hp->rope_theta);
  int64_t E = hp->n_embd, Q = (int64_t)hp->n_head * hp->head_dim,
          K = (int64_t)hp->n_head_kv * hp->head_dim, F = hp->n_ff, V = hp->n_vocab;
  PL_TRY(check_shape(m, &m->tok_embd, "token_embd", E, V, 1));
  PL_TRY(check_shape(m, &m->output_norm, "output_norm", E, 0, 1));
  PL_TRY(check_shape(m, &m->output, "output", E, V, 1));
  m->weight_bytes = m->tok_embd.nbytes + m->output_norm.nbytes;
  m->n_params = pl_tensor_nelem(&m->tok_embd) + E;
  if (!hp->tied_embeddings) {
    m->weight_bytes += m->output.nbytes;
    m->n_params += pl_tensor_nelem(&m->output);
  }
  for (int l = 0; l < hp->n_layer; l++) {
    pl_layer *L = &m->layers[l];
    char w[64];
#define CK(field, a, b, req)                                   \
  snprintf(w, sizeof w, "blk.%d." #field, l);                  \
  PL_TRY(check_shape(m, &L->field, w, a, b, req));             \
  if (L->field.data || L->field.random) {                      \
    m->weight_bytes += L->field.nbytes;                        \
    m->n_params += pl_tensor_nelem(&L->field);                 \
  }
    CK(attn_norm, E, 0, 1);
    CK(wq, E, Q, 1);
    CK(wk, E, K, 1);
    CK(wv, E, K, 1);
    CK(bq, Q, 0, 0);
    CK(bk, K, 0, 0);
    CK(bv, K, 0, 0);
    CK(q_norm, hp->head_dim, 0, hp->arch == PL_ARCH_QWEN3);
    CK(k_norm, hp->head_dim, 0, hp->arch == PL_ARCH_QWEN3);
    CK(wo, Q, E, 1);
    CK(ffn_norm, E, 0, 1);
    CK(w_gate, E, F, 1);
    CK(w_up, E, F, 1);
    CK(w_down, F, E, 1);
#undef CK
  }
  return 0;
}
