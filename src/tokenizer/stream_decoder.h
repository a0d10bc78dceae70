// Turning tokens into printable text as they are generated. A token may end in the middle of a
// UTF-8 character (byte-level BPE splits rare characters and emoji over several tokens), so the
// decoder holds back an unfinished character until the tokens that complete it arrive.
//
// Invariant: the concatenation of every Push() result and the final Flush() equals
// Tokenizer::Decode() of all the ids pushed. Bytes that can never become a valid character are
// passed through at once, not held.
#pragma once

#include <string>

#include "tokenizer/tokenizer.h"

namespace tqlm::tokenizer {

class StreamDecoder {
 public:
  explicit StreamDecoder(const Tokenizer& tokenizer, bool render_special = false)
      : tokenizer_(&tokenizer), render_special_(render_special) {}

  // Adds one token; returns the text that is now complete (possibly empty).
  std::string Push(TokenId id);
  // Returns whatever is still held back (an unfinished character) and resets.
  std::string Flush();
  // Bytes currently held back.
  size_t pending() const { return pending_.size(); }

 private:
  const Tokenizer* tokenizer_;
  bool render_special_;
  std::string pending_;
};

}  // namespace tqlm::tokenizer
