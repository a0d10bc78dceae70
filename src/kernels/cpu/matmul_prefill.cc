// Prefill kernels (many tokens per weight row). A panel of 32 weight rows is decoded once per
// call and multiplied with the tokens 32 at a time, by one of three engines:
//  - AMX tiles: the panel and the tokens as bf16 (tokens in the pair-interleaved layout
//    TDPBF16PS takes for its second operand); 2 x 2 tiles of 16 rows x 16 tokens.
//  - VNNI int16 (matmul_prefill_i16.cc), for Q4_K, Q5_K and Q6_K without AMX: each weight
//    as the int16 product of its integer sub-block scale and quant (|w| <= 4096), the
//    tokens in the 8-bit k-quant
//    activation format (one scale per 256 values, as the VNNI tiles and llama.cpp use) widened
//    to int16 pairs; VPDPWSSD sums a whole 256-value super-block in int32 exactly, so one float
//    fold per super-block (d x token scale; Q4_K/Q5_K minimums through 4 more VPDPWSSD against
//    the tokens' 32-block sums) is all the float work. Same numbers as the VNNI tiles up to
//    float summation order.
//  - AVX-512 FMAs, for the other quantized formats without AMX: the bf16 panel widened to
//    fp32, the tokens in fp32, each weight broadcast.
// The two vector engines keep 8 rows x 32 tokens of accumulators in zmm registers (16
// tokens per register, one broadcast per row). On a Sapphire Rapids VM without AMX, VPDPWSSD
// (32 MACs) and VFMADD231PS (16 MACs) both issue twice per cycle and VDPBF16PS (32 MACs) once
// per 2 cycles, hence int16 first, fp32 second and no bf16 vector engine (PERF_NOTES).
//
// Why not int8 products: k-quants scale every 16 or 32 values, so int8 sums would need a
// float fix-up of every output every 32 values; int16 weights carry the integer scales.
// Float panels go through DequantizeValues where no VNNI decoder exists, so every quantized
// format has an engine; the decode cost is shared by all tokens of the call.
#include "kernels/cpu/matmul_internal.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <limits>

#include "kernels/cpu/amx.h"
#include "kernels/cpu/dequant.h"
#include "kernels/cpu/matmul_prefill_common.h"

