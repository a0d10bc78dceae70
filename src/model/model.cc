#include "model/model.h"

#include <fmt/format.h>

#include <map>

#include "tqlm/error.h"

namespace tqlm::model {
namespace {
using Factory = std::unique_ptr<Model> (*)(std::unique_ptr<GgufFile>,
                                           std::unique_ptr<backend::Backend>);
const std::map<std::string, Factory>& Registry() {
  static const std::map<std::string, Factory> registry = {
      {"gemma3", CreateGemma3},
      {"llama", CreateLlamaFamily},
      {"mistral", CreateLlamaFamily},
      {"qwen2", CreateLlamaFamily},
      {"qwen3", CreateLlamaFamily},
  };
  return registry;
}
}  // namespace

std::unique_ptr<Model> Model::Load(const std::string& path, const ProgressFn& progress,
                                   backend::Device device) {
  auto file = GgufFile::Open(path);
  const std::string arch = file->GetString("general.architecture");
  auto it = Registry().find(arch);
  if (it == Registry().end()) {
    std::string known;
    for (const auto& [name, _] : Registry()) known += (known.empty() ? "" : ", ") + name;
    throw Error(fmt::format("{}: unsupported architecture '{}' (supported: {})", path, arch, known));
  }
  size_t total = 0;
  for (const auto& t : file->tensors()) total += t.nbytes;
  auto backend = backend::Backend::Create(device);
  if (device != backend::Device::kCpu) {
    // Weights are copied to the device as the family loads them; room for all of them is
    // taken first, so a model that does not fit fails here with nothing half-loaded.
    backend->ReserveWeights(total);
    auto model = it->second(std::move(file), std::move(backend));
    if (progress) progress(total, total);
    return model;
  }
  // Touch the weights once so the load cost is paid (and shown) here, not in the first token.
  size_t done = 0;
  volatile uint8_t sink = 0;
  for (const auto& t : file->tensors()) {
    const auto* p = static_cast<const uint8_t*>(t.data);
    for (size_t i = 0; i < t.nbytes; i += 4096) sink = sink + p[i];
    done += t.nbytes;
    if (progress) progress(done, total);
  }
  return it->second(std::move(file), std::move(backend));
}

void Model::ForwardBatch(std::span<const BatchItem> items, kernels::ThreadPool& pool) {
  for (const BatchItem& item : items) Forward(&item.token, 1, item.cache, false, item.logits, pool);
}

}  // namespace tqlm::model
