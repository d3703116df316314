/* The paged forward pass against the contiguous float64 reference (tests/unit/ref_model.h),
 * for every architecture switch and weight type, with K/V reached only through scattered,
 * shuffled block tables: a shared prefix (two sequences reading the same physical blocks),
 * a fork with a copy-on-write of the partial last block, and mixed prefill chunks and
 * decodes in each step. Every computed position's logits are compared.
 *
 * Thresholds (max |diff| / max |logit|): F32 weights 2e-4 (float32 accumulation);
 * F16/BF16 2e-3 (activations may be rounded to the weight type); 8-bit and 4/6-bit types
 * 4e-2 (activations are quantized to 8 bits per block for the integer dot products).
 * With PAGELLM_TEST_DEVICE=cuda the forward runs on the GPU (bf16 KV): at least 1e-2.
 * KV kept as F16, BF16 or Q8_0 (`--kv-cache-dtype`): the reference rounds its K and V rows
 * through the same type (ref_kv_round), so what is left is float32 arithmetic and the odd
 * element rounded the other way (K computed in float vs double); Q8_0 KV is CPU-only.
 *
 * The decode cases give one token per sequence after the first step: the steps a backend pads
 * to a batch bucket and replays from a recording (CUDA graphs: recorded on a key's second
 * step, replayed from its third). On the CPU, which records nothing, the backend's table gets
 * a bucket of 4, so the padding itself is checked against the reference too. */
#include <stdio.h>

#include "backend/backend.h"
#include "backend/cpu/kern/kern.h"
#include "check.h"
#include "pagellm.h"
#include "model/runner.h"
#include "ref_model.h"

#define BS 4
#define NBLK 96
#define MAXB 32

typedef struct {
  int len;           /* total tokens */
  int32_t ids[64];
  int32_t table[MAXB];
  int done;          /* tokens computed */
  double *ref;       /* [len][n_vocab] */
} seqst;

/* the CPU backend's ops, with decode steps padded to multiples of 4 and nothing recorded */
static pl_backend_ops padded_ops;
static int bucket4(pl_backend *be, int n) { return (void)be, (n + 3) / 4 * 4; }
static int record_nothing(pl_backend *be, const void *tag) { return (void)be, (void)tag, 0; }
static int ran(pl_backend *be, int rc) { return (void)be, rc; }

