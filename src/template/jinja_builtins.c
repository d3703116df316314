/* Methods callable on values (str, dict, list, loop) and the template globals: range,
 * namespace, dict, and the two transformers adds, raise_exception and strftime_now. The method
 * set mirrors what Jinja's ImmutableSandboxedEnvironment allows on Python objects: reading
 * methods work; mutating ones (list.append, dict.update, ...) exist but fail when called, as
 * the sandbox makes them fail. range() is capped at 100000 items like the sandbox's range. */
#include <locale.h>
#include <string.h>
#include <time.h>

#include "template/jinja_eval.h"
#include "util/error.h"

#define PL_JINJA_MAX_RANGE 100000

#define BIND(fname, ...)                                                                    \
  static const char *const params_[] = {__VA_ARGS__};                                       \
  enum { NP_ = sizeof params_ / sizeof *params_ };                                          \
  PL_TRY(pl_jargs_bind(c, fname, a, params_, NP_, v, NULL))

static int no_args(pl_jctx *c, const char *fname, const pl_jargs *a) {
  if (a->npos || a->nkw)
    return pl_jerr(c, "%s() takes no arguments", fname);
  return PL_OK;
}

static int get_int(pl_jctx *c, pl_jv v, const char *what, int64_t *out) {
  if (v.type == PL_JV_INT || v.type == PL_JV_BOOL) {
    *out = v.type == PL_JV_BOOL ? v.u.b : v.u.i;
    return PL_OK;
  }
  return pl_jerr(c, "%s must be an integer, not '%s'", what, pl_jv_type_name(v));
}

static int need_str_arg(pl_jctx *c, pl_jv v, const char *what) {
  if (v.type == PL_JV_STR)
    return PL_OK;
  return pl_jerr(c, "%s must be str, not '%s'", what, pl_jv_type_name(v));
}

/* Byte range of s[start:end] in code points (Python's optional start/end arguments). */
static int sub_range(pl_jctx *c, pl_jv s, pl_jv vs, pl_jv ve, size_t *b, size_t *e) {
  size_t ncp = pl_utf8_count(s.u.s.p, s.u.s.n);
  int64_t st = 0, en = (int64_t)ncp;
  if (vs.type != PL_JV_NONE && vs.type != PL_JV_UNDEF)
    PL_TRY(get_int(c, vs, "start", &st));
  if (ve.type != PL_JV_NONE && ve.type != PL_JV_UNDEF)
    PL_TRY(get_int(c, ve, "end", &en));
  if (st < 0)
    st = st + (int64_t)ncp < 0 ? 0 : st + (int64_t)ncp;
  if (en < 0)
    en = en + (int64_t)ncp < 0 ? 0 : en + (int64_t)ncp;
  if (st > (int64_t)ncp)
    st = (int64_t)ncp + 1; /* past the end: nothing matches, not even "" */
  if (en > (int64_t)ncp)
    en = (int64_t)ncp;
  if (st > (int64_t)ncp || en < st) {
    *b = 1;
    *e = 0;
    return PL_OK;
  }
  *b = pl_utf8_offset(s.u.s.p, s.u.s.n, (size_t)st);
  *e = pl_utf8_offset(s.u.s.p, s.u.s.n, (size_t)en);
  return PL_OK;
}

/* ---- str -------------------------------------------------------------------------------- */

static int strip_common(pl_jctx *c, pl_jv self, const pl_jargs *a, int l, int r, pl_jv *out) {
  pl_jv v[1] = {pl_jv_none()};
  BIND("strip", "chars");
  return pl_jstr_strip(c, self, v[0], l, r, out);
}
static int m_strip(pl_jctx *c, pl_jv self, const pl_jargs *a, pl_jv *out) {
  return strip_common(c, self, a, 1, 1, out);
}
static int m_lstrip(pl_jctx *c, pl_jv self, const pl_jargs *a, pl_jv *out) {
  return strip_common(c, self, a, 1, 0, out);
}
static int m_rstrip(pl_jctx *c, pl_jv self, const pl_jargs *a, pl_jv *out) {
  return strip_common(c, self, a, 0, 1, out);
}

