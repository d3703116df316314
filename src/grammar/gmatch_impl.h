/* The matcher's state (gmatch.c, token_mask.c). Not a public header. */
#ifndef PL_GRAMMAR_GMATCH_IMPL_H
#define PL_GRAMMAR_GMATCH_IMPL_H
#include "grammar/grammar_impl.h"

struct pl_gmatch {
  pl_grammar *g;
  const pl_vocab *v;
  pl_gnodes nodes;  /* committed stacks; scratch nodes above them are dropped after use */
  pl_gset cur;      /* the stacks after the input so far */
  pl_gset tmp[2];   /* scratch for running bytes */
  pl_gset *depth_sets; /* [n_depth_sets] scratch of the table fill */
  int n_depth_sets;
  int *depth_mark;
  int live_after_compact;
};
#endif
