// Decode-attention kernels on one block of 64 cached tokens held in L1: the compute floor of
// `tqlm bench attn` (which streams every block from DRAM). One iteration is one block of one
// KV head for 4 query rows (Llama-3-8B's GQA: 32 heads over 8 KV heads): scores, online
// softmax, weighted sum of V. items/s counts cached tokens (token-heads), so 1e9 / items_per_s
// is the ns per token-head that PERF_NOTES compares with the memory time per token-head.
#include <benchmark/benchmark.h>

#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "kernels/cpu/attention_raw.h"
#include "kernels/cpu/attention_tq.h"
#include "kernels/tensor_format.h"

namespace {

using namespace tqlm::kernels;

constexpr int kDim = 128, kRows = 4, kMaxRows = 64, kTok = 64, kStride = 64;

struct Rows {
  std::vector<float> m = std::vector<float>(kMaxRows, -std::numeric_limits<float>::infinity());
  std::vector<float> l = std::vector<float>(kMaxRows, 0.0f);
  std::vector<float> acc = std::vector<float>(size_t(kMaxRows) * kDim, 0.0f);
  std::vector<float> scores = std::vector<float>(size_t(kMaxRows) * kStride);
};

void F16Block(benchmark::State& state, int rows, bool per_row) {
  std::mt19937 rng(1);
  std::normal_distribution<float> nd;
  std::vector<uint16_t> k(size_t(kTok) * kDim), v(k.size());
  for (auto& x : k) x = F32ToF16(nd(rng));
  for (auto& x : v) x = F32ToF16(nd(rng));
  std::vector<float> q(size_t(rows) * kDim);
  for (auto& x : q) x = 0.1f * nd(rng);
  Rows r;
  const int part = per_row ? int(state.range(0)) : 0;  // as BM_TqBlock's part
  for (auto& x : r.scores) x = 0.01f;
  for (auto _ : state) {
    if (part == 0 || part == 1)
      AttnScoresF16T(q.data(), rows, k.data(), kDim, r.scores.data(), kStride);
    if (part == 0 || part == 2)
      AttnSoftmaxUpdate(r.scores.data(), rows, kStride, kTok, r.m.data(), r.l.data(),
                        r.acc.data(), kDim);
    if (part == 0 || part == 3)
      AttnAccumF16(r.scores.data(), rows, kStride, v.data(), kTok, kDim, r.acc.data());
    benchmark::DoNotOptimize(r.acc.data());
    benchmark::DoNotOptimize(r.scores.data());
  }
  state.SetItemsProcessed(int64_t(state.iterations()) * kTok * (per_row ? rows : 1));
}
void BM_F16Block(benchmark::State& state) { F16Block(state, kRows, false); }
// (part, rows): per-row cost as BM_TqRows measures it (TQLM_RAW_TILE_ROWS changes the split).
void BM_F16Rows(benchmark::State& state) { F16Block(state, int(state.range(1)), true); }
BENCHMARK(BM_F16Block);
BENCHMARK(BM_F16Rows)->ArgsProduct({{1, 3}, {4, 6, 8, 60}});

// TurboQuant K at state.range(0) bits, V at state.range(1) bits (uniform per block), on kernel
// path state.range(3) (TqKernelPath: 1 VNNI, 2 VNNI + VBMI), for state.range(4) query rows
// (BM_TqBlock: 4; BM_TqRows: state.range(4), e.g. 6 for Qwen2.5's GQA group, 60 for a prefill
// task's row chunk, with items/s counting token-rows so that row counts compare).
void TqBlock(benchmark::State& state, int rows, bool per_row) {
  const int kb = int(state.range(0)), vb = int(state.range(1));
  if (!SetTqKernelPathForTest(TqKernelPath(state.range(3)))) {
    state.SkipWithError("kernel path not supported by this CPU");
    return;
  }
  const TqBlockLayout lk = TqBlockLayout::Make(kDim, kDim, kb, kb);
  const TqBlockLayout lv = TqBlockLayout::Make(kDim, kDim, vb, vb);
  std::mt19937 rng(1);
  auto block = [&](const TqBlockLayout& l) {
    std::vector<uint8_t> b(l.block_bytes);
    for (size_t i = 0; i < l.codes_bytes; ++i) b[i] = uint8_t(rng());  // any bits are codes
    const uint16_t one = F32ToF16(1.0f);
    for (int t = 0; t < kTok; ++t) std::memcpy(b.data() + l.norms_offset + 2 * t, &one, 2);
    return b;
  };
  const std::vector<uint8_t> k = block(lk), v = block(lv);
  TqTables tk, tv;
  for (int i = 0; i < 256; ++i)
    tk.hi[i] = tk.lo[i] = tv.hi[i] = tv.lo[i] = int8_t(i / 2 - 64);
  tk.cb_scale = tv.cb_scale = 1.0f / 127;
  std::vector<int8_t> q8(size_t(rows) * kDim);
  std::vector<float> q_scale(rows, 1e-3f);
  std::vector<int32_t> q_sum(rows, 0);
  for (int i = 0; i < rows; ++i)
    for (int j = 0; j < kDim; ++j) q_sum[i] += (q8[size_t(i) * kDim + j] = int8_t(int(rng() % 255) - 127));
  Rows r;
  const int part = int(state.range(2));  // 0: whole step, 1: scores, 2: softmax, 3: accumulate
  for (auto& x : r.scores) x = 0.01f;  // weights for a lone accumulate
  for (auto _ : state) {
    if (part == 0 || part == 1)
      TqScores(lk, tk, q8.data(), q_scale.data(), q_sum.data(), rows, k.data(), r.scores.data(),
               kStride);
    if (part == 0 || part == 2)
      AttnSoftmaxUpdate(r.scores.data(), rows, kStride, kTok, r.m.data(), r.l.data(),
                        r.acc.data(), kDim);
    if (part == 0 || part == 3)
      TqAccumulate(lv, tv, r.scores.data(), rows, kStride, v.data(), r.acc.data());
    benchmark::DoNotOptimize(r.acc.data());
    benchmark::DoNotOptimize(r.scores.data());
  }
  state.SetItemsProcessed(int64_t(state.iterations()) * kTok * (per_row ? rows : 1));
  SetTqKernelPathForTest(TqBestKernelPath());
}
void BM_TqBlock(benchmark::State& state) { TqBlock(state, kRows, false); }
void BM_TqRows(benchmark::State& state) { TqBlock(state, int(state.range(4)), true); }

// Both SIMD paths per configuration, side by side.
BENCHMARK(BM_TqBlock)->ArgsProduct({{4}, {3}, {0, 1, 2, 3}, {1, 2}})
    ->Args({3, 3, 0, 1})->Args({3, 3, 0, 2})->Args({4, 4, 0, 1})->Args({4, 4, 0, 2})
    ->Args({3, 2, 0, 1})->Args({3, 2, 0, 2})->Args({8, 3, 0, 2})->Args({8, 3, 1, 2});
// Tile shapes: per-row cost of scores and accumulate by row count (TQLM_TQ_TILE_ROWS
    // changes how 6 and 60 rows are split).
BENCHMARK(BM_TqRows)->ArgsProduct({{4}, {3}, {1, 3}, {2}, {1, 2, 3, 4, 5, 6, 7, 8, 60}});

}  // namespace

BENCHMARK_MAIN();
