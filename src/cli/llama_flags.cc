#include "cli/llama_flags.h"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <map>
#include <set>

#include "tqlm/error.h"

namespace tqlm::cli {
namespace {

// llama.cpp's single-dash names with a tqlm equivalent.
const std::map<std::string, std::string>& Aliases() {
  static const std::map<std::string, std::string> m = {
      {"-ctk", "--cache-type-k"}, {"-ctv", "--cache-type-v"}, {"-np", "--parallel"},
      {"-fa", "--flash-attn"},    {"-sys", "--system-prompt"}, {"-ngl", "--n-gpu-layers"},
      {"-ngld", "--n-gpu-layers"}, {"-tb", "--threads"},     {"-ub", "--batch-size"},
      {"-cnv", "--conversation"}, {"-no-cnv", "--no-conversation"}, {"-md", "--model-draft"},
  };
  return m;
}

// llama.cpp flags with no tqlm equivalent, and why.
const std::map<std::string, std::string>& Unsupported() {
  static const std::map<std::string, std::string> m = {
      {"-hf", "downloads from Hugging Face: tqlm runs local GGUF files (-m FILE or an installed "
              "name, see tqlm models)"},
      {"-hfr", "downloads from Hugging Face: tqlm runs local GGUF files"},
      {"-mu", "downloads a model URL: tqlm runs local GGUF files"},
      {"-lv", "log verbosity levels are not available"},
  };
  return m;
}

// Flags whose value is free text (a prompt or a path): their value is never read as a flag.
const std::set<std::string>& FreeTextFlags() {
  static const std::set<std::string> s = {"-p", "--prompt", "-f", "--file", "--system",
                                          "--system-prompt", "-sys", "--stop", "-m", "--model",
                                          "-md", "--model-draft"};
  return s;
}

bool IsNumber(const std::string& s) {
  return s.size() > 1 && (std::isdigit(static_cast<unsigned char>(s[1])) || s[1] == '.');
}

}  // namespace

std::vector<std::string> TranslateLlamaCppFlags(std::vector<std::string> args) {
  std::vector<std::string> out;
  bool conversation = false;
  for (size_t i = 0; i < args.size(); ++i) {
    std::string a = args[i];
    const bool after_free_text = i > 0 && FreeTextFlags().count(args[i - 1]) > 0;
    if (i < 2 || after_free_text || a.size() < 3 || a[0] != '-' || a[1] == '-' || IsNumber(a)) {
      out.push_back(a);
      continue;
    }
    std::string value;
    if (const size_t eq = a.find('='); eq != std::string::npos) {
      value = a.substr(eq);
      a = a.substr(0, eq);
    }
    if (auto it = Unsupported().find(a); it != Unsupported().end())
      throw Error(fmt::format("{}: llama.cpp's flag {}", a, it->second));
    auto it = Aliases().find(a);
    if (it == Aliases().end())
      throw Error(fmt::format("unknown flag {} (a single dash takes one letter: -c 4096; long "
                              "flags take two: --ctx-size 4096)", a));
    if (it->second == "--conversation" || it->second == "--no-conversation") {
      conversation = it->second == "--conversation";
      continue;
    }
    out.push_back(it->second + value);
    // llama.cpp's -fa takes on/off/auto in newer versions: the value goes with it.
    if (a == "-fa" && value.empty() && i + 1 < args.size()) {
      const std::string& v = args[i + 1];
      if (v == "on" || v == "off" || v == "auto" || v == "1" || v == "0") ++i;
    }
  }
  // llama-cli -cnv is an interactive chat: `tqlm run -cnv -p SYSTEM` is `tqlm chat --system`.
  if (conversation && out.size() > 1 && out[1] == "run") {
    out[1] = "chat";
    for (std::string& a : out)
      if (a == "-p" || a == "--prompt") a = "--system";
  }
  return out;
}

}  // namespace tqlm::cli
