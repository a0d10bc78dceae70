#include "codec/rotation.h"

#include <cmath>

#include "codec/kernels.h"
#include "codec/layout.h"
#include "codec/rng.h"

namespace tqlm::codec {
namespace {

std::vector<float> RandomSigns(Rng& rng, int n, float magnitude) {
  std::vector<float> s(size_t(n), 0.0f);
  for (int i = 0; i < n; i += 64) {
    const uint64_t bits = rng.Next();
    for (int k = 0; k < 64 && i + k < n; ++k) s[size_t(i + k)] = (bits >> k) & 1 ? magnitude : -magnitude;
  }
  return s;
}

}  // namespace

Rotation::Rotation(int dim, uint64_t seed) : dim_(dim), block_(RotationBlockSize(dim)) {
  if (!IsSupportedDim(dim)) throw Error("rotation: unsupported dim " + std::to_string(dim));
  Rng rng(seed ^ 0x526f746174696f6eull);  // "Rotation"
  const float magnitude = 1.0f / std::sqrt(float(block_));
  scale1_ = RandomSigns(rng, dim, magnitude);
  const int nb = dim / block_;
  if (nb > 1) {
    scale2_ = RandomSigns(rng, dim, magnitude);
    perm_.resize(size_t(dim));
    for (int i = 0; i < nb; ++i) {
      for (int j = 0; j < block_; ++j) perm_[size_t(i * block_ + j)] = uint32_t(j * nb + i);
    }
  }
}

void Rotation::Apply(const float* in, float* out) const {
  const size_t d = size_t(dim_), b = size_t(block_);
  kernels::ScaledFwht(in, scale1_.data(), false, out, d, b);
  if (perm_.empty()) return;
  alignas(64) float tmp[kMaxDim];
  for (size_t k = 0; k < d; ++k) tmp[perm_[k]] = out[k];
  kernels::ScaledFwht(tmp, scale2_.data(), false, out, d, b);
}

void Rotation::ApplyInverse(const float* in, float* out) const {
  const size_t d = size_t(dim_), b = size_t(block_);
  if (perm_.empty()) {
    kernels::ScaledFwht(in, scale1_.data(), true, out, d, b);
    return;
  }
  alignas(64) float tmp[kMaxDim];
  kernels::ScaledFwht(in, scale2_.data(), true, tmp, d, b);
  for (size_t k = 0; k < d; ++k) out[k] = tmp[perm_[k]];
  kernels::ScaledFwht(out, scale1_.data(), true, out, d, b);
}

}  // namespace tqlm::codec
