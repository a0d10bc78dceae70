// Weight decoders of the AVX-512 VNNI kernels: each turns 64 values of a quantized row into
// bytes plus per-lane scales. Shared by the dot-product tiles (matmul_vnni.cc) and the row
// decoders that feed the prefill engines (matmul_vnni_rows.cc). Include only from .cc files
// that call these after HaveVnniKernels().
#pragma once

#include "kernels/cpu/matmul_internal.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define TQLM_HAVE_VNNI_KERNELS 1
// GCC 12 flags the deliberately undefined upper lanes of _mm512_cast* (from
// _mm512_undefined_*) as uninitialized: a known false positive in its own headers.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#else
#define TQLM_HAVE_VNNI_KERNELS 0
#endif

#if TQLM_HAVE_VNNI_KERNELS

#define TQLM_VNNI \
  __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx512vbmi,avx2,fma,f16c")))

// Accumulators live in registers only if the small fixed-count loops are fully unrolled,
// which -O2 does not guarantee.
#define TQLM_UNROLL _Pragma("GCC unroll 16")

namespace tqlm::kernels::internal::vnni {

// --- Decoders ------------------------------------------------------------------------------
// A decoder turns 64 weight values of one row (chunk p: a pair of 32-blocks, or a quarter of a
// 256-value super-block) into
//   wq: 64 bytes, unsigned values (Q8_0: signed values with `neg` marking negatives),
//   ws: per int32 lane (4 values), the float scale the integer dot is multiplied with,
//   cw: per lane, a weight-side factor of the activation sums term (minimums and constant
//       offsets), multiplied with the activation's `Sums` vector (s_x or s16_x).
struct Chunk {
  __m512i wq;
  __m512 ws, cw;
  __mmask64 neg;
};

// Byte index tables for vpermb: where each of the 64 values' nibble bytes sit in a pair of
// blocks loaded from the first block's start. Built once.
struct PairTables {
  alignas(64) uint8_t nib[4][64];   // per format Q4_0, Q4_1, Q5_0, Q5_1 (qs offsets)
  alignas(64) uint16_t scale[5][32];  // per format incl. Q8_0: [d0 x8, d1 x8, m0 x8, m1 x8]
  alignas(64) uint8_t q8[64];         // Q8_0 values: bytes 2..33 and 36..67 of the pair
};

inline constexpr size_t kPairBlockBytes[5] = {18, 20, 22, 24, 34};
inline constexpr size_t kPairQsOffset[5] = {2, 4, 6, 8, 2};

inline const PairTables& Tables() {
  static const PairTables t = [] {
    PairTables p{};
    for (int f = 0; f < 5; ++f) {
      const size_t b = kPairBlockBytes[f], qs = kPairQsOffset[f];
      if (f < 4) {
        for (int i = 0; i < 64; ++i) {
          const size_t block = size_t(i) / 32, j = size_t(i) % 16;
          p.nib[f][i] = uint8_t(block * b + qs + j);
        }
      }
      const bool has_min = f == 1 || f == 3;
      for (int i = 0; i < 32; ++i) {
        const size_t block = size_t(i % 16) / 8;
        const size_t field = i < 16 ? 0 : (has_min ? 1 : 0);  // d, or m (second half word)
        p.scale[f][i] = uint16_t(block * b / 2 + field);
      }
    }
    for (int i = 0; i < 64; ++i) p.q8[i] = uint8_t(i < 32 ? 2 + i : 36 + (i - 32));
    return p;
  }();
  return t;
}

// Q4_0 (F=0), Q4_1 (1), Q5_0 (2), Q5_1 (3), Q8_0 (4): pairs of 32-value blocks.
template <int F>
struct PairDecoder {
  static constexpr size_t kB = kPairBlockBytes[F];
  static constexpr bool kSigned = F == 4;
  static constexpr bool kSums16 = false;  // uses ActQ8::s_x
  static constexpr bool kCorr = F != 4;
  const uint8_t* row;
  size_t row_bytes;
  __m512i nib_idx, scale_idx, q8_idx;

  TQLM_VNNI void Init(const uint8_t* r, size_t rb) {
    row = r;
    row_bytes = rb;
    const PairTables& t = Tables();
    if constexpr (F < 4) nib_idx = _mm512_loadu_si512(t.nib[F]);
    scale_idx = _mm512_loadu_si512(t.scale[F]);
    if constexpr (F == 4) q8_idx = _mm512_loadu_si512(t.q8);
  }

