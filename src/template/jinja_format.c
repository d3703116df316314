/* Python string formatting for templates: printf-style `"%s" % x` (also the `format` filter)
 * and str.format() as Jinja's sandboxed formatter allows it. Supported: %-conversions
 * s r a d i u f F e E g G x X o c %% with flags, width, precision and %(name)s keys; format
 * fields {} {0} {name} with .attr/[key] lookups, !s/!r conversions and specs
 * [[fill]align][sign][#][0][width][,|_][.precision][type]. Nested fields inside a spec are not
 * supported (PL_ETEMPLATE). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "template/jinja_eval.h"
#include "util/error.h"

typedef struct spec {
  uint32_t fill;
  char align; /* '<' '>' '^' '=' or 0 */
  char sign;  /* '+' '-' ' ' or 0 */
  int alt, zero, grouping; /* grouping: ',' or '_' */
  int64_t width, prec;     /* -1 = unset */
  char type;
} spec;

static int put_padded(pl_jbuf *b, const spec *sp, const char *s, size_t n, char dflt_align,
                      size_t sign_len) {
  int64_t len = (int64_t)pl_utf8_count(s, n);
  int64_t pad = sp->width > len ? sp->width - len : 0;
  char align = sp->align ? sp->align : dflt_align;
  uint32_t fill = sp->fill ? sp->fill : ' ';
  int64_t left = align == '>' ? pad : align == '^' ? pad / 2 : 0, right = pad - left;
  if (align == '=') {
    left = 0;
    right = 0;
    PL_TRY(pl_jbuf_put(b, s, sign_len));
    for (int64_t i = 0; i < pad; i++)
      PL_TRY(pl_jbuf_put_cp(b, fill));
    return pl_jbuf_put(b, s + sign_len, n - sign_len);
  }
  for (int64_t i = 0; i < left; i++)
    PL_TRY(pl_jbuf_put_cp(b, fill));
  PL_TRY(pl_jbuf_put(b, s, n));
  for (int64_t i = 0; i < right; i++)
    PL_TRY(pl_jbuf_put_cp(b, fill));
  return PL_OK;
}

/* Insert thousands separators into the integer digits of `num` (after any sign). */
static void group_digits(char *num, char sep) {
  char tmp[512];
  size_t n = strlen(num), start = (num[0] == '-' || num[0] == '+' || num[0] == ' ') ? 1 : 0;
  size_t end = start;
  while (end < n && num[end] >= '0' && num[end] <= '9')
    end++;
  size_t digits = end - start, o = 0;
  if (n + digits / 3 + 1 >= sizeof tmp)
    return;
  memcpy(tmp, num, start);
  o = start;
  for (size_t i = 0; i < digits; i++) {
    if (i && (digits - i) % 3 == 0)
      tmp[o++] = sep;
    tmp[o++] = num[start + i];
  }
  memcpy(tmp + o, num + end, n - end + 1);
  memcpy(num, tmp, strlen(tmp) + 1);
}

