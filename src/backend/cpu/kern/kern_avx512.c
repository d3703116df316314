/* AVX-512 kernels (F/BW/VL/DQ; VNNI per function via target attribute). Placeholder while
 * the AVX2 path is brought up: no slots overwritten yet. */
#include "backend/cpu/kern/kern_impl.h"

void pl_kern_fill_avx512(pl_kern_ops *o, int vnni) {
  (void)o;
  (void)vnni;
}
