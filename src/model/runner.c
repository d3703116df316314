/* The Llama-family forward pass (llama, mistral, qwen2, qwen3), top to bottom:
 *
 *   x = embed(tokens)
 *   per layer:  h = rmsnorm(x)·attn_norm
 *               q,k,v = h·Wq (+bq), h·Wk (+bk), h·Wv (+bv)      [qwen2 has biases]
 *               q,k = rmsnorm per head (q_norm, k_norm)           [qwen3]
 *               q,k = rope(q,k, positions)
 *               cache[slot_mapping] = k,v
 *               x += attention(q, cache via block tables) · Wo
 *               h = rmsnorm(x)·ffn_norm
 *               x += (silu(h·Wgate) * (h·Wup)) · Wdown
 *   logits = rmsnorm(x[logits_rows])·output_norm · Wout
 *
 * Every op goes through the backend table; this file owns only the activation buffers. A
 * backend that replays decode steps (graph_* in backend.h) gets them padded to its batch
 * buckets, and the layers bracketed. */
#include <math.h>
#include <string.h>

#include "model/runner.h"
#include "util/alloc.h"
#include "util/error.h"

struct pl_runner {
  const pl_model *m;
  pl_backend *be;
  pl_runner_params p;
  pl_rope_spec rs;
  /* activations, backend memory; T = max_tokens, L = max_logits */
  float *x;      /* [T][n_embd] residual stream */
  float *h;      /* [T][n_embd] normed input / projection output */
  float *q;      /* [T][n_head*head_dim] */
  float *k, *v;  /* [T][n_head_kv*head_dim] */
  float *attn;   /* [T][n_head*head_dim] */
  float *g, *u;  /* [T][n_ff] */
  float *cs;     /* [T][rope_dim] cos|sin per token */
  float *hl;     /* [L][n_embd] hidden states of the logits rows */
  float *logits; /* [L][n_vocab] */
  float *cs_host;/* [T][rope_dim] host staging */
  int32_t *pad;  /* host: a decode plan padded to the backend's graph bucket (pad_plan) */
  size_t pad_cap;/* int32 elements */
  size_t act_bytes, bytes; /* activations; activations + KV pool */
};

static void *bal(pl_runner *r, size_t n_floats, int *ok) {
  void *p = r->be->ops->alloc(r->be, n_floats * sizeof(float));
  if (!p)
    *ok = 0;
  r->bytes += n_floats * sizeof(float);
  return p;
}

void pl_runner_free(pl_runner *r) {
  if (!r)
    return;
  float *bufs[] = {r->x, r->h, r->q, r->k, r->v, r->attn, r->g, r->u, r->cs, r->hl, r->logits};
  for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++)
    if (bufs[i])
      r->be->ops->free(r->be, bufs[i]);
  pl_free(r->cs_host);
  pl_free(r->pad);
  pl_free(r);
}

