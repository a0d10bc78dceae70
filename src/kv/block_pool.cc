#include "kv/block_pool.h"

#include <algorithm>
#include <cstdlib>
#include <new>

namespace tqlm::kv {
namespace {
constexpr size_t kAlign = 64;  // one cache line: SIMD loads never straddle two blocks' lines
}

void BlockPool::AlignedFree::operator()(uint8_t* p) const { std::free(p); }

BlockPool::BlockPool(size_t block_bytes)
    : block_bytes_(block_bytes), stride_((block_bytes + kAlign - 1) / kAlign * kAlign) {}

uint32_t BlockPool::Allocate() {
  if (!free_.empty()) {
    const uint32_t id = free_.back();
    free_.pop_back();
    return id;
  }
  if (slab_left_ == 0) {
    const size_t n = slabs_.size();
    slab_blocks_ = n < 2 ? 1 : int(std::min<size_t>(kMaxSlabBlocks, size_t(1) << (n - 1)));
    void* p = std::aligned_alloc(kAlign, stride_ * slab_blocks_);
    if (!p) throw std::bad_alloc();
    slabs_.emplace_back(static_cast<uint8_t*>(p));
    slab_left_ = slab_blocks_;
    bytes_allocated_ += stride_ * slab_blocks_;
  }
  // The newest slab's next unused block.
  uint8_t* p = slabs_.back().get() + stride_ * size_t(slab_blocks_ - slab_left_);
  --slab_left_;
  slots_.push_back(p);
  return uint32_t(slots_.size() - 1);
}

void BlockPool::Free(uint32_t id) { free_.push_back(id); }

}  // namespace tqlm::kv
