/* pagellm info -m MODEL [--json]: architecture, hyperparameters, parameter count, tensor
 * types, weight bytes and KV bytes per token. */
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/engine_opts.h"
#include "model/model.h"
#include "pagellm.h"

static void count_types(const pl_model *m, int counts[2048]) {
  const pl_tensor *t[] = {&m->tok_embd, &m->output};
  for (int i = 0; i < 2; i++)
    counts[t[i]->type]++;
  for (int l = 0; l < m->hp.n_layer; l++) {
    const pl_layer *L = &m->layers[l];
    const pl_tensor *ts[] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->w_gate, &L->w_up, &L->w_down};
    for (int i = 0; i < 7; i++)
      counts[ts[i]->type]++;
  }
}

int pl_cmd_info(int argc, char **argv) {
  const char *path = NULL;
  int json = 0;
  for (int i = 1; i < argc; i++) {
    if ((!strcmp(argv[i], "-m") || !strcmp(argv[i], "--model")) && i + 1 < argc)
      path = argv[++i];
    else if (!strcmp(argv[i], "--json"))
      json = 1;
    else if (!strcmp(argv[i], "--help")) {
      printf("usage: pagellm info -m MODEL [--json]\n");
      return 0;
    } else {
      fprintf(stderr, "pagellm info: unknown option '%s'\n", argv[i]);
      return 2;
    }
  }
  if (!path)
    path = pl_engine_opts_default_model();
  if (!path) {
    fprintf(stderr, "pagellm info: -m MODEL is required\n");
    return 2;
  }
  pl_model *m;
  if (pl_model_load(path, &m) < 0) {
    fprintf(stderr, "pagellm info: %s\n", pl_last_error());
    return 1;
  }
  const pl_hparams *hp = &m->hp;
  static int counts[2048];
  memset(counts, 0, sizeof counts);
  count_types(m, counts);
  json_t *types = json_object();
  for (int t = 0; t < 2048; t++)
    if (counts[t])
      json_object_set_new(types, pl_dtype_name((pl_dtype)t), json_integer(counts[t]));
  json_t *o = json_pack(
      "{s:s,s:s,s:s,s:I,s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:f,s:f,s:i,s:s,s:b,s:b,s:I,s:I,s:o}",
      "path", path, "format", m->format, "architecture", pl_arch_name(hp->arch), "n_params",
      (json_int_t)m->n_params, "n_vocab", hp->n_vocab, "n_embd", hp->n_embd, "n_layer",
      hp->n_layer, "n_head", hp->n_head, "n_head_kv", hp->n_head_kv, "head_dim", hp->head_dim,
      "n_ff", hp->n_ff, "n_ctx_train", hp->n_ctx_train, "rms_eps", (double)hp->rms_eps,
      "rope_theta", (double)hp->rope_theta, "rope_dim", hp->rope_dim, "rope_style",
      hp->rope_style == PL_ROPE_NEOX ? "neox" : "normal", "rope_llama3", hp->rope_llama3,
      "tied_embeddings", hp->tied_embeddings, "weight_bytes", (json_int_t)m->weight_bytes,
      "kv_bytes_per_token", (json_int_t)pl_model_kv_bytes_per_token(m), "matrix_types", types);
  if (json) {
    char *s = json_dumps(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    printf("%s\n", s);
    free(s);
  } else {
    printf("model        %s (%s)\n", path, m->format);
    printf("architecture %s\n", pl_arch_name(hp->arch));
    printf("parameters   %lld (%.2f M)\n", (long long)m->n_params, m->n_params / 1e6);
    printf("vocab        %d\n", hp->n_vocab);
    printf("layers       %d, embd %d, ff %d\n", hp->n_layer, hp->n_embd, hp->n_ff);
    printf("heads        %d query, %d kv, head_dim %d\n", hp->n_head, hp->n_head_kv, hp->head_dim);
    printf("context      %d (trained)\n", hp->n_ctx_train);
    printf("rope         theta %g, dims %d, %s%s\n", hp->rope_theta, hp->rope_dim,
           hp->rope_style == PL_ROPE_NEOX ? "neox (half-split)" : "normal (adjacent pairs)",
           hp->rope_llama3 ? ", llama3 scaling" : "");
    printf("output       %s\n", hp->tied_embeddings ? "tied to the token embedding" : "separate");
    printf("weights      %.2f MiB:", m->weight_bytes / 1048576.0);
    for (int t = 0; t < 2048; t++)
      if (counts[t])
        printf(" %s x%d", pl_dtype_name((pl_dtype)t), counts[t]);
    printf("\nKV per token %zu bytes (F32 K and V)\n", pl_model_kv_bytes_per_token(m));
  }
  json_decref(o);
  pl_model_free(m);
  return 0;
}
