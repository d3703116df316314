/* Randomised property test of the KV cache against a shadow model.
 *
 * The shadow is an independent, deliberately naive reading of the spec: blocks carry a
 * "freed at" timestamp instead of a linked list (allocation takes the smallest), cache
 * entries are found by linear scan over (parent instance, extra key, tokens) with no hashing,
 * and sequences are plain arrays. Thousands of random add (prefix lookup + first chunk) /
 * append / fork / free / abort / take-copies operations run with fixed seeds; after every
 * one the invariant checker must pass and the cache must agree with the shadow on every
 * block's ref count and cached state, the exact free-list (LRU) order, every table, and the
 * counters (hits, queries, evictions, copies). At the end everything is freed and memory
 * returns to its starting point. */
#include <string.h>

#include "check.h"
#include "core/kv_cache.h"
#include "util/alloc.h"

#define MAXN 80  /* blocks */
#define MAXS 8   /* sequences */
#define MAXT 128 /* tokens per sequence */

typedef struct sblk {
  int ref;
  long ts;         /* when it was last freed (the free list is ordered by it) */
  int cached;
  uint64_t inst;   /* cache instance id (same numbering as the cache: 1, 2, ...) */
  uint64_t parent; /* parent instance */
  uint64_t extra;
  int32_t tok[16];
} sblk;

typedef struct sseq {
  int open;
  int n_tokens, n_blocks, n_hashed;
  int32_t table[MAXT];
  uint64_t extra, last_inst;
  int32_t toks[MAXT]; /* known tokens: the prompt, then appended ones */
  int n_known;
} sseq;

typedef struct shadow {
  int nb, bs, max_bps, caching;
  sblk b[MAXN];
  long clock;
  uint64_t inst_next;
  sseq s[MAXS];
  int32_t csrc[MAXN], cdst[MAXN];
  int ncopies;
  int64_t evictions, cow, queries, hits;
  int pend, pend_n, pend_query;   /* pending lookup of the sequence being added */
  int32_t pend_blocks[MAXT];
  uint64_t pend_last;
} shadow;

static uint64_t rng_state;
static uint32_t rnd(uint32_t n) {
  rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
  return (uint32_t)(rng_state >> 33) % n;
}

static int sh_nfree(const shadow *h) {
  int n = 0;
  for (int i = 1; i < h->nb; i++)
    n += h->b[i].ref == 0;
  return n;
}

static int sh_alloc(shadow *h) {
  int best = 0;
  for (int i = 1; i < h->nb; i++)
    if (h->b[i].ref == 0 && (!best || h->b[i].ts < h->b[best].ts))
      best = i;
  if (h->b[best].cached) {
    h->b[best].cached = 0;
    h->evictions++;
  }
  h->b[best].ref = 1;
  return best;
}

static void sh_release(shadow *h, int id) {
  if (--h->b[id].ref == 0)
    h->b[id].ts = ++h->clock;
}

static int sh_find(const shadow *h, uint64_t parent, uint64_t extra, const int32_t *tok) {
  int found = 0, count = 0;
  for (int i = 1; i < h->nb; i++) {
    const sblk *b = &h->b[i];
    if (b->cached && b->parent == parent && b->extra == extra &&
        memcmp(b->tok, tok, (size_t)h->bs * sizeof *tok) == 0) {
      found = i;
      count++;
    }
  }
  CHECK(count <= 1, "shadow: identity cached twice");
  return found;
}

static uint64_t sh_cache(shadow *h, int id, uint64_t parent, uint64_t extra, const int32_t *tok) {
  if (h->b[id].cached)
    return h->b[id].inst;
  int f = sh_find(h, parent, extra, tok);
  if (f)
    return h->b[f].inst;
  sblk *b = &h->b[id];
  b->cached = 1;
  b->inst = ++h->inst_next;
  b->parent = parent;
  b->extra = extra;
  memcpy(b->tok, tok, (size_t)h->bs * sizeof *tok);
  return b->inst;
}

