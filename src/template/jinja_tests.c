/* Jinja2's built-in tests (`x is defined`, `x is equalto y`, ...). Type tests follow Python's
 * isinstance checks as Jinja2 uses them: bool counts as a number but not as an integer, strings
 * are iterable sequences, dicts are mappings (and sequences), and Undefined is iterable. */
#include <math.h>
#include <string.h>

#include "template/jinja_eval.h"
#include "util/error.h"

static int one_arg(pl_jctx *c, const char *name, const pl_jargs *a, pl_jv *arg) {
  if (a->npos + a->nkw != 1)
    return pl_jerr(c, "test '%s' takes exactly one argument", name);
  *arg = a->npos ? a->pos[0] : a->kwv[0];
  return PL_OK;
}

static int no_arg(pl_jctx *c, const char *name, const pl_jargs *a) {
  if (a->npos || a->nkw)
    return pl_jerr(c, "test '%s' takes no arguments", name);
  return PL_OK;
}

#define TYPE_TEST(fname, tname, expr)                                                       \
  static int fname(pl_jctx *c, pl_jv v, const pl_jargs *a, int *res) {                      \
    PL_TRY(no_arg(c, tname, a));                                                            \
    *res = (expr);                                                                          \
    return PL_OK;                                                                           \
  }

TYPE_TEST(t_defined, "defined", v.type != PL_JV_UNDEF)
TYPE_TEST(t_undefined, "undefined", v.type == PL_JV_UNDEF)
TYPE_TEST(t_none, "none", v.type == PL_JV_NONE)
TYPE_TEST(t_boolean, "boolean", v.type == PL_JV_BOOL)
TYPE_TEST(t_true, "true", v.type == PL_JV_BOOL && v.u.b)
TYPE_TEST(t_false, "false", v.type == PL_JV_BOOL && !v.u.b)
TYPE_TEST(t_integer, "integer", v.type == PL_JV_INT)
TYPE_TEST(t_float, "float", v.type == PL_JV_FLOAT)
TYPE_TEST(t_number, "number", pl_jv_isnum(v))
TYPE_TEST(t_string, "string", v.type == PL_JV_STR)
TYPE_TEST(t_mapping, "mapping", v.type == PL_JV_DICT)
TYPE_TEST(t_iterable, "iterable",
          v.type == PL_JV_STR || v.type == PL_JV_LIST || v.type == PL_JV_DICT ||
              v.type == PL_JV_UNDEF || v.type == PL_JV_LOOP)
TYPE_TEST(t_sequence, "sequence",
          v.type == PL_JV_STR || v.type == PL_JV_LIST || v.type == PL_JV_DICT ||
              v.type == PL_JV_UNDEF)
TYPE_TEST(t_callable, "callable", v.type == PL_JV_FUNC)
TYPE_TEST(t_escaped, "escaped", 0)
/* lower / upper: str(value).islower() / .isupper() */
static int case_test(pl_jctx *c, pl_jv v, const char *name, const pl_jargs *a, int *res) {
  PL_TRY(no_arg(c, name, a));
  pl_jv s = {0};
  PL_TRY(pl_jv_str_of(c, v, &s));
  *res = pl_jstr_is(s, name[0] == 'l' ? "islower" : "isupper");
  return PL_OK;
}
static int t_lower(pl_jctx *c, pl_jv v, const pl_jargs *a, int *res) {
  return case_test(c, v, "lower", a, res);
}
static int t_upper(pl_jctx *c, pl_jv v, const pl_jargs *a, int *res) {
  return case_test(c, v, "upper", a, res);
}

