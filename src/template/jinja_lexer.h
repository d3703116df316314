/* Jinja lexer: template text -> flat token array, with Hugging Face's environment settings
 * (trim_blocks and lstrip_blocks on, keep_trailing_newline off) and Jinja2's whitespace control
 * (`{%-`, `-%}`, `{%+`, `+%}`, same for `{{ }}` and `{# #}`) applied here, so DATA tokens carry
 * exactly the text to print. Comments vanish; `{% raw %}` bodies become DATA.
 * Invariants: every token points into the template arena; a tag's tokens sit between a BEGIN and
 * an END token; the array ends with one PL_JT_EOF. */
#ifndef PL_MODEL_JINJA_LEXER_H
#define PL_MODEL_JINJA_LEXER_H
#include <stddef.h>
#include <stdint.h>

#include "template/jinja_arena.h"

typedef enum {
  PL_JT_EOF, PL_JT_DATA, PL_JT_VAR_BEGIN, PL_JT_VAR_END, PL_JT_BLOCK_BEGIN, PL_JT_BLOCK_END,
  PL_JT_NAME, PL_JT_STRING, PL_JT_INT, PL_JT_FLOAT, PL_JT_OP
} pl_jtok_type;

typedef enum {
  PL_JOP_ADD, PL_JOP_SUB, PL_JOP_MUL, PL_JOP_DIV, PL_JOP_FLOORDIV, PL_JOP_MOD, PL_JOP_POW,
  PL_JOP_TILDE, PL_JOP_LBRACKET, PL_JOP_RBRACKET, PL_JOP_LPAREN, PL_JOP_RPAREN, PL_JOP_LBRACE,
  PL_JOP_RBRACE, PL_JOP_EQ, PL_JOP_NE, PL_JOP_GT, PL_JOP_GE, PL_JOP_LT, PL_JOP_LE,
  PL_JOP_ASSIGN, PL_JOP_DOT, PL_JOP_COLON, PL_JOP_PIPE, PL_JOP_COMMA, PL_JOP_SEMICOLON
} pl_jop;

typedef struct pl_jtok {
  uint8_t type;
  uint8_t op; /* PL_JT_OP */
  int line;
  const char *s; /* DATA text, NAME, decoded STRING (NUL-terminated, in the arena) */
  size_t n;
  int64_t i; /* PL_JT_INT */
  double f;  /* PL_JT_FLOAT */
} pl_jtok;

/* Tokenize `src` (len bytes). On error returns PL_ETEMPLATE with "line N: ..." set. */
int pl_jinja_lex(pl_jarena *a, const char *src, size_t len, pl_jtok **toks, size_t *ntoks);
const char *pl_jop_text(int op);
#endif