static int sh_lookup(shadow *h, int q, int n) {
  sseq *s = &h->s[q];
  h->pend = h->caching; /* with caching off nothing is looked up or counted */
  h->pend_n = 0;
  h->pend_query = n;
  h->pend_last = 0;
  if (!h->caching)
    return 0;
  int maxb = n > 0 ? (n - 1) / h->bs : 0;
  if (maxb > h->max_bps)
    maxb = h->max_bps;
  uint64_t parent = 0;
  for (int j = 0; j < maxb; j++) {
    int f = sh_find(h, parent, s->extra, s->toks + j * h->bs);
    if (!f)
      break;
    h->pend_blocks[h->pend_n++] = f;
    parent = h->b[f].inst;
  }
  h->pend_last = parent;
  return h->pend_n * h->bs;
}

/* Predict and apply allocate_slots; returns the status the cache must return. */
static int sh_allocate(shadow *h, int q, int n_new, int reserve, int with_pending,
                       int unshare_tail) {
  sseq *s = &h->s[q];
  const int bs = h->bs;
  int pend = with_pending && h->pend;
  int base = pend ? h->pend_n : s->n_blocks;
  int t0 = pend ? h->pend_n * bs : s->n_tokens;
  int end = t0 + n_new, cap = end > reserve ? end : reserve;
  int want = (cap + bs - 1) / bs;
  if (want > h->max_bps)
    return PL_ERANGE;
  int grow = want > base ? want - base : 0, cow = 0, free_hits = 0;
  int last = (end + bs - 1) / bs < base ? (end + bs - 1) / bs : base;
  for (int j = t0 / bs; j < last && (n_new > 0 || unshare_tail); j++)
    cow += h->b[s->table[j]].ref > 1;
  if (pend)
    for (int j = 0; j < h->pend_n; j++)
      free_hits += h->b[h->pend_blocks[j]].ref == 0;
  if (grow + cow + free_hits > sh_nfree(h))
    return PL_ENOSPACE;
  if (pend) {
    for (int j = 0; j < h->pend_n; j++) {
      h->b[h->pend_blocks[j]].ref++;
      s->table[j] = h->pend_blocks[j];
    }
    s->n_blocks = h->pend_n;
    s->n_tokens = t0;
    s->n_hashed = h->pend_n;
    s->last_inst = h->pend_last;
    h->queries += h->pend_query;
    h->hits += t0;
    h->pend = 0;
  }
  for (int j = t0 / bs; j < last && (n_new > 0 || unshare_tail); j++) {
    int old = s->table[j];
    if (h->b[old].ref <= 1)
      continue;
    int fresh = sh_alloc(h);
    if (j * bs < t0) {
      h->csrc[h->ncopies] = old;
      h->cdst[h->ncopies++] = fresh;
      h->cow++;
    }
    sh_release(h, old);
    s->table[j] = fresh;
  }
  for (int k = 0; k < grow; k++)
    s->table[s->n_blocks++] = sh_alloc(h);
  s->n_tokens = end;
  if (h->caching)
    for (int j = s->n_hashed; j < s->n_tokens / bs; j++) {
      s->last_inst = sh_cache(h, s->table[j], s->last_inst, s->extra, s->toks + j * bs);
      s->n_hashed = j + 1;
    }
  return PL_OK;
}

static void sh_free(shadow *h, int q) {
  sseq *s = &h->s[q];
  for (int j = s->n_blocks - 1; j >= 0; j--)
    sh_release(h, s->table[j]);
  int k = 0;
  for (int i = 0; i < h->ncopies; i++)
    if (h->b[h->cdst[i]].ref > 0) {
      h->csrc[k] = h->csrc[i];
      h->cdst[k++] = h->cdst[i];
    }
  h->ncopies = k;
  memset(s, 0, sizeof *s);
  h->pend = 0;
}

static void sh_discard(shadow *h, int q, int n_written) {
  sseq *s = &h->s[q];
  for (int j = n_written / h->bs; j < s->n_blocks; j++)
    if (h->b[s->table[j]].ref == 1)
      h->b[s->table[j]].cached = 0;
  sh_free(h, q);
}

