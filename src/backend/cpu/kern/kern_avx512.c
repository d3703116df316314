/* AVX-512 kernels (F/BW/VL/DQ; the VNNI variant of the quantized tiles and the BF16-pair
 * kernel are compiled with `#pragma GCC target(...)` and only installed when cpuid reports
 * the extension).
 * Float weights: tiles of 4 weight rows x up to 4 activation rows (16 accumulators), masked
 * loads for the column tail. Quantized weights: kern_avx512_q.h, 2 weight rows x up to 4
 * activation rows, 64 codes per vector. Vector helpers and the activation quantizer come
 * from the AVX2 file (they are not the bottleneck). */
#include <immintrin.h>
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
    o->mm[PL_MMT_Q8_0] = q8_0_vnni;
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
  }
  o->qx_z[PL_MMT_Q4_0] = 8;
  o->qx_z[PL_MMT_Q6_K] = 32;
  o->attn_tile = pl_attn_tile_avx512;
}
