/* Value containers, Python truthiness / equality / ordering, str() and repr() formatting, and
 * the JSON -> value conversion (see jinja_value.h). Formatting follows CPython so that templates
 * printing lists, dicts, floats or booleans render byte-identically to Jinja2. */
#include "template/jinja_value.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/error.h"

int pl_jv_oom(const pl_jarena *a) {
  if (a->over_limit)
    return pl_fail(PL_ETEMPLATE, "template exceeded its memory limit of %zu bytes", a->limit);
  return pl_fail(PL_ENOMEM, "template: out of memory");
}

pl_jlist *pl_jlist_new(pl_jarena *a, size_t cap) {
  pl_jlist *l = pl_jarena_alloc(a, sizeof *l);
  if (!l)
    return NULL;
  l->n = 0;
  l->cap = cap;
  l->v = NULL;
  if (cap && !(l->v = pl_jarena_alloc(a, cap * sizeof(pl_jv))))
    return NULL;
  return l;
}

int pl_jlist_push(pl_jarena *a, pl_jlist *l, pl_jv v) {
  if (l->n == l->cap) {
    size_t cap = l->cap ? l->cap * 2 : 4;
    pl_jv *nv = pl_jarena_alloc(a, cap * sizeof(pl_jv));
    if (!nv)
      return pl_jv_oom(a);
    if (l->n)
      memcpy(nv, l->v, l->n * sizeof(pl_jv));
    l->v = nv;
    l->cap = cap;
  }
  l->v[l->n++] = v;
  return PL_OK;
}

pl_jdict *pl_jdict_new(pl_jarena *a, size_t cap) {
  pl_jdict *d = pl_jarena_alloc(a, sizeof *d);
  if (!d)
    return NULL;
  d->n = 0;
  d->cap = cap;
  d->k = d->v = NULL;
  if (cap && (!(d->k = pl_jarena_alloc(a, cap * sizeof(pl_jv))) ||
              !(d->v = pl_jarena_alloc(a, cap * sizeof(pl_jv)))))
    return NULL;
  return d;
}

const pl_jv *pl_jdict_get(const pl_jdict *d, pl_jv key) {
  if (key.type == PL_JV_STR)
    return pl_jdict_get_str(d, key.u.s.p, key.u.s.n);
  for (size_t i = 0; i < d->n; i++)
    if (pl_jv_equal(d->k[i], key))
      return &d->v[i];
  return NULL;
}

const pl_jv *pl_jdict_get_str(const pl_jdict *d, const char *k, size_t n) {
  for (size_t i = 0; i < d->n; i++)
    if (d->k[i].type == PL_JV_STR && d->k[i].u.s.n == n && memcmp(d->k[i].u.s.p, k, n) == 0)
      return &d->v[i];
  return NULL;
}

int pl_jdict_set(pl_jarena *a, pl_jdict *d, pl_jv k, pl_jv v) {
  pl_jv *cur = (pl_jv *)pl_jdict_get(d, k);
  if (cur) {
    *cur = v;
    return PL_OK;
  }
  if (d->n == d->cap) {
    size_t cap = d->cap ? d->cap * 2 : 4;
    pl_jv *nk = pl_jarena_alloc(a, cap * sizeof(pl_jv));
    pl_jv *nv = pl_jarena_alloc(a, cap * sizeof(pl_jv));
    if (!nk || !nv)
      return pl_jv_oom(a);
    if (d->n) {
      memcpy(nk, d->k, d->n * sizeof(pl_jv));
      memcpy(nv, d->v, d->n * sizeof(pl_jv));
    }
    d->k = nk;
    d->v = nv;
    d->cap = cap;
  }
  d->k[d->n] = k;
  d->v[d->n] = v;
  d->n++;
  return PL_OK;
}

int pl_jv_str_dup(pl_jarena *a, const char *p, size_t n, pl_jv *out) {
  char *d = pl_jarena_strndup(a, p, n);
  if (!d)
    return pl_jv_oom(a);
  *out = pl_jv_str(d, n);
  return PL_OK;
}

