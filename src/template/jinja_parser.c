/* Recursive-descent parser for the Jinja subset (see jinja_ast.h). Structure and precedence
 * follow Jinja2's parser: statements are dispatched on the tag name, expressions go
 * condexpr -> or -> and -> not -> compare -> math1 (+ -) -> concat (~) -> math2 (* / // %) ->
 * pow -> unary -> primary, with postfix (. [] ()) and filter/test chains after each unary. */
#include <string.h>

#include "template/jinja_ast.h"
#include "template/jinja_eval.h"
#include "util/error.h"

typedef struct ps {
  pl_jarena *a;
  const pl_jtok *t;
  size_t n, i;
  int depth;
  int loop_depth;
} ps;

typedef struct {
  void **v;
  size_t n, cap;
} vec;

static const pl_jtok *cur(const ps *p) { return &p->t[p->i < p->n ? p->i : p->n - 1]; }
static const pl_jtok *peek(const ps *p, size_t k) {
  return &p->t[p->i + k < p->n ? p->i + k : p->n - 1];
}
static void adv(ps *p) {
  if (p->i + 1 < p->n)
    p->i++;
}
static int is_op(const pl_jtok *t, int op) { return t->type == PL_JT_OP && t->op == op; }
static int is_name(const pl_jtok *t, const char *s) {
  return t->type == PL_JT_NAME && strcmp(t->s, s) == 0;
}

static const char *describe(const pl_jtok *t, char *buf, size_t cap) {
  switch (t->type) {
  case PL_JT_EOF: return "end of template";
  case PL_JT_DATA: return "template data";
  case PL_JT_VAR_BEGIN: return "'{{'";
  case PL_JT_VAR_END: return "end of print statement '}}'";
  case PL_JT_BLOCK_BEGIN: return "'{%'";
  case PL_JT_BLOCK_END: return "end of statement block '%}'";
  case PL_JT_STRING: return "string literal";
  case PL_JT_INT: return "integer";
  case PL_JT_FLOAT: return "float";
  case PL_JT_NAME: snprintf(buf, cap, "'%s'", t->s); return buf;
  case PL_JT_OP: snprintf(buf, cap, "'%s'", pl_jop_text(t->op)); return buf;
  default: return "token";
  }
}

static int perr(const ps *p, const char *msg) {
  char b[96];
  return pl_fail(PL_ETEMPLATE, "template line %d: %s (got %s)", cur(p)->line, msg,
                 describe(cur(p), b, sizeof b));
}

static int oom(void) { return pl_fail(PL_ENOMEM, "template: out of memory"); }

static pl_jnode *mk(ps *p, int kind, int line) {
  pl_jnode *n = pl_jarena_calloc(p->a, sizeof *n);
  if (n) {
    n->kind = (uint8_t)kind;
    n->line = line;
  }
  return n;
}

#define MK(var, kind, line)                                                                 \
  pl_jnode *var = mk(p, kind, line);                                                        \
  if (!var)                                                                                 \
  return oom()

static int vpush(ps *p, vec *v, void *x) {
  if (v->n == v->cap) {
    size_t cap = v->cap ? v->cap * 2 : 4;
    void **nv = pl_jarena_alloc(p->a, cap * sizeof *nv);
    if (!nv)
      return oom();
    if (v->n)
      memcpy(nv, v->v, v->n * sizeof *nv);
    v->v = nv;
    v->cap = cap;
  }
  v->v[v->n++] = x;
  return PL_OK;
}

static int expect_op(ps *p, int op) {
  if (!is_op(cur(p), op)) {
    char m[64];
    snprintf(m, sizeof m, "expected '%s'", pl_jop_text(op));
    return perr(p, m);
  }
  adv(p);
  return PL_OK;
}

static int expect_type(ps *p, int type, const char *what) {
  if (cur(p)->type != type) {
    char m[96];
    snprintf(m, sizeof m, "expected %s", what);
    return perr(p, m);
  }
  adv(p);
  return PL_OK;
}

static int expect_block_end(ps *p) { return expect_type(p, PL_JT_BLOCK_END, "end of statement block '%}'"); }

static int enter(ps *p) {
  if (++p->depth > PL_JINJA_MAX_NEST)
    return pl_fail(PL_ETEMPLATE, "template line %d: nested too deeply (limit %d)", cur(p)->line,
                   PL_JINJA_MAX_NEST);
  return PL_OK;
}

static int parse_expression(ps *p, int with_condexpr, pl_jnode **out);
static int parse_unary(ps *p, int with_filter, pl_jnode **out);
static int parse_primary(ps *p, pl_jnode **out);
static int parse_postfix(ps *p, pl_jnode **node);
static int parse_filter_chain(ps *p, pl_jnode **node, int start_inline);

