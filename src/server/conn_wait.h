/* Suspended connections: how a request waits for the engine without holding an HTTP thread.
 *
 * MHD serves every connection from a small pool of epoll threads, so no handler may sleep. A
 * generation request with nothing to send yet (waiting for the engine's verdict, for its last
 * token, or a stream between tokens) suspends its connection (MHD_suspend_connection) and
 * hands its job's wake-up fd and its client socket to the waiter: one thread with its own
 * epoll set, which resumes the connection (MHD_resume_connection) when
 *   - the engine signals the job (the fd is readable; the waiter drains it first),
 *   - the client hangs up (EPOLLRDHUP: MHD does not watch a suspended connection, and a
 *     client that leaves must free its KV blocks at once), or
 *   - the timeout passes (the SSE keep-alive).
 * MHD then calls the access handler or content reader again, which reads why in
 * `reason` and looks at the job. Idle connections cost a socket and MHD's small record,
 * never a thread.
 *
 * A record (pl_conn_wait) lives in the request's own state. pl_conn_waiter_suspend arms it
 * from the MHD thread serving the connection; the waiter thread disarms it when it resumes the
 * connection, once per suspension. Shutdown: pl_conn_waiter_close resumes every armed
 * connection with PL_CONN_CLOSED and makes every later suspend resume at once with the same
 * reason (MHD_stop_daemon must find no suspended connection); pl_conn_waiter_free after
 * MHD_stop_daemon. Linux (epoll). */
#ifndef PL_SERVER_CONN_WAIT_H
#define PL_SERVER_CONN_WAIT_H

struct MHD_Connection;
typedef struct pl_conn_waiter pl_conn_waiter;

/* Why a suspended connection was resumed. */
enum {
  PL_CONN_NONE = 0,      /* not resumed by the waiter (yet) */
  PL_CONN_WOKEN = 1,     /* the job's fd was signalled: look at the job */
  PL_CONN_TIMEOUT = 2,   /* timeout_ms passed */
  PL_CONN_PEER_GONE = 3, /* the client hung up: cancel the job, drop the connection */
  PL_CONN_CLOSED = 4,    /* the server is stopping, or the wait could not be set up: drop it */
};

typedef struct pl_conn_wait {
  struct pl_conn_wait *prev, *next; /* the armed list (waiter's mutex) */
  struct MHD_Connection *c;
  int ev_fd, sock_fd;
  double deadline;  /* CLOCK_MONOTONIC seconds; 0 = none */
  int armed;        /* waiter's mutex */
  int reason;       /* PL_CONN_*: written before the resume, read by the MHD thread after it;
                       the reader resets it to PL_CONN_NONE */
} pl_conn_wait;

/* Start the waiter thread. PL_ENOMEM, PL_EIO, PL_EINTERNAL. */
int pl_conn_waiter_start(pl_conn_waiter **out);
/* Suspend connection c until ev_fd is readable, the peer of sock_fd hangs up (-1: do not
 * watch), or timeout_ms passes (-1: never). Call from c's access handler or content reader,
 * then return from it (MHD_YES / 0) without queueing anything; MHD calls it again once the
 * connection is resumed. Never fails: a wait that cannot be set up resumes at once with
 * PL_CONN_CLOSED. */
void pl_conn_waiter_suspend(pl_conn_waiter *w, pl_conn_wait *r, struct MHD_Connection *c,
                            int ev_fd, int sock_fd, int timeout_ms);
/* The record's request is finishing: make sure the waiter no longer holds it (call before
 * freeing r). A zeroed record that never waited is fine. */
void pl_conn_waiter_forget(pl_conn_waiter *w, pl_conn_wait *r);
/* Resume every suspended connection (PL_CONN_CLOSED) and refuse new waits. NULL ok. */
void pl_conn_waiter_close(pl_conn_waiter *w);
/* Join the thread and free (closes first). NULL ok. */
void pl_conn_waiter_free(pl_conn_waiter *w);
#endif
