// TurboQuant block attention kernels (layout in attention_tq.h): AVX-512 VNNI with a portable
// scalar path computing the same integers. Highway 1.0.3 has no u8 x i8 dot product
// (SumOfMulQuadAccumulate came later) and its AVX3_DL target string lacks avx512vnni, so these
// kernels use intrinsics in functions compiled for that ISA and are chosen at run time, like
// the MatMul VNNI kernels.
#include "kernels/cpu/attention_tq.h"

// GCC 12's AVX-512 headers implement the reductions and broadcasts with _mm512_undefined_*,
// which -Wuninitialized reports inside these functions; the values are never read.
#pragma GCC diagnostic ignored "-Wuninitialized"
#if !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "kernels/tensor_format.h"

namespace tqlm::kernels {

TqBlockLayout TqBlockLayout::Make(int dim, int n_hi, int hi_bits, int lo_bits) {
  TqBlockLayout l;
  l.dim = dim;
  l.n_hi = n_hi;
  l.hi_bits = hi_bits;
  l.lo_bits = lo_bits;
  // 64 tokens x (n_hi * hi + (dim - n_hi) * lo) bits.
  l.codes_bytes = size_t(8) * (size_t(n_hi) * hi_bits + size_t(dim - n_hi) * lo_bits);
  l.norms_offset = l.codes_bytes;
  l.block_bytes = l.codes_bytes + kTqBlockTokens * 2;
  return l;
}

namespace {

// ---------------------------------------------------------------- portable path

void UnpackUnit(const uint8_t* u, int bits, uint8_t* c) {
  switch (bits) {
    case 4:
      for (int i = 0; i < 32; ++i) {
        c[i] = u[i] & 15;
        c[i + 32] = u[i] >> 4;
      }
      break;
    case 3:
    case 2:
      for (int i = 0; i < 16; ++i)
        for (int f = 0; f < 4; ++f) c[i + 16 * f] = (u[i] >> (2 * f)) & 3;
      if (bits == 3)
        for (int p = 0; p < 64; ++p) c[p] |= ((u[16 + p / 8] >> (p % 8)) & 1) << 2;
      break;
    default:
      for (int p = 0; p < 64; ++p) c[p] = (u[p / 8] >> (p % 8)) & 1;
      break;
  }
}

float Norm(const uint8_t* block, const TqBlockLayout& l, int t) {
  uint16_t h;
  std::memcpy(&h, block + l.norms_offset + 2 * t, 2);
  return F16ToF32(h);
}

void ScoresPortable(const TqBlockLayout& l, const TqTables& tb, const int8_t* q8,
                    const float* q_scale, int nq, const uint8_t* block, float* scores,
                    int stride) {
  const int groups = l.dim / 4;
  int32_t acc[4][16];
  uint8_t codes[64];
  for (int i0 = 0; i0 < nq; i0 += 4) {
    const int n = std::min(4, nq - i0);
    const uint8_t* u = block;
    for (int s = 0; s < 4; ++s) {
      std::memset(acc, 0, sizeof(acc));
      for (int g = 0; g < groups; ++g) {
        const int bits = l.bits_of_dim(4 * g);
        const int8_t* tbl = 4 * g < l.n_hi ? tb.hi : tb.lo;
        UnpackUnit(u, bits, codes);
        u += TqBlockLayout::UnitBytes(bits);
        for (int i = 0; i < n; ++i) {
          const int8_t* q = q8 + size_t(i0 + i) * l.dim + 4 * g;
          for (int t = 0; t < 16; ++t)
            for (int k = 0; k < 4; ++k) acc[i][t] += int32_t(q[k]) * tbl[codes[4 * t + k]];
        }
      }
      for (int i = 0; i < n; ++i)
        for (int t = 0; t < 16; ++t)
          scores[size_t(i0 + i) * stride + 16 * s + t] =
              float(acc[i][t]) * Norm(block, l, 16 * s + t) * q_scale[i0 + i];
    }
  }
}

// Per row: weights p * norm as uint8 and the float that multiplies the integer sums.
void QuantizeWeightsPortable(const TqBlockLayout& l, const TqTables& tb, const float* p,
                             int stride, const uint8_t* block, uint8_t* wq, float* scale) {
  float w[64];
  float wmax = 0;
  for (int t = 0; t < 64; ++t) {
    w[t] = p[t] * Norm(block, l, t);
    wmax = std::max(wmax, w[t]);
  }
  (void)stride;
  const float inv = wmax > 0 ? 255.0f / wmax : 0.0f;
  for (int t = 0; t < 64; ++t) wq[t] = uint8_t(int(std::nearbyint(w[t] * inv)));
  *scale = wmax * (tb.cb_scale / 255.0f);
}

void AccumulatePortable(const TqBlockLayout& l, const TqTables& tb, const float* p, int nq,
                        int stride, const uint8_t* block, float* acc) {
  uint8_t codes[64];
  for (int i = 0; i < nq; ++i) {
    uint8_t wq[64];
    float scale;
    QuantizeWeightsPortable(l, tb, p + size_t(i) * stride, stride, block, wq, &scale);
    if (scale == 0) continue;
    const uint8_t* u = block;
    for (int c = 0; c < l.dim / 16; ++c) {
      const int bits = l.bits_of_dim(16 * c);
      const int8_t* tbl = 16 * c < l.n_hi ? tb.hi : tb.lo;
      int32_t sum[16] = {};
      for (int s = 0; s < 16; ++s) {
        UnpackUnit(u, bits, codes);
        u += TqBlockLayout::UnitBytes(bits);
        for (int j = 0; j < 16; ++j)
          for (int k = 0; k < 4; ++k) sum[j] += int32_t(wq[4 * s + k]) * tbl[codes[4 * j + k]];
      }
      float* a = acc + size_t(i) * l.dim + 16 * c;
      for (int j = 0; j < 16; ++j) a[j] = std::fma(float(sum[j]), scale, a[j]);
    }
  }
}

// ---------------------------------------------------------------- AVX-512 VNNI path

#define TQ_TARGET \
  __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx2,fma,f16c")))

// 64 codes of a B-bit unit in byte lanes.
template <int B>
TQ_TARGET inline __m512i UnpackVec(const uint8_t* u) {
  if constexpr (B == 4) {
    const __m512i x = _mm512_broadcast_i64x4(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(u)));
    const __m512i sh = _mm512_set_epi64(4, 4, 4, 4, 0, 0, 0, 0);
    return _mm512_and_si512(_mm512_srlv_epi64(x, sh), _mm512_set1_epi8(15));
  } else if constexpr (B == 2 || B == 3) {
    const __m512i x = _mm512_broadcast_i32x4(_mm_loadu_si128(reinterpret_cast<const __m128i*>(u)));
    const __m512i sh = _mm512_set_epi64(6, 6, 4, 4, 2, 2, 0, 0);
    __m512i c = _mm512_and_si512(_mm512_srlv_epi64(x, sh), _mm512_set1_epi8(3));
    if constexpr (B == 3) {
      uint64_t bits;
      std::memcpy(&bits, u + 16, 8);
      c = _mm512_mask_add_epi8(c, _cvtu64_mask64(bits), c, _mm512_set1_epi8(4));
    }
    return c;
  } else {
    uint64_t bits;
    std::memcpy(&bits, u, 8);
    return _mm512_maskz_mov_epi8(_cvtu64_mask64(bits), _mm512_set1_epi8(1));
  }
}

TQ_TARGET inline __m512i Lut(const int8_t* t, int add) {
  alignas(16) int8_t b[16];
  for (int i = 0; i < 16; ++i) b[i] = int8_t(t[i] + add);
  return _mm512_broadcast_i32x4(_mm_load_si128(reinterpret_cast<const __m128i*>(b)));
}

TQ_TARGET inline int32_t Dword(const void* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

// One range of dim groups [g0, g1) with B bits, for NQ queries and two 16-token subtiles at
// once (u0, u1: each advances): the two subtiles share the query broadcasts, and 2 x NQ
// independent accumulators keep vpdpbusd's latency hidden (NQ chains alone wait on it).
template <int B, int NQ>
TQ_TARGET inline void ScoreGroups2(const uint8_t*& u0, const uint8_t*& u1, __m512i lut,
                                   const int8_t* const* q, int g0, int g1, __m512i* acc0,
                                   __m512i* acc1, PrefetchTrickle& pf) {
  for (int g = g0; g < g1; ++g) {
    pf.Step();
    const __m512i x0 = _mm512_shuffle_epi8(lut, UnpackVec<B>(u0));
    const __m512i x1 = _mm512_shuffle_epi8(lut, UnpackVec<B>(u1));
    u0 += 8 * B;
    u1 += 8 * B;
    for (int i = 0; i < NQ; ++i) {
      const __m512i qb = _mm512_set1_epi32(Dword(q[i] + 4 * g));
      acc0[i] = _mm512_dpbusd_epi32(acc0[i], x0, qb);
      acc1[i] = _mm512_dpbusd_epi32(acc1[i], x1, qb);
    }
  }
}

template <int HB, int LB, int NQ>
TQ_TARGET void ScoresVnniTile(const TqBlockLayout& l, __m512i lut_hi, __m512i lut_lo,
                              const int8_t* q8, const float* q_scale, const int32_t* q_sum,
                              const uint8_t* block, float* scores, int stride,
                              PrefetchTrickle& pf) {
  const int8_t* q[NQ];
  for (int i = 0; i < NQ; ++i) q[i] = q8 + size_t(i) * l.dim;
  const int g_hi = l.n_hi / 4, groups = l.dim / 4;
  // Bytes of one subtile's codes (16 tokens x dim).
  const size_t sub_bytes = size_t(8) * (size_t(g_hi) * HB + size_t(groups - g_hi) * LB);
  for (int s = 0; s < 4; s += 2) {
    const uint8_t* u0 = block + size_t(s) * sub_bytes;
    const uint8_t* u1 = u0 + sub_bytes;
    __m512i acc[2][NQ];
    for (int i = 0; i < NQ; ++i) acc[0][i] = acc[1][i] = _mm512_setzero_si512();
    ScoreGroups2<HB, NQ>(u0, u1, lut_hi, q, 0, g_hi, acc[0], acc[1], pf);
    ScoreGroups2<LB, NQ>(u0, u1, lut_lo, q, g_hi, groups, acc[0], acc[1], pf);
    for (int h = 0; h < 2; ++h) {
      const __m512 norm = _mm512_cvtph_ps(_mm256_loadu_si256(
          reinterpret_cast<const __m256i*>(block + l.norms_offset + 32 * (s + h))));
      for (int i = 0; i < NQ; ++i) {
        // Codes entered as level + 128 (unsigned): remove 128 * sum(q).
        const __m512i dot = _mm512_sub_epi32(acc[h][i], _mm512_set1_epi32(128 * q_sum[i]));
        const __m512 f = _mm512_mul_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(dot), norm),
                                       _mm512_set1_ps(q_scale[i]));
        _mm512_storeu_ps(scores + size_t(i) * stride + 16 * (s + h), f);
      }
    }
  }
}

