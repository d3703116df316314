/* Tree-walking evaluator for the Jinja AST (see jinja_eval.h for scoping rules). Semantics
 * follow Jinja2 with Python objects: `and`/`or` return an operand, comparisons chain, `+` does
 * not coerce between str and numbers (`~` does), Undefined renders as "" and is falsy but fails
 * when used for arithmetic, attribute access, calls or ordering. Every node costs one step and
 * one level of recursion; both are capped so hostile templates end in PL_ETEMPLATE. Statement
 * execution returns PL_OK, a negative status, or JX_BREAK / JX_CONTINUE travelling up to the
 * enclosing loop. */
#include "template/jinja_eval.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "util/error.h"

/* Keep per-kind helpers out of the recursive functions' frames (see "expressions"). */
#define NOINLINE __attribute__((noinline))

#define JX_BREAK 1
#define JX_CONTINUE 2

static int eval(pl_jctx *c, const pl_jnode *n, pl_jframe *f, pl_jv *out);
static int exec(pl_jctx *c, const pl_jnode *n, pl_jframe *f);

int pl_jerr(pl_jctx *c, const char *fmt, ...) {
  char msg[768];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  return pl_fail(PL_ETEMPLATE, "template line %d: %s", c->line, msg);
}

void *pl_jalloc(pl_jctx *c, size_t n) { return pl_jarena_alloc(&c->arena, n); }

int pl_jinja_undef_error(pl_jctx *c, pl_jv u) {
  if (u.type == PL_JV_UNDEF && u.u.undef_name)
    return pl_jerr(c, "'%s' is undefined", u.u.undef_name);
  return pl_jerr(c, "use of an undefined value");
}

/* ---- frames ----------------------------------------------------------------------------- */

pl_jframe *pl_jframe_new(pl_jctx *c, pl_jframe *parent) {
  pl_jframe *f = pl_jarena_calloc(&c->arena, sizeof *f);
  if (f)
    f->parent = parent;
  return f;
}

int pl_jframe_set(pl_jctx *c, pl_jframe *f, const char *name, pl_jv v) {
  c->stores++;
  for (size_t i = 0; i < f->n; i++)
    if (strcmp(f->names[i], name) == 0) {
      f->vals[i] = v;
      return PL_OK;
    }
  if (f->n == f->cap) {
    size_t cap = f->cap ? f->cap * 2 : 8;
    const char **nn = pl_jalloc(c, cap * sizeof *nn);
    pl_jv *nv = pl_jalloc(c, cap * sizeof *nv);
    if (!nn || !nv)
      return pl_jv_oom(&c->arena);
    if (f->n) {
      memcpy(nn, f->names, f->n * sizeof *nn);
      memcpy(nv, f->vals, f->n * sizeof *nv);
    }
    f->names = nn;
    f->vals = nv;
    f->cap = cap;
  }
  f->names[f->n] = name;
  f->vals[f->n] = v;
  f->n++;
  return PL_OK;
}

const pl_jv *pl_jframe_lookup(const pl_jframe *f, const char *name) {
  for (; f; f = f->parent)
    for (size_t i = f->n; i-- > 0;)
      if (strcmp(f->names[i], name) == 0)
        return &f->vals[i];
  return NULL;
}

/* ---- argument binding ------------------------------------------------------------------- */

int pl_jargs_bind(pl_jctx *c, const char *fname, const pl_jargs *a, const char *const *params,
                  size_t nparams, pl_jv *vals, int *given) {
  if (given)
    memset(given, 0, nparams * sizeof *given);
  if (a->npos > nparams)
    return pl_jerr(c, "%s() takes at most %zu argument(s) (%zu given)", fname, nparams, a->npos);
  for (size_t i = 0; i < a->npos; i++) {
    vals[i] = a->pos[i];
    if (given)
      given[i] = 1;
  }
  for (size_t k = 0; k < a->nkw; k++) {
    size_t i = 0;
    while (i < nparams && strcmp(params[i], a->kwn[k]) != 0)
      i++;
    if (i == nparams)
      return pl_jerr(c, "%s() got an unexpected keyword argument '%s'", fname, a->kwn[k]);
    if (i < a->npos)
      return pl_jerr(c, "%s() got multiple values for argument '%s'", fname, a->kwn[k]);
    vals[i] = a->kwv[k];
    if (given)
      given[i] = 1;
  }
  return PL_OK;
}

/* ---- strings ---------------------------------------------------------------------------- */

int pl_jstr_make(pl_jctx *c, pl_jbuf *b, pl_jv *out) {
  int rc = pl_jv_str_dup(&c->arena, b->p ? b->p : "", b->n, out);
  pl_jbuf_free(b);
  return rc;
}

int pl_jv_str_of(pl_jctx *c, pl_jv v, pl_jv *out) {
  return pl_jv_to_str(&c->arena, v, c->max_output, out);
}

/* ---- attribute / item access ------------------------------------------------------------ */

static int loop_attr(pl_jctx *c, pl_jv v, const char *name, pl_jv *out, int *found) {
  const pl_jloop *l = v.u.loop;
  size_t n = l->items->n, i = l->index0;
  *found = 1;
  if (!strcmp(name, "index"))
    *out = pl_jv_int((int64_t)i + 1);
  else if (!strcmp(name, "index0"))
    *out = pl_jv_int((int64_t)i);
  else if (!strcmp(name, "revindex"))
    *out = pl_jv_int((int64_t)(n - i));
  else if (!strcmp(name, "revindex0"))
    *out = pl_jv_int((int64_t)(n - i - 1));
  else if (!strcmp(name, "first"))
    *out = pl_jv_bool(i == 0);
  else if (!strcmp(name, "last"))
    *out = pl_jv_bool(i + 1 == n);
  else if (!strcmp(name, "length"))
    *out = pl_jv_int((int64_t)n);
  else if (!strcmp(name, "depth"))
    *out = pl_jv_int(l->depth);
  else if (!strcmp(name, "depth0"))
    *out = pl_jv_int(l->depth - 1);
  else if (!strcmp(name, "previtem"))
    *out = i > 0 ? l->items->v[i - 1] : pl_jv_undef("previtem");
  else if (!strcmp(name, "nextitem"))
    *out = i + 1 < n ? l->items->v[i + 1] : pl_jv_undef("nextitem");
  else
    return pl_jinja_method(c, v, name, out, found);
  return PL_OK;
}

