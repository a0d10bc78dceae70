// Scalar reference implementations of the codec's SIMD paths, written from the definitions
// (docs/CODEC.md) rather than from the optimized code: double precision, bit-by-bit packing,
// nearest level by linear scan. Tests compare the codec against these.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <numbers>
#include <vector>

#include "codec/half.h"
#include "codec/layout.h"
#include "codec/rng.h"
#include "codec/rotation.h"
#include "tqlm/codec.h"

namespace tqlm::codec::reference {

// Unnormalized Walsh–Hadamard transform of x[0..n), n a power of two, by its definition
// H[i][j] = (-1)^popcount(i & j).
inline std::vector<double> Wht(const std::vector<double>& x) {
  const size_t n = x.size();
  std::vector<double> y(n, 0.0);
  for (size_t i = 0; i < n; ++i) {
    for (size_t j = 0; j < n; ++j) y[i] += (__builtin_popcountll(i & j) % 2 ? -1.0 : 1.0) * x[j];
  }
  return y;
}

inline std::vector<double> BlockWht(const std::vector<double>& x, int block) {
  std::vector<double> y(x.size());
  for (size_t b0 = 0; b0 < x.size(); b0 += size_t(block)) {
    std::vector<double> part(x.begin() + long(b0), x.begin() + long(b0) + block);
    part = Wht(part);
    for (int j = 0; j < block; ++j) y[b0 + size_t(j)] = part[size_t(j)];
  }
  return y;
}

// R = H̃·D1 (one block) or H̃_blk·D2·Π·H̃_blk·D1, from the rotation's plan.
inline std::vector<double> Rotate(const Rotation& r, const float* in) {
  const size_t d = size_t(r.dim());
  std::vector<double> x(d);
  for (size_t j = 0; j < d; ++j) x[j] = double(in[j]) * r.scale1()[j];
  x = BlockWht(x, r.block());
  if (r.perm().empty()) return x;
  std::vector<double> p(d);
  for (size_t k = 0; k < d; ++k) p[r.perm()[k]] = x[k];
  for (size_t j = 0; j < d; ++j) p[j] *= r.scale2()[j];
  return BlockWht(p, r.block());
}

inline std::vector<double> InverseRotate(const Rotation& r, const std::vector<double>& in) {
  const size_t d = size_t(r.dim());
  std::vector<double> x = BlockWht(in, r.block());
  if (!r.perm().empty()) {
    for (size_t j = 0; j < d; ++j) x[j] *= r.scale2()[j];
    std::vector<double> p(d);
    for (size_t k = 0; k < d; ++k) p[k] = x[r.perm()[k]];
    x = BlockWht(p, r.block());
  }
  for (size_t j = 0; j < d; ++j) x[j] *= r.scale1()[j];
  return x;
}

inline int NearestLevel(const LloydMaxCodebook& cb, double t) {
  int best = 0;
  for (int i = 1; i < int(cb.levels.size()); ++i) {
    if (std::abs(t - cb.levels[size_t(i)]) < std::abs(t - cb.levels[size_t(best)])) best = i;
  }
  return best;
}

inline void PutBits(uint8_t* buf, size_t bit, unsigned value, int bits) {
  for (int k = 0; k < bits; ++k, ++bit) {
    if ((value >> k) & 1u) buf[bit / 8] = uint8_t(buf[bit / 8] | (1u << (bit % 8)));
  }
}
inline unsigned GetBits(const uint8_t* buf, size_t bit, int bits) {
  unsigned v = 0;
  for (int k = 0; k < bits; ++k, ++bit) v |= unsigned((buf[bit / 8] >> (bit % 8)) & 1u) << k;
  return v;
}

inline double LoadNorm(const uint8_t* p, NormFormat f) {
  if (f == NormFormat::kF16) {
    uint16_t h;
    std::memcpy(&h, p, 2);
    return F16ToF32(h);
  }
  float v;
  std::memcpy(&v, p, 4);
  return v;
}

// Index of coordinate j and its bit position inside the codes section.
inline size_t CodeBit(const VectorLayout& l, int j) {
  return j < l.n_hi ? size_t(j) * size_t(l.hi_bits)
                    : size_t(l.n_hi) * size_t(l.hi_bits) + size_t(j - l.n_hi) * size_t(l.lo_bits);
}

// The indices stored in an encoded vector.
inline std::vector<int> Indices(const TurboQuantCodec& c, const uint8_t* code) {
  const VectorLayout& l = c.layout();
  std::vector<int> idx(size_t(l.dim));
  for (int j = 0; j < l.dim; ++j) {
    idx[size_t(j)] = int(GetBits(code + l.codes_offset, CodeBit(l, j), j < l.n_hi ? l.hi_bits : l.lo_bits));
  }
  return idx;
}

// ŷ (+ the QJL term) in the rotated domain, times the stored norm.
inline std::vector<double> DecodeRotated(const TurboQuantCodec& c, const uint8_t* code) {
  const VectorLayout& l = c.layout();
  const size_t d = size_t(l.dim);
  const std::vector<int> idx = Indices(c, code);
  std::vector<double> y(d);
  for (size_t j = 0; j < d; ++j) {
    y[j] = (int(j) < l.n_hi ? c.codebook_hi() : c.codebook_lo()).levels[size_t(idx[j])];
  }
  if (c.config().variant == Variant::kProd) {
    const double gamma = LoadNorm(code + l.rnorm_offset, c.config().norm);
    const double scale = std::sqrt(std::numbers::pi / 2) / double(d) * gamma;
    const auto s = c.qjl_matrix();
    for (size_t r = 0; r < d; ++r) {
      const double sign = GetBits(code + l.qjl_offset, r, 1) ? 1.0 : -1.0;
      for (size_t j = 0; j < d; ++j) y[j] += scale * sign * s[r * d + j];
    }
  }
  const double norm = LoadNorm(code + l.norm_offset, c.config().norm);
  for (double& v : y) v *= norm;
  return y;
}

inline std::vector<double> Decode(const TurboQuantCodec& c, const Rotation& r, const uint8_t* code) {
  return InverseRotate(r, DecodeRotated(c, code));
}

// <q, x̂> = <R q, R x̂> straight from the definition.
inline double Dot(const TurboQuantCodec& c, const Rotation& r, const float* q, const uint8_t* code) {
  const std::vector<double> rq = Rotate(r, q);
  const std::vector<double> y = DecodeRotated(c, code);
  double s = 0;
  for (size_t j = 0; j < y.size(); ++j) s += rq[j] * y[j];
  return s;
}

// Encoding from the definition; the MSE indices may differ from the codec's only where the
// rotated coordinate lies within rounding distance of a threshold (see the tests).
struct Encoded {
  std::vector<uint8_t> bytes;
  std::vector<double> rotated;  // y = R x / ‖x‖
};

inline Encoded Encode(const TurboQuantCodec& c, const Rotation& r, const float* x) {
  const VectorLayout& l = c.layout();
  const size_t d = size_t(l.dim);
  Encoded e;
  e.bytes.assign(l.bytes_per_vector, 0);
  double sq = 0;
  for (size_t j = 0; j < d; ++j) sq += double(x[j]) * x[j];
  const double norm = std::sqrt(sq);
  std::vector<float> u(d, 0.0f);
  if (norm > 0) {
    for (size_t j = 0; j < d; ++j) u[j] = float(x[j] / norm);
  }
  e.rotated = Rotate(r, u.data());
  const bool f16 = c.config().norm == NormFormat::kF16;
  auto store = [&](double v, size_t off) {
    if (f16) {
      const uint16_t h = F32ToF16(float(std::min(v, 65504.0)));
      std::memcpy(e.bytes.data() + off, &h, 2);
    } else {
      const float f = float(v);
      std::memcpy(e.bytes.data() + off, &f, 4);
    }
  };
  store(norm, l.norm_offset);
  std::vector<double> residual(d);
  for (size_t j = 0; j < d; ++j) {
    const bool hi = int(j) < l.n_hi;
    const LloydMaxCodebook& cb = hi ? c.codebook_hi() : c.codebook_lo();
    const int idx = NearestLevel(cb, e.rotated[j]);
    PutBits(e.bytes.data() + l.codes_offset, CodeBit(l, int(j)), unsigned(idx), hi ? l.hi_bits : l.lo_bits);
    residual[j] = e.rotated[j] - cb.levels[size_t(idx)];
  }
  if (c.config().variant == Variant::kProd) {
    double rsq = 0;
    for (double v : residual) rsq += v * v;
    store(std::sqrt(rsq), l.rnorm_offset);
    const auto s = c.qjl_matrix();
    for (size_t row = 0; row < d; ++row) {
      double p = 0;
      for (size_t j = 0; j < d; ++j) p += s[row * d + j] * residual[j];
      PutBits(e.bytes.data() + l.qjl_offset, row, p >= 0 ? 1u : 0u, 1);
    }
  }
  return e;
}

inline std::vector<float> RandomUnit(Rng& rng, int dim) {
  std::vector<float> v(static_cast<size_t>(dim));
  double sq = 0;
  for (float& e : v) {
    e = float(rng.Normal());
    sq += double(e) * e;
  }
  for (float& e : v) e = float(e / std::sqrt(sq));
  return v;
}

// Every head dim the codec must support (issue 2), plus the small and large ends.
inline const std::vector<int>& SupportedDims() {
  static const std::vector<int> dims = {16, 32, 64, 80, 96, 128, 192, 256, 512, 1024};
  return dims;
}

}  // namespace tqlm::codec::reference
