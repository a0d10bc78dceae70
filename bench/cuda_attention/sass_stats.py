#!/usr/bin/env python3
"""Instruction mix per kernel from `cuobjdump -sass` on stdin: total, LDS, LDG, HMMA, spills."""
import re
import subprocess
import sys
from collections import Counter

name, counts, out = None, Counter(), []


def flush():
    if name:
        pretty = subprocess.run(["c++filt"], input=name, capture_output=True, text=True).stdout.strip() or name
        pretty = re.sub(r".*AttendSplitKernel<(\d+), (\d+), (\d+)>.*", r"AttendSplitKernel<\1, \2, \3>", pretty)
        total = sum(counts.values())
        keys = ["LDS", "LDG", "HMMA", "SHF", "LOP3", "PRMT", "FFMA", "MUFU", "SHFL", "LDL", "STL", "BAR"]
        out.append(f"{pretty}\n  total {total}: " + ", ".join(f"{k} {counts[k]}" for k in keys))


for line in sys.stdin:
    m = re.match(r"\s*Function : (\S+)", line)
    if m:
        flush()
        name, counts = m.group(1), Counter()
        continue
    m = re.match(r"\s*/\*[0-9a-f]+\*/\s+(?:@!?U?P\w+\s+)?([A-Z][A-Z0-9]*)", line)
    if m and name:
        counts[m.group(1)] += 1
flush()
print("\n".join(out))
