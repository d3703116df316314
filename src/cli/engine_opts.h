/* Engine options shared by serve, generate, chat and bench: -m/--model, --threads,
 * --kv-cache-memory, --max-model-len, --block-size, --max-num-seqs, --max-num-batched-tokens,
 * --max-waiting, --kv-alloc paged|static, --no-prefix-caching, --chat-template FILE, --seed.
 * (Written by the lead; the server may extend it.) */
#ifndef PL_CLI_ENGINE_OPTS_H
#define PL_CLI_ENGINE_OPTS_H
#include "pagellm.h"

/* If argv[*i] is an engine option, parse it (and its value, advancing *i) into p and return
 * 1; return 0 if it is not one; print a clear error and return -1 on a bad value. Strings
 * point into argv, except the chat template (file contents, malloc'd, kept for the process). */
int pl_engine_opts_parse(pl_engine_params *p, int argc, char **argv, int *i);
/* Help text for those options. */
const char *pl_engine_opts_help(void);
#endif
