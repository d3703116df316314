/* AVX-512 kernels (F/BW/VL/DQ; the VNNI variant of the quantized tiles and the BF16-pair
 * kernel are compiled with `#pragma GCC target(...)` and only installed when cpuid reports
 * the extension).
 * Float weights: tiles of 4 weight rows x up to 4 activation rows (16 accumulators), masked
 * loads for the column tail. Quantized weights: kern_avx512_q.h, 2 weight rows x up to 4
 * activation rows, 64 codes per vector; except Q8_0, Q4_0, Q4_K and Q6_K with VNNI, which put
 * one weight row in each int32 lane (q8_0_vnni16 and the kq_* kernels below, 16-32 rows per
 * tile; PAGELLM_VNNI_OLD_TILES=1 brings the tiles back for benchmarks). Vector helpers and the
 * activation quantizer come from the AVX2 file (they are not the bottleneck). */
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
 * kern_avx512_q.h spreads one row's block over 8 int32 lanes, so every vpdpbusd there needs
 * its own float work (convert, scale product, FMA) and a horizontal sum at the end. Here a
 * lane is a weight row instead: per block of 32, lane r ends with the exact integer dot I of
 * row r's block with the activation block, and then, for 16 rows at once,
 *     y = fma(float(I) * sw, dx, y)          blocks in order, y starting at 0
 * (sw: the 16 rows' scales, dx: the activation block's). Every row sees the same integer
 * and float operations in the same order whatever the tile, the thread split or the other
 * rows of the batch, in both paths below (a ragged last group is padded with zero-scale
 * rows and stored masked), so results are batch-invariant; test_matmul checks it bit for bit.
 * Weight codes go in as unsigned u = w + 128 (vpdpbusd is u8 x s8): I starts at
 * -128 * sum(q) of the activation block (zs compacted per block, pl_kern_ops.qx_bsum).
 *
 * Batched (n > PK_ND): 16 rows x PK_KC blocks at a time are repacked into a per-thread
 * buffer where vector k of block b holds bytes 4k..4k+3 of block b of the 16 rows; eight
 * vpdpbusd with 4 activation bytes broadcast then give I, and the float work is three
 * instructions per eight vpdpbusd (one per one before). A tile is 2 groups (32 rows) x
 * PK_NX activation rows, so each broadcast feeds two vpdpbusd; the repack is done once per
 * (x block, 32 rows, K chunk) and serves every activation row of the x block.
 *
 * Decode (n <= PK_ND): too few activation rows to pay for a repack. Per block, vector m
 * holds rows m and m+8 as loaded (a 256-bit half each, 8 lanes of 4 products), and an
 * exact integer reduce-transpose leaves the same I in lane r. The 16 row streams defeat the
 * hardware prefetchers, so the next group's rows are prefetched in software. */
#define PK_KC 32 /* blocks per repacked chunk: 16 KiB of codes + 2 KiB of scales per group */
#define PK_NX 6  /* activation rows per batched tile */
#define PK_ND 4  /* up to this many activation rows: the decode path */

/* Repack rows r .. r+nr-1 (nr <= 16), blocks b0 .. b0+kn-1, into buf/sbuf, and prefetch into
 * L2 the chunk the caller repacks next (pnr rows from row pr, blocks from pb0). */