int pl_jinja_getattr(pl_jctx *c, pl_jv obj, const char *name, pl_jv *out) {
  int found = 0;
  switch (obj.type) {
  case PL_JV_UNDEF:
    return pl_jinja_undef_error(c, obj);
  case PL_JV_DICT: {
    /* Python attribute first (dict methods), then the item: foo.items is the method. */
    PL_TRY(pl_jinja_method(c, obj, name, out, &found));
    if (found)
      return PL_OK;
    const pl_jv *v = pl_jdict_get_str(obj.u.d, name, strlen(name));
    *out = v ? *v : pl_jv_undef(name);
    return PL_OK;
  }
  case PL_JV_NS: {
    const pl_jv *v = pl_jdict_get_str(obj.u.d, name, strlen(name));
    *out = v ? *v : pl_jv_undef(name);
    return PL_OK;
  }
  case PL_JV_LOOP:
    PL_TRY(loop_attr(c, obj, name, out, &found));
    break;
  case PL_JV_STR:
  case PL_JV_LIST:
    PL_TRY(pl_jinja_method(c, obj, name, out, &found));
    break;
  default:
    break;
  }
  if (!found)
    *out = pl_jv_undef(name);
  return PL_OK;
}

/* Python index normalisation: negative counts from the end; returns 0 when out of range. */
static int norm_index(int64_t i, size_t n, size_t *out) {
  if (i < 0)
    i += (int64_t)n;
  if (i < 0 || (uint64_t)i >= n)
    return 0;
  *out = (size_t)i;
  return 1;
}

int pl_jinja_getitem(pl_jctx *c, pl_jv obj, pl_jv key, pl_jv *out) {
  if (obj.type == PL_JV_UNDEF)
    return pl_jinja_undef_error(c, obj);
  int is_int = key.type == PL_JV_INT || key.type == PL_JV_BOOL;
  int64_t ki = key.type == PL_JV_BOOL ? key.u.b : key.u.i;
  size_t idx = 0;
  switch (obj.type) {
  case PL_JV_DICT: {
    const pl_jv *v = pl_jdict_get(obj.u.d, key);
    if (v) {
      *out = *v;
      return PL_OK;
    }
    break;
  }
  case PL_JV_LIST:
    if (is_int) {
      *out = norm_index(ki, obj.u.l->n, &idx) ? obj.u.l->v[idx] : pl_jv_undef(NULL);
      return PL_OK;
    }
    break;
  case PL_JV_STR:
    if (is_int) {
      size_t ncp = pl_utf8_count(obj.u.s.p, obj.u.s.n);
      if (!norm_index(ki, ncp, &idx)) {
        *out = pl_jv_undef(NULL);
        return PL_OK;
      }
      size_t b = pl_utf8_offset(obj.u.s.p, obj.u.s.n, idx);
      uint32_t cp;
      size_t e = pl_utf8_next(obj.u.s.p, obj.u.s.n, b, &cp);
      *out = pl_jv_str(obj.u.s.p + b, e - b);
      return PL_OK;
    }
    break;
  default:
    break;
  }
  /* Like Jinja: a failed item lookup with a string key falls back to the attribute. */
  if (key.type == PL_JV_STR) {
    char *name = pl_jarena_strndup(&c->arena, key.u.s.p, key.u.s.n);
    if (!name)
      return pl_jv_oom(&c->arena);
    if (obj.type == PL_JV_DICT) {
      int found = 0;
      PL_TRY(pl_jinja_method(c, obj, name, out, &found));
      if (!found)
        *out = pl_jv_undef(name);
      return PL_OK;
    }
    return pl_jinja_getattr(c, obj, name, out);
  }
  *out = pl_jv_undef(NULL);
  return PL_OK;
}

/* Python slice bounds (slice.indices). */
static void slice_bounds(int has_start, int64_t start, int has_stop, int64_t stop, int64_t step,
                         int64_t len, int64_t *s_out, int64_t *e_out) {
  int64_t lower = step > 0 ? 0 : -1, upper = step > 0 ? len : len - 1;
  if (!has_start) {
    start = step < 0 ? upper : lower;
  } else {
    if (start < 0)
      start = start + len < lower ? lower : start + len;
    else if (start > upper)
      start = upper;
  }
  if (!has_stop) {
    stop = step < 0 ? lower : upper;
  } else {
    if (stop < 0)
      stop = stop + len < lower ? lower : stop + len;
    else if (stop > upper)
      stop = upper;
  }
  *s_out = start;
  *e_out = stop;
}

static int slice_arg(pl_jctx *c, pl_jv v, int *has, int64_t *out) {
  if (v.type == PL_JV_NONE || v.type == PL_JV_UNDEF) {
    *has = 0;
    return PL_OK;
  }
  if (v.type != PL_JV_INT && v.type != PL_JV_BOOL)
    return pl_jerr(c, "slice indices must be integers or None");
  *has = 1;
  /* Clamp so index arithmetic cannot overflow; far-out bounds behave the same. */
  int64_t i = v.type == PL_JV_BOOL ? v.u.b : v.u.i;
  if (i > ((int64_t)1 << 60))
    i = (int64_t)1 << 60;
  if (i < -((int64_t)1 << 60))
    i = -((int64_t)1 << 60);
  *out = i;
  return PL_OK;
}

