/* Shared helpers of the kernel tests: a deterministic RNG, the list of ISAs this CPU can
 * run (every test loops over them with pl_kern_set_isa), and float64 reference decoders of
 * the block formats written independently of src/ (straight from the format descriptions),
 * so a layout bug in the library cannot hide behind the same bug in the reference. */
#ifndef PL_KT_COMMON_H
#define PL_KT_COMMON_H
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "backend/cpu/kern/kern.h"

typedef struct {
  uint64_t s;
} kt_rng;

static inline uint64_t kt_next(kt_rng *r) { /* splitmix64 */
  uint64_t z = (r->s += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}
static inline double kt_unif(kt_rng *r) { return (double)(kt_next(r) >> 11) * (1.0 / 9007199254740992.0); }
static inline float kt_gauss(kt_rng *r) {
  double u = kt_unif(r) + 1e-300, v = kt_unif(r);
  return (float)(sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v));
}

/* ISAs to test: every one the CPU supports; AVX-512 and NEON twice, with and without the
 * integer dot extension (VNNI / dotprod) when the CPU has it. */
typedef struct {
  pl_isa isa;
  int dotext;
  const char *name;
} kt_isa;

static inline int kt_isas(kt_isa *out) {
  int n = 0;
  for (int i = PL_ISA_SCALAR; i <= PL_ISA_AVX512; i++) {
    if (pl_kern_set_isa((pl_isa)i) != 0)
      continue;
    out[n].isa = (pl_isa)i;
    out[n].dotext = 0;
    out[n].name = pl_kern_isa_name((pl_isa)i);
    n++;
    if ((i == PL_ISA_AVX512 || i == PL_ISA_NEON) && pl_kern_has_dotext()) {
      out[n - 1].name = i == PL_ISA_AVX512 ? "avx512-novnni" : "neon-nodotprod";
      out[n].isa = (pl_isa)i;
      out[n].dotext = 1;
      out[n].name = i == PL_ISA_AVX512 ? "avx512-vnni" : "neon-dotprod";
      n++;
    }
  }
  return n;
}
static inline void kt_use(const kt_isa *k) {
  pl_kern_set_isa(k->isa);
  pl_kern_set_dotext(k->dotext);
}

/* ---- independent float64 decoders ------------------------------------------------------ */

static inline double kt_half(const uint8_t *p) { /* little-endian IEEE binary16 */
  unsigned h = (unsigned)p[0] | ((unsigned)p[1] << 8);
  int e = (h >> 10) & 31, m = h & 1023;
  double v = e == 0 ? ldexp(m, -24) : e == 31 ? (m ? NAN : INFINITY) : ldexp(1024 + m, e - 25);
  return (h & 0x8000) ? -v : v;
}
static inline double kt_bf16(const uint8_t *p) {
  uint32_t u = ((uint32_t)p[0] << 16) | ((uint32_t)p[1] << 24);
  float f;
  memcpy(&f, &u, 4);
  return f;
}

/* Decode `n` elements of a GGUF-typed row into float64. */
static inline void kt_ref_dequant(pl_dtype t, const uint8_t *p, double *y, int64_t n) {
  switch (t) {
  case PL_DT_F32:
    for (int64_t i = 0; i < n; i++) {
      float f;
      memcpy(&f, p + 4 * i, 4);
      y[i] = f;
    }
    break;
  case PL_DT_F16:
    for (int64_t i = 0; i < n; i++)
      y[i] = kt_half(p + 2 * i);
    break;
  case PL_DT_BF16:
    for (int64_t i = 0; i < n; i++)
      y[i] = kt_bf16(p + 2 * i);
    break;
  case PL_DT_Q8_0: /* 34-byte blocks: half d, 32 x int8 */
    for (int64_t b = 0; b < n / 32; b++, p += 34)
      for (int i = 0; i < 32; i++)
        y[32 * b + i] = kt_half(p) * (int8_t)p[2 + i];
    break;
  case PL_DT_Q4_0: /* 18-byte blocks: half d, 16 bytes; low nibbles first 16, high last 16 */
    for (int64_t b = 0; b < n / 32; b++, p += 18)
      for (int i = 0; i < 32; i++) {
        int q = i < 16 ? (p[2 + i] & 15) : (p[2 + i - 16] >> 4);
        y[32 * b + i] = kt_half(p) * (q - 8);
      }
    break;
  case PL_DT_Q4_K: /* 144 B: d, dmin, 12 scale bytes, 128 code bytes */
    for (int64_t b = 0; b < n / 256; b++, p += 144) {
      double d = kt_half(p), dmin = kt_half(p + 2);
      const uint8_t *s = p + 4, *q = p + 16;
      for (int j = 0; j < 8; j++) { /* sub-block j = elements 32j..32j+31 */
        int sc = j < 4 ? s[j] & 63 : (s[j + 4] & 15) | ((s[j - 4] >> 6) << 4);
        int m = j < 4 ? s[j + 4] & 63 : (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
        for (int i = 0; i < 32; i++) {
          int byte = q[32 * (j / 2) + i];
          int c = (j & 1) ? byte >> 4 : byte & 15;
          y[256 * b + 32 * j + i] = d * sc * c - dmin * m;
        }
      }
    }
    break;
  case PL_DT_Q6_K: /* 210 B: ql[128], qh[64], int8 scales[16], half d */
    for (int64_t b = 0; b < n / 256; b++, p += 210) {
      const uint8_t *ql = p, *qh = p + 128;
      const int8_t *sc = (const int8_t *)(p + 192);
      double d = kt_half(p + 208);
      for (int e = 0; e < 256; e++) {
        int half = e >> 7, k = e & 127; /* k: 0..127 within a half of 128 */
        int lo_byte = ql[64 * half + (k & 63)];
        int lo = (k & 64) ? lo_byte >> 4 : lo_byte & 15; /* quarters 2,3 use high nibbles */
        int hi = (qh[32 * half + (k & 31)] >> (2 * (k >> 5))) & 3;
        y[256 * b + e] = d * sc[e / 16] * ((lo | (hi << 4)) - 32);
      }
    }
    break;
  default:
    for (int64_t i = 0; i < n; i++)
      y[i] = NAN;
  }
}

/* MLX affine: codes LSB-first in little-endian 32-bit words; scale/bias per group. */
static inline double kt_sb(const void *p, pl_dtype t, int64_t i) {
  const uint8_t *b = p;
  return t == PL_DT_F16 ? kt_half(b + 2 * i) : t == PL_DT_BF16 ? kt_bf16(b + 2 * i) : (double)((const float *)p)[i];
}
static inline void kt_ref_dequant_mlx(pl_dtype t, const uint8_t *p, const void *sc, const void *bi,
                                      pl_dtype sbt, int gs, double *y, int64_t n) {
  int bits = t == PL_DT_MLX_Q4 ? 4 : 8;
  for (int64_t i = 0; i < n; i++) {
    int64_t word = i / (32 / bits), pos = i % (32 / bits);
    uint32_t w = (uint32_t)p[4 * word] | ((uint32_t)p[4 * word + 1] << 8) |
                 ((uint32_t)p[4 * word + 2] << 16) | ((uint32_t)p[4 * word + 3] << 24);
    unsigned q = (w >> (bits * pos)) & ((1u << bits) - 1);
    y[i] = kt_sb(sc, sbt, i / gs) * q + kt_sb(bi, sbt, i / gs);
  }
}
#endif