static int format_number(pl_jctx *c, pl_jbuf *b, pl_jv v, const spec *sp) {
  char num[512], fmt[32];
  char type = sp->type;
  int is_float = v.type == PL_JV_FLOAT;
  if (!type)
    type = is_float ? 0 : 'd';
  if (strchr("eEfFgG%", type) || (type == 0 && is_float)) {
    double x = pl_jv_as_double(v);
    int64_t prec = sp->prec;
    if (type == 0) {
      if (prec < 0) {
        pl_jv_fmt_float(x, num);
      } else {
        snprintf(fmt, sizeof fmt, "%%.%dg", (int)(prec > 100 ? 100 : prec));
        snprintf(num, sizeof num, fmt, x);
      }
    } else if (type == '%') {
      snprintf(num, sizeof num - 1, "%.*f", (int)(prec < 0 ? 6 : prec > 100 ? 100 : prec),
               x * 100.0);
      strcat(num, "%");
    } else {
      snprintf(fmt, sizeof fmt, "%%%s.%d%c", sp->alt ? "#" : "",
               (int)(prec < 0 ? 6 : prec > 100 ? 100 : prec), type);
      snprintf(num, sizeof num, fmt, x);
    }
    if (sp->sign == '+' && x >= 0 && !signbit(x)) {
      memmove(num + 1, num, strlen(num) + 1);
      num[0] = '+';
    } else if (sp->sign == ' ' && x >= 0 && !signbit(x)) {
      memmove(num + 1, num, strlen(num) + 1);
      num[0] = ' ';
    }
  } else if (strchr("dnbxXoc", type)) {
    if (is_float)
      return pl_jerr(c, "unknown format code '%c' for object of type 'float'", type);
    int64_t i = v.type == PL_JV_BOOL ? v.u.b : v.u.i;
    if (type == 'c') {
      char u[4];
      size_t k = pl_utf8_encode((uint32_t)i, u);
      spec s2 = *sp;
      return put_padded(b, &s2, u, k, '<', 0);
    }
    uint64_t mag = i < 0 ? (uint64_t)0 - (uint64_t)i : (uint64_t)i;
    char digits[80];
    if (type == 'b') {
      size_t k = 0;
      char rev[70];
      do {
        rev[k++] = (char)('0' + (mag & 1));
        mag >>= 1;
      } while (mag);
      for (size_t j = 0; j < k; j++)
        digits[j] = rev[k - 1 - j];
      digits[k] = 0;
    } else {
      snprintf(digits, sizeof digits, type == 'x' ? "%llx" : type == 'X' ? "%llX" : type == 'o' ? "%llo" : "%llu",
               (unsigned long long)mag);
    }
    const char *prefix = !sp->alt ? "" : type == 'b' ? "0b" : type == 'o' ? "0o" : type == 'x' ? "0x"
                                       : type == 'X' ? "0X" : "";
    const char *sign = i < 0 ? "-" : sp->sign == '+' ? "+" : sp->sign == ' ' ? " " : "";
    snprintf(num, sizeof num, "%s%s%s", sign, prefix, digits);
  } else {
    return pl_jerr(c, "unknown format code '%c' for a number", type);
  }
  if (sp->grouping)
    group_digits(num, (char)sp->grouping);
  spec s2 = *sp;
  if (sp->zero && !sp->align) {
    s2.fill = '0';
    s2.align = '=';
  }
  size_t sign_len = (num[0] == '-' || num[0] == '+' || num[0] == ' ') ? 1 : 0;
  if (s2.align == '=' && num[sign_len] == '0' && strchr("xXob", num[sign_len + 1] ? num[sign_len + 1] : ' ') &&
      sp->alt)
    sign_len += 2;
  return put_padded(b, &s2, num, strlen(num), '>', sign_len);
}

static int parse_spec(pl_jctx *c, const char *s, size_t n, spec *sp) {
  memset(sp, 0, sizeof *sp);
  sp->width = sp->prec = -1;
  size_t i = 0;
  if (n == 0)
    return PL_OK;
  uint32_t cp;
  size_t j = pl_utf8_next(s, n, 0, &cp);
  if (j < n && strchr("<>^=", s[j])) {
    sp->fill = cp;
    sp->align = s[j];
    i = j + 1;
  } else if (strchr("<>^=", s[0])) {
    sp->align = s[0];
    i = 1;
  }
  if (i < n && strchr("+- ", s[i]))
    sp->sign = s[i++];
  if (i < n && s[i] == '#') {
    sp->alt = 1;
    i++;
  }
  if (i < n && s[i] == '0') {
    sp->zero = 1;
    i++;
  }
  if (i < n && s[i] >= '0' && s[i] <= '9') {
    sp->width = 0;
    while (i < n && s[i] >= '0' && s[i] <= '9' && sp->width < 100000000)
      sp->width = sp->width * 10 + (s[i++] - '0');
  }
  if (i < n && (s[i] == ',' || s[i] == '_'))
    sp->grouping = s[i++];
  if (i < n && s[i] == '.') {
    i++;
    sp->prec = 0;
    if (i >= n || s[i] < '0' || s[i] > '9')
      return pl_jerr(c, "format specifier missing precision");
    while (i < n && s[i] >= '0' && s[i] <= '9' && sp->prec < 100000000)
      sp->prec = sp->prec * 10 + (s[i++] - '0');
  }
  if (i < n)
    sp->type = s[i++];
  if (i != n)
    return pl_jerr(c, "invalid format specifier '%.*s'", (int)n, s);
  if (sp->width > (int64_t)c->max_output)
    return pl_jerr(c, "format width too large");
  return PL_OK;
}

