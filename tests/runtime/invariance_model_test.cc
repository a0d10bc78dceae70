// Issue 22 on the real models: for a 600-token Austen prompt, the logits after the prompt and
// every logit and token of a 32-token greedy continuation are the same bits however the prompt
// is chunked (1, 7, 64, 512 tokens), on 1 or 2 threads, with the continuation decoded alone or
// batched (Model::ForwardBatch) beside 1 or 3 other sequences, and with the prompt's prefix taken
// from an earlier run's cache (clone + truncate, as the prompt cache does): with an f16 cache and
// with the default compressed one. SmolLM2 (Q4_1), Qwen2.5-Coder (Q4_K_M), Gemma 3 (Q4_K_M).
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <sstream>
#include <string>
#include <tuple>
#include <vector>

#include "kernels/cpu/thread_pool.h"
#include "model/model.h"
#include "runtime/kv_policy.h"
#include "test_cache_path.h"
#include "tokenizer/tokenizer.h"
#include "model_kv_params.h"

namespace tqlm {
namespace {

using testing::CachePath;

constexpr int kPrompt = 600, kContinue = 32;

struct Generation {
  std::vector<float> prompt_logits;  // after the last prompt token
  std::vector<int> tokens;           // greedy continuation
  std::vector<float> step_logits;    // every continuation step's logits, concatenated
};

int Argmax(const float* x, int n) { return int(std::max_element(x, x + n) - x); }

class ModelInvariance
    : public ::testing::TestWithParam<std::tuple<const char*, bool>> {
 protected:
  void SetUp() override {
#ifdef TQLM_SANITIZED
    GTEST_SKIP() << "real-model runs take minutes under the sanitizers";
#endif
    const std::string path = CachePath(std::string("models/") + std::get<0>(GetParam()));
    if (!std::filesystem::exists(path)) GTEST_SKIP() << "model not installed: " << path;
    model_ = model::Model::Load(path);
    std::ifstream in(CachePath("corpus/emma.txt"));
    if (!in) GTEST_SKIP() << "corpus not installed";
    std::stringstream text;
    text << in.rdbuf();
    auto tok = tokenizer::Tokenizer::FromGguf(model_->file());
    const std::string body = text.str().substr(20000, 6000);
    prompt_ = tok->Encode(body, true);
    ASSERT_GE(int(prompt_.size()), kPrompt);
    prompt_.resize(kPrompt);
    for (int i = 0; i < 4; ++i) {  // other sequences for batched steps
      std::vector<int> p = tok->Encode(text.str().substr(40000 + 3000 * i, 200 + 150 * i), true);
      others_.push_back(p);
    }
  }

  std::unique_ptr<kv::KvCache> NewCache(const runtime::KvPolicy& policy) const {
    const model::ModelInfo& info = model_->info();
    const runtime::ResolvedKv kv = runtime::ResolveKvPolicy(policy, info.layers, kPrompt);
    return kv::KvCache::Create(runtime::MakeKvCacheConfig(info, kv, 1024));
  }

  // The prompt from position `from` in chunks of `chunk` into `cache`, then the continuation,
  // decoded alone (others == 0) or in a batch with `others` sequences of their own.
  Generation Generate(kv::KvCache& cache, int from, int chunk, int threads, int others,
               const runtime::KvPolicy& policy) {
    kernels::ThreadPool pool(threads);
    const int nv = model_->info().n_vocab;
    Generation r;
    std::vector<float> logits(static_cast<size_t>(nv));
    for (int p = from; p < kPrompt; p += chunk) {
      const int m = std::min(chunk, kPrompt - p);
      model_->Forward(prompt_.data() + p, m, cache, false, logits.data(), pool);
    }
    r.prompt_logits = logits;
    // Other sequences: prefilled, then each follows its own greedy choice.
    std::vector<std::unique_ptr<kv::KvCache>> caches;
    std::vector<std::vector<float>> other_logits;
    std::vector<int> other_next;
    for (int s = 0; s < others; ++s) {
      caches.push_back(NewCache(policy));
      other_logits.emplace_back(static_cast<size_t>(nv));
      model_->Forward(others_[s].data(), int(others_[s].size()), *caches.back(), false,
                      other_logits.back().data(), pool);
      other_next.push_back(Argmax(other_logits.back().data(), nv));
    }
    int next = Argmax(logits.data(), nv);
    for (int i = 0; i < kContinue; ++i) {
      r.tokens.push_back(next);
      if (others == 0) {
        model_->Forward(&next, 1, cache, false, logits.data(), pool);
      } else {
        // Our sequence second, so that its rows have others before (and after) them.
        std::vector<model::BatchItem> batch;
        for (int s = 0; s < others; ++s) {
          batch.push_back({other_next[s], *caches[s], other_logits[s].data()});
          if (s == 0) batch.push_back({next, cache, logits.data()});
        }
        model_->ForwardBatch(batch, pool);
        for (int s = 0; s < others; ++s) other_next[s] = Argmax(other_logits[s].data(), nv);
      }
      r.step_logits.insert(r.step_logits.end(), logits.begin(), logits.end());
      next = Argmax(logits.data(), nv);
    }
    return r;
  }

  void ExpectSame(const Generation& got, const Generation& want, const std::string& what) {
    ASSERT_EQ(got.prompt_logits.size(), want.prompt_logits.size());
    EXPECT_EQ(0, std::memcmp(got.prompt_logits.data(), want.prompt_logits.data(),
                             want.prompt_logits.size() * 4))
        << what << ": logits after the prompt differ";
    EXPECT_EQ(got.tokens, want.tokens) << what << ": greedy continuation differs";
    ASSERT_EQ(got.step_logits.size(), want.step_logits.size());
    EXPECT_EQ(0, std::memcmp(got.step_logits.data(), want.step_logits.data(),
                             want.step_logits.size() * 4))
        << what << ": continuation logits differ";
  }

  std::unique_ptr<model::Model> model_;
  std::vector<int> prompt_;
  std::vector<std::vector<int>> others_;
};

TEST_P(ModelInvariance, SameTokensWhateverTheSplitBatchCacheOrThreads) {
  // f16/f16 without sinks, or the default compressed cache.
  const runtime::KvPolicy policy =
      std::get<1>(GetParam()) ? runtime::DefaultKvPolicy() : runtime::KvPolicy{};
  {
    const std::string kv = policy.k_type + "/" + policy.v_type;
    auto ref_cache = NewCache(policy);
    const Generation want = Generate(*ref_cache, 0, 512, 2, 0, policy);
    for (int chunk : {1, 7, 64}) {
      auto cache = NewCache(policy);
      ExpectSame(Generate(*cache, 0, chunk, 2, 0, policy), want,
                 kv + " prompt in chunks of " + std::to_string(chunk));
    }
    {
      auto cache = NewCache(policy);
      ExpectSame(Generate(*cache, 0, 64, 1, 0, policy), want, kv + " on one thread");
    }
    for (int others : {1, 3}) {
      auto cache = NewCache(policy);
      ExpectSame(Generate(*cache, 0, 512, 2, others, policy), want,
                 kv + " decoded in a batch with " + std::to_string(others) + " others");
    }
    {
      // A prefix from an earlier run's cache: 450 prompt tokens in chunks of 256, copied and
      // cut back to the last point the copy holds exactly (at most 400), then the rest.
      auto earlier = NewCache(policy);
      kernels::ThreadPool pool(2);
      std::vector<float> logits(size_t(model_->info().n_vocab));
      for (int p = 0; p < 450; p += 256) {
        model_->Forward(prompt_.data() + p, std::min(256, 450 - p), *earlier, false,
                        logits.data(), pool);
      }
      auto copy = earlier->Clone();
      const int keep = copy->LosslessTruncationPoint(400);
      copy->Truncate(keep);
      ExpectSame(Generate(*copy, keep, 64, 2, 0, policy), want,
                 kv + " prefix of " + std::to_string(keep) + " tokens from a copied cache");
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Models, ModelInvariance, test::ModelsTimesKv(), test::ModelKvName());

}  // namespace
}  // namespace tqlm
