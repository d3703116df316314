/* Speculative decoding (engine/spec_decode.c, engine/spec_draft.c) on the bundled model:
 *  - the KV bookkeeping of proposals: slots without prefix hashes, rollback frees blocks;
 *  - greedy outputs are token-identical with and without speculation (n-gram lookup; the
 *    bundled model as its own draft; a random model-gen draft with the same vocabulary),
 *    alone, amid others, with preemption forced by a tiny pool and in static KV mode, with
 *    the scheduler and both KV pools checked after every step;
 *  - a draft with another vocabulary is refused with a clear error;
 *  - with --load-format dummy the draft has random weights of the shape --draft-model names;
 *  - seeded sampling keeps the target's distribution: chi-square homogeneity tests of token
 *    frequencies with and without speculation (fixed seed sets; each test's false-alarm rate
 *    is 0.1 %, so 0.6 % for the six of them together);
 *  - aborts between and amid verifications leak no block in either pool.
 * The reference is the same engine without speculation, itself checked against llama.cpp
 * and HF elsewhere. The greedy cases also run on the
 * TinyStories model (tests/data/models). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "core/kv_cache.h"
#include "engine/engine_impl.h"
#include "engine/spec_draft.h"
#include "golden_io.h"
#include "pagellm.h"
#include "util/alloc.h"

#define MAXOUT 64
#define NREQ 12

typedef struct {
  char prompt[512];
  int max_tokens;
  int64_t seed;
  int32_t out[MAXOUT];
  int n_out;
  uint64_t id;
  int finish;
} req;

static const char *model;
static const char *build_dir; /* where the pagellm binary is */
static char bad_draft[256];

/* ---- KV cache: proposals get slots but no hashes; truncate frees their blocks ---------- */
static void kv_spec_rollback(void) {
  pl_kv_cache_params kp = {.num_blocks = 16, .block_size = 4, .max_seqs = 2,
                           .max_model_len = 40, .enable_prefix_caching = 1};
  pl_kv_cache *kv;
  CHECK(pl_kv_cache_create(&kp, &kv) == 0, "%s", pl_last_error());
  int32_t tok[40];
  for (int i = 0; i < 40; i++)
    tok[i] = 100 + i;
  int s0;
  CHECK(pl_kv_seq_open(kv, 0, &s0) == 0, "open");
  CHECK(pl_kv_allocate_slots(kv, s0, tok, 6, 0) == 0, "%s", pl_last_error()); /* 1 full block */
  /* 1 real token + 7 proposals: positions 6..13, blocks 1..3 */
  CHECK(pl_kv_allocate_slots_spec(kv, s0, tok, 1, 7, 0) == 0, "%s", pl_last_error());
  CHECK_EQ_INT(pl_kv_seq_num_tokens(kv, s0), 14);
  CHECK_EQ_INT(pl_kv_seq_num_blocks(kv, s0), 4);
  CHECK(pl_kv_cache_check(kv) == 0, "%s", pl_last_error());
  /* a second sequence with the same 12 tokens finds only block 0 cached: blocks 1 and 2 are
   * full of proposals and must not be hashed */
  int s1;
  CHECK(pl_kv_seq_open(kv, 0, &s1) == 0, "open");
  CHECK_EQ_INT(pl_kv_lookup_prefix(kv, s1, tok, 13), 4);
  pl_kv_seq_free(kv, s1);
  int free_before = pl_kv_cache_num_free_blocks(kv);
  /* accept 2 of 7: keep 9 tokens, so blocks 3 (positions 12..15) goes back */
  CHECK(pl_kv_truncate(kv, s0, 9, 0) == 0, "%s", pl_last_error());
  CHECK_EQ_INT(pl_kv_seq_num_tokens(kv, s0), 9);
  CHECK_EQ_INT(pl_kv_seq_num_blocks(kv, s0), 3);
  CHECK_EQ_INT(pl_kv_cache_num_free_blocks(kv), free_before + 1);
  CHECK(pl_kv_cache_check(kv) == 0, "%s", pl_last_error());
  /* the next allocation hashes the accepted full block 1 */
  CHECK(pl_kv_allocate_slots(kv, s0, tok, 1, 0) == 0, "%s", pl_last_error());
  CHECK(pl_kv_seq_open(kv, 0, &s1) == 0, "open");
  CHECK_EQ_INT(pl_kv_lookup_prefix(kv, s1, tok, 13), 8);
  pl_kv_seq_free(kv, s1);
  /* never below the hashed part */
  CHECK(pl_kv_truncate(kv, s0, 7, 0) == PL_EINVAL, "truncate into a hashed block");
  pl_kv_seq_free(kv, s0);
  CHECK(pl_kv_cache_check(kv) == 0, "%s", pl_last_error());
  pl_kv_cache_destroy(kv);
}

