/* `pagellm model-gen`: write a random-weight GGUF of a Llama-family architecture, for tests and
 * benchmarks at real model shapes without downloading weights (e.g. a TinyLlama-1.1B-shaped
 * file). The file is one llama.cpp loads: llama.cpp tensor names and metadata keys, and a
 * minimal SentencePiece ("llama") vocabulary of n_vocab tokens (<unk>, <s>, </s>, the 256
 * <0xNN> byte tokens, then unique filler pieces).
 *
 * Weights are N(0, std^2) (default std 0.02, so activations stay sane through many layers);
 * norm weights are 1 + N(0, std^2) and stay F32, as do QKV biases (qwen2) and Q/K norms
 * (qwen3). Values are deterministic in --seed: every tensor has its own generator seeded
 * from (seed, tensor index), so files of the same shape but different --type hold the same
 * values before rounding. The file is streamed to disk row by row: memory use is a few rows,
 * whatever the model size.
 *
 * Architectures: llama; mistral (written as general.architecture "llama", as llama.cpp's
 * converter writes Mistral 7B); qwen2 (Q/K/V biases; llama.cpp needs head_dim * n_head ==
 * n_embd); qwen3 (per-head RMSNorm of Q and K, attn_q_norm/attn_k_norm).
 *
 * argv[0] is the command name ("model-gen"). Returns the process exit status: 0 ok, 1 error
 * (message on stderr), 2 usage error. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "backend/cpu/kern/kern.h"
#include "cli/cli.h"
#include "model/gguf.h"
#include "model/gguf_write.h"
#include "util/alloc.h"
#include "util/error.h"


typedef struct {
  const char *arch;      /* llama | mistral | qwen2 | qwen3 */
  const char *out;
  const char *name;
  int64_t n_embd, n_layer, n_head, n_head_kv, n_ff, n_vocab, n_ctx, head_dim;
  double rope_theta, rms_eps, std;
  int tied;
  pl_dtype type;
  uint64_t seed;
  int quiet;
  const char *vocab_from; /* copy the tokenizer (and vocabulary size) of this GGUF */
} pl_mg_opts;

/* ---- random numbers: splitmix64-seeded xoshiro256+, Box-Muller normals -------------------- */

typedef struct { uint64_t s[4]; int has_spare; float spare; } pl_mg_rng;

