/* NEON kernels (aarch64 baseline: Apple Silicon, Graviton, ...). Float weights: one weight
 * row x up to 4 activation rows, 16 columns per step with 4 accumulators per row. Quantized
 * weights: kern_neon_q.h, built with and without the dotprod extension (sdot); the dispatcher
 * picks by HWCAP. The activation quantizer is the scalar one (bit-exact by construction and
 * a tiny share of a matmul). */
#include <arm_neon.h>
#include <math.h>
#include <string.h>

#include "backend/cpu/kern/kern_impl.h"

#define AI static inline __attribute__((always_inline))
#define PL_UNROLL _Pragma("GCC unroll 16")
#define NXN 4

AI float h2f(uint16_t h) {
  __fp16 f;
  memcpy(&f, &h, 2);
  return (float)f;
}

/* ---- float weights -------------------------------------------------------------------- */
AI float32x4_t ld_f32(const void *w, int64_t i) { return vld1q_f32((const float *)w + i); }
AI float32x4_t ld_f16(const void *w, int64_t i) {
  return vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16((const uint16_t *)w + i)));
}
AI float32x4_t ld_bf16(const void *w, int64_t i) {
  return vreinterpretq_f32_u32(vshll_n_u16(vld1_u16((const uint16_t *)w + i), 16));
}
AI float sc_f32(const void *w, int64_t i) { return ((const float *)w)[i]; }
AI float sc_f16(const void *w, int64_t i) { return h2f(((const uint16_t *)w)[i]); }
AI float sc_bf16(const void *w, int64_t i) { return pl_bf16_to_f32(((const uint16_t *)w)[i]); }

#define FLOAT_KERNEL(NAME, LD, SC)                                                          \
  AI void NAME##_body(const pl_mm_ctx *c, int64_t r, int j0, const int nx) {                \
    const void *w = PL_WROW(c, r);                                                          \
    const int64_t cols = c->cols;                                                           \
    const float *x[NXN];                                                                    \
    PL_UNROLL for (int j = 0; j < nx; j++) x[j] = c->x + (size_t)(j0 + j) * cols;           \
    float32x4_t acc[NXN][4];                                                                \
    PL_UNROLL for (int j = 0; j < nx; j++) PL_UNROLL for (int u = 0; u < 4; u++)            \
        acc[j][u] = vdupq_n_f32(0);                                                         \
    int64_t i = 0;                                                                          \
    for (; i + 16 <= cols; i += 16) {                                                       \
      float32x4_t wv[4];                                                                    \
      PL_UNROLL for (int u = 0; u < 4; u++) wv[u] = LD(w, i + 4 * u);                       \
      PL_UNROLL for (int j = 0; j < nx; j++) PL_UNROLL for (int u = 0; u < 4; u++)          \
          acc[j][u] = vfmaq_f32(acc[j][u], wv[u], vld1q_f32(x[j] + i + 4 * u));             \
    }                                                                                       \
    for (; i + 4 <= cols; i += 4) {                                                         \
      float32x4_t wv = LD(w, i);                                                            \
      PL_UNROLL for (int j = 0; j < nx; j++) acc[j][0] = vfmaq_f32(acc[j][0], wv, vld1q_f32(x[j] + i)); \
    }                                                                                       \
    PL_UNROLL for (int j = 0; j < nx; j++) {                                                \
      float t = 0;                                                                          \
      for (int64_t k = i; k < cols; k++)                                                    \
        t += SC(w, k) * x[j][k];                                                            \
      float32x4_t s = vaddq_f32(vaddq_f32(acc[j][0], acc[j][1]), vaddq_f32(acc[j][2], acc[j][3])); \
      PL_Y(c, j0 + j, r) = vaddvq_f32(s) + t;                                               \
    }                                                                                       \
  }                                                                                         \
  static void NAME##_tile(const pl_mm_ctx *c, int64_t r, int nr, int64_t rs, int j0, int nx) {          \
    (void)nr;                                                                               \
    (void)rs;                                                                               \
    switch (nx) {                                                                           \
    case 4: NAME##_body(c, r, j0, 4); break;                                                \
    case 3: NAME##_body(c, r, j0, 3); break;                                                \
    case 2: NAME##_body(c, r, j0, 2); break;                                                \
    default: NAME##_body(c, r, j0, 1); break;                                               \
    }                                                                                       \
  }                                                                                         \
  static void NAME(const pl_mm_ctx *c, int64_t r0, int64_t r1) { PL_MM_LOOP(c, r0, r1, 1, NXN, NAME##_tile); }

FLOAT_KERNEL(mm_f32, ld_f32, sc_f32)
FLOAT_KERNEL(mm_f16, ld_f16, sc_f16)
FLOAT_KERNEL(mm_bf16, ld_bf16, sc_bf16)

/* MLX scales/biases [i0, i0+n) of one tensor as floats */
static void sb_row(const void *p, pl_dtype t, int64_t i0, int64_t n, float *out) {
  int64_t i = 0;
  if (t == PL_DT_F16) {
    const uint16_t *h = (const uint16_t *)p + i0;
    for (; i + 4 <= n; i += 4)
      vst1q_f32(out + i, ld_f16(h, i));
    for (; i < n; i++)
      out[i] = h2f(h[i]);
  } else if (t == PL_DT_BF16) {
    const uint16_t *h = (const uint16_t *)p + i0;
    for (; i + 4 <= n; i += 4)
      vst1q_f32(out + i, ld_bf16(h, i));
    for (; i < n; i++)
      out[i] = pl_bf16_to_f32(h[i]);
  } else {
    memcpy(out, (const float *)p + i0, (size_t)n * sizeof(float));
  }
}

/* ---- quantized weights ------------------------------------------------------------------ */
#define MLX_CHUNK 256
#define DOTPROD 0
#define FN(x) x##_nodot
#include "backend/cpu/kern/kern_neon_q.h"
#undef DOTPROD
#undef FN

#pragma GCC push_options
#pragma GCC target("arch=armv8.2-a+dotprod") /* as arm_neon.h declares vdotq */
#define DOTPROD 1
#define FN(x) x##_dot
#include "backend/cpu/kern/kern_neon_q.h"
#undef DOTPROD
#undef FN
#pragma GCC pop_options

/* ---- dequantization ------------------------------------------------------------------------ */
static void deq_f16(const void *row, float *y, int64_t n) {
  const uint16_t *h = row;
  int64_t i = 0;
  for (; i + 4 <= n; i += 4)
    vst1q_f32(y + i, vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(h + i))));
  for (; i < n; i++)
    y[i] = h2f(h[i]);
}

