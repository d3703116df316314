/* Portable scalar kernels: the fallback on CPUs without a SIMD path and the baseline the
 * SIMD files are tested against. Quantized dots use exact int32 block sums and one float
 * multiply-add per block, the same arithmetic shape as the SIMD kernels. */
#include <math.h>
#include <string.h>

#include "backend/cpu/kern/kern_impl.h"

#define QX_QS(c, j) ((const int8_t *)((c)->qx + (size_t)(j) * (c)->ql.stride))
#define QX_D(c, j) ((const float *)((c)->qx + (size_t)(j) * (c)->ql.stride + (c)->ql.off_d))
#define QX_S(c, j) ((const float *)((c)->qx + (size_t)(j) * (c)->ql.stride + (c)->ql.off_s))
#define Y(c, j, r) ((c)->y[(size_t)(j) * (size_t)(c)->rows + (size_t)(r)])

static void mm_f32(const pl_mm_ctx *c, int64_t r0, int64_t r1) {
  for (int64_t r = r0; r < r1; r++) {
    const float *w = (const float *)((const uint8_t *)c->W->data + (size_t)r * c->wrb);
    for (int j = 0; j < c->n; j++) {
      const float *x = c->x + (size_t)j * c->cols;
      float a[4] = {0, 0, 0, 0};
      int64_t i = 0;
      for (; i + 4 <= c->cols; i += 4)
        for (int k = 0; k < 4; k++)
          a[k] += w[i + k] * x[i + k];
      for (; i < c->cols; i++)
        a[0] += w[i] * x[i];
      Y(c, j, r) = (a[0] + a[1]) + (a[2] + a[3]);
    }
  }
}

static void mm_half(const pl_mm_ctx *c, int64_t r0, int64_t r1, int bf) {
  for (int64_t r = r0; r < r1; r++) {
    const uint16_t *w = (const uint16_t *)((const uint8_t *)c->W->data + (size_t)r * c->wrb);
    for (int j = 0; j < c->n; j++) {
      const float *x = c->x + (size_t)j * c->cols;
      float a[4] = {0, 0, 0, 0};
      int64_t i = 0;
      for (; i < c->cols; i++)
        a[i & 3] += (bf ? pl_bf16_to_f32(w[i]) : pl_f16_to_f32(w[i])) * x[i];
      Y(c, j, r) = (a[0] + a[1]) + (a[2] + a[3]);
    }
  }
}
static void mm_f16(const pl_mm_ctx *c, int64_t r0, int64_t r1) { mm_half(c, r0, r1, 0); }
static void mm_bf16(const pl_mm_ctx *c, int64_t r0, int64_t r1) { mm_half(c, r0, r1, 1); }

static void mm_q8_0(const pl_mm_ctx *c, int64_t r0, int64_t r1) {
  for (int64_t r = r0; r < r1; r++) {
    const pl_blk_q8_0 *w = (const pl_blk_q8_0 *)((const uint8_t *)c->W->data + (size_t)r * c->wrb);
    for (int j = 0; j < c->n; j++) {
      const int8_t *q = QX_QS(c, j);
      const float *d = QX_D(c, j);
      float acc = 0;
      for (int64_t b = 0; b < c->ql.nb; b++) {
        int s = 0;
        for (int i = 0; i < 32; i++)
          s += w[b].qs[i] * q[b * 32 + i];
        acc += (float)s * (pl_f16_to_f32(w[b].d) * d[b]);
      }
      Y(c, j, r) = acc;
    }
  }
}

