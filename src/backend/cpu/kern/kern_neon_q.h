/* Quantized matmul tiles for NEON, included twice by kern_neon.c: DOTPROD=1 (sdot, compiled
 * under `#pragma GCC target("+dotprod")`) and DOTPROD=0 (vmull_s8 + vpadalq_s16). FN(x) names
 * the variant. Not a standalone header.
 * All weight codes are made signed int8 (q-8, q-32, q-128 ...) so one s8 x s8 dot serves
 * every format. A 16-byte dot returns 4 int32 lanes whose total is the 16-element sum (the
 * lane mapping differs between sdot and the fallback; only the total is used). Tiles: one
 * weight row x up to NXN activation rows, two accumulators per row (even/odd blocks). */

#if DOTPROD
AI int32x4_t FN(dot16)(int32x4_t acc, int8x16_t a, int8x16_t b) { return vdotq_s32(acc, a, b); }
#else
AI int32x4_t FN(dot16)(int32x4_t acc, int8x16_t a, int8x16_t b) {
  acc = vpadalq_s16(acc, vmull_s8(vget_low_s8(a), vget_low_s8(b)));
  return vpadalq_s16(acc, vmull_high_s8(a, b));
}
#endif
/* sum over one 32-element activation block */
AI int32x4_t FN(dot32)(int8x16_t w0, int8x16_t w1, const int8_t *x) {
  return FN(dot16)(FN(dot16)(vdupq_n_s32(0), w0, vld1q_s8(x)), w1, vld1q_s8(x + 16));
}

#define NQSETUP()                                                                           \
  const int8_t *xq[NXN];                                                                    \
  const float *xd[NXN], *xs[NXN];                                                           \
  PL_UNROLL for (int j = 0; j < nx; j++) {                                                  \
    xq[j] = PL_QX_QS(c, j0 + j);                                                            \
    xd[j] = PL_QX_D(c, j0 + j);                                                             \
    xs[j] = PL_QX_S(c, j0 + j);                                                             \
  }                                                                                         \
  (void)xs;                                                                                 \
  float32x4_t acc[NXN][2];                                                                  \
  PL_UNROLL for (int j = 0; j < nx; j++) acc[j][0] = acc[j][1] = vdupq_n_f32(0);

#define NQSTORE(EXTRA)                                                                      \
  PL_UNROLL for (int j = 0; j < nx; j++)                                                    \
      PL_Y(c, j0 + j, r) = vaddvq_f32(vaddq_f32(acc[j][0], acc[j][1])) + (EXTRA);

/* one 32-element block of signed codes (w0: elements 0-15, w1: 16-31), weight scale ws */
#define NQ_BLOCK(W0, W1, WS, XB, K)                                                         \
  PL_UNROLL for (int j = 0; j < nx; j++) {                                                  \
    int32x4_t p_ = FN(dot32)(W0, W1, xq[j] + 32 * (XB));                                    \
    acc[j][K] = vfmaq_n_f32(acc[j][K], vcvtq_f32_s32(p_), (WS) * xd[j][XB]);                \
  }

AI void FN(q8_0_body)(const pl_mm_ctx *c, int64_t r, int j0, const int nx) {
  const pl_blk_q8_0 *w = (const pl_blk_q8_0 *)PL_WROW(c, r);
  const int64_t nb = c->ql.nb;
  NQSETUP();
  int64_t b = 0;
  for (; b + 2 <= nb; b += 2) {
    int8x16_t a0 = vld1q_s8(w[b].qs), a1 = vld1q_s8(w[b].qs + 16);
    int8x16_t b0 = vld1q_s8(w[b + 1].qs), b1 = vld1q_s8(w[b + 1].qs + 16);
    float da = h2f(w[b].d), db = h2f(w[b + 1].d);
    NQ_BLOCK(a0, a1, da, b, 0)
    NQ_BLOCK(b0, b1, db, b + 1, 1)
  }
  if (b < nb) {
    int8x16_t a0 = vld1q_s8(w[b].qs), a1 = vld1q_s8(w[b].qs + 16);
    float da = h2f(w[b].d);
    NQ_BLOCK(a0, a1, da, b, 0)
  }
  NQSTORE(0.0f)
}

