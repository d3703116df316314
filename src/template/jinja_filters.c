/* Jinja2's built-in filters (the ones chat templates use), plus transformers' `tojson`. Each
 * filter binds its arguments with Jinja's parameter names, so keyword calls such as
 * `tojson(indent=4)` or `map(attribute='name')` work. Filters that return generators in Jinja
 * (map, select, unique, batch, ...) return lists here; `|list` on them is the identity.
 * Not provided (parse error "unsupported filter"): groupby, pprint, random, striptags, urlize,
 * urlencode, wordwrap, xmlattr, filesizeformat, forceescape. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "template/jinja_eval.h"
#include "template/jinja_json.h"
#include "util/error.h"

#define BIND(fname, ...)                                                                    \
  static const char *const params_[] = {__VA_ARGS__};                                       \
  enum { NP_ = sizeof params_ / sizeof *params_ };                                          \
  PL_TRY(pl_jargs_bind(c, fname, a, params_, NP_, v, NULL))

static int no_args(pl_jctx *c, const char *fname, const pl_jargs *a) {
  if (a->npos || a->nkw)
    return pl_jerr(c, "filter '%s' takes no arguments", fname);
  return PL_OK;
}

static int want_int(pl_jctx *c, pl_jv v, const char *what, int64_t *out) {
  if (v.type == PL_JV_INT || v.type == PL_JV_BOOL) {
    *out = v.type == PL_JV_BOOL ? v.u.b : v.u.i;
    return PL_OK;
  }
  return pl_jerr(c, "%s must be an integer, got '%s'", what, pl_jv_type_name(v));
}

static int to_list(pl_jctx *c, pl_jv in, pl_jlist **out) { return pl_jinja_iterate(c, in, out); }

static int new_list(pl_jctx *c, size_t cap, pl_jlist **out) {
  if (!(*out = pl_jlist_new(&c->arena, cap)))
    return pl_jv_oom(&c->arena);
  return PL_OK;
}

/* Jinja's attribute getter: "a.b.0" looks up each part (digits as integers) with getitem. */
static int attr_get(pl_jctx *c, pl_jv item, pl_jv attr, pl_jv *out) {
  if (attr.type == PL_JV_INT)
    return pl_jinja_getitem(c, item, attr, out);
  if (attr.type != PL_JV_STR)
    return pl_jerr(c, "attribute name must be a string");
  const char *p = attr.u.s.p, *e = p + attr.u.s.n;
  pl_jv cur = item;
  while (p <= e) {
    const char *dot = memchr(p, '.', (size_t)(e - p));
    const char *end = dot ? dot : e;
    size_t n = (size_t)(end - p);
    int digits = n > 0;
    for (size_t i = 0; i < n; i++)
      digits &= p[i] >= '0' && p[i] <= '9';
    pl_jv key = {0};
    if (digits && n < 18)
      key = pl_jv_int(strtoll(p, NULL, 10));
    else
      key = pl_jv_str(p, n);
    PL_TRY(pl_jinja_getitem(c, cur, key, &cur));
    if (!dot)
      break;
    p = dot + 1;
  }
  *out = cur;
  return PL_OK;
}

/* Lower-case strings for case-insensitive comparisons (Jinja's ignore_case). */
static int fold(pl_jctx *c, pl_jv v, int case_sensitive, pl_jv *out) {
  if (!case_sensitive && v.type == PL_JV_STR)
    return pl_jstr_case(c, v, PL_JCASE_LOWER, out);
  *out = v;
  return PL_OK;
}

/* Stable merge sort of items by precomputed keys; comparison errors propagate. */
static int merge_sort(pl_jctx *c, pl_jv *items, pl_jv *keys, size_t n, int reverse) {
  if (n < 2)
    return PL_OK;
  pl_jv *ti = pl_jalloc(c, n * sizeof *ti), *tk = pl_jalloc(c, n * sizeof *tk);
  if (!ti || !tk)
    return pl_jv_oom(&c->arena);
  for (size_t w = 1; w < n; w *= 2) {
    for (size_t lo = 0; lo < n; lo += 2 * w) {
      size_t mid = lo + w < n ? lo + w : n, hi = lo + 2 * w < n ? lo + 2 * w : n;
      size_t i = lo, j = mid, k = lo;
      while (i < mid && j < hi) {
        int cmp = 0;
        if (pl_jv_compare(keys[j], keys[i], &cmp) < 0)
          return pl_jerr(c, "sort: %s", pl_last_error());
        /* take from the right only when strictly before (stability); reverse flips order */
        int right_first = reverse ? cmp > 0 && cmp != 2 : cmp < 0;
        if (right_first) {
          ti[k] = items[j];
          tk[k++] = keys[j++];
        } else {
          ti[k] = items[i];
          tk[k++] = keys[i++];
        }
      }
      while (i < mid) {
        ti[k] = items[i];
        tk[k++] = keys[i++];
      }
      while (j < hi) {
        ti[k] = items[j];
        tk[k++] = keys[j++];
      }
    }
    memcpy(items, ti, n * sizeof *ti);
    memcpy(keys, tk, n * sizeof *tk);
  }
  return PL_OK;
}

/* ---- string filters --------------------------------------------------------------------- */

static int f_trim(pl_jctx *c, pl_jv in, const pl_jargs *a, pl_jv *out) {
  pl_jv v[1] = {pl_jv_none()}, s;
  BIND("trim", "chars");
  PL_TRY(pl_jv_str_of(c, in, &s));
  return pl_jstr_strip(c, s, v[0], 1, 1, out);
}