static void mm_q4_0(const pl_mm_ctx *c, int64_t r0, int64_t r1) {
  for (int64_t r = r0; r < r1; r++) {
    const pl_blk_q4_0 *w = (const pl_blk_q4_0 *)((const uint8_t *)c->W->data + (size_t)r * c->wrb);
    for (int j = 0; j < c->n; j++) {
      const int8_t *q = QX_QS(c, j);
      const float *d = QX_D(c, j);
      float acc = 0;
      for (int64_t b = 0; b < c->ql.nb; b++) {
        int s = 0;
        for (int i = 0; i < 16; i++)
          s += ((w[b].qs[i] & 15) - 8) * q[b * 32 + i] + ((w[b].qs[i] >> 4) - 8) * q[b * 32 + i + 16];
        acc += (float)s * (pl_f16_to_f32(w[b].d) * d[b]);
      }
      Y(c, j, r) = acc;
    }
  }
}

static void mm_q4_k(const pl_mm_ctx *c, int64_t r0, int64_t r1) {
  for (int64_t r = r0; r < r1; r++) {
    const pl_blk_q4_k *w = (const pl_blk_q4_k *)((const uint8_t *)c->W->data + (size_t)r * c->wrb);
    for (int j = 0; j < c->n; j++) {
      const int8_t *q = QX_QS(c, j);
      const float *d = QX_D(c, j), *s = QX_S(c, j);
      float acc = 0, accm = 0;
      for (int64_t b = 0; b < c->cols / 256; b++) {
        float dw = pl_f16_to_f32(w[b].d), dmin = pl_f16_to_f32(w[b].dmin);
        for (int sb = 0; sb < 8; sb++) {
          int sc, m;
          pl_q4k_scale_min(sb, w[b].scales, &sc, &m);
          const uint8_t *wq = w[b].qs + 32 * (sb / 2);
          const int8_t *xq = q + b * 256 + sb * 32;
          int shift = (sb & 1) * 4, isum = 0;
          for (int i = 0; i < 32; i++)
            isum += ((wq[i] >> shift) & 15) * xq[i];
          acc += (float)isum * (dw * (float)sc * d[b * 8 + sb]);
          accm += (dmin * (float)m) * s[b * 8 + sb];
        }
      }
      Y(c, j, r) = acc - accm;
    }
  }
}

static void mm_q6_k(const pl_mm_ctx *c, int64_t r0, int64_t r1) {
  for (int64_t r = r0; r < r1; r++) {
    const pl_blk_q6_k *w = (const pl_blk_q6_k *)((const uint8_t *)c->W->data + (size_t)r * c->wrb);
    for (int j = 0; j < c->n; j++) {
      const int8_t *q = QX_QS(c, j);
      const float *d = QX_D(c, j);
      float acc = 0;
      for (int64_t b = 0; b < c->cols / 256; b++) {
        float dw = pl_f16_to_f32(w[b].d);
        for (int h = 0; h < 2; h++) {
          const uint8_t *ql = w[b].ql + 64 * h, *qh = w[b].qh + 32 * h;
          for (int qu = 0; qu < 4; qu++) { /* 32 elements: 128h + 32qu + l */
            const int8_t *xq = q + b * 256 + 128 * h + 32 * qu;
            int s0 = 0, s1 = 0;
            for (int l = 0; l < 32; l++) {
              int lo = (qu & 1) ? ql[l + 32] : ql[l];
              lo = (qu & 2) ? lo >> 4 : lo & 15;
              int v = (lo | (((qh[l] >> (2 * qu)) & 3) << 4)) - 32;
              if (l < 16)
                s0 += v * xq[l];
              else
                s1 += v * xq[l];
            }
            int k = 8 * h + 2 * qu; /* scale index of elements 16k..16k+15 */
            int isum = s0 * w[b].scales[k] + s1 * w[b].scales[k + 1];
            acc += (float)isum * (dw * d[b * 8 + 4 * h + qu]);
          }
        }
      }
      Y(c, j, r) = acc;
    }
  }
}