static double run_case(const char *label, const ref_cfg *cfg, double tol, int decode,
                       pl_dtype kv) {
  pl_model *m = ref_model_build(cfg);
  CHECK(m != NULL, "%s: model build", label);
  if (!m)
    return 1e9;
  int V = m->hp.n_vocab;
  pl_backend *be = NULL;
  CHECK(pl_backend_create(test_device(), 2, &be) == 0, "%s: %s", test_device(), pl_last_error());
  CHECK(pl_model_upload(m, be, 0) == 0, "%s", pl_last_error());
  if (decode && !be->ops->graph_bucket) {
    padded_ops = *be->ops;
    padded_ops.graph_bucket = bucket4;
    padded_ops.graph_begin = record_nothing;
    padded_ops.graph_end = ran;
    be->ops = &padded_ops;
  }
  /* On the GPU (PAGELLM_TEST_DEVICE=cuda) K/V are bf16 and GEMM inputs are cast to bf16/f16
   * (TF32 for f32 weights): <= 2^-9 relative per rounding, ~5 per layer, compounding through
   * the layers: 1% of max |logit| bounds that; the quantized cases' 4e-2 already covers it. */
  if (test_on_gpu() && tol < 1e-2)
    tol = 1e-2;
  pl_runner *r;
  pl_runner_params rp = {.max_tokens = 64, .max_logits = 64, .block_size = BS, .n_blocks = NBLK,
                         .kv_dtype = kv};
  CHECK(pl_runner_create(m, be, &rp, &r) == 0, "%s", pl_last_error());

  /* shuffled physical blocks 1..NBLK-1 */
  int perm[NBLK];
  for (int i = 0; i < NBLK; i++) perm[i] = i;
  for (int i = NBLK - 1; i > 1; i--) {
    int j = 1 + (int)(ref_randn() * 1e6 + 1e9) % i;
    int t = perm[i]; perm[i] = perm[j]; perm[j] = t;
  }
  int next_blk = 1;
  seqst s[3];
  memset(s, 0, sizeof s);
  s[0].len = 45; s[1].len = 29; s[2].len = 30;
  for (int k = 0; k < 3; k++)
    for (int i = 0; i < s[k].len; i++)
      s[k].ids[i] = (int32_t)((unsigned)(ref_randn() * 1e6 + 1e9) % (unsigned)V);
  /* seq1 shares seq0's first 2 blocks (8 tokens); seq2 is a fork of seq0 after 10 tokens */
  memcpy(s[1].ids, s[0].ids, 8 * sizeof(int32_t));
  memcpy(s[2].ids, s[0].ids, 10 * sizeof(int32_t));
  ref_kv_type = kv;
  for (int k = 0; k < 3; k++) {
    s[k].ref = malloc(sizeof(double) * (size_t)s[k].len * V);
    ref_forward(m, s[k].ids, s[k].len, s[k].ref);
  }
  ref_kv_type = PL_DT_F32;
  for (int b = 0; b < (s[0].len + BS - 1) / BS; b++) s[0].table[b] = perm[next_blk++];
  s[1].table[0] = s[0].table[0];
  s[1].table[1] = s[0].table[1];
  for (int b = 2; b < (s[1].len + BS - 1) / BS; b++) s[1].table[b] = perm[next_blk++];

  int32_t tok[64], pos[64], slot[64], qsl[4], lens[3], bt[3 * MAXB], rows[64], csrc[1], cdst[1];
  float *logits = malloc(sizeof(float) * 64 * (size_t)V);
  double maxerr = 0, maxabs = 0;
  int active[3] = {1, 0, 0};
  for (int step = 0; step < 200; step++) {
    pl_step_plan p = {.block_size = BS, .max_blocks_per_seq = MAXB, .token_ids = tok,
                      .positions = pos, .slot_mapping = slot, .query_start_loc = qsl,
                      .seq_lens = lens, .block_tables = bt, .logits_rows = rows,
                      .copy_src = csrc, .copy_dst = cdst};
    if (step == 1) {
      /* fork: seq2 shares seq0's blocks 0,1 and gets a CoW copy of the partial block 2 */
      s[2].table[0] = s[0].table[0];
      s[2].table[1] = s[0].table[1];
      s[2].table[2] = perm[next_blk++];
      for (int b = 3; b < (s[2].len + BS - 1) / BS; b++) s[2].table[b] = perm[next_blk++];
      s[2].done = 10;
      s[1].done = 8;
      csrc[0] = s[0].table[2];
      cdst[0] = s[2].table[2];
      p.n_copies = 1;
      active[1] = active[2] = 1;
    }
    int n = 0, ns = 0, want[3] = {0, 0, 0};
    qsl[0] = 0;
    for (int k = 0; k < 3; k++) {
      if (!active[k] || s[k].done == s[k].len)
        continue;
      int w = step == 0 ? 10 : decode ? 1 : 1 + (int)((unsigned)(ref_randn() * 1e6 + 1e9) % 7u);
      if (w > s[k].len - s[k].done) w = s[k].len - s[k].done;
      if (n + w > 64) w = 64 - n;
      if (w <= 0) continue;
      for (int i = 0; i < w; i++) {
        int ps = s[k].done + i;
        tok[n] = s[k].ids[ps];
        pos[n] = ps;
        slot[n] = s[k].table[ps / BS] * BS + ps % BS;
        rows[n] = n;
        n++;
      }
      memcpy(bt + ns * MAXB, s[k].table, sizeof s[k].table);
      lens[ns] = s[k].done + w;
      qsl[++ns] = n;
      want[k] = w;
    }
    if (!n)
      break;
    p.n_tokens = n; p.n_seqs = ns; p.n_logits = n;
    int rc = pl_runner_forward(r, &p, logits);
    CHECK(rc == 0, "%s: forward: %s", label, pl_last_error());
    /* compare every computed position with the reference of its sequence */
    for (int k = 0, t = 0; k < 3; k++) {
      for (int i = 0; i < want[k]; i++, t++) {
        int ps = s[k].done + i;
        for (int v = 0; v < V; v++) {
          double e = fabs(logits[(size_t)t * V + v] - s[k].ref[(size_t)ps * V + v]);
          double av = fabs(s[k].ref[(size_t)ps * V + v]);
          maxerr = e > maxerr ? e : maxerr;
          maxabs = av > maxabs ? av : maxabs;
        }
      }
      s[k].done += want[k];
    }
  }
  for (int k = 0; k < 3; k++)
    CHECK_EQ_INT(s[k].done, s[k].len);
  double rel = maxerr / (maxabs > 0 ? maxabs : 1);
  printf("%-28s max|diff| %.3g  max|logit| %.3g  rel %.3g (tol %.g)\n", label, maxerr, maxabs,
         rel, tol);
  CHECK(rel <= tol, "%s: relative logit error %.3g > %.3g", label, rel, tol);
  for (int k = 0; k < 3; k++) free(s[k].ref);
  free(logits);
  pl_runner_free(r);
  be->ops->destroy(be);
  pl_model_free(m);
  return rel;
}

