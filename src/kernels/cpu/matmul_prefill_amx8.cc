// The AMX-INT8 prefill engine for Q4_K, Q5_K and Q6_K weights: the integer-first sums of
// matmul_vnni_kquant.cc on the tile unit, folded by the same float steps (FoldSuperBlock) as
// the VNNI int8 engine, so its results are those of the decode tiles bit for bit.
//
// A super-block's sum I = sum_k w16_k * a_k needs the int16 products w16 = sc * q (Q6_K:
// sc * (q - 32)), which do not fit the tiles' int8 operands. Each is split into two int8
// planes, w16 = 2^s * hi + lo with lo in [0, 2^s) (s = 5 for Q4_K/Q5_K: 0 <= w16 <= 1953;
// s = 6 for Q6_K: |w16| <= 4096, hi in [-64, 64]); TDPBSSD sums each plane against the tokens'
// int8 values over the whole super-block (4 tile products of 64 columns), and
// I = 2^s * C_hi + C_lo exactly. Two planes cost twice the tile products of one, but the
// sub-block scales ride inside the weights: no per-sub-block store and integer multiply.
//
// Tiles: the panel's 16 rows x 64 columns of a plane (A, 0-15 rows in each tile row), the
// tokens as 16 quads of 4 columns per 64-byte row (B, TDPBSSD's second-operand layout, built
// by PrepareActivations), C = 16 rows x 16 tokens of int32.
#include "kernels/cpu/matmul_prefill_common.h"

#if TQLM_HAVE_PREFILL_KERNELS

#include <algorithm>
#include <vector>

#include "kernels/cpu/amx.h"

// GCC 12 flags the deliberately undefined pass-through lanes of its own shift and narrowing
// intrinsics (_mm512_undefined_*) as uninitialized: a known false positive in its headers.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif

#define TQLM_AMX8 \
  __attribute__((target("amx-tile,amx-int8,avx512f,avx512bw,avx512vl,avx512vnni")))

namespace tqlm::kernels::internal::prefill {

namespace {

constexpr int kStep = 64;  // columns per tile product

// Rows of pn as the two int8 planes: hi[j][c], lo[j][c] of w16[j][c] = 2^shift hi + lo.
TQLM_AMX8 void SplitPlanes(const PanelI16& pn, int64_t cols, int shift, int8_t* hi,
                           int8_t* lo) {
  const __m512i mask = _mm512_set1_epi16(int16_t((1 << shift) - 1));
  const __m128i sh = _mm_cvtsi32_si128(shift);
  const size_t n = size_t(cols) * kAmxPanelRows;
  for (size_t i = 0; i < n; i += 32) {
    const __m512i w = _mm512_loadu_si512(pn.w.data() + i);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(hi + i),
                        _mm512_cvtepi16_epi8(_mm512_sra_epi16(w, sh)));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(lo + i),
                        _mm512_cvtepi16_epi8(_mm512_and_si512(w, mask)));
  }
}

// acc[j * tp + t] for the panel's 32 rows and all padded tokens, super-block by super-block.
TQLM_AMX8 void PanelTimesTokensAmx8(const PanelI16& pn, const int8_t* hi, const int8_t* lo,
                                    int shift, bool has_mins, const PrefillActs& act,
                                    float* acc) {
  const int64_t cols = act.cols, nsb = act.super_blocks;
  const int tp = act.padded_tokens;
  alignas(64) int32_t c[4][kAmxTile][kAmxTile];  // hi/lo x two token tiles
  for (int t0 = 0; t0 < tp; t0 += 2 * kAmxTile) {
    const uint32_t* x0 = act.xq.data() + size_t(t0 / kAmxTile) * size_t(cols / 4) * kAmxTile;
    const uint32_t* x1 = x0 + size_t(cols / 4) * kAmxTile;
    for (int j0 = 0; j0 < kAmxPanelRows; j0 += kAmxTile) {
      const int8_t* a_hi = hi + size_t(j0) * size_t(cols);
      const int8_t* a_lo = lo + size_t(j0) * size_t(cols);
      for (int64_t sb = 0; sb < nsb; ++sb) {
        _tile_zero(0);
        _tile_zero(1);
        _tile_zero(2);
        _tile_zero(3);
        for (int64_t col = sb * 256; col < sb * 256 + 256; col += kStep) {
          _tile_loadd(4, a_hi + col, cols);
          _tile_loadd(5, a_lo + col, cols);
          _tile_loadd(6, x0 + size_t(col / 4) * kAmxTile, 64);
          _tile_loadd(7, x1 + size_t(col / 4) * kAmxTile, 64);
          _tile_dpbssd(0, 4, 6);
          _tile_dpbssd(1, 5, 6);
          _tile_dpbssd(2, 4, 7);
          _tile_dpbssd(3, 5, 7);
        }
        _tile_stored(0, c[0], 64);
        _tile_stored(1, c[1], 64);
        _tile_stored(2, c[2], 64);
        _tile_stored(3, c[3], 64);
        const __m128i sh = _mm_cvtsi32_si128(shift);
        for (int r = 0; r < kAmxTile; ++r) {
          const __m512i i0 = _mm512_add_epi32(_mm512_sll_epi32(_mm512_load_si512(c[0][r]), sh),
                                              _mm512_load_si512(c[1][r]));
          const __m512i i1 = _mm512_add_epi32(_mm512_sll_epi32(_mm512_load_si512(c[2][r]), sh),
                                              _mm512_load_si512(c[3][r]));
          FoldSuperBlock(pn, has_mins, act, size_t(j0 + r), sb, t0, i0, i1, acc);
        }
      }
    }
  }
}

}  // namespace

TQLM_AMX8 void MatMulRowsAmx8(TensorType type, const uint8_t* w, size_t row_bytes, int64_t rows,
                              int64_t r0, int64_t r1, const PrefillActs& act, float* y) {
  thread_local PanelI16 pn;
  thread_local std::vector<int8_t> hi, lo;
  thread_local std::vector<float> acc;
  const int64_t cols = act.cols;
  const int shift = type == TensorType::kQ6_K ? 6 : 5;
  hi.resize(size_t(cols) * kAmxPanelRows);
  lo.resize(hi.size());
  acc.resize(size_t(act.padded_tokens) * kAmxPanelRows);
  AmxTileConfig cfg;
  for (int i = 0; i < 8; ++i) {
    cfg.rows[i] = kAmxTile;
    cfg.colsb[i] = 64;
  }
  _tile_loadconfig(&cfg);
  for (int64_t p0 = r0; p0 < r1; p0 += kAmxPanelRows) {
    const int64_t p1 = std::min(r1, p0 + kAmxPanelRows);
    DecodePanelI16(type, w, row_bytes, p0, p1, cols, &pn);
    SplitPlanes(pn, cols, shift, hi.data(), lo.data());
    PanelTimesTokensAmx8(pn, hi.data(), lo.data(), shift, type != TensorType::kQ6_K, act,
                         acc.data());
    StoreTransposed(acc.data(), act.padded_tokens, act.n_tokens, int(p1 - p0), y + p0,
                    size_t(rows));
  }
  _tile_release();
}

}  // namespace tqlm::kernels::internal::prefill

#endif
