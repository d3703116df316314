/* Growable byte buffer for building HTTP bodies and SSE frames. Invariant: data is always
 * NUL-terminated when cap > 0 (len excludes the NUL), so it can be handed to C string APIs.
 * Memory comes from pl_malloc; a failed append leaves the buffer unchanged and returns
 * PL_ENOMEM. Not thread-safe. */
#ifndef PL_SERVER_STRBUF_H
#define PL_SERVER_STRBUF_H
#include <stddef.h>

typedef struct pl_strbuf {
  char *data; /* NULL until the first append */
  size_t len; /* bytes used (excluding the terminating NUL) */
  size_t cap; /* bytes allocated */
} pl_strbuf;

int pl_strbuf_append(pl_strbuf *b, const char *s, size_t n);
int pl_strbuf_puts(pl_strbuf *b, const char *s);
int pl_strbuf_printf(pl_strbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Drop the first n bytes (consumed output) and keep the rest. */
void pl_strbuf_consume(pl_strbuf *b, size_t n);
/* Take ownership of the bytes (pl_free them); the buffer becomes empty. Never NULL on success:
 * an empty buffer yields "". Returns NULL only on allocation failure. */
char *pl_strbuf_take(pl_strbuf *b);
void pl_strbuf_free(pl_strbuf *b);

/* Length of the valid UTF-8 sequence at s (1..4; n >= 1 bytes there), or 0 when it is
 * invalid or cut short (overlong, surrogate, > U+10FFFF). */
int pl_utf8_seq(const unsigned char *s, size_t n);
#endif