int pl_jv_truthy(pl_jv v) {
  switch (v.type) {
  case PL_JV_UNDEF: case PL_JV_NONE:
    return 0;
  case PL_JV_BOOL:
    return v.u.b;
  case PL_JV_INT:
    return v.u.i != 0;
  case PL_JV_FLOAT:
    return v.u.f != 0.0;
  case PL_JV_STR:
    return v.u.s.n != 0;
  case PL_JV_LIST:
    return v.u.l->n != 0;
  case PL_JV_DICT:
    return v.u.d->n != 0;
  default:
    return 1; /* namespaces, callables, loop objects */
  }
}

double pl_jv_as_double(pl_jv v) {
  switch (v.type) {
  case PL_JV_BOOL:
    return v.u.b;
  case PL_JV_INT:
    return (double)v.u.i;
  case PL_JV_FLOAT:
    return v.u.f;
  default:
    return 0;
  }
}

static int num_equal(pl_jv a, pl_jv b) {
  if (a.type != PL_JV_FLOAT && b.type != PL_JV_FLOAT) {
    int64_t x = a.type == PL_JV_BOOL ? a.u.b : a.u.i, y = b.type == PL_JV_BOOL ? b.u.b : b.u.i;
    return x == y;
  }
  return pl_jv_as_double(a) == pl_jv_as_double(b);
}

int pl_jv_equal(pl_jv a, pl_jv b) {
  if (pl_jv_isnum(a) && pl_jv_isnum(b))
    return num_equal(a, b);
  if (a.type != b.type)
    return 0;
  switch (a.type) {
  case PL_JV_UNDEF: case PL_JV_NONE:
    return 1;
  case PL_JV_STR:
    return a.u.s.n == b.u.s.n && (a.u.s.n == 0 || memcmp(a.u.s.p, b.u.s.p, a.u.s.n) == 0);
  case PL_JV_LIST:
    if (a.tuple != b.tuple || a.u.l->n != b.u.l->n)
      return 0;
    for (size_t i = 0; i < a.u.l->n; i++)
      if (!pl_jv_equal(a.u.l->v[i], b.u.l->v[i]))
        return 0;
    return 1;
  case PL_JV_DICT:
    if (a.u.d->n != b.u.d->n)
      return 0;
    for (size_t i = 0; i < a.u.d->n; i++) {
      const pl_jv *o = pl_jdict_get(b.u.d, a.u.d->k[i]);
      if (!o || !pl_jv_equal(a.u.d->v[i], *o))
        return 0;
    }
    return 1;
  case PL_JV_NS:
    return a.u.d == b.u.d;
  case PL_JV_FUNC:
    return a.u.fn == b.u.fn;
  case PL_JV_LOOP:
    return a.u.loop == b.u.loop;
  default:
    return 0;
  }
}

const char *pl_jv_type_name(pl_jv v) {
  switch (v.type) {
  case PL_JV_UNDEF: return "Undefined";
  case PL_JV_NONE: return "NoneType";
  case PL_JV_BOOL: return "bool";
  case PL_JV_INT: return "int";
  case PL_JV_FLOAT: return "float";
  case PL_JV_STR: return "str";
  case PL_JV_LIST: return v.tuple ? "tuple" : "list";
  case PL_JV_DICT: return "dict";
  case PL_JV_NS: return "Namespace";
  case PL_JV_FUNC: return v.u.fn->node ? "Macro" : "function";
  case PL_JV_LOOP: return "LoopContext";
  default: return "object";
  }
}

