#include "runtime/kv_policy.h"

#include <gtest/gtest.h>

#include "tqlm/error.h"

namespace tqlm::runtime {
namespace {

std::vector<kv::LayerGeometry> Layers(int n, int head_dim = 64) {
  return std::vector<kv::LayerGeometry>(size_t(n), kv::LayerGeometry{4, 2, head_dim, 0});
}

TEST(KvPolicy, DefaultsApplyToEveryLayer) {
  KvPolicy p;
  p.k_type = "tq4";
  p.v_type = "tq3";
  const ResolvedKv r = ResolveKvPolicy(p, Layers(4), 100);
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
  ResolvedKv r = ResolveKvPolicy(p, Layers(6), 0);
  const char* want[] = {"q8_0", "q8_0", "tq3", "tq3", "q8_0", "q8_0"};
  for (int l = 0; l < 6; ++l) EXPECT_EQ(r.k_types[l].Name(), want[l]) << l;
  p.profile = "*=f16/f16, 2-3=tq4/tq2, 5=q4_0/q8_0";
  r = ResolveKvPolicy(p, Layers(6), 0);
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
    EXPECT_THROW(ResolveKvPolicy(p, Layers(6), 0), Error) << bad;
  }
}

TEST(KvPolicy, BufferRatioWithFloor) {
  KvPolicy p;
  p.recent_ratio = 0.55;
  p.recent_floor = 128;
  EXPECT_EQ(ResolveKvPolicy(p, Layers(1), 100).recent_tokens, 128);
  EXPECT_EQ(ResolveKvPolicy(p, Layers(1), 1000).recent_tokens, 550);
  EXPECT_EQ(ResolveKvPolicy(p, Layers(1), 1001).recent_tokens, 551);  // ceil
}

// A prompt's tool-defining head becomes sinks, up to tools_head_max; the default has it on.
TEST(KvPolicy, ToolsHeadExtendsTheSinks) {
  KvPolicy p;
  p.sink_tokens = 4;
  EXPECT_EQ(ResolveKvPolicy(p, Layers(2), 1000, 300).sink_tokens, 4);  // off by default
  p.tools_head_max = 256;
  EXPECT_EQ(ResolveKvPolicy(p, Layers(2), 1000, 0).sink_tokens, 4);    // no tools
  EXPECT_EQ(ResolveKvPolicy(p, Layers(2), 1000, 2).sink_tokens, 4);    // never fewer sinks
  EXPECT_EQ(ResolveKvPolicy(p, Layers(2), 1000, 200).sink_tokens, 200);
  EXPECT_EQ(ResolveKvPolicy(p, Layers(2), 1000, 300).sink_tokens, 256);  // capped
  EXPECT_THROW(ResolveKvPolicy(p, Layers(2), 1000, -1), Error);
  p.tools_head_max = -1;
  EXPECT_THROW(ResolveKvPolicy(p, Layers(2), 1000, 0), Error);
  EXPECT_EQ(DefaultKvPolicy().tools_head_max, kDefaultToolsHeadMax);
  EXPECT_EQ(DefaultKvPolicy().sink_tokens, 4);
}

// "auto" without a calibration is the conservative rule, K8/V4 at every head size; per layer
// (so that a profile rule may say auto).
TEST(KvPolicy, AutoIsTheConservativeRule) {
  const KvPolicy d = DefaultKvPolicy();
  EXPECT_EQ(d.k_type, "auto");
  EXPECT_EQ(d.v_type, "auto");
  EXPECT_EQ(d.sink_tokens, 4);
  for (int head : {32, 64, 128, 256}) {
    const ResolvedKv r = ResolveKvPolicy(d, Layers(2, head), 0);
    EXPECT_EQ(r.Label(), "tq8/tq4") << head;
    EXPECT_EQ(r.sink_tokens, 4);
  }
  // One side fixed, the other auto; and auto inside a profile rule.
  KvPolicy p;
  p.k_type = "tq4";
  p.v_type = "auto";
  p.profile = "0=auto/f16";
  const ResolvedKv r = ResolveKvPolicy(p, Layers(3, 128), 0);
  EXPECT_EQ(r.k_types[0].Name(), "tq8");
  EXPECT_EQ(r.v_types[0].Name(), "f16");
  EXPECT_EQ(r.k_types[1].Name(), "tq4");
  EXPECT_EQ(r.v_types[1].Name(), "tq4");
  EXPECT_EQ(r.Label(), "tq8/f16 (per-layer)");
}

TEST(KvPolicy, ConcreteNamesWhereAutoIsOneType) {
  KvPolicy c = ConcreteKvPolicy(DefaultKvPolicy(), Layers(4, 64));
  EXPECT_EQ(c.k_type, "tq8");
  EXPECT_EQ(c.v_type, "tq4");
  std::vector<kv::LayerGeometry> mixed = Layers(2, 128);
  mixed[0].head_dim = 64;
  c = ConcreteKvPolicy(DefaultKvPolicy(), mixed);
  EXPECT_EQ(c.k_type, "tq8");  // one type on every layer, whatever the head sizes
  KvPolicy fixed;
  fixed.k_type = "q8_0";
  EXPECT_EQ(ConcreteKvPolicy(fixed, mixed).k_type, "q8_0");
}

TEST(KvPolicy, UnknownTypesRejectedWithoutLayers) {
  KvPolicy p;
  p.k_type = "tq9";
  EXPECT_THROW(ResolveKvPolicy(p, {}, 0), Error);
  p.k_type = "auto";
  EXPECT_NO_THROW(ResolveKvPolicy(p, {}, 0));
}

}  // namespace
}  // namespace tqlm::runtime
