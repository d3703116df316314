/* The engine: request lifecycle and the step loop (DESIGN.md "One step, end to end").
 *
 *   add_request ─► scheduler (waiting) ─► step(): schedule → runner forward → sample each
 *   logits row with its request's own RNG → append → detokenize → stop checks → events;
 *   finished samples free their blocks (full blocks stay in the prefix cache).
 *
 * A request with n > 1 is a group of n samples. Sample 0 is the scheduler request created at
 * add time; when its prompt's logits arrive, the other n-1 are forked from it (they share every
 * prompt block; the partial last block is copied on first write) and all n sample from those
 * same logits, each with its own RNG. Single-threaded: see pagellm.h. */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/sysinfo.h>
#include <unistd.h>

#include "backend/backend.h"
#include "core/scheduler.h"
#include "engine/engine_access.h"
#include "engine/engine_impl.h"
#include "engine/sampler.h"
#include "model/runner.h"
#include "util/alloc.h"
#include "util/error.h"
#include "util/log.h"

void pl_engine_params_default(pl_engine_params *p) {
  memset(p, 0, sizeof *p);
  p->enable_prefix_caching = 1;
  p->fair_share = 1;
  p->seed = 0x5EED;
}

void pl_sampling_params_default(pl_sampling_params *sp) {
  memset(sp, 0, sizeof *sp);
  sp->temperature = 1.0f;
  sp->top_p = 1.0f;
  sp->repetition_penalty = 1.0f;
  sp->seed = -1;
  sp->max_tokens = 16;
  sp->logprobs = -1;
  sp->n = 1;
}

/* ---- creation ------------------------------------------------------------------------- */

static size_t default_kv_bytes(void) {
  struct sysinfo si;
  if (sysinfo(&si) != 0)
    return (size_t)1 << 30;
  /* a quarter of free memory, at most 8 GiB: weights and activations need the rest */
  size_t freeb = (size_t)si.freeram * si.mem_unit + (size_t)si.bufferram * si.mem_unit;
  size_t b = freeb / 4;
  return b > ((size_t)8 << 30) ? ((size_t)8 << 30) : b;
}

static pl_dtype kv_dtype_of(pl_kv_dtype d) {
  switch (d) {
  case PL_KV_DTYPE_F32: return PL_DT_F32;
  case PL_KV_DTYPE_F16: return PL_DT_F16;
  case PL_KV_DTYPE_BF16: return PL_DT_BF16;
  case PL_KV_DTYPE_Q8_0: return PL_DT_Q8_0;
  default: return PL_DT_AUTO;
  }
}

/* Bytes for the KV pool when the user gave none. On a GPU: what is left of
 * gpu_memory_utilization x total after weights and activations (vLLM's rule). On the CPU: a
 * share of free host memory, but never more than every sequence slot at full length needs. */
static int auto_kv_bytes(pl_engine *e, size_t kv_tok, size_t *out) {
  const pl_engine_params *p = &e->p;
  size_t freeb = 0, total = 0;
  e->be->ops->mem_info(e->be, &freeb, &total);
  size_t cap = (size_t)p->max_num_seqs * (size_t)p->max_model_len * kv_tok;
  if (total) {
    float u = p->gpu_memory_utilization;
    size_t used = total - freeb, budget = (size_t)((double)total * u);
    if (budget <= used)
      return pl_fail(PL_ENOMEM,
                     "no GPU memory left for the KV cache: weights and activations use %.2f GiB "
                     "of the %.2f GiB that --gpu-memory-utilization %.2f allows; raise it or "
                     "lower --max-num-batched-tokens",
                     used / 1073741824.0, budget / 1073741824.0, u);
    *out = budget - used;
  } else {
    *out = default_kv_bytes();
  }
  if (*out > cap)
    *out = cap;
  return 0;
}

/* Weights into backend memory, with a progress bar on a terminal for large models. */
static int upload_weights(pl_engine *e) {
  size_t freeb = 0, total = 0;
  e->be->ops->mem_info(e->be, &freeb, &total);
  if (total && e->model->weight_bytes > freeb)
    return pl_fail(PL_ENOMEM,
                   "model needs %.2f GiB for its weights, %.2f GiB of GPU memory is free: use a "
                   "smaller or quantized model, or another GPU (--device cuda:N)",
                   e->model->weight_bytes / 1073741824.0, freeb / 1073741824.0);
  return pl_model_upload(e->model, e->be, isatty(2) && e->model->weight_bytes > (64u << 20));
}

