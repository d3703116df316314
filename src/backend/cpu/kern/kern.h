/* CPU compute kernels with run-time ISA dispatch (AVX-512 > AVX2+FMA+F16C > NEON > scalar).
 * Everything here is pure computation on host memory: no allocation in the hot paths, no
 * OpenBLAS (this folder also builds for aarch64 under qemu). Multi-threaded entry points take
 * a pl_threadpool (NULL = single thread).
 *
 * Tolerances: every kernel is tested against a float64 reference in tests/kernels/. */
#ifndef PL_KERN_H
#define PL_KERN_H
#include <stddef.h>
#include <stdint.h>

#include "backend/tensor.h"
#include "util/threadpool.h"

/* ---- ISA selection ------------------------------------------------------------------ */
typedef enum { PL_ISA_SCALAR, PL_ISA_NEON, PL_ISA_AVX2, PL_ISA_AVX512 } pl_isa;
pl_isa pl_kern_isa(void);              /* the ISA in use (detected once) */
const char *pl_kern_isa_name(pl_isa isa);
/* Force an ISA for tests/benchmarks (must be supported by the CPU; returns 0 or -1).
 * PAGELLM_ISA=scalar|avx2|avx512|neon in the environment does the same at first use. */
int pl_kern_set_isa(pl_isa isa);
/* Dot-product extensions: AVX-512 VNNI (vpdpbusd) and AVX512-BF16 (vdpbf16ps) on x86,
 * dotprod (sdot) on ARM. Used when the CPU has them; tests turn them off to cover the
 * fallback paths too. set_dotext rebuilds the tables for the current ISA. */
int pl_kern_has_dotext(void);
void pl_kern_set_dotext(int allowed);

/* Conversions (pl_f16_to_f32 ...) and row (de)quantizers (pl_dequant_row, pl_quant_row) are
 * declared in backend/tensor.h, the public header the layers above use; they are implemented
 * here (kern_convert.c, kern_quant.c). */

/* ---- linear layers ------------------------------------------------------------------ */
/* y[i][r] = sum_c W[r][c] * x[i][c] for i < n_rows_x, r < W->ne[1], c < W->ne[0].
 * x: [n][W->ne[0]] f32, y: [n][W->ne[1]] f32. Any weight type of tensor.h. Uses integer dot
 * products for quantized types (activations quantized to 8 bits per block on the fly) and a
 * register-tiled path that reuses each weight row across up to several x rows, so batched
 * decode reads the weights once per tile of tokens. `work` is scratch of at least
 * pl_kern_matmul_work_size(W, n) bytes (64-byte aligned), shared by all threads. */
size_t pl_kern_matmul_work_size(const pl_tensor *W, int n);
/* 1 when, under the current ISA, pl_kern_matmul multiplies weights of type t with the
 * activations rounded to bf16 (round to nearest even): BF16 weights on AVX512-BF16, where
 * vdpbf16ps does twice the work of an f32 FMA and the weights need no conversion (as
 * llama.cpp and PyTorch do for bf16 models). Each activation row is rounded by itself, so
 * results still do not depend on the batch. */
int pl_kern_matmul_x_bf16(pl_dtype t);
void pl_kern_matmul(pl_threadpool *tp, float *y, const float *x, int n, const pl_tensor *W,
                    void *work);

/* ---- vector helpers (single thread; used by attention, norms, sampling) --------------- */
float pl_vec_dot_f32(int n, const float *a, const float *b);
void pl_vec_mad_f32(int n, float *y, const float *x, float s);    /* y += s * x */
void pl_vec_scale_f32(int n, float *y, float s);                  /* y *= s */
float pl_vec_max_f32(int n, const float *x);
/* RMSNorm: y = x / sqrt(mean(x^2) + eps) * w   (y may alias x) */
void pl_vec_rmsnorm_f32(int n, float *y, const float *x, const float *w, float eps);
/* SwiGLU: y = silu(g) * u */
void pl_vec_swiglu_f32(int n, float *y, const float *g, const float *u);
/* In-place softmax over n values; returns the sum before normalisation (for checks). */
float pl_vec_softmax_f32(int n, float *x);

/* ---- attention ------------------------------------------------------------------------ */
/* One tile of at most PL_ATTN_TILE keys of attention for up to PL_ATTN_LANES query rows at
 * once ("lanes": the query heads of one GQA group, or several tokens x heads of a prefill
 * chunk, all reading the same K/V), updating an online softmax:
 *
 *   qt   [hd][PL_ATTN_LANES]  the lanes' queries transposed and already scaled (lane j's
 *                             query is qt[d * PL_ATTN_LANES + j]); lanes >= nl are ignored
 *   k, v [nv][hd]             keys / values of positions pos0 .. pos0 + nv - 1
 *   lim  [PL_ATTN_LANES]      lane j sees keys at positions < lim[j] (causal mask); NULL =
 *                             every lane sees all nv keys
 *   m, l [PL_ATTN_LANES]      running max (start at -FLT_MAX) and sum of exp (start at 0)
 *   acc  [nl][hd]             running sum of exp(score - m) * v (start at 0)
 *
 * After the last tile, lane j's output is acc[j] / l[j]. Scores are a small SIMD matmul
 * (lanes across the vector, keys broadcast), exp is vectorised, and every key and value row
 * is loaded once per tile for all lanes. 1 <= nl <= PL_ATTN_LANES, 1 <= nv <= PL_ATTN_TILE,
 * hd >= 1. A lane must see at least one key before its output is read. `next` may be NULL. */
#define PL_ATTN_LANES 16
#define PL_ATTN_TILE 16
/* What the caller reads after this tile (the next tile's K and V rows at their stored size,
 * often in another KV block): the kernel pulls `lines` 64-byte lines from each of k and v
 * toward the L2 cache, one of each per step of its score loop, so that they arrive while it
 * computes. Spread out like this, paged K/V is read as fast as contiguous K/V; issued as one
 * burst at the block's start (128 lines for a 16-row f32 block), the prefetches stalled on the
 * core's miss buffers and paged attention ran 40-80% behind (docs/BENCHMARKS.md section 6). */
typedef struct {
  const void *k, *v;
  int lines;
} pl_attn_next;
void pl_attn_tile_f32(int nl, int hd, int nv, int pos0, const int32_t *lim, const float *qt,
                      const float *k, const float *v, float *m, float *l, float *acc,
                      const pl_attn_next *next);
#endif
