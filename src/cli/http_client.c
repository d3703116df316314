/* Minimal HTTP/1.1 client: see http_client.h. One request per connection (Connection: close),
 * so there is no keep-alive bookkeeping and a response may legally end at the peer's close. */
#include "cli/http_client.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "util/alloc.h"
#include "util/array.h"

/* ---- URL ---------------------------------------------------------------------------------- */

int pl_http_target_parse(const char *url, pl_http_target *t, char *err, size_t err_len) {
  memset(t, 0, sizeof *t);
  const char *p = url;
  if (!strncasecmp(p, "https://", 8)) {
    snprintf(err, err_len, "'%s': https is not supported (plain http only)", url);
    return -1;
  }
  if (!strncasecmp(p, "http://", 7))
    p += 7;
  else if (strstr(p, "://")) {
    snprintf(err, err_len, "'%s': only http:// URLs are supported", url);
    return -1;
  }
  char host[256], port[16] = "80";
  const char *host_end;
  if (*p == '[') { /* [IPv6] */
    const char *rb = strchr(p, ']');
    if (!rb || (size_t)(rb - p - 1) >= sizeof host) {
      snprintf(err, err_len, "'%s': bad IPv6 host", url);
      return -1;
    }
    memcpy(host, p + 1, (size_t)(rb - p - 1));
    host[rb - p - 1] = 0;
    host_end = rb + 1;
  } else {
    host_end = p + strcspn(p, ":/");
    if (host_end == p || (size_t)(host_end - p) >= sizeof host) {
      snprintf(err, err_len, "'%s': missing or too long host", url);
      return -1;
    }
    memcpy(host, p, (size_t)(host_end - p));
    host[host_end - p] = 0;
  }
  const char *path = host_end;
  if (*host_end == ':') {
    size_t n = strspn(host_end + 1, "0123456789");
    if (n == 0 || n >= sizeof port || atoi(host_end + 1) > 65535) {
      snprintf(err, err_len, "'%s': bad port", url);
      return -1;
    }
    memcpy(port, host_end + 1, n);
    port[n] = 0;
    path = host_end + 1 + n;
  }
  if (*path && *path != '/') {
    snprintf(err, err_len, "'%s': unexpected '%c' after the host", url, *path);
    return -1;
  }
  size_t plen = strlen(path);
  while (plen && path[plen - 1] == '/')
    plen--;
  if (plen >= sizeof t->prefix) {
    snprintf(err, err_len, "'%s': path too long", url);
    return -1;
  }
  memcpy(t->prefix, path, plen);
  t->prefix[plen] = 0;
  snprintf(t->host_header, sizeof t->host_header, strchr(host, ':') ? "[%s]:%s" : "%s:%s", host,
           port);

  struct addrinfo hints = {0}, *res = NULL;
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  int rc = getaddrinfo(host, port, &hints, &res);
  if (rc || !res) {
    snprintf(err, err_len, "cannot resolve '%s': %s", host, rc ? gai_strerror(rc) : "no address");
    return -1;
  }
  memcpy(&t->addr, res->ai_addr, res->ai_addrlen);
  t->addr_len = res->ai_addrlen;
  freeaddrinfo(res);
  return 0;
}

/* ---- response parser ---------------------------------------------------------------------- */

void pl_http_resp_init(pl_http_resp *r, pl_http_body_fn fn, void *ud) {
  memset(r, 0, sizeof *r);
  r->state = PL_HTTP_HEAD;
  r->content_length = -1;
  r->on_body = fn;
  r->ud = ud;
}

static int resp_fail(pl_http_resp *r, const char *msg) {
  snprintf(r->err, sizeof r->err, "%s", msg);
  return -1;
}

