/* Weight decoding shared by the CUDA kernels that read weights (cu_quant.cu: get_rows, dequant,
 * the GEMV; cu_qgemm.cu: the tensor-core GEMM): the weight view (Wv), the 32-element unit decoders
 * (Unit<T>), the per-element decoder (elem_t), the blocks-to-planes body, the GEMV's tile
 * pieces, and the host-side checks that pick between them. The bodies are __host__ __device__:
 * tests/cuda/test_cuda_decode_host.cu runs them on the CPU, without a GPU.
 * The encodings and the two decoders are described at the top of cu_quant.cu. Everything here
 * is in an anonymous namespace: each .cu file gets its own copy (templates and inline helpers).
 * Include only from .cu files. */
#ifndef PL_BACKEND_CUDA_CU_QUANT_UNIT_CUH
#define PL_BACKEND_CUDA_CU_QUANT_UNIT_CUH
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cuda/cu_quant.h"
#include "util/error.h"

namespace {


#define PLQ_HD __host__ __device__ __forceinline__

#ifdef __CUDA_ARCH__
#define PLQ_LD(p) __ldg(p)
#define PLQ_UNROLL _Pragma("unroll")
#else
#define PLQ_LD(p) (*(p))
#define PLQ_UNROLL
#endif

/* Kernel types: the pl_dtype values, plus Q8_0 and Q4_0 in planes (cu_quant.h), and Q8_0
 * planes read by the GEMV in split lanes (PLQ_Q8PS: see lane_load). */
constexpr int PLQ_Q8P = 2008, PLQ_Q4P = 2002, PLQ_Q8PS = 2108;

/* What a kernel needs of a weight (by value, in the kernel's parameter space). */
struct Wv {
  const uint8_t *data;
  const void *scales, *biases; /* MLX; planes: scales (f16 [rows][cols/32]) */
  int64_t rows, cols, row_bytes;
  int64_t ngroups; /* MLX: groups per row */
  int sb_type;     /* MLX: PL_DT_F16 / BF16 / F32 */
  int group_size;  /* MLX */
};

PLQ_HD float bits_f32(uint32_t u) {
#ifdef __CUDA_ARCH__
  return __uint_as_float(u);
#else
  float f;
  memcpy(&f, &u, 4);
  return f;
#endif
}

/* IEEE binary16 -> f32, exact (every half is a float). */
PLQ_HD float h2f(uint16_t h) {
#ifdef __CUDA_ARCH__
  return __half2float(__ushort_as_half(h));
#else
  uint32_t sign = (uint32_t)(h & 0x8000u) << 16, e = (h >> 10) & 31u, m = h & 1023u;
  if (e == 0) { /* zero / subnormal: m * 2^-24 */
    float v = (float)m * 5.9604644775390625e-8f;
    return sign ? -v : v;
  }
  if (e == 31)
    return bits_f32(sign | 0x7f800000u | (m << 13));
  return bits_f32(sign | ((e + 112u) << 23) | (m << 13));
#endif
}

PLQ_HD float bf2f(uint32_t b) { return bits_f32((b & 0xffffu) << 16); }


/* f32 -> bf16 bits, round to nearest even (NaN stays NaN). */
PLQ_HD uint16_t f2bf(float f) {
#ifdef __CUDA_ARCH__
  return __bfloat16_as_ushort(__float2bfloat16_rn(f));
#else
  uint32_t u;
  memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u)
    return (uint16_t)((u >> 16) | 0x40u);
  u += 0x7fffu + ((u >> 16) & 1u);
  return (uint16_t)(u >> 16);
#endif
}

/* 8 floats as 8 bf16 (round to nearest even) in one 16-byte word, in order */
PLQ_HD uint4 bf16x8(const float v[8]) {
  uint4 p;
  p.x = (uint32_t)f2bf(v[0]) | ((uint32_t)f2bf(v[1]) << 16);
  p.y = (uint32_t)f2bf(v[2]) | ((uint32_t)f2bf(v[3]) << 16);
  p.z = (uint32_t)f2bf(v[4]) | ((uint32_t)f2bf(v[5]) << 16);
  p.w = (uint32_t)f2bf(v[6]) | ((uint32_t)f2bf(v[7]) << 16);
  return p;
}

