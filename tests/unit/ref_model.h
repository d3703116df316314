/* Test support: random tiny Llama-family models built in memory, and an independent float64
 * reference forward pass with a contiguous KV cache (no paging, no SIMD, no batching).
 * The reference reads weights through pl_dequant_row only, so a quantized model is compared
 * against exact float64 math on its dequantized weights. */
#ifndef PL_TEST_REF_MODEL_H
#define PL_TEST_REF_MODEL_H
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cpu/kern/kern.h"
#include "model/model.h"
#include "util/alloc.h"

typedef struct {
  pl_arch arch;
  pl_dtype wtype;      /* matrices */
  int n_vocab, n_embd, n_layer, n_head, n_head_kv, head_dim, n_ff;
  int tied, biases, qk_norm, llama3, neox;
  uint64_t seed;
} ref_cfg;

static uint64_t ref_rng_state;
static double ref_randn(void) {
  /* xorshift64* + Box-Muller: deterministic and independent of libc */
  double u[2];
  for (int i = 0; i < 2; i++) {
    ref_rng_state ^= ref_rng_state >> 12;
    ref_rng_state ^= ref_rng_state << 25;
    ref_rng_state ^= ref_rng_state >> 27;
    u[i] = ((ref_rng_state * 2685821657736338717ull) >> 11) * (1.0 / 9007199254740992.0);
  }
  return sqrt(-2 * log(u[0] + 1e-300)) * cos(2 * M_PI * u[1]);
}

static void *ref_own(pl_model *m, size_t bytes) {
  if (m->n_owned == m->cap_owned) {
    m->cap_owned = m->cap_owned ? 2 * m->cap_owned : 64;
    m->owned = pl_realloc(m->owned, (size_t)m->cap_owned * sizeof *m->owned);
  }
  void *p = pl_calloc(1, bytes);
  m->owned[m->n_owned++] = p;
  return p;
}

/* MLX affine quantization, written from MLX's documented semantics: per group of
 * `gs` values, scale = (max - min) / (2^bits - 1), bias = min, q = round((w - bias)/scale);
 * values packed little-endian into uint32 words, element 0 in the lowest bits. */
static void ref_mlx_quant(pl_model *m, pl_tensor *t, const float *w, int bits, int gs) {
  int64_t in = t->ne[0], out = t->ne[1], ng = in / gs;
  uint32_t *q = ref_own(m, (size_t)(out * in * bits / 32) * 4);
  uint16_t *sc = ref_own(m, (size_t)(out * ng) * 2), *bi = ref_own(m, (size_t)(out * ng) * 2);
  int per = 32 / bits, maxq = (1 << bits) - 1;
  for (int64_t r = 0; r < out; r++)
    for (int64_t g = 0; g < ng; g++) {
      const float *x = w + r * in + g * gs;
      float mn = x[0], mx = x[0];
      for (int i = 1; i < gs; i++) {
        mn = x[i] < mn ? x[i] : mn;
        mx = x[i] > mx ? x[i] : mx;
      }
      float s = (mx - mn) / maxq;
      if (s == 0) s = 1e-8f;
      uint16_t s16 = pl_f32_to_f16(s), b16 = pl_f32_to_f16(mn);
      sc[r * ng + g] = s16;
      bi[r * ng + g] = b16;
      float sf = pl_f16_to_f32(s16), bf = pl_f16_to_f32(b16);
      for (int i = 0; i < gs; i++) {
        long v = lroundf((x[i] - bf) / sf);
        v = v < 0 ? 0 : v > maxq ? maxq : v;
        int64_t e = r * in + g * gs + i;
        q[e / per] |= (uint32_t)v << ((e % per) * bits);
      }
    }
  t->data = q;
  t->nbytes = (size_t)(out * in * bits / 32) * 4;
  t->scales = sc;
  t->biases = bi;
  t->sb_type = PL_DT_F16;
  t->group_size = gs;
}

static void ref_tensor(pl_model *m, pl_tensor *t, const char *name, pl_dtype ty, int64_t ne0,
                       int64_t ne1, double mean, double std) {
  memset(t, 0, sizeof *t);
  snprintf(t->name, sizeof t->name, "%s", name);
  t->n_dims = ne1 ? 2 : 1;
  t->ne[0] = ne0;
  t->ne[1] = ne1 ? ne1 : 1;
  t->ne[2] = t->ne[3] = 1;
  int64_t rows = ne1 ? ne1 : 1;
  float *w = pl_malloc((size_t)(ne0 * rows) * sizeof(float));
  for (int64_t i = 0; i < ne0 * rows; i++)
    w[i] = (float)(mean + std * ref_randn());
  if (!ne1 || ty == PL_DT_F32) {
    t->type = PL_DT_F32;
    t->data = ref_own(m, (size_t)(ne0 * rows) * sizeof(float));
    memcpy((void *)t->data, w, (size_t)(ne0 * rows) * sizeof(float));
    t->nbytes = (size_t)(ne0 * rows) * sizeof(float);
  } else if (ty == PL_DT_MLX_Q4 || ty == PL_DT_MLX_Q8) {
    t->type = ty;
    ref_mlx_quant(m, t, w, ty == PL_DT_MLX_Q4 ? 4 : 8, 32);
  } else {
    t->type = ty;
    size_t rb = pl_dtype_row_bytes(ty, ne0);
    uint8_t *d = ref_own(m, rb * (size_t)rows);
    for (int64_t r = 0; r < rows; r++)
      pl_quant_row(ty, w + r * ne0, d + rb * (size_t)r, ne0);
    t->data = d;
    t->nbytes = rb * (size_t)rows;
  }
  pl_free(w);
}