static int format_value(pl_jctx *c, pl_jbuf *b, pl_jv v, const char *s, size_t n) {
  spec sp;
  PL_TRY(parse_spec(c, s, n, &sp));
  if (n == 0)
    return pl_jv_write_str(b, v);
  if (v.type == PL_JV_INT || v.type == PL_JV_FLOAT || (v.type == PL_JV_BOOL && sp.type))
    return format_number(c, b, v, &sp);
  if (sp.type && sp.type != 's')
    return pl_jerr(c, "unknown format code '%c' for object of type '%s'", sp.type,
                   pl_jv_type_name(v));
  pl_jv str = {0};
  PL_TRY(pl_jv_str_of(c, v, &str));
  size_t len = str.u.s.n;
  if (sp.prec >= 0)
    len = pl_utf8_offset(str.u.s.p, str.u.s.n, (size_t)sp.prec);
  return put_padded(b, &sp, str.u.s.p, len, '<', 0);
}

/* ---- str.format ------------------------------------------------------------------------- */

static int field_value(pl_jctx *c, const char *f, size_t n, const pl_jargs *a, size_t *auto_idx,
                       pl_jv *out) {
  size_t i = 0;
  while (i < n && f[i] != '.' && f[i] != '[')
    i++;
  if (i == 0) {
    if (*auto_idx >= a->npos)
      return pl_jerr(c, "format: replacement index %zu out of range", *auto_idx);
    *out = a->pos[(*auto_idx)++];
  } else if (f[0] >= '0' && f[0] <= '9') {
    size_t k = 0;
    for (size_t j = 0; j < i; j++) {
      if (f[j] < '0' || f[j] > '9' || k > 100000)
        return pl_jerr(c, "format: bad field name");
      k = k * 10 + (size_t)(f[j] - '0');
    }
    if (k >= a->npos)
      return pl_jerr(c, "format: replacement index %zu out of range", k);
    *out = a->pos[k];
  } else {
    size_t k = 0;
    while (k < a->nkw && !(strlen(a->kwn[k]) == i && memcmp(a->kwn[k], f, i) == 0))
      k++;
    if (k == a->nkw)
      return pl_jerr(c, "format: missing keyword argument '%.*s'", (int)i, f);
    *out = a->kwv[k];
  }
  while (i < n) { /* .attr and [key] chains */
    if (f[i] == '.') {
      size_t st = ++i;
      while (i < n && f[i] != '.' && f[i] != '[')
        i++;
      char *name = pl_jarena_strndup(&c->arena, f + st, i - st);
      if (!name)
        return pl_jv_oom(&c->arena);
      if (name[0] == '_')
        return pl_jerr(c, "format: access to attribute '%s' is unsafe", name);
      PL_TRY(pl_jinja_getattr(c, *out, name, out));
    } else {
      size_t st = ++i;
      while (i < n && f[i] != ']')
        i++;
      if (i >= n)
        return pl_jerr(c, "format: missing ']' in field name");
      pl_jv key = pl_jv_str(f + st, i - st);
      int digits = i > st;
      int64_t k = 0;
      for (size_t j = st; j < i; j++) {
        digits &= f[j] >= '0' && f[j] <= '9';
        if (digits && k < 1000000000)
          k = k * 10 + (f[j] - '0');
      }
      if (digits)
        key = pl_jv_int(k);
      PL_TRY(pl_jinja_getitem(c, *out, key, out));
      i++;
    }
  }
  return PL_OK;
}

