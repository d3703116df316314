/* Token masks: the sorted vocabulary, the per-stack-shape token tables, and the per-step mask
 * (see grammar.h). */
#include <stdlib.h>
#include <string.h>

#include "grammar/gmatch_impl.h"
#include "tokenizer/tokenizer.h"
#include "util/alloc.h"
#include "util/array.h"
#include "util/error.h"

/* ---- vocabulary -------------------------------------------------------------------------- */

static const pl_vocab *sort_vocab;
static int cmp_tok(const void *a, const void *b) {
  int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
  uint32_t lx = sort_vocab->len[x], ly = sort_vocab->len[y];
  int c = memcmp(sort_vocab->bytes[x], sort_vocab->bytes[y], lx < ly ? lx : ly);
  if (c)
    return c;
  return lx != ly ? (lx < ly ? -1 : 1) : (x < y ? -1 : x > y);
}

int pl_vocab_create_raw(int n_vocab, const char *const *piece, const size_t *piece_len,
                        const int32_t *eog, int n_eog, pl_vocab **out) {
  *out = NULL;
  pl_vocab *v = pl_calloc(1, sizeof *v);
  size_t total = 0;
  for (int i = 0; i < n_vocab; i++)
    if (piece[i])
      total += piece_len[i];
  if (v) {
    v->n_vocab = n_vocab;
    v->order = pl_malloc((size_t)n_vocab * sizeof *v->order + 1);
    v->lcp = pl_malloc((size_t)n_vocab * sizeof *v->lcp + 1);
    v->bytes = pl_calloc((size_t)n_vocab, sizeof *v->bytes);
    v->len = pl_calloc((size_t)n_vocab, sizeof *v->len);
    v->storage = pl_malloc(total + 1);
    v->eog = pl_malloc((size_t)n_eog * sizeof *v->eog + 1);
  }
  if (!v || !v->order || !v->lcp || !v->bytes || !v->len || !v->storage || !v->eog) {
    pl_vocab_free(v);
    return pl_fail(PL_ENOMEM, "grammar: out of memory for the vocabulary");
  }
  if (n_eog)
    memcpy(v->eog, eog, (size_t)n_eog * sizeof *eog);
  v->n_eog = n_eog;
  size_t off = 0;
  for (int i = 0; i < n_vocab; i++) {
    int is_eog = 0;
    for (int k = 0; k < n_eog; k++)
      is_eog |= eog[k] == i;
    if (!piece[i] || piece_len[i] == 0 || piece_len[i] > 65535 || is_eog)
      continue;
    memcpy(v->storage + off, piece[i], piece_len[i]);
    v->bytes[i] = v->storage + off;
    v->len[i] = (uint32_t)piece_len[i];
    off += piece_len[i];
    v->order[v->n_sorted++] = i;
    if ((int)piece_len[i] > v->max_len)
      v->max_len = (int)piece_len[i];
  }
  sort_vocab = v; /* qsort has no context argument in C11; creation is not concurrent */
  qsort(v->order, (size_t)v->n_sorted, sizeof *v->order, cmp_tok);
  for (int k = 0; k < v->n_sorted; k++) {
    uint32_t l = 0;
    if (k > 0) {
      int32_t a = v->order[k - 1], b = v->order[k];
      uint32_t m = v->len[a] < v->len[b] ? v->len[a] : v->len[b];
      while (l < m && v->bytes[a][l] == v->bytes[b][l])
        l++;
    }
    v->lcp[k] = (uint16_t)l;
  }
  *out = v;
  return 0;
}

int pl_vocab_create(const struct pl_tokenizer *t, pl_vocab **out) {
  int n = pl_tokenizer_n_vocab(t);
  const char **p = pl_malloc((size_t)n * sizeof *p + 1);
  size_t *l = pl_malloc((size_t)n * sizeof *l + 1);
  if (!p || !l) {
    pl_free(p);
    pl_free(l);
    return pl_fail(PL_ENOMEM, "grammar: out of memory");
  }
  for (int i = 0; i < n; i++) {
    p[i] = pl_tokenizer_is_control(t, i) ? NULL : pl_tokenizer_piece(t, i, &l[i]);
    if (!p[i])
      l[i] = 0;
  }
  int n_eog = 0;
  const int32_t *eog = pl_tokenizer_eog_ids(t, &n_eog);
  int rc = pl_vocab_create_raw(n, p, l, eog, n_eog, out);
  pl_free(p);
  pl_free(l);
  return rc;
}

void pl_vocab_free(pl_vocab *v) {
  if (!v)
    return;
  pl_free(v->order);
  pl_free(v->lcp);
  pl_free(v->bytes);
  pl_free(v->len);
  pl_free(v->storage);
  pl_free(v->eog);
  pl_free(v);
}

int pl_vocab_size(const pl_vocab *v) { return v->n_vocab; }

/* ---- tables ---------------------------------------------------------------------------------- */

