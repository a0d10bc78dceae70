// Prefetching the next KV block while the current one is computed on.
//
// A decode step walks blocks that live in separate allocations, so the hardware streamer starts
// cold on each one, and prefetching a whole block in one burst stalls on the line-fill buffers
// (measured: no gain, docs/PERF_NOTES.md v4). A trickle spreads the next block's lines over the
// iterations of the current block's loop, a few per iteration, so memory and compute overlap.
#pragma once

#include <cstddef>
#include <cstdint>

namespace tqlm::kernels {

// The bytes a kernel should prefetch while it works on its own block (none by default).
struct PrefetchRange {
  const uint8_t* p = nullptr;
  size_t bytes = 0;
};

class PrefetchTrickle {
 public:
  // Spread range's cache lines over `iterations` calls of Step.
  PrefetchTrickle(PrefetchRange range, int iterations)
      : base_(reinterpret_cast<const char*>(range.p)), bytes_(range.p ? range.bytes : 0) {
    const size_t lines = (bytes_ + 63) / 64;
    per_step_ = iterations > 0 ? int((lines + size_t(iterations) - 1) / size_t(iterations)) : 0;
  }
  // True once every line has been prefetched.
  bool done() const { return off_ >= bytes_; }
  // Prefetch this iteration's share into L2 (prefetcht1: measured faster than into L1 for f16
  // blocks, whose 32 KB of K and V would crowd out the block being computed on). An offset, not
  // a moving pointer, so nothing ever points past the range.
  inline void Step() {
    for (int i = 0; i < per_step_ && off_ < bytes_; ++i, off_ += 64)
      __builtin_prefetch(base_ + off_, 0, 2);
  }

 private:
  const char* base_;
  size_t bytes_;
  size_t off_ = 0;
  int per_step_ = 0;
};

}  // namespace tqlm::kernels
