/* Recorded decode steps (CUDA graphs), vLLM's way: a decode step is padded to one of a few
 * batch sizes (pl_cu_graph_bucket), and the layers' kernels of each (caller, size, attention
 * split) are recorded once and replayed as one launch. The launches of a 32-layer step (~700)
 * then cost the host one call, and the GPU does not wait between kernels.
 *
 * A recording holds device addresses: of the caller's activations, the staged plan and the
 * backend's scratch. The backend bumps `gen` whenever one of those may move (a scratch buffer
 * regrown, any device memory freed); a recording of an older generation is dropped and
 * recorded again. A key is first seen eagerly (its ops run as usual and grow every buffer
 * they need), recorded the second time, replayed from the third. */
#ifndef PL_BACKEND_CUDA_CU_GRAPH_H
#define PL_BACKEND_CUDA_CU_GRAPH_H
#include <cuda_runtime_api.h>

typedef struct pl_cu_graph_key {
  const void *tag;    /* the caller (a runner): whose buffers */
  int n;              /* padded batch size */
  int ctx;            /* the attention's split of the context (0: one split) */
  int max_blocks;     /* the block tables' row stride */
} pl_cu_graph_key;

typedef struct pl_cu_graphs pl_cu_graphs;

pl_cu_graphs *pl_cu_graphs_create(void);
void pl_cu_graphs_destroy(pl_cu_graphs *g);

/* The batch size n sequences are padded to: 1, 2, 4, then multiples of 8 up to 64, of 16 up
 * to 128 and of 32 beyond (at most ~12% padding where a step costs per row). */
int pl_cu_graph_bucket(int n);

/* 1: the recording of key was launched on s (skip the ops). 0: issue the ops (when a
 * recording started, pl_cu_graphs_recording() is true until end). < 0: a PL_EDEVICE status. */
int pl_cu_graphs_begin(pl_cu_graphs *g, const pl_cu_graph_key *key, unsigned gen, cudaStream_t s);
int pl_cu_graphs_recording(const pl_cu_graphs *g);
/* After the ops: rc (their status) when nothing was being recorded; else 0 when the recording
 * was made (launch it with pl_cu_graphs_launch_recorded), 1 when it failed (rc < 0, or
 * capture refused: nothing ran and the ops must be issued again). */
int pl_cu_graphs_end(pl_cu_graphs *g, int rc, unsigned gen, cudaStream_t s);
/* launch what the last end recorded: 0 or a PL_EDEVICE status */
int pl_cu_graphs_launch_recorded(pl_cu_graphs *g, cudaStream_t s);

#endif