static int split_common(pl_jctx *c, pl_jv self, const pl_jargs *a, int right, pl_jv *out) {
  pl_jv v[2] = {pl_jv_none(), pl_jv_int(-1)};
  BIND(right ? "rsplit" : "split", "sep", "maxsplit");
  int64_t maxsplit = -1;
  PL_TRY(get_int(c, v[1], "maxsplit", &maxsplit));
  return pl_jstr_split(c, self, v[0], maxsplit, right, out);
}
static int m_split(pl_jctx *c, pl_jv self, const pl_jargs *a, pl_jv *out) {
  return split_common(c, self, a, 0, out);
}
static int m_rsplit(pl_jctx *c, pl_jv self, const pl_jargs *a, pl_jv *out) {
  return split_common(c, self, a, 1, out);
}

static int m_splitlines(pl_jctx *c, pl_jv self, const pl_jargs *a, pl_jv *out) {
  pl_jv v[1] = {pl_jv_bool(0)};
  BIND("splitlines", "keepends");
  int keep = pl_jv_truthy(v[0]);
  pl_jlist *l = pl_jlist_new(&c->arena, 0);
  if (!l)
    return pl_jv_oom(&c->arena);
  const char *p = self.u.s.p;
  size_t n = self.u.s.n, i = 0;
  while (i < n) {
    size_t st = i;
    while (i < n && p[i] != '\n' && p[i] != '\r')
      i++;
    size_t end = i;
    if (i < n)
      i += (p[i] == '\r' && i + 1 < n && p[i + 1] == '\n') ? 2 : 1;
    PL_TRY(pl_jlist_push(&c->arena, l, pl_jv_str(p + st, (keep ? i : end) - st)));
  }
  *out = pl_jv_list(l, 0);
  return PL_OK;
}

static int affix_common(pl_jctx *c, pl_jv self, const pl_jargs *a, int suffix, pl_jv *out) {
  pl_jv v[3] = {pl_jv_undef("prefix"), pl_jv_none(), pl_jv_none()};
  BIND(suffix ? "endswith" : "startswith", "prefix", "start", "end");
  size_t b = 0, e = 0;
  PL_TRY(sub_range(c, self, v[1], v[2], &b, &e));
  const pl_jv *cands = &v[0];
  size_t nc = 1;
  if (v[0].type == PL_JV_LIST && v[0].tuple) {
    cands = v[0].u.l->v;
    nc = v[0].u.l->n;
  }
  int hit = 0;
  for (size_t i = 0; i < nc && !hit; i++) {
    if (cands[i].type != PL_JV_STR)
      return pl_jerr(c, "%s first arg must be str or a tuple of str",
                     suffix ? "endswith" : "startswith");
    size_t m = cands[i].u.s.n;
    if (b > e || e - b < m)
      continue;
    const char *at = suffix ? self.u.s.p + e - m : self.u.s.p + b;
    hit = m == 0 || memcmp(at, cands[i].u.s.p, m) == 0;
  }
  *out = pl_jv_bool(hit);
  return PL_OK;
}
static int m_startswith(pl_jctx *c, pl_jv self, const pl_jargs *a, pl_jv *out) {
  return affix_common(c, self, a, 0, out);
}
static int m_endswith(pl_jctx *c, pl_jv self, const pl_jargs *a, pl_jv *out) {
  return affix_common(c, self, a, 1, out);
}

#define CASE_METHOD(fname, pyname, mode)                                                    \
  static int fname(pl_jctx *c, pl_jv self, const pl_jargs *a, pl_jv *out) {                 \
    PL_TRY(no_args(c, pyname, a));                                                          \
    return pl_jstr_case(c, self, mode, out);                                                \
  }
CASE_METHOD(m_upper, "upper", PL_JCASE_UPPER)
CASE_METHOD(m_lower, "lower", PL_JCASE_LOWER)
CASE_METHOD(m_casefold, "casefold", PL_JCASE_LOWER)
CASE_METHOD(m_title, "title", PL_JCASE_TITLE)
CASE_METHOD(m_capitalize, "capitalize", PL_JCASE_CAPITALIZE)
CASE_METHOD(m_swapcase, "swapcase", PL_JCASE_SWAP)

