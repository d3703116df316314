/* cu_profile.h: op timing with CUDA events. */
#include "backend/cuda/cu_profile.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "util/alloc.h"

#define MAX_LABELS 32

typedef struct {
  const char *label;
  double gpu_ms;
  long calls;
} prof_row;

struct pl_cu_prof {
  cudaEvent_t *ev;         /* [cap]: ev[0] the step's start, then (begin, end) per op */
  const char **ev_label;   /* [cap]: the op's label at its end event */
  int n_ev, cap, in_step, broken;
  prof_row rows[MAX_LABELS];
  int n_rows;
  double t_step0, t_last_end; /* host clock (s): this step's begin, the last step's end */
  double wall_s, between_s, busy_ms, idle_ms;
  long steps;
  double before_s; /* host time before this step (since the last one ended) */
  /* the steps replayed from a recording ("graph replay"), with the host time before each */
  long rp_steps;
  double rp_wall_s, rp_between_s, rp_busy_ms, rp_idle_ms;
};

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

pl_cu_prof *pl_cu_prof_create(void) {
  const char *e = getenv("PAGELLM_PROFILE");
  if (!e || !*e || !strcmp(e, "0"))
    return NULL;
  return pl_calloc(1, sizeof(pl_cu_prof));
}

/* the next event of the step, created on first use; NULL when the pool cannot grow */
static cudaEvent_t *next_event(pl_cu_prof *p) {
  if (p->n_ev == p->cap) {
    int cap = p->cap ? p->cap * 2 : 1024;
    cudaEvent_t *ev = pl_realloc(p->ev, (size_t)cap * sizeof *ev);
    if (ev)
      p->ev = ev;
    const char **lb = ev ? pl_realloc(p->ev_label, (size_t)cap * sizeof *lb) : NULL;
    if (lb)
      p->ev_label = lb;
    if (!ev || !lb)
      return NULL;
    for (int i = p->cap; i < cap; i++)
      if (cudaEventCreate(&p->ev[i]) != cudaSuccess) {
        cudaGetLastError();
        cap = i;
        break;
      }
    if (cap == p->cap)
      return NULL;
    p->cap = cap;
  }
  return &p->ev[p->n_ev++];
}

static void record(pl_cu_prof *p, cudaStream_t s, const char *label) {
  if (!p || !p->in_step || p->broken)
    return;
  cudaEvent_t *e = next_event(p);
  if (!e || cudaEventRecord(*e, s) != cudaSuccess) {
    cudaGetLastError();
    p->broken = 1; /* this step's pairs no longer line up: drop it */
    return;
  }
  p->ev_label[p->n_ev - 1] = label;
}

void pl_cu_prof_step_begin(pl_cu_prof *p, cudaStream_t s) {
  if (!p)
    return;
  double t = now_s();
  p->before_s = p->t_last_end > 0 ? t - p->t_last_end : 0;
  p->between_s += p->before_s;
  p->t_step0 = t;
  p->n_ev = 0;
  p->in_step = 1;
  p->broken = 0;
  record(p, s, NULL);
}

void pl_cu_prof_op_begin(pl_cu_prof *p, cudaStream_t s) { record(p, s, NULL); }
void pl_cu_prof_op_end(pl_cu_prof *p, cudaStream_t s, const char *label) {
  record(p, s, label);
}
void pl_cu_prof_op_drop(pl_cu_prof *p) {
  if (p && p->in_step && !p->broken && p->n_ev > 0 && !p->ev_label[p->n_ev - 1])
    p->n_ev--;
}

static prof_row *row_of(pl_cu_prof *p, const char *label) {
  for (int i = 0; i < p->n_rows; i++)
    if (p->rows[i].label == label || !strcmp(p->rows[i].label, label))
      return &p->rows[i];
  if (p->n_rows == MAX_LABELS)
    return NULL;
  p->rows[p->n_rows].label = label;
  return &p->rows[p->n_rows++];
}

