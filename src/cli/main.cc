// The `tqlm` command: parses the subcommand and its flags (CLI11), runs it, and turns every
// tqlm::Error into one clear line on stderr and a non-zero exit.
#include <algorithm>
#include <cstdio>
#include <exception>
#include <string>
#include <vector>

#include "cli/command.h"
#include "cli/llama_flags.h"
#include "tqlm/error.h"

namespace tqlm::cli {
std::vector<CommandInfo>& CommandRegistry() {
  static std::vector<CommandInfo> registry;
  return registry;
}
}  // namespace tqlm::cli

int main(int argc, char** argv) {
  using namespace tqlm::cli;
  CLI::App app{"tqlm: local LLM inference with a TurboQuant-compressed KV cache"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "tqlm " TQLM_VERSION);
  auto& registry = CommandRegistry();
  std::sort(registry.begin(), registry.end(),
            [](const CommandInfo& a, const CommandInfo& b) { return a.name < b.name; });
  std::vector<std::pair<CLI::App*, std::function<int()>>> actions;
  for (const auto& cmd : registry) {
    CLI::App* sub = app.add_subcommand(cmd.name, cmd.description);
    actions.emplace_back(sub, cmd.setup(*sub));
  }
  std::vector<std::string> args;
  try {
    args = TranslateLlamaCppFlags(std::vector<std::string>(argv, argv + argc));
  } catch (const tqlm::Error& e) {
    std::fprintf(stderr, "tqlm: error: %s\n", e.what());
    return 1;
  }
  try {
    // CLI11 takes the arguments in reverse order, program name excluded.
    std::vector<std::string> rev(args.rbegin(), args.rend() - 1);
    app.parse(rev);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  try {
    for (auto& [sub, action] : actions)
      if (sub->parsed()) return action();
  } catch (const tqlm::Error& e) {
    std::fprintf(stderr, "tqlm: error: %s\n", e.what());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "tqlm: internal error: %s\n", e.what());
    return 2;
  }
  return 0;
}