int pl_runner_create(const pl_model *m, pl_backend *be, const pl_runner_params *p,
                     pl_runner **out) {
  *out = NULL;
  const pl_hparams *hp = &m->hp;
  if (p->max_tokens <= 0 || p->max_logits <= 0 || p->block_size <= 0 || p->n_blocks == 1 ||
      p->n_blocks < 0)
    return pl_fail(PL_EINVAL, "runner: bad sizes (tokens %d, logits %d, block %d, blocks %d)",
                   p->max_tokens, p->max_logits, p->block_size, p->n_blocks);
  pl_runner *r = pl_calloc(1, sizeof *r);
  if (!r)
    return pl_fail(PL_ENOMEM, "out of memory");
  r->m = m;
  r->be = be;
  r->p = *p;
  r->rs = (pl_rope_spec){hp->head_dim, hp->rope_dim, hp->rope_style == PL_ROPE_NEOX};
  size_t T = (size_t)p->max_tokens, L = (size_t)p->max_logits;
  size_t Q = (size_t)hp->n_head * hp->head_dim, K = (size_t)hp->n_head_kv * hp->head_dim;
  int ok = 1;
  r->x = bal(r, T * hp->n_embd, &ok);
  r->h = bal(r, T * (hp->n_embd > (int)Q ? (size_t)hp->n_embd : Q), &ok);
  r->q = bal(r, T * Q, &ok);
  r->k = bal(r, T * K, &ok);
  r->v = bal(r, T * K, &ok);
  r->attn = bal(r, T * Q, &ok);
  r->g = bal(r, T * hp->n_ff, &ok);
  r->u = bal(r, T * hp->n_ff, &ok);
  r->cs = bal(r, T * hp->rope_dim, &ok);
  r->hl = bal(r, L * hp->n_embd, &ok);
  r->logits = bal(r, L * hp->n_vocab, &ok);
  r->cs_host = pl_malloc(T * hp->rope_dim * sizeof(float));
  if (!ok || !r->cs_host) {
    pl_runner_free(r);
    return pl_fail(PL_ENOMEM, "runner: cannot allocate activations for %d tokens", p->max_tokens);
  }
  r->act_bytes = r->bytes;
  if (p->n_blocks > 0) {
    int rc = pl_runner_init_kv(r, p->n_blocks, p->kv_dtype);
    if (rc < 0) {
      pl_runner_free(r);
      return rc;
    }
  }
  *out = r;
  return PL_OK;
}

pl_kv_spec pl_runner_kv_spec(const pl_model *m, int block_size, int n_blocks, pl_dtype dtype) {
  const pl_hparams *hp = &m->hp;
  return (pl_kv_spec){hp->n_layer, hp->n_head_kv, hp->head_dim, hp->n_head, block_size,
                      n_blocks, dtype};
}

int pl_runner_init_kv(pl_runner *r, int n_blocks, pl_dtype dtype) {
  if (n_blocks < 2)
    return pl_fail(PL_EINVAL, "runner: KV pool needs at least 2 blocks, not %d", n_blocks);
  pl_kv_spec kv = pl_runner_kv_spec(r->m, r->p.block_size, n_blocks, dtype);
  PL_TRY(r->be->ops->kv_init(r->be, &kv));
  r->p.n_blocks = n_blocks;
  r->bytes = r->act_bytes + r->be->ops->kv_bytes(r->be);
  return 0;
}

size_t pl_runner_memory(const pl_runner *r) { return r->bytes; }

/* Reject plans that would index outside the buffers or the pool. */
static int check_plan(const pl_runner *r, const pl_step_plan *pl) {
  const pl_hparams *hp = &r->m->hp;
  if (pl->n_tokens <= 0 || pl->n_tokens > r->p.max_tokens || pl->n_logits < 0 ||
      pl->n_logits > r->p.max_logits || pl->n_seqs <= 0 || pl->block_size != r->p.block_size ||
      pl->query_start_loc[0] != 0 || pl->query_start_loc[pl->n_seqs] != pl->n_tokens)
    return pl_fail(PL_EINVAL, "step plan does not fit the runner (%d tokens, %d logits, %d seqs)",
                   pl->n_tokens, pl->n_logits, pl->n_seqs);
  int64_t slots = (int64_t)r->p.n_blocks * r->p.block_size;
  for (int t = 0; t < pl->n_tokens; t++)
    if (pl->token_ids[t] < 0 || pl->token_ids[t] >= hp->n_vocab || pl->slot_mapping[t] >= slots ||
        pl->positions[t] < 0)
      return pl_fail(PL_EINVAL, "step plan token %d out of range (id %d, slot %d)", t,
                     pl->token_ids[t], pl->slot_mapping[t]);
  for (int s = 0; s < pl->n_seqs; s++) {
    int q0 = pl->query_start_loc[s], q1 = pl->query_start_loc[s + 1];
    if (q1 < q0 || pl->seq_lens[s] > pl->max_blocks_per_seq * pl->block_size)
      return pl_fail(PL_EINVAL, "step plan sequence %d inconsistent", s);
    for (int t = q0; t < q1; t++)
      if (pl->positions[t] >= pl->seq_lens[s])
        return pl_fail(PL_EINVAL, "step plan: position beyond the sequence length");
    int nb = (pl->seq_lens[s] + pl->block_size - 1) / pl->block_size;
    for (int b = 0; b < nb; b++) {
      int32_t blk = pl->block_tables[(size_t)s * pl->max_blocks_per_seq + b];
      if (blk <= 0 || blk >= r->p.n_blocks)
        return pl_fail(PL_EINVAL, "step plan: sequence %d block %d = %d out of range", s, b, blk);
    }
  }
  for (int i = 0; i < pl->n_logits; i++)
    if (pl->logits_rows[i] < 0 || pl->logits_rows[i] >= pl->n_tokens)
      return pl_fail(PL_EINVAL, "step plan: logits row out of range");
  for (int i = 0; i < pl->n_copies; i++)
    if (pl->copy_src[i] <= 0 || pl->copy_src[i] >= r->p.n_blocks || pl->copy_dst[i] <= 0 ||
        pl->copy_dst[i] >= r->p.n_blocks)
      return pl_fail(PL_EINVAL, "step plan: copy-on-write block out of range");
  return 0;
}

