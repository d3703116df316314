/* Embedding pagellm: one engine, three concurrent requests, streamed output.
 *   build/example_embed MODEL.gguf ["prompt"]
 * Only the public header is used. */
#include <pagellm.h>
#include <stdio.h>

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: %s MODEL [PROMPT]\n", argv[0]);
    return 2;
  }
  pl_engine_params ep;
  pl_engine_params_default(&ep);
  ep.model_path = argv[1];
  ep.kv_cache_bytes = 64u << 20;
  pl_engine *e;
  if (pl_engine_create(&ep, &e) != PL_OK) {
    fprintf(stderr, "cannot load: %s\n", pl_last_error());
    return 1;
  }
  const char *prompts[3] = {argc > 2 ? argv[2] : "Once upon a time", "The cat", "One day"};
  uint64_t ids[3];
  for (int i = 0; i < 3; i++) {
    pl_sampling_params sp;
    pl_sampling_params_default(&sp);
    sp.max_tokens = 32;
    sp.temperature = i == 0 ? 0.0f : 0.8f; /* request 0 greedy, others sampled */
    sp.seed = 42 + i;
    if (pl_engine_add_request(e, prompts[i], NULL, 0, &sp, &ids[i]) != PL_OK) {
      fprintf(stderr, "request %d: %s\n", i, pl_last_error());
      pl_engine_destroy(e);
      return 1;
    }
  }
  /* Text of each request, collected from the events of every step. */
  char text[3][4096] = {{0}};
  size_t len[3] = {0, 0, 0};
  while (pl_engine_has_unfinished(e)) {
    if (pl_engine_step(e) < 0) {
      fprintf(stderr, "step: %s\n", pl_last_error());
      break;
    }
    pl_output_event ev;
    while (pl_engine_poll(e, &ev)) {
      int i = (int)(ev.request_id - ids[0]);
      if (i < 0 || i > 2 || len[i] + ev.text_len >= sizeof text[i])
        continue;
      for (size_t k = 0; k < ev.text_len; k++)
        text[i][len[i]++] = ev.text[k];
    }
  }
  for (int i = 0; i < 3; i++)
    printf("[%d] %s%s\n", i, prompts[i], text[i]);
  pl_engine_stats st;
  pl_engine_get_stats(e, &st);
  printf("blocks used after the run: %lld of %lld\n", (long long)st.blocks_used,
         (long long)st.blocks_total);
  pl_engine_destroy(e);
  return 0;
}
