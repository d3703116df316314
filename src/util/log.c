#include "util/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int log_level = -1;

int pl_log_enabled(int level) {
  if (log_level < 0) {
    const char *e = getenv("PAGELLM_LOG");
    log_level = PL_LOG_INFO;
    if (e) {
      if (!strcmp(e, "error")) log_level = PL_LOG_ERROR;
      else if (!strcmp(e, "warn")) log_level = PL_LOG_WARN;
      else if (!strcmp(e, "debug")) log_level = PL_LOG_DEBUG;
    }
  }
  return level <= log_level;
}

void pl_log_set_level(int level) { log_level = level; }

void pl_log(int level, const char *fmt, ...) {
  if (!pl_log_enabled(level))
    return;
  static const char *tag[] = {"error", "warn", "info", "debug"};
  char line[2048];
  int n = snprintf(line, sizeof line, "pagellm %s: ", tag[level]);
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
  va_end(ap);
  fprintf(stderr, "%s\n", line);
}
