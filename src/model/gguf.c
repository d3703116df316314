/* GGUF reader. The file is mmapped read-only; open() walks the whole header once with a
 * bounds-checked cursor, recording the offset of every key/value and tensor descriptor, so
 * the getters never re-validate and never read past the mapping.
 *
 * Layout: magic "GGUF" | u32 version | u64 n_tensors | u64 n_kv | kv[n_kv] |
 *         tensor_info[n_tensors] | pad to alignment | tensor data
 * v1 files (u32 counts) are refused: nothing current writes them. */
#include "model/gguf.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/alloc.h"
#include "util/error.h"

#define GGUF_MAX_DIMS 4
#define GGUF_MAX_NAME 95 /* pl_tensor.name holds 96 bytes */
#define GGUF_MAX_COUNT (1ull << 28)

typedef struct {
  pl_gguf_str key;
  pl_gguf_type type;
  const uint8_t *val;      /* value bytes (for arrays: after the array header) */
  pl_gguf_type arr_type;   /* arrays only */
  uint64_t arr_n;          /* arrays only */
  uint64_t *str_offsets;   /* string arrays: offset of each element from val (built at open) */
} gguf_kv;

typedef struct {
  pl_gguf_str name;
  uint32_t n_dims;
  int64_t ne[GGUF_MAX_DIMS];
  pl_dtype type;
  uint64_t offset; /* from the data section start */
  size_t nbytes;
} gguf_tinfo;

struct pl_gguf {
  char *path;
  const uint8_t *map;
  size_t size;
  uint32_t version;
  int64_t n_kv, n_tensors;
  gguf_kv *kv;
  gguf_tinfo *ti;
  size_t data_off;
  uint32_t alignment;
};

typedef struct {
  const uint8_t *p, *end, *base;
  const char *path;
} cursor;

static int need(cursor *c, uint64_t n, const char *what) {
  if ((uint64_t)(c->end - c->p) < n)
    return pl_fail(PL_EFORMAT, "%s: truncated while reading %s (need %llu bytes at offset %lld)",
                   c->path, what, (unsigned long long)n, (long long)(c->p - c->base));
  return 0;
}

#define RD(c, T, out, what)                 \
  do {                                      \
    PL_TRY(need((c), sizeof(T), (what)));   \
    memcpy((out), (c)->p, sizeof(T));       \
    (c)->p += sizeof(T);                    \
  } while (0)

static int rd_str(cursor *c, pl_gguf_str *s, const char *what) {
  uint64_t n;
  RD(c, uint64_t, &n, what);
  PL_TRY(need(c, n, what));
  s->ptr = (const char *)c->p;
  s->len = n;
  c->p += n;
  return 0;
}

static size_t scalar_size(pl_gguf_type t) {
  switch (t) {
  case PL_GGUF_UINT8: case PL_GGUF_INT8: case PL_GGUF_BOOL: return 1;
  case PL_GGUF_UINT16: case PL_GGUF_INT16: return 2;
  case PL_GGUF_UINT32: case PL_GGUF_INT32: case PL_GGUF_FLOAT32: return 4;
  case PL_GGUF_UINT64: case PL_GGUF_INT64: case PL_GGUF_FLOAT64: return 8;
  default: return 0;
  }
}

