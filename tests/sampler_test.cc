#include "runtime/sampler.h"

#include <gtest/gtest.h>

#include <map>
#include <vector>

#include "runtime/stop_strings.h"

namespace tqlm::runtime {
namespace {

TEST(Sampler, GreedyPicksArgmaxAndLowestIdOnTies) {
  SamplerParams p;
  p.temperature = 0;
  Sampler s(p);
  std::vector<float> logits = {0.1f, 2.0f, -1.0f, 2.0f};
  EXPECT_EQ(s.Sample(logits, {}), 1);
}

TEST(Sampler, RepeatPenaltyDemotesSeenTokens) {
  SamplerParams p;
  p.temperature = 0;
  p.repeat_penalty = 2.0f;
  Sampler s(p);
  std::vector<float> logits = {1.0f, 1.5f};
  std::vector<int> history = {1};
  EXPECT_EQ(s.Sample(logits, history), 0);  // 1.5 / 2 < 1.0
}

TEST(Sampler, FrequencyAndPresencePenalties) {
  SamplerParams p;
  p.temperature = 0;
  p.frequency_penalty = 0.4f;
  Sampler s(p);
  std::vector<float> logits = {1.0f, 1.5f};
  std::vector<int> once = {1};
  EXPECT_EQ(s.Sample(logits, once), 1);   // 1.5 - 0.4 > 1.0
  std::vector<int> twice = {1, 1};
  EXPECT_EQ(s.Sample(logits, twice), 0);  // 1.5 - 0.8 < 1.0
}

TEST(Sampler, BannedTokensAreNeverChosen) {
  SamplerParams p;
  p.temperature = 0;
  Sampler s(p);
  std::vector<float> logits = {0.0f, 5.0f};
  std::vector<int> banned = {1};
  EXPECT_EQ(s.Sample(logits, {}, banned), 0);
}

TEST(Sampler, TopKOneIsGreedy) {
  SamplerParams p;
  p.temperature = 1.0f;
  p.top_k = 1;
  Sampler s(p);
  std::vector<float> logits = {0.0f, 0.1f, 0.05f};
  for (int i = 0; i < 50; ++i) EXPECT_EQ(s.Sample(logits, {}), 1);
}

TEST(Sampler, MinPRemovesUnlikelyTokens) {
  SamplerParams p;
  p.temperature = 1.0f;
  p.top_k = 0;
  p.top_p = 1.0f;
  p.min_p = 0.5f;  // token 2 has e^-3 ≈ 0.05 of the top probability
  Sampler s(p);
  std::vector<float> logits = {0.0f, 0.0f, -3.0f};
  for (int i = 0; i < 200; ++i) EXPECT_NE(s.Sample(logits, {}), 2);
}

TEST(Sampler, TemperatureSamplingFollowsTheDistribution) {
  SamplerParams p;
  p.temperature = 1.0f;
  p.top_k = 0;
  p.top_p = 1.0f;
  p.min_p = 0.0f;
  p.seed = 7;
  Sampler s(p);
  std::vector<float> logits = {0.0f, std::log(3.0f)};  // p = 0.25, 0.75
  std::map<int, int> counts;
  const int n = 4000;
  for (int i = 0; i < n; ++i) ++counts[s.Sample(logits, {})];
  // 0.75 ± 5 standard deviations (sd = sqrt(0.1875 / 4000) ≈ 0.0068)
  EXPECT_NEAR(counts[1] / double(n), 0.75, 0.035);
}

TEST(Sampler, SameSeedSameSequence) {
  SamplerParams p;
  p.temperature = 1.0f;
  p.seed = 42;
  Sampler a(p), b(p);
  std::vector<float> logits = {0.1f, 0.2f, 0.3f, 0.4f, 0.0f};
  for (int i = 0; i < 100; ++i) EXPECT_EQ(a.Sample(logits, {}), b.Sample(logits, {}));
}

TEST(StopStrings, HoldsBackPossibleStopPrefix) {
  std::vector<std::string> stop = {"</end>"};
  EXPECT_EQ(StopSafePrefix("hello </e", stop), 6u);
  EXPECT_EQ(StopSafePrefix("hello", stop), 5u);
  EXPECT_EQ(StopSafePrefix("hello <", stop), 6u);
  EXPECT_EQ(StopSafePrefix("abc", {}), 3u);
}

}  // namespace
}  // namespace tqlm::runtime
