#!/usr/bin/env python3
"""Markdown table of `tqlm eval ppl -m SOURCE --compare ...` JSON lines (weights vs their
source): file size, bits per weight (file bits / parameters), mean KLD, ΔPPL, top-1, sorted by
size.  usage: weights_table.py N_PARAMS RESULTS.jsonl [SPEED.jsonl]"""
import json
import sys


def main():
    n_params = int(sys.argv[1])
    rows = [json.loads(l) for l in open(sys.argv[2]) if l.startswith("{")]
    speed = {}
    if len(sys.argv) > 3:
        for l in open(sys.argv[3]):
            if l.startswith("{"):
                s = json.loads(l)
                speed[s["model"].split("/")[-1]] = s
    if not rows:
        return
    src = rows[0]["ref_model"].split("/")[-1]
    print(f"source `{src}`: {rows[0]['ref_file_bytes'] / 2**20:.1f} MiB, "
          f"{8 * rows[0]['ref_file_bytes'] / n_params:.2f} bits/weight, "
          f"PPL {rows[0]['ref_ppl']:.3f} ({rows[0]['windows']} windows of {rows[0]['ctx']}, "
          f"{rows[0]['scored']} tokens scored)\n")
    head = "| file | MiB | bits/weight | mean KLD | ΔPPL | top-1 vs source |"
    sep = "|---|---|---|---|---|---|"
    if speed:
        head += " decode tok/s (source) |"
        sep += "---|"
    print(head)
    print(sep)
    for r in sorted(rows, key=lambda r: r["file_bytes"]):
        name = r["model"].split("/")[-1]
        line = (f"| {name} | {r['file_bytes'] / 2**20:.1f} | {8 * r['file_bytes'] / n_params:.2f} | "
                f"{r['mean_kld']:.4f} | {r['delta_ppl']:+.3f} | {100 * r['top1_agreement']:.1f}% |")
        if speed:
            s = speed.get(name)
            line += f" {s['tok_s']:.1f} ({s['src_tok_s']:.1f}) |" if s else " |"
        print(line)


if __name__ == "__main__":
    main()
