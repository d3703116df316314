/* Parsing JSON with jansson so that running out of memory is told apart from bad input.
 * jansson reports a failed allocation inside its lexer as a syntax error at times ("(line -1,
 * column -1)"), which would turn our failure into the client's 400. */
#ifndef PL_SERVER_JSON_GUARD_H
#define PL_SERVER_JSON_GUARD_H
#include <jansson.h>
#include <stddef.h>

/* Parse len bytes of buf with jansson's flags. 0 and *out set (a new reference); PL_EINVAL
 * when the text is not valid JSON (*jerr says why; NULL ok); PL_ENOMEM when an allocation
 * failed during the parse (jansson's through util/alloc.h, or its own out-of-memory code),
 * whatever jansson said. *out is NULL on failure. */
int pl_json_loadb(const char *buf, size_t len, size_t flags, json_t **out, json_error_t *jerr);
/* pl_json_loadb of buf with its bytes [from, to) read as `with` instead (the rest of a chat
 * body around its messages, which are parsed elsewhere). Positions in *jerr are those of the
 * text read. Same returns. */
int pl_json_loadb_replacing(const char *buf, size_t len, size_t from, size_t to, const char *with,
                            size_t flags, json_t **out, json_error_t *jerr);
#endif