/* The model: from its file, or random weights (--load-format dummy). */
static int load_model(const pl_engine_params *p, pl_model **out) {
  if (p->load_format != PL_LOAD_DUMMY) {
    if (p->model_config)
      return pl_fail(PL_EINVAL, "--model-config applies to --load-format dummy only");
    if (p->dtype != PL_WEIGHT_DTYPE_AUTO)
      return pl_fail(PL_EINVAL, "--dtype applies to --load-format dummy only (file weights keep "
                     "their stored types)");
    return pl_model_load(p->model_path, out);
  }
  pl_dummy_spec ds = pl_engine_dummy_spec(p, p->model_config ? p->model_config : p->model_path);
  return pl_model_load_dummy(&ds, out);
}

pl_dummy_spec pl_engine_dummy_spec(const pl_engine_params *p, const char *config) {
  static const pl_dtype types[] = {PL_DT_BF16, PL_DT_F32, PL_DT_F16, PL_DT_BF16};
  return (pl_dummy_spec){.config = config,
                         .dtype = (unsigned)p->dtype < 4 ? types[p->dtype] : PL_DT_AUTO,
                         .seed = p->load_seed};
}

int pl_engine_create(const pl_engine_params *pin, pl_engine **out) {
  *out = NULL;
  if (!pin || (!pin->model_path && pin->load_format != PL_LOAD_DUMMY))
    return pl_fail(PL_EINVAL, "model_path is required");
  pl_engine *e = pl_calloc(1, sizeof *e);
  if (!e)
    return pl_fail(PL_ENOMEM, "out of memory");
  e->p = *pin;
  e->next_id = 1;
  int rc = load_model(pin, &e->model);
  if (rc < 0)
    goto fail;
  const pl_hparams *hp = &e->model->hp;
  rc = pl_engine_load_text(e); /* tokenizer + chat template (engine_text.c) */
  if (rc < 0)
    goto fail;

  pl_engine_params *p = &e->p;
  if (p->block_size <= 0) p->block_size = 16;
  if (p->max_num_seqs <= 0) p->max_num_seqs = 256;
  if (p->max_num_batched_tokens <= 0) p->max_num_batched_tokens = 2048;
  if (p->max_waiting <= 0) p->max_waiting = 1024;
  if (p->max_model_len <= 0) p->max_model_len = hp->n_ctx_train;
  if (p->gpu_memory_utilization == 0) p->gpu_memory_utilization = 0.9f;
  if (p->block_size > 1024 || p->max_num_seqs > 65536 || p->max_num_batched_tokens > (1 << 20) ||
      p->max_model_len > (1 << 24) || !(p->gpu_memory_utilization > 0) ||
      p->gpu_memory_utilization > 1) {
    rc = pl_fail(PL_EINVAL, "engine parameters out of range (block size %d, seqs %d, batched "
                 "tokens %d, max model len %d, gpu memory utilization %g)", p->block_size,
                 p->max_num_seqs, p->max_num_batched_tokens, p->max_model_len,
                 p->gpu_memory_utilization);
    goto fail;
  }
  if (p->max_num_batched_tokens < p->max_num_seqs)
    p->max_num_batched_tokens = p->max_num_seqs; /* every running seq must be able to decode */
  if ((rc = pl_backend_create(p->device, p->n_threads, &e->be)) < 0)
    goto fail;
  e->be->batch_invariant = p->batch_invariant;
  e->be->eager = p->enforce_eager;
  if ((rc = upload_weights(e)) < 0)
    goto fail;
  /* activations first, so that the KV pool gets what they leave */
  const int max_logits = p->max_num_seqs + pl_spec_extra_logits(p);
  pl_runner_params rp = {.max_tokens = p->max_num_batched_tokens, .max_logits = max_logits,
                         .block_size = p->block_size, .n_blocks = 0};
  if ((rc = pl_runner_create(e->model, e->be, &rp, &e->runner)) < 0)
    goto fail;
  pl_kv_spec ks = pl_runner_kv_spec(e->model, p->block_size, 0, kv_dtype_of(p->kv_cache_dtype));
  size_t kv_tok = e->be->ops->kv_bytes_per_token(e->be, &ks);
  if (!kv_tok) {
    rc = pl_fail(PL_EUNSUPPORTED, "the %s backend has no %s KV cache for this model (head_dim "
                 "%d%s)", e->be->ops->name, pl_dtype_name(ks.dtype), ks.head_dim,
                 ks.dtype == PL_DT_Q8_0 ? ": Q8_0 KV needs a multiple of 32, on the CPU" : "");
    goto fail;
  }
  size_t kv_bytes = p->kv_cache_bytes;
  if (!kv_bytes && (rc = auto_kv_bytes(e, kv_tok, &kv_bytes)) < 0)
    goto fail;
  long long n_blocks = (long long)(kv_bytes / (kv_tok * (size_t)p->block_size));
  if (n_blocks > (1 << 24))
    n_blocks = 1 << 24;
  long long need = (p->max_model_len + p->block_size - 1) / p->block_size;
  if (n_blocks < need) {
    rc = pl_fail(PL_EINVAL,
                 "KV cache of %.1f MiB holds %lld blocks of %d tokens (%zu bytes per token), but "
                 "one sequence of max_model_len %d needs %lld: raise --kv-cache-memory%s or "
                 "lower --max-model-len",
                 kv_bytes / 1048576.0, n_blocks, p->block_size, kv_tok, p->max_model_len, need,
                 p->kv_cache_bytes ? "" : " (or --gpu-memory-utilization)");
    goto fail;
  }
  n_blocks += 1; /* the null block */
  if ((rc = pl_runner_init_kv(e->runner, (int)n_blocks, ks.dtype)) < 0)
    goto fail;
  pl_sched_params sp = {.num_blocks = (int)n_blocks, .block_size = p->block_size,
                        .max_model_len = p->max_model_len, .max_num_seqs = p->max_num_seqs,
                        .max_num_batched_tokens = p->max_num_batched_tokens,
                        .kv_alloc = p->kv_alloc,
                        .max_num_logits = max_logits,
                        .enable_prefix_caching = p->enable_prefix_caching,
                        .policy = PL_SCHED_PRIORITY,
                        .admission = p->kv_admit_greedy ? PL_ADMIT_GREEDY : PL_ADMIT_RESERVE,
                        .fair_share = p->fair_share};
  if ((rc = pl_sched_create(&sp, &e->sched)) < 0)
    goto fail;
  e->logits = pl_malloc((size_t)max_logits * hp->n_vocab * sizeof(float));
  e->argmax_ids = pl_malloc((size_t)max_logits * sizeof(int32_t));
  if (pl_runner_has_sample_reduce(e->runner))
    e->reduced = pl_calloc((size_t)max_logits, sizeof *e->reduced);
  if (!e->logits || !e->argmax_ids || (pl_runner_has_sample_reduce(e->runner) && !e->reduced)) {
    rc = pl_fail(PL_ENOMEM, "out of memory for logits");
    goto fail;
  }
  if ((rc = pl_sampler_init(&e->sampler, hp->n_vocab)) < 0)
    goto fail;
  e->n_blocks = (int)n_blocks;
  e->kv_tok = kv_tok;
  if ((rc = pl_spec_create(e)) < 0) /* speculative decoding; a draft model loads here */
    goto fail;
  e->kv_bytes = (size_t)(n_blocks - 1) * kv_tok * (size_t)p->block_size;
  PL_INFO("device: %s", e->be->desc);
  PL_INFO("model %s: %s, %.1f M params, %.1f MiB weights", e->model->name,
          pl_arch_name(hp->arch), e->model->n_params / 1e6, e->model->weight_bytes / 1048576.0);
  PL_INFO("KV cache: %lld blocks x %d tokens = %lld tokens (%.1f MiB %s, %zu bytes/token, %s); "
          "max_model_len %d -> %lld sequences at full length",
          n_blocks - 1, p->block_size, (n_blocks - 1) * p->block_size, e->kv_bytes / 1048576.0,
          pl_dtype_name(e->be->ops->kv_dtype(e->be)), kv_tok,
          p->kv_alloc == PL_KV_STATIC ? "static reservation" : "paged",
          p->max_model_len, (n_blocks - 1) / need);
  *out = e;
  return PL_OK;
fail:
  pl_engine_destroy(e);
  return rc;
}

