// Running Highway kernels on every SIMD target this binary contains and this CPU runs.
//
// hwy::SetSupportedTargetsForTest(t) makes every later HWY_DYNAMIC_DISPATCH pick target t, for
// the whole process, until it is called with 0. A test that sets it and then fails an ASSERT
// (which returns from the test body) would leave the mock in place, and every later test in
// the process would silently run one target only; so the mock is only ever set through
// TargetScope, whose destructor restores it on every path out of the scope.
#pragma once

#include <gtest/gtest.h>
#include <hwy/targets.h>

#include <cstdint>
#include <string>
#include <vector>

namespace tqlm::testing {

class TargetScope {
 public:
  explicit TargetScope(int64_t target) { hwy::SetSupportedTargetsForTest(target); }
  ~TargetScope() { hwy::SetSupportedTargetsForTest(0); }
  TargetScope(const TargetScope&) = delete;
  TargetScope& operator=(const TargetScope&) = delete;
};

// Every target compiled into this binary (HWY_TARGETS) that this CPU supports, best first,
// independent of any mock currently in place.
inline std::vector<int64_t> AllTargets() {
  hwy::SetSupportedTargetsForTest(0);
  std::vector<int64_t> targets = hwy::SupportedAndGeneratedTargets();
  // SupportedAndGeneratedTargets lists lowest bit first; Highway's best target has the lowest
  // bit, so this is already best first.
  return targets;
}

inline std::string TargetName(int64_t target) { return hwy::TargetName(target); }

// Calls fn() once per target with the dispatch pinned to it (and a trace naming it on
// failures); the mock is restored whatever fn does.
template <typename Fn>
void ForEachTarget(Fn&& fn) {
  for (int64_t target : AllTargets()) {
    SCOPED_TRACE("SIMD target " + TargetName(target));
    TargetScope scope(target);
    fn(target);
  }
}

}  // namespace tqlm::testing
