/* Template lifetime and the render driver (see jinja.h): lex + parse into the template's arena;
 * per render, set up the context (globals frame <- variables frame <- template frame), convert
 * the JSON variables, run the body, and hand back the output buffer. */
#include <string.h>

#include "template/jinja.h"
#include "template/jinja_eval.h"
#include "util/alloc.h"
#include "util/error.h"

struct pl_jinja_template {
  pl_jarena arena;
  pl_jnode *root;
};

int pl_jinja_template_parse(const char *src, size_t len, pl_jinja_template **out) {
  *out = NULL;
  if (!src)
    return pl_fail(PL_EINVAL, "template: no source");
  pl_jinja_template *t = pl_calloc(1, sizeof *t);
  if (!t)
    return pl_fail(PL_ENOMEM, "template: out of memory");
  pl_jarena_init(&t->arena, 0);
  pl_jtok *toks = NULL;
  size_t ntoks = 0;
  int rc = pl_jinja_lex(&t->arena, src, len, &toks, &ntoks);
  if (rc == PL_OK)
    rc = pl_jinja_parse(&t->arena, toks, ntoks, &t->root);
  pl_free(toks);
  if (rc < 0) {
    pl_jinja_template_free(t);
    return rc;
  }
  *out = t;
  return PL_OK;
}

void pl_jinja_template_free(pl_jinja_template *t) {
  if (!t)
    return;
  pl_jarena_free(&t->arena);
  pl_free(t);
}

static int bind_vars(pl_jctx *c, pl_jframe *f, const json_t *vars) {
  if (!vars)
    return PL_OK;
  if (!json_is_object(vars))
    return pl_fail(PL_EINVAL, "template variables must be a JSON object");
  const char *key;
  json_t *val;
  json_object_foreach((json_t *)vars, key, val) {
    char *name = pl_jarena_strndup(&c->arena, key, strlen(key));
    if (!name)
      return pl_jv_oom(&c->arena);
    pl_jv v = {0};
    PL_TRY(pl_jv_from_json(&c->arena, val, &v));
    PL_TRY(pl_jframe_set(c, f, name, v));
  }
  return PL_OK;
}

/* JSON texts parsed for one render: their strings are borrowed by the values. */
typedef struct parsed_json {
  json_t **v;
  size_t n, cap;
} parsed_json;

static int field_value(pl_jctx *c, parsed_json *pj, const pl_jinja_field *f, pl_jv *out) {
  if (!f->is_json) {
    *out = pl_jv_str(f->val, f->len);
    return PL_OK;
  }
  if (pj->n == pj->cap) {
    size_t cap = pj->cap ? 2 * pj->cap : 16;
    json_t **v = pl_realloc(pj->v, cap * sizeof *v);
    if (!v)
      return pl_fail(PL_ENOMEM, "template: out of memory");
    pj->v = v;
    pj->cap = cap;
  }
  json_error_t je;
  pl_alloc_soft_begin(); /* jansson's lexer cannot survive a failed allocation */
  json_t *j = json_loadb(f->val, f->len, JSON_DECODE_ANY, &je);
  pl_alloc_soft_end();
  if (!j)
    return json_error_code(&je) == json_error_out_of_memory
               ? pl_fail(PL_ENOMEM, "template: out of memory")
               : pl_fail(PL_EINVAL, "template input: '%s' is not valid JSON: %s", f->key, je.text);
  pj->v[pj->n++] = j;
  return pl_jv_from_json(&c->arena, j, out);
}

/* The list of dicts (see pl_jinja_dict), built as pl_jv_from_json builds a JSON array of
 * objects: the same values, strings borrowed. */
static int bind_list(pl_jctx *c, pl_jframe *f, const pl_jinja_render_opts *o, parsed_json *pj) {
  if (!o->list_name)
    return PL_OK;
  pl_jlist *l = pl_jlist_new(&c->arena, o->list_n);
  if (!l)
    return pl_jv_oom(&c->arena);
  for (size_t i = 0; i < o->list_n; i++) {
    const pl_jinja_dict *src = &o->list[i];
    pl_jdict *d = pl_jdict_new(&c->arena, src->n);
    if (!d)
      return pl_jv_oom(&c->arena);
    for (size_t k = 0; k < src->n; k++) {
      const pl_jinja_field *fl = &src->fields[k];
      pl_jv v = {0};
      PL_TRY(field_value(c, pj, fl, &v));
      d->k[d->n] = pl_jv_str(fl->key, strlen(fl->key));
      d->v[d->n] = v;
      d->n++;
    }
    l->v[l->n++] = pl_jv_dict(d);
  }
  char *name = pl_jarena_strndup(&c->arena, o->list_name, strlen(o->list_name));
  if (!name)
    return pl_jv_oom(&c->arena);
  return pl_jframe_set(c, f, name, pl_jv_list(l, 0));
}

int pl_jinja_render(const pl_jinja_template *t, const pl_jinja_render_opts *o, char **out,
                    size_t *out_len) {
  *out = NULL;
  if (out_len)
    *out_len = 0;
  if (!t || !o)
    return pl_fail(PL_EINVAL, "template render: missing template or options");
  pl_jctx c;
  memset(&c, 0, sizeof c);
  c.max_output = o->max_output ? o->max_output : (size_t)64 << 20;
  c.max_steps = o->max_steps ? o->max_steps : 20000000u;
  c.max_depth = o->max_depth > 0 ? o->max_depth : 1000;
  c.max_calls = o->max_calls > 0 ? o->max_calls : 100;
  c.now = o->now;
  pl_jarena_init(&c.arena, o->max_memory ? o->max_memory : (size_t)512 << 20);
  pl_jbuf buf;
  pl_jbuf_init(&buf, c.max_output);
  if (o->max_text && o->max_text < c.max_output) {
    buf.limit = o->max_text;
    buf.over_rc = PL_ETOOLONG;
  }
  c.out = &buf;
  int rc = PL_OK;
  pl_jframe *globals = pl_jframe_new(&c, NULL), *vars = NULL, *top = NULL;
  if (!globals || !(vars = pl_jframe_new(&c, globals)) || !(top = pl_jframe_new(&c, vars)))
    rc = pl_jv_oom(&c.arena);
  c.globals = globals;
  if (rc == PL_OK)
    rc = pl_jinja_install_globals(&c, globals);
  parsed_json pj = {0};
  if (rc == PL_OK)
    rc = bind_vars(&c, vars, o->vars);
  if (rc == PL_OK)
    rc = bind_list(&c, vars, o, &pj);
  if (rc == PL_OK)
    rc = pl_jinja_exec(&c, t->root, top);
  pl_jarena_free(&c.arena);
  for (size_t i = 0; i < pj.n; i++)
    json_decref(pj.v[i]);
  pl_free(pj.v);
  if (rc == PL_OK && !buf.p) { /* nothing was written: still return a string */
    if ((buf.p = pl_malloc(1)))
      buf.p[0] = 0;
    else
      rc = pl_fail(PL_ENOMEM, "template: out of memory");
  }
  if (rc < 0) {
    pl_jbuf_free(&buf);
    return rc;
  }
  *out = buf.p;
  if (out_len)
    *out_len = buf.n;
  return PL_OK;
}
