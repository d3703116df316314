/* A chat request's messages as the engine renders them (pl_chat_msg: fields in order, each a
 * string or JSON text), parsed in place from the request body where it can be.
 *
 * A long chat is mostly message text. Parsed by jansson, each 1000-byte message costs about
 * 1.5 KB of tree (objects, hash tables, pairs) while the body is still held, and the tree is
 * still held while the text is rendered. Parsed in place, the strings stay where they are in
 * the body (unescaped and NUL-terminated there: unescaping never lengthens a string), so the
 * messages cost the body plus a field array. The in-place parser takes exactly what jansson
 * takes (strict UTF-8, no control characters, no \u0000, paired surrogates, no duplicate
 * keys) and gives up, leaving the body untouched, on anything else or on a form it leaves to
 * jansson (escaped keys, many fields); the caller then parses with jansson as before. */
#ifndef PL_SERVER_CHAT_MSGS_H
#define PL_SERVER_CHAT_MSGS_H
#include <jansson.h>
#include <stddef.h>

#include "engine/engine_access.h"

typedef struct pl_chat_msgs {
  pl_chat_msg *msgs; /* [n] */
  size_t n;
  pl_chat_field *fields; /* every message's fields (one spare slot each), owned */
  size_t n_fields, cap_fields, cur; /* slots used, allocated; the message begun last */
  char **owned; /* strings made for fields (joined content parts, JSON text), pl_malloc'd */
  size_t n_owned, cap_owned;
  char *body; /* the body whose strings the fields point into (in-place parse), owned */
} pl_chat_msgs;

/* Find the value of the top-level key "messages" in the JSON object text b[0..n): [*vs, *ve).
 * 0 when it is there once under a plain (unescaped) key; PL_EINVAL otherwise (not an object,
 * absent, twice, an escaped key that might name it, or text too broken to tell). Reads only. */
int pl_chat_msgs_find(const char *b, size_t n, size_t *vs, size_t *ve);

/* Parse the JSON array a[0..n) (the value of "messages") in place: an array of objects. String
 * values are unescaped where they lie; other values are given as their JSON text, checked with
 * jansson. 0: *out filled (its fields point into a; out->body is left NULL for the caller to
 * set). PL_EINVAL: not taken, a untouched (the caller parses with jansson). PL_ENOMEM. */
int pl_chat_msgs_parse_inplace(char *a, size_t n, pl_chat_msgs *out);

/* Start a message list of n messages with room for n_fields fields (+1 each); fields are then
 * added with pl_chat_msgs_add_field, message after message. PL_ENOMEM. */
int pl_chat_msgs_init(pl_chat_msgs *m, size_t n, size_t n_fields);
/* Begin message i (the next one); its fields follow. */
void pl_chat_msgs_begin(pl_chat_msgs *m, size_t i);
/* Add a field to the message begun last (room was made by pl_chat_msgs_init). */
void pl_chat_msgs_add_field(pl_chat_msgs *m, const char *key, const char *val, size_t len,
                            int is_json);
/* Keep s (pl_malloc'd) until the messages are freed; on failure s is freed. PL_ENOMEM. */
int pl_chat_msgs_own(pl_chat_msgs *m, char *s);
/* The field named key of a message, or NULL. */
pl_chat_field *pl_chat_msg_field(const pl_chat_msg *msg, const char *key);
void pl_chat_msgs_free(pl_chat_msgs *m); /* never allocates */
#endif