  TQLM_VNNI Chunk Load(int64_t p) const {
    const uint8_t* b0 = row + size_t(p) * 2 * kB;
    // Masked loads stop at the row's end: an odd last block reads zeros for its partner,
    // whose zero scale then contributes nothing.
    const size_t left = row_bytes - size_t(p) * 2 * kB;
    __m512i v;
    if (left >= 64) {
      v = _mm512_loadu_si512(b0);
    } else {
      v = _mm512_maskz_loadu_epi8((__mmask64(1) << left) - 1, b0);
    }
    Chunk c;
    const __m512i sw = _mm512_permutexvar_epi16(scale_idx, v);
    const __m512 d = _mm512_cvtph_ps(_mm512_castsi512_si256(sw));
    c.ws = d;
    c.neg = 0;
    if constexpr (F == 4) {
      const size_t n1 = left > 64 ? (left - 64 < 4 ? left - 64 : 4) : 0;
      const __m512i v1 = _mm512_maskz_loadu_epi8((__mmask64(1) << n1) - 1, b0 + 64);
      const __m512i q = _mm512_permutex2var_epi8(v, q8_idx, v1);
      c.neg = _mm512_movepi8_mask(q);
      c.wq = _mm512_abs_epi8(q);
      c.cw = _mm512_setzero_ps();
    } else {
      __m512i q = _mm512_permutexvar_epi8(nib_idx, v);
      // Values 16-31 of each block are the high nibbles: shift those words right by 4.
      q = _mm512_mask_srli_epi16(q, __mmask32(0xFF00FF00u), q, 4);
      q = _mm512_and_si512(q, _mm512_set1_epi8(0x0F));
      if constexpr (F == 2 || F == 3) {
        const size_t qh = F == 2 ? 2 : 4;
        uint32_t h0, h1 = 0;
        std::memcpy(&h0, b0 + qh, 4);
        if (left >= 2 * kB) std::memcpy(&h1, b0 + kB + qh, 4);
        const __mmask64 m = __mmask64(h0) | (__mmask64(h1) << 32);
        q = _mm512_or_si512(q, _mm512_maskz_mov_epi8(m, _mm512_set1_epi8(0x10)));
      }
      c.wq = q;
      if constexpr (F == 1 || F == 3) {
        c.cw = _mm512_cvtph_ps(_mm512_extracti64x4_epi64(sw, 1));  // minimum: + m * sum
      } else {
        c.cw = _mm512_mul_ps(d, _mm512_set1_ps(F == 0 ? -8.0f : -16.0f));  // offset
      }
    }
    return c;
  }
};

// The 8 (scale, min) pairs of a Q4_K/Q5_K block as floats: lanes 0-7 scale_j * d, lanes 8-15
// min_j * -dmin.
TQLM_VNNI inline __m512 ScalesMinsK4(const uint8_t* s, float d, float dmin) {
  const ScalesMinsK4Words w = UnpackScalesMinsK4(s);
  const __m128i bytes = _mm_set_epi32(int(w.mn_hi), int(w.mn_lo), int(w.sc_hi), int(w.sc_lo));
  const __m512 f = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(bytes));
  const __m512 mult = _mm512_insertf32x8(_mm512_set1_ps(d), _mm256_set1_ps(-dmin), 1);
  return _mm512_mul_ps(f, mult);
}

// Per-chunk lane selectors: k4[c] spreads pair (2c, 2c+1) over lanes 0-7 / 8-15 (scales),
// k4[4 + c] the same pairs' mins (lanes 8-15 of ScalesMinsK4); q6[c] gives int32 lane
// group g of chunk c the scale of 16-value group 4c + g.
struct LaneIndexTables {
  alignas(64) int32_t k4[8][16];
  alignas(64) int32_t q6[4][16];
};

constexpr LaneIndexTables MakeLaneIndex() {
  LaneIndexTables x{};
  for (int c = 0; c < 4; ++c) {
    for (int l = 0; l < 16; ++l) {
      x.k4[c][l] = 2 * c + (l >= 8 ? 1 : 0);
      x.k4[4 + c][l] = 8 + x.k4[c][l];
      x.q6[c][l] = (l + 16 * c) >> 2;
    }
  }
  return x;
}
inline constexpr LaneIndexTables kLaneIndex = MakeLaneIndex();

