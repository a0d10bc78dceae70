#!/usr/bin/env python3
"""Golden token ids from llama.cpp's own tokenizer, for tests/tokenizer_golden_test.cc.

Runs llama.cpp (the `xllamacpp` wheels, installed by scripts/peers_env.sh) on a GGUF model and
tokenizes a fixed mixed corpus (prose, code, emoji, CJK, whitespace runs, special tokens,
numbers, contractions) through its /tokenize endpoint, once with special tokens parsed and once
without. Writes tests/data/tokenizer/<name>_golden.json.

  $(scripts/peers_env.sh --python) scripts/gen_tokenizer_golden.py            # all models found
  $(scripts/peers_env.sh --python) scripts/gen_tokenizer_golden.py --model smollm2
  ... --extended   also writes $TQLM_CACHE/golden/<name>_extended.json (kept outside git): every
                   paragraph of the installed Austen corpus plus seeded random Unicode strings;
                   tests/tokenizer_golden_test.cc checks it when present.
  ... --extended-only  only those (the test setup, scripts/test.sh, runs this once per cache:
                   the committed golden files stay as they are).
"""
import argparse
import hashlib
import json
import os
import random
import struct
import sys
import urllib.request

CACHE = os.environ.get("TQLM_CACHE", os.path.expanduser("~/.cache/tqlm"))
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT_DIR = os.path.join(REPO, "tests", "data", "tokenizer")

# name: (model file, pre-tokenizer override). An override runs llama.cpp on a copy of the file
# whose `tokenizer.ggml.pre` is patched (same length, in place), so that pre-tokenizers without
# a small model at hand (Llama 3's) are still checked against llama.cpp on a real vocabulary;
# the test applies the same override to the VocabData.
MODELS = {
    "smollm2": ("SmolLM2-135M-Instruct.Q4_1.gguf", None),
    "qwen2.5-coder": ("qwen2.5-coder-1.5b-instruct-q4_k_m.gguf", None),
    "smollm2-pre-llama3": ("SmolLM2-135M-Instruct.Q4_1.gguf", ("smollm", "llama3")),
    "gemma3": ("gemma-3-270m-q4_k_m.gguf", None),  # SentencePiece (tokenizer.ggml.model = llama)
}

# Cases only one model's golden set carries (its own special tokens and conventions), so the
# other models' golden files stay as they are.
MODEL_CASES = {
    "gemma3": [
        "<start_of_turn>user\nWhat is 2+2?<end_of_turn>\n<start_of_turn>model\n",
        "<bos><start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\nHello!<end_of_turn>\n",
        "text<eos>more<pad>and<unk>end",
        "not special: <start_of_turn and end_of_turn> <start_of_image>",
        "<table><tr><td>cell</td></tr></table>",
        "tabs\t\t\tand\n\n\n\nnewlines\t\n \n",
        "rare characters: \U0001F9FF \U000E0041 \uFFFD \u0800 \U00010348 \U0010FFFD",
        "▁ literal visible spaces ▁▁ in text",
        " ",
        "  two leading spaces",
    ],
}

