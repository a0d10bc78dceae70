#include "runtime/session.h"

#include <fmt/format.h>

#include <algorithm>
#include <thread>

#include "tqlm/error.h"

namespace tqlm::runtime {
namespace {
int DefaultThreads() { return int(std::max(1u, std::thread::hardware_concurrency())); }
}  // namespace

Session::Session(model::Model& model, const SessionOptions& options)
    : model_(model),
      options_(options),
      policy_(options.kv),
      n_ctx_(options.n_ctx > 0 ? options.n_ctx : model.info().n_ctx_train),
      batch_(std::max(1, options.batch)),
      pool_(options.n_threads > 0 ? options.n_threads : DefaultThreads()) {
  ResolveKvPolicy(policy_, model.info().layers, 0);  // reject a bad policy up front
}

Session::Session(const Session& other)
    : model_(other.model_),
      options_(other.options_),
      policy_(other.policy_),
      n_ctx_(other.n_ctx_),
      batch_(other.batch_),
      tools_head_(other.tools_head_),
      pool_(options_.n_threads > 0 ? options_.n_threads : DefaultThreads()),
      cache_(other.cache_ ? other.cache_->Clone() : nullptr),
      history_(other.history_) {}

std::unique_ptr<Session> Session::Clone() const {
  return std::unique_ptr<Session>(new Session(*this));
}

void Session::CreateCache(int prompt_tokens) {
  const ResolvedKv kv = ResolveKvPolicy(policy_, model_.info().layers, prompt_tokens, tools_head_);
  cache_ = model_.CreateCache(MakeKvCacheConfig(model_.info(), kv, n_ctx_));
}

void Session::SetToolsHead(int tokens) {
  if (cache_) throw Error("SetToolsHead after the cache was made (the first Feed)");
  if (tokens < 0) throw Error("SetToolsHead: negative head length");
  tools_head_ = tokens;
}

kv::KvCache& Session::cache() {
  if (!cache_) CreateCache(0);
  return *cache_;
}

std::span<const float> Session::Feed(std::span<const int> tokens, bool all_logits,
                                     const std::function<void(int, int)>& progress) {
  const int n = int(tokens.size());
  if (n == 0) throw Error("nothing to feed: empty token list");
  const int have = int(history_.size());
  if (have + n > n_ctx_)
    throw Error(fmt::format("context overflow: {} tokens in context + {} new > context size {} "
                            "({} over; raise -c or shorten the prompt)",
                            have, n, n_ctx_, have + n - n_ctx_));
  if (!cache_) CreateCache(n);
  const int n_vocab = model_.info().n_vocab;
  logits_.resize(size_t(all_logits ? n : 1) * n_vocab);
  for (int done = 0; done < n;) {
    const int chunk = std::min(batch_, n - done);
    float* out = all_logits ? &logits_[size_t(done) * n_vocab] : logits_.data();
    model_.Forward(tokens.data() + done, chunk, *cache_, all_logits, out, pool_);
    history_.insert(history_.end(), tokens.begin() + done, tokens.begin() + done + chunk);
    done += chunk;
    if (progress) progress(done, n);
  }
  return logits_;
}

void Session::Rewind(int n) {
  n = std::clamp(n, 0, int(history_.size()));
  if (cache_) cache_->Truncate(n);
  history_.resize(n);
}

}  // namespace tqlm::runtime
