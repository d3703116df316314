/* Small helpers the GPU kernel benchmarks share (bench_cuda_*.c). */
#ifndef PL_BENCH_BENCH_UTIL_H
#define PL_BENCH_BENCH_UTIL_H
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* "1,4,16" -> out[] = {1, 4, 16}; the count (at most max) */
static inline int bench_parse_list(const char *s, int *out, int max) {
  int n = 0;
  while (*s && n < max) {
    out[n++] = atoi(s);
    if (!(s = strchr(s, ',')))
      break;
    s++;
  }
  return n;
}

/* qsort order for the medians of timings */
static inline int bench_cmp_float(const void *a, const void *b) {
  float x = *(const float *)a, y = *(const float *)b;
  return (x > y) - (x < y);
}

/* xorshift: reproducible inputs */
static inline uint32_t bench_next_u32(uint64_t *rng) {
  *rng ^= *rng << 13;
  *rng ^= *rng >> 7;
  *rng ^= *rng << 17;
  return (uint32_t)(*rng >> 11);
}
#endif
