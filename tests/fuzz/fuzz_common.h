/* Shared helpers of the libFuzzer targets (built only with -DPL_FUZZ=ON and clang; see
 * scripts/fuzz.sh). Loaders that take a path get the input through a file in a private
 * temporary directory. */
#ifndef PL_FUZZ_COMMON_H
#define PL_FUZZ_COMMON_H
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util/alloc.h"
#include "util/log.h"

/* A private directory for this process's files (created once). */
static inline const char *fz_dir(void) {
  static char dir[64];
  if (!dir[0]) {
    snprintf(dir, sizeof dir, "/tmp/plfuzz.XXXXXX");
    if (!mkdtemp(dir))
      abort();
  }
  return dir;
}

/* Write b[0..n) to fz_dir()/name; returns the path (static buffer per call site caller). */
static inline void fz_write(const char *name, const void *b, size_t n, char *path, size_t cap) {
  snprintf(path, cap, "%s/%s", fz_dir(), name);
  FILE *f = fopen(path, "wb");
  if (!f)
    abort();
  if (n && fwrite(b, 1, n, f) != n)
    abort();
  fclose(f);
}

/* Every run must give back what it took from the allocator. */
#define FZ_LEAK_CHECK(before)                                                                   \
  do {                                                                                          \
    if (pl_alloc_live_bytes() != (before)) {                                                    \
      fprintf(stderr, "leak: %zu bytes live after the input (were %zu)\n",                      \
              pl_alloc_live_bytes(), (size_t)(before));                                         \
      abort();                                                                                  \
    }                                                                                           \
  } while (0)
#endif
