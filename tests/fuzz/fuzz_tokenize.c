/* Tokenizer encode and decode of arbitrary bytes with real vocabularies: llama.cpp's SPM Llama
 * and byte-level BPE Qwen2 vocabularies (built into $PL_TEST_DATA by scripts/test-data.py;
 * scripts/fuzz.sh makes them). Byte 0 picks the
 * tokenizer and the flags; the rest is text to encode, and also read as token ids to decode. */
#include "fuzz_common.h"
#include "model/gguf.h"
#include "pagellm.h"
#include "tokenizer/tokenizer.h"

static pl_tokenizer *toks[2];
static pl_gguf *files[2]; /* open for the process: the tokenizers may point into them */
static int n_files;

static pl_tokenizer *load(const char *rel) {
  char path[1024];
  const char *dir = getenv("PL_TEST_DATA");
  snprintf(path, sizeof path, "%s/%s", dir && *dir ? dir : PL_TEST_DATA_DIR, rel);
  pl_gguf *g = NULL;
  pl_tokenizer *t = NULL;
  if (pl_gguf_open(path, &g) < 0 || pl_tokenizer_load_gguf(g, &t) < 0) {
    fprintf(stderr, "cannot load %s: %s\n", path, pl_last_error());
    abort();
  }
  files[n_files++] = g;
  return t;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (!toks[0]) {
    toks[0] = load("tokenizer-vectors/ggml-vocab-llama-spm.gguf");
    toks[1] = load("tokenizer-vectors/ggml-vocab-qwen2.gguf");
  }
  if (size < 1)
    return 0;
  const pl_tokenizer *t = toks[data[0] & 1];
  const char *text = (const char *)data + 1;
  size_t len = size - 1;
  size_t live = pl_alloc_live_bytes();
  pl_token_buf b = {0};
  if (pl_tokenizer_encode(t, text, len, (data[0] >> 1) & 1, (data[0] >> 2) & 1, &b) == 0) {
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
