/* pagellm bench decode | throughput | serve
 *
 * decode      single-stream prefill and decode speed, and the effective weight bandwidth of
 *             decode (weight bytes read per token x tok/s) next to the machine's measured
 *             read bandwidth: decode at batch 1 is bound by that roofline.
 * throughput  offline, in-process (like `vllm bench throughput`): N requests of a named
 *             workload all queued at once, ignore_eos; requests/s, output and total tok/s,
 *             peak concurrency, peak KV blocks, preemptions, the KV memory utilisation
 *             (live tokens / allocated tokens, averaged over steps) and the time to first
 *             token from the common start (p50/p90/p99: how long requests wait to be admitted).
 * serve       HTTP load generator for any OpenAI-compatible server (cmd_bench_serve.c). */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/engine_opts.h"
#include "cli/workload.h"
#include "engine/engine_access.h"
#include "model/model.h"
#include "pagellm.h"

int pl_cmd_bench_serve(int argc, char **argv);
#pragma weak pl_cmd_bench_serve

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

typedef struct {
  pl_engine_params ep;
  int json, n, input_len, output_len, prefix_len, prompt_len, gen_len, reps;
  const char *workload;
  uint64_t seed;
  float temperature, top_p; /* throughput's sampling (default greedy, top_p 1) */
  int top_k;
} bench_opts;

static int parse(bench_opts *o, int argc, char **argv, const char *usage) {
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    int used = pl_engine_opts_parse(&o->ep, argc, argv, &i);
    if (used < 0) return -1;
    if (used) continue;
    if (!strcmp(a, "--json")) o->json = 1;
    else if (!strcmp(a, "--num-prompts")) { if (pl_cli_int(a, v, 1, 1 << 20, &o->n)) return -1; i++; }
    else if (!strcmp(a, "--input-len")) { if (pl_cli_int(a, v, 1, 1 << 24, &o->input_len)) return -1; i++; }
    else if (!strcmp(a, "--output-len")) { if (pl_cli_int(a, v, 1, 1 << 24, &o->output_len)) return -1; i++; }
    else if (!strcmp(a, "--prefix-len")) { if (pl_cli_int(a, v, 1, 1 << 24, &o->prefix_len)) return -1; i++; }
    else if (!strcmp(a, "--prompt-len")) { if (pl_cli_int(a, v, 1, 1 << 24, &o->prompt_len)) return -1; i++; }
    else if (!strcmp(a, "--gen-len")) { if (pl_cli_int(a, v, 2, 1 << 24, &o->gen_len)) return -1; i++; }
    else if (!strcmp(a, "--repeats")) { if (pl_cli_int(a, v, 1, 100, &o->reps)) return -1; i++; }
    else if (!strcmp(a, "--temperature")) { if (pl_cli_float(a, v, 0, 100, &o->temperature)) return -1; i++; }
    else if (!strcmp(a, "--top-p")) { if (pl_cli_float(a, v, 1e-6, 1, &o->top_p)) return -1; i++; }
    else if (!strcmp(a, "--top-k")) { if (pl_cli_int(a, v, 0, 1 << 24, &o->top_k)) return -1; i++; }
    else if (!strcmp(a, "--workload")) { if (!v) return -1; o->workload = v; i++; }
    else if (!strcmp(a, "--seed")) { int s; if (pl_cli_int(a, v, 0, 0x7fffffff, &s)) return -1; o->seed = (uint64_t)s; o->ep.load_seed = (uint64_t)s; i++; }
    else if (!strcmp(a, "--help")) { printf("%s\n%s", usage, pl_engine_opts_help()); return 1; }
    else { fprintf(stderr, "pagellm bench: unknown option '%s'\n", a); return -1; }
  }
  if (!pl_engine_opts_model(&o->ep)) {
    fprintf(stderr, "pagellm bench: -m MODEL is required\n");
    return -1;
  }
  return 0;
}