int pl_jv_compare(pl_jv a, pl_jv b, int *cmp) {
  if (pl_jv_isnum(a) && pl_jv_isnum(b)) {
    if (a.type != PL_JV_FLOAT && b.type != PL_JV_FLOAT) {
      int64_t x = a.type == PL_JV_BOOL ? a.u.b : a.u.i, y = b.type == PL_JV_BOOL ? b.u.b : b.u.i;
      *cmp = x < y ? -1 : x > y;
    } else {
      double x = pl_jv_as_double(a), y = pl_jv_as_double(b);
      *cmp = x < y ? -1 : x > y; /* NaN compares as "equal": every ordering test is false */
      if (isnan(x) || isnan(y))
        *cmp = 2;
    }
    return PL_OK;
  }
  if (a.type == PL_JV_STR && b.type == PL_JV_STR) {
    /* UTF-8 byte order equals code point order. */
    size_t n = a.u.s.n < b.u.s.n ? a.u.s.n : b.u.s.n;
    int c = n ? memcmp(a.u.s.p, b.u.s.p, n) : 0;
    *cmp = c < 0 ? -1 : c > 0 ? 1 : a.u.s.n < b.u.s.n ? -1 : a.u.s.n > b.u.s.n;
    return PL_OK;
  }
  if (a.type == PL_JV_LIST && b.type == PL_JV_LIST && a.tuple == b.tuple) {
    size_t n = a.u.l->n < b.u.l->n ? a.u.l->n : b.u.l->n;
    for (size_t i = 0; i < n; i++) {
      if (pl_jv_equal(a.u.l->v[i], b.u.l->v[i]))
        continue;
      return pl_jv_compare(a.u.l->v[i], b.u.l->v[i], cmp);
    }
    *cmp = a.u.l->n < b.u.l->n ? -1 : a.u.l->n > b.u.l->n;
    return PL_OK;
  }
  if (a.type == PL_JV_UNDEF || b.type == PL_JV_UNDEF) {
    pl_jv u = a.type == PL_JV_UNDEF ? a : b;
    if (u.u.undef_name)
      return pl_fail(PL_ETEMPLATE, "'%s' is undefined", u.u.undef_name);
    return pl_fail(PL_ETEMPLATE, "cannot compare an undefined value");
  }
  return pl_fail(PL_ETEMPLATE, "ordering not supported between instances of '%s' and '%s'",
                 pl_jv_type_name(a), pl_jv_type_name(b));
}

/* ---- formatting ------------------------------------------------------------------------- */

void pl_jv_fmt_float(double f, char out[40]) {
  if (isnan(f)) {
    strcpy(out, "nan");
    return;
  }
  if (isinf(f)) {
    strcpy(out, f < 0 ? "-inf" : "inf");
    return;
  }
  if (f == 0) {
    strcpy(out, signbit(f) ? "-0.0" : "0.0");
    return;
  }
  /* Shortest precision that round-trips, as CPython's repr does. */
  char buf[40];
  for (int prec = 1; prec <= 17; prec++) {
    snprintf(buf, sizeof buf, "%.*e", prec - 1, f);
    if (strtod(buf, NULL) == f)
      break;
  }
  /* buf = [-]d[.ddd]e(+|-)XX */
  const char *p = buf;
  int neg = 0;
  if (*p == '-') {
    neg = 1;
    p++;
  }
  char digits[24];
  int nd = 0;
  for (; *p && *p != 'e'; p++)
    if (*p >= '0' && *p <= '9' && nd < 23)
      digits[nd++] = *p;
  int e = *p == 'e' ? atoi(p + 1) : 0;
  while (nd > 1 && digits[nd - 1] == '0')
    nd--;
  char *o = out;
  if (neg)
    *o++ = '-';
  if (e >= -5 + 1 && e < 16) { /* fixed notation: -4 <= e < 16 */
    int decpt = e + 1;
    if (decpt <= 0) {
      *o++ = '0';
      *o++ = '.';
      for (int i = 0; i < -decpt; i++)
        *o++ = '0';
      for (int i = 0; i < nd; i++)
        *o++ = digits[i];
    } else if (decpt >= nd) {
      for (int i = 0; i < nd; i++)
        *o++ = digits[i];
      for (int i = nd; i < decpt; i++)
        *o++ = '0';
      *o++ = '.';
      *o++ = '0';
    } else {
      for (int i = 0; i < nd; i++) {
        if (i == decpt)
          *o++ = '.';
        *o++ = digits[i];
      }
    }
    *o = 0;
    return;
  }
  *o++ = digits[0];
  if (nd > 1) {
    *o++ = '.';
    for (int i = 1; i < nd; i++)
      *o++ = digits[i];
  }
  snprintf(o, 16, "e%c%02d", e < 0 ? '-' : '+', (e < 0 ? -e : e) % 1000);
}