static int str_format_into(pl_jctx *c, pl_jbuf *b, pl_jv fmt, const pl_jargs *a) {
  const char *p = fmt.u.s.p;
  size_t n = fmt.u.s.n, i = 0, auto_idx = 0;
  while (i < n) {
    char ch = p[i];
    if (ch == '}') {
      if (i + 1 < n && p[i + 1] == '}') {
        PL_TRY(pl_jbuf_putc(b, '}'));
        i += 2;
        continue;
      }
      return pl_jerr(c, "format: single '}' encountered in format string");
    }
    if (ch != '{') {
      PL_TRY(pl_jbuf_putc(b, ch));
      i++;
      continue;
    }
    if (i + 1 < n && p[i + 1] == '{') {
      PL_TRY(pl_jbuf_putc(b, '{'));
      i += 2;
      continue;
    }
    size_t st = ++i, colon = 0, bang = 0;
    int depth = 0;
    while (i < n && !(p[i] == '}' && depth == 0)) {
      if (p[i] == '[')
        depth++;
      else if (p[i] == ']' && depth)
        depth--;
      else if (p[i] == '{')
        return pl_jerr(c, "format: nested replacement fields are not supported");
      else if (!depth && p[i] == '!' && !bang && !colon)
        bang = i;
      else if (!depth && p[i] == ':' && !colon)
        colon = i;
      i++;
    }
    if (i >= n)
      return pl_jerr(c, "format: expected '}' before end of string");
    size_t name_end = bang ? bang : colon ? colon : i;
    pl_jv v = {0};
    PL_TRY(field_value(c, p + st, name_end - st, a, &auto_idx, &v));
    if (bang) {
      char conv = bang + 1 < i ? p[bang + 1] : 0;
      if (conv == 'r' || conv == 'a') {
        pl_jbuf tmp;
        pl_jbuf_init(&tmp, c->max_output);
        int rc = pl_jv_write_repr(&tmp, v);
        if (rc == PL_OK)
          rc = pl_jstr_make(c, &tmp, &v);
        else
          pl_jbuf_free(&tmp);
        PL_TRY(rc);
      } else if (conv == 's') {
        PL_TRY(pl_jv_str_of(c, v, &v));
      } else {
        return pl_jerr(c, "format: unknown conversion specifier");
      }
    }
    const char *sp = colon ? p + colon + 1 : p + i;
    size_t spn = colon ? i - colon - 1 : 0;
    PL_TRY(format_value(c, b, v, sp, spn));
    i++;
  }
  return PL_OK;
}

int pl_jinja_str_format(pl_jctx *c, pl_jv fmt, const pl_jargs *a, pl_jv *out) {
  pl_jbuf b;
  pl_jbuf_init(&b, c->max_output);
  int rc = str_format_into(c, &b, fmt, a);
  if (rc) {
    pl_jbuf_free(&b);
    return rc;
  }
  return pl_jstr_make(c, &b, out);
}

/* ---- printf-style ----------------------------------------------------------------------- */

