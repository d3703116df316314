/* The CUDA backend's matmul op against both rooflines (issue 12): for each weight type and
 * Llama-3-8B projection shape, y[n][R] = x[n][C] · W^T at several batch sizes n. Each timed
 * call starts with L2 flushed (a 256 MiB memset), so the weights come from HBM as they do in a
 * model whose 15 GiB of weights do not fit the 50 MB L2. Prints the median GPU time (CUDA
 * events on the backend's stream) of the op as the engine calls it (the f32 -> bf16 input cast
 * included), the weight bytes read per second against the device-to-device copy bandwidth,
 * and the FLOPs against a cuBLAS bf16 GEMM of 8192^3 measured in the same run.
 * --groups instead times the matmuls of one input (q/k/v, gate/up; bf16) both ways:
 * `apart`, one matmul per weight, and `group`, matmul_group over weights that weight_join
 * placed together (one GEMM, then the split of its output), with the ratio apart/group.
 *   bench_cuda_matmul [--types bf16,q8_0,q4_0,q4_k,q6_k] [--batches 1,8,64,256,2048] [--iters 20]
 *                     [--groups] */
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"
#include "backend/cuda/cu_kernels.h"
#include "bench_util.h"
#include "util/error.h"

#define TRY(call)                                                                              \
  do {                                                                                         \
    if ((call) != 0) {                                                                         \
      fprintf(stderr, "%s:%d: %s failed (%s)\n", __FILE__, __LINE__, #call, pl_last_error());  \
      exit(1);                                                                                 \
    }                                                                                          \
  } while (0)

static const struct { const char *name; int rows, cols; } shapes[] = {
    {"q/o 4096x4096", 4096, 4096},       {"k/v 1024x4096", 1024, 4096},
    {"gate/up 14336x4096", 14336, 4096}, {"down 4096x14336", 4096, 14336},
    {"lm_head 128256x4096", 128256, 4096}, {"qkv 6144x4096", 6144, 4096},
    {"gate+up 28672x4096", 28672, 4096},
};

static const struct { const char *name; int rows[3], count; } groups[] = {
    {"q+k+v 4096+1024+1024 x4096", {4096, 1024, 1024}, 3},
    {"gate+up 2x14336 x4096", {14336, 14336, 0}, 2},
};

static uint64_t rng = 0x9e3779b97f4a7c15ull;

/* a weight of `type`: bf16 generated on the device; quantized blocks of random bytes with the
 * scales set to 2^-7 (f16 0x2000), uploaded */
static void make_weight(pl_backend *be, pl_tensor *t, pl_dtype type, int rows, int cols,
                        void **host) {
  memset(t, 0, sizeof *t);
  snprintf(t->name, sizeof t->name, "w");
  t->type = type;
  t->n_dims = 2;
  t->ne[0] = cols;
  t->ne[1] = rows;
  t->ne[2] = t->ne[3] = 1;
  t->nbytes = pl_dtype_row_bytes(type, cols) * (size_t)rows;
  *host = NULL;
  if (type == PL_DT_BF16) {
    t->random = 1;
    t->rand_stream = 7;
    t->rand_scale = 0.02f;
    TRY(be->ops->weight_fill_random(be, t));
    return;
  }
  uint8_t *b = malloc(t->nbytes);
  size_t bb = pl_dtype_block_bytes(type);
  for (size_t i = 0; i < t->nbytes; i++)
    b[i] = (uint8_t)bench_next_u32(&rng);
  size_t d_at = type == PL_DT_Q6_K ? 208 : 0; /* the block's f16 scale d (Q4_K: d, dmin) */
  for (size_t i = 0; i < t->nbytes; i += bb)
    for (size_t k = 0; k < (type == PL_DT_Q4_K ? 4u : 2u); k += 2) {
      b[i + d_at + k] = 0x00;
      b[i + d_at + k + 1] = 0x20;
    }
  t->data = b;
  *host = b;
  TRY(be->ops->weight_upload(be, t));
}

static void *flush;
static const size_t flush_bytes = (size_t)256 << 20;
static cudaEvent_t e0, e1;

/* median GPU time (us) of `iters` calls, each after an L2 flush */
#define TIME_US(iters, call)                                                                   \
  ({                                                                                           \
    float t_[1000];                                                                            \
    TRY(call); /* warm-up: scratch grown, algorithm picked */                                  \
    for (int i_ = 0; i_ < (iters); i_++) {                                                     \
      cudaMemsetAsync(flush, i_ & 0xff, flush_bytes, st);                                      \
      cudaEventRecord(e0, st);                                                                 \
      TRY(call);                                                                               \
      cudaEventRecord(e1, st);                                                                 \
      cudaEventSynchronize(e1);                                                                \
      cudaEventElapsedTime(&t_[i_], e0, e1);                                                   \
    }                                                                                          \
    qsort(t_, (size_t)(iters), sizeof *t_, bench_cmp_float);                                   \
    t_[(iters) / 2] * 1e3;                                                                     \
  })

/* the --groups table: every group of `groups` at every n, apart and joined */
static void bench_groups(pl_backend *be, cudaStream_t st, const int *batches, int nb, int iters,
                         const float *x, float *y, double copy_gbs) {
  printf("%-28s %5s %10s %10s %7s %9s\n", "group (bf16)", "n", "apart_us", "group_us", "ratio",
         "group_of_copy");
  for (size_t g = 0; g < sizeof groups / sizeof *groups; g++) {
    pl_tensor w[3], *wp[3];
    const pl_tensor *wc[3], *none[3] = {NULL, NULL, NULL};
    void *host;
    size_t bytes = 0;
    int cnt = groups[g].count;
    for (int i = 0; i < cnt; i++) {
      make_weight(be, &w[i], PL_DT_BF16, groups[g].rows[i], 4096, &host);
      wp[i] = &w[i];
      wc[i] = &w[i];
      bytes += w[i].nbytes;
    }
    TRY(be->ops->weight_join(be, wp, cnt));
    for (int bi = 0; bi < nb; bi++) {
      int n = batches[bi];
      float *ys[3];
      size_t off = 0;
      for (int i = 0; i < cnt; i++) {
        ys[i] = y + off;
        off += (size_t)n * groups[g].rows[i];
      }
      double apart = TIME_US(iters, ({
        int rc_ = 0;
        for (int i = 0; i < cnt && !rc_; i++)
          rc_ = be->ops->matmul(be, ys[i], x, n, wc[i], NULL);
        rc_;
      }));
      double group = TIME_US(iters, be->ops->matmul_group(be, ys, x, n, wc, none, cnt));
      double gbs = (double)bytes / (group * 1e-6) / 1e9;
      printf("%-28s %5d %10.1f %10.1f %6.2fx %12.0f%%\n", groups[g].name, n, apart, group,
             apart / group, 100 * gbs / copy_gbs);
      fflush(stdout);
    }
  }
}

int main(int argc, char **argv) {
  int batches[16] = {1, 8, 64, 256, 2048}, nb = 5, iters = 20, by_group = 0;
  const char *types = "bf16,q8_0,q4_0";
  for (int i = 1; i < argc; i++) {
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!strcmp(argv[i], "--groups"))
      by_group = 1;
    else if (v && !strcmp(argv[i], "--types"))
      types = argv[++i];
    else if (v && !strcmp(argv[i], "--batches"))
      nb = bench_parse_list(argv[++i], batches, 16);
    else if (v && !strcmp(argv[i], "--iters"))
      iters = atoi(argv[++i]);
    else {
      fprintf(stderr, "usage: bench_cuda_matmul [--types bf16,q8_0,q4_0,q4_k,q6_k] [--batches 1,8,64] "
                      "[--iters 20] [--groups]\n");
      return 2;
    }
  }
  if (iters < 1 || iters > 1000)
    iters = 20;
  pl_backend *be;
  TRY(pl_backend_cuda_create(0, &be));
  cudaStream_t st = (cudaStream_t)pl_backend_cuda_stream(be);
  double copy_gbs = be->ops->mem_bandwidth(be);

  /* the compute roofline: cuBLAS bf16 8192^3, f32 accumulation, median of 10 */
  const int P = 8192;
  void *A, *B, *Cm;
  if (cudaMalloc(&A, (size_t)P * P * 2) || cudaMalloc(&B, (size_t)P * P * 2) ||
      cudaMalloc(&Cm, (size_t)P * P * 2) || cudaMalloc(&flush, flush_bytes)) {
    fprintf(stderr, "out of GPU memory\n");
    return 1;
  }
  cudaMemsetAsync(A, 0x3c, (size_t)P * P * 2, st);
  cudaMemsetAsync(B, 0x3c, (size_t)P * P * 2, st);
  cublasHandle_t h;
  cublasCreate(&h);
  cublasSetStream(h, st);
  cudaEventCreate(&e0);
  cudaEventCreate(&e1);
  float t[1000];
  const float one = 1.f, zero = 0.f;
  for (int i = 0; i < 11; i++) {
    cudaEventRecord(e0, st);
    cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, P, P, P, &one, A, CUDA_R_16BF, P, B, CUDA_R_16BF, P,
                 &zero, Cm, CUDA_R_16BF, P, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
    cudaEventRecord(e1, st);
    cudaEventSynchronize(e1);
    cudaEventElapsedTime(&t[i > 0 ? i - 1 : 0], e0, e1);
  }
  qsort(t, 10, sizeof *t, bench_cmp_float);
  double peak_tf = 2.0 * P * P * (double)P / (t[5] * 1e-3) / 1e12;
  cublasDestroy(h);
  cudaFree(A);
  cudaFree(B);
  cudaFree(Cm);
  printf("%s\ncopy bandwidth %.0f GB/s; cuBLAS bf16 GEMM %d^3: %.0f TFLOP/s (the compute "
         "roofline here)\n", be->desc, copy_gbs, P, peak_tf);
  int maxn = 0;
  for (int i = 0; i < nb; i++)
    maxn = batches[i] > maxn ? batches[i] : maxn;
  size_t xn = (size_t)maxn * 14336, yn = (size_t)maxn * 128256;
  float *x = be->ops->alloc(be, xn * sizeof(float)), *y = be->ops->alloc(be, yn * sizeof(float));
  float *hx = malloc(xn * sizeof(float));
  if (!x || !y || !hx) {
    fprintf(stderr, "out of memory for n = %d\n", maxn);
    return 1;
  }
  for (size_t i = 0; i < xn; i++)
    hx[i] = (float)((int)(bench_next_u32(&rng) % 2001) - 1000) * 1e-3f;
  TRY(be->ops->upload(be, x, hx, xn * sizeof(float)));

  if (by_group) {
    bench_groups(be, st, batches, nb, iters, x, y, copy_gbs);
    types = "";
  } else {
    printf("%-6s %-20s %5s %10s %8s %8s %9s %8s\n", "type", "shape", "n", "us", "GB/s",
           "of_copy", "TFLOP/s", "of_peak");
  }
  char tl[128];
  snprintf(tl, sizeof tl, "%s", types);
  for (char *tn = strtok(tl, ","); tn; tn = strtok(NULL, ",")) {
    pl_dtype type = !strcmp(tn, "bf16")   ? PL_DT_BF16
                    : !strcmp(tn, "q8_0") ? PL_DT_Q8_0
                    : !strcmp(tn, "q4_0") ? PL_DT_Q4_0
                    : !strcmp(tn, "q4_k") ? PL_DT_Q4_K
                    : !strcmp(tn, "q6_k") ? PL_DT_Q6_K
                                          : PL_DT_AUTO;
    if (type == PL_DT_AUTO) {
      fprintf(stderr, "unknown type %s (bf16, q8_0, q4_0, q4_k, q6_k)\n", tn);
      return 2;
    }
    for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++) {
      pl_tensor w;
      void *host;
      make_weight(be, &w, type, shapes[s].rows, shapes[s].cols, &host);
      for (int bi = 0; bi < nb; bi++) {
        int n = batches[bi];
        double us = TIME_US(iters, be->ops->matmul(be, y, x, n, &w, NULL));
        double gbs = (double)w.nbytes / (us * 1e-6) / 1e9;
        double tf = 2.0 * n * (double)shapes[s].rows * shapes[s].cols / (us * 1e-6) / 1e12;
        printf("%-6s %-20s %5d %10.1f %8.0f %7.0f%% %9.1f %7.0f%%\n", tn, shapes[s].name, n, us,
               gbs, 100 * gbs / copy_gbs, tf, 100 * tf / peak_tf);
        fflush(stdout);
      }
      free(host);
    }
  }
  be->ops->free(be, x);
  be->ops->free(be, y);
  free(hx);
  cudaFree(flush);
  be->ops->destroy(be);
  return 0;
}