#define IS_METHOD(fname, pyname)                                                            \
  static int fname(pl_jctx *c, pl_jv self, const pl_jargs *a, pl_jv *out) {                 \
    PL_TRY(no_args(c, pyname, a));                                                          \
    *out = pl_jv_bool(pl_jstr_is(self, pyname));                                            \
    return PL_OK;                                                                           \
  }
IS_METHOD(m_isdigit, "isdigit")
IS_METHOD(m_isalpha, "isalpha")
IS_METHOD(m_isalnum, "isalnum")
IS_METHOD(m_isspace, "isspace")
IS_METHOD(m_islower, "islower")
IS_METHOD(m_isupper, "isupper")

static int m_replace(pl_jctx *c, pl_jv self, const pl_jargs *a, pl_jv *out) {
  pl_jv v[3] = {pl_jv_undef("old"), pl_jv_undef("new"), pl_jv_int(-1)};
  BIND("replace", "old", "new", "count");
  int64_t count = 0;
  PL_TRY(get_int(c, v[2], "count", &count));
  return pl_jstr_replace(c, self, v[0], v[1], count, out);
}

/* find / rfind / index / rindex / count */
static int search_common(pl_jctx *c, pl_jv self, const pl_jargs *a, const char *name,
                         int right, int must, int counting, pl_jv *out) {
  pl_jv v[3] = {pl_jv_undef("sub"), pl_jv_none(), pl_jv_none()};
  BIND(name, "sub", "start", "end");
  PL_TRY(need_str_arg(c, v[0], "substring"));
  size_t b, e, m = v[0].u.s.n;
  PL_TRY(sub_range(c, self, v[1], v[2], &b, &e));
  const char *p = self.u.s.p;
  int64_t found = -1, count = 0;
  if (b <= e) {
    if (counting) {
      if (m == 0) {
        count = (int64_t)pl_utf8_count(p + b, e - b) + 1;
      } else {
        for (size_t i = b; i + m <= e;) {
          const char *h = memmem(p + i, e - i, v[0].u.s.p, m);
          if (!h)
            break;
          count++;
          i = (size_t)(h - p) + m;
        }
      }
      *out = pl_jv_int(count);
      return PL_OK;
    }
    if (e - b >= m) {
      if (!right) {
        const char *h = m ? memmem(p + b, e - b, v[0].u.s.p, m) : p + b;
        if (h)
          found = (int64_t)pl_utf8_count(p, (size_t)(h - p));
      } else {
        for (size_t k = e - m + 1; k-- > b;)
          if (m == 0 || memcmp(p + k, v[0].u.s.p, m) == 0) {
            found = (int64_t)pl_utf8_count(p, k);
            break;
          }
      }
    }
  } else if (counting) {
    *out = pl_jv_int(0);
    return PL_OK;
  }
  if (found < 0 && must)
    return pl_jerr(c, "substring not found");
  *out = pl_jv_int(found);
  return PL_OK;
}
static int m_find(pl_jctx *c, pl_jv s, const pl_jargs *a, pl_jv *o) {
  return search_common(c, s, a, "find", 0, 0, 0, o);
}
static int m_rfind(pl_jctx *c, pl_jv s, const pl_jargs *a, pl_jv *o) {
  return search_common(c, s, a, "rfind", 1, 0, 0, o);
}
static int m_index(pl_jctx *c, pl_jv s, const pl_jargs *a, pl_jv *o) {
  return search_common(c, s, a, "index", 0, 1, 0, o);
}
static int m_rindex(pl_jctx *c, pl_jv s, const pl_jargs *a, pl_jv *o) {
  return search_common(c, s, a, "rindex", 1, 1, 0, o);
}
static int m_count(pl_jctx *c, pl_jv s, const pl_jargs *a, pl_jv *o) {
  return search_common(c, s, a, "count", 0, 0, 1, o);
}

