// TurboQuant block attention kernels (layout in attention_tq.h): AVX-512 VNNI, with or without
// VBMI (attention_tq_vnni.inc, compiled once per instruction set), and a portable scalar path
// computing the same integers. Highway 1.0.3 has no u8 x i8 dot product (SumOfMulQuadAccumulate
// came later) and its AVX3_DL target string lacks avx512vnni, so these kernels use intrinsics in
// functions compiled for that ISA and are chosen at run time, like the MatMul VNNI kernels.
#include "kernels/cpu/attention_tq.h"

// GCC 12's AVX-512 headers implement the reductions and broadcasts with _mm512_undefined_*,
// which -Wuninitialized reports inside these functions; the values are never read.
#pragma GCC diagnostic ignored "-Wuninitialized"
#if !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <type_traits>

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
    case 8:
      std::memcpy(c, u, 64);
      break;
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

// ---------------------------------------------------------------- AVX-512 VNNI paths

// Query rows (scores) or weight rows (accumulate) per tile: each code unit is looked up once
// per tile and used by every row in it, with 2 x rows independent vpdpbusd chains. 8 rows keep
// 16 accumulators plus the tables in the 32 vector registers and cover a GQA group of up to 8
// query heads per KV head in one tile (Qwen2.5's 6 were 4 + 2 with tiles of 4). For A/B
// measurements, TQLM_TQ_TILE_ROWS=N (1..8) caps it.
constexpr int kMaxTileRows = 8;
int TileRows() {
  static const int rows = [] {
    const char* e = std::getenv("TQLM_TQ_TILE_ROWS");
    return e ? std::clamp(std::atoi(e), 1, kMaxTileRows) : kMaxTileRows;
  }();
  return rows;
}

#define TQ_ISA_NS vnni
#define TQ_TARGET \
  __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx2,fma,f16c")))
#define TQ_VBMI false
#include "kernels/cpu/attention_tq_vnni.inc"
#undef TQ_ISA_NS
#undef TQ_TARGET
#undef TQ_VBMI

#define TQ_ISA_NS vnni_vbmi
#define TQ_TARGET \
  __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx512vbmi,avx2,fma,f16c")))
#define TQ_VBMI true
#include "kernels/cpu/attention_tq_vnni.inc"
#undef TQ_ISA_NS
#undef TQ_TARGET
#undef TQ_VBMI

TqKernelPath DetectPath() {
  const bool vnni = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                    __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
                    __builtin_cpu_supports("avx512vnni") &&
                    // every AVX-512 CPU also has F16C (clang 14 cannot test it)
                    __builtin_cpu_supports("fma");
  if (!vnni) return TqKernelPath::kPortable;
  return __builtin_cpu_supports("avx512vbmi") ? TqKernelPath::kVnniVbmi : TqKernelPath::kVnni;
}

// Detected on first use, not at start-up.
TqKernelPath BestPath() {
  static const TqKernelPath best = DetectPath();
  return best;
}

// The path the kernels run: the best one unless a test chose another.
std::atomic<TqKernelPath>& PathInUse() {
  static std::atomic<TqKernelPath> path{BestPath()};
  return path;
}

using ScoresFn = void (*)(const TqBlockLayout&, const TqTables&, const int8_t*, const float*,
                          const int32_t*, int, const uint8_t*, float*, int, PrefetchRange);
using AccumFn = void (*)(const TqBlockLayout&, const TqTables&, const float*, int, int,
                         const uint8_t*, float*, PrefetchRange);

template <int HB, int LB>
std::pair<ScoresFn, AccumFn> Fns(TqKernelPath path) {
  if (path == TqKernelPath::kVnniVbmi)
    return {&vnni_vbmi::ScoresVnni<HB, LB>, &vnni_vbmi::AccumVnni<HB, LB>};
  return {&vnni::ScoresVnni<HB, LB>, &vnni::AccumVnni<HB, LB>};
}

// SIMD kernels for (hi_bits, lo_bits) on the path in use, or nulls (portable path, or a pair
// without kernels).
std::pair<ScoresFn, AccumFn> SimdFns(int hb, int lb) {
  const TqKernelPath path = PathInUse().load(std::memory_order_relaxed);
  if (path == TqKernelPath::kPortable) return {nullptr, nullptr};
  switch (hb * 10 + lb) {
    case 11: return Fns<1, 1>(path);
    case 21: return Fns<2, 1>(path);
    case 22: return Fns<2, 2>(path);
    case 32: return Fns<3, 2>(path);
    case 33: return Fns<3, 3>(path);
    case 43: return Fns<4, 3>(path);
    case 44: return Fns<4, 4>(path);
    case 88:  // the 256-entry lookup needs VBMI's two-table byte permute
      if (path == TqKernelPath::kVnniVbmi)
        return {&vnni_vbmi::ScoresVnni<8, 8>, &vnni_vbmi::AccumVnni<8, 8>};
      return {nullptr, nullptr};
    default: return {nullptr, nullptr};
  }
}

}  // namespace

TqKernelPath TqBestKernelPath() { return BestPath(); }

bool SetTqKernelPathForTest(TqKernelPath path) {
  if (int(path) > int(BestPath())) return false;
  PathInUse().store(path, std::memory_order_relaxed);
  return true;
}

const char* TqKernelPathName(TqKernelPath path) {
  switch (path) {
    case TqKernelPath::kVnniVbmi: return "avx512-vnni-vbmi";
    case TqKernelPath::kVnni: return "avx512-vnni";
    default: return "portable";
  }
}

void TqScores(const TqBlockLayout& layout, const TqTables& tables, const int8_t* q8,
              const float* q_scale, const int32_t* q_sum, int nq, const uint8_t* block,
              float* scores, int stride, PrefetchRange next) {
  if (auto fn = SimdFns(layout.hi_bits, layout.lo_bits).first) {
    fn(layout, tables, q8, q_scale, q_sum, nq, block, scores, stride, next);
    return;
  }
  ScoresPortable(layout, tables, q8, q_scale, nq, block, scores, stride);
}

void TqAccumulate(const TqBlockLayout& layout, const TqTables& tables, const float* p, int nq,
                  int stride, const uint8_t* block, float* acc, PrefetchRange next) {
  if (auto fn = SimdFns(layout.hi_bits, layout.lo_bits).second) {
    fn(layout, tables, p, nq, stride, block, acc, next);
    return;
  }
  AccumulatePortable(layout, tables, p, nq, stride, block, acc);
}

}  // namespace tqlm::kernels
