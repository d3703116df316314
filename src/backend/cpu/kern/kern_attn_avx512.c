/* The attention tile (kern.h) with AVX-512: all 16 lanes in one zmm register, eight keys in
 * flight; tiles of at most 8 lanes take the AVX2 kernel (a ymm holds them). Same steps as
 * pl_attn_tile_scalar (kern_attn.c). */
#include <immintrin.h>
#include <math.h>

#include "backend/cpu/kern/kern_impl.h"
#include "backend/cpu/kern/kern_x86_exp.h"

enum { L = PL_ATTN_LANES };

void pl_attn_tile_avx512(int nl, int hd, int nv, int pos0, const int32_t *lim, const float *qt,
                         const float *k, const float *v, float *m, float *l, float *acc,
                         const pl_attn_next *next) {
  if (nl <= 8) {
    pl_attn_tile_avx2(nl, hd, nv, pos0, lim, qt, k, v, m, l, acc, next);
    return;
  }
  float p[PL_ATTN_TILE][L] __attribute__((aligned(64)));
  float cr[L] __attribute__((aligned(64)));
  __m512 s[PL_ATTN_TILE];
  int o = 0, pf = 0;
  for (; o + 8 <= nv; o += 8) {
    __m512 a[8];
#pragma GCC unroll 8
    for (int i = 0; i < 8; i++)
      a[i] = _mm512_setzero_ps();
    const float *k0 = k + (size_t)o * hd;
    for (int d = 0; d < hd; d++) {
      pl_attn_next_step(next, &pf);
      __m512 q = _mm512_loadu_ps(qt + d * L);
      /* unrolled: the accumulators stay in registers (see kern_attn_avx2.c) */
#pragma GCC unroll 8
      for (int i = 0; i < 8; i++)
        a[i] = _mm512_fmadd_ps(q, _mm512_set1_ps(k0[(size_t)i * hd + d]), a[i]);
    }
#pragma GCC unroll 8
    for (int i = 0; i < 8; i++)
      s[o + i] = a[i];
  }
  for (; o < nv; o++) {
    __m512 a = _mm512_setzero_ps();
    const float *ko = k + (size_t)o * hd;
    for (int d = 0; d < hd; d++)
      a = _mm512_fmadd_ps(_mm512_loadu_ps(qt + d * L), _mm512_set1_ps(ko[d]), a);
    s[o] = a;
  }
  pl_attn_next_rest(next, pf);
  if (lim) {
    __m512i lv = _mm512_loadu_si512(lim);
    for (o = 0; o < nv; o++) {
      __mmask16 ok = _mm512_cmpgt_epi32_mask(lv, _mm512_set1_epi32(pos0 + o));
      s[o] = _mm512_mask_mov_ps(_mm512_set1_ps(-INFINITY), ok, s[o]);
    }
  }
  __m512 m0 = _mm512_loadu_ps(m), mx = m0, sum = _mm512_setzero_ps();
  for (o = 0; o < nv; o++)
    mx = _mm512_max_ps(mx, s[o]);
  for (o = 0; o < nv; o++) {
    __m512 e = exp16(_mm512_sub_ps(s[o], mx));
    _mm512_store_ps(p[o], e);
    sum = _mm512_add_ps(sum, e);
  }
  __m512 c = exp16(_mm512_sub_ps(m0, mx));
  _mm512_store_ps(cr, c);
  _mm512_storeu_ps(l, _mm512_fmadd_ps(_mm512_loadu_ps(l), c, sum));
  _mm512_storeu_ps(m, mx);
  for (int j = 0; j < nl; j++) {
    float *a = acc + (size_t)j * hd;
    const __m512 cj = _mm512_set1_ps(cr[j]);
    int d = 0;
    for (; d + 64 <= hd; d += 64) {
      __m512 a0 = _mm512_mul_ps(_mm512_loadu_ps(a + d), cj);
      __m512 a1 = _mm512_mul_ps(_mm512_loadu_ps(a + d + 16), cj);
      __m512 a2 = _mm512_mul_ps(_mm512_loadu_ps(a + d + 32), cj);
      __m512 a3 = _mm512_mul_ps(_mm512_loadu_ps(a + d + 48), cj);
      for (o = 0; o < nv; o++) {
        const float *vo = v + (size_t)o * hd + d;
        __m512 pb = _mm512_set1_ps(p[o][j]);
        a0 = _mm512_fmadd_ps(pb, _mm512_loadu_ps(vo), a0);
        a1 = _mm512_fmadd_ps(pb, _mm512_loadu_ps(vo + 16), a1);
        a2 = _mm512_fmadd_ps(pb, _mm512_loadu_ps(vo + 32), a2);
        a3 = _mm512_fmadd_ps(pb, _mm512_loadu_ps(vo + 48), a3);
      }
      _mm512_storeu_ps(a + d, a0);
      _mm512_storeu_ps(a + d + 16, a1);
      _mm512_storeu_ps(a + d + 32, a2);
      _mm512_storeu_ps(a + d + 48, a3);
    }
    for (; d < hd; d += 16) {
      __mmask16 mk = hd - d >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (hd - d)) - 1);
      __m512 a0 = _mm512_mul_ps(_mm512_maskz_loadu_ps(mk, a + d), cj);
      for (o = 0; o < nv; o++)
        a0 = _mm512_fmadd_ps(_mm512_set1_ps(p[o][j]),
                             _mm512_maskz_loadu_ps(mk, v + (size_t)o * hd + d), a0);
      _mm512_mask_storeu_ps(a + d, mk, a0);
    }
  }
}
