/* The web UI's files, embedded at build time (cmake/embed_ui.cmake writes the table from
 * src/server/ui/), so the server needs nothing on disk and nothing from the network. */
#ifndef PL_SERVER_UI_ASSETS_H
#define PL_SERVER_UI_ASSETS_H
#include <stddef.h>

typedef struct pl_ui_asset {
  const char *path;          /* "/ui/app.js" */
  const char *content_type;  /* "text/javascript; charset=utf-8" */
  const unsigned char *data; /* [len] (NUL after the end) */
  size_t len;
} pl_ui_asset;

extern const pl_ui_asset pl_ui_assets[];
extern const int pl_ui_num_assets;
#endif