static void sh_fork(shadow *h, int p, int c) {
  sseq *ps = &h->s[p], *cs = &h->s[c];
  int n = (ps->n_tokens + h->bs - 1) / h->bs;
  for (int j = 0; j < n; j++) {
    cs->table[j] = ps->table[j];
    h->b[ps->table[j]].ref++;
  }
  cs->n_blocks = n;
  cs->n_tokens = ps->n_tokens;
  cs->n_hashed = ps->n_hashed;
  cs->last_inst = ps->last_inst;
  cs->extra = ps->extra;
  memcpy(cs->toks, ps->toks, (size_t)ps->n_tokens * sizeof *cs->toks);
  cs->n_known = ps->n_tokens; /* the child diverges from here */
}

/* Compare everything observable; returns 1 when equal. */
static int agree(const shadow *h, const pl_kv_cache *kv) {
  const pl_block_pool *pool = pl_kv_cache_pool(kv);
  for (int i = 1; i < h->nb; i++) {
    const pl_block *b = pl_block_pool_get(pool, i);
    if (b->ref_cnt != h->b[i].ref || (b->cid != 0) != h->b[i].cached ||
        (h->b[i].cached && b->cid != h->b[i].inst)) {
      fprintf(stderr, "block %d: ref %d/%d cid %llu/%d:%llu\n", i, b->ref_cnt, h->b[i].ref,
              (unsigned long long)b->cid, h->b[i].cached, (unsigned long long)h->b[i].inst);
      return 0;
    }
  }
  /* The free list is the shadow's free blocks sorted by free time. */
  int32_t fl[MAXN];
  int n = pl_block_pool_free_list(pool, fl, MAXN);
  if (n != sh_nfree(h))
    return 0;
  long prev_ts = -1000000;
  for (int i = 0; i < n; i++) {
    if (h->b[fl[i]].ref != 0 || h->b[fl[i]].ts <= prev_ts) {
      fprintf(stderr, "free list position %d: block %d out of LRU order\n", i, fl[i]);
      return 0;
    }
    prev_ts = h->b[fl[i]].ts;
  }
  for (int q = 0; q < MAXS; q++) {
    const sseq *s = &h->s[q];
    if (pl_kv_seq_is_open(kv, q) != s->open)
      return 0;
    if (!s->open)
      continue;
    if (pl_kv_seq_num_tokens(kv, q) != s->n_tokens || pl_kv_seq_num_blocks(kv, q) != s->n_blocks)
      return 0;
    if (memcmp(pl_kv_seq_blocks(kv, q), s->table, (size_t)s->n_blocks * sizeof(int32_t)) != 0) {
      fprintf(stderr, "seq %d table differs\n", q);
      return 0;
    }
  }
  pl_kv_stats st;
  pl_kv_cache_get_stats(kv, &st);
  if (st.evictions != h->evictions || st.cow_copies != h->cow || st.prefix_hits_tokens != h->hits ||
      st.prefix_queries_tokens != h->queries || pl_kv_num_pending_copies(kv) != h->ncopies) {
    fprintf(stderr, "stats: evict %lld/%lld cow %lld/%lld hits %lld/%lld queries %lld/%lld\n",
            (long long)st.evictions, (long long)h->evictions, (long long)st.cow_copies,
            (long long)h->cow, (long long)st.prefix_hits_tokens, (long long)h->hits,
            (long long)st.prefix_queries_tokens, (long long)h->queries);
    return 0;
  }
  return 1;
}

static int32_t family[3][MAXT];

static int pick_open(const shadow *h, int want_open) {
  int c[MAXS], n = 0;
  for (int q = 0; q < MAXS; q++)
    if (h->s[q].open == want_open)
      c[n++] = q;
  return n ? c[rnd((uint32_t)n)] : -1;
}

