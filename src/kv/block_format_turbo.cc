// TurboQuant block layouts (placeholder until the codec lands).
#include "kv/block_format_internal.h"

namespace tqlm::kv {
std::unique_ptr<BlockFormat> MakeTurboFormat(const KvType&, int) { return nullptr; }
}  // namespace tqlm::kv
