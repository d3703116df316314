/* Internal contract between the matmul driver (kern_matmul.c), the dispatcher
 * (kern_dispatch.c) and the per-ISA kernel files (kern_scalar.c, *_avx2.c, *_avx512.c,
 * *_neon.c). Not a public header.
 *
 * Quantized weights are multiplied with activations quantized once per call to 8-bit blocks
 * of PL_QK=32 ("qx" rows). A qx row of `cols` values is, each part 64-byte aligned:
 *
 *   qs [cols]     int8   q = nearbyint(x * 127/amax), |q| <= 127 (never -128)
 *   d  [nb]       f32    amax/127 of each block of 32      (x ~= d * q)
 *   s  [nb]       f32    d * sum(q) of each block           (for bias/min terms)
 *   zs [cols/4]   int32  -z * (q[4k]+q[4k+1]+q[4k+2]+q[4k+3])  (only when z != 0);
 *                 with qx_bsum = 32 (16) set, compacted afterwards to zs[i] = -z * sum(q)
 *                 of block i (of the i-th 16 elements)
 *                 For MLX weights (z = 0) the same space instead holds f32 per-group sums
 *                 of s (one per group_size elements), for the bias term of every row.
 *
 * zs lets x86 kernels that multiply *unsigned* weight codes u (u8 x s8: maddubs / vpdpbusd,
 * whose int32 lane k covers elements 4k..4k+3) get sum((u - z) * q) exactly by starting the
 * lane accumulator at zs[k]. Every ISA fills qs/d/s identically (same float ops, round to
 * nearest even), so tests can reproduce the activations bit for bit. */
#ifndef PL_KERN_IMPL_H
#define PL_KERN_IMPL_H
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "backend/cpu/kern/kern.h"

#define PL_QK 32

/* Internal weight-type index of the matmul tables. */
typedef enum {
  PL_MMT_F32, PL_MMT_F16, PL_MMT_BF16, PL_MMT_Q8_0, PL_MMT_Q4_0, PL_MMT_Q4_K, PL_MMT_Q6_K,
  PL_MMT_MLX4, PL_MMT_MLX8, PL_MMT_COUNT
} pl_mmt;

static inline size_t pl_align64(size_t n) { return (n + 63) & ~(size_t)63; }

/* Byte offsets inside one qx row and the row stride. */
typedef struct {
  int64_t cols, nb;
  size_t off_d, off_s, off_zs, stride;
} pl_qx_layout;

static inline pl_qx_layout pl_qx_layout_for(int64_t cols) {
  pl_qx_layout l;
  l.cols = cols;
  l.nb = cols / PL_QK;
  l.off_d = pl_align64((size_t)cols);
  l.off_s = l.off_d + pl_align64((size_t)l.nb * 4);
  l.off_zs = l.off_s + pl_align64((size_t)l.nb * 4);
  l.stride = l.off_zs + pl_align64((size_t)cols);
  return l;
}

/* Bytes of one activation row rounded to bf16 (x_is_bf16 kernels). */
static inline size_t pl_bf16_x_stride(int64_t cols) { return pl_align64((size_t)cols * 2); }

/* One matmul call as the row kernels see it. */
typedef struct {
  const pl_tensor *W;
  int64_t rows, cols;  /* W->ne[1], W->ne[0] */
  size_t wrb;          /* bytes of one weight row */
  size_t xrb;          /* bytes of one activation row as the kernel reads it (f32 or qx) */
  int n;               /* activation rows */
  const float *x;      /* [n][cols] f32 (float weight types) */
  const uint8_t *qx;   /* n qx rows (quantized weight types), or n bf16 rows (x_is_bf16) */
  pl_qx_layout ql;
  float *y;            /* [n][rows] */
} pl_mm_ctx;

/* Computes y[j][r] for all j < n and r0 <= r < r1. */
typedef void (*pl_mm_rows_fn)(const pl_mm_ctx *c, int64_t r0, int64_t r1);
/* Quantize `n` activation rows into qx rows (layout l), zero point z for zs. */
typedef void (*pl_quant_x_fn)(const float *x, int64_t cols, int z, uint8_t *qxrow,
                              const pl_qx_layout *l);
typedef void (*pl_dequant_fn)(const void *row, float *y, int64_t n);