PLQ_HD uint16_t ld16(const uint8_t *p) { return PLQ_LD((const unsigned short *)p); }
/* Two bytes at any address (the per-element path makes no alignment assumption). */
PLQ_HD uint32_t ld16b(const uint8_t *p) {
  return (uint32_t)PLQ_LD(p) | ((uint32_t)PLQ_LD(p + 1) << 8);
}
PLQ_HD uint8_t byte_of(uint32_t w, int i) { return (uint8_t)(w >> (8 * i)); }

/* MLX scale or bias number i (pointer aligned to its element size). */
PLQ_HD float sb_get(const void *p, int sb_type, int64_t i) {
  if (sb_type == PL_DT_F32)
    return PLQ_LD((const float *)p + i);
  uint16_t h = PLQ_LD((const unsigned short *)p + i);
  return sb_type == PL_DT_F16 ? h2f(h) : bf2f(h);
}

/* ---- unit decoders: elements 32u .. 32u+31 of row r ---------------------------------------- */

template <int T> struct Unit;

template <> struct Unit<PL_DT_F32> {
  const float *p;
  PLQ_HD void load(const Wv &w, int64_t r, int64_t u) {
    p = (const float *)(w.data + r * w.row_bytes) + 32 * u;
  }
  PLQ_HD void chunk(int k, float v[8]) const {
    float4 a = PLQ_LD((const float4 *)(p + 8 * k)), b = PLQ_LD((const float4 *)(p + 8 * k + 4));
    v[0] = a.x, v[1] = a.y, v[2] = a.z, v[3] = a.w;
    v[4] = b.x, v[5] = b.y, v[6] = b.z, v[7] = b.w;
  }
};

template <int T> struct UnitHalf { /* F16 and BF16: 8 elements per 16-byte load */
  const uint16_t *p;
  PLQ_HD void load(const Wv &w, int64_t r, int64_t u) {
    p = (const uint16_t *)(w.data + r * w.row_bytes) + 32 * u;
  }
  PLQ_HD void chunk(int k, float v[8]) const {
    uint4 q = PLQ_LD((const uint4 *)(p + 8 * k));
    uint32_t wd[4] = {q.x, q.y, q.z, q.w};
PLQ_UNROLL
    for (int i = 0; i < 4; i++) {
      if (T == PL_DT_F16) {
        v[2 * i] = h2f((uint16_t)(wd[i] & 0xffffu));
        v[2 * i + 1] = h2f((uint16_t)(wd[i] >> 16));
      } else {
        v[2 * i] = bf2f(wd[i]);
        v[2 * i + 1] = bf2f(wd[i] >> 16);
      }
    }
  }
};
template <> struct Unit<PL_DT_F16> : UnitHalf<PL_DT_F16> {};
template <> struct Unit<PL_DT_BF16> : UnitHalf<PL_DT_BF16> {};

template <> struct Unit<PL_DT_Q8_0> { /* one block; qs at +2 (2-byte aligned) */
  const uint8_t *b;
  float d;
  PLQ_HD void load(const Wv &w, int64_t r, int64_t u) {
    b = w.data + r * w.row_bytes + 34 * u;
    d = h2f(ld16(b));
  }
  PLQ_HD void chunk(int k, float v[8]) const {
PLQ_UNROLL
    for (int i = 0; i < 4; i++) {
      uint32_t s = ld16(b + 2 + 8 * k + 2 * i);
      v[2 * i] = d * (float)(int8_t)(uint8_t)(s & 0xffu);
      v[2 * i + 1] = d * (float)(int8_t)(uint8_t)(s >> 8);
    }
  }
};

template <> struct Unit<PL_DT_Q4_0> { /* one block: chunks 0,1 = low nibbles, 2,3 = high */
  const uint8_t *b;
  float d;
  PLQ_HD void load(const Wv &w, int64_t r, int64_t u) {
    b = w.data + r * w.row_bytes + 18 * u;
    d = h2f(ld16(b));
  }
  PLQ_HD void chunk(int k, float v[8]) const {
    const uint8_t *q = b + 2 + 8 * (k & 1);
    int sh = (k >> 1) * 4;
PLQ_UNROLL
    for (int i = 0; i < 4; i++) {
      uint32_t s = ld16(q + 2 * i);
      v[2 * i] = d * (float)((int)((s >> sh) & 15u) - 8);
      v[2 * i + 1] = d * (float)((int)((s >> (8 + sh)) & 15u) - 8);
    }
  }
};

