#include "eval/niah_table.h"

#include <fmt/format.h>

#include <algorithm>
#include <set>

namespace tqlm::eval {

int NiahGrid::passed() const {
  int n = 0;
  for (const auto& [k, c] : cells) n += c.passed;
  return n;
}

int NiahGrid::trials() const {
  int n = 0;
  for (const auto& [k, c] : cells) n += c.trials;
  return n;
}

std::vector<NiahGrid> SummarizeNiah(const std::vector<nlohmann::json>& rows,
                                    const std::string& model_sha256) {
  std::map<std::string, NiahGrid> by_name;
  for (const nlohmann::json& r : rows) {
    const nlohmann::json& c = r.value("config", nlohmann::json::object());
    if (c.value("task", "") != "niah" || c.value("model_sha256", "") != model_sha256) continue;
    NiahGrid& g = by_name[c.value("kv_name", "?")];
    g.kv_name = c.value("kv_name", "?");
    NiahCell& cell = g.cells[{c.value("length", 0), c.value("depth", 0.0)}];
    ++cell.trials;
    cell.passed += r.value("correct", false) ? 1 : 0;
  }
  std::vector<NiahGrid> out;
  for (auto& [name, g] : by_name) {
    std::set<int> lengths;
    std::set<double> depths;
    for (const auto& [k, c] : g.cells) lengths.insert(k.first), depths.insert(k.second);
    g.lengths.assign(lengths.begin(), lengths.end());
    g.depths.assign(depths.begin(), depths.end());
    out.push_back(std::move(g));
  }
  std::stable_partition(out.begin(), out.end(),
                        [](const NiahGrid& g) { return g.kv_name == "f16/f16"; });
  return out;
}

namespace {

std::string Header(const std::vector<double>& depths) {
  std::string s = "| length \\ depth |";
  for (double d : depths) s += fmt::format(" {:.1f} |", d);
  s += "\n|---:|";
  for (size_t i = 0; i < depths.size(); ++i) s += "---:|";
  return s + "\n";
}

}  // namespace

std::string NiahMarkdown(const std::vector<NiahGrid>& grids) {
  std::string s;
  const NiahGrid* f16 = nullptr;
  for (const NiahGrid& g : grids)
    if (g.kv_name == "f16/f16") f16 = &g;
  for (const NiahGrid& g : grids) {
    s += fmt::format("**{}**: {}/{} retrieved\n\n", g.kv_name, g.passed(), g.trials());
    s += Header(g.depths);
    for (int len : g.lengths) {
      s += fmt::format("| {} |", len);
      for (double d : g.depths) {
        const auto it = g.cells.find({len, d});
        s += it == g.cells.end() ? " – |"
                                 : fmt::format(" {}/{} |", it->second.passed, it->second.trials);
      }
      s += "\n";
    }
    s += "\n";
    if (f16 && &g != f16) {
      int lost = 0, gained = 0, compared = 0;
      std::string diffs;
      for (const auto& [k, c] : g.cells) {
        const auto ref = f16->cells.find(k);
        if (ref == f16->cells.end()) continue;
        ++compared;
        const double d = c.rate() - ref->second.rate();
        if (d == 0) continue;
        (d < 0 ? lost : gained) += 1;
        diffs += fmt::format("length {} depth {:.1f}: {:+.0f}%; ", k.first, k.second, 100 * d);
      }
      s += fmt::format("vs f16/f16: {} cells compared, {} lost, {} gained{}\n\n", compared, lost,
                       gained, diffs.empty() ? "" : " (" + diffs.substr(0, diffs.size() - 2) + ")");
    }
  }
  return s;
}

nlohmann::json NiahGridJson(const NiahGrid& g) {
  nlohmann::json cells = nlohmann::json::array();
  for (const auto& [k, c] : g.cells)
    cells.push_back({{"length", k.first}, {"depth", k.second}, {"passed", c.passed},
                     {"trials", c.trials}});
  return {{"kv_name", g.kv_name}, {"lengths", g.lengths}, {"depths", g.depths},
          {"passed", g.passed()}, {"trials", g.trials()}, {"cells", cells}};
}

}  // namespace tqlm::eval
