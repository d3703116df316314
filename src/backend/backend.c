/* Backend selection from a device name ("auto", "cpu", "cuda", "cuda:N"). */
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"
#include "util/error.h"
#include "util/log.h"

#ifndef PL_CUDA
int pl_backend_cuda_built(void) { return 0; }
int pl_backend_cuda_create(int ordinal, pl_backend **out) {
  *out = NULL;
  return pl_fail(PL_EUNSUPPORTED, "this pagellm was built without CUDA (nvcc was not found at "
                 "build time; rebuild with -DPL_CUDA=ON on a machine with the CUDA toolkit)");
}
#endif

int pl_backend_create(const char *device, int n_threads, pl_backend **out) {
  *out = NULL;
  if (!device || !*device || !strcmp(device, "auto")) {
    if (pl_backend_cuda_built()) {
      if (pl_backend_cuda_create(0, out) == 0)
        return 0;
      PL_INFO("no usable GPU (%s): using the CPU", pl_last_error());
    }
    return pl_backend_cpu_create(n_threads, out);
  }
  if (!strcmp(device, "cpu"))
    return pl_backend_cpu_create(n_threads, out);
  if (!strncmp(device, "cuda", 4) && (device[4] == '\0' || device[4] == ':')) {
    int ordinal = 0;
    if (device[4] == ':') {
      char *end;
      long v = strtol(device + 5, &end, 10);
      if (end == device + 5 || *end || v < 0 || v > 1023)
        return pl_fail(PL_EINVAL, "device '%s': expected cuda:N with N a GPU index", device);
      ordinal = (int)v;
    }
    return pl_backend_cuda_create(ordinal, out);
  }
  return pl_fail(PL_EINVAL, "unknown device '%s' (expected auto, cpu, cuda or cuda:N)", device);
}