/* The headers ended: choose how the body is framed (RFC 9112 §6.3, the cases a client meets). */
static void resp_body_start(pl_http_resp *r) {
  if (r->status == 204 || r->status == 304)
    r->state = PL_HTTP_DONE;
  else if (r->chunked)
    r->state = PL_HTTP_CHUNK_SIZE;
  else if (r->content_length >= 0) {
    r->left = r->content_length;
    r->state = r->left ? PL_HTTP_BODY_LEN : PL_HTTP_DONE;
  } else
    r->state = PL_HTTP_BODY_CLOSE;
}

static int resp_line(pl_http_resp *r, char *l, size_t n) {
  switch (r->state) {
  case PL_HTTP_HEAD:
    if (!r->saw_status_line) {
      if (n < 12 || strncmp(l, "HTTP/1.", 7) || l[8] != ' ')
        return resp_fail(r, "not an HTTP/1.x response");
      r->status = atoi(l + 9);
      if (r->status < 100 || r->status > 999)
        return resp_fail(r, "bad HTTP status line");
      r->saw_status_line = 1;
    } else if (n == 0) {
      if (r->status < 200) { /* 1xx interim response: the real one follows */
        r->saw_status_line = 0;
        r->content_length = -1;
        r->chunked = 0;
      } else
        resp_body_start(r);
    } else {
      char *colon = memchr(l, ':', n);
      if (!colon)
        return resp_fail(r, "malformed header line");
      *colon = 0;
      const char *v = colon + 1;
      while (*v == ' ' || *v == '\t')
        v++;
      if (!strcasecmp(l, "content-length")) {
        char *end;
        long long cl = strtoll(v, &end, 10);
        if (end == v || cl < 0)
          return resp_fail(r, "bad Content-Length");
        r->content_length = cl;
      } else if (!strcasecmp(l, "transfer-encoding")) {
        for (const char *q = v; *q; q++)
          if (!strncasecmp(q, "chunked", 7))
            r->chunked = 1;
      }
    }
    return 0;
  case PL_HTTP_CHUNK_SIZE: {
    char *end;
    errno = 0;
    long long sz = strtoll(l, &end, 16);
    if (end == l || errno || sz < 0 || (*end && *end != ';' && *end != ' ' && *end != '\t'))
      return resp_fail(r, "bad chunk size line");
    if (sz == 0)
      r->state = PL_HTTP_TRAILER;
    else {
      r->left = sz;
      r->state = PL_HTTP_CHUNK_DATA;
    }
    return 0;
  }
  case PL_HTTP_CHUNK_CRLF:
    if (n)
      return resp_fail(r, "chunk data longer than its size");
    r->state = PL_HTTP_CHUNK_SIZE;
    return 0;
  case PL_HTTP_TRAILER:
    if (n == 0)
      r->state = PL_HTTP_DONE;
    return 0;
  default:
    return 0;
  }
}

int pl_http_resp_feed(pl_http_resp *r, const char *p, size_t n) {
  size_t i = 0;
  while (i < n) {
    switch (r->state) {
    case PL_HTTP_HEAD:
    case PL_HTTP_CHUNK_SIZE:
    case PL_HTTP_CHUNK_CRLF:
    case PL_HTTP_TRAILER: {
      const char *nl = memchr(p + i, '\n', n - i);
      size_t part = nl ? (size_t)(nl - (p + i)) : n - i;
      if (r->line_len + part >= sizeof r->line)
        return resp_fail(r, "header or chunk line too long");
      memcpy(r->line + r->line_len, p + i, part);
      r->line_len += part;
      i += part;
      if (!nl)
        return 0;
      i++; /* the LF */
      size_t len = r->line_len;
      if (len && r->line[len - 1] == '\r')
        len--;
      r->line[len] = 0;
      r->line_len = 0;
      if (resp_line(r, r->line, len))
        return -1;
      break;
    }
    case PL_HTTP_CHUNK_DATA:
    case PL_HTTP_BODY_LEN: {
      size_t take = n - i;
      if ((long long)take > r->left)
        take = (size_t)r->left;
      if (r->on_body)
        r->on_body(r->ud, p + i, take);
      i += take;
      r->left -= (long long)take;
      if (r->left == 0)
        r->state = r->state == PL_HTTP_CHUNK_DATA ? PL_HTTP_CHUNK_CRLF : PL_HTTP_DONE;
      break;
    }
    case PL_HTTP_BODY_CLOSE:
      if (r->on_body)
        r->on_body(r->ud, p + i, n - i);
      return 0;
    default: /* DONE: ignore anything after the body */
      return 0;
    }
  }
  return 0;
}

