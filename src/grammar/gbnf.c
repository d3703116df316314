/* GBNF text -> grammar IR (see grammar.h for the dialect, grammar_impl.h for the IR). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "grammar/grammar_impl.h"
#include "util/alloc.h"
#include "util/array.h"
#include "util/error.h"

#define MAX_ELEMS (4 << 20) /* elements in one grammar: bounds {m,n} blow-ups */
#define MAX_REPEAT 10000
#define MAX_NESTING 1000 /* ( groups ) inside each other: the parser recurses on them */

typedef struct evec {
  pl_gelem *e;
  int n, cap;
} evec;

typedef struct rdef {
  char *name; /* NULL for generated rules */
  evec body;  /* alternatives with ALT separators and a final END */
  int defined;
  int ref_line; /* first line that referenced it */
} rdef;

typedef struct parser {
  const char *s, *end, *p;
  int line;
  rdef *rules;
  int n_rules, cap_rules;
  pl_gclass *classes;
  int n_classes, cap_classes;
  int byte_class[256]; /* class id of the single-byte class for each byte, -1 = none yet */
  int any_rule;        /* rule for `.`, -1 = not made */
  long total;
  int nesting;
  int failed;
} parser;

static int perr(parser *P, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int perr(parser *P, const char *fmt, ...) {
  if (P->failed)
    return P->failed;
  char msg[400];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  P->failed = pl_fail(PL_EINVAL, "grammar: line %d: %s", P->line, msg);
  return P->failed;
}

static int oom(parser *P) {
  if (!P->failed)
    P->failed = pl_fail(PL_ENOMEM, "grammar: out of memory");
  return P->failed;
}

static int epush(parser *P, evec *v, int type, int arg) {
  if (++P->total > MAX_ELEMS)
    return perr(P, "grammar too large (more than %d elements after expanding repetitions)",
                MAX_ELEMS);
  if (pl_array_grow(&v->e, &v->cap, (size_t)v->n + 1, sizeof *v->e, 16))
    return oom(P);
  v->e[v->n++] = (pl_gelem){type, arg};
  return 0;
}

static int new_rule(parser *P, const char *name, size_t nlen) {
  if (pl_array_grow(&P->rules, &P->cap_rules, (size_t)P->n_rules + 1, sizeof *P->rules, 32))
    return oom(P);
  rdef *r = &P->rules[P->n_rules];
  memset(r, 0, sizeof *r);
  if (name && !(r->name = pl_strndup(name, nlen)))
    return oom(P);
  r->ref_line = P->line;
  return P->n_rules++;
}

static int find_rule(parser *P, const char *name, size_t nlen) {
  for (int i = 0; i < P->n_rules; i++)
    if (P->rules[i].name && strlen(P->rules[i].name) == nlen &&
        !memcmp(P->rules[i].name, name, nlen))
      return i;
  return new_rule(P, name, nlen);
}

static int add_class(parser *P, const pl_gclass *c) {
  if (pl_array_grow(&P->classes, &P->cap_classes, (size_t)P->n_classes + 1, sizeof *P->classes,
                    64))
    return oom(P);
  P->classes[P->n_classes] = *c;
  return P->n_classes++;
}

static int byte_range_class(parser *P, int lo, int hi) {
  if (lo == hi && P->byte_class[lo] >= 0)
    return P->byte_class[lo];
  pl_gclass c = {{0}};
  for (int b = lo; b <= hi; b++)
    c.bits[b >> 6] |= 1ull << (b & 63);
  int id = add_class(P, &c);
  if (id >= 0 && lo == hi)
    P->byte_class[lo] = id;
  return id;
}

/* ---- UTF-8 ------------------------------------------------------------------------------ */

static int utf8_encode(uint32_t cp, uint8_t *o) {
  if (cp < 0x80) { o[0] = (uint8_t)cp; return 1; }
  if (cp < 0x800) { o[0] = (uint8_t)(0xC0 | cp >> 6); o[1] = (uint8_t)(0x80 | (cp & 63)); return 2; }
  if (cp < 0x10000) {
    o[0] = (uint8_t)(0xE0 | cp >> 12); o[1] = (uint8_t)(0x80 | ((cp >> 6) & 63));
    o[2] = (uint8_t)(0x80 | (cp & 63));
    return 3;
  }
  o[0] = (uint8_t)(0xF0 | cp >> 18); o[1] = (uint8_t)(0x80 | ((cp >> 12) & 63));
  o[2] = (uint8_t)(0x80 | ((cp >> 6) & 63)); o[3] = (uint8_t)(0x80 | (cp & 63));
  return 4;
}

/* Decode one code point of the grammar source; -1 on invalid UTF-8. */
static long utf8_next(parser *P) {
  const uint8_t *s = (const uint8_t *)P->p;
  size_t left = (size_t)(P->end - P->p);
  uint32_t c = s[0];
  int n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
  if (!n || (size_t)n > left)
    return -1;
  uint32_t cp = n == 1 ? c : n == 2 ? c & 31 : n == 3 ? c & 15 : c & 7;
  for (int i = 1; i < n; i++) {
    if ((s[i] & 0xC0) != 0x80)
      return -1;
    cp = cp << 6 | (s[i] & 63);
  }
  P->p += n;
  return cp;
}

static int hexval(int c) {
  return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
         : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

/* One (possibly escaped) character of a literal or class. */
static long parse_char(parser *P) {
  if (P->p >= P->end)
    return perr(P, "unexpected end of the grammar"), -1;
  if (*P->p != '\\') {
    long cp = utf8_next(P);
    if (cp < 0)
      perr(P, "invalid UTF-8");
    return cp;
  }
  P->p++;
  if (P->p >= P->end)
    return perr(P, "unexpected end after '\\'"), -1;
  char c = *P->p++;
  int nhex = c == 'x' ? 2 : c == 'u' ? 4 : c == 'U' ? 8 : 0;
  if (nhex) {
    uint32_t v = 0;
    for (int i = 0; i < nhex; i++) {
      int h = P->p < P->end ? hexval(*P->p) : -1;
      if (h < 0)
        return perr(P, "bad \\%c escape: %d hex digits expected", c, nhex), -1;
      v = v << 4 | (uint32_t)h;
      P->p++;
    }
    if (v > 0x10FFFF)
      return perr(P, "escape beyond U+10FFFF"), -1;
    return v;
  }
  switch (c) {
  case 'n': return '\n';
  case 't': return '\t';
  case 'r': return '\r';
  case 'f': return '\f';
  case 'v': return '\v';
  case '0': return 0;
  case '\\': case '"': case '[': case ']': case '-': case '^': case '\'': case '/': case '.':
  case '(': case ')': case '|': case '*': case '+': case '?': case '{': case '}':
    return (unsigned char)c;
  }
  return perr(P, "unknown escape '\\%c'", c), -1;
}

/* ---- code point ranges -> byte sequences (UTF-8 range splitting) ------------------------ */

typedef struct cprange { uint32_t lo, hi; } cprange;

/* Append alternatives matching code points [lo, hi] (same UTF-8 length) to body. */
static int utf8_seqs(parser *P, evec *body, uint32_t lo, uint32_t hi, int *first) {
  if (P->failed)
    return P->failed;
  int n = lo < 0x80 ? 1 : lo < 0x800 ? 2 : lo < 0x10000 ? 3 : 4;
  for (int i = 1; i < n; i++) {
    uint32_t m = (1u << (6 * i)) - 1;
    if ((lo & ~m) != (hi & ~m)) {
      if ((lo & m) != 0) {
        utf8_seqs(P, body, lo, lo | m, first);
        return utf8_seqs(P, body, (lo | m) + 1, hi, first);
      }
      if ((hi & m) != m) {
        utf8_seqs(P, body, lo, (hi & ~m) - 1, first);
        return utf8_seqs(P, body, hi & ~m, hi, first);
      }
    }
  }
  uint8_t a[4], b[4];
  utf8_encode(lo, a);
  utf8_encode(hi, b);
  if (!*first && epush(P, body, PL_GE_ALT, 0) < 0)
    return P->failed;
  *first = 0;
  for (int i = 0; i < n; i++) {
    int c = byte_range_class(P, a[i], b[i]);
    if (c < 0 || epush(P, body, PL_GE_CHAR, c) < 0)
      return P->failed;
  }
  return 0;
}

static int cmp_range(const void *a, const void *b) {
  const cprange *x = a, *y = b;
  return x->lo < y->lo ? -1 : x->lo > y->lo;
}

/* Emit an element matching one code point of the (sorted, merged here) ranges into seq. */
static int emit_ranges(parser *P, evec *seq, cprange *r, int n, int negate) {
  qsort(r, (size_t)n, sizeof *r, cmp_range);
  int m = 0;
  for (int i = 0; i < n; i++) {
    if (m && r[i].lo <= r[m - 1].hi + 1) {
      if (r[i].hi > r[m - 1].hi)
        r[m - 1].hi = r[i].hi;
    } else {
      r[m++] = r[i];
    }
  }
  n = m;
  cprange tmp[260];
  cprange *use = r;
  if (negate) { /* complement over the scalar values (no surrogates) */
    int k = 0;
    uint32_t next = 0;
    for (int i = 0; i <= n && k < 258; i++) {
      uint32_t lo = i < n ? r[i].lo : 0x110000;
      if (lo > next)
        tmp[k++] = (cprange){next, lo - 1};
      if (i < n)
        next = r[i].hi + 1;
    }
    use = tmp;
    n = k;
  }
  /* split out surrogates and the UTF-8 length boundaries */
  pl_gclass ascii = {{0}};
  int has_ascii = 0, has_multi = 0;
  cprange multi[300];
  int nm = 0;
  static const uint32_t cuts[] = {0x7F, 0x7FF, 0xD7FF, 0xDFFF, 0xFFFF, 0x10FFFF};
  for (int i = 0; i < n; i++) {
    uint32_t lo = use[i].lo, hi = use[i].hi;
    for (int c = 0; c < 6 && lo <= hi; c++) {
      if (lo > cuts[c])
        continue;
      uint32_t h = hi < cuts[c] ? hi : cuts[c];
      if (c == 3) { /* surrogates: no UTF-8 */
      } else if (c == 0) {
        for (uint32_t b = lo; b <= h; b++)
          ascii.bits[b >> 6] |= 1ull << (b & 63);
        has_ascii = 1;
      } else if (nm < 300) {
        multi[nm++] = (cprange){lo, h};
        has_multi = 1;
      } else {
        return perr(P, "character class too complex");
      }
      lo = h + 1;
    }
  }
  if (!has_ascii && !has_multi)
    return perr(P, "empty character class");
  if (!has_multi) {
    int c = add_class(P, &ascii);
    return c < 0 ? c : epush(P, seq, PL_GE_CHAR, c);
  }
  int rid = new_rule(P, NULL, 0);
  if (rid < 0)
    return rid;
  rdef tmp_r = P->rules[rid]; /* body built aside: P->rules may move */
  evec body = tmp_r.body;
  int first = 1;
  if (has_ascii) {
    int c = add_class(P, &ascii);
    if (c < 0 || epush(P, &body, PL_GE_CHAR, c) < 0)
      goto fail;
    first = 0;
  }
  for (int i = 0; i < nm; i++)
    if (utf8_seqs(P, &body, multi[i].lo, multi[i].hi, &first) < 0)
      goto fail;
  if (epush(P, &body, PL_GE_END, 0) < 0)
    goto fail;
  P->rules[rid].body = body;
  P->rules[rid].defined = 1;
  return epush(P, seq, PL_GE_RULE, rid);
fail:
  P->rules[rid].body = body;
  return P->failed;
}

static int parse_class(parser *P, evec *seq) {
  P->p++; /* [ */
  int negate = 0;
  if (P->p < P->end && *P->p == '^') {
    negate = 1;
    P->p++;
  }
  cprange r[256];
  int n = 0;
  while (P->p < P->end && *P->p != ']') {
    long lo = parse_char(P);
    if (lo < 0)
      return P->failed;
    long hi = lo;
    if (P->p + 1 < P->end && *P->p == '-' && P->p[1] != ']') {
      P->p++;
      hi = parse_char(P);
      if (hi < 0)
        return P->failed;
      if (hi < lo)
        return perr(P, "bad character range (end before start)");
    }
    if (n == 256)
      return perr(P, "character class with more than 256 ranges");
    r[n++] = (cprange){(uint32_t)lo, (uint32_t)hi};
  }
  if (P->p >= P->end)
    return perr(P, "unterminated character class");
  P->p++;
  if (n == 0 && !negate)
    return perr(P, "empty character class");
  return emit_ranges(P, seq, r, n, negate);
}

/* ---- sequences, alternatives, repetition -------------------------------------------------- */

static void skip_space(parser *P, int newline_ok) {
  while (P->p < P->end) {
    char c = *P->p;
    if (c == '#') {
      while (P->p < P->end && *P->p != '\n')
        P->p++;
    } else if (c == ' ' || c == '\t' || c == '\r') {
      P->p++;
    } else if (c == '\n' && newline_ok) {
      P->line++;
      P->p++;
    } else {
      break;
    }
  }
}

static int is_name_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
         c == '-' || c == '_';
}

static int parse_alternatives(parser *P, evec *body, int nested);

/* A rule made of elems [from, seq->n) of seq (moved out); returns its id. */
static int wrap_rule(parser *P, evec *seq, int from) {
  int rid = new_rule(P, NULL, 0);
  if (rid < 0)
    return rid;
  evec b = {0};
  for (int i = from; i < seq->n; i++)
    if (epush(P, &b, seq->e[i].type, seq->e[i].arg) < 0)
      break;
  epush(P, &b, PL_GE_END, 0);
  P->rules[rid].body = b;
  P->rules[rid].defined = 1;
  seq->n = from;
  return P->failed ? P->failed : rid;
}

/* rule ::= S rule | ""  (S = rule `s`) */
static int star_rule(parser *P, int s) {
  int rid = new_rule(P, NULL, 0);
  if (rid < 0)
    return rid;
  evec b = {0};
  epush(P, &b, PL_GE_RULE, s);
  epush(P, &b, PL_GE_RULE, rid);
  epush(P, &b, PL_GE_ALT, 0);
  epush(P, &b, PL_GE_END, 0);
  P->rules[rid].body = b;
  P->rules[rid].defined = 1;
  return P->failed ? P->failed : rid;
}

/* Apply a postfix operator to the last symbol seq[from..). */
static int repeat(parser *P, evec *seq, int from, long min, long max /* -1 = inf */) {
  int s;
  if (seq->n - from == 1 && seq->e[from].type == PL_GE_RULE) {
    s = seq->e[from].arg;
    seq->n = from;
  } else if ((s = wrap_rule(P, seq, from)) < 0) {
    return s;
  }
  for (long i = 0; i < min; i++)
    if (epush(P, seq, PL_GE_RULE, s) < 0)
      return P->failed;
  if (max < 0) {
    int st = star_rule(P, s);
    return st < 0 ? st : epush(P, seq, PL_GE_RULE, st);
  }
  /* up to max - min more: opt_k ::= S opt_{k-1} | "" , built inside out */
  int prev = -1;
  for (long k = 0; k < max - min; k++) {
    int rid = new_rule(P, NULL, 0);
    if (rid < 0)
      return rid;
    evec b = {0};
    epush(P, &b, PL_GE_RULE, s);
    if (prev >= 0)
      epush(P, &b, PL_GE_RULE, prev);
    epush(P, &b, PL_GE_ALT, 0);
    epush(P, &b, PL_GE_END, 0);
    P->rules[rid].body = b;
    P->rules[rid].defined = 1;
    if (P->failed)
      return P->failed;
    prev = rid;
  }
  return prev >= 0 ? epush(P, seq, PL_GE_RULE, prev) : 0;
}

static long parse_int(parser *P) {
  long v = 0;
  int any = 0;
  while (P->p < P->end && *P->p >= '0' && *P->p <= '9') {
    v = v * 10 + (*P->p++ - '0');
    any = 1;
    if (v > MAX_REPEAT)
      return perr(P, "repetition count above %d", MAX_REPEAT), -2;
  }
  return any ? v : -1;
}

static int parse_sequence(parser *P, evec *seq, int nested) {
  int last = -1;
  while (P->p < P->end && !P->failed) {
    char c = *P->p;
    if (c == '"') {
      last = seq->n;
      P->p++;
      while (P->p < P->end && *P->p != '"') {
        long cp = parse_char(P);
        if (cp < 0)
          return P->failed;
        uint8_t u[4];
        int k = utf8_encode((uint32_t)cp, u);
        for (int i = 0; i < k; i++) {
          int cl = byte_range_class(P, u[i], u[i]);
          if (cl < 0 || epush(P, seq, PL_GE_CHAR, cl) < 0)
            return P->failed;
        }
      }
      if (P->p >= P->end)
        return perr(P, "unterminated string literal");
      P->p++;
    } else if (c == '[') {
      last = seq->n;
      if (parse_class(P, seq) < 0)
        return P->failed;
    } else if (c == '.') {
      last = seq->n;
      P->p++;
      if (P->any_rule < 0) {
        cprange all = {0, 0x10FFFF};
        evec tmp = {0};
        if (emit_ranges(P, &tmp, &all, 1, 0) < 0) {
          pl_free(tmp.e);
          return P->failed;
        }
        P->any_rule = tmp.e[0].arg;
        pl_free(tmp.e);
      }
      if (epush(P, seq, PL_GE_RULE, P->any_rule) < 0)
        return P->failed;
    } else if (is_name_char(c)) {
      const char *s = P->p;
      while (P->p < P->end && is_name_char(*P->p))
        P->p++;
      const char *e = P->p;
      skip_space(P, 1);
      if (P->p + 2 < P->end && !memcmp(P->p, "::=", 3) && !nested) {
        P->p = s; /* the next rule starts: this sequence ended on the previous line */
        return 0;
      }
      P->p = e;
      last = seq->n;
      int r = find_rule(P, s, (size_t)(e - s));
      if (r < 0 || epush(P, seq, PL_GE_RULE, r) < 0)
        return P->failed;
    } else if (c == '(') {
      if (P->nesting == MAX_NESTING)
        return perr(P, "groups nested more than %d deep", MAX_NESTING);
      P->p++;
      last = seq->n;
      int rid = new_rule(P, NULL, 0);
      if (rid < 0)
        return rid;
      evec b = {0};
      skip_space(P, 1);
      P->nesting++;
      parse_alternatives(P, &b, 1);
      P->nesting--;
      P->rules[rid].body = b;
      P->rules[rid].defined = 1;
      if (P->failed)
        return P->failed;
      if (P->p >= P->end || *P->p != ')')
        return perr(P, "expected ')'");
      P->p++;
      if (epush(P, seq, PL_GE_RULE, rid) < 0)
        return P->failed;
    } else if (c == '*' || c == '+' || c == '?' || c == '{') {
      if (last < 0)
        return perr(P, "'%c' with nothing before it", c);
      P->p++;
      long mn = 0, mx = -1;
      if (c == '+') mn = 1;
      else if (c == '?') mx = 1;
      else if (c == '{') {
        skip_space(P, 1);
        mn = parse_int(P);
        if (mn < 0)
          return mn == -2 ? P->failed : perr(P, "expected a number after '{'");
        skip_space(P, 1);
        mx = mn;
        if (P->p < P->end && *P->p == ',') {
          P->p++;
          skip_space(P, 1);
          mx = parse_int(P);
          if (mx == -2)
            return P->failed;
          if (mx >= 0 && mx < mn)
            return perr(P, "bad repetition {%ld,%ld}", mn, mx);
        }
        skip_space(P, 1);
        if (P->p >= P->end || *P->p != '}')
          return perr(P, "expected '}'");
        P->p++;
      }
      if (repeat(P, seq, last, mn, mx) < 0)
        return P->failed;
      last = -1;
    } else {
      break;
    }
    skip_space(P, nested);
  }
  return P->failed;
}

static int parse_alternatives(parser *P, evec *body, int nested) {
  for (;;) {
    if (parse_sequence(P, body, nested) < 0)
      return P->failed;
    if (P->p < P->end && *P->p == '|') {
      P->p++;
      if (epush(P, body, PL_GE_ALT, 0) < 0)
        return P->failed;
      skip_space(P, 1);
      continue;
    }
    return epush(P, body, PL_GE_END, 0);
  }
}

/* ---- checks and flattening ------------------------------------------------------------------ */

/* Left recursion makes expansion loop; find it with the nullable rules. */
static int check_left_recursion(parser *P) {
  int n = P->n_rules;
  char *nullable = pl_calloc((size_t)n, 1);
  char *state = pl_calloc((size_t)n, 1);
  int *stack = pl_malloc((size_t)(n + 1) * sizeof(int) * 2);
  if (!nullable || !state || !stack) {
    pl_free(nullable); pl_free(state); pl_free(stack);
    return oom(P);
  }
  for (int changed = 1; changed;) {
    changed = 0;
    for (int r = 0; r < n; r++) {
      if (nullable[r])
        continue;
      int ok = 1;
      for (int i = 0; i < P->rules[r].body.n; i++) {
        pl_gelem e = P->rules[r].body.e[i];
        if (e.type == PL_GE_ALT || e.type == PL_GE_END) {
          if (ok) { nullable[r] = 1; changed = 1; break; }
          ok = 1;
        } else if (e.type == PL_GE_CHAR || !nullable[e.arg]) {
          ok = 0;
        }
      }
    }
  }
  /* DFS over "r may begin with s" edges; state 1 = on the path, 2 = done */
  int rc = 0;
  for (int r0 = 0; r0 < n && !rc; r0++) {
    if (state[r0])
      continue;
    int sp = 0;
    stack[0] = r0; stack[1] = 0; /* rule, element index to resume */
    state[r0] = 1;
    while (sp >= 0 && !rc) {
      int r = stack[2 * sp], i = stack[2 * sp + 1];
      evec *b = &P->rules[r].body;
      int pushed = 0;
      int at_start = 1;
      /* recompute "at start" for position i by scanning from the alternative's start */
      for (int k = 0; k < b->n && !pushed; k++) {
        pl_gelem e = b->e[k];
        if (e.type == PL_GE_ALT || e.type == PL_GE_END) { at_start = 1; continue; }
        if (!at_start) continue;
        if (e.type == PL_GE_CHAR) { at_start = 0; continue; }
        if (k >= i) {
          int s = e.arg;
          stack[2 * sp + 1] = k + 1;
          if (state[s] == 1) {
            const char *nm = P->rules[s].name;
            P->line = P->rules[s].ref_line;
            rc = perr(P, "rule '%s' is left-recursive (it can start with itself), which this "
                      "parser cannot match", nm ? nm : "(group)");
            break;
          }
          if (!state[s]) {
            state[s] = 1;
            sp++;
            stack[2 * sp] = s;
            stack[2 * sp + 1] = 0;
            pushed = 1;
          }
        }
        if (!nullable[e.arg]) at_start = 0;
      }
      if (!pushed && !rc) {
        state[r] = 2;
        sp--;
      }
    }
  }
  pl_free(nullable); pl_free(state); pl_free(stack);
  return rc;
}

static void parser_free(parser *P) {
  for (int i = 0; i < P->n_rules; i++) {
    pl_free(P->rules[i].name);
    pl_free(P->rules[i].body.e);
  }
  pl_free(P->rules);
  pl_free(P->classes);
}

void pl_grammar_free(pl_grammar *g) {
  if (!g)
    return;
  pl_gtables_clear(g);
  pl_free(g->elems);
  pl_free(g->classes);
  pl_free(g->alt_off);
  pl_free(g->alts);
  pl_free(g);
}

size_t pl_grammar_bytes(const pl_grammar *g) {
  return sizeof *g + (size_t)g->n_elems * sizeof(pl_gelem) +
         (size_t)g->n_classes * sizeof(pl_gclass) + g->table_bytes;
}

int pl_grammar_compile(const char *text, size_t len, pl_grammar **out) {
  *out = NULL;
  parser P = {.s = text, .end = text + len, .p = text, .line = 1, .any_rule = -1};
  memset(P.byte_class, -1, sizeof P.byte_class);
  skip_space(&P, 1);
  while (P.p < P.end && !P.failed) {
    const char *s = P.p;
    while (P.p < P.end && is_name_char(*P.p))
      P.p++;
    if (P.p == s) {
      perr(&P, "expected a rule name, got '%c'", *P.p);
      break;
    }
    size_t nlen = (size_t)(P.p - s);
    int r = find_rule(&P, s, nlen);
    if (r < 0)
      break;
    if (P.rules[r].defined) {
      perr(&P, "rule '%.*s' defined twice", (int)nlen, s);
      break;
    }
    skip_space(&P, 0);
    if (P.p + 3 > P.end || memcmp(P.p, "::=", 3) != 0) {
      perr(&P, "expected '::=' after '%.*s'", (int)nlen, s);
      break;
    }
    P.p += 3;
    skip_space(&P, 1);
    evec b = {0};
    parse_alternatives(&P, &b, 0);
    P.rules[r].body = b;
    P.rules[r].defined = 1;
    P.rules[r].ref_line = P.line;
    if (P.failed)
      break;
    if (P.p < P.end && *P.p != '\n' && !is_name_char(*P.p)) {
      perr(&P, "unexpected '%c'", *P.p);
      break;
    }
    skip_space(&P, 1);
  }
  int root = -1;
  for (int i = 0; !P.failed && i < P.n_rules; i++) {
    if (!P.rules[i].defined) {
      P.line = P.rules[i].ref_line;
      perr(&P, "undefined rule '%s'", P.rules[i].name);
    }
    if (P.rules[i].name && !strcmp(P.rules[i].name, "root"))
      root = i;
  }
  if (!P.failed && root < 0)
    P.failed = pl_fail(PL_EINVAL, "grammar: no 'root' rule");
  if (!P.failed)
    check_left_recursion(&P);
  if (P.failed) {
    parser_free(&P);
    return P.failed;
  }
  pl_grammar *g = pl_calloc(1, sizeof *g);
  long total = 0, nalts = 0;
  for (int i = 0; i < P.n_rules; i++) {
    total += P.rules[i].body.n;
    for (int k = 0; k < P.rules[i].body.n; k++)
      nalts += P.rules[i].body.e[k].type <= PL_GE_ALT;
  }
  if (g) {
    g->elems = pl_malloc((size_t)total * sizeof *g->elems);
    g->alt_off = pl_malloc((size_t)(P.n_rules + 1) * sizeof(int32_t));
    g->alts = pl_malloc((size_t)nalts * sizeof(int32_t));
  }
  if (!g || !g->elems || !g->alt_off || !g->alts) {
    pl_grammar_free(g);
    parser_free(&P);
    return pl_fail(PL_ENOMEM, "grammar: out of memory");
  }
  int pos = 0, na = 0;
  for (int r = 0; r < P.n_rules; r++) {
    g->alt_off[r] = na;
    g->alts[na++] = pos;
    for (int k = 0; k < P.rules[r].body.n; k++) {
      g->elems[pos++] = P.rules[r].body.e[k];
      if (P.rules[r].body.e[k].type == PL_GE_ALT)
        g->alts[na++] = pos;
    }
  }
  g->alt_off[P.n_rules] = na;
  g->n_elems = pos;
  g->n_rules = P.n_rules;
  g->root = root;
  g->classes = P.classes;
  g->n_classes = P.n_classes;
  P.classes = NULL;
  parser_free(&P);
  *out = g;
  return 0;
}
