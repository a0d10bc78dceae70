// AVX-512 VNNI tiles for k-quant weights (Q4_K, Q5_K, Q6_K) against 8-bit k-quant activations
// (ActScale::kBlock256), for any number of tokens.
//
// The result is defined in the integer domain first, so that every engine computes it
// bit for bit alike (decode, these tiles for small batches, the int16 prefill engine in
// matmul_prefill_i16.cc): per row, token and 256-value super-block sb
//   I_sb = sum_k w16_k * a_k                      exact int32; w16 = sc_j * q_k (Q4_K, Q5_K),
//                                                 sc_g * (q_k - 32) (Q6_K)
//   M_sb = sum_j m_j * S_j                        exact; Q4_K/Q5_K minimums times the
//                                                 activations' 32-value sums
// and then one float chain over the super-blocks in order,
//   f = fma(float(I_sb), dx_sb * d_sb, f);  f = fma(float(M_sb), dx_sb * -dmin_sb, f)
// (dx the token's scale of the super-block, d/dmin the block's fp16 scales). Integer sums are
// exact in any order, so the tiles may split and vectorize them as they like; only this
// float chain is fixed. That is what makes a token's logits independent of how many tokens
// share a matmul (issue 22: prompt-cache hits, chunking, batching).
//
// Inner loop per 64-value chunk and row: the sub-block scales multiply 16-bit pair sums of
// the unsigned quants (vpmaddubsw, then vpmaddwd against the scales) in the integer domain.
#include "kernels/cpu/matmul_vnni_decoders.h"

namespace tqlm::kernels::internal {

#if TQLM_HAVE_VNNI_KERNELS

namespace {

using namespace vnni;

// Prefetch line p of each of the next tile's R rows (decode streams every weight once).
template <int R>
TQLM_VNNI inline void PrefetchRows(uintptr_t next, size_t row_bytes, int64_t p) {
  const size_t off = size_t(p) * 64;
  if (off >= row_bytes) return;
  TQLM_UNROLL
  for (int r = 0; r < R; ++r) {
    _mm_prefetch(reinterpret_cast<const char*>(next + size_t(r) * row_bytes + off), _MM_HINT_T0);
  }
}

// Word selectors: chunk c of a super-block, word l (values 2l, 2l + 1) takes scale sel[c][l].
struct ScaleSelectors {
  alignas(64) int16_t k4[4][32];  // sub-block 2c for words 0-15, 2c + 1 for 16-31
  alignas(64) int16_t q6[4][32];  // 16-value group 4c + l / 8
};

constexpr ScaleSelectors MakeSelectors() {
  ScaleSelectors x{};
  for (int c = 0; c < 4; ++c) {
    for (int l = 0; l < 32; ++l) {
      x.k4[c][l] = int16_t(2 * c + (l >= 16 ? 1 : 0));
      x.q6[c][l] = int16_t(4 * c + l / 8);
    }
  }
  return x;
}
constexpr ScaleSelectors kSel = MakeSelectors();

TQLM_VNNI inline int32_t Sum16(__m512i v) { return _mm512_reduce_add_epi32(v); }

TQLM_VNNI inline int32_t Sum8(__m256i v) {
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4E));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xB1));
  return _mm_cvtsi128_si32(s);
}

// One step of the float chain: f + float(i) * s, rounded once (fused), as every engine does.
TQLM_VNNI inline float Fma(int32_t i, float s, float f) {
  return _mm_cvtss_f32(_mm_fmadd_ss(_mm_cvtsi32_ss(_mm_setzero_ps(), i), _mm_set_ss(s),
                                    _mm_set_ss(f)));
}

// The sums of four vectors' lanes, in one vector: integer adds, so exact in any order.
TQLM_VNNI inline __m128i Sum4x16(__m512i a, __m512i b, __m512i c, __m512i d) {
  const __m512i ab = _mm512_add_epi32(_mm512_unpacklo_epi32(a, b), _mm512_unpackhi_epi32(a, b));
  const __m512i cd = _mm512_add_epi32(_mm512_unpacklo_epi32(c, d), _mm512_unpackhi_epi32(c, d));
  const __m512i u =
      _mm512_add_epi32(_mm512_unpacklo_epi64(ab, cd), _mm512_unpackhi_epi64(ab, cd));
  const __m256i v = _mm256_add_epi32(_mm512_castsi512_si256(u), _mm512_extracti64x4_epi64(u, 1));
  return _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
}