template <int HB, int LB>
TQ_TARGET void ScoresVnni(const TqBlockLayout& l, const TqTables& tb, const int8_t* q8,
                          const float* q_scale, const int32_t* q_sum, int nq,
                          const uint8_t* block, float* scores, int stride, PrefetchRange next) {
  const __m512i lut_hi = Lut(tb.hi, 128), lut_lo = Lut(tb.lo, 128);
  // The first tile's group loop carries the prefetch of the next block.
  PrefetchTrickle pf(next, 2 * (l.dim / 4));
  for (int i = 0; i < nq; i += 4) {
    const int8_t* q = q8 + size_t(i) * l.dim;
    float* s = scores + size_t(i) * stride;
    switch (std::min(4, nq - i)) {
      case 4: ScoresVnniTile<HB, LB, 4>(l, lut_hi, lut_lo, q, q_scale + i, q_sum + i, block, s, stride, pf); break;
      case 3: ScoresVnniTile<HB, LB, 3>(l, lut_hi, lut_lo, q, q_scale + i, q_sum + i, block, s, stride, pf); break;
      case 2: ScoresVnniTile<HB, LB, 2>(l, lut_hi, lut_lo, q, q_scale + i, q_sum + i, block, s, stride, pf); break;
      default: ScoresVnniTile<HB, LB, 1>(l, lut_hi, lut_lo, q, q_scale + i, q_sum + i, block, s, stride, pf); break;
    }
  }
}

