/* `pagellm serve`: parse options, listen at once (/health says 503 while the model loads),
 * load the engine, print the model and the KV plan, serve until SIGINT/SIGTERM, then shut down
 * gracefully: stop accepting, let in-flight requests finish (--shutdown-timeout), abort the
 * rest, exit 0. A second signal skips the wait. The signal handler only writes the signal
 * number to a pipe (async-signal-safe; it may run on any thread, including threads that
 * libraries such as OpenBLAS start before main); a signal thread reads the pipe and acts. */
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/engine_opts.h"
#include "engine/engine_access.h"
#include "pagellm.h"
#include "server/server.h"

static void usage(FILE *f) {
  fprintf(f,
          "usage: pagellm serve [-m MODEL] [options]\n\n"
          "OpenAI-compatible server: /v1/completions, /v1/chat/completions, /v1/models,\n"
          "/tokenize, /detokenize, /health, /metrics.\n\n"
          "server options:\n"
          "  --host HOST                 bind address (default 127.0.0.1; 0.0.0.0 = all)\n"
          "  --port PORT                 default 8000; 0 = any free port\n"
          "  --api-key KEY               require 'Authorization: Bearer KEY' on every path but\n"
          "                              /health (default: $PAGELLM_API_KEY)\n"
          "  --metrics-no-auth           serve /metrics without the API key\n"
          "  --served-model-name NAME    the model name clients use (default: file stem)\n"
          "  --max-body-size SIZE        request body limit (default 8MiB)\n"
          "  --timeout SECS              idle / slow client timeout (default 60)\n"
          "  --sse-keepalive SECS        ': keep-alive' interval on quiet streams (default 5)\n"
          "  --max-connections N         concurrent connections; beyond, the one idle longest\n"
          "                              is closed (default 2048)\n"
          "  --max-connections-per-ip N  the same per client address (default 256; 0 = any)\n"
          "  --http-threads N            HTTP threads serving every connection (epoll; default\n"
          "                              one per core, 2..8)\n"
          "  --request-timeout SECS      deadline for a request's head and body (default 30;\n"
          "                              0 = none)\n"
          "  --stall-timeout SECS        abort a request whose client does not read its output\n"
          "                              for this long (default 60; 0 = never)\n"
          "  --max-inflight-body SIZE    all request bodies held at once (default 256MiB; 503\n"
          "                              above)\n"
          "  --queue-timeout SECS        a request that finds the queue full (--max-waiting)\n"
          "                              waits this long for room, in arrival order, before\n"
          "                              its 503 (default 30; 0 = 503 at once)\n"
          "  --shutdown-timeout SECS     how long in-flight requests may finish on SIGTERM\n"
          "                              (default 30)\n"
          "  --seed N                    base seed for requests without one (and of\n"
          "                              --load-format dummy's weights; default 0 for those)\n\n%s",
          pl_engine_opts_help());
}

/* ---- signals ------------------------------------------------------------------------------ */

static struct {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int n_signals;        /* signals received */
  volatile int force;   /* second signal: stop waiting for in-flight requests */
  int loading, done;
} sig = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0, 1, 0};

static int sig_pipe[2] = {-1, -1};

static void on_signal(int signo) {
  int saved = errno;
  unsigned char b = (unsigned char)signo;
  ssize_t r = write(sig_pipe[1], &b, 1);
  (void)r;
  errno = saved;
}

static void *signal_thread(void *arg) {
  (void)arg;
  for (;;) {
    unsigned char b;
    ssize_t r = read(sig_pipe[0], &b, 1);
    if (r < 0 && errno == EINTR)
      continue;
    if (r <= 0)
      return NULL;
    int s = b;
    pthread_mutex_lock(&sig.mu);
    if (sig.done) {
      pthread_mutex_unlock(&sig.mu);
      return NULL;
    }
    sig.n_signals++;
    if (sig.n_signals > 1)
      sig.force = 1;
    int loading = sig.loading;
    pthread_cond_broadcast(&sig.cv);
    pthread_mutex_unlock(&sig.mu);
    if (loading) { /* loading cannot be interrupted and no client depends on us yet */
      fprintf(stderr, "pagellm: %s while loading the model; exiting\n", strsignal(s));
      _exit(128 + s);
    }
    fprintf(stderr, "pagellm: %s: %s\n", strsignal(s),
            sig.force ? "aborting in-flight requests" : "shutting down (again to force)");
  }
}

static int install_signals(void) {
  if (pipe(sig_pipe) < 0)
    return -1;
  for (int i = 0; i < 2; i++)
    fcntl(sig_pipe[i], F_SETFD, FD_CLOEXEC);
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  if (sigaction(SIGINT, &sa, NULL) < 0 || sigaction(SIGTERM, &sa, NULL) < 0)
    return -1;
  signal(SIGPIPE, SIG_IGN); /* a client hanging up must not kill us */
  return 0;
}

static void raise_fd_limit(void) {
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
}

/* ---- options --------------------------------------------------------------------------- */