TQLM_VNNI inline __m128i Sum4x8(__m256i a, __m256i b, __m256i c, __m256i d) {
  const __m256i ab = _mm256_add_epi32(_mm256_unpacklo_epi32(a, b), _mm256_unpackhi_epi32(a, b));
  const __m256i cd = _mm256_add_epi32(_mm256_unpacklo_epi32(c, d), _mm256_unpackhi_epi32(c, d));
  const __m256i u =
      _mm256_add_epi32(_mm256_unpacklo_epi64(ab, cd), _mm256_unpackhi_epi64(ab, cd));
  return _mm_add_epi32(_mm256_castsi256_si128(u), _mm256_extracti128_si256(u, 1));
}

// Four rows' fp16 fields at the same offset of their super-blocks, as floats.
template <int R>
TQLM_VNNI inline __m128 Halves4(const uint8_t* const* row, size_t offset) {
  static_assert(R == 4);
  return _mm_set_ps(Half(row[3] + offset), Half(row[2] + offset), Half(row[1] + offset),
                    Half(row[0] + offset));
}

// Q4_K (kHigh = false) / Q5_K (kHigh = true): R rows x NT tokens.
template <bool kHigh, int R, int NT>
TQLM_VNNI void TileK4(const uint8_t* w, size_t row_bytes, int64_t r0, int64_t nsb,
                      const ActQ8& act, int t0, float* y, size_t rows) {
  constexpr size_t kB = kHigh ? 176 : 144;
  constexpr size_t kQs = kHigh ? 48 : 16;
  const uint8_t* row[R];
  TQLM_UNROLL
  for (int r = 0; r < R; ++r) row[r] = w + size_t(r0 + r) * row_bytes;
  float f[R][NT];  // the float chains (R == 4: f4, one 128-bit lane per row)
  __m128 f4[NT];
  TQLM_UNROLL
  for (int k = 0; k < NT; ++k) f4[k] = _mm_setzero_ps();
  TQLM_UNROLL
  for (int r = 0; r < R; ++r) {
    TQLM_UNROLL
    for (int k = 0; k < NT; ++k) f[r][k] = 0.0f;
  }
  const uintptr_t next = reinterpret_cast<uintptr_t>(w) + size_t(r0 + R) * row_bytes;
  const __m512i low4 = _mm512_set1_epi8(0x0F);
  for (int64_t sb = 0; sb < nsb; ++sb) {
    __m512i sc16[R], isum[R][NT];
    __m256i mins16[R];  // (m_j, m_j) word pairs, against the 16-value sums S16
    TQLM_UNROLL
    for (int r = 0; r < R; ++r) {
      const uint8_t* b = row[r] + size_t(sb) * kB;
      const ScalesMinsK4Words u = UnpackScalesMinsK4(b + 4);
      sc16[r] = _mm512_zextsi256_si512(
          _mm256_cvtepu8_epi16(_mm_set_epi32(0, 0, int(u.sc_hi), int(u.sc_lo))));
      const __m256i m32 = _mm256_cvtepu8_epi32(_mm_set_epi32(0, 0, int(u.mn_hi), int(u.mn_lo)));
      mins16[r] = _mm256_or_si256(m32, _mm256_slli_epi32(m32, 16));
      TQLM_UNROLL
      for (int k = 0; k < NT; ++k) isum[r][k] = _mm512_setzero_si512();
    }
    TQLM_UNROLL
    for (int c = 0; c < 4; ++c) {
      const int64_t p = 4 * sb + c;
      if constexpr (NT == 1) PrefetchRows<R>(next, row_bytes, p);
      __m512i a[NT];
      TQLM_UNROLL
      for (int k = 0; k < NT; ++k) a[k] = _mm512_loadu_si512(act.q_at(t0 + k) + 64 * p);
      const __m512i sel = _mm512_load_si512(kSel.k4[c]);
      TQLM_UNROLL
      for (int r = 0; r < R; ++r) {
        const uint8_t* b = row[r] + size_t(sb) * kB;
        __m512i q = _mm512_broadcast_i64x4(
            _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + kQs + 32 * c)));
        q = _mm512_and_si512(_mm512_mask_srli_epi16(q, __mmask32(0xFFFF0000u), q, 4), low4);
        if constexpr (kHigh) {
          const __m512i h = _mm512_broadcast_i64x4(
              _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + 16)));
          // Bit 2c of qh for the low nibbles, 2c + 1 for the high ones, moved to bit 4.
          const __m512i shifted = _mm512_mask_srli_epi16(_mm512_srli_epi16(h, 2 * c),
                                                         __mmask32(0xFFFF0000u), h, 2 * c + 1);
          q = _mm512_or_si512(
              q, _mm512_slli_epi16(_mm512_and_si512(shifted, _mm512_set1_epi8(1)), 4));
        }
        const __m512i scw = _mm512_permutexvar_epi16(sel, sc16[r]);
        TQLM_UNROLL
        for (int k = 0; k < NT; ++k) {
          isum[r][k] = _mm512_add_epi32(
              isum[r][k], _mm512_madd_epi16(_mm512_maddubs_epi16(q, a[k]), scw));
        }
      }
    }
    if constexpr (R == 4) {  // four rows at once in 128-bit lanes, the same steps per lane
      const uint8_t* blk[4];
      TQLM_UNROLL
      for (int r = 0; r < 4; ++r) blk[r] = row[r] + size_t(sb) * kB;
      const __m128 d4 = Halves4<R>(blk, 0);
      const __m128 ndmin4 = _mm_xor_ps(Halves4<R>(blk, 2), _mm_set1_ps(-0.0f));
      TQLM_UNROLL
      for (int k = 0; k < NT; ++k) {
        const __m128 dx = _mm_set1_ps(act.d_at(t0 + k)[8 * sb]);
        const __m256i s16 = _mm256_loadu_si256(
            reinterpret_cast<const __m256i*>(act.isum16_at(t0 + k) + 16 * sb));
        const __m128i i4 = Sum4x16(isum[0][k], isum[1][k], isum[2][k], isum[3][k]);
        const __m128i m4 = Sum4x8(
            _mm256_madd_epi16(s16, mins16[0]), _mm256_madd_epi16(s16, mins16[1]),
            _mm256_madd_epi16(s16, mins16[2]), _mm256_madd_epi16(s16, mins16[3]));
        f4[k] = _mm_fmadd_ps(_mm_cvtepi32_ps(i4), _mm_mul_ps(dx, d4), f4[k]);
        f4[k] = _mm_fmadd_ps(_mm_cvtepi32_ps(m4), _mm_mul_ps(dx, ndmin4), f4[k]);
      }
    } else {
      TQLM_UNROLL
      for (int k = 0; k < NT; ++k) {
        const float dx = act.d_at(t0 + k)[8 * sb];
        const __m256i s16 = _mm256_loadu_si256(
            reinterpret_cast<const __m256i*>(act.isum16_at(t0 + k) + 16 * sb));
        TQLM_UNROLL
        for (int r = 0; r < R; ++r) {
          const uint8_t* b = row[r] + size_t(sb) * kB;
          const int32_t i = Sum16(isum[r][k]);
          const int32_t m = Sum8(_mm256_madd_epi16(s16, mins16[r]));
          f[r][k] = Fma(i, dx * Half(b), f[r][k]);
          f[r][k] = Fma(m, dx * -Half(b + 2), f[r][k]);
        }
      }
    }
  }
  TQLM_UNROLL
  for (int k = 0; k < NT; ++k) {
    if constexpr (R == 4) {
      _mm_storeu_ps(y + size_t(t0 + k) * rows + size_t(r0), f4[k]);
    } else {
      TQLM_UNROLL
      for (int r = 0; r < R; ++r) y[size_t(t0 + k) * rows + size_t(r0 + r)] = f[r][k];
    }
  }
}