static uint64_t pl_mg_splitmix(uint64_t *x) {
  uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

static void pl_mg_rng_seed(pl_mg_rng *r, uint64_t seed, uint64_t stream) {
  uint64_t x = seed ^ (stream * 0xD1B54A32D192ED03ull);
  for (int i = 0; i < 4; i++)
    r->s[i] = pl_mg_splitmix(&x);
  r->has_spare = 0;
  r->spare = 0;
}

static uint64_t pl_mg_next(pl_mg_rng *r) {
  uint64_t *s = r->s, res = s[0] + s[3], t = s[1] << 17;
  s[2] ^= s[0];
  s[3] ^= s[1];
  s[1] ^= s[2];
  s[0] ^= s[3];
  s[2] ^= t;
  s[3] = (s[3] << 45) | (s[3] >> 19);
  return res;
}

/* uniform in (0, 1] with 24 random bits */
static float pl_mg_unif(pl_mg_rng *r) {
  return ((float)(pl_mg_next(r) >> 40) + 1.0f) * (1.0f / 16777216.0f);
}

static void pl_mg_normals(pl_mg_rng *r, float *x, int64_t n, float mean, float std) {
  int64_t i = 0;
  if (r->has_spare && n > 0) {
    x[i++] = mean + std * r->spare;
    r->has_spare = 0;
  }
  for (; i < n; i += 2) {
    float u1 = pl_mg_unif(r), u2 = pl_mg_unif(r);
    float rad = sqrtf(-2.0f * logf(u1)), th = 6.28318530718f * u2;
    float a = rad * cosf(th), b = rad * sinf(th);
    x[i] = mean + std * a;
    if (i + 1 < n)
      x[i + 1] = mean + std * b;
    else {
      r->spare = b;
      r->has_spare = 1;
    }
  }
}

/* ---- vocabulary ------------------------------------------------------------------------- */

#define PL_MG_N_SPECIAL 3
#define PL_MG_N_BYTE 256
#define PL_MG_FIRST_FILLER (PL_MG_N_SPECIAL + PL_MG_N_BYTE)
#define PL_MG_SPACE "\xe2\x96\x81" /* U+2581, SentencePiece's word-boundary mark */

/* The f-th filler piece (unique for every f): first the 94 printable ASCII characters and
 * the word mark alone, then the mark + one letter, then all lowercase words of 2, 3, ...
 * letters, each length once plain and once with the mark in front. */
static void pl_mg_filler(int64_t f, char *buf) {
  static const char letters[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
  if (f < 94) {
    buf[0] = (char)(0x21 + f);
    buf[1] = 0;
    return;
  }
  f -= 94;
  if (f == 0) {
    strcpy(buf, PL_MG_SPACE);
    return;
  }
  f -= 1;
  if (f < 52) {
    sprintf(buf, PL_MG_SPACE "%c", letters[f]);
    return;
  }
  f -= 52;
  for (int len = 2;; len++) {
    int64_t cnt = 1;
    for (int k = 0; k < len; k++)
      cnt *= 26;
    for (int marked = 0; marked < 2; marked++) {
      if (f < cnt) {
        char *p = buf;
        if (marked) {
          strcpy(p, PL_MG_SPACE);
          p += 3;
        }
        for (int k = len - 1; k >= 0; k--) {
          p[k] = letters[f % 26];
          f /= 26;
        }
        p[len] = 0;
        return;
      }
      f -= cnt;
    }
  }
}

/* Copy every tokenizer.* key of the GGUF at path (a draft model for it must share it). */
static int pl_mg_vocab_from(pl_gguf_writer *w, const char *path) {
  pl_gguf *g;
  PL_TRY(pl_gguf_open(path, &g));
  int rc = 0;
  for (int64_t i = 0; rc == 0 && i < pl_gguf_n_kv(g); i++) {
    pl_gguf_str ks = pl_gguf_key_at(g, i);
    char key[256];
    if (ks.len >= sizeof key || ks.len < 10 || memcmp(ks.ptr, "tokenizer.", 10))
      continue;
    memcpy(key, ks.ptr, ks.len);
    key[ks.len] = 0;
    pl_gguf_type t = pl_gguf_kv_type(g, i);
    if (t == PL_GGUF_STRING) {
      pl_gguf_str v;
      if (!(rc = pl_gguf_get_str(g, key, &v)))
        rc = pl_gguf_set_strn(w, key, v.ptr, v.len);
    } else if (t == PL_GGUF_BOOL) {
      int b;
      if (!(rc = pl_gguf_get_bool(g, key, &b)))
        rc = pl_gguf_set_bool(w, key, b);
    } else if (t == PL_GGUF_ARRAY) {
      pl_gguf_type et;
      uint64_t n;
      const void *data;
      if ((rc = pl_gguf_get_arr(g, key, &et, &n, &data)))
        break;
      if (et != PL_GGUF_STRING) {
        rc = pl_gguf_set_arr(w, key, et, data, n);
        continue;
      }
      const char **ptrs = pl_malloc((n ? n : 1) * sizeof *ptrs);
      uint64_t *lens = pl_malloc((n ? n : 1) * sizeof *lens);
      for (uint64_t j = 0; ptrs && lens && rc == 0 && j < n; j++) {
        pl_gguf_str v;
        rc = pl_gguf_arr_str(g, key, j, &v);
        ptrs[j] = v.ptr;
        lens[j] = v.len;
      }
      if (!ptrs || !lens)
        rc = pl_fail(PL_ENOMEM, "model-gen: out of memory");
      else if (rc == 0)
        rc = pl_gguf_set_arr_str(w, key, ptrs, lens, n);
      pl_free(ptrs);
      pl_free(lens);
    } else if (t == PL_GGUF_FLOAT32 || t == PL_GGUF_FLOAT64) {
      float f;
      if (!(rc = pl_gguf_get_f32(g, key, &f)))
        rc = pl_gguf_set_f32(w, key, f);
    } else {
      uint32_t u;
      if (!(rc = pl_gguf_get_u32(g, key, &u)))
        rc = pl_gguf_set_u32(w, key, u);
    }
  }
  pl_gguf_close(g);
  return rc;
}

static int pl_mg_vocab(pl_gguf_writer *w, int64_t n_vocab) {
  enum { PIECE = 24 };
  char *pieces = pl_malloc((size_t)n_vocab * PIECE);
  const char **ptrs = pl_malloc((size_t)n_vocab * sizeof *ptrs);
  float *scores = pl_malloc((size_t)n_vocab * sizeof *scores);
  int32_t *types = pl_malloc((size_t)n_vocab * sizeof *types);
  int rc = PL_OK;
  if (!pieces || !ptrs || !scores || !types) {
    rc = pl_fail(PL_ENOMEM, "model-gen: out of memory for a vocabulary of %lld",
                 (long long)n_vocab);
    goto done;
  }
  for (int64_t i = 0; i < n_vocab; i++) {
    char *p = pieces + i * PIECE;
    ptrs[i] = p;
    if (i == 0) {
      strcpy(p, "<unk>");
      types[i] = 2; /* UNKNOWN */
      scores[i] = 0;
    } else if (i < PL_MG_N_SPECIAL) {
      strcpy(p, i == 1 ? "<s>" : "</s>");
      types[i] = 3; /* CONTROL */
      scores[i] = 0;
    } else if (i < PL_MG_FIRST_FILLER) {
      sprintf(p, "<0x%02X>", (unsigned)(i - PL_MG_N_SPECIAL));
      types[i] = 6; /* BYTE */
      scores[i] = 0;
    } else {
      pl_mg_filler(i - PL_MG_FIRST_FILLER, p);
      types[i] = 1; /* NORMAL */
      scores[i] = -(float)(i - PL_MG_FIRST_FILLER);
    }
  }
  if ((rc = pl_gguf_set_str(w, "tokenizer.ggml.model", "llama")) ||
      (rc = pl_gguf_set_arr_str(w, "tokenizer.ggml.tokens", ptrs, NULL, (uint64_t)n_vocab)) ||
      (rc = pl_gguf_set_arr(w, "tokenizer.ggml.scores", PL_GGUF_FLOAT32, scores, (uint64_t)n_vocab)) ||
      (rc = pl_gguf_set_arr(w, "tokenizer.ggml.token_type", PL_GGUF_INT32, types, (uint64_t)n_vocab)) ||
      (rc = pl_gguf_set_u32(w, "tokenizer.ggml.bos_token_id", 1)) ||
      (rc = pl_gguf_set_u32(w, "tokenizer.ggml.eos_token_id", 2)) ||
      (rc = pl_gguf_set_u32(w, "tokenizer.ggml.unknown_token_id", 0)) ||
      (rc = pl_gguf_set_bool(w, "tokenizer.ggml.add_bos_token", 1)) ||
      (rc = pl_gguf_set_bool(w, "tokenizer.ggml.add_eos_token", 0)))
    goto done;
done:
  pl_free(pieces);
  pl_free(ptrs);
  pl_free(scores);
  pl_free(types);
  return rc;
}

/* ---- tensors ---------------------------------------------------------------------------- */

typedef enum { PL_MG_WEIGHT, PL_MG_NORM, PL_MG_BIAS } pl_mg_kind;

typedef struct {
  char name[64];
  pl_dtype type;
  int n_dims;
  int64_t ne[2];
  pl_mg_kind kind;
} pl_mg_tensor;

typedef struct {
  pl_mg_tensor *t;
  int n, cap;
} pl_mg_list;

static int pl_mg_push(pl_mg_list *l, pl_mg_kind kind, pl_dtype type, int64_t ne0, int64_t ne1,
                      const char *fmt, int layer) {
  if (l->n == l->cap) {
    int cap = l->cap ? l->cap * 2 : 64;
    pl_mg_tensor *t = pl_realloc(l->t, (size_t)cap * sizeof *t);
    if (!t)
      return pl_fail(PL_ENOMEM, "model-gen: out of memory");
    l->t = t;
    l->cap = cap;
  }
  pl_mg_tensor *t = &l->t[l->n++];
  snprintf(t->name, sizeof t->name, fmt, layer);
  t->kind = kind;
  t->type = kind == PL_MG_WEIGHT ? type : PL_DT_F32;
  t->n_dims = ne1 > 0 ? 2 : 1;
  t->ne[0] = ne0;
  t->ne[1] = ne1 > 0 ? ne1 : 1;
  return PL_OK;
}

/* The tensor list of llama.cpp's loaders (src/models/{llama,qwen2,qwen3}.cpp), ggml order. */
static int pl_mg_tensors(const pl_mg_opts *o, pl_mg_list *l) {
  int qwen2 = !strcmp(o->arch, "qwen2"), qwen3 = !strcmp(o->arch, "qwen3");
  int64_t q_dim = o->n_head * o->head_dim, kv_dim = o->n_head_kv * o->head_dim;
  pl_dtype wt = o->type;
  PL_TRY(pl_mg_push(l, PL_MG_WEIGHT, wt, o->n_embd, o->n_vocab, "token_embd.weight", 0));
  for (int i = 0; i < (int)o->n_layer; i++) {
    PL_TRY(pl_mg_push(l, PL_MG_NORM, wt, o->n_embd, 0, "blk.%d.attn_norm.weight", i));
    PL_TRY(pl_mg_push(l, PL_MG_WEIGHT, wt, o->n_embd, q_dim, "blk.%d.attn_q.weight", i));
    PL_TRY(pl_mg_push(l, PL_MG_WEIGHT, wt, o->n_embd, kv_dim, "blk.%d.attn_k.weight", i));
    PL_TRY(pl_mg_push(l, PL_MG_WEIGHT, wt, o->n_embd, kv_dim, "blk.%d.attn_v.weight", i));
    if (qwen2) {
      PL_TRY(pl_mg_push(l, PL_MG_BIAS, wt, q_dim, 0, "blk.%d.attn_q.bias", i));
      PL_TRY(pl_mg_push(l, PL_MG_BIAS, wt, kv_dim, 0, "blk.%d.attn_k.bias", i));
      PL_TRY(pl_mg_push(l, PL_MG_BIAS, wt, kv_dim, 0, "blk.%d.attn_v.bias", i));
    }
    if (qwen3) {
      PL_TRY(pl_mg_push(l, PL_MG_NORM, wt, o->head_dim, 0, "blk.%d.attn_q_norm.weight", i));
      PL_TRY(pl_mg_push(l, PL_MG_NORM, wt, o->head_dim, 0, "blk.%d.attn_k_norm.weight", i));
    }
    PL_TRY(pl_mg_push(l, PL_MG_WEIGHT, wt, q_dim, o->n_embd, "blk.%d.attn_output.weight", i));
    PL_TRY(pl_mg_push(l, PL_MG_NORM, wt, o->n_embd, 0, "blk.%d.ffn_norm.weight", i));
    PL_TRY(pl_mg_push(l, PL_MG_WEIGHT, wt, o->n_embd, o->n_ff, "blk.%d.ffn_gate.weight", i));
    PL_TRY(pl_mg_push(l, PL_MG_WEIGHT, wt, o->n_ff, o->n_embd, "blk.%d.ffn_down.weight", i));
    PL_TRY(pl_mg_push(l, PL_MG_WEIGHT, wt, o->n_embd, o->n_ff, "blk.%d.ffn_up.weight", i));
  }
  PL_TRY(pl_mg_push(l, PL_MG_NORM, wt, o->n_embd, 0, "output_norm.weight", 0));
  if (!o->tied)
    PL_TRY(pl_mg_push(l, PL_MG_WEIGHT, wt, o->n_embd, o->n_vocab, "output.weight", 0));
  return PL_OK;
}

static uint32_t pl_mg_file_type(pl_dtype t) {
  switch (t) {
  case PL_DT_F32: return 0;
  case PL_DT_F16: return 1;
  case PL_DT_Q4_0: return 2;
  case PL_DT_Q8_0: return 7;
  case PL_DT_Q4_K: return 14; /* Q4_K_S: every matrix Q4_K */
  case PL_DT_Q6_K: return 18;
  case PL_DT_BF16: return 32;
  default: return 0;
  }
}

static int pl_mg_metadata(pl_gguf_writer *w, const pl_mg_opts *o) {
  const char *arch = !strcmp(o->arch, "mistral") ? "llama" : o->arch;
  char k[128];
#define PL_MG_KEY(suffix) (snprintf(k, sizeof k, "%s." suffix, arch), k)
  PL_TRY(pl_gguf_set_str(w, "general.architecture", arch));
  PL_TRY(pl_gguf_set_str(w, "general.name", o->name));
  PL_TRY(pl_gguf_set_u32(w, "general.file_type", pl_mg_file_type(o->type)));
  PL_TRY(pl_gguf_set_u32(w, PL_MG_KEY("context_length"), (uint32_t)o->n_ctx));
  PL_TRY(pl_gguf_set_u32(w, PL_MG_KEY("embedding_length"), (uint32_t)o->n_embd));
  PL_TRY(pl_gguf_set_u32(w, PL_MG_KEY("block_count"), (uint32_t)o->n_layer));
  PL_TRY(pl_gguf_set_u32(w, PL_MG_KEY("feed_forward_length"), (uint32_t)o->n_ff));
  PL_TRY(pl_gguf_set_u32(w, PL_MG_KEY("attention.head_count"), (uint32_t)o->n_head));
  PL_TRY(pl_gguf_set_u32(w, PL_MG_KEY("attention.head_count_kv"), (uint32_t)o->n_head_kv));
  PL_TRY(pl_gguf_set_u32(w, PL_MG_KEY("attention.key_length"), (uint32_t)o->head_dim));
  PL_TRY(pl_gguf_set_u32(w, PL_MG_KEY("attention.value_length"), (uint32_t)o->head_dim));
  PL_TRY(pl_gguf_set_u32(w, PL_MG_KEY("rope.dimension_count"), (uint32_t)o->head_dim));
  PL_TRY(pl_gguf_set_f32(w, PL_MG_KEY("rope.freq_base"), (float)o->rope_theta));
  PL_TRY(pl_gguf_set_f32(w, PL_MG_KEY("attention.layer_norm_rms_epsilon"), (float)o->rms_eps));
  PL_TRY(pl_gguf_set_u32(w, PL_MG_KEY("vocab_size"), (uint32_t)o->n_vocab));
#undef PL_MG_KEY
  return o->vocab_from ? pl_mg_vocab_from(w, o->vocab_from) : pl_mg_vocab(w, o->n_vocab);
}

/* Declares everything, then streams every tensor row by row. */
static int pl_mg_write(const pl_mg_opts *o, uint64_t *out_bytes, uint64_t *out_params) {
  pl_mg_list l = {NULL, 0, 0};
  pl_gguf_writer *w = NULL;
  float *x = NULL;
  void *row = NULL;
  int tty = !o->quiet && isatty(2);
  int rc = pl_mg_tensors(o, &l);
  if (!rc)
    rc = pl_gguf_writer_create(&w);
  if (!rc)
    rc = pl_mg_metadata(w, o);
  int64_t max_ne0 = 0;
  uint64_t params = 0;
  for (int i = 0; i < l.n && !rc; i++) {
    rc = pl_gguf_add_tensor(w, l.t[i].name, l.t[i].type, l.t[i].n_dims, l.t[i].ne, NULL);
    if (l.t[i].ne[0] > max_ne0)
      max_ne0 = l.t[i].ne[0];
    params += (uint64_t)(l.t[i].ne[0] * l.t[i].ne[1]);
  }
  if (!rc) {
    x = pl_malloc((size_t)(max_ne0 + 1) * sizeof *x);
    row = pl_malloc((size_t)(max_ne0 + 1) * sizeof(float));
    if (!x || !row)
      rc = pl_fail(PL_ENOMEM, "model-gen: out of memory");
  }
  if (!rc)
    rc = pl_gguf_stream_begin(w, o->out);
  for (int i = 0; i < l.n && !rc; i++) {
    const pl_mg_tensor *t = &l.t[i];
    pl_mg_rng rng;
    pl_mg_rng_seed(&rng, o->seed, (uint64_t)i + 1);
    float mean = t->kind == PL_MG_NORM ? 1.0f : 0.0f;
    for (int64_t r = 0; r < t->ne[1] && !rc; r++) {
      pl_mg_normals(&rng, x, t->ne[0], mean, (float)o->std);
      size_t nb = pl_quant_row(t->type, x, row, t->ne[0]);
      if (nb != pl_dtype_row_bytes(t->type, t->ne[0]) || nb == 0)
        rc = pl_fail(PL_EINTERNAL, "model-gen: cannot quantize a row of %s to %s", t->name,
                     pl_dtype_name(t->type));
      else
        rc = pl_gguf_stream_write(w, row, nb);
    }
    if (!rc && tty && (i % 16 == 15 || i == l.n - 1)) {
      fprintf(stderr, "\rmodel-gen: %d/%d tensors", i + 1, l.n);
      if (i == l.n - 1)
        fputc('\n', stderr);
    }
  }
  if (!rc)
    rc = pl_gguf_stream_end(w);
  if (!rc) {
    *out_bytes = pl_gguf_writer_file_size(w);
    *out_params = params;
  }
  pl_gguf_writer_destroy(w); /* removes a partial file after an error */
  pl_free(x);
  pl_free(row);
  pl_free(l.t);
  return rc;
}

/* ---- command line ----------------------------------------------------------------------- */

/* Shapes of real models (their config.json), for benchmarks without a download. */
typedef struct {
  const char *name;
  int64_t n_embd, n_layer, n_head, n_head_kv, n_ff, n_vocab, n_ctx;
  double rope_theta;
} pl_mg_preset;

static const pl_mg_preset mg_presets[] = {
    {"tinyllama-1.1b", 2048, 22, 32, 4, 5632, 32000, 2048, 10000},   /* TinyLlama-1.1B-Chat */
    {"llama-2-7b", 4096, 32, 32, 32, 11008, 32000, 4096, 10000},     /* MHA */
    {"llama-3-8b", 4096, 32, 32, 8, 14336, 128256, 8192, 500000},    /* GQA 32/8 */
};

static const pl_mg_preset *mg_preset(const char *name) {
  for (size_t i = 0; i < sizeof mg_presets / sizeof *mg_presets; i++)
    if (!strcmp(name, mg_presets[i].name))
      return &mg_presets[i];
  return NULL;
}

static void pl_mg_usage(FILE *f) {
  fputs(
      "usage: pagellm model-gen -o OUT.gguf [options]\n"
      "Writes a random-weight GGUF (llama.cpp-compatible) of a Llama-family architecture.\n"
      "  -o, --out PATH        output file (required)\n"
      "  --arch A              llama (default) | mistral | qwen2 | qwen3\n"
      "  --preset P            tinyllama-1.1b, llama-2-7b or llama-3-8b (their shapes: e.g.\n"
      "                        tinyllama-1.1b: n_embd 2048, 22 layers, 32/4 heads, n_ff 5632,\n"
      "                        vocab 32000, ctx 2048); later options override it\n"
      "  --n-embd N            model width (default 256)\n"
      "  --n-layer N           layers (default 2)\n"
      "  --n-head N            query heads (default 4)\n"
      "  --n-head-kv N         KV heads (default = n_head / 2)\n"
      "  --n-ff N              FFN width (default 512)\n"
      "  --n-vocab N           vocabulary size, >= 260 (default 512)\n"
      "  --n-ctx N             context length (default 512)\n"
      "  --head-dim N          head size (default n_embd / n_head)\n"
      "  --rope-theta F        RoPE base (default 10000; mistral/qwen2/qwen3 1000000)\n"
      "  --rms-eps F           RMSNorm epsilon (default 1e-5; qwen2/qwen3 1e-6)\n"
      "  --tied / --no-tied    share token_embd as the output matrix (default untied)\n"
      "  --type T              matrix type: f32 | f16 (default) | bf16 | q8_0 | q4_0 | q4_k | q6_k\n"
      "                        (norms and biases stay F32)\n"
      "  --seed N              random seed (default 1)\n"
      "  --std F               weight standard deviation (default 0.02)\n"
      "  --name S              general.name (default pagellm-random-ARCH)\n"
      "  --vocab-from F.gguf   copy F's tokenizer and vocabulary size (e.g. for a draft model)\n"
      "  -q, --quiet           no progress output\n",
      f);
}

static int pl_mg_parse_type(const char *s, pl_dtype *t) {
  static const struct { const char *n; pl_dtype t; } types[] = {
    {"f32", PL_DT_F32}, {"f16", PL_DT_F16}, {"bf16", PL_DT_BF16}, {"q8_0", PL_DT_Q8_0},
    {"q4_0", PL_DT_Q4_0}, {"q4_k", PL_DT_Q4_K}, {"q6_k", PL_DT_Q6_K},
  };
  for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
    if (!strcasecmp(s, types[i].n)) {
      *t = types[i].t;
      return 0;
    }
  return -1;
}

static int pl_mg_int(const char *opt, const char *v, int64_t lo, int64_t hi, int64_t *out) {
  char *end;
  long long x = strtoll(v, &end, 10);
  if (!*v || *end || x < lo || x > hi) {
    fprintf(stderr, "pagellm model-gen: %s: expected an integer in [%lld, %lld], got '%s'\n", opt,
            (long long)lo, (long long)hi, v);
    return -1;
  }
  *out = x;
  return 0;
}

static int pl_mg_float(const char *opt, const char *v, double *out) {
  char *end;
  double x = strtod(v, &end);
  if (!*v || *end || !(x > 0) || !isfinite(x)) {
    fprintf(stderr, "pagellm model-gen: %s: expected a positive number, got '%s'\n", opt, v);
    return -1;
  }
  *out = x;
  return 0;
}

/* Checks the shape against what the file format and llama.cpp need; prints the problem. */
static int pl_mg_validate(const pl_mg_opts *o) {
  const char *why = NULL;
  char msg[256];
  int bs = pl_dtype_block_size(o->type);
  int64_t q_dim = o->n_head * o->head_dim;
  if (o->n_head % o->n_head_kv)
    why = "n_head must be a multiple of n_head_kv";
  else if (o->head_dim % 2)
    why = "head_dim must be even (RoPE rotates pairs)";
  else if (o->n_vocab < PL_MG_FIRST_FILLER + 1)
    why = "n_vocab must be at least 260 (<unk>, <s>, </s>, 256 byte tokens, one more)";
  else if (!strcmp(o->arch, "qwen2") && q_dim != o->n_embd)
    why = "qwen2: llama.cpp needs head_dim * n_head == n_embd";
  else if (o->n_embd % bs || o->n_ff % bs || q_dim % bs) {
    snprintf(msg, sizeof msg, "%s needs n_embd, n_ff and n_head * head_dim to be multiples of %d "
             "(got %lld, %lld, %lld)", pl_dtype_name(o->type), bs, (long long)o->n_embd,
             (long long)o->n_ff, (long long)q_dim);
    why = msg;
  }
  if (why) {
    fprintf(stderr, "pagellm model-gen: %s\n", why);
    return -1;
  }
  return 0;
}

int pl_cmd_model_gen(int argc, char **argv) {
  pl_mg_opts o;
  memset(&o, 0, sizeof o);
  o.arch = "llama";
  o.type = PL_DT_F16;
  o.seed = 1;
  o.std = 0.02;
  /* -1 = not given: filled from the preset or the defaults below */
  o.n_embd = o.n_layer = o.n_head = o.n_head_kv = o.n_ff = o.n_vocab = o.n_ctx = o.head_dim = -1;
  o.rope_theta = o.rms_eps = -1;
  o.tied = -1;
  const char *preset = NULL;
  char name_buf[64];

  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
    int64_t n;
#define PL_MG_NEED_ARG()                                                  \
  do {                                                                    \
    if (!v) {                                                             \
      fprintf(stderr, "pagellm model-gen: %s needs a value\n", a);        \
      return 2;                                                           \
    }                                                                     \
    i++;                                                                  \
  } while (0)
#define PL_MG_INT_OPT(flag, field, lo, hi)                                \
  if (!strcmp(a, flag)) {                                                 \
    PL_MG_NEED_ARG();                                                     \
    if (pl_mg_int(a, v, lo, hi, &n))                                      \
      return 2;                                                           \
    o.field = n;                                                          \
    continue;                                                             \
  }
    if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
      pl_mg_usage(stdout);
      return 0;
    }
    if (!strcmp(a, "-o") || !strcmp(a, "--out")) {
      PL_MG_NEED_ARG();
      o.out = v;
      continue;
    }
    if (!strcmp(a, "--arch")) {
      PL_MG_NEED_ARG();
      if (strcmp(v, "llama") && strcmp(v, "mistral") && strcmp(v, "qwen2") && strcmp(v, "qwen3")) {
        fprintf(stderr, "pagellm model-gen: unknown --arch '%s' (llama, mistral, qwen2, qwen3)\n", v);
        return 2;
      }
      o.arch = v;
      continue;
    }
    if (!strcmp(a, "--preset")) {
      PL_MG_NEED_ARG();
      if (!mg_preset(v)) {
        fprintf(stderr, "pagellm model-gen: unknown --preset '%s' (tinyllama-1.1b, llama-2-7b, "
                        "llama-3-8b)\n", v);
        return 2;
      }
      preset = v;
      continue;
    }
    if (!strcmp(a, "--type")) {
      PL_MG_NEED_ARG();
      if (pl_mg_parse_type(v, &o.type)) {
        fprintf(stderr, "pagellm model-gen: unknown --type '%s' "
                        "(f32, f16, bf16, q8_0, q4_0, q4_k, q6_k)\n", v);
        return 2;
      }
      continue;
    }
    if (!strcmp(a, "--vocab-from")) {
      PL_MG_NEED_ARG();
      o.vocab_from = v;
      continue;
    }
    if (!strcmp(a, "--name")) {
      PL_MG_NEED_ARG();
      o.name = v;
      continue;
    }
    if (!strcmp(a, "--seed")) {
      PL_MG_NEED_ARG();
      char *end;
      o.seed = strtoull(v, &end, 0);
      if (!*v || *end) {
        fprintf(stderr, "pagellm model-gen: --seed: bad number '%s'\n", v);
        return 2;
      }
      continue;
    }
    if (!strcmp(a, "--rope-theta") || !strcmp(a, "--rms-eps") || !strcmp(a, "--std")) {
      PL_MG_NEED_ARG();
      double d;
      if (pl_mg_float(a, v, &d))
        return 2;
      if (!strcmp(a, "--rope-theta"))
        o.rope_theta = d;
      else if (!strcmp(a, "--rms-eps"))
        o.rms_eps = d;
      else
        o.std = d;
      continue;
    }
    if (!strcmp(a, "--tied") || !strcmp(a, "--no-tied")) {
      o.tied = !strcmp(a, "--tied");
      continue;
    }
    if (!strcmp(a, "-q") || !strcmp(a, "--quiet")) {
      o.quiet = 1;
      continue;
    }
    PL_MG_INT_OPT("--n-embd", n_embd, 1, 1 << 20)
    PL_MG_INT_OPT("--n-layer", n_layer, 1, 1024)
    PL_MG_INT_OPT("--n-head", n_head, 1, 4096)
    PL_MG_INT_OPT("--n-head-kv", n_head_kv, 1, 4096)
    PL_MG_INT_OPT("--n-ff", n_ff, 1, 1 << 22)
    PL_MG_INT_OPT("--n-vocab", n_vocab, 1, 1 << 24)
    PL_MG_INT_OPT("--n-ctx", n_ctx, 1, 1 << 24)
    PL_MG_INT_OPT("--head-dim", head_dim, 1, 4096)
    fprintf(stderr, "pagellm model-gen: unknown option '%s' (see --help)\n", a);
    return 2;
#undef PL_MG_INT_OPT
#undef PL_MG_NEED_ARG
  }
  if (!o.out) {
    fprintf(stderr, "pagellm model-gen: -o OUT.gguf is required (see --help)\n");
    return 2;
  }
  /* preset, then defaults, for everything not given */
  int qwen = !strncmp(o.arch, "qwen", 4), mistral = !strcmp(o.arch, "mistral");
  if (preset) {
    const pl_mg_preset *ps = mg_preset(preset);
    if (o.n_embd < 0) o.n_embd = ps->n_embd;
    if (o.n_layer < 0) o.n_layer = ps->n_layer;
    if (o.n_head < 0) o.n_head = ps->n_head;
    if (o.n_head_kv < 0) o.n_head_kv = ps->n_head_kv;
    if (o.n_ff < 0) o.n_ff = ps->n_ff;
    if (o.n_vocab < 0) o.n_vocab = ps->n_vocab;
    if (o.n_ctx < 0) o.n_ctx = ps->n_ctx;
    if (o.rope_theta < 0) o.rope_theta = ps->rope_theta;
    if (o.rms_eps < 0) o.rms_eps = 1e-5;
    if (o.tied < 0) o.tied = 0;
  }
  if (o.n_embd < 0) o.n_embd = 256;
  if (o.n_layer < 0) o.n_layer = 2;
  if (o.n_head < 0) o.n_head = 4;
  if (o.n_head_kv < 0) o.n_head_kv = o.n_head >= 2 ? o.n_head / 2 : 1;
  if (o.n_ff < 0) o.n_ff = 512;
  if (o.vocab_from) { /* the vocabulary size is the source's */
    pl_gguf *g;
    pl_gguf_type et;
    uint64_t n = 0;
    const void *data;
    if (pl_gguf_open(o.vocab_from, &g) < 0 ||
        (pl_gguf_get_arr(g, "tokenizer.ggml.tokens", &et, &n, &data) < 0 && (n = 0, 1))) {
      fprintf(stderr, "pagellm model-gen: --vocab-from %s: %s\n", o.vocab_from, pl_last_error());
      pl_gguf_close(g);
      return 2;
    }
    pl_gguf_close(g);
    o.n_vocab = (int64_t)n;
  }
  if (o.n_vocab < 0) o.n_vocab = 512;
  if (o.n_ctx < 0) o.n_ctx = 512;
  if (o.head_dim < 0) {
    if (o.n_embd % o.n_head) {
      fprintf(stderr, "pagellm model-gen: n_embd %lld is not a multiple of n_head %lld; "
                      "give --head-dim\n", (long long)o.n_embd, (long long)o.n_head);
      return 2;
    }
    o.head_dim = o.n_embd / o.n_head;
  }
  if (o.rope_theta < 0) o.rope_theta = qwen || mistral ? 1000000 : 10000;
  if (o.rms_eps < 0) o.rms_eps = qwen ? 1e-6 : 1e-5;
  if (o.tied < 0) o.tied = 0;
  if (!o.name) {
    snprintf(name_buf, sizeof name_buf, "pagellm-random-%s%s%s", o.arch, preset ? "-" : "",
             preset ? preset : "");
    o.name = name_buf;
  }
  if (pl_mg_validate(&o))
    return 2;

  uint64_t bytes = 0, params = 0;
  int rc = pl_mg_write(&o, &bytes, &params);
  if (rc < 0) {
    fprintf(stderr, "pagellm model-gen: %s\n", pl_last_error());
    return 1;
  }
  if (!o.quiet)
    fprintf(stderr,
            "model-gen: wrote %s: %s, %lld layers, n_embd %lld, %lld/%lld heads (dim %lld), "
            "n_ff %lld, vocab %lld, %s%s, %.1fM params, %.1f MB\n",
            o.out, o.arch, (long long)o.n_layer, (long long)o.n_embd, (long long)o.n_head,
            (long long)o.n_head_kv, (long long)o.head_dim, (long long)o.n_ff,
            (long long)o.n_vocab, pl_dtype_name(o.type), o.tied ? ", tied" : "",
            (double)params / 1e6, (double)bytes / 1e6);
  return 0;
}
