/* The attention tile (kern.h) with NEON: lanes across NV = 1..4 float32x4 registers, each key
 * element broadcast once for all lanes, four keys in flight; exp4 (the same range reduction
 * and polynomial as the x86 exp8) for the softmax. Same steps as pl_attn_tile_scalar. */
#include <arm_neon.h>
#include <math.h>

#include "backend/cpu/kern/kern_impl.h"

#define AI static inline __attribute__((always_inline))
enum { L = PL_ATTN_LANES };

/* exp(x) for x in [-87.3, 88.7]; ~2 ulp; below the range (and NaN) gives 0. */
AI float32x4_t exp4(float32x4_t x) {
  const uint32x4_t keep = vcgeq_f32(x, vdupq_n_f32(-87.33f));
  x = vminq_f32(vmaxq_f32(x, vdupq_n_f32(-87.33f)), vdupq_n_f32(88.72f));
  float32x4_t n = vrndnq_f32(vmulq_f32(x, vdupq_n_f32(1.44269504088896341f)));
  float32x4_t r = vfmsq_f32(x, n, vdupq_n_f32(0.693359375f));
  r = vfmsq_f32(r, n, vdupq_n_f32(-2.12194440e-4f));
  float32x4_t p = vdupq_n_f32(1.9875691500e-4f);
  p = vfmaq_f32(vdupq_n_f32(1.3981999507e-3f), p, r);
  p = vfmaq_f32(vdupq_n_f32(8.3334519073e-3f), p, r);
  p = vfmaq_f32(vdupq_n_f32(4.1665795894e-2f), p, r);
  p = vfmaq_f32(vdupq_n_f32(1.6666665459e-1f), p, r);
  p = vfmaq_f32(vdupq_n_f32(5.0000001201e-1f), p, r);
  p = vfmaq_f32(vaddq_f32(r, vdupq_n_f32(1.0f)), p, vmulq_f32(r, r));
  int32x4_t ni = vcvtq_s32_f32(n);
  int32x4_t h = vshrq_n_s32(ni, 1);
  float32x4_t s1 = vreinterpretq_f32_s32(vshlq_n_s32(vaddq_s32(h, vdupq_n_s32(127)), 23));
  float32x4_t s2 =
      vreinterpretq_f32_s32(vshlq_n_s32(vaddq_s32(vsubq_s32(ni, h), vdupq_n_s32(127)), 23));
  float32x4_t e = vmulq_f32(vmulq_f32(p, s1), s2);
  return vreinterpretq_f32_u32(vandq_u32(vreinterpretq_u32_f32(e), keep));
}

