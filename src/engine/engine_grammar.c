/* Grammars for constrained decoding: a small cache of compiled grammars keyed by their text
 * (their token tables are the expensive part and live with them), and the vocabulary view the
 * masks are computed over, built on first use. */
#include <string.h>

#include "engine/engine_impl.h"
#include "grammar/grammar.h"
#include "util/alloc.h"
#include "util/error.h"

int pl_engine_grammar_get(pl_engine *e, const char *text, struct pl_grammar **out) {
  if (!e->gvocab) {
    PL_TRY(pl_vocab_create(e->tok, &e->gvocab));
    int words = (e->model->hp.n_vocab + 63) / 64;
    if (!(e->gmask = pl_malloc((size_t)words * sizeof(uint64_t))))
      return pl_fail(PL_ENOMEM, "out of memory for the grammar mask");
  }
  pl_gcache_entry *free_slot = NULL, *lru = NULL;
  for (int i = 0; i < PL_GCACHE; i++) {
    pl_gcache_entry *c = &e->gcache[i];
    if (c->g && !strcmp(c->text, text)) {
      c->refs++;
      c->used = ++e->gcache_clock;
      *out = c->g;
      return 0;
    }
    if (!c->g && !free_slot)
      free_slot = c;
    if (c->g && c->refs == 0 && (!lru || c->used < lru->used))
      lru = c;
  }
  pl_gcache_entry *slot = free_slot ? free_slot : lru;
  struct pl_grammar *g;
  PL_TRY(pl_grammar_compile(text, strlen(text), &g));
  char *t = pl_strdup(text);
  if (!t) {
    pl_grammar_free(g);
    return pl_fail(PL_ENOMEM, "out of memory");
  }
  if (!slot) { /* every cached grammar is in use: this one lives only with its request */
    pl_free(t);
    *out = g;
    return 1;
  }
  if (slot->g) {
    pl_grammar_free(slot->g);
    pl_free(slot->text);
  }
  slot->g = g;
  slot->text = t;
  slot->refs = 1;
  slot->used = ++e->gcache_clock;
  *out = g;
  return 0;
}

void pl_engine_grammar_put(pl_engine *e, struct pl_grammar *g, int owned) {
  if (owned) {
    pl_grammar_free(g);
    return;
  }
  for (int i = 0; i < PL_GCACHE; i++)
    if (e->gcache[i].g == g)
      e->gcache[i].refs--;
}

void pl_engine_grammar_free_all(pl_engine *e) {
  for (int i = 0; i < PL_GCACHE; i++) {
    pl_grammar_free(e->gcache[i].g);
    pl_free(e->gcache[i].text);
  }
  memset(e->gcache, 0, sizeof e->gcache);
  pl_vocab_free(e->gvocab);
  e->gvocab = NULL;
  pl_free(e->gmask);
  e->gmask = NULL;
}
