/* The safetensors reader with its config.json. Input: 2 bytes little-endian n, then n bytes of
 * config.json, then the model.safetensors file. */
#include "fuzz_common.h"
#include "model/model.h"
#include "pagellm.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 2)
    return 0;
  size_t n = (size_t)data[0] | (size_t)data[1] << 8;
  if (n > size - 2)
    n = size - 2;
  char cfg[256], st[256];
  fz_write("config.json", data + 2, n, cfg, sizeof cfg);
  fz_write("model.safetensors", data + 2 + n, size - 2 - n, st, sizeof st);
  size_t live = pl_alloc_live_bytes();
  pl_model *m = NULL;
  if (pl_model_load(fz_dir(), &m) == 0)
    pl_model_free(m);
  FZ_LEAK_CHECK(live);
  return 0;
}
