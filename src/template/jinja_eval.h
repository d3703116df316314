/* Interpreter internals shared by the evaluator, filters, tests and builtins: the render
 * context (arena, output, limits, clock), variable frames, argument binding, and the hooks the
 * filters use to call back into the evaluator. Not a public API: include only from
 * src/model/jinja_*.c. Scoping follows Jinja2: {% set %} writes the innermost frame; a for-loop
 * iteration, macro call, call block, with block and filter/set block each get a new frame, so
 * assignments inside them do not leak out; namespaces are how templates carry state out. */
#ifndef PL_MODEL_JINJA_EVAL_H
#define PL_MODEL_JINJA_EVAL_H
#include <stddef.h>
#include <stdint.h>

#include "template/jinja_ast.h"
#include "template/jinja_value.h"

typedef struct pl_jargs {
  const pl_jv *pos;
  size_t npos;
  const char *const *kwn;
  const pl_jv *kwv;
  size_t nkw;
} pl_jargs;

typedef struct pl_jframe {
  struct pl_jframe *parent;
  size_t n, cap;
  const char **names;
  pl_jv *vals;
} pl_jframe;

typedef struct pl_jctx {
  pl_jarena arena;
  pl_jbuf *out;          /* where text goes now (captures swap it) */
  size_t max_output;     /* cap on the output and on any one string */
  uint64_t steps, max_steps;
  int depth, max_depth;  /* evaluator recursion (expressions + statements) */
  int calls, max_calls;  /* macro call nesting */
  int line;              /* line of the node being evaluated, for messages */
  int loop_depth;
  pl_jframe *globals;
  /* Stores into frames and namespaces so far: an {{ output }} whose expression stored
   * nothing (no macro call, no loop() call) left no reference to what it made. */
  unsigned long long stores;
  int64_t now; /* strftime_now: 0 = current local time, else this Unix time formatted as UTC */
} pl_jctx;

typedef int (*pl_jfilter_fn)(pl_jctx *c, pl_jv in, const pl_jargs *a, pl_jv *out);
typedef int (*pl_jtest_fn)(pl_jctx *c, pl_jv in, const pl_jargs *a, int *res);

/* Registries (jinja_filters.c / jinja_tests.c): NULL when unknown. */
pl_jfilter_fn pl_jinja_filter_lookup(const char *name);
pl_jtest_fn pl_jinja_test_lookup(const char *name);

/* Fail with PL_ETEMPLATE and "template line N: <message>". */
int pl_jerr(pl_jctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Arena allocation; on failure the caller returns pl_jv_oom(&c->arena). */
void *pl_jalloc(pl_jctx *c, size_t n);

pl_jframe *pl_jframe_new(pl_jctx *c, pl_jframe *parent);
int pl_jframe_set(pl_jctx *c, pl_jframe *f, const char *name, pl_jv v);
const pl_jv *pl_jframe_lookup(const pl_jframe *f, const char *name);

/* Bind call arguments to a Python-style signature: positional first, then keywords. vals[i]
 * gets the argument or stays as preset by the caller (defaults); given[i] (optional) marks
 * those passed. Unknown keywords and surplus positionals are errors naming `fname`. */
int pl_jargs_bind(pl_jctx *c, const char *fname, const pl_jargs *a, const char *const *params,
                  size_t nparams, pl_jv *vals, int *given);

/* Evaluator services for filters and builtins (jinja_eval.c). */
int pl_jinja_call(pl_jctx *c, pl_jv fn, const pl_jargs *a, pl_jv *out);
int pl_jinja_getattr(pl_jctx *c, pl_jv obj, const char *name, pl_jv *out);
int pl_jinja_getitem(pl_jctx *c, pl_jv obj, pl_jv key, pl_jv *out);
/* Items of an iterable as a list: list/tuple as is, dict keys, str characters, Undefined as
 * empty; other types are an error. */
int pl_jinja_iterate(pl_jctx *c, pl_jv v, pl_jlist **out);
int pl_jinja_apply_filter(pl_jctx *c, const char *name, pl_jv in, const pl_jargs *a, pl_jv *out);
int pl_jinja_apply_test(pl_jctx *c, const char *name, pl_jv in, const pl_jargs *a, int *res);
/* An error for using an undefined value (names it when known). */
int pl_jinja_undef_error(pl_jctx *c, pl_jv u);

/* Builtins (jinja_builtins.c): attribute lookup of a method on a str/dict/list/loop value
 * (*found = 0 when there is no such method) and the global functions. */
int pl_jinja_method(pl_jctx *c, pl_jv self, const char *name, pl_jv *out, int *found);
int pl_jinja_install_globals(pl_jctx *c, pl_jframe *g);

/* Run a parsed template body in frame f (jinja_eval.c). */
int pl_jinja_exec(pl_jctx *c, const pl_jnode *root, pl_jframe *f);

/* Python string formatting (jinja_format.c): `fmt % args` and str.format(). */
int pl_jinja_percent_format(pl_jctx *c, pl_jv fmt, pl_jv args, pl_jv *out);
int pl_jinja_str_format(pl_jctx *c, pl_jv fmt, const pl_jargs *a, pl_jv *out);

/* Python str operations (jinja_strops.c), shared by filters and str methods. */
enum { PL_JCASE_UPPER, PL_JCASE_LOWER, PL_JCASE_TITLE, PL_JCASE_CAPITALIZE, PL_JCASE_SWAP,
       PL_JCASE_JINJA_TITLE };
int pl_jstr_case(pl_jctx *c, pl_jv s, int mode, pl_jv *out);
/* strip/lstrip/rstrip: chars = UNDEF/NONE strips whitespace, else any of chars' code points. */
int pl_jstr_strip(pl_jctx *c, pl_jv s, pl_jv chars, int left, int right, pl_jv *out);
int pl_jstr_replace(pl_jctx *c, pl_jv s, pl_jv old, pl_jv rep, int64_t count, pl_jv *out);
/* split/rsplit: sep UNDEF/NONE = runs of whitespace; maxsplit < 0 = all. */
int pl_jstr_split(pl_jctx *c, pl_jv s, pl_jv sep, int64_t maxsplit, int from_right, pl_jv *out);
/* Python str predicates: "isdigit", "isalpha", "isalnum", "isspace", "islower", "isupper". */
int pl_jstr_is(pl_jv s, const char *what);

/* String helpers shared by filters and methods. */
int pl_jstr_make(pl_jctx *c, pl_jbuf *b, pl_jv *out); /* buffer -> arena str; frees b */
int pl_jv_str_of(pl_jctx *c, pl_jv v, pl_jv *out);    /* Python str(v) */
#endif
