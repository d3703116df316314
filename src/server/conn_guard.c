/* Request deadlines and the connection limit (see conn_guard.h). Records form a doubly linked
 * list under one mutex; the deadline scan is O(connections) every 250 ms, and so is the search
 * for the connection to evict (only when a new one finds the limit reached): both stay far
 * below a millisecond for the few thousand connections the server allows. */
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
  unsigned char addr[17]; /* the client's address: family byte + 4 (IPv4) or 16 (IPv6) bytes */
  int armed;
  int cut;         /* shut down by the guard; MHD closes it soon (not counted as live) */
  double since;    /* CLOCK_MONOTONIC seconds when armed: who waited longest is evicted */
};

struct pl_conn_guard {
  pthread_mutex_t mu;
  pthread_cond_t cv; /* stop */
  pthread_t thr;
  pl_conn_rec *head;
  double timeout_s; /* 0 = no deadline (and no thread) */
  int max_conns;    /* 0 = no limit */
  int max_per_addr; /* 0 = no limit */
  int live;         /* records not cut */
  int stop;
  unsigned long long expired, evicted;
};

static double mono_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Shut r's socket down (g->mu held). MHD sees the end of the stream and closes it. */
static void cut(pl_conn_guard *g, pl_conn_rec *r, const char *why) {
  r->armed = 0;
  r->cut = 1;
  g->live--;
  if (pl_log_enabled(PL_LOG_DEBUG)) {
    struct sockaddr_in6 a; /* large enough for either family; the port sits alike */
    socklen_t len = sizeof a;
    int port = getpeername(r->fd, (struct sockaddr *)&a, &len) == 0 ? ntohs(a.sin6_port) : -1;
    PL_DEBUG("http: client port %d (fd %d) %s; closing it", port, r->fd, why);
  }
  shutdown(r->fd, SHUT_RDWR);
}

static void *guard_main(void *arg) {
  pl_conn_guard *g = arg;
  pthread_mutex_lock(&g->mu);
  while (!g->stop) {
    double now = mono_s();
    for (pl_conn_rec *r = g->head; r; r = r->next) {
      if (r->armed && now > r->since + g->timeout_s) {
        g->expired++;
        cut(g, r, "missed its request deadline");
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

int pl_conn_guard_start(int timeout_ms, int max_conns, int max_per_addr, pl_conn_guard **out) {
  *out = NULL;
  pl_conn_guard *g = pl_calloc(1, sizeof *g);
  if (!g)
    return pl_fail(PL_ENOMEM, "out of memory");
  g->timeout_s = timeout_ms > 0 ? timeout_ms / 1000.0 : 0;
  g->max_conns = max_conns > 0 ? max_conns : 0;
  g->max_per_addr = max_per_addr > 0 ? max_per_addr : 0;
  pthread_mutex_init(&g->mu, NULL);
  pthread_cond_init(&g->cv, NULL);
  int rc = g->timeout_s > 0 ? pthread_create(&g->thr, NULL, guard_main, g) : 0;
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
  if (g->timeout_s > 0)
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

void pl_conn_addr_key(unsigned char key[17], const struct sockaddr *sa) {
  memset(key, 0, 17);
  if (sa && sa->sa_family == AF_INET) {
    key[0] = 4;
    memcpy(key + 1, &((const struct sockaddr_in *)sa)->sin_addr, 4);
  } else if (sa && sa->sa_family == AF_INET6) {
    key[0] = 6;
    memcpy(key + 1, &((const struct sockaddr_in6 *)sa)->sin6_addr, 16);
  }
}

/* The armed record that has waited longest, among those from r's address when same_addr
 * (g->mu held). The list is newest first, so on equal times the older one wins; r itself
 * (armed just now) is chosen only when no other candidate is armed, i.e. all are busy. */
static pl_conn_rec *oldest_armed(pl_conn_guard *g, const pl_conn_rec *r, int same_addr) {
  pl_conn_rec *oldest = NULL;
  for (pl_conn_rec *q = g->head; q; q = q->next)
    if (q->armed && (!same_addr || !memcmp(q->addr, r->addr, sizeof r->addr)) &&
        (!oldest || q->since <= oldest->since))
      oldest = q;
  return oldest;
}

pl_conn_rec *pl_conn_guard_add(pl_conn_guard *g, int fd, const struct sockaddr *addr) {
  pl_conn_rec *r = pl_calloc(1, sizeof *r);
  if (!r)
    return NULL;
  r->fd = fd;
  r->armed = 1;
  r->since = mono_s();
  pl_conn_addr_key(r->addr, addr);
  pthread_mutex_lock(&g->mu);
  r->next = g->head;
  if (g->head)
    g->head->prev = r;
  g->head = r;
  g->live++;
  /* Over a limit: evict the connection that has waited longest for a request, from the same
   * address at the per-address limit (one client's idle keep-alive pool, or one attacker,
   * pays for its own new connection). One cut brings both counts back within their limits. */
  int from_addr = 0;
  if (g->max_per_addr && r->addr[0]) {
    for (pl_conn_rec *q = g->head; q; q = q->next)
      from_addr += !q->cut && !memcmp(q->addr, r->addr, sizeof r->addr);
  }
  pl_conn_rec *victim = NULL;
  const char *why = "was the oldest idle connection at the connection limit";
  if (g->max_per_addr && from_addr > g->max_per_addr) {
    victim = oldest_armed(g, r, 1);
    why = "was its address's oldest idle connection at the per-address limit";
  } else if (g->max_conns && g->live > g->max_conns) {
    victim = oldest_armed(g, r, 0);
  }
  if (victim) {
    g->evicted++;
    cut(g, victim, victim == r ? "found the limit reached by busy connections" : why);
  }
  pthread_mutex_unlock(&g->mu);
  return r;
}

void pl_conn_guard_arm(pl_conn_guard *g, pl_conn_rec *r) {
  if (!r)
    return;
  double now = mono_s();
  pthread_mutex_lock(&g->mu);
  if (!r->cut) {
    r->armed = 1;
    r->since = now;
  }
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
  if (!r->cut)
    g->live--;
  pthread_mutex_unlock(&g->mu);
  pl_free(r);
}

unsigned long long pl_conn_guard_expired(pl_conn_guard *g) {
  pthread_mutex_lock(&g->mu);
  unsigned long long n = g->expired;
  pthread_mutex_unlock(&g->mu);
  return n;
}

unsigned long long pl_conn_guard_evicted(pl_conn_guard *g) {
  pthread_mutex_lock(&g->mu);
  unsigned long long n = g->evicted;
  pthread_mutex_unlock(&g->mu);
  return n;
}
