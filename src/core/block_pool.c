/* KV block pool: block records, the LRU free list and the prefix-cache map (see block_pool.h).
 *
 * The map is open addressing with linear probing over int32 block ids (PL_BLOCK_NIL = empty),
 * capacity a power of two >= 2 * num_blocks so the load factor stays <= 1/2. Deletion shifts
 * later entries of the probe run back (no tombstones), so churn never degrades lookups. */
#include "core/block_pool.h"

#include <string.h>

#include "util/alloc.h"
#include "util/error.h"

struct pl_block_pool {
  int num_blocks;       /* including the null block 0 */
  int block_size;       /* tokens per block */
  int caching;          /* prefix caching on */
  pl_block *blocks;     /* [num_blocks] */
  int32_t free_head;    /* next block to allocate (LRU), PL_BLOCK_NIL when empty */
  int32_t free_tail;    /* most recently freed */
  int num_free;         /* free-list length */
  int32_t *map;         /* [map_cap] block ids, PL_BLOCK_NIL = empty slot */
  uint32_t map_mask;    /* map_cap - 1 */
  int32_t *tokens;      /* [num_blocks][block_size] token ids of cached blocks */
  int num_cached;       /* blocks in the map */
  int num_cached_free;  /* cached blocks with ref_cnt 0 */
  uint64_t next_cid;    /* next cache instance id (starts at 1; 0 = none) */
  int64_t evictions;    /* cached blocks evicted by allocation */
  uint8_t *scratch;     /* [num_blocks] marks for the checker */
};

/* ---- free list ---------------------------------------------------------------------- */

static void list_unlink(pl_block_pool *p, int32_t id) {
  pl_block *b = &p->blocks[id];
  if (b->prev_free != PL_BLOCK_NIL)
    p->blocks[b->prev_free].next_free = b->next_free;
  else
    p->free_head = b->next_free;
  if (b->next_free != PL_BLOCK_NIL)
    p->blocks[b->next_free].prev_free = b->prev_free;
  else
    p->free_tail = b->prev_free;
  b->prev_free = b->next_free = PL_BLOCK_NIL;
  p->num_free--;
}

static void list_append(pl_block_pool *p, int32_t id) {
  pl_block *b = &p->blocks[id];
  b->prev_free = p->free_tail;
  b->next_free = PL_BLOCK_NIL;
  if (p->free_tail != PL_BLOCK_NIL)
    p->blocks[p->free_tail].next_free = id;
  else
    p->free_head = id;
  p->free_tail = id;
  p->num_free++;
}

/* ---- hash map ------------------------------------------------------------------------ */

static uint32_t home_slot(const pl_block_pool *p, uint64_t hash) {
  /* Mix the high bits in: a forced or weak hash may vary only there. */
  return (uint32_t)(hash ^ (hash >> 32)) & p->map_mask;
}

static int same_identity(const pl_block_pool *p, int32_t id, uint64_t hash, uint64_t parent_cid,
                         uint64_t extra_key, const int32_t *tokens) {
  const pl_block *b = &p->blocks[id];
  return b->hash == hash && b->parent_cid == parent_cid && b->extra_key == extra_key &&
         memcmp(p->tokens + (size_t)id * (size_t)p->block_size, tokens,
                (size_t)p->block_size * sizeof(int32_t)) == 0;
}

static void map_insert(pl_block_pool *p, int32_t id) {
  uint32_t i = home_slot(p, p->blocks[id].hash);
  while (p->map[i] != PL_BLOCK_NIL)
    i = (i + 1) & p->map_mask;
  p->map[i] = id;
  p->blocks[id].map_slot = (int32_t)i;
}

/* Remove the entry at slot i, then move back any later entry of the run whose home slot is
 * not cyclically inside (i, j] so that every remaining entry stays reachable from its home. */
static void map_remove(pl_block_pool *p, uint32_t i) {
  p->blocks[p->map[i]].map_slot = -1;
  p->map[i] = PL_BLOCK_NIL;
  uint32_t j = i;
  for (;;) {
    j = (j + 1) & p->map_mask;
    int32_t id = p->map[j];
    if (id == PL_BLOCK_NIL)
      return;
    uint32_t k = home_slot(p, p->blocks[id].hash);
    int stays = (i <= j) ? (i < k && k <= j) : (i < k || k <= j);
    if (stays)
      continue;
    p->map[i] = id;
    p->blocks[id].map_slot = (int32_t)i;
    p->map[j] = PL_BLOCK_NIL;
    i = j;
  }
}