/* Run every queued request to completion; fills timing and KV statistics. */
typedef struct {
  double seconds, ttft_first;
  double all_started;       /* when every request had produced its first token */
  int n_started, n_requests;
  int64_t out_tokens, in_tokens;
  double util_sum;
  int util_steps;
  pl_engine_stats end;
  uint64_t out_digest;  /* order-free digest of every (request, position, token) generated */
  /* steps that computed no prompt token (decodes, speculative verifications): their time and
   * output tokens, the decode speed whatever the arrival pattern */
  double dec_steps_s;
  int64_t dec_steps_tokens;
  /* the tail: steps with nothing waiting and fewer than TAIL_RUNNING requests running, where
   * a step costs nearly what a full one does (the weights are read all the same) */
  double tail_s;
  int64_t tail_tokens;
  int64_t steps;
  /* throughput: ids[n_requests] in the order added (increasing), ttft[] of each */
  const uint64_t *ids;
  double *ttft;
} run_stats;

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* the time to first token of request `id`, from the run's start */
static void note_ttft(run_stats *rs, uint64_t id, double t) {
  int lo = 0, hi = rs->n_requests - 1;
  while (rs->ids && lo <= hi) {
    int mid = (lo + hi) / 2;
    if (rs->ids[mid] == id) {
      rs->ttft[mid] = t;
      return;
    }
    if (rs->ids[mid] < id)
      lo = mid + 1;
    else
      hi = mid - 1;
  }
}

static uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

#define TAIL_RUNNING 8

static void print_spec(const pl_engine_stats *st) {
  printf("speculative      %lld of %lld proposals accepted (%lld verifications)\n",
         (long long)st->spec_num_accepted_tokens, (long long)st->spec_num_draft_tokens,
         (long long)st->spec_num_drafts);
}

static int drain(pl_engine *e, run_stats *rs, double t0) {
  pl_engine_stats st;
  pl_engine_get_stats(e, &st);
  while (pl_engine_has_unfinished(e)) {
    int64_t prompt0 = st.prompt_tokens_computed;
    int tail = st.num_waiting == 0 && st.num_running > 0 && st.num_running < TAIL_RUNNING;
    double ts = now_s();
    int n = pl_engine_step(e);
    if (n < 0) {
      fprintf(stderr, "pagellm bench: %s\n", pl_last_error());
      return -1;
    }
    ts = now_s() - ts;
    rs->steps++;
    pl_engine_get_stats(e, &st);
    int decode_step = st.prompt_tokens_computed == prompt0;
    if (decode_step)
      rs->dec_steps_s += ts;
    if (tail)
      rs->tail_s += ts;
    if (st.kv_allocated_tokens > 0) {
      rs->util_sum += (double)st.kv_live_tokens / (double)st.kv_allocated_tokens;
      rs->util_steps++;
    }
    pl_output_event ev;
    while (pl_engine_poll(e, &ev)) {
      if (!rs->ttft_first && ev.n_tokens)
        rs->ttft_first = now_s() - t0;
      if (ev.n_tokens && ev.completion_tokens == ev.n_tokens) {
        note_ttft(rs, ev.request_id, now_s() - t0);
        if (++rs->n_started == rs->n_requests)
          rs->all_started = now_s() - t0;
      }
      rs->out_tokens += ev.n_tokens;
      if (decode_step)
        rs->dec_steps_tokens += ev.n_tokens;
      if (tail)
        rs->tail_tokens += ev.n_tokens;
      for (int k = 0; k < ev.n_tokens; k++) /* same text with and without speculation? */
        rs->out_digest += mix64(mix64(ev.request_id * 0x9E3779B97F4A7C15ull +
                                      (uint64_t)(ev.completion_tokens - ev.n_tokens + k)) ^
                                (uint64_t)(uint32_t)ev.tokens[k]);
      if (ev.finish == PL_FINISH_ERROR) {
        fprintf(stderr, "pagellm bench: request failed: %s\n", ev.error ? ev.error : "?");
        return -1;
      }
    }
  }
  rs->seconds = now_s() - t0;
  pl_engine_get_stats(e, &rs->end);
  return 0;
}