AI void pk_repack(const pl_mm_ctx *c, int64_t r, int nr, int64_t b0, int kn, __m512i *buf, __m512 *sbuf,
                  int64_t pr, int pnr, int64_t pb0) {
  const pl_blk_q8_0 *w[16];
  PL_UNROLL for (int i = 0; i < 16; i++) w[i] = (const pl_blk_q8_0 *)PL_WROW(c, r + (i < nr ? i : 0)) + b0;
  const char *pw = pnr > 0 ? (const char *)((const pl_blk_q8_0 *)PL_WROW(c, pr) + pb0) : NULL;
  const __mmask16 live = (__mmask16)(nr >= 16 ? 0xffff : (1u << nr) - 1);
  const __m512i lo = _mm512_setr_epi64(0, 1, 8, 9, 4, 5, 12, 13), hi = _mm512_setr_epi64(2, 3, 10, 11, 6, 7, 14, 15);
  const __m512i bias = _mm512_set1_epi8((char)0x80);
  const __m512i roff = _mm512_maskz_mov_epi32(
      live, _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                               _mm512_set1_epi32((int)c->wrb)));
  for (int b = 0; b < kn; b++) {
    __m512i z[8], t[8], u[8];
    /* z[p] = [row p | row p+8], 8 dwords each; then an 8x8 dword transpose in each half */
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

/* ng (1 or 2) repacked groups of 16 rows from row r x nx activation rows from j0, blocks
 * b0 .. b0+kn-1 of the chunk in buf; y is accumulated in place after the first chunk. */
AI void pk_tile(const pl_mm_ctx *c, const __m512i *const *buf, const __m512 *const *sbuf, int64_t b0, int kn,
                int64_t r, const int ng, const __mmask16 *ym, int j0, const int nx, int first) {
  const int8_t *xq[PK_NX];
  const float *xd[PK_NX];
  const int32_t *xc[PK_NX];
  __m512 acc[2][PK_NX];
  PL_UNROLL for (int j = 0; j < nx; j++) {
    xq[j] = PL_QX_QS(c, j0 + j) + 32 * b0;
    xd[j] = PL_QX_D(c, j0 + j) + b0;
    xc[j] = PL_QX_ZS(c, j0 + j) + b0;
    PL_UNROLL for (int g = 0; g < ng; g++)
      acc[g][j] = first ? _mm512_setzero_ps() : _mm512_maskz_loadu_ps(ym[g], &PL_Y(c, j0 + j, r + 16 * g));
  }
  for (int b = 0; b < kn; b++) {
    __m512i I[2][PK_NX];
    PL_UNROLL for (int j = 0; j < nx; j++) PL_UNROLL for (int g = 0; g < ng; g++) I[g][j] = _mm512_set1_epi32(xc[j][b]);
    PL_UNROLL for (int k = 0; k < 8; k++) {
      __m512i wk[2];
      PL_UNROLL for (int g = 0; g < ng; g++) wk[g] = _mm512_load_si512(buf[g] + 8 * b + k);
      PL_UNROLL for (int j = 0; j < nx; j++) {
        int32_t xv;
        memcpy(&xv, xq[j] + 32 * b + 4 * k, 4);
        const __m512i xb = _mm512_set1_epi32(xv);
        PL_UNROLL for (int g = 0; g < ng; g++) I[g][j] = _mm512_dpbusd_epi32(I[g][j], wk[g], xb);
      }
    }
    PL_UNROLL for (int j = 0; j < nx; j++) {
      const __m512 dx = _mm512_set1_ps(xd[j][b]);
      PL_UNROLL for (int g = 0; g < ng; g++)
        acc[g][j] = _mm512_fmadd_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(I[g][j]), sbuf[g][b]), dx, acc[g][j]);
    }
  }
  PL_UNROLL for (int j = 0; j < nx; j++) PL_UNROLL for (int g = 0; g < ng; g++)
      _mm512_mask_storeu_ps(&PL_Y(c, j0 + j, r + 16 * g), ym[g], acc[g][j]);
}

#define PK_TILE_NX(NG)                                                                        \
  switch (nx) {                                                                               \
  case 6: pk_tile(c, bp, sp, b0, kn, r, NG, ym, j0, 6, f); break;                            \
  case 5: pk_tile(c, bp, sp, b0, kn, r, NG, ym, j0, 5, f); break;                            \
  case 4: pk_tile(c, bp, sp, b0, kn, r, NG, ym, j0, 4, f); break;                            \
  case 3: pk_tile(c, bp, sp, b0, kn, r, NG, ym, j0, 3, f); break;                            \
  case 2: pk_tile(c, bp, sp, b0, kn, r, NG, ym, j0, 2, f); break;                            \
  default: pk_tile(c, bp, sp, b0, kn, r, NG, ym, j0, 1, f); break;                           \
  }
_Static_assert(PK_NX == 6, "PK_TILE_NX cases");

static void pk_batched(const pl_mm_ctx *c, int64_t r0, int64_t r1) {
  _Alignas(64) __m512i buf[2][PK_KC * 8];
  _Alignas(64) __m512 sbuf[2][PK_KC];
  const __m512i *const bp[2] = {buf[0], buf[1]};
  const __m512 *const sp[2] = {sbuf[0], sbuf[1]};
  const int64_t nb = c->ql.nb;
  int xbn = (int)(393216 / (c->xrb ? c->xrb : 1)); /* x block: activation rows kept in L2 */
  xbn = xbn < PK_NX ? PK_NX : xbn / PK_NX * PK_NX;
  for (int xs = 0; xs < c->n; xs += xbn) {
    const int xe = c->n - xs < xbn ? c->n : xs + xbn;
    for (int64_t r = r0; r < r1; r += 32) {
      const int nr = r1 - r < 32 ? (int)(r1 - r) : 32;
      const int n0 = nr < 16 ? nr : 16, n1 = nr - n0;
      const __mmask16 ym[2] = {(__mmask16)(n0 >= 16 ? 0xffff : (1u << n0) - 1),
                               (__mmask16)(n1 >= 16 ? 0xffff : (1u << n1) - 1)};
      for (int64_t b0 = 0; b0 < nb; b0 += PK_KC) {
        const int kn = nb - b0 < PK_KC ? (int)(nb - b0) : PK_KC;
        /* prefetch: the first group's repack fetches the second group's chunk, the second
         * group's fetches the next chunk's first group */
        int64_t pr = r, pb0 = b0 + PK_KC;
        if (pb0 >= nb) {
          pr = r + 32;
          pb0 = 0;
        }
        const int pnr = r1 - pr < 16 ? (int)(r1 - pr) : 16;
        pk_repack(c, r, n0, b0, kn, buf[0], sbuf[0], r + 16, n1, b0);
        if (n1 > 0)
          pk_repack(c, r + 16, n1, b0, kn, buf[1], sbuf[1], pr, pnr, pb0);
        for (int j0 = xs; j0 < xe; j0 += PK_NX) {
          const int f = b0 == 0, nx = xe - j0 < PK_NX ? xe - j0 : PK_NX;
          if (n1 > 0) {
            PK_TILE_NX(2)
          } else {
            PK_TILE_NX(1)
          }
        }
      }
    }
  }
}
#undef PK_TILE_NX

