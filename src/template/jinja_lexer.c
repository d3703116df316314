/* Jinja lexer (see jinja_lexer.h). Mirrors Jinja2's lexing rules: the root state looks for the
 * first `{{`, `{%` or `{#`; the text before it gets whitespace control (`-` strips all trailing
 * whitespace, lstrip_blocks strips a line's indentation before a block/comment tag); inside a
 * tag, the end marker is only recognised while brackets are balanced (so `{{ {'a': {}} }}`
 * works); trim_blocks drops one newline after `%}` and `#}`. Newlines are normalised to \n and a
 * single trailing newline of the template is dropped (keep_trailing_newline=False). */
#include "template/jinja_lexer.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "template/jinja_text.h"
#include "util/alloc.h"
#include "util/array.h"
#include "util/error.h"

#define PL_JLEX_MAX_BRACKETS 256

typedef struct lx {
  pl_jarena *a;
  const char *s;
  size_t n, pos;
  size_t line_pos; /* lines are counted lazily up to here */
  int line;
  pl_jtok *t;
  size_t nt, cap;
  int line_starting; /* the previous match ended with a newline (lstrip_blocks condition) */
} lx;

static const char *const op_text[] = {
    "+", "-", "*", "/", "//", "%", "**", "~", "[", "]", "(", ")", "{", "}",
    "==", "!=", ">", ">=", "<", "<=", "=", ".", ":", "|", ",", ";"};

const char *pl_jop_text(int op) {
  return op >= 0 && op < (int)(sizeof op_text / sizeof *op_text) ? op_text[op] : "?";
}

static int line_at(lx *x, size_t pos) {
  for (; x->line_pos < pos && x->line_pos < x->n; x->line_pos++)
    if (x->s[x->line_pos] == '\n')
      x->line++;
  return x->line;
}

static int lex_fail(lx *x, size_t pos, const char *msg, const char *detail) {
  int line = line_at(x, pos);
  if (detail)
    return pl_fail(PL_ETEMPLATE, "template line %d: %s '%s'", line, msg, detail);
  return pl_fail(PL_ETEMPLATE, "template line %d: %s", line, msg);
}

static pl_jtok *push(lx *x, int type, size_t pos) {
  if (pl_array_grow(&x->t, &x->cap, x->nt + 1, sizeof *x->t, 256))
    return NULL;
  pl_jtok *k = &x->t[x->nt++];
  memset(k, 0, sizeof *k);
  k->type = (uint8_t)type;
  k->line = line_at(x, pos);
  return k;
}

#define PUSH(var, type, pos)                                                                \
  pl_jtok *var = push(x, type, pos);                                                        \
  if (!var)                                                                                 \
  return pl_fail(PL_ENOMEM, "template: out of memory")

/* Python \s at s[i]: returns its byte length, 0 when not whitespace. */
static size_t space_at(const lx *x, size_t i) {
  if (i >= x->n)
    return 0;
  uint32_t cp;
  size_t j = pl_utf8_next(x->s, x->n, i, &cp);
  return pl_py_isspace(cp) ? j - i : 0;
}

static size_t skip_space(const lx *x, size_t i) {
  size_t k = 0;
  while ((k = space_at(x, i)) > 0)
    i += k;
  return i;
}

static int at(const lx *x, size_t i, const char *lit) {
  size_t k = strlen(lit);
  return i <= x->n && x->n - i >= k && memcmp(x->s + i, lit, k) == 0;
}

/* Emit the text s[from, to) as DATA after whitespace control for a tag with `sign` of `kind`
 * ('{', '%' or '#'). */
static int emit_text(lx *x, size_t from, size_t to, char sign, char kind) {
  size_t len = to - from;
  const char *t = x->s + from;
  if (sign == '-') {
    while (len > 0) {
      size_t p = pl_utf8_prev(t, len);
      uint32_t cp;
      pl_utf8_next(t, len, p, &cp);
      if (!pl_py_isspace(cp))
        break;
      len = p;
    }
  } else if (sign != '+' && kind != '{') {
    /* lstrip_blocks: drop the indentation of the tag's line if nothing else precedes it. */
    size_t lp = len;
    while (lp > 0 && t[lp - 1] != '\n')
      lp--;
    if ((lp > 0 || x->line_starting) && lp < len) {
      size_t i = from + lp;
      while (i < to && space_at(x, i))
        i += space_at(x, i);
      if (i >= to)
        len = lp;
    }
  }
  if (len == 0)
    return PL_OK;
  PUSH(k, PL_JT_DATA, from);
  k->s = t;
  k->n = len;
  return PL_OK;
}

