/* Measured DRAM read bandwidth: the roofline every bandwidth-bound benchmark is quoted
 * against. Each pool thread takes the max over its slice of a buffer much larger than the
 * caches (SIMD loads, no stores); the best of 5 passes counts. */
#ifndef PL_BACKEND_CPU_MEMBW_H
#define PL_BACKEND_CPU_MEMBW_H
#include <stddef.h>

#include "util/threadpool.h"

/* GB/s (1e9 bytes/s) reading `bytes` (0 = 512 MiB) with all threads of tp; 0 on failure. */
double pl_cpu_read_bandwidth(pl_threadpool *tp, size_t bytes);
#endif
