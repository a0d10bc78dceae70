#include "runtime/token_stream.h"

#include <algorithm>

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

TokenStream::Step TokenStream::Next(std::span<const float> logits,
                                    std::span<const int> history) {
  Step step;
  if (!finish_reason_.empty()) {
    step.done = true;
    return step;
  }
  const std::vector<int>& eog = tok_.end_of_generation_ids();
  const bool allow_end = generated_ >= params_.min_tokens;
  const int id = sampler_.Sample(logits, history, allow_end ? std::span<const int>() : eog);
  ++generated_;
  if (tok_.IsEndOfGeneration(id)) {
    step.text = Release(true);
    step.done = true;
    finish_reason_ = "stop";
    return step;
  }
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