# Written for this test; the Austen excerpt (public domain) is appended from the corpus when the
# setup has installed it, so the golden file still carries the text itself.
CORPUS = [
    "Hello world",
    "Hello, world! How are you today?",
    " leading space",
    "trailing space ",
    "The quick brown fox jumps over the lazy dog.",
    "It's, I'm, you're, we've, they'll, he'd, can't, won't; IT'S, I'M, YOU'RE, WE'VE",
    "She said: \"Don't worry -- it's only 3.14159 percent.\"",
    "Numbers: 0 1 12 123 1234 12345 1234567890 3.5e-7 -42 +7 1,000,000",
    "Year 2024, room 101b, version v1.2.3, phone +1-555-0100",
    "def fib(n):\n    if n < 2:\n        return n\n    return fib(n - 1) + fib(n - 2)\n",
    "#include <stdio.h>\nint main(void) {\n\tprintf(\"%d\\n\", 42);\n\treturn 0;\n}\n",
    "for (auto& x : xs) { y += x * x; }  // sum of squares",
    "SELECT id, name FROM users WHERE age >= 18 ORDER BY name;",
    "{\"key\": [1, 2, 3], \"nested\": {\"a\": null, \"b\": true}}",
    "    indented four\n\ttabbed\n\n\nthree newlines",
    "a  b   c    d     e      f",
    "spaces at end     ",
    "\n\n\n",
    "   ",
    " ",
    "\r\nwindows\r\nline endings\r\n",
    "Emoji: 😀 😃 👍🏽 👨‍👩‍👧‍👦 🇫🇷 ❤️ 🎉🎉🎉",
    "中文测试：你好，世界！我们今天学习分词。",
    "日本語のテキストです。カタカナとひらがな。",
    "한국어 문장도 있습니다.",
    "Ελληνικά και русский текст, and العربية النص",
    "Accents: café, naïve, résumé, Zürich, São Paulo, Ångström",
    "Math: ∑_{i=1}^{n} x_i² ≤ √2 · π ≈ 3.14 ± 0.01 → ∞",
    "Mixed\u00a0non-breaking\u2003em-space\u3000ideographic and\u200bzero-width",
    "URL https://example.com/path?q=a+b&x=1#frag and email someone@example.org",
    "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n",
    "<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n",
    "text before<|endoftext|>text after",
    "<|im_end|><|im_end|>adjacent specials<|im_start|>",
    "not special: <|im_start and im_end|> and <| |>",
    "<tool_call>\n{\"name\": \"f\"}\n</tool_call>",
    "ALLCAPS WORDS AND MiXeD CaSe",
    "hyphen-ated under_scored camelCase snake_case kebab-case",
    "!!! ??? ... --- *** ### $$$ %%% ^^^ &&& ((( ))) [[[ ]]]",
    "x" * 300,
    "ab" * 150 + " " + "1" * 40,
]


def austen_excerpt():
    path = os.path.join(CACHE, "corpus", "prideprejudice.txt")
    if not os.path.exists(path):
        return None
    with open(path, encoding="utf-8") as f:
        text = f.read()
    start = text.find("It is a truth universally acknowledged")
    if start < 0:
        start = 0
    return text[start:start + 4000]


class LlamaServer:
    def __init__(self, model_path):
        import xllamacpp as xl
        params = xl.CommonParams()
        params.model.path = model_path
        params.n_ctx = 256
        params.n_parallel = 1
        params.cpuparams.n_threads = 1
        params.warmup = False
        params.port = 18000 + (os.getpid() % 1000)
        self.server = xl.Server(params)
        self.base = self.server.listening_address

    def post(self, path, obj):
        req = urllib.request.Request(self.base + path, data=json.dumps(obj).encode("utf-8"),
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req) as r:
            return json.loads(r.read())

    def tokenize(self, text, add_special, parse_special):
        r = self.post("/tokenize", {"content": text, "add_special": add_special,
                                    "parse_special": parse_special})
        return r["tokens"]


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def patched_model(name, path, override):
    """A copy of `path` with tokenizer.ggml.pre = override[1] (must be as long as override[0])."""
    old, new = (s.encode() for s in override)
    assert len(old) == len(new)
    dest = os.path.join(CACHE, "tmp", f"{name}.gguf")
    if os.path.exists(dest):
        return dest
    with open(path, "rb") as f:
        data = bytearray(f.read())
    key = b"tokenizer.ggml.pre" + struct.pack("<IQ", 8, len(old)) + old
    at = data.find(key)
    if at < 0:
        raise SystemExit(f"{path}: tokenizer.ggml.pre is not '{old.decode()}'")
    data[at + len(key) - len(old):at + len(key)] = new
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    with open(dest + ".part", "wb") as f:
        f.write(data)
    os.replace(dest + ".part", dest)
    return dest


def model_path(name, filename, override):
    path = os.path.join(CACHE, "models", filename)
    if not os.path.exists(path):
        return None
    return patched_model(name, path, override) if override else path


