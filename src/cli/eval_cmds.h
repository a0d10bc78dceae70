// `tqlm eval …` subcommands (eval_cmd.cc registers them): their flags and entry points, and
// what they share (cache paths, the configuration fields every results row carries).
#pragma once

#include <nlohmann/json.hpp>

#include <memory>
#include <string>
#include <vector>

#include "cli/common_flags.h"
#include "eval/sweep.h"

namespace tqlm::cli {

struct PplFlags {
  ModelFlags model;
  std::string file;
  int chunks = 8;
  std::string dump;         // single-configuration mode: token ids and per-token scores
  bool json = false;
  std::string kv_list;      // sweep mode: KV configurations (eval/kv_configs.h)
  std::string results = "tqlm_eval_ppl.jsonl";
  std::string table_md;     // also write the Markdown Pareto table here
  std::string summary;      // also write the table as JSONL here
  std::string dump_tokens;  // write the windows' token ids + config keys, then exit
  std::string ref_model;    // score -m against this model's logits (weights vs their source)
  std::vector<std::string> compare;  // score these against -m's logits
  std::string ref_numerics;  // sweep: the f16 reference's matmul numerics (empty: --numerics)
};

struct NiahFlags {
  ModelFlags model;
  std::string file;  // filler corpus (default: the installed Emma)
  std::string kv_list = "f16/f16,q4_0/q4_0,tq4/tq3,tq3/tq3";
  std::vector<std::string> lengths = {"1024", "2048"};
  std::vector<double> depths = {0.1, 0.3, 0.5, 0.7, 0.9};
  int trials = 1;
  uint64_t seed = 1;
  int max_answer = 24;
  std::string results = "tqlm_eval_niah.jsonl";
  std::string table_md;
  std::string summary;
};

struct ToolsFlags {
  ModelFlags model;
  std::string file;  // filler corpus (default: the installed Emma)
  std::string kv_list = "f16/f16,tq3/tq2,tq4/tq3,tq8/tq3,tq3/tq3";
  std::vector<double> ratios = {0, 0.1, 0.25, 0.4, 0.5, 0.6, 0.75, 1.0};
  std::vector<int> lengths = {512, 1024};
  uint64_t seed = 1;
  int seeds = 1;  // filler texts per cell: seed, seed+1, ...
  int max_new = 96;
  std::string results = "tqlm_eval_tools.jsonl";
  std::string table_md;
  std::string summary;    // per configuration and length: verdicts and cliff (JSONL)
  std::string csv;        // leaderboard
  std::string cells_csv;  // one line per cell
};

int RunPerplexity(const PplFlags& f);      // eval_ppl.cc
int RunNiah(const NiahFlags& f);           // eval_niah.cc
int RunEvalTools(const ToolsFlags& f);     // eval_tools.cc
// `eval tools` and its flags (eval_tools.cc).
CLI::App* AddToolsCommand(CLI::App& eval, ToolsFlags& f);

// Shared by the eval commands (eval_common.cc).
std::string CacheDir();                          // ~/.cache/tqlm or $TQLM_CACHE
std::string ModelPathOf(const ModelFlags& f);    // -m or the default model
std::string ReadTextFile(const std::string& path);
std::string ModelSha256(const std::string& path);  // cached by size and mtime
// Fields every cell's configuration starts with (engine, version, protocol, model hash).
nlohmann::json BaseCellConfig(const std::string& task, const std::string& model_path);
// A progress bar for a sweep, and the one-line report after it (returns the exit code).
// Within(cell, f) moves the bar to fraction f of the running cell, for cells that take minutes
// (a 16K-token needle prompt); Callback() is what RunSweep calls between cells.
class SweepProgressBar {
 public:
  explicit SweepProgressBar(const std::string& label);
  eval::SweepProgress Callback();
  void Within(const eval::SweepCell& cell, double fraction);

 private:
  struct State;
  std::shared_ptr<State> state_;
};
eval::ResultsFile OpenResults(const std::string& path);  // reports a truncated last line
// The rows that tables may summarize: every row of another engine, and tqlm's only where they
// were made by this version with this key-centering setting and the current layout of their
// KV types (older rows stay in the file).
// `numerics`: the signature the rows must carry (empty: kernels::NumericsSignature()).
std::vector<nlohmann::json> CurrentRows(const eval::ResultsFile& results,
                                        const std::string& numerics = {});
int ReportSweep(const eval::SweepSummary& s, const eval::ResultsFile& results);
void WriteTextFile(const std::string& path, const std::string& text);

}  // namespace tqlm::cli
