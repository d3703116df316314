/* Block pool: LRU free list order, touch, all-or-nothing allocation, the prefix-cache map
 * (exact identity, eviction of the oldest cached-free block, collisions, deletion), and that
 * the invariant checker catches corruption. */
#include <string.h>

#include "check.h"
#include "core/block_pool.h"
#include "util/alloc.h"

#define NB 9 /* 8 usable + null */

static int free_list_is(const pl_block_pool *p, const int32_t *want, int n) {
  int32_t got[64];
  int len = pl_block_pool_free_list(p, got, 64);
  if (len != n)
    return 0;
  return memcmp(got, want, (size_t)n * sizeof *got) == 0;
}

static void test_lru_alloc_free_touch(void) {
  pl_block_pool *p;
  CHECK_EQ_INT(pl_block_pool_create(NB, 4, 0, &p), PL_OK);
  CHECK_EQ_INT(pl_block_pool_num_free(p), NB - 1);
  int32_t init[] = {1, 2, 3, 4, 5, 6, 7, 8};
  CHECK(free_list_is(p, init, 8), "initial free list is 1..8");
  CHECK_EQ_INT(pl_block_pool_check(p), PL_OK);

  int32_t a[3];
  CHECK_EQ_INT(pl_block_pool_alloc(p, 3, a), PL_OK);
  CHECK(a[0] == 1 && a[1] == 2 && a[2] == 3, "allocation takes the head: %d %d %d", a[0], a[1],
        a[2]);
  CHECK_EQ_INT(pl_block_pool_get(p, 2)->ref_cnt, 1);
  CHECK_EQ_INT(pl_block_pool_num_free(p), 5);
  CHECK_EQ_INT(pl_block_pool_check(p), PL_OK);

  /* Freed blocks go to the tail in the order given. */
  int32_t fr[] = {3, 1};
  pl_block_pool_free(p, fr, 2);
  int32_t want1[] = {4, 5, 6, 7, 8, 3, 1};
  CHECK(free_list_is(p, want1, 7), "freed blocks appended to the tail");
  CHECK_EQ_INT(pl_block_pool_check(p), PL_OK);

  /* Touch unlinks from the middle, the head and the tail. */
  int32_t t1[] = {6, 4, 1};
  pl_block_pool_touch(p, t1, 3);
  int32_t want2[] = {5, 7, 8, 3};
  CHECK(free_list_is(p, want2, 4), "touch unlinks from anywhere");
  CHECK_EQ_INT(pl_block_pool_get(p, 6)->ref_cnt, 1);
  /* Touching a used block only bumps its count. */
  pl_block_pool_touch(p, t1, 1);
  CHECK_EQ_INT(pl_block_pool_get(p, 6)->ref_cnt, 2);
  CHECK_EQ_INT(pl_block_pool_check(p), PL_OK);
  pl_block_pool_free(p, t1, 1);
  CHECK_EQ_INT(pl_block_pool_get(p, 6)->ref_cnt, 1);
  CHECK(free_list_is(p, want2, 4), "a block still referenced is not freed");

  /* All or nothing. */
  int32_t big[8] = {-7, -7, -7, -7, -7, -7, -7, -7};
  CHECK_EQ_INT(pl_block_pool_alloc(p, 5, big), PL_ENOSPACE);
  CHECK(big[0] == -7, "failed allocation writes nothing");
  CHECK(free_list_is(p, want2, 4), "failed allocation changes nothing");
  CHECK_EQ_INT(pl_block_pool_alloc(p, 4, big), PL_OK);
  CHECK(big[0] == 5 && big[1] == 7 && big[2] == 8 && big[3] == 3, "LRU order");
  CHECK_EQ_INT(pl_block_pool_num_free(p), 0);
  for (int i = 0; i < 4; i++)
    CHECK(big[i] != 0, "null block never allocated");
  CHECK_EQ_INT(pl_block_pool_alloc(p, 1, big), PL_ENOSPACE);
  CHECK_EQ_INT(pl_block_pool_alloc(p, 0, big), PL_OK);
  CHECK_EQ_INT(pl_block_pool_check(p), PL_OK);
  pl_block_pool_destroy(p);
}

static void fill(int32_t *t, int n, int v) {
  for (int i = 0; i < n; i++)
    t[i] = v + i;
}