static int case_filter(pl_jctx *c, const char *name, pl_jv in, const pl_jargs *a, int mode,
                       pl_jv *out) {
  PL_TRY(no_args(c, name, a));
  pl_jv s = {0};
  PL_TRY(pl_jv_str_of(c, in, &s));
  return pl_jstr_case(c, s, mode, out);
}
static int f_upper(pl_jctx *c, pl_jv in, const pl_jargs *a, pl_jv *out) {
  return case_filter(c, "upper", in, a, PL_JCASE_UPPER, out);
}
static int f_lower(pl_jctx *c, pl_jv in, const pl_jargs *a, pl_jv *out) {
  return case_filter(c, "lower", in, a, PL_JCASE_LOWER, out);
}
static int f_title(pl_jctx *c, pl_jv in, const pl_jargs *a, pl_jv *out) {
  return case_filter(c, "title", in, a, PL_JCASE_JINJA_TITLE, out);
}
static int f_capitalize(pl_jctx *c, pl_jv in, const pl_jargs *a, pl_jv *out) {
  return case_filter(c, "capitalize", in, a, PL_JCASE_CAPITALIZE, out);
}

static int f_string(pl_jctx *c, pl_jv in, const pl_jargs *a, pl_jv *out) {
  PL_TRY(no_args(c, "string", a));
  return pl_jv_str_of(c, in, out);
}

static int f_safe(pl_jctx *c, pl_jv in, const pl_jargs *a, pl_jv *out) {
  PL_TRY(no_args(c, "safe", a));
  /* Markup(str(value)): a string; nothing is escaped here anyway (no autoescaping). */
  return pl_jv_str_of(c, in, out);
}

static int f_escape(pl_jctx *c, pl_jv in, const pl_jargs *a, pl_jv *out) {
  PL_TRY(no_args(c, "escape", a));
  pl_jv s = {0};
  PL_TRY(pl_jv_str_of(c, in, &s));
  pl_jbuf b;
  pl_jbuf_init(&b, c->max_output);
  int rc = PL_OK;
  for (size_t i = 0; i < s.u.s.n && rc == PL_OK; i++) {
    char ch = s.u.s.p[i];
    const char *e = ch == '&' ? "&amp;" : ch == '<' ? "&lt;" : ch == '>' ? "&gt;"
                  : ch == '"' ? "&#34;" : ch == '\'' ? "&#39;" : NULL;
    rc = e ? pl_jbuf_puts(&b, e) : pl_jbuf_putc(&b, ch);
  }
  if (rc) {
    pl_jbuf_free(&b);
    return rc;
  }
  return pl_jstr_make(c, &b, out);
}

static int f_replace(pl_jctx *c, pl_jv in, const pl_jargs *a, pl_jv *out) {
  pl_jv v[3] = {pl_jv_undef("old"), pl_jv_undef("new"), pl_jv_none()}, s, old, rep;
  BIND("replace", "old", "new", "count");
  int64_t count = -1;
  if (v[2].type != PL_JV_NONE)
    PL_TRY(want_int(c, v[2], "replace count", &count));
  PL_TRY(pl_jv_str_of(c, in, &s));
  PL_TRY(pl_jv_str_of(c, v[0], &old));
  PL_TRY(pl_jv_str_of(c, v[1], &rep));
  return pl_jstr_replace(c, s, old, rep, count, out);
}

static int f_indent(pl_jctx *c, pl_jv in, const pl_jargs *a, pl_jv *out) {
  pl_jv v[3] = {pl_jv_int(4), pl_jv_bool(0), pl_jv_bool(0)}, s = in;
  BIND("indent", "width", "first", "blank");
  if (in.type != PL_JV_STR) /* Jinja does `s += "\n"`: only strings work */
    return in.type == PL_JV_UNDEF ? pl_jinja_undef_error(c, in)
                                  : pl_jerr(c, "indent: expected a string, got '%s'",
                                            pl_jv_type_name(in));
  pl_jv ind = {0};
  if (v[0].type == PL_JV_STR) {
    ind = v[0];
  } else {
    int64_t w = 4;
    PL_TRY(want_int(c, v[0], "indent width", &w));
    if (w < 0)
      w = 0;
    if (w > 4096)
      return pl_jerr(c, "indent width too large");
    char *sp = pl_jalloc(c, (size_t)w + 1);
    if (!sp)
      return pl_jv_oom(&c->arena);
    memset(sp, ' ', (size_t)w);
    ind = pl_jv_str(sp, (size_t)w);
  }
  int first = pl_jv_truthy(v[1]), blank = pl_jv_truthy(v[2]);
  pl_jbuf b;
  pl_jbuf_init(&b, c->max_output);
  int rc = PL_OK;
  if (first)
    rc = pl_jbuf_put(&b, ind.u.s.p, ind.u.s.n);
  /* Jinja appends "\n" and then splits like str.splitlines() (on \n, \r\n and \r here), so
   * a trailing newline survives: "a\n" -> lines "a", "". */
  char *text = pl_jalloc(c, s.u.s.n + 1);
  if (!text)
    return pl_jv_oom(&c->arena);
  memcpy(text, s.u.s.p, s.u.s.n);
  text[s.u.s.n] = '\n';
  const char *p = text;
  size_t n = s.u.s.n + 1, i = 0;
  int line_no = 0;
  while (rc == PL_OK && i < n) {
    size_t st = i;
    while (i < n && p[i] != '\n' && p[i] != '\r')
      i++;
    size_t len = i - st;
    if (i < n)
      i += (p[i] == '\r' && i + 1 < n && p[i + 1] == '\n') ? 2 : 1;
    if (line_no > 0) {
      rc = pl_jbuf_putc(&b, '\n');
      if (rc == PL_OK && (blank || len > 0))
        rc = pl_jbuf_put(&b, ind.u.s.p, ind.u.s.n);
    }
    if (rc == PL_OK)
      rc = pl_jbuf_put(&b, p + st, len);
    line_no++;
  }
  if (rc) {
    pl_jbuf_free(&b);
    return rc;
  }
  return pl_jstr_make(c, &b, out);
}

