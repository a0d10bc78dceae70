// MatMul / DequantizeRow for every format against the per-element double references of
// quant_reference.h: random blocks, 1 and several tokens, odd row and block counts, the
// integer (VNNI) path and the portable path, 1 and 2 threads.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "kernels/cpu/dequant.h"
#include "kernels/cpu/matmul.h"
#include "kernels/cpu/matmul_internal.h"
#include "codec/half.h"
#include "kernels/cpu/quant_act.h"
#include "model/gguf.h"
#include "quant_reference.h"
#include "tqlm/error.h"

namespace tqlm::kernels {
namespace {

using testing::RandomMatrix;
using testing::RefRow;

const TensorType kAllTypes[] = {
    TensorType::kF32,  TensorType::kF16,  TensorType::kBF16, TensorType::kQ4_0,
    TensorType::kQ4_1, TensorType::kQ5_0, TensorType::kQ5_1, TensorType::kQ8_0,
    TensorType::kQ2_K, TensorType::kQ3_K, TensorType::kQ4_K, TensorType::kQ5_K,
    TensorType::kQ6_K};

bool IsQuantized(TensorType t) {
  return t != TensorType::kF32 && t != TensorType::kF16 && t != TensorType::kBF16;
}

std::vector<float> RandomActivations(size_t n, std::mt19937* rng) {
  std::normal_distribution<float> g(0.0f, 1.0f);
  std::vector<float> x(n);
  for (auto& v : x) v = g(*rng);
  // A few outliers, as real activations have.
  for (size_t i = 0; i < n; i += 97) x[i] *= 8.0f;
  return x;
}

// Expected outputs and per-output error bounds. The error bound covers the 8-bit activation
// quantization of the integer path (|w| * d_block / 2 per value, d = amax / 127) plus float
// rounding of the sums.
struct Expected {
  std::vector<double> y, tol;
};

Expected Reference(TensorType type, const std::vector<uint8_t>& w, int64_t rows, int64_t cols,
                   const std::vector<float>& x, int n_tokens, bool act_quantized) {
  const size_t row_bytes = RowBytes(type, cols);
  Expected e;
  e.y.resize(size_t(rows) * size_t(n_tokens));
  e.tol.resize(e.y.size());
  for (int64_t r = 0; r < rows; ++r) {
    const std::vector<double> wr = RefRow(type, w.data() + size_t(r) * row_bytes, cols);
    for (int t = 0; t < n_tokens; ++t) {
      const float* xt = x.data() + size_t(t) * size_t(cols);
      double s = 0, mag = 0, qerr = 0;
      for (int64_t c = 0; c < cols; ++c) {
        s += wr[size_t(c)] * xt[c];
        mag += std::fabs(wr[size_t(c)] * xt[c]);
      }
      if (act_quantized) {
        for (int64_t b = 0; b < cols / 32; ++b) {
          double amax = 0, wabs = 0;
          for (int j = 0; j < 32; ++j) {
            amax = std::max(amax, double(std::fabs(xt[b * 32 + j])));
            wabs += std::fabs(wr[size_t(b * 32 + j)]);
          }
          qerr += wabs * amax / 127.0 * 0.5;
        }
      }
      const size_t i = size_t(t) * size_t(rows) + size_t(r);
      e.y[i] = s;
      e.tol[i] = 1.01 * qerr + 2e-5 * mag + 1e-6;
    }
  }
  return e;
}

void ExpectClose(const std::vector<float>& y, const Expected& e, const std::string& what) {
  ASSERT_EQ(y.size(), e.y.size());
  int bad = 0;
  for (size_t i = 0; i < y.size() && bad < 5; ++i) {
    if (!(std::fabs(double(y[i]) - e.y[i]) <= e.tol[i])) {
      ADD_FAILURE() << what << " output " << i << ": got " << y[i] << " want " << e.y[i]
                    << " (tol " << e.tol[i] << ")";
      ++bad;
    }
  }
}

// Replaces x by the values its 8-bit activation format (the one paired with `type`) stands
// for; returns that quantization.
ActQ8 ToEightBitReconstruction(TensorType type, int n_tokens, int64_t cols,
                               std::vector<float>* x) {
  ActQ8 act;
  QuantizeActivations(x->data(), n_tokens, cols, ActScaleFor(type), &act);
  for (int t = 0; t < n_tokens; ++t) {
    for (int64_t c = 0; c < cols; ++c) {
      (*x)[size_t(t) * size_t(cols) + size_t(c)] = float(act.q_at(t)[c]) * act.d_at(t)[c / 32];
    }
  }
  return act;
}

int64_t ColsFor(TensorType t, int blocks) { return Traits(t).block_size * blocks; }

TEST(MatMul, DequantizeRowMatchesReference) {
  std::mt19937 rng(7);
  for (TensorType type : kAllTypes) {
    const int64_t cols = IsQuantized(type) ? ColsFor(type, 3) : 45;
    const auto w = RandomMatrix(type, 5, cols, &rng);
    const WeightView v = MakeWeightView(type, w.data(), 5, cols);
    std::vector<float> out(static_cast<size_t>(cols));
    for (int64_t r = 0; r < 5; ++r) {
      DequantizeRow(v, r, out.data());
      const auto ref = RefRow(type, w.data() + size_t(r) * v.row_bytes, cols);
      for (int64_t c = 0; c < cols; ++c) {
        ASSERT_NEAR(out[size_t(c)], ref[size_t(c)], 1e-6 * std::fabs(ref[size_t(c)]) + 1e-9)
            << TypeName(type) << " row " << r << " col " << c;
      }
    }
  }
}

// Every format, decode and prefill shapes, both thread counts, integer and portable paths.
TEST(MatMul, AllFormatsMatchReference) {
  std::mt19937 rng(11);
  ThreadPool pool1(1), pool2(2);
  for (TensorType type : kAllTypes) {
    // Odd block counts exercise the padded last pair; 37 rows do not divide into chunks.
    for (int blocks : {1, 3}) {
      const int64_t cols = IsQuantized(type) ? ColsFor(type, type >= TensorType::kQ2_K ? blocks
                                                                                       : blocks * 3)
                                             : 67 * blocks;
      const int64_t rows = 37;
      const auto w = RandomMatrix(type, rows, cols, &rng);
      const WeightView v = MakeWeightView(type, w.data(), rows, cols);
      for (int n_tokens : {1, 3, 4, 6, 9}) {
        const auto x = RandomActivations(size_t(n_tokens) * size_t(cols), &rng);
        const bool integer = internal::VnniSupports(type);
        const Expected e = Reference(type, w, rows, cols, x, n_tokens, integer);
        const Expected ef = Reference(type, w, rows, cols, x, n_tokens, false);
        for (ThreadPool* pool : {&pool1, &pool2}) {
          std::vector<float> y(size_t(rows) * size_t(n_tokens), -1.0f);
          MatMul(v, x.data(), n_tokens, y.data(), *pool);
          const std::string what = std::string(TypeName(type)) + " cols " +
                                   std::to_string(cols) + " tokens " +
                                   std::to_string(n_tokens) + " threads " +
                                   std::to_string(pool->num_threads());
          ExpectClose(y, e, what);
          std::vector<float> yp(y.size(), -1.0f);
          internal::MatMulPortable(type, w.data(), rows, cols, v.row_bytes, x.data(), n_tokens,
                                   yp.data(), *pool);
          ExpectClose(yp, ef, what + " portable");
        }
      }
    }
  }
}

// One weight matrix on one prefill engine, called directly (so every engine present is
// checked) and, where MatMul picks this engine, through MatMul. Both engines use the 8-bit
// activations of the VNNI tiles: on their reconstruction they must be exact to float rounding.
// Returns whether MatMul took the engine.
bool CheckPrefillEngine(internal::PrefillEngine engine, TensorType type,
                        const std::vector<uint8_t>& w, int64_t rows, int64_t cols, int n_tokens,
                        const std::string& what, std::mt19937* rng, ThreadPool& pool) {
  const size_t row_bytes = RowBytes(type, cols);
  auto x = RandomActivations(size_t(n_tokens) * size_t(cols), rng);
  ToEightBitReconstruction(type, n_tokens, cols, &x);
  Expected e = Reference(type, w, rows, cols, x, n_tokens, false);
  internal::PrefillActs act;
  internal::PrefillPrepare(engine, x.data(), n_tokens, cols, &act);
  std::vector<float> y(size_t(rows) * size_t(n_tokens), -1.0f);
  internal::PrefillMatMul(engine, type, w.data(), row_bytes, rows, 0, rows, act, y.data());
  ExpectClose(y, e, what);
  if (engine != internal::PrefillEngineFor(type, n_tokens)) return false;
  std::fill(y.begin(), y.end(), -1.0f);
  MatMul(MakeWeightView(type, w.data(), rows, cols), x.data(), n_tokens, y.data(), pool);
  ExpectClose(y, e, what + " via MatMul");
  return true;
}

// Every prefill engine present on random matrices of every format it takes: partial panels
// (37 rows), partial token tiles (33, 70) and a column count that is not a multiple of 64.
TEST(MatMul, PrefillEnginesMatchReference) {
  std::mt19937 rng(13);
  ThreadPool pool(2);
  int checked = 0, via_matmul = 0;
  for (internal::PrefillEngine engine : internal::kAllPrefillEngines) {
    for (TensorType type : kAllTypes) {
      if (!internal::PrefillSupports(engine, type)) continue;
      ++checked;
      const int64_t cols = ColsFor(type, type >= TensorType::kQ2_K ? 3 : 5);
      const int64_t rows = 37;
      const auto w = RandomMatrix(type, rows, cols, &rng);
      for (int n_tokens : {16, 33, 70}) {
        const std::string what = std::string(TypeName(type)) + " " + internal::PrefillEngineName(engine) +
                                 " tokens " + std::to_string(n_tokens);
        via_matmul += CheckPrefillEngine(engine, type, w, rows, cols, n_tokens, what, &rng, pool);
      }
    }
    EXPECT_FALSE(internal::PrefillSupports(engine, TensorType::kF32));
  }
  if (checked == 0) GTEST_SKIP() << "no prefill engine (AMX-INT8 or AVX-512 VNNI) on this CPU/OS";
  EXPECT_GT(via_matmul, 0);
}

// With the activations replaced by their 8-bit reconstruction, the integer kernels must agree
// with the reference to float rounding: this pins down scales, offsets and minimums exactly.
TEST(MatMul, IntegerPathIsExactOnQuantizedActivations) {
  std::mt19937 rng(5);
  ThreadPool pool(2);
  int checked = 0;
  for (TensorType type : kAllTypes) {
    if (!internal::VnniSupports(type)) continue;
    ++checked;
    const int64_t cols = ColsFor(type, type >= TensorType::kQ2_K ? 2 : 5);
    const int64_t rows = 19;
    const int n_tokens = 5;
    const auto w = RandomMatrix(type, rows, cols, &rng);
    auto x = RandomActivations(size_t(n_tokens) * size_t(cols), &rng);
    const ActQ8 act = ToEightBitReconstruction(type, n_tokens, cols, &x);
    Expected e = Reference(type, w, rows, cols, x, n_tokens, false);
    if (ActScaleFor(type) == ActScale::kBlock32F16Sum) {
      // Q8_1 rounds d·sum(q) to fp16 (half an ulp: 2^-11 relative); the weights' minimum
      // (the second fp16 of each Q4_1/Q5_1 block) multiplies it.
      const size_t row_bytes = RowBytes(type, cols);
      const size_t block_bytes = row_bytes / size_t(cols / 32);
      for (int t = 0; t < n_tokens; ++t) {
        for (int64_t r = 0; r < rows; ++r) {
          double bound = 0;
          for (int64_t b = 0; b < cols / 32; ++b) {
            uint16_t m;
            std::memcpy(&m, w.data() + size_t(r) * row_bytes + size_t(b) * block_bytes + 2, 2);
            bound += std::fabs(codec::F16ToF32(m)) * std::fabs(act.s32_at(t)[b]) * 0x1p-11;
          }
          e.tol[size_t(t) * size_t(rows) + size_t(r)] += bound;
        }
      }
    }
    std::vector<float> y(size_t(rows) * n_tokens);
    MatMul(MakeWeightView(type, w.data(), rows, cols), x.data(), n_tokens, y.data(), pool);
    ExpectClose(y, e, std::string(TypeName(type)) + " exact");
  }
  if (checked == 0) GTEST_SKIP() << "no AVX-512 VNNI on this CPU";
}

TEST(MatMul, QuantizeActivationsLayout) {
  std::vector<float> x(96);
  for (size_t i = 0; i < x.size(); ++i) x[i] = float(int(i % 7) - 3) * 0.5f;
  x[5] = 10.0f;
  x[40] = std::nanf("");
  ActQ8 a;
  QuantizeActivations(x.data(), 1, 96, ActScale::kBlock32F16Sum, &a);
  EXPECT_EQ(a.blocks, 3);
  EXPECT_EQ(a.pairs, 2);
  // ggml's Q8_0/Q8_1: the scale of block 0 is 10/127, stored as fp16.
  const float d0 = codec::F16ToF32(codec::F32ToF16(10.0f / 127.0f));
  EXPECT_EQ(a.d_at(0)[0], d0);
  EXPECT_NE(d0, 10.0f / 127.0f);  // (so the rounding is really exercised)
  EXPECT_EQ(a.q_at(0)[5], 127);
  EXPECT_EQ(a.q_at(0)[40], 0);  // NaN quantizes to 0 instead of undefined behaviour
  for (int j = 96; j < 128; ++j) EXPECT_EQ(a.q_at(0)[j], 0);  // padding of the odd pair
  int sum = 0;
  for (int j = 0; j < 32; ++j) sum += a.q_at(0)[j];
  // d·sum is rounded from the unrounded d, as ggml's Q8_1 does.
  EXPECT_EQ(a.s32_at(0)[0], codec::F16ToF32(codec::F32ToF16(10.0f / 127.0f * float(sum))));
  float lanes = 0;
  for (int l = 0; l < 8; ++l) lanes += a.sx_at(0)[l];
  EXPECT_NEAR(lanes, a.s32_at(0)[0], 1e-5);
  EXPECT_EQ(a.dx_at(0)[8], a.d_at(0)[1]);

  // ggml's Q8_K: one fp32 scale for all 96 values (a group shorter than 256 at the end).
  ActQ8 k;
  QuantizeActivations(x.data(), 1, 96, ActScale::kBlock256, &k);
  const float dk = 1.0f / (127.0f / 10.0f);
  for (int b = 0; b < 3; ++b) EXPECT_EQ(k.d_at(0)[b], dk);
  EXPECT_EQ(k.q_at(0)[5], 127);
  EXPECT_EQ(k.q_at(0)[0], int(std::nearbyint(-1.5f * (127.0f / 10.0f))));
}

TEST(MatMul, VectorQuantizerMatchesScalar) {
  if (!internal::HaveVnniKernels()) GTEST_SKIP() << "no AVX-512 VNNI on this CPU";
  std::mt19937 rng(9);
  const int64_t cols = 96;  // odd number of blocks: the padded pair must be zeroed
  auto x = RandomActivations(3 * cols, &rng);
  x[3] = std::nanf("");
  for (int j = 32; j < 64; ++j) x[size_t(cols) + size_t(j)] = 0.0f;  // an all-zero block
  x[size_t(2 * cols) + 70] = INFINITY;
  for (ActScale scale : {ActScale::kBlock32F16, ActScale::kBlock32F16Sum, ActScale::kBlock256}) {
    ActQ8 a, b;
    QuantizeActivations(x.data(), 3, cols, scale, &a);
    b.q.assign(1000, 5);  // stale contents must be overwritten
    internal::VnniQuantize(x.data(), 3, cols, scale, &b);
    EXPECT_EQ(a.q, b.q);
    auto same = [](const std::vector<float>& u, const std::vector<float>& v) {
      if (u.size() != v.size()) return false;
      for (size_t i = 0; i < u.size(); ++i) {
        if (!(u[i] == v[i] || (std::isnan(u[i]) && std::isnan(v[i])))) return false;
      }
      return true;
    };
    EXPECT_TRUE(same(a.d_x, b.d_x));
    EXPECT_TRUE(same(a.s_x, b.s_x));
    EXPECT_TRUE(same(a.s16_x, b.s16_x));
    EXPECT_TRUE(same(a.s32, b.s32));
    EXPECT_TRUE(same(a.s16, b.s16));
    EXPECT_TRUE(same(a.d, b.d));
  }
}

TEST(MatMul, RejectsBadViews) {
  ThreadPool pool(1);
  std::vector<uint8_t> w(1024);
  EXPECT_THROW(MakeWeightView(TensorType::kIQ2_XXS, w.data(), 1, 256), Error);
  EXPECT_THROW(MakeWeightView(TensorType::kQ4_0, w.data(), 1, 48), Error);
  const WeightView v = MakeWeightView(TensorType::kQ4_0, w.data(), 2, 64);
  std::vector<float> out(64);
  EXPECT_THROW(DequantizeRow(v, 2, out.data()), Error);
  WeightView bad = v;
  bad.row_bytes = 7;
  std::vector<float> x(64), y(2);
  EXPECT_THROW(MatMul(bad, x.data(), 1, y.data(), pool), Error);
  EXPECT_FALSE(MatMulSupports(TensorType::kIQ2_XXS));
  EXPECT_TRUE(MatMulSupports(TensorType::kQ6_K));
}

// Real weights: a few rows of each tensor type in the installed models.
// The first rows of a real model's tensor: 3 tokens through MatMul (VNNI tiles or portable),
// and 40 tokens on every prefill engine present (real scale and minimum distributions).
void CheckRealTensor(const model::GgufFile& f, const std::string& name, int64_t rows) {
  const model::GgufTensor& t = f.GetTensor(name);
  rows = std::min(rows, t.ne[1]);
  const WeightView v{t.type, t.data, rows, t.ne[0], t.row_bytes()};
  std::mt19937 rng(3);
  const int n_tokens = 3;
  const auto x = RandomActivations(size_t(n_tokens) * size_t(v.cols), &rng);
  std::vector<uint8_t> w(static_cast<const uint8_t*>(t.data),
                         static_cast<const uint8_t*>(t.data) + size_t(rows) * v.row_bytes);
  const Expected e =
      Reference(t.type, w, rows, v.cols, x, n_tokens, internal::VnniSupports(t.type));
  ThreadPool pool(2);
  std::vector<float> y(size_t(rows) * n_tokens);
  MatMul(v, x.data(), n_tokens, y.data(), pool);
  ExpectClose(y, e, name);
  for (internal::PrefillEngine engine : internal::kAllPrefillEngines) {
    if (!internal::PrefillSupports(engine, t.type)) continue;
    CheckPrefillEngine(engine, t.type, w, rows, v.cols, 40, name + " " + internal::PrefillEngineName(engine),
                       &rng, pool);
  }
}

TEST(MatMul, RealModelTensors) {
  const char* home = std::getenv("HOME");
  const std::string dir = std::string(home ? home : "") + "/.cache/tqlm/models/";
  bool any = false;
  if (std::filesystem::exists(dir + "SmolLM2-135M-Instruct.Q4_1.gguf")) {
    auto f = model::GgufFile::Open(dir + "SmolLM2-135M-Instruct.Q4_1.gguf");
    CheckRealTensor(*f, "blk.0.ffn_gate.weight", 64);  // Q4_1
    CheckRealTensor(*f, "blk.0.ffn_down.weight", 64);  // Q4_1, 1536 columns
    CheckRealTensor(*f, "token_embd.weight", 64);      // Q8_0
    any = true;
  }
  if (std::filesystem::exists(dir + "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf")) {
    auto f = model::GgufFile::Open(dir + "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf");
    CheckRealTensor(*f, "blk.0.ffn_gate.weight", 40);  // Q4_K
    CheckRealTensor(*f, "blk.0.ffn_down.weight", 40);  // Q6_K
    any = true;
  }
  if (std::filesystem::exists(dir + "gemma-3-270m-q4_k_m.gguf")) {
    auto f = model::GgufFile::Open(dir + "gemma-3-270m-q4_k_m.gguf");
    for (const auto& t : f->tensors()) {
      if (t.name.rfind("blk.0.", 0) == 0 && t.ne[1] > 1) CheckRealTensor(*f, t.name, 40);
    }
    any = true;
  }
  if (!any) GTEST_SKIP() << "no models installed in " << dir;
}

}  // namespace
}  // namespace tqlm::kernels
