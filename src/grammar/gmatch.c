/* The pushdown automaton: sets of stacks advanced byte by byte (llama.cpp's scheme), with
 * stacks as shared parent-linked nodes so advancing one byte touches only the tops. */
#include <string.h>

#include "grammar/grammar_impl.h"
#include "util/alloc.h"
#include "util/array.h"
#include "util/error.h"

static uint32_t node_hash(const pl_gnodes *ns, int32_t pos, int32_t parent) {
  uint32_t below = parent >= 0 ? ns->n[parent].hash : (uint32_t)parent;
  return (below ^ (uint32_t)pos * 0x9E3779B1u) * 16777619u + 0x7F4A7C15u;
}

static int push_hashed(pl_gnodes *ns, int32_t pos, int32_t parent, uint32_t h) {
  if (pl_array_grow(&ns->n, &ns->cap, (size_t)ns->len + 1, sizeof *ns->n, 1024))
    return pl_fail(PL_ENOMEM, "grammar: out of memory");
  ns->n[ns->len] = (pl_gnode){pos, parent, h, 0};
  return ns->len++;
}

int pl_gnodes_push(pl_gnodes *ns, int32_t pos, int32_t parent) {
  return push_hashed(ns, pos, parent, node_hash(ns, pos, parent));
}

void pl_gset_free(pl_gset *s) {
  pl_free(s->top);
  pl_free(s->hash);
  memset(s, 0, sizeof *s);
}

/* Whether the stack (pos over parent, of hash h) has the same positions as the one at top. */
static int same_stack(const pl_gnodes *ns, int32_t pos, int32_t parent, uint32_t h,
                      int32_t top) {
  const pl_gnode *t = &ns->n[top];
  if (t->pos != pos || t->hash != h)
    return 0;
  for (int32_t a = parent, b = t->parent; a != b; a = ns->n[a].parent, b = ns->n[b].parent)
    if (a < 0 || b < 0 || ns->n[a].pos != ns->n[b].pos || ns->n[a].hash != ns->n[b].hash)
      return 0;
  return 1;
}

#define GSET_SCAN 16 /* up to this many tops a scan dedups; above, the hash index */

static void hash_insert(pl_gset *s, const pl_gnodes *ns, int i) {
  uint32_t mask = (uint32_t)s->hash_cap - 1;
  uint32_t j = ns->n[s->top[i]].hash & mask;
  while (s->hash[j])
    j = (j + 1) & mask;
  s->hash[j] = i + 1;
}

/* Index all n tops (after the set was emptied, or to grow the table). */
static int hash_rebuild(pl_gset *s, const pl_gnodes *ns) {
  int cap = s->hash_cap ? s->hash_cap : 64;
  while (cap < 4 * (s->n + 1))
    cap *= 2;
  if (cap != s->hash_cap) {
    int32_t *h = pl_realloc(s->hash, (size_t)cap * sizeof *h);
    if (!h)
      return pl_fail(PL_ENOMEM, "grammar: out of memory");
    s->hash = h;
    s->hash_cap = cap;
  }
  memset(s->hash, 0, (size_t)cap * sizeof *s->hash);
  for (int i = 0; i < s->n; i++)
    hash_insert(s, ns, i);
  s->hashed = s->n;
  return 0;
}

int pl_gset_add(pl_gset *s, pl_gnodes *ns, int32_t pos, int32_t parent) {
  /* Dedup by content, not node id: the same stack reached along two paths of an ambiguous
   * grammar has its own nodes, and keeping both doubles the set at every byte. */
  uint32_t h = node_hash(ns, pos, parent);
  if (s->n < GSET_SCAN) {
    s->hashed = 0; /* the index is stale from here until rebuilt */
    for (int i = 0; i < s->n; i++)
      if (same_stack(ns, pos, parent, h, s->top[i]))
        return 0;
  } else {
    if (s->hashed != s->n || 2 * (s->n + 1) > s->hash_cap)
      PL_TRY(hash_rebuild(s, ns));
    uint32_t mask = (uint32_t)s->hash_cap - 1;
    for (uint32_t j = h & mask; s->hash[j]; j = (j + 1) & mask)
      if (same_stack(ns, pos, parent, h, s->top[s->hash[j] - 1]))
        return 0;
  }
  if (s->n == PL_GSET_MAX)
    return pl_fail(PL_EINVAL, "grammar: more than %d parse stacks alive at once (the grammar is "
                   "too ambiguous)", PL_GSET_MAX);
  if (pl_array_grow(&s->top, &s->cap, (size_t)s->n + 1, sizeof *s->top, 8))
    return pl_fail(PL_ENOMEM, "grammar: out of memory");
  int id = push_hashed(ns, pos, parent, h);
  if (id < 0)
    return id;
  s->top[s->n++] = id;
  if (s->hashed == s->n - 1 && s->n > GSET_SCAN) {
    hash_insert(s, ns, s->n - 1);
    s->hashed = s->n;
  }
  return 0;
}

static int is_end(const pl_grammar *g, int32_t pos) { return g->elems[pos].type <= PL_GE_ALT; }

