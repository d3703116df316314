/* JSON schema -> GBNF (see grammar.h). Each schema node becomes one rule; $ref targets get
 * their rule before their body is written, so recursive schemas work.
 *
 * Choices made for generation (all outputs still validate against the schema):
 * - objects list their properties in the schema's order; additionalProperties absent means
 *   false (as OpenAI's strict mode and xgrammar do); true or a schema allows extra keys after
 *   the declared ones;
 * - whitespace between tokens is one space or a newline and up to 16 spaces, integers at most 16 digits;
 * - a number with bounds is generated as an integer within them. */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "grammar/grammar.h"
#include "util/alloc.h"

#define MAX_REFS 256

typedef struct conv {
  pl_gbuf rules;
  int next;
  const json_t *root;
  char *ref_name[MAX_REFS];
  char ref_rule[MAX_REFS][16];
  int n_refs;
  pl_gconv_error *err;
  int failed;
  int depth;
} conv;

static const char *BASE =
    "ws ::= \" \"? | \"\\n\" \" \"{0,16}\n"
    "char ::= [^\"\\\\\\x00-\\x1F\\x7F] | \"\\\\\" ([\"\\\\/bfnrt] | \"u\" ([0-9a-cA-Ce-fE-F] "
    "[0-9a-fA-F]{3} | [dD] [0-7] [0-9a-fA-F]{2}))\n"
    "string ::= \"\\\"\" char* \"\\\"\"\n"
    "integer ::= \"-\"? (\"0\" | [1-9] [0-9]{0,15})\n"
    /* exponents up to 99: every number the grammar allows is a finite double (jansson refuses
     * 1e999 as an overflow, so a constrained output or tool call could fail to parse) */
    "number ::= integer (\".\" [0-9]{1,16})? ([eE] [-+]? [1-9] [0-9]?)?\n"
    "boolean ::= \"true\" | \"false\"\n"
    "null ::= \"null\"\n"
    "value ::= object | array | string | number | boolean | null\n"
    "object ::= \"{\" ws (string ws \":\" ws value ws (\",\" ws string ws \":\" ws value ws)*)? "
    "\"}\"\n"
    "array ::= \"[\" ws (value ws (\",\" ws value ws)*)? \"]\"\n";

static int fail(conv *c, const char *path, const char *fmt, const char *what) {
  if (!c->failed) {
    char m[300];
    snprintf(m, sizeof m, fmt, what);
    snprintf(c->err->message, sizeof c->err->message, "%s (at %s)", m, path[0] ? path : "#");
  }
  c->failed = 1;
  return -1;
}

static void new_name(conv *c, char *out) { snprintf(out, 16, "s%d", c->next++); }

static void def_rule(conv *c, const char *name, const pl_gbuf *body) {
  if (body->oom)
    c->rules.oom = 1; /* a cut rule would be a wrong grammar: fail the whole conversion */
  pl_gbuf_printf(&c->rules, "%s ::= ", name);
  pl_gbuf_putn(&c->rules, body->p ? body->p : "", body->len);
  pl_gbuf_put(&c->rules, "\n");
}

static int gen(conv *c, const json_t *s, const char *path, char *name);

/* ---- integer ranges ----------------------------------------------------------------------- */

