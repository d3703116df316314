/* Grammar engine checks:
 *  - regular grammars against POSIX extended regexes (glibc's regexec, an independent
 *    matcher): for thousands of random strings over the grammar's alphabet, "the grammar
 *    accepts the whole string" equals "the regex matches the whole string", and every
 *    prefix the regex can still extend is a prefix the grammar keeps alive;
 *  - token masks (cached per-stack-shape tables + per-step checks) against running the
 *    pushdown automaton on each token alone, on random walks through JSON-schema grammars
 *    with a synthetic vocabulary;
 *  - compile errors name the problem. */
#include <regex.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "check.h"
#include "grammar/grammar.h"
#include "pagellm.h"
#include "util/alloc.h"

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static uint32_t rnd(void) {
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return (uint32_t)(rng >> 11);
}

typedef struct {
  const char *gbnf, *ere, *alphabet;
} rcase;

static const rcase RC[] = {
    {"root ::= \"x\" [0-9]+ (\",\" [0-9]+)* \".\"", "^x[0-9]+(,[0-9]+)*\\.$", "x0159,."},
    {"root ::= (\"ab\" | \"a\" \"c\"?)* \"b\"{2,3}", "^(ab|ac?)*b{2,3}$", "abc"},
    {"root ::= [^a-c]? [a-c]{0,2} d\nd ::= \"d\" | \"d\" d", "^[^a-c]?[a-c]{0,2}d+$", "abcdz"},
    {"root ::= ([a-b] [c-d]?){1,3} \"!\"?", "^([a-b][c-d]?){1,3}!?$", "abcd!"},
};

static int grammar_accepts(pl_grammar *g, pl_vocab *v, const char *s) {
  pl_gmatch *m;
  if (pl_gmatch_create(g, v, &m) < 0)
    return -1;
  int ok = pl_gmatch_accept_bytes(m, s, strlen(s)) == 0 && pl_gmatch_can_end(m);
  pl_gmatch_free(m);
  return ok;
}

static void test_vs_regex(pl_vocab *v) {
  for (size_t c = 0; c < sizeof RC / sizeof RC[0]; c++) {
    pl_grammar *g;
    CHECK(pl_grammar_compile(RC[c].gbnf, strlen(RC[c].gbnf), &g) == 0, "%s: %s", RC[c].gbnf,
          pl_last_error());
    regex_t re;
    CHECK(regcomp(&re, RC[c].ere, REG_EXTENDED | REG_NOSUB) == 0);
    size_t na = strlen(RC[c].alphabet);
    int agree = 0, accepted = 0;
    for (int t = 0; t < 3000; t++) {
      char s[16];
      int n = (int)(rnd() % 10);
      for (int i = 0; i < n; i++)
        s[i] = RC[c].alphabet[rnd() % na];
      s[n] = 0;
      int want = regexec(&re, s, 0, NULL, 0) == 0;
      int got = grammar_accepts(g, v, s);
      agree += want == got;
      accepted += want;
      if (want != got)
        CHECK(0, "grammar %zu on '%s': grammar %d, regex %d", c, s, got, want);
    }
    CHECK(accepted > 10, "case %zu: too few accepted samples (%d) to mean anything", c, accepted);
    regfree(&re);
    pl_grammar_free(g);
  }
}

/* Synthetic vocabulary: all 1- and 2-byte strings over a JSON-ish alphabet, plus some longer
 * random ones; token 0 is the end-of-generation token. */
#define NV 3000
static char *pieces[NV];
static size_t plen[NV];

static pl_vocab *make_vocab(void) {
  const char *al = "{}[]\":, \n0123456789-.eEtrufalsnbcdxyz\\";
  size_t na = strlen(al);
  int k = 1;
  for (size_t i = 0; i < na && k < NV; i++) {
    pieces[k] = pl_strndup(al + i, 1);
    plen[k++] = 1;
  }
  for (size_t i = 0; i < na && k < NV; i++)
    for (size_t j = 0; j < na && k < NV; j++) {
      char s[3] = {al[i], al[j], 0};
      pieces[k] = pl_strdup(s);
      plen[k++] = 2;
    }
  while (k < NV) {
    char s[8];
    int n = 3 + (int)(rnd() % 5);
    for (int i = 0; i < n; i++)
      s[i] = al[rnd() % na];
    s[n] = 0;
    pieces[k] = pl_strdup(s);
    plen[k++] = (size_t)n;
  }
  pieces[0] = NULL;
  pl_vocab *v;
  int32_t eog = 0;
  CHECK(pl_vocab_create_raw(NV, (const char *const *)pieces, plen, &eog, 1, &v) == 0);
  return v;
}

