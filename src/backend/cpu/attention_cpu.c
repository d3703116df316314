/* Paged causal attention on the CPU (varlen: prefill chunks and decodes in one call).
 *
 * Work item = (sequence, KV head, group of consecutive query tokens). The item's query rows
 * (the GQA heads of that KV head, for each of its tokens) are the "lanes" of one block-level
 * kernel call (pl_attn_tile_f32): the scores of one KV block for all lanes are one small
 * SIMD matmul, exp is vectorised, the softmax is online, and the block table is read once per
 * block:
 *
 *   block table row of the sequence:  [ b7 | b2 | b9 | 0 ... ]   (logical → physical)
 *   keys of position p live at        K[b_{p / bs}][h][p % bs][:]
 *
 * A query at position p reads positions 0..p only (the kernel masks the lanes of earlier
 * tokens in the last tiles). With g query heads per KV head an item takes 16/g tokens
 * (decode: 1; prefill with g = 8: 2), so each K/V row loaded serves up to 16 query rows.
 * Items are dealt round-robin to threads so long and short rows spread evenly. Head
 * dimensions above ATTN_MAX_HD take the per-key loop (attn_item_generic).
 *
 * KV of F16, BF16 or Q8_0 (backend_cpu.h) is decoded to f32 a tile (or, per key, a row) at a
 * time with the kernels' row decoders (pl_dequant_row), right before the tile kernel reads
 * it: each row is read from memory once per item at its stored size, so the stream the
 * kernel waits on shrinks with the dtype. */
#include <float.h>
#include <math.h>

#include "backend/cpu/backend_cpu.h"
#include "backend/cpu/kern/kern.h"

#define ATTN_MAX_HD 256 /* stack scratch of the tile path: 2 x 16 x 256 floats */
enum { LANES = PL_ATTN_LANES };

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

/* Row `src` of the KV cache as f32: itself for F32 KV, else decoded into buf[hd]. */
static inline const float *kv_row(pl_dtype t, const uint8_t *src, float *buf, int hd) {
  if (t == PL_DT_F32)
    return (const float *)src;
  pl_dequant_row(t, src, buf, hd);
  return buf;
}

