// AMX-BF16 kernels for prefill (many tokens per weight row). The tokens are converted once
// per call to bf16, in the pair-interleaved layout TDPBF16PS takes for its second operand; a
// panel of 32 weight rows is decoded once to bf16 tile blocks and multiplied with the tokens 32
// at a time: 2 x 2 tiles of 16 rows x 16 tokens, fp32 accumulators in tile registers.
//
// Why bf16 and not int8 tiles: k-quants scale every 16 or 32 values, so an int8 tile product
// would need a float fix-up of all 256 outputs every 32 values. Decoded bf16 weights carry
// their scales and minimums, so one tile accumulates a whole row with no fix-ups; and bf16
// activations (8 mantissa bits, full exponent) are more precise than the 8-bit block
// quantization the VNNI path uses. The panel decode goes through DequantizeValues, so every
// quantized format takes this path; its cost is shared by all tokens of the call.
#include "kernels/cpu/matmul_internal.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>

#include "kernels/cpu/amx.h"
#include "kernels/cpu/dequant.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define TQLM_HAVE_AMX_KERNELS 1
#include <immintrin.h>
#else
#define TQLM_HAVE_AMX_KERNELS 0
#endif

namespace tqlm::kernels::internal {

namespace {

bool IsFloatType(TensorType t) {
  return t == TensorType::kF32 || t == TensorType::kF16 || t == TensorType::kBF16;
}

}  // namespace

bool HaveAmxKernels() {
  static const bool have = [] {
    // TQLM_NO_AMX=1 forces the VNNI / portable paths (for tests and comparisons).
    const char* off = std::getenv("TQLM_NO_AMX");
    return !(off != nullptr && off[0] == '1') && TQLM_HAVE_AMX_KERNELS && AmxBf16Available();
  }();
  return have;
}

// Float weights keep their exact paths; bf16 would drop mantissa bits they have.
bool AmxSupports(TensorType type) {
  return HaveAmxKernels() && !IsFloatType(type) && DequantizeSupports(type);
}

#if TQLM_HAVE_AMX_KERNELS

#define TQLM_AMX __attribute__((target("amx-tile,amx-bf16,avx512f,avx512bw,avx512bf16")))

namespace {

constexpr int64_t kK = 32;  // bf16 values in one tile row (64 bytes)

// Dword offsets kk * 16 (kk = 0..15): one dword per row of a 16 x 16-dword tile block.
TQLM_AMX inline __m512i ScatterIndex() {
  return _mm512_mullo_epi32(_mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
                            _mm512_set1_epi32(kAmxTile));
}

// Values [c, c + 32) of a float row as 16 dwords, each a pair of bf16 (round to nearest even);
// values at or past `n` read as zero.
TQLM_AMX inline __m512i Bf16Pairs(const float* row, int64_t c, int64_t n) {
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

// The tokens in TDPBF16PS's second-operand layout, one 1 KB block per 16 tokens and 32
// columns: x[tile][kb][kk][t] is a dword holding columns 32kb + 2kk, +1 of token 16tile + t.
// A tile load is then one contiguous 1 KB read.
TQLM_AMX void PrepareActivations(const float* x, int n_tokens, int64_t cols, AmxActs* out) {
  out->n_tokens = n_tokens;
  out->cols = cols;
  out->padded_cols = (cols + kK - 1) / kK * kK;
  out->padded_tokens = (n_tokens + 2 * kAmxTile - 1) / (2 * kAmxTile) * (2 * kAmxTile);
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
TQLM_AMX void DecodePanel(TensorType type, const uint8_t* w, size_t row_bytes, int64_t cols,
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

TQLM_AMX void PanelTimesTokens(const uint16_t* panel, int64_t kp, const AmxActs& act,
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

// y[t * y_stride + j] = acc[j * tp + t] for t < n_tokens, j < nr <= 32: one token's 32 outputs
// are gathered from the accumulator (L1-resident) and written as one contiguous run.
TQLM_AMX void StoreTransposed(const float* acc, int tp, int n_tokens, int nr, float* y,
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

TQLM_AMX void MatMulRows(TensorType type, const uint8_t* w, size_t row_bytes, int64_t rows,
                         int64_t r0, int64_t r1, const AmxActs& act, float* y) {
  thread_local std::vector<uint16_t> panel;
  thread_local std::vector<float> row, acc;
  const int64_t kp = act.padded_cols;
  const int tp = act.padded_tokens;
  panel.resize(size_t(kp) * 2 * kAmxTile);
  row.resize(size_t(kp));
  acc.resize(size_t(tp) * 2 * kAmxTile);
  AmxTileConfig cfg;
  for (int i = 0; i < 8; ++i) {
    cfg.rows[i] = kAmxTile;
    cfg.colsb[i] = 64;
  }
  _tile_loadconfig(&cfg);
  for (int64_t p0 = r0; p0 < r1; p0 += 2 * kAmxTile) {
    const int64_t p1 = std::min(r1, p0 + 2 * kAmxTile);
    DecodePanel(type, w, row_bytes, act.cols, kp, p0, p1, panel.data(), row.data());
    PanelTimesTokens(panel.data(), kp, act, acc.data());
    StoreTransposed(acc.data(), tp, act.n_tokens, int(p1 - p0), y + p0, size_t(rows));
  }
  _tile_release();
}

}  // namespace

void AmxPrepare(const float* x, int n_tokens, int64_t cols, AmxActs* out) {
  PrepareActivations(x, n_tokens, cols, out);
}

void AmxMatMul(TensorType type, const uint8_t* w, size_t row_bytes, int64_t rows, int64_t r0,
               int64_t r1, const AmxActs& act, float* y) {
  MatMulRows(type, w, row_bytes, rows, r0, r1, act, y);
}

#else  // !TQLM_HAVE_AMX_KERNELS

void AmxPrepare(const float*, int, int64_t, AmxActs*) {}
void AmxMatMul(TensorType, const uint8_t*, size_t, int64_t, int64_t, int64_t, const AmxActs&,
               float*) {}

#endif

}  // namespace tqlm::kernels::internal
