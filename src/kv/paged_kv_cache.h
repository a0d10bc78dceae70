// The KvCache implementation: paged block storage per layer, tensor (K, V) and KV head.
//
// Positions of one layer fall in three regions:
//   sinks   [0, S)                   full precision (raw blocks), S = sink_tokens
//   main    [S, ...)                 block b covers [S + 64 b, S + 64 b + 64):
//             blocks [first_live, n_comp) are compressed, blocks from n_comp on are raw.
// A query at position p sees main block b compressed exactly when p >= end_b + recent_tokens
// (end_b = S + 64 b + 64): the representation of every token it attends to depends only on p,
// never on how the tokens were split into steps (issue 22). Blocks are compressed for good at
// the first Append whose committed length reaches that bound; a block that crosses it inside
// a step (a chunk of several queries) is encoded ahead into a "pending" compressed copy, which
// the step's later queries read while its earlier ones read the raw block, and which is adopted
// when the block is compressed. So between recent_tokens and recent_tokens + 63 committed tokens
// (plus the current step's) stay full precision. f32/f16 caches have no sinks, never compress.
// Sliding-window layers free blocks that no future query can see.
#pragma once

#include <map>
#include <string>
#include <tuple>
#include <memory>
#include <vector>

#include "kv/block_format.h"
#include "kv/block_pool.h"
#include "kv/kv_cache.h"

namespace tqlm::kv {

inline constexpr uint32_t kNoBlock = 0xffffffffu;

class PagedKvCache final : public KvCache {
 public:
  explicit PagedKvCache(const KvCacheConfig& config);
  ~PagedKvCache() override;

  int n_tokens() const override { return n_tokens_; }
  void Append(int layer, const float* k, const float* v, int n) override;
  void Attend(int layer, const float* q, int n, float* out, kernels::ThreadPool& pool) override;
  void Commit(int n) override;
  void Truncate(int n) override;
  KvMemoryStats MemoryStats() const override;
  int LosslessTruncationPoint(int n) const override;
  std::unique_ptr<KvCache> Clone() const override;

  // One tensor (K or V) of one layer.
  struct Tensor {
    const BlockFormat* comp = nullptr;  // format of compressed blocks (== raw if uncompressed)
    const BlockFormat* raw = nullptr;
    // One pool per KV head (per stream), so each head's blocks lie contiguously in slabs.
    std::vector<std::shared_ptr<BlockPool>> comp_pool, raw_pool;
    std::vector<std::vector<uint32_t>> sinks;  // [kv head] raw blocks of [0, S)
    std::vector<std::vector<uint32_t>> main;   // [kv head] blocks of [S, ...)
    // [kv head][i]: compressed copy of main block n_comp + i, encoded ahead (see above).
    std::vector<std::vector<uint32_t>> pending;
  };
  struct Layer {
    LayerGeometry geom;
    int sinks = 0;        // S for this layer
    bool compress = false;
    int n_written = 0;    // tokens stored (committed + the current step's)
    int n_comp = 0;       // main blocks [0, n_comp) are compressed (or freed)
    int n_pending = 0;    // main blocks [n_comp, n_comp + n_pending) have pending copies
    Tensor k, v;
  };

  const KvCacheConfig& config() const { return config_; }
  const Layer& layer(int i) const { return layers_[i]; }

 private:
  PagedKvCache(const PagedKvCache& other);
  static void MakePools(Tensor& t, int n_heads);
  const BlockFormat* FormatFor(const KvType& type, int dim, TensorRole role);
  void CompressBlock(Layer& L, int b);
  void CompressBlock(Tensor& t, int head, int b, uint32_t pending);
  uint32_t EncodeCompressed(Tensor& t, int head, uint32_t raw_id);
  void EncodePending(Layer& L, int last_query);
  void DropPending(Layer& L);
  void FreeInvisible(Layer& L, int first_needed);
  uint32_t NewRawBlock(Tensor& t, int head);
  void WriteTokens(Layer& L, Tensor& t, const float* x, int pos, int n);
  void TruncateLayer(Layer& L, int n);
  void ClearRawTail(Tensor& t, int head, uint32_t id, int from);

  KvCacheConfig config_;
  int n_tokens_ = 0;
  std::map<std::tuple<int, std::string, TensorRole>, std::unique_ptr<BlockFormat>> formats_;
  std::vector<Layer> layers_;
  std::vector<float> tmp_;  // decoded rows when a compressed block is cut by Truncate
  struct AttendScratch {
    KernelScratch kernel;
    // Queries of rows [prepared_ra, prepared_rb) prepared for one format, reused by the
    // segments that read the same rows in the same format.
    PreparedQueries q_prepared;
    const BlockFormat* prepared_fmt = nullptr;
    int prepared_ra = 0, prepared_rb = 0;
    std::vector<float> q_rows;
    std::vector<float> scores;
  };
  std::vector<std::unique_ptr<AttendScratch>> scratch_;  // per pool thread
  std::vector<float> task_states_;                       // softmax states of Attend's tasks
};

}  // namespace tqlm::kv
