/* Bounded word -> ids cache for one encode call. Natural text repeats its words, so long
 * inputs (>= PL_WCACHE_MIN_INPUT bytes) get 4096 direct-mapped slots holding words of up to
 * 22 bytes and up to 8 ids; a colliding word simply replaces the slot. It never grows, and
 * short inputs (most prompts) never pay for it. Used by BPE words and SPM words alike.
 */
#include <string.h>
#include <xxhash.h>

#include "tokenizer/tokenizer_impl.h"
#include "util/alloc.h"
#include "util/error.h"

#define WC_SLOTS 4096
#define WC_MAXW 22
#define WC_MAXT 8

typedef struct {
  uint64_t h;
  uint8_t wlen, nt;
  char w[WC_MAXW];
  int32_t ids[WC_MAXT];
} wc_ent;

struct pl_tok_wcache {
  wc_ent e[WC_SLOTS];
};

int pl_tok_wcache_ensure(pl_tok_ctx *c, size_t input_len) {
  if (c->wcache || input_len < PL_WCACHE_MIN_INPUT)
    return PL_OK;
  c->wcache = pl_calloc(1, sizeof *c->wcache);
  return c->wcache ? PL_OK : pl_fail(PL_ENOMEM, "tokenizer: out of memory (word cache)");
}

void pl_tok_wcache_free(pl_tok_ctx *c) {
  pl_free(c->wcache);
  c->wcache = NULL;
}

int pl_tok_wcache_get(pl_tok_ctx *c, const char *w, size_t n, pl_tok_wslot *slot) {
  slot->e = NULL;
  if (!c->wcache || n > WC_MAXW)
    return 0;
  uint64_t h = XXH3_64bits(w, n);
  wc_ent *e = &c->wcache->e[h & (WC_SLOTS - 1)];
  slot->e = e;
  slot->h = h;
  if (e->h != h || e->wlen != n || memcmp(e->w, w, n) != 0)
    return 0;
  for (int i = 0; i < e->nt; i++)
    if (pl_tok_emit(c, e->ids[i]) != PL_OK)
      return -1;
  return 1;
}

void pl_tok_wcache_put(pl_tok_ctx *c, const pl_tok_wslot *slot, const char *w, size_t n, size_t first) {
  wc_ent *e = slot->e;
  size_t nt = c->out->n - first;
  if (!e || nt > WC_MAXT)
    return;
  e->h = slot->h;
  e->wlen = (uint8_t)n;
  e->nt = (uint8_t)nt;
  memcpy(e->w, w, n);
  memcpy(e->ids, c->out->ids + first, nt * sizeof(int32_t));
}
