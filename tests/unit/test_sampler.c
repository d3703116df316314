/* The host sampler (engine/sampler.c) against a float64 reference written here from the
 * definitions: temperature scales the logits; top-k keeps the k largest (ties: lower id);
 * top-p keeps the shortest prefix, in that order, whose mass reaches top_p of the mass of
 * what is left (the whole row, or the top-k set); min-p keeps the tokens whose probability is
 * at least min_p times the largest; the draw walks the kept tokens in that order (vocabulary
 * order when neither top-k nor top-p is on) up to u times their total.
 *
 * Rows: peaked (a trained model's), flat (a random model's: a nucleus of most of the
 * vocabulary), many ties, and rows with masked (-inf) entries, at vocabularies of 50, 1000
 * and 128256 (Llama 3: where the sampler's partial selection matters). Checked:
 *   - pl_sample_probs' distribution equals the reference's within 1e-6 per token;
 *   - pl_sample_u gives the reference's token at every u of a grid that is not within float
 *     rounding of a cumulative boundary.
 * Rows whose top-p or min-p cut falls within rounding of its limit are skipped (and counted).
 * The timing of the selection (vs sorting the whole row) is printed, not asserted. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "check.h"
#include "engine/sampler.h"
#include "util/alloc.h"

static uint64_t rs = 11;
static double urand(void) {
  rs = rs * 6364136223846793005ull + 1442695040888963407ull;
  return (double)(rs >> 11) * 0x1.0p-53;
}
static double gauss(void) {
  double a = urand() + 1e-12, b = urand();
  return sqrt(-2 * log(a)) * cos(6.283185307179586 * b);
}

enum { PEAKED, FLAT, TIES, MASKED, N_KINDS };
static const char *kind_name[] = {"peaked", "flat", "ties", "masked"};

static void make_row(float *x, int V, int kind) {
  for (int i = 0; i < V; i++) {
    double g = gauss();
    x[i] = (float)(kind == FLAT ? 0.05 * g : kind == TIES ? floor(2.0 * g) * 0.5 : 3.0 * g);
  }
  if (kind == PEAKED || kind == MASKED)
    for (int k = 0; k < 3; k++)
      x[(int)(urand() * V)] += (float)(10.0 - 3.0 * k);
  if (kind == MASKED)
    for (int i = 0; i < V; i++)
      if (urand() < 0.3)
        x[i] = -INFINITY;
}

typedef struct { double s; int id; } cand;
static int cand_cmp(const void *a, const void *b) {
  const cand *x = a, *y = b;
  if (x->s != y->s)
    return x->s < y->s ? 1 : -1;
  return x->id - y->id;
}

/* The reference: kept ids in walking order ord[0..n), their probabilities p (normalised).
 * Returns n, or -1 when a top-p / min-p cut is within rounding of its limit (ambiguous). */
