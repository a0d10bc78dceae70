#!/usr/bin/env python3
"""Random-weight GGUF files with a real model's exact geometry, tensor formats and metadata.

Speed does not depend on weight values, and GPU-vs-CPU correctness can be checked on any
weights, so a GPU machine that cannot hold the real files gets these instead:

  gpu_gguf_random.py skeleton MODEL.gguf OUT.skel   # header + metadata + tensor table only
  gpu_gguf_random.py fill OUT.skel OUT.gguf [--seed N]

`fill` writes every tensor with random bytes whose fp16 scale fields are set to small finite
values (so that every block decodes to moderate numbers), F32 vectors (norm weights, biases)
near 1 or near 0, and F16/BF16 matrices as small normal values. Needs numpy.
"""
import argparse
import struct
import sys

import numpy as np

# ggml type id -> (name, values per block, bytes per block, [(scale field offset, kind)])
# kind: "d" a multiplicative fp16 scale, "m" an fp16 min/offset.
TYPES = {
    0: ("F32", 1, 4, []),
    1: ("F16", 1, 2, []),
    30: ("BF16", 1, 2, []),
    2: ("Q4_0", 32, 18, [(0, "d")]),
    3: ("Q4_1", 32, 20, [(0, "d"), (2, "m")]),
    6: ("Q5_0", 32, 22, [(0, "d")]),
    7: ("Q5_1", 32, 24, [(0, "d"), (2, "m")]),
    8: ("Q8_0", 32, 34, [(0, "d")]),
    10: ("Q2_K", 256, 84, [(80, "dk"), (82, "dk")]),
    11: ("Q3_K", 256, 110, [(108, "dk")]),
    12: ("Q4_K", 256, 144, [(0, "dk"), (2, "dk")]),
    13: ("Q5_K", 256, 176, [(0, "dk"), (2, "dk")]),
    14: ("Q6_K", 256, 210, [(208, "d6")]),
}
# Scale ranges per kind: block values stay within about +-0.1 .. 0.5.
SCALE_RANGE = {"d": (0.002, 0.01), "m": (-0.04, 0.0), "dk": (0.0002, 0.001), "d6": (0.0001, 0.0005)}


class Reader:
    def __init__(self, data):
        self.data, self.pos = data, 0

    def take(self, fmt):
        v = struct.unpack_from("<" + fmt, self.data, self.pos)
        self.pos += struct.calcsize("<" + fmt)
        return v[0] if len(v) == 1 else v

    def string(self):
        n = self.take("Q")
        s = self.data[self.pos:self.pos + n]
        self.pos += n
        return s.decode("utf-8", "replace")

    SCALAR = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q",
              12: "d"}

    def value(self, t):
        if t in self.SCALAR:
            return self.take(self.SCALAR[t])
        if t == 8:
            return self.string()
        if t == 9:
            et, n = self.take("I"), self.take("Q")
            if et in self.SCALAR:
                size = struct.calcsize(self.SCALAR[et])
                self.pos += size * n  # arrays are not needed here: skipped
                return None
            return [self.value(et) for _ in range(n)]
        raise ValueError(f"unknown GGUF value type {t}")


def parse(data):
    r = Reader(data)
    if r.take("4s") != b"GGUF":
        raise ValueError("not a GGUF file")
    version, n_tensors, n_kv = r.take("I"), r.take("Q"), r.take("Q")
    meta = {}
    for _ in range(n_kv):
        key = r.string()
        meta[key] = r.value(r.take("I"))
    tensors = []
    for _ in range(n_tensors):
        name = r.string()
        n_dims = r.take("I")
        dims = [r.take("Q") for _ in range(n_dims)]
        ttype, offset = r.take("I"), r.take("Q")
        tensors.append((name, dims, ttype, offset))
    align = int(meta.get("general.alignment", 32))
    data_start = (r.pos + align - 1) // align * align
    return version, meta, tensors, data_start


def tensor_bytes(dims, ttype):
    name, bs, bb, _ = TYPES[ttype]
    n = int(np.prod(dims))
    assert n % bs == 0, (dims, name)
    return n // bs * bb


def skeleton(src, dst):
    with open(src, "rb") as f:
        head = f.read(64 << 20)
    _, meta, tensors, data_start = parse(head)
    for name, dims, ttype, _ in tensors:
        if ttype not in TYPES:
            sys.exit(f"{name}: ggml type {ttype} not handled")
    with open(dst, "wb") as f:
        f.write(head[:data_start])
    print(f"{dst}: {data_start} bytes of header, {len(tensors)} tensors, "
          f"{sum(tensor_bytes(d, t) for _, d, t, _ in tensors)} bytes of weights")


def fill(skel, dst, seed):
    with open(skel, "rb") as f:
        head = f.read()
    _, meta, tensors, data_start = parse(head)
    assert data_start == len(head), "skeleton must end where the data section starts"
    rng = np.random.default_rng(seed)
    with open(dst, "wb") as f:
        f.write(head)
        pos = 0
        for name, dims, ttype, offset in sorted(tensors, key=lambda t: t[3]):
            tname, bs, bb, fields = TYPES[ttype]
            if offset > pos:
                f.write(b"\0" * (offset - pos))
                pos = offset
            n = int(np.prod(dims))
            if tname == "F32":
                if len(dims) == 1 and ("norm" in name):
                    arr = rng.uniform(0.8, 1.2, n).astype("<f4")
                else:
                    arr = rng.normal(0.0, 0.02, n).astype("<f4")
                buf = arr.tobytes()
            elif tname in ("F16", "BF16"):
                arr = rng.normal(0.0, 0.02, n).astype(np.float32)
                if tname == "F16":
                    buf = arr.astype("<f2").tobytes()
                else:
                    buf = (arr.view(np.uint32) >> 16).astype("<u2").tobytes()
            else:
                blocks = rng.integers(0, 256, size=(n // bs, bb), dtype=np.uint8)
                for at, kind in fields:
                    lo, hi = SCALE_RANGE[kind]
                    scale = rng.uniform(lo, hi, n // bs).astype("<f2")
                    blocks[:, at:at + 2] = scale.view(np.uint8).reshape(-1, 2)
                buf = blocks.tobytes()
            assert len(buf) == tensor_bytes(dims, ttype)
            f.write(buf)
            pos += len(buf)
    print(f"{dst}: {len(tensors)} tensors of random weights (seed {seed}), {meta.get('general.architecture')}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("skeleton")
    s.add_argument("model")
    s.add_argument("out")
    f = sub.add_parser("fill")
    f.add_argument("skeleton")
    f.add_argument("out")
    f.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    if a.cmd == "skeleton":
        skeleton(a.model, a.out)
    else:
        fill(a.skeleton, a.out, a.seed)


if __name__ == "__main__":
    main()