static int m_join(pl_jctx *c, pl_jv self, const pl_jargs *a, pl_jv *out) {
  pl_jv v[1] = {pl_jv_undef("iterable")};
  BIND("join", "iterable");
  pl_jlist *l;
  PL_TRY(pl_jinja_iterate(c, v[0], &l));
  pl_jbuf b;
  pl_jbuf_init(&b, c->max_output);
  int rc = PL_OK;
  for (size_t i = 0; i < l->n && rc == PL_OK; i++) {
    if (l->v[i].type != PL_JV_STR) {
      rc = pl_jerr(c, "sequence item %zu: expected str instance, %s found", i,
                   pl_jv_type_name(l->v[i]));
      break;
    }
    if (i)
      rc = pl_jbuf_put(&b, self.u.s.p, self.u.s.n);
    if (rc == PL_OK)
      rc = pl_jbuf_put(&b, l->v[i].u.s.p, l->v[i].u.s.n);
  }
  if (rc) {
    pl_jbuf_free(&b);
    return rc;
  }
  return pl_jstr_make(c, &b, out);
}

static int m_format(pl_jctx *c, pl_jv self, const pl_jargs *a, pl_jv *out) {
  return pl_jinja_str_format(c, self, a, out);
}

static int affix_remove(pl_jctx *c, pl_jv self, const pl_jargs *a, int suffix, pl_jv *out) {
  pl_jv v[1] = {pl_jv_undef("affix")};
  BIND(suffix ? "removesuffix" : "removeprefix", "affix");
  PL_TRY(need_str_arg(c, v[0], "affix"));
  size_t m = v[0].u.s.n, n = self.u.s.n;
  *out = self;
  if (m && m <= n) {
    if (!suffix && memcmp(self.u.s.p, v[0].u.s.p, m) == 0)
      *out = pl_jv_str(self.u.s.p + m, n - m);
    else if (suffix && memcmp(self.u.s.p + n - m, v[0].u.s.p, m) == 0)
      *out = pl_jv_str(self.u.s.p, n - m);
  }
  return PL_OK;
}
static int m_removeprefix(pl_jctx *c, pl_jv s, const pl_jargs *a, pl_jv *o) {
  return affix_remove(c, s, a, 0, o);
}
static int m_removesuffix(pl_jctx *c, pl_jv s, const pl_jargs *a, pl_jv *o) {
  return affix_remove(c, s, a, 1, o);
}

static int partition_common(pl_jctx *c, pl_jv self, const pl_jargs *a, int right, pl_jv *out) {
  pl_jv v[1] = {pl_jv_undef("sep")};
  BIND(right ? "rpartition" : "partition", "sep");
  PL_TRY(need_str_arg(c, v[0], "sep"));
  if (v[0].u.s.n == 0)
    return pl_jerr(c, "empty separator");
  pl_jlist *l = pl_jlist_new(&c->arena, 3);
  if (!l)
    return pl_jv_oom(&c->arena);
  const char *p = self.u.s.p, *q = v[0].u.s.p;
  size_t n = self.u.s.n, m = v[0].u.s.n, at = (size_t)-1;
  if (n >= m) {
    if (!right) {
      const char *h = memmem(p, n, q, m);
      if (h)
        at = (size_t)(h - p);
    } else {
      for (size_t k = n - m + 1; k-- > 0;)
        if (memcmp(p + k, q, m) == 0) {
          at = k;
          break;
        }
    }
  }
  pl_jv empty = pl_jv_str("", 0);
  if (at == (size_t)-1) {
    l->v[0] = right ? empty : self;
    l->v[1] = empty;
    l->v[2] = right ? self : empty;
  } else {
    l->v[0] = pl_jv_str(p, at);
    l->v[1] = v[0];
    l->v[2] = pl_jv_str(p + at + m, n - at - m);
  }
  l->n = 3;
  *out = pl_jv_list(l, 1);
  return PL_OK;
}
static int m_partition(pl_jctx *c, pl_jv s, const pl_jargs *a, pl_jv *o) {
  return partition_common(c, s, a, 0, o);
}
static int m_rpartition(pl_jctx *c, pl_jv s, const pl_jargs *a, pl_jv *o) {
  return partition_common(c, s, a, 1, o);
}

