/* POST /v1/completions and /v1/chat/completions.
 *
 * On the connection's own thread: parse and validate the body, render the chat template,
 * tokenize, check the context budget, then queue a job for the engine thread and sleep until
 * the engine accepted or refused it (so a refusal is still a proper 4xx/503 and not a broken
 * stream). Non-streaming requests then sleep until every choice finished and answer one JSON
 * body; streaming requests answer 200 with a content-reader callback that turns engine events
 * into SSE frames, sleeping between them. Both watch the client socket while they sleep, so a
 * client that hangs up aborts its request (and frees its KV blocks) immediately; streams also
 * send ": keep-alive" comments when no data flowed for keepalive_s. */
#include <microhttpd.h>
#include <stdio.h>
#include <string.h>

#include "engine/engine_access.h"
#include "server/openai_resp.h"
#include "server/server_impl.h"
#include "server/srv_text.h"
#include "server/tool_calls.h"
#include "grammar/grammar.h"
#include "tokenizer/tokenizer.h"
#include "util/alloc.h"
#include "util/error.h"
#include "util/log.h"

/* Token ids and budgets of every prompt of one request. */
typedef struct gen_input {
  int n;
  int32_t **ids;   /* [n]; owned[i] says whether ids[i] is ours to free */
  int *lens, *owned, *max_tokens;
  char **echo;     /* [n] decoded text of id prompts for echo (owned), or NULL */
} gen_input;

static void gen_input_free(gen_input *in) {
  for (int i = 0; i < in->n; i++) {
    if (in->owned && in->owned[i])
      pl_free(in->ids[i]);
    if (in->echo)
      pl_free(in->echo[i]);
  }
  pl_free(in->ids);
  pl_free(in->lens);
  pl_free(in->owned);
  pl_free(in->max_tokens);
  pl_free(in->echo);
  memset(in, 0, sizeof *in);
}

static int oom(pl_oai_error *err) {
  pl_oai_errorf(err, 500, NULL, "out of memory");
  return PL_ENOMEM;
}

static int build_input_(pl_server *s, const pl_oai_request *req, gen_input *in,
                        pl_oai_error *err) {
  pl_engine *e = s->engine;
  int chat = req->kind == PL_OAI_CHAT;
  in->n = chat ? 1 : req->n_prompts;
  in->ids = pl_calloc((size_t)in->n, sizeof *in->ids);
  in->lens = pl_calloc((size_t)in->n, sizeof *in->lens);
  in->owned = pl_calloc((size_t)in->n, sizeof *in->owned);
  in->max_tokens = pl_calloc((size_t)in->n, sizeof *in->max_tokens);
  in->echo = pl_calloc((size_t)in->n, sizeof *in->echo);
  if (!in->ids || !in->lens || !in->owned || !in->max_tokens || !in->echo)
    return oom(err);
  if (chat) {
    if (!pl_srv_has_chat_template(e)) {
      pl_oai_errorf(err, 400, NULL, "This model has no chat template, so /v1/chat/completions "
                    "cannot format the messages. Start the server with --chat-template FILE, or "
                    "use /v1/completions.");
      err->code = "chat_template_missing";
      return PL_EINVAL;
    }
    char *text = NULL;
    size_t len = 0;
    int rc = pl_srv_render_chat(e, req, &text, &len);
    if (rc < 0) {
      if (rc == PL_ENOMEM)
        return oom(err);
      pl_oai_errorf(err, 400, "messages", "the chat template failed on these messages: %s",
                    pl_last_error());
      return PL_EINVAL;
    }
    /* vLLM tokenizes the rendered chat with add_special_tokens=False: the template already
     * wrote BOS when the model wants one. */
    rc = pl_srv_tokenize(e, text, len, req->add_special_tokens == 1, &in->ids[0], &in->lens[0]);
    pl_free(text);
    if (rc < 0)
      return oom(err);
    in->owned[0] = 1;
  } else {
    for (int i = 0; i < in->n; i++) {
      const pl_oai_prompt *p = &req->prompts[i];
      if (p->text) {
        if (pl_srv_tokenize(e, p->text, p->text_len, req->add_special_tokens != 0, &in->ids[i],
                            &in->lens[i]) < 0)
          return oom(err);
        in->owned[i] = 1;
      } else {
        in->ids[i] = p->ids;
        in->lens[i] = p->n_ids;
        if (req->echo) {
          size_t len;
          if (pl_srv_detokenize(e, p->ids, p->n_ids, &in->echo[i], &len) < 0)
            return oom(err);
        }
      }
    }
  }
  int max_len = pl_engine_max_model_len(e);
  for (int i = 0; i < in->n; i++) {
    int mt = pl_oai_resolve_max_tokens(req, in->lens[i], max_len, err);
    if (mt < 0) {
      if (in->n > 1) { /* name the prompt of a batch */
        char tmp[sizeof err->message];
        snprintf(tmp, sizeof tmp, "prompt[%d]: %s", i, err->message);
        snprintf(err->message, sizeof err->message, "%s", tmp);
      }
      return mt;
    }
    in->max_tokens[i] = mt;
  }
  return 0;
}