static int parity(pl_jctx *c, pl_jv v, const char *name, const pl_jargs *a, int odd, int *res) {
  PL_TRY(no_arg(c, name, a));
  if (v.type == PL_JV_INT || v.type == PL_JV_BOOL) {
    int64_t i = v.type == PL_JV_BOOL ? v.u.b : v.u.i;
    *res = (i & 1) == odd;
  } else if (v.type == PL_JV_FLOAT) {
    double m = fmod(v.u.f, 2.0);
    if (m < 0)
      m += 2.0;
    *res = odd ? m == 1.0 : m == 0.0;
  } else if (v.type == PL_JV_STR) {
    /* Jinja computes `value % 2 == 1`: for a str that is %-formatting, never equal to a
     * number (or a formatting error). */
    pl_jv tmp = {0};
    PL_TRY(pl_jinja_percent_format(c, v, pl_jv_int(2), &tmp));
    *res = 0;
  } else {
    return pl_jerr(c, "test '%s' needs a number, got '%s'", name, pl_jv_type_name(v));
  }
  return PL_OK;
}
static int t_odd(pl_jctx *c, pl_jv v, const pl_jargs *a, int *res) {
  return parity(c, v, "odd", a, 1, res);
}
static int t_even(pl_jctx *c, pl_jv v, const pl_jargs *a, int *res) {
  return parity(c, v, "even", a, 0, res);
}

static int t_divisibleby(pl_jctx *c, pl_jv v, const pl_jargs *a, int *res) {
  pl_jv d = {0};
  PL_TRY(one_arg(c, "divisibleby", a, &d));
  if (!pl_jv_isnum(v) || !pl_jv_isnum(d))
    return pl_jerr(c, "test 'divisibleby' needs numbers");
  if (v.type != PL_JV_FLOAT && d.type != PL_JV_FLOAT) {
    int64_t x = v.type == PL_JV_BOOL ? v.u.b : v.u.i, y = d.type == PL_JV_BOOL ? d.u.b : d.u.i;
    if (y == 0)
      return pl_jerr(c, "integer division or modulo by zero");
    *res = y == -1 || x % y == 0;
  } else {
    double y = pl_jv_as_double(d);
    if (y == 0)
      return pl_jerr(c, "float modulo by zero");
    *res = fmod(pl_jv_as_double(v), y) == 0;
  }
  return PL_OK;
}

static int t_eq(pl_jctx *c, pl_jv v, const pl_jargs *a, int *res) {
  pl_jv o = {0};
  PL_TRY(one_arg(c, "eq", a, &o));
  *res = pl_jv_equal(v, o);
  return PL_OK;
}
static int t_ne(pl_jctx *c, pl_jv v, const pl_jargs *a, int *res) {
  pl_jv o = {0};
  PL_TRY(one_arg(c, "ne", a, &o));
  *res = !pl_jv_equal(v, o);
  return PL_OK;
}

static int ordered(pl_jctx *c, pl_jv v, const char *name, const pl_jargs *a, int want, int *res) {
  pl_jv o = {0};
  int cmp = 0;
  PL_TRY(one_arg(c, name, a, &o));
  if (pl_jv_compare(v, o, &cmp) < 0)
    return pl_jerr(c, "%s", pl_last_error());
  if (cmp == 2) { /* NaN */
    *res = 0;
    return PL_OK;
  }
  switch (want) {
  case 0: *res = cmp < 0; break;
  case 1: *res = cmp <= 0; break;
  case 2: *res = cmp > 0; break;
  default: *res = cmp >= 0; break;
  }
  return PL_OK;
}
static int t_lt(pl_jctx *c, pl_jv v, const pl_jargs *a, int *res) {
  return ordered(c, v, "lt", a, 0, res);
}
static int t_le(pl_jctx *c, pl_jv v, const pl_jargs *a, int *res) {
  return ordered(c, v, "le", a, 1, res);
}
static int t_gt(pl_jctx *c, pl_jv v, const pl_jargs *a, int *res) {
  return ordered(c, v, "gt", a, 2, res);
}
static int t_ge(pl_jctx *c, pl_jv v, const pl_jargs *a, int *res) {
  return ordered(c, v, "ge", a, 3, res);
}