/* Tuple or single expression. simplified: elements are primaries (assignment targets). */
static int parse_tuple(ps *p, int simplified, int with_condexpr, const char *extra_end,
                       int explicit_parens, pl_jnode **out) {
  int line = cur(p)->line;
  vec args = {0};
  int is_tuple = 0;
  for (;;) {
    if (args.n)
      PL_TRY(expect_op(p, PL_JOP_COMMA));
    const pl_jtok *t = cur(p);
    if (t->type == PL_JT_VAR_END || t->type == PL_JT_BLOCK_END || is_op(t, PL_JOP_RPAREN) ||
        (extra_end && is_name(t, extra_end)))
      break;
    pl_jnode *e;
    if (simplified)
      PL_TRY(parse_primary(p, &e));
    else
      PL_TRY(parse_expression(p, with_condexpr, &e));
    PL_TRY(vpush(p, &args, e));
    if (is_op(cur(p), PL_JOP_COMMA))
      is_tuple = 1;
    else
      break;
  }
  if (!is_tuple) {
    if (args.n) {
      *out = args.v[0];
      return PL_OK;
    }
    if (!explicit_parens)
      return perr(p, "expected an expression");
  }
  MK(n, PL_JN_TUPLE, line);
  n->kids = (pl_jnode **)args.v;
  n->nkids = args.n;
  *out = n;
  return PL_OK;
}

static int parse_call_args(ps *p, pl_jnode *n) {
  vec args = {0}, kw = {0}, kwn = {0};
  PL_TRY(expect_op(p, PL_JOP_LPAREN));
  while (!is_op(cur(p), PL_JOP_RPAREN)) {
    if (args.n || kw.n) {
      PL_TRY(expect_op(p, PL_JOP_COMMA));
      if (is_op(cur(p), PL_JOP_RPAREN))
        break;
    }
    if (is_op(cur(p), PL_JOP_MUL) || is_op(cur(p), PL_JOP_POW))
      return perr(p, "unsupported: *args / **kwargs in calls");
    pl_jnode *e;
    if (cur(p)->type == PL_JT_NAME && is_op(peek(p, 1), PL_JOP_ASSIGN)) {
      const char *key = cur(p)->s;
      adv(p);
      adv(p);
      PL_TRY(parse_expression(p, 1, &e));
      PL_TRY(vpush(p, &kwn, (void *)key));
      PL_TRY(vpush(p, &kw, e));
    } else {
      if (kw.n)
        return perr(p, "positional argument follows keyword argument");
      PL_TRY(parse_expression(p, 1, &e));
      PL_TRY(vpush(p, &args, e));
    }
  }
  PL_TRY(expect_op(p, PL_JOP_RPAREN));
  n->kids = (pl_jnode **)args.v;
  n->nkids = args.n;
  n->kw = (pl_jnode **)kw.v;
  n->kwn = (const char **)kwn.v;
  n->nkw = kw.n;
  return PL_OK;
}

/* Dotted name after `|` or `is` (Jinja allows `a.b` names for filters and tests). */
static int parse_dotted(ps *p, const char **out) {
  if (cur(p)->type != PL_JT_NAME)
    return perr(p, "expected a filter or test name");
  const char *name = cur(p)->s;
  adv(p);
  while (is_op(cur(p), PL_JOP_DOT) && peek(p, 1)->type == PL_JT_NAME) {
    size_t a = strlen(name), b = strlen(peek(p, 1)->s);
    char *s = pl_jarena_alloc(p->a, a + b + 2);
    if (!s)
      return oom();
    memcpy(s, name, a);
    s[a] = '.';
    memcpy(s + a + 1, peek(p, 1)->s, b + 1);
    name = s;
    adv(p);
    adv(p);
  }
  *out = name;
  return PL_OK;
}

static int parse_filter(ps *p, pl_jnode *input, pl_jnode **out) {
  int line = cur(p)->line;
  MK(n, PL_JN_FILTER, line);
  PL_TRY(parse_dotted(p, &n->name));
  n->impl = (const void *)pl_jinja_filter_lookup(n->name);
  if (!n->impl)
    return pl_fail(PL_ETEMPLATE, "template line %d: unsupported filter '%s'", line, n->name);
  n->a = input;
  if (is_op(cur(p), PL_JOP_LPAREN))
    PL_TRY(parse_call_args(p, n));
  *out = n;
  return PL_OK;
}

static int parse_test(ps *p, pl_jnode *input, pl_jnode **out) {
  int line = cur(p)->line;
  adv(p); /* 'is' */
  MK(n, PL_JN_TEST, line);
  if (is_name(cur(p), "not")) {
    n->flag = 1;
    adv(p);
  }
  PL_TRY(parse_dotted(p, &n->name));
  n->impl = (const void *)pl_jinja_test_lookup(n->name);
  if (!n->impl)
    return pl_fail(PL_ETEMPLATE, "template line %d: unsupported test '%s'", line, n->name);
  n->a = input;
  const pl_jtok *t = cur(p);
  if (is_op(t, PL_JOP_LPAREN)) {
    PL_TRY(parse_call_args(p, n));
  } else if ((t->type == PL_JT_NAME || t->type == PL_JT_STRING || t->type == PL_JT_INT ||
              t->type == PL_JT_FLOAT || is_op(t, PL_JOP_LBRACKET) || is_op(t, PL_JOP_LBRACE)) &&
             !is_name(t, "else") && !is_name(t, "or") && !is_name(t, "and")) {
    if (is_name(t, "is"))
      return perr(p, "cannot chain multiple tests with 'is'");
    pl_jnode *arg;
    PL_TRY(parse_primary(p, &arg));
    PL_TRY(parse_postfix(p, &arg));
    n->kids = pl_jarena_alloc(p->a, sizeof(pl_jnode *));
    if (!n->kids)
      return oom();
    n->kids[0] = arg;
    n->nkids = 1;
  }
  *out = n;
  return PL_OK;
}

