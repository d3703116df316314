/* Stop-string matcher against a brute-force model of its contract, on thousands of random
 * texts (small alphabets so stops and near-misses are frequent), random stop lists and random
 * chunkings. The model, written independently of the matcher:
 *   - after the chunk ending at offset E, if some stop occurs entirely within text[0..E), the
 *     stream stops at the smallest such start (ties: the longest stop); the output is
 *     text[0..start);
 *   - otherwise the output so far is text[0..E - h), where h is the length of the longest
 *     suffix of text[0..E) that is a proper prefix of a stop (h < longest stop);
 *   - at the end without a stop, the output is the whole text.
 * Plus hand cases: straddling chunks, UTF-8 stops, overlapping stops, empty stop entries. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "tokenizer/stop_matcher.h"
#include "util/alloc.h"

static uint64_t rng = 0x243F6A8885A308D3ull;
static uint32_t rnd(void) {
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return (uint32_t)(rng >> 11);
}

/* Brute force: earliest stop wholly inside t[0..end); returns start or -1, *which = index. */
static long model_stop(const char *t, size_t end, char **stops, int n, int *which) {
  long best = -1;
  size_t best_len = 0;
  for (size_t s = 0; s < end; s++)
    for (int i = 0; i < n; i++) {
      size_t l = strlen(stops[i]);
      if (!l || s + l > end || memcmp(t + s, stops[i], l) != 0)
        continue;
      if (best < 0 || (long)s < best || ((long)s == best && l > best_len)) {
        best = (long)s;
        best_len = l;
        *which = i;
      }
    }
  return best;
}

static size_t model_hold(const char *t, size_t end, char **stops, int n) {
  size_t h = 0;
  for (size_t k = 1; k <= end; k++)
    for (int i = 0; i < n; i++) {
      size_t l = strlen(stops[i]);
      if (l > k && memcmp(t + end - k, stops[i], k) == 0 && k > h)
        h = k;
    }
  return h;
}

static void random_runs(void) {
  const char *alpha[] = {"ab", "abc#", "ab\n", "x\xc3\xa9y", "\xe4\xbd\xa0\xe5\xa5\xbd" "a"};
  int runs = 0, fails0 = check_fail_;
  for (int iter = 0; iter < 4000; iter++) {
    const char *al = alpha[rnd() % 5];
    size_t an = strlen(al);
    /* text: random picks of alphabet characters (multi-byte ones kept whole) */
    char text[256];
    size_t tn = 0, want = rnd() % 120;
    while (tn < want) {
      size_t p = rnd() % an;
      while (p > 0 && ((unsigned char)al[p] & 0xC0) == 0x80)
        p--;
      size_t l = 1;
      while (p + l < an && ((unsigned char)al[p + l] & 0xC0) == 0x80)
        l++;
      if (tn + l >= sizeof text)
        break;
      memcpy(text + tn, al + p, l);
      tn += l;
    }
    text[tn] = 0;
    /* stops: substrings of another random text over the same alphabet, or of this text */
    int ns = (int)(rnd() % 4);
    char *stops[4], *stops_c[4];
    for (int i = 0; i < ns; i++) {
      size_t l = 1 + rnd() % 5, s = tn ? rnd() % tn : 0;
      stops[i] = calloc(l + 1, 1);
      if (tn && rnd() % 2) {
        if (s + l > tn)
          l = tn - s;
        memcpy(stops[i], text + s, l);
      } else {
        for (size_t k = 0; k < l; k++)
          stops[i][k] = al[rnd() % an];
      }
      stops_c[i] = stops[i];
    }
    pl_stop_matcher m;
    CHECK(pl_stop_matcher_init(&m, (const char *const *)stops_c, ns) == 0, "init");
    char out[512];
    size_t on = 0, fed = 0;
    int stopped = 0;
    while (fed < tn && !stopped) {
      size_t c = rnd() % 7;
      if (fed + c > tn)
        c = tn - fed;
      pl_stop_result r;
      CHECK(pl_stop_matcher_feed(&m, text + fed, c, &r) == 0, "feed");
      memcpy(out + on, r.text, r.len);
      on += r.len;
      fed += c;
      int which = -1;
      long st = model_stop(text, fed, stops, ns, &which);
      if (st >= 0) {
        CHECK(r.stop >= 0 && (long)r.stop_at == st && strcmp(stops[r.stop], stops[which]) == 0,
              "iter %d: stop at %ld (%d), got %d at %zu", iter, st, which, r.stop, r.stop_at);
        CHECK(on == (size_t)st && memcmp(out, text, on) == 0, "iter %d: output before the stop", iter);
        stopped = 1;
      } else {
        size_t h = model_hold(text, fed, stops, ns);
        CHECK(r.stop < 0, "iter %d: spurious stop", iter);
        CHECK(on == fed - h && memcmp(out, text, on) == 0 && pl_stop_matcher_held(&m) == h,
              "iter %d: emitted %zu of %zu, model holds %zu", iter, on, fed, h);
      }
    }
    pl_stop_result r;
    if (!stopped) {
      pl_stop_matcher_flush(&m, &r);
      memcpy(out + on, r.text, r.len);
      on += r.len;
      CHECK(on == tn && memcmp(out, text, tn) == 0, "iter %d: flush", iter);
    } else { /* nothing after a stop */
      CHECK(pl_stop_matcher_feed(&m, "abc", 3, &r) == 0 && r.len == 0 && r.stop < 0, "after stop");
    }
    pl_stop_matcher_free(&m);
    for (int i = 0; i < ns; i++)
      free(stops[i]);
    runs++;
  }
  printf("random runs: %d, failures %d\n", runs, check_fail_ - fails0);
}

