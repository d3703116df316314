/* Test support: reading committed golden files (little-endian binaries + JSON manifests) and
 * driving the model runner for one sequence over a contiguous block layout. */
#ifndef PL_TEST_GOLDEN_IO_H
#define PL_TEST_GOLDEN_IO_H
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"
#include "check.h"
#include "model/model.h"
#include "model/runner.h"

static const char *src_path(const char *rel) {
  static char buf[4][1024];
  static int i;
  i = (i + 1) & 3;
  const char *env = getenv("PL_SOURCE_DIR");
  snprintf(buf[i], sizeof buf[i], "%s/%s", env ? env : PL_SOURCE_DIR, rel);
  return buf[i];
}

/* Whole file into a malloc'd buffer; *n = bytes. NULL if unreadable. */
static void *read_all(const char *path, size_t *n) {
  FILE *f = fopen(path, "rb");
  if (!f)
    return NULL;
  fseek(f, 0, SEEK_END);
  long len = ftell(f);
  fseek(f, 0, SEEK_SET);
  void *b = malloc((size_t)len + 1);
  if (fread(b, 1, (size_t)len, f) != (size_t)len) {
    free(b);
    b = NULL;
  }
  fclose(f);
  if (n)
    *n = (size_t)len;
  return b;
}

/* A backend on the test device (test_device(): PAGELLM_TEST_DEVICE, default cpu) with m's
 * weights uploaded to it. A model's tensors hold one device copy each (t->dev), so a model goes
 * to one GPU backend at a time; the CPU backend reads t->data and ignores t->dev. */
static int test_backend_create(pl_model *m, const char *device, int n_threads, pl_backend **be) {
  int rc = pl_backend_create(device, n_threads, be);
  if (rc < 0)
    return rc;
  if ((rc = pl_model_upload(m, *be, 0)) < 0) {
    (*be)->ops->destroy(*be);
    *be = NULL;
  }
  return rc;
}

/* One sequence on blocks 1..n of a runner: prefill (all logits rows) then decode steps. */
typedef struct {
  pl_runner *r;
  int bs, max_blocks, n_tok, n_vocab;
  int32_t *table;
} seq_runner;

/* ... with K/V kept as kv (PL_DT_F32 by default, seq_init) */
static int seq_init_kv(seq_runner *s, const pl_model *m, pl_backend *be, int max_tokens, int bs,
                       pl_dtype kv) {
  memset(s, 0, sizeof *s);
  s->bs = bs;
  s->max_blocks = (max_tokens + bs - 1) / bs;
  s->n_vocab = m->hp.n_vocab;
  pl_runner_params rp = {.max_tokens = max_tokens, .max_logits = max_tokens, .block_size = bs,
                         .n_blocks = s->max_blocks + 1, .kv_dtype = kv};
  s->table = malloc(sizeof(int32_t) * (size_t)s->max_blocks);
  /* reversed order, so block ids and logical positions never coincide */
  for (int i = 0; i < s->max_blocks; i++)
    s->table[i] = s->max_blocks - i;
  return pl_runner_create(m, be, &rp, &s->r);
}

static int seq_init(seq_runner *s, const pl_model *m, pl_backend *be, int max_tokens, int bs) {
  return seq_init_kv(s, m, be, max_tokens, bs, PL_DT_F32);
}

static void seq_free(seq_runner *s) {
  pl_runner_free(s->r);
  free(s->table);
}

/* Append ids[n] to the sequence; logits of all n positions into out[n][vocab]. */
static int seq_feed(seq_runner *s, const int32_t *ids, int n, float *out) {
  int32_t *pos = malloc(sizeof(int32_t) * (size_t)n), *slot = malloc(sizeof(int32_t) * (size_t)n),
          *rows = malloc(sizeof(int32_t) * (size_t)n);
  for (int i = 0; i < n; i++) {
    int p = s->n_tok + i;
    pos[i] = p;
    slot[i] = s->table[p / s->bs] * s->bs + p % s->bs;
    rows[i] = i;
  }
  int32_t qsl[2] = {0, n}, len = s->n_tok + n;
  pl_step_plan p = {.block_size = s->bs, .n_tokens = n, .n_seqs = 1,
                    .max_blocks_per_seq = s->max_blocks, .token_ids = (int32_t *)ids,
                    .positions = pos, .slot_mapping = slot, .query_start_loc = qsl,
                    .seq_lens = &len, .block_tables = s->table, .n_logits = n,
                    .logits_rows = rows};
  int rc = pl_runner_forward(s->r, &p, out);
  s->n_tok += n;
  free(pos);
  free(slot);
  free(rows);
  return rc;
}

static int argmax(const float *x, int n) {
  int b = 0;
  for (int i = 1; i < n; i++)
    if (x[i] > x[b])
      b = i;
  return b;
}
#endif
