#include "runtime/kv_policy.h"

#include <gtest/gtest.h>

#include "tqlm/error.h"

namespace tqlm::runtime {
namespace {

TEST(KvPolicy, DefaultsApplyToEveryLayer) {
  KvPolicy p;
  p.k_type = "tq4";
  p.v_type = "tq3";
  const ResolvedKv r = ResolveKvPolicy(p, 4, 100);
  ASSERT_EQ(r.k_types.size(), 4u);
  for (int l = 0; l < 4; ++l) {
    EXPECT_EQ(r.k_types[l].Name(), "tq4");
    EXPECT_EQ(r.v_types[l].Name(), "tq3");
  }
}

TEST(KvPolicy, ProfileRulesAndPresets) {
  KvPolicy p;
  p.k_type = p.v_type = "tq3";
  p.profile = "edges2";
  ResolvedKv r = ResolveKvPolicy(p, 6, 0);
  const char* want[] = {"q8_0", "q8_0", "tq3", "tq3", "q8_0", "q8_0"};
  for (int l = 0; l < 6; ++l) EXPECT_EQ(r.k_types[l].Name(), want[l]) << l;
  p.profile = "*=f16/f16, 2-3=tq4/tq2, 5=q4_0/q8_0";
  r = ResolveKvPolicy(p, 6, 0);
  EXPECT_EQ(r.k_types[0].Name(), "f16");
  EXPECT_EQ(r.k_types[2].Name(), "tq4");
  EXPECT_EQ(r.v_types[3].Name(), "tq2");
  EXPECT_EQ(r.k_types[5].Name(), "q4_0");
  EXPECT_EQ(r.v_types[5].Name(), "q8_0");
}

TEST(KvPolicy, BadRulesAreClearErrors) {
  KvPolicy p;
  for (const char* bad : {"3=tq3", "x=tq3/tq3", "9=tq3/tq3", "1=tq3/bogus", "last:=f16/f16"}) {
    p.profile = bad;
    EXPECT_THROW(ResolveKvPolicy(p, 6, 0), Error) << bad;
  }
}

TEST(KvPolicy, BufferRatioWithFloor) {
  KvPolicy p;
  p.recent_ratio = 0.55;
  p.recent_floor = 128;
  EXPECT_EQ(ResolveKvPolicy(p, 1, 100).recent_tokens, 128);
  EXPECT_EQ(ResolveKvPolicy(p, 1, 1000).recent_tokens, 550);
  EXPECT_EQ(ResolveKvPolicy(p, 1, 1001).recent_tokens, 551);  // ceil
}

}  // namespace
}  // namespace tqlm::runtime
