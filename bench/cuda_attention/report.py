#!/usr/bin/env python3
"""Joins cuda_attention_bench's and sdpa_bench.py's JSON lines into a markdown table."""
import json
import sys


def load(path):
    return [json.loads(l) for l in open(path) if l.strip()]


def main(bench_path, sdpa_path):
    bench, sdpa = load(bench_path), load(sdpa_path)
    dev = next(r for r in bench if r["kind"] == "device")
    sdev = next(r for r in sdpa if r["kind"] == "device")
    copy_bw = dev["copy_bw"]
    print(f"Device: {dev['name']} ({dev['sms']} SMs); device-to-device copy {copy_bw / 1e9:.0f} GB/s "
          f"(read + write; PyTorch's copy in its own run: {sdev['copy_bw'] / 1e9:.0f} GB/s); "
          f"PyTorch {sdev['torch']} (CUDA {sdev['cuda']}).\n")
    t = {(r["format"], r["ctx"], r["batch"]): r for r in bench if r["kind"] == "tqlm"}
    s = {(r["ctx"], r["batch"]): r for r in sdpa if r["kind"] == "sdpa" and "us" in r}
    print("Times in µs per decode step of one layer; `x` = SDPA time / tqlm time; `%copy` = bytes read "
          "per second as a fraction of the copy rate.\n")
    print("| ctx | batch | SDPA f16 µs | SDPA %copy | tq4/tq3 µs | x | %copy | tq3/tq3 µs | x | %copy "
          "| tqlm f16 µs | x | %copy |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    keys = sorted({(r["ctx"], r["batch"]) for r in bench if r["kind"] == "tqlm"})
    for ctx, batch in keys:
        sd = s.get((ctx, batch))
        cells = [f"{ctx // 1024}K", str(batch)]
        if sd:
            cells += [f"{sd['us']:.1f}", f"{100 * sd['bytes'] / (sd['us'] * 1e-6) / copy_bw:.0f}%"]
        else:
            cells += ["–", "–"]
        for fmt in ("tq4/tq3", "tq3/tq3", "f16"):
            r = t.get((fmt, ctx, batch))
            if not r:
                cells += ["–", "–", "–"]
                continue
            cells += [f"{r['us']:.1f}", f"{sd['us'] / r['us']:.2f}" if sd else "–", f"{100 * r['frac_copy']:.0f}%"]
        print("| " + " | ".join(cells) + " |")
    extra = [r for r in bench if r["kind"] == "tqlm" and r["format"] not in ("tq4/tq3", "tq3/tq3", "f16")]
    for r in extra:
        print(f"\n{r['format']} at {r['ctx'] // 1024}K × {r['batch']}: {r['us']:.1f} µs, "
              f"{r['bytes'] / 1e6:.1f} MB, {100 * r['frac_copy']:.0f}% of copy rate")
    for r in bench:
        if r["kind"] == "append":
            print(f"\nappend/encode (tq4/tq3, one token × {r['batch']} sequences × 8 KV heads): {r['us']:.1f} µs")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
