/* `pagellm serve`: the OpenAI-compatible HTTP server (libmicrohttpd: a pool of epoll threads;
 * a request waiting for the engine holds no thread).
 *
 * Life cycle: pl_server_start binds and listens at once (so /health answers 503 while the
 * model loads), pl_server_attach_engine makes it ready, pl_server_shutdown stops accepting,
 * lets in-flight requests finish (bounded), aborts the rest and joins every thread.
 *
 * Routes: POST /v1/completions, /v1/chat/completions, /tokenize, /detokenize; GET /v1/models,
 * /v1/models/{id}, /health, /metrics, /version, /kv/snapshot, and the web UI (/, /ui/FILE;
 * server/ui.h). With an API key every path except /health and the UI's static files needs
 * "Authorization: Bearer KEY" (compared in constant time), unknown paths included: the key is
 * checked before 404/405 so that they do not reveal the routes. /health stays open for load
 * balancers; /metrics is open only with metrics_no_auth.
 *
 * Hostile clients: a request's head and body must arrive within request_timeout_s of the
 * connection's start (or of the previous response on a kept-alive connection), whatever
 * the pace (a trickling client cannot reset it); each address may hold at most
 * max_connections_per_ip connections; at max_connections a new connection evicts the one
 * that has waited longest for its request's head or body (never one whose request is being
 * processed or streamed; the new one itself when every other is busy), so connections that
 * send nothing cannot lock normal clients out; bodies being received or parsed may hold at most
 * max_inflight_body_bytes together (503 with Retry-After above); a client that does not read
 * its output for stall_timeout_s has its request aborted. Every 503 carries Retry-After. */
#ifndef PL_SERVER_SERVER_H
#define PL_SERVER_SERVER_H
#include <stddef.h>

#include "pagellm.h"

typedef struct pl_server_config {
  const char *host;              /* bind address; default "127.0.0.1" */
  int port;                      /* default 8000; 0 = any free port (see pl_server_port) */
  const char *api_key;           /* NULL or "" = no authentication */
  const char *served_model_name; /* NULL = the engine's model name */
  const char *model_path;        /* for /v1/models "root" */
  size_t max_body_bytes;         /* request body limit (413 above); default 8 MiB */
  size_t max_header_bytes;       /* per-connection header memory; default 32 KiB */
  int timeout_s;                 /* idle/slow client timeout; default 60 */
  int keepalive_s;               /* SSE ": keep-alive" interval while no data; default 5 */
  int max_connections;           /* default 2048 (also bounded by the fd limit); beyond it the
                                    oldest idle connection is evicted */
  int max_pending;               /* requests queued for the engine thread; default 1024 */
  float queue_timeout_s;         /* wait for room in a full queue, in order; default 30; 0 = 503 at once */
  int max_connections_per_ip;    /* default 256; 0 = no per-address limit */
  int request_timeout_s;         /* head + body deadline per request; default 30; 0 = none */
  int stall_timeout_s;           /* abort when output is unread this long; default 60; 0 = never */
  size_t max_inflight_body_bytes; /* all request bodies in memory together; default 256 MiB */
  int metrics_no_auth;           /* 1: /metrics needs no API key */
  int http_threads;              /* MHD's epoll threads; 0 = one per core, 2..8 */
} pl_server_config;

typedef struct pl_server pl_server;

void pl_server_config_default(pl_server_config *c);

/* Bind and listen. PL_EIO (message says why: address in use, bad host, ...). */
int pl_server_start(const pl_server_config *c, pl_server **out);
int pl_server_port(const pl_server *s); /* the bound port */
const char *pl_server_url(const pl_server *s); /* "http://127.0.0.1:8000" */
/* Serve e from now on (starts the engine thread). The server does not own e. */
int pl_server_attach_engine(pl_server *s, pl_engine *e);
/* Stop accepting connections, wait up to drain_ms for in-flight requests (or until *force
 * becomes non-zero), abort what is left, stop every thread. Returns the number of requests
 * that had to be aborted. Idempotent. */
int pl_server_shutdown(pl_server *s, int drain_ms, volatile int *force);
/* Frees the server (shuts it down first if needed). Destroy the engine only after this. */
void pl_server_destroy(pl_server *s);
#endif
