// The server's shared prompt-lookup pool: the token sequences of finished requests, so that a
// request whose own text holds no earlier occurrence of its last tokens can continue what
// another request produced after them (the same document quoted again, a template answer, a
// file edited twice). Bounded in bytes, oldest sequences dropped first. Proposals only change
// speed, never output (speculation is lossless), so sharing the pool keeps every request's
// tokens independent of the others.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <span>
#include <unordered_map>
#include <vector>

namespace tqlm::runtime {

class NgramPool {
 public:
  // `capacity_bytes` bounds the sequences and their index together (0: the pool keeps nothing).
  explicit NgramPool(size_t capacity_bytes) : capacity_(capacity_bytes) {}

  // Adds a sequence (a finished request's prompt and output), dropping the oldest ones while
  // over capacity; one larger than the whole capacity is not kept.
  void Add(std::span<const int> tokens);
  // Up to `max_tokens` tokens that followed, in some pooled sequence, the longest suffix of
  // `context` of n_min..n_max tokens found there (the newest sequence wins a tie); empty when
  // none occurs. Throws tqlm::Error unless 1 <= n_min <= n_max.
  std::vector<int> Propose(std::span<const int> context, int n_min, int n_max,
                           int max_tokens) const;

  size_t bytes() const { return bytes_; }
  size_t sequences() const { return seqs_.size(); }

 private:
  struct Seq {
    uint64_t id;
    std::vector<int> tokens;
  };
  struct Pos {
    uint64_t seq;  // Seq::id
    int end;       // the key's tokens are tokens[end - kKey, end)
  };
  static constexpr int kKey = 1;  // index every position by the token before it
  static constexpr int kMaxCandidates = 4096;
  static size_t BytesOf(size_t n_tokens);
  const Seq* Find(uint64_t id) const;
  void DropOldest();

  size_t capacity_, bytes_ = 0;
  uint64_t next_id_ = 0;
  std::deque<Seq> seqs_;  // oldest first; ids increase
  std::unordered_map<int, std::deque<Pos>> index_;  // token -> positions after it, oldest first
};

}  // namespace tqlm::runtime
