#!/usr/bin/env python3
"""PyTorch fp16 scaled_dot_product_attention decode timings on the shapes of cuda_attention_bench:
one query token, 32 query heads, 8 KV heads (enable_gqa), d = 128, contexts x batches. Writes JSON
lines (device, torch version, copy bandwidth, one line per shape)."""
import argparse
import json
import math

import torch
import torch.nn.functional as F


def median_ms(fn, runs=7, steps=20, warmup=3):
    """Median per-call time over `runs` runs of `steps` calls issued back to back."""
    for i in range(warmup):
        fn(i)
    torch.cuda.synchronize()
    times, i = [], 0
    for _ in range(runs):
        e0 = torch.cuda.Event(enable_timing=True)
        e1 = torch.cuda.Event(enable_timing=True)
        e0.record()
        for _ in range(steps):
            fn(i)
            i += 1
        e1.record()
        e1.synchronize()
        times.append(e0.elapsed_time(e1) / steps)
    times.sort()
    return times[len(times) // 2]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--contexts", default="4096,8192,16384,32768,65536,131072")
    ap.add_argument("--batches", default="1,8,32")
    ap.add_argument("--json", default="sdpa.json")
    args = ap.parse_args()
    dev = torch.device("cuda")
    out = open(args.json, "w")
    n = 1 << 30
    a = torch.empty(n, dtype=torch.uint8, device=dev).random_(0, 255)
    b = torch.empty_like(a)
    copy_ms = median_ms(lambda i: b.copy_(a), runs=5, steps=4)
    copy_bw = 2 * n / (copy_ms * 1e-3)
    del a, b
    info = {"kind": "device", "name": torch.cuda.get_device_name(), "torch": torch.__version__,
            "cuda": torch.version.cuda, "copy_bw": copy_bw}
    print(json.dumps(info))
    out.write(json.dumps(info) + "\n")
    hq, hkv, d = 32, 8, 128
    for ctx in map(int, args.contexts.split(",")):
        for batch in map(int, args.batches.split(",")):
            kv_bytes = 2 * batch * hkv * ctx * d * 2
            copies = int(min(32, max(1, math.ceil(512e6 / kv_bytes))))
            try:
                q = torch.randn(batch, hq, 1, d, device=dev, dtype=torch.float16)
                ks = [torch.randn(batch, hkv, ctx, d, device=dev, dtype=torch.float16) for _ in range(copies)]
                vs = [torch.randn(batch, hkv, ctx, d, device=dev, dtype=torch.float16) for _ in range(copies)]
                fn = lambda i: F.scaled_dot_product_attention(q, ks[i % copies], vs[i % copies], enable_gqa=True)
                ms = median_ms(fn)
                row = {"kind": "sdpa", "ctx": ctx, "batch": batch, "us": ms * 1e3, "bytes": kv_bytes,
                       "frac_copy": kv_bytes / (ms * 1e-3) / copy_bw}
            except torch.OutOfMemoryError as e:
                row = {"kind": "sdpa", "ctx": ctx, "batch": batch, "error": str(e)[:200]}
            print(json.dumps(row), flush=True)
            out.write(json.dumps(row) + "\n")
            del q
            ks = vs = None
            torch.cuda.empty_cache()
    out.close()


if __name__ == "__main__":
    main()
