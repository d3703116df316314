/* `--load-format dummy` (model_dummy.c, weight_rand.h, the CPU backend's weight_fill_random):
 *  1. The random model equals the GGUF that `pagellm model-gen` (the CLI, a separate program
 *     reading the same preset table) writes for the same shape, seed and type: every tensor
 *     byte for byte after the backend generated it, the tokenizer's ids for the same text, and
 *     the engine's greedy tokens with their top-20 logprobs bit for bit (on the CPU, or on
 *     $PAGELLM_TEST_DEVICE: scripts/test-gpu.sh runs it on the GPU). For a llama GQA
 *     config (tests/data/models/dummy-llama) in bf16, f16 and f32, and a qwen2 config (QKV
 *     biases, tied embeddings) in bf16.
 *  2. Seeds: the same seed twice gives the same bytes, another seed different ones; the
 *     values have the distribution model-gen documents (mean 0, std 0.02, |x| <= 3.47 std; norms
 *     1 + that); the hash is splitmix64 (its published first outputs for state 0).
 *  3. Bad configs: each gives PL_EFORMAT/PL_EUNSUPPORTED/PL_EIO/PL_EINVAL with a message that
 *     names the problem, and nothing leaks. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backend/backend.h"
#include "backend/cpu/kern/kern.h"
#include "backend/weight_rand.h"
#include "check.h"
#include "model/model.h"
#include "pagellm.h"
#include "tokenizer/tokenizer.h"
#include "util/alloc.h"
#include "util/error.h"

static const char *build_dir;
static char tmpdir[512];

static int model_gen(const char *out, const char *args) {
  char cmd[2048];
  snprintf(cmd, sizeof cmd, "%s/pagellm model-gen -q -o %s %s", build_dir, out, args);
  int rc = system(cmd);
  CHECK(rc == 0, "%s failed (%d)", cmd, rc);
  return rc;
}

/* every tensor of the two models, after upload/generation on a CPU backend each */
static void same_tensor(const pl_tensor *a, const pl_tensor *b, const char *what, int layer) {
  CHECK(a->type == b->type && a->ne[0] == b->ne[0] && a->ne[1] == b->ne[1] &&
            a->nbytes == b->nbytes, "%s (layer %d): %s [%lld,%lld] vs %s [%lld,%lld]", what, layer,
        pl_dtype_name(a->type), (long long)a->ne[0], (long long)a->ne[1], pl_dtype_name(b->type),
        (long long)b->ne[0], (long long)b->ne[1]);
  CHECK((a->data == NULL) == (b->data == NULL), "%s (layer %d): present in one only", what,
        layer);
  if (a->data && b->data && a->nbytes == b->nbytes)
    CHECK(memcmp(a->data, b->data, a->nbytes) == 0, "%s (layer %d): bytes differ", what, layer);
}

static void same_weights(pl_model *file, pl_model *dummy) {
  pl_backend *b1 = NULL, *b2 = NULL;
  CHECK(pl_backend_cpu_create(2, &b1) == 0 && pl_backend_cpu_create(2, &b2) == 0, "backends");
  CHECK(pl_model_upload(file, b1, 0) == 0, "upload: %s", pl_last_error());
  CHECK(pl_model_upload(dummy, b2, 0) == 0, "fill: %s", pl_last_error());
  CHECK(!memcmp(&file->hp, &dummy->hp, sizeof file->hp), "hyperparameters differ");
  CHECK_EQ_INT(file->weight_bytes, dummy->weight_bytes);
  CHECK_EQ_INT(file->n_params, dummy->n_params);
  same_tensor(&file->tok_embd, &dummy->tok_embd, "token_embd", -1);
  same_tensor(&file->output_norm, &dummy->output_norm, "output_norm", -1);
  same_tensor(&file->output, &dummy->output, "output", -1);
  for (int l = 0; l < file->hp.n_layer && l < dummy->hp.n_layer; l++) {
    const pl_layer *A = &file->layers[l], *B = &dummy->layers[l];
#define T(f) same_tensor(&A->f, &B->f, #f, l)
    T(attn_norm); T(wq); T(wk); T(wv); T(bq); T(bk); T(bv); T(q_norm); T(k_norm); T(wo);
    T(ffn_norm); T(w_gate); T(w_up); T(w_down);
#undef T
  }
  b1->ops->destroy(b1);
  b2->ops->destroy(b2);
}

