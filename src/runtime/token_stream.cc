#include "runtime/token_stream.h"

#include <algorithm>
#include <cmath>

namespace tqlm::runtime {

TokenStream::TokenStream(const tokenizer::Tokenizer& tok, const GenerateParams& params, int room)
    : tok_(tok), params_(params), sampler_(params.sampler), decoder_(tok) {
  room = std::max(0, room);
  limit_ = params.max_tokens < 0 ? room : std::min(params.max_tokens, room);
  if (limit_ == 0) finish_reason_ = "length";
}

std::string TokenStream::Release(bool final_piece) {
  size_t safe;
  if (final_piece) {
    if (!stop_hit_) text_ += decoder_.Flush();
    safe = text_.size();
  } else {
    safe = StopSafePrefix(text_, params_.stop);
  }
  std::string out;
  if (safe > emitted_) out = text_.substr(emitted_, safe - emitted_);
  emitted_ = std::max(emitted_, safe);
  return out;
}

namespace {

TokenLogprob LogprobOf(std::span<const float> logits, int token, int top) {
  float mx = logits[0];
  for (float l : logits) mx = std::max(mx, l);
  double sum = 0;
  for (float l : logits) sum += std::exp(double(l) - mx);
  const double lse = double(mx) + std::log(sum);
  TokenLogprob out;
  out.token = token;
  out.logprob = float(double(logits[size_t(token)]) - lse);
  std::vector<int> idx(logits.size());
  for (size_t i = 0; i < idx.size(); ++i) idx[i] = int(i);
  top = std::min<int>(top, int(idx.size()));
  std::partial_sort(idx.begin(), idx.begin() + top, idx.end(), [&](int a, int b) {
    return logits[size_t(a)] > logits[size_t(b)] || (logits[size_t(a)] == logits[size_t(b)] && a < b);
  });
  for (int i = 0; i < top; ++i)
    out.top.emplace_back(idx[size_t(i)], float(double(logits[size_t(idx[size_t(i)])]) - lse));
  return out;
}

}  // namespace

TokenStream::Step TokenStream::Next(std::span<const float> logits,
                                    std::span<const int> history,
                                    const SparseDistribution* draft, int proposed) {
  Step step;
  if (!finish_reason_.empty()) {
    step.done = true;
    return step;
  }
  const std::vector<int>& eog = tok_.end_of_generation_ids();
  const bool allow_end = generated_ >= params_.min_tokens;
  const std::span<const int> banned = allow_end ? std::span<const int>() : eog;
  const int id = draft ? sampler_.SampleSpeculative(logits, history, banned, *draft, proposed)
                       : sampler_.Sample(logits, history, banned);
  ++generated_;
  if (tok_.IsEndOfGeneration(id)) {
    step.text = Release(true);
    step.done = true;
    finish_reason_ = "stop";
    return step;
  }
  if (params_.top_logprobs >= 0) step.logprob = LogprobOf(logits, id, params_.top_logprobs);
  text_ += decoder_.Push(id);
  for (const std::string& stop : params_.stop) {
    if (stop.empty()) continue;
    const size_t from = emitted_ > stop.size() ? emitted_ - stop.size() : 0;
    const size_t at = text_.find(stop, from);
    if (at != std::string::npos) {
      text_.resize(at);
      stop_hit_ = true;
    }
  }
  if (stop_hit_ || generated_ >= limit_) {
    step.text = Release(true);
    step.done = true;
    finish_reason_ = stop_hit_ ? "stop" : "length";
    return step;
  }
  step.text = Release(false);
  step.token = id;
  return step;
}

std::string TokenStream::Cancel() {
  if (!finish_reason_.empty()) return "";
  finish_reason_ = "cancelled";
  return Release(true);
}

}  // namespace tqlm::runtime
