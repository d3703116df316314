/* Sampling from a logits row reduced on the device (backend.h's pl_row_reduce), so that a few
 * KiB per row cross to the host instead of n_vocab floats (1 MiB at a 256k vocabulary).
 *
 * Logit bias, min_tokens masks and penalties travel as sparse edits (pl_sample_edits, in
 * sampler.c beside the dense versions) that the device applies to a copy of the row first.
 * The reduction holds the PL_TOPK largest scaled logits s = x * (1/T) in descending order, the
 * float64 sum z of expf(s - s_max) over the whole row, the raw log-sum-exp, and one
 * vocabulary-order draw at the row's uniform u. That decides pl_sample's result exactly when
 * every token the processed distribution can keep is among the candidates:
 *   - greedy: the first candidate;
 *   - temperature only: the draw (pl_sample walks the whole vocabulary in id order);
 *   - top_k <= PL_TOPK: the candidates are the whole top-k set (its sum is ours);
 *   - top-p: the nucleus ends within the candidates (its limit uses z);
 *   - min-p: the last candidate falls below the cut, so every kept token is a candidate.
 * The arithmetic mirrors sampler.c's process() step by step on the same floats, so the only
 * possible difference is z's summation order (a top-p limit or draw boundary within float64
 * rounding). */
#include <math.h>

#include "engine/sampler.h"

/* Raw logprobs from the candidates, as sampler.c's raw_logprobs computes them from the row.
 * 0 when a token outside the candidates could be among the top ones. */
static int reduced_logprobs(const pl_sampling_params *sp, const pl_row_reduce *r, int V,
                            pl_sample_result *out) {
  double lse = r->lse_raw;
  float raw = r->drawn_raw;
  for (int i = 0; i < r->n_top; i++)
    if (r->top_id[i] == out->token)
      raw = r->top_raw[i];
  out->logprob = (float)(raw - lse);
  int k = sp->logprobs > 20 ? 20 : sp->logprobs;
  out->n_top = 0;
  if (k <= 0)
    return 1;
  /* raw_logprobs' insertion, over the candidates in id order */
  int pos[PL_TOPK], np = 0;
  for (int i = 0; i < r->n_top; i++) {
    int j = np++;
    while (j > 0 && r->top_id[pos[j - 1]] > r->top_id[i]) {
      pos[j] = pos[j - 1];
      j--;
    }
    pos[j] = i;
  }
  for (int q = 0; q < np; q++)
    pl_top_logprob_insert(out, k, r->top_id[pos[q]], (float)(r->top_raw[pos[q]] - lse));
  /* a token outside has s <= the last candidate's s, so a raw logit below every one whose s
   * is above it: exact when the reported ones are all strictly above */
  if (r->n_top < V)
    for (int j = 0; j < out->n_top; j++)
      for (int i = 0; i < r->n_top; i++)
        if (r->top_id[i] == out->top[j].token && !(r->top_s[i] > r->top_s[r->n_top - 1]))
          return 0;
  return 1;
}

