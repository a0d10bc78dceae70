// Teacher-forced logits of a real model against llama.cpp's (tests/data/model/*_golden.json,
// scripts/gen_model_golden.py), and against llama.cpp's own noise floor: the golden also holds
// llama.cpp's logits for the same tokens in a second, numerically different but equivalent
// configuration (f32 KV cache, flash attention, batches of 16). How far two llama.cpp runs are
// apart is the scale on which tqlm's distance from llama.cpp is judged.
#pragma once

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

namespace tqlm::testing {

struct GoldenLogits {
  std::vector<int> tokens, top1, noise_top1;
  std::vector<std::vector<int>> top8_ids;
  std::vector<std::vector<float>> top8_logit, noise_top8_logit;

  static GoldenLogits Load(const std::string& name) {
    std::ifstream in(std::string(TQLM_SOURCE_DIR) + "/tests/data/model/" + name);
    EXPECT_TRUE(in) << "golden file missing: " << name;
    GoldenLogits g;
    if (!in) return g;
    const nlohmann::json j = nlohmann::json::parse(in);
    g.tokens = j.at("tokens").get<std::vector<int>>();
    g.top1 = j.at("llama_cpp_top1").get<std::vector<int>>();
    for (const auto& pos : j.at("llama_cpp_top8")) {
      std::vector<int> ids;
      std::vector<float> logits;
      for (const auto& pair : pos) {
        ids.push_back(pair.at(0).get<int>());
        logits.push_back(pair.at(1).get<float>());
      }
      g.top8_ids.push_back(ids);
      g.top8_logit.push_back(logits);
    }
    g.noise_top1 = j.at("noise").at("top1").get<std::vector<int>>();
    g.noise_top8_logit = j.at("noise").at("top8_logit").get<std::vector<std::vector<float>>>();
    EXPECT_EQ(g.top1.size(), g.tokens.size());
    EXPECT_EQ(g.top8_ids.size(), g.tokens.size());
    EXPECT_EQ(g.noise_top1.size(), g.tokens.size());
    EXPECT_EQ(g.noise_top8_logit.size(), g.tokens.size());
    return g;
  }
};

// Agreement and logit distance over the positions scored, for tqlm and for llama.cpp's
// second configuration, both against llama.cpp's first.
struct GoldenComparison {
  int positions = 0;
  int agree = 0, noise_agree = 0;     // argmax equal to llama.cpp's top-1
  double sum_abs = 0, noise_sum_abs = 0;  // |Δ logit| over the 8 largest of llama.cpp
  double max_abs = 0, noise_max_abs = 0;
  double vs_noise_sum_abs = 0;  // |tqlm - llama.cpp's second run|
  int values = 0;

  // row: tqlm's logits at position i.
  void Add(const GoldenLogits& g, size_t i, const float* row, int n_vocab) {
    ++positions;
    agree += int(std::max_element(row, row + n_vocab) - row) == g.top1[i];
    noise_agree += g.noise_top1[i] == g.top1[i];
    for (size_t k = 0; k < g.top8_ids[i].size(); ++k) {
      const double d = std::fabs(double(row[g.top8_ids[i][k]]) - g.top8_logit[i][k]);
      const double n = std::fabs(double(g.noise_top8_logit[i][k]) - g.top8_logit[i][k]);
      sum_abs += d;
      noise_sum_abs += n;
      vs_noise_sum_abs += std::fabs(double(row[g.top8_ids[i][k]]) - g.noise_top8_logit[i][k]);
      max_abs = std::max(max_abs, d);
      noise_max_abs = std::max(noise_max_abs, n);
      ++values;
    }
  }
  double mean_abs() const { return sum_abs / values; }
  double noise_mean_abs() const { return noise_sum_abs / values; }

  void Print(const char* what) const {
    std::printf("[%s] top-1 agreement %d/%d (llama.cpp with itself %d/%d); top-8 logits mean |diff| "
                "%.4f, max %.4f (llama.cpp with itself %.4f, %.4f): %.2fx its noise floor\n",
                what, agree, positions, noise_agree, positions, mean_abs(), max_abs,
                noise_mean_abs(), noise_max_abs, mean_abs() / noise_mean_abs());
    std::printf("[%s] vs llama.cpp's second run: mean |diff| %.4f\n", what, vs_noise_sum_abs / values);
  }
};

// The bounds, on llama.cpp's own scale (each model test states its measurements):
//  - logits: mean |Δ| at most 1.5x llama.cpp's own mean |Δ| between its two runs (measured
//    1.02-1.10x), the largest |Δ| at most 2x llama.cpp's largest;
//  - top-1: tqlm may flip the near ties llama.cpp flips between its own runs, and as many
//    again: agreement >= llama.cpp's self-agreement - its disagreements.
// Two independent roundings of the same computation are each about the floor away from the
// other; a broken block (a misplaced norm, a RoPE pairing, a wrong weight-decoder scale)
// moves logits by whole units, many times the floor.
constexpr double kNoiseRatio = 1.5, kNoiseMaxRatio = 2.0;

inline void ExpectWithinNoiseFloor(const GoldenComparison& c) {
  EXPECT_LE(c.mean_abs(), kNoiseRatio * c.noise_mean_abs())
      << "mean |logit diff| " << c.mean_abs() << " vs llama.cpp's own " << c.noise_mean_abs();
  EXPECT_LE(c.max_abs, kNoiseMaxRatio * c.noise_max_abs)
      << "largest |logit diff| " << c.max_abs << " vs llama.cpp's own " << c.noise_max_abs;
  const int self_flips = c.positions - c.noise_agree;
  EXPECT_GE(c.agree, c.noise_agree - self_flips)
      << "top-1 agreement " << c.agree << " vs llama.cpp's own " << c.noise_agree;
}

}  // namespace tqlm::testing