static int do_slice(pl_jctx *c, pl_jv obj, pl_jv vs, pl_jv ve, pl_jv vst, pl_jv *out) {
  if (obj.type == PL_JV_UNDEF)
    return pl_jinja_undef_error(c, obj);
  int hs = 0, he = 0, hst = 0;
  int64_t s = 0, e = 0, st = 1;
  PL_TRY(slice_arg(c, vs, &hs, &s));
  PL_TRY(slice_arg(c, ve, &he, &e));
  PL_TRY(slice_arg(c, vst, &hst, &st));
  if (!hst)
    st = 1;
  if (st == 0)
    return pl_jerr(c, "slice step cannot be zero");
  if (obj.type == PL_JV_LIST) {
    int64_t a = 0, b = 0;
    slice_bounds(hs, s, he, e, st, (int64_t)obj.u.l->n, &a, &b);
    pl_jlist *l = pl_jlist_new(&c->arena, 0);
    if (!l)
      return pl_jv_oom(&c->arena);
    for (int64_t i = a; st > 0 ? i < b : i > b; i += st)
      PL_TRY(pl_jlist_push(&c->arena, l, obj.u.l->v[i]));
    *out = pl_jv_list(l, obj.tuple);
    return PL_OK;
  }
  if (obj.type == PL_JV_STR) {
    const char *p = obj.u.s.p;
    size_t n = obj.u.s.n, ncp = pl_utf8_count(p, n);
    int64_t a = 0, b = 0;
    slice_bounds(hs, s, he, e, st, (int64_t)ncp, &a, &b);
    if (st == 1) { /* contiguous: a view */
      if (b <= a) {
        *out = pl_jv_str("", 0);
        return PL_OK;
      }
      size_t ob = pl_utf8_offset(p, n, (size_t)a);
      size_t oe = ob + pl_utf8_offset(p + ob, n - ob, (size_t)(b - a));
      *out = pl_jv_str(p + ob, oe - ob);
      return PL_OK;
    }
    /* General step: index the code points once. */
    size_t *offs = pl_jalloc(c, (ncp + 1) * sizeof *offs);
    if (!offs)
      return pl_jv_oom(&c->arena);
    size_t k = 0;
    for (size_t i = 0; i < n; k++) {
      uint32_t cp;
      offs[k] = i;
      i = pl_utf8_next(p, n, i, &cp);
    }
    offs[ncp] = n;
    pl_jbuf buf;
    pl_jbuf_init(&buf, c->max_output);
    for (int64_t i = a; st > 0 ? i < b : i > b; i += st) {
      int rc = pl_jbuf_put(&buf, p + offs[i], offs[i + 1] - offs[i]);
      if (rc) {
        pl_jbuf_free(&buf);
        return rc;
      }
    }
    return pl_jstr_make(c, &buf, out);
  }
  /* Jinja compiles a slice to a plain Python subscript: other types raise TypeError. */
  if (obj.type == PL_JV_DICT)
    return pl_jerr(c, "unhashable type: 'slice'");
  return pl_jerr(c, "'%s' object is not subscriptable", pl_jv_type_name(obj));
}

/* ---- iteration -------------------------------------------------------------------------- */

int pl_jinja_iterate(pl_jctx *c, pl_jv v, pl_jlist **out) {
  switch (v.type) {
  case PL_JV_LIST:
    *out = v.u.l;
    return PL_OK;
  case PL_JV_UNDEF:
    if (!(*out = pl_jlist_new(&c->arena, 0)))
      return pl_jv_oom(&c->arena);
    return PL_OK;
  case PL_JV_DICT: {
    pl_jlist *l = pl_jlist_new(&c->arena, v.u.d->n);
    if (!l)
      return pl_jv_oom(&c->arena);
    for (size_t i = 0; i < v.u.d->n; i++)
      l->v[l->n++] = v.u.d->k[i];
    *out = l;
    return PL_OK;
  }
  case PL_JV_STR: {
    pl_jlist *l = pl_jlist_new(&c->arena, 0);
    if (!l)
      return pl_jv_oom(&c->arena);
    for (size_t i = 0; i < v.u.s.n;) {
      uint32_t cp;
      size_t j = pl_utf8_next(v.u.s.p, v.u.s.n, i, &cp);
      PL_TRY(pl_jlist_push(&c->arena, l, pl_jv_str(v.u.s.p + i, j - i)));
      i = j;
    }
    *out = l;
    return PL_OK;
  }
  default:
    return pl_jerr(c, "'%s' object is not iterable", pl_jv_type_name(v));
  }
}

/* ---- calls ------------------------------------------------------------------------------ */

static int capture(pl_jctx *c, const pl_jnode *body, pl_jframe *f, pl_jv *out) {
  pl_jbuf buf;
  pl_jbuf_init(&buf, c->max_output);
  pl_jbuf *saved = c->out;
  c->out = &buf;
  int rc = exec(c, body, f);
  c->out = saved;
  if (rc > 0)
    rc = PL_OK; /* break/continue cannot cross a capture (the parser rejects them) */
  if (rc == PL_OK)
    return pl_jstr_make(c, &buf, out);
  pl_jbuf_free(&buf);
  return rc;
}

static NOINLINE int call_macro(pl_jctx *c, const pl_jfunc *fn, const pl_jargs *a, pl_jv *out) {
  const pl_jnode *m = fn->node;
  if (c->calls >= c->max_calls)
    return pl_jerr(c, "macro calls nested too deeply (limit %d)", c->max_calls);
  pl_jframe *f = pl_jframe_new(c, fn->closure);
  pl_jlist *varargs = pl_jlist_new(&c->arena, 0);
  pl_jdict *kwargs = pl_jdict_new(&c->arena, 0);
  int *bound = pl_jarena_calloc(&c->arena, (m->nnames + 1) * sizeof(int));
  if (!f || !varargs || !kwargs || !bound)
    return pl_jv_oom(&c->arena);
  for (size_t i = 0; i < a->npos; i++) {
    if (i < m->nnames) {
      PL_TRY(pl_jframe_set(c, f, m->names[i], a->pos[i]));
      bound[i] = 1;
    } else {
      PL_TRY(pl_jlist_push(&c->arena, varargs, a->pos[i]));
    }
  }
  for (size_t k = 0; k < a->nkw; k++) {
    size_t i = 0;
    while (i < m->nnames && strcmp(m->names[i], a->kwn[k]) != 0)
      i++;
    if (i < m->nnames) {
      if (bound[i])
        return pl_jerr(c, "macro '%s' got multiple values for argument '%s'", fn->name,
                       a->kwn[k]);
      PL_TRY(pl_jframe_set(c, f, m->names[i], a->kwv[k]));
      bound[i] = 1;
    } else if (!strcmp(a->kwn[k], "caller")) {
      PL_TRY(pl_jframe_set(c, f, "caller", a->kwv[k]));
    } else {
      pl_jv key = pl_jv_str(a->kwn[k], strlen(a->kwn[k]));
      PL_TRY(pl_jdict_set(&c->arena, kwargs, key, a->kwv[k]));
    }
  }
  for (size_t i = 0; i < m->nnames; i++) {
    if (bound[i])
      continue;
    pl_jv d = pl_jv_undef(m->names[i]);
    if (m->kw[i])
      PL_TRY(eval(c, m->kw[i], f, &d)); /* defaults see the parameters bound before them */
    PL_TRY(pl_jframe_set(c, f, m->names[i], d));
  }
  PL_TRY(pl_jframe_set(c, f, "varargs", pl_jv_list(varargs, 1)));
  PL_TRY(pl_jframe_set(c, f, "kwargs", pl_jv_dict(kwargs)));
  c->calls++;
  int saved_loops = c->loop_depth;
  c->loop_depth = 0;
  int rc = capture(c, m->b, f, out);
  c->loop_depth = saved_loops;
  c->calls--;
  return rc;
}

