// A read loop that is bound by memory, not by its own arithmetic: the bandwidth reference of
// `tqlm bench attn` (read_gbps).
#pragma once

#include <cstddef>

namespace tqlm::kernels {

// Sum of x[0..n), with independent vector accumulators (Highway, best target of this CPU), so
// that one core issues loads as fast as memory delivers them.
float SumForReadRate(const float* x, size_t n);

}  // namespace tqlm::kernels
