#!/usr/bin/env python3
"""Writes a tiny random-weight `qwen3` GGUF (tests/data/model/qwen3_tiny.gguf) and llama.cpp's
logits for it (tests/data/model/qwen3_tiny_golden.json).

No Qwen3 GGUF can be installed here (PyPI has none), so the architecture is checked on a model
whose weights are seeded random numbers in Qwen3's exact layout: QK-norm tensors, NeoX RoPE with
base 1e6, no biases, a head size (32) that is not n_embd / n_head (16), grouped-query attention
and tied embeddings, with a small byte-level BPE vocabulary (pre-tokenizer qwen2). Weights are
F32 and llama.cpp runs with an F32 KV cache and without flash attention, so both engines do the
same float arithmetic up to summation order and their logits must agree to ~1e-4.

Run with the venv of scripts/compare_llamacpp.sh (numpy, gguf 0.19.0, llama-cpp-python):
  ~/.cache/tqlm/venv-llamacpp/bin/python scripts/gen_qwen3_tiny.py"""
import json
import os
import sys

import gguf
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "bench"))
from llamacpp_env import Llama, __version__  # noqa: E402

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
OUT = os.path.join(ROOT, "tests", "data", "model")
N_EMBD, N_HEAD, N_HEAD_KV, HEAD_DIM, N_FF, N_LAYER, N_CTX = 64, 4, 2, 32, 128, 2, 256
EPS, ROPE_BASE = 1e-6, 1e6
N_TOKENS, SEED = 96, 20261122


def byte_symbols():
    """GPT-2's reversible map of the 256 byte values to printable characters."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAC + 1)) + \
        list(range(0xAE, 0xFF + 1))
    sym, extra = {}, 0
    for b in range(256):
        if b in keep:
            sym[b] = chr(b)
        else:
            sym[b] = chr(256 + extra)
            extra += 1
    return [sym[b] for b in range(256)]


def vocabulary():
    tokens = byte_symbols()
    merges = []
    # A few English merges (each merge's result is a token), then the specials Qwen uses.
    for a, b in [("Ġ", "t"), ("h", "e"), ("Ġt", "he"), ("i", "n"), ("Ġ", "a"), ("e", "r"),
                 ("o", "n"), ("Ġ", "s"), ("r", "e"), ("a", "t"), ("Ġ", "w"), ("e", "n"),
                 ("Ġ", "o"), ("i", "s"), ("Ġ", "b"), ("e", "d"), ("Ġ", "c"), ("n", "d"),
                 ("Ġa", "nd"), ("o", "u")]:
        merges.append(f"{a} {b}")
        tokens.append(a + b)
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    types = [gguf.TokenType.NORMAL] * len(tokens) + [gguf.TokenType.CONTROL] * len(specials)
    return tokens + specials, types, merges, len(tokens)


def main():
    rng = np.random.default_rng(SEED)
    tokens, types, merges, n_normal = vocabulary()
    n_vocab = len(tokens)
    path = os.path.join(OUT, "qwen3_tiny.gguf")
    w = gguf.GGUFWriter(path, "qwen3")
    w.add_name("qwen3-tiny-random")
    w.add_context_length(N_CTX)
    w.add_embedding_length(N_EMBD)
    w.add_block_count(N_LAYER)
    w.add_feed_forward_length(N_FF)
    w.add_head_count(N_HEAD)
    w.add_head_count_kv(N_HEAD_KV)
    w.add_key_length(HEAD_DIM)
    w.add_value_length(HEAD_DIM)
    w.add_rope_freq_base(ROPE_BASE)
    w.add_layer_norm_rms_eps(EPS)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("qwen2")
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(merges)
    w.add_bos_token_id(n_normal)        # <|endoftext|>
    w.add_eos_token_id(n_normal + 2)    # <|im_end|>
    w.add_add_bos_token(False)

    def mat(n_out, n_in):  # numpy (out, in) = GGUF ne0 = in
        return (rng.standard_normal((n_out, n_in)) / np.sqrt(n_in)).astype(np.float32)

    def norm(n):
        return (1.0 + 0.2 * rng.standard_normal(n)).astype(np.float32)

    w.add_tensor("token_embd.weight", rng.standard_normal((n_vocab, N_EMBD)).astype(np.float32))
    w.add_tensor("output_norm.weight", norm(N_EMBD))
    q_dim, kv_dim = N_HEAD * HEAD_DIM, N_HEAD_KV * HEAD_DIM
    for l in range(N_LAYER):
        b = f"blk.{l}."
        w.add_tensor(b + "attn_norm.weight", norm(N_EMBD))
        w.add_tensor(b + "attn_q.weight", mat(q_dim, N_EMBD))
        w.add_tensor(b + "attn_k.weight", mat(kv_dim, N_EMBD))
        w.add_tensor(b + "attn_v.weight", mat(kv_dim, N_EMBD))
        w.add_tensor(b + "attn_q_norm.weight", norm(HEAD_DIM))
        w.add_tensor(b + "attn_k_norm.weight", norm(HEAD_DIM))
        w.add_tensor(b + "attn_output.weight", mat(N_EMBD, q_dim))
        w.add_tensor(b + "ffn_norm.weight", norm(N_EMBD))
        w.add_tensor(b + "ffn_gate.weight", mat(N_FF, N_EMBD))
        w.add_tensor(b + "ffn_up.weight", mat(N_FF, N_EMBD))
        w.add_tensor(b + "ffn_down.weight", mat(N_EMBD, N_FF))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()

    ids = [int(t) for t in rng.integers(0, n_normal, N_TOKENS)]
    llm = Llama(model_path=path, n_ctx=N_CTX, n_batch=N_CTX, logits_all=True, n_threads=2,
                type_k=0, type_v=0, flash_attn=False, verbose=False)  # 0 = GGML_TYPE_F32
    llm.eval(ids)
    scores = np.array(llm.scores[:N_TOKENS], dtype=np.float64)
    every = 8  # full logit rows for every 8th position keep the file small
    json.dump({"source": "llama-cpp-python " + __version__ + " (f32 KV, no flash attention)",
               "model": "qwen3_tiny.gguf", "seed": SEED, "tokens": ids,
               "llama_cpp_top1": [int(np.argmax(r)) for r in scores],
               "logit_rows_every": every,
               "llama_cpp_logits": [[round(float(v), 5) for v in scores[i]]
                                    for i in range(0, N_TOKENS, every)]},
              open(os.path.join(OUT, "qwen3_tiny_golden.json"), "w"))
    print(f"{path}: {os.path.getsize(path)} bytes, vocab {n_vocab}; {N_TOKENS} tokens scored")


if __name__ == "__main__":
    main()
