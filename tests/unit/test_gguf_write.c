/* GGUF writer tests: byte-exact layout of a small file against a hand-assembled expectation
 * (independent of both writer and reader), round trips through the reader (every KV type,
 * string arrays, a large string, every tensor type, alignments, streaming in odd pieces),
 * bad input (duplicates, bad shapes/types/alignment, call order, I/O errors), allocation
 * failure injection, and a rewrite of the real TinyStories GGUF that must be byte-identical. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "model/gguf.h"
#include "model/gguf_write.h"
#include "util/alloc.h"
#include "util/error.h"

static char tmpdir[256];

static const char *tmp_path(const char *name) {
  static char buf[4][512];
  static int i;
  i = (i + 1) & 3;
  snprintf(buf[i], sizeof buf[i], "%s/%s", tmpdir, name);
  return buf[i];
}

static long file_size(const char *path) {
  struct stat st;
  return stat(path, &st) == 0 ? (long)st.st_size : -1;
}

static unsigned char *read_all(const char *path, long *n) {
  FILE *f = fopen(path, "rb");
  if (!f)
    return NULL;
  fseek(f, 0, SEEK_END);
  *n = ftell(f);
  fseek(f, 0, SEEK_SET);
  unsigned char *b = malloc((size_t)*n + 1);
  if (b && fread(b, 1, (size_t)*n, f) != (size_t)*n) {
    free(b);
    b = NULL;
  }
  fclose(f);
  return b;
}

static int str_eq(pl_gguf_str s, const char *want, size_t len) {
  return s.len == len && memcmp(s.ptr, want, len) == 0;
}

/* ---- byte-exact layout ------------------------------------------------------------------ */

typedef struct { unsigned char b[512]; size_t n; } bytes;
static void b_put(bytes *b, const void *p, size_t n) { memcpy(b->b + b->n, p, n); b->n += n; }
static void b_u32(bytes *b, uint32_t v) { b_put(b, &v, 4); }
static void b_u64(bytes *b, uint64_t v) { b_put(b, &v, 8); }
static void b_str(bytes *b, const char *s) { b_u64(b, strlen(s)); b_put(b, s, strlen(s)); }
static void b_pad(bytes *b, size_t a) { while (b->n % a) b->b[b->n++] = 0; }

static void test_exact_bytes(void) {
  /* Expected file, assembled from the GGUF v3 spec by hand. */
  bytes e = {{0}, 0};
  b_put(&e, "GGUF", 4);
  b_u32(&e, 3);
  b_u64(&e, 2);  /* tensors */
  b_u64(&e, 3);  /* kvs */
  b_str(&e, "general.architecture"); b_u32(&e, 8); b_str(&e, "llama");
  b_str(&e, "a.u16"); b_u32(&e, 2); { uint16_t v = 0xBEEF; b_put(&e, &v, 2); }
  b_str(&e, "a.arr"); b_u32(&e, 9); b_u32(&e, 5); b_u64(&e, 3);
  { int32_t v[3] = {-1, 0, 7}; b_put(&e, v, 12); }
  b_str(&e, "w"); b_u32(&e, 2); b_u64(&e, 3); b_u64(&e, 2); b_u32(&e, 0); b_u64(&e, 0);
  b_str(&e, "h"); b_u32(&e, 1); b_u64(&e, 5); b_u32(&e, 1); b_u64(&e, 32);
  b_pad(&e, 32);
  float wdata[6] = {1, 2, 3, 4, 5, 6};
  uint16_t hdata[5] = {0x3c00, 0x4000, 0x4200, 0x4400, 0x4500};
  b_put(&e, wdata, 24); b_pad(&e, 32);
  b_put(&e, hdata, 10); b_pad(&e, 32);

  pl_gguf_writer *w;
  CHECK_EQ_INT(pl_gguf_writer_create(&w), PL_OK);
  CHECK_EQ_INT(pl_gguf_set_str(w, "general.architecture", "llama"), PL_OK);
  CHECK_EQ_INT(pl_gguf_set_u16(w, "a.u16", 0xBEEF), PL_OK);
  int32_t arr[3] = {-1, 0, 7};
  CHECK_EQ_INT(pl_gguf_set_arr(w, "a.arr", PL_GGUF_INT32, arr, 3), PL_OK);
  int64_t ne_w[2] = {3, 2}, ne_h[1] = {5};
  CHECK_EQ_INT(pl_gguf_add_tensor(w, "w", PL_DT_F32, 2, ne_w, wdata), PL_OK);
  CHECK_EQ_INT(pl_gguf_add_tensor(w, "h", PL_DT_F16, 1, ne_h, hdata), PL_OK);
  CHECK_EQ_INT(pl_gguf_writer_file_size(w), e.n);
  const char *p = tmp_path("exact.gguf");
  CHECK_EQ_INT(pl_gguf_write_file(w, p), PL_OK);
  pl_gguf_writer_destroy(w);
  long n = 0;
  unsigned char *got = read_all(p, &n);
  CHECK(got != NULL);
  CHECK_EQ_INT(n, e.n);
  CHECK(got && n == (long)e.n && memcmp(got, e.b, e.n) == 0, "bytes differ from the spec layout");
  free(got);
}

/* ---- every KV type ---------------------------------------------------------------------- */

