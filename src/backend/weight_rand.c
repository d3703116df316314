/* Host fill of weight_rand.h's values: the CPU backend's weight_fill_random, the tests'
 * reference for the CUDA fill. */
#include "backend/weight_rand.h"

#include "backend/tensor.h"
#include "util/error.h"

int pl_wrand_fill_host(void *dst, pl_dtype type, uint64_t first, uint64_t n, uint64_t stream,
                       float scale) {
  size_t es = type == PL_DT_F32 ? 4 : type == PL_DT_F16 || type == PL_DT_BF16 ? 2 : 0;
  if (!es)
    return pl_fail(PL_EUNSUPPORTED, "random weights are generated as f32, f16 or bf16, not %s",
                   pl_dtype_name(type));
  float x[1024];
  for (uint64_t done = 0; done < n;) {
    uint64_t k = n - done < 1024 ? n - done : 1024;
    for (uint64_t i = 0; i < k; i++)
      x[i] = pl_wrand_value(stream, first + done + i, scale);
    pl_quant_row(type, x, (char *)dst + done * es, (int64_t)k);
    done += k;
  }
  return 0;
}
