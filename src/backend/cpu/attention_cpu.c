/* Paged causal attention on the CPU (varlen: prefill chunks and decodes in one call).
 *
 * Work item = (query token t, KV head h). Its g = n_head / n_kv_head query heads share one
 * pass over the KV head's blocks (GQA), with an online softmax so scores never need the
 * whole context at once:
 *
 *   block table row of t's sequence:  [ b7 | b2 | b9 | 0 ... ]   (logical → physical)
 *   keys of position p live at        K[b_{p / bs}][h][p % bs][:]
 *
 * A query at position p reads positions 0..p only. Items are dealt round-robin to threads so
 * long and short rows of a prefill chunk spread evenly. */
#include <float.h>
#include <math.h>

#include "backend/cpu/backend_cpu.h"
#include "backend/cpu/kern/kern.h"

typedef struct {
  pl_cpu_backend *c;
  int layer, n_head;
  float *out;
  const float *q;
  const pl_step_plan *plan;
  float scale;
} attn_job;

static int seq_of_token(const pl_step_plan *p, int t) {
  /* query_start_loc is sorted: binary search */
  int lo = 0, hi = p->n_seqs - 1;
  while (lo < hi) {
    int mid = (lo + hi + 1) / 2;
    if (p->query_start_loc[mid] <= t)
      lo = mid;
    else
      hi = mid - 1;
  }
  return lo;
}

static void attn_item(const attn_job *j, int t, int h, float *scratch) {
  const pl_cpu_backend *c = j->c;
  const float scale = j->scale;
  const pl_kv_spec *s = &c->kv;
  const pl_step_plan *p = j->plan;
  int hd = s->head_dim, bs = s->block_size, g = j->n_head / s->n_kv_head;
  int seq = seq_of_token(p, t);
  int n_ctx = p->positions[t] + 1;
  const int32_t *bt = p->block_tables + (size_t)seq * p->max_blocks_per_seq;
  const float *K = c->k_cache + (size_t)j->layer * c->layer_stride;
  const float *V = c->v_cache + (size_t)j->layer * c->layer_stride;
  float *acc = scratch, *m = acc + (size_t)g * hd, *l = m + g, *sc = l + g;
  for (int k = 0; k < g; k++) {
    m[k] = -FLT_MAX;
    l[k] = 0;
  }
  for (size_t i = 0; i < (size_t)g * hd; i++)
    acc[i] = 0;
  size_t blk_stride = (size_t)s->n_kv_head * bs * hd;
  int n_blk = (n_ctx + bs - 1) / bs;
  for (int bi = 0; bi < n_blk; bi++) {
    int nv = n_ctx - bi * bs < bs ? n_ctx - bi * bs : bs;
    size_t base = (size_t)bt[bi] * blk_stride + (size_t)h * bs * hd;
    const float *kb = K + base, *vb = V + base;
    for (int k = 0; k < g; k++) {
      const float *qk = j->q + (size_t)t * j->n_head * hd + (size_t)(h * g + k) * hd;
      float mx = m[k];
      for (int o = 0; o < nv; o++) {
        sc[o] = pl_vec_dot_f32(hd, qk, kb + (size_t)o * hd) * scale;
        if (sc[o] > mx)
          mx = sc[o];
      }
      float corr = expf(m[k] - mx);
      float *a = acc + (size_t)k * hd;
      if (corr != 1.0f) {
        l[k] *= corr;
        pl_vec_scale_f32(hd, a, corr);
      }
      for (int o = 0; o < nv; o++) {
        float pr = expf(sc[o] - mx);
        l[k] += pr;
        pl_vec_mad_f32(hd, a, vb + (size_t)o * hd, pr);
      }
      m[k] = mx;
    }
  }
  for (int k = 0; k < g; k++) {
    float *o = j->out + (size_t)t * j->n_head * hd + (size_t)(h * g + k) * hd;
    float inv = 1.0f / l[k];
    const float *a = acc + (size_t)k * hd;
    for (int i = 0; i < hd; i++)
      o[i] = a[i] * inv;
  }
}

static void attn_task(void *ctx, int ith, int nth) {
  attn_job *j = ctx;
  float *scratch = j->c->attn_scratch + (size_t)ith * j->c->scratch_per_thread;
  int n_kv = j->c->kv.n_kv_head;
  int n_items = j->plan->n_tokens * n_kv;
  for (int it = ith; it < n_items; it += nth)
    attn_item(j, it / n_kv, it % n_kv, scratch);
}

int pl_cpu_attention(pl_backend *be, int layer, float *out, const float *q, int n_head,
                     float scale) {
  pl_cpu_backend *c = (pl_cpu_backend *)be;
  const pl_step_plan *plan = c->plan;
  attn_job j = {c, layer, n_head, out, q, plan, scale};
  if (plan->n_tokens * c->kv.n_kv_head < 2)
    attn_task(&j, 0, 1);
  else
    pl_threadpool_run(c->tp, attn_task, &j);
  return 0;
}