/* Planes: the unit's codes in one or two aligned 16-byte loads, its scale in one 2-byte load. */
PLQ_HD float plane_scale(const Wv &w, int64_t r, int64_t u) {
  return h2f(PLQ_LD((const unsigned short *)w.scales + r * (w.cols >> 5) + u));
}

template <> struct Unit<PLQ_Q8P> {
  uint4 c[2];
  float d;
  PLQ_HD void load(const Wv &w, int64_t r, int64_t u) {
    const uint4 *q = (const uint4 *)(w.data + r * w.row_bytes + 32 * u);
    c[0] = PLQ_LD(q);
    c[1] = PLQ_LD(q + 1);
    d = plane_scale(w, r, u);
  }
  PLQ_HD void chunk(int k, float v[8]) const {
    const uint4 &q = c[k >> 1];
    uint32_t lo = (k & 1) ? q.z : q.x, hi = (k & 1) ? q.w : q.y;
PLQ_UNROLL
    for (int i = 0; i < 8; i++)
      v[i] = d * (float)(int8_t)byte_of(i < 4 ? lo : hi, i & 3);
  }
};

/* Two half units of Q8_0 planes (GEMV only): codes 16 bytes each, chunks 0,1 from c[0] scaled
 * by d[0], chunks 2,3 from c[1] by d[1]. A half past the last column is zero (d = 0). */
template <> struct Unit<PLQ_Q8PS> {
  uint4 c[2];
  float d[2];
  PLQ_HD void load_halves(const Wv &w, int64_t r, int64_t ua, int64_t ub, int half) {
    const uint8_t *row = w.data + r * w.row_bytes + 16 * half;
    c[0] = PLQ_LD((const uint4 *)(row + 32 * ua));
    d[0] = plane_scale(w, r, ua);
    c[1] = make_uint4(0, 0, 0, 0);
    d[1] = 0.f;
    if (ub * 32 < w.cols) {
      c[1] = PLQ_LD((const uint4 *)(row + 32 * ub));
      d[1] = plane_scale(w, r, ub);
    }
  }
  PLQ_HD void chunk(int k, float v[8]) const {
    const uint4 &q = c[k >> 1];
    const float s = d[k >> 1];
    uint32_t lo = (k & 1) ? q.z : q.x, hi = (k & 1) ? q.w : q.y;
PLQ_UNROLL
    for (int i = 0; i < 8; i++)
      v[i] = s * (float)(int8_t)byte_of(i < 4 ? lo : hi, i & 3);
  }
};

template <> struct Unit<PLQ_Q4P> { /* chunks 0,1 = low nibbles of bytes 0-7, 8-15; 2,3 = high */
  uint4 c;
  float d;
  PLQ_HD void load(const Wv &w, int64_t r, int64_t u) {
    c = PLQ_LD((const uint4 *)(w.data + r * w.row_bytes + 16 * u));
    d = plane_scale(w, r, u);
  }
  PLQ_HD void chunk(int k, float v[8]) const {
    uint32_t lo = (k & 1) ? c.z : c.x, hi = (k & 1) ? c.w : c.y;
    int sh = (k >> 1) * 4;
PLQ_UNROLL
    for (int i = 0; i < 8; i++)
      v[i] = d * (float)((int)((byte_of(i < 4 ? lo : hi, i & 3) >> sh) & 15u) - 8);
  }
};

