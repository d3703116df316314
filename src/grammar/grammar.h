/* Constrained decoding: grammars over bytes, matched by a pushdown automaton, and per-step
 * token masks over a vocabulary.
 *
 *   GBNF text ──pl_grammar_compile──► pl_grammar (rules of byte-class elements; immutable
 *                                      except for its lazily filled token tables)
 *   JSON schema ──pl_json_schema_to_gbnf──► GBNF text      (json_schema.c)
 *   regex ──pl_regex_to_gbnf──► GBNF text                   (regex.c)
 *   pl_grammar + pl_vocab ──pl_gmatch_*──► per-sample state: which tokens may come next
 *
 * GBNF is llama.cpp's dialect: `name ::= alternatives`, "literals", [character classes] with
 * ranges and ^, ( groups ), `.`, and the postfix operators * + ? {m} {m,} {m,n}; the start rule
 * is `root`. Characters are Unicode code points, matched as their UTF-8 bytes, so a token that
 * ends inside a character is still matched exactly. Left recursion is rejected at compile time.
 *
 * Token masks (token_mask.c): the vocabulary's byte strings are sorted once (a trie in sorted
 * order, pl_vocab). For each position of the grammar at which a stack can stop (a character
 * class), the tokens are split once into those accepted whatever lies below that rule on the
 * stack, those never accepted, and "uncertain" ones that run past the end of the rule; only
 * the uncertain ones are checked against the real stack at each step. The tables are filled
 * lazily, the first time a position is seen, and live as long as the grammar, so a grammar
 * cached per schema pays for them once.
 *
 * Threading: pl_grammar_compile and the text converters are pure (any thread). A pl_grammar
 * with its tables and its matchers belong to one thread (the engine's). */
#ifndef PL_GRAMMAR_GRAMMAR_H
#define PL_GRAMMAR_GRAMMAR_H
#include <stddef.h>
#include <stdint.h>

typedef struct pl_grammar pl_grammar;
struct pl_tokenizer;

/* Compile GBNF text (len bytes). Errors: PL_EINVAL with a message that names the line and the
 * problem ("grammar: line 3: undefined rule 'valu'"), PL_ENOMEM. */
int pl_grammar_compile(const char *text, size_t len, pl_grammar **out);
void pl_grammar_free(pl_grammar *g); /* NULL ok */
size_t pl_grammar_bytes(const pl_grammar *g); /* memory held, tables included */

/* ---- vocabulary ---------------------------------------------------------------------------- */

/* The vocabulary's bytes, sorted, for mask computation. Control/unknown tokens and empty
 * pieces never match a grammar; end-of-generation ids are allowed exactly where the grammar
 * may end. */
typedef struct pl_vocab pl_vocab;
int pl_vocab_create(const struct pl_tokenizer *t, pl_vocab **out);
/* The same from raw pieces (tests, benchmarks): piece[i] of piece_len[i] bytes, or NULL for a
 * token that never matches; eog[0..n_eog) end generation. */
int pl_vocab_create_raw(int n_vocab, const char *const *piece, const size_t *piece_len,
                        const int32_t *eog, int n_eog, pl_vocab **out);
void pl_vocab_free(pl_vocab *v);
int pl_vocab_size(const pl_vocab *v);

/* ---- matching ----------------------------------------------------------------------------- */

/* One sample's position in a grammar. Any call that advances or expands it may fail with
 * PL_EINVAL on a grammar too ambiguous to match in bounded work (more than 2^18 expansion
 * steps for one byte, or 2^14 distinct parse stacks at once; grammar_impl.h), e.g. nested
 * optional repetitions like ((x?){0,N}){0,N}; the message says which. */
typedef struct pl_gmatch pl_gmatch;

int pl_gmatch_create(pl_grammar *g, const pl_vocab *v, pl_gmatch **out);
void pl_gmatch_free(pl_gmatch *m);

/* Bitset of allowed next tokens into mask[(n_vocab + 63) / 64] (bit i of word i/64 = token i).
 * Returns how many tokens are allowed (0: nothing can continue, e.g. a grammar needing bytes
 * no token has). Uses the grammar's tables (filling them on first use). */
int pl_gmatch_mask(pl_gmatch *m, uint64_t *mask);

/* Whether `token` may come next (what the mask would say, computed for one token). */
int pl_gmatch_allows(pl_gmatch *m, int32_t token);

/* Advance over an accepted token. PL_EINVAL if the grammar does not allow it (state
 * unchanged), PL_ENOMEM. An end-of-generation token is accepted where the grammar may end. */
int pl_gmatch_accept(pl_gmatch *m, int32_t token);

/* Advance over raw bytes (tests, tool-call prefixes). Same errors. */
int pl_gmatch_accept_bytes(pl_gmatch *m, const char *s, size_t n);

/* 1 when the input so far is a complete sentence of the grammar. */
int pl_gmatch_can_end(const pl_gmatch *m);
/* 1 when the grammar is complete and nothing more may follow (the sample can stop). */
int pl_gmatch_done(const pl_gmatch *m);

/* ---- converters to GBNF (pure) ----------------------------------------------------------- */

/* A malloc'd (pl_malloc) string or NULL with *err filled. */
typedef struct pl_gconv_error {
  char message[512];
} pl_gconv_error;

/* JSON schema (a jansson json_t *, passed as void * to keep jansson out of this header) to
 * GBNF. Unsupported keywords fail with a message naming the keyword and where it is. */
char *pl_json_schema_to_gbnf(const void *schema, pl_gconv_error *err);
/* Any JSON value (response_format json_object: an object). */
char *pl_json_object_gbnf(void);
/* A regular expression (ECMAScript subset: no backreferences or lookaround) matching the whole
 * output. */
char *pl_regex_to_gbnf(const char *re, pl_gconv_error *err);
/* One of the given strings exactly (vLLM guided_choice). */
char *pl_choice_to_gbnf(const char *const *choices, int n, pl_gconv_error *err);

/* Append `s` as a GBNF string literal ("..." with escapes) to a growing buffer. Internal to the
 * converters; exposed for the tool-call grammar builder. */
typedef struct pl_gbuf {
  char *p;
  size_t len, cap;
  int oom;
} pl_gbuf;
void pl_gbuf_put(pl_gbuf *b, const char *s);
void pl_gbuf_putn(pl_gbuf *b, const char *s, size_t n);
void pl_gbuf_printf(pl_gbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void pl_gbuf_literal(pl_gbuf *b, const char *s, size_t n);
#endif
