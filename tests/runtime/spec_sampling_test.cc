// Issue 28: speculative sampling keeps the target's distribution. On a small vocabulary, with a
// draft distribution q unlike the target's p (tokens p lacks, tokens q lacks, mass moved
// around), tokens drawn from q and passed through SpeculativeSample are distributed as p
// (Pearson's chi-square), and accepted as often as theory says (sum of min(p, q)). Fixed seeds:
// the test is deterministic, and its bounds are far from what a correct sampler reaches.
#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <random>
#include <vector>

#include "runtime/sampler.h"
#include "runtime/spec_sampling.h"

namespace tqlm::runtime {
namespace {

int Draw(const SparseDistribution& d, std::mt19937_64& rng) {
  double u = std::uniform_real_distribution<double>(0, 1)(rng);
  for (const auto& [t, p] : d) {
    u -= p;
    if (u <= 0) return t;
  }
  return d.back().first;
}

void ExpectDistributedAsP(const SparseDistribution& p, const SparseDistribution& q) {
  constexpr int kTrials = 200000;
  std::mt19937_64 draft_rng(11), target_rng(28);
  std::map<int, int> counts;
  int accepted = 0;
  for (int i = 0; i < kTrials; ++i) {
    const int x = Draw(q, draft_rng);
    const int y = SpeculativeSample(p, q, x, target_rng);
    ++counts[y];
    accepted += y == x;
  }
  double chi2 = 0;
  for (const auto& [t, pr] : p) {
    const double expected = pr * kTrials;
    const double diff = counts[t] - expected;
    chi2 += diff * diff / expected;
    counts.erase(t);
  }
  EXPECT_TRUE(counts.empty()) << "tokens outside p's support were produced";
  // Degrees of freedom |p| - 1 <= 7: P(chi2 > 30) < 1e-4 for a correct sampler.
  EXPECT_LT(chi2, 30.0);
  double overlap = 0;
  for (const auto& [t, pr] : p)
    for (const auto& [u, qr] : q)
      if (t == u) overlap += std::min(pr, qr);
  EXPECT_NEAR(double(accepted) / kTrials, overlap, 0.01);
}

TEST(SpeculativeSample, KeepsTheTargetDistribution) {
  const SparseDistribution p = {{0, 0.40}, {1, 0.25}, {2, 0.15}, {3, 0.10}, {5, 0.06}, {7, 0.04}};
  // Overlapping, with tokens outside p (4, 6) and p's tokens missing (5, 7).
  ExpectDistributedAsP(p, {{0, 0.10}, {1, 0.30}, {2, 0.30}, {3, 0.05}, {4, 0.15}, {6, 0.10}});
  // A point mass (greedy draft) on a likely and on an unlikely token.
  ExpectDistributedAsP(p, {{0, 1.0}});
  ExpectDistributedAsP(p, {{7, 1.0}});
  // The same distribution: everything accepted.
  ExpectDistributedAsP(p, p);
}

TEST(SpeculativeSample, ThroughTheSampler) {
  // Target and draft logits over 8 tokens, with the sampler's temperature and top-k.
  SamplerParams params;
  params.temperature = 0.7f;
  params.top_k = 6;
  params.top_p = 1.0f;
  params.min_p = 0.0f;
  Sampler target(params), draft(params);
  const std::vector<float> pl = {2.0f, 1.5f, 1.4f, 0.3f, -0.5f, 0.9f, -1.0f, 0.0f};
  const std::vector<float> ql = {0.5f, 2.5f, 0.1f, 1.3f, 1.0f, -0.2f, 0.4f, 0.0f};
  const SparseDistribution p = target.Distribution(pl, {});
  const SparseDistribution q = draft.Distribution(ql, {});
  ASSERT_EQ(p.size(), 6u);
  double sum = 0;
  for (const auto& [t, pr] : p) sum += pr;
  EXPECT_NEAR(sum, 1.0, 1e-12);
  ExpectDistributedAsP(p, q);
  // Greedy: the distribution is the top token alone.
  params.temperature = 0;
  Sampler greedy(params);
  EXPECT_EQ(greedy.Distribution(pl, {}), (SparseDistribution{{0, 1.0}}));
}

}  // namespace
}  // namespace tqlm::runtime
