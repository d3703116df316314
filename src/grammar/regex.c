/* Regular expression (ECMAScript subset) -> one GBNF rule. Regex syntax maps almost one to
 * one: literals become "..." strings, classes stay classes, groups, | and quantifiers keep
 * their meaning. ^ and $ at the ends are dropped (the whole output must match anyway);
 * backreferences, lookaround and anchors elsewhere are refused. */
#include <stdio.h>
#include <string.h>

#include "grammar/grammar.h"
#include "util/alloc.h"

typedef struct rx {
  const char *start, *p;
  pl_gbuf *b;
  pl_gconv_error *err;
  int failed;
  int depth;
} rx;

static void rfail(rx *r, const char *msg) {
  if (!r->failed)
    snprintf(r->err->message, sizeof r->err->message, "regex: %s at offset %d", msg,
             (int)(r->p - r->start));
  r->failed = 1;
}

static void lit_char(rx *r, char c) {
  char s[2] = {c, 0};
  pl_gbuf_literal(r->b, s, 1);
  pl_gbuf_put(r->b, " ");
}

/* An escape outside or inside a class: writes class content (inside) or an element. */
static int class_escape(char c, const char **out) {
  switch (c) {
  case 'd': *out = "0-9"; return 1;
  case 'w': *out = "a-zA-Z0-9_"; return 1;
  case 's': *out = " \\t\\n\\r\\f\\v"; return 1;
  }
  return 0;
}

static void alternation(rx *r);

static void atom(rx *r) {
  char c = *r->p;
  if (c == '(') {
    r->p++;
    if (*r->p == '?') {
      if (r->p[1] == ':')
        r->p += 2;
      else
        return rfail(r, "lookaround and named groups are not supported");
    }
    if (++r->depth > 100)
      return rfail(r, "groups nested too deeply");
    pl_gbuf_put(r->b, "(");
    alternation(r);
    r->depth--;
    if (*r->p != ')')
      return rfail(r, "missing ')'");
    r->p++;
    pl_gbuf_put(r->b, ") ");
  } else if (c == '[') {
    r->p++;
    pl_gbuf_put(r->b, "[");
    if (*r->p == '^') {
      pl_gbuf_put(r->b, "^");
      r->p++;
    }
    int n = 0;
    while (*r->p && (*r->p != ']' || n == 0)) {
      if (*r->p == '\\') {
        r->p++;
        const char *cls;
        if (class_escape(*r->p, &cls)) {
          pl_gbuf_put(r->b, cls);
        } else if (*r->p == 'D' || *r->p == 'W' || *r->p == 'S') {
          return rfail(r, "negated escapes inside classes are not supported");
        } else if (*r->p == 'n' || *r->p == 't' || *r->p == 'r' || *r->p == 'f' ||
                   *r->p == 'v' || *r->p == 'x' || *r->p == 'u') {
          pl_gbuf_putn(r->b, r->p - 1, 2);
        } else if (*r->p) {
          char e[3] = {'\\', *r->p, 0};
          pl_gbuf_put(r->b, e);
        }
        if (*r->p)
          r->p++;
      } else if (*r->p == '"') {
        pl_gbuf_put(r->b, "\\\"");
        r->p++;
      } else if (*r->p == '[') {
        pl_gbuf_put(r->b, "\\[");
        r->p++;
      } else {
        pl_gbuf_putn(r->b, r->p++, 1);
      }
      n++;
    }
    if (*r->p != ']')
      return rfail(r, "missing ']'");
    r->p++;
    pl_gbuf_put(r->b, "] ");
  } else if (c == '.') {
    r->p++;
    pl_gbuf_put(r->b, "[^\\n\\r] ");
  } else if (c == '\\') {
    r->p++;
    char e = *r->p;
    const char *cls;
    if (!e)
      return rfail(r, "trailing backslash");
    r->p++;
    if (class_escape(e, &cls)) {
      pl_gbuf_printf(r->b, "[%s] ", cls);
    } else if (e == 'D' || e == 'W' || e == 'S') {
      char low = (char)(e + 32);
      class_escape(low, &cls);
      pl_gbuf_printf(r->b, "[^%s] ", cls);
    } else if (e >= '1' && e <= '9') {
      return rfail(r, "backreferences are not supported");
    } else if (e == 'b' || e == 'B') {
      return rfail(r, "word boundaries are not supported");
    } else if (e == 'n' || e == 't' || e == 'r' || e == 'f' || e == 'v') {
      pl_gbuf_printf(r->b, "\"\\%c\" ", e);
    } else if (e == 'x' || e == 'u') {
      pl_gbuf_printf(r->b, "[\\%c", e);
      int nh = e == 'x' ? 2 : 4;
      for (int i = 0; i < nh; i++) {
        if (!*r->p)
          return rfail(r, "short escape");
        pl_gbuf_putn(r->b, r->p++, 1);
      }
      pl_gbuf_put(r->b, "] ");
    } else {
      lit_char(r, e);
    }
  } else if (c == '^' || c == '$') {
    rfail(r, "anchors are only supported at the start and end");
  } else if (c == '*' || c == '+' || c == '?' || c == '{') {
    rfail(r, "quantifier without anything to repeat");
  } else {
    /* one UTF-8 character as a literal */
    int n = 1;
    unsigned char u = (unsigned char)c;
    if (u >= 0xF0) n = 4;
    else if (u >= 0xE0) n = 3;
    else if (u >= 0xC0) n = 2;
    for (int i = 1; i < n; i++) /* a sequence cut by the end: the compiler refuses it */
      if (!r->p[i]) {
        n = i;
        break;
      }
    pl_gbuf_literal(r->b, r->p, (size_t)n);
    pl_gbuf_put(r->b, " ");
    r->p += n;
  }
}

