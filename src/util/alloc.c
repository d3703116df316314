/* Counting, failure-injecting allocator. Layout of a block:
 *   [64-byte header][user bytes ...]   (user pointer is 64-byte aligned)
 * The header holds the size, and while tracing is on (pl_alloc_trace) the block's allocation
 * index, its caller and its links in the list of traced blocks. */
#include "util/alloc.h"

#include <dlfcn.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <pthread.h>
#ifdef __linux__
#include <sys/mman.h>
#endif
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define PL_HDR 64

typedef struct hdr {
  size_t size;
  long index;                /* allocation index (pl_alloc_count at the time); traced only */
  void *caller;              /* traced only */
  struct hdr *prev, *next;   /* the traced list; traced = 1 when linked */
  int traced;
} hdr;
_Static_assert(sizeof(hdr) <= PL_HDR, "the header fits its 64 bytes");

static atomic_size_t live_bytes, live_count, peak_bytes;
static atomic_long n_allocs;
static atomic_long fail_at = -1; /* allocation index that fails, -1 = never */
static atomic_int tracing;
static pthread_mutex_t trace_mu = PTHREAD_MUTEX_INITIALIZER;
static hdr *traced; /* newest first */

static _Thread_local long thread_failures;

/* The index this allocation takes, and whether it is the one made to fail. */
static int should_fail(long *index) {
  long idx = atomic_fetch_add(&n_allocs, 1);
  long f = atomic_load(&fail_at);
  if (index)
    *index = idx;
  if (f >= 0 && idx == f) {
    thread_failures++;
    return 1;
  }
  return 0;
}

static void account(long delta_bytes, long delta_count) {
  size_t now = atomic_fetch_add(&live_bytes, (size_t)delta_bytes) + (size_t)delta_bytes;
  atomic_fetch_add(&live_count, (size_t)delta_count);
  size_t pk = atomic_load(&peak_bytes);
  while (now > pk && !atomic_compare_exchange_weak(&peak_bytes, &pk, now)) {
  }
}

static void *alloc_block(size_t n, void *caller) {
  long index;
  if (n > SIZE_MAX - PL_HDR || should_fail(&index))
    return NULL;
  void *p = NULL;
  if (posix_memalign(&p, PL_HDR, n + PL_HDR) != 0) {
    thread_failures++;
    return NULL;
  }
  hdr *h = p;
  memset(h, 0, sizeof *h);
  h->size = n;
  if (atomic_load(&tracing)) {
    h->index = index;
    h->caller = caller;
    pthread_mutex_lock(&trace_mu);
    h->next = traced;
    if (traced)
      traced->prev = h;
    traced = h;
    h->traced = 1;
    pthread_mutex_unlock(&trace_mu);
  }
  account((long)n, 1);
  return (char *)p + PL_HDR;
}

void *pl_malloc(size_t n) { return alloc_block(n, __builtin_return_address(0)); }

void *pl_calloc(size_t count, size_t size) {
  if (size && count > SIZE_MAX / size)
    return NULL;
  void *p = alloc_block(count * size, __builtin_return_address(0));
  if (p)
    memset(p, 0, count * size);
  return p;
}

void pl_free(void *p) {
  if (!p)
    return;
  hdr *h = (hdr *)((char *)p - PL_HDR);
  if (h->traced) {
    pthread_mutex_lock(&trace_mu);
    if (h->prev)
      h->prev->next = h->next;
    else
      traced = h->next;
    if (h->next)
      h->next->prev = h->prev;
    pthread_mutex_unlock(&trace_mu);
  }
  account(-(long)h->size, -1);
  free(h);
}

void *pl_realloc(void *p, size_t n) {
  if (!p)
    return pl_malloc(n);
  size_t old = ((const hdr *)((char *)p - PL_HDR))->size;
  void *q = alloc_block(n, __builtin_return_address(0));
  if (!q)
    return NULL;
  memcpy(q, p, old < n ? old : n);
  pl_free(p);
  return q;
}

char *pl_strndup(const char *s, size_t n) {
  char *d = alloc_block(n + 1, __builtin_return_address(0));
  if (!d)
    return NULL;
  memcpy(d, s, n);
  d[n] = 0;
  return d;
}

char *pl_strdup(const char *s) { return pl_strndup(s, strlen(s)); }

static _Thread_local int soft_depth;

void pl_alloc_soft_begin(void) { soft_depth++; }
void pl_alloc_soft_end(void) { soft_depth--; }

void *pl_malloc_raw(size_t n) {
  if (should_fail(NULL) && !soft_depth) /* counted either way */
    return NULL;
  void *p = malloc(n);
  if (!p)
    thread_failures++;
  return p;
}

void pl_free_raw(void *p) { free(p); }

long pl_alloc_thread_failures(void) { return thread_failures; }

size_t pl_alloc_live_bytes(void) { return atomic_load(&live_bytes); }
size_t pl_alloc_live_count(void) { return atomic_load(&live_count); }
size_t pl_alloc_peak_bytes(void) { return atomic_load(&peak_bytes); }
long pl_alloc_count(void) { return atomic_load(&n_allocs); }

void pl_alloc_fail_after(long n) {
  atomic_store(&fail_at, n < 0 ? -1 : atomic_load(&n_allocs) + n);
}

void pl_alloc_trace(int on) { atomic_store(&tracing, on != 0); }

void pl_alloc_trace_dump(FILE *f, long since) {
  pthread_mutex_lock(&trace_mu);
  for (const hdr *h = traced; h; h = h->next) {
    if (h->index < since)
      continue;
    Dl_info di;
    int known = dladdr(h->caller, &di) && di.dli_fname && di.dli_fbase;
    fprintf(f, "  live: %zu bytes, allocation %ld, called from %s+0x%lx\n", h->size, h->index,
            known ? di.dli_fname : "?",
            (unsigned long)((char *)h->caller - (known ? (char *)di.dli_fbase : (char *)0)));
  }
  pthread_mutex_unlock(&trace_mu);
}

void pl_alloc_advise_huge(void *p, size_t n) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  const uintptr_t huge = (uintptr_t)2 << 20;
  uintptr_t a = ((uintptr_t)p + huge - 1) & ~(huge - 1), b = ((uintptr_t)p + n) & ~(huge - 1);
  if (b > a)
    (void)madvise((void *)a, b - a, MADV_HUGEPAGE); /* a hint: failure changes nothing */
#else
  (void)p;
  (void)n;
#endif
}

void pl_alloc_trim(void) {
#ifdef __GLIBC__
  malloc_trim(0);
#endif
}
