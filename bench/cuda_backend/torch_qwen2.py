#!/usr/bin/env python3
"""The PyTorch baseline for `tqlm bench e2e` on the same GPU: transformers' Qwen2 model in fp16
with random weights, built from a GGUF's geometry (read from its metadata), SDPA attention and a
static KV cache; batch-1 decode at given contexts and prefill of given prompt lengths, plus a
bf16 matrix product's rate (the yardstick for model FLOP utilisation). Prints JSON.

  torch_qwen2.py MODEL.gguf --ctx 512,32768 --prefill 2048,32768 [--compile] > torch.json
"""
import argparse
import json
import struct
import sys
import time

import torch


def gguf_metadata(path):
    """Scalar metadata of a GGUF file (arrays skipped)."""
    with open(path, "rb") as f:
        data = f.read(64 << 20)
    pos = 0

    def take(fmt):
        nonlocal pos
        v = struct.unpack_from("<" + fmt, data, pos)
        pos += struct.calcsize("<" + fmt)
        return v[0]

    def string():
        nonlocal pos
        n = take("Q")
        s = data[pos:pos + n].decode("utf-8", "replace")
        pos += n
        return s

    scalar = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q",
              12: "d"}

    def value(t):
        nonlocal pos
        if t in scalar:
            return take(scalar[t])
        if t == 8:
            return string()
        et, n = take("I"), take("Q")
        if et in scalar:
            pos += struct.calcsize(scalar[et]) * n
            return n  # the length of the array (the vocabulary size for tokenizer.ggml.tokens)
        if et == 8:
            for _ in range(n):
                string()
            return n
        raise ValueError("nested arrays")

    assert data[:4] == b"GGUF"
    pos = 8
    n_tensors, n_kv = take("Q"), take("Q")
    meta = {}
    for _ in range(n_kv):
        k = string()
        meta[k] = value(take("I"))
    return meta


def config_from_gguf(path, max_len):
    from transformers import Qwen2Config
    m = gguf_metadata(path)
    a = m["general.architecture"]
    if a != "qwen2":
        sys.exit(f"{path}: architecture {a}, this baseline builds qwen2 only")
    vocab = m.get("tokenizer.ggml.tokens")
    return Qwen2Config(
        vocab_size=int(vocab), hidden_size=m[f"{a}.embedding_length"],
        intermediate_size=m[f"{a}.feed_forward_length"],
        num_hidden_layers=m[f"{a}.block_count"], num_attention_heads=m[f"{a}.attention.head_count"],
        num_key_value_heads=m[f"{a}.attention.head_count_kv"],
        max_position_embeddings=max_len, rope_theta=m.get(f"{a}.rope.freq_base", 1e6),
        rms_norm_eps=m.get(f"{a}.attention.layer_norm_rms_epsilon", 1e-6),
        tie_word_embeddings=True)


def make_cache(model, cfg, max_len):
    from transformers import StaticCache
    for kwargs in ({"config": cfg, "max_cache_len": max_len},
                   {"config": cfg, "max_batch_size": 1, "max_cache_len": max_len,
                    "device": "cuda", "dtype": torch.float16}):
        try:
            return StaticCache(**kwargs), "static"
        except TypeError:
            continue
    from transformers import DynamicCache
    return DynamicCache(), "dynamic"


def timed(fn, reps):
    times = []
    for _ in range(reps):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    times.sort()
    return times[len(times) // 2]


def bf16_matmul_rate():
    n = 8192
    a = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    t = timed(lambda: a @ b, 10)
    return 2 * n ** 3 / t


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("gguf")
    ap.add_argument("--ctx", default="512,32768")
    ap.add_argument("--prefill", default="2048,32768")
    ap.add_argument("--decode", type=int, default=32)
    ap.add_argument("--compile", action="store_true")
    a = ap.parse_args()
    ctxs = [int(x) for x in a.ctx.split(",") if x]
    prefills = [int(x) for x in a.prefill.split(",") if x]
    max_len = max(ctxs + prefills) + a.decode + 16
    from transformers import Qwen2ForCausalLM
    cfg = config_from_gguf(a.gguf, max_len)
    cfg._attn_implementation = "sdpa"
    torch.manual_seed(0)
    with torch.device("cuda"):
        model = Qwen2ForCausalLM(cfg).to(torch.float16).eval()
    params = sum(p.numel() for p in model.parameters())
    out = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "params": params,
           "config": {k: getattr(cfg, k) for k in ("hidden_size", "intermediate_size",
                                                   "num_hidden_layers", "num_attention_heads",
                                                   "num_key_value_heads", "vocab_size")},
           "bf16_matmul_flops": bf16_matmul_rate(), "decode": [], "prefill": []}
    step = model.forward
    if a.compile:
        step = torch.compile(model.forward, mode="reduce-overhead", fullgraph=False)
    out["compiled"] = a.compile
    vocab = cfg.vocab_size
    with torch.inference_mode():
        for ctx in ctxs:
            cache, kind = make_cache(model, cfg, ctx + a.decode + 8)
            prompt = torch.randint(0, vocab, (1, ctx), device="cuda")
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            model(input_ids=prompt, past_key_values=cache, use_cache=True, logits_to_keep=1,
                  cache_position=torch.arange(ctx, device="cuda"))
            torch.cuda.synchronize()
            prefill_s = time.perf_counter() - t0
            tok = torch.randint(0, vocab, (1, 1), device="cuda")
            times = []
            for i in range(a.decode + 4):
                pos = torch.tensor([ctx + i], device="cuda")
                torch.cuda.synchronize()
                t0 = time.perf_counter()
                logits = step(input_ids=tok, past_key_values=cache, use_cache=True,
                              logits_to_keep=1, cache_position=pos).logits
                logits.float().cpu()  # the logits reach the host, as tqlm's do
                torch.cuda.synchronize()
                if i >= 4:
                    times.append(time.perf_counter() - t0)
            times.sort()
            med = times[len(times) // 2]
            out["decode"].append({"ctx": ctx, "cache": kind, "decode_tokens_per_s": 1 / med,
                                  "decode_ms_per_token_median": med * 1e3,
                                  "prefill_seconds_first": prefill_s})
            print(f"torch decode ctx {ctx}: {1 / med:.1f} tokens/s ({kind} cache)", file=sys.stderr)
            del cache
            torch.cuda.empty_cache()
        for n in prefills:
            prompt = torch.randint(0, vocab, (1, n), device="cuda")

            def run():
                cache, _ = make_cache(model, cfg, n + 8)
                model(input_ids=prompt, past_key_values=cache, use_cache=True, logits_to_keep=1,
                      cache_position=torch.arange(n, device="cuda"))
            run()
            t = timed(run, 3)
            flops = 2 * params * n
            out["prefill"].append({"tokens": n, "seconds": t, "tokens_per_s": n / t,
                                   "matmul_flops_per_s": flops / t})
            print(f"torch prefill {n}: {n / t:.0f} tokens/s", file=sys.stderr)
            torch.cuda.empty_cache()
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