void pl_engine_destroy(pl_engine *e) {
  if (!e)
    return;
  while (e->groups)
    pl_engine_group_free(e, e->groups);
  pl_engine_events_clear(e);
  pl_free(e->events);
  pl_free(e->ev_arena);
  pl_spec_destroy(e);
  pl_sched_destroy(e->sched);
  pl_runner_free(e->runner);
  if (e->be)
    e->be->ops->destroy(e->be); /* also frees the uploaded weights: before the model */
  pl_free(e->logits);
  pl_free(e->argmax_ids);
  pl_free(e->reduced);
  pl_free(e->edits);
  pl_sampler_free(&e->sampler);
  pl_engine_grammar_free_all(e);
  pl_engine_unload_text(e);
  pl_model_free(e->model);
  pl_free(e);
}

/* ---- accessors -------------------------------------------------------------------------- */
const struct pl_tokenizer *pl_engine_tokenizer(const pl_engine *e) { return e->tok; }
const struct pl_chat_template *pl_engine_chat_template(const pl_engine *e) { return e->tmpl; }
const char *pl_engine_bos_text(const pl_engine *e) { return e->bos_text ? e->bos_text : ""; }
const char *pl_engine_eos_text(const pl_engine *e) { return e->eos_text ? e->eos_text : ""; }
const struct pl_model *pl_engine_model(const pl_engine *e) { return e->model; }
const char *pl_engine_model_name(const pl_engine *e) { return e->model->name; }
const char *pl_engine_device(const pl_engine *e) { return e->be->desc; }

