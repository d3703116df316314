#include "cli/workload.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct { uint64_t s; } wl_rng;
static uint64_t wl_next(wl_rng *r) {
  r->s ^= r->s << 13;
  r->s ^= r->s >> 7;
  r->s ^= r->s << 17;
  return r->s;
}
static double wl_unif(wl_rng *r) { return ((wl_next(r) >> 11) + 0.5) * (1.0 / 9007199254740992.0); }
static double wl_normal(wl_rng *r) {
  return sqrt(-2 * log(wl_unif(r))) * cos(2 * M_PI * wl_unif(r));
}
/* lognormal with the given mean: mu = ln(mean) - sigma^2 / 2 */
static int wl_lognormal(wl_rng *r, double mean, double sigma) {
  double mu = log(mean) - sigma * sigma / 2;
  return (int)lround(exp(mu + sigma * wl_normal(r)));
}

int pl_workload_known(const char *n) {
  return !strcmp(n, "sharegpt-like") || !strcmp(n, "alpaca-like") || !strcmp(n, "shared-prefix") ||
         !strcmp(n, "long-context") || !strcmp(n, "fixed") || !strcmp(n, "edit");
}

static int clampi(int v, int lo, int hi) { return v < lo ? lo : v > hi ? hi : v; }

pl_wl_req *pl_workload_make(const pl_wl_spec *sp) {
  if (!pl_workload_known(sp->name)) {
    fprintf(stderr, "pagellm: unknown workload '%s' (sharegpt-like, alpaca-like, shared-prefix, "
                    "long-context, fixed, edit)\n", sp->name);
    return NULL;
  }
  wl_rng rng = {sp->seed * 0x9E3779B97F4A7C15ull + 0x1234567};
  int lo_id = sp->n_vocab > 300 ? 259 : 1, span = sp->n_vocab - lo_id;
  int mml = sp->max_model_len;
  pl_wl_req *r = calloc((size_t)sp->n, sizeof *r);
  int prefix_len = sp->prefix_len > 0 ? sp->prefix_len : 512;
  if (prefix_len > mml / 2)
    prefix_len = mml / 2;
  int32_t *prefix = malloc(sizeof(int32_t) * (size_t)(prefix_len + 1));
  for (int i = 0; i < prefix_len; i++)
    prefix[i] = lo_id + (int32_t)(wl_next(&rng) % (uint64_t)span);
  for (int i = 0; i < sp->n; i++) {
    int in = 0, out = 0, shared = 0;
    if (!strcmp(sp->name, "sharegpt-like")) {
      in = wl_lognormal(&rng, 161, 1.0);
      out = wl_lognormal(&rng, 338, 0.8);
    } else if (!strcmp(sp->name, "alpaca-like")) {
      in = wl_lognormal(&rng, 19, 0.6);
      out = wl_lognormal(&rng, 58, 0.7);
    } else if (!strcmp(sp->name, "shared-prefix")) {
      shared = prefix_len;
      in = prefix_len + 20 + (int)(wl_next(&rng) % 21);
      out = 32 + (int)(wl_next(&rng) % 33);
    } else if (!strcmp(sp->name, "long-context")) {
      out = 64;
      in = (int)((0.85 + 0.10 * wl_unif(&rng)) * (mml - out));
    } else if (!strcmp(sp->name, "edit")) {
      /* "rewrite this text": the text, then its first quarter as the start of the answer;
       * the output is the rest of the text again (what an editing model mostly copies) */
      int len = 96 + (int)(wl_next(&rng) % 97);
      if (len > (mml - 4) / 2)
        len = (mml - 4) / 2;
      int head = len / 4;
      in = 1 + len + head;
      out = len - head;
      out = clampi(out, 1, mml - 2);
      in = clampi(in, 2, mml - out);
      r[i].n_prompt = in;
      r[i].max_tokens = out;
      r[i].prompt = malloc(sizeof(int32_t) * (size_t)in);
      int k = 0;
      if (sp->bos >= 0)
        r[i].prompt[k++] = sp->bos;
      int t0 = k;
      for (; k < in && k - t0 < len; k++)
        r[i].prompt[k] = lo_id + (int32_t)(wl_next(&rng) % (uint64_t)span);
      for (int j = 0; k < in; k++, j++)
        r[i].prompt[k] = r[i].prompt[t0 + j];
      continue;
    } else {
      in = sp->input_len;
      out = sp->output_len;
    }
    out = clampi(out, 1, mml - 2);
    in = clampi(in, 2, mml - out);
    r[i].n_prompt = in;
    r[i].max_tokens = out;
    r[i].prompt = malloc(sizeof(int32_t) * (size_t)in);
    int k = 0;
    if (sp->bos >= 0)
      r[i].prompt[k++] = sp->bos;
    for (; k < in; k++)
      r[i].prompt[k] = (k - (sp->bos >= 0) < shared && k - (sp->bos >= 0) < prefix_len)
                           ? prefix[k - (sp->bos >= 0)]
                           : lo_id + (int32_t)(wl_next(&rng) % (uint64_t)span);
  }
  free(prefix);
  return r;
}

void pl_workload_free(pl_wl_req *r, int n) {
  if (!r)
    return;
  for (int i = 0; i < n; i++)
    free(r[i].prompt);
  free(r);
}
