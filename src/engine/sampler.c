/* Sampling. All work happens in the engine-wide scratch (no allocation per token). Ties in
 * greedy decoding go to the lowest token id, as llama.cpp and HF argmax do. */
#include "engine/sampler.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "util/alloc.h"
#include "util/error.h"

/* ---- xoshiro256** (seeded through splitmix64) ---- */
static uint64_t splitmix64(uint64_t *x) {
  uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

void pl_rng_seed(pl_rng *r, uint64_t seed) {
  for (int i = 0; i < 4; i++)
    r->s[i] = splitmix64(&seed);
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t pl_rng_next(pl_rng *r) {
  uint64_t *s = r->s, res = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
  s[2] ^= s[0];
  s[3] ^= s[1];
  s[1] ^= s[2];
  s[0] ^= s[3];
  s[2] ^= t;
  s[3] = rotl(s[3], 45);
  return res;
}

double pl_rng_uniform(pl_rng *r) { return (double)(pl_rng_next(r) >> 11) * 0x1.0p-53; }

int pl_sampler_init(pl_sampler *s, int n_vocab) {
  memset(s, 0, sizeof *s);
  s->n_vocab = n_vocab;
  s->work = pl_malloc((size_t)n_vocab * sizeof(float));
  s->idx = pl_malloc((size_t)n_vocab * sizeof(int32_t));
  s->top = pl_malloc((size_t)n_vocab * sizeof(int32_t));
  s->stamp = pl_calloc((size_t)n_vocab, sizeof(uint32_t));
  if (!s->work || !s->idx || !s->top || !s->stamp) {
    pl_sampler_free(s);
    return pl_fail(PL_ENOMEM, "out of memory for the sampler");
  }
  return 0;
}

void pl_sampler_free(pl_sampler *s) {
  pl_free(s->work);
  pl_free(s->idx);
  pl_free(s->top);
  pl_free(s->stamp);
  memset(s, 0, sizeof *s);
}

static uint32_t next_stamp(pl_sampler *s) {
  if (++s->cur_stamp == 0) { /* wrapped: clear the marks once every 2^32 uses */
    memset(s->stamp, 0, (size_t)s->n_vocab * sizeof(uint32_t));
    s->cur_stamp = 1;
  }
  return s->cur_stamp;
}

static void apply_penalties(pl_sampler *s, const pl_sample_ctx *c, float *x) {
  const pl_sampling_params *sp = c->sp;
  int V = s->n_vocab;
  if (sp->repetition_penalty != 1.0f) {
    uint32_t st = next_stamp(s);
    for (int pass = 0; pass < 2; pass++) {
      const int32_t *t = pass ? c->output : c->prompt;
      int n = pass ? c->n_output : c->n_prompt;
      for (int i = 0; i < n; i++) {
        int32_t id = t[i];
        if (id < 0 || id >= V || s->stamp[id] == st)
          continue;
        s->stamp[id] = st;
        x[id] = x[id] > 0 ? x[id] / sp->repetition_penalty : x[id] * sp->repetition_penalty;
      }
    }
  }
  if (sp->frequency_penalty != 0.0f || sp->presence_penalty != 0.0f) {
    uint32_t st = next_stamp(s);
    for (int i = 0; i < c->n_output; i++) {
      int32_t id = c->output[i];
      if (id < 0 || id >= V)
        continue;
      x[id] -= sp->frequency_penalty;
      if (s->stamp[id] != st) {
        s->stamp[id] = st;
        x[id] -= sp->presence_penalty;
      }
    }
  }
}

/* The processors of process() below (logit bias, min_tokens masks, penalties) as sparse edits
 * of one row, for a row reduced on the device; s->idx[id] is the edit of a marked id. */
static pl_logit_edit *edit_of(pl_sampler *s, uint32_t st, int row, int32_t id, pl_logit_edit *out,
                              int *n, int cap) {
  if (s->stamp[id] == st)
    return &out[s->idx[id]];
  if (*n == cap)
    return NULL;
  s->stamp[id] = st;
  s->idx[id] = *n;
  out[*n] = (pl_logit_edit){.row = row, .id = id, .rep = 1.0f};
  return &out[(*n)++];
}

int pl_sample_edits(pl_sampler *s, const pl_sample_ctx *c, int row, pl_logit_edit *out, int cap) {
  const pl_sampling_params *sp = c->sp;
  const int V = s->n_vocab;
  if (c->allow)
    return -1;
  uint32_t st = next_stamp(s);
  int n = 0;
  pl_logit_edit *e;
  for (int i = 0; i < sp->n_logit_bias; i++) {
    int32_t id = sp->logit_bias_ids[i];
    if (id < 0 || id >= V)
      continue;
    if (s->stamp[id] == st || !(e = edit_of(s, st, row, id, out, &n, cap)))
      return -1; /* x += b1; x += b2 is not x += b1 + b2 in f32 */
    e->bias = sp->logit_bias[i];
  }
  if (c->n_output < sp->min_tokens)
    for (int pass = 0; pass < 2; pass++) {
      const int32_t *ids = pass ? sp->stop_token_ids : c->eog_ids;
      int m = pass ? sp->n_stop_token_ids : c->n_eog;
      for (int i = 0; i < m; i++) {
        if (ids[i] < 0 || ids[i] >= V)
          continue;
        if (!(e = edit_of(s, st, row, ids[i], out, &n, cap)))
          return -1;
        e->mask = 1;
      }
    }
  if (sp->repetition_penalty != 1.0f)
    for (int pass = 0; pass < 2; pass++) {
      const int32_t *t = pass ? c->output : c->prompt;
      int m = pass ? c->n_output : c->n_prompt;
      for (int i = 0; i < m; i++) {
        if (t[i] < 0 || t[i] >= V)
          continue;
        if (!(e = edit_of(s, st, row, t[i], out, &n, cap)))
          return -1;
        e->rep = sp->repetition_penalty;
      }
    }
  if (sp->frequency_penalty != 0.0f || sp->presence_penalty != 0.0f)
    for (int i = 0; i < c->n_output; i++) {
      if (c->output[i] < 0 || c->output[i] >= V)
        continue;
      if (!(e = edit_of(s, st, row, c->output[i], out, &n, cap)))
        return -1;
      e->count++;
      e->freq = sp->frequency_penalty;
      e->pres = sp->presence_penalty;
    }
  /* logprobs rank raw logits: an edited token may rank there but not among the candidates */
  if (n > 0 && sp->logprobs > 0)
    return -1;
  return n;
}

/* Raw log-softmax values for the reported logprobs. */
static void raw_logprobs(const pl_sampling_params *sp, const float *logits, int V,
                         pl_sample_result *out) {
  float mx = -FLT_MAX;
  for (int i = 0; i < V; i++)
    mx = logits[i] > mx ? logits[i] : mx;
  double sum = 0;
  for (int i = 0; i < V; i++)
    sum += exp((double)logits[i] - mx);
  double lse = mx + log(sum);
  out->logprob = (float)(logits[out->token] - lse);
  int k = sp->logprobs > 20 ? 20 : sp->logprobs;
  out->n_top = 0;
  for (int i = 0; i < V && k > 0; i++)
    pl_top_logprob_insert(out, k, i, (float)(logits[i] - lse));
}

/* top-k by insertion into a small sorted array (k <= 20); an equal one stays behind */
void pl_top_logprob_insert(pl_sample_result *out, int k, int32_t token, float lp) {
  if (out->n_top == k && lp <= out->top[k - 1].logprob)
    return;
  int j = out->n_top < k ? out->n_top++ : k - 1;
  while (j > 0 && out->top[j - 1].logprob < lp) {
    out->top[j] = out->top[j - 1];
    j--;
  }
  out->top[j].token = token;
  out->top[j].logprob = lp;
}

/* The candidates' order: larger value first, ties by lower id (a strict total order). */
static inline int before(const float *w, int32_t a, int32_t b) {
  return w[a] > w[b] || (w[a] == w[b] && a < b);
}

static int cmp_desc(const void *a, const void *b, void *ctx) {
  int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
  return before(ctx, x, y) ? -1 : before(ctx, y, x) ? 1 : 0;
}

/* out[0..m) = the first m of ids[0..n) in `before` order, sorted: a heap of the m best seen
 * (root = the worst of them), then a sort of those m. O(n log m), against O(n log n) for
 * sorting the whole vocabulary (~15 ms per row at 128k tokens). */
static void select_top(const int32_t *ids, int n, int m, const float *w, int32_t *out) {
  for (int i = 0; i < m; i++) { /* heapify the first m: parent worse than children */
    int32_t v = ids[i];
    int j = i;
    while (j > 0 && before(w, out[(j - 1) / 2], v)) {
      out[j] = out[(j - 1) / 2];
      j = (j - 1) / 2;
    }
    out[j] = v;
  }
  for (int i = m; i < n; i++) {
    int32_t v = ids[i];
    if (!before(w, v, out[0]))
      continue;
    int j = 0; /* replace the root, sift down */
    for (;;) {
      int c = 2 * j + 1;
      if (c >= m)
        break;
      if (c + 1 < m && before(w, out[c], out[c + 1]))
        c++; /* the worse child */
      if (!before(w, v, out[c]))
        break;
      out[j] = out[c];
      j = c;
    }
    out[j] = v;
  }
  qsort_r(out, (size_t)m, sizeof(int32_t), cmp_desc, (void *)w);
}

/* The processed distribution: logit bias, min_tokens masks, penalties, temperature, top-k,
 * top-p, min-p. Greedy (temperature 0): returns -1 and *chosen = the argmax. Else returns n:
 * s->idx[0 .. n) are the candidates and s->work[idx[i]] their unnormalised probabilities,
 * summing to *sum. */
static int process(pl_sampler *s, const pl_sample_ctx *c, const float *logits, int32_t *chosen,
                   double *sum_out) {
  const pl_sampling_params *sp = c->sp;
  int V = s->n_vocab;
  float *x = s->work;
  memcpy(x, logits, (size_t)V * sizeof(float));
  if (c->allow)
    for (int i = 0; i < V; i++)
      if (!(c->allow[i >> 6] >> (i & 63) & 1))
        x[i] = -INFINITY;
  for (int i = 0; i < sp->n_logit_bias; i++) {
    int32_t id = sp->logit_bias_ids[i];
    if (id >= 0 && id < V)
      x[id] += sp->logit_bias[i];
  }
  if (c->n_output < sp->min_tokens) {
    for (int i = 0; i < c->n_eog; i++)
      if (c->eog_ids[i] >= 0 && c->eog_ids[i] < V)
        x[c->eog_ids[i]] = -INFINITY;
    for (int i = 0; i < sp->n_stop_token_ids; i++)
      if (sp->stop_token_ids[i] >= 0 && sp->stop_token_ids[i] < V)
        x[sp->stop_token_ids[i]] = -INFINITY;
  }
  apply_penalties(s, c, x);

  *chosen = 0;
  if (sp->temperature <= 0.0f) {
    float best = -INFINITY;
    for (int i = 0; i < V; i++)
      if (x[i] > best) {
        best = x[i];
        *chosen = i;
      }
    return -1;
  }
  float inv_t = 1.0f / sp->temperature;
  float mx = -INFINITY;
  for (int i = 0; i < V; i++) {
    x[i] *= inv_t;
    mx = x[i] > mx ? x[i] : mx;
  }
  /* candidates: everything, or the top-k / nucleus in descending order (ties: lower id
   * first). Only the prefix that top-k or the nucleus keeps is ever sorted. */
  int n = 0;
  for (int i = 0; i < V; i++)
    if (x[i] > -INFINITY)
      s->idx[n++] = i;
  int cut_k = sp->top_k > 0 && sp->top_k < n;
  double total = 0; /* top-p alone: the whole row's mass, summed in vocabulary order */
  if (!cut_k && sp->top_p < 1.0f) {
    for (int i = 0; i < n; i++)
      total += expf(x[s->idx[i]] - mx);
    int m = n < 256 ? n : 256;
    for (;;) { /* a sorted prefix long enough to hold the nucleus */
      select_top(s->idx, n, m, x, s->top);
      double cum = 0, lim = sp->top_p * total;
      int keep = 0;
      for (int i = 0; i < m && !keep; i++)
        if ((cum += expf(x[s->top[i]] - mx)) >= lim)
          keep = i + 1;
      if (keep || m == n) {
        n = keep ? keep : n;
        break;
      }
      m = m > n / 4 ? n : m * 4;
    }
    memcpy(s->idx, s->top, (size_t)n * sizeof(int32_t));
  } else if (cut_k) {
    select_top(s->idx, n, sp->top_k, x, s->top);
    n = sp->top_k;
    memcpy(s->idx, s->top, (size_t)n * sizeof(int32_t));
  }
  /* probabilities of the candidates (x reused in place) */
  double sum = 0;
  for (int i = 0; i < n; i++) {
    int32_t id = s->idx[i];
    x[id] = expf(x[id] - mx);
    sum += x[id];
  }
  if (sp->top_p < 1.0f) {
    /* with top-k, the nucleus of the top-k set; alone, the prefix found above (it ends
     * where the limit on the whole row's mass is reached) */
    double cum = 0, lim = sp->top_p * (cut_k ? sum : total);
    int keep = n;
    for (int i = 0; i < n; i++) {
      cum += x[s->idx[i]];
      if (cum >= lim) {
        keep = i + 1;
        break;
      }
    }
    n = keep;
    sum = 0;
    for (int i = 0; i < n; i++)
      sum += x[s->idx[i]];
  }
  if (sp->min_p > 0.0f) {
    float pmax = 0;
    for (int i = 0; i < n; i++)
      pmax = x[s->idx[i]] > pmax ? x[s->idx[i]] : pmax;
    float lim = sp->min_p * pmax;
    int m = 0;
    sum = 0;
    for (int i = 0; i < n; i++)
      if (x[s->idx[i]] >= lim) {
        s->idx[m++] = s->idx[i];
        sum += x[s->idx[i]];
      }
    n = m;
  }
  *sum_out = sum;
  return n;
}

int pl_sample_is_argmax(const pl_sample_ctx *c) {
  const pl_sampling_params *sp = c->sp;
  int masks = c->n_output < sp->min_tokens && (c->n_eog > 0 || sp->n_stop_token_ids > 0);
  return sp->temperature <= 0.0f && sp->n_logit_bias == 0 && !masks &&
         sp->repetition_penalty == 1.0f && sp->frequency_penalty == 0.0f &&
         sp->presence_penalty == 0.0f && sp->logprobs < 0;
}

void pl_sample(pl_sampler *s, const pl_sample_ctx *c, const float *logits, pl_sample_result *out) {
  pl_sample_u(s, c, logits, c->sp->temperature > 0.0f ? pl_rng_uniform(c->rng) : -1.0, out);
}

void pl_sample_u(pl_sampler *s, const pl_sample_ctx *c, const float *logits, double u01,
                 pl_sample_result *out) {
  const pl_sampling_params *sp = c->sp;
  int32_t chosen;
  double sum = 0;
  int n = process(s, c, logits, &chosen, &sum);
  if (n >= 0) {
    const float *x = s->work;
    double u = u01 * sum, cum = 0;
    chosen = s->idx[n - 1];
    for (int i = 0; i < n; i++) {
      cum += x[s->idx[i]];
      if (u < cum) {
        chosen = s->idx[i];
        break;
      }
    }
  }
  out->token = chosen;
  out->n_top = 0;
  out->logprob = 0;
  if (sp->logprobs >= 0)
    raw_logprobs(sp, logits, s->n_vocab, out);
}

int pl_sample_probs(pl_sampler *s, const pl_sample_ctx *c, const float *logits, float *probs) {
  int32_t chosen;
  double sum = 0;
  int n = process(s, c, logits, &chosen, &sum);
  memset(probs, 0, (size_t)s->n_vocab * sizeof *probs);
  if (n < 0) {
    probs[chosen] = 1.0f;
    return chosen;
  }
  for (int i = 0; i < n; i++)
    probs[s->idx[i]] = (float)(s->work[s->idx[i]] / sum);
  return -1;
}

int32_t pl_sample_draw(const float *w, int n_vocab, double sum, pl_rng *rng) {
  double u = pl_rng_uniform(rng) * sum, cum = 0;
  int32_t last = 0;
  for (int i = 0; i < n_vocab; i++) {
    if (w[i] <= 0)
      continue;
    last = i;
    cum += w[i];
    if (u < cum)
      return i;
  }
  return last; /* rounding: u landed past the last bucket */
}

void pl_sample_logprobs(const pl_sampling_params *sp, const float *logits, int n_vocab,
                        pl_sample_result *out) {
  out->n_top = 0;
  out->logprob = 0;
  if (sp->logprobs >= 0)
    raw_logprobs(sp, logits, n_vocab, out);
}
