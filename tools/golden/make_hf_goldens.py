#!/usr/bin/env python3
"""Golden logits from Hugging Face transformers for pagellm's forward pass.

Builds tiny random models (llama with separate lm_head, llama with tied embeddings, mistral,
qwen2 with QKV bias, qwen3 with q/k RMSNorm and head_dim != hidden/heads, and a Llama-3.1
rope-scaled llama; GQA everywhere), saves them with save_pretrained (safetensors, float32),
adds a bfloat16 copy of `llama`, a float16 copy of `qwen2`, and 4-bit/8-bit MLX affine-quantized
copies of `llama`, converts each HF folder to GGUF with tools/convert_hf_to_gguf.py, runs
transformers in float32 (eager attention, CPU) on 4 prompts of random token ids (lengths 1, 7,
33, 100) and writes, per model folder:

  prompts.i32   all prompts' token ids, concatenated (int32 little-endian)
  logits.f32    the logits of every position of every prompt, concatenated row-major:
                [sum(prompt lengths), vocab] float32 little-endian; prompt i's rows start at
                golden.json prompts[i].row
  greedy.i32    [n_prompts, 20] int32: greedy continuation of each prompt (KV cache on)
  golden.json   the manifest (shapes, offsets, files, margins, the checks below)

Checks made here (results in golden.json["checks"]): the saved folder reloads to the same
logits; greedy with the KV cache equals argmax of a full recompute; a float64 numpy forward
pass with llama.cpp semantics over the converted GGUF (tools/golden/gguf_ref.py) matches the
transformers logits.

    python3 tools/golden/make_hf_goldens.py --out tests/golden/hf     # needs torch+transformers
"""
import argparse
import copy
import hashlib
import json
import os
import shutil
import sys
import time
import traceback

import numpy as np
import torch
import transformers
from transformers import AutoModelForCausalLM

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))
sys.path.insert(0, HERE)
import convert_hf_to_gguf as C  # noqa: E402
import gguf_ref as R  # noqa: E402
import make_mlx_fixture as M  # noqa: E402

PROMPT_LENS = [1, 7, 33, 100]
N_NEW = 20
V5 = int(transformers.__version__.split(".")[0]) >= 5

SPECS = [
    dict(name="llama", model_type="llama", vocab=320, hidden=64, layers=2, heads=4, kv=2,
         inter=128, tie=False, theta=10000.0, eps=1e-5,
         note="Llama-2 style: separate lm_head, GQA 4:2, head_dim 16"),
    dict(name="llama-tied", model_type="llama", vocab=288, hidden=64, layers=2, heads=8, kv=2,
         inter=96, tie=True, theta=10000.0, eps=1e-6,
         note="llama with tied embeddings (no lm_head tensor), GQA 8:2, head_dim 8"),
    dict(name="mistral", model_type="mistral", vocab=320, hidden=64, layers=2, heads=4, kv=1,
         inter=128, tie=False, theta=1e6, eps=1e-5,
         note="MistralForCausalLM, multi-query (1 KV head), rope_theta 1e6, no sliding window"),
    dict(name="qwen2", model_type="qwen2", vocab=320, hidden=64, layers=2, heads=4, kv=2,
         inter=128, tie=True, theta=1e6, eps=1e-6,
         note="Qwen2: q/k/v biases, tied embeddings, NEOX RoPE"),
    dict(name="qwen3", model_type="qwen3", vocab=320, hidden=64, layers=2, heads=4, kv=2,
         head_dim=32, inter=128, tie=True, theta=1e6, eps=1e-6,
         note="Qwen3: per-head q/k RMSNorm, head_dim 32 != hidden/heads 16, tied"),
    dict(name="llama31", model_type="llama", vocab=320, hidden=64, layers=2, heads=4, kv=2,
         inter=128, tie=False, theta=500000.0, eps=1e-5,
         scaling=dict(rope_type="llama3", factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0,
                      original_max_position_embeddings=64),
         note="Llama-3.1 rope scaling (llama3, factor 8, low 1, high 4, original context 64)"),
]


