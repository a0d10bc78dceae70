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

template <bool kBF16>
struct HalfLoader {
  template <class D>
  static HWY_INLINE hn::Vec<D> Load(D d, const uint16_t* w, size_t c) {
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

template <class Loader, typename W>
void DotRow(const W* w, const float* x, size_t x_stride, int n_tokens, size_t cols, float* out,
            size_t out_stride) {
  const hn::ScalableTag<float> d;
  const size_t N = hn::Lanes(d);
  const size_t main = cols - cols % N;
  int t = 0;
  for (; t + 4 <= n_tokens; t += 4) {
    const float* x0 = x + size_t(t) * x_stride;
    const float* x1 = x0 + x_stride;
    const float* x2 = x1 + x_stride;
    const float* x3 = x2 + x_stride;
    auto a0 = hn::Zero(d), a1 = hn::Zero(d), a2 = hn::Zero(d), a3 = hn::Zero(d);
    for (size_t c = 0; c < main; c += N) {
      const auto wv = Loader::Load(d, w, c);
      a0 = hn::MulAdd(wv, hn::LoadU(d, x0 + c), a0);
      a1 = hn::MulAdd(wv, hn::LoadU(d, x1 + c), a1);
      a2 = hn::MulAdd(wv, hn::LoadU(d, x2 + c), a2);
      a3 = hn::MulAdd(wv, hn::LoadU(d, x3 + c), a3);
    }
    float s[4] = {hn::GetLane(hn::SumOfLanes(d, a0)), hn::GetLane(hn::SumOfLanes(d, a1)),
                  hn::GetLane(hn::SumOfLanes(d, a2)), hn::GetLane(hn::SumOfLanes(d, a3))};
    for (size_t c = main; c < cols; ++c) {
      const float wc = Loader::Scalar(w, c);
      s[0] += wc * x0[c];
      s[1] += wc * x1[c];
      s[2] += wc * x2[c];
      s[3] += wc * x3[c];
    }
    for (int k = 0; k < 4; ++k) out[size_t(t + k) * out_stride] = s[k];
  }
  for (; t < n_tokens; ++t) {
    const float* xt = x + size_t(t) * x_stride;
    auto a0 = hn::Zero(d), a1 = hn::Zero(d);
    size_t c = 0;
    for (; c + 2 * N <= main; c += 2 * N) {
      a0 = hn::MulAdd(Loader::Load(d, w, c), hn::LoadU(d, xt + c), a0);
      a1 = hn::MulAdd(Loader::Load(d, w, c + N), hn::LoadU(d, xt + c + N), a1);
    }
    for (; c < main; c += N) a0 = hn::MulAdd(Loader::Load(d, w, c), hn::LoadU(d, xt + c), a0);
    float s = hn::GetLane(hn::SumOfLanes(d, hn::Add(a0, a1)));
    for (c = main; c < cols; ++c) s += Loader::Scalar(w, c) * xt[c];
    out[size_t(t) * out_stride] = s;
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
