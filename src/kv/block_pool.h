// Fixed-size memory blocks for the paged KV cache. A sequence's K or V of one layer and KV head
// is a list of block ids; growing appends a block, truncating or sliding a window frees blocks
// back to the pool, and freed blocks are reused before new memory is taken. Block addresses
// never move, so kernels may hold raw pointers for the duration of a call.
//
// Blocks are carved in order from slabs of anonymous pages that grow geometrically (about 64
// KiB first, then twice as many blocks each time, up to kMaxSlabBlocks blocks), so a pool
// serving one stream (one layer, tensor and KV head) lays that stream's blocks out
// contiguously: decode attention then reads each stream sequentially, which lets the L2
// streamer fetch ahead beyond the software prefetches (32K tq4/tq3: docs/PERF_NOTES.md v9).
// The untouched tail of a slab is address space only: the kernel maps its pages when a block
// is first written, so bytes_allocated counts the blocks handed out, not the slabs' sizes.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace tqlm::kv {

class BlockPool {
 public:
  explicit BlockPool(size_t block_bytes);
  ~BlockPool();
  BlockPool(const BlockPool&) = delete;
  BlockPool& operator=(const BlockPool&) = delete;

  size_t block_bytes() const { return block_bytes_; }
  uint32_t Allocate();
  void Free(uint32_t id);
  uint8_t* data(uint32_t id) { return slots_[id]; }
  const uint8_t* data(uint32_t id) const { return slots_[id]; }

  size_t blocks_in_use() const { return slots_.size() - free_.size(); }
  // Memory the pool has handed out (each block rounded up to a cache line), freed blocks
  // included: they stay with the pool for reuse.
  size_t bytes_allocated() const;
  // Address space reserved for slabs (>= bytes_allocated; for tests and diagnostics).
  size_t bytes_reserved() const;

  static constexpr int kMaxSlabBlocks = 256;

 private:
  struct Slab {
    uint8_t* p;
    size_t bytes;
  };
  size_t block_bytes_;
  size_t stride_;  // block_bytes rounded up to a cache line (plus a red zone under ASan)
  std::vector<Slab> slabs_;
  std::vector<uint8_t*> slots_;  // address of every block handed out so far, by id
  std::vector<uint32_t> free_;
  int slab_blocks_ = 0;          // size of the newest slab
  int slab_left_ = 0;            // unused blocks at the end of the newest slab
};

}  // namespace tqlm::kv
