// Free memory of a device, for planning (`tqlm plan --device cuda`): declared apart from
// backend.h so that the planner does not need a backend object or CUDA headers.
#pragma once

#include <cstddef>

#include "backend/backend.h"

namespace tqlm::backend {

// Bytes free on the device now. Throws tqlm::Error for cuda when this build has no CUDA or no
// GPU is visible; 0 for the CPU (host memory is budgeted by --memory).
size_t DeviceFreeBytes(Device device);

}  // namespace tqlm::backend