/* Sums of the 8 lanes of each 256-bit half of P[0..7]: lane m of the result = half 0 of
 * P[m], lane 8+m = half 1 of P[m] (exact: integer adds). */
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

/* Rows r .. r+nr-1 (nr <= 16) x nx <= PK_ND activation rows from j0, all blocks; prefetches
 * the pnr rows from pr (the next group). */
AI void pk_dec(const pl_mm_ctx *c, int64_t r, int nr, int j0, const int nx, int64_t pr, int pnr) {
  /* four row pointers and two strides (rows past nr repeat row r; their lanes are dropped),
   * so the 16 row streams do not spill general registers */
  const size_t s1 = c->wrb, s3 = 3 * c->wrb;
  const char *p[4];
  PL_UNROLL for (int g = 0; g < 4; g++) p[g] = (const char *)PL_WROW(c, r + (4 * g < nr ? 4 * g : 0)) + 2;
  const int full = nr >= 16;
  const char *pw = pnr > 0 ? (const char *)PL_WROW(c, pr) : NULL;
  const size_t pstep = (size_t)pnr * sizeof(pl_blk_q8_0); /* bytes of the next group per block */
  const __mmask16 live = (__mmask16)(nr >= 16 ? 0xffff : (1u << nr) - 1);
  const __m512i bias = _mm512_set1_epi8((char)0x80);
  const __m512i roff = _mm512_maskz_mov_epi32(
      live, _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                               _mm512_set1_epi32((int)s1)));
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
    if (pw) /* the next group's rows are one contiguous range: a block's share of it per step */
      for (size_t o = (size_t)b * pstep; o < (size_t)(b + 1) * pstep; o += 64)
        _mm_prefetch(pw + o, _MM_HINT_T0);
    const char *q[4];
    PL_UNROLL for (int g = 0; g < 4; g++) q[g] = p[g] + 34 * b;
    __m256i h[16];
    PL_UNROLL for (int g = 0; g < 4; g++) {
      h[4 * g] = _mm256_loadu_si256((const __m256i *)q[g]);
      h[4 * g + 1] = _mm256_loadu_si256((const __m256i *)(full || 4 * g + 1 < nr ? q[g] + s1 : q[g]));
      h[4 * g + 2] = _mm256_loadu_si256((const __m256i *)(full || 4 * g + 2 < nr ? q[g] + 2 * s1 : q[g]));
      h[4 * g + 3] = _mm256_loadu_si256((const __m256i *)(full || 4 * g + 3 < nr ? q[g] + s3 : q[g]));
    }
    __m512i W[8];
    PL_UNROLL for (int m = 0; m < 8; m++)
      W[m] = _mm512_xor_si512(_mm512_inserti64x4(_mm512_castsi256_si512(h[m]), h[m + 8], 1), bias);
    const __m512i dv = _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), live, roff, (const void *)(q[0] - 2), 1);
    const __m512 sw = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(dv));
    PL_UNROLL for (int j = 0; j < nx; j++) {
      const __m512i x = _mm512_broadcast_i64x4(_mm256_load_si256((const __m256i *)(xq[j] + 32 * b)));
      __m512i P[8];
      PL_UNROLL for (int m = 0; m < 8; m++) P[m] = _mm512_dpbusd_epi32(_mm512_setzero_si512(), W[m], x);
      const __m512i I = _mm512_add_epi32(pk_hsum16(P), _mm512_set1_epi32(xc[j][b]));
      acc[j] = _mm512_fmadd_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(I), sw), _mm512_set1_ps(xd[j][b]), acc[j]);
    }
  }
  PL_UNROLL for (int j = 0; j < nx; j++) _mm512_mask_storeu_ps(&PL_Y(c, j0 + j, r), live, acc[j]);
}

static void q8_0_vnni16(const pl_mm_ctx *c, int64_t r0, int64_t r1) {
  if (c->n > PK_ND) {
    pk_batched(c, r0, r1);
    return;
  }
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
}

/* ---- Q4_0, Q4_K, Q6_K x VNNI: the same row-per-lane scheme ---------------------------------
 * A "sub-block" is 32 weights that meet one activation block; per sub-block, lane r ends
 * with the exact integer dot I of row r's sub-block with the activation block, and then
 *     y = fma(float(I) * sw, dx, y)                       (sw: per-lane float scale)
 *     Q4_K also:  y = fnmadd(mn, sx, y)                   (mn = dmin*m, sx = the block's s)
 * sub-blocks in order. Codes are unsigned already (Q4_0 and Q4_K nibbles, Q6_K 6 bits):
 *   Q4_0  sw = d,        I starts at -8 * sum(q)       (zs compacted per block)
 *   Q4_K  sw = d*sc,     I starts at 0                  (mins in the float stage, 6-bit unpacked)
 *   Q6_K  sw = d,        I = sc_a * I_a + sc_b * I_b    (int8 scale per 16 weights; each half
 *                        starts at -32 * its activation sum: zs compacted per 16)
 * The codes of a sub-block for 16 rows come from kq_codes as z[p] = [row p | row p+8], the
 * shape pk_dec reduces and pk_repack transposes, so the decode and batched paths share it
 * and do the same arithmetic per row (batch-invariant, like Q8_0). Decode gathers the
 * per-row scales of a super-block for 16 rows at once; the batched path does that once per
 * repack and keeps them beside the codes. */