/* One subscript element: an expression or a slice a:b:c (returned as a SLICE without a). */
static int parse_subscribed(ps *p, pl_jnode **out) {
  int line = cur(p)->line;
  pl_jnode *parts[3] = {NULL, NULL, NULL};
  if (is_op(cur(p), PL_JOP_COLON)) {
    adv(p);
  } else {
    pl_jnode *e;
    PL_TRY(parse_expression(p, 1, &e));
    if (!is_op(cur(p), PL_JOP_COLON)) {
      *out = e;
      return PL_OK;
    }
    adv(p);
    parts[0] = e;
  }
  const pl_jtok *t = cur(p);
  if (!is_op(t, PL_JOP_COLON) && !is_op(t, PL_JOP_RBRACKET) && !is_op(t, PL_JOP_COMMA))
    PL_TRY(parse_expression(p, 1, &parts[1]));
  if (is_op(cur(p), PL_JOP_COLON)) {
    adv(p);
    t = cur(p);
    if (!is_op(t, PL_JOP_RBRACKET) && !is_op(t, PL_JOP_COMMA))
      PL_TRY(parse_expression(p, 1, &parts[2]));
  }
  MK(n, PL_JN_SLICE, line);
  n->b = parts[0];
  n->c = parts[1];
  n->d = parts[2];
  *out = n;
  return PL_OK;
}

static int parse_subscript(ps *p, pl_jnode **node) {
  const pl_jtok *t = cur(p);
  int line = t->line;
  if (is_op(t, PL_JOP_DOT)) {
    adv(p);
    t = cur(p);
    if (t->type == PL_JT_NAME) {
      MK(n, PL_JN_ATTR, line);
      n->a = *node;
      n->name = t->s;
      adv(p);
      *node = n;
      return PL_OK;
    }
    if (t->type == PL_JT_INT) {
      MK(k, PL_JN_LIT, line);
      k->lit = pl_jv_int(t->i);
      MK(n, PL_JN_ITEM, line);
      n->a = *node;
      n->b = k;
      adv(p);
      *node = n;
      return PL_OK;
    }
    return perr(p, "expected a name or number after '.'");
  }
  adv(p); /* [ */
  vec args = {0};
  while (!is_op(cur(p), PL_JOP_RBRACKET)) {
    if (args.n)
      PL_TRY(expect_op(p, PL_JOP_COMMA));
    pl_jnode *e = NULL;
    PL_TRY(parse_subscribed(p, &e));
    PL_TRY(vpush(p, &args, e));
  }
  PL_TRY(expect_op(p, PL_JOP_RBRACKET));
  if (args.n != 1) {
    for (size_t i = 0; i < args.n; i++)
      if (((pl_jnode *)args.v[i])->kind == PL_JN_SLICE)
        return pl_fail(PL_ETEMPLATE, "template line %d: unsupported multi-dimensional slice",
                       line);
    if (args.n == 0)
      return pl_fail(PL_ETEMPLATE, "template line %d: empty subscript", line);
  }
  pl_jnode *arg;
  if (args.n == 1) {
    arg = args.v[0];
  } else {
    MK(tu, PL_JN_TUPLE, line);
    tu->kids = (pl_jnode **)args.v;
    tu->nkids = args.n;
    arg = tu;
  }
  if (arg->kind == PL_JN_SLICE && !arg->a) {
    arg->a = *node;
    *node = arg;
    return PL_OK;
  }
  MK(n, PL_JN_ITEM, line);
  n->a = *node;
  n->b = arg;
  *node = n;
  return PL_OK;
}

static int parse_call(ps *p, pl_jnode **node) {
  MK(n, PL_JN_CALL, cur(p)->line);
  n->a = *node;
  PL_TRY(parse_call_args(p, n));
  *node = n;
  return PL_OK;
}

static int parse_postfix(ps *p, pl_jnode **node) {
  for (;;) {
    const pl_jtok *t = cur(p);
    if (is_op(t, PL_JOP_DOT) || is_op(t, PL_JOP_LBRACKET))
      PL_TRY(parse_subscript(p, node));
    else if (is_op(t, PL_JOP_LPAREN))
      PL_TRY(parse_call(p, node));
    else
      return PL_OK;
  }
}

static int parse_filter_expr(ps *p, pl_jnode **node) {
  for (;;) {
    const pl_jtok *t = cur(p);
    if (is_op(t, PL_JOP_PIPE)) {
      adv(p);
      PL_TRY(parse_filter(p, *node, node));
    } else if (is_name(t, "is")) {
      PL_TRY(parse_test(p, *node, node));
    } else if (is_op(t, PL_JOP_LPAREN)) {
      PL_TRY(parse_call(p, node));
    } else {
      return PL_OK;
    }
  }
}

/* `name(args)|name2...` as used by {% filter %} and block {% set x | f %}: the innermost
 * filter has a == NULL (its input is the captured body). */
