// The `qwen3` architecture (QK-norm, NeoX RoPE, head size != n_embd / n_head, no biases) on a
// tiny random-weight GGUF in its exact layout, against llama.cpp's logits for the same token ids
// (tests/data/model/qwen3_tiny*, made by scripts/gen_qwen3_tiny.py: no real Qwen3 GGUF can be
// installed here). F32 weights and an F32 KV cache on both sides: the logits must agree up to
// float summation order, so any misplaced norm, wrong RoPE pairing or head size shows at once.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>

#include "kernels/cpu/thread_pool.h"
#include "kv/kv_cache.h"
#include "model/model.h"
#include "reference_kv_cache.h"
#include "runtime/kv_policy.h"
#include "tokenizer/tokenizer.h"

namespace tqlm {
namespace {

std::string DataPath(const std::string& name) {
  return std::string(TQLM_SOURCE_DIR) + "/tests/data/model/" + name;
}

struct Qwen3Tiny : ::testing::Test {
  void SetUp() override {
    model = model::Model::Load(DataPath("qwen3_tiny.gguf"));
    std::ifstream in(DataPath("qwen3_tiny_golden.json"));
    ASSERT_TRUE(in);
    golden = nlohmann::json::parse(in);
    tokens = golden["tokens"].get<std::vector<int>>();
  }
  // All positions' logits, prefilled in chunks of `chunk` tokens (each attends to the earlier
  // chunks' cache; by default two chunks).
  std::vector<float> Logits(kv::KvCache& cache, int chunk = 0) {
    kernels::ThreadPool pool(2);
    const int n_vocab = model->info().n_vocab, n = int(tokens.size());
    if (chunk == 0) chunk = n / 2;
    std::vector<float> logits(size_t(n) * n_vocab);
    for (int at = 0; at < n; at += chunk) {
      const int m = std::min(chunk, n - at);
      model->Forward(tokens.data() + at, m, cache, true, logits.data() + size_t(at) * n_vocab, pool);
    }
    return logits;
  }
  kv::KvCacheConfig Config() const {
    kv::KvCacheConfig c;
    c.layers = model->info().layers;
    c.attn_scale = model->info().attn_scale;
    c.max_tokens = int(tokens.size());
    return c;
  }
  std::unique_ptr<model::Model> model;
  nlohmann::json golden;
  std::vector<int> tokens;
};

TEST_F(Qwen3Tiny, InfoFromMetadata) {
  const auto& info = model->info();
  EXPECT_EQ(info.arch, "qwen3");
  EXPECT_EQ(info.n_embd, 64);
  ASSERT_EQ(info.layers.size(), 2u);
  EXPECT_EQ(info.layers[0].n_heads, 4);
  EXPECT_EQ(info.layers[0].n_kv_heads, 2);
  EXPECT_EQ(info.layers[0].head_dim, 32);  // key_length, not 64 / 4
  EXPECT_FLOAT_EQ(info.attn_scale, 1.0f / std::sqrt(32.0f));
}

TEST_F(Qwen3Tiny, LogitsMatchLlamaCpp) {
  testing::ReferenceKvCache cache(Config());
  const std::vector<float> logits = Logits(cache);
  const int n_vocab = model->info().n_vocab;
  const std::vector<int> top1 = golden["llama_cpp_top1"];
  ASSERT_EQ(top1.size(), tokens.size());
  int agree = 0;
  for (size_t i = 0; i < tokens.size(); ++i) {
    const float* row = &logits[i * n_vocab];
    agree += int(std::max_element(row, row + n_vocab) - row) == top1[i];
  }
  EXPECT_EQ(agree, int(tokens.size()));
  const int every = golden["logit_rows_every"];
  double max_diff = 0, max_abs = 0;
  int rows = 0;
  for (const auto& ref : golden["llama_cpp_logits"]) {
    const std::vector<float> want = ref;
    ASSERT_EQ(int(want.size()), n_vocab);
    const float* got = &logits[size_t(rows++) * every * n_vocab];
    for (int v = 0; v < n_vocab; ++v) {
      max_diff = std::max(max_diff, double(std::fabs(got[v] - want[v])));
      max_abs = std::max(max_abs, double(std::fabs(want[v])));
    }
  }
  RecordProperty("max_logit_diff", std::to_string(max_diff));
  EXPECT_GT(max_abs, 1.0);       // real logits, not a degenerate model
  EXPECT_LT(max_diff, 5e-4);  // measured 1.2e-5: golden rounded to 1e-5, summation order
}

// The same model on the default compressed cache runs and stays close to the f32 result: QK-norm
// keys go through the TurboQuant path like any others. Prefilled 8 tokens at a time, so that
// the block of tokens 4..67 is compressed (when it fills) before the last 28 positions attend
// to it; in two chunks nothing compressed would ever be read.
TEST_F(Qwen3Tiny, CompressedCacheStaysClose) {
  testing::ReferenceKvCache ref(Config());
  const std::vector<float> exact = Logits(ref);
  const runtime::ResolvedKv kv = runtime::ResolveKvPolicy(
      runtime::DefaultKvPolicy(), model->info().layers, int(tokens.size()));
  auto cache = kv::KvCache::Create(
      runtime::MakeKvCacheConfig(model->info(), kv, int(tokens.size())));
  const std::vector<float> approx = Logits(*cache, 8);
  ASSERT_LT(cache->MemoryStats().bytes_used, cache->MemoryStats().bytes_f16) << "nothing compressed";
  const int n_vocab = model->info().n_vocab;
  int agree = 0;
  double sum_abs = 0, scale = 0;
  for (size_t i = 0; i < tokens.size(); ++i) {
    const float* a = &exact[i * n_vocab];
    const float* b = &approx[i * n_vocab];
    agree += std::max_element(a, a + n_vocab) - a == std::max_element(b, b + n_vocab) - b;
    for (int v = 0; v < n_vocab; ++v) {
      sum_abs += std::fabs(double(a[v]) - b[v]);
      scale += std::fabs(double(a[v]));
    }
  }
  const double rel = sum_abs / scale;
  std::printf("[qwen3 tiny] default compressed cache: top-1 %d/%zu as with f32, mean |logit diff| "
              "%.5f of mean |logit|\n", agree, tokens.size(), rel);
  RecordProperty("relative_logit_diff", std::to_string(rel));
  // Measured (AMX and TQLM_NO_AMX=1 alike: F32 weights): top-1 96/96, mean |logit diff| 1.36%
  // of the mean |logit| (1.16% before issue 22 fixed which rows read a block compressed; 0.014%
  // in two chunks, where nothing compressed is read). Margin: two flips at near ties, and
  // twice the logit difference.
  EXPECT_GE(agree, int(tokens.size()) - 2);
  EXPECT_LE(rel, 2 * 0.0136);
}

TEST_F(Qwen3Tiny, TokenizerLoads) {
  auto tok = tokenizer::Tokenizer::FromGguf(model->file());
  const std::vector<int> ids = tok->Encode("the cat and the hat", false, false);
  EXPECT_FALSE(ids.empty());
  EXPECT_EQ(tok->Decode(ids), "the cat and the hat");
}

}  // namespace
}  // namespace tqlm
