/* The synthetic vocabulary (synth_vocab.h). */
#include "model/synth_vocab.h"

#include <stdio.h>
#include <string.h>

#include "util/alloc.h"
#include "util/error.h"

#define PL_SV_N_SPECIAL 3
#define PL_SV_N_BYTE 256
#define PL_SV_FIRST_FILLER (PL_SV_N_SPECIAL + PL_SV_N_BYTE)
#define PL_SV_SPACE "\xe2\x96\x81" /* U+2581, SentencePiece's word-boundary mark */

/* The f-th filler piece (unique for every f): first the 94 printable ASCII characters and
 * the word mark alone, then the mark + one letter, then all lowercase words of 2, 3, ...
 * letters, each length once plain and once with the mark in front. */
static void filler(int64_t f, char *buf) {
  static const char letters[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
  if (f < 94) {
    buf[0] = (char)(0x21 + f);
    buf[1] = 0;
    return;
  }
  f -= 94;
  if (f == 0) {
    strcpy(buf, PL_SV_SPACE);
    return;
  }
  f -= 1;
  if (f < 52) {
    sprintf(buf, PL_SV_SPACE "%c", letters[f]);
    return;
  }
  f -= 52;
  for (int len = 2;; len++) {
    int64_t cnt = 1;
    for (int k = 0; k < len; k++)
      cnt *= 26;
    for (int marked = 0; marked < 2; marked++) {
      if (f < cnt) {
        char *p = buf;
        if (marked) {
          strcpy(p, PL_SV_SPACE);
          p += 3;
        }
        for (int k = len - 1; k >= 0; k--) {
          p[k] = letters[f % 26];
          f /= 26;
        }
        p[len] = 0;
        return;
      }
      f -= cnt;
    }
  }
}

int pl_synth_vocab_write(pl_gguf_writer *w, int64_t n_vocab) {
  enum { PIECE = 24 };
  char *pieces = pl_malloc((size_t)n_vocab * PIECE);
  const char **ptrs = pl_malloc((size_t)n_vocab * sizeof *ptrs);
  float *scores = pl_malloc((size_t)n_vocab * sizeof *scores);
  int32_t *types = pl_malloc((size_t)n_vocab * sizeof *types);
  int rc = PL_OK;
  if (!pieces || !ptrs || !scores || !types) {
    rc = pl_fail(PL_ENOMEM, "out of memory for a vocabulary of %lld",
                 (long long)n_vocab);
    goto done;
  }
  for (int64_t i = 0; i < n_vocab; i++) {
    char *p = pieces + i * PIECE;
    ptrs[i] = p;
    if (i == 0) {
      strcpy(p, "<unk>");
      types[i] = 2; /* UNKNOWN */
      scores[i] = 0;
    } else if (i < PL_SV_N_SPECIAL) {
      strcpy(p, i == 1 ? "<s>" : "</s>");
      types[i] = 3; /* CONTROL */
      scores[i] = 0;
    } else if (i < PL_SV_FIRST_FILLER) {
      sprintf(p, "<0x%02X>", (unsigned)(i - PL_SV_N_SPECIAL));
      types[i] = 6; /* BYTE */
      scores[i] = 0;
    } else {
      filler(i - PL_SV_FIRST_FILLER, p);
      types[i] = 1; /* NORMAL */
      scores[i] = -(float)(i - PL_SV_FIRST_FILLER);
    }
  }
  if ((rc = pl_gguf_set_str(w, "tokenizer.ggml.model", "llama")) ||
      (rc = pl_gguf_set_arr_str(w, "tokenizer.ggml.tokens", ptrs, NULL, (uint64_t)n_vocab)) ||
      (rc = pl_gguf_set_arr(w, "tokenizer.ggml.scores", PL_GGUF_FLOAT32, scores, (uint64_t)n_vocab)) ||
      (rc = pl_gguf_set_arr(w, "tokenizer.ggml.token_type", PL_GGUF_INT32, types, (uint64_t)n_vocab)) ||
      (rc = pl_gguf_set_u32(w, "tokenizer.ggml.bos_token_id", 1)) ||
      (rc = pl_gguf_set_u32(w, "tokenizer.ggml.eos_token_id", 2)) ||
      (rc = pl_gguf_set_u32(w, "tokenizer.ggml.unknown_token_id", 0)) ||
      (rc = pl_gguf_set_bool(w, "tokenizer.ggml.add_bos_token", 1)) ||
      (rc = pl_gguf_set_bool(w, "tokenizer.ggml.add_eos_token", 0)))
    goto done;
done:
  pl_free(pieces);
  pl_free(ptrs);
  pl_free(scores);
  pl_free(types);
  return rc;
}

