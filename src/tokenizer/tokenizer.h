/* Tokenizer: text <-> token ids for the vocabularies pagellm runs.
 *
 * Two algorithms, chosen by the vocabulary:
 *   - SPM  (GGUF tokenizer.ggml.model = "llama"): SentencePiece-style BPE. Spaces become "▁"
 *     (U+2581), a "▁" is prepended to text that starts the input or follows a special token
 *     (add_space_prefix), adjacent pieces merge by highest score, and characters that form no
 *     token fall back to their <0xNN> byte tokens (unknown id if the vocab has none).
 *   - BPE  (GGUF "gpt2", or a Hugging Face tokenizer.json with model.type "BPE"): byte-level
 *     BPE. A pre-tokenizer (a chain of regexes chosen by tokenizer.ggml.pre, or the Split
 *     regexes of tokenizer.json, run by PCRE2 with UTF|UCP and JIT) cuts the text into words;
 *     each word's bytes merge by lowest merge rank.
 * Special tokens: CONTROL/UNKNOWN tokens are recognised in the text only with parse_special;
 * USER_DEFINED tokens (HF added tokens with special=false) are always recognised, as llama.cpp
 * and HF do. Matching is leftmost-longest.
 *
 * Invalid UTF-8 in the input (policy, deterministic, lossless where the vocabulary allows):
 * each byte that does not start a well-formed UTF-8 sequence is a separate one-byte piece that
 * encodes to its byte token (BPE: the byte-level token of that byte; SPM: <0xNN>). It never
 * joins a regex word, so decode(encode(x)) == x for any byte string on byte-level and
 * byte-fallback vocabularies. Where the vocabulary has no token decoding to exactly that byte
 * (DeepSeek lacks C0 C1 F5..FF), the byte encodes as U+FFFD (SPM: the unknown token).
 *
 * Lifetime and threads: a pl_tokenizer is immutable after loading. Every function taking a
 * `const pl_tokenizer *` may be called from several threads at once (encode keeps its
 * scratch per call). Strings returned by accessors live as long as the tokenizer.
 */
#ifndef PL_MODEL_TOKENIZER_H
#define PL_MODEL_TOKENIZER_H
#include <stddef.h>
#include <stdint.h>

#include "model/gguf.h"

typedef struct pl_tokenizer pl_tokenizer;

typedef enum { PL_TOK_SPM = 1, PL_TOK_BPE = 2 } pl_tok_kind;

/* Per-token attribute bits (from GGUF token_type or HF added_tokens). */
enum {
  PL_TOKATTR_NORMAL = 1 << 0,
  PL_TOKATTR_UNKNOWN = 1 << 1,
  PL_TOKATTR_CONTROL = 1 << 2,      /* special: BOS/EOS/<|im_start|>..., hidden by SKIP_SPECIAL */
  PL_TOKATTR_USER_DEFINED = 1 << 3, /* added, non-special: matched in raw text, printed as is */
  PL_TOKATTR_BYTE = 1 << 4,         /* <0xNN> byte-fallback token */
  PL_TOKATTR_UNUSED = 1 << 5,
  PL_TOKATTR_LSTRIP = 1 << 6,       /* when matched in text, eats whitespace on its left */
  PL_TOKATTR_RSTRIP = 1 << 7,       /* ... and on its right */
};

/* ---- loading ---------------------------------------------------------------------------- */

/* Build a tokenizer from GGUF metadata (tokenizer.ggml.*). Copies everything it needs: g may
 * be closed afterwards. Errors: PL_EFORMAT (missing/ill-typed keys), PL_EUNSUPPORTED (model
 * other than llama/gpt2, unknown .pre), PL_ENOMEM. On error *out is NULL. */
int pl_tokenizer_load_gguf(const pl_gguf *g, pl_tokenizer **out);

/* Build from Hugging Face files: `path` is a tokenizer.json or a directory holding one;
 * tokenizer_config.json (BOS/EOS text, add_bos_token, chat_template), chat_template.jinja and
 * generation_config.json (extra EOS ids) are read from the same directory when present.
 * Supports model.type BPE with byte-level spelling (ByteLevel pre-tokenizer or decoder),
 * Split/Digits/ByteLevel pre-tokenizers, NF(K)C/NF(K)D normalizers. SentencePiece-style
 * tokenizer.json (byte_fallback BPE, Metaspace) is refused: use the GGUF. Errors: PL_EIO,
 * PL_EFORMAT, PL_EUNSUPPORTED, PL_ENOMEM. */
int pl_tokenizer_load_hf(const char *path, pl_tokenizer **out);

/* Dispatch on the path: *.gguf -> open it and pl_tokenizer_load_gguf; a directory or any
 * other file -> pl_tokenizer_load_hf. */
int pl_tokenizer_load(const char *path, pl_tokenizer **out);

void pl_tokenizer_free(pl_tokenizer *t); /* NULL ok */

/* ---- encode ----------------------------------------------------------------------------- */

/* A growable id buffer owned by the caller; start zeroed ({0}); free with
 * pl_token_buf_free. encode appends to it (so prompts can be built piece by piece). */
typedef struct pl_token_buf {
  int32_t *ids;
  size_t n, cap;
} pl_token_buf;
int pl_token_buf_push(pl_token_buf *b, int32_t id); /* PL_ENOMEM */
void pl_token_buf_free(pl_token_buf *b);

