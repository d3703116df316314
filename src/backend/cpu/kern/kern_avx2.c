/* AVX2 + FMA + F16C kernels (built with -mavx2 -mfma -mf16c; only called after cpuid says
 * so). Quantized tiles: one weight row x up to NX=4 activation rows; each weight block is
 * loaded and decoded once and reused for every activation row of the tile (register tiling),
 * and two accumulators per row (even/odd blocks) hide FMA latency at n=1. Float tiles: two
 * weight rows x up to 6 activation rows.
 * Integer dots: signed codes use the sign trick (|w| as u8 x sign(x,w) as s8 -> maddubs),
 * so pair sums stay <= 2*128*127 and never saturate; unsigned 4-bit codes go straight in. */
#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "backend/cpu/kern/kern_impl.h"
#include "backend/cpu/kern/kern_x86_exp.h"

#define AI static inline __attribute__((always_inline))
#define PL_UNROLL _Pragma("GCC unroll 4")
#define PL_UNROLL8 _Pragma("GCC unroll 8")
#define NX 4

AI float hsum8(__m256 v) {
  __m128 a = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  a = _mm_add_ps(a, _mm_movehl_ps(a, a));
  a = _mm_add_ss(a, _mm_movehdup_ps(a));
  return _mm_cvtss_f32(a);
}

AI float h2f(uint16_t h) { return _cvtsh_ss(h); }

/* sum over each group of 4 bytes of w*x for signed w (given as |w| and w) and signed x */
AI __m256i dot_signed(__m256i aw, __m256i w, __m256i x) {
  return _mm256_madd_epi16(_mm256_maddubs_epi16(aw, _mm256_sign_epi8(x, w)), _mm256_set1_epi16(1));
}
/* same for unsigned w <= 127 */
AI __m256i dot_unsigned(__m256i u, __m256i x) {
  return _mm256_madd_epi16(_mm256_maddubs_epi16(u, x), _mm256_set1_epi16(1));
}

/* ---- float weights ----------------------------------------------------------------------- */

AI __m256 ld_f32(const void *w, int64_t i) { return _mm256_loadu_ps((const float *)w + i); }
AI __m256 ld_f16(const void *w, int64_t i) {
  return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)((const uint16_t *)w + i)));
}
AI __m256 ld_bf16(const void *w, int64_t i) {
  __m256i v = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)((const uint16_t *)w + i)));
  return _mm256_castsi256_ps(_mm256_slli_epi32(v, 16));
}
AI float sc_f32(const void *w, int64_t i) { return ((const float *)w)[i]; }
AI float sc_f16(const void *w, int64_t i) { return h2f(((const uint16_t *)w)[i]); }
AI float sc_bf16(const void *w, int64_t i) { return pl_bf16_to_f32(((const uint16_t *)w)[i]); }

/* Float tiles: RWF=2 weight rows x up to NXF=6 activation rows, 8 columns per step, one
 * accumulator per (row, activation row) pair: 12 accumulators, 2 weight vectors and one
 * activation vector fit the 16 ymm registers (the loops over them must unroll fully, hence
 * unroll 8: a partly unrolled loop leaves the accumulators in memory, 2.5x slower). At n=1
 * the two rows give two FMA chains. Six rows, not four: 5-6 rows (a speculative verify of
 * 4 proposals, a batch of 5-6) then take one pass over the weights instead of 4 + 1-2,
 * 1.3-1.5x faster for F16/BF16 (docs/BENCHMARKS.md section 15e). */
