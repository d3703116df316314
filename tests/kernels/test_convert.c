/* f16/bf16 <-> f32. Every one of the 65536 halves decodes to the value of the IEEE binary16
 * definition (computed in float64 by kt_half) and re-encodes to itself; f32 -> f16/bf16
 * rounds to nearest-even, checked against a float64 rounding reference on random floats and
 * on every exact midpoint between neighbouring halves; the SIMD row decoders of each ISA
 * (pl_dequant_row F16/BF16) agree bit for bit with the scalar ones. */
#include <string.h>

#include "../check.h"
#include "kt_common.h"

/* value of round-to-nearest-even of v into binary16, as a double (inf on overflow) */
static double ref_round_f16(double v) {
  double a = fabs(v);
  if (a >= 65520.0)
    return v > 0 ? INFINITY : -INFINITY;
  int e = a > 0 ? (int)floor(log2(a)) : -14;
  if (a > 0 && ldexp(1.0, e) > a) /* log2 rounding guard */
    e--;
  if (a > 0 && ldexp(1.0, e + 1) <= a)
    e++;
  if (e < -14)
    e = -14;
  double ulp = ldexp(1.0, e - 10);
  double r = nearbyint(a / ulp) * ulp; /* integer parity = mantissa parity: ties to even */
  return v < 0 ? -r : r;
}
static double ref_round_bf16(double v) { /* normal f32 range only */
  double a = fabs(v);
  int e = (int)floor(log2(a));
  if (ldexp(1.0, e) > a)
    e--;
  if (ldexp(1.0, e + 1) <= a)
    e++;
  double ulp = ldexp(1.0, e - 7);
  double r = nearbyint(a / ulp) * ulp;
  if (r >= ldexp(1.0, 128))
    r = INFINITY;
  return v < 0 ? -r : r;
}

static int same(float a, double b) { return (isnan(a) && isnan(b)) || (double)a == b; }

int main(void) {
  int bad = 0, bad_rt = 0, bad_b = 0;
  for (uint32_t h = 0; h < 65536; h++) {
    uint8_t p[2] = {(uint8_t)h, (uint8_t)(h >> 8)};
    float f = pl_f16_to_f32((uint16_t)h);
    bad += !same(f, kt_half(p));
    if (!isnan(f))
      bad_rt += pl_f32_to_f16(f) != h;
    else
      bad_rt += !(((pl_f32_to_f16(f) & 0x7c00) == 0x7c00) && (pl_f32_to_f16(f) & 0x3ff));
    float g = pl_bf16_to_f32((uint16_t)h);
    bad_b += !same(g, kt_bf16(p));
    if (!isnan(g))
      bad_b += pl_f32_to_bf16(g) != h;
  }
  CHECK(bad == 0, "%d halves decode wrong", bad);
  CHECK(bad_rt == 0, "%d halves do not round-trip", bad_rt);
  CHECK(bad_b == 0, "%d bf16 values decode/round-trip wrong", bad_b);

  /* midpoints between consecutive positive halves: ties go to the even neighbour */
  int bad_mid = 0;
  for (uint32_t h = 0; h < 0x7bff; h++) {
    double lo = kt_half((uint8_t[]){(uint8_t)h, (uint8_t)(h >> 8)});
    double hi = kt_half((uint8_t[]){(uint8_t)(h + 1), (uint8_t)((h + 1) >> 8)});
    float mid = (float)((lo + hi) / 2); /* exact in f32 */
    uint16_t want = (h & 1) ? (uint16_t)(h + 1) : (uint16_t)h;
    bad_mid += pl_f32_to_f16(mid) != want;
    bad_mid += pl_f32_to_f16(-mid) != (want | 0x8000);
  }
  CHECK(bad_mid == 0, "%d midpoints not rounded to even", bad_mid);

  kt_rng rng = {42};
  int bad_r = 0, bad_rb = 0;
  for (int i = 0; i < 1000000; i++) {
    uint32_t u = (uint32_t)kt_next(&rng);
    if (i & 1) /* half of them in the f16 range, incl. subnormals */
      u = (u & 0x807fffffu) | ((uint32_t)(100 + kt_next(&rng) % 46) << 23);
    float f;
    memcpy(&f, &u, 4);
    if (isnan(f) || isinf(f))
      continue;
    bad_r += !same(pl_f16_to_f32(pl_f32_to_f16(f)), ref_round_f16(f));
    if (fabsf(f) >= 1.1754944e-38f)
      bad_rb += !same(pl_bf16_to_f32(pl_f32_to_bf16(f)), ref_round_bf16(f));
  }
  CHECK(bad_r == 0, "%d floats rounded to f16 wrongly", bad_r);
  CHECK(bad_rb == 0, "%d floats rounded to bf16 wrongly", bad_rb);
  CHECK_EQ_INT(pl_f32_to_f16(INFINITY), 0x7c00);
  CHECK_EQ_INT(pl_f32_to_f16(-INFINITY), 0xfc00);
  CHECK_EQ_INT(pl_f32_to_f16(1e6f), 0x7c00);
  CHECK_EQ_INT(pl_f32_to_f16(65504.0f), 0x7bff);
  CHECK_EQ_INT(pl_f32_to_f16(65519.0f), 0x7bff);
  CHECK_EQ_INT(pl_f32_to_f16(65520.0f), 0x7c00);
  CHECK_EQ_INT(pl_f32_to_f16(5.9604645e-08f), 0x0001);
  CHECK_EQ_INT(pl_f32_to_f16(2.9802322e-08f), 0x0000); /* half of the smallest: tie to even 0 */
  CHECK(isnan(pl_f16_to_f32(pl_f32_to_f16(NAN))), "nan stays nan");
  CHECK(isnan(pl_bf16_to_f32(pl_f32_to_bf16(NAN))), "bf16 nan stays nan");
  CHECK_EQ_INT(pl_f32_to_bf16(3.4028235e38f), 0x7f80); /* rounds up into inf */

  /* SIMD row decoders vs scalar, all 65536 codes, odd lengths */
  uint16_t *all = malloc(65536 * 2 + 64);
  float *y = malloc(65536 * 4 + 64);
  for (uint32_t h = 0; h < 65536; h++)
    all[h] = (uint16_t)h;
  kt_isa isas[8];
  int nisa = kt_isas(isas);
  for (int ii = 0; ii < nisa; ii++) {
    kt_use(&isas[ii]);
    for (int t = 0; t < 2; t++) {
      pl_dtype dt = t ? PL_DT_BF16 : PL_DT_F16;
      int bad_s = 0;
      const int64_t lens[] = {65536, 65535, 17, 3};
      for (int li = 0; li < 4; li++) {
        pl_dequant_row(dt, all + (65536 - lens[li]), y, lens[li]);
        for (int64_t i = 0; i < lens[li]; i++) {
          uint16_t h = all[65536 - lens[li] + i];
          float want = t ? pl_bf16_to_f32(h) : pl_f16_to_f32(h);
          bad_s += memcmp(&want, &y[i], 4) != 0 && !(isnan(want) && isnan(y[i]));
        }
      }
      CHECK(bad_s == 0, "%s %s row decode: %d mismatches", isas[ii].name, pl_dtype_name(dt), bad_s);
    }
  }
  free(all);
  free(y);
  return check_summary("test_convert");
}
