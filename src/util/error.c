/* Status strings (from the X-macro list in pagellm.h) and the thread-local error message. */
#include "util/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static _Thread_local char pl_errmsg[1024];

const char *pl_strerror(int status) {
  switch (status) {
#define PL_X_CASE(name, val, desc) \
  case val:                        \
    return desc;
    PL_STATUS_LIST(PL_X_CASE)
#undef PL_X_CASE
  default:
    return "unknown status";
  }
}

const char *pl_last_error(void) { return pl_errmsg[0] ? pl_errmsg : "no error message"; }

int pl_fail(int status, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(pl_errmsg, sizeof pl_errmsg, fmt, ap);
  va_end(ap);
  return status;
}

int pl_fail_prefix(int status, const char *prefix) {
  char tmp[sizeof pl_errmsg];
  size_t n = strlen(prefix);
  if (n > sizeof tmp / 2)
    n = sizeof tmp / 2;
  memcpy(tmp, prefix, n);
  memcpy(tmp + n, ": ", 2);
  size_t rest = strnlen(pl_errmsg, sizeof tmp - n - 3);
  memcpy(tmp + n + 2, pl_errmsg, rest);
  tmp[n + 2 + rest] = 0;
  memcpy(pl_errmsg, tmp, sizeof pl_errmsg);
  return status;
}
