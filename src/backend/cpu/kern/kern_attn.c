/* The attention tile (kern.h): the portable version, which is the scalar ISA's kernel and
 * the arithmetic the SIMD versions (kern_attn_*.c) follow step for step:
 *   1. scores s[o][j] = sum_d qt[d][j] * k[o][d]   (masked to -inf at positions >= lim[j])
 *   2. online softmax: mx = max(m, s), corr = exp(m - mx), p = exp(s - mx), l = l*corr + sum p
 *   3. acc[j] = acc[j] * corr[j] + sum_o p[o][j] * v[o]                                  */
#include <math.h>

#include "backend/cpu/kern/kern_impl.h"

void pl_attn_tile_scalar(int nl, int hd, int nv, int pos0, const int32_t *lim, const float *qt,
                         const float *k, const float *v, float *m, float *l, float *acc,
                         const pl_attn_next *next) {
  enum { L = PL_ATTN_LANES };
  float s[PL_ATTN_TILE][L], corr[L];
  int pf = 0;
  for (int o = 0; o < nv; o++) {
    pl_attn_next_step(next, &pf);
    for (int j = 0; j < nl; j++)
      s[o][j] = 0;
    for (int d = 0; d < hd; d++) {
      float kd = k[(size_t)o * hd + d];
      for (int j = 0; j < nl; j++)
        s[o][j] += qt[d * L + j] * kd;
    }
    if (lim)
      for (int j = 0; j < nl; j++)
        if (pos0 + o >= lim[j])
          s[o][j] = -INFINITY;
  }
  pl_attn_next_rest(next, pf);
  for (int j = 0; j < nl; j++) {
    float mx = m[j], sum = 0;
    for (int o = 0; o < nv; o++)
      mx = s[o][j] > mx ? s[o][j] : mx;
    corr[j] = expf(m[j] - mx);
    for (int o = 0; o < nv; o++) {
      s[o][j] = expf(s[o][j] - mx);
      sum += s[o][j];
    }
    l[j] = l[j] * corr[j] + sum;
    m[j] = mx;
  }
  for (int j = 0; j < nl; j++) {
    float *a = acc + (size_t)j * hd;
    for (int d = 0; d < hd; d++)
      a[d] *= corr[j];
    for (int o = 0; o < nv; o++) {
      const float *vo = v + (size_t)o * hd;
      float p = s[o][j];
      for (int d = 0; d < hd; d++)
        a[d] += p * vo[d];
    }
  }
}

void pl_attn_tile_f32(int nl, int hd, int nv, int pos0, const int32_t *lim, const float *qt,
                      const float *k, const float *v, float *m, float *l, float *acc,
                      const pl_attn_next *next) {
  pl_kern_ops_get()->attn_tile(nl, hd, nv, pos0, lim, qt, k, v, m, l, acc, next);
}
