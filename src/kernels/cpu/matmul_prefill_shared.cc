// What the k-quant prefill engines (VNNI int8: matmul_prefill_i8.cc, AMX-INT8:
// matmul_prefill_amx8.cc) share: the tokens' layout, the int16 panel decode and
// the float fold that turns a super-block's exact integer sum into the decode
// tiles' bits.
#include "kernels/cpu/matmul_prefill_common.h"

#if TQLM_HAVE_PREFILL_KERNELS

#include <algorithm>
#include <vector>

#include "kernels/cpu/quant_act.h"

#define TQLM_PREFILL_VNNI __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni")))

namespace tqlm::kernels::internal::prefill {

namespace {

// int32 -> fp32 (the maskz form: GCC 12 flags the plain one's undefined
// pass-through).
TQLM_PREFILL_VNNI inline __m512 ToFloat(__m512i v) { return _mm512_maskz_cvtepi32_ps(0xffff, v); }

}  // namespace

// The float steps every k-quant engine takes (matmul_vnni_kquant.cc defines
// them): row j's exact super-block sums I (c0: tokens t0..t0+15, c1: the next
// 16) fold into acc[j][t] as f = fma(I, dx * d, f), then for Q4_K/Q5_K f =
// fma(M, dx * -dmin, f) with M = sum_j m_j S_j (the minimums against the
// tokens' 32-value sums, by 4 VPDPWSSD on word pairs).
TQLM_PREFILL_VNNI void FoldSuperBlock(const PanelI16& pn, bool has_mins, const PrefillActs& act,
                                      size_t j, int64_t sb, int t0, __m512i c0, __m512i c1,
                                      float* acc) {
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

// The tokens for the engines, from the 8-bit k-quant activation format (one
// scale per 256 values, as the VNNI tiles and llama.cpp use): xq[tile][c /
// 4][t] holds columns c..c+3 of token 16 tile + t as 4 int8 (TDPBSSD's
// second-operand layout, one 1 KB tile per 64 columns), or as 4 uint8 = int8 +
// 128 (VPDPBUSD's unsigned operand; padding tokens stay 0); dxi[tile][sb][t]
// the token's scale for super-block sb; si[tile][sb][i][t] the int8 sums of
// 32-blocks 2i, 2i + 1 of the super-block (for the Q4_K/Q5_K minimums).
TQLM_PREFILL_VNNI void PrepareActivations(const float* x, int n_tokens, int64_t cols,
                                          ActLayout layout, PrefillActs* out) {
  const __m512i offset = _mm512_set1_epi8(layout == ActLayout::kUint8Quads ? -128 : 0);
  thread_local ActQ8 q8;
  VnniQuantize(x, n_tokens, cols, ActScale::kBlock256, &q8);
  const int64_t nsb = cols / 256, blocks = cols / 32;
  const size_t tiles = size_t(out->padded_tokens) / kAmxTile;
  out->super_blocks = nsb;
  out->xq.assign(tiles * size_t(cols / 4) * kAmxTile, 0);
  out->dxi.assign(tiles * size_t(nsb) * kAmxTile, 0.0f);
  out->si.assign(tiles * size_t(nsb) * 4 * kAmxTile, 0);
  const __m512i idx = ScatterIndex();
  const __m512i ones = _mm512_set1_epi16(1);
  for (int t = 0; t < n_tokens; ++t) {
    const size_t tile = size_t(t) / kAmxTile, lane = size_t(t) % kAmxTile;
    const int8_t* q = q8.q_at(t);
    uint32_t* dst = out->xq.data() + tile * size_t(cols / 4) * kAmxTile + lane;
    auto* sums = reinterpret_cast<int16_t*>(out->si.data());
    for (int64_t c = 0; c < cols; c += 64) {
      _mm512_i32scatter_epi32(dst + size_t(c / 4) * kAmxTile, idx,
                              _mm512_xor_si512(_mm512_loadu_si512(q + c), offset), 4);
    }
    for (int64_t b = 0; b < blocks; ++b) {
      const __m512i v =
          _mm512_cvtepi8_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(q + 32 * b)));
      const int64_t sb = b / 8, j = b % 8;
      const size_t dword =
          ((tile * size_t(nsb) + size_t(sb)) * 4 + size_t(j / 2)) * kAmxTile + lane;
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

// Rows [p0, p1) of k-quant weights (at most kAmxPanelRows; zero rows past p1)
// decoded into pn.
TQLM_PREFILL_VNNI void DecodePanelI16(TensorType type, const uint8_t* w, size_t row_bytes,
                                      int64_t p0, int64_t p1, int64_t cols, PanelI16* pn) {
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

}  // namespace tqlm::kernels::internal::prefill

#endif
