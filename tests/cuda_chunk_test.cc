// The CUDA backend's 32-value chunk decoders (src/backend/cuda/weight_chunk.h), compiled here by
// the host compiler, against the CPU's format definitions (kernels/cpu/dequant.cc) on random
// blocks of every format: the GPU kernels run the same functions.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "backend/cuda/weight_chunk.h"
#include "kernels/cpu/dequant.h"

namespace tqlm::cuda_backend {
namespace {

using kernels::TensorType;

// Random bytes for n values of `type`, with every fp16 scale field set to a finite value in
// [-2, 2] (random bits could be inf/nan), so that the comparison is meaningful.
std::vector<uint8_t> RandomRow(TensorType type, int64_t n, std::mt19937& rng) {
  const size_t bytes = kernels::RowBytes(type, n);
  std::vector<uint8_t> row(bytes);
  for (auto& b : row) b = uint8_t(rng());
  std::uniform_real_distribution<float> scale(-2.0f, 2.0f);
  auto put_half = [&](size_t at) {
    const uint16_t h = kernels::F32ToF16(scale(rng));
    row[at] = uint8_t(h);
    row[at + 1] = uint8_t(h >> 8);
  };
  const kernels::TypeTraits& t = kernels::Traits(type);
  const size_t blocks = bytes / t.block_bytes;
  for (size_t b = 0; b < blocks; ++b) {
    const size_t at = b * t.block_bytes;
    switch (type) {
      case TensorType::kF32:
      case TensorType::kF16:
      case TensorType::kBF16: break;
      case TensorType::kQ4_0: case TensorType::kQ5_0: case TensorType::kQ8_0: put_half(at); break;
      case TensorType::kQ4_1: case TensorType::kQ5_1: put_half(at); put_half(at + 2); break;
      case TensorType::kQ2_K: put_half(at + 80); put_half(at + 82); break;
      case TensorType::kQ3_K: put_half(at + 108); break;
      case TensorType::kQ4_K: case TensorType::kQ5_K: put_half(at); put_half(at + 2); break;
      case TensorType::kQ6_K: put_half(at + 208); break;
      default: break;
    }
  }
  if (type == TensorType::kF32) {
    for (int64_t i = 0; i < n; ++i) {
      const float f = scale(rng);
      std::memcpy(&row[size_t(i) * 4], &f, 4);
    }
  } else if (type == TensorType::kF16 || type == TensorType::kBF16) {
    for (int64_t i = 0; i < n; ++i) {
      const float f = scale(rng);
      const uint16_t h = type == TensorType::kF16 ? kernels::F32ToF16(f) : kernels::F32ToBF16(f);
      std::memcpy(&row[size_t(i) * 2], &h, 2);
    }
  }
  return row;
}

TEST(CudaChunkDecode, EveryFormatMatchesTheCpuDefinition) {
  const TensorType types[] = {TensorType::kF32,  TensorType::kF16,  TensorType::kBF16,
                              TensorType::kQ4_0, TensorType::kQ4_1, TensorType::kQ5_0,
                              TensorType::kQ5_1, TensorType::kQ8_0, TensorType::kQ2_K,
                              TensorType::kQ3_K, TensorType::kQ4_K, TensorType::kQ5_K,
                              TensorType::kQ6_K};
  std::mt19937 rng(7);
  for (TensorType type : types) {
    SCOPED_TRACE(kernels::TypeName(type));
    const int64_t n = 512;
    const std::vector<uint8_t> row = RandomRow(type, n, rng);
    std::vector<float> want(n);
    ASSERT_TRUE(kernels::DequantizeValues(type, row.data(), n, want.data()));
    std::vector<float> got(n, std::nanf(""));
    bool ok = DispatchFormat(type, [&](auto tag) {
      constexpr TensorType T = decltype(tag)::value;
      for (int c = 0; c < n / kChunk; ++c) DecodeChunk<T>(row.data(), c, &got[size_t(c) * kChunk]);
    });
    ASSERT_TRUE(ok);
    for (int64_t i = 0; i < n; ++i) ASSERT_EQ(got[i], want[i]) << "value " << i;
  }
}

TEST(CudaChunkDecode, UnsupportedFormatsAreRefused) {
  EXPECT_FALSE(DispatchFormat(TensorType::kIQ2_XXS, [](auto) {}));
  EXPECT_FALSE(DispatchFormat(TensorType::kQ8_K, [](auto) {}));
}

}  // namespace
}  // namespace tqlm::cuda_backend
