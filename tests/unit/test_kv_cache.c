/* KV cache manager: slot growth, all-or-nothing allocation (with and without pending prefix
 * hits), prefix caching (hits, "leave one token", touch on hit, LRU eviction of the oldest
 * cached block, extra keys, forced-hash collisions), fork + copy-on-write, static reservation,
 * limits, and stats. The invariant checker runs after every operation. */
#include <string.h>

#include "check.h"
#include "core/kv_cache.h"
#include "util/alloc.h"

#define CK(kv) CHECK_EQ_INT(pl_kv_cache_check(kv), PL_OK)

static pl_kv_cache *make(int num_blocks, int bs, int max_seqs, int max_len, int caching) {
  pl_kv_cache_params p = {.num_blocks = num_blocks, .block_size = bs, .max_seqs = max_seqs,
                          .max_model_len = max_len, .enable_prefix_caching = caching};
  pl_kv_cache *kv = NULL;
  CHECK_EQ_INT(pl_kv_cache_create(&p, &kv), PL_OK);
  return kv;
}

static void seq_tokens(int32_t *t, int n, int base) {
  for (int i = 0; i < n; i++)
    t[i] = base + i;
}

static int open_seq(pl_kv_cache *kv, uint64_t key) {
  int s = -1;
  CHECK_EQ_INT(pl_kv_seq_open(kv, key, &s), PL_OK);
  return s;
}

static int ref(const pl_kv_cache *kv, int32_t b) {
  return pl_block_pool_get(pl_kv_cache_pool(kv), b)->ref_cnt;
}

static void test_growth_and_limits(void) {
  pl_kv_cache *kv = make(11, 4, 2, 20, 0); /* 10 usable blocks, 5 per sequence */
  int32_t tok[32];
  seq_tokens(tok, 32, 1);
  int s = open_seq(kv, 0);
  CHECK_EQ_INT(pl_kv_allocate_slots(kv, s, tok, 5, 0), PL_OK);
  CHECK_EQ_INT(pl_kv_seq_num_blocks(kv, s), 2);
  CHECK_EQ_INT(pl_kv_seq_num_tokens(kv, s), 5);
  CK(kv);
  CHECK_EQ_INT(pl_kv_allocate_slots(kv, s, tok, 3, 0), PL_OK);
  CHECK_EQ_INT(pl_kv_seq_num_blocks(kv, s), 2); /* 8 tokens fill 2 blocks exactly */
  CHECK_EQ_INT(pl_kv_allocate_slots(kv, s, tok, 1, 0), PL_OK);
  CHECK_EQ_INT(pl_kv_seq_num_blocks(kv, s), 3);
  CHECK_EQ_INT(pl_kv_allocate_slots(kv, s, tok, 0, 0), PL_OK); /* no-op */
  CHECK_EQ_INT(pl_kv_seq_num_blocks(kv, s), 3);
  CK(kv);
  /* Beyond max_model_len (20 tokens = 5 blocks): PL_ERANGE, nothing changes. */
  CHECK_EQ_INT(pl_kv_allocate_slots(kv, s, tok, 12, 0), PL_ERANGE);
  CHECK_EQ_INT(pl_kv_seq_num_tokens(kv, s), 9);
  CHECK_EQ_INT(pl_kv_allocate_slots(kv, s, tok, 11, 0), PL_OK);
  CHECK_EQ_INT(pl_kv_seq_num_blocks(kv, s), 5);
  CHECK_EQ_INT(pl_kv_allocate_slots(kv, s, tok, 0, 24), PL_ERANGE);
  CHECK_EQ_INT(pl_kv_allocate_slots(kv, 1, tok, 1, 0), PL_ESTATE); /* slot 1 not open */
  CHECK_EQ_INT(pl_kv_allocate_slots(kv, s, tok, -1, 0), PL_EINVAL);
  /* Slots run out. */
  int s2 = open_seq(kv, 0), s3 = -5;
  CHECK_EQ_INT(pl_kv_seq_open(kv, 0, &s3), PL_ENOSPACE);
  CHECK_EQ_INT(s3, -1);
  pl_kv_seq_free(kv, s2);
  CK(kv);
  pl_kv_seq_free(kv, s);
  CHECK_EQ_INT(pl_kv_cache_num_free_blocks(kv), 10);
  pl_kv_seq_free(kv, s); /* closed: ignored */
  CK(kv);
  pl_kv_cache_destroy(kv);
}

