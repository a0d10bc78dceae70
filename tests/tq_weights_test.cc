// TurboQuant weights (TQW2/3/4): the format is pinned (levels from the codec, a decoded block),
// the encoder meets the Lloyd–Max distortion, the Highway decoder and MatMul match scalar /
// float64 references on every SIMD target, a token's result does not depend on the batch, and
// `convert` writes a file the reader accepts and rejects cleanly when truncated.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <random>
#include <vector>

#include "gguf_test_writer.h"
#include "hwy_target_scope.h"
#include "kernels/cpu/matmul.h"
#include "kernels/cpu/matmul_internal.h"
#include "kernels/cpu/tq_weights.h"
#include "model/convert.h"
#include "model/gguf.h"
#include "tqlm/codec.h"
#include "tqlm/error.h"

namespace tqlm {
namespace {

using kernels::TensorType;
constexpr TensorType kTypes[] = {TensorType::kTQW2, TensorType::kTQW3, TensorType::kTQW4};

std::vector<float> Gaussian(size_t n, uint32_t seed, float sigma = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> g(0.0f, sigma);
  std::vector<float> v(n);
  for (float& x : v) x = g(rng);
  return v;
}

std::vector<uint8_t> EncodeRows(TensorType t, const std::vector<float>& w, int64_t rows,
                                int64_t cols) {
  const size_t rb = kernels::RowBytes(t, cols);
  std::vector<uint8_t> out(rb * size_t(rows));
  for (int64_t r = 0; r < rows; ++r) {
    kernels::TqwEncode(t, w.data() + r * cols, cols, out.data() + size_t(r) * rb);
  }
  return out;
}

// The levels files depend on: the codec's Lloyd–Max levels for dimension 64 rounded to int8
// (also listed in docs/FORMAT.md). A codec change that moves them breaks every converted file.
TEST(TqWeights, LevelsArePinned) {
  const std::vector<int> expect[5] = {
      {}, {}, {-127, -38, 38, 127}, {-127, -80, -45, -15, 15, 45, 80, 127},
      {-127, -97, -76, -59, -45, -31, -18, -6, 6, 18, 31, 45, 59, 76, 97, 127}};
  for (int b = 2; b <= 4; ++b) {
    const int8_t* l = kernels::TqwLevels(b);
    const auto& cb = codec::LloydMaxCodebook::Get(kernels::kTqwGroup, b,
                                                  codec::CodebookKind::kSphere);
    for (int i = 0; i < (1 << b); ++i) {
      EXPECT_EQ(l[i], expect[b][size_t(i)]) << b << " bits, level " << i;
      EXPECT_EQ(l[i], int(std::lround(127.0 * cb.levels[size_t(i)] / cb.levels.back())));
    }
  }
}

// One fixed block per type decodes to pinned values (rotation, levels and layout together).
TEST(TqWeights, DecodedBlockIsPinned) {
  const double expect[] = {0, 0, -2167.25, -2657.625, -1437.375};
  for (TensorType t : kTypes) {
    std::vector<uint8_t> block(kernels::Traits(t).block_bytes);
    for (size_t i = 0; i < block.size(); ++i) block[i] = uint8_t(i * 37 + 11);
    const uint16_t d = kernels::F32ToF16(0.125f);
    std::memcpy(block.data(), &d, 2);
    std::vector<float> w(64);
    kernels::TqwDequantize(t, block.data(), 64, w.data());
    double s = 0;
    for (int j = 0; j < 64; ++j) s += double(w[size_t(j)]) * (j + 1);
    EXPECT_NEAR(s, expect[kernels::TqWeightBits(t)], 1e-4) << kernels::TypeName(t);
  }
}

// Relative squared error on Gaussian rows close to the Lloyd–Max distortion of each width
// (0.1175, 0.0345, 0.0095 for 2, 3, 4 bits), with a margin for int8 levels and fp16 scales.
TEST(TqWeights, EncoderMeetsLloydMaxDistortion) {
  const double bound[] = {0, 0, 0.125, 0.038, 0.0106};
  const int64_t rows = 64, cols = 256;
  const std::vector<float> w = Gaussian(size_t(rows * cols), 1, 0.02f);
  for (TensorType t : kTypes) {
    const std::vector<uint8_t> q = EncodeRows(t, w, rows, cols);
    std::vector<float> back(w.size());
    const size_t rb = kernels::RowBytes(t, cols);
    for (int64_t r = 0; r < rows; ++r) {
      kernels::TqwDequantize(t, q.data() + size_t(r) * rb, cols, back.data() + r * cols);
    }
    double err = 0, ref = 0;
    for (size_t i = 0; i < w.size(); ++i) {
      err += (double(w[i]) - back[i]) * (double(w[i]) - back[i]);
      ref += double(w[i]) * w[i];
    }
    std::printf("%s relative squared error %.5f\n", kernels::TypeName(t), err / ref);
    EXPECT_LT(err / ref, bound[kernels::TqWeightBits(t)]) << kernels::TypeName(t);
  }
}

TEST(TqWeights, ZeroAndNonFinite) {
  std::vector<float> w(64, 0.0f);
  std::vector<uint8_t> q(34);
  std::vector<float> back(64, 1.0f);
  kernels::TqwEncode(TensorType::kTQW4, w.data(), 64, q.data());
  kernels::TqwDequantize(TensorType::kTQW4, q.data(), 64, back.data());
  for (float v : back) EXPECT_EQ(v, 0.0f);
  w[5] = NAN;
  EXPECT_THROW(kernels::TqwEncode(TensorType::kTQW4, w.data(), 64, q.data()), Error);
  EXPECT_THROW(kernels::TqwEncode(TensorType::kTQW4, w.data(), 60, q.data()), Error);
}

// The Highway decoder equals the scalar definition bit for bit on every target.
TEST(TqWeights, SimdDecoderMatchesScalarOnEveryTarget) {
  std::mt19937 rng(7);
  for (TensorType t : kTypes) {
    const int64_t n = 64 * 9;
    std::vector<uint8_t> q(kernels::RowBytes(t, n));
    for (auto& b : q) b = uint8_t(rng());
    for (size_t g = 0; g < size_t(n / 64); ++g) {  // finite scales, some negative or tiny
      const uint16_t d = kernels::F32ToF16(std::ldexp(float(int(rng() % 200) - 100), -int(rng() % 20)));
      std::memcpy(q.data() + g * kernels::Traits(t).block_bytes, &d, 2);
    }
    std::vector<float> ref(static_cast<size_t>(n)), got(static_cast<size_t>(n));
    kernels::TqwDecodeRotatedScalar(t, q.data(), n, ref.data());
    testing::ForEachTarget([&](int64_t) {
      std::fill(got.begin(), got.end(), -1.0f);
      kernels::TqwDecodeRotated(t, q.data(), n, got.data());
      EXPECT_EQ(0, std::memcmp(ref.data(), got.data(), ref.size() * 4)) << kernels::TypeName(t);
    });
  }
}

// MatMul against a float64 product of the dequantized weights, and every token of a batch
// bit-identical to the same token alone (prefill and decode are one computation), on every
// target.
TEST(TqWeights, MatMulMatchesReferenceAndIsBatchInvariant) {
  kernels::ThreadPool pool(2);
  const int64_t rows = 37, cols = 576;
  const std::vector<float> w = Gaussian(size_t(rows * cols), 3, 0.05f);
  const int n_tokens = 19;
  std::vector<float> x = Gaussian(size_t(n_tokens * cols), 4);
  x[5] = 40.0f;  // an outlier channel, as real activations have
  for (TensorType t : kTypes) {
    const std::vector<uint8_t> q = EncodeRows(t, w, rows, cols);
    const kernels::WeightView view = kernels::MakeWeightView(t, q.data(), rows, cols);
    std::vector<float> deq(static_cast<size_t>(cols));
    std::vector<double> ref(size_t(n_tokens * rows)), bound(ref.size());
    for (int64_t r = 0; r < rows; ++r) {
      kernels::DequantizeRow(view, r, deq.data());
      for (int tk = 0; tk < n_tokens; ++tk) {
        double s = 0, a = 0, ww = 0, xx = 0;
        for (int64_t c = 0; c < cols; ++c) {
          const double p = double(deq[size_t(c)]) * x[size_t(tk * cols + c)];
          s += p;
          a += std::fabs(p);
          ww += double(deq[size_t(c)]) * deq[size_t(c)];
          xx += double(x[size_t(tk * cols + c)]) * x[size_t(tk * cols + c)];
        }
        ref[size_t(tk * rows + r)] = s;
        // Rotations of w and x each add a few roundings per coordinate (6 butterfly stages).
        bound[size_t(tk * rows + r)] = 64 * 6e-8 * (a + std::sqrt(ww * xx)) + 1e-9;
      }
    }
    testing::ForEachTarget([&](int64_t) {
      std::vector<float> y(ref.size()), one(static_cast<size_t>(rows)), port(ref.size());
      kernels::MatMul(view, x.data(), n_tokens, y.data(), pool);
      for (size_t i = 0; i < y.size(); ++i) {
        ASSERT_NEAR(y[i], ref[i], bound[i]) << kernels::TypeName(t) << " output " << i;
      }
      for (int tk = 0; tk < n_tokens; ++tk) {
        kernels::MatMul(view, x.data() + tk * cols, 1, one.data(), pool);
        ASSERT_EQ(0, std::memcmp(one.data(), y.data() + tk * rows, size_t(rows) * 4))
            << kernels::TypeName(t) << " token " << tk;
      }
      kernels::internal::MatMulPortable(t, q.data(), rows, cols, view.row_bytes, x.data(),
                                        n_tokens, port.data(), pool);
      ASSERT_EQ(0, std::memcmp(port.data(), y.data(), y.size() * 4));
    });
  }
}

// A tiny model-shaped file: a matrix, an embedding and a norm.
std::vector<uint8_t> TinyGguf() {
  testing::GgufWriter g;
  g.AddString("general.architecture", "llama");
  g.AddU32("llama.block_count", 1);
  auto f32 = [](const std::vector<float>& v) {
    std::vector<uint8_t> b(v.size() * 4);
    std::memcpy(b.data(), v.data(), b.size());
    return b;
  };
  g.AddTensor("blk.0.ffn_up.weight", TensorType::kF32, {128, 3}, f32(Gaussian(384, 9, 0.1f)));
  g.AddTensor("token_embd.weight", TensorType::kF32, {128, 2}, f32(Gaussian(256, 10)));
  g.AddTensor("blk.0.attn_norm.weight", TensorType::kF32, {128}, f32(Gaussian(128, 11)));
  return g.Build();
}

std::string WriteTemp(const std::string& name, const std::vector<uint8_t>& bytes) {
  const std::string path = (std::filesystem::temp_directory_path() / name).string();
  std::FILE* f = std::fopen(path.c_str(), "wb");
  std::fwrite(bytes.data(), 1, bytes.size(), f);
  std::fclose(f);
  return path;
}

TEST(TqWeights, ConvertWritesACheckedFileAndTruncationsAreRejected) {
  const std::string in = WriteTemp("tqw_convert_in.gguf", TinyGguf());
  const std::string out = in + ".tq3.gguf";
  model::ConvertOptions o;
  o.input = in;
  o.output = out;
  o.wtype = TensorType::kTQW3;
  o.load_check = false;  // not a complete model
  o.rules.push_back({"token_embd.*", model::ParseTensorTarget("q8_0")});
  const model::ConvertReport r = model::ConvertModel(o);
  EXPECT_EQ(r.converted_tensors, 2);
  EXPECT_EQ(r.kept_tensors, 1);
  const auto f = model::GgufFile::Open(out);
  EXPECT_EQ(f->GetString("general.architecture"), "llama");
  EXPECT_EQ(f->GetU32("llama.block_count"), 1u);
  EXPECT_EQ(f->GetTensor("blk.0.ffn_up.weight").type, TensorType::kTQW3);
  EXPECT_EQ(f->GetTensor("token_embd.weight").type, TensorType::kQ8_0);
  EXPECT_EQ(f->GetTensor("blk.0.attn_norm.weight").type, TensorType::kF32);

  // Refuses to overwrite its input, also through another name for it.
  o.output = in;
  EXPECT_THROW(model::ConvertModel(o), Error);

  // Cut at every tensor boundary (and just before each): the reader refuses with an Error.
  std::vector<uint8_t> bytes(f->file_size());
  {
    std::FILE* fp = std::fopen(out.c_str(), "rb");
    ASSERT_EQ(std::fread(bytes.data(), 1, bytes.size(), fp), bytes.size());
    std::fclose(fp);
  }
  std::vector<size_t> cuts = {0, 4, 24, size_t(f->data_offset())};
  for (const model::GgufTensor& t : f->tensors()) {
    cuts.push_back(size_t(f->data_offset() + t.offset));
    cuts.push_back(size_t(f->data_offset() + t.offset + t.nbytes) - 1);
  }
  for (size_t cut : cuts) {
    std::vector<uint8_t> part(bytes.begin(), bytes.begin() + std::ptrdiff_t(cut));
    EXPECT_THROW(model::GgufFile::FromBytes(part), Error) << "cut at " << cut;
  }
  std::remove(in.c_str());
  std::remove(out.c_str());
}

// The fuzz seed with all three types parses, decodes, and every cut inside it is refused.
TEST(TqWeights, FuzzSeedHoldsEveryTypeAndRejectsEveryTruncation) {
  const std::string path = std::string(TQLM_SOURCE_DIR) + "/fuzz/corpus/gguf/llama_tiny_tqw.gguf";
  const auto f = model::GgufFile::Open(path);
  int seen = 0;
  for (const model::GgufTensor& t : f->tensors()) {
    if (!kernels::IsTqWeight(t.type)) continue;
    seen |= 1 << kernels::TqWeightBits(t.type);
    std::vector<float> row(static_cast<size_t>(t.ne[0]));
    kernels::DequantizeRow(kernels::MakeWeightView(t.type, t.data, t.rows(), t.ne[0]), 0,
                           row.data());
  }
  EXPECT_EQ(seen, 4 | 8 | 16);
  std::vector<uint8_t> bytes(f->file_size());
  std::FILE* fp = std::fopen(path.c_str(), "rb");
  ASSERT_NE(fp, nullptr);
  ASSERT_EQ(std::fread(bytes.data(), 1, bytes.size(), fp), bytes.size());
  std::fclose(fp);
  for (const model::GgufTensor& t : f->tensors()) {
    const size_t begin = size_t(f->data_offset() + t.offset);
    for (size_t cut : {begin, begin + t.nbytes - 1}) {
      std::vector<uint8_t> part(bytes.begin(), bytes.begin() + std::ptrdiff_t(cut));
      EXPECT_THROW(model::GgufFile::FromBytes(part), Error) << t.name << " cut at " << cut;
    }
  }
}

}  // namespace
}  // namespace tqlm
