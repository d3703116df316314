/* Block formats: scalar dequantization of every weight type, the reference quantizers
 * (pl_quant_row) and the activation quantizer of the matmul (qx rows, see kern_impl.h).
 *
 * ggml layouts (byte-exact with ggml-common.h; all fp16 fields little-endian halves):
 *   Q8_0  {d; qs[32]}                     w = d * qs[i]
 *   Q4_0  {d; qs[16]}                     w[i] = d*((qs[i]&15)-8), w[i+16] = d*((qs[i]>>4)-8)
 *   Q4_K  {d; dmin; scales[12]; qs[128]}  8 sub-blocks of 32: w = d*sc_j*q - dmin*m_j
 *   Q6_K  {ql[128]; qh[64]; scales[16]; d} 16 sub-blocks of 16: w = d*sc_k*(q - 32)
 * MLX affine: codes packed LSB-first into little-endian uint32 words (4-bit: byte b holds
 * elements 2b (low nibble) and 2b+1), w = scale[g]*q + bias[g] per group of group_size. */
#include <math.h>
#include <string.h>

#include "backend/cpu/kern/kern_impl.h"

float pl_sb_to_f32(const void *p, pl_dtype sb_type, int64_t i) {
  switch (sb_type) {
  case PL_DT_F16: return pl_f16_to_f32(((const uint16_t *)p)[i]);
  case PL_DT_BF16: return pl_bf16_to_f32(((const uint16_t *)p)[i]);
  default: return ((const float *)p)[i];
  }
}

/* ---- dequantization ------------------------------------------------------------------- */

static void deq_q8_0(const void *row, float *y, int64_t n) {
  const pl_blk_q8_0 *b = row;
  for (int64_t i = 0; i < n / 32; i++) {
    float d = pl_f16_to_f32(b[i].d);
    for (int l = 0; l < 32; l++)
      y[i * 32 + l] = d * (float)b[i].qs[l];
  }
}

static void deq_q4_0(const void *row, float *y, int64_t n) {
  const pl_blk_q4_0 *b = row;
  for (int64_t i = 0; i < n / 32; i++) {
    float d = pl_f16_to_f32(b[i].d);
    for (int l = 0; l < 16; l++) {
      y[i * 32 + l] = d * (float)((b[i].qs[l] & 15) - 8);
      y[i * 32 + l + 16] = d * (float)((b[i].qs[l] >> 4) - 8);
    }
  }
}

static void deq_q4_k(const void *row, float *y, int64_t n) {
  const pl_blk_q4_k *b = row;
  for (int64_t i = 0; i < n / 256; i++, y += 256) {
    float d = pl_f16_to_f32(b[i].d), dmin = pl_f16_to_f32(b[i].dmin);
    for (int c = 0; c < 4; c++) { /* 64-element chunk: sub-blocks 2c (low) and 2c+1 (high) */
      int sc0, m0, sc1, m1;
      pl_q4k_scale_min(2 * c, b[i].scales, &sc0, &m0);
      pl_q4k_scale_min(2 * c + 1, b[i].scales, &sc1, &m1);
      float d0 = d * (float)sc0, mm0 = dmin * (float)m0;
      float d1 = d * (float)sc1, mm1 = dmin * (float)m1;
      const uint8_t *q = b[i].qs + 32 * c;
      for (int l = 0; l < 32; l++) {
        y[64 * c + l] = d0 * (float)(q[l] & 15) - mm0;
        y[64 * c + 32 + l] = d1 * (float)(q[l] >> 4) - mm1;
      }
    }
  }
}

/* Q6_K element e (0..255) of one block as an unsigned 6-bit code. */
static inline int q6k_code(const pl_blk_q6_k *b, int e) {
  int h = e / 128, r = e % 128, quarter = r / 32, l = r % 32;
  const uint8_t *ql = b->ql + 64 * h, *qh = b->qh + 32 * h;
  int lo = (quarter & 1) ? ql[l + 32] : ql[l];
  lo = (quarter & 2) ? lo >> 4 : lo & 15;
  int hi = (qh[l] >> (2 * quarter)) & 3;
  return lo | (hi << 4);
}

static void deq_q6_k(const void *row, float *y, int64_t n) {
  const pl_blk_q6_k *b = row;
  for (int64_t i = 0; i < n / 256; i++, y += 256) {
    float d = pl_f16_to_f32(b[i].d);
    for (int e = 0; e < 256; e++)
      y[e] = d * (float)b[i].scales[e / 16] * (float)(q6k_code(&b[i], e) - 32);
  }
}