#define RWF 2
#define NXF 6
#define FLOAT_KERNEL(NAME, LD, SC)                                                        \
  AI void NAME##_body(const pl_mm_ctx *c, int64_t r, const int nr, int64_t rs, int j0, const int nx) { \
    const int64_t cols = c->cols;                                                         \
    const void *w[RWF];                                                                   \
    const float *x[NXF];                                                                   \
    PL_UNROLL8 for (int i = 0; i < nr; i++) w[i] = PL_WROW(c, r + i * rs);                      \
    PL_UNROLL8 for (int j = 0; j < nx; j++) x[j] = c->x + (size_t)(j0 + j) * cols;         \
    __m256 acc[RWF][NXF];                                                                  \
    PL_UNROLL8 for (int i = 0; i < nr; i++) PL_UNROLL8 for (int j = 0; j < nx; j++)         \
        acc[i][j] = _mm256_setzero_ps();                                                  \
    int64_t k = 0;                                                                        \
    for (; k + 8 <= cols; k += 8) {                                                       \
      __m256 wv[RWF];                                                                     \
      PL_UNROLL8 for (int i = 0; i < nr; i++) wv[i] = LD(w[i], k);                         \
      PL_UNROLL8 for (int j = 0; j < nx; j++) {                                            \
        __m256 xv = _mm256_loadu_ps(x[j] + k);                                            \
        PL_UNROLL8 for (int i = 0; i < nr; i++) acc[i][j] = _mm256_fmadd_ps(wv[i], xv, acc[i][j]); \
      }                                                                                   \
    }                                                                                     \
    PL_UNROLL8 for (int i = 0; i < nr; i++) PL_UNROLL8 for (int j = 0; j < nx; j++) {       \
      float t = 0;                                                                        \
      for (int64_t q = k; q < cols; q++)                                                  \
        t += SC(w[i], q) * x[j][q];                                                       \
      PL_Y(c, j0 + j, r + i * rs) = hsum8(acc[i][j]) + t;                                      \
    }                                                                                     \
  }                                                                                       \
  static void NAME##_tile(const pl_mm_ctx *c, int64_t r, int nr, int64_t rs, int j0, int nx) {        \
    if (nr == RWF) {                                                                      \
      switch (nx) {                                                                       \
      case 6: NAME##_body(c, r, RWF, rs, j0, 6); break;                                       \
      case 5: NAME##_body(c, r, RWF, rs, j0, 5); break;                                       \
      case 4: NAME##_body(c, r, RWF, rs, j0, 4); break;                                       \
      case 3: NAME##_body(c, r, RWF, rs, j0, 3); break;                                       \
      case 2: NAME##_body(c, r, RWF, rs, j0, 2); break;                                       \
      default: NAME##_body(c, r, RWF, rs, j0, 1); break;                                      \
      }                                                                                   \
      return;                                                                             \
    }                                                                                     \
    for (int i = 0; i < nr; i++)                                                          \
      switch (nx) {                                                                       \
      case 6: NAME##_body(c, r + i * rs, 1, 1, j0, 6); break;                                     \
      case 5: NAME##_body(c, r + i * rs, 1, 1, j0, 5); break;                                     \
      case 4: NAME##_body(c, r + i * rs, 1, 1, j0, 4); break;                                     \
      case 3: NAME##_body(c, r + i * rs, 1, 1, j0, 3); break;                                     \
      case 2: NAME##_body(c, r + i * rs, 1, 1, j0, 2); break;                                     \
      default: NAME##_body(c, r + i * rs, 1, 1, j0, 1); break;                                    \
      }                                                                                   \
  }                                                                                       \
  static void NAME(const pl_mm_ctx *c, int64_t r0, int64_t r1) { PL_MM_LOOP(c, r0, r1, RWF, NXF, NAME##_tile); }

FLOAT_KERNEL(mm_f32, ld_f32, sc_f32)
FLOAT_KERNEL(mm_f16, ld_f16, sc_f16)
FLOAT_KERNEL(mm_bf16, ld_bf16, sc_bf16)

/* Tile boilerplate for the quantized kernels: NAME##_body(c, r, j0, nx) with constant nx. */
#define QUANT_TILE(NAME)                                                                  \
  static void NAME##_tile(const pl_mm_ctx *c, int64_t r, int nr, int64_t rs, int j0, int nx) {                \
    (void)nr; /* RW = 1 */                                                              \
    (void)rs;                                                                              \
    switch (nx) {                                                                         \
    case 4: NAME##_body(c, r, j0, 4); break;                                              \
    case 3: NAME##_body(c, r, j0, 3); break;                                              \
    case 2: NAME##_body(c, r, j0, 2); break;                                              \
    default: NAME##_body(c, r, j0, 1); break;                                             \
    }                                                                                     \
  }                                                                                       \
  static void NAME(const pl_mm_ctx *c, int64_t r0, int64_t r1) { PL_MM_LOOP(c, r0, r1, 1, NX, NAME##_tile); }

#define QX_SETUP()                                                                        \
  const int8_t *xq[NX];                                                                   \
  const float *xd[NX];                                                                    \
  const float *xs[NX];                                                                    \
  PL_UNROLL for (int j = 0; j < nx; j++) {                                                          \
    xq[j] = PL_QX_QS(c, j0 + j);                                                          \
    xd[j] = PL_QX_D(c, j0 + j);                                                           \
    xs[j] = PL_QX_S(c, j0 + j);                                                           \
  }                                                                                       \
  (void)xs;

/* ---- Q8_0 / Q4_0: 32-element blocks, signed codes -------------------------------------- */

#define Q_BLOCK_STEP(WV, DW, B, K)                                                         \
  do {                                                                                     \
    __m256i aw_ = _mm256_sign_epi8(WV, WV);                                                \
    PL_UNROLL for (int j = 0; j < nx; j++) {                                                         \
      __m256i x_ = _mm256_load_si256((const __m256i *)(xq[j] + 32 * (B)));                 \
      __m256 p_ = _mm256_cvtepi32_ps(dot_signed(aw_, WV, x_));                              \
      acc[j][K] = _mm256_fmadd_ps(p_, _mm256_set1_ps((DW) * xd[j][B]), acc[j][K]);          \
    }                                                                                      \
  } while (0)

AI __m256i q4_0_codes(const pl_blk_q4_0 *b) { /* 32 signed codes (q - 8) in element order */
  __m128i v = _mm_loadu_si128((const __m128i *)b->qs);
  __m128i m = _mm_set1_epi8(15);
  __m256i q = _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(v, 4), m), _mm_and_si128(v, m));
  return _mm256_sub_epi8(q, _mm256_set1_epi8(8));
}

AI void mm_q8_0_body(const pl_mm_ctx *c, int64_t r, int j0, const int nx) {
  const pl_blk_q8_0 *w = (const pl_blk_q8_0 *)PL_WROW(c, r);
  const int64_t nb = c->ql.nb;
  QX_SETUP();
  __m256 acc[NX][2];
  PL_UNROLL for (int j = 0; j < nx; j++)
    acc[j][0] = acc[j][1] = _mm256_setzero_ps();
  int64_t b = 0;
  for (; b + 2 <= nb; b += 2) {
    __m256i w0 = _mm256_loadu_si256((const __m256i *)w[b].qs);
    __m256i w1 = _mm256_loadu_si256((const __m256i *)w[b + 1].qs);
    float d0 = h2f(w[b].d), d1 = h2f(w[b + 1].d);
    Q_BLOCK_STEP(w0, d0, b, 0);
    Q_BLOCK_STEP(w1, d1, b + 1, 1);
  }
  if (b < nb) {
    __m256i w0 = _mm256_loadu_si256((const __m256i *)w[b].qs);
    float d0 = h2f(w[b].d);
    Q_BLOCK_STEP(w0, d0, b, 0);
  }
  PL_UNROLL for (int j = 0; j < nx; j++)
    PL_Y(c, j0 + j, r) = hsum8(_mm256_add_ps(acc[j][0], acc[j][1]));
}
QUANT_TILE(mm_q8_0)

AI void mm_q4_0_body(const pl_mm_ctx *c, int64_t r, int j0, const int nx) {
  const pl_blk_q4_0 *w = (const pl_blk_q4_0 *)PL_WROW(c, r);
  const int64_t nb = c->ql.nb;
  QX_SETUP();
  __m256 acc[NX][2];
  PL_UNROLL for (int j = 0; j < nx; j++)
    acc[j][0] = acc[j][1] = _mm256_setzero_ps();
  int64_t b = 0;
  for (; b + 2 <= nb; b += 2) {
    __m256i w0 = q4_0_codes(&w[b]), w1 = q4_0_codes(&w[b + 1]);
    float d0 = h2f(w[b].d), d1 = h2f(w[b + 1].d);
    Q_BLOCK_STEP(w0, d0, b, 0);
    Q_BLOCK_STEP(w1, d1, b + 1, 1);
  }
  if (b < nb) {
    __m256i w0 = q4_0_codes(&w[b]);
    float d0 = h2f(w[b].d);
    Q_BLOCK_STEP(w0, d0, b, 0);
  }
  PL_UNROLL for (int j = 0; j < nx; j++)
    PL_Y(c, j0 + j, r) = hsum8(_mm256_add_ps(acc[j][0], acc[j][1]));
}
QUANT_TILE(mm_q4_0)

/* ---- Q4_K: 8 sub-blocks of 32 with 6-bit scale/min ------------------------------------- */

AI void mm_q4_k_body(const pl_mm_ctx *c, int64_t r, int j0, const int nx) {
  const pl_blk_q4_k *w = (const pl_blk_q4_k *)PL_WROW(c, r);
  const int64_t nsb = c->cols / 256;
  QX_SETUP();
  __m256 acc[NX][2];
  PL_UNROLL for (int j = 0; j < nx; j++)
    acc[j][0] = acc[j][1] = _mm256_setzero_ps();
  const __m256i m4 = _mm256_set1_epi8(15);
  for (int64_t b = 0; b < nsb; b++) {
    uint8_t scb[8], mb[8];
    pl_q4k_unpack(w[b].scales, scb, mb);
    _Alignas(32) float ds[8];
    _mm256_store_ps(ds, _mm256_mul_ps(_mm256_set1_ps(h2f(w[b].d)),
                                      _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)scb)))));
    /* min term: sum_k dmin*m_k * s_k, folded lane-wise into acc[.][0] */
    __m256 M = _mm256_mul_ps(_mm256_set1_ps(h2f(w[b].dmin)),
                             _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)mb))));
    PL_UNROLL for (int j = 0; j < nx; j++)
      acc[j][0] = _mm256_fnmadd_ps(M, _mm256_load_ps(xs[j] + 8 * b), acc[j][0]);
    for (int q = 0; q < 4; q++) {
      __m256i v = _mm256_loadu_si256((const __m256i *)(w[b].qs + 32 * q));
      __m256i lo = _mm256_and_si256(v, m4), hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), m4);
      const int64_t xb = 8 * b + 2 * q; /* activation block of `lo` */
      PL_UNROLL for (int j = 0; j < nx; j++) {
        __m256i x0 = _mm256_load_si256((const __m256i *)(xq[j] + 32 * xb));
        __m256i x1 = _mm256_load_si256((const __m256i *)(xq[j] + 32 * xb + 32));
        __m256 p0 = _mm256_cvtepi32_ps(dot_unsigned(lo, x0));
        __m256 p1 = _mm256_cvtepi32_ps(dot_unsigned(hi, x1));
        acc[j][0] = _mm256_fmadd_ps(p0, _mm256_set1_ps(ds[2 * q] * xd[j][xb]), acc[j][0]);
        acc[j][1] = _mm256_fmadd_ps(p1, _mm256_set1_ps(ds[2 * q + 1] * xd[j][xb + 1]), acc[j][1]);
      }
    }
  }
  PL_UNROLL for (int j = 0; j < nx; j++)
    PL_Y(c, j0 + j, r) = hsum8(_mm256_add_ps(acc[j][0], acc[j][1]));
}
QUANT_TILE(mm_q4_k)