typedef struct {
  pl_mm_rows_fn mm[PL_MMT_COUNT];
  int qx_z[PL_MMT_COUNT];      /* zero point the mm kernel wants in zs (0 = none) */
  /* 32 or 16: after quantizing, zs[i] holds the sum of the entries of the i-th 32 (16)
   * elements (-z * sum(q) over them), for kernels that keep a weight row per int32 lane */
  int qx_bsum[PL_MMT_COUNT];
  int mm_rows_align[PL_MMT_COUNT]; /* preferred row-chunk multiple for thread splits */
  pl_quant_x_fn quant_x;
  /* Set where mm[t] multiplies bf16 pairs (AVX512-BF16): the driver first rounds x to bf16
   * rows in `work` with x_bf16 (row stride pl_bf16_x_stride), and the kernel reads those. */
  int x_is_bf16[PL_MMT_COUNT];
  pl_quant_x_fn x_bf16;
  pl_dequant_fn dequant[PL_MMT_COUNT]; /* non-MLX types; NULL = generic scalar */
  float (*dot)(int n, const float *a, const float *b);
  void (*mad)(int n, float *y, const float *x, float s);
  void (*scale)(int n, float *y, float s);
  float (*max)(int n, const float *x);
  void (*rmsnorm)(int n, float *y, const float *x, const float *w, float eps);
  void (*swiglu)(int n, float *y, const float *g, const float *u);
  float (*softmax)(int n, float *x);
  void (*attn_tile)(int nl, int hd, int nv, int pos0, const int32_t *lim, const float *qt,
                    const float *k, const float *v, float *m, float *l, float *acc,
                    const pl_attn_next *next);
} pl_kern_ops;

/* The active table (after dispatch). */
const pl_kern_ops *pl_kern_ops_get(void);
/* The table for quantized matmuls of at most PL_MM_SMALL_N activation rows: the AVX2 one on
 * an AVX-512 host where no ISA was named (kern_dispatch.c says why), else pl_kern_ops_get's. */
#define PL_MM_SMALL_N 2
const pl_kern_ops *pl_kern_ops_small(void);
int pl_mmt_of(pl_dtype t); /* -1 if unknown */

/* Tile loop shared by the SIMD row kernels. TILE(c, r, nr, rs, j0, nx) computes
 * y[j0 .. j0+nx)[r + i*rs] for i < nr <= RW.
 *
 * Decode (n <= NX, one activation tile): the thread's rows are cut into RW contiguous
 * sub-ranges and a tile takes one row from each, so the weights are read as RW long
 * sequential streams. (Consecutive rows per tile made one stream jump every tile; the
 * hardware prefetchers kept retraining and n=1 quantized kernels got only 5-8 GB/s.)
 *
 * Batched (n > NX), three cache levels:
 *   x block: activation rows totalling <= ~384 KiB (stays in L2; all of them when n is small)
 *   w block: weight rows totalling ~16 KiB (stays in L1/L2)
 *   tile:    RW consecutive weight rows x NX activation rows in registers
 * so each weight byte comes from DRAM once per x block and each activation tile is reused
 * across the whole w block.   for x block: for w block: for x tile: for RW rows: TILE   */
#define PL_MM_LOOP(c, r0, r1, RW, NX, TILE)                                              \
  do {                                                                                   \
    if ((c)->n <= (NX)) {                                                                \
      int64_t s_ = ((r1) - (r0)) / (RW);                                                 \
      for (int64_t t_ = 0; t_ < s_; t_++)                                                \
        TILE((c), (r0) + t_, (RW), s_, 0, (c)->n);                                       \
      for (int64_t r_ = (r0) + s_ * (RW); r_ < (r1); r_++)                               \
        TILE((c), r_, 1, 1, 0, (c)->n);                                                  \
      break;                                                                             \
    }                                                                                    \
    int64_t rb_ = (int64_t)(16384 / ((c)->wrb ? (c)->wrb : 1));                          \
    rb_ = rb_ < (RW) ? (RW) : rb_ / (RW) * (RW);                                         \
    int xbn_ = (int)(393216 / ((c)->xrb ? (c)->xrb : 1));                                \
    xbn_ = xbn_ < (NX) ? (NX) : xbn_ / (NX) * (NX);                                      \
    for (int xs_ = 0; xs_ < (c)->n; xs_ += xbn_) {                                       \
      int xe_ = (c)->n - xs_ < xbn_ ? (c)->n : xs_ + xbn_;                               \
      for (int64_t rs_ = (r0); rs_ < (r1); rs_ += rb_) {                                 \
        int64_t re_ = rs_ + rb_ < (r1) ? rs_ + rb_ : (r1);                               \
        for (int j0_ = xs_; j0_ < xe_; j0_ += (NX)) {                                    \
          int nx_ = xe_ - j0_ < (NX) ? xe_ - j0_ : (NX);                                 \
          for (int64_t r_ = rs_; r_ < re_; r_ += (RW))                                   \
            TILE((c), r_, (int)(re_ - r_ < (RW) ? re_ - r_ : (RW)), 1, j0_, nx_);        \
        }                                                                                \
      }                                                                                  \
    }                                                                                    \
  } while (0)

#define PL_QX_QS(c, j) ((const int8_t *)((c)->qx + (size_t)(j) * (c)->ql.stride))
#define PL_QX_D(c, j) ((const float *)((c)->qx + (size_t)(j) * (c)->ql.stride + (c)->ql.off_d))
#define PL_QX_S(c, j) ((const float *)((c)->qx + (size_t)(j) * (c)->ql.stride + (c)->ql.off_s))
#define PL_QX_ZS(c, j) ((const int32_t *)((c)->qx + (size_t)(j) * (c)->ql.stride + (c)->ql.off_zs))
#define PL_Y(c, j, r) ((c)->y[(size_t)(j) * (size_t)(c)->rows + (size_t)(r)])
#define PL_WROW(c, r) ((const uint8_t *)(c)->W->data + (size_t)(r) * (c)->wrb)