static void test_cache_identity_and_eviction(void) {
  pl_block_pool *p;
  CHECK_EQ_INT(pl_block_pool_create(NB, 4, 1, &p), PL_OK);
  int32_t a[4], tk[4], other[4];
  CHECK_EQ_INT(pl_block_pool_alloc(p, 4, a), PL_OK); /* 1 2 3 4 */
  fill(tk, 4, 100);
  uint64_t c1 = pl_block_pool_cache(p, a[0], 111, 0, 0, tk);
  CHECK(c1 != 0, "cached");
  CHECK_EQ_INT(pl_block_pool_get(p, a[0])->cid, c1);
  CHECK_EQ_INT(pl_block_pool_num_cached(p), 1);
  CHECK_EQ_INT(pl_block_pool_lookup(p, 111, 0, 0, tk), a[0]);
  /* Same hash, different tokens: a collision, rejected. */
  fill(other, 4, 200);
  CHECK_EQ_INT(pl_block_pool_lookup(p, 111, 0, 0, other), PL_BLOCK_NIL);
  /* Same tokens, different parent or extra key: a different identity. */
  CHECK_EQ_INT(pl_block_pool_lookup(p, 111, 9, 0, tk), PL_BLOCK_NIL);
  CHECK_EQ_INT(pl_block_pool_lookup(p, 111, 0, 5, tk), PL_BLOCK_NIL);
  CHECK_EQ_INT(pl_block_pool_lookup(p, 112, 0, 0, tk), PL_BLOCK_NIL);
  /* The colliding block caches separately; both found. */
  uint64_t c2 = pl_block_pool_cache(p, a[1], 111, 0, 0, other);
  CHECK(c2 != 0 && c2 != c1, "distinct instance");
  CHECK_EQ_INT(pl_block_pool_lookup(p, 111, 0, 0, other), a[1]);
  CHECK_EQ_INT(pl_block_pool_lookup(p, 111, 0, 0, tk), a[0]);
  /* A duplicate of an existing identity stays uncached and gets the existing cid. */
  uint64_t c3 = pl_block_pool_cache(p, a[2], 111, 0, 0, tk);
  CHECK_EQ_INT(c3, c1);
  CHECK_EQ_INT(pl_block_pool_get(p, a[2])->cid, 0);
  CHECK_EQ_INT(pl_block_pool_num_cached(p), 2);
  /* Child of c1. */
  int32_t tk2[4];
  fill(tk2, 4, 300);
  uint64_t c4 = pl_block_pool_cache(p, a[3], 222, c1, 0, tk2);
  CHECK_EQ_INT(pl_block_pool_lookup(p, 222, c1, 0, tk2), a[3]);
  CHECK_EQ_INT(pl_block_pool_check(p), PL_OK);

  /* Free: cached blocks stay cached (cached-free). Order: a3, a0, a1, a2. */
  int32_t fr[] = {a[3], a[0], a[1], a[2]};
  pl_block_pool_free(p, fr, 4);
  CHECK_EQ_INT(pl_block_pool_num_cached_free(p), 3);
  CHECK_EQ_INT(pl_block_pool_lookup(p, 222, c1, 0, tk2), a[3]);
  CHECK_EQ_INT(pl_block_pool_check(p), PL_OK);
  /* Free list: 5 6 7 8 a3 a0 a1 a2. Taking 4 uncached blocks evicts nothing. */
  int32_t b[5];
  CHECK_EQ_INT(pl_block_pool_alloc(p, 4, b), PL_OK);
  CHECK_EQ_INT(pl_block_pool_num_evictions(p), 0);
  /* Touch a0 (a hit): it leaves the free list; the oldest cached-free is now a3. */
  pl_block_pool_touch(p, &a[0], 1);
  CHECK_EQ_INT(pl_block_pool_num_cached_free(p), 2);
  CHECK_EQ_INT(pl_block_pool_alloc(p, 1, b + 4), PL_OK);
  CHECK_EQ_INT(b[4], a[3]);
  CHECK_EQ_INT(pl_block_pool_num_evictions(p), 1);
  CHECK_EQ_INT(pl_block_pool_get(p, a[3])->cid, 0);
  CHECK_EQ_INT(pl_block_pool_lookup(p, 222, c1, 0, tk2), PL_BLOCK_NIL);
  CHECK_EQ_INT(pl_block_pool_lookup(p, 111, 0, 0, tk), a[0]);
  CHECK_EQ_INT(pl_block_pool_num_cached_free(p), 1);
  CHECK_EQ_INT(pl_block_pool_check(p), PL_OK);
  /* Next eviction: a1 (a2 was never cached). */
  int32_t c;
  CHECK_EQ_INT(pl_block_pool_alloc(p, 1, &c), PL_OK);
  CHECK_EQ_INT(c, a[1]);
  CHECK_EQ_INT(pl_block_pool_num_evictions(p), 2);
  CHECK_EQ_INT(pl_block_pool_num_cached(p), 1);
  CHECK_EQ_INT(pl_block_pool_check(p), PL_OK);
  (void)c4;
  pl_block_pool_destroy(p);
}

/* Many cached blocks whose hashes crowd a few map slots; random evictions must keep every
 * survivor reachable (backward-shift deletion). A plain array is the reference. */