// Q6_K: the -32 offset folds into the integer sum: I = sum sc_g q a - 32 sum_g sc_g S16_g.
template <int R, int NT>
TQLM_VNNI void TileQ6(const uint8_t* w, size_t row_bytes, int64_t r0, int64_t nsb,
                      const ActQ8& act, int t0, float* y, size_t rows) {
  constexpr size_t kB = 210;
  const uint8_t* row[R];
  TQLM_UNROLL
  for (int r = 0; r < R; ++r) row[r] = w + size_t(r0 + r) * row_bytes;
  float f[R][NT];  // the float chains (R == 4: f4, one 128-bit lane per row)
  __m128 f4[NT];
  TQLM_UNROLL
  for (int k = 0; k < NT; ++k) f4[k] = _mm_setzero_ps();
  TQLM_UNROLL
  for (int r = 0; r < R; ++r) {
    TQLM_UNROLL
    for (int k = 0; k < NT; ++k) f[r][k] = 0.0f;
  }
  const uintptr_t next = reinterpret_cast<uintptr_t>(w) + size_t(r0 + R) * row_bytes;
  const __m512i low4 = _mm512_set1_epi8(0x0F), low2 = _mm512_set1_epi8(0x03);
  for (int64_t sb = 0; sb < nsb; ++sb) {
    __m512i sc16[R], isum[R][NT];
    TQLM_UNROLL
    for (int r = 0; r < R; ++r) {
      const uint8_t* b = row[r] + size_t(sb) * kB;
      sc16[r] = _mm512_zextsi256_si512(
          _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(b + 192))));
      TQLM_UNROLL
      for (int k = 0; k < NT; ++k) isum[r][k] = _mm512_setzero_si512();
    }
    TQLM_UNROLL
    for (int c = 0; c < 4; ++c) {
      const int64_t p = 4 * sb + c;
      if constexpr (NT == 1) PrefetchRows<R>(next, row_bytes, p);
      __m512i a[NT];
      TQLM_UNROLL
      for (int k = 0; k < NT; ++k) a[k] = _mm512_loadu_si512(act.q_at(t0 + k) + 64 * p);
      const __m512i sel = _mm512_load_si512(kSel.q6[c]);
      const int h = c >> 1;
      TQLM_UNROLL
      for (int r = 0; r < R; ++r) {
        const uint8_t* b = row[r] + size_t(sb) * kB;
        __m512i ql = _mm512_loadu_si512(b + 64 * h);
        const __m256i qh = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + 128 + 32 * h));
        __m512i qhz =
            _mm512_inserti64x4(_mm512_castsi256_si512(qh), _mm256_srli_epi16(qh, 2), 1);
        if (c & 1) {
          ql = _mm512_srli_epi16(ql, 4);
          qhz = _mm512_srli_epi16(qhz, 4);
        }
        const __m512i q = _mm512_or_si512(_mm512_and_si512(ql, low4),
                                          _mm512_slli_epi16(_mm512_and_si512(qhz, low2), 4));
        const __m512i scw = _mm512_permutexvar_epi16(sel, sc16[r]);
        TQLM_UNROLL
        for (int k = 0; k < NT; ++k) {
          isum[r][k] = _mm512_add_epi32(
              isum[r][k], _mm512_madd_epi16(_mm512_maddubs_epi16(q, a[k]), scw));
        }
      }
    }
    TQLM_UNROLL
    for (int k = 0; k < NT; ++k) {
      const __m256i s16 = _mm256_loadu_si256(
          reinterpret_cast<const __m256i*>(act.isum16_at(t0 + k) + 16 * sb));
      // The offset folds in before the lanes are summed: isum -= 32 * sum_g sc_g S16_g.
      TQLM_UNROLL
      for (int r = 0; r < R; ++r) {
        const __m256i off = _mm256_madd_epi16(s16, _mm512_castsi512_si256(sc16[r]));
        isum[r][k] = _mm512_sub_epi32(isum[r][k],
                                      _mm512_zextsi256_si512(_mm256_slli_epi32(off, 5)));
      }
    }
    if constexpr (R == 4) {
      const uint8_t* blk[4];
      TQLM_UNROLL
      for (int r = 0; r < 4; ++r) blk[r] = row[r] + size_t(sb) * kB;
      const __m128 d4 = Halves4<R>(blk, 208);
      TQLM_UNROLL
      for (int k = 0; k < NT; ++k) {
        const __m128 dx = _mm_set1_ps(act.d_at(t0 + k)[8 * sb]);
        const __m128i i4 = Sum4x16(isum[0][k], isum[1][k], isum[2][k], isum[3][k]);
        f4[k] = _mm_fmadd_ps(_mm_cvtepi32_ps(i4), _mm_mul_ps(dx, d4), f4[k]);
      }
    } else {
      TQLM_UNROLL
      for (int k = 0; k < NT; ++k) {
        const float dx = act.d_at(t0 + k)[8 * sb];
        TQLM_UNROLL
        for (int r = 0; r < R; ++r) {
          f[r][k] = Fma(Sum16(isum[r][k]), dx * Half(row[r] + size_t(sb) * kB + 208), f[r][k]);
        }
      }
    }
  }
  TQLM_UNROLL
  for (int k = 0; k < NT; ++k) {
    if constexpr (R == 4) {
      _mm_storeu_ps(y + size_t(t0 + k) * rows + size_t(r0), f4[k]);
    } else {
      TQLM_UNROLL
      for (int r = 0; r < R; ++r) y[size_t(t0 + k) * rows + size_t(r0 + r)] = f[r][k];
    }
  }
}

