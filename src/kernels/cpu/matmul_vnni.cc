// AVX-512 VNNI kernels: quantized weight rows times ActQ8 activations with vpdpbusd (u8 x s8
// -> s32), decoding each weight block once per tile of up to 4 tokens.
//
// Every kernel works on 64 values (one 512-bit vector) at a time, which is either a pair of
// 32-value blocks (Q4_0 ... Q8_0) or a quarter of a 256-value super-block (k-quants); the
// activation layout (ActQ8) is natural order, so the 16 int32 lanes of a dot product hold
// lanes 0-7 for the first 32 values and 8-15 for the second, matching d_x / s_x.
//
// Weights are decoded to unsigned bytes; a constant offset in the format (Q4_0's -8, Q6_K's
// -32, ...) or a per-block minimum is applied through the activation block sums
// (ActQ8::s_x/s32/s16) in a second accumulator, instead of per value.
//
// The functions carry a target attribute and are only called after a runtime CPU check, so
// the library itself still runs on any x86-64.
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

#include <cstdlib>
#include <cstring>
#else
#define TQLM_HAVE_VNNI_KERNELS 0
#endif

namespace tqlm::kernels::internal {

#if TQLM_HAVE_VNNI_KERNELS

#define TQLM_VNNI \
  __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx2,fma,f16c")))

namespace {

TQLM_VNNI inline float Half(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return _cvtsh_ss(h);
}

TQLM_VNNI inline uint32_t Load32(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

// [a x 8, b x 8]
TQLM_VNNI inline __m512 PairScale(float a, float b) {
  return _mm512_insertf32x8(_mm512_set1_ps(a), _mm256_set1_ps(b), 1);
}

// 16 packed nibbles of two blocks -> 64 bytes: block0 low nibbles, block0 high, block1 low,
// block1 high: the natural value order of both blocks.
TQLM_VNNI inline __m512i Nibbles2(const uint8_t* qs0, const uint8_t* qs1) {
  const __m128i x0 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(qs0));
  const __m128i x1 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(qs1));
  __m512i v = _mm512_castsi128_si512(x0);
  v = _mm512_inserti32x4(v, _mm_srli_epi16(x0, 4), 1);
  v = _mm512_inserti32x4(v, x1, 2);
  v = _mm512_inserti32x4(v, _mm_srli_epi16(x1, 4), 3);
  return _mm512_and_si512(v, _mm512_set1_epi8(0x0F));
}

// Bit j of each 32-bit qh sets bit 4 of value j of its block.
TQLM_VNNI inline __m512i HighBits2(const uint8_t* qh0, const uint8_t* qh1) {
  const __mmask64 m = __mmask64(Load32(qh0)) | (__mmask64(Load32(qh1)) << 32);
  return _mm512_maskz_mov_epi8(m, _mm512_set1_epi8(0x10));
}

// One decoded pair of 32-value blocks.
struct Pair {
  __m512i q;     // unsigned values (or raw signed values for Q8_0)
  __m512 d;      // weight scale per lane
  __m512 m;      // Q4_1/Q5_1: weight minimum per lane
};

// Format descriptions for the pair kernel. kOffset: the format subtracts it from q (applied
// through block sums); kMin: the format adds a per-block minimum; kSigned: q is int8.
struct FmtQ4_0 {
  static constexpr size_t kBytes = 18;
  static constexpr float kOffset = 8;
  static constexpr bool kMin = false, kSigned = false;
  TQLM_VNNI static Pair Decode(const uint8_t* b0, const uint8_t* b1) {
    return {Nibbles2(b0 + 2, b1 + 2), PairScale(Half(b0), Half(b1)), _mm512_setzero_ps()};
  }
};
struct FmtQ4_1 {
  static constexpr size_t kBytes = 20;
  static constexpr float kOffset = 0;
  static constexpr bool kMin = true, kSigned = false;
  TQLM_VNNI static Pair Decode(const uint8_t* b0, const uint8_t* b1) {
    return {Nibbles2(b0 + 4, b1 + 4), PairScale(Half(b0), Half(b1)),
            PairScale(Half(b0 + 2), Half(b1 + 2))};
  }
};
struct FmtQ5_0 {
  static constexpr size_t kBytes = 22;
  static constexpr float kOffset = 16;
  static constexpr bool kMin = false, kSigned = false;
  TQLM_VNNI static Pair Decode(const uint8_t* b0, const uint8_t* b1) {
    const __m512i q = _mm512_or_si512(Nibbles2(b0 + 6, b1 + 6), HighBits2(b0 + 2, b1 + 2));
    return {q, PairScale(Half(b0), Half(b1)), _mm512_setzero_ps()};
  }
};
struct FmtQ5_1 {
  static constexpr size_t kBytes = 24;
  static constexpr float kOffset = 0;
  static constexpr bool kMin = true, kSigned = false;
  TQLM_VNNI static Pair Decode(const uint8_t* b0, const uint8_t* b1) {
    const __m512i q = _mm512_or_si512(Nibbles2(b0 + 8, b1 + 8), HighBits2(b0 + 4, b1 + 4));
    return {q, PairScale(Half(b0), Half(b1)), PairScale(Half(b0 + 2), Half(b1 + 2))};
  }
};
struct FmtQ8_0 {
  static constexpr size_t kBytes = 34;
  static constexpr float kOffset = 0;
  static constexpr bool kMin = false, kSigned = true;
  TQLM_VNNI static Pair Decode(const uint8_t* b0, const uint8_t* b1) {
    const __m256i x0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b0 + 2));
    const __m256i x1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b1 + 2));
    return {_mm512_inserti64x4(_mm512_castsi256_si512(x0), x1, 1), PairScale(Half(b0), Half(b1)),
            _mm512_setzero_ps()};
  }
};

