// Summaries of results rows: the Pareto table of eval ppl (sums over windows, ΔPPL against
// the same engine's f16 run over the same windows, Pareto front) and the NIAH grids.
#include <gtest/gtest.h>

#include <cmath>

#include "eval/niah_table.h"
#include "eval/ppl_table.h"

namespace tqlm::eval {
namespace {

nlohmann::json PplRow(const std::string& engine, const std::string& kv, int w, double nll,
                      double kl, int top1, double bits) {
  return {{"hash", engine + kv + std::to_string(w)},
          {"config", {{"task", "ppl"}, {"engine", engine}, {"model_sha256", "m"},
                      {"text_sha256", "t"}, {"ctx", 64}, {"window", w}, {"kv_name", kv}}},
          {"scored", 10}, {"nll_sum", nll}, {"kl_sum", kl}, {"kl_max", kl / 2},
          {"top1_ref", top1}, {"top1_text", 5}, {"bits_per_value", bits},
          {"effective_bits", bits + 1}, {"wall_seconds", 1.0}};
}

TEST(EvalTables, PplSummaryAndParetoFront) {
  std::vector<nlohmann::json> rows;
  for (int w = 0; w < 2; ++w) {
    rows.push_back(PplRow("tqlm", "f16/f16", w, 20, 0, 10, 16));
    rows.push_back(PplRow("tqlm", "tq4/tq3", w, 21, 0.2, 9, 3.6));
    rows.push_back(PplRow("tqlm", "q4_0/q4_0", w, 22, 0.4, 8, 4.5));  // dominated by tq4/tq3
    rows.push_back(PplRow("llama.cpp", "f16/f16", w, 20.5, 0, 10, 16));
  }
  rows.push_back(PplRow("tqlm", "tq3/tq3", 1, 23, 0.5, 7, 3.1));  // only window 1
  nlohmann::json other = PplRow("tqlm", "tq3/tq3", 0, 99, 9, 0, 3.1);
  other["config"]["ctx"] = 128;  // another context: not in this table
  rows.push_back(other);
  const auto t = SummarizePpl(rows, "m", "t", 64);
  ASSERT_EQ(t.size(), 5u);
  EXPECT_EQ(t[0].engine, "tqlm");
  EXPECT_EQ(t[0].kv_name, "f16/f16");
  EXPECT_NEAR(t[0].perplexity, std::exp(40.0 / 20), 1e-9);
  const PplSummary* tq43 = nullptr;
  const PplSummary* q4 = nullptr;
  const PplSummary* tq33 = nullptr;
  for (const auto& s : t) {
    if (s.kv_name == "tq4/tq3") tq43 = &s;
    if (s.kv_name == "q4_0/q4_0") q4 = &s;
    if (s.kv_name == "tq3/tq3") tq33 = &s;
  }
  ASSERT_TRUE(tq43 && q4 && tq33);
  EXPECT_NEAR(tq43->mean_kl, 0.4 / 20, 1e-12);
  EXPECT_NEAR(tq43->top1_ref, 18.0 / 20, 1e-12);
  EXPECT_NEAR(tq43->delta_ppl, std::exp(42.0 / 20) / std::exp(40.0 / 20) - 1, 1e-12);
  EXPECT_NEAR(tq43->effective_bits, 4.6, 1e-12);
  EXPECT_TRUE(tq43->pareto);
  EXPECT_FALSE(q4->pareto);
  EXPECT_TRUE(tq33->pareto);  // fewest bits
  EXPECT_EQ(tq33->windows, 1);
  // Its ΔPPL is against f16 over window 1 only.
  EXPECT_NEAR(tq33->delta_ppl, std::exp(23.0 / 10) / std::exp(20.0 / 10) - 1, 1e-12);
  EXPECT_EQ(t.back().engine, "llama.cpp");
  const std::string md = PplMarkdownTable(t);
  EXPECT_NE(md.find("| tqlm | tq4/tq3 | 3.600 |"), std::string::npos) << md;
}

TEST(EvalTables, NiahGridAndDiffAgainstF16) {
  std::vector<nlohmann::json> rows;
  auto row = [&](const std::string& kv, int len, double depth, bool ok) {
    rows.push_back({{"hash", kv + std::to_string(len) + std::to_string(depth) + std::to_string(ok)},
                    {"config", {{"task", "niah"}, {"model_sha256", "m"}, {"kv_name", kv},
                                {"length", len}, {"depth", depth}}},
                    {"correct", ok}});
  };
  for (int len : {1024, 2048})
    for (double d : {0.1, 0.5}) {
      row("tq3/tq3", len, d, !(len == 2048 && d == 0.5));
      row("f16/f16", len, d, true);
    }
  const auto g = SummarizeNiah(rows, "m");
  ASSERT_EQ(g.size(), 2u);
  EXPECT_EQ(g[0].kv_name, "f16/f16");
  EXPECT_EQ(g[1].passed(), 3);
  EXPECT_EQ(g[1].trials(), 4);
  EXPECT_EQ(g[1].lengths, (std::vector<int>{1024, 2048}));
  const std::string md = NiahMarkdown(g);
  EXPECT_NE(md.find("4 cells compared, 1 lost, 0 gained (length 2048 depth 0.5: -100%)"),
            std::string::npos)
      << md;
  EXPECT_NE(md.find("| 2048 | 1/1 | 0/1 |"), std::string::npos) << md;
  EXPECT_TRUE(SummarizeNiah(rows, "other").empty());
}

}  // namespace
}  // namespace tqlm::eval