/* Tokenize text[0..len) (any bytes; see the invalid UTF-8 policy above) and append the ids to
 * out. add_special: add BOS / EOS as the vocabulary says (pl_tokenizer_add_bos/_eos).
 * parse_special: recognise CONTROL token text (e.g. "<|im_start|>") as that token; otherwise
 * it is plain text. With add_special=0, parse_special=0 the ids are llama_tokenize's; with
 * parse_special=1 they are HF encode(add_special_tokens=False)'s. Cost: O(n log n), about
 * 20-50 MB/s on one core; inputs >= 8 KiB use a bounded (230 KiB) per-call word cache.
 * Errors (out->n is then restored to its value on entry): PL_ENOMEM, PL_ERANGE (a fragment over
 * 512 MiB), PL_EINTERNAL (regex engine failure). */
int pl_tokenizer_encode(const pl_tokenizer *t, const char *text, size_t len, int add_special,
                        int parse_special, pl_token_buf *out);

/* ---- decode ----------------------------------------------------------------------------- */

/* The bytes a token stands for: "▁" -> ' ', <0xNN> -> that byte, byte-level BPE characters
 * -> their bytes; CONTROL/UNKNOWN/USER_DEFINED tokens -> their text. Not NUL-terminated.
 * Returns NULL (and *len = 0) for an id out of range. Valid for the tokenizer's lifetime. */
const char *pl_tokenizer_piece(const pl_tokenizer *t, int32_t id, size_t *len);

/* The token's vocabulary string as stored ("▁Hello", "ĠHello", "<0x0A>"). NULL if out of
 * range. */
const char *pl_tokenizer_token_text(const pl_tokenizer *t, int32_t id, size_t *len);

/* Exact lookup of a vocabulary string (as pl_tokenizer_token_text spells it); -1 if absent. */
int32_t pl_tokenizer_find(const pl_tokenizer *t, const char *text, size_t len);

enum {
  PL_DECODE_SKIP_SPECIAL = 1 << 0, /* CONTROL and UNKNOWN tokens produce no text */
  /* Remove the one space that SPM's add_space_prefix put in front of the text: the first
   * output byte, when it is ' ' (HF's Strip decoder; llama.cpp strips the first token's
   * space). Use it when the ids start the text; not when continuing a prompt. No effect on
   * vocabularies without add_space_prefix. */
  PL_DECODE_STRIP_SPACE = 1 << 1,
};

/* Concatenate the pieces of ids[0..n) into a pl_malloc'd NUL-terminated string (*out, length
 * *out_len, raw bytes: may hold invalid UTF-8 when byte tokens split a character; pl_detok
 * gives the sanitized stream). No clean_up_tokenization_spaces: decoding stays lossless.
 * Errors: PL_EINVAL (id out of range), PL_ENOMEM. */
int pl_tokenizer_decode(const pl_tokenizer *t, const int32_t *ids, size_t n, int flags,
                        char **out, size_t *out_len);

/* ---- vocabulary facts ------------------------------------------------------------------- */

pl_tok_kind pl_tokenizer_kind(const pl_tokenizer *t);
int32_t pl_tokenizer_n_vocab(const pl_tokenizer *t);
int32_t pl_tokenizer_bos(const pl_tokenizer *t); /* -1 when the vocab has none */
int32_t pl_tokenizer_eos(const pl_tokenizer *t);
int32_t pl_tokenizer_eot(const pl_tokenizer *t); /* end of turn (<|eot_id|>, <|im_end|>) */
int32_t pl_tokenizer_unk(const pl_tokenizer *t);
int32_t pl_tokenizer_pad(const pl_tokenizer *t);
int pl_tokenizer_add_bos(const pl_tokenizer *t); /* encode(add_special) prepends BOS */
int pl_tokenizer_add_eos(const pl_tokenizer *t);
int pl_tokenizer_add_space_prefix(const pl_tokenizer *t);
/* End of generation: EOS, EOT, EOM and the end-of-turn tokens named by the vocabulary
 * (<|eot_id|>, <|im_end|>, <|endoftext|>, <|end|>, <end_of_turn>, ... and, for HF
 * directories, generation_config.json's eos_token_id list). 0 for ids out of range. */
int pl_tokenizer_is_eog(const pl_tokenizer *t, int32_t id);
/* The EOG ids (for stop_token_ids defaults); *n set to their count. */
const int32_t *pl_tokenizer_eog_ids(const pl_tokenizer *t, int *n);
int pl_tokenizer_is_control(const pl_tokenizer *t, int32_t id); /* CONTROL or UNKNOWN */
int pl_tokenizer_token_attr(const pl_tokenizer *t, int32_t id); /* PL_TOKATTR_* bits; 0 oor */
size_t pl_tokenizer_max_piece_len(const pl_tokenizer *t);      /* longest piece in bytes */

/* Jinja chat template (GGUF tokenizer.chat_template / tokenizer_config.json chat_template, the
 * "default" one when it is a list), or NULL. */
const char *pl_tokenizer_chat_template(const pl_tokenizer *t);
/* BOS/EOS token text for rendering templates ("<s>", "<|im_end|>"), or NULL when none. */
const char *pl_tokenizer_bos_text(const pl_tokenizer *t);
const char *pl_tokenizer_eos_text(const pl_tokenizer *t);
/* Pre-tokenizer name (GGUF tokenizer.ggml.pre, "hf" for tokenizer.json, "" for SPM). */
const char *pl_tokenizer_pre_name(const pl_tokenizer *t);
#endif