/* ---- engine runs -------------------------------------------------------------------------- */

typedef struct {
  float temp, top_p, presence;
  int check_every_step;
  int abort_every;     /* > 0: abort a live request every that many steps */
} run_opts;

static int run_all(const pl_engine_params *ep, req *r, int n, const run_opts *o,
                   pl_engine_stats *st_out) {
  pl_engine *e;
  int rc = pl_engine_create(ep, &e);
  CHECK(rc == 0, "engine create: %s", pl_last_error());
  if (rc)
    return rc;
  for (int i = 0; i < n; i++) {
    pl_sampling_params sp;
    pl_sampling_params_default(&sp);
    sp.temperature = o->temp;
    sp.top_p = o->top_p > 0 ? o->top_p : 1.0f;
    sp.presence_penalty = o->presence;
    sp.seed = r[i].seed;
    sp.max_tokens = r[i].max_tokens;
    sp.ignore_eos = 1;
    r[i].n_out = 0;
    r[i].finish = 0;
    rc = pl_engine_add_request(e, r[i].prompt, NULL, 0, &sp, &r[i].id);
    CHECK(rc == 0, "add: %s", pl_last_error());
  }
  int steps = 0, live = n;
  while (pl_engine_has_unfinished(e) && steps < 100000) {
    rc = pl_engine_step(e);
    CHECK(rc >= 0, "step: %s", pl_last_error());
    if (rc < 0)
      break;
    steps++;
    pl_output_event ev;
    while (pl_engine_poll(e, &ev))
      for (int i = 0; i < n; i++)
        if (r[i].id == ev.request_id) {
          for (int k = 0; k < ev.n_tokens && r[i].n_out < MAXOUT; k++)
            r[i].out[r[i].n_out++] = ev.tokens[k];
          if (ev.finish) {
            r[i].finish = ev.finish;
            live--;
          }
        }
    if (o->abort_every > 0 && steps % o->abort_every == 0 && live > 0) {
      int j = (steps / o->abort_every * 7) % n;
      for (int t = 0; t < n && r[(j + t) % n].finish; t++)
        j = (j + 1) % n;
      if (!r[j].finish)
        CHECK(pl_engine_abort(e, r[j].id) == 0, "abort: %s", pl_last_error());
    }
    if (o->check_every_step) {
      int c1 = pl_sched_check(e->sched), c2 = pl_spec_check(e);
      CHECK(c1 == 0 && c2 == 0, "step %d invariants: %s", steps, pl_last_error());
      if (c1 || c2)
        break;
    }
  }
  pl_engine_stats st;
  pl_engine_get_stats(e, &st);
  CHECK_EQ_INT(st.num_running, 0);
  CHECK_EQ_INT(st.blocks_used, 0);
  CHECK_EQ_INT(st.spec_draft_blocks_used, 0);
  if (st_out)
    *st_out = st;
  pl_engine_destroy(e);
  return 0;
}

