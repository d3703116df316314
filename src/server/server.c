/* HTTP plumbing of `pagellm serve`: the libmicrohttpd daemon, routing, authentication, body
 * and header limits, the small GET endpoints, and shutdown.
 *
 * Threading: MHD serves every connection from a small pool of epoll threads (http_threads),
 * so an idle or slow connection costs a socket and a small record, never a thread, and no
 * handler may block. A generation request that waits for the engine suspends its connection;
 * the waiter thread (conn_wait.h) resumes it when the engine signals its job or the client
 * hangs up. The access handler is called first with the headers (auth, route, Content-Type
 * and Content-Length are checked there so a bad request never uploads its body), then with
 * the body in pieces, then once more with *upload_data_size == 0 to answer (again after each
 * resume, until a response is queued).
 *
 * Hostile clients (see server.h): the connection guard (conn_guard.h) holds every connection
 * to a deadline for its request head and body, and holds the connection limit by evicting the
 * oldest idle connection; MHD limits connections per address; bodies count against a
 * server-wide byte budget while they are held. */
#include "server/server.h"

#include <jansson.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <stdatomic.h>
#include <unistd.h>

#include "engine/engine_access.h"
#include "server/openai_resp.h"
#include "server/server_impl.h"
#include "server/ui.h"
#include "util/alloc.h"
#include "util/error.h"
#include "util/log.h"

#ifndef PL_VERSION
#define PL_VERSION "0.1.0"
#endif

void pl_server_config_default(pl_server_config *c) {
  memset(c, 0, sizeof *c);
  c->host = "127.0.0.1";
  c->port = 8000;
  c->max_body_bytes = 8u << 20;
  c->max_header_bytes = 32u << 10;
  c->timeout_s = 60;
  c->keepalive_s = 5;
  c->max_connections = 2048; /* default waiting (1024) + running (256) requests, with room */
  c->max_pending = 1024;
  c->queue_timeout_s = 30;
  c->max_connections_per_ip = 256;
  c->request_timeout_s = 30;
  c->stall_timeout_s = 60;
  c->max_inflight_body_bytes = (size_t)256 << 20;
  c->http_threads = 0;
}

/* The default pool: one thread per core, at least 2 (one slow tokenization must not stall
 * every connection), at most 8 (they only parse, render and copy bytes). */
static int default_http_threads(void) {
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  return n < 2 ? 2 : n > 8 ? 8 : (int)n;
}

const char *pl_server_model_name(const pl_server *s) {
  if (s->served_name && *s->served_name)
    return s->served_name;
  if (atomic_load(&s->state) != PL_SRV_LOADING && s->engine)
    return pl_engine_model_name(s->engine);
  return "pagellm";
}

/* ---- responses ------------------------------------------------------------------------- */

enum MHD_Result pl_http_respond(pl_server *s, struct MHD_Connection *c, int status,
                                const char *content_type, const char *body, size_t len) {
  struct MHD_Response *r =
      MHD_create_response_from_buffer(len, (void *)(body ? body : ""), MHD_RESPMEM_MUST_COPY);
  if (!r)
    return MHD_NO;
  if (content_type)
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, content_type);
  if (status == 401)
    MHD_add_response_header(r, MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer");
  /* Every 503 (loading, draining, overloaded) is temporary: tell clients and load balancers
   * when to come back (a balancer such as HAProxy with "retry-on 503" retries elsewhere). */
  if (status == 503)
    MHD_add_response_header(r, MHD_HTTP_HEADER_RETRY_AFTER, "1");
  enum MHD_Result ok = MHD_queue_response(c, (unsigned)status, r);
  MHD_destroy_response(r);
  pl_srv_metrics_http(s->metrics, status);
  return ok;
}

enum MHD_Result pl_http_json(pl_server *s, struct MHD_Connection *c, int status,
                             const pl_strbuf *body) {
  return pl_http_respond(s, c, status, "application/json", body->data, body->len);
}