static void test_all_or_nothing(void) {
  pl_kv_cache *kv = make(6, 4, 3, 64, 1); /* 5 usable */
  int32_t a[32], b[32];
  seq_tokens(a, 32, 100);
  seq_tokens(b, 32, 500);
  int sa = open_seq(kv, 0), sb = open_seq(kv, 0);
  CHECK_EQ_INT(pl_kv_allocate_slots(kv, sa, a, 13, 0), PL_OK); /* 4 blocks, 3 cached */
  CHECK_EQ_INT(pl_kv_cache_num_free_blocks(kv), 1);
  CHECK_EQ_INT(pl_kv_allocate_slots(kv, sb, b, 5, 0), PL_ENOSPACE);
  CHECK_EQ_INT(pl_kv_seq_num_blocks(kv, sb), 0);
  CHECK_EQ_INT(pl_kv_seq_num_tokens(kv, sb), 0);
  CHECK_EQ_INT(pl_kv_cache_num_free_blocks(kv), 1);
  CK(kv);
  /* Static reservation that does not fit: also nothing. */
  CHECK_EQ_INT(pl_kv_allocate_slots(kv, sb, b, 1, 8), PL_ENOSPACE);
  CHECK_EQ_INT(pl_kv_seq_num_blocks(kv, sb), 0);
  CHECK_EQ_INT(pl_kv_allocate_slots(kv, sb, b, 1, 4), PL_OK);
  CHECK_EQ_INT(pl_kv_seq_num_blocks(kv, sb), 1);
  CK(kv);
  /* Pending prefix hits survive a failed allocation and are not taken by it. */
  pl_kv_seq_free(kv, sb);
  pl_kv_seq_free(kv, sa); /* a's 3 full blocks are cached-free now */
  int sc = open_seq(kv, 0);
  int32_t fill[32];
  seq_tokens(fill, 32, 900);
  CHECK_EQ_INT(pl_kv_allocate_slots(kv, sc, fill, 4, 0), PL_OK); /* takes 1 (the head) */
  int sd = open_seq(kv, 0);
  int hit = pl_kv_lookup_prefix(kv, sd, a, 16);
  CHECK_EQ_INT(hit, 12);
  pl_kv_stats st;
  pl_kv_cache_get_stats(kv, &st);
  int64_t q0 = st.prefix_queries_tokens;
  /* free: 4 blocks, 3 of them the hits; 4 tokens need 1 more block: 3 + 1 = 4 fits,
   * 8 tokens need 2 more: 3 + 2 = 5 > 4. */
  CHECK_EQ_INT(pl_kv_blocks_needed(kv, sd, 8, 0), 5);
  CHECK_EQ_INT(pl_kv_allocate_slots(kv, sd, a, 8, 0), PL_ENOSPACE);
  CHECK_EQ_INT(pl_kv_seq_num_blocks(kv, sd), 0);
  CHECK_EQ_INT(pl_kv_cache_num_free_blocks(kv), 4);
  pl_kv_cache_get_stats(kv, &st);
  CHECK_EQ_INT(st.prefix_queries_tokens, q0);
  CK(kv);
  CHECK_EQ_INT(pl_kv_allocate_slots(kv, sd, a, 4, 0), PL_OK);
  CHECK_EQ_INT(pl_kv_seq_num_tokens(kv, sd), 16);
  CHECK_EQ_INT(pl_kv_seq_num_blocks(kv, sd), 4);
  CHECK_EQ_INT(pl_kv_cache_num_free_blocks(kv), 0);
  pl_kv_cache_get_stats(kv, &st);
  CHECK_EQ_INT(st.prefix_queries_tokens, q0 + 16);
  CHECK_EQ_INT(st.prefix_hits_tokens, 12);
  CK(kv);
  pl_kv_cache_destroy(kv);
}

