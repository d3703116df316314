/* Vector helpers on every ISA, lengths 0..300 (all SIMD tails) and a few large ones, against
 * float64 references. Thresholds: dot/rmsnorm sums 2e-6 * sqrt(n+1) * sum|terms| (float32
 * accumulation); mad/scale are one rounding per element (1 ulp); max exact; swiglu and softmax
 * use a polynomial exp: 4e-6 relative per element (a few ulp). Inputs include large |x| for
 * the exp range clamps (silu(-100) ~ 0, softmax with a dominant logit). */
#include <stdio.h>

#include "../check.h"
#include "kt_common.h"

#define NMAX 4100

int main(void) {
  static float a[NMAX], b[NMAX], y[NMAX], w[NMAX];
  kt_rng rng = {77};
  kt_isa isas[8];
  int nisa = kt_isas(isas);
  int lens[320], nl = 0;
  for (int n = 0; n <= 300; n++)
    lens[nl++] = n;
  lens[nl++] = 1024;
  lens[nl++] = 4097;
  for (int ii = 0; ii < nisa; ii++) {
    kt_use(&isas[ii]);
    int bad[7] = {0};
    for (int li = 0; li < nl; li++) {
      int n = lens[li];
      for (int i = 0; i < n; i++) {
        a[i] = kt_gauss(&rng) * (i % 17 == 0 ? 30.0f : 2.0f);
        b[i] = kt_gauss(&rng);
        w[i] = 1.0f + 0.1f * kt_gauss(&rng);
      }
      /* dot */
      double s = 0, m = 0;
      for (int i = 0; i < n; i++) {
        s += (double)a[i] * b[i];
        m += fabs((double)a[i] * b[i]);
      }
      bad[0] += !(fabs(pl_vec_dot_f32(n, a, b) - s) <= 2e-6 * sqrt(n + 1.0) * m + 1e-30);
      /* mad */
      memcpy(y, b, sizeof(float) * (size_t)n);
      pl_vec_mad_f32(n, y, a, 0.37f);
      for (int i = 0; i < n; i++) {
        double r = (double)b[i] + 0.37 * (double)a[i];
        bad[1] += !(fabs(y[i] - r) <= 1.2e-7 * (fabs(b[i]) + fabs(0.37 * a[i])) + 1e-30);
      }
      /* scale */
      memcpy(y, a, sizeof(float) * (size_t)n);
      pl_vec_scale_f32(n, y, -1.7f);
      for (int i = 0; i < n; i++)
        bad[2] += y[i] != a[i] * -1.7f;
      /* max */
      if (n > 0) {
        float mx = a[0];
        for (int i = 1; i < n; i++)
          mx = a[i] > mx ? a[i] : mx;
        bad[3] += pl_vec_max_f32(n, a) != mx;
      }
      /* rmsnorm (also in place) */
      if (n > 0) {
        double ss = 0;
        for (int i = 0; i < n; i++)
          ss += (double)a[i] * a[i];
        double rs = 1.0 / sqrt(ss / n + 1e-5);
        memcpy(y, a, sizeof(float) * (size_t)n);
        pl_vec_rmsnorm_f32(n, y, y, w, 1e-5f);
        for (int i = 0; i < n; i++) {
          double r = a[i] * rs * w[i];
          bad[4] += !(fabs(y[i] - r) <= 2e-6 * sqrt(n + 1.0) * fabs(r) + 1e-30);
        }
      }
      /* swiglu: g spans the exp clamps */
      for (int i = 0; i < n; i++)
        a[i] = i % 29 == 0 ? (i % 58 == 0 ? -120.0f : 95.0f) : a[i];
      pl_vec_swiglu_f32(n, y, a, b);
      for (int i = 0; i < n; i++) {
        double g = a[i], r = g / (1.0 + exp(-g)) * b[i];
        bad[5] += !(fabs(y[i] - r) <= 4e-6 * fabs(r) + 1e-30);
      }
      /* softmax */
      if (n > 0) {
        for (int i = 0; i < n; i++)
          y[i] = a[i] * 0.5f;
        double mx = -INFINITY, sum = 0;
        for (int i = 0; i < n; i++)
          mx = fmax(mx, y[i]);
        double *e = malloc(sizeof(double) * (size_t)n);
        for (int i = 0; i < n; i++)
          sum += e[i] = exp((double)y[i] - mx);
        float ret = pl_vec_softmax_f32(n, y);
        bad[6] += !(fabs(ret - sum) <= 4e-6 * sum);
        /* x - max is rounded in float32 before exp: relative error |x - max| * 2^-24 on top */
        float xs[NMAX];
        for (int i = 0; i < n; i++)
          xs[i] = a[i] * 0.5f;
        for (int i = 0; i < n; i++)
          bad[6] += !(fabs(y[i] - e[i] / sum) <= (4e-6 + fabs(xs[i] - mx) * 6e-8) * (e[i] / sum) + 1e-38);
        free(e);
      }
    }
    static const char *names[] = {"dot", "mad", "scale", "max", "rmsnorm", "swiglu", "softmax"};
    for (int k = 0; k < 7; k++)
      CHECK(bad[k] == 0, "%s %s: %d failures", isas[ii].name, names[k], bad[k]);
  }
  return check_summary("test_vec");
}
