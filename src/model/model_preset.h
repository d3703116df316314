/* Shapes of real models, by name, for random-weight models without a download: `model-gen
 * --preset` writes one as a GGUF, `--load-format dummy --model-config NAME` generates it in
 * memory. Both use this table and pl_weight_stream's ids, so the same preset, seed and type
 * give the same weights either way. */
#ifndef PL_MODEL_MODEL_PRESET_H
#define PL_MODEL_MODEL_PRESET_H
#include <stdint.h>

typedef struct pl_model_preset {
  const char *name;
  const char *arch;        /* llama | qwen2 (model-gen's --arch names) */
  int64_t n_embd, n_layer, n_head, n_head_kv, n_ff, n_vocab, n_ctx, head_dim;
  double rope_theta, rms_eps;
  int tied;                /* tie_word_embeddings */
} pl_model_preset;

/* NULL when unknown. */
const pl_model_preset *pl_model_preset_find(const char *name);
/* "tinyllama-1.1b, llama-2-7b, ..." (static text) */
const char *pl_model_preset_names(void);

/* The role of a weight tensor; with its layer it names the tensor's random stream. */
typedef enum {
  PL_W_TOK_EMBD, PL_W_OUTPUT_NORM, PL_W_OUTPUT,                    /* global (layer -1) */
  PL_W_ATTN_NORM, PL_W_Q, PL_W_K, PL_W_V, PL_W_BQ, PL_W_BK, PL_W_BV, /* per layer */
  PL_W_Q_NORM, PL_W_K_NORM, PL_W_O, PL_W_FFN_NORM, PL_W_GATE, PL_W_UP, PL_W_DOWN,
} pl_weight_role;

/* The weight_rand.h stream of a tensor: id = role for layer -1, 32 * (layer + 1) + role
 * otherwise. */
uint64_t pl_weight_stream(uint64_t seed, pl_weight_role role, int layer);

/* model-gen's distribution, shared by the dummy loader: matrices and biases mean 0, norms
 * mean 1, standard deviation PL_WEIGHT_STD. */
#define PL_WEIGHT_STD 0.02
#endif