enum MHD_Result pl_http_error(pl_server *s, struct MHD_Connection *c, const pl_oai_error *e) {
  pl_strbuf b = {0};
  if (pl_oai_error_json(e, &b) < 0) {
    pl_strbuf_free(&b);
    static const char oom[] = "{\"error\":{\"message\":\"out of memory\",\"type\":\"server_error\","
                              "\"param\":null,\"code\":null}}";
    return pl_http_respond(s, c, 500, "application/json", oom, sizeof oom - 1);
  }
  enum MHD_Result r = pl_http_json(s, c, e->status, &b);
  pl_strbuf_free(&b);
  return r;
}

void pl_server_active_add(pl_server *s, int delta) {
  pthread_mutex_lock(&s->active_mu);
  s->active += delta;
  if (s->active == 0)
    pthread_cond_broadcast(&s->active_cv);
  pthread_mutex_unlock(&s->active_mu);
}

/* Wait until no generation response is being written, at most ms. */
static void wait_responses(pl_server *s, int ms) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  ts.tv_sec += ms / 1000;
  ts.tv_nsec += (long)(ms % 1000) * 1000000L;
  if (ts.tv_nsec >= 1000000000L) {
    ts.tv_sec++;
    ts.tv_nsec -= 1000000000L;
  }
  pthread_mutex_lock(&s->active_mu);
  while (s->active > 0)
    if (pthread_cond_timedwait(&s->active_cv, &s->active_mu, &ts) != 0)
      break;
  pthread_mutex_unlock(&s->active_mu);
}

static enum MHD_Result errorf(pl_server *s, struct MHD_Connection *c, int status, const char *code,
                              const char *fmt, ...) __attribute__((format(printf, 5, 6)));
static enum MHD_Result errorf(pl_server *s, struct MHD_Connection *c, int status, const char *code,
                              const char *fmt, ...) {
  pl_oai_error e;
  pl_oai_errorf(&e, status, NULL, "%s", "");
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(e.message, sizeof e.message, fmt, ap);
  va_end(ap);
  e.code = code;
  return pl_http_error(s, c, &e);
}

int pl_api_check_model(pl_server *s, const pl_oai_request *req, pl_oai_error *err) {
  if (!req->model || !strcmp(req->model, pl_server_model_name(s)))
    return 0;
  pl_oai_errorf(err, 404, "model", "The model `%s` does not exist.", req->model);
  err->code = "model_not_found";
  return PL_ENOTFOUND;
}

/* ---- routing ---------------------------------------------------------------------------- */

enum {
  R_NONE = 0, R_BAD_METHOD, R_HEALTH, R_METRICS, R_VERSION, R_MODELS, R_MODEL, R_COMPLETIONS,
  R_CHAT, R_TOKENIZE, R_DETOKENIZE, R_UI, R_KV_SNAPSHOT,
};

static int route_of(const char *method, const char *url) {
  static const struct {
    const char *path;
    const char *method;
    int route;
  } table[] = {
      {"/health", "GET", R_HEALTH},           {"/metrics", "GET", R_METRICS},
      {"/version", "GET", R_VERSION},         {"/v1/models", "GET", R_MODELS},
      {"/v1/completions", "POST", R_COMPLETIONS}, {"/v1/chat/completions", "POST", R_CHAT},
      {"/tokenize", "POST", R_TOKENIZE},      {"/detokenize", "POST", R_DETOKENIZE},
      {"/kv/snapshot", "GET", R_KV_SNAPSHOT},
  };
  int path_known = 0;
  for (size_t i = 0; i < sizeof table / sizeof *table; i++) {
    if (strcmp(url, table[i].path) != 0)
      continue;
    path_known = 1;
    if (!strcmp(method, table[i].method) ||
        (!strcmp(method, "HEAD") && !strcmp(table[i].method, "GET")))
      return table[i].route;
  }
  if (!strncmp(url, "/v1/models/", 11) && url[11]) {
    if (!strcmp(method, "GET") || !strcmp(method, "HEAD"))
      return R_MODEL;
    path_known = 1;
  }
  if (pl_ui_is_page_path(url))
    return !strcmp(method, "GET") || !strcmp(method, "HEAD") ? R_UI : R_BAD_METHOD;
  return path_known ? R_BAD_METHOD : R_NONE;
}

