// Subcommands register themselves: each src/cli/<name>_cmd.cc defines one static
// CommandRegistration, so adding a command never edits main.cc.
#pragma once

#include <CLI/CLI.hpp>
#include <functional>
#include <string>
#include <vector>

namespace tqlm::cli {

// Adds the subcommand's flags to `app` and returns the action to run when it was chosen.
// The action returns the process exit code.
using CommandSetup = std::function<std::function<int()>(CLI::App& app)>;

struct CommandInfo {
  std::string name;
  std::string description;
  CommandSetup setup;
};

std::vector<CommandInfo>& CommandRegistry();

struct CommandRegistration {
  CommandRegistration(std::string name, std::string description, CommandSetup setup) {
    CommandRegistry().push_back({std::move(name), std::move(description), std::move(setup)});
  }
};

}  // namespace tqlm::cli
