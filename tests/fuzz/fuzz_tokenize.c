/* Tokenizer encode and decode of arbitrary bytes with real vocabularies: an SPM one (the HF
 * Llama golden model) and a byte-level BPE one (the Qwen2 golden model). Byte 0 picks the
 * tokenizer and the flags; the rest is text to encode, and also read as token ids to decode. */
#include "fuzz_common.h"
#include "model/gguf.h"
#include "tokenizer/tokenizer.h"

static pl_tokenizer *toks[2];

static pl_tokenizer *load(const char *rel) {
  char path[1024];
  snprintf(path, sizeof path, "%s/%s", PL_SOURCE_DIR, rel);
  pl_gguf *g = NULL;
  pl_tokenizer *t = NULL;
  if (pl_gguf_open(path, &g) < 0 || pl_tokenizer_load_gguf(g, &t) < 0) {
    fprintf(stderr, "cannot load %s\n", path);
    abort();
  }
  return t; /* g stays open for the process: the tokenizer may point into its mapping */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (!toks[0]) {
    toks[0] = load("tests/golden/hf/llama/model.gguf");
    toks[1] = load("tests/golden/hf/qwen2/model.gguf");
  }
  if (size < 1)
    return 0;
  const pl_tokenizer *t = toks[data[0] & 1];
  const char *text = (const char *)data + 1;
  size_t len = size - 1;
  size_t live = pl_alloc_live_bytes();
  pl_token_buf b = {0};
  if (pl_tokenizer_encode(t, text, len, (data[0] >> 1) & 1, &b) == 0) {
    char *out = NULL;
    size_t n = 0;
    if (pl_tokenizer_decode(t, b.ids, b.n, 0, &out, &n) == 0)
      pl_free(out);
  }
  pl_token_buf_free(&b);
  /* the same bytes as token ids (any values, out of range included) */
  int32_t ids[256];
  size_t k = len / 4 < 256 ? len / 4 : 256;
  memcpy(ids, text, k * 4);
  char *out = NULL;
  size_t n = 0;
  if (pl_tokenizer_decode(t, ids, k, (data[0] >> 2) & 3, &out, &n) == 0)
    pl_free(out);
  FZ_LEAK_CHECK(live);
  return 0;
}