/* A failed allocation anywhere in rendering or tokenizing (some report it as a template
 * error) makes the outcome ours, never the client's. */
static int build_input(pl_server *s, const pl_oai_request *req, gen_input *in,
                       pl_oai_error *err) {
  long failures0 = pl_alloc_thread_failures();
  int rc = build_input_(s, req, in, err);
  return pl_alloc_thread_failures() != failures0 ? oom(err) : rc;
}

/* The engine refused the job: the matching HTTP error. */
static void reject_error(int status, const char *msg, pl_oai_error *err) {
  switch (status) {
  case PL_EBUSY:
    pl_oai_errorf(err, 503, NULL, "The server is overloaded: %s", msg);
    err->code = "server_overloaded";
    break;
  case PL_ETOOLONG:
    pl_oai_errorf(err, 400, "max_tokens", "%s", msg);
    err->code = "context_length_exceeded";
    break;
  case PL_EINVAL:
  case PL_ERANGE:
    pl_oai_errorf(err, 400, NULL, "%s", msg);
    break;
  case PL_ENOMEM:
    pl_oai_errorf(err, 503, NULL, "The server is out of memory: %s", msg);
    break;
  default:
    pl_oai_errorf(err, 500, NULL, "the engine could not start the request: %s", msg);
    break;
  }
}

static int conn_fd(struct MHD_Connection *c) {
  const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
  return ci ? (int)ci->connect_fd : -1;
}

/* Our waits may be longer than MHD's inactivity timeout; restart its clock when done. */
static void touch(pl_server *s, struct MHD_Connection *c) {
  MHD_set_connection_option(c, MHD_CONNECTION_OPTION_TIMEOUT,
                            (unsigned)(s->cfg.timeout_s > 0 ? s->cfg.timeout_s : 0));
}

/* ---- streaming --------------------------------------------------------------------------- */

typedef struct sse_state {
  pl_server *s;
  pl_srv_job *job;      /* own reference */
  pl_oai_request *req;  /* owned (resp borrows it) */
  gen_input in;         /* owned (echo strings) */
  pl_oai_resp resp;
  pl_strbuf out;        /* SSE bytes not yet handed to MHD, from offset `off` */
  size_t off;
  const char *tail;     /* static bytes sent after out (the out-of-memory frame), or NULL */
  int sock, ended, keepalive_ms;
} sse_state;

/* What a stream that cannot go on for want of memory ends with: built without allocating. */
static const char sse_oom[] = "data: {\"error\":{\"message\":\"out of memory\",\"type\":"
                              "\"server_error\",\"param\":null,\"code\":null}}\n\n"
                              "data: [DONE]\n\n";
/* What follows the error frame of a failed choice (the stream's only one). */
static const char sse_done[] = "data: [DONE]\n\n";

static void sse_free(void *cls) {
  sse_state *st = cls;
  pl_srv_cancel(st->s->loop, st->job); /* no-op when finished */
  pl_srv_job_release(st->job);
  pl_oai_resp_free(&st->resp);
  gen_input_free(&st->in);
  pl_oai_request_free(st->req);
  pl_free(st->req);
  pl_strbuf_free(&st->out);
  pl_free(st);
}