// Q4_0 ... Q8_0: y[k] = row . x[t0 + k] for k < NT.
template <class Fmt, int NT>
TQLM_VNNI void PairRow(const uint8_t* row, int64_t blocks, const ActQ8& act, int t0,
                       float* out, size_t out_stride) {
  __m512 acc[NT], cacc[NT];
  for (int k = 0; k < NT; ++k) acc[k] = cacc[k] = _mm512_setzero_ps();
  const int64_t pairs = (blocks + 1) / 2;
  for (int64_t p = 0; p < pairs; ++p) {
    const uint8_t* b0 = row + size_t(2 * p) * Fmt::kBytes;
    // An odd last block pairs with itself; its activation half is zero padded.
    const uint8_t* b1 = 2 * p + 1 < blocks ? b0 + Fmt::kBytes : b0;
    const Pair w = Fmt::Decode(b0, b1);
    __m512i wq = w.q;
    __mmask64 neg = 0;
    if constexpr (Fmt::kSigned) {
      neg = _mm512_movepi8_mask(w.q);
      wq = _mm512_abs_epi8(w.q);
    }
    for (int k = 0; k < NT; ++k) {
      __m512i a = _mm512_loadu_si512(act.q_at(t0 + k) + 64 * p);
      if constexpr (Fmt::kSigned) a = _mm512_mask_sub_epi8(a, neg, _mm512_setzero_si512(), a);
      const __m512i dot = _mm512_dpbusd_epi32(_mm512_setzero_si512(), wq, a);
      const __m512 dx = _mm512_loadu_ps(act.dx_at(t0 + k) + 16 * p);
      acc[k] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), _mm512_mul_ps(w.d, dx), acc[k]);
      if constexpr (Fmt::kMin || Fmt::kOffset != 0) {
        const __m512 sx = _mm512_loadu_ps(act.sx_at(t0 + k) + 16 * p);
        cacc[k] = _mm512_fmadd_ps(Fmt::kMin ? w.m : w.d, sx, cacc[k]);
      }
    }
  }
  for (int k = 0; k < NT; ++k) {
    float s = _mm512_reduce_add_ps(acc[k]);
    if constexpr (Fmt::kMin) s += _mm512_reduce_add_ps(cacc[k]);
    if constexpr (Fmt::kOffset != 0) s -= Fmt::kOffset * _mm512_reduce_add_ps(cacc[k]);
    out[size_t(k) * out_stride] = s;
  }
}

