/* Weight decoding kernels (see cu_quant.h). Encodings are byte-exact with the CPU backend
 * (backend/cpu/kern/kern_quant.c):
 *   Q8_0  {f16 d; i8 qs[32]}               34 B / 32   w = d * qs[i]
 *   Q4_0  {f16 d; u8 qs[16]}               18 B / 32   w[i] = d*((qs[i]&15)-8), w[i+16] = d*((qs[i]>>4)-8)
 *   Q4_K  {f16 d, dmin; u8 sc[12]; qs[128]} 144 B / 256: 8 sub-blocks of 32, w = d*sc_j*q - dmin*m_j
 *   Q6_K  {ql[128]; qh[64]; i8 sc[16]; f16 d} 210 B / 256: w = d*sc_k*(q - 32)
 *   MLX   codes LSB-first in little-endian words (4-bit: byte b = elements 2b | 2b+1 << 4),
 *         w = scale[g]*q + bias[g], scales/biases [rows][cols/group_size].
 *
 * Structure. Every type has a "unit" decoder (struct Unit<T>): 32 consecutive elements of one row
 * (a Q8_0/Q4_0 block, a Q4_K sub-block, two Q6_K scale groups, an MLX group slice), decoded
 * 8 at a time (chunk k = elements 8k..8k+7) after a header load (scales). All three entry points
 * use it when the shape allows (cols % 32 == 0, MLX group_size % 32 == 0, 16-byte aligned
 * pointers); anything else goes to a per-element decoder (elem()) that only reads bytes, so odd
 * shapes and misaligned views stay correct, only slower. Both decoders are __host__ __device__ so
 * they can be checked against pl_dequant_row on a machine without a GPU.
 *
 * Q8_0 and Q4_0 also come in planes (cu_quant.h; the backend keeps them so): codes and f16
 * scales apart, so a unit is one or two aligned 16-byte loads plus a 2-byte scale. Their blocks
 * (34/18 B) are only 2-byte aligned and allow only 2-byte loads.
 *
 * qgemv (the decode path; memory-bound). A CTA of 4 warps owns 4 x RPW output rows (RPW rows
 * per warp) and walks the columns in tiles of 1024: the tile of x (n rows, f32) goes to shared
 * memory once per CTA (padded 36 floats per 32 so the float4 reads below are bank-conflict
 * free), then lane l of every warp decodes unit l of the tile for its RPW rows in registers and
 * multiplies it with the n x rows, so each x value read from shared memory serves RPW weight
 * rows. Each weight byte is read once from DRAM; a warp-shuffle tree sums the 32 lanes at the
 * end. RPW is 4 for n >= 3 (shared-memory reads: n x 4 bytes of x per weight element / RPW),
 * and for n <= 2 it drops to n where 16-row CTAs would not give each SM 4 of them: a weight of
 * few rows (k/v: 1024) then still has enough loads in flight to reach the DRAM roofline.
 * Loads: 16 B for F32/F16/BF16/MLX and the planes, 16 B header + 8 B per chunk for Q4_K; Q8_0,
 * Q4_0 blocks and Q6_K use 2-byte loads (coalesced across the warp through L1, but more load
 * instructions per byte: L1 wavefronts, not DRAM, limit them).
 * Shared memory: each x float read serves RPW rows, so n x rows cost 4n/RPW bytes of
 * shared-memory reads per weight element: at n = 8 with 4-bit weights (0.56 B per element) that
 * is ~14x the DRAM traffic, and the kernel becomes shared-memory bound at roughly half the DRAM
 * roofline. The kernel bodies are __host__ __device__ too, so the tile logic can be emulated. */
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

