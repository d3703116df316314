/* Error reporting: functions return a pl_status and record a detailed message on the calling
 * thread with pl_fail(), so callers up the stack can pass the status through unchanged. */
#ifndef PL_UTIL_ERROR_H
#define PL_UTIL_ERROR_H
#include "pagellm.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Record a printf-style message for the calling thread and return `status` (for
 * `return pl_fail(PL_EFORMAT, "%s: bad magic", path);`). */
int pl_fail(int status, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Prefix the current thread's message with "prefix: " and return `status`. */
int pl_fail_prefix(int status, const char *prefix);
#ifdef __cplusplus
}
#endif

#define PL_TRY(expr)            \
  do {                          \
    int pl_try_rc_ = (expr);    \
    if (pl_try_rc_ < 0)         \
      return pl_try_rc_;        \
  } while (0)
#endif
