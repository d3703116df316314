/* Web UI routes: embedded assets and the KV snapshot endpoint (see ui.h). */
#include "server/ui.h"

#include <string.h>

#include "server/kvmap.h"
#include "server/openai_resp.h"
#include "server/ui_assets.h"
#include "util/error.h"

static const char CSP[] =
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

int pl_ui_is_page_path(const char *url) {
  return !strcmp(url, "/") || !strcmp(url, "/index.html") || !strncmp(url, "/ui/", 4);
}

static enum MHD_Result not_found(pl_server *s, struct MHD_Connection *c, const char *url) {
  pl_oai_error e;
  pl_oai_errorf(&e, 404, NULL, "Not Found: %s", url);
  e.code = "not_found";
  return pl_http_error(s, c, &e);
}

enum MHD_Result pl_ui_serve_page(pl_server *s, struct MHD_Connection *c, const char *url) {
  const char *want = strncmp(url, "/ui/", 4) == 0 ? url : "/ui/index.html";
  const pl_ui_asset *a = NULL;
  for (int i = 0; i < pl_ui_num_assets; i++)
    if (!strcmp(pl_ui_assets[i].path, want))
      a = &pl_ui_assets[i];
  if (!a)
    return not_found(s, c, url);
  struct MHD_Response *r =
      MHD_create_response_from_buffer(a->len, (void *)a->data, MHD_RESPMEM_PERSISTENT);
  if (!r)
    return MHD_NO;
  MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, a->content_type);
  MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
  MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
  MHD_add_response_header(r, "Referrer-Policy", "no-referrer");
  MHD_add_response_header(r, "Content-Security-Policy", CSP);
  enum MHD_Result ok = MHD_queue_response(c, MHD_HTTP_OK, r);
  MHD_destroy_response(r);
  pl_srv_metrics_http(s->metrics, 200);
  return ok;
}

/* ?name=0 turns a part off; anything else (or absent) keeps it. */
static int flag(struct MHD_Connection *c, const char *name) {
  const char *v = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, name);
  return !(v && (!strcmp(v, "0") || !strcmp(v, "false")));
}

/* A stale frame is renewed by the engine thread within ~100 ms of being watched: ask again
 * that often, at most 3 times, with the connection suspended (no thread waits). */
enum { KV_POLL_MS = 100, KV_POLLS = 3 };

enum MHD_Result pl_ui_serve_kv(pl_server *s, struct MHD_Connection *c, pl_http_req *h) {
  int why = h->wait.reason;
  h->wait.reason = PL_CONN_NONE;
  if (why == PL_CONN_CLOSED)
    return MHD_NO;
  pl_srv_kvmap *m = s->kvmap;
  if (!pl_srv_kvmap_fresh(m) && h->polls < KV_POLLS) {
    h->polls++;
    pl_conn_waiter_suspend(s->waiter, &h->wait, c, -1, -1, KV_POLL_MS);
    return MHD_YES;
  }
  pl_srv_kvmap_opts o = {.blocks = flag(c, "blocks"), .tables = flag(c, "tables"),
                         .history = flag(c, "history")};
  pl_strbuf b = {0};
  int rc = pl_srv_kvmap_render(m, &o, &b);
  if (rc < 0) {
    pl_strbuf_free(&b);
    pl_oai_error e;
    pl_oai_errorf(&e, rc == PL_ENOTFOUND ? 503 : 500, NULL, "%s", pl_last_error());
    return pl_http_error(s, c, &e);
  }
  struct MHD_Response *r =
      MHD_create_response_from_buffer(b.len, b.data ? b.data : (char *)"", MHD_RESPMEM_MUST_COPY);
  pl_strbuf_free(&b);
  if (!r)
    return MHD_NO;
  MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
  MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
  enum MHD_Result ok = MHD_queue_response(c, MHD_HTTP_OK, r);
  MHD_destroy_response(r);
  pl_srv_metrics_http(s->metrics, 200);
  return ok;
}
