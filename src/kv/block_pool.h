// Fixed-size memory blocks for the paged KV cache. A sequence's K or V of one layer and KV head
// is a list of block ids; growing appends a block, truncating or sliding a window frees blocks
// back to the pool, and freed blocks are reused before new memory is taken. Block addresses
// never move, so kernels may hold raw pointers for the duration of a call.
//
// Blocks are carved from slabs that may grow geometrically (1, 1, 2, 4, ... up to
// kMaxSlabBlocks blocks), so that a pool serving one stream (one layer, tensor and KV head) can
// lay that stream's blocks out contiguously. kMaxSlabBlocks = 1 (one allocation per block)
// because contiguous slabs of 16 blocks measured no faster (docs/PERF_NOTES.md) while they
// would make bytes_allocated run ahead of the bytes in use.
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
  uint8_t* data(uint32_t id) { return slots_[id]; }
  const uint8_t* data(uint32_t id) const { return slots_[id]; }

  size_t blocks_in_use() const { return slots_.size() - free_.size(); }
  // Memory held from the allocator: every slab, including slots not handed out yet.
  size_t bytes_allocated() const { return bytes_allocated_; }

  static constexpr int kMaxSlabBlocks = 1;

 private:
  struct AlignedFree {
    void operator()(uint8_t* p) const;
  };
  size_t block_bytes_;
  size_t stride_;  // block_bytes rounded up to a cache line
  std::vector<std::unique_ptr<uint8_t[], AlignedFree>> slabs_;
  std::vector<uint8_t*> slots_;  // address of every block handed out so far, by id
  std::vector<uint32_t> free_;
  int slab_blocks_ = 0;          // size of the newest slab
  int slab_left_ = 0;            // unused blocks at the end of the newest slab
  size_t bytes_allocated_ = 0;
};

}  // namespace tqlm::kv
