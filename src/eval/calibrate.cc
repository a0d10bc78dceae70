#include "eval/calibrate.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <numeric>

#include "eval/kv_configs.h"
#include "eval/perplexity.h"
#include "eval/sweep.h"
#include "tqlm/error.h"

namespace tqlm::eval {
namespace {

// The cheaper level of the layer scan may cost at most this many times the bar on the sample:
// per-layer costs add up, so a level far beyond the bar leaves only a layer or two to move,
// while the nearest level below H saves little per layer.
constexpr double kScanReach = 4.0;
// The layer scan measures at most this many groups of consecutive layers (one cell each): on
// a 28-layer model one cell per layer would cost more than the rest of the search together,
// and neighbouring layers tend to respond alike.
constexpr int kMaxScanGroups = 8;
// Measured attempts at a mix before settling for the uniform level that met the bar; each
// retry moves a third fewer layers.
constexpr int kMixTries = 3;

struct Sums {
  double nll = 0, ref_nll = 0, kl = 0, dnll_sq = 0;
  int scored = 0, windows = 0;
};

runtime::KvPolicy WithTypes(const runtime::KvPolicy& base, const std::string& k,
                            const std::string& v, const std::string& profile = "") {
  runtime::KvPolicy p = base;
  p.k_type = k;
  p.v_type = v;
  p.profile = profile;
  return p;
}

bool IsF16(const runtime::KvPolicy& p) {
  return p.k_type == "f16" && p.v_type == "f16" && p.profile.empty();
}

class Runner {
 public:
  Runner(const CalibSetup& s, ResultsFile& r, const CalibProgress& p, CalibOutcome& o)
      : s_(s), results_(r), progress_(p), out_(o) {}

  // Adds `cells` to the expected count shown by the progress bar.
  void Expect(int cells) { expected_ += cells; }

  // Measures each policy on windows [0, n_windows); false when interrupted.
  bool Measure(const std::vector<runtime::KvPolicy>& policies, int n_windows,
               const std::string& label, std::vector<Sums>* sums) {
    const runtime::KvPolicy f16 = WithTypes(s_.base, "f16", "f16");
    std::vector<SweepCell> cells;
    for (int w = 0; w < n_windows; ++w) {
      cells.push_back({CellConfig(f16, w), fmt::format("{} w{} f16", label, w), 1.0});
      for (const runtime::KvPolicy& p : policies)
        cells.push_back({CellConfig(p, w), fmt::format("{} w{}", label, w), 1.0});
    }
    const int before = done_;
    const SweepSummary summary = RunSweep(
        results_, cells, [&](const SweepCell& c) { return RunCell(c); },
        [&](double done, double, const std::string& l) {
          if (progress_) progress_(before + int(done), std::max(expected_, before + int(done)), l);
        });
    done_ += summary.ran;
    out_.cells_run += summary.ran;
    out_.cells_reused += summary.skipped;
    if (summary.interrupted) return false;
    std::map<std::string, const nlohmann::json*> by_hash;
    for (const nlohmann::json& row : results_.rows()) by_hash[row.value("hash", "")] = &row;
    sums->assign(policies.size(), Sums{});
    for (size_t i = 0; i < policies.size(); ++i) {
      Sums& sm = (*sums)[i];
      for (int w = 0; w < n_windows; ++w) {
        const nlohmann::json& ref = *by_hash.at(ConfigHash(CellConfig(f16, w)));
        const nlohmann::json& row = *by_hash.at(ConfigHash(CellConfig(policies[i], w)));
        sm.nll += row.value("nll_sum", 0.0);
        sm.kl += row.value("kl_sum", 0.0);
        sm.dnll_sq += row.value("dnll_sq_sum", 0.0);
        sm.scored += row.value("scored", 0);
        sm.ref_nll += ref.value("nll_sum", 0.0);
        ++sm.windows;
      }
    }
    return true;
  }

