/* The attention tile (kern.h) with AVX2 + FMA: lanes across ymm registers (NV = 1 or 2 of
 * them for up to 8 or 16 lanes), each key element broadcast once for all lanes, eight keys in
 * flight to hide FMA latency; exp8 for the softmax; values accumulated 32 floats per pass.
 * Same steps as pl_attn_tile_scalar (kern_attn.c). */
#include <immintrin.h>
#include <math.h>

#include "backend/cpu/kern/kern_impl.h"
#include "backend/cpu/kern/kern_x86_exp.h"

#define AI static inline __attribute__((always_inline))
enum { L = PL_ATTN_LANES };

AI void tile(const int NV, int nl, int hd, int nv, int pos0, const int32_t *lim,
             const float *qt, const float *k, const float *v, float *m, float *l, float *acc,
             const pl_attn_next *next) {
  float p[PL_ATTN_TILE][L] __attribute__((aligned(32)));
  float cr[L] __attribute__((aligned(32)));
  __m256 s[PL_ATTN_TILE][2];
  /* KI keys in flight: 8 accumulators either way (8 keys x 1 ymm or 4 keys x 2). */
  const int KI = NV == 1 ? 8 : 4;
  int o = 0, pf = 0;
  for (; o + KI <= nv; o += KI) {
    __m256 a[8][2];
#pragma GCC unroll 8
    for (int i = 0; i < KI; i++)
#pragma GCC unroll 2
      for (int h = 0; h < NV; h++)
        a[i][h] = _mm256_setzero_ps();
    const float *k0 = k + (size_t)o * hd;
    for (int d = 0; d < hd; d++) {
      pl_attn_next_step(next, &pf);
      __m256 q[2];
#pragma GCC unroll 2
      for (int h = 0; h < NV; h++)
        q[h] = _mm256_loadu_ps(qt + d * L + 8 * h);
      /* unrolled so that the accumulators stay in registers (rolled, GCC kept them on the
       * stack: a store-forwarding round trip per FMA, 3x slower) */
#pragma GCC unroll 8
      for (int i = 0; i < KI; i++) {
        __m256 kb = _mm256_broadcast_ss(k0 + (size_t)i * hd + d);
#pragma GCC unroll 2
        for (int h = 0; h < NV; h++)
          a[i][h] = _mm256_fmadd_ps(q[h], kb, a[i][h]);
      }
    }
#pragma GCC unroll 8
    for (int i = 0; i < KI; i++)
#pragma GCC unroll 2
      for (int h = 0; h < NV; h++)
        s[o + i][h] = a[i][h];
  }
  for (; o < nv; o++) {
    __m256 a[2] = {_mm256_setzero_ps(), _mm256_setzero_ps()};
    const float *ko = k + (size_t)o * hd;
    for (int d = 0; d < hd; d++) {
      __m256 kb = _mm256_broadcast_ss(ko + d);
      for (int h = 0; h < NV; h++)
        a[h] = _mm256_fmadd_ps(_mm256_loadu_ps(qt + d * L + 8 * h), kb, a[h]);
    }
    for (int h = 0; h < NV; h++)
      s[o][h] = a[h];
  }
  pl_attn_next_rest(next, pf);
  if (lim) {
    const __m256 ninf = _mm256_set1_ps(-INFINITY);
    for (int h = 0; h < NV; h++) {
      __m256i lv = _mm256_loadu_si256((const __m256i *)(lim + 8 * h));
      for (o = 0; o < nv; o++) {
        __m256 ok = _mm256_castsi256_ps(_mm256_cmpgt_epi32(lv, _mm256_set1_epi32(pos0 + o)));
        s[o][h] = _mm256_blendv_ps(ninf, s[o][h], ok);
      }
    }
  }
  for (int h = 0; h < NV; h++) {
    __m256 m0 = _mm256_loadu_ps(m + 8 * h), mx = m0, sum = _mm256_setzero_ps();
    for (o = 0; o < nv; o++)
      mx = _mm256_max_ps(mx, s[o][h]);
    for (o = 0; o < nv; o++) {
      __m256 e = exp8(_mm256_sub_ps(s[o][h], mx));
      _mm256_store_ps(p[o] + 8 * h, e);
      sum = _mm256_add_ps(sum, e);
    }
    __m256 c = exp8(_mm256_sub_ps(m0, mx));
    _mm256_store_ps(cr + 8 * h, c);
    _mm256_storeu_ps(l + 8 * h, _mm256_fmadd_ps(_mm256_loadu_ps(l + 8 * h), c, sum));
    _mm256_storeu_ps(m + 8 * h, mx);
  }
  for (int j = 0; j < nl; j++) {
    float *a = acc + (size_t)j * hd;
    const __m256 c = _mm256_set1_ps(cr[j]);
    int d = 0;
    for (; d + 32 <= hd; d += 32) {
      __m256 a0 = _mm256_mul_ps(_mm256_loadu_ps(a + d), c);
      __m256 a1 = _mm256_mul_ps(_mm256_loadu_ps(a + d + 8), c);
      __m256 a2 = _mm256_mul_ps(_mm256_loadu_ps(a + d + 16), c);
      __m256 a3 = _mm256_mul_ps(_mm256_loadu_ps(a + d + 24), c);
      for (o = 0; o < nv; o++) {
        const float *vo = v + (size_t)o * hd + d;
        __m256 pb = _mm256_broadcast_ss(p[o] + j);
        a0 = _mm256_fmadd_ps(pb, _mm256_loadu_ps(vo), a0);
        a1 = _mm256_fmadd_ps(pb, _mm256_loadu_ps(vo + 8), a1);
        a2 = _mm256_fmadd_ps(pb, _mm256_loadu_ps(vo + 16), a2);
        a3 = _mm256_fmadd_ps(pb, _mm256_loadu_ps(vo + 24), a3);
      }
      _mm256_storeu_ps(a + d, a0);
      _mm256_storeu_ps(a + d + 8, a1);
      _mm256_storeu_ps(a + d + 16, a2);
      _mm256_storeu_ps(a + d + 24, a3);
    }
    for (; d + 8 <= hd; d += 8) {
      __m256 a0 = _mm256_mul_ps(_mm256_loadu_ps(a + d), c);
      for (o = 0; o < nv; o++)
        a0 = _mm256_fmadd_ps(_mm256_broadcast_ss(p[o] + j), _mm256_loadu_ps(v + (size_t)o * hd + d), a0);
      _mm256_storeu_ps(a + d, a0);
    }
    for (; d < hd; d++) {
      float t = a[d] * cr[j];
      for (o = 0; o < nv; o++)
        t += p[o][j] * v[(size_t)o * hd + d];
      a[d] = t;
    }
  }
}

void pl_attn_tile_avx2(int nl, int hd, int nv, int pos0, const int32_t *lim, const float *qt,
                       const float *k, const float *v, float *m, float *l, float *acc,
                       const pl_attn_next *next) {
  if (nl <= 8)
    tile(1, nl, hd, nv, pos0, lim, qt, k, v, m, l, acc, next);
  else
    tile(2, nl, hd, nv, pos0, lim, qt, k, v, m, l, acc, next);
}