static void test_kv_round_trip(void) {
  pl_gguf_writer *w;
  CHECK_EQ_INT(pl_gguf_writer_create(&w), PL_OK);
  CHECK_EQ_INT(pl_gguf_set_u8(w, "t.u8", 250), PL_OK);
  CHECK_EQ_INT(pl_gguf_set_i8(w, "t.i8", -120), PL_OK);
  CHECK_EQ_INT(pl_gguf_set_u16(w, "t.u16", 65000), PL_OK);
  CHECK_EQ_INT(pl_gguf_set_i16(w, "t.i16", -32000), PL_OK);
  CHECK_EQ_INT(pl_gguf_set_u32(w, "t.u32", 4000000000u), PL_OK);
  CHECK_EQ_INT(pl_gguf_set_i32(w, "t.i32", -2000000000), PL_OK);
  CHECK_EQ_INT(pl_gguf_set_u64(w, "t.u64", 1ull << 40), PL_OK);
  CHECK_EQ_INT(pl_gguf_set_u64(w, "t.u64big", UINT64_MAX), PL_OK);
  CHECK_EQ_INT(pl_gguf_set_i64(w, "t.i64", -(1ll << 50)), PL_OK);
  CHECK_EQ_INT(pl_gguf_set_f32(w, "t.f32", 1e-5f), PL_OK);
  CHECK_EQ_INT(pl_gguf_set_f64(w, "t.f64", 0.15625), PL_OK);
  CHECK_EQ_INT(pl_gguf_set_bool(w, "t.true", 7), PL_OK);
  CHECK_EQ_INT(pl_gguf_set_bool(w, "t.false", 0), PL_OK);
  CHECK_EQ_INT(pl_gguf_set_str(w, "t.str", "h\xc3\xa9llo \xe2\x96\x81world"), PL_OK);
  CHECK_EQ_INT(pl_gguf_set_str(w, "t.empty", ""), PL_OK);
  CHECK_EQ_INT(pl_gguf_set_strn(w, "t.nul", "a\0b", 3), PL_OK);
  /* a 1 MiB string */
  size_t big_n = 1u << 20;
  char *big = malloc(big_n);
  for (size_t i = 0; i < big_n; i++)
    big[i] = (char)('a' + i % 26);
  CHECK_EQ_INT(pl_gguf_set_strn(w, "t.big", big, big_n), PL_OK);
  /* arrays of every scalar type */
  uint8_t a_u8[3] = {0, 128, 255};
  int8_t a_i8[2] = {-128, 127};
  uint16_t a_u16[2] = {1, 65535};
  int16_t a_i16[2] = {-32768, 32767};
  uint32_t a_u32[2] = {0, 0xFFFFFFFFu};
  int32_t a_i32[4] = {3, -3, 0, 1 << 30};
  uint64_t a_u64[2] = {UINT64_MAX, 42};
  int64_t a_i64[2] = {INT64_MIN, INT64_MAX};
  float a_f32[3] = {-1.5f, 0.0f, 3.25e10f};
  double a_f64[2] = {1.0 / 3.0, -2e300};
  uint8_t a_bool[3] = {1, 0, 1};
  CHECK_EQ_INT(pl_gguf_set_arr(w, "a.u8", PL_GGUF_UINT8, a_u8, 3), PL_OK);
  CHECK_EQ_INT(pl_gguf_set_arr(w, "a.i8", PL_GGUF_INT8, a_i8, 2), PL_OK);
  CHECK_EQ_INT(pl_gguf_set_arr(w, "a.u16", PL_GGUF_UINT16, a_u16, 2), PL_OK);
  CHECK_EQ_INT(pl_gguf_set_arr(w, "a.i16", PL_GGUF_INT16, a_i16, 2), PL_OK);
  CHECK_EQ_INT(pl_gguf_set_arr(w, "a.u32", PL_GGUF_UINT32, a_u32, 2), PL_OK);
  CHECK_EQ_INT(pl_gguf_set_arr(w, "a.i32", PL_GGUF_INT32, a_i32, 4), PL_OK);
  CHECK_EQ_INT(pl_gguf_set_arr(w, "a.u64", PL_GGUF_UINT64, a_u64, 2), PL_OK);
  CHECK_EQ_INT(pl_gguf_set_arr(w, "a.i64", PL_GGUF_INT64, a_i64, 2), PL_OK);
  CHECK_EQ_INT(pl_gguf_set_arr(w, "a.f32", PL_GGUF_FLOAT32, a_f32, 3), PL_OK);
  CHECK_EQ_INT(pl_gguf_set_arr(w, "a.f64", PL_GGUF_FLOAT64, a_f64, 2), PL_OK);
  CHECK_EQ_INT(pl_gguf_set_arr(w, "a.bool", PL_GGUF_BOOL, a_bool, 3), PL_OK);
  CHECK_EQ_INT(pl_gguf_set_arr(w, "a.none", PL_GGUF_INT32, NULL, 0), PL_OK);
  /* string arrays: NUL-terminated, with lengths (embedded NUL, empty), and a large one */
  const char *toks[5] = {"<unk>", "<s>", "</s>", "\xe2\x96\x81the", ""};
  CHECK_EQ_INT(pl_gguf_set_arr_str(w, "s.toks", toks, NULL, 5), PL_OK);
  const char *raw[2] = {"x\0y", "zz"};
  uint64_t raw_len[2] = {3, 0};
  CHECK_EQ_INT(pl_gguf_set_arr_str(w, "s.raw", raw, raw_len, 2), PL_OK);
  enum { NMANY = 40000 };
  char (*many)[16] = malloc(sizeof(*many) * NMANY);
  const char **manyp = malloc(sizeof(*manyp) * NMANY);
  for (int i = 0; i < NMANY; i++) {
    snprintf(many[i], 16, "tok%d", i);
    manyp[i] = many[i];
  }
  CHECK_EQ_INT(pl_gguf_set_arr_str(w, "s.many", manyp, NULL, NMANY), PL_OK);
  CHECK_EQ_INT(pl_gguf_writer_n_kv(w), 32);
  CHECK_EQ_INT(pl_gguf_writer_n_tensors(w), 0);

  const char *p = tmp_path("kv.gguf");
  CHECK_EQ_INT(pl_gguf_write_file(w, p), PL_OK);
  CHECK_EQ_INT(file_size(p), pl_gguf_writer_file_size(w));
  pl_gguf_writer_destroy(w);

  pl_gguf *g = NULL;
  int rc = pl_gguf_open(p, &g);
  CHECK_EQ_INT(rc, PL_OK);
  if (rc) {
    fprintf(stderr, "  %s\n", pl_last_error());
    free(big); free(many); free(manyp);
    return;
  }
  CHECK_EQ_INT(pl_gguf_version(g), 3);
  CHECK_EQ_INT(pl_gguf_n_kv(g), 32);
  CHECK_EQ_INT(pl_gguf_n_tensors(g), 0);
  /* insertion order and types */
  static const struct { const char *k; pl_gguf_type t; } order[] = {
    {"t.u8", PL_GGUF_UINT8}, {"t.i8", PL_GGUF_INT8}, {"t.u16", PL_GGUF_UINT16},
    {"t.i16", PL_GGUF_INT16}, {"t.u32", PL_GGUF_UINT32}, {"t.i32", PL_GGUF_INT32},
    {"t.u64", PL_GGUF_UINT64}, {"t.u64big", PL_GGUF_UINT64}, {"t.i64", PL_GGUF_INT64},
    {"t.f32", PL_GGUF_FLOAT32}, {"t.f64", PL_GGUF_FLOAT64}, {"t.true", PL_GGUF_BOOL},
    {"t.false", PL_GGUF_BOOL}, {"t.str", PL_GGUF_STRING}, {"t.empty", PL_GGUF_STRING},
    {"t.nul", PL_GGUF_STRING}, {"t.big", PL_GGUF_STRING},
  };
  for (size_t i = 0; i < sizeof order / sizeof order[0]; i++) {
    CHECK(str_eq(pl_gguf_key_at(g, (int64_t)i), order[i].k, strlen(order[i].k)), "key %zu", i);
    CHECK_EQ_INT(pl_gguf_kv_type(g, (int64_t)i), order[i].t);
  }
  int64_t v = 0;
  CHECK(pl_gguf_get_i64(g, "t.u8", &v) == 0 && v == 250);
  CHECK(pl_gguf_get_i64(g, "t.i8", &v) == 0 && v == -120);
  CHECK(pl_gguf_get_i64(g, "t.u16", &v) == 0 && v == 65000);
  CHECK(pl_gguf_get_i64(g, "t.i16", &v) == 0 && v == -32000);
  uint32_t u32 = 0;
  CHECK(pl_gguf_get_u32(g, "t.u32", &u32) == 0 && u32 == 4000000000u);
  CHECK(pl_gguf_get_i64(g, "t.i32", &v) == 0 && v == -2000000000);
  CHECK(pl_gguf_get_i64(g, "t.u64", &v) == 0 && v == (1ll << 40));
  CHECK(pl_gguf_get_i64(g, "t.u64big", &v) != 0, "UINT64_MAX does not fit int64");
  CHECK(pl_gguf_get_i64(g, "t.i64", &v) == 0 && v == -(1ll << 50));
  float f = 0;
  CHECK(pl_gguf_get_f32(g, "t.f32", &f) == 0 && f == 1e-5f);
  CHECK(pl_gguf_get_f32(g, "t.f64", &f) == 0 && f == 0.15625f);
  int b = -1;
  CHECK(pl_gguf_get_bool(g, "t.true", &b) == 0 && b == 1);
  CHECK(pl_gguf_get_bool(g, "t.false", &b) == 0 && b == 0);
  pl_gguf_str s;
  CHECK(pl_gguf_get_str(g, "t.str", &s) == 0 && str_eq(s, "h\xc3\xa9llo \xe2\x96\x81world", 15));
  CHECK(pl_gguf_get_str(g, "t.empty", &s) == 0 && s.len == 0);
  CHECK(pl_gguf_get_str(g, "t.nul", &s) == 0 && str_eq(s, "a\0b", 3));
  CHECK(pl_gguf_get_str(g, "t.big", &s) == 0 && str_eq(s, big, big_n));

  struct { const char *k; pl_gguf_type t; const void *d; uint64_t n; size_t es; } arrs[] = {
    {"a.u8", PL_GGUF_UINT8, a_u8, 3, 1}, {"a.i8", PL_GGUF_INT8, a_i8, 2, 1},
    {"a.u16", PL_GGUF_UINT16, a_u16, 2, 2}, {"a.i16", PL_GGUF_INT16, a_i16, 2, 2},
    {"a.u32", PL_GGUF_UINT32, a_u32, 2, 4}, {"a.i32", PL_GGUF_INT32, a_i32, 4, 4},
    {"a.u64", PL_GGUF_UINT64, a_u64, 2, 8}, {"a.i64", PL_GGUF_INT64, a_i64, 2, 8},
    {"a.f32", PL_GGUF_FLOAT32, a_f32, 3, 4}, {"a.f64", PL_GGUF_FLOAT64, a_f64, 2, 8},
    {"a.bool", PL_GGUF_BOOL, a_bool, 3, 1}, {"a.none", PL_GGUF_INT32, NULL, 0, 4},
  };
  for (size_t i = 0; i < sizeof arrs / sizeof arrs[0]; i++) {
    pl_gguf_type et;
    uint64_t n;
    const void *d;
    CHECK_EQ_INT(pl_gguf_get_arr(g, arrs[i].k, &et, &n, &d), PL_OK);
    CHECK_EQ_INT(et, arrs[i].t);
    CHECK_EQ_INT(n, arrs[i].n);
    CHECK(n == 0 || memcmp(d, arrs[i].d, n * arrs[i].es) == 0, "%s contents", arrs[i].k);
  }
  pl_gguf_type et;
  uint64_t n;
  const void *d;
  CHECK(pl_gguf_get_arr(g, "s.toks", &et, &n, &d) == 0 && et == PL_GGUF_STRING && n == 5);
  for (int i = 0; i < 5; i++)
    CHECK(pl_gguf_arr_str(g, "s.toks", (uint64_t)i, &s) == 0 && str_eq(s, toks[i], strlen(toks[i])),
          "s.toks[%d]", i);
  CHECK(pl_gguf_arr_str(g, "s.raw", 0, &s) == 0 && str_eq(s, "x\0y", 3));
  CHECK(pl_gguf_arr_str(g, "s.raw", 1, &s) == 0 && s.len == 0);
  CHECK(pl_gguf_get_arr(g, "s.many", &et, &n, &d) == 0 && n == NMANY);
  int bad = 0;
  for (int i = 0; i < NMANY; i++)
    if (pl_gguf_arr_str(g, "s.many", (uint64_t)i, &s) || !str_eq(s, many[i], strlen(many[i])))
      bad++;
  CHECK_EQ_INT(bad, 0);
  pl_gguf_close(g);
  free(big);
  free(many);
  free(manyp);
}

