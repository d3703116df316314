/* Quantized matmul tiles for AVX-512, included twice by kern_avx512.c: once with VNNI=0
 * (AVX-512BW: maddubs + madd) and once with VNNI=1 under `#pragma GCC target("avx512vnni")`
 * (vpdpbusd). FN(x) names the variant. Not a standalone header.
 *
 * A zmm holds 64 codes = two activation blocks ("a pair"): int32 lanes 0-7 belong to the
 * first block, 8-15 to the second. Per (weight row i, activation row j, pair):
 *     I   = 4-byte dot sums of codes and activation bytes   (+ zs: zero-point correction)
 *     acc = fma(float(I), SW_i * DX_j, acc)
 * where SW_i holds the weight scale of each lane and DX_j = [dx_a x8 | dx_b x8]. Tiles are
 * RWQ weight rows x up to NXQ activation rows: each decoded weight pair serves NXQ rows and
 * each loaded activation pair serves RWQ weight rows.
 *
 * Code kinds: KU unsigned codes (<= 63 on BW, any u8 on VNNI), KUZ unsigned with zero point
 * z taken from the activations' zs, KS signed codes (BW only: |w| x sign-adjusted x). */

#define KU 0
#define KUZ 1
#define KS 2

/* One pair step for tile (nr x nx). wv: codes (KS: |w|), neg: KS sign masks, sw: lane scales.
 * xb: first activation block of the pair; tail: only the first block is valid. */
AI void FN(pair_step)(const int nr, const int nx, const int kind, __m512 acc[RWQ][NXQ],
                      const __m512i *wv, const __mmask64 *neg, const __m512 *sw,
                      const int8_t *const *xq, const float *const *xd, const int32_t *const *xz,
                      int64_t xb, int tail) {
  PL_UNROLL for (int j = 0; j < nx; j++) {
    __m512i x, z = _mm512_setzero_si512();
    __m512 dx;
    if (!tail) {
      x = _mm512_load_si512((const void *)(xq[j] + 32 * xb));
      if (kind == KUZ)
        z = _mm512_load_si512((const void *)(xz[j] + 8 * xb));
      dx = pair_bcast(xd[j] + xb);
    } else {
      x = _mm512_zextsi256_si512(_mm256_load_si256((const __m256i *)(xq[j] + 32 * xb)));
      if (kind == KUZ)
        z = _mm512_zextsi256_si512(_mm256_load_si256((const __m256i *)(xz[j] + 8 * xb)));
      dx = _mm512_zextps256_ps512(_mm256_set1_ps(xd[j][xb]));
    }
    PL_UNROLL for (int i = 0; i < nr; i++) {
      __m512i I;
#if VNNI
      (void)neg;
      I = _mm512_dpbusd_epi32(z, wv[i], x);
#else
      if (kind == KS) {
        __m512i sx = _mm512_mask_sub_epi8(x, neg[i], _mm512_setzero_si512(), x);
        I = _mm512_madd_epi16(_mm512_maddubs_epi16(wv[i], sx), _mm512_set1_epi16(1));
      } else {
        I = _mm512_madd_epi16(_mm512_maddubs_epi16(wv[i], x), _mm512_set1_epi16(1));
        if (kind == KUZ)
          I = _mm512_add_epi32(I, z);
      }
#endif
      acc[i][j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(I), _mm512_mul_ps(sw[i], dx), acc[i][j]);
    }
  }
}

#define QSETUP()                                                                            \
  const int8_t *xq[NXQ];                                                                    \
  const float *xd[NXQ], *xs[NXQ];                                                           \
  const int32_t *xz[NXQ];                                                                   \
  PL_UNROLL for (int j = 0; j < nx; j++) {                                                  \
    xq[j] = PL_QX_QS(c, j0 + j);                                                            \
    xd[j] = PL_QX_D(c, j0 + j);                                                             \
    xs[j] = PL_QX_S(c, j0 + j);                                                             \
    xz[j] = PL_QX_ZS(c, j0 + j);                                                            \
  }                                                                                         \
  (void)xs;                                                                                 \
  __m512 acc[RWQ][NXQ];                                                                     \
  PL_UNROLL for (int i = 0; i < nr; i++) PL_UNROLL for (int j = 0; j < nx; j++)             \
      acc[i][j] = _mm512_setzero_ps();

#define QSTORE(EXTRA)                                                                       \
  PL_UNROLL for (int i = 0; i < nr; i++) PL_UNROLL for (int j = 0; j < nx; j++)             \
      PL_Y(c, j0 + j, r + i * rs) = _mm512_reduce_add_ps(acc[i][j]) + (EXTRA);