static void uncache(pl_block_pool *p, int32_t id) {
  pl_block *b = &p->blocks[id];
  map_remove(p, (uint32_t)b->map_slot);
  b->cid = 0;
  b->parent_cid = 0;
  b->hash = 0;
  b->extra_key = 0;
  p->num_cached--;
}

/* ---- lifetime ------------------------------------------------------------------------ */

int pl_block_pool_create(int num_blocks, int block_size, int enable_caching,
                         pl_block_pool **out) {
  *out = NULL;
  if (num_blocks < 2 || block_size < 1 || num_blocks > (1 << 30) || block_size > (1 << 20))
    return pl_fail(PL_EINVAL, "block pool: need >= 2 blocks of >= 1 token (got %d x %d)",
                   num_blocks, block_size);
  if (enable_caching && (int64_t)num_blocks * block_size > ((int64_t)1 << 40))
    return pl_fail(PL_EINVAL, "block pool: %d x %d tokens is too large", num_blocks, block_size);
  pl_block_pool *p = pl_calloc(1, sizeof *p);
  if (!p)
    return pl_fail(PL_ENOMEM, "block pool: out of memory");
  p->num_blocks = num_blocks;
  p->block_size = block_size;
  p->caching = enable_caching ? 1 : 0;
  p->next_cid = 1;
  p->blocks = pl_malloc((size_t)num_blocks * sizeof *p->blocks);
  p->scratch = pl_malloc((size_t)num_blocks);
  if (!p->blocks || !p->scratch)
    goto oom;
  if (p->caching) {
    uint32_t cap = 2;
    while (cap < 2u * (uint32_t)num_blocks)
      cap <<= 1;
    p->map_mask = cap - 1;
    p->map = pl_malloc((size_t)cap * sizeof *p->map);
    p->tokens = pl_malloc((size_t)num_blocks * (size_t)block_size * sizeof *p->tokens);
    if (!p->map || !p->tokens)
      goto oom;
    for (uint32_t i = 0; i < cap; i++)
      p->map[i] = PL_BLOCK_NIL;
  }
  p->free_head = p->free_tail = PL_BLOCK_NIL;
  for (int i = 0; i < num_blocks; i++) {
    pl_block *b = &p->blocks[i];
    memset(b, 0, sizeof *b);
    b->prev_free = b->next_free = PL_BLOCK_NIL;
    b->map_slot = -1;
    if (i > 0) /* block 0 (null) never enters the free list */
      list_append(p, i);
  }
  *out = p;
  return PL_OK;
oom:
  pl_block_pool_destroy(p);
  return pl_fail(PL_ENOMEM, "block pool: out of memory for %d blocks", num_blocks);
}

void pl_block_pool_destroy(pl_block_pool *p) {
  if (!p)
    return;
  pl_free(p->blocks);
  pl_free(p->scratch);
  pl_free(p->map);
  pl_free(p->tokens);
  pl_free(p);
}

int pl_block_pool_num_blocks(const pl_block_pool *p) { return p->num_blocks; }
int pl_block_pool_block_size(const pl_block_pool *p) { return p->block_size; }
int pl_block_pool_caching(const pl_block_pool *p) { return p->caching; }
int pl_block_pool_num_free(const pl_block_pool *p) { return p->num_free; }
int pl_block_pool_num_cached(const pl_block_pool *p) { return p->num_cached; }
int pl_block_pool_num_cached_free(const pl_block_pool *p) { return p->num_cached_free; }
int64_t pl_block_pool_num_evictions(const pl_block_pool *p) { return p->evictions; }

const pl_block *pl_block_pool_get(const pl_block_pool *p, int32_t id) { return &p->blocks[id]; }

const int32_t *pl_block_pool_tokens(const pl_block_pool *p, int32_t id) {
  return p->tokens ? p->tokens + (size_t)id * (size_t)p->block_size : NULL;
}

/* ---- operations ---------------------------------------------------------------------- */

