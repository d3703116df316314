/* The request deadline and the connection limit.
 *
 * Deadline: a request's head and body must arrive within a fixed time, however slowly the
 * bytes trickle in (MHD's own timeout is an idle timeout, which a client sending one byte
 * every few seconds resets forever).
 *
 * Limits: libmicrohttpd refuses every new connection once its limit is reached, so connections
 * that send nothing, from as many addresses as the per-address limit needs, would lock normal
 * clients out until the deadline cuts them; and a client whose keep-alive pool holds many idle
 * connections would see a new one closed unanswered at the per-address limit. The guard holds
 * both limits instead (MHD is given some slack above the total and no per-address limit): a
 * connection beyond the per-address limit evicts the armed connection of its own address that
 * has waited longest, one beyond the total the armed connection that has waited longest; either
 * is the new one itself when every candidate is busy. Counting an address's connections is a
 * scan of the records, as the eviction search is.
 *
 * One record per connection, armed while the server waits for a request's head and body
 * (a fresh connection, a kept-alive one between requests); a connection whose request is being
 * processed or streamed is disarmed and is never cut. A cut is shutdown(2), not close: the
 * descriptor stays MHD's, MHD sees the end of the stream and closes the connection itself. A
 * record must be removed before its socket is closed (MHD's CLOSED notification comes first),
 * so the guard never touches a reused descriptor. A thread looks at the armed records four
 * times a second for missed deadlines. Thread-safe. */
#ifndef PL_SERVER_CONN_GUARD_H
#define PL_SERVER_CONN_GUARD_H

struct sockaddr;
typedef struct pl_conn_guard pl_conn_guard;
typedef struct pl_conn_rec pl_conn_rec;

/* A client address as 17 bytes: family (4 or 6), then the address; all zero for another
 * family or NULL. What the per-address limit and fair share (api_generate.c) group by. */
void pl_conn_addr_key(unsigned char key[17], const struct sockaddr *sa);

/* Start the guard; timeout_ms is the deadline (0 = none, and no thread), max_conns the
 * connection limit, max_per_addr the limit per client address (0 = none). PL_ENOMEM,
 * PL_EINTERNAL. */
int pl_conn_guard_start(int timeout_ms, int max_conns, int max_per_addr, pl_conn_guard **out);
/* Join the thread and free every record. NULL ok. */
void pl_conn_guard_stop(pl_conn_guard *g);

/* A new connection on socket fd from addr (IPv4 or IPv6; NULL or another family: no
 * per-address limit), armed from now. Over a limit, the armed connection armed longest ago
 * (of the same address, at the per-address limit) is shut down; it may be this one. NULL when
 * out of memory (not guarded nor counted). */
pl_conn_rec *pl_conn_guard_add(pl_conn_guard *g, int fd, const struct sockaddr *addr);
/* Start the clock again (the next request on a kept-alive connection) / stop it (the head
 * and body are in; from then on the connection is not evicted). No effect on a connection
 * already cut. NULL rec ok. */
void pl_conn_guard_arm(pl_conn_guard *g, pl_conn_rec *r);
void pl_conn_guard_disarm(pl_conn_guard *g, pl_conn_rec *r);
/* Forget the record (before its socket is closed). NULL rec ok. */
void pl_conn_guard_remove(pl_conn_guard *g, pl_conn_rec *r);
/* Connections cut so far for missing their deadline / evicted at a connection limit. */
unsigned long long pl_conn_guard_expired(pl_conn_guard *g);
unsigned long long pl_conn_guard_evicted(pl_conn_guard *g);
#endif
