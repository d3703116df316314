/* pagellm generate: one request through the engine, streaming to stdout.
 *   pagellm generate -m MODEL -p TEXT -n N [--temp T] [--seed S] [--top-k K] [--top-p P]
 *   pagellm generate -m MODEL --prompt-ids 1,2,3 -n N --ids     (token ids in and out)
 * Timing (prefill and decode tok/s) goes to stderr. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/cli.h"
#include "cli/engine_opts.h"
#include "pagellm.h"
#include "util/alloc.h"
#include "util/array.h"

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int parse_ids(const char *s, int32_t **out, int *n) {
  int cap = 0, k = 0;
  int32_t *ids = NULL;
  const char *p = s;
  while (*p) {
    char *end;
    long v = strtol(p, &end, 10);
    if (end == p || v < 0 || v > 0x7fffffff ||
        pl_array_grow(&ids, &cap, (size_t)k + 1, sizeof *ids, 16) < 0) {
      pl_free(ids);
      return -1;
    }
    ids[k++] = (int32_t)v;
    p = end;
    while (*p == ',' || *p == ' ')
      p++;
  }
  *out = ids;
  *n = k;
  return k > 0 ? 0 : -1;
}

int pl_cmd_generate(int argc, char **argv) {
  pl_engine_params ep;
  pl_engine_params_default(&ep);
  pl_sampling_params sp;
  pl_sampling_params_default(&sp);
  sp.temperature = 0.0f; /* greedy unless asked */
  sp.max_tokens = 128;
  const char *prompt = NULL, *ids_arg = NULL;
  int print_ids = 0, ignore_eos = 0;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    int used = pl_engine_opts_parse(&ep, argc, argv, &i);
    if (used < 0)
      return 2;
    if (used)
      continue;
    if (!strcmp(a, "-p") || !strcmp(a, "--prompt")) { if (!v) goto missing; prompt = v; i++; }
    else if (!strcmp(a, "--prompt-ids")) { if (!v) goto missing; ids_arg = v; i++; }
    else if (!strcmp(a, "-n") || !strcmp(a, "--max-tokens")) {
      if (pl_cli_int(a, v, 1, 1 << 24, &sp.max_tokens)) return 2;
      i++;
    } else if (!strcmp(a, "--temp")) {
      if (pl_cli_float(a, v, 0, 100, &sp.temperature)) return 2;
      i++;
    } else if (!strcmp(a, "--top-k")) {
      if (pl_cli_int(a, v, -1, 1 << 24, &sp.top_k)) return 2;
      i++;
    } else if (!strcmp(a, "--top-p")) {
      if (pl_cli_float(a, v, 0, 1, &sp.top_p)) return 2;
      i++;
    } else if (!strcmp(a, "--min-p")) {
      if (pl_cli_float(a, v, 0, 1, &sp.min_p)) return 2;
      i++;
    } else if (!strcmp(a, "--repeat-penalty")) {
      if (pl_cli_float(a, v, 0.01, 100, &sp.repetition_penalty)) return 2;
      i++;
    } else if (!strcmp(a, "--seed")) {
      int s;
      if (pl_cli_int(a, v, 0, 0x7fffffff, &s)) return 2;
      sp.seed = s;
      ep.load_seed = (uint64_t)s; /* --load-format dummy's weights too (vLLM's --seed) */
      i++;
    } else if (!strcmp(a, "--logprobs")) {
      if (pl_cli_int(a, v, 0, 20, &sp.logprobs)) return 2;
      i++;
    } else if (!strcmp(a, "--ids")) print_ids = 1;
    else if (!strcmp(a, "--ignore-eos")) ignore_eos = 1;
    else if (!strcmp(a, "--help")) {
      printf("usage: pagellm generate [-m MODEL] (-p TEXT | --prompt-ids 1,2,3) [-n N] [--temp T]\n"
             "       [--seed S] [--top-k K] [--top-p P] [--min-p P] [--repeat-penalty R]\n"
             "       [--ids] [--ignore-eos] [--logprobs K] [engine options]\n\n%s",
             pl_engine_opts_help());
      return 0;
    } else {
      fprintf(stderr, "pagellm generate: unknown option '%s' (see --help)\n", a);
      return 2;
    }
    continue;
  missing:
    fprintf(stderr, "pagellm generate: %s needs a value\n", a);
    return 2;
  }
  sp.ignore_eos = ignore_eos;
  if (!prompt && !ids_arg) {
    fprintf(stderr, "pagellm generate: give a prompt with -p TEXT or --prompt-ids 1,2,3\n");
    return 2;
  }
  int32_t *ids = NULL;
  int n_ids = 0;
  if (ids_arg && parse_ids(ids_arg, &ids, &n_ids) < 0) {
    fprintf(stderr, "pagellm generate: --prompt-ids expects comma-separated token ids\n");
    return 2;
  }
  if (!pl_engine_opts_model(&ep)) {
    fprintf(stderr, "pagellm generate: no model: give -m MODEL\n");
    pl_free(ids);
    return 2;
  }
  if (!ep.max_num_seqs)
    ep.max_num_seqs = 1;
  pl_engine *e;
  if (pl_engine_create(&ep, &e) < 0) {
    fprintf(stderr, "pagellm generate: %s\n", pl_last_error());
    pl_free(ids);
    return 1;
  }
  uint64_t id;
  double t0 = now_s(), t_first = 0;
  if (pl_engine_add_request(e, ids ? NULL : prompt, ids, n_ids, &sp, &id) < 0) {
    fprintf(stderr, "pagellm generate: %s\n", pl_last_error());
    pl_engine_destroy(e);
    pl_free(ids);
    return 1;
  }
  int n_out = 0, prompt_tokens = 0, rc = 0;
  pl_finish_reason fin = PL_FINISH_NONE;
  while (fin == PL_FINISH_NONE) {
    int r = pl_engine_step(e);
    if (r < 0) {
      fprintf(stderr, "pagellm generate: %s\n", pl_last_error());
      rc = 1;
      break;
    }
    pl_output_event ev;
    while (pl_engine_poll(e, &ev)) {
      if (!t_first)
        t_first = now_s();
      prompt_tokens = ev.prompt_tokens;
      for (int k = 0; k < ev.n_tokens; k++, n_out++) {
        if (print_ids)
          printf(n_out ? " %d" : "%d", ev.tokens[k]);
        if (ev.logprobs) { /* one line per token on stderr: "top: id:logprob ..." */
          fprintf(stderr, "top:");
          for (int j = 0; j < ev.n_top; j++)
            fprintf(stderr, " %d:%.7g", ev.top[(size_t)k * ev.n_top + j].token,
                    ev.top[(size_t)k * ev.n_top + j].logprob);
          fprintf(stderr, "\n");
        }
      }
      if (!print_ids)
        fwrite(ev.text, 1, ev.text_len, stdout);
      fflush(stdout);
      if (ev.finish) {
        fin = ev.finish;
        if (fin == PL_FINISH_ERROR) {
          fprintf(stderr, "pagellm generate: %s\n", ev.error ? ev.error : "failed");
          rc = 1;
        }
      }
    }
  }
  double t1 = now_s();
  printf("\n");
  double pre = t_first - t0, dec = t1 - t_first;
  fprintf(stderr, "pagellm: prompt %d tokens in %.3f s (%.1f tok/s), generated %d tokens in %.3f s "
                  "(%.1f tok/s), finish %s\n",
          prompt_tokens, pre, prompt_tokens / (pre > 0 ? pre : 1e-9), n_out, dec,
          n_out > 1 ? (n_out - 1) / (dec > 0 ? dec : 1e-9) : 0.0,
          fin == PL_FINISH_STOP ? "stop" : fin == PL_FINISH_LENGTH ? "length" : "error");
  pl_engine_destroy(e);
  pl_free(ids);
  return rc;
}
