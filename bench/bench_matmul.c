/* Matmul benchmark: GB/s of weights streamed and GFLOP/s for n = 1, 4, 16, 64 activation
 * rows, per weight type, on a TinyLlama FFN-shaped matrix (ne0 = 2048 in, ne1 = 5632 out),
 * with 1 and 2 threads, next to a measured DRAM read bandwidth. Enough copies of the matrix
 * are cycled that every call streams its weights from DRAM, not from cache.
 * Usage: bench_matmul [--isa scalar|avx2|avx512|neon] [--type NAME] [--threads N | --only-threads N] [--no-dotext]
 *                     [--gemm]   (time pl_cpu_matmul, i.e. the OpenBLAS prefill path too,
 *                                 for n up to 512, to locate the crossover)
 *                     [--peak]   (first: the f32 FMA, bf16 and int8 (vpdpbusd) dot-product
 *                                 instruction peaks)
 *                     [--ns 1,16,64,512]  (the activation-row counts to time) */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backend/cpu/gemm.h"
#include "backend/cpu/membw.h"
#include "backend/cpu/kern/kern.h"
#include "util/alloc.h"
#include "util/threadpool.h"

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* ---- matrices ------------------------------------------------------------------------------ */
typedef struct {
  pl_dtype t;
  const char *name;
} btype;
static const btype TYPES[] = {
    {PL_DT_F32, "F32"},   {PL_DT_F16, "F16"},   {PL_DT_BF16, "BF16"},     {PL_DT_Q8_0, "Q8_0"},
    {PL_DT_Q4_0, "Q4_0"}, {PL_DT_Q4_K, "Q4_K"}, {PL_DT_Q6_K, "Q6_K"},     {PL_DT_MLX_Q4, "MLX_Q4"},
    {PL_DT_MLX_Q8, "MLX_Q8"},
};

#define COLS 2048
#define ROWS 5632
#define MIN_BYTES ((size_t)400 << 20) /* cycle copies so the working set exceeds any cache */

typedef struct {
  int ncopy;
  pl_tensor W[256];
  void *mem[256];
  size_t bytes; /* of one copy, incl. MLX scales/biases */
} wset;

static int make_set(wset *s, pl_dtype t) {
  memset(s, 0, sizeof *s);
  int mlx = t == PL_DT_MLX_Q4 || t == PL_DT_MLX_Q8;
  size_t rb = mlx ? (size_t)COLS * (t == PL_DT_MLX_Q4 ? 4 : 8) / 8 : pl_dtype_row_bytes(t, COLS);
  int gs = 64;
  size_t sbb = mlx ? (size_t)ROWS * (COLS / gs) * 2 : 0;
  s->bytes = rb * ROWS + 2 * sbb;
  s->ncopy = (int)(MIN_BYTES / s->bytes) + 1;
  if (s->ncopy > 256)
    s->ncopy = 256;
  float *row = pl_malloc(COLS * sizeof(float));
  uint8_t *first = NULL;
  for (int c = 0; c < s->ncopy; c++) {
    uint8_t *m = pl_malloc(s->bytes);
    if (!m)
      return -1;
    s->mem[c] = m;
    if (!first) {
      unsigned seed = 1;
      for (int r = 0; r < ROWS; r++) {
        if (mlx) {
          for (size_t i = 0; i < rb; i++)
            m[(size_t)r * rb + i] = (uint8_t)(seed = seed * 1103515245u + 12345u) >> 3;
        } else {
          for (int i = 0; i < COLS; i++)
            row[i] = (float)((seed = seed * 1103515245u + 12345u) >> 16) / 65536.0f - 0.5f;
          pl_quant_row(t, row, m + (size_t)r * rb, COLS);
        }
      }
      uint16_t *sb = (uint16_t *)(m + rb * ROWS);
      for (size_t i = 0; i < 2 * sbb / 2; i++)
        sb[i] = pl_f32_to_f16(0.01f);
      first = m;
    } else {
      memcpy(m, first, s->bytes);
    }
    pl_tensor *W = &s->W[c];
    snprintf(W->name, sizeof W->name, "w%d", c);
    W->type = t;
    W->n_dims = 2;
    W->ne[0] = COLS;
    W->ne[1] = ROWS;
    W->ne[2] = W->ne[3] = 1;
    W->data = m;
    W->nbytes = rb * ROWS;
    if (mlx) {
      W->scales = m + rb * ROWS;
      W->biases = m + rb * ROWS + sbb;
      W->sb_type = PL_DT_F16;
      W->group_size = gs;
    }
  }
  pl_free(row);
  return 0;
}

