// The VNNI int16 prefill engine for Q4_K, Q5_K and Q6_K weights (see matmul_prefill.cc for how
// it fits with the others, and PERF_NOTES "CPU matmul" v6c for its measurements).
#include "kernels/cpu/matmul_prefill_common.h"

#if TQLM_HAVE_PREFILL_KERNELS

#include <algorithm>
#include <vector>

#include "kernels/cpu/quant_act.h"

#define TQLM_I16 __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni")))

namespace tqlm::kernels::internal::prefill {

namespace {

// int32 -> fp32 (the maskz form: GCC 12 flags the plain one's undefined pass-through).
TQLM_I16 inline __m512 ToFloat(__m512i v) { return _mm512_maskz_cvtepi32_ps(0xffff, v); }

}  // namespace

// The float steps every k-quant engine takes (matmul_vnni_kquant.cc defines them): row j's
// exact super-block sums I (c0: tokens t0..t0+15, c1: the next 16) fold into acc[j][t] as
// f = fma(I, dx * d, f), then for Q4_K/Q5_K f = fma(M, dx * -dmin, f) with M = sum_j m_j S_j
// (the minimums against the tokens' 32-value sums, by 4 VPDPWSSD on word pairs).
TQLM_I16 void FoldSuperBlock(const PanelI16& pn, bool has_mins, const PrefillActs& act, size_t j,
                             int64_t sb, int t0, __m512i c0, __m512i c1, float* acc) {
  const int64_t nsb = act.super_blocks;
  const int tp = act.padded_tokens;
  const size_t tile = size_t(t0) / kAmxTile, js = j * size_t(nsb) + size_t(sb);
  const float* dx = act.dxi.data() + (tile * size_t(nsb) + size_t(sb)) * kAmxTile;
  const __m512 dx0 = _mm512_loadu_ps(dx), dx1 = _mm512_loadu_ps(dx + nsb * kAmxTile);
  float* c = acc + j * size_t(tp) + size_t(t0);
  __m512 f0 = sb == 0 ? _mm512_setzero_ps() : _mm512_loadu_ps(c);
  __m512 f1 = sb == 0 ? _mm512_setzero_ps() : _mm512_loadu_ps(c + kAmxTile);
  const __m512 dj = _mm512_set1_ps(pn.d[js]);
  f0 = _mm512_fmadd_ps(ToFloat(c0), _mm512_mul_ps(dx0, dj), f0);
  f1 = _mm512_fmadd_ps(ToFloat(c1), _mm512_mul_ps(dx1, dj), f1);
  if (has_mins) {
    const uint32_t* s0 = act.si.data() + (tile * size_t(nsb) + size_t(sb)) * 4 * kAmxTile;
    const uint32_t* s1 = s0 + size_t(nsb) * 4 * kAmxTile;
    const auto* m32 = reinterpret_cast<const int32_t*>(pn.mins.data());
    __m512i m0 = _mm512_setzero_si512(), m1 = _mm512_setzero_si512();
    for (int i = 0; i < 4; ++i) {
      const __m512i mi = _mm512_set1_epi32(m32[js * 4 + size_t(i)]);
      m0 = _mm512_dpwssd_epi32(m0, mi, _mm512_loadu_si512(s0 + i * kAmxTile));
      m1 = _mm512_dpwssd_epi32(m1, mi, _mm512_loadu_si512(s1 + i * kAmxTile));
    }
    const __m512 ndm = _mm512_set1_ps(-pn.dmin[js]);
    f0 = _mm512_fmadd_ps(ToFloat(m0), _mm512_mul_ps(dx0, ndm), f0);
    f1 = _mm512_fmadd_ps(ToFloat(m1), _mm512_mul_ps(dx1, ndm), f1);
  }
  _mm512_storeu_ps(c, f0);
  _mm512_storeu_ps(c + kAmxTile, f1);
}

namespace {

// acc[j * tp + t] = row j . token t over all padded tokens: per super-block, 8 rows x 32
// tokens of int32 accumulators summed by VPDPWSSD (each weight pair broadcast, 16 tokens'
// pairs per zmm), then folded into fp32 with the row's d and the tokens' scales; Q4_K/Q5_K
// minimums add -dmin * sum_j m_j * S_j per super-block through 4 more VPDPWSSD.
TQLM_I16 void PanelTimesTokensI16(const PanelI16& pn, bool has_mins, const PrefillActs& act,
                                  float* acc) {
  const int64_t cols = act.cols, nsb = act.super_blocks, pairs = cols / 2;
  const int tp = act.padded_tokens;
  constexpr int kPairs = 128;  // pairs per super-block
  const auto* w32 = reinterpret_cast<const int32_t*>(pn.w.data());
  for (int64_t sb = 0; sb < nsb; ++sb) {
    for (int t0 = 0; t0 < tp; t0 += 2 * kAmxTile) {
      const size_t tile = size_t(t0) / kAmxTile;
      const uint32_t* x0 = act.xi.data() + (tile * size_t(pairs) + size_t(sb) * kPairs) * kAmxTile;
      const uint32_t* x1 = x0 + size_t(pairs) * kAmxTile;
      for (int j0 = 0; j0 < kAmxPanelRows; j0 += kVecRows) {
        const int32_t* a = w32 + size_t(j0) * size_t(pairs) + size_t(sb) * kPairs;
        __m512i c0[kVecRows], c1[kVecRows];
        for (int r = 0; r < kVecRows; ++r) c0[r] = c1[r] = _mm512_setzero_si512();
        for (int p = 0; p < kPairs; ++p) {
          const __m512i b0 = _mm512_loadu_si512(x0 + size_t(p) * kAmxTile);
          const __m512i b1 = _mm512_loadu_si512(x1 + size_t(p) * kAmxTile);
#pragma GCC unroll 8
          for (int r = 0; r < kVecRows; ++r) {
            const __m512i wr = _mm512_set1_epi32(a[size_t(r) * size_t(pairs) + size_t(p)]);
            c0[r] = _mm512_dpwssd_epi32(c0[r], wr, b0);
            c1[r] = _mm512_dpwssd_epi32(c1[r], wr, b1);
          }
        }
        for (int r = 0; r < kVecRows; ++r) {
          FoldSuperBlock(pn, has_mins, act, size_t(j0 + r), sb, t0, c0[r], c1[r], acc);
        }
      }
    }
  }
}

}  // namespace

// The tokens for the int16 engine, from the 8-bit k-quant activation format (one scale per
// 256 values, as the VNNI tiles and llama.cpp use): xi[tile][pair][t] holds columns 2 pair,
// +1 of token 16 tile + t as int16; dxi[tile][sb][t] the token's scale for super-block sb;
// si[tile][sb][i][t] the int8 sums of 32-blocks 2i, 2i + 1 of the super-block (for the
// Q4_K/Q5_K minimums).
// With `amx_layout`, xq instead of xi: xq[tile][c / 4][t] holds columns c..c+3 of token
// 16 tile + t as 4 int8 (TDPBSSD's second-operand layout, one 1 KB tile per 64 columns).
TQLM_I16 void PrepareActivationsI16(const float* x, int n_tokens, int64_t cols, bool amx_layout,
                                    PrefillActs* out) {
  thread_local ActQ8 q8;
  VnniQuantize(x, n_tokens, cols, ActScale::kBlock256, &q8);
  const int64_t nsb = cols / 256, pairs = cols / 2, blocks = cols / 32;
  const size_t tiles = size_t(out->padded_tokens) / kAmxTile;
  out->super_blocks = nsb;
  if (amx_layout) {
    out->xq.assign(tiles * size_t(cols / 4) * kAmxTile, 0);
    out->xi.clear();
  } else {
    out->xi.assign(tiles * size_t(pairs) * kAmxTile, 0);
    out->xq.clear();
  }
  out->dxi.assign(tiles * size_t(nsb) * kAmxTile, 0.0f);
  out->si.assign(tiles * size_t(nsb) * 4 * kAmxTile, 0);
  const __m512i idx = ScatterIndex();
  const __m512i ones = _mm512_set1_epi16(1);
  for (int t = 0; t < n_tokens; ++t) {
    const size_t tile = size_t(t) / kAmxTile, lane = size_t(t) % kAmxTile;
    const int8_t* q = q8.q_at(t);
    uint32_t* dst = amx_layout ? out->xq.data() + tile * size_t(cols / 4) * kAmxTile + lane
                               : out->xi.data() + tile * size_t(pairs) * kAmxTile + lane;
    auto* sums = reinterpret_cast<int16_t*>(out->si.data());
    if (amx_layout) {
      for (int64_t c = 0; c < cols; c += 64) {
        _mm512_i32scatter_epi32(dst + size_t(c / 4) * kAmxTile, idx, _mm512_loadu_si512(q + c), 4);
      }
    }
    for (int64_t b = 0; b < blocks; ++b) {
      const __m512i v =
          _mm512_cvtepi8_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(q + 32 * b)));
      if (!amx_layout) _mm512_i32scatter_epi32(dst + size_t(b) * 16 * kAmxTile, idx, v, 4);
      const int64_t sb = b / 8, j = b % 8;
      const size_t dword = ((tile * size_t(nsb) + size_t(sb)) * 4 + size_t(j / 2)) * kAmxTile + lane;
      alignas(64) int32_t part[16];
      _mm512_store_si512(part, _mm512_madd_epi16(v, ones));
      int sum = 0;
      for (int32_t p : part) sum += p;
      sums[2 * dword + size_t(j % 2)] = int16_t(sum);
    }
    for (int64_t sb = 0; sb < nsb; ++sb) {
      out->dxi[(tile * size_t(nsb) + size_t(sb)) * kAmxTile + lane] = q8.d_at(t)[8 * sb];
    }
  }
}

