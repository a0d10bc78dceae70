#include "eval/ppl_table.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <map>

namespace tqlm::eval {
namespace {

struct Acc {
  std::map<int, const nlohmann::json*> by_window;
};

}  // namespace

std::vector<PplSummary> SummarizePpl(const std::vector<nlohmann::json>& rows,
                                     const std::string& model_sha256,
                                     const std::string& text_sha256, int ctx) {
  // engine -> kv name -> window -> row (a later row for the same cell wins)
  std::map<std::string, std::map<std::string, Acc>> groups;
  for (const nlohmann::json& r : rows) {
    const nlohmann::json& c = r.value("config", nlohmann::json::object());
    if (c.value("task", "") != "ppl" || c.value("model_sha256", "") != model_sha256 ||
        c.value("text_sha256", "") != text_sha256 || c.value("ctx", 0) != ctx)
      continue;
    groups[c.value("engine", "tqlm")][c.value("kv_name", "?")].by_window[c.value("window", -1)] = &r;
  }
  std::vector<PplSummary> out;
  for (const auto& [engine, configs] : groups) {
    const auto ref_it = configs.find("f16/f16");
    for (const auto& [name, acc] : configs) {
      PplSummary s;
      s.engine = engine;
      s.kv_name = name;
      double nll = 0, ref_nll = 0, kl = 0, eff = 0;
      int top1_ref = 0, top1_text = 0, ref_scored = 0;
      bool have_ref = ref_it != configs.end();
      for (const auto& [w, row] : acc.by_window) {
        const nlohmann::json& r = *row;
        ++s.windows;
        s.scored += r.value("scored", 0);
        nll += r.value("nll_sum", 0.0);
        kl += r.value("kl_sum", 0.0);
        s.max_kl = std::max(s.max_kl, r.value("kl_max", 0.0));
        top1_ref += r.value("top1_ref", 0);
        top1_text += r.value("top1_text", 0);
        s.bits_per_value = r.value("bits_per_value", 0.0);
        eff += r.value("effective_bits", 0.0);
        s.seconds += r.value("wall_seconds", 0.0);
        if (have_ref) {
          const auto rw = ref_it->second.by_window.find(w);
          if (rw == ref_it->second.by_window.end()) {
            have_ref = false;
          } else {
            ref_nll += rw->second->value("nll_sum", 0.0);
            ref_scored += rw->second->value("scored", 0);
          }
        }
      }
      if (s.scored == 0) continue;
      s.perplexity = std::exp(nll / s.scored);
      s.effective_bits = eff / s.windows;
      s.mean_kl = kl / s.scored;
      s.top1_ref = double(top1_ref) / s.scored;
      s.top1_text = double(top1_text) / s.scored;
      if (have_ref && ref_scored == s.scored) {
        s.ref_perplexity = std::exp(ref_nll / ref_scored);
        s.delta_ppl = s.perplexity / s.ref_perplexity - 1;
      }
      out.push_back(s);
    }
  }
  for (PplSummary& a : out) {
    a.pareto = true;
    for (const PplSummary& b : out)
      if (&a != &b && b.bits_per_value <= a.bits_per_value && b.mean_kl <= a.mean_kl &&
          (b.bits_per_value < a.bits_per_value || b.mean_kl < a.mean_kl))
        a.pareto = false;
  }
  std::sort(out.begin(), out.end(), [](const PplSummary& a, const PplSummary& b) {
    if (a.engine != b.engine) return a.engine > b.engine;  // tqlm first
    if (a.bits_per_value != b.bits_per_value) return a.bits_per_value > b.bits_per_value;
    return a.kv_name < b.kv_name;
  });
  return out;
}

std::string PplMarkdownTable(const std::vector<PplSummary>& rows) {
  std::string s =
      "| engine | KV (K/V) | bits/value | effective bits | PPL | ΔPPL | mean KLD | max KLD | "
      "top-1 vs f16 | windows | Pareto |\n"
      "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|:-:|\n";
  for (const PplSummary& r : rows) {
    const std::string delta =
        r.ref_perplexity > 0 ? fmt::format("{:+.2f}%", 100 * r.delta_ppl) : std::string("–");
    s += fmt::format("| {} | {} | {:.3f} | {:.3f} | {:.4f} | {} | {:.5f} | {:.4f} | {:.2f}% | {} | {} |\n",
                     r.engine, r.kv_name, r.bits_per_value, r.effective_bits, r.perplexity, delta,
                     r.mean_kl, r.max_kl, 100 * r.top1_ref, r.windows, r.pareto ? "★" : "");
  }
  return s;
}

nlohmann::json PplSummaryJson(const PplSummary& s) {
  return {{"engine", s.engine},       {"kv_name", s.kv_name},
          {"windows", s.windows},     {"scored", s.scored},
          {"bits_per_value", s.bits_per_value}, {"effective_bits", s.effective_bits},
          {"perplexity", s.perplexity}, {"ref_perplexity", s.ref_perplexity},
          {"delta_ppl", s.delta_ppl}, {"mean_kl", s.mean_kl},
          {"max_kl", s.max_kl},       {"top1_ref", s.top1_ref},
          {"top1_text", s.top1_text}, {"seconds", s.seconds},
          {"pareto", s.pareto}};
}

}  // namespace tqlm::eval
