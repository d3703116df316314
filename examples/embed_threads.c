/* Embedding pagellm behind its engine thread: the engine steps on a thread of its own while
 * three threads each submit a prompt and stream its text.
 *   build/example_embed_threads MODEL.gguf
 * Only the public header is used. */
#include <pagellm.h>
#include <pthread.h>
#include <stdio.h>

static pl_engine_thread *engine_thread;

static void *ask(void *prompt) {
  pl_sampling_params sp;
  pl_sampling_params_default(&sp);
  sp.max_tokens = 32;
  sp.temperature = 0; /* greedy */
  const char *prompts[1] = {prompt};
  pl_job_params jp = {.n_prompts = 1, .prompts = prompts, .sp = &sp};
  pl_job *job;
  if (pl_job_create(&jp, &job) != PL_OK)
    return NULL;
  if (pl_engine_thread_submit(engine_thread, job) != PL_OK) {
    fprintf(stderr, "submit: %s\n", pl_last_error());
    pl_job_release(job);
    return NULL;
  }
  char text[4096];
  size_t len = 0;
  int done = 0;
  while (!done) {
    pl_job_wait(job, -1); /* the engine thread signalled: a verdict, events, the end */
    int status;
    char msg[256];
    if (pl_job_submit_state(job, &status, msg, sizeof msg) == PL_JOB_REJECTED) {
      fprintf(stderr, "refused (%s): %s\n", pl_strerror(status), msg);
      break;
    }
    pl_job_event *evs = pl_job_take(job, &done);
    for (pl_job_event *ev = evs; ev; ev = ev->next)
      for (size_t k = 0; k < ev->text_len && len + 1 < sizeof text; k++)
        text[len++] = ev->text[k];
  }
  text[len] = '\0';
  printf("[%s]%s\n", (const char *)prompt, text);
  pl_job_release(job);
  return NULL;
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: %s MODEL\n", argv[0]);
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
  if (pl_engine_thread_start(e, NULL, &engine_thread) != PL_OK) { /* NULL: default params */
    fprintf(stderr, "%s\n", pl_last_error());
    pl_engine_destroy(e);
    return 1;
  }
  const char *prompts[3] = {"Once upon a time", "The cat", "One day"};
  pthread_t th[3];
  for (int i = 0; i < 3; i++)
    pthread_create(&th[i], NULL, ask, (void *)prompts[i]);
  for (int i = 0; i < 3; i++)
    pthread_join(th[i], NULL);
  pl_engine_thread_free(engine_thread); /* stops it: the engine is ours again */
  pl_engine_destroy(e);
  return 0;
}