// Row weights p * norm as uint8 (64 bytes) and their scale; false if the row is all zero.
TQ_TARGET inline bool QuantizeWeightsVnni(const TqTables& tb, const __m512* norm,
                                          const float* p, uint8_t* wq, float* scale) {
  __m512 w[4];
  __m512 vmax = _mm512_setzero_ps();
  for (int s = 0; s < 4; ++s) {
    w[s] = _mm512_mul_ps(_mm512_loadu_ps(p + 16 * s), norm[s]);
    vmax = _mm512_max_ps(vmax, w[s]);
  }
  const float wmax = _mm512_reduce_max_ps(vmax);
  if (!(wmax > 0)) return false;
  const __m512 inv = _mm512_set1_ps(255.0f / wmax);
  for (int s = 0; s < 4; ++s) {
    const __m512i q = _mm512_cvtps_epi32(_mm512_mul_ps(w[s], inv));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(wq + 16 * s), _mm512_cvtepi32_epi8(q));
  }
  *scale = wmax * (tb.cb_scale / 255.0f);
  return true;
}

// NC (1 or 2) chunks of 16 dims with B bits starting at chunk c, for NQ weight rows; u
// advances. Two chunks at once share the weight broadcasts and give 2 x NQ independent
// accumulators (NQ chains alone wait on vpdpbusd's latency).
template <int B, int NQ, int NC>
TQ_TARGET inline void AccumChunks(const uint8_t*& u, __m512i lut, const uint8_t (*wq)[64],
                                  const float* scale, float* const* acc, int c,
                                  PrefetchTrickle& pf) {
  constexpr size_t kChunkBytes = size_t(16) * 8 * B;
  __m512i sum[NC][NQ];
  for (int h = 0; h < NC; ++h)
    for (int i = 0; i < NQ; ++i) sum[h][i] = _mm512_setzero_si512();
  for (int s = 0; s < 16; ++s) {
    pf.Step();
    __m512i x[NC];
    for (int h = 0; h < NC; ++h)
      x[h] = _mm512_shuffle_epi8(lut, UnpackVec<B>(u + h * kChunkBytes + size_t(s) * 8 * B));
    for (int i = 0; i < NQ; ++i) {
      const __m512i w = _mm512_set1_epi32(Dword(wq[i] + 4 * s));
      for (int h = 0; h < NC; ++h) sum[h][i] = _mm512_dpbusd_epi32(sum[h][i], w, x[h]);
    }
  }
  u += NC * kChunkBytes;
  for (int h = 0; h < NC; ++h) {
    for (int i = 0; i < NQ; ++i) {
      float* a = acc[i] + 16 * (c + h);
      _mm512_storeu_ps(a, _mm512_fmadd_ps(_mm512_cvtepi32_ps(sum[h][i]),
                                          _mm512_set1_ps(scale[i]), _mm512_loadu_ps(a)));
    }
  }
}

