/* Cross-check of the GGUF block layouts against llama.cpp's own code: libggml-base.so as
 * bundled by the npm package node-llama-cpp (tests/node/node_modules, installed by
 * scripts/node-deps.sh). The library is dlopen'ed; when it is absent (fresh checkout, the
 * aarch64 cross build) the test reports "skipped" and passes.
 * Checked:
 *   1. blocks quantized by ggml's quantize_row_*_ref decode identically (bit for bit) with
 *      pl_dequant_row on every ISA and with ggml's dequantize_row_*;
 *   2. pl_quant_row matches ggml's reference quantizer byte for byte for Q8_0 and Q4_0
 *      (same rounding rules), and for Q4_K/Q6_K (different scale searches) decodes through
 *      ggml's dequantizer to the same values as through ours, with an RMS error no worse than
 *      1.25x ggml's;
 *   3. f16/bf16 conversions agree with ggml's for all 65536 halves and random floats. */
#include <dlfcn.h>
#include <stdio.h>

#include "../check.h"
#include "kt_common.h"
#include "util/alloc.h"

typedef void (*quant_fn)(const float *x, void *y, int64_t k);
typedef void (*deq_fn)(const void *x, float *y, int64_t k);

static void *lib;
static void *sym(const char *name) {
  void *p = dlsym(lib, name);
  CHECK(p != NULL, "missing symbol %s", name);
  return p;
}

static double rms_err(const float *a, const float *b, int64_t n) {
  double s = 0;
  for (int64_t i = 0; i < n; i++)
    s += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
  return sqrt(s / (double)n);
}