static int f_center(pl_jctx *c, pl_jv in, const pl_jargs *a, pl_jv *out) {
  pl_jv v[1] = {pl_jv_int(80)}, s;
  BIND("center", "width");
  int64_t w = 0;
  PL_TRY(want_int(c, v[0], "center width", &w));
  PL_TRY(pl_jv_str_of(c, in, &s));
  int64_t len = (int64_t)pl_utf8_count(s.u.s.p, s.u.s.n);
  if (w <= len) {
    *out = s;
    return PL_OK;
  }
  if ((uint64_t)w > c->max_output)
    return pl_jerr(c, "center width too large");
  int64_t marg = w - len, left = marg / 2 + (marg & w & 1);
  pl_jbuf b;
  pl_jbuf_init(&b, c->max_output);
  int rc = PL_OK;
  for (int64_t i = 0; i < left && rc == PL_OK; i++)
    rc = pl_jbuf_putc(&b, ' ');
  if (rc == PL_OK)
    rc = pl_jbuf_put(&b, s.u.s.p, s.u.s.n);
  for (int64_t i = 0; i < marg - left && rc == PL_OK; i++)
    rc = pl_jbuf_putc(&b, ' ');
  if (rc) {
    pl_jbuf_free(&b);
    return rc;
  }
  return pl_jstr_make(c, &b, out);
}

static int f_truncate(pl_jctx *c, pl_jv in, const pl_jargs *a, pl_jv *out) {
  pl_jv v[4] = {pl_jv_int(255), pl_jv_bool(0), pl_jv_str("...", 3), pl_jv_none()}, s, end;
  BIND("truncate", "length", "killwords", "end", "leeway");
  int64_t length = 255, leeway = 5;
  PL_TRY(want_int(c, v[0], "truncate length", &length));
  if (v[3].type != PL_JV_NONE)
    PL_TRY(want_int(c, v[3], "truncate leeway", &leeway));
  PL_TRY(pl_jv_str_of(c, in, &s));
  PL_TRY(pl_jv_str_of(c, v[2], &end));
  int64_t nend = (int64_t)pl_utf8_count(end.u.s.p, end.u.s.n);
  int64_t ns = (int64_t)pl_utf8_count(s.u.s.p, s.u.s.n);
  if (length < nend)
    return pl_jerr(c, "truncate: expected length >= %lld, got %lld", (long long)nend,
                   (long long)length);
  if (leeway < 0)
    return pl_jerr(c, "truncate: expected leeway >= 0");
  if (ns <= length + leeway) {
    *out = s;
    return PL_OK;
  }
  size_t cut = pl_utf8_offset(s.u.s.p, s.u.s.n, (size_t)(length - nend));
  if (!pl_jv_truthy(v[1])) { /* drop the last partial word: rsplit(" ", 1)[0] */
    size_t k = cut;
    while (k > 0 && s.u.s.p[k - 1] != ' ')
      k--;
    if (k > 0)
      cut = k - 1;
  }
  pl_jbuf b;
  pl_jbuf_init(&b, c->max_output);
  int rc = pl_jbuf_put(&b, s.u.s.p, cut);
  if (rc == PL_OK)
    rc = pl_jbuf_put(&b, end.u.s.p, end.u.s.n);
  if (rc) {
    pl_jbuf_free(&b);
    return rc;
  }
  return pl_jstr_make(c, &b, out);
}

static int f_wordcount(pl_jctx *c, pl_jv in, const pl_jargs *a, pl_jv *out) {
  PL_TRY(no_args(c, "wordcount", a));
  pl_jv s = {0};
  PL_TRY(pl_jv_str_of(c, in, &s));
  int64_t words = 0;
  int inword = 0;
  for (size_t i = 0; i < s.u.s.n;) {
    uint32_t cp;
    i = pl_utf8_next(s.u.s.p, s.u.s.n, i, &cp);
    int w = cp == '_' || pl_py_isalnum(cp); /* regex \w */
    if (w && !inword)
      words++;
    inword = w;
  }
  *out = pl_jv_int(words);
  return PL_OK;
}

static int f_format(pl_jctx *c, pl_jv in, const pl_jargs *a, pl_jv *out) {
  pl_jv s = {0};
  PL_TRY(pl_jv_str_of(c, in, &s));
  if (a->npos && a->nkw)
    return pl_jerr(c, "format: can't handle positional and keyword arguments at the same time");
  pl_jv args = {0};
  if (a->nkw) {
    pl_jdict *d = pl_jdict_new(&c->arena, a->nkw);
    if (!d)
      return pl_jv_oom(&c->arena);
    for (size_t i = 0; i < a->nkw; i++)
      PL_TRY(pl_jdict_set(&c->arena, d, pl_jv_str(a->kwn[i], strlen(a->kwn[i])), a->kwv[i]));
    args = pl_jv_dict(d);
  } else {
    pl_jlist *l;
    PL_TRY(new_list(c, a->npos, &l));
    for (size_t i = 0; i < a->npos; i++)
      l->v[l->n++] = a->pos[i];
    args = pl_jv_list(l, 1);
  }
  return pl_jinja_percent_format(c, s, args, out);
}

/* ---- numbers ---------------------------------------------------------------------------- */

static int f_abs(pl_jctx *c, pl_jv in, const pl_jargs *a, pl_jv *out) {
  PL_TRY(no_args(c, "abs", a));
  if (in.type == PL_JV_FLOAT) {
    *out = pl_jv_float(fabs(in.u.f));
  } else if (in.type == PL_JV_INT || in.type == PL_JV_BOOL) {
    int64_t i = in.type == PL_JV_BOOL ? in.u.b : in.u.i;
    if (i == INT64_MIN)
      return pl_jerr(c, "integer overflow");
    *out = pl_jv_int(i < 0 ? -i : i);
  } else {
    return pl_jerr(c, "bad operand type for abs(): '%s'", pl_jv_type_name(in));
  }
  return PL_OK;
}