int pl_jinja_call(pl_jctx *c, pl_jv fn, const pl_jargs *a, pl_jv *out) {
  if (fn.type == PL_JV_UNDEF)
    return pl_jinja_undef_error(c, fn);
  if (fn.type != PL_JV_FUNC)
    return pl_jerr(c, "'%s' object is not callable", pl_jv_type_name(fn));
  if (fn.u.fn->fn)
    return fn.u.fn->fn(c, fn.u.fn->self, a, out);
  return call_macro(c, fn.u.fn, a, out);
}

static int eval_args(pl_jctx *c, const pl_jnode *n, pl_jframe *f, pl_jargs *a,
                     const pl_jv *caller) {
  size_t nkw = n->nkw + (caller ? 1 : 0);
  pl_jv *pos = pl_jalloc(c, (n->nkids + 1) * sizeof *pos);
  pl_jv *kwv = pl_jalloc(c, (nkw + 1) * sizeof *kwv);
  const char **kwn = pl_jalloc(c, (nkw + 1) * sizeof *kwn);
  if (!pos || !kwv || !kwn)
    return pl_jv_oom(&c->arena);
  for (size_t i = 0; i < n->nkids; i++)
    PL_TRY(eval(c, n->kids[i], f, &pos[i]));
  for (size_t i = 0; i < n->nkw; i++) {
    PL_TRY(eval(c, n->kw[i], f, &kwv[i]));
    kwn[i] = n->kwn[i];
  }
  if (caller) {
    kwv[n->nkw] = *caller;
    kwn[n->nkw] = "caller";
  }
  a->pos = pos;
  a->npos = n->nkids;
  a->kwv = kwv;
  a->kwn = kwn;
  a->nkw = nkw;
  return PL_OK;
}

static NOINLINE int eval_call(pl_jctx *c, const pl_jnode *n, pl_jframe *f, const pl_jv *caller,
                     pl_jv *out) {
  pl_jv fn = {0};
  PL_TRY(eval(c, n->a, f, &fn));
  pl_jargs a;
  PL_TRY(eval_args(c, n, f, &a, caller));
  c->line = n->line;
  if (fn.type == PL_JV_UNDEF && !fn.u.undef_name && n->a->kind == PL_JN_ATTR)
    fn.u.undef_name = n->a->name;
  return pl_jinja_call(c, fn, &a, out);
}

/* ---- filters and tests ------------------------------------------------------------------ */

int pl_jinja_apply_filter(pl_jctx *c, const char *name, pl_jv in, const pl_jargs *a,
                          pl_jv *out) {
  pl_jfilter_fn fn = pl_jinja_filter_lookup(name);
  if (!fn)
    return pl_jerr(c, "unsupported filter '%s'", name);
  return fn(c, in, a, out);
}

int pl_jinja_apply_test(pl_jctx *c, const char *name, pl_jv in, const pl_jargs *a, int *res) {
  pl_jtest_fn fn = pl_jinja_test_lookup(name);
  if (!fn)
    return pl_jerr(c, "unsupported test '%s'", name);
  return fn(c, in, a, res);
}

/* A FILTER node; in a block chain (chain_in set) the innermost input is *chain_in. */
static NOINLINE int eval_filter(pl_jctx *c, const pl_jnode *n, pl_jframe *f, const pl_jv *chain_in,
                       pl_jv *out) {
  pl_jv in = {0};
  if (!n->a)
    in = chain_in ? *chain_in : pl_jv_undef(NULL);
  else if (chain_in)
    PL_TRY(eval_filter(c, n->a, f, chain_in, &in));
  else
    PL_TRY(eval(c, n->a, f, &in));
  pl_jargs a;
  PL_TRY(eval_args(c, n, f, &a, NULL));
  c->line = n->line;
  return ((pl_jfilter_fn)n->impl)(c, in, &a, out);
}

/* ---- operators -------------------------------------------------------------------------- */

static int64_t as_i64(pl_jv v) { return v.type == PL_JV_BOOL ? v.u.b : v.u.i; }

static int binop_error(pl_jctx *c, int op, pl_jv a, pl_jv b) {
  if (a.type == PL_JV_UNDEF)
    return pl_jinja_undef_error(c, a);
  if (b.type == PL_JV_UNDEF)
    return pl_jinja_undef_error(c, b);
  return pl_jerr(c, "unsupported operand type(s) for %s: '%s' and '%s'", pl_jop_text(op),
                 pl_jv_type_name(a), pl_jv_type_name(b));
}

static int repeat(pl_jctx *c, pl_jv seq, int64_t times, pl_jv *out) {
  if (times < 0)
    times = 0;
  if (seq.type == PL_JV_STR) {
    if (seq.u.s.n && (uint64_t)times > c->max_output / seq.u.s.n)
      return pl_jerr(c, "string repetition exceeds the output limit");
    pl_jbuf b;
    pl_jbuf_init(&b, c->max_output);
    for (int64_t i = 0; i < times; i++) {
      int rc = pl_jbuf_put(&b, seq.u.s.p, seq.u.s.n);
      if (rc) {
        pl_jbuf_free(&b);
        return rc;
      }
    }
    return pl_jstr_make(c, &b, out);
  }
  size_t n = seq.u.l->n;
  if (n && (uint64_t)times > (c->max_output / 16) / n)
    return pl_jerr(c, "list repetition too large");
  pl_jlist *l = pl_jlist_new(&c->arena, n * (size_t)times);
  if (!l)
    return pl_jv_oom(&c->arena);
  for (int64_t i = 0; i < times; i++)
    for (size_t k = 0; k < n; k++)
      l->v[l->n++] = seq.u.l->v[k];
  *out = pl_jv_list(l, seq.tuple);
  return PL_OK;
}

/* Python float floor division / modulo (sign of the divisor). */
static void float_divmod(double x, double y, double *div, double *mod) {
  double m = fmod(x, y), d = (x - m) / y;
  if (m != 0) {
    if ((y < 0) != (m < 0)) {
      m += y;
      d -= 1.0;
    }
  } else {
    m = copysign(0.0, y);
  }
  double fd = 0;
  if (d != 0) {
    fd = floor(d);
    if (d - fd > 0.5)
      fd += 1.0;
  } else {
    fd = copysign(0.0, x / y);
  }
  *div = fd;
  *mod = m;
}

