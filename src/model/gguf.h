/* GGUF v2/v3 reader: maps the file read-only and validates every header field, key/value,
 * string, array and tensor descriptor before anything uses it (no out-of-bounds read on any
 * truncated or corrupted file). Metadata values are read in place from the mapping.
 *
 * Lifetime: pointers returned by the getters point into the mapping and live until
 * pl_gguf_close(). A pl_gguf is read-only after open and may be shared between threads. */
#ifndef PL_MODEL_GGUF_H
#define PL_MODEL_GGUF_H
#include <stddef.h>
#include <stdint.h>

#include "backend/tensor.h"

typedef enum {
  PL_GGUF_UINT8 = 0, PL_GGUF_INT8 = 1, PL_GGUF_UINT16 = 2, PL_GGUF_INT16 = 3,
  PL_GGUF_UINT32 = 4, PL_GGUF_INT32 = 5, PL_GGUF_FLOAT32 = 6, PL_GGUF_BOOL = 7,
  PL_GGUF_STRING = 8, PL_GGUF_ARRAY = 9, PL_GGUF_UINT64 = 10, PL_GGUF_INT64 = 11,
  PL_GGUF_FLOAT64 = 12,
} pl_gguf_type;

typedef struct pl_gguf pl_gguf;

/* A string inside the file (not NUL-terminated). */
typedef struct { const char *ptr; uint64_t len; } pl_gguf_str;

/* Open and validate. Errors: PL_EIO (cannot open/map), PL_EFORMAT (with a message naming the
 * file and the problem). */
int pl_gguf_open(const char *path, pl_gguf **out);
void pl_gguf_close(pl_gguf *g); /* NULL ok */
const char *pl_gguf_path(const pl_gguf *g);
uint32_t pl_gguf_version(const pl_gguf *g);

/* ---- metadata ---- */
int64_t pl_gguf_n_kv(const pl_gguf *g);
int64_t pl_gguf_find_key(const pl_gguf *g, const char *key); /* index or -1 */
pl_gguf_str pl_gguf_key_at(const pl_gguf *g, int64_t i);
pl_gguf_type pl_gguf_kv_type(const pl_gguf *g, int64_t i);
/* Typed getters by key. Return PL_OK, PL_ENOTFOUND (absent) or PL_EFORMAT (wrong type).
 * Integer getters accept any integer type whose value fits; float accepts f32/f64. */
int pl_gguf_get_u32(const pl_gguf *g, const char *key, uint32_t *out);
int pl_gguf_get_i64(const pl_gguf *g, const char *key, int64_t *out);
int pl_gguf_get_f32(const pl_gguf *g, const char *key, float *out);
int pl_gguf_get_bool(const pl_gguf *g, const char *key, int *out);
int pl_gguf_get_str(const pl_gguf *g, const char *key, pl_gguf_str *out);
/* Arrays: element type, length, and a pointer to the packed elements (for non-string types).
 * String arrays are read element by element with pl_gguf_arr_str (O(1): offsets are indexed
 * at open, so concurrent readers are safe). */
int pl_gguf_get_arr(const pl_gguf *g, const char *key, pl_gguf_type *elem_type, uint64_t *n,
                    const void **data);
int pl_gguf_arr_str(const pl_gguf *g, const char *key, uint64_t i, pl_gguf_str *out);

/* ---- tensors ---- */
int64_t pl_gguf_n_tensors(const pl_gguf *g);
/* Fills t (name, type, dims, data, nbytes). Returns PL_ENOTFOUND if absent. */
int pl_gguf_tensor(const pl_gguf *g, const char *name, pl_tensor *t);
int pl_gguf_tensor_at(const pl_gguf *g, int64_t i, pl_tensor *t);
#endif
