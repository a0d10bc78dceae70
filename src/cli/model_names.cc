#include "cli/model_names.h"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <filesystem>

#include "tqlm/error.h"

namespace tqlm::cli {
namespace fs = std::filesystem;

std::string ModelCacheDir() {
  if (const char* c = std::getenv("TQLM_CACHE")) return std::string(c) + "/models";
  const char* home = std::getenv("HOME");
  return std::string(home ? home : ".") + "/.cache/tqlm/models";
}

const std::vector<ModelAlias>& ModelAliases() {
  static const std::vector<ModelAlias> aliases = {
      {"smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"},
      {"qwen2.5-coder-1.5b", "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"},
      {"gemma3-270m", "gemma-3-270m-q4_k_m.gguf"},
      {"qwen2.5-coder-0.5b", "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"},  // draft model (--extra)
  };
  return aliases;
}

std::vector<std::string> InstalledModels() {
  std::vector<std::string> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(ModelCacheDir(), ec)) {
    if (e.is_regular_file(ec) && e.path().extension() == ".gguf") out.push_back(e.path().filename());
  }
  std::sort(out.begin(), out.end());
  return out;
}

namespace {

std::string Lower(std::string s) {
  for (char& c : s) c = char(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

}  // namespace

std::string ResolveModel(const std::string& name) {
  std::error_code ec;
  if (name.empty() || fs::is_regular_file(name, ec)) return name;
  const std::string dir = ModelCacheDir();
  const std::vector<std::string> installed = InstalledModels();
  auto in_cache = [&](const std::string& file) -> std::string {
    return std::find(installed.begin(), installed.end(), file) != installed.end()
               ? dir + "/" + file : "";
  };
  // A path that does not exist stays a path: the loader says it cannot open it.
  if (name.find('/') == std::string::npos) {
    for (const std::string& f : {name, name + ".gguf"})
      if (std::string p = in_cache(f); !p.empty()) return p;
    for (const ModelAlias& a : ModelAliases())
      if (Lower(name) == a.alias) {
        if (std::string p = in_cache(a.file); !p.empty()) return p;
        throw Error(fmt::format("model '{}' ({}) is not installed in {} (scripts/fetch_data.sh "
                                "--extra installs it)", name, a.file, dir));
      }
    std::vector<std::string> prefixed;
    for (const std::string& f : installed)
      if (Lower(f).rfind(Lower(name), 0) == 0) prefixed.push_back(f);
    if (prefixed.size() == 1) return dir + "/" + prefixed[0];
    std::string list;
    for (const std::string& f : prefixed.size() > 1 ? prefixed : installed) list += "\n  " + f;
    if (prefixed.size() > 1)
      throw Error(fmt::format("model '{}' matches several installed models:{}", name, list));
    throw Error(fmt::format("no model '{}': not a file, and not an installed model or alias "
                            "(tqlm models lists them); installed in {}:{}", name, dir,
                            list.empty() ? " none" : list));
  }
  return name;
}

}  // namespace tqlm::cli
