/* GGUF v3 writer (see gguf_write.h for the layout and the rules).
 *
 * Key/values are serialized into one growing byte buffer as they are added (the file's KV
 * section verbatim), with a side list of keys for duplicate checks. Tensor descriptors are
 * kept in an array; their offsets are computed only when writing starts, because the
 * alignment may still change until then. Assumes a little-endian host (x86-64, AArch64), as
 * the reader does. */
#include "model/gguf_write.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "util/alloc.h"
#include "util/array.h"
#include "util/error.h"

typedef struct {
  char name[PL_GGUF_MAX_NAME + 1];
  pl_dtype type;
  int n_dims;
  int64_t ne[4];
  uint64_t nbytes;
  uint64_t offset; /* within the data section; set when writing starts */
  const void *data; /* borrowed, or NULL = streamed */
} pl_gw_tensor;

enum { PL_GW_OPEN, PL_GW_STREAMING, PL_GW_DONE, PL_GW_FAILED };

struct pl_gguf_writer {
  unsigned char *kv; /* serialized KV section */
  size_t kv_len, kv_cap;
  char **keys;       /* [n_kv] owned copies, for duplicate checks */
  int64_t n_kv, keys_cap;
  pl_gw_tensor *tensors;
  int64_t n_tensors, tensors_cap;
  uint32_t alignment;
  int state;
  /* streaming */
  FILE *fp;
  char *path;
  int removable;   /* the output is a regular file: remove it if the write fails */
  int64_t cur;     /* tensor being streamed */
  uint64_t cur_pos; /* bytes of it written so far */
};

static const unsigned char pl_gw_zeros[256];

int pl_gguf_writer_create(pl_gguf_writer **out) {
  *out = NULL;
  pl_gguf_writer *w = pl_calloc(1, sizeof *w);
  if (!w)
    return pl_fail(PL_ENOMEM, "gguf writer: out of memory");
  w->alignment = PL_GGUF_DEFAULT_ALIGNMENT;
  *out = w;
  return PL_OK;
}

static void pl_gw_close_stream(pl_gguf_writer *w, int remove_file) {
  if (w->fp) {
    fclose(w->fp);
    w->fp = NULL;
    if (remove_file && w->path && w->removable)
      remove(w->path);
  }
  pl_free(w->path);
  w->path = NULL;
}

void pl_gguf_writer_destroy(pl_gguf_writer *w) {
  if (!w)
    return;
  pl_gw_close_stream(w, 1);
  for (int64_t i = 0; i < w->n_kv; i++)
    pl_free(w->keys[i]);
  pl_free(w->keys);
  pl_free(w->kv);
  pl_free(w->tensors);
  pl_free(w);
}

/* ---- KV serialization ------------------------------------------------------------------- */

static int pl_gw_reserve(pl_gguf_writer *w, size_t extra) {
  if (extra > SIZE_MAX - w->kv_len)
    return pl_fail(PL_ENOMEM, "gguf writer: metadata too large");
  size_t need = w->kv_len + extra;
  if (need <= w->kv_cap)
    return PL_OK;
  if (pl_array_grow(&w->kv, &w->kv_cap, need, 1, 4096))
    return pl_fail(PL_ENOMEM, "gguf writer: out of memory (%zu bytes of metadata)", need);
  return PL_OK;
}

/* Appends without checks: the caller reserved the room. */
static void pl_gw_put(pl_gguf_writer *w, const void *p, size_t n) {
  if (n)
    memcpy(w->kv + w->kv_len, p, n);
  w->kv_len += n;
}
static void pl_gw_put_u32(pl_gguf_writer *w, uint32_t v) { pl_gw_put(w, &v, 4); }
static void pl_gw_put_u64(pl_gguf_writer *w, uint64_t v) { pl_gw_put(w, &v, 8); }
static void pl_gw_put_str(pl_gguf_writer *w, const char *s, uint64_t len) {
  pl_gw_put_u64(w, len);
  pl_gw_put(w, s, (size_t)len);
}

