#include "backend/tensor.h"

int pl_dtype_block_size(pl_dtype t) {
  switch (t) {
  case PL_DT_F32: case PL_DT_F16: case PL_DT_BF16: return 1;
  case PL_DT_Q4_0: case PL_DT_Q8_0: return 32;
  case PL_DT_Q4_K: case PL_DT_Q6_K: return 256;
  case PL_DT_MLX_Q4: return 8;  /* one uint32 word */
  case PL_DT_MLX_Q8: return 4;
  case PL_DT_AUTO: break;
  }
  return 0;
}

size_t pl_dtype_block_bytes(pl_dtype t) {
  switch (t) {
  case PL_DT_F32: return 4;
  case PL_DT_F16: case PL_DT_BF16: return 2;
  case PL_DT_Q4_0: return 2 + 16;
  case PL_DT_Q8_0: return 2 + 32;
  case PL_DT_Q4_K: return 2 + 2 + 12 + 128;
  case PL_DT_Q6_K: return 128 + 64 + 16 + 2;
  case PL_DT_MLX_Q4: case PL_DT_MLX_Q8: return 4;
  case PL_DT_AUTO: break;
  }
  return 0;
}

const char *pl_dtype_name(pl_dtype t) {
  switch (t) {
  case PL_DT_F32: return "F32";
  case PL_DT_F16: return "F16";
  case PL_DT_BF16: return "BF16";
  case PL_DT_Q4_0: return "Q4_0";
  case PL_DT_Q8_0: return "Q8_0";
  case PL_DT_Q4_K: return "Q4_K";
  case PL_DT_Q6_K: return "Q6_K";
  case PL_DT_MLX_Q4: return "MLX_Q4";
  case PL_DT_MLX_Q8: return "MLX_Q8";
  case PL_DT_AUTO: return "auto";
  }
  return "unknown";
}

size_t pl_dtype_row_bytes(pl_dtype t, int64_t n) {
  int bs = pl_dtype_block_size(t);
  if (bs == 0 || n < 0 || n % bs != 0)
    return 0;
  return (size_t)(n / bs) * pl_dtype_block_bytes(t);
}

int64_t pl_tensor_nelem(const pl_tensor *t) {
  int64_t n = 1;
  for (int i = 0; i < t->n_dims; i++)
    n *= t->ne[i];
  return n;
}