/* ---- Q8_0 ------------------------------------------------------------------------------ */
AI void FN(q8_0_body)(const pl_mm_ctx *c, int64_t r, const int nr, int64_t rs, int j0, const int nx) {
  const pl_blk_q8_0 *w[RWQ];
  PL_UNROLL for (int i = 0; i < nr; i++) w[i] = (const pl_blk_q8_0 *)PL_WROW(c, r + i * rs);
  const int64_t nb = c->ql.nb;
  const int kind = VNNI ? KUZ : KS;
  QSETUP();
  __m512i wv[RWQ];
  __mmask64 neg[RWQ];
  __m512 sw[RWQ];
  int64_t b = 0;
  for (; b + 2 <= nb; b += 2) {
    PL_UNROLL for (int i = 0; i < nr; i++) {
      __m512i v = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)w[i][b].qs)),
                                     _mm256_loadu_si256((const __m256i *)w[i][b + 1].qs), 1);
      sw[i] = pair_h(w[i][b].d, w[i][b + 1].d);
#if VNNI
      wv[i] = _mm512_xor_si512(v, _mm512_set1_epi8((char)0x80)); /* u = w + 128, zs: -128 sum */
#else
      neg[i] = _mm512_movepi8_mask(v);
      wv[i] = _mm512_abs_epi8(v);
#endif
    }
    FN(pair_step)(nr, nx, kind, acc, wv, neg, sw, xq, xd, xz, b, 0);
  }
  if (b < nb) {
    PL_UNROLL for (int i = 0; i < nr; i++) {
      __m512i v = _mm512_zextsi256_si512(_mm256_loadu_si256((const __m256i *)w[i][b].qs));
      sw[i] = _mm512_set1_ps(h2f(w[i][b].d));
#if VNNI
      wv[i] = _mm512_xor_si512(v, _mm512_set1_epi8((char)0x80));
#else
      neg[i] = _mm512_movepi8_mask(v);
      wv[i] = _mm512_abs_epi8(v);
#endif
    }
    FN(pair_step)(nr, nx, kind, acc, wv, neg, sw, xq, xd, xz, b, 1);
  }
  QSTORE(0.0f)
}

/* ---- Q4_0 ------------------------------------------------------------------------------ */
AI void FN(q4_0_body)(const pl_mm_ctx *c, int64_t r, const int nr, int64_t rs, int j0, const int nx) {
  const pl_blk_q4_0 *w[RWQ];
  PL_UNROLL for (int i = 0; i < nr; i++) w[i] = (const pl_blk_q4_0 *)PL_WROW(c, r + i * rs);
  const int64_t nb = c->ql.nb;
  QSETUP();
  __m512i wv[RWQ];
  __m512 sw[RWQ];
  const __m256i m4 = _mm256_set1_epi8(15);
  int64_t b = 0;
  for (; b + 2 <= nb; b += 2) {
    PL_UNROLL for (int i = 0; i < nr; i++) {
      __m256i t = _mm256_set_m128i(_mm_loadu_si128((const __m128i *)w[i][b + 1].qs),
                                   _mm_loadu_si128((const __m128i *)w[i][b].qs));
      __m512i v = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_and_si256(t, m4)),
                                     _mm256_and_si256(_mm256_srli_epi16(t, 4), m4), 1);
      wv[i] = _mm512_shuffle_i64x2(v, v, _MM_SHUFFLE(3, 1, 2, 0)); /* lo0 hi0 lo1 hi1 */
      sw[i] = pair_h(w[i][b].d, w[i][b + 1].d);
    }
    FN(pair_step)(nr, nx, KUZ, acc, wv, NULL, sw, xq, xd, xz, b, 0);
  }
  if (b < nb) {
    PL_UNROLL for (int i = 0; i < nr; i++) {
      __m128i t = _mm_loadu_si128((const __m128i *)w[i][b].qs);
      __m128i m = _mm_set1_epi8(15);
      wv[i] = _mm512_zextsi256_si512(_mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(t, 4), m), _mm_and_si128(t, m)));
      sw[i] = _mm512_set1_ps(h2f(w[i][b].d));
    }
    FN(pair_step)(nr, nx, KUZ, acc, wv, NULL, sw, xq, xd, xz, b, 1);
  }
  QSTORE(0.0f)
}

