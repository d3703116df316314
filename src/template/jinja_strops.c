/* Python str operations used by both filters and str methods: case mapping (upper, lower,
 * str.title, capitalize, swapcase, and Jinja's own `title` filter, which capitalises after
 * spaces, '-', '(', '{', '[' and '<'), strip with or without a character set, replace with
 * Python's rules (including an empty `old`), split/rsplit with and without a separator, and the
 * is*() predicates. Results that are sub-ranges of the input are views, not copies. */
#include <string.h>

#include "template/jinja_eval.h"
#include "util/error.h"

static int need_str(pl_jctx *c, pl_jv s, const char *what) {
  if (s.type == PL_JV_STR)
    return PL_OK;
  if (s.type == PL_JV_UNDEF)
    return pl_jinja_undef_error(c, s);
  return pl_jerr(c, "%s: expected a string, got '%s'", what, pl_jv_type_name(s));
}

static int is_jinja_word_sep(uint32_t cp) {
  return pl_py_isspace(cp) || cp == '-' || cp == '(' || cp == '{' || cp == '[' || cp == '<';
}

int pl_jstr_case(pl_jctx *c, pl_jv s, int mode, pl_jv *out) {
  PL_TRY(need_str(c, s, "case conversion"));
  pl_jbuf b;
  pl_jbuf_init(&b, c->max_output);
  int prev_cased = 0, first = 1, rc = PL_OK;
  for (size_t i = 0; i < s.u.s.n && rc == PL_OK;) {
    uint32_t cp, o;
    i = pl_utf8_next(s.u.s.p, s.u.s.n, i, &cp);
    switch (mode) {
    case PL_JCASE_UPPER: o = pl_py_upper(cp); break;
    case PL_JCASE_LOWER: o = pl_py_lower(cp); break;
    case PL_JCASE_SWAP:
      o = pl_py_isupper(cp) ? pl_py_lower(cp) : pl_py_islower(cp) ? pl_py_upper(cp) : cp;
      break;
    case PL_JCASE_CAPITALIZE: o = first ? pl_py_title(cp) : pl_py_lower(cp); break;
    case PL_JCASE_TITLE: /* str.title(): upper after an uncased character, else lower */
      o = prev_cased ? pl_py_lower(cp) : pl_py_title(cp);
      prev_cased = pl_py_iscased(cp);
      break;
    default: /* Jinja's title filter: word = run of non-separators */
      if (is_jinja_word_sep(cp)) {
        o = cp;
        prev_cased = 0;
      } else {
        o = prev_cased ? pl_py_lower(cp) : pl_py_upper(cp);
        prev_cased = 1;
      }
      break;
    }
    first = 0;
    rc = pl_jbuf_put_cp(&b, o);
  }
  if (rc) {
    pl_jbuf_free(&b);
    return rc;
  }
  return pl_jstr_make(c, &b, out);
}

static int in_set(uint32_t cp, pl_jv chars) {
  if (chars.type != PL_JV_STR)
    return pl_py_isspace(cp);
  for (size_t i = 0; i < chars.u.s.n;) {
    uint32_t d;
    i = pl_utf8_next(chars.u.s.p, chars.u.s.n, i, &d);
    if (d == cp)
      return 1;
  }
  return 0;
}

int pl_jstr_strip(pl_jctx *c, pl_jv s, pl_jv chars, int left, int right, pl_jv *out) {
  PL_TRY(need_str(c, s, "strip"));
  if (chars.type != PL_JV_STR && chars.type != PL_JV_NONE && chars.type != PL_JV_UNDEF)
    return pl_jerr(c, "strip arg must be None or str");
  const char *p = s.u.s.p;
  size_t a = 0, e = s.u.s.n;
  while (left && a < e) {
    uint32_t cp;
    size_t j = pl_utf8_next(p, e, a, &cp);
    if (!in_set(cp, chars))
      break;
    a = j;
  }
  while (right && e > a) {
    size_t j = pl_utf8_prev(p, e);
    uint32_t cp;
    pl_utf8_next(p, e, j, &cp);
    if (j < a || !in_set(cp, chars))
      break;
    e = j;
  }
  *out = pl_jv_str(p + a, e - a);
  return PL_OK;
}

int pl_jstr_replace(pl_jctx *c, pl_jv s, pl_jv old, pl_jv rep, int64_t count, pl_jv *out) {
  PL_TRY(need_str(c, s, "replace"));
  if (old.type != PL_JV_STR || rep.type != PL_JV_STR)
    return pl_jerr(c, "replace() arguments must be str");
  pl_jbuf b;
  pl_jbuf_init(&b, c->max_output);
  const char *p = s.u.s.p;
  size_t n = s.u.s.n, i = 0;
  int rc = PL_OK;
  if (old.u.s.n == 0) {
    /* Python inserts `rep` before every character and at the end. */
    while (rc == PL_OK && (count < 0 || count-- > 0)) {
      rc = pl_jbuf_put(&b, rep.u.s.p, rep.u.s.n);
      if (i >= n || rc)
        break;
      uint32_t cp;
      size_t j = pl_utf8_next(p, n, i, &cp);
      rc = pl_jbuf_put(&b, p + i, j - i);
      i = j;
    }
    if (rc == PL_OK && i < n)
      rc = pl_jbuf_put(&b, p + i, n - i);
  } else {
    while (rc == PL_OK && i <= n) {
      const char *hit = count != 0 && n - i >= old.u.s.n
                            ? memmem(p + i, n - i, old.u.s.p, old.u.s.n)
                            : NULL;
      if (!hit) {
        rc = pl_jbuf_put(&b, p + i, n - i);
        break;
      }
      size_t h = (size_t)(hit - p);
      rc = pl_jbuf_put(&b, p + i, h - i);
      if (rc == PL_OK)
        rc = pl_jbuf_put(&b, rep.u.s.p, rep.u.s.n);
      i = h + old.u.s.n;
      if (count > 0)
        count--;
    }
  }
  if (rc) {
    pl_jbuf_free(&b);
    return rc;
  }
  return pl_jstr_make(c, &b, out);
}