static void test_prefix_hits_touch_evict(void) {
  pl_kv_cache *kv = make(9, 4, 4, 64, 1); /* 8 usable */
  int32_t p[32];
  seq_tokens(p, 32, 10);
  int sa = open_seq(kv, 0);
  CHECK_EQ_INT(pl_kv_lookup_prefix(kv, sa, p, 10), 0);
  CHECK_EQ_INT(pl_kv_allocate_slots(kv, sa, p, 10, 0), PL_OK); /* blocks 1 2 3 */
  const int32_t *ta = pl_kv_seq_blocks(kv, sa);
  int32_t a0 = ta[0], a1 = ta[1], a2 = ta[2];
  CHECK(a0 == 1 && a1 == 2 && a2 == 3, "first blocks %d %d %d", a0, a1, a2);
  CHECK_EQ_INT(pl_block_pool_num_cached(pl_kv_cache_pool(kv)), 2); /* only full blocks */
  CK(kv);
  pl_kv_seq_free(kv, sa); /* tail first: free list 4..8, 3, 2, 1 */
  int32_t fl[16];
  int n = pl_block_pool_free_list(pl_kv_cache_pool(kv), fl, 16);
  CHECK(n == 8 && fl[5] == a2 && fl[6] == a1 && fl[7] == a0, "tail freed first");
  CK(kv);

  /* Same prompt: 8 tokens hit (2 blocks), touched out of the free list. */
  int sb = open_seq(kv, 0);
  CHECK_EQ_INT(pl_kv_lookup_prefix(kv, sb, p, 10), 8);
  CHECK_EQ_INT(pl_kv_allocate_slots(kv, sb, p, 2, 0), PL_OK);
  const int32_t *tb = pl_kv_seq_blocks(kv, sb);
  CHECK(tb[0] == a0 && tb[1] == a1, "hits are the cached blocks");
  CHECK(tb[2] != a2, "partial block not shared");
  CHECK_EQ_INT(ref(kv, a0), 1);
  n = pl_block_pool_free_list(pl_kv_cache_pool(kv), fl, 16);
  int found = 0;
  for (int i = 0; i < n; i++)
    found |= fl[i] == a0 || fl[i] == a1;
  CHECK(!found, "touched blocks left the free list");
  CK(kv);
  /* Leave one token: a prompt of exactly 8 cached tokens hits only 4. */
  int sc = open_seq(kv, 0);
  CHECK_EQ_INT(pl_kv_lookup_prefix(kv, sc, p, 8), 4);
  CHECK_EQ_INT(pl_kv_allocate_slots(kv, sc, p, 4, 0), PL_OK);
  CHECK_EQ_INT(pl_kv_seq_blocks(kv, sc)[0], a0);
  CHECK_EQ_INT(ref(kv, a0), 2);
  CHECK_EQ_INT(pl_kv_seq_num_blocks(kv, sc), 2);
  CHECK(pl_kv_seq_blocks(kv, sc)[1] != a1, "recomputed block is a new block");
  /* ... and its full second block duplicates a1: it stays uncached. */
  CHECK_EQ_INT(pl_block_pool_get(pl_kv_cache_pool(kv), pl_kv_seq_blocks(kv, sc)[1])->cid, 0);
  CK(kv);
  /* One token prompts and divergent prompts hit nothing. */
  int sd = open_seq(kv, 0);
  CHECK_EQ_INT(pl_kv_lookup_prefix(kv, sd, p, 1), 0);
  int32_t q[8] = {10, 11, 12, 99, 1, 2, 3, 4};
  CHECK_EQ_INT(pl_kv_lookup_prefix(kv, sd, q, 8), 0);
  int32_t r[9] = {10, 11, 12, 13, 99, 15, 16, 17, 1};
  CHECK_EQ_INT(pl_kv_lookup_prefix(kv, sd, r, 9), 4);
  pl_kv_seq_free(kv, sd);
  CK(kv);

  /* Eviction: free sb and sc; the oldest cached-free block is evicted first. */
  pl_kv_seq_free(kv, sb); /* frees its own partial block (uncached), a1, a0 stays (sc) */
  pl_kv_seq_free(kv, sc);
  pl_kv_stats st;
  pl_kv_cache_get_stats(kv, &st);
  CHECK_EQ_INT(st.blocks_used, 0);
  CHECK_EQ_INT(st.blocks_cached_free, 2);
  CHECK_EQ_INT(st.evictions, 0);
  /* Free list order now: [uncached...] a1 ... a0 (a1 freed before a0). Take all but 1. */
  int se = open_seq(kv, 0);
  int32_t z[64];
  seq_tokens(z, 64, 1000);
  n = pl_block_pool_free_list(pl_kv_cache_pool(kv), fl, 16);
  int pos_a0 = -1, pos_a1 = -1;
  for (int i = 0; i < n; i++) {
    if (fl[i] == a0)
      pos_a0 = i;
    if (fl[i] == a1)
      pos_a1 = i;
  }
  CHECK(pos_a1 >= 0 && pos_a0 > pos_a1, "a1 is older than a0 (%d, %d)", pos_a1, pos_a0);
  CHECK_EQ_INT(pl_kv_allocate_slots(kv, se, z, 4 * (pos_a1 + 1), 0), PL_OK);
  pl_kv_cache_get_stats(kv, &st);
  CHECK_EQ_INT(st.evictions, 1);
  CHECK_EQ_INT(pl_kv_seq_blocks(kv, se)[pos_a1], a1); /* the evicted block, reused */
  CHECK(pl_block_pool_get(pl_kv_cache_pool(kv), a0)->cid != 0, "a0 still cached");
  int sf = open_seq(kv, 0);
  CHECK_EQ_INT(pl_kv_lookup_prefix(kv, sf, p, 10), 4); /* only a0 remains */
  pl_kv_seq_free(kv, sf);
  CK(kv);
  pl_kv_seq_free(kv, se);
  pl_kv_cache_destroy(kv);
}

