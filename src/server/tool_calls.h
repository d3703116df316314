/* Tool calls: the model families' text formats, parsed into OpenAI tool_calls, and grammars
 * that force a call (tool_choice "required" or a named function).
 *
 *   Hermes / Qwen2.5 / Qwen3:  <tool_call>\n{"name": ..., "arguments": {...}}\n</tool_call>  (repeated)
 *   Llama 3.1 / 3.2:           {"name": ..., "parameters": {...}}  (the whole message; "; " between)
 *   Mistral (tokenizer <= v7): [TOOL_CALLS][{"name": ..., "arguments": {...}}, ...]
 *   Mistral (v11+):            [TOOL_CALLS]name[ARGS]{...}  (repeated; v13 puts [CALL_ID]id
 *                              before [ARGS], ignored: the ids are ours)
 *
 * Parsing is in tool_parse.c, the formats and grammars in tool_calls.c.
 * Pure; any thread. */
#ifndef PL_SERVER_TOOL_CALLS_H
#define PL_SERVER_TOOL_CALLS_H
#include <jansson.h>
#include <stddef.h>

/* MISTRAL: [TOOL_CALLS][{"name": ..., "arguments": {...}}, ...] (v3 templates);
 * MISTRAL_V11: [TOOL_CALLS]name[ARGS]{...} per call (v11+ templates: Mistral Small 3.x,
 * Devstral). The parsers read both forms for either; the forcing grammar writes the template's. */
typedef enum {
  PL_TOOLS_HERMES = 0,
  PL_TOOLS_LLAMA3,
  PL_TOOLS_MISTRAL,
  PL_TOOLS_MISTRAL_V11
} pl_tool_format;

/* The format a chat template's text implies (Hermes when it says nothing we know). */
pl_tool_format pl_tool_format_detect(const char *template_text);

/* Incremental parser of one choice's output (streaming and not: the whole text is one feed).
 * Text is content until a call's start marker; from there the bytes are held until the call
 * is certain, which is when
 *   - the call object has shown {"name": "<string>", "arguments" | "parameters": {  (other
 *     keys with JSON values may come first; the name must be a declared tool), or
 *   - Mistral v11+: [TOOL_CALLS]name[ARGS]{  with a declared name.
 * Then the call is committed: a first delta {"index", "id", "type": "function", "function":
 * {"name", "arguments": ""}} goes out and the arguments follow as the model writes them, raw
 * JSON text (never re-serialized), in deltas {"index", "function": {"arguments": "<next
 * bytes>"}}; the rest of the call object after the arguments is skipped. The non-stream
 * `arguments` is the same raw text, so the streamed fragments concatenate to it exactly. A
 * committed call stays a call: output that ends inside its arguments leaves them cut short
 * (finish_reason "length" says so). Nothing held is ever sent, so text that is not a call
 * (no marker, bad JSON, an undeclared name, no arguments object) goes back to content as
 * the bytes it held, the marker verbatim. Objects that cannot be committed early ("name"
 * after the arguments, or arguments given as a JSON string) are held whole and checked at
 * their closing brace; such a call arrives as one delta (arguments: the raw object text, or
 * the string's value). Whitespace around calls is not content (between two pieces of text,
 * the whitespace before the call is kept). A call still uncommitted when the output ends is
 * content.
 * Markers: Hermes "<tool_call>" anywhere (then optional "</tool_call>" after the object);
 * Mistral "[TOOL_CALLS]" then an array of call objects, one object, or name[ARGS]; Llama 3
 * only at the start of the output ("<|python_tag|>" optional), calls separated by ";".
 * Each byte is read once (a rejected call's bytes are read again, up to 64 KiB), so a feed
 * costs about its own length. Argument bytes are sent as valid UTF-8: a character cut by a
 * feed boundary waits for the next feed; invalid bytes become U+FFFD. */
typedef struct pl_tool_parser pl_tool_parser;

/* What one feed produced: content bytes and a JSON array of OpenAI tool_calls deltas (a
 * call's first, {"index", "id", "type": "function", "function": {"name", "arguments"}}, or
 * a later one, {"index", "function": {"arguments"}}; at most one per call per feed), or NULL
 * when there is none. The caller frees with pl_tool_out_free. */
typedef struct pl_tool_out {
  char *content;  /* pl_malloc'd, NUL-terminated, NULL when none */
  size_t content_len;
  json_t *calls;
} pl_tool_out;

/* id_seed makes the call ids ("call_<hash of seed><index>"). tools: the request's array (the
 * names a call may have; a reference is kept), NULL for any name. PL_ENOMEM. */
int pl_tool_parser_create(pl_tool_format f, const char *id_seed, const json_t *tools,
                          pl_tool_parser **out);
void pl_tool_parser_free(pl_tool_parser *p); /* NULL ok */
/* Feed the next len bytes; final = the output ends here (held text is resolved). Fills *out
 * (cleared first). PL_ENOMEM. */
int pl_tool_parser_feed(pl_tool_parser *p, const char *text, size_t len, int final,
                        pl_tool_out *out);
int pl_tool_parser_ncalls(const pl_tool_parser *p);
/* Every call so far, {"id", "type", "function": {"name", "arguments"}} (borrowed); a call
 * whose arguments are still streaming has them once they close or the output ends. */
const json_t *pl_tool_parser_calls(const pl_tool_parser *p);
void pl_tool_out_free(pl_tool_out *o);

/* A finished output in one go. Returns the number of calls found (0: no call; then *calls is
 * NULL) and sets *calls to a new JSON array of calls as above and *content to the content
 * (pl_malloc'd, NULL when empty). PL_ENOMEM on allocation failure. */
int pl_tool_parse(pl_tool_format f, const char *text, size_t len, const char *id_seed,
                  const json_t *tools, json_t **calls, char **content);

/* GBNF forcing one call (or several when parallel) in format f to one of `tools` (the request's
 * array), or only to `name` when not NULL. NULL with err->message on a bad tool schema. */
struct pl_gconv_error;
char *pl_tool_grammar(pl_tool_format f, const json_t *tools, const char *name, int parallel,
                      struct pl_gconv_error *err);
#endif
