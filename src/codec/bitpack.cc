#include "codec/bitpack.h"

#include <bit>
#include <cstring>

namespace tqlm::codec {

static_assert(std::endian::native == std::endian::little, "bit packing assumes little endian");

void PackIndices(const uint8_t* idx, size_t n, int bits, uint8_t* out) {
  // Groups of 8 indices fill exactly `bits` bytes: build them in one 64-bit word.
  size_t i = 0;
  for (; i + 8 <= n; i += 8, out += bits) {
    uint64_t w = 0;
    for (int k = 0; k < 8; ++k) w |= uint64_t(idx[i + size_t(k)]) << (k * bits);
    std::memcpy(out, &w, size_t(bits));
  }
  // The rest (n % 8 indices): a bit accumulator, flushing whole bytes.
  uint64_t acc = 0;
  int filled = 0;
  for (; i < n; ++i) {
    acc |= uint64_t(idx[i]) << filled;
    filled += bits;
    while (filled >= 8) {
      *out++ = uint8_t(acc);
      acc >>= 8;
      filled -= 8;
    }
  }
  if (filled > 0) *out = uint8_t(acc);
}

void UnpackIndices(const uint8_t* in, size_t n, int bits, uint8_t* idx) {
  const uint64_t mask = (uint64_t(1) << bits) - 1;
  size_t i = 0;
  for (; i + 8 <= n; i += 8, in += bits) {
    uint64_t w = 0;
    std::memcpy(&w, in, size_t(bits));
    for (int k = 0; k < 8; ++k) idx[i + size_t(k)] = uint8_t((w >> (k * bits)) & mask);
  }
  uint64_t acc = 0;
  int filled = 0;
  for (; i < n; ++i) {
    while (filled < bits) {
      acc |= uint64_t(*in++) << filled;
      filled += 8;
    }
    idx[i] = uint8_t(acc & mask);
    acc >>= bits;
    filled -= bits;
  }
}

}  // namespace tqlm::codec
