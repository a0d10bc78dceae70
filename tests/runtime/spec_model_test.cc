// Issue 28 on the real models: speculative decoding changes nothing but the speed. For a
// code-editing prompt (a source file of this repository and an instruction to rewrite it) and an
// Austen continuation, greedy output with n-gram speculation (adaptive, and fixed at 8 proposed
// tokens so that every step verifies and rolls back) and with draft-model speculation (the model
// as its own draft, the path a smaller model of the family takes) is the same tokens as without
// speculation; so is sampled output (temperature 0.8, one seed), because every position is
// sampled from bit-identical logits with the same random draws. f16 and the default compressed
// cache; SmolLM2, Qwen2.5-Coder, Gemma 3 (each skipped when not installed).
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <tuple>
#include <vector>

#include "model/model.h"
#include "runtime/generate.h"
#include "runtime/kv_policy.h"
#include "test_cache_path.h"
#include "tokenizer/tokenizer.h"
#include "model_kv_params.h"

namespace tqlm {
namespace {

using testing::CachePath;

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

class SpecModel : public ::testing::TestWithParam<std::tuple<const char*, bool>> {
 protected:
  void SetUp() override {
#ifdef TQLM_SANITIZED
    GTEST_SKIP() << "real-model runs take minutes under the sanitizers";
#endif
    const std::string path = CachePath(std::string("models/") + std::get<0>(GetParam()));
    if (!std::filesystem::exists(path)) GTEST_SKIP() << "model not installed: " << path;
    model_ = model::Model::Load(path);
    tok_ = tokenizer::Tokenizer::FromGguf(model_->file());
    options_.n_ctx = 2048;
    options_.n_threads = 2;
    options_.kv = std::get<1>(GetParam()) ? runtime::DefaultKvPolicy() : runtime::KvPolicy{};
  }

  runtime::GenerateResult Run(const std::vector<int>& prompt, runtime::SpecParams spec,
                              float temperature) {
    runtime::Session session(*model_, options_);
    std::unique_ptr<runtime::Session> draft;
    if (spec.mode == runtime::SpecMode::kDraft) {
      runtime::SessionOptions d = options_;
      d.kv = runtime::DefaultKvPolicy();
      draft = std::make_unique<runtime::Session>(*model_, d);
    }
    runtime::GenerateParams params;
    params.max_tokens = 48;
    params.sampler.temperature = temperature;
    params.sampler.seed = 2828;
    params.spec = spec;
    runtime::GenerateResult r = runtime::Generate(session, *tok_, prompt, params, {}, draft.get());
    // The session holds exactly the prompt and the tokens decoded, as without speculation.
    EXPECT_EQ(int(session.history().size()), int(prompt.size()) + r.decode_tokens);
    EXPECT_EQ(session.cache().n_tokens(), int(session.history().size()));
    return r;
  }

  void ExpectSameOutput(const std::vector<int>& prompt, const char* what) {
    using runtime::SpecMode;
    runtime::SpecParams ngram, fixed, draft;
    ngram.mode = SpecMode::kNgram;
    fixed.mode = SpecMode::kNgram;
    fixed.adaptive = false;
    fixed.max_draft = 8;
    fixed.ngram_min = 1;
    draft.mode = SpecMode::kDraft;
    draft.adaptive = false;
    draft.max_draft = 4;
    for (float temperature : {0.0f, 0.8f}) {
      const runtime::GenerateResult base = Run(prompt, {}, temperature);
      for (const auto& [name, spec] : {std::pair{"ngram", ngram}, std::pair{"ngram fixed", fixed},
                                       std::pair{"draft", draft}}) {
        if (temperature > 0 && spec.mode == SpecMode::kDraft) continue;  // rejection sampling
        const runtime::GenerateResult r = Run(prompt, spec, temperature);
        EXPECT_EQ(r.text, base.text) << what << ", " << name << ", temperature " << temperature;
        EXPECT_EQ(r.generated_tokens, base.generated_tokens) << what << ", " << name;
        EXPECT_EQ(r.decode_tokens, base.decode_tokens) << what << ", " << name;
        if (!spec.adaptive) {
          EXPECT_GT(r.spec.proposed, 0) << what << ", " << name;
        }
        if (spec.mode == SpecMode::kDraft && temperature == 0) {
          // Its own draft proposes what it will decode (up to the cache's rounding: the
          // draft's cache is the default compressed one).
          EXPECT_GT(r.spec.accepted, r.spec.proposed / 2) << what;
        }
      }
    }
  }

  std::unique_ptr<model::Model> model_;
  std::unique_ptr<tokenizer::Tokenizer> tok_;
  runtime::SessionOptions options_;
};

TEST_P(SpecModel, CodeEditSameTokens) {
  const std::string file = ReadFile(std::string(TQLM_SOURCE_DIR) + "/src/runtime/stop_strings.cc");
  ASSERT_FALSE(file.empty());
  const std::string prompt = "Here is a C++ file:\n\n" + file +
                             "\nRename StopSafePrefix to SafePrefix and return the whole file.\n\n" +
                             file.substr(0, 40);
  ExpectSameOutput(tok_->Encode(prompt, true), "code edit");
}

TEST_P(SpecModel, ProseSameTokens) {
  const std::string text = ReadFile(CachePath("corpus/emma.txt"));
  if (text.size() < 30000) GTEST_SKIP() << "corpus not installed";
  ExpectSameOutput(tok_->Encode(text.substr(20000, 2000), true), "prose");
}

INSTANTIATE_TEST_SUITE_P(Models, SpecModel, test::ModelsTimesKv(), test::ModelKvName());

}  // namespace
}  // namespace tqlm
