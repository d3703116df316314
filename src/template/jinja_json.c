/* json.dumps-compatible serializer (see jinja_json.h). */
#include "template/jinja_json.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "util/error.h"

typedef struct jw {
  pl_jctx *c;
  const pl_jjson_opts *o;
  pl_jbuf *b;
  const char *ind; /* indent unit, or NULL for single-line output */
  size_t ind_n;
  const char *isep, *ksep;
  size_t isep_n, ksep_n;
} jw;

static int put_string(jw *w, const char *s, size_t n) {
  pl_jbuf *b = w->b;
  PL_TRY(pl_jbuf_putc(b, '"'));
  size_t run = 0; /* start of the pending run of bytes copied verbatim */
  for (size_t i = 0; i < n;) {
    unsigned char ch = (unsigned char)s[i];
    const char *esc = NULL;
    char tmp[16];
    size_t next = i + 1;
    if (ch == '"')
      esc = "\\\"";
    else if (ch == '\\')
      esc = "\\\\";
    else if (ch == '\n')
      esc = "\\n";
    else if (ch == '\r')
      esc = "\\r";
    else if (ch == '\t')
      esc = "\\t";
    else if (ch == '\b')
      esc = "\\b";
    else if (ch == '\f')
      esc = "\\f";
    else if (ch < 0x20) {
      snprintf(tmp, sizeof tmp, "\\u%04x", ch);
      esc = tmp;
    } else if (ch >= 0x80 && w->o->ensure_ascii) {
      uint32_t cp;
      next = pl_utf8_next(s, n, i, &cp);
      if (cp >= 0x10000) {
        uint32_t v = cp - 0x10000;
        snprintf(tmp, sizeof tmp, "\\u%04x\\u%04x", 0xD800 + (v >> 10), 0xDC00 + (v & 0x3FF));
      } else {
        snprintf(tmp, sizeof tmp, "\\u%04x", cp);
      }
      esc = tmp;
    }
    if (esc) {
      PL_TRY(pl_jbuf_put(b, s + run, i - run));
      PL_TRY(pl_jbuf_puts(b, esc));
      run = next;
    }
    i = next;
  }
  PL_TRY(pl_jbuf_put(b, s + run, n - run));
  return pl_jbuf_putc(b, '"');
}

static int put_float(jw *w, double f) {
  if (isnan(f))
    return pl_jbuf_puts(w->b, "NaN");
  if (isinf(f))
    return pl_jbuf_puts(w->b, f < 0 ? "-Infinity" : "Infinity");
  char num[40];
  pl_jv_fmt_float(f, num);
  return pl_jbuf_puts(w->b, num);
}

static int newline(jw *w, int level) {
  PL_TRY(pl_jbuf_putc(w->b, '\n'));
  for (int i = 0; i < level; i++)
    PL_TRY(pl_jbuf_put(w->b, w->ind, w->ind_n));
  return PL_OK;
}

static int put_key(jw *w, pl_jv k) {
  switch (k.type) {
  case PL_JV_STR:
    return put_string(w, k.u.s.p, k.u.s.n);
  case PL_JV_NONE:
    return pl_jbuf_puts(w->b, "\"null\"");
  case PL_JV_BOOL:
    return pl_jbuf_puts(w->b, k.u.b ? "\"true\"" : "\"false\"");
  case PL_JV_INT:
    return pl_jbuf_printf(w->b, "\"%lld\"", (long long)k.u.i);
  case PL_JV_FLOAT: {
    PL_TRY(pl_jbuf_putc(w->b, '"'));
    PL_TRY(put_float(w, k.u.f));
    return pl_jbuf_putc(w->b, '"');
  }
  default:
    return pl_jerr(w->c, "tojson: keys must be str, int, float, bool or None, not %s",
                   pl_jv_type_name(k));
  }
}

/* Stable insertion sort of key indexes (dicts in templates are small). */
static int sorted_order(jw *w, const pl_jdict *d, size_t *idx) {
  for (size_t i = 0; i < d->n; i++) {
    size_t cur = i;
    idx[i] = i;
    while (cur > 0) {
      int cmp = 0;
      if (pl_jv_compare(d->k[idx[cur - 1]], d->k[idx[cur]], &cmp) < 0)
        return pl_jerr(w->c, "tojson(sort_keys=True): %s", pl_last_error());
      if (cmp <= 0)
        break;
      size_t t = idx[cur];
      idx[cur] = idx[cur - 1];
      idx[cur - 1] = t;
      cur--;
    }
  }
  return PL_OK;
}