static size_t pl_gw_scalar_size(pl_gguf_type t) {
  switch (t) {
  case PL_GGUF_UINT8: case PL_GGUF_INT8: case PL_GGUF_BOOL: return 1;
  case PL_GGUF_UINT16: case PL_GGUF_INT16: return 2;
  case PL_GGUF_UINT32: case PL_GGUF_INT32: case PL_GGUF_FLOAT32: return 4;
  case PL_GGUF_UINT64: case PL_GGUF_INT64: case PL_GGUF_FLOAT64: return 8;
  case PL_GGUF_STRING: case PL_GGUF_ARRAY: return 0;
  }
  return 0;
}

/* Checks that a new key may be added and records a copy of it. On success the caller must
 * append the value (room for `value_bytes` plus the key is reserved here), so that a failure
 * never leaves a half-written KV behind. */
static int pl_gw_begin_kv(pl_gguf_writer *w, const char *key, pl_gguf_type type,
                          size_t value_bytes) {
  if (w->state != PL_GW_OPEN)
    return pl_fail(PL_ESTATE, "gguf writer: metadata added after writing started");
  if (!key || !key[0])
    return pl_fail(PL_EINVAL, "gguf writer: empty key");
  for (int64_t i = 0; i < w->n_kv; i++)
    if (strcmp(w->keys[i], key) == 0)
      return pl_fail(PL_EINVAL, "gguf writer: duplicate key '%s'", key);
  size_t klen = strlen(key);
  if (value_bytes > SIZE_MAX - 64 - klen)
    return pl_fail(PL_ENOMEM, "gguf writer: value of '%s' too large", key);
  if (pl_array_grow(&w->keys, &w->keys_cap, (size_t)w->n_kv + 1, sizeof *w->keys, 32))
    return pl_fail(PL_ENOMEM, "gguf writer: out of memory");
  PL_TRY(pl_gw_reserve(w, 8 + klen + 4 + value_bytes));
  char *copy = pl_strdup(key);
  if (!copy)
    return pl_fail(PL_ENOMEM, "gguf writer: out of memory");
  w->keys[w->n_kv++] = copy;
  pl_gw_put_str(w, key, klen);
  pl_gw_put_u32(w, (uint32_t)type);
  return PL_OK;
}

static int pl_gw_set_scalar(pl_gguf_writer *w, const char *key, pl_gguf_type t, const void *v) {
  if (key && strcmp(key, "general.alignment") == 0) {
    uint32_t a = 0;
    if (t == PL_GGUF_UINT32)
      memcpy(&a, v, 4);
    if (t != PL_GGUF_UINT32 || a == 0 || (a & (a - 1)) != 0)
      return pl_fail(PL_EINVAL, "gguf writer: general.alignment must be a UINT32 power of two");
    PL_TRY(pl_gw_begin_kv(w, key, t, 4));
    w->alignment = a;
  } else {
    PL_TRY(pl_gw_begin_kv(w, key, t, pl_gw_scalar_size(t)));
  }
  pl_gw_put(w, v, pl_gw_scalar_size(t));
  return PL_OK;
}

int pl_gguf_set_u8(pl_gguf_writer *w, const char *key, uint8_t v) { return pl_gw_set_scalar(w, key, PL_GGUF_UINT8, &v); }
int pl_gguf_set_i8(pl_gguf_writer *w, const char *key, int8_t v) { return pl_gw_set_scalar(w, key, PL_GGUF_INT8, &v); }
int pl_gguf_set_u16(pl_gguf_writer *w, const char *key, uint16_t v) { return pl_gw_set_scalar(w, key, PL_GGUF_UINT16, &v); }
int pl_gguf_set_i16(pl_gguf_writer *w, const char *key, int16_t v) { return pl_gw_set_scalar(w, key, PL_GGUF_INT16, &v); }
int pl_gguf_set_u32(pl_gguf_writer *w, const char *key, uint32_t v) { return pl_gw_set_scalar(w, key, PL_GGUF_UINT32, &v); }
int pl_gguf_set_i32(pl_gguf_writer *w, const char *key, int32_t v) { return pl_gw_set_scalar(w, key, PL_GGUF_INT32, &v); }
int pl_gguf_set_u64(pl_gguf_writer *w, const char *key, uint64_t v) { return pl_gw_set_scalar(w, key, PL_GGUF_UINT64, &v); }
int pl_gguf_set_i64(pl_gguf_writer *w, const char *key, int64_t v) { return pl_gw_set_scalar(w, key, PL_GGUF_INT64, &v); }
int pl_gguf_set_f32(pl_gguf_writer *w, const char *key, float v) { return pl_gw_set_scalar(w, key, PL_GGUF_FLOAT32, &v); }
int pl_gguf_set_f64(pl_gguf_writer *w, const char *key, double v) { return pl_gw_set_scalar(w, key, PL_GGUF_FLOAT64, &v); }

