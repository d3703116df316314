/* Scalar IEEE half (binary16) and bfloat16 <-> f32 conversions. Exact for every input:
 * subnormals, infinities and NaNs (NaN payloads are kept as far as they fit; a NaN never
 * turns into an infinity). f32 -> f16/bf16 rounds to nearest, ties to even. The SIMD row
 * conversions in the ISA files must agree bit for bit (tests compare all 65536 halves). */
#include <string.h>

#include "backend/cpu/kern/kern.h"

static inline uint32_t f2u(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  return u;
}
static inline float u2f(uint32_t u) {
  float f;
  memcpy(&f, &u, 4);
  return f;
}

float pl_f16_to_f32(uint16_t h) {
  uint32_t sign = (uint32_t)(h & 0x8000) << 16;
  uint32_t exp = (h >> 10) & 0x1f;
  uint32_t man = h & 0x3ff;
  if (exp == 0x1f) /* inf / nan */
    return u2f(sign | 0x7f800000u | (man << 13));
  if (exp == 0) {
    if (man == 0)
      return u2f(sign);
    /* subnormal: value = man * 2^-24, exact in f32 */
    float v = (float)man * (1.0f / 16777216.0f);
    return sign ? -v : v;
  }
  return u2f(sign | ((exp + 112) << 23) | (man << 13));
}

uint16_t pl_f32_to_f16(float f) {
  uint32_t u = f2u(f);
  uint16_t sign = (uint16_t)((u >> 16) & 0x8000);
  uint32_t a = u & 0x7fffffffu;
  if (a >= 0x7f800000u) /* inf / nan: keep a quiet nan bit so nan stays nan */
    return (uint16_t)(sign | 0x7c00 | (a > 0x7f800000u ? (0x200 | ((a >> 13) & 0x3ff)) : 0));
  if (a >= 0x477ff000u) /* rounds to >= 65520 -> inf */
    return (uint16_t)(sign | 0x7c00);
  if (a < 0x38800000u) { /* below the smallest normal half (2^-14): subnormal or zero */
    /* Scale so that one half-ulp (2^-24) becomes 1.0 and let the FPU round to even. The
     * multiplication by 2^24 is exact; the conversion to integer rounds ties to even. */
    float v = u2f(a) * 16777216.0f;
    uint32_t m = (uint32_t)v;
    float rem = v - (float)m;
    if (rem > 0.5f || (rem == 0.5f && (m & 1)))
      m++;
    return (uint16_t)(sign | m); /* m == 0x400 becomes the smallest normal: still right */
  }
  /* normal: drop 13 mantissa bits with round-to-nearest-even; a carry may bump the exponent */
  uint32_t r = a + 0xfffu + ((a >> 13) & 1);
  return (uint16_t)(sign | ((r - 0x38000000u) >> 13));
}

float pl_bf16_to_f32(uint16_t h) { return u2f((uint32_t)h << 16); }

uint16_t pl_f32_to_bf16(float f) {
  uint32_t u = f2u(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) /* nan: keep it quiet, never round into inf */
    return (uint16_t)((u >> 16) | 0x40);
  u += 0x7fffu + ((u >> 16) & 1);
  return (uint16_t)(u >> 16);
}
