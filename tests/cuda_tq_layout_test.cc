// The GPU KV cache's block layout functions (src/backend/cuda/tq_layout.h, tq_format.h),
// compiled here by the host compiler, against the CPU's TurboQuant block format on random
// blocks of every GPU type, head size and role: the GPU kernels run the same functions, so a
// layout error shows here without a GPU.
//   * sizes and offsets: the block size equals the CPU format's;
//   * reading: codes read at CodeAt/GetCode, times the fp16 norm, plus the fp16 center, then
//     rotated back by the codec, equal the CPU's Decode;
//   * writing: those codes written back through CodeBits into a zeroed block give the CPU's
//     code bytes exactly.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "backend/cuda/tq_format.h"
#include "backend/cuda/tq_layout.h"
#include "kernels/tensor_format.h"
#include "tqlm/codec.h"

namespace tqlm::cuda_backend {
namespace {

float F16At(const uint8_t* block, int offset, int i) {
  uint16_t h;
  std::memcpy(&h, block + offset + 2 * i, 2);
  return kernels::F16ToF32(h);
}

void CheckFormat(const std::string& name, int dim, kv::TensorRole role, std::mt19937& rng) {
  const kv::KvType type = kv::KvType::Parse(name);
  const auto cpu = kv::MakeBlockFormat(type, dim, role);
  const TqFormat f = MakeTqFormat(type, dim, role);
  const std::string what = name + " dim " + std::to_string(dim) +
                           (role == kv::TensorRole::kKey ? " K" : " V");
  ASSERT_EQ(size_t(f.block_bytes), cpu->block_bytes()) << what;

  // Rows with a shared component (so key blocks are stored centered) plus noise.
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::vector<float> bias(dim), rows(size_t(kTqBlock) * dim);
  for (auto& b : bias) b = 4.0f * nd(rng);
  for (size_t i = 0; i < rows.size(); ++i) rows[i] = bias[i % dim] + nd(rng);
  // The block in 32-bit words (as the GPU holds it), written by the CPU encoder.
  std::vector<uint32_t> words((f.block_stride + 3) / 4, 0);
  auto* block = reinterpret_cast<uint8_t*>(words.data());
  cpu->Encode(rows.data(), dim, 0, kTqBlock, block);

  std::vector<float> want(rows.size());
  cpu->Decode(block, 0, kTqBlock, want.data());
  codec::CodecConfig cc;
  cc.dim = dim;
  cc.bits = type.bits;
  const codec::TurboQuantCodec codec(cc);
  const auto& cb_hi = codec::LloydMaxCodebook::Get(dim, f.hi_bits, codec::CodecConfig{}.codebook);
  const auto& cb_lo = codec::LloydMaxCodebook::Get(dim, f.lo_bits, codec::CodecConfig{}.codebook);
  std::vector<uint32_t> rewritten(words.size(), 0);
  auto* re = reinterpret_cast<uint8_t*>(rewritten.data());
  std::vector<float> y(dim), got(dim);
  double worst = 0, scale = 0;
  for (int t = 0; t < kTqBlock; ++t) {
    const float norm = F16At(block, f.norms_offset, t);
    for (int j = 0; j < dim; ++j) {
      int unit, p;
      CodeAt(f, t, j, &unit, &p);
      const int code = GetCode(block + unit, BitsOf(f, j), p);
      const float center = f.centered ? F16At(block, f.center_offset, j) : 0.0f;
      y[j] = (j < f.n_hi ? cb_hi : cb_lo).levels[code] * norm + center;
      int byte[2];
      uint32_t val[2];
      const int n = CodeBits(unit, BitsOf(f, j), p, code, byte, val);
      for (int i = 0; i < n; ++i) re[byte[i]] |= uint8_t(val[i]);
    }
    codec.InverseRotate(y.data(), got.data());
    for (int j = 0; j < dim; ++j) {
      worst = std::max(worst, double(std::fabs(got[j] - want[size_t(t) * dim + j])));
      scale = std::max(scale, double(std::fabs(want[size_t(t) * dim + j])));
    }
  }
  EXPECT_LE(worst, 1e-5 * std::max(1.0, scale)) << what << ": decode differs from the CPU's";
  EXPECT_EQ(0, std::memcmp(re, block, size_t(f.norms_offset)))
      << what << ": codes written through CodeBits differ from the CPU's bytes";
}

TEST(CudaTqLayout, MatchesCpuBlockFormat) {
  std::mt19937 rng(7);
  for (const char* name : {"tq2", "tq2.5", "tq3", "tq3.5", "tq4", "tq8"})
    for (int dim : {64, 128, 256})
      for (kv::TensorRole role : {kv::TensorRole::kKey, kv::TensorRole::kValue})
        CheckFormat(name, dim, role, rng);
}

TEST(CudaTqLayout, RawRowsRing) {
  // Sinks first, then main positions wrap around the ring.
  EXPECT_EQ(RawRow(3, 4, 128), 3u);
  EXPECT_EQ(RawRow(4, 4, 128), 4u);
  EXPECT_EQ(RawRow(4 + 128, 4, 128), 4u);
  EXPECT_EQ(RawRow(4 + 130, 4, 128), 6u);
  EXPECT_EQ(RawRow(200, 0, 64), 8u);
}

}  // namespace
}  // namespace tqlm::cuda_backend
