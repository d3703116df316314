/* The KV block pool: a fixed array of block records, a doubly linked LRU free list, and the
 * prefix-cache map (content -> cached block). Block ids and token counts only, no tensors.
 *
 *   free list (by block id):  head -> 7 <-> 3 <-> 12 <-> ... <-> 5 <- tail
 *   allocation pops the head (the least recently freed block); freeing appends to the tail;
 *   a prefix-cache hit on a free block unlinks it from the middle in O(1) ("touch").
 *
 * Invariants (pl_block_pool_check):
 *  - block 0 is the null block: ref_cnt 0, never in the free list, never allocated;
 *  - every other block is in the free list iff ref_cnt == 0;
 *  - a block is cached iff cid != 0 iff it sits in the hash map at map_slot; a cached block
 *    is full and its tokens are stored; no two cached blocks have the same identity.
 * A cached block that is freed stays cached ("cached-free") until it is reallocated: the
 * allocation evicts it (removes it from the map). Sized once at creation; nothing allocates
 * afterwards.
 *
 * Cache identity (exact, never trusts a hash): a cached block is identified by
 * (parent_cid, extra_key, its block_size token ids), where parent_cid is the instance id of
 * the cached block holding the previous block's content (0 for a sequence's first block).
 * The 64-bit chain hash only picks the map bucket, so a hash collision costs a probe, never a
 * wrong hit. Not thread-safe. */
#ifndef PL_CORE_BLOCK_POOL_H
#define PL_CORE_BLOCK_POOL_H
#include <stdint.h>

#include "pagellm.h" /* status codes */

#define PL_BLOCK_NIL (-1) /* "no block" in links and lookups */

typedef struct pl_block {
  int32_t ref_cnt;     /* block-table references (sequences holding it) */
  int32_t prev_free;   /* free-list neighbours (block ids), PL_BLOCK_NIL at the ends or */
  int32_t next_free;   /*   when the block is not free */
  int32_t map_slot;    /* slot in the hash map, -1 when not cached */
  uint64_t hash;       /* chain hash of the content (valid when cid != 0) */
  uint64_t cid;        /* cache instance id (unique per caching event), 0 = not cached */
  uint64_t parent_cid; /* instance id of the parent content, 0 = first block */
  uint64_t extra_key;  /* extra cache key (e.g. hashed cache salt) */
} pl_block;

typedef struct pl_block_pool pl_block_pool;

/* num_blocks counts the null block (so num_blocks - 1 are usable; must be >= 2);
 * block_size >= 1 tokens. enable_caching = 0 skips the map and token storage.
 * Errors: PL_EINVAL, PL_ENOMEM (nothing leaked). */
int pl_block_pool_create(int num_blocks, int block_size, int enable_caching,
                         pl_block_pool **out);
void pl_block_pool_destroy(pl_block_pool *p); /* NULL ok */

int pl_block_pool_num_blocks(const pl_block_pool *p);  /* including the null block */
int pl_block_pool_block_size(const pl_block_pool *p);
int pl_block_pool_caching(const pl_block_pool *p);     /* 1 if prefix caching is on */
int pl_block_pool_num_free(const pl_block_pool *p);    /* free list length (incl. cached) */
int pl_block_pool_num_cached(const pl_block_pool *p);  /* blocks in the map */
int pl_block_pool_num_cached_free(const pl_block_pool *p); /* cached with ref_cnt 0 */
int64_t pl_block_pool_num_evictions(const pl_block_pool *p);

/* Read-only view of block id (0 <= id < num_blocks). */
const pl_block *pl_block_pool_get(const pl_block_pool *p, int32_t id);
/* Stored token ids [block_size] of a cached block (NULL when caching is off). */
const int32_t *pl_block_pool_tokens(const pl_block_pool *p, int32_t id);

/* Take n blocks from the head of the free list into out[0..n) in order, each with ref_cnt 1;
 * a taken block that was cached is evicted. All or nothing: PL_ENOSPACE (no change) when
 * fewer than n are free. */
int pl_block_pool_alloc(pl_block_pool *p, int n, int32_t *out);

/* Drop one reference from each of ids[0..n) in that order; a block reaching 0 is appended to
 * the free-list tail (still cached if it was). Pass a sequence's blocks tail first, so its
 * tail is evicted before its head. Each id must be referenced. */
void pl_block_pool_free(pl_block_pool *p, const int32_t *ids, int n);

/* Add one reference to each of ids[0..n); a free block leaves the free list (a prefix hit). */
void pl_block_pool_touch(pl_block_pool *p, const int32_t *ids, int n);

/* The cached block with identity (parent_cid, extra_key, tokens[block_size]) whose chain hash
 * is `hash`, or PL_BLOCK_NIL. No state change. */
int32_t pl_block_pool_lookup(const pl_block_pool *p, uint64_t hash, uint64_t parent_cid,
                             uint64_t extra_key, const int32_t *tokens);

/* Offer full, referenced, uncached block id to the cache. If a block with the same identity is
 * already cached, id stays uncached and that block's cid is returned; otherwise id is cached
 * under a fresh cid, which is returned. Returns 0 when caching is off. */
uint64_t pl_block_pool_cache(pl_block_pool *p, int32_t id, uint64_t hash, uint64_t parent_cid,
                             uint64_t extra_key, const int32_t *tokens);

/* Remove block id from the cache now (no-op if it is not cached): its K/V will never be
 * written after all. Its ref count and free-list place are unchanged. */
void pl_block_pool_uncache(pl_block_pool *p, int32_t id);

/* Evict every cached block from the map (referenced ones stay allocated, just uncached).
 * For a KV whose contents can no longer be trusted, e.g. after a failed forward pass. */
void pl_block_pool_uncache_all(pl_block_pool *p);

/* Copy up to cap ids of the free list, head (next to be allocated) first; returns the length
 * of the list. For tests and debugging. */
int pl_block_pool_free_list(const pl_block_pool *p, int32_t *out, int cap);

/* Verify the invariants above; PL_EINTERNAL with a message naming the first violation. */
int pl_block_pool_check(const pl_block_pool *p);
#endif