int main(void) {
  size_t live0 = pl_alloc_live_bytes();
  /* small shapes; K-quants need rows of 256 */
  ref_cfg base = {.arch = PL_ARCH_LLAMA, .wtype = PL_DT_F32, .n_vocab = 96, .n_embd = 64,
                  .n_layer = 2, .n_head = 4, .n_head_kv = 2, .head_dim = 16, .n_ff = 96,
                  .seed = 1};
  struct { const char *label; ref_cfg c; double tol; int decode; pl_dtype kv; } cases[] = {
    {"llama f32 separate-output", base, 2e-4},
    {"llama f32 tied", base, 2e-4},
    {"mistral f32 mha", base, 2e-4},
    {"qwen2 f32 biases neox", base, 2e-4},
    {"qwen3 f32 qk-norm hd!=E/H", base, 2e-4},
    {"llama3.1 rope scaling", base, 2e-4},
    {"llama f16", base, 2e-3},
    /* bf16 activations into every BF16 matmul on AVX512-BF16: ~10 roundings of <= 2^-9 over
     * the 2 layers (3.1e-3 measured) */
    {"llama bf16", base, pl_kern_matmul_x_bf16(PL_DT_BF16) ? 6e-3 : 2e-3},
    {"llama q8_0", base, 4e-2},
    {"llama q4_0", base, 4e-2},
    {"llama mlx q4 g32", base, 4e-2},
    {"llama mlx q8 g32", base, 4e-2},
    {"llama q4_k", base, 4e-2},
    {"llama q6_k", base, 4e-2},
    {"llama f32 decode (padded)", base, 2e-4, 1},
    {"qwen2 bf16 decode (padded)", base, 2e-3, 1},
    /* KV cache element types (the reference rounds its K/V the same way; without that
     * rounding these measure 3e-4 (f16) to 4e-3 (q8_0)) */
    {"llama f32, kv f16", base, 5e-5, 0, PL_DT_F16},
    {"llama f32, kv bf16", base, 5e-5, 0, PL_DT_BF16},
    {"llama f32 decode, kv f16", base, 5e-5, 1, PL_DT_F16},
    {"qwen3 f32 hd 32, kv q8_0", base, 5e-5, 0, PL_DT_Q8_0},
    {"qwen3 q8_0 decode, kv q8_0", base, 4e-2, 1, PL_DT_Q8_0},
    /* head_dim 288 > 256: the CPU's per-key attention path */
    {"qwen3 f32 hd 288 (per-key)", base, 2e-4, 0},
    {"qwen3 f32 hd 288, kv f16", base, 5e-5, 1, PL_DT_F16},
  };
  cases[1].c.tied = 1;
  cases[2].c.arch = PL_ARCH_MISTRAL; cases[2].c.n_head_kv = 4;
  cases[3].c.arch = PL_ARCH_QWEN2; cases[3].c.biases = 1; cases[3].c.neox = 1; cases[3].c.tied = 1;
  cases[4].c.arch = PL_ARCH_QWEN3; cases[4].c.qk_norm = 1; cases[4].c.neox = 1; cases[4].c.head_dim = 32;
  cases[5].c.llama3 = 1;
  cases[6].c.wtype = PL_DT_F16;
  cases[7].c.wtype = PL_DT_BF16;
  cases[8].c.wtype = PL_DT_Q8_0;
  cases[9].c.wtype = PL_DT_Q4_0;
  cases[10].c.wtype = PL_DT_MLX_Q4;
  cases[11].c.wtype = PL_DT_MLX_Q8;
  cases[15].c.arch = PL_ARCH_QWEN2; cases[15].c.biases = 1; cases[15].c.neox = 1;
  cases[15].c.wtype = PL_DT_BF16;
  cases[15].tol = cases[7].tol;
  for (int i = 12; i < 14; i++) {
    cases[i].c.wtype = i == 12 ? PL_DT_Q4_K : PL_DT_Q6_K;
    cases[i].c.n_embd = 256; cases[i].c.n_ff = 256; cases[i].c.head_dim = 64;
  }
  for (int i = 19; i <= 20; i++) { /* Q8_0 KV: rows of whole 32-element blocks */
    cases[i].c.arch = PL_ARCH_QWEN3; cases[i].c.qk_norm = 1; cases[i].c.neox = 1;
    cases[i].c.head_dim = 32;
  }
  cases[20].c.wtype = PL_DT_Q8_0;
  for (int i = 21; i <= 22; i++) {
    cases[i].c.arch = PL_ARCH_QWEN3; cases[i].c.qk_norm = 1; cases[i].c.neox = 1;
    cases[i].c.head_dim = 288;
  }
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    if ((cases[i].kv == PL_DT_Q8_0 || cases[i].c.head_dim > 256) && test_on_gpu())
      continue; /* the CUDA backend keeps KV in bf16, f16 or f32, for heads of up to 256 */
    cases[i].c.seed = 100 + i;
    run_case(cases[i].label, &cases[i].c, cases[i].tol, cases[i].decode, cases[i].kv);
  }
  CHECK_EQ_INT(pl_alloc_live_bytes(), live0);
  return check_summary("test_forward_paged");
}
