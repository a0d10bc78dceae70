// One sequence being generated: the model, its KV cache and the thread pool, plus the token
// history. Feeding a long prompt runs in chunks (batched prefill), so activations stay one
// chunk's worth and the cache can compress tokens as they arrive.
#pragma once

#include <functional>
#include <memory>
#include <span>
#include <vector>

#include "kernels/cpu/thread_pool.h"
#include "kv/kv_cache.h"
#include "model/model.h"
#include "runtime/kv_policy.h"

namespace tqlm::runtime {

struct SessionOptions {
  int n_ctx = 4096;     // 0: the model's training context
  int n_threads = 0;    // 0: all cores
  int batch = 256;      // prefill chunk, tokens
  KvPolicy kv;
};

class Session {
 public:
  Session(model::Model& model, const SessionOptions& options);

  // Runs `tokens` through the model after the current history, `batch` at a time, calling
  // progress(done, total) after each chunk. Returns the logits after the last token (or all
  // positions' logits when all_logits, [n][n_vocab]). Throws tqlm::Error if the context
  // would overflow.
  std::span<const float> Feed(std::span<const int> tokens, bool all_logits = false,
                              const std::function<void(int, int)>& progress = {});

  // Before the first Feed: the prompt's first `tokens` are its tool-defining head, kept full
  // precision as the policy's tools_head_max allows (see ResolveKvPolicy).
  void SetToolsHead(int tokens);

  // Forgets everything from position n on.
  void Rewind(int n);

  // An independent session holding the same tokens and cache (its own thread pool), e.g. to
  // decode several ways from one prefilled prompt (tqlm bench spec).
  std::unique_ptr<Session> Clone() const;

  const std::vector<int>& history() const { return history_; }
  int n_ctx() const { return n_ctx_; }
  int n_vocab() const { return model_.info().n_vocab; }
  model::Model& model() { return model_; }
  // The cache is created at the first Feed, when the prompt length (for a buffer given as a
  // fraction of the prompt) is known.
  kv::KvCache& cache();
  kernels::ThreadPool& pool() { return pool_; }

 private:
  void CreateCache(int prompt_tokens);

  Session(const Session& other);

  model::Model& model_;
  SessionOptions options_;
  KvPolicy policy_;
  int n_ctx_;
  int batch_;
  int tools_head_ = 0;
  kernels::ThreadPool pool_;
  std::unique_ptr<kv::KvCache> cache_;
  std::vector<int> history_;
  std::vector<float> logits_;
};

}  // namespace tqlm::runtime