/* Prompts that repeat themselves (what prompt lookup is for) and some that do not. */
static void make_reqs(req *r, int n) {
  static const char *texts[] = {
      "And the LORD said unto Moses, Go in unto Pharaoh. And the LORD said unto Moses, Go",
      "A fortune: you will be rich. A fortune: you will be",
      "hacker n. a person who enjoys exploring the details of programmable systems. hacker n.",
      "In the beginning God created the heaven and the earth.",
      "The quick brown fox jumps over the lazy dog. The quick brown fox jumps over the",
      "CYNIC, n. A blackguard whose faulty vision sees things as they are. CYNIC, n. A",
  };
  for (int i = 0; i < n; i++) {
    memset(&r[i], 0, sizeof r[i]);
    snprintf(r[i].prompt, sizeof r[i].prompt, "%s", texts[i % 6]);
    r[i].max_tokens = 9 + (i * 13) % (MAXOUT - 9);
    r[i].seed = -1;
  }
}

static int same(const req *a, const req *b) {
  return a->n_out == b->n_out && !memcmp(a->out, b->out, sizeof(int32_t) * (size_t)a->n_out);
}

static void greedy_identical(const char *path) {
  static req ref[NREQ], got[NREQ];
  make_reqs(ref, NREQ);
  pl_engine_params ep;
  pl_engine_params_default(&ep);
  ep.model_path = path;
  ep.n_threads = 1;
  ep.device = test_device(); /* PAGELLM_TEST_DEVICE (check.h) */
  ep.kv_cache_bytes = 32 << 20;
  ep.max_model_len = 256;
  run_opts go = {.temp = 0, .check_every_step = 1};
  /* KV bytes per token of this model, from the pool the engine sizes for 32 MiB */
  size_t kv_tok = 8192;
  pl_engine *probe;
  if (pl_engine_create(&ep, &probe) == 0) {
    pl_engine_stats pst;
    pl_engine_get_stats(probe, &pst);
    kv_tok = ep.kv_cache_bytes / (size_t)pst.kv_tokens_capacity;
    pl_engine_destroy(probe);
  }
  for (int i = 0; i < NREQ; i++) /* reference: alone, no speculation */
    run_all(&ep, &ref[i], 1, &go, NULL);
  struct {
    const char *name;
    pl_spec_method m;
    const char *draft;
    int together, kv_blocks, kv_static, k;
    double min_accept, max_accept;
    int no_backoff;
  } cfgs[] = {
      {"ngram alone", PL_SPEC_NGRAM, NULL, 0, 0, 0, 4, 0.05, 1.0},
      {"ngram amid others", PL_SPEC_NGRAM, NULL, 1, 0, 0, 4, 0.05, 1.0},
      {"ngram k=7, preemption", PL_SPEC_NGRAM, NULL, 1, 20, 0, 7, 0.0, 1.0},
      {"ngram static kv", PL_SPEC_NGRAM, NULL, 1, 0, 1, 3, 0.0, 1.0},
      {"self draft amid others", PL_SPEC_DRAFT, path, 1, 0, 0, 4, 0.9, 1.0},
      {"self draft, preemption", PL_SPEC_DRAFT, path, 1, 20, 0, 5, 0.5, 1.0},
      {"bad draft amid others", PL_SPEC_DRAFT, bad_draft, 1, 0, 0, 4, 0.0, 0.5},
      {"bad draft, no backoff", PL_SPEC_DRAFT, bad_draft, 1, 0, 0, 4, 0.0, 0.5, 1},
  };
  for (size_t c = 0; c < sizeof cfgs / sizeof *cfgs; c++) {
    if (cfgs[c].m == PL_SPEC_DRAFT && cfgs[c].draft == bad_draft && strcmp(path, model))
      continue; /* the bad draft shares the bundled model's vocabulary only */
    pl_engine_params e2 = ep;
    e2.spec_method = cfgs[c].m;
    e2.draft_model_path = cfgs[c].draft;
    e2.num_speculative_tokens = cfgs[c].k;
    e2.spec_max_batch = 64;
    e2.spec_no_backoff = cfgs[c].no_backoff;
    e2.kv_alloc = cfgs[c].kv_static ? PL_KV_STATIC : PL_KV_PAGED;
    if (cfgs[c].kv_blocks) {
      e2.kv_cache_bytes = (size_t)cfgs[c].kv_blocks * 16 * kv_tok;
      e2.kv_admit_greedy = 1; /* admit what fits now, so the tiny pool must preempt */
    }
    if (cfgs[c].kv_static)
      e2.kv_cache_bytes = (size_t)NREQ * 256 * kv_tok;
    make_reqs(got, NREQ);
    pl_engine_stats st = {0};
    int64_t drafts = 0, acc = 0, preempt = 0;
    if (cfgs[c].together) {
      run_all(&e2, got, NREQ, &go, &st);
      drafts = st.spec_num_draft_tokens;
      acc = st.spec_num_accepted_tokens;
      preempt = st.num_preemptions;
    } else {
      for (int i = 0; i < NREQ; i++) {
        run_all(&e2, &got[i], 1, &go, &st);
        drafts += st.spec_num_draft_tokens;
        acc += st.spec_num_accepted_tokens;
      }
    }
    int bad = 0;
    for (int i = 0; i < NREQ; i++)
      bad += !same(&ref[i], &got[i]) || got[i].finish != PL_FINISH_LENGTH;
    CHECK(bad == 0, "%s: %d of %d outputs differ from no speculation", cfgs[c].name, bad, NREQ);
    double rate = drafts ? (double)acc / (double)drafts : 0;
    CHECK(drafts > 0, "%s: no proposals were verified", cfgs[c].name);
    CHECK(rate >= cfgs[c].min_accept && rate <= cfgs[c].max_accept,
          "%s: acceptance %.3f outside [%.2f, %.2f]", cfgs[c].name, rate, cfgs[c].min_accept,
          cfgs[c].max_accept);
    if (cfgs[c].kv_blocks)
      CHECK(preempt > 0, "%s: the tiny pool forced no preemption", cfgs[c].name);
    if (cfgs[c].no_backoff) {
      /* every decode step of every request verifies proposals, however few are accepted
       * (the first token comes from the prefill; the last step has no room for proposals);
       * with backoff the bad draft mostly pauses */
      int64_t steps = 0;
      for (int i = 0; i < NREQ; i++)
        steps += got[i].n_out - 2;
      CHECK(st.spec_num_drafts + acc >= steps, "%s: %lld verifications + %lld accepted for "
            "%lld decoded tokens: some steps did not propose", cfgs[c].name,
            (long long)st.spec_num_drafts, (long long)acc, (long long)steps);
    }
    printf("%s: %lld proposals, %.1f%% accepted, %lld preemptions\n", cfgs[c].name,
           (long long)drafts, 100 * rate, (long long)preempt);
  }
}