static void test_masks(pl_vocab *v) {
  const char *schemas[] = {
      "{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"string\",\"maxLength\":5},"
      "\"b\":{\"type\":\"integer\",\"minimum\":-20,\"maximum\":300},\"c\":{\"type\":\"array\","
      "\"items\":{\"enum\":[\"x\",1,null]},\"maxItems\":3}},\"required\":[\"a\"]}",
      "{\"$defs\":{\"n\":{\"type\":\"object\",\"properties\":{\"k\":{\"type\":\"array\","
      "\"items\":{\"$ref\":\"#/$defs/n\"}}}}},\"$ref\":\"#/$defs/n\"}",
      "{\"type\":\"object\",\"additionalProperties\":true}",
  };
  uint64_t mask[(NV + 63) / 64];
  for (size_t sidx = 0; sidx < sizeof schemas / sizeof schemas[0]; sidx++) {
    json_t *js = json_loads(schemas[sidx], 0, NULL);
    pl_gconv_error ce;
    char *txt = pl_json_schema_to_gbnf(js, &ce);
    CHECK(txt != NULL, "%s", ce.message);
    json_decref(js);
    if (!txt)
      continue;
    pl_grammar *g;
    CHECK(pl_grammar_compile(txt, strlen(txt), &g) == 0, "%s\n%s", pl_last_error(), txt);
    pl_free(txt);
    int completed = 0;
    for (int walk = 0; walk < 20; walk++) {
      pl_gmatch *m;
      CHECK(pl_gmatch_create(g, v, &m) == 0);
      char out[4096];
      size_t olen = 0;
      for (int step = 0; step < 200; step++) {
        int n = pl_gmatch_mask(m, mask);
        int count = 0, mism = 0;
        int32_t pick[NV];
        for (int t = 0; t < NV; t++) {
          int in_mask = (int)(mask[t >> 6] >> (t & 63) & 1);
          if (in_mask != pl_gmatch_allows(m, t))
            mism++;
          if (in_mask)
            pick[count++] = t;
        }
        CHECK(mism == 0, "schema %zu walk %d step %d: %d tokens differ", sidx, walk, step, mism);
        CHECK_EQ_INT(n, count);
        if (count == 0)
          break;
        /* prefer closing tokens late in the walk so walks finish */
        int32_t tok = pick[rnd() % count];
        if (step > 60 && (mask[0] & 1))
          tok = 0;
        CHECK(pl_gmatch_accept(m, tok) == 0);
        if (tok == 0 || pl_gmatch_done(m)) {
          completed++;
          break;
        }
        if (olen + plen[tok] < sizeof out) {
          memcpy(out + olen, pieces[tok], plen[tok]);
          olen += plen[tok];
        }
      }
      pl_gmatch_free(m);
    }
    CHECK(completed > 0, "schema %zu: no walk completed", sidx);
    pl_grammar_free(g);
  }
}

static void test_errors(void) {
  struct { const char *g, *msg; } E[] = {
      {"root ::= foo", "undefined rule 'foo'"},
      {"root ::= root \"a\" | \"b\"", "left-recursive"},
      {"root ::= \"abc", "unterminated string"},
      {"root ::= [a-", "unterminated character class"},
      {"start ::= \"a\"", "no 'root' rule"},
      {"root ::= \"a\"\nroot ::= \"b\"", "defined twice"},
      {"root ::= \"a\"{3,1}", "bad repetition"},
      {"root ::= \"\\q\"", "unknown escape"},
  };
  for (size_t i = 0; i < sizeof E / sizeof E[0]; i++) {
    pl_grammar *g = NULL;
    int rc = pl_grammar_compile(E[i].g, strlen(E[i].g), &g);
    CHECK(rc == PL_EINVAL && strstr(pl_last_error(), E[i].msg), "'%s' -> %d %s", E[i].g, rc,
          pl_last_error());
    pl_grammar_free(g);
  }
  pl_gconv_error ce;
  json_t *js = json_loads("{\"type\":\"object\",\"properties\":{\"a\":{\"not\":{}}}}", 0, NULL);
  CHECK(pl_json_schema_to_gbnf(js, &ce) == NULL && strstr(ce.message, "'not'") &&
        strstr(ce.message, "#/properties/a"), "%s", ce.message);
  json_decref(js);
  CHECK(pl_regex_to_gbnf("(?=a)b", &ce) == NULL && strstr(ce.message, "lookaround"));
}

/* Every number a schema grammar allows parses as a finite double (jansson, which parses tool
 * calls and validates outputs, refuses 1e999 as an overflow). */
static void test_number_range(pl_vocab *v) {
  json_t *js = json_loads("{\"type\":\"object\",\"additionalProperties\":true}", 0, NULL);
  pl_gconv_error ce;
  char *txt = pl_json_schema_to_gbnf(js, &ce);
  json_decref(js);
  pl_grammar *g = NULL;
  CHECK(txt && pl_grammar_compile(txt, strlen(txt), &g) == 0, "%s", pl_last_error());
  pl_free(txt);
  if (!g)
    return;
  const char *ok[] = {"{\"a\":1e99}", "{\"a\":-9999999999999999.9999999999999999e+99}",
                      "{\"a\":0.5E-99}", "{\"a\":533E32}"};
  const char *no[] = {"{\"a\":1e100}", "{\"a\":533E326}", "{\"a\":1e-999}"};
  for (size_t i = 0; i < sizeof ok / sizeof *ok; i++) {
    CHECK(grammar_accepts(g, v, ok[i]) == 1, "%s refused", ok[i]);
    json_t *j = json_loads(ok[i], 0, NULL);
    CHECK(j != NULL, "jansson cannot parse %s", ok[i]);
    json_decref(j);
  }
  for (size_t i = 0; i < sizeof no / sizeof *no; i++)
    CHECK(grammar_accepts(g, v, no[i]) == 0, "%s accepted", no[i]);
  pl_grammar_free(g);
}

int main(void) {
  pl_vocab *v = make_vocab();
  test_number_range(v);
  test_vs_regex(v);
  test_masks(v);
  test_errors();
  pl_vocab_free(v);
  for (int i = 0; i < NV; i++)
    pl_free(pieces[i]);
  CHECK_EQ_INT(pl_alloc_live_count(), 0);
  return check_summary("test_grammar");
}
