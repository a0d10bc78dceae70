// Byte layout (computed sizes) and dense bit packing at every width.
#include <gtest/gtest.h>

#include <vector>

#include "codec/bitpack.h"
#include "codec/layout.h"
#include "codec/rng.h"
#include "codec_reference.h"
#include "tqlm/error.h"

namespace tqlm::codec {
namespace {

CodecConfig Config(int dim, double bits, Variant v = Variant::kMse, NormFormat n = NormFormat::kF16) {
  CodecConfig c;
  c.dim = dim;
  c.bits = bits;
  c.variant = v;
  c.norm = n;
  return c;
}

TEST(CodecLayout, KnownSizes) {
  // d = 128, 3 bits: fp16 norm + 128 * 3 bits = 2 + 48 bytes = 3.125 bits per value.
  VectorLayout l = ComputeLayout(Config(128, 3));
  EXPECT_EQ(l.bytes_per_vector, 50u);
  EXPECT_DOUBLE_EQ(l.bits_per_value(), 3.125);
  EXPECT_EQ(l.codes_offset, 2u);
  EXPECT_EQ(l.codes_bytes, 48u);
  // 2.5 bits: 64 coordinates at 3 bits, 64 at 2.
  l = ComputeLayout(Config(128, 2.5));
  EXPECT_EQ(l.n_hi, 64);
  EXPECT_EQ(l.hi_bits, 3);
  EXPECT_EQ(l.lo_bits, 2);
  EXPECT_EQ(l.bytes_per_vector, 2u + 24u + 16u);
  EXPECT_EQ(LoSectionByte(l), 24u);
  // prod, 3 bits: 2-bit MSE + residual norm + 128 sign bits.
  l = ComputeLayout(Config(128, 3, Variant::kProd));
  EXPECT_EQ(l.hi_bits, 2);
  EXPECT_EQ(l.qjl_bits, 128);
  EXPECT_EQ(l.rnorm_offset, 2u + 32u);
  EXPECT_EQ(l.qjl_offset, 36u);
  EXPECT_EQ(l.bytes_per_vector, 52u);
  // fp32 norms.
  l = ComputeLayout(Config(128, 4, Variant::kProd, NormFormat::kF32));
  EXPECT_EQ(l.bytes_per_vector, 4u + 48u + 4u + 16u);
  // 80 = 16 * 5 at 3.5 bits: 40 coordinates at 4 bits, 40 at 3.
  l = ComputeLayout(Config(80, 3.5));
  EXPECT_EQ(l.bytes_per_vector, 2u + 20u + 15u);
}

TEST(CodecLayout, SectionsTileTheVector) {
  for (int dim : reference::SupportedDims()) {
    for (int v = 0; v < 2; ++v) {
      for (double bits = v ? 2 : 1; bits <= (v ? 9 : 8); bits += 0.5) {
        for (NormFormat nf : {NormFormat::kF16, NormFormat::kF32}) {
          const VectorLayout l = ComputeLayout(Config(dim, bits, Variant(v), nf));
          EXPECT_EQ(l.codes_offset, l.norm_offset + l.norm_bytes);
          EXPECT_EQ(l.rnorm_offset, l.codes_offset + l.codes_bytes);
          EXPECT_EQ(l.qjl_offset, l.rnorm_offset + l.rnorm_bytes);
          EXPECT_EQ(l.bytes_per_vector, l.qjl_offset + l.qjl_bytes);
          const size_t code_bits = size_t(l.n_hi) * size_t(l.hi_bits) + size_t(dim - l.n_hi) * size_t(l.lo_bits);
          EXPECT_EQ(l.codes_bytes * 8, code_bits) << "no padding, dim " << dim << " bits " << bits;
          const double mse_bits = v ? bits - 1 : bits;
          EXPECT_DOUBLE_EQ(double(code_bits) / dim, mse_bits);
          const double expected = mse_bits + (v ? 1.0 : 0.0) + 8.0 * double(l.norm_bytes + l.rnorm_bytes) / dim;
          EXPECT_DOUBLE_EQ(l.bits_per_value(), expected);
        }
      }
    }
  }
}

TEST(CodecLayout, RejectsBadConfigs) {
  EXPECT_THROW(ComputeLayout(Config(100, 3)), Error);
  EXPECT_THROW(ComputeLayout(Config(8, 3)), Error);
  EXPECT_THROW(ComputeLayout(Config(2048, 3)), Error);
  EXPECT_THROW(ComputeLayout(Config(128, 0.5)), Error);
  EXPECT_THROW(ComputeLayout(Config(128, 2.25)), Error);
  EXPECT_THROW(ComputeLayout(Config(128, 9)), Error);
  EXPECT_THROW(ComputeLayout(Config(128, 1, Variant::kProd)), Error);
  EXPECT_NO_THROW(ComputeLayout(Config(128, 9, Variant::kProd)));
  for (int dim : {32, 48, 64, 80, 96, 112, 128, 160, 192, 256, 320, 384, 512}) {
    EXPECT_TRUE(IsSupportedDim(dim)) << dim;
  }
  for (int dim : {0, 8, 24, 40, 100, 272 /* 16 * 17: 17 blocks > 16 */, 2048}) {
    EXPECT_FALSE(IsSupportedDim(dim)) << dim;
  }
}

TEST(CodecBitPack, RoundTripAndBitExactAtEveryWidth) {
  Rng rng(7);
  for (int bits = 1; bits <= 8; ++bits) {
    for (size_t n : {size_t(1), size_t(7), size_t(8), size_t(16), size_t(40), size_t(129), size_t(1024)}) {
      std::vector<uint8_t> idx(n), back(n);
      for (auto& v : idx) v = uint8_t(rng.Next() & ((1u << bits) - 1));
      const size_t bytes = PackedBytes(n, bits);
      EXPECT_EQ(bytes, (n * size_t(bits) + 7) / 8);
      std::vector<uint8_t> packed(bytes + 4, 0xAB);  // guard bytes must survive
      PackIndices(idx.data(), n, bits, packed.data());
      for (size_t k = bytes; k < bytes + 4; ++k) EXPECT_EQ(packed[k], 0xAB);
      std::vector<uint8_t> expected(bytes, 0);
      for (size_t i = 0; i < n; ++i) reference::PutBits(expected.data(), i * size_t(bits), idx[i], bits);
      // Unused high bits of the last byte are zero in both.
      EXPECT_TRUE(std::equal(expected.begin(), expected.end(), packed.begin()))
          << "bits " << bits << " n " << n;
      UnpackIndices(packed.data(), n, bits, back.data());
      EXPECT_EQ(back, idx) << "bits " << bits << " n " << n;
    }
  }
}

}  // namespace
}  // namespace tqlm::codec