static int is_digit(char c) { return c >= '0' && c <= '9'; }

/* (\d+_)*\d+ starting at i (s[i] must be a digit); returns the end. */
static size_t scan_digits(const lx *x, size_t i) {
  while (i < x->n) {
    if (is_digit(x->s[i]))
      i++;
    else if (x->s[i] == '_' && i + 1 < x->n && is_digit(x->s[i + 1]))
      i++;
    else
      break;
  }
  return i;
}

static int hexval(char c) {
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  if (c >= 'A' && c <= 'F')
    return c - 'A' + 10;
  return -1;
}

/* Number literal at x->pos (a digit). Jinja tries the float rule before the integer rule. */
static int lex_number(lx *x) {
  size_t st = x->pos, j = scan_digits(x, st), end = 0;
  int prev_dot = st > 0 && x->s[st - 1] == '.';
  if (!prev_dot) {
    size_t k = j;
    if (k + 1 < x->n && x->s[k] == '.' && is_digit(x->s[k + 1]))
      k = scan_digits(x, k + 1);
    if (k < x->n && (x->s[k] == 'e' || x->s[k] == 'E')) {
      size_t e = k + 1;
      if (e < x->n && (x->s[e] == '+' || x->s[e] == '-'))
        e++;
      if (e < x->n && is_digit(x->s[e]))
        end = scan_digits(x, e);
    }
    if (!end && j + 1 < x->n && x->s[j] == '.' && is_digit(x->s[j + 1]))
      end = scan_digits(x, j + 1);
  }
  if (end) {
    char buf[128];
    size_t m = 0;
    for (size_t i = st; i < end && m + 1 < sizeof buf; i++)
      if (x->s[i] != '_')
        buf[m++] = x->s[i];
    buf[m] = 0;
    PUSH(k, PL_JT_FLOAT, st);
    k->f = strtod(buf, NULL);
    x->pos = end;
    return PL_OK;
  }
  /* Integer: 0b / 0o / 0x prefixes, [1-9](_?\d)*, 0(_?0)* */
  int base = 10;
  size_t i = st;
  if (x->s[st] == '0' && st + 2 < x->n) {
    char p = (char)(x->s[st + 1] | 0x20);
    if (p == 'b' || p == 'o' || p == 'x') {
      int b = p == 'b' ? 2 : p == 'o' ? 8 : 16;
      size_t q = st + 2;
      if (q < x->n && x->s[q] == '_')
        q++;
      int d = q < x->n ? hexval(x->s[q]) : -1;
      if (d >= 0 && d < b) {
        base = b;
        i = st + 2;
      }
    }
  }
  uint64_t v = 0;
  int overflow = 0;
  if (base == 10 && x->s[st] == '0') {
    i = st + 1;
    while (i < x->n && (x->s[i] == '0' || (x->s[i] == '_' && i + 1 < x->n && x->s[i + 1] == '0')))
      i++;
  } else {
    while (i < x->n) {
      int d = hexval(x->s[i]);
      if (x->s[i] == '_' && i + 1 < x->n && hexval(x->s[i + 1]) >= 0 &&
          hexval(x->s[i + 1]) < base) {
        i++;
        continue;
      }
      if (d < 0 || d >= base)
        break;
      if (v > (UINT64_MAX - (uint64_t)d) / (uint64_t)base)
        overflow = 1;
      v = v * (uint64_t)base + (uint64_t)d;
      i++;
    }
  }
  if (overflow || v > (uint64_t)INT64_MAX)
    return lex_fail(x, st, "integer literal too large", NULL);
  PUSH(k, PL_JT_INT, st);
  k->i = (int64_t)v;
  x->pos = i;
  return PL_OK;
}