/* A random model; free with pl_model_free. Weight scales keep activations O(1). */
static pl_model *ref_model_build(const ref_cfg *c) {
  ref_rng_state = c->seed * 0x9E3779B97F4A7C15ull + 1;
  pl_model *m = pl_calloc(1, sizeof *m);
  m->path = pl_strdup("random");
  m->name = pl_strdup("random");
  m->format = "memory";
  pl_hparams *hp = &m->hp;
  hp->arch = c->arch;
  hp->n_vocab = c->n_vocab;
  hp->n_embd = c->n_embd;
  hp->n_layer = c->n_layer;
  hp->n_head = c->n_head;
  hp->n_head_kv = c->n_head_kv;
  hp->head_dim = c->head_dim;
  hp->n_ff = c->n_ff;
  hp->n_ctx_train = 512;
  hp->rms_eps = 1e-5f;
  hp->rope_theta = 10000.0f;
  hp->rope_dim = c->head_dim;
  hp->rope_style = c->neox ? PL_ROPE_NEOX : PL_ROPE_NORM;
  if (c->llama3) {
    hp->rope_llama3 = 1;
    hp->rope_factor = 8;
    hp->rope_low_freq_factor = 1;
    hp->rope_high_freq_factor = 4;
    hp->rope_orig_ctx = 32;
    hp->rope_theta = 500000.0f;
  }
  hp->tied_embeddings = c->tied;
  int E = c->n_embd, Q = c->n_head * c->head_dim, K = c->n_head_kv * c->head_dim;
  double sE = 1.0 / sqrt(E), sQ = 1.0 / sqrt(Q), sF = 1.0 / sqrt(c->n_ff);
  ref_tensor(m, &m->tok_embd, "token_embd.weight", c->wtype, E, c->n_vocab, 0, 1.0);
  ref_tensor(m, &m->output_norm, "output_norm.weight", PL_DT_F32, E, 0, 1.0, 0.1);
  if (c->tied)
    m->output = m->tok_embd;
  else
    ref_tensor(m, &m->output, "output.weight", c->wtype, E, c->n_vocab, 0, sE);
  m->layers = pl_calloc((size_t)c->n_layer, sizeof *m->layers);
  for (int l = 0; l < c->n_layer; l++) {
    pl_layer *L = &m->layers[l];
    ref_tensor(m, &L->attn_norm, "attn_norm", PL_DT_F32, E, 0, 1.0, 0.1);
    ref_tensor(m, &L->wq, "wq", c->wtype, E, Q, 0, sE);
    ref_tensor(m, &L->wk, "wk", c->wtype, E, K, 0, sE);
    ref_tensor(m, &L->wv, "wv", c->wtype, E, K, 0, sE);
    if (c->biases) {
      ref_tensor(m, &L->bq, "bq", PL_DT_F32, Q, 0, 0, 0.1);
      ref_tensor(m, &L->bk, "bk", PL_DT_F32, K, 0, 0, 0.1);
      ref_tensor(m, &L->bv, "bv", PL_DT_F32, K, 0, 0, 0.1);
    }
    if (c->qk_norm) {
      ref_tensor(m, &L->q_norm, "q_norm", PL_DT_F32, c->head_dim, 0, 1.0, 0.1);
      ref_tensor(m, &L->k_norm, "k_norm", PL_DT_F32, c->head_dim, 0, 1.0, 0.1);
    }
    ref_tensor(m, &L->wo, "wo", c->wtype, Q, E, 0, sQ);
    ref_tensor(m, &L->ffn_norm, "ffn_norm", PL_DT_F32, E, 0, 1.0, 0.1);
    ref_tensor(m, &L->w_gate, "w_gate", c->wtype, E, c->n_ff, 0, sE);
    ref_tensor(m, &L->w_up, "w_up", c->wtype, E, c->n_ff, 0, sE);
    ref_tensor(m, &L->w_down, "w_down", c->wtype, c->n_ff, E, 0, sF);
  }
  if (pl_model_init_rope(m, NULL) < 0 || pl_model_validate(m) < 0) {
    pl_model_free(m);
    return NULL;
  }
  return m;
}