int pl_gguf_set_bool(pl_gguf_writer *w, const char *key, int v) {
  uint8_t b = v ? 1 : 0;
  return pl_gw_set_scalar(w, key, PL_GGUF_BOOL, &b);
}

int pl_gguf_set_strn(pl_gguf_writer *w, const char *key, const char *s, uint64_t len) {
  if (!s && len)
    return pl_fail(PL_EINVAL, "gguf writer: NULL string for '%s'", key ? key : "");
  if (len > SIZE_MAX - 8)
    return pl_fail(PL_EINVAL, "gguf writer: string of '%s' too long", key ? key : "");
  PL_TRY(pl_gw_begin_kv(w, key, PL_GGUF_STRING, 8 + (size_t)len));
  pl_gw_put_str(w, s, len);
  return PL_OK;
}

int pl_gguf_set_str(pl_gguf_writer *w, const char *key, const char *s) {
  if (!s)
    return pl_fail(PL_EINVAL, "gguf writer: NULL string for '%s'", key ? key : "");
  return pl_gguf_set_strn(w, key, s, strlen(s));
}

int pl_gguf_set_arr(pl_gguf_writer *w, const char *key, pl_gguf_type elem_type, const void *data,
                    uint64_t n) {
  size_t es = pl_gw_scalar_size(elem_type);
  if (es == 0)
    return pl_fail(PL_EINVAL, "gguf writer: '%s': array element type %d is not a scalar type",
                   key ? key : "", (int)elem_type);
  if (!data && n)
    return pl_fail(PL_EINVAL, "gguf writer: NULL array data for '%s'", key ? key : "");
  if (n > (SIZE_MAX - 16) / es)
    return pl_fail(PL_EINVAL, "gguf writer: array '%s' too long", key ? key : "");
  if (elem_type == PL_GGUF_BOOL)
    for (uint64_t i = 0; i < n; i++)
      if (((const uint8_t *)data)[i] > 1)
        return pl_fail(PL_EINVAL, "gguf writer: '%s'[%llu]: bool must be 0 or 1", key ? key : "",
                       (unsigned long long)i);
  PL_TRY(pl_gw_begin_kv(w, key, PL_GGUF_ARRAY, 12 + (size_t)n * es));
  pl_gw_put_u32(w, (uint32_t)elem_type);
  pl_gw_put_u64(w, n);
  pl_gw_put(w, data, (size_t)n * es);
  return PL_OK;
}

int pl_gguf_set_arr_str(pl_gguf_writer *w, const char *key, const char *const *strs,
                        const uint64_t *lens, uint64_t n) {
  if (!strs && n)
    return pl_fail(PL_EINVAL, "gguf writer: NULL string array for '%s'", key ? key : "");
  size_t total = 12;
  for (uint64_t i = 0; i < n; i++) {
    if (!strs[i] && (!lens || lens[i]))
      return pl_fail(PL_EINVAL, "gguf writer: '%s'[%llu] is NULL", key ? key : "",
                     (unsigned long long)i);
    uint64_t len = lens ? lens[i] : strlen(strs[i]);
    if (len > SIZE_MAX - 8 - total)
      return pl_fail(PL_EINVAL, "gguf writer: string array '%s' too large", key ? key : "");
    total += 8 + (size_t)len;
  }
  PL_TRY(pl_gw_begin_kv(w, key, PL_GGUF_ARRAY, total));
  pl_gw_put_u32(w, (uint32_t)PL_GGUF_STRING);
  pl_gw_put_u64(w, n);
  for (uint64_t i = 0; i < n; i++)
    pl_gw_put_str(w, strs[i], lens ? lens[i] : strlen(strs[i]));
  return PL_OK;
}

