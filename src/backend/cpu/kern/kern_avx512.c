/* AVX-512 kernels (F/BW/VL/DQ; the VNNI variant of the quantized tiles and the BF16-pair
 * kernel are compiled with `#pragma GCC target(...)` and only installed when cpuid reports
 * the extension).
 * Float weights: tiles of 4 weight rows x up to 4 activation rows (16 accumulators), masked
 * loads for the column tail. Quantized weights: kern_avx512_q.h, 2 weight rows x up to 4
 * activation rows, 64 codes per vector. Vector helpers and the activation quantizer come
 * from the AVX2 file (they are not the bottleneck). */
#include <immintrin.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cpu/kern/kern_impl.h"

#define AI static inline __attribute__((always_inline))
#define PL_UNROLL _Pragma("GCC unroll 16")

AI float h2f(uint16_t h) { return _cvtsh_ss(h); }

/* [p[0] x8 | p[1] x8] */
AI __m512 pair_bcast(const float *p) {
  __m128 v = _mm_castsi128_ps(_mm_loadl_epi64((const __m128i *)p));
  return _mm512_permutexvar_ps(_mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1),
                               _mm512_castps128_ps512(v));
}
/* [half h0 x8 | half h1 x8] as floats */
AI __m512 pair_h(uint16_t h0, uint16_t h1) {
  __m128 f = _mm_cvtph_ps(_mm_cvtsi32_si128((int)((uint32_t)h0 | ((uint32_t)h1 << 16))));
  return _mm512_permutexvar_ps(_mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1),
                               _mm512_castps128_ps512(f));
}

/* MLX scales/biases [i0, i0+n) of one tensor as floats */
static void sb_row(const void *p, pl_dtype t, int64_t i0, int64_t n, float *out) {
  int64_t i = 0;
  if (t == PL_DT_F16) {
    const uint16_t *h = (const uint16_t *)p + i0;
    for (; i + 16 <= n; i += 16)
      _mm512_storeu_ps(out + i, _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(h + i))));
    for (; i < n; i++)
      out[i] = h2f(h[i]);
  } else if (t == PL_DT_BF16) {
    const uint16_t *h = (const uint16_t *)p + i0;
    for (; i + 16 <= n; i += 16)
      _mm512_storeu_ps(out + i, _mm512_castsi512_ps(_mm512_slli_epi32(
                                    _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(h + i))), 16)));
    for (; i < n; i++)
      out[i] = pl_bf16_to_f32(h[i]);
  } else {
    memcpy(out, (const float *)p + i0, (size_t)n * sizeof(float));
  }
}

/* ---- float weights: 4 rows x up to 4 activation rows ------------------------------------ */
#define RWF 4
#define NXF 4

AI __m512 ld_f32(const void *w, int64_t i) { return _mm512_loadu_ps((const float *)w + i); }
AI __m512 ld_f16(const void *w, int64_t i) {
  return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)((const uint16_t *)w + i)));
}
AI __m512 ld_bf16(const void *w, int64_t i) {
  __m512i v = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)((const uint16_t *)w + i)));
  return _mm512_castsi512_ps(_mm512_slli_epi32(v, 16));
}
AI __m512 ldm_f32(const void *w, int64_t i, __mmask16 m) { return _mm512_maskz_loadu_ps(m, (const float *)w + i); }
AI __m512 ldm_f16(const void *w, int64_t i, __mmask16 m) {
  return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, (const uint16_t *)w + i));
}
AI __m512 ldm_bf16(const void *w, int64_t i, __mmask16 m) {
  __m512i v = _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, (const uint16_t *)w + i));
  return _mm512_castsi512_ps(_mm512_slli_epi32(v, 16));
}

/* NAME##_tile from NAME##_body(c, r, nr, rs, j0, nx) with nr and nx compile-time constants:
 * RW rows at stride rs, or single rows for a short tail; up to 4 activation rows. */