/* A new expansion round: fresh marks and work budget. */
static void begin_round(pl_gnodes *ns) {
  if (++ns->round == 0) { /* wrapped: old marks could look current */
    for (int i = 0; i < ns->len; i++)
      ns->n[i].mark = 0;
    ns->round = 1;
  }
  ns->steps = PL_GEXPAND_MAX_STEPS;
}

static int too_much(void) {
  return pl_fail(PL_EINVAL, "grammar: more than %d expansion steps for one byte (the grammar is "
                 "too ambiguous or nests empty rules too deeply)", PL_GEXPAND_MAX_STEPS);
}

/* Depth first over (position, continuation) items, with the alternatives still to expand on
 * an explicit stack, not the C stack: nested optional repetitions enter rules thousands deep.
 * Every item and every queued alternative is one step of the round's budget, which also
 * bounds the work stack. */
static int expand(const pl_grammar *g, pl_gnodes *ns, int32_t pos, int32_t parent,
                  pl_gset *out) {
  int n = 0; /* queued items; the current one is (pos, parent) */
  for (;;) {
    if (--ns->steps < 0)
      return too_much();
    const pl_gelem *e = &g->elems[pos];
    int done = 0;
    if (e->type == PL_GE_CHAR) {
      PL_TRY(pl_gset_add(out, ns, pos, parent));
      done = 1;
    } else if (e->type == PL_GE_RULE) {
      /* a rule reference: its continuation is pos + 1 (a tail call needs none) */
      int32_t cont = parent;
      if (!is_end(g, pos + 1)) {
        cont = pl_gnodes_push(ns, pos + 1, parent);
        if (cont < 0)
          return cont;
      }
      int r = e->arg, a0 = g->alt_off[r], k = g->alt_off[r + 1] - a0;
      if ((ns->steps -= k - 1) < 0)
        return too_much();
      /* work holds (alternative, continuation) pairs: work_cap counts pairs */
      if (pl_array_grow(&ns->work, &ns->work_cap, (size_t)(n + k - 1), 2 * sizeof *ns->work, 64))
        return pl_fail(PL_ENOMEM, "grammar: out of memory");
      for (int a = a0 + k - 1; a > a0; a--) { /* the second alternative on top */
        ns->work[2 * n] = g->alts[a];
        ns->work[2 * n + 1] = cont;
        n++;
      }
      pos = g->alts[a0];
      parent = cont;
    } else if (parent == PL_GN_BOTTOM) { /* end of an alternative: to the continuation */
      out->accept = 1;
      done = 1;
    } else if (parent == PL_GN_SENTINEL) {
      out->hit_sentinel = 1;
      done = 1;
    } else if (ns->n[parent].mark == ns->round) {
      /* a continuation already returned into this round adds nothing new; without this, k
       * nested rules with two empty alternatives each take 2^k returns */
      done = 1;
    } else {
      ns->n[parent].mark = ns->round;
      pos = ns->n[parent].pos;
      parent = ns->n[parent].parent;
    }
    if (done) {
      if (n == 0)
        return 0;
      n--;
      pos = ns->work[2 * n];
      parent = ns->work[2 * n + 1];
    }
  }
}

int pl_gexpand(const pl_grammar *g, pl_gnodes *ns, int32_t pos, int32_t parent, pl_gset *out) {
  begin_round(ns);
  return expand(g, ns, pos, parent, out);
}

int pl_gadvance(const pl_grammar *g, pl_gnodes *ns, const pl_gset *in, uint8_t b, pl_gset *out) {
  out->n = 0;
  out->accept = 0;
  out->hit_sentinel = 0;
  begin_round(ns);
  for (int i = 0; i < in->n; i++) {
    pl_gnode t = ns->n[in->top[i]];
    const pl_gclass *c = &g->classes[g->elems[t.pos].arg];
    if (!(c->bits[b >> 6] >> (b & 63) & 1))
      continue;
    int rc = expand(g, ns, t.pos + 1, t.parent, out);
    if (rc < 0)
      return rc;
  }
  return 0;
}

/* ---- matcher ------------------------------------------------------------------------------ */

#include "grammar/gmatch_impl.h"

/* Rebuild the committed node store from the live stacks so it does not grow without bound:
 * copy the reachable nodes of `cur` into a fresh store. */
static int compact(pl_gmatch *m) {
  pl_gnodes fresh = {0};
  int32_t *map = pl_malloc((size_t)m->nodes.len * sizeof *map);
  if (!map)
    return pl_fail(PL_ENOMEM, "grammar: out of memory");
  memset(map, 0xff, (size_t)m->nodes.len * sizeof *map);
  /* nodes' parents have lower ids, so walking ids upward copies parents first */
  char *live = pl_calloc((size_t)m->nodes.len, 1);
  if (!live) {
    pl_free(map);
    return pl_fail(PL_ENOMEM, "grammar: out of memory");
  }
  for (int i = 0; i < m->cur.n; i++)
    for (int32_t k = m->cur.top[i]; k >= 0; k = m->nodes.n[k].parent)
      live[k] = 1;
  int rc = 0;
  for (int k = 0; k < m->nodes.len && rc >= 0; k++) {
    if (!live[k])
      continue;
    int32_t p = m->nodes.n[k].parent;
    rc = pl_gnodes_push(&fresh, m->nodes.n[k].pos, p >= 0 ? map[p] : p);
    map[k] = rc;
  }
  if (rc >= 0) {
    for (int i = 0; i < m->cur.n; i++)
      m->cur.top[i] = map[m->cur.top[i]];
    pl_free(m->nodes.n);
    fresh.work = m->nodes.work; /* the scratch moves over; marks restart with the round */
    fresh.work_cap = m->nodes.work_cap;
    fresh.round = m->nodes.round;
    m->nodes = fresh;
  } else {
    pl_free(fresh.n);
  }
  pl_free(map);
  pl_free(live);
  return rc < 0 ? rc : 0;
}