/* Python int(str, base): optional sign and whitespace, '_' between digits, base prefixes. */
static int parse_py_int(pl_jv s, int base, int64_t *out) {
  const char *p = s.u.s.p, *e = p + s.u.s.n;
  while (p < e && (*p == ' ' || (*p >= '\t' && *p <= '\r')))
    p++;
  while (e > p && (e[-1] == ' ' || (e[-1] >= '\t' && e[-1] <= '\r')))
    e--;
  int neg = 0;
  if (p < e && (*p == '+' || *p == '-'))
    neg = *p++ == '-';
  if (e - p >= 2 && p[0] == '0') {
    char k = (char)(p[1] | 0x20);
    int pb = k == 'x' ? 16 : k == 'o' ? 8 : k == 'b' ? 2 : 0;
    if (pb && (base == 0 || base == pb)) {
      base = pb;
      p += 2;
      if (p < e && *p == '_')
        p++;
    }
  }
  if (base == 0)
    base = 10;
  if (p >= e)
    return -1;
  uint64_t v = 0;
  int prev_us = 1;
  for (; p < e; p++) {
    if (*p == '_') {
      if (prev_us)
        return -1;
      prev_us = 1;
      continue;
    }
    int d = *p >= '0' && *p <= '9' ? *p - '0' : (*p | 0x20) >= 'a' && (*p | 0x20) <= 'z'
                                                    ? (*p | 0x20) - 'a' + 10 : 99;
    if (d >= base)
      return -1;
    if (v > (UINT64_MAX - (uint64_t)d) / (uint64_t)base)
      return -2;
    v = v * (uint64_t)base + (uint64_t)d;
    prev_us = 0;
  }
  if (prev_us || v > (uint64_t)INT64_MAX)
    return prev_us ? -1 : -2;
  *out = neg ? -(int64_t)v : (int64_t)v;
  return 0;
}

/* Python float(str): decimal/exponent forms, inf/nan, '_' between digits. */
static int parse_py_float(pl_jv s, double *out) {
  char buf[128];
  const char *p = s.u.s.p, *e = p + s.u.s.n;
  while (p < e && (*p == ' ' || (*p >= '\t' && *p <= '\r')))
    p++;
  while (e > p && (e[-1] == ' ' || (e[-1] >= '\t' && e[-1] <= '\r')))
    e--;
  size_t m = 0;
  for (const char *q = p; q < e; q++) {
    if (m + 1 >= sizeof buf)
      return -1;
    if (*q == '_')
      continue;
    if (!((*q >= '0' && *q <= '9') || *q == '.' || *q == '+' || *q == '-' ||
          (*q | 0x20) == 'e' || (*q | 0x20) == 'i' || (*q | 0x20) == 'n' ||
          (*q | 0x20) == 'f' || (*q | 0x20) == 'a' || (*q | 0x20) == 't' || (*q | 0x20) == 'y'))
      return -1;
    buf[m++] = *q;
  }
  buf[m] = 0;
  if (m == 0)
    return -1;
  char *end;
  double d = strtod(buf, &end);
  if (*end)
    return -1;
  *out = d;
  return 0;
}

static int f_int(pl_jctx *c, pl_jv in, const pl_jargs *a, pl_jv *out) {
  pl_jv v[2] = {pl_jv_int(0), pl_jv_int(10)};
  BIND("int", "default", "base");
  int64_t base = 0;
  PL_TRY(want_int(c, v[1], "int base", &base));
  switch (in.type) {
  case PL_JV_UNDEF: /* Undefined.__int__ raises */
    return pl_jinja_undef_error(c, in);
  case PL_JV_INT:
    *out = in;
    return PL_OK;
  case PL_JV_BOOL:
    *out = pl_jv_int(in.u.b);
    return PL_OK;
  case PL_JV_FLOAT:
    if (isnan(in.u.f))
      break;
    if (isinf(in.u.f) || fabs(in.u.f) >= 9.2e18)
      return pl_jerr(c, "cannot convert float %s to integer", isinf(in.u.f) ? "infinity" : "value");
    *out = pl_jv_int((int64_t)in.u.f);
    return PL_OK;
  case PL_JV_STR: {
    int64_t i = 0;
    int r = parse_py_int(in, (int)base, &i);
    if (r == 0) {
      *out = pl_jv_int(i);
      return PL_OK;
    }
    if (r == -2)
      return pl_jerr(c, "int: value too large");
    double d; /* "42.23"|int gives 42 */
    if (parse_py_float(in, &d) == 0 && !isnan(d)) {
      if (isinf(d) || fabs(d) >= 9.2e18)
        return pl_jerr(c, "cannot convert float to integer");
      *out = pl_jv_int((int64_t)d);
      return PL_OK;
    }
    break;
  }
  default:
    break;
  }
  *out = v[0];
  return PL_OK;
}

static int f_float(pl_jctx *c, pl_jv in, const pl_jargs *a, pl_jv *out) {
  pl_jv v[1] = {pl_jv_float(0.0)};
  BIND("float", "default");
  double d = 0;
  if (in.type == PL_JV_UNDEF) /* Undefined.__float__ raises */
    return pl_jinja_undef_error(c, in);
  if (in.type == PL_JV_FLOAT)
    *out = in;
  else if (in.type == PL_JV_INT || in.type == PL_JV_BOOL)
    *out = pl_jv_float(pl_jv_as_double(in));
  else if (in.type == PL_JV_STR && parse_py_float(in, &d) == 0)
    *out = pl_jv_float(d);
  else
    *out = v[0];
  return PL_OK;
}

static int f_round(pl_jctx *c, pl_jv in, const pl_jargs *a, pl_jv *out) {
  pl_jv v[2] = {pl_jv_int(0), pl_jv_str("common", 6)};
  BIND("round", "precision", "method");
  int64_t prec = 0;
  PL_TRY(want_int(c, v[0], "round precision", &prec));
  if (!pl_jv_isnum(in))
    return pl_jerr(c, "round: expected a number, got '%s'", pl_jv_type_name(in));
  int common = pl_jv_is_str(v[1], "common"), ceil_m = pl_jv_is_str(v[1], "ceil"),
      floor_m = pl_jv_is_str(v[1], "floor");
  if (!common && !ceil_m && !floor_m)
    return pl_jerr(c, "round: method must be common, ceil or floor");
  if (prec > 300)
    prec = 300;
  if (prec < -300)
    prec = -300;
  if (common && in.type != PL_JV_FLOAT) {
    /* round(int, n) stays an int (half to even for negative n). */
    int64_t i = in.type == PL_JV_BOOL ? in.u.b : in.u.i;
    if (prec >= 0 || prec < -18) {
      *out = pl_jv_int(prec < -18 ? 0 : i);
      return PL_OK;
    }
    int64_t p10 = 1;
    for (int64_t k = 0; k < -prec; k++)
      p10 *= 10;
    int64_t q = i / p10, r = i % p10;
    if (r < 0) {
      q -= 1;
      r += p10;
    }
    if (2 * r > p10 || (2 * r == p10 && (q & 1)))
      q += 1;
    int64_t res = 0;
    if (__builtin_mul_overflow(q, p10, &res))
      return pl_jerr(c, "integer overflow");
    *out = pl_jv_int(res);
    return PL_OK;
  }
  double x = pl_jv_as_double(in), r;
  if (common) {
    if (!isfinite(x)) {
      r = x;
    } else if (prec >= 0) {
      /* Correctly rounded to `prec` decimals, half to even on the exact binary value, as
       * CPython's round(). printf rounds the same way. */
      char buf[400];
      snprintf(buf, sizeof buf, "%.*f", (int)prec, x);
      r = strtod(buf, NULL);
    } else {
      double p10 = pow(10.0, (double)-prec);
      r = nearbyint(x / p10) * p10;
    }
  } else {
    double p10 = pow(10.0, (double)prec);
    r = (ceil_m ? ceil(x * p10) : floor(x * p10)) / p10;
  }
  *out = pl_jv_float(r);
  return PL_OK;
}

