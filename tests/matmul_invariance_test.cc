// Issue 22: a token's matmul outputs are the same bits however many tokens share the call,
// however the tokens are split into calls, and on any number of threads: every format, the
// integer (VNNI) path and the portable path. And the k-quant result is the integer-first sum
// of matmul_vnni_kquant.cc, recomputed here from the block bytes with plain scalar code.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "kernels/cpu/matmul.h"
#include "kernels/cpu/matmul_internal.h"
#include "kernels/cpu/quant_act.h"
#include "quant_reference.h"
#include "tqlm/error.h"

namespace tqlm::kernels {
namespace {

using testing::RandomMatrix;
using testing::RefHalf;
using testing::RefScaleMin;

const TensorType kTypes[] = {
    TensorType::kF32,  TensorType::kF16,  TensorType::kBF16, TensorType::kQ4_0,
    TensorType::kQ4_1, TensorType::kQ5_0, TensorType::kQ5_1, TensorType::kQ8_0,
    TensorType::kQ2_K, TensorType::kQ3_K, TensorType::kQ4_K, TensorType::kQ5_K,
    TensorType::kQ6_K};

bool IsKQuant(TensorType t) { return Traits(t).block_size == 256; }

std::vector<float> Activations(size_t n, std::mt19937* rng) {
  std::normal_distribution<float> g(0.0f, 1.0f);
  std::vector<float> x(n);
  for (auto& v : x) v = g(*rng);
  for (size_t i = 0; i < n; i += 89) x[i] *= 10.0f;  // outliers, as real activations have
  return x;
}

using MatMulFn = void (*)(const WeightView&, const float*, int, float*, ThreadPool&);

void Full(const WeightView& w, const float* x, int n, float* y, ThreadPool& pool) {
  MatMul(w, x, n, y, pool);
}
void Portable(const WeightView& w, const float* x, int n, float* y, ThreadPool& pool) {
  internal::MatMulPortable(w.type, w.data, w.rows, w.cols, w.row_bytes, x, n, y, pool);
}

// Runs the n tokens in chunks of `chunk` (the last one shorter) and returns y [n][rows].
std::vector<float> Chunked(MatMulFn fn, const WeightView& w, const std::vector<float>& x, int n,
                           int chunk, ThreadPool& pool) {
  std::vector<float> y(size_t(n) * size_t(w.rows));
  for (int t = 0; t < n; t += chunk) {
    const int m = std::min(chunk, n - t);
    std::vector<float> part(size_t(m) * size_t(w.rows));
    fn(w, x.data() + size_t(t) * size_t(w.cols), m, part.data(), pool);
    std::memcpy(y.data() + size_t(t) * size_t(w.rows), part.data(), part.size() * sizeof(float));
  }
  return y;
}

TEST(MatMulInvariance, TokenOutputsDoNotDependOnBatchingOrThreads) {
  std::mt19937 rng(22);
  ThreadPool pool1(1), pool2(2), pool3(3);
  const int n = 40;  // crosses every engine threshold (prefill engines start at 16 tokens)
  for (MatMulFn fn : {&Full, &Portable}) {
    for (TensorType type : kTypes) {
      const int64_t cols = IsKQuant(type) ? 512 : 288;  // 9 blocks of 32: an odd last pair
      const int64_t rows = 45;                           // not a multiple of any row tile
      const auto wb = RandomMatrix(type, rows, cols, &rng);
      const WeightView w = MakeWeightView(type, wb.data(), rows, cols);
      const auto x = Activations(size_t(n) * size_t(cols), &rng);
      const std::vector<float> ref = Chunked(fn, w, x, n, n, pool2);
      for (int chunk : {1, 2, 3, 7, 16, 17, 33}) {
        for (ThreadPool* pool : {&pool1, &pool2, &pool3}) {
          const std::vector<float> y = Chunked(fn, w, x, n, chunk, *pool);
          for (int t = 0; t < n; ++t) {
            const size_t off = size_t(t) * size_t(rows);
            ASSERT_EQ(0, std::memcmp(y.data() + off, ref.data() + off, size_t(rows) * 4))
                << TypeName(type) << (fn == &Full ? " MatMul" : " portable") << " token " << t
                << " in chunks of " << chunk << " on " << pool->num_threads() << " threads";
          }
        }
      }
    }
  }
}

// The integer-first k-quant result, from the bytes: per super-block the exact integer sums
// I = sum w16 * a and (Q4_K/Q5_K) M = sum_j m_j * S_j, then f = fma(I, dx * d, f) and
// f = fma(M, dx * -dmin, f) in super-block order.
float KQuantReference(TensorType type, const uint8_t* row, int64_t cols, const ActQ8& act,
                      int t) {
  const auto& tr = Traits(type);
  const int8_t* a = act.q_at(t);
  float f = 0.0f;
  for (int64_t sb = 0; sb < cols / 256; ++sb) {
    const uint8_t* p = row + size_t(sb) * tr.block_bytes;
    const float dx = act.d_at(t)[8 * sb];
    int64_t isum = 0, msum = 0;
    for (int i = 0; i < 256; ++i) {
      const int av = a[sb * 256 + i];
      if (type == TensorType::kQ6_K) {
        const int half = i / 128, k = (i % 128) / 32, l = i % 32;
        const uint8_t lb = p[64 * half + l + 32 * (k % 2)];
        const int q = (k >= 2 ? lb / 16 : lb % 16) + 16 * ((p[128 + 32 * half + l] >> (2 * k)) & 3);
        isum += int64_t(int8_t(p[192 + i / 16])) * (q - 32) * av;
      } else {
        const bool five = type == TensorType::kQ5_K;
        const int sub = i / 32;
        int q = ((p + (five ? 48 : 16))[32 * (i / 64) + i % 32] >> (4 * (sub % 2))) & 15;
        if (five) q += 16 * ((p[16 + i % 32] >> sub) & 1);
        int sc, m;
        RefScaleMin(p + 4, sub, &sc, &m);
        isum += int64_t(sc) * q * av;
        msum += int64_t(m) * av;  // sum_j m_j * S_j, one value at a time
      }
    }
    EXPECT_LT(std::llabs(isum), int64_t(1) << 31);
    const float d = float(RefHalf(p + (type == TensorType::kQ6_K ? 208 : 0)));
    f = std::fma(float(int32_t(isum)), dx * d, f);
    if (type != TensorType::kQ6_K) {
      f = std::fma(float(int32_t(msum)), dx * -float(RefHalf(p + 2)), f);
    }
  }
  return f;
}

TEST(MatMulInvariance, KQuantsAreTheIntegerFirstSum) {
  std::mt19937 rng(7);
  ThreadPool pool(2);
  int checked = 0;
  for (TensorType type : {TensorType::kQ4_K, TensorType::kQ5_K, TensorType::kQ6_K}) {
    if (!internal::VnniSupports(type)) continue;
    ++checked;
    const int64_t cols = 768, rows = 21;
    const auto wb = RandomMatrix(type, rows, cols, &rng);
    const WeightView w = MakeWeightView(type, wb.data(), rows, cols);
    for (int n : {1, 3, 5, 16, 37}) {
      const auto x = Activations(size_t(n) * size_t(cols), &rng);
      ActQ8 act;
      QuantizeActivations(x.data(), n, cols, ActScale::kBlock256, &act);
      std::vector<float> y(size_t(n) * size_t(rows));
      MatMul(w, x.data(), n, y.data(), pool);
      for (int t = 0; t < n; ++t) {
        for (int64_t r = 0; r < rows; ++r) {
          const float want = KQuantReference(type, wb.data() + size_t(r) * w.row_bytes, cols, act, t);
          const float got = y[size_t(t) * size_t(rows) + size_t(r)];
          ASSERT_EQ(0, std::memcmp(&got, &want, 4))
              << TypeName(type) << " row " << r << " token " << t << " of " << n << ": got "
              << got << " want " << want;
        }
      }
    }
  }
  if (checked == 0) GTEST_SKIP() << "no AVX-512 VNNI on this CPU";
}

// Every prefill engine this CPU has, called directly (MatMul picks only the best one), gives
// the tiles' bits: partial panels, partial token tiles, several super-blocks.
TEST(MatMulInvariance, PrefillEnginesAreTheTilesBitForBit) {
  std::mt19937 rng(31);
  ThreadPool pool(2);
  int checked = 0;
  for (internal::PrefillEngine engine : internal::kAllPrefillEngines) {
    for (TensorType type : {TensorType::kQ4_K, TensorType::kQ5_K, TensorType::kQ6_K}) {
      if (!internal::PrefillSupports(engine, type)) continue;
      ++checked;
      const int64_t cols = 1024, rows = 45;
      const auto wb = RandomMatrix(type, rows, cols, &rng);
      const WeightView w = MakeWeightView(type, wb.data(), rows, cols);
      for (int n : {16, 33, 70}) {
        const auto x = Activations(size_t(n) * size_t(cols), &rng);
        const std::vector<float> want = Chunked(&Full, w, x, n, 1, pool);  // decode tiles
        internal::PrefillActs act;
        internal::PrefillPrepare(engine, x.data(), n, cols, &act);
        std::vector<float> y(size_t(n) * size_t(rows), -1.0f);
        internal::PrefillMatMul(engine, type, wb.data(), w.row_bytes, rows, 0, rows, act, y.data());
        for (int t = 0; t < n; ++t) {
          const size_t off = size_t(t) * size_t(rows);
          ASSERT_EQ(0, std::memcmp(y.data() + off, want.data() + off, size_t(rows) * 4))
              << TypeName(type) << " engine " << internal::PrefillEngineName(engine) << " token " << t << " of " << n;
        }
      }
    }
  }
  if (checked == 0) GTEST_SKIP() << "no prefill engine on this CPU";
}

// --numerics float (eval ppl, calibrate): every format takes the float-activation path, at
// every token count (the prefill engines included), bit for bit the portable path; the
// signature of results says so; native is back to the default path afterwards.
TEST(MatMulNumerics, FloatIsThePortablePathForEveryTokenCount) {
  std::mt19937 rng(23);
  ThreadPool pool(2);
  ASSERT_EQ(GetMatMulNumerics(), MatMulNumerics::kNative);
  const std::string native_signature = NumericsSignature();
  int differs_from_native = 0;
  for (TensorType type : kTypes) {
    const int64_t cols = IsKQuant(type) ? 512 : 288, rows = 45;
    const auto wb = RandomMatrix(type, rows, cols, &rng);
    const WeightView w = MakeWeightView(type, wb.data(), rows, cols);
    for (int n : {1, 40}) {
      const auto x = Activations(size_t(n) * size_t(cols), &rng);
      std::vector<float> native(size_t(n) * rows), flt(size_t(n) * rows), port(size_t(n) * rows);
      MatMul(w, x.data(), n, native.data(), pool);
      SetMatMulNumerics(MatMulNumerics::kFloat);
      MatMul(w, x.data(), n, flt.data(), pool);
      SetMatMulNumerics(MatMulNumerics::kNative);
      Portable(w, x.data(), n, port.data(), pool);
      ASSERT_EQ(0, std::memcmp(flt.data(), port.data(), flt.size() * 4))
          << TypeName(type) << " " << n << " tokens";
      differs_from_native += std::memcmp(flt.data(), native.data(), flt.size() * 4) != 0;
      std::vector<float> again(native.size());
      MatMul(w, x.data(), n, again.data(), pool);
      ASSERT_EQ(0, std::memcmp(again.data(), native.data(), again.size() * 4)) << TypeName(type);
    }
  }
  SetMatMulNumerics(MatMulNumerics::kFloat);
  const std::string float_signature = NumericsSignature();
  SetMatMulNumerics(MatMulNumerics::kNative);
  EXPECT_NE(float_signature.find("float"), std::string::npos) << float_signature;
  EXPECT_EQ(ParseMatMulNumerics("float"), MatMulNumerics::kFloat);
  EXPECT_EQ(ParseMatMulNumerics("native"), MatMulNumerics::kNative);
  EXPECT_THROW(ParseMatMulNumerics("int8"), Error);
  if (!internal::HaveVnniKernels()) GTEST_SKIP() << "no AVX-512 VNNI: native is float already";
  EXPECT_NE(float_signature, native_signature);
  EXPECT_GT(differs_from_native, 0) << "int8 activations should round differently from float";
}

}  // namespace
}  // namespace tqlm::kernels
