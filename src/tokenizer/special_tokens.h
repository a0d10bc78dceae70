// Special-token splitting: before any pre-tokenization, occurrences of control / user-defined
// token texts (e.g. "<|im_start|>") are cut out of the input and become their ids directly.
//
// Order of matching follows llama.cpp: tokens are tried longest text first, and each one is
// searched (leftmost, non-overlapping) in every still-unsplit fragment. Control and unknown
// tokens are matched only when parsing specials; user-defined tokens always are.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "tokenizer/vocab.h"

namespace tqlm::tokenizer {

struct SpecialToken {
  std::string text;
  TokenId id = kNoToken;
  bool always = false;  // user-defined: matched even when specials are not parsed
};

// A piece of the input: raw text to tokenize, or one special token.
struct Fragment {
  std::string_view text;     // raw text (when token == kNoToken) or the special token's text
  TokenId token = kNoToken;  // the special token's id
};

class SpecialTokenSplitter {
 public:
  SpecialTokenSplitter() = default;
  // `tokens` in any order; sorted here, longest first.
  explicit SpecialTokenSplitter(std::vector<SpecialToken> tokens);

  // Fragments of `text` in order; raw fragments are never empty. Views point into `text`.
  std::vector<Fragment> Split(std::string_view text, bool parse_special) const;

  const std::vector<SpecialToken>& tokens() const { return tokens_; }

 private:
  std::vector<SpecialToken> tokens_;
};

}  // namespace tqlm::tokenizer
