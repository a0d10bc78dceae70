#include "runtime/ngram_pool.h"

#include <fmt/format.h>

#include <algorithm>

#include "tqlm/error.h"

namespace tqlm::runtime {

// A token and its index entry (the map's node share is counted in the entry).
size_t NgramPool::BytesOf(size_t n_tokens) { return n_tokens * (sizeof(int) + sizeof(Pos) + 8); }

void NgramPool::Add(std::span<const int> tokens) {
  if (tokens.size() < 2 || BytesOf(tokens.size()) > capacity_) return;
  while (!seqs_.empty() && bytes_ + BytesOf(tokens.size()) > capacity_) DropOldest();
  Seq s{next_id_++, std::vector<int>(tokens.begin(), tokens.end())};
  for (int e = kKey; e < int(s.tokens.size()); ++e) index_[s.tokens[size_t(e - 1)]].push_back({s.id, e});
  bytes_ += BytesOf(s.tokens.size());
  seqs_.push_back(std::move(s));
}

void NgramPool::DropOldest() {
  const Seq& s = seqs_.front();
  // The oldest sequence's entries are at the front of every list they are in.
  for (int e = kKey; e < int(s.tokens.size()); ++e) {
    auto it = index_.find(s.tokens[size_t(e - 1)]);
    if (it == index_.end()) continue;
    while (!it->second.empty() && it->second.front().seq == s.id) it->second.pop_front();
    if (it->second.empty()) index_.erase(it);
  }
  bytes_ -= BytesOf(s.tokens.size());
  seqs_.pop_front();
}

const NgramPool::Seq* NgramPool::Find(uint64_t id) const {
  if (seqs_.empty() || id < seqs_.front().id) return nullptr;
  const size_t i = size_t(id - seqs_.front().id);  // ids are consecutive
  return i < seqs_.size() ? &seqs_[i] : nullptr;
}

std::vector<int> NgramPool::Propose(std::span<const int> context, int n_min, int n_max,
                                    int max_tokens) const {
  if (n_min < 1 || n_max < n_min)
    throw Error(fmt::format("n-gram lengths must satisfy 1 <= min <= max (got {} and {})", n_min,
                            n_max));
  std::vector<int> out;
  const int L = int(context.size());
  if (max_tokens <= 0 || L < n_min) return out;
  auto it = index_.find(context.back());
  if (it == index_.end()) return out;
  int best_len = 0;
  const Seq* best = nullptr;
  int best_end = 0;
  // Newest first: a longer match wins, an equal one only if newer (seen first). A frequent
  // token can follow in most of the pool: only its newest kMaxCandidates places are tried.
  int tried = 0;
  for (auto p = it->second.rbegin(); p != it->second.rend() && tried < kMaxCandidates;
       ++p, ++tried) {
    const Seq* s = Find(p->seq);
    if (s == nullptr || p->end >= int(s->tokens.size())) continue;  // nothing follows
    int len = 0;
    const int limit = std::min({n_max, L, p->end});
    while (len < limit && s->tokens[size_t(p->end - 1 - len)] == context[size_t(L - 1 - len)]) ++len;
    if (len >= n_min && len > best_len) {
      best_len = len, best = s, best_end = p->end;
      if (len == n_max) break;
    }
  }
  if (best == nullptr) return out;
  const int take = std::min(max_tokens, int(best->tokens.size()) - best_end);
  out.assign(best->tokens.begin() + best_end, best->tokens.begin() + best_end + take);
  return out;
}

}  // namespace tqlm::runtime