static int reference(const float *x, int V, double T, int top_k, double top_p, double min_p,
                     cand *c, int *ord, double *p) {
  int n = 0;
  const float inv_t = (float)(1.0 / T); /* the logits are f32, scaled in f32 */
  for (int i = 0; i < V; i++)
    if (x[i] > -INFINITY) {
      volatile float sf = x[i] * inv_t;
      c[n++] = (cand){(double)sf, i};
    }
  int sorted = (top_k > 0 && top_k < n) || top_p < 1.0;
  if (sorted)
    qsort(c, (size_t)n, sizeof *c, cand_cmp);
  if (top_k > 0 && top_k < n)
    n = top_k;
  double mx = -INFINITY;
  for (int i = 0; i < n; i++)
    mx = c[i].s > mx ? c[i].s : mx;
  double total = 0;
  for (int i = 0; i < n; i++)
    total += exp(c[i].s - mx);
  const double tol = 1e-6;
  if (top_p < 1.0) {
    double cum = 0, lim = top_p * total;
    int keep = n;
    for (int i = 0; i < n; i++) {
      cum += exp(c[i].s - mx);
      if (fabs(cum - lim) < tol * total)
        return -1;
      if (cum >= lim) {
        keep = i + 1;
        break;
      }
    }
    n = keep;
  }
  int m = 0;
  for (int i = 0; i < n; i++) {
    double w = exp(c[i].s - mx); /* the largest kept has w = 1 */
    if (min_p > 0 && fabs(w - min_p) < tol)
      return -1;
    if (min_p <= 0 || w >= min_p)
      ord[m++] = i;
  }
  double z = 0;
  for (int i = 0; i < m; i++)
    z += exp(c[ord[i]].s - mx);
  for (int i = 0; i < m; i++) {
    p[i] = exp(c[ord[i]].s - mx) / z;
    ord[i] = c[ord[i]].id;
  }
  return m;
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

int main(void) {
  const int vocabs[] = {50, 1000, 128256};
  const struct { double T; int k; double p, minp; } cfgs[] = {
      {1.0, 0, 1.0, 0.0},  {0.7, 0, 0.9, 0.0},  {1.0, 0, 0.5, 0.0}, {1.3, 40, 1.0, 0.0},
      {1.0, 1, 1.0, 0.0},  {0.8, 40, 0.9, 0.0}, {1.0, 0, 1.0, 0.05}, {0.9, 0, 0.95, 0.02},
      {1.0, 1000, 0.8, 0.0}, {1.0, 0, 0.99, 0.0},
  };
  float *x = pl_malloc(128256 * sizeof(float));
  float *probs = pl_malloc(128256 * sizeof(float));
  cand *c = pl_malloc(128256 * sizeof(cand));
  int *ord = pl_malloc(128256 * sizeof(int));
  double *p = pl_malloc(128256 * sizeof(double));
  int checked = 0, skipped = 0, draws = 0;
  for (size_t vi = 0; vi < sizeof vocabs / sizeof *vocabs; vi++) {
    int V = vocabs[vi];
    pl_sampler s;
    CHECK(pl_sampler_init(&s, V) == 0, "sampler init");
    for (int kind = 0; kind < N_KINDS; kind++)
      for (size_t ci = 0; ci < sizeof cfgs / sizeof *cfgs; ci++) {
        int reps = V > 10000 ? 1 : 4;
        for (int rep = 0; rep < reps; rep++) {
          make_row(x, V, kind);
          pl_sampling_params sp;
          pl_sampling_params_default(&sp);
          sp.temperature = (float)cfgs[ci].T;
          sp.top_k = cfgs[ci].k;
          sp.top_p = (float)cfgs[ci].p;
          sp.min_p = (float)cfgs[ci].minp;
          pl_sample_ctx ctx = {.sp = &sp};
          /* the float parameters as the sampler sees them */
          int n = reference(x, V, (double)sp.temperature, sp.top_k, (double)sp.top_p,
                            (double)sp.min_p, c, ord, p);
          if (n < 0) {
            skipped++;
            continue;
          }
          checked++;
          char what[128];
          snprintf(what, sizeof what, "V %d %s T %.2f top_k %d top_p %.2f min_p %.2f rep %d", V,
                   kind_name[kind], cfgs[ci].T, cfgs[ci].k, cfgs[ci].p, cfgs[ci].minp, rep);
          /* the distribution */
          pl_sample_probs(&s, &ctx, x, probs);
          double err = 0, outside = 0;
          for (int i = 0; i < V; i++)
            outside += probs[i];
          for (int i = 0; i < n; i++) {
            double d = fabs(probs[ord[i]] - p[i]);
            err = d > err ? d : err;
            outside -= probs[ord[i]];
          }
          CHECK(err < 1e-6 && fabs(outside) < 1e-6,
                "%s: probabilities differ by %.3g, %.3g of the mass outside the %d kept", what,
                err, outside, n);
          /* the draw: inverse CDF in walking order, at u away from every boundary */
          int grid = V > 10000 ? 24 : 64, bad = 0;
          for (int g = 0; g < grid; g++) {
            double u = (g + 0.5) / grid, cum = 0;
            int want = ord[n - 1], near = 0;
            for (int i = 0; i < n; i++) {
              cum += p[i];
              if (fabs(cum - u) < 1e-6)
                near = 1;
              if (u < cum) {
                want = ord[i];
                break;
              }
            }
            if (near)
              continue;
            pl_sample_result r;
            pl_sample_u(&s, &ctx, x, u, &r);
            draws++;
            if (r.token != want && bad++ == 0)
              CHECK(0, "%s: u %.4f drew %d, the reference %d", what, u, r.token, want);
          }
        }
      }
    pl_sampler_free(&s);
  }
  printf("%d rows checked (%d skipped: a cut within rounding of its limit), %d draws\n", checked,
         skipped, draws);
  CHECK(checked > 200 && draws > 5000, "too few cases checked: %d rows, %d draws", checked, draws);

  /* the cost of a top-p / top-k draw at the Llama 3 vocabulary (printed only) */
  {
    const int V = 128256;
    pl_sampler s;
    CHECK(pl_sampler_init(&s, V) == 0, "sampler init");
    make_row(x, V, PEAKED);
    pl_sampling_params sp;
    pl_sampling_params_default(&sp);
    sp.temperature = 0.8f;
    const char *names[] = {"top_p 0.9", "top_k 40", "temperature only"};
    for (int t = 0; t < 3; t++) {
      sp.top_p = t == 0 ? 0.9f : 1.0f;
      sp.top_k = t == 1 ? 40 : 0;
      pl_sample_ctx ctx = {.sp = &sp};
      pl_sample_result r;
      double t0 = now_s();
      for (int i = 0; i < 20; i++)
        pl_sample_u(&s, &ctx, x, 0.5, &r);
      printf("sampling a %d-token peaked row, %s: %.3f ms\n", V, names[t],
             (now_s() - t0) / 20 * 1e3);
    }
    pl_sampler_free(&s);
  }
  pl_free(x);
  pl_free(probs);
  pl_free(c);
  pl_free(ord);
  pl_free(p);
  return check_summary("test_sampler");
}