template <> struct Unit<PL_DT_Q4_K> { /* sub-block j = u % 8 of super-block u / 8 */
  uint4 c[2]; /* the 32 code bytes (two sub-blocks' nibbles): loaded with the header */
  int sh;
  float d1, m1;
  PLQ_HD void load(const Wv &w, int64_t r, int64_t u) {
    const uint8_t *b = w.data + r * w.row_bytes + 144 * (u >> 3);
    int j = (int)(u & 7);
    uint4 h = PLQ_LD((const uint4 *)b); /* d | dmin << 16, scales[0..3], [4..7], [8..11] */
    float d = h2f((uint16_t)(h.x & 0xffffu)), dmin = h2f((uint16_t)(h.x >> 16));
    uint32_t s[3] = {h.y, h.z, h.w};
    int sc, m;
    if (j < 4) {
      sc = byte_of(s[0], j) & 63;
      m = byte_of(s[1], j) & 63;
    } else { /* low 4 bits in scales[j+4], high 2 in the top bits of scales[j-4] / [j] */
      sc = (byte_of(s[2], j - 4) & 15) | ((byte_of(s[0], j - 4) >> 6) << 4);
      m = (byte_of(s[2], j - 4) >> 4) | ((byte_of(s[1], j - 4) >> 6) << 4);
    }
    d1 = d * (float)sc;
    m1 = dmin * (float)m;
    const uint4 *q = (const uint4 *)(b + 16 + 32 * (j >> 1));
    c[0] = PLQ_LD(q);
    c[1] = PLQ_LD(q + 1);
    sh = (j & 1) * 4;
  }
  PLQ_HD void chunk(int k, float v[8]) const {
    uint32_t lo = (k & 1) ? c[k >> 1].z : c[k >> 1].x, hi = (k & 1) ? c[k >> 1].w : c[k >> 1].y;
PLQ_UNROLL
    for (int i = 0; i < 8; i++) {
      uint32_t byte = byte_of(i < 4 ? lo : hi, i & 3);
      v[i] = d1 * (float)((byte >> sh) & 15u) - m1;
    }
  }
};

template <> struct Unit<PL_DT_Q6_K> {
  /* Unit ub = u % 8 of super-block u / 8 is elements 32ub.. of the block: half h = ub / 4,
   * quarter qr = ub % 4. Element l: low 4 bits in ql[64h + 32(qr&1) + l] (high nibble when
   * qr & 2), high 2 bits at qh[32h + l] >> 2qr, scale sc[8h + 2qr + l/16]. */
  const uint8_t *ql, *qh;
  int lsh, hsh;
  float ds0, ds1;
  PLQ_HD void load(const Wv &w, int64_t r, int64_t u) {
    const uint8_t *b = w.data + r * w.row_bytes + 210 * (u >> 3);
    int ub = (int)(u & 7), h = ub >> 2, qr = ub & 3;
    float d = h2f(ld16(b + 208));
    uint32_t s2 = ld16(b + 192 + 8 * h + 2 * qr);
    ds0 = d * (float)(int8_t)(uint8_t)(s2 & 0xffu);
    ds1 = d * (float)(int8_t)(uint8_t)(s2 >> 8);
    ql = b + 64 * h + 32 * (qr & 1);
    qh = b + 128 + 32 * h;
    lsh = (qr & 2) ? 4 : 0;
    hsh = 2 * qr;
  }
  PLQ_HD void chunk(int k, float v[8]) const {
    float ds = k < 2 ? ds0 : ds1;
PLQ_UNROLL
    for (int i = 0; i < 4; i++) {
      uint32_t lo = ld16(ql + 8 * k + 2 * i), hi = ld16(qh + 8 * k + 2 * i);
PLQ_UNROLL
      for (int e = 0; e < 2; e++) {
        int code = (int)(((lo >> (8 * e + lsh)) & 15u) | (((hi >> (8 * e + hsh)) & 3u) << 4));
        v[2 * i + e] = ds * (float)(code - 32);
      }
    }
  }
};

template <> struct Unit<PL_DT_MLX_Q4> { /* 16 bytes = 4 words of 8 codes; one group */
  uint4 c;
  float s, bi;
  PLQ_HD void load(const Wv &w, int64_t r, int64_t u) {
    c = PLQ_LD((const uint4 *)(w.data + r * w.row_bytes + 16 * u));
    int64_t g = r * w.ngroups + (32 * u) / w.group_size;
    s = sb_get(w.scales, w.sb_type, g);
    bi = sb_get(w.biases, w.sb_type, g);
  }
  PLQ_HD void chunk(int k, float v[8]) const {
    uint32_t wd = k == 0 ? c.x : k == 1 ? c.y : k == 2 ? c.z : c.w;
PLQ_UNROLL
    for (int i = 0; i < 8; i++)
      v[i] = s * (float)((wd >> (4 * i)) & 15u) + bi;
  }
};

