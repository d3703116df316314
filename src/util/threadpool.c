/* Persistent worker pool. A job is published by bumping `gen` (release); workers watch `gen`,
 * spinning for a short while after each job (the next decode matmul usually follows within
 * microseconds) and then sleeping on `cv`. Completion is an atomic count of finished workers
 * that the caller (worker 0) spins on; the caller always does its own share first.
 * Invariants: only the driving thread writes fn/ctx/gen; fn/ctx are written before gen is
 * published and read after gen is observed (acquire), so workers never see a stale job. */
#include "util/threadpool.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>

#include "util/alloc.h"
#include "util/error.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define PL_CPU_RELAX() _mm_pause()
#elif defined(__aarch64__)
#define PL_CPU_RELAX() __asm__ __volatile__("yield")
#else
#define PL_CPU_RELAX() ((void)0)
#endif

/* How long a worker spins before sleeping: ~100 us of pause loops. Long enough to bridge the
 * gap between two matmuls of one decode step, short enough not to starve OpenBLAS threads. */
#define PL_TP_SPIN 20000

struct pl_threadpool {
  int n;                     /* threads including the caller */
  pthread_t *threads;        /* [n-1] */
  pl_task_fn fn;             /* current job (valid while a job runs) */
  void *ctx;
  _Atomic uint64_t gen;      /* job generation; bumped once per run */
  _Atomic int done;          /* workers (excluding caller) finished with the current gen */
  _Atomic int n_sleeping;    /* workers blocked (or about to block) on cv */
  _Atomic int stop;
  pthread_mutex_t mu;
  pthread_cond_t cv;
};

typedef struct {
  pl_threadpool *tp;
  int ith;
} worker_arg;

static void *worker_main(void *p) {
  worker_arg wa = *(worker_arg *)p;
  pl_free(p);
  pl_threadpool *tp = wa.tp;
  uint64_t seen = 0;
  for (;;) {
    uint64_t g;
    int spins = 0;
    while ((g = atomic_load_explicit(&tp->gen, memory_order_acquire)) == seen &&
           !atomic_load_explicit(&tp->stop, memory_order_relaxed)) {
      if (++spins < PL_TP_SPIN) {
        PL_CPU_RELAX();
        /* Oversubscribed or busy machine: let whoever waits for a core run. */
        if ((spins & 1023) == 0)
          sched_yield();
        continue;
      }
      /* Sleep. Re-check gen under the mutex: the publisher bumps gen and then takes the
       * mutex to broadcast, so either we see the new gen here or we get the signal. */
      pthread_mutex_lock(&tp->mu);
      atomic_fetch_add(&tp->n_sleeping, 1);
      while (atomic_load(&tp->gen) == seen && !atomic_load(&tp->stop))
        pthread_cond_wait(&tp->cv, &tp->mu);
      atomic_fetch_sub(&tp->n_sleeping, 1);
      pthread_mutex_unlock(&tp->mu);
      spins = 0;
    }
    if (atomic_load(&tp->stop))
      return NULL;
    seen = g;
    tp->fn(tp->ctx, wa.ith, tp->n);
    atomic_fetch_add_explicit(&tp->done, 1, memory_order_release);
  }
}

int pl_threadpool_create(int n_threads, pl_threadpool **out) {
  *out = NULL;
  if (n_threads < 1)
    return pl_fail(PL_EINVAL, "threadpool: n_threads %d < 1", n_threads);
  pl_threadpool *tp = pl_calloc(1, sizeof *tp);
  if (!tp)
    return pl_fail(PL_ENOMEM, "threadpool: out of memory");
  tp->n = n_threads;
  atomic_init(&tp->gen, 0);
  atomic_init(&tp->done, 0);
  atomic_init(&tp->n_sleeping, 0);
  atomic_init(&tp->stop, 0);
  if (pthread_mutex_init(&tp->mu, NULL) != 0) {
    pl_free(tp);
    return pl_fail(PL_EINTERNAL, "threadpool: mutex init failed");
  }
  if (pthread_cond_init(&tp->cv, NULL) != 0) {
    pthread_mutex_destroy(&tp->mu);
    pl_free(tp);
    return pl_fail(PL_EINTERNAL, "threadpool: condvar init failed");
  }
  if (n_threads > 1) {
    tp->threads = pl_calloc((size_t)n_threads - 1, sizeof(pthread_t));
    if (!tp->threads) {
      tp->n = 1;
      pl_threadpool_destroy(tp);
      return pl_fail(PL_ENOMEM, "threadpool: out of memory");
    }
  }
  for (int i = 1; i < n_threads; i++) {
    worker_arg *wa = pl_malloc(sizeof *wa);
    int rc = wa ? 0 : -1;
    if (wa) {
      wa->tp = tp;
      wa->ith = i;
      rc = pthread_create(&tp->threads[i - 1], NULL, worker_main, wa);
      if (rc != 0)
        pl_free(wa);
    }
    if (rc != 0) {
      tp->n = i; /* destroy joins the i-1 started workers */
      pl_threadpool_destroy(tp);
      return wa ? pl_fail(PL_EINTERNAL, "threadpool: pthread_create failed")
                : pl_fail(PL_ENOMEM, "threadpool: out of memory");
    }
  }
  *out = tp;
  return PL_OK;
}

void pl_threadpool_destroy(pl_threadpool *tp) {
  if (!tp)
    return;
  pthread_mutex_lock(&tp->mu);
  atomic_store(&tp->stop, 1);
  pthread_cond_broadcast(&tp->cv);
  pthread_mutex_unlock(&tp->mu);
  for (int i = 1; i < tp->n; i++)
    pthread_join(tp->threads[i - 1], NULL);
  pthread_cond_destroy(&tp->cv);
  pthread_mutex_destroy(&tp->mu);
  pl_free(tp->threads);
  pl_free(tp);
}

int pl_threadpool_size(const pl_threadpool *tp) { return tp ? tp->n : 1; }

void pl_threadpool_run(pl_threadpool *tp, pl_task_fn fn, void *ctx) {
  if (!tp || tp->n == 1) {
    fn(ctx, 0, 1);
    return;
  }
  tp->fn = fn;
  tp->ctx = ctx;
  atomic_store_explicit(&tp->done, 0, memory_order_relaxed);
  /* seq_cst on both sides (gen bump here, n_sleeping++ then gen re-read in the worker):
   * either we see the sleeper, or the sleeper sees the new gen. Only pay for the mutex when
   * someone may be asleep. */
  atomic_fetch_add(&tp->gen, 1);
  if (atomic_load(&tp->n_sleeping) > 0) {
    pthread_mutex_lock(&tp->mu);
    pthread_cond_broadcast(&tp->cv);
    pthread_mutex_unlock(&tp->mu);
  }
  fn(ctx, 0, tp->n);
  /* Wait for the other shares: spin first (they usually finish within microseconds), then
   * yield so a worker that lost its core (more threads than cores, busy machine) can run. */
  for (int spins = 0; atomic_load_explicit(&tp->done, memory_order_acquire) < tp->n - 1; spins++) {
    if (spins < 4096)
      PL_CPU_RELAX();
    else
      sched_yield();
  }
}