typedef struct {
  int32_t tok[12];
  float lp[12];
  pl_top_logprob top[12][20];
  int n;
} run_out;

/* greedy from a text prompt with top-20 logprobs; on the CPU, or $PAGELLM_TEST_DEVICE (the GPU
 * run of scripts/test-gpu.sh: the file's weights uploaded and the weights generated on the
 * device must give the same bits there too) */
static void run_engine(pl_engine_params *ep, run_out *o) {
  memset(o, 0, sizeof *o);
  const char *dev = getenv("PAGELLM_TEST_DEVICE");
  ep->device = dev && *dev ? dev : "cpu";
  ep->n_threads = 2;
  ep->kv_cache_bytes = 4 << 20;
  pl_engine *e = NULL;
  int rc = pl_engine_create(ep, &e);
  CHECK(rc == 0, "engine: %s", pl_last_error());
  if (rc)
    return;
  pl_sampling_params sp;
  pl_sampling_params_default(&sp);
  sp.temperature = 0;
  sp.max_tokens = 12;
  sp.ignore_eos = 1;
  sp.logprobs = 20;
  uint64_t id;
  CHECK(pl_engine_add_request(e, "Once upon a time, the quick brown fox", NULL, 0, &sp, &id) == 0,
        "add: %s", pl_last_error());
  pl_output_event ev;
  while (pl_engine_has_unfinished(e)) {
    CHECK(pl_engine_step(e) >= 0, "step: %s", pl_last_error());
    while (pl_engine_poll(e, &ev))
      for (int k = 0; k < ev.n_tokens && o->n < 12; k++, o->n++) {
        o->tok[o->n] = ev.tokens[k];
        o->lp[o->n] = ev.logprobs ? ev.logprobs[k] : NAN;
        for (int j = 0; j < ev.n_top && j < 20; j++)
          o->top[o->n][j] = ev.top[k * ev.n_top + j];
      }
  }
  pl_engine_destroy(e);
}