/* Digits strings lo..hi of equal width (leading zeros allowed). */
static void fixed_range(pl_gbuf *b, const char *lo, const char *hi, int n) {
  if (n == 0)
    return;
  int all0 = 1, all9 = 1;
  for (int i = 1; i < n; i++) {
    all0 &= lo[i] == '0';
    all9 &= hi[i] == '9';
  }
  if (lo[0] == hi[0]) {
    pl_gbuf_printf(b, "\"%c\" ", lo[0]);
    fixed_range(b, lo + 1, hi + 1, n - 1);
    return;
  }
  if (all0 && all9) {
    pl_gbuf_printf(b, "[%c-%c]", lo[0], hi[0]);
    if (n > 1)
      pl_gbuf_printf(b, " [0-9]{%d}", n - 1);
    pl_gbuf_put(b, " ");
    return;
  }
  char nines[24], zeros[24];
  memset(nines, '9', sizeof nines);
  memset(zeros, '0', sizeof zeros);
  pl_gbuf_put(b, "(");
  pl_gbuf_printf(b, "\"%c\" ", lo[0]);
  fixed_range(b, lo + 1, nines, n - 1);
  if (lo[0] + 1 <= hi[0] - 1) {
    pl_gbuf_printf(b, "| [%c-%c]", lo[0] + 1, hi[0] - 1);
    if (n > 1)
      pl_gbuf_printf(b, " [0-9]{%d}", n - 1);
    pl_gbuf_put(b, " ");
  }
  pl_gbuf_printf(b, "| \"%c\" ", hi[0]);
  fixed_range(b, zeros, hi + 1, n - 1);
  pl_gbuf_put(b, ") ");
}

/* Non-negative integers in [lo, hi] without leading zeros. */
static void uint_range(pl_gbuf *b, long long lo, long long hi) {
  int first = 1;
  pl_gbuf_put(b, "(");
  long long p = 1;
  for (int w = 1; w <= 18; w++, p *= 10) {
    long long wlo = w == 1 ? 0 : p, whi = p * 10 - 1;
    long long a = lo > wlo ? lo : wlo, z = hi < whi ? hi : whi;
    if (a > z)
      continue;
    char sa[24], sz[24];
    snprintf(sa, sizeof sa, "%0*lld", w, a);
    snprintf(sz, sizeof sz, "%0*lld", w, z);
    if (!first)
      pl_gbuf_put(b, "| ");
    first = 0;
    fixed_range(b, sa, sz, w);
  }
  pl_gbuf_put(b, ")");
}

#define INT_LIM 9999999999999999LL /* 16 digits */

static int int_bounds(conv *c, const json_t *s, const char *path, long long *lo, long long *hi) {
  *lo = -INT_LIM;
  *hi = INT_LIM;
  const char *keys[4] = {"minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum"};
  for (int i = 0; i < 4; i++) {
    const json_t *v = json_object_get(s, keys[i]);
    if (!v)
      continue;
    if (!json_is_number(v))
      return fail(c, path, "'%s' must be a number", keys[i]);
    double d = json_number_value(v);
    /* clamp to +-1e16 (INT_LIM + 1, exact in a double) so the casts below cannot overflow; a
     * bound there leaves *lo / *hi at +-INT_LIM */
    if (d < -1e16) d = -1e16;
    if (d > 1e16) d = 1e16;
    long long x;
    if (i == 0) { x = (long long)ceil(d); if (x > *lo) *lo = x; }
    if (i == 1) { x = (long long)floor(d) + 1; if (x > *lo) *lo = x; }
    if (i == 2) { x = (long long)floor(d); if (x < *hi) *hi = x; }
    if (i == 3) { x = (long long)ceil(d) - 1; if (x < *hi) *hi = x; }
  }
  if (*lo > *hi)
    return fail(c, path, "%s: no integer satisfies the bounds", "number");
  return 0;
}

static void int_range(pl_gbuf *b, long long lo, long long hi) {
  int any = 0;
  pl_gbuf_put(b, "(");
  if (lo < 0) {
    long long nlo = hi < 0 ? -hi : 1, nhi = -lo;
    pl_gbuf_put(b, "\"-\" ");
    uint_range(b, nlo, nhi);
    any = 1;
  }
  if (hi >= 0) {
    if (any)
      pl_gbuf_put(b, " | ");
    uint_range(b, lo < 0 ? 0 : lo, hi);
  }
  pl_gbuf_put(b, ")");
}

/* ---- keywords ------------------------------------------------------------------------------ */

