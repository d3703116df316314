/* POST /v1/completions and /v1/chat/completions.
 *
 * On an MHD thread: parse and validate the body, render the chat template, tokenize, check
 * the context budget, then queue a job for the engine thread. From then on no thread waits:
 * whenever the request has nothing to do it suspends its connection (conn_wait.h) and MHD
 * calls back once the engine signalled the job. First comes the engine's verdict (so a refusal
 * is still a proper 4xx/503 and not a broken stream). Non-streaming requests then collect
 * every choice and answer one JSON body; streaming requests answer 200 with a content-reader
 * callback that turns engine events into SSE frames. While suspended the client socket is
 * watched, so a client that hangs up aborts its request (and frees its KV blocks) at once;
 * streams also send ": keep-alive" comments when no data flowed for keepalive_s. */
#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <xxhash.h>

#include "engine/engine_access.h"
#include "server/conn_guard.h"
#include "server/conn_wait.h"
#include "server/openai_resp.h"
#include "server/server_impl.h"
#include "server/srv_text.h"
#include "server/tool_calls.h"
#include "grammar/grammar.h"
#include "tokenizer/tokenizer.h"
#include "util/alloc.h"
#include "util/error.h"
#include "util/log.h"

/* A stream's socket send buffer (the kernel doubles it): ~0.5 MiB of unread output, a few
 * seconds of the fastest stream, before its stall clock can start. */
#define PL_STREAM_SNDBUF (256 * 1024)

/* Token ids and budgets of every prompt of one request. */
typedef struct gen_input {
  int n;
  int32_t **ids;   /* [n]; owned[i] says whether ids[i] is ours to free */
  int *lens, *owned, *max_tokens;
  char **echo;     /* [n] decoded text of id prompts for echo (owned), or NULL */
} gen_input;

/* The prompt ids, once the job holds its own copy (a long prompt's ids are megabytes). */
static void gen_input_drop_ids(gen_input *in) {
  for (int i = 0; i < in->n; i++) {
    if (in->owned[i])
      pl_free(in->ids[i]);
    in->ids[i] = NULL;
    in->owned[i] = 0;
  }
}

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

/* A text of more than 2 x max_model_len x (the longest token's bytes) cannot fit the context
 * whatever its tokens: refuse it before tokenizing, which takes memory a few times the text's
 * size (measured: a chat of 8 MB held 49 MB at its peak, 1 MB of it before rendering). The
 * factor 2 leaves room for normalizers that shrink text (NFC composition). A chat's render
 * stops at the same bound, so a long chat is never held rendered either. */
static size_t bytes_per_token_bound(const pl_engine *e) {
  return 2 * pl_tokenizer_max_piece_len(pl_engine_tokenizer(e));
}

/* The context_length_exceeded error for a text of `bytes` (at least that many when `more`). */
static int too_long(const pl_engine *e, const pl_oai_request *req, size_t bytes, int more,
                    pl_oai_error *err) {
  size_t per = bytes_per_token_bound(e);
  const char *what = req->kind == PL_OAI_CHAT ? "messages" : "prompt";
  pl_oai_errorf(err, 400, what, "This model's maximum context length is %d tokens. However, "
                "your %s is at least %zu tokens long (%s%zu bytes), which leaves no room for a "
                "completion.", pl_engine_max_model_len(e), what, bytes / per,
                more ? "at least " : "", bytes);
  err->code = "context_length_exceeded";
  return PL_ETOOLONG;
}

static int surely_too_long(const pl_engine *e, const pl_oai_request *req, size_t bytes,
                           pl_oai_error *err) {
  size_t per = bytes_per_token_bound(e);
  if (per == 0 || bytes / per < (size_t)pl_engine_max_model_len(e))
    return 0;
  return too_long(e, req, bytes, 0, err);
}

#define PL_TRIM_AFTER_BYTES ((size_t)1 << 20) /* a chat this long had a tree worth trimming */