/* model-gen's GGUF vs the dummy model for one shape/type/seed */
static void identical(const char *label, const char *config, const char *mg_args,
                      const char *type, pl_weight_dtype dt, uint64_t seed) {
  char gguf[1024], args[1024];
  snprintf(gguf, sizeof gguf, "%s/%s.gguf", tmpdir, label);
  snprintf(args, sizeof args, "%s --type %s --seed %llu", mg_args, type,
           (unsigned long long)seed);
  if (model_gen(gguf, args))
    return;
  static const pl_dtype dts[] = {PL_DT_BF16, PL_DT_F32, PL_DT_F16, PL_DT_BF16};
  pl_model *f = NULL, *d = NULL;
  pl_dummy_spec ds = {config, dts[dt], seed};
  CHECK(pl_model_load(gguf, &f) == 0, "%s: %s", gguf, pl_last_error());
  CHECK(pl_model_load_dummy(&ds, &d) == 0, "%s: %s", config, pl_last_error());
  if (f && d) {
    same_weights(f, d);
    /* the same synthetic vocabulary */
    pl_tokenizer *t1 = NULL, *t2 = NULL;
    CHECK(pl_tokenizer_load_gguf(f->gguf, &t1) == 0 && pl_tokenizer_load_gguf(d->gguf, &t2) == 0,
          "tokenizers: %s", pl_last_error());
    pl_token_buf a = {0}, b = {0};
    const char *txt = "Hello, world! \xc3\xa9t\xc3\xa9 42 zzz\n";
    CHECK(pl_tokenizer_encode(t1, txt, strlen(txt), 1, 0, &a) == 0 &&
              pl_tokenizer_encode(t2, txt, strlen(txt), 1, 0, &b) == 0, "encode");
    CHECK(a.n == b.n && a.n > 5 && !memcmp(a.ids, b.ids, (size_t)a.n * sizeof *a.ids),
          "%s: token ids differ (%d vs %d)", label, a.n, b.n);
    pl_token_buf_free(&a);
    pl_token_buf_free(&b);
    pl_tokenizer_free(t1);
    pl_tokenizer_free(t2);
  }
  pl_model_free(f);
  pl_model_free(d);

  /* through the engine: greedy tokens and top-20 logprobs, bit for bit */
  pl_engine_params ep;
  run_out r1, r2;
  pl_engine_params_default(&ep);
  ep.model_path = gguf;
  run_engine(&ep, &r1);
  pl_engine_params_default(&ep);
  ep.load_format = PL_LOAD_DUMMY;
  ep.model_config = config;
  ep.dtype = dt;
  ep.load_seed = seed;
  run_engine(&ep, &r2);
  CHECK(r1.n == 12 && r2.n == 12, "%s: %d and %d tokens", label, r1.n, r2.n);
  CHECK(!memcmp(r1.tok, r2.tok, sizeof r1.tok), "%s: greedy tokens differ", label);
  CHECK(!memcmp(r1.lp, r2.lp, sizeof r1.lp), "%s: logprobs differ", label);
  CHECK(!memcmp(r1.top, r2.top, sizeof r1.top), "%s: top-20 logprobs differ", label);
  /* random weights, but not a degenerate model: the logprobs are spread, not one-hot */
  CHECK(r2.lp[0] < -0.01f && r2.top[0][19].logprob > -30, "%s: logprob %g, 20th %g", label,
        r2.lp[0], r2.top[0][19].logprob);
  unlink(gguf);
}

/* ---- 2. seeds and the distribution -------------------------------------------------------- */

static void seeds(const char *config) {
  /* splitmix64 (Vigna's reference) from state 0: its first two outputs */
  CHECK(pl_wrand_mix64(PL_WRAND_GOLDEN) == 0xE220A8397B1DCDAFull, "splitmix64 #1");
  CHECK(pl_wrand_mix64(2 * PL_WRAND_GOLDEN) == 0x6E789E6AA1B965F4ull, "splitmix64 #2");

  pl_model *m[3] = {0};
  pl_backend *be[3] = {0};
  uint64_t s[3] = {5, 5, 6};
  for (int i = 0; i < 3; i++) {
    pl_dummy_spec ds = {config, PL_DT_F32, s[i]};
    CHECK(pl_model_load_dummy(&ds, &m[i]) == 0, "%s", pl_last_error());
    CHECK(pl_backend_cpu_create(i + 1, &be[i]) == 0, "backend"); /* 1, 2, 3 threads */
    if (m[i])
      CHECK(pl_model_upload(m[i], be[i], 0) == 0, "%s", pl_last_error());
  }
  if (m[0] && m[1] && m[2]) {
    const pl_tensor *a = &m[0]->layers[1].w_down, *b = &m[1]->layers[1].w_down,
                    *c = &m[2]->layers[1].w_down;
    CHECK(!memcmp(a->data, b->data, a->nbytes), "same seed, other thread count: bytes differ");
    int64_t n = pl_tensor_nelem(a), same = 0;
    const float *x = a->data, *y = c->data;
    double sum = 0, sq = 0, mx = 0;
    for (int64_t i = 0; i < n; i++) {
      same += x[i] == y[i];
      sum += x[i];
      sq += (double)x[i] * x[i];
      mx = fabs(x[i]) > mx ? fabs(x[i]) : mx;
    }
    CHECK(same < n / 100, "seed 6 equals seed 5 in %lld of %lld elements", (long long)same,
          (long long)n);
    double mean = sum / n, sd = sqrt(sq / n - mean * mean);
    /* n = 32768: the sample mean's sd is 0.02/181 = 1.1e-4; the sample sd's about 0.4% */
    CHECK(fabs(mean) < 5e-4, "mean %g", mean);
    CHECK(fabs(sd - 0.02) < 0.0006, "std %g (want 0.02)", sd);
    CHECK(mx <= 0.02 * 3.4642 + 1e-6 && mx > 0.02 * 2.5, "max |x| %g", mx);
    /* other tensors: not copies of each other */
    CHECK(memcmp(m[0]->layers[0].w_down.data, a->data, a->nbytes), "layers 0 and 1 equal");
    CHECK(memcmp(m[0]->layers[1].w_up.data, m[0]->layers[1].w_gate.data,
                 m[0]->layers[1].w_up.nbytes), "gate and up equal");
    /* norms: 1 + N(0, 0.02^2) */
    const float *nw = m[0]->layers[0].attn_norm.data;
    double ns = 0;
    for (int i = 0; i < 128; i++)
      ns += nw[i];
    CHECK(fabs(ns / 128 - 1) < 0.01 && nw[0] != nw[1], "norm mean %g", ns / 128);
  }
  for (int i = 0; i < 3; i++) {
    if (be[i])
      be[i]->ops->destroy(be[i]);
    pl_model_free(m[i]);
  }
}

