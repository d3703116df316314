/* A Hugging Face checkpoint split into shards with model.safetensors.index.json loads to the
 * same model as the single file: the test splits tests/golden/hf/llama/model.safetensors into
 * two shard files (tensors alternate between them, each with its own header and offsets),
 * writes the index, and compares every logit of a prompt with the unsharded load. A weight_map
 * naming a missing shard is a clear error. */
#include <jansson.h>
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

static char dir[256];

static void write_shard(const char *name, json_t *hdr, const unsigned char *data,
                        const size_t *offs, const size_t *lens, size_t n) {
  /* rewrite data_offsets to be contiguous in this shard */
  size_t pos = 0;
  const char *k;
  json_t *v;
  size_t i = 0;
  json_object_foreach(hdr, k, v) {
    if (!strcmp(k, "__metadata__"))
      continue;
    json_object_set_new(v, "data_offsets", json_pack("[I,I]", (json_int_t)pos, (json_int_t)(pos + lens[i])));
    pos += lens[i++];
  }
  char *h = json_dumps(hdr, JSON_COMPACT);
  uint64_t hl = strlen(h);
  char p[512];
  snprintf(p, sizeof p, "%s/%s", dir, name);
  FILE *f = fopen(p, "wb");
  fwrite(&hl, 8, 1, f);
  fwrite(h, 1, hl, f);
  for (size_t j = 0; j < n; j++)
    fwrite(data + offs[j], 1, lens[j], f);
  fclose(f);
  free(h);
}

static float *logits_of(const char *path, const int32_t *ids, int n, int *vocab) {
  pl_model *m;
  if (pl_model_load(path, &m) < 0) {
    CHECK(0, "%s", pl_last_error());
    return NULL;
  }
  pl_backend *be;
  pl_backend_cpu_create(1, &be);
  seq_runner s;
  seq_init(&s, m, be, n, 16);
  *vocab = m->hp.n_vocab;
  float *lg = malloc(sizeof(float) * (size_t)n * *vocab);
  CHECK(seq_feed(&s, ids, n, lg) == 0);
  seq_free(&s);
  be->ops->destroy(be);
  pl_model_free(m);
  return lg;
}

int main(void) {
  size_t live0 = pl_alloc_live_bytes();
  snprintf(dir, sizeof dir, "/tmp/pl_shards_%d", (int)getpid());
  mkdir(dir, 0700);
  char src[1024];
  snprintf(src, sizeof src, "%s", src_path("tests/golden/hf/llama/model.safetensors"));
  size_t ns, nc;
  unsigned char *st = read_all(src, &ns);
  char *cfg = read_all(src_path("tests/golden/hf/llama/config.json"), &nc);
  CHECK(st && cfg);
  if (!st || !cfg)
    return check_summary("test_safetensors_shards");
  uint64_t hl;
  memcpy(&hl, st, 8);
  json_t *hdr = json_loadb((const char *)st + 8, hl, 0, NULL);
  const unsigned char *data = st + 8 + hl;
  json_t *h[2] = {json_object(), json_object()}, *wm = json_object();
  size_t offs[2][64], lens[2][64], cnt[2] = {0, 0}, i = 0;
  const char *k;
  json_t *v;
  json_object_foreach(hdr, k, v) {
    if (!strcmp(k, "__metadata__"))
      continue;
    int s = (int)(i++ % 2);
    json_t *o = json_array_get(json_object_get(v, "data_offsets"), 0),
           *e = json_array_get(json_object_get(v, "data_offsets"), 1);
    offs[s][cnt[s]] = (size_t)json_integer_value(o);
    lens[s][cnt[s]] = (size_t)(json_integer_value(e) - json_integer_value(o));
    cnt[s]++;
    json_object_set_new(h[s], k, json_deep_copy(v));
    json_object_set_new(wm, k, json_string(s ? "model-00002-of-00002.safetensors"
                                              : "model-00001-of-00002.safetensors"));
  }
  write_shard("model-00001-of-00002.safetensors", h[0], data, offs[0], lens[0], cnt[0]);
  write_shard("model-00002-of-00002.safetensors", h[1], data, offs[1], lens[1], cnt[1]);
  json_t *idx = json_pack("{s:{},s:O}", "metadata", "weight_map", wm);
  char p[512];
  snprintf(p, sizeof p, "%s/model.safetensors.index.json", dir);
  json_dump_file(idx, p, 0);
  snprintf(p, sizeof p, "%s/config.json", dir);
  FILE *f = fopen(p, "wb");
  fwrite(cfg, 1, nc, f);
  fclose(f);

  int32_t ids[12] = {1, 5, 9, 200, 17, 3, 44, 150, 7, 99, 250, 31};
  int V1 = 0, V2 = 0;
  char one[1024];
  snprintf(one, sizeof one, "%s", src_path("tests/golden/hf/llama"));
  float *a = logits_of(one, ids, 12, &V1), *b = logits_of(dir, ids, 12, &V2);
  CHECK_EQ_INT(V1, V2);
  if (a && b)
    CHECK(memcmp(a, b, sizeof(float) * 12 * (size_t)V1) == 0, "sharded load differs");
  printf("sharded (%zu + %zu tensors) == single file: %s\n", cnt[0], cnt[1],
         a && b && !memcmp(a, b, sizeof(float) * 12 * (size_t)V1) ? "yes" : "no");
  /* the index names a shard that is gone */
  snprintf(p, sizeof p, "%s/model-00002-of-00002.safetensors", dir);
  remove(p);
  pl_model *m = NULL;
  CHECK(pl_model_load(dir, &m) < 0);
  CHECK(strstr(pl_last_error(), "model-00002-of-00002") != NULL, "%s", pl_last_error());
  snprintf(p, sizeof p, "%s/model-00001-of-00002.safetensors", dir);
  remove(p);
  snprintf(p, sizeof p, "%s/model.safetensors.index.json", dir);
  remove(p);
  snprintf(p, sizeof p, "%s/config.json", dir);
  remove(p);
  rmdir(dir);
  free(a);
  free(b);
  free(st);
  free(cfg);
  json_decref(hdr);
  json_decref(h[0]);
  json_decref(h[1]);
  json_decref(wm);
  json_decref(idx);
  CHECK_EQ_INT(pl_alloc_live_bytes(), live0);
  return check_summary("test_safetensors_shards");
}
