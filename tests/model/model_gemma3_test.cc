// Gemma 3 270M (scripts/fetch_data.sh --extra): metadata, sliding-window geometry, the memory
// report for window layers, and teacher-forced top-1 predictions and logits against llama.cpp
// (tests/data/model/gemma3_golden.json, made by scripts/gen_model_golden.py gemma3) over 640
// tokens, past the 512-token window of the local layers.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>

#include "kernels/cpu/thread_pool.h"
#include "model/model.h"
#include "llama_cpp_golden.h"
#include "reference_kv_cache.h"
#include "runtime/kv_policy.h"
#include "runtime/memory_plan.h"
#include "chat/chat_format.h"
#include "tokenizer/tokenizer.h"
#include "test_cache_path.h"

namespace tqlm {
namespace {

using testing::CachePath;

class Gemma3 : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    const std::string path = CachePath("models/gemma-3-270m-q4_k_m.gguf");
    if (std::filesystem::exists(path)) model_ = model::Model::Load(path).release();
  }
  static void TearDownTestSuite() {
    delete model_;
    model_ = nullptr;
  }
  void SetUp() override {
    if (!model_) GTEST_SKIP() << "model not installed (scripts/fetch_data.sh --extra)";
  }
  static model::Model* model_;
};
model::Model* Gemma3::model_ = nullptr;

kv::KvCacheConfig ReferenceConfig(const model::ModelInfo& info, int max_tokens) {
  kv::KvCacheConfig c;
  c.layers = info.layers;
  c.attn_scale = info.attn_scale;
  c.max_tokens = max_tokens;
  return c;
}

TEST_F(Gemma3, InfoFromMetadata) {
  const auto& info = model_->info();
  EXPECT_EQ(info.arch, "gemma3");
  EXPECT_EQ(info.n_layer, 18);
  EXPECT_EQ(info.n_embd, 640);
  EXPECT_EQ(info.n_vocab, 262144);
  EXPECT_FLOAT_EQ(info.attn_scale, 1.0f / 16.0f);  // 1/sqrt(query_pre_attn_scalar = 256)
  ASSERT_EQ(info.layers.size(), 18u);
  for (int l = 0; l < 18; ++l) {
    SCOPED_TRACE(l);
    EXPECT_EQ(info.layers[l].n_heads, 4);
    EXPECT_EQ(info.layers[l].n_kv_heads, 1);
    EXPECT_EQ(info.layers[l].head_dim, 256);
    // Five local layers (window 512) then one global, repeated.
    EXPECT_EQ(info.layers[l].sliding_window, l % 6 == 5 ? 0 : 512);
  }
}

// The memory report counts each local layer's window, not the whole context, and equals what
// the real cache holds after a long fill.
TEST_F(Gemma3, MemoryReportCountsWindows) {
  const auto& info = model_->info();
  const int ctx = 2048;
  runtime::KvPolicy policy;  // f16
  const runtime::MemoryEstimate m = runtime::EstimateMemory(info, policy, ctx, 64);
  const size_t per_token = size_t(1) * 256 * 2 /*K,V*/ * 2 /*f16*/;
  EXPECT_EQ(m.kv_f16, (3 * size_t(ctx) + 15 * size_t(512)) * per_token);
  EXPECT_EQ(m.kv_full, m.kv_f16);

  const runtime::ResolvedKv r = runtime::ResolveKvPolicy(policy, info.layers, ctx);
  auto cache = kv::KvCache::Create(runtime::MakeKvCacheConfig(info, r, ctx));
  std::mt19937 rng(7);
  std::normal_distribution<float> nd;
  const int chunk = 64;
  std::vector<float> k(chunk * 256), v(chunk * 256);
  for (int done = 0; done < ctx; done += chunk) {
    for (auto& x : k) x = nd(rng);
    for (auto& x : v) x = nd(rng);
    for (int l = 0; l < info.n_layer; ++l) cache->Append(l, k.data(), v.data(), chunk);
    cache->Commit(chunk);
  }
  const kv::KvMemoryStats s = cache->MemoryStats();
  // A window layer may still hold the whole block its window starts in: up to 64 tokens more.
  EXPECT_GE(s.bytes_used, m.kv_full);
  EXPECT_LE(s.bytes_used, m.kv_full + 15 * size_t(64) * per_token);
  EXPECT_LT(s.bytes_used, size_t(18) * ctx * per_token / 2);  // far below a full-context cache
}

