/* Engine behaviour on a real trained model (TinyStories 280K, F32):
 *  - greedy outputs are token-identical whether a request runs alone or amid 1, 7 or 63 others
 *    of mixed lengths, with chunked prefill, without prefix caching, with preemption forced by
 *    a tiny pool, and in static KV mode (batch_invariant on: on CUDA, vLLM's batch-invariant
 *    mode; the default cuBLAS mode is not invariant);
 *  - seeded sampling is reproducible and independent of batch composition;
 *  - n = 4 forks the prompt's blocks (block counts asserted) and the samples differ;
 *  - bad requests fail alone with a clear status; abort frees blocks; memory returns to zero.
 * The reference for "alone" is the same engine running one request at a time, which is itself
 * checked against llama.cpp in tests/node/llamacpp_golden.test.mjs. */
#include <stdio.h>
#include <string.h>

#include "check.h"
#include "pagellm.h"
#include "util/alloc.h"

#define NREQ 64
#define MAXOUT 48

typedef struct {
  int32_t prompt[128];
  int n_prompt;
  int max_tokens;
  int64_t seed;
  float temp;
  int32_t out[MAXOUT];
  int n_out;
  uint64_t id;
  int finish;
} req;

static uint64_t rs = 42;
static uint32_t rnd(void) {
  rs = rs * 6364136223846793005ull + 1442695040888963407ull;
  return (uint32_t)(rs >> 33);
}

static const char *model_path(void) { return data_path("models/tinystories-280K.gguf"); }

/* Run reqs[0..n) concurrently (all added up front) on `shared` or a fresh engine made from
 * ep; fills out/n_out and the stats after the run. */
static int run_all(const pl_engine_params *ep, pl_engine *shared, req *r, int n,
                   pl_engine_stats *st_out) {
  pl_engine *e = shared;
  int rc = shared ? 0 : pl_engine_create(ep, &e);
  CHECK(rc == 0, "engine create: %s", pl_last_error());
  if (rc)
    return rc;
  for (int i = 0; i < n; i++) {
    pl_sampling_params sp;
    pl_sampling_params_default(&sp);
    sp.temperature = r[i].temp;
    sp.seed = r[i].seed;
    sp.max_tokens = r[i].max_tokens;
    sp.ignore_eos = 1;
    r[i].n_out = 0;
    r[i].finish = 0;
    rc = pl_engine_add_request(e, NULL, r[i].prompt, r[i].n_prompt, &sp, &r[i].id);
    CHECK(rc == 0, "add: %s", pl_last_error());
  }
  int steps = 0;
  while (pl_engine_has_unfinished(e) && steps < 100000) {
    rc = pl_engine_step(e);
    CHECK(rc >= 0, "step: %s", pl_last_error());
    if (rc < 0)
      break;
    steps++;
    pl_output_event ev;
    while (pl_engine_poll(e, &ev)) {
      for (int i = 0; i < n; i++)
        if (r[i].id == ev.request_id) {
          for (int k = 0; k < ev.n_tokens && r[i].n_out < MAXOUT; k++)
            r[i].out[r[i].n_out++] = ev.tokens[k];
          if (ev.finish)
            r[i].finish = ev.finish;
        }
    }
  }
  pl_engine_stats st;
  pl_engine_get_stats(e, &st);
  CHECK_EQ_INT(st.num_running, 0);
  CHECK_EQ_INT(st.num_waiting, 0);
  CHECK_EQ_INT(st.blocks_used, 0);
  if (st_out)
    *st_out = st;
  if (!shared)
    pl_engine_destroy(e);
  return 0;
}

static void make_reqs(req *r, int n, float temp) {
  rs = 42;
  for (int i = 0; i < n; i++) {
    memset(&r[i], 0, sizeof r[i]);
    r[i].n_prompt = 1 + (int)(rnd() % 100);
    r[i].prompt[0] = 1;
    /* half the prompts share a 40-token prefix: prefix-cache hits across requests */
    for (int k = 1; k < r[i].n_prompt; k++)
      r[i].prompt[k] = (i % 2 == 0 && k < 40) ? (int32_t)(259 + (k * 7) % 250)
                                              : (int32_t)(259 + rnd() % 253);
    r[i].max_tokens = 5 + (int)(rnd() % (MAXOUT - 5));
    r[i].temp = temp;
    r[i].seed = temp > 0 ? 1000 + i : -1;
  }
}

static int same(const req *a, const req *b) {
  return a->n_out == b->n_out && !memcmp(a->out, b->out, sizeof(int32_t) * (size_t)a->n_out);
}

/* params for an engine over the test model on the test device (PAGELLM_TEST_DEVICE, check.h),
 * one thread, kv_bytes of KV cache (0: the default) */
