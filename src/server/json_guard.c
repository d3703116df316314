/* pl_json_loadb (see json_guard.h). The server routes jansson's allocator through
 * util/alloc.h, whose per-thread failure count shows whether this parse ran out of memory. */
#include "server/json_guard.h"

#include "util/alloc.h"
#include "util/error.h"

int pl_json_loadb(const char *buf, size_t len, size_t flags, json_t **out, json_error_t *jerr) {
  json_error_t local;
  if (!jerr)
    jerr = &local;
  long failures0 = pl_alloc_thread_failures();
  *out = json_loadb(buf, len, flags, jerr);
  if (pl_alloc_thread_failures() != failures0 ||
      (!*out && json_error_code(jerr) == json_error_out_of_memory)) {
    /* a value parsed despite a failed allocation may be partial: void it */
    json_decref(*out);
    *out = NULL;
    return PL_ENOMEM;
  }
  return *out ? 0 : PL_EINVAL;
}
