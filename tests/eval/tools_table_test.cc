// Summaries of `tqlm eval tools` rows: cliff positions, the reference line, the leaderboard
// order and the Markdown/CSV/JSONL writers, on hand-written rows.
#include <gtest/gtest.h>

#include "eval/tools_table.h"

namespace tqlm::eval {
namespace {

nlohmann::json Row(const std::string& kv, int length, double ratio, const std::string& verdict,
                   double used = 50, bool reference = false, int seed = 1) {
  return {{"hash", kv + std::to_string(length) + std::to_string(ratio) + std::to_string(seed)},
          {"config",
           {{"task", "tools"},
            {"model_sha256", "abc"},
            {"model", "m.gguf"},
            {"kv_name", kv},
            {"length", length},
            {"seed", seed},
            {"ratio", ratio},
            {"reference", reference}}},
          {"verdict", verdict},
          {"bits_per_value", reference ? 16.0 : 3.0},
          {"kv_bytes_used", used},
          {"kv_bytes_f16", 100}};
}

std::vector<nlohmann::json> Rows() {
  return {
      Row("tq3/tq2", 512, 0.0, "COLLAPSE", 20), Row("tq3/tq2", 512, 0.5, "PASS", 60),
      // A pass below a failure does not move the cliff: every larger ratio must pass.
      Row("tq3/tq2", 512, 0.75, "WRONG_ARGS", 80), Row("tq3/tq2", 512, 1.0, "PASS", 100),
      Row("tq3/tq2", 1024, 0.0, "PASS", 20), Row("tq3/tq2", 1024, 0.5, "PASS", 60),
      Row("tq3/tq2", 1024, 0.75, "PASS", 80), Row("tq3/tq2", 1024, 1.0, "PASS", 100),
      Row("tq4/tq3", 512, 0.0, "PASS", 25), Row("tq4/tq3", 512, 0.5, "PASS", 62),
      Row("tq4/tq3", 512, 0.75, "PASS", 81), Row("tq4/tq3", 512, 1.0, "PASS", 100),
      Row("tq4/tq3", 1024, 0.0, "HALLUCINATION", 25), Row("tq4/tq3", 1024, 0.5, "PASS", 62),
      Row("tq4/tq3", 1024, 0.75, "PASS", 81), Row("tq4/tq3", 1024, 1.0, "PASS", 100),
      Row("tq2/tq2", 512, 0.0, "PASS", 10), Row("tq2/tq2", 512, 1.0, "NO_CALL", 100),
      Row("tq2/tq2", 1024, 1.0, "PASS", 100),
      Row("f16/f16", 512, 0.0, "PASS", 100, true), Row("f16/f16", 1024, 0.0, "PASS", 100, true),
      // Another model's row is not summarized.
      [] {
        nlohmann::json r = Row("tq4/tq3", 512, 0.25, "COLLAPSE");
        r["config"]["model_sha256"] = "other";
        return r;
      }(),
  };
}

const ToolsLine& Line(const ToolsSummary& s, const std::string& kv, int length) {
  for (const ToolsLine& l : s.lines)
    if (l.kv_name == kv && l.length == length) return l;
  throw std::runtime_error("no line " + kv);
}

TEST(ToolsTable, CliffIsTheSmallestRatioFromWhichAllLargerPass) {
  const ToolsSummary s = SummarizeTools(Rows(), "abc");
  EXPECT_EQ(s.lengths, (std::vector<int>{512, 1024}));
  EXPECT_EQ(s.ratios, (std::vector<double>{0.0, 0.5, 0.75, 1.0}));  // 0.25 was another model's
  EXPECT_EQ(s.lines.front().kv_name, "f16/f16");                      // references first
  EXPECT_EQ(Line(s, "tq3/tq2", 512).cliff(), 1.0);
  EXPECT_EQ(Line(s, "tq3/tq2", 1024).cliff(), 0.0);
  EXPECT_EQ(Line(s, "tq4/tq3", 1024).cliff(), 0.5);
  EXPECT_FALSE(Line(s, "tq2/tq2", 512).cliff().has_value());
  EXPECT_EQ(Line(s, "f16/f16", 512).cliff(), 0.0);
}

TEST(ToolsTable, LeaderboardNeedsEveryLengthAndSortsByCacheSize) {
  const std::vector<ToolsLeader> lb = ToolsLeaderboard(SummarizeTools(Rows(), "abc"));
  // tq2/tq2 never passes at its largest ratio at 512: left out.
  ASSERT_EQ(lb.size(), 3u);
  EXPECT_EQ(lb[0].kv_name, "tq4/tq3");  // ratio max(0, 0.5) = 0.5, 62% of f16
  EXPECT_DOUBLE_EQ(lb[0].ratio, 0.5);
  EXPECT_DOUBLE_EQ(lb[0].kv_fraction, 0.62);
  EXPECT_EQ(lb[1].kv_name, "f16/f16");
  EXPECT_TRUE(lb[1].reference);
  EXPECT_EQ(lb[2].kv_name, "tq3/tq2");  // needs ratio 1.0 at 512
  EXPECT_DOUBLE_EQ(lb[2].ratio, 1.0);
  const std::string csv = ToolsLeaderboardCsv(lb, "m.gguf");
  EXPECT_EQ(csv.substr(0, csv.find('\n')),
            "model,kv,buffer_ratio,bits_per_value,kv_fraction_of_f16,kv_fraction_at_longest");
  EXPECT_NE(csv.find("m.gguf,tq4/tq3,0.5,3.0000,0.6200,0.6200"), std::string::npos) << csv;
}

TEST(ToolsTable, MarkdownAndJsonl) {
  const ToolsSummary s = SummarizeTools(Rows(), "abc");
  const std::string md = ToolsMarkdown(s);
  EXPECT_NE(md.find("| tq3/tq2 | collapse | PASS | args | PASS |"), std::string::npos) << md;
  EXPECT_NE(md.find("| f16/f16 (ref) | PASS | PASS | PASS | PASS |"), std::string::npos) << md;
  EXPECT_NE(md.find("| tq2/tq2 | none (fails at the largest ratio) | ≤ 1 (passes at every ratio) |"),
            std::string::npos)
      << md;
  const std::string jsonl = ToolsSummaryJsonl(s, "m.gguf");
  const nlohmann::json first = nlohmann::json::parse(jsonl.substr(0, jsonl.find('\n')));
  EXPECT_EQ(first["kv_name"], "f16/f16");
  EXPECT_EQ(first["cliff"], 0.0);
  EXPECT_NE(jsonl.find("\"cliff\":null"), std::string::npos);
}

// Sinks weigh most in short prompts: the board sorts by the cache at the longest prompt.
TEST(ToolsTable, LeaderboardSortsByTheLongestPrompt) {
  const std::vector<nlohmann::json> rows = {
      Row("tq3/tq2+th", 512, 0.0, "PASS", 70), Row("tq3/tq2+th", 8192, 0.0, "PASS", 20),
      Row("tq8/tq3", 512, 0.0, "PASS", 40), Row("tq8/tq3", 8192, 0.0, "PASS", 36)};
  const std::vector<ToolsLeader> lb = ToolsLeaderboard(SummarizeTools(rows, "abc"));
  ASSERT_EQ(lb.size(), 2u);
  EXPECT_EQ(lb[0].kv_name, "tq3/tq2+th");
  EXPECT_DOUBLE_EQ(lb[0].kv_fraction_longest, 0.20);
  EXPECT_DOUBLE_EQ(lb[0].kv_fraction, 0.70);
  const std::string md = ToolsMarkdown(SummarizeTools(rows, "abc"));
  EXPECT_NE(md.find("| tq3/tq2+th | 0 | 3.00 | 20.0% | 70.0% |"), std::string::npos) << md;
}

// A seed on which f16 itself misses the call is graded for no configuration; a length where
// that leaves nothing drops out of the grids (and so out of the leaderboard's "every length").
TEST(ToolsTable, SeedsTheReferenceMissesAreNotGraded) {
  const std::vector<nlohmann::json> rows = {
      Row("f16/f16", 512, 0.0, "PASS", 100, true, 1),
      Row("tq3/tq2", 512, 0.0, "PASS", 20, false, 1),
      Row("f16/f16", 16384, 0.0, "NO_CALL", 100, true, 1),
      Row("f16/f16", 16384, 0.0, "PASS", 100, true, 2),
      Row("tq3/tq2", 16384, 0.0, "NO_CALL", 20, false, 1),
      Row("tq3/tq2", 16384, 0.0, "PASS", 20, false, 2),
      Row("f16/f16", 32768, 0.0, "NO_CALL", 100, true, 1),
      Row("tq3/tq2", 32768, 0.0, "NO_CALL", 20, false, 1),
  };
  const ToolsSummary s = SummarizeTools(rows, "abc");
  EXPECT_EQ(s.lengths, (std::vector<int>{512, 16384}));
  EXPECT_EQ(s.ungraded_seeds.at(16384), (std::vector<uint64_t>{1}));
  const ToolsCell& c = Line(s, "tq3/tq2", 16384).cells.at(0.0);
  EXPECT_EQ(c.runs, 1);
  EXPECT_EQ(c.verdict, "PASS");
  const std::vector<ToolsLeader> lb = ToolsLeaderboard(s);
  ASSERT_EQ(lb.size(), 2u);
  EXPECT_EQ(lb[0].kv_name, "tq3/tq2");
  const std::string md = ToolsMarkdown(s);
  EXPECT_NE(md.find("**32768 prompt tokens**: f16 missed the call on filler seed 1"),
            std::string::npos)
      << md;
  EXPECT_NE(md.find("f16 missed the call on filler seed 1: not graded"), std::string::npos);
}

// Several filler seeds in one cell: it passes only if all do; the text says how many did.
TEST(ToolsTable, SeedsPassOnlyIfEveryOnePasses) {
  std::vector<nlohmann::json> rows = {
      Row("f16/f16", 8192, 0.0, "PASS", 100, true, 1),
      Row("f16/f16", 8192, 0.0, "PASS", 100, true, 2),
      Row("f16/f16", 8192, 0.0, "PASS", 100, true, 3),
      Row("tq3/tq2", 8192, 0.0, "NO_CALL", 20, false, 1),
      Row("tq3/tq2", 8192, 0.0, "PASS", 20, false, 2),
      Row("tq3/tq2", 8192, 0.0, "NO_CALL", 20, false, 3),
      Row("tq3/tq2", 8192, 0.5, "PASS", 60, false, 1),
      Row("tq3/tq2", 8192, 0.5, "HALLUCINATION", 60, false, 2),
      Row("tq3/tq2", 8192, 0.5, "PASS", 60, false, 3),
      Row("tq8/tq3", 8192, 0.0, "PASS", 36, false, 1),
      Row("tq8/tq3", 8192, 0.0, "PASS", 36, false, 2),
      Row("tq8/tq3", 8192, 0.0, "PASS", 36, false, 3),
      Row("tq8/tq3", 8192, 0.5, "PASS", 66, false, 1),
  };
  const ToolsSummary s = SummarizeTools(rows, "abc");
  const ToolsCell& c0 = Line(s, "tq3/tq2", 8192).cells.at(0.0);
  EXPECT_EQ(c0.runs, 3);
  EXPECT_EQ(c0.passes, 1);
  EXPECT_EQ(c0.verdict, "NO_CALL");
  EXPECT_EQ(Line(s, "tq3/tq2", 8192).cells.at(0.5).verdict, "HALLUCINATION");
  EXPECT_FALSE(Line(s, "tq3/tq2", 8192).cliff().has_value());
  EXPECT_EQ(Line(s, "tq8/tq3", 8192).cliff(), 0.0);
  const std::string md = ToolsMarkdown(s);
  EXPECT_NE(md.find("| f16/f16 (ref) | PASS 3/3 | PASS 3/3 |"), std::string::npos) << md;
  EXPECT_NE(md.find("| tq3/tq2 | 1/3 nocall | 2/3 halluc |"), std::string::npos) << md;
  EXPECT_NE(md.find("| tq8/tq3 | PASS 3/3 | PASS |"), std::string::npos) << md;
  const std::vector<ToolsLeader> lb = ToolsLeaderboard(s);
  ASSERT_EQ(lb.size(), 2u);  // tq3/tq2 misses a seed at every ratio
  EXPECT_EQ(lb[0].kv_name, "tq8/tq3");
  const std::string jsonl = ToolsSummaryJsonl(s, "m.gguf");
  EXPECT_NE(jsonl.find("\"passes\":[1,2]"), std::string::npos) << jsonl;
  EXPECT_NE(jsonl.find("\"runs\":[3,3]"), std::string::npos) << jsonl;
}

}  // namespace
}  // namespace tqlm::eval