/* Skip (and validate) one value of type t. */
static int skip_value(cursor *c, pl_gguf_type t, gguf_kv *kv) {
  if (t == PL_GGUF_STRING) {
    pl_gguf_str s;
    return rd_str(c, &s, "string value");
  }
  if (t == PL_GGUF_ARRAY) {
    uint32_t at;
    uint64_t n;
    RD(c, uint32_t, &at, "array type");
    RD(c, uint64_t, &n, "array length");
    if (at == PL_GGUF_ARRAY)
      return pl_fail(PL_EFORMAT, "%s: nested arrays are not supported (key '%.*s')", c->path,
                     (int)kv->key.len, kv->key.ptr);
    if (at != PL_GGUF_STRING && scalar_size((pl_gguf_type)at) == 0)
      return pl_fail(PL_EFORMAT, "%s: unknown array element type %u (key '%.*s')", c->path, at,
                     (int)kv->key.len, kv->key.ptr);
    kv->arr_type = (pl_gguf_type)at;
    kv->arr_n = n;
    kv->val = c->p;
    if (at == PL_GGUF_STRING) {
      /* index every element now (each needs >= 8 bytes, so n is bounded by the file) */
      if (n > (uint64_t)(c->end - c->p) / 8)
        return pl_fail(PL_EFORMAT, "%s: string array of %llu elements for key '%.*s' exceeds "
                       "the file", c->path, (unsigned long long)n, (int)kv->key.len, kv->key.ptr);
      kv->str_offsets = pl_malloc((n ? n : 1) * sizeof *kv->str_offsets);
      if (!kv->str_offsets)
        return pl_fail(PL_ENOMEM, "%s: out of memory indexing '%.*s'", c->path,
                       (int)kv->key.len, kv->key.ptr);
      for (uint64_t i = 0; i < n; i++) {
        pl_gguf_str s;
        kv->str_offsets[i] = (uint64_t)(c->p - kv->val);
        PL_TRY(rd_str(c, &s, "string array element"));
      }
      return 0;
    }
    size_t es = scalar_size((pl_gguf_type)at);
    if (n > (uint64_t)(c->end - c->p) / es)
      return pl_fail(PL_EFORMAT, "%s: array of %llu elements for key '%.*s' exceeds the file",
                     c->path, (unsigned long long)n, (int)kv->key.len, kv->key.ptr);
    c->p += n * es;
    return 0;
  }
  size_t sz = scalar_size(t);
  if (!sz)
    return pl_fail(PL_EFORMAT, "%s: unknown value type %d (key '%.*s')", c->path, (int)t,
                   (int)kv->key.len, kv->key.ptr);
  PL_TRY(need(c, sz, "value"));
  if (t == PL_GGUF_BOOL && *c->p > 1)
    return pl_fail(PL_EFORMAT, "%s: bool value %u for key '%.*s'", c->path, *c->p,
                   (int)kv->key.len, kv->key.ptr);
  c->p += sz;
  return 0;
}

static int known_type(uint32_t t) {
  switch (t) {
  case PL_DT_F32: case PL_DT_F16: case PL_DT_BF16: case PL_DT_Q8_0: case PL_DT_Q4_0:
  case PL_DT_Q4_K: case PL_DT_Q6_K:
    return 1;
  }
  return 0;
}