static int percent_into(pl_jctx *c, pl_jbuf *b, pl_jv fmt, pl_jv args) {
  const pl_jv *items = &args;
  size_t nitems = 1, used = 0;
  int mapping = args.type == PL_JV_DICT;
  if (args.type == PL_JV_LIST && args.tuple) {
    items = args.u.l->v;
    nitems = args.u.l->n;
  }
  const char *p = fmt.u.s.p;
  size_t n = fmt.u.s.n, i = 0;
  while (i < n) {
    if (p[i] != '%') {
      size_t st = i;
      while (i < n && p[i] != '%')
        i++;
      PL_TRY(pl_jbuf_put(b, p + st, i - st));
      continue;
    }
    if (++i >= n)
      return pl_jerr(c, "format: incomplete format");
    pl_jv v = {0};
    int have_v = 0;
    if (p[i] == '(') {
      size_t st = ++i;
      while (i < n && p[i] != ')')
        i++;
      if (i >= n || !mapping)
        return pl_jerr(c, "format: %s", mapping ? "incomplete format key" : "format requires a mapping");
      const pl_jv *hit = pl_jdict_get_str(args.u.d, p + st, i - st);
      if (!hit)
        return pl_jerr(c, "format: missing key '%.*s'", (int)(i - st), p + st);
      v = *hit;
      have_v = 1;
      i++;
    }
    spec sp;
    memset(&sp, 0, sizeof sp);
    sp.width = sp.prec = -1;
    for (; i < n && strchr("-+ #0", p[i]); i++) {
      if (p[i] == '-')
        sp.align = '<';
      else if (p[i] == '+' || p[i] == ' ')
        sp.sign = sp.sign == '+' ? '+' : p[i];
      else if (p[i] == '#')
        sp.alt = 1;
      else
        sp.zero = 1;
    }
    if (i < n && p[i] == '*')
      return pl_jerr(c, "format: '*' width is not supported");
    while (i < n && p[i] >= '0' && p[i] <= '9') {
      sp.width = (sp.width < 0 ? 0 : sp.width) * 10 + (p[i++] - '0');
      if (sp.width > (int64_t)c->max_output)
        return pl_jerr(c, "format width too large");
    }
    if (i < n && p[i] == '.') {
      sp.prec = 0;
      for (i++; i < n && p[i] >= '0' && p[i] <= '9' && sp.prec < 1000; i++)
        sp.prec = sp.prec * 10 + (p[i] - '0');
    }
    while (i < n && strchr("hlL", p[i]))
      i++;
    if (i >= n)
      return pl_jerr(c, "format: incomplete format");
    char conv = p[i++];
    if (conv == '%') {
      PL_TRY(pl_jbuf_putc(b, '%'));
      continue;
    }
    if (!have_v) {
      if (mapping) {
        v = args;
      } else {
        if (used >= nitems)
          return pl_jerr(c, "not enough arguments for format string");
        v = items[used++];
      }
    }
    if (sp.zero && sp.align == '<')
      sp.zero = 0;
    if (conv == 's' || conv == 'r' || conv == 'a') {
      pl_jv s = {0};
      if (conv == 's') {
        PL_TRY(pl_jv_str_of(c, v, &s));
      } else {
        pl_jbuf tmp;
        pl_jbuf_init(&tmp, c->max_output);
        int rc = pl_jv_write_repr(&tmp, v);
        if (rc) {
          pl_jbuf_free(&tmp);
          return rc;
        }
        PL_TRY(pl_jstr_make(c, &tmp, &s));
      }
      size_t len = sp.prec >= 0 ? pl_utf8_offset(s.u.s.p, s.u.s.n, (size_t)sp.prec) : s.u.s.n;
      sp.zero = 0;
      PL_TRY(put_padded(b, &sp, s.u.s.p, len, '>', 0));
      continue;
    }
    if (!pl_jv_isnum(v))
      return pl_jerr(c, "%%%c format: a real number is required, not %s", conv,
                     pl_jv_type_name(v));
    if (conv == 'i' || conv == 'u')
      conv = 'd';
    if (strchr("dxXoc", conv) && v.type == PL_JV_FLOAT) {
      if (!isfinite(v.u.f) || fabs(v.u.f) >= 9.2e18)
        return pl_jerr(c, "format: cannot convert float to integer");
      v = pl_jv_int((int64_t)v.u.f);
    }
    if (!strchr("dxXocfFeEgG", conv))
      return pl_jerr(c, "unsupported format character '%c'", conv);
    if (strchr("fFeEgG", conv) && sp.prec < 0)
      sp.prec = 6;
    if (conv == 'd' && sp.prec >= 0) /* %.3d pads digits with zeros */
      sp.prec = -1;
    sp.type = conv;
    if (strchr("fFeEgG", conv))
      v = pl_jv_float(pl_jv_as_double(v));
    if (sp.align != '<')
      sp.align = sp.zero ? 0 : '>';
    PL_TRY(format_number(c, b, v, &sp));
  }
  /* Python: leftover arguments are an error, except for a single argument that supports
   * item access (a list or dict), which may go unused. */
  int is_tuple = args.type == PL_JV_LIST && args.tuple;
  int exempt = !is_tuple && (args.type == PL_JV_LIST || args.type == PL_JV_UNDEF || mapping);
  if (!exempt && used < nitems)
    return pl_jerr(c, "not all arguments converted during string formatting");
  return PL_OK;
}

int pl_jinja_percent_format(pl_jctx *c, pl_jv fmt, pl_jv args, pl_jv *out) {
  pl_jbuf b;
  pl_jbuf_init(&b, c->max_output);
  int rc = percent_into(c, &b, fmt, args);
  if (rc) {
    pl_jbuf_free(&b);
    return rc;
  }
  return pl_jstr_make(c, &b, out);
}
