/* Values of the Jinja interpreter, modelled on the Python objects Jinja2 works with: Undefined,
 * None, bool, int (int64; overflow is an error), float, str (UTF-8 bytes), list/tuple, dict
 * (insertion-ordered), namespace, callables (builtins, bound methods, macros) and loop objects.
 * Invariants: values live in a render arena and are immutable once built, except namespaces
 * (the one mutable object, as in Jinja's sandbox); a str value points at bytes that outlive the
 * render (arena, AST or caller input), so slices and strips are zero-copy views. */
#ifndef PL_MODEL_JINJA_VALUE_H
#define PL_MODEL_JINJA_VALUE_H
#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "template/jinja_arena.h"
#include "template/jinja_text.h"

typedef enum {
  PL_JV_UNDEF = 0, PL_JV_NONE, PL_JV_BOOL, PL_JV_INT, PL_JV_FLOAT, PL_JV_STR,
  PL_JV_LIST, PL_JV_DICT, PL_JV_NS, PL_JV_FUNC, PL_JV_LOOP
} pl_jv_type;

struct pl_jlist;
struct pl_jdict;
struct pl_jfunc;
struct pl_jloop;

typedef struct pl_jv {
  uint8_t type;
  uint8_t tuple; /* PL_JV_LIST: a tuple (prints with parentheses, != list) */
  union {
    int b;
    int64_t i;
    double f;
    struct {
      const char *p;
      size_t n;
    } s;
    struct pl_jlist *l;
    struct pl_jdict *d; /* PL_JV_DICT and PL_JV_NS */
    struct pl_jfunc *fn;
    struct pl_jloop *loop;
    const char *undef_name; /* PL_JV_UNDEF: what was missing (for messages), may be NULL */
  } u;
} pl_jv;

struct pl_jctx;
struct pl_jnode;
struct pl_jframe;
struct pl_jargs;

/* A builtin function or bound method: `self` is the bound object (UNDEF for plain functions). */
typedef int (*pl_jbuiltin)(struct pl_jctx *c, pl_jv self, const struct pl_jargs *a, pl_jv *out);

/* A callable: builtin (fn != NULL) or macro / caller block (node != NULL, run in `closure`). */
typedef struct pl_jfunc {
  const char *name;
  pl_jbuiltin fn;
  pl_jv self;
  const struct pl_jnode *node;
  struct pl_jframe *closure;
} pl_jfunc;

typedef struct pl_jlist {
  size_t n, cap;
  pl_jv *v;
} pl_jlist;

typedef struct pl_jdict {
  size_t n, cap;
  pl_jv *k, *v;
} pl_jdict;

/* The `loop` variable of one for-loop iteration. */
typedef struct pl_jloop {
  const pl_jlist *items;
  size_t index0;
  int depth; /* 1 = outermost loop */
} pl_jloop;

static inline pl_jv pl_jv_undef(const char *what) {
  pl_jv v = {.type = PL_JV_UNDEF};
  v.u.undef_name = what;
  return v;
}
static inline pl_jv pl_jv_none(void) { return (pl_jv){.type = PL_JV_NONE}; }
static inline pl_jv pl_jv_bool(int b) {
  pl_jv v = {.type = PL_JV_BOOL};
  v.u.b = b != 0;
  return v;
}
static inline pl_jv pl_jv_int(int64_t i) {
  pl_jv v = {.type = PL_JV_INT};
  v.u.i = i;
  return v;
}
static inline pl_jv pl_jv_float(double f) {
  pl_jv v = {.type = PL_JV_FLOAT};
  v.u.f = f;
  return v;
}
static inline pl_jv pl_jv_str(const char *p, size_t n) {
  pl_jv v = {.type = PL_JV_STR};
  v.u.s.p = p;
  v.u.s.n = n;
  return v;
}
static inline pl_jv pl_jv_list(pl_jlist *l, int tuple) {
  pl_jv v = {.type = PL_JV_LIST, .tuple = (uint8_t)(tuple != 0)};
  v.u.l = l;
  return v;
}
static inline pl_jv pl_jv_dict(pl_jdict *d) {
  pl_jv v = {.type = PL_JV_DICT};
  v.u.d = d;
  return v;
}
static inline int pl_jv_isnum(pl_jv v) {
  return v.type == PL_JV_BOOL || v.type == PL_JV_INT || v.type == PL_JV_FLOAT;
}

/* Containers. Return NULL / PL_ETEMPLATE-style status (via pl_fail) when the arena is spent. */
pl_jlist *pl_jlist_new(pl_jarena *a, size_t cap);
int pl_jlist_push(pl_jarena *a, pl_jlist *l, pl_jv v);
pl_jdict *pl_jdict_new(pl_jarena *a, size_t cap);
int pl_jdict_set(pl_jarena *a, pl_jdict *d, pl_jv k, pl_jv v); /* replace or append */
const pl_jv *pl_jdict_get(const pl_jdict *d, pl_jv key);       /* NULL when absent */
const pl_jv *pl_jdict_get_str(const pl_jdict *d, const char *k, size_t n);
/* A copy of the string in the arena (a value that no longer depends on its source). */
int pl_jv_str_dup(pl_jarena *a, const char *p, size_t n, pl_jv *out);
/* Status for a failed arena request: PL_ETEMPLATE when the arena cap was hit, else PL_ENOMEM. */
int pl_jv_oom(const pl_jarena *a);

int pl_jv_truthy(pl_jv v);
int pl_jv_equal(pl_jv a, pl_jv b);
/* Python ordering: sets *cmp to -1/0/1; returns PL_ETEMPLATE (with message) when a and b
 * cannot be ordered (e.g. str vs int). */
int pl_jv_compare(pl_jv a, pl_jv b, int *cmp);
const char *pl_jv_type_name(pl_jv v); /* Python's type name: 'str', 'NoneType', ... */
/* Numeric view of bool/int/float (bool is an int, as in Python). */
double pl_jv_as_double(pl_jv v);

/* Python str() and repr() into a buffer. */
int pl_jv_write_str(pl_jbuf *b, pl_jv v);
int pl_jv_write_repr(pl_jbuf *b, pl_jv v);
int pl_jv_write_str_repr(pl_jbuf *b, const char *p, size_t n); /* repr of a str */
/* Python's repr(float): shortest round-trip digits, 'e' form outside [1e-4, 1e16). */
void pl_jv_fmt_float(double f, char out[40]);
/* str(v) as a value: strings come back as is, others are formatted into the arena. */
int pl_jv_to_str(pl_jarena *a, pl_jv v, size_t limit, pl_jv *out);

/* JSON (jansson) -> value: lists and dicts are built in the arena, strings point into j
 * (j must outlive every use of the value). Integers stay ints, reals floats. */
int pl_jv_from_json(pl_jarena *a, const json_t *j, pl_jv *out);

static inline int pl_jv_is_str(pl_jv v, const char *s) {
  size_t n = 0;
  while (s[n])
    n++;
  if (v.type != PL_JV_STR || v.u.s.n != n)
    return 0;
  for (size_t i = 0; i < n; i++)
    if (v.u.s.p[i] != s[i])
      return 0;
  return 1;
}
#endif
