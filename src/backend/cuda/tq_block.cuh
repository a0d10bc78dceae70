// Device helpers for the CPU's TurboQuant block layout (kv/block_format_turbo.cc), shared by
// the encoder (tq_kv_encode.cu) and the attention (attention_tq.cu):
//   keys:   unit (s, g) holds tokens [16 s, 16 s + 16) x coordinates [4 g, 4 g + 4), code
//           p = 4 (t % 16) + j % 4, at s * k_row_bytes + (units of groups before g);
//   values: unit (c, u) holds coordinates [16 c, 16 c + 16) x tokens [4 u, 4 u + 4), code
//           p = 4 (j % 16) + t % 4, at (units of chunks before c) + u * unit bytes;
// a unit of b-bit codes is 8 b bytes (64 codes), packed as GetCode/SetCode of the CPU file.
#pragma once

#include <cuda_fp16.h>

#include <cstdint>

#include "backend/cuda/tq_kv_kernels.h"

namespace tqlm::cuda_backend {

constexpr int kTqBlock = kTqBlockTokens;

__device__ __forceinline__ int UnitBytes(int bits) { return 8 * bits; }

__device__ __forceinline__ int BitsOf(const TqFormat& f, int j) {
  return j < f.n_hi ? f.hi_bits : f.lo_bits;
}

// Byte offset of the key unit of 16-token row s and coordinate group g (4 coordinates).
__device__ __forceinline__ int KeyUnitOffset(const TqFormat& f, int s, int g) {
  const int hi_groups = f.n_hi / 4;
  const int off = g < hi_groups ? g * UnitBytes(f.hi_bits)
                                : hi_groups * UnitBytes(f.hi_bits) + (g - hi_groups) * UnitBytes(f.lo_bits);
  return s * f.k_row_bytes + off;
}

// Byte offset of the value unit of coordinate chunk c (16 coordinates) and token quad u.
__device__ __forceinline__ int ValueUnitOffset(const TqFormat& f, int c, int u) {
  const int hi_chunks = f.n_hi / 16;
  const int bits = 16 * c < f.n_hi ? f.hi_bits : f.lo_bits;
  const int off = c < hi_chunks ? c * 16 * UnitBytes(f.hi_bits)
                                : hi_chunks * 16 * UnitBytes(f.hi_bits) +
                                      (c - hi_chunks) * 16 * UnitBytes(f.lo_bits);
  return off + u * UnitBytes(bits);
}

// Where code (token t, coordinate j) lives: the unit's byte offset and the code's index in it.
__device__ __forceinline__ void CodeAt(const TqFormat& f, int t, int j, int* unit, int* p) {
  if (f.key) {
    *unit = KeyUnitOffset(f, t / 16, j / 4);
    *p = 4 * (t % 16) + j % 4;
  } else {
    *unit = ValueUnitOffset(f, j / 16, t / 4);
    *p = 4 * (j % 16) + t % 4;
  }
}

// Code p of a unit given as little-endian 32-bit words (2 * BITS words).
template <int BITS>
__device__ __forceinline__ int UnitCode(const uint32_t* w, int p) {
  if constexpr (BITS == 8) {
    return (w[p / 4] >> (8 * (p % 4))) & 255;
  } else if constexpr (BITS == 4) {
    const int b = p % 32;
    return (w[b / 4] >> (8 * (b % 4) + 4 * (p / 32))) & 15;
  } else if constexpr (BITS == 2 || BITS == 3) {
    const int b = p % 16;
    int c = (w[b / 4] >> (8 * (b % 4) + 2 * (p / 16))) & 3;
    if constexpr (BITS == 3) c |= int((w[4 + p / 32] >> (p % 32)) & 1) << 2;
    return c;
  } else {
    return (w[p / 32] >> (p % 32)) & 1;
  }
}

// Code p of the unit at `u` (bytes, 4-byte aligned), any width.
__device__ __forceinline__ int GetCode(const uint8_t* u, int bits, int p) {
  const uint32_t* w = reinterpret_cast<const uint32_t*>(u);
  switch (bits) {
    case 8: return UnitCode<8>(w, p);
    case 4: return UnitCode<4>(w, p);
    case 3: return UnitCode<3>(w, p);
    case 2: return UnitCode<2>(w, p);
    default: return UnitCode<1>(w, p);
  }
}

// ORs code c into position p of the unit at byte offset `unit` of a block image held as words
// (shared memory; threads share words, hence the atomics).
__device__ __forceinline__ void OrByte(uint32_t* img, int byte, uint32_t bits) {
  atomicOr(img + byte / 4, bits << (8 * (byte % 4)));
}
__device__ __forceinline__ void SetCode(uint32_t* img, int unit, int bits, int p, int c) {
  switch (bits) {
    case 8: OrByte(img, unit + p, uint32_t(c)); break;
    case 4: OrByte(img, unit + p % 32, uint32_t(c) << (4 * (p / 32))); break;
    case 3:
      OrByte(img, unit + 16 + p / 8, uint32_t((c >> 2) & 1) << (p % 8));
      OrByte(img, unit + p % 16, uint32_t(c & 3) << (2 * (p / 16)));
      break;
    case 2: OrByte(img, unit + p % 16, uint32_t(c & 3) << (2 * (p / 16))); break;
    default: OrByte(img, unit + p / 8, uint32_t(c & 1) << (p % 8)); break;
  }
}

// The raw row of position pos (sinks first, then the ring).
__device__ __forceinline__ size_t RawRow(int pos, int sinks, int ring) {
  return pos < sinks ? size_t(pos) : size_t(sinks) + size_t((pos - sinks) % ring);
}

}  // namespace tqlm::cuda_backend