static void hand_cases(void) {
  pl_stop_matcher m;
  pl_stop_result r;
  const char *s1[] = {"###", "", NULL, "\nUser:"};
  CHECK(pl_stop_matcher_init(&m, s1, 4) == 0, "init");
  pl_stop_matcher_feed(&m, "Hello #", 7, &r);
  CHECK(r.len == 6 && memcmp(r.text, "Hello ", 6) == 0 && r.stop < 0, "hold '#'");
  pl_stop_matcher_feed(&m, "# no", 4, &r); /* "## no": not a stop, '#' released */
  CHECK(r.len == 5 && memcmp(r.text, "## no", 5) == 0, "released: '%.*s'", (int)r.len, r.text);
  pl_stop_matcher_feed(&m, "\nUs", 3, &r);
  CHECK(r.len == 0 && pl_stop_matcher_held(&m) == 3, "hold '\\nUs'");
  pl_stop_matcher_feed(&m, "er: hi", 6, &r);
  CHECK(r.len == 0 && r.stop == 3 && r.stop_at == 11, "stop index %d at %zu", r.stop, r.stop_at);
  pl_stop_matcher_free(&m);

  /* UTF-8 stop straddling a multi-byte character split across chunks */
  const char *s2[] = {"\xe4\xbd\xa0\xe5\xa5\xbd"};
  pl_stop_matcher_init(&m, s2, 1);
  pl_stop_matcher_feed(&m, "ok \xe4\xbd\xa0", 6, &r);
  CHECK(r.len == 3 && memcmp(r.text, "ok ", 3) == 0, "utf8 hold");
  pl_stop_matcher_feed(&m, "\xe5\xa5\xbd!", 4, &r);
  CHECK(r.len == 0 && r.stop == 0 && r.stop_at == 3, "utf8 stop");
  pl_stop_matcher_free(&m);

  /* overlapping stops finishing in the same chunk: the earliest start wins */
  const char *s3[] = {"bcd", "abcde"};
  pl_stop_matcher_init(&m, s3, 2);
  pl_stop_matcher_feed(&m, "xxabc", 5, &r);
  CHECK(r.len == 2 && pl_stop_matcher_held(&m) == 3, "hold 'abc'");
  pl_stop_matcher_feed(&m, "de", 2, &r);
  CHECK(r.stop == 1 && r.stop_at == 2 && r.len == 0, "earliest start: %d at %zu", r.stop, r.stop_at);
  pl_stop_matcher_free(&m);

  /* no stops: pass-through */
  pl_stop_matcher_init(&m, NULL, 0);
  pl_stop_matcher_feed(&m, "abc", 3, &r);
  CHECK(r.len == 3 && r.stop < 0, "pass-through");
  pl_stop_matcher_free(&m);
}

int main(void) {
  size_t live0 = pl_alloc_live_bytes();
  hand_cases();
  random_runs();
  CHECK(pl_alloc_live_bytes() == live0, "leak: %zu bytes", pl_alloc_live_bytes() - live0);
  return check_summary("test_stop_matcher");
}