static void attn_item_generic(const attn_job *j, int t, int h, float *scratch) {
  const pl_cpu_backend *c = j->c;
  const float scale = j->scale;
  const pl_kv_spec *s = &c->kv;
  const pl_step_plan *p = j->plan;
  int hd = s->head_dim, bs = s->block_size, g = j->n_head / s->n_kv_head;
  int seq = seq_of_token(p, t);
  int n_ctx = p->positions[t] + 1;
  const int32_t *bt = p->block_tables + (size_t)seq * p->max_blocks_per_seq;
  const uint8_t *K = c->k_cache + (size_t)j->layer * c->layer_stride;
  const uint8_t *V = c->v_cache + (size_t)j->layer * c->layer_stride;
  const size_t rb = c->row_bytes;
  float *acc = scratch, *m = acc + (size_t)g * hd, *l = m + g, *sc = l + g;
  float *kr = sc + bs, *vr = kr + hd; /* a decoded K and V row */
  for (int k = 0; k < g; k++) {
    m[k] = -FLT_MAX;
    l[k] = 0;
  }
  for (size_t i = 0; i < (size_t)g * hd; i++)
    acc[i] = 0;
  size_t blk_stride = (size_t)s->n_kv_head * bs * rb;
  int n_blk = (n_ctx + bs - 1) / bs;
  for (int bi = 0; bi < n_blk; bi++) {
    int nv = n_ctx - bi * bs < bs ? n_ctx - bi * bs : bs;
    size_t base = (size_t)bt[bi] * blk_stride + (size_t)h * bs * rb;
    const uint8_t *kb = K + base, *vb = V + base;
    for (int k = 0; k < g; k++) {
      const float *qk = j->q + (size_t)t * j->n_head * hd + (size_t)(h * g + k) * hd;
      float mx = m[k];
      for (int o = 0; o < nv; o++) {
        sc[o] = pl_vec_dot_f32(hd, qk, kv_row(s->dtype, kb + (size_t)o * rb, kr, hd)) * scale;
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
        pl_vec_mad_f32(hd, a, kv_row(s->dtype, vb + (size_t)o * rb, vr, hd), pr);
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

/* Item: sequence seq, KV head h, query tokens t0 .. t0+nt-1, query heads k0 .. k0+nh-1 of
 * the group (lane = token index * nh + head index). */
typedef struct {
  int seq, h, t0, nt, k0, nh;
} attn_item;

/* The K/V rows of the item's first tile: its sequence's first block, for its KV head. */
static pl_attn_next first_tile(const attn_job *j, const attn_item *it) {
  const pl_cpu_backend *c = j->c;
  const pl_step_plan *p = j->plan;
  const int bs = c->kv.block_size, n_ctx = p->positions[it->t0 + it->nt - 1] + 1;
  int rows = n_ctx < bs ? n_ctx : bs;
  rows = rows < PL_ATTN_TILE ? rows : PL_ATTN_TILE;
  const size_t off = (size_t)j->layer * c->layer_stride +
                     ((size_t)p->block_tables[(size_t)it->seq * p->max_blocks_per_seq] *
                          c->kv.n_kv_head + (size_t)it->h) * bs * c->row_bytes;
  return (pl_attn_next){c->k_cache + off, c->v_cache + off,
                        (int)(((size_t)rows * c->row_bytes + 63) / 64)};
}

/* `after`: the first tile of the item the thread runs next (prefetched during this item's
 * last tile, so that an item does not start on a cold miss); NULL for none. */
static void attn_item_tiles(const attn_job *j, const attn_item *it, const pl_attn_next *after,
                            float *scratch) {
  const int seq = it->seq, h = it->h, t0 = it->t0, nt = it->nt, k0 = it->k0, nh = it->nh;
  const pl_cpu_backend *c = j->c;
  const pl_kv_spec *s = &c->kv;
  const pl_step_plan *p = j->plan;
  const int hd = s->head_dim, bs = s->block_size, g = j->n_head / s->n_kv_head;
  const int nl = nt * nh;
  float qt[ATTN_MAX_HD * LANES] __attribute__((aligned(64)));
  float acc[ATTN_MAX_HD * LANES] __attribute__((aligned(64)));
  float m[LANES], l[LANES];
  int32_t lim[LANES];
  for (int ln = 0; ln < LANES; ln++) {
    int ti = ln / nh, kk = ln % nh;
    m[ln] = -FLT_MAX;
    l[ln] = 0;
    lim[ln] = ln < nl ? p->positions[t0 + ti] + 1 : INT32_MAX;
    const float *qr = ln < nl ? j->q + ((size_t)(t0 + ti) * j->n_head + (size_t)(h * g + k0 + kk)) * hd
                              : NULL;
    for (int d = 0; d < hd; d++)
      qt[d * LANES + ln] = qr ? qr[d] * j->scale : 0.0f;
  }
  for (size_t i = 0; i < (size_t)nl * hd; i++)
    acc[i] = 0;
  const int n_ctx = lim[nl - 1], lim_min = lim[0]; /* positions grow with the token index */
  const int32_t *bt = p->block_tables + (size_t)seq * p->max_blocks_per_seq;
  const uint8_t *K = c->k_cache + (size_t)j->layer * c->layer_stride;
  const uint8_t *V = c->v_cache + (size_t)j->layer * c->layer_stride;
  const size_t rb = c->row_bytes, blk_stride = (size_t)s->n_kv_head * bs * rb;
  const pl_dtype kt = s->dtype;
  /* a tile of K and V rows decoded to f32 (KV of other dtypes), in the thread's scratch: on
   * the stack they made every item's frame 128 KiB larger, and f32 KV ~7% slower */
  float *kd = scratch, *vd = scratch + (size_t)PL_ATTN_TILE * hd;
  const int n_blk = (n_ctx + bs - 1) / bs;
  for (int bi = 0; bi < n_blk; bi++) {
    const int nvb = n_ctx - bi * bs < bs ? n_ctx - bi * bs : bs;
    const size_t base = (size_t)bt[bi] * blk_stride + (size_t)h * bs * rb;
    for (int o = 0; o < nvb; o += PL_ATTN_TILE) {
      const int nv = nvb - o < PL_ATTN_TILE ? nvb - o : PL_ATTN_TILE, pos0 = bi * bs + o;
      const uint8_t *ko = K + base + (size_t)o * rb, *vo = V + base + (size_t)o * rb;
      const float *kf = (const float *)ko, *vf = (const float *)vo;
      /* The next tile's rows, which the kernel pulls in while it computes this one (kern.h,
       * pl_attn_next). At a block's end they are elsewhere in the pool, where the hardware
       * prefetchers cannot guess them. */
      pl_attn_next next = after ? *after : (pl_attn_next){NULL, NULL, 0};
      const int pn = pos0 + nv; /* the next tile's first position */
      if (pn < n_ctx) {
        const int rows = n_ctx - pn < PL_ATTN_TILE ? n_ctx - pn : PL_ATTN_TILE;
        const size_t nb = (size_t)bt[pn / bs] * blk_stride + ((size_t)h * bs + pn % bs) * rb;
        next = (pl_attn_next){K + nb, V + nb, (int)(((size_t)rows * rb + 63) / 64)};
      }
      if (kt != PL_DT_F32) {
        /* a tile's rows are consecutive in its block: one call decodes them all */
        pl_dequant_row(kt, ko, kd, nv * hd);
        pl_dequant_row(kt, vo, vd, nv * hd);
        kf = kd;
        vf = vd;
      }
      pl_attn_tile_f32(nl, hd, nv, pos0, pos0 + nv > lim_min ? lim : NULL, qt, kf, vf, m, l,
                       acc, &next);
    }
  }
  for (int ln = 0; ln < nl; ln++) {
    int ti = ln / nh, kk = ln % nh;
    float *o = j->out + ((size_t)(t0 + ti) * j->n_head + (size_t)(h * g + k0 + kk)) * hd;
    const float inv = 1.0f / l[ln], *a = acc + (size_t)ln * hd;
    for (int d = 0; d < hd; d++)
      o[d] = a[d] * inv;
  }
}

static void attn_task(void *ctx, int ith, int nth) {
  attn_job *j = ctx;
  const pl_cpu_backend *c = j->c;
  const pl_step_plan *p = j->plan;
  const int n_kv = c->kv.n_kv_head, hd = c->kv.head_dim, g = j->n_head / n_kv;
  float *scratch = c->attn_scratch + (size_t)ith * c->scratch_per_thread;
  if (hd > ATTN_MAX_HD) {
    int n_items = p->n_tokens * n_kv;
    for (int it = ith; it < n_items; it += nth)
      attn_item_generic(j, it / n_kv, it % n_kv, scratch);
    return;
  }
  /* Lanes: T tokens x nh heads, nh = min(g, LANES); g > LANES splits the heads instead. */
  const int nh = g < LANES ? g : LANES, n_hg = (g + nh - 1) / nh, T = LANES / nh;
  /* each item runs once the thread's next one is known, to prefetch that one's first tile */
  attn_item cur = {0}, nxt;
  int it = 0, have = 0;
  for (int seq = 0; seq < p->n_seqs; seq++) {
    const int q0 = p->query_start_loc[seq], q1 = p->query_start_loc[seq + 1];
    for (int t0 = q0; t0 < q1; t0 += T)
      for (int h = 0; h < n_kv; h++)
        for (int hg = 0; hg < n_hg; hg++, it++) {
          if (it % nth != ith)
            continue;
          const int k0 = hg * nh;
          nxt = (attn_item){seq, h, t0, q1 - t0 < T ? q1 - t0 : T, k0, g - k0 < nh ? g - k0 : nh};
          if (have) {
            const pl_attn_next first = first_tile(j, &nxt);
            attn_item_tiles(j, &cur, &first, scratch);
          }
          cur = nxt;
          have = 1;
        }
  }
  if (have)
    attn_item_tiles(j, &cur, NULL, scratch);
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
