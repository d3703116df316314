/* The paged KV cache manager: per-sequence block tables over one block pool, automatic prefix
 * caching of full blocks, fork with shared blocks and copy-on-write. Block ids and token
 * counts only; the backend owns the K/V bytes.
 *
 * A sequence slot (0 <= seq < max_seqs) has a block table row of max_blocks_per_seq entries:
 *
 *   tokens:  [ 0 .. 15 | 16 .. 31 | 32 .. 37 ------ ]        block_size 16, n_tokens 38
 *   table:   [   b7    |    b3    |    b12   | b9 ...]        n_blocks >= ceil(n_tokens / 16)
 *              cached     cached    partial    reserved (static mode) or absent
 *
 * n_tokens counts the tokens that have a slot and are (or are being, in this step) written.
 * Writes only ever go to positions >= n_tokens, so a full block is immutable and may be shared
 * by any number of sequences. A partially filled last block may be shared only by forks; the
 * first write to it with ref_cnt > 1 moves the writer onto a fresh block and records a
 * (src, dst) copy that the runner performs before the step's forward pass.
 *
 * Prefix caching: a block is offered to the cache the moment it becomes full (in
 * allocate_slots, i.e. at scheduling time). Its hash is XXH3 over (parent block's hash, the
 * block's token ids, extra key); a hit is confirmed exactly (see block_pool.h), so hashes are
 * never trusted. A block filled in step N may be hit by a sequence admitted in step N: the
 * runner must write each layer's K/V for all tokens of the step before that layer's attention.
 *
 * Invariants (pl_kv_cache_check): every block's ref_cnt equals the number of table entries
 * naming it; free and referenced sets are disjoint; cached blocks in tables sit inside the
 * sequence's full part; closed slots hold nothing; pending copies target live blocks.
 * Sized at creation; no operation allocates. Not thread-safe. */
#ifndef PL_CORE_KV_CACHE_H
#define PL_CORE_KV_CACHE_H
#include <stdint.h>

#include "core/block_pool.h"

typedef struct pl_kv_cache pl_kv_cache;

typedef struct pl_kv_cache_params {
  int num_blocks;         /* pool size including the null block 0 (>= 2) */
  int block_size;         /* tokens per block (>= 1) */
  int max_seqs;           /* sequence slots (= the scheduler's max_num_seqs) */
  int max_model_len;      /* tokens per sequence; a table row holds ceil(len / block_size) */
  int enable_prefix_caching;
} pl_kv_cache_params;

/* Hash of one full block: parent's hash (0 for the first block), its tokens, the extra key. */
typedef uint64_t (*pl_kv_hash_fn)(uint64_t parent_hash, const int32_t *tokens, int n_tokens,
                                  uint64_t extra_key);
/* The default: XXH3-64 of the tokens, seeded by XXH3-64 of (parent_hash, extra_key).
 * Deterministic across processes (a router can compute it too). */
uint64_t pl_kv_block_hash(uint64_t parent_hash, const int32_t *tokens, int n_tokens,
                          uint64_t extra_key);

typedef struct pl_kv_stats {
  int64_t blocks_total;        /* usable blocks (excludes the null block) */
  int64_t blocks_used;         /* ref_cnt > 0 */
  int64_t blocks_cached_free;  /* ref_cnt 0 but still cached (evictable) */
  int64_t blocks_peak_used;    /* high-water mark of blocks_used */
  double usage;                /* blocks_used / blocks_total, [0,1] */
  int64_t prefix_queries_tokens; /* prompt tokens looked up (counted at admission) */
  int64_t prefix_hits_tokens;    /* of which served from the cache */
  int64_t cow_copies;          /* copy-on-write block copies recorded */
  int64_t evictions;           /* cached blocks evicted to be reused */
} pl_kv_stats;

/* Errors: PL_EINVAL (parameters), PL_ENOMEM (nothing leaked); *out is NULL on error. */
int pl_kv_cache_create(const pl_kv_cache_params *p, pl_kv_cache **out);
void pl_kv_cache_destroy(pl_kv_cache *kv); /* NULL ok */

/* Forget every cached block (they stay allocated to their sequences, just no longer shared
 * with new ones). For when the K/V contents cannot be trusted: the runner failed to execute a
 * plan whose newly full blocks were already offered to the cache. */
void pl_kv_cache_reset_prefix_cache(pl_kv_cache *kv);

/* Test hook: replace the block hash (NULL restores the default). Only while no block is
 * cached (fresh cache), else PL_ESTATE. */
int pl_kv_cache_set_hash_fn(pl_kv_cache *kv, pl_kv_hash_fn fn);

int pl_kv_cache_block_size(const pl_kv_cache *kv);
int pl_kv_cache_max_blocks_per_seq(const pl_kv_cache *kv);
int pl_kv_cache_num_free_blocks(const pl_kv_cache *kv); /* allocatable now (incl. cached-free) */
int pl_kv_cache_usable_blocks(const pl_kv_cache *kv);   /* num_blocks - 1 */
const pl_block_pool *pl_kv_cache_pool(const pl_kv_cache *kv);
void pl_kv_cache_get_stats(const pl_kv_cache *kv, pl_kv_stats *st);

/* Open an empty sequence slot whose cached blocks carry extra_key (0 = none; e.g. a hashed
 * cache salt: sequences with different keys never share blocks). PL_ENOSPACE when all
 * max_seqs slots are open. */
