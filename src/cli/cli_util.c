/* Small option-parsing helpers shared by the subcommands. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cli/cli.h"

long long pl_cli_parse_size(const char *s) {
  char *end;
  errno = 0;
  double v = strtod(s, &end);
  if (errno || end == s || !(v >= 0))
    return -1;
  double mul = 1;
  if (!strcasecmp(end, "") || !strcasecmp(end, "b")) mul = 1;
  else if (!strcasecmp(end, "k") || !strcasecmp(end, "kib") || !strcasecmp(end, "kb")) mul = 1024.0;
  else if (!strcasecmp(end, "m") || !strcasecmp(end, "mib") || !strcasecmp(end, "mb")) mul = 1048576.0;
  else if (!strcasecmp(end, "g") || !strcasecmp(end, "gib") || !strcasecmp(end, "gb")) mul = 1073741824.0;
  else return -1;
  v *= mul;
  if (v > 9e18)
    return -1;
  return (long long)v;
}

int pl_cli_int(const char *opt, const char *val, long lo, long hi, int *out) {
  char *end;
  errno = 0;
  long v = val ? strtol(val, &end, 10) : 0;
  if (!val || errno || end == val || *end || v < lo || v > hi) {
    fprintf(stderr, "pagellm: %s expects an integer in [%ld, %ld], got '%s'\n", opt, lo, hi,
            val ? val : "(nothing)");
    return -1;
  }
  *out = (int)v;
  return 0;
}

int pl_cli_float(const char *opt, const char *val, double lo, double hi, float *out) {
  char *end;
  errno = 0;
  double v = val ? strtod(val, &end) : 0;
  if (!val || errno || end == val || *end || !(v >= lo && v <= hi)) {
    fprintf(stderr, "pagellm: %s expects a number in [%g, %g], got '%s'\n", opt, lo, hi,
            val ? val : "(nothing)");
    return -1;
  }
  *out = (float)v;
  return 0;
}
