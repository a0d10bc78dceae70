// Prefill engines for k-quant weights (see matmul_internal.h for the two engines, and
// matmul_vnni_kquant.cc for the integer-first result all k-quant kernels compute bit for bit).
// A panel of 32 weight rows is decoded once per call and multiplied with the tokens 32 at a
// time; the accumulators go out transposed, one contiguous run of 32 outputs per token.
//
// Why not the faster-looking float engines this file had (AMX-BF16 tiles, AVX-512 FMAs): their
// rounding differs from the decode kernels', so a token's logits depended on how many tokens
// shared its matmul, and a prompt-cache hit changed greedy output (issue 22).
#include "kernels/cpu/matmul_internal.h"

#include <algorithm>
#include <cstdlib>

#include "kernels/cpu/amx.h"
#include "kernels/cpu/matmul_prefill_common.h"

namespace tqlm::kernels::internal {

namespace {

bool EnvOff(const char* name) {
  const char* v = std::getenv(name);
  return v != nullptr && v[0] == '1';
}

}  // namespace

// TQLM_NO_AMX=1 / TQLM_NO_I8_PREFILL=1 turn an engine off (for tests and comparisons); with
// both off, prefill takes the VNNI tiles.
bool HaveAmxKernels() {
  static const bool have = !EnvOff("TQLM_NO_AMX") && TQLM_HAVE_PREFILL_KERNELS &&
                           HaveVnniKernels() && AmxInt8Available();
  return have;
}

bool HaveVnniI8Kernels() {
  static const bool have = !EnvOff("TQLM_NO_I8_PREFILL") && HaveVnniKernels();
  return have;
}

bool PrefillSupports(PrefillEngine engine, TensorType type) {
  const bool kquant =
      type == TensorType::kQ4_K || type == TensorType::kQ5_K || type == TensorType::kQ6_K;
  switch (engine) {
    case PrefillEngine::kAmxInt8: return kquant && HaveAmxKernels();
    case PrefillEngine::kVnniI8: return kquant && HaveVnniI8Kernels();
    case PrefillEngine::kNone: break;
  }
  return false;
}

const char* PrefillEngineName(PrefillEngine engine) {
  switch (engine) {
    case PrefillEngine::kAmxInt8: return "amx-int8";
    case PrefillEngine::kVnniI8: return "vnni-i8";
    case PrefillEngine::kNone: break;
  }
  return "none";
}

// The engines pad to 32 tokens and decode a panel once per call, so they cost the same from 1
// to 32 tokens; the tiles grow with the count. Measured crossover with the VNNI int8 engine:
// ~20 tokens (bench_matmul qwen_up_prefill16/24/32 against TQLM_NO_I8_PREFILL=1, PERF_NOTES
// v3), which keeps speculative verification steps (up to 17 tokens) on the tiles.
constexpr int kPrefillEngineMinTokens = 20;

PrefillEngine PrefillEngineFor(TensorType type, int n_tokens) {
  if (n_tokens < kPrefillEngineMinTokens) return PrefillEngine::kNone;
  for (PrefillEngine e : kAllPrefillEngines) {
    if (PrefillSupports(e, type)) return e;
  }
  return PrefillEngine::kNone;
}

#if TQLM_HAVE_PREFILL_KERNELS

namespace prefill {

// y[t * y_stride + j] = acc[j * tp + t] for t < n_tokens, j < nr <= 32: one token's 32 outputs
// are gathered from the accumulator (L1-resident) and written as one contiguous run.
TQLM_PREFILL_BASE void StoreTransposed(const float* acc, int tp, int n_tokens, int nr, float* y,
                                       size_t y_stride) {
  const __m512i idx = _mm512_mullo_epi32(
      _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0), _mm512_set1_epi32(tp));
  const __mmask16 m0 = __mmask16((1u << std::min(nr, 16)) - 1);
  const __mmask16 m1 = __mmask16((1u << std::clamp(nr - 16, 0, 16)) - 1);
  const float* hi = acc + size_t(kAmxTile) * size_t(tp);
  for (int t = 0; t < n_tokens; ++t) {
    float* yt = y + size_t(t) * y_stride;
    _mm512_mask_storeu_ps(yt, m0, _mm512_mask_i32gather_ps(_mm512_setzero_ps(), m0, idx, acc + t, 4));
    if (m1 != 0) {
      _mm512_mask_storeu_ps(yt + kAmxTile, m1,
                            _mm512_mask_i32gather_ps(_mm512_setzero_ps(), m1, idx, hi + t, 4));
    }
  }
}

}  // namespace prefill

void PrefillPrepare(PrefillEngine engine, const float* x, int n_tokens, int64_t cols,
                    PrefillActs* out) {
  out->n_tokens = n_tokens;
  out->cols = cols;
  out->padded_tokens = (n_tokens + 2 * kAmxTile - 1) / (2 * kAmxTile) * (2 * kAmxTile);
  prefill::PrepareActivations(x, n_tokens, cols,
                              engine == PrefillEngine::kAmxInt8 ? prefill::ActLayout::kInt8Quads
                                                                : prefill::ActLayout::kUint8Quads,
                              out);
}

void PrefillMatMul(PrefillEngine engine, TensorType type, const uint8_t* w, size_t row_bytes,
                   int64_t rows, int64_t r0, int64_t r1, const PrefillActs& act, float* y) {
  if (engine == PrefillEngine::kAmxInt8) {
    prefill::MatMulRowsAmx8(type, w, row_bytes, rows, r0, r1, act, y);
  } else if (engine == PrefillEngine::kVnniI8) {
    prefill::MatMulRowsI8(type, w, row_bytes, rows, r0, r1, act, y);
  }
}

#else  // !TQLM_HAVE_PREFILL_KERNELS

void PrefillPrepare(PrefillEngine, const float*, int, int64_t, PrefillActs*) {}
void PrefillMatMul(PrefillEngine, TensorType, const uint8_t*, size_t, int64_t, int64_t, int64_t,
                   const PrefillActs&, float*) {}

#endif

}  // namespace tqlm::kernels::internal