/* ---- sampling distribution -------------------------------------------------------------- */

/* Upper 0.1 % point of chi-square with df degrees of freedom (Wilson-Hilferty). */
static double chi2_crit(int df) {
  double z = 3.0902, a = 2.0 / (9.0 * df);
  double t = 1 - a + z * sqrt(a);
  return df * t * t * t;
}

/* Two-sample homogeneity test of the token at output position pos. Categories: tokens seen
 * at least 10 times in the pooled sample, the rest pooled into one. */
static void chi2_compare(const char *name, const req *a, const req *b, int n, int pos) {
  enum { NC = 64 };
  int32_t tok[NC];
  int ca[NC + 1] = {0}, cb[NC + 1] = {0}, nt = 0;
  /* pooled counts per token (vocab 8192) */
  static int pooled[8192];
  memset(pooled, 0, sizeof pooled);
  for (int i = 0; i < n; i++) {
    pooled[a[i].out[pos]]++;
    pooled[b[i].out[pos]]++;
  }
  for (int t = 0; t < 8192 && nt < NC; t++)
    if (pooled[t] >= 10)
      tok[nt++] = t;
  for (int i = 0; i < n; i++)
    for (int s = 0; s < 2; s++) {
      int32_t t = (s ? b : a)[i].out[pos];
      int c = nt;
      for (int j = 0; j < nt; j++)
        if (tok[j] == t)
          c = j;
      (s ? cb : ca)[c]++;
    }
  double chi = 0;
  int cats = 0;
  for (int c = 0; c <= nt; c++) {
    double tot = ca[c] + cb[c];
    if (tot == 0)
      continue;
    cats++;
    double ea = tot / 2, eb = tot / 2; /* equal sample sizes */
    chi += (ca[c] - ea) * (ca[c] - ea) / ea + (cb[c] - eb) * (cb[c] - eb) / eb;
  }
  int df = cats - 1;
  CHECK(df >= 2, "%s: only %d categories at position %d", name, cats, pos);
  double crit = df >= 1 ? chi2_crit(df) : 0;
  CHECK(chi <= crit, "%s: position %d: chi-square %.1f > %.1f (df %d): the distributions differ",
        name, pos, chi, crit, df);
  printf("%s: position %d: chi-square %.1f, df %d, 0.1%% critical value %.1f\n", name, pos, chi,
         df, crit);
}