/* Everything but /health and the web UI's static files needs the key, unknown paths too
 * (checked before 404/405). The UI page must load before the user can type a key; it holds
 * no data, and every API call it makes sends the key. */
static int needs_auth(const pl_server *s, int route) {
  if (route == R_HEALTH || route == R_UI)
    return 0;
  if (route == R_METRICS && s->cfg.metrics_no_auth)
    return 0;
  return 1;
}

/* POST bodies must be JSON: no Content-Type, application/json, or any "+json" type. */
static int json_content_type(const char *ct) {
  if (!ct)
    return 1;
  size_t n = strcspn(ct, ";");
  while (n && (ct[n - 1] == ' ' || ct[n - 1] == '\t'))
    n--;
  if (n == 16 && !strncasecmp(ct, "application/json", 16))
    return 1;
  return n > 5 && !strncasecmp(ct + n - 5, "+json", 5);
}

void pl_http_body_drop(pl_server *s, pl_http_req *h) {
  if (h->body_held)
    atomic_fetch_sub(&s->inflight_body, h->body_held);
  h->body_held = 0;
  pl_strbuf_free(&h->body);
}

/* Constant-time comparison: the time depends only on the length of the key we hold. */
static int key_equal(const char *given, size_t given_len, const char *key) {
  size_t n = strlen(key);
  unsigned diff = (unsigned)(given_len != n);
  for (size_t i = 0; i < n; i++) {
    unsigned char g = given_len ? (unsigned char)given[i < given_len ? i : 0] : 0;
    diff |= (unsigned)(g ^ (unsigned char)key[i]);
  }
  return diff == 0;
}

static int auth_ok(pl_server *s, struct MHD_Connection *c, const char **why) {
  if (!s->api_key || !*s->api_key)
    return 1;
  const char *h = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
  if (!h) {
    *why = "Missing API key: send 'Authorization: Bearer <key>'.";
    return 0;
  }
  if (strncasecmp(h, "Bearer ", 7) != 0) {
    *why = "Invalid authorization header: expected 'Bearer <key>'.";
    return 0;
  }
  h += 7;
  while (*h == ' ')
    h++;
  if (!key_equal(h, strlen(h), s->api_key)) {
    *why = "Incorrect API key provided.";
    return 0;
  }
  return 1;
}

/* ---- small endpoints ------------------------------------------------------------------- */

static enum MHD_Result handle_health(pl_server *s, struct MHD_Connection *c) {
  int st = atomic_load(&s->state);
  if (st == PL_SRV_LOADING)
    return errorf(s, c, 503, NULL, "the model is still loading");
  if (st == PL_SRV_STOPPING)
    return errorf(s, c, 503, NULL, "the server is draining: it finishes its running requests "
                  "and takes no new ones");
  if (!pl_engine_thread_healthy(s->engine_thread))
    return errorf(s, c, 503, NULL, "the engine failed its last step");
  return pl_http_respond(s, c, 200, NULL, "", 0); /* vLLM: 200 with an empty body */
}

static enum MHD_Result handle_metrics(pl_server *s, struct MHD_Connection *c) {
  pl_strbuf b = {0};
  pl_srv_metrics_set_conn_cuts(s->metrics, pl_conn_guard_expired(s->guard),
                               pl_conn_guard_evicted(s->guard), atomic_load(&s->conn_refused));
  if (pl_srv_metrics_render(s->metrics, pl_server_model_name(s), &b) < 0) {
    pl_strbuf_free(&b);
    return errorf(s, c, 500, NULL, "out of memory");
  }
  enum MHD_Result r =
      pl_http_respond(s, c, 200, "text/plain; version=0.0.4; charset=utf-8", b.data, b.len);
  pl_strbuf_free(&b);
  return r;
}

