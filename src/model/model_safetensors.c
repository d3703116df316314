/* Hugging Face / MLX safetensors directory → pl_model.
 *
 * A safetensors file is: u64 header_len | JSON header {name: {dtype, shape, data_offsets},
 * "__metadata__": {...}} | data. Every tensor's offsets are checked against the file and its
 * shape and dtype before use. Shards are listed by model.safetensors.index.json, or every
 * *.safetensors file in the directory is read.
 *
 * HF linear weights are [out, in] row-major, which is ggml's [in, out]: dims are reversed, the
 * bytes are used as is. HF checkpoints rotate half-split pairs (PL_ROPE_NEOX).
 * MLX affine quantization (config "quantization": {group_size, bits}): `W.weight` is U32
 * [out, in*bits/32], `W.scales` and `W.biases` are [out, in/group_size]. config.json is read by
 * hf_config.c (lenient: the shapes checked here catch bad sizes). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "model/hf_config.h"
#include "model/model.h"
#include "util/alloc.h"
#include "util/array.h"
#include "util/error.h"

int pl_model_load_safetensors(const char *dir, pl_model *m);

typedef struct {
  char name[96];
  char dtype[8];
  int n_dims;
  int64_t shape[4]; /* HF order (outermost first) */
  const uint8_t *data;
  size_t nbytes;
} st_entry;

typedef struct {
  st_entry *e;
  int n, cap;
  int q_bits, q_group; /* MLX quantization, 0 = none */
} st_index;

static int st_add(st_index *ix, const st_entry *e) {
  if (pl_array_grow(&ix->e, &ix->cap, (size_t)ix->n + 1, sizeof *ix->e, 256))
    return pl_fail(PL_ENOMEM, "out of memory");
  ix->e[ix->n++] = *e;
  return 0;
}

static size_t dtype_size(const char *d) {
  if (!strcmp(d, "F32") || !strcmp(d, "U32") || !strcmp(d, "I32")) return 4;
  if (!strcmp(d, "F16") || !strcmp(d, "BF16")) return 2;
  return 0;
}

static int map_file(pl_model *m, const char *path, const uint8_t **base, size_t *size) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return pl_fail(PL_EIO, "%s: cannot open: %s", path, strerror(errno));
  struct stat st;
  if (fstat(fd, &st) != 0 || st.st_size < 8) {
    close(fd);
    return pl_fail(PL_EFORMAT, "%s: too small for a safetensors file", path);
  }
  void *p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
  close(fd);
  if (p == MAP_FAILED)
    return pl_fail(PL_EIO, "%s: mmap failed", path);
  void **maps = pl_realloc(m->maps, (size_t)(m->n_maps + 1) * sizeof *maps);
  size_t *sizes = maps ? pl_realloc(m->map_sizes, (size_t)(m->n_maps + 1) * sizeof *sizes) : NULL;
  if (maps)
    m->maps = maps;
  if (!sizes) {
    munmap(p, (size_t)st.st_size);
    return pl_fail(PL_ENOMEM, "out of memory");
  }
  m->map_sizes = sizes;
  m->maps[m->n_maps] = p;
  m->map_sizes[m->n_maps++] = (size_t)st.st_size;
  *base = p;
  *size = (size_t)st.st_size;
  return 0;
}

static int read_shard(pl_model *m, st_index *ix, const char *path) {
  const uint8_t *base = NULL;
  size_t size = 0;
  PL_TRY(map_file(m, path, &base, &size));
  uint64_t hlen;
  memcpy(&hlen, base, 8);
  if (hlen > size - 8 || hlen > (100u << 20))
    return pl_fail(PL_EFORMAT, "%s: header length %llu exceeds the file", path,
                   (unsigned long long)hlen);
  json_error_t jerr;
  json_t *h = json_loadb((const char *)base + 8, hlen, 0, &jerr);
  if (!h || !json_is_object(h)) {
    json_decref(h);
    return pl_fail(PL_EFORMAT, "%s: bad JSON header: %s", path, jerr.text);
  }
  const uint8_t *data = base + 8 + hlen;
  size_t dsize = size - 8 - hlen;
  const char *key;
  json_t *v;
  int rc = 0;
  json_object_foreach(h, key, v) {
    if (!strcmp(key, "__metadata__"))
      continue;
    st_entry e;
    memset(&e, 0, sizeof e);
    json_t *dt = json_object_get(v, "dtype"), *sh = json_object_get(v, "shape"),
           *off = json_object_get(v, "data_offsets");
    if (strlen(key) >= sizeof e.name || !json_is_string(dt) || !json_is_array(sh) ||
        json_array_size(sh) > 4 || !json_is_array(off) || json_array_size(off) != 2) {
      rc = pl_fail(PL_EFORMAT, "%s: bad entry for tensor '%s'", path, key);
      break;
    }
    strcpy(e.name, key);
    snprintf(e.dtype, sizeof e.dtype, "%s", json_string_value(dt));
    size_t es = dtype_size(e.dtype);
    e.n_dims = (int)json_array_size(sh);
    uint64_t nel = 1;
    for (int d = 0; d < e.n_dims; d++) {
      json_t *x = json_array_get(sh, (size_t)d);
      json_int_t n = json_is_integer(x) ? json_integer_value(x) : -1;
      if (n <= 0 || n > (1ll << 40) || nel > (1ull << 42) / (uint64_t)n) {
        rc = pl_fail(PL_EFORMAT, "%s: tensor '%s' has a bad shape", path, key);
        break;
      }
      e.shape[d] = n;
      nel *= (uint64_t)n;
    }
    if (rc)
      break;
    json_int_t a = json_integer_value(json_array_get(off, 0)),
               b = json_integer_value(json_array_get(off, 1));
    if (!es) {
      continue; /* a dtype we never read (e.g. I64 position ids): ignore the tensor */
    }
    if (a < 0 || b < a || (uint64_t)b > dsize || (uint64_t)(b - a) != nel * es) {
      rc = pl_fail(PL_EFORMAT, "%s: tensor '%s' data offsets [%lld, %lld] do not match its shape "
                   "or exceed the file",
                   path, key, (long long)a, (long long)b);
      break;
    }
    e.data = data + a;
    e.nbytes = (size_t)(b - a);
    if ((rc = st_add(ix, &e)) < 0)
      break;
  }
  json_decref(h);
  return rc;
}

