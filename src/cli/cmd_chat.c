/* pagellm chat: a terminal chat with the model's own chat template, streaming, with history.
 * Each line read from stdin is one user turn ("/reset" clears the history, "/exit" quits).
 * From a pipe it prints only the replies (one per input line), so it scripts well:
 *   printf 'Hi\nTell me more\n' | pagellm chat -m model.gguf */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/engine_opts.h"
#include "engine/engine_access.h"
#include "tokenizer/tokenizer.h"
#include "pagellm.h"
#include "util/alloc.h"
#include "util/array.h"
#include "util/error.h"

/* The history (role and content strings) as the engine's C messages, borrowing its strings. */
static int render(pl_engine *e, json_t *msgs, char **prompt, size_t *plen) {
  size_t n = json_array_size(msgs);
  pl_chat_msg *m = pl_calloc(n ? n : 1, sizeof *m);
  pl_chat_field *f = pl_calloc(n ? 2 * n : 1, sizeof *f);
  int rc = m && f ? 0 : pl_fail(PL_ENOMEM, "out of memory");
  for (size_t i = 0; rc == 0 && i < n; i++) {
    json_t *msg = json_array_get(msgs, i);
    const char *keys[2] = {"role", "content"};
    for (int k = 0; k < 2; k++) {
      json_t *v = json_object_get(msg, keys[k]);
      f[2 * i + k] = (pl_chat_field){keys[k], json_string_value(v), json_string_length(v), 0};
    }
    m[i] = (pl_chat_msg){&f[2 * i], 2};
  }
  if (rc == 0)
    rc = pl_engine_render_chat(e, m, n, NULL, NULL, 1, 0, prompt, plen);
  pl_free(m);
  pl_free(f);
  return rc;
}

static int reply(pl_engine *e, json_t *msgs, const pl_sampling_params *sp, int tty) {
  char *prompt = NULL;
  size_t plen = 0;
  if (render(e, msgs, &prompt, &plen) < 0) {
    fprintf(stderr, "pagellm chat: %s\n", pl_last_error());
    return -1;
  }
  /* the template already wrote BOS and the turn markers: tokenize with specials parsed and
   * nothing added (what vLLM does for chat) */
  pl_token_buf ids = {0};
  int rc = pl_tokenizer_encode(pl_engine_tokenizer(e), prompt, plen, 0, 1, &ids);
  pl_free(prompt);
  uint64_t id;
  if (rc == 0)
    rc = pl_engine_add_request(e, NULL, ids.ids, (int)ids.n, sp, &id);
  pl_token_buf_free(&ids);
  if (rc < 0) {
    fprintf(stderr, "pagellm chat: %s\n", pl_last_error());
    return -1;
  }
  size_t cap = 0, len = 0;
  char *text = NULL;
  int done = 0, oom = 0;
  while (!done) {
    if (pl_engine_step(e) < 0) {
      fprintf(stderr, "pagellm chat: %s\n", pl_last_error());
      break;
    }
    pl_output_event ev;
    while (pl_engine_poll(e, &ev)) {
      fwrite(ev.text, 1, ev.text_len, stdout);
      fflush(stdout);
      if (!oom && pl_array_grow(&text, &cap, len + ev.text_len + 1, 1, 256) < 0)
        oom = 1; /* shown, but not kept for the next turn */
      if (!oom) {
        memcpy(text + len, ev.text, ev.text_len);
        len += ev.text_len;
      }
      if (ev.finish) {
        done = 1;
        if (ev.finish == PL_FINISH_ERROR)
          fprintf(stderr, "\npagellm chat: %s", ev.error ? ev.error : "failed");
        if (ev.finish == PL_FINISH_LENGTH && tty)
          fprintf(stderr, " [max tokens reached]");
      }
    }
  }
  printf("\n");
  if (oom) {
    fprintf(stderr, "pagellm chat: out of memory keeping the answer\n");
    pl_free(text);
    return -1;
  }
  json_array_append_new(msgs, json_pack("{s:s,s:s%}", "role", "assistant", "content",
                                        text ? text : "", len));
  pl_free(text);
  return 0;
}

int pl_cmd_chat(int argc, char **argv) {
  pl_engine_params ep;
  pl_engine_params_default(&ep);
  pl_sampling_params sp;
  pl_sampling_params_default(&sp);
  sp.temperature = 0.7f;
  sp.max_tokens = 256;
  const char *system = NULL;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    int used = pl_engine_opts_parse(&ep, argc, argv, &i);
    if (used < 0) return 2;
    if (used) continue;
    if (!strcmp(a, "--system")) { if (!v) return 2; system = v; i++; }
    else if (!strcmp(a, "-n") || !strcmp(a, "--max-tokens")) { if (pl_cli_int(a, v, 1, 1 << 24, &sp.max_tokens)) return 2; i++; }
    else if (!strcmp(a, "--temp")) { if (pl_cli_float(a, v, 0, 100, &sp.temperature)) return 2; i++; }
    else if (!strcmp(a, "--seed")) { int s; if (pl_cli_int(a, v, 0, 0x7fffffff, &s)) return 2; sp.seed = s; ep.load_seed = (uint64_t)s; i++; }
    else if (!strcmp(a, "--help")) {
      printf("usage: pagellm chat [-m MODEL] [--system TEXT] [-n MAX_TOKENS] [--temp T] [--seed S]\n"
             "                    [engine options]\nlines on stdin are user turns; /reset, /exit\n\n%s",
             pl_engine_opts_help());
      return 0;
    } else {
      fprintf(stderr, "pagellm chat: unknown option '%s'\n", a);
      return 2;
    }
  }
  if (!pl_engine_opts_model(&ep)) {
    fprintf(stderr, "pagellm chat: no model: give -m MODEL\n");
    return 2;
  }
  if (!ep.max_num_seqs)
    ep.max_num_seqs = 4;
  pl_engine *e;
  if (pl_engine_create(&ep, &e) < 0) {
    fprintf(stderr, "pagellm chat: %s\n", pl_last_error());
    return 1;
  }
  if (!pl_engine_chat_template(e)) {
    fprintf(stderr, "pagellm chat: the model has no chat template; give one with --chat-template FILE\n");
    pl_engine_destroy(e);
    return 1;
  }
  int tty = isatty(0) && isatty(1);
  json_t *msgs = json_array();
  if (system)
    json_array_append_new(msgs, json_pack("{s:s,s:s}", "role", "system", "content", system));
  char *line = NULL;
  size_t cap = 0;
  int rc = 0;
  for (;;) {
    if (tty) {
      printf("> ");
      fflush(stdout);
    }
    ssize_t n = getline(&line, &cap, stdin);
    if (n < 0)
      break;
    while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
      line[--n] = 0;
    if (!strcmp(line, "/exit"))
      break;
    if (!strcmp(line, "/reset")) {
      json_array_clear(msgs);
      if (system)
        json_array_append_new(msgs, json_pack("{s:s,s:s}", "role", "system", "content", system));
      continue;
    }
    if (!n)
      continue;
    json_array_append_new(msgs, json_pack("{s:s,s:s}", "role", "user", "content", line));
    if (reply(e, msgs, &sp, tty) < 0) {
      json_array_remove(msgs, json_array_size(msgs) - 1);
      rc = 1;
      if (!tty)
        break;
    }
  }
  free(line);
  json_decref(msgs);
  pl_engine_destroy(e);
  return rc;
}