static json_t *model_card(pl_server *s) {
  int max_len = atomic_load(&s->state) == PL_SRV_READY ? pl_engine_max_model_len(s->engine) : 0;
  return json_pack("{s:s,s:s,s:I,s:s,s:s,s:n,s:i}", "id", pl_server_model_name(s), "object",
                   "model", "created", (json_int_t)s->start_time, "owned_by", "pagellm", "root",
                   s->model_path ? s->model_path : pl_server_model_name(s), "parent",
                   "max_model_len", max_len);
}

static enum MHD_Result send_json_value(pl_server *s, struct MHD_Connection *c, json_t *v) {
  pl_strbuf b = {0};
  if (!v || pl_oai_dump(v, &b) < 0) {
    json_decref(v);
    pl_strbuf_free(&b);
    return errorf(s, c, 500, NULL, "out of memory");
  }
  json_decref(v);
  enum MHD_Result r = pl_http_json(s, c, 200, &b);
  pl_strbuf_free(&b);
  return r;
}

static enum MHD_Result handle_models(pl_server *s, struct MHD_Connection *c) {
  json_t *card = model_card(s);
  return send_json_value(s, c, card ? json_pack("{s:s,s:[o]}", "object", "list", "data", card)
                                    : NULL);
}

static enum MHD_Result handle_model(pl_server *s, struct MHD_Connection *c, const char *url) {
  const char *id = url + strlen("/v1/models/");
  if (strcmp(id, pl_server_model_name(s)) != 0) {
    pl_oai_error e;
    pl_oai_errorf(&e, 404, "model", "The model `%s` does not exist.", id);
    e.code = "model_not_found";
    return pl_http_error(s, c, &e);
  }
  return send_json_value(s, c, model_card(s));
}

/* ---- MHD callbacks --------------------------------------------------------------------- */

static enum MHD_Result dispatch(pl_server *s, struct MHD_Connection *c, pl_http_req *h,
                                const char *url) {
  switch (h->route) {
  case R_HEALTH: return handle_health(s, c);
  case R_METRICS: return handle_metrics(s, c);
  case R_VERSION: return send_json_value(s, c, json_pack("{s:s}", "version", PL_VERSION));
  case R_UI: return pl_ui_serve_page(s, c, url); /* static: served while loading too */
  default: break;
  }
  int st = atomic_load(&s->state);
  if (st == PL_SRV_LOADING)
    return errorf(s, c, 503, NULL, "the model is still loading; retry shortly");
  if (st == PL_SRV_STOPPING)
    return errorf(s, c, 503, "server_draining", "the server is shutting down (draining): "
                  "retry on another replica");
  switch (h->route) {
  case R_MODELS: return handle_models(s, c);
  case R_MODEL: return handle_model(s, c, url);
  case R_COMPLETIONS: return pl_api_generate(s, c, h, PL_OAI_COMPLETIONS);
  case R_CHAT: return pl_api_generate(s, c, h, PL_OAI_CHAT);
  case R_TOKENIZE: return pl_api_tokenize(s, c, h);
  case R_DETOKENIZE: return pl_api_detokenize(s, c, h);
  case R_KV_SNAPSHOT: return pl_ui_serve_kv(s, c, h);
  default: return errorf(s, c, 500, NULL, "unrouted request");
  }
}

/* The request record of a request whose record could not be allocated. */
static pl_http_req no_memory;