/* ---- Q6_K: 16 sub-blocks of 16 with int8 scales ------------------------------------------ */

/* 32 elements (one activation block) = two 16-element sub-blocks: maddubs makes int16
 * lanes 0-7 from elements 0-15 and lanes 8-15 from 16-31, so one madd with the int16 vector
 * [sc0 x8 | sc1 x8] applies both sub-block scales exactly in integers. */
#define Q6_STEP(QU, K)                                                                      \
  do {                                                                                      \
    __m256i wv_ = _mm256_sub_epi8(q[QU], k32), aw_ = _mm256_sign_epi8(wv_, wv_);            \
    const int8_t *sc_ = w[b].scales + 8 * h + 2 * (QU);                                     \
    __m256i scv_ = _mm256_set_m128i(_mm_set1_epi16(sc_[1]), _mm_set1_epi16(sc_[0]));        \
    const int64_t xb_ = 8 * b + 4 * h + (QU);                                               \
    PL_UNROLL for (int j = 0; j < nx; j++) {                                                \
      __m256i x_ = _mm256_load_si256((const __m256i *)(xq[j] + 32 * xb_));                  \
      __m256i p_ = _mm256_madd_epi16(_mm256_maddubs_epi16(aw_, _mm256_sign_epi8(x_, wv_)), scv_); \
      acc[j][K] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p_), _mm256_set1_ps(d * xd[j][xb_]), acc[j][K]); \
    }                                                                                       \
  } while (0)