template <int B, int NQ>
TQ_TARGET inline void AccumRange(const uint8_t*& u, __m512i lut, const uint8_t (*wq)[64],
                                 const float* scale, float* const* rows, int c0, int c1,
                                 PrefetchTrickle& pf) {
  int c = c0;
  for (; c + 2 <= c1; c += 2) AccumChunks<B, NQ, 2>(u, lut, wq, scale, rows, c, pf);
  if (c < c1) AccumChunks<B, NQ, 1>(u, lut, wq, scale, rows, c, pf);
}

template <int HB, int LB, int NQ>
TQ_TARGET void AccumVnniTile(const TqBlockLayout& l, __m512i lut_hi, __m512i lut_lo,
                             const uint8_t (*wq)[64], const float* scale, float* const* rows,
                             const uint8_t* block, PrefetchTrickle& pf) {
  const int c_hi = l.n_hi / 16, chunks = l.dim / 16;
  const uint8_t* u = block;
  AccumRange<HB, NQ>(u, lut_hi, wq, scale, rows, 0, c_hi, pf);
  AccumRange<LB, NQ>(u, lut_lo, wq, scale, rows, c_hi, chunks, pf);
}

template <int HB, int LB>
TQ_TARGET void AccumVnni(const TqBlockLayout& l, const TqTables& tb, const float* p, int nq,
                         int stride, const uint8_t* block, float* acc, PrefetchRange next) {
  const __m512i lut_hi = Lut(tb.hi, 0), lut_lo = Lut(tb.lo, 0);
  // The first tile's chunk loops carry the prefetch of the next block.
  PrefetchTrickle pf(next, l.dim / 2);
  __m512 norm[4];
  for (int s = 0; s < 4; ++s)
    norm[s] = _mm512_cvtph_ps(
        _mm256_loadu_si256(reinterpret_cast<const __m256i*>(block + l.norms_offset + 32 * s)));
  alignas(64) uint8_t wq[4][64];
  float scale[4];
  float* rows[4];
  int n = 0;
  for (int i = 0; i < nq; ++i) {
    // Rows with no weight in this block (masked, or underflowed) are left out of the tile.
    if (QuantizeWeightsVnni(tb, norm, p + size_t(i) * stride, wq[n], &scale[n])) {
      rows[n] = acc + size_t(i) * l.dim;
      ++n;
    }
    if (n == 4 || (i == nq - 1 && n > 0)) {
      switch (n) {
        case 4: AccumVnniTile<HB, LB, 4>(l, lut_hi, lut_lo, wq, scale, rows, block, pf); break;
        case 3: AccumVnniTile<HB, LB, 3>(l, lut_hi, lut_lo, wq, scale, rows, block, pf); break;
        case 2: AccumVnniTile<HB, LB, 2>(l, lut_hi, lut_lo, wq, scale, rows, block, pf); break;
        default: AccumVnniTile<HB, LB, 1>(l, lut_hi, lut_lo, wq, scale, rows, block, pf); break;
      }
      n = 0;
    }
  }
}

