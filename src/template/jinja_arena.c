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
  unsigned long long seq; /* the arena's seq when made */
  /* data follows, 16-byte aligned (the header is 48 bytes on LP64, pl_malloc aligns to 64) */
  _Alignas(16) unsigned char data[];
};

void pl_jarena_init(pl_jarena *a, size_t limit) {
  a->head = NULL;
  a->used = 0;
  a->seq = 0;
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
  c->seq = ++a->seq;
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

pl_jarena_mark pl_jarena_mark_get(const pl_jarena *a) {
  return (pl_jarena_mark){.head = a->head, .head_used = a->head ? a->head->used : 0,
                          .used = a->used, .seq = a->seq};
}

/* Chunks made after the mark are either in front of the mark's head (newer heads, and big
 * blocks linked behind them) or big blocks linked right behind the mark's head. */
void pl_jarena_release(pl_jarena *a, const pl_jarena_mark *m) {
  pl_jarena_chunk **pp = &a->head;
  while (*pp && *pp != m->head) {
    pl_jarena_chunk *c = *pp;
    *pp = c->next;
    pl_free(c);
  }
  if (*pp) {
    (*pp)->used = m->head_used;
    pp = &(*pp)->next;
    while (*pp && (*pp)->seq > m->seq) {
      pl_jarena_chunk *c = *pp;
      *pp = c->next;
      pl_free(c);
    }
  }
  a->used = m->used;
}
