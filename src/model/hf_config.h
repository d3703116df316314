/* The one reader of a Hugging Face config.json (model_type, sizes, RMSNorm eps, RoPE theta and
 * llama3 scaling, tied embeddings, MLX "quantization"), shared by the safetensors loader and
 * `--load-format dummy`. transformers 5 configs (settings under "rope_parameters") and older
 * ones (rope_theta / rope_scaling at the top level) both work.
 *
 * Two modes, because the two callers learn different amounts from elsewhere:
 *   strict   (dummy): the config is the model's only description, so every size is required,
 *            range-checked and consistent (head_dim even, heads a multiple of KV heads), and
 *            every field of the wrong type is an error naming it.
 *   lenient  (safetensors): the tensors' shapes are checked against the sizes at load, which
 *            catches bad values with the tensor's name; a missing or non-integer size reads
 *            as 0 (max_position_embeddings as 2048), other fields as transformers' defaults. */
#ifndef PL_MODEL_HF_CONFIG_H
#define PL_MODEL_HF_CONFIG_H
#include "model/model.h"

typedef struct pl_hf_quant {
  int bits, group_size;  /* MLX affine quantization (4 or 8 bits); 0 when the config has none */
} pl_hf_quant;

/* Read `path` (a config.json) into hp: arch, n_embd, n_ff, n_layer, n_head, n_head_kv,
 * n_vocab, n_ctx_train, head_dim, rms_eps, rope_theta, the llama3 rope fields and
 * tied_embeddings; nothing else of hp is touched. quant (may be NULL: not read) gets the MLX
 * "quantization" object. Errors, messages starting with path: PL_EFORMAT (unreadable JSON,
 * missing or bad field), PL_EUNSUPPORTED (model_type, rope scaling type, quantization). */
int pl_hf_config_load(const char *path, int strict, pl_hparams *hp, pl_hf_quant *quant);
#endif
