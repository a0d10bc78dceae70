// KV-cache calibration (`tqlm calibrate`): the cheapest K/V policy, per layer where it pays,
// whose mean KL divergence and perplexity change against the f16 cache stay under a bar on a
// few windows of real text, or the most precise one that fits a bits-per-value budget.
//
// The search, every step measured (each candidate x window is one cell of the eval sweep
// machinery, so an interrupted calibration resumes from its results file):
//  1. Uniform ladder: K/V type pairs in increasing bits per value, bisected for the cheapest
//     that meets the bar (with a safety margin, since the bar must hold on unseen text): H.
//  2. Layer scan (on the first window only, to keep it short): for each group of consecutive
//     layers (at most kMaxScanGroups), H everywhere but that group at a cheaper level L. Its
//     KLD above H is the group's sensitivity. L is the cheapest measured level whose excess
//     over the bar is small enough (kScanReach) that a mix can plausibly meet the bar.
//  3. Mix: the least sensitive groups move to L while the summed sensitivities (costs are
//     close to additive over layers for small errors) keep the predicted KLD under the bar;
//     the mix is then measured on all windows, and fewer groups move until it meets the bar.
// In budget mode (--budget-bits) L is the most precise level within the budget, H the next
// one up, and the most sensitive groups per bit move up to H while the budget allows.
#pragma once

#include <nlohmann/json.hpp>

#include <functional>
#include <span>
#include <string>
#include <vector>

#include "eval/results_file.h"
#include "model/model.h"
#include "runtime/kv_policy.h"
#include "runtime/session.h"

namespace tqlm::eval {

struct CalibBar {
  double max_kld = 0.01;   // mean KL divergence per token, nats (0: not part of the bar)
  double max_dppl = 0.01;  // perplexity / f16 perplexity - 1 (0: not part of the bar)
  double budget_bits = 0;  // > 0: budget mode, the bar is ignored
  double margin = 0.7;     // the sample must meet margin x the bar
  // ΔPPL on a few hundred tokens is noisy: its standard error is about sqrt(2 KLD / tokens)
  // (0.6% at KLD 0.01 on 510 tokens), the size of the bar itself. The ΔPPL half counts as met
  // when ΔPPL minus dppl_z standard errors (measured, CalibRow::dppl_se) is within the margin.
  // 0: the raw sample ΔPPL, as before.
  double dppl_z = 1.0;
};

struct CalibRow {
  std::string stage;  // "uniform", "scan base", "layer N" / "layers A-B", "mix ..."
  std::string name;   // K/V and profile
  runtime::KvPolicy policy;
  double bits = 0;
  double mean_kld = 0, delta_ppl = 0;
  double dppl_se = 0;  // standard error of delta_ppl over the scored tokens
  int windows = 0;
  bool meets = false;  // meets margin x the bar (bar mode)
};

struct CalibOutcome {
  bool complete = false;  // false: interrupted (rerun to resume)
  bool met = false;       // the chosen policy meets the bar on the sample (bar mode)
  CalibRow chosen;
  std::vector<CalibRow> table;  // every candidate measured on all windows, then the scan
  int cells_run = 0, cells_reused = 0;
};

struct CalibSetup {
  model::Model* model = nullptr;
  std::span<const int> tokens;
  int ctx = 512;
  int windows = 2;  // windows for the ladder and the mix; the layer scan uses the first only
  runtime::SessionOptions session;  // threads, batch
  runtime::KvPolicy base;           // sinks and buffers every candidate keeps
  nlohmann::json cell_base;         // model/text hashes etc. for the cells' configurations
  // K/V pairs of the ladder; empty: the built-in ladder (CalibLadder).
  std::vector<std::pair<std::string, std::string>> ladder;
};

// (cells done, cells expected, what runs now); the expected count grows as the search adapts.
using CalibProgress = std::function<void(int done, int expected, const std::string& label)>;

// Whether a row meets margin x the bar (bar mode): KLD as measured, ΔPPL less dppl_z standard
// errors.
bool MeetsBar(const CalibRow& r, const CalibBar& bar);

// The built-in ladder of K/V type pairs (sorted by bits on the model before use).
std::vector<std::pair<std::string, std::string>> CalibLadder();

CalibOutcome Calibrate(const CalibSetup& setup, const CalibBar& bar, ResultsFile& results,
                       const CalibProgress& progress = {});

// Per-layer rules "A-B=K/V,..." for layers whose types differ from (k, v); consecutive layers
// with the same types are merged into one range.
std::string ProfileRules(const std::vector<std::string>& k_types,
                         const std::vector<std::string>& v_types, const std::string& k,
                         const std::string& v);

// A policy's display name: "K/V" plus "+p=RULES" when it has a profile.
std::string CalibPolicyName(const runtime::KvPolicy& p);

// The Markdown table of an outcome's rows.
std::string CalibMarkdownTable(const CalibOutcome& o);

}  // namespace tqlm::eval
