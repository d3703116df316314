/* Incremental SSE parser: see sse.h. */
#include "cli/sse.h"

#include <stdlib.h>
#include <string.h>

#include "util/alloc.h"
#include "util/array.h"

void pl_sse_init(pl_sse *s, pl_sse_event_fn fn, void *ud) {
  memset(s, 0, sizeof *s);
  s->max_line = 16u << 20;
  s->on_event = fn;
  s->ud = ud;
}

void pl_sse_free(pl_sse *s) {
  pl_free(s->line);
  pl_free(s->data);
  s->line = s->data = NULL;
}

static int reserve(char **buf, size_t *cap, size_t need) {
  return pl_array_grow(buf, cap, need, 1, 256) < 0 ? -1 : 0;
}

/* One complete line (no terminator). */
static int sse_line(pl_sse *s, const char *l, size_t n) {
  if (n == 0) { /* blank line: dispatch */
    if (s->has_data) {
      s->data[s->data_len] = 0;
      s->on_event(s->ud, s->data, s->data_len);
    }
    s->has_data = 0;
    s->data_len = 0;
    return 0;
  }
  if (l[0] == ':')
    return 0; /* comment */
  const char *colon = memchr(l, ':', n);
  size_t name_len = colon ? (size_t)(colon - l) : n;
  if (name_len != 4 || memcmp(l, "data", 4))
    return 0; /* event:, id:, retry:, unknown fields */
  const char *v = colon ? colon + 1 : l + n;
  size_t vn = (size_t)(l + n - v);
  if (vn && *v == ' ') { /* one optional space after the colon */
    v++;
    vn--;
  }
  /* data + '\n' separator + value + NUL */
  if (reserve(&s->data, &s->data_cap, s->data_len + vn + 2))
    return -1;
  if (s->has_data)
    s->data[s->data_len++] = '\n';
  memcpy(s->data + s->data_len, v, vn);
  s->data_len += vn;
  s->has_data = 1;
  return 0;
}

int pl_sse_feed(pl_sse *s, const char *p, size_t n) {
  size_t i = 0;
  if (n == 0)
    return 0;
  if (s->cr && p[0] == '\n')
    i = 1; /* the LF of a CRLF split across feeds */
  s->cr = 0;
  while (i < n) {
    /* find the next terminator */
    size_t j = i;
    while (j < n && p[j] != '\n' && p[j] != '\r')
      j++;
    size_t part = j - i;
    if (j == n) { /* unfinished line: keep it */
      if (s->line_len + part > s->max_line)
        return -1;
      if (reserve(&s->line, &s->line_cap, s->line_len + part + 1))
        return -1;
      memcpy(s->line + s->line_len, p + i, part);
      s->line_len += part;
      return 0;
    }
    int rc;
    if (s->line_len) { /* join with the stored beginning */
      if (s->line_len + part > s->max_line)
        return -1;
      if (reserve(&s->line, &s->line_cap, s->line_len + part + 1))
        return -1;
      memcpy(s->line + s->line_len, p + i, part);
      rc = sse_line(s, s->line, s->line_len + part);
      s->line_len = 0;
    } else {
      rc = sse_line(s, p + i, part);
    }
    if (rc)
      return rc;
    if (p[j] == '\r') {
      if (j + 1 < n && p[j + 1] == '\n')
        j++;
      else if (j + 1 == n)
        s->cr = 1;
    }
    i = j + 1;
  }
  return 0;
}
