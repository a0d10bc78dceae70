// Batched decode (Model::ForwardBatch, continuous batching) against one Forward per sequence on
// the real default model: three sequences of different lengths, two batched steps, logits equal
// within float tolerance and the caches equally long afterwards.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>

#include "kernels/cpu/thread_pool.h"
#include "model/model.h"
#include "tqlm/error.h"

namespace tqlm {
namespace {

std::string DefaultModel() {
  const char* c = std::getenv("TQLM_CACHE");
  const char* home = std::getenv("HOME");
  return (c ? std::string(c) : std::string(home ? home : ".") + "/.cache/tqlm") +
         "/models/SmolLM2-135M-Instruct.Q4_1.gguf";
}

std::unique_ptr<kv::KvCache> NewCache(const model::ModelInfo& info, const std::string& type) {
  kv::KvCacheConfig c;
  c.layers = info.layers;
  c.k_types.assign(info.n_layer, kv::KvType::Parse(type));
  c.v_types.assign(info.n_layer, kv::KvType::Parse(type));
  c.attn_scale = info.attn_scale;
  c.max_tokens = 256;
  return kv::KvCache::Create(c);
}

// Largest |a - b| relative to the largest |b|.
double RelMaxDiff(const std::vector<float>& a, const std::vector<float>& b) {
  double diff = 0, scale = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    diff = std::max(diff, double(std::fabs(a[i] - b[i])));
    scale = std::max(scale, double(std::fabs(b[i])));
  }
  return diff / scale;
}

TEST(ForwardBatch, MatchesPerSequenceForward) {
  const std::string path = DefaultModel();
  if (!std::filesystem::exists(path)) GTEST_SKIP() << "model not installed: " << path;
  auto model = model::Model::Load(path);
  const model::ModelInfo& info = model->info();
  kernels::ThreadPool pool(2);
  const std::vector<std::vector<int>> prompts = {
      {1, 504, 3458, 282, 4649, 314}, {1, 28120}, {1, 2683, 339, 253, 1345, 30, 378, 1046, 2116, 28}};
  const std::vector<std::string> types = {"f16", "tq4", "f16"};
  const size_t nv = size_t(info.n_vocab);
  std::vector<std::unique_ptr<kv::KvCache>> batched, single;
  std::vector<float> scratch(nv);
  for (size_t s = 0; s < prompts.size(); ++s) {
    batched.push_back(NewCache(info, types[s]));
    single.push_back(NewCache(info, types[s]));
    model->Forward(prompts[s].data(), int(prompts[s].size()), *batched[s], false, scratch.data(), pool);
    model->Forward(prompts[s].data(), int(prompts[s].size()), *single[s], false, scratch.data(), pool);
  }
  std::vector<int> next = {42, 1000, 7};
  for (int step = 0; step < 2; ++step) {
    std::vector<std::vector<float>> got(prompts.size(), std::vector<float>(nv));
    std::vector<model::BatchItem> items;
    for (size_t s = 0; s < prompts.size(); ++s) items.push_back({next[s], *batched[s], got[s].data()});
    model->ForwardBatch(items, pool);
    for (size_t s = 0; s < prompts.size(); ++s) {
      std::vector<float> want(nv);
      model->Forward(&next[s], 1, *single[s], false, want.data(), pool);
      EXPECT_LT(RelMaxDiff(got[s], want), 1e-4) << "sequence " << s << " step " << step;
      EXPECT_EQ(batched[s]->n_tokens(), single[s]->n_tokens());
      EXPECT_EQ(batched[s]->n_tokens(), int(prompts[s].size()) + step + 1);
      next[s] = int(std::max_element(want.begin(), want.end()) - want.begin());
    }
  }
}

TEST(ForwardBatch, RejectsTheSameCacheTwice) {
  const std::string path = DefaultModel();
  if (!std::filesystem::exists(path)) GTEST_SKIP() << "model not installed: " << path;
  auto model = model::Model::Load(path);
  kernels::ThreadPool pool(1);
  auto cache = NewCache(model->info(), "f16");
  std::vector<float> a(model->info().n_vocab), b(model->info().n_vocab);
  const std::vector<model::BatchItem> items = {{1, *cache, a.data()}, {2, *cache, b.data()}};
  EXPECT_THROW(model->ForwardBatch(items, pool), Error);
  EXPECT_EQ(cache->n_tokens(), 0);
}

}  // namespace
}  // namespace tqlm
