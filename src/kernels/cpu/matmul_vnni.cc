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
#include "kernels/cpu/matmul_vnni_decoders.h"

namespace tqlm::kernels::internal {

#if TQLM_HAVE_VNNI_KERNELS

namespace {

using namespace vnni;

// A decode step (one token) streams every weight once from DRAM: at chunk p, prefetch line p
// of each of the next tile's R rows (starting at address `next`); one 64-byte line per chunk
// stays ahead of the 36-68 bytes a chunk consumes. (Addresses as integers: the next tile may
// lie past the matrix, and a prefetch never faults.)
template <int R>
TQLM_VNNI inline void PrefetchNextTile(uintptr_t next, size_t row_bytes, int64_t p) {
  const size_t off = size_t(p) * 64;
  if (off >= row_bytes) return;
  TQLM_UNROLL
  for (int r = 0; r < R; ++r) {
    _mm_prefetch(reinterpret_cast<const char*>(next + size_t(r) * row_bytes + off), _MM_HINT_T0);
  }
}

// --- Tile kernel ---------------------------------------------------------------------------
// R rows x NT tokens: each decoded chunk is used NT times, each activation chunk R times.
template <class Dec, int R, int NT>
TQLM_VNNI void Tile(const uint8_t* w, size_t row_bytes, int64_t r0, int64_t chunks,
                    const ActQ8& act, int t0, float* y, size_t rows) {
  Dec dec[R];
  TQLM_UNROLL
  for (int r = 0; r < R; ++r) dec[r].Init(w + size_t(r0 + r) * row_bytes, row_bytes);
  __m512 acc[R][NT];
  TQLM_UNROLL
  for (int r = 0; r < R; ++r) {
    TQLM_UNROLL
    for (int k = 0; k < NT; ++k) acc[r][k] = _mm512_setzero_ps();
  }
  const uintptr_t next = reinterpret_cast<uintptr_t>(w) + size_t(r0 + R) * row_bytes;
  for (int64_t p = 0; p < chunks; ++p) {
    if constexpr (NT == 1) PrefetchNextTile<R>(next, row_bytes, p);
    Chunk ch[R];
    TQLM_UNROLL
    for (int r = 0; r < R; ++r) ch[r] = dec[r].Load(p);
    TQLM_UNROLL
    for (int k = 0; k < NT; ++k) {
      const __m512i a = _mm512_loadu_si512(act.q_at(t0 + k) + 64 * p);
      const __m512 dx = _mm512_loadu_ps(act.dx_at(t0 + k) + 16 * p);
      __m512 sums = _mm512_setzero_ps();
      if constexpr (Dec::kCorr) {
        sums = _mm512_loadu_ps((Dec::kSums16 ? act.s16x_at(t0 + k) : act.sx_at(t0 + k)) +
                               16 * p);
      }
      TQLM_UNROLL
      for (int r = 0; r < R; ++r) {
        __m512i ar = a;
        if constexpr (Dec::kSigned) {
          ar = _mm512_mask_sub_epi8(a, ch[r].neg, _mm512_setzero_si512(), a);
        }
        const __m512i dot = _mm512_dpbusd_epi32(_mm512_setzero_si512(), ch[r].wq, ar);
        acc[r][k] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), _mm512_mul_ps(ch[r].ws, dx),
                                    acc[r][k]);
        if constexpr (Dec::kCorr) acc[r][k] = _mm512_fmadd_ps(ch[r].cw, sums, acc[r][k]);
      }
    }
  }
  TQLM_UNROLL
  for (int r = 0; r < R; ++r) {
    TQLM_UNROLL
    for (int k = 0; k < NT; ++k) {
      y[size_t(t0 + k) * rows + size_t(r0 + r)] = _mm512_reduce_add_ps(acc[r][k]);
    }
  }
}

// Q4_K / Q5_K for one token (decode): integer sums per 256-value super-block. The activations
// carry one scale per 256 values (ActScale::kBlock256), so a super-block's dot product is
//   d_x * (d * sum_j sc_j <q_j, a_j> - dmin * sum_j m_j sum(a_j)),
// and the 6-bit sub-block scales can multiply 16-bit pair sums (vpmaddubsw, then vpmaddwd
// against sc_j) in the integer domain: per chunk and row 3 integer ops instead of the generic
// tile's dot, conversion, scale product and two FMAs, and one float step per super-block.
// The 32 nibble bytes of a chunk are loaded into both halves of a vector at once (a
// broadcast load, no shuffle); the upper half is shifted to the high nibbles.
struct K4IntTables {
  alignas(64) int16_t sc[4][32];  // chunk c: words 0-15 take scale 2c, 16-31 scale 2c + 1
};