/* The batch size a decode step (one token and one logits row per sequence) is padded to so
 * that the backend can replay it from a recording; 0: issue the step as it is. */
static int graph_size(const pl_runner *r, const pl_step_plan *pl) {
  const pl_backend_ops *o = r->be->ops;
  if (!o->graph_bucket || pl->n_tokens != pl->n_seqs || pl->n_logits != pl->n_tokens)
    return 0;
  int b = o->graph_bucket(r->be, pl->n_tokens);
  return b >= pl->n_tokens && b <= r->p.max_tokens && b <= r->p.max_logits ? b : 0;
}

/* out = pl followed by b - n dummy sequences: one token (id 0) at position 0 whose K/V go to
 * slot 0 of the null block, which no real sequence reads; their logits rows are computed and
 * never looked at. */
static int pad_plan(pl_runner *r, const pl_step_plan *pl, int b, pl_step_plan *out) {
  int n = pl->n_tokens, mb = pl->max_blocks_per_seq;
  size_t need = (size_t)b * (6 + (size_t)mb) + 1;
  if (need > r->pad_cap) {
    int32_t *p = pl_realloc(r->pad, need * sizeof(int32_t));
    if (!p)
      return pl_fail(PL_ENOMEM, "out of memory padding a step of %d sequences", b);
    r->pad = p;
    r->pad_cap = need;
  }
  *out = *pl;
  out->n_tokens = out->n_seqs = out->n_logits = b;
  int32_t *p = r->pad;
  int32_t **arr[] = {&out->token_ids, &out->positions, &out->slot_mapping, &out->seq_lens,
                     &out->logits_rows};
  int32_t *const src[] = {pl->token_ids, pl->positions, pl->slot_mapping, pl->seq_lens,
                          pl->logits_rows};
  int32_t fill[] = {0, 0, 0, 1, -1};
  for (int a = 0; a < 5; a++, p += b) {
    memcpy(p, src[a], (size_t)n * sizeof(int32_t));
    for (int i = n; i < b; i++)
      p[i] = fill[a] < 0 ? i : fill[a];
    *arr[a] = p;
  }
  out->query_start_loc = p;
  for (int i = 0; i <= b; i++)
    p[i] = i;
  p += b + 1;
  out->block_tables = p;
  memcpy(p, pl->block_tables, (size_t)n * mb * sizeof(int32_t));
  memset(p + (size_t)n * mb, 0, (size_t)(b - n) * mb * sizeof(int32_t));
  return 0;
}