static void test_map_churn(void) {
  enum { N = 200, BS = 2 };
  pl_block_pool *p;
  CHECK_EQ_INT(pl_block_pool_create(N + 1, BS, 1, &p), PL_OK);
  uint64_t rng = 12345;
  int32_t ids[N];
  uint64_t hashes[N + 1];
  int cached[N + 1] = {0};
  for (int round = 0; round < 30; round++) {
    int nfree = pl_block_pool_num_free(p);
    int n = nfree < 40 ? nfree : 40;
    CHECK_EQ_INT(pl_block_pool_alloc(p, n, ids), PL_OK);
    for (int i = 0; i < n; i++)
      cached[ids[i]] = 0; /* reallocation evicted it */
    for (int i = 0; i < n; i++) {
      rng = rng * 6364136223846793005ull + 1442695040888963407ull;
      /* Few distinct home slots (map capacity 512): 16 homes around the wrap-around
       * (504..511, 0..7), each shared by 4 different hash values. */
      uint64_t h = 504 + (rng >> 33) % 16 + ((rng >> 40) & 3) * 512;
      int32_t tk[BS] = {ids[i], round};
      hashes[ids[i]] = h;
      pl_block_pool_cache(p, ids[i], h, 0, 0, tk);
      cached[ids[i]] = 1;
    }
    pl_block_pool_free(p, ids, n);
    CHECK_EQ_INT(pl_block_pool_check(p), PL_OK);
  }
  int ok = 1;
  for (int b = 1; b <= N; b++) {
    if (!cached[b])
      continue;
    const int32_t *tk = pl_block_pool_tokens(p, b);
    if (pl_block_pool_lookup(p, hashes[b], 0, 0, tk) != b)
      ok = 0;
  }
  CHECK(ok, "every cached block still reachable after churn");
  int ncached = 0;
  for (int b = 1; b <= N; b++)
    ncached += cached[b];
  CHECK_EQ_INT(pl_block_pool_num_cached(p), ncached);
  pl_block_pool_destroy(p);
}

static void test_caching_off_and_params(void) {
  pl_block_pool *p = (pl_block_pool *)1;
  CHECK_EQ_INT(pl_block_pool_create(1, 4, 1, &p), PL_EINVAL);
  CHECK(p == NULL, "out cleared");
  CHECK_EQ_INT(pl_block_pool_create(4, 0, 1, &p), PL_EINVAL);
  CHECK_EQ_INT(pl_block_pool_create(3, 2, 0, &p), PL_OK);
  int32_t a, tk[2] = {1, 2};
  CHECK_EQ_INT(pl_block_pool_alloc(p, 1, &a), PL_OK);
  CHECK_EQ_INT(pl_block_pool_cache(p, a, 1, 0, 0, tk), 0);
  CHECK_EQ_INT(pl_block_pool_lookup(p, 1, 0, 0, tk), PL_BLOCK_NIL);
  CHECK_EQ_INT(pl_block_pool_num_cached(p), 0);
  CHECK(pl_block_pool_tokens(p, a) == NULL, "no token storage");
  CHECK_EQ_INT(pl_block_pool_check(p), PL_OK);
  pl_block_pool_destroy(p);
  pl_block_pool_destroy(NULL);
}

/* The checker must notice corruption (a checker that always passes proves nothing). */
static void test_checker_detects(void) {
  pl_block_pool *p;
  CHECK_EQ_INT(pl_block_pool_create(NB, 2, 1, &p), PL_OK);
  int32_t a[2], tk[2] = {7, 8};
  pl_block_pool_alloc(p, 2, a);
  pl_block_pool_cache(p, a[0], 5, 0, 0, tk);
  pl_block *b = (pl_block *)pl_block_pool_get(p, a[1]);
  b->ref_cnt = 0; /* used but "free" */
  CHECK(pl_block_pool_check(p) != PL_OK, "ref_cnt 0 outside the free list detected");
  b->ref_cnt = 1;
  CHECK_EQ_INT(pl_block_pool_check(p), PL_OK);
  pl_block *n = (pl_block *)pl_block_pool_get(p, 0);
  n->ref_cnt = 1;
  CHECK(pl_block_pool_check(p) != PL_OK, "null block use detected");
  n->ref_cnt = 0;
  pl_block *c = (pl_block *)pl_block_pool_get(p, a[0]);
  c->hash = 6; /* unreachable from its home slot */
  CHECK(pl_block_pool_check(p) != PL_OK, "stale hash detected");
  c->hash = 5;
  /* A second block claiming the same identity (not in the map) is detected. */
  pl_block *d = (pl_block *)pl_block_pool_get(p, a[1]);
  d->cid = c->cid;
  CHECK(pl_block_pool_check(p) != PL_OK, "unmapped cached block detected");
  d->cid = 0;
  CHECK_EQ_INT(pl_block_pool_check(p), PL_OK);
  pl_block_pool_destroy(p);
}

int main(void) {
  size_t live0 = pl_alloc_live_bytes();
  test_lru_alloc_free_touch();
  test_cache_identity_and_eviction();
  test_map_churn();
  test_caching_off_and_params();
  test_checker_detects();
  CHECK_EQ_INT(pl_alloc_live_bytes(), live0);
  return check_summary("test_block_pool");
}
