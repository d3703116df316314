/* Growable arrays: the one "double the capacity until it fits" step, instead of a hand-written
 * realloc block beside every array. Memory comes from pl_realloc, so failure injection
 * (util/alloc.h) reaches every caller's out-of-memory path.
 *
 *   if (pl_array_grow(&v->items, &v->cap, v->n + 1, sizeof *v->items, 16))
 *     return pl_fail(PL_ENOMEM, "...");   // the caller words the error
 *
 * When need > *cap, the capacity becomes `first` (when it was 0) or *cap, doubled until it holds
 * `need` elements of `elem` bytes; the array is reallocated to that. Returns 0, or PL_ENOMEM
 * with nothing changed (the old array stays valid) when the allocation fails or the capacity
 * would overflow its type or size_t. Records no error message. `p` is the address of the
 * array pointer (any T **); `cap` may point to an int, int64_t or size_t. */
#ifndef PL_UTIL_ARRAY_H
#define PL_UTIL_ARRAY_H
#include <stddef.h>
#include <stdint.h>

int pl_array_grow_size(void *p, size_t *cap, size_t need, size_t elem, size_t first);
int pl_array_grow_int(void *p, int *cap, size_t need, size_t elem, size_t first);
int pl_array_grow_i64(void *p, int64_t *cap, size_t need, size_t elem, size_t first);

#define pl_array_grow(p, cap, need, elem, first)                                          \
  _Generic((cap), size_t *: pl_array_grow_size, int *: pl_array_grow_int,                  \
           int64_t *: pl_array_grow_i64)((p), (cap), (need), (elem), (first))
#endif
