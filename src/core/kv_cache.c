/* Paged KV cache manager: block tables, prefix caching, fork and copy-on-write (see
 * kv_cache.h). All arrays are sized at creation; operations never allocate. */
#include "core/kv_cache.h"

#include <string.h>
#include <xxhash.h>

#include "util/alloc.h"
#include "util/error.h"

typedef struct pl_kv_seq {
  int open;               /* slot in use */
  int n_blocks;           /* table entries in use */
  int n_tokens;           /* tokens with a slot (written or being written this step) */
  int n_hashed;           /* leading full blocks already offered to the prefix cache */
  uint64_t last_hash;     /* chain hash of block n_hashed - 1 (0 when n_hashed == 0) */
  uint64_t last_cid;      /* cache instance of that content (0 when none) */
  uint64_t extra_key;     /* cache key shared by all of this sequence's blocks */
  /* Result of pl_kv_lookup_prefix, consumed by the next allocate_slots: */
  int pending;            /* a lookup result is waiting */
  int n_pending;          /* hit blocks, stored in table[0 .. n_pending) */
  int pending_query;      /* tokens looked up (stats) */
  uint64_t pending_hash, pending_cid; /* chain state after the last hit block */
  uint64_t pending_epoch; /* kv->epoch at lookup: any later allocation may have evicted */
} pl_kv_seq;

struct pl_kv_cache {
  pl_block_pool *pool;
  int block_size;         /* tokens per block */
  int max_seqs;           /* sequence slots */
  int max_blocks_per_seq; /* table row length = ceil(max_model_len / block_size) */
  int caching;            /* prefix caching on */
  pl_kv_hash_fn hash_fn;
  int32_t *tables;        /* [max_seqs][max_blocks_per_seq] */
  pl_kv_seq *seqs;        /* [max_seqs] */
  int32_t *free_slots;    /* [max_seqs] stack of closed slots; top = free_slots[n_free_slots-1] */
  int n_free_slots;
  int32_t *copy_src, *copy_dst; /* [copy_cap] pending copy-on-write copies */
  int n_copies, copy_cap;
  uint64_t epoch;         /* bumped on every block allocation (invalidates pending hits) */
  int32_t *check_refs;    /* [num_blocks] checker scratch: counted references */
  int32_t *check_stamp;   /* [num_blocks] checker scratch: last seq seen + 1 */
  int64_t peak_used, queries, hits, cow_copies;
};

uint64_t pl_kv_block_hash(uint64_t parent_hash, const int32_t *tokens, int n_tokens,
                          uint64_t extra_key) {
  uint64_t key[2] = {parent_hash, extra_key};
  XXH64_hash_t seed = XXH3_64bits(key, sizeof key);
  return XXH3_64bits_withSeed(tokens, (size_t)n_tokens * sizeof(int32_t), seed);
}