AI void mm_q6_k_body(const pl_mm_ctx *c, int64_t r, int j0, const int nx) {
  const pl_blk_q6_k *w = (const pl_blk_q6_k *)PL_WROW(c, r);
  const int64_t nsb = c->cols / 256;
  QX_SETUP();
  __m256 acc[NX][2];
  PL_UNROLL for (int j = 0; j < nx; j++)
    acc[j][0] = acc[j][1] = _mm256_setzero_ps();
  const __m256i m4 = _mm256_set1_epi8(15), m30 = _mm256_set1_epi8(0x30);
  const __m256i k32 = _mm256_set1_epi8(32);
  for (int64_t b = 0; b < nsb; b++) {
    float d = h2f(w[b].d);
    for (int h = 0; h < 2; h++) {
      __m256i qa = _mm256_loadu_si256((const __m256i *)(w[b].ql + 64 * h));
      __m256i qb = _mm256_loadu_si256((const __m256i *)(w[b].ql + 64 * h + 32));
      __m256i qh = _mm256_loadu_si256((const __m256i *)(w[b].qh + 32 * h));
      __m256i q[4];
      q[0] = _mm256_or_si256(_mm256_and_si256(qa, m4), _mm256_and_si256(_mm256_slli_epi16(qh, 4), m30));
      q[1] = _mm256_or_si256(_mm256_and_si256(qb, m4), _mm256_and_si256(_mm256_slli_epi16(qh, 2), m30));
      q[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(qa, 4), m4), _mm256_and_si256(qh, m30));
      q[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(qb, 4), m4),
                             _mm256_and_si256(_mm256_srli_epi16(qh, 2), m30));
      Q6_STEP(0, 0);
      Q6_STEP(1, 1);
      Q6_STEP(2, 0);
      Q6_STEP(3, 1);
    }
  }
  PL_UNROLL for (int j = 0; j < nx; j++)
    PL_Y(c, j0 + j, r) = hsum8(_mm256_add_ps(acc[j][0], acc[j][1]));
}
QUANT_TILE(mm_q6_k)

/* ---- MLX affine 4/8-bit ------------------------------------------------------------------ */

AI __m256i mlx4_codes(const uint8_t *p) { /* 32 unsigned codes in element order */
  __m128i v = _mm_loadu_si128((const __m128i *)p);
  __m128i m = _mm_set1_epi8(15);
  __m128i lo = _mm_and_si128(v, m), hi = _mm_and_si128(_mm_srli_epi16(v, 4), m);
  return _mm256_set_m128i(_mm_unpackhi_epi8(lo, hi), _mm_unpacklo_epi8(lo, hi));
}

#define MLX_CHUNK 256 /* groups whose scales/biases are converted at once */

/* MLX scales/biases [i0, i0+n) of one tensor as floats */
static void sb_row(const void *p, pl_dtype t, int64_t i0, int64_t n, float *out) {
  int64_t i = 0;
  if (t == PL_DT_F16) {
    const uint16_t *h = (const uint16_t *)p + i0;
    for (; i + 8 <= n; i += 8)
      _mm256_storeu_ps(out + i, ld_f16(h, i));
    for (; i < n; i++)
      out[i] = h2f(h[i]);
  } else if (t == PL_DT_BF16) {
    const uint16_t *h = (const uint16_t *)p + i0;
    for (; i + 8 <= n; i += 8)
      _mm256_storeu_ps(out + i, ld_bf16(h, i));
    for (; i < n; i++)
      out[i] = pl_bf16_to_f32(h[i]);
  } else {
    memcpy(out, (const float *)p + i0, (size_t)n * sizeof(float));
  }
}

