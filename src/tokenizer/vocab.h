// What a tokenizer needs from a model file: the vocabulary, its merges or scores, the special
// token ids and flags, and the chat template. Filled from GGUF metadata by LoadVocab
// (tokenizer/vocab_gguf.h) or built by hand in tests; the Tokenizer validates it.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace tqlm::tokenizer {

using TokenId = int32_t;
inline constexpr TokenId kNoToken = -1;

// Token types, numbered as in GGUF `tokenizer.ggml.token_type` (llama.cpp's llama_token_type).
enum class TokenType : int32_t {
  kUndefined = 0,
  kNormal = 1,
  kUnknown = 2,
  kControl = 3,      // <|im_start|>, <|endoftext|>: matched in text only when parsing specials
  kUserDefined = 4,  // added tokens that are always matched in text (e.g. <tool_call>)
  kUnused = 5,
  kByte = 6,  // <0xXX> byte-fallback tokens (SentencePiece)
};

struct VocabData {
  // `tokenizer.ggml.model`: "gpt2" is byte-level BPE (supported); "llama" is SentencePiece
  // (scores instead of merges; a later issue).
  std::string model = "gpt2";
  // `tokenizer.ggml.pre`: selects the pre-tokenizer regex ("" means llama.cpp's "default").
  std::string pre;

  std::vector<std::string> tokens;      // id -> token text (byte-level encoded for gpt2)
  std::vector<TokenType> token_types;   // empty: every token is kNormal
  std::vector<float> scores;            // SentencePiece scores; empty for BPE
  std::vector<std::string> merges;      // "left right", rank = index (BPE)

  TokenId bos_id = kNoToken;
  TokenId eos_id = kNoToken;
  TokenId eot_id = kNoToken;  // end of turn; found by name (<|im_end|>, <|eot_id|>...) if unset
  TokenId eom_id = kNoToken;
  TokenId unk_id = kNoToken;
  TokenId pad_id = kNoToken;

  // Unset: the model kind's / pre-tokenizer's default (as llama.cpp decides it).
  std::optional<bool> add_bos;
  std::optional<bool> add_eos;
  std::optional<bool> add_space_prefix;  // SentencePiece only

  std::string chat_template;  // `tokenizer.chat_template` (Jinja source), may be empty
};

}  // namespace tqlm::tokenizer