int pl_http_resp_eof(pl_http_resp *r) {
  return r->state == PL_HTTP_DONE || r->state == PL_HTTP_BODY_CLOSE;
}

/* ---- one exchange ------------------------------------------------------------------------- */

int pl_http_conn_start(pl_http_conn *c, const pl_http_target *t, const char *method,
                       const char *path, const char *headers, const char *body, size_t body_len,
                       pl_http_body_fn on_body, void *ud, char *err, size_t err_len) {
  memset(c, 0, sizeof *c);
  c->fd = -1;
  pl_http_resp_init(&c->resp, on_body, ud);
  char head[2048];
  int hn;
  if (body)
    hn = snprintf(head, sizeof head,
                  "%s %s%s HTTP/1.1\r\nHost: %s\r\nUser-Agent: pagellm-bench\r\n"
                  "Connection: close\r\n%sContent-Length: %zu\r\n\r\n",
                  method, t->prefix, path, t->host_header, headers ? headers : "", body_len);
  else
    hn = snprintf(head, sizeof head,
                  "%s %s%s HTTP/1.1\r\nHost: %s\r\nUser-Agent: pagellm-bench\r\n"
                  "Connection: close\r\n%s\r\n",
                  method, t->prefix, path, t->host_header, headers ? headers : "");
  if (hn < 0 || (size_t)hn >= sizeof head) {
    snprintf(err, err_len, "request head too long");
    errno = EINVAL;
    return -1;
  }
  c->out_len = (size_t)hn + (body ? body_len : 0);
  c->out = malloc(c->out_len);
  if (!c->out) {
    snprintf(err, err_len, "out of memory");
    errno = ENOMEM;
    return -1;
  }
  memcpy(c->out, head, (size_t)hn);
  if (body)
    memcpy(c->out + hn, body, body_len);

  c->fd = socket(t->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (c->fd < 0) {
    int e = errno;
    snprintf(err, err_len, "socket: %s", strerror(e));
    pl_http_conn_close(c);
    errno = e;
    return -1;
  }
  if (connect(c->fd, (const struct sockaddr *)&t->addr, t->addr_len) == 0)
    c->connected = 1;
  else if (errno != EINPROGRESS) {
    int e = errno;
    snprintf(err, err_len, "connect to %s: %s", t->host_header, strerror(e));
    pl_http_conn_close(c);
    errno = e;
    return -1;
  }
  return 0;
}

short pl_http_conn_events(const pl_http_conn *c) {
  return (!c->connected || c->out_off < c->out_len) ? POLLOUT : POLLIN;
}

int pl_http_conn_io(pl_http_conn *c, short revents, char *err, size_t err_len) {
  if (!c->connected) {
    if (!(revents & (POLLOUT | POLLERR | POLLHUP)))
      return 0;
    int e = 0;
    socklen_t el = sizeof e;
    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &e, &el) < 0)
      e = errno;
    if (e) {
      snprintf(err, err_len, "connect: %s", strerror(e));
      return -1;
    }
    c->connected = 1;
  }
  while (c->out_off < c->out_len) {
    ssize_t n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);
    if (n > 0) {
      c->out_off += (size_t)n;
      continue;
    }
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
      return 0;
    /* The server may answer (413, 503, ...) and close before reading everything: stop
     * sending and read what it said; the read side reports the error if there is nothing. */
    if (n < 0 && (errno == EPIPE || errno == ECONNRESET)) {
      c->out_off = c->out_len;
      break;
    }
    snprintf(err, err_len, "send: %s", n < 0 ? strerror(errno) : "no progress");
    return -1;
  }
  if (!(revents & (POLLIN | POLLHUP | POLLERR)) && c->out_off == c->out_len && revents & POLLOUT)
    return 0; /* just finished sending; wait for the answer */
  char buf[65536];
  for (int reads = 0; reads < 4; reads++) { /* bounded, so one busy stream cannot starve others */
    ssize_t n = recv(c->fd, buf, sizeof buf, 0);
    if (n > 0) {
      if (pl_http_resp_feed(&c->resp, buf, (size_t)n)) {
        snprintf(err, err_len, "bad response: %s", c->resp.err);
        return -1;
      }
      if (c->resp.state == PL_HTTP_DONE)
        return 1;
      continue;
    }
    if (n == 0)
      return pl_http_resp_eof(&c->resp) ? 1 : 2;
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
      return 0;
    if (errno == ECONNRESET && c->resp.saw_status_line)
      return 2; /* cut short after the answer began */
    snprintf(err, err_len, "recv: %s", strerror(errno));
    return -1;
  }
  return 0;
}