static ssize_t sse_read(void *cls, uint64_t pos, char *buf, size_t max) {
  (void)pos;
  sse_state *st = cls;
  for (;;) {
    if (st->out.len > st->off) {
      size_t n = st->out.len - st->off;
      if (n > max)
        n = max;
      memcpy(buf, st->out.data + st->off, n);
      st->off += n;
      if (st->off == st->out.len) {
        st->out.len = 0;
        st->off = 0;
      }
      return (ssize_t)n;
    }
    if (st->tail && *st->tail) {
      size_t n = strlen(st->tail);
      if (n > max)
        n = max;
      memcpy(buf, st->tail, n);
      st->tail += n;
      return (ssize_t)n;
    }
    if (st->ended)
      return MHD_CONTENT_READER_END_OF_STREAM;
    int done = 0;
    pl_srv_event *evs = pl_srv_job_take(st->job, &done);
    int rc = 0;
    for (pl_srv_event *ev = evs; ev && rc == 0 && !st->resp.failed; ev = ev->next)
      rc = pl_oai_resp_sse_event(&st->resp, ev, &st->out);
    pl_srv_event_free_list(evs);
    if (rc == 0 && st->resp.failed) {
      /* A choice failed and its error frame is out: the other choices stop too (one error
       * frame per stream), and [DONE] follows without usage. */
      pl_srv_cancel(st->s->loop, st->job);
      st->tail = sse_done;
      st->ended = 1;
      continue;
    }
    if (rc == 0 && done && !pl_oai_resp_complete(&st->resp)) {
      st->tail = sse_oom; /* the engine loop lost a choice's end for want of memory */
      st->ended = 1;
      continue;
    }
    if (rc == 0 && done) {
      rc = pl_oai_resp_sse_end(&st->resp, &st->out);
      st->ended = 1;
    }
    if (pl_srv_job_stalled(st->job))
      return MHD_CONTENT_READER_END_WITH_ERROR; /* aborted: the client stopped reading */
    if (rc < 0) {
      /* The frames before the failed one went out whole (a failed call takes back what it
       * wrote); end with an error frame that needs no memory. */
      PL_ERROR("out of memory while streaming; ending the stream with an error");
      pl_srv_cancel(st->s->loop, st->job);
      st->tail = sse_oom;
      st->ended = 1;
      continue;
    }
    if (st->out.len || st->ended)
      continue;
    int w = pl_srv_job_wait(st->job, st->sock, st->keepalive_ms);
    if (w == PL_SRV_WAIT_PEER_GONE) {
      pl_srv_cancel(st->s->loop, st->job);
      return MHD_CONTENT_READER_END_WITH_ERROR;
    }
    if (w == PL_SRV_WAIT_TIMEOUT && pl_strbuf_puts(&st->out, ": keep-alive\n\n") < 0) {
      pl_srv_cancel(st->s->loop, st->job);
      st->tail = sse_oom;
      st->ended = 1;
    }
  }
}

/* The tool-call format of the model, from its chat template. */
static int tool_format(pl_server *s) {
  return (int)pl_tool_format_detect(pl_tokenizer_chat_template(pl_engine_tokenizer(s->engine)));
}


