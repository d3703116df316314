/* The waiter thread (see conn_wait.h). Armed records form a doubly linked list under one
 * mutex; each holds its job's fd (EPOLLIN) and its client socket (EPOLLRDHUP) in the waiter's
 * epoll set, both pointing at the record, until it fires. MHD_resume_connection is called
 * outside the mutex (MHD takes its own locks, and calls our callbacks under some of them), so
 * `resuming` counts resumes in flight and close waits for them: once it returns, no connection
 * is suspended and none is about to be resumed by us. */
#include "server/conn_wait.h"

#include <errno.h>
#include <microhttpd.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "util/alloc.h"
#include "util/error.h"
#include "util/log.h"

enum { BATCH = 64, TODO = 128, TICK_MS = 100 };

struct pl_conn_waiter {
  pthread_mutex_t mu;
  pthread_cond_t cv; /* resuming reached 0 */
  pthread_t thr;
  int ep, kick;      /* epoll set; eventfd that wakes the thread (stop, first deadline) */
  pl_conn_wait *head;
  int n_timed;       /* armed records with a deadline */
  int resuming;      /* resumes in flight outside the mutex */
  int closed, stop;
};

static double mono_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void drain(int fd) {
  uint64_t buf[8];
  while (read(fd, buf, sizeof buf) > 0) {
  }
}

static void kick(pl_conn_waiter *w) {
  uint64_t one = 1;
  ssize_t r = write(w->kick, &one, sizeof one);
  (void)r;
}

/* Take r out of the set (mutex held). */
static void unlink_rec(pl_conn_waiter *w, pl_conn_wait *r) {
  if (r->ev_fd >= 0)
    epoll_ctl(w->ep, EPOLL_CTL_DEL, r->ev_fd, NULL);
  if (r->sock_fd >= 0)
    epoll_ctl(w->ep, EPOLL_CTL_DEL, r->sock_fd, NULL);
  if (r->prev)
    r->prev->next = r->next;
  else
    w->head = r->next;
  if (r->next)
    r->next->prev = r->prev;
  r->prev = r->next = NULL;
  if (r->deadline > 0)
    w->n_timed--;
  r->armed = 0;
}

/* Disarm r and note its connection for resuming (mutex held). */
static void fire(pl_conn_waiter *w, pl_conn_wait *r, int reason, struct MHD_Connection **todo,
                 int *n) {
  if (!r->armed)
    return; /* both fds of one record in one batch: the first fired it */
  unlink_rec(w, r);
  if (reason == PL_CONN_WOKEN && r->ev_fd >= 0)
    drain(r->ev_fd); /* before the resume: a later signal stays visible */
  r->reason = reason;
  todo[(*n)++] = r->c;
}

/* Resume the noted connections outside the mutex (entered and left with it held). */
static void resume_all(pl_conn_waiter *w, struct MHD_Connection **todo, int n) {
  if (!n)
    return;
  w->resuming++;
  pthread_mutex_unlock(&w->mu);
  for (int i = 0; i < n; i++)
    MHD_resume_connection(todo[i]);
  pthread_mutex_lock(&w->mu);
  if (--w->resuming == 0)
    pthread_cond_broadcast(&w->cv);
}

static void *waiter_main(void *arg) {
  pl_conn_waiter *w = arg;
  struct epoll_event evs[BATCH];
  struct MHD_Connection *todo[TODO];
  double next_scan = 0;
  pthread_mutex_lock(&w->mu);
  while (!w->stop) {
    int timeout = w->n_timed ? TICK_MS : -1;
    pthread_mutex_unlock(&w->mu);
    int n = epoll_wait(w->ep, evs, BATCH, timeout);
    pthread_mutex_lock(&w->mu);
    int nt = 0;
    /* After close every record was fired: events still in hand are stale, and their records
     * may be gone already. */
    for (int i = 0; i < n; i++) {
      pl_conn_wait *r = evs[i].data.ptr;
      if (!r) {
        drain(w->kick);
        continue;
      }
      if (w->closed)
        continue;
      /* the job's fd reports EPOLLIN only; the socket was asked for EPOLLRDHUP only */
      int gone = (evs[i].events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) != 0;
      fire(w, r, gone ? PL_CONN_PEER_GONE : PL_CONN_WOKEN, todo, &nt);
    }
    double now = mono_s();
    if (w->n_timed && now >= next_scan && !w->closed) {
      next_scan = now + TICK_MS / 1000.0;
      for (pl_conn_wait *r = w->head, *next; r && nt < TODO; r = next) {
        next = r->next;
        if (r->deadline > 0 && now >= r->deadline)
          fire(w, r, PL_CONN_TIMEOUT, todo, &nt);
      }
      if (nt == TODO)
        next_scan = 0; /* more may be due: scan again next round */
    }
    resume_all(w, todo, nt);
  }
  pthread_mutex_unlock(&w->mu);
  return NULL;
}