/* ---- Q4_K: a pair = one 64-element chunk (low nibbles: sub-block 2q, high: 2q+1) -------- */
AI void FN(q4_k_body)(const pl_mm_ctx *c, int64_t r, const int nr, int64_t rs, int j0, const int nx) {
  const pl_blk_q4_k *w[RWQ];
  PL_UNROLL for (int i = 0; i < nr; i++) w[i] = (const pl_blk_q4_k *)PL_WROW(c, r + i * rs);
  const int64_t nsb = c->cols / 256;
  QSETUP();
  __m512i wv[RWQ];
  __m512 sw[RWQ];
  const __m256i m4 = _mm256_set1_epi8(15);
  for (int64_t b = 0; b < nsb; b++) {
    __m512 D[RWQ];
    PL_UNROLL for (int i = 0; i < nr; i++) {
      uint8_t scb[8], mb[8];
      pl_q4k_unpack(w[i][b].scales, scb, mb);
      __m256 scf = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)scb)));
      __m256 mf = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)mb)));
      D[i] = _mm512_zextps256_ps512(_mm256_mul_ps(_mm256_set1_ps(h2f(w[i][b].d)), scf));
      /* min term, lane-wise: acc -= (dmin*m_k) * s_k over the 8 sub-blocks */
      __m256 M = _mm256_mul_ps(_mm256_set1_ps(h2f(w[i][b].dmin)), mf);
      PL_UNROLL for (int j = 0; j < nx; j++)
        acc[i][j] = _mm512_fnmadd_ps(_mm512_zextps256_ps512(M),
                                     _mm512_zextps256_ps512(_mm256_load_ps(xs[j] + 8 * b)), acc[i][j]);
    }
    for (int q = 0; q < 4; q++) {
      PL_UNROLL for (int i = 0; i < nr; i++) {
        __m256i v = _mm256_loadu_si256((const __m256i *)(w[i][b].qs + 32 * q));
        wv[i] = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_and_si256(v, m4)),
                                   _mm256_and_si256(_mm256_srli_epi16(v, 4), m4), 1);
        sw[i] = _mm512_permutexvar_ps(_mm512_setr_epi32(2 * q, 2 * q, 2 * q, 2 * q, 2 * q, 2 * q, 2 * q, 2 * q,
                                                        2 * q + 1, 2 * q + 1, 2 * q + 1, 2 * q + 1, 2 * q + 1,
                                                        2 * q + 1, 2 * q + 1, 2 * q + 1), D[i]);
      }
      FN(pair_step)(nr, nx, KU, acc, wv, NULL, sw, xq, xd, xz, 8 * b + 2 * q, 0);
    }
  }
  QSTORE(0.0f)
}

/* ---- Q6_K: a 128-element half = two pairs; lane scales [sc_k x4 | .. | sc_k+3 x4] * d ---- */
AI void FN(q6_k_body)(const pl_mm_ctx *c, int64_t r, const int nr, int64_t rs, int j0, const int nx) {
  const pl_blk_q6_k *w[RWQ];
  PL_UNROLL for (int i = 0; i < nr; i++) w[i] = (const pl_blk_q6_k *)PL_WROW(c, r + i * rs);
  const int64_t nsb = c->cols / 256;
  QSETUP();
  __m512i wa[RWQ], wb[RWQ];
  __m512 sa[RWQ], sb[RWQ];
  const __m512i m4 = _mm512_set1_epi8(15), m30 = _mm512_set1_epi8(0x30);
  for (int64_t b = 0; b < nsb; b++) {
    __m512 sc16[RWQ];
    PL_UNROLL for (int i = 0; i < nr; i++)
      sc16[i] = _mm512_mul_ps(_mm512_set1_ps(h2f(w[i][b].d)),
                              _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)w[i][b].scales))));
    for (int h = 0; h < 2; h++) {
      PL_UNROLL for (int i = 0; i < nr; i++) {
        __m512i ql = _mm512_loadu_si512((const void *)(w[i][b].ql + 64 * h));
        __m256i qh = _mm256_loadu_si256((const __m256i *)(w[i][b].qh + 32 * h));
        __m512i qh2 = _mm512_inserti64x4(_mm512_castsi256_si512(qh), _mm256_srli_epi16(qh, 2), 1);
        wa[i] = _mm512_or_si512(_mm512_and_si512(ql, m4), _mm512_and_si512(_mm512_slli_epi16(qh2, 4), m30));
        wb[i] = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(ql, 4), m4), _mm512_and_si512(qh2, m30));
        const int k = 8 * h;
        sa[i] = _mm512_permutexvar_ps(_mm512_setr_epi32(k, k, k, k, k + 1, k + 1, k + 1, k + 1, k + 2, k + 2, k + 2,
                                                        k + 2, k + 3, k + 3, k + 3, k + 3), sc16[i]);
        sb[i] = _mm512_permutexvar_ps(_mm512_setr_epi32(k + 4, k + 4, k + 4, k + 4, k + 5, k + 5, k + 5, k + 5, k + 6,
                                                        k + 6, k + 6, k + 6, k + 7, k + 7, k + 7, k + 7), sc16[i]);
      }
      FN(pair_step)(nr, nx, KUZ, acc, wa, NULL, sa, xq, xd, xz, 8 * b + 4 * h, 0);
      FN(pair_step)(nr, nx, KUZ, acc, wb, NULL, sb, xq, xd, xz, 8 * b + 4 * h + 2, 0);
    }
  }
  QSTORE(0.0f)
}

