/* AVX-512 kernels (F/BW/VL/DQ; the VNNI variant of the quantized tiles and the BF16-pair
 * kernel are compiled with `#pragma GCC target(...)` and only installed when cpuid reports
 * the extension).
 * Float weights: tiles of 4 weight rows x up to 4 activation rows (16 accumulators), masked
 * loads for the column tail. Quantized weights: kern_avx512_q.h, 2 weight rows x up to 4
 * activation rows, 64 codes per vector; except Q8_0 with VNNI, which puts one weight row in
 * each int32 lane (q8_0_vnni16 below, 16-32 rows per tile). Vector helpers and the
 * activation quantizer come from the AVX2 file (they are not the bottleneck). */
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
    o->mm[PL_MMT_Q8_0] = q8_0_vnni16; /* q8_0_vnni (kern_avx512_q.h) is left unused */
    o->qx_bsum[PL_MMT_Q8_0] = 1;
    o->mm_rows_align[PL_MMT_Q8_0] = 32;
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
