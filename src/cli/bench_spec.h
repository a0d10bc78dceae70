// `tqlm bench spec` (bench_spec.cc), a subcommand of `tqlm bench` (bench_cmd.cc).
#pragma once

#include <CLI/CLI.hpp>
#include <string>
#include <vector>

#include "cli/common_flags.h"

namespace tqlm::cli {

struct SpecBenchFlags {
  ModelFlags model;
  SpecFlags spec;  // --model-draft adds the draft column; --spec-max etc. tune both modes
  std::vector<std::string> kv = {"f16", "auto"};
  std::vector<std::string> tasks = {"code", "prose", "qa"};
  std::string code_file = "src/runtime/sampler.cc";
  std::string rename_from = "candidates_", rename_to = "pool_";
  int code_tokens = 256, prose_tokens = 128, qa_tokens = 96;
  int rounds = 1;
  bool json = false;
  CLI::App* subcommand = nullptr;
};

void AddBenchSpec(CLI::App& bench, SpecBenchFlags& flags);
int RunBenchSpec(const SpecBenchFlags& flags);

}  // namespace tqlm::cli
