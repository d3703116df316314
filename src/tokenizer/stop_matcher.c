/* Stop-string matcher (see stop_matcher.h). The buffer holds the tail kept from earlier
 * chunks followed by the new chunk; every stop string is searched in it (memmem), the
 * earliest occurrence wins. Without a hit, the tail to keep is found by trying suffixes from
 * the longest possible (max stop length - 1) down. Cost per feed: O((held + len) * n_stops).
 */
#include "tokenizer/stop_matcher.h"

#include <string.h>

#include "util/alloc.h"
#include "util/array.h"
#include "util/error.h"

int pl_stop_matcher_init(pl_stop_matcher *m, const char *const *stops, int n) {
  memset(m, 0, sizeof *m);
  m->stopped = -1;
  if (n < 0 || (n > 0 && !stops))
    return pl_fail(PL_EINVAL, "stop matcher: bad stop list");
  if (n == 0)
    return PL_OK;
  m->stops = pl_calloc((size_t)n, sizeof *m->stops);
  m->lens = pl_calloc((size_t)n, sizeof *m->lens);
  m->index = pl_calloc((size_t)n, sizeof *m->index);
  if (!m->stops || !m->lens || !m->index)
    goto oom;
  for (int i = 0; i < n; i++) {
    if (!stops[i] || !stops[i][0])
      continue;
    size_t l = strlen(stops[i]);
    m->stops[m->n] = pl_strdup(stops[i]);
    if (!m->stops[m->n])
      goto oom;
    m->lens[m->n] = l;
    m->index[m->n] = i;
    m->n++;
    if (l > m->max_len)
      m->max_len = l;
  }
  return PL_OK;
oom:
  pl_stop_matcher_free(m);
  return pl_fail(PL_ENOMEM, "stop matcher: out of memory");
}

void pl_stop_matcher_free(pl_stop_matcher *m) {
  if (!m)
    return;
  for (int i = 0; i < m->n; i++)
    pl_free(m->stops[i]);
  pl_free(m->stops);
  pl_free(m->lens);
  pl_free(m->index);
  pl_free(m->buf);
  memset(m, 0, sizeof *m);
  m->stopped = -1;
}

size_t pl_stop_matcher_held(const pl_stop_matcher *m) { return m->held; }

/* Is s[0..n) a proper prefix of some stop string? */
static int is_prefix(const pl_stop_matcher *m, const char *s, size_t n) {
  for (int i = 0; i < m->n; i++)
    if (m->lens[i] > n && memcmp(m->stops[i], s, n) == 0)
      return 1;
  return 0;
}

int pl_stop_matcher_feed(pl_stop_matcher *m, const char *text, size_t len, pl_stop_result *r) {
  r->text = m->buf ? m->buf : ""; /* never NULL, even before the first allocation */
  r->len = 0;
  r->stop = -1;
  r->stop_at = 0;
  if (m->stopped >= 0)
    return PL_OK;
  if (m->n == 0) { /* pass-through */
    r->text = text ? text : "";
    r->len = len;
    m->emitted += len;
    return PL_OK;
  }
  /* the tail kept last time stayed in place (the caller was reading before it); move it */
  if (m->off) {
    memmove(m->buf, m->buf + m->off, m->held);
    m->off = 0;
  }
  size_t total = m->held + len;
  if (total == 0)
    return PL_OK;
  if (pl_array_grow(&m->buf, &m->cap, total, 1, 256) < 0)
    return pl_fail(PL_ENOMEM, "stop matcher: out of memory");
  if (len)
    memcpy(m->buf + m->held, text, len);
  r->text = m->buf;

  /* earliest occurrence of any stop string (ties: the longest) */
  size_t best = total;
  int which = -1;
  for (int i = 0; i < m->n; i++) {
    const char *hit = memmem(m->buf, total, m->stops[i], m->lens[i]);
    if (!hit)
      continue;
    size_t at = (size_t)(hit - m->buf);
    if (at < best || (at == best && which >= 0 && m->lens[i] > m->lens[which])) {
      best = at;
      which = i;
    }
  }
  if (which >= 0) {
    r->len = best;
    r->stop = m->index[which];
    r->stop_at = m->emitted + best;
    m->emitted += best;
    m->stopped = r->stop;
    m->held = 0;
    m->off = 0;
    return PL_OK;
  }

  /* keep the longest suffix that could still become a stop string */
  size_t keep = m->max_len - 1 < total ? m->max_len - 1 : total;
  while (keep > 0 && !is_prefix(m, m->buf + total - keep, keep))
    keep--;
  r->len = total - keep;
  m->emitted += r->len;
  /* the held tail moves to the front after the caller has read r->text: copy it past the
   * emitted part now would clobber r->text, so it stays in place until the next feed */
  m->held = keep;
  m->off = total - keep;
  return PL_OK;
}

void pl_stop_matcher_flush(pl_stop_matcher *m, pl_stop_result *r) {
  r->text = m->buf ? m->buf + m->off : "";
  r->len = m->stopped >= 0 ? 0 : m->held;
  r->stop = -1;
  r->stop_at = 0;
  m->emitted += r->len;
  m->held = 0;
  m->off = 0;
}