/* ljust / rjust / center / zfill */
static int pad_common(pl_jctx *c, pl_jv self, const pl_jargs *a, int kind, pl_jv *out) {
  static const char *const names[] = {"ljust", "rjust", "center", "zfill"};
  pl_jv v[2] = {pl_jv_undef("width"), pl_jv_str(" ", 1)};
  if (kind == 3) {
    BIND("zfill", "width");
  } else {
    static const char *const params2[] = {"width", "fillchar"};
    PL_TRY(pl_jargs_bind(c, names[kind], a, params2, 2, v, NULL));
  }
  int64_t w = 0;
  PL_TRY(get_int(c, v[0], "width", &w));
  if (v[1].type != PL_JV_STR || pl_utf8_count(v[1].u.s.p, v[1].u.s.n) != 1)
    return pl_jerr(c, "the fill character must be exactly one character long");
  int64_t len = (int64_t)pl_utf8_count(self.u.s.p, self.u.s.n);
  if (w <= len) {
    *out = self;
    return PL_OK;
  }
  if ((uint64_t)w > c->max_output)
    return pl_jerr(c, "width too large");
  int64_t marg = w - len, left;
  if (kind == 0)
    left = 0;
  else if (kind == 2)
    left = marg / 2 + (marg & w & 1);
  else
    left = marg;
  pl_jbuf b;
  pl_jbuf_init(&b, c->max_output);
  int rc = PL_OK;
  const char *body = self.u.s.p;
  size_t body_n = self.u.s.n;
  if (kind == 3) { /* zfill keeps a leading sign in front of the zeros */
    if (body_n && (body[0] == '+' || body[0] == '-')) {
      rc = pl_jbuf_putc(&b, body[0]);
      body++;
      body_n--;
    }
    v[1] = pl_jv_str("0", 1);
  }
  for (int64_t i = 0; i < left && rc == PL_OK; i++)
    rc = pl_jbuf_put(&b, v[1].u.s.p, v[1].u.s.n);
  if (rc == PL_OK)
    rc = pl_jbuf_put(&b, body, body_n);
  for (int64_t i = left; i < marg && rc == PL_OK; i++)
    rc = pl_jbuf_put(&b, v[1].u.s.p, v[1].u.s.n);
  if (rc) {
    pl_jbuf_free(&b);
    return rc;
  }
  return pl_jstr_make(c, &b, out);
}
static int m_ljust(pl_jctx *c, pl_jv s, const pl_jargs *a, pl_jv *o) {
  return pad_common(c, s, a, 0, o);
}
static int m_rjust(pl_jctx *c, pl_jv s, const pl_jargs *a, pl_jv *o) {
  return pad_common(c, s, a, 1, o);
}
static int m_center(pl_jctx *c, pl_jv s, const pl_jargs *a, pl_jv *o) {
  return pad_common(c, s, a, 2, o);
}
static int m_zfill(pl_jctx *c, pl_jv s, const pl_jargs *a, pl_jv *o) {
  return pad_common(c, s, a, 3, o);
}

/* ---- dict / list ------------------------------------------------------------------------ */

static int m_items(pl_jctx *c, pl_jv self, const pl_jargs *a, pl_jv *out) {
  PL_TRY(no_args(c, "items", a));
  const pl_jdict *d = self.u.d;
  pl_jlist *l = pl_jlist_new(&c->arena, d->n);
  if (!l)
    return pl_jv_oom(&c->arena);
  for (size_t i = 0; i < d->n; i++) {
    pl_jlist *pair = pl_jlist_new(&c->arena, 2);
    if (!pair)
      return pl_jv_oom(&c->arena);
    pair->v[0] = d->k[i];
    pair->v[1] = d->v[i];
    pair->n = 2;
    l->v[l->n++] = pl_jv_list(pair, 1);
  }
  *out = pl_jv_list(l, 0);
  return PL_OK;
}