/* ---- tensors of every type, alignment, streaming ---------------------------------------- */

static const pl_dtype all_types[] = {PL_DT_F32, PL_DT_F16, PL_DT_BF16, PL_DT_Q8_0,
                                     PL_DT_Q4_0, PL_DT_Q4_K, PL_DT_Q6_K};
#define N_TYPES (sizeof all_types / sizeof all_types[0])

typedef struct {
  char name[64];
  pl_dtype type;
  int n_dims;
  int64_t ne[4];
  unsigned char *data;
  size_t nbytes;
} ref_tensor;

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static uint8_t rnd8(void) {
  rng_state ^= rng_state << 13;
  rng_state ^= rng_state >> 7;
  rng_state ^= rng_state << 17;
  return (uint8_t)(rng_state >> 24);
}

/* A set of tensors of all types with 1..4 dims and random bytes. */
static int make_tensors(ref_tensor *ts) {
  int n = 0;
  for (size_t i = 0; i < N_TYPES; i++) {
    for (int nd = 1; nd <= 4; nd++) {
      ref_tensor *t = &ts[n++];
      snprintf(t->name, sizeof t->name, "blk.%d.%s_%dd.weight", n, pl_dtype_name(all_types[i]), nd);
      t->type = all_types[i];
      t->n_dims = nd;
      int bs = pl_dtype_block_size(t->type);
      int64_t dims[4] = {bs * (1 + (int64_t)(i % 3)), 3, 2, 2};
      if (bs == 1)
        dims[0] = 5 + nd; /* odd sizes: padding needed */
      for (int k = 0; k < 4; k++)
        t->ne[k] = k < nd ? dims[k] : 1;
      t->nbytes = pl_dtype_row_bytes(t->type, t->ne[0]) * (size_t)(t->ne[1] * t->ne[2] * t->ne[3]);
      t->data = malloc(t->nbytes);
      for (size_t k = 0; k < t->nbytes; k++)
        t->data[k] = rnd8();
    }
  }
  return n;
}

