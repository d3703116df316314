/* Streaming detokenizer: token ids in, UTF-8 text out, one token at a time.
 *
 * Contract: the concatenation of everything push() and flush() return for ids[0..n) equals
 * pl_utf8_sanitize(pl_tokenizer_decode(ids, flags)) byte for byte. Every chunk is valid
 * UTF-8 on its own: bytes of a character split across tokens (byte-fallback <0xNN> tokens,
 * multi-byte byte-level pieces) are held back until the character is complete; a sequence
 * that can no longer complete becomes U+FFFD (one per maximal ill-formed subpart, as the
 * Unicode standard, WHATWG and Python's errors="replace" do). At most 3 bytes are ever held.
 *
 * Leading space (SPM vocabularies with add_space_prefix): with PL_DECODE_STRIP_SPACE the
 * first output byte is dropped when it is ' ' — use it when the ids start the text (HF's
 * decode of a whole sequence; llama.cpp's lstrip of the first token). A generation that
 * continues a prompt must not strip: the space after the prompt is real text, and llama.cpp's
 * server and vLLM both keep it. PL_DECODE_SKIP_SPECIAL hides CONTROL/UNKNOWN tokens (EOS,
 * <|im_end|>), as the OpenAI-compatible servers do by default.
 *
 * Memory: init allocates one output buffer sized from the vocabulary's longest piece; push and
 * flush never allocate (safe in the step loop). Not thread-safe; one per sequence.
 */
#ifndef PL_MODEL_DETOK_H
#define PL_MODEL_DETOK_H
#include <stddef.h>
#include <stdint.h>

#include "tokenizer/tokenizer.h"

typedef struct pl_detok {
  const pl_tokenizer *tok;
  int flags;              /* PL_DECODE_* */
  int strip_pending;      /* the next output byte may still be the prefix space */
  unsigned char pend[4];  /* bytes of an unfinished character */
  int npend, need;        /* held bytes; total continuation bytes the character needs */
  unsigned char lo, hi;   /* allowed range of the next continuation byte */
  char *out;              /* output of the last call (owned) */
  size_t cap;
} pl_detok;

/* Errors: PL_ENOMEM. The tokenizer must outlive the detokenizer. */
int pl_detok_init(pl_detok *d, const pl_tokenizer *t, int flags);
void pl_detok_free(pl_detok *d); /* zeroed struct ok */
/* Start a new text (same tokenizer and flags) without reallocating. */
void pl_detok_reset(pl_detok *d);

/* Add one token. text, len: the bytes now safe to emit (maybe none); valid until the next
 * call on d. Errors: PL_EINVAL for an id out of range (nothing emitted, state unchanged). */
int pl_detok_push(pl_detok *d, int32_t id, const char **text, size_t *len);

/* End of the text: a held incomplete character becomes U+FFFD. The detokenizer is then reset. */
void pl_detok_flush(pl_detok *d, const char **text, size_t *len);

/* Whole-string reference: copy s[0..n) to out replacing each maximal ill-formed subpart with
 * U+FFFD (out needs 3 * n bytes). Returns the output length. */
size_t pl_utf8_sanitize(const char *s, size_t n, char *out);
#endif
