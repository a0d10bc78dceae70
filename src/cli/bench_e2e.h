// `tqlm bench e2e` (bench_e2e.cc), a subcommand of `tqlm bench` (bench_cmd.cc).
#pragma once

#include <CLI/CLI.hpp>
#include <string>
#include <vector>

#include "cli/common_flags.h"

namespace tqlm::cli {

struct E2eFlags {
  ModelFlags model;
  std::vector<int> ctx = {512};
  std::vector<std::string> kv = {"f16/f16"};
  int decode_tokens = 32;
  std::vector<int> prefill;
  std::string check_file;
  std::string check_kv = "f16/f16";  // KV configuration of both --check runs (K/V or auto)
  int check_tokens = 2048;
  int check_invariance = 96;
  bool json = false;
  CLI::App* subcommand = nullptr;
};

void AddBenchE2e(CLI::App& bench, E2eFlags& flags);
int RunBenchE2e(const E2eFlags& flags);

}  // namespace tqlm::cli
