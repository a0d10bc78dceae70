// Byte-pair merging within one pre-tokenized piece: repeatedly merge the adjacent pair with the
// lowest merge rank (leftmost first among equal ranks) until no pair has a merge. Runs in
// O(n log n) per piece with a priority queue of candidate pairs over a linked list of symbols;
// stale candidates (a side already merged away) are skipped when popped.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "tokenizer/vocab.h"

namespace tqlm::tokenizer {

class BpeMerger {
 public:
  struct Merge {
    int32_t rank = 0;
    TokenId result = kNoToken;
  };

  BpeMerger() = default;

  // Adds the merge "left right" at `rank` (ids of the two sides and of their concatenation).
  // The first rank given for a pair wins, as in llama.cpp.
  void Add(TokenId left, TokenId right, int32_t rank, TokenId result);

  // The merge for an adjacent pair, or nullptr.
  const Merge* Find(TokenId left, TokenId right) const;

  // Merges `symbols` (initial token ids, one per byte) and appends the resulting ids to `out`.
  void Apply(const std::vector<TokenId>& symbols, std::vector<TokenId>* out) const;

  void Reserve(size_t n) { merges_.reserve(n); }
  size_t size() const { return merges_.size(); }

 private:
  static uint64_t Key(TokenId left, TokenId right) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(left)) << 32) | static_cast<uint32_t>(right);
  }
  std::unordered_map<uint64_t, Merge> merges_;
};

}  // namespace tqlm::tokenizer
