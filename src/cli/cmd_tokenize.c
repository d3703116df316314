/* `pagellm tokenize` and `pagellm detokenize`: the tokenizer from the command line, for
 * people and for differential tests against other implementations.
 *
 *   pagellm tokenize -m MODEL [--no-special] [--parse-special] [--batch] [TEXT...]
 *     prints the ids, space-separated, one line. TEXT words are joined with single spaces;
 *     without TEXT the whole of stdin is the text. --no-special: no BOS/EOS added.
 *     --parse-special: "<|im_start|>" etc. in the text become their tokens.
 *     --batch: each stdin line is one JSON string; one line of ids is printed per line.
 *   pagellm detokenize -m MODEL [--skip-special] [--no-strip] [ID...]
 *     prints the text of the ids (from the arguments, or whitespace-separated on stdin),
 *     followed by a newline. Special tokens are shown unless --skip-special; the space an SPM
 *     vocabulary put in front of the text is removed unless --no-strip.
 * MODEL is a .gguf (a vocab-only one is fine), a tokenizer.json, or a directory holding one.
 */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/engine_opts.h"
#include "tokenizer/tokenizer.h"
#include "util/alloc.h"
#include "util/error.h"
#include "util/file.h"

static const char *tok_help =
    "usage: pagellm tokenize -m MODEL [--no-special] [--parse-special] [--batch] [TEXT...]\n"
    "  -m, --model PATH   .gguf, tokenizer.json, or a directory holding tokenizer.json\n"
    "  --no-special       do not add BOS/EOS\n"
    "  --parse-special    recognise special-token text such as <|im_start|>\n"
    "  --batch            stdin: one JSON string per line; prints one line of ids per line\n"
    "  TEXT               the text (words joined by spaces); default: all of stdin\n";

static const char *detok_help =
    "usage: pagellm detokenize -m MODEL [--skip-special] [--no-strip] [ID...]\n"
    "  -m, --model PATH   .gguf, tokenizer.json, or a directory holding tokenizer.json\n"
    "  --skip-special     do not print control tokens (BOS, EOS, <|im_end|>, ...)\n"
    "  --no-strip         keep the leading space of SentencePiece vocabularies\n"
    "  ID...              token ids; default: whitespace-separated ids on stdin\n";

static int load(const char *model, pl_tokenizer **t) {
  if (!model)
    model = pl_engine_opts_default_model();
  if (!model) {
    fprintf(stderr, "pagellm: no model: pass -m MODEL\n");
    return -1;
  }
  if (pl_tokenizer_load(model, t) != 0) {
    fprintf(stderr, "pagellm: %s\n", pl_last_error());
    return -1;
  }
  return 0;
}

static void print_ids(const pl_token_buf *b, FILE *f) {
  for (size_t i = 0; i < b->n; i++)
    fprintf(f, i ? " %d" : "%d", (int)b->ids[i]);
  fputc('\n', f);
}

static int run_batch(const pl_tokenizer *t, int add, int parse) {
  char *line = NULL;
  size_t cap = 0;
  ssize_t n;
  long lineno = 0;
  int rc = 0;
  pl_token_buf b = {0};
  while ((n = getline(&line, &cap, stdin)) >= 0) {
    lineno++;
    json_error_t err;
    json_t *s = json_loadb(line, (size_t)n, JSON_DECODE_ANY | JSON_ALLOW_NUL, &err);
    if (!json_is_string(s)) {
      fprintf(stderr, "pagellm tokenize: stdin line %ld: expected a JSON string%s%s\n", lineno,
              s ? "" : ": ", s ? "" : err.text);
      json_decref(s);
      rc = 1;
      break;
    }
    b.n = 0;
    if (pl_tokenizer_encode(t, json_string_value(s), json_string_length(s), add, parse, &b) != 0) {
      fprintf(stderr, "pagellm tokenize: line %ld: %s\n", lineno, pl_last_error());
      json_decref(s);
      rc = 1;
      break;
    }
    json_decref(s);
    print_ids(&b, stdout);
  }
  free(line); /* getline's buffer comes from the C library */
  pl_token_buf_free(&b);
  fflush(stdout);
  return rc;
}