int pl_block_pool_alloc(pl_block_pool *p, int n, int32_t *out) {
  if (n < 0 || n > p->num_free)
    return pl_fail(PL_ENOSPACE, "block pool: %d blocks requested, %d free", n, p->num_free);
  for (int i = 0; i < n; i++) {
    int32_t id = p->free_head;
    list_unlink(p, id);
    pl_block *b = &p->blocks[id];
    if (b->cid != 0) { /* LRU eviction of a cached-free block */
      uncache(p, id);
      p->num_cached_free--;
      p->evictions++;
    }
    b->ref_cnt = 1;
    out[i] = id;
  }
  return PL_OK;
}

void pl_block_pool_free(pl_block_pool *p, const int32_t *ids, int n) {
  for (int i = 0; i < n; i++) {
    pl_block *b = &p->blocks[ids[i]];
    if (--b->ref_cnt == 0) {
      list_append(p, ids[i]);
      if (b->cid != 0)
        p->num_cached_free++;
    }
  }
}

void pl_block_pool_touch(pl_block_pool *p, const int32_t *ids, int n) {
  for (int i = 0; i < n; i++) {
    pl_block *b = &p->blocks[ids[i]];
    if (b->ref_cnt++ == 0) {
      list_unlink(p, ids[i]);
      if (b->cid != 0)
        p->num_cached_free--;
    }
  }
}

int32_t pl_block_pool_lookup(const pl_block_pool *p, uint64_t hash, uint64_t parent_cid,
                             uint64_t extra_key, const int32_t *tokens) {
  if (!p->caching)
    return PL_BLOCK_NIL;
  for (uint32_t i = home_slot(p, hash);; i = (i + 1) & p->map_mask) {
    int32_t id = p->map[i];
    if (id == PL_BLOCK_NIL)
      return PL_BLOCK_NIL;
    if (same_identity(p, id, hash, parent_cid, extra_key, tokens))
      return id;
  }
}

uint64_t pl_block_pool_cache(pl_block_pool *p, int32_t id, uint64_t hash, uint64_t parent_cid,
                             uint64_t extra_key, const int32_t *tokens) {
  if (!p->caching)
    return 0;
  pl_block *b = &p->blocks[id];
  if (b->cid != 0)
    return b->cid;
  int32_t dup = pl_block_pool_lookup(p, hash, parent_cid, extra_key, tokens);
  if (dup != PL_BLOCK_NIL)
    return p->blocks[dup].cid; /* keep one block per identity */
  b->hash = hash;
  b->parent_cid = parent_cid;
  b->extra_key = extra_key;
  b->cid = p->next_cid++;
  memcpy(p->tokens + (size_t)id * (size_t)p->block_size, tokens,
         (size_t)p->block_size * sizeof(int32_t));
  map_insert(p, id);
  p->num_cached++;
  if (b->ref_cnt == 0) /* not expected (callers cache referenced blocks), but stay exact */
    p->num_cached_free++;
  return b->cid;
}

void pl_block_pool_uncache(pl_block_pool *p, int32_t id) {
  if (p->blocks[id].cid == 0)
    return;
  if (p->blocks[id].ref_cnt == 0)
    p->num_cached_free--;
  uncache(p, id);
}

void pl_block_pool_uncache_all(pl_block_pool *p) {
  for (int id = 1; id < p->num_blocks; id++)
    if (p->blocks[id].cid != 0)
      uncache(p, id);
  p->num_cached_free = 0;
}

int pl_block_pool_free_list(const pl_block_pool *p, int32_t *out, int cap) {
  int n = 0;
  for (int32_t id = p->free_head; id != PL_BLOCK_NIL && n < p->num_blocks;
       id = p->blocks[id].next_free) {
    if (n < cap)
      out[n] = id;
    n++;
  }
  return n;
}

/* ---- invariant checker ---------------------------------------------------------------- */

