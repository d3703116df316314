/* What the engine thread feeds the server (pl_engine_thread_hooks): the /metrics counters and
 * latencies, and the KV map's snapshots. Called on the engine thread only. */
#include "server/kvmap.h"
#include "server/metrics.h"
#include "server/server_impl.h"

static int tick(void *user, pl_engine *e) {
  pl_server *s = user;
  return pl_srv_kvmap_tick(s->kvmap, e);
}

static void stats(void *user, const pl_engine_stats *st, int n_queued) {
  pl_server *s = user;
  pl_srv_metrics_set_engine(s->metrics, st, n_queued); /* queued count as waiting */
}

static void first_token(void *user, double sec) {
  pl_server *s = user;
  pl_srv_metrics_ttft(s->metrics, sec);
}

static void token_gap(void *user, double sec) {
  pl_server *s = user;
  pl_srv_metrics_itl(s->metrics, sec);
}

static void finished(void *user, pl_finish_reason why, double sec) {
  pl_server *s = user;
  pl_srv_metrics_e2e(s->metrics, sec);
  pl_srv_metrics_finished(s->metrics, why);
}

static void stalled(void *user) {
  pl_server *s = user;
  pl_srv_metrics_stalled(s->metrics);
}

void pl_srv_engine_hooks(pl_server *s, pl_engine_thread_hooks *h) {
  *h = (pl_engine_thread_hooks){.user = s, .tick = tick, .stats = stats,
                                .first_token = first_token, .token_gap = token_gap,
                                .finished = finished, .stalled = stalled};
}