static int layers_ops(pl_runner *r, const pl_step_plan *pl);

/* The forward pass proper, between step_begin and step_end; `graph`: the layers may be
 * replayed from (or recorded into) the backend's recording of this padded decode step. */
static int forward_ops(pl_runner *r, const pl_step_plan *pl, int graph) {
  const pl_model *m = r->m;
  const pl_hparams *hp = &m->hp;
  const pl_backend_ops *o = r->be->ops;
  pl_backend *be = r->be;
  int n = pl->n_tokens;

  if (pl->n_copies)
    PL_TRY(o->copy_blocks(be));
  PL_TRY(o->embed(be, r->x, &m->tok_embd));

  /* cos/sin of every token's angles, shared by all heads and layers */
  int half = hp->rope_dim / 2;
  for (int t = 0; t < n; t++) {
    float *c = r->cs_host + (size_t)t * hp->rope_dim;
    for (int i = 0; i < half; i++) {
      double th = (double)pl->positions[t] * m->rope_inv_freq[i];
      c[i] = (float)cos(th);
      c[half + i] = (float)sin(th);
    }
  }
  PL_TRY(o->upload(be, r->cs, r->cs_host, (size_t)n * hp->rope_dim * sizeof(float)));
  if (graph) {
    int g = o->graph_begin(be, r);
    if (g != 0)
      return g < 0 ? g : 0; /* replayed */
    g = o->graph_end(be, layers_ops(r, pl));
    if (g != 1)
      return g;
    /* the recording failed and nothing ran: issue the ops */
  }
  return layers_ops(r, pl);
}

/* The matmuls of one input: one matmul_group where the backend has it. */
static int matmuls(pl_backend *be, float *const *ys, const float *x, int n,
                   const pl_tensor *const *Ws, const pl_tensor *const *bs, int count) {
  if (be->ops->matmul_group)
    return be->ops->matmul_group(be, ys, x, n, Ws, bs, count);
  for (int i = 0; i < count; i++)
    PL_TRY(be->ops->matmul(be, ys[i], x, n, Ws[i], bs[i]));
  return 0;
}

/* Every layer, then the logits rows: the same ops for every step of a given size. */
static int layers_ops(pl_runner *r, const pl_step_plan *pl) {
  const pl_model *m = r->m;
  const pl_hparams *hp = &m->hp;
  const pl_backend_ops *o = r->be->ops;
  pl_backend *be = r->be;
  int n = pl->n_tokens, E = hp->n_embd, hd = hp->head_dim;
  float scale = 1.0f / sqrtf((float)hd);
  for (int l = 0; l < hp->n_layer; l++) {
    const pl_layer *L = &m->layers[l];
    PL_TRY(o->rmsnorm(be, r->h, r->x, &L->attn_norm, n, E, hp->rms_eps));
    float *qkv[] = {r->q, r->k, r->v};
    const pl_tensor *wqkv[] = {&L->wq, &L->wk, &L->wv};
    const pl_tensor *bqkv[] = {L->bq.data ? &L->bq : NULL, L->bk.data ? &L->bk : NULL,
                               L->bv.data ? &L->bv : NULL};
    PL_TRY(matmuls(be, qkv, r->h, n, wqkv, bqkv, 3));
    if (L->q_norm.data) {
      PL_TRY(o->rmsnorm(be, r->q, r->q, &L->q_norm, n * hp->n_head, hd, hp->rms_eps));
      PL_TRY(o->rmsnorm(be, r->k, r->k, &L->k_norm, n * hp->n_head_kv, hd, hp->rms_eps));
    }
    PL_TRY(o->rope(be, r->q, r->cs, n, hp->n_head, &r->rs));
    PL_TRY(o->rope(be, r->k, r->cs, n, hp->n_head_kv, &r->rs));
    PL_TRY(o->kv_write(be, l, r->k, r->v));
    PL_TRY(o->attention(be, l, r->attn, r->q, hp->n_head, scale));
    PL_TRY(o->matmul(be, r->h, r->attn, n, &L->wo, NULL));
    PL_TRY(o->add(be, r->x, r->h, (size_t)n * E));
    PL_TRY(o->rmsnorm(be, r->h, r->x, &L->ffn_norm, n, E, hp->rms_eps));
    float *gu[] = {r->g, r->u};
    const pl_tensor *wgu[] = {&L->w_gate, &L->w_up}, *none[] = {NULL, NULL};
    PL_TRY(matmuls(be, gu, r->h, n, wgu, none, 2));
    PL_TRY(o->swiglu(be, r->g, r->g, r->u, (size_t)n * hp->n_ff));
    PL_TRY(o->matmul(be, r->h, r->g, n, &L->w_down, NULL));
    PL_TRY(o->add(be, r->x, r->h, (size_t)n * E));
  }
  if (pl->n_logits == 0)
    return 0;
  PL_TRY(o->get_rows(be, r->hl, r->x, E));
  PL_TRY(o->rmsnorm(be, r->hl, r->hl, &m->output_norm, pl->n_logits, E, hp->rms_eps));
  return o->matmul(be, r->logits, r->hl, pl->n_logits, &m->output, NULL);
}

