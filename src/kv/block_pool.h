// Fixed-size memory blocks for the paged KV cache. A sequence's K or V of one layer and KV head
// is a list of block ids; growing appends a block, truncating or sliding a window frees blocks
// back to the pool, and freed blocks are reused before new memory is taken. Block addresses
// never move, so kernels may hold raw pointers for the duration of a call.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

namespace tqlm::kv {

class BlockPool {
 public:
  explicit BlockPool(size_t block_bytes);
  BlockPool(const BlockPool&) = delete;
  BlockPool& operator=(const BlockPool&) = delete;

  size_t block_bytes() const { return block_bytes_; }
  uint32_t Allocate();
  void Free(uint32_t id);
  uint8_t* data(uint32_t id) { return blocks_[id].get(); }
  const uint8_t* data(uint32_t id) const { return blocks_[id].get(); }

  size_t blocks_in_use() const { return blocks_.size() - free_.size(); }
  // Memory held from the allocator (blocks in use plus freed blocks kept for reuse).
  size_t bytes_allocated() const { return n_allocated_ * block_bytes_; }
  // Returns freed blocks to the allocator (ids of blocks in use stay valid).
  void ReleaseFree();

 private:
  struct AlignedFree {
    void operator()(uint8_t* p) const;
  };
  size_t block_bytes_;
  std::vector<std::unique_ptr<uint8_t[], AlignedFree>> blocks_;
  std::vector<uint32_t> free_;
  size_t n_allocated_ = 0;  // blocks holding memory
};

}  // namespace tqlm::kv