/* ---- MLX affine: per chunk of groups, scales/biases converted once per row; the bias term
 * is sum_g bias_g * (group sum of the activation block sums), 16 groups per FMA. ---------- */
AI void FN(mlx_body)(const pl_mm_ctx *c, int64_t r, const int nr, int64_t rs, int j0, const int nx, const int bits) {
  const pl_tensor *W = c->W;
  const uint8_t *w[RWQ];
  PL_UNROLL for (int i = 0; i < nr; i++) w[i] = PL_WROW(c, r + i * rs);
  const int bpg = W->group_size / 32;
  const int gsh = (bpg & (bpg - 1)) == 0 ? __builtin_ctz((unsigned)bpg) : -1; /* block -> group */
  const int64_t ng = c->cols / W->group_size;
  /* 8-bit codes: VNNI takes them as u8 directly; BW recentres to q-128 (signed) and moves
   * 128*s into the bias. */
  const int kind = bits == 4 ? KU : VNNI ? KU : KS;
  const float boff = (bits == 8 && !VNNI) ? 128.0f : 0.0f;
  QSETUP();
  const float *xg[NXQ]; /* per-group activation sums (kern_impl.h) */
  PL_UNROLL for (int j = 0; j < nx; j++) xg[j] = (const float *)xz[j];
  float accb[RWQ][NXQ];
  PL_UNROLL for (int i = 0; i < nr; i++) PL_UNROLL for (int j = 0; j < nx; j++) accb[i][j] = 0;
  _Alignas(64) float sg[RWQ][MLX_CHUNK], bg[RWQ][MLX_CHUNK];
  __m512i wv[RWQ];
  __mmask64 neg[RWQ];
  __m512 sw[RWQ];
  const __m512i lo4 = _mm512_set1_epi16(0x000F), hi4 = _mm512_set1_epi16(0x0F00);
  for (int64_t g0 = 0; g0 < ng; g0 += MLX_CHUNK) {
    const int64_t gn = ng - g0 < MLX_CHUNK ? ng - g0 : MLX_CHUNK;
    PL_UNROLL for (int i = 0; i < nr; i++) {
      sb_row(W->scales, W->sb_type, (r + i * rs) * ng + g0, gn, sg[i]);
      sb_row(W->biases, W->sb_type, (r + i * rs) * ng + g0, gn, bg[i]);
      int64_t k = 0;
      for (; k + 16 <= gn; k += 16) {
        __m512 bv = _mm512_load_ps(&bg[i][k]);
        if (boff != 0)
          bv = _mm512_fmadd_ps(_mm512_set1_ps(boff), _mm512_load_ps(&sg[i][k]), bv);
        PL_UNROLL for (int j = 0; j < nx; j++)
          acc[i][j] = _mm512_fmadd_ps(bv, _mm512_loadu_ps(xg[j] + g0 + k), acc[i][j]);
      }
      for (; k < gn; k++)
        PL_UNROLL for (int j = 0; j < nx; j++) accb[i][j] += (bg[i][k] + boff * sg[i][k]) * xg[j][g0 + k];
    }
    const int64_t b0 = g0 * bpg, b1 = (g0 + gn) * bpg;
    int64_t xb = b0;
    for (; xb + 2 <= b1; xb += 2) {
      PL_UNROLL for (int i = 0; i < nr; i++) {
        if (bits == 4) {
          __m512i t = _mm512_cvtepu8_epi16(_mm256_loadu_si256((const __m256i *)(w[i] + 16 * xb)));
          wv[i] = _mm512_or_si512(_mm512_and_si512(t, lo4), _mm512_and_si512(_mm512_slli_epi16(t, 4), hi4));
        } else {
          __m512i v = _mm512_loadu_si512((const void *)(w[i] + 32 * xb));
          if (kind == KS) {
            v = _mm512_xor_si512(v, _mm512_set1_epi8((char)0x80));
            neg[i] = _mm512_movepi8_mask(v);
            v = _mm512_abs_epi8(v);
          }
          wv[i] = v;
        }
        /* a pair lies in one group unless groups are a single block */
        sw[i] = bpg == 1 ? pair_bcast(&sg[i][xb - b0])
                         : _mm512_set1_ps(sg[i][gsh >= 0 ? (xb - b0) >> gsh : (xb - b0) / bpg]);
      }
      FN(pair_step)(nr, nx, kind, acc, wv, neg, sw, xq, xd, xz, xb, 0);
    }
    if (xb < b1) { /* odd number of blocks (group_size 32, odd group count) */
      PL_UNROLL for (int i = 0; i < nr; i++) {
        if (bits == 4) {
          __m256i t = _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)(w[i] + 16 * xb)));
          t = _mm256_or_si256(_mm256_and_si256(t, _mm256_set1_epi16(0x000F)),
                              _mm256_and_si256(_mm256_slli_epi16(t, 4), _mm256_set1_epi16(0x0F00)));
          wv[i] = _mm512_zextsi256_si512(t);
        } else {
          __m512i v = _mm512_zextsi256_si512(_mm256_loadu_si256((const __m256i *)(w[i] + 32 * xb)));
          if (kind == KS) {
            v = _mm512_xor_si512(v, _mm512_set1_epi8((char)0x80)); /* upper: |-128| x 0 = 0 */
            neg[i] = _mm512_movepi8_mask(v);
            v = _mm512_abs_epi8(v);
          }
          wv[i] = v;
        }
        sw[i] = _mm512_set1_ps(sg[i][gsh >= 0 ? (xb - b0) >> gsh : (xb - b0) / bpg]);
      }
      FN(pair_step)(nr, nx, kind, acc, wv, neg, sw, xq, xd, xz, xb, 1);
    }
  }
  QSTORE(accb[i][j])
}
AI void FN(mlx4_body)(const pl_mm_ctx *c, int64_t r, const int nr, int64_t rs, int j0, const int nx) {
  FN(mlx_body)(c, r, nr, rs, j0, nx, 4);
}
AI void FN(mlx8_body)(const pl_mm_ctx *c, int64_t r, const int nr, int64_t rs, int j0, const int nx) {
  FN(mlx_body)(c, r, nr, rs, j0, nx, 8);
}