AI void FN(q4_0_body)(const pl_mm_ctx *c, int64_t r, int j0, const int nx) {
  const pl_blk_q4_0 *w = (const pl_blk_q4_0 *)PL_WROW(c, r);
  const int64_t nb = c->ql.nb;
  const uint8x16_t m4 = vdupq_n_u8(15);
  const int8x16_t k8 = vdupq_n_s8(8);
  NQSETUP();
  for (int64_t b = 0; b < nb; b++) {
    uint8x16_t v = vld1q_u8(w[b].qs);
    int8x16_t w0 = vsubq_s8(vreinterpretq_s8_u8(vandq_u8(v, m4)), k8);
    int8x16_t w1 = vsubq_s8(vreinterpretq_s8_u8(vshrq_n_u8(v, 4)), k8);
    float d = h2f(w[b].d);
    if (b & 1) {
      NQ_BLOCK(w0, w1, d, b, 1)
    } else {
      NQ_BLOCK(w0, w1, d, b, 0)
    }
  }
  NQSTORE(0.0f)
}

AI void FN(q4_k_body)(const pl_mm_ctx *c, int64_t r, int j0, const int nx) {
  const pl_blk_q4_k *w = (const pl_blk_q4_k *)PL_WROW(c, r);
  const int64_t nsb = c->cols / 256;
  const uint8x16_t m4 = vdupq_n_u8(15);
  NQSETUP();
  for (int64_t b = 0; b < nsb; b++) {
    float d = h2f(w[b].d), dmin = h2f(w[b].dmin);
    uint8_t scb[8], mb[8];
    pl_q4k_unpack(w[b].scales, scb, mb);
    float ds[8], mf[8];
    for (int k = 0; k < 8; k++) {
      ds[k] = d * (float)scb[k];
      mf[k] = dmin * (float)mb[k];
    }
    float32x4_t M0 = vld1q_f32(mf), M1 = vld1q_f32(mf + 4);
    PL_UNROLL for (int j = 0; j < nx; j++) {
      acc[j][0] = vfmsq_f32(acc[j][0], M0, vld1q_f32(xs[j] + 8 * b));
      acc[j][1] = vfmsq_f32(acc[j][1], M1, vld1q_f32(xs[j] + 8 * b + 4));
    }
    for (int q = 0; q < 4; q++) {
      uint8x16_t v0 = vld1q_u8(w[b].qs + 32 * q), v1 = vld1q_u8(w[b].qs + 32 * q + 16);
      int8x16_t l0 = vreinterpretq_s8_u8(vandq_u8(v0, m4)), l1 = vreinterpretq_s8_u8(vandq_u8(v1, m4));
      int8x16_t h0 = vreinterpretq_s8_u8(vshrq_n_u8(v0, 4)), h1 = vreinterpretq_s8_u8(vshrq_n_u8(v1, 4));
      const int64_t xb = 8 * b + 2 * q;
      NQ_BLOCK(l0, l1, ds[2 * q], xb, 0)
      NQ_BLOCK(h0, h1, ds[2 * q + 1], xb + 1, 1)
    }
  }
  NQSTORE(0.0f)
}

/* 32 elements = two 16-element sub-blocks with int8 scales s0, s1: exact in int32 */
#define NQ6_BLOCK(W0, W1, S0, S1, XB, K)                                                    \
  PL_UNROLL for (int j = 0; j < nx; j++) {                                                  \
    int32x4_t p0_ = FN(dot16)(vdupq_n_s32(0), W0, vld1q_s8(xq[j] + 32 * (XB)));             \
    int32x4_t p1_ = FN(dot16)(vdupq_n_s32(0), W1, vld1q_s8(xq[j] + 32 * (XB) + 16));        \
    int32x4_t p_ = vmlaq_n_s32(vmulq_n_s32(p0_, S0), p1_, S1);                              \
    acc[j][K] = vfmaq_n_f32(acc[j][K], vcvtq_f32_s32(p_), d * xd[j][XB]);                   \
  }

