#!/usr/bin/env python3
"""Writes tests/data/model/<name>_golden.json: llama.cpp's teacher-forced top-1 predictions
for the opening tokens of Pride and Prejudice (chapter 1), tokenized by llama.cpp itself.
Run with the venv of scripts/compare_llamacpp.sh:
  ~/.cache/tqlm/venv-llamacpp/bin/python scripts/gen_model_golden.py [smollm2|qwen2.5-coder|gemma3]
Also records llama.cpp's top-1 logit value at every position (llama_cpp_top1_logit)."""
import json, os, sys
import numpy as np
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "bench"))
from llamacpp_env import Llama, __version__

cache = os.environ.get("TQLM_CACHE", os.path.expanduser("~/.cache/tqlm"))
# name: (file, tokens, context). Gemma 3's golden runs past its 512-token sliding window, so
# the local layers' window is exercised.
MODELS = {"smollm2": ("SmolLM2-135M-Instruct.Q4_1.gguf", 256, 512),
          "qwen2.5-coder": ("qwen2.5-coder-1.5b-instruct-q4_k_m.gguf", 96, 512),
          "gemma3": ("gemma-3-270m-q4_k_m.gguf", 640, 1024)}
name = sys.argv[1] if len(sys.argv) > 1 else "smollm2"
model = f"{cache}/models/{MODELS[name][0]}"
text = open(f"{cache}/corpus/prideprejudice.txt", encoding="utf-8").read()
start = text.index("It is a truth universally")
n_ctx = MODELS[name][2]
llm = Llama(model_path=model, n_ctx=n_ctx, n_batch=n_ctx, logits_all=True, n_threads=2,
            verbose=False)
# Gemma is trained to always see its BOS first (without it its predictions degenerate).
tokens = llm.tokenize(text[start:start + 4000].encode(),
                      add_bos=name == "gemma3")[:MODELS[name][1]]
llm.eval(tokens)
top1 = [int(np.argmax(llm.scores[i])) for i in range(len(tokens))]
top1_logit = [round(float(llm.scores[i][top1[i]]), 4) for i in range(len(tokens))]
root = os.path.join(os.path.dirname(__file__), "..")
json.dump({"source": "llama-cpp-python " + __version__, "model": os.path.basename(model),
           "tokens": tokens, "llama_cpp_top1": top1, "llama_cpp_top1_logit": top1_logit},
          open(os.path.join(root, f"tests/data/model/{name}_golden.json"), "w"))
print(len(tokens), "tokens")
