/* Internals shared by the server's files: the server object, the per-request HTTP context and
 * the response helpers. Not for use outside src/server/. */
#ifndef PL_SERVER_SERVER_IMPL_H
#define PL_SERVER_SERVER_IMPL_H
#include <microhttpd.h>
#include <pthread.h>
#include <stdatomic.h>

#include "server/conn_guard.h"
#include "server/conn_wait.h"
#include "server/kvmap.h"
#include "server/metrics.h"
#include "server/openai_req.h"
#include "server/server.h"
#include "server/strbuf.h"

enum { PL_SRV_LOADING = 0, PL_SRV_READY = 1, PL_SRV_STOPPING = 2 };

struct pl_server {
  pl_server_config cfg; /* strings point at the owned copies below */
  char *host, *api_key, *served_name, *model_path;
  char url[320];
  int port;
  struct MHD_Daemon *d;
  atomic_int state;      /* PL_SRV_*; engine, engine_thread, kvmap valid once READY seen */
  pl_engine *engine;
  pl_engine_thread *engine_thread; /* the only user of engine's step loop */
  pl_srv_kvmap *kvmap;   /* fed by the engine thread (engine_hooks.c) */
  pl_srv_metrics *metrics;
  long long start_time;  /* Unix seconds, for /v1/models "created" */
  int shut;              /* pl_server_shutdown ran */
  /* Generation responses still being written (a job attached to an HTTP request); shutdown
   * waits for them so aborted streams still end with their final frames and [DONE]. */
  pthread_mutex_t active_mu;
  pthread_cond_t active_cv;
  int active;
  pl_conn_guard *guard;       /* request deadlines and the connection limit */
  pl_conn_waiter *waiter;     /* resumes connections suspended while their request waits */
  atomic_size_t inflight_body; /* bytes of request bodies held now (max_inflight_body_bytes) */
  atomic_ullong conn_refused;  /* new connections MHD closed unanswered at its own limit */
  atomic_llong refused_warned; /* CLOCK_MONOTONIC second of the last warning about them */
};

/* The hooks that feed s's metrics and KV map from the engine thread (engine_hooks.c). */
void pl_srv_engine_hooks(pl_server *s, pl_engine_thread_hooks *h);

/* Count a generation response in / out (see pl_server.active). */
void pl_server_active_add(pl_server *s, int delta);

/* A generation request's state while it waits for the engine (api_generate.c). */
typedef struct pl_gen pl_gen;

/* One HTTP request (MHD's con_cls): lives from the first access-handler call until MHD's
 * request-completed callback. */
typedef struct pl_http_req {
  int route;
  pl_strbuf body;
  int too_big;
  int over_budget;   /* the server-wide body budget was exhausted: answer 503 */
  int no_memory;     /* storing the body failed: answer 500 "out of memory" */
  size_t body_held;  /* bytes counted in pl_server.inflight_body */
  pl_job *job;     /* our reference while a generation runs (cancelled on completion) */
  pl_gen *gen;     /* a generation request until its stream's response takes it */
  pl_conn_wait wait; /* GET /kv/snapshot waiting for a fresh frame (suspended) */
  int polls;
} pl_http_req;

/* Free the request body and give its bytes back to the in-flight budget. */
void pl_http_body_drop(pl_server *s, pl_http_req *h);

/* The name clients must use in "model" (served name, else the engine's). */
const char *pl_server_model_name(const pl_server *s);

/* Queue a response with a copy of body. */
enum MHD_Result pl_http_respond(pl_server *s, struct MHD_Connection *c, int status,
                                const char *content_type, const char *body, size_t len);
enum MHD_Result pl_http_json(pl_server *s, struct MHD_Connection *c, int status,
                             const pl_strbuf *body);
enum MHD_Result pl_http_error(pl_server *s, struct MHD_Connection *c, const pl_oai_error *e);

/* Endpoints (api_generate.c, api_tokenize.c). Called once the body is complete. */
enum MHD_Result pl_api_generate(pl_server *s, struct MHD_Connection *c, pl_http_req *h,
                                pl_oai_kind kind);
/* Called again for a request with h->gen once its suspended connection is resumed. */
enum MHD_Result pl_api_generate_continue(pl_server *s, struct MHD_Connection *c,
                                         pl_http_req *h);
void pl_api_generate_free(pl_gen *g); /* NULL ok */
enum MHD_Result pl_api_tokenize(pl_server *s, struct MHD_Connection *c, pl_http_req *h);
enum MHD_Result pl_api_detokenize(pl_server *s, struct MHD_Connection *c, pl_http_req *h);

/* A 404 naming the model when req->model is given and is not ours; 0 otherwise. */
int pl_api_check_model(pl_server *s, const pl_oai_request *req, pl_oai_error *err);
#endif