constexpr K4IntTables MakeK4Int() {
  K4IntTables x{};
  for (int c = 0; c < 4; ++c) {
    for (int l = 0; l < 32; ++l) x.sc[c][l] = int16_t(2 * c + (l >= 16 ? 1 : 0));
  }
  return x;
}
constexpr K4IntTables kK4Int = MakeK4Int();

template <bool kHigh, int R>
TQLM_VNNI void TileK4Decode(const uint8_t* w, size_t row_bytes, int64_t r0, int64_t chunks,
                            const ActQ8& act, int t0, float* y, size_t rows) {
  using Dec = K4Decoder<kHigh>;
  const uint8_t* row[R];
  TQLM_UNROLL
  for (int r = 0; r < R; ++r) row[r] = w + size_t(r0 + r) * row_bytes;
  __m512 acc[R];
  TQLM_UNROLL
  for (int r = 0; r < R; ++r) acc[r] = _mm512_setzero_ps();
  const uintptr_t next = reinterpret_cast<uintptr_t>(w) + size_t(r0 + R) * row_bytes;
  const int8_t* aq = act.q_at(t0);
  const float* ad = act.d_at(t0);
  const float* as32 = act.s32_at(t0);
  const __m512i low4 = _mm512_set1_epi8(0x0F);
  for (int64_t sb = 0; sb < chunks / 4; ++sb) {
    __m512i sc16[R], isum[R];
    __m512 mins[R], dd[R];
    const float dx = ad[8 * sb];
    TQLM_UNROLL
    for (int r = 0; r < R; ++r) {
      const uint8_t* b = row[r] + size_t(sb) * Dec::kB;
      const ScalesMinsK4Words u = UnpackScalesMinsK4(b + 4);
      sc16[r] = _mm512_zextsi256_si512(
          _mm256_cvtepu8_epi16(_mm_set_epi32(0, 0, int(u.sc_hi), int(u.sc_lo))));
      // Lanes 8-15: -dmin * m_j (lanes 0-7 zero), against d_x * sum(a_j) in the same lanes.
      mins[r] = _mm512_mul_ps(
          _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_set_epi32(int(u.mn_hi), int(u.mn_lo), 0, 0))),
          _mm512_set1_ps(-Half(b + 2)));
      dd[r] = _mm512_set1_ps(Half(b) * dx);
      isum[r] = _mm512_setzero_si512();
    }
    TQLM_UNROLL
    for (int c = 0; c < 4; ++c) {
      const int64_t p = 4 * sb + c;
      PrefetchNextTile<R>(next, row_bytes, p);
      const __m512i a = _mm512_loadu_si512(aq + 64 * p);
      const __m512i sel = _mm512_load_si512(kK4Int.sc[c]);
      TQLM_UNROLL
      for (int r = 0; r < R; ++r) {
        const uint8_t* b = row[r] + size_t(sb) * Dec::kB;
        __m512i q = _mm512_broadcast_i64x4(
            _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + Dec::kQs + 32 * c)));
        q = _mm512_and_si512(_mm512_mask_srli_epi16(q, __mmask32(0xFFFF0000u), q, 4), low4);
        if constexpr (kHigh) {
          const __m256i qh = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + 16));
          const __m512i h = _mm512_broadcast_i64x4(qh);
          // Bit 2c of qh for the low nibbles, 2c + 1 for the high ones, moved to bit 4.
          const __m512i shifted = _mm512_mask_srli_epi16(_mm512_srli_epi16(h, 2 * c),
                                                         __mmask32(0xFFFF0000u), h, 2 * c + 1);
          q = _mm512_or_si512(
              q, _mm512_slli_epi16(_mm512_and_si512(shifted, _mm512_set1_epi8(1)), 4));
        }
        const __m512i pairs = _mm512_maddubs_epi16(q, a);
        isum[r] = _mm512_add_epi32(
            isum[r], _mm512_madd_epi16(pairs, _mm512_permutexvar_epi16(sel, sc16[r])));
      }
    }
    const __m512 s32 = _mm512_insertf32x8(_mm512_setzero_ps(), _mm256_loadu_ps(as32 + 8 * sb), 1);
    TQLM_UNROLL
    for (int r = 0; r < R; ++r) {
      acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum[r]), dd[r], acc[r]);
      acc[r] = _mm512_fmadd_ps(mins[r], s32, acc[r]);
    }
  }
  TQLM_UNROLL
  for (int r = 0; r < R; ++r) y[size_t(t0) * rows + size_t(r0 + r)] = _mm512_reduce_add_ps(acc[r]);
}

