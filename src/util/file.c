#include "util/file.h"

#include <errno.h>
#include <string.h>

#include "util/alloc.h"
#include "util/array.h"
#include "util/error.h"

int pl_read_stream(FILE *f, const char *what, size_t max, char **out, size_t *len) {
  *out = NULL;
  size_t cap = 0, n = 0;
  char *buf = NULL;
  for (;;) {
    if (n + 1 >= cap) { /* full (room for the NUL only): grow, unless already past max */
      int over = cap > max;
      if (over || pl_array_grow(&buf, &cap, n + 2, 1, 4096) < 0) {
        pl_free(buf);
        return over ? pl_fail(PL_ERANGE, "%s: larger than %zu bytes", what, max)
                    : pl_fail(PL_ENOMEM, "%s: out of memory", what);
      }
    }
    size_t k = fread(buf + n, 1, cap - n - 1, f);
    n += k;
    if (k == 0)
      break;
  }
  if (ferror(f)) {
    pl_free(buf);
    return pl_fail(PL_EIO, "%s: read error", what);
  }
  if (n > max) {
    pl_free(buf);
    return pl_fail(PL_ERANGE, "%s: larger than %zu bytes", what, max);
  }
  buf[n] = 0;
  *out = buf;
  if (len)
    *len = n;
  return PL_OK;
}

int pl_read_file(const char *path, size_t max, char **out, size_t *len) {
  *out = NULL;
  FILE *f = fopen(path, "rb");
  if (!f)
    return pl_fail(PL_EIO, "%s: cannot open: %s", path, strerror(errno));
  int rc = pl_read_stream(f, path, max, out, len);
  fclose(f);
  return rc;
}
