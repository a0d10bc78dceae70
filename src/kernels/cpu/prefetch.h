// Prefetching a later KV block while the current one is computed on.
//
// Prefetching a whole block in one burst stalls on the line-fill buffers (measured: no gain,
// docs/PERF_NOTES.md v4). A trickle spreads a later block's lines over the iterations of the
// current block's loop, a few per iteration, so memory and compute overlap; the pools keep a
// stream's blocks contiguous so the hardware streamer helps as well (v9).
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>

namespace tqlm::kernels {

// The bytes a kernel should prefetch while it works on its own block (none by default).
struct PrefetchRange {
  const uint8_t* p = nullptr;
  size_t bytes = 0;
};

// Every line of `range` at once, into L2 like PrefetchTrickle: for a few lines only (the tail
// of a block that a loop's share did not cover).
inline void PrefetchAll(PrefetchRange range) {
  for (size_t off = 0; range.p && off < range.bytes; off += 64)
    __builtin_prefetch(range.p + off, 0, 2);
}

class PrefetchTrickle {
 public:
  // Spread range's cache lines evenly over `iterations` calls of Step: line j goes out at call
  // floor(j * iterations / lines) (a Bresenham walk), so a block of 66 lines over 64 iterations
  // is issued one or two lines at a time across the whole loop. Rounding the rate up to whole
  // lines per call, as the first version did, issued such a block in the first half of the loop,
  // a burst that filled the line-fill buffers and stalled the loop's own loads (32K tq4/tq3,
  // 1 thread: 3.56-3.67 -> 3.21-3.25 ms with the K lines spread; docs/PERF_NOTES.md v8).
  PrefetchTrickle(PrefetchRange range, int iterations)
      : base_(reinterpret_cast<const char*>(range.p)), bytes_(range.p ? range.bytes : 0) {
    lines_ = int((bytes_ + 63) / 64);
    iters_ = std::max(iterations, 1);
    credit_ = iters_ - 1;  // the first call issues line 0
  }
  // True once every line has been prefetched.
  bool done() const { return off_ >= bytes_; }
  // Prefetch this iteration's share into L2 (prefetcht1: measured faster than into L1 for f16
  // blocks, whose 32 KB of K and V would crowd out the block being computed on). An offset, not
  // a moving pointer, so nothing ever points past the range.
  inline void Step() {
    credit_ += lines_;
    for (; credit_ >= iters_ && off_ < bytes_; credit_ -= iters_, off_ += 64)
      __builtin_prefetch(base_ + off_, 0, 2);
  }

 private:
  const char* base_;
  size_t bytes_;
  size_t off_ = 0;
  int lines_ = 0, iters_ = 1, credit_ = 0;
};

}  // namespace tqlm::kernels