static pl_engine_params test_params(size_t kv_bytes) {
  pl_engine_params ep;
  pl_engine_params_default(&ep);
  ep.model_path = model_path();
  ep.n_threads = 1;
  ep.device = test_device();
  ep.kv_cache_bytes = kv_bytes;
  return ep;
}

/* an engine with params ep, or NULL after a failed check */
static pl_engine *test_engine(const pl_engine_params *ep) {
  pl_engine *e = NULL;
  if (pl_engine_create(ep, &e) != 0) {
    CHECK(0, "engine create: %s", pl_last_error());
    return NULL;
  }
  return e;
}

static void batch_invariance(float temp) {
  static req ref[NREQ], got[NREQ];
  make_reqs(ref, NREQ, temp);
  /* one thread: thread-count independence is the paged-forward test's */
  pl_engine_params ep = test_params(64 << 20);
  /* the CPU is batch-invariant as it is; on CUDA this takes the invariant matmul instead of
   * cuBLAS, whose algorithm (and so the rounding of a row) depends on the batch size */
  ep.batch_invariant = 1;
  /* alone, one at a time (one engine: its prefix cache does not change results either) */
  pl_engine *alone;
  int rc = pl_engine_create(&ep, &alone);
  CHECK(rc == 0, "%s", pl_last_error());
  if (rc)
    return; /* nothing below can run without the engine */
  for (int i = 0; i < NREQ; i++) {
    run_all(&ep, alone, &ref[i], 1, NULL);
    CHECK_EQ_INT(ref[i].n_out, ref[i].max_tokens);
    CHECK_EQ_INT(ref[i].finish, PL_FINISH_LENGTH);
  }
  pl_engine_destroy(alone);
  struct {
    const char *name;
    int n;               /* requests run together (request 0 amid n-1 others) */
    int batched_tokens, prefix, kv_blocks, kv_static;
  } cfgs[] = {
      {"amid 1 other", 2, 0, 1, 0, 0},
      {"amid 7 others", 8, 0, 1, 0, 0},
      {"amid 63 others", 64, 0, 1, 0, 0},
      {"chunked prefill (16 tokens/step)", 64, 16, 1, 0, 0},
      {"no prefix caching", 64, 0, 0, 0, 0},
      {"tiny pool: preemption", 64, 0, 1, 24, 0},
      {"static kv", 16, 0, 1, 0, 1},
  };
  for (size_t c = 0; c < sizeof cfgs / sizeof *cfgs; c++) {
    memcpy(got, ref, sizeof ref);
    pl_engine_params e2 = ep;
    if (cfgs[c].batched_tokens) e2.max_num_batched_tokens = cfgs[c].batched_tokens;
    e2.enable_prefix_caching = cfgs[c].prefix;
    if (cfgs[c].kv_blocks) {
      /* bytes per token of this model's KV: 1280 in f32 on the CPU, half in bf16 on the GPU
       * (its default), so the pool has the same kv_blocks blocks on both */
      e2.kv_cache_bytes = (size_t)cfgs[c].kv_blocks * 16 * (test_on_gpu() ? 640 : 1280);
      e2.max_model_len = 160;
      e2.kv_admit_greedy = 1; /* vLLM's admission: the pool runs out, requests preempt */
    }
    if (cfgs[c].kv_static) {
      e2.kv_alloc = PL_KV_STATIC;
      e2.max_model_len = 160;
    }
    pl_engine_stats st;
    run_all(&e2, NULL, got, cfgs[c].n, &st);
    int diff = 0;
    for (int i = 0; i < cfgs[c].n; i++)
      diff += !same(&got[i], &ref[i]);
    printf("%s, temp %.1f: %d/%d outputs differ; preemptions %lld, prefix hits %lld/%lld tokens\n",
           cfgs[c].name, temp, diff, cfgs[c].n, (long long)st.num_preemptions,
           (long long)st.prefix_hits_tokens, (long long)st.prefix_queries_tokens);
    CHECK(diff == 0, "%s: %d outputs differ from running alone", cfgs[c].name, diff);
    if (cfgs[c].kv_blocks)
      CHECK(st.num_preemptions > 0, "tiny pool should force preemption");
    if (cfgs[c].prefix && cfgs[c].n == 64)
      CHECK(st.prefix_hits_tokens > 0, "shared prefixes should hit the cache");
  }
}