/* ---- sequences -------------------------------------------------------------------------- */

static int f_length(pl_jctx *c, pl_jv in, const pl_jargs *a, pl_jv *out) {
  PL_TRY(no_args(c, "length", a));
  switch (in.type) {
  case PL_JV_STR:
    *out = pl_jv_int((int64_t)pl_utf8_count(in.u.s.p, in.u.s.n));
    return PL_OK;
  case PL_JV_LIST:
    *out = pl_jv_int((int64_t)in.u.l->n);
    return PL_OK;
  case PL_JV_DICT:
    *out = pl_jv_int((int64_t)in.u.d->n);
    return PL_OK;
  case PL_JV_UNDEF:
    *out = pl_jv_int(0);
    return PL_OK;
  case PL_JV_LOOP:
    *out = pl_jv_int((int64_t)in.u.loop->items->n);
    return PL_OK;
  default:
    return pl_jerr(c, "object of type '%s' has no len()", pl_jv_type_name(in));
  }
}

static int f_list(pl_jctx *c, pl_jv in, const pl_jargs *a, pl_jv *out) {
  PL_TRY(no_args(c, "list", a));
  pl_jlist *src, *l;
  PL_TRY(to_list(c, in, &src));
  PL_TRY(new_list(c, src->n, &l));
  for (size_t i = 0; i < src->n; i++)
    l->v[l->n++] = src->v[i];
  *out = pl_jv_list(l, 0);
  return PL_OK;
}

static int f_first(pl_jctx *c, pl_jv in, const pl_jargs *a, pl_jv *out) {
  PL_TRY(no_args(c, "first", a));
  pl_jlist *l;
  PL_TRY(to_list(c, in, &l));
  *out = l->n ? l->v[0] : pl_jv_undef("first");
  return PL_OK;
}

static int f_last(pl_jctx *c, pl_jv in, const pl_jargs *a, pl_jv *out) {
  PL_TRY(no_args(c, "last", a));
  pl_jlist *l;
  PL_TRY(to_list(c, in, &l));
  *out = l->n ? l->v[l->n - 1] : pl_jv_undef("last");
  return PL_OK;
}

static int f_reverse(pl_jctx *c, pl_jv in, const pl_jargs *a, pl_jv *out) {
  PL_TRY(no_args(c, "reverse", a));
  pl_jlist *l, *r;
  PL_TRY(to_list(c, in, &l));
  if (in.type == PL_JV_STR) {
    pl_jbuf b;
    pl_jbuf_init(&b, c->max_output);
    for (size_t i = l->n; i-- > 0;) {
      int rc = pl_jbuf_put(&b, l->v[i].u.s.p, l->v[i].u.s.n);
      if (rc) {
        pl_jbuf_free(&b);
        return rc;
      }
    }
    return pl_jstr_make(c, &b, out);
  }
  PL_TRY(new_list(c, l->n, &r));
  for (size_t i = l->n; i-- > 0;)
    r->v[r->n++] = l->v[i];
  *out = pl_jv_list(r, 0);
  return PL_OK;
}

static int f_join(pl_jctx *c, pl_jv in, const pl_jargs *a, pl_jv *out) {
  pl_jv v[2] = {pl_jv_str("", 0), pl_jv_none()}, sep;
  BIND("join", "d", "attribute");
  pl_jlist *l;
  PL_TRY(to_list(c, in, &l));
  PL_TRY(pl_jv_str_of(c, v[0], &sep));
  pl_jbuf b;
  pl_jbuf_init(&b, c->max_output);
  int rc = PL_OK;
  for (size_t i = 0; i < l->n && rc == PL_OK; i++) {
    pl_jv item = l->v[i];
    if (i)
      rc = pl_jbuf_put(&b, sep.u.s.p, sep.u.s.n);
    if (rc == PL_OK && v[1].type != PL_JV_NONE)
      rc = attr_get(c, item, v[1], &item);
    if (rc == PL_OK)
      rc = pl_jv_write_str(&b, item);
  }
  if (rc) {
    pl_jbuf_free(&b);
    return rc;
  }
  return pl_jstr_make(c, &b, out);
}

static int f_items(pl_jctx *c, pl_jv in, const pl_jargs *a, pl_jv *out) {
  PL_TRY(no_args(c, "items", a));
  pl_jlist *l;
  if (in.type == PL_JV_UNDEF) {
    PL_TRY(new_list(c, 0, &l));
  } else if (in.type == PL_JV_DICT) {
    PL_TRY(new_list(c, in.u.d->n, &l));
    for (size_t i = 0; i < in.u.d->n; i++) {
      pl_jlist *pair;
      PL_TRY(new_list(c, 2, &pair));
      pair->v[0] = in.u.d->k[i];
      pair->v[1] = in.u.d->v[i];
      pair->n = 2;
      l->v[l->n++] = pl_jv_list(pair, 1);
    }
  } else {
    return pl_jerr(c, "items: can only get item pairs from a mapping");
  }
  *out = pl_jv_list(l, 0);
  return PL_OK;
}

