/* Per-op GPU time of the CUDA backend, for finding what bounds a step (PAGELLM_PROFILE=1).
 *
 * nsys and ncu are not always usable (containers without counter access), so the backend times
 * itself: a CUDA event before and after every op on the stream. Between an op's two events is
 * the GPU's time for it; between one op's end and the next one's start the GPU waited for the
 * host to enqueue (launch overhead); between step_end and the next step_begin the host works
 * alone (scheduling, sampling, detokenizing). Events cost ~2 us of host time each, so the
 * profile slows the run a little; it is off unless the variable is set.
 *
 * Report (stderr, at backend destroy): per label, the GPU ms, calls and share, then the wall
 * time of all steps split into GPU busy, GPU idle inside steps, and host time between steps. */
#ifndef PL_BACKEND_CUDA_CU_PROFILE_H
#define PL_BACKEND_CUDA_CU_PROFILE_H
#include <cuda_runtime_api.h>

typedef struct pl_cu_prof pl_cu_prof;

/* NULL (profiling off) unless PAGELLM_PROFILE is set to a non-empty value other than "0" */
pl_cu_prof *pl_cu_prof_create(void);
void pl_cu_prof_destroy(pl_cu_prof *p); /* prints the report first */

/* Every call below is a no-op on NULL. */
void pl_cu_prof_step_begin(pl_cu_prof *p, cudaStream_t s);
/* after the stream has been synchronized: accumulates the step's events */
void pl_cu_prof_step_end(pl_cu_prof *p);
void pl_cu_prof_op_begin(pl_cu_prof *p, cudaStream_t s);
/* `label` must be a string literal (kept by pointer) */
void pl_cu_prof_op_end(pl_cu_prof *p, cudaStream_t s, const char *label);
/* forget the op_begin just recorded (the op turned out to enqueue nothing to time) */
void pl_cu_prof_op_drop(pl_cu_prof *p);

#endif