static void deq_generic(pl_dtype t, const void *row, float *y, int64_t n) {
  switch (t) {
  case PL_DT_F32: memcpy(y, row, (size_t)n * 4); break;
  case PL_DT_F16:
    for (int64_t i = 0; i < n; i++)
      y[i] = pl_f16_to_f32(((const uint16_t *)row)[i]);
    break;
  case PL_DT_BF16:
    for (int64_t i = 0; i < n; i++)
      y[i] = pl_bf16_to_f32(((const uint16_t *)row)[i]);
    break;
  case PL_DT_Q8_0: deq_q8_0(row, y, n); break;
  case PL_DT_Q4_0: deq_q4_0(row, y, n); break;
  case PL_DT_Q4_K: deq_q4_k(row, y, n); break;
  case PL_DT_Q6_K: deq_q6_k(row, y, n); break;
  default: /* MLX types need scales: pl_dequant_row_mlx. Make misuse loud. */
    for (int64_t i = 0; i < n; i++)
      y[i] = NAN;
  }
}

void pl_dequant_row(pl_dtype t, const void *row, float *y, int64_t n) {
  int k = pl_mmt_of(t);
  const pl_kern_ops *o = pl_kern_ops_get();
  if (k >= 0 && o->dequant[k])
    o->dequant[k](row, y, n);
  else
    deq_generic(t, row, y, n);
}

void pl_dequant_row_mlx(pl_dtype t, const void *row, const void *scales, const void *biases,
                        pl_dtype sb_type, int group_size, float *y, int64_t n) {
  const uint8_t *b = row;
  for (int64_t g = 0; g < n / group_size; g++) {
    float s = pl_sb_to_f32(scales, sb_type, g), bi = pl_sb_to_f32(biases, sb_type, g);
    for (int64_t i = g * group_size; i < (g + 1) * group_size; i++) {
      int q = t == PL_DT_MLX_Q4 ? (b[i / 2] >> (4 * (i & 1))) & 15 : b[i];
      y[i] = s * (float)q + bi;
    }
  }
}

/* ---- reference quantizers --------------------------------------------------------------- */

static void quant_q8_0(const float *x, pl_blk_q8_0 *b, int64_t n) {
  for (int64_t i = 0; i < n / 32; i++, x += 32) {
    float amax = 0;
    for (int l = 0; l < 32; l++)
      amax = fmaxf(amax, fabsf(x[l]));
    float d = amax / 127.0f, id = d != 0 ? 1.0f / d : 0.0f;
    b[i].d = pl_f32_to_f16(d);
    for (int l = 0; l < 32; l++)
      b[i].qs[l] = (int8_t)roundf(x[l] * id);
  }
}

static void quant_q4_0(const float *x, pl_blk_q4_0 *b, int64_t n) {
  for (int64_t i = 0; i < n / 32; i++, x += 32) {
    float amax = 0, max = 0; /* max: the signed value of largest magnitude */
    for (int l = 0; l < 32; l++)
      if (fabsf(x[l]) > amax) {
        amax = fabsf(x[l]);
        max = x[l];
      }
    float d = max / -8.0f, id = d != 0 ? 1.0f / d : 0.0f;
    b[i].d = pl_f32_to_f16(d);
    for (int l = 0; l < 16; l++) {
      int q0 = (int)(x[l] * id + 8.5f), q1 = (int)(x[l + 16] * id + 8.5f);
      q0 = q0 < 0 ? 0 : q0 > 15 ? 15 : q0;
      q1 = q1 < 0 ? 0 : q1 > 15 ? 15 : q1;
      b[i].qs[l] = (uint8_t)(q0 | (q1 << 4));
    }
  }
}

static inline int clampi(int v, int lo, int hi) { return v < lo ? lo : v > hi ? hi : v; }

/* Fit x[i] ~= scale*L[i] - mn (L in 0..15, mn >= 0) for one 32-element sub-block: try a few
 * grid resolutions, refit (scale, mn) by least squares for each, keep the smallest error. */