int pl_conn_waiter_start(pl_conn_waiter **out) {
  *out = NULL;
  pl_conn_waiter *w = pl_calloc(1, sizeof *w);
  if (!w)
    return pl_fail(PL_ENOMEM, "out of memory");
  w->ep = epoll_create1(EPOLL_CLOEXEC);
  w->kick = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
  if (w->ep < 0 || w->kick < 0 || epoll_ctl(w->ep, EPOLL_CTL_ADD, w->kick, &ev) < 0) {
    int rc = pl_fail(PL_EIO, "cannot set up the connection waiter: %s", strerror(errno));
    if (w->ep >= 0)
      close(w->ep);
    if (w->kick >= 0)
      close(w->kick);
    pl_free(w);
    return rc;
  }
  pthread_mutex_init(&w->mu, NULL);
  pthread_cond_init(&w->cv, NULL);
  int rc = pthread_create(&w->thr, NULL, waiter_main, w);
  if (rc != 0) {
    pthread_cond_destroy(&w->cv);
    pthread_mutex_destroy(&w->mu);
    close(w->ep);
    close(w->kick);
    pl_free(w);
    return pl_fail(PL_EINTERNAL, "cannot start the connection waiter: %s", strerror(rc));
  }
  *out = w;
  return 0;
}

void pl_conn_waiter_suspend(pl_conn_waiter *w, pl_conn_wait *r, struct MHD_Connection *c,
                            int ev_fd, int sock_fd, int timeout_ms) {
  pthread_mutex_lock(&w->mu);
  int again = r->armed; /* MHD asked again before the suspension took: still waiting */
  pthread_mutex_unlock(&w->mu);
  if (again)
    return;
  MHD_suspend_connection(c);
  r->c = c;
  r->ev_fd = ev_fd;
  r->sock_fd = sock_fd;
  r->reason = PL_CONN_NONE;
  r->deadline = timeout_ms >= 0 ? mono_s() + timeout_ms / 1000.0 : 0;
  r->prev = r->next = NULL;
  pthread_mutex_lock(&w->mu);
  int ok = !w->closed;
  struct epoll_event ev = {.events = EPOLLIN, .data.ptr = r};
  if (ok && ev_fd >= 0)
    ok = epoll_ctl(w->ep, EPOLL_CTL_ADD, ev_fd, &ev) == 0;
  if (ok && sock_fd >= 0) {
    ev.events = EPOLLRDHUP; /* the peer's FIN; never set by pipelined request bytes */
    ok = epoll_ctl(w->ep, EPOLL_CTL_ADD, sock_fd, &ev) == 0;
    if (!ok && ev_fd >= 0)
      epoll_ctl(w->ep, EPOLL_CTL_DEL, ev_fd, NULL);
  }
  if (ok) {
    r->next = w->head;
    if (w->head)
      w->head->prev = r;
    w->head = r;
    r->armed = 1;
    if (r->deadline > 0 && w->n_timed++ == 0)
      kick(w); /* the thread may sleep without a timeout */
  } else {
    if (!w->closed)
      PL_WARN("cannot watch a waiting connection (%s); closing it", strerror(errno));
    r->reason = PL_CONN_CLOSED;
  }
  pthread_mutex_unlock(&w->mu);
  if (!ok)
    MHD_resume_connection(c); /* MHD calls us again at once; we drop the connection then */
}

void pl_conn_waiter_forget(pl_conn_waiter *w, pl_conn_wait *r) {
  if (!w || !r)
    return;
  pthread_mutex_lock(&w->mu); /* also: the thread is not looking at r (a batch holds mu) */
  if (r->armed)
    unlink_rec(w, r);
  pthread_mutex_unlock(&w->mu);
}

void pl_conn_waiter_close(pl_conn_waiter *w) {
  if (!w)
    return;
  struct MHD_Connection *todo[TODO];
  pthread_mutex_lock(&w->mu);
  w->closed = 1;
  while (w->head) {
    int n = 0;
    while (w->head && n < TODO)
      fire(w, w->head, PL_CONN_CLOSED, todo, &n);
    resume_all(w, todo, n);
  }
  while (w->resuming > 0) /* the thread's own resumes in flight */
    pthread_cond_wait(&w->cv, &w->mu);
  pthread_mutex_unlock(&w->mu);
}

void pl_conn_waiter_free(pl_conn_waiter *w) {
  if (!w)
    return;
  pl_conn_waiter_close(w);
  pthread_mutex_lock(&w->mu);
  w->stop = 1;
  pthread_mutex_unlock(&w->mu);
  kick(w);
  pthread_join(w->thr, NULL);
  close(w->ep);
  close(w->kick);
  pthread_cond_destroy(&w->cv);
  pthread_mutex_destroy(&w->mu);
  pl_free(w);
}