static int f_dictsort(pl_jctx *c, pl_jv in, const pl_jargs *a, pl_jv *out) {
  pl_jv v[3] = {pl_jv_bool(0), pl_jv_str("key", 3), pl_jv_bool(0)}, pairs;
  BIND("dictsort", "case_sensitive", "by", "reverse");
  int by_value = pl_jv_is_str(v[1], "value");
  if (!by_value && !pl_jv_is_str(v[1], "key"))
    return pl_jerr(c, "dictsort: you can only sort by either \"key\" or \"value\"");
  pl_jargs none = {0};
  PL_TRY(f_items(c, in, &none, &pairs));
  pl_jlist *l = pairs.u.l;
  pl_jv *keys = pl_jalloc(c, (l->n + 1) * sizeof *keys);
  if (!keys)
    return pl_jv_oom(&c->arena);
  for (size_t i = 0; i < l->n; i++)
    PL_TRY(fold(c, l->v[i].u.l->v[by_value], pl_jv_truthy(v[0]), &keys[i]));
  PL_TRY(merge_sort(c, l->v, keys, l->n, pl_jv_truthy(v[2])));
  *out = pairs;
  return PL_OK;
}

static int f_sort(pl_jctx *c, pl_jv in, const pl_jargs *a, pl_jv *out) {
  pl_jv v[3] = {pl_jv_bool(0), pl_jv_bool(0), pl_jv_none()}, copy;
  BIND("sort", "reverse", "case_sensitive", "attribute");
  pl_jargs none = {0};
  PL_TRY(f_list(c, in, &none, &copy));
  pl_jlist *l = copy.u.l;
  pl_jv *keys = pl_jalloc(c, (l->n + 1) * sizeof *keys);
  if (!keys)
    return pl_jv_oom(&c->arena);
  for (size_t i = 0; i < l->n; i++) {
    pl_jv k = l->v[i];
    if (v[2].type != PL_JV_NONE)
      PL_TRY(attr_get(c, k, v[2], &k));
    PL_TRY(fold(c, k, pl_jv_truthy(v[1]), &keys[i]));
  }
  PL_TRY(merge_sort(c, l->v, keys, l->n, pl_jv_truthy(v[0])));
  *out = copy;
  return PL_OK;
}

static int f_unique(pl_jctx *c, pl_jv in, const pl_jargs *a, pl_jv *out) {
  pl_jv v[2] = {pl_jv_bool(0), pl_jv_none()};
  BIND("unique", "case_sensitive", "attribute");
  pl_jlist *l, *r, *seen;
  PL_TRY(to_list(c, in, &l));
  PL_TRY(new_list(c, 0, &r));
  PL_TRY(new_list(c, 0, &seen));
  for (size_t i = 0; i < l->n; i++) {
    pl_jv k = l->v[i];
    if (v[1].type != PL_JV_NONE)
      PL_TRY(attr_get(c, k, v[1], &k));
    PL_TRY(fold(c, k, pl_jv_truthy(v[0]), &k));
    if ((k.type == PL_JV_LIST && !k.tuple) || k.type == PL_JV_DICT || k.type == PL_JV_NS)
      return pl_jerr(c, "unique: unhashable type: '%s'", pl_jv_type_name(k));
    int dup = 0;
    for (size_t j = 0; j < seen->n && !dup; j++)
      dup = pl_jv_equal(seen->v[j], k);
    if (!dup) {
      PL_TRY(pl_jlist_push(&c->arena, seen, k));
      PL_TRY(pl_jlist_push(&c->arena, r, l->v[i]));
    }
  }
  *out = pl_jv_list(r, 0);
  return PL_OK;
}

static int minmax(pl_jctx *c, pl_jv in, const pl_jargs *a, int want_max, pl_jv *out) {
  pl_jv v[2] = {pl_jv_bool(0), pl_jv_none()};
  BIND(want_max ? "max" : "min", "case_sensitive", "attribute");
  pl_jlist *l;
  PL_TRY(to_list(c, in, &l));
  if (l->n == 0) {
    *out = pl_jv_undef("no aggregated item, sequence was empty");
    return PL_OK;
  }
  pl_jv best = l->v[0], bestk = best;
  for (size_t i = 0; i < l->n; i++) {
    pl_jv k = l->v[i];
    if (v[1].type != PL_JV_NONE)
      PL_TRY(attr_get(c, k, v[1], &k));
    PL_TRY(fold(c, k, pl_jv_truthy(v[0]), &k));
    int cmp = 0;
    if (i > 0 && pl_jv_compare(k, bestk, &cmp) < 0)
      return pl_jerr(c, "%s", pl_last_error());
    if (i == 0 || (want_max ? cmp == 1 : cmp == -1)) {
      best = l->v[i];
      bestk = k;
    }
  }
  *out = best;
  return PL_OK;
}
static int f_max(pl_jctx *c, pl_jv in, const pl_jargs *a, pl_jv *out) {
  return minmax(c, in, a, 1, out);
}
static int f_min(pl_jctx *c, pl_jv in, const pl_jargs *a, pl_jv *out) {
  return minmax(c, in, a, 0, out);
}

static int f_sum(pl_jctx *c, pl_jv in, const pl_jargs *a, pl_jv *out) {
  pl_jv v[2] = {pl_jv_none(), pl_jv_int(0)};
  BIND("sum", "attribute", "start");
  pl_jlist *l;
  PL_TRY(to_list(c, in, &l));
  pl_jv acc = v[1];
  for (size_t i = 0; i < l->n; i++) {
    pl_jv x = l->v[i];
    if (v[0].type != PL_JV_NONE)
      PL_TRY(attr_get(c, x, v[0], &x));
    if (!pl_jv_isnum(acc) || !pl_jv_isnum(x))
      return pl_jerr(c, "sum: unsupported operand types '%s' and '%s'", pl_jv_type_name(acc),
                     pl_jv_type_name(x));
    if (acc.type == PL_JV_FLOAT || x.type == PL_JV_FLOAT) {
      acc = pl_jv_float(pl_jv_as_double(acc) + pl_jv_as_double(x));
    } else {
      int64_t s = 0;
      if (__builtin_add_overflow(acc.type == PL_JV_BOOL ? acc.u.b : acc.u.i,
                                 x.type == PL_JV_BOOL ? x.u.b : x.u.i, &s))
        return pl_jerr(c, "integer overflow");
      acc = pl_jv_int(s);
    }
  }
  *out = acc;
  return PL_OK;
}

