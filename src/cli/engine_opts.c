/* Engine options shared by the model-running commands (see engine_opts.h). Each option takes
 * "--opt VALUE" or "--opt=VALUE"; errors name the option and print one line. */
#include "cli/engine_opts.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "util/alloc.h"
#include "util/file.h"

static char *template_text; /* --chat-template contents (reachable: not a leak) */

/* The value of option argv[*i] ("--x=V" or "--x V"); NULL (printed) when missing. */
static const char *value(int argc, char **argv, int *i, const char *name) {
  const char *a = argv[*i];
  size_t n = strlen(name);
  if (!strncmp(a, name, n) && a[n] == '=')
    return a + n + 1;
  if (*i + 1 >= argc) {
    fprintf(stderr, "pagellm: %s needs a value\n", name);
    return NULL;
  }
  return argv[++*i];
}

static int is_opt(const char *arg, const char *name) {
  size_t n = strlen(name);
  return !strncmp(arg, name, n) && (arg[n] == '\0' || arg[n] == '=');
}

int pl_engine_opts_parse(pl_engine_params *ep, int argc, char **argv, int *i) {
  const char *a = argv[*i], *v;
  if (!strcmp(a, "-m") || is_opt(a, "--model")) {
    if (!(v = value(argc, argv, i, !strcmp(a, "-m") ? "-m" : "--model")))
      return -1;
    ep->model_path = v;
    return 1;
  }
  if (is_opt(a, "--chat-template")) {
    if (!(v = value(argc, argv, i, "--chat-template")))
      return -1;
    char *text;
    if (pl_read_file(v, (size_t)64 << 20, &text, NULL) < 0) {
      fprintf(stderr, "pagellm: cannot read --chat-template file: %s\n", pl_last_error());
      return -1;
    }
    pl_free(template_text);
    template_text = text;
    ep->chat_template = text;
    return 1;
  }
  if (is_opt(a, "--kv-cache-memory")) {
    if (!(v = value(argc, argv, i, "--kv-cache-memory")))
      return -1;
    long long b = pl_cli_parse_size(v);
    if (b <= 0) {
      fprintf(stderr, "pagellm: --kv-cache-memory expects a size such as 2GiB or 512MiB, got "
              "'%s'\n", v);
      return -1;
    }
    ep->kv_cache_bytes = (size_t)b;
    return 1;
  }
  static const struct {
    const char *name;
    long lo, hi;
    size_t off;
  } ints[] = {
      {"--max-model-len", 1, 1 << 24, offsetof(pl_engine_params, max_model_len)},
      {"--block-size", 1, 1024, offsetof(pl_engine_params, block_size)},
      {"--max-num-seqs", 1, 1 << 20, offsetof(pl_engine_params, max_num_seqs)},
      {"--max-num-batched-tokens", 1, 1 << 24,
       offsetof(pl_engine_params, max_num_batched_tokens)},
      {"--threads", 0, 4096, offsetof(pl_engine_params, n_threads)},
      {"--max-waiting", 1, 1 << 24, offsetof(pl_engine_params, max_waiting)},
      {"--num-speculative-tokens", 1, PL_SPEC_MAX_TOKENS,
       offsetof(pl_engine_params, num_speculative_tokens)},
      {"--ngram-min", 1, 64, offsetof(pl_engine_params, ngram_min)},
      {"--ngram-max", 1, 64, offsetof(pl_engine_params, ngram_max)},
      {"--spec-max-batch", 1, 1 << 20, offsetof(pl_engine_params, spec_max_batch)},
  };
  for (size_t k = 0; k < sizeof ints / sizeof *ints; k++) {
    int short_t = !strcmp(ints[k].name, "--threads") && !strcmp(a, "-t");
    if (!short_t && !is_opt(a, ints[k].name))
      continue;
    if (!(v = value(argc, argv, i, short_t ? "-t" : ints[k].name)))
      return -1;
    return pl_cli_int(ints[k].name, v, ints[k].lo, ints[k].hi,
                      (int *)((char *)ep + ints[k].off)) < 0 ? -1 : 1;
  }
  if (is_opt(a, "--kv-alloc")) {
    if (!(v = value(argc, argv, i, "--kv-alloc")))
      return -1;
    if (!strcmp(v, "paged")) {
      ep->kv_alloc = PL_KV_PAGED;
    } else if (!strcmp(v, "static")) {
      ep->kv_alloc = PL_KV_STATIC;
    } else {
      fprintf(stderr, "pagellm: --kv-alloc expects 'paged' or 'static', got '%s'\n", v);
      return -1;
    }
    return 1;
  }
  if (is_opt(a, "--kv-admission")) {
    if (!(v = value(argc, argv, i, "--kv-admission")))
      return -1;
    if (!strcmp(v, "reserve") || !strcmp(v, "greedy")) {
      ep->kv_admit_greedy = !strcmp(v, "greedy");
    } else {
      fprintf(stderr, "pagellm: --kv-admission expects 'reserve' or 'greedy', got '%s'\n", v);
      return -1;
    }
    return 1;
  }
  if (is_opt(a, "--scheduling-policy")) {
    if (!(v = value(argc, argv, i, "--scheduling-policy")))
      return -1;
    if (!strcmp(v, "fair") || !strcmp(v, "fcfs")) {
      ep->fair_share = !strcmp(v, "fair");
    } else {
      fprintf(stderr, "pagellm: --scheduling-policy expects 'fair' or 'fcfs', got '%s'\n", v);
      return -1;
    }
    return 1;
  }
  if (is_opt(a, "--speculative")) {
    if (!(v = value(argc, argv, i, "--speculative")))
      return -1;
    if (!strcmp(v, "ngram")) {
      ep->spec_method = PL_SPEC_NGRAM;
    } else if (!strcmp(v, "draft")) {
      ep->spec_method = PL_SPEC_DRAFT;
    } else if (!strcmp(v, "none")) {
      ep->spec_method = PL_SPEC_NONE;
    } else {
      fprintf(stderr, "pagellm: --speculative expects 'ngram', 'draft' or 'none', got '%s'\n", v);
      return -1;
    }
    return 1;
  }
  if (is_opt(a, "--draft-model")) {
    if (!(v = value(argc, argv, i, "--draft-model")))
      return -1;
    ep->draft_model_path = v;
    return 1;
  }
  if (is_opt(a, "--device")) {
    if (!(v = value(argc, argv, i, "--device")))
      return -1;
    if (strcmp(v, "auto") && strcmp(v, "cpu") && strncmp(v, "cuda", 4)) {
      fprintf(stderr, "pagellm: --device expects auto, cpu, cuda or cuda:N, got '%s'\n", v);
      return -1;
    }
    ep->device = v;
    return 1;
  }
  if (is_opt(a, "--gpu-memory-utilization")) {
    if (!(v = value(argc, argv, i, "--gpu-memory-utilization")))
      return -1;
    char *end;
    double u = strtod(v, &end);
    if (end == v || *end || !(u > 0) || u > 1) {
      fprintf(stderr, "pagellm: --gpu-memory-utilization expects a fraction in (0, 1], got "
              "'%s'\n", v);
      return -1;
    }
    ep->gpu_memory_utilization = (float)u;
    return 1;
  }
  if (is_opt(a, "--kv-cache-dtype")) {
    if (!(v = value(argc, argv, i, "--kv-cache-dtype")))
      return -1;
    static const char *names[] = {"auto", "f32", "f16", "bf16", "q8_0"};
    for (int k = 0; k < 5; k++)
      if (!strcmp(v, names[k])) {
        ep->kv_cache_dtype = (pl_kv_dtype)k;
        return 1;
      }
    fprintf(stderr, "pagellm: --kv-cache-dtype expects auto, f32, f16, bf16 or q8_0, got '%s'\n",
            v);
    return -1;
  }
  if (is_opt(a, "--load-format")) {
    if (!(v = value(argc, argv, i, "--load-format")))
      return -1;
    if (strcmp(v, "auto") && strcmp(v, "dummy")) {
      fprintf(stderr, "pagellm: --load-format expects 'auto' or 'dummy', got '%s'\n", v);
      return -1;
    }
    ep->load_format = !strcmp(v, "dummy") ? PL_LOAD_DUMMY : PL_LOAD_AUTO;
    return 1;
  }
  if (is_opt(a, "--model-config")) {
    if (!(v = value(argc, argv, i, "--model-config")))
      return -1;
    if (!*v) {
      fprintf(stderr, "pagellm: --model-config expects a preset name or a config.json path\n");
      return -1;
    }
    ep->model_config = v;
    return 1;
  }
  if (is_opt(a, "--dtype")) {
    if (!(v = value(argc, argv, i, "--dtype")))
      return -1;
    static const char *names[] = {"auto", "f32", "f16", "bf16"};
    for (int k = 0; k < 4; k++)
      if (!strcmp(v, names[k])) {
        ep->dtype = (pl_weight_dtype)k;
        return 1;
      }
    fprintf(stderr, "pagellm: --dtype expects auto, bf16, f16 or f32, got '%s'\n", v);
    return -1;
  }
  if (!strcmp(a, "--no-prefix-caching") || !strcmp(a, "--no-enable-prefix-caching")) {
    ep->enable_prefix_caching = 0;
    return 1;
  }
  if (!strcmp(a, "--batch-invariant")) {
    ep->batch_invariant = 1;
    return 1;
  }
  if (!strcmp(a, "--enforce-eager")) {
    ep->enforce_eager = 1;
    return 1;
  }
  if (!strcmp(a, "--spec-no-backoff")) {
    ep->spec_no_backoff = 1;
    return 1;
  }
  if (!strcmp(a, "--enable-prefix-caching")) {
    ep->enable_prefix_caching = 1;
    return 1;
  }
  return 0;
}