/* ---- tensors ---------------------------------------------------------------------------- */

int pl_gguf_add_tensor(pl_gguf_writer *w, const char *name, pl_dtype type, int n_dims,
                       const int64_t *ne, const void *data) {
  if (w->state != PL_GW_OPEN)
    return pl_fail(PL_ESTATE, "gguf writer: tensor added after writing started");
  if (!name || !name[0])
    return pl_fail(PL_EINVAL, "gguf writer: empty tensor name");
  size_t nlen = strlen(name);
  if (nlen > PL_GGUF_MAX_NAME)
    return pl_fail(PL_EINVAL, "gguf writer: tensor name '%s' longer than %d bytes", name,
                   PL_GGUF_MAX_NAME);
  int bs = pl_dtype_block_size(type);
  if (bs == 0 || (int)type >= 1000)
    return pl_fail(PL_EINVAL, "gguf writer: tensor '%s': type %d is not a GGUF type", name,
                   (int)type);
  if (n_dims < 1 || n_dims > 4 || !ne)
    return pl_fail(PL_EINVAL, "gguf writer: tensor '%s': %d dims (1..4 allowed)", name, n_dims);
  uint64_t rows = 1;
  for (int d = 0; d < n_dims; d++) {
    if (ne[d] < 1)
      return pl_fail(PL_EINVAL, "gguf writer: tensor '%s': ne[%d] = %lld", name, d,
                     (long long)ne[d]);
    if (d > 0) {
      if ((uint64_t)ne[d] > (UINT64_MAX >> 2) / rows)
        return pl_fail(PL_EINVAL, "gguf writer: tensor '%s' too large", name);
      rows *= (uint64_t)ne[d];
    }
  }
  if (ne[0] % bs != 0)
    return pl_fail(PL_EINVAL, "gguf writer: tensor '%s': ne[0] = %lld is not a multiple of %s's "
                   "block size %d", name, (long long)ne[0], pl_dtype_name(type), bs);
  uint64_t row_bytes = pl_dtype_row_bytes(type, ne[0]);
  if (row_bytes > (UINT64_MAX >> 2) / rows)
    return pl_fail(PL_EINVAL, "gguf writer: tensor '%s' too large", name);
  for (int64_t i = 0; i < w->n_tensors; i++)
    if (strcmp(w->tensors[i].name, name) == 0)
      return pl_fail(PL_EINVAL, "gguf writer: duplicate tensor '%s'", name);
  if (pl_array_grow(&w->tensors, &w->tensors_cap, (size_t)w->n_tensors + 1, sizeof *w->tensors,
                    64))
    return pl_fail(PL_ENOMEM, "gguf writer: out of memory");
  pl_gw_tensor *t = &w->tensors[w->n_tensors++];
  memset(t, 0, sizeof *t);
  memcpy(t->name, name, nlen + 1);
  t->type = type;
  t->n_dims = n_dims;
  for (int d = 0; d < 4; d++)
    t->ne[d] = d < n_dims ? ne[d] : 1;
  t->nbytes = row_bytes * rows;
  t->data = data;
  return PL_OK;
}

int64_t pl_gguf_writer_n_kv(const pl_gguf_writer *w) { return w->n_kv; }
int64_t pl_gguf_writer_n_tensors(const pl_gguf_writer *w) { return w->n_tensors; }
uint32_t pl_gguf_writer_alignment(const pl_gguf_writer *w) { return w->alignment; }

uint64_t pl_gguf_writer_tensor_nbytes(const pl_gguf_writer *w, int64_t i) {
  return i >= 0 && i < w->n_tensors ? w->tensors[i].nbytes : 0;
}

static uint64_t pl_gw_pad(uint64_t x, uint32_t a) { return (x + a - 1) / a * a; }