static int keys_or_values(pl_jctx *c, pl_jv self, const pl_jargs *a, int values, pl_jv *out) {
  PL_TRY(no_args(c, values ? "values" : "keys", a));
  const pl_jdict *d = self.u.d;
  pl_jlist *l = pl_jlist_new(&c->arena, d->n);
  if (!l)
    return pl_jv_oom(&c->arena);
  for (size_t i = 0; i < d->n; i++)
    l->v[l->n++] = values ? d->v[i] : d->k[i];
  *out = pl_jv_list(l, 0);
  return PL_OK;
}
static int m_keys(pl_jctx *c, pl_jv s, const pl_jargs *a, pl_jv *o) {
  return keys_or_values(c, s, a, 0, o);
}
static int m_values(pl_jctx *c, pl_jv s, const pl_jargs *a, pl_jv *o) {
  return keys_or_values(c, s, a, 1, o);
}

static int m_get(pl_jctx *c, pl_jv self, const pl_jargs *a, pl_jv *out) {
  pl_jv v[2] = {pl_jv_undef("key"), pl_jv_none()};
  BIND("get", "key", "default");
  const pl_jv *hit = pl_jdict_get(self.u.d, v[0]);
  *out = hit ? *hit : v[1];
  return PL_OK;
}

static int m_copy(pl_jctx *c, pl_jv self, const pl_jargs *a, pl_jv *out) {
  PL_TRY(no_args(c, "copy", a));
  *out = self; /* values are immutable: sharing is a copy */
  if (self.type == PL_JV_LIST) {
    pl_jlist *l = pl_jlist_new(&c->arena, self.u.l->n);
    if (!l)
      return pl_jv_oom(&c->arena);
    for (size_t i = 0; i < self.u.l->n; i++)
      l->v[l->n++] = self.u.l->v[i];
    *out = pl_jv_list(l, 0);
  }
  return PL_OK;
}

static int m_list_index(pl_jctx *c, pl_jv self, const pl_jargs *a, pl_jv *out) {
  pl_jv v[1] = {pl_jv_undef("value")};
  BIND("index", "value");
  for (size_t i = 0; i < self.u.l->n; i++)
    if (pl_jv_equal(self.u.l->v[i], v[0])) {
      *out = pl_jv_int((int64_t)i);
      return PL_OK;
    }
  return pl_jerr(c, "list.index(x): x not in list");
}

static int m_list_count(pl_jctx *c, pl_jv self, const pl_jargs *a, pl_jv *out) {
  pl_jv v[1] = {pl_jv_undef("value")};
  BIND("count", "value");
  int64_t k = 0;
  for (size_t i = 0; i < self.u.l->n; i++)
    k += pl_jv_equal(self.u.l->v[i], v[0]);
  *out = pl_jv_int(k);
  return PL_OK;
}

static int m_unsafe(pl_jctx *c, pl_jv self, const pl_jargs *a, pl_jv *out) {
  return pl_jerr(c, "access to a method that modifies a '%s' is not allowed (immutable sandbox)",
                 pl_jv_type_name(self));
}

static int m_cycle(pl_jctx *c, pl_jv self, const pl_jargs *a, pl_jv *out) {
  if (a->nkw || a->npos == 0)
    return pl_jerr(c, "loop.cycle() needs at least one positional argument");
  *out = a->pos[self.u.loop->index0 % a->npos];
  return PL_OK;
}

typedef struct {
  const char *name;
  pl_jbuiltin fn;
} method;

static const method str_methods[] = {
    {"strip", m_strip},           {"lstrip", m_lstrip},       {"rstrip", m_rstrip},
    {"split", m_split},           {"rsplit", m_rsplit},       {"splitlines", m_splitlines},
    {"startswith", m_startswith}, {"endswith", m_endswith},   {"upper", m_upper},
    {"lower", m_lower},           {"casefold", m_casefold},   {"title", m_title},
    {"capitalize", m_capitalize}, {"swapcase", m_swapcase},   {"replace", m_replace},
    {"find", m_find},             {"rfind", m_rfind},         {"index", m_index},
    {"rindex", m_rindex},         {"count", m_count},         {"join", m_join},
    {"format", m_format},         {"isdigit", m_isdigit},     {"isdecimal", m_isdigit},
    {"isnumeric", m_isdigit},     {"isalpha", m_isalpha},     {"isalnum", m_isalnum},
    {"isspace", m_isspace},       {"islower", m_islower},     {"isupper", m_isupper},
    {"removeprefix", m_removeprefix}, {"removesuffix", m_removesuffix},
    {"partition", m_partition},   {"rpartition", m_rpartition}, {"ljust", m_ljust},
    {"rjust", m_rjust},           {"center", m_center},       {"zfill", m_zfill},
    {NULL, NULL}};