TQLM_VNNI inline float Half(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return _cvtsh_ss(h);
}

// Q4_K (kHigh = false) and Q5_K (kHigh = true): chunk c of a super-block holds sub-blocks
// 2c (low nibbles of 32 bytes) and 2c+1 (high nibbles).
template <bool kHigh>
struct K4Decoder {
  static constexpr size_t kB = kHigh ? 176 : 144;
  static constexpr size_t kQs = kHigh ? 48 : 16;
  static constexpr bool kSigned = false, kSums16 = false, kCorr = true;
  const uint8_t* row;
  __m512 sm;

  TQLM_VNNI void Init(const uint8_t* r, size_t) { row = r; }

  TQLM_VNNI Chunk Load(int64_t p) {
    const int c = int(p & 3);
    const uint8_t* b = row + size_t(p >> 2) * kB;
    if (c == 0) sm = ScalesMinsK4(b + 4, Half(b), Half(b + 2));
    const __m256i x = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + kQs + 32 * c));
    __m512i q = _mm512_inserti64x4(_mm512_castsi256_si512(x), _mm256_srli_epi16(x, 4), 1);
    q = _mm512_and_si512(q, _mm512_set1_epi8(0x0F));
    if constexpr (kHigh) {
      const __m256i qh = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + 16));
      const __m256i one = _mm256_set1_epi8(1);
      const __m256i h0 = _mm256_and_si256(_mm256_srl_epi16(qh, _mm_cvtsi32_si128(2 * c)), one);
      const __m256i h1 = _mm256_and_si256(_mm256_srl_epi16(qh, _mm_cvtsi32_si128(2 * c + 1)), one);
      const __m512i h = _mm512_inserti64x4(_mm512_castsi256_si512(h0), h1, 1);
      q = _mm512_or_si512(q, _mm512_slli_epi16(h, 4));
    }
    const __m512 ws = _mm512_permutexvar_ps(_mm512_load_si512(kLaneIndex.k4[c]), sm);
    const __m512 cw = _mm512_permutexvar_ps(_mm512_load_si512(kLaneIndex.k4[4 + c]), sm);
    return Chunk{q, ws, cw, 0};
  }
};

// Q6_K: half h of a super-block gives chunks 2h (low nibbles of ql) and 2h+1 (high nibbles),
// with 2 more bits each from qh; int8 scale per 16 values; offset -32.
struct Q6KDecoder {
  static constexpr bool kSigned = false, kSums16 = true, kCorr = true;
  const uint8_t* row;
  __m512 scf;

  TQLM_VNNI void Init(const uint8_t* r, size_t) { row = r; }

  TQLM_VNNI Chunk Load(int64_t p) {
    const int c = int(p & 3), h = c >> 1;
    const uint8_t* b = row + size_t(p >> 2) * 210;
    if (c == 0) {
      scf = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(
                              _mm_loadu_si128(reinterpret_cast<const __m128i*>(b + 192)))),
                          _mm512_set1_ps(Half(b + 208)));
    }
    const __m512i ql = _mm512_loadu_si512(b + 64 * h);
    const __m256i qh = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + 128 + 32 * h));
    __m512i qhz = _mm512_inserti64x4(_mm512_castsi256_si512(qh), _mm256_srli_epi16(qh, 2), 1);
    __m512i lo = ql;
    if (c & 1) {
      lo = _mm512_srli_epi16(ql, 4);
      qhz = _mm512_srli_epi16(qhz, 4);
    }
    const __m512i q = _mm512_or_si512(
        _mm512_and_si512(lo, _mm512_set1_epi8(0x0F)),
        _mm512_slli_epi16(_mm512_and_si512(qhz, _mm512_set1_epi8(0x03)), 4));
    const __m512 ws = _mm512_permutexvar_ps(_mm512_load_si512(kLaneIndex.q6[c]), scf);
    return Chunk{q, ws, _mm512_mul_ps(ws, _mm512_set1_ps(-32.0f)), 0};
  }
};

}  // namespace tqlm::kernels::internal::vnni

#endif  // TQLM_HAVE_VNNI_KERNELS
