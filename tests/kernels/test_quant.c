/* Block formats and quantizers.
 *  - pl_dequant_row (every ISA) and pl_dequant_row_mlx equal the independent float64
 *    decoders of kt_common.h (tolerance 1e-6 relative: the library multiplies in float32);
 *  - hand-built blocks decode to hand-computed values (explicit bit positions);
 *  - quantize -> dequantize error bounds (Gaussian rows with outliers, constant, zero and
 *    wide-range rows): Q8_0 |e| <= 0.57 amax/127 per element (half a step + 127 x the fp16 scale
 *    rounding), Q4_0 |e| <= 1.02 amax/8 (ggml's rounding clamps the top code, so up to one
 *    step), Q4_K RMS <= 0.12 x row RMS, Q6_K RMS <= 0.035 x row RMS (about 1.2x what the
 *    Gaussian data needs); F16/BF16 equal round-to-nearest-even of each element;
 *  - the real GGUF pair tinystories-280K{,-f16}.gguf: every F16 tensor of the f16 file decodes
 *    to the f16 rounding of the same tensor in the F32 file. */
#include <stdio.h>

#if defined(__aarch64__) && defined(__GNUC__) && !defined(__clang__)
/* aarch64-linux-gnu-gcc 12 crashes (ICE in vect_transform_reduction) vectorizing one of the
 * counting loops below; the test's speed does not matter. */
#pragma GCC optimize("no-tree-vectorize")
#endif

#include "../check.h"
#include "kt_common.h"
#include "util/alloc.h"

static int rel_close(double a, double b) { return fabs(a - b) <= 1e-6 * fabs(b) + 1e-30; }

static void check_decode(pl_dtype t, const void *row, int64_t n, const char *what) {
  double *ref = pl_malloc(sizeof(double) * (size_t)n);
  float *y = pl_malloc(sizeof(float) * (size_t)n);
  kt_ref_dequant(t, row, ref, n);
  kt_isa isas[8];
  int nisa = kt_isas(isas);
  for (int ii = 0; ii < nisa; ii++) {
    kt_use(&isas[ii]);
    pl_dequant_row(t, row, y, n);
    int bad = 0;
    for (int64_t i = 0; i < n; i++)
      bad += !rel_close(y[i], ref[i]);
    CHECK(bad == 0, "%s %s %s: %d elements decode differently", isas[ii].name, pl_dtype_name(t), what, bad);
  }
  pl_free(ref);
  pl_free(y);
}

