/* The KV map's data: snapshots of the paged KV cache taken by the engine thread, published to
 * HTTP threads, rendered as the JSON of GET /kv/snapshot (README: "KV map").
 *
 *   engine thread                                  HTTP thread (GET /kv/snapshot)
 *   -------------                                  ------------------------------
 *   pl_srv_kvmap_tick, once per loop iteration:    pl_srv_kvmap_fresh: marks the map watched
 *     history sample (counters) every second         for 10 s; is the published frame fresh?
 *     capture into the back frame when due  ──▶      (if not, the server suspends the request
 *     publish: swap frames if the lock is free       a while, <= 300 ms, and asks again)
 *                                                    pl_srv_kvmap_render: under the lock
 *
 * A capture is due at most every 100 ms: while the engine works, only if someone watched the
 * map in the last 10 s; once more when it falls idle (so an idle map is exact). The engine
 * thread never blocks on a reader: if a reader holds the lock it publishes at a later tick.
 * The capture itself is core/kv_snapshot.c (O(blocks + table entries), no allocation once
 * grown); JSON is built by the reader, off the engine thread. */
#ifndef PL_SERVER_KVMAP_H
#define PL_SERVER_KVMAP_H
#include "pagellm.h"
#include "server/strbuf.h"

typedef struct pl_srv_kvmap pl_srv_kvmap;

int pl_srv_kvmap_create(pl_srv_kvmap **out); /* PL_ENOMEM */
void pl_srv_kvmap_destroy(pl_srv_kvmap *m);  /* NULL ok; no thread may use it any more */

/* Engine thread, at the top of every loop iteration (after the previous iteration's commands
 * and step). Returns how many milliseconds later it needs another call although the engine is
 * idle (a capture held back by the 100 ms limit), or -1 when it needs none. */
int pl_srv_kvmap_tick(pl_srv_kvmap *m, pl_engine *e);

typedef struct pl_srv_kvmap_opts {
  int blocks;  /* include the per-block arrays (state, shared, lru) */
  int tables;  /* include each running request's block table */
  int history; /* include the counters' history */
} pl_srv_kvmap_opts;

/* Any thread: mark the map watched (captures resume while the engine works) and say whether
 * the published frame is fresh (younger than 200 ms, or the engine idle since). Never waits. */
int pl_srv_kvmap_fresh(pl_srv_kvmap *m);
/* Any thread: append the latest snapshot as JSON (format in the README) to b. Returns 0,
 * PL_ENOMEM, or PL_ENOTFOUND when no snapshot was taken yet. Never waits. */
int pl_srv_kvmap_render(pl_srv_kvmap *m, const pl_srv_kvmap_opts *o, pl_strbuf *b);
#endif
