/* Prometheus metrics for `GET /metrics`, named like vLLM's with a `pagellm:` prefix.
 *
 * The engine thread feeds it (latency observations, finish reasons, a snapshot of
 * pl_engine_stats after every loop iteration); HTTP threads render it. One mutex guards
 * everything: updates are a few additions, so contention is negligible. */
#ifndef PL_SERVER_METRICS_H
#define PL_SERVER_METRICS_H
#include "pagellm.h"
#include "server/strbuf.h"

typedef struct pl_srv_metrics pl_srv_metrics;

int pl_srv_metrics_create(pl_srv_metrics **out); /* PL_ENOMEM */
void pl_srv_metrics_destroy(pl_srv_metrics *m); /* NULL ok */

/* Latencies in seconds. */
void pl_srv_metrics_ttft(pl_srv_metrics *m, double s);
void pl_srv_metrics_itl(pl_srv_metrics *m, double s);
void pl_srv_metrics_e2e(pl_srv_metrics *m, double s);
/* One engine request (one prompt of an HTTP request) finished. */
void pl_srv_metrics_finished(pl_srv_metrics *m, pl_finish_reason why);
/* The engine's counters now, plus requests queued for the engine thread but not yet added
 * (they count as waiting). */
void pl_srv_metrics_set_engine(pl_srv_metrics *m, const pl_engine_stats *st, int pending);
/* The server began draining (1) on SIGTERM. */
void pl_srv_metrics_set_draining(pl_srv_metrics *m, int draining);
/* HTTP responses by status code (counted when the response is queued). */
void pl_srv_metrics_http(pl_srv_metrics *m, int status);

/* A request was aborted because its client stopped reading (send queue full too long). */
void pl_srv_metrics_stalled(pl_srv_metrics *m);

/* The connection counters now: connections the guard (conn_guard.h) cut at the request
 * deadline, idle connections it evicted at a connection limit, new connections libmicrohttpd
 * closed unanswered at its own limit. */
void pl_srv_metrics_set_conn_cuts(pl_srv_metrics *m, unsigned long long deadline,
                                  unsigned long long evicted, unsigned long long refused);

/* Append the Prometheus text exposition (format 0.0.4). model_name labels every series. */
int pl_srv_metrics_render(pl_srv_metrics *m, const char *model_name, pl_strbuf *out);
#endif
