#!/usr/bin/env python3
"""Peer for `pagellm bench throughput --workload fixed` on a GPU: Hugging Face transformers'
batched generate() (bf16, SDPA attention, static batches) on the same Llama shape with random
weights. Every request has input_len random tokens and exactly output_len new tokens; requests
run in batches of --batch. Prints one line: requests, elapsed, output tok/s, total tok/s.
Usage: hf_generate.py --preset tinyllama-1.1b|llama-2-7b|llama-3-8b|qwen2.5-7b --num-prompts N
       --input-len I --output-len O --batch B"""
import argparse
import time

import torch
from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

PRESETS = {  # the shapes of src/model/model_preset.c (model-gen --preset, --model-config)
    "tinyllama-1.1b": dict(hidden_size=2048, num_hidden_layers=22, num_attention_heads=32,
                           num_key_value_heads=4, intermediate_size=5632, vocab_size=32000,
                           max_position_embeddings=2048, rope_theta=10000.0),
    "llama-2-7b": dict(hidden_size=4096, num_hidden_layers=32, num_attention_heads=32,
                       num_key_value_heads=32, intermediate_size=11008, vocab_size=32000,
                       max_position_embeddings=4096, rope_theta=10000.0),
    "llama-3-8b": dict(hidden_size=4096, num_hidden_layers=32, num_attention_heads=32,
                       num_key_value_heads=8, intermediate_size=14336, vocab_size=128256,
                       max_position_embeddings=8192, rope_theta=500000.0),
    "qwen2.5-7b": dict(hidden_size=3584, num_hidden_layers=28, num_attention_heads=28,
                       num_key_value_heads=4, intermediate_size=18944, vocab_size=152064,
                       max_position_embeddings=32768, rope_theta=1000000.0),
}

ap = argparse.ArgumentParser()
ap.add_argument("--preset", required=True, choices=PRESETS)
ap.add_argument("--num-prompts", type=int, default=256)
ap.add_argument("--input-len", type=int, default=512)
ap.add_argument("--output-len", type=int, default=128)
ap.add_argument("--batch", type=int, default=64)
a = ap.parse_args()

torch.manual_seed(0)
qwen = a.preset.startswith("qwen")
Config, Model = (Qwen2Config, Qwen2ForCausalLM) if qwen else (LlamaConfig, LlamaForCausalLM)
cfg = Config(**PRESETS[a.preset], rms_norm_eps=1e-6 if qwen else 1e-5, tie_word_embeddings=False)
with torch.device("cuda"):
    model = Model(cfg).to(torch.bfloat16).eval()
model.config._attn_implementation = "sdpa"
V = cfg.vocab_size
ids = torch.randint(3, V, (a.num_prompts, a.input_len), device="cuda")
gen = dict(max_new_tokens=a.output_len, min_new_tokens=a.output_len, do_sample=False,
           eos_token_id=None, pad_token_id=0)
with torch.inference_mode():
    model.generate(ids[:2, :16], max_new_tokens=4, min_new_tokens=4, do_sample=False,
                   pad_token_id=0)  # warm-up
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    n_out = 0
    for s in range(0, a.num_prompts, a.batch):
        x = ids[s:s + a.batch]
        y = model.generate(x, attention_mask=torch.ones_like(x), **gen)
        n_out += (y.shape[1] - x.shape[1]) * x.shape[0]
    torch.cuda.synchronize()
    dt = time.perf_counter() - t0
print(f"hf-transformers {a.preset} bf16 batch {a.batch}: {a.num_prompts} requests "
      f"({a.input_len} in / {a.output_len} out), elapsed {dt:.2f} s, "
      f"{n_out / dt:.1f} output tok/s, {(n_out + a.num_prompts * a.input_len) / dt:.1f} total tok/s")
