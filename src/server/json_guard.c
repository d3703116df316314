/* pl_json_loadb (see json_guard.h). The server routes jansson's allocator through
 * util/alloc.h, whose per-thread failure count shows whether this parse ran out of memory. */
#include "server/json_guard.h"

#include <string.h>

#include "util/alloc.h"
#include "util/error.h"

int pl_json_loadb(const char *buf, size_t len, size_t flags, json_t **out, json_error_t *jerr) {
  json_error_t local;
  if (!jerr)
    jerr = &local;
  long failures0 = pl_alloc_thread_failures();
  pl_alloc_soft_begin(); /* see there: jansson's lexer overruns on a failed allocation */
  *out = json_loadb(buf, len, flags, jerr);
  pl_alloc_soft_end();
  if (pl_alloc_thread_failures() != failures0 ||
      (!*out && json_error_code(jerr) == json_error_out_of_memory)) {
    /* a value parsed despite a failed allocation may be partial: void it */
    json_decref(*out);
    *out = NULL;
    return PL_ENOMEM;
  }
  return *out ? 0 : PL_EINVAL;
}

int pl_json_loadb_replacing(const char *buf, size_t len, size_t from, size_t to, const char *with,
                            size_t flags, json_t **out, json_error_t *jerr) {
  /* A copy of the rest (small beside the messages of a long chat). jansson's
   * json_load_callback would spare it, but overran a buffer under allocation failures. */
  size_t wn = strlen(with), n = from + wn + (len - to);
  char *text = pl_malloc(n ? n : 1);
  if (!text) {
    *out = NULL;
    return PL_ENOMEM;
  }
  memcpy(text, buf, from);
  memcpy(text + from, with, wn);
  memcpy(text + from + wn, buf + to, len - to);
  int rc = pl_json_loadb(text, n, flags, out, jerr);
  pl_free(text);
  return rc;
}