static const method dict_methods[] = {
    {"items", m_items}, {"keys", m_keys},     {"values", m_values},       {"get", m_get},
    {"copy", m_copy},   {"pop", m_unsafe},    {"popitem", m_unsafe},      {"setdefault", m_unsafe},
    {"update", m_unsafe}, {"clear", m_unsafe}, {NULL, NULL}};

static const method list_methods[] = {
    {"index", m_list_index}, {"count", m_list_count}, {"copy", m_copy},
    {"append", m_unsafe},    {"extend", m_unsafe},    {"insert", m_unsafe},
    {"pop", m_unsafe},       {"remove", m_unsafe},    {"reverse", m_unsafe},
    {"sort", m_unsafe},      {"clear", m_unsafe},     {NULL, NULL}};

static const method loop_methods[] = {{"cycle", m_cycle}, {NULL, NULL}};

int pl_jinja_method(pl_jctx *c, pl_jv self, const char *name, pl_jv *out, int *found) {
  const method *tab = self.type == PL_JV_STR    ? str_methods
                      : self.type == PL_JV_DICT ? dict_methods
                      : self.type == PL_JV_LIST ? list_methods
                      : self.type == PL_JV_LOOP ? loop_methods
                                                : NULL;
  *found = 0;
  for (; tab && tab->name; tab++)
    if (!strcmp(tab->name, name)) {
      pl_jfunc *fn = pl_jarena_calloc(&c->arena, sizeof *fn);
      if (!fn)
        return pl_jv_oom(&c->arena);
      fn->name = tab->name;
      fn->fn = tab->fn;
      fn->self = self;
      out->type = PL_JV_FUNC;
      out->tuple = 0;
      out->u.fn = fn;
      *found = 1;
      return PL_OK;
    }
  return PL_OK;
}

/* ---- globals ---------------------------------------------------------------------------- */

static int g_range(pl_jctx *c, pl_jv self, const pl_jargs *a, pl_jv *out) {
  if (a->nkw || a->npos < 1 || a->npos > 3)
    return pl_jerr(c, "range() expects 1 to 3 integer arguments");
  int64_t v[3] = {0, 0, 1};
  for (size_t i = 0; i < a->npos; i++)
    PL_TRY(get_int(c, a->pos[i], "range() argument", &v[i]));
  int64_t start = a->npos == 1 ? 0 : v[0], stop = a->npos == 1 ? v[0] : v[1];
  int64_t step = a->npos == 3 ? v[2] : 1;
  if (step == 0)
    return pl_jerr(c, "range() arg 3 must not be zero");
  /* Item count without overflow: clamp the bounds first. */
  double count = step > 0 ? ((double)stop - (double)start) / (double)step
                          : ((double)start - (double)stop) / (double)-step;
  if (count > PL_JINJA_MAX_RANGE)
    return pl_jerr(c, "range too big: the sandbox blocks ranges larger than %d",
                   PL_JINJA_MAX_RANGE);
  pl_jlist *l = pl_jlist_new(&c->arena, count > 0 ? (size_t)count + 1 : 0);
  if (!l)
    return pl_jv_oom(&c->arena);
  for (int64_t i = start; step > 0 ? i < stop : i > stop; i += step) {
    l->v[l->n++] = pl_jv_int(i);
    if (step > 0 ? i > INT64_MAX - step : i < INT64_MIN - step)
      break;
  }
  *out = pl_jv_list(l, 0);
  return PL_OK;
}

