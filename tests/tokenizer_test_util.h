// Helpers for the tokenizer tests: a toy byte-level BPE vocabulary built in code.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "tokenizer/byte_unicode.h"
#include "tokenizer/vocab.h"

namespace tqlm::tokenizer::testing {

// A "gpt2" vocabulary with the 256 byte symbols (ids 0..255, in byte order), then `extra`
// (normal tokens, in byte-level form), then `specials` (with their types), and `merges`.
inline VocabData ToyVocab(const std::vector<std::string>& extra,
                          const std::vector<std::string>& merges,
                          const std::vector<std::pair<std::string, TokenType>>& specials = {},
                          std::string pre = "gpt2") {
  VocabData v;
  v.model = "gpt2";
  v.pre = std::move(pre);
  for (int b = 0; b < 256; ++b) {
    v.tokens.emplace_back(ByteToUtf8(static_cast<uint8_t>(b)));
    v.token_types.push_back(TokenType::kNormal);
  }
  for (const auto& t : extra) {
    v.tokens.push_back(t);
    v.token_types.push_back(TokenType::kNormal);
  }
  for (const auto& [text, type] : specials) {
    v.tokens.push_back(text);
    v.token_types.push_back(type);
  }
  v.merges = merges;
  return v;
}

}  // namespace tqlm::tokenizer::testing
