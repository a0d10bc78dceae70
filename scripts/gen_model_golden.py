#!/usr/bin/env python3
"""Writes tests/data/model/<name>_golden.json: llama.cpp's teacher-forced predictions for the
opening tokens of Pride and Prejudice (chapter 1), tokenized by llama.cpp itself.
Run with the venv of scripts/compare_llamacpp.sh:
  ~/.cache/tqlm/venv-llamacpp/bin/python scripts/gen_model_golden.py [smollm2|qwen2.5-coder|gemma3]

Records, per position: llama.cpp's top-1 id and its logit (llama_cpp_top1, _top1_logit) and
its 8 largest logits with their ids (llama_cpp_top8). Also llama.cpp's own noise floor: the
same tokens again in a numerically different but equivalent configuration (f32 instead of
f16 KV cache, flash attention toggled, batches of 16 instead of one: other matmul and
attention kernels), whose logits at the first run's top-8 ids and whose top-1 ids are stored
under "noise". tests/model_llama_test.cc and model_gemma3_test.cc bound tqlm's distance from
llama.cpp by that floor."""
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
GGML_F32 = 0


def run(**kw):
    llm = Llama(model_path=model, n_ctx=n_ctx, logits_all=True, n_threads=2, verbose=False, **kw)
    return llm


main = run(n_batch=n_ctx, n_ubatch=n_ctx, flash_attn=False)
# Gemma is trained to always see its BOS first (without it its predictions degenerate).
tokens = main.tokenize(text[start:start + 4000].encode(),
                       add_bos=name == "gemma3")[:MODELS[name][1]]
main.eval(tokens)
# Rows one at a time (Gemma: 262k logits per position).
top8 = [[int(v) for v in np.argsort(-main.scores[i], kind="stable")[:8]] for i in range(len(tokens))]
top1 = [t[0] for t in top8]
top8_logit = [[float(main.scores[i][v]) for v in top8[i]] for i in range(len(tokens))]
del main

other = run(n_batch=16, n_ubatch=16, flash_attn=True, type_k=GGML_F32, type_v=GGML_F32)
other.eval(tokens)
noise_top1 = [int(np.argmax(other.scores[i])) for i in range(len(tokens))]
noise_top8 = [[float(other.scores[i][v]) for v in top8[i]] for i in range(len(tokens))]
del other

r4 = lambda x: round(float(x), 4)
root = os.path.join(os.path.dirname(__file__), "..")
out = {"source": "llama-cpp-python " + __version__, "model": os.path.basename(model),
       "config": f"n_batch {n_ctx}, f16 KV cache, no flash attention, 2 threads",
       "tokens": tokens, "llama_cpp_top1": top1,
       "llama_cpp_top1_logit": [r4(top8_logit[i][0]) for i in range(len(tokens))],
       "llama_cpp_top8": [[[v, r4(x)] for v, x in zip(top8[i], top8_logit[i])] for i in range(len(tokens))],
       "noise": {"config": "n_batch 16, f32 KV cache, flash attention, 2 threads",
                 "top1": noise_top1,
                 "top8_logit": [[r4(x) for x in row] for row in noise_top8]}}
with open(os.path.join(root, f"tests/data/model/{name}_golden.json"), "w") as f:
    # One position per line: reviewable diffs.
    f.write("{\n")
    keys = list(out)
    for k in keys:
        v = out[k]
        if k in ("llama_cpp_top8",):
            f.write(f' "{k}": [\n' + ",\n".join("  " + json.dumps(p) for p in v) + "\n ]")
        elif k == "noise":
            f.write(' "noise": {\n')
            f.write(f'  "config": {json.dumps(v["config"])},\n')
            f.write(f'  "top1": {json.dumps(v["top1"])},\n')
            f.write('  "top8_logit": [\n' + ",\n".join("   " + json.dumps(p) for p in v["top8_logit"]) + "\n  ]\n }")
        else:
            f.write(f' "{k}": {json.dumps(v)}')
        f.write(",\n" if k != keys[-1] else "\n")
    f.write("}\n")
agree = sum(a == b for a, b in zip(top1, out["noise"]["top1"]))
diff = np.abs(np.array(top8_logit) - np.array(noise_top8))
print(f"{len(tokens)} tokens; llama.cpp vs itself ({out['noise']['config']}): top-1 {agree}/{len(tokens)}, "
      f"top-8 logits mean |diff| {diff.mean():.4f}, max {diff.max():.4f}")