static int bench_decode(int argc, char **argv) {
  bench_opts o = {.prompt_len = 128, .gen_len = 128, .reps = 3, .seed = 1};
  pl_engine_params_default(&o.ep);
  int rc = parse(&o, argc, argv,
                 "usage: pagellm bench decode -m MODEL [--prompt-len 128] [--gen-len 128] "
                 "[--repeats 3] [--json]");
  if (rc)
    return rc < 0 ? 2 : 0;
  if (!o.ep.max_num_seqs) o.ep.max_num_seqs = 1;
  if (!o.ep.kv_cache_bytes) o.ep.kv_cache_bytes = 0;
  pl_engine *e;
  if (pl_engine_create(&o.ep, &e) < 0) {
    fprintf(stderr, "pagellm bench: %s\n", pl_last_error());
    return 1;
  }
  const pl_model *m = pl_engine_model(e);
  int vocab = m->hp.n_vocab;
  double best_pre = 0, best_dec = 0;
  for (int rep = 0; rep < o.reps; rep++) {
    pl_wl_spec ws = {.name = "fixed", .n = 1, .input_len = o.prompt_len, .output_len = o.gen_len,
                     .seed = o.seed + (uint64_t)rep, .n_vocab = vocab, .bos = 1,
                     .max_model_len = pl_engine_max_model_len(e)};
    pl_wl_req *w = pl_workload_make(&ws);
    pl_sampling_params sp;
    pl_sampling_params_default(&sp);
    sp.temperature = 0;
    sp.ignore_eos = 1;
    sp.max_tokens = w[0].max_tokens;
    double t0 = now_s();
    uint64_t id;
    if (pl_engine_add_request(e, NULL, w[0].prompt, w[0].n_prompt, &sp, &id) < 0) {
      fprintf(stderr, "pagellm bench: %s\n", pl_last_error());
      pl_workload_free(w, 1);
      pl_engine_destroy(e);
      return 1;
    }
    run_stats rs = {0};
    if (drain(e, &rs, t0) < 0)
      return 1;
    double pre = w[0].n_prompt / rs.ttft_first;
    double dec = (rs.out_tokens - 1) / (rs.seconds - rs.ttft_first);
    best_pre = pre > best_pre ? pre : best_pre;
    best_dec = dec > best_dec ? dec : best_dec;
    pl_workload_free(w, 1);
  }
  /* bytes read per decoded token: every matrix once (the embedding table only if tied,
   * since it is then also the output projection) */
  double bytes = (double)m->weight_bytes - (m->hp.tied_embeddings ? 0 : (double)m->tok_embd.nbytes);
  double bw = pl_engine_mem_bandwidth(e);
  double eff = bytes * best_dec / 1e9;
  if (o.json) {
    json_t *j = json_pack("{s:s,s:s,s:i,s:i,s:f,s:f,s:f,s:f,s:f,s:f}", "model", o.ep.model_path,
                          "device", pl_engine_device(e), "prompt_len", o.prompt_len, "gen_len", o.gen_len,
                          "prefill_tok_s", best_pre, "decode_tok_s", best_dec,
                          "weight_bytes_per_token", bytes, "effective_gb_s", eff,
                          "read_bandwidth_gb_s", bw, "fraction_of_bandwidth", bw > 0 ? eff / bw : 0);
    char *s = json_dumps(j, JSON_INDENT(1));
    printf("%s\n", s);
    free(s);
    json_decref(j);
  } else {
    printf("model            %s (%.1f MiB weights read per token)\n", o.ep.model_path, bytes / 1048576.0);
    printf("device           %s\n", pl_engine_device(e));
    printf("prefill          %.1f tok/s (%d-token prompt)\n", best_pre, o.prompt_len);
    printf("decode           %.2f tok/s (%d tokens)\n", best_dec, o.gen_len);
    printf("effective        %.2f GB/s of weights\n", eff);
    printf("bandwidth        %.2f GB/s measured on the device -> decode at %.0f%% of roofline\n",
           bw, bw > 0 ? 100 * eff / bw : 0);
    if (o.ep.spec_method) { /* every repeat together */
      pl_engine_stats st;
      pl_engine_get_stats(e, &st);
      print_spec(&st);
    }
  }
  pl_engine_destroy(e);
  return 0;
}

