/* Stop strings on a text stream (OpenAI `stop`): fed the detokenizer's output chunk by chunk,
 * it finds stop strings even when they straddle chunks (tokens), never emits any byte of the
 * stop string, and holds back only the shortest tail that could still grow into a stop.
 *
 * Semantics: after each feed, if any stop string now occurs in (held text + new text), the
 * stream stops at the occurrence that starts earliest (ties: the longest stop string);
 * everything before it is emitted and everything from it on is dropped. Otherwise the held
 * tail is the longest suffix that is a proper prefix of some stop string, and the rest is
 * emitted. At the end of generation, flush() releases the held tail. With valid UTF-8 input
 * and stop strings, every emitted chunk ends on a character boundary.
 *
 * Memory: init copies the stop strings; feed grows one buffer to the largest chunk seen (the
 * detokenizer's chunks are bounded, so it stops growing). Not thread-safe; one per sequence.
 */
#ifndef PL_MODEL_STOP_MATCHER_H
#define PL_MODEL_STOP_MATCHER_H
#include <stddef.h>

typedef struct pl_stop_matcher {
  char **stops;    /* [n] copies (empty strings dropped) */
  size_t *lens;
  int *index;      /* [n] position in the caller's list */
  int n;
  size_t max_len;
  char *buf;       /* held tail (at buf + off), then the text being examined */
  size_t held, off, cap;
  size_t emitted;  /* bytes emitted so far (stream offset of the held tail) */
  int stopped;     /* index of the stop string hit, -1 while running */
} pl_stop_matcher;

typedef struct pl_stop_result {
  const char *text; /* bytes to emit now; valid until the next call on the matcher */
  size_t len;
  int stop;         /* index (in the caller's list) of the stop string hit now, or -1 */
  size_t stop_at;   /* when stop >= 0: stream offset where the stop string began */
} pl_stop_result;

/* Copies stops[0..n) (NULL or empty entries are ignored; n = 0 is a pass-through).
 * Errors: PL_ENOMEM, PL_EINVAL. */
int pl_stop_matcher_init(pl_stop_matcher *m, const char *const *stops, int n);
void pl_stop_matcher_free(pl_stop_matcher *m); /* zeroed struct ok */

/* Examine the next chunk. After a stop has been hit, further feeds emit nothing.
 * Errors: PL_ENOMEM (nothing consumed). */
int pl_stop_matcher_feed(pl_stop_matcher *m, const char *text, size_t len, pl_stop_result *r);

/* End of stream without a stop: emit the held tail. */
void pl_stop_matcher_flush(pl_stop_matcher *m, pl_stop_result *r);

/* Bytes currently held back. */
size_t pl_stop_matcher_held(const pl_stop_matcher *m);
#endif
