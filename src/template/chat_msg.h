/* A chat message as plain C: its fields in order, each a string or the JSON text of another
 * value (null content, tool_calls, ...). What a caller hands the chat template instead of a
 * JSON tree: a server can point these into the request body, and the engine's API carries no
 * JSON library's types. No dependencies. */
#ifndef PL_TEMPLATE_CHAT_MSG_H
#define PL_TEMPLATE_CHAT_MSG_H
#include <stddef.h>

typedef struct pl_chat_field {
  const char *key; /* NUL-terminated */
  const char *val; /* a string: NUL-terminated at val[len]; JSON text: len bytes */
  size_t len;
  int is_json; /* 0: val is the string; 1: val is the JSON text of any value */
} pl_chat_field;

typedef struct pl_chat_msg {
  const pl_chat_field *fields;
  size_t n;
} pl_chat_msg;
#endif
