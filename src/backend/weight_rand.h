/* Random weights from a counter-based hash (`--load-format dummy`, `model-gen`): element i of a
 * tensor is a pure function of (seed, tensor id, i), so any device, any thread split and any
 * chunking produce the same values. This header is compiled by the C compiler (CPU backend,
 * model-gen, the dummy loader) and by nvcc (backend/cuda/cu_fill.cu): one definition, so the
 * host and the GPU agree bit for bit.
 *
 * The value. h = splitmix64's output for counter i of the tensor's stream; its four 16-bit
 * lanes are summed (Irwin-Hall, n = 4: bell-shaped, bounded at +-3.46 sigma) and centred, an
 * integer in [-131070, 131070] that a float holds exactly; one float multiplication by
 * `scale` (pl_wrand_scale(std)) gives mean 0 and standard deviation std. Integer arithmetic
 * and a single correctly rounded multiply: no libm, no FMA contraction, identical on every
 * IEEE device. Conversions to bf16/f16 round to nearest even on both sides. */
#ifndef PL_BACKEND_WEIGHT_RAND_H
#define PL_BACKEND_WEIGHT_RAND_H
#include <stdint.h>

#ifdef __CUDACC__
#define PL_WR_FN static inline __host__ __device__
#else
#define PL_WR_FN static inline
#endif

#define PL_WRAND_GOLDEN 0x9E3779B97F4A7C15ull
/* standard deviation of the sum of four independent uniforms on {0..65535}:
 * sqrt(4 * (65536^2 - 1) / 12) */
#define PL_WRAND_SUM_STD 37837.2270659093

/* splitmix64's finaliser */
PL_WR_FN uint64_t pl_wrand_mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

/* The stream (splitmix64 state) of tensor `id` under `seed`. */
PL_WR_FN uint64_t pl_wrand_stream(uint64_t seed, uint64_t id) {
  return pl_wrand_mix64(seed ^ pl_wrand_mix64((id + 1) * 0xD1B54A32D192ED03ull));
}

/* Element i of the stream, mean 0, standard deviation std when scale = pl_wrand_scale(std). */
PL_WR_FN float pl_wrand_value(uint64_t stream, uint64_t i, float scale) {
  uint64_t h = pl_wrand_mix64(stream + (i + 1) * PL_WRAND_GOLDEN);
  int32_t s = (int32_t)(h & 0xFFFF) + (int32_t)((h >> 16) & 0xFFFF) +
              (int32_t)((h >> 32) & 0xFFFF) + (int32_t)(h >> 48) - 131070;
  return (float)s * scale;
}

PL_WR_FN float pl_wrand_scale(double std) { return (float)(std / PL_WRAND_SUM_STD); }

#ifndef __CUDACC__
#include "backend/tensor.h"
/* Elements [first, first + n) of a tensor of `type` (F32, F16 or BF16) into dst, which points
 * at element `first`'s storage; bf16/f16 round to nearest even (pl_quant_row). Host memory,
 * one thread. PL_EUNSUPPORTED for another type. */
int pl_wrand_fill_host(void *dst, pl_dtype type, uint64_t first, uint64_t n, uint64_t stream,
                       float scale);
#endif
#endif