enum { KQ_Q4_0, KQ_Q4_K, KQ_Q6_K };
#define KQ_NS(T) ((T) == KQ_Q4_0 ? 1 : 8)                     /* sub-blocks per weight block */
#define KQ_BB(T) ((T) == KQ_Q4_0 ? 18 : (T) == KQ_Q4_K ? 144 : 210) /* bytes per weight block */
#define KQ_NX(T) ((T) == KQ_Q6_K ? 4 : 6) /* activation rows per batched tile (Q6_K: 2 int sums) */
#define KQ_KC 32                           /* sub-blocks per repacked chunk (4 Q4_K/Q6_K blocks) */

typedef struct {
  __m512i q[KQ_KC][8]; /* u8 codes: vector k of sub-block s = bytes 4k..4k+3 of the 16 rows */
  __m512 sw[KQ_KC];    /* per-lane float scale */
  __m512i aux[KQ_KC][2]; /* Q4_K: [0] = mn (floats); Q6_K: the two int scales as int32 */
} kq_grp;

/* z[p] = [row p | row p+8] codes of sub-block s of block sb; w[i]: row i (rows past the
 * live ones repeat a live row; their lanes are dropped). */
AI void kq_codes(const int T, const uint8_t *const *w, int64_t sb, const int s, __m512i *z) {
  const __m512i m4 = _mm512_set1_epi8(15);
  PL_UNROLL for (int p = 0; p < 8; p++) {
    const uint8_t *a = w[p] + KQ_BB(T) * sb, *b = w[p + 8] + KQ_BB(T) * sb;
    if (T == KQ_Q4_0) { /* 16 bytes: low nibbles = weights 0-15, high = 16-31 */
      __m256i t = _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)(a + 2))),
                                          _mm_loadu_si128((const __m128i *)(b + 2)), 1);
      __m512i v = _mm512_inserti64x4(_mm512_castsi256_si512(t), _mm256_srli_epi16(t, 4), 1);
      /* [lo p | lo p+8 | hi p | hi p+8] -> [lo p | hi p | lo p+8 | hi p+8] */
      z[p] = _mm512_and_si512(_mm512_shuffle_i64x2(v, v, _MM_SHUFFLE(3, 1, 2, 0)), m4);
    } else if (T == KQ_Q4_K) { /* 32 bytes per 64 weights: low nibbles = sub-block 2q, high = 2q+1 */
      const int o = 16 + 32 * (s / 2);
      __m512i v = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)(a + o))),
                                     _mm256_loadu_si256((const __m256i *)(b + o)), 1);
      z[p] = _mm512_and_si512(s & 1 ? _mm512_srli_epi16(v, 4) : v, m4);
    } else { /* Q6_K: half h = s/4; t = s%4 picks the ql half, its nibble and 2 qh bits */
      const int h = s / 4, t = s % 4, ol = 64 * h + 32 * (t & 1), oh = 128 + 32 * h;
      __m512i l = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)(a + ol))),
                                     _mm256_loadu_si256((const __m256i *)(b + ol)), 1);
      __m512i hb = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)(a + oh))),
                                      _mm256_loadu_si256((const __m256i *)(b + oh)), 1);
      l = _mm512_and_si512(t >= 2 ? _mm512_srli_epi16(l, 4) : l, m4);
      hb = t == 0 ? _mm512_slli_epi16(hb, 4) : t == 1 ? _mm512_slli_epi16(hb, 2) : t == 2 ? hb : _mm512_srli_epi16(hb, 2);
      z[p] = _mm512_or_si512(l, _mm512_and_si512(hb, _mm512_set1_epi8(0x30)));
    }
  }
}