template <> struct Unit<PL_DT_MLX_Q8> {
  const uint8_t *p;
  float s, bi;
  PLQ_HD void load(const Wv &w, int64_t r, int64_t u) {
    p = w.data + r * w.row_bytes + 32 * u;
    int64_t g = r * w.ngroups + (32 * u) / w.group_size;
    s = sb_get(w.scales, w.sb_type, g);
    bi = sb_get(w.biases, w.sb_type, g);
  }
  PLQ_HD void chunk(int k, float v[8]) const {
    uint2 q = PLQ_LD((const uint2 *)(p + 8 * k));
PLQ_UNROLL
    for (int i = 0; i < 8; i++)
      v[i] = s * (float)byte_of(i < 4 ? q.x : q.y, i & 3) + bi;
  }
};

/* ---- per-element decoder (any shape, any alignment; byte loads only) ------------------------ */

template <int T> PLQ_HD float elem_t(const Wv &w, int64_t r, int64_t c) {
  const uint8_t *row = w.data + r * w.row_bytes;
  if (T == PL_DT_F32) {
    const uint8_t *p = row + 4 * c;
    return bits_f32(ld16b(p) | (ld16b(p + 2) << 16));
  }
  if (T == PL_DT_F16)
    return h2f((uint16_t)ld16b(row + 2 * c));
  if (T == PL_DT_BF16)
    return bf2f(ld16b(row + 2 * c));
  if (T == PL_DT_Q8_0) {
    const uint8_t *b = row + 34 * (c >> 5);
    return h2f((uint16_t)ld16b(b)) * (float)(int8_t)PLQ_LD(b + 2 + (c & 31));
  }
  if (T == PL_DT_Q4_0) {
    const uint8_t *b = row + 18 * (c >> 5);
    int i = (int)(c & 31);
    int q = i < 16 ? (PLQ_LD(b + 2 + i) & 15) : (PLQ_LD(b + 2 + i - 16) >> 4);
    return h2f((uint16_t)ld16b(b)) * (float)(q - 8);
  }
  if (T == PLQ_Q8P || T == PLQ_Q8PS)
    return plane_scale(w, r, c >> 5) * (float)(int8_t)PLQ_LD(row + c);
  if (T == PLQ_Q4P) {
    int i = (int)(c & 31), b = PLQ_LD(row + 16 * (c >> 5) + (i & 15));
    return plane_scale(w, r, c >> 5) * (float)((i < 16 ? b & 15 : b >> 4) - 8);
  }
  if (T == PL_DT_Q4_K) {
    const uint8_t *b = row + 144 * (c >> 8), *s = b + 4;
    int e = (int)(c & 255), j = e >> 5, l = e & 31, sc, m;
    if (j < 4) {
      sc = PLQ_LD(s + j) & 63;
      m = PLQ_LD(s + j + 4) & 63;
    } else {
      sc = (PLQ_LD(s + j + 4) & 15) | ((PLQ_LD(s + j - 4) >> 6) << 4);
      m = (PLQ_LD(s + j + 4) >> 4) | ((PLQ_LD(s + j) >> 6) << 4);
    }
    float d = h2f((uint16_t)ld16b(b)), dmin = h2f((uint16_t)ld16b(b + 2));
    int q = (PLQ_LD(b + 16 + 32 * (j >> 1) + l) >> (4 * (j & 1))) & 15;
    return (d * (float)sc) * (float)q - dmin * (float)m;
  }
  if (T == PL_DT_Q6_K) {
    const uint8_t *b = row + 210 * (c >> 8);
    int e = (int)(c & 255), h = e >> 7, qr = (e & 127) >> 5, l = e & 31;
    int lo = PLQ_LD(b + 64 * h + 32 * (qr & 1) + l);
    lo = (qr & 2) ? lo >> 4 : lo & 15;
    int hi = (PLQ_LD(b + 128 + 32 * h + l) >> (2 * qr)) & 3;
    float d = h2f((uint16_t)ld16b(b + 208));
    return d * (float)(int8_t)PLQ_LD(b + 192 + (e >> 4)) * (float)((lo | (hi << 4)) - 32);
  }
  /* MLX */
  int q = T == PL_DT_MLX_Q4 ? (PLQ_LD(row + (c >> 1)) >> (4 * (c & 1))) & 15 : PLQ_LD(row + c);
  int64_t g = r * w.ngroups + c / w.group_size;
  return sb_get(w.scales, w.sb_type, g) * (float)q + sb_get(w.biases, w.sb_type, g);
}