int pl_kv_cache_create(const pl_kv_cache_params *p, pl_kv_cache **out) {
  *out = NULL;
  if (p->block_size < 1 || p->num_blocks < 2 || p->max_seqs < 1 || p->max_model_len < 1)
    return pl_fail(PL_EINVAL, "kv cache: bad parameters (blocks %d, block_size %d, seqs %d, "
                   "max_model_len %d)", p->num_blocks, p->block_size, p->max_seqs,
                   p->max_model_len);
  int64_t bps = ((int64_t)p->max_model_len + p->block_size - 1) / p->block_size;
  if ((int64_t)p->max_seqs * bps > ((int64_t)1 << 31) / 4)
    return pl_fail(PL_EINVAL, "kv cache: %d seqs x %lld blocks per seq is too large",
                   p->max_seqs, (long long)bps);
  pl_kv_cache *kv = pl_calloc(1, sizeof *kv);
  if (!kv)
    return pl_fail(PL_ENOMEM, "kv cache: out of memory");
  kv->block_size = p->block_size;
  kv->max_seqs = p->max_seqs;
  kv->max_blocks_per_seq = (int)bps;
  kv->caching = p->enable_prefix_caching ? 1 : 0;
  kv->hash_fn = pl_kv_block_hash;
  int rc = pl_block_pool_create(p->num_blocks, p->block_size, kv->caching, &kv->pool);
  if (rc < 0) {
    pl_kv_cache_destroy(kv);
    return rc;
  }
  /* Each pending copy has a distinct live destination block, so num_blocks bounds them. */
  kv->copy_cap = p->num_blocks;
  kv->tables = pl_calloc((size_t)p->max_seqs * (size_t)bps, sizeof *kv->tables);
  kv->seqs = pl_calloc((size_t)p->max_seqs, sizeof *kv->seqs);
  kv->free_slots = pl_malloc((size_t)p->max_seqs * sizeof *kv->free_slots);
  kv->copy_src = pl_malloc((size_t)kv->copy_cap * sizeof *kv->copy_src);
  kv->copy_dst = pl_malloc((size_t)kv->copy_cap * sizeof *kv->copy_dst);
  kv->check_refs = pl_malloc((size_t)p->num_blocks * sizeof *kv->check_refs);
  kv->check_stamp = pl_malloc((size_t)p->num_blocks * sizeof *kv->check_stamp);
  if (!kv->tables || !kv->seqs || !kv->free_slots || !kv->copy_src || !kv->copy_dst ||
      !kv->check_refs || !kv->check_stamp) {
    pl_kv_cache_destroy(kv);
    return pl_fail(PL_ENOMEM, "kv cache: out of memory for %d sequences", p->max_seqs);
  }
  /* Slot 0 is opened first. */
  for (int i = 0; i < p->max_seqs; i++)
    kv->free_slots[i] = p->max_seqs - 1 - i;
  kv->n_free_slots = p->max_seqs;
  *out = kv;
  return PL_OK;
}

void pl_kv_cache_destroy(pl_kv_cache *kv) {
  if (!kv)
    return;
  pl_block_pool_destroy(kv->pool);
  pl_free(kv->tables);
  pl_free(kv->seqs);
  pl_free(kv->free_slots);
  pl_free(kv->copy_src);
  pl_free(kv->copy_dst);
  pl_free(kv->check_refs);
  pl_free(kv->check_stamp);
  pl_free(kv);
}

void pl_kv_cache_reset_prefix_cache(pl_kv_cache *kv) {
  pl_block_pool_uncache_all(kv->pool);
  /* Pending hits name blocks that are no longer cached. */
  for (int q = 0; q < kv->max_seqs; q++)
    if (kv->seqs[q].open && kv->seqs[q].pending)
      kv->seqs[q].pending = kv->seqs[q].n_pending = 0;
}

int pl_kv_cache_set_hash_fn(pl_kv_cache *kv, pl_kv_hash_fn fn) {
  if (pl_block_pool_num_cached(kv->pool) != 0)
    return pl_fail(PL_ESTATE, "kv cache: hash function changed while blocks are cached");
  kv->hash_fn = fn ? fn : pl_kv_block_hash;
  return PL_OK;
}

int pl_kv_cache_block_size(const pl_kv_cache *kv) { return kv->block_size; }
int pl_kv_cache_max_blocks_per_seq(const pl_kv_cache *kv) { return kv->max_blocks_per_seq; }
int pl_kv_cache_num_free_blocks(const pl_kv_cache *kv) { return pl_block_pool_num_free(kv->pool); }
int pl_kv_cache_usable_blocks(const pl_kv_cache *kv) {
  return pl_block_pool_num_blocks(kv->pool) - 1;
}
const pl_block_pool *pl_kv_cache_pool(const pl_kv_cache *kv) { return kv->pool; }

void pl_kv_cache_get_stats(const pl_kv_cache *kv, pl_kv_stats *st) {
  memset(st, 0, sizeof *st);
  st->blocks_total = pl_kv_cache_usable_blocks(kv);
  st->blocks_used = st->blocks_total - pl_block_pool_num_free(kv->pool);
  st->blocks_cached_free = pl_block_pool_num_cached_free(kv->pool);
  st->blocks_peak_used = kv->peak_used;
  st->usage = st->blocks_total ? (double)st->blocks_used / (double)st->blocks_total : 0.0;
  st->prefix_queries_tokens = kv->queries;
  st->prefix_hits_tokens = kv->hits;
  st->cow_copies = kv->cow_copies;
  st->evictions = pl_block_pool_num_evictions(kv->pool);
}