void pl_http_conn_close(pl_http_conn *c) {
  if (c->fd >= 0)
    close(c->fd);
  c->fd = -1;
  free(c->out);
  c->out = NULL;
}

/* ---- blocking convenience ----------------------------------------------------------------- */

typedef struct {
  char *p;
  size_t n, cap;
  int overflow;
} fetch_buf;

static void fetch_body(void *ud, const char *p, size_t n) {
  fetch_buf *b = ud;
  if (b->overflow || b->n + n + 1 > (16u << 20)) {
    b->overflow = 1;
    return;
  }
  if (pl_array_grow(&b->p, &b->cap, b->n + n + 1, 1, 4096) < 0) {
    b->overflow = 1;
    return;
  }
  memcpy(b->p + b->n, p, n);
  b->n += n;
  b->p[b->n] = 0;
}

static double mono_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

int pl_http_fetch(const pl_http_target *t, const char *method, const char *path,
                  const char *headers, const char *body, double timeout_s, int *status,
                  char **resp_body, size_t *resp_len, char *err, size_t err_len) {
  fetch_buf b = {0};
  pl_http_conn c;
  *resp_body = NULL;
  *resp_len = 0;
  if (pl_http_conn_start(&c, t, method, path, headers, body, body ? strlen(body) : 0, fetch_body,
                         &b, err, err_len))
    return -1;
  double deadline = mono_s() + timeout_s;
  int rc = 0;
  while (rc == 0) {
    double left = deadline - mono_s();
    if (left <= 0) {
      snprintf(err, err_len, "%s %s: no answer within %.0f s", method, path, timeout_s);
      rc = -1;
      break;
    }
    struct pollfd pfd = {c.fd, pl_http_conn_events(&c), 0};
    int pr = poll(&pfd, 1, (int)(left * 1000) + 1);
    if (pr < 0 && errno != EINTR) {
      snprintf(err, err_len, "poll: %s", strerror(errno));
      rc = -1;
    } else if (pr > 0)
      rc = pl_http_conn_io(&c, pfd.revents, err, err_len);
  }
  if (rc == 2) {
    snprintf(err, err_len, "%s %s: the server closed the connection mid-response", method, path);
    rc = -1;
  }
  *status = c.resp.status;
  pl_http_conn_close(&c);
  if (rc < 0 || b.overflow) {
    if (b.overflow && rc >= 0)
      snprintf(err, err_len, "%s %s: response too large", method, path);
    pl_free(b.p);
    return -1;
  }
  *resp_body = b.p ? b.p : pl_calloc(1, 1);
  *resp_len = b.n;
  return 0;
}
