// TurboQuant_prod: the inner-product estimator is unbiased over the random QJL matrix, with
// variance ≈ π/(2d)·‖r‖² for a random query; TurboQuant_mse is biased (it shrinks <x, x̂>).
#include <gtest/gtest.h>

#include <cmath>
#include <numbers>
#include <vector>

#include "codec_reference.h"
#include "tqlm/codec.h"

namespace tqlm::codec {
namespace {

struct Moments {
  double mean = 0, var = 0, stderr_ = 0;
};

// <q, x̂> - <q, x> for one fixed (x, q) over `seeds` independent codecs (independent S and R).
Moments ErrorOverSeeds(Variant variant, int dim, double bits, const std::vector<float>& x,
                       const std::vector<float>& q, int seeds) {
  double sum = 0, sq = 0, exact = 0;
  for (int j = 0; j < dim; ++j) exact += double(x[size_t(j)]) * q[size_t(j)];
  for (int s = 0; s < seeds; ++s) {
    CodecConfig c;
    c.dim = dim;
    c.bits = bits;
    c.variant = variant;
    c.seed = 1000 + uint64_t(s);
    const TurboQuantCodec codec(c);
    std::vector<uint8_t> code(codec.layout().bytes_per_vector);
    codec.Encode(x.data(), code.data());
    PreparedQuery pq;
    codec.PrepareQuery(q.data(), &pq);
    const double e = codec.Dot(pq, code.data()) - exact;
    sum += e;
    sq += e * e;
  }
  Moments m;
  m.mean = sum / seeds;
  m.var = sq / seeds - m.mean * m.mean;
  m.stderr_ = std::sqrt(m.var / seeds);
  return m;
}

TEST(CodecProd, UnbiasedForAFixedPairOverSeeds) {
  // q = x is the hardest case for a quantizer (MSE shrinks it by D); q partly aligned too.
  const int dim = 64, seeds = 600;
  Rng rng(99);
  const auto x = reference::RandomUnit(rng, dim);
  auto other = reference::RandomUnit(rng, dim);
  std::vector<float> mixed(static_cast<size_t>(dim));
  for (int j = 0; j < dim; ++j) mixed[size_t(j)] = 0.6f * x[size_t(j)] + 0.8f * other[size_t(j)];
  for (double bits : {2.0, 3.0}) {
    for (const std::vector<float>* q : {&x, static_cast<const std::vector<float>*>(&mixed)}) {
      const Moments prod = ErrorOverSeeds(Variant::kProd, dim, bits, x, *q, seeds);
      // Generous: 5 standard errors plus the fp16 rounding of the norms (fixed seeds: no flakes).
      EXPECT_LT(std::abs(prod.mean), 5 * prod.stderr_ + 2e-3) << "bits " << bits << " mean " << prod.mean;
    }
    // The MSE variant at the same total bits is visibly biased for q = x: E<x, x̂> = 1 - D.
    const Moments mse = ErrorOverSeeds(Variant::kMse, dim, bits - 1, x, x, 50);
    const double d_unit = LloydMaxCodebook::Get(dim, int(bits) - 1, CodebookKind::kSphere).distortion * dim;
    EXPECT_NEAR(mse.mean, -d_unit, 0.25 * d_unit);
    EXPECT_GT(std::abs(mse.mean), 10 * mse.stderr_ + 1e-3);
  }
}

TEST(CodecProd, VarianceIsPiOverTwoTimesResidual) {
  // Random unit x and q, one codec: Var(<q, x̂> - <q, x>)·d ≈ π/2 · D_mse(b-1).
  const int dim = 128, n = 3000;
  for (double bits : {2.0, 3.0}) {
    CodecConfig c;
    c.dim = dim;
    c.bits = bits;
    c.variant = Variant::kProd;
    const TurboQuantCodec codec(c);
    Rng rng(17);
    std::vector<uint8_t> code(codec.layout().bytes_per_vector);
    PreparedQuery pq;
    double sum = 0, sq = 0;
    for (int i = 0; i < n; ++i) {
      const auto x = reference::RandomUnit(rng, dim), q = reference::RandomUnit(rng, dim);
      codec.Encode(x.data(), code.data());
      codec.PrepareQuery(q.data(), &pq);
      double exact = 0;
      for (int j = 0; j < dim; ++j) exact += double(x[size_t(j)]) * q[size_t(j)];
      const double e = codec.Dot(pq, code.data()) - exact;
      sum += e;
      sq += e * e;
    }
    const double mean = sum / n, var_d = (sq / n - mean * mean) * dim;
    const double expected = std::numbers::pi / 2 * codec.codebook_hi().distortion * dim;
    EXPECT_NEAR(var_d / expected, 1.0, 0.1) << bits;
    EXPECT_LT(std::abs(mean), 5 * std::sqrt(var_d / dim / n));
  }
}

}  // namespace
}  // namespace tqlm::codec
