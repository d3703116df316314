/* The structured-output grammar path on arbitrary input: the text converters, the GBNF
 * compiler and the matcher with its token masks.
 *
 * Input: byte 0 picks the source ('0' GBNF, '1' JSON schema, '2' regex, '3' choices, one per
 * line; the byte's value mod 4), then the text up to the first NUL byte, then the bytes that
 * drive the matcher. A compiled grammar is walked with a 64-token vocabulary; each drive byte
 * picks an allowed token, a refused one, or raw bytes. Invariants checked (abort on failure):
 *   - the mask's count is its popcount; every token's mask bit equals pl_gmatch_allows;
 *   - end of generation is in the mask exactly when pl_gmatch_can_end; done implies can_end
 *     and a mask without byte tokens;
 *   - an allowed token is accepted; a refused one fails with PL_EINVAL and leaves the state
 *     (mask, can_end) as it was; the same for refused raw bytes;
 *   - a twin matcher fed each accepted token's bytes in two pieces (pl_gmatch_accept_bytes)
 *     agrees with the token matcher on the mask, can_end and done after every step;
 *   - every allocation is given back.
 * The text is capped at 4 KiB and the walk at 48 steps so one input stays far under the 10 s
 * timeout of scripts/fuzz.sh. */
#include <jansson.h>

#include "fuzz_common.h"
#include "grammar/grammar.h"
#include "util/error.h"

#define MAX_TEXT 4096
#define MAX_STEPS 48
#define NV 64
#define EOG 0

static const char *pieces[NV];
static size_t plen[NV];
static pl_vocab *vocab;

/* 64 pieces: token 0 ends generation, token 1 never matches, token 2 is empty; then single
 * bytes, JSON-ish pieces, and UTF-8 whole and split (é = C3 A9, € = E2 82 AC, 😀 = F0 9F 98 80). */
static void make_vocab(void) {
  static const char *const multi[] = {
      "{\"", "\":", "\",", "\"}", ", ", "true", "false", "null", "ab", "aa", "12", "-0",
      "\\n", "\\\"", "\\u00", "}]", "[{", "\n ", "  ", "é", "\xC3", "\xA9", "€", "\xE2\x82",
      "\xF0\x9F\x98\x80", "a\xC3", "xyz", ".5", "e+", "\xFF", NULL};
  static const char singles[] = "{}[]\":, \n0123456789-.abcetrfulsnxz\\";
  int k = 3;
  pieces[EOG] = NULL;
  pieces[1] = NULL;
  pieces[2] = "";
  plen[2] = 0;
  for (const char *const *m = multi; *m && k < NV; m++) {
    pieces[k] = *m;
    plen[k++] = strlen(*m);
  }
  static char bytes[2 * NV];
  for (size_t i = 0; singles[i] && k < NV - 1; i++) {
    bytes[2 * k] = singles[i];
    pieces[k] = &bytes[2 * k];
    plen[k++] = 1;
  }
  pieces[k] = "\0"; /* the NUL byte as a piece */
  plen[k++] = 1;
  while (k < NV) {
    pieces[k] = "q";
    plen[k++] = 1;
  }
  int32_t eog = EOG;
  if (pl_vocab_create_raw(NV, pieces, plen, &eog, 1, &vocab) < 0)
    abort();
}

#define FAIL(...)                                                                               \
  do {                                                                                          \
    fprintf(stderr, "fuzz_grammar: " __VA_ARGS__);                                              \
    fprintf(stderr, "\n");                                                                      \
    abort();                                                                                    \
  } while (0)

/* The mask plus the per-token checks; returns the count or a negative status. */
static int checked_mask(pl_gmatch *m, uint64_t *mask) {
  int n = pl_gmatch_mask(m, mask);
  if (n < 0)
    return n;
  if (n != __builtin_popcountll(mask[0]))
    FAIL("mask count %d, popcount %d", n, __builtin_popcountll(mask[0]));
  for (int t = 0; t < NV; t++) {
    int bit = (int)(mask[0] >> t & 1);
    if (bit != pl_gmatch_allows(m, t))
      FAIL("token %d: mask %d, allows %d", t, bit, !bit);
  }
  if ((int)(mask[0] >> EOG & 1) != pl_gmatch_can_end(m))
    FAIL("end of generation in the mask %d, can_end %d", (int)(mask[0] & 1), pl_gmatch_can_end(m));
  if (pl_gmatch_done(m) && (!pl_gmatch_can_end(m) || (mask[0] & ~(1ull << EOG))))
    FAIL("done, yet can_end %d and mask %llx", pl_gmatch_can_end(m), (unsigned long long)mask[0]);
  for (int t = 1; t < 3; t++)
    if (mask[0] >> t & 1)
      FAIL("token %d has no bytes, yet it is allowed", t);
  return n;
}

