/* Run-time ISA selection. The first call detects the CPU (cpuid through the compiler's
 * __builtin_cpu_supports on x86; NEON is baseline on aarch64, dotprod from HWCAP) and builds
 * the ops table: scalar slots first, then each ISA overwrites what it implements, so a
 * kernel missing on one ISA falls back to the next lower one. PAGELLM_ISA forces a path.
 * Switching ISA (tests/benchmarks) is not thread-safe with concurrent kernel calls. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cpu/kern/kern_impl.h"

#if defined(__aarch64__) && defined(__linux__)
#include <sys/auxv.h>
#ifndef HWCAP_ASIMDDP
#define HWCAP_ASIMDDP (1 << 20)
#endif
#endif

static pl_kern_ops g_ops, g_ops_small;
static pl_isa g_isa;
static int g_forced; /* the ISA was named (PAGELLM_ISA, pl_kern_set_isa): use it at every n */
static int g_dotext_allowed = 1;
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

#if (defined(__x86_64__) || defined(__i386__)) && defined(__clang__)
/* clang 14 (the fuzz build) does not know "f16c" in __builtin_cpu_supports: CPUID.1:ECX[29] */
static int has_f16c(void) {
  unsigned a, b, c, d;
  return __get_cpuid(1, &a, &b, &c, &d) && (c & (1u << 29));
}
#elif defined(__x86_64__) || defined(__i386__)
static int has_f16c(void) { return __builtin_cpu_supports("f16c"); }
#endif

static int cpu_has(pl_isa isa) {
  switch (isa) {
  case PL_ISA_SCALAR: return 1;
#if defined(__x86_64__) || defined(__i386__)
  case PL_ISA_AVX2:
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && has_f16c();
  case PL_ISA_AVX512:
    return cpu_has(PL_ISA_AVX2) && __builtin_cpu_supports("avx512f") &&
           __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
           __builtin_cpu_supports("avx512dq");
#endif
#if defined(__aarch64__)
  case PL_ISA_NEON: return 1;
#endif
  default: return 0;
  }
}

#if defined(__x86_64__) || defined(__i386__)
/* PAGELLM_NO_DOTPROD turns the dot-product extensions off here too (e.g. for float32
 * activations into BF16 matmuls). */
static int has_vnni(void) {
  return !getenv("PAGELLM_NO_DOTPROD") && cpu_has(PL_ISA_AVX512) && __builtin_cpu_supports("avx512vnni");
}
/* CPUID.(7,1):EAX[5] (gcc 12 and clang 14 disagree on the __builtin_cpu_supports name) */
static int has_avx512bf16(void) {
  unsigned a, b, c, d;
  return !getenv("PAGELLM_NO_DOTPROD") && cpu_has(PL_ISA_AVX512) &&
         __get_cpuid_count(7, 1, &a, &b, &c, &d) && (a & (1u << 5));
}
#endif

#if defined(__aarch64__)
static int has_dotprod(void) {
#if defined(__linux__)
  if (getenv("PAGELLM_NO_DOTPROD"))
    return 0;
  return (getauxval(AT_HWCAP) & HWCAP_ASIMDDP) != 0;
#elif defined(__APPLE__)
  return 1; /* every Apple Silicon core has dotprod */
#else
  return 0;
#endif
}
#endif

static void fill(pl_isa isa, pl_kern_ops *o) {
  pl_kern_fill_scalar(o);
#if defined(__x86_64__) || defined(__i386__)
  if (isa >= PL_ISA_AVX2)
    pl_kern_fill_avx2(o);
  if (isa >= PL_ISA_AVX512)
    pl_kern_fill_avx512(o, g_dotext_allowed && has_vnni(), g_dotext_allowed && has_avx512bf16());
#endif
#if defined(__aarch64__)
  if (isa == PL_ISA_NEON)
    pl_kern_fill_neon(o, g_dotext_allowed && has_dotprod());
#endif
}