static void test_extra_key(void) {
  pl_kv_cache *kv = make(9, 2, 3, 32, 1);
  int32_t p[8] = {1, 2, 3, 4, 5, 6, 7, 8};
  int sa = open_seq(kv, 42);
  CHECK_EQ_INT(pl_kv_allocate_slots(kv, sa, p, 8, 0), PL_OK);
  int sb = open_seq(kv, 0);
  CHECK_EQ_INT(pl_kv_lookup_prefix(kv, sb, p, 8), 0);
  pl_kv_seq_free(kv, sb);
  int sc = open_seq(kv, 42);
  CHECK_EQ_INT(pl_kv_lookup_prefix(kv, sc, p, 8), 6);
  pl_kv_seq_free(kv, sc);
  CK(kv);
  pl_kv_seq_free(kv, sa);
  pl_kv_cache_destroy(kv);
}

static uint64_t const_hash(uint64_t parent, const int32_t *t, int n, uint64_t extra) {
  (void)parent, (void)t, (void)n, (void)extra;
  return 77;
}

/* Every block hashes alike: only exact identity (tokens, parent, key) may produce hits. */
static void test_forced_collisions(void) {
  pl_kv_cache *kv = make(17, 2, 4, 32, 1);
  CHECK_EQ_INT(pl_kv_cache_set_hash_fn(kv, const_hash), PL_OK);
  int32_t A[5] = {1, 2, 3, 4, 0}; /* blocks [1 2][3 4] */
  int32_t B[5] = {5, 6, 3, 4, 0}; /* blocks [5 6][3 4]: same second block, other parent */
  int32_t C[5] = {1, 2, 9, 9, 0};
  int sa = open_seq(kv, 0), sb = open_seq(kv, 0);
  CHECK_EQ_INT(pl_kv_lookup_prefix(kv, sa, A, 5), 0);
  CHECK_EQ_INT(pl_kv_allocate_slots(kv, sa, A, 5, 0), PL_OK);
  CHECK_EQ_INT(pl_kv_lookup_prefix(kv, sb, B, 5), 0); /* same hash, other tokens: rejected */
  CHECK_EQ_INT(pl_kv_allocate_slots(kv, sb, B, 5, 0), PL_OK);
  const pl_block_pool *pool = pl_kv_cache_pool(kv);
  CHECK_EQ_INT(pl_block_pool_num_cached(pool), 4); /* [3 4] twice: different parents */
  CK(kv);
  int sc = open_seq(kv, 0);
  CHECK_EQ_INT(pl_kv_lookup_prefix(kv, sc, B, 5), 4);
  CHECK_EQ_INT(pl_kv_allocate_slots(kv, sc, B, 1, 0), PL_OK);
  CHECK(pl_kv_seq_blocks(kv, sc)[1] == pl_kv_seq_blocks(kv, sb)[1] &&
            pl_kv_seq_blocks(kv, sc)[1] != pl_kv_seq_blocks(kv, sa)[1],
        "the [3 4] block under parent [5 6] is B's, not A's");
  int sd = open_seq(kv, 0);
  CHECK_EQ_INT(pl_kv_lookup_prefix(kv, sd, C, 5), 2);
  pl_kv_seq_free(kv, sd);
  CK(kv);
  CHECK_EQ_INT(pl_kv_cache_set_hash_fn(kv, NULL), PL_ESTATE); /* blocks are cached */
  pl_kv_seq_free(kv, sa);
  pl_kv_seq_free(kv, sb);
  pl_kv_seq_free(kv, sc);
  pl_kv_cache_destroy(kv);
}