/* 500 "out of memory" from static memory: for when even the error's JSON cannot be built. */
static enum MHD_Result oom_response(pl_server *s, struct MHD_Connection *c) {
  static const char body[] = "{\"error\":{\"message\":\"out of memory\",\"type\":"
                             "\"server_error\",\"param\":null,\"code\":null}}";
  return pl_http_respond(s, c, 500, "application/json", body, sizeof body - 1);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version,
                                  const char *upload_data, size_t *upload_data_size,
                                  void **con_cls) {
  (void)version;
  pl_server *s = cls;
  pl_http_req *h = *con_cls;
  if (h == &no_memory) { /* answered already; MHD may still hand us the body */
    *upload_data_size = 0;
    return MHD_YES;
  }
  if (!h) {
    /* Headers are in: reject early, before any body is read. */
    h = pl_calloc(1, sizeof *h);
    if (!h) {
      *con_cls = &no_memory;
      return oom_response(s, c);
    }
    h->wait.ev_fd = h->wait.sock_fd = -1;
    *con_cls = h;
    h->route = route_of(method, url);
    const char *why = NULL;
    if (needs_auth(s, h->route) && !auth_ok(s, c, &why)) {
      pl_oai_error e;
      pl_oai_errorf(&e, 401, NULL, "%s", why);
      e.code = "invalid_api_key";
      return pl_http_error(s, c, &e);
    }
    if (h->route == R_NONE)
      return errorf(s, c, 404, "not_found", "Not Found: %s %s", method, url);
    if (h->route == R_BAD_METHOD)
      return errorf(s, c, 405, "method_not_allowed", "Method Not Allowed: %s %s", method, url);
    if (!strcmp(method, "POST")) {
      const char *ct = MHD_lookup_connection_value(c, MHD_HEADER_KIND,
                                                   MHD_HTTP_HEADER_CONTENT_TYPE);
      if (!json_content_type(ct))
        return errorf(s, c, 415, "unsupported_media_type", "Unsupported Content-Type '%s': "
                      "send the body as JSON with 'Content-Type: application/json'.", ct);
    }
    const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND,
                                                 MHD_HTTP_HEADER_CONTENT_LENGTH);
    if (cl && strtoull(cl, NULL, 10) > s->cfg.max_body_bytes)
      return errorf(s, c, 413, "request_too_large",
                    "The request body (%s bytes) exceeds the limit of %zu bytes.", cl,
                    s->cfg.max_body_bytes);
    return MHD_YES;
  }
  if (*upload_data_size) {
    /* Chunked bodies have no Content-Length: stop storing past the limit, answer at the end. */
    size_t n = *upload_data_size;
    if (!h->too_big && !h->over_budget && !h->no_memory) {
      size_t budget = s->cfg.max_inflight_body_bytes;
      if (h->body.len + n > s->cfg.max_body_bytes) {
        h->too_big = 1;
        pl_http_body_drop(s, h);
      } else if (budget && atomic_fetch_add(&s->inflight_body, n) + n > budget) {
        /* Every body in memory together is bounded: refuse this one (503, retry later). */
        atomic_fetch_sub(&s->inflight_body, n);
        h->over_budget = 1;
        pl_http_body_drop(s, h);
      } else {
        if (budget)
          h->body_held += n;
        if (pl_strbuf_append(&h->body, upload_data, n) < 0) {
          h->no_memory = 1; /* read the rest and drop it, then answer */
          pl_http_body_drop(s, h);
        }
      }
    }
    *upload_data_size = 0;
    return MHD_YES;
  }
  /* Head and body are in: the request deadline no longer applies (on_completed re-arms it
   * for the next request on this connection). */
  const union MHD_ConnectionInfo *ci =
      MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
  if (s->guard && ci)
    pl_conn_guard_disarm(s->guard, ci->socket_context);
  if (h->gen) /* resumed: its generation goes on */
    return pl_api_generate_continue(s, c, h);
  if (h->too_big)
    return errorf(s, c, 413, "request_too_large", "The request body exceeds the limit of %zu "
                  "bytes.", s->cfg.max_body_bytes);
  if (h->no_memory)
    return oom_response(s, c);
  if (h->over_budget)
    return errorf(s, c, 503, "server_overloaded", "The server holds too many request bodies "
                  "(%zu bytes in all); retry shortly.", s->cfg.max_inflight_body_bytes);
  return dispatch(s, c, h, url);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                         enum MHD_RequestTerminationCode toe) {
  pl_server *s = cls;
  pl_http_req *h = *con_cls;
  if (h == &no_memory)
    h = *con_cls = NULL;
  if (s->guard && toe == MHD_REQUEST_TERMINATED_COMPLETED_OK) {
    /* a kept-alive connection: the next request's head gets a fresh deadline */
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    if (ci)
      pl_conn_guard_arm(s->guard, ci->socket_context);
  }
  if (!h)
    return;
  pl_conn_waiter_forget(s->waiter, &h->wait);
  pl_api_generate_free(h->gen); /* not yet taken by a stream */
  h->gen = NULL;
  if (h->job) {
    /* Finished, or the client went away (disconnect, timeout): free its blocks now. */
    pl_engine_thread_cancel(s->engine_thread, h->job);
    pl_job_release(h->job);
    pl_server_active_add(s, -1);
  }
  pl_http_body_drop(s, h);
  pl_free(h);
  *con_cls = NULL;
}

