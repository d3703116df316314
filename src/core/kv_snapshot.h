/* A point-in-time copy of the paged KV cache for monitoring (the web UI's KV map): every
 * block's state and reference count, the eviction order of the cached-free blocks, and the
 * running and waiting requests with their block tables. Block ids and token counts only.
 *
 *   state[id]:  'n' null block 0 | 'f' free, no cached content | 'c' cached and free
 *               (evictable; lru_rank says when) | 'u' in use by one sequence |
 *               's' shared (ref_cnt > 1: a prefix hit or a fork)
 *   lru[0..n_lru): the cached-free blocks in eviction order (lru[0] is evicted next)
 *   reqs[0..n_running): running requests in admission order, then up to max_waiting of the
 *               waiting queue in scheduling order; tables[req.table_off ..) their blocks
 *
 * Capture walks the pool once and the free list once: O(num_blocks + table entries), no
 * allocation once the buffers have grown to fit. Call it from the thread that owns the
 * scheduler, between steps. The snapshot is plain data afterwards: any thread may read it. */
#ifndef PL_CORE_KV_SNAPSHOT_H
#define PL_CORE_KV_SNAPSHOT_H
#include <stdint.h>

#include "core/scheduler.h"

enum {
  PL_KVS_NULL = 'n',
  PL_KVS_FREE = 'f',
  PL_KVS_CACHED = 'c',
  PL_KVS_USED = 'u',
  PL_KVS_SHARED = 's'
};

typedef struct pl_kv_snap_req {
  uint64_t id;             /* the engine's request id (n > 1 samples share it) */
  uint64_t arrival;        /* the scheduler's arrival order: unique per sample */
  int sample;              /* sample index; the engine layer fills it (0 from core) */
  int running;             /* 1 running, 0 waiting */
  int num_prompt_tokens;
  int num_tokens;          /* prompt + generated so far */
  int num_computed_tokens; /* tokens whose K/V is written */
  int max_tokens;          /* prompt + max new tokens */
  int num_cached_tokens;   /* prompt tokens from the prefix cache at admission; -1 before */
  int num_preemptions;
  int priority;
  int table_off, n_blocks; /* its block table: tables[table_off .. table_off + n_blocks) */
  const void *user;        /* the scheduler request's user pointer; valid during capture only */
} pl_kv_snap_req;

typedef struct pl_kv_snapshot {
  int num_blocks;          /* including the null block 0 */
  int block_size;
  int caching;             /* prefix caching on */
  char *state;             /* [num_blocks] PL_KVS_* */
  int32_t *ref;            /* [num_blocks] reference counts */
  int32_t *lru;            /* [n_lru] cached-free block ids, next evicted first */
  int n_lru;
  pl_kv_snap_req *reqs;    /* [n_running + n_waiting] */
  int n_running;
  int n_waiting;           /* waiting requests listed (<= max_waiting given to capture) */
  int waiting_total;       /* waiting requests in the queue */
  int32_t *tables;         /* [n_table] concatenated block tables */
  int n_table;
  /* capacities (grown by capture) */
  int cap_blocks, cap_reqs, cap_table, cap_scratch;
  const pl_sched_req **scratch; /* [cap_scratch] */
} pl_kv_snapshot;

/* Fill snap (zero-initialize it before the first use) from s: at most max_waiting waiting
 * requests are listed. Buffers grow as needed. PL_ENOMEM leaves snap valid but empty. */
int pl_kv_snapshot_capture(const pl_scheduler *s, int max_waiting, pl_kv_snapshot *snap);
/* Frees the buffers; snap is zeroed (reusable). NULL ok. */
void pl_kv_snapshot_free(pl_kv_snapshot *snap);
#endif
