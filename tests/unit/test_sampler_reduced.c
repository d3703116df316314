/* Sampling from a reduced row (engine/sampler_reduced.c) against sampling from the whole row
 * (pl_sample_u, the host sampler every other test checks): for rows that are peaked, flat,
 * full of ties or shorter than PL_TOPK, and for greedy, temperature, top-k, top-p, min-p and
 * their mixes with logprobs, logit bias, min_tokens masks and repetition / frequency /
 * presence penalties (sent as sparse edits, pl_sample_edits), the reduced path returns the same token, logprob and top
 * logprobs bit for bit whenever it decides the row, and decides every case that it must
 * (greedy, temperature only, top_k <= PL_TOPK). It falls back only where a nucleus or min-p set
 * can reach past the candidates. The reduction here is the host reference pl_row_reduce_ref,
 * which tests/cuda/test_cuda_ops.c checks the GPU kernel against. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "check.h"
#include "engine/sampler.h"
#include "util/alloc.h"

static uint64_t rs = 7;
static double urand(void) {
  rs = rs * 6364136223846793005ull + 1442695040888963407ull;
  return (double)(rs >> 11) * 0x1.0p-53;
}
static float gauss(void) {
  double a = urand() + 1e-12, b = urand();
  return (float)(sqrt(-2 * log(a)) * cos(6.283185307179586 * b));
}

enum { PEAKED, FLAT, TIES, N_KINDS };
static const char *kind_name[] = {"peaked", "flat", "ties"};

static void make_row(float *x, int V, int kind) {
  for (int i = 0; i < V; i++) {
    float g = gauss();
    x[i] = kind == PEAKED ? 4.0f * g : kind == FLAT ? 0.05f * g : floorf(2.0f * g) * 0.5f;
  }
  if (kind == PEAKED) /* a few dominant tokens, like a trained model's */
    for (int k = 0; k < 3; k++)
      x[(int)(urand() * V)] += 12.0f - 3.0f * k;
}

typedef struct {
  float temp;
  int top_k;
  float top_p, min_p;
  int must; /* the reduction must decide it */
} cfg;

/* the logit processors of repetition `rep` (0: none) over a context */
static void processors(pl_sampling_params *sp, int rep, int V, int32_t *bias_ids, float *bias,
                       int32_t *stops) {
  if (rep == 1) {
    sp->repetition_penalty = 1.3f;
    sp->frequency_penalty = 0.4f;
    sp->presence_penalty = 0.25f;
  } else if (rep == 2) {
    int base = (int)(urand() * V);
    for (int i = 0; i < 4; i++) { /* distinct ids */
      bias_ids[i] = (int32_t)((base + 7 * i) % V);
      bias[i] = i == 0 ? 9.0f : -3.0f + i;
    }
    sp->logit_bias_ids = bias_ids;
    sp->logit_bias = bias;
    sp->n_logit_bias = 4;
    stops[0] = (int32_t)(urand() * V);
    sp->stop_token_ids = stops;
    sp->n_stop_token_ids = 1;
    sp->min_tokens = 100; /* masks the stop and end-of-generation ids */
  }
}

