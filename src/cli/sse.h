/* Incremental Server-Sent Events parser (the client side of `text/event-stream`).
 * Bytes go in in arbitrary pieces (a TCP read may split a line or a CRLF anywhere); each
 * complete event's `data` (several `data:` lines joined with '\n', as the spec says) comes out
 * through the callback when its terminating blank line arrives. Comment lines (": keep-alive")
 * and other fields (event:, id:, retry:) are ignored. Lines end in LF, CRLF or CR.
 * Invariant: `line` never holds a line terminator; `cr` remembers a CR that ended the last
 * feed, so a LF starting the next feed is not read as an empty line. */
#ifndef PL_CLI_SSE_H
#define PL_CLI_SSE_H
#include <stddef.h>

/* data is NUL-terminated (len excludes the NUL) and valid only during the call */
typedef void (*pl_sse_event_fn)(void *ud, const char *data, size_t len);

typedef struct pl_sse {
  char *line;            /* the current, unfinished line */
  size_t line_len, line_cap;
  char *data;            /* the data of the event being assembled */
  size_t data_len, data_cap;
  int has_data;          /* at least one data: line in this event */
  int cr;                /* the previous byte was a CR */
  size_t max_line;       /* longest line accepted (bytes) */
  pl_sse_event_fn on_event;
  void *ud;
} pl_sse;

void pl_sse_init(pl_sse *s, pl_sse_event_fn fn, void *ud);
/* 0 on success; -1 when a line exceeds max_line or memory runs out (the stream is unusable) */
int pl_sse_feed(pl_sse *s, const char *p, size_t n);
void pl_sse_free(pl_sse *s);
#endif