static int t_in(pl_jctx *c, pl_jv v, const pl_jargs *a, int *res) {
  pl_jv seq = {0};
  PL_TRY(one_arg(c, "in", a, &seq));
  switch (seq.type) {
  case PL_JV_STR:
    if (v.type != PL_JV_STR)
      return pl_jerr(c, "'in <string>' requires string as left operand");
    *res = v.u.s.n == 0 || (v.u.s.n <= seq.u.s.n &&
                            memmem(seq.u.s.p, seq.u.s.n, v.u.s.p, v.u.s.n) != NULL);
    return PL_OK;
  case PL_JV_LIST:
    *res = 0;
    for (size_t i = 0; i < seq.u.l->n && !*res; i++)
      *res = pl_jv_equal(seq.u.l->v[i], v);
    return PL_OK;
  case PL_JV_DICT:
    *res = pl_jdict_get(seq.u.d, v) != NULL;
    return PL_OK;
  case PL_JV_UNDEF:
    *res = 0;
    return PL_OK;
  default:
    return pl_jerr(c, "argument of type '%s' is not iterable", pl_jv_type_name(seq));
  }
}

static int t_sameas(pl_jctx *c, pl_jv v, const pl_jargs *a, int *res) {
  pl_jv o = {0};
  PL_TRY(one_arg(c, "sameas", a, &o));
  if (v.type != o.type) {
    *res = 0;
  } else if (v.type == PL_JV_LIST) {
    *res = v.u.l == o.u.l;
  } else if (v.type == PL_JV_DICT || v.type == PL_JV_NS) {
    *res = v.u.d == o.u.d;
  } else if (v.type == PL_JV_STR) {
    *res = v.u.s.p == o.u.s.p && v.u.s.n == o.u.s.n;
  } else {
    *res = pl_jv_equal(v, o); /* None/True/False and small ints are singletons in Python */
  }
  return PL_OK;
}

static int t_filter(pl_jctx *c, pl_jv v, const pl_jargs *a, int *res) {
  PL_TRY(no_arg(c, "filter", a));
  char name[64];
  *res = v.type == PL_JV_STR && v.u.s.n < sizeof name;
  if (*res) {
    memcpy(name, v.u.s.p, v.u.s.n);
    name[v.u.s.n] = 0;
    *res = pl_jinja_filter_lookup(name) != NULL;
  }
  return PL_OK;
}

static int t_test(pl_jctx *c, pl_jv v, const pl_jargs *a, int *res) {
  PL_TRY(no_arg(c, "test", a));
  char name[64];
  *res = v.type == PL_JV_STR && v.u.s.n < sizeof name;
  if (*res) {
    memcpy(name, v.u.s.p, v.u.s.n);
    name[v.u.s.n] = 0;
    *res = pl_jinja_test_lookup(name) != NULL;
  }
  return PL_OK;
}

static const struct {
  const char *name;
  pl_jtest_fn fn;
} tests[] = {
    {"defined", t_defined},   {"undefined", t_undefined}, {"none", t_none},
    {"boolean", t_boolean},   {"true", t_true},           {"false", t_false},
    {"integer", t_integer},   {"float", t_float},         {"number", t_number},
    {"string", t_string},     {"mapping", t_mapping},     {"iterable", t_iterable},
    {"sequence", t_sequence}, {"callable", t_callable},   {"escaped", t_escaped},
    {"lower", t_lower},       {"upper", t_upper},         {"odd", t_odd},
    {"even", t_even},         {"divisibleby", t_divisibleby}, {"eq", t_eq},
    {"equalto", t_eq},        {"==", t_eq},               {"ne", t_ne},
    {"!=", t_ne},             {"lt", t_lt},               {"lessthan", t_lt},
    {"<", t_lt},              {"le", t_le},               {"<=", t_le},
    {"gt", t_gt},             {"greaterthan", t_gt},      {">", t_gt},
    {"ge", t_ge},             {">=", t_ge},               {"in", t_in},
    {"sameas", t_sameas},     {"filter", t_filter},       {"test", t_test},
};

pl_jtest_fn pl_jinja_test_lookup(const char *name) {
  for (size_t i = 0; i < sizeof tests / sizeof *tests; i++)
    if (!strcmp(tests[i].name, name))
      return tests[i].fn;
  return NULL;
}
