/* The web UI's routes (README: "Web UI"):
 *   GET /, /index.html   the page (from the embedded assets; see ui_assets.h)
 *   GET /ui/NAME         its scripts, styles and icon
 *   GET /kv/snapshot     the KV map's JSON (server/kvmap.h); ?blocks=0, ?tables=0 and
 *                        ?history=0 leave those parts out
 * The page is public (it holds no data; it asks for the API key itself); /kv/snapshot needs
 * the API key when one is set. Pages are sent with a Content-Security-Policy that allows
 * only this origin's scripts and styles, so even a rendering bug cannot run injected code. */
#ifndef PL_SERVER_UI_H
#define PL_SERVER_UI_H
#include "server/server_impl.h"

/* 1 when url is one of the page's paths ("/", "/index.html", "/ui/NAME"). */
int pl_ui_is_page_path(const char *url);
enum MHD_Result pl_ui_serve_page(pl_server *s, struct MHD_Connection *c, const char *url);
/* Called again after each suspension while the published frame is stale (h->wait). */
enum MHD_Result pl_ui_serve_kv(pl_server *s, struct MHD_Connection *c, pl_http_req *h);
#endif
