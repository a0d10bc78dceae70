#!/usr/bin/env python3
"""Pareto plot of `tqlm eval ppl --summary` files: bits per value vs mean KL divergence
(log scale) and vs ΔPPL, one marker per engine, Pareto-optimal rows outlined.
Writes OUT.png and OUT.svg. Usage: pareto.py OUT SUMMARY.jsonl [SUMMARY.jsonl ...]"""
import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main():
    out, files = sys.argv[1], sys.argv[2:]
    rows = [json.loads(line) for f in files for line in open(f) if line.strip()]
    models = sorted({r["model"] for r in rows})
    fig, axes = plt.subplots(len(models), 2, figsize=(12, 4.5 * len(models)), squeeze=False)
    markers = {"tqlm": "o", "llama.cpp": "s"}
    for mi, model in enumerate(models):
        rs = [r for r in rows if r["model"] == model and r["kv_name"] != "f16/f16"]
        for col, (key, label, scale) in enumerate([("mean_kl", "mean KLD vs f16 (nats)", 100.0),
                                                   ("delta_ppl", "ΔPPL vs f16 (%)", 100.0)]):
            ax = axes[mi][col]
            for engine in sorted({r["engine"] for r in rs}):
                pts = [r for r in rs if r["engine"] == engine]
                ys = [r[key] * (scale if key == "delta_ppl" else 1) for r in pts]
                ax.scatter([r["bits_per_value"] for r in pts], ys, marker=markers.get(engine, "^"),
                           label=engine, s=40,
                           edgecolors=["black" if r["pareto"] else "none" for r in pts])
                for r, y in zip(pts, ys):
                    ax.annotate(r["kv_name"], (r["bits_per_value"], y), fontsize=7,
                                xytext=(3, 3), textcoords="offset points")
            if key == "mean_kl":
                ax.set_yscale("log")
            elif max((abs(r[key]) * scale for r in rs), default=0) > 50:
                # A broken configuration (e.g. +13,000%) would flatten every other point:
                # linear within ±5%, logarithmic beyond.
                ax.set_yscale("symlog", linthresh=5)
            ax.set_xlabel("bits per K/V value")
            ax.set_ylabel(label)
            ax.set_title(f"{model}: {label}", fontsize=9)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
    fig.tight_layout()
    for ext in ("png", "svg"):
        fig.savefig(f"{out}.{ext}", dpi=120)
    print(f"wrote {out}.png and {out}.svg")


if __name__ == "__main__":
    main()