static void free_tensors(ref_tensor *ts, int n) {
  for (int i = 0; i < n; i++)
    free(ts[i].data);
}

static void check_tensors_read_back(const char *path, const ref_tensor *ts, int n, uint32_t align) {
  pl_gguf *g = NULL;
  int rc = pl_gguf_open(path, &g);
  CHECK_EQ_INT(rc, PL_OK);
  if (rc) {
    fprintf(stderr, "  %s\n", pl_last_error());
    return;
  }
  CHECK_EQ_INT(pl_gguf_n_tensors(g), n);
  const unsigned char *base = NULL;
  for (int i = 0; i < n; i++) {
    pl_tensor t;
    CHECK_EQ_INT(pl_gguf_tensor_at(g, i, &t), PL_OK);
    CHECK(strcmp(t.name, ts[i].name) == 0, "%s vs %s", t.name, ts[i].name);
    CHECK_EQ_INT(t.type, ts[i].type);
    CHECK_EQ_INT(t.n_dims, ts[i].n_dims);
    for (int k = 0; k < 4; k++)
      CHECK_EQ_INT(t.ne[k], ts[i].ne[k]);
    CHECK_EQ_INT(t.nbytes, ts[i].nbytes);
    CHECK(memcmp(t.data, ts[i].data, ts[i].nbytes) == 0, "data of %s", ts[i].name);
    if (i == 0)
      base = t.data;
    /* the mapping is page-aligned, so data offsets must be multiples of the alignment */
    CHECK_EQ_INT(((uintptr_t)t.data) % align, 0);
    CHECK_EQ_INT(((const unsigned char *)t.data - base) % align, 0);
  }
  pl_tensor t;
  CHECK_EQ_INT(pl_gguf_tensor(g, ts[n - 1].name, &t), PL_OK);
  pl_gguf_close(g);
}

