/* The GGUF reader and model validation: any bytes load or fail cleanly, leaking nothing. */
#include "fuzz_common.h"
#include "model/model.h"
#include "pagellm.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char path[256];
  fz_write("m.gguf", data, size, path, sizeof path);
  size_t live = pl_alloc_live_bytes();
  pl_model *m = NULL;
  if (pl_model_load(path, &m) == 0)
    pl_model_free(m);
  FZ_LEAK_CHECK(live);
  return 0;
}