static void free_set(wset *s) {
  for (int c = 0; c < s->ncopy; c++)
    pl_free(s->mem[c]);
}

/* ---- instruction peaks (--peak): what a register-resident loop of one instruction reaches,
 * the ceiling to put the kernels' GFLOP/s against. 24 independent accumulators cover the
 * latency of both FMA pipes. x86 with AVX-512 only. */
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define PEAK_ITERS 20000000L
#define PEAK_ACC 24
typedef struct {
  int bf16; /* 0: vfmadd231ps, 1: vdpbf16ps, 2: vpdpbusd */
  float sink[8];
} peak_job;

__attribute__((target("avx512f"))) static float peak_fma_loop(void) {
  __m512 a[PEAK_ACC], x = _mm512_set1_ps(1.0001f), y = _mm512_set1_ps(0.9999f);
  for (int k = 0; k < PEAK_ACC; k++)
    a[k] = _mm512_set1_ps((float)k);
  for (long i = 0; i < PEAK_ITERS; i++)
#pragma GCC unroll 24
    for (int k = 0; k < PEAK_ACC; k++)
      a[k] = _mm512_fmadd_ps(x, y, a[k]);
  for (int k = 1; k < PEAK_ACC; k++)
    a[0] = _mm512_add_ps(a[0], a[k]);
  return _mm512_reduce_add_ps(a[0]);
}

__attribute__((target("avx512f,avx512bf16"))) static float peak_bf16_loop(void) {
  __m512 a[PEAK_ACC];
  __m512bh x = (__m512bh)_mm512_set1_epi16(0x3f80), y = (__m512bh)_mm512_set1_epi16(0x3f7f);
  for (int k = 0; k < PEAK_ACC; k++)
    a[k] = _mm512_set1_ps((float)k);
  for (long i = 0; i < PEAK_ITERS; i++)
#pragma GCC unroll 24
    for (int k = 0; k < PEAK_ACC; k++)
      a[k] = _mm512_dpbf16_ps(a[k], x, y);
  for (int k = 1; k < PEAK_ACC; k++)
    a[0] = _mm512_add_ps(a[0], a[k]);
  return _mm512_reduce_add_ps(a[0]);
}

/* In asm: through the intrinsic, gcc 12 copies or spills the accumulators every iteration. */
#define DPB(r) "vpdpbusd %%zmm1, %%zmm0, %%zmm" #r "\n\t"
__attribute__((target("avx512f,avx512vnni"))) static float peak_vnni_loop(void) {
  long n = PEAK_ITERS;
  __asm__ volatile("vpternlogd $0xff, %%zmm0, %%zmm0, %%zmm0\n\t"
                   "vpxord %%zmm1, %%zmm1, %%zmm1\n\t"
                   "1:\n\t" DPB(8) DPB(9) DPB(10) DPB(11) DPB(12) DPB(13) DPB(14) DPB(15) DPB(16) DPB(17)
                       DPB(18) DPB(19) DPB(20) DPB(21) DPB(22) DPB(23) DPB(24) DPB(25) DPB(26) DPB(27) DPB(28)
                           DPB(29) DPB(30) DPB(31) "dec %0\n\t"
                   "jnz 1b\n\t"
                   : "+r"(n)
                   :
                   : "xmm0", "xmm1", "xmm8", "xmm9", "xmm10", "xmm11", "xmm12", "xmm13", "xmm14", "xmm15",
                     "xmm16", "xmm17", "xmm18", "xmm19", "xmm20", "xmm21", "xmm22", "xmm23", "xmm24", "xmm25",
                     "xmm26", "xmm27", "xmm28", "xmm29", "xmm30", "xmm31", "cc");
  return (float)n;
}
#undef DPB

