// K-quant weight rows decoded whole, for the prefill engines (matmul_prefill*.cc): int16
// products of the integer sub-block scales and quants, or the int8 quants with their scales. Built on the VNNI kernels' decoders, so
// every engine decodes the same way.
#include "kernels/cpu/matmul_vnni_decoders.h"

namespace tqlm::kernels::internal {

#if TQLM_HAVE_VNNI_KERNELS

namespace {

using namespace vnni;

// K-quant rows as int16 products of integer sub-block scales and quants (see
// VnniDecodeRowI16); chunk p = values 64p..64p+63 of the row, in natural order.
TQLM_VNNI inline void StoreScaledI16(__m512i q, __m512i offset, __m512i sc_lo, __m512i sc_hi,
                                     int16_t* out) {
  const __m512i lo = _mm512_sub_epi16(
      _mm512_cvtepu8_epi16(_mm512_castsi512_si256(q)), offset);
  const __m512i hi = _mm512_sub_epi16(
      _mm512_cvtepu8_epi16(_mm512_extracti64x4_epi64(q, 1)), offset);
  _mm512_storeu_si512(out, _mm512_mullo_epi16(lo, sc_lo));
  _mm512_storeu_si512(out + 32, _mm512_mullo_epi16(hi, sc_hi));
}

// 16 int16 lanes of scale a, then 16 of scale b.
TQLM_VNNI inline __m512i TwoScales(int a, int b) {
  return _mm512_inserti64x4(_mm512_set1_epi16(int16_t(a)), _mm256_set1_epi16(int16_t(b)), 1);
}

// A Q4_K/Q5_K super-block's header: d and dmin into d[sb], dmin[sb], the 8 minimums into
// mins[8 sb ..], and the unpacked 6-bit scales (sm[0..7]) and minimums (sm[8..15]).
TQLM_VNNI inline void K4Header(const uint8_t* b, int64_t sb, float* d, float* dmin, int16_t* mins,
                               uint8_t sm[16]) {
  d[sb] = Half(b);
  dmin[sb] = Half(b + 2);
  UnpackScalesMinsK4(b + 4, sm);
  for (int j = 0; j < 8; ++j) mins[sb * 8 + j] = int16_t(sm[8 + j]);
}

template <bool kHigh>
TQLM_VNNI void DecodeRowI16K4(const uint8_t* row, int64_t super_blocks, int16_t* w16, float* d,
                              float* dmin, int16_t* mins) {
  K4Decoder<kHigh> dec;
  dec.Init(row, 0);
  for (int64_t sb = 0; sb < super_blocks; ++sb) {
    uint8_t sm[16];  // scale j, then min j
    K4Header(row + size_t(sb) * K4Decoder<kHigh>::kB, sb, d, dmin, mins, sm);
    const uint8_t* sc = sm;
    for (int c = 0; c < 4; ++c) {
      // Values 0-31 of the chunk are sub-block 2c, 32-63 sub-block 2c + 1.
      const __m512i q = dec.Load(4 * sb + c).wq;
      StoreScaledI16(q, _mm512_setzero_si512(), _mm512_set1_epi16(int16_t(sc[2 * c])),
                     _mm512_set1_epi16(int16_t(sc[2 * c + 1])), w16 + sb * 256 + 64 * c);
    }
  }
}

TQLM_VNNI void DecodeRowI16Q6K(const uint8_t* row, int64_t super_blocks, int16_t* w16,
                               float* d) {
  Q6KDecoder dec;
  dec.Init(row, 0);
  const __m512i offset = _mm512_set1_epi16(32);
  for (int64_t sb = 0; sb < super_blocks; ++sb) {
    const uint8_t* b = row + size_t(sb) * 210;
    d[sb] = Half(b + 208);
    const auto* sc = reinterpret_cast<const int8_t*>(b + 192);  // one per 16 values
    for (int c = 0; c < 4; ++c) {
      const __m512i q = dec.Load(4 * sb + c).wq;
      StoreScaledI16(q, offset, TwoScales(sc[4 * c], sc[4 * c + 1]),
                     TwoScales(sc[4 * c + 2], sc[4 * c + 3]), w16 + sb * 256 + 64 * c);
    }
  }
}

// Sums of the 64 bytes of q in groups of 8 (u64 lanes 0-7), as int.
TQLM_VNNI inline void ByteSums8(__m512i q, int32_t out[8]) {
  alignas(64) uint64_t s[8];
  _mm512_store_si512(s, _mm512_sad_epu8(q, _mm512_setzero_si512()));
  for (int i = 0; i < 8; ++i) out[i] = int32_t(s[i]);
}

template <bool kHigh>
TQLM_VNNI void DecodeRowI8K4(const uint8_t* row, int64_t super_blocks, int8_t* q8, int32_t* sc,
                             int32_t* wsum, float* d, float* dmin, int16_t* mins) {
  K4Decoder<kHigh> dec;
  dec.Init(row, 0);
  for (int64_t sb = 0; sb < super_blocks; ++sb) {
    uint8_t sm[16];  // scale j, then min j
    K4Header(row + size_t(sb) * K4Decoder<kHigh>::kB, sb, d, dmin, mins, sm);
    int32_t total = 0;
    for (int j = 0; j < 8; ++j) sc[sb * 16 + j] = sm[j];
    for (int c = 0; c < 4; ++c) {
      const __m512i q = dec.Load(4 * sb + c).wq;  // sub-blocks 2c (bytes 0-31), 2c + 1
      _mm512_storeu_si512(q8 + sb * 256 + 64 * c, q);
      int32_t s8[8];
      ByteSums8(q, s8);
      total += sm[2 * c] * (s8[0] + s8[1] + s8[2] + s8[3]) +
               sm[2 * c + 1] * (s8[4] + s8[5] + s8[6] + s8[7]);
    }
    wsum[sb] = total;
  }
}

TQLM_VNNI void DecodeRowI8Q6K(const uint8_t* row, int64_t super_blocks, int8_t* q8, int32_t* sc,
                              int32_t* wsum, float* d) {
  Q6KDecoder dec;
  dec.Init(row, 0);
  for (int64_t sb = 0; sb < super_blocks; ++sb) {
    const uint8_t* b = row + size_t(sb) * 210;
    d[sb] = Half(b + 208);
    const auto* s = reinterpret_cast<const int8_t*>(b + 192);  // one per 16 values
    int32_t total = 0;
    for (int g = 0; g < 16; ++g) sc[sb * 16 + g] = s[g];
    for (int c = 0; c < 4; ++c) {
      const __m512i q = dec.Load(4 * sb + c).wq;  // 0..63, four groups of 16
      _mm512_storeu_si512(q8 + sb * 256 + 64 * c, _mm512_sub_epi8(q, _mm512_set1_epi8(32)));
      int32_t s8[8];
      ByteSums8(q, s8);
      for (int g = 0; g < 4; ++g) total += s[4 * c + g] * (s8[2 * g] + s8[2 * g + 1] - 16 * 32);
    }
    wsum[sb] = total;
  }
}

}  // namespace

bool VnniDecodeRowI8(TensorType type, const uint8_t* row, int64_t super_blocks, int8_t* q8,
                     int32_t* sc, int32_t* wsum, float* d, float* dmin, int16_t* mins) {
  if (!HaveVnniKernels()) return false;
  switch (type) {
    case TensorType::kQ4_K: DecodeRowI8K4<false>(row, super_blocks, q8, sc, wsum, d, dmin, mins); return true;
    case TensorType::kQ5_K: DecodeRowI8K4<true>(row, super_blocks, q8, sc, wsum, d, dmin, mins); return true;
    case TensorType::kQ6_K: DecodeRowI8Q6K(row, super_blocks, q8, sc, wsum, d); return true;
    default: return false;
  }
}

bool VnniDecodeRowI16(TensorType type, const uint8_t* row, int64_t super_blocks, int16_t* w16,
                      float* d, float* dmin, int16_t* mins) {
  if (!HaveVnniKernels()) return false;
  switch (type) {
    case TensorType::kQ4_K: DecodeRowI16K4<false>(row, super_blocks, w16, d, dmin, mins); return true;
    case TensorType::kQ5_K: DecodeRowI16K4<true>(row, super_blocks, w16, d, dmin, mins); return true;
    case TensorType::kQ6_K: DecodeRowI16Q6K(row, super_blocks, w16, d); return true;
    default: return false;
  }
}

#else  // !TQLM_HAVE_VNNI_KERNELS

bool VnniDecodeRowI8(TensorType, const uint8_t*, int64_t, int8_t*, int32_t*, int32_t*, float*,
                     float*, int16_t*) {
  return false;
}

bool VnniDecodeRowI16(TensorType, const uint8_t*, int64_t, int16_t*, float*, float*, int16_t*) {
  return false;
}

#endif

}  // namespace tqlm::kernels::internal