void pl_engine_opts_cleanup(void) {
  pl_free(template_text);
  template_text = NULL;
}

const char *pl_engine_opts_model(pl_engine_params *ep) {
  static char buf[1100];
  if (ep->model_path)
    return ep->model_path;
  if (ep->load_format == PL_LOAD_DUMMY) {
    if (!ep->model_config)
      return "dummy"; /* the engine says that --model-config is missing */
    snprintf(buf, sizeof buf, "dummy:%.1000s", ep->model_config);
    return ep->model_path = buf;
  }
  return ep->model_path = pl_engine_opts_default_model();
}

static int try_path(char *buf, size_t cap, const char *dir, const char *rel) {
  snprintf(buf, cap, "%s/%s", dir, rel);
  return access(buf, R_OK) == 0;
}

const char *pl_engine_opts_default_model(void) {
  static char buf[4400];
  const char *env = getenv("PAGELLM_MODEL");
  if (env && *env)
    return env;
  if (PL_DEFAULT_MODEL[0] == '/')
    return access(PL_DEFAULT_MODEL, R_OK) == 0 ? PL_DEFAULT_MODEL : NULL;
  char exe[4096];
  ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
  if (n > 0) {
    exe[n] = '\0';
    char *slash = strrchr(exe, '/');
    if (slash) {
      *slash = '\0';
      if (try_path(buf, sizeof buf, exe, PL_DEFAULT_MODEL))
        return buf;
      char parent[4200];
      snprintf(parent, sizeof parent, "%s/..", exe);
      if (try_path(buf, sizeof buf, parent, PL_DEFAULT_MODEL))
        return buf;
    }
  }
#ifdef PL_SOURCE_DIR
  if (try_path(buf, sizeof buf, PL_SOURCE_DIR, PL_DEFAULT_MODEL))
    return buf;
#endif
  if (access(PL_DEFAULT_MODEL, R_OK) == 0)
    return PL_DEFAULT_MODEL;
  return NULL;
}