static int32_t *row(const pl_kv_cache *kv, int seq) {
  return kv->tables + (size_t)seq * (size_t)kv->max_blocks_per_seq;
}

static pl_kv_seq *get_seq(const pl_kv_cache *kv, int seq) {
  if (seq < 0 || seq >= kv->max_seqs || !kv->seqs[seq].open)
    return NULL;
  return &kv->seqs[seq];
}

int pl_kv_seq_open(pl_kv_cache *kv, uint64_t extra_key, int *out_seq) {
  *out_seq = -1;
  if (kv->n_free_slots == 0)
    return pl_fail(PL_ENOSPACE, "kv cache: all %d sequence slots are open", kv->max_seqs);
  int seq = kv->free_slots[--kv->n_free_slots];
  pl_kv_seq *s = &kv->seqs[seq];
  memset(s, 0, sizeof *s);
  s->open = 1;
  s->extra_key = extra_key;
  *out_seq = seq;
  return PL_OK;
}

void pl_kv_seq_free(pl_kv_cache *kv, int seq) {
  pl_kv_seq *s = get_seq(kv, seq);
  if (!s)
    return;
  const int32_t *t = row(kv, seq);
  for (int j = s->n_blocks - 1; j >= 0; j--) /* tail first: evicted before the head */
    pl_block_pool_free(kv->pool, &t[j], 1);
  if (s->n_blocks > 0 && kv->n_copies > 0) {
    /* A copy into a block that just died (a preempted sequence's fresh CoW block) is moot. */
    int k = 0;
    for (int i = 0; i < kv->n_copies; i++) {
      if (pl_block_pool_get(kv->pool, kv->copy_dst[i])->ref_cnt == 0)
        continue;
      kv->copy_src[k] = kv->copy_src[i];
      kv->copy_dst[k] = kv->copy_dst[i];
      k++;
    }
    kv->n_copies = k;
  }
  memset(s, 0, sizeof *s);
  kv->free_slots[kv->n_free_slots++] = seq;
}

void pl_kv_seq_discard(pl_kv_cache *kv, int seq, int n_written) {
  pl_kv_seq *s = get_seq(kv, seq);
  if (!s)
    return;
  const int32_t *t = row(kv, seq);
  /* Blocks from the one holding position n_written on were not full before, so if cached
   * now they were cached by this sequence's latest allocation and are its alone. */
  for (int j = n_written / kv->block_size; j < s->n_blocks; j++)
    if (pl_block_pool_get(kv->pool, t[j])->ref_cnt == 1)
      pl_block_pool_uncache(kv->pool, t[j]);
  pl_kv_seq_free(kv, seq);
}

int pl_kv_lookup_prefix(pl_kv_cache *kv, int seq, const int32_t *tokens, int n_tokens) {
  pl_kv_seq *s = get_seq(kv, seq);
  if (!s || s->n_blocks != 0 || s->n_tokens != 0)
    return pl_fail(PL_ESTATE, "kv cache: prefix lookup needs an open, empty sequence (%d)", seq);
  if (n_tokens < 0)
    return pl_fail(PL_EINVAL, "kv cache: prefix lookup of %d tokens", n_tokens);
  s->pending = 0;
  s->n_pending = 0;
  if (!kv->caching)
    return 0;
  const int bs = kv->block_size;
  int max_blocks = n_tokens > 0 ? (n_tokens - 1) / bs : 0; /* leave >= 1 token to compute */
  if (max_blocks > kv->max_blocks_per_seq)
    max_blocks = kv->max_blocks_per_seq;
  int32_t *t = row(kv, seq);
  uint64_t hash = 0, cid = 0;
  int n = 0;
  for (; n < max_blocks; n++) {
    const int32_t *tok = tokens + (size_t)n * (size_t)bs;
    uint64_t h = kv->hash_fn(hash, tok, bs, s->extra_key);
    int32_t b = pl_block_pool_lookup(kv->pool, h, cid, s->extra_key, tok);
    if (b == PL_BLOCK_NIL)
      break;
    t[n] = b;
    hash = h;
    cid = pl_block_pool_get(kv->pool, b)->cid;
  }
  s->pending = 1;
  s->n_pending = n;
  s->pending_query = n_tokens;
  s->pending_hash = hash;
  s->pending_cid = cid;
  s->pending_epoch = kv->epoch;
  return n * bs;
}

