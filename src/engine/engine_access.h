/* The engine's accessors for the in-tree layers above it (server/, cli/): what they need
 * beyond the public API of include/pagellm.h (the model's tokenizer, chat template and model,
 * a chat rendered with the template, a KV-cache snapshot for the web UI's KV map). Embedding
 * programs use pagellm.h only. Not to be confused with engine_impl.h, the engine's private
 * structures, which only the engine's own files include.
 *
 * Same thread rule as pagellm.h: call from the engine's thread, or before the engine thread
 * starts / after it stops (the returned objects are immutable after load, so reading them
 * from other threads concurrently with pl_engine_step is safe). */
#ifndef PL_ENGINE_ACCESS_H
#define PL_ENGINE_ACCESS_H
#include "pagellm.h"

/* The KV map's snapshot type is part of this API (pl_engine_kv_snapshot fills it): included
 * here so that the server reaches core/ only through the engine. */
#include "core/kv_snapshot.h"
/* The chat message type of pl_engine_render_chat (plain C, no JSON library's types). */
#include "template/chat_msg.h"

struct pl_tokenizer;     /* src/tokenizer/tokenizer.h */
struct pl_chat_template; /* src/template/chat_template.h */
struct pl_model;         /* src/model/model.h */

/* The model's tokenizer (never NULL once created). Immutable: safe from any thread. */
const struct pl_tokenizer *pl_engine_tokenizer(const pl_engine *e);
/* The parsed chat template: the --chat-template override, else the model's own; NULL when the
 * model has none (chat requests must then fail with a clear 400). Immutable. */
const struct pl_chat_template *pl_engine_chat_template(const pl_engine *e);
/* BOS/EOS token text for template rendering ("" when undefined). Immutable. */
const char *pl_engine_bos_text(const pl_engine *e);
const char *pl_engine_eos_text(const pl_engine *e);
const struct pl_model *pl_engine_model(const pl_engine *e);
/* The model's name (file stem) for /v1/models when --served-model-name is absent. */
const char *pl_engine_model_name(const pl_engine *e);
int pl_engine_max_model_len(const pl_engine *e);
/* pl_engine_params.fair_share: the server orders its waiting room the same way */
int pl_engine_fair_share(const pl_engine *e);

/* Fill snap with the KV cache and queues now, listing at most
 * max_waiting waiting requests; each request's sample index is set. Engine thread only,
 * between steps. PL_ENOMEM. */
int pl_engine_kv_snapshot(const pl_engine *e, int max_waiting, pl_kv_snapshot *snap);

/* Render a chat with the engine's template (BOS/EOS text filled in, generation prompt on
 * when add_generation_prompt). msgs: the n_msgs messages as plain C (pl_chat_msg: each field a
 * string or JSON text; borrowed for the call). tools_json: the JSON text of the tools array,
 * or NULL; kwargs_json: the JSON text of an object of further template variables (like
 * enable_thinking), or NULL. *out is pl_malloc'd.
 * max_text > 0 stops the render once the text passes that many bytes (PL_ETOOLONG): a server
 * that refuses texts too long for the context never holds a longer one.
 * Errors: PL_ENOTFOUND (no template: the caller answers 400), PL_ETEMPLATE (the template
 * raised or cannot run; message says why), PL_EINVAL (tools_json or kwargs_json is not JSON
 * of that kind), PL_ETOOLONG, PL_ENOMEM. Thread-safe (read-only engine state). */
int pl_engine_render_chat(const pl_engine *e, const pl_chat_msg *msgs, size_t n_msgs,
                          const char *tools_json, const char *kwargs_json,
                          int add_generation_prompt, size_t max_text, char **out,
                          size_t *out_len);
#endif