using TileFn = void (*)(const uint8_t*, size_t, int64_t, int64_t, const ActQ8&, int, float*,
                        size_t);
constexpr int kRowTile = 4;

struct KQuantKernels {
  TileFn wide[4], narrow[4];  // kRowTile rows / 1 row, 1..4 tokens
};

template <bool kHigh>
constexpr KQuantKernels kK4 = {
    {&TileK4<kHigh, kRowTile, 1>, &TileK4<kHigh, kRowTile, 2>, &TileK4<kHigh, kRowTile, 3>,
     &TileK4<kHigh, kRowTile, 4>},
    {&TileK4<kHigh, 1, 1>, &TileK4<kHigh, 1, 2>, &TileK4<kHigh, 1, 3>, &TileK4<kHigh, 1, 4>}};

constexpr KQuantKernels kQ6 = {
    {&TileQ6<kRowTile, 1>, &TileQ6<kRowTile, 2>, &TileQ6<kRowTile, 3>, &TileQ6<kRowTile, 4>},
    {&TileQ6<1, 1>, &TileQ6<1, 2>, &TileQ6<1, 3>, &TileQ6<1, 4>}};

}  // namespace

bool VnniKQuantSupports(TensorType type) {
  return type == TensorType::kQ4_K || type == TensorType::kQ5_K || type == TensorType::kQ6_K;
}