// Q6_K for one token, the same way: the int8 scales (one per 16 values) multiply 16-bit pair
// sums of the unsigned 6-bit values, and the -32 offset becomes
// -32 * d * sum_g sc_g * (d_x * sum(a_g)) once per super-block.
struct Q6IntTables {
  alignas(64) int16_t sc[4][32];  // chunk c: word l (values 2l, 2l + 1) takes scale 4c + l / 8
};

constexpr Q6IntTables MakeQ6Int() {
  Q6IntTables x{};
  for (int c = 0; c < 4; ++c) {
    for (int l = 0; l < 32; ++l) x.sc[c][l] = int16_t(4 * c + l / 8);
  }
  return x;
}
constexpr Q6IntTables kQ6Int = MakeQ6Int();

template <int R>
TQLM_VNNI void TileQ6Decode(const uint8_t* w, size_t row_bytes, int64_t r0, int64_t chunks,
                            const ActQ8& act, int t0, float* y, size_t rows) {
  constexpr size_t kB = 210;
  const uint8_t* row[R];
  TQLM_UNROLL
  for (int r = 0; r < R; ++r) row[r] = w + size_t(r0 + r) * row_bytes;
  __m512 acc[R];
  TQLM_UNROLL
  for (int r = 0; r < R; ++r) acc[r] = _mm512_setzero_ps();
  const uintptr_t next = reinterpret_cast<uintptr_t>(w) + size_t(r0 + R) * row_bytes;
  const int8_t* aq = act.q_at(t0);
  const float* ad = act.d_at(t0);
  const float* as16 = act.s16_at(t0);
  const __m512i low4 = _mm512_set1_epi8(0x0F), low2 = _mm512_set1_epi8(0x03);
  for (int64_t sb = 0; sb < chunks / 4; ++sb) {
    __m512i sc16[R], isum[R];
    __m512 offs[R], dd[R];
    const float dx = ad[8 * sb];
    TQLM_UNROLL
    for (int r = 0; r < R; ++r) {
      const uint8_t* b = row[r] + size_t(sb) * kB;
      const __m128i sc8 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b + 192));
      const float d = Half(b + 208);
      sc16[r] = _mm512_zextsi256_si512(_mm256_cvtepi8_epi16(sc8));
      offs[r] = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(sc8)),
                              _mm512_set1_ps(-32.0f * d));
      dd[r] = _mm512_set1_ps(d * dx);
      isum[r] = _mm512_setzero_si512();
    }
    TQLM_UNROLL
    for (int c = 0; c < 4; ++c) {
      const int64_t p = 4 * sb + c;
      PrefetchNextTile<R>(next, row_bytes, p);
      const __m512i a = _mm512_loadu_si512(aq + 64 * p);
      const __m512i sel = _mm512_load_si512(kQ6Int.sc[c]);
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
        isum[r] = _mm512_add_epi32(
            isum[r], _mm512_madd_epi16(_mm512_maddubs_epi16(q, a),
                                       _mm512_permutexvar_epi16(sel, sc16[r])));
      }
    }
    const __m512 s16 = _mm512_loadu_ps(as16 + 16 * sb);
    TQLM_UNROLL
    for (int r = 0; r < R; ++r) {
      acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum[r]), dd[r], acc[r]);
      acc[r] = _mm512_fmadd_ps(offs[r], s16, acc[r]);
    }
  }
  TQLM_UNROLL
  for (int r = 0; r < R; ++r) y[size_t(t0) * rows + size_t(r0 + r)] = _mm512_reduce_add_ps(acc[r]);
}

using TileFn = void (*)(const uint8_t*, size_t, int64_t, int64_t, const ActQ8&, int, float*,
                        size_t);

constexpr int kRowTile = 4;

template <class Dec>
struct Kernels {
  static constexpr TileFn kWide[4] = {&Tile<Dec, kRowTile, 1>, &Tile<Dec, kRowTile, 2>,
                                      &Tile<Dec, kRowTile, 3>, &Tile<Dec, kRowTile, 4>};
  static constexpr TileFn kNarrow[4] = {&Tile<Dec, 1, 1>, &Tile<Dec, 1, 2>, &Tile<Dec, 1, 3>,
                                        &Tile<Dec, 1, 4>};
  // Prefill: 8 tokens share each decoded chunk (2 rows keep 16 accumulators in registers).
  static constexpr TileFn kTall = &Tile<Dec, 2, 8>;
  static constexpr TileFn kTallNarrow = &Tile<Dec, 1, 8>;
};