static void test_tensors(uint32_t align) {
  ref_tensor ts[64];
  int n = make_tensors(ts);
  pl_gguf_writer *w;
  CHECK_EQ_INT(pl_gguf_writer_create(&w), PL_OK);
  CHECK_EQ_INT(pl_gguf_set_str(w, "general.architecture", "test"), PL_OK);
  if (align != PL_GGUF_DEFAULT_ALIGNMENT)
    CHECK_EQ_INT(pl_gguf_set_u32(w, "general.alignment", align), PL_OK);
  CHECK_EQ_INT(pl_gguf_writer_alignment(w), align);
  for (int i = 0; i < n; i++) {
    CHECK_EQ_INT(pl_gguf_add_tensor(w, ts[i].name, ts[i].type, ts[i].n_dims, ts[i].ne, ts[i].data),
                 PL_OK);
    CHECK_EQ_INT(pl_gguf_writer_tensor_nbytes(w, i), ts[i].nbytes);
  }
  char name[64];
  snprintf(name, sizeof name, "tensors-%u.gguf", align);
  const char *p = tmp_path(name);
  CHECK_EQ_INT(pl_gguf_write_file(w, p), PL_OK);
  long fs = file_size(p);
  CHECK_EQ_INT(fs, pl_gguf_writer_file_size(w));
  CHECK_EQ_INT(fs % align, 0);
  pl_gguf_writer_destroy(w);
  check_tensors_read_back(p, ts, n, align);

  /* Streaming: same declarations, every other tensor held, the rest streamed in 7-byte
   * pieces that cross tensor boundaries; the file must be byte-identical. */
  CHECK_EQ_INT(pl_gguf_writer_create(&w), PL_OK);
  CHECK_EQ_INT(pl_gguf_set_str(w, "general.architecture", "test"), PL_OK);
  if (align != PL_GGUF_DEFAULT_ALIGNMENT)
    CHECK_EQ_INT(pl_gguf_set_u32(w, "general.alignment", align), PL_OK);
  size_t stream_n = 0;
  for (int i = 0; i < n; i++) {
    int held = i % 3 == 1;
    CHECK_EQ_INT(pl_gguf_add_tensor(w, ts[i].name, ts[i].type, ts[i].n_dims, ts[i].ne,
                                    held ? ts[i].data : NULL), PL_OK);
    if (!held)
      stream_n += ts[i].nbytes;
  }
  unsigned char *cat = malloc(stream_n);
  size_t o = 0;
  for (int i = 0; i < n; i++)
    if (i % 3 != 1) {
      memcpy(cat + o, ts[i].data, ts[i].nbytes);
      o += ts[i].nbytes;
    }
  snprintf(name, sizeof name, "stream-%u.gguf", align);
  const char *ps = tmp_path(name);
  CHECK_EQ_INT(pl_gguf_write_file(w, ps), PL_EINVAL); /* some tensors have no data */
  CHECK_EQ_INT(pl_gguf_stream_begin(w, ps), PL_OK);
  CHECK_EQ_INT(pl_gguf_set_u32(w, "late.key", 1), PL_ESTATE);
  CHECK_EQ_INT(pl_gguf_add_tensor(w, "late", PL_DT_F32, 1, ts[0].ne, NULL), PL_ESTATE);
  CHECK_EQ_INT(pl_gguf_stream_begin(w, ps), PL_ESTATE);
  for (o = 0; o < stream_n; o += 7) {
    size_t k = stream_n - o < 7 ? stream_n - o : 7;
    int rc = pl_gguf_stream_write(w, cat + o, k);
    if (rc) {
      CHECK_EQ_INT(rc, PL_OK);
      break;
    }
  }
  CHECK_EQ_INT(pl_gguf_stream_end(w), PL_OK);
  CHECK_EQ_INT(pl_gguf_stream_write(w, cat, 1), PL_ESTATE);
  pl_gguf_writer_destroy(w);
  free(cat);
  long n1, n2;
  unsigned char *a = read_all(p, &n1), *bb = read_all(ps, &n2);
  CHECK(a && bb && n1 == n2 && memcmp(a, bb, (size_t)n1) == 0, "stream differs from one-shot");
  free(a);
  free(bb);
  free_tensors(ts, n);
}

/* A file with no tensors and no KVs is valid too. */
static void test_empty(void) {
  pl_gguf_writer *w;
  CHECK_EQ_INT(pl_gguf_writer_create(&w), PL_OK);
  const char *p = tmp_path("empty.gguf");
  CHECK_EQ_INT(pl_gguf_write_file(w, p), PL_OK);
  CHECK_EQ_INT(pl_gguf_write_file(w, p), PL_ESTATE);
  pl_gguf_writer_destroy(w);
  CHECK_EQ_INT(file_size(p), 32);
  pl_gguf *g = NULL;
  CHECK_EQ_INT(pl_gguf_open(p, &g), PL_OK);
  if (g) {
    CHECK_EQ_INT(pl_gguf_n_kv(g), 0);
    CHECK_EQ_INT(pl_gguf_n_tensors(g), 0);
  }
  pl_gguf_close(g);
}

/* ---- bad input -------------------------------------------------------------------------- */