static uint64_t pl_gw_header_bytes(const pl_gguf_writer *w) {
  uint64_t n = 4 + 4 + 8 + 8 + w->kv_len;
  for (int64_t i = 0; i < w->n_tensors; i++)
    n += 8 + strlen(w->tensors[i].name) + 4 + 8 * (uint64_t)w->tensors[i].n_dims + 4 + 8;
  return n;
}

uint64_t pl_gguf_writer_file_size(const pl_gguf_writer *w) {
  uint64_t n = pl_gw_pad(pl_gw_header_bytes(w), w->alignment);
  for (int64_t i = 0; i < w->n_tensors; i++)
    n += pl_gw_pad(w->tensors[i].nbytes, w->alignment);
  return n;
}

/* ---- writing ---------------------------------------------------------------------------- */

static int pl_gw_io_fail(pl_gguf_writer *w, const char *what) {
  int e = errno;
  w->state = PL_GW_FAILED;
  int rc = pl_fail(PL_EIO, "%s: %s: %s", w->path ? w->path : "gguf writer", what,
                   e ? strerror(e) : "write error");
  pl_gw_close_stream(w, 1);
  return rc;
}

static int pl_gw_fwrite(pl_gguf_writer *w, const void *p, size_t n) {
  errno = 0;
  if (n && fwrite(p, 1, n, w->fp) != n)
    return pl_gw_io_fail(w, "write failed");
  return PL_OK;
}

static int pl_gw_zero_pad(pl_gguf_writer *w, uint64_t n) {
  while (n) {
    size_t k = n < sizeof pl_gw_zeros ? (size_t)n : sizeof pl_gw_zeros;
    PL_TRY(pl_gw_fwrite(w, pl_gw_zeros, k));
    n -= k;
  }
  return PL_OK;
}

static int pl_gw_wr_u32(pl_gguf_writer *w, uint32_t v) { return pl_gw_fwrite(w, &v, 4); }
static int pl_gw_wr_u64(pl_gguf_writer *w, uint64_t v) { return pl_gw_fwrite(w, &v, 8); }

/* Completes the current tensor (padding) and writes every following tensor that carries its
 * own data, until one that must be streamed (or the end). */
static int pl_gw_advance(pl_gguf_writer *w) {
  while (w->cur < w->n_tensors) {
    pl_gw_tensor *t = &w->tensors[w->cur];
    if (w->cur_pos == t->nbytes) {
      PL_TRY(pl_gw_zero_pad(w, pl_gw_pad(t->nbytes, w->alignment) - t->nbytes));
      w->cur++;
      w->cur_pos = 0;
      continue;
    }
    if (w->cur_pos == 0 && t->data) {
      PL_TRY(pl_gw_fwrite(w, t->data, (size_t)t->nbytes));
      w->cur_pos = t->nbytes;
      continue;
    }
    break;
  }
  return PL_OK;
}

int pl_gguf_stream_begin(pl_gguf_writer *w, const char *path) {
  if (w->state != PL_GW_OPEN)
    return pl_fail(PL_ESTATE, "gguf writer: already written or streaming");
  if (!path || !path[0])
    return pl_fail(PL_EINVAL, "gguf writer: empty path");
  w->path = pl_strdup(path);
  if (!w->path)
    return pl_fail(PL_ENOMEM, "gguf writer: out of memory");
  errno = 0;
  w->fp = fopen(path, "wb");
  if (!w->fp) {
    int e = errno;
    pl_free(w->path);
    w->path = NULL;
    return pl_fail(PL_EIO, "%s: cannot create: %s", path, strerror(e));
  }
  struct stat st;
  w->removable = fstat(fileno(w->fp), &st) == 0 && S_ISREG(st.st_mode); /* never a device */
  w->state = PL_GW_STREAMING;
  setvbuf(w->fp, NULL, _IOFBF, 1 << 20);

  uint64_t off = 0;
  for (int64_t i = 0; i < w->n_tensors; i++) {
    w->tensors[i].offset = off;
    off += pl_gw_pad(w->tensors[i].nbytes, w->alignment);
  }
  PL_TRY(pl_gw_fwrite(w, "GGUF", 4));
  PL_TRY(pl_gw_wr_u32(w, 3));
  PL_TRY(pl_gw_wr_u64(w, (uint64_t)w->n_tensors));
  PL_TRY(pl_gw_wr_u64(w, (uint64_t)w->n_kv));
  PL_TRY(pl_gw_fwrite(w, w->kv, w->kv_len));
  for (int64_t i = 0; i < w->n_tensors; i++) {
    const pl_gw_tensor *t = &w->tensors[i];
    PL_TRY(pl_gw_wr_u64(w, strlen(t->name)));
    PL_TRY(pl_gw_fwrite(w, t->name, strlen(t->name)));
    PL_TRY(pl_gw_wr_u32(w, (uint32_t)t->n_dims));
    for (int d = 0; d < t->n_dims; d++)
      PL_TRY(pl_gw_wr_u64(w, (uint64_t)t->ne[d]));
    PL_TRY(pl_gw_wr_u32(w, (uint32_t)t->type));
    PL_TRY(pl_gw_wr_u64(w, t->offset));
  }
  uint64_t hdr = pl_gw_header_bytes(w);
  PL_TRY(pl_gw_zero_pad(w, pl_gw_pad(hdr, w->alignment) - hdr));
  w->cur = 0;
  w->cur_pos = 0;
  return pl_gw_advance(w);
}