const char *pl_engine_opts_help(void) {
  return "model and engine options:\n"
         "  -m, --model PATH            .gguf file or safetensors directory (default: the\n"
         "                              bundled " PL_DEFAULT_MODEL ")\n"
         "  --load-format auto|dummy    dummy: random weights generated on the device, no file\n"
         "                              (from --seed, default 0; same as model-gen's)\n"
         "  --model-config C            dummy: the shape, a preset (tinyllama-1.1b,\n"
         "                              llama-2-7b, llama-3-8b, qwen2.5-7b, llama-3.2-1b) or an\n"
         "                              HF config.json\n"
         "  --dtype auto|bf16|f16|f32   dummy: weight type (auto = bf16)\n"
         "  --chat-template FILE        Jinja chat template overriding the model's\n"
         "  --kv-cache-memory SIZE      KV cache pool, e.g. 2GiB, 512MiB (default: auto)\n"
         "  --max-model-len N           tokens per sequence (default: the model's context)\n"
         "  --block-size N              tokens per KV block (default 16)\n"
         "  --max-num-seqs N            sequences per step (default 256)\n"
         "  --max-num-batched-tokens N  tokens per step (default 2048)\n"
         "  --kv-alloc paged|static     static reserves max-model-len per request\n"
         "  --kv-admission reserve|greedy  paged: admit while all can grow to max_tokens\n"
         "                              (default), or whatever fits now and preempt (vLLM)\n"
         "  --scheduling-policy fair|fcfs  among requests of one priority, admit first the\n"
         "                              client with the fewest running (default), or in\n"
         "                              arrival order; clients: the `user` field, else address\n"
         "  --no-prefix-caching         disable automatic prefix caching\n"
         "  -t, --threads N             compute threads (default: all cores)\n"
         "  --device auto|cpu|cuda[:N]  where to compute (default auto: the GPU when usable)\n"
         "  --gpu-memory-utilization F  GPU memory share for weights+activations+KV (0.9)\n"
         "  --kv-cache-dtype T          auto|f32|f16|bf16|q8_0 (auto: bf16 on GPU, f16 on CPU; q8_0: CPU)\n"
         "  --batch-invariant           GPU: outputs independent of batch composition (slower)\n"
         "  --enforce-eager             GPU: launch every op of every step (no CUDA graphs)\n"
         "  --max-waiting N             waiting-queue bound; beyond it requests get 503\n"
         "  --speculative ngram|draft   speculative decoding: prompt lookup or a draft model\n"
         "  --num-speculative-tokens K  proposals per step (default 4, at most 16)\n"
         "  --ngram-min N, --ngram-max M  n-gram lengths for lookup (default 2..4)\n"
         "  --draft-model PATH          draft model with the same vocabulary (dummy: its\n"
         "                              shape, as --model-config; random weights too)\n"
         "  --spec-max-batch N          no proposals above N decoding requests (default 8)\n"
         "  --spec-no-backoff           propose every step even when little is accepted\n"
         "                              (to time speculation with a random draft)\n";
}