static void test_fork_cow(void) {
  pl_kv_cache *kv = make(17, 4, 4, 64, 1);
  int32_t src[8], dst[8];
  int32_t pa[16] = {1, 2, 3, 4, 5, 6, 70, 0}, pc[16] = {1, 2, 3, 4, 5, 6, 71, 0};
  int sa = open_seq(kv, 0);
  CHECK_EQ_INT(pl_kv_allocate_slots(kv, sa, pa, 6, 0), PL_OK); /* [b0 full][b1: 2 of 4] */
  int32_t b0 = pl_kv_seq_blocks(kv, sa)[0], b1 = pl_kv_seq_blocks(kv, sa)[1];
  int sc = open_seq(kv, 0);
  int64_t used0 = pl_kv_cache_usable_blocks(kv) - pl_kv_cache_num_free_blocks(kv);
  CHECK_EQ_INT(pl_kv_fork(kv, sa, sc), PL_OK);
  CHECK_EQ_INT(pl_kv_cache_usable_blocks(kv) - pl_kv_cache_num_free_blocks(kv), used0);
  CHECK_EQ_INT(ref(kv, b0), 2);
  CHECK_EQ_INT(ref(kv, b1), 2);
  CHECK_EQ_INT(pl_kv_seq_num_tokens(kv, sc), 6);
  CK(kv);
  /* Divergent appends: exactly one copy, made by the first writer. */
  CHECK_EQ_INT(pl_kv_allocate_slots(kv, sa, pa, 1, 0), PL_OK);
  int32_t nb = pl_kv_seq_blocks(kv, sa)[1];
  CHECK(nb != b1, "writer moved to a fresh block");
  CHECK_EQ_INT(pl_kv_seq_blocks(kv, sa)[0], b0);
  CHECK_EQ_INT(ref(kv, b1), 1);
  CHECK_EQ_INT(pl_kv_num_pending_copies(kv), 1);
  CK(kv);
  CHECK_EQ_INT(pl_kv_allocate_slots(kv, sc, pc, 1, 0), PL_OK);
  CHECK_EQ_INT(pl_kv_seq_blocks(kv, sc)[1], b1); /* last sharer writes in place */
  CHECK_EQ_INT(pl_kv_take_copies(kv, src, dst, 8), 1);
  CHECK(src[0] == b1 && dst[0] == nb, "copy %d -> %d", src[0], dst[0]);
  CHECK_EQ_INT(pl_kv_num_pending_copies(kv), 0);
  pl_kv_stats st;
  pl_kv_cache_get_stats(kv, &st);
  CHECK_EQ_INT(st.cow_copies, 1);
  CK(kv);
  /* Filling the copied blocks caches both (different last tokens). */
  CHECK_EQ_INT(pl_kv_allocate_slots(kv, sa, pa, 1, 0), PL_OK);
  CHECK_EQ_INT(pl_kv_allocate_slots(kv, sc, pc, 1, 0), PL_OK);
  CHECK_EQ_INT(pl_block_pool_num_cached(pl_kv_cache_pool(kv)), 3);
  CK(kv);
  /* Fork at a block boundary: no copies. */
  int sd = open_seq(kv, 0);
  CHECK_EQ_INT(pl_kv_fork(kv, sa, sd), PL_OK);
  CHECK_EQ_INT(pl_kv_allocate_slots(kv, sa, pa, 1, 0), PL_OK);
  CHECK_EQ_INT(pl_kv_allocate_slots(kv, sd, pa, 1, 0), PL_OK);
  CHECK_EQ_INT(pl_kv_num_pending_copies(kv), 0);
  CK(kv);
  /* Three sharers of a partial block: two copies. */
  pl_kv_seq_free(kv, sc);
  pl_kv_seq_free(kv, sd);
  sc = open_seq(kv, 0);
  sd = open_seq(kv, 0);
  CHECK_EQ_INT(pl_kv_fork(kv, sa, sc), PL_OK);
  CHECK_EQ_INT(pl_kv_fork(kv, sa, sd), PL_OK);
  int32_t last = pl_kv_seq_blocks(kv, sa)[2];
  CHECK_EQ_INT(ref(kv, last), 3);
  CHECK_EQ_INT(pl_kv_allocate_slots(kv, sd, pa, 1, 0), PL_OK);
  CHECK_EQ_INT(pl_kv_allocate_slots(kv, sc, pa, 1, 0), PL_OK);
  CHECK_EQ_INT(pl_kv_allocate_slots(kv, sa, pa, 1, 0), PL_OK);
  CHECK_EQ_INT(pl_kv_num_pending_copies(kv), 2);
  CHECK_EQ_INT(pl_kv_seq_blocks(kv, sa)[2], last);
  CK(kv);
  /* A copy into a block whose owner is freed before the step runs is dropped. */
  CHECK_EQ_INT(pl_kv_take_copies(kv, src, dst, 1), PL_ERANGE);
  pl_kv_seq_free(kv, sd);
  CHECK_EQ_INT(pl_kv_num_pending_copies(kv), 1);
  CHECK_EQ_INT(pl_kv_take_copies(kv, src, dst, 8), 1);
  CHECK_EQ_INT(dst[0], pl_kv_seq_blocks(kv, sc)[2]);
  CK(kv);
  /* Fork is refused into a non-empty or closed sequence. */
  CHECK_EQ_INT(pl_kv_fork(kv, sa, sc), PL_ESTATE);
  CHECK_EQ_INT(pl_kv_fork(kv, sa, 3), PL_EINVAL);
  CHECK_EQ_INT(pl_kv_fork(kv, sa, sa), PL_EINVAL);
  /* Freeing the parent keeps the child's blocks alive. */
  pl_kv_seq_free(kv, sa);
  CHECK_EQ_INT(ref(kv, b0), 1);
  CK(kv);
  pl_kv_seq_free(kv, sc);
  pl_kv_cache_get_stats(kv, &st);
  CHECK_EQ_INT(st.blocks_used, 0);
  pl_kv_cache_destroy(kv);
}