static void sampling_distribution(void) {
  enum { NS = 400 };
  static req base[NS], got[NS];
  pl_engine_params ep;
  pl_engine_params_default(&ep);
  ep.model_path = model;
  ep.n_threads = 1;
  ep.device = test_device(); /* PAGELLM_TEST_DEVICE (check.h) */
  ep.kv_cache_bytes = 64 << 20;
  ep.max_model_len = 256;
  ep.max_num_seqs = 64;
  ep.spec_max_batch = 64;
  const char *prompt = "A fortune: you will be rich. A fortune: you will be rich. A fortune:";
  for (int i = 0; i < NS; i++) {
    memset(&base[i], 0, sizeof base[i]);
    snprintf(base[i].prompt, sizeof base[i].prompt, "%s", prompt);
    base[i].max_tokens = 4;
    base[i].seed = 1000 + i;
    got[i] = base[i];
    got[i].seed = 900000 + i; /* independent samples */
  }
  run_opts so = {.temp = 1.0f, .top_p = 0.95f, .presence = 0.5f};
  run_all(&ep, base, NS, &so, NULL);
  struct {
    const char *name;
    pl_spec_method m;
    const char *draft;
  } cfgs[] = {{"ngram", PL_SPEC_NGRAM, NULL}, {"bad draft", PL_SPEC_DRAFT, bad_draft}};
  for (int c = 0; c < 2; c++) {
    pl_engine_params e2 = ep;
    e2.spec_method = cfgs[c].m;
    e2.draft_model_path = cfgs[c].draft;
    e2.num_speculative_tokens = 3;
    e2.ngram_min = 1;
    pl_engine_stats st;
    run_all(&e2, got, NS, &so, &st);
    CHECK(st.spec_num_draft_tokens > NS / 4, "%s: only %lld proposals", cfgs[c].name,
          (long long)st.spec_num_draft_tokens);
    CHECK(st.spec_num_accepted_tokens > 0 &&
          st.spec_num_accepted_tokens < st.spec_num_draft_tokens,
          "%s: %lld of %lld accepted: both paths must be exercised", cfgs[c].name,
          (long long)st.spec_num_accepted_tokens, (long long)st.spec_num_draft_tokens);
    for (int pos = 1; pos < 4; pos++)
      chi2_compare(cfgs[c].name, base, got, NS, pos);
  }
}

