/* Grammar internals shared by gbnf.c, gmatch.c and token_mask.c. Not a public header.
 *
 * The IR is one flat element array. A rule is its alternatives, each a run of elements ended by
 * PL_GE_ALT (another alternative follows) or PL_GE_END (the rule's last). An element is a byte
 * class (arg = index into classes) or a rule reference (arg = rule id). */
#ifndef PL_GRAMMAR_IMPL_H
#define PL_GRAMMAR_IMPL_H
#include <stdint.h>

#include "grammar/grammar.h"

enum { PL_GE_END = 0, PL_GE_ALT = 1, PL_GE_RULE = 2, PL_GE_CHAR = 3 };

typedef struct pl_gelem {
  int32_t type; /* PL_GE_* */
  int32_t arg;
} pl_gelem;

typedef struct pl_gclass {
  uint64_t bits[4]; /* bytes 0..255 */
} pl_gclass;

/* The token split for one stack shape: the positions of the top PL_GKEY nodes (fewer when the
 * stack is shallower; then `bottom` says the stack ends there and the split is exact). */
#define PL_GKEY 4
typedef struct pl_gtable {
  int32_t key[PL_GKEY]; /* positions from the top; -1 pads */
  int bottom;
  uint64_t *accept_bits; /* [mask words] when many are accepted, else NULL */
  int32_t *accept_ids;   /* [n_accept] when few are */
  int n_accept;
  int32_t *unsure;       /* [n_unsure] tokens that pop past the key: checked per step */
  int n_unsure;
} pl_gtable;

struct pl_grammar {
  pl_gelem *elems;   /* [n_elems] */
  int n_elems;
  pl_gclass *classes; /* [n_classes] */
  int n_classes;
  int32_t *alt_off;  /* [n_rules + 1] into alts */
  int32_t *alts;     /* element index where each alternative starts */
  int n_rules;
  int root;          /* rule id */
  pl_gtable *tables; /* [n_tables] filled lazily (token_mask.c) */
  int n_tables, cap_tables;
  int32_t *table_hash; /* [hash_cap] table index + 1, 0 = empty */
  int hash_cap;
  const struct pl_vocab *table_vocab; /* the vocabulary the tables are for */
  size_t table_bytes;
};

/* A stack is a node: the position of its top element and the node below (its continuation:
 * where to go on when the current rule ends), -1 = bottom. */
#define PL_GN_BOTTOM (-1)
#define PL_GN_SENTINEL (-2) /* "unknown below" while filling tables */
typedef struct pl_gnode {
  int32_t pos;
  int32_t parent;
  uint32_t hash; /* of the whole stack's positions: equal stacks (other ids) hash equal */
  uint32_t mark; /* == pl_gnodes.round: expansion already returned into this node */
} pl_gnode;

/* Node storage and state sets used by the matcher; grows, never shrinks below `keep`. */
typedef struct pl_gnodes {
  pl_gnode *n;
  int len, cap;
  uint32_t round; /* the current expansion round (pl_gexpand, pl_gadvance) */
  int steps;      /* work left in this round */
  int32_t *work;  /* [2 * work_cap] (position, continuation) items still to expand */
  int work_cap;
} pl_gnodes;

int pl_gnodes_push(pl_gnodes *ns, int32_t pos, int32_t parent); /* id or PL_ENOMEM */

/* Bounds on one expansion round (one byte, or the start), so that an ambiguous or deeply
 * nested grammar fails with PL_EINVAL instead of taking exponential time or memory: steps in
 * all (items expanded and alternatives queued), and stacks alive in one set. */
#define PL_GEXPAND_MAX_STEPS (1 << 18)
#define PL_GSET_MAX (1 << 14)

/* A set of distinct stacks (tops; equal contents are kept once) plus "the grammar may end
 * here" / "a stack ran into the sentinel". Emptied by setting n = 0. */
typedef struct pl_gset {
  int32_t *top;
  int n, cap;
  int accept;
  int hit_sentinel;
  int32_t *hash; /* [hash_cap] index into top + 1 by stack hash, 0 = free; used when large */
  int hash_cap, hashed; /* hashed: how many tops it holds (== n while it is in use) */
} pl_gset;

int pl_gset_add(pl_gset *s, pl_gnodes *ns, int32_t pos, int32_t parent);
/* Expand a position (continuing below `parent`) into byte-class tops in *out. */
int pl_gexpand(const pl_grammar *g, pl_gnodes *ns, int32_t pos, int32_t parent, pl_gset *out);
/* Advance every stack of `in` over byte b into *out (cleared first). */
int pl_gadvance(const pl_grammar *g, pl_gnodes *ns, const pl_gset *in, uint8_t b, pl_gset *out);
void pl_gset_free(pl_gset *s);

/* The vocabulary in sorted order (token_mask.c). */
struct pl_vocab {
  int n_vocab;
  int n_sorted;
  int32_t *order;     /* [n_sorted] token ids sorted by bytes */
  uint16_t *lcp;      /* [n_sorted] common prefix with the previous one */
  const uint8_t **bytes; /* [n_vocab] piece bytes or NULL */
  uint32_t *len;      /* [n_vocab] */
  uint8_t *storage;
  int32_t *eog;
  int n_eog;
  int max_len;
};

void pl_gtables_clear(pl_grammar *g);
#endif