int pl_jv_write_str_repr(pl_jbuf *b, const char *s, size_t n) {
  /* CPython: single quotes unless the text has ' and no ". */
  int has_sq = memchr(s, '\'', n) != NULL, has_dq = memchr(s, '"', n) != NULL;
  char q = has_sq && !has_dq ? '"' : '\'';
  PL_TRY(pl_jbuf_putc(b, q));
  size_t i = 0;
  while (i < n) {
    size_t start = i;
    uint32_t cp;
    i = pl_utf8_next(s, n, i, &cp);
    int rc = 0;
    if (cp == (uint32_t)q || cp == '\\') {
      char e[2] = {'\\', (char)cp};
      rc = pl_jbuf_put(b, e, 2);
    } else if (cp == '\n') {
      rc = pl_jbuf_put(b, "\\n", 2);
    } else if (cp == '\r') {
      rc = pl_jbuf_put(b, "\\r", 2);
    } else if (cp == '\t') {
      rc = pl_jbuf_put(b, "\\t", 2);
    } else if (cp < 0x20 || cp == 0x7F || (cp >= 0x80 && !pl_py_isprintable(cp))) {
      if (cp < 0x100)
        rc = pl_jbuf_printf(b, "\\x%02x", (unsigned)cp);
      else if (cp < 0x10000)
        rc = pl_jbuf_printf(b, "\\u%04x", (unsigned)cp);
      else
        rc = pl_jbuf_printf(b, "\\U%08x", (unsigned)cp);
    } else {
      rc = pl_jbuf_put(b, s + start, i - start);
    }
    PL_TRY(rc);
  }
  return pl_jbuf_putc(b, q);
}

static int write_value(pl_jbuf *b, pl_jv v, int repr, int depth) {
  char num[40];
  if (depth > 200)
    return pl_fail(PL_ETEMPLATE, "value nested too deeply to print");
  switch (v.type) {
  case PL_JV_UNDEF:
    return repr ? pl_jbuf_puts(b, "Undefined") : PL_OK;
  case PL_JV_NONE:
    return pl_jbuf_puts(b, "None");
  case PL_JV_BOOL:
    return pl_jbuf_puts(b, v.u.b ? "True" : "False");
  case PL_JV_INT:
    return pl_jbuf_printf(b, "%lld", (long long)v.u.i);
  case PL_JV_FLOAT:
    pl_jv_fmt_float(v.u.f, num);
    return pl_jbuf_puts(b, num);
  case PL_JV_STR:
    return repr ? pl_jv_write_str_repr(b, v.u.s.p, v.u.s.n) : pl_jbuf_put(b, v.u.s.p, v.u.s.n);
  case PL_JV_LIST: {
    PL_TRY(pl_jbuf_putc(b, v.tuple ? '(' : '['));
    for (size_t i = 0; i < v.u.l->n; i++) {
      if (i)
        PL_TRY(pl_jbuf_put(b, ", ", 2));
      PL_TRY(write_value(b, v.u.l->v[i], 1, depth + 1));
    }
    if (v.tuple && v.u.l->n == 1)
      PL_TRY(pl_jbuf_putc(b, ','));
    return pl_jbuf_putc(b, v.tuple ? ')' : ']');
  }
  case PL_JV_DICT:
  case PL_JV_NS: {
    if (v.type == PL_JV_NS)
      PL_TRY(pl_jbuf_puts(b, "<Namespace "));
    PL_TRY(pl_jbuf_putc(b, '{'));
    for (size_t i = 0; i < v.u.d->n; i++) {
      if (i)
        PL_TRY(pl_jbuf_put(b, ", ", 2));
      PL_TRY(write_value(b, v.u.d->k[i], 1, depth + 1));
      PL_TRY(pl_jbuf_put(b, ": ", 2));
      PL_TRY(write_value(b, v.u.d->v[i], 1, depth + 1));
    }
    PL_TRY(pl_jbuf_putc(b, '}'));
    return v.type == PL_JV_NS ? pl_jbuf_putc(b, '>') : PL_OK;
  }
  case PL_JV_FUNC:
    if (v.u.fn->node)
      return pl_jbuf_printf(b, "<Macro '%s'>", v.u.fn->name);
    return pl_jbuf_printf(b, "<function %s>", v.u.fn->name);
  case PL_JV_LOOP:
    return pl_jbuf_printf(b, "<LoopContext %zu/%zu>", v.u.loop->index0 + 1, v.u.loop->items->n);
  default:
    return pl_fail(PL_EINTERNAL, "template: unknown value type");
  }
}

