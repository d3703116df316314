/* Thread pool: every job runs fn exactly once per ith in [0, nth) with the right nth, the
 * call returns only after all shares finished (their writes are visible), back-to-back tiny
 * jobs (the spin path) and jobs separated by sleeps (the condvar path) both work, NULL pool
 * runs inline, bad sizes and allocation failures are reported without leaks. */
#include <stdatomic.h>
#include <string.h>
#include <time.h>

#include "../check.h"
#include "util/alloc.h"
#include "util/threadpool.h"

typedef struct {
  int nth_seen[64];
  int hits[64];
  _Atomic int calls;
  long job;
  long stamp[64]; /* written by each share; read by the caller after run returns */
  const double *in;
  double part[64];
  long n;
} ctx_t;

static void task(void *p, int ith, int nth) {
  ctx_t *c = p;
  c->nth_seen[ith] = nth;
  c->hits[ith]++;
  c->stamp[ith] = c->job;
  atomic_fetch_add(&c->calls, 1);
  long lo = c->n * ith / nth, hi = c->n * (ith + 1) / nth;
  double s = 0;
  for (long i = lo; i < hi; i++)
    s += c->in[i];
  c->part[ith] = s;
}

static void nap_us(long us) {
  struct timespec ts = {0, us * 1000};
  nanosleep(&ts, NULL);
}

int main(void) {
  double *in = pl_malloc(sizeof(double) * 100003);
  for (long i = 0; i < 100003; i++)
    in[i] = (double)(i % 1000) * 0.5;
  double total = 0;
  for (long i = 0; i < 100003; i++)
    total += in[i];

  for (int nt = 1; nt <= 6; nt++) {
    pl_threadpool *tp;
    CHECK_EQ_INT(pl_threadpool_create(nt, &tp), 0);
    CHECK_EQ_INT(pl_threadpool_size(tp), nt);
    ctx_t c;
    memset(&c, 0, sizeof c);
    c.in = in;
    int ok = 1;
    const long njobs = nt <= 2 ? 20000 : 4000; /* more threads than cores on small boxes */
    for (long job = 1; job <= njobs && ok; job++) {
      c.job = job;
      c.n = job % 7 == 0 ? 100003 : job % 50; /* mostly tiny jobs, some real work */
      atomic_store(&c.calls, 0);
      if (job % 1000 == 0)
        nap_us(3000); /* let the workers fall asleep on the condvar */
      pl_threadpool_run(tp, task, &c);
      int calls = atomic_load(&c.calls);
      double s = 0;
      for (int i = 0; i < nt; i++) {
        if (c.stamp[i] != job || c.nth_seen[i] != nt)
          ok = 0;
        s += c.part[i];
      }
      if (calls != nt)
        ok = 0;
      if (c.n == 100003 && s != total) /* same association for a fixed split: exact */
        ok = (fabs(s - total) <= 1e-9 * total) && ok;
    }
    CHECK(ok, "threads=%d: a job missed a share, ran one twice, or returned early", nt);
    for (int i = 0; i < nt; i++)
      CHECK_EQ_INT(c.hits[i], njobs);
    pl_threadpool_destroy(tp);
  }
  /* NULL pool: inline, one share */
  ctx_t c;
  memset(&c, 0, sizeof c);
  c.in = in;
  c.n = 10;
  c.job = 5;
  pl_threadpool_run(NULL, task, &c);
  CHECK(c.hits[0] == 1 && c.nth_seen[0] == 1 && c.stamp[0] == 5, "NULL pool");
  CHECK_EQ_INT(pl_threadpool_size(NULL), 1);
  pl_threadpool_destroy(NULL);
  /* errors */
  pl_threadpool *tp = (pl_threadpool *)&c;
  CHECK_EQ_INT(pl_threadpool_create(0, &tp), -1 /* PL_EINVAL */);
  CHECK(tp == NULL, "out set to NULL on error");
  pl_free(in);
  for (long k = 0; k < 6; k++) { /* fail the k-th allocation of create(4) */
    pl_alloc_fail_after(k);
    int rc = pl_threadpool_create(4, &tp);
    pl_alloc_fail_after(-1);
    if (rc == 0)
      pl_threadpool_destroy(tp);
    else
      CHECK_EQ_INT(rc, -2 /* PL_ENOMEM */);
    CHECK(pl_alloc_live_bytes() == 0, "leak after failed create (k=%ld)", k);
  }
  /* many create/destroy cycles with immediate jobs */
  for (int k = 0; k < 200; k++) {
    if (pl_threadpool_create(1 + k % 4, &tp) != 0)
      break;
    memset(&c, 0, sizeof c);
    c.in = NULL;
    c.n = 0;
    pl_threadpool_run(tp, task, &c);
    CHECK_EQ_INT(atomic_load(&c.calls), 1 + k % 4);
    pl_threadpool_destroy(tp);
  }
  return check_summary("test_threadpool");
}
