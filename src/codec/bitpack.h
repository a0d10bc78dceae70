// Dense bit packing of b-bit indices (b = 1..8): index i occupies bits [i*b, (i+1)*b) of the
// byte stream, least significant bit first, with no padding between indices.
#pragma once

#include <cstddef>
#include <cstdint>

namespace tqlm::codec {

inline size_t PackedBytes(size_t n, int bits) { return (n * size_t(bits) + 7) / 8; }

// Writes PackedBytes(n, bits) bytes. Indices must be < 2^bits.
void PackIndices(const uint8_t* idx, size_t n, int bits, uint8_t* out);
// Reads PackedBytes(n, bits) bytes.
void UnpackIndices(const uint8_t* in, size_t n, int bits, uint8_t* idx);

}  // namespace tqlm::codec
