// Constant tables for unpacking 16 densely packed b-bit indices (2b bytes, byte aligned) into
// 32-bit lanes with one byte shuffle and one variable shift: lane j needs bits
// [b*j, b*j + b), which lie in byte b*j/8 and, if they cross a byte boundary, the next one.
#pragma once

#include <cstdint>

namespace tqlm::codec::kernels {

struct UnpackTable {
  alignas(64) uint8_t bytes[64];    // per lane: [first byte, second byte or 0x80 (= zero), 0x80, 0x80]
  alignas(64) uint32_t shifts[16];  // per lane: b*j % 8
};

constexpr UnpackTable MakeUnpackTable(int bits) {
  UnpackTable t{};
  for (int j = 0; j < 16; ++j) {
    const int bit = bits * j;
    t.bytes[4 * j] = uint8_t(bit / 8);
    t.bytes[4 * j + 1] = (bit % 8) + bits > 8 ? uint8_t(bit / 8 + 1) : uint8_t(0x80);
    t.bytes[4 * j + 2] = 0x80;
    t.bytes[4 * j + 3] = 0x80;
    t.shifts[j] = uint32_t(bit % 8);
  }
  return t;
}

inline constexpr UnpackTable kUnpackTables[9] = {
    MakeUnpackTable(0), MakeUnpackTable(1), MakeUnpackTable(2), MakeUnpackTable(3),
    MakeUnpackTable(4), MakeUnpackTable(5), MakeUnpackTable(6), MakeUnpackTable(7),
    MakeUnpackTable(8)};

// Lane j of a 16-lane group tests bit j.
alignas(64) inline constexpr uint32_t kLaneBit[16] = {
    1u << 0, 1u << 1, 1u << 2,  1u << 3,  1u << 4,  1u << 5,  1u << 6,  1u << 7,
    1u << 8, 1u << 9, 1u << 10, 1u << 11, 1u << 12, 1u << 13, 1u << 14, 1u << 15};

}  // namespace tqlm::codec::kernels
