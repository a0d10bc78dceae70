#include "tokenizer/spm_encoder.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstdint>
#include <queue>

#include "tqlm/error.h"

namespace tqlm::tokenizer {

namespace {

// A run of the escaped text, linked to its neighbours; len 0 once merged into its left.
struct Symbol {
  size_t begin = 0;
  size_t len = 0;
  int prev = -1;
  int next = -1;
};

// A candidate merge of adjacent symbols `left` and `right`, whose texts together (`size`
// bytes) form a token of score `score`. Stale once either side has changed length.
struct Bigram {
  float score = 0;
  int left = 0;
  int right = 0;
  size_t size = 0;
};

// Max-heap order: higher score first, then the leftmost pair.
struct BigramLess {
  bool operator()(const Bigram& a, const Bigram& b) const {
    return a.score < b.score || (a.score == b.score && a.left > b.left);
  }
};

// Bytes of the UTF-8 character starting with `lead` (1 for continuation / invalid bytes).
size_t Utf8Length(uint8_t lead) {
  if (lead < 0xC0) return 1;
  if (lead < 0xE0) return 2;
  if (lead < 0xF0) return 3;
  return 4;
}

}  // namespace

std::string EscapeSpmSpaces(std::string_view text) {
  std::string out;
  out.reserve(text.size() + text.size() / 4);
  for (char c : text) {
    if (c == ' ') out += kSpmSpace;
    else out += c;
  }
  return out;
}

std::string UnescapeSpmSpaces(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size();) {
    if (text.substr(i, kSpmSpace.size()) == kSpmSpace) {
      out += ' ';
      i += kSpmSpace.size();
    } else {
      out += text[i++];
    }
  }
  return out;
}

void SpmEncode(std::string_view raw, bool space_prefix, const SpmVocab& vocab,
               std::vector<TokenId>* out) {
  std::string text = space_prefix ? std::string(kSpmSpace) : std::string();
  text += EscapeSpmSpaces(raw);
  if (text.empty()) return;

  std::vector<Symbol> symbols;
  symbols.reserve(text.size());
  for (size_t at = 0; at < text.size();) {
    const size_t len = std::min(Utf8Length(static_cast<uint8_t>(text[at])), text.size() - at);
    const int index = int(symbols.size());
    symbols.push_back({at, len, index - 1, at + len == text.size() ? -1 : index + 1});
    at += len;
  }

  auto view = [&](size_t begin, size_t len) { return std::string_view(text).substr(begin, len); };
  std::priority_queue<Bigram, std::vector<Bigram>, BigramLess> queue;
  auto try_pair = [&](int left, int right) {
    if (left < 0 || right < 0) return;
    const Symbol& l = symbols[left];
    const Symbol& r = symbols[right];
    const TokenId id = vocab.find(view(l.begin, l.len + r.len));
    if (id < 0 || size_t(id) >= vocab.scores.size()) return;
    queue.push({vocab.scores[size_t(id)], left, right, l.len + r.len});
  };
  for (int i = 1; i < int(symbols.size()); ++i) try_pair(i - 1, i);

  while (!queue.empty()) {
    const Bigram b = queue.top();
    queue.pop();
    Symbol& l = symbols[b.left];
    Symbol& r = symbols[b.right];
    if (l.len == 0 || r.len == 0 || l.len + r.len != b.size) continue;  // stale
    l.len += r.len;
    r.len = 0;
    l.next = r.next;
    if (r.next >= 0) symbols[r.next].prev = b.left;
    try_pair(l.prev, b.left);
    try_pair(b.left, l.next);
  }

  // Every merged symbol is a token by construction; only single characters may be missing
  // from the vocabulary, and those fall back to their bytes.
  for (int i = 0; i >= 0; i = symbols[i].next) {
    const Symbol& s = symbols[i];
    const TokenId id = vocab.find(view(s.begin, s.len));
    if (id != kNoToken) {
      out->push_back(id);
      continue;
    }
    for (size_t j = 0; j < s.len; ++j) {
      const uint8_t byte = static_cast<uint8_t>(text[s.begin + j]);
      TokenId fallback = vocab.bytes ? (*vocab.bytes)[byte] : kNoToken;
      if (fallback == kNoToken) fallback = vocab.unk;
      if (fallback == kNoToken)
        throw Error(fmt::format("tokenizer: byte 0x{:02X} has no token and there is no <unk>",
                                unsigned(byte)));
      out->push_back(fallback);
    }
  }
}

}  // namespace tqlm::tokenizer