int pl_jv_write_str(pl_jbuf *b, pl_jv v) { return write_value(b, v, 0, 0); }
int pl_jv_write_repr(pl_jbuf *b, pl_jv v) { return write_value(b, v, 1, 0); }

int pl_jv_to_str(pl_jarena *a, pl_jv v, size_t limit, pl_jv *out) {
  if (v.type == PL_JV_STR) {
    *out = v;
    return PL_OK;
  }
  if (v.type == PL_JV_UNDEF) {
    *out = pl_jv_str("", 0);
    return PL_OK;
  }
  pl_jbuf b;
  pl_jbuf_init(&b, limit);
  int rc = pl_jv_write_str(&b, v);
  if (rc == PL_OK)
    rc = pl_jv_str_dup(a, b.p ? b.p : "", b.n, out);
  pl_jbuf_free(&b);
  return rc;
}

/* ---- JSON input ------------------------------------------------------------------------- */

static int from_json(pl_jarena *a, const json_t *j, pl_jv *out, int depth) {
  if (depth > 512)
    return pl_fail(PL_ETEMPLATE, "template input: JSON nested too deeply");
  switch (json_typeof(j)) {
  case JSON_NULL:
    *out = pl_jv_none();
    return PL_OK;
  case JSON_TRUE:
    *out = pl_jv_bool(1);
    return PL_OK;
  case JSON_FALSE:
    *out = pl_jv_bool(0);
    return PL_OK;
  case JSON_INTEGER:
    *out = pl_jv_int((int64_t)json_integer_value(j));
    return PL_OK;
  case JSON_REAL:
    *out = pl_jv_float(json_real_value(j));
    return PL_OK;
  case JSON_STRING: /* borrowed, not copied: the input outlives the render (a chat's
                      * messages would otherwise be held twice while it renders) */
    *out = pl_jv_str(json_string_value(j), json_string_length(j));
    return PL_OK;
  case JSON_ARRAY: {
    size_t n = json_array_size(j);
    pl_jlist *l = pl_jlist_new(a, n);
    if (!l)
      return pl_jv_oom(a);
    for (size_t i = 0; i < n; i++)
      PL_TRY(from_json(a, json_array_get(j, i), &l->v[l->n++], depth + 1));
    *out = pl_jv_list(l, 0);
    return PL_OK;
  }
  case JSON_OBJECT: {
    pl_jdict *d = pl_jdict_new(a, json_object_size(j));
    if (!d)
      return pl_jv_oom(a);
    const char *key;
    json_t *val;
    /* jansson iterates in insertion order, which is the order Python's json module keeps. */
    json_object_foreach((json_t *)j, key, val) {
      pl_jv k = pl_jv_str(key, strlen(key)), v = {0}; /* borrowed, as strings are */
      PL_TRY(from_json(a, val, &v, depth + 1));
      d->k[d->n] = k;
      d->v[d->n] = v;
      d->n++;
    }
    *out = pl_jv_dict(d);
    return PL_OK;
  }
  }
  return pl_fail(PL_EINVAL, "template input: unknown JSON type");
}

int pl_jv_from_json(pl_jarena *a, const json_t *j, pl_jv *out) { return from_json(a, j, out, 0); }