static const char *const KNOWN[] = {
    "type", "properties", "required", "additionalProperties", "items", "minItems", "maxItems",
    "enum", "const", "anyOf", "oneOf", "$ref", "$defs", "definitions", "pattern", "format",
    "minLength", "maxLength", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum",
    "title", "description", "$schema", "$id", "default", "examples", "$comment", "strict",
    "deprecated", "readOnly", "writeOnly", NULL};

static int check_keywords(conv *c, const json_t *s, const char *path) {
  const char *k;
  json_t *v;
  json_object_foreach((json_t *)s, k, v) {
    int ok = 0;
    for (const char *const *p = KNOWN; *p; p++)
      ok |= !strcmp(*p, k);
    if (!ok)
      return fail(c, path, "unsupported JSON schema keyword '%s'", k);
  }
  return 0;
}

static const json_t *resolve_ref(conv *c, const char *ref, const char *path) {
  if (!strcmp(ref, "#"))
    return c->root;
  const char *pre[2] = {"#/$defs/", "#/definitions/"};
  for (int i = 0; i < 2; i++) {
    size_t n = strlen(pre[i]);
    if (!strncmp(ref, pre[i], n)) {
      const json_t *d = json_object_get(c->root, i ? "definitions" : "$defs");
      const json_t *t = json_object_get(d, ref + n);
      if (t)
        return t;
    }
  }
  fail(c, path, "unresolvable $ref '%s' (only #, #/$defs/NAME and #/definitions/NAME)", ref);
  return NULL;
}

static void sub_path(char *out, size_t n, const char *path, const char *a, const char *b) {
  snprintf(out, n, "%s/%s%s%s", path[0] ? path : "#", a, b ? "/" : "", b ? b : "");
}

static int gen_string(conv *c, const json_t *s, const char *path, pl_gbuf *b) {
  const char *fmt = json_string_value(json_object_get(s, "format"));
  const json_t *pat = json_object_get(s, "pattern");
  if (fmt && pat)
    return fail(c, path, "%s", "'pattern' together with 'format' is not supported");
  if (fmt) {
    static const char *DATE =
        "[0-9]{4} \"-\" ((\"0\" [13578] | \"1\" [02]) \"-\" (\"0\" [1-9] | [12] [0-9] | \"3\" "
        "[01]) | (\"0\" [469] | \"11\") \"-\" (\"0\" [1-9] | [12] [0-9] | \"30\") | \"02-\" "
        "(\"0\" [1-9] | \"1\" [0-9] | \"2\" [0-8]))";
    static const char *TIME = "([01] [0-9] | \"2\" [0-3]) \":\" [0-5] [0-9] \":\" [0-5] [0-9] "
                              "(\".\" [0-9]{1,6})? (\"Z\" | [+-] ([01] [0-9] | \"2\" [0-3]) "
                              "\":\" [0-5] [0-9])";
    pl_gbuf_put(b, "\"\\\"\" ");
    if (!strcmp(fmt, "date"))
      pl_gbuf_put(b, DATE);
    else if (!strcmp(fmt, "time"))
      pl_gbuf_put(b, TIME);
    else if (!strcmp(fmt, "date-time"))
      pl_gbuf_printf(b, "%s \"T\" %s", DATE, TIME);
    else if (!strcmp(fmt, "uuid"))
      pl_gbuf_put(b, "[0-9a-f]{8} \"-\" [0-9a-f]{4} \"-\" [1-5] [0-9a-f]{3} \"-\" [89ab] "
                     "[0-9a-f]{3} \"-\" [0-9a-f]{12}");
    else if (!strcmp(fmt, "email"))
      pl_gbuf_put(b, "[a-z0-9_+-]{1,20} (\".\" [a-z0-9_+-]{1,20}){0,3} \"@\" ([a-z0-9] "
                     "[a-z0-9-]{0,20} [a-z0-9] \".\"){1,3} [a-z]{2,8}");
    else
      return fail(c, path, "unsupported string format '%s'", fmt);
    pl_gbuf_put(b, " \"\\\"\"");
    return 0;
  }
  if (pat) {
    if (!json_is_string(pat))
      return fail(c, path, "%s", "'pattern' must be a string");
    pl_gconv_error e;
    char *g = pl_regex_to_gbnf(json_string_value(pat), &e);
    if (!g)
      return fail(c, path, "pattern: %s", e.message);
    /* the regex's own rules, renamed under a fresh prefix */
    char nm[16];
    new_name(c, nm);
    /* pl_regex_to_gbnf gives one line "root ::= ..." of plain elements */
    const char *body = strstr(g, "::=");
    pl_gbuf_printf(&c->rules, "%s-re ::= %s", nm, body ? body + 3 : "\"\"");
    if (g[strlen(g) - 1] != '\n')
      pl_gbuf_put(&c->rules, "\n");
    pl_free(g);
    pl_gbuf_printf(b, "\"\\\"\" %s-re \"\\\"\"", nm);
    return 0;
  }
  long long mn = 0, mx = -1;
  const json_t *v;
  if ((v = json_object_get(s, "minLength"))) {
    if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > 10000)
      return fail(c, path, "%s", "'minLength' must be an integer in [0, 10000]");
    mn = json_integer_value(v);
  }
  if ((v = json_object_get(s, "maxLength"))) {
    if (!json_is_integer(v) || json_integer_value(v) < mn || json_integer_value(v) > 10000)
      return fail(c, path, "%s", "'maxLength' must be an integer in [minLength, 10000]");
    mx = json_integer_value(v);
  }
  if (mn == 0 && mx < 0)
    pl_gbuf_put(b, "string");
  else if (mx < 0)
    pl_gbuf_printf(b, "\"\\\"\" char{%lld,} \"\\\"\"", mn);
  else
    pl_gbuf_printf(b, "\"\\\"\" char{%lld,%lld} \"\\\"\"", mn, mx);
  return 0;
}

