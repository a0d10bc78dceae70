#include "runtime/sampler.h"

#include "runtime/spec_sampling.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <unordered_map>

namespace tqlm::runtime {

Sampler::Sampler(const SamplerParams& params) : params_(params), rng_(params.seed) {}

size_t Sampler::Prepare(std::span<const float> logits, std::span<const int> history,
                        std::span<const int> banned, double* total_out) {
  const int n_vocab = int(logits.size());
  candidates_.resize(n_vocab);
  for (int i = 0; i < n_vocab; ++i) candidates_[i] = {logits[i], i};

  // Penalties look at the last penalty_last_n tokens only.
  const size_t last_n = std::min<size_t>(history.size(), size_t(std::max(0, params_.penalty_last_n)));
  if (last_n > 0 && (params_.repeat_penalty != 1.0f || params_.presence_penalty != 0.0f ||
                     params_.frequency_penalty != 0.0f)) {
    std::unordered_map<int, int> counts;
    for (size_t i = history.size() - last_n; i < history.size(); ++i) ++counts[history[i]];
    for (const auto& [tok, count] : counts) {
      if (tok < 0 || tok >= n_vocab) continue;
      float& l = candidates_[tok].first;
      l = l > 0 ? l / params_.repeat_penalty : l * params_.repeat_penalty;
      l -= params_.presence_penalty + params_.frequency_penalty * float(count);
    }
  }
  for (int tok : banned)
    if (tok >= 0 && tok < n_vocab) candidates_[tok].first = -std::numeric_limits<float>::infinity();

  auto by_logit = [](const auto& a, const auto& b) {
    return a.first > b.first || (a.first == b.first && a.second < b.second);
  };
  if (params_.temperature <= 0.0f) {
    candidates_[0] = *std::min_element(candidates_.begin(), candidates_.end(), by_logit);
    probs_.assign(1, 1.0);
    *total_out = 1.0;
    return 1;
  }

  size_t n = candidates_.size();
  if (params_.top_k > 0 && size_t(params_.top_k) < n) {
    std::partial_sort(candidates_.begin(), candidates_.begin() + params_.top_k, candidates_.end(),
                      by_logit);
    n = size_t(params_.top_k);
  } else {
    std::sort(candidates_.begin(), candidates_.end(), by_logit);
  }
  // Softmax over the survivors at the given temperature.
  const float max_logit = candidates_[0].first;
  std::vector<double>& probs = probs_;
  probs.assign(n, 0.0);
  double sum = 0;
  for (size_t i = 0; i < n; ++i) {
    probs[i] = std::exp(double(candidates_[i].first - max_logit) / params_.temperature);
    sum += probs[i];
  }
  for (auto& p : probs) p /= sum;
  // min-p: drop tokens below min_p × the top probability.
  size_t keep = n;
  if (params_.min_p > 0) {
    const double floor = params_.min_p * probs[0];
    keep = 1;
    while (keep < n && probs[keep] >= floor) ++keep;
  }
  // top-p: the smallest prefix whose mass reaches top_p.
  if (params_.top_p < 1.0f) {
    double mass = 0;
    size_t i = 0;
    for (; i < keep; ++i) {
      mass += probs[i];
      if (mass >= params_.top_p) break;
    }
    keep = std::min(keep, i + 1);
  }
  double total = 0;
  for (size_t i = 0; i < keep; ++i) total += probs[i];
  *total_out = total;
  return keep;
}

int Sampler::Sample(std::span<const float> logits, std::span<const int> history,
                    std::span<const int> banned) {
  double total = 0;
  const size_t keep = Prepare(logits, history, banned, &total);
  if (params_.temperature <= 0.0f) return candidates_[0].second;
  std::uniform_real_distribution<double> uniform(0.0, total);
  double r = uniform(rng_);
  for (size_t i = 0; i < keep; ++i) {
    r -= probs_[i];
    if (r <= 0) return candidates_[i].second;
  }
  return candidates_[keep - 1].second;
}

SparseDistribution Sampler::Distribution(std::span<const float> logits,
                                         std::span<const int> history,
                                         std::span<const int> banned) {
  double total = 0;
  const size_t keep = Prepare(logits, history, banned, &total);
  SparseDistribution out(keep);
  for (size_t i = 0; i < keep; ++i) out[i] = {candidates_[i].second, probs_[i] / total};
  return out;
}

int Sampler::SampleSpeculative(std::span<const float> logits, std::span<const int> history,
                               std::span<const int> banned, const SparseDistribution& draft,
                               int proposed) {
  return SpeculativeSample(Distribution(logits, history, banned), draft, proposed, rng_);
}

}  // namespace tqlm::runtime