void VnniMatMulKQuant(TensorType type, const uint8_t* w, size_t row_bytes, int64_t rows,
                      int64_t r0, int64_t r1, const ActQ8& act, int t0, int t1, float* y) {
  const KQuantKernels* k = type == TensorType::kQ4_K   ? &kK4<false>
                           : type == TensorType::kQ5_K ? &kK4<true>
                           : type == TensorType::kQ6_K ? &kQ6
                                                       : nullptr;
  if (k == nullptr) return;
  const int64_t nsb = act.cols / 256;
  for (int t = t0; t < t1; t += 4) {
    const int nt = t1 - t < 4 ? t1 - t : 4;
    int64_t r = r0;
    for (; r + kRowTile <= r1; r += kRowTile) {
      k->wide[nt - 1](w, row_bytes, r, nsb, act, t, y, size_t(rows));
    }
    for (; r < r1; ++r) k->narrow[nt - 1](w, row_bytes, r, nsb, act, t, y, size_t(rows));
  }
}

#else  // !TQLM_HAVE_VNNI_KERNELS

bool VnniKQuantSupports(TensorType) { return false; }
void VnniMatMulKQuant(TensorType, const uint8_t*, size_t, int64_t, int64_t, int64_t,
                      const ActQ8&, int, int, float*) {}

#endif

}  // namespace tqlm::kernels::internal