  CalibRow Row(const std::string& stage, const runtime::KvPolicy& p, const Sums& sm,
               const CalibBar& bar) const {
    CalibRow r;
    r.stage = stage;
    r.policy = p;
    r.name = CalibPolicyName(p);
    r.bits = FormatBitsPerValue(s_.model->info(), p);
    r.windows = sm.windows;
    if (sm.scored > 0) {
      r.mean_kld = sm.kl / sm.scored;
      const double dnll = (sm.nll - sm.ref_nll) / sm.scored;
      r.delta_ppl = std::exp(dnll) - 1;
      // Tokens taken as independent: var(d) / n, by the delta method on exp.
      const double var = std::max(0.0, sm.dnll_sq / sm.scored - dnll * dnll);
      r.dppl_se = (1 + r.delta_ppl) * std::sqrt(var / sm.scored);
    }
    r.meets = MeetsBar(r, bar);
    return r;
  }

 private:
  nlohmann::json CellConfig(const runtime::KvPolicy& p, int w) const {
    nlohmann::json c = s_.cell_base;
    c["task"] = "calib";
    c["ctx"] = s_.ctx;
    c["batch"] = s_.session.batch;
    c["window"] = w;
    c["kv"] = KvPolicyJson(p);
    c["kv_name"] = IsF16(p) ? "f16/f16" : CalibPolicyName(p);
    c["row_fields"] = 2;  // rows carry dnll_sq_sum (older rows are measured again)
    return c;
  }

  runtime::SessionOptions Options(const runtime::KvPolicy& p) const {
    runtime::SessionOptions o = s_.session;
    o.n_ctx = s_.ctx;
    o.kv = p;
    return o;
  }

  const WindowReference& Ref(int w) {
    auto it = refs_.find(w);
    if (it != refs_.end()) return it->second;
    runtime::Session session(*s_.model, Options(WithTypes(s_.base, "f16", "f16")));
    WindowReference& ref = refs_[w];
    ScoreWindow(session, s_.tokens, s_.ctx, w, nullptr, &ref);
    return ref;
  }

  nlohmann::json RunCell(const SweepCell& cell) {
    const int w = cell.config["window"];
    runtime::KvPolicy p = s_.base;
    const nlohmann::json& kv = cell.config["kv"];
    p.k_type = kv["k_type"];
    p.v_type = kv["v_type"];
    p.profile = kv["profile"];
    WindowScore score;
    if (IsF16(p)) {
      runtime::Session session(*s_.model, Options(p));
      score = ScoreWindow(session, s_.tokens, s_.ctx, w, nullptr, &refs_[w]);
    } else {
      const WindowReference& ref = Ref(w);
      runtime::Session session(*s_.model, Options(p));
      score = ScoreWindow(session, s_.tokens, s_.ctx, w, &ref, nullptr);
    }
    return {{"kv_name", cell.config["kv_name"]}, {"window", w},       {"scored", score.scored},
            {"nll_sum", score.nll_sum},          {"kl_sum", score.kl_sum},
            {"kl_max", score.kl_max},            {"top1_ref", score.top1_ref},
            {"dnll_sq_sum", score.dnll_sq_sum}};
  }

