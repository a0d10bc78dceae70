// Highway decoder of TurboQuant weight rows into their rotated-basis floats (d * L[idx]),
// compiled for every target and dispatched at runtime. Indices are unpacked 16 at a time in
// 128-bit vectors and mapped to int8 levels by a byte shuffle (a 16-entry table fits one
// 128-bit register on every target), then widened to float and scaled. Each output is one
// float multiply of the same operands as the scalar reference, so every target gives the
// same bits.
#include <cstring>
#include <vector>

#include "kernels/cpu/tq_weights.h"
#include "tqlm/error.h"

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/cpu/tq_weights_hwy.cc"
#include <hwy/foreach_target.h>  // IWYU pragma: keep
#include <hwy/highway.h>

HWY_BEFORE_NAMESPACE();
namespace tqlm::kernels {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

#if HWY_TARGET == HWY_SCALAR
// One lane at a time: no 16-byte shuffle to build on, so the scalar definition itself.
void DecodeRotated(int bits, const uint8_t* src, int64_t groups, size_t block_bytes,
                   float* out) {
  const TensorType t = bits == 2 ? TensorType::kTQW2 : bits == 3 ? TensorType::kTQW3
                                                                  : TensorType::kTQW4;
  (void)block_bytes;
  TqwDecodeRotatedScalar(t, src, groups * kTqwGroup, out);
}
void DotRows(int bits, const uint8_t* row, int64_t groups, size_t block_bytes, const float* xr,
             size_t x_stride, int n_tokens, float* out, size_t out_stride) {
  std::vector<float> w(size_t(groups) * kTqwGroup);
  DecodeRotated(bits, row, groups, block_bytes, w.data());
  for (int t = 0; t < n_tokens; ++t) {
    float s = 0;
    for (size_t c = 0; c < w.size(); ++c) s += w[c] * xr[size_t(t) * x_stride + c];
    out[size_t(t) * out_stride] = s;
  }
}
#else
using D8 = hn::FixedTag<uint8_t, 16>;

// The 64 indices of one block as four vectors of 16 (values 16k .. 16k + 15).
template <int kBits>
HWY_INLINE void Unpack(const uint8_t* q, hn::Vec<D8> idx[4]) {
  const D8 d8;
  const auto m2 = hn::Set(d8, 3), m4 = hn::Set(d8, 15);
  if constexpr (kBits == 4) {
    const auto v0 = hn::LoadU(d8, q), v1 = hn::LoadU(d8, q + 16);
    idx[0] = hn::And(v0, m4);
    idx[1] = hn::And(v1, m4);
    idx[2] = hn::ShiftRight<4>(v0);
    idx[3] = hn::ShiftRight<4>(v1);
  } else {
    const auto v = hn::LoadU(d8, q);
    idx[0] = hn::And(v, m2);
    idx[1] = hn::And(hn::ShiftRight<2>(v), m2);
    idx[2] = hn::And(hn::ShiftRight<4>(v), m2);
    idx[3] = hn::ShiftRight<6>(v);
    if constexpr (kBits == 3) {
      // Value 16k + i takes bit 2k (i < 8) or 2k + 1 (i >= 8) of qh[i % 8].
      alignas(16) uint8_t hb[16];
      std::memcpy(hb, q + 16, 8);
      std::memcpy(hb + 8, q + 16, 8);
      alignas(16) static constexpr uint8_t kSecondHalf[16] = {0, 0, 0, 0, 0, 0, 0, 0,
                                                              1, 1, 1, 1, 1, 1, 1, 1};
      auto h = hn::Load(d8, hb);
      const auto upper = hn::Eq(hn::Load(d8, kSecondHalf), hn::Set(d8, 1));
      h = hn::IfThenElse(upper, hn::ShiftRight<1>(h), h);  // lanes >= 8 start one bit later
      const auto one = hn::Set(d8, 1);
      for (int k = 0; k < 4; ++k) {
        idx[k] = hn::Or(idx[k], hn::ShiftLeft<2>(hn::And(h, one)));
        h = hn::ShiftRight<2>(h);
      }
    }
  }
}

template <int kBits>
void DecodeRowT(const uint8_t* src, int64_t groups, size_t block_bytes, float* out) {
  const D8 d8;
  const hn::ScalableTag<float> df;
  const hn::Rebind<int8_t, decltype(df)> di8;
  const hn::Rebind<int32_t, decltype(df)> di32;
  const size_t N = hn::Lanes(df);
  const auto table = hn::LoadU(d8, reinterpret_cast<const uint8_t*>(TqwLevels(kBits)));
  alignas(64) int8_t lev[kTqwGroup];
  for (int64_t g = 0; g < groups; ++g) {
    const uint8_t* b = src + size_t(g) * block_bytes;
    uint16_t dh;
    std::memcpy(&dh, b, 2);
    const auto d = hn::Set(df, F16ToF32(dh));
    hn::Vec<D8> idx[4];
    Unpack<kBits>(b + 2, idx);
    for (int k = 0; k < 4; ++k) {
      hn::Store(hn::TableLookupBytes(table, idx[k]), d8, reinterpret_cast<uint8_t*>(lev) + 16 * k);
    }
    float* o = out + g * kTqwGroup;
    for (size_t j = 0; j < size_t(kTqwGroup); j += N) {
      const auto l = hn::ConvertTo(df, hn::PromoteTo(di32, hn::LoadU(di8, lev + j)));
      hn::StoreU(hn::Mul(d, l), df, o + j);
    }
  }
}

void DecodeRotated(int bits, const uint8_t* src, int64_t groups, size_t block_bytes,
                   float* out) {
  switch (bits) {
    case 2: DecodeRowT<2>(src, groups, block_bytes, out); break;
    case 3: DecodeRowT<3>(src, groups, block_bytes, out); break;
    default: DecodeRowT<4>(src, groups, block_bytes, out); break;
  }
}

// NT tokens against one row, decoding each block into registers once for all of them. Every
// token's sum is formed the same way whatever NT is: weight vector v of a block (v = 0 ..
// 64/N - 1) goes into accumulator v % 2, the two are added and reduced at the end; so a
// token's result does not depend on how many tokens share the call.
template <int kBits, int NT>
HWY_INLINE void DotRowTile(const uint8_t* row, int64_t groups, size_t block_bytes,
                           const float* xr, size_t x_stride, float* out, size_t out_stride) {
  const D8 d8;
  const hn::ScalableTag<float> df;
  const hn::Rebind<int8_t, decltype(df)> di8;
  const hn::Rebind<int32_t, decltype(df)> di32;
  const size_t N = hn::Lanes(df);
  const auto table = hn::LoadU(d8, reinterpret_cast<const uint8_t*>(TqwLevels(kBits)));
  alignas(64) int8_t lev[kTqwGroup];
  hn::Vec<decltype(df)> a0[NT], a1[NT];
  for (int k = 0; k < NT; ++k) a0[k] = a1[k] = hn::Zero(df);
  for (int64_t g = 0; g < groups; ++g) {
    const uint8_t* b = row + size_t(g) * block_bytes;
    uint16_t dh;
    std::memcpy(&dh, b, 2);
    const auto d = hn::Set(df, F16ToF32(dh));
    hn::Vec<D8> idx[4];
    Unpack<kBits>(b + 2, idx);
    for (int k = 0; k < 4; ++k) {
      hn::Store(hn::TableLookupBytes(table, idx[k]), d8, reinterpret_cast<uint8_t*>(lev) + 16 * k);
    }
    const size_t base = size_t(g) * kTqwGroup;
    for (size_t j = 0; j < size_t(kTqwGroup); j += 2 * N) {
      const auto w0 = hn::Mul(d, hn::ConvertTo(df, hn::PromoteTo(di32, hn::LoadU(di8, lev + j))));
      const auto w1 =
          hn::Mul(d, hn::ConvertTo(df, hn::PromoteTo(di32, hn::LoadU(di8, lev + j + N))));
      for (int k = 0; k < NT; ++k) {
        const float* x = xr + size_t(k) * x_stride + base + j;
        a0[k] = hn::MulAdd(w0, hn::LoadU(df, x), a0[k]);
        a1[k] = hn::MulAdd(w1, hn::LoadU(df, x + N), a1[k]);
      }
    }
  }
  for (int k = 0; k < NT; ++k) {
    out[size_t(k) * out_stride] = hn::GetLane(hn::SumOfLanes(df, hn::Add(a0[k], a1[k])));
  }
}

template <int kBits>
void DotRowsT(const uint8_t* row, int64_t groups, size_t block_bytes, const float* xr,
              size_t x_stride, int n_tokens, float* out, size_t out_stride) {
  int t = 0;
  for (; t + 4 <= n_tokens; t += 4) {
    DotRowTile<kBits, 4>(row, groups, block_bytes, xr + size_t(t) * x_stride, x_stride,
                         out + size_t(t) * out_stride, out_stride);
  }
  for (; t < n_tokens; ++t) {
    DotRowTile<kBits, 1>(row, groups, block_bytes, xr + size_t(t) * x_stride, x_stride,
                         out + size_t(t) * out_stride, out_stride);
  }
}

void DotRows(int bits, const uint8_t* row, int64_t groups, size_t block_bytes, const float* xr,
             size_t x_stride, int n_tokens, float* out, size_t out_stride) {
  switch (bits) {
    case 2: DotRowsT<2>(row, groups, block_bytes, xr, x_stride, n_tokens, out, out_stride); break;
    case 3: DotRowsT<3>(row, groups, block_bytes, xr, x_stride, n_tokens, out, out_stride); break;
    default: DotRowsT<4>(row, groups, block_bytes, xr, x_stride, n_tokens, out, out_stride); break;
  }
}
#endif  // HWY_TARGET == HWY_SCALAR

}  // namespace HWY_NAMESPACE
}  // namespace tqlm::kernels
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace tqlm::kernels {

HWY_EXPORT(DecodeRotated);
HWY_EXPORT(DotRows);

void TqwDotRows(TensorType type, const uint8_t* row, int64_t cols, const float* xr,
                size_t x_stride, int n_tokens, float* out, size_t out_stride) {
  HWY_DYNAMIC_DISPATCH(DotRows)(TqWeightBits(type), row, cols / kTqwGroup,
                                Traits(type).block_bytes, xr, x_stride, n_tokens, out,
                                out_stride);
}

void TqwDecodeRotated(TensorType type, const void* src, int64_t n, float* out) {
  if (!IsTqWeight(type) || n < 0 || n % kTqwGroup != 0) {
    throw Error("tqw decode: not a TQW type or a length that is not a multiple of 64");
  }
  HWY_DYNAMIC_DISPATCH(DecodeRotated)(TqWeightBits(type), static_cast<const uint8_t*>(src),
                                      n / kTqwGroup, Traits(type).block_bytes, out);
}

}  // namespace tqlm::kernels
#endif  // HWY_ONCE
