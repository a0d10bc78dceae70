// Blockwise fast Walsh–Hadamard transform with a diagonal scale folded in, for every Highway
// target. Up to 8 vectors (128 floats with AVX-512) are transformed entirely in registers:
// lane-distance stages (h < lanes) with a lane permutation and a signed multiply-add, vector-
// distance stages as butterflies between registers. Larger blocks finish with memory passes.
#include "codec/kernels.h"

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "codec/rotation_hwy.cc"
#include <hwy/foreach_target.h>  // IWYU pragma: keep
#include <hwy/highway.h>

HWY_BEFORE_NAMESPACE();
namespace tqlm::codec::kernels {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;
using DF = hn::CappedTag<float, 16>;
using VF = hn::Vec<DF>;

// The in-register stages: lane l pairs with l ^ h; the result is partner + sign * self with
// sign = +1 for the lower lane of the pair (a + b) and -1 for the upper (a - b).
struct LaneStages {
  static constexpr int kMax = 4;  // lanes <= 16
  int count = 0;
  decltype(hn::IndicesFromVec(DF(), hn::Zero(hn::RebindToSigned<DF>()))) partner[kMax];
  VF sign[kMax];

  LaneStages() {
    const DF d;
    const hn::RebindToSigned<DF> di;
    const auto lane = hn::Iota(di, 0);
    for (size_t h = 1; h < hn::Lanes(d); h *= 2, ++count) {
      partner[count] = hn::IndicesFromVec(d, hn::Xor(lane, hn::Set(di, int32_t(h))));
      const auto upper = hn::RebindMask(d, hn::Ne(hn::And(lane, hn::Set(di, int32_t(h))), hn::Zero(di)));
      sign[count] = hn::IfThenElse(upper, hn::Set(d, -1.0f), hn::Set(d, 1.0f));
    }
  }
  HWY_INLINE VF Apply(VF v) const {
    for (int s = 0; s < count; ++s) v = hn::MulAdd(v, sign[s], hn::TableLookupLanes(v, partner[s]));
    return v;
  }
};

// WHT of K consecutive vectors (K * lanes floats) in registers, optionally scaled before
// (pre) or after (post).
template <size_t K>
HWY_INLINE void SubBlock(const LaneStages& lanes, const float* in, const float* pre,
                         const float* post, float* out) {
  const DF d;
  const size_t N = hn::Lanes(d);
  VF v[K];
#pragma GCC unroll 8
  for (size_t k = 0; k < K; ++k) {
    v[k] = hn::LoadU(d, in + k * N);
    if (pre) v[k] = hn::Mul(v[k], hn::LoadU(d, pre + k * N));
    v[k] = lanes.Apply(v[k]);
  }
#pragma GCC unroll 8
  for (size_t h = 1; h < K; h *= 2) {
#pragma GCC unroll 8
    for (size_t k = 0; k < K; ++k) {
      if (k & h) continue;
      const VF a = v[k], b = v[k + h];
      v[k] = hn::Add(a, b);
      v[k + h] = hn::Sub(a, b);
    }
  }
#pragma GCC unroll 8
  for (size_t k = 0; k < K; ++k) {
    if (post) v[k] = hn::Mul(v[k], hn::LoadU(d, post + k * N));
    hn::StoreU(v[k], d, out + k * N);
  }
}

void ScaledFwhtImpl(const float* in, const float* scale, bool scale_after, float* out,
                    size_t dim, size_t block) {
  const DF d;
  const size_t N = hn::Lanes(d);
  static const LaneStages lanes;  // per target: constant
  const size_t vectors = block / N;
  const size_t k = vectors >= 8 ? 8 : vectors;  // vectors per register sub-block
  const size_t sub = k * N;
  // A block larger than a sub-block gets its post-scale after the memory passes.
  const bool passes = sub < block;
  const float* pre = scale_after ? nullptr : scale;
  const float* post = scale_after && !passes ? scale : nullptr;
  for (size_t i = 0; i < dim; i += sub) {
    const float* pi = pre ? pre + i : nullptr;
    const float* po = post ? post + i : nullptr;
    switch (k) {
      case 1: SubBlock<1>(lanes, in + i, pi, po, out + i); break;
      case 2: SubBlock<2>(lanes, in + i, pi, po, out + i); break;
      case 4: SubBlock<4>(lanes, in + i, pi, po, out + i); break;
      default: SubBlock<8>(lanes, in + i, pi, po, out + i); break;
    }
  }
  if (!passes) return;
  for (size_t b0 = 0; b0 < dim; b0 += block) {
    float* x = out + b0;
    for (size_t h = sub; h < block; h *= 2) {
      for (size_t base = 0; base < block; base += 2 * h) {
        for (size_t j = base; j < base + h; j += N) {
          const VF a = hn::LoadU(d, x + j);
          const VF b = hn::LoadU(d, x + j + h);
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
