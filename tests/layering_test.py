#!/usr/bin/env python3
"""The one-way layering of docs/ARCHITECTURE.md, checked on the sources: every #include of a
src/ header from another layer must point to a layer below (or beside, where two layers share a
rank and do not include each other). Prints each include that runs the wrong way.
Usage: layering_test.py SRC_DIR"""
import os
import re
import sys

# Rank of each layer: a layer may include layers of lower rank only.
RANK = {
    "codec": 0,
    "kernels": 1,
    "kv": 2,
    "backend": 3,
    "model": 4,
    "jinja": 4,
    "tokenizer": 5,
    "chat": 6,
    "runtime": 7,
    "eval": 8,
    "server": 8,
    "cli": 9,
}

src = sys.argv[1]
bad = []
checked = 0
for root, _, files in os.walk(src):
    layer = os.path.relpath(root, src).split(os.sep)[0]
    if layer not in RANK:
        continue
    for f in files:
        path = os.path.join(root, f)
        for n, line in enumerate(open(path, errors="replace"), 1):
            m = re.match(r'\s*#\s*include\s+"([a-z_]+)/', line)
            if not m or m.group(1) not in RANK or m.group(1) == layer:
                continue
            checked += 1
            if RANK[m.group(1)] >= RANK[layer]:
                bad.append(f"{os.path.relpath(path, src)}:{n}: {layer} includes {m.group(1)}: "
                           f"{line.strip()}")
for b in bad:
    print("FAIL", b)
print(f"{checked} cross-layer includes checked, {len(bad)} run the wrong way")
sys.exit(1 if bad else 0)
