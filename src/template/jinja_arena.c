/* Chunked bump allocator (see jinja_arena.h). Small requests share 64 KiB chunks; a request
 * larger than a quarter chunk gets a chunk of its own so big strings waste nothing. */
#include "template/jinja_arena.h"

#include <stdint.h>
#include <string.h>

#include "util/alloc.h"

#define PL_JARENA_CHUNK (64 * 1024)

struct pl_jarena_chunk {
  pl_jarena_chunk *next;
  size_t cap, used;
  /* data follows, 16-byte aligned (the header is 32 bytes on LP64, pl_malloc aligns to 64) */
  _Alignas(16) unsigned char data[];
};

void pl_jarena_init(pl_jarena *a, size_t limit) {
  a->head = NULL;
  a->used = 0;
  a->limit = limit;
  a->over_limit = 0;
}

static pl_jarena_chunk *new_chunk(pl_jarena *a, size_t cap) {
  if (a->limit && (cap > a->limit || a->used > a->limit - cap)) {
    a->over_limit = 1;
    return NULL;
  }
  pl_jarena_chunk *c = pl_malloc(sizeof *c + cap);
  if (!c)
    return NULL;
  c->cap = cap;
  c->used = 0;
  a->used += cap;
  return c;
}

void *pl_jarena_alloc(pl_jarena *a, size_t n) {
  if (n > SIZE_MAX / 2)
    return NULL;
  n = (n + 15) & ~(size_t)15;
  if (n == 0)
    n = 16;
  pl_jarena_chunk *h = a->head;
  if (h && h->cap - h->used >= n) {
    void *p = h->data + h->used;
    h->used += n;
    return p;
  }
  if (n > PL_JARENA_CHUNK / 4) {
    /* Big block: own chunk, linked behind the current head so the head keeps its free space. */
    pl_jarena_chunk *c = new_chunk(a, n);
    if (!c)
      return NULL;
    c->used = n;
    if (h) {
      c->next = h->next;
      h->next = c;
    } else {
      c->next = NULL;
      a->head = c;
    }
    return c->data;
  }
  pl_jarena_chunk *c = new_chunk(a, PL_JARENA_CHUNK);
  if (!c)
    return NULL;
  c->next = h;
  a->head = c;
  c->used = n;
  return c->data;
}

void *pl_jarena_calloc(pl_jarena *a, size_t n) {
  void *p = pl_jarena_alloc(a, n);
  if (p)
    memset(p, 0, n);
  return p;
}

char *pl_jarena_strndup(pl_jarena *a, const char *s, size_t n) {
  char *d = pl_jarena_alloc(a, n + 1);
  if (!d)
    return NULL;
  if (n)
    memcpy(d, s, n);
  d[n] = 0;
  return d;
}

void pl_jarena_free(pl_jarena *a) {
  pl_jarena_chunk *c = a->head;
  while (c) {
    pl_jarena_chunk *n = c->next;
    pl_free(c);
    c = n;
  }
  a->head = NULL;
  a->used = 0;
  a->over_limit = 0;
}
