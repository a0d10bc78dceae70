#!/usr/bin/env python3
"""tqlm vs llama.cpp prefill/decode tokens/s with bench/compare_llamacpp.py's speed protocol
(a 512-token Austen prompt, 64 greedy tokens, context 2048, same threads), repeated N times,
best of N per engine. On a shared, loaded machine one run can catch llama.cpp's spinning
worker threads descheduled (its decode rate then drops several-fold); the best of several
runs is each engine's rate when it was not disturbed.
  ~/.cache/tqlm/venv-llamacpp/bin/python bench/speed_best_of.py --model M.gguf [--runs 4]
    [--tqlm build/tqlm [--tqlm OTHER/tqlm ...]]   several builds (before/after) alternate in each run
tqlm runs with its default KV cache; `--kv f16` passes --ctk f16 --ctv f16."""
import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from llamacpp_env import Llama  # noqa: E402

CACHE = os.environ.get("TQLM_CACHE", os.path.expanduser("~/.cache/tqlm"))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tqlm", action="append", help="tqlm binary (repeat to compare builds)")
    ap.add_argument("--kv", default="", help="f16: run tqlm with an f16 KV cache")
    ap.add_argument("--model", required=True)
    ap.add_argument("--runs", type=int, default=4)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--prompt-tokens", type=int, default=512)
    ap.add_argument("--decode-tokens", type=int, default=64)
    args = ap.parse_args()
    bins = args.tqlm or ["build/tqlm"]
    names = ["tqlm"] if len(bins) == 1 else [f"tqlm:{b}" for b in bins]
    kv = ["--ctk", "f16", "--ctv", "f16"] if args.kv == "f16" else []
    text = open(f"{CACHE}/corpus/prideprejudice.txt", encoding="utf-8").read()
    llm = Llama(model_path=args.model, n_ctx=2048, n_batch=2048, n_threads=args.threads,
                n_threads_batch=args.threads, verbose=False)
    ids = llm.tokenize(text.encode(), add_bos=False)[: args.prompt_tokens]
    prompt = llm.detokenize(ids).decode("utf-8", errors="ignore")
    runs = {n: [] for n in names}
    runs["llama.cpp"] = []
    for rep in range(args.runs):
        for name, binary in zip(names, bins):
            r = json.loads(subprocess.run(
                [binary, "run", "-m", args.model, "-p", prompt, "-n", str(args.decode_tokens),
                 "--min-tokens", str(args.decode_tokens), "--temp", "0", "-t", str(args.threads),
                 "-c", "2048", "--json"] + kv, capture_output=True, text=True, check=True).stdout)
            runs[name].append((r["prefill_tokens_per_s"], r["decode_tokens_per_s"]))
        p = llm.tokenize(prompt.encode(), add_bos=True)
        llm.reset()
        t0 = time.perf_counter()
        llm.eval(p)
        t1 = time.perf_counter()
        tok = int(np.argmax(llm.scores[llm.n_tokens - 1]))
        t2 = time.perf_counter()
        for _ in range(args.decode_tokens - 1):
            llm.eval([tok])
            tok = int(np.argmax(llm.scores[llm.n_tokens - 1]))
        t3 = time.perf_counter()
        runs["llama.cpp"].append((len(p) / (t1 - t0), (args.decode_tokens - 1) / (t3 - t2)))
        print(f"[speed] run {rep + 1}: " + ", ".join(
            f"{k} prefill {v[-1][0]:.1f} decode {v[-1][1]:.1f} tok/s" for k, v in runs.items()),
            flush=True)
    best = {k: (max(x[0] for x in v), max(x[1] for x in v)) for k, v in runs.items()}
    for k, (pre, dec) in best.items():
        lo = min(x[1] for x in runs[k])
        print(f"[speed] best of {args.runs} {k:24s} prefill {pre:7.1f} tok/s  decode {dec:6.1f} "
              f"tok/s (slowest decode run {lo:.1f})")
    l = best["llama.cpp"]
    for n in names:
        t = best[n]
        print(f"[speed] {n}/llama.cpp: prefill {t[0] / l[0]:.2f}x, decode {t[1] / l[1]:.2f}x")


if __name__ == "__main__":
    main()