/* String literal: decode Python escapes (Jinja uses the unicode-escape codec). */
static int lex_string(lx *x) {
  size_t st = x->pos;
  char q = x->s[st];
  size_t i = st + 1;
  while (i < x->n && x->s[i] != q) {
    if (x->s[i] == '\\' && i + 1 < x->n)
      i++;
    i++;
  }
  if (i >= x->n)
    return lex_fail(x, st, "unterminated string literal", NULL);
  size_t end = i;
  char *out = pl_jarena_alloc(x->a, end - st + 1);
  if (!out)
    return pl_fail(PL_ENOMEM, "template: out of memory");
  size_t m = 0;
  for (i = st + 1; i < end;) {
    char c = x->s[i];
    if (c != '\\') {
      out[m++] = c;
      i++;
      continue;
    }
    char e = x->s[i + 1];
    i += 2;
    uint32_t cp = 0;
    int digits = 0;
    switch (e) {
    case '\\': out[m++] = '\\'; continue;
    case '\'': out[m++] = '\''; continue;
    case '"': out[m++] = '"'; continue;
    case 'a': out[m++] = '\a'; continue;
    case 'b': out[m++] = '\b'; continue;
    case 'f': out[m++] = '\f'; continue;
    case 'n': out[m++] = '\n'; continue;
    case 'r': out[m++] = '\r'; continue;
    case 't': out[m++] = '\t'; continue;
    case 'v': out[m++] = '\v'; continue;
    case '\n': continue; /* line continuation */
    case 'x': digits = 2; break;
    case 'u': digits = 4; break;
    case 'U': digits = 8; break;
    case 'N':
      return lex_fail(x, st, "unsupported string escape", "\\N{...}");
    default:
      if (e >= '0' && e <= '7') {
        cp = (uint32_t)(e - '0');
        for (int k = 0; k < 2 && i < end && x->s[i] >= '0' && x->s[i] <= '7'; k++)
          cp = cp * 8 + (uint32_t)(x->s[i++] - '0');
        break;
      }
      out[m++] = '\\'; /* unknown escapes stay as written */
      i--;
      continue;
    }
    for (int k = 0; k < digits; k++) {
      int d = i < end ? hexval(x->s[i]) : -1;
      if (d < 0)
        return lex_fail(x, st, "truncated \\x/\\u escape in string literal", NULL);
      cp = cp * 16 + (uint32_t)d;
      i++;
    }
    if (cp > 0x10FFFF || (cp >= 0xD800 && cp < 0xE000))
      cp = 0xFFFD;
    char tmp[4];
    size_t k = pl_utf8_encode(cp, tmp);
    memcpy(out + m, tmp, k); /* the escape text was at least as long as its UTF-8 */
    m += k;
  }
  out[m] = 0;
  PUSH(k, PL_JT_STRING, st);
  k->s = out;
  k->n = m;
  x->pos = end + 1;
  return PL_OK;
}

static int lex_operator(lx *x) {
  static const struct {
    const char *t;
    int op;
  } ops[] = {{"//", PL_JOP_FLOORDIV}, {"**", PL_JOP_POW}, {"==", PL_JOP_EQ}, {"!=", PL_JOP_NE},
             {">=", PL_JOP_GE},       {"<=", PL_JOP_LE},  {"+", PL_JOP_ADD},  {"-", PL_JOP_SUB},
             {"*", PL_JOP_MUL},       {"/", PL_JOP_DIV},  {"%", PL_JOP_MOD},  {"~", PL_JOP_TILDE},
             {"[", PL_JOP_LBRACKET},  {"]", PL_JOP_RBRACKET}, {"(", PL_JOP_LPAREN},
             {")", PL_JOP_RPAREN},    {"{", PL_JOP_LBRACE}, {"}", PL_JOP_RBRACE}, {">", PL_JOP_GT},
             {"<", PL_JOP_LT},        {"=", PL_JOP_ASSIGN}, {".", PL_JOP_DOT}, {":", PL_JOP_COLON},
             {"|", PL_JOP_PIPE},      {",", PL_JOP_COMMA}, {";", PL_JOP_SEMICOLON}};
  for (size_t i = 0; i < sizeof ops / sizeof *ops; i++)
    if (at(x, x->pos, ops[i].t)) {
      PUSH(k, PL_JT_OP, x->pos);
      k->op = (uint8_t)ops[i].op;
      x->pos += strlen(ops[i].t);
      return PL_OK;
    }
  char c[8] = {0};
  uint32_t cp;
  size_t j = pl_utf8_next(x->s, x->n, x->pos, &cp);
  memcpy(c, x->s + x->pos, j - x->pos < 7 ? j - x->pos : 7);
  return lex_fail(x, x->pos, "unexpected character", c);
}

