// KV configuration lists for sweeps: parsing onto runtime::KvPolicy, canonical names, errors,
// and bits per value from the cache's block layouts.
#include <gtest/gtest.h>

#include "eval/kv_configs.h"
#include "kv/block_format.h"
#include "tqlm/error.h"

namespace tqlm::eval {
namespace {

model::ModelInfo Info(int layers, int kv_heads, int head_dim) {
  model::ModelInfo info;
  info.n_layer = layers;
  for (int i = 0; i < layers; ++i) info.layers.push_back({kv_heads * 3, kv_heads, head_dim, 0});
  return info;
}

TEST(EvalKvConfigs, ParsesTypesAndOptions) {
  runtime::KvPolicy base;
  base.sink_tokens = 2;  // flags supply what an entry leaves out
  const auto c = ParseKvConfigs(
      "f16/f16, tq4/tq3 ,tq3/tq3+s=4+b=128,tq3/tq2+r=0.25+floor=64,q8_0/q8_0+p=edges2,"
      "tq3/tq3+p=first:1=q8_0/q8_0;last:1=tq8/tq8",
      base, Info(30, 3, 64).layers);
  ASSERT_EQ(c.size(), 6u);
  EXPECT_EQ(c[0].name, "f16/f16+s=2");
  EXPECT_EQ(c[1].policy.k_type, "tq4");
  EXPECT_EQ(c[1].policy.v_type, "tq3");
  EXPECT_EQ(c[2].policy.sink_tokens, 4);
  EXPECT_EQ(c[2].policy.recent_tokens, 128);
  EXPECT_EQ(c[2].name, "tq3/tq3+s=4+b=128");
  EXPECT_DOUBLE_EQ(c[3].policy.recent_ratio, 0.25);
  EXPECT_EQ(c[3].policy.recent_floor, 64);
  EXPECT_EQ(c[4].policy.profile, "edges2");
  EXPECT_EQ(c[5].policy.profile, "first:1=q8_0/q8_0,last:1=tq8/tq8");
  EXPECT_EQ(c[5].name, "tq3/tq3+s=2+p=first:1=q8_0/q8_0;last:1=tq8/tq8");
  // The policy is the one `tqlm run` resolves: profile rules apply per layer.
  const runtime::ResolvedKv r = runtime::ResolveKvPolicy(c[5].policy, Info(30, 3, 64).layers, 0);
  EXPECT_EQ(r.k_types[0].Name(), "q8_0");
  EXPECT_EQ(r.k_types[1].Name(), "tq3");
  EXPECT_EQ(r.v_types[29].Name(), "tq8");
}

// +th=N keeps a tool-defining head full precision; only a policy with it on carries the field
// in its JSON, so rows recorded before it existed keep their hashes.
TEST(EvalKvConfigs, ToolsHeadOption) {
  const auto c = ParseKvConfigs("tq3/tq2+s=4+th=2048,tq3/tq2+s=4", runtime::KvPolicy{},
                                Info(2, 2, 128).layers);
  ASSERT_EQ(c.size(), 2u);
  EXPECT_EQ(c[0].name, "tq3/tq2+s=4+th=2048");
  EXPECT_EQ(c[0].policy.tools_head_max, 2048);
  EXPECT_EQ(KvPolicyJson(c[0].policy)["tools_head_max"], 2048);
  EXPECT_FALSE(KvPolicyJson(c[1].policy).contains("tools_head_max"));
  EXPECT_THROW(ParseKvConfigs("tq3/tq2+th=-1", runtime::KvPolicy{}, Info(2, 2, 128).layers), Error);
}

// "auto" entries name what they resolve to on the model's layers; one that duplicates an
// entry listed beside it is dropped (not an error), since which it duplicates depends on the
// model (and its calibration).
TEST(EvalKvConfigs, AutoResolvesPerModel) {
  const runtime::KvPolicy base;
  auto c = ParseKvConfigs("tq3/tq2+s=4,auto/auto+s=4", base, Info(4, 2, 64).layers);
  ASSERT_EQ(c.size(), 2u);
  EXPECT_EQ(c[1].name, "tq8/tq4+s=4");
  EXPECT_EQ(c[1].policy.k_type, "tq8");
  c = ParseKvConfigs("tq8/tq4+s=4,auto/auto+s=4", base, Info(4, 2, 128).layers);
  ASSERT_EQ(c.size(), 1u);
  EXPECT_EQ(c[0].name, "tq8/tq4+s=4");
  EXPECT_THROW(ParseKvConfigs("tq3/tq2,tq3/tq2", base, Info(4, 2, 128).layers), Error);
  // With a calibration, auto/auto entries take its types and profile.
  runtime::KvPolicy calibrated;
  calibrated.k_type = "tq4";
  calibrated.v_type = "tq3";
  calibrated.profile = "0=tq8/tq4";
  c = ParseKvConfigs("auto/auto+s=4,auto/tq2", base, Info(4, 2, 128).layers, &calibrated);
  ASSERT_EQ(c.size(), 2u);
  EXPECT_EQ(c[0].name, "tq4/tq3+s=4+p=0=tq8/tq4");
  EXPECT_EQ(c[0].policy.sink_tokens, 4);
  EXPECT_EQ(c[1].name, "tq8/tq2");  // only auto/auto is the calibrated policy
}

TEST(EvalKvConfigs, RejectsBadEntries) {
  const runtime::KvPolicy base;
  for (const char* bad : {"tq3", "tq3/", "tq9/tq3", "tq3/tq3+s=-1", "tq3/tq3+x=1", "tq3/tq3+s",
                          "tq3/tq3+p=40=q8_0/q8_0", "f16/f16,f16/f16", "", " , "}) {
    EXPECT_THROW(ParseKvConfigs(bad, base, Info(30, 3, 64).layers), Error) << bad;
  }
}

// tq8 changed layout (SIMD blocks, centered keys): its rows name the layout, and rows made
// before are not current; rows of other types keep their hashes.
TEST(EvalKvConfigs, Tq8RowsNameTheirLayout) {
  runtime::KvPolicy p;
  p.k_type = "tq4", p.v_type = "tq3";
  nlohmann::json j = KvPolicyJson(p);
  EXPECT_FALSE(j.contains("tq8_layout"));
  EXPECT_TRUE(KvJsonCurrent(j));
  for (const char* k : {"tq8", "tq4"}) {
    p.k_type = k;
    p.profile = std::string(k) == "tq4" ? "edges2-tq8" : "";
    j = KvPolicyJson(p);
    ASSERT_TRUE(j.contains("tq8_layout")) << k;
    EXPECT_TRUE(KvJsonCurrent(j));
    j.erase("tq8_layout");  // as rows recorded before the change
    EXPECT_FALSE(KvJsonCurrent(j)) << k;
  }
  p.k_type = "tq8p", p.profile = "";
  EXPECT_FALSE(KvPolicyJson(p).contains("tq8_layout"));  // prod keeps the codec layout
}

TEST(EvalKvConfigs, BitsPerValueFromBlockLayouts) {
  const model::ModelInfo info = Info(4, 2, 64);
  runtime::KvPolicy p;
  EXPECT_DOUBLE_EQ(FormatBitsPerValue(info, p), 16.0);
  p.k_type = p.v_type = "q8_0";
  EXPECT_DOUBLE_EQ(FormatBitsPerValue(info, p), 8.5);  // 34 bytes per 32 values
  p.k_type = p.v_type = "q4_0";
  EXPECT_DOUBLE_EQ(FormatBitsPerValue(info, p), 4.5);
  // TurboQuant: whatever the layout allocates, averaged over K and V.
  p.k_type = "tq4", p.v_type = "tq3";
  const auto kb = kv::MakeBlockFormat(kv::KvType::Parse("tq4"), 64, kv::TensorRole::kKey)->block_bytes();
  const auto vb = kv::MakeBlockFormat(kv::KvType::Parse("tq3"), 64, kv::TensorRole::kValue)->block_bytes();
  EXPECT_DOUBLE_EQ(FormatBitsPerValue(info, p), 8.0 * double(kb + vb) / (2 * 64 * 64));
  EXPECT_GT(FormatBitsPerValue(info, p), 3.5);
  EXPECT_LT(FormatBitsPerValue(info, p), 4.0);
  // A profile mixes layers: 1 of 4 layers at q8_0 K and V.
  p.profile = "0=q8_0/q8_0";
  EXPECT_NEAR(FormatBitsPerValue(info, p), 0.25 * 8.5 + 0.75 * 8.0 * double(kb + vb) / (2 * 64 * 64),
              1e-12);
}

}  // namespace
}  // namespace tqlm::eval