/* ---- 3. bad configs ----------------------------------------------------------------------- */

static void bad(const char *json, int want_rc, const char *want_msg) {
  char path[1024];
  snprintf(path, sizeof path, "%s/config.json", tmpdir);
  FILE *f = fopen(path, "w");
  fputs(json, f);
  fclose(f);
  pl_dummy_spec ds = {path, PL_DT_BF16, 0};
  pl_model *m = NULL;
  int rc = pl_model_load_dummy(&ds, &m);
  CHECK(rc == want_rc && !m, "rc %d (want %d) for %s", rc, want_rc, json);
  CHECK(strstr(pl_last_error(), want_msg) != NULL, "message '%s' lacks '%s'", pl_last_error(),
        want_msg);
  unlink(path);
}

#define GOOD_HEAD "\"model_type\":\"llama\",\"intermediate_size\":64,\"num_hidden_layers\":1," \
                  "\"vocab_size\":300,\"max_position_embeddings\":64"
static void bad_configs(void) {
  bad("{\"model_type\":\"llama\",\"hidden_size\":64,", PL_EFORMAT, "cannot parse");
  bad("[1, 2]", PL_EFORMAT, "not a JSON object");
  bad("{" GOOD_HEAD ",\"num_attention_heads\":4}", PL_EFORMAT, "missing field 'hidden_size'");
  bad("{" GOOD_HEAD ",\"hidden_size\":64}", PL_EFORMAT, "missing field 'num_attention_heads'");
  bad("{\"hidden_size\":64,\"num_attention_heads\":4}", PL_EFORMAT, "missing field 'model_type'");
  bad("{" GOOD_HEAD ",\"hidden_size\":100,\"num_attention_heads\":3}", PL_EFORMAT,
      "hidden_size 100 is not a multiple of num_attention_heads 3");
  bad("{" GOOD_HEAD ",\"hidden_size\":64,\"num_attention_heads\":4,\"num_key_value_heads\":3}",
      PL_EFORMAT, "num_attention_heads 4 is not a multiple of num_key_value_heads 3");
  bad("{" GOOD_HEAD ",\"hidden_size\":\"64\",\"num_attention_heads\":4}", PL_EFORMAT,
      "field 'hidden_size' must be an integer");
  bad("{" GOOD_HEAD ",\"hidden_size\":-64,\"num_attention_heads\":4}", PL_EFORMAT,
      "field 'hidden_size' must be an integer");
  bad("{" GOOD_HEAD ",\"hidden_size\":64,\"num_attention_heads\":4,\"rms_norm_eps\":\"x\"}",
      PL_EFORMAT, "field 'rms_norm_eps' must be a positive number");
  bad("{" GOOD_HEAD ",\"hidden_size\":64,\"num_attention_heads\":4,\"tie_word_embeddings\":1}",
      PL_EFORMAT, "'tie_word_embeddings' must be true or false");
  bad("{" GOOD_HEAD ",\"hidden_size\":64,\"num_attention_heads\":4,"
      "\"rope_scaling\":{\"rope_type\":\"yarn\",\"factor\":4}}", PL_EUNSUPPORTED,
      "rope scaling type 'yarn' is not supported");
  bad("{\"model_type\":\"gpt2\",\"hidden_size\":64}", PL_EUNSUPPORTED,
      "model_type 'gpt2' is not supported");
  bad("{\"model_type\":\"llama\",\"intermediate_size\":64,\"num_hidden_layers\":1,"
      "\"vocab_size\":100,\"max_position_embeddings\":64,\"hidden_size\":64,"
      "\"num_attention_heads\":4}", PL_EFORMAT, "vocab_size 100 is below 260");
  /* not a preset, not a file */
  pl_dummy_spec ds = {"llama-9-1t", PL_DT_BF16, 0};
  pl_model *m = NULL;
  CHECK(pl_model_load_dummy(&ds, &m) == PL_EIO && !m, "unknown preset");
  CHECK(strstr(pl_last_error(), "neither a preset (tinyllama-1.1b") != NULL, "%s",
        pl_last_error());
  ds.config = NULL;
  CHECK(pl_model_load_dummy(&ds, &m) == PL_EINVAL &&
            strstr(pl_last_error(), "needs --model-config"), "%s", pl_last_error());
  ds.config = "tinyllama-1.1b";
  ds.dtype = PL_DT_Q8_0;
  CHECK(pl_model_load_dummy(&ds, &m) == PL_EINVAL &&
            strstr(pl_last_error(), "f32, f16 or bf16, not Q8_0"), "%s", pl_last_error());
  /* the engine refuses dummy-only options for file models */
  pl_engine_params ep;
  pl_engine_params_default(&ep);
  ep.model_path = "/nonexistent.gguf";
  ep.model_config = "llama-3-8b";
  pl_engine *e = NULL;
  CHECK(pl_engine_create(&ep, &e) == PL_EINVAL && !e &&
            strstr(pl_last_error(), "--model-config applies to --load-format dummy only"),
        "%s", pl_last_error());
}