static int gen_object(conv *c, const json_t *s, const char *path, pl_gbuf *b) {
  const json_t *props = json_object_get(s, "properties");
  const json_t *req = json_object_get(s, "required");
  const json_t *add = json_object_get(s, "additionalProperties");
  if (props && !json_is_object(props))
    return fail(c, path, "%s", "'properties' must be an object");
  if (req && !json_is_array(req))
    return fail(c, path, "%s", "'required' must be an array");
  size_t n = props ? json_object_size(props) : 0;
  if (n > 200)
    return fail(c, path, "%s", "more than 200 properties");
  char kv[200][16];
  int is_req[200];
  const char *key;
  json_t *ps;
  size_t i = 0;
  /* json_object_foreach keeps insertion order (jansson >= 2.8 with JSON_PRESERVE_ORDER
   * semantics by default since 2.8) */
  json_object_foreach((json_t *)props, key, ps) {
    char p2[300];
    sub_path(p2, sizeof p2, path, "properties", key);
    char vr[16];
    if (gen(c, ps, p2, vr) < 0)
      return -1;
    new_name(c, kv[i]);
    pl_gbuf kb = {0};
    pl_gbuf *tmp = &kb;
    json_t *ks = json_string(key);
    char *ksj = ks ? json_dumps(ks, JSON_ENCODE_ANY | JSON_COMPACT) : NULL;
    json_decref(ks);
    if (!ksj) {
      pl_free(kb.p);
      return fail(c, path, "%s", "out of memory");
    }
    pl_gbuf_literal(tmp, ksj, strlen(ksj));
    free(ksj);
    pl_gbuf_printf(tmp, " ws \":\" ws %s", vr);
    def_rule(c, kv[i], tmp);
    pl_free(kb.p);
    is_req[i] = 0;
    for (size_t r = 0; r < json_array_size(req); r++)
      if (json_is_string(json_array_get(req, r)) &&
          !strcmp(json_string_value(json_array_get(req, r)), key))
        is_req[i] = 1;
    i++;
  }
  for (size_t r = 0; r < json_array_size(req); r++) {
    const char *rk = json_string_value(json_array_get(req, r));
    if (!rk || !json_object_get(props, rk))
      return fail(c, path, "required property '%s' is not in 'properties'", rk ? rk : "?");
  }
  char extra[16] = "";
  if (add && !json_is_false(add)) {
    char vr[16];
    if (json_is_true(add)) {
      snprintf(vr, sizeof vr, "value");
    } else {
      char p2[300];
      sub_path(p2, sizeof p2, path, "additionalProperties", NULL);
      if (gen(c, add, p2, vr) < 0)
        return -1;
    }
    new_name(c, extra);
    pl_gbuf eb = {0};
    pl_gbuf_printf(&eb, "string ws \":\" ws %s", vr);
    def_rule(c, extra, &eb);
    pl_free(eb.p);
  }
  /* after[i]: props i.. after something was written; first[i]: nothing written yet */
  char after[201][16], first[201][16];
  for (long k = (long)n; k >= 0; k--) {
    new_name(c, after[k]);
    new_name(c, first[k]);
    pl_gbuf a = {0}, f = {0};
    if ((size_t)k == n) {
      if (extra[0]) {
        pl_gbuf_printf(&a, "(\",\" ws %s ws)*", extra);
        pl_gbuf_printf(&f, "(%s ws (\",\" ws %s ws)*)?", extra, extra);
      } else {
        pl_gbuf_put(&a, "\"\"");
        pl_gbuf_put(&f, "\"\"");
      }
    } else if (is_req[k]) {
      pl_gbuf_printf(&a, "\",\" ws %s ws %s", kv[k], after[k + 1]);
      pl_gbuf_printf(&f, "%s ws %s", kv[k], after[k + 1]);
    } else {
      pl_gbuf_printf(&a, "(\",\" ws %s ws)? %s", kv[k], after[k + 1]);
      pl_gbuf_printf(&f, "%s ws %s | %s", kv[k], after[k + 1], first[k + 1]);
    }
    def_rule(c, after[k], &a);
    def_rule(c, first[k], &f);
    pl_free(a.p);
    pl_free(f.p);
  }
  pl_gbuf_printf(b, "\"{\" ws %s \"}\"", first[0]);
  return 0;
}