/* Connection start/end: the guard's record (deadline, connection limit) lives in MHD's
 * socket context. */
static void on_connection(void *cls, struct MHD_Connection *c, void **socket_context,
                          enum MHD_ConnectionNotificationCode toe) {
  pl_server *s = cls;
  if (!s->guard)
    return;
  if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    const union MHD_ConnectionInfo *ai =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    *socket_context =
        ci ? pl_conn_guard_add(s->guard, (int)ci->connect_fd, ai ? ai->client_addr : NULL) : NULL;
  } else { /* CLOSED: comes before MHD closes the socket */
    pl_conn_guard_remove(s->guard, *socket_context);
    *socket_context = NULL;
  }
}

static void on_mhd_log(void *cls, const char *fmt, va_list ap) {
  pl_server *s = cls;
  if (strstr(fmt, "connection limit")) {
    /* MHD closed a new connection unanswered: the guard's slack was not enough (MHD splits
     * its limit over its threads). Rare by design, so say it, at most every 10 s. */
    unsigned long long n = atomic_fetch_add(&s->conn_refused, 1) + 1;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    long long last = atomic_load(&s->refused_warned);
    if ((n == 1 || ts.tv_sec - last >= 10) &&
        atomic_compare_exchange_strong(&s->refused_warned, &last, (long long)ts.tv_sec)) {
      PL_WARN("http: a new connection was closed unanswered at libmicrohttpd's connection "
              "limit (%llu so far; raise --max-connections?)", n);
    }
  }
  if (!pl_log_enabled(PL_LOG_DEBUG))
    return;
  char line[512];
  vsnprintf(line, sizeof line, fmt, ap);
  size_t n = strlen(line);
  while (n && (line[n - 1] == '\n' || line[n - 1] == '\r'))
    line[--n] = '\0';
  PL_DEBUG("http: %s", line);
}

/* ---- life cycle -------------------------------------------------------------------------- */

static char *dup_or_null(const char *s) { return s && *s ? pl_strdup(s) : NULL; }

/* Connections MHD accepts above max_connections: room for the ones the guard has shut down
 * and MHD has not closed yet, so a burst of new connections is never refused by MHD. */
static int conn_slack(int max_conn) { return max_conn / 16 > 16 ? max_conn / 16 : 16; }