#define TILE_FN(NAME, RW)                                                                   \
  static void NAME##_tile(const pl_mm_ctx *c, int64_t r, int nr, int64_t rs, int j0, int nx) { \
    if (nr == RW) {                                                                         \
      switch (nx) {                                                                         \
      case 4: NAME##_body(c, r, RW, rs, j0, 4); break;                                      \
      case 3: NAME##_body(c, r, RW, rs, j0, 3); break;                                      \
      case 2: NAME##_body(c, r, RW, rs, j0, 2); break;                                      \
      default: NAME##_body(c, r, RW, rs, j0, 1); break;                                     \
      }                                                                                     \
      return;                                                                               \
    }                                                                                       \
    for (int i = 0; i < nr; i++)                                                            \
      switch (nx) {                                                                         \
      case 4: NAME##_body(c, r + i * rs, 1, 1, j0, 4); break;                               \
      case 3: NAME##_body(c, r + i * rs, 1, 1, j0, 3); break;                               \
      case 2: NAME##_body(c, r + i * rs, 1, 1, j0, 2); break;                               \
      default: NAME##_body(c, r + i * rs, 1, 1, j0, 1); break;                              \
      }                                                                                     \
  }

#define FLOAT_KERNEL(NAME, LD, LDM)                                                         \
  AI void NAME##_body(const pl_mm_ctx *c, int64_t r, const int nr, int64_t rs, int j0, const int nx) {  \
    const int64_t cols = c->cols;                                                           \
    const void *w[RWF];                                                                     \
    const float *x[NXF];                                                                    \
    PL_UNROLL for (int i = 0; i < nr; i++) w[i] = PL_WROW(c, r + i * rs);                        \
    PL_UNROLL for (int j = 0; j < nx; j++) x[j] = c->x + (size_t)(j0 + j) * cols;           \
    __m512 acc[RWF][NXF];                                                                   \
    PL_UNROLL for (int i = 0; i < nr; i++) PL_UNROLL for (int j = 0; j < nx; j++)           \
        acc[i][j] = _mm512_setzero_ps();                                                    \
    int64_t k = 0;                                                                          \
    for (; k + 16 <= cols; k += 16) {                                                       \
      __m512 wv[RWF];                                                                       \
      PL_UNROLL for (int i = 0; i < nr; i++) wv[i] = LD(w[i], k);                           \
      PL_UNROLL for (int j = 0; j < nx; j++) {                                              \
        __m512 xv = _mm512_loadu_ps(x[j] + k);                                              \
        PL_UNROLL for (int i = 0; i < nr; i++) acc[i][j] = _mm512_fmadd_ps(wv[i], xv, acc[i][j]); \
      }                                                                                     \
    }                                                                                       \
    if (k < cols) {                                                                         \
      __mmask16 m = (__mmask16)((1u << (cols - k)) - 1);                                    \
      __m512 wv[RWF];                                                                       \
      PL_UNROLL for (int i = 0; i < nr; i++) wv[i] = LDM(w[i], k, m);                       \
      PL_UNROLL for (int j = 0; j < nx; j++) {                                              \
        __m512 xv = _mm512_maskz_loadu_ps(m, x[j] + k);                                     \
        PL_UNROLL for (int i = 0; i < nr; i++) acc[i][j] = _mm512_fmadd_ps(wv[i], xv, acc[i][j]); \
      }                                                                                     \
    }                                                                                       \
    PL_UNROLL for (int i = 0; i < nr; i++) PL_UNROLL for (int j = 0; j < nx; j++)           \
        PL_Y(c, j0 + j, r + i * rs) = _mm512_reduce_add_ps(acc[i][j]);                           \
  }                                                                                         \
  TILE_FN(NAME, RWF)                                                                        \
  static void NAME(const pl_mm_ctx *c, int64_t r0, int64_t r1) { PL_MM_LOOP(c, r0, r1, RWF, NXF, NAME##_tile); }

FLOAT_KERNEL(mm_f32, ld_f32, ldm_f32)
FLOAT_KERNEL(mm_f16, ld_f16, ldm_f16)
FLOAT_KERNEL(mm_bf16, ld_bf16, ldm_bf16)

/* ---- BF16 weights x bf16-rounded activations: vdpbf16ps ------------------------------------
 * One instruction multiplies 32 bf16 pairs into 16 f32 lanes (each pair's products are exact
 * in f32): twice the work of an f32 FMA, and the weights are used as stored. The activations
 * were rounded to bf16 rows by x_to_bf16 (kern_matmul.c). Same tiling as the float kernels. */
#pragma GCC push_options
#pragma GCC target("avx512bf16")
AI __m512bh ld_bh(const uint16_t *p) { return (__m512bh)_mm512_loadu_si512(p); }
AI __m512bh ldm_bh(const uint16_t *p, __mmask32 m) { return (__m512bh)_mm512_maskz_loadu_epi16(m, p); }

static void x_to_bf16(const float *x, int64_t cols, int z, uint8_t *row, const pl_qx_layout *l) {
  (void)z;
  (void)l;
  uint16_t *o = (uint16_t *)row;
  for (int64_t i = 0; i < cols; i += 32) {
    int64_t left = cols - i;
    __mmask16 lo = left >= 16 ? 0xffff : (__mmask16)((1u << left) - 1);
    __mmask16 hi = left >= 32 ? 0xffff : left <= 16 ? 0 : (__mmask16)((1u << (left - 16)) - 1);
    __m512bh v = _mm512_cvtne2ps_pbh(_mm512_maskz_loadu_ps(hi, x + i + 16), _mm512_maskz_loadu_ps(lo, x + i));
    _mm512_mask_storeu_epi16(o + i, left >= 32 ? 0xffffffffu : (__mmask32)(((uint64_t)1 << left) - 1), (__m512i)v);
  }
}

AI void mm_bf16dp_body(const pl_mm_ctx *c, int64_t r, const int nr, int64_t rs, int j0, const int nx) {
  const int64_t cols = c->cols;
  const uint16_t *w[RWF], *x[NXF];
  PL_UNROLL for (int i = 0; i < nr; i++) w[i] = (const uint16_t *)PL_WROW(c, r + i * rs);
  PL_UNROLL for (int j = 0; j < nx; j++) x[j] = (const uint16_t *)(c->qx + (size_t)(j0 + j) * c->xrb);
  __m512 acc[RWF][NXF];
  PL_UNROLL for (int i = 0; i < nr; i++) PL_UNROLL for (int j = 0; j < nx; j++) acc[i][j] = _mm512_setzero_ps();
  int64_t k = 0;
  for (; k + 32 <= cols; k += 32) {
    __m512bh wv[RWF];
    PL_UNROLL for (int i = 0; i < nr; i++) wv[i] = ld_bh(w[i] + k);
    PL_UNROLL for (int j = 0; j < nx; j++) {
      __m512bh xv = ld_bh(x[j] + k);
      PL_UNROLL for (int i = 0; i < nr; i++) acc[i][j] = _mm512_dpbf16_ps(acc[i][j], wv[i], xv);
    }
  }
  if (k < cols) { /* masked-off pairs load as +0 on both sides */
    __mmask32 m = (__mmask32)(((uint64_t)1 << (cols - k)) - 1);
    __m512bh wv[RWF];
    PL_UNROLL for (int i = 0; i < nr; i++) wv[i] = ldm_bh(w[i] + k, m);
    PL_UNROLL for (int j = 0; j < nx; j++) {
      __m512bh xv = ldm_bh(x[j] + k, m);
      PL_UNROLL for (int i = 0; i < nr; i++) acc[i][j] = _mm512_dpbf16_ps(acc[i][j], wv[i], xv);
    }
  }
  PL_UNROLL for (int i = 0; i < nr; i++) PL_UNROLL for (int j = 0; j < nx; j++)
      PL_Y(c, j0 + j, r + i * rs) = _mm512_reduce_add_ps(acc[i][j]);
}
TILE_FN(mm_bf16dp, RWF)
static void mm_bf16dp(const pl_mm_ctx *c, int64_t r0, int64_t r1) { PL_MM_LOOP(c, r0, r1, RWF, NXF, mm_bf16dp_tile); }
#pragma GCC pop_options

/* ---- quantized weights: two instantiations of kern_avx512_q.h --------------------------- */
#define RWQ 2
#define NXQ 4
#define MLX_CHUNK 256

#define VNNI 0
#define FN(x) x##_bw
#include "backend/cpu/kern/kern_avx512_q.h"
#undef VNNI
#undef FN

#pragma GCC push_options
#pragma GCC target("avx512vnni")
#define VNNI 1
#define FN(x) x##_vnni
#include "backend/cpu/kern/kern_avx512_q.h"
#undef VNNI
#undef FN

/* ---- Q8_0 x VNNI: 16 weight rows per vector ----------------------------------------------
 * kern_avx512_q.h spreads one row's block over 8 int32 lanes, so every vpdpbusd needs its
 * own float work (convert, scale product, FMA) and a horizontal sum at the end. Here the
 * weights are instead repacked, 16 rows and PK_KC blocks at a time, into a per-thread buffer
 * where vector k of block b holds bytes 4k..4k+3 of block b of each of the 16 rows (lane =
 * row) as unsigned codes u = w + 128, next to a vector of the 16 rows' scales. Eight
 * vpdpbusd, each with 4 activation bytes broadcast, leave in lane r the exact integer dot
 * of row r's block with the activation block (the accumulator starts at -128 * sum(q) of
 * the activation block, from zs: qx_bsum). Then per activation row and block, for 16 rows
 * at once:
 *     y = fma(float(I) * sw, dx, y)          blocks in order
 * three float instructions per eight vpdpbusd (one per one before), and y lands in
 * [n][rows] order, 16 rows per store. Every row sees the same instructions in the same
 * order whatever the tile, the thread split or the other rows of the batch (a ragged last
 * group is padded with zero-scale rows and stored masked). The repack is done once per
 * (x block, row group, K chunk) and serves every activation row of the x block. */
#define PK_KC 64 /* blocks per repacked chunk: 32 KiB of codes + 4 KiB of scales */
#define PK_NX 8  /* activation rows per register tile */

AI void pk_repack(const pl_mm_ctx *c, int64_t r, int nr, int64_t b0, int kn, __m512i *buf, __m512 *sbuf,
                  int64_t pr, int pnr, int64_t pb0) {
  const pl_blk_q8_0 *w[16];
  PL_UNROLL for (int i = 0; i < 16; i++) w[i] = (const pl_blk_q8_0 *)PL_WROW(c, r + (i < nr ? i : 0)) + b0;
  /* the next chunk's rows (pnr of them from row pr, blocks from pb0), prefetched into L2 a
   * block's worth per step: 16 short row streams are more than the hardware prefetchers
   * follow, and a decode step has nothing else to hide DRAM latency behind */
  const char *pw = pnr > 0 ? (const char *)((const pl_blk_q8_0 *)PL_WROW(c, pr) + pb0) : NULL;
  const __mmask16 live = (__mmask16)(nr >= 16 ? 0xffff : (1u << nr) - 1);
  const __m512i lo = _mm512_setr_epi64(0, 1, 8, 9, 4, 5, 12, 13), hi = _mm512_setr_epi64(2, 3, 10, 11, 6, 7, 14, 15);
  const __m512i bias = _mm512_set1_epi8((char)0x80);
  const __m512i roff = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                          _mm512_set1_epi32((int)c->wrb));
  for (int b = 0; b < kn; b++) {
    __m512i z[8], t[8], u[8];
    /* z[p] = [row p | row p+8], 8 dwords each; an 8x8 dword transpose in each half */
    PL_UNROLL for (int p = 0; p < 8; p++)
      z[p] = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)w[p][b].qs)),
                                _mm256_loadu_si256((const __m256i *)w[p + 8][b].qs), 1);
    PL_UNROLL for (int p = 0; p < 8; p += 2) {
      t[p] = _mm512_unpacklo_epi32(z[p], z[p + 1]);
      t[p + 1] = _mm512_unpackhi_epi32(z[p], z[p + 1]);
    }
    PL_UNROLL for (int q = 0; q < 8; q += 4) { /* u[q+k]: dwords k, k+4 of rows q..q+3 */
      u[q + 0] = _mm512_unpacklo_epi64(t[q], t[q + 2]);
      u[q + 1] = _mm512_unpackhi_epi64(t[q], t[q + 2]);
      u[q + 2] = _mm512_unpacklo_epi64(t[q + 1], t[q + 3]);
      u[q + 3] = _mm512_unpackhi_epi64(t[q + 1], t[q + 3]);
    }
    PL_UNROLL for (int k = 0; k < 4; k++) {
      _mm512_store_si512(buf + 8 * b + k, _mm512_xor_si512(_mm512_permutex2var_epi64(u[k], lo, u[k + 4]), bias));
      _mm512_store_si512(buf + 8 * b + k + 4, _mm512_xor_si512(_mm512_permutex2var_epi64(u[k], hi, u[k + 4]), bias));
    }
    if (pw)
      PL_UNROLL for (int i = 0; i < 16; i++)
        if (i < pnr)
          _mm_prefetch(pw + (size_t)i * c->wrb + 34 * b + 33, _MM_HINT_T1);
    /* the 16 scales: one gather of the dwords that start each row's block (d in the low half) */
    __m512i dv = _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), live, roff, (const void *)&w[0][b], 1);
    sbuf[b] = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(dv));
  }
}