static void parallel_samples(void) {
  pl_engine_params ep = test_params(16 << 20);
  ep.n_threads = 2;
  ep.enable_prefix_caching = 0;
  pl_engine *e = test_engine(&ep);
  if (!e)
    return;
  int32_t prompt[200];
  prompt[0] = 1;
  for (int i = 1; i < 200; i++)
    prompt[i] = 259 + (i * 13) % 250;
  pl_sampling_params sp;
  pl_sampling_params_default(&sp);
  sp.n = 4;
  sp.temperature = 1.0f;
  sp.seed = 7;
  sp.max_tokens = 20;
  sp.ignore_eos = 1;
  uint64_t id;
  CHECK(pl_engine_add_request(e, NULL, prompt, 200, &sp, &id) == 0, "%s", pl_last_error());
  int32_t out[4][32];
  int n_out[4] = {0, 0, 0, 0}, finished = 0;
  int64_t max_used = 0;
  while (pl_engine_has_unfinished(e)) {
    CHECK(pl_engine_step(e) >= 0);
    pl_engine_stats st;
    pl_engine_get_stats(e, &st);
    max_used = st.blocks_used > max_used ? st.blocks_used : max_used;
    pl_output_event ev;
    while (pl_engine_poll(e, &ev)) {
      CHECK(ev.index >= 0 && ev.index < 4);
      for (int k = 0; k < ev.n_tokens; k++)
        out[ev.index][n_out[ev.index]++] = ev.tokens[k];
      finished += ev.finish != 0;
    }
  }
  CHECK_EQ_INT(finished, 4);
  /* 200 prompt tokens = 12 full blocks + 1 partial: shared once. 20 more tokens per sample
   * need at most 2 more blocks each (incl. the copy of the partial block). Recomputing the
   * prompt per sample would need 4 x 13 = 52 blocks. */
  printf("n=4: peak blocks used %lld (prompt alone: 13; without sharing: >= 52)\n",
         (long long)max_used);
  CHECK(max_used <= 13 + 4 * 2, "peak %lld blocks: the prompt's blocks were not shared",
        (long long)max_used);
  int distinct = 0;
  for (int a = 0; a < 4; a++) {
    CHECK_EQ_INT(n_out[a], 20);
    int dup = 0;
    for (int b = 0; b < a; b++)
      dup |= !memcmp(out[a], out[b], sizeof(int32_t) * 20);
    distinct += !dup;
  }
  CHECK(distinct >= 3, "only %d distinct samples of 4", distinct);
  pl_engine_destroy(e);
}

static void bad_requests(void) {
  pl_engine_params ep = test_params(8 << 20);
  pl_engine *e = test_engine(&ep);
  if (!e)
    return;
  pl_sampling_params sp;
  pl_sampling_params_default(&sp);
  int32_t p[300];
  for (int i = 0; i < 300; i++) p[i] = 300;
  uint64_t id;
  CHECK_EQ_INT(pl_engine_add_request(e, NULL, p, 300, &sp, &id), PL_ETOOLONG);
  CHECK(strstr(pl_last_error(), "256") != NULL, "%s", pl_last_error());
  sp.max_tokens = 250;
  CHECK_EQ_INT(pl_engine_add_request(e, NULL, p, 10, &sp, &id), PL_ETOOLONG);
  pl_sampling_params_default(&sp);
  sp.top_p = 0;
  CHECK_EQ_INT(pl_engine_add_request(e, NULL, p, 10, &sp, &id), PL_EINVAL);
  CHECK(strstr(pl_last_error(), "top_p") != NULL, "%s", pl_last_error());
  pl_sampling_params_default(&sp);
  p[3] = 512;
  CHECK_EQ_INT(pl_engine_add_request(e, NULL, p, 10, &sp, &id), PL_EINVAL);
  CHECK_EQ_INT(pl_engine_add_request(e, NULL, p, 0, &sp, &id), PL_EINVAL);
  p[3] = 300;
  /* a good request still runs, and abort mid-way frees its blocks */
  sp.max_tokens = 100;
  CHECK(pl_engine_add_request(e, NULL, p, 40, &sp, &id) == 0);
  for (int i = 0; i < 5; i++)
    pl_engine_step(e);
  pl_engine_stats st;
  pl_engine_get_stats(e, &st);
  CHECK(st.blocks_used > 0);
  CHECK_EQ_INT(pl_engine_abort(e, id), 0);
  pl_output_event ev;
  int aborted = 0;
  while (pl_engine_poll(e, &ev))
    aborted |= ev.finish == PL_FINISH_ABORT;
  CHECK(aborted, "abort event");
  pl_engine_get_stats(e, &st);
  CHECK_EQ_INT(st.blocks_used, 0);
  CHECK_EQ_INT(pl_engine_abort(e, id), PL_ENOTFOUND);
  /* a text prompt goes through the tokenizer */
  CHECK(pl_engine_add_request(e, "Once upon a time", NULL, 0, &sp, &id) == 0, "%s", pl_last_error());
  while (pl_engine_has_unfinished(e)) {
    pl_engine_step(e);
    while (pl_engine_poll(e, &ev)) {
      if (ev.finish) CHECK_EQ_INT(ev.prompt_tokens, 5);
    }
  }
  pl_engine_destroy(e);
  /* a KV dtype the backend cannot keep for this model: a clear error, no engine (TinyStories'
   * heads have 8 dims; Q8_0 KV is kept in blocks of 32 on the CPU, and not at all on a GPU) */
  ep.kv_cache_dtype = PL_KV_DTYPE_Q8_0;
  e = NULL;
  CHECK_EQ_INT(pl_engine_create(&ep, &e), PL_EUNSUPPORTED);
  CHECK(e == NULL && strstr(pl_last_error(), "Q8_0 KV cache") &&
            strstr(pl_last_error(), "head_dim 8"), "%s", pl_last_error());
}

