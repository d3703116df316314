/* Parsing of the engine options every engine-running command accepts. */
#include "cli/engine_opts.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"

static char *read_file(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f)
    return NULL;
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  if (n < 0 || n > (16 << 20)) {
    fclose(f);
    return NULL;
  }
  char *b = malloc((size_t)n + 1);
  if (b && fread(b, 1, (size_t)n, f) != (size_t)n) {
    free(b);
    b = NULL;
  }
  if (b)
    b[n] = 0;
  fclose(f);
  return b;
}

int pl_engine_opts_parse(pl_engine_params *p, int argc, char **argv, int *i) {
  const char *a = argv[*i], *v = *i + 1 < argc ? argv[*i + 1] : NULL;
#define TAKE_INT(name, field, lo, hi)                   \
  if (!strcmp(a, name)) {                               \
    if (pl_cli_int(a, v, lo, hi, &p->field) < 0)        \
      return -1;                                        \
    (*i)++;                                             \
    return 1;                                           \
  }
  if (!strcmp(a, "-m") || !strcmp(a, "--model")) {
    if (!v) {
      fprintf(stderr, "pagellm: %s needs a path\n", a);
      return -1;
    }
    p->model_path = v;
    (*i)++;
    return 1;
  }
  TAKE_INT("--threads", n_threads, 1, 1024)
  TAKE_INT("-t", n_threads, 1, 1024)
  TAKE_INT("--max-model-len", max_model_len, 1, 1 << 24)
  TAKE_INT("--block-size", block_size, 1, 1024)
  TAKE_INT("--max-num-seqs", max_num_seqs, 1, 65536)
  TAKE_INT("--max-num-batched-tokens", max_num_batched_tokens, 1, 1 << 20)
  TAKE_INT("--max-waiting", max_waiting, 1, 1 << 20)
#undef TAKE_INT
  if (!strcmp(a, "--kv-cache-memory")) {
    long long b = v ? pl_cli_parse_size(v) : -1;
    if (b <= 0) {
      fprintf(stderr, "pagellm: --kv-cache-memory expects a size like 512MiB or 2GiB, got '%s'\n",
              v ? v : "(nothing)");
      return -1;
    }
    p->kv_cache_bytes = (size_t)b;
    (*i)++;
    return 1;
  }
  if (!strcmp(a, "--kv-alloc")) {
    if (v && !strcmp(v, "paged")) p->kv_alloc = PL_KV_PAGED;
    else if (v && !strcmp(v, "static")) p->kv_alloc = PL_KV_STATIC;
    else {
      fprintf(stderr, "pagellm: --kv-alloc expects 'paged' or 'static'\n");
      return -1;
    }
    (*i)++;
    return 1;
  }
  if (!strcmp(a, "--no-prefix-caching")) {
    p->enable_prefix_caching = 0;
    return 1;
  }
  if (!strcmp(a, "--chat-template")) {
    char *t = v ? read_file(v) : NULL;
    if (!t) {
      fprintf(stderr, "pagellm: --chat-template: cannot read '%s'\n", v ? v : "(nothing)");
      return -1;
    }
    p->chat_template = t;
    (*i)++;
    return 1;
  }
  if (!strcmp(a, "--engine-seed")) {
    int s;
    if (pl_cli_int(a, v, 0, 0x7fffffff, &s) < 0)
      return -1;
    p->seed = (uint64_t)s;
    (*i)++;
    return 1;
  }
  return 0;
}

const char *pl_engine_opts_help(void) {
  return "engine options:\n"
         "  -m, --model PATH              .gguf file or safetensors directory (default: the\n"
         "                                bundled model, or $PAGELLM_MODEL)\n"
         "  -t, --threads N               compute threads (default: all cores)\n"
         "  --kv-cache-memory SIZE        KV pool, e.g. 512MiB, 2GiB (default: 1/4 of free RAM)\n"
         "  --max-model-len N             tokens per sequence (default: the model's context)\n"
         "  --block-size N                tokens per KV block (default 16)\n"
         "  --max-num-seqs N              sequences per step (default 256)\n"
         "  --max-num-batched-tokens N    tokens per step (default 2048)\n"
         "  --max-waiting N               waiting-queue bound (default 1024)\n"
         "  --kv-alloc paged|static       static reserves max-model-len per request\n"
         "  --no-prefix-caching           disable automatic prefix caching\n"
         "  --chat-template FILE          Jinja chat template overriding the model's\n"
         "  --engine-seed N               base seed for requests without a seed\n";
}
