// Every CUDA runtime call is checked: a failure becomes a tqlm::Error naming the call and place.
#pragma once

#include <cuda_runtime.h>

#include <string>

#include "tqlm/error.h"

#define TQLM_CUDA_CHECK(expr)                                                              \
  do {                                                                                     \
    const cudaError_t tqlm_cuda_err_ = (expr);                                             \
    if (tqlm_cuda_err_ != cudaSuccess) {                                                   \
      throw ::tqlm::Error(std::string("CUDA error: ") + cudaGetErrorString(tqlm_cuda_err_) + \
                          " in " #expr " at " __FILE__ ":" + std::to_string(__LINE__));      \
    }                                                                                      \
  } while (0)
