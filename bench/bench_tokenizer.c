/* Tokenizer throughput: MB/s of pl_tokenizer_encode on one long document, one core.
 *
 * The document is the repository's README.md + docs/ARCHITECTURE.md + every tokenizer-vectors .inp file
 * (English prose, code, whitespace runs, CJK, emoji), repeated to about 4 MB. Each vocabulary
 * encodes it 5 times; the best run is reported, by thread CPU time (robust on a shared box)
 * and by wall time, with the bytes/token ratio.
 *
 * Usage: bench_tokenizer [DATA_DIR] [MB]   (DATA_DIR: the test data scripts/test-data.py
 * builds, default $PL_TEST_DATA or the build's testdata/)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tokenizer/tokenizer.h"
#include "util/alloc.h"
#include "util/error.h"

#ifndef PL_TEST_DATA_DIR
#define PL_TEST_DATA_DIR "build/testdata"
#endif
#ifndef PL_SOURCE_DIR
#define PL_SOURCE_DIR "."
#endif

static int append_file(char **buf, size_t *n, size_t *cap, const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f)
    return -1;
  char tmp[65536];
  size_t r;
  while ((r = fread(tmp, 1, sizeof tmp, f)) > 0) {
    if (*n + r > *cap) {
      *cap = (*n + r) * 2;
      *buf = realloc(*buf, *cap);
    }
    memcpy(*buf + *n, tmp, r);
    *n += r;
  }
  fclose(f);
  return 0;
}

static double clock_s(clockid_t id) {
  struct timespec ts;
  clock_gettime(id, &ts);
  return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

int main(int argc, char **argv) {
  const char *data = argc > 1 ? argv[1] : (getenv("PL_TEST_DATA") ? getenv("PL_TEST_DATA") : PL_TEST_DATA_DIR);
  double mb = argc > 2 ? atof(argv[2]) : 4.0;
  static const char *const inp[] = {"llama-spm", "phi-3", "llama-bpe", "qwen2", "qwen35", "gpt-2",
                                    "deepseek-llm", "deepseek-coder", "falcon", "mpt", "starcoder", "refact"};
  char path[1024];
  char *seed = NULL;
  size_t sn = 0, scap = 0;
  snprintf(path, sizeof path, "%s/README.md", PL_SOURCE_DIR);
  append_file(&seed, &sn, &scap, path);
  snprintf(path, sizeof path, "%s/docs/ARCHITECTURE.md", PL_SOURCE_DIR);
  append_file(&seed, &sn, &scap, path);
  for (size_t i = 0; i < sizeof inp / sizeof inp[0]; i++) {
    snprintf(path, sizeof path, "%s/tokenizer-vectors/ggml-vocab-%s.gguf.inp", data, inp[i]);
    append_file(&seed, &sn, &scap, path);
  }
  if (sn == 0) {
    fprintf(stderr, "no input text under %s\n", data);
    return 1;
  }
  size_t target = (size_t)(mb * 1024 * 1024), n = 0;
  char *doc = malloc(target + sn);
  while (n < target) {
    memcpy(doc + n, seed, sn);
    n += sn;
  }
  free(seed);

  static const char *const vocabs[][2] = {
      {"SPM  llama-spm", "tokenizer-vectors/ggml-vocab-llama-spm.gguf"},
      {"BPE  llama-bpe (Llama 3)", "tokenizer-vectors/ggml-vocab-llama-bpe.gguf"},
      {"BPE  qwen2", "tokenizer-vectors/ggml-vocab-qwen2.gguf"},
      {"BPE  gpt-2", "tokenizer-vectors/ggml-vocab-gpt-2.gguf"},
      {"BPE  deepseek-llm (6 regexes)", "tokenizer-vectors/ggml-vocab-deepseek-llm.gguf"},
      {"BPE  qwen3 tokenizer.json (NFC)", "tokenizers/qwen3"},
  };
  printf("document: %.2f MB\n", n / 1048576.0);
  for (size_t v = 0; v < sizeof vocabs / sizeof vocabs[0]; v++) {
    snprintf(path, sizeof path, "%s/%s", data, vocabs[v][1]);
    pl_tokenizer *t = NULL;
    if (pl_tokenizer_load(path, &t) != 0) {
      fprintf(stderr, "%s: %s\n", path, pl_last_error());
      continue;
    }
    double best = 1e30, best_wall = 1e30;
    size_t ntok = 0;
    for (int rep = 0; rep < 5; rep++) {
      pl_token_buf b = {0};
      double c0 = clock_s(CLOCK_THREAD_CPUTIME_ID), w0 = clock_s(CLOCK_MONOTONIC);
      int rc = pl_tokenizer_encode(t, doc, n, 0, 0, &b);
      double dc = clock_s(CLOCK_THREAD_CPUTIME_ID) - c0, dw = clock_s(CLOCK_MONOTONIC) - w0;
      if (rc != 0) {
        fprintf(stderr, "encode: %s\n", pl_last_error());
        break;
      }
      ntok = b.n;
      if (dc < best)
        best = dc;
      if (dw < best_wall)
        best_wall = dw;
      pl_token_buf_free(&b);
    }
    printf("%-34s %7.1f MB/s cpu %7.1f MB/s wall  (%zu tokens, %.2f bytes/token)\n", vocabs[v][0],
           n / 1048576.0 / best, n / 1048576.0 / best_wall, ntok, (double)n / (double)(ntok ? ntok : 1));
    pl_tokenizer_free(t);
  }
  free(doc);
  return 0;
}
