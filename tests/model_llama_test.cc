// The Llama-family forward pass on the real default model, with the scalar reference KV cache:
// teacher-forced top-1 predictions must match the ids llama.cpp produced for the same tokens
// (tests/data/model/*_golden.json, made by scripts/gen_model_golden.py).
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "kernels/cpu/thread_pool.h"
#include "model/model.h"
#include "reference_kv_cache.h"
#include "tokenizer/tokenizer.h"
#include "test_cache_path.h"

namespace tqlm {
namespace {

using testing::CachePath;

kv::KvCacheConfig ReferenceConfig(const model::ModelInfo& info, int max_tokens) {
  kv::KvCacheConfig c;
  c.layers = info.layers;
  c.attn_scale = info.attn_scale;
  c.max_tokens = max_tokens;
  return c;
}

class SmolLM2 : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::string path = CachePath("models/SmolLM2-135M-Instruct.Q4_1.gguf");
    if (!std::filesystem::exists(path)) GTEST_SKIP() << "model not installed: " << path;
    model_ = model::Model::Load(path);
  }
  std::unique_ptr<model::Model> model_;
};

TEST_F(SmolLM2, InfoFromMetadata) {
  const auto& info = model_->info();
  EXPECT_EQ(info.arch, "llama");
  EXPECT_EQ(info.n_layer, 30);
  EXPECT_EQ(info.n_embd, 576);
  EXPECT_EQ(info.n_vocab, 49152);
  ASSERT_EQ(info.layers.size(), 30u);
  EXPECT_EQ(info.layers[0].n_heads, 9);
  EXPECT_EQ(info.layers[0].n_kv_heads, 3);
  EXPECT_EQ(info.layers[0].head_dim, 64);
}

// Teacher-forced top-1 of our forward pass vs llama.cpp's on the same token ids.
double Top1AgreementWithLlamaCpp(model::Model& model, const std::string& golden_name) {
  std::ifstream in(std::string(TQLM_SOURCE_DIR) + "/tests/data/model/" + golden_name);
  EXPECT_TRUE(in) << "golden file missing: " << golden_name;
  const nlohmann::json golden = nlohmann::json::parse(in);
  const std::vector<int> tokens = golden["tokens"];
  const std::vector<int> top1 = golden["llama_cpp_top1"];
  EXPECT_EQ(tokens.size(), top1.size());

  kernels::ThreadPool pool(2);
  testing::ReferenceKvCache cache(ReferenceConfig(model.info(), int(tokens.size())));
  const int n_vocab = model.info().n_vocab;
  std::vector<float> logits(tokens.size() * n_vocab);
  // Two chunks: exercises prefill batching and attention to an earlier chunk.
  const int half = int(tokens.size()) / 2;
  model.Forward(tokens.data(), half, cache, true, logits.data(), pool);
  model.Forward(tokens.data() + half, int(tokens.size()) - half, cache, true,
                logits.data() + size_t(half) * n_vocab, pool);
  int agree = 0;
  for (size_t i = 0; i < tokens.size(); ++i) {
    const float* row = &logits[i * n_vocab];
    agree += int(std::max_element(row, row + n_vocab) - row) == top1[i];
  }
  return double(agree) / double(tokens.size());
}

// The bound sits below the noise floor, not at the target: llama.cpp agrees with itself (flash
// vs plain attention) on only ~96% of top-1 tokens of these models, and over a few hundred
// tokens the binomial spread is about ±1%. A broken forward pass lands far below (< 50%).
constexpr double kTop1Bound = 0.93;

TEST_F(SmolLM2, TeacherForcedTop1MatchesLlamaCpp) {
  const double agreement = Top1AgreementWithLlamaCpp(*model_, "smollm2_golden.json");
  RecordProperty("top1_agreement", std::to_string(agreement));
  EXPECT_GE(agreement, kTop1Bound);
}

TEST(Qwen25Coder, TeacherForcedTop1MatchesLlamaCpp) {
#if defined(TQLM_SANITIZED)
  GTEST_SKIP() << "1.5B-parameter forward pass is too slow under sanitizers";
#endif
  const std::string path = CachePath("models/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf");
  if (!std::filesystem::exists(path)) GTEST_SKIP() << "model not installed: " << path;
  auto model = model::Model::Load(path);
  EXPECT_EQ(model->info().arch, "qwen2");
  const double agreement = Top1AgreementWithLlamaCpp(*model, "qwen2.5-coder_golden.json");
  RecordProperty("top1_agreement", std::to_string(agreement));
  EXPECT_GE(agreement, kTop1Bound);
}

TEST_F(SmolLM2, GreedyContinuationIsSensible) {
  auto tok = tokenizer::Tokenizer::FromGguf(model_->file());
  std::vector<int> ids = tok->Encode("The capital of France is", true, false);
  kernels::ThreadPool pool(2);
  testing::ReferenceKvCache cache(ReferenceConfig(model_->info(), 64));
  std::vector<float> logits(model_->info().n_vocab);
  model_->Forward(ids.data(), int(ids.size()), cache, false, logits.data(), pool);
  std::vector<int> out;
  for (int i = 0; i < 6; ++i) {
    const int next = int(std::max_element(logits.begin(), logits.end()) - logits.begin());
    out.push_back(next);
    model_->Forward(&next, 1, cache, false, logits.data(), pool);
  }
  EXPECT_NE(tok->Decode(out).find("Paris"), std::string::npos) << tok->Decode(out);
}

}  // namespace
}  // namespace tqlm