static int f_batch(pl_jctx *c, pl_jv in, const pl_jargs *a, pl_jv *out) {
  pl_jv v[2] = {pl_jv_undef("linecount"), pl_jv_none()};
  BIND("batch", "linecount", "fill_with");
  int64_t n = 0;
  PL_TRY(want_int(c, v[0], "batch linecount", &n));
  if (n < 1)
    return pl_jerr(c, "batch: linecount must be at least 1");
  pl_jlist *l, *r, *cur = NULL;
  PL_TRY(to_list(c, in, &l));
  PL_TRY(new_list(c, 0, &r));
  for (size_t i = 0; i < l->n; i++) {
    if (!cur)
      PL_TRY(new_list(c, 0, &cur));
    PL_TRY(pl_jlist_push(&c->arena, cur, l->v[i]));
    if ((int64_t)cur->n == n) {
      PL_TRY(pl_jlist_push(&c->arena, r, pl_jv_list(cur, 0)));
      cur = NULL;
    }
  }
  if (cur) {
    if (v[1].type != PL_JV_NONE)
      while ((int64_t)cur->n < n)
        PL_TRY(pl_jlist_push(&c->arena, cur, v[1]));
    PL_TRY(pl_jlist_push(&c->arena, r, pl_jv_list(cur, 0)));
  }
  *out = pl_jv_list(r, 0);
  return PL_OK;
}

static int f_slice(pl_jctx *c, pl_jv in, const pl_jargs *a, pl_jv *out) {
  pl_jv v[2] = {pl_jv_undef("slices"), pl_jv_none()};
  BIND("slice", "slices", "fill_with");
  int64_t k = 0;
  PL_TRY(want_int(c, v[0], "slice count", &k));
  if (k < 1 || k > 100000)
    return pl_jerr(c, "slice: bad number of slices");
  pl_jlist *l, *r;
  PL_TRY(to_list(c, in, &l));
  PL_TRY(new_list(c, 0, &r));
  size_t per = l->n / (size_t)k, extra = l->n % (size_t)k, offset = 0;
  for (size_t s = 0; s < (size_t)k; s++) {
    size_t start = offset + s * per, end = offset + (s + 1) * per;
    if (s < extra) {
      offset++;
      end++;
    }
    pl_jlist *part;
    PL_TRY(new_list(c, 0, &part));
    for (size_t i = start; i < end && i < l->n; i++)
      PL_TRY(pl_jlist_push(&c->arena, part, l->v[i]));
    if (v[1].type != PL_JV_NONE && s >= extra)
      PL_TRY(pl_jlist_push(&c->arena, part, v[1]));
    PL_TRY(pl_jlist_push(&c->arena, r, pl_jv_list(part, 0)));
  }
  *out = pl_jv_list(r, 0);
  return PL_OK;
}

static int f_default(pl_jctx *c, pl_jv in, const pl_jargs *a, pl_jv *out) {
  pl_jv v[2] = {pl_jv_str("", 0), pl_jv_bool(0)};
  BIND("default", "default_value", "boolean");
  int use = in.type == PL_JV_UNDEF || (pl_jv_truthy(v[1]) && !pl_jv_truthy(in));
  *out = use ? v[0] : in;
  return PL_OK;
}

static int f_attr(pl_jctx *c, pl_jv in, const pl_jargs *a, pl_jv *out) {
  pl_jv v[1] = {pl_jv_undef("name")};
  BIND("attr", "name");
  if (v[0].type != PL_JV_STR)
    return pl_jerr(c, "attr: name must be a string");
  char *name = pl_jarena_strndup(&c->arena, v[0].u.s.p, v[0].u.s.n);
  if (!name)
    return pl_jv_oom(&c->arena);
  return pl_jinja_getattr(c, in, name, out);
}

/* select / reject / selectattr / rejectattr */
static int select_common(pl_jctx *c, pl_jv in, const pl_jargs *a, int by_attr, int keep_if,
                         pl_jv *out) {
  size_t off = 0;
  pl_jv attr = pl_jv_none();
  if (by_attr) {
    if (a->npos < 1)
      return pl_jerr(c, "missing parameter for attribute name");
    attr = a->pos[0];
    off = 1;
  }
  char *test = NULL;
  if (a->npos > off) {
    if (a->pos[off].type != PL_JV_STR)
      return pl_jerr(c, "test name must be a string");
    test = pl_jarena_strndup(&c->arena, a->pos[off].u.s.p, a->pos[off].u.s.n);
    if (!test)
      return pl_jv_oom(&c->arena);
  }
  pl_jargs targs = {.pos = a->npos > off + 1 ? a->pos + off + 1 : NULL,
                    .npos = a->npos > off + 1 ? a->npos - off - 1 : 0,
                    .kwn = a->kwn, .kwv = a->kwv, .nkw = a->nkw};
  pl_jlist *l, *r;
  PL_TRY(new_list(c, 0, &r));
  if (!pl_jv_truthy(in)) { /* Jinja: `if value:` before iterating */
    *out = pl_jv_list(r, 0);
    return PL_OK;
  }
  PL_TRY(to_list(c, in, &l));
  for (size_t i = 0; i < l->n; i++) {
    pl_jv x = l->v[i];
    if (by_attr)
      PL_TRY(attr_get(c, x, attr, &x));
    int res = 0;
    if (test)
      PL_TRY(pl_jinja_apply_test(c, test, x, &targs, &res));
    else
      res = pl_jv_truthy(x);
    if ((res != 0) == keep_if)
      PL_TRY(pl_jlist_push(&c->arena, r, l->v[i]));
  }
  *out = pl_jv_list(r, 0);
  return PL_OK;
}
static int f_select(pl_jctx *c, pl_jv in, const pl_jargs *a, pl_jv *out) {
  return select_common(c, in, a, 0, 1, out);
}
static int f_reject(pl_jctx *c, pl_jv in, const pl_jargs *a, pl_jv *out) {
  return select_common(c, in, a, 0, 0, out);
}
static int f_selectattr(pl_jctx *c, pl_jv in, const pl_jargs *a, pl_jv *out) {
  return select_common(c, in, a, 1, 1, out);
}
static int f_rejectattr(pl_jctx *c, pl_jv in, const pl_jargs *a, pl_jv *out) {
  return select_common(c, in, a, 1, 0, out);
}

