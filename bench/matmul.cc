// MatMul throughput per weight format: decode (1 token, matrix x vector) and prefill
// (64 tokens, matrix x matrix) at SmolLM2-135M's FFN shape, on 1 and 2 threads (the /1, /2
// suffix); and 1-12 tokens (decode and speculative verification on the VNNI tiles), 16-, 32-
// (where the prefill engines take over from the tiles) and 256-token prefill chunks at
// Qwen2.5-1.5B's FFN shapes (up: 8960 x 1536, down: 1536 x 8960, whose activations outgrow
// L2). Reports GB/s of weight bytes read (decode is memory-bound; compare with the machine's
// bandwidth). TQLM_NO_AMX=1, TQLM_NO_I8_PREFILL=1 and TQLM_NO_VNNI=1 turn the AMX-INT8 and
// VNNI int8 prefill engines and the VNNI kernels off for comparisons.
//
// "hot": one 1536x576 matrix, cache resident. "cold": cycles through enough copies (>= 256
// MiB) that every call streams its weights from DRAM, as a real decode step does.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstring>
#include <random>
#include <vector>

#include "kernels/cpu/matmul.h"
#include "kernels/cpu/thread_pool.h"
#include "kernels/tensor_format.h"

namespace {

using tqlm::kernels::MatMul;
using tqlm::kernels::RowBytes;
using tqlm::kernels::TensorType;
using tqlm::kernels::ThreadPool;
using tqlm::kernels::WeightView;

constexpr int64_t kRows = 576, kCols = 1536;  // ffn_down of SmolLM2-135M

// Random weights. Masking every byte with 0x3b keeps fp16 scales finite and normal-ish; F32
// and BF16 values get proper random floats (random bits would be denormals and NaNs).
std::vector<uint8_t> MakeWeights(TensorType type, int64_t rows, int64_t cols, size_t copies) {
  const size_t bytes = RowBytes(type, cols) * size_t(rows) * copies;
  std::vector<uint8_t> w(bytes);
  std::mt19937 rng(1);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  if (type == TensorType::kF32) {
    for (size_t i = 0; i + 4 <= bytes; i += 4) {
      const float f = u(rng);
      std::memcpy(&w[i], &f, 4);
    }
  } else if (type == TensorType::kBF16) {
    for (size_t i = 0; i + 2 <= bytes; i += 2) {
      const uint16_t h = tqlm::kernels::F32ToBF16(u(rng));
      std::memcpy(&w[i], &h, 2);
    }
  } else {
    for (auto& b : w) b = uint8_t(rng() & 0x3b);
  }
  return w;
}

ThreadPool& Pool(int threads) {
  static ThreadPool one(1), two(2);
  return threads == 1 ? one : two;
}

// state.range(0): threads (1 or 2).
void RunShape(benchmark::State& state, TensorType type, int64_t rows, int64_t cols, int n_tokens,
              bool cold) {
  ThreadPool& pool = Pool(int(state.range(0)));
  const size_t matrix_bytes = RowBytes(type, cols) * size_t(rows);
  const size_t copies = cold ? std::max<size_t>(1, (256u << 20) / matrix_bytes) : 1;
  const std::vector<uint8_t> w = MakeWeights(type, rows, cols, copies);
  std::vector<float> x(size_t(n_tokens) * size_t(cols)), y(size_t(n_tokens) * size_t(rows));
  std::mt19937 rng(2);
  std::normal_distribution<float> g;
  for (auto& v : x) v = g(rng);
  size_t i = 0;
  for (auto _ : state) {
    const WeightView v{type, w.data() + (i++ % copies) * matrix_bytes, rows, cols,
                       RowBytes(type, cols)};
    MatMul(v, x.data(), n_tokens, y.data(), pool);
    benchmark::DoNotOptimize(y.data());
  }
  state.counters["GB/s"] = benchmark::Counter(double(matrix_bytes) * double(state.iterations()),
                                              benchmark::Counter::kIsRate);
  state.counters["tok/s"] =
      benchmark::Counter(double(n_tokens) * double(state.iterations()),
                         benchmark::Counter::kIsRate);
  state.counters["GFLOP/s"] = benchmark::Counter(
      2.0 * double(rows) * double(cols) * n_tokens * double(state.iterations()),
      benchmark::Counter::kIsRate, benchmark::Counter::kIs1000);
}

void Run(benchmark::State& state, TensorType type, int n_tokens, bool cold) {
  RunShape(state, type, kRows, kCols, n_tokens, cold);
}

#define TQLM_BENCH_FORMAT(T)                                                                  \
  BENCHMARK_CAPTURE(Run, T##_decode_hot, TensorType::k##T, 1, false)->Arg(1)->Arg(2)->UseRealTime(); \
  BENCHMARK_CAPTURE(Run, T##_decode_cold, TensorType::k##T, 1, true)->Arg(1)->Arg(2)->UseRealTime(); \
  BENCHMARK_CAPTURE(Run, T##_prefill64, TensorType::k##T, 64, false)->Arg(1)->Arg(2)->UseRealTime();

TQLM_BENCH_FORMAT(F32)
TQLM_BENCH_FORMAT(F16)
TQLM_BENCH_FORMAT(BF16)
TQLM_BENCH_FORMAT(Q8_0)
TQLM_BENCH_FORMAT(Q4_0)
TQLM_BENCH_FORMAT(Q4_1)
TQLM_BENCH_FORMAT(Q5_0)
TQLM_BENCH_FORMAT(Q5_1)
TQLM_BENCH_FORMAT(Q2_K)
TQLM_BENCH_FORMAT(Q3_K)
TQLM_BENCH_FORMAT(Q4_K)
TQLM_BENCH_FORMAT(Q5_K)
TQLM_BENCH_FORMAT(Q6_K)

#define TQLM_BENCH_QWEN(T)                                                                 \
  BENCHMARK_CAPTURE(RunShape, T##_qwen_up_tokens1, TensorType::k##T, 8960, 1536, 1,       \
                    false)->Arg(2)->UseRealTime()->Unit(benchmark::kMillisecond);            \
  BENCHMARK_CAPTURE(RunShape, T##_qwen_up_tokens4, TensorType::k##T, 8960, 1536, 4,       \
                    false)->Arg(2)->UseRealTime()->Unit(benchmark::kMillisecond);            \
  BENCHMARK_CAPTURE(RunShape, T##_qwen_up_tokens8, TensorType::k##T, 8960, 1536, 8,       \
                    false)->Arg(2)->UseRealTime()->Unit(benchmark::kMillisecond);            \
  BENCHMARK_CAPTURE(RunShape, T##_qwen_up_tokens12, TensorType::k##T, 8960, 1536, 12,     \
                    false)->Arg(2)->UseRealTime()->Unit(benchmark::kMillisecond);            \
  BENCHMARK_CAPTURE(RunShape, T##_qwen_up_prefill16, TensorType::k##T, 8960, 1536, 16,    \
                    false)->Arg(2)->UseRealTime()->Unit(benchmark::kMillisecond);            \
  BENCHMARK_CAPTURE(RunShape, T##_qwen_up_prefill24, TensorType::k##T, 8960, 1536, 24,    \
                    false)->Arg(2)->UseRealTime()->Unit(benchmark::kMillisecond);            \
  BENCHMARK_CAPTURE(RunShape, T##_qwen_up_prefill32, TensorType::k##T, 8960, 1536, 32,    \
                    false)->Arg(2)->UseRealTime()->Unit(benchmark::kMillisecond);            \
  BENCHMARK_CAPTURE(RunShape, T##_qwen_up_prefill256, TensorType::k##T, 8960, 1536, 256,  \
                    false)->Arg(2)->UseRealTime()->Unit(benchmark::kMillisecond);            \
  BENCHMARK_CAPTURE(RunShape, T##_qwen_down_prefill256, TensorType::k##T, 1536, 8960, 256, \
                    false)->Arg(2)->UseRealTime()->Unit(benchmark::kMillisecond);

TQLM_BENCH_QWEN(Q4_K)
TQLM_BENCH_QWEN(Q6_K)

}  // namespace

BENCHMARK_MAIN();
