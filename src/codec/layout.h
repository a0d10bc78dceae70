// The byte layout of one encoded vector, computed from the codec config: the single place that
// decides where each section lives and how many bytes a vector takes (nothing is hand-written).
//
//   [norm: fp16 | fp32] [codes: n_hi indices of hi_bits, then dim - n_hi of lo_bits, densely
//   bit-packed LSB-first] [prod only: residual norm (same format as the norm)] [prod only: dim
//   QJL sign bits, LSB-first, bit set = +1]
//
// No padding anywhere: every supported dim is a multiple of 16, so each section ends on a byte.
#pragma once

#include <cmath>
#include <string>

#include "tqlm/codec.h"
#include "tqlm/error.h"

namespace tqlm::codec {

inline constexpr int kMinDim = 16;
inline constexpr int kMaxDim = 1024;
inline constexpr int kMaxBits = 8;  // per coordinate of the MSE stage

// Largest power of two dividing `dim`: the Walsh–Hadamard block size.
inline int RotationBlockSize(int dim) { return dim > 0 ? (dim & -dim) : 0; }

// Supported head dims: every power of two in [16, 1024], and B * nb with B the largest power of
// two dividing dim, B >= 16 and nb odd <= B (so a block's coordinates can reach every block in
// the rotation's mixing permutation): 48, 80, 96, 112, 160, 192, 224, 320, 384, ...
inline bool IsSupportedDim(int dim) {
  if (dim < kMinDim || dim > kMaxDim) return false;
  const int block = RotationBlockSize(dim);
  return block >= 16 && dim / block <= block;
}

// Bits of the MSE stage per coordinate, split into a b+1 and a b part for fractional widths.
struct BitSplit {
  int hi_bits = 0, lo_bits = 0, n_hi = 0;
};

inline BitSplit SplitBits(int dim, double bits, Variant variant) {
  const double mse_bits = variant == Variant::kProd ? bits - 1 : bits;
  const double twice = 2 * mse_bits;
  if (!(twice >= 2 && twice <= 2 * kMaxBits) || twice != std::floor(twice)) {
    throw Error("codec: bits must be 1, 1.5, 2, ..., 8 per coordinate (" +
                std::string(variant == Variant::kProd ? "prod adds 1 QJL bit: 2 .. 9" : "mse") +
                "), got " + std::to_string(bits));
  }
  const int whole = int(std::floor(mse_bits));
  if (mse_bits == whole) return {whole, whole, dim};
  return {whole + 1, whole, dim / 2};
}

inline size_t NormBytes(NormFormat f) { return f == NormFormat::kF16 ? 2 : 4; }

inline VectorLayout ComputeLayout(const CodecConfig& c) {
  if (!IsSupportedDim(c.dim)) {
    throw Error("codec: unsupported dim " + std::to_string(c.dim) +
                " (powers of two 16..1024, or e.g. 48, 80, 96, 160, 192, 384)");
  }
  const BitSplit split = SplitBits(c.dim, c.bits, c.variant);
  VectorLayout l;
  l.dim = c.dim;
  l.hi_bits = split.hi_bits;
  l.lo_bits = split.lo_bits;
  l.n_hi = split.n_hi;
  l.qjl_bits = c.variant == Variant::kProd ? c.dim : 0;
  const size_t code_bits =
      size_t(l.n_hi) * size_t(l.hi_bits) + size_t(c.dim - l.n_hi) * size_t(l.lo_bits);
  l.norm_offset = 0;
  l.norm_bytes = NormBytes(c.norm);
  l.codes_offset = l.norm_offset + l.norm_bytes;
  l.codes_bytes = (code_bits + 7) / 8;
  l.rnorm_offset = l.codes_offset + l.codes_bytes;
  l.rnorm_bytes = c.variant == Variant::kProd ? NormBytes(c.norm) : 0;
  l.qjl_offset = l.rnorm_offset + l.rnorm_bytes;
  l.qjl_bytes = (size_t(l.qjl_bits) + 7) / 8;
  l.bytes_per_vector = l.qjl_offset + l.qjl_bytes;
  return l;
}

// Bit offset of the lo section inside the codes (byte aligned: n_hi is a multiple of 8).
inline size_t LoSectionByte(const VectorLayout& l) {
  return size_t(l.n_hi) * size_t(l.hi_bits) / 8;
}

}  // namespace tqlm::codec
