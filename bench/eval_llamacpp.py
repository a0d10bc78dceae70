#!/usr/bin/env python3
"""llama.cpp's quantized KV cache on the same model, text and token ids as `tqlm eval ppl`,
scored the same way: per window of CTX tokens (second halves scored), perplexity, KL
divergence and top-1 agreement against llama.cpp's own f16-KV run of that window. Writes one
row per (KV mode, window) into the same JSONL results file as `tqlm eval ppl --kv ...`, with
the same config keys (model/text hashes, ctx), so the Pareto table shows both engines.

Resumable like the C++ sweep: rows are hashed by their configuration and skipped when present;
each row is one write + fsync; a truncated last line (a killed run) is cut off first.

KV modes: f16 (reference), q8_0, q4_0 (quantized V needs flash attention, so every mode runs
with flash attention). The installed llama.cpp rotates K/V before quantizing them unless
LLAMA_ATTN_ROT_DISABLE is set; modes ending in "-norot" run in a child process with it set.

quant.cpp (PyPI quantcpp) exposes no logits or KV modes in Python and crashed here
(bench/compare_llamacpp.py); --quantcpp tries it once in a child process and records the outcome.

    scripts/eval_results.sh runs this; by hand:
    ~/.cache/tqlm/venv-llamacpp/bin/python bench/eval_llamacpp.py --model M --results R.jsonl
"""
import argparse
import hashlib
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np

PROTOCOL = 1  # as the C++ sweep's kEvalProtocol (src/cli/eval_common.cc)


