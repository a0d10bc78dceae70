#include "runtime/memory_plan.h"

#include <gtest/gtest.h>

#include <random>

#include "kernels/cpu/thread_pool.h"

namespace tqlm::runtime {
namespace {

model::ModelInfo TinyInfo() {
  model::ModelInfo info;
  info.n_layer = 2;
  info.n_embd = 256;
  info.n_ff = 512;
  info.n_vocab = 1000;
  info.n_ctx_train = 4096;
  info.weight_bytes = 1 << 20;
  info.layers.assign(2, kv::LayerGeometry{4, 2, 128, 0});
  info.attn_scale = 0.088f;
  return info;
}

// The plan's arithmetic must equal what the cache really holds after `ctx` tokens.
void ExpectPlanMatchesCache(const KvPolicy& policy, int ctx) {
  const model::ModelInfo info = TinyInfo();
  const MemoryEstimate m = EstimateMemory(info, policy, ctx, 64);
  const ResolvedKv r = ResolveKvPolicy(policy, info.layers, ctx);
  auto cache = kv::KvCache::Create(MakeKvCacheConfig(info, r, ctx));
  std::mt19937 rng(1);
  std::normal_distribution<float> nd;
  const int chunk = 64, width = 2 * 128;
  std::vector<float> k(chunk * width), v(chunk * width), q(chunk * 4 * 128), out(q.size());
  kernels::ThreadPool pool(1);
  for (int done = 0; done < ctx; done += chunk) {
    for (auto& x : k) x = nd(rng);
    for (auto& x : v) x = nd(rng);
    for (int l = 0; l < info.n_layer; ++l) cache->Append(l, k.data(), v.data(), chunk);
    cache->Commit(chunk);
  }
  // The cache compresses a block when it encodes the next chunk, so right after a chunk of 64
  // it may hold up to one chunk more at full precision than the steady state the plan assumes.
  KvPolicy lagged = policy;
  lagged.recent_tokens += chunk;
  const MemoryEstimate upper = EstimateMemory(info, lagged, ctx, 64);
  const kv::KvMemoryStats s = cache->MemoryStats();
  const double planned = double(m.kv_compressed + m.kv_full);
  EXPECT_GE(double(s.bytes_used), 0.99 * planned) << policy.k_type << "/" << policy.v_type;
  EXPECT_LE(double(s.bytes_used), 1.01 * double(upper.kv_compressed + upper.kv_full))
      << policy.k_type << "/" << policy.v_type;
  EXPECT_EQ(s.bytes_f16, m.kv_f16);
}

TEST(MemoryPlan, MatchesTheCacheForEveryKind) {
  for (auto [k, v] : {std::pair{"f16", "f16"}, {"q8_0", "q4_0"}, {"tq4", "tq3"}, {"tq3", "tq2.5"}}) {
    KvPolicy p;
    p.k_type = k;
    p.v_type = v;
    p.recent_tokens = 128;
    p.sink_tokens = 64;
    ExpectPlanMatchesCache(p, 1024);
  }
}

TEST(MemoryPlan, CompressionShrinksKvAndMaxContextGrows) {
  const model::ModelInfo info = TinyInfo();
  KvPolicy f16, tq;
  tq.k_type = "tq4";
  tq.v_type = "tq3";
  const MemoryEstimate a = EstimateMemory(info, f16, 8192, 64);
  const MemoryEstimate b = EstimateMemory(info, tq, 8192, 64);
  EXPECT_LT(double(b.kv_compressed + b.kv_full), 0.3 * double(a.kv_compressed + a.kv_full));
  const size_t budget = size_t(8) << 20;
  EXPECT_GT(MaxContextThatFits(info, tq, budget, 64, 1 << 20),
            3 * MaxContextThatFits(info, f16, budget, 64, 1 << 20));
  EXPECT_LE(EstimateMemory(info, tq, MaxContextThatFits(info, tq, budget, 64, 1 << 20), 64).total(),
            budget);
}


// `plan --device cuda`: the GPU cache keeps every block the context touches compressed (window
// layers too), raw rows for the sinks and a ring, and needs the attention workspace; it takes
// no q8_0.
TEST(MemoryPlan, GpuEstimate) {
  model::ModelInfo info = TinyInfo();
  KvPolicy tq;
  tq.k_type = "tq4";
  tq.v_type = "tq3";
  tq.sink_tokens = 4;
  const MemoryEstimate cpu = EstimateMemory(info, tq, 8192, 64);
  const MemoryEstimate gpu = EstimateMemory(info, tq, 8192, 64, PlanDevice::kCuda);
  EXPECT_GE(gpu.kv_compressed, cpu.kv_compressed);
  EXPECT_LE(double(gpu.kv_compressed), 1.02 * double(cpu.kv_compressed));
  EXPECT_LT(double(gpu.kv_compressed + gpu.kv_full), 0.3 * double(gpu.kv_f16));
  EXPECT_GT(gpu.activations, cpu.activations);
  KvPolicy f16;
  const MemoryEstimate g16 = EstimateMemory(info, f16, 8192, 64, PlanDevice::kCuda);
  EXPECT_EQ(g16.kv_full, g16.kv_f16);
  info.layers[0].sliding_window = 512;
  EXPECT_GT(EstimateMemory(info, tq, 8192, 64, PlanDevice::kCuda).kv_compressed,
            EstimateMemory(info, tq, 8192, 64).kv_compressed);
  KvPolicy q8;
  q8.k_type = q8.v_type = "q8_0";
  EXPECT_FALSE(GpuTakesKv(info, q8));
  EXPECT_TRUE(GpuTakesKv(info, tq));
  EXPECT_TRUE(GpuTakesKv(info, DefaultKvPolicy()));
  EXPECT_TRUE(GpuTakesKv(info, f16));
}

}  // namespace
}  // namespace tqlm::runtime
