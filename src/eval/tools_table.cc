#include "eval/tools_table.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <set>

namespace tqlm::eval {

std::optional<double> ToolsLine::cliff() const {
  std::optional<double> from;
  for (auto it = cells.rbegin(); it != cells.rend(); ++it) {
    if (it->second.verdict != "PASS") break;
    from = it->first;
  }
  return from;
}

ToolsSummary SummarizeTools(const std::vector<nlohmann::json>& rows,
                            const std::string& model_sha256) {
  ToolsSummary s;
  std::vector<std::string> order;
  std::map<std::pair<std::string, int>, ToolsLine> lines;
  std::set<double> ratios;
  std::set<int> lengths;
  std::set<std::string> references;
  auto ours = [&](const nlohmann::json& c) {
    return c.value("task", "") == "tools" && c.value("model_sha256", "") == model_sha256;
  };
  std::set<std::pair<int, uint64_t>> reference_missed;  // (length, seed)
  for (const nlohmann::json& r : rows) {
    const nlohmann::json& c = r.value("config", nlohmann::json::object());
    if (ours(c) && c.value("reference", false) && r.value("verdict", "?") != "PASS")
      reference_missed.insert({c.value("length", 0), c.value("seed", uint64_t(0))});
  }
  for (const auto& [length, seed] : reference_missed) s.ungraded_seeds[length].push_back(seed);
  for (const nlohmann::json& r : rows) {
    const nlohmann::json& c = r.value("config", nlohmann::json::object());
    if (!ours(c)) continue;
    const std::string name = c.value("kv_name", "?");
    const int length = c.value("length", 0);
    const double ratio = c.value("ratio", 0.0);
    if (reference_missed.count({length, c.value("seed", uint64_t(0))})) continue;
    if (std::find(order.begin(), order.end(), name) == order.end()) order.push_back(name);
    ToolsLine& line = lines[{name, length}];
    line.kv_name = name;
    line.length = length;
    line.reference = c.value("reference", false);
    if (line.reference) references.insert(name);
    line.bits_per_value = r.value("bits_per_value", 16.0);
    ToolsCell& cell = line.cells[ratio];
    const std::string verdict = r.value("verdict", "?");
    ++cell.runs;
    if (verdict == "PASS")
      ++cell.passes;
    else
      ++cell.failures[verdict];
    const double f16 = r.value("kv_bytes_f16", 0.0);
    cell.kv_fraction = f16 > 0 ? r.value("kv_bytes_used", 0.0) / f16 : 1;
    cell.buffer_tokens = r.value("buffer_tokens", 0);
    if (!line.reference) ratios.insert(ratio);
    lengths.insert(length);
  }
  for (auto& [key, line] : lines)
    for (auto& [ratio, cell] : line.cells) {
      cell.verdict = "PASS";
      int most = 0;
      for (const auto& [v, n] : cell.failures)
        if (n > most) most = n, cell.verdict = v;
    }
  std::stable_partition(order.begin(), order.end(),
                        [&](const std::string& n) { return references.count(n) > 0; });
  s.ratios.assign(ratios.begin(), ratios.end());
  s.lengths.assign(lengths.begin(), lengths.end());
  for (const std::string& name : order)
    for (int len : s.lengths)
      if (auto it = lines.find({name, len}); it != lines.end())
        s.lines.push_back(std::move(it->second));
  return s;
}

std::vector<ToolsLeader> ToolsLeaderboard(const ToolsSummary& s) {
  std::map<std::string, std::vector<const ToolsLine*>> by_name;
  std::vector<std::string> order;
  for (const ToolsLine& l : s.lines) {
    if (by_name[l.kv_name].empty()) order.push_back(l.kv_name);
    by_name[l.kv_name].push_back(&l);
  }
  std::vector<ToolsLeader> out;
  for (const std::string& name : order) {
    const auto& ls = by_name[name];
    if (ls.size() != s.lengths.size()) continue;  // not tested at every length
    ToolsLeader lead{name, ls.front()->reference, 0, 0, ls.front()->bits_per_value, 1};
    bool ok = true;
    for (const ToolsLine* l : ls) {
      const std::optional<double> c = l->cliff();
      if (!c)
        ok = false;
      else
        lead.ratio = std::max(lead.ratio, *c);
    }
    if (!ok) continue;
    for (const ToolsLine* l : ls) {
      // The cell at the common ratio (the reference's single cell stands for every ratio).
      auto it = l->reference ? l->cells.begin() : l->cells.find(lead.ratio);
      if (it == l->cells.end()) continue;
      lead.kv_fraction = std::max(lead.kv_fraction, it->second.kv_fraction);
      if (l->length == s.lengths.back()) lead.kv_fraction_longest = it->second.kv_fraction;
    }
    out.push_back(lead);
  }
  std::stable_sort(out.begin(), out.end(), [](const ToolsLeader& a, const ToolsLeader& b) {
    return a.kv_fraction_longest < b.kv_fraction_longest;
  });
  return out;
}

namespace {

std::string Short(const std::string& verdict) {
  if (verdict == "PASS") return "PASS";
  if (verdict == "WRONG_ARGS") return "args";
  if (verdict == "ALT_FORMAT") return "alt";
  if (verdict == "LOST_FORMAT") return "lost";
  if (verdict == "COLLAPSE") return "collapse";
  if (verdict == "HALLUCINATION") return "halluc";
  if (verdict == "NO_CALL") return "nocall";
  return verdict;
}

// A cell's text: the verdict for one seed; over several, how many passed and how the rest
// failed ("PASS 3/3", "2/3 nocall").
std::string CellText(const ToolsCell& c) {
  if (c.runs == 1) return Short(c.verdict);
  if (c.passes == c.runs) return fmt::format("PASS {}/{}", c.passes, c.runs);
  std::string out = fmt::format("{}/{}", c.passes, c.runs);
  for (const auto& [v, n] : c.failures)
    out += n == c.runs - c.passes ? " " + Short(v) : fmt::format(" {}×{}", Short(v), n);
  return out;
}

std::string CliffText(const ToolsLine& l) {
  const std::optional<double> c = l.cliff();
  if (!c) return "none (fails at the largest ratio)";
  if (l.reference) return "- (reference, passes)";
  if (*c == l.cells.begin()->first) return fmt::format("≤ {:g} (passes at every ratio)", *c);
  return fmt::format("{:g}", *c);
}

}  // namespace

std::string ToolsMarkdown(const ToolsSummary& s) {
  std::string md;
  auto ungraded = [&](int len) {
    auto it = s.ungraded_seeds.find(len);
    if (it == s.ungraded_seeds.end()) return std::string();
    return fmt::format("f16 missed the call on filler seed{} {}: not graded for any "
                       "configuration (those prompts test the model, not the cache).",
                       it->second.size() > 1 ? "s" : "", fmt::join(it->second, ", "));
  };
  for (const auto& [len, seeds] : s.ungraded_seeds)
    if (std::find(s.lengths.begin(), s.lengths.end(), len) == s.lengths.end())
      md += fmt::format("**{} prompt tokens**: {} Nothing else was run there.\n\n", len,
                        ungraded(len));
  for (int len : s.lengths) {
    md += fmt::format(
        "**{} prompt tokens**: verdict by recent-buffer ratio (buffer = ratio × prompt); over "
        "several filler seeds, seeds passed / run and the failures\n\n",
        len);
    if (const std::string note = ungraded(len); !note.empty()) md += note + "\n\n";
    md += "| KV \\ ratio |";
    for (double r : s.ratios) md += fmt::format(" {:g} |", r);
    md += "\n|---|";
    for (size_t i = 0; i < s.ratios.size(); ++i) md += "---|";
    md += "\n";
    for (const ToolsLine& l : s.lines) {
      if (l.length != len) continue;
      md += fmt::format("| {}{} |", l.kv_name, l.reference ? " (ref)" : "");
      for (double r : s.ratios) {
        if (l.reference) {
          md += fmt::format(" {} |", CellText(l.cells.begin()->second));
        } else {
          auto it = l.cells.find(r);
          md += it == l.cells.end() ? " – |" : fmt::format(" {} |", CellText(it->second));
        }
      }
      md += "\n";
    }
    md += "\n";
  }
  md += "Cliff: the smallest ratio from which every larger tested ratio passes\n\n| KV |";
  for (int len : s.lengths) md += fmt::format(" {} |", len);
  md += "\n|---|";
  for (size_t i = 0; i < s.lengths.size(); ++i) md += "---|";
  md += "\n";
  std::vector<std::string> names;
  for (const ToolsLine& l : s.lines)
    if (std::find(names.begin(), names.end(), l.kv_name) == names.end()) names.push_back(l.kv_name);
  for (const std::string& name : names) {
    md += fmt::format("| {} |", name);
    for (int len : s.lengths) {
      auto it = std::find_if(s.lines.begin(), s.lines.end(), [&](const ToolsLine& l) {
        return l.kv_name == name && l.length == len;
      });
      md += it == s.lines.end() ? " – |" : fmt::format(" {} |", CliffText(*it));
    }
    md += "\n";
  }
  const std::vector<ToolsLeader> leaders = ToolsLeaderboard(s);
  const int longest = s.lengths.empty() ? 0 : s.lengths.back();
  md += fmt::format(
      "\nLeaderboard: configurations that pass at every tested length (on every filler seed "
      "run), smallest KV cache at the longest prompt first (KV cache as a share of f16; the "
      "largest share over the tested lengths is usually the shortest prompt's, where sinks and "
      "the block being filled weigh most)\n\n"
      "| KV | buffer ratio | bits/value (compressed part) | KV cache vs f16 at {} tokens | "
      "largest over lengths |\n|---|---:|---:|---:|---:|\n",
      longest);
  for (const ToolsLeader& l : leaders)
    md += fmt::format("| {} | {:g} | {:.2f} | {:.1f}% | {:.1f}% |\n", l.kv_name, l.ratio,
                      l.bits_per_value, 100 * l.kv_fraction_longest, 100 * l.kv_fraction);
  if (leaders.empty()) md += "| (none) | | | | |\n";
  return md;
}

std::string ToolsSummaryJsonl(const ToolsSummary& s, const std::string& model) {
  std::string out;
  for (const ToolsLine& l : s.lines) {
    nlohmann::json j = {{"model", model},
                        {"kv_name", l.kv_name},
                        {"length", l.length},
                        {"reference", l.reference},
                        {"bits_per_value", l.bits_per_value}};
    nlohmann::json ratios = nlohmann::json::array(), verdicts = nlohmann::json::array(),
                   runs = nlohmann::json::array(), passes = nlohmann::json::array();
    for (const auto& [r, c] : l.cells) {
      ratios.push_back(r);
      verdicts.push_back(c.verdict);
      runs.push_back(c.runs);
      passes.push_back(c.passes);
    }
    j["ratios"] = ratios;
    j["verdicts"] = verdicts;
    j["runs"] = runs;
    j["passes"] = passes;
    const std::optional<double> c = l.cliff();
    j["cliff"] = c ? nlohmann::json(*c) : nlohmann::json(nullptr);
    out += j.dump() + "\n";
  }
  return out;
}

std::string ToolsLeaderboardCsv(const std::vector<ToolsLeader>& leaders, const std::string& model) {
  std::string out =
      "model,kv,buffer_ratio,bits_per_value,kv_fraction_of_f16,kv_fraction_at_longest\n";
  for (const ToolsLeader& l : leaders)
    out += fmt::format("{},{},{:g},{:.4f},{:.4f},{:.4f}\n", model, l.kv_name, l.ratio,
                       l.bits_per_value, l.kv_fraction, l.kv_fraction_longest);
  return out;
}

}  // namespace tqlm::eval