static int put_value(jw *w, pl_jv v, int level) {
  if (level > 256)
    return pl_jerr(w->c, "tojson: value nested too deeply");
  pl_jbuf *b = w->b;
  switch (v.type) {
  case PL_JV_NONE:
    return pl_jbuf_puts(b, "null");
  case PL_JV_BOOL:
    return pl_jbuf_puts(b, v.u.b ? "true" : "false");
  case PL_JV_INT:
    return pl_jbuf_printf(b, "%lld", (long long)v.u.i);
  case PL_JV_FLOAT:
    return put_float(w, v.u.f);
  case PL_JV_STR:
    return put_string(w, v.u.s.p, v.u.s.n);
  case PL_JV_LIST: {
    if (v.u.l->n == 0)
      return pl_jbuf_puts(b, "[]");
    PL_TRY(pl_jbuf_putc(b, '['));
    for (size_t i = 0; i < v.u.l->n; i++) {
      if (i)
        PL_TRY(pl_jbuf_put(b, w->isep, w->isep_n));
      if (w->ind)
        PL_TRY(newline(w, level + 1));
      PL_TRY(put_value(w, v.u.l->v[i], level + 1));
    }
    if (w->ind)
      PL_TRY(newline(w, level));
    return pl_jbuf_putc(b, ']');
  }
  case PL_JV_DICT: {
    const pl_jdict *d = v.u.d;
    if (d->n == 0)
      return pl_jbuf_puts(b, "{}");
    size_t *idx = NULL;
    if (w->o->sort_keys) {
      idx = pl_jalloc(w->c, d->n * sizeof *idx);
      if (!idx)
        return pl_jv_oom(&w->c->arena);
      PL_TRY(sorted_order(w, d, idx));
    }
    PL_TRY(pl_jbuf_putc(b, '{'));
    for (size_t i = 0; i < d->n; i++) {
      size_t k = idx ? idx[i] : i;
      if (i)
        PL_TRY(pl_jbuf_put(b, w->isep, w->isep_n));
      if (w->ind)
        PL_TRY(newline(w, level + 1));
      PL_TRY(put_key(w, d->k[k]));
      PL_TRY(pl_jbuf_put(b, w->ksep, w->ksep_n));
      PL_TRY(put_value(w, d->v[k], level + 1));
    }
    if (w->ind)
      PL_TRY(newline(w, level));
    return pl_jbuf_putc(b, '}');
  }
  case PL_JV_UNDEF:
    if (v.u.undef_name)
      return pl_jerr(w->c, "tojson: '%s' is undefined", v.u.undef_name);
    return pl_jerr(w->c, "tojson: Object of type Undefined is not JSON serializable");
  default:
    return pl_jerr(w->c, "tojson: Object of type %s is not JSON serializable",
                   pl_jv_type_name(v));
  }
}

int pl_jinja_tojson(pl_jctx *c, pl_jv v, const pl_jjson_opts *o, pl_jbuf *b) {
  jw w = {.c = c, .o = o, .b = b};
  char *spaces = NULL;
  if (o->has_indent) {
    if (o->indent.type == PL_JV_STR) {
      w.ind = o->indent.u.s.p;
      w.ind_n = o->indent.u.s.n;
    } else {
      int64_t k = o->indent.type == PL_JV_BOOL ? o->indent.u.b : o->indent.u.i;
      if (k < 0)
        k = 0;
      if (k > 1024)
        return pl_jerr(c, "tojson: indent too large");
      spaces = pl_jalloc(c, (size_t)k + 1);
      if (!spaces)
        return pl_jv_oom(&c->arena);
      memset(spaces, ' ', (size_t)k);
      w.ind = spaces;
      w.ind_n = (size_t)k;
    }
  }
  if (o->item_sep) {
    w.isep = o->item_sep;
    w.isep_n = o->item_sep_n;
  } else {
    w.isep = w.ind ? "," : ", ";
    w.isep_n = strlen(w.isep);
  }
  if (o->key_sep) {
    w.ksep = o->key_sep;
    w.ksep_n = o->key_sep_n;
  } else {
    w.ksep = ": ";
    w.ksep_n = 2;
  }
  return put_value(&w, v, 0);
}
