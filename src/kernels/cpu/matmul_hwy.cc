// Float dot products for F32/F16/BF16 weight rows (and for rows decoded from other formats on
// CPUs without the integer kernels), compiled for every Highway target and dispatched at
// runtime. Four tokens share each loaded weight vector.
#include <cstring>
#include <type_traits>

#include "kernels/cpu/matmul_internal.h"

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/cpu/matmul_hwy.cc"
#include <hwy/foreach_target.h>  // IWYU pragma: keep
#include <hwy/highway.h>

HWY_BEFORE_NAMESPACE();
namespace tqlm::kernels::internal {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

// Loads weight lanes [c, c + Lanes) as float; W is float, or uint16_t holding F16/BF16 bits.
template <typename W>
struct WeightLoader;

template <>
struct WeightLoader<float> {
  template <class D>
  static HWY_INLINE hn::Vec<D> Load(D d, const float* w, size_t c) {
    return hn::LoadU(d, w + c);
  }
  static float Scalar(const float* w, size_t c) { return w[c]; }
};

// Highway emulates the f16 -> f32 promotion where the target has no F16C (SSE4 and below,
// EMU128, scalar), and its emulation reads exponent 31 (inf, NaN) as a finite 2^16 (1 + m/1024).
// There the halves are widened exactly by integer steps instead: the 15 magnitude bits shifted
// into an f32's exponent/mantissa field and scaled by 2^112 (exact for normals and subnormals),
// exponent 31 mapped to 255.
#if HWY_TARGET >= HWY_SSE4 || defined(HWY_DISABLE_F16C)
template <class D>
HWY_INLINE hn::Vec<D> PromoteF16Exact(D d, const uint16_t* h) {
  const hn::RebindToSigned<D> di;
  const hn::Rebind<uint16_t, D> du16;
  const auto v = hn::BitCast(di, hn::PromoteTo(hn::RebindToUnsigned<D>(), hn::LoadU(du16, h)));
  const auto em = hn::And(v, hn::Set(di, 0x7fff));
  const auto bits = hn::ShiftLeft<13>(em);
  const auto finite = hn::Mul(hn::BitCast(d, bits), hn::Set(d, 5.192296858534828e33f));  // 2^112
  const auto special = hn::BitCast(d, hn::Or(bits, hn::Set(di, 0x7f800000)));
  const auto mag = hn::IfThenElse(hn::RebindMask(d, hn::Gt(em, hn::Set(di, 0x7bff))), special,
                                  finite);
  return hn::Or(mag, hn::BitCast(d, hn::ShiftLeft<16>(hn::And(v, hn::Set(di, 0x8000)))));
}
#endif

template <bool kBF16>
struct HalfLoader {
  template <class D>
  static HWY_INLINE hn::Vec<D> Load(D d, const uint16_t* w, size_t c) {
#if HWY_TARGET >= HWY_SSE4 || defined(HWY_DISABLE_F16C)
    if constexpr (!kBF16) return PromoteF16Exact(d, w + c);
#endif
    using HalfT = std::conditional_t<kBF16, hwy::bfloat16_t, hwy::float16_t>;
    const hn::Rebind<HalfT, D> dh;
    return hn::PromoteTo(d, hn::LoadU(dh, reinterpret_cast<const HalfT*>(w + c)));
  }
  static float Scalar(const uint16_t* w, size_t c) {
    uint16_t h;
    std::memcpy(&h, w + c, 2);
    return kBF16 ? BF16ToF32(h) : F16ToF32(h);
  }
};

// NT tokens against one weight row. Every token's sum is formed the same way whatever NT is
// (two accumulators over alternating vectors, their sum reduced, then the scalar tail), so a
// token's result does not depend on how many tokens share the call (issue 22).
template <int NT, class Loader, typename W>
HWY_INLINE void DotRowTile(const W* w, const float* x, size_t x_stride, size_t cols, float* out,
                           size_t out_stride) {
  const hn::ScalableTag<float> d;
  const size_t N = hn::Lanes(d);
  const size_t main = cols - cols % N;
  const float* xt[NT];
  for (int k = 0; k < NT; ++k) xt[k] = x + size_t(k) * x_stride;
  hn::Vec<decltype(d)> a0[NT], a1[NT];
  for (int k = 0; k < NT; ++k) a0[k] = a1[k] = hn::Zero(d);
  size_t c = 0;
  for (; c + 2 * N <= main; c += 2 * N) {
    const auto w0 = Loader::Load(d, w, c), w1 = Loader::Load(d, w, c + N);
    for (int k = 0; k < NT; ++k) {
      a0[k] = hn::MulAdd(w0, hn::LoadU(d, xt[k] + c), a0[k]);
      a1[k] = hn::MulAdd(w1, hn::LoadU(d, xt[k] + c + N), a1[k]);
    }
  }
  for (; c < main; c += N) {
    const auto w0 = Loader::Load(d, w, c);
    for (int k = 0; k < NT; ++k) a0[k] = hn::MulAdd(w0, hn::LoadU(d, xt[k] + c), a0[k]);
  }
  for (int k = 0; k < NT; ++k) {
    float s = hn::GetLane(hn::SumOfLanes(d, hn::Add(a0[k], a1[k])));
    for (c = main; c < cols; ++c) s += Loader::Scalar(w, c) * xt[k][c];
    out[size_t(k) * out_stride] = s;
  }
}

template <class Loader, typename W>
void DotRow(const W* w, const float* x, size_t x_stride, int n_tokens, size_t cols, float* out,
            size_t out_stride) {
  int t = 0;
  for (; t + 4 <= n_tokens; t += 4) {
    DotRowTile<4, Loader>(w, x + size_t(t) * x_stride, x_stride, cols,
                          out + size_t(t) * out_stride, out_stride);
  }
  for (; t < n_tokens; ++t) {
    DotRowTile<1, Loader>(w, x + size_t(t) * x_stride, x_stride, cols,
                          out + size_t(t) * out_stride, out_stride);
  }
}

void DotRowF32(const float* w, const float* x, size_t x_stride, int n_tokens, size_t cols,
               float* out, size_t out_stride) {
  DotRow<WeightLoader<float>>(w, x, x_stride, n_tokens, cols, out, out_stride);
}
void DotRowF16(const uint16_t* w, const float* x, size_t x_stride, int n_tokens, size_t cols,
               float* out, size_t out_stride) {
  DotRow<HalfLoader<false>>(w, x, x_stride, n_tokens, cols, out, out_stride);
}
void DotRowBF16(const uint16_t* w, const float* x, size_t x_stride, int n_tokens, size_t cols,
                float* out, size_t out_stride) {
  DotRow<HalfLoader<true>>(w, x, x_stride, n_tokens, cols, out, out_stride);
}

}  // namespace HWY_NAMESPACE
}  // namespace tqlm::kernels::internal
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace tqlm::kernels::internal {

HWY_EXPORT(DotRowF32);
HWY_EXPORT(DotRowF16);
HWY_EXPORT(DotRowBF16);

void DotRowF32(const float* w, const float* x, size_t x_stride, int n_tokens, size_t cols,
               float* out, size_t out_stride) {
  HWY_DYNAMIC_DISPATCH(DotRowF32)(w, x, x_stride, n_tokens, cols, out, out_stride);
}
void DotRowF16(const uint16_t* w, const float* x, size_t x_stride, int n_tokens, size_t cols,
               float* out, size_t out_stride) {
  HWY_DYNAMIC_DISPATCH(DotRowF16)(w, x, x_stride, n_tokens, cols, out, out_stride);
}
void DotRowBF16(const uint16_t* w, const float* x, size_t x_stride, int n_tokens, size_t cols,
                float* out, size_t out_stride) {
  HWY_DYNAMIC_DISPATCH(DotRowBF16)(w, x, x_stride, n_tokens, cols, out, out_stride);
}

}  // namespace tqlm::kernels::internal
#endif  // HWY_ONCE