int pl_block_pool_check(const pl_block_pool *p) {
  const pl_block *blocks = p->blocks;
  uint8_t *seen = p->scratch; /* scratch is a checker-only buffer; logically const */
  memset(seen, 0, (size_t)p->num_blocks);
  const pl_block *null = &blocks[0];
  if (null->ref_cnt != 0 || null->cid != 0 || null->map_slot != -1)
    return pl_fail(PL_EINTERNAL, "block pool: null block 0 was used (ref %d)", null->ref_cnt);
  /* Walk the free list forwards: links consistent, no cycle, only ref 0 blocks. */
  int n = 0, cached_free = 0;
  int32_t prev = PL_BLOCK_NIL;
  for (int32_t id = p->free_head; id != PL_BLOCK_NIL; id = blocks[id].next_free) {
    if (id <= 0 || id >= p->num_blocks)
      return pl_fail(PL_EINTERNAL, "block pool: free list holds bad id %d", id);
    if (seen[id])
      return pl_fail(PL_EINTERNAL, "block pool: free list cycles at block %d", id);
    seen[id] = 1;
    if (blocks[id].prev_free != prev)
      return pl_fail(PL_EINTERNAL, "block pool: block %d prev link %d != %d", id,
                     blocks[id].prev_free, prev);
    if (blocks[id].ref_cnt != 0)
      return pl_fail(PL_EINTERNAL, "block pool: block %d is free with ref_cnt %d", id,
                     blocks[id].ref_cnt);
    if (blocks[id].cid != 0)
      cached_free++;
    prev = id;
    n++;
  }
  if (prev != p->free_tail)
    return pl_fail(PL_EINTERNAL, "block pool: free tail %d, list ends at %d", p->free_tail, prev);
  if (n != p->num_free)
    return pl_fail(PL_EINTERNAL, "block pool: free list has %d blocks, count says %d", n,
                   p->num_free);
  if (cached_free != p->num_cached_free)
    return pl_fail(PL_EINTERNAL, "block pool: %d cached-free blocks, count says %d", cached_free,
                   p->num_cached_free);
  int cached = 0;
  for (int id = 1; id < p->num_blocks; id++) {
    const pl_block *b = &blocks[id];
    if (b->ref_cnt < 0)
      return pl_fail(PL_EINTERNAL, "block pool: block %d ref_cnt %d", id, b->ref_cnt);
    if (b->ref_cnt == 0 && !seen[id])
      return pl_fail(PL_EINTERNAL, "block pool: block %d has ref_cnt 0 but is not free", id);
    if (b->ref_cnt > 0 && (b->prev_free != PL_BLOCK_NIL || b->next_free != PL_BLOCK_NIL))
      return pl_fail(PL_EINTERNAL, "block pool: used block %d has free-list links", id);
    if (b->cid == 0) {
      if (b->map_slot != -1)
        return pl_fail(PL_EINTERNAL, "block pool: uncached block %d has map slot", id);
      continue;
    }
    cached++;
    if (!p->caching || b->cid >= p->next_cid)
      return pl_fail(PL_EINTERNAL, "block pool: block %d has bad cid %llu", id,
                     (unsigned long long)b->cid);
    if (b->map_slot < 0 || (uint32_t)b->map_slot > p->map_mask || p->map[b->map_slot] != id)
      return pl_fail(PL_EINTERNAL, "block pool: cached block %d not at its map slot", id);
    /* Reachable from its home slot, and the first match of its identity: so unique. */
    int32_t found = pl_block_pool_lookup(p, b->hash, b->parent_cid, b->extra_key,
                                         pl_block_pool_tokens(p, id));
    if (found != id)
      return pl_fail(PL_EINTERNAL, "block pool: cached block %d lookup finds %d", id, found);
  }
  if (cached != p->num_cached)
    return pl_fail(PL_EINTERNAL, "block pool: %d cached blocks, count says %d", cached,
                   p->num_cached);
  if (p->caching) {
    int in_map = 0;
    for (uint32_t i = 0; i <= p->map_mask; i++) {
      int32_t id = p->map[i];
      if (id == PL_BLOCK_NIL)
        continue;
      if (id <= 0 || id >= p->num_blocks || blocks[id].map_slot != (int32_t)i)
        return pl_fail(PL_EINTERNAL, "block pool: map slot %u holds stale id %d", i, id);
      in_map++;
    }
    if (in_map != cached)
      return pl_fail(PL_EINTERNAL, "block pool: map holds %d entries, %d cached", in_map, cached);
  }
  return PL_OK;
}