#define MLX_STEP(XB, SB, K)                                                                  \
  do {                                                                                       \
    __m256i wv_, aw_ = _mm256_setzero_si256();                                               \
    if (bits == 4) {                                                                         \
      wv_ = mlx4_codes(w + 16 * (XB));                                                       \
    } else {                                                                                 \
      wv_ = _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)(w + 32 * (XB))),           \
                             _mm256_set1_epi8((char)0x80));                                  \
      aw_ = _mm256_sign_epi8(wv_, wv_);                                                      \
    }                                                                                        \
    PL_UNROLL for (int j = 0; j < nx; j++) {                                                 \
      __m256i x_ = _mm256_load_si256((const __m256i *)(xq[j] + 32 * (XB)));                  \
      __m256i p_ = bits == 4 ? dot_unsigned(wv_, x_) : dot_signed(aw_, wv_, x_);             \
      acc[j][K] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p_), _mm256_set1_ps((SB) * xd[j][XB]), acc[j][K]); \
    }                                                                                        \
  } while (0)

/* w = s*q + b per group: sum = sum_blocks s*d_x*isum + sum_groups b*(sum of s_x over the
 * group). 8-bit codes are recentred to q-128 (signed, for the sign trick), which moves
 * 128*s into the bias. */
AI void mm_mlx_body(const pl_mm_ctx *c, int64_t r, int j0, const int nx, const int bits) {
  const pl_tensor *W = c->W;
  const uint8_t *w = PL_WROW(c, r);
  const int bpg = W->group_size / 32;
  const int gsh = (bpg & (bpg - 1)) == 0 ? __builtin_ctz((unsigned)bpg) : -1; /* block -> group */
#define GIDX(k) (gsh >= 0 ? (k) >> gsh : (k) / bpg)
  const int64_t ng = c->cols / W->group_size;
  QX_SETUP();
  const float *xg[NX]; /* per-group activation sums (kern_impl.h) */
  PL_UNROLL for (int j = 0; j < nx; j++) xg[j] = (const float *)PL_QX_ZS(c, j0 + j);
  __m256 acc[NX][2];
  float accb[NX];
  PL_UNROLL for (int j = 0; j < nx; j++) {
    acc[j][0] = acc[j][1] = _mm256_setzero_ps();
    accb[j] = 0;
  }
  _Alignas(32) float sg[MLX_CHUNK], bg[MLX_CHUNK];
  for (int64_t g0 = 0; g0 < ng; g0 += MLX_CHUNK) {
    const int64_t gn = ng - g0 < MLX_CHUNK ? ng - g0 : MLX_CHUNK;
    sb_row(W->scales, W->sb_type, r * ng + g0, gn, sg);
    sb_row(W->biases, W->sb_type, r * ng + g0, gn, bg);
    if (bits == 8)
      for (int64_t k = 0; k < gn; k++)
        bg[k] += 128.0f * sg[k];
    int64_t k = 0;
    for (; k + 8 <= gn; k += 8) {
      __m256 bv = _mm256_load_ps(bg + k);
      PL_UNROLL for (int j = 0; j < nx; j++)
        acc[j][1] = _mm256_fmadd_ps(bv, _mm256_loadu_ps(xg[j] + g0 + k), acc[j][1]);
    }
    for (; k < gn; k++)
      PL_UNROLL for (int j = 0; j < nx; j++) accb[j] += bg[k] * xg[j][g0 + k];
    const int64_t b0 = g0 * bpg, b1 = (g0 + gn) * bpg;
    int64_t xb = b0;
    for (; xb + 2 <= b1; xb += 2) {
      MLX_STEP(xb, sg[GIDX(xb - b0)], 0);
      MLX_STEP(xb + 1, sg[GIDX(xb + 1 - b0)], 1);
    }
    if (xb < b1)
      MLX_STEP(xb, sg[GIDX(xb - b0)], 0);
  }
#undef GIDX
  PL_UNROLL for (int j = 0; j < nx; j++)
    PL_Y(c, j0 + j, r) = hsum8(_mm256_add_ps(acc[j][0], acc[j][1])) + accb[j];
}
AI void mm_mlx4_body(const pl_mm_ctx *c, int64_t r, int j0, const int nx) { mm_mlx_body(c, r, j0, nx, 4); }
AI void mm_mlx8_body(const pl_mm_ctx *c, int64_t r, int j0, const int nx) { mm_mlx_body(c, r, j0, nx, 8); }
QUANT_TILE(mm_mlx4)
QUANT_TILE(mm_mlx8)

/* ---- activation quantization (bit-identical to pl_quant_x_scalar) ----------------------- */