static enum MHD_Result start_stream(pl_server *s, struct MHD_Connection *c, pl_srv_job *job,
                                    pl_oai_request *req, gen_input *in, int sock) {
  pl_oai_error err;
  sse_state *st = pl_calloc(1, sizeof *st); /* takes req and in, even on failure */
  if (!st) {
    pl_oai_request_free(req);
    pl_free(req);
    pl_srv_cancel(s->loop, job);
    oom(&err);
    return pl_http_error(s, c, &err);
  }
  st->s = s;
  st->job = job;
  pl_srv_job_retain(job);
  st->req = req;
  st->in = *in;
  memset(in, 0, sizeof *in);
  st->sock = sock;
  st->keepalive_ms = (s->cfg.keepalive_s > 0 ? s->cfg.keepalive_s : 5) * 1000;
  if (pl_oai_resp_init(&st->resp, req, pl_server_model_name(s), st->in.n, pl_srv_token_bytes,
                       s->engine) < 0) {
    sse_free(st);
    oom(&err);
    return pl_http_error(s, c, &err);
  }
  st->resp.tool_format = tool_format(s);
  for (int i = 0; req->echo && i < st->in.n; i++) {
    if (st->in.echo[i])
      pl_oai_resp_set_echo(&st->resp, i, st->in.echo[i], strlen(st->in.echo[i]));
    else if (req->prompts[i].text)
      pl_oai_resp_set_echo(&st->resp, i, req->prompts[i].text, req->prompts[i].text_len);
  }
  if (pl_oai_resp_sse_begin(&st->resp, &st->out) < 0) {
    sse_free(st);
    oom(&err);
    return pl_http_error(s, c, &err);
  }
  struct MHD_Response *r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16 * 1024,
                                                             sse_read, st, sse_free);
  if (!r) {
    sse_free(st);
    return MHD_NO;
  }
  MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "text/event-stream; charset=utf-8");
  MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
  MHD_add_response_header(r, "X-Accel-Buffering", "no"); /* proxies: do not buffer SSE */
  enum MHD_Result ok = MHD_queue_response(c, MHD_HTTP_OK, r);
  MHD_destroy_response(r); /* MHD keeps its own reference; sse_free runs when it is done */
  pl_srv_metrics_http(s->metrics, 200);
  return ok;
}

/* ---- tools ----------------------------------------------------------------------------------- */


/* tool_choice required / named: a grammar that forces a call in the model's format. */
static int set_tool_grammar(pl_server *s, pl_oai_request *req, pl_oai_error *err) {
  if (req->tool_choice < PL_OAI_TOOLS_REQUIRED)
    return 0;
  if (req->grammar)
    return pl_oai_errorf(err, 400, "tool_choice", "a forced 'tool_choice' cannot be combined "
                         "with a structured-output constraint");
  pl_gconv_error ce = {{0}};
  long failures0 = pl_alloc_thread_failures();
  char *g = pl_tool_grammar((pl_tool_format)tool_format(s), req->tools,
                            req->tool_choice == PL_OAI_TOOLS_NAMED ? req->tool_name : NULL,
                            req->parallel_tool_calls, &ce);
  if (pl_alloc_thread_failures() != failures0) { /* a partial grammar, or a false verdict */
    pl_free(g);
    return oom(err);
  }
  if (!g)
    return pl_oai_errorf(err, 400, "tools", "'tools': %s", ce.message);
  req->grammar = g;
  req->sp.grammar = g;
  return 0;
}

/* ---- non-streaming ----------------------------------------------------------------------- */

static enum MHD_Result finish_whole(pl_server *s, struct MHD_Connection *c, pl_srv_job *job,
                                    const pl_oai_request *req, const gen_input *in, int sock) {
  pl_oai_resp resp;
  pl_oai_error err;
  if (pl_oai_resp_init(&resp, req, pl_server_model_name(s), in->n, pl_srv_token_bytes,
                       s->engine) < 0) {
    pl_srv_cancel(s->loop, job);
    oom(&err);
    return pl_http_error(s, c, &err);
  }
  resp.tool_format = tool_format(s);
  for (int i = 0; req->echo && i < in->n; i++) {
    if (in->echo[i])
      pl_oai_resp_set_echo(&resp, i, in->echo[i], strlen(in->echo[i]));
    else if (req->prompts[i].text)
      pl_oai_resp_set_echo(&resp, i, req->prompts[i].text, req->prompts[i].text_len);
  }
  int rc = 0;
  for (;;) {
    int done = 0;
    pl_srv_event *evs = pl_srv_job_take(job, &done);
    for (pl_srv_event *ev = evs; ev && rc == 0; ev = ev->next)
      rc = pl_oai_resp_add(&resp, ev);
    pl_srv_event_free_list(evs);
    if (rc < 0) {
      pl_srv_cancel(s->loop, job);
      pl_oai_resp_free(&resp);
      oom(&err);
      return pl_http_error(s, c, &err);
    }
    if (done)
      break;
    if (pl_srv_job_wait(job, sock, -1) == PL_SRV_WAIT_PEER_GONE) {
      pl_srv_cancel(s->loop, job); /* the client left: free its blocks now */
      pl_oai_resp_free(&resp);
      return MHD_NO;                /* MHD closes the connection */
    }
  }
  touch(s, c);
  enum MHD_Result r;
  if (pl_oai_resp_failed(&resp, &err)) {
    r = pl_http_error(s, c, &err);
  } else {
    pl_strbuf body = {0};
    if (pl_oai_resp_json(&resp, &body) < 0) {
      oom(&err);
      r = pl_http_error(s, c, &err);
    } else {
      r = pl_http_json(s, c, 200, &body);
    }
    pl_strbuf_free(&body);
  }
  pl_oai_resp_free(&resp);
  return r;
}