/* ---- float64 reference ---------------------------------------------------------------- */
typedef struct {
  double *w;      /* [rows][cols] */
  int64_t rows, cols;
} ref_mat;

static ref_mat ref_deq(const pl_tensor *t) {
  ref_mat r = {NULL, t->n_dims > 1 ? t->ne[1] : 1, t->ne[0]};
  r.w = malloc(sizeof(double) * (size_t)(r.rows * r.cols));
  float *tmp = malloc(sizeof(float) * (size_t)r.cols);
  size_t rb = pl_dtype_row_bytes(t->type, r.cols);
  for (int64_t i = 0; i < r.rows; i++) {
    if (t->type == PL_DT_MLX_Q4 || t->type == PL_DT_MLX_Q8) {
      size_t ng = (size_t)(r.cols / t->group_size), sbs = t->sb_type == PL_DT_F32 ? 4 : 2;
      pl_dequant_row_mlx(t->type, (const uint8_t *)t->data + (size_t)i * (size_t)(r.cols * (t->type == PL_DT_MLX_Q4 ? 4 : 8) / 8),
                         (const uint8_t *)t->scales + (size_t)i * ng * sbs,
                         (const uint8_t *)t->biases + (size_t)i * ng * sbs, t->sb_type,
                         t->group_size, tmp, r.cols);
    } else {
      pl_dequant_row(t->type, (const uint8_t *)t->data + (size_t)i * rb, tmp, r.cols);
    }
    for (int64_t j = 0; j < r.cols; j++)
      r.w[i * r.cols + j] = tmp[j];
  }
  free(tmp);
  return r;
}

static void ref_mv(const ref_mat *W, const double *x, double *y, const pl_tensor *bias) {
  for (int64_t r = 0; r < W->rows; r++) {
    double s = bias && bias->data ? ((const float *)bias->data)[r] : 0;
    for (int64_t c = 0; c < W->cols; c++)
      s += W->w[r * W->cols + c] * x[c];
    y[r] = s;
  }
}

static void ref_rmsnorm(double *y, const double *x, const float *w, int n, double eps) {
  double ss = 0;
  for (int i = 0; i < n; i++)
    ss += x[i] * x[i];
  double k = 1.0 / sqrt(ss / n + eps);
  for (int i = 0; i < n; i++)
    y[i] = x[i] * k * w[i];
}

static double ref_inv_freq(const pl_hparams *hp, int i) {
  double f = pow(hp->rope_theta, -2.0 * i / hp->rope_dim);
  if (hp->rope_llama3) {
    double wl = 2 * M_PI / f, lo = hp->rope_orig_ctx / hp->rope_low_freq_factor,
           hi = hp->rope_orig_ctx / hp->rope_high_freq_factor;
    if (wl > lo)
      f = f / hp->rope_factor;
    else if (wl >= hi) {
      double s = (hp->rope_orig_ctx / wl - hp->rope_low_freq_factor) /
                 (hp->rope_high_freq_factor - hp->rope_low_freq_factor);
      f = (1 - s) * f / hp->rope_factor + s * f;
    }
  }
  return f;
}

static void ref_rope(const pl_hparams *hp, double *v, int pos) {
  int half = hp->rope_dim / 2;
  for (int i = 0; i < half; i++) {
    double th = pos * ref_inv_freq(hp, i), c = cos(th), s = sin(th);
    int a = hp->rope_style == PL_ROPE_NEOX ? i : 2 * i;
    int b = hp->rope_style == PL_ROPE_NEOX ? i + half : 2 * i + 1;
    double x0 = v[a], x1 = v[b];
    v[a] = x0 * c - x1 * s;
    v[b] = x0 * s + x1 * c;
  }
}

/* The KV cache's element type the reference imitates: each K and V row of a head is rounded
 * through it (to float, pl_quant_row, pl_dequant_row) before attention reads it, as a backend
 * storing that type does. PL_DT_F32 (0, the default) keeps K and V in double. */
static pl_dtype ref_kv_type;

static void ref_kv_round(double *v, int hd) {
  float f[512];
  uint8_t buf[512 * 4];
  if (ref_kv_type == PL_DT_F32 || hd > 512)
    return;
  for (int d = 0; d < hd; d++)
    f[d] = (float)v[d];
  pl_quant_row(ref_kv_type, f, buf, hd);
  pl_dequant_row(ref_kv_type, buf, f, hd);
  for (int d = 0; d < hd; d++)
    v[d] = f[d];
}

