#!/usr/bin/env python3
"""Mutation checks: proof that the test suite catches broken kernels.

Each mutation is one small, deliberate bug (a flipped code, a dropped centering, two swapped
codebook levels, a wrong sign, an off-by-one, a wrong scale, ...) applied to one source file.
For each: apply it, build tqlm_tests, run the tests named for it, expect at least one to
FAIL, then restore the file (always, also on Ctrl-C). The table of mutation -> tests that
caught it is printed as markdown (docs/TESTING.md holds the last run's).

  scripts/mutation_check.py                  # every mutation (~1-2 min each on 2 cores)
  scripts/mutation_check.py --only NAME ...  # some
  scripts/mutation_check.py --list
Builds in build-mutation/ (ccache makes the first build cheap after build/), so build/ is
left alone. Exit status 1 if any mutation survived (no test failed) or did not apply.
"""
import argparse
import os
import re
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class Mutation:
    def __init__(self, name, path, old, new, tests, what, env=None):
        self.name, self.path, self.old, self.new = name, path, old, new
        self.tests, self.what, self.env = tests, what, env or {}


M = Mutation
MUTATIONS = [
    # TurboQuant KV blocks (src/kv/block_format_turbo.cc)
    M("tq-flip-one-code", "src/kv/block_format_turbo.cc",
      "const int code = ok ? cb.Quantize(float(y[j] / norm)) : 0;",
      "const int code = ok ? cb.Quantize(float(y[j] / norm)) ^ int(t == 7 && j == 3) : 0;",
      "*TurboReference*:*KvCacheTurbo*",
      "KV block encoder: lowest bit of one code (token 7, coordinate 3) flipped"),
    M("tq-drop-centering", "src/kv/block_format_turbo.cc",
      "if (!centered_ || !finite) return;", "if (true) return;",
      "*TurboReference*:*KvCacheTurbo*",
      "KV block encoder: keys never centered"),
    M("tq-always-center", "src/kv/block_format_turbo.cc",
      "if (EncodeAround(rot.data(), center.data(), alt.data()) < plain_error)",
      "if (EncodeAround(rot.data(), center.data(), alt.data()) < plain_error || true)",
      "*TurboReference*:*KvCacheTurbo*",
      "KV block encoder: keys always centered (the choice ignored)"),
    M("tq-swap-int8-levels", "src/kv/block_format_turbo.cc",
      "tables_.hi[c] = int8_t(std::lrint(cb_hi.levels[c] / tables_.cb_scale));",
      "tables_.hi[c] = int8_t(std::lrint(cb_hi.levels[c ^ int(c < 2)] / tables_.cb_scale));",
      "*TurboReference*:*KvCacheTurbo*",
      "KV attention tables: int8 levels 0 and 1 swapped"),
    M("tq-pack-off-by-one", "src/kv/block_format_turbo.cc",
      "case 2: u[p % 16] |= uint8_t((c & 3) << (2 * (p / 16))); break;",
      "case 2: u[(p + 1) % 16] |= uint8_t((c & 3) << (2 * (p / 16))); break;",
      "*TurboReference*:*KvCacheTurbo*",
      "KV block packing: 2-bit (and 3-bit low-plane) codes written one byte off"),
    M("tq-norm-saturation", "src/kv/block_format_turbo.cc",
      "kernels::F32ToF16(ok ? std::min(norm, kF16Max) : 0.0f)",
      "kernels::F32ToF16(ok ? norm : 0.0f)",
      "*TurboReference*",
      "KV block norms: no saturation at 65504 (inf norms)"),
    M("tq-vnni-weight-scale", "src/kernels/cpu/attention_tq_vnni.inc",
      "*scale = wmax * (tb.cb_scale / 255.0f);",
      "*scale = wmax * (tb.cb_scale / 254.0f);",
      "*TqKernels*:*TurboReference*",
      "AVX-512 VNNI/VBMI TurboQuant accumulate: weight scale 1/254 for 1/255"),
    # Codec (src/codec)
    M("lloyd-max-swap-levels", "src/codec/lloyd_max.cc",
      "cb->levels.assign(s.levels.begin(), s.levels.end());",
      "cb->levels.assign(s.levels.begin(), s.levels.end());\n    std::swap(cb->levels[0], cb->levels[1]);",
      "CodecLloydMax*:*TurboReference*",
      "Lloyd-Max codebook: levels 0 and 1 swapped"),
    M("codec-flip-one-code", "src/codec/turboquant_codec.cc",
      "      uint8_t* codes = o + l.codes_offset;",
      "      idx[3] ^= 1;\n      uint8_t* codes = o + l.codes_offset;",
      "CodecRoundTrip*:CodecDot*",
      "codec encoder: lowest bit of coordinate 3's index flipped"),
    M("rotation-butterfly-sign", "src/codec/rotation_hwy.cc",
      "      v[k + h] = hn::Sub(a, b);", "      v[k + h] = hn::Sub(b, a);",
      "CodecRotation*:*SimdTarget.CodecScaledFwht*:*TurboReference*",
      "rotation (Walsh-Hadamard) kernel: a register butterfly's sign reversed"),
    M("bitpack-off-by-one", "src/codec/bitpack.cc",
      "const uint64_t packed = _pext_u64(w, mask);",
      "const uint64_t packed = _pext_u64(w, mask) << 1;",
      "CodecBitPack*:CodecRoundTrip*",
      "codec bit packing (BMI2): indices shifted one bit"),
    M("normalize-underflow", "src/codec/kernels_hwy.cc",
      "if (!(sq < 1e36) || sq < double(n) * 0x1p-100) {", "if (!(sq < 1e36)) {",
      "*SimdTarget.CodecNormalize*",
      "codec Normalize: float squares that underflow not redone in double"),
    M("quantize-indices-ties", "src/codec/kernels_hwy.cc",
      "count = hn::Sub(count, hn::VecFromMask(du, hn::RebindMask(du, hn::Gt(v, thr[k]))));",
      "count = hn::Sub(count, hn::VecFromMask(du, hn::RebindMask(du, hn::Ge(v, thr[k]))));",
      "*SimdTarget.CodecQuantizeIndices*",
      "codec QuantizeIndices (b <= 4): a value equal to a threshold counted as above it"),
    # Attention over full-precision blocks (src/kernels/cpu/attention_raw.cc)
    M("attn-scores-skip-last-token", "src/kernels/cpu/attention_raw.cc",
      "  for (; t < n_tok; ++t) {\n    const T* k0 = k + size_t(t) * d;",
      "  for (; t + 1 < n_tok; ++t) {\n    const T* k0 = k + size_t(t) * d;",
      "*SimdTarget.AttnScores*:AttnRaw*",
      "attention scores (row-major K): an odd block's last token skipped"),
    M("softmax-nan-dropped-avx512", "src/kernels/cpu/attention_raw.cc",
      "_CMP_NLT_UQ", "_CMP_GE_OQ",
      "*SimdTarget.AttnSoftmax*",
      "softmax 2^x on AVX-512: NaN scores flushed to weight 0"),
    M("softmax-exp2-coefficient-non-avx512", "src/kernels/cpu/attention_raw.cc",
      "  const VF n = hn::Floor(hn::Max(x, hn::Set(df, -127.0f)));\n  const VF f = hn::Sub(x, n);",
      "  const VF n = hn::Floor(hn::Max(x, hn::Set(df, -127.0f)));\n  const VF f = hn::Mul(hn::Sub(x, n), hn::Set(df, 1.0001f));",
      "*SimdTarget.AttnSoftmax*:AttnSoftmax*",
      "softmax 2^x on AVX2/SSE4/SSSE3/scalar only: fraction scaled by 1.0001"),
    M("f16-inf-non-f16c", "src/kernels/cpu/attention_raw.cc",
      "hn::Or(mag, hn::Set(du, 0x7f800000u))", "hn::Or(mag, hn::Set(du, 0x47800000u))",
      "*SimdTarget.Attn*",
      "f16 K/V load without F16C (SSE4/SSSE3/scalar): inf/NaN read as finite"),
    # ops.cc
    M("rmsnorm-offset-ignored", "src/kernels/cpu/ops.cc",
      "for (int i = 0; i < d; ++i) o[i] = xr[i] * s * (weight[i] + weight_offset);",
      "for (int i = 0; i < d; ++i) o[i] = xr[i] * s * weight[i];",
      "*OpsReference*:Ops.*",
      "RmsNorm: Gemma's weight offset (1 + w) ignored"),
    M("rmsnorm-zero-row", "src/kernels/cpu/ops.cc",
      "    if (ms == 0) {", "    if (ms == -1) {",
      "*OpsReference*",
      "RmsNorm: zero row with eps = 0 gives 0/0"),
    M("rope-partial-pairs", "src/kernels/cpu/ops.cc",
      "const int i1 = neox ? i + half : 2 * i + 1;",
      "const int i1 = neox ? i + head_dim / 2 : 2 * i + 1;",
      "*OpsReference*:Ops.*",
      "RoPE NeoX: pairs (i, i + head_dim/2) instead of (i, i + rot_dim/2): partial rotary dims"),
    M("gelu-coefficient", "src/kernels/cpu/ops.cc", "0.044715f", "0.04715f",
      "*OpsReference*:Gemma3.TeacherForced*", "GeluMul: cubic coefficient 0.04715"),
    M("rmsnorm-eps-dropped", "src/kernels/cpu/ops.cc",
      "const double ms = ss / d + eps;", "const double ms = ss / d + 0 * eps;",
      "*OpsReference*:SmolLM2.TeacherForced*:Gemma3.TeacherForced*",
      "RmsNorm: eps left out"),
    M("rope-frequency-off", "src/kernels/cpu/ops.cc",
      "const double angle = double(pos[t]) * inv_freq[i];",
      "const double angle = double(pos[t]) * inv_freq[i] * 1.01;",
      "*OpsReference*:SmolLM2.TeacherForced*:Qwen25Coder.TeacherForced*",
      "RoPE: every frequency 1% high"),
    # Matmul (the lead's files, mutated only here, temporarily)
    M("dotrow-tail", "src/kernels/cpu/matmul_hwy.cc",
      "    for (c = main; c < cols; ++c) s += Loader::Scalar(w, c) * xt[k][c];",
      "    for (c = main; c + 1 < cols; ++c) s += Loader::Scalar(w, c) * xt[k][c];",
      "*SimdTarget.DotRow*:MatMul.*",
      "float matmul rows (Highway): the last tail column skipped"),
    M("vnni-q6k-scale", "src/kernels/cpu/matmul_vnni_kquant.cc",
      "      const __m128 d4 = Halves4<R>(blk, 208);",
      "      const __m128 d4 = _mm_mul_ps(Halves4<R>(blk, 208), _mm_set1_ps(1.001f));",
      "MatMul.*:MatMulInvariance.*",
      "integer-first Q6_K VNNI tiles (4-row tiles): super-block scale 0.1% high"),
    M("vnni-q4_0-offset", "src/kernels/cpu/matmul_vnni_decoders.h",
      "F == 0 ? -8.0f : -16.0f", "F == 0 ? -7.0f : -16.0f",
      "MatMul.*",
      "AVX-512 weight decoders: Q4_0 offset -7 for -8"),
    M("vnni-kquant-min", "src/kernels/cpu/matmul_vnni_kquant.cc",
      "f[r][k] = Fma(m, dx * -Half(b + 2), f[r][k]);",
      "f[r][k] = Fma(m, dx * Half(b + 2), f[r][k]);",
      "MatMul.*:MatMulInvariance.*",
      "integer-first k-quant VNNI tiles: Q4_K/Q5_K minimum added instead of subtracted"),
    M("rotation-inverse-signs", "src/codec/rotation.cc",
      "  kernels::ScaledFwht(out, scale1_.data(), true, out, d, b);",
      "  kernels::ScaledFwht(out, scale2_.data(), true, out, d, b);",
      "CodecRotation*:*TurboReference*:*KvCacheTurbo*",
      "inverse rotation (block dims): the second stage's signs used for the first"),
    M("dequant-q2k-min", "src/kernels/cpu/dequant.cc",
      "const float dl = d * float(sc & 0xF), ml = dmin * float(sc >> 4);",
      "const float dl = d * float(sc & 0xF), ml = dmin * float(sc >> 3);",
      "MatMul.*",
      "portable Q2_K dequantization: minimum from the wrong bits"),
    M("amx-tile-operand", "src/kernels/cpu/matmul_prefill_amx8.cc",
      "_tile_dpbssd(1, 5, 6);", "_tile_dpbssd(1, 5, 7);",
      "MatMul.*:MatMulAdversarial.*:MatMulInvariance.*",
      "AMX-INT8 prefill: one tile product with the wrong token tile"),
]