/* ---- the endpoint --------------------------------------------------------------------------- */

enum MHD_Result pl_api_generate(pl_server *s, struct MHD_Connection *c, pl_http_req *h,
                                pl_oai_kind kind) {
  pl_oai_error err;
  pl_oai_request *req = pl_calloc(1, sizeof *req);
  if (!req) {
    oom(&err);
    return pl_http_error(s, c, &err);
  }
  gen_input in = {0};
  pl_srv_job *job = NULL;
  enum MHD_Result result;
  if (pl_oai_parse(kind, h->body.data, h->body.len, req, &err) < 0) {
    pl_free(req);
    return pl_http_error(s, c, &err);
  }
  pl_http_body_drop(s, h);
  if (req->ignored[0])
    PL_DEBUG("ignoring unknown request fields: %s", req->ignored);
  if (kind == PL_OAI_CHAT && req->tool_choice != PL_OAI_TOOLS_NONE &&
      set_tool_grammar(s, req, &err) < 0)
    goto fail;
  if (pl_api_check_model(s, req, &err) < 0 ||
      pl_oai_check_token_ids(req, pl_srv_vocab_size(s->engine), &err) < 0 ||
      build_input(s, req, &in, &err) < 0)
    goto fail;

  pl_srv_job_params jp = {.n_prompts = in.n,
                          .prompt_ids = (const int32_t *const *)in.ids,
                          .prompt_lens = in.lens,
                          .max_tokens = in.max_tokens,
                          .sp = &req->sp};
  int rc = pl_srv_job_create(&jp, &job);
  if (rc < 0) {
    pl_oai_errorf(&err, rc == PL_ENOMEM ? 500 : 503, NULL, "%s", pl_last_error());
    goto fail;
  }
  if (pl_srv_submit(s->loop, job) < 0) {
    pl_oai_errorf(&err, 503, NULL, "%s", pl_last_error());
    err.code = "server_overloaded";
    goto fail;
  }
  h->job = job; /* on_completed cancels it if the client goes away */
  pl_server_active_add(s, 1);
  int sock = conn_fd(c);

  /* Wait for the engine's verdict before committing to a status code. */
  int status = 0;
  char msg[512];
  int state;
  while ((state = pl_srv_job_submit_state(job, &status, msg, sizeof msg)) ==
         PL_SRV_SUBMIT_PENDING) {
    if (pl_srv_job_wait(job, sock, -1) == PL_SRV_WAIT_PEER_GONE) {
      pl_srv_cancel(s->loop, job);
      result = MHD_NO;
      goto out;
    }
  }
  if (state == PL_SRV_SUBMIT_REJECTED) {
    reject_error(status, msg, &err);
    touch(s, c);
    result = pl_http_error(s, c, &err);
    goto out;
  }
  touch(s, c);
  if (req->stream) {
    result = start_stream(s, c, job, req, &in, sock);
    req = NULL; /* owned by the stream now */
  } else {
    result = finish_whole(s, c, job, req, &in, sock);
  }
  goto out;

fail:
  result = pl_http_error(s, c, &err);
out:
  gen_input_free(&in);
  if (req) {
    pl_oai_request_free(req);
    pl_free(req);
  }
  if (job && h->job != job)
    pl_srv_job_release(job);
  return result;
}
