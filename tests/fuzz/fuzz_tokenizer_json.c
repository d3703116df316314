/* The tokenizer.json loader; a loaded tokenizer also encodes and decodes a fixed text. */
#include "fuzz_common.h"
#include "tokenizer/tokenizer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char path[256];
  fz_write("tokenizer.json", data, size, path, sizeof path);
  size_t live = pl_alloc_live_bytes();
  pl_tokenizer *t = NULL;
  if (pl_tokenizer_load_hf(path, &t) == 0) {
    pl_token_buf b = {0};
    static const char text[] = "Hello world! <s> 123 \xc3\xa9t\xc3\xa9\n\n  x";
    if (pl_tokenizer_encode(t, text, sizeof text - 1, 1, 1, &b) == 0) {
      char *out = NULL;
      size_t len = 0;
      if (pl_tokenizer_decode(t, b.ids, b.n, 0, &out, &len) == 0)
        pl_free(out);
    }
    pl_token_buf_free(&b);
    pl_tokenizer_free(t);
  }
  FZ_LEAK_CHECK(live);
  return 0;
}
