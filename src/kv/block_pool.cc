#include "kv/block_pool.h"

#include <cstdlib>
#include <new>

namespace tqlm::kv {
namespace {
constexpr size_t kAlign = 64;  // one cache line: SIMD loads never straddle two blocks' lines
}

void BlockPool::AlignedFree::operator()(uint8_t* p) const { std::free(p); }

BlockPool::BlockPool(size_t block_bytes) : block_bytes_(block_bytes) {}

uint32_t BlockPool::Allocate() {
  if (!free_.empty()) {
    const uint32_t id = free_.back();
    free_.pop_back();
    if (!blocks_[id]) {
      void* p = std::aligned_alloc(kAlign, (block_bytes_ + kAlign - 1) / kAlign * kAlign);
      if (!p) throw std::bad_alloc();
      blocks_[id].reset(static_cast<uint8_t*>(p));
      ++n_allocated_;
    }
    return id;
  }
  void* p = std::aligned_alloc(kAlign, (block_bytes_ + kAlign - 1) / kAlign * kAlign);
  if (!p) throw std::bad_alloc();
  blocks_.emplace_back(static_cast<uint8_t*>(p));
  ++n_allocated_;
  return uint32_t(blocks_.size() - 1);
}

void BlockPool::Free(uint32_t id) { free_.push_back(id); }

void BlockPool::ReleaseFree() {
  for (uint32_t id : free_) {
    if (blocks_[id]) --n_allocated_;
    blocks_[id].reset();
  }
}

}  // namespace tqlm::kv
