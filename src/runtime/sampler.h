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

class Sampler {
 public:
  explicit Sampler(const SamplerParams& params);
  // Picks the next token. `history` is the sequence so far (prompt and generated tokens).
  // `banned` tokens get probability 0 (used for min-tokens: end-of-generation is banned).
  int Sample(std::span<const float> logits, std::span<const int> history,
             std::span<const int> banned = {});

 private:
  SamplerParams params_;
  std::mt19937_64 rng_;
  std::vector<std::pair<float, int>> candidates_;
};

}  // namespace tqlm::runtime