void pl_gtables_clear(pl_grammar *g) {
  for (int i = 0; i < g->n_tables; i++) {
    pl_free(g->tables[i].accept_bits);
    pl_free(g->tables[i].accept_ids);
    pl_free(g->tables[i].unsure);
  }
  pl_free(g->tables);
  pl_free(g->table_hash);
  g->tables = NULL;
  g->table_hash = NULL;
  g->n_tables = g->cap_tables = g->hash_cap = 0;
  g->table_bytes = 0;
  g->table_vocab = NULL;
}

static uint32_t key_hash(const int32_t *k, int bottom) {
  uint32_t h = 2166136261u ^ (uint32_t)bottom;
  for (int i = 0; i < PL_GKEY; i++)
    h = (h ^ (uint32_t)k[i]) * 16777619u;
  return h;
}

/* The key of the stack whose top is node t. */
static void stack_key(const pl_gnodes *ns, int32_t t, int32_t *key, int *bottom) {
  int i = 0;
  for (; i < PL_GKEY && t >= 0; i++) {
    key[i] = ns->n[t].pos;
    t = ns->n[t].parent;
  }
  for (int k = i; k < PL_GKEY; k++)
    key[k] = -1;
  *bottom = t == PL_GN_BOTTOM;
}

typedef struct ivec { int32_t *a; int n, cap; } ivec;
static int ipush(ivec *v, int32_t x) {
  if (pl_array_grow(&v->a, &v->cap, (size_t)v->n + 1, sizeof *v->a, 256))
    return pl_fail(PL_ENOMEM, "grammar: out of memory");
  v->a[v->n++] = x;
  return 0;
}

/* Split the vocabulary for one stack shape: walk the sorted vocabulary as a trie, one state
 * set per depth, with the stack cut below the key (the sentinel). */
static int fill(pl_gmatch *m, const int32_t *key, int bottom, pl_gtable *t) {
  const pl_grammar *g = m->g;
  const pl_vocab *v = m->v;
  int D = v->max_len + 1;
  if (m->n_depth_sets < D) {
    pl_gset *s = pl_realloc(m->depth_sets, (size_t)D * sizeof *s);
    int *mk = s ? pl_realloc(m->depth_mark, (size_t)(D + 1) * sizeof *mk) : NULL;
    if (s)
      m->depth_sets = s;
    if (!s || !mk)
      return pl_fail(PL_ENOMEM, "grammar: out of memory");
    memset(s + m->n_depth_sets, 0, (size_t)(D - m->n_depth_sets) * sizeof *s);
    m->depth_mark = mk;
    m->n_depth_sets = D;
  }
  pl_gnodes *ns = &m->nodes;
  int keep = ns->len;
  int depth = 0;
  while (depth < PL_GKEY && key[depth] >= 0)
    depth++;
  int32_t parent = bottom ? PL_GN_BOTTOM : PL_GN_SENTINEL;
  int rc = 0;
  for (int i = depth - 1; i >= 0 && rc >= 0; i--)
    parent = rc = pl_gnodes_push(ns, key[i], parent);
  pl_gset *S = m->depth_sets;
  char flag[65536 + 1];
  ivec acc = {0}, uns = {0};
  if (rc >= 0) {
    S[0].n = 0;
    S[0].accept = S[0].hit_sentinel = 0;
    rc = pl_gset_add(&S[0], ns, key[0], ns->n[parent].parent);
    /* pl_gset_add pushed a copy of the top: fine, same stack */
  }
  flag[0] = 0;
  m->depth_mark[0] = ns->len;
  int valid = 0;
  for (int k = 0; k < v->n_sorted && rc >= 0; k++) {
    int32_t tok = v->order[k];
    int L = (int)v->len[tok];
    const uint8_t *b = v->bytes[tok];
    int d = v->lcp[k] < valid ? v->lcp[k] : valid;
    ns->len = m->depth_mark[d];
    while (d < L && S[d].n > 0) {
      rc = pl_gadvance(g, ns, &S[d], b[d], &S[d + 1]);
      if (rc < 0)
        break;
      flag[d + 1] = (char)(flag[d] | S[d + 1].hit_sentinel);
      d++;
      m->depth_mark[d] = ns->len;
    }
    valid = d;
    if (rc < 0)
      break;
    if (d == L && (S[L].n > 0 || S[L].accept || S[L].hit_sentinel))
      rc = ipush(&acc, tok);
    else if (flag[d])
      rc = ipush(&uns, tok);
  }
  ns->len = keep;
  if (rc < 0) {
    pl_free(acc.a);
    pl_free(uns.a);
    return rc;
  }
  int words = (v->n_vocab + 63) / 64;
  memcpy(t->key, key, sizeof t->key);
  t->bottom = bottom;
  t->n_accept = acc.n;
  if (acc.n > words * 2) {
    t->accept_bits = pl_calloc((size_t)words, sizeof(uint64_t));
    if (!t->accept_bits) {
      pl_free(acc.a);
      pl_free(uns.a);
      return pl_fail(PL_ENOMEM, "grammar: out of memory");
    }
    for (int i = 0; i < acc.n; i++)
      t->accept_bits[acc.a[i] >> 6] |= 1ull << (acc.a[i] & 63);
    pl_free(acc.a);
    m->g->table_bytes += (size_t)words * 8;
  } else {
    t->accept_ids = acc.a;
    m->g->table_bytes += (size_t)acc.n * 4;
  }
  t->unsure = uns.a;
  t->n_unsure = uns.n;
  m->g->table_bytes += (size_t)uns.n * 4 + sizeof *t;
  return 0;
}

