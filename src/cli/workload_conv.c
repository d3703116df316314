#include "cli/workload_conv.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct { uint64_t s; } cv_rng;
static uint64_t cv_next(cv_rng *r) { /* xorshift64, seeded apart from workload.c's streams */
  r->s ^= r->s << 13;
  r->s ^= r->s >> 7;
  r->s ^= r->s << 17;
  return r->s;
}
static double cv_unif(cv_rng *r) { return ((cv_next(r) >> 11) + 0.5) * (1.0 / 9007199254740992.0); }
static int cv_lognormal(cv_rng *r, double mean, double sigma) {
  double z = sqrt(-2 * log(cv_unif(r))) * cos(2 * M_PI * cv_unif(r));
  return (int)lround(exp(log(mean) - sigma * sigma / 2 + sigma * z));
}
static int clampi(int v, int lo, int hi) { return v < lo ? lo : v > hi ? hi : v; }

int pl_conv_known(const char *n) {
  return !strcmp(n, "multi-turn") || !strcmp(n, "many-system-prompts");
}

static int32_t *ids(cv_rng *r, int n, int n_vocab) {
  int lo = n_vocab > 300 ? 259 : 1, span = n_vocab - lo;
  int32_t *p = malloc(sizeof *p * (size_t)(n > 0 ? n : 1));
  for (int i = 0; p && i < n; i++)
    p[i] = lo + (int32_t)(cv_next(r) % (uint64_t)span);
  return p;
}

int pl_conv_make(const pl_conv_spec *sp, pl_conv_set *s) {
  memset(s, 0, sizeof *s);
  if (!pl_conv_known(sp->name)) {
    fprintf(stderr, "pagellm: unknown conversation workload '%s'\n", sp->name);
    return -1;
  }
  cv_rng rng = {sp->seed * 0xD1B54A32D192ED03ull + 0x9E3779B97F4A7C15ull};
  int mml = sp->max_model_len, multi = !strcmp(sp->name, "multi-turn");
  s->n_system = multi ? 1 : (sp->n_system > 0 ? sp->n_system : 8);
  int sys_len = multi ? 24 : sp->system_len > 0 ? sp->system_len : 512;
  if (sys_len > mml / 2)
    sys_len = mml / 2;
  s->system = calloc((size_t)s->n_system, sizeof *s->system);
  s->system_len = calloc((size_t)s->n_system, sizeof *s->system_len);
  s->req = calloc((size_t)sp->n, sizeof *s->req);
  if (!s->system || !s->system_len || !s->req)
    goto oom;
  for (int k = 0; k < s->n_system; k++) {
    s->system_len[k] = sys_len;
    if (!(s->system[k] = ids(&rng, sys_len, sp->n_vocab)))
      goto oom;
  }
  /* The chat template adds a few tokens per message; keep 10% + 16 tokens of room. */
  int budget = mml - mml / 10 - 16;
  int conv = -1, turns_left = 0, hist = 0;
  for (int i = 0; i < sp->n; i++) {
    pl_conv_req *q = &s->req[i];
    int user, out;
    if (multi) {
      user = clampi(cv_lognormal(&rng, 40, 0.6), 4, mml / 4);
      out = clampi(cv_lognormal(&rng, 64, 0.5), 4, mml / 4);
      if (turns_left == 0 || hist + user + out > budget) { /* a new conversation */
        conv++;
        turns_left = 2 + (int)(cv_next(&rng) % 5);
        hist = sys_len;
        q->dep = -1;
      } else {
        q->dep = i - 1;
      }
      turns_left--;
      hist += user + out;
      q->system = 0;
    } else {
      conv++;
      user = 20 + (int)(cv_next(&rng) % 21);
      out = 32 + (int)(cv_next(&rng) % 33);
      out = clampi(out, 1, budget - sys_len - user > 1 ? budget - sys_len - user : 1);
      q->dep = -1;
      q->system = (int)(cv_next(&rng) % (uint64_t)s->n_system);
    }
    q->conv = conv;
    q->n_user = user;
    q->max_tokens = out;
    if (!(q->user = ids(&rng, user, sp->n_vocab)))
      goto oom;
  }
  s->n = sp->n;
  return 0;
oom:
  s->n = sp->n;
  pl_conv_free(s);
  fprintf(stderr, "pagellm: out of memory building the workload\n");
  return -1;
}

void pl_conv_free(pl_conv_set *s) {
  for (int i = 0; s->req && i < s->n; i++)
    free(s->req[i].user);
  for (int k = 0; s->system && k < s->n_system; k++)
    free(s->system[k]);
  free(s->req);
  free(s->system);
  free(s->system_len);
  memset(s, 0, sizeof *s);
}