static void hand_blocks(void) {
  /* Q4_0: d = 0.5 (0x3800), qs[i] = i | (15-i)<<4 -> w[i] = 0.5*(i-8), w[i+16] = 0.5*(7-i) */
  uint8_t q40[18] = {0x00, 0x38};
  for (int i = 0; i < 16; i++)
    q40[2 + i] = (uint8_t)(i | ((15 - i) << 4));
  float y[256];
  pl_dequant_row(PL_DT_Q4_0, q40, y, 32);
  int ok = 1;
  for (int i = 0; i < 16; i++)
    ok &= y[i] == 0.5f * (float)(i - 8) && y[i + 16] == 0.5f * (float)(7 - i);
  CHECK(ok, "Q4_0 hand block");
  /* Q8_0: d = 2.0 (0x4000), qs = -16..15 */
  uint8_t q80[34] = {0x00, 0x40};
  for (int i = 0; i < 32; i++)
    q80[2 + i] = (uint8_t)(int8_t)(i - 16);
  pl_dequant_row(PL_DT_Q8_0, q80, y, 32);
  ok = 1;
  for (int i = 0; i < 32; i++)
    ok &= y[i] == 2.0f * (float)(i - 16);
  CHECK(ok, "Q8_0 hand block");
  /* Q4_K: d = 1, dmin = 0.5; sub-block j has scale j+1 (j<4) / 40+j (j>=4) and min 2j+1
   * (j<4) / 33+j (j>=4); code of element e = e % 16. Scale bytes packed by hand. */
  uint8_t q4k[144] = {0x00, 0x3c, 0x00, 0x38};
  int sc[8], mn[8];
  for (int j = 0; j < 8; j++) {
    sc[j] = j < 4 ? j + 1 : 40 + j;
    mn[j] = j < 4 ? 2 * j + 1 : 33 + j;
  }
  uint8_t *s = q4k + 4;
  for (int j = 0; j < 4; j++) {
    s[j] = (uint8_t)(sc[j] | ((sc[j + 4] >> 4) << 6));     /* bytes 0-3: scale low 6 | hi2 of scale j+4 */
    s[j + 4] = (uint8_t)(mn[j] | ((mn[j + 4] >> 4) << 6)); /* bytes 4-7: min low 6 | hi2 of min j+4 */
    s[j + 8] = (uint8_t)((sc[j + 4] & 15) | ((mn[j + 4] & 15) << 4));
  }
  for (int c = 0; c < 4; c++)
    for (int l = 0; l < 32; l++) /* element 64c+l in the low nibble, 64c+32+l in the high */
      q4k[16 + 32 * c + l] = (uint8_t)(((64 * c + l) % 16) | (((64 * c + 32 + l) % 16) << 4));
  pl_dequant_row(PL_DT_Q4_K, q4k, y, 256);
  ok = 1;
  for (int e = 0; e < 256; e++)
    ok &= y[e] == (float)sc[e / 32] * (float)(e % 16) - 0.5f * (float)mn[e / 32];
  CHECK(ok, "Q4_K hand block");
  check_decode(PL_DT_Q4_K, q4k, 256, "hand");
  /* Q6_K: d = 0.25; scales[k] = k - 8; code of element e = (e * 7) % 64 */
  uint8_t q6k[210] = {0};
  for (int e = 0; e < 256; e++) {
    int code = (e * 7) % 64, h = e / 128, k = e % 128, quarter = k / 32, l = k % 32;
    uint8_t *ql = q6k + 64 * h + l + (quarter & 1) * 32;
    *ql |= (uint8_t)((code & 15) << ((quarter & 2) ? 4 : 0));
    q6k[128 + 32 * h + l] |= (uint8_t)((code >> 4) << (2 * quarter));
  }
  for (int k = 0; k < 16; k++)
    q6k[192 + k] = (uint8_t)(int8_t)(k - 8);
  q6k[208] = 0x00;
  q6k[209] = 0x34; /* 0.25 */
  pl_dequant_row(PL_DT_Q6_K, q6k, y, 256);
  ok = 1;
  for (int e = 0; e < 256; e++)
    ok &= y[e] == 0.25f * (float)(e / 16 - 8) * (float)((e * 7) % 64 - 32);
  CHECK(ok, "Q6_K hand block");
  /* MLX 4-bit: word 0x76543210 -> elements 0..7 = 0..7 (LSB first) */
  uint8_t mw[16] = {0x10, 0x32, 0x54, 0x76, 0x98, 0xba, 0xdc, 0xfe};
  float s1 = 2.0f, b1 = -1.0f;
  pl_dequant_row_mlx(PL_DT_MLX_Q4, mw, &s1, &b1, PL_DT_F32, 32, y, 32);
  ok = 1;
  for (int i = 0; i < 16; i++)
    ok &= y[i] == 2.0f * (float)i - 1.0f;
  CHECK(ok, "MLX 4-bit LSB-first packing");
}