static void test_errors(void) {
  pl_gguf_writer *w;
  CHECK_EQ_INT(pl_gguf_writer_create(&w), PL_OK);
  CHECK_EQ_INT(pl_gguf_set_u32(w, "k", 1), PL_OK);
  CHECK_EQ_INT(pl_gguf_set_u32(w, "k", 2), PL_EINVAL);
  CHECK(strstr(pl_last_error(), "duplicate key 'k'") != NULL, "%s", pl_last_error());
  CHECK_EQ_INT(pl_gguf_set_str(w, "k", "x"), PL_EINVAL);
  CHECK_EQ_INT(pl_gguf_set_arr_str(w, "k", NULL, NULL, 0), PL_EINVAL);
  CHECK_EQ_INT(pl_gguf_set_u32(w, "", 1), PL_EINVAL);
  CHECK_EQ_INT(pl_gguf_set_u32(w, NULL, 1), PL_EINVAL);
  CHECK_EQ_INT(pl_gguf_set_str(w, "s", NULL), PL_EINVAL);
  CHECK_EQ_INT(pl_gguf_set_arr(w, "a", PL_GGUF_STRING, "x", 1), PL_EINVAL);
  CHECK_EQ_INT(pl_gguf_set_arr(w, "a", PL_GGUF_ARRAY, "x", 1), PL_EINVAL);
  CHECK_EQ_INT(pl_gguf_set_arr(w, "a", PL_GGUF_INT32, NULL, 2), PL_EINVAL);
  uint8_t badbool[2] = {1, 2};
  CHECK_EQ_INT(pl_gguf_set_arr(w, "a", PL_GGUF_BOOL, badbool, 2), PL_EINVAL);
  const char *withnull[2] = {"a", NULL};
  CHECK_EQ_INT(pl_gguf_set_arr_str(w, "a", withnull, NULL, 2), PL_EINVAL);
  /* alignment: UINT32, power of two */
  CHECK_EQ_INT(pl_gguf_set_u32(w, "general.alignment", 0), PL_EINVAL);
  CHECK_EQ_INT(pl_gguf_set_u32(w, "general.alignment", 48), PL_EINVAL);
  CHECK_EQ_INT(pl_gguf_set_u64(w, "general.alignment", 64), PL_EINVAL);
  CHECK_EQ_INT(pl_gguf_writer_alignment(w), 32);
  CHECK_EQ_INT(pl_gguf_set_u32(w, "general.alignment", 16), PL_OK);
  CHECK_EQ_INT(pl_gguf_set_u32(w, "general.alignment", 64), PL_EINVAL); /* duplicate */
  CHECK_EQ_INT(pl_gguf_writer_alignment(w), 16);
  CHECK_EQ_INT(pl_gguf_writer_n_kv(w), 2);

  float x[64] = {0};
  int64_t ne[4] = {32, 2, 1, 1};
  CHECK_EQ_INT(pl_gguf_add_tensor(w, "t", PL_DT_F32, 2, ne, x), PL_OK);
  CHECK_EQ_INT(pl_gguf_add_tensor(w, "t", PL_DT_F16, 1, ne, x), PL_EINVAL);
  CHECK(strstr(pl_last_error(), "duplicate tensor 't'") != NULL, "%s", pl_last_error());
  CHECK_EQ_INT(pl_gguf_add_tensor(w, "", PL_DT_F32, 1, ne, x), PL_EINVAL);
  CHECK_EQ_INT(pl_gguf_add_tensor(w, NULL, PL_DT_F32, 1, ne, x), PL_EINVAL);
  char longname[80];
  memset(longname, 'n', sizeof longname - 1);
  longname[sizeof longname - 1] = 0;
  CHECK_EQ_INT(pl_gguf_add_tensor(w, longname, PL_DT_F32, 1, ne, x), PL_EINVAL);
  longname[PL_GGUF_MAX_NAME] = 0; /* exactly the limit is fine */
  CHECK_EQ_INT(pl_gguf_add_tensor(w, longname, PL_DT_F32, 1, ne, x), PL_OK);
  CHECK_EQ_INT(pl_gguf_add_tensor(w, "d0", PL_DT_F32, 0, ne, x), PL_EINVAL);
  CHECK_EQ_INT(pl_gguf_add_tensor(w, "d5", PL_DT_F32, 5, ne, x), PL_EINVAL);
  int64_t zero[2] = {32, 0}, neg[2] = {-32, 1}, odd[2] = {48, 1}, k[2] = {128, 1};
  CHECK_EQ_INT(pl_gguf_add_tensor(w, "z", PL_DT_F32, 2, zero, x), PL_EINVAL);
  CHECK_EQ_INT(pl_gguf_add_tensor(w, "n", PL_DT_F32, 2, neg, x), PL_EINVAL);
  CHECK_EQ_INT(pl_gguf_add_tensor(w, "q", PL_DT_Q8_0, 2, odd, x), PL_EINVAL);
  CHECK(strstr(pl_last_error(), "block size") != NULL, "%s", pl_last_error());
  CHECK_EQ_INT(pl_gguf_add_tensor(w, "qk", PL_DT_Q4_K, 2, k, x), PL_EINVAL);
  CHECK_EQ_INT(pl_gguf_add_tensor(w, "mlx", PL_DT_MLX_Q4, 1, ne, x), PL_EINVAL);
  CHECK_EQ_INT(pl_gguf_add_tensor(w, "bad", (pl_dtype)3, 1, ne, x), PL_EINVAL);
  int64_t huge[4] = {1ll << 40, 1ll << 40, 1ll << 40, 1};
  CHECK_EQ_INT(pl_gguf_add_tensor(w, "huge", PL_DT_F32, 3, huge, NULL), PL_EINVAL);
  CHECK_EQ_INT(pl_gguf_writer_n_tensors(w), 2);

  /* I/O error: a path in a directory that does not exist */
  CHECK_EQ_INT(pl_gguf_write_file(w, "/nonexistent-dir/x.gguf"), PL_EIO);
  CHECK(strstr(pl_last_error(), "/nonexistent-dir/x.gguf") != NULL, "%s", pl_last_error());
  /* after a failed open the writer is still usable */
  CHECK_EQ_INT(pl_gguf_write_file(w, tmp_path("after-eio.gguf")), PL_OK);
  pl_gguf_writer_destroy(w);

  /* streaming misuse: too many bytes, ending early (partial file removed), writing to a full
   * device */
  CHECK_EQ_INT(pl_gguf_writer_create(&w), PL_OK);
  CHECK_EQ_INT(pl_gguf_stream_write(w, x, 4), PL_ESTATE);
  CHECK_EQ_INT(pl_gguf_stream_end(w), PL_ESTATE);
  CHECK_EQ_INT(pl_gguf_add_tensor(w, "a", PL_DT_F32, 2, ne, NULL), PL_OK);
  const char *p = tmp_path("over.gguf");
  CHECK_EQ_INT(pl_gguf_stream_begin(w, p), PL_OK);
  CHECK_EQ_INT(pl_gguf_stream_write(w, x, sizeof x + 0), PL_OK); /* exactly 256 bytes */
  CHECK_EQ_INT(pl_gguf_stream_write(w, x, 1), PL_EINVAL);
  CHECK_EQ_INT(pl_gguf_stream_end(w), PL_ESTATE);
  CHECK_EQ_INT(file_size(p), -1);
  pl_gguf_writer_destroy(w);

  CHECK_EQ_INT(pl_gguf_writer_create(&w), PL_OK);
  CHECK_EQ_INT(pl_gguf_add_tensor(w, "a", PL_DT_F32, 2, ne, NULL), PL_OK);
  p = tmp_path("short.gguf");
  CHECK_EQ_INT(pl_gguf_stream_begin(w, p), PL_OK);
  CHECK_EQ_INT(pl_gguf_stream_write(w, x, 100), PL_OK);
  CHECK_EQ_INT(pl_gguf_stream_end(w), PL_EINVAL);
  CHECK(strstr(pl_last_error(), "'a'") != NULL, "%s", pl_last_error());
  CHECK_EQ_INT(file_size(p), -1);
  pl_gguf_writer_destroy(w);

  /* destroying a writer mid-stream removes the partial file */
  CHECK_EQ_INT(pl_gguf_writer_create(&w), PL_OK);
  CHECK_EQ_INT(pl_gguf_add_tensor(w, "a", PL_DT_F32, 2, ne, NULL), PL_OK);
  p = tmp_path("abandoned.gguf");
  CHECK_EQ_INT(pl_gguf_stream_begin(w, p), PL_OK);
  CHECK(file_size(p) >= 0);
  pl_gguf_writer_destroy(w);
  CHECK_EQ_INT(file_size(p), -1);

  if (access("/dev/full", W_OK) == 0) {
    CHECK_EQ_INT(pl_gguf_writer_create(&w), PL_OK);
    static float big[1 << 20]; /* 4 MiB: more than the stdio buffer */
    int64_t ne_big[1] = {1 << 20};
    CHECK_EQ_INT(pl_gguf_add_tensor(w, "big", PL_DT_F32, 1, ne_big, big), PL_OK);
    CHECK_EQ_INT(pl_gguf_write_file(w, "/dev/full"), PL_EIO);
    pl_gguf_writer_destroy(w);
    CHECK(access("/dev/full", F_OK) == 0, "a failed write must never remove a device node");
  }
}