def generate(name, filename, override):
    path = model_path(name, filename, override)
    if path is None:
        print(f"[golden] {name}: {filename} absent, skipped", file=sys.stderr)
        return
    import xllamacpp
    corpus = list(CORPUS) + MODEL_CASES.get(name, [])
    excerpt = austen_excerpt()
    if excerpt:
        corpus.append(excerpt)
    srv = LlamaServer(path)
    cases = []
    for text in corpus:
        cases.append({
            "text": text,
            "ids": srv.tokenize(text, add_special=False, parse_special=True),
            "ids_no_special": srv.tokenize(text, add_special=False, parse_special=False),
            "ids_add_special": srv.tokenize(text, add_special=True, parse_special=True),
        })
    out = {
        "model_file": filename,
        "pre_override": override[1] if override else "",
        "model_sha256": sha256(os.path.join(CACHE, "models", filename)),
        "generator": "scripts/gen_tokenizer_golden.py",
        "llama_cpp": f"xllamacpp {xllamacpp.__version__} (llama.cpp bundled in the PyPI wheel)",
        "cases": cases,
    }
    os.makedirs(OUT_DIR, exist_ok=True)
    dest = os.path.join(OUT_DIR, f"{name}_golden.json")
    # One case per line: reviewable diffs without a line per token id.
    with open(dest, "w", encoding="utf-8") as f:
        f.write("{\n")
        for key in ("model_file", "pre_override", "model_sha256", "generator", "llama_cpp"):
            f.write(f" {json.dumps(key)}: {json.dumps(out[key], ensure_ascii=False)},\n")
        f.write(' "cases": [\n')
        lines = [json.dumps(c, ensure_ascii=False) for c in cases]
        f.write(",\n".join("  " + line for line in lines))
        f.write("\n ]\n}\n")
    print(f"[golden] {name}: {len(cases)} cases -> {dest}", file=sys.stderr)


# Character pools for random strings: every class the pre-tokenizer regexes distinguish.
POOLS = [
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ",
    "0123456789",
    "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~",
    " ", "  ", "\n", "\r\n", "\t", "\u00a0", "\u2003", "\u3000", "\u0085", "\u2028", "\u200b",
    "'s", "'T", "'re", "'LL", "'d", "'ve", "'M",
    "éèêëàâäôöûüçñßøåÉÀÇ", "ÆŒæœ", "αβγδεζηθΩΣ", "абвгдеёжзийклмнопЖЗИЙ", "אבגדה", "ابتثجحخ",
    "你好世界中文测试分词汉字", "ひらがなカタカナ", "한국어문장", "ไทย", "हिन्दी",
    "\u0301\u0308\u0327",  # combining marks
    "²³¹½¼⅓٣٤٥०१२",  # other numbers
    "😀😃👍🏽👨\u200d👩\u200d👧🇫🇷❤️🎉🔥✨",
    "∑√π≈±→∞≤≥·°€£¥©®™",
    "<|im_start|>", "<|im_end|>", "<|endoftext|>", "<tool_call>", "<|", "|>",
]


def random_strings(count, seed=1234):
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        parts = []
        for _ in range(rng.randint(1, 24)):
            pool = rng.choice(POOLS)
            if len(pool) <= 3 or pool.startswith("<") or pool.startswith("'"):
                parts.append(pool)
            else:
                parts.append("".join(rng.choice(pool) for _ in range(rng.randint(1, 6))))
        out.append("".join(parts))
    return out


def austen_paragraphs():
    texts = []
    corpus_dir = os.path.join(CACHE, "corpus")
    if not os.path.isdir(corpus_dir):
        return texts
    for name in sorted(os.listdir(corpus_dir)):
        with open(os.path.join(corpus_dir, name), encoding="utf-8") as f:
            for para in f.read().split("\n\n"):
                if para.strip():
                    texts.append(para)
    return texts


def generate_extended(name, filename, override):
    path = model_path(name, filename, override)
    if path is None:
        return
    import xllamacpp
    srv = LlamaServer(path)
    cases = []
    for text in austen_paragraphs() + random_strings(3000):
        cases.append({"text": text, "ids": srv.tokenize(text, False, True),
                      "ids_no_special": srv.tokenize(text, False, False)})
    dest_dir = os.path.join(CACHE, "golden")
    os.makedirs(dest_dir, exist_ok=True)
    dest = os.path.join(dest_dir, f"{name}_extended.json")
    with open(dest, "w", encoding="utf-8") as f:
        json.dump({"model_file": filename, "pre_override": override[1] if override else "",
                   "llama_cpp": f"xllamacpp {xllamacpp.__version__}", "cases": cases},
                  f, ensure_ascii=False)
    print(f"[golden] {name}: {len(cases)} extended cases -> {dest}", file=sys.stderr)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", choices=sorted(MODELS), help="only this model")
    ap.add_argument("--extended", action="store_true",
                    help="also write the large extended golden files into the cache")
    ap.add_argument("--extended-only", action="store_true",
                    help="write only the extended golden files (into the cache)")
    args = ap.parse_args()
    for name, (filename, override) in MODELS.items():
        if args.model and name != args.model:
            continue
        if not args.extended_only:
            generate(name, filename, override)
        if args.extended or args.extended_only:
            generate_extended(name, filename, override)


if __name__ == "__main__":
    main()