int main(void) {
#if defined(__x86_64__)
  const char *rel = "tests/node/node_modules/@node-llama-cpp/linux-x64/bins/linux-x64/libggml-base.so";
#elif defined(__aarch64__)
  const char *rel = "tests/node/node_modules/@node-llama-cpp/linux-arm64/bins/linux-arm64/libggml-base.so";
#else
  const char *rel = "";
#endif
  char path[2048];
#ifdef PL_SOURCE_DIR
  snprintf(path, sizeof path, "%s/%s", PL_SOURCE_DIR, rel);
#else
  snprintf(path, sizeof path, "%s", rel);
#endif
  lib = *rel ? dlopen(path, RTLD_NOW | RTLD_LOCAL) : NULL;
  if (!lib) {
    printf("test_ggml_xcheck: skipped (%s not loadable)\n", path);
    return 0;
  }
  kt_isa isas[8];
  int nisa = kt_isas(isas);
  static const struct {
    pl_dtype t;
    const char *q, *d;
  } T[] = {{PL_DT_Q8_0, "quantize_row_q8_0_ref", "dequantize_row_q8_0"},
           {PL_DT_Q4_0, "quantize_row_q4_0_ref", "dequantize_row_q4_0"},
           {PL_DT_Q4_K, "quantize_row_q4_K_ref", "dequantize_row_q4_K"},
           {PL_DT_Q6_K, "quantize_row_q6_K_ref", "dequantize_row_q6_K"}};
  kt_rng rng = {7};
  const int64_t n = 256 * 16;
  float *x = pl_malloc(sizeof(float) * n), *yg = pl_malloc(sizeof(float) * n);
  float *yp = pl_malloc(sizeof(float) * n), *yo = pl_malloc(sizeof(float) * n);
  uint8_t *bg = pl_malloc(pl_dtype_row_bytes(PL_DT_Q8_0, n)), *bp = pl_malloc(pl_dtype_row_bytes(PL_DT_Q8_0, n));
  for (size_t k = 0; k < sizeof T / sizeof T[0]; k++) {
    quant_fn gq = (quant_fn)sym(T[k].q);
    deq_fn gd = (deq_fn)sym(T[k].d);
    if (!gq || !gd)
      continue;
    for (int trial = 0; trial < 20; trial++) {
      float scale = trial < 10 ? 1.0f : (float)pow(10.0, trial - 15); /* 1e-5 .. 1e4 */
      for (int64_t i = 0; i < n; i++)
        x[i] = scale * kt_gauss(&rng) * (i % 61 == 0 ? 6.0f : 1.0f);
      if (trial == 1)
        for (int64_t i = 0; i < 512; i++)
          x[i] = 0; /* all-zero blocks */
      size_t rb = pl_dtype_row_bytes(T[k].t, n);
      gq(x, bg, n);
      gd(bg, yg, n);
      /* 1. decoding ggml's blocks */
      for (int ii = 0; ii < nisa; ii++) {
        kt_use(&isas[ii]);
        pl_dequant_row(T[k].t, bg, yp, n);
        CHECK(memcmp(yp, yg, sizeof(float) * n) == 0, "%s %s: our decode of ggml blocks differs",
              isas[ii].name, pl_dtype_name(T[k].t));
      }
      /* 2. our quantizer */
      CHECK(pl_quant_row(T[k].t, x, bp, n) == rb, "row bytes");
      if (T[k].t == PL_DT_Q8_0 || T[k].t == PL_DT_Q4_0) {
        CHECK(memcmp(bp, bg, rb) == 0, "%s: pl_quant_row differs from %s (trial %d)", pl_dtype_name(T[k].t),
              T[k].q, trial);
      } else {
        gd(bp, yg, n);
        pl_dequant_row(T[k].t, bp, yp, n);
        CHECK(memcmp(yp, yg, sizeof(float) * n) == 0, "%s: ggml decodes our blocks differently",
              pl_dtype_name(T[k].t));
        gd(bg, yo, n);
        double eo = rms_err(yp, x, n), eg = rms_err(yo, x, n);
        CHECK(eo <= 1.25 * eg + 1e-30, "%s: our rms error %.4g vs ggml %.4g (trial %d)", pl_dtype_name(T[k].t),
              eo, eg, trial);
        if (trial == 0)
          printf("%s rms error (gaussian): ours %.5f ggml %.5f\n", pl_dtype_name(T[k].t), eo, eg);
      }
    }
  }
  /* 3. conversions */
  float (*g_h2f)(uint16_t) = (float (*)(uint16_t))sym("ggml_fp16_to_fp32");
  uint16_t (*g_f2h)(float) = (uint16_t(*)(float))sym("ggml_fp32_to_fp16");
  float (*g_b2f)(uint16_t) = (float (*)(uint16_t))sym("ggml_bf16_to_fp32");
  uint16_t (*g_f2b)(float) = (uint16_t(*)(float))sym("ggml_fp32_to_bf16");
  if (g_h2f && g_f2h && g_b2f && g_f2b) {
    int bad_h = 0, bad_b = 0, bad_f2h = 0, bad_f2b = 0;
    for (uint32_t h = 0; h < 65536; h++) {
      float a = pl_f16_to_f32((uint16_t)h), b = g_h2f((uint16_t)h);
      if (memcmp(&a, &b, 4) != 0 && !(isnan(a) && isnan(b)))
        bad_h++;
      a = pl_bf16_to_f32((uint16_t)h);
      b = g_b2f((uint16_t)h);
      if (memcmp(&a, &b, 4) != 0 && !(isnan(a) && isnan(b)))
        bad_b++;
    }
    for (int i = 0; i < 200000; i++) {
      uint32_t u = (uint32_t)kt_next(&rng);
      float f;
      memcpy(&f, &u, 4);
      if (isnan(f))
        continue;
      bad_f2h += pl_f32_to_f16(f) != g_f2h(f);
      bad_f2b += pl_f32_to_bf16(f) != g_f2b(f);
    }
    CHECK(bad_h == 0, "f16->f32 differs from ggml for %d halves", bad_h);
    CHECK(bad_b == 0, "bf16->f32 differs from ggml for %d values", bad_b);
    CHECK(bad_f2h == 0, "f32->f16 differs from ggml for %d floats", bad_f2h);
    CHECK(bad_f2b == 0, "f32->bf16 differs from ggml for %d floats", bad_f2b);
  }
  pl_free(x);
  pl_free(yg);
  pl_free(yp);
  pl_free(yo);
  pl_free(bg);
  pl_free(bp);
  dlclose(lib);
  return check_summary("test_ggml_xcheck");
}