AI void tile(const int NV, int nl, int hd, int nv, int pos0, const int32_t *lim,
             const float *qt, const float *k, const float *v, float *m, float *l, float *acc,
             const pl_attn_next *next) {
  float p[PL_ATTN_TILE][L] __attribute__((aligned(16)));
  float cr[L] __attribute__((aligned(16)));
  float32x4_t s[PL_ATTN_TILE][4];
  int o = 0, pf = 0;
  /* the loops over the accumulators are unrolled so that they stay in registers (see
   * kern_attn_avx2.c) */
  for (; o + 4 <= nv; o += 4) {
    float32x4_t a[4][4];
#pragma GCC unroll 4
    for (int i = 0; i < 4; i++)
#pragma GCC unroll 4
      for (int h = 0; h < NV; h++)
        a[i][h] = vdupq_n_f32(0);
    const float *k0 = k + (size_t)o * hd;
    for (int d = 0; d < hd; d++) {
      pl_attn_next_step(next, &pf);
      float32x4_t q[4];
#pragma GCC unroll 4
      for (int h = 0; h < NV; h++)
        q[h] = vld1q_f32(qt + d * L + 4 * h);
#pragma GCC unroll 4
      for (int i = 0; i < 4; i++) {
        float kd = k0[(size_t)i * hd + d];
#pragma GCC unroll 4
        for (int h = 0; h < NV; h++)
          a[i][h] = vfmaq_n_f32(a[i][h], q[h], kd);
      }
    }
#pragma GCC unroll 4
    for (int i = 0; i < 4; i++)
#pragma GCC unroll 4
      for (int h = 0; h < NV; h++)
        s[o + i][h] = a[i][h];
  }
  for (; o < nv; o++) {
    float32x4_t a[4];
    for (int h = 0; h < NV; h++)
      a[h] = vdupq_n_f32(0);
    const float *ko = k + (size_t)o * hd;
    for (int d = 0; d < hd; d++)
      for (int h = 0; h < NV; h++)
        a[h] = vfmaq_n_f32(a[h], vld1q_f32(qt + d * L + 4 * h), ko[d]);
    for (int h = 0; h < NV; h++)
      s[o][h] = a[h];
  }
  pl_attn_next_rest(next, pf);
  if (lim) {
    const float32x4_t ninf = vdupq_n_f32(-INFINITY);
    for (int h = 0; h < NV; h++) {
      int32x4_t lv = vld1q_s32(lim + 4 * h);
      for (o = 0; o < nv; o++)
        s[o][h] = vbslq_f32(vcgtq_s32(lv, vdupq_n_s32(pos0 + o)), s[o][h], ninf);
    }
  }
  for (int h = 0; h < NV; h++) {
    float32x4_t m0 = vld1q_f32(m + 4 * h), mx = m0, sum = vdupq_n_f32(0);
    for (o = 0; o < nv; o++)
      mx = vmaxq_f32(mx, s[o][h]);
    for (o = 0; o < nv; o++) {
      float32x4_t e = exp4(vsubq_f32(s[o][h], mx));
      vst1q_f32(p[o] + 4 * h, e);
      sum = vaddq_f32(sum, e);
    }
    float32x4_t c = exp4(vsubq_f32(m0, mx));
    vst1q_f32(cr + 4 * h, c);
    vst1q_f32(l + 4 * h, vfmaq_f32(sum, vld1q_f32(l + 4 * h), c));
    vst1q_f32(m + 4 * h, mx);
  }
  for (int j = 0; j < nl; j++) {
    float *a = acc + (size_t)j * hd;
    const float c = cr[j];
    int d = 0;
    for (; d + 16 <= hd; d += 16) {
      float32x4_t a0 = vmulq_n_f32(vld1q_f32(a + d), c), a1 = vmulq_n_f32(vld1q_f32(a + d + 4), c);
      float32x4_t a2 = vmulq_n_f32(vld1q_f32(a + d + 8), c), a3 = vmulq_n_f32(vld1q_f32(a + d + 12), c);
      for (o = 0; o < nv; o++) {
        const float *vo = v + (size_t)o * hd + d;
        const float pj = p[o][j];
        a0 = vfmaq_n_f32(a0, vld1q_f32(vo), pj);
        a1 = vfmaq_n_f32(a1, vld1q_f32(vo + 4), pj);
        a2 = vfmaq_n_f32(a2, vld1q_f32(vo + 8), pj);
        a3 = vfmaq_n_f32(a3, vld1q_f32(vo + 12), pj);
      }
      vst1q_f32(a + d, a0);
      vst1q_f32(a + d + 4, a1);
      vst1q_f32(a + d + 8, a2);
      vst1q_f32(a + d + 12, a3);
    }
    for (; d + 4 <= hd; d += 4) {
      float32x4_t a0 = vmulq_n_f32(vld1q_f32(a + d), c);
      for (o = 0; o < nv; o++)
        a0 = vfmaq_n_f32(a0, vld1q_f32(v + (size_t)o * hd + d), p[o][j]);
      vst1q_f32(a + d, a0);
    }
    for (; d < hd; d++) {
      float t = a[d] * c;
      for (o = 0; o < nv; o++)
        t += p[o][j] * v[(size_t)o * hd + d];
      a[d] = t;
    }
  }
}

void pl_attn_tile_neon(int nl, int hd, int nv, int pos0, const int32_t *lim, const float *qt,
                       const float *k, const float *v, float *m, float *l, float *acc,
                       const pl_attn_next *next) {
  switch ((nl + 3) / 4) {
  case 1: tile(1, nl, hd, nv, pos0, lim, qt, k, v, m, l, acc, next); break;
  case 2: tile(2, nl, hd, nv, pos0, lim, qt, k, v, m, l, acc, next); break;
  case 3: tile(3, nl, hd, nv, pos0, lim, qt, k, v, m, l, acc, next); break;
  default: tile(4, nl, hd, nv, pos0, lim, qt, k, v, m, l, acc, next); break;
  }
}