/* the preset table's shapes (without generating any weights) */
static void presets(void) {
  static const struct { const char *name; int E, L, H, KV, F, V, hd, tied; pl_arch a; } want[] = {
      {"tinyllama-1.1b", 2048, 22, 32, 4, 5632, 32000, 64, 0, PL_ARCH_LLAMA},
      {"llama-2-7b", 4096, 32, 32, 32, 11008, 32000, 128, 0, PL_ARCH_LLAMA},
      {"llama-3-8b", 4096, 32, 32, 8, 14336, 128256, 128, 0, PL_ARCH_LLAMA},
      {"qwen2.5-7b", 3584, 28, 28, 4, 18944, 152064, 128, 0, PL_ARCH_QWEN2},
      {"llama-3.2-1b", 2048, 16, 32, 8, 8192, 128256, 64, 1, PL_ARCH_LLAMA},
  };
  for (size_t i = 0; i < sizeof want / sizeof *want; i++) {
    pl_dummy_spec ds = {want[i].name, PL_DT_BF16, 0};
    pl_model *m = NULL;
    CHECK(pl_model_load_dummy(&ds, &m) == 0, "%s: %s", want[i].name, pl_last_error());
    if (!m)
      continue;
    const pl_hparams *h = &m->hp;
    CHECK(h->n_embd == want[i].E && h->n_layer == want[i].L && h->n_head == want[i].H &&
              h->n_head_kv == want[i].KV && h->n_ff == want[i].F && h->n_vocab == want[i].V &&
              h->head_dim == want[i].hd && h->tied_embeddings == want[i].tied &&
              h->arch == want[i].a, "%s: shape", want[i].name);
    CHECK((m->layers[0].bq.data != NULL) == (want[i].a == PL_ARCH_QWEN2), "%s: biases",
          want[i].name);
    if (!strcmp(want[i].name, "llama-3-8b")) /* 8.03 B parameters; bf16, norms f32 */
      CHECK(m->n_params == 8030261248ll &&
                m->weight_bytes == 2 * (size_t)8030261248ll + 2 * (size_t)(32 * 8192 + 4096),
            "llama-3-8b: %lld params, %zu bytes", (long long)m->n_params, m->weight_bytes);
    if (!strcmp(want[i].name, "llama-3.2-1b")) /* 1.24 B, the output tied to the embedding */
      CHECK(m->n_params == 1235814400ll, "llama-3.2-1b: %lld params", (long long)m->n_params);
    if (!strcmp(want[i].name, "qwen2.5-7b")) /* 7.62 B */
      CHECK(m->n_params == 7615616512ll, "qwen2.5-7b: %lld params", (long long)m->n_params);
    CHECK(m->tok_embd.data == NULL && m->tok_embd.random, "%s: weights generated at load",
          want[i].name);
    pl_model_free(m);
  }
}