static void q4k_fit_sub(const float *x, float *out_scale, float *out_min) {
  float lo = x[0], hi = x[0];
  for (int i = 1; i < 32; i++) {
    lo = fminf(lo, x[i]);
    hi = fmaxf(hi, x[i]);
  }
  if (lo > 0)
    lo = 0;
  if (hi <= lo) {
    *out_scale = 0;
    *out_min = -lo;
    return;
  }
  float best_err = INFINITY, best_s = (hi - lo) / 15, best_m = -lo;
  for (int k = -6; k <= 12; k++) {
    float iscale = (15.0f + 0.1f * (float)k) / (hi - lo);
    int L[32];
    double sl = 0, sll = 0, sx = 0, sxl = 0;
    for (int i = 0; i < 32; i++) {
      L[i] = clampi((int)nearbyintf((x[i] - lo) * iscale), 0, 15);
      sl += L[i];
      sll += (double)L[i] * L[i];
      sx += x[i];
      sxl += (double)x[i] * L[i];
    }
    /* least squares for x = s*L + b; then require b <= 0 (mn = -b >= 0) */
    double det = 32 * sll - sl * sl, s, b;
    if (det > 0) {
      s = (32 * sxl - sl * sx) / det;
      b = (sx - s * sl) / 32;
      if (b > 0) {
        b = 0;
        s = sll > 0 ? sxl / sll : 0;
      }
    } else {
      s = 1.0 / iscale;
      b = lo;
    }
    if (s < 0)
      continue;
    double err = 0;
    for (int i = 0; i < 32; i++) {
      double e = s * L[i] + b - x[i];
      err += e * e;
    }
    if (err < best_err) {
      best_err = (float)err;
      best_s = (float)s;
      best_m = (float)-b;
    }
  }
  *out_scale = best_s;
  *out_min = best_m;
}

static void quant_q4_k(const float *x, pl_blk_q4_k *b, int64_t n) {
  for (int64_t i = 0; i < n / 256; i++, x += 256) {
    float sc[8], mn[8], max_sc = 0, max_mn = 0;
    for (int j = 0; j < 8; j++) {
      q4k_fit_sub(x + 32 * j, &sc[j], &mn[j]);
      max_sc = fmaxf(max_sc, sc[j]);
      max_mn = fmaxf(max_mn, mn[j]);
    }
    float d = max_sc / 63.0f, dmin = max_mn / 63.0f;
    b[i].d = pl_f32_to_f16(d);
    b[i].dmin = pl_f32_to_f16(dmin);
    /* Re-read the rounded halves so the integer codes fit the stored super-scales. */
    float dq = pl_f16_to_f32(b[i].d), dminq = pl_f16_to_f32(b[i].dmin);
    int isc[8], imn[8];
    for (int j = 0; j < 8; j++) {
      isc[j] = dq > 0 ? clampi((int)nearbyintf(sc[j] / dq), 0, 63) : 0;
      imn[j] = dminq > 0 ? clampi((int)nearbyintf(mn[j] / dminq), 0, 63) : 0;
    }
    for (int j = 0; j < 4; j++) {
      b[i].scales[j] = (uint8_t)(isc[j] | ((isc[j + 4] >> 4) << 6));
      b[i].scales[j + 4] = (uint8_t)(imn[j] | ((imn[j + 4] >> 4) << 6));
      b[i].scales[j + 8] = (uint8_t)((isc[j + 4] & 15) | ((imn[j + 4] & 15) << 4));
    }
    uint8_t L[256];
    for (int j = 0; j < 8; j++) {
      float ds = dq * (float)isc[j], m = dminq * (float)imn[j];
      for (int l = 0; l < 32; l++)
        L[32 * j + l] = (uint8_t)(ds > 0 ? clampi((int)nearbyintf((x[32 * j + l] + m) / ds), 0, 15) : 0);
    }
    for (int c = 0; c < 4; c++)
      for (int l = 0; l < 32; l++)
        b[i].qs[32 * c + l] = (uint8_t)(L[64 * c + l] | (L[64 * c + 32 + l] << 4));
  }
}

/* Fit x[i] ~= s*L[i] (L in -32..31) for 16 elements; returns s (may be negative). */
static float q6k_fit_sub(const float *x) {
  float amax = 0, max = 0;
  for (int i = 0; i < 16; i++)
    if (fabsf(x[i]) > amax) {
      amax = fabsf(x[i]);
      max = x[i];
    }
  if (amax == 0)
    return 0;
  float best_s = max / -32.0f, best_err = INFINITY;
  for (int k = -9; k <= 9; k++) {
    float iscale = -(32.0f + 0.1f * (float)k) / max;
    double sxl = 0, sll = 0;
    int L[16];
    for (int i = 0; i < 16; i++) {
      L[i] = clampi((int)nearbyintf(x[i] * iscale), -32, 31);
      sxl += (double)x[i] * L[i];
      sll += (double)L[i] * L[i];
    }
    if (sll == 0)
      continue;
    double s = sxl / sll, err = 0;
    for (int i = 0; i < 16; i++) {
      double e = s * L[i] - x[i];
      err += e * e;
    }
    if (err < best_err) {
      best_err = (float)err;
      best_s = (float)s;
    }
  }
  return best_s;
}