static const st_entry *st_find(const st_index *ix, const char *name) {
  for (int i = 0; i < ix->n; i++)
    if (!strcmp(ix->e[i].name, name))
      return &ix->e[i];
  return NULL;
}

static pl_dtype st_dtype(const char *d) {
  if (!strcmp(d, "F16")) return PL_DT_F16;
  if (!strcmp(d, "BF16")) return PL_DT_BF16;
  return PL_DT_F32;
}

/* Fill t from the HF tensor `name` (+ MLX scales/biases when quantized). */
static int st_tensor(pl_model *m, const st_index *ix, const char *name, pl_tensor *t,
                     int required) {
  memset(t, 0, sizeof *t);
  char full[128];
  snprintf(full, sizeof full, "%s.weight", name);
  const char *nm = strstr(name, ".bias") ? name : full;
  const st_entry *e = st_find(ix, nm);
  if (!e)
    return required ? pl_fail(PL_EFORMAT, "%s: missing tensor '%s'", m->path, nm) : 0;
  snprintf(t->name, sizeof t->name, "%s", nm);
  t->n_dims = e->n_dims;
  for (int d = 0; d < 4; d++)
    t->ne[d] = d < e->n_dims ? e->shape[e->n_dims - 1 - d] : 1;
  t->data = e->data;
  t->nbytes = e->nbytes;
  if (!strcmp(e->dtype, "U32")) {
    char sn[128], bn[128];
    snprintf(sn, sizeof sn, "%s.scales", name);
    snprintf(bn, sizeof bn, "%s.biases", name);
    const st_entry *s = st_find(ix, sn), *b = st_find(ix, bn);
    int bits = ix->q_bits, gs = ix->q_group;
    if (!s || !b || !bits || !gs || e->n_dims != 2)
      return pl_fail(PL_EFORMAT, "%s: packed tensor '%s' without scales/biases or quantization "
                     "config", m->path, nm);
    int64_t in = e->shape[1] * 32 / bits, out = e->shape[0];
    if (in % gs || s->n_dims != 2 || s->shape[0] != out || s->shape[1] != in / gs ||
        b->n_dims != 2 || b->shape[0] != out || b->shape[1] != in / gs ||
        strcmp(s->dtype, b->dtype) || !strcmp(s->dtype, "U32"))
      return pl_fail(PL_EFORMAT, "%s: scales/biases of '%s' do not match its packed shape",
                     m->path, nm);
    t->type = bits == 4 ? PL_DT_MLX_Q4 : PL_DT_MLX_Q8;
    t->ne[0] = in;
    t->scales = s->data;
    t->biases = b->data;
    t->sb_type = st_dtype(s->dtype);
    t->group_size = gs;
    return 0;
  }
  if (strcmp(e->dtype, "F32") && strcmp(e->dtype, "F16") && strcmp(e->dtype, "BF16"))
    return pl_fail(PL_EFORMAT, "%s: tensor '%s' has unsupported dtype %s", m->path, nm, e->dtype);
  t->type = st_dtype(e->dtype);
  if (t->n_dims == 1)
    return pl_model_own_f32(m, t);
  return 0;
}

