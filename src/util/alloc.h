/* The one host allocator wrapper. Every heap allocation of the library goes through here so
 * that tests can (1) see live bytes return to zero and (2) inject a failure at the N-th
 * allocation to prove every failure path is handled. All blocks are 64-byte aligned (SIMD and
 * cache lines). Thread-safe (atomic counters). */
#ifndef PL_UTIL_ALLOC_H
#define PL_UTIL_ALLOC_H
#include <stddef.h>
#include <stdio.h>

void *pl_malloc(size_t n);                 /* NULL on failure (never aborts) */
void *pl_calloc(size_t count, size_t size); /* zeroed; NULL on overflow or failure */
void *pl_realloc(void *p, size_t n);       /* like realloc; on failure p stays valid */
void pl_free(void *p);                      /* NULL ok */
char *pl_strdup(const char *s);
char *pl_strndup(const char *s, size_t n);

size_t pl_alloc_live_bytes(void);  /* bytes currently allocated through the wrapper */
size_t pl_alloc_live_count(void);  /* blocks currently allocated */
size_t pl_alloc_peak_bytes(void);

/* Give the free pages inside the C allocator's heaps back to the system (glibc malloc_trim;
 * nothing elsewhere). Many small blocks freed together (a long request's JSON tree) otherwise
 * stay resident, unusable for the large blocks that come next. Costs a walk of the free
 * lists: call it after freeing megabytes, not per request. */
void pl_alloc_trim(void);

/* Ask the kernel to back the whole 2 MiB pages inside [p, p + n) with huge pages (Linux
 * madvise(MADV_HUGEPAGE), where transparent huge pages are in "madvise" mode, as on Debian;
 * nothing elsewhere). For a large block read at scattered offsets, such as the paged KV pool:
 * with 4 KiB pages every block of it the attention visits costs a TLB miss. Call it before
 * the pages are first touched. A hint: failure changes nothing. */
void pl_alloc_advise_huge(void *p, size_t n);

/* For third-party libraries that take an allocator (jansson): plain malloc/free, with no
 * header and no live accounting, but counted for failure injection and in
 * pl_alloc_thread_failures. Blocks are malloc's, so free() may free them too. */
void *pl_malloc_raw(size_t n);
void pl_free_raw(void *p);

/* Between begin and end (nestable, per thread), an injected failure in pl_malloc_raw is
 * counted (pl_alloc_thread_failures moves, so the caller voids its result) but the block is
 * still given. For jansson's parser, which cannot survive a failed allocation: jansson 2.14
 * ignores a failed growth of its lexer's text buffer (akheron/jansson#362), and when the lost
 * byte is a string's closing quote it reads and writes past two heap blocks. A real failure
 * there still returns NULL: that hazard is jansson's, until it checks. */
void pl_alloc_soft_begin(void);
void pl_alloc_soft_end(void);

/* Allocations that failed on the calling thread so far (real or injected): a library that
 * reports any error the same way (jansson's parser) is told apart from bad input by whether
 * this moved. */
long pl_alloc_thread_failures(void);

/* Test hook: make the allocation after the next `n` ones fail (n = 0: the very next one);
 * n < 0 disables injection. Returns how many allocations have happened so far. */
void pl_alloc_fail_after(long n);
long pl_alloc_count(void);

/* Test hook for finding leaks: while on, every block allocated remembers its allocation index
 * and its caller; pl_alloc_trace_dump prints the blocks still live that were allocated at
 * index `since` (a pl_alloc_count value) or later, with the caller as the binary's name and
 * an offset for `addr2line -f -e`. Costs a lock per allocation and free while on. */
void pl_alloc_trace(int on);
void pl_alloc_trace_dump(FILE *f, long since);
#endif