  const CalibSetup& s_;
  ResultsFile& results_;
  const CalibProgress& progress_;
  CalibOutcome& out_;
  std::map<int, WindowReference> refs_;
  int done_ = 0, expected_ = 0;
};

struct Level {
  runtime::KvPolicy policy;
  double bits = 0;
};

// Per layer: the types of `lo` where moved[l], else `hi`'s, as a policy with hi's types and
// a profile for the moved layers.
runtime::KvPolicy Mix(const Level& hi, const Level& lo, const std::vector<bool>& moved) {
  std::vector<std::string> k, v;
  for (bool m : moved) {
    k.push_back(m ? lo.policy.k_type : hi.policy.k_type);
    v.push_back(m ? lo.policy.v_type : hi.policy.v_type);
  }
  runtime::KvPolicy p = hi.policy;
  p.profile = ProfileRules(k, v, hi.policy.k_type, hi.policy.v_type);
  return p;
}

// ΔPPL as the bar judges it: the sample's less dppl_z standard errors.
double JudgedDppl(const CalibRow& r, const CalibBar& bar) {
  return r.delta_ppl - bar.dppl_z * r.dppl_se;
}

// How far a row is above the bar (1: at margin x bar); budget mode has no bar.
double Excess(const CalibRow& r, const CalibBar& bar) {
  double e = 0;
  if (bar.max_kld > 0) e = std::max(e, r.mean_kld / (bar.margin * bar.max_kld));
  if (bar.max_dppl > 0) e = std::max(e, JudgedDppl(r, bar) / (bar.margin * bar.max_dppl));
  return e;
}

}  // namespace

bool MeetsBar(const CalibRow& r, const CalibBar& bar) {
  return (bar.max_kld <= 0 || r.mean_kld <= bar.margin * bar.max_kld) &&
         (bar.max_dppl <= 0 || JudgedDppl(r, bar) <= bar.margin * bar.max_dppl);
}

std::vector<std::pair<std::string, std::string>> CalibLadder() {
  return {{"tq2", "tq2"}, {"tq3", "tq2"}, {"tq3", "tq3"}, {"tq4", "tq3"},
          {"tq4", "tq4"}, {"tq8", "tq3"}, {"tq8", "tq4"}, {"tq8", "tq8"}};
}

std::string ProfileRules(const std::vector<std::string>& k_types,
                         const std::vector<std::string>& v_types, const std::string& k,
                         const std::string& v) {
  std::string rules;
  const int n = int(std::min(k_types.size(), v_types.size()));
  for (int a = 0; a < n;) {
    int b = a;
    while (b + 1 < n && k_types[size_t(b + 1)] == k_types[size_t(a)] &&
           v_types[size_t(b + 1)] == v_types[size_t(a)])
      ++b;
    if (k_types[size_t(a)] != k || v_types[size_t(a)] != v) {
      if (!rules.empty()) rules += ",";
      rules += a == b ? fmt::format("{}", a) : fmt::format("{}-{}", a, b);
      rules += "=" + k_types[size_t(a)] + "/" + v_types[size_t(a)];
    }
    a = b + 1;
  }
  return rules;
}

std::string CalibPolicyName(const runtime::KvPolicy& p) {
  std::string s = p.k_type + "/" + p.v_type;
  if (!p.profile.empty()) {
    std::string prof = p.profile;
    std::replace(prof.begin(), prof.end(), ',', ';');
    s += "+p=" + prof;
  }
  return s;
}

CalibOutcome Calibrate(const CalibSetup& setup, const CalibBar& bar, ResultsFile& results,
                       const CalibProgress& progress) {
  if (!setup.model) throw Error("calibrate: no model");
  const model::ModelInfo& info = setup.model->info();
  const int n_layers = info.n_layer;
  if (setup.ctx < 4 || setup.windows < 1 ||
      size_t(setup.windows) * size_t(setup.ctx) > setup.tokens.size())
    throw Error(fmt::format("calibrate: the text has {} tokens, fewer than {} windows of {}",
                            setup.tokens.size(), setup.windows, setup.ctx));
  if (bar.budget_bits <= 0 && bar.max_kld <= 0 && bar.max_dppl <= 0)
    throw Error("calibrate: no bar (max KLD, max ΔPPL) and no bits budget");
  if (bar.margin <= 0 || bar.margin > 1) throw Error("calibrate: margin must be in (0, 1]");
  std::vector<Level> ladder;
  for (const auto& [k, v] : setup.ladder.empty() ? CalibLadder() : setup.ladder) {
    Level l{WithTypes(setup.base, k, v), 0};
    runtime::ResolveKvPolicy(l.policy, info.layers, 0);  // throws on unknown types
    l.bits = FormatBitsPerValue(info, l.policy);
    ladder.push_back(l);
  }
  std::stable_sort(ladder.begin(), ladder.end(),
                   [](const Level& a, const Level& b) { return a.bits < b.bits; });
  CalibOutcome out;
  Runner run(setup, results, progress, out);
  const int W = setup.windows;
  std::vector<Sums> sums;
  auto measure_all = [&](const runtime::KvPolicy& p, const std::string& stage,
                         CalibRow* row) -> bool {
    if (!run.Measure({p}, W, stage, &sums)) return false;
    *row = run.Row(stage, p, sums[0], bar);
    out.table.push_back(*row);
    return true;
  };
  // The layer scan: H everywhere but one group of consecutive layers at L, on the first
  // window. Returns each group's cost above H (mean KLD per token) and its layers.
  const int n_groups = std::min(n_layers, kMaxScanGroups);
  std::vector<std::vector<int>> groups(static_cast<size_t>(n_groups));
  for (int l = 0; l < n_layers; ++l) groups[size_t(l * n_groups / n_layers)].push_back(l);
  auto moved_groups = [&](const std::vector<int>& gs) {
    std::vector<bool> moved(size_t(n_layers), false);
    for (int g : gs)
      for (int l : groups[size_t(g)]) moved[size_t(l)] = true;
    return moved;
  };
  auto scan = [&](const Level& hi, const Level& lo, std::vector<double>* dkl) -> bool {
    std::vector<runtime::KvPolicy> ps = {hi.policy};
    for (int g = 0; g < n_groups; ++g) ps.push_back(Mix(hi, lo, moved_groups({g})));
    if (!run.Measure(ps, 1, "layer scan", &sums)) return false;
    const CalibRow base = run.Row("scan base", hi.policy, sums[0], bar);
    out.table.push_back(base);
    for (int g = 0; g < n_groups; ++g) {
      const std::vector<int>& ls = groups[size_t(g)];
      const std::string stage = ls.size() == 1 ? fmt::format("layer {}", ls[0])
                                               : fmt::format("layers {}-{}", ls.front(), ls.back());
      CalibRow r = run.Row(stage, ps[size_t(g) + 1], sums[size_t(g) + 1], bar);
      out.table.push_back(r);
      dkl->push_back(r.mean_kld - base.mean_kld);
    }
    return true;
  };

  if (bar.budget_bits > 0) {
    int li = -1;
    for (int i = 0; i < int(ladder.size()); ++i)
      if (ladder[size_t(i)].bits <= bar.budget_bits) li = i;
    if (li < 0)
      throw Error(fmt::format("calibrate: the cheapest level ({}) takes {:.2f} bits per value, "
                              "more than the budget {}",
                              CalibPolicyName(ladder[0].policy), ladder[0].bits, bar.budget_bits));
    const Level& lo = ladder[size_t(li)];
    run.Expect(2 * W + n_groups + 1 + W);  // L, the scan, the mix
    CalibRow lo_row;
    if (!measure_all(lo.policy, "uniform", &lo_row)) return out;
    out.chosen = lo_row;
    if (li + 1 < int(ladder.size())) {
      const Level& hi = ladder[size_t(li) + 1];
      std::vector<double> dkl;
      if (!scan(hi, lo, &dkl)) return out;
      // Move the groups that gain most per bit up to H while the budget allows.
      std::vector<int> order(static_cast<size_t>(n_groups));
      std::iota(order.begin(), order.end(), 0);
      std::stable_sort(order.begin(), order.end(), [&](int a, int b) {
        return dkl[size_t(a)] / double(groups[size_t(a)].size()) >
               dkl[size_t(b)] / double(groups[size_t(b)].size());
      });
      std::vector<int> at_lo(order.begin(), order.end());
      int promoted = 0;
      for (int g : order) {
        if (dkl[size_t(g)] <= 0) break;
        std::vector<int> trial;
        for (int x : at_lo)
          if (x != g) trial.push_back(x);
        if (FormatBitsPerValue(info, Mix(hi, lo, moved_groups(trial))) > bar.budget_bits) continue;
        at_lo = trial;
        ++promoted;
      }
      const std::vector<bool> moved = moved_groups(at_lo);
      if (promoted > 0) {
        CalibRow mix;
        if (!measure_all(Mix(hi, lo, moved), fmt::format("mix {} groups up", promoted), &mix)) return out;
        if (mix.mean_kld <= lo_row.mean_kld) out.chosen = mix;
      }
    }
    out.met = out.chosen.bits <= bar.budget_bits;
    out.complete = true;
    return out;
  }

  // The progress bar's estimate of the cells ahead: f16 and ~log2(levels) ladder levels on
  // every window, the scan on one, one or two measured mixes. It is raised if the run needs more.
  int steps = 0;
  for (size_t n = ladder.size() + 1; n > 1; n = (n + 1) / 2) ++steps;
  run.Expect((1 + steps) * W + n_groups + 1 + 2 * W);
  // Bar mode. 1: the uniform ladder, bisected on the assumption that more bits never cost
  // quality (true of every measured ladder but for noise): the cheapest level that meets the bar.
  std::map<int, CalibRow> uniform;
  int lo_i = -1, hi_i = int(ladder.size());  // lo_i fails (or none), hi_i meets (or none)
  while (hi_i - lo_i > 1) {
    const int mid = (lo_i + hi_i) / 2;
    CalibRow r;
    if (!measure_all(ladder[size_t(mid)].policy, "uniform", &r)) return out;
    uniform[mid] = r;
    (r.meets ? hi_i : lo_i) = mid;
  }
  const int u = hi_i;
  if (u == int(ladder.size())) {  // nothing compressed meets the bar: the plain cache does
    out.chosen.stage = "fallback";
    out.chosen.policy = WithTypes(setup.base, "f16", "f16");
    out.chosen.name = "f16/f16";
    out.chosen.bits = 16;
    out.chosen.meets = true;
    out.met = true;
    out.complete = true;
    return out;
  }
  out.chosen = uniform.at(u);
  out.met = true;
  if (u == 0 || n_layers < 2) {
    out.complete = true;
    return out;
  }
  // 2: the layer scan against the cheapest measured level within reach of the bar (else the
  // most precise measured one below H).
  // The bisection measured u - 1 (it ended with u - 1 failing and u meeting).
  int li = u - 1;
  for (const auto& [j, r] : uniform)  // ascending bits
    if (j < u && Excess(r, bar) <= kScanReach) {
      li = j;
      break;
    }
  const Level& hi = ladder[size_t(u)];
  const Level& lo = ladder[size_t(li)];
  std::vector<double> dkl;
  if (!scan(hi, lo, &dkl)) return out;
  // 3: move the least sensitive groups (per layer) while the predicted KLD stays under the
  // bar. Only KLD is predicted: ΔPPL on one window is noise of the size of the bar itself;
  // the measured mix is checked against both.
  std::vector<int> order(static_cast<size_t>(n_groups));
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) {
    return dkl[size_t(a)] / double(groups[size_t(a)].size()) <
           dkl[size_t(b)] / double(groups[size_t(b)].size());
  });
  const double kld_target = bar.max_kld > 0 ? bar.margin * bar.max_kld : 0;
  double kl = uniform.at(u).mean_kld;
  int k = 0;
  for (int g : order) {
    kl += std::max(0.0, dkl[size_t(g)]);
    if (kld_target > 0 && kl > kld_target) break;
    ++k;
  }
  if (kld_target <= 0) k = n_groups - 1;  // ΔPPL-only bar: let the measurement decide
  for (int tries = 0; k > 0 && tries < kMixTries; ++tries) {
    const std::vector<bool> moved =
        moved_groups(std::vector<int>(order.begin(), order.begin() + k));
    CalibRow mix;
    const int n_moved = int(std::count(moved.begin(), moved.end(), true));
    if (!measure_all(Mix(hi, lo, moved), fmt::format("mix {} layers", n_moved), &mix)) return out;
    if (mix.meets) {
      out.chosen = mix;
      break;
    }
    k = k * 2 / 3;
  }
  out.complete = true;
  return out;
}

std::string CalibMarkdownTable(const CalibOutcome& o) {
  std::string s =
      "| stage | KV (K/V, per-layer rules) | bits/value | mean KLD | ΔPPL ± s.e. | windows | meets |\n"
      "|---|---|---:|---:|---:|---:|:-:|\n";
  for (const CalibRow& r : o.table)
    s += fmt::format("| {} | {} | {:.3f} | {:.5f} | {:+.2f}% ± {:.2f}% | {} | {} |\n", r.stage,
                     r.name, r.bits, r.mean_kld, 100 * r.delta_ppl, 100 * r.dppl_se, r.windows,
                     r.meets ? "yes" : "");
  return s;
}

}  // namespace tqlm::eval