static int load_shards(pl_model *m, const char *dir, st_index *ix) {
  char p[4096];
  snprintf(p, sizeof p, "%s/model.safetensors.index.json", dir);
  json_error_t jerr;
  json_t *idx = json_load_file(p, 0, &jerr);
  int rc = 0;
  if (idx) {
    json_t *wm = json_object_get(idx, "weight_map");
    const char *k;
    json_t *v;
    /* distinct file names, in first-seen order */
    const char *seen[256];
    int ns = 0;
    json_object_foreach(wm, k, v) {
      const char *f = json_string_value(v);
      if (!f || strchr(f, '/')) {
        rc = pl_fail(PL_EFORMAT, "%s: bad weight_map entry for '%s'", p, k);
        break;
      }
      int dup = 0;
      for (int i = 0; i < ns; i++)
        dup |= !strcmp(seen[i], f);
      if (dup)
        continue;
      if (ns == 256) {
        rc = pl_fail(PL_EUNSUPPORTED, "%s: more than 256 shards", p);
        break;
      }
      seen[ns++] = f;
      char fp[4096];
      snprintf(fp, sizeof fp, "%s/%s", dir, f);
      if ((rc = read_shard(m, ix, fp)) < 0)
        break;
    }
    json_decref(idx);
    return rc;
  }
  DIR *d = opendir(dir);
  if (!d)
    return pl_fail(PL_EIO, "%s: cannot list directory", dir);
  struct dirent *de;
  int found = 0;
  while ((de = readdir(d))) {
    size_t n = strlen(de->d_name);
    if (n > 12 && !strcmp(de->d_name + n - 12, ".safetensors")) {
      snprintf(p, sizeof p, "%s/%s", dir, de->d_name);
      if ((rc = read_shard(m, ix, p)) < 0)
        break;
      found++;
    }
  }
  closedir(d);
  if (!rc && !found)
    rc = pl_fail(PL_EFORMAT, "%s: no *.safetensors files", dir);
  return rc;
}

static int build(pl_model *m, st_index *ix) {
  pl_hparams *hp = &m->hp;
  PL_TRY(st_tensor(m, ix, "model.embed_tokens", &m->tok_embd, 1));
  PL_TRY(st_tensor(m, ix, "model.norm", &m->output_norm, 1));
  PL_TRY(st_tensor(m, ix, "lm_head", &m->output, 0));
  if (!m->output.data) {
    m->output = m->tok_embd;
    hp->tied_embeddings = 1;
  } else {
    hp->tied_embeddings = 0;
  }
  if (hp->n_layer <= 0 || hp->n_layer > 1024)
    return pl_fail(PL_EFORMAT, "%s: absurd num_hidden_layers %d", m->path, hp->n_layer);
  m->layers = pl_calloc((size_t)hp->n_layer, sizeof *m->layers);
  if (!m->layers)
    return pl_fail(PL_ENOMEM, "%s: out of memory", m->path);
  for (int l = 0; l < hp->n_layer; l++) {
    pl_layer *L = &m->layers[l];
    char n[128];
#define T(field, suffix, req)                               \
  snprintf(n, sizeof n, "model.layers.%d." suffix, l);      \
  PL_TRY(st_tensor(m, ix, n, &L->field, req));
    T(attn_norm, "input_layernorm", 1);
    T(wq, "self_attn.q_proj", 1);
    T(wk, "self_attn.k_proj", 1);
    T(wv, "self_attn.v_proj", 1);
    T(bq, "self_attn.q_proj.bias", 0);
    T(bk, "self_attn.k_proj.bias", 0);
    T(bv, "self_attn.v_proj.bias", 0);
    T(q_norm, "self_attn.q_norm", 0);
    T(k_norm, "self_attn.k_norm", 0);
    T(wo, "self_attn.o_proj", 1);
    T(ffn_norm, "post_attention_layernorm", 1);
    T(w_gate, "mlp.gate_proj", 1);
    T(w_up, "mlp.up_proj", 1);
    T(w_down, "mlp.down_proj", 1);
#undef T
  }
  return pl_model_init_rope(m, NULL);
}

int pl_model_load_safetensors(const char *dir, pl_model *m) {
  m->format = "safetensors";
  m->hf_dir = pl_strdup(dir);
  if (!m->hf_dir)
    return pl_fail(PL_ENOMEM, "out of memory");
  char p[4096];
  snprintf(p, sizeof p, "%s/config.json", dir);
  st_index ix = {0};
  pl_hf_quant q;
  /* lenient: the tensors' shapes are checked against these sizes at load */
  int rc = pl_hf_config_load(p, 0, &m->hp, &q);
  if (!rc) {
    m->hp.rope_dim = m->hp.head_dim;
    m->hp.rope_style = PL_ROPE_NEOX; /* HF checkpoints rotate half-split pairs */
    ix.q_bits = q.bits;
    ix.q_group = q.group_size;
  }
  if (!rc)
    rc = load_shards(m, dir, &ix);
  if (!rc)
    rc = build(m, &ix);
  pl_free(ix.e);
  return rc;
}