static void quant_q6_k(const float *x, pl_blk_q6_k *b, int64_t n) {
  for (int64_t i = 0; i < n / 256; i++, x += 256) {
    float s[16], amax = 0, max = 0;
    for (int k = 0; k < 16; k++) {
      s[k] = q6k_fit_sub(x + 16 * k);
      if (fabsf(s[k]) > amax) {
        amax = fabsf(s[k]);
        max = s[k];
      }
    }
    float d = max / -128.0f; /* int8 scales in -128..127 with the largest at -128 */
    b[i].d = pl_f32_to_f16(d);
    float dq = pl_f16_to_f32(b[i].d);
    uint8_t L[256];
    for (int k = 0; k < 16; k++) {
      int is = dq != 0 ? clampi((int)nearbyintf(s[k] / dq), -128, 127) : 0;
      b[i].scales[k] = (int8_t)is;
      float ds = dq * (float)is;
      for (int l = 0; l < 16; l++)
        L[16 * k + l] = (uint8_t)(ds != 0 ? clampi((int)nearbyintf(x[16 * k + l] / ds), -32, 31) + 32 : 32);
    }
    for (int h = 0; h < 2; h++) {
      uint8_t *ql = b[i].ql + 64 * h, *qh = b[i].qh + 32 * h;
      const uint8_t *Lh = L + 128 * h;
      for (int l = 0; l < 32; l++) {
        ql[l] = (uint8_t)((Lh[l] & 15) | ((Lh[l + 64] & 15) << 4));
        ql[l + 32] = (uint8_t)((Lh[l + 32] & 15) | ((Lh[l + 96] & 15) << 4));
        qh[l] = (uint8_t)((Lh[l] >> 4) | ((Lh[l + 32] >> 4) << 2) | ((Lh[l + 64] >> 4) << 4) |
                          ((Lh[l + 96] >> 4) << 6));
      }
    }
  }
}

size_t pl_quant_row(pl_dtype t, const float *x, void *row, int64_t n) {
  size_t bytes = pl_dtype_row_bytes(t, n);
  if (bytes == 0 && n != 0)
    return 0;
  switch (t) {
  case PL_DT_F32: memcpy(row, x, (size_t)n * 4); break;
  case PL_DT_F16:
    for (int64_t i = 0; i < n; i++)
      ((uint16_t *)row)[i] = pl_f32_to_f16(x[i]);
    break;
  case PL_DT_BF16:
    for (int64_t i = 0; i < n; i++)
      ((uint16_t *)row)[i] = pl_f32_to_bf16(x[i]);
    break;
  case PL_DT_Q8_0: quant_q8_0(x, row, n); break;
  case PL_DT_Q4_0: quant_q4_0(x, row, n); break;
  case PL_DT_Q4_K: quant_q4_k(x, row, n); break;
  case PL_DT_Q6_K: quant_q6_k(x, row, n); break;
  default: return 0; /* MLX types: not produced here */
  }
  return bytes;
}

/* ---- activation quantization (qx rows) ------------------------------------------------ */

void pl_quant_x_scalar(const float *x, int64_t cols, int z, uint8_t *qxrow,
                       const pl_qx_layout *l) {
  int8_t *qs = (int8_t *)qxrow;
  float *d = (float *)(qxrow + l->off_d), *s = (float *)(qxrow + l->off_s);
  int32_t *zs = (int32_t *)(qxrow + l->off_zs);
  for (int64_t b = 0; b < cols / PL_QK; b++) {
    const float *xb = x + b * PL_QK;
    float amax = 0;
    for (int i = 0; i < PL_QK; i++)
      amax = fmaxf(amax, fabsf(xb[i]));
    float id = amax != 0 ? 127.0f / amax : 0.0f;
    int sum = 0;
    for (int i = 0; i < PL_QK; i++) {
      int q = (int)nearbyintf(xb[i] * id);
      q = clampi(q, -127, 127);
      qs[b * PL_QK + i] = (int8_t)q;
      sum += q;
    }
    d[b] = amax / 127.0f;
    s[b] = d[b] * (float)sum;
  }
  if (z)
    for (int64_t k = 0; k < cols / 4; k++)
      zs[k] = -z * (qs[4 * k] + qs[4 * k + 1] + qs[4 * k + 2] + qs[4 * k + 3]);
}