double pl_engine_mem_bandwidth(pl_engine *e) {
  return e->be->ops->mem_bandwidth ? e->be->ops->mem_bandwidth(e->be) : 0;
}
const char *pl_engine_kv_dtype(const pl_engine *e) {
  return pl_dtype_name(e->be->ops->kv_dtype(e->be));
}
int pl_engine_max_model_len(const pl_engine *e) { return e->p.max_model_len; }
int pl_engine_fair_share(const pl_engine *e) { return e->p.fair_share; }
int pl_engine_has_unfinished(const pl_engine *e) {
  return e->groups != NULL || e->n_events > e->ev_read;
}

void pl_engine_get_stats(const pl_engine *e, pl_engine_stats *st) {
  pl_sched_stats ss;
  pl_sched_get_stats(e->sched, &ss);
  memset(st, 0, sizeof *st);
  st->num_running = ss.num_running;
  st->num_waiting = ss.num_waiting;
  st->blocks_total = ss.kv.blocks_total;
  st->blocks_used = ss.kv.blocks_used;
  st->blocks_cached_free = ss.kv.blocks_cached_free;
  st->kv_usage = ss.kv.usage;
  st->prefix_queries_tokens = ss.kv.prefix_queries_tokens;
  st->prefix_hits_tokens = ss.kv.prefix_hits_tokens;
  st->num_preemptions = ss.num_preemptions;
  st->cow_copies = ss.kv.cow_copies;
  st->evictions = ss.kv.evictions;
  st->prompt_tokens_total = e->prompt_tokens_total;
  st->generation_tokens_total = e->generation_tokens_total;
  st->block_size = e->p.block_size;
  st->max_model_len = e->p.max_model_len;
  st->kv_tokens_capacity = (int64_t)(e->n_blocks - 1) * e->p.block_size;
  st->kv_allocated_tokens = st->blocks_used * e->p.block_size;
  st->peak_running = ss.peak_running;
  st->peak_blocks_used = ss.kv.blocks_peak_used;
  st->kv_bytes_per_token = (int64_t)e->kv_tok;
  st->prompt_tokens_computed = ss.prompt_tokens_computed;
  pl_spec_stats(e, st);
  for (const pl_group *g = e->groups; g; g = g->next)
    for (int i = 0; i < g->sp.n; i++) {
      const pl_sched_req *r = g->samples[i].sr;
      if (r && r->status == PL_REQ_RUNNING)
        st->kv_live_tokens += r->num_computed_tokens;
    }
}