static int parse_filter_chain(ps *p, pl_jnode **node, int start_inline) {
  pl_jnode *n = NULL;
  for (;;) {
    if (!start_inline || n) {
      if (!is_op(cur(p), PL_JOP_PIPE))
        break;
      adv(p);
    }
    PL_TRY(parse_filter(p, n, &n));
  }
  *node = n;
  return PL_OK;
}

static int parse_list(ps *p, pl_jnode **out) {
  MK(n, PL_JN_LIST, cur(p)->line);
  adv(p);
  vec items = {0};
  while (!is_op(cur(p), PL_JOP_RBRACKET)) {
    if (items.n)
      PL_TRY(expect_op(p, PL_JOP_COMMA));
    if (is_op(cur(p), PL_JOP_RBRACKET))
      break;
    pl_jnode *e;
    PL_TRY(parse_expression(p, 1, &e));
    PL_TRY(vpush(p, &items, e));
  }
  PL_TRY(expect_op(p, PL_JOP_RBRACKET));
  n->kids = (pl_jnode **)items.v;
  n->nkids = items.n;
  *out = n;
  return PL_OK;
}

static int parse_dict(ps *p, pl_jnode **out) {
  MK(n, PL_JN_DICT, cur(p)->line);
  adv(p);
  vec keys = {0}, vals = {0};
  while (!is_op(cur(p), PL_JOP_RBRACE)) {
    if (keys.n)
      PL_TRY(expect_op(p, PL_JOP_COMMA));
    if (is_op(cur(p), PL_JOP_RBRACE))
      break;
    pl_jnode *k, *v;
    PL_TRY(parse_expression(p, 1, &k));
    PL_TRY(expect_op(p, PL_JOP_COLON));
    PL_TRY(parse_expression(p, 1, &v));
    PL_TRY(vpush(p, &keys, k));
    PL_TRY(vpush(p, &vals, v));
  }
  PL_TRY(expect_op(p, PL_JOP_RBRACE));
  n->kids = (pl_jnode **)keys.v;
  n->nkids = keys.n;
  n->kw = (pl_jnode **)vals.v;
  n->nkw = vals.n;
  *out = n;
  return PL_OK;
}

static int parse_primary(ps *p, pl_jnode **out) {
  PL_TRY(enter(p));
  const pl_jtok *t = cur(p);
  int line = t->line;
  if (t->type == PL_JT_NAME) {
    MK(n, PL_JN_LIT, line);
    if (!strcmp(t->s, "true") || !strcmp(t->s, "True"))
      n->lit = pl_jv_bool(1);
    else if (!strcmp(t->s, "false") || !strcmp(t->s, "False"))
      n->lit = pl_jv_bool(0);
    else if (!strcmp(t->s, "none") || !strcmp(t->s, "None"))
      n->lit = pl_jv_none();
    else {
      n->kind = PL_JN_NAME;
      n->name = t->s;
    }
    adv(p);
    *out = n;
  } else if (t->type == PL_JT_STRING) {
    /* Adjacent string literals concatenate, as in Python. */
    size_t total = 0, k = 0;
    while (peek(p, k)->type == PL_JT_STRING)
      total += peek(p, k++)->n;
    const char *s = t->s;
    if (k > 1) {
      char *buf = pl_jarena_alloc(p->a, total + 1);
      if (!buf)
        return oom();
      size_t m = 0;
      for (size_t j = 0; j < k; j++) {
        memcpy(buf + m, peek(p, j)->s, peek(p, j)->n);
        m += peek(p, j)->n;
      }
      buf[m] = 0;
      s = buf;
    }
    MK(n, PL_JN_LIT, line);
    n->lit = pl_jv_str(s, total);
    for (size_t j = 0; j < k; j++)
      adv(p);
    *out = n;
  } else if (t->type == PL_JT_INT || t->type == PL_JT_FLOAT) {
    MK(n, PL_JN_LIT, line);
    n->lit = t->type == PL_JT_INT ? pl_jv_int(t->i) : pl_jv_float(t->f);
    adv(p);
    *out = n;
  } else if (is_op(t, PL_JOP_LPAREN)) {
    adv(p);
    PL_TRY(parse_tuple(p, 0, 1, NULL, 1, out));
    PL_TRY(expect_op(p, PL_JOP_RPAREN));
  } else if (is_op(t, PL_JOP_LBRACKET)) {
    PL_TRY(parse_list(p, out));
  } else if (is_op(t, PL_JOP_LBRACE)) {
    PL_TRY(parse_dict(p, out));
  } else {
    return perr(p, "unexpected token in expression");
  }
  p->depth--;
  return PL_OK;
}

static int parse_unary(ps *p, int with_filter, pl_jnode **out) {
  PL_TRY(enter(p));
  const pl_jtok *t = cur(p);
  pl_jnode *node;
  if (is_op(t, PL_JOP_SUB) || is_op(t, PL_JOP_ADD)) {
    MK(n, is_op(t, PL_JOP_SUB) ? PL_JN_NEG : PL_JN_POS, t->line);
    adv(p);
    PL_TRY(parse_unary(p, 0, &n->a));
    node = n;
  } else {
    PL_TRY(parse_primary(p, &node));
  }
  PL_TRY(parse_postfix(p, &node));
  if (with_filter)
    PL_TRY(parse_filter_expr(p, &node));
  p->depth--;
  *out = node;
  return PL_OK;
}

