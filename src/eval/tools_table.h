// Summaries of `tqlm eval tools` rows: per KV configuration and prompt length the verdict at
// each buffer ratio (over every filler seed run there), the cliff (the smallest ratio from
// which every larger tested ratio PASSes on every seed), and a leaderboard of configurations
// by the KV memory they need to pass at every tested length - as Markdown, CSV and JSONL.
#pragma once

#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace tqlm::eval {

// One configuration, length and ratio over its filler seeds: a cell passes only if every seed
// does, because a default must not miss a call that f16 makes.
struct ToolsCell {
  std::string verdict;     // PASS if every seed passed, else the most frequent failure
  int runs = 0;            // seeds graded
  int passes = 0;          // of them PASS
  std::map<std::string, int> failures;  // verdict -> seeds
  double kv_fraction = 1;  // cache bytes used / the same tokens in f16 (measured)
  int buffer_tokens = 0;   // resolved full-precision recent buffer
};

// One KV configuration (without its buffer ratio) at one prompt length.
struct ToolsLine {
  std::string kv_name;
  int length = 0;
  bool reference = false;             // f16/f16: no compression, one cell stands for every ratio
  double bits_per_value = 16;         // compressed part's format
  std::map<double, ToolsCell> cells;  // by buffer ratio
  // Smallest tested ratio from which all larger tested ratios PASS; nullopt if the largest
  // tested ratio fails.
  std::optional<double> cliff() const;
};

struct ToolsSummary {
  std::vector<double> ratios;  // every ratio tested, ascending
  std::vector<int> lengths;    // ascending; lengths with at least one graded cell
  std::vector<ToolsLine>
      lines;  // configuration order of first appearance (references first), then length
  // Filler seeds per length on which the reference (f16) itself missed the call: those prompts
  // test the model, not the cache, so no configuration's row for them is graded.
  std::map<int, std::vector<uint64_t>> ungraded_seeds;
};

// Rows with config.task == "tools" for `model_sha256`, less those on an ungraded seed.
ToolsSummary SummarizeTools(const std::vector<nlohmann::json>& rows,
                            const std::string& model_sha256);

struct ToolsLeader {
  std::string kv_name;
  bool reference = false;  // f16/f16
  double ratio = 0;        // the ratio that passes at every tested length (max of the cliffs)
  double kv_fraction = 1;  // worst measured cache size at that ratio over the lengths, vs f16
  double bits_per_value = 16;
  // Cache size at that ratio at the longest tested length, vs f16: where memory matters, and
  // what the board is sorted by (full-precision sinks weigh most in the shortest prompts).
  double kv_fraction_longest = 1;
};

// Configurations that pass at every tested length from some ratio on, smallest cache at the
// longest length first (the default-policy candidates); configurations without a cliff at some length are left out.
std::vector<ToolsLeader> ToolsLeaderboard(const ToolsSummary& s);

// Markdown: one verdict grid per length (configuration x ratio), the cliff table
// (configuration x length) and the leaderboard.
std::string ToolsMarkdown(const ToolsSummary& s);
// One JSON object per line (for the heatmap script): kv_name, length, reference, bits,
// ratios, verdicts, cliff (null when none).
std::string ToolsSummaryJsonl(const ToolsSummary& s, const std::string& model);
// Leaderboard as CSV with a header line.
std::string ToolsLeaderboardCsv(const std::vector<ToolsLeader>& leaders, const std::string& model);

}  // namespace tqlm::eval