int pl_kv_seq_open(pl_kv_cache *kv, uint64_t extra_key, int *out_seq);

/* Release every block of seq (tail first, so its tail is evicted before its head; full
 * blocks stay cached) and close the slot. Drops pending copies into freed blocks and pending
 * prefix hits. */
void pl_kv_seq_free(pl_kv_cache *kv, int seq);

/* pl_kv_seq_free for a sequence whose tokens from n_written on got slots but will never be
 * written (preempted in the very step that scheduled them): blocks completed by those tokens
 * were offered to the prefix cache and leave it first, so no one hits unwritten K/V. */
void pl_kv_seq_discard(pl_kv_cache *kv, int seq, int n_written);

/* For an open, empty seq: find the longest cached prefix of tokens[0..n_tokens) in whole
 * blocks, leaving at least one token to compute. Returns the hit length in tokens (a multiple
 * of block_size, >= 0) and remembers the hit blocks as pending in seq; the pool is not
 * changed. The next allocate_slots on seq takes them; no other block allocation may come in
 * between (it could evict them: allocate_slots then fails with PL_ESTATE). Returns 0 when
 * prefix caching is off. */
int pl_kv_lookup_prefix(pl_kv_cache *kv, int seq, const int32_t *tokens, int n_tokens);

/* Make room for n_new tokens written at positions [n_tokens, n_tokens + n_new) of seq, whose
 * full token ids are tokens[0 .. n_tokens + n_new) (read during the call only). In order:
 * takes pending prefix hits (they count as already written: n_tokens becomes the hit length),
 * moves a shared block in the write range onto a fresh block (recording a copy when it holds
 * written tokens), grows the table to cover max(n_tokens + n_new, reserve_tokens) tokens,
 * then caches every block that became full. All or nothing: PL_ENOSPACE (no change at all,
 * pending hits kept) when the pool cannot supply the blocks; PL_ERANGE when the table would
 * exceed max_model_len; PL_ESTATE for a closed seq or stale pending hits. */
int pl_kv_allocate_slots(pl_kv_cache *kv, int seq, const int32_t *tokens, int n_new,
                         int reserve_tokens);

/* Speculative decoding: allocate_slots for n_new + n_spec tokens, where the last n_spec are
 * proposals that may be rejected. They get slots, but blocks they complete are not offered to
 * the prefix cache (only tokens[0 .. n_tokens + n_new) are read and hashed); those blocks are
 * hashed by a later allocate_slots once their tokens are final. */
int pl_kv_allocate_slots_spec(pl_kv_cache *kv, int seq, const int32_t *tokens, int n_new,
                              int n_spec, int reserve_tokens);

/* Roll seq back to its first n_keep tokens (rejected proposals): n_tokens becomes n_keep and
 * blocks wholly past max(n_keep, reserve_tokens) return to the pool (tail first). Never drops
 * a hashed block: n_keep >= hashed blocks x block_size, else PL_EINVAL (also n_keep >
 * n_tokens). PL_ESTATE for a closed seq or one with pending hits. */
int pl_kv_truncate(pl_kv_cache *kv, int seq, int n_keep, int reserve_tokens);

/* Grow seq's table to cover reserve_tokens and give it a private copy of its partially
 * written last block now if that block is shared (recording the copy), so that it needs no
 * further block until it writes past reserve_tokens (static mode after a fork). All or
 * nothing like allocate_slots: PL_ENOSPACE, PL_ERANGE, PL_ESTATE. */
int pl_kv_reserve(pl_kv_cache *kv, int seq, int reserve_tokens);

/* Free blocks allocate_slots would consume now (new blocks + copy-on-write blocks + pending
 * hit blocks that are currently free), or -1 when it would fail with PL_ERANGE/PL_ESTATE.
 * No state change. */
int pl_kv_blocks_needed(const pl_kv_cache *kv, int seq, int n_new, int reserve_tokens);

/* child (open, empty, no pending hits) shares parent's blocks covering parent's n_tokens
 * (ref_cnt++ each) and inherits its token count and hashing state. Allocates nothing and
 * cannot fail for valid slots (PL_EINVAL / PL_ESTATE otherwise). Reserved blocks beyond
 * n_tokens stay the parent's own. */
int pl_kv_fork(pl_kv_cache *kv, int parent, int child);

/* Sequence state. */
int pl_kv_seq_num_tokens(const pl_kv_cache *kv, int seq);
int pl_kv_seq_num_blocks(const pl_kv_cache *kv, int seq);
const int32_t *pl_kv_seq_blocks(const pl_kv_cache *kv, int seq); /* [num_blocks] */
int pl_kv_seq_is_open(const pl_kv_cache *kv, int seq);

/* Move the pending copy-on-write copies (accumulated since the last take) into src/dst and
 * clear them. The runner applies them in list order before the step's K/V writes (a block
 * freed during scheduling can be the source of one copy and the destination of a later one). Each allocate_slots records at most one copy, so cap >= max_seqs is enough for
 * one call per sequence per step. Returns the count, or PL_ERANGE if cap is too small
 * (nothing taken). */
int pl_kv_take_copies(pl_kv_cache *kv, int32_t *src, int32_t *dst, int cap);
int pl_kv_num_pending_copies(const pl_kv_cache *kv);

/* Verify the invariants (and the pool's); PL_EINTERNAL naming the first violation. */
int pl_kv_cache_check(const pl_kv_cache *kv);
#endif
