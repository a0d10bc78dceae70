// The codec's fixed random orthogonal transform R (seeded, identical on every run).
//
// dim a power of two (one block, B = dim):     R = H̃ · D1
// dim = B · nb, B = largest power of two dividing dim, 1 < nb <= B (e.g. 80 = 16·5,
// 96 = 32·3, 192 = 64·3):                        R = H̃_blk · D2 · Π · H̃_blk · D1
// with D1, D2 random ±1 diagonals, H̃_blk the normalized Walsh–Hadamard transform (H / √B)
// applied to each block of B consecutive coordinates, and Π the "transpose" permutation that
// sends coordinate j of block i to position j·nb + i, so that each block's B outputs of the
// first stage are dealt out over all nb blocks (B >= nb) before the second stage mixes them.
// Every output then depends on every input, with weights of equal expected energy.
// Each stage is orthogonal, so R is; R⁻¹ = D1 · H̃_blk · Πᵀ · D2 · H̃_blk. Cost O(d log B).
#pragma once

#include <cstdint>
#include <vector>

namespace tqlm::codec {

class Rotation {
 public:
  Rotation(int dim, uint64_t seed);

  int dim() const { return dim_; }
  int block() const { return block_; }
  int blocks() const { return dim_ / block_; }

  // in == out allowed.
  void Apply(const float* in, float* out) const;
  void ApplyInverse(const float* in, float* out) const;

  // The plan, for reference implementations: D1/√B, D2/√B (empty for one block) and Π
  // (out[perm[k]] = in[k]; empty for one block).
  const std::vector<float>& scale1() const { return scale1_; }
  const std::vector<float>& scale2() const { return scale2_; }
  const std::vector<uint32_t>& perm() const { return perm_; }

 private:
  int dim_, block_;
  std::vector<float> scale1_, scale2_;
  std::vector<uint32_t> perm_;
};

}  // namespace tqlm::codec
