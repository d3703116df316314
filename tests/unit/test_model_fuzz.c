/* Malformed model files never crash the loader or read out of bounds (run under ASan in CI):
 * the real TinyStories GGUF truncated at many offsets and corrupted (bytes flipped, counts,
 * lengths and offsets set to extremes) at many offsets must either load and validate, or fail
 * with PL_EFORMAT/PL_EIO and a message naming the file; every failure leaks nothing. Also
 * checks specific messages for hand-made defects (bad magic, version, absurd dimensions,
 * shapes that disagree with the hyperparameters, unknown tensor type). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
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

/* Load the file; returns the status. Checks the failure contract. */
static int try_load(const char *what) {
  size_t live = pl_alloc_live_bytes();
  pl_model *m = NULL;
  int rc = pl_model_load(tmp_path, &m);
  if (rc == 0) {
    CHECK(m != NULL);
    pl_model_free(m);
  } else {
    CHECK(m == NULL, "%s", what);
    CHECK(rc == PL_EFORMAT || rc == PL_EIO || rc == PL_EUNSUPPORTED, "%s: status %d", what, rc);
    CHECK(strstr(pl_last_error(), tmp_path) != NULL, "%s: message does not name the file: %s",
          what, pl_last_error());
  }
  CHECK_EQ_INT(pl_alloc_live_bytes(), live);
  return rc;
}

static void expect_msg(const unsigned char *b, size_t n, const char *needle) {
  write_file(b, n);
  int rc = try_load(needle);
  CHECK(rc < 0, "expected failure: %s", needle);
  CHECK(strstr(pl_last_error(), needle) != NULL, "message '%s' lacks '%s'", pl_last_error(), needle);
}

int main(void) {
  snprintf(tmp_path, sizeof tmp_path, "/tmp/pl_fuzz_%d.gguf", (int)getpid());
  FILE *f = fopen(shared_path("models/tinystories-280K.gguf"), "rb");
  CHECK(f != NULL);
  if (!f)
    return check_summary("test_model_fuzz");
  fseek(f, 0, SEEK_END);
  orig_len = (size_t)ftell(f);
  fseek(f, 0, SEEK_SET);
  orig = malloc(orig_len);
  CHECK(fread(orig, 1, orig_len, f) == orig_len);
  fclose(f);
  unsigned char *b = malloc(orig_len);

  /* the intact file loads */
  write_file(orig, orig_len);
  CHECK_EQ_INT(try_load("intact"), 0);

  /* truncation at every offset in the header region, then strided through the data */
  int fails = 0, loads = 0;
  for (size_t cut = 0; cut < orig_len; cut += cut < 24000 ? 11 : 1999) {
    write_file(orig, cut);
    if (try_load("truncated") < 0) fails++; else loads++;
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
      try_load("corrupted");
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
  return check_summary("test_model_fuzz");
}
