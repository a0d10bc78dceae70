// The hand-written matmul paths (AVX-512 VNNI integer tiles for any token count; the AMX-INT8
// and VNNI int16 prefill engines for k-quants) and their portable twin (Highway float dot
// products on decoded rows) with adversarial fp16 block scales and minimums: subnormal, the
// smallest normal, ±65504, zero, inf and NaN, in blocks next to ordinary ones; and activation
// rows that are zero or hold one large value. matmul_test.cc covers ordinary scales.
//
// Behaviour (the same on every path): a row whose scale or minimum is inf or NaN gives a
// non-finite output for every token (IEEE: NaN and inf propagate through the block's
// products); every finite scale, subnormal included, gives the float64 reference's value
// within the path's documented error (8-bit activations: half a quantization step per value;
// float rounding 2e-5 of the magnitude).
#include <gtest/gtest.h>

#include <cmath>
#include <cstddef>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "kernels/cpu/matmul.h"
#include "kernels/cpu/matmul_internal.h"
#include "quant_reference.h"

namespace tqlm::kernels {
namespace {

using testing::RandomMatrix;
using testing::RefRow;

struct Special {
  const char* name;
  uint16_t bits;
  bool finite;
};
const Special kSpecials[] = {{"subnormal", 0x0001, true}, {"min-normal", 0x0400, true},
                             {"max", 0x7bff, true},       {"-max", 0xfbff, true},
                             {"zero", 0x0000, true},      {"nan", 0x7e00, false},
                             {"inf", 0x7c00, false},      {"-inf", 0xfc00, false}};

// Byte offsets of a block's fp16 scale and (where the format has one) minimum.
size_t ScaleOffset(TensorType t) {
  switch (t) {
    case TensorType::kQ4_0: return offsetof(BlockQ4_0, d);
    case TensorType::kQ4_1: return offsetof(BlockQ4_1, d);
    case TensorType::kQ5_0: return offsetof(BlockQ5_0, d);
    case TensorType::kQ5_1: return offsetof(BlockQ5_1, d);
    case TensorType::kQ8_0: return offsetof(BlockQ8_0, d);
    case TensorType::kQ2_K: return offsetof(BlockQ2_K, d);
    case TensorType::kQ3_K: return offsetof(BlockQ3_K, d);
    case TensorType::kQ4_K: return offsetof(BlockQ4_K, d);
    case TensorType::kQ5_K: return offsetof(BlockQ5_K, d);
    case TensorType::kQ6_K: return offsetof(BlockQ6_K, d);
    default: return 0;
  }
}
bool MinOffset(TensorType t, size_t* off) {
  switch (t) {
    case TensorType::kQ4_1: *off = offsetof(BlockQ4_1, m); return true;
    case TensorType::kQ5_1: *off = offsetof(BlockQ5_1, m); return true;
    case TensorType::kQ2_K: *off = offsetof(BlockQ2_K, dmin); return true;
    case TensorType::kQ4_K: *off = offsetof(BlockQ4_K, dmin); return true;
    case TensorType::kQ5_K: *off = offsetof(BlockQ5_K, dmin); return true;
    default: return false;
  }
}

const TensorType kQuantTypes[] = {TensorType::kQ4_0, TensorType::kQ4_1, TensorType::kQ5_0,
                                  TensorType::kQ5_1, TensorType::kQ8_0, TensorType::kQ2_K,
                                  TensorType::kQ3_K, TensorType::kQ4_K, TensorType::kQ5_K,
                                  TensorType::kQ6_K};

// Row 0 ordinary; row 1 + 2s: block 1's scale set to special s; row 2 + 2s: block 1's minimum
// (or, without one, block 0's scale) set to it.
struct Matrix {
  TensorType type;
  int64_t rows, cols;
  std::vector<uint8_t> w;
  std::vector<bool> finite;  // per row
};

Matrix MakeMatrix(TensorType type, std::mt19937* rng) {
  Matrix m;
  m.type = type;
  const int64_t block = Traits(type).block_size;
  m.cols = block * (block == 256 ? 2 : 4);
  m.rows = 1 + 2 * int64_t(std::size(kSpecials));
  m.w = RandomMatrix(type, m.rows, m.cols, rng);
  m.finite.assign(size_t(m.rows), true);
  const size_t row_bytes = RowBytes(type, m.cols), block_bytes = Traits(type).block_bytes;
  for (size_t s = 0; s < std::size(kSpecials); ++s) {
    for (int which = 0; which < 2; ++which) {
      const int64_t r = 1 + 2 * int64_t(s) + which;
      size_t off = ScaleOffset(type);
      size_t blk = 1;
      if (which == 1 && !MinOffset(type, &off)) blk = 0;
      std::memcpy(m.w.data() + size_t(r) * row_bytes + blk * block_bytes + off, &kSpecials[s].bits, 2);
      m.finite[size_t(r)] = kSpecials[s].finite;
    }
  }
  return m;
}

// Activations: random; token 1 all zero; token 2 with one large value (1e4: its 8-bit block's
// fp16 scale and fp16 sum stay below 65504; HugeActivationsOnTheIntegerPath goes beyond).
std::vector<float> Activations(int n_tokens, int64_t cols, std::mt19937* rng, float huge = 1e4f) {
  std::normal_distribution<float> g(0.0f, 1.0f);
  std::vector<float> x(size_t(n_tokens) * size_t(cols));
  for (auto& v : x) v = g(*rng);
  for (int64_t c = 0; c < cols && n_tokens > 1; ++c) x[size_t(cols) + size_t(c)] = 0.0f;
  if (n_tokens > 2) x[2 * size_t(cols) + 5] = huge;
  return x;
}

// Checks y against the reference: finite rows within tolerance, non-finite rows non-finite.
// act_quant: the path quantizes activations to 8 bits per 32 values; bf16: it rounds weights
// (and maybe activations) to bf16.
void Check(const Matrix& m, const std::vector<float>& x, int n_tokens, const std::vector<float>& y,
           bool act_quant, bool bf16, const std::string& what) {
  const size_t row_bytes = RowBytes(m.type, m.cols);
  int bad = 0;
  for (int64_t r = 0; r < m.rows; ++r) {
    const std::vector<double> wr = RefRow(m.type, m.w.data() + size_t(r) * row_bytes, m.cols);
    for (int t = 0; t < n_tokens; ++t) {
      const float* xt = x.data() + size_t(t) * size_t(m.cols);
      const float got = y[size_t(t) * size_t(m.rows) + size_t(r)];
      const std::string where = what + " row " + std::to_string(r) + " token " + std::to_string(t);
      if (!m.finite[size_t(r)]) {
        if (std::isfinite(got) && bad++ < 5) ADD_FAILURE() << where << ": " << got << " for a non-finite scale";
        continue;
      }
      double s = 0, mag = 0, qerr = 0;
      for (int64_t c = 0; c < m.cols; ++c) {
        s += wr[size_t(c)] * xt[c];
        mag += std::fabs(wr[size_t(c)] * xt[c]);
      }
      for (int64_t b = 0; act_quant && b < m.cols / 32; ++b) {
        double amax = 0, wabs = 0;
        for (int j = 0; j < 32; ++j) {
          amax = std::max(amax, double(std::fabs(xt[b * 32 + j])));
          wabs += std::fabs(wr[size_t(b * 32 + j)]);
        }
        qerr += wabs * amax / 127.0 * 0.5;
      }
      // Q8_1 / Q8_K sums of activations are rounded to fp16 (2^-11) and multiply minimums.
      const double tol = 1.01 * qerr + (bf16 ? 0x1p-7 : 0.0) * mag + 2e-5 * mag + 0x1p-11 * mag + 1e-6;
      if (!(std::fabs(double(got) - s) <= tol) && bad++ < 5)
        ADD_FAILURE() << where << ": got " << got << " want " << s << " (tol " << tol << ")";
    }
  }
}

TEST(MatMulAdversarial, ExtremeScalesOnEveryPath) {
  std::mt19937 rng(21);
  ThreadPool pool(2);
  for (TensorType type : kQuantTypes) {
    SCOPED_TRACE(TypeName(type));
    const Matrix m = MakeMatrix(type, &rng);
    const size_t row_bytes = RowBytes(type, m.cols);
    // Decode-sized (3 tokens: the integer tiles where the CPU has them) and the portable twin.
    const int n = 3;
    const std::vector<float> x = Activations(n, m.cols, &rng);
    std::vector<float> y(size_t(m.rows) * n);
    internal::MatMulPortable(type, m.w.data(), m.rows, m.cols, row_bytes, x.data(), n, y.data(), pool);
    Check(m, x, n, y, false, false, "portable");
    MatMul(MakeWeightView(type, m.w.data(), m.rows, m.cols), x.data(), n, y.data(), pool);
    Check(m, x, n, y, internal::HaveVnniKernels() && internal::VnniSupports(type), false, "MatMul");
    // Every prefill engine this CPU has, called directly (40 tokens).
    const int np = 40;
    const std::vector<float> xp = Activations(np, m.cols, &rng);
    std::vector<float> yp(size_t(m.rows) * np);
    for (internal::PrefillEngine e : internal::kAllPrefillEngines) {
      if (!internal::PrefillSupports(e, type)) continue;
      internal::PrefillActs act;
      internal::PrefillPrepare(e, xp.data(), np, m.cols, &act);
      std::fill(yp.begin(), yp.end(), 0.0f);
      internal::PrefillMatMul(e, type, m.w.data(), row_bytes, m.rows, 0, m.rows, act, yp.data());
      Check(m, xp, np, yp, true, false, internal::PrefillEngineName(e));
    }
    MatMul(MakeWeightView(type, m.w.data(), m.rows, m.cols), xp.data(), np, yp.data(), pool);
    Check(m, xp, np, yp, internal::HaveVnniKernels() && internal::VnniSupports(type), false,
          "MatMul prefill");
  }
}

// Activations whose 8-bit block scale (amax / 127) or block sum (Q8_1, for Q4_1/Q5_1) is
// beyond fp16: ggml's q8_0/q8_1 layout stores both as fp16, so there a value above
// 65504 * 127 ~ 8.3e6, or a block summing above 65504, turns every output of that token into
// inf or NaN where the float paths give the right finite values. tqlm rounds like fp16 inside
// its range and keeps such scales and sums in float (fp16's mantissa, f32's exponent).
TEST(MatMulAdversarial, HugeActivationsOnTheIntegerPath) {
  std::mt19937 rng(22);
  ThreadPool pool(2);
  for (TensorType type : kQuantTypes) {
    for (float huge : {1e5f, 1e7f, 1e30f}) {
      SCOPED_TRACE(::testing::Message() << TypeName(type) << " activation " << huge);
      const Matrix m = MakeMatrix(type, &rng);
      const int n = 3;
      const std::vector<float> x = Activations(n, m.cols, &rng, huge);
      std::vector<float> y(size_t(m.rows) * n);
      MatMul(MakeWeightView(type, m.w.data(), m.rows, m.cols), x.data(), n, y.data(), pool);
      Check(m, x, n, y, internal::HaveVnniKernels() && internal::VnniSupports(type), false, "MatMul");
    }
  }
}

}  // namespace
}  // namespace tqlm::kernels
