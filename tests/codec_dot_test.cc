// Compressed-domain inner products: Dot / DotBatch against the scalar reference and against
// <q, Decode(code)>, on every Highway target, at batch edges (no read past the buffer).
#include <gtest/gtest.h>

#include <hwy/targets.h>

#include "hwy_target_scope.h"

#include <cmath>
#include <memory>
#include <vector>

#include "codec/half.h"
#include "codec/kernels.h"
#include "codec_reference.h"
#include "tqlm/codec.h"

namespace tqlm::codec {
namespace {

CodecConfig Config(int dim, double bits, Variant v, NormFormat nf = NormFormat::kF16) {
  CodecConfig c;
  c.dim = dim;
  c.bits = bits;
  c.variant = v;
  c.norm = nf;
  return c;
}

// Encodes n random vectors (norm ~ 2) into a buffer of exactly n * bytes_per_vector bytes.
std::vector<uint8_t> EncodeRandom(const TurboQuantCodec& codec, size_t n, Rng& rng) {
  const VectorLayout& l = codec.layout();
  std::vector<float> x(n * size_t(l.dim));
  for (float& v : x) v = float(rng.Normal() * 0.18);
  std::vector<uint8_t> codes(n * l.bytes_per_vector);
  codec.EncodeBatch(x.data(), n, codes.data());
  return codes;
}

void CheckDots(const TurboQuantCodec& codec, Rng& rng, const char* target) {
  const VectorLayout& l = codec.layout();
  const Rotation rot(l.dim, codec.config().seed);
  const size_t n = 5;
  const std::vector<uint8_t> codes = EncodeRandom(codec, n, rng);
  std::vector<float> q(size_t(l.dim));
  for (float& v : q) v = float(rng.Normal());
  PreparedQuery pq;
  codec.PrepareQuery(q.data(), &pq);
  std::vector<float> batch(n);
  codec.DotBatch(pq, codes.data(), n, batch.data());
  std::vector<float> xhat(size_t(l.dim));
  for (size_t i = 0; i < n; ++i) {
    const uint8_t* code = codes.data() + i * l.bytes_per_vector;
    const double ref = reference::Dot(codec, rot, q.data(), code);
    codec.Decode(code, xhat.data());
    double via_decode = 0, scale = 0;
    for (int j = 0; j < l.dim; ++j) {
      via_decode += double(q[size_t(j)]) * xhat[size_t(j)];
      scale += std::abs(double(q[size_t(j)]) * xhat[size_t(j)]);
    }
    const double tol = 2e-6 * scale + 1e-6;
    EXPECT_NEAR(batch[i], ref, tol) << target << " d=" << l.dim << " bits=" << codec.config().bits;
    EXPECT_NEAR(via_decode, ref, tol) << target << " d=" << l.dim;
    EXPECT_EQ(codec.Dot(pq, code), batch[i]) << "Dot and DotBatch must agree exactly";
  }
}

TEST(CodecDot, MatchesReferenceOnEveryTargetDimAndWidth) {
  Rng rng(31);
  for (int64_t target : tqlm::testing::AllTargets()) {
    const tqlm::testing::TargetScope scope(target);  // restored however the body ends
    const char* name = hwy::TargetName(target);
    for (int dim : reference::SupportedDims()) {
      for (double bits : {1.0, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5, 5.0, 7.5, 8.0}) {
        CheckDots(TurboQuantCodec(Config(dim, bits, Variant::kMse)), rng, name);
      }
      if (dim > 256) continue;
      for (double bits : {2.0, 3.0, 4.5}) {
        CheckDots(TurboQuantCodec(Config(dim, bits, Variant::kProd)), rng, name);
      }
    }
    CheckDots(TurboQuantCodec(Config(96, 3, Variant::kProd, NormFormat::kF32)), rng, name);
    CheckDots(TurboQuantCodec(Config(80, 2.5, Variant::kMse, NormFormat::kF32)), rng, name);
  }
}

TEST(CodecDot, ExactBufferAtBatchEnds) {
  // Each code sits at the very end of its own heap buffer: the kernel's 16-byte group loads
  // must not read past it (ASan checks this in the sanitizer build).
  Rng rng(2);
  for (int dim : {16, 32, 80, 128}) {
    for (double bits : {1.0, 3.0, 8.0}) {
      const TurboQuantCodec codec(Config(dim, bits, Variant::kMse));
      const size_t bytes = codec.layout().bytes_per_vector;
      const std::vector<uint8_t> codes = EncodeRandom(codec, 1, rng);
      auto exact = std::make_unique<uint8_t[]>(bytes);
      std::memcpy(exact.get(), codes.data(), bytes);
      std::vector<float> q(size_t(dim), 0.5f);
      PreparedQuery pq;
      codec.PrepareQuery(q.data(), &pq);
      float out = 0;
      codec.DotBatch(pq, exact.get(), 1, &out);
      EXPECT_EQ(out, codec.Dot(pq, codes.data()));
    }
  }
}

TEST(CodecDot, RejectsAMismatchedQuery) {
  const TurboQuantCodec mse(Config(64, 3, Variant::kMse)), prod(Config(64, 3, Variant::kProd));
  std::vector<float> q(64, 1.0f);
  PreparedQuery pq;
  mse.PrepareQuery(q.data(), &pq);
  std::vector<uint8_t> code(prod.layout().bytes_per_vector, 0);
  EXPECT_THROW(prod.Dot(pq, code.data()), Error);  // no sketch
  PreparedQuery empty;
  EXPECT_THROW(mse.Dot(empty, code.data()), Error);
}

TEST(CodecDot, Fp16BaselineKernel) {
  Rng rng(6);
  const size_t n = 3, dim = 128;
  std::vector<uint16_t> a(n * dim);
  std::vector<float> q(dim), out(n);
  for (auto& v : a) v = F32ToF16(float(rng.Normal()));
  for (auto& v : q) v = float(rng.Normal());
  kernels::DotF16Batch(a.data(), q.data(), n, dim, out.data());
  for (size_t i = 0; i < n; ++i) {
    double ref = 0;
    for (size_t j = 0; j < dim; ++j) ref += double(F16ToF32(a[i * dim + j])) * q[j];
    EXPECT_NEAR(out[i], ref, 1e-4);
  }
}

TEST(CodecHalf, ConversionRoundsToNearestEven) {
  EXPECT_EQ(F32ToF16(1.0f), 0x3c00);
  EXPECT_EQ(F32ToF16(65504.0f), 0x7bff);
  EXPECT_EQ(F32ToF16(65520.0f), 0x7c00);
  EXPECT_EQ(F32ToF16(-2.0f), 0xc000);
  EXPECT_EQ(F32ToF16(1.0f + 1.0f / 2048), 0x3c00);      // tie -> even
  EXPECT_EQ(F32ToF16(1.0f + 3.0f / 2048), 0x3c02);      // tie -> even (up)
  EXPECT_EQ(F32ToF16(5.960464477539063e-08f), 0x0001);  // smallest subnormal
  for (uint32_t h = 0; h < 0x7c00; ++h) EXPECT_EQ(F32ToF16(F16ToF32(uint16_t(h))), h);
}

}  // namespace
}  // namespace tqlm::codec
