/* KV snapshot (core/kv_snapshot.c): three requests sharing a 2-block prompt prefix plus one
 * request of its own. The expected states come from the scenario (who holds which block), and
 * the eviction order is checked against the pool's own free list; after the requests finish,
 * the prompt blocks are cached-free and a new allocation evicts them in the reported order. */
#include <string.h>

#include "check.h"
#include "core/kv_snapshot.h"
#include "util/alloc.h"

static pl_sched_req *add(pl_scheduler *s, uint64_t id, const int32_t *prompt, int n) {
  pl_sched_req_params rp = {.id = id, .prompt = prompt, .n_prompt = n, .max_tokens = n + 8};
  pl_sched_req *r = NULL;
  CHECK(pl_sched_add(s, &rp, &r) == 0, "add %llu", (unsigned long long)id);
  return r;
}

int main(void) {
  pl_sched_params p = {.num_blocks = 17, .block_size = 4, .max_model_len = 64, .max_num_seqs = 8,
                       .max_num_batched_tokens = 256, .kv_alloc = PL_KV_PAGED,
                       .enable_prefix_caching = 1, .policy = PL_SCHED_FCFS};
  pl_scheduler *s;
  CHECK(pl_sched_create(&p, &s) == 0, "create");
  int32_t shared[10] = {5, 6, 7, 8, 9, 10, 11, 12, 13, 14}; /* 2 full blocks + 2 tokens */
  int32_t other[6] = {40, 41, 42, 43, 44, 45};
  pl_sched_req *r[4];
  for (int i = 0; i < 3; i++) {
    shared[9] = 100 + i; /* same 2 full blocks, own last block */
    r[i] = add(s, 10 + i, shared, 10);
  }
  r[3] = add(s, 20, other, 6);
  /* one waiting request beyond the list limit */
  pl_kv_snapshot snap = {0};
  const pl_sched_output *o;
  CHECK(pl_sched_schedule(s, &o) > 0, "schedule");
  pl_sched_req *w = add(s, 30, other, 6); /* waits: added after the schedule */
  CHECK(pl_kv_snapshot_capture(s, 0, &snap) == 0, "capture");
  CHECK_EQ_INT(snap.num_blocks, 17);
  CHECK_EQ_INT(snap.block_size, 4);
  CHECK_EQ_INT(snap.n_running, 4);
  CHECK_EQ_INT(snap.n_waiting, 0); /* max_waiting 0: counted, not listed */
  CHECK_EQ_INT(snap.waiting_total, 1);
  CHECK(snap.state[0] == PL_KVS_NULL, "null block");
  /* request 0 holds 3 blocks: the two prefix blocks are shared by all three */
  const pl_kv_snap_req *q0 = &snap.reqs[0];
  CHECK_EQ_INT(q0->id, 10);
  CHECK_EQ_INT(q0->n_blocks, 3);
  for (int i = 0; i < 3; i++) {
    const pl_kv_snap_req *q = &snap.reqs[i];
    CHECK_EQ_INT(q->n_blocks, 3);
    for (int j = 0; j < 2; j++) {
      int32_t b = snap.tables[q->table_off + j];
      CHECK_EQ_INT(b, snap.tables[q0->table_off + j]);
      CHECK(snap.state[b] == PL_KVS_SHARED, "block %d state %c", b, snap.state[b]);
      CHECK_EQ_INT(snap.ref[b], 3);
    }
    int32_t own = snap.tables[q->table_off + 2];
    CHECK(snap.state[own] == PL_KVS_USED, "own block %d state %c", own, snap.state[own]);
    CHECK_EQ_INT(snap.ref[own], 1);
  }
  CHECK_EQ_INT(snap.reqs[3].n_blocks, 2);
  int counts[128] = {0};
  for (int id = 0; id < snap.num_blocks; id++)
    counts[(unsigned char)snap.state[id]]++;
  CHECK_EQ_INT(counts[PL_KVS_SHARED], 2);
  CHECK_EQ_INT(counts[PL_KVS_USED], 3 + 2);
  CHECK_EQ_INT(counts[PL_KVS_FREE], 16 - 7);
  CHECK_EQ_INT(snap.n_lru, 0);

  /* Finish them all: full blocks stay cached (evictable), partial ones are plain free. */
  for (int i = 0; i < 4; i++)
    pl_sched_finish(s, r[i]);
  pl_sched_abort(s, w);
  CHECK(pl_kv_snapshot_capture(s, 16, &snap) == 0, "capture 2");
  CHECK_EQ_INT(snap.n_running + snap.n_waiting, 0);
  memset(counts, 0, sizeof counts);
  for (int id = 0; id < snap.num_blocks; id++)
    counts[(unsigned char)snap.state[id]]++;
  CHECK_EQ_INT(counts[PL_KVS_CACHED], 3); /* the 2 shared prefix blocks + "other"'s full block */
  CHECK_EQ_INT(counts[PL_KVS_USED] + counts[PL_KVS_SHARED], 0);
  CHECK_EQ_INT(snap.n_lru, 3);
  /* the reported order is the pool's free-list order restricted to cached blocks */
  int32_t fl[32];
  int n = pl_block_pool_free_list(pl_kv_cache_pool(pl_sched_kv(s)), fl, 32);
  int k = 0;
  for (int i = 0; i < n; i++)
    if (snap.state[fl[i]] == PL_KVS_CACHED) {
      CHECK_EQ_INT(snap.lru[k], fl[i]);
      k++;
    }
  /* and allocation really evicts lru[0] first: fill the pool with a fresh request */
  int32_t big[60];
  for (int i = 0; i < 60; i++)
    big[i] = 200 + i;
  pl_sched_req *b = add(s, 40, big, 56);
  int32_t first_evicted = snap.lru[0], second = snap.lru[1];
  /* free blocks that were never cached are taken before any cached one only if they come
   * first in the list; count how many free blocks precede lru[0] */
  int before = 0;
  while (fl[before] != first_evicted)
    before++;
  CHECK(pl_sched_schedule(s, &o) > 0, "schedule big");
  pl_kv_snapshot snap2 = {0};
  CHECK(pl_kv_snapshot_capture(s, 16, &snap2) == 0, "capture 3");
  int used = snap2.reqs[0].n_blocks; /* 14 blocks of 4 tokens */
  CHECK_EQ_INT(used, 14);
  if (used > before) {
    CHECK(snap2.state[first_evicted] == PL_KVS_USED, "lru[0] %d was not evicted first", first_evicted);
  }
  if (snap2.state[second] == PL_KVS_USED)
    CHECK(snap2.state[first_evicted] == PL_KVS_USED, "lru[1] went before lru[0]");
  pl_sched_finish(s, b);
  pl_kv_snapshot_free(&snap);
  pl_kv_snapshot_free(&snap2);
  pl_sched_destroy(s);
  CHECK_EQ_INT(pl_alloc_live_bytes(), 0);
  return check_summary("test_kv_snapshot");
}