static int binop(ps *p, int op, int line, pl_jnode *l, pl_jnode *r, pl_jnode **out) {
  MK(n, PL_JN_BINOP, line);
  n->op = (uint8_t)op;
  n->a = l;
  n->b = r;
  *out = n;
  return PL_OK;
}

static int parse_pow(ps *p, pl_jnode **out) {
  PL_TRY(parse_unary(p, 1, out));
  while (is_op(cur(p), PL_JOP_POW)) {
    int line = cur(p)->line;
    adv(p);
    pl_jnode *r;
    PL_TRY(parse_unary(p, 1, &r));
    PL_TRY(binop(p, PL_JOP_POW, line, *out, r, out));
  }
  return PL_OK;
}

static int parse_math2(ps *p, pl_jnode **out) {
  PL_TRY(parse_pow(p, out));
  for (;;) {
    const pl_jtok *t = cur(p);
    if (!(is_op(t, PL_JOP_MUL) || is_op(t, PL_JOP_DIV) || is_op(t, PL_JOP_FLOORDIV) ||
          is_op(t, PL_JOP_MOD)))
      return PL_OK;
    int op = t->op, line = t->line;
    adv(p);
    pl_jnode *r;
    PL_TRY(parse_pow(p, &r));
    PL_TRY(binop(p, op, line, *out, r, out));
  }
}

static int parse_concat(ps *p, pl_jnode **out) {
  int line = cur(p)->line;
  pl_jnode *first;
  PL_TRY(parse_math2(p, &first));
  if (!is_op(cur(p), PL_JOP_TILDE)) {
    *out = first;
    return PL_OK;
  }
  vec parts = {0};
  PL_TRY(vpush(p, &parts, first));
  while (is_op(cur(p), PL_JOP_TILDE)) {
    adv(p);
    pl_jnode *e;
    PL_TRY(parse_math2(p, &e));
    PL_TRY(vpush(p, &parts, e));
  }
  MK(n, PL_JN_CONCAT, line);
  n->kids = (pl_jnode **)parts.v;
  n->nkids = parts.n;
  *out = n;
  return PL_OK;
}

static int parse_math1(ps *p, pl_jnode **out) {
  PL_TRY(parse_concat(p, out));
  while (is_op(cur(p), PL_JOP_ADD) || is_op(cur(p), PL_JOP_SUB)) {
    int op = cur(p)->op, line = cur(p)->line;
    adv(p);
    pl_jnode *r;
    PL_TRY(parse_concat(p, &r));
    PL_TRY(binop(p, op, line, *out, r, out));
  }
  return PL_OK;
}

static int parse_compare(ps *p, pl_jnode **out) {
  int line = cur(p)->line;
  pl_jnode *first;
  PL_TRY(parse_math1(p, &first));
  vec operands = {0}, ops = {0};
  for (;;) {
    const pl_jtok *t = cur(p);
    int op = 0;
    if (t->type == PL_JT_OP && t->op >= PL_JOP_EQ && t->op <= PL_JOP_LE) {
      op = t->op;
      adv(p);
    } else if (is_name(t, "in")) {
      op = PL_JCMP_IN;
      adv(p);
    } else if (is_name(t, "not") && is_name(peek(p, 1), "in")) {
      op = PL_JCMP_NOTIN;
      adv(p);
      adv(p);
    } else {
      break;
    }
    pl_jnode *e;
    PL_TRY(parse_math1(p, &e));
    PL_TRY(vpush(p, &operands, e));
    PL_TRY(vpush(p, &ops, (void *)(uintptr_t)op));
  }
  if (!operands.n) {
    *out = first;
    return PL_OK;
  }
  MK(n, PL_JN_COMPARE, line);
  n->a = first;
  n->kids = (pl_jnode **)operands.v;
  n->nkids = operands.n;
  n->ops = pl_jarena_alloc(p->a, ops.n);
  if (!n->ops)
    return oom();
  for (size_t i = 0; i < ops.n; i++)
    n->ops[i] = (uint8_t)(uintptr_t)ops.v[i];
  *out = n;
  return PL_OK;
}

static int parse_not(ps *p, pl_jnode **out) {
  if (is_name(cur(p), "not")) {
    PL_TRY(enter(p));
    MK(n, PL_JN_NOT, cur(p)->line);
    adv(p);
    PL_TRY(parse_not(p, &n->a));
    p->depth--;
    *out = n;
    return PL_OK;
  }
  return parse_compare(p, out);
}

static int parse_and(ps *p, pl_jnode **out) {
  PL_TRY(parse_not(p, out));
  while (is_name(cur(p), "and")) {
    MK(n, PL_JN_AND, cur(p)->line);
    adv(p);
    n->a = *out;
    PL_TRY(parse_not(p, &n->b));
    *out = n;
  }
  return PL_OK;
}

static int parse_or(ps *p, pl_jnode **out) {
  PL_TRY(parse_and(p, out));
  while (is_name(cur(p), "or")) {
    MK(n, PL_JN_OR, cur(p)->line);
    adv(p);
    n->a = *out;
    PL_TRY(parse_and(p, &n->b));
    *out = n;
  }
  return PL_OK;
}

