/* The attention tile kernel on every ISA against a float64 reference: softmax(q·k) v over a
 * whole context fed tile by tile (online softmax), for lane counts 1..16 (every SIMD width
 * and tail), head dims with and without SIMD tails, partial tiles and causal masks (each lane
 * sees a different prefix, some lanes no key of a tile). Scores span the exp clamp (a few
 * dominant keys). Tolerance: float32 accumulation of hd products and a few-ulp exp,
 * 2e-5 * sum_o p_o |v_o| + 1e-6 relative to the output scale. */
#include <float.h>
#include <stdio.h>
#include <stdlib.h>

#include "../check.h"
#include "kt_common.h"

enum { L = PL_ATTN_LANES, MAXCTX = 80, MAXHD = 136 };

int main(void) {
  static float q[L][MAXHD], qt[MAXHD * L], k[MAXCTX * MAXHD], v[MAXCTX * MAXHD];
  static float acc[L * MAXHD];
  float m[L], l[L];
  int32_t lim[L];
  kt_rng rng = {2024};
  kt_isa isas[8];
  int nisa = kt_isas(isas);
  static const int hds[] = {1, 8, 12, 64, 72, 128, 136};
  for (int ii = 0; ii < nisa; ii++) {
    kt_use(&isas[ii]);
    int bad = 0, cases = 0;
    double worst = 0;
    for (int hi = 0; hi < (int)(sizeof hds / sizeof *hds); hi++)
      for (int nl = 1; nl <= L; nl++)
        for (int masked = 0; masked < 2; masked++) {
          const int hd = hds[hi], ctx = 1 + (int)(kt_unif(&rng) * (MAXCTX - 1));
          const int tile = 1 + (int)(kt_unif(&rng) * PL_ATTN_TILE); /* tile lengths vary */
          for (int o = 0; o < ctx * hd; o++) {
            k[o] = kt_gauss(&rng);
            v[o] = kt_gauss(&rng) * (o % 7 == 0 ? 10.0f : 1.0f);
          }
          for (int j = 0; j < L; j++) {
            m[j] = -FLT_MAX;
            l[j] = 0;
            /* causal: lane j sees a prefix of at least one key */
            lim[j] = masked ? 1 + (int)(kt_unif(&rng) * ctx) : ctx;
            for (int d = 0; d < hd; d++) {
              /* a few lanes get large queries: scores of hundreds, exp underflows for most */
              q[j][d] = kt_gauss(&rng) * (j % 5 == 0 ? 6.0f : 0.5f);
              qt[d * L + j] = j < nl ? q[j][d] : 0.0f;
            }
          }
          for (int i = 0; i < nl * hd; i++)
            acc[i] = 0;
          for (int p0 = 0; p0 < ctx; p0 += tile) {
            int nv = ctx - p0 < tile ? ctx - p0 : tile;
            /* every other tile names the next one to prefetch: no effect on the result */
            const int pn = p0 + nv, rows = ctx - pn < tile ? ctx - pn : tile;
            const pl_attn_next next = {k + (size_t)pn * hd, v + (size_t)pn * hd,
                                       rows * hd * 4 / 64};
            pl_attn_tile_f32(nl, hd, nv, p0, masked ? lim : NULL, qt, k + (size_t)p0 * hd,
                             v + (size_t)p0 * hd, m, l, acc, pn < ctx && p0 / tile % 2 ? &next : NULL);
          }
          for (int j = 0; j < nl; j++) {
            int n = lim[j];
            double s[MAXCTX], mx = -INFINITY, sum = 0;
            for (int o = 0; o < n; o++) {
              s[o] = 0;
              for (int d = 0; d < hd; d++)
                s[o] += (double)q[j][d] * k[o * hd + d];
              mx = fmax(mx, s[o]);
            }
            for (int o = 0; o < n; o++)
              sum += s[o] = exp(s[o] - mx);
            for (int d = 0; d < hd; d++) {
              double r = 0, mag = 0;
              for (int o = 0; o < n; o++) {
                r += s[o] * v[o * hd + d];
                mag += s[o] * fabs(v[o * hd + d]);
              }
              r /= sum;
              mag /= sum;
              /* score errors: float32 sums of hd products, |score| up to ~|q||k| */
              double qn = 0;
              for (int e = 0; e < hd; e++)
                qn += fabs(q[j][e]) * 4.0;
              double tol = 2e-5 * mag + 3e-7 * qn * mag + 1e-6;
              double got = acc[j * hd + d] / l[j], err = fabs(got - r);
              worst = err / (tol) > worst ? err / tol : worst;
              bad += !(err <= tol);
            }
          }
          cases++;
        }
    CHECK(bad == 0, "%s: %d of the outputs of %d cases off (worst %.2f x tolerance)",
          isas[ii].name, bad, cases, worst);
    printf("  %s: %d cases, worst error %.3f of tolerance\n", isas[ii].name, cases, worst);
  }
  return check_summary("test_attn");
}
