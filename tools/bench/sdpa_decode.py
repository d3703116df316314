#!/usr/bin/env python3
"""The peer of bench/bench_cuda_attention.c (issue 12, goal 1): torch's scaled_dot_product_attention
on contiguous K/V at the same decode shapes, timed the same way (L2 flushed with a 256 MiB memset
before each call, CUDA events around the call, median of --iters). Each SDPA backend torch offers
for the shape (cuDNN, flash, memory-efficient) is timed; the best is the reference.

With --pagellm FILE (the output of bench_cuda_attention at the same shapes; may be given again,
e.g. once per kernel) it prints one table: each pagellm kernel beside the best SDPA, with the
ratio of times. With --prefill the shapes are causal prefills of the whole context (q of C
tokens), as bench_cuda_attention --prefill runs them, and the rate is TFLOP/s.

  python3 tools/bench/sdpa_decode.py [--batches 1,4,16,64] [--contexts 1024,4096] [--prefill]
                                     [--pagellm F ...]
"""
import argparse
import statistics

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel


def ints(s):
    return [int(x) for x in s.split(",") if x]


def timed(fn, iters, flush):
    for _ in range(3):
        fn()
    t = []
    e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    for i in range(iters):
        flush.fill_(i & 0xFF)
        e0.record()
        fn()
        e1.record()
        e1.synchronize()
        t.append(e0.elapsed_time(e1) * 1e3)
    return statistics.median(t)


def read_pagellm(paths):
    """{kernel: {(batch, context): time_us}} from bench_cuda_attention's tables"""
    rows = {}
    for path in paths:
        with open(path) as f:
            for line in f:
                p = line.split()
                if len(p) in (5, 6) and p[0] in ("mma", "simt", "paged") and p[1].isdigit():
                    rows.setdefault(p[0], {})[(int(p[1]), int(p[2]))] = float(p[3])
    return rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--heads", type=int, default=32)
    ap.add_argument("--kv-heads", type=int, default=8)
    ap.add_argument("--head-dim", type=int, default=128)
    ap.add_argument("--batches", type=ints, default=[1, 4, 16, 64])
    ap.add_argument("--contexts", type=ints, default=[1024, 4096])
    ap.add_argument("--iters", type=int, default=30)
    ap.add_argument("--prefill", action="store_true")
    ap.add_argument("--pagellm", action="append", default=[],
                    help="bench_cuda_attention's output at the same shapes")
    a = ap.parse_args()
    dev = torch.device("cuda")
    flush = torch.empty(256 << 20, dtype=torch.uint8, device=dev)
    src, dst = torch.empty(1 << 30, dtype=torch.uint8, device=dev), torch.empty(1 << 30, dtype=torch.uint8, device=dev)
    copy_us = timed(lambda: dst.copy_(src), a.iters, flush)
    copy_gbs = 2 * (1 << 30) / copy_us * 1e-3
    print(f"device: {torch.cuda.get_device_name()}; torch {torch.__version__}, cuDNN "
          f"{torch.backends.cudnn.version()}; copy bandwidth {copy_gbs:.0f} GB/s")
    backends = [("cudnn", SDPBackend.CUDNN_ATTENTION), ("flash", SDPBackend.FLASH_ATTENTION),
                ("efficient", SDPBackend.EFFICIENT_ATTENTION)]
    paged = read_pagellm(a.pagellm)
    hd, nh, nkv = a.head_dim, a.heads, a.kv_heads
    print(f"shape: {'causal prefill' if a.prefill else 'decode'}, {nh} query heads, {nkv} KV "
          f"heads, head_dim {hd}, bf16, contiguous K/V [batch, kv_head, context, head_dim]")
    rate = "TFLOP/s" if a.prefill else "GB/s"
    hdr = f"{'batch':>6} {'context':>8} {'best_sdpa':>10} {'sdpa_us':>9} {'sdpa_' + rate:>12}"
    for k in paged:
        hdr += f" {k + '_us':>9} {k + '/sdpa':>10}"
    print(hdr + "   (all SDPA backends, us)")
    for B in a.batches:
        for C in a.contexts:
            q = torch.randn(B, nh, C if a.prefill else 1, hd, dtype=torch.bfloat16, device=dev)
            k = torch.randn(B, nkv, C, hd, dtype=torch.bfloat16, device=dev)
            v = torch.randn(B, nkv, C, hd, dtype=torch.bfloat16, device=dev)
            res = {}
            for name, be in backends:
                try:
                    with sdpa_kernel([be]):
                        fn = lambda: F.scaled_dot_product_attention(
                            q, k, v, is_causal=a.prefill, enable_gqa=True)
                        fn()
                        res[name] = timed(fn, a.iters, flush)
                except Exception:  # this backend does not take the shape
                    pass
            if not res:
                print(f"{B:6d} {C:8d}   no SDPA backend ran")
                continue
            best = min(res, key=res.get)
            work = (4 * hd * nh * B * C * (C + 1) / 2 * 1e-6 if a.prefill
                    else 2 * B * C * nkv * hd * 2 * 1e-3)
            line = f"{B:6d} {C:8d} {best:>10} {res[best]:9.1f} {work / res[best]:12.1f}"
            for k in paged:
                pu = paged[k].get((B, C))
                line += f" {pu:9.1f} {pu / res[best]:10.2f}" if pu else f" {'-':>9} {'-':>10}"
            print(line + "   " + " ".join(f"{n} {t:.1f}" for n, t in res.items()), flush=True)
            del q, k, v
            torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