namespace tqlm::kernels::internal {

namespace {

bool IsFloatType(TensorType t) {
  return t == TensorType::kF32 || t == TensorType::kF16 || t == TensorType::kBF16;
}

bool EnvOff(const char* name) {
  const char* v = std::getenv(name);
  return v != nullptr && v[0] == '1';
}

}  // namespace

// TQLM_NO_AMX=1 / TQLM_NO_FMA_PREFILL=1 turn an engine off (for tests and comparisons); with
// both off, prefill takes the VNNI / portable paths.
bool HaveAmxKernels() {
  static const bool have = !EnvOff("TQLM_NO_AMX") && TQLM_HAVE_PREFILL_KERNELS && AmxBf16Available();
  return have;
}

bool HaveAvx512FmaKernels() {
  static const bool have =
      !EnvOff("TQLM_NO_FMA_PREFILL") && TQLM_HAVE_PREFILL_KERNELS && Avx512Bf16Available();
  return have;
}

bool HaveVnniI16Kernels() {
  static const bool have = !EnvOff("TQLM_NO_I16_PREFILL") && HaveVnniKernels();
  return have;
}

bool PrefillSupports(PrefillEngine engine, TensorType type) {
  if (IsFloatType(type) || !DequantizeSupports(type)) return false;
  switch (engine) {
    case PrefillEngine::kAmxTiles: return HaveAmxKernels();
    case PrefillEngine::kVnniI16:
      return HaveVnniI16Kernels() && (type == TensorType::kQ4_K || type == TensorType::kQ5_K ||
                                      type == TensorType::kQ6_K);
    case PrefillEngine::kAvx512Fma: return HaveAvx512FmaKernels();
    case PrefillEngine::kNone: break;
  }
  return false;
}

// The one prefill engine whose results are those of the VNNI tiles bit for bit: the int16
// engine for k-quants (both compute the integer-first sums of matmul_vnni_kquant.cc). Other
// formats stay on the tiles for every token count, so a token's outputs never depend on how
// many tokens share the call (issue 22). From 16 tokens the int16 engine costs less than the
// tiles (bench_matmul qwen_up_prefill16/32, PERF_NOTES).
PrefillEngine PrefillEngineFor(TensorType type, int n_tokens) {
  if (n_tokens >= 16 && PrefillSupports(PrefillEngine::kVnniI16, type)) {
    return PrefillEngine::kVnniI16;
  }
  return PrefillEngine::kNone;
}

#if TQLM_HAVE_PREFILL_KERNELS

#define TQLM_BF16 __attribute__((target("avx512f,avx512bw,avx512bf16")))
#define TQLM_AMX __attribute__((target("amx-tile,amx-bf16,avx512f,avx512bw,avx512bf16")))

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

using prefill::kVecRows;
using prefill::ScatterIndex;
using prefill::StoreTransposed;

namespace {

constexpr int64_t kK = 32;  // bf16 values in one tile row (64 bytes)

// Values [c, c + 32) of a float row as 16 dwords, each a pair of bf16 (round to nearest even);
// values at or past `n` read as zero.
TQLM_BF16 inline __m512i Bf16Pairs(const float* row, int64_t c, int64_t n) {
  const int64_t left = n - c;
  __m512 lo, hi;
  if (left >= kK) {
    lo = _mm512_loadu_ps(row + c);
    hi = _mm512_loadu_ps(row + c + 16);
  } else {
    const int64_t l0 = std::clamp<int64_t>(left, 0, 16), l1 = std::clamp<int64_t>(left - 16, 0, 16);
    lo = _mm512_maskz_loadu_ps(__mmask16((1u << l0) - 1), row + c);
    hi = _mm512_maskz_loadu_ps(__mmask16((1u << l1) - 1), row + c + 16);
  }
  return reinterpret_cast<__m512i>(_mm512_cvtne2ps_pbh(hi, lo));
}

// The tokens as fp32 for the FMA engine: xf[tile][c][t] is column c of token 16 tile + t, so
// a column of a 16-token tile is one 64-byte load.
TQLM_BF16 void PrepareActivationsFp32(const float* x, int n_tokens, int64_t cols,
                                      PrefillActs* out) {
  out->xf.resize(size_t(out->padded_tokens) * size_t(out->padded_cols));
  const __m512i idx = _mm512_mullo_epi32(
      _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
      _mm512_set1_epi32(int(cols)));
  for (int tile = 0; tile < out->padded_tokens / kAmxTile; ++tile) {
    const int left = n_tokens - tile * kAmxTile;
    const __mmask16 m = __mmask16(left >= 16 ? 0xffff : left <= 0 ? 0 : (1u << left) - 1);
    const float* xt = x + size_t(tile) * kAmxTile * size_t(cols);
    float* dst = out->xf.data() + size_t(tile) * size_t(out->padded_cols) * kAmxTile;
    for (int64_t c = 0; c < out->padded_cols; ++c) {
      const __m512 v = c < cols ? _mm512_mask_i32gather_ps(_mm512_setzero_ps(), m, idx, xt + c, 4)
                                : _mm512_setzero_ps();
      _mm512_storeu_ps(dst + size_t(c) * kAmxTile, v);
    }
  }
}

// The tokens in TDPBF16PS's second-operand layout, one 1 KB block per 16 tokens and 32
// columns: x[tile][kb][kk][t] is a dword holding columns 32kb + 2kk, +1 of token 16tile + t.
// A tile load is then one contiguous 1 KB read.
TQLM_BF16 void PrepareActivations(const float* x, int n_tokens, int64_t cols, bool f32,
                                  PrefillActs* out) {
  out->n_tokens = n_tokens;
  out->cols = cols;
  out->padded_cols = (cols + kK - 1) / kK * kK;
  out->padded_tokens = (n_tokens + 2 * kAmxTile - 1) / (2 * kAmxTile) * (2 * kAmxTile);
  if (f32) {
    PrepareActivationsFp32(x, n_tokens, cols, out);
    return;
  }
  const int64_t nkb = out->padded_cols / kK;
  out->x.resize(size_t(out->padded_tokens) * size_t(out->padded_cols));
  auto* base = reinterpret_cast<uint32_t*>(out->x.data());
  const __m512i idx = ScatterIndex();
  for (int t = 0; t < out->padded_tokens; ++t) {
    uint32_t* dst = base + size_t(t / kAmxTile) * size_t(nkb) * 256 + size_t(t % kAmxTile);
    const float* xt = x + size_t(t) * size_t(cols);
    const int64_t n = t < n_tokens ? cols : 0;
    for (int64_t kb = 0; kb < nkb; ++kb) {
      _mm512_i32scatter_epi32(dst + kb * 256, idx, Bf16Pairs(xt, kb * kK, n), 4);
    }
  }
}

// Rows [r0, r0 + 32) (zeros past r1) as bf16, one 1 KB tile block per 16 rows and 32 columns:
// panel[h][kb][n][32 values] of row 16h + n, which is TDPBF16PS's first-operand layout.
TQLM_BF16 void DecodePanel(TensorType type, const uint8_t* w, size_t row_bytes, int64_t cols,
                          int64_t kp, int64_t r0, int64_t r1, uint16_t* panel, float* row) {
  const int64_t nkb = kp / kK;
  for (int i = 0; i < 2 * kAmxTile; ++i) {
    const int64_t r = r0 + i;
    uint16_t* dst =
        panel + (size_t(i / kAmxTile) * size_t(nkb) * kAmxTile + size_t(i % kAmxTile)) * kK;
    const size_t stride = size_t(kAmxTile) * kK;
    int64_t n = 0;
    if (r < r1) {
      if (kp == cols &&
          VnniDecodeRowBf16(type, w + size_t(r) * row_bytes, row_bytes, nkb, dst, stride)) {
        continue;
      }
      DequantizeValues(type, w + size_t(r) * row_bytes, cols, row);
      n = cols;
    }
    for (int64_t kb = 0; kb < nkb; ++kb) {
      _mm512_storeu_si512(dst + size_t(kb) * stride, Bf16Pairs(row, kb * kK, n));
    }
  }
}

// acc[j * padded_tokens + t] = sum_k row (r0 + j)[k] * token t [k], j < 32, over all padded
// tokens. Columns go in blocks of kKBlock tile columns so the panel's part (2 x kKBlock KB)
// stays in L1 while every token pair streams past it; the accumulator tiles go back to acc
// between blocks.
constexpr int64_t kKBlock = 8;

TQLM_AMX void PanelTimesTokensAmx(const uint16_t* panel, int64_t kp, const PrefillActs& act,
                               float* acc) {
  const int64_t nkb = kp / kK;
  const int tp = act.padded_tokens;
  const size_t c_stride = size_t(tp) * sizeof(float);
  const size_t block = size_t(kAmxTile) * kK;  // bf16 values in one 1 KB tile block
  const uint16_t* a0 = panel;
  const uint16_t* a1 = panel + size_t(nkb) * block;
  for (int64_t kb0 = 0; kb0 < nkb; kb0 += kKBlock) {
    const int64_t kb1 = std::min(nkb, kb0 + kKBlock);
    for (int t0 = 0; t0 < tp; t0 += 2 * kAmxTile) {
      float* c00 = acc + t0;
      float* c01 = c00 + kAmxTile;
      float* c10 = c00 + size_t(kAmxTile) * size_t(tp);
      float* c11 = c10 + kAmxTile;
      if (kb0 == 0) {
        _tile_zero(0);
        _tile_zero(1);
        _tile_zero(2);
        _tile_zero(3);
      } else {
        _tile_loadd(0, c00, c_stride);
        _tile_loadd(1, c01, c_stride);
        _tile_loadd(2, c10, c_stride);
        _tile_loadd(3, c11, c_stride);
      }
      const uint16_t* b0 = act.x.data() + size_t(t0 / kAmxTile) * size_t(nkb) * block;
      const uint16_t* b1 = b0 + size_t(nkb) * block;
      for (int64_t kb = kb0; kb < kb1; ++kb) {
        _tile_loadd(4, a0 + size_t(kb) * block, 64);
        _tile_loadd(5, a1 + size_t(kb) * block, 64);
        _tile_loadd(6, b0 + size_t(kb) * block, 64);
        _tile_loadd(7, b1 + size_t(kb) * block, 64);
        _tile_dpbf16ps(0, 4, 6);
        _tile_dpbf16ps(1, 4, 7);
        _tile_dpbf16ps(2, 5, 6);
        _tile_dpbf16ps(3, 5, 7);
      }
      _tile_stored(0, c00, c_stride);
      _tile_stored(1, c01, c_stride);
      _tile_stored(2, c10, c_stride);
      _tile_stored(3, c11, c_stride);
    }
  }
}

// 16 bf16 values widened to fp32 (bf16 is the top half of an fp32).
TQLM_BF16 inline __m512 WidenBf16(const uint16_t* v) {
  const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(v));
  // The maskz forms: GCC 12 flags the plain ones' undefined pass-through as uninitialized.
  return _mm512_castsi512_ps(
      _mm512_maskz_slli_epi32(0xffff, _mm512_maskz_cvtepu16_epi32(0xffff, h), 16));
}

// fp32 FMA engine: the bf16 panel widened to fp32 rows (pf[j * kp + k]), 16 tokens' column
// k in one zmm, each weight broadcast; 8 rows x 32 tokens of accumulators.
TQLM_BF16 void PanelTimesTokensFma(const uint16_t* panel, int64_t kp, const PrefillActs& act,
                                   float* acc) {
  thread_local std::vector<float> pf;
  const int64_t nkb = kp / kK;
  const int tp = act.padded_tokens;
  pf.resize(size_t(kp) * kAmxPanelRows);
  for (int j = 0; j < kAmxPanelRows; ++j) {
    const uint16_t* src =
        panel + (size_t(j / kAmxTile) * size_t(nkb) * kAmxTile + size_t(j % kAmxTile)) * kK;
    float* dst = pf.data() + size_t(j) * size_t(kp);
    for (int64_t kb = 0; kb < nkb; ++kb) {
      const uint16_t* v = src + size_t(kb) * kAmxTile * kK;
      _mm512_storeu_ps(dst + size_t(kb) * kK, WidenBf16(v));
      _mm512_storeu_ps(dst + size_t(kb) * kK + 16, WidenBf16(v + 16));
    }
  }
  constexpr int64_t kKB = 4;  // column blocks per pass: 16 KB of panel + 16 KB of tokens
  for (int64_t kb0 = 0; kb0 < nkb; kb0 += kKB) {
    const int64_t kb1 = std::min(nkb, kb0 + kKB);
    for (int t0 = 0; t0 < tp; t0 += 2 * kAmxTile) {
      const float* x0 = act.xf.data() + size_t(t0) * size_t(kp);
      const float* x1 = x0 + size_t(kAmxTile) * size_t(kp);
      for (int j0 = 0; j0 < kAmxPanelRows; j0 += kVecRows) {
        const float* a = pf.data() + size_t(j0) * size_t(kp);
        float* c = acc + size_t(j0) * size_t(tp) + size_t(t0);
        __m512 c0[kVecRows], c1[kVecRows];
        for (int r = 0; r < kVecRows; ++r) {
          c0[r] = kb0 == 0 ? _mm512_setzero_ps() : _mm512_loadu_ps(c + size_t(r) * size_t(tp));
          c1[r] = kb0 == 0 ? _mm512_setzero_ps()
                           : _mm512_loadu_ps(c + size_t(r) * size_t(tp) + kAmxTile);
        }
        for (int64_t k = kb0 * kK; k < kb1 * kK; ++k) {
          const __m512 b0 = _mm512_loadu_ps(x0 + size_t(k) * kAmxTile);
          const __m512 b1 = _mm512_loadu_ps(x1 + size_t(k) * kAmxTile);
#pragma GCC unroll 8
          for (int r = 0; r < kVecRows; ++r) {
            const __m512 wr = _mm512_set1_ps(a[size_t(r) * size_t(kp) + size_t(k)]);
            c0[r] = _mm512_fmadd_ps(wr, b0, c0[r]);
            c1[r] = _mm512_fmadd_ps(wr, b1, c1[r]);
          }
        }
        for (int r = 0; r < kVecRows; ++r) {
          _mm512_storeu_ps(c + size_t(r) * size_t(tp), c0[r]);
          _mm512_storeu_ps(c + size_t(r) * size_t(tp) + kAmxTile, c1[r]);
        }
      }
    }
  }
}

// Rows [r0, r1) in panels of 32: decode, multiply with all tokens, write out transposed.
template <void (*Product)(const uint16_t*, int64_t, const PrefillActs&, float*)>
TQLM_BF16 void PanelLoop(TensorType type, const uint8_t* w, size_t row_bytes, int64_t rows,
                         int64_t r0, int64_t r1, const PrefillActs& act, float* y) {
  thread_local std::vector<uint16_t> panel;
  thread_local std::vector<float> row, acc;
  const int64_t kp = act.padded_cols;
  const int tp = act.padded_tokens;
  panel.resize(size_t(kp) * kAmxPanelRows);
  row.resize(size_t(kp));
  acc.resize(size_t(tp) * kAmxPanelRows);
  for (int64_t p0 = r0; p0 < r1; p0 += kAmxPanelRows) {
    const int64_t p1 = std::min(r1, p0 + kAmxPanelRows);
    DecodePanel(type, w, row_bytes, act.cols, kp, p0, p1, panel.data(), row.data());
    Product(panel.data(), kp, act, acc.data());
    StoreTransposed(acc.data(), tp, act.n_tokens, int(p1 - p0), y + p0, size_t(rows));
  }
}

TQLM_AMX void MatMulRowsAmx(TensorType type, const uint8_t* w, size_t row_bytes, int64_t rows,
                            int64_t r0, int64_t r1, const PrefillActs& act, float* y) {
  AmxTileConfig cfg;
  for (int i = 0; i < 8; ++i) {
    cfg.rows[i] = kAmxTile;
    cfg.colsb[i] = 64;
  }
  _tile_loadconfig(&cfg);
  PanelLoop<PanelTimesTokensAmx>(type, w, row_bytes, rows, r0, r1, act, y);
  _tile_release();
}

}  // namespace