static int gen_array(conv *c, const json_t *s, const char *path, pl_gbuf *b) {
  const json_t *items = json_object_get(s, "items");
  char vr[16] = "value";
  if (items && !json_is_true(items)) {
    char p2[300];
    sub_path(p2, sizeof p2, path, "items", NULL);
    if (json_is_false(items) || !json_is_object(items))
      return fail(c, path, "%s", "'items' must be a schema object");
    if (gen(c, items, p2, vr) < 0)
      return -1;
  }
  long long mn = 0, mx = -1;
  const json_t *v;
  if ((v = json_object_get(s, "minItems"))) {
    if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > 1000)
      return fail(c, path, "%s", "'minItems' must be an integer in [0, 1000]");
    mn = json_integer_value(v);
  }
  if ((v = json_object_get(s, "maxItems"))) {
    if (!json_is_integer(v) || json_integer_value(v) < mn || json_integer_value(v) > 1000)
      return fail(c, path, "%s", "'maxItems' must be an integer in [minItems, 1000]");
    mx = json_integer_value(v);
  }
  char it[16];
  new_name(c, it);
  pl_gbuf ib = {0};
  pl_gbuf_printf(&ib, "\",\" ws %s ws", vr);
  def_rule(c, it, &ib);
  pl_free(ib.p);
  if (mx == 0) {
    pl_gbuf_put(b, "\"[\" ws \"]\"");
  } else {
    long long rmin = mn > 0 ? mn - 1 : 0;
    pl_gbuf_printf(b, "\"[\" ws %s%s ws %s{%lld,", mn > 0 ? "(" : "(", vr, it, rmin);
    if (mx > 0)
      pl_gbuf_printf(b, "%lld}", mx - 1);
    else
      pl_gbuf_put(b, "}");
    pl_gbuf_put(b, mn > 0 ? ") \"]\"" : ")? \"]\"");
  }
  return 0;
}

