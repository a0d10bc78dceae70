// The VNNI int8 prefill engine for Q4_K, Q5_K and Q6_K weights (see
// matmul_prefill.cc for how it fits with the others, and PERF_NOTES "CPU
// matmul" v7 for its measurements).
//
// The engine it replaced multiplied w16 = sc * q (int16) with the tokens
// widened to int16 pairs: 32 products per VPDPWSSD. Here the quants stay int8
// and meet the tokens' 8-bit values by VPDPBUSD, 64 products per instruction.
// VPDPBUSD wants one unsigned operand: the tokens are stored as u = x + 128
// (ActLayout::kUint8Quads), the weights are the signed one (Q6_K's q - 32 needs
// the sign). Per sub-block s (32 values; Q6_K: 16) the partial sum P_s = sum
// q_k u_k is multiplied by its integer scale, and the offset comes back once
// per super-block: I = sum_s sc_s P_s - 128 * sum_k sc q_k. Every step is an
// exact integer operation (|I| < 2^29), so I is the AMX engine's and the decode
// tiles' integer, and FoldSuperBlock turns it into the same float bits.
#include "kernels/cpu/matmul_prefill_common.h"

#if TQLM_HAVE_PREFILL_KERNELS

#include <algorithm>
#include <vector>

#define TQLM_I8 __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni")))

