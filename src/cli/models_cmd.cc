// `tqlm models`: the models installed in the model cache, with what a user picks one by.
#include <fmt/format.h>

#include <cstdio>
#include <map>
#include <memory>
#include <string>

#include "cli/command.h"
#include "cli/model_names.h"
#include "model/gguf.h"
#include "tqlm/error.h"

namespace tqlm::cli {
namespace {

// The weight format most of the file's bytes are in, e.g. "Q4_K".
std::string MainTensorType(const model::GgufFile& f) {
  std::map<std::string, size_t> bytes;
  for (const model::GgufTensor& t : f.tensors())
    bytes[std::string(kernels::TypeName(t.type))] += t.nbytes;
  std::string best;
  size_t most = 0;
  for (const auto& [name, b] : bytes)
    if (b > most) {
      most = b;
      best = name;
    }
  return best;
}

int ListModels() {
  const std::vector<std::string> files = InstalledModels();
  std::printf("models in %s\n", ModelCacheDir().c_str());
  if (files.empty()) {
    std::printf("  (none: scripts/fetch_data.sh installs the default model, --extra the others)\n");
    return 0;
  }
  std::printf("%-42s %-20s %-8s %9s %-6s %8s %-5s\n", "file", "alias", "arch", "size", "quant",
              "context", "chat");
  for (const std::string& file : files) {
    std::string alias = "-";
    for (const ModelAlias& a : ModelAliases())
      if (file == a.file) alias = a.alias;
    try {
      auto f = model::GgufFile::Open(ModelCacheDir() + "/" + file);
      const std::string arch = f->GetString("general.architecture", "?");
      const uint32_t ctx = f->GetU32(arch + ".context_length", 0);
      const bool chat = !f->GetString("tokenizer.chat_template", "").empty();
      std::printf("%-42s %-20s %-8s %6.0f MB %-6s %8u %-5s\n", file.c_str(), alias.c_str(),
                  arch.c_str(), f->file_size() / 1e6, MainTensorType(*f).c_str(), ctx,
                  chat ? "yes" : "no");
    } catch (const Error& e) {
      std::printf("%-42s (unreadable: %s)\n", file.c_str(), e.what());
    }
  }
  return 0;
}

CommandRegistration reg("models", "list the installed models (names -m accepts)",
                        [](CLI::App&) { return [] { return ListModels(); }; });

}  // namespace
}  // namespace tqlm::cli
