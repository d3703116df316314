/* Growable byte buffer (see strbuf.h). Grows geometrically so appends are amortised O(1). */
#include "server/strbuf.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "pagellm.h"
#include "util/alloc.h"
#include "util/array.h"

static int grow(pl_strbuf *b, size_t need) {
  if (need < b->len || need + 1 < need)
    return PL_ENOMEM; /* overflow */
  return pl_array_grow(&b->data, &b->cap, need + 1, 1, 256); /* + the NUL */
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

int pl_utf8_seq(const unsigned char *s, size_t n) {
  unsigned c = s[0];
  if (c < 0x80)
    return 1;
  int len;
  unsigned min;
  if ((c & 0xE0) == 0xC0) { len = 2; min = 0x80; c &= 0x1F; }
  else if ((c & 0xF0) == 0xE0) { len = 3; min = 0x800; c &= 0x0F; }
  else if ((c & 0xF8) == 0xF0) { len = 4; min = 0x10000; c &= 0x07; }
  else return 0;
  if ((size_t)len > n)
    return 0;
  for (int i = 1; i < len; i++) {
    if ((s[i] & 0xC0) != 0x80)
      return 0;
    c = (c << 6) | (s[i] & 0x3F);
  }
  if (c < min || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF))
    return 0;
  return len;
}