static int parse(pl_gguf *g) {
  cursor c = {g->map, g->map + g->size, g->map, g->path};
  uint32_t magic;
  RD(&c, uint32_t, &magic, "magic");
  if (memcmp(&magic, "GGUF", 4) != 0)
    return pl_fail(PL_EFORMAT, "%s: not a GGUF file (bad magic)", g->path);
  RD(&c, uint32_t, &g->version, "version");
  if (g->version < 2 || g->version > 3)
    return pl_fail(PL_EFORMAT, "%s: unsupported GGUF version %u (need 2 or 3)", g->path,
                   g->version);
  uint64_t nt, nkv;
  RD(&c, uint64_t, &nt, "tensor count");
  RD(&c, uint64_t, &nkv, "metadata count");
  /* Each kv needs >= 12 bytes and each tensor info >= 24: bound counts by the file size. */
  if (nkv > GGUF_MAX_COUNT || nt > GGUF_MAX_COUNT)
    return pl_fail(PL_EFORMAT, "%s: absurd %s count %llu", g->path,
                   nkv > GGUF_MAX_COUNT ? "metadata" : "tensor",
                   (unsigned long long)(nkv > GGUF_MAX_COUNT ? nkv : nt));
  if (nkv * 12 + nt * 24 > g->size)
    return pl_fail(PL_EFORMAT, "%s: truncated or corrupt: %llu keys and %llu tensors cannot fit "
                   "in %zu bytes", g->path, (unsigned long long)nkv, (unsigned long long)nt,
                   g->size);
  g->n_kv = (int64_t)nkv;
  g->n_tensors = (int64_t)nt;
  g->kv = pl_calloc(nkv ? nkv : 1, sizeof *g->kv);
  g->ti = pl_calloc(nt ? nt : 1, sizeof *g->ti);
  if (!g->kv || !g->ti)
    return pl_fail(PL_ENOMEM, "%s: out of memory for %llu keys", g->path, (unsigned long long)nkv);
  g->alignment = 32;
  for (uint64_t i = 0; i < nkv; i++) {
    gguf_kv *kv = &g->kv[i];
    PL_TRY(rd_str(&c, &kv->key, "key"));
    for (uint64_t j = 0; j < i; j++)
      if (g->kv[j].key.len == kv->key.len && !memcmp(g->kv[j].key.ptr, kv->key.ptr, kv->key.len))
        return pl_fail(PL_EFORMAT, "%s: duplicate key '%.*s'", g->path, (int)kv->key.len,
                       kv->key.ptr);
    uint32_t t;
    RD(&c, uint32_t, &t, "value type");
    kv->type = (pl_gguf_type)t;
    kv->val = c.p;
    PL_TRY(skip_value(&c, kv->type, kv));
    if (kv->key.len == 17 && !memcmp(kv->key.ptr, "general.alignment", 17)) {
      if (kv->type != PL_GGUF_UINT32)
        return pl_fail(PL_EFORMAT, "%s: general.alignment must be uint32", g->path);
      memcpy(&g->alignment, kv->val, 4);
      if (g->alignment == 0 || (g->alignment & (g->alignment - 1)) || g->alignment > 65536)
        return pl_fail(PL_EFORMAT, "%s: bad alignment %u", g->path, g->alignment);
    }
  }
  for (uint64_t i = 0; i < nt; i++) {
    gguf_tinfo *t = &g->ti[i];
    PL_TRY(rd_str(&c, &t->name, "tensor name"));
    if (t->name.len == 0 || t->name.len > GGUF_MAX_NAME)
      return pl_fail(PL_EFORMAT, "%s: tensor %llu has a name of length %llu", g->path,
                     (unsigned long long)i, (unsigned long long)t->name.len);
    RD(&c, uint32_t, &t->n_dims, "tensor dims");
    if (t->n_dims < 1 || t->n_dims > GGUF_MAX_DIMS)
      return pl_fail(PL_EFORMAT, "%s: tensor '%.*s' has %u dims", g->path, (int)t->name.len,
                     t->name.ptr, t->n_dims);
    uint64_t nel = 1;
    for (int d = 0; d < GGUF_MAX_DIMS; d++)
      t->ne[d] = 1;
    for (uint32_t d = 0; d < t->n_dims; d++) {
      uint64_t ne;
      RD(&c, uint64_t, &ne, "tensor shape");
      if (ne == 0 || ne > (1ull << 40) || nel > (1ull << 42) / ne)
        return pl_fail(PL_EFORMAT, "%s: tensor '%.*s' has absurd dimension %llu", g->path,
                       (int)t->name.len, t->name.ptr, (unsigned long long)ne);
      t->ne[d] = (int64_t)ne;
      nel *= ne;
    }
    uint32_t ty;
    RD(&c, uint32_t, &ty, "tensor type");
    if (!known_type(ty))
      return pl_fail(PL_EFORMAT, "%s: tensor '%.*s' has unsupported type %u", g->path,
                     (int)t->name.len, t->name.ptr, ty);
    t->type = (pl_dtype)ty;
    RD(&c, uint64_t, &t->offset, "tensor offset");
    size_t rb = pl_dtype_row_bytes(t->type, t->ne[0]);
    if (!rb)
      return pl_fail(PL_EFORMAT, "%s: tensor '%.*s': row of %lld is not a multiple of the %s block",
                     g->path, (int)t->name.len, t->name.ptr, (long long)t->ne[0],
                     pl_dtype_name(t->type));
    t->nbytes = rb * (size_t)(nel / (uint64_t)t->ne[0]);
    for (uint64_t j = 0; j < i; j++)
      if (g->ti[j].name.len == t->name.len && !memcmp(g->ti[j].name.ptr, t->name.ptr, t->name.len))
        return pl_fail(PL_EFORMAT, "%s: duplicate tensor '%.*s'", g->path, (int)t->name.len,
                       t->name.ptr);
  }
  size_t off = (size_t)(c.p - g->map);
  g->data_off = (off + g->alignment - 1) / g->alignment * g->alignment;
  if (nt && g->data_off > g->size)
    return pl_fail(PL_EFORMAT, "%s: truncated before the tensor data", g->path);
  for (uint64_t i = 0; i < nt; i++) {
    gguf_tinfo *t = &g->ti[i];
    if (t->offset % g->alignment)
      return pl_fail(PL_EFORMAT, "%s: tensor '%.*s' offset %llu is not aligned to %u", g->path,
                     (int)t->name.len, t->name.ptr, (unsigned long long)t->offset, g->alignment);
    if (t->offset > g->size - g->data_off || t->nbytes > g->size - g->data_off - t->offset)
      return pl_fail(PL_EFORMAT,
                     "%s: tensor '%.*s' data out of range (offset %llu + %zu bytes > file data %zu; "
                     "truncated file?)",
                     g->path, (int)t->name.len, t->name.ptr, (unsigned long long)t->offset,
                     t->nbytes, g->size - g->data_off);
  }
  return 0;
}

