/* `pagellm model-gen`: write a random-weight GGUF of a Llama-family architecture, for tests and
 * benchmarks at real model shapes without downloading weights (e.g. a TinyLlama-1.1B-shaped
 * file). The file is one llama.cpp loads: llama.cpp tensor names and metadata keys, and a
 * minimal SentencePiece ("llama") vocabulary of n_vocab tokens (<unk>, <s>, </s>, the 256
 * <0xNN> byte tokens, then unique filler pieces).
 *
 * Weights have mean 0 and standard deviation std (default 0.02, so activations stay sane
 * through many layers; a bell-shaped sum of four uniforms, backend/weight_rand.h); norm weights
 * are 1 + that and stay F32, as do QKV biases (qwen2) and Q/K norms (qwen3). Element i of a
 * tensor is a hash of (--seed, the tensor's role and layer, i): files of the same shape but
 * different --type hold the same values before rounding, and `--load-format dummy` generates
 * the same values on the CPU or the GPU without a file. The file is streamed to disk row by row: memory use is a few rows,
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

#include "backend/tensor.h"
#include "backend/weight_rand.h"
#include "cli/cli.h"
#include "model/gguf.h"
#include "model/gguf_write.h"
#include "model/model_preset.h"
#include "model/synth_vocab.h"
#include "util/alloc.h"
#include "util/array.h"
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

/* ---- tensors ---------------------------------------------------------------------------- */

typedef enum { PL_MG_WEIGHT, PL_MG_NORM, PL_MG_BIAS } pl_mg_kind;

typedef struct {
  char name[64];
  pl_dtype type;
  int n_dims;
  int64_t ne[2];
  pl_mg_kind kind;
  uint64_t stream; /* weight_rand.h stream: pl_weight_stream(seed, role, layer) */
} pl_mg_tensor;

typedef struct {
  pl_mg_tensor *t;
  int n, cap;
} pl_mg_list;

