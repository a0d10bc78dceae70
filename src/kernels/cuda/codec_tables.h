// GPU tables (tq_attention.h) from the codec itself: the dense rotation as R e_i for every basis
// vector and the codec's Lloyd–Max levels and thresholds. Header-only and C++20 (codec.h uses
// std::span): include it from host code that links the tqlm library; the CUDA sources do not.
#pragma once

#include <algorithm>
#include <string>
#include <vector>

#include "kernels/cuda/tq_attention.h"
#include "tqlm/codec.h"
#include "tqlm/error.h"

namespace tqlm::cuda {

// One side from a codec (integer-bit kMse codecs of 1..4 bits), or an fp16 side when codec is null.
inline SideTables SideFromCodec(const codec::TurboQuantCodec* c) {
  SideTables s;
  if (!c) return s;  // fp16
  const codec::VectorLayout& l = c->layout();
  if (c->config().variant != codec::Variant::kMse || l.hi_bits != l.lo_bits) {
    throw Error("cuda: the GPU kernels take TurboQuant-MSE codecs of whole bits (1..4)");
  }
  s.bits = l.hi_bits;
  s.levels = c->codebook_hi().levels;
  s.thresholds = c->codebook_hi().thresholds;
  return s;
}

inline std::vector<float> RotationMatrix(const codec::TurboQuantCodec& c) {
  const int d = c.config().dim;
  std::vector<float> r(size_t(d) * d), e(d), col(d);
  for (int i = 0; i < d; ++i) {
    std::fill(e.begin(), e.end(), 0.0f);
    e[i] = 1;
    c.Rotate(e.data(), col.data());
    for (int j = 0; j < d; ++j) r[size_t(j) * d + i] = col[j];  // y = R x, row-major
  }
  return r;
}

// k or v may be null for an fp16 side; `rotation` supplies R when both are (any codec of the
// same dim and seed; the identity is not used so that fp16 sinks stay in the codecs' domain).
inline CodecTables TablesFromCodecs(const codec::TurboQuantCodec* k, const codec::TurboQuantCodec* v,
                                    const codec::TurboQuantCodec& rotation) {
  CodecTables t;
  t.dim = rotation.config().dim;
  t.rot_k = RotationMatrix(k ? *k : rotation);
  t.rot_v = RotationMatrix(v ? *v : rotation);
  t.k = SideFromCodec(k);
  t.v = SideFromCodec(v);
  FinishTables(&t);
  return t;
}

}  // namespace tqlm::cuda
