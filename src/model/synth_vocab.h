/* The synthetic vocabulary of random-weight models (`model-gen`, `--load-format dummy`): a
 * minimal SentencePiece ("llama") vocabulary of n_vocab tokens: <unk>, <s>, </s>, the 256
 * <0xNN> byte tokens, then unique filler pieces (printable ASCII, then "\u2581" + letters, then
 * lowercase words). Any text tokenizes (byte fallback); BOS 1, EOS 2. */
#ifndef PL_MODEL_SYNTH_VOCAB_H
#define PL_MODEL_SYNTH_VOCAB_H
#include <stdint.h>

#include "model/gguf_write.h"

#define PL_SV_MIN_VOCAB 260 /* the specials, the byte tokens and one more */

/* Set the tokenizer.ggml.* keys of that vocabulary on w. Errors: PL_ENOMEM. */
int pl_synth_vocab_write(pl_gguf_writer *w, int64_t n_vocab);
#endif