static void quant_x(const float *x, int64_t cols, int z, uint8_t *qxrow, const pl_qx_layout *l) {
  int8_t *qs = (int8_t *)qxrow;
  float *d = (float *)(qxrow + l->off_d), *s = (float *)(qxrow + l->off_s);
  const __m256 sign = _mm256_set1_ps(-0.0f);
  for (int64_t b = 0; b < cols / 32; b++) {
    const float *xb = x + 32 * b;
    __m256 v[4], am = _mm256_setzero_ps();
    for (int k = 0; k < 4; k++) {
      v[k] = _mm256_loadu_ps(xb + 8 * k);
      am = _mm256_max_ps(am, _mm256_andnot_ps(sign, v[k]));
    }
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(am), _mm256_extractf128_ps(am, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_movehdup_ps(m));
    float amax = _mm_cvtss_f32(m);
    float id = amax != 0 ? 127.0f / amax : 0.0f;
    __m256 idv = _mm256_set1_ps(id);
    __m256i qi[4];
    for (int k = 0; k < 4; k++) {
      __m256 t = _mm256_round_ps(_mm256_mul_ps(v[k], idv), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
      t = _mm256_min_ps(_mm256_max_ps(t, _mm256_set1_ps(-127.0f)), _mm256_set1_ps(127.0f));
      qi[k] = _mm256_cvtps_epi32(t);
    }
    /* pack 4x8 int32 -> 32 int8 in order (packs work per 128-bit lane; fix with a permute) */
    __m256i p01 = _mm256_packs_epi32(qi[0], qi[1]), p23 = _mm256_packs_epi32(qi[2], qi[3]);
    __m256i p = _mm256_packs_epi16(p01, p23);
    p = _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
    _mm256_store_si256((__m256i *)(qs + 32 * b), p);
    __m256i sum = _mm256_add_epi32(_mm256_add_epi32(qi[0], qi[1]), _mm256_add_epi32(qi[2], qi[3]));
    __m128i s4 = _mm_add_epi32(_mm256_castsi256_si128(sum), _mm256_extracti128_si256(sum, 1));
    s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0x4e));
    s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0xb1));
    d[b] = amax / 127.0f;
    s[b] = d[b] * (float)_mm_cvtsi128_si32(s4);
  }
  if (z) {
    int32_t *zs = (int32_t *)(qxrow + l->off_zs);
    const __m256i nz = _mm256_set1_epi16((short)-z);
    for (int64_t k = 0; k < cols; k += 32) {
      __m256i q = _mm256_load_si256((const __m256i *)(qs + k));
      /* sum of 4 signed bytes: maddubs(1, q) -> pairs, madd(-z) -> quads times -z */
      __m256i p2 = _mm256_maddubs_epi16(_mm256_set1_epi8(1), q);
      _mm256_store_si256((__m256i *)(zs + k / 4), _mm256_madd_epi16(p2, nz));
    }
  }
}

/* ---- dequantization for the prefill path --------------------------------------------------- */

static void deq_f16(const void *row, float *y, int64_t n) {
  const uint16_t *h = row;
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(y + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(h + i))));
  for (; i < n; i++)
    y[i] = h2f(h[i]);
}

static void deq_q8_0(const void *row, float *y, int64_t n) {
  const pl_blk_q8_0 *b = row;
  for (int64_t i = 0; i < n / 32; i++) {
    __m256 d = _mm256_set1_ps(h2f(b[i].d));
    for (int k = 0; k < 4; k++) {
      __m256i q = _mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(b[i].qs + 8 * k)));
      _mm256_storeu_ps(y + 32 * i + 8 * k, _mm256_mul_ps(d, _mm256_cvtepi32_ps(q)));
    }
  }
}

/* 8 int8 codes -> floats (sign-extended) */
AI __m256 i8x8_ps(__m128i v) { return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(v)); }

static void deq_bf16(const void *row, float *y, int64_t n) {
  const uint16_t *h = row;
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(y + i, ld_bf16(h, i));
  for (; i < n; i++)
    y[i] = pl_bf16_to_f32(h[i]);
}

/* The dequantizers below use the scalar code's operation order (d*q; (d*sc)*q; d1*q - m1,
 * no FMA), so every ISA decodes bit-identically (test_quant, test_ggml_xcheck). */
static void deq_q4_0(const void *row, float *y, int64_t n) {
  const pl_blk_q4_0 *b = row;
  const __m128i m4 = _mm_set1_epi8(15), k8 = _mm_set1_epi8(8);
  for (int64_t i = 0; i < n / 32; i++, y += 32) {
    __m256 d = _mm256_set1_ps(h2f(b[i].d));
    __m128i v = _mm_loadu_si128((const __m128i *)b[i].qs);
    __m128i lo = _mm_sub_epi8(_mm_and_si128(v, m4), k8), hi = _mm_sub_epi8(_mm_and_si128(_mm_srli_epi16(v, 4), m4), k8);
    _mm256_storeu_ps(y, _mm256_mul_ps(d, i8x8_ps(lo)));
    _mm256_storeu_ps(y + 8, _mm256_mul_ps(d, i8x8_ps(_mm_srli_si128(lo, 8))));
    _mm256_storeu_ps(y + 16, _mm256_mul_ps(d, i8x8_ps(hi)));
    _mm256_storeu_ps(y + 24, _mm256_mul_ps(d, i8x8_ps(_mm_srli_si128(hi, 8))));
  }
}