int pl_runner_forward(pl_runner *r, const pl_step_plan *pl, float *logits_out) {
  PL_TRY(check_plan(r, pl));
  pl_backend *be = r->be;
  pl_step_plan padded;
  const pl_step_plan *run = pl;
  int b = graph_size(r, pl);
  if (b > pl->n_tokens) {
    PL_TRY(pad_plan(r, pl, b, &padded));
    run = &padded;
  }
  PL_TRY(be->ops->step_begin(be, run));
  int rc = forward_ops(r, run, b > 0);
  if (rc == 0 && pl->n_logits > 0 && logits_out)
    rc = be->ops->download(be, logits_out, r->logits,
                           (size_t)pl->n_logits * r->m->hp.n_vocab * sizeof(float));
  int rc_end = be->ops->step_end(be); /* always: waits for queued work, reports its errors */
  return rc < 0 ? rc : rc_end;
}

int pl_runner_has_argmax(const pl_runner *r) { return r->be->ops->argmax != NULL; }

int pl_runner_argmax(pl_runner *r, int n, int32_t *ids) {
  if (!r->be->ops->argmax)
    return pl_fail(PL_EUNSUPPORTED, "the %s backend has no argmax", r->be->ops->name);
  if (n < 0 || n > r->p.max_logits)
    return pl_fail(PL_EINVAL, "argmax of %d rows (at most %d)", n, r->p.max_logits);
  return r->be->ops->argmax(r->be, ids, r->logits, n, r->m->hp.n_vocab);
}

int pl_runner_has_sample_reduce(const pl_runner *r) { return r->be->ops->sample_reduce != NULL; }

int pl_runner_sample_reduce(pl_runner *r, int n, pl_row_reduce *rows, const pl_logit_edit *edits,
                            int n_edits) {
  if (!r->be->ops->sample_reduce)
    return pl_fail(PL_EUNSUPPORTED, "the %s backend has no sampling reduction", r->be->ops->name);
  if (n < 0 || n > r->p.max_logits)
    return pl_fail(PL_EINVAL, "sampling reduction of %d rows (at most %d)", n, r->p.max_logits);
  return r->be->ops->sample_reduce(r->be, rows, r->logits, n, r->m->hp.n_vocab, edits, n_edits);
}

int pl_runner_logits(pl_runner *r, int n, float *out) {
  if (n < 0 || n > r->p.max_logits)
    return pl_fail(PL_EINVAL, "%d logits rows (at most %d)", n, r->p.max_logits);
  size_t V = (size_t)r->m->hp.n_vocab;
  return r->be->ops->download(r->be, out, r->logits, (size_t)n * V * sizeof(float));
}
