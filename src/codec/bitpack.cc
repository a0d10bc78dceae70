#include "codec/bitpack.h"

namespace tqlm::codec {

void PackIndices(const uint8_t* idx, size_t n, int bits, uint8_t* out) {
  // A 64-bit accumulator: append b bits at a time, flush whole bytes.
  uint64_t acc = 0;
  int filled = 0;
  size_t o = 0;
  for (size_t i = 0; i < n; ++i) {
    acc |= uint64_t(idx[i]) << filled;
    filled += bits;
    while (filled >= 8) {
      out[o++] = uint8_t(acc);
      acc >>= 8;
      filled -= 8;
    }
  }
  if (filled > 0) out[o] = uint8_t(acc);
}

void UnpackIndices(const uint8_t* in, size_t n, int bits, uint8_t* idx) {
  const uint64_t mask = (uint64_t(1) << bits) - 1;
  uint64_t acc = 0;
  int filled = 0;
  size_t p = 0;
  for (size_t i = 0; i < n; ++i) {
    while (filled < bits) {
      acc |= uint64_t(in[p++]) << filled;
      filled += 8;
    }
    idx[i] = uint8_t(acc & mask);
    acc >>= bits;
    filled -= bits;
  }
}

}  // namespace tqlm::codec