static int build_input_(pl_server *s, pl_oai_request *req, gen_input *in,
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
    /* texts of max_text bytes or more are surely too long (above) */
    size_t max_text = bytes_per_token_bound(e) * (size_t)pl_engine_max_model_len(e);
    int rc = pl_srv_render_chat(e, req, max_text ? max_text - 1 : 0, &text, &len);
    if (rc < 0) {
      if (rc == PL_ENOMEM)
        return oom(err);
      if (rc == PL_ETOOLONG)
        return too_long(e, req, max_text, 1, err);
      pl_oai_errorf(err, 400, "messages", "the chat template failed on these messages: %s",
                    pl_last_error());
      return PL_EINVAL;
    }
    if ((rc = surely_too_long(e, req, len, err)) < 0) {
      pl_free(text);
      return rc;
    }
    /* The messages are text now: a long chat's tree is not held while it is tokenized. Its
     * blocks are small, so freeing them keeps their pages until the heap is trimmed. */
    pl_oai_request_drop_messages(req);
    if (len >= PL_TRIM_AFTER_BYTES)
      pl_alloc_trim();
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
        int rc = surely_too_long(e, req, p->text_len, err);
        if (rc < 0)
          return rc;
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
static int build_input(pl_server *s, pl_oai_request *req, gen_input *in,
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

/* The client's port, for debug lines that a client's log can be matched with. */
static int conn_port(struct MHD_Connection *c) {
  const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
  if (!ci || !ci->client_addr)
    return -1;
  const struct sockaddr *a = ci->client_addr;
  if (a->sa_family == AF_INET)
    return ntohs(((const struct sockaddr_in *)a)->sin_port);
  if (a->sa_family == AF_INET6)
    return ntohs(((const struct sockaddr_in6 *)a)->sin6_port);
  return -1;
}

/* Fair share groups requests by who asks: the OpenAI `user` field when given (an end-user id,
 * so users behind one proxy or one address stay apart), else the client's address. */
static uint64_t client_key(struct MHD_Connection *c, const pl_oai_request *req) {
  if (req->user)
    return XXH3_64bits_withSeed(req->user, strlen(req->user), 1);
  const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
  unsigned char key[17];
  pl_conn_addr_key(key, ci ? ci->client_addr : NULL);
  return XXH3_64bits_withSeed(key, sizeof key, 2);
}

static int conn_fd(struct MHD_Connection *c) {
  const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
  return ci ? (int)ci->connect_fd : -1;
}

/* A wait may be longer than MHD's inactivity timeout; restart its clock when done. */
static void touch(pl_server *s, struct MHD_Connection *c) {
  MHD_set_connection_option(c, MHD_CONNECTION_OPTION_TIMEOUT,
                            (unsigned)(s->cfg.timeout_s > 0 ? s->cfg.timeout_s : 0));
}

/* ---- the request's state across suspensions ------------------------------------------- */

/* One generation request from its submission to its end. The request record owns it
 * (pl_http_req.gen) until a stream's response takes it (gen_free_cb is the response's free
 * callback). */
struct pl_gen {
  pl_server *s;
  struct MHD_Connection *c;
  pl_job *job;      /* own reference */
  pl_oai_request *req;  /* owned (resp borrows it) */
  gen_input in;         /* owned (echo strings) */
  pl_oai_resp resp;     /* once the engine accepted the job (resp_live) */
  int resp_live, accepted;
  pl_conn_wait wait;    /* while the connection is suspended */
  int sock;
  /* streams */
  pl_strbuf out;        /* SSE bytes not yet handed to MHD, from offset `off` */
  size_t off;
  const char *tail;     /* static bytes sent after out (the out-of-memory frame), or NULL */
  int ended, keepalive_ms;
};

void pl_api_generate_free(pl_gen *g) {
  if (!g)
    return;
  pl_conn_waiter_forget(g->s->waiter, &g->wait);
  pl_engine_thread_cancel(g->s->engine_thread, g->job); /* no-op when finished */
  pl_job_release(g->job);
  if (g->resp_live)
    pl_oai_resp_free(&g->resp);
  gen_input_free(&g->in);
  if (g->req) {
    pl_oai_request_free(g->req);
    pl_free(g->req);
  }
  pl_strbuf_free(&g->out);
  pl_free(g);
}

static void gen_free_cb(void *cls) { pl_api_generate_free(cls); }

/* Nothing to send yet: give the thread back until the engine signals the job, the client
 * hangs up or timeout_ms passes (-1: no timeout). The caller returns at once. */
static void gen_suspend(pl_gen *g, int timeout_ms) {
  pl_conn_waiter_suspend(g->s->waiter, &g->wait, g->c, pl_job_fd(g->job), g->sock,
                         timeout_ms);
}

/* Why the last suspension ended (PL_CONN_NONE when there was none since). */
static int gen_woken(pl_gen *g) {
  int why = g->wait.reason;
  g->wait.reason = PL_CONN_NONE;
  return why;
}

/* ---- streaming --------------------------------------------------------------------------- */

/* What a stream that cannot go on for want of memory ends with: built without allocating. */
static const char sse_oom[] = "data: {\"error\":{\"message\":\"out of memory\",\"type\":"
                              "\"server_error\",\"param\":null,\"code\":null}}\n\n"
                              "data: [DONE]\n\n";
/* What follows the error frame of a failed choice (the stream's only one). */
static const char sse_done[] = "data: [DONE]\n\n";

/* MHD asks for bytes when the socket can take them. With none ready the connection is
 * suspended (return 0) until the engine signals the job, the client leaves, or a keep-alive
 * is due. */
static ssize_t sse_read(void *cls, uint64_t pos, char *buf, size_t max) {
  (void)pos;
  pl_gen *st = cls;
  int why = gen_woken(st);
  if (why == PL_CONN_PEER_GONE || why == PL_CONN_CLOSED) {
    PL_DEBUG("http: client port %d: %s while streaming; dropping it", conn_port(st->c),
             why == PL_CONN_CLOSED ? "server stopping" : "client gone");
    pl_engine_thread_cancel(st->s->engine_thread, st->job);
    return MHD_CONTENT_READER_END_WITH_ERROR;
  }
  if (why == PL_CONN_TIMEOUT && !st->ended && pl_strbuf_puts(&st->out, ": keep-alive\n\n") < 0) {
    pl_engine_thread_cancel(st->s->engine_thread, st->job);
    st->tail = sse_oom;
    st->ended = 1;
  }
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
    pl_job_event *evs = pl_job_take(st->job, &done);
    int rc = 0;
    for (pl_job_event *ev = evs; ev && rc == 0 && !st->resp.failed; ev = ev->next)
      rc = pl_oai_resp_sse_event(&st->resp, ev, &st->out);
    if (rc == 0 && st->resp.failed) {
      /* A choice failed and its error frame is out: the other choices stop too (one error
       * frame per stream), and [DONE] follows without usage. */
      pl_engine_thread_cancel(st->s->engine_thread, st->job);
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
    if (pl_job_stalled(st->job)) {
      PL_DEBUG("http: client port %d stopped reading; ending its stream", conn_port(st->c));
      return MHD_CONTENT_READER_END_WITH_ERROR;
    } /* aborted: the client stopped reading */
    if (rc < 0) {
      /* The frames before the failed one went out whole (a failed call takes back what it
       * wrote); end with an error frame that needs no memory. */
      PL_ERROR("out of memory while streaming; ending the stream with an error");
      pl_engine_thread_cancel(st->s->engine_thread, st->job);
      st->tail = sse_oom;
      st->ended = 1;
      continue;
    }
    if (st->out.len || st->ended)
      continue;
    gen_suspend(st, st->keepalive_ms);
    return 0;
  }
}

/* The tool-call format of the model, from its chat template. */
static int tool_format(pl_server *s) {
  return (int)pl_tool_format_detect(pl_tokenizer_chat_template(pl_engine_tokenizer(s->engine)));
}

/* Answer 200 with an SSE body; the response takes g from h. */
static enum MHD_Result start_stream(pl_server *s, struct MHD_Connection *c, pl_http_req *h,
                                    pl_gen *g) {
  pl_oai_error err;
  g->keepalive_ms = (s->cfg.keepalive_s > 0 ? s->cfg.keepalive_s : 5) * 1000;
  if (pl_oai_resp_sse_begin(&g->resp, &g->out) < 0) {
    pl_engine_thread_cancel(s->engine_thread, g->job);
    oom(&err);
    return pl_http_error(s, c, &err);
  }
  struct MHD_Response *r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16 * 1024,
                                                             sse_read, g, gen_free_cb);
  if (!r) {
    pl_engine_thread_cancel(s->engine_thread, g->job);
    return MHD_NO; /* g stays with h: freed when MHD completes the request */
  }
  h->gen = NULL; /* the response owns it now */
  /* Linux grows a socket's send buffer up to tcp_wmem's maximum (4 MiB by default) even
   * while the peer's window is closed: a client that stops reading would absorb megabytes of
   * output before the stall timeout can see it, per connection. A stream needs little. */
  int fd = conn_fd(c), sndbuf = PL_STREAM_SNDBUF;
  if (fd >= 0)
    (void)setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf);
  MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "text/event-stream; charset=utf-8");
  MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
  MHD_add_response_header(r, "X-Accel-Buffering", "no"); /* proxies: do not buffer SSE */
  enum MHD_Result ok = MHD_queue_response(c, MHD_HTTP_OK, r);
  MHD_destroy_response(r); /* MHD keeps its own reference; gen_free_cb runs when it is done */
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