static int parse_int(const char *name, const char *v, long lo, long hi, int *out) {
  char *end;
  errno = 0;
  long x = v ? strtol(v, &end, 10) : 0;
  if (!v || errno || end == v || *end || x < lo || x > hi) {
    fprintf(stderr, "pagellm: %s expects an integer in [%ld, %ld], got '%s'\n", name, lo, hi,
            v ? v : "(nothing)");
    return -1;
  }
  *out = (int)x;
  return 0;
}

/* Server options; 1 consumed, 0 unknown, -1 bad value. */
static int parse_server_opt(pl_server_config *c, int argc, char **argv, int *i, int *shutdown_s,
                            pl_engine_params *ep) {
  const char *a = argv[*i];
  const char *eq = strchr(a, '=');
  size_t name_len = eq ? (size_t)(eq - a) : strlen(a);
  char name[64];
  if (name_len >= sizeof name)
    return 0;
  memcpy(name, a, name_len);
  name[name_len] = '\0';
  if (!strcmp(a, "--metrics-no-auth")) { /* the one flag without a value */
    c->metrics_no_auth = 1;
    return 1;
  }
  static const char *const known[] = {"--host", "--port", "--api-key", "--served-model-name",
                                      "--max-body-size", "--timeout", "--sse-keepalive",
                                      "--max-connections", "--shutdown-timeout", "--seed",
                                      "--max-connections-per-ip", "--request-timeout",
                                      "--stall-timeout", "--max-inflight-body",
                                      "--queue-timeout", "--http-threads", NULL};
  int k = 0;
  while (known[k] && strcmp(known[k], name) != 0)
    k++;
  if (!known[k])
    return 0;
  const char *v = eq ? eq + 1 : (*i + 1 < argc ? argv[++*i] : NULL);
  if (!v) {
    fprintf(stderr, "pagellm: %s needs a value\n", name);
    return -1;
  }
  switch (k) {
  case 0: c->host = v; return 1;
  case 1: return parse_int(name, v, 0, 65535, &c->port) < 0 ? -1 : 1;
  case 2: c->api_key = v; return 1;
  case 3: c->served_model_name = v; return 1;
  case 4: {
    long long b = pl_cli_parse_size(v);
    if (b <= 0) {
      fprintf(stderr, "pagellm: --max-body-size expects a size such as 8MiB, got '%s'\n", v);
      return -1;
    }
    c->max_body_bytes = (size_t)b;
    return 1;
  }
  case 5: return parse_int(name, v, 1, 86400, &c->timeout_s) < 0 ? -1 : 1;
  case 6: return parse_int(name, v, 1, 3600, &c->keepalive_s) < 0 ? -1 : 1;
  case 7: return parse_int(name, v, 1, 1 << 20, &c->max_connections) < 0 ? -1 : 1;
  case 8: return parse_int(name, v, 0, 86400, shutdown_s) < 0 ? -1 : 1;
  case 10: return parse_int(name, v, 0, 1 << 20, &c->max_connections_per_ip) < 0 ? -1 : 1;
  case 11: return parse_int(name, v, 0, 86400, &c->request_timeout_s) < 0 ? -1 : 1;
  case 12: return parse_int(name, v, 0, 86400, &c->stall_timeout_s) < 0 ? -1 : 1;
  case 13: {
    long long b = pl_cli_parse_size(v);
    if (b <= 0) {
      fprintf(stderr, "pagellm: --max-inflight-body expects a size such as 256MiB, got '%s'\n",
              v);
      return -1;
    }
    c->max_inflight_body_bytes = (size_t)b;
    return 1;
  }
  case 14: return pl_cli_float(name, v, 0, 86400, &c->queue_timeout_s) < 0 ? -1 : 1;
  case 15: return parse_int(name, v, 1, 256, &c->http_threads) < 0 ? -1 : 1;
  default: {
    char *end;
    errno = 0;
    unsigned long long x = strtoull(v, &end, 10);
    if (errno || end == v || *end || *v == '-') {
      fprintf(stderr, "pagellm: --seed expects a non-negative integer, got '%s'\n", v);
      return -1;
    }
    ep->seed = x;
    ep->load_seed = x; /* --load-format dummy's weights too (vLLM's --seed) */
    return 1;
  }
  }
}

/* ---- the command ---------------------------------------------------------------------------- */

static void print_plan(pl_engine *e, const pl_engine_params *o) {
  pl_engine_stats st;
  pl_engine_get_stats(e, &st);
  long long full = st.max_model_len > 0 ? st.kv_tokens_capacity / st.max_model_len : 0;
  printf("pagellm: model %s (%s), max_model_len %d\n", pl_engine_model_name(e), o->model_path,
         st.max_model_len);
  printf("pagellm: KV cache: %lld blocks x %d tokens = %lld tokens (%s, prefix caching %s); "
         "%lld sequences fit at full length\n",
         (long long)st.blocks_total, st.block_size, (long long)st.kv_tokens_capacity,
         o->kv_alloc == PL_KV_STATIC ? "static" : "paged",
         o->enable_prefix_caching ? "on" : "off", full);
  if (!pl_engine_chat_template(e))
    printf("pagellm: the model has no chat template: /v1/chat/completions answers 400 (use "
           "--chat-template FILE)\n");
}

