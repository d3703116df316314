/* UTF-8, Python character classes and the capped byte buffer (see jinja_text.h). Character
 * classes follow CPython's definitions on top of utf8proc's Unicode categories. Case mapping is
 * the simple (1:1) mapping; Python's full mapping (e.g. 'ß'.upper() == 'SS') is not modelled. */
#include "template/jinja_text.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <utf8proc.h>

#include "util/alloc.h"
#include "util/array.h"
#include "util/error.h"

size_t pl_utf8_next(const char *s, size_t n, size_t i, uint32_t *cp) {
  const unsigned char *u = (const unsigned char *)s;
  unsigned c = u[i];
  if (c < 0x80) {
    *cp = c;
    return i + 1;
  }
  int len = c >= 0xF0 && c < 0xF8 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 0;
  if (len == 0 || c >= 0xF8 || i + (size_t)len > n) {
    *cp = c;
    return i + 1;
  }
  uint32_t v = c & (0x7F >> len);
  for (int k = 1; k < len; k++) {
    unsigned d = u[i + (size_t)k];
    if ((d & 0xC0) != 0x80) {
      *cp = c;
      return i + 1;
    }
    v = (v << 6) | (d & 0x3F);
  }
  *cp = v;
  return i + (size_t)len;
}

size_t pl_utf8_prev(const char *s, size_t i) {
  size_t j = i - 1;
  /* Step back over continuation bytes (at most 3) to a lead byte. */
  for (int k = 0; k < 3 && j > 0 && ((unsigned char)s[j] & 0xC0) == 0x80; k++)
    j--;
  uint32_t cp;
  if (pl_utf8_next(s, i, j, &cp) != i)
    return i - 1; /* not a well-formed sequence ending at i: treat the byte alone */
  return j;
}

size_t pl_utf8_encode(uint32_t cp, char out[4]) {
  if (cp < 0x80) {
    out[0] = (char)cp;
    return 1;
  }
  if (cp < 0x800) {
    out[0] = (char)(0xC0 | (cp >> 6));
    out[1] = (char)(0x80 | (cp & 0x3F));
    return 2;
  }
  if (cp < 0x10000) {
    out[0] = (char)(0xE0 | (cp >> 12));
    out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[2] = (char)(0x80 | (cp & 0x3F));
    return 3;
  }
  if (cp > 0x10FFFF)
    cp = 0xFFFD;
  out[0] = (char)(0xF0 | (cp >> 18));
  out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
  out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
  out[3] = (char)(0x80 | (cp & 0x3F));
  return 4;
}

size_t pl_utf8_count(const char *s, size_t n) {
  size_t k = 0;
  for (size_t i = 0; i < n; k++) {
    uint32_t cp;
    i = pl_utf8_next(s, n, i, &cp);
  }
  return k;
}

size_t pl_utf8_offset(const char *s, size_t n, size_t k) {
  size_t i = 0;
  while (k-- > 0 && i < n) {
    uint32_t cp;
    i = pl_utf8_next(s, n, i, &cp);
  }
  return i;
}

/* CPython's str.isspace(): bidi class WS/B/S or category Zs. */
int pl_py_isspace(uint32_t cp) {
  if (cp < 0x80)
    return cp == ' ' || (cp >= 0x09 && cp <= 0x0D) || (cp >= 0x1C && cp <= 0x1F);
  switch (cp) {
  case 0x85: case 0xA0: case 0x1680: case 0x2028: case 0x2029: case 0x202F: case 0x205F:
  case 0x3000:
    return 1;
  default:
    return cp >= 0x2000 && cp <= 0x200A;
  }
}

static utf8proc_category_t cat(uint32_t cp) {
  return utf8proc_category((utf8proc_int32_t)cp);
}

int pl_py_isalpha(uint32_t cp) {
  utf8proc_category_t c = cat(cp);
  return c == UTF8PROC_CATEGORY_LU || c == UTF8PROC_CATEGORY_LL || c == UTF8PROC_CATEGORY_LT ||
         c == UTF8PROC_CATEGORY_LM || c == UTF8PROC_CATEGORY_LO;
}

int pl_py_isdigit(uint32_t cp) {
  utf8proc_category_t c = cat(cp);
  return c == UTF8PROC_CATEGORY_ND;
}

int pl_py_isalnum(uint32_t cp) {
  utf8proc_category_t c = cat(cp);
  return pl_py_isalpha(cp) || c == UTF8PROC_CATEGORY_ND || c == UTF8PROC_CATEGORY_NL ||
         c == UTF8PROC_CATEGORY_NO;
}

