/* The preset table (model_preset.h). Values from each model's config.json on the HF hub. */
#include "model/model_preset.h"

#include <string.h>

#include "backend/weight_rand.h"

static const pl_model_preset presets[] = {
    /* name            arch    embd  layer head kv  ff     vocab   ctx    hd   theta  eps  tied */
    {"tinyllama-1.1b", "llama", 2048, 22, 32, 4, 5632, 32000, 2048, 64, 10000, 1e-5, 0},
    {"llama-2-7b", "llama", 4096, 32, 32, 32, 11008, 32000, 4096, 128, 10000, 1e-5, 0}, /* MHA */
    {"llama-3-8b", "llama", 4096, 32, 32, 8, 14336, 128256, 8192, 128, 500000, 1e-5, 0},
    {"qwen2.5-7b", "qwen2", 3584, 28, 28, 4, 18944, 152064, 32768, 128, 1000000, 1e-6, 0},
    /* Llama 3's vocabulary in 1.2B parameters: the draft for a llama-3-8b target */
    {"llama-3.2-1b", "llama", 2048, 16, 32, 8, 8192, 128256, 131072, 64, 500000, 1e-5, 1},
};

const pl_model_preset *pl_model_preset_find(const char *name) {
  for (size_t i = 0; name && i < sizeof presets / sizeof *presets; i++)
    if (!strcmp(name, presets[i].name))
      return &presets[i];
  return NULL;
}

const char *pl_model_preset_names(void) {
  return "tinyllama-1.1b, llama-2-7b, llama-3-8b, qwen2.5-7b, llama-3.2-1b";
}

uint64_t pl_weight_stream(uint64_t seed, pl_weight_role role, int layer) {
  uint64_t id = layer < 0 ? (uint64_t)role : 32 * (uint64_t)(layer + 1) + (uint64_t)role;
  return pl_wrand_stream(seed, id);
}