/* Tokens of one `{{ }}` or `{% %}` tag, from x->pos up to and including its end marker. */
static int lex_tag(lx *x, char kind, size_t tag_pos) {
  char stack[PL_JLEX_MAX_BRACKETS];
  int depth = 0;
  for (;;) {
    if (x->pos >= x->n)
      return lex_fail(x, tag_pos, kind == '%' ? "unclosed block tag '{%'" : "unclosed '{{'",
                      NULL);
    size_t p = x->pos;
    if (depth == 0) {
      size_t end = 0;
      if (kind == '%') {
        if (at(x, p, "+%}"))
          end = p + 3;
        else if (at(x, p, "-%}"))
          end = skip_space(x, p + 3);
        else if (at(x, p, "%}"))
          end = p + 2 + (p + 2 < x->n && x->s[p + 2] == '\n'); /* trim_blocks */
      } else {
        if (at(x, p, "-}}"))
          end = skip_space(x, p + 3);
        else if (at(x, p, "}}"))
          end = p + 2;
      }
      if (end) {
        PUSH(k, kind == '%' ? PL_JT_BLOCK_END : PL_JT_VAR_END, p);
        (void)k;
        x->line_starting = x->s[end - 1] == '\n';
        x->pos = end;
        return PL_OK;
      }
    }
    char c = x->s[p];
    size_t sp = space_at(x, p);
    if (sp) {
      x->pos = skip_space(x, p);
    } else if (is_digit(c)) {
      PL_TRY(lex_number(x));
    } else if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_') {
      size_t e = p + 1;
      while (e < x->n && ((x->s[e] >= 'a' && x->s[e] <= 'z') || (x->s[e] >= 'A' && x->s[e] <= 'Z') ||
                          is_digit(x->s[e]) || x->s[e] == '_'))
        e++;
      char *name = pl_jarena_strndup(x->a, x->s + p, e - p);
      if (!name)
        return pl_fail(PL_ENOMEM, "template: out of memory");
      PUSH(k, PL_JT_NAME, p);
      k->s = name;
      k->n = e - p;
      x->pos = e;
    } else if (c == '\'' || c == '"') {
      PL_TRY(lex_string(x));
    } else {
      PL_TRY(lex_operator(x));
      int op = x->t[x->nt - 1].op;
      if (op == PL_JOP_LBRACE || op == PL_JOP_LPAREN || op == PL_JOP_LBRACKET) {
        if (depth == PL_JLEX_MAX_BRACKETS)
          return lex_fail(x, p, "brackets nested too deeply", NULL);
        stack[depth++] = op == PL_JOP_LBRACE ? '}' : op == PL_JOP_LPAREN ? ')' : ']';
      } else if (op == PL_JOP_RBRACE || op == PL_JOP_RPAREN || op == PL_JOP_RBRACKET) {
        char want = op == PL_JOP_RBRACE ? '}' : op == PL_JOP_RPAREN ? ')' : ']';
        char got[2] = {want, 0};
        if (depth == 0 || stack[depth - 1] != want)
          return lex_fail(x, p, "unexpected", got);
        depth--;
      }
    }
  }
}

/* `{% raw %}` at x->s[tag_pos]: returns the end of the opening tag, or 0 when it is not raw. */
static size_t raw_open_end(const lx *x, size_t after_sign) {
  size_t i = skip_space(x, after_sign);
  if (!at(x, i, "raw"))
    return 0;
  i = skip_space(x, i + 3);
  if (at(x, i, "-%}"))
    return skip_space(x, i + 3);
  if (at(x, i, "%}"))
    return i + 2;
  return 0;
}

