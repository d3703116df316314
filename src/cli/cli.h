/* The pagellm command-line tool: one binary, one subcommand per file (cmd_*.c). Each
 * command parses its own argv (argv[0] = the subcommand name) and returns a process exit
 * code; errors print one clear line on stderr. */
#ifndef PL_CLI_H
#define PL_CLI_H

int pl_cmd_info(int argc, char **argv);
int pl_cmd_generate(int argc, char **argv);
int pl_cmd_chat(int argc, char **argv);
int pl_cmd_serve(int argc, char **argv);
int pl_cmd_bench(int argc, char **argv);
int pl_cmd_bench_grammar(int argc, char **argv);
int pl_cmd_tokenize(int argc, char **argv);
int pl_cmd_detokenize(int argc, char **argv);
int pl_cmd_template(int argc, char **argv);
int pl_cmd_model_gen(int argc, char **argv);

/* Shared helpers (cli_util.c) */
/* Parse "2GiB", "512MiB", "1.5G", "100000" (bytes) → bytes; -1 on error. */
long long pl_cli_parse_size(const char *s);
/* Parse an int with range check; prints an error naming `opt` and returns -1 on failure. */
int pl_cli_int(const char *opt, const char *val, long lo, long hi, int *out);
int pl_cli_float(const char *opt, const char *val, double lo, double hi, float *out);
#endif