int pl_sample_reduced(pl_sampler *s, const pl_sample_ctx *c, const pl_row_reduce *r,
                      pl_sample_result *out) {
  const pl_sampling_params *sp = c->sp;
  /* process() keeps the F tokens above -inf (the masked ones are not candidates); they sort
   * first, so the first min(K, F) candidates are its candidates */
  const int V = s->n_vocab, F = r->n_finite, K = r->n_top < F ? r->n_top : F;
  out->n_top = 0;
  out->logprob = 0;
  int cut_k = sp->top_k > 0 && sp->top_k < F;
  if (sp->temperature <= 0.0f) {
    out->token = r->top_id[0];
  } else if (!cut_k && sp->top_p >= 1.0f && sp->min_p <= 0.0f) {
    out->token = r->drawn;
  } else {
    int n = cut_k ? sp->top_k : K;
    if (n > K)
      return 0;
    int whole = cut_k || K == F; /* the candidates are the entire set process() keeps */
    float *w = s->work;          /* by candidate position */
    float mx = r->top_s[0];
    for (int i = 0; i < n; i++)
      w[i] = expf(r->top_s[i] - mx);
    double sum = 0;
    if (whole)
      for (int i = 0; i < n; i++)
        sum += w[i];
    else
      sum = r->z;
    if (sp->top_p < 1.0f) {
      double cum = 0, lim = sp->top_p * sum;
      int keep = -1;
      for (int i = 0; i < n; i++) {
        cum += w[i];
        if (cum >= lim) {
          keep = i + 1;
          break;
        }
      }
      if (keep < 0 && !whole)
        return 0; /* the nucleus reaches past the candidates */
      n = keep < 0 ? n : keep;
      whole = 1;
      sum = 0;
      for (int i = 0; i < n; i++)
        sum += w[i];
    }
    int32_t *ord = s->idx; /* candidate positions in process()'s walking order */
    for (int i = 0; i < n; i++)
      ord[i] = i;
    if (sp->min_p > 0.0f) {
      float lim = sp->min_p * w[0]; /* w[0] = expf(0): the most likely token */
      if (!whole && !(w[n - 1] < lim))
        return 0; /* tokens past the candidates may pass the cut */
      int m = 0;
      for (int i = 0; i < n; i++)
        if (w[i] >= lim)
          ord[m++] = i;
      n = m;
      /* without top-k / top-p, process() never sorts: it walks in id order */
      if (!cut_k && sp->top_p >= 1.0f)
        for (int i = 1; i < n; i++)
          for (int j = i; j > 0 && r->top_id[ord[j - 1]] > r->top_id[ord[j]]; j--) {
            int32_t t = ord[j];
            ord[j] = ord[j - 1];
            ord[j - 1] = t;
          }
      sum = 0;
      for (int i = 0; i < n; i++)
        sum += w[ord[i]];
    }
    double u = r->u * sum, cum = 0;
    out->token = r->top_id[ord[n - 1]];
    for (int i = 0; i < n; i++) {
      cum += w[ord[i]];
      if (u < cum) {
        out->token = r->top_id[ord[i]];
        break;
      }
    }
  }
  if (sp->logprobs >= 0)
    return reduced_logprobs(sp, r, V, out);
  return 1;
}

/* s_i = x_i * inv_temp, rounded as process() rounds it */
static float scaled(const float *x, int i, float it) {
  volatile float v = x[i] * it; /* no fused multiply-add with what follows */
  return v + 0.0f;              /* -0 as +0: they compare equal in the sort */
}

void pl_logit_edits_apply(float *x, const float *raw, const pl_logit_edit *e, int n_edits,
                          int d) {
  for (int k = 0; k < n_edits; k++) {
    size_t at = (size_t)e[k].row * d + e[k].id;
    volatile float v = raw[at] + e[k].bias; /* volatile: one rounding per step, as process() */
    if (e[k].mask)
      v = -INFINITY;
    if (e[k].rep != 1.0f)
      v = v > 0 ? v / e[k].rep : v * e[k].rep;
    for (int c = 0; c < e[k].count; c++) {
      v = v - e[k].freq;
      if (c == 0)
        v = v - e[k].pres;
    }
    x[at] = v;
  }
}

void pl_row_reduce_ref(const float *x, const float *raw, int d, pl_row_reduce *r) {
  const float it = r->inv_temp;
  float smax = -INFINITY, rmax = -INFINITY;
  int finite = 0;
  for (int i = 0; i < d; i++) {
    float v = scaled(x, i, it);
    smax = v > smax ? v : smax;
    rmax = raw[i] > rmax ? raw[i] : rmax;
    finite += v > -INFINITY;
  }
  r->n_finite = finite;
  double z = 0, zr = 0;
  for (int i = 0; i < d; i++) {
    z += expf(scaled(x, i, it) - smax);
    zr += exp((double)raw[i] - rmax);
  }
  r->z = z;
  r->lse_raw = rmax + log(zr);
  /* top candidates by insertion: descending s, ties keep the lower id first */
  int k = d < PL_TOPK ? d : PL_TOPK;
  r->n_top = 0;
  for (int i = 0; i < d; i++) {
    float v = scaled(x, i, it);
    if (r->n_top == k && v <= r->top_s[k - 1])
      continue;
    int j = r->n_top < k ? r->n_top++ : k - 1;
    while (j > 0 && r->top_s[j - 1] < v) {
      r->top_s[j] = r->top_s[j - 1];
      r->top_id[j] = r->top_id[j - 1];
      r->top_raw[j] = r->top_raw[j - 1];
      j--;
    }
    r->top_s[j] = v;
    r->top_id[j] = i;
    r->top_raw[j] = raw[i];
  }
  r->drawn = -1;
  r->drawn_raw = 0;
  if (r->u >= 0 && d > 0) {
    double u = r->u * z, cum = 0;
    r->drawn = d - 1;
    for (int i = 0; i < d; i++) {
      cum += expf(scaled(x, i, it) - smax);
      if (u < cum) {
        r->drawn = i;
        break;
      }
    }
    r->drawn_raw = raw[r->drawn];
  }
}