static void peak_task(void *ctx, int ith, int nth) {
  (void)nth;
  peak_job *j = ctx;
  j->sink[ith & 7] = j->bf16 == 2 ? peak_vnni_loop() : j->bf16 ? peak_bf16_loop() : peak_fma_loop();
}

static void print_peaks(pl_threadpool **tps, int max_threads) {
  __builtin_cpu_init();
  if (!__builtin_cpu_supports("avx512f")) {
    printf("peak: no AVX-512 here\n");
    return;
  }
  int has_bf16 = !!__builtin_cpu_supports("avx512bf16"), has_vnni = !!__builtin_cpu_supports("avx512vnni");
  for (int b = 0; b <= 2; b++)
    for (int t = 1; t <= max_threads && t <= 8; t++) {
      if ((b == 1 && !has_bf16) || (b == 2 && !has_vnni))
        continue;
      peak_job j = {.bf16 = b};
      double t0 = now();
      pl_threadpool_run(tps[t - 1], peak_task, &j);
      double sec = now() - t0;
      /* per instruction: 16 lanes x 2 flops (fma), 16 lanes x 2 bf16 pairs x 2 (dpbf16),
       * 16 lanes x 4 byte products x 2 (dpbusd; "flops" = multiply-adds x 2, as elsewhere) */
      double flops = (double)PEAK_ITERS * PEAK_ACC * (b == 2 ? 128 : b ? 64 : 32) * t;
      printf("peak %-22s %d thread%s: %7.1f GFLOP/s\n",
             b == 2 ? "vpdpbusd zmm (int8)" : b ? "vdpbf16ps zmm" : "vfmadd231ps zmm (f32)",
             t, t > 1 ? "s" : "", flops / sec / 1e9);
    }
}
#else
static void print_peaks(pl_threadpool **tps, int max_threads) {
  (void)tps;
  (void)max_threads;
  printf("peak: x86 AVX-512 only\n");
}
#endif

/* Seconds per call, best of a few ~0.25 s runs. */
static double time_mm(pl_threadpool *tp, wset *s, int n, const float *x, float *y, void *work, int gemm) {
  int copy = 0;
  double best = 1e30;
  for (int rep = 0; rep < 3; rep++) {
    int iters = 0;
    double t0 = now(), t;
    do {
      if (gemm)
        pl_cpu_matmul(tp, y, x, n, &s->W[copy], work);
      else
        pl_kern_matmul(tp, y, x, n, &s->W[copy], work);
      copy = (copy + 1) % s->ncopy;
      iters++;
      t = now() - t0;
    } while (t < 0.25 || iters < 3);
    best = t / iters < best ? t / iters : best;
  }
  return best;
}