static void round_trips(void) {
  kt_rng rng = {2024};
  const int64_t n = 256 * 8;
  float *x = pl_malloc(sizeof(float) * n), *y = pl_malloc(sizeof(float) * n);
  uint8_t *row = pl_malloc(pl_dtype_row_bytes(PL_DT_F32, n));
  static const pl_dtype types[] = {PL_DT_F16, PL_DT_BF16, PL_DT_Q8_0, PL_DT_Q4_0, PL_DT_Q4_K, PL_DT_Q6_K};
  for (int kind = 0; kind < 5; kind++) {
    for (int64_t i = 0; i < n; i++) {
      switch (kind) {
      case 0: x[i] = kt_gauss(&rng) * (i % 53 == 0 ? 8.0f : 1.0f); break;
      case 1: x[i] = 3.25f; break;                                          /* constant */
      case 2: x[i] = 0; break;                                              /* zero */
      case 3: x[i] = kt_gauss(&rng) * (float)pow(10.0, (double)(i % 9) - 4); break; /* wide */
      default: x[i] = (float)kt_unif(&rng) + 2.0f; break;                   /* all positive */
      }
    }
    for (size_t t = 0; t < sizeof types / sizeof types[0]; t++) {
      pl_dtype dt = types[t];
      CHECK(pl_quant_row(dt, x, row, n) == pl_dtype_row_bytes(dt, n), "bytes");
      check_decode(dt, row, n, "round trip");
      pl_dequant_row(dt, row, y, n);
      int bad = 0, nonfinite = 0;
      double se = 0, sx = 0;
      for (int64_t i = 0; i < n; i++) {
        nonfinite += !isfinite(y[i]);
        se += ((double)y[i] - x[i]) * ((double)y[i] - x[i]);
        sx += (double)x[i] * x[i];
      }
      CHECK(nonfinite == 0, "%s kind %d: non-finite output", pl_dtype_name(dt), kind);
      if (dt == PL_DT_F16 || dt == PL_DT_BF16) {
        for (int64_t i = 0; i < n; i++)
          bad += y[i] != (dt == PL_DT_F16 ? pl_f16_to_f32(pl_f32_to_f16(x[i])) : pl_bf16_to_f32(pl_f32_to_bf16(x[i])));
      } else if (dt == PL_DT_Q8_0 || dt == PL_DT_Q4_0) {
        for (int64_t b = 0; b < n / 32; b++) {
          double amax = 0;
          for (int i = 0; i < 32; i++)
            amax = fmax(amax, fabs(x[32 * b + i]));
          double bound = dt == PL_DT_Q8_0 ? 0.57 * amax / 127 : 1.02 * amax / 8;
          for (int i = 0; i < 32; i++)
            bad += !(fabs((double)y[32 * b + i] - x[32 * b + i]) <= bound + 1e-30);
        }
      } else if (kind != 3) { /* K-quants: RMS bounds (the wide rows span 8 decades per block) */
        double lim = dt == PL_DT_Q4_K ? 0.12 : 0.035;
        bad += !(sqrt(se) <= lim * sqrt(sx) + 1e-30);
        if (kind == 0)
          printf("%s gaussian rel. RMS error %.4f (bound %.3f)\n", pl_dtype_name(dt), sqrt(se / sx), lim);
      }
      CHECK(bad == 0, "%s kind %d: %d values outside the error bound", pl_dtype_name(dt), kind, bad);
    }
  }
  pl_free(x);
  pl_free(y);
  pl_free(row);
}