/* ---- allocation failures ---------------------------------------------------------------- */

static int build_small(pl_gguf_writer **out) {
  static float data[32 * 4];
  static const char *strs[3] = {"a", "bb", "ccc"};
  int64_t ne[2] = {32, 4};
  pl_gguf_writer *w;
  PL_TRY(pl_gguf_writer_create(&w));
  int rc = PL_OK;
  char key[32];
  for (int i = 0; i < 40 && !rc; i++) { /* enough keys and tensors to grow every array */
    snprintf(key, sizeof key, "k.%d", i);
    rc = pl_gguf_set_u32(w, key, (uint32_t)i);
  }
  if (!rc)
    rc = pl_gguf_set_arr_str(w, "s", strs, NULL, 3);
  for (int i = 0; i < 70 && !rc; i++) {
    snprintf(key, sizeof key, "t.%d", i);
    rc = pl_gguf_add_tensor(w, key, PL_DT_F32, 2, ne, data);
  }
  if (!rc)
    rc = pl_gguf_write_file(w, tmp_path("alloc.gguf"));
  pl_gguf_writer_destroy(w);
  return rc;
}

static void test_alloc_failures(void) {
  pl_gguf_writer *w = NULL;
  size_t live0 = pl_alloc_live_bytes();
  long before = pl_alloc_count();
  CHECK_EQ_INT(build_small(&w), PL_OK);
  long n_allocs = pl_alloc_count() - before;
  CHECK(n_allocs > 3);
  for (long i = 0; i < n_allocs; i++) {
    pl_alloc_fail_after(i);
    int rc = build_small(&w);
    pl_alloc_fail_after(-1);
    CHECK_EQ_INT(rc, PL_ENOMEM);
    CHECK_EQ_INT(pl_alloc_live_bytes(), live0);
  }
}

/* ---- rewrite a real model ----------------------------------------------------------------- */

