/* Malformed model files never crash the loader or read out of bounds (run under ASan in CI):
 * the real TinyStories GGUF truncated at many offsets and corrupted (bytes flipped, counts,
 * lengths and offsets set to extremes) at many offsets must either load and validate, or fail
 * with PL_EFORMAT/PL_EIO and a message naming the file; every failure leaks nothing. Also
 * checks specific messages for hand-made defects (bad magic, version, absurd dimensions,
 * shapes that disagree with the hyperparameters, unknown tensor type). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "golden_io.h"
#include "model/model.h"
#include "pagellm.h"
#include "util/alloc.h"

static unsigned char *orig;
static size_t orig_len;
static char tmp_path[256];

static void write_file(const unsigned char *b, size_t n) {
  FILE *f = fopen(tmp_path, "wb");
  fwrite(b, 1, n, f);
  fclose(f);
}

/* Load `path` (a GGUF file or a safetensors directory); returns the status after checking the
 * failure contract: a format/IO status, no model, a message naming the path, nothing leaked. */
static int load_at(const char *path, const char *what) {
  size_t live = pl_alloc_live_bytes();
  pl_model *m = NULL;
  int rc = pl_model_load(path, &m);
  if (rc == 0) {
    CHECK(m != NULL);
    pl_model_free(m);
  } else {
    CHECK(m == NULL, "%s", what);
    CHECK(rc == PL_EFORMAT || rc == PL_EIO || rc == PL_EUNSUPPORTED, "%s: status %d", what, rc);
    CHECK(strstr(pl_last_error(), path) != NULL, "%s: message does not name the model: %s",
          what, pl_last_error());
  }
  CHECK_EQ_INT(pl_alloc_live_bytes(), live);
  return rc;
}

static void expect_msg(const unsigned char *b, size_t n, const char *needle) {
  write_file(b, n);
  int rc = load_at(tmp_path, needle);
  CHECK(rc < 0, "expected failure: %s", needle);
  CHECK(strstr(pl_last_error(), needle) != NULL, "message '%s' lacks '%s'", pl_last_error(), needle);
}

/* ---- safetensors directories: a copy of tests/golden/hf/llama, corrupted ---- */
static char st_dir[256];

static void put(const char *name, const void *b, size_t n) {
  char p[512];
  snprintf(p, sizeof p, "%s/%s", st_dir, name);
  FILE *f = fopen(p, "wb");
  fwrite(b, 1, n, f);
  fclose(f);
}


static void safetensors_fuzz(void) {
  snprintf(st_dir, sizeof st_dir, "/tmp/pl_fuzz_st_%d", (int)getpid());
  mkdir(st_dir, 0700);
  char src[1024];
  size_t ns, nc;
  snprintf(src, sizeof src, "%s/tests/golden/hf/llama/model.safetensors", PL_SOURCE_DIR);
  unsigned char *st = read_all(src, &ns);
  snprintf(src, sizeof src, "%s/tests/golden/hf/llama/config.json", PL_SOURCE_DIR);
  char *cfg = read_all(src, &nc);
  CHECK(st && cfg);
  if (!st || !cfg)
    return;
  put("config.json", cfg, nc);
  put("model.safetensors", st, ns);
  CHECK_EQ_INT(load_at(st_dir, "intact"), 0);
  uint64_t hlen;
  memcpy(&hlen, st, 8);
  int rejected = 0, total = 0;
  for (size_t cut = 0; cut < ns; cut += cut < hlen + 8 ? 5 : 4099) {
    put("model.safetensors", st, cut);
    rejected += load_at(st_dir, "truncated") < 0;
    total++;
  }
  CHECK_EQ_INT(rejected, total);
  unsigned char *b = malloc(ns);
  for (size_t off = 0; off < hlen + 8; off += 3) {
    memcpy(b, st, ns);
    b[off] = (unsigned char)(off % 2 ? '9' : 0xff);
    put("model.safetensors", b, ns);
    load_at(st_dir, "corrupted header");
  }
  put("model.safetensors", st, ns);
  const char *bad_cfgs[] = {
      "{\"model_type\": \"gpt2\"}", "not json", "{\"model_type\": \"llama\"}",
      "{\"model_type\": \"llama\", \"hidden_size\": 64, \"num_hidden_layers\": 2000000000, "
      "\"num_attention_heads\": 4, \"intermediate_size\": 128, \"vocab_size\": 320}",
      "{\"model_type\": \"llama\", \"hidden_size\": 96, \"num_hidden_layers\": 2, "
      "\"num_attention_heads\": 4, \"num_key_value_heads\": 2, \"intermediate_size\": 128, "
      "\"vocab_size\": 320}"};
  const char *want[] = {"not supported", "config.json", "num_attention_heads", "absurd", "expected"};
  for (int i = 0; i < 5; i++) {
    put("config.json", bad_cfgs[i], strlen(bad_cfgs[i]));
    CHECK(load_at(st_dir, bad_cfgs[i]) < 0, "%s", bad_cfgs[i]);
    CHECK(strstr(pl_last_error(), want[i]) != NULL, "'%s' lacks '%s'", pl_last_error(), want[i]);
  }
  printf("safetensors: %d truncations rejected, %zu header corruptions without a crash\n", rejected,
         (size_t)(hlen + 8) / 3);
  char p[512];
  snprintf(p, sizeof p, "%s/config.json", st_dir);
  remove(p);
  snprintf(p, sizeof p, "%s/model.safetensors", st_dir);
  remove(p);
  rmdir(st_dir);
  free(b);
  free(st);
  free(cfg);
}