static void deq_q4_k(const void *row, float *y, int64_t n) {
  const pl_blk_q4_k *b = row;
  const __m256i m4 = _mm256_set1_epi8(15);
  for (int64_t i = 0; i < n / 256; i++) {
    float d = h2f(b[i].d), dmin = h2f(b[i].dmin);
    for (int c = 0; c < 4; c++, y += 64) {
      int sc0, m0, sc1, m1;
      pl_q4k_scale_min(2 * c, b[i].scales, &sc0, &m0);
      pl_q4k_scale_min(2 * c + 1, b[i].scales, &sc1, &m1);
      __m256 d0 = _mm256_set1_ps(d * (float)sc0), n0 = _mm256_set1_ps(dmin * (float)m0);
      __m256 d1 = _mm256_set1_ps(d * (float)sc1), n1 = _mm256_set1_ps(dmin * (float)m1);
      __m256i v = _mm256_loadu_si256((const __m256i *)(b[i].qs + 32 * c));
      __m256i lo = _mm256_and_si256(v, m4), hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), m4);
      for (int k = 0; k < 4; k++) {
        __m128i l8 = k < 2 ? _mm256_castsi256_si128(lo) : _mm256_extracti128_si256(lo, 1);
        __m128i h8 = k < 2 ? _mm256_castsi256_si128(hi) : _mm256_extracti128_si256(hi, 1);
        if (k & 1) {
          l8 = _mm_srli_si128(l8, 8);
          h8 = _mm_srli_si128(h8, 8);
        }
        _mm256_storeu_ps(y + 8 * k, _mm256_sub_ps(_mm256_mul_ps(d0, i8x8_ps(l8)), n0));
        _mm256_storeu_ps(y + 32 + 8 * k, _mm256_sub_ps(_mm256_mul_ps(d1, i8x8_ps(h8)), n1));
      }
    }
  }
}

static void deq_q6_k(const void *row, float *y, int64_t n) {
  const pl_blk_q6_k *b = row;
  const __m256i m4 = _mm256_set1_epi8(15), m30 = _mm256_set1_epi8(0x30), k32 = _mm256_set1_epi8(32);
  for (int64_t i = 0; i < n / 256; i++) {
    float d = h2f(b[i].d);
    for (int h = 0; h < 2; h++, y += 128) {
      __m256i qa = _mm256_loadu_si256((const __m256i *)(b[i].ql + 64 * h));
      __m256i qb = _mm256_loadu_si256((const __m256i *)(b[i].ql + 64 * h + 32));
      __m256i qh = _mm256_loadu_si256((const __m256i *)(b[i].qh + 32 * h));
      __m256i q[4];
      q[0] = _mm256_or_si256(_mm256_and_si256(qa, m4), _mm256_and_si256(_mm256_slli_epi16(qh, 4), m30));
      q[1] = _mm256_or_si256(_mm256_and_si256(qb, m4), _mm256_and_si256(_mm256_slli_epi16(qh, 2), m30));
      q[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(qa, 4), m4), _mm256_and_si256(qh, m30));
      q[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(qb, 4), m4),
                             _mm256_and_si256(_mm256_srli_epi16(qh, 2), m30));
      for (int u = 0; u < 4; u++) {
        __m256i v = _mm256_sub_epi8(q[u], k32);
        const int8_t *sc = b[i].scales + 8 * h + 2 * u;
        __m256 s0 = _mm256_set1_ps(d * (float)sc[0]), s1 = _mm256_set1_ps(d * (float)sc[1]);
        __m128i lo = _mm256_castsi256_si128(v), hi = _mm256_extracti128_si256(v, 1);
        _mm256_storeu_ps(y + 32 * u, _mm256_mul_ps(s0, i8x8_ps(lo)));
        _mm256_storeu_ps(y + 32 * u + 8, _mm256_mul_ps(s0, i8x8_ps(_mm_srli_si128(lo, 8))));
        _mm256_storeu_ps(y + 32 * u + 16, _mm256_mul_ps(s1, i8x8_ps(hi)));
        _mm256_storeu_ps(y + 32 * u + 24, _mm256_mul_ps(s1, i8x8_ps(_mm_srli_si128(hi, 8))));
      }
    }
  }
}

/* ---- vector helpers ------------------------------------------------------------------------- */

static float v_dot(int n, const float *a, const float *b) {
  __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps(), s2 = _mm256_setzero_ps(), s3 = _mm256_setzero_ps();
  int i = 0;
  for (; i + 32 <= n; i += 32) {
    s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
    s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), s1);
    s2 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 16), _mm256_loadu_ps(b + i + 16), s2);
    s3 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 24), _mm256_loadu_ps(b + i + 24), s3);
  }
  for (; i + 8 <= n; i += 8)
    s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
  float t = hsum8(_mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
  for (; i < n; i++)
    t += a[i] * b[i];
  return t;
}

