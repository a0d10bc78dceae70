// Encode-side (matrix-vector product, quantization) and query-side (compressed dot products)
// SIMD kernels of the codec, for every Highway target, dispatched at runtime.
#include <cmath>
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

template <size_t K>
HWY_INLINE void MatVecBatchTBlock(const float* mt, const float* x, size_t rows, size_t cols,
                                  float* out) {
  const DF d;
  const size_t N = hn::Lanes(d);
  for (size_t r0 = 0; r0 < rows; r0 += N) {
    hn::Vec<DF> acc[K];
#pragma GCC unroll 8
    for (size_t v = 0; v < K; ++v) acc[v] = hn::Zero(d);
    for (size_t c = 0; c < cols; ++c) {
      const auto column = hn::LoadU(d, mt + c * rows + r0);
#pragma GCC unroll 8
      for (size_t v = 0; v < K; ++v) acc[v] = hn::MulAdd(column, hn::Set(d, x[v * cols + c]), acc[v]);
    }
#pragma GCC unroll 8
    for (size_t v = 0; v < K; ++v) hn::StoreU(acc[v], d, out + v * rows + r0);
  }
}

void MatVecBatchTImpl(const float* mt, const float* x, size_t n, size_t rows, size_t cols,
                      float* out) {
  size_t v = 0;
  for (; v + 8 <= n; v += 8) MatVecBatchTBlock<8>(mt, x + v * cols, rows, cols, out + v * rows);
  if (v + 4 <= n) {
    MatVecBatchTBlock<4>(mt, x + v * cols, rows, cols, out + v * rows);
    v += 4;
  }
  if (v + 2 <= n) {
    MatVecBatchTBlock<2>(mt, x + v * cols, rows, cols, out + v * rows);
    v += 2;
  }
  if (v < n) MatVecBatchTBlock<1>(mt, x + v * cols, rows, cols, out + v * rows);
}

// Index = number of thresholds below y, counted with 2^kBits - 1 compares per vector (b <= 4).
template <int kBits>
HWY_INLINE size_t QuantizeByCounting(const float* y, size_t n, const float* thresholds,
                                     uint8_t* idx) {
  const DF d;
  const hn::RebindToUnsigned<DF> du;
  const hn::Rebind<uint8_t, decltype(du)> du8;
  const size_t N = hn::Lanes(d);
  constexpr int kThresholds = (1 << kBits) - 1;
  hn::Vec<DF> thr[kThresholds];
  for (int k = 0; k < kThresholds; ++k) thr[k] = hn::Set(d, thresholds[k]);
  size_t j = 0;
  for (; j + N <= n; j += N) {
    const auto v = hn::LoadU(d, y + j);
    auto count = hn::Zero(du);
#pragma GCC unroll 15
    for (int k = 0; k < kThresholds; ++k) {
      count = hn::Sub(count, hn::VecFromMask(du, hn::RebindMask(du, hn::Gt(v, thr[k]))));
    }
    hn::StoreU(hn::TruncateTo(du8, count), du8, idx + j);
  }
  return j;
}