static int find_table(pl_gmatch *m, int32_t top, pl_gtable **out) {
  pl_grammar *g = m->g;
  if (g->table_vocab != m->v) {
    pl_gtables_clear(g);
    g->table_vocab = m->v;
  }
  int32_t key[PL_GKEY];
  int bottom;
  stack_key(&m->nodes, top, key, &bottom);
  uint32_t h = key_hash(key, bottom);
  if (g->hash_cap) {
    for (uint32_t i = h & (uint32_t)(g->hash_cap - 1);; i = (i + 1) & (uint32_t)(g->hash_cap - 1)) {
      int32_t e = g->table_hash[i];
      if (!e)
        break;
      pl_gtable *t = &g->tables[e - 1];
      if (t->bottom == bottom && !memcmp(t->key, key, sizeof key)) {
        *out = t;
        return 0;
      }
    }
  }
  if (pl_array_grow(&g->tables, &g->cap_tables, (size_t)g->n_tables + 1, sizeof *g->tables, 16))
    return pl_fail(PL_ENOMEM, "grammar: out of memory");
  if ((g->n_tables + 1) * 2 > g->hash_cap) { /* rehash */
    int cap = g->hash_cap ? g->hash_cap * 2 : 64;
    int32_t *nh = pl_calloc((size_t)cap, sizeof *nh);
    if (!nh)
      return pl_fail(PL_ENOMEM, "grammar: out of memory");
    for (int i = 0; i < g->n_tables; i++) {
      uint32_t j = key_hash(g->tables[i].key, g->tables[i].bottom) & (uint32_t)(cap - 1);
      while (nh[j])
        j = (j + 1) & (uint32_t)(cap - 1);
      nh[j] = i + 1;
    }
    pl_free(g->table_hash);
    g->table_hash = nh;
    g->hash_cap = cap;
  }
  pl_gtable *t = &g->tables[g->n_tables];
  memset(t, 0, sizeof *t);
  PL_TRY(fill(m, key, bottom, t));
  uint32_t j = h & (uint32_t)(g->hash_cap - 1);
  while (g->table_hash[j])
    j = (j + 1) & (uint32_t)(g->hash_cap - 1);
  g->table_hash[j] = ++g->n_tables;
  *out = t;
  return 0;
}

int pl_gmatch_mask(pl_gmatch *m, uint64_t *mask) {
  const pl_vocab *v = m->v;
  int words = (v->n_vocab + 63) / 64;
  memset(mask, 0, (size_t)words * sizeof *mask);
  for (int i = 0; i < m->cur.n; i++) {
    pl_gtable *t;
    PL_TRY(find_table(m, m->cur.top[i], &t));
    if (t->accept_bits)
      for (int w = 0; w < words; w++)
        mask[w] |= t->accept_bits[w];
    else
      for (int k = 0; k < t->n_accept; k++)
        mask[t->accept_ids[k] >> 6] |= 1ull << (t->accept_ids[k] & 63);
    if (!t->n_unsure)
      continue;
    /* the uncertain tokens against this real stack */
    pl_gset one = {.top = &m->cur.top[i], .n = 1, .cap = 1};
    int keep = m->nodes.len;
    for (int k = 0; k < t->n_unsure; k++) {
      int32_t tok = t->unsure[k];
      if (mask[tok >> 6] >> (tok & 63) & 1)
        continue;
      const pl_gset *in = &one;
      int alive = 1, par = 0;
      for (uint32_t j = 0; j < v->len[tok] && alive; j++) {
        pl_gset *o = &m->tmp[par];
        PL_TRY(pl_gadvance(m->g, &m->nodes, in, v->bytes[tok][j], o));
        alive = o->n > 0 || (j + 1 == v->len[tok] && o->accept);
        in = o;
        par ^= 1;
      }
      if (alive)
        mask[tok >> 6] |= 1ull << (tok & 63);
      m->nodes.len = keep;
    }
  }
  if (m->cur.accept)
    for (int i = 0; i < v->n_eog; i++)
      mask[v->eog[i] >> 6] |= 1ull << (v->eog[i] & 63);
  int count = 0;
  for (int w = 0; w < words; w++)
    count += __builtin_popcountll(mask[w]);
  return count;
}