static int push_part(pl_jctx *c, pl_jlist *l, const char *p, size_t n) {
  return pl_jlist_push(&c->arena, l, pl_jv_str(p, n));
}

static void reverse_list(pl_jlist *l) {
  for (size_t i = 0, j = l->n ? l->n - 1 : 0; i < j; i++, j--) {
    pl_jv t = l->v[i];
    l->v[i] = l->v[j];
    l->v[j] = t;
  }
}

int pl_jstr_split(pl_jctx *c, pl_jv s, pl_jv sep, int64_t maxsplit, int from_right, pl_jv *out) {
  PL_TRY(need_str(c, s, "split"));
  pl_jlist *l = pl_jlist_new(&c->arena, 0);
  if (!l)
    return pl_jv_oom(&c->arena);
  const char *p = s.u.s.p;
  size_t n = s.u.s.n;
  if (sep.type == PL_JV_NONE || sep.type == PL_JV_UNDEF) {
    /* Runs of whitespace; leading/trailing whitespace yields no empty parts. */
    if (!from_right) {
      size_t i = 0;
      for (;;) {
        uint32_t cp;
        while (i < n) {
          size_t j = pl_utf8_next(p, n, i, &cp);
          if (!pl_py_isspace(cp))
            break;
          i = j;
        }
        if (i >= n)
          break;
        if (maxsplit >= 0 && (int64_t)l->n == maxsplit) {
          /* the rest, with trailing whitespace kept, is one part */
          PL_TRY(push_part(c, l, p + i, n - i));
          break;
        }
        size_t st = i;
        while (i < n) {
          size_t j = pl_utf8_next(p, n, i, &cp);
          if (pl_py_isspace(cp))
            break;
          i = j;
        }
        PL_TRY(push_part(c, l, p + st, i - st));
      }
    } else {
      size_t e = n;
      for (;;) {
        uint32_t cp;
        while (e > 0) {
          size_t j = pl_utf8_prev(p, e);
          pl_utf8_next(p, e, j, &cp);
          if (!pl_py_isspace(cp))
            break;
          e = j;
        }
        if (e == 0)
          break;
        if (maxsplit >= 0 && (int64_t)l->n == maxsplit) {
          PL_TRY(push_part(c, l, p, e));
          break;
        }
        size_t st = e;
        while (st > 0) {
          size_t j = pl_utf8_prev(p, st);
          pl_utf8_next(p, st, j, &cp);
          if (pl_py_isspace(cp))
            break;
          st = j;
        }
        PL_TRY(push_part(c, l, p + st, e - st));
        e = st;
      }
      reverse_list(l);
    }
  } else {
    if (sep.type != PL_JV_STR)
      return pl_jerr(c, "split: separator must be str or None");
    if (sep.u.s.n == 0)
      return pl_jerr(c, "empty separator");
    const char *q = sep.u.s.p;
    size_t m = sep.u.s.n;
    if (!from_right) {
      size_t i = 0;
      for (;;) {
        const char *hit = (maxsplit < 0 || (int64_t)l->n < maxsplit) && n - i >= m
                              ? memmem(p + i, n - i, q, m)
                              : NULL;
        if (!hit) {
          PL_TRY(push_part(c, l, p + i, n - i));
          break;
        }
        PL_TRY(push_part(c, l, p + i, (size_t)(hit - (p + i))));
        i = (size_t)(hit - p) + m;
      }
    } else {
      size_t e = n;
      for (;;) {
        size_t found = (size_t)-1;
        if ((maxsplit < 0 || (int64_t)l->n < maxsplit) && e >= m)
          for (size_t k = e - m + 1; k-- > 0;)
            if (memcmp(p + k, q, m) == 0) {
              found = k;
              break;
            }
        if (found == (size_t)-1) {
          PL_TRY(push_part(c, l, p, e));
          break;
        }
        PL_TRY(push_part(c, l, p + found + m, e - found - m));
        e = found;
      }
      reverse_list(l);
    }
  }
  *out = pl_jv_list(l, 0);
  return PL_OK;
}

int pl_jstr_is(pl_jv s, const char *what) {
  if (s.type != PL_JV_STR)
    return 0;
  int any = 0, cased = 0, lower = 1, upper = 1;
  for (size_t i = 0; i < s.u.s.n;) {
    uint32_t cp;
    i = pl_utf8_next(s.u.s.p, s.u.s.n, i, &cp);
    any = 1;
    if (!strcmp(what, "isdigit") && !pl_py_isdigit(cp))
      return 0;
    if (!strcmp(what, "isalpha") && !pl_py_isalpha(cp))
      return 0;
    if (!strcmp(what, "isalnum") && !pl_py_isalnum(cp))
      return 0;
    if (!strcmp(what, "isspace") && !pl_py_isspace(cp))
      return 0;
    if (pl_py_islower(cp))
      cased = 1, upper = 0;
    else if (pl_py_isupper(cp))
      cased = 1, lower = 0;
  }
  if (!strcmp(what, "islower"))
    return cased && lower;
  if (!strcmp(what, "isupper"))
    return cased && upper;
  return any;
}
