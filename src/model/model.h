/* A loaded Llama-family model: hyperparameters + weight views. Weights stay in the mapped
 * file (GGUF or safetensors) whenever their bytes are usable as is; 1-D tensors (norms,
 * biases, rope factors) are converted to owned F32 copies at load.
 *
 * Conventions the loaders normalise to (so the forward pass has one path):
 *  - matrices in ggml order: ne[0] = input dim (contiguous), ne[1] = output dim
 *  - RoPE style recorded per model: GGUF llama/mistral files carry Q/K rows permuted for
 *    adjacent-pair rotation (PL_ROPE_NORM); HF checkpoints and GGUF qwen2/qwen3 rotate
 *    half-split pairs (PL_ROPE_NEOX). The loader never re-permutes weights.
 * Immutable after load: safe to share between threads. */
#ifndef PL_MODEL_MODEL_H
#define PL_MODEL_MODEL_H
#include <stddef.h>
#include <stdint.h>

#include "backend/tensor.h"

typedef enum { PL_ARCH_LLAMA, PL_ARCH_MISTRAL, PL_ARCH_QWEN2, PL_ARCH_QWEN3 } pl_arch;
typedef enum { PL_ROPE_NORM = 0, PL_ROPE_NEOX = 1 } pl_rope_style;

typedef struct pl_hparams {
  pl_arch arch;
  int n_vocab;
  int n_embd;          /* hidden size */
  int n_layer;
  int n_head;          /* query heads */
  int n_head_kv;       /* key/value heads (GQA: n_head % n_head_kv == 0) */
  int head_dim;        /* may differ from n_embd / n_head (qwen3) */
  int n_ff;            /* SwiGLU inner size */
  int n_ctx_train;     /* context length the model was trained for */
  float rms_eps;
  float rope_theta;
  int rope_dim;        /* rotated dims per head (<= head_dim) */
  pl_rope_style rope_style;
  /* Llama 3.1 "llama3" rope scaling (HF config) — GGUF stores the result as rope_freqs. */
  int rope_llama3;
  float rope_factor, rope_low_freq_factor, rope_high_freq_factor;
  int rope_orig_ctx;
  int tied_embeddings; /* output projection = token embedding */
} pl_hparams;

typedef struct pl_layer {
  pl_tensor attn_norm;          /* [n_embd] F32 */
  pl_tensor wq, wk, wv;         /* [n_embd, n_head*hd], [n_embd, n_head_kv*hd] x2 */
  pl_tensor bq, bk, bv;         /* optional biases (qwen2), F32; data NULL when absent */
  pl_tensor q_norm, k_norm;     /* optional per-head RMSNorm [head_dim] (qwen3) */
  pl_tensor wo;                 /* [n_head*hd, n_embd] */
  pl_tensor ffn_norm;           /* [n_embd] F32 */
  pl_tensor w_gate, w_up;       /* [n_embd, n_ff] */
  pl_tensor w_down;             /* [n_ff, n_embd] */
} pl_layer;

struct pl_gguf;

typedef struct pl_model {
  char *path;
  char *name;                   /* file or directory stem */
  const char *format;           /* "gguf", "safetensors" or "dummy" (random weights) */
  pl_hparams hp;
  pl_tensor tok_embd;           /* [n_embd, n_vocab] */
  pl_tensor output_norm;        /* [n_embd] F32 */
  pl_tensor output;             /* [n_embd, n_vocab]; == tok_embd when tied */
  float *rope_inv_freq;         /* [rope_dim/2] owned: theta^(-2i/d) with scaling applied */
  pl_layer *layers;             /* [n_layer] owned */
  struct pl_gguf *gguf;         /* the GGUF (tokenizer metadata), NULL for safetensors */
  char *hf_dir;                 /* safetensors directory (tokenizer.json lives here) */
  /* owned resources */
  void **maps; size_t *map_sizes; int n_maps; /* safetensors mappings */
  float **owned; int n_owned, cap_owned;      /* F32 copies of 1-D tensors */
  size_t weight_bytes;          /* bytes of all weights as stored */
  int64_t n_params;
} pl_model;

/* Load a .gguf file or a safetensors directory (config.json + *.safetensors, optionally
 * sharded with model.safetensors.index.json, optionally MLX affine-quantized). Validates
 * every shape against the hyperparameters. Errors: PL_EIO, PL_EFORMAT, PL_EUNSUPPORTED,
 * PL_ENOMEM, with a message naming the file and the problem. */
int pl_model_load(const char *path, pl_model **out);
void pl_model_free(pl_model *m); /* NULL ok */

/* `--load-format dummy`: random weights, no file (model_dummy.c). config is a preset name
 * (model_preset.h), an HF config.json or a directory holding one (llama, mistral, qwen2, qwen3
 * fields: hidden_size, intermediate_size, num_hidden_layers, num_attention_heads,
 * max_position_embeddings and vocab_size required; num_key_value_heads, head_dim,
 * rms_norm_eps, rope_theta, llama3 rope_scaling, tie_word_embeddings optional). The matrices
 * are `random` tensors (no data) that pl_model_upload has the backend generate with
 * weight_fill_random; norms and biases are generated at load. The same preset/config, dtype
 * and seed give exactly the weights of `model-gen --preset P --seed S --type T`, and the same
 * synthetic vocabulary (m->gguf holds it). Errors: PL_EIO (no such preset or file),
 * PL_EFORMAT (bad JSON, a missing or ill-typed field, inconsistent shapes, with the field's
 * name), PL_EUNSUPPORTED, PL_EINVAL, PL_ENOMEM. */
typedef struct pl_dummy_spec {
  const char *config;
  pl_dtype dtype;   /* of the matrices: F32, F16 or BF16 (norms and biases are F32) */
  uint64_t seed;
} pl_dummy_spec;
int pl_model_load_dummy(const pl_dummy_spec *s, pl_model **out);
const char *pl_arch_name(pl_arch a);
/* The architecture named `name` (GGUF general.architecture, HF model_type); -1 if none. */
int pl_arch_from_name(const char *name, pl_arch *out);

/* Give every weight its backend copy (t->dev) through be->ops->weight_upload (random tensors:
 * weight_fill_random); progress != 0
 * draws a progress bar on stderr. Binds the model to that backend, which must be destroyed
 * before the model (it owns the copies). */
struct pl_backend;
int pl_model_upload(pl_model *m, struct pl_backend *be, int progress);

/* KV bytes per token of context with float32 K and V. */
size_t pl_model_kv_bytes_per_token(const pl_model *m);

/* ---- for the loaders (model_gguf.c, model_safetensors.c) ---- */
int pl_model_validate(pl_model *m);                     /* shapes vs hparams; fills stats */
int pl_model_own_f32(pl_model *m, pl_tensor *t);        /* convert a 1-D tensor to owned F32 */
float *pl_model_alloc_f32(pl_model *m, int64_t n);      /* owned by m; NULL: out of memory */
int pl_model_init_rope(pl_model *m, const pl_tensor *rope_freqs); /* inv-freq table */
#endif