static int arith(pl_jctx *c, int op, pl_jv a, pl_jv b, pl_jv *out) {
  int num = pl_jv_isnum(a) && pl_jv_isnum(b);
  int ints = num && a.type != PL_JV_FLOAT && b.type != PL_JV_FLOAT;
  int64_t x = ints ? as_i64(a) : 0, y = ints ? as_i64(b) : 0, r;
  double fx = num ? pl_jv_as_double(a) : 0, fy = num ? pl_jv_as_double(b) : 0;
  switch (op) {
  case PL_JOP_ADD:
    if (ints) {
      if (__builtin_add_overflow(x, y, &r))
        return pl_jerr(c, "integer overflow");
      *out = pl_jv_int(r);
    } else if (num) {
      *out = pl_jv_float(fx + fy);
    } else if (a.type == PL_JV_STR && b.type == PL_JV_STR) {
      if (a.u.s.n + b.u.s.n > c->max_output)
        return pl_jerr(c, "string exceeds the output limit");
      char *p = pl_jalloc(c, a.u.s.n + b.u.s.n + 1);
      if (!p)
        return pl_jv_oom(&c->arena);
      if (a.u.s.n)
        memcpy(p, a.u.s.p, a.u.s.n);
      if (b.u.s.n)
        memcpy(p + a.u.s.n, b.u.s.p, b.u.s.n);
      p[a.u.s.n + b.u.s.n] = 0;
      *out = pl_jv_str(p, a.u.s.n + b.u.s.n);
    } else if (a.type == PL_JV_LIST && b.type == PL_JV_LIST && a.tuple == b.tuple) {
      pl_jlist *l = pl_jlist_new(&c->arena, a.u.l->n + b.u.l->n);
      if (!l)
        return pl_jv_oom(&c->arena);
      for (size_t i = 0; i < a.u.l->n; i++)
        l->v[l->n++] = a.u.l->v[i];
      for (size_t i = 0; i < b.u.l->n; i++)
        l->v[l->n++] = b.u.l->v[i];
      *out = pl_jv_list(l, a.tuple);
    } else {
      return binop_error(c, op, a, b);
    }
    return PL_OK;
  case PL_JOP_SUB:
    if (!num)
      return binop_error(c, op, a, b);
    if (ints) {
      if (__builtin_sub_overflow(x, y, &r))
        return pl_jerr(c, "integer overflow");
      *out = pl_jv_int(r);
    } else {
      *out = pl_jv_float(fx - fy);
    }
    return PL_OK;
  case PL_JOP_MUL:
    if (ints) {
      if (__builtin_mul_overflow(x, y, &r))
        return pl_jerr(c, "integer overflow");
      *out = pl_jv_int(r);
    } else if (num) {
      *out = pl_jv_float(fx * fy);
    } else if ((a.type == PL_JV_STR || a.type == PL_JV_LIST) &&
               (b.type == PL_JV_INT || b.type == PL_JV_BOOL)) {
      return repeat(c, a, as_i64(b), out);
    } else if ((b.type == PL_JV_STR || b.type == PL_JV_LIST) &&
               (a.type == PL_JV_INT || a.type == PL_JV_BOOL)) {
      return repeat(c, b, as_i64(a), out);
    } else {
      return binop_error(c, op, a, b);
    }
    return PL_OK;
  case PL_JOP_DIV:
    if (!num)
      return binop_error(c, op, a, b);
    if (fy == 0)
      return pl_jerr(c, "division by zero");
    *out = pl_jv_float(fx / fy);
    return PL_OK;
  case PL_JOP_FLOORDIV:
  case PL_JOP_MOD:
    if (op == PL_JOP_MOD && a.type == PL_JV_STR)
      return pl_jinja_percent_format(c, a, b, out);
    if (!num)
      return binop_error(c, op, a, b);
    if (ints) {
      if (y == 0)
        return pl_jerr(c, "integer division or modulo by zero");
      if (x == INT64_MIN && y == -1)
        return pl_jerr(c, "integer overflow");
      int64_t q = x / y, m = x % y;
      if (m != 0 && ((m < 0) != (y < 0))) {
        q -= 1;
        m += y;
      }
      *out = pl_jv_int(op == PL_JOP_FLOORDIV ? q : m);
    } else {
      if (fy == 0)
        return pl_jerr(c, "float division or modulo by zero");
      double d = 0, m = 0;
      float_divmod(fx, fy, &d, &m);
      *out = pl_jv_float(op == PL_JOP_FLOORDIV ? d : m);
    }
    return PL_OK;
  case PL_JOP_POW:
    if (!num)
      return binop_error(c, op, a, b);
    if (ints && y >= 0) {
      int64_t acc = 1, base = x, e = y;
      while (e > 0) {
        if ((e & 1) && __builtin_mul_overflow(acc, base, &acc))
          return pl_jerr(c, "integer overflow");
        e >>= 1;
        if (e && __builtin_mul_overflow(base, base, &base))
          return pl_jerr(c, "integer overflow");
      }
      *out = pl_jv_int(acc);
    } else {
      if (fx == 0 && fy < 0)
        return pl_jerr(c, "0.0 cannot be raised to a negative power");
      *out = pl_jv_float(pow(fx, fy));
    }
    return PL_OK;
  default:
    return pl_jerr(c, "unknown operator");
  }
}

static int contains(pl_jctx *c, pl_jv container, pl_jv item, int *res) {
  switch (container.type) {
  case PL_JV_STR:
    if (item.type != PL_JV_STR)
      return pl_jerr(c, "'in <string>' requires string as left operand, not %s",
                     pl_jv_type_name(item));
    *res = item.u.s.n == 0 ||
           (item.u.s.n <= container.u.s.n &&
            memmem(container.u.s.p, container.u.s.n, item.u.s.p, item.u.s.n) != NULL);
    return PL_OK;
  case PL_JV_LIST:
    *res = 0;
    for (size_t i = 0; i < container.u.l->n && !*res; i++)
      *res = pl_jv_equal(container.u.l->v[i], item);
    return PL_OK;
  case PL_JV_DICT:
    if (item.type == PL_JV_LIST && !item.tuple)
      return pl_jerr(c, "unhashable type: 'list'");
    if (item.type == PL_JV_DICT || item.type == PL_JV_NS)
      return pl_jerr(c, "unhashable type: '%s'", pl_jv_type_name(item));
    *res = pl_jdict_get(container.u.d, item) != NULL;
    return PL_OK;
  case PL_JV_UNDEF:
    *res = 0; /* Undefined iterates as empty */
    return PL_OK;
  default:
    return pl_jerr(c, "argument of type '%s' is not iterable", pl_jv_type_name(container));
  }
}