static int gen_type(conv *c, const json_t *s, const char *t, const char *path, pl_gbuf *b) {
  if (!strcmp(t, "object"))
    return gen_object(c, s, path, b);
  if (!strcmp(t, "array"))
    return gen_array(c, s, path, b);
  if (!strcmp(t, "string"))
    return gen_string(c, s, path, b);
  int has_bounds = json_object_get(s, "minimum") || json_object_get(s, "maximum") ||
                   json_object_get(s, "exclusiveMinimum") ||
                   json_object_get(s, "exclusiveMaximum");
  if (!strcmp(t, "integer") || !strcmp(t, "number")) {
    if (!has_bounds) {
      pl_gbuf_put(b, t);
      return 0;
    }
    long long lo, hi;
    if (int_bounds(c, s, path, &lo, &hi) < 0)
      return -1;
    int_range(b, lo, hi);
    return 0;
  }
  if (!strcmp(t, "boolean") || !strcmp(t, "null")) {
    pl_gbuf_put(b, t);
    return 0;
  }
  return fail(c, path, "unsupported type '%s'", t);
}

/* Write the rule for schema s; its name into `name`. */
static int gen(conv *c, const json_t *s, const char *path, char *name) {
  if (c->failed)
    return -1;
  if (++c->depth > 64)
    return fail(c, path, "%s", "schema nested deeper than 64 levels");
  if (json_is_true(s) || (json_is_object(s) && json_object_size(s) == 0)) {
    snprintf(name, 16, "value");
    c->depth--;
    return 0;
  }
  if (!json_is_object(s))
    return fail(c, path, "%s", "a schema must be an object or true");
  if (check_keywords(c, s, path) < 0)
    return -1;
  const json_t *ref = json_object_get(s, "$ref");
  if (ref) {
    if (!json_is_string(ref))
      return fail(c, path, "%s", "'$ref' must be a string");
    const char *r = json_string_value(ref);
    for (int i = 0; i < c->n_refs; i++)
      if (!strcmp(c->ref_name[i], r)) {
        snprintf(name, 16, "%s", c->ref_rule[i]);
        c->depth--;
        return 0;
      }
    const json_t *t = resolve_ref(c, r, path);
    if (!t)
      return -1;
    if (c->n_refs == MAX_REFS)
      return fail(c, path, "%s", "too many $ref targets");
    int k = c->n_refs++;
    c->ref_name[k] = pl_strdup(r);
    new_name(c, c->ref_rule[k]);
    snprintf(name, 16, "%s", c->ref_rule[k]);
    char inner[16];
    char p2[300];
    snprintf(p2, sizeof p2, "%s", r);
    if (gen(c, t, p2, inner) < 0)
      return -1;
    pl_gbuf_printf(&c->rules, "%s ::= %s\n", c->ref_rule[k], inner);
    c->depth--;
    return 0;
  }
  new_name(c, name);
  pl_gbuf b = {0};
  const json_t *v;
  int rc = 0;
  if ((v = json_object_get(s, "const"))) {
    char *j = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
    if (j)
      pl_gbuf_literal(&b, j, strlen(j));
    free(j);
  } else if ((v = json_object_get(s, "enum"))) {
    if (!json_is_array(v) || json_array_size(v) == 0)
      rc = fail(c, path, "%s", "'enum' must be a non-empty array");
    for (size_t i = 0; !rc && i < json_array_size(v); i++) {
      char *j = json_dumps(json_array_get(v, i), JSON_ENCODE_ANY | JSON_COMPACT);
      if (i)
        pl_gbuf_put(&b, " | ");
      if (j)
        pl_gbuf_literal(&b, j, strlen(j));
      free(j);
    }
  } else if ((v = json_object_get(s, "anyOf")) || (v = json_object_get(s, "oneOf"))) {
    if (!json_is_array(v) || json_array_size(v) == 0)
      rc = fail(c, path, "%s", "'anyOf'/'oneOf' must be a non-empty array");
    for (size_t i = 0; !rc && i < json_array_size(v); i++) {
      char p2[300], idx[16], sub[16];
      snprintf(idx, sizeof idx, "%zu", i);
      sub_path(p2, sizeof p2, path, json_object_get(s, "anyOf") ? "anyOf" : "oneOf", idx);
      if (gen(c, json_array_get(v, i), p2, sub) < 0)
        rc = -1;
      else
        pl_gbuf_printf(&b, "%s%s", i ? " | " : "", sub);
    }
  } else if ((v = json_object_get(s, "type"))) {
    if (json_is_string(v)) {
      rc = gen_type(c, s, json_string_value(v), path, &b);
    } else if (json_is_array(v) && json_array_size(v) > 0) {
      for (size_t i = 0; !rc && i < json_array_size(v); i++) {
        const char *t = json_string_value(json_array_get(v, i));
        if (!t) {
          rc = fail(c, path, "%s", "'type' entries must be strings");
          break;
        }
        if (i)
          pl_gbuf_put(&b, " | ");
        pl_gbuf_put(&b, "(");
        rc = gen_type(c, s, t, path, &b);
        pl_gbuf_put(&b, ")");
      }
    } else {
      rc = fail(c, path, "%s", "'type' must be a string or an array of strings");
    }
  } else if (json_object_get(s, "properties")) {
    rc = gen_object(c, s, path, &b);
  } else {
    pl_gbuf_put(&b, "value");
  }
  if (!rc && !c->failed)
    def_rule(c, name, &b);
  pl_free(b.p);
  c->depth--;
  return c->failed ? -1 : 0;
}