void PrefillPrepare(PrefillEngine engine, const float* x, int n_tokens, int64_t cols,
                    PrefillActs* out) {
  if (engine == PrefillEngine::kVnniI16) {
    out->n_tokens = n_tokens;
    out->cols = out->padded_cols = cols;
    out->padded_tokens = (n_tokens + 2 * kAmxTile - 1) / (2 * kAmxTile) * (2 * kAmxTile);
    prefill::PrepareActivationsI16(x, n_tokens, cols, out);
    return;
  }
  PrepareActivations(x, n_tokens, cols, engine == PrefillEngine::kAvx512Fma, out);
}

void PrefillMatMul(PrefillEngine engine, TensorType type, const uint8_t* w, size_t row_bytes,
                   int64_t rows, int64_t r0, int64_t r1, const PrefillActs& act, float* y) {
  if (engine == PrefillEngine::kAmxTiles) {
    MatMulRowsAmx(type, w, row_bytes, rows, r0, r1, act, y);
  } else if (engine == PrefillEngine::kVnniI16) {
    prefill::MatMulRowsI16(type, w, row_bytes, rows, r0, r1, act, y);
  } else if (engine == PrefillEngine::kAvx512Fma) {
    PanelLoop<PanelTimesTokensFma>(type, w, row_bytes, rows, r0, r1, act, y);
  }
}

#else  // !TQLM_HAVE_PREFILL_KERNELS

void PrefillPrepare(PrefillEngine, const float*, int, int64_t, PrefillActs*) {}
void PrefillMatMul(PrefillEngine, TensorType, const uint8_t*, size_t, int64_t, int64_t, int64_t,
                   const PrefillActs&, float*) {}

#endif

}  // namespace tqlm::kernels::internal