static int compare_op(pl_jctx *c, int op, pl_jv a, pl_jv b, int *res) {
  int cmp = 0;
  switch (op) {
  case PL_JOP_EQ:
    *res = pl_jv_equal(a, b);
    return PL_OK;
  case PL_JOP_NE:
    *res = !pl_jv_equal(a, b);
    return PL_OK;
  case PL_JCMP_IN:
    return contains(c, b, a, res);
  case PL_JCMP_NOTIN:
    PL_TRY(contains(c, b, a, res));
    *res = !*res;
    return PL_OK;
  default:
    if (pl_jv_compare(a, b, &cmp) < 0)
      return pl_jerr(c, "%s", pl_last_error());
    if (cmp == 2) { /* NaN */
      *res = 0;
      return PL_OK;
    }
    *res = op == PL_JOP_LT ? cmp < 0 : op == PL_JOP_LE ? cmp <= 0 : op == PL_JOP_GT ? cmp > 0
                                                                                 : cmp >= 0;
    return PL_OK;
  }
}

/* ---- expressions ------------------------------------------------------------------------ */
/* Each node kind with locals of its own lives in a separate non-inlined function, so a deep
 * expression costs only the frames of the kinds on its path (the evaluator recurses). */

static NOINLINE int ev_seq(pl_jctx *c, const pl_jnode *n, pl_jframe *f, pl_jv *out) {
  pl_jlist *l = pl_jlist_new(&c->arena, n->nkids);
  if (!l)
    return pl_jv_oom(&c->arena);
  for (size_t i = 0; i < n->nkids; i++)
    PL_TRY(eval(c, n->kids[i], f, &l->v[l->n++]));
  *out = pl_jv_list(l, n->kind == PL_JN_TUPLE);
  return PL_OK;
}

static NOINLINE int ev_dict(pl_jctx *c, const pl_jnode *n, pl_jframe *f, pl_jv *out) {
  pl_jdict *d = pl_jdict_new(&c->arena, n->nkids);
  if (!d)
    return pl_jv_oom(&c->arena);
  for (size_t i = 0; i < n->nkids; i++) {
    pl_jv k = {0}, v = {0};
    PL_TRY(eval(c, n->kids[i], f, &k));
    PL_TRY(eval(c, n->kw[i], f, &v));
    PL_TRY(pl_jdict_set(&c->arena, d, k, v));
  }
  *out = pl_jv_dict(d);
  return PL_OK;
}

static NOINLINE int ev_attr(pl_jctx *c, const pl_jnode *n, pl_jframe *f, pl_jv *out) {
  pl_jv obj = {0};
  PL_TRY(eval(c, n->a, f, &obj));
  c->line = n->line;
  return pl_jinja_getattr(c, obj, n->name, out);
}

static NOINLINE int ev_item(pl_jctx *c, const pl_jnode *n, pl_jframe *f, pl_jv *out) {
  pl_jv obj = {0}, key = {0};
  PL_TRY(eval(c, n->a, f, &obj));
  PL_TRY(eval(c, n->b, f, &key));
  c->line = n->line;
  return pl_jinja_getitem(c, obj, key, out);
}

static NOINLINE int ev_slice(pl_jctx *c, const pl_jnode *n, pl_jframe *f, pl_jv *out) {
  pl_jv obj, s = pl_jv_none(), e = pl_jv_none(), st = pl_jv_none();
  PL_TRY(eval(c, n->a, f, &obj));
  if (n->b)
    PL_TRY(eval(c, n->b, f, &s));
  if (n->c)
    PL_TRY(eval(c, n->c, f, &e));
  if (n->d)
    PL_TRY(eval(c, n->d, f, &st));
  c->line = n->line;
  return do_slice(c, obj, s, e, st, out);
}

static NOINLINE int ev_test(pl_jctx *c, const pl_jnode *n, pl_jframe *f, pl_jv *out) {
  pl_jv in = {0};
  PL_TRY(eval(c, n->a, f, &in));
  pl_jargs a;
  PL_TRY(eval_args(c, n, f, &a, NULL));
  int res = 0;
  c->line = n->line;
  PL_TRY(((pl_jtest_fn)n->impl)(c, in, &a, &res));
  *out = pl_jv_bool(n->flag ? !res : res);
  return PL_OK;
}

static NOINLINE int ev_unary(pl_jctx *c, const pl_jnode *n, pl_jframe *f, pl_jv *out) {
  pl_jv v = {0};
  PL_TRY(eval(c, n->a, f, &v));
  if (n->kind == PL_JN_NOT) {
    *out = pl_jv_bool(!pl_jv_truthy(v));
    return PL_OK;
  }
  c->line = n->line;
  if (!pl_jv_isnum(v)) {
    if (v.type == PL_JV_UNDEF)
      return pl_jinja_undef_error(c, v);
    return pl_jerr(c, "bad operand type for unary %s: '%s'", n->kind == PL_JN_NEG ? "-" : "+",
                   pl_jv_type_name(v));
  }
  if (n->kind == PL_JN_POS) {
    *out = v.type == PL_JV_BOOL ? pl_jv_int(v.u.b) : v;
  } else if (v.type == PL_JV_FLOAT) {
    *out = pl_jv_float(-v.u.f);
  } else {
    int64_t i = as_i64(v);
    if (i == INT64_MIN)
      return pl_jerr(c, "integer overflow");
    *out = pl_jv_int(-i);
  }
  return PL_OK;
}

static NOINLINE int ev_binop(pl_jctx *c, const pl_jnode *n, pl_jframe *f, pl_jv *out) {
  pl_jv a = {0}, b = {0};
  PL_TRY(eval(c, n->a, f, &a));
  PL_TRY(eval(c, n->b, f, &b));
  c->line = n->line;
  return arith(c, n->op, a, b, out);
}

static NOINLINE int ev_concat(pl_jctx *c, const pl_jnode *n, pl_jframe *f, pl_jv *out) {
  pl_jbuf b;
  pl_jbuf_init(&b, c->max_output);
  for (size_t i = 0; i < n->nkids; i++) {
    pl_jv v = {0};
    int rc = eval(c, n->kids[i], f, &v);
    if (rc == PL_OK)
      rc = pl_jv_write_str(&b, v);
    if (rc) {
      pl_jbuf_free(&b);
      return rc;
    }
  }
  return pl_jstr_make(c, &b, out);
}