static void mlx_decode(void) {
  kt_rng rng = {5};
  static const pl_dtype sbt[] = {PL_DT_F16, PL_DT_BF16, PL_DT_F32};
  static const int gss[] = {32, 64, 128};
  const int64_t n = 512;
  uint8_t q[512], sc[16 * 4], bi[16 * 4];
  double *ref = pl_malloc(sizeof(double) * n);
  float *y = pl_malloc(sizeof(float) * n);
  for (int bits = 4; bits <= 8; bits += 4)
    for (int s = 0; s < 3; s++)
      for (int g = 0; g < 3; g++) {
        pl_dtype t = bits == 4 ? PL_DT_MLX_Q4 : PL_DT_MLX_Q8;
        for (size_t i = 0; i < sizeof q; i++)
          q[i] = (uint8_t)kt_next(&rng);
        for (int i = 0; i < 16; i++) {
          float a = (float)kt_gauss(&rng), b = (float)kt_gauss(&rng);
          if (sbt[s] == PL_DT_F32) {
            memcpy(sc + 4 * i, &a, 4);
            memcpy(bi + 4 * i, &b, 4);
          } else {
            uint16_t ha = sbt[s] == PL_DT_F16 ? pl_f32_to_f16(a) : pl_f32_to_bf16(a);
            uint16_t hb = sbt[s] == PL_DT_F16 ? pl_f32_to_f16(b) : pl_f32_to_bf16(b);
            memcpy(sc + 2 * i, &ha, 2);
            memcpy(bi + 2 * i, &hb, 2);
          }
        }
        kt_ref_dequant_mlx(t, q, sc, bi, sbt[s], gss[g], ref, n);
        pl_dequant_row_mlx(t, q, sc, bi, sbt[s], gss[g], y, n);
        int bad = 0;
        for (int64_t i = 0; i < n; i++)
          bad += !(fabs(y[i] - ref[i]) <= 1e-6 * (fabs(ref[i]) + 1));
        CHECK(bad == 0, "MLX %d-bit %s gs=%d: %d mismatches", bits, pl_dtype_name(sbt[s]), gss[g], bad);
      }
  pl_free(ref);
  pl_free(y);
}

/* ---- minimal GGUF reader (enough to walk tensor infos) ------------------------------------ */
typedef struct {
  uint8_t *buf;
  size_t len, pos;
  int err;
} rd;
static uint64_t rd_u(rd *r, int nb) {
  uint64_t v = 0;
  if (r->pos + (size_t)nb > r->len) {
    r->err = 1;
    return 0;
  }
  for (int i = 0; i < nb; i++)
    v |= (uint64_t)r->buf[r->pos + i] << (8 * i);
  r->pos += (size_t)nb;
  return v;
}
static void rd_skip_val(rd *r, uint32_t type) {
  static const int sz[] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};
  if (type == 8) { /* string */
    uint64_t l = rd_u(r, 8);
    r->pos += l;
  } else if (type == 9) { /* array */
    uint32_t at = (uint32_t)rd_u(r, 4);
    uint64_t cnt = rd_u(r, 8);
    for (uint64_t i = 0; i < cnt && !r->err; i++)
      rd_skip_val(r, at);
  } else if (type < 13) {
    r->pos += (size_t)sz[type];
  } else {
    r->err = 1;
  }
  if (r->pos > r->len)
    r->err = 1;
}
typedef struct {
  char name[96];
  uint32_t type;
  uint64_t ne[4], off;
  int nd;
} tinfo;
static uint8_t *load_file(const char *p, size_t *len) {
  FILE *f = fopen(p, "rb");
  if (!f)
    return NULL;
  fseek(f, 0, SEEK_END);
  long l = ftell(f);
  fseek(f, 0, SEEK_SET);
  uint8_t *b = malloc((size_t)l);
  if (b && fread(b, 1, (size_t)l, f) != (size_t)l) {
    free(b);
    b = NULL;
  }
  fclose(f);
  *len = (size_t)l;
  return b;
}
/* returns number of tensors, fills infos and the data base offset */
static int gguf_tensors(rd *r, tinfo *ti, int max, size_t *data_off) {
  if (rd_u(r, 4) != 0x46554747u) /* "GGUF" */
    return -1;
  rd_u(r, 4); /* version */
  uint64_t nt = rd_u(r, 8), nkv = rd_u(r, 8);
  uint64_t align = 32;
  for (uint64_t i = 0; i < nkv && !r->err; i++) {
    uint64_t kl = rd_u(r, 8);
    int is_align = kl == 17 && r->pos + 17 <= r->len && memcmp(r->buf + r->pos, "general.alignment", 17) == 0;
    r->pos += kl;
    uint32_t t = (uint32_t)rd_u(r, 4);
    if (is_align && t == 4)
      align = rd_u(r, 4);
    else
      rd_skip_val(r, t);
  }
  int n = 0;
  for (uint64_t i = 0; i < nt && !r->err; i++) {
    uint64_t l = rd_u(r, 8);
    tinfo t;
    memset(&t, 0, sizeof t);
    memcpy(t.name, r->buf + r->pos, l < 95 ? l : 95);
    r->pos += l;
    t.nd = (int)rd_u(r, 4);
    for (int d = 0; d < 4; d++)
      t.ne[d] = 1;
    for (int d = 0; d < t.nd && d < 4; d++)
      t.ne[d] = rd_u(r, 8);
    t.type = (uint32_t)rd_u(r, 4);
    t.off = rd_u(r, 8);
    if (n < max)
      ti[n++] = t;
  }
  *data_off = (r->pos + align - 1) / align * align;
  return r->err ? -1 : n;
}

