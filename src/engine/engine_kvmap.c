/* The engine's view for the KV map: the scheduler's snapshot plus what only the engine knows
 * (which sample of a request each scheduler request is). */
#include "core/kv_snapshot.h"
#include "engine/engine_impl.h"
#include "engine/engine_access.h"

int pl_engine_kv_snapshot(const pl_engine *e, int max_waiting, struct pl_kv_snapshot *snap) {
  int rc = pl_kv_snapshot_capture(e->sched, max_waiting, snap);
  if (rc < 0)
    return rc;
  for (int i = 0; i < snap->n_running + snap->n_waiting; i++) {
    const pl_sample_state *ss = snap->reqs[i].user;
    snap->reqs[i].sample = ss ? ss->index : 0;
    snap->reqs[i].user = NULL;
  }
  return 0;
}
