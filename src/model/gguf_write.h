/* GGUF v3 writer: collect key/values and tensor descriptors, then write the file in one go
 * (tensor data held by the caller) or stream the tensor data in declaration order (files far
 * larger than memory, e.g. `pagellm model-gen` of a 1.1B model).
 *
 * File layout written (all little-endian, as the reader src/model/gguf.h expects):
 *   "GGUF" u32 version=3, u64 n_tensors, u64 n_kv, KVs in insertion order, tensor infos in
 *   declaration order, zero padding to the alignment, then each tensor's data at an offset
 *   (relative to the data section) that is a multiple of the alignment, each followed by zero
 *   padding up to the alignment (so the file size is a multiple of it too).
 *
 * Invariants: keys and tensor names are unique (duplicates fail with PL_EINVAL, nothing
 * changes); the alignment is 32 unless "general.alignment" is set (it must be a UINT32 power of
 * two, as llama.cpp requires); tensor rows are whole quantization blocks. Every setter copies
 * its key and value, so callers may free them at once. Tensor data pointers are borrowed.
 *
 * A writer is not thread-safe. */
#ifndef PL_MODEL_GGUF_WRITE_H
#define PL_MODEL_GGUF_WRITE_H
#include <stddef.h>
#include <stdint.h>

#include "backend/tensor.h"
#include "model/gguf.h"

#define PL_GGUF_DEFAULT_ALIGNMENT 32
#define PL_GGUF_MAX_NAME 63 /* longest tensor name llama.cpp accepts (GGML_MAX_NAME - 1) */

typedef struct pl_gguf_writer pl_gguf_writer;

/* Errors: PL_ENOMEM. The caller owns *out and frees it with pl_gguf_writer_destroy. */
int pl_gguf_writer_create(pl_gguf_writer **out);
/* NULL ok. A stream that was begun but not ended is closed and its partial file removed. */
void pl_gguf_writer_destroy(pl_gguf_writer *w);

/* ---- metadata (any time before writing starts) ----------------------------------------
 * Errors: PL_EINVAL (empty/NULL key, duplicate key, bad general.alignment, bad type),
 * PL_ENOMEM, PL_ESTATE (writing has started). */
int pl_gguf_set_u8(pl_gguf_writer *w, const char *key, uint8_t v);
int pl_gguf_set_i8(pl_gguf_writer *w, const char *key, int8_t v);
int pl_gguf_set_u16(pl_gguf_writer *w, const char *key, uint16_t v);
int pl_gguf_set_i16(pl_gguf_writer *w, const char *key, int16_t v);
int pl_gguf_set_u32(pl_gguf_writer *w, const char *key, uint32_t v);
int pl_gguf_set_i32(pl_gguf_writer *w, const char *key, int32_t v);
int pl_gguf_set_u64(pl_gguf_writer *w, const char *key, uint64_t v);
int pl_gguf_set_i64(pl_gguf_writer *w, const char *key, int64_t v);
int pl_gguf_set_f32(pl_gguf_writer *w, const char *key, float v);
int pl_gguf_set_f64(pl_gguf_writer *w, const char *key, double v);
int pl_gguf_set_bool(pl_gguf_writer *w, const char *key, int v); /* stored as 0/1 */
int pl_gguf_set_str(pl_gguf_writer *w, const char *key, const char *s); /* NUL-terminated */
int pl_gguf_set_strn(pl_gguf_writer *w, const char *key, const char *s, uint64_t len);
/* Array of a scalar type (elem_type not STRING/ARRAY): n packed little-endian elements
 * (BOOL elements are single bytes, written as 0/1). data may be NULL when n == 0. */
int pl_gguf_set_arr(pl_gguf_writer *w, const char *key, pl_gguf_type elem_type, const void *data,
                    uint64_t n);
/* Array of n strings; lens NULL = NUL-terminated strings, else lens[i] bytes of strs[i]. */
int pl_gguf_set_arr_str(pl_gguf_writer *w, const char *key, const char *const *strs,
                        const uint64_t *lens, uint64_t n);

/* ---- tensors ---------------------------------------------------------------------------
 * Declare a tensor: name (1..PL_GGUF_MAX_NAME bytes, unique), a GGUF type of tensor.h (not the
 * MLX types), 1..4 dims in ggml order (ne[0] contiguous, a multiple of the type's block size,
 * every ne >= 1). data: the pl_dtype_row_bytes(type, ne[0]) * rows bytes, borrowed until the
 * file is written, or NULL for a tensor whose bytes will be streamed.
 * Errors: PL_EINVAL (the message names the tensor), PL_ENOMEM, PL_ESTATE. */
int pl_gguf_add_tensor(pl_gguf_writer *w, const char *name, pl_dtype type, int n_dims,
                       const int64_t *ne, const void *data);

int64_t pl_gguf_writer_n_kv(const pl_gguf_writer *w);
int64_t pl_gguf_writer_n_tensors(const pl_gguf_writer *w);
uint32_t pl_gguf_writer_alignment(const pl_gguf_writer *w);
/* Bytes of tensor i's data (0 when out of range), and the size the whole file will have. */
uint64_t pl_gguf_writer_tensor_nbytes(const pl_gguf_writer *w, int64_t i);
uint64_t pl_gguf_writer_file_size(const pl_gguf_writer *w);

/* ---- writing ---------------------------------------------------------------------------
 * One shot: every tensor must have data (else PL_EINVAL). Errors: PL_EIO (with the path and
 * the system's reason; the partial file is removed), PL_ESTATE (already written/streaming). */
int pl_gguf_write_file(pl_gguf_writer *w, const char *path);

/* Streaming: begin writes everything up to the data section; then write passes the tensors'
 * bytes in declaration order, in pieces of any size (a piece may end inside a tensor or span
 * several; the writer inserts the padding); end checks that exactly all bytes came, flushes
 * and closes. Tensors declared with data are written from it when the stream reaches them.
 * After an error the stream is dead: destroy the writer (which removes the partial file).
 * Errors: PL_EIO, PL_ESTATE (order of calls), PL_EINVAL (more bytes than declared, or end with
 * bytes missing). Only a regular file is ever removed (never a device such as /dev/full). */
int pl_gguf_stream_begin(pl_gguf_writer *w, const char *path);
int pl_gguf_stream_write(pl_gguf_writer *w, const void *bytes, size_t n);
int pl_gguf_stream_end(pl_gguf_writer *w);
#endif
