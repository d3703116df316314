#!/usr/bin/env python3
"""Make an MLX-community-style affine-quantized model folder from a Hugging Face safetensors
folder (numpy only), the way `mlx_lm.convert -q --q-bits B --q-group-size G` lays it out.

    python3 tools/golden/make_mlx_fixture.py HF_DIR OUT_DIR --bits 4 --group-size 64

Layout written (names as in the Hugging Face model; mlx_lm keeps them):
  config.json        the source config plus "quantization": {"group_size": G, "bits": B,
                     "mode": "affine"} and the same dict as "quantization_config";
                     "torch_dtype" float16
  model.safetensors  metadata {"format": "mlx"}; for every Linear and Embedding weight W
                     [out, in] whose `in` is a multiple of G (embed_tokens, q/k/v/o_proj,
                     gate/up/down_proj, lm_head):
                       W.weight  uint32 [out, in*B/32]  packed codes
                       W.scales  float16 [out, in/G]
                       W.biases  float16 [out, in/G]
                     every other tensor (RMSNorm weights, biases) as float16.

Packing: the codes q of one row are taken 32/B at a time; element j (0-based) of a group of
32/B consecutive codes sits in bits [j*B, (j+1)*B) of one little-endian uint32
(least significant bits first). Dequantization: w[r, c] = scales[r, c//G] * q[r, c]
+ biases[r, c//G] (done in float32 by the tests; MLX itself does it in float16).

Quantization follows MLX's affine_quantize (mlx/ops.cpp): per group of G weights, with
n_bins = 2^B - 1, scale = max((w_max - w_min)/n_bins, 1e-7), signed towards the edge of larger
magnitude (edge = w_min if |w_min| > |w_max| else w_max, scale negated when edge = w_max),
then the scale is nudged so the edge is exactly representable (q0 = round(edge/scale),
scale = edge/q0 when q0 != 0) and bias = edge (0 when q0 = 0); q = clip(round((w - bias)/scale),
0, n_bins). Scales can therefore be negative. Arithmetic here is float16, like MLX on a
float16 model.
"""
import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import convert_hf_to_gguf as C  # noqa: E402  (safetensors I/O helpers)

QUANT_SUFFIXES = ("embed_tokens", "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                  "down_proj", "lm_head")


def affine_quantize(w, group_size, bits):
    """w: float16 [out, in] -> (uint32 [out, in*bits/32], float16 scales, float16 biases)."""
    w = np.asarray(w, dtype=np.float16)
    out_dim, in_dim = w.shape
    assert in_dim % group_size == 0 and 32 % bits == 0
    n_bins = np.float16((1 << bits) - 1)
    g = w.reshape(out_dim, in_dim // group_size, group_size)
    w_max = g.max(axis=-1, keepdims=True)
    w_min = g.min(axis=-1, keepdims=True)
    mask = np.abs(w_min) > np.abs(w_max)
    scales = np.maximum((w_max - w_min) / n_bins, np.float16(1e-7)).astype(np.float16)
    scales = np.where(mask, scales, -scales).astype(np.float16)
    edge = np.where(mask, w_min, w_max).astype(np.float16)
    q0 = np.round(edge / scales).astype(np.float16)
    with np.errstate(divide="ignore", invalid="ignore"):
        scales = np.where(q0 != 0, (edge / q0).astype(np.float16), scales).astype(np.float16)
    biases = np.where(q0 == 0, np.float16(0), edge).astype(np.float16)
    q = np.clip(np.round((g - biases) / scales), 0, n_bins).astype(np.uint32)
    q = q.reshape(out_dim, in_dim)
    el = 32 // bits
    q = q.reshape(out_dim, in_dim // el, el)
    shifts = (np.arange(el, dtype=np.uint32) * bits).astype(np.uint32)
    packed = np.bitwise_or.reduce(q << shifts, axis=-1).astype(np.uint32)
    return packed, scales[..., 0], biases[..., 0]


def make_mlx_dir(src_dir, out_dir, bits, group_size):
    """Returns {hf_name: float32 ndarray} = the weights an MLX loader must reconstruct
    (dequantized in float32 for quantized ones, float16-rounded for the rest)."""
    cfg = json.load(open(os.path.join(src_dir, "config.json")))
    src = C.load_model_tensors(src_dir)
    os.makedirs(out_dir, exist_ok=True)
    out, deq = {}, {}
    for name, (dt, arr) in src.items():
        w16 = C.to_f32(dt, arr).astype(np.float16)
        mod = name[:-len(".weight")] if name.endswith(".weight") else None
        if mod and mod.split(".")[-1] in QUANT_SUFFIXES and w16.ndim == 2 \
                and w16.shape[1] % group_size == 0:
            packed, s, b = affine_quantize(w16, group_size, bits)
            out[mod + ".weight"] = ("U32", packed)
            out[mod + ".scales"] = ("F16", s)
            out[mod + ".biases"] = ("F16", b)
            deq[name] = C.mlx_dequantize(packed, s, b, group_size, bits)
        else:
            out[name] = ("F16", w16)
            deq[name] = w16.astype(np.float32)
    C.write_safetensors(os.path.join(out_dir, "model.safetensors"), out, {"format": "mlx"})
    q = {"group_size": group_size, "bits": bits, "mode": "affine"}
    cfg["quantization"] = dict(q)
    cfg["quantization_config"] = dict(q)
    cfg["torch_dtype"] = "float16"
    cfg.pop("dtype", None)
    json.dump(cfg, open(os.path.join(out_dir, "config.json"), "w"), indent=2, sort_keys=True)
    return deq


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("src")
    ap.add_argument("out")
    ap.add_argument("--bits", type=int, default=4)
    ap.add_argument("--group-size", type=int, default=64)
    a = ap.parse_args()
    deq = make_mlx_dir(a.src, a.out, a.bits, a.group_size)
    print("wrote %s (%d tensors dequantizable)" % (a.out, len(deq)))


if __name__ == "__main__":
    main()