/* Out of memory while a sample's last output event is queued: the sample fails with a message
 * and its finish event still arrives (at a later poll), exactly once, for every injected
 * failure point of that step; the engine then serves the next request normally. Events live
 * in an arena that a busy engine keeps and an idle one frees, so a request's first step is
 * the one whose event allocates: max_tokens 1 makes that the finish event. */
static void emit_oom(void) {
  pl_engine_params ep = test_params(8 << 20);
  pl_engine *e = test_engine(&ep);
  if (!e)
    return;
  int32_t prompt[] = {1, 403, 407, 261, 378};
  int failed_at_emit = 0;
  for (long k = 0; k < 40; k++) {
    pl_sampling_params sp;
    pl_sampling_params_default(&sp);
    sp.max_tokens = 1; /* the failing step is the only one: its event is the finish event */
    sp.ignore_eos = 1;
    uint64_t id;
    CHECK(pl_engine_add_request(e, NULL, prompt, 5, &sp, &id) == 0, "%s", pl_last_error());
    pl_output_event ev;
    int finishes = 0, steps = 0, errors = 0;
    pl_alloc_fail_after(k); /* the k-th allocation of the step fails */
    pl_engine_step(e);
    pl_alloc_fail_after(-1);
    while (pl_engine_has_unfinished(e) && steps++ < 50) {
      while (pl_engine_poll(e, &ev)) {
        if (ev.finish != PL_FINISH_NONE) {
          finishes++;
          if (ev.finish == PL_FINISH_ERROR) {
            errors++;
            CHECK(ev.error && strstr(ev.error, "out of memory"), "error: %s",
                  ev.error ? ev.error : "(none)");
          }
        }
      }
      pl_engine_step(e);
    }
    CHECK_EQ_INT(finishes, 1);
    failed_at_emit += errors;
  }
  CHECK(failed_at_emit > 0, "no injected failure hit an output event");
  pl_engine_destroy(e);
}

/* The steady decode loop allocates nothing: once a batch is running (greedy and sampled
 * requests, with logprobs), a step and the polls of its events make no allocation. */
static void steady_state_no_alloc(void) {
  pl_engine_params ep = test_params(0);
  pl_engine *e = test_engine(&ep);
  if (!e)
    return;
  int32_t prompt[] = {1, 403, 407, 261, 378};
  for (int r = 0; r < 4; r++) {
    pl_sampling_params sp;
    pl_sampling_params_default(&sp);
    sp.max_tokens = 40;
    sp.ignore_eos = 1;
    if (r & 1) {
      sp.temperature = 0.8f;
      sp.top_p = 0.9f;
      sp.logprobs = 3;
      sp.seed = 7 + r;
    }
    uint64_t id;
    CHECK(pl_engine_add_request(e, NULL, prompt, 5, &sp, &id) == 0, "%s", pl_last_error());
  }
  pl_output_event ev;
  long allocs = 0;
  int events = 0;
  for (int step = 0; step < 30; step++) {
    long a0 = pl_alloc_count();
    CHECK(pl_engine_step(e) > 0, "step %d: %s", step, pl_last_error());
    while (pl_engine_poll(e, &ev))
      events++;
    if (step >= 5) /* warmed up: buffers at their high-water marks */
      allocs += pl_alloc_count() - a0;
  }
  CHECK(events >= 4 * 30, "events %d", events);
  CHECK(allocs == 0, "%ld allocations in 25 steady decode steps", allocs);
  pl_engine_destroy(e);
}

int main(void) {
  size_t live0 = pl_alloc_live_bytes();
  steady_state_no_alloc();
  emit_oom();
  batch_invariance(0.0f);
  batch_invariance(0.9f);
  parallel_samples();
  bad_requests();
  CHECK_EQ_INT(pl_alloc_live_bytes(), live0);
  return check_summary("test_engine");
}
