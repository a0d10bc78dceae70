#!/usr/bin/env python3
"""The side-by-side table of scripts/gpu_check.sh, from the JSON files it wrote to OUT:
check-*.json (GPU vs CPU engine), speed-*.json (tqlm bench e2e), torch.json (PyTorch).
Every figure is read from those files; ratios are of runs on the same GPU in the same call.

  report.py OUT_DIR
"""
import glob
import json
import os
import sys


def load(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def main():
    out = sys.argv[1]
    lines = []
    checks = sorted(glob.glob(os.path.join(out, "check-*.json")))
    if checks:
        kvs = sorted({((load(p) or {}).get("check") or {}).get("kv", "f16/f16") for p in checks})
        lines.append(f"## GPU vs CPU engine (same GGUF, same token ids, KV {', '.join(kvs)})\n")
        lines.append("| model | tokens | ppl CPU | ppl GPU | diff | mean KLD | top-1 agree | "
                     "max abs dlogit | chunked == 1-by-1 |")
        lines.append("|---|---|---|---|---|---|---|---|---|")
        for p in checks:
            j = load(p)
            c = (j or {}).get("check")
            name = os.path.basename(p)[6:-5]
            if not c:
                lines.append(f"| {name} | failed | | | | | | | |")
                continue
            inv = c.get("chunked_equals_one_at_a_time")
            lines.append(
                f"| {name} | {c['tokens']} | {c['ppl_cpu']:.4f} | {c['ppl_device']:.4f} | "
                f"{100 * c['ppl_rel_diff']:+.3f}% | {c['mean_kld_cpu_to_device']:.2e} | "
                f"{100 * c['top1_agreement']:.2f}% | {c['max_abs_logit_diff']:.3f} | "
                f"{'yes' if inv else 'NO'} ({c.get('invariance_tokens', 0)}) |")
            if "kld_cpu_f16_to_cpu_kv" in c:
                kc, kd = c["kld_cpu_f16_to_cpu_kv"], c["kld_device_f16_to_device_kv"]
                lines.append(f"| ↳ {name}, KLD from own f16 run ({c['kv']}) | | cpu {kc:.3e} | "
                             f"gpu {kd:.3e} | gpu/cpu {kd / kc:.3f} | | | | |")
        lines.append("")
    torch = load(os.path.join(out, "torch.json"))
    for p in sorted(glob.glob(os.path.join(out, "speed-*.json"))):
        j = load(p)
        if not j:
            continue
        name = os.path.basename(p)[6:-5]
        lines.append(f"## Speed: {name} on {j['device']}\n")
        lines.append(f"copy rate {j['copy_bytes_per_s'] / 1e9:.0f} GB/s (read+write), weights read "
                     f"per token {j['weight_bytes_per_token'] / 2**20:.1f} MiB\n")
        has_torch = torch is not None and name == "random-qwen"
        tdec = {d["ctx"]: d for d in (torch or {}).get("decode", [])} if has_torch else {}
        lines.append("| ctx | KV | decode tok/s | ms/token | roofline | fill tok/s |" +
                     (" PyTorch decode tok/s | tqlm / PyTorch |" if has_torch else ""))
        lines.append("|---|---|---|---|---|---|" + ("---|---|" if has_torch else ""))
        for d in j.get("decode", []):
            if "error" in d:
                lines.append(f"| {d['ctx']} | {d['kv']} | error: {d['error']} | | | |" +
                             (" | |" if has_torch else ""))
                continue
            row = (f"| {d['ctx']} | {d['kv']} | {d['decode_tokens_per_s']:.1f} | "
                   f"{d['decode_ms_per_token_median']:.3f} | {100 * d['roofline_fraction']:.1f}% | "
                   f"{d['prefill_tokens_per_s']:.0f} |")
            if has_torch:
                t = tdec.get(d["ctx"])
                row += (f" {t['decode_tokens_per_s']:.1f} | "
                        f"{d['decode_tokens_per_s'] / t['decode_tokens_per_s']:.2f}x |"
                        if t else " | |")
            lines.append(row)
        lines.append("")
        tpre = {d["tokens"]: d for d in (torch or {}).get("prefill", [])} if has_torch else {}
        pre = list(j.get("prefill", []))
        for d in j.get("decode", []):
            if "error" not in d and d["ctx"] >= 4096:
                pre.append({"tokens": d["ctx"], "tokens_per_s": d["prefill_tokens_per_s"],
                            "chunk": "fill"})
        if pre:
            lines.append("| prefill tokens | tqlm tok/s |" +
                         (" PyTorch tok/s | tqlm / PyTorch | PyTorch MFU (bf16 matmul "
                          f"{torch['bf16_matmul_flops'] / 1e12:.0f} TFLOP/s) |" if has_torch else ""))
            lines.append("|---|---|" + ("---|---|---|" if has_torch else ""))
            for d in pre:
                row = f"| {d['tokens']} | {d['tokens_per_s']:.0f} |"
                if has_torch:
                    t = tpre.get(d["tokens"])
                    row += (f" {t['tokens_per_s']:.0f} | {d['tokens_per_s'] / t['tokens_per_s']:.2f}x"
                            f" | {100 * t['matmul_flops_per_s'] / torch['bf16_matmul_flops']:.0f}% |"
                            if t else " | | |")
                lines.append(row)
            lines.append("")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