int pl_gguf_stream_write(pl_gguf_writer *w, const void *bytes, size_t n) {
  if (w->state != PL_GW_STREAMING)
    return pl_fail(PL_ESTATE, "gguf writer: stream_write without an open stream");
  const unsigned char *p = bytes;
  while (n) {
    if (w->cur >= w->n_tensors) {
      w->state = PL_GW_FAILED;
      int rc = pl_fail(PL_EINVAL, "%s: %zu bytes of tensor data beyond the last tensor", w->path, n);
      pl_gw_close_stream(w, 1);
      return rc;
    }
    pl_gw_tensor *t = &w->tensors[w->cur];
    uint64_t left = t->nbytes - w->cur_pos;
    size_t k = n < left ? n : (size_t)left;
    PL_TRY(pl_gw_fwrite(w, p, k));
    p += k;
    n -= k;
    w->cur_pos += k;
    PL_TRY(pl_gw_advance(w));
  }
  return PL_OK;
}

int pl_gguf_stream_end(pl_gguf_writer *w) {
  if (w->state != PL_GW_STREAMING)
    return pl_fail(PL_ESTATE, "gguf writer: stream_end without an open stream");
  if (w->cur < w->n_tensors) {
    w->state = PL_GW_FAILED;
    int rc = pl_fail(PL_EINVAL, "%s: stream ended inside tensor '%s' (%llu of %llu bytes)",
                     w->path, w->tensors[w->cur].name, (unsigned long long)w->cur_pos,
                     (unsigned long long)w->tensors[w->cur].nbytes);
    pl_gw_close_stream(w, 1);
    return rc;
  }
  errno = 0;
  if (fflush(w->fp) != 0 || ferror(w->fp))
    return pl_gw_io_fail(w, "write failed");
  FILE *fp = w->fp;
  w->fp = NULL;
  errno = 0;
  if (fclose(fp) != 0) {
    int e = errno;
    w->state = PL_GW_FAILED;
    if (w->removable)
      remove(w->path);
    int rc = pl_fail(PL_EIO, "%s: close failed: %s", w->path, e ? strerror(e) : "error");
    pl_gw_close_stream(w, 0);
    return rc;
  }
  pl_gw_close_stream(w, 0);
  w->state = PL_GW_DONE;
  return PL_OK;
}

int pl_gguf_write_file(pl_gguf_writer *w, const char *path) {
  if (w->state != PL_GW_OPEN)
    return pl_fail(PL_ESTATE, "gguf writer: already written or streaming");
  for (int64_t i = 0; i < w->n_tensors; i++)
    if (!w->tensors[i].data)
      return pl_fail(PL_EINVAL, "gguf writer: tensor '%s' has no data (stream it instead)",
                     w->tensors[i].name);
  PL_TRY(pl_gguf_stream_begin(w, path));
  return pl_gguf_stream_end(w);
}