def build_config(s):
    from transformers import LlamaConfig, MistralConfig, Qwen2Config, Qwen3Config
    cls = {"llama": LlamaConfig, "mistral": MistralConfig, "qwen2": Qwen2Config,
           "qwen3": Qwen3Config}[s["model_type"]]
    kw = dict(vocab_size=s["vocab"], hidden_size=s["hidden"], intermediate_size=s["inter"],
              num_hidden_layers=s["layers"], num_attention_heads=s["heads"],
              num_key_value_heads=s["kv"], max_position_embeddings=256,
              rms_norm_eps=s["eps"], tie_word_embeddings=s["tie"], bos_token_id=1,
              eos_token_id=2, hidden_act="silu")
    if "head_dim" in s:
        kw["head_dim"] = s["head_dim"]
    if s["model_type"] == "mistral":
        kw["sliding_window"] = None
    if s["model_type"] == "qwen2":
        kw["use_sliding_window"] = False
    sc = s.get("scaling")
    if V5:
        rp = {"rope_type": "default", "rope_theta": s["theta"]}
        if sc:
            rp.update(sc)
        kw["rope_parameters"] = rp
    else:
        kw["rope_theta"] = s["theta"]
        kw["rope_scaling"] = dict(sc) if sc else None
    return cls(**kw)


def init_weights(model, s, seed):
    """Random weights scaled so activations stay O(1) and logits have std ~2-3."""
    H = s["hidden"]
    with torch.no_grad():
        for name, p in model.named_parameters():
            g = torch.Generator().manual_seed(
                seed + int(hashlib.sha256(name.encode()).hexdigest()[:8], 16))
            r = torch.randn(p.shape, generator=g, dtype=torch.float32)
            if name.endswith("bias"):
                p.copy_(0.2 * r)
            elif p.ndim == 1:                        # RMSNorm weights (incl. q/k norm)
                p.copy_(1.0 + 0.2 * r)
            elif "embed_tokens" in name:
                p.copy_(r * (0.4 if s["tie"] else 1.0))
            elif "lm_head" in name:
                p.copy_(r * (2.5 / H ** 0.5))
            else:
                p.copy_(r / p.shape[1] ** 0.5)


def from_pretrained(d):
    try:
        return AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32,
                                                    attn_implementation="eager").eval()
    except TypeError:
        return AutoModelForCausalLM.from_pretrained(d, torch_dtype=torch.float32,
                                                    attn_implementation="eager").eval()


def save(model, d):
    os.makedirs(d, exist_ok=True)
    try:
        model.save_pretrained(d, safe_serialization=True)
    except TypeError:
        model.save_pretrained(d)
    gc = os.path.join(d, "generation_config.json")
    if os.path.exists(gc):
        os.remove(gc)


def add_legacy_rope_keys(d, s):
    """Write rope_theta / rope_scaling (the keys most config.json files on the Hub use) next
    to transformers 5's rope_parameters, so loaders can be tested on both spellings."""
    p = os.path.join(d, "config.json")
    cfg = json.load(open(p))
    orig = copy.deepcopy(cfg)
    cfg["rope_theta"] = s["theta"]
    cfg["rope_scaling"] = dict(s["scaling"]) if s.get("scaling") else None
    json.dump(cfg, open(p, "w"), indent=2, sort_keys=True)
    return orig


@torch.no_grad()
def run_prompts(model, prompts):
    return [model(input_ids=torch.tensor([p])).logits[0].float().numpy() for p in prompts]


@torch.no_grad()
def greedy(model, prompt, n_new):
    out = model(input_ids=torch.tensor([prompt]), use_cache=True)
    pkv = out.past_key_values
    toks, margins = [], []
    for _ in range(n_new):
        lg = out.logits[0, -1].float()
        v, i = torch.topk(lg, 2)
        toks.append(int(i[0]))
        margins.append(float(v[0] - v[1]))
        out = model(input_ids=i[:1].view(1, 1), past_key_values=pkv, use_cache=True)
        pkv = out.past_key_values
    full = model(input_ids=torch.tensor([prompt + toks])).logits[0]
    am = full[len(prompt) - 1:-1].argmax(-1).tolist()
    return toks, margins, am == toks