static int lex_raw(lx *x, size_t body, size_t tag_pos) {
  for (size_t i = body; i + 1 < x->n; i++) {
    if (x->s[i] != '{' || x->s[i + 1] != '%')
      continue;
    size_t j = i + 2;
    char sign = 0;
    if (j < x->n && (x->s[j] == '-' || x->s[j] == '+'))
      sign = x->s[j++];
    j = skip_space(x, j);
    if (!at(x, j, "endraw"))
      continue;
    j = skip_space(x, j + 6);
    size_t end = 0;
    if (at(x, j, "+%}"))
      end = j + 3;
    else if (at(x, j, "-%}"))
      end = skip_space(x, j + 3);
    else if (at(x, j, "%}"))
      end = j + 2 + (j + 2 < x->n && x->s[j + 2] == '\n');
    if (!end)
      continue;
    PL_TRY(emit_text(x, body, i, sign, '%'));
    x->line_starting = x->s[end - 1] == '\n';
    x->pos = end;
    return PL_OK;
  }
  return lex_fail(x, tag_pos, "missing end of raw directive", NULL);
}

static int lex_comment(lx *x, size_t body, size_t tag_pos) {
  for (size_t i = body; i + 1 < x->n; i++) {
    size_t end = 0;
    if ((x->s[i] == '+' || x->s[i] == '-') && at(x, i + 1, "#}"))
      end = x->s[i] == '-' ? skip_space(x, i + 3) : i + 3;
    else if (at(x, i, "#}"))
      end = i + 2 + (i + 2 < x->n && x->s[i + 2] == '\n');
    if (end) {
      x->line_starting = x->s[end - 1] == '\n';
      x->pos = end;
      return PL_OK;
    }
  }
  return lex_fail(x, tag_pos, "missing end of comment tag", NULL);
}

static int lex_all(lx *x) {
  while (x->pos < x->n) {
    size_t t = x->pos;
    char kind = 0;
    for (; t + 1 < x->n; t++)
      if (x->s[t] == '{' && (x->s[t + 1] == '{' || x->s[t + 1] == '%' || x->s[t + 1] == '#')) {
        kind = x->s[t + 1];
        break;
      }
    if (!kind) {
      PUSH(k, PL_JT_DATA, x->pos);
      k->s = x->s + x->pos;
      k->n = x->n - x->pos;
      x->pos = x->n;
      break;
    }
    size_t after = t + 2;
    char sign = 0;
    if (after < x->n && (x->s[after] == '-' || x->s[after] == '+'))
      sign = x->s[after++];
    size_t raw_end = kind == '%' ? raw_open_end(x, after) : 0;
    PL_TRY(emit_text(x, x->pos, t, sign, kind));
    x->pos = after;
    if (raw_end) {
      PL_TRY(lex_raw(x, raw_end, t));
    } else if (kind == '#') {
      PL_TRY(lex_comment(x, after, t));
    } else {
      PUSH(k, kind == '%' ? PL_JT_BLOCK_BEGIN : PL_JT_VAR_BEGIN, t);
      (void)k;
      PL_TRY(lex_tag(x, kind, t));
    }
  }
  PUSH(k, PL_JT_EOF, x->n);
  (void)k;
  return PL_OK;
}

int pl_jinja_lex(pl_jarena *a, const char *src, size_t len, pl_jtok **toks, size_t *ntoks) {
  *toks = NULL;
  *ntoks = 0;
  /* Normalise \r\n and \r to \n; drop one trailing newline (keep_trailing_newline=False). */
  char *s = pl_jarena_alloc(a, len + 1);
  if (!s)
    return pl_fail(PL_ENOMEM, "template: out of memory");
  size_t n = 0;
  for (size_t i = 0; i < len; i++) {
    if (src[i] == '\r') {
      s[n++] = '\n';
      if (i + 1 < len && src[i + 1] == '\n')
        i++;
    } else {
      s[n++] = src[i];
    }
  }
  if (n > 0 && s[n - 1] == '\n')
    n--;
  s[n] = 0;
  lx x = {.a = a, .s = s, .n = n, .line = 1, .line_starting = 1};
  int rc = lex_all(&x);
  if (rc < 0) {
    pl_free(x.t);
    return rc;
  }
  *toks = x.t;
  *ntoks = x.nt;
  return PL_OK;
}