AI void pk_tile(const pl_mm_ctx *c, const __m512i *buf, const __m512 *sbuf, int64_t b0, int kn, int64_t r,
                __mmask16 ym, int j0, const int nx, int first) {
  const int8_t *xq[PK_NX];
  const float *xd[PK_NX];
  const int32_t *xc[PK_NX];
  __m512 acc[PK_NX];
  PL_UNROLL for (int j = 0; j < nx; j++) {
    xq[j] = PL_QX_QS(c, j0 + j) + 32 * b0;
    xd[j] = PL_QX_D(c, j0 + j) + b0;
    xc[j] = PL_QX_ZS(c, j0 + j) + b0;
    acc[j] = first ? _mm512_setzero_ps() : _mm512_maskz_loadu_ps(ym, &PL_Y(c, j0 + j, r));
  }
  for (int b = 0; b < kn; b++) {
    __m512i I[PK_NX];
    PL_UNROLL for (int j = 0; j < nx; j++) I[j] = _mm512_set1_epi32(xc[j][b]);
    PL_UNROLL for (int k = 0; k < 8; k++) {
      const __m512i wk = _mm512_load_si512(buf + 8 * b + k);
      PL_UNROLL for (int j = 0; j < nx; j++) {
        int32_t xv;
        memcpy(&xv, xq[j] + 32 * b + 4 * k, 4);
        I[j] = _mm512_dpbusd_epi32(I[j], wk, _mm512_set1_epi32(xv));
      }
    }
    const __m512 sw = sbuf[b];
    PL_UNROLL for (int j = 0; j < nx; j++)
      acc[j] = _mm512_fmadd_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(I[j]), sw), _mm512_set1_ps(xd[j][b]), acc[j]);
  }
  PL_UNROLL for (int j = 0; j < nx; j++) _mm512_mask_storeu_ps(&PL_Y(c, j0 + j, r), ym, acc[j]);
}