#define PL_SERVE_MMAP_THRESHOLD (1 << 20)

int pl_cmd_serve(int argc, char **argv) {
  /* A thread per connection gives glibc an arena per thread (up to 8 per core), and their
   * fragments kept RSS climbing ~10% under a soak; two arenas hold it flat (docs/RELIABILITY.md).
   * MALLOC_ARENA_MAX in the environment still decides. */
  if (!getenv("MALLOC_ARENA_MAX"))
    mallopt(M_ARENA_MAX, 2);
  /* glibc raises its mmap threshold to the largest block freed (up to 32 MiB): after one long
   * request, the next ones' megabyte buffers (body, rendered prompt, ids) come from the heap,
   * where freeing keeps their pages resident. Fixed, big blocks stay mapped: freed at once, and
   * reserved pages never written cost nothing (issue 20). MALLOC_MMAP_THRESHOLD_ still decides. */
  if (!getenv("MALLOC_MMAP_THRESHOLD_"))
    mallopt(M_MMAP_THRESHOLD, PL_SERVE_MMAP_THRESHOLD);
  pl_server_config cfg;
  pl_server_config_default(&cfg);
  const char *env_key = getenv("PAGELLM_API_KEY");
  if (env_key && *env_key)
    cfg.api_key = env_key;
  pl_engine_params ep;
  pl_engine_params_default(&ep);
  int shutdown_s = 30;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
      usage(stdout);
      return 0;
    }
    int rc = parse_server_opt(&cfg, argc, argv, &i, &shutdown_s, &ep);
    if (rc == 0)
      rc = pl_engine_opts_parse(&ep, argc, argv, &i);
    if (rc < 0) {
      pl_engine_opts_cleanup();
      return 2;
    }
    if (rc == 0) {
      fprintf(stderr, "pagellm serve: unknown option '%s' (see --help)\n", argv[i]);
      pl_engine_opts_cleanup();
      return 2;
    }
  }
  if (!pl_engine_opts_model(&ep)) {
    fprintf(stderr, "pagellm serve: no model given (-m MODEL) and the bundled default model "
            "'%s' was not found\n", PL_DEFAULT_MODEL);
    pl_engine_opts_cleanup();
    return 2;
  }
  cfg.model_path = ep.model_path;
  if (ep.max_waiting > 0)
    cfg.max_pending = ep.max_waiting; /* the engine's bound is the one that matters */

  raise_fd_limit();
  pthread_t sig_thr;
  if (install_signals() < 0 || pthread_create(&sig_thr, NULL, signal_thread, NULL) != 0) {
    fprintf(stderr, "pagellm: cannot start the signal thread\n");
    pl_engine_opts_cleanup();
    return 1;
  }

  int exit_code = 0;
  pl_server *srv = NULL;
  pl_engine *engine = NULL;
  if (pl_server_start(&cfg, &srv) < 0) {
    fprintf(stderr, "pagellm: %s\n", pl_last_error());
    exit_code = 1;
    goto out;
  }
  printf("pagellm: listening on %s (loading %s ...)\n", pl_server_url(srv), ep.model_path);
  fflush(stdout);
  if (pl_engine_create(&ep, &engine) < 0) {
    fprintf(stderr, "pagellm: cannot load the model: %s\n", pl_last_error());
    exit_code = 1;
    goto out;
  }
  print_plan(engine, &ep);
  if (pl_server_attach_engine(srv, engine) < 0) {
    fprintf(stderr, "pagellm: %s\n", pl_last_error());
    exit_code = 1;
    goto out;
  }
  pthread_mutex_lock(&sig.mu);
  sig.loading = 0;
  int early = sig.n_signals;
  pthread_mutex_unlock(&sig.mu);
  if (!early) {
    printf("pagellm: ready: %s/v1 (model '%s'%s)\n", pl_server_url(srv),
           cfg.served_model_name ? cfg.served_model_name : pl_engine_model_name(engine),
           cfg.api_key ? ", API key required" : "");
    fflush(stdout);
  }

  pthread_mutex_lock(&sig.mu);
  while (sig.n_signals == 0)
    pthread_cond_wait(&sig.cv, &sig.mu);
  pthread_mutex_unlock(&sig.mu);
  int aborted = pl_server_shutdown(srv, shutdown_s * 1000, &sig.force);
  printf("pagellm: stopped (%d request%s aborted)\n", aborted, aborted == 1 ? "" : "s");
  fflush(stdout);

out:
  pl_server_destroy(srv);
  pl_engine_destroy(engine);
  pl_engine_opts_cleanup();
  pthread_mutex_lock(&sig.mu);
  sig.done = 1;
  pthread_mutex_unlock(&sig.mu);
  signal(SIGINT, SIG_DFL);
  signal(SIGTERM, SIG_DFL);
  close(sig_pipe[1]); /* the signal thread reads EOF and returns */
  pthread_join(sig_thr, NULL);
  close(sig_pipe[0]);
  return exit_code;
}
