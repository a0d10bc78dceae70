// A loaded model: architecture-specific forward pass over GGUF weights, run by a backend (CPU or
// CUDA, backend/backend.h) that holds the weights and activations. The runtime owns the KV cache
// (made by CreateCache, in the backend's memory) and the thread pool and hands them in.
#pragma once

#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "kv/kv_cache.h"
#include "model/gguf.h"

namespace tqlm::kernels {
class ThreadPool;
}

namespace tqlm::model {

struct ModelInfo {
  std::string arch;          // general.architecture
  std::string name;          // general.name
  int n_vocab = 0;
  int n_embd = 0;
  int n_layer = 0;
  int n_ff = 0;              // feed-forward width
  int n_ctx_train = 0;
  std::vector<kv::LayerGeometry> layers;  // attention geometry per layer (for the KV cache)
  float attn_scale = 0;      // q·k multiplier
  size_t weight_bytes = 0;   // bytes of tensor data the forward pass reads
};

// One sequence's next token in a batched decode step (see Model::ForwardBatch).
struct BatchItem {
  int token = 0;
  kv::KvCache& cache;   // the sequence's cache; the token goes at position cache.n_tokens()
  float* logits;        // out: [n_vocab]
};

// Called with (done, total) while loading.
using ProgressFn = std::function<void(size_t done, size_t total)>;

class Model {
 public:
  // Opens `path` and builds the model for its general.architecture. Throws tqlm::Error for
  // unsupported architectures or missing/ill-shaped tensors.
  // The weights go to `device`'s memory; a model that does not fit there is a tqlm::Error
  // naming the bytes needed, thrown before anything is loaded.
  static std::unique_ptr<Model> Load(const std::string& path, const ProgressFn& progress = {},
                                     backend::Device device = backend::Device::kCpu);
  virtual ~Model() = default;

  const ModelInfo& info() const { return info_; }
  const GgufFile& file() const { return *file_; }
  backend::Backend& backend() const { return *backend_; }

  // A KV cache in the backend's memory, the kind Forward and ForwardBatch take.
  std::unique_ptr<kv::KvCache> CreateCache(const kv::KvCacheConfig& config) const {
    return backend_->CreateCache(config);
  }

  // Runs n tokens at positions [cache.n_tokens(), cache.n_tokens() + n), appending their K/V
  // to `cache` and committing them. Writes logits [n][n_vocab] when all_logits, else only the
  // last token's [n_vocab].
  virtual void Forward(const int* tokens, int n, kv::KvCache& cache, bool all_logits,
                       float* logits, kernels::ThreadPool& pool) = 0;

  // One decode step for several independent sequences at once (continuous batching): each
  // item's token is run at the end of its own cache, which is committed, and its logits
  // written. Every item must have a distinct cache. The default runs Forward per item;
  // families override it so the weight matrices are read once for all sequences.
  virtual void ForwardBatch(std::span<const BatchItem> items, kernels::ThreadPool& pool);

 protected:
  Model(std::unique_ptr<GgufFile> file, std::unique_ptr<backend::Backend> backend)
      : file_(std::move(file)), backend_(std::move(backend)) {}
  // Declared before backend_: the CPU backend points into the file's mapping.
  std::unique_ptr<GgufFile> file_;
  std::unique_ptr<backend::Backend> backend_;
  ModelInfo info_;
};

// One factory per architecture family (each in its own file); Model::Load dispatches on
// general.architecture through the table in model.cc.
std::unique_ptr<Model> CreateLlamaFamily(std::unique_ptr<GgufFile> file,
                                         std::unique_ptr<backend::Backend> backend);
std::unique_ptr<Model> CreateGemma3(std::unique_ptr<GgufFile> file,
                                    std::unique_ptr<backend::Backend> backend);

}  // namespace tqlm::model