static void run(int nb, int bs, int max_seqs, int max_len, int caching, uint64_t seed, int ops) {
  rng_state = seed;
  for (int f = 0; f < 3; f++)
    for (int i = 0; i < MAXT; i++)
      family[f][i] = 1 + (int32_t)rnd(40);
  size_t live0 = pl_alloc_live_bytes();
  pl_kv_cache_params p = {.num_blocks = nb, .block_size = bs, .max_seqs = max_seqs,
                          .max_model_len = max_len, .enable_prefix_caching = caching};
  pl_kv_cache *kv;
  if (pl_kv_cache_create(&p, &kv) != PL_OK) {
    CHECK(0, "create");
    return;
  }
  static shadow h;
  memset(&h, 0, sizeof h);
  h.nb = nb;
  h.bs = bs;
  h.max_bps = (max_len + bs - 1) / bs;
  h.caching = caching;
  for (int i = 1; i < nb; i++)
    h.b[i].ts = i - nb; /* initial free list: 1, 2, ... */
  int failures = 0, n_ok = 0, n_nospace = 0, n_hits = 0, n_forks = 0;
  for (int op = 0; op < ops && failures < 5; op++) {
    uint32_t r = rnd(100);
    int rc_want = PL_OK, rc = PL_OK;
    if (r < 28) { /* add: lookup + first chunk */
      int q;
      uint64_t extra = rnd(10) == 0 ? 7 : 0;
      if (pl_kv_seq_open(kv, extra, &q) != PL_OK) {
        int n_open = 0;
        for (int i = 0; i < MAXS; i++)
          n_open += h.s[i].open;
        CHECK_EQ_INT(n_open, max_seqs); /* refused only when every slot is taken */
        continue;
      }
      sseq *s = &h.s[q];
      memset(s, 0, sizeof *s);
      s->open = 1;
      s->extra = extra;
      int f = (int)rnd(3), len = 1 + (int)rnd((uint32_t)(max_len * 3 / 4));
      for (int i = 0; i < len; i++)
        s->toks[i] = rnd(24) ? family[f][i] : 1 + (int32_t)rnd(2);
      s->n_known = len;
      int hit = pl_kv_lookup_prefix(kv, q, s->toks, len);
      int hit_want = sh_lookup(&h, q, len);
      CHECK_EQ_INT(hit, hit_want);
      n_hits += hit > 0;
      if (rnd(8) == 0) { /* aborted before admission */
        pl_kv_seq_free(kv, q);
        sh_free(&h, q);
      } else {
        int n_new = rnd(2) ? len - hit : 1 + (int)rnd((uint32_t)(len - hit));
        int reserve = rnd(10) == 0 ? max_len : 0;
        rc = pl_kv_allocate_slots(kv, q, s->toks, n_new, reserve);
        rc_want = sh_allocate(&h, q, n_new, reserve, 1, 0);
        if (rc != PL_OK) {
          pl_kv_seq_free(kv, q);
          sh_free(&h, q);
        }
      }
    } else if (r < 64) { /* append: rest of the prompt, or generated tokens */
      int q = pick_open(&h, 1);
      if (q < 0)
        continue;
      sseq *s = &h.s[q];
      int n_new;
      if (s->n_known > s->n_tokens) {
        n_new = 1 + (int)rnd((uint32_t)(s->n_known - s->n_tokens));
      } else {
        n_new = 1 + (int)rnd(3);
        for (int i = 0; i < n_new && s->n_known < MAXT; i++)
          s->toks[s->n_known++] = 1 + (int32_t)rnd(2);
        if (s->n_tokens + n_new > s->n_known)
          n_new = s->n_known - s->n_tokens;
        if (n_new == 0)
          continue;
      }
      int reserve = rnd(10) == 0 ? (int)rnd((uint32_t)max_len + 8) : 0;
      rc = pl_kv_allocate_slots(kv, q, s->toks, n_new, reserve);
      rc_want = sh_allocate(&h, q, n_new, reserve, 0, 0);
    } else if (r < 74) { /* fork */
      int pq = pick_open(&h, 1);
      if (pq < 0 || h.s[pq].n_tokens == 0)
        continue;
      int c;
      if (pl_kv_seq_open(kv, 0, &c) != PL_OK)
        continue;
      memset(&h.s[c], 0, sizeof h.s[c]);
      h.s[c].open = 1;
      rc = pl_kv_fork(kv, pq, c);
      sh_fork(&h, pq, c);
      n_forks++;
      if (rnd(3) == 0) { /* static-mode style: reserve and unshare the tail now */
        int reserve = (int)rnd((uint32_t)max_len + 8);
        rc = pl_kv_reserve(kv, c, reserve);
        rc_want = sh_allocate(&h, c, 0, reserve, 0, 1);
      }
    } else if (r < 90) { /* free (finish or abort mid-prefill alike) */
      int q = pick_open(&h, 1);
      if (q < 0)
        continue;
      if (rnd(4) == 0) { /* preempted in the step that scheduled its last tokens */
        int n_written = h.s[q].n_tokens - (int)rnd((uint32_t)h.s[q].n_tokens + 1);
        pl_kv_seq_discard(kv, q, n_written);
        sh_discard(&h, q, n_written);
      } else {
        pl_kv_seq_free(kv, q);
        sh_free(&h, q);
      }
    } else { /* the step runs: take the copies, in order */
      int32_t src[MAXN], dst[MAXN];
      int n = pl_kv_take_copies(kv, src, dst, MAXN);
      CHECK_EQ_INT(n, h.ncopies);
      int same = n == h.ncopies && !memcmp(src, h.csrc, (size_t)h.ncopies * sizeof *src) &&
                 !memcmp(dst, h.cdst, (size_t)h.ncopies * sizeof *dst);
      CHECK(same, "copy list differs");
      h.ncopies = 0;
    }
    CHECK_EQ_INT(rc, rc_want);
    n_ok += rc == PL_OK;
    n_nospace += rc == PL_ENOSPACE;
    int ck = pl_kv_cache_check(kv);
    CHECK(ck == PL_OK, "op %d: %s", op, pl_last_error());
    int ag = agree(&h, kv);
    CHECK(ag, "op %d (r=%u): cache and shadow disagree", op, r);
    failures += (rc != rc_want) + (ck != PL_OK) + !ag;
  }
  /* The workload must have exercised the interesting paths. */
  pl_kv_stats st;
  pl_kv_cache_get_stats(kv, &st);
  CHECK(n_nospace > 0 && n_forks > 0, "nospace %d forks %d", n_nospace, n_forks);
  if (caching)
    CHECK(n_hits > 0 && st.evictions > 0 && (st.cow_copies > 0 || bs == 1),
          "hits %d evictions %lld cow %lld", n_hits, (long long)st.evictions,
          (long long)st.cow_copies); /* (block_size 1 has no partial blocks to copy) */
  for (int q = 0; q < MAXS; q++)
    if (h.s[q].open) {
      pl_kv_seq_free(kv, q);
      sh_free(&h, q);
    }
  CHECK_EQ_INT(pl_kv_cache_num_free_blocks(kv), nb - 1);
  CHECK_EQ_INT(pl_kv_num_pending_copies(kv), 0);
  CHECK_EQ_INT(pl_kv_cache_check(kv), PL_OK);
  CHECK(agree(&h, kv), "final state");
  pl_kv_cache_destroy(kv);
  CHECK_EQ_INT(pl_alloc_live_bytes(), live0);
  printf("  blocks %d bs %d seqs %d len %d caching %d seed %llu: %d ok, %d nospace, %d hit "
         "lookups, %d forks, %lld evictions, %lld copies\n", nb, bs, max_seqs, max_len, caching,
         (unsigned long long)seed, n_ok, n_nospace, n_hits, n_forks, (long long)st.evictions,
         (long long)st.cow_copies);
}

int main(void) {
  for (uint64_t seed = 1; seed <= 3; seed++) {
    run(24, 4, 6, 64, 1, seed, 8000);
    run(40, 1, 6, 48, 1, seed, 4000);
    run(30, 3, 5, 60, 0, seed, 3000);
    run(14, 16, 4, 112, 1, seed, 3000);
    run(MAXN, 2, MAXS, MAXT, 1, seed, 8000);
  }
  return check_summary("test_kv_random");
}