/* logits[n][n_vocab] for every position of one sequence `ids[n]`. */
static void ref_forward(const pl_model *m, const int32_t *ids, int n, double *logits) {
  const pl_hparams *hp = &m->hp;
  int E = hp->n_embd, hd = hp->head_dim, H = hp->n_head, KH = hp->n_head_kv, F = hp->n_ff;
  int Q = H * hd, K = KH * hd, g = H / KH;
  ref_mat emb = ref_deq(&m->tok_embd), out = ref_deq(&m->output);
  double *x = calloc((size_t)n * E, sizeof(double)), *h = malloc(sizeof(double) * (size_t)(E > Q ? E : Q) * 2);
  double *kc = malloc(sizeof(double) * (size_t)n * K), *vc = malloc(sizeof(double) * (size_t)n * K);
  double *q = malloc(sizeof(double) * Q), *a = malloc(sizeof(double) * Q), *o = malloc(sizeof(double) * E);
  double *gg = malloc(sizeof(double) * F), *uu = malloc(sizeof(double) * F), *sc = malloc(sizeof(double) * n);
  for (int t = 0; t < n; t++)
    memcpy(x + (size_t)t * E, emb.w + (size_t)ids[t] * E, sizeof(double) * E);
  for (int l = 0; l < hp->n_layer; l++) {
    const pl_layer *L = &m->layers[l];
    ref_mat wq = ref_deq(&L->wq), wk = ref_deq(&L->wk), wv = ref_deq(&L->wv), wo = ref_deq(&L->wo),
            wg = ref_deq(&L->w_gate), wu = ref_deq(&L->w_up), wd = ref_deq(&L->w_down);
    /* all K/V of this layer first (causality handled in the score loop) */
    double *qs = malloc(sizeof(double) * (size_t)n * Q);
    for (int t = 0; t < n; t++) {
      ref_rmsnorm(h, x + (size_t)t * E, L->attn_norm.data, E, hp->rms_eps);
      ref_mv(&wq, h, qs + (size_t)t * Q, &L->bq);
      ref_mv(&wk, h, kc + (size_t)t * K, &L->bk);
      ref_mv(&wv, h, vc + (size_t)t * K, &L->bv);
      for (int hh = 0; hh < H; hh++) {
        double *v = qs + (size_t)t * Q + hh * hd;
        if (L->q_norm.data) ref_rmsnorm(v, v, L->q_norm.data, hd, hp->rms_eps);
        ref_rope(hp, v, t);
      }
      for (int hh = 0; hh < KH; hh++) {
        double *v = kc + (size_t)t * K + hh * hd;
        if (L->k_norm.data) ref_rmsnorm(v, v, L->k_norm.data, hd, hp->rms_eps);
        ref_rope(hp, v, t);
        ref_kv_round(v, hd);
        ref_kv_round(vc + (size_t)t * K + hh * hd, hd);
      }
    }
    for (int t = 0; t < n; t++) {
      for (int hh = 0; hh < H; hh++) {
        int kh = hh / g;
        double mx = -1e300, sum = 0;
        for (int j = 0; j <= t; j++) {
          double s = 0;
          for (int d = 0; d < hd; d++)
            s += qs[(size_t)t * Q + hh * hd + d] * kc[(size_t)j * K + kh * hd + d];
          sc[j] = s / sqrt((double)hd);
          mx = sc[j] > mx ? sc[j] : mx;
        }
        for (int j = 0; j <= t; j++)
          sum += (sc[j] = exp(sc[j] - mx));
        for (int d = 0; d < hd; d++) {
          double acc = 0;
          for (int j = 0; j <= t; j++)
            acc += sc[j] * vc[(size_t)j * K + kh * hd + d];
          a[hh * hd + d] = acc / sum;
        }
      }
      ref_mv(&wo, a, o, NULL);
      for (int i = 0; i < E; i++)
        x[(size_t)t * E + i] += o[i];
      ref_rmsnorm(h, x + (size_t)t * E, L->ffn_norm.data, E, hp->rms_eps);
      ref_mv(&wg, h, gg, NULL);
      ref_mv(&wu, h, uu, NULL);
      for (int i = 0; i < F; i++)
        gg[i] = gg[i] / (1 + exp(-gg[i])) * uu[i];
      ref_mv(&wd, gg, o, NULL);
      for (int i = 0; i < E; i++)
        x[(size_t)t * E + i] += o[i];
    }
    free(qs);
    free(wq.w); free(wk.w); free(wv.w); free(wo.w); free(wg.w); free(wu.w); free(wd.w);
  }
  for (int t = 0; t < n; t++) {
    ref_rmsnorm(h, x + (size_t)t * E, m->output_norm.data, E, hp->rms_eps);
    ref_mv(&out, h, logits + (size_t)t * hp->n_vocab, NULL);
  }
  free(emb.w); free(out.w);
  free(x); free(h); free(kc); free(vc); free(q); free(a); free(o); free(gg); free(uu); free(sc);
}
#endif