static int make_mapping(pl_jctx *c, const pl_jargs *a, const char *name, pl_jdict **out) {
  pl_jdict *d = pl_jdict_new(&c->arena, a->nkw + 4);
  if (!d)
    return pl_jv_oom(&c->arena);
  for (size_t i = 0; i < a->npos; i++) {
    if (a->pos[i].type != PL_JV_DICT)
      return pl_jerr(c, "%s() positional arguments must be mappings", name);
    for (size_t k = 0; k < a->pos[i].u.d->n; k++)
      PL_TRY(pl_jdict_set(&c->arena, d, a->pos[i].u.d->k[k], a->pos[i].u.d->v[k]));
  }
  for (size_t i = 0; i < a->nkw; i++)
    PL_TRY(pl_jdict_set(&c->arena, d, pl_jv_str(a->kwn[i], strlen(a->kwn[i])), a->kwv[i]));
  *out = d;
  return PL_OK;
}

static int g_namespace(pl_jctx *c, pl_jv self, const pl_jargs *a, pl_jv *out) {
  pl_jdict *d;
  PL_TRY(make_mapping(c, a, "namespace", &d));
  out->type = PL_JV_NS;
  out->tuple = 0;
  out->u.d = d;
  return PL_OK;
}

static int g_dict(pl_jctx *c, pl_jv self, const pl_jargs *a, pl_jv *out) {
  pl_jdict *d;
  PL_TRY(make_mapping(c, a, "dict", &d));
  *out = pl_jv_dict(d);
  return PL_OK;
}

static int g_raise_exception(pl_jctx *c, pl_jv self, const pl_jargs *a, pl_jv *out) {
  pl_jv v[1] = {pl_jv_str("", 0)}, s;
  BIND("raise_exception", "message");
  PL_TRY(pl_jv_str_of(c, v[0], &s));
  /* The template's own message, verbatim: callers show it to the client. */
  return pl_fail(PL_ETEMPLATE, "%.*s", (int)(s.u.s.n > 900 ? 900 : s.u.s.n), s.u.s.p);
}

static int g_strftime_now(pl_jctx *c, pl_jv self, const pl_jargs *a, pl_jv *out) {
  pl_jv v[1] = {pl_jv_undef("format")};
  BIND("strftime_now", "format");
  if (v[0].type != PL_JV_STR)
    return pl_jerr(c, "strftime_now() format must be a string");
  if (v[0].u.s.n == 0) {
    *out = v[0];
    return PL_OK;
  }
  char *fmt = pl_jarena_strndup(&c->arena, v[0].u.s.p, v[0].u.s.n);
  if (!fmt)
    return pl_jv_oom(&c->arena);
  struct tm tm;
  time_t t = c->now ? (time_t)c->now : time(NULL);
  if (c->now)
    gmtime_r(&t, &tm);
  else
    localtime_r(&t, &tm);
  /* Python's datetime.strftime under the C locale ("Jul", not a translated month name). */
  locale_t loc = newlocale(LC_ALL_MASK, "C", (locale_t)0);
  for (size_t cap = 256; cap <= 65536; cap *= 4) {
    char *buf = pl_jalloc(c, cap);
    if (!buf) {
      if (loc)
        freelocale(loc);
      return pl_jv_oom(&c->arena);
    }
    size_t n = loc ? strftime_l(buf, cap, fmt, &tm, loc) : strftime(buf, cap, fmt, &tm);
    if (n > 0) {
      if (loc)
        freelocale(loc);
      *out = pl_jv_str(buf, n);
      return PL_OK;
    }
  }
  if (loc)
    freelocale(loc);
  *out = pl_jv_str("", 0); /* a format that expands to nothing */
  return PL_OK;
}

int pl_jinja_install_globals(pl_jctx *c, pl_jframe *g) {
  static const method globals[] = {{"range", g_range},
                                   {"namespace", g_namespace},
                                   {"dict", g_dict},
                                   {"raise_exception", g_raise_exception},
                                   {"strftime_now", g_strftime_now},
                                   {NULL, NULL}};
  for (const method *m = globals; m->name; m++) {
    pl_jfunc *fn = pl_jarena_calloc(&c->arena, sizeof *fn);
    if (!fn)
      return pl_jv_oom(&c->arena);
    fn->name = m->name;
    fn->fn = m->fn;
    fn->self = pl_jv_undef(NULL);
    pl_jv v = {.type = PL_JV_FUNC};
    v.u.fn = fn;
    PL_TRY(pl_jframe_set(c, g, m->name, v));
  }
  return PL_OK;
}