int main(void) {
  snprintf(tmp_path, sizeof tmp_path, "/tmp/pl_fuzz_%d.gguf", (int)getpid());
  orig = read_all(data_path("models/tinystories-280K.gguf"), &orig_len);
  CHECK(orig != NULL);
  if (!orig)
    return check_summary("test_model_fuzz");
  unsigned char *b = malloc(orig_len);

  /* the intact file loads */
  write_file(orig, orig_len);
  CHECK_EQ_INT(load_at(tmp_path, "intact"), 0);

  /* truncation at every offset in the header region, then strided through the data */
  int fails = 0, loads = 0;
  for (size_t cut = 0; cut < orig_len; cut += cut < 24000 ? 11 : 1999) {
    write_file(orig, cut);
    if (load_at(tmp_path, "truncated") < 0) fails++; else loads++;
  }
  CHECK(loads == 0, "a truncated file loaded (%d times)", loads);

  /* corruption: at many offsets overwrite 1, 4 or 8 bytes with extreme values */
  static const unsigned char pats[][8] = {
      {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, {0, 0, 0, 0, 0, 0, 0, 0},
      {0xff, 0xff, 0xff, 0x7f, 0, 0, 0, 0}, {0x01, 0, 0, 0, 0, 0, 0, 0x40}};
  int n_corrupt = 0;
  for (size_t off = 0; off < 24000 && off < orig_len; off += 23) {
    for (int p = 0; p < 4; p++) {
      memcpy(b, orig, orig_len);
      size_t w = (p == 3) ? 1 : (off % 3 == 0 ? 8 : 4);
      if (off + w > orig_len)
        continue;
      memcpy(b + off, pats[p], w);
      write_file(b, orig_len);
      load_at(tmp_path, "corrupted");
      n_corrupt++;
    }
  }
  printf("loaded %d truncations (all rejected: %d), %d corruptions without a crash\n",
         fails + loads, fails, n_corrupt);

  /* specific defects and their messages */
  memcpy(b, orig, orig_len);
  memcpy(b, "GGUX", 4);
  expect_msg(b, orig_len, "bad magic");
  memcpy(b, orig, orig_len);
  b[4] = 9;
  expect_msg(b, orig_len, "version");
  memcpy(b, orig, orig_len);
  memset(b + 8, 0xff, 8); /* tensor count */
  expect_msg(b, orig_len, "absurd tensor count");
  expect_msg(orig, 100, "truncated");

  /* a shape that disagrees with the hyperparameters: change embedding_length's value */
  memcpy(b, orig, orig_len);
  const char key[] = "llama.embedding_length";
  unsigned char *k = memmem(b, 4096, key, sizeof key - 1);
  CHECK(k != NULL);
  if (k) {
    uint32_t v = 96; /* stored as u32 after the 4-byte type */
    memcpy(k + sizeof key - 1 + 4, &v, 4);
    expect_msg(b, orig_len, "expected");
  }
  remove(tmp_path);
  free(b);
  free(orig);
  safetensors_fuzz();
  return check_summary("test_model_fuzz");
}