/* Decode (few activation rows): the same per-(row, block) integer dots and float steps, but
 * without the repack, whose cost only a batch amortizes. Per block, vector m holds rows m
 * and m+8 (a 256-bit half each, 8 int32 lanes of 4 products); after the 8 vpdpbusd an
 * integer reduce-transpose (exact) leaves row l's block dot in lane l, as pk_tile has it. */
#define PK_ND 4 /* activation rows per decode tile */
AI __m512i pk_hsum16(const __m512i *P) {
  __m512i Q[4], R[2];
  PL_UNROLL for (int m = 0; m < 4; m++)
    Q[m] = _mm512_add_epi32(_mm512_unpacklo_epi32(P[2 * m], P[2 * m + 1]), _mm512_unpackhi_epi32(P[2 * m], P[2 * m + 1]));
  PL_UNROLL for (int m = 0; m < 2; m++)
    R[m] = _mm512_add_epi32(_mm512_unpacklo_epi64(Q[2 * m], Q[2 * m + 1]), _mm512_unpackhi_epi64(Q[2 * m], Q[2 * m + 1]));
  /* R[m] 128-bit lanes: rows 4m..4m+3 (two partials), then rows 8+4m..11+4m (two partials) */
  const __m512i ev = _mm512_setr_epi64(0, 1, 8, 9, 4, 5, 12, 13), od = _mm512_setr_epi64(2, 3, 10, 11, 6, 7, 14, 15);
  return _mm512_add_epi32(_mm512_permutex2var_epi64(R[0], ev, R[1]), _mm512_permutex2var_epi64(R[0], od, R[1]));
}