bool DetectVnni() {
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
         __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
         __builtin_cpu_supports("avx512vnni") &&
         __builtin_cpu_supports("fma");  // every AVX-512 CPU also has F16C (clang 14 cannot test it)
}

using ScoresFn = void (*)(const TqBlockLayout&, const TqTables&, const int8_t*, const float*,
                          const int32_t*, int, const uint8_t*, float*, int, PrefetchRange);
using AccumFn = void (*)(const TqBlockLayout&, const TqTables&, const float*, int, int,
                         const uint8_t*, float*, PrefetchRange);

template <int HB, int LB>
constexpr std::pair<ScoresFn, AccumFn> Fns() {
  return {&ScoresVnni<HB, LB>, &AccumVnni<HB, LB>};
}

// VNNI kernels for (hi_bits, lo_bits), or nulls for a pair without one.
std::pair<ScoresFn, AccumFn> VnniFns(int hb, int lb) {
  switch (hb * 10 + lb) {
    case 11: return Fns<1, 1>();
    case 21: return Fns<2, 1>();
    case 22: return Fns<2, 2>();
    case 32: return Fns<3, 2>();
    case 33: return Fns<3, 3>();
    case 43: return Fns<4, 3>();
    case 44: return Fns<4, 4>();
    default: return {nullptr, nullptr};
  }
}

}  // namespace

bool TqKernelsUseVnni() {
  static const bool use = DetectVnni();
  return use;
}

void TqScores(const TqBlockLayout& layout, const TqTables& tables, const int8_t* q8,
              const float* q_scale, const int32_t* q_sum, int nq, const uint8_t* block,
              float* scores, int stride, PrefetchRange next) {
  if (TqKernelsUseVnni()) {
    if (auto fn = VnniFns(layout.hi_bits, layout.lo_bits).first) {
      fn(layout, tables, q8, q_scale, q_sum, nq, block, scores, stride, next);
      return;
    }
  }
  ScoresPortable(layout, tables, q8, q_scale, nq, block, scores, stride);
}

void TqAccumulate(const TqBlockLayout& layout, const TqTables& tables, const float* p, int nq,
                  int stride, const uint8_t* block, float* acc, PrefetchRange next) {
  if (TqKernelsUseVnni()) {
    if (auto fn = VnniFns(layout.hi_bits, layout.lo_bits).second) {
      fn(layout, tables, p, nq, stride, block, acc, next);
      return;
    }
  }
  AccumulatePortable(layout, tables, p, nq, stride, block, acc);
}

}  // namespace tqlm::kernels