/* What allocate_slots would do: blocks to add, copy-on-write blocks, free hit blocks. */
typedef struct alloc_plan {
  int t0;          /* first written position (after taking pending hits) */
  int base_blocks; /* table length after taking pending hits */
  int n_grow;      /* new blocks appended to the table */
  int n_cow;       /* shared blocks in the write range to replace */
  int n_free_hits; /* pending hit blocks currently in the free list */
} alloc_plan;

/* unshare_tail: also treat a partially written last block as written to (copy it now). */
static int make_plan(const pl_kv_cache *kv, int seq, int n_new, int reserve_tokens,
                     int unshare_tail, alloc_plan *ap) {
  const pl_kv_seq *s = get_seq(kv, seq);
  if (!s)
    return pl_fail(PL_ESTATE, "kv cache: sequence %d is not open", seq);
  if (n_new < 0 || reserve_tokens < 0)
    return pl_fail(PL_EINVAL, "kv cache: n_new %d, reserve %d", n_new, reserve_tokens);
  const int bs = kv->block_size;
  const int32_t *t = row(kv, seq);
  memset(ap, 0, sizeof *ap);
  if (s->pending && s->n_pending > 0) {
    if (s->pending_epoch != kv->epoch)
      return pl_fail(PL_ESTATE, "kv cache: stale prefix hits on sequence %d", seq);
    ap->base_blocks = s->n_pending;
    ap->t0 = s->n_pending * bs;
    for (int j = 0; j < s->n_pending; j++)
      ap->n_free_hits += pl_block_pool_get(kv->pool, t[j])->ref_cnt == 0;
  } else {
    ap->base_blocks = s->n_blocks;
    ap->t0 = s->n_tokens;
  }
  int64_t end = (int64_t)ap->t0 + n_new;
  int64_t cap = end > reserve_tokens ? end : reserve_tokens;
  int64_t want = (cap + bs - 1) / bs;
  if (want > kv->max_blocks_per_seq)
    return pl_fail(PL_ERANGE, "kv cache: sequence %d needs %lld blocks, max %d per sequence",
                   seq, (long long)want, kv->max_blocks_per_seq);
  ap->n_grow = want > ap->base_blocks ? (int)want - ap->base_blocks : 0;
  int last = (int)((end + bs - 1) / bs); /* write range blocks [t0 / bs, last) */
  if (last > ap->base_blocks)
    last = ap->base_blocks;
  /* With n_new == 0, [t0 / bs, last) is the partial block at t0 if any: only unshare_tail
   * writes to it. */
  for (int j = ap->t0 / bs; j < last && (n_new > 0 || unshare_tail); j++)
    ap->n_cow += pl_block_pool_get(kv->pool, t[j])->ref_cnt > 1;
  return PL_OK;
}

int pl_kv_blocks_needed(const pl_kv_cache *kv, int seq, int n_new, int reserve_tokens) {
  alloc_plan ap;
  if (make_plan(kv, seq, n_new, reserve_tokens, 0, &ap) < 0)
    return -1;
  return ap.n_grow + ap.n_cow + ap.n_free_hits;
}

/* Offer every newly full block of seq to the prefix cache (chain: parent hash and cid). */
static void cache_full_blocks(pl_kv_cache *kv, int seq, const int32_t *tokens, int n_final) {
  pl_kv_seq *s = &kv->seqs[seq];
  const int bs = kv->block_size;
  const int32_t *t = row(kv, seq);
  if (!tokens) /* pl_kv_reserve: writes nothing, so no block can have become full */
    return;
  for (int j = s->n_hashed; j < n_final / bs; j++) {
    const int32_t *tok = tokens + (size_t)j * (size_t)bs;
    uint64_t h = kv->hash_fn(s->last_hash, tok, bs, s->extra_key);
    s->last_cid = pl_block_pool_cache(kv->pool, t[j], h, s->last_cid, s->extra_key, tok);
    s->last_hash = h;
    s->n_hashed = j + 1;
  }
}

