// Issue 28: the n-gram proposer and the adaptive proposal length.
#include <gtest/gtest.h>

#include <vector>

#include "runtime/ngram_pool.h"
#include "runtime/ngram_proposer.h"
#include "runtime/spec_controller.h"
#include "tqlm/error.h"

namespace tqlm::runtime {
namespace {

TEST(NgramPropose, ContinuesTheLatestLongestMatch) {
  //                          0  1  2  3  4  5  6  7  8  9 10 11
  const std::vector<int> ctx{5, 6, 7, 8, 9, 1, 6, 7, 2, 3, 6, 7};
  // Suffix "6 7" occurs at 1-2 (followed by 8 9 1) and 6-7 (followed by 2 3 6 7): the latest.
  EXPECT_EQ(NgramPropose(ctx, 2, 3, 3), (std::vector<int>{2, 3, 6}));
  // Longer suffix "3 6 7" occurs nowhere earlier; "1 6 7"... the 2-gram wins.
  EXPECT_EQ(NgramPropose(ctx, 2, 4, 10), (std::vector<int>{2, 3, 6, 7}));
  // A suffix found only with n = 1 when allowed.
  const std::vector<int> ctx2{1, 2, 3, 4, 9, 3};
  EXPECT_TRUE(NgramPropose(ctx2, 2, 3, 4).empty());
  EXPECT_EQ(NgramPropose(ctx2, 1, 3, 4), (std::vector<int>{4, 9, 3}));
  // The longest suffix is preferred over a later shorter one.
  const std::vector<int> ctx3{1, 2, 3, 4, 2, 3, 5, 1, 2, 3};
  EXPECT_EQ(NgramPropose(ctx3, 1, 3, 2), (std::vector<int>{4, 2}));
  EXPECT_TRUE(NgramPropose(ctx3, 1, 3, 0).empty());
  EXPECT_TRUE(NgramPropose({}, 1, 3, 4).empty());
  EXPECT_THROW(NgramPropose(ctx, 0, 3, 4), Error);
  EXPECT_THROW(NgramPropose(ctx, 3, 2, 4), Error);
}

TEST(NgramPool, ProposesFromFinishedSequencesWithinItsBytes) {
  NgramPool pool(1 << 20);
  EXPECT_TRUE(pool.Propose(std::vector<int>{1, 2}, 1, 3, 4).empty());
  pool.Add(std::vector<int>{7, 1, 2, 3, 4, 5, 6});
  pool.Add(std::vector<int>{9, 2, 3, 8, 8});
  // [.., 2, 3]: both sequences hold it; the newer one wins a tie...
  EXPECT_EQ(pool.Propose(std::vector<int>{0, 2, 3}, 1, 3, 4), (std::vector<int>{8, 8}));
  // ... and a longer match wins over a newer one.
  EXPECT_EQ(pool.Propose(std::vector<int>{1, 2, 3}, 1, 3, 2), (std::vector<int>{4, 5}));
  EXPECT_EQ(pool.Propose(std::vector<int>{1, 2, 3}, 1, 3, 0), std::vector<int>{});
  // Below n_min, or a last token that nothing follows: no proposal.
  EXPECT_TRUE(pool.Propose(std::vector<int>{0, 3}, 2, 3, 4).empty());
  EXPECT_TRUE(pool.Propose(std::vector<int>{6}, 1, 3, 4).empty());
  EXPECT_THROW(pool.Propose(std::vector<int>{1}, 2, 1, 4), Error);
  // Bounded: old sequences go first, a sequence larger than the pool is not kept.
  NgramPool small(600);
  for (int i = 0; i < 20; ++i) small.Add(std::vector<int>{100 + i, 1, 2, 3, i});
  EXPECT_LE(small.bytes(), size_t(600));
  EXPECT_GT(small.sequences(), 0u);
  EXPECT_LT(small.sequences(), 20u);
  EXPECT_EQ(small.Propose(std::vector<int>{2, 3}, 2, 2, 1), std::vector<int>{19});
  EXPECT_TRUE(small.Propose(std::vector<int>{100, 1}, 2, 2, 1).empty());  // dropped
  small.Add(std::vector<int>(1000, 5));
  EXPECT_TRUE(small.Propose(std::vector<int>{5, 5}, 2, 2, 1).empty());
  NgramPool off(0);
  off.Add(std::vector<int>{1, 2, 3});
  EXPECT_EQ(off.sequences(), 0u);
}

TEST(SpecController, FollowsAcceptanceAndCost) {
  SpecParams p;
  p.max_draft = 16;
  SpecController c(p);
  // Steps of 1 and 9 tokens cost 10 ms and 14 ms: cheap extra tokens.
  for (int i = 0; i < 5; ++i) c.Timed(1, 0.010), c.Timed(9, 0.014);
  EXPECT_NEAR(c.RelativeCost(9), 1.4, 1e-6);
  // Proposals always fully accepted: the longest proposal pays.
  for (int i = 0; i < 20; ++i) c.Scored(16, 16);
  EXPECT_GT(c.alpha(), 0.9);
  EXPECT_EQ(c.Length(16), 16);
  EXPECT_EQ(c.Length(3), 3);
  // Proposals always rejected at once: speculation turns itself off.
  for (int i = 0; i < 150; ++i) c.Scored(4, 0);
  EXPECT_LT(c.alpha(), 0.05);
  EXPECT_EQ(c.Length(16), 0);
  // ... except for a short probe now and then, less often while it does not pay.
  std::vector<int> probes;
  for (int i = 1; i < 200; ++i)
    if (c.Length(16) > 0) probes.push_back(i);
  ASSERT_EQ(probes.size(), 3u);
  EXPECT_EQ(probes[0], 15);        // the 16th idle step
  EXPECT_EQ(probes[1], 15 + 32);   // then twice as many
  EXPECT_EQ(probes[2], 15 + 32 + 64);
  // ... and comes back when they are right again (scored while off, for free).
  for (int i = 0; i < 40; ++i) c.Scored(4, 4);
  EXPECT_GT(c.Length(16), 0);
  // Prompt lookup (proposals scored while off): no probes while the acceptance alone keeps
  // speculation off, probes again once the cost is what does.
  p.mode = SpecMode::kNgram;
  SpecController n(p);
  EXPECT_EQ(n.Length(8), 0);  // nothing verified before a scored proposal says it pays
  n.Scored(8, 8);
  EXPECT_GT(n.Length(8), 0);
  for (int i = 0; i < 5; ++i) n.Timed(1, 0.010), n.Timed(9, 0.074);  // each extra token +80%
  for (int i = 0; i < 150; ++i) n.Scored(4, 0);
  int ngram_probes = 0;
  for (int i = 1; i < 200; ++i) ngram_probes += n.Length(16) > 0;
  EXPECT_EQ(ngram_probes, 0);
  for (int i = 0; i < 60; ++i) n.Scored(4, 2);  // alpha near 2/3: pays at the prior cost only
  EXPECT_EQ(n.Length(16), 0);
  ngram_probes = 0;
  for (int i = 1; i < 40; ++i) ngram_probes += n.Length(16) > 0;
  EXPECT_EQ(ngram_probes, 1);
  p.mode = SpecMode::kNone;
  // Expensive extra tokens (each as dear as a step of its own) never pay.
  SpecController d(p);
  for (int i = 0; i < 5; ++i) d.Timed(1, 0.010), d.Timed(5, 0.050);
  for (int i = 0; i < 20; ++i) d.Scored(4, 3);
  EXPECT_EQ(d.Length(16), 0);
  EXPECT_EQ(d.Length(2), 0);
  // Not adaptive: everything available, up to the maximum.
  p.adaptive = false;
  SpecController e(p);
  for (int i = 0; i < 40; ++i) e.Scored(4, 0);
  EXPECT_EQ(e.Length(20), 16);
  EXPECT_EQ(e.Length(5), 5);
}

}  // namespace
}  // namespace tqlm::runtime
