/* util/array.h: growth by doubling from `first`, every capacity type, overflow refused, and an
 * injected allocation failure leaving the array as it was. */
#include <limits.h>
#include <stdint.h>
#include <string.h>

#include "check.h"
#include "util/alloc.h"
#include "util/array.h"
#include "util/error.h"

int main(void) {
  size_t live = pl_alloc_live_bytes();
  int32_t *a = NULL;
  int cap = 0;
  CHECK_EQ_INT(pl_array_grow(&a, &cap, 1, sizeof *a, 16), 0);
  CHECK_EQ_INT(cap, 16);
  CHECK(a != NULL);
  for (int i = 0; i < 16; i++)
    a[i] = i;
  CHECK_EQ_INT(pl_array_grow(&a, &cap, 16, sizeof *a, 16), 0); /* fits: no change */
  CHECK_EQ_INT(cap, 16);
  CHECK_EQ_INT(pl_array_grow(&a, &cap, 17, sizeof *a, 16), 0);
  CHECK_EQ_INT(cap, 32);
  CHECK_EQ_INT(pl_array_grow(&a, &cap, 100, sizeof *a, 16), 0); /* doubles until it fits */
  CHECK_EQ_INT(cap, 128);
  int same = 1;
  for (int i = 0; i < 16; i++)
    same &= a[i] == i;
  CHECK(same, "contents kept");

  /* an injected failure: PL_ENOMEM, the array and its capacity unchanged */
  int32_t *before = a;
  pl_alloc_fail_after(0);
  CHECK_EQ_INT(pl_array_grow(&a, &cap, 129, sizeof *a, 16), PL_ENOMEM);
  pl_alloc_fail_after(-1);
  CHECK(a == before && cap == 128);
  CHECK(a[15] == 15);

  /* the capacity's type bounds it: an int capacity never passes INT_MAX */
  CHECK_EQ_INT(pl_array_grow(&a, &cap, (size_t)INT_MAX + 1, 1, 16), PL_ENOMEM);
  CHECK_EQ_INT(cap, 128);
  /* elements * size past SIZE_MAX */
  size_t scap = 0;
  char *s = NULL;
  CHECK_EQ_INT(pl_array_grow(&s, &scap, SIZE_MAX / 8 + 1, 16, 1), PL_ENOMEM);
  CHECK(s == NULL && scap == 0);
  CHECK_EQ_INT(pl_array_grow(&s, &scap, 300, 1, 256), 0);
  CHECK_EQ_INT(scap, 512);
  int64_t lcap = 0;
  double *d = NULL;
  CHECK_EQ_INT(pl_array_grow(&d, &lcap, 3, sizeof *d, 0), 0); /* first 0: from 1 */
  CHECK_EQ_INT(lcap, 4);
  pl_free(a);
  pl_free(s);
  pl_free(d);
  CHECK_EQ_INT(pl_alloc_live_bytes(), live);
  return check_summary("test_array");
}
