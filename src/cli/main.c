/* pagellm — entry point: dispatch to the subcommand. */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/engine_opts.h"
#include "pagellm.h"

/* Commands are weak so a partial build (one layer missing) still links; every release
 * build has them all. */
#pragma weak pl_cmd_info
#pragma weak pl_cmd_generate
#pragma weak pl_cmd_chat
#pragma weak pl_cmd_serve
#pragma weak pl_cmd_bench
#pragma weak pl_cmd_tokenize
#pragma weak pl_cmd_detokenize
#pragma weak pl_cmd_template
#pragma weak pl_cmd_model_gen

typedef struct {
  const char *name;
  int (*fn)(int, char **);
  const char *help;
} command;

static void usage(const command *cmds, int n) {
  fprintf(stderr, "usage: pagellm <command> [options]\n\ncommands:\n");
  for (int i = 0; i < n; i++)
    if (cmds[i].fn)
      fprintf(stderr, "  %-11s %s\n", cmds[i].name, cmds[i].help);
  fprintf(stderr, "\n`pagellm <command> --help` describes a command's options.\n");
}

int main(int argc, char **argv) {
  const command cmds[] = {
      {"serve", pl_cmd_serve, "OpenAI-compatible HTTP server"},
      {"generate", pl_cmd_generate, "generate text or token ids from a prompt"},
      {"chat", pl_cmd_chat, "interactive chat in the terminal (or from a pipe)"},
      {"bench", pl_cmd_bench, "benchmarks: decode | throughput | serve"},
      {"info", pl_cmd_info, "describe a model file"},
      {"tokenize", pl_cmd_tokenize, "print the token ids of a text"},
      {"detokenize", pl_cmd_detokenize, "print the text of token ids"},
      {"template", pl_cmd_template, "render a chat template"},
      {"model-gen", pl_cmd_model_gen, "write a random-weight model (tests, benchmarks)"},
  };
  int n = (int)(sizeof cmds / sizeof *cmds);
  if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
    usage(cmds, n);
    return argc < 2 ? 2 : 0;
  }
  for (int i = 0; i < n; i++)
    if (!strcmp(argv[1], cmds[i].name) && cmds[i].fn) {
      int rc = cmds[i].fn(argc - 1, argv + 1);
      pl_engine_opts_cleanup(); /* the --chat-template text, if one was read */
      return rc;
    }
  fprintf(stderr, "pagellm: unknown command '%s'\n", argv[1]);
  usage(cmds, n);
  return 2;
}