int pl_gguf_open(const char *path, pl_gguf **out) {
  *out = NULL;
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return pl_fail(PL_EIO, "%s: cannot open: %s", path, strerror(errno));
  struct stat st;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    close(fd);
    return pl_fail(PL_EIO, "%s: not a regular file", path);
  }
  if (st.st_size < 24) {
    close(fd);
    return pl_fail(PL_EFORMAT, "%s: file too small for a GGUF header (%lld bytes)", path,
                   (long long)st.st_size);
  }
  void *map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
  close(fd);
  if (map == MAP_FAILED)
    return pl_fail(PL_EIO, "%s: mmap failed: %s", path, strerror(errno));
  pl_gguf *g = pl_calloc(1, sizeof *g);
  if (!g) {
    munmap(map, (size_t)st.st_size);
    return pl_fail(PL_ENOMEM, "%s: out of memory", path);
  }
  g->map = map;
  g->size = (size_t)st.st_size;
  g->path = pl_strdup(path);
  int rc = g->path ? parse(g) : pl_fail(PL_ENOMEM, "out of memory");
  if (rc < 0) {
    pl_gguf_close(g);
    return rc;
  }
  *out = g;
  return PL_OK;
}

void pl_gguf_close(pl_gguf *g) {
  if (!g)
    return;
  if (g->kv)
    for (int64_t i = 0; i < g->n_kv; i++)
      pl_free(g->kv[i].str_offsets);
  pl_free(g->kv);
  pl_free(g->ti);
  if (g->map)
    munmap((void *)g->map, g->size);
  pl_free(g->path);
  pl_free(g);
}

const char *pl_gguf_path(const pl_gguf *g) { return g->path; }
uint32_t pl_gguf_version(const pl_gguf *g) { return g->version; }
int64_t pl_gguf_n_kv(const pl_gguf *g) { return g->n_kv; }
int64_t pl_gguf_n_tensors(const pl_gguf *g) { return g->n_tensors; }
pl_gguf_str pl_gguf_key_at(const pl_gguf *g, int64_t i) { return g->kv[i].key; }
pl_gguf_type pl_gguf_kv_type(const pl_gguf *g, int64_t i) { return g->kv[i].type; }

int64_t pl_gguf_find_key(const pl_gguf *g, const char *key) {
  size_t n = strlen(key);
  for (int64_t i = 0; i < g->n_kv; i++)
    if (g->kv[i].key.len == n && !memcmp(g->kv[i].key.ptr, key, n))
      return i;
  return -1;
}

static const gguf_kv *find(const pl_gguf *g, const char *key) {
  int64_t i = pl_gguf_find_key(g, key);
  return i < 0 ? NULL : &g->kv[i];
}

/* Read an integer-typed value as int64 (uint64 values above INT64_MAX are refused). */
static int as_i64(const pl_gguf *g, const char *key, const gguf_kv *kv, int64_t *out) {
  const uint8_t *v = kv->val;
  switch (kv->type) {
  case PL_GGUF_UINT8: *out = *v; return 0;
  case PL_GGUF_INT8: *out = (int8_t)*v; return 0;
  case PL_GGUF_BOOL: *out = *v; return 0;
  case PL_GGUF_UINT16: { uint16_t x; memcpy(&x, v, 2); *out = x; return 0; }
  case PL_GGUF_INT16: { int16_t x; memcpy(&x, v, 2); *out = x; return 0; }
  case PL_GGUF_UINT32: { uint32_t x; memcpy(&x, v, 4); *out = x; return 0; }
  case PL_GGUF_INT32: { int32_t x; memcpy(&x, v, 4); *out = x; return 0; }
  case PL_GGUF_INT64: { int64_t x; memcpy(&x, v, 8); *out = x; return 0; }
  case PL_GGUF_UINT64: {
    uint64_t x;
    memcpy(&x, v, 8);
    if (x > (uint64_t)INT64_MAX)
      return pl_fail(PL_EFORMAT, "%s: key '%s' value too large", g->path, key);
    *out = (int64_t)x;
    return 0;
  }
  default:
    return pl_fail(PL_EFORMAT, "%s: key '%s' is not an integer", g->path, key);
  }
}

int pl_gguf_get_i64(const pl_gguf *g, const char *key, int64_t *out) {
  const gguf_kv *kv = find(g, key);
  if (!kv)
    return PL_ENOTFOUND;
  return as_i64(g, key, kv, out);
}

