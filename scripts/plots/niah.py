#!/usr/bin/env python3
"""Heatmaps of `tqlm eval niah --summary`: per KV configuration the retrieval rate over prompt
length x needle depth, and under it the difference against f16/f16 (red: compression lost a
retrieval, blue: gained). Writes OUT.png and OUT.svg. Usage: niah.py OUT SUMMARY.jsonl"""
import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def grid(g, lengths, depths):
    m = np.full((len(lengths), len(depths)), np.nan)
    for c in g["cells"]:
        if c["length"] in lengths and c["depth"] in depths:
            m[lengths.index(c["length"]), depths.index(c["depth"])] = c["passed"] / c["trials"]
    return m


def main():
    out, path = sys.argv[1], sys.argv[2]
    grids = [json.loads(line) for line in open(path) if line.strip()]
    lengths = sorted({c["length"] for g in grids for c in g["cells"]})
    depths = sorted({c["depth"] for g in grids for c in g["cells"]})
    ref = next((g for g in grids if g["kv_name"] == "f16/f16"), None)
    n = len(grids)
    fig, axes = plt.subplots(2, n, figsize=(3.2 * n, 2.2 + 0.5 * len(lengths) * 2), squeeze=False)
    for i, g in enumerate(grids):
        m = grid(g, lengths, depths)
        for row, (data, cmap, vmin, title) in enumerate([
                (m, "viridis", 0, f"{g['kv_name']}: {g['passed']}/{g['trials']}"),
                (m - grid(ref, lengths, depths) if ref else m * np.nan, "coolwarm_r", -1,
                 f"{g['kv_name']} − f16")]):
            ax = axes[row][i]
            im = ax.imshow(data, cmap=cmap, vmin=vmin, vmax=1, aspect="auto")
            ax.set_xticks(range(len(depths)), [f"{d:.1f}" for d in depths], fontsize=7)
            ax.set_yticks(range(len(lengths)), [str(x) for x in lengths], fontsize=7)
            ax.set_xlabel("needle depth", fontsize=8)
            ax.set_ylabel("prompt tokens", fontsize=8)
            ax.set_title(title, fontsize=8)
            for (y, x), v in np.ndenumerate(data):
                if not np.isnan(v):
                    ax.text(x, y, f"{v:+.0%}" if row else f"{v:.0%}", ha="center", va="center",
                            fontsize=6, color="white" if row == 0 and v < 0.5 else "black")
            fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    for ext in ("png", "svg"):
        fig.savefig(f"{out}.{ext}", dpi=120)
    print(f"wrote {out}.png and {out}.svg")


if __name__ == "__main__":
    main()
