/* Minimal test harness (no dependencies, so the kernel tests also build for aarch64 under
 * qemu). CHECK records a failure and continues; a test binary ends with check_summary(),
 * which prints "N passed, N failed" and returns the exit status. */
#ifndef PL_TEST_CHECK_H
#define PL_TEST_CHECK_H
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

static int check_pass_, check_fail_;

#define CHECK(cond, ...)                                                         \
  do {                                                                           \
    if (cond) {                                                                  \
      check_pass_++;                                                             \
    } else {                                                                     \
      check_fail_++;                                                             \
      fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);            \
      fprintf(stderr, "" __VA_ARGS__);                                           \
      fputc('\n', stderr);                                                       \
    }                                                                            \
  } while (0)

#define CHECK_EQ_INT(a, b) CHECK((long long)(a) == (long long)(b), "%lld != %lld", (long long)(a), (long long)(b))
#define CHECK_NEAR(a, b, tol) CHECK(fabs((double)(a) - (double)(b)) <= (tol), "%.9g vs %.9g (tol %g)", (double)(a), (double)(b), (double)(tol))

static inline int check_summary(const char *name) {
  printf("%s: %d passed, %d failed\n", name, check_pass_, check_fail_);
  return check_fail_ ? 1 : 0;
}

/* Path of a file in ../shared (tests are built with PL_SHARED_DIR). */
static inline const char *shared_path(const char *rel) {
  static char buf[4][1024];
  static int i;
  const char *env = getenv("PL_SHARED_DIR");
#ifdef PL_SHARED_DIR
  const char *base = env ? env : PL_SHARED_DIR;
#else
  const char *base = env ? env : "../shared";
#endif
  i = (i + 1) & 3;
  snprintf(buf[i], sizeof buf[i], "%s/%s", base, rel);
  return buf[i];
}
#endif
