/* Regressions found by tests/fuzz/fuzz_grammar.c, one function each:
 *  - regex_cut_utf8: a pattern ending inside a UTF-8 sequence was read past its NUL (ASan:
 *    heap overflow); now the cut sequence goes to the compiler, which names it; regex errors
 *    give the real offset (it was always 0);
 *  - ambiguous_star: ([0-9]+)* kept one stack per parse of the digits so far (the set doubled
 *    at every byte: the fuzzer's timeout); stacks are now deduplicated by content;
 *  - nullable_alternatives: k nested repetitions of ("" | "") took 2^k expansion steps at
 *    the start (each path pushed its own continuation);
 *  - deep_nullable_nesting: ((x?){0,N}){0,N} entered rules N*N deep in one expansion, past the
 *    C stack (a crash); expansion now keeps its own stack, and a round past its step budget
 *    fails with PL_EINVAL (N = 12 still matches);
 *  - deep_groups: 200000 nested ( groups ) overflowed the C stack in the GBNF parser.
 * Each case also checks that the grammar still means what it says (accepts, can_end, masks). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "grammar/gmatch_impl.h"
#include "pagellm.h"
#include "util/alloc.h"
#include "util/error.h"

/* A 4-token vocabulary: end of generation, "1", "a", "12". */
static pl_vocab *small_vocab(void) {
  const char *p[4] = {NULL, "1", "a", "12"};
  size_t l[4] = {0, 1, 1, 2};
  int32_t eog = 0;
  pl_vocab *v = NULL;
  CHECK(pl_vocab_create_raw(4, p, l, &eog, 1, &v) == 0, "%s", pl_last_error());
  return v;
}

static pl_grammar *compile(const char *s) {
  pl_grammar *g = NULL;
  CHECK(pl_grammar_compile(s, strlen(s), &g) == 0, "%s: %s", s, pl_last_error());
  return g;
}

static void regex_cut_utf8(void) {
  /* exactly sized heap copies, so reading past the NUL is an ASan error */
  const char *cases[] = {"a\xF0", "\xE2\x82", "(x|\xC3"};
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    char *re = pl_strdup(cases[i]);
    pl_gconv_error ce;
    char *g = pl_regex_to_gbnf(re, &ce);
    if (g) {
      /* nothing past the pattern's end (its NUL would be written \x00) */
      CHECK(!strstr(g, "\\x00"), "'%s' -> %s", cases[i], g);
      pl_grammar *gr = NULL;
      CHECK(pl_grammar_compile(g, strlen(g), &gr) == PL_EINVAL &&
            strstr(pl_last_error(), "invalid UTF-8"), "'%s': %s", cases[i], pl_last_error());
      pl_grammar_free(gr);
      pl_free(g);
    } else {
      CHECK(ce.message[0], "'%s': NULL without a message", cases[i]);
    }
    pl_free(re);
  }
  pl_gconv_error ce;
  CHECK(pl_regex_to_gbnf("ab(?=c)", &ce) == NULL && strstr(ce.message, "at offset 3"), "%s",
        ce.message);
  CHECK(pl_regex_to_gbnf("abc)", &ce) == NULL && strstr(ce.message, "at offset 3"), "%s",
        ce.message);
}

static void ambiguous_star(pl_vocab *v) {
  pl_grammar *g = compile("root ::= ([0-9]+)* \"a\"");
  pl_gmatch *m = NULL;
  CHECK(pl_gmatch_create(g, v, &m) == 0);
  /* before: 2^k stacks after k digits; one stack per distinct parse state now */
  for (int i = 0; i < 14; i++) {
    CHECK(pl_gmatch_accept_bytes(m, "7", 1) == 0);
    CHECK(m->cur.n <= 4, "after %d digits: %d stacks", i + 1, m->cur.n);
  }
  for (int i = 0; i < 3000; i++)
    CHECK(pl_gmatch_accept(m, i % 2 ? 1 : 3) == 0, "token %d: %s", i, pl_last_error());
  uint64_t mask[1];
  CHECK_EQ_INT(pl_gmatch_mask(m, mask), 3);
  CHECK(mask[0] == 0xE, "mask %llx", (unsigned long long)mask[0]);
  CHECK(!pl_gmatch_can_end(m));
  CHECK(pl_gmatch_accept(m, 2) == 0 && pl_gmatch_can_end(m) && pl_gmatch_done(m));
  pl_gmatch_free(m);
  pl_grammar_free(g);
}