static void test_static_reserve_and_stale_hits(void) {
  pl_kv_cache *kv = make(21, 4, 4, 32, 1); /* 20 usable, 8 per seq */
  int32_t p[32];
  seq_tokens(p, 32, 1);
  int sa = open_seq(kv, 0);
  CHECK_EQ_INT(pl_kv_allocate_slots(kv, sa, p, 5, 32), PL_OK);
  CHECK_EQ_INT(pl_kv_seq_num_blocks(kv, sa), 8);
  CHECK_EQ_INT(pl_kv_seq_num_tokens(kv, sa), 5);
  CHECK_EQ_INT(pl_kv_allocate_slots(kv, sa, p, 20, 32), PL_OK); /* within the reservation */
  CHECK_EQ_INT(pl_kv_cache_num_free_blocks(kv), 12);
  CK(kv);
  /* Fork shares only the written part; the child reserves its own on its next allocation. */
  int sc = open_seq(kv, 0);
  CHECK_EQ_INT(pl_kv_fork(kv, sa, sc), PL_OK);
  CHECK_EQ_INT(pl_kv_seq_num_blocks(kv, sc), 7);
  CHECK_EQ_INT(pl_kv_allocate_slots(kv, sc, p, 1, 32), PL_OK);
  CHECK_EQ_INT(pl_kv_seq_num_blocks(kv, sc), 8);
  CHECK_EQ_INT(pl_kv_num_pending_copies(kv), 1); /* its partial block 6 was shared */
  CK(kv);
  /* pl_kv_reserve: reservation plus a private tail right away (static fork). */
  int32_t src[4], dst[4];
  pl_kv_take_copies(kv, src, dst, 4);
  pl_kv_seq_free(kv, sc);
  sc = open_seq(kv, 0);
  CHECK_EQ_INT(pl_kv_fork(kv, sa, sc), PL_OK);
  int32_t shared = pl_kv_seq_blocks(kv, sa)[6];
  CHECK_EQ_INT(pl_kv_cache_num_free_blocks(kv), 12);
  CHECK_EQ_INT(pl_kv_reserve(kv, sc, 64), PL_ERANGE);
  CHECK_EQ_INT(pl_kv_reserve(kv, sc, 32), PL_OK);
  CHECK_EQ_INT(pl_kv_cache_num_free_blocks(kv), 10); /* tail copy + the 8th block */
  CHECK_EQ_INT(pl_kv_seq_num_blocks(kv, sc), 8);
  CHECK_EQ_INT(pl_kv_seq_num_tokens(kv, sc), 25);
  CHECK_EQ_INT(ref(kv, shared), 1);
  CHECK_EQ_INT(pl_kv_take_copies(kv, src, dst, 4), 1);
  CHECK(src[0] == shared && dst[0] == pl_kv_seq_blocks(kv, sc)[6], "tail copied");
  CHECK_EQ_INT(pl_kv_allocate_slots(kv, sc, p, 7, 32), PL_OK);
  CHECK_EQ_INT(pl_kv_allocate_slots(kv, sa, p, 7, 32), PL_OK);
  CHECK_EQ_INT(pl_kv_cache_num_free_blocks(kv), 10); /* nobody needed another block */
  CHECK_EQ_INT(pl_kv_num_pending_copies(kv), 0);
  CHECK_EQ_INT(pl_kv_reserve(kv, sc, 0), PL_OK); /* private already: no-op */
  CHECK_EQ_INT(pl_kv_cache_num_free_blocks(kv), 10);
  CK(kv);
  /* Stale pending hits: another allocation may have evicted them. */
  pl_kv_seq_free(kv, sc);
  int sd = open_seq(kv, 0);
  CHECK_EQ_INT(pl_kv_lookup_prefix(kv, sd, p, 12), 8);
  int se = open_seq(kv, 0);
  CHECK_EQ_INT(pl_kv_allocate_slots(kv, se, p, 1, 0), PL_OK);
  CHECK_EQ_INT(pl_kv_allocate_slots(kv, sd, p, 4, 0), PL_ESTATE);
  CHECK_EQ_INT(pl_kv_lookup_prefix(kv, sd, p, 12), 8); /* a fresh lookup is fine */
  CHECK_EQ_INT(pl_kv_allocate_slots(kv, sd, p, 4, 0), PL_OK);
  CHECK_EQ_INT(pl_kv_lookup_prefix(kv, sd, p, 12), PL_ESTATE); /* not empty any more */
  CK(kv);
  pl_kv_seq_free(kv, sa);
  pl_kv_seq_free(kv, sd);
  pl_kv_seq_free(kv, se);
  CHECK_EQ_INT(pl_kv_cache_num_free_blocks(kv), 20);
  pl_kv_take_copies(kv, p, p + 8, 8);
  CK(kv);
  pl_kv_cache_destroy(kv);
}