AI void pk_dec(const pl_mm_ctx *c, int64_t r, int nr, int j0, const int nx, int64_t pr, int pnr) {
  const pl_blk_q8_0 *w[16];
  PL_UNROLL for (int i = 0; i < 16; i++) w[i] = (const pl_blk_q8_0 *)PL_WROW(c, r + (i < nr ? i : 0));
  const char *pw = pnr > 0 ? (const char *)PL_WROW(c, pr) : NULL;
  const __mmask16 live = (__mmask16)(nr >= 16 ? 0xffff : (1u << nr) - 1);
  const __m512i bias = _mm512_set1_epi8((char)0x80);
  const __m512i roff = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                          _mm512_set1_epi32((int)c->wrb));
  const int64_t nb = c->ql.nb;
  const int8_t *xq[PK_ND];
  const float *xd[PK_ND];
  const int32_t *xc[PK_ND];
  __m512 acc[PK_ND];
  PL_UNROLL for (int j = 0; j < nx; j++) {
    xq[j] = PL_QX_QS(c, j0 + j);
    xd[j] = PL_QX_D(c, j0 + j);
    xc[j] = PL_QX_ZS(c, j0 + j);
    acc[j] = _mm512_setzero_ps();
  }
  for (int64_t b = 0; b < nb; b++) {
    if (pw)
      PL_UNROLL for (int i = 0; i < 16; i++)
        if (i < pnr)
          _mm_prefetch(pw + (size_t)i * c->wrb + 34 * b + 33, _MM_HINT_T1);
    __m512i W[8];
    PL_UNROLL for (int m = 0; m < 8; m++)
      W[m] = _mm512_xor_si512(_mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)w[m][b].qs)),
                                                 _mm256_loadu_si256((const __m256i *)w[m + 8][b].qs), 1), bias);
    __m512i dv = _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), live, roff, (const void *)&w[0][b], 1);
    const __m512 sw = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(dv));
    PL_UNROLL for (int j = 0; j < nx; j++) {
      const __m512i x = _mm512_broadcast_i64x4(_mm256_load_si256((const __m256i *)(xq[j] + 32 * b)));
      __m512i P[8];
      PL_UNROLL for (int m = 0; m < 8; m++) P[m] = _mm512_dpbusd_epi32(_mm512_setzero_si512(), W[m], x);
      __m512i I = _mm512_add_epi32(pk_hsum16(P), _mm512_set1_epi32(xc[j][b]));
      acc[j] = _mm512_fmadd_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(I), sw), _mm512_set1_ps(xd[j][b]), acc[j]);
    }
  }
  PL_UNROLL for (int j = 0; j < nx; j++) _mm512_mask_storeu_ps(&PL_Y(c, j0 + j, r), live, acc[j]);
}