/* n_spec of the n_new tokens (the last ones) are proposals: they get slots but their blocks
 * are not offered to the prefix cache. */
static int allocate(pl_kv_cache *kv, int seq, const int32_t *tokens, int n_new, int n_spec,
                    int reserve_tokens, int unshare_tail) {
  alloc_plan ap;
  PL_TRY(make_plan(kv, seq, n_new, reserve_tokens, unshare_tail, &ap));
  int need = ap.n_grow + ap.n_cow + ap.n_free_hits;
  int nfree = pl_block_pool_num_free(kv->pool);
  if (need > nfree)
    return pl_fail(PL_ENOSPACE, "kv cache: sequence %d needs %d blocks, %d free", seq, need,
                   nfree);
  pl_kv_seq *s = &kv->seqs[seq];
  int32_t *t = row(kv, seq);
  const int bs = kv->block_size;
  if (s->pending) {
    if (s->n_pending > 0) { /* take the hits: they are this sequence's first blocks now */
      pl_block_pool_touch(kv->pool, t, s->n_pending);
      s->n_blocks = s->n_pending;
      s->n_tokens = s->n_pending * bs;
      s->n_hashed = s->n_pending;
      s->last_hash = s->pending_hash;
      s->last_cid = s->pending_cid;
    }
    kv->queries += s->pending_query;
    kv->hits += (int64_t)s->n_pending * bs;
    s->pending = 0;
    s->n_pending = 0;
  }
  if (ap.n_cow > 0) { /* same range as make_plan counted */
    int end = ap.t0 + n_new;
    int last = (end + bs - 1) / bs < s->n_blocks ? (end + bs - 1) / bs : s->n_blocks;
    for (int j = ap.t0 / bs; j < last; j++) {
      int32_t old = t[j], fresh;
      if (pl_block_pool_get(kv->pool, old)->ref_cnt <= 1)
        continue;
      pl_block_pool_alloc(kv->pool, 1, &fresh); /* cannot fail: counted above */
      if (j * bs < ap.t0) { /* holds written tokens: the runner copies them first */
        kv->copy_src[kv->n_copies] = old;
        kv->copy_dst[kv->n_copies] = fresh;
        kv->n_copies++;
        kv->cow_copies++;
      }
      pl_block_pool_free(kv->pool, &old, 1); /* still referenced by the other sharers */
      t[j] = fresh;
    }
  }
  if (ap.n_grow > 0) {
    pl_block_pool_alloc(kv->pool, ap.n_grow, t + s->n_blocks);
    s->n_blocks += ap.n_grow;
  }
  if (ap.n_grow + ap.n_cow > 0)
    kv->epoch++;
  s->n_tokens = ap.t0 + n_new;
  if (kv->caching)
    cache_full_blocks(kv, seq, tokens, s->n_tokens - n_spec);
  int64_t used = pl_kv_cache_usable_blocks(kv) - pl_block_pool_num_free(kv->pool);
  if (used > kv->peak_used)
    kv->peak_used = used;
  return PL_OK;
}

int pl_kv_allocate_slots(pl_kv_cache *kv, int seq, const int32_t *tokens, int n_new,
                         int reserve_tokens) {
  return allocate(kv, seq, tokens, n_new, 0, reserve_tokens, 0);
}

int pl_kv_allocate_slots_spec(pl_kv_cache *kv, int seq, const int32_t *tokens, int n_new,
                              int n_spec, int reserve_tokens) {
  if (n_spec < 0 || n_new < 0)
    return pl_fail(PL_EINVAL, "kv cache: n_new %d, n_spec %d", n_new, n_spec);
  return allocate(kv, seq, tokens, n_new + n_spec, n_spec, reserve_tokens, 0);
}

