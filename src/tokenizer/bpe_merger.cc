#include "tokenizer/bpe_merger.h"

#include <queue>

namespace tqlm::tokenizer {

void BpeMerger::Add(TokenId left, TokenId right, int32_t rank, TokenId result) {
  merges_.try_emplace(Key(left, right), Merge{rank, result});
}

const BpeMerger::Merge* BpeMerger::Find(TokenId left, TokenId right) const {
  auto it = merges_.find(Key(left, right));
  return it == merges_.end() ? nullptr : &it->second;
}

namespace {

struct Symbol {
  TokenId id;
  int32_t prev;
  int32_t next;
};

struct Candidate {
  int32_t rank;
  int32_t left;  // symbol index; ties go to the leftmost pair
  int32_t right;
  TokenId left_id;
  TokenId right_id;
  TokenId result;
};

struct LaterFirst {
  bool operator()(const Candidate& a, const Candidate& b) const {
    return a.rank > b.rank || (a.rank == b.rank && a.left > b.left);
  }
};

}  // namespace

void BpeMerger::Apply(const std::vector<TokenId>& initial, std::vector<TokenId>* out) const {
  const auto n = static_cast<int32_t>(initial.size());
  if (n == 0) return;
  if (n == 1) {
    if (initial[0] != kNoToken) out->push_back(initial[0]);
    return;
  }
  std::vector<Symbol> symbols(n);
  for (int32_t i = 0; i < n; ++i) symbols[i] = {initial[i], i - 1, i + 1 < n ? i + 1 : -1};

  std::priority_queue<Candidate, std::vector<Candidate>, LaterFirst> queue;
  auto consider = [&](int32_t left, int32_t right) {
    if (left < 0 || right < 0) return;
    const Merge* m = Find(symbols[left].id, symbols[right].id);
    if (m != nullptr) {
      queue.push({m->rank, left, right, symbols[left].id, symbols[right].id, m->result});
    }
  };
  for (int32_t i = 0; i + 1 < n; ++i) consider(i, i + 1);

  while (!queue.empty()) {
    const Candidate c = queue.top();
    queue.pop();
    Symbol& left = symbols[c.left];
    Symbol& right = symbols[c.right];
    // A symbol only ever grows by absorbing its right neighbour, and its id changes when it
    // does, so unchanged ids plus adjacency mean the candidate is still current.
    if (left.next != c.right || left.id != c.left_id || right.id != c.right_id) continue;
    left.id = c.result;
    left.next = right.next;
    if (right.next >= 0) symbols[right.next].prev = c.left;
    right.id = kNoToken;
    right.prev = right.next = -1;
    consider(left.prev, c.left);
    consider(c.left, left.next);
  }
  // Symbols without a token (a byte the vocabulary lacks) block merges across them and are
  // dropped from the output, as llama.cpp does.
  for (int32_t i = 0; i >= 0; i = symbols[i].next) {
    if (symbols[i].id != kNoToken) out->push_back(symbols[i].id);
  }
}

}  // namespace tqlm::tokenizer
