// Encode/decode: agreement with the scalar reference, distortion close to the codebook's,
// zero and scaled inputs, fp32 norms, determinism for a seed, every supported dim and width.
#include <gtest/gtest.h>

#include <cmath>
#include <numbers>
#include <vector>

#include "codec_reference.h"
#include "tqlm/codec.h"

namespace tqlm::codec {
namespace {

CodecConfig Config(int dim, double bits, Variant v = Variant::kMse) {
  CodecConfig c;
  c.dim = dim;
  c.bits = bits;
  c.variant = v;
  return c;
}

// Encoded bytes equal the reference's, except that an MSE index may differ where the rotated
// coordinate is within float rounding of a decision threshold, and a QJL sign where the
// projection is within rounding of 0 (the codec works in float, the reference in double).
void ExpectMatchesReference(const TurboQuantCodec& codec, const float* x) {
  const VectorLayout& l = codec.layout();
  const Rotation rot(l.dim, codec.config().seed);
  std::vector<uint8_t> code(l.bytes_per_vector);
  codec.Encode(x, code.data());
  const reference::Encoded ref = reference::Encode(codec, rot, x);
  EXPECT_EQ(0, std::memcmp(code.data(), ref.bytes.data(), l.codes_offset)) << "norm";
  const auto idx = reference::Indices(codec, code.data());
  const auto ref_idx = reference::Indices(codec, ref.bytes.data());
  int mismatches = 0;
  for (int j = 0; j < l.dim; ++j) {
    if (idx[size_t(j)] == ref_idx[size_t(j)]) continue;
    ++mismatches;
    const auto& cb = j < l.n_hi ? codec.codebook_hi() : codec.codebook_lo();
    const int lo = std::min(idx[size_t(j)], ref_idx[size_t(j)]);
    EXPECT_EQ(std::abs(idx[size_t(j)] - ref_idx[size_t(j)]), 1);
    EXPECT_NEAR(ref.rotated[size_t(j)], cb.thresholds[size_t(lo)], 1e-5) << "j=" << j;
  }
  EXPECT_LE(mismatches, 2);
  if (codec.config().variant == Variant::kProd && mismatches == 0) {
    int sign_flips = 0;
    for (int r = 0; r < l.dim; ++r) {
      sign_flips += reference::GetBits(code.data() + l.qjl_offset, size_t(r), 1) !=
                    reference::GetBits(ref.bytes.data() + l.qjl_offset, size_t(r), 1);
    }
    EXPECT_LE(sign_flips, 2);
    EXPECT_NEAR(reference::LoadNorm(code.data() + l.rnorm_offset, codec.config().norm),
                reference::LoadNorm(ref.bytes.data() + l.rnorm_offset, codec.config().norm), 2e-3);
  }
  // Decode matches the reference decoder of the same bytes.
  std::vector<float> xhat(size_t(l.dim));
  codec.Decode(code.data(), xhat.data());
  const std::vector<double> ref_hat = reference::Decode(codec, rot, code.data());
  for (int j = 0; j < l.dim; ++j) EXPECT_NEAR(xhat[size_t(j)], ref_hat[size_t(j)], 1e-5);
}

TEST(CodecRoundTrip, MatchesReferenceForEveryDimAndWidth) {
  Rng rng(21);
  for (int dim : reference::SupportedDims()) {
    for (double bits : {1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0, 5.0, 6.5, 8.0}) {
      const TurboQuantCodec codec(Config(dim, bits));
      for (int i = 0; i < 3; ++i) {
        std::vector<float> x = reference::RandomUnit(rng, dim);
        for (float& v : x) v *= 3.7f;  // a non-unit norm
        ExpectMatchesReference(codec, x.data());
      }
    }
    if (dim > 256) continue;  // the reference QJL is O(d²) per vector
    for (double bits : {2.0, 3.0, 3.5, 4.0}) {
      const TurboQuantCodec codec(Config(dim, bits, Variant::kProd));
      std::vector<float> x = reference::RandomUnit(rng, dim);
      ExpectMatchesReference(codec, x.data());
    }
  }
}

// Mean ‖u - û‖² over random unit vectors, and the codebooks' expected value
// (n_hi D_hi + (d - n_hi) D_lo).
struct MseCheck {
  double measured = 0, expected = 0, stderr_ = 0;
};

MseCheck MeasureMse(const TurboQuantCodec& codec, int n, uint64_t seed) {
  const VectorLayout& l = codec.layout();
  Rng rng(seed);
  std::vector<uint8_t> code(l.bytes_per_vector);
  std::vector<float> xhat(size_t(l.dim));
  MseCheck m;
  double sq = 0;
  for (int i = 0; i < n; ++i) {
    const auto x = reference::RandomUnit(rng, l.dim);
    codec.Encode(x.data(), code.data());
    codec.Decode(code.data(), xhat.data());
    double e = 0;
    for (int j = 0; j < l.dim; ++j) e += std::pow(double(x[size_t(j)]) - xhat[size_t(j)], 2);
    m.measured += e;
    sq += e * e;
  }
  m.measured /= n;
  m.stderr_ = std::sqrt((sq / n - m.measured * m.measured) / n);
  m.expected = l.n_hi * codec.codebook_hi().distortion + (l.dim - l.n_hi) * codec.codebook_lo().distortion;
  return m;
}

TEST(CodecRoundTrip, DistortionMatchesCodebookAtEveryDimAndWidth) {
  for (int dim : reference::SupportedDims()) {
    for (double bits = 1; bits <= 8; bits += 0.5) {
      const TurboQuantCodec codec(Config(dim, bits));
      const int n = dim >= 512 ? 100 : 300;
      const MseCheck m = MeasureMse(codec, n, 1000 + uint64_t(dim) + uint64_t(bits * 2));
      // 5 standard errors of the mean (measured: at high rates rare tail coordinates in the
      // wide outer cells dominate, so the spread is far from Gaussian), plus 1%.
      EXPECT_NEAR(m.measured, m.expected, 5 * m.stderr_ + 0.01 * m.expected)
          << "d=" << dim << " bits=" << bits;
    }
  }
}

TEST(CodecRoundTrip, ProdDistortionIsPiOverTwoTimesTheMseStage) {
  // E‖r̂ - r‖² = ‖r‖² (π/2 - 1/d) for the QJL estimate r̂ of the residual r (E‖Sᵀ sign(S r)‖² =
  // d² + d(d-1)·2/π), so prod's distortion is D_mse(b-1)·(π/2 - 1/d): the sketch buys
  // unbiased inner products, not a lower MSE.
  double last = 1e9;
  for (double bits : {2.0, 3.0, 4.0, 5.0}) {
    const int dim = 64;
    const TurboQuantCodec codec(Config(dim, bits, Variant::kProd));
    const MseCheck m = MeasureMse(codec, 400, 77);
    EXPECT_NEAR(m.measured / m.expected, std::numbers::pi / 2 - 1.0 / dim, 0.1) << bits;
    EXPECT_LT(m.measured, last);
    last = m.measured;
  }
}

TEST(CodecRoundTrip, ZeroAndScaledInputs) {
  for (Variant v : {Variant::kMse, Variant::kProd}) {
    const TurboQuantCodec codec(Config(128, 3, v));
    const VectorLayout& l = codec.layout();
    std::vector<float> zero(128, 0.0f), out(128, 1.0f);
    std::vector<uint8_t> code(l.bytes_per_vector);
    codec.Encode(zero.data(), code.data());
    codec.Decode(code.data(), out.data());
    for (float o : out) EXPECT_EQ(o, 0.0f);
    PreparedQuery q;
    std::vector<float> ones(128, 1.0f);
    codec.PrepareQuery(ones.data(), &q);
    EXPECT_EQ(codec.Dot(q, code.data()), 0.0f);
    // Scaling x by c scales x̂ by c (up to the fp16 norm's rounding).
    Rng rng(4);
    const auto x = reference::RandomUnit(rng, 128);
    std::vector<float> big(128), a(128), b(128);
    for (int j = 0; j < 128; ++j) big[size_t(j)] = 100 * x[size_t(j)];
    codec.Encode(x.data(), code.data());
    codec.Decode(code.data(), a.data());
    codec.Encode(big.data(), code.data());
    codec.Decode(code.data(), b.data());
    for (int j = 0; j < 128; ++j) EXPECT_NEAR(b[size_t(j)], 100 * a[size_t(j)], 1e-3 * 100 * std::abs(a[size_t(j)]) + 1e-5);
  }
}

TEST(CodecRoundTrip, Fp32NormKeepsLargeAndPreciseNorms) {
  CodecConfig c = Config(64, 4);
  c.norm = NormFormat::kF32;
  const TurboQuantCodec f32(c);
  const TurboQuantCodec f16(Config(64, 4));
  Rng rng(8);
  auto x = reference::RandomUnit(rng, 64);
  for (float& v : x) v *= 1e6f;  // beyond fp16: saturates there, exact in fp32
  std::vector<uint8_t> code32(f32.layout().bytes_per_vector), code16(f16.layout().bytes_per_vector);
  f32.Encode(x.data(), code32.data());
  f16.Encode(x.data(), code16.data());
  EXPECT_NEAR(reference::LoadNorm(code32.data(), NormFormat::kF32), 1e6, 1);
  EXPECT_EQ(reference::LoadNorm(code16.data(), NormFormat::kF16), 65504.0);
}

TEST(CodecRoundTrip, DeterministicForASeed) {
  Rng rng(12);
  const auto x = reference::RandomUnit(rng, 80);
  for (Variant v : {Variant::kMse, Variant::kProd}) {
    CodecConfig c = Config(80, 3.5, v);
    const TurboQuantCodec a(c), b(c);
    std::vector<uint8_t> ca(a.layout().bytes_per_vector), cb(ca.size()), cc(ca.size());
    a.Encode(x.data(), ca.data());
    b.Encode(x.data(), cb.data());
    EXPECT_EQ(ca, cb);
    a.EncodeBatch(x.data(), 1, cc.data());
    EXPECT_EQ(ca, cc);
    c.seed ^= 1;
    const TurboQuantCodec other(c);
    other.Encode(x.data(), cc.data());
    EXPECT_NE(ca, cc);  // another seed, another rotation
  }
}

TEST(CodecRoundTrip, MoveKeepsTheCodec) {
  TurboQuantCodec a(Config(64, 2));
  TurboQuantCodec b = std::move(a);
  EXPECT_EQ(b.layout().bytes_per_vector, 18u);
  a = TurboQuantCodec(Config(32, 3));
  EXPECT_EQ(a.layout().dim, 32);
}

}  // namespace
}  // namespace tqlm::codec