/* Scales of block sb for the rows of p0 + roff (live lanes): sw[s], and aux as in kq_grp. */
AI void kq_scales(const int T, const uint8_t *p0, int64_t sb, __m512i roff, __mmask16 live, __m512 *sw,
                  __m512i (*aux)[2]) {
  const uint8_t *p = p0 + KQ_BB(T) * sb;
#define KQ_G(o) _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), live, roff, (const void *)(p + (o)), 1)
  if (T == KQ_Q4_0) {
    sw[0] = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(KQ_G(0)));
  } else if (T == KQ_Q4_K) {
    const __m512i dd = KQ_G(0), A = KQ_G(4), B = KQ_G(8), C = KQ_G(12);
    const __m512 d = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(dd));
    const __m512 dm = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_srli_epi32(dd, 16)));
    const __m512i m6 = _mm512_set1_epi32(63), m4 = _mm512_set1_epi32(15), m2 = _mm512_set1_epi32(3);
    PL_UNROLL for (int k = 0; k < 8; k++) { /* the bytes of pl_q4k_unpack, one lane per row */
      __m512i sc, mn;
      if (k < 4) {
        sc = _mm512_and_si512(_mm512_srli_epi32(A, 8 * k), m6);
        mn = _mm512_and_si512(_mm512_srli_epi32(B, 8 * k), m6);
      } else {
        const int e = 8 * (k - 4);
        sc = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi32(C, e), m4),
                             _mm512_slli_epi32(_mm512_and_si512(_mm512_srli_epi32(A, e + 6), m2), 4));
        mn = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi32(C, e + 4), m4),
                             _mm512_slli_epi32(_mm512_and_si512(_mm512_srli_epi32(B, e + 6), m2), 4));
      }
      sw[k] = _mm512_mul_ps(d, _mm512_cvtepi32_ps(sc));
      aux[k][0] = _mm512_castps_si512(_mm512_mul_ps(dm, _mm512_cvtepi32_ps(mn)));
    }
  } else { /* Q6_K: scales at 192 (int8 x16), d at 208 (the top half of the dword at 206) */
    const __m512 d = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_srli_epi32(KQ_G(206), 16)));
    PL_UNROLL for (int q = 0; q < 4; q++) {
      const __m512i v = KQ_G(192 + 4 * q);
      PL_UNROLL for (int e = 0; e < 2; e++) { /* sub-block 2q+e: bytes 2e, 2e+1 */
        sw[2 * q + e] = d;
        aux[2 * q + e][0] = _mm512_srai_epi32(_mm512_slli_epi32(v, 24 - 16 * e), 24);
        aux[2 * q + e][1] = _mm512_srai_epi32(_mm512_slli_epi32(v, 16 - 16 * e), 24);
      }
    }
  }
#undef KQ_G
}

/* Row pointers of a group: rows past nr repeat row r. */
AI void kq_rows(const pl_mm_ctx *c, int64_t r, int nr, const uint8_t **w) {
  PL_UNROLL for (int i = 0; i < 16; i++) w[i] = PL_WROW(c, r + (i < nr ? i : 0));
}
AI __m512i kq_roff(const pl_mm_ctx *c, __mmask16 live) {
  return _mm512_maskz_mov_epi32(live, _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13,
                                                                            14, 15),
                                                         _mm512_set1_epi32((int)c->wrb)));
}

/* The float stage of one sub-block for one activation row (identical in both paths). */
AI __m512 kq_fstage(const int T, __m512i I, __m512 sw, __m512i aux0, float dx, float sx, __m512 acc) {
  acc = _mm512_fmadd_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(I), sw), _mm512_set1_ps(dx), acc);
  if (T == KQ_Q4_K)
    acc = _mm512_fnmadd_ps(_mm512_castsi512_ps(aux0), _mm512_set1_ps(sx), acc);
  return acc;
}

/* Batched: repack rows r .. r+nr-1, weight blocks sb0 .. sb0+kb-1, into g; prefetch into L2
 * the same blocks of the pnr rows from pr (the chunk repacked next). */
AI void kq_repack(const int T, const pl_mm_ctx *c, int64_t r, int nr, int64_t sb0, int kb, kq_grp *g, int64_t pr,
                  int pnr, int64_t psb0) {
  const uint8_t *w[16];
  kq_rows(c, r, nr, w);
  const uint8_t *pw = pnr > 0 ? PL_WROW(c, pr) + KQ_BB(T) * psb0 : NULL;
  const __mmask16 live = (__mmask16)(nr >= 16 ? 0xffff : (1u << nr) - 1);
  const __m512i roff = kq_roff(c, live);
  const __m512i lo = _mm512_setr_epi64(0, 1, 8, 9, 4, 5, 12, 13), hi = _mm512_setr_epi64(2, 3, 10, 11, 6, 7, 14, 15);
  for (int b = 0; b < kb; b++) {
    const int s0 = KQ_NS(T) * b;
    kq_scales(T, w[0], sb0 + b, roff, live, g->sw + s0, g->aux + s0);
    PL_UNROLL for (int s = 0; s < 8; s++) if (s < KQ_NS(T)) { /* KQ_NS <= 8 */
      __m512i z[8], t[8], u[8];
      kq_codes(T, w, sb0 + b, s, z);
      PL_UNROLL for (int p = 0; p < 8; p += 2) { /* 8x8 dword transpose in each half, as pk_repack */
        t[p] = _mm512_unpacklo_epi32(z[p], z[p + 1]);
        t[p + 1] = _mm512_unpackhi_epi32(z[p], z[p + 1]);
      }
      PL_UNROLL for (int q = 0; q < 8; q += 4) {
        u[q + 0] = _mm512_unpacklo_epi64(t[q], t[q + 2]);
        u[q + 1] = _mm512_unpackhi_epi64(t[q], t[q + 2]);
        u[q + 2] = _mm512_unpacklo_epi64(t[q + 1], t[q + 3]);
        u[q + 3] = _mm512_unpackhi_epi64(t[q + 1], t[q + 3]);
      }
      PL_UNROLL for (int k = 0; k < 4; k++) {
        _mm512_store_si512(&g->q[s0 + s][k], _mm512_permutex2var_epi64(u[k], lo, u[k + 4]));
        _mm512_store_si512(&g->q[s0 + s][k + 4], _mm512_permutex2var_epi64(u[k], hi, u[k + 4]));
      }
    }
    if (pw)
      PL_UNROLL for (int i = 0; i < 16; i++)
        if (i < pnr)
          for (int o = 0; o < KQ_BB(T) + 63; o += 64) /* every line of the block, the last too */
            _mm_prefetch((const char *)pw + (size_t)i * c->wrb + KQ_BB(T) * b + (o < KQ_BB(T) ? o : KQ_BB(T) - 1),
                         _MM_HINT_T1);
  }
}