int pl_gguf_get_u32(const pl_gguf *g, const char *key, uint32_t *out) {
  int64_t v;
  int rc = pl_gguf_get_i64(g, key, &v);
  if (rc)
    return rc;
  if (v < 0 || v > (int64_t)UINT32_MAX)
    return pl_fail(PL_EFORMAT, "%s: key '%s' = %lld out of range", g->path, key, (long long)v);
  *out = (uint32_t)v;
  return 0;
}

int pl_gguf_get_f32(const pl_gguf *g, const char *key, float *out) {
  const gguf_kv *kv = find(g, key);
  if (!kv)
    return PL_ENOTFOUND;
  if (kv->type == PL_GGUF_FLOAT32) {
    memcpy(out, kv->val, 4);
    return 0;
  }
  if (kv->type == PL_GGUF_FLOAT64) {
    double d;
    memcpy(&d, kv->val, 8);
    *out = (float)d;
    return 0;
  }
  return pl_fail(PL_EFORMAT, "%s: key '%s' is not a float", g->path, key);
}

int pl_gguf_get_bool(const pl_gguf *g, const char *key, int *out) {
  const gguf_kv *kv = find(g, key);
  if (!kv)
    return PL_ENOTFOUND;
  if (kv->type != PL_GGUF_BOOL)
    return pl_fail(PL_EFORMAT, "%s: key '%s' is not a bool", g->path, key);
  *out = kv->val[0] != 0;
  return 0;
}

int pl_gguf_get_str(const pl_gguf *g, const char *key, pl_gguf_str *out) {
  const gguf_kv *kv = find(g, key);
  if (!kv)
    return PL_ENOTFOUND;
  if (kv->type != PL_GGUF_STRING)
    return pl_fail(PL_EFORMAT, "%s: key '%s' is not a string", g->path, key);
  memcpy(&out->len, kv->val, 8);
  out->ptr = (const char *)kv->val + 8;
  return 0;
}

int pl_gguf_get_arr(const pl_gguf *g, const char *key, pl_gguf_type *elem_type, uint64_t *n,
                    const void **data) {
  const gguf_kv *kv = find(g, key);
  if (!kv)
    return PL_ENOTFOUND;
  if (kv->type != PL_GGUF_ARRAY)
    return pl_fail(PL_EFORMAT, "%s: key '%s' is not an array", g->path, key);
  *elem_type = kv->arr_type;
  *n = kv->arr_n;
  *data = kv->val;
  return 0;
}

int pl_gguf_arr_str(const pl_gguf *g, const char *key, uint64_t i, pl_gguf_str *out) {
  int64_t k = pl_gguf_find_key(g, key);
  if (k < 0)
    return PL_ENOTFOUND;
  const gguf_kv *kv = &g->kv[k];
  if (kv->type != PL_GGUF_ARRAY || kv->arr_type != PL_GGUF_STRING)
    return pl_fail(PL_EFORMAT, "%s: key '%s' is not a string array", g->path, key);
  if (i >= kv->arr_n)
    return pl_fail(PL_ERANGE, "%s: index %llu out of range for '%s'", g->path,
                   (unsigned long long)i, key);
  const uint8_t *p = kv->val + kv->str_offsets[i];
  memcpy(&out->len, p, 8);
  out->ptr = (const char *)p + 8;
  return 0;
}

static void fill_tensor(const pl_gguf *g, const gguf_tinfo *t, pl_tensor *out) {
  memset(out, 0, sizeof *out);
  memcpy(out->name, t->name.ptr, t->name.len);
  out->name[t->name.len] = 0;
  out->type = t->type;
  out->n_dims = (int)t->n_dims;
  for (int d = 0; d < 4; d++)
    out->ne[d] = t->ne[d];
  out->data = g->map + g->data_off + t->offset;
  out->nbytes = t->nbytes;
}

int pl_gguf_tensor_at(const pl_gguf *g, int64_t i, pl_tensor *t) {
  if (i < 0 || i >= g->n_tensors)
    return PL_ENOTFOUND;
  fill_tensor(g, &g->ti[i], t);
  return 0;
}

int pl_gguf_tensor(const pl_gguf *g, const char *name, pl_tensor *t) {
  size_t n = strlen(name);
  for (int64_t i = 0; i < g->n_tensors; i++)
    if (g->ti[i].name.len == n && !memcmp(g->ti[i].name.ptr, name, n)) {
      fill_tensor(g, &g->ti[i], t);
      return 0;
    }
  return PL_ENOTFOUND;
}
