/* Growable byte buffer (see strbuf.h). Grows geometrically so appends are amortised O(1). */
#include "server/strbuf.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "pagellm.h"
#include "util/alloc.h"

static int grow(pl_strbuf *b, size_t need) {
  if (need < b->len || need + 1 < need)
    return PL_ENOMEM; /* overflow */
  if (need + 1 <= b->cap)
    return PL_OK;
  size_t cap = b->cap ? b->cap : 256;
  while (cap < need + 1)
    cap *= 2;
  char *p = pl_realloc(b->data, cap);
  if (!p)
    return PL_ENOMEM;
  b->data = p;
  b->cap = cap;
  return PL_OK;
}

int pl_strbuf_append(pl_strbuf *b, const char *s, size_t n) {
  if (grow(b, b->len + n) < 0)
    return PL_ENOMEM;
  if (n)
    memcpy(b->data + b->len, s, n);
  b->len += n;
  b->data[b->len] = '\0';
  return PL_OK;
}

int pl_strbuf_puts(pl_strbuf *b, const char *s) { return pl_strbuf_append(b, s, strlen(s)); }

int pl_strbuf_printf(pl_strbuf *b, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  char small[256];
  int n = vsnprintf(small, sizeof small, fmt, ap);
  va_end(ap);
  if (n < 0)
    return PL_EINVAL;
  if ((size_t)n < sizeof small)
    return pl_strbuf_append(b, small, (size_t)n);
  if (grow(b, b->len + (size_t)n) < 0)
    return PL_ENOMEM;
  va_start(ap, fmt);
  vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
  va_end(ap);
  b->len += (size_t)n;
  return PL_OK;
}

void pl_strbuf_consume(pl_strbuf *b, size_t n) {
  if (n >= b->len) {
    b->len = 0;
  } else {
    memmove(b->data, b->data + n, b->len - n);
    b->len -= n;
  }
  if (b->data)
    b->data[b->len] = '\0';
}

char *pl_strbuf_take(pl_strbuf *b) {
  if (!b->data && grow(b, 0) < 0)
    return NULL;
  char *p = b->data;
  p[b->len] = '\0';
  b->data = NULL;
  b->len = b->cap = 0;
  return p;
}

void pl_strbuf_free(pl_strbuf *b) {
  pl_free(b->data);
  b->data = NULL;
  b->len = b->cap = 0;
}