def write_goldens(d, name, model, prompts, meta, checks):
    logits = run_prompts(model, prompts)
    np.concatenate([np.asarray(p, np.int32) for p in prompts]).astype("<i4").tofile(
        os.path.join(d, "prompts.i32"))
    allg = np.concatenate(logits).astype("<f4")
    allg.tofile(os.path.join(d, "logits.f32"))
    gens, mins, cache_ok = [], [], True
    for p in prompts:
        t, m, ok = greedy(model, p, N_NEW)
        gens.append(t)
        mins.append(min(m))
        cache_ok &= ok
    np.asarray(gens, np.int32).astype("<i4").tofile(os.path.join(d, "greedy.i32"))
    checks["greedy_kv_cache_equals_full_recompute"] = bool(cache_ok)
    rows, off = [], 0
    for p in prompts:
        rows.append({"length": len(p), "row": off})
        off += len(p)
    man = dict(meta)
    man.update({
        "name": name,
        "format": "all binaries little-endian; logits row-major [rows, vocab]",
        "prompts_file": "prompts.i32",
        "prompts": rows,
        "logits_file": "logits.f32",
        "logits_shape": [int(allg.shape[0]), int(allg.shape[1])],
        "logits_abs_max": float(np.abs(allg).max()),
        "logits_std": float(allg.std()),
        "greedy_file": "greedy.i32",
        "greedy_shape": [len(prompts), N_NEW],
        "greedy_min_top2_margin": mins,
        "prompt_selection": "per length, the first numpy default_rng(seed) prompt whose greedy "
                            "steps all have a top-2 margin >= %g" % MIN_MARGIN,
        "checks": checks,
        "transformers_version": transformers.__version__,
        "torch_version": torch.__version__,
    })
    json.dump(man, open(os.path.join(d, "golden.json"), "w"), indent=1)
    return logits, man


def gguf_check(gguf_path, prompts, logits):
    g = R.GGUF(gguf_path)
    cache, worst = {}, 0.0
    for p, lg in zip(prompts, logits):
        ref = R.forward(g, p, cache)
        worst = max(worst, float(np.abs(ref - lg).max()))
    return worst


MIN_MARGIN = 2e-3