/* ---- vector helpers ------------------------------------------------------------------------ */
static float v_dot(int n, const float *a, const float *b) {
  float32x4_t s0 = vdupq_n_f32(0), s1 = s0, s2 = s0, s3 = s0;
  int i = 0;
  for (; i + 16 <= n; i += 16) {
    s0 = vfmaq_f32(s0, vld1q_f32(a + i), vld1q_f32(b + i));
    s1 = vfmaq_f32(s1, vld1q_f32(a + i + 4), vld1q_f32(b + i + 4));
    s2 = vfmaq_f32(s2, vld1q_f32(a + i + 8), vld1q_f32(b + i + 8));
    s3 = vfmaq_f32(s3, vld1q_f32(a + i + 12), vld1q_f32(b + i + 12));
  }
  for (; i + 4 <= n; i += 4)
    s0 = vfmaq_f32(s0, vld1q_f32(a + i), vld1q_f32(b + i));
  float t = vaddvq_f32(vaddq_f32(vaddq_f32(s0, s1), vaddq_f32(s2, s3)));
  for (; i < n; i++)
    t += a[i] * b[i];
  return t;
}

static void v_mad(int n, float *y, const float *x, float s) {
  int i = 0;
  for (; i + 4 <= n; i += 4)
    vst1q_f32(y + i, vfmaq_n_f32(vld1q_f32(y + i), vld1q_f32(x + i), s));
  for (; i < n; i++)
    y[i] += s * x[i];
}

static void v_scale(int n, float *y, float s) {
  int i = 0;
  for (; i + 4 <= n; i += 4)
    vst1q_f32(y + i, vmulq_n_f32(vld1q_f32(y + i), s));
  for (; i < n; i++)
    y[i] *= s;
}

static float v_max(int n, const float *x) {
  float32x4_t m = vdupq_n_f32(-INFINITY);
  int i = 0;
  for (; i + 4 <= n; i += 4)
    m = vmaxq_f32(m, vld1q_f32(x + i));
  float r = vmaxvq_f32(m);
  for (; i < n; i++)
    r = x[i] > r ? x[i] : r;
  return r;
}

static void v_rmsnorm(int n, float *y, const float *x, const float *w, float eps) {
  float rs = 1.0f / sqrtf(v_dot(n, x, x) / (float)n + eps);
  int i = 0;
  for (; i + 4 <= n; i += 4)
    vst1q_f32(y + i, vmulq_f32(vmulq_n_f32(vld1q_f32(x + i), rs), vld1q_f32(w + i)));
  for (; i < n; i++)
    y[i] = x[i] * rs * w[i];
}

void pl_kern_fill_neon(pl_kern_ops *o, int dotprod) {
  o->mm[PL_MMT_F32] = mm_f32;
  o->mm[PL_MMT_F16] = mm_f16;
  o->mm[PL_MMT_BF16] = mm_bf16;
  if (dotprod) {
    o->mm[PL_MMT_Q8_0] = q8_0_dot;
    o->mm[PL_MMT_Q4_0] = q4_0_dot;
    o->mm[PL_MMT_Q4_K] = q4_k_dot;
    o->mm[PL_MMT_Q6_K] = q6_k_dot;
    o->mm[PL_MMT_MLX4] = mlx4_dot;
    o->mm[PL_MMT_MLX8] = mlx8_dot;
  } else {
    o->mm[PL_MMT_Q8_0] = q8_0_nodot;
    o->mm[PL_MMT_Q4_0] = q4_0_nodot;
    o->mm[PL_MMT_Q4_K] = q4_k_nodot;
    o->mm[PL_MMT_Q6_K] = q6_k_nodot;
    o->mm[PL_MMT_MLX4] = mlx4_nodot;
    o->mm[PL_MMT_MLX8] = mlx8_nodot;
  }
  for (int t = 0; t < PL_MMT_COUNT; t++)
    o->qx_z[t] = 0;
  o->dequant[PL_MMT_F16] = deq_f16;
  o->dot = v_dot;
  o->mad = v_mad;
  o->scale = v_scale;
  o->max = v_max;
  o->rmsnorm = v_rmsnorm;
  o->attn_tile = pl_attn_tile_neon;
}
