/* The request deadline: a request's head and body must arrive within a fixed time, however
 * slowly the bytes trickle in (MHD's own timeout is an idle timeout, which a client sending one
 * byte every few seconds resets forever).
 *
 * One record per connection, armed while the server waits for a request's head and body.
 * A thread looks at the armed records four times a second and shuts down (shutdown(2), not
 * close: the descriptor stays MHD's) the socket of each one past its deadline; MHD then sees
 * the end of the stream and closes the connection itself. A record must be removed before its
 * socket is closed (MHD's CLOSED notification comes first), so the guard never touches a
 * reused descriptor. Thread-safe. */
#ifndef PL_SERVER_CONN_GUARD_H
#define PL_SERVER_CONN_GUARD_H

typedef struct pl_conn_guard pl_conn_guard;
typedef struct pl_conn_rec pl_conn_rec;

/* Start the guard thread; timeout_ms is the deadline. PL_ENOMEM, PL_EINTERNAL. */
int pl_conn_guard_start(int timeout_ms, pl_conn_guard **out);
/* Join the thread and free every record. NULL ok. */
void pl_conn_guard_stop(pl_conn_guard *g);

/* A new connection on socket fd, armed from now. NULL when out of memory (not guarded). */
pl_conn_rec *pl_conn_guard_add(pl_conn_guard *g, int fd);
/* Start the clock again (the next request on a kept-alive connection) / stop it (the head
 * and body are in). NULL rec ok. */
void pl_conn_guard_arm(pl_conn_guard *g, pl_conn_rec *r);
void pl_conn_guard_disarm(pl_conn_guard *g, pl_conn_rec *r);
/* Forget the record (before its socket is closed). NULL rec ok. */
void pl_conn_guard_remove(pl_conn_guard *g, pl_conn_rec *r);
/* Connections cut so far for missing their deadline. */
unsigned long long pl_conn_guard_expired(pl_conn_guard *g);
#endif
