#!/usr/bin/env python3
"""float64 reference forward pass of SmolLM2-135M (llama architecture) from the dequantized
GGUF weights, in numpy. It tells how far tqlm's and llama.cpp's top-1 predictions each are
from exact arithmetic on the same weights: both quantize activations to 8 bits, so neither
matches the other (or the reference) token for token on a model this small.
  ~/.cache/tqlm/venv-llamacpp/bin/python bench/fp64_reference.py   (needs numpy + gguf)
Writes nothing; prints agreement counts over the second half of one 512-token window."""
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import gguf
from gguf.quants import dequantize

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from llamacpp_env import Llama  # noqa: E402

CACHE = os.environ.get("TQLM_CACHE", os.path.expanduser("~/.cache/tqlm"))
MODEL = f"{CACHE}/models/SmolLM2-135M-Instruct.Q4_1.gguf"
N = 512


def reference_logits(tokens):
    r = gguf.GGUFReader(MODEL)
    tensors = {t.name: t for t in r.tensors}

    def w(name):
        t = tensors[name]
        return np.asarray(dequantize(t.data, t.tensor_type), dtype=np.float64)

    d, nh, nkv, hd, layers, eps, base = 576, 9, 3, 64, 30, 1e-5, 100000.0
    n = len(tokens)
    emb = w("token_embd.weight")
    x = emb[tokens]
    ang = np.arange(n)[:, None] * base ** (-np.arange(0, hd, 2) / hd)[None, :]
    cos, sin = np.cos(ang)[:, None, :], np.sin(ang)[:, None, :]

    def rope(v):  # adjacent pairs, as GGUF's llama layout stores Q/K
        a, b = v[..., 0::2], v[..., 1::2]
        out = np.empty_like(v)
        out[..., 0::2], out[..., 1::2] = a * cos - b * sin, a * sin + b * cos
        return out

    def norm(v, g):
        return v / np.sqrt((v * v).mean(-1, keepdims=True) + eps) * g

    mask = np.triu(np.full((n, n), -np.inf), 1)
    for l in range(layers):
        p = f"blk.{l}."
        h = norm(x, w(p + "attn_norm.weight"))
        q = rope((h @ w(p + "attn_q.weight").T).reshape(n, nh, hd))
        k = rope((h @ w(p + "attn_k.weight").T).reshape(n, nkv, hd))
        v = (h @ w(p + "attn_v.weight").T).reshape(n, nkv, hd)
        att = np.empty((n, nh, hd))
        for hh in range(nh):
            s = q[:, hh] @ k[:, hh // (nh // nkv)].T / np.sqrt(hd) + mask
            s = np.exp(s - s.max(-1, keepdims=True))
            att[:, hh] = (s / s.sum(-1, keepdims=True)) @ v[:, hh // (nh // nkv)]
        x = x + att.reshape(n, d) @ w(p + "attn_output.weight").T
        h = norm(x, w(p + "ffn_norm.weight"))
        g, u = h @ w(p + "ffn_gate.weight").T, h @ w(p + "ffn_up.weight").T
        x = x + (g / (1 + np.exp(-g)) * u) @ w(p + "ffn_down.weight").T
    return norm(x, w("output_norm.weight"))[N // 2:N - 1] @ emb.T


def main():
    tqlm = sys.argv[1] if len(sys.argv) > 1 else "build/tqlm"
    top1 = {}
    for kv in ("f16", "f32"):
        with tempfile.NamedTemporaryFile(suffix=".json") as f:
            subprocess.run([tqlm, "eval", "ppl", "-m", MODEL, "-c", str(N), "--chunks", "1",
                            "--ctk", kv, "--ctv", kv, "--dump", f.name], check=True,
                           capture_output=True)
            dump = json.load(open(f.name))
        tokens = dump["tokens"][:N]
        top1[f"tqlm ({kv} KV)"] = np.array([s[2] for s in dump["scores"]])
    llm = Llama(model_path=MODEL, n_ctx=N, n_batch=N, logits_all=True, n_threads=2, verbose=False)
    llm.eval(tokens)
    top1["llama.cpp (f16 KV)"] = np.array(llm.scores[N // 2:N - 1]).argmax(1)
    ref = reference_logits(tokens).argmax(1)
    names = list(top1)
    print(f"top-1 agreement over {len(ref)} positions (second half of a {N}-token Austen window)")
    for a in names:
        print(f"  {a:20s} vs fp64 reference: {(top1[a] == ref).mean():.4f}")
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            print(f"  {a:20s} vs {b:20s}: {(top1[a] == top1[b]).mean():.4f}")


if __name__ == "__main__":
    main()