void QuantizeIndicesImpl(const float* y, size_t n, const float* thresholds, int bits,
                         uint8_t* idx) {
  const int levels = 1 << bits;
  size_t j = 0;
  switch (bits) {
    case 1: j = QuantizeByCounting<1>(y, n, thresholds, idx); break;
    case 2: j = QuantizeByCounting<2>(y, n, thresholds, idx); break;
    case 3: j = QuantizeByCounting<3>(y, n, thresholds, idx); break;
    case 4: j = QuantizeByCounting<4>(y, n, thresholds, idx); break;
    default: {
      // Branchless binary search, thresholds gathered per lane.
      const DF d;
      const hn::RebindToSigned<DF> di;
      const hn::RebindToUnsigned<DF> du;
      const hn::Rebind<uint8_t, decltype(du)> du8;
      const size_t N = hn::Lanes(d);
      for (; j + N <= n; j += N) {
        const auto v = hn::LoadU(d, y + j);
        auto at = hn::Zero(di);
        for (int step = levels / 2; step >= 1; step /= 2) {
          const auto probe = hn::Add(at, hn::Set(di, step - 1));
          const auto t = hn::GatherIndex(d, thresholds, probe);
          at = hn::IfThenElse(hn::RebindMask(di, hn::Gt(v, t)), hn::Add(at, hn::Set(di, step)), at);
        }
        hn::StoreU(hn::TruncateTo(du8, hn::BitCast(du, at)), du8, idx + j);
      }
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

// One section of a vector's codes (`count` indices of `bits` bits, byte aligned), with the
// unpacking tables and the codebook held in registers across all vectors of a batch.
// Each group of 16 indices (2*bits bytes) is broadcast to every 128-bit block, byte-shuffled
// so that lane j holds the (up to) two bytes containing index j, shifted and masked; the
// level is then looked up in a register (2^bits <= lanes) or gathered.
template <class D>
struct Section {
  using DU = hn::RebindToUnsigned<D>;
  using DI = hn::RebindToSigned<D>;
  using DU8 = hn::Repartition<uint8_t, D>;
  static constexpr size_t kMaxParts = 16 / 4;  // 16 indices over vectors of >= 4 lanes

  const float* levels;  // zero-padded to 256 entries
  int bits = 0, count = 0, full = 0;
  size_t parts = 0;
  bool in_register = false;
#if HWY_TARGET != HWY_SCALAR
  hn::Vec<DU8> byte_index[kMaxParts];
  hn::Vec<DU> shift[kMaxParts];
  hn::Vec<DU> mask;
  hn::Vec<D> level_vec;
#endif

  Section(D d, const float* padded_levels, int b, int n) : levels(padded_levels), bits(b), count(n) {
#if HWY_TARGET != HWY_SCALAR
    const DU du;
    const DU8 du8;
    const size_t N = hn::Lanes(d);
    full = count / 16 * 16;
    parts = 16 / N;
    in_register = (size_t(1) << bits) <= N;
    const UnpackTable& table = kUnpackTables[bits];
    for (size_t k = 0; k < parts; ++k) {
      byte_index[k] = hn::LoadU(du8, table.bytes + 4 * k * N);
      shift[k] = hn::LoadU(du, table.shifts + k * N);
    }
    mask = hn::Set(du, (1u << bits) - 1);
    level_vec = hn::LoadU(d, levels);
#else
    (void)d;
#endif
  }

#if HWY_TARGET != HWY_SCALAR
  HWY_INLINE hn::Vec<D> Chunk(const float* q, const uint8_t* packed, int c, hn::Vec<D> acc) const {
    const D d;
    const DU8 du8;
    const DU du;
    const DI di;
    const size_t N = hn::Lanes(d);
    const auto src = hn::LoadDup128(du8, packed + size_t(c / 16) * size_t(2 * bits));
    for (size_t k = 0; k < parts; ++k) {
      const auto raw = hn::BitCast(du, hn::TableLookupBytesOr0(src, byte_index[k]));
      const auto index = hn::BitCast(di, hn::And(raw >> shift[k], mask));
      const auto value = in_register ? hn::TableLookupLanes(level_vec, hn::IndicesFromVec(d, index))
                                     : hn::GatherIndex(d, levels, index);
      acc = hn::MulAdd(value, hn::LoadU(d, q + c + k * N), acc);
    }
    return acc;
  }
#endif

  // acc += q[j] * level(j) for the 16-index groups; returns the scalar sum over the rest.
  HWY_INLINE float Accumulate(const float* q, const uint8_t* packed, hn::Vec<D>& acc0,
                              hn::Vec<D>& acc1) const {
#if HWY_TARGET != HWY_SCALAR
    int c = 0;
    for (; c + 32 <= full; c += 32) {  // two independent accumulator chains
      acc0 = Chunk(q, packed, c, acc0);
      acc1 = Chunk(q, packed, c + 16, acc1);
    }
    if (c < full) acc0 = Chunk(q, packed, c, acc0);
#else
    (void)acc0;
    (void)acc1;
#endif
    float sum = 0;
    for (int j = full; j < count; ++j) {
      const size_t bit = size_t(j) * size_t(bits);
      unsigned word = packed[bit / 8];
      if (bit % 8 + size_t(bits) > 8) word |= unsigned(packed[bit / 8 + 1]) << 8;
      sum += q[j] * levels[(word >> (bit % 8)) & ((1u << bits) - 1)];
    }
    return sum;
  }
};

// acc += s[j] * (bit_j ? kappa : -kappa) over dim (multiple of 16) sign bits.
template <class D>
HWY_INLINE hn::Vec<D> SignAccumulate(D d, const float* s, const uint8_t* signs, int dim, float kappa,
                                     hn::Vec<D> acc) {
  const hn::RebindToUnsigned<D> du;
  const size_t N = hn::Lanes(d);
  const auto plus = hn::Set(d, kappa), minus = hn::Set(d, -kappa);
  for (int c = 0; c < dim; c += 16) {
    const uint32_t word = uint32_t(signs[c / 8]) | (uint32_t(signs[c / 8 + 1]) << 8);
    const auto w = hn::Set(du, word);
    for (size_t k = 0; k < 16; k += N) {
      const auto positive =
          hn::RebindMask(d, hn::Ne(hn::And(w, hn::LoadU(du, kLaneBit + k)), hn::Zero(du)));
      acc = hn::MulAdd(hn::IfThenElse(positive, plus, minus), hn::LoadU(d, s + c + k), acc);
    }
  }
  return acc;
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
  const DF d;
  const int n_lo = p.dim - p.n_hi;
  const Section<DF> hi(d, p.levels_hi, p.hi_bits, p.n_hi);
  const Section<DF> lo(d, p.levels_lo, p.lo_bits, n_lo);
  const uint8_t* end = codes + n * p.stride;
  alignas(64) uint8_t padded[2 * kMaxDim + 64];
  for (size_t i = 0; i < n; ++i) {
    const uint8_t* v = codes + i * p.stride;
    if (size_t(end - v) < p.stride + 16) {  // near the end: read from a copy with slack
      std::memcpy(padded, v, p.stride);
      std::memset(padded + p.stride, 0, 16);
      v = padded;
    }
    const uint8_t* packed = v + p.codes_offset;
    auto acc0 = hn::Zero(d), acc1 = hn::Zero(d);
    float rest = hi.Accumulate(p.query, packed, acc0, acc1);
    if (n_lo > 0) rest += lo.Accumulate(p.query + p.n_hi, packed + p.lo_offset, acc0, acc1);
    if (p.sketch != nullptr) {
      const float kappa = p.qjl_scale * LoadNorm(v + p.rnorm_offset, p.norm_f16);
      acc1 = SignAccumulate(d, p.sketch, v + p.qjl_offset, p.dim, kappa, acc1);
    }
    out[i] = LoadNorm(v + p.norm_offset, p.norm_f16) * (Sum(d, hn::Add(acc0, acc1)) + rest);
  }
}

float NormalizeImpl(const float* x, size_t n, float* out) {
  const DF d;
  const size_t N = hn::Lanes(d);
  auto a0 = hn::Zero(d), a1 = hn::Zero(d);
  size_t j = 0;
  for (; j + 2 * N <= n; j += 2 * N) {
    const auto v0 = hn::LoadU(d, x + j), v1 = hn::LoadU(d, x + j + N);
    a0 = hn::MulAdd(v0, v0, a0);
    a1 = hn::MulAdd(v1, v1, a1);
  }
  for (; j + N <= n; j += N) {
    const auto v = hn::LoadU(d, x + j);
    a0 = hn::MulAdd(v, v, a0);
  }
  double sq = Sum(d, hn::Add(a0, a1));
  for (; j < n; ++j) sq += double(x[j]) * x[j];
  // Float squares may have overflowed, or underflowed: each square below 2^-126 lost relative
  // precision (down to nothing), at most n * 2^-126 in all, which is below 2^-26 of any sum
  // above n * 2^-100. Outside (2^-100 n, 1e36) redo the sum in double.
  if (!(sq < 1e36) || sq < double(n) * 0x1p-100) {
    sq = 0;
    for (size_t k = 0; k < n; ++k) sq += double(x[k]) * x[k];
  }
  const double norm = std::sqrt(sq);
  // A zero, non-finite or float-unrepresentable (overflowing) norm: u = 0 and 0.
  if (!(norm > 0) || !std::isfinite(float(norm)) || !(float(norm) > 0)) {
    for (size_t k = 0; k < n; ++k) out[k] = 0;
    return 0;
  }
  const double inv = 1.0 / norm;
  j = 0;
  if (inv < 0x1p126 && inv > 0x1p-126) {  // 1/norm is a normal float: multiply in float
    const auto vinv = hn::Set(d, float(inv));
    for (; j + N <= n; j += N) hn::StoreU(hn::Mul(hn::LoadU(d, x + j), vinv), d, out + j);
  }
  for (; j < n; ++j) out[j] = float(x[j] / norm);  // tail, or a tiny norm: divide in double
  return float(norm);
}

void DotF16BatchImpl(const uint16_t* a, const float* q, size_t n, size_t dim, float* out) {
  const DF d;
  const hn::Rebind<hwy::float16_t, DF> dh;
  const size_t N = hn::Lanes(d);
  for (size_t i = 0; i < n; ++i) {
    const auto* h = reinterpret_cast<const hwy::float16_t*>(a + i * dim);
    auto acc0 = hn::Zero(d), acc1 = hn::Zero(d);
    size_t j = 0;
    for (; j + 2 * N <= dim; j += 2 * N) {
      acc0 = hn::MulAdd(hn::PromoteTo(d, hn::LoadU(dh, h + j)), hn::LoadU(d, q + j), acc0);
      acc1 = hn::MulAdd(hn::PromoteTo(d, hn::LoadU(dh, h + j + N)), hn::LoadU(d, q + j + N), acc1);
    }
    for (; j < dim; j += N) {
      acc0 = hn::MulAdd(hn::PromoteTo(d, hn::LoadU(dh, h + j)), hn::LoadU(d, q + j), acc0);
    }
    out[i] = Sum(d, hn::Add(acc0, acc1));
  }
}

}  // namespace HWY_NAMESPACE
}  // namespace tqlm::codec::kernels
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace tqlm::codec::kernels {
HWY_EXPORT(MatVecImpl);
HWY_EXPORT(MatVecBatchTImpl);
HWY_EXPORT(QuantizeIndicesImpl);
HWY_EXPORT(DotBatchImpl);
HWY_EXPORT(DotF16BatchImpl);
HWY_EXPORT(NormalizeImpl);

void MatVec(const float* m, const float* x, size_t rows, size_t cols, float* out) {
  HWY_DYNAMIC_DISPATCH(MatVecImpl)(m, x, rows, cols, out);
}
void MatVecBatchT(const float* mt, const float* x, size_t n, size_t rows, size_t cols, float* out) {
  HWY_DYNAMIC_DISPATCH(MatVecBatchTImpl)(mt, x, n, rows, cols, out);
}
void QuantizeIndices(const float* y, size_t n, const float* thresholds, int bits, uint8_t* idx) {
  HWY_DYNAMIC_DISPATCH(QuantizeIndicesImpl)(y, n, thresholds, bits, idx);
}
void DotBatch(const DotPlan& plan, const uint8_t* codes, size_t n, float* out) {
  HWY_DYNAMIC_DISPATCH(DotBatchImpl)(plan, codes, n, out);
}
float Normalize(const float* x, size_t n, float* out) {
  return HWY_DYNAMIC_DISPATCH(NormalizeImpl)(x, n, out);
}
void DotF16Batch(const uint16_t* a, const float* q, size_t n, size_t dim, float* out) {
  HWY_DYNAMIC_DISPATCH(DotF16BatchImpl)(a, q, n, dim, out);
}
}  // namespace tqlm::codec::kernels
#endif
