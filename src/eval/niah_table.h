// Summaries of `tqlm eval niah` rows: per KV configuration a grid of prompt length x needle
// depth with the fraction of trials answered correctly, and the difference against f16/f16
// (cells where compression lost or gained retrieval), as Markdown and JSON.
#pragma once

#include <nlohmann/json.hpp>

#include <map>
#include <string>
#include <utility>
#include <vector>

namespace tqlm::eval {

struct NiahCell {
  int passed = 0;
  int trials = 0;
  double rate() const { return trials > 0 ? double(passed) / trials : 0; }
};

struct NiahGrid {
  std::string kv_name;
  std::vector<int> lengths;                        // ascending
  std::vector<double> depths;                      // ascending
  std::map<std::pair<int, double>, NiahCell> cells;  // (length, depth)
  int passed() const;
  int trials() const;
};

// The grids of rows with config.task == "niah" for `model_sha256`, f16/f16 first.
std::vector<NiahGrid> SummarizeNiah(const std::vector<nlohmann::json>& rows,
                                    const std::string& model_sha256);

// Markdown: one table per configuration (pass rate per cell) and, for every configuration
// other than f16/f16, the cells whose pass rate differs from f16's (all "= f16" when none).
std::string NiahMarkdown(const std::vector<NiahGrid>& grids);
nlohmann::json NiahGridJson(const NiahGrid& g);

}  // namespace tqlm::eval