/* ---- aborts ------------------------------------------------------------------------------ */
static void aborts_leak_nothing(void) {
  static req r[NREQ];
  for (int m = 0; m < 2; m++) {
    make_reqs(r, NREQ);
    pl_engine_params ep;
    pl_engine_params_default(&ep);
    ep.model_path = model;
    ep.n_threads = 1;
    ep.device = test_device(); /* PAGELLM_TEST_DEVICE (check.h) */
    ep.kv_cache_bytes = 24 * 16 * 8192;
    ep.max_model_len = 256;
    ep.spec_method = m ? PL_SPEC_DRAFT : PL_SPEC_NGRAM;
    ep.draft_model_path = model;
    ep.spec_max_batch = 64;
    run_opts ao = {.temp = 0.7f, .check_every_step = 1, .abort_every = 3};
    run_all(&ep, r, NREQ, &ao, NULL); /* checks blocks_used == 0 in both pools */
    int aborted = 0;
    for (int i = 0; i < NREQ; i++)
      aborted += r[i].finish == PL_FINISH_ABORT;
    CHECK(aborted > 0, "no request was aborted");
  }
}

static void vocab_mismatch(void) {
  char other[256];
  snprintf(other, sizeof other, "%s.other.gguf", bad_draft);
  char cmd[1024];
  snprintf(cmd, sizeof cmd, "%s/pagellm model-gen -q -o %s --n-vocab 8192 --n-embd 64 "
           "--n-layer 1 --n-ff 128", build_dir, other);
  CHECK(system(cmd) == 0, "%s failed", cmd);
  pl_engine_params ep;
  pl_engine_params_default(&ep);
  ep.model_path = model;
  ep.kv_cache_bytes = 16 << 20;
  ep.spec_method = PL_SPEC_DRAFT;
  ep.draft_model_path = other;
  pl_engine *e = NULL;
  int rc = pl_engine_create(&ep, &e);
  CHECK(rc == PL_EINVAL && !e, "engine with a foreign-vocabulary draft: rc %d", rc);
  CHECK(strstr(pl_last_error(), "must share the target's vocabulary") != NULL, "message: %s",
        pl_last_error());
  ep.draft_model_path = NULL;
  rc = pl_engine_create(&ep, &e);
  CHECK(rc == PL_EINVAL && strstr(pl_last_error(), "--draft-model"), "no draft path: %s",
        pl_last_error());
  unlink(other);
}

/* --load-format dummy: the draft gets random weights too, its shape from --draft-model (a
 * preset or config.json), as the GPU benchmark's llama-3.2-1b draft of a llama-3-8b target
 * does. The same shape and seed as the target is the target itself (every greedy proposal
 * accepted); a smaller shape proposes mostly wrong tokens; either way the greedy output is
 * the target's alone. Another vocabulary size is refused. */
static void write_config(const char *path, int embd, int layers, int vocab) {
  FILE *f = fopen(path, "w");
  CHECK(f != NULL, "cannot write %s", path);
  if (!f)
    return;
  fprintf(f, "{\"model_type\": \"llama\", \"hidden_size\": %d, \"intermediate_size\": %d, "
          "\"num_hidden_layers\": %d, \"num_attention_heads\": 4, \"num_key_value_heads\": 2, "
          "\"vocab_size\": %d, \"max_position_embeddings\": 256, \"rms_norm_eps\": 1e-05, "
          "\"rope_theta\": 10000.0, \"tie_word_embeddings\": false}", embd, 2 * embd, layers,
          vocab);
  fclose(f);
}