int pl_server_start(const pl_server_config *cfg, pl_server **out) {
  *out = NULL;
  pl_server *s = pl_calloc(1, sizeof *s);
  if (!s)
    return pl_fail(PL_ENOMEM, "out of memory");
  s->cfg = *cfg;
  s->host = pl_strdup(cfg->host && *cfg->host ? cfg->host : "127.0.0.1");
  s->api_key = dup_or_null(cfg->api_key);
  s->served_name = dup_or_null(cfg->served_model_name);
  s->model_path = dup_or_null(cfg->model_path);
  s->cfg.host = s->host;
  s->cfg.api_key = s->api_key;
  s->cfg.served_model_name = s->served_name;
  s->cfg.model_path = s->model_path;
  s->start_time = (long long)time(NULL);
  atomic_init(&s->state, PL_SRV_LOADING);
  pthread_mutex_init(&s->active_mu, NULL);
  pthread_cond_init(&s->active_cv, NULL);
  atomic_init(&s->inflight_body, 0);
  /* jansson's allocations count for failure injection, and a parse that failed for want of
   * memory is told apart from a bad body (pl_alloc_thread_failures). Still malloc/free, so
   * objects made before this call stay valid. */
  json_set_alloc_funcs(pl_malloc_raw, pl_free_raw);
  if (!s->host || pl_srv_metrics_create(&s->metrics) < 0) {
    pl_server_destroy(s);
    return pl_fail(PL_ENOMEM, "out of memory");
  }
  int wrc = pl_conn_waiter_start(&s->waiter);
  if (wrc < 0) {
    pl_server_destroy(s);
    return wrc;
  }
  /* Resolve the bind address (numeric or a name such as "localhost"). */
  struct addrinfo hints = {0}, *ai = NULL;
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE;
  int gai = getaddrinfo(s->host, NULL, &hints, &ai);
  if (gai != 0 || !ai) {
    int rc = pl_fail(PL_EIO, "cannot resolve host '%s': %s", s->host, gai_strerror(gai));
    pl_server_destroy(s);
    return rc;
  }
  struct sockaddr_storage addr;
  memset(&addr, 0, sizeof addr);
  memcpy(&addr, ai->ai_addr, ai->ai_addrlen);
  int v6 = ai->ai_family == AF_INET6;
  freeaddrinfo(ai);
  if (v6)
    ((struct sockaddr_in6 *)&addr)->sin6_port = htons((uint16_t)cfg->port);
  else
    ((struct sockaddr_in *)&addr)->sin_port = htons((uint16_t)cfg->port);

  /* Each connection needs its socket and (while generating) an eventfd: keep within the
   * process's file descriptor limit, MHD's slack included. */
  int max_conn = cfg->max_connections > 0 ? cfg->max_connections : 2048;
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    /* The soft limit (often 1024) is a default, not a decision: take the hard one. */
    rlim_t want = rl.rlim_max;
    rl.rlim_cur = want;
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
      getrlimit(RLIMIT_NOFILE, &rl);
  }
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY) {
    long fit = ((long)rl.rlim_cur - 64) / 2;
    if (fit < (long)max_conn + conn_slack(max_conn)) {
      long n = fit * 16 / 17; /* n + n/16 <= fit */
      if (n + conn_slack((int)n) > fit)
        n = fit - 16;
      if (n < 1)
        n = 1;
      PL_WARN("file descriptor limit %ld allows only %ld connections (asked %d)",
              (long)rl.rlim_cur, n, max_conn);
      max_conn = (int)n;
    }
  }
  /* The guard holds the limit (it evicts the oldest idle connection to admit a new one); MHD,
   * which would refuse every new connection at its limit, gets the slack above it for the
   * connections shut down but not yet closed. */
  int grc = pl_conn_guard_start(cfg->request_timeout_s > 0 ? cfg->request_timeout_s * 1000 : 0,
                                max_conn, cfg->max_connections_per_ip, &s->guard);
  if (grc < 0) {
    pl_server_destroy(s);
    return grc;
  }
  int threads = cfg->http_threads > 0 ? cfg->http_threads : default_http_threads();
  s->cfg.http_threads = threads;
  unsigned flags = MHD_USE_EPOLL_INTERNAL_THREAD | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG;
  if (v6)
    flags |= MHD_USE_IPv6;
  s->d = MHD_start_daemon(
      flags, (uint16_t)cfg->port, NULL, NULL, on_request, s,
      MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, s, /* first: MHD logs to stderr until it is set */
      MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&addr, MHD_OPTION_THREAD_POOL_SIZE, (unsigned)threads,
      MHD_OPTION_NOTIFY_COMPLETED, on_completed, s,
      MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)(cfg->timeout_s > 0 ? cfg->timeout_s : 0),
      MHD_OPTION_CONNECTION_LIMIT, (unsigned)(max_conn + conn_slack(max_conn)),
      MHD_OPTION_NOTIFY_CONNECTION, on_connection, s, MHD_OPTION_CONNECTION_MEMORY_LIMIT,
      (size_t)(cfg->max_header_bytes ? cfg->max_header_bytes : 32u << 10), MHD_OPTION_END);
  if (!s->d) {
    int rc = pl_fail(PL_EIO, "cannot listen on %s:%d (address in use, or not an address of "
                     "this machine?)", s->host, cfg->port);
    pl_server_destroy(s);
    return rc;
  }
  const union MHD_DaemonInfo *di = MHD_get_daemon_info(s->d, MHD_DAEMON_INFO_BIND_PORT);
  s->port = di && di->port ? di->port : cfg->port;
  snprintf(s->url, sizeof s->url, v6 ? "http://[%s]:%d" : "http://%s:%d", s->host, s->port);
  *out = s;
  return 0;
}