int pl_kv_truncate(pl_kv_cache *kv, int seq, int n_keep, int reserve_tokens) {
  pl_kv_seq *s = get_seq(kv, seq);
  if (!s || s->pending)
    return pl_fail(PL_ESTATE, "kv cache: truncate of sequence %d (closed or pending hits)", seq);
  const int bs = kv->block_size;
  if (n_keep < s->n_hashed * bs || n_keep > s->n_tokens || reserve_tokens < 0)
    return pl_fail(PL_EINVAL, "kv cache: truncate sequence %d of %d tokens (%d hashed blocks) "
                   "to %d", seq, s->n_tokens, s->n_hashed, n_keep);
  int cap = n_keep > reserve_tokens ? n_keep : reserve_tokens;
  int keep_blocks = (cap + bs - 1) / bs;
  int32_t *t = row(kv, seq);
  /* Blocks past keep_blocks hold only rejected tokens and were never hashed: tail first. */
  for (int j = s->n_blocks - 1; j >= keep_blocks; j--)
    pl_block_pool_free(kv->pool, &t[j], 1);
  if (keep_blocks < s->n_blocks) {
    s->n_blocks = keep_blocks;
    int k = 0; /* a copy into a block that just died is moot */
    for (int i = 0; i < kv->n_copies; i++) {
      if (pl_block_pool_get(kv->pool, kv->copy_dst[i])->ref_cnt == 0)
        continue;
      kv->copy_src[k] = kv->copy_src[i];
      kv->copy_dst[k] = kv->copy_dst[i];
      k++;
    }
    kv->n_copies = k;
  }
  s->n_tokens = n_keep;
  return PL_OK;
}

int pl_kv_reserve(pl_kv_cache *kv, int seq, int reserve_tokens) {
  const pl_kv_seq *s = get_seq(kv, seq);
  if (!s || s->pending)
    return pl_fail(PL_ESTATE, "kv cache: reserve on sequence %d (closed or pending hits)", seq);
  /* n_new == 0: nothing becomes full, so no tokens are needed for hashing. */
  return allocate(kv, seq, NULL, 0, 0, reserve_tokens, 1);
}

int pl_kv_fork(pl_kv_cache *kv, int parent, int child) {
  pl_kv_seq *p = get_seq(kv, parent), *c = get_seq(kv, child);
  if (!p || !c || parent == child)
    return pl_fail(PL_EINVAL, "kv cache: fork %d -> %d needs two open sequences", parent, child);
  if (c->n_blocks != 0 || c->n_tokens != 0 || c->pending || p->pending)
    return pl_fail(PL_ESTATE, "kv cache: fork into a non-empty sequence %d", child);
  int n = (p->n_tokens + kv->block_size - 1) / kv->block_size;
  int32_t *ct = row(kv, child);
  memcpy(ct, row(kv, parent), (size_t)n * sizeof *ct);
  pl_block_pool_touch(kv->pool, ct, n); /* all referenced already: only ref_cnt++ */
  c->n_blocks = n;
  c->n_tokens = p->n_tokens;
  c->n_hashed = p->n_hashed;
  c->last_hash = p->last_hash;
  c->last_cid = p->last_cid;
  c->extra_key = p->extra_key;
  return PL_OK;
}

int pl_kv_seq_num_tokens(const pl_kv_cache *kv, int seq) {
  const pl_kv_seq *s = get_seq(kv, seq);
  return s ? s->n_tokens : 0;
}
int pl_kv_seq_num_blocks(const pl_kv_cache *kv, int seq) {
  const pl_kv_seq *s = get_seq(kv, seq);
  return s ? s->n_blocks : 0;
}
const int32_t *pl_kv_seq_blocks(const pl_kv_cache *kv, int seq) { return row(kv, seq); }
int pl_kv_seq_is_open(const pl_kv_cache *kv, int seq) { return get_seq(kv, seq) != NULL; }

