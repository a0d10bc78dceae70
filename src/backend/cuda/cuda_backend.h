// The CUDA backend: weights in GPU memory in their GGUF formats, activations in GPU memory, the
// ops of kernels.h on one stream, and an f16 KV cache in GPU memory (cuda_kv_cache.h).
#pragma once

#include <cstddef>
#include <memory>

#include "backend/backend.h"

namespace tqlm::backend {

// GPUs visible to this process (0 when there is no driver or no device).
int CudaDeviceCount();
// Free bytes on GPU 0; throws tqlm::Error when no GPU is visible.
size_t CudaFreeBytes();
// Throws tqlm::Error when no GPU is visible.
std::unique_ptr<Backend> CreateCudaBackend();

}  // namespace tqlm::backend
