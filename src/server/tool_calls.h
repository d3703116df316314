/* Tool calls: the model families' text formats, parsed into OpenAI tool_calls, and grammars
 * that force a call (tool_choice "required" or a named function).
 *
 *   Hermes / Qwen2.5 / Qwen3:  <tool_call>\n{"name": ..., "arguments": {...}}\n</tool_call>  (repeated)
 *   Llama 3.1 / 3.2:           {"name": ..., "parameters": {...}}  (the whole message; "; " between)
 *   Mistral:                   [TOOL_CALLS][{"name": ..., "arguments": {...}}, ...]
 *
 * Pure; any thread. */
#ifndef PL_SERVER_TOOL_CALLS_H
#define PL_SERVER_TOOL_CALLS_H
#include <jansson.h>
#include <stddef.h>

typedef enum { PL_TOOLS_HERMES = 0, PL_TOOLS_LLAMA3, PL_TOOLS_MISTRAL } pl_tool_format;

/* The format a chat template's text implies (Hermes when it says nothing we know). */
pl_tool_format pl_tool_format_detect(const char *template_text);

/* Parse a finished output. Returns the number of calls found (0: the text is plain content;
 * then *calls is NULL) and sets *calls to a new JSON array of
 * {"id", "type": "function", "function": {"name", "arguments": "<JSON text>"}} and *content to
 * the text outside the calls (pl_malloc'd, NULL when empty). A call that does not parse makes
 * the whole text content (auto semantics). PL_ENOMEM on allocation failure. */
int pl_tool_parse(pl_tool_format f, const char *text, size_t len, const char *id_seed,
                  json_t **calls, char **content);

/* GBNF forcing one call (or several when parallel) in format f to one of `tools` (the request's
 * array), or only to `name` when not NULL. NULL with err->message on a bad tool schema. */
struct pl_gconv_error;
char *pl_tool_grammar(pl_tool_format f, const json_t *tools, const char *name, int parallel,
                      struct pl_gconv_error *err);
#endif