int pl_kv_take_copies(pl_kv_cache *kv, int32_t *src, int32_t *dst, int cap) {
  if (kv->n_copies > cap)
    return pl_fail(PL_ERANGE, "kv cache: %d pending copies, room for %d", kv->n_copies, cap);
  int n = kv->n_copies;
  memcpy(src, kv->copy_src, (size_t)n * sizeof *src);
  memcpy(dst, kv->copy_dst, (size_t)n * sizeof *dst);
  kv->n_copies = 0;
  return n;
}

int pl_kv_num_pending_copies(const pl_kv_cache *kv) { return kv->n_copies; }

int pl_kv_cache_check(const pl_kv_cache *kv) {
  PL_TRY(pl_block_pool_check(kv->pool));
  const int nb = pl_block_pool_num_blocks(kv->pool), bs = kv->block_size;
  memset(kv->check_refs, 0, (size_t)nb * sizeof *kv->check_refs);
  memset(kv->check_stamp, 0, (size_t)nb * sizeof *kv->check_stamp);
  int n_open = 0;
  for (int q = 0; q < kv->max_seqs; q++) {
    const pl_kv_seq *s = &kv->seqs[q];
    if (!s->open) {
      if (s->n_blocks || s->n_tokens || s->pending)
        return pl_fail(PL_EINTERNAL, "kv cache: closed slot %d holds state", q);
      continue;
    }
    n_open++;
    if (s->n_blocks < 0 || s->n_blocks > kv->max_blocks_per_seq || s->n_tokens < 0 ||
        (int64_t)s->n_tokens > (int64_t)s->n_blocks * bs)
      return pl_fail(PL_EINTERNAL, "kv cache: seq %d has %d tokens in %d blocks", q,
                     s->n_tokens, s->n_blocks);
    if (s->n_hashed < 0 || s->n_hashed > s->n_tokens / bs || (!kv->caching && s->n_hashed))
      return pl_fail(PL_EINTERNAL, "kv cache: seq %d hashed %d blocks of %d tokens", q,
                     s->n_hashed, s->n_tokens);
    if (s->pending && (s->n_blocks || s->n_tokens || s->n_pending < 0 ||
                       s->n_pending > kv->max_blocks_per_seq))
      return pl_fail(PL_EINTERNAL, "kv cache: seq %d has pending hits but is not empty", q);
    const int32_t *t = row(kv, q);
    for (int j = 0; j < s->n_blocks; j++) {
      int32_t b = t[j];
      if (b <= 0 || b >= nb)
        return pl_fail(PL_EINTERNAL, "kv cache: seq %d block %d is id %d", q, j, b);
      if (kv->check_stamp[b] == q + 1)
        return pl_fail(PL_EINTERNAL, "kv cache: seq %d holds block %d twice", q, b);
      kv->check_stamp[b] = q + 1;
      kv->check_refs[b]++;
      const pl_block *blk = pl_block_pool_get(kv->pool, b);
      if (blk->cid != 0 && (int64_t)(j + 1) * bs > s->n_tokens)
        return pl_fail(PL_EINTERNAL, "kv cache: seq %d holds cached block %d at %d but has only "
                       "%d tokens", q, b, j, s->n_tokens);
    }
  }
  if (n_open + kv->n_free_slots != kv->max_seqs)
    return pl_fail(PL_EINTERNAL, "kv cache: %d open + %d free slots != %d", n_open,
                   kv->n_free_slots, kv->max_seqs);
  for (int b = 1; b < nb; b++) {
    int32_t rc = pl_block_pool_get(kv->pool, b)->ref_cnt;
    if (rc != kv->check_refs[b])
      return pl_fail(PL_EINTERNAL, "kv cache: block %d ref_cnt %d but %d table references", b, rc,
                     kv->check_refs[b]);
  }
  for (int i = 0; i < kv->n_copies; i++) {
    int32_t s = kv->copy_src[i], d = kv->copy_dst[i];
    if (s <= 0 || s >= nb || d <= 0 || d >= nb || s == d || kv->check_refs[d] == 0)
      return pl_fail(PL_EINTERNAL, "kv cache: pending copy %d -> %d is invalid", s, d);
  }
  return PL_OK;
}