/* Fillers: each overwrites the slots its ISA implements. */
void pl_kern_fill_scalar(pl_kern_ops *o);
void pl_attn_tile_scalar(int nl, int hd, int nv, int pos0, const int32_t *lim, const float *qt,
                         const float *k, const float *v, float *m, float *l, float *acc,
                         const pl_attn_next *next);
#if defined(__x86_64__) || defined(__i386__)
void pl_kern_fill_avx2(pl_kern_ops *o);
void pl_kern_fill_avx512(pl_kern_ops *o, int vnni, int bf16);
void pl_attn_tile_avx2(int nl, int hd, int nv, int pos0, const int32_t *lim, const float *qt,
                       const float *k, const float *v, float *m, float *l, float *acc,
                       const pl_attn_next *next);
void pl_attn_tile_avx512(int nl, int hd, int nv, int pos0, const int32_t *lim, const float *qt,
                         const float *k, const float *v, float *m, float *l, float *acc,
                         const pl_attn_next *next);
#endif
#if defined(__aarch64__)
void pl_kern_fill_neon(pl_kern_ops *o, int dotprod);
void pl_attn_tile_neon(int nl, int hd, int nv, int pos0, const int32_t *lim, const float *qt,
                       const float *k, const float *v, float *m, float *l, float *acc,
                       const pl_attn_next *next);
#endif

/* The prefetches of pl_attn_next (kern.h): one line of K and of V per call while *i < lines,
 * and all that remain. */
static inline void pl_attn_next_step(const pl_attn_next *n, int *i) {
  if (n && *i < n->lines) {
    __builtin_prefetch((const char *)n->k + 64 * (size_t)*i, 0, 2);
    __builtin_prefetch((const char *)n->v + 64 * (size_t)*i, 0, 2);
    ++*i;
  }
}
static inline void pl_attn_next_rest(const pl_attn_next *n, int i) {
  while (n && i < n->lines)
    pl_attn_next_step(n, &i);
}

/* Scalar helpers shared by kernels (kern_quant.c). */
void pl_quant_x_scalar(const float *x, int64_t cols, int z, uint8_t *qxrow,
                       const pl_qx_layout *l);
float pl_sb_to_f32(const void *p, pl_dtype sb_type, int64_t i); /* MLX scale/bias */
static inline void pl_q4k_scale_min(int j, const uint8_t *q, int *sc, int *m) {
  if (j < 4) {
    *sc = q[j] & 63;
    *m = q[j + 4] & 63;
  } else {
    *sc = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
    *m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
  }
}

/* All 8 scales and 8 mins of a Q4_K block at once, with 32-bit word operations (same result
 * as pl_q4k_scale_min for j = 0..7). Bytes A=s[0..3], B=s[4..7], C=s[8..11]:
 *   sc[0..3] = A & 63          m[0..3] = B & 63
 *   sc[4..7] = (C & 15) | (A >> 6) << 4     m[4..7] = (C >> 4) | (B >> 6) << 4   (per byte) */
static inline void pl_q4k_unpack(const uint8_t *s, uint8_t sc[8], uint8_t m[8]) {
  uint32_t a, b, c, v[4];
  memcpy(&a, s, 4);
  memcpy(&b, s + 4, 4);
  memcpy(&c, s + 8, 4);
  v[0] = a & 0x3f3f3f3fu;
  v[1] = (c & 0x0f0f0f0fu) | (((a >> 6) & 0x03030303u) << 4);
  v[2] = b & 0x3f3f3f3fu;
  v[3] = ((c >> 4) & 0x0f0f0f0fu) | (((b >> 6) & 0x03030303u) << 4);
  memcpy(sc, v, 8);
  memcpy(m, v + 2, 8);
}

/* ggml block structs (byte-exact; fp16 fields as raw uint16). */
typedef struct { uint16_t d; int8_t qs[32]; } pl_blk_q8_0;          /* 34 B */
typedef struct { uint16_t d; uint8_t qs[16]; } pl_blk_q4_0;         /* 18 B */
typedef struct {
  uint16_t d, dmin;
  uint8_t scales[12]; /* 8 x (6-bit scale, 6-bit min), see pl_q4k_scale_min */
  uint8_t qs[128];    /* 64-element chunks: low nibbles = first 32, high = next 32 */
} pl_blk_q4_k;        /* 144 B */
typedef struct {
  uint8_t ql[128];    /* low 4 bits */
  uint8_t qh[64];     /* high 2 bits */
  int8_t scales[16];  /* per 16 elements */
  uint16_t d;
} pl_blk_q6_k;        /* 210 B */
_Static_assert(sizeof(pl_blk_q8_0) == 34, "q8_0");
_Static_assert(sizeof(pl_blk_q4_0) == 18, "q4_0");
_Static_assert(sizeof(pl_blk_q4_k) == 144, "q4_K");
_Static_assert(sizeof(pl_blk_q6_k) == 210, "q6_K");
#endif