static void dummy_draft(void) {
  static req ref[NREQ], got[NREQ];
  char small[300], foreign[300];
  snprintf(small, sizeof small, "%s/test_spec_small.json", build_dir);
  snprintf(foreign, sizeof foreign, "%s/test_spec_foreign.json", build_dir);
  write_config(small, 64, 1, 512);
  write_config(foreign, 128, 2, 600);
  const char *target = data_path("models/dummy-llama/config.json"); /* vocabulary 512 */
  pl_engine_params ep;
  pl_engine_params_default(&ep);
  ep.load_format = PL_LOAD_DUMMY;
  ep.model_config = target;
  ep.dtype = PL_WEIGHT_DTYPE_F32;
  ep.load_seed = 7;
  ep.n_threads = 1;
  ep.device = test_device();
  ep.kv_cache_bytes = 8 << 20;
  ep.max_model_len = 256;
  run_opts go = {.temp = 0, .check_every_step = 1};
  make_reqs(ref, NREQ);
  run_all(&ep, ref, NREQ, &go, NULL);
  struct {
    const char *name, *draft;
    double min_accept, max_accept;
  } cfgs[] = {{"dummy self draft", target, 0.9, 1.0}, {"dummy small draft", small, 0.0, 1.0}};
  for (size_t c = 0; c < sizeof cfgs / sizeof *cfgs; c++) {
    pl_engine_params e2 = ep;
    e2.spec_method = PL_SPEC_DRAFT;
    e2.draft_model_path = cfgs[c].draft;
    e2.spec_max_batch = 64;
    make_reqs(got, NREQ);
    pl_engine_stats st = {0};
    run_all(&e2, got, NREQ, &go, &st);
    int bad = 0;
    for (int i = 0; i < NREQ; i++)
      bad += !same(&ref[i], &got[i]) || got[i].finish != PL_FINISH_LENGTH;
    CHECK(bad == 0, "%s: %d of %d outputs differ from no speculation", cfgs[c].name, bad, NREQ);
    double rate = st.spec_num_draft_tokens
                      ? (double)st.spec_num_accepted_tokens / (double)st.spec_num_draft_tokens
                      : -1;
    CHECK(rate >= cfgs[c].min_accept && rate <= cfgs[c].max_accept,
          "%s: acceptance %.3f outside [%.2f, %.2f] (%lld proposals)", cfgs[c].name, rate,
          cfgs[c].min_accept, cfgs[c].max_accept, (long long)st.spec_num_draft_tokens);
    printf("%s: %lld proposals, %.1f%% accepted\n", cfgs[c].name,
           (long long)st.spec_num_draft_tokens, 100 * rate);
  }
  pl_engine_params e3 = ep;
  e3.spec_method = PL_SPEC_DRAFT;
  e3.draft_model_path = foreign;
  pl_engine *e = NULL;
  int rc = pl_engine_create(&e3, &e);
  CHECK(rc == PL_EINVAL && !e, "a dummy draft of another vocabulary: rc %d", rc);
  CHECK(strstr(pl_last_error(), "must share the target's vocabulary") != NULL, "message: %s",
        pl_last_error());
  unlink(small);
  unlink(foreign);
}

int main(void) {
  size_t live0 = pl_alloc_live_bytes();
  static char mpath[1024];
  snprintf(mpath, sizeof mpath, "%s", src_path("models/pagellm-default.gguf"));
  model = mpath;
  const char *bd = getenv("PL_BUILD_DIR");
  if (!bd)
    bd = ".";
  build_dir = bd;
  snprintf(bad_draft, sizeof bad_draft, "%s/test_spec_bad_draft.gguf", bd);
  char cmd[1024];
  /* a random model with the bundled model's vocabulary: a draft that is nearly always wrong */
  snprintf(cmd, sizeof cmd, "%s/pagellm model-gen -q -o %s --vocab-from %s --n-embd 64 "
           "--n-layer 1 --n-ff 128 --type f32", bd, bad_draft, model);
  CHECK(system(cmd) == 0, "%s failed", cmd);
  kv_spec_rollback();
  greedy_identical(model);
  vocab_mismatch();
  dummy_draft();
  aborts_leak_nothing();
#if defined(__SANITIZE_ADDRESS__)
  /* the ASan run (CI's second pass) skips the 2400-request distribution test: its code paths
   * (rejection, residual draws) also run in aborts_leak_nothing at temperature 0.7 */
  puts("sampling distribution: skipped under ASan (runs in the normal build)");
#else
  sampling_distribution();
#endif
  greedy_identical(data_path("models/tinystories-280K.gguf"));
  unlink(bad_draft);
  CHECK_EQ_INT(pl_alloc_live_bytes(), live0);
  return check_summary("test_spec_decode");
}