static void walk(pl_grammar *g, const uint8_t *d, size_t n) {
  pl_gmatch *m = NULL, *twin = NULL;
  if (pl_gmatch_create(g, vocab, &m) < 0 || pl_gmatch_create(g, vocab, &twin) < 0)
    goto out;
  uint64_t mask, mask2;
  size_t i = 0;
  for (int step = 0; step < MAX_STEPS && i < n; step++) {
    int count = checked_mask(m, &mask);
    if (count < 0)
      break;
    if (checked_mask(twin, &mask2) < 0)
      break;
    if (mask != mask2 || pl_gmatch_can_end(m) != pl_gmatch_can_end(twin) ||
        pl_gmatch_done(m) != pl_gmatch_done(twin))
      FAIL("step %d: token matcher (mask %llx end %d) and byte matcher (mask %llx end %d) "
           "differ", step, (unsigned long long)mask, pl_gmatch_can_end(m),
           (unsigned long long)mask2, pl_gmatch_can_end(twin));
    uint8_t b = d[i++];
    if (b >= 0xC0) { /* raw bytes: up to 7 from the input */
      size_t k = b & 7;
      if (k > n - i)
        k = n - i;
      int rc = pl_gmatch_accept_bytes(m, (const char *)d + i, k);
      if (rc == 0) {
        rc = pl_gmatch_accept_bytes(twin, (const char *)d + i, k);
        if (rc != 0)
          FAIL("the same bytes: accepted by one matcher, refused (%d) by its twin", rc);
      } else if (rc == PL_EINVAL) {
        uint64_t again;
        if (checked_mask(m, &again) >= 0 && again != mask)
          FAIL("refused bytes changed the mask %llx -> %llx", (unsigned long long)mask,
               (unsigned long long)again);
      } else {
        break;
      }
      i += k;
      continue;
    }
    if (b >= 0xA0) { /* a refused token must fail and change nothing */
      int32_t t = b % NV;
      if (mask >> t & 1)
        continue;
      int end = pl_gmatch_can_end(m);
      if (pl_gmatch_accept(m, t) != PL_EINVAL)
        FAIL("token %d is not in the mask %llx, yet accepted", t, (unsigned long long)mask);
      uint64_t again;
      if (pl_gmatch_can_end(m) != end)
        FAIL("a refused token changed can_end");
      if (checked_mask(m, &again) >= 0 && again != mask)
        FAIL("a refused token changed the mask");
      continue;
    }
    if (count == 0)
      break;
    int pick = b % count, t = 0;
    for (;; t++)
      if ((mask >> t & 1) && pick-- == 0)
        break;
    int rc = pl_gmatch_accept(m, t);
    if (rc == PL_ENOMEM)
      break;
    if (rc != 0)
      FAIL("token %d is in the mask, yet refused (%d)", t, rc);
    if (t == EOG) {
      if (!pl_gmatch_done(m))
        FAIL("accepted the end of generation, yet not done");
      break;
    }
    size_t cut = i < n ? d[i] % (plen[t] + 1) : plen[t] / 2;
    if (pl_gmatch_accept_bytes(twin, pieces[t], cut) != 0 ||
        pl_gmatch_accept_bytes(twin, pieces[t] + cut, plen[t] - cut) != 0)
      FAIL("token %d accepted, its bytes split at %zu refused", t, cut);
  }
out:
  pl_gmatch_free(m);
  pl_gmatch_free(twin);
}

/* The text as GBNF through the converter the mode names; NULL when it does not convert. */
static char *to_gbnf(int mode, const char *text, size_t len) {
  pl_gconv_error err;
  if (mode == 0)
    return pl_strndup(text, len);
  if (mode == 1) {
    json_t *js = json_loadb(text, len, JSON_DECODE_ANY, NULL);
    if (!js)
      return NULL;
    char *g = pl_json_schema_to_gbnf(js, &err);
    json_decref(js);
    return g;
  }
  char *s = pl_strndup(text, len); /* NUL-terminated for the converters */
  if (!s)
    return NULL;
  char *g = NULL;
  if (mode == 2) {
    g = pl_regex_to_gbnf(s, &err);
  } else {
    const char *choice[16];
    int nc = 0;
    for (char *p = s; nc < 16;) {
      choice[nc++] = p;
      char *e = strchr(p, '\n');
      if (!e)
        break;
      *e = 0;
      p = e + 1;
    }
    g = pl_choice_to_gbnf(choice, nc, &err);
  }
  pl_free(s);
  return g;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (!vocab)
    make_vocab();
  if (size < 1)
    return 0;
  int mode = data[0] % 4;
  const uint8_t *text = data + 1, *sep = memchr(text, 0, size - 1);
  size_t tlen = sep ? (size_t)(sep - text) : size - 1;
  if (tlen > MAX_TEXT)
    return 0;
  const uint8_t *drive = sep ? sep + 1 : data + size;
  size_t dlen = (size_t)(data + size - drive);
  size_t live = pl_alloc_live_bytes();
  char *gbnf = to_gbnf(mode, (const char *)text, tlen);
  if (gbnf) {
    pl_grammar *g = NULL;
    if (pl_grammar_compile(gbnf, strlen(gbnf), &g) == 0) {
      if (pl_grammar_bytes(g) == 0)
        abort();
      walk(g, drive, dlen);
      pl_grammar_free(g);
    } else if (mode == 1 && !memmem(text, tlen, "pattern", 7)) {
      /* the schema converter writes GBNF it vouches for (a regex pattern is checked by the
       * compiler, so it may fail there): only the grammar's size may fail */
      const char *e = pl_last_error();
      if (!strstr(e, "too large") && !strstr(e, "out of memory"))
        FAIL("converter output does not compile: %s\n%s", e, gbnf);
    }
    pl_free(gbnf);
  }
  FZ_LEAK_CHECK(live);
  return 0;
}