// Teacher-forced logits of our forward pass vs llama.cpp's on the same token ids, fed in
// chunks of 64 tokens (prefill batching, attention to earlier chunks, the window sliding past
// 512). Logits are compared from position 448 on (192 positions, 128 of them past the window):
// the 262k-row output matrix would dominate the test's time for every position. The run uses
// the f32 paged cache (checked against the reference cache by the KV tests): the double-
// precision reference is too slow at 640 tokens with head size 256.
//
// The bounds are relative to llama.cpp's own noise floor (its two configurations in the
// golden; tests/llama_cpp_golden.h). Measured (AMX and TQLM_NO_AMX=1 alike): top-1 179/192
// (llama.cpp with itself 184, bound 176); top-8 logits mean |diff| 0.179, 1.02x llama.cpp's
// own 0.175 (bound 1.5x); max 1.10 (own 1.03). Before issue 24: top-1 >= 0.90 and a mean
// top-1 logit error below 0.5. A wrong block (RoPE base, a missing norm, the window) moves
// logits by whole units.

TEST_F(Gemma3, TeacherForcedLogitsMatchLlamaCpp) {
#if defined(TQLM_SANITIZED)
  GTEST_SKIP() << "640 tokens of a 270M model are too slow under sanitizers";
#endif
  const testing::GoldenLogits g = testing::GoldenLogits::Load("gemma3_golden.json");
  ASSERT_GT(g.tokens.size(), 512u);

  kernels::ThreadPool pool(2);
  kv::KvCacheConfig config = ReferenceConfig(model_->info(), int(g.tokens.size()));
  config.k_types.assign(config.layers.size(), kv::KvType::Parse("f32"));
  config.v_types = config.k_types;
  auto cache = kv::KvCache::Create(config);
  const int n_vocab = model_->info().n_vocab, chunk = 64, first_scored = 448;
  std::vector<float> logits(size_t(chunk) * n_vocab);
  testing::GoldenComparison c;
  for (size_t at = 0; at < g.tokens.size(); at += chunk) {
    const int n = int(std::min<size_t>(chunk, g.tokens.size() - at));
    const bool all = int(at) >= first_scored;
    model_->Forward(g.tokens.data() + at, n, *cache, all, logits.data(), pool);
    if (!all) continue;
    for (int i = 0; i < n; ++i) c.Add(g, at + i, &logits[size_t(i) * n_vocab], n_vocab);
  }
  ASSERT_EQ(c.positions, int(g.tokens.size()) - first_scored);
  c.Print("gemma3");
  RecordProperty("top1_agreement", std::to_string(double(c.agree) / c.positions));
  RecordProperty("mean_abs_logit_diff", std::to_string(c.mean_abs()));
  testing::ExpectWithinNoiseFloor(c);
}

TEST_F(Gemma3, GreedyContinuationIsSensible) {
#if defined(TQLM_SANITIZED)
  GTEST_SKIP() << "a 262k-row output matrix per token is slow under sanitizers";
#endif
  auto tok = tokenizer::Tokenizer::FromGguf(model_->file());
  // llama.cpp's greedy continuation of this prompt is " Paris, France. It is the tallest".
  std::vector<int> ids = tok->Encode("The Eiffel Tower is located in the city of", true, false);
  ASSERT_EQ(ids.front(), tok->bos());
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

// The GGUF carries no chat template: chat falls back to Gemma's own turn format, which ends
// a turn with <end_of_turn>, an end-of-generation token.
TEST_F(Gemma3, ChatUsesGemmaTurnFormat) {
  auto tok = tokenizer::Tokenizer::FromGguf(model_->file());
  auto chat = chat::MakeChatFormatter(tok->vocab());
  const std::vector<chat::ChatMessage> messages = {{"system", "Be brief."}, {"user", "Hi"}};
  EXPECT_EQ(chat->Format(messages, true),
            "<bos><start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n<start_of_turn>model\n");
  EXPECT_EQ(chat->EndOfTurn(), "<end_of_turn>");
  const auto end = tok->FindToken("<end_of_turn>");
  ASSERT_TRUE(end);
  EXPECT_TRUE(tok->IsEndOfGeneration(*end));
  // The template writes <bos> itself: the chat encoding adds no second one.
  const std::string prompt = chat->Format(messages, true);
  ASSERT_EQ(tok->Encode(prompt, true, true)[1], tok->bos());  // what a plain Encode would do
  const std::vector<int> ids = tok->EncodeChat(prompt);
  ASSERT_GE(ids.size(), 2u);
  EXPECT_EQ(ids[0], tok->bos());
  EXPECT_EQ(ids[1], *tok->FindToken("<start_of_turn>"));
  EXPECT_EQ(tok->Decode(ids, true), prompt);
}

}  // namespace
}  // namespace tqlm
