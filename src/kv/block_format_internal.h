// Constructors of the concrete block formats (one file each), for MakeBlockFormat.
#pragma once

#include <memory>

#include "kv/block_format.h"

namespace tqlm::kv {

std::unique_ptr<BlockFormat> MakeF32Format(int dim);
std::unique_ptr<BlockFormat> MakeF16Format(int dim);
std::unique_ptr<BlockFormat> MakeGgmlFormat(int dim, bool q8);
// TurboQuant; nullptr until the codec is available for this configuration.
std::unique_ptr<BlockFormat> MakeTurboFormat(const KvType& type, int dim);

}  // namespace tqlm::kv