static int parse_condexpr(ps *p, pl_jnode **out) {
  PL_TRY(enter(p));
  PL_TRY(parse_or(p, out));
  while (is_name(cur(p), "if")) {
    MK(n, PL_JN_COND, cur(p)->line);
    adv(p);
    n->a = *out;
    PL_TRY(parse_or(p, &n->b));
    if (is_name(cur(p), "else")) {
      adv(p);
      PL_TRY(parse_condexpr(p, &n->c));
    }
    *out = n;
  }
  p->depth--;
  return PL_OK;
}

static int parse_expression(ps *p, int with_condexpr, pl_jnode **out) {
  return with_condexpr ? parse_condexpr(p, out) : parse_or(p, out);
}

/* Assignment target: a name or a tuple of names (for loops, set, with). */
static int parse_target(ps *p, const char *extra_end, pl_jnode *n, int name_only) {
  pl_jnode *t;
  if (name_only) {
    if (cur(p)->type != PL_JT_NAME)
      return perr(p, "expected a variable name");
    MK(nm, PL_JN_NAME, cur(p)->line);
    nm->name = cur(p)->s;
    adv(p);
    t = nm;
  } else {
    PL_TRY(parse_tuple(p, 1, 0, extra_end, 0, &t));
  }
  if (t->kind == PL_JN_NAME) {
    n->names = pl_jarena_alloc(p->a, sizeof(char *));
    if (!n->names)
      return oom();
    n->names[0] = t->name;
    n->nnames = 1;
    return PL_OK;
  }
  if (t->kind != PL_JN_TUPLE)
    return pl_fail(PL_ETEMPLATE, "template line %d: cannot assign to this expression", t->line);
  n->names = pl_jarena_alloc(p->a, (t->nkids ? t->nkids : 1) * sizeof(char *));
  if (!n->names)
    return oom();
  for (size_t i = 0; i < t->nkids; i++) {
    if (t->kids[i]->kind != PL_JN_NAME)
      return pl_fail(PL_ETEMPLATE, "template line %d: unsupported nested assignment target",
                     t->line);
    n->names[i] = t->kids[i]->name;
  }
  n->nnames = t->nkids;
  n->flag = 1; /* unpack */
  return PL_OK;
}

static int parse_body(ps *p, const char *const *end, pl_jnode **out);

/* After `end` matched: consume the end tag's name and its '%}'. */
static int close_tag(ps *p) {
  adv(p);
  return expect_block_end(p);
}

static int parse_if(ps *p, pl_jnode **out) {
  static const char *const ends[] = {"elif", "else", "endif", NULL};
  static const char *const endif[] = {"endif", NULL};
  MK(root, PL_JN_IF, cur(p)->line);
  pl_jnode *node = root;
  for (;;) {
    PL_TRY(parse_tuple(p, 0, 0, NULL, 0, &node->a));
    PL_TRY(expect_block_end(p));
    PL_TRY(parse_body(p, ends, &node->b));
    const pl_jtok *t = cur(p);
    if (is_name(t, "elif")) {
      MK(n, PL_JN_IF, t->line);
      adv(p);
      node->c = n;
      node = n;
      continue;
    }
    if (is_name(t, "else")) {
      PL_TRY(close_tag(p));
      PL_TRY(parse_body(p, endif, &node->c));
    }
    PL_TRY(close_tag(p));
    break;
  }
  *out = root;
  return PL_OK;
}

static int parse_for(ps *p, pl_jnode **out) {
  static const char *const ends[] = {"endfor", "else", NULL};
  static const char *const endfor[] = {"endfor", NULL};
  MK(n, PL_JN_FOR, cur(p)->line);
  PL_TRY(parse_target(p, "in", n, 0));
  if (!is_name(cur(p), "in"))
    return perr(p, "expected 'in' in for loop");
  adv(p);
  PL_TRY(parse_tuple(p, 0, 0, "recursive", 0, &n->a));
  if (is_name(cur(p), "if")) {
    adv(p);
    PL_TRY(parse_expression(p, 1, &n->b));
  }
  if (is_name(cur(p), "recursive"))
    return pl_fail(PL_ETEMPLATE, "template line %d: unsupported: recursive for loops",
                   cur(p)->line);
  PL_TRY(expect_block_end(p));
  p->loop_depth++;
  PL_TRY(parse_body(p, ends, &n->c));
  p->loop_depth--;
  if (is_name(cur(p), "else")) {
    PL_TRY(close_tag(p));
    PL_TRY(parse_body(p, endfor, &n->d));
  }
  PL_TRY(close_tag(p));
  *out = n;
  return PL_OK;
}