/* Kernel types: the pl_dtype values, plus Q8_0 and Q4_0 in planes (cu_quant.h). */
constexpr int PLQ_Q8P = 2008, PLQ_Q4P = 2002;

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
  const uint8_t *q;
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
    q = b + 16 + 32 * (j >> 1);
    sh = (j & 1) * 4;
  }
  PLQ_HD void chunk(int k, float v[8]) const {
    uint2 qq = PLQ_LD((const uint2 *)(q + 8 * k));
PLQ_UNROLL
    for (int i = 0; i < 8; i++) {
      uint32_t byte = byte_of(i < 4 ? qq.x : qq.y, i & 3);
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
  if (T == PLQ_Q8P)
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

/* Lane `lane` of the warp owning rows row0 .. row0+RPW-1: unit (t0/32 + lane) of each row
 * times the x tile, added to acc. Rows past the end read the last row (results are dropped). */
template <int T, int NX, int RPW>
PLQ_HD void lane_tile(const Wv &w, int64_t row0, int lane, const float *xs, int64_t t0,
                      float acc[RPW][NX]) {
  int64_t u = (t0 >> 5) + lane;
  if (u * 32 >= w.cols)
    return;
  Unit<T> un[RPW];
PLQ_UNROLL
  for (int rr = 0; rr < RPW; rr++)
    un[rr].load(w, row0 + rr < w.rows ? row0 + rr : w.rows - 1, u);
  const float *xl = xs + lane * XPAD;
PLQ_UNROLL
  for (int k = 0; k < 4; k++) {
    float wv[RPW][8];
PLQ_UNROLL
    for (int rr = 0; rr < RPW; rr++)
      un[rr].chunk(k, wv[rr]);
PLQ_UNROLL
    for (int j = 0; j < NX; j++) {
      float4 a = *(const float4 *)(xl + j * 32 * XPAD + 8 * k);
      float4 b = *(const float4 *)(xl + j * 32 * XPAD + 8 * k + 4);
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

/* ---- kernels --------------------------------------------------------------------------------- */

template <int T, int NX, int RPW>
__global__ void __launch_bounds__(GEMV_WARPS * 32)
    k_qgemv(Wv w, const float *__restrict__ x, float *__restrict__ y) {
  __shared__ __align__(16) float xs[NX * 32 * XPAD];
  int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  int64_t row0 = ((int64_t)blockIdx.x * GEMV_WARPS + warp) * RPW;
  float acc[RPW][NX];
PLQ_UNROLL
  for (int rr = 0; rr < RPW; rr++)
PLQ_UNROLL
    for (int j = 0; j < NX; j++)
      acc[rr][j] = 0.0f;
  for (int64_t t0 = 0; t0 < w.cols; t0 += TILE) {
    __syncthreads(); /* the previous tile is consumed */
    load_x_tile<NX>(xs, x, w.cols, t0, threadIdx.x, blockDim.x);
    __syncthreads();
    lane_tile<T, NX, RPW>(w, row0, lane, xs, t0, acc);
  }
PLQ_UNROLL
  for (int rr = 0; rr < RPW; rr++)
PLQ_UNROLL
    for (int j = 0; j < NX; j++) {
      float v = acc[rr][j];
PLQ_UNROLL
      for (int off = 16; off > 0; off >>= 1)
        v += __shfl_xor_sync(0xffffffffu, v, off);
      acc[rr][j] = v;
    }
  /* lane rr*NX + j writes (rr, j): spreads the stores over lanes (RPW * NX <= 32) */
PLQ_UNROLL
  for (int rr = 0; rr < RPW; rr++)
PLQ_UNROLL
    for (int j = 0; j < NX; j++)
      if (lane == rr * NX + j && row0 + rr < w.rows)
        y[j * w.rows + row0 + rr] = acc[rr][j];
}

/* Any shape: a warp per row, lanes stride over the columns, element decoder. Lane `lane`'s
 * partial sums of row r (the kernel adds the 32 lanes). */
template <int T>
PLQ_HD void elem_lane(const Wv &w, const float *x, int n, int64_t r, int lane,
                      float acc[PL_CU_GEMV_MAX_N]) {
  for (int64_t c = lane; c < w.cols; c += 32) {
    float wv = elem_t<T>(w, r, c);
PLQ_UNROLL
    for (int j = 0; j < PL_CU_GEMV_MAX_N; j++)
      if (j < n)
        acc[j] += wv * x[j * w.cols + c];
  }
}

template <int T>
__global__ void k_qgemv_elem(Wv w, const float *__restrict__ x, int n, float *__restrict__ y) {
  int lane = threadIdx.x & 31;
  int64_t r = (int64_t)blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
  if (r >= w.rows) /* uniform per warp: whole warps leave */
    return;
  float acc[PL_CU_GEMV_MAX_N] = {0};
  elem_lane<T>(w, x, n, r, lane, acc);
PLQ_UNROLL
  for (int j = 0; j < PL_CU_GEMV_MAX_N; j++) {
    float v = acc[j];
PLQ_UNROLL
    for (int off = 16; off > 0; off >>= 1)
      v += __shfl_xor_sync(0xffffffffu, v, off);
    if (lane == 0 && j < n)
      y[j * w.rows + r] = v;
  }
}

/* The grid-stride kernels below run one body per index; the bodies are host-callable too. */

/* out[i][cols] = row ids[i]; one body per (i, unit u), idx = i * (cols/32) + u. An id outside
 * [0, rows) gives a NaN row (a kernel cannot return an error; NaN makes the misuse visible
 * instead of reading out of bounds). */
template <int T>
PLQ_HD void get_rows_unit(const Wv &w, const int32_t *ids, float *out, int64_t idx) {
  int64_t upr = w.cols >> 5, i = idx / upr, u = idx - i * upr;
  int32_t id = PLQ_LD(ids + i);
  float *o = out + i * w.cols + 32 * u;
  if (id < 0 || id >= w.rows) {
    for (int e = 0; e < 32; e++)
      o[e] = bits_f32(0x7fc00000u);
    return;
  }
  Unit<T> un;
  un.load(w, id, u);
PLQ_UNROLL
  for (int k = 0; k < 4; k++) {
    float v[8];
    un.chunk(k, v);
    *(float4 *)(o + 8 * k) = make_float4(v[0], v[1], v[2], v[3]);
    *(float4 *)(o + 8 * k + 4) = make_float4(v[4], v[5], v[6], v[7]);
  }
}

/* idx = i * cols + c */
template <int T>
PLQ_HD void get_rows_elem(const Wv &w, const int32_t *ids, float *out, int64_t idx) {
  int64_t i = idx / w.cols, c = idx - i * w.cols;
  int32_t id = PLQ_LD(ids + i);
  out[idx] = id < 0 || id >= w.rows ? bits_f32(0x7fc00000u) : elem_t<T>(w, id, c);
}

/* out[r - row0][cols] as bf16 (round to nearest even); idx = (r - row0) * (cols/32) + u. */
template <int T>
PLQ_HD void dequant_unit(const Wv &w, int64_t row0, uint16_t *out, int64_t idx) {
  int64_t upr = w.cols >> 5, i = idx / upr, u = idx - i * upr;
  Unit<T> un;
  un.load(w, row0 + i, u);
  uint16_t *o = out + i * w.cols + 32 * u;
PLQ_UNROLL
  for (int k = 0; k < 4; k++) {
    float v[8];
    un.chunk(k, v);
    uint4 p;
    p.x = (uint32_t)f2bf(v[0]) | ((uint32_t)f2bf(v[1]) << 16);
    p.y = (uint32_t)f2bf(v[2]) | ((uint32_t)f2bf(v[3]) << 16);
    p.z = (uint32_t)f2bf(v[4]) | ((uint32_t)f2bf(v[5]) << 16);
    p.w = (uint32_t)f2bf(v[6]) | ((uint32_t)f2bf(v[7]) << 16);
    *(uint4 *)(o + 8 * k) = p;
  }
}

/* idx = (r - row0) * cols + c */
template <int T>
PLQ_HD void dequant_elem(const Wv &w, int64_t row0, uint16_t *out, int64_t idx) {
  int64_t i = idx / w.cols, c = idx - i * w.cols;
  out[idx] = f2bf(elem_t<T>(w, row0 + i, c));
}

#define PLQ_GRID_STRIDE(idx, total)                                                            \
  for (int64_t idx = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; idx < (total);            \
       idx += (int64_t)gridDim.x * blockDim.x)

template <int T>
__global__ void k_get_rows(Wv w, const int32_t *__restrict__ ids, int64_t total,
                           float *__restrict__ out) {
  PLQ_GRID_STRIDE(idx, total) get_rows_unit<T>(w, ids, out, idx);
}
template <int T>
__global__ void k_get_rows_elem(Wv w, const int32_t *__restrict__ ids, int64_t total,
                                float *__restrict__ out) {
  PLQ_GRID_STRIDE(idx, total) get_rows_elem<T>(w, ids, out, idx);
}
template <int T>
__global__ void k_dequant(Wv w, int64_t row0, int64_t total, uint16_t *__restrict__ out) {
  PLQ_GRID_STRIDE(idx, total) dequant_unit<T>(w, row0, out, idx);
}
template <int T>
__global__ void k_dequant_elem(Wv w, int64_t row0, int64_t total, uint16_t *__restrict__ out) {
  PLQ_GRID_STRIDE(idx, total) dequant_elem<T>(w, row0, out, idx);
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

template <int T>
__global__ void k_to_planes(Wv w, int64_t total, uint8_t *__restrict__ codes,
                            uint16_t *__restrict__ scales) {
  PLQ_GRID_STRIDE(idx, total) to_planes_block<T>(w, codes, scales, idx);
}

/* ---- host side -------------------------------------------------------------------------------- */

/* The kernel type of a weight: its dtype, or the planar variant of Q8_0/Q4_0. */
int kernel_type(const pl_cu_weight *w) {
  if (w->scales && w->type == PL_DT_Q8_0)
    return PLQ_Q8P;
  if (w->scales && w->type == PL_DT_Q4_0)
    return PLQ_Q4P;
  return w->type;
}

/* Validate w and fill the kernel view. Returns 0 or a PL_E* status with a message. */
int make_view(const pl_cu_weight *w, const char *op, Wv *v) {
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
bool unit_ok(const Wv &v, int type, const void *other, int other_align) {
  if (v.cols % 32 || (uintptr_t)v.data % 16 || (other && (uintptr_t)other % other_align))
    return false;
  if ((type == PL_DT_MLX_Q4 || type == PL_DT_MLX_Q8) && v.group_size % 32)
    return false;
  return true;
}

int launch_status(const char *op, int type) {
  cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess)
    return pl_fail(PL_EDEVICE, "%s (%s): kernel launch failed: %s", op, pl_dtype_name((pl_dtype)type),
                   cudaGetErrorString(e));
  return 0;
}

unsigned grid_for(int64_t total, int block) {
  int64_t g = (total + block - 1) / block;
  return (unsigned)(g < 1 ? 1 : g > 65536 ? 65536 : g);
}

#define PLQ_TYPES(X)                                                                          \
  X(PL_DT_F32) X(PL_DT_F16) X(PL_DT_BF16) X(PL_DT_Q8_0) X(PL_DT_Q4_0) X(PL_DT_Q4_K)          \
  X(PL_DT_Q6_K) X(PL_DT_MLX_Q4) X(PL_DT_MLX_Q8) X(PLQ_Q8P) X(PLQ_Q4P)

/* Rows per warp. Four rows share each x value read from shared memory, which batches of 3..8
 * rows of x need; one stream (n <= 2) is bound by DRAM alone, and there fewer rows per warp
 * give a weight of few rows (k/v: 1024) enough CTAs to keep every SM's loads in flight.
 * PAGELLM_CUDA_GEMV_RPW=4 keeps 4 (to measure the difference). */
int gemv_rpw(const Wv &v, int n) {
  static int sms = 0, forced = -1;
  if (forced < 0) {
    const char *e = getenv("PAGELLM_CUDA_GEMV_RPW");
    forced = e && (!strcmp(e, "1") || !strcmp(e, "2") || !strcmp(e, "4")) ? atoi(e) : 0;
    int dev = 0;
    if (cudaGetDevice(&dev) != cudaSuccess ||
        cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess)
      sms = 0;
  }
  if (forced)
    return n <= 2 || forced == 4 ? forced : 4;
  if (n > 2 || v.rows / (GEMV_WARPS * 4) >= 4 * (int64_t)sms)
    return 4;
  return n;
}

template <int T, int RPW, int NX>
void launch_rows(const Wv &v, const float *x, float *y, cudaStream_t st) {
  unsigned grid = (unsigned)((v.rows + GEMV_WARPS * RPW - 1) / (GEMV_WARPS * RPW));
  k_qgemv<T, NX, RPW><<<grid, GEMV_WARPS * 32, 0, st>>>(v, x, y);
}

template <int T>
void launch_gemv(const Wv &v, const float *x, int n, float *y, bool unit, cudaStream_t st) {
  if (!unit) {
    k_qgemv_elem<T><<<(unsigned)((v.rows + 3) / 4), 128, 0, st>>>(v, x, n, y);
    return;
  }
  int rpw = gemv_rpw(v, n);
  switch (n) {
  case 1:
    if (rpw == 1)
      launch_rows<T, 1, 1>(v, x, y, st);
    else if (rpw == 2)
      launch_rows<T, 2, 1>(v, x, y, st);
    else
      launch_rows<T, 4, 1>(v, x, y, st);
    break;
  case 2:
    if (rpw == 2)
      launch_rows<T, 2, 2>(v, x, y, st);
    else
      launch_rows<T, 4, 2>(v, x, y, st);
    break;
  case 3: launch_rows<T, 4, 3>(v, x, y, st); break;
  case 4: launch_rows<T, 4, 4>(v, x, y, st); break;
  case 5: launch_rows<T, 4, 5>(v, x, y, st); break;
  case 6: launch_rows<T, 4, 6>(v, x, y, st); break;
  case 7: launch_rows<T, 4, 7>(v, x, y, st); break;
  default: launch_rows<T, 4, 8>(v, x, y, st); break;
  }
}

} // namespace

extern "C" int pl_cu_get_rows(const pl_cu_weight *w, const int32_t *ids, int n, float *out,
                              pl_cu_stream stream) {
  static const char op[] = "pl_cu_get_rows";
  Wv v;
  PL_TRY(make_view(w, op, &v));
  if (n < 0 || (n > 0 && (!ids || !out)))
    return pl_fail(PL_EINVAL, "%s: bad arguments (n = %d)", op, n);
  if (n == 0)
    return 0;
  bool unit = unit_ok(v, w->type, out, 16);
  int64_t total = (int64_t)n * (unit ? v.cols / 32 : v.cols);
  cudaStream_t st = (cudaStream_t)stream;
  switch (kernel_type(w)) {
#define X(T)                                                                                  \
  case T:                                                                                     \
    if (unit)                                                                                 \
      k_get_rows<T><<<grid_for(total, 256), 256, 0, st>>>(v, ids, total, out);                 \
    else                                                                                      \
      k_get_rows_elem<T><<<grid_for(total, 256), 256, 0, st>>>(v, ids, total, out);            \
    break;
    PLQ_TYPES(X)
#undef X
  default: break;
  }
  return launch_status(op, w->type);
}

extern "C" int pl_cu_dequant(const pl_cu_weight *w, int64_t row0, int64_t nrows, uint16_t *out,
                             pl_cu_stream stream) {
  static const char op[] = "pl_cu_dequant";
  Wv v;
  PL_TRY(make_view(w, op, &v));
  if (row0 < 0 || nrows < 0 || row0 + nrows > v.rows || (nrows > 0 && !out))
    return pl_fail(PL_EINVAL, "%s: rows %lld..%lld outside the %lld rows of the weight", op,
                   (long long)row0, (long long)(row0 + nrows), (long long)v.rows);
  if (nrows == 0)
    return 0;
  bool unit = unit_ok(v, w->type, out, 16);
  int64_t total = nrows * (unit ? v.cols / 32 : v.cols);
  cudaStream_t st = (cudaStream_t)stream;
  switch (kernel_type(w)) {
#define X(T)                                                                                  \
  case T:                                                                                     \
    if (unit)                                                                                 \
      k_dequant<T><<<grid_for(total, 256), 256, 0, st>>>(v, row0, total, out);             \
    else                                                                                      \
      k_dequant_elem<T><<<grid_for(total, 256), 256, 0, st>>>(v, row0, total, out);        \
    break;
    PLQ_TYPES(X)
#undef X
  default: break;
  }
  return launch_status(op, w->type);
}

extern "C" int pl_cu_qgemv(const pl_cu_weight *w, const float *x, int n, float *y,
                           pl_cu_stream stream) {
  static const char op[] = "pl_cu_qgemv";
  Wv v;
  PL_TRY(make_view(w, op, &v));
  if (n < 1 || n > PL_CU_GEMV_MAX_N || !x || !y)
    return pl_fail(PL_EINVAL, "%s: n = %d x rows (1..%d)", op, n, PL_CU_GEMV_MAX_N);
  if (v.rows == 0)
    return 0;
  bool unit = unit_ok(v, w->type, x, 16);
  cudaStream_t st = (cudaStream_t)stream;
  switch (kernel_type(w)) {
#define X(T)                                                                                  \
  case T: launch_gemv<T>(v, x, n, y, unit, st); break;
    PLQ_TYPES(X)
#undef X
  default: break;
  }
  return launch_status(op, w->type);
}

extern "C" int pl_cu_planar(pl_dtype type, int64_t cols) {
  return (type == PL_DT_Q8_0 || type == PL_DT_Q4_0) && cols > 0 && cols % 32 == 0;
}

extern "C" void pl_cu_plane_bytes(const pl_cu_weight *src, size_t *codes, size_t *scales) {
  size_t blocks = (size_t)src->rows * (size_t)(src->cols / 32);
  *codes = blocks * (src->type == PL_DT_Q8_0 ? 32 : 16);
  *scales = blocks * 2;
}

extern "C" int pl_cu_to_planes(const pl_cu_weight *src, void *codes, void *scales,
                               pl_cu_weight *dst, pl_cu_stream stream) {
  static const char op[] = "pl_cu_to_planes";
  Wv v;
  PL_TRY(make_view(src, op, &v));
  if (src->scales || !pl_cu_planar(src->type, src->cols))
    return 0;
  if (!codes || !scales || (uintptr_t)codes % 16 || (uintptr_t)scales % 2)
    return pl_fail(PL_EINVAL, "%s: plane buffers missing or misaligned", op);
  int64_t total = v.rows * (v.cols / 32);
  cudaStream_t st = (cudaStream_t)stream;
  if (total > 0) {
    if (src->type == PL_DT_Q8_0)
      k_to_planes<PL_DT_Q8_0><<<grid_for(total, 256), 256, 0, st>>>(
          v, total, (uint8_t *)codes, (uint16_t *)scales);
    else
      k_to_planes<PL_DT_Q4_0><<<grid_for(total, 256), 256, 0, st>>>(
          v, total, (uint8_t *)codes, (uint16_t *)scales);
    PL_TRY(launch_status(op, src->type));
  }
  *dst = *src;
  dst->data = codes;
  dst->scales = scales;
  return 1;
}
