#!/usr/bin/env python3
"""The peer of bench/bench_cuda_attention.c (issue 12, goal 1): torch's scaled_dot_product_attention
on contiguous K/V at the same decode shapes, timed the same way (L2 flushed with a 256 MiB memset
before each call, CUDA events around the call, median of --iters). Each SDPA backend torch offers
for the shape (cuDNN, flash, memory-efficient) is timed; the best is the reference.

With --pagellm FILE (the output of bench_cuda_attention at the same shapes) it prints one table:
pagellm's paged kernel beside the best SDPA, the ratio of times and both bandwidths.

  python3 tools/bench/sdpa_decode.py [--batches 1,4,16,64] [--contexts 1024,4096] [--pagellm F]
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


def read_pagellm(path):
    """{(batch, context): (time_us, GB/s)} from bench_cuda_attention's table"""
    rows = {}
    with open(path) as f:
        for line in f:
            p = line.split()
            if len(p) == 6 and p[0] == "paged":
                rows[(int(p[1]), int(p[2]))] = (float(p[3]), float(p[4]))
    return rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--heads", type=int, default=32)
    ap.add_argument("--kv-heads", type=int, default=8)
    ap.add_argument("--head-dim", type=int, default=128)
    ap.add_argument("--batches", type=ints, default=[1, 4, 16, 64])
    ap.add_argument("--contexts", type=ints, default=[1024, 4096])
    ap.add_argument("--iters", type=int, default=30)
    ap.add_argument("--pagellm", help="bench_cuda_attention's output at the same shapes")
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
    paged = read_pagellm(a.pagellm) if a.pagellm else {}
    hd, nh, nkv = a.head_dim, a.heads, a.kv_heads
    print(f"shape: {nh} query heads, {nkv} KV heads, head_dim {hd}, bf16, contiguous K/V "
          f"[batch, kv_head, context, head_dim]")
    hdr = f"{'batch':>6} {'context':>8} {'best_sdpa':>10} {'sdpa_us':>9} {'sdpa_GB/s':>10}"
    if paged:
        hdr += f" {'paged_us':>9} {'paged_GB/s':>10} {'paged/sdpa':>10}"
    print(hdr + "   (all SDPA backends, us)")
    for B in a.batches:
        for C in a.contexts:
            q = torch.randn(B, nh, 1, hd, dtype=torch.bfloat16, device=dev)
            k = torch.randn(B, nkv, C, hd, dtype=torch.bfloat16, device=dev)
            v = torch.randn(B, nkv, C, hd, dtype=torch.bfloat16, device=dev)
            res = {}
            for name, be in backends:
                try:
                    with sdpa_kernel([be]):
                        fn = lambda: F.scaled_dot_product_attention(q, k, v, enable_gqa=True)
                        fn()
                        res[name] = timed(fn, a.iters, flush)
                except Exception:  # this backend does not take the shape
                    pass
            if not res:
                print(f"{B:6d} {C:8d}   no SDPA backend ran")
                continue
            best = min(res, key=res.get)
            nbytes = 2 * B * C * nkv * hd * 2
            line = f"{B:6d} {C:8d} {best:>10} {res[best]:9.1f} {nbytes / res[best] * 1e-3:10.0f}"
            if (B, C) in paged:
                pu, pg = paged[(B, C)]
                line += f" {pu:9.1f} {pg:10.0f} {pu / res[best]:10.2f}"
            print(line + "   " + " ".join(f"{n} {t:.1f}" for n, t in res.items()), flush=True)
            del q, k, v
            torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
