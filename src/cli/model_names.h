// Models by name: `-m` takes a path, or the file name (with or without .gguf) or short alias of
// a model installed in the model cache (<cache>/models); `tqlm models` lists what is there.
#pragma once

#include <string>
#include <vector>

namespace tqlm::cli {

// <cache>/models ($TQLM_CACHE, else ~/.cache/tqlm).
std::string ModelCacheDir();

struct ModelAlias {
  const char* alias;
  const char* file;
};
// The short names of the models the setup installs.
const std::vector<ModelAlias>& ModelAliases();

// The path `name` stands for: an existing file as given; else an installed model by file name,
// file name without .gguf, alias, or a case-insensitive prefix of exactly one installed file.
// Throws tqlm::Error listing the installed models when nothing matches.
std::string ResolveModel(const std::string& name);

// Installed model files (*.gguf in ModelCacheDir()), sorted.
std::vector<std::string> InstalledModels();

}  // namespace tqlm::cli