/* ng (1 or 2) repacked groups from row r x nx activation rows from j0, sub-blocks b0 ..
 * b0+kn-1 (global indices) in g; y is accumulated in place after the first chunk. */
AI void kq_tile(const int T, const pl_mm_ctx *c, const kq_grp *const *g, int64_t b0, int kn, int64_t r, const int ng,
                const __mmask16 *ym, int j0, const int nx, int first) {
  const int8_t *xq[6];
  const float *xd[6], *xs[6];
  const int32_t *xc[6];
  __m512 acc[2][6];
  PL_UNROLL for (int j = 0; j < nx; j++) {
    xq[j] = PL_QX_QS(c, j0 + j) + 32 * b0;
    xd[j] = PL_QX_D(c, j0 + j) + b0;
    xs[j] = PL_QX_S(c, j0 + j) + b0;
    xc[j] = PL_QX_ZS(c, j0 + j) + (T == KQ_Q6_K ? 2 : 1) * b0;
    PL_UNROLL for (int e = 0; e < ng; e++)
      acc[e][j] = first ? _mm512_setzero_ps() : _mm512_maskz_loadu_ps(ym[e], &PL_Y(c, j0 + j, r + 16 * e));
  }
  for (int b = 0; b < kn; b++) {
    __m512i I[2][6], J[2][6]; /* Q6_K: I over weights 0-15, J over 16-31 */
    PL_UNROLL for (int j = 0; j < nx; j++) PL_UNROLL for (int e = 0; e < ng; e++) {
        I[e][j] = T == KQ_Q4_K ? _mm512_setzero_si512() : _mm512_set1_epi32(xc[j][T == KQ_Q6_K ? 2 * b : b]);
        if (T == KQ_Q6_K)
          J[e][j] = _mm512_set1_epi32(xc[j][2 * b + 1]);
      }
    PL_UNROLL for (int k = 0; k < 8; k++) {
      __m512i wk[2];
      PL_UNROLL for (int e = 0; e < ng; e++) wk[e] = _mm512_load_si512(&g[e]->q[b][k]);
      PL_UNROLL for (int j = 0; j < nx; j++) {
        int32_t xv;
        memcpy(&xv, xq[j] + 32 * b + 4 * k, 4);
        const __m512i xb = _mm512_set1_epi32(xv);
        PL_UNROLL for (int e = 0; e < ng; e++) {
          if (T == KQ_Q6_K && k >= 4)
            J[e][j] = _mm512_dpbusd_epi32(J[e][j], wk[e], xb);
          else
            I[e][j] = _mm512_dpbusd_epi32(I[e][j], wk[e], xb);
        }
      }
    }
    PL_UNROLL for (int j = 0; j < nx; j++) PL_UNROLL for (int e = 0; e < ng; e++) {
        __m512i Iv = I[e][j];
        if (T == KQ_Q6_K)
          Iv = _mm512_add_epi32(_mm512_mullo_epi32(Iv, g[e]->aux[b][0]), _mm512_mullo_epi32(J[e][j], g[e]->aux[b][1]));
        acc[e][j] = kq_fstage(T, Iv, g[e]->sw[b], g[e]->aux[b][0], xd[j][b], xs[j][b], acc[e][j]);
      }
  }
  PL_UNROLL for (int j = 0; j < nx; j++) PL_UNROLL for (int e = 0; e < ng; e++)
      _mm512_mask_storeu_ps(&PL_Y(c, j0 + j, r + 16 * e), ym[e], acc[e][j]);
}

#define KQ_TILE_NX(NG)                                                                        \
  switch (nx) {                                                                               \
  case 6: kq_tile(T, c, gp, b0, kn, r, NG, ym, j0, 6, f); break;                             \
  case 5: kq_tile(T, c, gp, b0, kn, r, NG, ym, j0, 5, f); break;                             \
  case 4: kq_tile(T, c, gp, b0, kn, r, NG, ym, j0, 4, f); break;                             \
  case 3: kq_tile(T, c, gp, b0, kn, r, NG, ym, j0, 3, f); break;                             \
  case 2: kq_tile(T, c, gp, b0, kn, r, NG, ym, j0, 2, f); break;                             \
  default: kq_tile(T, c, gp, b0, kn, r, NG, ym, j0, 1, f); break;                            \
  }