int pl_server_port(const pl_server *s) { return s->port; }
const char *pl_server_url(const pl_server *s) { return s->url; }

int pl_server_attach_engine(pl_server *s, pl_engine *e) {
  if (atomic_load(&s->state) != PL_SRV_LOADING)
    return pl_fail(PL_ESTATE, "the server already has an engine");
  pl_engine_thread_params tp;
  pl_engine_thread_params_default(&tp);
  tp.max_pending = s->cfg.max_pending > 0 ? s->cfg.max_pending : 1024;
  tp.queue_timeout_s = s->cfg.queue_timeout_s;
  tp.stall_timeout_s = s->cfg.stall_timeout_s > 0 ? s->cfg.stall_timeout_s : 0;
  pl_srv_engine_hooks(s, &tp.hooks);
  PL_TRY(pl_srv_kvmap_create(&s->kvmap));
  PL_TRY(pl_engine_thread_start(e, &tp, &s->engine_thread));
  s->engine = e;
  atomic_store(&s->state, PL_SRV_READY); /* publishes engine and its thread to HTTP threads */
  return 0;
}

int pl_server_shutdown(pl_server *s, int drain_ms, volatile int *force) {
  if (s->shut)
    return 0;
  s->shut = 1;
  int was = atomic_exchange(&s->state, PL_SRV_STOPPING);
  if (s->metrics)
    pl_srv_metrics_set_draining(s->metrics, 1);
  /* Drain: the listener stays open while running requests finish, so /health answers 503
   * and new requests get 503 + Retry-After (a load balancer retries them on another
   * replica and marks this one down) instead of connection refused. The daemon stops only
   * after the drain (MHD_stop_daemon below). */
  int left = 0;
  if (was != PL_SRV_LOADING && s->engine_thread) {
    left = pl_engine_thread_drain(s->engine_thread, drain_ms, force);
    pl_engine_thread_stop(s->engine_thread); /* aborts the rest; their connections finish their responses */
    wait_responses(s, 5000);   /* let them write their last frames (bounded: slow readers) */
  }
  /* MHD_stop_daemon must find no suspended connection: resume the rest (they are dropped). */
  pl_conn_waiter_close(s->waiter);
  if (s->d) {
    MHD_stop_daemon(s->d); /* joins its threads; every request's state is freed */
    s->d = NULL;
  }
  pl_engine_thread_free(s->engine_thread); /* no HTTP thread can touch it any more */
  s->engine_thread = NULL;
  pl_srv_kvmap_destroy(s->kvmap);
  s->kvmap = NULL;
  pl_conn_waiter_free(s->waiter);
  s->waiter = NULL;
  pl_conn_guard_stop(s->guard); /* after MHD: every connection's record is gone */
  s->guard = NULL;
  return left;
}

void pl_server_destroy(pl_server *s) {
  if (!s)
    return;
  pl_server_shutdown(s, 0, NULL);
  pl_srv_metrics_destroy(s->metrics);
  pthread_cond_destroy(&s->active_cv);
  pthread_mutex_destroy(&s->active_mu);
  pl_free(s->host);
  pl_free(s->api_key);
  pl_free(s->served_name);
  pl_free(s->model_path);
  pl_free(s);
}