void pl_cu_prof_step_end(pl_cu_prof *p) {
  if (!p || !p->in_step)
    return;
  double t = now_s();
  p->in_step = 0;
  p->t_last_end = t;
  if (p->broken || p->n_ev < 1)
    return;
  p->wall_s += t - p->t_step0;
  p->steps++;
  int prev_end = 0; /* the step's start event */
  int replay = 0;
  double busy_ms = 0, idle_ms = 0;
  for (int i = 1; i + 1 < p->n_ev; i++) {
    if (p->ev_label[i] || !p->ev_label[i + 1])
      continue; /* not a (begin, end) pair: an op that failed between them */
    float busy = 0, gap = 0;
    if (cudaEventElapsedTime(&gap, p->ev[prev_end], p->ev[i]) != cudaSuccess ||
        cudaEventElapsedTime(&busy, p->ev[i], p->ev[i + 1]) != cudaSuccess) {
      cudaGetLastError();
      continue;
    }
    prev_end = ++i;
    idle_ms += gap;
    busy_ms += busy;
    replay |= !strcmp(p->ev_label[i], "graph replay");
    prof_row *r = row_of(p, p->ev_label[i]);
    if (r) {
      r->gpu_ms += busy;
      r->calls++;
    }
  }
  p->idle_ms += idle_ms;
  p->busy_ms += busy_ms;
  if (replay) {
    p->rp_steps++;
    p->rp_wall_s += t - p->t_step0 + p->before_s;
    p->rp_between_s += p->before_s;
    p->rp_busy_ms += busy_ms;
    p->rp_idle_ms += idle_ms;
  }
}

static int by_time(const void *a, const void *b) {
  double x = ((const prof_row *)a)->gpu_ms, y = ((const prof_row *)b)->gpu_ms;
  return x < y ? 1 : x > y ? -1 : 0;
}

void pl_cu_prof_destroy(pl_cu_prof *p) {
  if (!p)
    return;
  if (p->steps > 0) {
    qsort(p->rows, (size_t)p->n_rows, sizeof *p->rows, by_time);
    fprintf(stderr, "\nPAGELLM_PROFILE: %ld steps, GPU time per op (CUDA events)\n", p->steps);
    fprintf(stderr, "  %-16s %12s %10s %7s %10s\n", "op", "GPU ms", "calls", "share", "us/call");
    for (int i = 0; i < p->n_rows; i++) {
      const prof_row *r = &p->rows[i];
      fprintf(stderr, "  %-16s %12.1f %10ld %6.1f%% %10.1f\n", r->label, r->gpu_ms, r->calls,
              p->busy_ms > 0 ? 100.0 * r->gpu_ms / p->busy_ms : 0.0,
              r->calls ? 1000.0 * r->gpu_ms / r->calls : 0.0);
    }
    double wall_ms = 1000.0 * (p->wall_s + p->between_s);
    fprintf(stderr, "  wall %.1f ms: GPU busy %.1f ms (%.1f%%), GPU idle inside steps %.1f ms "
            "(%.1f%%: launches, syncs), host between steps %.1f ms (%.1f%%)\n", wall_ms,
            p->busy_ms, wall_ms > 0 ? 100.0 * p->busy_ms / wall_ms : 0.0, p->idle_ms,
            wall_ms > 0 ? 100.0 * p->idle_ms / wall_ms : 0.0, 1000.0 * p->between_s,
            wall_ms > 0 ? 100000.0 * p->between_s / wall_ms : 0.0);
    if (p->rp_steps > 0) {
      double w = 1000.0 * p->rp_wall_s;
      fprintf(stderr, "  replayed steps %ld, %.3f ms each with the host time before it: GPU busy "
              "%.1f%%, GPU idle inside %.1f%%, host before %.1f%%\n", p->rp_steps,
              w / p->rp_steps, 100.0 * p->rp_busy_ms / w, 100.0 * p->rp_idle_ms / w,
              100000.0 * p->rp_between_s / w);
    }
  }
  for (int i = 0; i < p->cap; i++)
    cudaEventDestroy(p->ev[i]);
  pl_free(p->ev);
  pl_free(p->ev_label);
  pl_free(p);
}
