/* The Jinja parser and renderer on arbitrary templates, with a chat-like context. The step,
 * output and memory budgets are small so that no template runs long. */
#include <jansson.h>

#include "fuzz_common.h"
#include "template/jinja.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static json_t *vars;
  if (!vars)
    vars = json_loads("{\"messages\":[{\"role\":\"system\",\"content\":\"Be brief.\"},"
                      "{\"role\":\"user\",\"content\":\"Hi <3\"},{\"role\":\"assistant\","
                      "\"content\":\"Hello\"}],\"bos_token\":\"<s>\",\"eos_token\":\"</s>\","
                      "\"add_generation_prompt\":true,\"tools\":[{\"type\":\"function\","
                      "\"function\":{\"name\":\"f\",\"parameters\":{}}}]}",
                      0, NULL);
  size_t live = pl_alloc_live_bytes();
  pl_jinja_template *t = NULL;
  if (pl_jinja_template_parse((const char *)data, size, &t) == 0) {
    pl_jinja_render_opts o = {.vars = vars, .now = 1700000000, .max_output = 1 << 16,
                              .max_memory = 16 << 20, .max_steps = 100000, .max_depth = 200,
                              .max_calls = 50};
    char *out = NULL;
    if (pl_jinja_render(t, &o, &out, NULL) == 0)
      pl_free(out);
    pl_jinja_template_free(t);
  }
  FZ_LEAK_CHECK(live);
  return 0;
}
