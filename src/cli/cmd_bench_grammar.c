/* `pagellm bench grammar`: the cost of constrained decoding's token masks on a real
 * vocabulary (e.g. Llama 3's 128k tokenizer.json). A random walk through a JSON-schema grammar
 * picks uniformly among the allowed tokens (so it spends most steps inside strings, the widest
 * masks); the first walk fills the grammar's token tables (cold), the next ones reuse them
 * (warm, as every request after the first with the same schema). Prints per-mask times. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "grammar/grammar.h"
#include "pagellm.h"
#include "tokenizer/tokenizer.h"
#include "util/alloc.h"

static const char *DEFAULT_SCHEMA =
    "{\"type\":\"object\",\"properties\":{\"name\":{\"type\":\"string\"},\"age\":{\"type\":"
    "\"integer\",\"minimum\":0,\"maximum\":150},\"email\":{\"type\":\"string\",\"format\":"
    "\"email\"},\"tags\":{\"type\":\"array\",\"items\":{\"type\":\"string\"}},\"address\":{"
    "\"type\":\"object\",\"properties\":{\"street\":{\"type\":\"string\"},\"zip\":{\"type\":"
    "\"string\",\"pattern\":\"[0-9]{5}\"}},\"required\":[\"street\",\"zip\"]}},\"required\":["
    "\"name\",\"age\",\"tags\",\"address\"]}";

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec * 1e-9;
}

static int cmp_d(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

int pl_cmd_bench_grammar(int argc, char **argv) {
  const char *tok_path = NULL, *schema_text = DEFAULT_SCHEMA;
  int walks = 5, steps = 200;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--tokenizer") && i + 1 < argc) tok_path = argv[++i];
    else if (!strcmp(argv[i], "--schema") && i + 1 < argc) schema_text = argv[++i];
    else if (!strcmp(argv[i], "--walks") && i + 1 < argc) walks = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--steps") && i + 1 < argc) steps = atoi(argv[++i]);
    else {
      fprintf(stderr, "usage: pagellm bench grammar --tokenizer tokenizer.json|model.gguf "
                      "[--schema JSON] [--walks N] [--steps N]\n");
      return 2;
    }
  }
  if (!tok_path || walks < 2 || steps < 1) {
    fprintf(stderr, "pagellm bench grammar: --tokenizer is required (walks >= 2)\n");
    return 2;
  }
  struct pl_tokenizer *t;
  if (pl_tokenizer_load(tok_path, &t) < 0) {
    fprintf(stderr, "pagellm bench grammar: %s\n", pl_last_error());
    return 1;
  }
  json_error_t je;
  json_t *js = json_loads(schema_text, 0, &je);
  pl_gconv_error ce;
  char *gb = js ? pl_json_schema_to_gbnf(js, &ce) : NULL;
  json_decref(js);
  pl_grammar *g = NULL;
  pl_vocab *v = NULL;
  if (!gb || pl_grammar_compile(gb, strlen(gb), &g) < 0 || pl_vocab_create(t, &v) < 0) {
    fprintf(stderr, "pagellm bench grammar: %s\n", js || gb ? pl_last_error() : je.text);
    pl_free(gb);
    pl_grammar_free(g);
    pl_tokenizer_free(t);
    return 1;
  }
  int V = pl_vocab_size(v), words = (V + 63) / 64;
  uint64_t *mask = pl_malloc((size_t)words * 8);
  int32_t *pick = pl_malloc((size_t)V * 4);
  double *tm = pl_malloc((size_t)steps * walks * sizeof *tm);
  uint64_t r = 12345;
  int n_warm = 0;
  double cold_total = 0;
  long allowed_sum = 0;
  for (int w = 0; w < walks; w++) {
    pl_gmatch *m;
    if (pl_gmatch_create(g, v, &m) < 0)
      break;
    r = 12345 + (uint64_t)w * 77; /* the same walk each time: warm walks reuse cold's tables */
    if (w > 1)
      r += (uint64_t)w; /* ...and the later ones wander elsewhere too */
    for (int s = 0; s < steps; s++) {
      double t0 = now();
      int n = pl_gmatch_mask(m, mask);
      double dt = now() - t0;
      if (w == 0)
        cold_total += dt;
      else
        tm[n_warm++] = dt;
      if (n <= 0)
        break;
      allowed_sum += n;
      int c = 0;
      for (int i = 0; i < V; i++)
        if (mask[i >> 6] >> (i & 63) & 1)
          pick[c++] = i;
      r ^= r << 13; r ^= r >> 7; r ^= r << 17;
      int32_t tok = pick[r % (uint64_t)c];
      if (pl_gmatch_accept(m, tok) < 0 || pl_gmatch_done(m))
        break;
    }
    pl_gmatch_free(m);
  }
  qsort(tm, (size_t)n_warm, sizeof *tm, cmp_d);
  double sum = 0;
  for (int i = 0; i < n_warm; i++)
    sum += tm[i];
  printf("vocabulary %d tokens, grammar %zu KiB with tables\n", V, pl_grammar_bytes(g) / 1024);
  printf("cold walk (fills tables): %.1f ms in all\n", cold_total * 1e3);
  if (n_warm) {
    double mean = sum / n_warm;
    printf("warm masks: %d, mean %.3f ms, p50 %.3f ms, p99 %.3f ms, max %.3f ms; mean allowed "
           "tokens %.0f\n", n_warm, mean * 1e3, tm[n_warm / 2] * 1e3,
           tm[(int)(n_warm * 0.99)] * 1e3, tm[n_warm - 1] * 1e3,
           (double)allowed_sum / (walks * steps));
    printf("batch of 32 constrained samples: %.2f ms of masks per step (mean)\n", mean * 32e3);
  }
  pl_free(mask);
  pl_free(pick);
  pl_free(tm);
  pl_free(gb);
  pl_grammar_free(g);
  pl_vocab_free(v);
  pl_tokenizer_free(t);
  return 0;
}