static int parse_set(ps *p, pl_jnode **out) {
  static const char *const endset[] = {"endset", NULL};
  int line = cur(p)->line;
  if (cur(p)->type == PL_JT_NAME && is_op(peek(p, 1), PL_JOP_DOT)) {
    MK(n, PL_JN_SET_NS, line);
    n->names = pl_jarena_alloc(p->a, sizeof(char *));
    if (!n->names)
      return oom();
    n->names[0] = cur(p)->s;
    n->nnames = 1;
    adv(p);
    adv(p);
    if (cur(p)->type != PL_JT_NAME)
      return perr(p, "expected an attribute name");
    n->name = cur(p)->s;
    adv(p);
    PL_TRY(expect_op(p, PL_JOP_ASSIGN));
    PL_TRY(parse_tuple(p, 0, 1, NULL, 0, &n->a));
    PL_TRY(expect_block_end(p));
    *out = n;
    return PL_OK;
  }
  MK(n, PL_JN_SET, line);
  PL_TRY(parse_target(p, NULL, n, 0));
  if (is_op(cur(p), PL_JOP_ASSIGN)) {
    adv(p);
    PL_TRY(parse_tuple(p, 0, 1, NULL, 0, &n->a));
    PL_TRY(expect_block_end(p));
    *out = n;
    return PL_OK;
  }
  if (n->flag)
    return pl_fail(PL_ETEMPLATE, "template line %d: block set needs a single name", line);
  n->kind = PL_JN_SET_BLOCK;
  PL_TRY(parse_filter_chain(p, &n->a, 0));
  PL_TRY(expect_block_end(p));
  int saved = p->loop_depth;
  p->loop_depth = 0;
  PL_TRY(parse_body(p, endset, &n->b));
  p->loop_depth = saved;
  PL_TRY(close_tag(p));
  *out = n;
  return PL_OK;
}

/* `(a, b=default, ...)` of a macro or call block. */
static int parse_signature(ps *p, pl_jnode *n) {
  vec names = {0}, defs = {0};
  int have_default = 0;
  PL_TRY(expect_op(p, PL_JOP_LPAREN));
  while (!is_op(cur(p), PL_JOP_RPAREN)) {
    if (names.n)
      PL_TRY(expect_op(p, PL_JOP_COMMA));
    if (is_op(cur(p), PL_JOP_RPAREN))
      break;
    if (cur(p)->type != PL_JT_NAME)
      return perr(p, "expected a parameter name");
    PL_TRY(vpush(p, &names, (void *)cur(p)->s));
    adv(p);
    pl_jnode *d = NULL;
    if (is_op(cur(p), PL_JOP_ASSIGN)) {
      adv(p);
      PL_TRY(parse_expression(p, 1, &d));
      have_default = 1;
    } else if (have_default) {
      return perr(p, "non-default parameter follows default parameter");
    }
    PL_TRY(vpush(p, &defs, d));
  }
  PL_TRY(expect_op(p, PL_JOP_RPAREN));
  n->names = (const char **)names.v;
  n->nnames = names.n;
  n->kw = (pl_jnode **)defs.v;
  n->nkw = defs.n;
  return PL_OK;
}

static int parse_macro(ps *p, pl_jnode **out) {
  static const char *const ends[] = {"endmacro", NULL};
  MK(n, PL_JN_MACRO, cur(p)->line);
  if (cur(p)->type != PL_JT_NAME)
    return perr(p, "expected a macro name");
  n->name = cur(p)->s;
  adv(p);
  PL_TRY(parse_signature(p, n));
  PL_TRY(expect_block_end(p));
  int saved = p->loop_depth;
  p->loop_depth = 0;
  PL_TRY(parse_body(p, ends, &n->b));
  p->loop_depth = saved;
  PL_TRY(close_tag(p));
  *out = n;
  return PL_OK;
}

static int parse_call_block(ps *p, pl_jnode **out) {
  static const char *const ends[] = {"endcall", NULL};
  MK(n, PL_JN_CALL_BLOCK, cur(p)->line);
  if (is_op(cur(p), PL_JOP_LPAREN))
    PL_TRY(parse_signature(p, n));
  PL_TRY(parse_expression(p, 1, &n->a));
  if (n->a->kind != PL_JN_CALL)
    return pl_fail(PL_ETEMPLATE, "template line %d: {%% call %%} needs a macro call", n->line);
  PL_TRY(expect_block_end(p));
  int saved = p->loop_depth;
  p->loop_depth = 0;
  PL_TRY(parse_body(p, ends, &n->b));
  p->loop_depth = saved;
  PL_TRY(close_tag(p));
  *out = n;
  return PL_OK;
}

static int parse_filter_block(ps *p, pl_jnode **out) {
  static const char *const ends[] = {"endfilter", NULL};
  MK(n, PL_JN_FILTER_BLOCK, cur(p)->line);
  PL_TRY(parse_filter_chain(p, &n->a, 1));
  PL_TRY(expect_block_end(p));
  PL_TRY(parse_body(p, ends, &n->b));
  PL_TRY(close_tag(p));
  *out = n;
  return PL_OK;
}

static int parse_with(ps *p, pl_jnode **out) {
  static const char *const ends[] = {"endwith", NULL};
  MK(n, PL_JN_WITH, cur(p)->line);
  vec names = {0}, vals = {0};
  while (cur(p)->type != PL_JT_BLOCK_END) {
    if (names.n)
      PL_TRY(expect_op(p, PL_JOP_COMMA));
    pl_jnode tmp = {0};
    PL_TRY(parse_target(p, NULL, &tmp, 1));
    PL_TRY(expect_op(p, PL_JOP_ASSIGN));
    pl_jnode *v;
    PL_TRY(parse_expression(p, 1, &v));
    PL_TRY(vpush(p, &names, (void *)tmp.names[0]));
    PL_TRY(vpush(p, &vals, v));
  }
  PL_TRY(expect_block_end(p));
  n->names = (const char **)names.v;
  n->nnames = names.n;
  n->kids = (pl_jnode **)vals.v;
  n->nkids = vals.n;
  PL_TRY(parse_body(p, ends, &n->b));
  PL_TRY(close_tag(p));
  *out = n;
  return PL_OK;
}