static void mm_mlx(const pl_mm_ctx *c, int64_t r0, int64_t r1, int bits) {
  const pl_tensor *W = c->W;
  int gs = W->group_size;
  int64_t ng = c->cols / gs;
  for (int64_t r = r0; r < r1; r++) {
    const uint8_t *w = (const uint8_t *)W->data + (size_t)r * c->wrb;
    for (int j = 0; j < c->n; j++) {
      const int8_t *q = QX_QS(c, j);
      const float *d = QX_D(c, j), *s = QX_S(c, j);
      float acc = 0;
      for (int64_t g = 0; g < ng; g++) {
        float sc = pl_sb_to_f32(W->scales, W->sb_type, r * ng + g);
        float bi = pl_sb_to_f32(W->biases, W->sb_type, r * ng + g);
        for (int64_t b = g * gs / 32; b < (g + 1) * gs / 32; b++) {
          int isum = 0;
          for (int i = 0; i < 32; i++) {
            int64_t e = b * 32 + i;
            int v = bits == 4 ? (w[e / 2] >> (4 * (e & 1))) & 15 : w[e];
            isum += v * q[e];
          }
          acc += (float)isum * (sc * d[b]) + bi * s[b];
        }
      }
      Y(c, j, r) = acc;
    }
  }
}
static void mm_mlx4(const pl_mm_ctx *c, int64_t r0, int64_t r1) { mm_mlx(c, r0, r1, 4); }
static void mm_mlx8(const pl_mm_ctx *c, int64_t r0, int64_t r1) { mm_mlx(c, r0, r1, 8); }

/* ---- vector helpers ----------------------------------------------------------------- */

static float s_dot(int n, const float *a, const float *b) {
  float s[4] = {0, 0, 0, 0};
  for (int i = 0; i < n; i++)
    s[i & 3] += a[i] * b[i];
  return (s[0] + s[1]) + (s[2] + s[3]);
}
static void s_mad(int n, float *y, const float *x, float s) {
  for (int i = 0; i < n; i++)
    y[i] += s * x[i];
}
static void s_scale(int n, float *y, float s) {
  for (int i = 0; i < n; i++)
    y[i] *= s;
}
static float s_max(int n, const float *x) {
  float m = -INFINITY;
  for (int i = 0; i < n; i++)
    m = x[i] > m ? x[i] : m;
  return m;
}
static void s_rmsnorm(int n, float *y, const float *x, const float *w, float eps) {
  float ss = s_dot(n, x, x);
  float r = 1.0f / sqrtf(ss / (float)n + eps);
  for (int i = 0; i < n; i++)
    y[i] = x[i] * r * w[i];
}
static void s_swiglu(int n, float *y, const float *g, const float *u) {
  for (int i = 0; i < n; i++)
    y[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
}
static float s_softmax(int n, float *x) {
  float m = s_max(n, x), sum = 0;
  for (int i = 0; i < n; i++) {
    x[i] = expf(x[i] - m);
    sum += x[i];
  }
  float inv = 1.0f / sum;
  for (int i = 0; i < n; i++)
    x[i] *= inv;
  return sum;
}

void pl_kern_fill_scalar(pl_kern_ops *o) {
  memset(o, 0, sizeof *o);
  o->mm[PL_MMT_F32] = mm_f32;
  o->mm[PL_MMT_F16] = mm_f16;
  o->mm[PL_MMT_BF16] = mm_bf16;
  o->mm[PL_MMT_Q8_0] = mm_q8_0;
  o->mm[PL_MMT_Q4_0] = mm_q4_0;
  o->mm[PL_MMT_Q4_K] = mm_q4_k;
  o->mm[PL_MMT_Q6_K] = mm_q6_k;
  o->mm[PL_MMT_MLX4] = mm_mlx4;
  o->mm[PL_MMT_MLX8] = mm_mlx8;
  for (int t = 0; t < PL_MMT_COUNT; t++)
    o->mm_rows_align[t] = 4;
  o->quant_x = pl_quant_x_scalar;
  o->dot = s_dot;
  o->mad = s_mad;
  o->scale = s_scale;
  o->max = s_max;
  o->rmsnorm = s_rmsnorm;
  o->swiglu = s_swiglu;
  o->softmax = s_softmax;
  o->attn_tile = pl_attn_tile_scalar;
}
