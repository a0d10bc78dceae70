// The CPU backend: today's kernels (kernels/cpu) on host memory, unchanged. Weights stay in the
// GGUF mapping; activations are 64-byte aligned host arrays; the KV cache is kv::PagedKvCache.
#pragma once

#include <memory>

#include "backend/backend.h"

namespace tqlm::backend {

std::unique_ptr<Backend> CreateCpuBackend();

}  // namespace tqlm::backend
