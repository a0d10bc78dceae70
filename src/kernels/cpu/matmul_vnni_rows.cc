// K-quant weight rows decoded whole, for the prefill engines (matmul_prefill*.cc): int16
// products of the integer sub-block scales and quants. Built on the VNNI kernels' decoders, so
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

template <bool kHigh>
TQLM_VNNI void DecodeRowI16K4(const uint8_t* row, int64_t super_blocks, int16_t* w16, float* d,
                              float* dmin, int16_t* mins) {
  K4Decoder<kHigh> dec;
  dec.Init(row, 0);
  for (int64_t sb = 0; sb < super_blocks; ++sb) {
    const uint8_t* b = row + size_t(sb) * K4Decoder<kHigh>::kB;
    d[sb] = Half(b);
    dmin[sb] = Half(b + 2);
    uint8_t sm[16];  // scale j, then min j
    UnpackScalesMinsK4(b + 4, sm);
    const uint8_t* sc = sm;
    for (int j = 0; j < 8; ++j) mins[sb * 8 + j] = int16_t(sm[8 + j]);
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

}  // namespace

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

bool VnniDecodeRowI16(TensorType, const uint8_t*, int64_t, int16_t*, float*, float*, int16_t*) {
  return false;
}

#endif

}  // namespace tqlm::kernels::internal
