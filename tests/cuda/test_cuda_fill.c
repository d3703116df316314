/* Random weights on the GPU (`--load-format dummy`): the device fill must give exactly the bytes
 * of the host fill, so a dummy model is the same model on the CPU and on CUDA, and the same as
 * `model-gen`'s GGUF.
 *  1. pl_cu_fill_random (cu_fill.cu) against pl_wrand_fill_host (weight_rand.c), memcmp, for
 *     bf16, f16 and f32; sizes 1, odd, and past the grid's 65535 x 256 threads (grid-stride).
 *  2. Through the op table: weight_fill_random on the CUDA and the CPU backend, then a matmul
 *     with the identity as input, which returns W^T exactly (bf16/f16 weights: the products are
 *     w * 1 and the sums add zeros; no rounding anywhere), compared bit for bit; the GPU's free
 *     memory drops by the tensor's size (dummy weights count like file weights).
 *  3. A dummy model (tests/data/models/dummy-llama) goes to the GPU through pl_model_upload:
 *     every matrix generated there (a device copy, no host data).
 * Without a GPU it prints one line and exits 77 (CTest: skipped). */
#include <cuda_runtime.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"
#include "backend/cpu/kern/kern.h"
#include "backend/cuda/cu_fill.h"
#include "backend/weight_rand.h"
#include "check.h"
#include "model/model.h"
#include "util/error.h"

static const pl_dtype types[] = {PL_DT_BF16, PL_DT_F16, PL_DT_F32};

static void kernel_vs_host(void) {
  const uint64_t sizes[] = {1, 2, 7, 4097, 1000003, 70000001};
  for (int ti = 0; ti < 3; ti++)
    for (size_t k = 0; k < sizeof sizes / sizeof *sizes; k++) {
      pl_dtype t = types[ti];
      uint64_t n = sizes[k];
      size_t es = t == PL_DT_F32 ? 4 : 2, bytes = (size_t)n * es;
      uint64_t stream = pl_wrand_stream(k * 7 + (uint64_t)ti, 1000 + k);
      float scale = pl_wrand_scale(k == 3 ? 1.5 : 0.02); /* 1.5: f16's larger exponents too */
      void *d = NULL, *h = malloc(bytes), *ref = malloc(bytes);
      CHECK(cudaMalloc(&d, bytes) == cudaSuccess, "cudaMalloc %zu", bytes);
      CHECK(pl_cu_fill_random(d, t, n, stream, scale, NULL) == 0, "fill launch");
      CHECK(cudaMemcpy(h, d, bytes, cudaMemcpyDeviceToHost) == cudaSuccess, "copy back");
      CHECK(pl_wrand_fill_host(ref, t, 0, n, stream, scale) == 0, "host fill");
      size_t bad = 0, first = (size_t)-1;
      for (size_t i = 0; i < n; i++)
        if (memcmp((char *)h + i * es, (char *)ref + i * es, es) && bad++ == 0)
          first = i;
      CHECK(bad == 0, "%s n=%llu: %zu elements differ, first at %zu", pl_dtype_name(t),
            (unsigned long long)n, bad, first);
      cudaFree(d);
      free(h);
      free(ref);
    }
  CHECK(pl_cu_fill_random(NULL, PL_DT_Q8_0, 32, 1, 1.0f, NULL) != 0, "q8_0 must be refused");
}

static pl_tensor rand_tensor(pl_dtype t, int64_t cols, int64_t rows, uint64_t stream) {
  pl_tensor w;
  memset(&w, 0, sizeof w);
  snprintf(w.name, sizeof w.name, "w_%s", pl_dtype_name(t));
  w.type = t;
  w.n_dims = 2;
  w.ne[0] = cols;
  w.ne[1] = rows;
  w.ne[2] = w.ne[3] = 1;
  w.nbytes = pl_dtype_row_bytes(t, cols) * (size_t)rows;
  w.random = 1;
  w.rand_stream = stream;
  w.rand_scale = pl_wrand_scale(0.02);
  return w;
}

