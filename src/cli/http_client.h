/* A minimal HTTP/1.1 client on plain POSIX sockets, for the load generator.
 *   - pl_http_target: a parsed `http://host[:port][/prefix]` URL, resolved once.
 *   - pl_http_resp:   an incremental response parser (status line, headers, then the body by
 *                     Content-Length, chunked transfer encoding, or until the peer closes);
 *                     body bytes come out through a callback as they arrive, de-chunked.
 *   - pl_http_conn:   one request on one non-blocking socket, driven by the caller's poll()
 *                     loop: every request sends `Connection: close`, so a connection carries
 *                     exactly one exchange and its end is the peer's close or the body's end.
 *   - pl_http_fetch:  a small blocking exchange (GET /v1/models) built on the same pieces.
 * No TLS (https:// is refused with a clear message). Nothing here blocks except
 * pl_http_target_parse (name resolution) and pl_http_fetch. */
#ifndef PL_CLI_HTTP_CLIENT_H
#define PL_CLI_HTTP_CLIENT_H
#include <stddef.h>
#include <sys/socket.h>

typedef struct pl_http_target {
  struct sockaddr_storage addr;
  socklen_t addr_len;
  char host_header[300]; /* "host:port" for the Host header */
  char prefix[512];      /* path prefix from the URL, no trailing '/' ("" for none) */
} pl_http_target;

/* Parses and resolves `url`; 0 on success, -1 with a message in err. */
int pl_http_target_parse(const char *url, pl_http_target *t, char *err, size_t err_len);

/* ---- response parser ---------------------------------------------------------------------- */

typedef void (*pl_http_body_fn)(void *ud, const char *p, size_t n);

enum { PL_HTTP_HEAD, PL_HTTP_CHUNK_SIZE, PL_HTTP_CHUNK_DATA, PL_HTTP_CHUNK_CRLF,
       PL_HTTP_TRAILER, PL_HTTP_BODY_LEN, PL_HTTP_BODY_CLOSE, PL_HTTP_DONE };

typedef struct pl_http_resp {
  int state;               /* PL_HTTP_* */
  int status;              /* HTTP status code once the status line is read, else 0 */
  int saw_status_line;
  long long content_length; /* -1 when absent */
  int chunked;
  long long left;          /* bytes left in the current chunk / the Content-Length body */
  char line[8192];         /* header / chunk-size line being assembled */
  size_t line_len;
  char err[160];           /* protocol error, when feed returned -1 */
  pl_http_body_fn on_body;
  void *ud;
} pl_http_resp;

void pl_http_resp_init(pl_http_resp *r, pl_http_body_fn fn, void *ud);
/* 0 ok, -1 on a protocol error (message in r->err); bytes after the body's end are ignored */
int pl_http_resp_feed(pl_http_resp *r, const char *p, size_t n);
/* The peer closed: 1 when the response is complete (framed body finished, or a body that is
 * delimited by the close itself), 0 when it was cut short. */
int pl_http_resp_eof(pl_http_resp *r);

/* ---- one exchange on a non-blocking socket ------------------------------------------------ */

typedef struct pl_http_conn {
  int fd;                  /* -1 when closed */
  int connected;           /* the TCP connect completed */
  char *out;               /* the request bytes (owned) */
  size_t out_len, out_off;
  pl_http_resp resp;
} pl_http_conn;

/* Builds the request and starts a non-blocking connect. `headers` is extra header lines, each
 * ending in "\r\n" (may be NULL). Returns 0, or -1 with errno set and a message in err (EMFILE
 * and friends are worth retrying later). */
int pl_http_conn_start(pl_http_conn *c, const pl_http_target *t, const char *method,
                       const char *path, const char *headers, const char *body, size_t body_len,
                       pl_http_body_fn on_body, void *ud, char *err, size_t err_len);
/* poll() events this connection waits for */
short pl_http_conn_events(const pl_http_conn *c);
/* Handle poll()'s revents. Returns 0 to keep going, 1 when the exchange ended (the peer closed
 * or the framed body is complete; see resp state), -1 on an error (message in err). */
int pl_http_conn_io(pl_http_conn *c, short revents, char *err, size_t err_len);
void pl_http_conn_close(pl_http_conn *c);

/* Blocking exchange with a deadline: body returned NUL-terminated, freed with pl_free. 0 on success
 * (any status), -1 with a message in err. */
int pl_http_fetch(const pl_http_target *t, const char *method, const char *path,
                  const char *headers, const char *body, double timeout_s, int *status,
                  char **resp_body, size_t *resp_len, char *err, size_t err_len);
#endif