/* ---- waiting for the engine ------------------------------------------------------------- */

/* The access handler's part once the job is submitted, called again after every suspension:
 * wait for the engine's verdict before committing to a status code; then a stream answers
 * at once, a whole response collects every choice first. */
enum MHD_Result pl_api_generate_continue(pl_server *s, struct MHD_Connection *c,
                                         pl_http_req *h) {
  pl_gen *g = h->gen;
  pl_oai_error err;
  int why = gen_woken(g);
  if (why == PL_CONN_PEER_GONE || why == PL_CONN_CLOSED) {
    PL_DEBUG("http: client port %d: %s before the answer; dropping it", conn_port(c),
             why == PL_CONN_CLOSED ? "server stopping" : "client gone");
    pl_engine_thread_cancel(s->engine_thread, g->job); /* the client left: free its blocks now */
    return MHD_NO;                   /* MHD closes the connection */
  }
  if (!g->accepted) {
    int status = 0;
    char msg[512];
    int state = pl_job_submit_state(g->job, &status, msg, sizeof msg);
    if (state == PL_JOB_PENDING) {
      gen_suspend(g, -1);
      return MHD_YES;
    }
    touch(s, c);
    if (state == PL_JOB_REJECTED) {
      reject_error(status, msg, &err);
      return pl_http_error(s, c, &err);
    }
    g->accepted = 1;
    const pl_oai_request *req = g->req;
    if (pl_oai_resp_init(&g->resp, req, pl_server_model_name(s), g->in.n, pl_srv_token_bytes,
                         s->engine) < 0) {
      pl_engine_thread_cancel(s->engine_thread, g->job);
      oom(&err);
      return pl_http_error(s, c, &err);
    }
    g->resp_live = 1;
    g->resp.tool_format = tool_format(s);
    for (int i = 0; req->echo && i < g->in.n; i++) {
      if (g->in.echo[i])
        pl_oai_resp_set_echo(&g->resp, i, g->in.echo[i], strlen(g->in.echo[i]));
      else if (req->prompts[i].text)
        pl_oai_resp_set_echo(&g->resp, i, req->prompts[i].text, req->prompts[i].text_len);
    }
    if (req->stream)
      return start_stream(s, c, h, g);
  }
  /* not streaming: collect the events until every choice finished, then answer once */
  int done = 0, rc = 0;
  pl_job_event *evs = pl_job_take(g->job, &done);
  for (pl_job_event *ev = evs; ev && rc == 0; ev = ev->next)
    rc = pl_oai_resp_add(&g->resp, ev);
  if (rc < 0) {
    pl_engine_thread_cancel(s->engine_thread, g->job);
    oom(&err);
    return pl_http_error(s, c, &err);
  }
  if (!done) {
    gen_suspend(g, -1);
    return MHD_YES;
  }
  touch(s, c);
  enum MHD_Result r;
  if (pl_oai_resp_failed(&g->resp, &err)) {
    r = pl_http_error(s, c, &err);
  } else {
    pl_strbuf body = {0};
    if (pl_oai_resp_json(&g->resp, &body) < 0) {
      oom(&err);
      r = pl_http_error(s, c, &err);
    } else {
      r = pl_http_json(s, c, 200, &body);
    }
    pl_strbuf_free(&body);
  }
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
  pl_job *job = NULL;
  enum MHD_Result result;
  /* The request takes the body: a chat's messages are parsed in place in it. Its bytes stay
   * counted in the in-flight budget until it is parsed. */
  char *body = h->body.data;
  size_t body_len = h->body.len;
  h->body = (pl_strbuf){0};
  int prc = pl_oai_parse_owned(kind, body, body_len, req, &err);
  pl_http_body_drop(s, h);
  if (prc < 0) {
    pl_free(req);
    return pl_http_error(s, c, &err);
  }
  if (req->ignored[0])
    PL_DEBUG("ignoring unknown request fields: %s", req->ignored);
  if (kind == PL_OAI_CHAT && req->tool_choice != PL_OAI_TOOLS_NONE &&
      set_tool_grammar(s, req, &err) < 0)
    goto fail;
  if (pl_api_check_model(s, req, &err) < 0 ||
      pl_oai_check_token_ids(req, pl_srv_vocab_size(s->engine), &err) < 0 ||
      build_input(s, req, &in, &err) < 0)
    goto fail;

  req->sp.client = client_key(c, req);
  pl_job_params jp = {.n_prompts = in.n,
                          .prompt_ids = (const int32_t *const *)in.ids,
                          .prompt_lens = in.lens,
                          .max_tokens = in.max_tokens,
                          .sp = &req->sp};
  int rc = pl_job_create(&jp, &job);
  if (rc < 0) {
    pl_oai_errorf(&err, rc == PL_ENOMEM ? 500 : 503, NULL, "%s", pl_last_error());
    goto fail;
  }
  gen_input_drop_ids(&in);
  if (pl_engine_thread_submit(s->engine_thread, job) < 0) { /* PL_EBUSY */
    reject_error(PL_EBUSY, pl_last_error(), &err);
    goto fail;
  }
  h->job = job; /* on_completed cancels it if the client goes away */
  pl_server_active_add(s, 1);
  pl_gen *g = pl_calloc(1, sizeof *g);
  if (!g) {
    pl_engine_thread_cancel(s->engine_thread, job);
    oom(&err);
    result = pl_http_error(s, c, &err);
    goto out;
  }
  g->s = s;
  g->c = c;
  g->job = job;
  pl_job_retain(job);
  g->req = req;
  req = NULL;
  g->in = in;
  memset(&in, 0, sizeof in);
  g->sock = conn_fd(c);
  g->wait.ev_fd = g->wait.sock_fd = -1;
  h->gen = g;
  result = pl_api_generate_continue(s, c, h);
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
    pl_job_release(job);
  return result;
}