char *pl_json_schema_to_gbnf(const void *schema, pl_gconv_error *err) {
  conv c = {.root = schema, .err = err};
  err->message[0] = 0;
  pl_gbuf_put(&c.rules, BASE);
  char top[16];
  int rc = gen(&c, schema, "", top);
  for (int i = 0; i < c.n_refs; i++)
    pl_free(c.ref_name[i]);
  if (rc < 0 || c.rules.oom) {
    if (c.rules.oom)
      snprintf(err->message, sizeof err->message, "out of memory");
    pl_free(c.rules.p);
    return NULL;
  }
  pl_gbuf_printf(&c.rules, "root ::= %s\n", top);
  if (c.rules.oom) {
    pl_free(c.rules.p);
    snprintf(err->message, sizeof err->message, "out of memory");
    return NULL;
  }
  return c.rules.p;
}

char *pl_json_object_gbnf(void) {
  pl_gbuf b = {0};
  pl_gbuf_put(&b, BASE);
  pl_gbuf_put(&b, "root ::= object\n");
  return b.oom ? (pl_free(b.p), NULL) : b.p;
}

char *pl_choice_to_gbnf(const char *const *choices, int n, pl_gconv_error *err) {
  if (n <= 0) {
    snprintf(err->message, sizeof err->message, "no choices given");
    return NULL;
  }
  pl_gbuf b = {0};
  pl_gbuf_put(&b, "root ::= ");
  for (int i = 0; i < n; i++) {
    if (i)
      pl_gbuf_put(&b, " | ");
    if (!choices[i][0])
      pl_gbuf_put(&b, "\"\"");
    else
      pl_gbuf_literal(&b, choices[i], strlen(choices[i]));
  }
  pl_gbuf_put(&b, "\n");
  if (b.oom) {
    pl_free(b.p);
    snprintf(err->message, sizeof err->message, "out of memory");
    return NULL;
  }
  return b.p;
}