// The 8 (scale, min) pairs of a Q4_K/Q5_K block as floats times d / dmin.
TQLM_VNNI inline void ScalesMinsK4(const uint8_t* s, float d, float dmin, __m256* sc,
                                   __m256* mn) {
  alignas(8) uint8_t scb[8], mb[8];
  for (int j = 0; j < 8; ++j) UnpackScaleMinK4(s, j, &scb[j], &mb[j]);
  const __m256 fs = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64(
      reinterpret_cast<const __m128i*>(scb))));
  const __m256 fm = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64(
      reinterpret_cast<const __m128i*>(mb))));
  *sc = _mm256_mul_ps(fs, _mm256_set1_ps(d));
  *mn = _mm256_mul_ps(fm, _mm256_set1_ps(dmin));
}

// Q4_K (kHigh = false) and Q5_K (kHigh = true).
template <bool kHigh, int NT>
TQLM_VNNI void Q45KRow(const uint8_t* row, int64_t blocks, const ActQ8& act, int t0,
                       float* out, size_t out_stride) {
  constexpr size_t kBytes = kHigh ? 176 : 144;
  constexpr size_t kQs = kHigh ? 48 : 16;
  __m512 acc[NT];
  __m256 cacc[NT];
  for (int k = 0; k < NT; ++k) {
    acc[k] = _mm512_setzero_ps();
    cacc[k] = _mm256_setzero_ps();
  }
  const __m512i lo4 = _mm512_set1_epi8(0x0F);
  const __m256i one = _mm256_set1_epi8(1);
  for (int64_t sb = 0; sb < blocks; ++sb) {
    const uint8_t* b = row + size_t(sb) * kBytes;
    __m256 sc8, mn8;
    ScalesMinsK4(b + 4, Half(b), Half(b + 2), &sc8, &mn8);
    const __m512 sc16 = _mm512_castps256_ps512(sc8);
    __m256i qh = _mm256_setzero_si256();
    if constexpr (kHigh) qh = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + 16));
    for (int c = 0; c < 4; ++c) {
      const __m256i x = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + kQs + 32 * c));
      __m512i wq = _mm512_inserti64x4(_mm512_castsi256_si512(x), _mm256_srli_epi16(x, 4), 1);
      wq = _mm512_and_si512(wq, lo4);
      if constexpr (kHigh) {
        const __m256i h0 = _mm256_and_si256(_mm256_srl_epi16(qh, _mm_cvtsi32_si128(2 * c)), one);
        const __m256i h1 =
            _mm256_and_si256(_mm256_srl_epi16(qh, _mm_cvtsi32_si128(2 * c + 1)), one);
        const __m512i h = _mm512_inserti64x4(_mm512_castsi256_si512(h0), h1, 1);
        wq = _mm512_or_si512(wq, _mm512_slli_epi16(h, 4));
      }
      const __m512i idx = _mm512_set_epi32(2 * c + 1, 2 * c + 1, 2 * c + 1, 2 * c + 1,
                                           2 * c + 1, 2 * c + 1, 2 * c + 1, 2 * c + 1, 2 * c,
                                           2 * c, 2 * c, 2 * c, 2 * c, 2 * c, 2 * c, 2 * c);
      const __m512 wscale = _mm512_permutexvar_ps(idx, sc16);
      const int64_t p = sb * 4 + c;
      for (int k = 0; k < NT; ++k) {
        const __m512i a = _mm512_loadu_si512(act.q_at(t0 + k) + 64 * p);
        const __m512i dot = _mm512_dpbusd_epi32(_mm512_setzero_si512(), wq, a);
        const __m512 dx = _mm512_loadu_ps(act.dx_at(t0 + k) + 16 * p);
        acc[k] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), _mm512_mul_ps(wscale, dx), acc[k]);
      }
    }
    for (int k = 0; k < NT; ++k) {
      const __m256 s = _mm256_loadu_ps(act.s32_at(t0 + k) + 8 * sb);
      cacc[k] = _mm256_fmadd_ps(mn8, s, cacc[k]);
    }
  }
  for (int k = 0; k < NT; ++k) {
    const __m256 c = cacc[k];
    const __m128 c4 = _mm_add_ps(_mm256_castps256_ps128(c), _mm256_extractf128_ps(c, 1));
    const __m128 c2 = _mm_add_ps(c4, _mm_movehl_ps(c4, c4));
    const float corr = _mm_cvtss_f32(_mm_add_ss(c2, _mm_movehdup_ps(c2)));
    out[size_t(k) * out_stride] = _mm512_reduce_add_ps(acc[k]) - corr;
  }
}