static NOINLINE int ev_compare(pl_jctx *c, const pl_jnode *n, pl_jframe *f, pl_jv *out) {
  pl_jv left = {0};
  PL_TRY(eval(c, n->a, f, &left));
  for (size_t i = 0; i < n->nkids; i++) {
    pl_jv right = {0};
    int res = 0;
    PL_TRY(eval(c, n->kids[i], f, &right));
    c->line = n->line;
    PL_TRY(compare_op(c, n->ops[i], left, right, &res));
    if (!res) {
      *out = pl_jv_bool(0);
      return PL_OK;
    }
    left = right;
  }
  *out = pl_jv_bool(1);
  return PL_OK;
}

static NOINLINE int ev_cond(pl_jctx *c, const pl_jnode *n, pl_jframe *f, pl_jv *out) {
  pl_jv t = {0};
  PL_TRY(eval(c, n->b, f, &t));
  if (pl_jv_truthy(t))
    return eval(c, n->a, f, out);
  if (n->c)
    return eval(c, n->c, f, out);
  *out = pl_jv_undef(NULL);
  return PL_OK;
}

static int eval_inner(pl_jctx *c, const pl_jnode *n, pl_jframe *f, pl_jv *out) {
  switch (n->kind) {
  case PL_JN_LIT:
    *out = n->lit;
    return PL_OK;
  case PL_JN_NAME: {
    const pl_jv *v = pl_jframe_lookup(f, n->name);
    *out = v ? *v : pl_jv_undef(n->name);
    return PL_OK;
  }
  case PL_JN_LIST:
  case PL_JN_TUPLE:
    return ev_seq(c, n, f, out);
  case PL_JN_DICT:
    return ev_dict(c, n, f, out);
  case PL_JN_ATTR:
    return ev_attr(c, n, f, out);
  case PL_JN_ITEM:
    return ev_item(c, n, f, out);
  case PL_JN_SLICE:
    return ev_slice(c, n, f, out);
  case PL_JN_CALL:
    return eval_call(c, n, f, NULL, out);
  case PL_JN_FILTER:
    return eval_filter(c, n, f, NULL, out);
  case PL_JN_TEST:
    return ev_test(c, n, f, out);
  case PL_JN_NEG:
  case PL_JN_POS:
  case PL_JN_NOT:
    return ev_unary(c, n, f, out);
  case PL_JN_AND:
  case PL_JN_OR:
    PL_TRY(eval(c, n->a, f, out));
    if (n->kind == PL_JN_AND ? !pl_jv_truthy(*out) : pl_jv_truthy(*out))
      return PL_OK;
    return eval(c, n->b, f, out);
  case PL_JN_BINOP:
    return ev_binop(c, n, f, out);
  case PL_JN_CONCAT:
    return ev_concat(c, n, f, out);
  case PL_JN_COMPARE:
    return ev_compare(c, n, f, out);
  case PL_JN_COND:
    return ev_cond(c, n, f, out);
  default:
    return pl_jerr(c, "statement used as an expression");
  }
}

static int enter(pl_jctx *c, const pl_jnode *n) {
  if (++c->steps > c->max_steps)
    return pl_fail(PL_ETEMPLATE, "template line %d: exceeded the step limit (%llu)", n->line,
                   (unsigned long long)c->max_steps);
  if (c->depth >= c->max_depth)
    return pl_fail(PL_ETEMPLATE, "template line %d: nested too deeply (limit %d)", n->line,
                   c->max_depth);
  c->depth++;
  return PL_OK;
}

static int eval(pl_jctx *c, const pl_jnode *n, pl_jframe *f, pl_jv *out) {
  PL_TRY(enter(c, n));
  int saved = c->line;
  c->line = n->line;
  int rc = eval_inner(c, n, f, out);
  c->depth--;
  if (rc == PL_OK)
    c->line = saved;
  return rc;
}

/* ---- statements ------------------------------------------------------------------------- */

static int emit(pl_jctx *c, pl_jv v) {
  if (v.type == PL_JV_STR)
    return pl_jbuf_put(c->out, v.u.s.p, v.u.s.n);
  return pl_jv_write_str(c->out, v);
}

static int bind_targets(pl_jctx *c, const pl_jnode *n, pl_jframe *f, pl_jv v) {
  if (!n->flag)
    return pl_jframe_set(c, f, n->names[0], v);
  pl_jlist *items;
  if (v.type == PL_JV_LIST)
    items = v.u.l;
  else if (v.type == PL_JV_STR || v.type == PL_JV_DICT)
    PL_TRY(pl_jinja_iterate(c, v, &items));
  else
    return pl_jerr(c, "cannot unpack non-iterable %s object", pl_jv_type_name(v));
  if (items->n != n->nnames)
    return pl_jerr(c, "cannot unpack %zu values into %zu names", items->n, n->nnames);
  for (size_t i = 0; i < n->nnames; i++)
    PL_TRY(pl_jframe_set(c, f, n->names[i], items->v[i]));
  return PL_OK;
}

static NOINLINE int exec_for(pl_jctx *c, const pl_jnode *n, pl_jframe *f) {
  pl_jv it = {0};
  PL_TRY(eval(c, n->a, f, &it));
  c->line = n->line;
  pl_jlist *items;
  PL_TRY(pl_jinja_iterate(c, it, &items));
  pl_jframe *frame = pl_jframe_new(c, f);
  if (!frame)
    return pl_jv_oom(&c->arena);
  if (n->b) { /* `for x in xs if cond`: filter first, so loop.length counts what remains */
    pl_jlist *kept = pl_jlist_new(&c->arena, 0);
    if (!kept)
      return pl_jv_oom(&c->arena);
    for (size_t i = 0; i < items->n; i++) {
      frame->n = 0;
      PL_TRY(bind_targets(c, n, frame, items->v[i]));
      pl_jv t = {0};
      PL_TRY(eval(c, n->b, frame, &t));
      if (pl_jv_truthy(t))
        PL_TRY(pl_jlist_push(&c->arena, kept, items->v[i]));
    }
    items = kept;
  }
  if (items->n == 0) {
    if (n->d) {
      frame->n = 0;
      return exec(c, n->d, frame);
    }
    return PL_OK;
  }
  /* One loop object per loop, advanced each iteration (iterations allocate nothing). */
  pl_jloop *lp = pl_jalloc(c, sizeof *lp);
  if (!lp)
    return pl_jv_oom(&c->arena);
  lp->items = items;
  lp->depth = 1; /* loop.depth counts recursive-loop levels only; nested loops are all 1 */
  pl_jv lv = {.type = PL_JV_LOOP};
  lv.u.loop = lp;
  c->loop_depth++;
  int rc = PL_OK;
  for (size_t i = 0; i < items->n; i++) {
    /* A fresh scope per iteration: sets inside the body start from the outer values. */
    frame->n = 0;
    lp->index0 = i;
    if ((rc = bind_targets(c, n, frame, items->v[i])) < 0 ||
        (rc = pl_jframe_set(c, frame, "loop", lv)) < 0)
      break;
    rc = exec(c, n->c, frame);
    if (rc < 0)
      break;
    if (rc == JX_BREAK) {
      rc = PL_OK;
      break;
    }
    rc = PL_OK;
  }
  c->loop_depth--;
  return rc;
}