static void nullable_alternatives(pl_vocab *v) {
  pl_grammar *g = compile("root ::= (\"\" | \"\"){0,20} \"a\"");
  pl_gmatch *m = NULL;
  CHECK(pl_gmatch_create(g, v, &m) == 0, "%s", pl_last_error());
  if (m) {
    CHECK(m->nodes.len < 1000, "%d nodes at the start", m->nodes.len);
    CHECK_EQ_INT(m->cur.n, 1);
    CHECK(!pl_gmatch_allows(m, 1) && pl_gmatch_allows(m, 2) && !pl_gmatch_can_end(m));
    CHECK(pl_gmatch_accept(m, 2) == 0 && pl_gmatch_done(m));
  }
  pl_gmatch_free(m);
  pl_grammar_free(g);
}

static void deep_nullable_nesting(pl_vocab *v) {
  pl_grammar *g = compile("root ::= ((\"a\"?){0,10000}){0,10000} \"1\"");
  pl_gmatch *m = NULL;
  int rc = pl_gmatch_create(g, v, &m);
  CHECK(rc == PL_EINVAL && strstr(pl_last_error(), "grammar: more than"), "rc %d: %s", rc,
        pl_last_error());
  pl_gmatch_free(m);
  pl_grammar_free(g);
  /* the same shape, small: still matched in full */
  g = compile("root ::= ((\"a\"?){0,12}){0,12} \"1\"");
  CHECK(pl_gmatch_create(g, v, &m) == 0, "%s", pl_last_error());
  CHECK(pl_gmatch_accept_bytes(m, "aaaaaaaaaa", 10) == 0, "%s", pl_last_error());
  CHECK(pl_gmatch_allows(m, 1) &&
        !pl_gmatch_can_end(m));
  CHECK(pl_gmatch_accept(m, 1) == 0 && pl_gmatch_done(m));
  pl_gmatch_free(m);
  pl_grammar_free(g);
}

static void deep_groups(void) {
  int n = 200000;
  size_t len = 9 + (size_t)n * 2 + 3;
  char *s = pl_malloc(len + 1);
  memcpy(s, "root ::= ", 9);
  memset(s + 9, '(', (size_t)n);
  memcpy(s + 9 + n, "\"a\"", 3);
  memset(s + 12 + n, ')', (size_t)n);
  s[len] = 0;
  pl_grammar *g = NULL;
  int rc = pl_grammar_compile(s, len, &g);
  CHECK(rc == PL_EINVAL && strstr(pl_last_error(), "nested more than"), "rc %d: %s", rc,
        pl_last_error());
  pl_grammar_free(g);
  /* 500 levels still compile and match */
  n = 500;
  len = 9 + (size_t)n * 2 + 3;
  memset(s + 9, '(', (size_t)n);
  memcpy(s + 9 + n, "\"a\"", 3);
  memset(s + 12 + n, ')', (size_t)n);
  CHECK(pl_grammar_compile(s, len, &g) == 0, "%s", pl_last_error());
  pl_free(s);
  if (g) {
    pl_vocab *v = small_vocab();
    pl_gmatch *m = NULL;
    CHECK(pl_gmatch_create(g, v, &m) == 0 && pl_gmatch_allows(m, 2) && !pl_gmatch_allows(m, 1));
    CHECK(pl_gmatch_accept(m, 2) == 0 && pl_gmatch_done(m));
    pl_gmatch_free(m);
    pl_vocab_free(v);
    pl_grammar_free(g);
  }
}

int main(void) {
  pl_vocab *v = small_vocab();
  regex_cut_utf8();
  ambiguous_star(v);
  nullable_alternatives(v);
  deep_nullable_nesting(v);
  deep_groups();
  pl_vocab_free(v);
  CHECK_EQ_INT(pl_alloc_live_count(), 0);
  return check_summary("test_grammar_fuzz");
}