namespace tqlm::kernels::internal::prefill {

namespace {

// A panel of kAmxPanelRows rows as int8 quants (q[j][cols]), sub-block scales
// (sc[j][sb][16]), the super-blocks' sums of scaled quants (wsum[j][sb]), and
// d/dmin/mins for FoldSuperBlock.
struct PanelI8 {
  std::vector<int8_t> q;
  std::vector<int32_t> sc, wsum;
  PanelI16 fold;  // d, dmin, mins only (w stays empty)
};

TQLM_I8 void DecodePanelI8(TensorType type, const uint8_t* w, size_t row_bytes, int64_t p0,
                           int64_t p1, int64_t cols, PanelI8* pn) {
  const int64_t nsb = cols / 256;
  pn->q.resize(size_t(cols) * kAmxPanelRows);
  pn->sc.resize(size_t(nsb) * 16 * kAmxPanelRows);
  pn->wsum.resize(size_t(nsb) * kAmxPanelRows);
  pn->fold.mins.resize(size_t(nsb) * 8 * kAmxPanelRows);
  pn->fold.d.resize(size_t(nsb) * kAmxPanelRows);
  pn->fold.dmin.resize(size_t(nsb) * kAmxPanelRows);
  for (int j = 0; j < kAmxPanelRows; ++j) {
    const size_t jc = size_t(j) * size_t(cols), js = size_t(j) * size_t(nsb);
    if (p0 + j >= p1) {  // zero rows: every product and scale 0
      std::fill_n(pn->q.begin() + std::ptrdiff_t(jc), cols, int8_t(0));
      std::fill_n(pn->sc.begin() + std::ptrdiff_t(js * 16), nsb * 16, 0);
      std::fill_n(pn->wsum.begin() + std::ptrdiff_t(js), nsb, 0);
      std::fill_n(pn->fold.d.begin() + std::ptrdiff_t(js), nsb, 0.0f);
      std::fill_n(pn->fold.dmin.begin() + std::ptrdiff_t(js), nsb, 0.0f);
      std::fill_n(pn->fold.mins.begin() + std::ptrdiff_t(js * 8), nsb * 8, int16_t(0));
      continue;
    }
    VnniDecodeRowI8(type, w + size_t(p0 + j) * row_bytes, nsb, pn->q.data() + jc,
                    pn->sc.data() + js * 16, pn->wsum.data() + js, pn->fold.d.data() + js,
                    pn->fold.dmin.data() + js, pn->fold.mins.data() + js * 8);
  }
}

// Rows per register block: kRows rows x 32 tokens of partial sums and of
// super-block sums (4 kRows zmm), plus the two token vectors and a broadcast.
constexpr int kRows = 4;

// acc[j * tp + t] = row j . token t over all padded tokens (see the file
// comment); kSubQuads = 4-value quads per sub-block (8: Q4_K/Q5_K, 4: Q6_K).
template <int kSubQuads>
TQLM_I8 void PanelTimesTokensI8(const PanelI8& pn, bool has_mins, const PrefillActs& act,
                                float* acc) {
  constexpr int kSubs = 64 / kSubQuads;  // sub-blocks per super-block
  const int64_t nsb = act.super_blocks, quads = act.cols / 4;
  const int tp = act.padded_tokens;
  const auto* q32 = reinterpret_cast<const int32_t*>(pn.q.data());
  for (int64_t sb = 0; sb < nsb; ++sb) {
    for (int t0 = 0; t0 < tp; t0 += 2 * kAmxTile) {
      const size_t tile = size_t(t0) / kAmxTile;
      const uint32_t* x0 = act.xq.data() + (tile * size_t(quads) + size_t(sb) * 64) * kAmxTile;
      const uint32_t* x1 = x0 + size_t(quads) * kAmxTile;
      for (int j0 = 0; j0 < kAmxPanelRows; j0 += kRows) {
        const int32_t* a = q32 + size_t(j0) * size_t(quads) + size_t(sb) * 64;
        const int32_t* sc = pn.sc.data() + (size_t(j0) * size_t(nsb) + size_t(sb)) * 16;
        __m512i i0[kRows], i1[kRows];
        for (int r = 0; r < kRows; ++r) i0[r] = i1[r] = _mm512_setzero_si512();
        for (int s = 0; s < kSubs; ++s) {
          __m512i p0[kRows], p1[kRows];
          for (int r = 0; r < kRows; ++r) p0[r] = p1[r] = _mm512_setzero_si512();
#pragma GCC unroll 8
          for (int k = s * kSubQuads; k < (s + 1) * kSubQuads; ++k) {
            const __m512i b0 = _mm512_loadu_si512(x0 + size_t(k) * kAmxTile);
            const __m512i b1 = _mm512_loadu_si512(x1 + size_t(k) * kAmxTile);
            for (int r = 0; r < kRows; ++r) {
              const __m512i wr = _mm512_set1_epi32(a[size_t(r) * size_t(quads) + size_t(k)]);
              p0[r] = _mm512_dpbusd_epi32(p0[r], b0, wr);
              p1[r] = _mm512_dpbusd_epi32(p1[r], b1, wr);
            }
          }
          for (int r = 0; r < kRows; ++r) {
            const __m512i scale = _mm512_set1_epi32(sc[size_t(r) * size_t(nsb) * 16 + size_t(s)]);
            i0[r] = _mm512_add_epi32(i0[r], _mm512_mullo_epi32(p0[r], scale));
            i1[r] = _mm512_add_epi32(i1[r], _mm512_mullo_epi32(p1[r], scale));
          }
        }
        for (int r = 0; r < kRows; ++r) {
          const size_t js = size_t(j0 + r) * size_t(nsb) + size_t(sb);
          const __m512i offset = _mm512_set1_epi32(128 * pn.wsum[js]);
          FoldSuperBlock(pn.fold, has_mins, act, size_t(j0 + r), sb, t0,
                         _mm512_sub_epi32(i0[r], offset), _mm512_sub_epi32(i1[r], offset), acc);
        }
      }
    }
  }
}

}  // namespace

TQLM_I8 void MatMulRowsI8(TensorType type, const uint8_t* w, size_t row_bytes, int64_t rows,
                          int64_t r0, int64_t r1, const PrefillActs& act, float* y) {
  thread_local PanelI8 pn;
  thread_local std::vector<float> acc;
  acc.resize(size_t(act.padded_tokens) * kAmxPanelRows);
  for (int64_t p0 = r0; p0 < r1; p0 += kAmxPanelRows) {
    const int64_t p1 = std::min(r1, p0 + kAmxPanelRows);
    DecodePanelI8(type, w, row_bytes, p0, p1, act.cols, &pn);
    if (type == TensorType::kQ6_K) {
      PanelTimesTokensI8<4>(pn, false, act, acc.data());
    } else {
      PanelTimesTokensI8<8>(pn, true, act, acc.data());
    }
    StoreTransposed(acc.data(), act.padded_tokens, act.n_tokens, int(p1 - p0), y + p0,
                    size_t(rows));
  }
}

}  // namespace tqlm::kernels::internal::prefill

#endif
