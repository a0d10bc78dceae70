#include "kernels/cpu/read_probe.h"

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/cpu/read_probe.cc"
#include <hwy/foreach_target.h>  // IWYU pragma: keep
#include <hwy/highway.h>

HWY_BEFORE_NAMESPACE();
namespace tqlm::kernels {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

float SumForRead(const float* x, size_t n) {
  const hn::ScalableTag<float> df;
  const size_t N = hn::Lanes(df);
  // Four chains: one dependent add per vector would cap the loop at one vector per add latency.
  auto a0 = hn::Zero(df), a1 = a0, a2 = a0, a3 = a0;
  size_t i = 0;
  for (; i + 4 * N <= n; i += 4 * N) {
    a0 = hn::Add(a0, hn::LoadU(df, x + i));
    a1 = hn::Add(a1, hn::LoadU(df, x + i + N));
    a2 = hn::Add(a2, hn::LoadU(df, x + i + 2 * N));
    a3 = hn::Add(a3, hn::LoadU(df, x + i + 3 * N));
  }
  float s = hn::GetLane(hn::SumOfLanes(df, hn::Add(hn::Add(a0, a1), hn::Add(a2, a3))));
  for (; i < n; ++i) s += x[i];
  return s;
}

}  // namespace HWY_NAMESPACE
}  // namespace tqlm::kernels
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace tqlm::kernels {
HWY_EXPORT(SumForRead);
float SumForReadRate(const float* x, size_t n) { return HWY_DYNAMIC_DISPATCH(SumForRead)(x, n); }
}  // namespace tqlm::kernels
#endif  // HWY_ONCE
