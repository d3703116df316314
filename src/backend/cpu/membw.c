#include "backend/cpu/membw.h"

#include <time.h>

#include "backend/cpu/kern/kern.h"
#include "util/alloc.h"

typedef struct {
  const float *buf;
  size_t n;
  float out[256];
} bw_job;

static void bw_task(void *p, int ith, int nth) {
  bw_job *j = p;
  size_t per = j->n / (size_t)nth;
  j->out[ith & 255] = pl_vec_max_f32((int)per, j->buf + per * (size_t)ith);
}

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

double pl_cpu_read_bandwidth(pl_threadpool *tp, size_t bytes) {
  size_t n = (bytes ? bytes : (size_t)512 << 20) / sizeof(float);
  float *buf = pl_malloc(n * sizeof(float));
  if (!buf)
    return 0;
  for (size_t i = 0; i < n; i++)
    buf[i] = (float)(i & 1023);
  bw_job j = {buf, n, {0}};
  pl_threadpool_run(tp, bw_task, &j); /* warm up */
  double best = 1e30;
  for (int it = 0; it < 5; it++) {
    double t0 = now();
    pl_threadpool_run(tp, bw_task, &j);
    double t = now() - t0;
    best = t < best ? t : best;
  }
  pl_free(buf);
  return (double)n * sizeof(float) / best / 1e9;
}
