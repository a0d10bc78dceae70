// TokenStream, the generation logic run, chat and serve share: the token limit (max_tokens < 0
// until the context is full, 0 none at all), end tokens, stop strings and cancellation, driven
// with logits that make greedy sampling pick chosen tokens of the default model's vocabulary.
#include "runtime/token_stream.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <memory>

#include "model/gguf.h"
#include "test_cache_path.h"

namespace tqlm::runtime {
namespace {

class TokenStreamTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::string path = testing::CachePath("models/SmolLM2-135M-Instruct.Q4_1.gguf");
    if (!std::filesystem::exists(path)) GTEST_SKIP() << "model not installed: " << path;
    file_ = model::GgufFile::Open(path);
    tok_ = tokenizer::Tokenizer::FromGguf(*file_);
    logits_.assign(size_t(tok_->vocab_size()), 0.0f);
    params_.sampler.temperature = 0;  // greedy
  }
  // Logits whose argmax is `id`.
  const std::vector<float>& Pick(int id) {
    std::fill(logits_.begin(), logits_.end(), 0.0f);
    logits_[size_t(id)] = 10.0f;
    return logits_;
  }
  int Id(const std::string& piece) {
    const std::vector<int> ids = tok_->Encode(piece, false);
    EXPECT_EQ(ids.size(), 1u) << piece;
    return ids.empty() ? 0 : ids[0];
  }

  std::unique_ptr<model::GgufFile> file_;
  std::unique_ptr<tokenizer::Tokenizer> tok_;
  std::vector<float> logits_;
  std::vector<int> history_;
  GenerateParams params_;
};

TEST_F(TokenStreamTest, MaxTokensZeroGeneratesNothing) {
  params_.max_tokens = 0;
  TokenStream s(*tok_, params_, 100);
  EXPECT_FALSE(s.Started());
  EXPECT_EQ(s.finish_reason(), "length");
  EXPECT_TRUE(s.Next(Pick(Id("Hello")), history_).done);
  EXPECT_EQ(s.generated(), 0);
}

TEST_F(TokenStreamTest, NegativeMaxTokensRunsToTheContextEnd) {
  params_.max_tokens = -1;
  TokenStream s(*tok_, params_, 3);
  ASSERT_TRUE(s.Started());
  std::string text;
  int steps = 0;
  for (;; ++steps) {
    const TokenStream::Step st = s.Next(Pick(Id("Hello")), history_);
    text += st.text;
    if (st.done) break;
  }
  EXPECT_EQ(steps, 2);  // the third token ends it
  EXPECT_EQ(s.generated(), 3);
  EXPECT_EQ(s.finish_reason(), "length");
  EXPECT_EQ(text, "HelloHelloHello");
}

TEST_F(TokenStreamTest, EndTokenStopsAndIsNotText) {
  TokenStream s(*tok_, params_, 100);
  std::string text = s.Next(Pick(Id("Hello")), history_).text;
  const TokenStream::Step st = s.Next(Pick(tok_->end_of_generation_ids()[0]), history_);
  text += st.text;
  EXPECT_TRUE(st.done);
  EXPECT_EQ(s.finish_reason(), "stop");
  EXPECT_EQ(text, "Hello");
}

TEST_F(TokenStreamTest, StopStringCutsTheTextAndHoldsBackItsPrefix) {
  params_.stop = {"Hello world"};
  TokenStream s(*tok_, params_, 100);
  TokenStream::Step st = s.Next(Pick(Id("Hi")), history_);
  EXPECT_EQ(st.text, "Hi");
  st = s.Next(Pick(Id("Hello")), history_);
  EXPECT_EQ(st.text, "");  // could be the start of the stop string
  st = s.Next(Pick(Id(" world")), history_);
  EXPECT_TRUE(st.done);
  EXPECT_EQ(s.finish_reason(), "stop");
  EXPECT_EQ(s.text(), "Hi");
}

TEST_F(TokenStreamTest, CancelReleasesHeldText) {
  params_.stop = {"Hello world"};
  TokenStream s(*tok_, params_, 100);
  EXPECT_EQ(s.Next(Pick(Id("Hello")), history_).text, "");
  EXPECT_EQ(s.Cancel(), "Hello");
  EXPECT_EQ(s.finish_reason(), "cancelled");
  EXPECT_TRUE(s.Next(Pick(Id("Hello")), history_).done);
}

}  // namespace
}  // namespace tqlm::runtime
