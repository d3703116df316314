/* Request deadlines (see conn_guard.h). Records form a doubly linked list under one mutex;
 * the scan is O(connections) every 250 ms, which stays far below a millisecond for the few
 * thousand connections the server allows. */
#include "server/conn_guard.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "util/alloc.h"
#include "util/error.h"
#include "util/log.h"

struct pl_conn_rec {
  pl_conn_rec *prev, *next;
  int fd;
  int armed;
  double deadline; /* CLOCK_MONOTONIC seconds, while armed */
};

struct pl_conn_guard {
  pthread_mutex_t mu;
  pthread_cond_t cv; /* stop */
  pthread_t thr;
  pl_conn_rec *head;
  double timeout_s;
  int stop;
  unsigned long long expired;
};

static double mono_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void *guard_main(void *arg) {
  pl_conn_guard *g = arg;
  pthread_mutex_lock(&g->mu);
  while (!g->stop) {
    double now = mono_s();
    for (pl_conn_rec *r = g->head; r; r = r->next) {
      if (r->armed && now > r->deadline) {
        r->armed = 0;
        g->expired++;
        if (pl_log_enabled(PL_LOG_DEBUG)) {
          struct sockaddr_in6 a; /* large enough for either family; the port sits alike */
          socklen_t len = sizeof a;
          int port = getpeername(r->fd, (struct sockaddr *)&a, &len) == 0 ? ntohs(a.sin6_port) : -1;
          PL_DEBUG("http: client port %d (fd %d) missed its request deadline; closing it", port,
                   r->fd);
        }
        shutdown(r->fd, SHUT_RDWR); /* MHD sees EOF and closes it */
      }
    }
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_nsec += 250000000L;
    if (ts.tv_nsec >= 1000000000L) {
      ts.tv_sec++;
      ts.tv_nsec -= 1000000000L;
    }
    pthread_cond_timedwait(&g->cv, &g->mu, &ts);
  }
  pthread_mutex_unlock(&g->mu);
  return NULL;
}

int pl_conn_guard_start(int timeout_ms, pl_conn_guard **out) {
  *out = NULL;
  pl_conn_guard *g = pl_calloc(1, sizeof *g);
  if (!g)
    return pl_fail(PL_ENOMEM, "out of memory");
  g->timeout_s = timeout_ms / 1000.0;
  pthread_mutex_init(&g->mu, NULL);
  pthread_cond_init(&g->cv, NULL);
  int rc = pthread_create(&g->thr, NULL, guard_main, g);
  if (rc != 0) {
    pthread_cond_destroy(&g->cv);
    pthread_mutex_destroy(&g->mu);
    pl_free(g);
    return pl_fail(PL_EINTERNAL, "cannot start the connection guard: %s", strerror(rc));
  }
  *out = g;
  return 0;
}

void pl_conn_guard_stop(pl_conn_guard *g) {
  if (!g)
    return;
  pthread_mutex_lock(&g->mu);
  g->stop = 1;
  pthread_cond_signal(&g->cv);
  pthread_mutex_unlock(&g->mu);
  pthread_join(g->thr, NULL);
  while (g->head) {
    pl_conn_rec *r = g->head;
    g->head = r->next;
    pl_free(r);
  }
  pthread_cond_destroy(&g->cv);
  pthread_mutex_destroy(&g->mu);
  pl_free(g);
}

pl_conn_rec *pl_conn_guard_add(pl_conn_guard *g, int fd) {
  pl_conn_rec *r = pl_calloc(1, sizeof *r);
  if (!r)
    return NULL;
  r->fd = fd;
  r->armed = 1;
  r->deadline = mono_s() + g->timeout_s;
  pthread_mutex_lock(&g->mu);
  r->next = g->head;
  if (g->head)
    g->head->prev = r;
  g->head = r;
  pthread_mutex_unlock(&g->mu);
  return r;
}

void pl_conn_guard_arm(pl_conn_guard *g, pl_conn_rec *r) {
  if (!r)
    return;
  double d = mono_s() + g->timeout_s;
  pthread_mutex_lock(&g->mu);
  r->armed = 1;
  r->deadline = d;
  pthread_mutex_unlock(&g->mu);
}

void pl_conn_guard_disarm(pl_conn_guard *g, pl_conn_rec *r) {
  if (!r)
    return;
  pthread_mutex_lock(&g->mu);
  r->armed = 0;
  pthread_mutex_unlock(&g->mu);
}

void pl_conn_guard_remove(pl_conn_guard *g, pl_conn_rec *r) {
  if (!r)
    return;
  pthread_mutex_lock(&g->mu);
  if (r->prev)
    r->prev->next = r->next;
  else
    g->head = r->next;
  if (r->next)
    r->next->prev = r->prev;
  pthread_mutex_unlock(&g->mu);
  pl_free(r);
}

unsigned long long pl_conn_guard_expired(pl_conn_guard *g) {
  pthread_mutex_lock(&g->mu);
  unsigned long long n = g->expired;
  pthread_mutex_unlock(&g->mu);
  return n;
}
