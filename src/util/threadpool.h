/* Persistent worker threads for the compute kernels. One job runs at a time: the caller's
 * thread is worker 0 and the call returns when every worker finished its share. Workers spin
 * briefly between jobs (decode steps are short) and then sleep on a condition variable.
 * Not thread-safe: one thread drives a pool. */
#ifndef PL_UTIL_THREADPOOL_H
#define PL_UTIL_THREADPOOL_H

typedef struct pl_threadpool pl_threadpool;
typedef void (*pl_task_fn)(void *ctx, int ith, int nth);

/* n_threads >= 1 (1 = no extra threads). Returns PL_OK or PL_ENOMEM/PL_EINTERNAL. */
int pl_threadpool_create(int n_threads, pl_threadpool **out);
void pl_threadpool_destroy(pl_threadpool *tp); /* NULL ok; joins the workers */
int pl_threadpool_size(const pl_threadpool *tp); /* 1 for NULL */
/* Run fn(ctx, ith, nth) for ith in [0, nth) in parallel; tp NULL runs fn(ctx, 0, 1). */
void pl_threadpool_run(pl_threadpool *tp, pl_task_fn fn, void *ctx);
#endif