static void test_caching_off_and_stats(void) {
  pl_kv_cache *kv = make(9, 2, 2, 16, 0);
  int32_t p[8] = {1, 2, 3, 4, 5, 6, 7, 8};
  int sa = open_seq(kv, 0);
  CHECK_EQ_INT(pl_kv_lookup_prefix(kv, sa, p, 8), 0);
  CHECK_EQ_INT(pl_kv_allocate_slots(kv, sa, p, 8, 0), PL_OK);
  pl_kv_seq_free(kv, sa);
  sa = open_seq(kv, 0);
  CHECK_EQ_INT(pl_kv_lookup_prefix(kv, sa, p, 8), 0);
  CHECK_EQ_INT(pl_kv_allocate_slots(kv, sa, p, 3, 0), PL_OK);
  pl_kv_stats st;
  pl_kv_cache_get_stats(kv, &st);
  CHECK_EQ_INT(st.blocks_total, 8);
  CHECK_EQ_INT(st.blocks_used, 2);
  CHECK_EQ_INT(st.blocks_peak_used, 4);
  CHECK_NEAR(st.usage, 0.25, 1e-12);
  CHECK_EQ_INT(st.blocks_cached_free, 0);
  CHECK_EQ_INT(st.prefix_hits_tokens, 0);
  CHECK_EQ_INT(pl_block_pool_num_cached(pl_kv_cache_pool(kv)), 0);
  CK(kv);
  pl_kv_seq_free(kv, sa);
  pl_kv_cache_destroy(kv);
  pl_kv_cache_params bad = {.num_blocks = 1, .block_size = 4, .max_seqs = 1, .max_model_len = 8};
  pl_kv_cache *k2 = (pl_kv_cache *)1;
  CHECK_EQ_INT(pl_kv_cache_create(&bad, &k2), PL_EINVAL);
  CHECK(k2 == NULL, "out cleared");
}

