// The valid range of every sampling parameter, one table for every front end: the CLI checks
// its flags against it at parse time (before a model loads) and the server its requests'
// fields, so `--temp 3` and `"temperature": 3` are refused alike.
#pragma once

#include <cstdint>

namespace tqlm::runtime::sampling_limits {

struct Range {
  double lo, hi;
};
inline constexpr Range kTemperature{0, 2};
inline constexpr Range kTopP{0, 1};
inline constexpr Range kMinP{0, 1};
inline constexpr Range kTopK{0, 1 << 20};
inline constexpr Range kPresencePenalty{-2, 2};
inline constexpr Range kFrequencyPenalty{-2, 2};
inline constexpr Range kRepeatPenalty{0.01, 10};
inline constexpr Range kRepeatLastN{0, 1 << 20};

}  // namespace tqlm::runtime::sampling_limits
