/* `tojson` with Hugging Face's semantics: Python's json.dumps(x, ensure_ascii=False,
 * indent=None, separators=None, sort_keys=False) -- not Jinja's built-in filter, which escapes
 * HTML characters and sorts keys. Output is byte-identical to CPython's json module: default
 * separators ', ' / ': ' (',' / ': ' with an indent), non-ASCII kept unless ensure_ascii, floats
 * in repr form, NaN/Infinity allowed, dict keys converted like Python (int/float/bool/None). */
#ifndef PL_MODEL_JINJA_JSON_H
#define PL_MODEL_JINJA_JSON_H
#include "template/jinja_eval.h"

typedef struct pl_jjson_opts {
  int ensure_ascii;
  int has_indent;
  pl_jv indent;         /* int (spaces) or str (the unit), when has_indent */
  const char *item_sep; /* NULL = default */
  size_t item_sep_n;
  const char *key_sep;
  size_t key_sep_n;
  int sort_keys;
} pl_jjson_opts;

int pl_jinja_tojson(pl_jctx *c, pl_jv v, const pl_jjson_opts *o, pl_jbuf *b);
#endif