int pl_gmatch_create(pl_grammar *g, const pl_vocab *v, pl_gmatch **out) {
  *out = NULL;
  pl_gmatch *m = pl_calloc(1, sizeof *m);
  if (!m)
    return pl_fail(PL_ENOMEM, "grammar: out of memory");
  m->g = g;
  m->v = v;
  int rc = 0;
  for (int a = g->alt_off[g->root]; a < g->alt_off[g->root + 1] && rc >= 0; a++)
    rc = pl_gexpand(g, &m->nodes, g->alts[a], PL_GN_BOTTOM, &m->cur);
  if (rc < 0) {
    pl_gmatch_free(m);
    return rc;
  }
  *out = m;
  return 0;
}

void pl_gmatch_free(pl_gmatch *m) {
  if (!m)
    return;
  pl_free(m->nodes.n);
  pl_free(m->nodes.work);
  pl_gset_free(&m->cur);
  pl_gset_free(&m->tmp[0]);
  pl_gset_free(&m->tmp[1]);
  for (int i = 0; i < m->n_depth_sets; i++)
    pl_gset_free(&m->depth_sets[i]);
  pl_free(m->depth_sets);
  pl_free(m->depth_mark);
  pl_free(m);
}

int pl_gmatch_can_end(const pl_gmatch *m) { return m->cur.accept; }
int pl_gmatch_done(const pl_gmatch *m) { return m->cur.accept && m->cur.n == 0; }

/* Run bytes from `from` in scratch sets; returns 1 if some stack survives all of them (or the
 * input is empty), 0 if not; the result is left in *res (points at m->tmp). */
static int run_bytes(pl_gmatch *m, const pl_gset *from, const uint8_t *s, size_t n,
                     pl_gset **res) {
  const pl_gset *in = from;
  int k = 0;
  for (size_t i = 0; i < n; i++) {
    pl_gset *o = &m->tmp[k];
    int rc = pl_gadvance(m->g, &m->nodes, in, s[i], o);
    if (rc < 0)
      return rc;
    if (o->n == 0 && !(i + 1 == n && o->accept))
      return 0;
    in = o;
    k ^= 1;
  }
  *res = (pl_gset *)in;
  return 1;
}

int pl_gmatch_accept_bytes(pl_gmatch *m, const char *s, size_t n) {
  int keep = m->nodes.len;
  pl_gset *res = NULL;
  int rc = run_bytes(m, &m->cur, (const uint8_t *)s, n, &res);
  if (rc <= 0) {
    m->nodes.len = keep;
    return rc < 0 ? rc : pl_fail(PL_EINVAL, "grammar: the text does not match the grammar");
  }
  if (res != &m->cur) {
    pl_gset t = m->cur;
    m->cur = *res;
    *res = t;
  }
  if (m->nodes.len > 4096 && m->nodes.len > 8 * m->live_after_compact) {
    PL_TRY(compact(m));
    m->live_after_compact = m->nodes.len;
  }
  return 0;
}

int pl_gmatch_allows(pl_gmatch *m, int32_t token) {
  const pl_vocab *v = m->v;
  if (token < 0 || token >= v->n_vocab)
    return 0;
  for (int i = 0; i < v->n_eog; i++)
    if (v->eog[i] == token)
      return m->cur.accept;
  if (!v->bytes[token])
    return 0;
  int keep = m->nodes.len;
  pl_gset *res;
  int rc = run_bytes(m, &m->cur, v->bytes[token], v->len[token], &res);
  m->nodes.len = keep;
  return rc > 0;
}

int pl_gmatch_accept(pl_gmatch *m, int32_t token) {
  const pl_vocab *v = m->v;
  if (token < 0 || token >= v->n_vocab)
    return pl_fail(PL_EINVAL, "grammar: token %d out of range", token);
  for (int i = 0; i < v->n_eog; i++)
    if (v->eog[i] == token) {
      if (!m->cur.accept)
        return pl_fail(PL_EINVAL, "grammar: end of generation before the grammar is complete");
      m->cur.n = 0; /* nothing may follow */
      return 0;
    }
  if (!v->bytes[token])
    return pl_fail(PL_EINVAL, "grammar: token %d never matches a grammar", token);
  return pl_gmatch_accept_bytes(m, (const char *)v->bytes[token], v->len[token]);
}
