#!/usr/bin/env python3
"""Heatmap of `tqlm eval tools --summary`: the verdict of each cell over recent-buffer ratio (x)
and KV configuration (y), one panel per prompt length, with the measured cliff (smallest ratio
from which every larger tested ratio passes) in each row's label. A cell run over several filler
seeds is coloured by its verdict (PASS only if every seed passed, else the most frequent failure)
and says how many seeds passed. Writes OUT.png and OUT.svg.
Usage: tools.py OUT SUMMARY.jsonl"""
import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.colors import ListedColormap  # noqa: E402
import numpy as np  # noqa: E402

# Verdicts as eval/tools_grade.h names them, best first; colours from good to bad.
VERDICTS = ["PASS", "WRONG_ARGS", "ALT_FORMAT", "LOST_FORMAT", "NO_CALL", "HALLUCINATION",
            "COLLAPSE"]
COLOURS = ["#2e7d32", "#9ccc65", "#fff176", "#ffb74d", "#90a4ae", "#e57373", "#6d1b1b"]


def main():
    out, path = sys.argv[1], sys.argv[2]
    lines = [json.loads(line) for line in open(path) if line.strip()]
    lengths = sorted({l["length"] for l in lines})
    ratios = sorted({r for l in lines if not l["reference"] for r in l["ratios"]})
    # Panels in rows of at most three, each tall enough for its configurations' labels.
    ncols = min(3, len(lengths))
    nrows = (len(lengths) + ncols - 1) // ncols
    most = max(sum(1 for l in lines if l["length"] == n) for n in lengths)
    size = (ncols * (3.2 + 0.6 * len(ratios)), nrows * (1.0 + 0.28 * most))
    fig, axes = plt.subplots(nrows, ncols, squeeze=False, figsize=size)
    for j in range(len(lengths), nrows * ncols):
        axes[j // ncols][j % ncols].axis("off")
    for i, length in enumerate(lengths):
        rows = [l for l in lines if l["length"] == length]
        rows.sort(key=lambda l: (not l["reference"], l["kv_name"]))
        m = np.full((len(rows), len(ratios)), np.nan)
        seeds = {}  # (y, x) -> "passed/run" where a cell has several seeds
        for y, l in enumerate(rows):
            for r, v, n, k in zip(l["ratios"], l["verdicts"], l["runs"], l["passes"]):
                # The reference has no buffer: its one verdict fills the row.
                for x in range(len(ratios)) if l["reference"] else [ratios.index(r)]:
                    m[y, x] = VERDICTS.index(v) if v in VERDICTS else len(VERDICTS) - 1
                    if n > 1:
                        seeds[(y, x)] = f"{k}/{n}"
        ax = axes[i // ncols][i % ncols]
        ax.imshow(m, cmap=ListedColormap(COLOURS), vmin=-0.5, vmax=len(VERDICTS) - 0.5,
                  aspect="auto")
        for (y, x), v in np.ndenumerate(m):
            if not np.isnan(v):
                text = VERDICTS[int(v)].replace("_", "\n")
                if (y, x) in seeds:
                    text = f"{seeds[(y, x)]}\n{text}"
                ax.text(x, y, text, ha="center", va="center",
                        fontsize=5.5, color="white" if v in (0, 6) else "black")
        labels = []
        for l in rows:
            cliff = "ref" if l["reference"] else (
                "none" if l["cliff"] is None else f"{l['cliff']:g}")
            labels.append(f"{l['kv_name']} (cliff {cliff})")
        ax.set_yticks(range(len(rows)), labels, fontsize=7)
        ax.set_xticks(range(len(ratios)), [f"{r:g}" for r in ratios], fontsize=7)
        ax.set_xlabel("recent buffer / prompt tokens", fontsize=8)
        ax.set_title(f"{length} prompt tokens", fontsize=9)
    fig.tight_layout()
    for ext in ("png", "svg"):
        fig.savefig(f"{out}.{ext}", dpi=120)
    print(f"wrote {out}.png and {out}.svg")


if __name__ == "__main__":
    main()
