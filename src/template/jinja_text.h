/* Text helpers for the Jinja interpreter: UTF-8 walking, Python's notion of whitespace and
 * character classes (str.isspace, isalnum, isprintable, ...), simple Unicode case mapping via
 * utf8proc, and a growable byte buffer with a size cap. Strings are UTF-8 byte ranges with an
 * explicit length (not NUL-terminated); Python indexes by code point, so helpers convert.
 * Invalid UTF-8 never crashes: a bad byte reads as one code point of that byte value. */
#ifndef PL_MODEL_JINJA_TEXT_H
#define PL_MODEL_JINJA_TEXT_H
#include <stddef.h>
#include <stdint.h>

/* Decode the code point at s[i] (i < n); returns the index after it. */
size_t pl_utf8_next(const char *s, size_t n, size_t i, uint32_t *cp);
/* Index of the start of the code point before s[i] (i > 0). */
size_t pl_utf8_prev(const char *s, size_t i);
size_t pl_utf8_encode(uint32_t cp, char out[4]);
size_t pl_utf8_count(const char *s, size_t n);
/* Byte offset of code point number `k` (clamped to n). */
size_t pl_utf8_offset(const char *s, size_t n, size_t k);

int pl_py_isspace(uint32_t cp);
int pl_py_isalpha(uint32_t cp);
int pl_py_isdigit(uint32_t cp);
int pl_py_isalnum(uint32_t cp);
int pl_py_isprintable(uint32_t cp);
int pl_py_islower(uint32_t cp); /* lowercase letter (cased) */
int pl_py_isupper(uint32_t cp);
int pl_py_iscased(uint32_t cp);
uint32_t pl_py_upper(uint32_t cp);
uint32_t pl_py_lower(uint32_t cp);
uint32_t pl_py_title(uint32_t cp);

/* Growable buffer. `limit` (0 = none) caps its size: a write past it fails with PL_ETEMPLATE. */
typedef struct pl_jbuf {
  char *p;
  size_t n, cap, limit;
  int over_rc; /* status when a put would pass limit: PL_ETEMPLATE (pl_jbuf_init) */
} pl_jbuf;

void pl_jbuf_init(pl_jbuf *b, size_t limit);
int pl_jbuf_put(pl_jbuf *b, const char *s, size_t n);
int pl_jbuf_putc(pl_jbuf *b, char c);
int pl_jbuf_puts(pl_jbuf *b, const char *s);
int pl_jbuf_put_cp(pl_jbuf *b, uint32_t cp);
int pl_jbuf_printf(pl_jbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void pl_jbuf_free(pl_jbuf *b);
#endif
