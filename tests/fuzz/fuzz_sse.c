/* The SSE client parser of `bench serve`: bytes fed in pieces whose sizes come from the input
 * itself (byte 0 seeds them), so every split of a line or CRLF is tried. */
#include "../../src/cli/sse.h"
#include "fuzz_common.h"

static void on_event(void *ud, const char *d, size_t n) {
  size_t *total = ud;
  if (d[n] != '\0')
    abort(); /* the contract: data is NUL-terminated */
  *total += n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1)
    return 0;
  unsigned step = data[0] % 17 + 1;
  size_t total = 0;
  pl_sse s;
  pl_sse_init(&s, on_event, &total);
  for (size_t i = 1; i < size;) {
    size_t n = size - i < step ? size - i : step;
    if (pl_sse_feed(&s, (const char *)data + i, n) < 0)
      break;
    i += n;
    step = step * 5 % 23 + 1;
  }
  pl_sse_free(&s);
  return 0;
}