def config_hash(config):
    text = json.dumps(config, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class Results:
    """The JSONL results file: load (ignoring a truncated last line), append durably."""

    def __init__(self, path):
        self.path, self.hashes, self.valid = path, set(), 0
        self.truncated = 0
        if not os.path.exists(path):
            return
        data = open(path, "rb").read()
        start = 0
        while start < len(data):
            nl = data.find(b"\n", start)
            if nl < 0:
                self.truncated = len(data) - start
                print(f"[llama.cpp] {path}: ignoring a truncated last line ({self.truncated} bytes)",
                      file=sys.stderr)
                break
            line = data[start:nl].strip()
            start = nl + 1
            if line:
                self.hashes.add(json.loads(line)["hash"])
        self.valid = start

    def append(self, row):
        line = (json.dumps(row, ensure_ascii=False) + "\n").encode()
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            if self.truncated:
                os.ftruncate(fd, self.valid)
                self.truncated = 0
            os.write(fd, line)
            os.fsync(fd)
        finally:
            os.close(fd)
        self.valid += len(line)
        self.hashes.add(row["hash"])


def peak_rss_reset():
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_rss_bytes():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def log_softmax(rows):
    rows = rows.astype(np.float64)
    m = rows.max(axis=1, keepdims=True)
    return rows - m - np.log(np.exp(rows - m).sum(axis=1, keepdims=True))


def ggml_bits_per_value(type_name):
    """Bits per value from ggml's block layout (gguf's table of block size, bytes per block)."""
    from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType
    block, nbytes = GGML_QUANT_SIZES[GGMLQuantizationType[type_name.upper()]]
    return 8.0 * nbytes / block


def run_mode(args, mode, dump, results, Llama, version):
    """Evaluates one KV mode (plus the f16 reference it is compared against) over all windows."""
    from llama_cpp import llama_cpp as lc
    kv = mode.replace("-norot", "")
    gtype = {"f16": lc.GGML_TYPE_F16, "q8_0": lc.GGML_TYPE_Q8_0, "q4_0": lc.GGML_TYPE_Q4_0}
    tokens, ctx, windows = dump["tokens"], dump["ctx"], dump["windows"]
    base = {"task": "ppl", "engine": "llama.cpp", "engine_version": f"llama-cpp-python {version}",
            "protocol": PROTOCOL, "model": dump["model"], "model_sha256": dump["model_sha256"],
            "text": dump["text"], "text_sha256": dump["text_sha256"], "ctx": ctx,
            "n_ubatch": args.ubatch, "flash_attn": True}

    def cell(name, w):
        c = dict(base, window=w, kv_name=f"{name}/{name}" if "-norot" not in name
                 else f"{name.replace('-norot', '')}/{name.replace('-norot', '')}-norot")
        c["attn_rot"] = "-norot" not in name
        return c

    todo = [w for w in range(windows) if config_hash(cell(mode, w)) not in results.hashes]
    if not todo:
        return
    models = {}

    def model(name):
        if name not in models:
            t = gtype[name.replace("-norot", "")]
            models[name] = Llama(model_path=args.model, n_ctx=ctx, n_batch=ctx,
                                 n_ubatch=args.ubatch, logits_all=True, n_threads=args.threads,
                                 n_threads_batch=args.threads, flash_attn=True, type_k=t,
                                 type_v=t, verbose=False)
        return models[name]

    first = ctx // 2
    for w in todo:
        window = tokens[w * ctx:(w + 1) * ctx]
        targets = np.array(window[first + 1:], dtype=np.int64)
        t0 = time.perf_counter()
        ref_llm = model("f16")
        ref_llm.reset()
        ref_llm.eval(window)
        ref = log_softmax(np.array(ref_llm.scores[first:ctx - 1]))
        ref_seconds = time.perf_counter() - t0
        if mode == "f16":
            lp, wall = ref, ref_seconds
        else:
            scoped = peak_rss_reset()
            t0 = time.perf_counter()
            llm = model(mode)
            llm.reset()
            llm.eval(window)
            lp = log_softmax(np.array(llm.scores[first:ctx - 1]))
            wall = time.perf_counter() - t0
        kl = (np.exp(ref) * (ref - lp)).sum(axis=1)
        n = len(targets)
        config = cell(mode, w)
        row = {"hash": config_hash(config), "config": config, "wall_seconds": wall,
               "peak_rss_bytes": peak_rss_bytes(),
               "peak_rss_scope": "cell" if mode != "f16" and scoped else "process",
               "kv_name": config["kv_name"], "window": w, "threads": args.threads,
               "scored": n, "nll_sum": float(-lp[np.arange(n), targets].sum()),
               "top1_text": int((lp.argmax(axis=1) == targets).sum()),
               "kl_sum": float(kl.sum()) if mode != "f16" else 0.0,
               "kl_max": float(kl.max()) if mode != "f16" else 0.0,
               "top1_ref": int((lp.argmax(axis=1) == ref.argmax(axis=1)).sum()),
               "bits_per_value": ggml_bits_per_value(kv), "effective_bits": ggml_bits_per_value(kv)}
        if mode != "f16":
            row["reference_seconds"] = ref_seconds
        results.append(row)
        print(f"[llama.cpp] {config['kv_name']} window {w}: nll {row['nll_sum'] / n:.4f} "
              f"KL {row['kl_sum'] / n:.5f} top-1 {row['top1_ref'] / n:.3f} ({wall:.1f} s)",
              file=sys.stderr, flush=True)


def try_quantcpp(args):
    """quant.cpp's Python API (quantcpp 0.13.0) offers generation only, no logits and no KV
    mode switch, so it cannot be scored this way; record whether it even runs here."""
    code = ("import quantcpp,sys; m=quantcpp.Model(sys.argv[1], temperature=0.0, max_tokens=4,"
            " n_threads=2); print(list(m.generate('It is a truth universally')))")
    p = subprocess.run([sys.executable, "-c", code, args.model], capture_output=True, text=True)
    return {"returncode": p.returncode, "stderr_tail": p.stderr[-300:]}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tqlm", default="build/tqlm")
    ap.add_argument("--model", required=True)
    ap.add_argument("--file", default="", help="text (default: tqlm's default corpus)")
    ap.add_argument("--ctx", type=int, default=512)
    ap.add_argument("--chunks", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--ubatch", type=int, default=512, help="llama.cpp physical batch")
    ap.add_argument("--results", required=True)
    ap.add_argument("--modes", default="f16,q8_0,q4_0,q8_0-norot,q4_0-norot")
    ap.add_argument("--quantcpp", action="store_true")
    ap.add_argument("--child-mode", help=argparse.SUPPRESS)
    ap.add_argument("--dump", help=argparse.SUPPRESS)
    args = ap.parse_args()
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from llamacpp_env import Llama, __version__ as version

    if args.child_mode:
        dump = json.load(open(args.dump))
        run_mode(args, args.child_mode, dump, Results(args.results), Llama, version)
        return 0
    with tempfile.NamedTemporaryFile(suffix=".json") as tmp:
        cmd = [args.tqlm, "eval", "ppl", "-m", args.model, "-c", str(args.ctx), "--chunks",
               str(args.chunks), "--dump-tokens", tmp.name]
        if args.file:
            cmd += ["-f", args.file]
        subprocess.run(cmd, check=True)
        dump = json.load(open(tmp.name))
        for mode in args.modes.split(","):
            env = dict(os.environ)
            if mode.endswith("-norot"):
                env["LLAMA_ATTN_ROT_DISABLE"] = "1"
            else:
                env.pop("LLAMA_ATTN_ROT_DISABLE", None)
            # One process per mode: the rotation switch is read from the environment.
            child = [sys.executable, os.path.abspath(__file__), "--child-mode", mode, "--dump",
                     tmp.name] + [a for a in sys.argv[1:]]
            r = subprocess.run(child, env=env)
            if r.returncode != 0:
                print(f"[llama.cpp] mode {mode} failed with status {r.returncode}", file=sys.stderr)
    if args.quantcpp:
        q = try_quantcpp(args)
        print(f"[quant.cpp] exit status {q['returncode']}"
              f"{' (crashed: signal %d)' % -q['returncode'] if q['returncode'] < 0 else ''}; "
              f"no logits or KV modes in its Python API, so no rows", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
