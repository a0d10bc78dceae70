// Evaluation pieces on the real default model (skipped when it is not installed): the KL
// scoring of a window against the f16 run, and the needle-in-a-haystack prompt builder.
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>

#include "eval/niah.h"
#include "eval/perplexity.h"
#include "kernels/cpu/matmul.h"
#include "model/model.h"
#include "chat/chat_format.h"
#include "tokenizer/tokenizer.h"
#include "tqlm/error.h"
#include "test_cache_path.h"

namespace tqlm::eval {
namespace {

using testing::CachePath;

class EvalSmolLM2 : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::string path = CachePath("models/SmolLM2-135M-Instruct.Q4_1.gguf");
    if (!std::filesystem::exists(path)) GTEST_SKIP() << "model not installed: " << path;
    model_ = model::Model::Load(path);
    tok_ = tokenizer::Tokenizer::FromGguf(model_->file());
    chat_ = chat::MakeChatFormatter(tok_->vocab());
  }
  std::vector<int> Text(int n) {
    std::string s;
    while (int(tok_->Encode(s, false, false).size()) < n)
      s += "It is a truth universally acknowledged, that a single man in possession of a good "
           "fortune, must be in want of a wife. However little known the feelings or views of "
           "such a man may be on his first entering a neighbourhood, this truth is so well fixed "
           "in the minds of the surrounding families, that he is considered the rightful property "
           "of some one or other of their daughters. ";
    return tok_->Encode(s, false, false);
  }
  runtime::SessionOptions Options(const std::string& k, const std::string& v) {
    runtime::SessionOptions o;
    o.n_ctx = 128;
    o.batch = 16;  // blocks of 64 get compressed between chunks, as during decoding
    o.n_threads = 2;
    o.kv.k_type = k;
    o.kv.v_type = v;
    return o;
  }
  std::unique_ptr<model::Model> model_;
  std::unique_ptr<tokenizer::Tokenizer> tok_;
  std::unique_ptr<chat::ChatFormatter> chat_;
};

TEST_F(EvalSmolLM2, WindowKlAgainstTheF16Run) {
  const std::vector<int> tokens = Text(2 * 128);
  WindowReference ref;
  runtime::Session f16(*model_, Options("f16", "f16"));
  const WindowScore r = ScoreWindow(f16, tokens, 128, 1, nullptr, &ref);
  EXPECT_EQ(r.scored, 63);
  EXPECT_EQ(ref.window, 1);
  EXPECT_EQ(ref.logprobs.size(), size_t(63) * model_->info().n_vocab);
  // The same configuration again: the same distributions.
  runtime::Session again(*model_, Options("f16", "f16"));
  const WindowScore same = ScoreWindow(again, tokens, 128, 1, &ref, nullptr);
  EXPECT_NEAR(same.kl_sum, 0, 1e-6);
  EXPECT_EQ(same.top1_ref, 63);
  EXPECT_DOUBLE_EQ(same.nll_sum, r.nll_sum);
  EXPECT_EQ(same.dnll_sq_sum, 0.0);
  // Compressed caches move the distributions; fewer bits move them more.
  runtime::Session tq4(*model_, Options("tq4", "tq4"));
  const WindowScore s4 = ScoreWindow(tq4, tokens, 128, 1, &ref, nullptr);
  runtime::Session tq2(*model_, Options("tq2", "tq2"));
  const WindowScore s2 = ScoreWindow(tq2, tokens, 128, 1, &ref, nullptr);
  // The squared per-token NLL differences bound their mean's square (Cauchy-Schwarz).
  const double dn = s4.nll_sum - r.nll_sum;
  EXPECT_GT(s4.dnll_sq_sum, 0.0);
  EXPECT_GE(s4.dnll_sq_sum * s4.scored * (1 + 1e-9), dn * dn);
  std::printf("[kl] tq4: mean KL %.6f, top-1 %d/63; tq2: mean KL %.6f, top-1 %d/63\n",
              s4.kl_sum / 63, s4.top1_ref, s2.kl_sum / 63, s2.top1_ref);
  // Measured over these 63 positions: tq4 mean KL 0.0495, top-1 57/63; tq2 0.246, top-1 53
  // (AMX and TQLM_NO_AMX=1 identical since issue 22; 0.0668 and 0.222, top-1 57 and 51, with
  // the former AMX-BF16 prefill). Bounds: within a factor 2 of that range either way, 3 top-1
  // flips fewer. A compressed path that stops compressing (KL ~0) or breaks (KL of order 1
  // and more) fails.
  EXPECT_GT(s4.kl_sum / 63, 0.0495 / 2);
  EXPECT_LT(s4.kl_sum / 63, 0.0668 * 2);
  EXPECT_GT(s2.kl_sum / 63, 0.222 / 2);
  EXPECT_LT(s2.kl_sum / 63, 0.246 * 2);
  EXPECT_GE(s4.top1_ref, 57 - 3);
  EXPECT_GE(s2.top1_ref, 51 - 3);
  EXPECT_GT(s2.kl_sum, s4.kl_sum);
  EXPECT_GE(s2.kl_max, s2.kl_sum / 63);
  EXPECT_LE(s2.top1_ref, 63);
  EXPECT_LT(s2.kv.bytes_used, s4.kv.bytes_used);
  EXPECT_EQ(s2.kv.bytes_f16, r.kv.bytes_f16);
  // The window's perplexity agrees with the single-configuration Perplexity().
  const PerplexityResult p = Perplexity(*model_, std::span<const int>(tokens).subspan(128), 128, 1,
                                        Options("tq2", "tq2"));
  EXPECT_NEAR(p.mean_nll * 63, s2.nll_sum, 1e-3 * s2.nll_sum);
  // A reference for another window is refused, as is a window past the text.
  EXPECT_THROW(ScoreWindow(tq2, tokens, 128, 0, &ref, nullptr), Error);
  EXPECT_THROW(ScoreWindow(tq2, tokens, 128, 2, nullptr, nullptr), Error);
}

