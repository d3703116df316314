/* The recordings of decode steps (cu_graph.h). A linear table: a run meets a few dozen keys. */
#include "backend/cuda/cu_graph.h"

#include <string.h>

#include "util/alloc.h"
#include "util/error.h"

#define MAX_GRAPHS 256

enum { SEEN, READY, FAILED };

typedef struct {
  pl_cu_graph_key key;
  int state;
  unsigned gen;          /* READY: the generation recorded; FAILED: the one that failed */
  cudaGraphExec_t exec;  /* READY */
} entry;

struct pl_cu_graphs {
  entry e[MAX_GRAPHS];
  int n;
  entry *recording;
  entry *last; /* recorded by the last end, to be launched */
};

pl_cu_graphs *pl_cu_graphs_create(void) { return pl_calloc(1, sizeof(pl_cu_graphs)); }

void pl_cu_graphs_destroy(pl_cu_graphs *g) {
  if (!g)
    return;
  for (int i = 0; i < g->n; i++)
    if (g->e[i].exec)
      cudaGraphExecDestroy(g->e[i].exec);
  pl_free(g);
}

int pl_cu_graph_bucket(int n) {
  if (n <= 0)
    return 0;
  if (n <= 4)
    return n == 3 ? 4 : n;
  int step = n <= 64 ? 8 : n <= 128 ? 16 : 32;
  return (n + step - 1) / step * step;
}

static int launch(entry *e, cudaStream_t s) {
  cudaError_t err = cudaGraphLaunch(e->exec, s);
  return err == cudaSuccess ? 0 : pl_fail(PL_EDEVICE, "CUDA graph launch: %s",
                                          cudaGetErrorString(err));
}

static entry *find(pl_cu_graphs *g, const pl_cu_graph_key *k) {
  for (int i = 0; i < g->n; i++) {
    const pl_cu_graph_key *e = &g->e[i].key;
    if (e->tag == k->tag && e->n == k->n && e->ctx == k->ctx && e->max_blocks == k->max_blocks)
      return &g->e[i];
  }
  return NULL;
}

int pl_cu_graphs_recording(const pl_cu_graphs *g) { return g && g->recording; }

int pl_cu_graphs_begin(pl_cu_graphs *g, const pl_cu_graph_key *key, unsigned gen, cudaStream_t s) {
  entry *e = find(g, key);
  if (!e) {
    if (g->n == MAX_GRAPHS)
      return 0;
    e = &g->e[g->n++];
    memset(e, 0, sizeof *e);
    e->key = *key;
    e->state = SEEN; /* this time eagerly: the ops grow what they need first */
    return 0;
  }
  if (e->state == READY && e->gen == gen)
    return launch(e, s) < 0 ? PL_EDEVICE : 1;
  if (e->state == FAILED && e->gen == gen)
    return 0; /* failed with these buffers: stay eager until something moves */
  if (e->exec) {
    cudaGraphExecDestroy(e->exec); /* recorded with buffers that have moved since */
    e->exec = NULL;
  }
  if (cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal) != cudaSuccess) {
    cudaGetLastError();
    e->state = FAILED;
    e->gen = gen;
    return 0;
  }
  g->recording = e;
  return 0;
}

int pl_cu_graphs_end(pl_cu_graphs *g, int rc, unsigned gen, cudaStream_t s) {
  entry *e = g->recording;
  if (!e)
    return rc;
  g->recording = NULL;
  cudaGraph_t graph = NULL;
  cudaError_t err = cudaStreamEndCapture(s, &graph);
  if (err == cudaSuccess && rc == 0 && graph)
    err = cudaGraphInstantiate(&e->exec, graph, 0);
  if (graph)
    cudaGraphDestroy(graph);
  if (err != cudaSuccess || rc != 0 || !graph) {
    cudaGetLastError(); /* a refused capture is not the step's error: it runs eagerly */
    e->exec = NULL;
    e->state = FAILED;
    e->gen = gen;
    return 1;
  }
  e->state = READY;
  e->gen = gen;
  g->last = e;
  return 0;
}

int pl_cu_graphs_launch_recorded(pl_cu_graphs *g, cudaStream_t s) {
  entry *e = g->last;
  g->last = NULL;
  if (!e || !e->exec)
    return pl_fail(PL_EDEVICE, "no recorded step to launch");
  return launch(e, s);
}