static void test_discard(void) {
  pl_kv_cache *kv = make(17, 2, 3, 32, 1);
  int32_t p[16];
  seq_tokens(p, 16, 1);
  int sa = open_seq(kv, 0);
  CHECK_EQ_INT(pl_kv_allocate_slots(kv, sa, p, 3, 0), PL_OK); /* [1 2] cached, [3 .] */
  CHECK_EQ_INT(pl_kv_allocate_slots(kv, sa, p, 6, 0), PL_OK); /* completes 4 more blocks */
  CHECK_EQ_INT(pl_block_pool_num_cached(pl_kv_cache_pool(kv)), 4);
  int sb = open_seq(kv, 0);
  CHECK_EQ_INT(pl_kv_fork(kv, sa, sb), PL_OK); /* shares blocks: they stay cached */
  pl_kv_seq_free(kv, sb);
  /* The 6 tokens from position 3 on were never written: blocks 1..3 leave the cache. */
  pl_kv_seq_discard(kv, sa, 3);
  CHECK_EQ_INT(pl_block_pool_num_cached(pl_kv_cache_pool(kv)), 1);
  CHECK_EQ_INT(pl_kv_cache_num_free_blocks(kv), 16);
  CK(kv);
  int sc = open_seq(kv, 0);
  CHECK_EQ_INT(pl_kv_lookup_prefix(kv, sc, p, 10), 2);
  pl_kv_seq_free(kv, sc);
  pl_kv_cache_destroy(kv);
}

static void test_reset_prefix_cache(void) {
  pl_kv_cache *kv = make(9, 2, 3, 16, 1);
  int32_t p[8] = {1, 2, 3, 4, 5, 6, 7, 8};
  int sa = open_seq(kv, 0);
  CHECK_EQ_INT(pl_kv_allocate_slots(kv, sa, p, 8, 0), PL_OK);
  int sb = open_seq(kv, 0);
  CHECK_EQ_INT(pl_kv_allocate_slots(kv, sb, p, 4, 0), PL_OK); /* duplicates: uncached */
  pl_kv_seq_free(kv, sb);
  int sc = open_seq(kv, 0);
  CHECK_EQ_INT(pl_kv_lookup_prefix(kv, sc, p, 8), 6); /* pending hits ... */
  pl_kv_cache_reset_prefix_cache(kv);                 /* ... dropped with the cache */
  CHECK_EQ_INT(pl_block_pool_num_cached(pl_kv_cache_pool(kv)), 0);
  CHECK_EQ_INT(pl_kv_seq_num_blocks(kv, sa), 4); /* still allocated */
  CK(kv);
  CHECK_EQ_INT(pl_kv_allocate_slots(kv, sc, p, 8, 0), PL_OK); /* no hits taken */
  CHECK_EQ_INT(pl_kv_seq_num_tokens(kv, sc), 8);
  CHECK(pl_kv_seq_blocks(kv, sc)[0] != pl_kv_seq_blocks(kv, sa)[0], "nothing shared");
  CK(kv);
  pl_kv_seq_free(kv, sa);
  pl_kv_seq_free(kv, sc);
  CK(kv);
  pl_kv_cache_destroy(kv);
}

/* The checker must notice a table entry the pool does not count. */
static void test_checker_detects(void) {
  pl_kv_cache *kv = make(9, 2, 2, 16, 1);
  int32_t p[4] = {1, 2, 3, 4};
  int sa = open_seq(kv, 0);
  CHECK_EQ_INT(pl_kv_allocate_slots(kv, sa, p, 3, 0), PL_OK);
  int32_t *t = (int32_t *)pl_kv_seq_blocks(kv, sa);
  int32_t keep = t[1];
  t[1] = t[0]; /* same block twice, another's count off */
  CHECK(pl_kv_cache_check(kv) != PL_OK, "corrupt table detected");
  t[1] = 7;
  CHECK(pl_kv_cache_check(kv) != PL_OK, "uncounted reference detected");
  t[1] = keep;
  CK(kv);
  pl_kv_cache_destroy(kv);
}

int main(void) {
  size_t live0 = pl_alloc_live_bytes();
  test_growth_and_limits();
  test_all_or_nothing();
  test_prefix_hits_touch_evict();
  test_extra_key();
  test_forced_collisions();
  test_fork_cow();
  test_static_reserve_and_stale_hits();
  test_caching_off_and_stats();
  test_discard();
  test_reset_prefix_cache();
  test_checker_detects();
  CHECK_EQ_INT(pl_alloc_live_bytes(), live0);
  return check_summary("test_kv_cache");
}