def run(cmd, env=None, quiet=True):
    full_env = dict(os.environ)
    full_env.update(env or {})
    p = subprocess.run(cmd, cwd=ROOT, env=full_env, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True)
    return p.returncode, p.stdout


def build(build_dir):
    rc, out = run(["cmake", "--build", build_dir, "-j", str(os.cpu_count() or 2),
                   "--target", "tqlm_tests"])
    return rc == 0, out


def summarize(failed, old_tests):
    """Per-target instances (Suite.Test/AVX2) grouped as Suite.Test/{AVX3,AVX2,...}; names of
    tests that existed before (old_tests) marked with a dagger."""
    groups = {}
    for name in failed:
        base, _, last = name.rpartition("/")
        if base and last.isupper():
            groups.setdefault(base, []).append(last)
        else:
            groups.setdefault(name, [])
    parts = []
    for base, targets in groups.items():
        label = base + ("/{" + ",".join(targets) + "}" if targets else "")
        if old_tests is not None and (base in old_tests or name_in(old_tests, base)):
            label += " †"
        parts.append(label)
    shown = parts[:6]
    more = len(parts) - len(shown)
    return ", ".join(shown) + (f" (+{more} more)" if more else "")


def name_in(names, base):
    # Parameterized tests: an old instance of the same test counts.
    return any(n.split("/")[0:2] == base.split("/")[0:2] for n in names if "/" in n)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build-dir", default="build-mutation")
    ap.add_argument("--only", nargs="*", help="names of mutations to run")
    ap.add_argument("--list", action="store_true")
    ap.add_argument("--old-tests", help="file of test names (Suite.Test, one a line) that existed "
                    "before the tests under review: those that fail are marked with a dagger")
    args = ap.parse_args()
    old_tests = None
    if args.old_tests:
        with open(args.old_tests) as f:
            old_tests = set(line.strip() for line in f if line.strip())
    todo = [m for m in MUTATIONS if not args.only or m.name in args.only]
    if args.list:
        for m in todo:
            print(f"{m.name:40s} {m.path}: {m.what}")
        return 0
    if not os.path.exists(os.path.join(ROOT, args.build_dir, "CMakeCache.txt")):
        rc, out = run(["cmake", "-S", ".", "-B", args.build_dir, "-DCMAKE_BUILD_TYPE=Release",
                       "-DTQLM_BENCH=OFF", "-DTQLM_CUDA=OFF"])
        if rc != 0:
            print(out)
            return 2
    ok, out = build(args.build_dir)  # unmutated baseline
    if not ok:
        print(out[-3000:])
        return 2
    rows, survived = [], 0
    for m in todo:
        path = os.path.join(ROOT, m.path)
        with open(path, encoding="utf-8") as f:
            original = f.read()
        if original.count(m.old) != 1:
            rows.append((m, "NOT APPLIED (pattern found %d times)" % original.count(m.old), 0))
            survived += 1
            continue
        t0 = time.time()
        try:
            with open(path, "w", encoding="utf-8") as f:
                f.write(original.replace(m.old, m.new))
            ok, out = build(args.build_dir)
            if not ok:
                rows.append((m, "build failed: " + out[-300:].replace("\n", " "), 0))
                survived += 1
                continue
            rc, out = run([os.path.join(args.build_dir, "tqlm_tests"),
                           "--gtest_filter=" + m.tests], env=m.env)
        finally:
            with open(path, "w", encoding="utf-8") as f:
                f.write(original)
        failed = sorted(set(re.findall(r"^\[  FAILED  \] (\S+?)(?:,| \(|$)", out, re.M)))
        ran = re.search(r"\[==========\] (\d+) tests? from", out)
        if rc != 0 and failed:
            rows.append((m, summarize(failed, old_tests), time.time() - t0))
        else:
            rows.append((m, "SURVIVED (%s tests ran, none failed)" % (ran.group(1) if ran else "?"), 0))
            survived += 1
        print(f"[mutation] {m.name}: {rows[-1][1][:200]}", file=sys.stderr, flush=True)
    build(args.build_dir)  # leave the build unmutated
    print("| mutation | file | what it breaks | tests that failed |")
    print("|---|---|---|---|")
    for m, result, _ in rows:
        print(f"| `{m.name}` | `{m.path}` | {m.what} | {result} |")
    print(f"\n{len(rows) - survived} of {len(rows)} mutations caught.")
    return 1 if survived else 0


if __name__ == "__main__":
    sys.exit(main())