static void q8_0_vnni16(const pl_mm_ctx *c, int64_t r0, int64_t r1) {
  if (c->n <= PK_ND && !getenv("PAGELLM_Q8_NODEC")) {
    for (int64_t r = r0; r < r1; r += 16) {
      const int nr = r1 - r < 16 ? (int)(r1 - r) : 16;
      const int pnr = r1 - (r + 16) < 16 ? (int)(r1 - (r + 16)) : 16;
      switch (c->n) {
      case 4: pk_dec(c, r, nr, 0, 4, r + 16, pnr); break;
      case 3: pk_dec(c, r, nr, 0, 3, r + 16, pnr); break;
      case 2: pk_dec(c, r, nr, 0, 2, r + 16, pnr); break;
      default: pk_dec(c, r, nr, 0, 1, r + 16, pnr); break;
      }
    }
    return;
  }
  _Alignas(64) __m512i buf[PK_KC * 8];
  _Alignas(64) __m512 sbuf[PK_KC];
  const int64_t nb = c->ql.nb;
  int xbn = (int)(393216 / (c->xrb ? c->xrb : 1));
  xbn = xbn < PK_NX ? PK_NX : xbn / PK_NX * PK_NX;
  for (int xs = 0; xs < c->n; xs += xbn) {
    const int xe = c->n - xs < xbn ? c->n : xs + xbn;
    for (int64_t r = r0; r < r1; r += 16) {
      const int nr = r1 - r < 16 ? (int)(r1 - r) : 16;
      const __mmask16 ym = (__mmask16)(nr >= 16 ? 0xffff : (1u << nr) - 1);
      for (int64_t b0 = 0; b0 < nb; b0 += PK_KC) {
        const int kn = nb - b0 < PK_KC ? (int)(nb - b0) : PK_KC;
        int64_t pr = r, pb0 = b0 + PK_KC;
        int pnr = nr;
        if (pb0 >= nb) {
          pr = r + 16;
          pb0 = 0;
          pnr = r1 - pr < 16 ? (int)(r1 - pr) : 16;
        }
        pk_repack(c, r, nr, b0, kn, buf, sbuf, pr, pnr, pb0);
        for (int j0 = xs; j0 < xe; j0 += PK_NX) {
          const int f = b0 == 0;
          switch (xe - j0 < PK_NX ? xe - j0 : PK_NX) {
          case 8: pk_tile(c, buf, sbuf, b0, kn, r, ym, j0, 8, f); break;
          case 7: pk_tile(c, buf, sbuf, b0, kn, r, ym, j0, 7, f); break;
          case 6: pk_tile(c, buf, sbuf, b0, kn, r, ym, j0, 6, f); break;
          case 5: pk_tile(c, buf, sbuf, b0, kn, r, ym, j0, 5, f); break;
          case 4: pk_tile(c, buf, sbuf, b0, kn, r, ym, j0, 4, f); break;
          case 3: pk_tile(c, buf, sbuf, b0, kn, r, ym, j0, 3, f); break;
          case 2: pk_tile(c, buf, sbuf, b0, kn, r, ym, j0, 2, f); break;
          default: pk_tile(c, buf, sbuf, b0, kn, r, ym, j0, 1, f); break;
          }
        }
      }
    }
  }
}
#pragma GCC pop_options