// Rows [p0, p1) of k-quant weights (at most kAmxPanelRows; zero rows past p1) decoded into pn.
TQLM_I16 void DecodePanelI16(TensorType type, const uint8_t* w, size_t row_bytes, int64_t p0,
                             int64_t p1, int64_t cols, PanelI16* pn) {
  const int64_t nsb = cols / 256;
  pn->w.resize(size_t(cols) * kAmxPanelRows);
  pn->mins.resize(size_t(nsb) * 8 * kAmxPanelRows);
  pn->d.resize(size_t(nsb) * kAmxPanelRows);
  pn->dmin.resize(size_t(nsb) * kAmxPanelRows);
  for (int j = 0; j < kAmxPanelRows; ++j) {
    int16_t* wj = pn->w.data() + size_t(j) * size_t(cols);
    float* dj = pn->d.data() + size_t(j) * size_t(nsb);
    float* dmj = pn->dmin.data() + size_t(j) * size_t(nsb);
    int16_t* mj = pn->mins.data() + size_t(j) * size_t(nsb) * 8;
    if (p0 + j >= p1) {
      std::fill(wj, wj + cols, int16_t(0));
      std::fill(dj, dj + nsb, 0.0f);
      std::fill(dmj, dmj + nsb, 0.0f);
      std::fill(mj, mj + nsb * 8, int16_t(0));
      continue;
    }
    VnniDecodeRowI16(type, w + size_t(p0 + j) * row_bytes, nsb, wj, dj, dmj, mj);
  }
}

TQLM_I16 void MatMulRowsI16(TensorType type, const uint8_t* w, size_t row_bytes, int64_t rows,
                            int64_t r0, int64_t r1, const PrefillActs& act, float* y) {
  thread_local PanelI16 pn;
  thread_local std::vector<float> acc;
  acc.resize(size_t(act.padded_tokens) * kAmxPanelRows);
  for (int64_t p0 = r0; p0 < r1; p0 += kAmxPanelRows) {
    const int64_t p1 = std::min(r1, p0 + kAmxPanelRows);
    DecodePanelI16(type, w, row_bytes, p0, p1, act.cols, &pn);
    PanelTimesTokensI16(pn, type != TensorType::kQ6_K, act, acc.data());
    StoreTransposed(acc.data(), act.padded_tokens, act.n_tokens, int(p1 - p0), y + p0,
                    size_t(rows));
  }
}


}  // namespace tqlm::kernels::internal::prefill

#endif
