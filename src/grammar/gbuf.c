/* A growing text buffer for the GBNF converters; an allocation failure sticks in `oom`. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "grammar/grammar.h"
#include "util/alloc.h"
#include "util/array.h"

void pl_gbuf_putn(pl_gbuf *b, const char *s, size_t n) {
  if (b->oom)
    return;
  if (pl_array_grow(&b->p, &b->cap, b->len + n + 1, 1, 256)) {
    b->oom = 1;
    return;
  }
  memcpy(b->p + b->len, s, n);
  b->len += n;
  b->p[b->len] = 0;
}

void pl_gbuf_put(pl_gbuf *b, const char *s) { pl_gbuf_putn(b, s, strlen(s)); }

void pl_gbuf_printf(pl_gbuf *b, const char *fmt, ...) {
  char tmp[1024];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
  va_end(ap);
  if (n < 0 || (size_t)n >= sizeof tmp) {
    b->oom = 1;
    return;
  }
  pl_gbuf_putn(b, tmp, (size_t)n);
}

void pl_gbuf_literal(pl_gbuf *b, const char *s, size_t n) {
  pl_gbuf_put(b, "\"");
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c == '"' || c == '\\') {
      char e[3] = {'\\', (char)c, 0};
      pl_gbuf_put(b, e);
    } else if (c < 0x20 || c == 0x7f) {
      pl_gbuf_printf(b, "\\x%02X", c);
    } else {
      pl_gbuf_putn(b, (const char *)&s[i], 1);
    }
  }
  pl_gbuf_put(b, "\"");
}