/* Tile dispatch: full row tiles use nr = RWQ, a ragged end goes one row at a time. */
#define QTILE(T)                                                                            \
  static void FN(T##_tile)(const pl_mm_ctx *c, int64_t r, int nr, int64_t rs, int j0, int nx) {         \
    if (nr == RWQ) {                                                                        \
      switch (nx) {                                                                         \
      case 4: FN(T##_body)(c, r, RWQ, rs, j0, 4); break;                                        \
      case 3: FN(T##_body)(c, r, RWQ, rs, j0, 3); break;                                        \
      case 2: FN(T##_body)(c, r, RWQ, rs, j0, 2); break;                                        \
      default: FN(T##_body)(c, r, RWQ, rs, j0, 1); break;                                       \
      }                                                                                     \
      return;                                                                               \
    }                                                                                       \
    for (int i = 0; i < nr; i++)                                                            \
      switch (nx) {                                                                         \
      case 4: FN(T##_body)(c, r + i * rs, 1, 1, j0, 4); break;                                      \
      case 3: FN(T##_body)(c, r + i * rs, 1, 1, j0, 3); break;                                      \
      case 2: FN(T##_body)(c, r + i * rs, 1, 1, j0, 2); break;                                      \
      default: FN(T##_body)(c, r + i * rs, 1, 1, j0, 1); break;                                     \
      }                                                                                     \
  }                                                                                         \
  static void FN(T)(const pl_mm_ctx *c, int64_t r0, int64_t r1) {                           \
    PL_MM_LOOP(c, r0, r1, RWQ, NXQ, FN(T##_tile));                                          \
  }

/* On VNNI, Q8_0/Q4_0/Q4_K/Q6_K use the row-per-lane kernels of kern_avx512.c; these tiles
 * stay for PAGELLM_VNNI_OLD_TILES (benchmarks) */
QTILE(q8_0)
QTILE(q4_0)
QTILE(q4_k)
QTILE(q6_k)
QTILE(mlx4)
QTILE(mlx8)
#undef QTILE
#undef QSETUP
#undef QSTORE
#undef KU
#undef KUZ
#undef KS
