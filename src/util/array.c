/* pl_array_grow (array.h). */
#include "util/array.h"

#include <limits.h>
#include <string.h>

#include "util/alloc.h"
#include "util/error.h"

/* The capacity type's largest value is max_cap. */
static int grow(void *p, size_t *cap, size_t need, size_t elem, size_t first, size_t max_cap) {
  if (need <= *cap)
    return 0;
  size_t c = *cap ? *cap : first ? first : 1;
  while (c < need)
    c = c > max_cap / 2 ? need : c * 2;
  if (c > max_cap || (elem && c > SIZE_MAX / elem))
    return PL_ENOMEM;
  void *old, *q; /* p is some T **: read and write the pointer through memcpy, not a void ** */
  memcpy(&old, p, sizeof old);
  q = pl_realloc(old, c * elem);
  if (!q)
    return PL_ENOMEM;
  memcpy(p, &q, sizeof q);
  *cap = c;
  return 0;
}

int pl_array_grow_size(void *p, size_t *cap, size_t need, size_t elem, size_t first) {
  return grow(p, cap, need, elem, first, SIZE_MAX);
}

int pl_array_grow_int(void *p, int *cap, size_t need, size_t elem, size_t first) {
  size_t c = *cap > 0 ? (size_t)*cap : 0;
  int rc = grow(p, &c, need, elem, first, INT_MAX);
  if (!rc)
    *cap = (int)c;
  return rc;
}

int pl_array_grow_i64(void *p, int64_t *cap, size_t need, size_t elem, size_t first) {
  size_t c = *cap > 0 ? (size_t)*cap : 0;
  int rc = grow(p, &c, need, elem, first, INT64_MAX < SIZE_MAX ? (size_t)INT64_MAX : SIZE_MAX);
  if (!rc)
    *cap = (int64_t)c;
  return rc;
}
