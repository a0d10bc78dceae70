// Turns next-token logits into a token: penalties over the recent history, then greedy
// (temperature <= 0) or temperature sampling restricted by top-k, top-p and min-p.
#pragma once

#include <cstdint>
#include <random>
#include <span>
#include <vector>

namespace tqlm::runtime {

struct SamplerParams {
  float temperature = 0.8f;
  int top_k = 40;            // 0: off
  float top_p = 0.95f;       // 1: off
  float min_p = 0.05f;       // 0: off
  float repeat_penalty = 1.0f;     // 1: off (llama.cpp's repeat penalty)
  float presence_penalty = 0.0f;   // OpenAI-style, subtracted once per seen token
  float frequency_penalty = 0.0f;  // OpenAI-style, subtracted per occurrence
  int penalty_last_n = 64;         // how much history the penalties look at
  uint64_t seed = 0xC0FFEE;
};

// A distribution over a few tokens: (token, probability), probabilities summing to 1.
using SparseDistribution = std::vector<std::pair<int, double>>;

class Sampler {
 public:
  explicit Sampler(const SamplerParams& params);
  // Picks the next token. `history` is the sequence so far (prompt and generated tokens).
  // `banned` tokens get probability 0 (used for min-tokens: end-of-generation is banned).
  int Sample(std::span<const float> logits, std::span<const int> history,
             std::span<const int> banned = {});
  // The distribution Sample draws from (greedy: the top token with probability 1).
  SparseDistribution Distribution(std::span<const float> logits, std::span<const int> history,
                                  std::span<const int> banned = {});
  // Speculative sampling of one position: a draft drew `proposed` from `draft`; the result is
  // distributed as Distribution(logits, ...) (spec_sampling.h), and is `proposed` exactly when
  // the proposal is accepted.
  int SampleSpeculative(std::span<const float> logits, std::span<const int> history,
                        std::span<const int> banned, const SparseDistribution& draft,
                        int proposed);

  const SamplerParams& params() const { return params_; }

 private:
  // Penalties, bans, then (temperature > 0) sorting, softmax, top-k, min-p and top-p: the kept
  // candidates are candidates_[0, keep) with unnormalised probabilities probs_[0, keep) summing
  // to *total. Greedy: keep 1, the top token.
  size_t Prepare(std::span<const float> logits, std::span<const int> history,
                 std::span<const int> banned, double* total);

  SamplerParams params_;
  std::mt19937_64 rng_;
  std::vector<std::pair<float, int>> candidates_;
  std::vector<double> probs_;
};

}  // namespace tqlm::runtime