AI void kq_batched(const int T, const pl_mm_ctx *c, int64_t r0, int64_t r1) {
  _Alignas(64) kq_grp grp[2];
  const kq_grp *const gp[2] = {&grp[0], &grp[1]};
  const int64_t nsb = c->ql.nb / KQ_NS(T), kcb = KQ_KC / KQ_NS(T); /* weight blocks: all, per chunk */
  const int nxt = KQ_NX(T);
  int xbn = (int)(393216 / (c->xrb ? c->xrb : 1)); /* x block: activation rows kept in L2 */
  xbn = xbn < nxt ? nxt : xbn / nxt * nxt;
  for (int xs = 0; xs < c->n; xs += xbn) {
    const int xe = c->n - xs < xbn ? c->n : xs + xbn;
    for (int64_t r = r0; r < r1; r += 32) {
      const int nr = r1 - r < 32 ? (int)(r1 - r) : 32;
      const int n0 = nr < 16 ? nr : 16, n1 = nr - n0;
      const __mmask16 ym[2] = {(__mmask16)(n0 >= 16 ? 0xffff : (1u << n0) - 1),
                               (__mmask16)(n1 >= 16 ? 0xffff : (1u << n1) - 1)};
      for (int64_t sb0 = 0; sb0 < nsb; sb0 += kcb) {
        const int kb = nsb - sb0 < kcb ? (int)(nsb - sb0) : (int)kcb;
        int64_t pr = r, psb0 = sb0 + kcb; /* prefetch as pk_batched */
        if (psb0 >= nsb) {
          pr = r + 32;
          psb0 = 0;
        }
        const int pnr = r1 - pr < 16 ? (int)(r1 - pr) : 16;
        kq_repack(T, c, r, n0, sb0, kb, &grp[0], r + 16, n1, sb0);
        if (n1 > 0)
          kq_repack(T, c, r + 16, n1, sb0, kb, &grp[1], pr, pnr, psb0);
        const int64_t b0 = sb0 * KQ_NS(T);
        const int kn = kb * KQ_NS(T);
        for (int j0 = xs; j0 < xe; j0 += nxt) {
          const int f = sb0 == 0, nx = xe - j0 < nxt ? xe - j0 : nxt;
          if (n1 > 0) {
            KQ_TILE_NX(2)
          } else {
            KQ_TILE_NX(1)
          }
        }
      }
    }
  }
}
#undef KQ_TILE_NX

/* Sums of lanes 0-3 and 4-7 of each 256-bit half of P[0..7], separately: lane m of *A / *B
 * = the first / second four lanes of half 0 of P[m], lane 8+m = those of half 1 (pk_hsum16
 * without its last add: its two partials are the two 128-bit quarters). */
AI void kq_hsum_halves(const __m512i *P, __m512i *A, __m512i *B) {
  __m512i Q[4], R[2];
  PL_UNROLL for (int m = 0; m < 4; m++)
    Q[m] = _mm512_add_epi32(_mm512_unpacklo_epi32(P[2 * m], P[2 * m + 1]), _mm512_unpackhi_epi32(P[2 * m], P[2 * m + 1]));
  PL_UNROLL for (int m = 0; m < 2; m++)
    R[m] = _mm512_add_epi32(_mm512_unpacklo_epi64(Q[2 * m], Q[2 * m + 1]), _mm512_unpackhi_epi64(Q[2 * m], Q[2 * m + 1]));
  *A = _mm512_permutex2var_epi64(R[0], _mm512_setr_epi64(0, 1, 8, 9, 4, 5, 12, 13), R[1]);
  *B = _mm512_permutex2var_epi64(R[0], _mm512_setr_epi64(2, 3, 10, 11, 6, 7, 14, 15), R[1]);
}

/* Decode: rows r .. r+nr-1 (nr <= 16) x nx <= PK_ND activation rows, no repack; prefetches
 * the pnr rows from pr (the next group), a block's share per block. */
