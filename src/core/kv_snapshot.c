/* KV snapshot for monitoring (see kv_snapshot.h). */
#include "core/kv_snapshot.h"

#include <string.h>

#include "util/alloc.h"
#include "util/array.h"
#include "util/error.h"

#define SNAP_TABLE_MIN 4096 /* block-table entries a snapshot holds from its first capture */

/* Grow *p to hold n elements of size sz (capacity in *cap). */
static int grow(void **p, int *cap, int n, size_t sz) {
  return n < 0 ? 0 : pl_array_grow(p, cap, (size_t)n, sz, 16);
}

static int grow_blocks(pl_kv_snapshot *snap, int n) {
  if (n <= snap->cap_blocks)
    return 0;
  char *st = pl_realloc(snap->state, (size_t)n);
  if (!st)
    return PL_ENOMEM;
  snap->state = st;
  int32_t *ref = pl_realloc(snap->ref, (size_t)n * sizeof *ref);
  if (!ref)
    return PL_ENOMEM;
  snap->ref = ref;
  int32_t *lru = pl_realloc(snap->lru, (size_t)n * sizeof *lru);
  if (!lru)
    return PL_ENOMEM;
  snap->lru = lru;
  snap->cap_blocks = n;
  return 0;
}

static void set_empty(pl_kv_snapshot *snap) {
  snap->num_blocks = 0;
  snap->n_lru = snap->n_running = snap->n_waiting = snap->waiting_total = snap->n_table = 0;
}

static int fail_oom(pl_kv_snapshot *snap) {
  set_empty(snap);
  return pl_fail(PL_ENOMEM, "kv snapshot: out of memory");
}

/* Append request r (running or not) and its block table. */
static int add_req(const pl_scheduler *s, pl_kv_snapshot *snap, const pl_sched_req *r,
                   int running) {
  int nb = 0;
  const int32_t *t = pl_sched_req_blocks(s, r, &nb);
  if (grow((void **)&snap->tables, &snap->cap_table, snap->n_table + nb, sizeof(int32_t)) < 0)
    return PL_ENOMEM;
  pl_kv_snap_req *q = &snap->reqs[snap->n_running + snap->n_waiting];
  q->id = r->id;
  q->arrival = r->arrival;
  q->sample = 0;
  q->running = running;
  q->num_prompt_tokens = r->num_prompt_tokens;
  q->num_tokens = r->num_tokens;
  q->num_computed_tokens = r->num_computed_tokens;
  q->max_tokens = r->max_tokens;
  q->num_cached_tokens = r->num_cached_tokens;
  q->num_preemptions = r->num_preemptions;
  q->priority = r->priority;
  q->table_off = snap->n_table;
  q->n_blocks = nb;
  q->user = r->user;
  if (nb > 0)
    memcpy(snap->tables + snap->n_table, t, (size_t)nb * sizeof(int32_t));
  snap->n_table += nb;
  return 0;
}

int pl_kv_snapshot_capture(const pl_scheduler *s, int max_waiting, pl_kv_snapshot *snap) {
  const pl_block_pool *pool = pl_kv_cache_pool(pl_sched_kv(s));
  const int nb = pl_block_pool_num_blocks(pool);
  set_empty(snap);
  if (grow_blocks(snap, nb) < 0)
    return fail_oom(snap);
  snap->block_size = pl_block_pool_block_size(pool);
  snap->caching = pl_block_pool_caching(pool);

  /* Block states: one pass over the records. */
  snap->state[0] = PL_KVS_NULL;
  snap->ref[0] = 0;
  for (int id = 1; id < nb; id++) {
    const pl_block *b = pl_block_pool_get(pool, id);
    int32_t rc = b->ref_cnt;
    snap->ref[id] = rc;
    snap->state[id] = rc > 1    ? PL_KVS_SHARED
                      : rc == 1 ? PL_KVS_USED
                      : b->cid  ? PL_KVS_CACHED
                                : PL_KVS_FREE;
  }
  /* Eviction order: the free list from its head, keeping the cached blocks. */
  int n_free = pl_block_pool_free_list(pool, snap->lru, nb);
  int k = 0;
  for (int i = 0; i < n_free && i < nb; i++)
    if (snap->state[snap->lru[i]] == PL_KVS_CACHED)
      snap->lru[k++] = snap->lru[i];
  snap->n_lru = k;

  /* Requests: running in admission order, then the head of the waiting queue. The arrays
   * are sized at the first capture for every request the scheduler can list, and the block
   * tables for SNAP_TABLE_MIN entries, so that a snapshot reused frame after frame does not
   * allocate once requests run (a server's allocation sweeps count every live block). */
  if (max_waiting < 0)
    max_waiting = 0;
  int n_run = pl_sched_num_running(s), n_wait = pl_sched_num_waiting(s);
  int want = n_run + (n_wait < max_waiting ? n_wait : max_waiting);
  int most = pl_sched_max_num_seqs(s) + max_waiting;
  if (grow((void **)&snap->reqs, &snap->cap_reqs, want > most ? want : most,
           sizeof *snap->reqs) < 0 ||
      grow((void **)&snap->scratch, &snap->cap_scratch, want > most ? want : most,
           sizeof *snap->scratch) < 0 ||
      grow((void **)&snap->tables, &snap->cap_table, SNAP_TABLE_MIN, sizeof(int32_t)) < 0)
    return fail_oom(snap);
  const pl_sched_req **sc = snap->scratch;
  int got = pl_sched_list_running(s, sc, n_run);
  for (int i = 0; i < got && i < n_run; i++) {
    if (add_req(s, snap, sc[i], 1) < 0)
      return fail_oom(snap);
    snap->n_running++;
  }
  snap->waiting_total = pl_sched_list_waiting(s, sc, want - snap->n_running);
  int listed = want - snap->n_running;
  for (int i = 0; i < listed && i < snap->waiting_total; i++) {
    if (add_req(s, snap, sc[i], 0) < 0)
      return fail_oom(snap);
    snap->n_waiting++;
  }
  snap->num_blocks = nb;
  return 0;
}

void pl_kv_snapshot_free(pl_kv_snapshot *snap) {
  if (!snap)
    return;
  pl_free(snap->state);
  pl_free(snap->ref);
  pl_free(snap->lru);
  pl_free(snap->reqs);
  pl_free(snap->tables);
  pl_free(snap->scratch);
  memset(snap, 0, sizeof *snap);
}
