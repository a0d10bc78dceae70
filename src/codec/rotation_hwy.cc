// Blockwise fast Walsh–Hadamard transform with a diagonal scale folded in, for every Highway
// target. Lane-distance stages (h < lanes) are done in registers with a lane permutation and a
// signed multiply-add; longer stages are plain vector butterflies.
#include "codec/kernels.h"

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "codec/rotation_hwy.cc"
#include <hwy/foreach_target.h>  // IWYU pragma: keep
#include <hwy/highway.h>

HWY_BEFORE_NAMESPACE();
namespace tqlm::codec::kernels {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

void ScaledFwhtImpl(const float* in, const float* scale, bool scale_after, float* out,
                    size_t dim, size_t block) {
  const hn::CappedTag<float, 16> d;
  const hn::RebindToSigned<decltype(d)> di;
  const size_t N = hn::Lanes(d);
  if (!scale_after) {
    for (size_t i = 0; i < dim; i += N) {
      hn::StoreU(hn::Mul(hn::LoadU(d, in + i), hn::LoadU(d, scale + i)), d, out + i);
    }
  } else if (in != out) {
    for (size_t i = 0; i < dim; i += N) hn::StoreU(hn::LoadU(d, in + i), d, out + i);
  }
  // In-register stages: lane l pairs with l ^ h; the result is partner + sign * self with
  // sign = +1 for the lower lane of the pair (a + b) and -1 for the upper (a - b).
  const auto lane = hn::Iota(di, 0);
  for (size_t h = 1; h < N; h *= 2) {
    const auto partner = hn::IndicesFromVec(d, hn::Xor(lane, hn::Set(di, int32_t(h))));
    const auto is_upper = hn::RebindMask(d, hn::Ne(hn::And(lane, hn::Set(di, int32_t(h))),
                                                   hn::Zero(di)));
    const auto sign = hn::IfThenElse(is_upper, hn::Set(d, -1.0f), hn::Set(d, 1.0f));
    for (size_t i = 0; i < dim; i += N) {
      const auto v = hn::LoadU(d, out + i);
      hn::StoreU(hn::MulAdd(v, sign, hn::TableLookupLanes(v, partner)), d, out + i);
    }
  }
  // Cross-vector stages within each block.
  for (size_t b0 = 0; b0 < dim; b0 += block) {
    float* x = out + b0;
    for (size_t h = N; h < block; h *= 2) {
      for (size_t base = 0; base < block; base += 2 * h) {
        for (size_t j = base; j < base + h; j += N) {
          const auto a = hn::LoadU(d, x + j);
          const auto b = hn::LoadU(d, x + j + h);
          hn::StoreU(hn::Add(a, b), d, x + j);
          hn::StoreU(hn::Sub(a, b), d, x + j + h);
        }
      }
    }
  }
  if (scale_after) {
    for (size_t i = 0; i < dim; i += N) {
      hn::StoreU(hn::Mul(hn::LoadU(d, out + i), hn::LoadU(d, scale + i)), d, out + i);
    }
  }
}

}  // namespace HWY_NAMESPACE
}  // namespace tqlm::codec::kernels
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace tqlm::codec::kernels {
HWY_EXPORT(ScaledFwhtImpl);

void ScaledFwht(const float* in, const float* scale, bool scale_after, float* out, size_t dim,
                size_t block) {
  HWY_DYNAMIC_DISPATCH(ScaledFwhtImpl)(in, scale, scale_after, out, dim, block);
}
}  // namespace tqlm::codec::kernels
#endif