// Q6_K: values q - 32 with one int8 scale per 16 values.
template <int NT>
TQLM_VNNI void Q6KRow(const uint8_t* row, int64_t blocks, const ActQ8& act, int t0, float* out,
                      size_t out_stride) {
  __m512 acc[NT], cacc[NT];
  for (int k = 0; k < NT; ++k) acc[k] = cacc[k] = _mm512_setzero_ps();
  const __m512i lo4 = _mm512_set1_epi8(0x0F);
  const __m512i lo2 = _mm512_set1_epi8(0x03);
  for (int64_t sb = 0; sb < blocks; ++sb) {
    const uint8_t* b = row + size_t(sb) * 210;
    const float d = Half(b + 208);
    const __m512 scf = _mm512_mul_ps(
        _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(
            _mm_loadu_si128(reinterpret_cast<const __m128i*>(b + 192)))),
        _mm512_set1_ps(d));
    for (int h = 0; h < 2; ++h) {
      const __m512i ql = _mm512_loadu_si512(b + 64 * h);
      const __m256i qh = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + 128 + 32 * h));
      const __m512i qhz = _mm512_inserti64x4(_mm512_castsi256_si512(qh),
                                             _mm256_srli_epi16(qh, 2), 1);
      __m512i wq[2];
      wq[0] = _mm512_or_si512(_mm512_and_si512(ql, lo4),
                              _mm512_slli_epi16(_mm512_and_si512(qhz, lo2), 4));
      wq[1] = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(ql, 4), lo4),
                              _mm512_slli_epi16(
                                  _mm512_and_si512(_mm512_srli_epi16(qhz, 4), lo2), 4));
      for (int part = 0; part < 2; ++part) {
        const int c = 2 * h + part;  // 64-value chunk of the super-block: groups 4c..4c+3
        const __m512i idx = _mm512_set_epi32(4 * c + 3, 4 * c + 3, 4 * c + 3, 4 * c + 3,
                                             4 * c + 2, 4 * c + 2, 4 * c + 2, 4 * c + 2,
                                             4 * c + 1, 4 * c + 1, 4 * c + 1, 4 * c + 1, 4 * c,
                                             4 * c, 4 * c, 4 * c);
        const __m512 wscale = _mm512_permutexvar_ps(idx, scf);
        const int64_t p = sb * 4 + c;
        for (int k = 0; k < NT; ++k) {
          const __m512i a = _mm512_loadu_si512(act.q_at(t0 + k) + 64 * p);
          const __m512i dot = _mm512_dpbusd_epi32(_mm512_setzero_si512(), wq[part], a);
          const __m512 dx = _mm512_loadu_ps(act.dx_at(t0 + k) + 16 * p);
          acc[k] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), _mm512_mul_ps(wscale, dx), acc[k]);
        }
      }
    }
    for (int k = 0; k < NT; ++k) {
      cacc[k] = _mm512_fmadd_ps(scf, _mm512_loadu_ps(act.s16_at(t0 + k) + 16 * sb), cacc[k]);
    }
  }
  for (int k = 0; k < NT; ++k) {
    out[size_t(k) * out_stride] =
        _mm512_reduce_add_ps(acc[k]) - 32.0f * _mm512_reduce_add_ps(cacc[k]);
  }
}

using RowFn = void (*)(const uint8_t*, int64_t, const ActQ8&, int, float*, size_t);