static int bench_throughput(int argc, char **argv) {
  bench_opts o = {.n = 100, .workload = "sharegpt-like", .input_len = 128, .output_len = 128,
                  .top_p = 1.0f,
                  .seed = 1};
  pl_engine_params_default(&o.ep);
  int rc = parse(&o, argc, argv,
                 "usage: pagellm bench throughput -m MODEL --num-prompts N --workload NAME\n"
                 "       [--input-len I --output-len O] [--prefix-len P] [--seed S] [--json]\n"
                 "       [--temperature T --top-p P --top-k K]  (default greedy)\n"
                 "workloads: sharegpt-like, alpaca-like, shared-prefix, long-context, fixed, edit");
  if (rc)
    return rc < 0 ? 2 : 0;
  pl_engine *e;
  if (pl_engine_create(&o.ep, &e) < 0) {
    fprintf(stderr, "pagellm bench: %s\n", pl_last_error());
    return 1;
  }
  pl_wl_spec ws = {.name = o.workload, .n = o.n, .input_len = o.input_len,
                   .output_len = o.output_len, .prefix_len = o.prefix_len, .seed = o.seed,
                   .n_vocab = pl_engine_model(e)->hp.n_vocab, .bos = 1,
                   .max_model_len = pl_engine_max_model_len(e)};
  pl_wl_req *w = pl_workload_make(&ws);
  if (!w) {
    pl_engine_destroy(e);
    return 2;
  }
  run_stats rs = {0};
  rs.n_requests = o.n;
  uint64_t *ids = calloc((size_t)o.n, sizeof *ids);
  double *ttft = calloc((size_t)o.n, sizeof *ttft);
  if (!ids || !ttft) {
    fprintf(stderr, "pagellm bench: out of memory\n");
    free(ids);
    free(ttft);
    pl_workload_free(w, o.n);
    pl_engine_destroy(e);
    return 1;
  }
  rs.ids = ids;
  rs.ttft = ttft;
  double t0 = now_s();
  int longest = 0; /* output tokens of the longest request: that many steps at least */
  for (int i = 0; i < o.n; i++) {
    pl_sampling_params sp;
    pl_sampling_params_default(&sp);
    sp.temperature = o.temperature;
    sp.top_p = o.top_p;
    sp.top_k = o.top_k;
    sp.seed = (int64_t)i;
    sp.ignore_eos = 1;
    sp.max_tokens = w[i].max_tokens;
    if (pl_engine_add_request(e, NULL, w[i].prompt, w[i].n_prompt, &sp, &ids[i]) < 0) {
      fprintf(stderr, "pagellm bench: request %d: %s\n", i, pl_last_error());
      free(ids);
      free(ttft);
      pl_workload_free(w, o.n);
      pl_engine_destroy(e);
      return 1;
    }
    rs.in_tokens += w[i].n_prompt;
    longest = w[i].max_tokens > longest ? w[i].max_tokens : longest;
  }
  rc = drain(e, &rs, t0);
  pl_engine_stats *st = &rs.end;
  if (rc == 0) {
    double util = rs.util_steps ? rs.util_sum / rs.util_steps : 0;
    /* decode-phase throughput: tokens after every request's first, over the time after it
     * (meaningful when all requests start together, i.e. they all fit at once) */
    double dec_s = rs.seconds - rs.all_started;
    double dec_tok_s = rs.all_started > 0 && dec_s > 0 ? (rs.out_tokens - o.n) / dec_s : 0;
    json_t *j = json_pack(
        "{s:s,s:s,s:s,s:i,s:f,s:f,s:f,s:f,s:I,s:I,s:i,s:I,s:I,s:I,s:f,s:I,s:I,s:i,s:i}",
        "model", o.ep.model_path, "workload", o.workload, "kv_alloc",
        o.ep.kv_alloc == PL_KV_STATIC ? "static" : "paged", "num_prompts", o.n,
        "elapsed_s", rs.seconds, "requests_per_s", o.n / rs.seconds, "output_tok_s",
        rs.out_tokens / rs.seconds, "total_tok_s", (rs.out_tokens + rs.in_tokens) / rs.seconds,
        "input_tokens", (json_int_t)rs.in_tokens, "output_tokens", (json_int_t)rs.out_tokens,
        "peak_running", st->peak_running, "peak_blocks_used", (json_int_t)st->peak_blocks_used,
        "blocks_total", (json_int_t)st->blocks_total, "preemptions",
        (json_int_t)st->num_preemptions, "kv_utilization", util, "prefix_hit_tokens",
        (json_int_t)st->prefix_hits_tokens, "prefix_query_tokens",
        (json_int_t)st->prefix_queries_tokens, "block_size", st->block_size, "max_model_len",
        st->max_model_len);
    json_object_set_new(j, "decode_phase_tok_s", json_real(dec_tok_s));
    double dsteps_tok_s = rs.dec_steps_s > 0 ? rs.dec_steps_tokens / rs.dec_steps_s : 0;
    json_object_set_new(j, "decode_steps_tok_s", json_real(dsteps_tok_s));
    json_object_set_new(j, "decode_steps_s", json_real(rs.dec_steps_s));
    json_object_set_new(j, "tail_s", json_real(rs.tail_s));
    json_object_set_new(j, "longest_output_tokens", json_integer(longest));
    json_object_set_new(j, "steps", json_integer(rs.steps));
    json_object_set_new(j, "tail_tokens", json_integer(rs.tail_tokens));
    json_object_set_new(j, "threads", json_integer(o.ep.n_threads));
    json_object_set_new(j, "kv_dtype", json_string(pl_engine_kv_dtype(e)));
    json_object_set_new(j, "kv_bytes_per_token", json_integer(st->kv_bytes_per_token));
    qsort(ttft, (size_t)o.n, sizeof *ttft, cmp_double);
    double p50 = ttft[o.n / 2], p90 = ttft[(int)(o.n * 0.9)], p99 = ttft[(int)(o.n * 0.99)];
    json_object_set_new(j, "ttft_p50_s", json_real(p50));
    json_object_set_new(j, "ttft_p90_s", json_real(p90));
    json_object_set_new(j, "ttft_p99_s", json_real(p99));
    char dig[24];
    snprintf(dig, sizeof dig, "%016llx", (unsigned long long)rs.out_digest);
    json_object_set_new(j, "output_digest", json_string(dig));
    /* speculative decoding, vLLM's metric names */
    const char *sm[] = {"none", "ngram", "draft"};
    json_object_set_new(j, "speculative", json_string(sm[o.ep.spec_method]));
    json_object_set_new(j, "spec_decode_num_drafts", json_integer(st->spec_num_drafts));
    json_object_set_new(j, "spec_decode_num_draft_tokens",
                        json_integer(st->spec_num_draft_tokens));
    json_object_set_new(j, "spec_decode_num_accepted_tokens",
                        json_integer(st->spec_num_accepted_tokens));
    json_t *pp = json_array();
    for (int i = 0; i < st->spec_num_positions; i++)
      json_array_append_new(pp, json_integer(st->spec_accepted_per_pos[i]));
    json_object_set_new(j, "spec_decode_num_accepted_tokens_per_pos", pp);
    json_object_set_new(j, "spec_decode_acceptance_rate",
                        json_real(st->spec_num_draft_tokens
                                      ? (double)st->spec_num_accepted_tokens /
                                            (double)st->spec_num_draft_tokens
                                      : 0.0));
    if (o.json) {
      char *s = json_dumps(j, JSON_INDENT(1) | JSON_PRESERVE_ORDER);
      printf("%s\n", s);
      free(s);
    } else {
      printf("workload         %s, %d requests (%lld in / %lld out tokens, the longest %d)\n",
             o.workload, o.n, (long long)rs.in_tokens, (long long)rs.out_tokens, longest);
      printf("kv               %s, %lld blocks x %d tokens, %s (%lld bytes/token)\n",
             o.ep.kv_alloc == PL_KV_STATIC ? "static" : "paged", (long long)st->blocks_total,
             st->block_size, pl_engine_kv_dtype(e), (long long)st->kv_bytes_per_token);
      printf("elapsed          %.2f s, %lld steps (%.2f ms each)\n", rs.seconds,
             (long long)rs.steps, rs.steps ? 1e3 * rs.seconds / rs.steps : 0);
      printf("throughput       %.2f req/s, %.1f output tok/s, %.1f total tok/s\n",
             o.n / rs.seconds, rs.out_tokens / rs.seconds,
             (rs.out_tokens + rs.in_tokens) / rs.seconds);
      printf("decode steps     %.1f output tok/s in the steps without prompt tokens (%.0f%% of "
             "the time)\n", dsteps_tok_s, rs.seconds > 0 ? 100 * rs.dec_steps_s / rs.seconds : 0);
      printf("tail             %.2f s (%.0f%% of the time) with fewer than %d running and none "
             "waiting: %lld output tokens, %.1f tok/s\n", rs.tail_s,
             rs.seconds > 0 ? 100 * rs.tail_s / rs.seconds : 0, TAIL_RUNNING,
             (long long)rs.tail_tokens, rs.tail_s > 0 ? rs.tail_tokens / rs.tail_s : 0);
      printf("concurrency      peak %d running, peak %lld blocks used\n", st->peak_running,
             (long long)st->peak_blocks_used);
      /* a shared prefix's tokens count once per request that holds them: above 100% with
       * prefix sharing, by how much sharing saved */
      printf("kv utilisation   %.1f%%: tokens the running requests hold per allocated KV token "
             "(mean over steps; shared prefixes count once per request)\n", 100 * util);
      printf("preemptions      %lld\n", (long long)st->num_preemptions);
      printf("ttft             p50 %.2f s, p90 %.2f s, p99 %.2f s (from the common start)\n", p50,
             p90, p99);
      printf("prefix cache     %lld of %lld prompt tokens hit\n",
             (long long)st->prefix_hits_tokens, (long long)st->prefix_queries_tokens);
      if (o.ep.spec_method)
        print_spec(st);
    }
    json_decref(j);
  }
  free(ids);
  free(ttft);
  pl_workload_free(w, o.n);
  pl_engine_destroy(e);
  return rc ? 1 : 0;
}

int pl_cmd_bench(int argc, char **argv) {
  if (argc >= 2 && !strcmp(argv[1], "decode"))
    return bench_decode(argc - 1, argv + 1);
  if (argc >= 2 && !strcmp(argv[1], "throughput"))
    return bench_throughput(argc - 1, argv + 1);
  if (argc >= 2 && !strcmp(argv[1], "grammar"))
    return pl_cmd_bench_grammar(argc - 1, argv + 1);
  if (argc >= 2 && !strcmp(argv[1], "serve") && pl_cmd_bench_serve)
    return pl_cmd_bench_serve(argc - 1, argv + 1);
  fprintf(stderr, "usage: pagellm bench decode|throughput|serve|grammar [options] (--help for each)\n");
  return 2;
}
