/* Bump arena for the Jinja interpreter. A parsed template keeps its AST in one arena; each render
 * gets its own arena for every value it creates, so values are shared freely (no refcounts) and
 * all of it is released at once when the render ends. Invariants: blocks are 16-byte aligned,
 * memory is never freed individually, and the total is capped (a template cannot eat the host:
 * over the cap an allocation returns NULL and the caller fails with PL_ETEMPLATE). */
#ifndef PL_MODEL_JINJA_ARENA_H
#define PL_MODEL_JINJA_ARENA_H
#include <stddef.h>

typedef struct pl_jarena_chunk pl_jarena_chunk;

typedef struct pl_jarena {
  pl_jarena_chunk *head; /* newest chunk first */
  size_t used;           /* bytes handed out, including chunk slack */
  unsigned long long seq; /* chunks made so far: a chunk's number tells it from older ones */
  size_t limit;          /* 0 = unlimited */
  int over_limit;        /* set when a request failed because of `limit` (not OOM) */
} pl_jarena;

void pl_jarena_init(pl_jarena *a, size_t limit);
void *pl_jarena_alloc(pl_jarena *a, size_t n);   /* uninitialised; NULL on failure */
void *pl_jarena_calloc(pl_jarena *a, size_t n);  /* zeroed */
char *pl_jarena_strndup(pl_jarena *a, const char *s, size_t n); /* NUL-terminated copy */
void pl_jarena_free(pl_jarena *a);               /* releases everything; arena reusable */

/* A point to come back to: pl_jarena_release frees every block handed out since the mark was
 * taken (marks nest: release the newest first). The caller must know that nothing older
 * points into those blocks; the renderer releases what one {{ output }} made once it is
 * written, so a long chat's temporaries are held one message at a time, not all at once. */
typedef struct pl_jarena_mark {
  pl_jarena_chunk *head;
  size_t head_used, used;
  unsigned long long seq;
} pl_jarena_mark;
pl_jarena_mark pl_jarena_mark_get(const pl_jarena *a);
void pl_jarena_release(pl_jarena *a, const pl_jarena_mark *m);
#endif
