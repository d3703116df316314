/* Cost of the KV map's snapshot in the engine's step loop. Runs 64 requests (prompt + decode)
 * on a model and, after every step, takes the snapshot the server's engine thread takes (at
 * most every 100 ms there): prints the mean step time, the mean capture time and their ratio
 * (the cost if a capture followed every step; the server's is at most capture / 100 ms).
 *   build/bench/bench_kvmap [model=models/pagellm-default.gguf] [kv_mib=256] [block_size=16]
 * The pool size sets how many blocks each capture walks. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/kv_snapshot.h"
#include "engine/engine_access.h"
#include "pagellm.h"

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

int main(int argc, char **argv) {
  const char *model = argc > 1 ? argv[1] : PL_SOURCE_DIR "/models/pagellm-default.gguf";
  double kv_mib = argc > 2 ? atof(argv[2]) : 256;
  int bs = argc > 3 ? atoi(argv[3]) : 16;
  pl_engine_params p;
  pl_engine_params_default(&p);
  p.model_path = model;
  p.kv_cache_bytes = (size_t)(kv_mib * 1024 * 1024);
  p.block_size = bs;
  p.max_num_seqs = 64;
  pl_engine *e;
  if (pl_engine_create(&p, &e) < 0) {
    fprintf(stderr, "engine: %s\n", pl_last_error());
    return 1;
  }
  const int n_req = 64, n_prompt = 96, n_new = 96;
  int32_t prompt[96];
  for (int r = 0; r < n_req; r++) {
    for (int i = 0; i < n_prompt; i++)
      prompt[i] = 1 + (i < 64 ? i * 7 : r * 131 + i) % 500; /* a shared 64-token prefix */
    pl_sampling_params sp;
    pl_sampling_params_default(&sp);
    sp.max_tokens = n_new;
    sp.ignore_eos = 1;
    sp.seed = r;
    uint64_t id;
    if (pl_engine_add_request(e, NULL, prompt, n_prompt, &sp, &id) < 0) {
      fprintf(stderr, "add: %s\n", pl_last_error());
      return 1;
    }
  }
  pl_kv_snapshot snap = {0};
  double t_step = 0, t_cap = 0, t_cap_max = 0;
  int steps = 0, steps64 = 0;
  double t_step64 = 0, t_cap64 = 0;
  pl_output_event ev;
  while (pl_engine_has_unfinished(e)) {
    double t0 = now();
    if (pl_engine_step(e) < 0) {
      fprintf(stderr, "step: %s\n", pl_last_error());
      return 1;
    }
    double t1 = now();
    while (pl_engine_poll(e, &ev)) {
    }
    double t2 = now();
    if (pl_engine_kv_snapshot(e, 512, &snap) < 0)
      return 1;
    double t3 = now();
    t_step += t1 - t0;
    t_cap += t3 - t2;
    if (t3 - t2 > t_cap_max)
      t_cap_max = t3 - t2;
    steps++;
    if (snap.n_running == 64) {
      steps64++;
      t_step64 += t1 - t0;
      t_cap64 += t3 - t2;
    }
  }
  printf("model %s, pool %d blocks of %d tokens, %d requests\n", model, snap.num_blocks, bs, n_req);
  printf("all steps:          %d steps, step %.3f ms, capture %.1f us (max %.1f us), "
         "capture/step %.3f%%\n",
         steps, 1e3 * t_step / steps, 1e6 * t_cap / steps, 1e6 * t_cap_max,
         100.0 * t_cap / t_step);
  if (steps64)
    printf("64 running:         %d steps, step %.3f ms, capture %.1f us, capture/step %.3f%%\n",
           steps64, 1e3 * t_step64 / steps64, 1e6 * t_cap64 / steps64,
           100.0 * t_cap64 / t_step64);
  printf("server (<= 1 capture per 100 ms): at most %.3f%% of engine time\n",
         100.0 * (t_cap / steps) / 0.1);
  pl_kv_snapshot_free(&snap);
  pl_engine_destroy(e);
  return 0;
}