static void through_ops(pl_backend *cpu, pl_backend *gpu) {
  const int R = 48, C = 64;
  for (int ti = 0; ti < 2; ti++) { /* bf16, f16 */
    pl_dtype t = types[ti];
    pl_tensor wc = rand_tensor(t, C, R, 77 + (uint64_t)ti), wg = wc;
    CHECK(cpu->ops->weight_fill_random(cpu, &wc) == 0, "cpu fill: %s", pl_last_error());
    CHECK(gpu->ops->weight_fill_random(gpu, &wg) == 0, "cuda fill: %s", pl_last_error());
    float *x = calloc((size_t)C * C, sizeof *x), *yc = malloc((size_t)C * R * 4),
          *yg = malloc((size_t)C * R * 4);
    for (int i = 0; i < C; i++)
      x[i * C + i] = 1.0f;
    float *xc = cpu->ops->alloc(cpu, (size_t)C * C * 4), *xg = gpu->ops->alloc(gpu, (size_t)C * C * 4);
    float *ycd = cpu->ops->alloc(cpu, (size_t)C * R * 4), *ygd = gpu->ops->alloc(gpu, (size_t)C * R * 4);
    cpu->ops->upload(cpu, xc, x, (size_t)C * C * 4);
    gpu->ops->upload(gpu, xg, x, (size_t)C * C * 4);
    /* matmul reads nothing of the plan: one sequence of C tokens in blocks 1..4 */
    int32_t tok[64], pos[64], slot[64], qsl[2] = {0, C}, lens[1] = {C}, bt[4] = {1, 2, 3, 4},
            rows[1] = {C - 1};
    for (int i = 0; i < C; i++) {
      tok[i] = i;
      pos[i] = i;
      slot[i] = 16 + i;
    }
    pl_step_plan p = {.block_size = 16, .n_tokens = C, .n_seqs = 1, .max_blocks_per_seq = 4,
                      .token_ids = tok, .positions = pos, .slot_mapping = slot,
                      .query_start_loc = qsl, .seq_lens = lens, .block_tables = bt,
                      .n_logits = 1, .logits_rows = rows};
    CHECK(cpu->ops->step_begin(cpu, &p) == 0 && gpu->ops->step_begin(gpu, &p) == 0,
          "step_begin: %s", pl_last_error());
    CHECK(cpu->ops->matmul(cpu, ycd, xc, C, &wc, NULL) == 0, "cpu matmul");
    CHECK(gpu->ops->matmul(gpu, ygd, xg, C, &wg, NULL) == 0, "cuda matmul: %s", pl_last_error());
    CHECK(cpu->ops->step_end(cpu) == 0 && gpu->ops->step_end(gpu) == 0, "step_end: %s",
          pl_last_error());
    cpu->ops->download(cpu, yc, ycd, (size_t)C * R * 4);
    gpu->ops->download(gpu, yg, ygd, (size_t)C * R * 4);
    CHECK(!memcmp(yc, yg, (size_t)C * R * 4), "%s: W^T through matmul differs between the CPU "
          "and the GPU", pl_dtype_name(t));
    /* and both are the generator's values, decoded independently of the backends */
    static float ref[48 * 64];
    for (int r = 0; r < R; r++)
      for (int c = 0; c < C; c++) {
        uint16_t h16 = 0;
        pl_wrand_fill_host(&h16, t, (uint64_t)(r * C + c), 1, wc.rand_stream, wc.rand_scale);
        ref[c * R + r] = t == PL_DT_BF16 ? pl_bf16_to_f32(h16) : pl_f16_to_f32(h16);
      }
    CHECK(!memcmp(yc, ref, sizeof ref), "%s: W^T is not the generator's values",
          pl_dtype_name(t));
    cpu->ops->free(cpu, xc);
    cpu->ops->free(cpu, ycd);
    gpu->ops->free(gpu, xg);
    gpu->ops->free(gpu, ygd);
    free(x);
    free(yc);
    free(yg);
  }
  /* memory accounting: a 256 MiB fill takes 256 MiB of the GPU */
  size_t f0 = 0, f1 = 0, tot = 0;
  gpu->ops->mem_info(gpu, &f0, &tot);
  pl_tensor big = rand_tensor(PL_DT_BF16, 8192, 16384, 5);
  CHECK(gpu->ops->weight_fill_random(gpu, &big) == 0, "big fill: %s", pl_last_error());
  gpu->ops->mem_info(gpu, &f1, &tot);
  CHECK(f0 >= f1 + big.nbytes, "free %zu -> %zu after a %zu-byte fill", f0, f1, big.nbytes);
}

int main(void) {
  int ndev = 0;
  if (cudaGetDeviceCount(&ndev) != cudaSuccess || ndev == 0) {
    printf("test_cuda_fill: no GPU, skipped\n");
    return 77;
  }
  kernel_vs_host();
  pl_backend *cpu = NULL, *gpu = NULL;
  CHECK(pl_backend_cpu_create(0, &cpu) == 0, "cpu backend");
  CHECK(pl_backend_cuda_create(0, &gpu) == 0, "cuda backend: %s", pl_last_error());
  if (cpu && gpu)
    through_ops(cpu, gpu);
  /* a whole dummy model onto the GPU */
  if (gpu) {
    pl_model *m = NULL;
    pl_dummy_spec ds = {data_path("models/dummy-llama/config.json"), PL_DT_BF16, 3};
    CHECK(pl_model_load_dummy(&ds, &m) == 0, "%s", pl_last_error());
    if (m)
      CHECK(pl_model_upload(m, gpu, 0) == 0, "upload: %s", pl_last_error());
    CHECK(m && m->tok_embd.dev && m->layers[1].w_down.dev && !m->layers[1].w_down.data,
          "generated on the device, no host copy");
    gpu->ops->destroy(gpu);
    pl_model_free(m);
  }
  if (cpu)
    cpu->ops->destroy(cpu);
  return check_summary("test_cuda_fill");
}
