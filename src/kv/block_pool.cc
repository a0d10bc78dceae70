#include "kv/block_pool.h"

#include <sys/mman.h>

#include <algorithm>
#include <cstdlib>
#include <new>

#if defined(__has_include)
#if __has_include(<sanitizer/asan_interface.h>)
#include <sanitizer/asan_interface.h>
#endif
#endif
#ifndef ASAN_POISON_MEMORY_REGION
#define ASAN_POISON_MEMORY_REGION(addr, size) ((void)(addr), (void)(size))
#define ASAN_UNPOISON_MEMORY_REGION(addr, size) ((void)(addr), (void)(size))
#endif

namespace tqlm::kv {
namespace {

constexpr size_t kAlign = 64;  // one cache line: SIMD loads never straddle two blocks' lines

#if defined(__SANITIZE_ADDRESS__)
constexpr size_t kRedZone = kAlign;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
constexpr size_t kRedZone = kAlign;
#else
constexpr size_t kRedZone = 0;
#endif
#else
constexpr size_t kRedZone = 0;
#endif

constexpr size_t kPage = 4096;
constexpr size_t kFirstSlabBytes = 64 * 1024;

size_t RoundUp(size_t n, size_t a) { return (n + a - 1) / a * a; }

// TQLM_KV_SLAB_BLOCKS=N caps slabs at N blocks (1: every block in its own mapping, as before
// v9): for A/B measurements (docs/PERF_NOTES.md).
int MaxSlabBlocks() {
  static const int n = [] {
    const char* e = std::getenv("TQLM_KV_SLAB_BLOCKS");
    const int v = e ? std::atoi(e) : BlockPool::kMaxSlabBlocks;
    return std::clamp(v, 1, 1 << 16);
  }();
  return n;
}

}  // namespace

BlockPool::BlockPool(size_t block_bytes)
    : block_bytes_(block_bytes), stride_(RoundUp(block_bytes, kAlign) + kRedZone) {}

BlockPool::~BlockPool() {
  for (const Slab& s : slabs_) {
    ASAN_UNPOISON_MEMORY_REGION(s.p, s.bytes);
    munmap(s.p, s.bytes);
  }
}

uint32_t BlockPool::Allocate() {
  if (!free_.empty()) {
    const uint32_t id = free_.back();
    free_.pop_back();
    return id;
  }
  if (slab_left_ == 0) {
    // The first slab holds about 64 KiB, each next one twice as many blocks as the last, up
    // to the cap: a stream's blocks are contiguous within a slab, and the part of a page left
    // over at a slab's end (at most one page per slab, a few slabs per stream) stays small
    // against the blocks in use.
    const int first = int(std::max<size_t>(1, kFirstSlabBytes / stride_));
    const int blocks = slabs_.empty() ? std::min(first, MaxSlabBlocks())
                                      : std::min(2 * slab_blocks_, MaxSlabBlocks());
    // Whole pages from the kernel, mapped on first touch: the tail of a slab costs address
    // space, not memory, until its blocks are handed out and written.
    const size_t bytes = RoundUp(stride_ * size_t(blocks), kPage);
    slabs_.reserve(slabs_.size() + 1);  // so that push_back cannot throw and leak the mapping
    void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) throw std::bad_alloc();
    slabs_.push_back({static_cast<uint8_t*>(p), bytes});
    ASAN_POISON_MEMORY_REGION(p, bytes);
    slab_blocks_ = blocks;
    slab_left_ = blocks;
  }
  // The newest slab's next unused block.
  uint8_t* p = slabs_.back().p + stride_ * size_t(slab_blocks_ - slab_left_);
  slots_.push_back(p);
  --slab_left_;
  ASAN_UNPOISON_MEMORY_REGION(p, stride_ - kRedZone);
  return uint32_t(slots_.size() - 1);
}

size_t BlockPool::bytes_reserved() const {
  size_t n = 0;
  for (const Slab& s : slabs_) n += s.bytes;
  return n;
}

size_t BlockPool::bytes_allocated() const { return (stride_ - kRedZone) * slots_.size(); }

void BlockPool::Free(uint32_t id) { free_.push_back(id); }

}  // namespace tqlm::kv