/* Planes from blocks: one body per block, idx = r * (cols/32) + u. */
template <int T>
PLQ_HD void to_planes_block(const Wv &w, uint8_t *codes, uint16_t *scales, int64_t idx) {
  const int bb = T == PL_DT_Q8_0 ? 34 : 18, nq = bb - 2;
  int64_t upr = w.cols >> 5, r = idx / upr, u = idx - r * upr;
  const uint8_t *b = w.data + r * w.row_bytes + bb * u;
  scales[idx] = (uint16_t)ld16b(b); /* byte loads: any source alignment (runs once, at upload) */
  uint32_t q[8];
PLQ_UNROLL
  for (int i = 0; i < 8; i++)
    q[i] = i < nq / 4 ? ld16b(b + 2 + 4 * i) | (ld16b(b + 4 + 4 * i) << 16) : 0u;
  uint4 *o = (uint4 *)(codes + idx * nq);
  o[0] = make_uint4(q[0], q[1], q[2], q[3]);
  if (nq == 32)
    o[1] = make_uint4(q[4], q[5], q[6], q[7]);
}

/* ---- qgemv pieces (host-callable, so the tile logic can be emulated without a GPU) ---------- */

constexpr int GEMV_WARPS = 4; /* a warp owns RPW rows (1, 2 or 4: see launch_gemv) */
constexpr int TILE = 1024, XPAD = 36; /* x tile: [NX][32 units][XPAD] floats */

/* Copy columns t0 .. t0+TILE of x (zero past cols) into xs; thread tid of nth.
 * Needs cols % 4 == 0 and x 16-byte aligned. */
template <int NX>
PLQ_HD void load_x_tile(float *xs, const float *x, int64_t cols, int64_t t0, int tid, int nth) {
  for (int f = tid; f < NX * (TILE / 4); f += nth) {
    int j = f / (TILE / 4), e = (f % (TILE / 4)) * 4;
    int64_t c = t0 + e;
    float4 v = make_float4(0.f, 0.f, 0.f, 0.f);
    if (c < cols)
      v = PLQ_LD((const float4 *)(x + j * cols + c));
    *(float4 *)(xs + j * 32 * XPAD + (e >> 5) * XPAD + (e & 31)) = v;
  }
}

/* Lane `lane` of the warp owning rows row0 .. row0+RPW-1: load unit (t0/32 + lane) of each row
 * (the headers, and the codes for the types that hold them in registers). Rows past the end
 * read the last row (results are dropped). False past the last column.
 * Split lanes (PLQ_Q8PS): a Q8_0 unit's 32 code bytes are two 16-byte loads, and with a unit
 * per lane each load instruction of the warp touched 32 sectors at half use (ncu: 43%
 * excessive sectors, BENCHMARKS 13h). There lane l takes columns 16l..16l+15 and
 * 512+16l..512+16l+15 of the tile instead (halves l % 2 of units l / 2 and 16 + l / 2), so
 * each load instruction reads 512 contiguous bytes. */
template <int T, int RPW>
PLQ_HD bool lane_load(const Wv &w, int64_t row0, int lane, int64_t t0, Unit<T> (&un)[RPW]) {
  int64_t u = (t0 >> 5) + (T == PLQ_Q8PS ? lane >> 1 : lane);
  if (u * 32 >= w.cols)
    return false;
PLQ_UNROLL
  for (int rr = 0; rr < RPW; rr++) {
    int64_t r = row0 + rr < w.rows ? row0 + rr : w.rows - 1;
    if constexpr (T == PLQ_Q8PS)
      un[rr].load_halves(w, r, u, u + 16, lane & 1);
    else
      un[rr].load(w, r, u);
  }
  return true;
}