TEST_F(EvalSmolLM2, NiahPromptHasTheNeedleAtTheDepth) {
  const std::vector<int> corpus = Text(3000);
  const Needle n = MakeNeedle(7, 1);
  EXPECT_EQ(n.number.size(), 5u);
  EXPECT_NE(n.sentence.find(n.number), std::string::npos);
  EXPECT_NE(n.question.find(n.name), std::string::npos);
  EXPECT_EQ(MakeNeedle(7, 1).sentence, n.sentence);  // deterministic
  EXPECT_NE(MakeNeedle(8, 1).number, n.number);
  EXPECT_NE(MakeNeedle(7, 2).sentence, n.sentence);  // another phrasing
  for (double depth : {0.1, 0.5, 0.9}) {
    const NiahPrompt p = BuildNiahPrompt(*tok_, *chat_, corpus, 600, depth, n, 3);
    EXPECT_NEAR(double(p.tokens.size()), 600, 12) << depth;
    EXPECT_GE(p.depth, depth - 0.01);
    EXPECT_LE(p.depth, depth + 0.15);
    const std::string text = tok_->Decode(p.tokens);
    const size_t at = text.find(n.sentence);
    ASSERT_NE(at, std::string::npos);
    EXPECT_LT(at, text.rfind(n.question));
  }
  EXPECT_THROW(BuildNiahPrompt(*tok_, *chat_, corpus, 40, 0.5, n, 3), Error);    // no room
  EXPECT_THROW(BuildNiahPrompt(*tok_, *chat_, corpus, 9000, 0.5, n, 3), Error);  // corpus short
  EXPECT_THROW(BuildNiahPrompt(*tok_, *chat_, corpus, 600, 1.5, n, 3), Error);
  EXPECT_TRUE(NiahCorrect("The number is " + n.number + ".", n));
  EXPECT_FALSE(NiahCorrect("I do not know.", n));
}

// Why KV evaluations and calibration run with float activations (--numerics float): with the
// native int8 ones, a change upstream too small to matter re-rounds the activations of every
// later matmul, and on Gemma 3 (large activations) that alone moves predictions by about as
// much as an 8-bit KV cache. Here the smallest change there is, an f32 KV cache against the
// f16 one: under float numerics it stays at least 10x below what native numerics make of it.
TEST(EvalGemma3, FloatNumericsMeasureTheCacheNotTheRounding) {
  const std::string path = CachePath("models/gemma-3-270m-q4_k_m.gguf");
  if (!std::filesystem::exists(path)) GTEST_SKIP() << "model not installed: " << path;
  const std::string signature = kernels::NumericsSignature();
  if (signature.find("int8") == std::string::npos)
    GTEST_SKIP() << "native numerics are float on this CPU: " << signature;
  auto model = model::Model::Load(path);
  auto tok = tokenizer::Tokenizer::FromGguf(model->file());
  std::string text;
  for (int i = 0; text.size() < 4000; ++i)
    text += "Chapter " + std::to_string(i) + ". Sir Walter Elliot, of Kellynch Hall, in "
            "Somersetshire, was a man who, for his own amusement, never took up any book but "
            "the Baronetage; there he found occupation for an idle hour, and consolation in a "
            "distressed one. ";
  const std::vector<int> tokens = tok->Encode(text, false, false);
  const int ctx = 256;
  ASSERT_GE(tokens.size(), size_t(ctx));
  auto kl = [&](kernels::MatMulNumerics numerics, const std::string& kv) {
    kernels::SetMatMulNumerics(numerics);
    runtime::SessionOptions o;
    o.n_ctx = ctx;
    o.batch = 64;
    o.n_threads = 2;
    o.kv.k_type = o.kv.v_type = "f16";
    WindowReference ref;
    runtime::Session f16(*model, o);
    ScoreWindow(f16, tokens, ctx, 0, nullptr, &ref);
    o.kv.k_type = o.kv.v_type = kv;
    runtime::Session s(*model, o);
    const WindowScore r = ScoreWindow(s, tokens, ctx, 0, &ref, nullptr);
    kernels::SetMatMulNumerics(kernels::MatMulNumerics::kNative);
    return r.kl_sum / r.scored;
  };
  const double native = kl(kernels::MatMulNumerics::kNative, "f32");
  const double flt = kl(kernels::MatMulNumerics::kFloat, "f32");
  std::printf("[kl] f32 KV against f16 KV: native numerics %.6f, float %.8f\n", native, flt);
  EXPECT_GT(native, 0.0);
  EXPECT_LT(flt * 10, native);
}

}  // namespace
}  // namespace tqlm::eval