struct KernelSet {
  const TileFn* wide;
  const TileFn* narrow;
  TileFn tall, tall_narrow;
};

template <class Dec>
KernelSet Set() {
  return {Kernels<Dec>::kWide, Kernels<Dec>::kNarrow, Kernels<Dec>::kTall,
          Kernels<Dec>::kTallNarrow};
}

// k-quants: the generic tiles, except one token at a time, which takes TileK4Decode /
// TileQ6Decode.
template <bool kHigh>
struct K4Kernels {
  static constexpr TileFn kWide[4] = {&TileK4Decode<kHigh, kRowTile>,
                                      &Tile<K4Decoder<kHigh>, kRowTile, 2>,
                                      &Tile<K4Decoder<kHigh>, kRowTile, 3>,
                                      &Tile<K4Decoder<kHigh>, kRowTile, 4>};
  static constexpr TileFn kNarrow[4] = {&TileK4Decode<kHigh, 1>, &Tile<K4Decoder<kHigh>, 1, 2>,
                                        &Tile<K4Decoder<kHigh>, 1, 3>,
                                        &Tile<K4Decoder<kHigh>, 1, 4>};
};

struct Q6Kernels {
  static constexpr TileFn kWide[4] = {&TileQ6Decode<kRowTile>, &Tile<Q6KDecoder, kRowTile, 2>,
                                      &Tile<Q6KDecoder, kRowTile, 3>,
                                      &Tile<Q6KDecoder, kRowTile, 4>};
  static constexpr TileFn kNarrow[4] = {&TileQ6Decode<1>, &Tile<Q6KDecoder, 1, 2>,
                                        &Tile<Q6KDecoder, 1, 3>, &Tile<Q6KDecoder, 1, 4>};
};

template <bool kHigh>
KernelSet SetK4() {
  return {K4Kernels<kHigh>::kWide, K4Kernels<kHigh>::kNarrow,
          Kernels<K4Decoder<kHigh>>::kTall, Kernels<K4Decoder<kHigh>>::kTallNarrow};
}

// Kernels for a format; false if there are none.
bool KernelsFor(TensorType type, KernelSet* k) {
  switch (type) {
    case TensorType::kQ4_0: *k = Set<PairDecoder<0>>(); return true;
    case TensorType::kQ4_1: *k = Set<PairDecoder<1>>(); return true;
    case TensorType::kQ5_0: *k = Set<PairDecoder<2>>(); return true;
    case TensorType::kQ5_1: *k = Set<PairDecoder<3>>(); return true;
    case TensorType::kQ8_0: *k = Set<PairDecoder<4>>(); return true;
    case TensorType::kQ4_K: *k = SetK4<false>(); return true;
    case TensorType::kQ5_K: *k = SetK4<true>(); return true;
    case TensorType::kQ6_K:
      *k = {Q6Kernels::kWide, Q6Kernels::kNarrow, Kernels<Q6KDecoder>::kTall,
            Kernels<Q6KDecoder>::kTallNarrow};
      return true;
    default: return false;
  }
}

// QuantizeActivations with AVX-512: same arithmetic (the scale rule of act_scale, x · inv,
// round to nearest even, NaN -> 0), so results are bit-identical to the scalar version.
TQLM_VNNI float BlockAmaxAvx512(const float* xb) {
  const __m512 sign = _mm512_set1_ps(-0.0f);
  const __m512 v0 = _mm512_loadu_ps(xb), v1 = _mm512_loadu_ps(xb + 16);
  const __m512 m = _mm512_max_ps(_mm512_andnot_ps(sign, v0),
                                 _mm512_max_ps(_mm512_andnot_ps(sign, v1),
                                               _mm512_setzero_ps()));
  return _mm512_reduce_max_ps(m);
}