int pl_cmd_tokenize(int argc, char **argv) {
  const char *model = NULL;
  int add = 1, parse = 0, batch = 0, first_text = 0;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (!strcmp(a, "-m") || !strcmp(a, "--model")) {
      if (++i == argc) {
        fprintf(stderr, "pagellm tokenize: %s needs a value\n", a);
        return 2;
      }
      model = argv[i];
    } else if (!strcmp(a, "--no-special")) {
      add = 0;
    } else if (!strcmp(a, "--parse-special")) {
      parse = 1;
    } else if (!strcmp(a, "--batch")) {
      batch = 1;
    } else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
      fputs(tok_help, stdout);
      return 0;
    } else if (!strcmp(a, "--")) {
      first_text = i + 1;
      break;
    } else if (a[0] == '-' && a[1] == '-') {
      fprintf(stderr, "pagellm tokenize: unknown option '%s'\n%s", a, tok_help);
      return 2;
    } else {
      first_text = i;
      break;
    }
  }
  pl_tokenizer *t = NULL;
  if (load(model, &t) != 0)
    return 1;
  int rc = 0;
  if (batch) {
    rc = run_batch(t, add, parse);
  } else {
    char *text = NULL;
    size_t n = 0;
    if (first_text > 0 && first_text < argc) {
      size_t total = 0;
      for (int i = first_text; i < argc; i++)
        total += strlen(argv[i]) + 1;
      text = pl_malloc(total + 1);
      if (text) {
        for (int i = first_text; i < argc; i++) {
          if (i > first_text)
            text[n++] = ' ';
          memcpy(text + n, argv[i], strlen(argv[i]));
          n += strlen(argv[i]);
        }
      }
    } else {
      if (pl_read_stream(stdin, "stdin", (size_t)-1, &text, &n) < 0)
        text = NULL;
    }
    pl_token_buf b = {0};
    if (!text) {
      fprintf(stderr, "pagellm tokenize: out of memory\n");
      rc = 1;
    } else if (pl_tokenizer_encode(t, text, n, add, parse, &b) != 0) {
      fprintf(stderr, "pagellm tokenize: %s\n", pl_last_error());
      rc = 1;
    } else {
      print_ids(&b, stdout);
    }
    pl_token_buf_free(&b);
    pl_free(text);
  }
  pl_tokenizer_free(t);
  return rc;
}

static int parse_id(const char *s, int32_t *id) {
  char *end;
  errno = 0;
  long v = strtol(s, &end, 10);
  if (errno || end == s || *end || v < 0 || v > INT32_MAX)
    return -1;
  *id = (int32_t)v;
  return 0;
}

int pl_cmd_detokenize(int argc, char **argv) {
  const char *model = NULL;
  int flags = PL_DECODE_STRIP_SPACE, first_id = 0;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (!strcmp(a, "-m") || !strcmp(a, "--model")) {
      if (++i == argc) {
        fprintf(stderr, "pagellm detokenize: %s needs a value\n", a);
        return 2;
      }
      model = argv[i];
    } else if (!strcmp(a, "--skip-special")) {
      flags |= PL_DECODE_SKIP_SPECIAL;
    } else if (!strcmp(a, "--no-strip")) {
      flags &= ~PL_DECODE_STRIP_SPACE;
    } else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
      fputs(detok_help, stdout);
      return 0;
    } else if (a[0] == '-' && a[1] == '-') {
      fprintf(stderr, "pagellm detokenize: unknown option '%s'\n%s", a, detok_help);
      return 2;
    } else {
      first_id = i;
      break;
    }
  }
  pl_token_buf ids = {0};
  int rc = 0;
  if (first_id > 0) {
    for (int i = first_id; i < argc && rc == 0; i++) {
      int32_t id;
      if (parse_id(argv[i], &id) != 0) {
        fprintf(stderr, "pagellm detokenize: '%s' is not a token id\n", argv[i]);
        rc = 2;
      } else if (pl_token_buf_push(&ids, id) != 0) {
        rc = 1;
      }
    }
  } else {
    char word[32];
    while (rc == 0 && scanf("%31s", word) == 1) {
      int32_t id;
      if (parse_id(word, &id) != 0) {
        fprintf(stderr, "pagellm detokenize: '%s' is not a token id\n", word);
        rc = 2;
      } else if (pl_token_buf_push(&ids, id) != 0) {
        rc = 1;
      }
    }
  }
  pl_tokenizer *t = NULL;
  if (rc == 0 && load(model, &t) != 0)
    rc = 1;
  if (rc == 0) {
    char *text = NULL;
    size_t n = 0;
    if (pl_tokenizer_decode(t, ids.ids, ids.n, flags, &text, &n) != 0) {
      fprintf(stderr, "pagellm detokenize: %s\n", pl_last_error());
      rc = 1;
    } else {
      fwrite(text, 1, n, stdout);
      fputc('\n', stdout);
    }
    pl_free(text);
  }
  pl_tokenizer_free(t);
  pl_token_buf_free(&ids);
  return rc;
}
