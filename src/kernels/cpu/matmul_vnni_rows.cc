// Quantized weight rows decoded whole, for the prefill engines (matmul_prefill*.cc): to bf16
// values (AMX tiles, FMA engine) or to int16 products of k-quant sub-block scales and quants
// (int16 engine). Built on the VNNI kernels' decoders, so every format decodes the same way
// in every engine.
#include "kernels/cpu/matmul_vnni_decoders.h"

namespace tqlm::kernels::internal {

#if TQLM_HAVE_VNNI_KERNELS

namespace {

using namespace vnni;

// --- Rows to bf16 (for the AMX kernels) ------------------------------------------------------
// Every decoder's chunk holds value i as wq[i] * ws[i / 4] + cw[i / 4] (negated where `neg`
// is set): the dot kernels apply ws and cw to sums, this applies them to the values.
#define TQLM_VNNI_BF16                                                                   \
  __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx512vbmi,avx2,fma," \
                        "f16c,avx512bf16")))

struct ExpandTables {
  alignas(64) int32_t lane[4][16];  // value 16g + i takes int32 lane 4g + i / 4
};

constexpr ExpandTables MakeExpand() {
  ExpandTables x{};
  for (int g = 0; g < 4; ++g) {
    for (int i = 0; i < 16; ++i) x.lane[g][i] = 4 * g + i / 4;
  }
  return x;
}
constexpr ExpandTables kExpand = MakeExpand();

template <class Dec>
TQLM_VNNI_BF16 void DecodeRowBf16(const uint8_t* row, size_t row_bytes, int64_t blocks,
                                  uint16_t* out, size_t stride) {
  Dec dec;
  dec.Init(row, row_bytes);
  const int64_t chunks = (blocks + 1) / 2;
  for (int64_t p = 0; p < chunks; ++p) {
    const Chunk c = dec.Load(p);
    alignas(64) uint8_t q[64];
    _mm512_store_si512(q, c.wq);
    __m512 v[4];
    TQLM_UNROLL
    for (int g = 0; g < 4; ++g) {
      __m512 f = _mm512_cvtepi32_ps(
          _mm512_cvtepu8_epi32(_mm_load_si128(reinterpret_cast<const __m128i*>(q + 16 * g))));
      if constexpr (Dec::kSigned) {
        f = _mm512_mask_sub_ps(f, __mmask16(c.neg >> (16 * g)), _mm512_setzero_ps(), f);
      }
      const __m512i idx = _mm512_load_si512(kExpand.lane[g]);
      v[g] = _mm512_fmadd_ps(f, _mm512_permutexvar_ps(idx, c.ws),
                             _mm512_permutexvar_ps(idx, c.cw));
    }
    _mm512_storeu_si512(out + size_t(2 * p) * stride,
                        reinterpret_cast<__m512i>(_mm512_cvtne2ps_pbh(v[1], v[0])));
    if (2 * p + 1 < blocks) {
      _mm512_storeu_si512(out + size_t(2 * p + 1) * stride,
                          reinterpret_cast<__m512i>(_mm512_cvtne2ps_pbh(v[3], v[2])));
    }
  }
}

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

bool VnniDecodeRowBf16(TensorType type, const uint8_t* row, size_t row_bytes, int64_t blocks,
                       uint16_t* out, size_t stride) {
  if (!HaveVnniKernels()) return false;
  switch (type) {
    case TensorType::kQ4_0: DecodeRowBf16<PairDecoder<0>>(row, row_bytes, blocks, out, stride); return true;
    case TensorType::kQ4_1: DecodeRowBf16<PairDecoder<1>>(row, row_bytes, blocks, out, stride); return true;
    case TensorType::kQ5_0: DecodeRowBf16<PairDecoder<2>>(row, row_bytes, blocks, out, stride); return true;
    case TensorType::kQ5_1: DecodeRowBf16<PairDecoder<3>>(row, row_bytes, blocks, out, stride); return true;
    case TensorType::kQ8_0: DecodeRowBf16<PairDecoder<4>>(row, row_bytes, blocks, out, stride); return true;
    case TensorType::kQ4_K: DecodeRowBf16<K4Decoder<false>>(row, row_bytes, blocks, out, stride); return true;
    case TensorType::kQ5_K: DecodeRowBf16<K4Decoder<true>>(row, row_bytes, blocks, out, stride); return true;
    case TensorType::kQ6_K: DecodeRowBf16<Q6KDecoder>(row, row_bytes, blocks, out, stride); return true;
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

bool VnniDecodeRowBf16(TensorType, const uint8_t*, size_t, int64_t, uint16_t*, size_t) {
  return false;
}
bool VnniDecodeRowI16(TensorType, const uint8_t*, int64_t, int16_t*, float*, float*, int16_t*) {
  return false;
}

#endif

}  // namespace tqlm::kernels::internal