static void v_mad(int n, float *y, const float *x, float s) {
  __m256 sv = _mm256_set1_ps(s);
  int i = 0;
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(y + i, _mm256_fmadd_ps(sv, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
  for (; i < n; i++)
    y[i] += s * x[i];
}

static void v_scale(int n, float *y, float s) {
  __m256 sv = _mm256_set1_ps(s);
  int i = 0;
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(y + i, _mm256_mul_ps(sv, _mm256_loadu_ps(y + i)));
  for (; i < n; i++)
    y[i] *= s;
}

static float v_max(int n, const float *x) {
  __m256 m = _mm256_set1_ps(-INFINITY), m1 = m, m2 = m, m3 = m;
  int i = 0;
  for (; i + 32 <= n; i += 32) {
    m = _mm256_max_ps(m, _mm256_loadu_ps(x + i));
    m1 = _mm256_max_ps(m1, _mm256_loadu_ps(x + i + 8));
    m2 = _mm256_max_ps(m2, _mm256_loadu_ps(x + i + 16));
    m3 = _mm256_max_ps(m3, _mm256_loadu_ps(x + i + 24));
  }
  m = _mm256_max_ps(_mm256_max_ps(m, m1), _mm256_max_ps(m2, m3));
  for (; i + 8 <= n; i += 8)
    m = _mm256_max_ps(m, _mm256_loadu_ps(x + i));
  __m128 a = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
  a = _mm_max_ps(a, _mm_movehl_ps(a, a));
  a = _mm_max_ss(a, _mm_movehdup_ps(a));
  float r = _mm_cvtss_f32(a);
  for (; i < n; i++)
    r = x[i] > r ? x[i] : r;
  return r;
}

static void v_rmsnorm(int n, float *y, const float *x, const float *w, float eps) {
  float ss = v_dot(n, x, x);
  float rs = 1.0f / sqrtf(ss / (float)n + eps);
  __m256 rv = _mm256_set1_ps(rs);
  int i = 0;
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(y + i, _mm256_mul_ps(_mm256_mul_ps(_mm256_loadu_ps(x + i), rv), _mm256_loadu_ps(w + i)));
  for (; i < n; i++)
    y[i] = x[i] * rs * w[i];
}

static void v_swiglu(int n, float *y, const float *g, const float *u) {
  int i = 0;
  const __m256 one = _mm256_set1_ps(1.0f);
  for (; i + 8 <= n; i += 8) {
    __m256 gv = _mm256_loadu_ps(g + i);
    __m256 e = exp8(_mm256_sub_ps(_mm256_setzero_ps(), gv));
    _mm256_storeu_ps(y + i, _mm256_mul_ps(_mm256_div_ps(gv, _mm256_add_ps(one, e)), _mm256_loadu_ps(u + i)));
  }
  for (; i < n; i++)
    y[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
}

static float v_softmax(int n, float *x) {
  float m = v_max(n, x);
  __m256 mv = _mm256_set1_ps(m), sv = _mm256_setzero_ps();
  int i = 0;
  for (; i + 8 <= n; i += 8) {
    __m256 e = exp8(_mm256_sub_ps(_mm256_loadu_ps(x + i), mv));
    _mm256_storeu_ps(x + i, e);
    sv = _mm256_add_ps(sv, e);
  }
  float sum = hsum8(sv);
  for (; i < n; i++) {
    x[i] = expf(x[i] - m);
    sum += x[i];
  }
  v_scale(n, x, 1.0f / sum);
  return sum;
}

void pl_kern_fill_avx2(pl_kern_ops *o) {
  o->mm[PL_MMT_F32] = mm_f32;
  o->mm[PL_MMT_F16] = mm_f16;
  o->mm[PL_MMT_BF16] = mm_bf16;
  o->mm[PL_MMT_Q8_0] = mm_q8_0;
  o->mm[PL_MMT_Q4_0] = mm_q4_0;
  o->mm[PL_MMT_Q4_K] = mm_q4_k;
  o->mm[PL_MMT_Q6_K] = mm_q6_k;
  o->mm[PL_MMT_MLX4] = mm_mlx4;
  o->mm[PL_MMT_MLX8] = mm_mlx8;
  for (int t = 0; t < PL_MMT_COUNT; t++) {
    o->qx_z[t] = 0;
    o->mm_rows_align[t] = t <= PL_MMT_BF16 ? RWF : 4;
  }
  o->quant_x = quant_x;
  o->dequant[PL_MMT_F16] = deq_f16;
  o->dequant[PL_MMT_Q8_0] = deq_q8_0;
  o->dequant[PL_MMT_BF16] = deq_bf16;
  o->dequant[PL_MMT_Q4_0] = deq_q4_0;
  o->dequant[PL_MMT_Q4_K] = deq_q4_k;
  o->dequant[PL_MMT_Q6_K] = deq_q6_k;
  o->dot = v_dot;
  o->mad = v_mad;
  o->scale = v_scale;
  o->max = v_max;
  o->rmsnorm = v_rmsnorm;
  o->swiglu = v_swiglu;
  o->softmax = v_softmax;
  o->attn_tile = pl_attn_tile_avx2;
}
