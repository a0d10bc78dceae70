#!/usr/bin/env python3
"""Per-window spread of an `eval ppl` sweep (docs/RESULTS.md, "How many windows, what margin").

Reads the results JSONL of `tqlm eval ppl --kv ... -o FILE` and prints, per text and KV
configuration, the mean KLD and ΔNLL over the windows, their standard deviation per window,
the 2-window estimates (windows 0+1, 2+3, ...), the token-level standard error of ΔNLL per
window (from the rows' dnll_sq_sum) and sqrt(2 KLD / scored tokens), which it should follow.

    scripts/ppl_window_spread.py tqlm_eval_ppl.jsonl
"""
import collections
import json
import math
import statistics as st
import sys


def main(path):
    by_window = collections.defaultdict(dict)
    for line in open(path):
        row = json.loads(line)
        c = row["config"]
        by_window[(c["text"], c.get("numerics", ""), c["window"])][c["kv_name"]] = row
    keys = sorted({k[:2] for k in by_window})
    for text, numerics in keys:
        windows = sorted(w for (t, n, w) in by_window if (t, n) == (text, numerics))
        if len(windows) < 2:
            continue
        names = sorted({n for w in windows for n in by_window[(text, numerics, w)]} - {"f16/f16"})
        print(f"{text} ({numerics}), {len(windows)} windows")
        for name in names:
            dnll, kld, se, scored = [], [], [], []
            for w in windows:
                cells = by_window[(text, numerics, w)]
                if name not in cells or "f16/f16" not in cells:
                    continue
                r, f = cells[name], cells["f16/f16"]
                m = (r["nll_sum"] - f["nll_sum"]) / r["scored"]
                dnll.append(m)
                kld.append(r["kl_sum"] / r["scored"])
                scored.append(r["scored"])
                if "dnll_sq_sum" in r:
                    se.append(math.sqrt(max(r["dnll_sq_sum"] / r["scored"] - m * m, 0) / r["scored"]))
            if len(kld) < 2:
                continue
            pairs = lambda xs: [(xs[i] + xs[i + 1]) / 2 for i in range(0, len(xs) - 1, 2)]
            k = st.mean(kld)
            print(f"  {name:32s} KLD {k:.5f} sd/window {st.stdev(kld):.5f}"
                  f" 2-window {' '.join(f'{x:.4f}' for x in pairs(kld))}"
                  f" | dNLL {100 * st.mean(dnll):+.2f}% sd/window {100 * st.stdev(dnll):.2f}%"
                  f" token s.e./window {100 * st.mean(se) if se else float('nan'):.2f}%"
                  f" sqrt(2KLD/n) {100 * math.sqrt(2 * k / st.mean(scored)):.2f}%")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "tqlm_eval_ppl.jsonl")