int main(void) {
  const int vocabs[] = {100, 1000, 32000};
  const cfg cfgs[] = {
      {0.0f, 0, 1.0f, 0.0f, 1},   {1.0f, 0, 1.0f, 0.0f, 1},   {0.7f, 0, 1.0f, 0.0f, 1},
      {0.8f, 40, 1.0f, 0.0f, 1},  {1.0f, 256, 1.0f, 0.0f, 1}, {1.0f, 300, 1.0f, 0.0f, 0},
      {0.8f, 0, 0.9f, 0.0f, 0},   {1.0f, 0, 0.5f, 0.0f, 0},   {1.2f, 50, 0.95f, 0.0f, 1},
      {1.0f, 0, 1.0f, 0.05f, 0},  {0.7f, 0, 0.9f, 0.1f, 0},   {1.0f, 20, 1.0f, 0.3f, 1},
  };
  const int logprobs[] = {-1, 0, 5, 20};
  pl_sampler s;
  float *x = pl_malloc(32000 * sizeof(float));
  float *xp = pl_malloc(32000 * sizeof(float));
  pl_row_reduce *r = pl_malloc(sizeof *r);
  pl_logit_edit *edits = pl_malloc(4096 * sizeof *edits);
  int32_t prompt[300], output[200], eog[2], bias_ids[4], stops[1];
  float bias[4];
  int served = 0, fell_back = 0, mismatches = 0;
  for (size_t vi = 0; vi < sizeof vocabs / sizeof *vocabs; vi++) {
    int V = vocabs[vi];
    CHECK(pl_sampler_init(&s, V) == 0, "sampler init");
    for (int kind = 0; kind < N_KINDS; kind++)
      for (size_t ci = 0; ci < sizeof cfgs / sizeof *cfgs; ci++)
        for (int rep = 0; rep < 9; rep++) {
          make_row(x, V, kind);
          pl_sampling_params sp;
          pl_sampling_params_default(&sp);
          sp.temperature = cfgs[ci].temp;
          sp.top_k = cfgs[ci].top_k;
          sp.top_p = cfgs[ci].top_p;
          sp.min_p = cfgs[ci].min_p;
          int procs = rep / 3; /* 0: none, 1: penalties, 2: logit bias + min_tokens masks */
          sp.logprobs = procs ? (rep % 3 == 0 ? -1 : 0) : logprobs[rep % 4];
          processors(&sp, procs, V, bias_ids, bias, stops);
          /* a context with repeats, tokens that the rows favour among them */
          for (int i = 0; i < 300; i++)
            prompt[i] = (int32_t)(urand() * V);
          for (int i = 0; i < 200; i++)
            output[i] = i % 3 ? prompt[(int)(urand() * 40)] : (int32_t)(urand() * V);
          eog[0] = 0;
          eog[1] = V - 1;
          pl_rng rng;
          pl_rng_seed(&rng, 1000 + rep);
          pl_sample_ctx c = {.sp = &sp, .rng = &rng, .prompt = prompt, .n_prompt = 300,
                             .output = output, .n_output = 200, .eog_ids = eog, .n_eog = 2};
          int n_edits = pl_sample_edits(&s, &c, 0, edits, 4096);
          CHECK(n_edits >= 0, "V %d cfg %zu rep %d: these processors are reducible", V, ci, rep);
          CHECK(procs || n_edits == 0, "no processors, no edits (%d)", n_edits);
          CHECK(!procs || n_edits > 0, "processors give edits");
          if (n_edits < 0)
            continue;
          memcpy(xp, x, (size_t)V * sizeof(float));
          pl_logit_edits_apply(xp, x, edits, n_edits, V);
          double u = sp.temperature > 0 ? pl_rng_uniform(&rng) : -1.0;
          pl_sample_result full, red;
          pl_sample_u(&s, &c, x, u, &full);
          memset(r, 0, sizeof *r);
          r->inv_temp = sp.temperature > 0 ? 1.0f / sp.temperature : 1.0f;
          r->u = u;
          pl_row_reduce_ref(xp, x, V, r);
          CHECK_EQ_INT(r->n_top, V < PL_TOPK ? V : PL_TOPK);
          memset(&red, 0, sizeof red);
          int ok = pl_sample_reduced(&s, &c, r, &red);
          if (cfgs[ci].must && sp.logprobs <= 0)
            CHECK(ok, "V %d %s cfg %zu: the reduction must decide this row", V, kind_name[kind],
                  ci);
          if (!ok) {
            fell_back++;
            continue;
          }
          served++;
          int same = red.token == full.token && red.n_top == full.n_top &&
                     (sp.logprobs < 0 || !memcmp(&red.logprob, &full.logprob, sizeof(float)));
          for (int j = 0; same && j < full.n_top; j++)
            same = red.top[j].token == full.top[j].token &&
                   !memcmp(&red.top[j].logprob, &full.top[j].logprob, sizeof(float));
          if (!same)
            mismatches++;
          CHECK(same, "V %d %s cfg %zu rep %d: reduced token %d (lp %.9g, %d top) vs full %d "
                "(lp %.9g, %d top)", V, kind_name[kind], ci, rep, red.token, red.logprob,
                red.n_top, full.token, full.logprob, full.n_top);
        }
    pl_sampler_free(&s);
  }
  /* the fallback must stay the exception on the peaked rows a trained model gives, but it
   * happens on flat rows whose nucleus spans thousands of tokens */
  CHECK(fell_back > 0, "no case fell back: the wide-nucleus cases above should");
  printf("reduced sampling: %d rows decided (all identical to the full row: %d mismatches), "
         "%d fell back to the full row\n", served, mismatches, fell_back);
  /* rows the reduction cannot take: a grammar mask, a repeated logit_bias id, logprobs with
   * processors */
  {
    pl_sampling_params sp;
    pl_sampling_params_default(&sp);
    uint64_t allow[2] = {~0ull, ~0ull};
    CHECK(pl_sampler_init(&s, 100) == 0, "sampler init");
    pl_sample_ctx c = {.sp = &sp, .allow = allow};
    CHECK(pl_sample_edits(&s, &c, 0, edits, 4096) < 0, "a grammar row is not reducible");
    c.allow = NULL;
    int32_t ids[2] = {5, 5};
    float b[2] = {1.0f, 2.0f};
    sp.logit_bias_ids = ids;
    sp.logit_bias = b;
    sp.n_logit_bias = 2;
    CHECK(pl_sample_edits(&s, &c, 0, edits, 4096) < 0, "a repeated logit_bias id");
    sp.n_logit_bias = 1;
    CHECK(pl_sample_edits(&s, &c, 0, edits, 4096) == 1, "one logit_bias id: one edit");
    sp.logprobs = 3;
    CHECK(pl_sample_edits(&s, &c, 0, edits, 4096) < 0, "logprobs with an edit");
    pl_sampler_free(&s);
  }
  pl_free(x);
  pl_free(xp);
  pl_free(edits);
  pl_free(r);
  return check_summary("test_sampler_reduced");
}