/* ---- dequantization for the prefill path ------------------------------------------------ */
static void deq_f16(const void *row, float *y, int64_t n) {
  const uint16_t *h = row;
  int64_t i = 0;
  for (; i + 16 <= n; i += 16)
    _mm512_storeu_ps(y + i, _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(h + i))));
  if (i < n) {
    __mmask16 m = (__mmask16)((1u << (n - i)) - 1);
    _mm512_mask_storeu_ps(y + i, m, _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, h + i)));
  }
}

void pl_kern_fill_avx512(pl_kern_ops *o, int vnni, int bf16) {
  o->mm[PL_MMT_F32] = mm_f32;
  o->mm[PL_MMT_F16] = mm_f16;
  o->mm[PL_MMT_BF16] = bf16 ? mm_bf16dp : mm_bf16;
  o->x_is_bf16[PL_MMT_BF16] = bf16;
  o->x_bf16 = x_to_bf16;
  o->mm_rows_align[PL_MMT_F32] = o->mm_rows_align[PL_MMT_F16] = o->mm_rows_align[PL_MMT_BF16] = RWF;
  for (int t = PL_MMT_Q8_0; t < PL_MMT_COUNT; t++)
    o->mm_rows_align[t] = RWQ;
  o->dequant[PL_MMT_F16] = deq_f16;
  if (vnni) {
    o->mm[PL_MMT_Q8_0] = getenv("PAGELLM_Q8_VNNI2") ? q8_0_vnni : q8_0_vnni16;
    o->qx_bsum[PL_MMT_Q8_0] = !getenv("PAGELLM_Q8_VNNI2");
    if (!getenv("PAGELLM_Q8_VNNI2"))
      o->mm_rows_align[PL_MMT_Q8_0] = 16;
    o->mm[PL_MMT_Q4_0] = q4_0_vnni;
    o->mm[PL_MMT_Q4_K] = q4_k_vnni;
    o->mm[PL_MMT_Q6_K] = q6_k_vnni;
    o->mm[PL_MMT_MLX4] = mlx4_vnni;
    o->mm[PL_MMT_MLX8] = mlx8_vnni;
    o->qx_z[PL_MMT_Q8_0] = 128;
  } else {
    o->mm[PL_MMT_Q8_0] = q8_0_bw;
    o->mm[PL_MMT_Q4_0] = q4_0_bw;
    o->mm[PL_MMT_Q4_K] = q4_k_bw;
    o->mm[PL_MMT_Q6_K] = q6_k_bw;
    o->mm[PL_MMT_MLX4] = mlx4_bw;
    o->mm[PL_MMT_MLX8] = mlx8_bw;
    o->qx_z[PL_MMT_Q8_0] = 0;
    o->qx_bsum[PL_MMT_Q8_0] = 0;
  }
  o->qx_z[PL_MMT_Q4_0] = 8;
  o->qx_z[PL_MMT_Q6_K] = 32;
  o->attn_tile = pl_attn_tile_avx512;
}
