// SentencePiece-style encoding of GGUF "llama" vocabularies (tokenizer.ggml.model = llama:
// Llama 2, Gemma), as llama.cpp does it token for token:
//   1. spaces become U+2581 "▁" (and one "▁" is prepended when the model asks for a space
//      prefix and the fragment starts the text or follows a special token);
//   2. the text is cut into UTF-8 characters (a lead byte decides the length; invalid bytes
//      stand alone);
//   3. adjacent symbols whose concatenation is a token are merged, highest token score first
//      (leftmost first among equal scores), until no adjacent pair forms a token;
//   4. a final symbol that is not a token (a character outside the vocabulary) is emitted as
//      its bytes' <0xXX> tokens (byte fallback).
#pragma once

#include <array>
#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "tokenizer/vocab.h"

namespace tqlm::tokenizer {

// "▁", SentencePiece's visible space.
inline constexpr std::string_view kSpmSpace = "\xE2\x96\x81";

// Spaces -> "▁", and back (for decoding normal tokens).
std::string EscapeSpmSpaces(std::string_view text);
std::string UnescapeSpmSpaces(std::string_view text);

struct SpmVocab {
  // Id of the token whose text is exactly the argument, or kNoToken.
  std::function<TokenId(std::string_view)> find;
  std::span<const float> scores;          // per token id
  const std::array<TokenId, 256>* bytes;  // byte-fallback token per byte value (or kNoToken)
  TokenId unk = kNoToken;                 // emitted for a byte without a fallback token
};

// Appends the ids of one raw-text fragment (no special tokens in it) to `out`.
void SpmEncode(std::string_view text, bool space_prefix, const SpmVocab& vocab,
               std::vector<TokenId>* out);

}  // namespace tqlm::tokenizer