/* Where chunk k (8 columns) of a lane's unit sits in the x tile (floats from xs). */
template <int T> PLQ_HD int lane_xoff(int lane, int k) {
  if (T == PLQ_Q8PS)
    return ((k >> 1) * 16 + (lane >> 1)) * XPAD + (lane & 1) * 16 + 8 * (k & 1);
  return lane * XPAD + 8 * k;
}

/* The loaded units times the lane's part of the x tile, added to acc. */
template <int T, int NX, int RPW>
PLQ_HD void lane_fma(const Unit<T> (&un)[RPW], int lane, const float *xs, float (&acc)[RPW][NX]) {
PLQ_UNROLL
  for (int k = 0; k < 4; k++) {
    const float *xk = xs + lane_xoff<T>(lane, k);
    float wv[RPW][8];
PLQ_UNROLL
    for (int rr = 0; rr < RPW; rr++)
      un[rr].chunk(k, wv[rr]);
PLQ_UNROLL
    for (int j = 0; j < NX; j++) {
      float4 a = *(const float4 *)(xk + j * 32 * XPAD);
      float4 b = *(const float4 *)(xk + j * 32 * XPAD + 4);
PLQ_UNROLL
      for (int rr = 0; rr < RPW; rr++) {
        float s = acc[rr][j];
        s += wv[rr][0] * a.x;
        s += wv[rr][1] * a.y;
        s += wv[rr][2] * a.z;
        s += wv[rr][3] * a.w;
        s += wv[rr][4] * b.x;
        s += wv[rr][5] * b.y;
        s += wv[rr][6] * b.z;
        s += wv[rr][7] * b.w;
        acc[rr][j] = s;
      }
    }
  }
}

/* The GEMV of one lane over every column tile of its RPW rows, into acc. stage(t0) must leave
 * tile t0 of x in xs for every lane (the kernel: barrier, copy, barrier; the host test: copy).
 * (Loading the next tile's units before staging this tile's x was measured slower on an H100:
 * the doubled unit registers cost more occupancy than the overlap gained; BENCHMARKS 13g.) */
template <int T, int NX, int RPW, typename Stage>
PLQ_HD void lane_gemv(const Wv &w, int64_t row0, int lane, const float *xs, Stage stage,
                      float (&acc)[RPW][NX]) {
  for (int64_t t0 = 0; t0 < w.cols; t0 += TILE) {
    stage(t0);
    Unit<T> un[RPW];
    if (lane_load<T, RPW>(w, row0, lane, t0, un))
      lane_fma<T, NX, RPW>(un, lane, xs, acc);
  }
}

/* ---- host side -------------------------------------------------------------------------------- */

/* The kernel type of a weight: its dtype, or the planar variant of Q8_0/Q4_0. */
inline int kernel_type(const pl_cu_weight *w) {
  if (w->scales && w->type == PL_DT_Q8_0)
    return PLQ_Q8P;
  if (w->scales && w->type == PL_DT_Q4_0)
    return PLQ_Q4P;
  return w->type;
}

