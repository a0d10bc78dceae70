// Encode-side (matrix-vector product, quantization) and query-side (compressed dot products)
// SIMD kernels of the codec, for every Highway target, dispatched at runtime.
#include <cstring>

#include "codec/half.h"
#include "codec/kernels.h"
#include "codec/layout.h"
#include "codec/unpack_tables.h"

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "codec/kernels_hwy.cc"
#include <hwy/foreach_target.h>  // IWYU pragma: keep
#include <hwy/highway.h>

HWY_BEFORE_NAMESPACE();
namespace tqlm::codec::kernels {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;
using DF = hn::CappedTag<float, 16>;

template <class D>
HWY_INLINE float Sum(D d, hn::Vec<D> v) {
  return hn::GetLane(hn::SumOfLanes(d, v));
}

void MatVecImpl(const float* m, const float* x, size_t rows, size_t cols, float* out) {
  const DF d;
  const size_t N = hn::Lanes(d);
  size_t r = 0;
  for (; r + 4 <= rows; r += 4) {
    const float* m0 = m + r * cols;
    const float* m1 = m0 + cols;
    const float* m2 = m1 + cols;
    const float* m3 = m2 + cols;
    auto a0 = hn::Zero(d), a1 = hn::Zero(d), a2 = hn::Zero(d), a3 = hn::Zero(d);
    for (size_t c = 0; c < cols; c += N) {
      const auto xv = hn::LoadU(d, x + c);
      a0 = hn::MulAdd(hn::LoadU(d, m0 + c), xv, a0);
      a1 = hn::MulAdd(hn::LoadU(d, m1 + c), xv, a1);
      a2 = hn::MulAdd(hn::LoadU(d, m2 + c), xv, a2);
      a3 = hn::MulAdd(hn::LoadU(d, m3 + c), xv, a3);
    }
    out[r] = Sum(d, a0);
    out[r + 1] = Sum(d, a1);
    out[r + 2] = Sum(d, a2);
    out[r + 3] = Sum(d, a3);
  }
  for (; r < rows; ++r) {
    auto a = hn::Zero(d);
    for (size_t c = 0; c < cols; c += N) {
      a = hn::MulAdd(hn::LoadU(d, m + r * cols + c), hn::LoadU(d, x + c), a);
    }
    out[r] = Sum(d, a);
  }
}

void QuantizeIndicesImpl(const float* y, size_t n, const float* thresholds, int bits,
                         uint8_t* idx) {
  const DF d;
  const hn::RebindToSigned<DF> di;
  const hn::Rebind<uint8_t, decltype(di)> du8;
  const size_t N = hn::Lanes(d);
  const int levels = 1 << bits;
  size_t j = 0;
  if (bits <= 4) {
    // Count the thresholds below y: at most 15 compares per vector.
    hn::Vec<DF> thr[15];
    for (int k = 0; k + 1 < levels; ++k) thr[k] = hn::Set(d, thresholds[k]);
    for (; j + N <= n; j += N) {
      const auto v = hn::LoadU(d, y + j);
      auto count = hn::Zero(di);
      for (int k = 0; k + 1 < levels; ++k) {
        count = hn::Sub(count, hn::VecFromMask(di, hn::RebindMask(di, hn::Gt(v, thr[k]))));
      }
      hn::StoreU(hn::DemoteTo(du8, count), du8, idx + j);
    }
  } else {
    // Branchless binary search, thresholds gathered per lane.
    for (; j + N <= n; j += N) {
      const auto v = hn::LoadU(d, y + j);
      auto at = hn::Zero(di);
      for (int step = levels / 2; step >= 1; step /= 2) {
        const auto probe = hn::Add(at, hn::Set(di, step - 1));
        const auto t = hn::GatherIndex(d, thresholds, probe);
        at = hn::IfThenElse(hn::RebindMask(di, hn::Gt(v, t)), hn::Add(at, hn::Set(di, step)), at);
      }
      hn::StoreU(hn::DemoteTo(du8, at), du8, idx + j);
    }
  }
  for (; j < n; ++j) {  // tail (n % lanes), same search in scalar
    int at = 0;
    for (int step = levels / 2; step >= 1; step /= 2) {
      if (y[j] > thresholds[at + step - 1]) at += step;
    }
    idx[j] = uint8_t(at);
  }
}

// Σ_j q[j] levels[idx_j] over `count` indices of `bits` bits packed from `packed` (byte
// aligned). Reads up to 16 bytes from the start of each 16-index group: callers provide slack.
float SectionDot(const float* q, const uint8_t* packed, int count, int bits, const float* levels) {
  float sum = 0;
  int full = 0;
#if HWY_TARGET != HWY_SCALAR  // byte shuffles need 16-byte vectors; HWY_SCALAR uses the tail loop
  const DF d;
  const hn::RebindToSigned<DF> di;
  const hn::RebindToUnsigned<DF> du;
  const hn::Repartition<uint8_t, DF> du8;
  const size_t N = hn::Lanes(d);
  const UnpackTable& table = kUnpackTables[bits];
  const auto mask = hn::Set(du, (1u << bits) - 1);
  const bool in_register = (size_t(1) << bits) <= N;
  const auto level_vec = hn::LoadU(d, levels);  // levels has >= 16 (zero-padded) entries
  auto acc0 = hn::Zero(d), acc1 = hn::Zero(d);
  full = count / 16 * 16;
  for (int c = 0; c < full; c += 16) {
    const auto src = hn::LoadDup128(du8, packed + size_t(c / 16) * size_t(2 * bits));
    for (size_t k = 0; k < 16; k += N) {
      const auto raw = hn::BitCast(du, hn::TableLookupBytesOr0(src, hn::LoadU(du8, table.bytes + 4 * k)));
      const auto index = hn::BitCast(di, hn::And(raw >> hn::LoadU(du, table.shifts + k), mask));
      const auto value = in_register ? hn::TableLookupLanes(level_vec, hn::IndicesFromVec(d, index))
                                     : hn::GatherIndex(d, levels, index);
      if ((c / 16 + k / N) % 2 == 0) {
        acc0 = hn::MulAdd(value, hn::LoadU(d, q + c + k), acc0);
      } else {
        acc1 = hn::MulAdd(value, hn::LoadU(d, q + c + k), acc1);
      }
    }
  }
  sum = Sum(d, hn::Add(acc0, acc1));
#endif
  for (int j = full; j < count; ++j) {
    const size_t bit = size_t(j) * size_t(bits);
    unsigned word = packed[bit / 8];
    if (bit % 8 + size_t(bits) > 8) word |= unsigned(packed[bit / 8 + 1]) << 8;
    sum += q[j] * levels[(word >> (bit % 8)) & ((1u << bits) - 1)];
  }
  return sum;
}

// Σ_j s[j] (bit_j ? +1 : -1) over dim (multiple of 16) sign bits.
float SignDot(const float* s, const uint8_t* signs, int dim) {
  const DF d;
  const hn::RebindToUnsigned<DF> du;
  const size_t N = hn::Lanes(d);
  auto acc = hn::Zero(d);
  for (int c = 0; c < dim; c += 16) {
    const uint32_t word = uint32_t(signs[c / 8]) | (uint32_t(signs[c / 8 + 1]) << 8);
    const auto w = hn::Set(du, word);
    for (size_t k = 0; k < 16; k += N) {
      const auto positive =
          hn::RebindMask(d, hn::Ne(hn::And(w, hn::LoadU(du, kLaneBit + k)), hn::Zero(du)));
      const auto v = hn::LoadU(d, s + c + k);
      acc = hn::Add(acc, hn::IfThenElse(positive, v, hn::Neg(v)));
    }
  }
  return Sum(d, acc);
}

float LoadNorm(const uint8_t* p, bool f16) {
  if (f16) {
    uint16_t h;
    std::memcpy(&h, p, 2);
    return F16ToF32(h);
  }
  float f;
  std::memcpy(&f, p, 4);
  return f;
}

void DotBatchImpl(const DotPlan& p, const uint8_t* codes, size_t n, float* out) {
  // Levels zero-padded to 256 so that a full vector load and every gather stay in bounds.
  alignas(64) float levels_hi[256] = {}, levels_lo[256] = {};
  std::memcpy(levels_hi, p.levels_hi, sizeof(float) << p.hi_bits);
  std::memcpy(levels_lo, p.levels_lo, sizeof(float) << p.lo_bits);
  const uint8_t* end = codes + n * p.stride;
  alignas(64) uint8_t padded[2 * kMaxDim + 64];
  const int n_lo = p.dim - p.n_hi;
  for (size_t i = 0; i < n; ++i) {
    const uint8_t* v = codes + i * p.stride;
    if (size_t(end - v) < p.stride + 16) {  // near the end: read from a copy with slack
      std::memcpy(padded, v, p.stride);
      std::memset(padded + p.stride, 0, 16);
      v = padded;
    }
    const uint8_t* packed = v + p.codes_offset;
    float dot = SectionDot(p.query, packed, p.n_hi, p.hi_bits, levels_hi);
    if (n_lo > 0) dot += SectionDot(p.query + p.n_hi, packed + p.lo_offset, n_lo, p.lo_bits, levels_lo);
    if (p.sketch != nullptr) {
      const float rnorm = LoadNorm(v + p.rnorm_offset, p.norm_f16);
      dot += p.qjl_scale * rnorm * SignDot(p.sketch, v + p.qjl_offset, p.dim);
    }
    out[i] = LoadNorm(v + p.norm_offset, p.norm_f16) * dot;
  }
}

float DotF16Impl(const uint16_t* a, const float* q, size_t n) {
  const DF d;
  const hn::Rebind<hwy::float16_t, DF> dh;
  const size_t N = hn::Lanes(d);
  auto acc0 = hn::Zero(d), acc1 = hn::Zero(d);
  size_t i = 0;
  const auto* h = reinterpret_cast<const hwy::float16_t*>(a);
  for (; i + 2 * N <= n; i += 2 * N) {
    acc0 = hn::MulAdd(hn::PromoteTo(d, hn::LoadU(dh, h + i)), hn::LoadU(d, q + i), acc0);
    acc1 = hn::MulAdd(hn::PromoteTo(d, hn::LoadU(dh, h + i + N)), hn::LoadU(d, q + i + N), acc1);
  }
  for (; i + N <= n; i += N) {
    acc0 = hn::MulAdd(hn::PromoteTo(d, hn::LoadU(dh, h + i)), hn::LoadU(d, q + i), acc0);
  }
  float sum = Sum(d, hn::Add(acc0, acc1));
  for (; i < n; ++i) sum += F16ToF32(a[i]) * q[i];
  return sum;
}

}  // namespace HWY_NAMESPACE
}  // namespace tqlm::codec::kernels
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace tqlm::codec::kernels {
HWY_EXPORT(MatVecImpl);
HWY_EXPORT(QuantizeIndicesImpl);
HWY_EXPORT(DotBatchImpl);
HWY_EXPORT(DotF16Impl);

void MatVec(const float* m, const float* x, size_t rows, size_t cols, float* out) {
  HWY_DYNAMIC_DISPATCH(MatVecImpl)(m, x, rows, cols, out);
}
void QuantizeIndices(const float* y, size_t n, const float* thresholds, int bits, uint8_t* idx) {
  HWY_DYNAMIC_DISPATCH(QuantizeIndicesImpl)(y, n, thresholds, bits, idx);
}
void DotBatch(const DotPlan& plan, const uint8_t* codes, size_t n, float* out) {
  HWY_DYNAMIC_DISPATCH(DotBatchImpl)(plan, codes, n, out);
}
float DotF16(const uint16_t* a, const float* q, size_t n) {
  return HWY_DYNAMIC_DISPATCH(DotF16Impl)(a, q, n);
}
}  // namespace tqlm::codec::kernels
#endif