static int f_map(pl_jctx *c, pl_jv in, const pl_jargs *a, pl_jv *out) {
  pl_jlist *l, *r;
  if (!pl_jv_truthy(in)) { /* Jinja: `if value:` before iterating */
    PL_TRY(new_list(c, 0, &r));
    *out = pl_jv_list(r, 0);
    return PL_OK;
  }
  PL_TRY(to_list(c, in, &l));
  PL_TRY(new_list(c, l->n, &r));
  if (a->npos == 0) {
    pl_jv attr = pl_jv_undef(NULL), dflt = pl_jv_none();
    int has_attr = 0;
    for (size_t k = 0; k < a->nkw; k++) {
      if (!strcmp(a->kwn[k], "attribute")) {
        attr = a->kwv[k];
        has_attr = 1;
      } else if (!strcmp(a->kwn[k], "default")) {
        dflt = a->kwv[k];
      } else {
        return pl_jerr(c, "map: unexpected keyword argument '%s'", a->kwn[k]);
      }
    }
    if (!has_attr)
      return pl_jerr(c, "map requires a filter argument");
    for (size_t i = 0; i < l->n; i++) {
      pl_jv x = {0};
      PL_TRY(attr_get(c, l->v[i], attr, &x));
      r->v[r->n++] = x.type == PL_JV_UNDEF ? dflt : x;
    }
  } else {
    if (a->pos[0].type != PL_JV_STR)
      return pl_jerr(c, "map: filter name must be a string");
    char *name = pl_jarena_strndup(&c->arena, a->pos[0].u.s.p, a->pos[0].u.s.n);
    if (!name)
      return pl_jv_oom(&c->arena);
    pl_jargs fargs = {.pos = a->pos + 1, .npos = a->npos - 1, .kwn = a->kwn, .kwv = a->kwv,
                      .nkw = a->nkw};
    for (size_t i = 0; i < l->n; i++)
      PL_TRY(pl_jinja_apply_filter(c, name, l->v[i], &fargs, &r->v[r->n++]));
  }
  *out = pl_jv_list(r, 0);
  return PL_OK;
}

/* transformers: json.dumps(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False) */
static int f_tojson(pl_jctx *c, pl_jv in, const pl_jargs *a, pl_jv *out) {
  pl_jv v[4] = {pl_jv_bool(0), pl_jv_none(), pl_jv_none(), pl_jv_bool(0)};
  BIND("tojson", "ensure_ascii", "indent", "separators", "sort_keys");
  pl_jjson_opts o = {.ensure_ascii = pl_jv_truthy(v[0]), .sort_keys = pl_jv_truthy(v[3])};
  if (v[1].type != PL_JV_NONE) {
    if (v[1].type != PL_JV_INT && v[1].type != PL_JV_BOOL && v[1].type != PL_JV_STR)
      return pl_jerr(c, "tojson: indent must be an int or a string");
    o.has_indent = 1;
    o.indent = v[1];
  }
  if (v[2].type != PL_JV_NONE) {
    if (v[2].type != PL_JV_LIST || v[2].u.l->n != 2 || v[2].u.l->v[0].type != PL_JV_STR ||
        v[2].u.l->v[1].type != PL_JV_STR)
      return pl_jerr(c, "tojson: separators must be a pair of strings");
    o.item_sep = v[2].u.l->v[0].u.s.p;
    o.item_sep_n = v[2].u.l->v[0].u.s.n;
    o.key_sep = v[2].u.l->v[1].u.s.p;
    o.key_sep_n = v[2].u.l->v[1].u.s.n;
  }
  pl_jbuf b;
  pl_jbuf_init(&b, c->max_output);
  int rc = pl_jinja_tojson(c, in, &o, &b);
  if (rc) {
    pl_jbuf_free(&b);
    return rc;
  }
  return pl_jstr_make(c, &b, out);
}

static const struct {
  const char *name;
  pl_jfilter_fn fn;
} filters[] = {
    {"abs", f_abs},           {"attr", f_attr},         {"batch", f_batch},
    {"capitalize", f_capitalize}, {"center", f_center}, {"count", f_length},
    {"d", f_default},         {"default", f_default},   {"dictsort", f_dictsort},
    {"e", f_escape},          {"escape", f_escape},     {"first", f_first},
    {"float", f_float},       {"format", f_format},     {"indent", f_indent},
    {"int", f_int},           {"items", f_items},       {"join", f_join},
    {"last", f_last},         {"length", f_length},     {"list", f_list},
    {"lower", f_lower},       {"map", f_map},           {"max", f_max},
    {"min", f_min},           {"reject", f_reject},     {"rejectattr", f_rejectattr},
    {"replace", f_replace},   {"reverse", f_reverse},   {"round", f_round},
    {"safe", f_safe},         {"select", f_select},     {"selectattr", f_selectattr},
    {"slice", f_slice},       {"sort", f_sort},         {"string", f_string},
    {"sum", f_sum},           {"title", f_title},       {"tojson", f_tojson},
    {"trim", f_trim},         {"truncate", f_truncate}, {"unique", f_unique},
    {"upper", f_upper},       {"wordcount", f_wordcount},
};

pl_jfilter_fn pl_jinja_filter_lookup(const char *name) {
  for (size_t i = 0; i < sizeof filters / sizeof *filters; i++)
    if (!strcmp(filters[i].name, name))
      return filters[i].fn;
  return NULL;
}
