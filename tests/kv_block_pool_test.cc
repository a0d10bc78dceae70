// BlockPool: blocks of one pool are laid out contiguously in allocation order (what lets decode
// attention read a stream sequentially), aligned to cache lines, reused after Free, and counted
// as handed out rather than as reserved.
#include <gtest/gtest.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

#include "kv/block_pool.h"

namespace tqlm::kv {
namespace {

TEST(BlockPool, BlocksOfAStreamAreContiguousAndAligned) {
  const size_t block = 4224;  // a tq4 K block at head dim 128: 66 cache lines exactly
  BlockPool pool(block);
  std::vector<uint32_t> ids;
  for (int i = 0; i < 600; ++i) ids.push_back(pool.Allocate());
  // The distance between neighbours in one slab (ids 2 and 3 share the third slab): the block
  // rounded up to a cache line, plus a red zone in AddressSanitizer builds.
  const ptrdiff_t stride = pool.data(ids[3]) - pool.data(ids[2]);
  EXPECT_GE(stride, ptrdiff_t(block));
  EXPECT_LE(stride, ptrdiff_t(block + 64));
  int adjacent = 0;
  for (size_t i = 0; i < ids.size(); ++i) {
    uint8_t* p = pool.data(ids[i]);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(p) % 64, 0u);
    std::memset(p, int(i & 0xff), block);  // every byte of every block is writable
    if (i > 0 && pool.data(ids[i - 1]) + stride == p) ++adjacent;
  }
  for (size_t i = 0; i < ids.size(); ++i)
    EXPECT_EQ(pool.data(ids[i])[block - 1], uint8_t(i & 0xff));
  // Slabs of 15, 30, 60, 120, 240, 256 blocks: only a slab's first block may start elsewhere.
  EXPECT_GE(adjacent, 600 - 1 - 10);
  EXPECT_EQ(pool.bytes_allocated(), 600 * block);
  // Geometric slabs reserve at most about twice what is handed out.
  EXPECT_GE(pool.bytes_reserved(), pool.bytes_allocated());
  EXPECT_LE(pool.bytes_reserved(), 2 * pool.bytes_allocated() + 256 * 4096);
}

TEST(BlockPool, FreedBlocksAreReusedBeforeNewMemory) {
  BlockPool pool(100);  // rounded up to 128 bytes per block
  const uint32_t a = pool.Allocate(), b = pool.Allocate();
  EXPECT_NE(pool.data(a), pool.data(b));
  EXPECT_EQ(pool.bytes_allocated(), 2 * 128u);
  pool.Free(a);
  EXPECT_EQ(pool.blocks_in_use(), 1u);
  EXPECT_EQ(pool.Allocate(), a);
  EXPECT_EQ(pool.blocks_in_use(), 2u);
  EXPECT_EQ(pool.bytes_allocated(), 2 * 128u);
}

}  // namespace
}  // namespace tqlm::kv