int main(void) {
  size_t live0 = pl_alloc_live_bytes();
  build_dir = getenv("PL_BUILD_DIR") ? getenv("PL_BUILD_DIR") : ".";
  const char *t = getenv("TMPDIR");
  snprintf(tmpdir, sizeof tmpdir, "%s/test_model_dummy.XXXXXX", t && *t ? t : "/tmp");
  if (!mkdtemp(tmpdir)) {
    fprintf(stderr, "cannot create %s\n", tmpdir);
    return 1;
  }
  const char *llama = data_path("models/dummy-llama/config.json");
  const char *mg_llama = "--n-embd 128 --n-ff 256 --n-layer 2 --n-head 4 --n-head-kv 2 "
                         "--n-vocab 512 --n-ctx 256 --rms-eps 1e-5 --rope-theta 10000";
  identical("llama-bf16", llama, mg_llama, "bf16", PL_WEIGHT_DTYPE_AUTO, 0);
  identical("llama-f16", llama, mg_llama, "f16", PL_WEIGHT_DTYPE_F16, 3);
  identical("llama-f32", llama, mg_llama, "f32", PL_WEIGHT_DTYPE_F32, 12345678901ull);

  char qwen[1024];
  snprintf(qwen, sizeof qwen, "%s/qwen2-tiny", tmpdir);
  char cfg[1100];
  snprintf(cfg, sizeof cfg, "mkdir -p %s && printf '%%s' '{\"model_type\": \"qwen2\", "
           "\"hidden_size\": 128, \"intermediate_size\": 320, \"num_hidden_layers\": 2, "
           "\"num_attention_heads\": 4, \"num_key_value_heads\": 1, \"vocab_size\": 600, "
           "\"max_position_embeddings\": 512, \"rms_norm_eps\": 1e-06, \"rope_theta\": 1000000.0, "
           "\"tie_word_embeddings\": true}' > %s/config.json", qwen, qwen);
  CHECK(system(cfg) == 0, "%s", cfg);
  identical("qwen2-bf16", qwen, "--arch qwen2 --n-embd 128 --n-ff 320 --n-layer 2 --n-head 4 "
            "--n-head-kv 1 --n-vocab 600 --n-ctx 512 --tied", "bf16", PL_WEIGHT_DTYPE_BF16, 9);

  seeds(llama);
  bad_configs();
  presets();
  snprintf(cfg, sizeof cfg, "rm -rf %s", tmpdir);
  CHECK(system(cfg) == 0, "%s", cfg);
  CHECK(pl_alloc_live_bytes() == live0, "leaked %zu bytes", pl_alloc_live_bytes() - live0);
  return check_summary("test_model_dummy");
}