/* CPython: printable unless Cc, Cf, Cs, Co, Cn, Zl, Zp, or Zs other than the ASCII space. */
int pl_py_isprintable(uint32_t cp) {
  if (cp == ' ')
    return 1;
  switch (cat(cp)) {
  case UTF8PROC_CATEGORY_CC: case UTF8PROC_CATEGORY_CF: case UTF8PROC_CATEGORY_CS:
  case UTF8PROC_CATEGORY_CO: case UTF8PROC_CATEGORY_CN: case UTF8PROC_CATEGORY_ZL:
  case UTF8PROC_CATEGORY_ZP: case UTF8PROC_CATEGORY_ZS:
    return 0;
  default:
    return 1;
  }
}

int pl_py_islower(uint32_t cp) { return cat(cp) == UTF8PROC_CATEGORY_LL; }
int pl_py_isupper(uint32_t cp) {
  utf8proc_category_t c = cat(cp);
  return c == UTF8PROC_CATEGORY_LU || c == UTF8PROC_CATEGORY_LT;
}
int pl_py_iscased(uint32_t cp) {
  utf8proc_category_t c = cat(cp);
  return c == UTF8PROC_CATEGORY_LU || c == UTF8PROC_CATEGORY_LL || c == UTF8PROC_CATEGORY_LT;
}

uint32_t pl_py_upper(uint32_t cp) {
  return cp < 0x80 ? (cp >= 'a' && cp <= 'z' ? cp - 32 : cp)
                   : (uint32_t)utf8proc_toupper((utf8proc_int32_t)cp);
}
uint32_t pl_py_lower(uint32_t cp) {
  return cp < 0x80 ? (cp >= 'A' && cp <= 'Z' ? cp + 32 : cp)
                   : (uint32_t)utf8proc_tolower((utf8proc_int32_t)cp);
}
uint32_t pl_py_title(uint32_t cp) {
  return cp < 0x80 ? pl_py_upper(cp) : (uint32_t)utf8proc_totitle((utf8proc_int32_t)cp);
}

/* ---- capped buffer ---------------------------------------------------------------------- */

void pl_jbuf_init(pl_jbuf *b, size_t limit) {
  b->p = NULL;
  b->n = b->cap = 0;
  b->limit = limit;
  b->over_rc = PL_ETEMPLATE;
}

int pl_jbuf_put(pl_jbuf *b, const char *s, size_t n) {
  if (n == 0)
    return PL_OK;
  if (b->limit && (n > b->limit || b->n > b->limit - n))
    return pl_fail(b->over_rc, "template output exceeds the limit of %zu bytes", b->limit);
  if (pl_array_grow(&b->p, &b->cap, b->n + n + 1, 1, 256))
    return pl_fail(PL_ENOMEM, "template output: out of memory");
  memcpy(b->p + b->n, s, n);
  b->n += n;
  b->p[b->n] = 0;
  return PL_OK;
}

int pl_jbuf_putc(pl_jbuf *b, char c) { return pl_jbuf_put(b, &c, 1); }
int pl_jbuf_puts(pl_jbuf *b, const char *s) { return pl_jbuf_put(b, s, strlen(s)); }

int pl_jbuf_put_cp(pl_jbuf *b, uint32_t cp) {
  char tmp[4];
  return pl_jbuf_put(b, tmp, pl_utf8_encode(cp, tmp));
}

int pl_jbuf_printf(pl_jbuf *b, const char *fmt, ...) {
  char tmp[128];
  va_list ap;
  va_start(ap, fmt);
  int k = vsnprintf(tmp, sizeof tmp, fmt, ap);
  va_end(ap);
  if (k < 0)
    return pl_fail(PL_EINTERNAL, "template: format error");
  if ((size_t)k < sizeof tmp)
    return pl_jbuf_put(b, tmp, (size_t)k);
  char *big = pl_malloc((size_t)k + 1);
  if (!big)
    return pl_fail(PL_ENOMEM, "template: out of memory");
  va_start(ap, fmt);
  vsnprintf(big, (size_t)k + 1, fmt, ap);
  va_end(ap);
  int rc = pl_jbuf_put(b, big, (size_t)k);
  pl_free(big);
  return rc;
}

void pl_jbuf_free(pl_jbuf *b) {
  pl_free(b->p);
  b->p = NULL;
  b->n = b->cap = 0;
}
