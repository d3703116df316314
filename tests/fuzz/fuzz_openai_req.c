/* The OpenAI request parsers (completions, chat, tokenize, detokenize): byte 0 picks the kind,
 * the rest is the body. A failure must carry a 4xx/5xx status and a message. */
#include "fuzz_common.h"
#include "server/openai_req.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1)
    return 0;
  pl_oai_kind kind = (pl_oai_kind)(data[0] % 4);
  size_t live = pl_alloc_live_bytes();
  pl_oai_request req;
  pl_oai_error err;
  memset(&req, 0, sizeof req);
  if (pl_oai_parse(kind, (const char *)data + 1, size - 1, &req, &err) == 0) {
    pl_oai_request_free(&req);
  } else if (err.status < 400 || err.status > 599 || !err.message[0]) {
    fprintf(stderr, "parse failure without a proper status/message (%d)\n", err.status);
    abort();
  }
  FZ_LEAK_CHECK(live);
  return 0;
}