static void quantified(rx *r) {
  atom(r);
  if (r->failed)
    return;
  char c = *r->p;
  if (c == '*' || c == '+' || c == '?') {
    pl_gbuf_putn(r->b, r->p++, 1);
    pl_gbuf_put(r->b, " ");
  } else if (c == '{') {
    const char *e = strchr(r->p, '}');
    if (!e)
      return rfail(r, "missing '}'");
    for (const char *q = r->p + 1; q < e; q++)
      if (!(*q >= '0' && *q <= '9') && *q != ',')
        return rfail(r, "bad {m,n} quantifier");
    pl_gbuf_putn(r->b, r->p, (size_t)(e - r->p + 1));
    pl_gbuf_put(r->b, " ");
    r->p = e + 1;
  } else {
    return;
  }
  if (*r->p == '?') /* lazy: the same language */
    r->p++;
  if (*r->p == '*' || *r->p == '+' || *r->p == '{')
    rfail(r, "nested quantifier");
}

static void alternation(rx *r) {
  int empty = 1;
  while (!r->failed && *r->p && *r->p != ')') {
    if (*r->p == '|') {
      if (empty)
        pl_gbuf_put(r->b, "\"\" ");
      pl_gbuf_put(r->b, "| ");
      r->p++;
      empty = 1;
      continue;
    }
    if (*r->p == '$' && (r->p[1] == 0) && r->depth == 0) {
      r->p++;
      continue;
    }
    quantified(r);
    empty = 0;
  }
  if (empty)
    pl_gbuf_put(r->b, "\"\" ");
}

char *pl_regex_to_gbnf(const char *re, pl_gconv_error *err) {
  pl_gbuf b = {0};
  rx r = {.start = re, .p = re, .b = &b, .err = err};
  err->message[0] = 0;
  if (*r.p == '^')
    r.p++;
  pl_gbuf_put(&b, "root ::= ");
  alternation(&r);
  if (!r.failed && *r.p)
    rfail(&r, "unbalanced ')'");
  pl_gbuf_put(&b, "\n");
  if (r.failed || b.oom) {
    if (b.oom)
      snprintf(err->message, sizeof err->message, "out of memory");
    pl_free(b.p);
    return NULL;
  }
  return b.p;
}
