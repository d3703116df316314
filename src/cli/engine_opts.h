/* Engine options shared by the commands that run a model (`serve`, `bench`, `generate`, ...):
 * -m MODEL plus every pl_engine_params knob, parsed the same way everywhere.
 *
 * Usage: pl_engine_params_default(&ep); in the argv loop call
 * pl_engine_opts_parse(&ep, argc, argv, &i) first: 1 = it was an engine option (i advanced
 * past its value), 0 = not an engine option, -1 = bad value (already printed). Then call
 * pl_engine_opts_model(&ep) (the default model when -m was not given).
 *
 * --chat-template FILE is read at parse time; ep.chat_template points at the text, which
 * stays valid until pl_engine_opts_cleanup() (process lifetime otherwise). Per-request
 * knobs (--seed, sampling) belong to each command, not here. */
#ifndef PL_CLI_ENGINE_OPTS_H
#define PL_CLI_ENGINE_OPTS_H
#include <stddef.h>

#include "pagellm.h"

/* The bundled model used when -m is not given, relative to the binary's folder (and its
 * parent) or the source tree; an absolute path is used as is. $PAGELLM_MODEL overrides it. */
#ifndef PL_DEFAULT_MODEL
#define PL_DEFAULT_MODEL "models/pagellm-default.gguf"
#endif

int pl_engine_opts_parse(pl_engine_params *ep, int argc, char **argv, int *i);
/* Fill ep->model_path when -m was not given and return it (NULL: none): with --load-format
 * dummy "dummy:CONFIG" (a display name; the engine reads model_config), else the default
 * model. The string is static: not thread-safe. */
const char *pl_engine_opts_model(pl_engine_params *ep);
/* Help lines for the options above (static text). */
const char *pl_engine_opts_help(void);
/* The default model's path, or NULL when not found. Static buffer: not thread-safe. */
const char *pl_engine_opts_default_model(void);
/* Free the --chat-template text (ep.chat_template becomes dangling). */
void pl_engine_opts_cleanup(void);
#endif