AI void FN(q6_k_body)(const pl_mm_ctx *c, int64_t r, int j0, const int nx) {
  const pl_blk_q6_k *w = (const pl_blk_q6_k *)PL_WROW(c, r);
  const int64_t nsb = c->cols / 256;
  const uint8x16_t m4 = vdupq_n_u8(15), m3 = vdupq_n_u8(3);
  const int8x16_t k32 = vdupq_n_s8(32);
  NQSETUP();
  for (int64_t b = 0; b < nsb; b++) {
    const float d = h2f(w[b].d);
    for (int h = 0; h < 2; h++) {
      const uint8_t *ql = w[b].ql + 64 * h, *qh = w[b].qh + 32 * h;
      const int8_t *sc = w[b].scales + 8 * h;
      int8x16_t q[4][2];
      for (int l = 0; l < 2; l++) { /* l: elements 16l..16l+15 of each quarter */
        uint8x16_t a = vld1q_u8(ql + 16 * l), bb = vld1q_u8(ql + 32 + 16 * l), hh = vld1q_u8(qh + 16 * l);
        q[0][l] = vsubq_s8(vreinterpretq_s8_u8(vorrq_u8(vandq_u8(a, m4), vshlq_n_u8(vandq_u8(hh, m3), 4))), k32);
        q[1][l] = vsubq_s8(vreinterpretq_s8_u8(vorrq_u8(vandq_u8(bb, m4), vshlq_n_u8(vandq_u8(vshrq_n_u8(hh, 2), m3), 4))), k32);
        q[2][l] = vsubq_s8(vreinterpretq_s8_u8(vorrq_u8(vshrq_n_u8(a, 4), vshlq_n_u8(vandq_u8(vshrq_n_u8(hh, 4), m3), 4))), k32);
        q[3][l] = vsubq_s8(vreinterpretq_s8_u8(vorrq_u8(vshrq_n_u8(bb, 4), vshlq_n_u8(vshrq_n_u8(hh, 6), 4))), k32);
      }
      const int64_t xb = 8 * b + 4 * h;
      NQ6_BLOCK(q[0][0], q[0][1], sc[0], sc[1], xb, 0)
      NQ6_BLOCK(q[1][0], q[1][1], sc[2], sc[3], xb + 1, 1)
      NQ6_BLOCK(q[2][0], q[2][1], sc[4], sc[5], xb + 2, 0)
      NQ6_BLOCK(q[3][0], q[3][1], sc[6], sc[7], xb + 3, 1)
    }
  }
  NQSTORE(0.0f)
}

/* MLX affine: w = s*q + b; scales/biases converted per chunk of groups; the bias term uses
 * the per-group activation sums; 8-bit codes recentred to q-128 (bias absorbs 128*s). */
