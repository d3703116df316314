/* Jinja abstract syntax tree and parser. The parser is recursive descent over the lexer's tokens
 * and follows Jinja2's grammar and operator precedence (conditional < or < and < not < compare <
 * + - < ~ < * / // % < ** < unary - + < postfix, filters and tests). Filters and tests are
 * resolved at parse time, so an unknown one is a parse error naming it and its line; so is any
 * unsupported tag (extends, include, import, ...).
 * Invariants: nodes live in the template arena and are read-only after parsing (renders may run
 * concurrently); nesting depth is bounded (PL_JINJA_MAX_NEST) so hostile input cannot overflow
 * the C stack. */
#ifndef PL_MODEL_JINJA_AST_H
#define PL_MODEL_JINJA_AST_H
#include <stddef.h>
#include <stdint.h>

#include "template/jinja_arena.h"
#include "template/jinja_lexer.h"
#include "template/jinja_value.h"

#define PL_JINJA_MAX_NEST 200

typedef enum {
  /* expressions */
  PL_JN_LIT,     /* lit */
  PL_JN_NAME,    /* name */
  PL_JN_LIST,    /* kids */
  PL_JN_TUPLE,   /* kids */
  PL_JN_DICT,    /* kids = keys, kw = values (nkw == nkids) */
  PL_JN_ATTR,    /* a.name */
  PL_JN_ITEM,    /* a[b] */
  PL_JN_SLICE,   /* a[b:c:d], each of b/c/d may be NULL */
  PL_JN_CALL,    /* a(kids..., kwn=kw...) */
  PL_JN_FILTER,  /* a|name(kids..., kwn=kw...); a == NULL in a filter block chain */
  PL_JN_TEST,    /* a is [not] name(args); flag = negated */
  PL_JN_NEG, PL_JN_POS, PL_JN_NOT, /* unary on a */
  PL_JN_AND, PL_JN_OR,             /* a, b */
  PL_JN_BINOP,   /* a op b, op = PL_JOP_ADD/SUB/MUL/DIV/FLOORDIV/MOD/POW */
  PL_JN_CONCAT,  /* kids joined with ~ */
  PL_JN_COMPARE, /* a ops[0] kids[0] ops[1] kids[1] ... (chained like Python) */
  PL_JN_COND,    /* a if b else c (c may be NULL) */
  /* statements */
  PL_JN_BODY,    /* kids */
  PL_JN_TEXT,    /* lit (a str) */
  PL_JN_OUTPUT,  /* {{ a }} */
  PL_JN_IF,      /* if a: b else c (c: BODY, or IF for elif, or NULL) */
  PL_JN_FOR,     /* for names in a [if b]: c else d; flag = unpack targets */
  PL_JN_SET,     /* names = a; flag = unpack targets */
  PL_JN_SET_NS,  /* names[0].name = a */
  PL_JN_SET_BLOCK, /* names[0] = capture(b), filtered by chain a (or NULL) */
  PL_JN_MACRO,   /* macro name(names = kw defaults): b */
  PL_JN_CALL_BLOCK, /* call(names = kw defaults) a: b */
  PL_JN_FILTER_BLOCK, /* filter chain a over capture(b) */
  PL_JN_WITH,    /* with names = kids: b */
  PL_JN_BREAK, PL_JN_CONTINUE
} pl_jnode_kind;

/* Comparison operators of PL_JN_COMPARE (beyond PL_JOP_EQ..PL_JOP_LE). */
enum { PL_JCMP_IN = 100, PL_JCMP_NOTIN = 101 };

typedef struct pl_jnode {
  uint8_t kind, op, flag;
  int line;
  const char *name;
  pl_jv lit;
  struct pl_jnode *a, *b, *c, *d;
  struct pl_jnode **kids;
  size_t nkids;
  struct pl_jnode **kw;
  const char **kwn;
  size_t nkw;
  const char **names;
  size_t nnames;
  uint8_t *ops;
  const void *impl; /* FILTER: pl_jfilter_fn, TEST: pl_jtest_fn (see jinja_eval.h) */
} pl_jnode;

/* Parse tokens into a BODY node. Returns PL_ETEMPLATE with "template line N: ..." on error. */
int pl_jinja_parse(pl_jarena *a, const pl_jtok *toks, size_t ntoks, pl_jnode **root);
#endif