int main(int argc, char **argv) {
  const char *only = NULL;
  int max_threads = 2, min_threads = 1, gemm = 0, peak = 0;
  int user_ns[16], nuser = 0;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--isa") && i + 1 < argc) {
      const char *names[] = {"scalar", "neon", "avx2", "avx512"};
      for (int k = 0; k < 4; k++)
        if (!strcmp(argv[i + 1], names[k]) && pl_kern_set_isa((pl_isa)k) != 0)
          fprintf(stderr, "isa %s not supported\n", names[k]);
      i++;
    } else if (!strcmp(argv[i], "--type") && i + 1 < argc) {
      only = argv[++i];
    } else if (!strcmp(argv[i], "--threads") && i + 1 < argc) {
      max_threads = atoi(argv[++i]);
    } else if (!strcmp(argv[i], "--only-threads") && i + 1 < argc) { /* time N threads only */
      max_threads = min_threads = atoi(argv[++i]);
    } else if (!strcmp(argv[i], "--no-dotext")) { /* VNNI / AVX512-BF16 / dotprod off */
      pl_kern_set_dotext(0);
    } else if (!strcmp(argv[i], "--gemm")) {
      gemm = 1;
    } else if (!strcmp(argv[i], "--peak")) {
      peak = 1;
    } else if (!strcmp(argv[i], "--ns") && i + 1 < argc) {
      for (char *p = argv[++i]; *p && nuser < 16;) {
        int v = (int)strtol(p, &p, 10);
        if (v > 0)
          user_ns[nuser++] = v;
        if (*p == ',')
          p++;
        else
          break;
      }
    } else {
      fprintf(stderr, "usage: %s [--isa NAME] [--type NAME] [--threads N | --only-threads N] [--no-dotext] [--gemm] [--peak] [--ns N,N,..]\n", argv[0]);
      return 2;
    }
  }
  printf("isa: %s%s   matrix: %d x %d (ne0 x ne1)\n", pl_kern_isa_name(pl_kern_isa()),
         pl_kern_isa() == PL_ISA_AVX512 && pl_kern_has_dotext() ? "+vnni" : "", COLS, ROWS);
  pl_threadpool *tps[8] = {0};
  for (int t = 1; t <= max_threads && t <= 8; t++) {
    if (pl_threadpool_create(t, &tps[t - 1]) != 0)
      return 1;
    printf("read bandwidth, %d thread%s: %.1f GB/s\n", t, t > 1 ? "s" : "", pl_cpu_read_bandwidth(tps[t - 1], 0));
  }
  if (peak)
    print_peaks(tps, max_threads);
  static const int NS[] = {1, 4, 16, 64};
  static const int NS_GEMM[] = {1, 4, 16, 32, 64, 96, 128, 192, 256, 512};
  const int *ns = nuser ? user_ns : gemm ? NS_GEMM : NS;
  int nns = nuser ? nuser : gemm ? 10 : 4;
  int nmax = 1;
  for (int k = 0; k < nns; k++)
    nmax = ns[k] > nmax ? ns[k] : nmax;
  float *x = pl_malloc(sizeof(float) * (size_t)nmax * COLS);
  float *y = pl_malloc(sizeof(float) * (size_t)nmax * ROWS);
  for (size_t i = 0; i < (size_t)nmax * COLS; i++)
    x[i] = (float)((i * 7919) % 1000) / 1000.0f - 0.5f;
  printf("%-7s %3s %4s %10s %8s %9s\n", "type", "thr", "n", "ms/call", "GB/s", "GFLOP/s");
  for (size_t ti = 0; ti < sizeof TYPES / sizeof TYPES[0]; ti++) {
    if (only && strcmp(only, TYPES[ti].name) != 0)
      continue;
    wset *s = pl_malloc(sizeof *s);
    if (!s || make_set(s, TYPES[ti].t) != 0) {
      fprintf(stderr, "out of memory\n");
      return 1;
    }
    size_t wsz = gemm ? pl_cpu_matmul_work_size(&s->W[0], nmax) : pl_kern_matmul_work_size(&s->W[0], nmax);
    void *work = pl_malloc(wsz + 64);
    for (int t = min_threads; t <= max_threads && t <= 8; t++)
      for (int k = 0; k < nns; k++) {
        int n = ns[k];
        double sec = time_mm(tps[t - 1], s, n, x, y, work, gemm);
        printf("%-7s %3d %4d %10.3f %8.1f %9.1f\n", TYPES[ti].name, t, n, sec * 1e3,
               (double)s->bytes / sec / 1e9, 2.0 * COLS * ROWS * n / sec / 1e9);
        fflush(stdout);
      }
    pl_free(work);
    free_set(s);
    pl_free(s);
  }
  pl_free(x);
  pl_free(y);
  for (int t = 0; t < 8; t++)
    pl_threadpool_destroy(tps[t]);
  return 0;
}