AI void FN(mlx_body)(const pl_mm_ctx *c, int64_t r, int j0, const int nx, const int bits) {
  const pl_tensor *W = c->W;
  const uint8_t *w = PL_WROW(c, r);
  const int bpg = W->group_size / 32;
  const int gsh = (bpg & (bpg - 1)) == 0 ? __builtin_ctz((unsigned)bpg) : -1; /* block -> group */
  const int64_t ng = c->cols / W->group_size;
  const uint8x16_t m4 = vdupq_n_u8(15), x80 = vdupq_n_u8(0x80);
  NQSETUP();
  const float *xg[NXN];
  PL_UNROLL for (int j = 0; j < nx; j++) xg[j] = (const float *)PL_QX_ZS(c, j0 + j);
  float sg[MLX_CHUNK], bg[MLX_CHUNK];
  for (int64_t g0 = 0; g0 < ng; g0 += MLX_CHUNK) {
    const int64_t gn = ng - g0 < MLX_CHUNK ? ng - g0 : MLX_CHUNK;
    sb_row(W->scales, W->sb_type, r * ng + g0, gn, sg);
    sb_row(W->biases, W->sb_type, r * ng + g0, gn, bg);
    int64_t k = 0;
    for (; k + 4 <= gn; k += 4) {
      float32x4_t bv = vld1q_f32(bg + k);
      if (bits == 8)
        bv = vfmaq_n_f32(bv, vld1q_f32(sg + k), 128.0f);
      PL_UNROLL for (int j = 0; j < nx; j++) acc[j][1] = vfmaq_f32(acc[j][1], bv, vld1q_f32(xg[j] + g0 + k));
    }
    for (; k < gn; k++) {
      float bb = bg[k] + (bits == 8 ? 128.0f * sg[k] : 0.0f);
      PL_UNROLL for (int j = 0; j < nx; j++) acc[j][0] = vsetq_lane_f32(vgetq_lane_f32(acc[j][0], 0) + bb * xg[j][g0 + k], acc[j][0], 0);
    }
    for (int64_t xb = g0 * bpg; xb < (g0 + gn) * bpg; xb++) {
      const float s = sg[(gsh >= 0 ? xb >> gsh : xb / bpg) - g0];
      int8x16_t w0, w1;
      if (bits == 4) {
        uint8x16_t v = vld1q_u8(w + 16 * xb);
        uint8x16_t lo = vandq_u8(v, m4), hi = vshrq_n_u8(v, 4);
        w0 = vreinterpretq_s8_u8(vzip1q_u8(lo, hi));
        w1 = vreinterpretq_s8_u8(vzip2q_u8(lo, hi));
      } else {
        w0 = vreinterpretq_s8_u8(veorq_u8(vld1q_u8(w + 32 * xb), x80));
        w1 = vreinterpretq_s8_u8(veorq_u8(vld1q_u8(w + 32 * xb + 16), x80));
      }
      if (xb & 1) {
        NQ_BLOCK(w0, w1, s, xb, 1)
      } else {
        NQ_BLOCK(w0, w1, s, xb, 0)
      }
    }
  }
  NQSTORE(0.0f)
}
AI void FN(mlx4_body)(const pl_mm_ctx *c, int64_t r, int j0, const int nx) { FN(mlx_body)(c, r, j0, nx, 4); }
AI void FN(mlx8_body)(const pl_mm_ctx *c, int64_t r, int j0, const int nx) { FN(mlx_body)(c, r, j0, nx, 8); }

#define NQTILE(T)                                                                           \
  static void FN(T##_tile)(const pl_mm_ctx *c, int64_t r, int nr, int64_t rs, int j0, int nx) {         \
    (void)nr;                                                                               \
    (void)rs;                                                                               \
    switch (nx) {                                                                           \
    case 4: FN(T##_body)(c, r, j0, 4); break;                                               \
    case 3: FN(T##_body)(c, r, j0, 3); break;                                               \
    case 2: FN(T##_body)(c, r, j0, 2); break;                                               \
    default: FN(T##_body)(c, r, j0, 1); break;                                              \
    }                                                                                       \
  }                                                                                         \
  static void FN(T)(const pl_mm_ctx *c, int64_t r0, int64_t r1) {                           \
    PL_MM_LOOP(c, r0, r1, 1, NXN, FN(T##_tile));                                            \
  }

NQTILE(q8_0)
NQTILE(q4_0)
NQTILE(q4_k)
NQTILE(q6_k)
NQTILE(mlx4)
NQTILE(mlx8)
#undef NQTILE
#undef NQSETUP
#undef NQSTORE
#undef NQ_BLOCK
#undef NQ6_BLOCK