/* Quantized matmuls of at most PL_MM_SMALL_N activation rows (decode) on an AVX-512 host take
 * the AVX2 kernels unless an ISA was named: measured on the AMD EPYC (Zen 4) dev host, 2
 * threads, 2048 x 5632, they were 1.5-1.95x faster at n = 1 for Q8_0, Q4_K and Q6_K, the
 * AVX-512 row-per-lane ones faster from n = 4 (kern_matmul.c's small_type; BENCHMARKS 15f):
 * their 32-row tiles pay off across several activation rows, and Zen 4 double-pumps 512-bit
 * FMAs. PAGELLM_MM_SMALL_AVX2=0 keeps AVX-512 at every n. */
static int small_avx2(pl_isa isa) {
  const char *e = getenv("PAGELLM_MM_SMALL_AVX2");
  return isa == PL_ISA_AVX512 && !g_forced && !(e && !strcmp(e, "0"));
}

static void build(pl_isa isa) {
  pl_kern_ops o;
  fill(isa, &o);
  g_ops = o;
  if (small_avx2(isa))
    fill(PL_ISA_AVX2, &g_ops_small);
  else
    g_ops_small = o;
  g_isa = isa;
}

static pl_isa best_isa(void) {
  const char *e = getenv("PAGELLM_ISA");
  if (e && *e) {
    static const char *names[] = {"scalar", "neon", "avx2", "avx512"};
    for (int i = 0; i < 4; i++)
      if (strcmp(e, names[i]) == 0 && cpu_has((pl_isa)i)) {
        g_forced = 1;
        return (pl_isa)i;
      }
    fprintf(stderr, "pagellm: PAGELLM_ISA=%s not supported here, using auto\n", e);
  }
  if (cpu_has(PL_ISA_AVX512))
    return PL_ISA_AVX512;
  if (cpu_has(PL_ISA_AVX2))
    return PL_ISA_AVX2;
  if (cpu_has(PL_ISA_NEON))
    return PL_ISA_NEON;
  return PL_ISA_SCALAR;
}

static void build_best(void) { build(best_isa()); }

/* First use may come from several pool workers at once (vector helpers in attention):
 * pthread_once makes exactly one of them build the table and the others wait for it. */
const pl_kern_ops *pl_kern_ops_get(void) {
  pthread_once(&g_once, build_best);
  return &g_ops;
}

const pl_kern_ops *pl_kern_ops_small(void) {
  pthread_once(&g_once, build_best);
  return &g_ops_small;
}

pl_isa pl_kern_isa(void) {
  pl_kern_ops_get();
  return g_isa;
}

const char *pl_kern_isa_name(pl_isa isa) {
  switch (isa) {
  case PL_ISA_SCALAR: return "scalar";
  case PL_ISA_NEON: return "neon";
  case PL_ISA_AVX2: return "avx2";
  case PL_ISA_AVX512: return "avx512";
  }
  return "?";
}

int pl_kern_set_isa(pl_isa isa) {
  if (!cpu_has(isa))
    return -1;
  pl_kern_ops_get(); /* consume the once, so a later first use cannot overwrite this */
  g_forced = 1;
  build(isa);
  return 0;
}

int pl_kern_has_dotext(void) {
#if defined(__x86_64__) || defined(__i386__)
  return has_vnni() || has_avx512bf16();
#elif defined(__aarch64__)
  return has_dotprod();
#else
  return 0;
#endif
}

void pl_kern_set_dotext(int allowed) {
  g_dotext_allowed = allowed;
  pl_kern_ops_get();
  build(g_isa);
}

int pl_mmt_of(pl_dtype t) {
  switch (t) {
  case PL_DT_F32: return PL_MMT_F32;
  case PL_DT_F16: return PL_MMT_F16;
  case PL_DT_BF16: return PL_MMT_BF16;
  case PL_DT_Q8_0: return PL_MMT_Q8_0;
  case PL_DT_Q4_0: return PL_MMT_Q4_0;
  case PL_DT_Q4_K: return PL_MMT_Q4_K;
  case PL_DT_Q6_K: return PL_MMT_Q6_K;
  case PL_DT_MLX_Q4: return PL_MMT_MLX4;
  case PL_DT_MLX_Q8: return PL_MMT_MLX8;
  case PL_DT_AUTO: break;
  }
  return -1;
}
