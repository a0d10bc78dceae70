#!/usr/bin/env python3
"""float64 reference forward pass of Gemma 3 270M from the dequantized GGUF weights, in numpy,
on the token ids of tests/data/model/gemma3_golden.json (640 tokens: the local layers' 512-token
window slides). It tells how far tqlm's and llama.cpp's teacher-forced top-1 predictions each
are from exact arithmetic on the same weights.
  ~/.cache/tqlm/venv-llamacpp/bin/python bench/fp64_reference_gemma3.py [build/bench_dump_logits]
With the path of bench_dump_logits (bench/dump_logits.cc) tqlm's logits are compared too.
Writes nothing; prints agreement counts."""
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
MODEL = f"{CACHE}/models/gemma-3-270m-q4_k_m.gguf"
ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")


def reference_logits(tokens):
    r = gguf.GGUFReader(MODEL)
    tensors = {t.name: t for t in r.tensors}

    def w(name):
        t = tensors[name]
        return np.asarray(dequantize(t.data, t.tensor_type), dtype=np.float64)

    d, nh, hd, layers, eps, window = 640, 4, 256, 18, 1e-6, 512
    n = len(tokens)
    pos = np.arange(n)

    def rope_tables(base):
        ang = pos[:, None] * base ** (-np.arange(0, hd, 2) / hd)[None, :]
        return np.cos(ang)[:, None, :], np.sin(ang)[:, None, :]

    ropes = {"local": rope_tables(10000.0), "global": rope_tables(1000000.0)}

    def rope(v, kind):  # NeoX halves
        cos, sin = ropes[kind]
        a, b = v[..., : hd // 2], v[..., hd // 2:]
        return np.concatenate([a * cos - b * sin, a * sin + b * cos], axis=-1)

    def norm(v, g):  # the GGUF stores Gemma's (1 + w)
        return v / np.sqrt((v * v).mean(-1, keepdims=True) + eps) * g

    def gelu(v):
        return 0.5 * v * (1 + np.tanh(np.sqrt(2 / np.pi) * (v + 0.044715 * v ** 3)))

    causal = np.triu(np.full((n, n), -np.inf), 1)
    local = causal + np.tril(np.full((n, n), -np.inf), -window)  # keys older than the window
    emb = w("token_embd.weight")
    x = emb[tokens] * np.sqrt(np.float32(d), dtype=np.float32)
    for l in range(layers):
        p = f"blk.{l}."
        kind = "global" if l % 6 == 5 else "local"
        h = norm(x, w(p + "attn_norm.weight"))
        q = norm((h @ w(p + "attn_q.weight").T).reshape(n, nh, hd), w(p + "attn_q_norm.weight"))
        k = norm((h @ w(p + "attn_k.weight").T).reshape(n, 1, hd), w(p + "attn_k_norm.weight"))
        v = (h @ w(p + "attn_v.weight").T).reshape(n, hd)
        q, k = rope(q, kind), rope(k, kind)[:, 0]
        mask = causal if kind == "global" else local
        att = np.empty((n, nh, hd))
        for hh in range(nh):
            s = q[:, hh] @ k.T / np.sqrt(hd) + mask
            s = np.exp(s - s.max(-1, keepdims=True))
            att[:, hh] = (s / s.sum(-1, keepdims=True)) @ v
        o = att.reshape(n, nh * hd) @ w(p + "attn_output.weight").T
        x = x + norm(o, w(p + "post_attention_norm.weight"))
        h = norm(x, w(p + "ffn_norm.weight"))
        f = gelu(h @ w(p + "ffn_gate.weight").T) * (h @ w(p + "ffn_up.weight").T)
        x = x + norm(f @ w(p + "ffn_down.weight").T, w(p + "post_ffw_norm.weight"))
    return norm(x, w("output_norm.weight")) @ emb.T


def main():
    golden = json.load(open(os.path.join(ROOT, "tests/data/model/gemma3_golden.json")))
    tokens = golden["tokens"]
    n = len(tokens)
    ref = reference_logits(tokens)
    top_ref = ref.argmax(1)
    runs = {}
    for label, kv in (("llama.cpp f16 KV", None), ("llama.cpp f32 KV", 0)):
        extra = {} if kv is None else {"type_k": kv, "type_v": kv}
        llm = Llama(model_path=MODEL, n_ctx=1024, n_batch=1024, logits_all=True, n_threads=2,
                    verbose=False, **extra)
        llm.eval(tokens)
        runs[label] = np.array(llm.scores[:n], dtype=np.float32)
        del llm
    if len(sys.argv) > 1:
        with tempfile.NamedTemporaryFile(suffix=".f32") as f:
            subprocess.run([sys.argv[1], MODEL, os.path.join(ROOT, "tests/data/model/gemma3_golden.json"),
                            f.name], check=True, stdout=subprocess.DEVNULL)
            runs["tqlm (f32 KV)"] = np.fromfile(f.name, dtype=np.float32).reshape(n, -1)
    for label, logits in runs.items():
        top = logits.argmax(1)
        print(f"{label:18s} vs fp64: top-1 {np.mean(top == top_ref):.4f} "
              f"(positions < 512: {np.mean(top[:512] == top_ref[:512]):.4f}, "
              f">= 512: {np.mean(top[512:] == top_ref[512:]):.4f}), "
              f"mean |logit diff| {np.abs(logits - ref).mean():.4f}")
    labels = list(runs)
    for i, a in enumerate(labels):
        for b in labels[i + 1:]:
            print(f"{a} vs {b}: top-1 {np.mean(runs[a].argmax(1) == runs[b].argmax(1)):.4f}")


if __name__ == "__main__":
    main()