static int parse_statement(ps *p, pl_jnode **out) {
  static const char *const endgen[] = {"endgeneration", NULL};
  const pl_jtok *t = cur(p);
  if (t->type != PL_JT_NAME)
    return perr(p, "expected a tag name after '{%'");
  const char *name = t->s;
  int line = t->line;
  PL_TRY(enter(p));
  adv(p);
  if (!strcmp(name, "if"))
    PL_TRY(parse_if(p, out));
  else if (!strcmp(name, "for"))
    PL_TRY(parse_for(p, out));
  else if (!strcmp(name, "set"))
    PL_TRY(parse_set(p, out));
  else if (!strcmp(name, "macro"))
    PL_TRY(parse_macro(p, out));
  else if (!strcmp(name, "call"))
    PL_TRY(parse_call_block(p, out));
  else if (!strcmp(name, "filter"))
    PL_TRY(parse_filter_block(p, out));
  else if (!strcmp(name, "with"))
    PL_TRY(parse_with(p, out));
  else if (!strcmp(name, "generation")) {
    /* transformers' AssistantTracker tag: renders its body unchanged. */
    PL_TRY(expect_block_end(p));
    PL_TRY(parse_body(p, endgen, out));
    PL_TRY(close_tag(p));
  } else if (!strcmp(name, "print")) {
    MK(n, PL_JN_OUTPUT, line);
    PL_TRY(parse_tuple(p, 0, 1, NULL, 0, &n->a));
    PL_TRY(expect_block_end(p));
    *out = n;
  } else if (!strcmp(name, "break") || !strcmp(name, "continue")) {
    if (!p->loop_depth)
      return pl_fail(PL_ETEMPLATE, "template line %d: '%s' outside of a loop", line, name);
    MK(n, name[0] == 'b' ? PL_JN_BREAK : PL_JN_CONTINUE, line);
    PL_TRY(expect_block_end(p));
    *out = n;
  } else {
    static const char *const known[] = {"extends", "block", "include", "import", "from",
                                        "autoescape", "do", "trans", "raw", NULL};
    for (int i = 0; known[i]; i++)
      if (!strcmp(name, known[i]))
        return pl_fail(PL_ETEMPLATE, "template line %d: unsupported tag '%s'", line, name);
    return pl_fail(PL_ETEMPLATE, "template line %d: unknown tag '%s'", line, name);
  }
  p->depth--;
  return PL_OK;
}

/* Statements until a `{% <end> %}` tag (left unconsumed at its name) or, when end is NULL, the
 * end of the template. */
static int parse_body(ps *p, const char *const *end, pl_jnode **out) {
  MK(body, PL_JN_BODY, cur(p)->line);
  vec kids = {0};
  for (;;) {
    const pl_jtok *t = cur(p);
    if (t->type == PL_JT_EOF) {
      if (end) {
        char m[160];
        int k = snprintf(m, sizeof m, "unexpected end of template, expected ");
        for (int i = 0; end[i] && k > 0 && (size_t)k < sizeof m; i++)
          k += snprintf(m + k, sizeof m - (size_t)k, "%s'%s'", i ? " or " : "", end[i]);
        return pl_fail(PL_ETEMPLATE, "template line %d: %s", t->line, m);
      }
      break;
    }
    pl_jnode *s = NULL;
    if (t->type == PL_JT_DATA) {
      MK(n, PL_JN_TEXT, t->line);
      n->lit = pl_jv_str(t->s, t->n);
      adv(p);
      s = n;
    } else if (t->type == PL_JT_VAR_BEGIN) {
      adv(p);
      MK(n, PL_JN_OUTPUT, t->line);
      PL_TRY(parse_tuple(p, 0, 1, NULL, 0, &n->a));
      PL_TRY(expect_type(p, PL_JT_VAR_END, "end of print statement '}}'"));
      s = n;
    } else if (t->type == PL_JT_BLOCK_BEGIN) {
      adv(p);
      const pl_jtok *nm = cur(p);
      if (end && nm->type == PL_JT_NAME)
        for (int i = 0; end[i]; i++)
          if (!strcmp(nm->s, end[i]))
            goto done;
      PL_TRY(parse_statement(p, &s));
    } else {
      return perr(p, "unexpected token");
    }
    PL_TRY(vpush(p, &kids, s));
  }
done:
  body->kids = (pl_jnode **)kids.v;
  body->nkids = kids.n;
  *out = body;
  return PL_OK;
}

int pl_jinja_parse(pl_jarena *a, const pl_jtok *toks, size_t ntoks, pl_jnode **root) {
  ps p = {.a = a, .t = toks, .n = ntoks};
  *root = NULL;
  if (ntoks == 0)
    return pl_fail(PL_EINTERNAL, "template: no tokens");
  return parse_body(&p, NULL, root);
}
