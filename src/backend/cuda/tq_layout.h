// The CPU's TurboQuant block layout (kv/block_format_turbo.cc) as functions of a TqFormat,
// compiled for the host and the device: the GPU kernels read and write blocks with them, and
// tests/cuda_tq_layout_test.cc checks them on the host against the CPU's own encoder and
// decoder (so the layout arithmetic is tested where no GPU is).
#pragma once

#include <cstddef>
#include <cstdint>

#include "backend/cuda/tq_kv_kernels.h"

#if defined(__CUDACC__)
#define TQLM_TQ_FN __host__ __device__ __forceinline__
#else
#define TQLM_TQ_FN inline
#endif

namespace tqlm::cuda_backend {

constexpr int kTqBlock = kTqBlockTokens;

TQLM_TQ_FN int UnitBytes(int bits) { return 8 * bits; }

TQLM_TQ_FN int BitsOf(const TqFormat& f, int j) {
  return j < f.n_hi ? f.hi_bits : f.lo_bits;
}

// Byte offset of the key unit of 16-token row s and coordinate group g (4 coordinates).
TQLM_TQ_FN int KeyUnitOffset(const TqFormat& f, int s, int g) {
  const int hi_groups = f.n_hi / 4;
  const int off = g < hi_groups ? g * UnitBytes(f.hi_bits)
                                : hi_groups * UnitBytes(f.hi_bits) + (g - hi_groups) * UnitBytes(f.lo_bits);
  return s * f.k_row_bytes + off;
}

// Byte offset of the value unit of coordinate chunk c (16 coordinates) and token quad u.
TQLM_TQ_FN int ValueUnitOffset(const TqFormat& f, int c, int u) {
  const int hi_chunks = f.n_hi / 16;
  const int bits = 16 * c < f.n_hi ? f.hi_bits : f.lo_bits;
  const int off = c < hi_chunks ? c * 16 * UnitBytes(f.hi_bits)
                                : hi_chunks * 16 * UnitBytes(f.hi_bits) +
                                      (c - hi_chunks) * 16 * UnitBytes(f.lo_bits);
  return off + u * UnitBytes(bits);
}

// Where code (token t, coordinate j) lives: the unit's byte offset and the code's index in it.
TQLM_TQ_FN void CodeAt(const TqFormat& f, int t, int j, int* unit, int* p) {
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
TQLM_TQ_FN int UnitCode(const uint32_t* w, int p) {
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
TQLM_TQ_FN int GetCode(const uint8_t* u, int bits, int p) {
  const uint32_t* w = reinterpret_cast<const uint32_t*>(u);
  switch (bits) {
    case 8: return UnitCode<8>(w, p);
    case 4: return UnitCode<4>(w, p);
    case 3: return UnitCode<3>(w, p);
    case 2: return UnitCode<2>(w, p);
    default: return UnitCode<1>(w, p);
  }
}

// The bits code c at position p of the unit at byte offset `unit` sets (the CPU's SetCode):
// up to two (byte, bits) pairs, the count returned; the caller ORs them into the block.
TQLM_TQ_FN int CodeBits(int unit, int bits, int p, int c, int byte[2], uint32_t val[2]) {
  switch (bits) {
    case 8: byte[0] = unit + p, val[0] = uint32_t(c) & 255u; return 1;
    case 4: byte[0] = unit + p % 32, val[0] = (uint32_t(c) & 15u) << (4 * (p / 32)); return 1;
    case 3:
      byte[0] = unit + p % 16, val[0] = uint32_t(c & 3) << (2 * (p / 16));
      byte[1] = unit + 16 + p / 8, val[1] = uint32_t((c >> 2) & 1) << (p % 8);
      return 2;
    case 2: byte[0] = unit + p % 16, val[0] = uint32_t(c & 3) << (2 * (p / 16)); return 1;
    default: byte[0] = unit + p / 8, val[0] = uint32_t(c & 1) << (p % 8); return 1;
  }
}

// The raw row of position pos (sinks first, then the ring).
TQLM_TQ_FN size_t RawRow(int pos, int sinks, int ring) {
  return pos < sinks ? size_t(pos) : size_t(sinks) + size_t((pos - sinks) % ring);
}

// A TurboQuant tensor's raw rows come in two planes of [sinks + ring][n_kv_heads][dim] fp16:
// the rotated rows (attention reads them), then the input rows rounded to fp16 unrotated (the
// block encoder rotates those, as the CPU encodes the rotation of its fp16 raw rows). This is
// the element offset of the second plane.
TQLM_TQ_FN size_t SourcePlane(int sinks, int ring, int n_kv_heads, int dim) {
  return (size_t(sinks) + size_t(ring)) * size_t(n_kv_heads) * size_t(dim);
}

}  // namespace tqlm::cuda_backend
