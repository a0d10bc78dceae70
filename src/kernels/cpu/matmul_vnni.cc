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

// Kernels for a format; false if there are none.
bool KernelsFor(TensorType type, KernelSet* k) {
  switch (type) {
    case TensorType::kQ4_0: *k = Set<PairDecoder<0>>(); return true;
    case TensorType::kQ4_1: *k = Set<PairDecoder<1>>(); return true;
    case TensorType::kQ5_0: *k = Set<PairDecoder<2>>(); return true;
    case TensorType::kQ5_1: *k = Set<PairDecoder<3>>(); return true;
    case TensorType::kQ8_0: *k = Set<PairDecoder<4>>(); return true;
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
  out->isum16.resize(T * P * 4);
  const int64_t group = act_scale::GroupBlocks(scale);
  for (size_t t = 0; t < T; ++t) {
    const float* xt = x + t * size_t(cols);
    int8_t* q = out->q.data() + t * out->stride_q;
    if (out->blocks % 2 != 0) {  // zero padding of an odd last pair
      const int64_t b = out->blocks;
      std::memset(q + 32 * b, 0, 32);
      out->d[t * P * 2 + size_t(b)] = out->s32[t * P * 2 + size_t(b)] = 0;
      out->s16[t * P * 4 + 2 * size_t(b)] = out->s16[t * P * 4 + 2 * size_t(b) + 1] = 0;
      out->isum16[t * P * 4 + 2 * size_t(b)] = out->isum16[t * P * 4 + 2 * size_t(b) + 1] = 0;
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
  return HaveVnniKernels() && (KernelsFor(type, &k) || VnniKQuantSupports(type));
}

void VnniQuantize(const float* x, int n_tokens, int64_t cols, ActScale scale, ActQ8* out) {
  QuantizeActivationsAvx512(x, n_tokens, cols, scale, out);
}

void VnniMatMul(TensorType type, const uint8_t* w, size_t row_bytes, int64_t rows, int64_t r0,
                int64_t r1, const ActQ8& act, int t0, int t1, float* y) {
  if (VnniKQuantSupports(type)) {
    VnniMatMulKQuant(type, w, row_bytes, rows, r0, r1, act, t0, t1, y);
    return;
  }
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
