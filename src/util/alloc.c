/* Counting, failure-injecting allocator. Layout of a block:
 *   [64-byte header: size][user bytes ...]   (user pointer is 64-byte aligned) */
#include "util/alloc.h"

#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define PL_HDR 64

static atomic_size_t live_bytes, live_count, peak_bytes;
static atomic_long n_allocs;
static atomic_long fail_at = -1; /* allocation index that fails, -1 = never */

static _Thread_local long thread_failures;

static int should_fail(void) {
  long idx = atomic_fetch_add(&n_allocs, 1);
  long f = atomic_load(&fail_at);
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

void *pl_malloc(size_t n) {
  if (n > SIZE_MAX - PL_HDR || should_fail())
    return NULL;
  void *p = NULL;
  if (posix_memalign(&p, PL_HDR, n + PL_HDR) != 0) {
    thread_failures++;
    return NULL;
  }
  *(size_t *)p = n;
  account((long)n, 1);
  return (char *)p + PL_HDR;
}

void *pl_calloc(size_t count, size_t size) {
  if (size && count > SIZE_MAX / size)
    return NULL;
  void *p = pl_malloc(count * size);
  if (p)
    memset(p, 0, count * size);
  return p;
}

void pl_free(void *p) {
  if (!p)
    return;
  char *base = (char *)p - PL_HDR;
  size_t n = *(size_t *)base;
  account(-(long)n, -1);
  free(base);
}

void *pl_realloc(void *p, size_t n) {
  if (!p)
    return pl_malloc(n);
  size_t old = *(size_t *)((char *)p - PL_HDR);
  void *q = pl_malloc(n);
  if (!q)
    return NULL;
  memcpy(q, p, old < n ? old : n);
  pl_free(p);
  return q;
}

char *pl_strndup(const char *s, size_t n) {
  char *d = pl_malloc(n + 1);
  if (!d)
    return NULL;
  memcpy(d, s, n);
  d[n] = 0;
  return d;
}

char *pl_strdup(const char *s) { return pl_strndup(s, strlen(s)); }

void *pl_malloc_raw(size_t n) {
  if (should_fail())
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