static int pl_mg_push(pl_mg_list *l, uint64_t seed, pl_weight_role role, pl_mg_kind kind,
                      pl_dtype type, int64_t ne0, int64_t ne1, const char *fmt, int layer) {
  if (pl_array_grow(&l->t, &l->cap, (size_t)l->n + 1, sizeof *l->t, 64))
    return pl_fail(PL_ENOMEM, "model-gen: out of memory");
  pl_mg_tensor *t = &l->t[l->n++];
  snprintf(t->name, sizeof t->name, fmt, layer < 0 ? 0 : layer);
  t->stream = pl_weight_stream(seed, role, layer);
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
  PL_TRY(pl_mg_push(l, o->seed, PL_W_TOK_EMBD, PL_MG_WEIGHT, wt, o->n_embd, o->n_vocab, "token_embd.weight", -1));
  for (int i = 0; i < (int)o->n_layer; i++) {
    PL_TRY(pl_mg_push(l, o->seed, PL_W_ATTN_NORM, PL_MG_NORM, wt, o->n_embd, 0, "blk.%d.attn_norm.weight", i));
    PL_TRY(pl_mg_push(l, o->seed, PL_W_Q, PL_MG_WEIGHT, wt, o->n_embd, q_dim, "blk.%d.attn_q.weight", i));
    PL_TRY(pl_mg_push(l, o->seed, PL_W_K, PL_MG_WEIGHT, wt, o->n_embd, kv_dim, "blk.%d.attn_k.weight", i));
    PL_TRY(pl_mg_push(l, o->seed, PL_W_V, PL_MG_WEIGHT, wt, o->n_embd, kv_dim, "blk.%d.attn_v.weight", i));
    if (qwen2) {
      PL_TRY(pl_mg_push(l, o->seed, PL_W_BQ, PL_MG_BIAS, wt, q_dim, 0, "blk.%d.attn_q.bias", i));
      PL_TRY(pl_mg_push(l, o->seed, PL_W_BK, PL_MG_BIAS, wt, kv_dim, 0, "blk.%d.attn_k.bias", i));
      PL_TRY(pl_mg_push(l, o->seed, PL_W_BV, PL_MG_BIAS, wt, kv_dim, 0, "blk.%d.attn_v.bias", i));
    }
    if (qwen3) {
      PL_TRY(pl_mg_push(l, o->seed, PL_W_Q_NORM, PL_MG_NORM, wt, o->head_dim, 0, "blk.%d.attn_q_norm.weight", i));
      PL_TRY(pl_mg_push(l, o->seed, PL_W_K_NORM, PL_MG_NORM, wt, o->head_dim, 0, "blk.%d.attn_k_norm.weight", i));
    }
    PL_TRY(pl_mg_push(l, o->seed, PL_W_O, PL_MG_WEIGHT, wt, q_dim, o->n_embd, "blk.%d.attn_output.weight", i));
    PL_TRY(pl_mg_push(l, o->seed, PL_W_FFN_NORM, PL_MG_NORM, wt, o->n_embd, 0, "blk.%d.ffn_norm.weight", i));
    PL_TRY(pl_mg_push(l, o->seed, PL_W_GATE, PL_MG_WEIGHT, wt, o->n_embd, o->n_ff, "blk.%d.ffn_gate.weight", i));
    PL_TRY(pl_mg_push(l, o->seed, PL_W_DOWN, PL_MG_WEIGHT, wt, o->n_ff, o->n_embd, "blk.%d.ffn_down.weight", i));
    PL_TRY(pl_mg_push(l, o->seed, PL_W_UP, PL_MG_WEIGHT, wt, o->n_embd, o->n_ff, "blk.%d.ffn_up.weight", i));
  }
  PL_TRY(pl_mg_push(l, o->seed, PL_W_OUTPUT_NORM, PL_MG_NORM, wt, o->n_embd, 0, "output_norm.weight", -1));
  if (!o->tied)
    PL_TRY(pl_mg_push(l, o->seed, PL_W_OUTPUT, PL_MG_WEIGHT, wt, o->n_embd, o->n_vocab, "output.weight", -1));
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
  return o->vocab_from ? pl_mg_vocab_from(w, o->vocab_from) : pl_synth_vocab_write(w, o->n_vocab);
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
    float mean = t->kind == PL_MG_NORM ? 1.0f : 0.0f, scale = pl_wrand_scale(o->std);
    for (int64_t r = 0; r < t->ne[1] && !rc; r++) {
      for (int64_t c = 0; c < t->ne[0]; c++) /* the dummy loader's values (weight_rand.h) */
        x[c] = mean + pl_wrand_value(t->stream, (uint64_t)(r * t->ne[0] + c), scale);
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

static void pl_mg_usage(FILE *f) {
  fputs(
      "usage: pagellm model-gen -o OUT.gguf [options]\n"
      "Writes a random-weight GGUF (llama.cpp-compatible) of a Llama-family architecture.\n"
      "  -o, --out PATH        output file (required)\n"
      "  --arch A              llama (default; a preset's own) | mistral | qwen2 | qwen3\n"
      "  --preset P            a real model's shape (model/model_preset.c): tinyllama-1.1b,\n"
      "                        llama-2-7b, llama-3-8b, qwen2.5-7b (e.g. tinyllama-1.1b:\n"
      "                        n_embd 2048, 22 layers, 32/4 heads, n_ff 5632, vocab 32000,\n"
      "                        ctx 2048); later options override it. --preset P --seed S\n"
      "                        --type bf16 writes exactly the weights of --load-format dummy\n"
      "                        --model-config P --seed S (f16/f32 likewise)\n"
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
      "  --seed N              random seed (default 0, as --load-format dummy)\n"
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
  else if (o->n_vocab < PL_SV_MIN_VOCAB)
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
  o.seed = 0;
  o.std = PL_WEIGHT_STD;
  /* -1 = not given: filled from the preset or the defaults below */
  o.n_embd = o.n_layer = o.n_head = o.n_head_kv = o.n_ff = o.n_vocab = o.n_ctx = o.head_dim = -1;
  o.rope_theta = o.rms_eps = -1;
  o.tied = -1;
  const char *preset = NULL;
  int arch_given = 0;
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
      arch_given = 1;
      continue;
    }
    if (!strcmp(a, "--preset")) {
      PL_MG_NEED_ARG();
      if (!pl_model_preset_find(v)) {
        fprintf(stderr, "pagellm model-gen: unknown --preset '%s' (%s)\n", v,
                pl_model_preset_names());
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
  const pl_model_preset *ps = preset ? pl_model_preset_find(preset) : NULL;
  if (ps && !arch_given)
    o.arch = ps->arch;
  int qwen = !strncmp(o.arch, "qwen", 4), mistral = !strcmp(o.arch, "mistral");
  if (ps) {
    if (o.n_embd < 0) o.n_embd = ps->n_embd;
    if (o.n_layer < 0) o.n_layer = ps->n_layer;
    if (o.n_head < 0) o.n_head = ps->n_head;
    if (o.n_head_kv < 0) o.n_head_kv = ps->n_head_kv;
    if (o.n_ff < 0) o.n_ff = ps->n_ff;
    if (o.n_vocab < 0) o.n_vocab = ps->n_vocab;
    if (o.n_ctx < 0) o.n_ctx = ps->n_ctx;
    /* head_dim: n_embd / n_head below (every preset's), so --n-embd/--n-head overrides work */
    if (o.rope_theta < 0) o.rope_theta = ps->rope_theta;
    if (o.rms_eps < 0) o.rms_eps = ps->rms_eps;
    if (o.tied < 0) o.tied = ps->tied;
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