TQLM_VNNI void QuantizeActivationsAvx512(const float* x, int n_tokens, int64_t cols,
                                         ActScale scale, ActQ8* out) {
  out->n_tokens = n_tokens;
  out->cols = cols;
  out->blocks = cols / 32;
  out->pairs = (out->blocks + 1) / 2;
  out->stride_q = size_t(out->pairs) * 64;
  const size_t T = size_t(n_tokens), P = size_t(out->pairs);
  out->q.resize(T * out->stride_q);
  out->d_x.resize(T * P * 16);
  out->s_x.resize(T * P * 16);
  out->s16_x.resize(T * P * 16);
  out->s32.resize(T * P * 2);
  out->s16.resize(T * P * 4);
  out->d.resize(T * P * 2);
  const int64_t group = act_scale::GroupBlocks(scale);
  for (size_t t = 0; t < T; ++t) {
    const float* xt = x + t * size_t(cols);
    int8_t* q = out->q.data() + t * out->stride_q;
    if (out->blocks % 2 != 0) {  // zero padding of an odd last pair
      const int64_t b = out->blocks;
      std::memset(q + 32 * b, 0, 32);
      out->d[t * P * 2 + size_t(b)] = out->s32[t * P * 2 + size_t(b)] = 0;
      out->s16[t * P * 4 + 2 * size_t(b)] = out->s16[t * P * 4 + 2 * size_t(b) + 1] = 0;
      for (float* f : {out->d_x.data(), out->s_x.data(), out->s16_x.data()}) {
        _mm256_storeu_ps(f + t * P * 16 + 8 * size_t(b), _mm256_setzero_ps());
      }
    }
    for (int64_t g0 = 0; g0 < out->blocks; g0 += group) {
      const int64_t g1 = std::min(out->blocks, g0 + group);
      float amax = 0;
      for (int64_t b = g0; b < g1; ++b) amax = std::max(amax, BlockAmaxAvx512(xt + 32 * b));
      float inv = 0, d = 0;
      act_scale::FromAmax(scale, amax, &inv, &d);
      const __m512 vinv = _mm512_set1_ps(inv);
      for (int64_t b = g0; b < g1; ++b) {
        __m512 v0 = _mm512_mul_ps(_mm512_loadu_ps(xt + 32 * b), vinv);
        __m512 v1 = _mm512_mul_ps(_mm512_loadu_ps(xt + 32 * b + 16), vinv);
        v0 = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(v0, v0, _CMP_ORD_Q), v0);
        v1 = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(v1, v1, _CMP_ORD_Q), v1);
        const __m512i i0 = _mm512_cvtps_epi32(v0), i1 = _mm512_cvtps_epi32(v1);
        _mm_storeu_si128(reinterpret_cast<__m128i*>(q + 32 * b), _mm512_cvtsepi32_epi8(i0));
        _mm_storeu_si128(reinterpret_cast<__m128i*>(q + 32 * b + 16),
                         _mm512_cvtsepi32_epi8(i1));
        StoreBlockScales(scale, out, t, b, d, _mm512_reduce_add_epi32(i0),
                         _mm512_reduce_add_epi32(i1));
      }
    }
  }
}

bool DetectVnni() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
         __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
         __builtin_cpu_supports("avx512vnni") &&
         __builtin_cpu_supports("avx512vbmi") && __builtin_cpu_supports("fma");  // every AVX-512 CPU also has F16C
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
  KernelSet k;
  return HaveVnniKernels() && KernelsFor(type, &k);
}

void VnniQuantize(const float* x, int n_tokens, int64_t cols, ActScale scale, ActQ8* out) {
  QuantizeActivationsAvx512(x, n_tokens, cols, scale, out);
}

void VnniMatMul(TensorType type, const uint8_t* w, size_t row_bytes, int64_t rows, int64_t r0,
                int64_t r1, const ActQ8& act, int t0, int t1, float* y) {
  KernelSet k;
  if (!KernelsFor(type, &k)) return;
  const int64_t chunks = act.pairs;  // 64 values per chunk for every format
  int t = t0;
  for (; t + 8 <= t1; t += 8) {
    int64_t r = r0;
    for (; r + 2 <= r1; r += 2) k.tall(w, row_bytes, r, chunks, act, t, y, size_t(rows));
    for (; r < r1; ++r) k.tall_narrow(w, row_bytes, r, chunks, act, t, y, size_t(rows));
  }
  for (; t < t1; t += 4) {
    const int nt = t1 - t < 4 ? t1 - t : 4;
    int64_t r = r0;
    for (; r + kRowTile <= r1; r += kRowTile) {
      k.wide[nt - 1](w, row_bytes, r, chunks, act, t, y, size_t(rows));
    }
    for (; r < r1; ++r) k.narrow[nt - 1](w, row_bytes, r, chunks, act, t, y, size_t(rows));
  }
}

#else  // !TQLM_HAVE_VNNI_KERNELS

bool HaveVnniKernels() { return false; }
bool VnniSupports(TensorType) { return false; }
void VnniQuantize(const float* x, int n_tokens, int64_t cols, ActScale scale, ActQ8* out) {
  QuantizeActivations(x, n_tokens, cols, scale, out);
}
void VnniMatMul(TensorType, const uint8_t*, size_t, int64_t, int64_t, int64_t, const ActQ8&, int,
                int, float*) {}
#endif

}  // namespace tqlm::kernels::internal