AI void kq_dec(const int T, const pl_mm_ctx *c, int64_t r, int nr, const int nx, int64_t pr, int pnr) {
  const uint8_t *w[16];
  kq_rows(c, r, nr, w);
  const char *pw = pnr > 0 ? (const char *)PL_WROW(c, pr) : NULL;
  const size_t pstep = (size_t)pnr * KQ_BB(T);
  const __mmask16 live = (__mmask16)(nr >= 16 ? 0xffff : (1u << nr) - 1);
  const __m512i roff = kq_roff(c, live);
  const int64_t nsb = c->ql.nb / KQ_NS(T);
  const int8_t *xq[PK_ND];
  const float *xd[PK_ND], *xs[PK_ND];
  const int32_t *xc[PK_ND];
  __m512 acc[PK_ND];
  PL_UNROLL for (int j = 0; j < nx; j++) {
    xq[j] = PL_QX_QS(c, j);
    xd[j] = PL_QX_D(c, j);
    xs[j] = PL_QX_S(c, j);
    xc[j] = PL_QX_ZS(c, j);
    acc[j] = _mm512_setzero_ps();
  }
  for (int64_t sb = 0; sb < nsb; sb++) {
    if (pw)
      for (size_t o = (size_t)sb * pstep; o < (size_t)(sb + 1) * pstep; o += 64)
        _mm_prefetch(pw + o, _MM_HINT_T0);
    __m512 sw[8];
    __m512i aux[8][2];
    kq_scales(T, w[0], sb, roff, live, sw, aux);
    PL_UNROLL for (int s = 0; s < 8; s++) if (s < KQ_NS(T)) { /* KQ_NS <= 8 */
      const int64_t b = KQ_NS(T) * sb + s;
      __m512i z[8];
      kq_codes(T, w, sb, s, z);
      PL_UNROLL for (int j = 0; j < nx; j++) {
        const __m512i x = _mm512_broadcast_i64x4(_mm256_load_si256((const __m256i *)(xq[j] + 32 * b)));
        __m512i P[8], I;
        PL_UNROLL for (int m = 0; m < 8; m++) P[m] = _mm512_dpbusd_epi32(_mm512_setzero_si512(), z[m], x);
        if (T == KQ_Q6_K) {
          __m512i A, B;
          kq_hsum_halves(P, &A, &B);
          A = _mm512_add_epi32(A, _mm512_set1_epi32(xc[j][2 * b]));
          B = _mm512_add_epi32(B, _mm512_set1_epi32(xc[j][2 * b + 1]));
          I = _mm512_add_epi32(_mm512_mullo_epi32(A, aux[s][0]), _mm512_mullo_epi32(B, aux[s][1]));
        } else {
          I = pk_hsum16(P);
          if (T == KQ_Q4_0)
            I = _mm512_add_epi32(I, _mm512_set1_epi32(xc[j][b]));
        }
        acc[j] = kq_fstage(T, I, sw[s], aux[s][0], xd[j][b], xs[j][b], acc[j]);
      }
    }
  }
  PL_UNROLL for (int j = 0; j < nx; j++) _mm512_mask_storeu_ps(&PL_Y(c, j, r), live, acc[j]);
}

AI void kq_run(const int T, const pl_mm_ctx *c, int64_t r0, int64_t r1) {
  if (c->n > PK_ND) {
    kq_batched(T, c, r0, r1);
    return;
  }
  for (int64_t r = r0; r < r1; r += 16) {
    const int nr = r1 - r < 16 ? (int)(r1 - r) : 16;
    const int pnr = r1 - (r + 16) < 16 ? (int)(r1 - (r + 16)) : 16;
    switch (c->n) {
    case 4: kq_dec(T, c, r, nr, 4, r + 16, pnr); break;
    case 3: kq_dec(T, c, r, nr, 3, r + 16, pnr); break;
    case 2: kq_dec(T, c, r, nr, 2, r + 16, pnr); break;
    default: kq_dec(T, c, r, nr, 1, r + 16, pnr); break;
    }
  }
}
static void q4_0_vnni16(const pl_mm_ctx *c, int64_t r0, int64_t r1) { kq_run(KQ_Q4_0, c, r0, r1); }
static void q4_k_vnni16(const pl_mm_ctx *c, int64_t r0, int64_t r1) { kq_run(KQ_Q4_K, c, r0, r1); }
static void q6_k_vnni16(const pl_mm_ctx *c, int64_t r0, int64_t r1) { kq_run(KQ_Q6_K, c, r0, r1); }
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
  o->qx_z[PL_MMT_Q4_0] = 8;
  o->qx_z[PL_MMT_Q6_K] = 32;
  if (vnni && getenv("PAGELLM_VNNI_OLD_TILES")) {
    /* benchmarks only: the 2-row tiles of kern_avx512_q.h for Q8_0/Q4_0/Q4_K/Q6_K, to time
     * them beside the row-per-lane kernels in one build */
    o->mm[PL_MMT_Q8_0] = q8_0_vnni;
    o->mm[PL_MMT_Q4_0] = q4_0_vnni;
    o->mm[PL_MMT_Q4_K] = q4_k_vnni;
    o->mm[PL_MMT_Q6_K] = q6_k_vnni;
    o->mm[PL_MMT_MLX4] = mlx4_vnni;
    o->mm[PL_MMT_MLX8] = mlx8_vnni;
    o->qx_z[PL_MMT_Q8_0] = 128;
  } else if (vnni) {
    /* a weight row per lane; zs compacted per block (Q6_K: per 16, one int8 scale each) */
    o->mm[PL_MMT_Q8_0] = q8_0_vnni16;
    o->mm[PL_MMT_Q4_0] = q4_0_vnni16;
    o->mm[PL_MMT_Q4_K] = q4_k_vnni16;
    o->mm[PL_MMT_Q6_K] = q6_k_vnni16;
    o->qx_bsum[PL_MMT_Q8_0] = o->qx_bsum[PL_MMT_Q4_0] = 32;
    o->qx_bsum[PL_MMT_Q6_K] = 16;
    o->mm_rows_align[PL_MMT_Q8_0] = o->mm_rows_align[PL_MMT_Q4_0] = 32;
    o->mm_rows_align[PL_MMT_Q4_K] = o->mm_rows_align[PL_MMT_Q6_K] = 32;
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
  o->attn_tile = pl_attn_tile_avx512;
}