/* Validate w and fill the kernel view. Returns 0 or a PL_E* status with a message. */
inline int make_view(const pl_cu_weight *w, const char *op, Wv *v) {
  if (!w || !w->data || w->rows < 0 || w->cols < 1)
    return pl_fail(PL_EINVAL, "%s: no weight data or bad shape", op);
  int64_t c = w->cols, rb;
  switch (kernel_type(w)) {
  case PLQ_Q8P: rb = c % 32 ? -1 : c; break;
  case PLQ_Q4P: rb = c % 32 ? -1 : c / 2; break;
  case PL_DT_F32: rb = 4 * c; break;
  case PL_DT_F16: case PL_DT_BF16: rb = 2 * c; break;
  case PL_DT_Q8_0: rb = c % 32 ? -1 : c / 32 * 34; break;
  case PL_DT_Q4_0: rb = c % 32 ? -1 : c / 32 * 18; break;
  case PL_DT_Q4_K: rb = c % 256 ? -1 : c / 256 * 144; break;
  case PL_DT_Q6_K: rb = c % 256 ? -1 : c / 256 * 210; break;
  case PL_DT_MLX_Q4: rb = c % 8 ? -1 : c / 2; break;
  case PL_DT_MLX_Q8: rb = c % 4 ? -1 : c; break;
  default:
    return pl_fail(PL_EUNSUPPORTED, "%s: weight type %d has no CUDA kernel", op, (int)w->type);
  }
  if (rb < 0)
    return pl_fail(PL_EINVAL, "%s: %s row of %lld elements is not a whole number of blocks", op,
                   pl_dtype_name((pl_dtype)w->type), (long long)c);
  memset(v, 0, sizeof *v);
  v->data = (const uint8_t *)w->data;
  v->rows = w->rows;
  v->cols = c;
  v->row_bytes = rb;
  if (kernel_type(w) != w->type) { /* planes */
    if ((uintptr_t)w->scales % 2)
      return pl_fail(PL_EINVAL, "%s: plane scales not 2-byte aligned", op);
    v->scales = w->scales;
  }
  if (w->type == PL_DT_MLX_Q4 || w->type == PL_DT_MLX_Q8) {
    if (w->group_size < 1 || c % w->group_size)
      return pl_fail(PL_EINVAL, "%s: MLX group size %d does not divide %lld columns", op,
                     w->group_size, (long long)c);
    if (w->sb_type != PL_DT_F16 && w->sb_type != PL_DT_BF16 && w->sb_type != PL_DT_F32)
      return pl_fail(PL_EUNSUPPORTED, "%s: MLX scales of type %d (F16, BF16 or F32 only)", op,
                     (int)w->sb_type);
    if (!w->scales || !w->biases)
      return pl_fail(PL_EINVAL, "%s: MLX weight without scales/biases", op);
    size_t sz = w->sb_type == PL_DT_F32 ? 4 : 2;
    if ((uintptr_t)w->scales % sz || (uintptr_t)w->biases % sz)
      return pl_fail(PL_EINVAL, "%s: MLX scales/biases not aligned to their element size", op);
    v->scales = w->scales;
    v->biases = w->biases;
    v->ngroups = c / w->group_size;
    v->sb_type = (int)w->sb_type;
    v->group_size = w->group_size;
  }
  return 0;
}

/* Whether the unit decoders may run: whole 32-element units, MLX groups of whole units, and
 * the 16-byte alignment their vector loads need (rows keep it: every row length in bytes is a
 * multiple of 16 once cols % 32 == 0, except Q8_0/Q4_0/Q6_K, which use 2-byte loads). */
inline bool unit_ok(const Wv &v, int type, const void *other, int other_align) {
  if (v.cols % 32 || (uintptr_t)v.data % 16 || (other && (uintptr_t)other % other_align))
    return false;
  if ((type == PL_DT_MLX_Q4 || type == PL_DT_MLX_Q8) && v.group_size % 32)
    return false;
  return true;
}

inline int launch_status(const char *op, int type) {
  cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess)
    return pl_fail(PL_EDEVICE, "%s (%s): kernel launch failed: %s", op, pl_dtype_name((pl_dtype)type),
                   cudaGetErrorString(e));
  return 0;
}

/* Multiprocessors of the current device (0 if it cannot be asked); asked once per process. */
inline int sm_count() {
  static int sms = -1;
  if (sms < 0) {
    int dev = 0, n = 0;
    if (cudaGetDevice(&dev) != cudaSuccess ||
        cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess) {
      cudaGetLastError();
      n = 0;
    }
    sms = n;
  }
  return sms;
}

inline unsigned grid_for(int64_t total, int block) {
  int64_t g = (total + block - 1) / block;
  return (unsigned)(g < 1 ? 1 : g > 65536 ? 65536 : g);
}

#define PLQ_TYPES(X)                                                                          \
  X(PL_DT_F32) X(PL_DT_F16) X(PL_DT_BF16) X(PL_DT_Q8_0) X(PL_DT_Q4_0) X(PL_DT_Q4_K)          \
  X(PL_DT_Q6_K) X(PL_DT_MLX_Q4) X(PL_DT_MLX_Q8) X(PLQ_Q8P) X(PLQ_Q4P)

} // namespace
#endif
