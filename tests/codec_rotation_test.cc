// The rotation: orthogonal, invertible, matches the H·D definition, spreads energy, is fixed
// by the seed, and the SIMD kernels agree with the scalar reference on every Highway target.
#include <gtest/gtest.h>

#include <hwy/targets.h>

#include "hwy_target_scope.h"

#include <cmath>
#include <vector>

#include "codec/rotation.h"
#include "codec_reference.h"
#include "tqlm/codec.h"

namespace tqlm::codec {
namespace {

constexpr uint64_t kSeed = CodecConfig{}.seed;

TEST(CodecRotation, MatchesScalarReferenceOnEveryTarget) {
  Rng rng(11);
  for (int64_t target : tqlm::testing::AllTargets()) {
    const tqlm::testing::TargetScope scope(target);  // restored however the body ends
    for (int dim : reference::SupportedDims()) {
      const Rotation r(dim, kSeed);
      const std::vector<float> x = reference::RandomUnit(rng, dim);
      std::vector<float> y(static_cast<size_t>(dim)), back(static_cast<size_t>(dim));
      r.Apply(x.data(), y.data());
      const std::vector<double> ref = reference::Rotate(r, x.data());
      for (int j = 0; j < dim; ++j) {
        ASSERT_NEAR(y[size_t(j)], ref[size_t(j)], 2e-6) << hwy::TargetName(target) << " d=" << dim << " j=" << j;
      }
      r.ApplyInverse(y.data(), back.data());
      const std::vector<double> ref_back = reference::InverseRotate(r, ref);
      for (int j = 0; j < dim; ++j) {
        ASSERT_NEAR(back[size_t(j)], x[size_t(j)], 3e-6) << hwy::TargetName(target) << " d=" << dim;
        ASSERT_NEAR(ref_back[size_t(j)], x[size_t(j)], 1e-7);  // float 1/√B scales
      }
    }
  }
}

TEST(CodecRotation, OneBlockIsNormalizedHadamardTimesSigns) {
  for (int dim : {16, 32, 64, 128, 256, 512, 1024}) {
    const Rotation r(dim, kSeed);
    EXPECT_EQ(r.blocks(), 1);
    EXPECT_TRUE(r.perm().empty());
    // R e_k = H̃ column k times D_kk: every entry ±1/√d.
    std::vector<float> e(size_t(dim), 0.0f), y(static_cast<size_t>(dim));
    e[3] = 1;
    r.Apply(e.data(), y.data());
    for (float v : y) EXPECT_NEAR(std::abs(v), 1 / std::sqrt(float(dim)), 1e-6);
  }
}

TEST(CodecRotation, BlockwiseDimsMixEveryCoordinate) {
  for (int dim : {48, 80, 96, 192, 320, 384}) {
    const Rotation r(dim, kSeed);
    EXPECT_GT(r.blocks(), 1) << dim;
    // Each basis vector reaches every output coordinate, with bounded peak energy.
    double worst_peak = 0;
    for (int k = 0; k < dim; ++k) {
      std::vector<float> e(size_t(dim), 0.0f), y(static_cast<size_t>(dim));
      e[size_t(k)] = 1;
      r.Apply(e.data(), y.data());
      double sq = 0;
      int zeros = 0;
      for (float v : y) {
        sq += double(v) * v;
        zeros += std::abs(v) < 1e-7f;
        worst_peak = std::max(worst_peak, double(v) * v * dim);
      }
      EXPECT_NEAR(sq, 1.0, 1e-5);
      // Sums of a few ±1 terms can cancel; most outputs must be reached.
      EXPECT_LT(zeros, dim / 2) << "d=" << dim << " k=" << k;
    }
    // An output is a sum of ~B/nb random-signed terms, so its share of a spike's energy is
    // (1/d)·χ²₁-like: the largest over all d² (input, output) pairs stays below ~2 ln(d²).
    EXPECT_LT(worst_peak, 4 * std::log(double(dim))) << dim;
  }
}

TEST(CodecRotation, PreservesInnerProducts) {
  Rng rng(5);
  for (int dim : reference::SupportedDims()) {
    const Rotation r(dim, kSeed);
    const auto a = reference::RandomUnit(rng, dim), b = reference::RandomUnit(rng, dim);
    std::vector<float> ra(static_cast<size_t>(dim)), rb(static_cast<size_t>(dim));
    r.Apply(a.data(), ra.data());
    r.Apply(b.data(), rb.data());
    double d0 = 0, d1 = 0;
    for (int j = 0; j < dim; ++j) {
      d0 += double(a[size_t(j)]) * b[size_t(j)];
      d1 += double(ra[size_t(j)]) * rb[size_t(j)];
    }
    EXPECT_NEAR(d0, d1, 2e-6) << dim;
  }
}

TEST(CodecRotation, InPlaceAndDeterministicPerSeed) {
  Rng rng(9);
  const int dim = 96;
  const auto x = reference::RandomUnit(rng, dim);
  std::vector<float> a(static_cast<size_t>(dim)), b = x;
  Rotation(dim, kSeed).Apply(x.data(), a.data());
  Rotation(dim, kSeed).Apply(b.data(), b.data());  // in place, fresh instance
  EXPECT_EQ(a, b);
  std::vector<float> c(static_cast<size_t>(dim));
  Rotation(dim, kSeed + 1).Apply(x.data(), c.data());
  EXPECT_NE(a, c);
  Rotation(dim, kSeed).ApplyInverse(b.data(), b.data());
  for (int j = 0; j < dim; ++j) EXPECT_NEAR(b[size_t(j)], x[size_t(j)], 2e-6);
}

}  // namespace
}  // namespace tqlm::codec