template <template <int> class K>
struct Table {
  static constexpr RowFn kFns[4] = {&K<1>::Run, &K<2>::Run, &K<3>::Run, &K<4>::Run};
};

template <class Fmt>
struct PairK {
  template <int NT>
  struct K {
    TQLM_VNNI static void Run(const uint8_t* r, int64_t b, const ActQ8& a, int t, float* o,
                              size_t s) {
      PairRow<Fmt, NT>(r, b, a, t, o, s);
    }
  };
};
template <int NT>
struct Q4KK {
  TQLM_VNNI static void Run(const uint8_t* r, int64_t b, const ActQ8& a, int t, float* o,
                            size_t s) {
    Q45KRow<false, NT>(r, b, a, t, o, s);
  }
};
template <int NT>
struct Q5KK {
  TQLM_VNNI static void Run(const uint8_t* r, int64_t b, const ActQ8& a, int t, float* o,
                            size_t s) {
    Q45KRow<true, NT>(r, b, a, t, o, s);
  }
};
template <int NT>
struct Q6KK {
  TQLM_VNNI static void Run(const uint8_t* r, int64_t b, const ActQ8& a, int t, float* o,
                            size_t s) {
    Q6KRow<NT>(r, b, a, t, o, s);
  }
};

// Row kernels for a format (by tile width 1..4) and its block size; nullptr if none.
const RowFn* KernelsFor(TensorType type, int64_t* block_size) {
  *block_size = 32;
  switch (type) {
    case TensorType::kQ4_0: return Table<PairK<FmtQ4_0>::K>::kFns;
    case TensorType::kQ4_1: return Table<PairK<FmtQ4_1>::K>::kFns;
    case TensorType::kQ5_0: return Table<PairK<FmtQ5_0>::K>::kFns;
    case TensorType::kQ5_1: return Table<PairK<FmtQ5_1>::K>::kFns;
    case TensorType::kQ8_0: return Table<PairK<FmtQ8_0>::K>::kFns;
    case TensorType::kQ4_K: *block_size = 256; return Table<Q4KK>::kFns;
    case TensorType::kQ5_K: *block_size = 256; return Table<Q5KK>::kFns;
    case TensorType::kQ6_K: *block_size = 256; return Table<Q6KK>::kFns;
    default: return nullptr;
  }
}

bool DetectVnni() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
         __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
         __builtin_cpu_supports("avx512vnni") && __builtin_cpu_supports("fma") &&
         __builtin_cpu_supports("f16c");
}

}  // namespace

bool HaveVnniKernels() {
  static const bool have = [] {
    // TQLM_NO_VNNI=1 forces the portable path (for tests and comparisons).
    const char* off = std::getenv("TQLM_NO_VNNI");
    return !(off != nullptr && off[0] == '1') && DetectVnni();
  }();
  return have;
}

bool VnniSupports(TensorType type) {
  int64_t bs;
  return HaveVnniKernels() && KernelsFor(type, &bs) != nullptr;
}

void VnniMatMul(TensorType type, const uint8_t* w, size_t row_bytes, int64_t rows, int64_t r0,
                int64_t r1, const ActQ8& act, int t0, int t1, float* y) {
  int64_t block_size;
  const RowFn* fns = KernelsFor(type, &block_size);
  const int64_t blocks = act.cols / block_size;
  for (int t = t0; t < t1; t += 4) {
    const int nt = t1 - t < 4 ? t1 - t : 4;
    const RowFn fn = fns[nt - 1];
    for (int64_t r = r0; r < r1; ++r) {
      fn(w + size_t(r) * row_bytes, blocks, act, t, y + size_t(t) * size_t(rows) + size_t(r),
         size_t(rows));
    }
  }
}

#else  // !TQLM_HAVE_VNNI_KERNELS

bool HaveVnniKernels() { return false; }
bool VnniSupports(TensorType) { return false; }
void VnniMatMul(TensorType, const uint8_t*, size_t, int64_t, int64_t, int64_t, const ActQ8&, int,
                int, float*) {}

#endif

}  // namespace tqlm::kernels::internal