static void gguf_pair(void) {
  size_t l16 = 0, l32 = 0;
  uint8_t *b16 = load_file(data_path("models/tinystories-280K-f16.gguf"), &l16);
  uint8_t *b32 = load_file(data_path("models/tinystories-280K.gguf"), &l32);
  CHECK(b16 && b32, "cannot read the TinyStories GGUF pair in tests/data/models");
  if (!b16 || !b32) {
    free(b16);
    free(b32);
    return;
  }
  static tinfo t16[512], t32[512];
  size_t d16, d32;
  rd r16 = {b16, l16, 0, 0}, r32 = {b32, l32, 0, 0};
  int n16 = gguf_tensors(&r16, t16, 512, &d16), n32 = gguf_tensors(&r32, t32, 512, &d32);
  CHECK(n16 > 0 && n32 == n16, "gguf parse: %d vs %d tensors", n16, n32);
  int checked = 0, exact = 0, total_el = 0;
  for (int i = 0; i < n16; i++) {
    if (t16[i].type != PL_DT_F16)
      continue;
    for (int k = 0; k < n32; k++) {
      if (strcmp(t16[i].name, t32[k].name) != 0 || t32[k].type != PL_DT_F32)
        continue;
      int64_t ne = (int64_t)(t16[i].ne[0] * t16[i].ne[1] * t16[i].ne[2] * t16[i].ne[3]);
      const uint8_t *p16 = b16 + d16 + t16[i].off, *p32 = b32 + d32 + t32[k].off;
      if (p16 + 2 * ne > b16 + l16 || p32 + 4 * ne > b32 + l32) {
        CHECK(0, "tensor %s out of file", t16[i].name);
        break;
      }
      float *y = malloc(sizeof(float) * (size_t)ne);
      pl_dequant_row(PL_DT_F16, p16, y, ne);
      int bad = 0;
      for (int64_t e = 0; e < ne; e++) {
        float f;
        memcpy(&f, p32 + 4 * e, 4);
        double tol = fabs(f) * (1.0 / 2048) + 6e-8; /* half an f16 ulp (+ subnormal step) */
        bad += !(fabs((double)y[e] - f) <= tol);
        uint16_t h;
        memcpy(&h, p16 + 2 * e, 2);
        exact += pl_f32_to_f16(f) == h;
      }
      total_el += (int)ne;
      CHECK(bad == 0, "%s: %d elements differ from the F32 file by more than f16 rounding", t16[i].name, bad);
      free(y);
      checked++;
      break;
    }
  }
  CHECK(checked > 0, "no F16 tensor found in the f16 file");
  printf("gguf pair: %d F16 tensors match the F32 file; %d/%d elements equal pl_f32_to_f16 bit for bit\n",
         checked, exact, total_el);
  free(b16);
  free(b32);
}

int main(void) {
  hand_blocks();
  round_trips();
  mlx_decode();
  gguf_pair();
  CHECK(pl_quant_row(PL_DT_Q8_0, NULL, NULL, 33) == 0, "bad length rejected");
  return check_summary("test_quant");
}