def make_prompts(model, vocab, seed):
    """For each length, the first random prompt (numpy default_rng(seed)) whose greedy
    continuation has a top-2 logit margin >= MIN_MARGIN at every step, so that a float32
    engine with another summation order cannot flip a near-tie."""
    rng = np.random.default_rng(seed)
    out = []
    for n in PROMPT_LENS:
        for _ in range(64):
            p = rng.integers(0, vocab, n).tolist()
            if min(greedy(model, p, N_NEW)[1]) >= MIN_MARGIN:
                break
        out.append(p)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="tests/golden/hf")
    ap.add_argument("--seed", type=int, default=1234)
    a = ap.parse_args()
    torch.set_num_threads(min(8, os.cpu_count() or 1))
    torch.manual_seed(a.seed)
    out = a.out
    if os.path.isdir(out):
        for e in os.listdir(out):
            if os.path.isdir(os.path.join(out, e)):
                shutil.rmtree(os.path.join(out, e))
    os.makedirs(out, exist_ok=True)
    index, failures = [], []
    t0 = time.time()
    models = {}
    for k, s in enumerate(SPECS):
        name = s["name"]
        d = os.path.join(out, name)
        try:
            cfg = build_config(s)
            model = AutoModelForCausalLM.from_config(cfg, attn_implementation="eager").float().eval()
            init_weights(model, s, a.seed + 1000 * k)
            if s["tie"]:
                assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
            save(model, d)
            prompts = make_prompts(model, s["vocab"], a.seed + k)
            mem = run_prompts(model, prompts)
            orig_cfg = add_legacy_rope_keys(d, s)
            legacy = True
            try:
                re = from_pretrained(d)
                diff = max(float(np.abs(x - y).max()) for x, y in zip(run_prompts(re, prompts), mem))
            except Exception as e:  # noqa: BLE001
                print("reload with legacy rope keys failed:", e)
                diff = float("inf")
            if diff > 1e-6:
                json.dump(orig_cfg, open(os.path.join(d, "config.json"), "w"), indent=2, sort_keys=True)
                legacy = False
                re = from_pretrained(d)
                diff = max(float(np.abs(x - y).max()) for x, y in zip(run_prompts(re, prompts), mem))
            C.convert(d, os.path.join(d, "model.gguf"), outtype="f32", name=name)
            checks = {"reload_max_abs_diff": diff}
            meta = {"arch_hf": s["model_type"], "note": s["note"], "hf_dir": ".",
                    "hf_dtype": "float32", "gguf": "model.gguf", "gguf_weight_type": "F32",
                    "config_has_legacy_rope_keys": legacy, "vocab_size": s["vocab"], "seed": a.seed}
            logits, man = write_goldens(d, name, re, prompts, meta, checks)
            checks["gguf_numpy_ref_max_abs_diff"] = gguf_check(os.path.join(d, "model.gguf"), prompts, logits)
            if s.get("scaling"):
                g = R.GGUF(os.path.join(d, "model.gguf"))
                del g.tinfo["rope_freqs.weight"]
                checks["logits_max_abs_diff_if_rope_scaling_ignored"] = float(
                    np.abs(R.forward(g, prompts[-1]) - logits[-1]).max())
            json.dump(man, open(os.path.join(d, "golden.json"), "w"), indent=1)
            models[name] = (s, re, prompts, k)
            index.append({"name": name, "note": s["note"]})
            print("%-12s ok  reload %.1e  gguf-ref %.2e  logits std %.2f  margins %s  (%.0fs)" % (
                name, diff, checks["gguf_numpy_ref_max_abs_diff"], man["logits_std"],
                ["%.3f" % m for m in man["greedy_min_top2_margin"]], time.time() - t0), flush=True)
        except Exception:  # noqa: BLE001
            traceback.print_exc()
            failures.append(name)

    # Low-precision copies: weights rounded to bf16 / f16, saved in that dtype; goldens are
    # transformers in float32 on the rounded weights.
    for name, src, dt, gt in (("llama-bf16", "llama", torch.bfloat16, "BF16"),
                              ("qwen2-f16", "qwen2", torch.float16, "F16")):
        try:
            s, base, _, k = models[src]
            d = os.path.join(out, name)
            low = copy.deepcopy(base).to(dt)
            save(low, d)
            add_legacy_rope_keys(d, s)
            re = from_pretrained(d)
            prompts = make_prompts(re, s["vocab"], a.seed + 100 + k)
            C.convert(d, os.path.join(d, "model.gguf"), outtype="auto", name=name)
            meta = {"arch_hf": s["model_type"], "note": "%s with weights rounded to %s" % (src, gt),
                    "hf_dir": ".", "hf_dtype": str(dt).replace("torch.", ""), "gguf": "model.gguf",
                    "gguf_weight_type": gt + " (2-D), F32 (1-D)", "vocab_size": s["vocab"],
                    "config_has_legacy_rope_keys": True, "seed": a.seed}
            checks = {}
            logits, man = write_goldens(d, name, re, prompts, meta, checks)
            checks["gguf_numpy_ref_max_abs_diff"] = gguf_check(os.path.join(d, "model.gguf"), prompts, logits)
            json.dump(man, open(os.path.join(d, "golden.json"), "w"), indent=1)
            index.append({"name": name, "note": meta["note"]})
            print("%-12s ok  gguf-ref %.2e" % (name, checks["gguf_numpy_ref_max_abs_diff"]), flush=True)
        except Exception:  # noqa: BLE001
            traceback.print_exc()
            failures.append(name)

    # MLX affine-quantized copies of `llama`; goldens = transformers on the dequantized weights.
    for name, bits, gs in (("llama-mlx-q4", 4, 64), ("llama-mlx-q8", 8, 32)):
        try:
            s, base, _, k = models["llama"]
            d = os.path.join(out, name)
            deq = M.make_mlx_dir(os.path.join(out, "llama"), d, bits, gs)
            model = copy.deepcopy(base)
            sd = model.state_dict()
            with torch.no_grad():
                for n_, t in deq.items():
                    sd[n_].copy_(torch.from_numpy(t))
            prompts = make_prompts(model, s["vocab"], a.seed + 200 + bits)
            meta = {"arch_hf": "llama", "note": "llama, MLX affine %d-bit, group size %d; goldens "
                    "from the float32 dequantized weights (scales*q+biases)" % (bits, gs),
                    "hf_dir": ".", "mlx_bits": bits, "mlx_group_size": gs, "vocab_size": s["vocab"],
                    "gguf": None, "seed": a.seed}
            checks = {}
            logits, man = write_goldens(d, name, model, prompts, meta, checks)
            tmp = os.path.join("/tmp", name + ".gguf")
            C.convert(d, tmp, outtype="f32", name=name, verbose=False)
            checks["converter_mlx_to_gguf_numpy_ref_max_abs_diff"] = gguf_check(tmp, prompts, logits)
            json.dump(man, open(os.path.join(d, "golden.json"), "w"), indent=1)
            index.append({"name": name, "note": meta["note"]})
            print("%-12s ok  mlx->gguf ref %.2e" % (name, checks["converter_mlx_to_gguf_numpy_ref_max_abs_diff"]), flush=True)
        except Exception:  # noqa: BLE001
            traceback.print_exc()
            failures.append(name)

    json.dump({"models": index, "prompt_lengths": PROMPT_LENS, "greedy_new_tokens": N_NEW,
               "generator": "tools/golden/make_hf_goldens.py", "seed": a.seed,
               "transformers_version": transformers.__version__, "torch_version": torch.__version__,
               "failures": failures},
              open(os.path.join(out, "index.json"), "w"), indent=1)
    total = sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(out) for f in fs)
    print("total size %.2f MB, failures: %s, %.0fs" % (total / 1e6, failures, time.time() - t0))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