/* Copies every KV and tensor of `src` into a new writer, in the same order. */
static int copy_gguf(const pl_gguf *g, const char *out) {
  pl_gguf_writer *w;
  PL_TRY(pl_gguf_writer_create(&w));
  int rc = PL_OK;
  for (int64_t i = 0; i < pl_gguf_n_kv(g) && !rc; i++) {
    pl_gguf_str ks = pl_gguf_key_at(g, i);
    char key[256];
    snprintf(key, sizeof key, "%.*s", (int)ks.len, ks.ptr);
    pl_gguf_type t = pl_gguf_kv_type(g, i);
    int64_t iv = 0;
    float fv = 0;
    int bv = 0;
    pl_gguf_str sv;
    switch (t) {
    case PL_GGUF_UINT8: rc = pl_gguf_get_i64(g, key, &iv) || pl_gguf_set_u8(w, key, (uint8_t)iv); break;
    case PL_GGUF_INT8: rc = pl_gguf_get_i64(g, key, &iv) || pl_gguf_set_i8(w, key, (int8_t)iv); break;
    case PL_GGUF_UINT16: rc = pl_gguf_get_i64(g, key, &iv) || pl_gguf_set_u16(w, key, (uint16_t)iv); break;
    case PL_GGUF_INT16: rc = pl_gguf_get_i64(g, key, &iv) || pl_gguf_set_i16(w, key, (int16_t)iv); break;
    case PL_GGUF_UINT32: rc = pl_gguf_get_i64(g, key, &iv) || pl_gguf_set_u32(w, key, (uint32_t)iv); break;
    case PL_GGUF_INT32: rc = pl_gguf_get_i64(g, key, &iv) || pl_gguf_set_i32(w, key, (int32_t)iv); break;
    case PL_GGUF_UINT64: rc = pl_gguf_get_i64(g, key, &iv) || pl_gguf_set_u64(w, key, (uint64_t)iv); break;
    case PL_GGUF_INT64: rc = pl_gguf_get_i64(g, key, &iv) || pl_gguf_set_i64(w, key, iv); break;
    case PL_GGUF_FLOAT32: rc = pl_gguf_get_f32(g, key, &fv) || pl_gguf_set_f32(w, key, fv); break;
    case PL_GGUF_BOOL: rc = pl_gguf_get_bool(g, key, &bv) || pl_gguf_set_bool(w, key, bv); break;
    case PL_GGUF_STRING: rc = pl_gguf_get_str(g, key, &sv) || pl_gguf_set_strn(w, key, sv.ptr, sv.len); break;
    case PL_GGUF_ARRAY: {
      pl_gguf_type et;
      uint64_t n;
      const void *d;
      rc = pl_gguf_get_arr(g, key, &et, &n, &d);
      if (rc)
        break;
      if (et != PL_GGUF_STRING) {
        rc = pl_gguf_set_arr(w, key, et, d, n);
        break;
      }
      const char **ss = malloc(sizeof *ss * (n ? n : 1));
      uint64_t *ls = malloc(sizeof *ls * (n ? n : 1));
      for (uint64_t j = 0; j < n && !rc; j++) {
        rc = pl_gguf_arr_str(g, key, j, &sv);
        ss[j] = sv.ptr;
        ls[j] = sv.len;
      }
      if (!rc)
        rc = pl_gguf_set_arr_str(w, key, ss, ls, n);
      free(ss);
      free(ls);
      break;
    }
    default: rc = pl_fail(PL_EUNSUPPORTED, "copy: key %s of type %d", key, (int)t);
    }
  }
  for (int64_t i = 0; i < pl_gguf_n_tensors(g) && !rc; i++) {
    pl_tensor t;
    rc = pl_gguf_tensor_at(g, i, &t);
    if (!rc)
      rc = pl_gguf_add_tensor(w, t.name, t.type, t.n_dims, t.ne, t.data);
  }
  if (!rc)
    rc = pl_gguf_write_file(w, out);
  pl_gguf_writer_destroy(w);
  return rc;
}

static void test_rewrite_tinystories(const char *rel, const char *out_name) {
  const char *src = data_path(rel);
  pl_gguf *g = NULL;
  int rc = pl_gguf_open(src, &g);
  CHECK_EQ_INT(rc, PL_OK);
  if (rc) {
    fprintf(stderr, "  %s\n", pl_last_error());
    return;
  }
  const char *out = tmp_path(out_name);
  rc = copy_gguf(g, out);
  CHECK_EQ_INT(rc, PL_OK);
  if (rc)
    fprintf(stderr, "  %s\n", pl_last_error());
  pl_gguf_close(g);
  long n1 = 0, n2 = 0;
  unsigned char *a = read_all(src, &n1), *b = read_all(out, &n2);
  CHECK(a && b && n1 == n2 && memcmp(a, b, (size_t)n1) == 0,
        "rewrite of %s is not byte-identical (%ld vs %ld bytes)", rel, n1, n2);
  free(a);
  free(b);
}

int main(void) {
  const char *base = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
  snprintf(tmpdir, sizeof tmpdir, "%s/pl_gguf_write_XXXXXX", base);
  if (!mkdtemp(tmpdir)) {
    perror("mkdtemp");
    return 1;
  }
  test_exact_bytes();
  test_kv_round_trip();
  test_tensors(32);
  test_tensors(64);
  test_tensors(4096);
  test_tensors(1);
  test_empty();
  test_errors();
  test_alloc_failures();
  test_rewrite_tinystories("models/tinystories-280K.gguf", "ts-f32.gguf");
  test_rewrite_tinystories("models/tinystories-280K-f16.gguf", "ts-f16.gguf");
  CHECK_EQ_INT(pl_alloc_live_bytes(), 0);
  char cmd[600];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
  if (system(cmd) != 0)
    fprintf(stderr, "could not remove %s\n", tmpdir);
  return check_summary("test_gguf_write");
}