/* Values are immutable and only frames and namespaces are ever written, so when the
 * expression stored nothing, what it made is unreachable once written: give it back. A long
 * chat's `'<|im_start|>' + m.role + ... + m.content` copies then live one at a time. */
static NOINLINE int ex_output(pl_jctx *c, const pl_jnode *n, pl_jframe *f) {
  pl_jarena_mark m = pl_jarena_mark_get(&c->arena);
  unsigned long long stores = c->stores;
  pl_jv v = {0};
  PL_TRY(eval(c, n->a, f, &v));
  int rc = emit(c, v);
  if (rc == PL_OK && c->stores == stores)
    pl_jarena_release(&c->arena, &m);
  return rc;
}

static NOINLINE int ex_if(pl_jctx *c, const pl_jnode *n, pl_jframe *f) {
  pl_jv t = {0};
  PL_TRY(eval(c, n->a, f, &t));
  if (pl_jv_truthy(t))
    return exec(c, n->b, f);
  return n->c ? exec(c, n->c, f) : PL_OK;
}

static NOINLINE int ex_set(pl_jctx *c, const pl_jnode *n, pl_jframe *f) {
  pl_jv v = {0};
  PL_TRY(eval(c, n->a, f, &v));
  return bind_targets(c, n, f, v);
}

static NOINLINE int ex_set_ns(pl_jctx *c, const pl_jnode *n, pl_jframe *f) {
  const pl_jv *ns = pl_jframe_lookup(f, n->names[0]);
  if (!ns || ns->type != PL_JV_NS)
    return pl_jerr(c, "cannot assign attribute on non-namespace object '%s'", n->names[0]);
  pl_jv v = {0};
  PL_TRY(eval(c, n->a, f, &v));
  c->stores++;
  return pl_jdict_set(&c->arena, ns->u.d, pl_jv_str(n->name, strlen(n->name)), v);
}

/* {% set x %}...{% endset %} and {% filter f %}...{% endfilter %}: capture, then filter. */
static NOINLINE int ex_capture(pl_jctx *c, const pl_jnode *n, pl_jframe *f) {
  pl_jframe *inner = pl_jframe_new(c, f);
  if (!inner)
    return pl_jv_oom(&c->arena);
  pl_jv body = {0}, v = {0};
  PL_TRY(capture(c, n->b, inner, &body));
  if (n->a)
    PL_TRY(eval_filter(c, n->a, f, &body, &v));
  else
    v = body;
  if (n->kind == PL_JN_SET_BLOCK)
    return pl_jframe_set(c, f, n->names[0], v);
  return emit(c, v);
}

static NOINLINE int ex_macro(pl_jctx *c, const pl_jnode *n, pl_jframe *f) {
  pl_jfunc *fn = pl_jarena_calloc(&c->arena, sizeof *fn);
  if (!fn)
    return pl_jv_oom(&c->arena);
  fn->name = n->kind == PL_JN_MACRO ? n->name : "caller";
  fn->node = n;
  fn->closure = f;
  pl_jv v = {.type = PL_JV_FUNC};
  v.u.fn = fn;
  if (n->kind == PL_JN_MACRO)
    return pl_jframe_set(c, f, n->name, v);
  /* {% call m(...) %}body{% endcall %}: m gets `caller`, a macro running body here. */
  pl_jv res = {0};
  PL_TRY(eval_call(c, n->a, f, &v, &res));
  return emit(c, res);
}

static NOINLINE int ex_with(pl_jctx *c, const pl_jnode *n, pl_jframe *f) {
  pl_jframe *inner = pl_jframe_new(c, f);
  if (!inner)
    return pl_jv_oom(&c->arena);
  for (size_t i = 0; i < n->nnames; i++) {
    pl_jv v = {0};
    PL_TRY(eval(c, n->kids[i], f, &v));
    PL_TRY(pl_jframe_set(c, inner, n->names[i], v));
  }
  return exec(c, n->b, inner);
}

static int exec_inner(pl_jctx *c, const pl_jnode *n, pl_jframe *f) {
  switch (n->kind) {
  case PL_JN_BODY:
    for (size_t i = 0; i < n->nkids; i++) {
      int rc = exec(c, n->kids[i], f);
      if (rc != PL_OK)
        return rc;
    }
    return PL_OK;
  case PL_JN_TEXT:
    return pl_jbuf_put(c->out, n->lit.u.s.p, n->lit.u.s.n);
  case PL_JN_OUTPUT:
    return ex_output(c, n, f);
  case PL_JN_IF:
    return ex_if(c, n, f);
  case PL_JN_FOR:
    return exec_for(c, n, f);
  case PL_JN_SET:
    return ex_set(c, n, f);
  case PL_JN_SET_NS:
    return ex_set_ns(c, n, f);
  case PL_JN_SET_BLOCK:
  case PL_JN_FILTER_BLOCK:
    return ex_capture(c, n, f);
  case PL_JN_MACRO:
  case PL_JN_CALL_BLOCK:
    return ex_macro(c, n, f);
  case PL_JN_WITH:
    return ex_with(c, n, f);
  case PL_JN_BREAK:
    return JX_BREAK;
  case PL_JN_CONTINUE:
    return JX_CONTINUE;
  default:
    return pl_jerr(c, "expression used as a statement");
  }
}

static int exec(pl_jctx *c, const pl_jnode *n, pl_jframe *f) {
  PL_TRY(enter(c, n));
  c->line = n->line;
  int rc = exec_inner(c, n, f);
  c->depth--;
  return rc;
}

int pl_jinja_exec(pl_jctx *c, const pl_jnode *root, pl_jframe *f) {
  int rc = exec(c, root, f);
  return rc > 0 ? PL_OK : rc;
}
